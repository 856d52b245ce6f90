"""Shared pieces of the PyTorch reference benches (bench/torch/<method>.py), in the style of
/work/shared/reference/torch_ref.py: flag reading and threads, `timed`, resnet-small, ViT-tiny,
the MLP heads, NT-Xent, AdamW, the EMA update and the JSON line.

A script imports it after putting its own folder on sys.path, so `/usr/bin/python3 bench/torch/x.py`
runs from anywhere:
    sys.dont_write_bytecode = True  # no bench/torch/__pycache__ in the tree
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import ...
"""
import json, sys, time
from types import SimpleNamespace
import torch
import torch.nn as nn
import torch.nn.functional as F

_threads = 2


def setup(**defaults):
    """Reads `--name value` flags off sys.argv (each typed like its default; `_` in a name is `-` in
    the flag; --threads, default 2, always), sets torch's threads and seed 0. Returns the options
    and the remaining arguments (e.g. the figures asked for)."""
    global _threads
    args = sys.argv[1:]
    o = {"threads": 2, **defaults}
    for name, default in o.items():
        flag = "--" + name.replace("_", "-")
        if flag in args:
            i = args.index(flag); o[name] = type(default)(args[i + 1]); del args[i:i + 2]
    _threads = o["threads"]
    torch.set_num_threads(_threads)
    torch.manual_seed(0)
    return SimpleNamespace(**o), args


def timed(step, warmup, n):
    """Median seconds of `n` calls of step() after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def throughput(batch, s):
    """The figure's speed fields for a median step of `s` seconds at `batch` source images."""
    return {"imagesPerSec": round(batch / s, 1), "stepMs": round(1000 * s, 1)}


def emit(r, bench=None):
    """Prints one figure as a JSON line, with the bench name (if given), torch version and threads."""
    if bench is not None:
        r["bench"] = bench
    r.update({"torch": torch.__version__, "threads": _threads})
    print(json.dumps(r), flush=True)


def adamw(params, lr, weight_decay):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def ema_(target, online, tau):
    """target <- tau target + (1 - tau) online, in place over two lists of tensors (no grad)."""
    with torch.no_grad():
        torch._foreach_mul_(target, tau)
        torch._foreach_add_(target, online, alpha=1 - tau)


# ---- resnet-small (sslkit's lib/src/nn/resnet.ts) ----

class Block(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.b1 = nn.BatchNorm2d(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.b2 = nn.BatchNorm2d(cout)
        s.down = None
        if stride != 1 or cin != cout:
            s.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(s, x):
        o = s.b2(s.c2(F.relu(s.b1(s.c1(x)))))
        return F.relu(o + (s.down(x) if s.down is not None else x))


def resnet_small(cin=3, widths=(32, 64, 128, 256)):
    layers = [nn.Conv2d(cin, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    c = widths[0]
    for i, w in enumerate(widths):
        layers.append(Block(c, w, 1 if i == 0 else 2)); c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


# ---- ViT-tiny (sslkit's lib/src/nn/vit.ts: pre-norm blocks, LayerNorm eps 1e-6) ----

class TBlock(nn.Module):
    def __init__(s, d, h):
        super().__init__()
        s.n1 = nn.LayerNorm(d, eps=1e-6); s.attn = nn.MultiheadAttention(d, h, batch_first=True)
        s.n2 = nn.LayerNorm(d, eps=1e-6); s.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(s, x):
        y = s.n1(x); x = x + s.attn(y, y, y, need_weights=False)[0]
        return x + s.mlp(s.n2(x))


def sincos_2d(dim, gh, gw, cls=True):
    """MAE's get_2d_sincos_pos_embed: first half encodes the column, second half the row."""
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)
    ii, jj = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij")
    j = jj.reshape(-1, 1) * omega
    i = ii.reshape(-1, 1) * omega
    pe = torch.cat([torch.sin(j), torch.cos(j), torch.sin(i), torch.cos(i)], 1).float()
    return torch.cat([torch.zeros(1, dim), pe], 0)[None] if cls else pe[None]


class ViT(nn.Module):
    """ViT-tiny on 28x28x1 by default: patch P, dim D, `depth` blocks of 4 heads, a class token and
    fixed positions ([1, L + 1, D], class token first): random ("random", N(0, 0.02)) or 2-D sin-cos."""

    def __init__(s, P=4, D=128, depth=4, grid=7, pos="random"):
        super().__init__()
        s.P, s.D, s.L = P, D, grid * grid
        s.embed = nn.Linear(P * P, D); s.cls = nn.Parameter(torch.randn(1, 1, D) * 0.02)
        s.register_buffer("pos", torch.randn(1, s.L + 1, D) * 0.02 if pos == "random" else sincos_2d(D, grid, grid))
        s.blocks = nn.Sequential(*[TBlock(D, 4) for _ in range(depth)]); s.norm = nn.LayerNorm(D, eps=1e-6)

    def patchify(s, x):  # [N,1,H,W] -> [N,L,P*P]
        return x.unfold(2, s.P, s.P).unfold(3, s.P, s.P).reshape(x.shape[0], s.L, s.P * s.P)

    def forward(s, x):
        """(class token, patch tokens) of every patch."""
        t = s.embed(s.patchify(x))
        h = torch.cat([s.cls.expand(x.shape[0], -1, -1), t], 1) + s.pos
        h = s.norm(s.blocks(h))
        return h[:, 0], h[:, 1:]


# ---- heads and losses ----

def mlp_head(d_in, hidden, d_out, layers=2, act=nn.ReLU, hidden_bias=True):
    """`layers` Linear layers: (Linear(hidden), BatchNorm1d, act) x (layers - 1), then Linear(d_out)."""
    mods, d = [], d_in
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden, bias=hidden_bias), nn.BatchNorm1d(hidden), act()]; d = hidden
    return nn.Sequential(*mods, nn.Linear(d, d_out))


def nt_xent(z1, z2, t):
    z = F.normalize(torch.cat([z1, z2]), dim=1); n = z1.shape[0]
    sim = z @ z.t() / t
    sim.fill_diagonal_(-1e9)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)
