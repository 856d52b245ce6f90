#!/usr/bin/python3
"""PyTorch (Debian python3-torch, CPU) reference of sslkit's bench/step-dino.ts.

One JSON line: a DINO step (Caron et al. 2021, main_dino.py) at batch 128 on 28x28x1 images:
2 global 28x28 crops + 6 local 12x12 crops, the student ViT-tiny (patch 4, dim 128, depth 4,
4 heads, MLP 4x, pre-norm, LayerNorm eps 1e-6, fixed 2-D sin-cos position embeddings resampled
bicubically for the local crops as DINO's interpolate_pos_encoding) on all 8 crops (crops of one
size as one batch, the class tokens through the head at once: MultiCropWrapper), the EMA teacher
on the 2 globals under no_grad, DINOHead (3 linears 128-2048-2048-256, GELU, l2 normalisation,
weight_norm(Linear(256, 4096, bias=False)) with weight_g fixed to 1), DINOLoss (teacher
softmax((t - c) / 0.04), student log_softmax(s / 0.1), pairs v != i), AdamW, gradient clipping
at 3, the teacher EMA (momentum 0.996, torch._foreach ops) and the center update (momentum 0.9).
The crops are made once (model step only), which favours PyTorch slightly: sslkit's bench times
its multi-crop augmentation inside the step.
usage: dino.py [--threads N] [--steps N] [--local-crops N] [--out-dim K]
"""
import json, os, resource, sys
import torch
import torch.nn as nn
import torch.nn.functional as F
sys.dont_write_bytecode = True  # no bench/torch/__pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import TBlock, setup, timed  # noqa: E402

opts, _ = setup(steps=5, local_crops=6, out_dim=4096)
threads, steps, local_crops, out_dim = opts.threads, opts.steps, opts.local_crops, opts.out_dim


def sincos_2d(dim, gh, gw):
    """MAE's get_2d_sincos_pos_embed (column half first), [gh * gw, dim]."""
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)
    ii, jj = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij")
    i, j = ii.reshape(-1, 1) * omega, jj.reshape(-1, 1) * omega
    return torch.cat([torch.sin(j), torch.cos(j), torch.sin(i), torch.cos(i)], 1).float()


class ViTTiny(nn.Module):
    def __init__(s, P=4, D=128, depth=4, heads=4, size=28):
        super().__init__()
        s.P, s.D, s.grid = P, D, size // P
        s.embed = nn.Linear(P * P, D)
        s.cls = nn.Parameter(torch.zeros(1, 1, D))
        s.register_buffer("pos", torch.cat([torch.zeros(1, D), sincos_2d(D, s.grid, s.grid)])[None])
        s.blocks = nn.Sequential(*[TBlock(D, heads) for _ in range(depth)])
        s.norm = nn.LayerNorm(D, eps=1e-6)

    def interpolate_pos(s, g):
        if g == s.grid:
            return s.pos[:, 1:]
        grid = s.pos[:, 1:].reshape(1, s.grid, s.grid, s.D).permute(0, 3, 1, 2)
        return F.interpolate(grid, size=(g, g), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, g * g, s.D)

    def forward(s, x):
        B, _, H, W = x.shape; g = H // s.P
        patches = x.unfold(2, s.P, s.P).unfold(3, s.P, s.P).reshape(B, g * g, s.P * s.P)
        tok = s.embed(patches) + s.interpolate_pos(g)
        h = torch.cat([(s.cls + s.pos[:, :1]).expand(B, -1, -1), tok], 1)
        return s.norm(s.blocks(h))[:, 0]


class DINOHead(nn.Module):
    def __init__(s, in_dim, out_dim, hidden=2048, bottleneck=256):
        super().__init__()
        s.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, bottleneck))
        s.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        s.last_layer.weight_g.data.fill_(1)
        s.last_layer.weight_g.requires_grad = False

    def forward(s, x):
        return s.last_layer(F.normalize(s.mlp(x), dim=-1, p=2))


class MultiCrop(nn.Module):
    def __init__(s, backbone, head):
        super().__init__()
        s.backbone, s.head = backbone, head

    def forward(s, crops):
        feats, i = [], 0
        while i < len(crops):
            j = i + 1
            while j < len(crops) and crops[j].shape[-1] == crops[i].shape[-1]:
                j += 1
            feats.append(s.backbone(torch.cat(crops[i:j])))
            i = j
        return s.head(torch.cat(feats))


def dino_loss(student_out, teacher_out, center, ncrops, ts=0.1, tt=0.04):
    s = (student_out / ts).chunk(ncrops)
    t = F.softmax((teacher_out - center) / tt, dim=-1).detach().chunk(2)
    total, n = 0, 0
    for iq, q in enumerate(t):
        for v in range(len(s)):
            if v == iq:
                continue
            total = total + torch.sum(-q * F.log_softmax(s[v], dim=-1), dim=-1).mean(); n += 1
    return total / n


def dino():
    B = 128
    student = MultiCrop(ViTTiny(), DINOHead(128, out_dim))
    teacher = MultiCrop(ViTTiny(), DINOHead(128, out_dim))  # weight_norm modules do not deepcopy
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad_(False)
    center = torch.zeros(1, out_dim)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.04)
    crops = [torch.rand(B, 1, 28, 28) for _ in range(2)] + [torch.rand(B, 1, 12, 12) for _ in range(local_crops)]
    s_params = [p for p in student.parameters()]
    t_params = [p for p in teacher.parameters()]

    def step():
        nonlocal center
        with torch.no_grad():
            t_out = teacher(crops[:2])
        s_out = student(crops)
        loss = dino_loss(s_out, t_out, center, len(crops))
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(t_params, 0.996)
            torch._foreach_add_(t_params, s_params, alpha=0.004)
            center = center * 0.9 + t_out.mean(0, keepdim=True) * 0.1
        return loss

    s = timed(step, 3, steps)
    return {"figure": "dino-vit-tiny", "input": f"28x28x1: 2 global 28x28 + {local_crops} local 12x12 crops", "outDim": out_dim,
            "imagesPerSec": round(B / s, 1), "stepMs": round(1000 * s, 1),
            "peakRssMB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


r = dino()
r.update({"bench": "torch-ref", "torch": torch.__version__, "threads": threads})
print(json.dumps(r), flush=True)
