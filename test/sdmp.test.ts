/**
 * SDMP: the intra-batch mixing ops (partner = reversed batch, realised lambda = share of each
 * image's own pixels, seeded), Beta sampling and the per-batch strategy choice, sdmpLoss against
 * hand-computed values and gradients, the DINO form's targets, and the MoCo v3 / DINO variants
 * (views, steps, activation recomputation, no leaks, exact resume, CLI options, CLI smoke runs),
 * and the soft-label heatmap spec.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { expectExactResume, expectNoLeakPerStep, relError, runCliSmoke, squaresDataset, tf, trainSteps, useBackend } from "./helpers";
import { Rng } from "../lib/src/random";
import {
  MIX_STRATEGIES,
  applyMixPlan,
  chooseMixStrategy,
  cutmix,
  mixup,
  pasteResized,
  resizemix,
  sampleBeta,
  sampleMixPlan,
} from "../lib/src/augment/mixing";
import type { MixStrategy } from "../lib/src/augment/mixing";
import { sdmpDistillationTerms, sdmpLoss, sdmpLossTerms, sdmpTargets } from "../lib/src/losses/sdmp";
import { MoCoV3 } from "../lib/src/methods/moco-v3";
import { DINOSDMP, MoCoV3SDMP, sdmpOptionsFromConfig } from "../lib/src/methods/sdmp";
import type { SdmpOptions } from "../lib/src/methods/sdmp";
import { createMethod, methodConfig } from "../lib/src/methods";
import { parseTrainArgs } from "../lib/src/cli";
import { vitTiny } from "../lib/src/nn/vit";
import { resnetTiny } from "../lib/src/nn/resnet";
import type { TrainerOptions } from "../lib/src/train";
import type { SSLMethod } from "../lib/src/methods/types";

const N = 8;
const H = 12;
const W = 10;

/** Image i is the constant (i + 1) / 10 (two channels would do; one keeps it simple). */
function constantBatch(n = N, h = H, w = W): tf.Tensor4D {
  return tf.tidy(() => tf.mul(tf.ones([n, h, w, 1]), tf.reshape(tf.range(1, n + 1).div(10), [n, 1, 1, 1])) as tf.Tensor4D);
}

const maxAbs = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

/** Per image: the share of its pixels equal to its own value, and whether every other pixel is its partner's. */
function ownShares(mixed: tf.Tensor4D): { own: number[]; restIsPartner: boolean[] } {
  const [n, h, w] = mixed.shape;
  const v = mixed.dataSync();
  const own: number[] = [];
  const restIsPartner: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const mine = (i + 1) / 10;
    const partner = (n - i) / 10;
    let count = 0;
    let ok = true;
    for (let p = 0; p < h * w; p++) {
      const x = v[i * h * w + p];
      if (Math.abs(x - mine) < 1e-6) count++;
      else if (Math.abs(x - partner) > 1e-6) ok = false;
    }
    own.push(count / (h * w));
    restIsPartner.push(ok);
  }
  return { own, restIsPartner };
}

test("mixup: image i becomes lam_i x_i + (1 - lam_i) x_{N-1-i}", async () => {
  await useBackend("wasm");
  const x = tf.tidy(() => tf.randomUniform([4, 3, 3, 1], 0, 1, "float32", 7) as tf.Tensor4D);
  const lam = [0.9, 0.25, 0.5, 0];
  const before = tf.memory().numTensors;
  const mixed = mixup(x, lam);
  assert.equal(tf.memory().numTensors, before + 1);
  const xs = x.arraySync() as number[][][][];
  const ms = mixed.arraySync() as number[][][][];
  for (let i = 0; i < 4; i++) {
    for (let y = 0; y < 3; y++) {
      for (let c = 0; c < 3; c++) {
        const want = lam[i] * xs[i][y][c][0] + (1 - lam[i]) * xs[3 - i][y][c][0];
        assert.ok(Math.abs(ms[i][y][c][0] - want) < 1e-6);
      }
    }
  }
  const viaTensor = tf.tidy(() => mixup(x, tf.tensor1d(lam)));
  assert.ok(tf.tidy(() => tf.max(tf.abs(tf.sub(viaTensor, mixed))).dataSync()[0]) < 1e-7);
  assert.throws(() => mixup(x, [0.5, 0.5]), /one value per image/);
  assert.throws(() => mixup(x, [0.5, 0.5, 1.5, 0]), /\[0, 1\]/);
  tf.dispose([x, mixed, viaTensor]);
});

test("cutmix: a box of the reversed batch; realised lambda = share of own pixels; seeded", async () => {
  await useBackend("wasm");
  const x = constantBatch();
  const lam = [0.1, 0.3, 0.5, 0.7, 0.9, 0.2, 0.6, 1];
  const a = cutmix(x, lam, new Rng(11));
  const b = cutmix(x, lam, new Rng(11));
  const { own, restIsPartner } = ownShares(a.mixed);
  for (let i = 0; i < N; i++) {
    assert.ok(Math.abs(own[i] - a.lam[i]) < 1e-9, `image ${i}: own share ${own[i]}, realised lam ${a.lam[i]}`);
    assert.ok(restIsPartner[i], `image ${i}: pasted pixels come from image ${N - 1 - i}`);
    // clipping can only shrink the box, so the realised lambda is >= the drawn one (up to flooring)
    assert.ok(a.lam[i] >= lam[i] - 1e-9, `image ${i}: realised ${a.lam[i]} < drawn ${lam[i]}`);
  }
  assert.equal(a.lam[7], 1, "lam 1: no box");
  assert.deepEqual(a.lam, b.lam);
  assert.equal(tf.tidy(() => tf.max(tf.abs(tf.sub(a.mixed, b.mixed))).dataSync()[0]), 0, "same seed, same mix");
  // another seed puts the boxes elsewhere; an unclipped box has floor(sqrt(1 - lam) side) pixels a side
  const c = cutmix(x, new Array(N).fill(0.5), new Rng(12));
  const d = cutmix(x, new Array(N).fill(0.5), new Rng(13));
  assert.ok(maxAbs(c.mixed, d.mixed) > 0, "different seeds, different boxes");
  for (const l of c.lam) assert.ok(l >= 1 - (Math.floor(H * Math.SQRT1_2) * Math.floor(W * Math.SQRT1_2)) / (H * W) - 1e-9);
  tf.dispose([x, a.mixed, b.mixed, c.mixed, d.mixed]);
});

test("resizemix: the whole partner resized into a box of side share in scale; realised lambda; seeded", async () => {
  await useBackend("wasm");
  const x = constantBatch();
  const r1 = resizemix(x, new Rng(5), { scale: [0.1, 0.8] });
  const r2 = resizemix(x, new Rng(5));
  const { own, restIsPartner } = ownShares(r1.mixed);
  for (let i = 0; i < N; i++) {
    assert.ok(Math.abs(own[i] - r1.lam[i]) < 1e-9, `image ${i}: own share ${own[i]} vs lam ${r1.lam[i]}`);
    assert.ok(restIsPartner[i], `image ${i}: the patch is image ${N - 1 - i}`);
    const side = Math.sqrt(1 - r1.lam[i]); // square share for a square-ish box: between 0.1 and 0.8 of each side
    assert.ok(side >= 0.05 && side <= 0.85, `side share ${side}`);
  }
  assert.deepEqual(r1.lam, r2.lam, "default scale is ResizeMix's [0.1, 0.8]; same seed, same boxes");
  assert.throws(() => resizemix(x, new Rng(1), { scale: [0.5, 1.2] }), /scale/);
  tf.dispose([x, r1.mixed, r2.mixed]);
});

test("pasteResized: a half-size box holds the partner average-pooled 2x2; a full box is the partner", async () => {
  await useBackend("wasm");
  const x = tf.tidy(() => tf.randomUniform([2, 8, 8, 3], 0, 1, "float32", 3) as tf.Tensor4D);
  const half = pasteResized(x, [
    { top: 2, left: 4, height: 4, width: 4 },
    { top: 0, left: 0, height: 4, width: 4 },
  ]);
  const pooled = tf.tidy(() => tf.avgPool(tf.reverse(x, 0) as tf.Tensor4D, 2, 2, "valid"));
  const got = tf.tidy(() => tf.slice(half, [0, 2, 4, 0], [1, 4, 4, 3]));
  assert.ok(tf.tidy(() => tf.max(tf.abs(tf.sub(got, tf.slice(pooled, [0, 0, 0, 0], [1, 4, 4, 3])))).dataSync()[0]) < 1e-6);
  const outside = tf.tidy(() => tf.max(tf.abs(tf.sub(tf.slice(half, [0, 0, 0, 0], [1, 2, 8, 3]), tf.slice(x, [0, 0, 0, 0], [1, 2, 8, 3])))).dataSync()[0]);
  assert.equal(outside, 0, "pixels outside the box are untouched");
  const full = pasteResized(x, [
    { top: 0, left: 0, height: 8, width: 8 },
    { top: 0, left: 0, height: 8, width: 8 },
  ]);
  assert.ok(tf.tidy(() => tf.max(tf.abs(tf.sub(full, tf.reverse(x, 0)))).dataSync()[0]) < 1e-6);
  tf.dispose([x, half, pooled, got, full]);
});

test("sampleBeta: seeded Beta(a, a) with the right mean and variance", () => {
  for (const alpha of [1, 0.2, 4]) {
    const v = sampleBeta(new Rng(1), 20000, alpha);
    assert.deepEqual(v.slice(0, 5), sampleBeta(new Rng(1), 5, alpha));
    assert.ok(v.every((x) => x >= 0 && x <= 1));
    const mean = v.reduce((s, x) => s + x, 0) / v.length;
    const variance = v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length;
    const want = 1 / (4 * (2 * alpha + 1));
    assert.ok(Math.abs(mean - 0.5) < 0.01, `alpha ${alpha}: mean ${mean}`);
    assert.ok(Math.abs(variance - want) < 0.08 * want, `alpha ${alpha}: variance ${variance}, want ${want}`);
  }
  assert.throws(() => sampleBeta(new Rng(1), 3, 0), /alpha/);
});

test("strategy choice: one strategy per batch, uniform over the enabled set, seeded", () => {
  const rng = new Rng(3);
  const counts: Record<string, number> = { mixup: 0, cutmix: 0, resizemix: 0 };
  for (let t = 0; t < 3000; t++) counts[chooseMixStrategy(rng, MIX_STRATEGIES)]++;
  for (const s of MIX_STRATEGIES) assert.ok(Math.abs(counts[s] / 3000 - 1 / 3) < 0.03, `${s}: ${counts[s]}`);
  const two: MixStrategy[] = ["mixup", "resizemix"];
  const seen = new Set<string>();
  for (let t = 0; t < 200; t++) seen.add(sampleMixPlan(rng, 4, 8, 8, { strategies: two }).strategy);
  assert.deepEqual([...seen].sort(), ["mixup", "resizemix"]);
  for (let t = 0; t < 20; t++) assert.equal(sampleMixPlan(rng, 4, 8, 8, { strategies: ["cutmix"] }).strategy, "cutmix");
  assert.deepEqual(sampleMixPlan(new Rng(9), 6, 8, 8), sampleMixPlan(new Rng(9), 6, 8, 8), "a plan is a pure function of the seed");
  assert.throws(() => chooseMixStrategy(rng, []), /at least one/);
  assert.throws(() => chooseMixStrategy(rng, ["mixup", "blend" as MixStrategy]), /unknown strategy 'blend'/);
});

test("applyMixPlan: one plan mixes two views with the same boxes and lambdas", async () => {
  await useBackend("wasm");
  const x = constantBatch();
  const y = tf.tidy(() => tf.add(constantBatch(), 0) as tf.Tensor4D);
  for (const strategy of MIX_STRATEGIES) {
    const plan = sampleMixPlan(new Rng(21), N, H, W, { strategies: [strategy], alpha: 0.8 });
    const [mx, my] = [applyMixPlan(x, plan), applyMixPlan(y, plan)];
    assert.equal(tf.tidy(() => tf.max(tf.abs(tf.sub(mx, my))).dataSync()[0]), 0, strategy);
    if (strategy !== "mixup") {
      const { own } = ownShares(mx);
      own.forEach((s, i) => assert.ok(Math.abs(s - plan.lam[i]) < 1e-9, `${strategy} image ${i}`));
    }
    tf.dispose([mx, my]);
  }
  tf.dispose([x, y]);
});

// ---- sdmpLoss ----------------------------------------------------------------------------------

/** The pseudo-code in float64 with plain loops. */
function referenceSdmp(q: number[][], ks: number[][], km: number[][], lam: number[], t: number): number {
  const n = q.length;
  const unit = (r: number[]) => {
    const s = Math.sqrt(r.reduce((a, v) => a + v * v, 0));
    return r.map((v) => v / s);
  };
  const [qn, ksn, kmn] = [q.map(unit), ks.map(unit), km.map(unit)];
  const ce = (k: number[][], label: (i: number, j: number) => number) => {
    let total = 0;
    for (let i = 0; i < n; i++) {
      const logits = k.map((kj) => kj.reduce((a, v, d) => a + v * qn[i][d], 0) / t);
      const m = Math.max(...logits);
      const lse = m + Math.log(logits.reduce((a, v) => a + Math.exp(v - m), 0));
      for (let j = 0; j < n; j++) total -= label(i, j) * (logits[j] - lse);
    }
    return total / n;
  };
  const eye = (i: number, j: number) => (i === j ? 1 : 0);
  const flip = (i: number, j: number) => (j === n - 1 - i ? 1 : 0);
  const lc = lam.map((l, i) => Math.min(l, 1 - lam[n - 1 - i]) + Math.min(1 - l, lam[n - 1 - i]));
  const loss1 = ce(ksn, (i, j) => lam[i] * eye(i, j) + (1 - lam[i]) * flip(i, j));
  const loss2 = ce(kmn, (i, j) => (eye(i, j) + lc[i] * flip(i, j)) / (1 + lc[i]));
  return loss1 + loss2;
}

test("sdmpLoss: hand-computed value and gradient (N = 2, D = 2)", async () => {
  await useBackend("wasm");
  // q and kSource normalise to I, kMix to [[0.6, 0.8], [0.6, -0.8]]; tau = 0.5, lam = [0.7, 0.4]
  const q = tf.tensor2d([[3, 0], [0, 2]]);
  const ks = tf.tensor2d([[1, 0], [0, 5]]);
  const km = tf.tensor2d([[1.2, 1.6], [0.3, -0.4]]);
  const lam = [0.7, 0.4];
  const L = Math.log(Math.exp(2) + 1);
  // loss1: logits 2I, labels [[0.7, 0.3], [0.6, 0.4]] -> L - 1.1
  const loss1 = L - 1.1;
  // lam_c = min(.7, .6) + min(.3, .4) = 0.9 for both rows; loss2 rows: logits [1.2, 1.2] and [1.6, -1.6]
  const lse = Math.log(Math.exp(1.6) + Math.exp(-1.6));
  const loss2 = (Math.log(2) + lse + 0.16 / 1.9) / 2;
  const before = tf.memory().numTensors;
  const terms = sdmpLossTerms(q, ks, km, lam, 0.5);
  const total = sdmpLoss(q, ks, km, lam, 0.5);
  assert.ok(Math.abs(terms.source.dataSync()[0] - loss1) < 1e-5, `loss1 ${terms.source.dataSync()[0]} vs ${loss1}`);
  assert.ok(Math.abs(terms.mix.dataSync()[0] - loss2) < 1e-5, `loss2 ${terms.mix.dataSync()[0]} vs ${loss2}`);
  assert.ok(Math.abs(total.dataSync()[0] - (loss1 + loss2)) < 1e-5);
  tf.dispose([terms.source, terms.mix, total]);
  assert.equal(tf.memory().numTensors, before, "no leak");
  // d loss / d qMix by hand: s = softmax(2, 0)_0; the normalisation keeps the component orthogonal to q
  const s = Math.exp(2) / (Math.exp(2) + 1);
  const want = [
    [0, (0.7 - s - 0.16 / 3.8) / 3],
    [(0.4 - s) / 2, 0],
  ];
  const g = tf.grad((qq: tf.Tensor) => sdmpLoss(qq as tf.Tensor2D, ks, km, lam, 0.5))(q);
  const gv = g.arraySync() as number[][];
  for (let i = 0; i < 2; i++) for (let d = 0; d < 2; d++) assert.ok(Math.abs(gv[i][d] - want[i][d]) < 1e-5, `grad[${i}][${d}] ${gv[i][d]} vs ${want[i][d]}`);
  tf.dispose([q, ks, km, g]);
});

test("sdmpLoss: matches the float64 pseudo-code on random inputs (odd and even N); finite-difference gradient", async () => {
  await useBackend("wasm");
  const rng = new Rng(4);
  for (const n of [5, 6]) {
    const rand = () => Array.from({ length: n }, () => Array.from({ length: 3 }, () => rng.normal()));
    const [q, ks, km] = [rand(), rand(), rand()];
    const lam = Array.from({ length: n }, () => rng.next());
    for (const t of [0.2, 1]) {
      const got = tf.tidy(() => sdmpLoss(tf.tensor2d(q), tf.tensor2d(ks), tf.tensor2d(km), tf.tensor1d(lam), t).dataSync()[0]);
      const want = referenceSdmp(q, ks, km, lam, t);
      assert.ok(Math.abs(got - want) < 1e-4 * Math.max(1, want), `n=${n} t=${t}: ${got} vs ${want}`);
    }
    const g = tf.tidy(() => tf.grad((qq: tf.Tensor) => sdmpLoss(qq as tf.Tensor2D, tf.tensor2d(ks), tf.tensor2d(km), lam, 0.5))(tf.tensor2d(q)).arraySync() as number[][]);
    const eps = 1e-5;
    for (const [i, d] of [[0, 0], [n - 1, 2], [2, 1]]) {
      const plus = q.map((r) => r.slice());
      const minus = q.map((r) => r.slice());
      plus[i][d] += eps;
      minus[i][d] -= eps;
      const fd = (referenceSdmp(plus, ks, km, lam, 0.5) - referenceSdmp(minus, ks, km, lam, 0.5)) / (2 * eps);
      assert.ok(Math.abs(g[i][d] - fd) < 2e-4, `n=${n} grad[${i}][${d}] ${g[i][d]} vs finite difference ${fd}`);
    }
  }
});

test("sdmpTargets: rows sum to 1, the partner column carries 1 - lam / lam_c; naive = one-hot; bad input", async () => {
  await useBackend("wasm");
  const lam = [1, 0.25, 0.5, 0.9];
  const t = sdmpTargets(lam);
  const src = t.source.arraySync() as number[][];
  const mix = t.mix.arraySync() as number[][];
  assert.deepEqual(src.map((r) => r.map((v) => +v.toFixed(6))), [
    [1, 0, 0, 0],
    [0, 0.25, 0.75, 0],
    [0, 0.5, 0.5, 0],
    [0.1, 0, 0, 0.9],
  ]);
  // lam_c: rows 0/3 share min(1, 0.1) + min(0, 0.9) = 0.1; rows 1/2 share min(.25, .5) + min(.75, .5) = 0.75
  assert.ok(Math.abs(mix[0][3] - 0.1 / 1.1) < 1e-6 && Math.abs(mix[0][0] - 1 / 1.1) < 1e-6);
  assert.ok(Math.abs(mix[1][2] - 0.75 / 1.75) < 1e-6 && Math.abs(mix[2][1] - 0.75 / 1.75) < 1e-6);
  for (const r of [...src, ...mix]) assert.ok(Math.abs(r.reduce((a, v) => a + v, 0) - 1) < 1e-6);
  const naive = sdmpTargets(lam, { naive: true });
  assert.deepEqual(naive.source.arraySync(), tf.tidy(() => tf.eye(4).arraySync()));
  const z = tf.zeros([4, 3]) as tf.Tensor2D;
  assert.throws(() => sdmpLoss(z, z, tf.zeros([3, 3]) as tf.Tensor2D, lam, 0.2), /\[N, D\]/);
  assert.throws(() => sdmpLoss(z, z, z, [0.5, 0.5], 0.2), /one value per row/);
  assert.throws(() => sdmpLoss(z, z, z, lam, 0), /temperature/);
  tf.dispose([t.source, t.mix, naive.source, naive.mix, z]);
});

// ---- MoCoV3SDMP and DINOSDMP -------------------------------------------------------------------

const identity = (x: tf.Tensor4D) => tf.clone(x);
const tiny = (seed: number) => vitTiny({ imageSize: 16, inChannels: 1, seed });

function tinyMoco(mix: SdmpOptions, seed = 0, identityViews = false): MoCoV3SDMP {
  const base = new MoCoV3({
    backbone: tiny(seed), keyBackbone: tiny(seed), inputShape: [16, 16, 1], temperature: 0.2,
    projectionHiddenDim: 32, projectionDim: 16, cropScale: [0.3, 1], seed,
    ...(identityViews ? { transforms: [identity, identity] as [typeof identity, typeof identity] } : {}),
  });
  return new MoCoV3SDMP(base, mix);
}

function tinyDino(mix: SdmpOptions, seed = 0): DINOSDMP {
  return new DINOSDMP({
    backbone: tiny(seed), teacherBackbone: tiny(seed), inputShape: [16, 16, 1], outDim: 64, headHiddenDim: 32, bottleneckDim: 16,
    numLocalCrops: 2, localCropSize: 8, globalCropScale: [0.4, 1], localCropScale: [0.05, 0.4], freezeLastLayerEpochs: 0, seed,
  }, mix);
}

test("MoCoV3SDMP views: [x1, x2, mix(x1), mix(x2), lambdas], one strategy and one plan per batch", async () => {
  await useBackend("wasm");
  const x = constantBatch(8, 16, 16);
  for (const strategy of MIX_STRATEGIES) {
    const m = tinyMoco({ strategies: [strategy], alpha: 0.5 }, 0, true);
    const v = m.views(x, { step: 0, totalSteps: 1, epoch: 0, rng: new Rng(2) });
    assert.equal(v.length, 5);
    assert.deepEqual(v[4].shape, [8, 1, 1, 1]);
    const lam = Array.from(v[4].dataSync());
    assert.equal(maxAbs(v[0], x), 0);
    assert.equal(maxAbs(v[2], v[3]), 0, `${strategy}: both views mixed with the same plan`);
    if (strategy === "mixup") {
      const want = tf.tidy(() => mixup(x, lam));
      assert.ok(maxAbs(v[2], want) < 1e-6);
      want.dispose();
    } else {
      ownShares(v[2]).own.forEach((s, i) => assert.ok(Math.abs(s - lam[i]) < 1e-6, `${strategy} image ${i}: share ${s} vs lam ${lam[i]}`));
    }
    tf.dispose(v);
    m.dispose();
  }
  // all three enabled: every batch is either all blends (mixup) or all region pastes
  const m = tinyMoco({}, 0, true);
  const kinds = new Set<string>();
  for (let s = 0; s < 12; s++) {
    const v = m.views(x, { step: s, totalSteps: 12, epoch: 0, rng: new Rng(100 + s) });
    const lam = Array.from(v[4].dataSync());
    const { restIsPartner } = ownShares(v[2]);
    const region = restIsPartner.every((ok) => ok);
    const blend = tf.tidy(() => maxAbs(v[2], mixup(x, lam))) < 1e-6;
    assert.ok(region !== blend || lam.every((l) => l === 1), `batch ${s}: one strategy for the whole batch`);
    kinds.add(region ? "region" : "blend");
    tf.dispose(v);
  }
  assert.deepEqual([...kinds].sort(), ["blend", "region"]);
  m.dispose();
  x.dispose();
  assert.throws(() => tinyMoco({ strategies: [] }), /at least one mixing strategy/);
  assert.throws(() => tinyMoco({ alpha: -1 }), /alpha must be a positive number/);
});

test("MoCoV3SDMP step: L = ctr(q1,k2) + ctr(q2,k1) + 2t sdmpLoss(q~2, k1, k~1); naive uses one-hot labels; no gradient to the keys", async () => {
  await useBackend("wasm");
  const ds = squaresDataset(8, 16, 1);
  const x = tf.tidy(() => tf.div(tf.tensor4d(ds.images, [8, 16, 16, 1], "float32"), 255) as tf.Tensor4D);
  for (const naive of [false, true]) {
    const m = tinyMoco({ naive });
    const ctx = { step: 0, totalSteps: 10, epoch: 0, rng: new Rng(4) };
    const v = m.views(x, ctx);
    const before = tf.memory().numTensors;
    const [loss, moco, src, mix, acc] = tf.tidy(() => {
      const o = m.step(v, ctx);
      return [o.loss, o.metrics!.mocoLoss, o.metrics!.sdmpSource, o.metrics!.sdmpMix, o.metrics!.contrastiveAcc];
    });
    const ref = tf.tidy(() => {
      const [q1, q2, qm] = m.base.queryViews([v[0], v[1], v[3]]);
      const [k1, k2, km] = m.base.keyViews([v[0], v[1], v[2]]);
      const c = tf.add(m.base.contrastive(q1, k2), m.base.contrastive(q2, k1));
      const s = sdmpLoss(qm, k1, km, Array.from(v[4].dataSync()), 0.2, { naive });
      return [c, s, tf.add(c, tf.mul(s, 0.4))];
    });
    assert.ok(Math.abs(moco.dataSync()[0] - ref[0].dataSync()[0]) < 1e-5);
    assert.ok(Math.abs(src.dataSync()[0] + mix.dataSync()[0] - ref[1].dataSync()[0]) < 1e-5);
    assert.ok(Math.abs(loss.dataSync()[0] - ref[2].dataSync()[0]) < 1e-5, `${loss.dataSync()[0]} vs ${ref[2].dataSync()[0]}`);
    assert.ok(acc.dataSync()[0] >= 0 && acc.dataSync()[0] <= 1);
    tf.dispose([loss, moco, src, mix, acc, ...ref]);
    assert.equal(tf.memory().numTensors, before, "step leaks nothing");
    // gradients reach the online network only
    const { value, grads } = tf.variableGrads(() => m.step(v, ctx).loss, m.trainable.variables());
    assert.ok(Object.keys(grads).length > 0 && m.base.momentumEncoder.parameters().every((p) => !p.variable.trainable));
    tf.dispose([value, ...Object.values(grads), ...v]);
    m.dispose();
  }
  x.dispose();
});

test("MoCoV3SDMP recomputeViews: the same loss, gradients and BatchNorm statistics with activations recomputed in the backward", async () => {
  await useBackend("wasm");
  const ds = squaresDataset(8, 16, 3);
  const x = tf.tidy(() => tf.div(tf.tensor4d(ds.images, [8, 16, 16, 1], "float32"), 255) as tf.Tensor4D);
  for (const backbone of ["vit", "resnet"] as const) {
    const run = async (recomputeViews: number) => {
      const make = () => (backbone === "vit" ? tiny(1) : resnetTiny({ inChannels: 1, seed: 1 }));
      const base = new MoCoV3({ backbone: make(), keyBackbone: make(), inputShape: [16, 16, 1], projectionHiddenDim: 32, projectionDim: 16, seed: 1 });
      const m = new MoCoV3SDMP(base, { recomputeViews });
      const ctx = { step: 0, totalSteps: 4, epoch: 0, rng: new Rng(9) };
      const v = m.views(x, ctx);
      const before = tf.memory().numTensors;
      const { value, grads } = tf.variableGrads(() => m.step(v, ctx).loss, m.trainable.variables());
      const out = { loss: value.dataSync()[0], grads: Object.fromEntries(m.trainable.parameters().filter((p) => grads[p.variable.name]).map((p) => [p.name, Array.from(grads[p.variable.name].dataSync())])), weights: await m.trainable.getWeights() };
      tf.dispose([value, ...Object.values(grads)]);
      assert.equal(tf.memory().numTensors, before, `recompute ${recomputeViews}: no leak`);
      tf.dispose(v);
      m.dispose();
      return out;
    };
    // a BatchNorm backbone normalises a recomputed view on its own batch: compare r = 2 with r = 3 there (every view alone)
    const ref = await run(backbone === "vit" ? 0 : 3);
    for (const r of backbone === "vit" ? [2, 3] : [2]) {
      const got = await run(r);
      assert.ok(Math.abs(got.loss - ref.loss) < 1e-6 * Math.max(1, Math.abs(ref.loss)), `${backbone} r=${r}: loss ${got.loss} vs ${ref.loss}`);
      assert.deepEqual(Object.keys(got.grads).sort(), Object.keys(ref.grads).sort());
      for (const k of Object.keys(ref.grads)) assert.ok(relError(got.grads[k], ref.grads[k]) < 1e-4, `${backbone} r=${r}: grad ${k} differs by ${relError(got.grads[k], ref.grads[k])}`);
      // parameters and buffers (BatchNorm running statistics: updated once per forward, not twice)
      for (const k of Object.keys(ref.weights)) assert.deepEqual(Array.from(got.weights[k].data), Array.from(ref.weights[k].data), `${backbone} r=${r}: ${k}`);
    }
  }
  x.dispose();
  assert.throws(() => tinyMoco({ recomputeViews: 4 }), /recomputeViews/);
});

test("DINOSDMP step: L = L_DINO + L_source + L_mix with the teacher's mixed targets; views carry the mixes", async () => {
  await useBackend("wasm");
  const ds = squaresDataset(8, 16, 2);
  const x = tf.tidy(() => tf.div(tf.tensor4d(ds.images, [8, 16, 16, 1], "float32"), 255) as tf.Tensor4D);
  const m = tinyDino({ strategies: ["cutmix", "resizemix"] });
  const ctx = { step: 3, totalSteps: 10, epoch: 0, rng: new Rng(6) };
  const v = m.views(x, ctx);
  assert.equal(v.length, 2 + 2 + 3);
  assert.deepEqual(v[2].shape, [8, 8, 8, 1], "local crops after the globals");
  assert.deepEqual(v[4].shape, [8, 16, 16, 1]);
  const before = tf.memory().numTensors;
  const [loss, dino, src, mix] = tf.tidy(() => {
    const o = m.step(v, ctx);
    return [o.loss, o.metrics!.dinoLoss, o.metrics!.sdmpSource, o.metrics!.sdmpMix];
  });
  assert.ok(Math.abs(loss.dataSync()[0] - (dino.dataSync()[0] + src.dataSync()[0] + mix.dataSync()[0])) < 1e-4);
  const ref = tf.tidy(() => {
    const [t1, , tm] = tf.split(m.base.teacherOutputs([v[0], v[1], v[4]]), 3, 0) as tf.Tensor2D[];
    const { outputs } = m.base.studentOutputs([v[5]]);
    const lam = Array.from(v[6].dataSync());
    const terms = sdmpDistillationTerms(outputs, t1, tm, m.base.center.value, lam, m.base.studentTemp, m.base.teacherTemperature(ctx));
    return [terms.source, terms.mix];
  });
  assert.ok(Math.abs(src.dataSync()[0] - ref[0].dataSync()[0]) < 1e-4, `L_source ${src.dataSync()[0]} vs ${ref[0].dataSync()[0]}`);
  assert.ok(Math.abs(mix.dataSync()[0] - ref[1].dataSync()[0]) < 1e-4);
  tf.dispose([loss, dino, src, mix, ...ref]);
  m.afterStep(ctx); // the center update the step prepared
  assert.equal(tf.memory().numTensors, before, "step + afterStep leak nothing");
  tf.dispose([...v, x]);
  m.dispose();
});

test("sdmpDistillationTerms: targets are the soft labels applied to the teacher's distributions", async () => {
  await useBackend("wasm");
  const rng = new Rng(8);
  const rand = (n: number, k: number) => Array.from({ length: n }, () => Array.from({ length: k }, () => rng.normal()));
  const [s, ts, tm] = [rand(4, 5), rand(4, 5), rand(4, 5)];
  const c = [0.1, -0.2, 0, 0.3, 0.05];
  const lam = [0.9, 0.3, 0.6, 0.2];
  const softmax = (r: number[], t: number) => {
    const e = r.map((v) => Math.exp(v / t));
    const z = e.reduce((a, v) => a + v, 0);
    return e.map((v) => v / z);
  };
  const pt = (rows: number[][]) => rows.map((r) => softmax(r.map((v, j) => v - c[j]), 0.05));
  const logPs = s.map((r) => softmax(r, 0.1).map(Math.log));
  const lc = lam.map((l, i) => Math.min(l, 1 - lam[3 - i]) + Math.min(1 - l, lam[3 - i]));
  const [pS, pM] = [pt(ts), pt(tm)];
  let src = 0;
  let mix = 0;
  for (let i = 0; i < 4; i++) {
    for (let k = 0; k < 5; k++) {
      src -= (lam[i] * pS[i][k] + (1 - lam[i]) * pS[3 - i][k]) * logPs[i][k];
      mix -= ((pM[i][k] + lc[i] * pM[3 - i][k]) / (1 + lc[i])) * logPs[i][k];
    }
  }
  const got = tf.tidy(() => {
    const t = sdmpDistillationTerms(tf.tensor2d(s), tf.tensor2d(ts), tf.tensor2d(tm), tf.tensor1d(c), lam, 0.1, 0.05);
    return [t.source.dataSync()[0], t.mix.dataSync()[0]];
  });
  assert.ok(Math.abs(got[0] - src / 4) < 1e-4, `L_source ${got[0]} vs ${src / 4}`);
  assert.ok(Math.abs(got[1] - mix / 4) < 1e-4, `L_mix ${got[1]} vs ${mix / 4}`);
});

const runTiny = (make: () => SSLMethod, extra: Partial<TrainerOptions> = {}) =>
  trainSteps(make(), squaresDataset(32, 16, 5), {
    epochs: 2, batchSize: 8, seed: 11, checkpointEvery: 4,
    optimizer: { name: "adamw", lr: 0.005, weightDecay: 1e-4 }, collapseEvery: 3, ...extra,
  });

for (const [label, make, stateNames] of [
  ["MoCoV3SDMP", () => tinyMoco({}, 3), ["momentumEncoder"]],
  ["DINOSDMP", () => tinyDino({}, 3), ["teacher", "center"]],
] as const) {
  test(`${label} under the Trainer: no tensor leak per step; resume from a mid-epoch checkpoint is bitwise exact`, async () => {
    await useBackend("wasm");
    const full = await runTiny(make);
    assert.equal(full.result.steps, 8);
    expectNoLeakPerStep(full.counts);
    const steps = full.result.metrics.filter((r) => r.type === "step");
    assert.ok(steps.every((r) => Number.isFinite(r.loss) && typeof r.sdmpSource === "number" && typeof r.sdmpMix === "number" && typeof r.mixLam === "number"));
    assert.deepEqual(Object.keys(full.state).sort(), [...stateNames].sort());
    await expectExactResume(full, (extra) => runTiny(make, extra), {
      name: "sdmp", stopAfterStep: 3, stopped: (first) => assert.equal(first.result.steps, 3),
    });
  });
}

// ---- registry and CLI --------------------------------------------------------------------------

test("CLI: --sdmp, --mix-alpha and --mix-naive on moco-v3 and dino; bad values fail clearly", async () => {
  await useBackend("wasm");
  const cfg = (method: string, ...flags: string[]) => {
    const r = parseTrainArgs(["train", method, "--preset", "smoke", ...flags]);
    assert.notEqual(r, "help");
    return (r as Exclude<typeof r, "help">).config;
  };
  for (const method of ["moco-v3", "dino"]) {
    const def = cfg(method);
    assert.deepEqual([def.methodOptions.sdmp, def.methodOptions.mixAlpha, def.methodOptions.mixNaive], [[], 1, false]);
    assert.equal(sdmpOptionsFromConfig(def), null, "no --sdmp: the plain method");
    const on = cfg(method, "--sdmp", "mixup,cutmix,resizemix", "--mix-alpha", "0.5", "--mix-naive");
    assert.deepEqual([on.methodOptions.sdmp, on.methodOptions.mixAlpha, on.methodOptions.mixNaive], [["mixup", "cutmix", "resizemix"], 0.5, true]);
    assert.throws(() => cfg(method, "--sdmp", "mixup,blend"), /--sdmp expects a comma-separated list of mixup, cutmix, resizemix without repeats, got 'mixup,blend'/);
    assert.throws(() => cfg(method, "--sdmp", "mixup,mixup"), /without repeats/);
    assert.throws(() => cfg(method, "--sdmp", ""), /--sdmp expects/);
    for (const bad of ["0", "-1", "abc", ""]) assert.throws(() => cfg(method, "--sdmp", "mixup", `--mix-alpha=${bad}`), /--mix-alpha expects a number > 0/);
    assert.throws(() => createMethod(cfg(method, "--mix-naive"), [28, 28, 1]), /--mix-naive needs --sdmp/);
    assert.throws(() => createMethod(cfg(method, "--mix-alpha", "0.4"), [28, 28, 1]), /--mix-alpha has no effect without --sdmp/);
  }
  assert.throws(() => parseTrainArgs(["train", "simclr", "--sdmp", "mixup"]), /--sdmp is not an option of simclr/);
  const made = [createMethod(methodConfig("moco-v3", "smoke", { methodOptions: { sdmp: ["cutmix"] } }), [28, 28, 1]),
    createMethod(methodConfig("dino", "smoke", { methodOptions: { sdmp: ["mixup"], mixNaive: true } }), [28, 28, 1]),
    createMethod(methodConfig("moco-v3", "smoke"), [28, 28, 1])];
  assert.ok(made[0] instanceof MoCoV3SDMP && made[0].mix.strategies.join() === "cutmix" && !made[0].mix.naive);
  assert.ok(made[1] instanceof DINOSDMP && made[1].mix.naive);
  assert.ok(made[2] instanceof MoCoV3 && !(made[2] instanceof MoCoV3SDMP));
  for (const m of made) m.dispose();
});

for (const method of ["moco-v3", "dino"]) {
  test(`CLI: \`sslkit train ${method} --sdmp mixup,cutmix,resizemix\` runs a tiny smoke run and writes results`, async () => {
    const { out, results } = await runCliSmoke(method, ["--sdmp", "mixup,cutmix,resizemix", "--progress", "none"], { timeoutMs: 240_000 });
    assert.equal(results.method, method);
    assert.equal(results.steps, 4);
    assert.ok(results.encoders[0].knnTop1 > 0.1, `k-NN ${results.encoders[0].knnTop1}`);
    const steps = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((m) => m.type === "step");
    assert.ok(steps.length === 4 && steps.every((m) => Number.isFinite(m.loss) && typeof m.sdmpSource === "number" && typeof m.sdmpMix === "number"));
    fs.rmSync(out, { recursive: true, force: true });
  });
}

test("heatmapSpec: one rect per cell with its row, column and value; clear errors", async () => {
  const { heatmapSpec } = await import("../lib/src/viz/heatmap");
  const spec = heatmapSpec([[1, 0.25], [0, 0.75]], { title: "labels", domain: [0, 1] }) as unknown as {
    data: { values: { row: number; col: number; value: number }[] }; layer: { mark: { type: string } }[]; width: number;
  };
  assert.deepEqual(spec.data.values, [
    { row: 0, col: 0, value: 1 }, { row: 0, col: 1, value: 0.25 },
    { row: 1, col: 0, value: 0 }, { row: 1, col: 1, value: 0.75 },
  ]);
  assert.deepEqual(spec.layer.map((l) => l.mark.type), ["rect", "text"], "small matrices get value labels");
  assert.throws(() => heatmapSpec([]), /empty/);
  assert.throws(() => heatmapSpec([[1, 2], [3]]), /row 1 has 1 values/);
  assert.throws(() => heatmapSpec([[1, Number.NaN]]), /not finite/);
});
