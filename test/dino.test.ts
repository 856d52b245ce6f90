/**
 * DINO: the loss against hand-computed and float64 references, the weight-normalised last layer's
 * gradient against finite differences, the center update, the teacher EMA (no gradient into the
 * teacher), the schedules, crops of different sizes through one ViT (interpolated position
 * embeddings, torch's bicubic weights), gradient checkpointing, the CLS attention maps, resume
 * through the Trainer (bitwise), no tensor leaks, the CLI's options and a tiny CLI run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { expectExactResume, expectNoLeakPerStep, runCliSmoke, squaresDataset, tf, trainSteps, useBackend } from "./helpers";
import { DINO } from "../lib/src/methods/dino";
import type { DINOOptions } from "../lib/src/methods/dino";
import { dinoBatchCenter, dinoCenterUpdate, dinoLoss, dinoLossTerms, dinoLossTermsStacked } from "../lib/src/losses/dino";
import { DinoHead, WeightNormLinear } from "../lib/src/nn/dino-head";
import { ViT, bicubicResizeMatrix, posEmbedResizeMatrix } from "../lib/src/nn/vit";
import { parseTrainArgs } from "../lib/src/cli";
import { attentionMapsGallery, attentionMassMask } from "../lib/src/viz/attention";
import sharp from "sharp";
import { methodConfig, createMethod } from "../lib/src/methods/registry";
import "../lib/src/methods/specs";
import { AdamW, cosineMomentum, readCheckpoint } from "../lib/src/train";
import type { TrainerOptions } from "../lib/src/train";
import { Rng } from "../lib/src/random";

const tinyVit = (seed: number, extra: Partial<ConstructorParameters<typeof ViT>[0]> = {}) =>
  new ViT({ imageSize: 16, inChannels: 1, patchSize: 4, dim: 16, depth: 2, heads: 2, mlpRatio: 2, seed, ...extra });

function tinyDino(opts: Partial<DINOOptions> = {}, seed = 0): DINO {
  return new DINO({
    backbone: tinyVit(seed),
    teacherBackbone: tinyVit(seed + 100),
    inputShape: [16, 16, 1],
    outDim: 32,
    headHiddenDim: 32,
    bottleneckDim: 8,
    numLocalCrops: 2,
    localCropSize: 8,
    seed,
    ...opts,
  });
}

const randomArray = (n: number, rng: Rng, scale = 1) => Float32Array.from({ length: n }, () => scale * rng.normal());

/** Independent float64 reference of DINOLoss: explicit loops over the pairs (teacher crop i, student crop v != i). */
function referenceDino(student: number[][][], teacher: number[][][], center: number[], ts: number, tt: number) {
  const softmax = (row: number[]) => {
    const m = Math.max(...row);
    const e = row.map((x) => Math.exp(x - m));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / z);
  };
  let loss = 0;
  let pairs = 0;
  let entropy = 0;
  teacher.forEach((t, i) => {
    const q = t.map((row) => softmax(row.map((x, k) => (x - center[k]) / tt)));
    entropy += q.reduce((a, row) => a - row.reduce((s, p) => s + (p > 0 ? p * Math.log(p) : 0), 0), 0) / q.length;
    student.forEach((s, v) => {
      if (v === i) return;
      const p = s.map((row) => softmax(row.map((x) => x / ts)));
      loss += q.reduce((a, row, n) => a - row.reduce((acc, qk, k) => acc + qk * Math.log(p[n][k]), 0), 0) / q.length;
      pairs += 1;
    });
  });
  return { loss: loss / pairs, entropy: entropy / teacher.length };
}

test("dinoLoss: uniform and one-hot cases by hand, a float64 reference over all pairs (v != i), KL = loss - H(teacher), errors", async () => {
  await useBackend("wasm");
  const K = 5;
  const zeros = (n: number) => tf.zeros([n, K]) as tf.Tensor2D;
  // constant teacher and student logits: both uniform, so H(Pt, Ps) = log K, h(Pt) = log K, KL = 0
  const u = dinoLossTerms([zeros(3), zeros(3), zeros(3)], [zeros(3), zeros(3)], tf.zeros([K]), 0.1, 0.04);
  assert.ok(Math.abs(u.loss.dataSync()[0] - Math.log(K)) < 1e-5);
  assert.ok(Math.abs(u.teacherEntropy.dataSync()[0] - Math.log(K)) < 1e-5);
  assert.ok(Math.abs(u.kl.dataSync()[0]) < 1e-5);
  // a very sharp teacher picks class 0; the student is uniform: loss = log K, h(Pt) = 0, KL = log K
  const sharp = tf.tensor2d([[1, 0, 0, 0, 0]]);
  const st = dinoLossTerms([tf.zeros([1, K]) as tf.Tensor2D, tf.zeros([1, K]) as tf.Tensor2D], [sharp], tf.zeros([1, K]), 0.1, 0.001);
  assert.ok(Math.abs(st.loss.dataSync()[0] - Math.log(K)) < 1e-5);
  assert.ok(st.teacherEntropy.dataSync()[0] < 1e-6);
  // student logit s on the teacher's class: CE = -log softmax(s / 0.1)[0] = log(e^{s/0.1} + K - 1) - s/0.1, by hand for s = 0.2
  const s0 = tf.tensor2d([[0.2, 0, 0, 0, 0]]);
  const hand = Math.log(Math.exp(2) + 4) - 2;
  assert.ok(Math.abs(dinoLoss([s0, s0], [sharp], tf.zeros([K]), 0.1, 0.001).dataSync()[0] - hand) < 1e-5);
  // the centre is subtracted before sharpening: centering the sharp logit away leaves a uniform teacher
  assert.ok(Math.abs(dinoLossTerms([s0, s0], [sharp], tf.tensor1d([1, 0, 0, 0, 0]), 0.1, 0.001).teacherEntropy.dataSync()[0] - Math.log(K)) < 1e-5);

  // random outputs against the float64 reference: 2 teacher crops, 4 student crops, N = 3
  const rng = new Rng(7);
  const mk = () => randomArray(3 * K, rng, 0.5);
  const sArr = [mk(), mk(), mk(), mk()];
  const tArr = [mk(), mk()];
  const cArr = randomArray(K, rng, 0.2);
  const rows = (a: Float32Array) => [0, 1, 2].map((n) => Array.from(a.subarray(n * K, (n + 1) * K)));
  const ref = referenceDino(sArr.map(rows), tArr.map(rows), Array.from(cArr), 0.1, 0.04);
  const terms = dinoLossTerms(sArr.map((a) => tf.tensor2d(a, [3, K])), tArr.map((a) => tf.tensor2d(a, [3, K])), tf.tensor2d(cArr, [1, K]), 0.1, 0.04);
  assert.ok(Math.abs(terms.loss.dataSync()[0] - ref.loss) < 1e-4 * Math.max(1, ref.loss), `${terms.loss.dataSync()[0]} vs ${ref.loss}`);
  assert.ok(Math.abs(terms.teacherEntropy.dataSync()[0] - ref.entropy) < 1e-4);
  assert.ok(Math.abs(terms.kl.dataSync()[0] - (ref.loss - ref.entropy)) < 1e-4);

  // the stacked form (one [V N, K] and one [T N, K] tensor) is the same loss
  const stacked = dinoLossTermsStacked(tf.tensor2d(Float32Array.from(sArr.flatMap((a) => Array.from(a))), [12, K]),
    tf.tensor2d(Float32Array.from(tArr.flatMap((a) => Array.from(a))), [6, K]), 4, 2, tf.tensor1d(cArr), 0.1, 0.04);
  assert.ok(Math.abs(stacked.loss.dataSync()[0] - terms.loss.dataSync()[0]) < 1e-5);
  assert.ok(Math.abs(stacked.teacherEntropy.dataSync()[0] - terms.teacherEntropy.dataSync()[0]) < 1e-5);
  assert.throws(() => dinoLossTermsStacked(tf.zeros([12, K]) as tf.Tensor2D, tf.zeros([6, K]) as tf.Tensor2D, 5, 2, tf.zeros([K]), 0.1, 0.04), /are not 5 and 2 crops/);
  // no gradient reaches the teacher outputs or the center; the student's does
  const tT = tf.tensor2d(tArr[0], [3, K]);
  const c = tf.tensor1d(cArr);
  const g = tf.grads((s: tf.Tensor, t: tf.Tensor, cc: tf.Tensor) => dinoLoss([s as tf.Tensor2D, s as tf.Tensor2D, s as tf.Tensor2D], [t as tf.Tensor2D], cc, 0.1, 0.04))([tf.tensor2d(sArr[0], [3, K]), tT, c]);
  assert.ok(tf.max(tf.abs(g[0])).dataSync()[0] > 1e-3);
  assert.equal(tf.max(tf.abs(g[1])).dataSync()[0], 0);
  assert.equal(tf.max(tf.abs(g[2])).dataSync()[0], 0);

  const a = tf.zeros([2, K]) as tf.Tensor2D;
  assert.throws(() => dinoLoss([a], [a], tf.zeros([K]), 0.1, 0.04), /more than one student crop/);
  assert.throws(() => dinoLoss([a, tf.zeros([3, K]) as tf.Tensor2D], [a], tf.zeros([K]), 0.1, 0.04), /student\[1\] must be \[2, 5\]/);
  assert.throws(() => dinoLoss([a, a], [a], tf.zeros([K + 1]), 0.1, 0.04), /center must be \[5\] or \[1, 5\]/);
  assert.throws(() => dinoLoss([a, a], [a], tf.zeros([K]), 0, 0.04), /studentTemp must be a positive number/);
  assert.throws(() => dinoLoss([a, a], [a], tf.zeros([K]), 0.1, NaN), /teacherTemp must be a positive number/);
  assert.throws(() => dinoLoss([a, a], [a, a, a], tf.zeros([K]), 0.1, 0.04), /at least as many as teacher crops/);
});

test("center update: c <- m c + (1 - m) mean over every global crop and image (eq. 4), by hand", async () => {
  await useBackend("wasm");
  const t1 = tf.tensor2d([[1, 2], [3, 4]]);
  const t2 = tf.tensor2d([[5, 6], [7, 8]]);
  assert.deepEqual(Array.from(dinoBatchCenter([t1, t2]).dataSync()), [4, 5]);
  const c = dinoCenterUpdate(tf.tensor2d([[1, -1]]), dinoBatchCenter([t1, t2]), 0.9);
  assert.deepEqual(c.shape, [1, 2]);
  const got = Array.from(c.dataSync());
  [0.9 * 1 + 0.1 * 4, 0.9 * -1 + 0.1 * 5].forEach((e, i) => assert.ok(Math.abs(got[i] - e) < 1e-6));
  assert.throws(() => dinoCenterUpdate(tf.zeros([1, 2]), tf.zeros([1, 2]), 1.5), /momentum must be in \[0, 1\]/);

  // through the method: after a step, C = 0.1 mean(teacher(global crops)) from C = 0; then 0.9 C + 0.1 mean'
  const method = tinyDino({ centerMomentum: 0.9 });
  const images = tf.randomUniform([4, 16, 16, 1], 0, 1, "float32", 2) as tf.Tensor4D;
  const expected: number[][] = [];
  let center = new Float64Array(32);
  for (let step = 0; step < 2; step++) {
    const ctx = { step, totalSteps: 10, epoch: 1, rng: new Rng(step) };
    const crops = tf.tidy(() => method.views(images, ctx));
    const t = tf.tidy(() => method.teacher.forward(tf.concat(crops.slice(0, 2), 0) as tf.Tensor4D));
    const mean = tf.mean(t, 0).dataSync();
    center = center.map((cv, k) => 0.9 * cv + 0.1 * mean[k]);
    expected.push(Array.from(center));
    tf.dispose(tf.tidy(() => Object.values(method.step(crops, ctx).metrics!)));
    method.afterStep(ctx);
    const got2 = method.center.value.dataSync();
    for (let k = 0; k < 32; k++) assert.ok(Math.abs(got2[k] - center[k]) < 1e-5, `step ${step} k ${k}: ${got2[k]} vs ${center[k]}`);
    tf.dispose([...crops, t]);
  }
  // without centering the center stays 0
  const nc = tinyDino({ centering: false });
  const ctx = { step: 0, totalSteps: 10, epoch: 1, rng: new Rng(0) };
  const crops = tf.tidy(() => nc.views(images, ctx));
  tf.dispose(tf.tidy(() => [nc.step(crops, ctx).loss]));
  nc.afterStep(ctx);
  assert.equal(tf.max(tf.abs(nc.center.value)).dataSync()[0], 0);
  tf.dispose([...crops, images]);
  method.dispose();
  nc.dispose();
});

test("WeightNormLinear: W = v / ||v|| per output (g fixed to 1); gradient = central finite differences of a float64 reference; frozen -> zero gradient", async () => {
  await useBackend("wasm");
  const [n, inDim, outDim] = [3, 4, 5];
  const layer = new WeightNormLinear(inDim, outDim, { rng: new Rng(1) });
  const rng = new Rng(2);
  const xArr = randomArray(n * inDim, rng);
  const rArr = randomArray(n * outDim, rng);
  const x = tf.tensor2d(xArr, [n, inDim]);
  const r = tf.tensor2d(rArr, [n, outDim]);
  // the effective weight's columns have norm 1 (the norm g is fixed to 1, a buffer)
  const norms = tf.tidy(() => tf.sqrt(tf.sum(tf.square(layer.weight()), 0)).dataSync());
  norms.forEach((v) => assert.ok(Math.abs(v - 1) < 1e-5));
  assert.deepEqual(layer.parameters().map((p) => p.name), ["weightV"]);
  assert.deepEqual(layer.buffers().map((b) => b.name), ["weightG"]);
  const v0 = Float64Array.from(layer.weightV.dataSync());
  // float64 reference: L(v) = sum_{n,k} r[n,k] sum_i x[n,i] v[i,k] / ||v[:,k]||
  const L = (v: Float64Array) => {
    let s = 0;
    for (let k = 0; k < outDim; k++) {
      let norm = 0;
      for (let i = 0; i < inDim; i++) norm += v[i * outDim + k] ** 2;
      norm = Math.sqrt(norm);
      for (let b = 0; b < n; b++) {
        let y = 0;
        for (let i = 0; i < inDim; i++) y += xArr[b * inDim + i] * v[i * outDim + k];
        s += rArr[b * outDim + k] * (y / norm);
      }
    }
    return s;
  };
  const fd = v0.map((_, j) => {
    const h = 1e-6;
    const p = v0.slice();
    const m = v0.slice();
    p[j] += h;
    m[j] -= h;
    return (L(p) - L(m)) / (2 * h);
  });
  const loss = () => tf.sum(tf.mul(layer.forward(x), r)) as tf.Scalar;
  const { value, grads } = tf.variableGrads(loss, [layer.weightV]);
  assert.ok(Math.abs(value.dataSync()[0] - L(v0)) < 1e-5);
  const g = grads[layer.weightV.name].dataSync();
  let maxErr = 0;
  fd.forEach((e, j) => (maxErr = Math.max(maxErr, Math.abs(g[j] - e))));
  assert.ok(maxErr < 1e-4, `max |grad - finite difference| = ${maxErr}`);
  // the gradient is orthogonal to each column of v (scaling a column changes nothing)
  for (let k = 0; k < outDim; k++) {
    let dot = 0;
    for (let i = 0; i < inDim; i++) dot += g[i * outDim + k] * v0[i * outDim + k];
    assert.ok(Math.abs(dot) < 1e-5);
  }
  layer.frozen = true;
  const frozen = tf.variableGrads(loss, [layer.weightV]);
  assert.equal(tf.max(tf.abs(frozen.grads[layer.weightV.name])).dataSync()[0], 0, "frozen: zero gradient");
  assert.ok(Math.abs(frozen.value.dataSync()[0] - L(v0)) < 1e-5, "frozen: same output");
  // a trainable norm g: dL/dg_k = sum_n r[n,k] (x_n . v_k / ||v_k||)
  const free = new WeightNormLinear(inDim, outDim, { rng: new Rng(1), fixedNorm: false });
  const gg = tf.variableGrads(() => tf.sum(tf.mul(free.forward(x), r)) as tf.Scalar, [free.weightG]).grads[free.weightG.name].dataSync();
  const y = tf.tidy(() => tf.mul(layer.forward(x), r).sum(0).dataSync());
  for (let k = 0; k < outDim; k++) assert.ok(Math.abs(gg[k] - y[k]) < 1e-5);
  // the DINO head: MLP -> l2-normalised bottleneck -> last layer; outputs are cosines in [-1, 1]
  const head = new DinoHead(6, { outDim: 7, hiddenDim: 9, bottleneckDim: 4, seed: 3 });
  const out = tf.tidy(() => head.forward(tf.randomNormal([5, 6], 0, 1, "float32", 1)).dataSync());
  assert.ok(Array.from(out).every((o) => Math.abs(o) <= 1 + 1e-5));
  assert.deepEqual(head.parameters().map((p) => p.name), ["mlp.0.weight", "mlp.0.bias", "mlp.1.weight", "mlp.1.bias", "mlp.2.weight", "mlp.2.bias", "lastLayer.weightV"]);
  assert.throws(() => new DinoHead(6, { outDim: 0 }), /outDim must be a positive integer/);
  assert.throws(() => head.forward(tf.zeros([2, 5]) as tf.Tensor2D), /expected input \[N, 6\]/);
  tf.dispose([x, r, value, frozen.value, ...Object.values(grads), ...Object.values(frozen.grads)]);
  layer.dispose();
  free.dispose();
  head.dispose();
});

test("one ViT, crops of different sizes: torch's bicubic position-embedding resampling, native size unchanged, clear errors", async () => {
  await useBackend("wasm");
  // torch.nn.functional.interpolate(mode="bicubic", align_corners=False) from 7 to 3 and to 4 (measured with PyTorch 1.13)
  const torch7to3 = [[0.314815, 0.796296, -0.111111, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, -0.111111, 0.796296, 0.314815]];
  const torch7to4 = [
    [0.639648, 0.42627, -0.065918, 0, 0, 0, 0], [0, -0.071777, 0.967285, 0.114746, -0.010254, 0, 0],
    [0, 0, -0.010254, 0.114746, 0.967285, -0.071777, 0], [0, 0, 0, 0, -0.065918, 0.42627, 0.639648],
  ];
  for (const [out, ref] of [[3, torch7to3], [4, torch7to4]] as const) {
    const m = bicubicResizeMatrix(7, out);
    ref.flat().forEach((e, i) => assert.ok(Math.abs(m[i] - e) < 1e-5, `7->${out} [${i}]: ${m[i]} vs ${e}`));
  }
  assert.deepEqual(Array.from(bicubicResizeMatrix(3, 3)), [1, 0, 0, 0, 1, 0, 0, 0, 1]);
  const kron = posEmbedResizeMatrix([7, 7], [3, 4]);
  const m3 = bicubicResizeMatrix(7, 3);
  const m4 = bicubicResizeMatrix(7, 4);
  assert.ok(Math.abs(kron[(1 * 4 + 2) * 49 + 3 * 7 + 4] - m3[1 * 7 + 3] * m4[2 * 7 + 4]) < 1e-7);

  const strict = tinyVit(5);
  const vit = tinyVit(5, { interpolatePosEmbed: true });
  const x16 = tf.randomUniform([2, 16, 16, 1], 0, 1, "float32", 1) as tf.Tensor4D;
  const x8 = tf.randomUniform([3, 8, 8, 1], 0, 1, "float32", 2) as tf.Tensor4D;
  const x12x8 = tf.randomUniform([2, 12, 8, 1], 0, 1, "float32", 3) as tf.Tensor4D;
  // the native size is untouched: same output as a ViT without interpolation
  const [a, b] = tf.tidy(() => [strict.forward(x16).dataSync(), vit.forward(x16).dataSync()]);
  assert.deepEqual(Array.from(a), Array.from(b));
  assert.deepEqual(tf.tidy(() => vit.forward(x8).shape), [3, 16]);
  assert.deepEqual(tf.tidy(() => vit.forward(x12x8).shape), [2, 16]);
  // a 2x2 grid's positions are the 4x4 grid's resampled: pos' = (M_h kron M_w) pos
  const pos = Array.from(strict.posEmbed.dataSync()).slice(16); // patches' rows (row 0 is the class token's)
  const resized = tf.tidy(() => vit.patchPositions([2, 2]).dataSync());
  const m = posEmbedResizeMatrix([4, 4], [2, 2]);
  for (let p = 0; p < 4; p++) {
    for (let d = 0; d < 16; d++) {
      let e = 0;
      for (let q = 0; q < 16; q++) e += m[p * 16 + q] * pos[q * 16 + d];
      assert.ok(Math.abs(resized[p * 16 + d] - e) < 1e-5);
    }
  }
  assert.throws(() => strict.forward(x8), /expected input \[N, 16, 16, 1\]/);
  assert.throws(() => vit.forward(tf.zeros([1, 10, 8, 1]) as tf.Tensor4D), /multiples of the patch size 4/);
  // a learnable embedding gets its gradient through the resampling
  const learn = tinyVit(6, { interpolatePosEmbed: true, posEmbed: "learnable" });
  const { grads } = tf.variableGrads(() => tf.sum(tf.square(learn.forward(x8))) as tf.Scalar, [learn.posEmbed]);
  const gp = grads[learn.posEmbed.name].dataSync();
  assert.ok(Array.from(gp.subarray(16)).some((v) => Math.abs(v) > 1e-8) && Array.from(gp).every(Number.isFinite));
  tf.dispose(Object.values(grads));

  // DINO's student: crops grouped by size through one backbone; each crop's output = head(backbone(crop))
  const method = tinyDino();
  const crops = [x16, x16, x8, x8] as tf.Tensor4D[];
  const { outputs, features } = method.studentOutputs(crops);
  assert.deepEqual(outputs.shape, [2 + 2 + 3 + 3, 32], "stacked crop-major");
  assert.deepEqual(features.map((f) => f.shape), [[2, 16], [2, 16], [3, 16], [3, 16]]);
  const alone = tf.tidy(() => method.student.forward(x8).dataSync());
  const grouped = tf.tidy(() => tf.slice(outputs, [7, 0], [3, 32]).dataSync());
  alone.forEach((v, i) => assert.ok(Math.abs(v - grouped[i]) < 1e-5));
  tf.dispose([outputs, ...features, x16, x8, x12x8]);
  for (const mod of [strict, vit, learn]) mod.dispose();
  method.dispose();
  assert.throws(() => tinyDino({ localCropSize: 10 }), /localCropSize must be a positive multiple of the ViT patch size 4/);
});

test("ViT gradient checkpointing: the same loss and gradients; CLS attention maps per head", async () => {
  await useBackend("wasm");
  const x = tf.randomUniform([3, 16, 16, 1], 0, 1, "float32", 4) as tf.Tensor4D;
  const run = (ck: boolean | number) => {
    const v = tinyVit(9, { posEmbed: "learnable", gradientCheckpointing: ck });
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(tf.sin(v.forward(x)))) as tf.Scalar, v.variables());
    const out = { loss: value.dataSync()[0], grads: Object.fromEntries(v.parameters().map((p) => [p.name, Array.from(grads[p.variable.name].dataSync())])) };
    tf.dispose([value, ...Object.values(grads)]);
    v.dispose();
    return out;
  };
  const plain = run(false);
  for (const ck of [true, 1]) {
    const before = tf.memory().numTensors;
    const c = run(ck);
    assert.equal(tf.memory().numTensors, before, "no leak");
    assert.ok(Math.abs(c.loss - plain.loss) < 1e-6);
    for (const [name, g] of Object.entries(plain.grads)) {
      const err = Math.max(...g.map((v, i) => Math.abs(v - c.grads[name][i])));
      assert.ok(err < 1e-5, `${name}: ${err}`);
    }
  }
  // clsAttention: the last block's class-token row, patches only, per head
  const v = tinyVit(2, { interpolatePosEmbed: true });
  const before = tf.memory().numTensors;
  const att = v.clsAttention(x);
  assert.deepEqual(att.shape, [3, 2, 4, 4]);
  v.setRecordAttention(true);
  tf.dispose(tf.tidy(() => [v.forward(x)]));
  const full = v.lastAttentions()[1]!;
  const row0 = tf.tidy(() => tf.slice(full, [0, 0, 0, 1], [3, 2, 1, 16]).dataSync());
  assert.deepEqual(Array.from(att.dataSync()), Array.from(row0));
  const sums = tf.tidy(() => tf.sum(att, [2, 3]).dataSync());
  assert.ok(Array.from(sums).every((s) => s > 0 && s < 1 + 1e-5));
  v.setRecordAttention(false);
  att.dispose();
  assert.equal(tf.memory().numTensors, before);
  const small = tf.tidy(() => v.clsAttention(tf.zeros([1, 8, 12, 1]) as tf.Tensor4D).shape);
  assert.deepEqual(small, [1, 2, 2, 3]);
  assert.equal(tf.memory().numTensors, before);
  // the gallery: image, one map per head, the mean and the image masked to 60% of the attention mass
  assert.deepEqual(Array.from(attentionMassMask([0.5, 0.3, 0.1, 0.1], 0.6)), [1, 1, 0, 0]);
  assert.deepEqual(Array.from(attentionMassMask([0.1, 0.7, 0.2], 0.6)), [0, 1, 0]);
  assert.throws(() => attentionMassMask([1], 0), /mass must be in \(0, 1\]/);
  const maps = v.clsAttention(x);
  const png = await attentionMapsGallery(x, maps, { scale: 2, rowLabels: ["a", "b", "c"] });
  const meta = await sharp(png).metadata();
  assert.equal(meta.format, "png");
  assert.ok(meta.width! > 5 * 16 * 2 && meta.height! > 3 * 16 * 2, `${meta.width}x${meta.height}`);
  await assert.rejects(() => attentionMapsGallery(x, tf.zeros([3, 2, 3, 3]) as tf.Tensor4D), /does not tile 16x16/);
  maps.dispose();
  v.dispose();
  x.dispose();
});

test("DINO step: student on every crop, teacher on the globals; no gradient into the teacher; EMA with the cosine momentum; last layer frozen in epoch 0", async () => {
  await useBackend("wasm");
  const method = tinyDino({ teacherMomentum: 0.9, freezeLastLayerEpochs: 1 });
  // the teacher starts as the student (different init seeds above)
  const [s0, t0] = [await method.student.getWeights(), await method.teacher.getWeights()];
  for (const k of Object.keys(s0)) assert.deepEqual(Array.from(t0[k].data), Array.from(s0[k].data), k);
  assert.ok(method.teacher.parameters().every((p) => !p.variable.trainable));
  assert.equal(method.backbone, method.teacher.backbone, "the teacher is evaluated");
  const images = tf.randomUniform([4, 16, 16, 1], 0, 1, "float32", 5) as tf.Tensor4D;
  const opt = new AdamW(method.trainable.parameters(), { lr: 0.01, weightDecay: 0 });
  const totalSteps = 10;
  for (const [step, epoch] of [[0, 0], [3, 1]]) {
    const ctx = { step, totalSteps, epoch, rng: new Rng(step) };
    const crops = tf.tidy(() => method.views(images, ctx));
    assert.deepEqual(crops.map((c) => c.shape), [[4, 16, 16, 1], [4, 16, 16, 1], [4, 8, 8, 1], [4, 8, 8, 1]]);
    // no path from the loss to the teacher or the center
    method.teacher.setTrainable(true);
    assert.throws(() => tf.variableGrads(() => method.step(crops, ctx).loss, [...method.teacher.variables()]), /connection/);
    method.teacher.setTrainable(false);
    const { value, grads } = tf.variableGrads(() => {
      const out = method.step(crops, ctx);
      assert.deepEqual(Object.keys(out.metrics!).sort(), ["kl", "teacherEntropy", "teacherMomentum", "teacherTemp"]);
      assert.ok(Math.abs(out.metrics!.kl.dataSync()[0] - (out.loss.dataSync()[0] - out.metrics!.teacherEntropy.dataSync()[0])) < 1e-5);
      assert.deepEqual(out.embeddings!.shape, [4, 16]);
      return out.loss;
    }, method.trainable.variables());
    assert.ok(Number.isFinite(value.dataSync()[0]));
    const lastName = method.student.head.lastLayer.weightV.name;
    const lastGrad = tf.max(tf.abs(grads[lastName])).dataSync()[0];
    if (epoch === 0) assert.equal(lastGrad, 0, "last layer frozen in epoch 0");
    else assert.ok(lastGrad > 0, "last layer trained from epoch 1");
    assert.ok(tf.max(tf.abs(grads[(method.student.backbone as ViT).patchEmbed.weight.name])).dataSync()[0] > 0);
    const teacherBefore = await method.teacher.getWeights();
    opt.applyGradients(grads);
    const studentAfter = await method.student.getWeights();
    assert.deepEqual(await method.teacher.getWeights(), teacherBefore, "the optimiser leaves the teacher alone");
    method.afterStep(ctx);
    const m = cosineMomentum(step, totalSteps, 0.9);
    const teacherAfter = await method.teacher.getWeights();
    for (const k of Object.keys(teacherAfter)) {
      const got = teacherAfter[k].data;
      for (let i = 0; i < got.length; i++) {
        const e = m * teacherBefore[k].data[i] + (1 - m) * studentAfter[k].data[i];
        assert.ok(Math.abs(got[i] - e) < 1e-6, `${k}[${i}]`);
      }
    }
    tf.dispose([value, ...crops, ...Object.values(grads)]);
  }
  images.dispose();
  opt.dispose();
  method.dispose();
});

test("DINO schedules: teacher temperature warm-up, no sharpening, cosine / constant / no momentum; option errors", async () => {
  await useBackend("wasm");
  const m = tinyDino({ teacherTemp: 0.07, warmupTeacherTemp: 0.04, teacherTempWarmup: 0.3 });
  const at = (step: number) => m.teacherTemperature({ step, totalSteps: 100 });
  assert.equal(at(0), 0.04);
  assert.ok(Math.abs(at(15) - 0.055) < 1e-12);
  assert.equal(at(30), 0.07);
  assert.equal(at(99), 0.07);
  assert.equal(m.teacherMomentum({ step: 0, totalSteps: 100 }), 0.996);
  assert.equal(m.teacherMomentum({ step: 100, totalSteps: 100 }), 1);
  m.dispose();
  const flat = tinyDino({ sharpening: false, studentTemp: 0.2 });
  assert.equal(flat.teacherTemperature({ step: 0, totalSteps: 10 }), 0.2);
  flat.dispose();
  const fixed = tinyDino({ teacherTemp: 0.02, teacherTempWarmup: 0 });
  assert.equal(fixed.teacherTemperature({ step: 0, totalSteps: 10 }), 0.02);
  fixed.dispose();
  // no momentum teacher: after afterStep the teacher equals the (updated) student exactly
  const copy = tinyDino({ teacherMomentum: 0, teacherMomentumSchedule: "constant" });
  const opt = new AdamW(copy.trainable.parameters(), { lr: 0.05, weightDecay: 0 });
  const images = tf.randomUniform([4, 16, 16, 1], 0, 1, "float32", 6) as tf.Tensor4D;
  const ctx = { step: 0, totalSteps: 4, epoch: 1, rng: new Rng(1) };
  const crops = tf.tidy(() => copy.views(images, ctx));
  const { value, grads } = tf.variableGrads(() => copy.step(crops, ctx).loss, copy.trainable.variables());
  opt.applyGradients(grads);
  copy.afterStep(ctx);
  const [s, t] = [await copy.student.getWeights(), await copy.teacher.getWeights()];
  for (const k of Object.keys(s)) assert.deepEqual(Array.from(t[k].data), Array.from(s[k].data));
  tf.dispose([value, images, ...crops, ...Object.values(grads)]);
  opt.dispose();
  copy.dispose();
  for (const [opts, re] of [
    [{ studentTemp: 0 }, /studentTemp must be a positive number/],
    [{ teacherTemp: -1 }, /teacherTemp must be a positive number/],
    [{ centerMomentum: 1.2 }, /centerMomentum must be in \[0, 1\]/],
    [{ teacherMomentum: -0.1 }, /teacherMomentum must be in \[0, 1\]/],
    [{ teacherTempWarmup: 2 }, /teacherTempWarmup must be in \[0, 1\]/],
    [{ numLocalCrops: 1.5 }, /numLocalCrops must be a non-negative integer/],
    [{ freezeLastLayerEpochs: -1 }, /freezeLastLayerEpochs must be a non-negative integer/],
    [{ teacherMomentumSchedule: "linear" as "cosine" }, /teacherMomentumSchedule must be "cosine" or "constant"/],
    [{ evalEncoder: "both" as "teacher" }, /evalEncoder must be "teacher" or "student"/],
  ] as const) {
    assert.throws(() => tinyDino(opts as Partial<DINOOptions>), re);
  }
  const bb = tinyVit(1);
  assert.throws(() => new DINO({ backbone: bb, teacherBackbone: bb, inputShape: [16, 16, 1] }), /its own backbone/);
  bb.dispose();
});

const runTiny = (extra: Partial<TrainerOptions> = {}, opts: Partial<DINOOptions> = {}) =>
  trainSteps(tinyDino({ teacherMomentum: 0.9, freezeLastLayerEpochs: 1, ...opts }, 11), squaresDataset(32, 16, 5), {
    epochs: 2, batchSize: 8, seed: 11, checkpointEvery: 3,
    optimizer: { name: "adamw", lr: 0.01, weightDecay: 0.04 }, maxGradNorm: 3, collapseEvery: 2, ...extra,
  });

const stepRecords = (records: readonly Record<string, unknown>[]) => records.filter((r) => r.type === "step").map((r) => [r.loss, r.teacherEntropy, r.kl]);

test("DINO under the Trainer: resume mid-run is bitwise exact (student, teacher, center, optimiser, losses); no tensor leak per step", async () => {
  await useBackend("wasm");
  const full = await runTiny();
  assert.equal(full.result.steps, 8);
  expectNoLeakPerStep(full.counts);
  const steps = full.result.metrics.filter((r) => r.type === "step");
  assert.ok(steps.every((r) => [r.loss, r.teacherEntropy, r.kl, r.teacherTemp, r.teacherMomentum].every((v) => typeof v === "number" && Number.isFinite(v))));
  assert.equal(steps.filter((r) => typeof r.collapseScore === "number").length, 4);
  assert.deepEqual(Object.keys(full.state).sort(), ["center", "teacher"]);
  assert.ok(Array.from(full.state.center["center"].data).some((v) => v !== 0), "the center moved");
  const { resumed } = await expectExactResume(full, (extra) => runTiny(extra), {
    name: "dino", stopAfterStep: 5,
    stopped: (first) => {
      assert.equal(first.result.steps, 5);
      const ckpt = readCheckpoint(first.result.lastCheckpoint!);
      assert.ok(ckpt.tensors["state.teacher"] && ckpt.tensors["state.center"], "the checkpoint holds the teacher and the center");
    },
  });
  assert.deepEqual(stepRecords(resumed.result.metrics), stepRecords(full.result.metrics));
  // the collapse-study arms train without leaking either
  for (const opts of [{ centering: false }, { sharpening: false, checkpointing: true as const }, { teacherMomentum: 0, teacherMomentumSchedule: "constant" as const }, { numLocalCrops: 0 }]) {
    const r = await runTiny({ epochs: 1 }, opts);
    expectNoLeakPerStep(r.counts, `${JSON.stringify(opts)}: `);
  }
});

test("CLI: dino's options parse and bad values fail clearly; the registry builds the method from them", () => {
  const cfg = (...flags: string[]) => {
    const r = parseTrainArgs(["train", "dino", "--preset", "smoke", ...flags]);
    assert.notEqual(r, "help");
    return (r as Exclude<typeof r, "help">).config;
  };
  const base = cfg();
  assert.equal(base.backbone, "vit-tiny");
  assert.equal(base.methodOptions.teacherTemp, 0.07);
  const o = cfg("--local-crops", "4", "--teacher-momentum", "0.99", "--center-momentum", "0.5", "--teacher-temp", "0.04", "--teacher-temp-warmup", "0", "--no-centering", "--no-sharpening", "--no-momentum-teacher").methodOptions;
  assert.deepEqual([o.numLocalCrops, o.teacherMomentum, o.centerMomentum, o.teacherTemp, o.teacherTempWarmup, o.centering, o.sharpening, o.momentumTeacher], [4, 0.99, 0.5, 0.04, 0, false, false, false]);
  for (const [flag, bad, what] of [
    ["local-crops", "-1", "an integer >= 0 and <= 16"],
    ["local-crops", "2.5", "an integer >= 0 and <= 16"],
    ["teacher-momentum", "1.5", "a number >= 0 and <= 1"],
    ["center-momentum", "abc", "a number >= 0 and <= 1"],
    ["teacher-temp", "0", "a number > 0 and <= 10"],
    ["student-temp", "-0.1", "a number > 0 and <= 10"],
    ["teacher-momentum-schedule", "linear", "one of cosine | constant"],
  ]) {
    assert.throws(() => cfg(`--${flag}=${bad}`), new RegExp(`--${flag} expects ${what.replace(/[|]/g, "\\|")}, got '${bad}'`));
  }
  assert.throws(() => cfg("--no-centering=yes"), /does not take an argument/);
  assert.throws(() => parseTrainArgs(["train", "simclr", "--local-crops", "2"]), /--local-crops is not an option of dino|is not an option of simclr/);
  // the registry's create honours the options, and a bad crop size fails at build time
  const noMomentum = createMethod(methodConfig("dino", "smoke", { methodOptions: { momentumTeacher: false } }), [28, 28, 1]) as DINO;
  assert.equal(noMomentum.teacherMomentum({ step: 5, totalSteps: 10 }), 0);
  assert.equal(noMomentum.numLocalCrops, 2);
  noMomentum.dispose();
  assert.throws(() => createMethod(methodConfig("dino", "smoke", { methodOptions: { localCropSize: 10 } }), [28, 28, 1]), /localCropSize must be a positive multiple of the ViT patch size 4/);
});

test("CLI: a tiny dino run trains, evaluates and writes results.json, the teacher and the center", async () => {
  const { out, results } = await runCliSmoke("dino", ["--progress", "plain"]);
  assert.equal(results.method, "dino");
  assert.equal(results.backbone, "vit-tiny");
  assert.equal(results.steps, 4);
  assert.ok(results.encoders[0].knnTop1 > 0.1 && results.encoders[0].linearTop1 > 0.1, JSON.stringify(results.encoders));
  const metrics = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.ok(metrics.filter((r) => r.type === "step").every((r) => Number.isFinite(r.teacherEntropy) && Number.isFinite(r.kl)));
  const weights = readCheckpoint(path.join(out, "weights", "ckpt-00000004"));
  assert.ok(weights.tensors["state.teacher"] && weights.tensors["state.center"]);
  fs.rmSync(out, { recursive: true, force: true });
});
