/**
 * MoCo v1 / v2 / v3: InfoNCE against float64 references, the key queue's order and wrap-around,
 * the momentum update and where gradients flow, shuffled split BatchNorm (a key's statistics never
 * come from its query's group), exact resume of the queue through the Trainer, no tensor leaks,
 * the registry's option errors, and a tiny CLI run of each method.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { expectExactResume, expectNoLeakPerStep, relError, runCliSmoke, tf, trainSteps, useBackend } from "./helpers";
import { infoNceAccuracy, infoNceLoss } from "../lib/src/losses";
import { KeyQueue } from "../lib/src/train/key-queue";
import { nativeKernelsActive } from "../lib/src/backend/native-kernels";
import { BatchNorm } from "../lib/src/nn/layers";
import { SplitBatchNorm, groupShuffle, permuteRows } from "../lib/src/nn/split-batch-norm";
import { resnetTiny } from "../lib/src/nn/resnet";
import { vitTiny } from "../lib/src/nn/vit";
import { createBackbone } from "../lib/src/nn";
import { MoCoV1, MoCoV2 } from "../lib/src/methods/moco";
import { MoCoV3 } from "../lib/src/methods/moco-v3";
import { createMethod, methodConfig } from "../lib/src/methods";
import { mocoBackbone } from "../lib/src/methods/specs/moco";
import { parseTrainArgs } from "../lib/src/cli";
import { cosineMomentum } from "../lib/src/train";
import type { TrainerOptions } from "../lib/src/train";
import type { ImageDataset } from "../lib/src/data/types";
import { Rng } from "../lib/src/random";

// ---- InfoNCE -------------------------------------------------------------------------------

const Q = [
  [1.0, 0.5, -0.3, 2.0],
  [-0.7, 1.2, 0.8, 0.1],
  [0.3, -1.5, 0.4, -0.6],
];
const K = [
  [0.9, 0.2, -0.1, 1.5],
  [0.4, 0.3, 1.1, -0.9],
  [-0.2, -1.0, 0.9, -0.4],
];
const QUEUE = [
  [0.5, -0.5, 0.5, 0.5],
  [0.1, 0.9, -0.3, 0.2],
  [-0.6, 0.0, 0.8, 0.0],
  [0.0, 0.0, 0.6, -0.8],
  [1.0, 0.0, 0.0, 0.0],
];

const unit = (r: number[]) => {
  const n = Math.sqrt(r.reduce((s, v) => s + v * v, 0));
  return r.map((v) => v / n);
};
const dot = (a: number[], b: number[]) => a.reduce((s, v, i) => s + v * b[i], 0);

/** MoCo eq. 1 with plain loops in float64: queue rows are used as given (stored normalised). */
function referenceInfoNce(q: number[][], k: number[][], queue: number[][] | null, t: number): number {
  const qn = q.map(unit);
  const kn = k.map(unit);
  let total = 0;
  for (let i = 0; i < q.length; i++) {
    const pos = dot(qn[i], kn[i]) / t;
    const negs = queue ? queue.map((r) => dot(qn[i], r) / t) : kn.map((r, j) => (j === i ? -Infinity : dot(qn[i], r) / t));
    const denom = Math.exp(pos) + negs.reduce((s, l) => s + Math.exp(l), 0);
    total += -Math.log(Math.exp(pos) / denom);
  }
  return total / q.length;
}

test("infoNceLoss: queue and in-batch forms match float64 references; accuracy; bad inputs", async () => {
  const queue = QUEUE.map(unit);
  await useBackend("cpu"); // the portable path (no native kernels)
  for (const qu of [queue, null]) {
    const got = tf.tidy(() => infoNceLoss(tf.tensor2d(Q), tf.tensor2d(K), qu ? tf.tensor2d(qu) : null, 0.1).dataSync()[0]);
    assert.ok(Math.abs(got - referenceInfoNce(Q, K, qu, 0.1)) < 2e-5 * referenceInfoNce(Q, K, qu, 0.1), `cpu queue=${!!qu}`);
  }
  await useBackend("wasm");
  const before = tf.memory().numTensors;
  for (const t of [0.07, 0.2, 1]) {
    for (const qu of [queue, null]) {
      const expected = referenceInfoNce(Q, K, qu, t);
      const got = tf.tidy(() => infoNceLoss(tf.tensor2d(Q), tf.tensor2d(K), qu ? tf.tensor2d(qu) : null, t).dataSync()[0]);
      assert.ok(Math.abs(got - expected) <= 2e-5 * Math.max(1, expected), `t=${t} queue=${!!qu}: ${got} vs ${expected}`);
    }
  }
  // analytic: q = k orthogonal to all K stored keys -> log(1 + K e^{-1/t})
  const e = [[2, 0, 0, 0], [0, 3, 0, 0]];
  const orth = [[0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0.6, 0.8]];
  const analytic = tf.tidy(() => infoNceLoss(tf.tensor2d(e), tf.tensor2d(e), tf.tensor2d(orth), 0.5).dataSync()[0]);
  assert.ok(Math.abs(analytic - Math.log(1 + 3 * Math.exp(-2))) < 1e-5, `${analytic}`);
  // accuracy: row 0's positive beats its negatives, row 1's does not (k1 is anti-aligned)
  const acc = tf.tidy(() => infoNceAccuracy(tf.tensor2d([[1, 0], [0, 1]]), tf.tensor2d([[1, 0.1], [0, -1]]), tf.tensor2d([[0.6, 0.8], [-1, 0]])).dataSync()[0]);
  assert.equal(acc, 0.5);
  assert.equal(tf.memory().numTensors, before, "infoNceLoss leaked tensors");
  tf.tidy(() => {
    assert.throws(() => infoNceLoss(tf.tensor2d(Q), tf.tensor2d(K), tf.tensor2d([[1, 0, 0]]), 0.1), /queue must be \[K, 4\]/);
    assert.throws(() => infoNceLoss(tf.tensor2d(Q), tf.tensor2d(K.slice(0, 2)), null, 0.1), /same shape/);
    assert.throws(() => infoNceLoss(tf.tensor2d(Q), tf.tensor2d(K), null, 0), /temperature/);
  });
});

test("infoNceLoss gradient with respect to q and k matches float64 central differences", async () => {
  await useBackend("wasm");
  const queue = QUEUE.map(unit);
  for (const qu of [queue, null]) {
    const t = 0.2;
    const { grads } = tf.tidy(() => {
      const qv = tf.tensor2d(Q);
      const kv = tf.tensor2d(K);
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => infoNceLoss(a as tf.Tensor2D, b as tf.Tensor2D, qu ? tf.tensor2d(qu) : null, t))([qv, kv]);
      return { grads: g.map((x) => x.arraySync() as number[][]) };
    });
    const h = 1e-6;
    for (const [which, base] of [[0, Q], [1, K]] as const) {
      for (const [i, d] of [[0, 0], [1, 2], [2, 3]]) {
        const plus = base.map((r) => r.slice());
        const minus = base.map((r) => r.slice());
        plus[i][d] += h;
        minus[i][d] -= h;
        const f = (x: number[][]) => (which === 0 ? referenceInfoNce(x, K, qu, t) : referenceInfoNce(Q, x, qu, t));
        const fd = (f(plus) - f(minus)) / (2 * h);
        assert.ok(Math.abs(grads[which][i][d] - fd) < 1e-4 * Math.max(1, Math.abs(fd)), `${which ? "k" : "q"}[${i}][${d}] queue=${!!qu}: ${grads[which][i][d]} vs ${fd}`);
      }
    }
  }
});

// ---- the key queue -----------------------------------------------------------------------------

/** Keys [1, 0.005 id, 0]: their direction (hence the stored, normalised row) identifies them. */
function idKeys(ids: number[]): tf.Tensor2D {
  return tf.tensor2d(ids.map((i) => [1, 0.005 * i, 0]));
}

test("KeyQueue: FIFO ring buffer with wrap-around for any K and batch, normalised keys, pointer", async () => {
  await useBackend("wasm");
  const q = new KeyQueue(5, 3, { seed: 1 });
  const norms = tf.tidy(() => tf.norm(q.keys, 2, 1).arraySync() as number[]);
  assert.ok(norms.every((n) => Math.abs(n - 1) < 1e-5), "initial keys are unit-norm");
  const initial = q.keys.arraySync() as number[][];
  const firstCoord = () => (q.keys.arraySync() as number[][]).map((r) => r[0]);
  const enqueue = (ids: number[], scale: number) => tf.tidy(() => q.enqueue(tf.mul(idKeys(ids), scale) as tf.Tensor2D));
  enqueue([1, 2], 7);
  assert.equal(q.position(), 2);
  const rows = q.keys.arraySync() as number[][];
  rows.slice(0, 2).forEach((r, i) => assert.ok(Math.abs(Math.hypot(...r) - 1) < 1e-6 && Math.abs(r[1] / r[0] - 0.005 * (i + 1)) < 1e-6, "keys are stored normalised"));
  assert.deepEqual(rows.slice(2), initial.slice(2), "the other rows are untouched");
  const ids = () => (q.keys.arraySync() as number[][]).map((r) => Math.round(r[1] / r[0] / 0.005));
  enqueue([3, 4], 1);
  assert.deepEqual(ids().slice(0, 4), [1, 2, 3, 4]);
  assert.equal(q.position(), 4);
  enqueue([5, 6, 7], 1); // wraps: 5 -> row 4, 6 -> row 0, 7 -> row 1
  assert.deepEqual(ids(), [6, 7, 3, 4, 5]);
  assert.equal(q.position(), 2);
  enqueue([8, 9, 10, 11, 12, 13, 14], 1); // a batch larger than K: rows get the last 5 keys, ring order kept
  assert.deepEqual(ids(), [11, 12, 13, 14, 10]); // 8..14 land on rows 2,3,4,0,1,2,3: the last write wins
  assert.equal(q.position(), 4);
  assert.ok(firstCoord().every((v) => v > 0.99));
  assert.throws(() => tf.tidy(() => q.enqueue(tf.zeros([2, 4]) as tf.Tensor2D)), /expected keys \[N, 3\]/);
  assert.throws(() => new KeyQueue(0, 3), /size must be a positive integer/);
  q.dispose();
});

// ---- shuffled split BatchNorm -------------------------------------------------------------------

test("SplitBatchNorm (native path on wasm, split path on cpu): per-group statistics, their gradients, running stats", async () => {
  for (const backend of ["wasm", "cpu"] as const) {
  await useBackend(backend);
  const x = tf.randomNormal([8, 3, 3, 5], 1, 2, "float32", 3) as tf.Tensor4D;
  const split = new SplitBatchNorm(5, { groups: 4 });
  const plain = new BatchNorm(5);
  const y = split.forward(x);
  if (backend === "wasm" && nativeKernelsActive()) assert.ok(tf.getKernel("SslkitGroupBatchNormForward", "wasm"), "the native group kernels serve wasm");
  const parts = tf.split(x, 4, 0);
  let maxErr = 0;
  const rm = new Float64Array(5);
  tf.split(y, 4, 0).forEach((yg, g) => {
    const ref = new BatchNorm(5).forward(parts[g]);
    maxErr = Math.max(maxErr, tf.max(tf.abs(tf.sub(yg, ref))).dataSync()[0]);
    const m = tf.mean(parts[g], [0, 1, 2]).dataSync();
    for (let c = 0; c < 5; c++) rm[c] += (0.1 * m[c]) / 4;
  });
  assert.ok(maxErr < 1e-5, `per-group normalisation differs by ${maxErr}`);
  const got = split.runningMean.dataSync();
  for (let c = 0; c < 5; c++) assert.ok(Math.abs(got[c] - rm[c]) < 1e-5, `running mean ${got[c]} vs ${rm[c]}`);
  // gradients (x, gamma, beta) equal those of per-group BatchNorms sharing gamma and beta
  const w = tf.randomNormal([8, 3, 3, 5], 0, 1, "float32", 4);
  const bn = new BatchNorm(5);
  const xv = tf.variable(x);
  const gradsOf = (f: () => tf.Tensor, vars: tf.Variable[]) => {
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(f(), w)) as tf.Scalar, vars);
    const out = vars.map((v) => grads[v.name].dataSync());
    tf.dispose([value, ...Object.values(grads)]);
    return out;
  };
  const got3 = gradsOf(() => split.forward(xv), [xv, split.weight!, split.bias!]);
  const ref3 = gradsOf(() => tf.concat(tf.split(xv, 4, 0).map((p) => bn.forward(p)), 0), [xv, bn.weight!, bn.bias!]);
  got3.forEach((g, i) => assert.ok(relError(g, ref3[i]) < 1e-4, `gradient ${["x", "gamma", "beta"][i]}: rel err ${relError(g, ref3[i])}`));
  // without scale and shift (affine: false) too
  const split0 = new SplitBatchNorm(5, { groups: 4, affine: false });
  const bn0 = new BatchNorm(5, { affine: false });
  const [gx0] = gradsOf(() => split0.forward(xv), [xv]);
  const [rx0] = gradsOf(() => tf.concat(tf.split(xv, 4, 0).map((p) => bn0.forward(p)), 0), [xv]);
  assert.ok(relError(gx0, rx0) < 1e-4, `affine-free gradient: rel err ${relError(gx0, rx0)}`);
  tf.dispose([w, xv]);
  for (const m of [bn, split0, bn0]) m.dispose();
  // groups: 1 is plain BatchNorm; eval mode is plain BatchNorm on the running statistics
  const one = new SplitBatchNorm(5, { groups: 1 });
  assert.ok(tf.max(tf.abs(tf.sub(one.forward(x), plain.forward(x)))).dataSync()[0] < 1e-6);
  split.eval();
  assert.deepEqual(split.forward(x).shape, [8, 3, 3, 5]);
  split.train();
  assert.throws(() => split.forward(tf.zeros([6, 3, 3, 5])), /batch 6 is not divisible by 4 groups/);
  assert.throws(() => new SplitBatchNorm(5, { groups: 0 }), /groups must be a positive integer/);
  tf.dispose([x, y, ...parts]);
  for (const m of [split, plain, one]) m.dispose();
  }
  await useBackend("wasm");
});

test("groupShuffle: a key's BN group shares at most ceil(s/G) images with its query's group (only itself when s <= G)", () => {
  for (const [n, groups] of [[16, 4], [12, 6], [32, 8], [128, 8], [24, 2]]) {
    const s = n / groups;
    for (let seed = 0; seed < 5; seed++) {
      const { perm, inverse } = groupShuffle(n, groups, new Rng(seed));
      assert.deepEqual([...perm].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i), "a permutation");
      for (let i = 0; i < n; i++) {
        assert.equal(perm[inverse[i]], i);
        const keyGroup = Math.floor(inverse[i] / s); // image i's key sits at position inverse[i]
        const members = Array.from(perm.subarray(keyGroup * s, (keyGroup + 1) * s));
        const shared = members.filter((j) => Math.floor(j / s) === Math.floor(i / s));
        assert.ok(shared.includes(i));
        assert.ok(shared.length <= Math.ceil(s / groups), `n=${n} G=${groups}: key ${i} shares ${shared.length} images with its query group`);
      }
    }
  }
  assert.throws(() => groupShuffle(10, 4, new Rng(0)), /not divisible/);
});

test("shuffling BN: with the shuffle a key's output ignores the rest of its query's group; without it, it does not", async () => {
  await useBackend("wasm");
  const n = 16;
  const groups = 4; // s = 4 <= G: the key's group holds no other image of its query's group
  const x = tf.randomUniform([n, 8, 8, 1], 0, 1, "float32", 5) as tf.Tensor4D;
  // change images 1..3 (query group 0 without image 0); image 0's key must not move
  const mask = tf.tensor4d(Array.from({ length: n }, (_, i) => (i >= 1 && i < 4 ? 1 : 0)), [n, 1, 1, 1]);
  const x2 = tf.add(x, tf.mul(mask, 3)) as tf.Tensor4D;
  const key0 = (shuffleBn: boolean, input: tf.Tensor4D) => {
    const backbone = () => mocoBackbone("resnet-tiny", [8, 8, 1], 0, groups);
    const m = new MoCoV1({ backbone: backbone(), keyBackbone: backbone(), inputShape: [8, 8, 1], queueSize: 8, shuffleBn, bnSplits: groups });
    const k = tf.tidy(() => m.keys(input, new Rng(9)).slice([0, 0], [1, -1]).dataSync());
    m.dispose();
    return k;
  };
  const diff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((mx, v, i) => Math.max(mx, Math.abs(v - b[i])), 0);
  assert.ok(diff(key0(true, x), key0(true, x2)) < 1e-6, "shuffled: image 0's key depends only on its own key group");
  assert.ok(diff(key0(false, x), key0(false, x2)) > 1e-3, "unshuffled: image 0's key moves with its query group's images");
  // the unshuffle puts every key back in its image's row: equal to encoding the images one group at a time
  const shuffle = groupShuffle(n, groups, new Rng(2));
  const back = tf.tidy(() => permuteRows(permuteRows(x, shuffle), { perm: shuffle.inverse, inverse: shuffle.perm }));
  assert.equal(tf.max(tf.abs(tf.sub(back, x))).dataSync()[0], 0);
  tf.dispose([x, x2, mask, back]);
});

// ---- MoCo v1 / v2 -----------------------------------------------------------------------------

function tinyMoCo(opts: Partial<ConstructorParameters<typeof MoCoV1>[0]> = {}, version: 1 | 2 = 1): MoCoV1 {
  const groups = opts.bnSplits ?? 2;
  const backbone = () => mocoBackbone("resnet-tiny", [8, 8, 1], 0, groups);
  const base = { backbone: backbone(), keyBackbone: (opts.queueSize ?? 6) > 0 ? backbone() : undefined, inputShape: [8, 8, 1] as [number, number, number], queueSize: 6, momentum: 0.9, bnSplits: groups, projectionDim: 8, seed: 0 };
  return version === 1 ? new MoCoV1({ ...base, ...opts }) : new MoCoV2({ ...base, ...opts });
}

test("MoCo v1: loss uses the queue as it was, then afterStep does f_k = m f_k + (1-m) f_q and enqueues the keys", async () => {
  await useBackend("wasm");
  const m = tinyMoCo({ momentum: 0.9, queueSize: 6 });
  assert.deepEqual(Object.keys(m.stateModules()), ["keyEncoder", "queue"]);
  assert.ok(m.keyEncoder!.parameters().every((p) => !p.variable.trainable), "the key encoder is not trained");
  const trainableNames = new Set(m.trainable.variables().map((v) => v.name));
  assert.ok(m.keyEncoder!.variables().every((v) => !trainableNames.has(v.name)));
  const x = tf.randomUniform([4, 8, 8, 1], 0, 1, "float32", 1) as tf.Tensor4D;
  const ctx = { step: 0, totalSteps: 10, epoch: 0, rng: new Rng(4) };
  const views = m.views(x, ctx);
  const queueBefore = m.queue!.keys.clone();
  const out = m.step(views, ctx);
  // the loss is InfoNCE against the OLD queue (the enqueue-first bug would make each key its own negative)
  const qk = tf.tidy(() => {
    // recompute q and k as the step did, with the same draws of the step's rng (views, then the shuffle)
    const rng = new Rng(4);
    m.views(x, { ...ctx, rng }).forEach((v) => v.dispose());
    const q = m.trainable.forward(views[0]);
    const k = m.keys(views[1], rng);
    return [infoNceLoss(q, k, queueBefore as tf.Tensor2D, m.temperature), tf.keep(k)];
  });
  const [refLoss, keys] = qk as [tf.Scalar, tf.Tensor2D];
  assert.ok(Math.abs(out.loss.dataSync()[0] - refLoss.dataSync()[0]) < 1e-5, `${out.loss.dataSync()[0]} vs ${refLoss.dataSync()[0]}`);
  assert.deepEqual(m.queue!.keys.arraySync(), queueBefore.arraySync(), "step() does not touch the queue");
  // simulate an optimiser update of f_q, then afterStep
  const q0 = m.trainable.parameters()[0].variable;
  const k0 = m.keyEncoder!.parameters()[0].variable;
  const kBefore = k0.dataSync().slice();
  q0.assign(tf.add(q0, 0.5));
  const qAfter = q0.dataSync().slice();
  m.afterStep(ctx);
  const kAfter = k0.dataSync();
  for (let i = 0; i < kAfter.length; i++) assert.ok(Math.abs(kAfter[i] - (0.9 * kBefore[i] + 0.1 * qAfter[i])) < 1e-5);
  const stored = (m.queue!.keys.arraySync() as number[][]).slice(0, 4);
  const expected = tf.tidy(() => tf.div(keys, tf.norm(keys, 2, 1, true)).arraySync()) as number[][];
  stored.forEach((r, i) => r.forEach((v, d) => assert.ok(Math.abs(v - expected[i][d]) < 1e-5, "the step's keys are enqueued, normalised")));
  assert.equal(m.queue!.position(), 4);
  tf.dispose([x, ...views, queueBefore, out.loss, ...Object.values(out.metrics ?? {}), refLoss, keys]);
  m.dispose();
});

test("MoCo end-to-end (queueSize 0): keys from the query encoder with gradient, in-batch negatives, no state", async () => {
  await useBackend("wasm");
  const m = tinyMoCo({ queueSize: 0, shuffleBn: false });
  assert.equal(m.keyEncoder, null);
  assert.deepEqual(m.stateModules(), {});
  const x = tf.randomUniform([4, 8, 8, 1], 0, 1, "float32", 2) as tf.Tensor4D;
  const ctx = { step: 0, totalSteps: 1, epoch: 0, rng: new Rng(1) };
  const [v1, v2] = m.views(x, ctx);
  const vars = m.trainable.variables();
  const grad = (f: () => tf.Scalar) => {
    const { value, grads } = tf.variableGrads(f, vars);
    const flat = tf.tidy(() => tf.concat(Object.values(grads).map((g) => tf.reshape(g, [-1]))).dataSync());
    tf.dispose([value, ...Object.values(grads)]);
    return flat;
  };
  const g = grad(() => m.step([v1, v2], ctx).loss);
  const both = grad(() => infoNceLoss(m.trainable.forward(v1), m.trainable.forward(v2), null, m.temperature));
  const queryOnly = grad(() => infoNceLoss(m.trainable.forward(v1), noGradCopy(m.trainable.forward(v2)), null, m.temperature));
  const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((mx, v, i) => Math.max(mx, Math.abs(v - b[i])), 0);
  const scale = maxDiff(both, new Float32Array(both.length));
  assert.ok(maxDiff(g, both) < 1e-4 * scale, "gradient through both branches");
  assert.ok(maxDiff(g, queryOnly) > 1e-2 * scale, "differs from a detached key branch");
  assert.throws(() => tinyMoCo({ queueSize: 0, keyBackbone: resnetTiny({ inChannels: 1 }) }), /do not pass a keyBackbone/);
  tf.dispose([x, v1, v2]);
  m.dispose();
});

/** A constant copy (no gradient path back). */
function noGradCopy(t: tf.Tensor2D): tf.Tensor2D {
  return tf.tensor2d(t.arraySync() as number[][]);
}

test("MoCo v2: MLP head and the v2 recipe; MoCo v1 rejects bad options", async () => {
  await useBackend("wasm");
  const m = tinyMoCo({}, 2);
  assert.equal(m.name, "moco-v2");
  assert.equal(m.temperature, 0.2);
  const names = m.trainable.parameters().map((p) => p.name);
  assert.ok(names.includes("projector.0.linear.weight") && names.includes("projector.1.linear.weight"), names.filter((n) => n.startsWith("projector")).join(","));
  m.dispose();
  assert.throws(() => tinyMoCo({ momentum: 1.5 }), /momentum must be in \[0, 1\]/);
  assert.throws(() => tinyMoCo({ queueSize: -1 }), /queueSize must be an integer >= 0/);
  assert.throws(() => tinyMoCo({ temperature: 0 }), /temperature must be positive/);
  assert.throws(() => tinyMoCo({ keyBackbone: undefined }), /needs a keyBackbone/);
});

// ---- MoCo v3 -----------------------------------------------------------------------------------

test("MoCo v3: symmetric 2t-scaled in-batch loss from query()/key()/contrastive(); cosine momentum update", async () => {
  await useBackend("wasm");
  const vit = () => vitTiny({ imageSize: 8, inChannels: 1, seed: 0 });
  const m = new MoCoV3({ backbone: vit(), keyBackbone: vit(), inputShape: [8, 8, 1], projectionHiddenDim: 16, projectionDim: 8, momentum: 0.9 });
  const x = tf.randomUniform([6, 8, 8, 1], 0, 1, "float32", 3) as tf.Tensor4D;
  const ctx = { step: 0, totalSteps: 10, epoch: 0, rng: new Rng(6) };
  const [v1, v2] = m.views(x, ctx);
  const before = tf.memory().numTensors;
  const out = tf.tidy(() => {
    const o = m.step([v1, v2], ctx);
    const ref = tf.add(m.contrastive(m.query(v1), m.key(v2)), m.contrastive(m.query(v2), m.key(v1)));
    const manual = tf.mul(infoNceLoss(m.query(v1), m.key(v2), null, 0.2), 0.4);
    const swapped = tf.add(m.contrastive(m.query(v1), m.key(v1)), m.contrastive(m.query(v2), m.key(v2)));
    return [o.loss, ref, manual, m.contrastive(m.query(v1), m.key(v2)), swapped];
  });
  // step() runs the backbones on both views as one batch, query()/key() on each view alone: with
  // sslkit-native, OpenBLAS picks its kernels by matrix size, so the two agree to float rounding
  // (~1e-5 relative), far closer than a wrong pairing of views (checked against ctr(q1, k1) + ...)
  const [loss, ref, swapped] = [out[0], out[1], out[4]].map((t) => t.dataSync()[0]);
  assert.ok(Math.abs(loss - ref) < 5e-5, `loss = ctr(q1, k2) + ctr(q2, k1): ${loss} vs ${ref}`);
  assert.ok(Math.abs(swapped - ref) > 100 * Math.abs(loss - ref), `the views' pairing matters: ${swapped} vs ${ref}`);
  assert.ok(Math.abs(out[2].dataSync()[0] - out[3].dataSync()[0]) < 1e-6, "ctr = InfoNCE * 2t");
  tf.dispose(out);
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(Object.keys(m.stateModules()), ["momentumEncoder"]);
  assert.ok(!m.trainable.parameters().some((p) => m.momentumEncoder.variables().includes(p.variable)));
  // momentum: after step k, f_k = m(k) f_k + (1 - m(k)) f_q, m(k) the cosine schedule from 0.9
  const qp = m.trainable.backbone.parameters()[0].variable;
  const kp = m.momentumEncoder.backbone.parameters()[0].variable;
  qp.assign(tf.add(qp, 1));
  const [kb, qa] = [kp.dataSync().slice(), qp.dataSync().slice()];
  const step = 3;
  m.afterStep({ ...ctx, step });
  const mk = cosineMomentum(step, 10, 0.9);
  assert.ok(mk > 0.9 && mk < 1);
  const ka = kp.dataSync();
  for (let i = 0; i < ka.length; i++) assert.ok(Math.abs(ka[i] - (mk * kb[i] + (1 - mk) * qa[i])) < 1e-5);
  tf.dispose([x, v1, v2]);
  m.dispose();
});

// ---- the Trainer: resume and leaks -------------------------------------------------------------

function noiseDataset(count: number, size: number, seed: number): ImageDataset {
  const rng = new Rng(seed);
  const images = new Uint8Array(count * size * size);
  for (let i = 0; i < images.length; i++) images[i] = rng.int(0, 256);
  return { name: "noise", images, labels: new Uint8Array(count).map((_, i) => i % 2), classNames: ["a", "b"], count, height: size, width: size, channels: 1 };
}

test("MoCo v1 under the Trainer: resume reproduces the queue, pointer, key encoder and weights bitwise; no leaks", async () => {
  await useBackend("wasm");
  const ds = noiseDataset(40, 8, 7);
  // 11: the batch of 8 wraps around unevenly
  const train = (extra: Partial<TrainerOptions> = {}) => trainSteps(tinyMoCo({ queueSize: 11, momentum: 0.8, bnSplits: 2 }), ds, {
    epochs: 1, batchSize: 8, seed: 3, checkpointEvery: 1, collapseEvery: 2,
    optimizer: { name: "adamw", lr: 1e-2, weightDecay: 1e-4 }, ...extra,
  });
  const full = await train();
  assert.equal(full.result.steps, 5);
  assert.equal(full.state.queue.pointer.data[0], (5 * 8) % 11);
  expectNoLeakPerStep(full.counts);
  const losses = full.result.metrics.filter((r) => r.type === "step");
  assert.ok(losses.every((r) => Number.isFinite(r.loss) && typeof r.contrastiveAcc === "number"));
  assert.deepEqual(Object.keys(full.state), ["keyEncoder", "queue"]);
  await expectExactResume(full, train, { name: "moco", stopAfterStep: 2, stopped: (first) => assert.equal(first.result.steps, 2) });
});

test("MoCo v3 and end-to-end MoCo under the Trainer: no tensor leaks per step", async () => {
  await useBackend("wasm");
  const ds = noiseDataset(32, 8, 9);
  const vit = () => vitTiny({ imageSize: 8, inChannels: 1, seed: 0 });
  for (const m of [new MoCoV3({ backbone: vit(), keyBackbone: vit(), inputShape: [8, 8, 1], projectionHiddenDim: 16, projectionDim: 8 }), tinyMoCo({ queueSize: 0 })]) {
    const { result, counts } = await trainSteps(m, ds, { epochs: 1, batchSize: 8, seed: 1, collapseEvery: 2 });
    assert.equal(result.steps, 4);
    expectNoLeakPerStep(counts, `${m.name}: `);
  }
});

// ---- registry and CLI ----------------------------------------------------------------------------

test("registry and CLI: MoCo options parse, bad values get clear errors, presets adjust the config", async () => {
  const parse = (...args: string[]) => parseTrainArgs(["train", ...args, "--out", path.join(os.tmpdir(), "sslkit-moco-unused")]);
  const ok = parse("moco-v1", "--queue-size", "1024", "--momentum", "0.9", "--shuffle-bn", "off", "--bn-splits", "4");
  assert.ok(ok !== "help");
  assert.deepEqual(ok.config.methodOptions, { queueSize: 1024, momentum: 0.9, shuffleBn: false, bnSplits: 4 });
  assert.equal(ok.config.temperature, 0.07);
  const v3 = parse("moco-v3", "--momentum", "0.996");
  assert.ok(v3 !== "help");
  assert.equal(v3.config.backbone, "vit-tiny");
  assert.equal(v3.config.methodOptions.momentum, 0.996);
  const v2 = parse("moco-v2", "--queue-size", "0");
  assert.ok(v2 !== "help" && v2.config.temperature === 0.2 && v2.config.methodOptions.queueSize === 0);
  assert.throws(() => parse("moco-v1", "--queue-size=-5"), /--queue-size expects an integer >= 0, got '-5'/);
  assert.throws(() => parse("moco-v1", "--queue-size", "1.5"), /--queue-size expects an integer/);
  assert.throws(() => parse("moco-v2", "--momentum", "1.2"), /--momentum expects a number >= 0 and <= 1, got '1.2'/);
  assert.throws(() => parse("moco-v1", "--momentum", "fast"), /--momentum expects a number/);
  assert.throws(() => parse("moco-v1", "--shuffle-bn", "yes"), /--shuffle-bn expects on or off, got 'yes'/);
  assert.throws(() => parse("moco-v1", "--bn-splits", "0"), /--bn-splits expects an integer >= 1/);
  assert.throws(() => parse("moco-v3", "--queue-size", "16"), /--queue-size is not an option of moco-v3/);
  assert.throws(() => parse("moco-v3", "--shuffle-bn", "on"), /--shuffle-bn is not an option of moco-v3/);
  // a batch that does not divide into the BN groups is refused when the method is built
  await useBackend("wasm");
  assert.throws(() => createMethod(methodConfig("moco-v1", "smoke", { batchSize: 30 }), [28, 28, 1]), /batch \(30\) must divide into --bn-splits 8/);
  // the split-BN backbone starts from createBackbone's weights (same seed, same random-init baseline)
  const a = mocoBackbone("resnet-tiny", [8, 8, 1], 5, 4);
  const b = createBackbone("resnet-tiny", { inputShape: [8, 8, 1], seed: 5 });
  const [wa, wb] = [await a.getWeights(), await b.getWeights()];
  assert.deepEqual(Object.keys(wa), Object.keys(wb));
  for (const k of Object.keys(wa)) assert.deepEqual(Array.from(wa[k].data), Array.from(wb[k].data), k);
  a.dispose();
  b.dispose();
});

test("CLI smoke: moco-v1, moco-v2 and moco-v3 train and write results.json", async () => {
  for (const method of ["moco-v1", "moco-v2", "moco-v3"]) {
    const backbone = method === "moco-v3" ? "vit-tiny" : "resnet-tiny";
    const { out, results } = await runCliSmoke(method, ["--backbone", backbone, "--progress", "none", "--backend", "wasm"]);
    try {
      assert.equal(results.method, method);
      assert.equal(results.steps, 4);
      const learned = results.encoders[0];
      assert.ok(learned.knnTop1 > 0.1 && learned.linearTop1 > 0.1, `${method}: ${JSON.stringify(learned)}`);
      const lines = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
      assert.ok(lines.filter((r) => r.type === "step").every((r) => Number.isFinite(r.loss)));
      assert.ok(fs.existsSync(path.join(out, "weights")));
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }
});
