#!/usr/bin/python3
"""PyTorch (Debian python3-torch, CPU) reference of sslkit's bench/step-sit.ts: the SiT / GMML step.

ViT-tiny on 28x28x1 (patch 4, dim 128, depth 4, heads 4, class token, fixed positions), batch 128:
the student on the 2N corrupted views; the reconstruction head Linear(128)-GELU-Linear(128)-GELU-
Linear(16) per patch, folded back to pixels; l1 on the corrupted pixels (x5); the contrastive head
Linear(512)-BN-GELU-Linear(512)-BN-GELU-Linear(128) on the class token; cross-view NT-Xent (tau 0.2)
against the momentum teacher (an EMA copy, no grad) on the clean views; AdamW; the EMA update
(torch._foreach_*). "sit-recon": one corrupted view, reconstruction only. The views and masks are
made once, outside the timed step (as torch_ref.py's SimCLR): compare with step-sit.ts's
modelImagesPerSec. Prints one JSON line per figure.
usage: sit.py [sit|sit-recon ...] [--threads N] [--steps N]
"""
import copy, json, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

args = sys.argv[1:]
threads, steps = 2, 10
if "--threads" in args:
    i = args.index("--threads"); threads = int(args[i + 1]); del args[i:i + 2]
if "--steps" in args:
    i = args.index("--steps"); steps = int(args[i + 1]); del args[i:i + 2]
torch.set_num_threads(threads)
torch.manual_seed(0)
which = args or ["sit", "sit-recon"]
B, P, D, L, S = 128, 4, 128, 49, 28


def timed(step, warmup, n):
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


class TBlock(nn.Module):
    def __init__(s, d, h):
        super().__init__()
        s.n1 = nn.LayerNorm(d, eps=1e-6); s.attn = nn.MultiheadAttention(d, h, batch_first=True)
        s.n2 = nn.LayerNorm(d, eps=1e-6); s.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(s, x):
        y = s.n1(x); x = x + s.attn(y, y, y, need_weights=False)[0]
        return x + s.mlp(s.n2(x))


def patchify(x):  # [N,1,28,28] -> [N,49,16]
    return x.unfold(2, P, P).unfold(3, P, P).reshape(x.shape[0], L, P * P)


def unpatchify(p):  # [N,49,16] -> [N,1,28,28]
    n = p.shape[0]
    return p.reshape(n, 7, 7, P, P).permute(0, 1, 3, 2, 4).reshape(n, 1, S, S)


class ViT(nn.Module):
    def __init__(s):
        super().__init__()
        s.embed = nn.Linear(P * P, D); s.cls = nn.Parameter(torch.randn(1, 1, D) * 0.02)
        s.register_buffer("pos", torch.randn(1, L + 1, D) * 0.02)
        s.blocks = nn.Sequential(*[TBlock(D, 4) for _ in range(4)]); s.norm = nn.LayerNorm(D, eps=1e-6)

    def forward(s, x):
        t = s.embed(patchify(x))
        h = torch.cat([s.cls.expand(x.shape[0], -1, -1), t], 1) + s.pos
        h = s.norm(s.blocks(h))
        return h[:, 0], h[:, 1:]


def projector():
    return nn.Sequential(nn.Linear(D, 512, bias=False), nn.BatchNorm1d(512), nn.GELU(),
                         nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.GELU(), nn.Linear(512, 128))


def nt_xent(z1, z2, t):
    z = F.normalize(torch.cat([z1, z2]), dim=1); n = z1.shape[0]
    sim = z @ z.t() / t
    sim.fill_diagonal_(-1e9)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def gmml_like(x):
    """Random unaligned blocks (sides 1-7 px) up to 50% of each image, filled with uniform noise."""
    xc = x.clone(); m = torch.zeros(x.shape[0], 1, S, S)
    for i in range(x.shape[0]):
        while m[i].mean() < 0.5:
            h, w = torch.randint(1, 8, (2,)).tolist(); r, c = torch.randint(0, S - h + 1, (1,)).item(), torch.randint(0, S - w + 1, (1,)).item()
            m[i, :, r:r + h, c:c + w] = 1
    return torch.where(m > 0, torch.rand_like(x), x), m


def sit(contrastive):
    vit = ViT()
    rec = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Linear(D, D), nn.GELU(), nn.Linear(D, P * P))
    proj = projector() if contrastive else None
    online = nn.ModuleList([vit, rec] + ([proj] if proj is not None else []))
    opt = torch.optim.AdamW(online.parameters(), lr=1e-3, weight_decay=0.05)
    teacher = copy.deepcopy(nn.ModuleList([vit, proj])) if contrastive else None
    if teacher is not None:
        for p in teacher.parameters():
            p.requires_grad_(False)
        t_params, o_params = list(teacher.parameters()), list(vit.parameters()) + list(proj.parameters())
    nv = 2 if contrastive else 1
    clean = torch.rand(nv * B, 1, S, S)
    corrupted, mask = gmml_like(clean)

    def step():
        cls, tokens = vit(corrupted)
        recon = unpatchify(rec(tokens))
        r = ((recon - clean).abs() * mask).sum() / mask.sum()
        loss = 5 * r
        if contrastive:
            q = proj(cls)
            with torch.no_grad():
                k = teacher[1](teacher[0](clean)[0])
            loss = loss + (nt_xent(q[:B], k[B:], 0.2) + nt_xent(q[B:], k[:B], 0.2)) / 2
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if contrastive:
            with torch.no_grad():
                torch._foreach_mul_(t_params, 0.99); torch._foreach_add_(t_params, o_params, alpha=0.01)
    s = timed(step, 3, steps)
    return {"figure": ("sit" if contrastive else "sit-recon") + "-vit-tiny", "imagesPerSec": round(B / s, 1), "stepMs": round(1000 * s, 1)}


for w in which:
    r = {"sit": lambda: sit(True), "sit-recon": lambda: sit(False)}[w]()
    r.update({"bench": "torch-sit", "torch": torch.__version__, "threads": threads})
    print(json.dumps(r), flush=True)
