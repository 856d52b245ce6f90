/**
 * Every op sslkit trains through, forward values and gradients on wasm against the cpu backend
 * (relative error <= 1e-4), plus the fast-ops formulations against tfjs's own gradients, the
 * kernels sslkit registers on wasm, and leak checks.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { tf, useBackend, relError } from "./helpers";
import { Rng } from "../lib/src/random";
import * as fastOps from "../lib/src/nn/fast-ops";
import { registerWasmTrainingKernels, wasmTrainingKernelNames } from "../lib/src/backend/wasm-kernels";
import { loadNativeKernels, nativeKernelsActive, registerNativeKernels, unregisterNativeKernels } from "../lib/src/backend/native-kernels";
import { initBackend } from "../lib/src/backend";

const TOL = 1e-4;

type Dist = "normal" | "negative" | "positive" | "relu" | "unit";
interface InputSpec {
  shape: number[];
  dist?: Dist;
  /** int32 input with values in [0, max). */
  intMax?: number;
  /** Fixed values (overrides dist). */
  values?: number[];
  /** Differentiate with respect to this input (default: float inputs yes, int inputs no). */
  grad?: boolean;
}
interface OpCase {
  name: string;
  inputs: InputSpec[];
  f: (...xs: tf.Tensor[]) => tf.Tensor;
  /** Compare the forward value only. */
  forwardOnly?: boolean;
}

const size = (shape: number[]) => shape.reduce((p, d) => p * d, 1);

function inputData(spec: InputSpec, rng: Rng): Float32Array | Int32Array {
  const n = size(spec.shape);
  if (spec.values) return spec.intMax != null ? Int32Array.from(spec.values) : Float32Array.from(spec.values);
  if (spec.intMax != null) return Int32Array.from({ length: n }, () => rng.int(0, spec.intMax as number));
  const draw = (): number => {
    switch (spec.dist ?? "normal") {
      case "negative":
        return -rng.uniform(0.1, 3);
      case "positive":
        return rng.uniform(0.5, 2);
      case "relu":
        return Math.max(0, rng.normal());
      case "unit":
        return rng.uniform(0, 1);
      default:
        return rng.normal();
    }
  };
  return Float32Array.from({ length: n }, draw);
}

interface CaseResult {
  value: Float32Array;
  shape: number[];
  grads: Float32Array[];
}

/** Forward value and the gradients of sum(f(...) * cotangent) on the current backend. */
function evaluate(c: OpCase, data: Array<Float32Array | Int32Array>): CaseResult {
  return tf.tidy(() => {
    const xs = c.inputs.map((s, i) => (s.intMax != null ? tf.tensor(data[i], s.shape, "int32") : tf.tensor(data[i], s.shape, "float32")));
    const y = c.f(...xs);
    const value = Float32Array.from(y.dataSync());
    if (c.forwardOnly) return { value, shape: y.shape, grads: [] };
    const cotRng = new Rng(99);
    const cot = tf.tensor(Float32Array.from({ length: y.size }, () => cotRng.normal()), y.shape);
    const gradIdx = c.inputs.map((s, i) => ((s.grad ?? s.intMax == null) ? i : -1)).filter((i) => i >= 0);
    const grads = tf.grads((...gx: tf.Tensor[]) => {
      const all = xs.slice();
      gradIdx.forEach((k, j) => (all[k] = gx[j]));
      return tf.sum(tf.mul(c.f(...all), cot));
    })(gradIdx.map((k) => xs[k]));
    return { value, shape: y.shape, grads: grads.map((g) => Float32Array.from(g.dataSync())) };
  });
}

async function compareWasmToCpu(c: OpCase, seed: number): Promise<void> {
  const rng = new Rng(seed);
  const data = c.inputs.map((s) => inputData(s, rng));
  await useBackend("cpu");
  const ref = evaluate(c, data);
  await useBackend("wasm");
  const got = evaluate(c, data);
  assert.deepEqual(got.shape, ref.shape, `${c.name}: shape`);
  const ev = relError(got.value, ref.value);
  assert.ok(ev <= TOL, `${c.name}: forward rel error ${ev}`);
  assert.equal(got.grads.length, ref.grads.length);
  got.grads.forEach((g, i) => {
    const e = relError(g, ref.grads[i]);
    assert.ok(e <= TOL, `${c.name}: gradient ${i} rel error ${e}`);
    assert.ok(g.every(Number.isFinite), `${c.name}: gradient ${i} not finite`);
  });
}

const conv = (stride: number, pad: fastOps.ConvPadding) => (x: tf.Tensor, w: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, pad as "same");
const fconv = (stride: number, pad: fastOps.ConvPadding) => (x: tf.Tensor, w: tf.Tensor) => fastOps.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, pad);

const rawOpCases: OpCase[] = [
  // Convolutions (wasm: sslkit's Conv2DBackpropFilter / Conv2DBackpropInput kernels).
  { name: "conv2d s1 same", inputs: [{ shape: [3, 9, 9, 4] }, { shape: [3, 3, 4, 6] }], f: conv(1, "same") },
  { name: "conv2d s2 same", inputs: [{ shape: [5, 8, 8, 3] }, { shape: [3, 3, 3, 4] }], f: conv(2, "same") },
  { name: "conv2d s2 same odd", inputs: [{ shape: [3, 9, 7, 3] }, { shape: [3, 3, 3, 5] }], f: conv(2, "same") },
  { name: "conv2d s2 valid", inputs: [{ shape: [3, 9, 7, 3] }, { shape: [3, 3, 3, 5] }], f: conv(2, "valid") },
  { name: "conv2d s1 valid even kernel", inputs: [{ shape: [5, 7, 7, 2] }, { shape: [2, 2, 2, 3] }], f: conv(1, "valid") },
  { name: "conv2d 1x1 s2", inputs: [{ shape: [3, 8, 8, 4] }, { shape: [1, 1, 4, 6] }], f: conv(2, "same") },
  { name: "conv2d 1x1 s1 (a plain product)", inputs: [{ shape: [3, 6, 5, 8] }, { shape: [1, 1, 8, 5] }], f: conv(1, "valid") },
  { name: "conv2d large batch (chunks over threads)", inputs: [{ shape: [9, 20, 20, 8] }, { shape: [3, 3, 8, 16] }], f: conv(1, "same") },
  { name: "conv2d large batch s2", inputs: [{ shape: [9, 21, 20, 8] }, { shape: [3, 3, 8, 16] }], f: conv(2, "same") },
  { name: "conv2d 7x7 s2 pad 3", inputs: [{ shape: [3, 12, 12, 3] }, { shape: [7, 7, 3, 4] }], f: conv(2, 3) },
  {
    name: "conv2d explicit pad",
    inputs: [{ shape: [3, 7, 8, 2] }, { shape: [3, 3, 2, 3] }],
    f: conv(2, [[0, 0], [1, 2], [2, 0], [0, 0]]),
  },
  {
    name: "conv2dTranspose s2 same",
    inputs: [{ shape: [3, 5, 5, 4] }, { shape: [3, 3, 6, 4] }],
    f: (x, w) => tf.conv2dTranspose(x as tf.Tensor4D, w as tf.Tensor4D, [3, 10, 10, 6], 2, "same"),
  },
  {
    name: "conv2dTranspose s1 valid",
    inputs: [{ shape: [5, 4, 4, 3] }, { shape: [3, 3, 2, 3] }],
    f: (x, w) => tf.conv2dTranspose(x as tf.Tensor4D, w as tf.Tensor4D, [5, 6, 6, 2], 1, "valid"),
  },
  {
    name: "depthwiseConv2d s1 same",
    inputs: [{ shape: [3, 7, 7, 4] }, { shape: [3, 3, 4, 1] }],
    f: (x, w) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, "same"),
  },
  {
    name: "depthwiseConv2d s2 valid multiplier 2",
    inputs: [{ shape: [5, 8, 8, 3] }, { shape: [3, 3, 3, 2] }],
    f: (x, w) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, "valid"),
  },
  // Pooling (wasm: sslkit's MaxPoolGrad).
  { name: "maxPool 3x3 s2 same", inputs: [{ shape: [3, 9, 9, 5] }], f: (x) => tf.maxPool(x as tf.Tensor4D, 3, 2, "same") },
  { name: "maxPool 2x2 s2 all-negative", inputs: [{ shape: [5, 6, 6, 3], dist: "negative" }], f: (x) => tf.maxPool(x as tf.Tensor4D, 2, 2, "valid") },
  { name: "maxPool 3x3 s2 same all-negative", inputs: [{ shape: [3, 7, 7, 2], dist: "negative" }], f: (x) => tf.maxPool(x as tf.Tensor4D, 3, 2, "same") },
  { name: "maxPool after relu (ties)", inputs: [{ shape: [3, 6, 6, 4], dist: "relu" }], f: (x) => tf.maxPool(tf.relu(x) as tf.Tensor4D, 3, 1, "same") },
  { name: "avgPool 3x3 s2 same", inputs: [{ shape: [3, 9, 9, 4] }], f: (x) => tf.avgPool(x as tf.Tensor4D, 3, 2, "same") },
  { name: "avgPool 2x2 s2 valid", inputs: [{ shape: [5, 6, 6, 3] }], f: (x) => tf.avgPool(x as tf.Tensor4D, 2, 2, "valid") },
  // Gather (wasm: sslkit's GatherV2 and UnsortedSegmentSum).
  { name: "gather axis 0 with repeats", inputs: [{ shape: [7, 5] }, { shape: [9], intMax: 7 }], f: (x, i) => tf.gather(x, i, 0) },
  { name: "gather axis 1", inputs: [{ shape: [3, 6, 4] }, { shape: [5], intMax: 6 }], f: (x, i) => tf.gather(x, i, 1) },
  // Matrix products.
  { name: "matMul", inputs: [{ shape: [6, 5] }, { shape: [5, 7] }], f: (a, b) => tf.matMul(a, b) },
  { name: "matMul transposeB", inputs: [{ shape: [6, 5] }, { shape: [7, 5] }], f: (a, b) => tf.matMul(a, b, false, true) },
  { name: "matMul batched", inputs: [{ shape: [3, 4, 5] }, { shape: [3, 5, 6] }], f: (a, b) => tf.matMul(a, b) },
  { name: "matMul transposeA", inputs: [{ shape: [5, 6] }, { shape: [5, 7] }], f: (a, b) => tf.matMul(a, b, true, false) },
  { name: "matMul transposeA and B, batched", inputs: [{ shape: [3, 5, 4] }, { shape: [3, 6, 5] }], f: (a, b) => tf.matMul(a, b, true, true) },
  // tfjs's BatchMatMul gradient does not reduce over a broadcast batch (on any backend): forward only.
  { name: "matMul batch broadcast (a batch 1)", inputs: [{ shape: [1, 4, 5] }, { shape: [3, 5, 6] }], f: (a, b) => tf.matMul(a, b), forwardOnly: true },
  { name: "matMul outer batch broadcast [3,1] x [1,3]", inputs: [{ shape: [3, 1, 4, 5] }, { shape: [1, 3, 5, 2] }], f: (a, b) => tf.matMul(a, b), forwardOnly: true },
  { name: "matMul rank 4", inputs: [{ shape: [2, 3, 4, 5] }, { shape: [2, 3, 5, 2] }], f: (a, b) => tf.matMul(a, b) },
  { name: "matMul large (threaded split)", inputs: [{ shape: [300, 70] }, { shape: [70, 90] }], f: (a, b) => tf.matMul(a, b) },
  { name: "fused matMul + bias", inputs: [{ shape: [6, 5] }, { shape: [5, 7] }, { shape: [7] }], f: (a, b, c) => tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias: c }) },
  { name: "fused matMul + bias + relu", inputs: [{ shape: [6, 5] }, { shape: [5, 7] }, { shape: [7] }], f: (a, b, c) => tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias: c, activation: "relu" }) },
  // Elementwise.
  { name: "relu", inputs: [{ shape: [5, 7] }], f: (x) => tf.relu(x) },
  { name: "sigmoid", inputs: [{ shape: [5, 7] }], f: (x) => tf.sigmoid(x) },
  { name: "tanh", inputs: [{ shape: [5, 7] }], f: (x) => tf.tanh(x) },
  { name: "exp", inputs: [{ shape: [5, 7] }], f: (x) => tf.exp(x) },
  { name: "log", inputs: [{ shape: [5, 7], dist: "positive" }], f: (x) => tf.log(x) },
  { name: "square/sqrt", inputs: [{ shape: [5, 7], dist: "positive" }], f: (x) => tf.add(tf.square(x), tf.sqrt(x)) },
  { name: "rsqrt/neg", inputs: [{ shape: [5, 7], dist: "positive" }], f: (x) => tf.neg(tf.rsqrt(x)) },
  { name: "erf", inputs: [{ shape: [5, 7] }], f: (x) => tf.erf(x) },
  { name: "maximum/minimum", inputs: [{ shape: [5, 7] }, { shape: [5, 7] }], f: (a, b) => tf.add(tf.maximum(a, b), tf.mul(tf.minimum(a, 0.2), 3)) },
  { name: "clipByValue", inputs: [{ shape: [5, 7] }], f: (x) => tf.clipByValue(x, -0.5, 0.7) },
  {
    name: "where",
    inputs: [{ shape: [5, 7] }, { shape: [5, 7] }, { shape: [5, 7], dist: "unit", grad: false }],
    f: (a, b, u) => tf.where(tf.greater(u, 0.5), a, b),
  },
  { name: "mul by mask", inputs: [{ shape: [5, 7] }, { shape: [5, 7], dist: "unit", grad: false }], f: (x, u) => tf.mul(x, tf.cast(tf.greater(u, 0.3), "float32")) },
  // Softmax family and normalisations.
  { name: "softmax", inputs: [{ shape: [5, 9] }], f: (x) => tf.softmax(x) },
  { name: "logSoftmax", inputs: [{ shape: [5, 9] }], f: (x) => tf.logSoftmax(x) },
  {
    name: "layer norm (moments)",
    inputs: [{ shape: [3, 5, 8] }, { shape: [8] }, { shape: [8] }],
    f: (x, g, b) => {
      const { mean, variance } = tf.moments(x, -1, true);
      return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b);
    },
  },
  {
    name: "batch-norm moments",
    inputs: [{ shape: [5, 4, 4, 3] }, { shape: [3] }, { shape: [3] }],
    f: (x, g, b) => {
      const { mean, variance } = tf.moments(x, [0, 1, 2], true);
      return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b);
    },
  },
  { name: "l2 normalise", inputs: [{ shape: [5, 9] }], f: (x) => tf.div(x, tf.sqrt(tf.sum(tf.square(x), -1, true))) },
  // Reductions.
  { name: "mean", inputs: [{ shape: [3, 5, 6] }], f: (x) => tf.mean(x, [0, 2]) },
  { name: "sum", inputs: [{ shape: [3, 5, 6] }], f: (x) => tf.sum(x, 1, true) },
  { name: "max", inputs: [{ shape: [3, 5, 6] }], f: (x) => tf.max(x, -1) },
  // Shape ops.
  { name: "concat", inputs: [{ shape: [3, 4] }, { shape: [3, 5] }], f: (a, b) => tf.concat([a, tf.mul(b, 2)], 1) },
  {
    name: "split",
    inputs: [{ shape: [3, 5, 2] }],
    f: (x) => {
      const [a, b] = tf.split(x, [2, 3], 1);
      return tf.concat([tf.square(a), tf.mul(b, 3)], 1);
    },
  },
  { name: "slice", inputs: [{ shape: [3, 6, 5] }], f: (x) => tf.slice(x, [1, 2, 0], [2, 3, 4]) },
  { name: "pad", inputs: [{ shape: [3, 4, 5, 2] }], f: (x) => tf.pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]]) },
  { name: "transpose rank 3", inputs: [{ shape: [3, 4, 5] }], f: (x) => tf.transpose(x, [0, 2, 1]) },
  { name: "transpose rank 4", inputs: [{ shape: [3, 4, 5, 2] }], f: (x) => tf.transpose(x, [2, 0, 3, 1]) },
  { name: "reshape", inputs: [{ shape: [3, 4, 5] }], f: (x) => tf.square(tf.reshape(x, [5, 12])) },
  { name: "broadcastTo", inputs: [{ shape: [1, 1, 4] }], f: (x) => tf.broadcastTo(x, [3, 5, 4]) },
  { name: "tile", inputs: [{ shape: [3, 2, 4] }], f: (x) => tf.tile(x, [2, 3, 1]) },
  // Forward only.
  { name: "mirrorPad", inputs: [{ shape: [3, 5, 6, 2] }], f: (x) => tf.mirrorPad(x as tf.Tensor4D, [[0, 0], [2, 2], [2, 2], [0, 0]], "reflect"), forwardOnly: true },
  { name: "oneHot float32", inputs: [{ shape: [7], intMax: 5 }], f: (i) => tf.oneHot(i as tf.Tensor1D, 5, 2, -1, "float32"), forwardOnly: true },
  { name: "oneHot int32", inputs: [{ shape: [3, 4], intMax: 6 }], f: (i) => tf.cast(tf.oneHot(i as tf.Tensor2D, 6), "float32"), forwardOnly: true },
  {
    name: "cropAndResize",
    inputs: [{ shape: [3, 8, 8, 2] }, { shape: [4, 4], values: [0, 0, 1, 1, 0.1, 0.2, 0.7, 0.9, 0.3, 0.05, 0.8, 0.6, 0.5, 0.5, 0.95, 0.99] }, { shape: [4], intMax: 3, values: [0, 2, 1, 2] }],
    f: (img, boxes, ind) => tf.image.cropAndResize(img as tf.Tensor4D, boxes as tf.Tensor2D, ind as tf.Tensor1D, [5, 6], "bilinear"),
    forwardOnly: true,
  },
];

/** batchNormTrain's output; its statistics (kept out of tidy for the caller) are disposed. */
function batchNormY({ y, mean, variance }: { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor }): tf.Tensor {
  tf.dispose([mean, variance]);
  return y;
}

/** sum_p (p + 1) x_p: one output from several, each part with its own weight. */
const weightedSum = (xs: tf.Tensor[]): tf.Tensor => tf.addN(xs.map((x, p) => tf.mul(x, p + 1)));

const fastOpCases: OpCase[] = [
  { name: "fastOps.conv2d s1 same", inputs: [{ shape: [3, 9, 9, 4] }, { shape: [3, 3, 4, 6] }], f: fconv(1, "same") },
  { name: "fastOps.conv2d s2 same odd", inputs: [{ shape: [5, 9, 7, 3] }, { shape: [3, 3, 3, 5] }], f: fconv(2, "same") },
  { name: "fastOps.conv2d s2 valid", inputs: [{ shape: [3, 8, 8, 3] }, { shape: [3, 3, 3, 4] }], f: fconv(2, "valid") },
  // b's gradient A^T dY takes two routes on wasm: (dY^T A)^T when dY is wider than A, A^T dY otherwise.
  { name: "fastOps.matMul", inputs: [{ shape: [6, 5] }, { shape: [5, 7] }], f: (a, b) => fastOps.matMul(a, b) },
  { name: "fastOps.matMul, output narrower than input", inputs: [{ shape: [6, 7] }, { shape: [7, 5] }], f: (a, b) => fastOps.matMul(a, b) },
  { name: "fastOps.matMul batched", inputs: [{ shape: [3, 4, 5] }, { shape: [3, 5, 6] }], f: (a, b) => fastOps.matMul(a, b) },
  { name: "fastOps.matMul rank3 x rank2", inputs: [{ shape: [3, 4, 5] }, { shape: [5, 6] }], f: (a, b) => fastOps.matMul(a, b) },
  { name: "fastOps.batchMatMul rank 4", inputs: [{ shape: [3, 2, 4, 5] }, { shape: [3, 2, 5, 6] }], f: (a, b) => fastOps.batchMatMul(a, b) },
  { name: "fastOps.dense", inputs: [{ shape: [3, 5, 6] }, { shape: [6, 4] }, { shape: [4] }], f: (x, w, b) => fastOps.dense(x, w, b) },
  { name: "fastOps.broadcastTo leading + unit axes", inputs: [{ shape: [1, 1, 4] }], f: (x) => fastOps.broadcastTo(x, [3, 5, 4]) },
  { name: "fastOps.broadcastTo new axis", inputs: [{ shape: [2, 1, 4] }], f: (x) => fastOps.broadcastTo(x, [3, 2, 5, 4]) },
  { name: "fastOps.matMul batched, long batch", inputs: [{ shape: [17, 3, 5] }, { shape: [17, 5, 2] }], f: (a, b) => fastOps.matMul(a, b) },
  { name: "fastOps.gelu wide range (tails of exp(-x^2/2))", inputs: [{ shape: [17], values: [-9, -6, -4, -3, -2, -1, -0.5, -0.1, 0, 0.1, 0.5, 1, 2, 3, 4, 6, 9] }], f: (x) => fastOps.gelu(x) },
  { name: "fastOps.gelu", inputs: [{ shape: [5, 9] }], f: (x) => fastOps.gelu(x) },
  { name: "fastOps.relu", inputs: [{ shape: [5, 9] }], f: (x) => fastOps.relu(x) },
  // >= 65,536 values, same shape: sslkit-native's Add and Relu (when built).
  { name: "tf.add, large, same shape", inputs: [{ shape: [260, 256] }, { shape: [260, 256] }], f: (a, b) => tf.add(a, b) },
  { name: "tf.relu, large", inputs: [{ shape: [260, 256] }], f: (x) => tf.relu(x) },
  { name: "fastOps.channelAffine (eval-mode BatchNorm)", inputs: [{ shape: [3, 4, 5, 6] }, { shape: [6] }, { shape: [6] }], f: (x, a, b) => fastOps.channelAffine(x, a as tf.Tensor1D, b as tf.Tensor1D) },
  {
    name: "fastOps.batchNormTrain with gamma, beta",
    inputs: [{ shape: [40, 6] }, { shape: [6], dist: "positive" }, { shape: [6] }],
    f: (x, g, b) => batchNormY(fastOps.batchNormTrain(tf.add(x, 3) as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D, 1e-5)),
  },
  { name: "fastOps.batchNormTrain without affine", inputs: [{ shape: [700, 3] }], f: (x) => batchNormY(fastOps.batchNormTrain(x as tf.Tensor2D, null, null, 1e-3)) },
  { name: "fastOps.layerNormOp", inputs: [{ shape: [3, 5, 8] }, { shape: [8] }, { shape: [8] }], f: (x, g, b) => fastOps.layerNormOp(x, g, b, 1e-5) },
  { name: "fastOps.l2Normalize", inputs: [{ shape: [5, 9] }], f: (x) => fastOps.l2Normalize(x, -1) },
  { name: "fastOps.patchify", inputs: [{ shape: [3, 8, 12, 2] }], f: (x) => fastOps.patchify(x as tf.Tensor4D, 4) },
  { name: "fastOps.unpatchify", inputs: [{ shape: [3, 6, 32] }], f: (x) => fastOps.unpatchify(x as tf.Tensor3D, 4, [2, 3]) },
  {
    name: "attention block (fast ops)",
    inputs: [{ shape: [3, 5, 8] }, { shape: [8, 24] }],
    f: (x, wqkv) => {
      const [n, heads, dh] = [3, 2, 4];
      const [q, k, v] = fastOps.splitHeads(fastOps.dense(x, wqkv) as tf.Tensor3D, 3, heads);
      const attn = fastOps.softmaxLastAxis(fastOps.matMulTransposeB(q, k), 1 / Math.sqrt(dh));
      return fastOps.mergeHeads([fastOps.gelu(fastOps.matMul(attn, v)) as tf.Tensor3D], n, heads);
    },
  },
  { name: "fastOps.matMulTransposeB batched", inputs: [{ shape: [3, 4, 5] }, { shape: [3, 6, 5] }], f: (a, b) => fastOps.matMulTransposeB(a, b) },
  { name: "fastOps.matMulTransposeB 2-D", inputs: [{ shape: [4, 5] }, { shape: [7, 5] }], f: (a, b) => fastOps.matMulTransposeB(a, b) },
  { name: "fastOps.softmaxLastAxis", inputs: [{ shape: [4, 3, 7] }], f: (x) => fastOps.softmaxLastAxis(x) },
  { name: "fastOps.softmaxLastAxis scale 0.35, wide logits", inputs: [{ shape: [2, 5], values: [40, 39, 38, -40, 0, -50, -60, -70, -80, -90] }], f: (x) => fastOps.softmaxLastAxis(x, 0.35) },
  // rows of 50 over several threads (attention's [N h, L, L] at L 50)
  { name: "fastOps.softmaxLastAxis large", inputs: [{ shape: [120, 50, 50] }], f: (x) => fastOps.softmaxLastAxis(x, 0.5) },
  // q, k, v weighted differently, so that each part's gradient is checked
  { name: "fastOps.splitHeads qkv", inputs: [{ shape: [3, 5, 24] }], f: (x) => weightedSum(fastOps.splitHeads(x as tf.Tensor3D, 3, 2)) },
  { name: "fastOps.splitHeads one part", inputs: [{ shape: [2, 7, 12] }], f: (x) => fastOps.splitHeads(x as tf.Tensor3D, 1, 3)[0] },
  { name: "fastOps.mergeHeads qkv", inputs: [{ shape: [6, 5, 4] }, { shape: [6, 5, 4] }, { shape: [6, 5, 4] }], f: (q, k, v) => fastOps.mergeHeads([q, k, v] as tf.Tensor3D[], 3, 2) },
  { name: "fastOps.mergeHeads one part", inputs: [{ shape: [6, 7, 4] }], f: (x) => fastOps.mergeHeads([x as tf.Tensor3D], 2, 3) },
  // Large enough for sslkit-native to split the pass over threads.
  { name: "fastOps.splitHeads large", inputs: [{ shape: [64, 50, 96] }], f: (x) => weightedSum(fastOps.splitHeads(x as tf.Tensor3D, 3, 4)) },
  { name: "fastOps.gelu large", inputs: [{ shape: [300, 256] }], f: (x) => fastOps.gelu(x) },
  { name: "fastOps.layerNormOp large", inputs: [{ shape: [40, 50, 64] }, { shape: [64] }, { shape: [64] }], f: (x, g, b) => fastOps.layerNormOp(x, g, b, 1e-6) },
  { name: "fastOps.takeRows", inputs: [{ shape: [3, 7, 5] }, { shape: [3, 4], intMax: 7 }], f: (x, i) => fastOps.takeRows(x as tf.Tensor3D, i as tf.Tensor2D) },
  { name: "fastOps.takeTableRows", inputs: [{ shape: [7, 5] }, { shape: [3, 4], intMax: 7 }], f: (t, i) => fastOps.takeTableRows(t as tf.Tensor2D, i as tf.Tensor2D, 3) },
  // BatchNorm statistics (an [M, 1] average pool on wasm), small and large M.
  { name: "fastOps.columnMeans", inputs: [{ shape: [7, 5] }], f: (x) => fastOps.columnMeans(x as tf.Tensor2D), forwardOnly: true },
  { name: "fastOps.columnMeans large", inputs: [{ shape: [70000, 3], dist: "positive" }], f: (x) => fastOps.columnMeans(x as tf.Tensor2D), forwardOnly: true },
  { name: "fastOps.columnSums large", inputs: [{ shape: [40000, 6] }], f: (x) => fastOps.columnSums(x as tf.Tensor2D), forwardOnly: true },
];

test("Identity on wasm shares data (no copy), and the clone outlives its source", async () => {
  await useBackend("wasm");
  const x = tf.tensor2d([1, 2, 3, 4], [2, 2]);
  const y = tf.clone(x);
  assert.equal(y.dataId, x.dataId, "shared data");
  assert.equal((tf.backend() as unknown as { refCount(id: object): number }).refCount(x.dataId), 2, "reference counted");
  x.dispose();
  assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3, 4]);
  y.dispose();
});

test("sslkit's training kernels are registered on wasm, idempotently", async () => {
  await useBackend("wasm");
  const expected = ["Conv2DBackpropFilter", "Conv2DBackpropInput", "DepthwiseConv2dNativeBackpropInput", "DepthwiseConv2dNativeBackpropFilter", "UnsortedSegmentSum", "MaxPoolGrad", "GatherV2", "OneHot", "Identity"];
  for (const name of expected) assert.ok(wasmTrainingKernelNames.includes(name), `${name} listed`);
  const before = wasmTrainingKernelNames.map((n) => tf.getKernel(n, "wasm")?.kernelFunc);
  before.forEach((k, i) => assert.ok(k, `${wasmTrainingKernelNames[i]} registered on wasm`));
  registerWasmTrainingKernels();
  const after = wasmTrainingKernelNames.map((n) => tf.getKernel(n, "wasm")?.kernelFunc);
  assert.deepEqual(after, before);
});

test("raw tf ops: wasm forward and gradients match cpu", async () => {
  let seed = 1;
  for (const c of rawOpCases) await compareWasmToCpu(c, seed++);
});

test("fast ops: wasm forward and gradients match cpu", async () => {
  let seed = 100;
  for (const c of fastOpCases) await compareWasmToCpu(c, seed++);
});

test("without sslkit-native, wasm's own kernels (and sslkit's training kernels) also match cpu", { skip: loadNativeKernels().kernels ? false : `sslkit-native not built: ${loadNativeKernels().why}` }, async () => {
  const { threads } = await initBackend("wasm");
  unregisterNativeKernels();
  try {
    assert.equal(nativeKernelsActive(), false);
    let seed = 200;
    for (const c of [...rawOpCases, ...fastOpCases]) await compareWasmToCpu(c, seed++);
  } finally {
    registerNativeKernels(threads);
  }
  await useBackend("wasm");
  assert.equal(nativeKernelsActive(), true, "re-registered");
});

test("fastOps.conv2d gradients equal tf.conv2d's on cpu (stride 1/2, same/valid, odd/even, batch 3/5)", async () => {
  await useBackend("cpu");
  const rng = new Rng(7);
  const configs: Array<{ x: [number, number, number, number]; w: [number, number, number, number]; s: number; pad: fastOps.ConvPadding }> = [];
  for (const batch of [3, 5]) {
    for (const hw of [[7, 7], [8, 6]]) {
      for (const s of [1, 2]) {
        for (const pad of ["same", "valid"] as const) configs.push({ x: [batch, hw[0], hw[1], 3], w: [3, 3, 3, 4], s, pad });
      }
    }
  }
  configs.push({ x: [3, 9, 9, 2], w: [4, 4, 2, 3], s: 2, pad: "same" });
  configs.push({ x: [5, 7, 7, 2], w: [1, 1, 2, 3], s: 2, pad: "same" });
  configs.push({ x: [3, 10, 10, 2], w: [5, 5, 2, 3], s: 3, pad: "valid" });
  configs.push({ x: [3, 7, 7, 2], w: [3, 3, 2, 3], s: 1, pad: 4 });
  for (const cfg of configs) {
    const name = `x[${cfg.x}] w[${cfg.w}] s${cfg.s} ${JSON.stringify(cfg.pad)}`;
    tf.tidy(() => {
      const x = tf.tensor4d(Float32Array.from({ length: size(cfg.x) }, () => rng.normal()), cfg.x);
      const w = tf.tensor4d(Float32Array.from({ length: size(cfg.w) }, () => rng.normal()), cfg.w);
      const yRef = tf.conv2d(x, w, cfg.s, cfg.pad as "same");
      const cot = tf.randomNormal(yRef.shape, 0, 1, "float32", 3);
      const loss = (f: typeof fconv) => (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(cfg.s, cfg.pad)(a, b), cot));
      const ref = tf.grads(loss(conv))([x, w]);
      const got = tf.grads(loss(fconv))([x, w]);
      assert.ok(relError(fastOps.conv2d(x, w, cfg.s, cfg.pad).dataSync(), yRef.dataSync()) <= TOL, `${name}: forward`);
      assert.ok(relError(got[0].dataSync(), ref[0].dataSync()) <= TOL, `${name}: dx`);
      assert.ok(relError(got[1].dataSync(), ref[1].dataSync()) <= TOL, `${name}: dw`);
      // Both input-gradient formulations agree.
      const dxDilate = fastOps.conv2dInputGrad(cot as tf.Tensor4D, w, cfg.x, cfg.s, cfg.pad, undefined, "dilate");
      assert.ok(relError(dxDilate.dataSync(), ref[0].dataSync()) <= TOL, `${name}: dx (dilate)`);
    });
  }
});

test("fastOps.conv2d computes only the gradients that are needed", async () => {
  await useBackend("wasm");
  const x = tf.randomNormal([3, 8, 8, 2], 0, 1, "float32", 1) as tf.Tensor4D;
  const w = tf.variable(tf.randomNormal([3, 3, 2, 4], 0, 1, "float32", 2));
  const profile = await tf.profile(() => {
    const { grads } = tf.variableGrads(() => tf.sum(fastOps.conv2d(x, w as unknown as tf.Tensor4D, 1, "same")) as tf.Scalar, [w]);
    tf.dispose(grads);
  });
  const count = (name: string) => profile.kernels.filter((k) => k.name === name).length;
  if (nativeKernelsActive()) {
    // sslkit-native: the gradients are their own kernels.
    assert.deepEqual([count("Conv2D"), count("Conv2DBackpropFilter"), count("Conv2DBackpropInput")], [1, 1, 0], "forward + filter gradient; no input gradient for a data input");
  } else {
    assert.equal(count("Conv2D"), 2, "forward conv + filter-gradient conv; no input-gradient conv for a data input");
  }
  tf.dispose([x, w]);
});

test("splitHeads layout: part p, row (image, head) holds that part's head slice of each token; mergeHeads undoes it", async () => {
  for (const backend of ["cpu", "wasm"] as const) {
    await useBackend(backend);
    const [n, l, parts, heads, dh] = [2, 3, 3, 2, 4];
    const x = tf.tensor3d(Float32Array.from({ length: n * l * parts * heads * dh }, (_, i) => i), [n, l, parts * heads * dh]);
    const ys = fastOps.splitHeads(x, parts, heads);
    ys.forEach((y) => assert.deepEqual(y.shape, [n * heads, l, dh]));
    const yv = ys.map((y) => y.arraySync() as number[][][]);
    const xv = x.arraySync() as number[][][];
    for (let p = 0; p < parts; p++)
      for (let b = 0; b < n; b++)
        for (let hh = 0; hh < heads; hh++)
          for (let t = 0; t < l; t++)
            for (let j = 0; j < dh; j++) assert.equal(yv[p][b * heads + hh][t][j], xv[b][t][(p * heads + hh) * dh + j], `${backend} p${p} b${b} h${hh} t${t} j${j}`);
    const merged = fastOps.mergeHeads(ys, n, heads);
    assert.deepEqual(merged.dataSync(), x.dataSync(), backend);
    tf.dispose([x, merged, ...ys]);
  }
});

test("hand-checked values: gelu (erf form), patchify layout, takeRows, l2Normalize of a zero row", async () => {
  await useBackend("wasm");
  // PyTorch: nn.GELU()(torch.tensor([1.0, -0.5, 2.0])) = [0.8413447, -0.1542688, 1.9544997]
  const g = fastOps.gelu(tf.tensor1d([1, -0.5, 2]));
  assert.ok(relError(g.dataSync(), [0.8413447, -0.1542688, 1.9544997]) < 1e-6);
  // d/dx GELU at 1: Phi(1) + phi(1) = 0.8413447 + 0.2419707 = 1.0833154
  const dg = tf.grad((t: tf.Tensor) => tf.sum(fastOps.gelu(t)))(tf.tensor1d([1]));
  assert.ok(Math.abs(dg.dataSync()[0] - 1.0833154) < 1e-5);

  // patchify: patch (i,j) holds rows i*p.., cols j*p.., flattened (row, col, channel).
  const n = 2, h = 4, w = 6, c = 2, p = 2;
  const x = tf.tensor4d(Float32Array.from({ length: n * h * w * c }, (_, k) => k), [n, h, w, c]);
  const patches = fastOps.patchify(x, p);
  assert.deepEqual(patches.shape, [n, (h / p) * (w / p), p * p * c]);
  const pv = patches.arraySync() as number[][][];
  const xv = x.arraySync() as number[][][][];
  for (let b = 0; b < n; b++)
    for (let i = 0; i < h / p; i++)
      for (let j = 0; j < w / p; j++)
        for (let py = 0; py < p; py++)
          for (let px = 0; px < p; px++)
            for (let ch = 0; ch < c; ch++) assert.equal(pv[b][i * (w / p) + j][(py * p + px) * c + ch], xv[b][i * p + py][j * p + px][ch]);
  assert.deepEqual(fastOps.unpatchify(patches, p, [h / p, w / p]).dataSync(), x.dataSync());

  // takeRows picks x[n, idx[n,k]]; the one-hot variant agrees; an Int32Array index works too.
  const seq = tf.tensor3d(Float32Array.from({ length: 3 * 5 * 2 }, (_, k) => k), [3, 5, 2]);
  const idx = [4, 0, 2, 2, 1, 3];
  const rows = fastOps.takeRows(seq, tf.tensor2d(idx, [3, 2], "int32"));
  assert.deepEqual(Array.from(rows.dataSync()), [8, 9, 0, 1, 14, 15, 14, 15, 22, 23, 26, 27]);
  assert.deepEqual(fastOps.takeRowsOneHot(seq, tf.tensor2d(idx, [3, 2], "int32")).dataSync(), rows.dataSync());
  assert.deepEqual(fastOps.takeRows(seq, Int32Array.from(idx)).dataSync(), rows.dataSync());
  assert.throws(() => fastOps.takeRows(seq, Int32Array.from([0, 5, 0, 0, 0, 0])), /outside \[0, 5\)/);
  // takeTableRows picks table[idx[n,k]] from one table shared by all images; its gradient sums repeated rows.
  const table = tf.tensor2d([[0, 1], [2, 3], [4, 5]]);
  const shared = fastOps.takeTableRows(table, Int32Array.from([2, 0, 1, 1]), 2);
  assert.deepEqual(shared.shape, [2, 2, 2]);
  assert.deepEqual(Array.from(shared.dataSync()), [4, 5, 0, 1, 2, 3, 2, 3]);
  assert.deepEqual(fastOps.takeTableRows(table, tf.tensor2d([2, 0, 1, 1], [2, 2], "int32"), 2).dataSync(), shared.dataSync());
  const dTable = tf.grad((t: tf.Tensor) => tf.sum(fastOps.takeTableRows(t as tf.Tensor2D, Int32Array.from([2, 0, 1, 1]), 2)))(table);
  assert.deepEqual(Array.from(dTable.dataSync()), [1, 1, 2, 2, 1, 1]);
  assert.throws(() => fastOps.takeTableRows(table, Int32Array.from([0, 3, 0, 0]), 2), /takeTableRows: index 3 at 1 outside \[0, 3\)/);

  // l2Normalize: unit rows; a zero row stays zero with a finite gradient.
  const z = tf.tensor2d([[3, 4], [0, 0]]);
  assert.ok(relError(fastOps.l2Normalize(z).dataSync(), [0.6, 0.8, 0, 0]) < 1e-6);
  const dz = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(fastOps.l2Normalize(t), tf.tensor2d([[1, 2], [3, 4]]))))(z);
  assert.ok(dz.dataSync().every(Number.isFinite));
  // d/dx of <x/|x|, v> = (v - y<v,y>)/|x|: at x=(3,4), v=(1,2): y=(.6,.8), <v,y>=2.2 -> (1-1.32, 2-1.76)/5.
  assert.ok(relError(dz.dataSync().slice(0, 2), [(1 - 1.32) / 5, (2 - 1.76) / 5]) < 1e-6);
  tf.disposeVariables();
});

test("fast ops agree with their naive autodiff formulations (cpu)", async () => {
  await useBackend("cpu");
  const rng = new Rng(11);
  const rand = (shape: number[]) => tf.tensor(Float32Array.from({ length: size(shape) }, () => rng.normal()), shape);
  tf.tidy(() => {
    const x = rand([3, 5, 8]);
    const gm = rand([8]);
    const bt = rand([8]);
    const naiveLn = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
      const { mean, variance } = tf.moments(a, -1, true);
      return tf.add(tf.mul(tf.div(tf.sub(a, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b);
    };
    const cot = rand([3, 5, 8]);
    const ref = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(naiveLn(a, g, b), cot)))([x, gm, bt]);
    const got = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(fastOps.layerNormOp(a, g, b, 1e-5), cot)))([x, gm, bt]);
    got.forEach((t, i) => assert.ok(relError(t.dataSync(), ref[i].dataSync()) <= TOL, `layerNormOp grad ${i}`));

    const naiveGelu = (a: tf.Tensor) => tf.mul(tf.mul(0.5, a), tf.add(1, tf.erf(tf.div(a, Math.SQRT2))));
    const cg = rand([5, 8]);
    const a = rand([5, 8]);
    const gRef = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(naiveGelu(t), cg)))(a);
    const gGot = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(fastOps.gelu(t), cg)))(a);
    assert.ok(relError(gGot.dataSync(), gRef.dataSync()) <= TOL, "gelu grad");

    const v = rand([5, 8]);
    const nRef = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.div(t, tf.norm(t, 2, -1, true)), cg)))(v);
    const nGot = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(fastOps.l2Normalize(t, 1), cg)))(v);
    assert.ok(relError(nGot.dataSync(), nRef.dataSync()) <= TOL, "l2Normalize grad");
  });
});

test("wasm UnsortedSegmentSum drops out-of-range ids like cpu; GatherV2 rejects bad indices", async () => {
  const run = () =>
    tf.tidy(() => Array.from(tf.unsortedSegmentSum(tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8], [4, 2]), tf.tensor1d([2, -1, 0, 2], "int32"), 3).dataSync()));
  await useBackend("cpu");
  const ref = run();
  await useBackend("wasm");
  assert.deepEqual(run(), ref);
  assert.deepEqual(ref, [5, 6, 0, 0, 8, 10]);
  assert.throws(() => tf.gather(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor1d([0, 2], "int32")), /index value 2/);
});

test("20 conv forward+backward steps on wasm leave tf.memory() unchanged", async () => {
  await useBackend("wasm");
  const rng = new Rng(5);
  const x = tf.tensor4d(Float32Array.from({ length: 5 * 8 * 8 * 3 }, () => rng.normal()), [5, 8, 8, 3]);
  const w1 = tf.tensor4d(Float32Array.from({ length: 3 * 3 * 3 * 6 }, () => rng.normal()), [3, 3, 3, 6]);
  const w2 = tf.tensor4d(Float32Array.from({ length: 3 * 3 * 6 * 4 }, () => rng.normal()), [3, 3, 6, 4]);
  const dw = tf.tensor4d(Float32Array.from({ length: 3 * 3 * 4 * 1 }, () => rng.normal()), [3, 3, 4, 1]);
  const step = (i: number) =>
    tf.tidy(() => {
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, d: tf.Tensor) => {
        const h = tf.relu(i % 2 === 0 ? tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, "same") : fastOps.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, "same"));
        const p = tf.maxPool(h, 2, 2, "same");
        const h2 = i % 2 === 0 ? tf.conv2d(p, c as tf.Tensor4D, 2, "same") : fastOps.conv2d(p, c as tf.Tensor4D, 2, "same");
        const h3 = tf.depthwiseConv2d(h2, d as tf.Tensor4D, 1, "same");
        return tf.mean(tf.square(tf.conv2dTranspose(h3, c as tf.Tensor4D, [5, 4, 4, 6], 2, "same")));
      })([x, w1, w2, dw]);
      grads.forEach((g) => g.dataSync());
    });
  step(0);
  step(1);
  const before = tf.memory();
  for (let i = 0; i < 20; i++) step(i);
  const after = tf.memory();
  assert.equal(after.numTensors, before.numTensors);
  assert.equal(after.numBytes, before.numBytes);
  assert.equal(after.numDataBuffers, before.numDataBuffers);
  tf.dispose([x, w1, w2, dw]);
});
