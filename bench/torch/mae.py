#!/usr/bin/python3
"""PyTorch (Debian python3-torch, CPU) reference of bench/step-mae.ts: the MAE method's step.

Batch 128 of 28x28x1; a random resized crop (scale 0.2-1, ratio 3/4-4/3) + horizontal flip per
image (affine_grid + grid_sample, bilinear); per-image random masking (argsort of noise) keeping
floor(49 * 0.25) = 12 patches; ViT-tiny encoder (patch 4, dim 128, depth 4, 4 heads, class token,
fixed 2-D sin-cos positions) on the visible patches; the decoder of the MAE reference
(embed 128->64, mask tokens, unshuffle by ids_restore, sin-cos positions, 2 blocks of dim 64,
LayerNorm, linear to 16 pixels); normalised-pixel MSE on the removed patches; AdamW.
Prints one JSON line per figure.
usage: mae.py [--threads N] [--steps N] [--ratio R] [--decoder-depth D]
"""
import math, os, sys
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no bench/torch/__pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import TBlock, ViT, adamw, emit, setup, sincos_2d, throughput, timed  # noqa: E402

opts, _ = setup(steps=20, ratio=0.75, decoder_depth=2)


class MAE(ViT):
    """The ViT-tiny encoder (sin-cos positions) and the MAE reference's decoder."""

    def __init__(s, P=4, D=128, depth=4, Dd=64, dec_depth=2, grid=7):
        super().__init__(P, D, depth, grid, pos="sincos")
        s.Dd = Dd
        s.dec_embed = nn.Linear(D, Dd); s.mask_token = nn.Parameter(torch.randn(1, 1, Dd) * 0.02)
        s.register_buffer("dec_pos", sincos_2d(Dd, grid, grid))
        s.dec_blocks = nn.Sequential(*[TBlock(Dd, 4) for _ in range(dec_depth)]); s.dec_norm = nn.LayerNorm(Dd, eps=1e-6)
        s.pred = nn.Linear(Dd, P * P)

    def forward(s, imgs, mask_ratio):
        B = imgs.shape[0]
        patches = s.patchify(imgs)
        x = s.embed(patches) + s.pos[:, 1:]
        keep_n = int(s.L * (1 - mask_ratio) + 1e-9)
        ids_shuffle = torch.argsort(torch.rand(B, s.L), dim=1)  # the reference's random_masking
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :keep_n]
        x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, s.D))
        mask = torch.ones(B, s.L); mask[:, :keep_n] = 0; mask = torch.gather(mask, 1, ids_restore)
        cls = (s.cls + s.pos[:, :1]).expand(B, -1, -1)
        h = s.norm(s.blocks(torch.cat([cls, x], 1)))
        # decoder
        y = s.dec_embed(h)
        toks = torch.cat([y[:, 1:], s.mask_token.expand(B, s.L - keep_n, -1)], 1)
        toks = torch.gather(toks, 1, ids_restore[..., None].expand(-1, -1, s.Dd))
        y = torch.cat([y[:, :1], toks], 1) + s.dec_pos
        out = s.pred(s.dec_norm(s.dec_blocks(y)))[:, 1:]
        # forward_loss with norm_pix_loss
        mean = patches.mean(-1, keepdim=True); var = patches.var(-1, keepdim=True)
        target = (patches - mean) / (var + 1e-6) ** 0.5
        loss = ((out - target) ** 2).mean(-1)
        return (loss * mask).sum() / mask.sum()


def crop_flip(imgs, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)):
    """RandomResizedCrop + RandomHorizontalFlip per image, as one batched grid_sample."""
    B = imgs.shape[0]
    area = torch.empty(B).uniform_(*scale)
    logr = torch.empty(B).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    r = torch.exp(logr)
    w = torch.sqrt(area * r).clamp(max=1.0); h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (torch.rand(B) * (1 - w) + w / 2) * 2 - 1; cy = (torch.rand(B) * (1 - h) + h / 2) * 2 - 1
    flip = torch.where(torch.rand(B) < 0.5, -1.0, 1.0)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = w * flip; theta[:, 0, 2] = cx; theta[:, 1, 1] = h; theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(imgs.shape), align_corners=False)
    return F.grid_sample(imgs, grid, mode="bilinear", align_corners=False)


def main():
    B = 128
    model = MAE(dec_depth=opts.decoder_depth)
    optim = adamw(model.parameters(), 1e-3, 0.05)
    imgs = torch.rand(B, 1, 28, 28)
    losses = []

    def step():
        with torch.no_grad():
            view = crop_flip(imgs)
        loss = model(view, opts.ratio)
        optim.zero_grad(set_to_none=True); loss.backward(); optim.step()
        losses.append(loss.item())

    s = timed(step, 5, opts.steps)  # losses[-1]: the last timed step's
    emit({
        "bench": "torch-ref", "figure": "mae-method-vit-tiny", "batch": B,
        "input": f"28x28x1, patch 4, {round(opts.ratio * 100)}% random masking, crop+flip view, norm-pix, decoder {opts.decoder_depth}x64",
        "params": sum(p.numel() for p in model.parameters()),
        **throughput(B, s), "loss": round(losses[-1], 4),
    })


main()
