#!/usr/bin/python3
"""PyTorch (Debian python3-torch, CPU) reference of sslkit's bench/step-sdmp.ts: MoCo v3 and MoCo v3 + SDMP.

ViT-tiny on 28x28x1 (patch 4, dim 128, depth 4, heads 4, class token), batch 128. MoCo v3: the
projector Linear(512)-BN-ReLU-Linear(512)-BN-ReLU-Linear(128)-BN(no affine) and the predictor
Linear(512)-BN-ReLU-Linear(128), no biases before a BN; the momentum encoder (backbone + projector,
no grad); ctr(q, k) = CE(q k^T / t, arange(N)) * 2t, t = 0.2; AdamW; the EMA update
(torch._foreach_*). "moco-v3": L = ctr(q1, k2) + ctr(q2, k1). "sdmp": the same plus SDMP's
mixed view (official builder.py / README): queries of x1, x2 and mix(x2) (one backbone pass, the
heads per view), keys of x1, x2 and mix(x1), L += 2t [CE(q~ k1^T / t, label1) + CE(q~ k~1^T / t,
label2)] with label1 = lam I + (1 - lam) I.flip, label2 = (I + lam_c I.flip) / (1 + lam_c). The views
and the mixes (CutMix boxes, lambda ~ Beta(1, 1)) are made once, outside the timed step (as
torch_ref.py's SimCLR): compare with step-sdmp.ts's modelImagesPerSec. "moco-v3-same-work": the plain
step at 1.5x the batch (the SDMP step's backbone work). One JSON line per figure.
usage: sdmp.py [moco-v3|sdmp|moco-v3-same-work ...] [--threads N] [--steps N] [--batch N (128)]
"""
import copy, json, os, sys
import torch
import torch.nn as nn
import torch.nn.functional as F
sys.dont_write_bytecode = True  # no bench/torch/__pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import TBlock, setup, timed  # noqa: E402

opts, args = setup(steps=10, batch=128)
B = opts.batch
which = args or ["moco-v3", "sdmp", "moco-v3-same-work"]
if any(w not in ("moco-v3", "sdmp", "moco-v3-same-work") for w in which) or B < 2 or B % 2:
    sys.exit(f"sdmp.py: figures are moco-v3, sdmp, moco-v3-same-work and --batch an even number >= 2; got {which}, {B}")
P, D, L, S, T = 4, 128, 49, 28, 0.2


def patchify(x):  # [N,1,28,28] -> [N,49,16]
    return x.unfold(2, P, P).unfold(3, P, P).reshape(x.shape[0], L, P * P)


class ViT(nn.Module):
    def __init__(s):
        super().__init__()
        s.embed = nn.Linear(P * P, D); s.cls = nn.Parameter(torch.randn(1, 1, D) * 0.02)
        s.register_buffer("pos", torch.randn(1, L + 1, D) * 0.02)
        s.blocks = nn.Sequential(*[TBlock(D, 4) for _ in range(4)]); s.norm = nn.LayerNorm(D, eps=1e-6)

    def forward(s, x):
        t = s.embed(patchify(x))
        h = torch.cat([s.cls.expand(x.shape[0], -1, -1), t], 1) + s.pos
        return s.norm(s.blocks(h))[:, 0]


def projector():
    return nn.Sequential(nn.Linear(D, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(),
                         nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(),
                         nn.Linear(512, 128, bias=False), nn.BatchNorm1d(128, affine=False))


def predictor():
    return nn.Sequential(nn.Linear(128, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 128, bias=False))


def ctr(q, k):
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).t() / T
    return F.cross_entropy(logits, torch.arange(q.shape[0])) * (2 * T)


def soft_ce(q, k, target):
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).t() / T
    return -(target * F.log_softmax(logits, 1)).sum(1).mean()


def cutmix_like(x, lam):
    """CutMix with the reversed batch (timm's rand_bbox, clipped); returns the realised lambdas."""
    xm, flip, out = x.clone(), x.flip(0), []
    for i in range(x.shape[0]):
        r = (1 - lam[i].item()) ** 0.5; ch, cw = int(S * r), int(S * r)
        cy, cx = torch.randint(0, S, (2,)).tolist()
        y0, y1 = max(0, cy - ch // 2), min(S, cy + ch - ch // 2); x0, x1 = max(0, cx - cw // 2), min(S, cx + cw - cw // 2)
        xm[i, :, y0:y1, x0:x1] = flip[i, :, y0:y1, x0:x1]
        out.append(1 - (y1 - y0) * (x1 - x0) / (S * S))
    return xm, torch.tensor(out)


def moco(sdmp, B):
    vit, proj, pred = ViT(), projector(), predictor()
    online = nn.ModuleList([vit, proj, pred])
    opt = torch.optim.AdamW(online.parameters(), lr=1e-3, weight_decay=0.1)
    mom = copy.deepcopy(nn.ModuleList([vit, proj]))
    for p in mom.parameters():
        p.requires_grad_(False)
    o_params, m_params = list(vit.parameters()) + list(proj.parameters()), list(mom.parameters())
    x1, x2 = torch.rand(B, 1, S, S), torch.rand(B, 1, S, S)
    lam = torch.distributions.Beta(1.0, 1.0).sample((B,))
    m1, lam = cutmix_like(x1, lam)
    m2 = x2.clone(); flip = x2.flip(0)  # the same boxes on view 2: paste where m1 took the partner
    same = (m1 == x1).all(1, keepdim=True)
    m2 = torch.where(same, x2, flip)
    eye = torch.eye(B); eflip = eye.flip(0); lf = lam.flip(0)
    lc = torch.minimum(lam, 1 - lf) + torch.minimum(1 - lam, lf)
    label1 = lam[:, None] * eye + (1 - lam[:, None]) * eflip
    label2 = (eye + lc[:, None] * eflip) / (1 + lc[:, None])
    nv = 3 if sdmp else 2

    def step():
        h = vit(torch.cat([x1, x2, m2] if sdmp else [x1, x2]))
        q = [pred(proj(y)) for y in h.chunk(nv)]
        with torch.no_grad():
            hk = mom[0](torch.cat([x1, x2, m1] if sdmp else [x1, x2]))
            k = [mom[1](y) for y in hk.chunk(nv)]
        loss = ctr(q[0], k[1]) + ctr(q[1], k[0])
        if sdmp:
            loss = loss + 2 * T * (soft_ce(q[2], k[0], label1) + soft_ce(q[2], k[2], label2))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        with torch.no_grad():
            torch._foreach_mul_(m_params, 0.99); torch._foreach_add_(m_params, o_params, alpha=0.01)

    s = timed(step, 2, opts.steps)
    return {"figure": "moco-v3-sdmp-vit-tiny" if sdmp else "moco-v3-vit-tiny", "batch": B, "stepMsMedian": round(1000 * s, 1),
            "imagesPerSec": round(B / s, 1), "params": sum(p.numel() for p in online.parameters())}


for w in which:
    if w == "moco-v3-same-work":  # the SDMP step's backbone work: the plain step at 1.5x the batch
        r = {**moco(False, B * 3 // 2), "figure": "moco-v3-vit-tiny-same-work"}
    else:
        r = moco(w == "sdmp", B)
    print(json.dumps({"bench": "torch-sdmp", **r, "threads": opts.threads, "torch": torch.__version__}), flush=True)
