#!/usr/bin/python3
"""PyTorch (Debian python3-torch, CPU) reference of sslkit's bench/step-byol.ts.

One JSON line: a BYOL step at batch 128, 2 views of 32x32x3, resnet-small online encoder +
projector 256-1024(BN,ReLU)-256 + predictor 256-1024(BN,ReLU)-256, the target (encoder +
projector) forward under no_grad, the symmetrised loss 2 - 2 cos (BYOL eq. 2), AdamW, and the
target's EMA update (tau 0.99, parameters and buffers, torch._foreach ops). channels_last for
the convolutions. The views are made once (model step only), which favours PyTorch slightly:
sslkit's bench times its batched augmentation inside the step.
usage: byol.py [--threads N] [--steps N]
"""
import copy, json, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

args = sys.argv[1:]
threads, steps = 2, 5
if "--threads" in args:
    i = args.index("--threads"); threads = int(args[i + 1]); del args[i:i + 2]
if "--steps" in args:
    i = args.index("--steps"); steps = int(args[i + 1]); del args[i:i + 2]
torch.set_num_threads(threads)
torch.manual_seed(0)


def timed(step, warmup, steps):
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


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


def mlp(d_in, hidden, d_out):
    return nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def byol_loss(p, z):
    return (2 - 2 * (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1)).mean()


def byol():
    B, tau = 128, 0.99
    online = nn.Sequential(resnet_small(), mlp(256, 1024, 256)).to(memory_format=torch.channels_last)
    predictor = mlp(256, 1024, 256)
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(list(online.parameters()) + list(predictor.parameters()), lr=1e-3, weight_decay=1e-6)
    views = torch.rand(2 * B, 3, 32, 32).to(memory_format=torch.channels_last)
    online_state = [t for t in online.state_dict().values() if t.dtype.is_floating_point]
    target_state = [t for t in target.state_dict().values() if t.dtype.is_floating_point]

    def step():
        with torch.no_grad():
            zt = target(views)
        p = predictor(online(views))
        loss = byol_loss(p[:B], zt[B:]) + byol_loss(p[B:], zt[:B])
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        with torch.no_grad():  # xi <- tau xi + (1 - tau) theta
            torch._foreach_mul_(target_state, tau)
            torch._foreach_add_(target_state, online_state, alpha=1 - tau)
    s = timed(step, 2, steps)
    return {"figure": "byol-resnet-small", "imagesPerSec": round(B / s, 1), "stepMs": round(1000 * s, 1)}


r = byol()
r.update({"bench": "torch-byol", "torch": torch.__version__, "threads": threads})
print(json.dumps(r), flush=True)
