#!/usr/bin/python3
"""PyTorch (Debian python3-torch, CPU) reference of bench/step-moco.ts's MoCo steps.

Prints one JSON line per figure:
  moco-v2: MoCo v2 step as the official CIFAR-10 demo writes it (SplitBatchNorm with 8 splits, the
    key batch shuffled before the key encoder and put back after, queue of 4096 keys, t 0.2),
    resnet-small (32/64/128/256, one BasicBlock a stage) with the MLP head 256-256-128, AdamW,
    momentum update m 0.99 and the enqueue, batch 128 of 32x32x3, channels_last.
  moco-v3: MoCo v3 step as the official moco-v3 code (ViT-tiny: patch 4, dim 128, depth 4, heads 4,
    on 28x28x1; projector 128-512-512-128 Linear-BN(-ReLU) without biases, the last BN without
    affine; predictor 128-512-128; momentum encoder of backbone + projector; symmetric in-batch
    InfoNCE scaled by 2t, t 0.2), AdamW, batch 128. The backbone takes both views as one batch
    (it has no BatchNorm), the heads each view apart, as sslkit does.
The views are made once (model step only), which favours PyTorch slightly: sslkit's figure times
its batched augmentation inside the step.
usage: moco.py [moco-v2|moco-v3 ...] [--threads N] [--steps N] [--split-impl demo|chunk] [--nchw]
"""
import copy, json, os, sys
import torch
import torch.nn as nn
import torch.nn.functional as F
sys.dont_write_bytecode = True  # no bench/torch/__pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import TBlock, setup, timed  # noqa: E402

opts, args = setup(steps=0, split_impl="demo")  # steps 0: each figure's own count
threads, steps_override, SPLIT_IMPL = opts.threads, opts.steps, opts.split_impl
CHANNELS_LAST = "--nchw" not in args
if not CHANNELS_LAST:
    args.remove("--nchw")
which = args or ["moco-v2", "moco-v3"]


class SplitBatchNorm(nn.BatchNorm2d):
    """The official MoCo CIFAR-10 demo's SplitBatchNorm (reshape instead of view: works in channels_last).
    --split-impl chunk: F.batch_norm on each group's chunk of the batch, then cat (no layout change)."""

    def __init__(self, num_features, num_splits, **kw):
        super().__init__(num_features, **kw)
        self.num_splits = num_splits

    def forward(self, input):
        N, C, H, W = input.shape
        if self.training and SPLIT_IMPL == "chunk":
            outs, means, vars_ = [], [], []
            for part in input.chunk(self.num_splits, 0):
                rm, rv = self.running_mean.clone(), self.running_var.clone()
                outs.append(F.batch_norm(part, rm, rv, self.weight, self.bias, True, self.momentum, self.eps))
                means.append(rm); vars_.append(rv)
            self.running_mean.data.copy_(torch.stack(means).mean(0)); self.running_var.data.copy_(torch.stack(vars_).mean(0))
            return torch.cat(outs, 0)
        if self.training or not self.track_running_stats:
            running_mean_split = self.running_mean.repeat(self.num_splits)
            running_var_split = self.running_var.repeat(self.num_splits)
            outcome = F.batch_norm(
                input.reshape(-1, C * self.num_splits, H, W), running_mean_split, running_var_split,
                self.weight.repeat(self.num_splits), self.bias.repeat(self.num_splits),
                True, self.momentum, self.eps).reshape(N, C, H, W)
            self.running_mean.data.copy_(running_mean_split.view(self.num_splits, C).mean(dim=0))
            self.running_var.data.copy_(running_var_split.view(self.num_splits, C).mean(dim=0))
            return outcome
        return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias, False, self.momentum, self.eps)


class Block(nn.Module):
    def __init__(s, cin, cout, stride, bn):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.b1 = bn(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.b2 = bn(cout)
        s.down = None
        if stride != 1 or cin != cout:
            s.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))

    def forward(s, x):
        o = s.b2(s.c2(F.relu(s.b1(s.c1(x)))))
        return F.relu(o + (s.down(x) if s.down is not None else x))


def resnet_small(bn, cin=3, widths=(32, 64, 128, 256)):
    layers = [nn.Conv2d(cin, widths[0], 3, 1, 1, bias=False), bn(widths[0]), nn.ReLU()]
    c = widths[0]
    for i, w in enumerate(widths):
        layers.append(Block(c, w, 1 if i == 0 else 2, bn)); c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def moco_v2():
    B, K, T, M, G = 128, 4096, 0.2, 0.99, 8
    bn = lambda c: SplitBatchNorm(c, G)
    fmt = torch.channels_last if CHANNELS_LAST else torch.contiguous_format
    enc_q = nn.Sequential(resnet_small(bn), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 128)).to(memory_format=fmt)
    enc_k = copy.deepcopy(enc_q)
    for p in enc_k.parameters():
        p.requires_grad = False
    queue = F.normalize(torch.randn(128, K), dim=0)
    ptr = [0]
    opt = torch.optim.AdamW(enc_q.parameters(), lr=1e-3, weight_decay=1e-6)
    im_q = torch.rand(B, 3, 32, 32).to(memory_format=fmt)
    im_k = torch.rand(B, 3, 32, 32).to(memory_format=fmt)

    def step():
        nonlocal queue
        q = F.normalize(enc_q(im_q), dim=1)
        with torch.no_grad():
            idx_shuffle = torch.randperm(B); idx_unshuffle = torch.argsort(idx_shuffle)
            k = F.normalize(enc_k(im_k[idx_shuffle]), dim=1)[idx_unshuffle]
        l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", [q, queue.clone().detach()])
        logits = torch.cat([l_pos, l_neg], dim=1) / T
        loss = F.cross_entropy(logits, torch.zeros(B, dtype=torch.long))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        with torch.no_grad():
            for pq, pk in zip(enc_q.parameters(), enc_k.parameters()):
                pk.data = pk.data * M + pq.data * (1.0 - M)
            queue[:, ptr[0]:ptr[0] + B] = k.t()
            ptr[0] = (ptr[0] + B) % K
    s = timed(step, 2, steps_override or 5)
    return {"figure": "moco-v2-resnet-small", "imagesPerSec": round(B / s, 1), "stepMs": round(1000 * s, 1), "splitBn": SPLIT_IMPL, "channelsLast": CHANNELS_LAST}


class ViTTiny(nn.Module):
    def __init__(s, P=4, D=128, L=49):
        super().__init__()
        s.P = P
        s.embed = nn.Linear(P * P, D); s.cls = nn.Parameter(torch.zeros(1, 1, D)); s.register_buffer("pos", torch.randn(1, L + 1, D) * 0.02)
        s.blocks = nn.Sequential(*[TBlock(D, 4) for _ in range(4)]); s.norm = nn.LayerNorm(D, eps=1e-6)

    def forward(s, x):
        B, P = x.shape[0], s.P
        patches = x.unfold(2, P, P).unfold(3, P, P).reshape(B, -1, P * P)
        h = torch.cat([s.cls.expand(B, -1, -1), s.embed(patches)], 1) + s.pos
        return s.norm(s.blocks(h))[:, 0]


def build_mlp(num_layers, d_in, d_mlp, d_out, last_bn=True):
    """moco-v3's _build_mlp."""
    mlp = []
    for l in range(num_layers):
        d1 = d_in if l == 0 else d_mlp
        d2 = d_out if l == num_layers - 1 else d_mlp
        mlp.append(nn.Linear(d1, d2, bias=False))
        if l < num_layers - 1:
            mlp += [nn.BatchNorm1d(d2), nn.ReLU(inplace=True)]
        elif last_bn:
            mlp.append(nn.BatchNorm1d(d2, affine=False))
    return nn.Sequential(*mlp)


def moco_v3():
    B, T, M = 128, 0.2, 0.99
    base, proj, pred = ViTTiny(), build_mlp(3, 128, 512, 128), build_mlp(2, 128, 512, 128, last_bn=False)
    m_base, m_proj = copy.deepcopy(base), copy.deepcopy(proj)
    for p in list(m_base.parameters()) + list(m_proj.parameters()):
        p.requires_grad = False
    params = list(base.parameters()) + list(proj.parameters()) + list(pred.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-6)
    x1, x2 = torch.rand(B, 1, 28, 28), torch.rand(B, 1, 28, 28)

    def ctr(q, k):
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        return F.cross_entropy(q @ k.t() / T, torch.arange(B)) * (2 * T)

    def step():
        h = base(torch.cat([x1, x2]))
        q1, q2 = pred(proj(h[:B])), pred(proj(h[B:]))
        with torch.no_grad():
            hk = m_base(torch.cat([x1, x2]))
            k1, k2 = m_proj(hk[:B]), m_proj(hk[B:])
        loss = ctr(q1, k2) + ctr(q2, k1)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        with torch.no_grad():
            for a, b in ((base, m_base), (proj, m_proj)):
                for pq, pk in zip(a.parameters(), b.parameters()):
                    pk.data = pk.data * M + pq.data * (1.0 - M)
    s = timed(step, 3, steps_override or 10)
    return {"figure": "moco-v3-vit-tiny", "imagesPerSec": round(B / s, 1), "stepMs": round(1000 * s, 1)}


for w in which:
    r = {"moco-v2": moco_v2, "moco-v3": moco_v3}[w]()
    r.update({"bench": "torch-moco", "torch": torch.__version__, "threads": threads})
    print(json.dumps(r), flush=True)
