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
import json, math, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

args = sys.argv[1:]


def opt(name, default):
    if f"--{name}" in args:
        return type(default)(args[args.index(f"--{name}") + 1])
    return default


threads = opt("threads", 2)
steps = opt("steps", 20)
ratio = opt("ratio", 0.75)
dec_depth = opt("decoder-depth", 2)
torch.set_num_threads(threads)
torch.manual_seed(0)


def sincos_2d(dim, gh, gw, cls=True):
    """MAE's get_2d_sincos_pos_embed: first half encodes the column, second half the row."""
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)
    ii, jj = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij")
    j = jj.reshape(-1, 1) * omega
    i = ii.reshape(-1, 1) * omega
    pe = torch.cat([torch.sin(j), torch.cos(j), torch.sin(i), torch.cos(i)], 1).float()
    return torch.cat([torch.zeros(1, dim), pe], 0)[None] if cls else pe[None]


class TBlock(nn.Module):
    def __init__(s, d, h):
        super().__init__()
        s.n1 = nn.LayerNorm(d, eps=1e-6); s.attn = nn.MultiheadAttention(d, h, batch_first=True)
        s.n2 = nn.LayerNorm(d, eps=1e-6); s.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(s, x):
        y = s.n1(x); x = x + s.attn(y, y, y, need_weights=False)[0]
        return x + s.mlp(s.n2(x))


class MAE(nn.Module):
    def __init__(s, P=4, D=128, depth=4, Dd=64, dec_depth=2, grid=7):
        super().__init__()
        s.P, s.D, s.Dd, s.L = P, D, Dd, grid * grid
        s.embed = nn.Linear(P * P, D); s.cls = nn.Parameter(torch.randn(1, 1, D) * 0.02)
        s.register_buffer("pos", sincos_2d(D, grid, grid))
        s.blocks = nn.Sequential(*[TBlock(D, 4) for _ in range(depth)]); s.norm = nn.LayerNorm(D, eps=1e-6)
        s.dec_embed = nn.Linear(D, Dd); s.mask_token = nn.Parameter(torch.randn(1, 1, Dd) * 0.02)
        s.register_buffer("dec_pos", sincos_2d(Dd, grid, grid))
        s.dec_blocks = nn.Sequential(*[TBlock(Dd, 4) for _ in range(dec_depth)]); s.dec_norm = nn.LayerNorm(Dd, eps=1e-6)
        s.pred = nn.Linear(Dd, P * P)

    def patchify(s, imgs):
        B = imgs.shape[0]
        return imgs.unfold(2, s.P, s.P).unfold(3, s.P, s.P).reshape(B, s.L, s.P * s.P)

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
    model = MAE(dec_depth=dec_depth)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    imgs = torch.rand(B, 1, 28, 28)

    def step():
        with torch.no_grad():
            view = crop_flip(imgs)
        loss = model(view, ratio)
        optim.zero_grad(set_to_none=True); loss.backward(); optim.step()
        return loss.item()

    for _ in range(5):
        step()
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter(); loss = step(); ts.append(time.perf_counter() - t0)
    ts.sort()
    s = ts[len(ts) // 2]
    print(json.dumps({
        "bench": "torch-ref", "figure": "mae-method-vit-tiny", "batch": B,
        "input": f"28x28x1, patch 4, {round(ratio * 100)}% random masking, crop+flip view, norm-pix, decoder {dec_depth}x64",
        "params": sum(p.numel() for p in model.parameters()),
        "imagesPerSec": round(B / s, 1), "stepMs": round(1000 * s, 1), "loss": round(loss, 4),
        "torch": torch.__version__, "threads": threads,
    }), flush=True)


main()
