import { test } from "node:test";
import assert from "node:assert/strict";
import { tf, useBackend, relError } from "./helpers";
import { Rng } from "../lib/src/random";
import {
  BatchNorm,
  Conv2d,
  LayerNorm,
  Linear,
  Mlp,
  Module,
  MultiHeadSelfAttention,
  ResNet,
  ViT,
  PredictionHead,
  ProjectionHead,
  byolProjectionHead,
  createBackbone,
  get2dSincosPosEmbed,
  initTruncNormal,
  mocoV2ProjectionHead,
  mocoV3ProjectionHead,
  resnet18,
  resnetSmall,
  resnetTiny,
  simclrProjectionHead,
  vitConfigs,
  vitSmall16,
  vitTiny,
} from "../lib/src/nn";

type Backend = "cpu" | "wasm";
const TOL = 1e-4;

function randomArray(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const rng = new Rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.uniform(lo, hi);
  return a;
}

interface ForwardGrads {
  out: Float32Array;
  outShape: number[];
  /** Gradient of sum(out * r) for the input ("input") and every parameter (by dotted name). */
  grads: Record<string, Float32Array>;
}

/**
 * Builds a fresh module on `backend` (same seed -> same weights), runs forward on a fixed input and
 * returns the output plus the gradients of a fixed random projection of it.
 */
async function forwardAndGrads<M extends Module>(
  backend: Backend,
  build: () => M,
  forward: (m: M, x: tf.Tensor) => tf.Tensor,
  inputShape: number[],
  inputSeed = 1,
): Promise<ForwardGrads> {
  await useBackend(backend);
  const m = build();
  const size = inputShape.reduce((a, b) => a * b, 1);
  const x = tf.variable(tf.tensor(randomArray(size, inputSeed), inputShape), true);
  let y: tf.Tensor | null = null;
  const params = m.parameters();
  const { value, grads } = tf.variableGrads(() => {
    const out = forward(m, x);
    y = tf.keep(out);
    const r = tf.tensor(randomArray(out.size, 99), out.shape);
    return tf.sum(tf.mul(out, r)) as tf.Scalar;
  }, [x, ...params.map((p) => p.variable)]);
  const result: ForwardGrads = { out: (await y!.data<"float32">()) as Float32Array, outShape: y!.shape, grads: {} };
  result.grads.input = (await grads[x.name].data<"float32">()) as Float32Array;
  for (const p of params) {
    const g = grads[p.variable.name];
    assert.ok(g, `no gradient for parameter ${p.name}`);
    result.grads[p.name] = (await g.data<"float32">()) as Float32Array;
  }
  tf.dispose([value, y!, x]);
  tf.dispose(grads);
  m.dispose();
  return result;
}

/** Same module, same weights and input on cpu and wasm: outputs and all gradients agree. */
async function assertWasmMatchesCpu<M extends Module>(label: string, build: () => M, forward: (m: M, x: tf.Tensor) => tf.Tensor, inputShape: number[]): Promise<ForwardGrads> {
  const cpu = await forwardAndGrads("cpu", build, forward, inputShape);
  const wasm = await forwardAndGrads("wasm", build, forward, inputShape);
  assert.deepEqual(wasm.outShape, cpu.outShape, `${label}: output shapes differ`);
  const e = relError(wasm.out, cpu.out);
  assert.ok(e <= TOL, `${label}: forward wasm vs cpu rel error ${e}`);
  for (const name of Object.keys(cpu.grads)) {
    const ge = relError(wasm.grads[name], cpu.grads[name]);
    assert.ok(ge <= TOL, `${label}: gradient of ${name} wasm vs cpu rel error ${ge}`);
    assert.ok(cpu.grads[name].some((v) => v !== 0) || name.includes("runningM"), `${label}: gradient of ${name} is all zero`);
  }
  await useBackend("wasm");
  return cpu;
}

// ---------------------------------------------------------------------------------------------
// Layers: wasm vs cpu and references
// ---------------------------------------------------------------------------------------------

test("Linear: shapes, init range, wasm == cpu forward and gradients (rank 2 and 3)", async () => {
  await useBackend("wasm");
  const lin = new Linear(6, 5, { rng: new Rng(1) });
  const w = await lin.weight.data<"float32">();
  assert.deepEqual(lin.weight.shape, [6, 5]);
  assert.ok(w.every((v) => Math.abs(v) <= 1 / Math.sqrt(6)), "torch-default init outside +-1/sqrt(fan_in)");
  lin.dispose();
  await assertWasmMatchesCpu("Linear rank2", () => new Linear(6, 5, { rng: new Rng(2) }), (m, x) => m.forward(x), [5, 6]);
  const r3 = await assertWasmMatchesCpu("Linear rank3", () => new Linear(6, 4, { rng: new Rng(3), init: "xavier-uniform" }), (m, x) => m.forward(x), [3, 7, 6]);
  assert.deepEqual(r3.outShape, [3, 7, 4]);
});

test("Conv2d: output shapes, wasm == cpu (strides 1/2, 3x3 and 1x1), cpu gradients == tf.conv2d autodiff", async () => {
  const cases: { k: number; stride: number; padding: number; bias: boolean; out: number[] }[] = [
    { k: 3, stride: 1, padding: 1, bias: false, out: [3, 7, 7, 4] },
    { k: 3, stride: 2, padding: 1, bias: true, out: [3, 4, 4, 4] },
    { k: 1, stride: 2, padding: 0, bias: false, out: [3, 4, 4, 4] },
  ];
  for (const c of cases) {
    const build = () => new Conv2d(3, 4, c.k, { rng: new Rng(4), stride: c.stride, padding: c.padding, bias: c.bias });
    const label = `Conv2d k${c.k} s${c.stride}`;
    const cpu = await assertWasmMatchesCpu(label, build, (m, x) => m.forward(x as tf.Tensor4D), [3, 7, 7, 3]);
    assert.deepEqual(cpu.outShape, c.out, `${label} output shape`);
    // Reference: tfjs's own conv2d and its registered gradients, on cpu.
    const ref = await forwardAndGrads(
      "cpu",
      build,
      (m, x) => {
        const y = tf.conv2d(x as tf.Tensor4D, m.weight as tf.Tensor4D, c.stride, c.padding);
        return m.bias ? tf.add(y, m.bias) : y;
      },
      [3, 7, 7, 3],
    );
    assert.ok(relError(cpu.out, ref.out) <= 1e-5, `${label}: forward differs from tf.conv2d`);
    for (const name of Object.keys(ref.grads)) {
      assert.ok(relError(cpu.grads[name], ref.grads[name]) <= 1e-5, `${label}: gradient of ${name} differs from tf.conv2d autodiff`);
    }
  }
  await useBackend("wasm");
});

test("Conv2d: kaiming normal fan_out init has std sqrt(2 / (k*k*Co))", async () => {
  await useBackend("wasm");
  const conv = new Conv2d(64, 64, 3, { rng: new Rng(5) });
  const w = await conv.weight.data<"float32">();
  const mean = w.reduce((s, v) => s + v, 0) / w.length;
  const std = Math.sqrt(w.reduce((s, v) => s + (v - mean) ** 2, 0) / w.length);
  const expected = Math.sqrt(2 / (3 * 3 * 64));
  assert.ok(Math.abs(std / expected - 1) < 0.03, `std ${std} vs ${expected}`);
  assert.ok(Math.abs(mean) < 0.05 * expected, `mean ${mean}`);
  conv.dispose();
});

/** BatchNorm with plain tf ops (autodiff reference), training mode. */
function batchNormReference(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  const axes = x.rank === 2 ? [0] : [0, 1, 2];
  const { mean, variance } = tf.moments(x, axes);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), gamma), beta);
}

test("BatchNorm train mode: batch statistics, hand-computed running-stat update, autodiff-equal gradients", async () => {
  await useBackend("wasm");
  // x [4, 2]: channel 0 = 1,2,3,6 (mean 3, biased var 3.5, unbiased 14/3); channel 1 = 0,0,4,4 (mean 2, var 4, unbiased 16/3).
  const bn = new BatchNorm(2, { momentum: 0.1 });
  const x = tf.tensor2d([1, 0, 2, 0, 3, 4, 6, 4], [4, 2]);
  const y = bn.forward(x);
  const yv = await y.data<"float32">();
  const expected = [1, 0, 2, 0, 3, 4, 6, 4].map((v, i) => (i % 2 === 0 ? (v - 3) / Math.sqrt(3.5 + 1e-5) : (v - 2) / Math.sqrt(4 + 1e-5)));
  assert.ok(relError(yv, expected) < 1e-5, `train-mode output ${Array.from(yv)} vs ${expected}`);
  const rm = await bn.runningMean.data<"float32">();
  const rv = await bn.runningVar.data<"float32">();
  assert.ok(relError(rm, [0.9 * 0 + 0.1 * 3, 0.1 * 2]) < 1e-6, `running mean ${Array.from(rm)}`);
  assert.ok(relError(rv, [0.9 + 0.1 * (14 / 3), 0.9 + 0.1 * (16 / 3)]) < 1e-6, `running var ${Array.from(rv)}`);
  // Eval mode: (x - running mean) / sqrt(running var + eps) * gamma + beta, no update.
  bn.eval();
  const ye = await bn.forward(x).data<"float32">();
  const expectedEval = [1, 0, 2, 0, 3, 4, 6, 4].map((v, i) => (v - rm[i % 2]) / Math.sqrt(rv[i % 2] + 1e-5));
  assert.ok(relError(ye, expectedEval) < 1e-5, "eval-mode output uses running statistics");
  assert.ok(relError(await bn.runningMean.data<"float32">(), rm) === 0, "eval mode must not update running stats");
  assert.throws(() => bn.train().forward(tf.tensor2d([[1, 2]])), /more than 1 value per channel/);
  assert.throws(() => bn.forward(tf.zeros([2, 3])), /BatchNorm: expected input/);
  tf.dispose([x, y]);
  bn.dispose();

  // Gradients of the custom-gradient BN == autodiff through tf.moments (cpu), rank 2 and rank 4, affine or not.
  for (const shape of [[5, 3], [3, 4, 4, 3]]) {
    for (const affine of [true, false]) {
      const build = () => {
        const m = new BatchNorm(3, { affine });
        if (m.weight && m.bias) {
          m.weight.assign(tf.tensor1d([0.5, -1.5, 2]));
          m.bias.assign(tf.tensor1d([0.1, 0.2, -0.3]));
        }
        return m;
      };
      const label = `BatchNorm ${shape.length === 2 ? "1d" : "2d"} affine=${affine}`;
      const cpu = await assertWasmMatchesCpu(label, build, (m, xx) => m.forward(xx), shape);
      const ref = await forwardAndGrads(
        "cpu",
        build,
        (m, xx) => batchNormReference(xx, m.weight ?? tf.ones([3]), m.bias ?? tf.zeros([3]), 1e-5),
        shape,
      );
      assert.ok(relError(cpu.out, ref.out) <= 1e-5, `${label}: forward differs from reference`);
      for (const name of Object.keys(ref.grads)) {
        const e = relError(cpu.grads[name], ref.grads[name]);
        assert.ok(e <= 1e-4, `${label}: gradient of ${name} differs from autodiff reference (${e})`);
      }
    }
  }
  await useBackend("wasm");
});

test("BatchNorm running stats update inside tf.variableGrads without leaking; eval-mode gradients flow to scale/shift", async () => {
  await useBackend("wasm");
  const bn = new BatchNorm(3);
  const x = tf.tensor4d(randomArray(2 * 2 * 2 * 3, 7), [2, 2, 2, 3]);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) {
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(bn.forward(x))) as tf.Scalar, bn.variables());
    tf.dispose(value);
    tf.dispose(grads);
  }
  assert.equal(tf.memory().numTensors, before, "train-mode BN inside variableGrads leaked tensors");
  // After 3 identical updates: running = (1 - 0.9^3) * batch mean.
  const mean = await tf.tidy(() => tf.mean(tf.reshape(x, [-1, 3]), 0)).data<"float32">();
  const rm = await bn.runningMean.data<"float32">();
  assert.ok(relError(rm, Array.from(mean, (v) => (1 - 0.9 ** 3) * v)) < 1e-5, "running mean after 3 updates");
  bn.eval();
  const { value, grads } = tf.variableGrads(() => tf.sum(bn.forward(x)) as tf.Scalar, bn.variables());
  const gBias = await grads[bn.bias!.name].data<"float32">();
  assert.deepEqual(Array.from(gBias), [8, 8, 8]);
  tf.dispose([value, x]);
  tf.dispose(grads);
  bn.dispose();
});

test("LayerNorm and Mlp: wasm == cpu forward and gradients", async () => {
  await assertWasmMatchesCpu(
    "LayerNorm",
    () => {
      const m = new LayerNorm(8);
      m.weight.assign(tf.tensor1d(randomArray(8, 11, 0.5, 1.5)));
      m.bias.assign(tf.tensor1d(randomArray(8, 12)));
      return m;
    },
    (m, x) => m.forward(x),
    [3, 5, 8],
  );
  const mlp = await assertWasmMatchesCpu("Mlp", () => new Mlp(8, 32, { rng: new Rng(13), outDim: 6 }), (m, x) => m.forward(x), [3, 5, 8]);
  assert.deepEqual(mlp.outShape, [3, 5, 6]);
});

/** Multi-head attention with per-head slices and tf's own matMul/softmax (the textbook formula). */
function attentionReference(m: MultiHeadSelfAttention, x: tf.Tensor3D): tf.Tensor {
  const [n, l, d] = x.shape;
  const dh = m.headDim;
  const qkv = tf.add(tf.reshape(tf.matMul(tf.reshape(x, [n * l, d]), m.qkv.weight), [n, l, 3 * d]), m.qkv.bias!);
  const heads: tf.Tensor[] = [];
  for (let h = 0; h < m.numHeads; h++) {
    const q = tf.slice(qkv, [0, 0, h * dh], [n, l, dh]);
    const k = tf.slice(qkv, [0, 0, d + h * dh], [n, l, dh]);
    const v = tf.slice(qkv, [0, 0, 2 * d + h * dh], [n, l, dh]);
    const a = tf.softmax(tf.div(tf.matMul(q, k, false, true), Math.sqrt(dh)));
    heads.push(tf.matMul(a, v));
  }
  const merged = tf.reshape(tf.concat(heads, 2), [n * l, d]);
  return tf.reshape(tf.add(tf.matMul(merged, m.proj.weight), m.proj.bias!), [n, l, d]);
}

test("MultiHeadSelfAttention: == per-head reference, wasm == cpu, attention map recorded and freed", async () => {
  const build = () => new MultiHeadSelfAttention(12, 3, { rng: new Rng(21) });
  const cpu = await assertWasmMatchesCpu("MHSA", build, (m, x) => m.forward(x as tf.Tensor3D), [3, 5, 12]);
  const ref = await forwardAndGrads("cpu", build, (m, x) => attentionReference(m, x as tf.Tensor3D), [3, 5, 12]);
  assert.ok(relError(cpu.out, ref.out) <= 1e-5, "MHSA forward differs from the per-head reference");
  for (const name of Object.keys(ref.grads)) {
    assert.ok(relError(cpu.grads[name], ref.grads[name]) <= 1e-4, `MHSA gradient of ${name} differs from the reference`);
  }

  await useBackend("wasm");
  const m = build();
  const x = tf.tensor3d(randomArray(2 * 5 * 12, 3), [2, 5, 12]);
  assert.equal(m.lastAttention, null);
  m.recordAttention = true;
  const forwardOnly = () => tf.tidy(() => {
    m.forward(x);
  });
  forwardOnly();
  const before = tf.memory().numTensors;
  forwardOnly(); // replaces (and frees) the previous map
  assert.equal(tf.memory().numTensors, before, "recording attention leaked");
  const a = m.lastAttention!;
  assert.deepEqual(a.shape, [2, 3, 5, 5]);
  const rowSums = await tf.tidy(() => tf.sum(a, 3)).data<"float32">();
  assert.ok(rowSums.every((s) => Math.abs(s - 1) < 1e-5), "attention rows sum to 1");
  // The recorded map is softmax(q k^T / sqrt(d_h)) of each image and head.
  const refMap = tf.tidy(() => {
    const qkv = tf.add(tf.matMul(tf.reshape(x, [10, 12]), m.qkv.weight), m.qkv.bias!);
    const perHead = (part: number) => tf.transpose(tf.reshape(tf.slice(qkv, [0, part * 12], [10, 12]), [2, 5, 3, 4]), [0, 2, 1, 3]);
    return tf.softmax(tf.div(tf.matMul(perHead(0), perHead(1), false, true), 2));
  });
  assert.ok(relError(await a.data(), await refMap.data()) <= 1e-5, "recorded attention map differs from softmax(q k^T / sqrt(d_h))");
  refMap.dispose();
  assert.throws(() => m.forward(tf.zeros([2, 5, 8]) as tf.Tensor3D), /expected input \[N, L, 12\]/);
  assert.throws(() => new MultiHeadSelfAttention(10, 3, { rng: new Rng(1) }), /not divisible/);
  m.dispose();
  assert.ok(a.isDisposed, "dispose frees the recorded attention map");
  x.dispose();
});

// ---------------------------------------------------------------------------------------------
// Backbones
// ---------------------------------------------------------------------------------------------

/** Parameter count of a CIFAR-stem ResNet by formula: convs, 2 per BN, 1x1 projection shortcuts. */
function resnetParamFormula(inC: number, widths: number[], blocks: number[]): number {
  let n = 9 * inC * widths[0] + 2 * widths[0];
  let c = widths[0];
  widths.forEach((w, s) => {
    for (let b = 0; b < blocks[s]; b++) {
      n += 9 * c * w + 2 * w + 9 * w * w + 2 * w;
      if (c !== w || (b === 0 && s > 0)) n += c * w + 2 * w;
      c = w;
    }
  });
  return n;
}

/** ViT parameter count by formula (learnable pos-embed adds (L+1) D). */
function vitParamFormula(p: number, c: number, numPatches: number, d: number, depth: number, mlpRatio: number, learnablePos: boolean): number {
  const hidden = d * mlpRatio;
  const block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * hidden + hidden + hidden * d + d);
  return p * p * c * d + d + d + (learnablePos ? (numPatches + 1) * d : 0) + depth * block + 2 * d;
}

test("parameter counts: resnetSmall ~1.2M, resnetTiny ~0.3M, resnet18 (CIFAR) ~11.2M, ViTs by formula", async () => {
  await useBackend("wasm");
  const small = resnetSmall();
  assert.equal(small.numParameters(), resnetParamFormula(3, [32, 64, 128, 256], [1, 1, 1, 1]));
  assert.ok(Math.abs(small.numParameters() - 1.2e6) < 0.05e6, `resnetSmall has ${small.numParameters()}`);
  assert.equal(small.outputDim, 256);
  small.dispose();
  const tiny = resnetTiny();
  assert.equal(tiny.numParameters(), resnetParamFormula(3, [16, 32, 64, 128], [1, 1, 1, 1]));
  assert.ok(Math.abs(tiny.numParameters() - 0.3e6) < 0.02e6, `resnetTiny has ${tiny.numParameters()}`);
  assert.equal(tiny.outputDim, 128);
  tiny.dispose();
  const r18 = resnet18();
  assert.equal(r18.numParameters(), 11_168_832); // torchvision resnet18 without fc, 3x3 stem
  assert.equal(r18.numParameters(), resnetParamFormula(3, [64, 128, 256, 512], [2, 2, 2, 2]));
  assert.equal(r18.outputDim, 512);
  // BN parameters are decay:false; conv weights decay.
  for (const p of r18.parameters()) assert.equal(p.decay, p.variable.rank > 1, `decay flag of ${p.name}`);
  r18.dispose();
  const vt = vitTiny();
  const cfg = vitConfigs["vit-tiny"];
  assert.equal(vt.numParameters(), vitParamFormula(4, 1, 49, cfg.dim, cfg.depth, cfg.mlpRatio, false));
  assert.equal(vt.outputDim, 128);
  vt.dispose();
  const vl = vitTiny({ imageSize: 32, inChannels: 3, posEmbed: "learnable" });
  assert.equal(vl.numParameters(), vitParamFormula(4, 3, 64, 128, 4, 4, true));
  assert.ok(vl.parameters().some((p) => p.name === "posEmbed" && !p.decay));
  vl.dispose();
  const vs = vitSmall16();
  // ViT-S/16 at 224: timm's 22.05M minus the 1000-class head (385k) and the fixed pos-embed (75.6k).
  assert.equal(vs.numParameters(), vitParamFormula(16, 3, 196, 384, 12, 4, false));
  assert.ok(Math.abs(vs.numParameters() - 21.59e6) < 0.01e6, `vit-s16 has ${vs.numParameters()}`);
  vs.dispose();
});

test("createBackbone: names, shapes and errors", async () => {
  await useBackend("wasm");
  const x32 = tf.tensor4d(randomArray(2 * 32 * 32 * 3, 5, 0, 1), [2, 32, 32, 3]);
  for (const [name, dim] of [["resnet-tiny", 128], ["resnet-small", 256], ["vit-tiny", 128], ["vit-s16", 384]] as const) {
    const b = createBackbone(name, { inputShape: [32, 32, 3], seed: 1 });
    b.eval();
    const y = b.forward(x32);
    assert.deepEqual(y.shape, [2, dim], name);
    assert.equal(b.outputDim, dim);
    y.dispose();
    b.dispose();
  }
  const r18 = createBackbone("resnet18", { inputShape: [28, 28, 1], seed: 1 });
  assert.ok(r18 instanceof ResNet && r18.outputDim === 512 && r18.inChannels === 1);
  r18.dispose();
  assert.throws(() => createBackbone("vit-s16", { inputShape: [28, 28, 1] }), /patch size 16 must divide/);
  assert.throws(() => createBackbone("nope" as "vit-tiny", { inputShape: [28, 28, 1] }), /unknown backbone 'nope'/);
  assert.throws(() => createBackbone("vit-tiny", { inputShape: [28, 28] as unknown as [number, number, number] }), /inputShape/);
  const vt = createBackbone("vit-tiny", { inputShape: [28, 28, 1] });
  assert.throws(() => vt.forward(x32), /expected input \[N, 28, 28, 1\]/);
  vt.dispose();
  x32.dispose();
});

test("ResNet: feature-map shapes and same seed -> same weights; different seed -> different", async () => {
  await useBackend("wasm");
  const a = new ResNet({ widths: [4, 8, 8], blocks: [1, 2, 1], inChannels: 1, seed: 3 });
  const b = new ResNet({ widths: [4, 8, 8], blocks: [1, 2, 1], inChannels: 1, seed: 3 });
  const c = new ResNet({ widths: [4, 8, 8], blocks: [1, 2, 1], inChannels: 1, seed: 4 });
  const wa = await a.getWeights();
  const wb = await b.getWeights();
  const wc = await c.getWeights();
  for (const k of Object.keys(wa)) assert.deepEqual(wa[k].data, wb[k].data, k);
  assert.notDeepEqual(wa["stem.conv.weight"].data, wc["stem.conv.weight"].data);
  const f = tf.tidy(() => a.forwardFeatures(tf.zeros([2, 12, 12, 1]) as tf.Tensor4D));
  assert.deepEqual(f.shape, [2, 3, 3, 8]);
  f.dispose();
  [a, b, c].forEach((m) => m.dispose());
});

test("resnetSmall (batch 3, train mode): wasm == cpu forward and all parameter gradients", async () => {
  const r = await assertWasmMatchesCpu("resnetSmall", () => resnetSmall({ seed: 7 }), (m, x) => m.forward(x as tf.Tensor4D), [3, 16, 16, 3]);
  assert.deepEqual(r.outShape, [3, 256]);
});

test("vitTiny (batch 3, 28x28x1): wasm == cpu forward and all parameter gradients, learnable pos-embed", async () => {
  const r = await assertWasmMatchesCpu("vitTiny", () => vitTiny({ seed: 8, posEmbed: "learnable" }), (m, x) => m.forward(x as tf.Tensor4D), [3, 28, 28, 1]);
  assert.deepEqual(r.outShape, [3, 128]);
});

test("ViT.forwardTokens with keep (MAE masking): wasm == cpu gradients through the gather", async () => {
  // Image 12x12, patch 4 -> 9 patches; keep 4 per image (different per image).
  const keep = new Int32Array([0, 4, 8, 2, 7, 1, 3, 5]);
  const build = () => new ViT({ imageSize: 12, inChannels: 2, patchSize: 4, dim: 16, depth: 2, heads: 2, mlpRatio: 2, seed: 9, posEmbed: "learnable" });
  const r = await assertWasmMatchesCpu(
    "ViT keep",
    build,
    (m, x) => {
      const { cls, patches } = m.forwardTokens(x as tf.Tensor4D, { keep });
      return tf.concat([tf.expandDims(cls, 1), patches], 1);
    },
    [2, 12, 12, 2],
  );
  assert.deepEqual(r.outShape, [2, 5, 16]);
});

test("ViT.forwardTokens: keep selects position-embedded patches (depth 0); a permutation permutes tokens (depth 2)", async () => {
  await useBackend("wasm");
  const x = tf.tensor4d(randomArray(2 * 8 * 8 * 3, 12, 0, 1), [2, 8, 8, 3]);
  // depth 0: every token is LayerNorm(patch embedding + pos) on its own, so kept tokens are rows of the full output.
  const v0 = new ViT({ imageSize: 8, inChannels: 3, patchSize: 2, dim: 8, depth: 0, heads: 2, seed: 2 });
  const full = v0.forwardTokens(x);
  assert.deepEqual(full.patches.shape, [2, 16, 8]);
  assert.deepEqual(full.cls.shape, [2, 8]);
  const keepT = tf.tensor2d([[3, 0, 15], [9, 9, 2]], [2, 3], "int32");
  const kept = v0.forwardTokens(x, { keep: keepT });
  assert.deepEqual(kept.patches.shape, [2, 3, 8]);
  const fullP = (await full.patches.array()) as number[][][];
  const keptP = (await kept.patches.array()) as number[][][];
  const keepRows = [[3, 0, 15], [9, 9, 2]];
  keepRows.forEach((row, n) => row.forEach((l, k) => assert.ok(relError(keptP[n][k], fullP[n][l]) < 1e-6, `token ${n},${l}`)));
  // ...and the token really carries its position embedding: patch 3 and patch 0 of one image differ by pos only if pixels match.
  tf.dispose([full.cls, full.patches, kept.cls, kept.patches, keepT]);
  v0.dispose();

  // depth 2: position embeddings are added before selection, so keeping all patches in a permuted
  // order permutes the output tokens and leaves the class token unchanged.
  const v2 = new ViT({ imageSize: 8, inChannels: 3, patchSize: 2, dim: 16, depth: 2, heads: 4, seed: 3 });
  const perm = [new Rng(1).permutation(16), new Rng(2).permutation(16)];
  const keep = new Int32Array([...perm[0], ...perm[1]]);
  const a = v2.forwardTokens(x);
  const b = v2.forwardTokens(x, { keep });
  const clsFromForward = v2.forward(x);
  assert.ok(relError(await b.cls.data<"float32">(), await a.cls.data<"float32">()) < 1e-5, "class token invariant to the order of kept patches");
  assert.ok(relError(await clsFromForward.data<"float32">(), await a.cls.data<"float32">()) < 1e-6, "forward() returns forwardTokens().cls");
  const ap = (await a.patches.array()) as number[][][];
  const bp = (await b.patches.array()) as number[][][];
  perm.forEach((p, n) => p.forEach((l, k) => assert.ok(relError(bp[n][k], ap[n][l]) < 1e-5, `permuted token ${n},${k}`)));
  // Keeping a subset changes the class token (attention sees fewer patches).
  const c = v2.forwardTokens(x, { keep: new Int32Array([0, 1, 2, 3, 0, 1, 2, 3]) });
  assert.ok(relError(await c.cls.data<"float32">(), await a.cls.data<"float32">()) > 1e-3);
  assert.throws(() => v2.forwardTokens(x, { keep: new Int32Array([0, 16]) }), /outside \[0, 16\)/);
  tf.dispose([a.cls, a.patches, b.cls, b.patches, c.cls, c.patches, clsFromForward, x]);

  // Attention maps of every block, [N, heads, 1+L, 1+L].
  v2.setRecordAttention(true);
  tf.tidy(() => {
    v2.forward(tf.zeros([1, 8, 8, 3]) as tf.Tensor4D);
  });
  const maps = v2.lastAttentions();
  assert.equal(maps.length, 2);
  maps.forEach((m) => assert.deepEqual(m!.shape, [1, 4, 17, 17]));
  v2.setRecordAttention(false);
  assert.ok(maps.every((m) => m!.isDisposed) && v2.lastAttentions().every((m) => m === null));
  v2.dispose();
});

test("get2dSincosPosEmbed matches MAE's formula; ViT's fixed pos-embed buffer holds it", async () => {
  await useBackend("wasm");
  const dim = 8;
  const [gh, gw] = [2, 3];
  const table = get2dSincosPosEmbed(dim, gh, gw, true);
  assert.equal(table.length, (1 + gh * gw) * dim);
  assert.ok(table.slice(0, dim).every((v) => v === 0), "class-token row is zero");
  // MAE: emb = [sin(w * om), cos(w * om), sin(h * om), cos(h * om)], om_k = 1 / 10000^(k / (D/4)).
  const omega = [1, 1 / 100]; // D/4 = 2: 10000^(0/2), 10000^(1/2)
  for (let h = 0; h < gh; h++) {
    for (let w = 0; w < gw; w++) {
      const row = Array.from(table.slice((1 + h * gw + w) * dim, (2 + h * gw + w) * dim));
      const expected = [...omega.map((o) => Math.sin(w * o)), ...omega.map((o) => Math.cos(w * o)), ...omega.map((o) => Math.sin(h * o)), ...omega.map((o) => Math.cos(h * o))];
      assert.ok(relError(row, expected) < 1e-6, `pos (${h},${w}): ${row} vs ${expected}`);
    }
  }
  // Spot value: patch (h=1, w=2), column 1 = sin(2 / 100).
  assert.ok(Math.abs(table[(1 + 5) * dim + 1] - Math.sin(0.02)) < 1e-7);
  assert.throws(() => get2dSincosPosEmbed(6, 2, 2), /multiple of 4/);
  const v = new ViT({ imageSize: [8, 12], inChannels: 1, patchSize: 4, dim: 8, depth: 1, heads: 2 });
  assert.deepEqual(v.gridSize, [2, 3]);
  assert.deepEqual(Array.from(await v.posEmbed.data<"float32">()), Array.from(table));
  assert.ok(!v.parameters().some((p) => p.name === "posEmbed"), "fixed pos-embed is not trainable");
  v.dispose();
});

test("init: trunc normal stays within 2 std and has the truncated-normal std", async () => {
  await useBackend("wasm");
  const t = initTruncNormal([20000], 0.02, new Rng(3));
  const a = await t.data<"float32">();
  t.dispose();
  assert.ok(a.every((v) => Math.abs(v) <= 0.04 + 1e-9));
  const std = Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
  // std of N(0,1) truncated to [-2, 2] is 0.8796.
  assert.ok(Math.abs(std / (0.02 * 0.8796) - 1) < 0.02, `std ${std}`);
});

// ---------------------------------------------------------------------------------------------
// Heads
// ---------------------------------------------------------------------------------------------

test("heads: structure, shapes and parameter counts", async () => {
  await useBackend("wasm");
  const x = tf.tensor2d(randomArray(4 * 16, 4), [4, 16]);
  const names = (h: Module) => h.parameters().map((p) => p.name);
  const simclr = simclrProjectionHead(16, 32, 8);
  // Linear(16,32, no bias) + BN(32) + Linear(32, 8, bias)
  assert.equal(simclr.numParameters(), 16 * 32 + 64 + 32 * 8 + 8);
  assert.deepEqual(names(simclr), ["0.linear.weight", "0.bn.weight", "0.bn.bias", "1.linear.weight", "1.linear.bias"]);
  const moco2 = mocoV2ProjectionHead(16, 32, 8);
  assert.equal(moco2.numParameters(), 16 * 32 + 32 + 32 * 8 + 8);
  const byol = byolProjectionHead(16, 32, 8);
  assert.equal(byol.numParameters(), simclr.numParameters());
  const moco3 = mocoV3ProjectionHead(16, 32, 8);
  // Three bias-free Linears, BN(32) x2 affine, last BN(8) without affine (buffers only).
  assert.equal(moco3.numParameters(), 16 * 32 + 32 * 32 + 32 * 8 + 4 * 32);
  assert.equal(moco3.buffers().length, 6);
  const pred = new PredictionHead(8, 32, 8);
  assert.equal(pred.numParameters(), 8 * 32 + 64 + 32 * 8 + 8);
  const moco3pred = new PredictionHead(8, 32, 8, { lastBias: false });
  assert.equal(moco3pred.numParameters(), 8 * 32 + 64 + 32 * 8);
  for (const h of [simclr, moco2, byol, moco3]) {
    const y = h.forward(x);
    assert.deepEqual(y.shape, [4, 8]);
    y.dispose();
  }
  // MoCo v3's last BN has no affine: each output column has zero mean and unit (biased) variance.
  const z = moco3.forward(x);
  const { mean, variance } = tf.moments(z, 0);
  assert.ok((await mean.data<"float32">()).every((v) => Math.abs(v) < 1e-5));
  assert.ok((await variance.data<"float32">()).every((v) => Math.abs(v - 1) < 1e-3));
  tf.dispose([z, mean, variance, x]);
  assert.throws(() => new ProjectionHead([{ inDim: 4, outDim: 8 }, { inDim: 6, outDim: 2 }]), /block 1 inDim 6 != block 0 outDim 8/);
  assert.throws(() => simclr.forward(tf.zeros([2, 3]) as tf.Tensor2D), /expected input \[N, 16\]/);
  [simclr, moco2, byol, moco3, pred, moco3pred].forEach((h) => h.dispose());
});

test("heads: wasm == cpu forward and gradients (BN + ReLU + GELU blocks)", async () => {
  await assertWasmMatchesCpu("simclr head", () => simclrProjectionHead(12, 24, 6, { seed: 5, numLayers: 3 }), (m, x) => m.forward(x as tf.Tensor2D), [5, 12]);
  await assertWasmMatchesCpu(
    "custom head",
    () =>
      new ProjectionHead(
        [
          { inDim: 12, outDim: 16, nonlinearity: "gelu" },
          { inDim: 16, outDim: 16, batchNorm: true, nonlinearity: "relu" },
          { inDim: 16, outDim: 6, batchNorm: { affine: false } },
        ],
        { seed: 6 },
      ),
    (m, x) => m.forward(x as tf.Tensor2D),
    [5, 12],
  );
});

// ---------------------------------------------------------------------------------------------
// Weights round trip and leaks
// ---------------------------------------------------------------------------------------------

test("getWeights/setWeights round trip gives identical outputs (ResNet with trained BN stats, ViT, head)", async () => {
  await useBackend("wasm");
  const x = tf.tensor4d(randomArray(3 * 8 * 8 * 3, 31, 0, 1), [3, 8, 8, 3]);
  const makers: [string, (seed: number) => Module & { forward(x: tf.Tensor4D): tf.Tensor2D }][] = [
    ["resnet", (seed) => new ResNet({ widths: [4, 8], blocks: [1, 1], seed })],
    ["vit", (seed) => new ViT({ imageSize: 8, inChannels: 3, patchSize: 2, dim: 16, depth: 1, heads: 2, posEmbed: "learnable", seed })],
  ];
  for (const [name, make] of makers) {
    const src = make(1);
    tf.dispose(src.forward(x)); // train-mode forward moves BN running stats away from their init
    src.eval();
    const w = await src.getWeights();
    const dst = make(2);
    dst.eval();
    const yBefore = dst.forward(x);
    dst.setWeights(w);
    const ySrc = src.forward(x);
    const yDst = dst.forward(x);
    assert.deepEqual(Array.from(await yDst.data<"float32">()), Array.from(await ySrc.data<"float32">()), `${name}: outputs after setWeights`);
    assert.ok(relError(await yBefore.data<"float32">(), await ySrc.data<"float32">()) > 1e-3, `${name}: different seeds should differ before loading`);
    tf.dispose([yBefore, ySrc, yDst]);
    const missing = { ...w };
    delete missing[Object.keys(w)[0]];
    assert.throws(() => dst.setWeights(missing), /missing weight/);
    src.dispose();
    dst.dispose();
  }
  const h1 = byolProjectionHead(8, 16, 4, { seed: 1 });
  const h2 = byolProjectionHead(8, 16, 4, { seed: 2 });
  h2.setWeights(await h1.getWeights());
  const hx = tf.tensor2d(randomArray(4 * 8, 3), [4, 8]);
  assert.deepEqual(Array.from(await h2.forward(hx).data<"float32">()), Array.from(await h1.forward(hx).data<"float32">()));
  tf.dispose([x, hx]);
  h1.dispose();
  h2.dispose();
});

test("no tensor leaks over repeated forward/backward (ResNet, ViT with keep and attention, head)", async () => {
  await useBackend("wasm");
  const resnet = new ResNet({ widths: [4, 8], blocks: [1, 1], seed: 1 });
  const vit = new ViT({ imageSize: 8, inChannels: 3, patchSize: 2, dim: 16, depth: 2, heads: 2, seed: 1 });
  vit.setRecordAttention(true);
  const head = simclrProjectionHead(8, 16, 4, { seed: 1 });
  const x = tf.tensor4d(randomArray(3 * 8 * 8 * 3, 41, 0, 1), [3, 8, 8, 3]);
  const keep = tf.tensor2d([[0, 5, 9], [1, 2, 3], [15, 14, 13]], [3, 3], "int32");
  const step = () => {
    const vars = [...resnet.variables(), ...vit.variables(), ...head.variables()];
    const { value, grads } = tf.variableGrads(() => {
      const a = tf.sum(head.forward(resnet.forward(x)));
      const { cls, patches } = vit.forwardTokens(x, { keep });
      return tf.addN([a, tf.sum(cls), tf.mean(patches)]) as tf.Scalar;
    }, vars);
    tf.dispose(value);
    tf.dispose(grads);
    for (const m of [resnet, head]) m.eval();
    tf.dispose(tf.tidy(() => [head.forward(resnet.forward(x)), vit.forward(x)]));
    for (const m of [resnet, head]) m.train();
  };
  step(); // first step creates the recorded attention maps
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) step();
  assert.equal(tf.memory().numTensors, before, "tensors leaked across steps");
  tf.dispose([x, keep]);
  for (const m of [resnet, vit, head]) m.dispose();
});
