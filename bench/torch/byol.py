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
import copy, os, sys
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no bench/torch/__pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import adamw, ema_, emit, mlp_head, resnet_small, setup, throughput, timed  # noqa: E402

opts, _ = setup(steps=5)


def byol_loss(p, z):
    return (2 - 2 * (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1)).mean()


def byol():
    B, tau = 128, 0.99
    online = nn.Sequential(resnet_small(), mlp_head(256, 1024, 256)).to(memory_format=torch.channels_last)
    predictor = mlp_head(256, 1024, 256)
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    opt = adamw(list(online.parameters()) + list(predictor.parameters()), 1e-3, 1e-6)
    views = torch.rand(2 * B, 3, 32, 32).to(memory_format=torch.channels_last)
    online_state = [t for t in online.state_dict().values() if t.dtype.is_floating_point]
    target_state = [t for t in target.state_dict().values() if t.dtype.is_floating_point]

    def step():
        with torch.no_grad():
            zt = target(views)
        p = predictor(online(views))
        loss = byol_loss(p[:B], zt[B:]) + byol_loss(p[B:], zt[:B])
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        ema_(target_state, online_state, tau)  # xi <- tau xi + (1 - tau) theta
    return {"figure": "byol-resnet-small", **throughput(B, timed(step, 2, opts.steps))}


emit(byol(), "torch-byol")
