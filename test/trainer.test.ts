/**
 * Training core: optimisers against hand-computed steps, schedules, clipping, EMA, the
 * NaN stop and the tensor-leak check of the trainer loop.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { tf, useBackend, relError } from "./helpers";
import { Module } from "../lib/src/nn/module";
import { Backbone } from "../lib/src/nn/backbone";
import type { ImageDataset } from "../lib/src/data/types";
import type { SSLMethod, StepContext, StepOutput } from "../lib/src/methods/types";
import {
  AdamW,
  SgdMomentum,
  Lars,
  clipGradientsByGlobalNorm,
  warmupCosine,
  cosineMomentum,
  EmaUpdater,
  Trainer,
  NonFiniteLossError,
  CheckpointManager,
  deriveSeed,
} from "../lib/src/train";
import { Rng } from "../lib/src/random";

/** A module with explicitly given parameters (name -> values, decay flag). */
class Params extends Module {
  readonly vars: Record<string, tf.Variable> = {};
  constructor(spec: Record<string, { values: number[]; decay: boolean }>) {
    super();
    for (const [name, s] of Object.entries(spec)) this.vars[name] = this.addParam(name, tf.tensor1d(s.values), { decay: s.decay });
  }
}

const read = (v: tf.Tensor) => Array.from(v.dataSync());

function gradsFor(m: Params, values: Record<string, number[]>): tf.NamedTensorMap {
  const out: tf.NamedTensorMap = {};
  for (const [name, g] of Object.entries(values)) out[m.vars[name].name] = tf.tensor1d(g);
  return out;
}

const MODES = ["host", "device"] as const;

// The host update has two paths: in place on the wasm heap, and through JS arrays (cpu backend).
const ADAMW_CASES = [["host", "wasm"], ["host", "cpu"], ["device", "wasm"]] as const;

for (const [mode, backend] of ADAMW_CASES) test(`AdamW (${mode} update, ${backend}): two steps match a hand computation (decoupled decay, skipped for decay:false)`, async () => {
  await useBackend(backend);
  const p0 = { w: [1, -2, 0.5], b: [0.3, -0.1] };
  const g = [
    { w: [0.5, 0.1, -0.2], b: [1, -2] },
    { w: [-0.3, 0.4, 0.05], b: [0.5, 0.5] },
  ];
  const m = new Params({ w: { values: p0.w, decay: true }, b: { values: p0.b, decay: false } });
  const lr = 0.1, wd = 0.05, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const opt = new AdamW(m.parameters(), { lr, weightDecay: wd, beta1: b1, beta2: b2, eps, updateOn: mode });
  assert.equal(opt.updateMode, mode);
  // reference in float64
  const ref: Record<string, { p: number[]; m: number[]; v: number[]; decay: boolean }> = {
    w: { p: p0.w.slice(), m: [0, 0, 0], v: [0, 0, 0], decay: true },
    b: { p: p0.b.slice(), m: [0, 0], v: [0, 0], decay: false },
  };
  for (let t = 1; t <= 2; t++) {
    const grads = gradsFor(m, g[t - 1]);
    const tensorsBefore = tf.memory().numTensors;
    opt.applyGradients(grads);
    assert.equal(tf.memory().numTensors, tensorsBefore, "the update leaks no tensor");
    tf.dispose(Object.values(grads));
    for (const name of ["w", "b"] as const) {
      const r = ref[name];
      r.p = r.p.map((p, i) => {
        const gi = g[t - 1][name][i];
        r.m[i] = b1 * r.m[i] + (1 - b1) * gi;
        r.v[i] = b2 * r.v[i] + (1 - b2) * gi * gi;
        const mh = r.m[i] / (1 - b1 ** t);
        const vh = r.v[i] / (1 - b2 ** t);
        const decayed = r.decay ? p * (1 - lr * wd) : p;
        return decayed - (lr * mh) / (Math.sqrt(vh) + eps);
      });
    }
  }
  assert.ok(relError(read(m.vars.w), ref.w.p) < 1e-6, `w ${read(m.vars.w)} vs ${ref.w.p}`);
  assert.ok(relError(read(m.vars.b), ref.b.p) < 1e-6, `b ${read(m.vars.b)} vs ${ref.b.p}`);
  assert.equal(opt.stepCount, 2);
  // the bias got no decay: with a zero gradient and weight decay only, it would not move
  const m2 = new Params({ b: { values: [2], decay: false }, w: { values: [2], decay: true } });
  const opt2 = new AdamW(m2.parameters(), { lr: 0.1, weightDecay: 0.5, updateOn: mode });
  const zero = gradsFor(m2, { b: [0], w: [0] });
  opt2.applyGradients(zero);
  tf.dispose(Object.values(zero));
  assert.equal(read(m2.vars.b)[0], 2);
  assert.ok(Math.abs(read(m2.vars.w)[0] - 2 * (1 - 0.05)) < 1e-6);
  opt.dispose();
  opt2.dispose();
  m.dispose();
  m2.dispose();
});

for (const mode of MODES) test(`SgdMomentum (${mode} update): plain and Nesterov momentum with coupled weight decay match hand computation`, async () => {
  await useBackend("wasm");
  for (const nesterov of [false, true]) {
    const m = new Params({ w: { values: [1, -1], decay: true }, b: { values: [0.5], decay: false } });
    const lr = 0.1, mu = 0.9, wd = 0.01;
    const opt = new SgdMomentum(m.parameters(), { lr, momentum: mu, nesterov, weightDecay: wd, updateOn: mode });
    const g = [{ w: [0.2, 0.4], b: [1] }, { w: [-0.1, 0.3], b: [-1] }];
    const ref = { w: { p: [1, -1], buf: [0, 0], decay: true }, b: { p: [0.5], buf: [0], decay: false } };
    for (const gs of g) {
      const grads = gradsFor(m, gs);
      opt.applyGradients(grads);
      tf.dispose(Object.values(grads));
      for (const name of ["w", "b"] as const) {
        const r = ref[name];
        r.p = r.p.map((p, i) => {
          const gi = gs[name][i] + (r.decay ? wd * p : 0);
          r.buf[i] = mu * r.buf[i] + gi;
          return p - lr * (nesterov ? gi + mu * r.buf[i] : r.buf[i]);
        });
      }
    }
    assert.ok(relError(read(m.vars.w), ref.w.p) < 1e-6, `nesterov=${nesterov} w ${read(m.vars.w)} vs ${ref.w.p}`);
    assert.ok(relError(read(m.vars.b), ref.b.p) < 1e-6, `nesterov=${nesterov} b`);
    opt.dispose();
    m.dispose();
  }
});

for (const mode of MODES) test(`Lars (${mode} update): trust ratio eta*||p||/||g + wd p|| on weights, plain momentum on excluded biases`, async () => {
  await useBackend("wasm");
  const m = new Params({ w: { values: [3, 4], decay: true }, b: { values: [1, 1], decay: false }, z: { values: [0, 0], decay: true } });
  const lr = 0.5, mu = 0.9, wd = 0.1, eta = 0.001;
  const opt = new Lars(m.parameters(), { lr, momentum: mu, weightDecay: wd, trustCoefficient: eta, updateOn: mode });
  const grads = gradsFor(m, { w: [0.6, 0.8], b: [0.6, 0.8], z: [1, 1] });
  opt.applyGradients(grads);
  tf.dispose(Object.values(grads));
  // w: g' = g + wd p = [0.9, 1.2], ||g'|| = 1.5, ||p|| = 5, ratio = 0.001 * 5 / 1.5
  const ratio = (eta * 5) / 1.5;
  const wRef = [3 - lr * 0.9 * ratio, 4 - lr * 1.2 * ratio];
  assert.ok(relError(read(m.vars.w), wRef) < 1e-6, `w ${read(m.vars.w)} vs ${wRef}`);
  // b excluded: no decay, no ratio: p - lr g
  assert.ok(relError(read(m.vars.b), [1 - 0.5 * 0.6, 1 - 0.5 * 0.8]) < 1e-6, `b ${read(m.vars.b)}`);
  // z has zero norm: ratio 1, g' = g
  assert.ok(relError(read(m.vars.z), [-0.5, -0.5]) < 1e-6, `z ${read(m.vars.z)}`);
  // second step: momentum buffer
  const grads2 = gradsFor(m, { w: [0, 0], b: [0, 0], z: [0, 0] });
  opt.applyGradients(grads2);
  tf.dispose(Object.values(grads2));
  const wNow = wRef;
  const g2 = [wd * wNow[0], wd * wNow[1]];
  const ratio2 = (eta * Math.hypot(wNow[0], wNow[1])) / Math.hypot(g2[0], g2[1]);
  const buf = [mu * 0.9 * ratio + g2[0] * ratio2, mu * 1.2 * ratio + g2[1] * ratio2];
  const wRef2 = [wNow[0] - lr * buf[0], wNow[1] - lr * buf[1]];
  assert.ok(relError(read(m.vars.w), wRef2) < 1e-6, `w step 2 ${read(m.vars.w)} vs ${wRef2}`);
  assert.ok(relError(read(m.vars.b), [1 - 0.5 * 0.6 * 1.9, 1 - 0.5 * 0.8 * 1.9]) < 1e-6, `b step 2 ${read(m.vars.b)}`);
  opt.dispose();
  m.dispose();
});

test("optimisers reject bad options and mismatched gradients with clear errors", async () => {
  await useBackend("wasm");
  const m = new Params({ w: { values: [1, 2], decay: true } });
  assert.throws(() => new AdamW([], { lr: 0.1 }), /non-empty ParamInfo/);
  assert.throws(() => new AdamW(m.parameters(), { lr: -1 }), /lr must be/);
  assert.throws(() => new SgdMomentum(m.parameters(), { lr: 0.1, momentum: 1.5 }), /momentum/);
  const opt = new SgdMomentum(m.parameters(), { lr: 0.1 });
  const bad = { [m.vars.w.name]: tf.tensor1d([1, 2, 3]) };
  assert.throws(() => opt.applyGradients(bad), /shape/);
  tf.dispose(Object.values(bad));
  opt.dispose();
  m.dispose();
});

test("clipGradientsByGlobalNorm scales by maxNorm / global norm only when above", async () => {
  await useBackend("wasm");
  const grads = { a: tf.tensor1d([3, 0]), b: tf.tensor1d([0, 4]) };
  const clipped = clipGradientsByGlobalNorm(grads, 1);
  assert.ok(Math.abs(clipped.globalNorm.dataSync()[0] - 5) < 1e-5);
  const s = 1 / (5 + 1e-6);
  assert.ok(relError(read(clipped.grads.a), [3 * s, 0]) < 1e-6);
  assert.ok(relError(read(clipped.grads.b), [0, 4 * s]) < 1e-6);
  const loose = clipGradientsByGlobalNorm(grads, 10);
  assert.deepEqual(read(loose.grads.a), [3, 0]);
  assert.deepEqual(read(loose.grads.b), [0, 4]);
  tf.dispose([...Object.values(grads), ...Object.values(clipped.grads), clipped.globalNorm, ...Object.values(loose.grads), loose.globalNorm]);
  assert.throws(() => clipGradientsByGlobalNorm(grads, 0), /maxNorm/);
});

test("warmupCosine: linear warmup to baseLr, cosine to finalLr, flat after the end", () => {
  const lr = warmupCosine({ baseLr: 1, warmupSteps: 10, totalSteps: 110, finalLr: 0.1 });
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  close(lr(0), 0.1);
  close(lr(4), 0.5);
  close(lr(9), 1);
  close(lr(10), 1);
  close(lr(60), 0.1 + 0.9 * 0.5);
  close(lr(35), 0.1 + 0.9 * (1 + Math.cos(Math.PI / 4)) / 2);
  close(lr(110), 0.1);
  close(lr(500), 0.1);
  const noWarmup = warmupCosine({ baseLr: 2, warmupSteps: 0, totalSteps: 4 });
  assert.deepEqual([0, 1, 2, 3, 4].map(noWarmup).map((x) => +x.toFixed(12)), [2, 1.707106781187, 1, 0.292893218813, 0]);
  assert.throws(() => warmupCosine({ baseLr: 1, warmupSteps: 20, totalSteps: 10 }), /warmupSteps/);
  assert.throws(() => warmupCosine({ baseLr: 1, warmupSteps: 0, totalSteps: 0 }), /totalSteps/);
});

test("cosineMomentum follows BYOL's 1 - (1 - base)(cos(pi k/K) + 1)/2", () => {
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  close(cosineMomentum(0, 100, 0.996), 0.996);
  close(cosineMomentum(50, 100, 0.996), 0.998);
  close(cosineMomentum(100, 100, 0.996), 1);
  close(cosineMomentum(25, 100, 0.99), 1 - 0.01 * (Math.cos(Math.PI / 4) + 1) / 2);
  assert.throws(() => cosineMomentum(1, 0, 0.99), /totalSteps/);
});

class TwoTensorModule extends Module {
  readonly w: tf.Variable;
  readonly stat: tf.Variable;
  constructor(w: number[], stat: number[]) {
    super();
    this.w = this.addParam("w", tf.tensor1d(w));
    this.stat = this.addBuffer("stat", tf.tensor1d(stat));
  }
}

test("EmaUpdater: target = m target + (1 - m) online over parameters and buffers", async () => {
  await useBackend("wasm");
  const online = new TwoTensorModule([1, 2], [10, 20]);
  const target = new TwoTensorModule([3, 5], [0, 0]);
  const ema = new EmaUpdater(online, target);
  ema.update(0.9);
  assert.ok(relError(read(target.w), [2.8, 4.7]) < 1e-6, `${read(target.w)}`);
  assert.ok(relError(read(target.stat), [1, 2]) < 1e-6, `${read(target.stat)}`);
  ema.copy();
  assert.deepEqual(read(target.w), [1, 2]);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) ema.update(0.99);
  assert.equal(tf.memory().numTensors, before);
  const other = new TwoTensorModule([1, 2, 3], [1]);
  assert.throws(() => new EmaUpdater(online, other), /'w'|'stat'/);
  assert.throws(() => ema.update(1.5), /momentum/);
  online.dispose();
  target.dispose();
  other.dispose();
});

test("deriveSeed is a pure, well-spread function of (seed, keys)", () => {
  assert.equal(deriveSeed(1, 5), deriveSeed(1, 5));
  const seen = new Set<number>();
  for (let s = 0; s < 4; s++) for (let k = 0; k < 250; k++) seen.add(deriveSeed(s, k));
  assert.equal(seen.size, 1000);
  assert.notEqual(deriveSeed(1, 2, 3), deriveSeed(1, 3, 2));
});

// ---- a tiny stand-in method to drive the trainer ------------------------------------------

class TinyBackbone extends Backbone {
  readonly outputDim = 8;
  readonly w: tf.Variable;
  readonly b: tf.Variable;
  readonly calls: tf.Variable;
  constructor(inDim: number, seed: number) {
    super();
    this.w = this.addParam("w", tf.randomNormal([inDim, 8], 0, 0.1, "float32", seed));
    this.b = this.addParam("b", tf.zeros([8]), { decay: false });
    this.calls = this.addBuffer("calls", tf.zeros([1]));
  }
  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => tf.add(tf.matMul(tf.reshape(x, [x.shape[0], -1]), this.w), this.b) as tf.Tensor2D);
  }
}

/** Two noisy views, an alignment + uniformity-like loss; optionally NaN from a given step. */
class TinyMethod implements SSLMethod {
  readonly name = "tiny";
  readonly backbone: TinyBackbone;
  readonly trainable: TinyBackbone;
  readonly target: TinyBackbone;
  private readonly ema: EmaUpdater;
  constructor(inDim: number, readonly nanAtStep = -1) {
    this.backbone = new TinyBackbone(inDim, 1);
    this.trainable = this.backbone;
    this.target = new TinyBackbone(inDim, 2);
    this.ema = new EmaUpdater(this.backbone, this.target);
    this.ema.copy();
  }
  views(images: tf.Tensor4D, ctx: StepContext): tf.Tensor4D[] {
    return [0, 1].map(() => tf.add(images, tf.randomNormal(images.shape, 0, 0.1, "float32", ctx.rng.seed())) as tf.Tensor4D);
  }
  step(views: tf.Tensor4D[], ctx: StepContext): StepOutput {
    const z1 = this.backbone.forward(views[0]);
    const z2 = this.backbone.forward(views[1]);
    const align = tf.mean(tf.square(tf.sub(z1, z2)));
    const spread = tf.square(tf.sub(tf.mean(tf.square(z1)), 1));
    let loss = tf.add(align, spread) as tf.Scalar;
    if (this.nanAtStep >= 0 && ctx.step >= this.nanAtStep) loss = tf.mul(loss, NaN) as tf.Scalar;
    return { loss, metrics: { align: align as tf.Scalar }, embeddings: z1 };
  }
  afterStep(ctx: StepContext): void {
    tf.tidy(() => this.backbone.calls.assign(tf.add(this.backbone.calls, 1)));
    this.ema.update(cosineMomentum(ctx.step, ctx.totalSteps, 0.9));
  }
  stateModules() {
    return { target: this.target };
  }
  dispose(): void {
    this.backbone.dispose();
    this.target.dispose();
  }
}

function tinyDataset(count: number, seed: number): ImageDataset {
  const rng = new Rng(seed);
  const images = new Uint8Array(count * 4 * 4 * 1);
  for (let i = 0; i < images.length; i++) images[i] = rng.int(0, 256);
  const labels = new Uint8Array(count).map((_, i) => i % 2);
  return { name: "tiny", images, labels, classNames: ["a", "b"], count, height: 4, width: 4, channels: 1 };
}

/** Stand-in batch source (a pure function of (seed, epoch)), independent of lib/src/data. */
function tinyBatches(ds: ImageDataset, batchSize: number, seed: number) {
  return function* (epoch: number, startBatch: number) {
    const order = new Rng(deriveSeed(seed, epoch)).permutation(ds.count);
    const px = ds.height * ds.width * ds.channels;
    for (let b = startBatch; (b + 1) * batchSize <= ds.count; b++) {
      const data = new Float32Array(batchSize * px);
      for (let i = 0; i < batchSize; i++) {
        const idx = order[b * batchSize + i];
        for (let j = 0; j < px; j++) data[i * px + j] = ds.images[idx * px + j] / 255;
      }
      yield { images: tf.tensor4d(data, [batchSize, ds.height, ds.width, ds.channels]) };
    }
  };
}

test("Trainer: a NaN loss at step k stops with NonFiniteLossError(k) and leaves the checkpoint of a step < k", async () => {
  await useBackend("wasm");
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "sslkit-nan-"));
  const ds = tinyDataset(64, 3);
  const method = new TinyMethod(16, 5);
  const trainer = new Trainer(method, ds, {
    epochs: 2, batchSize: 8, seed: 7, outDir: out, checkpointEvery: 2, progress: "none", log: () => {},
    optimizer: { name: "sgd", lr: 0.05 }, batches: tinyBatches(ds, 8, 7),
  });
  const before = await method.trainable.getWeights();
  await assert.rejects(trainer.fit(), (err: unknown) => {
    assert.ok(err instanceof NonFiniteLossError, String(err));
    assert.equal(err.step, 5);
    assert.match(err.message, /step 5/);
    return true;
  });
  const ckpts = new CheckpointManager(path.join(out, "checkpoints")).list();
  assert.deepEqual(ckpts.map((c) => c.step), [2, 4]);
  const latest = new CheckpointManager(path.join(out, "checkpoints")).loadLatest()!;
  assert.equal(latest.step, 4);
  for (const v of Object.values(latest.tensors.model)) assert.ok(Array.from(v.data).every(Number.isFinite));
  // the NaN step's update was never applied: weights are finite and moved from init
  const now = await method.trainable.getWeights();
  assert.ok(Array.from(now.w.data).every(Number.isFinite));
  assert.ok(relError(now.w.data, before.w.data) > 0);
  // metrics.jsonl holds the 5 good steps only
  const lines = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.filter((r) => r.type === "step").map((r) => r.step), [0, 1, 2, 3, 4]);
  trainer.dispose();
  method.dispose();
  fs.rmSync(out, { recursive: true, force: true });
});

test("Trainer: no tensor leaks over many steps (with clipping, EMA, collapse score, metrics)", async () => {
  await useBackend("wasm");
  const ds = tinyDataset(80, 4);
  const method = new TinyMethod(16);
  const counts: number[] = [];
  const trainer = new Trainer(method, ds, {
    epochs: 6, batchSize: 8, seed: 1, progress: "none", log: () => {}, maxGradNorm: 1, collapseEvery: 3,
    optimizer: { name: "adamw", lr: 0.01, weightDecay: 0.05 }, batches: tinyBatches(ds, 8, 1),
    onProgress: () => counts.push(tf.memory().numTensors),
  });
  const result = await trainer.fit();
  assert.equal(result.steps, 60);
  assert.equal(counts.length, 60);
  assert.ok(counts.slice(2).every((c) => c === counts[2]), `numTensors drifted: ${counts.join(",")}`);
  const stepRecords = result.metrics.filter((r) => r.type === "step");
  assert.equal(stepRecords.length, 60);
  assert.ok(stepRecords.every((r) => [r.loss, r.lr, r.align].every((v) => typeof v === "number" && Number.isFinite(v))));
  assert.equal(stepRecords.filter((r) => r.collapseScore !== undefined).length, 20);
  assert.equal(result.metrics.filter((r) => r.type === "epoch").length, 6);
  assert.ok((stepRecords[59].loss as number) < (stepRecords[0].loss as number), `loss ${stepRecords[0].loss} -> ${stepRecords[59].loss}`);
  assert.equal(trainer.method.trainable.buffers()[0].variable.dataSync()[0], 60);
  trainer.dispose();
  method.dispose();
});
