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
import copy, os, sys
import torch
import torch.nn as nn

sys.dont_write_bytecode = True  # no bench/torch/__pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ViT, adamw, ema_, emit, mlp_head, nt_xent, setup, throughput, timed  # noqa: E402

opts, args = setup(steps=10)
which = args or ["sit", "sit-recon"]
B, P, D, S = 128, 4, 128, 28


def unpatchify(p):  # [N,49,16] -> [N,1,28,28]
    n = p.shape[0]
    return p.reshape(n, 7, 7, P, P).permute(0, 1, 3, 2, 4).reshape(n, 1, S, S)


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
    proj = mlp_head(D, 512, 128, layers=3, act=nn.GELU, hidden_bias=False) if contrastive else None
    online = nn.ModuleList([vit, rec] + ([proj] if proj is not None else []))
    opt = adamw(online.parameters(), 1e-3, 0.05)
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
            ema_(t_params, o_params, 0.99)
    return {"figure": ("sit" if contrastive else "sit-recon") + "-vit-tiny", **throughput(B, timed(step, 3, opts.steps))}


for w in which:
    emit({"sit": lambda: sit(True), "sit-recon": lambda: sit(False)}[w](), "torch-sit")
