/**
 * Ops the library trains through, with gradient formulations that are correct and fast on
 * every backend, wasm included. Layers call these instead of the raw tf ops:
 *   - matMul / batchMatMul: tfjs's own matMul gradient uses transposeA/transposeB, which is
 *     8-16x slower on wasm than an explicit transpose followed by a plain matMul.
 *   - conv2d: tfjs's input gradient (Conv2DBackpropInput) is ~12x slower than a forward conv
 *     on wasm, and wasm has no Conv2DBackpropFilter at all; both gradients here are forward
 *     convolutions (`conv2dInputGrad`, `conv2dFilterGrad`), which backend/wasm-kernels also
 *     registers as the wasm kernels.
 *   - gelu, layerNormOp, l2Normalize: one custom gradient each instead of a chain of small
 *     autodiff kernels (and no NaN gradient for an all-zero row in l2Normalize).
 *   - splitHeads / mergeHeads: attention heads out of a fused projection and back, without a
 *     split along a non-leading axis.
 *   - broadcastTo: tfjs's (a Tile) has a gradient of one Slice + Add per repetition.
 *   - patchify / unpatchify / takeRows: ViT/MAE plumbing using only rank <= 4 transposes and a
 *     flat gather.
 * With sslkit-native active (backend/native-kernels), products take their transposes as BLAS
 * flags, conv2d's gradients, batchNormTrain, layerNormOp, gelu and the head moves run as native
 * kernels, and relu's gradient is one pass; the formulations above remain the path on plain wasm.
 * Never train through tf.stridedSlice, tf.einsum or tf.depthToSpace (no gradient on any
 * backend), and keep transposes/slices at rank <= 4 (rank 5-6 are ~100x slower on wasm).
 */
import * as tf from "@tensorflow/tfjs-core";
import { BATCH_NORM_BACKWARD, BATCH_NORM_FORWARD, CHANNEL_AFFINE, GELU, GELU_GRAD, LAYER_NORM_BACKWARD, LAYER_NORM_FORWARD, MOVE_HEADS, RELU_GRAD, SOFTMAX, SOFTMAX_GRAD, nativeKernelsActive } from "../backend/native-kernels";

/** Padding accepted by the conv helpers: tf's string modes, a symmetric number, or NHWC explicit pads. */
export type ConvPadding = "same" | "valid" | number | [[number, number], [number, number], [number, number], [number, number]];
type Pair = [number, number];
type Shape4 = [number, number, number, number];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyCustomGradFn = any;

function pair(v: number | Pair): Pair {
  return typeof v === "number" ? [v, v] : v;
}

function assertRank(name: string, what: string, t: tf.Tensor, rank: number): void {
  if (t.rank !== rank) throw new Error(`${name}: ${what} must be rank ${rank}, got shape [${t.shape}]`);
}

type LazyGradFuncs = Record<string, () => tf.Tensor>;
/** The engine's op runner (an internal that tf.customGrad is built on): one output or several. */
type EngineWithKernelFunc = {
  runKernelFunc(params: {
    forwardFunc: (backend: unknown, save: tf.GradSaveFunc) => tf.Tensor | tf.Tensor[];
    backwardsFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => LazyGradFuncs;
    inputs: tf.NamedTensorMap;
  }): tf.Tensor | tf.Tensor[];
};

/**
 * An op with a custom gradient whose per-input gradients are computed lazily: the engine calls
 * only those whose input is on the path to the trainable variables (tf.customGrad computes every
 * input's gradient, e.g. a wasted full dx conv for a network's first layer). Uses the engine's
 * runKernelFunc, which tf.customGrad itself is built on; falls back to tf.customGrad semantics
 * (all gradients) if that internal ever disappears.
 */
function opWithLazyGrads(
  inputs: Record<string, tf.Tensor>,
  forward: (save: tf.GradSaveFunc) => tf.Tensor,
  backward: (dy: tf.Tensor, saved: tf.Tensor[]) => LazyGradFuncs,
): tf.Tensor {
  const engine = tf.engine() as unknown as Partial<EngineWithKernelFunc>;
  if (typeof engine.runKernelFunc === "function") {
    return engine.runKernelFunc({ forwardFunc: (_backend, save) => forward(save), backwardsFunc: (dy, saved) => backward(dy as tf.Tensor, saved), inputs }) as tf.Tensor;
  }
  const names = Object.keys(inputs);
  const f = tf.customGrad(((...args: unknown[]) => {
    const save = args[names.length] as tf.GradSaveFunc;
    return {
      value: forward(save),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const g = backward(dy, saved);
        return names.map((n) => g[n]());
      },
    };
  }) as AnyCustomGradFn);
  return f(...names.map((n) => inputs[n]));
}

/** Transpose of the last two axes of a rank-2 or rank-3 tensor. */
export function transposeLast2(x: tf.Tensor): tf.Tensor {
  if (x.rank === 2) return tf.transpose(x, [1, 0]);
  if (x.rank === 3) return tf.transpose(x, [0, 2, 1]);
  throw new Error(`transposeLast2: expected rank 2 or 3, got ${x.rank}`);
}

/**
 * tf.broadcastTo with a reduce-sum gradient. tfjs runs broadcastTo as Tile, whose gradient is one
 * Slice + Add per repetition (128 x 37 = 4736 kernels for an MAE mask token: 2.4 s of a 2.8 s
 * wasm step); summing dy over the broadcast axes is one kernel.
 */
export function broadcastTo(x: tf.Tensor, shape: number[]): tf.Tensor {
  if (shape.length < x.rank) throw new Error(`broadcastTo: target [${shape}] has lower rank than [${x.shape}]`);
  const lead = shape.length - x.rank;
  const axes: number[] = [];
  for (let i = 0; i < shape.length; i++) {
    const from = i < lead ? 1 : x.shape[i - lead];
    if (from !== shape[i] && from !== 1) throw new Error(`broadcastTo: cannot broadcast [${x.shape}] to [${shape}]`);
    if (i < lead || (from === 1 && shape[i] !== 1)) axes.push(i);
  }
  const xShape = x.shape;
  return opWithLazyGrads(
    { x },
    () => tf.add(x, tf.zeros(shape)), // a broadcasting Add: wasm's Tile forward is ~10x slower too
    (dy) => ({ x: () => tf.reshape(axes.length > 0 ? tf.sum(dy, axes) : dy, xShape) }),
  );
}

/**
 * Column means of x [M, C] -> [C] (BatchNorm statistics and gradients). wasm reduces only along
 * the last axis, so tf.mean(x, 0) transposes first: 89 ms for [262144, 32]. An average pool with
 * one [M, 1] window over x viewed as [1, M, 1, C] is XNNPACK's channel-vectorised pooling: 4 ms,
 * and closer to a float64 reference. Other backends use tf.mean.
 */
export function columnMeans(x: tf.Tensor2D): tf.Tensor1D {
  assertRank("columnMeans", "x", x, 2);
  const [m, c] = x.shape;
  if (tf.getBackend() !== "wasm" || m < 2) return tf.mean(x, 0) as tf.Tensor1D;
  return tf.tidy(() => tf.reshape(tf.avgPool(tf.reshape(x, [1, m, 1, c]) as tf.Tensor4D, [m, 1], [m, 1], "valid"), [c]) as tf.Tensor1D);
}

/** Column sums of x [M, C] -> [C]: `columnMeans` times M on wasm, tf.sum elsewhere. */
export function columnSums(x: tf.Tensor2D): tf.Tensor1D {
  assertRank("columnSums", "x", x, 2);
  if (tf.getBackend() !== "wasm" || x.shape[0] < 2) return tf.sum(x, 0) as tf.Tensor1D;
  return tf.tidy(() => tf.mul(columnMeans(x), x.shape[0]) as tf.Tensor1D);
}

// ---------------------------------------------------------------------------------------------
// Matrix products
// ---------------------------------------------------------------------------------------------

/** y [M, C] + b (C values), with the bias gradient as `columnSums` (tf.add's sums dy over axis 0 by a transpose on wasm). */
export function addBias(y: tf.Tensor2D, b: tf.Tensor): tf.Tensor2D {
  if (b.size !== y.shape[1]) throw new Error(`addBias: bias [${b.shape}] does not match ${y.shape[1]} columns`);
  const bShape = b.shape;
  return opWithLazyGrads(
    { y, b },
    () => tf.add(y, tf.reshape(b, [y.shape[1]])),
    (dy) => ({ y: () => dy, b: () => tf.reshape(columnSums(dy as tf.Tensor2D), bShape) }),
  ) as tf.Tensor2D;
}

/**
 * Batched [B,m,k] @ [B,k,n] (optionally with either operand stored transposed, as [B,k,m] /
 * [B,n,k]) as ONE depthwise convolution with the batch as channels: input [1, m, k, B],
 * filter [1, k, B, n] (channel multiplier n), 'valid' -> [1, m, 1, B*n] = [m, B, n].
 * wasm's own BatchMatMul runs batches > 1 through a scalar triple loop (~1 GFLOP/s: the
 * attention products were 30% of an MAE step); XNNPACK's grouped convolution is 3-4x faster
 * even with the three small transposes.
 */
function batchMatMulDepthwise(a: tf.Tensor3D, b: tf.Tensor3D, transposeA: boolean, transposeB: boolean): tf.Tensor3D {
  const batch = a.shape[0];
  const [m, k] = transposeA ? [a.shape[2], a.shape[1]] : [a.shape[1], a.shape[2]];
  const n = transposeB ? b.shape[1] : b.shape[2];
  const x = tf.reshape(tf.transpose(a, transposeA ? [2, 1, 0] : [1, 2, 0]), [1, m, k, batch]) as tf.Tensor4D;
  const filter = tf.reshape(tf.transpose(b, transposeB ? [2, 0, 1] : [1, 0, 2]), [1, k, batch, n]) as tf.Tensor4D;
  const y = tf.depthwiseConv2d(x, filter, 1, "valid");
  return tf.transpose(tf.reshape(y, [m, batch, n]), [1, 0, 2]) as tf.Tensor3D;
}

/** a @ b with either operand optionally transposed, by the fastest kernel the backend has. */
function matMulKernel(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor {
  if (tf.getBackend() === "wasm" && !nativeKernelsActive()) {
    if (a.rank === 3 && a.shape[0] > 1) return batchMatMulDepthwise(a as tf.Tensor3D, b as tf.Tensor3D, transposeA, transposeB);
    // wasm's matMul repacks its right operand on every call (XNNPACK caches packed weights per
    // tensor): for a weight gradient A^T dY [T,i]^T x [T,o] with o > i, (dY^T A)^T packs the
    // narrower operand, 2-3x faster for [6272,64]^T x [6272,256] (the transposed result is small).
    if (transposeA && !transposeB && a.rank === 2 && (b.shape[1] as number) > (a.shape[1] as number)) return tf.transpose(tf.matMul(transposeLast2(b), a));
    // wasm's transposeA/B matMul is 8-16x slower than an explicit transpose and a plain matMul.
    return tf.matMul(transposeA ? transposeLast2(a) : a, transposeB ? transposeLast2(b) : b) as tf.Tensor;
  }
  return tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, transposeA, transposeB);
}

/**
 * a @ b for [m,k]x[k,n] or [B,m,k]x[B,k,n], with a gradient of plain products:
 * dA = dY @ B^T, dB = A^T @ dY (each computed only if needed). With a bias (n values, 2-D only)
 * the product and the bias are one fused kernel (XNNPACK adds it as it writes the output, saving
 * an Add per layer) and dBias = column sums of dY.
 */
function matMulWithPlainGrads(a: tf.Tensor, b: tf.Tensor, bias?: tf.Tensor): tf.Tensor {
  const n = b.shape[b.rank - 1];
  if (bias && bias.size !== n) throw new Error(`dense: bias [${bias.shape}] does not match ${n} output columns`);
  return opWithLazyGrads(
    bias ? { a, b, bias } : { a, b },
    (save) => {
      save([a, b]);
      if (bias) return tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias: tf.reshape(bias, [n]) });
      return matMulKernel(a, b, false, false);
    },
    (dy, [sa, sb]) => ({
      a: () => matMulKernel(dy, sb, false, true),
      b: () => matMulKernel(sa, dy, true, false),
      ...(bias ? { bias: () => tf.reshape(columnSums(dy as tf.Tensor2D), bias.shape) } : {}),
    }),
  );
}

/**
 * a @ b with a transpose-free gradient. Accepts [m,k]x[k,n], [B,m,k]x[B,k,n] (same B), and
 * [..., m, k]x[k,n] (a's leading axes folded into rows, e.g. tokens times a weight matrix).
 * For rank >= 4 batched products use `batchMatMul`.
 */
export function matMul(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (a.rank < 2 || b.rank < 2) throw new Error(`matMul: operands must be at least rank 2, got [${a.shape}] and [${b.shape}]`);
  const k = a.shape[a.rank - 1];
  if (k !== b.shape[b.rank - 2]) throw new Error(`matMul: inner dimensions differ: [${a.shape}] x [${b.shape}]`);
  if (b.rank === 2 && a.rank > 2) {
    const y = matMulWithPlainGrads(tf.reshape(a, [-1, k]), b);
    return tf.reshape(y, [...a.shape.slice(0, -1), b.shape[1] as number]);
  }
  if (a.rank !== b.rank || a.rank > 3) {
    throw new Error(`matMul: expected [m,k]x[k,n], [B,m,k]x[B,k,n] or [...,m,k]x[k,n], got [${a.shape}] x [${b.shape}] (use batchMatMul for rank >= 4)`);
  }
  if (a.rank === 3 && a.shape[0] !== b.shape[0]) throw new Error(`matMul: batch sizes differ: [${a.shape}] x [${b.shape}]`);
  return matMulWithPlainGrads(a, b);
}

/**
 * a @ b^T for [m,k]x[n,k] or [B,m,k]x[B,n,k] (attention scores Q K^T) without materialising b^T:
 * dA = dY @ B, dB = dY^T @ A (each computed only if needed).
 */
export function matMulTransposeB(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const k = a.shape[a.rank - 1];
  if (!((a.rank === 2 || a.rank === 3) && b.rank === a.rank && b.shape[b.rank - 1] === k && (a.rank === 2 || a.shape[0] === b.shape[0]))) {
    throw new Error(`matMulTransposeB: expected [m,k]x[n,k] or [B,m,k]x[B,n,k], got [${a.shape}] x [${b.shape}]`);
  }
  return opWithLazyGrads(
    { a, b },
    (save) => {
      save([a, b]);
      return matMulKernel(a, b, false, true);
    },
    (dy, [sa, sb]) => ({ a: () => matMulKernel(dy, sb, false, false), b: () => matMulKernel(dy, sa, true, false) }),
  );
}

/**
 * Batched a @ b over identical leading axes, e.g. attention scores [B,h,L,d] x [B,h,d,L].
 * Folds the leading axes into one (rank-3 matMul) so the gradient stays transpose-free.
 */
export function batchMatMul(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (a.rank < 3 || a.rank !== b.rank) throw new Error(`batchMatMul: expected equal ranks >= 3, got [${a.shape}] and [${b.shape}]`);
  const lead = a.shape.slice(0, -2);
  if (lead.some((d, i) => d !== b.shape[i])) throw new Error(`batchMatMul: leading axes differ: [${a.shape}] vs [${b.shape}]`);
  if (a.rank === 3) return matMul(a, b);
  const [m, k] = a.shape.slice(-2);
  const n = b.shape[b.rank - 1];
  const y = matMul(tf.reshape(a, [-1, m, k]), tf.reshape(b, [-1, k, n]));
  return tf.reshape(y, [...lead, m, n]);
}

/** Affine map on the last axis: x [..., in] @ w [in, out] + b [out], any leading rank. */
export function dense(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  if (x.rank < 2 || w.rank !== 2) throw new Error(`dense: expected x [..., in] and w [in, out], got [${x.shape}] and [${w.shape}]`);
  const inDim = x.shape[x.rank - 1];
  if (inDim !== w.shape[0]) throw new Error(`dense: inner dimensions differ: [${x.shape}] x [${w.shape}]`);
  const lead = x.shape.slice(0, -1);
  const x2 = tf.reshape(x, [-1, inDim]) as tf.Tensor2D;
  const y = matMulWithPlainGrads(x2, w, b);
  return x.rank === 2 ? y : tf.reshape(y, [...lead, w.shape[1] as number]);
}

// ---------------------------------------------------------------------------------------------
// 2-D convolution and its gradients as forward convolutions
// ---------------------------------------------------------------------------------------------

/**
 * Inserts s-1 zeros after every row/column of x [N,H,W,C] -> [N, H*sh, W*sw, C], using only rank-4
 * reshapes and pads (the transpose of a strided subsampling).
 */
export function zeroDilate2d(x: tf.Tensor4D, strides: number | Pair): tf.Tensor4D {
  const [sh, sw] = pair(strides);
  if (sh === 1 && sw === 1) return x;
  const [n, h, w, c] = x.shape;
  let t: tf.Tensor4D = tf.reshape(x, [n * h, w, 1, c]);
  if (sw > 1) t = tf.pad(t, [[0, 0], [0, 0], [0, sw - 1], [0, 0]]);
  t = tf.reshape(t, [n * h, 1, w * sw, c]);
  if (sh > 1) t = tf.pad(t, [[0, 0], [0, sh - 1], [0, 0], [0, 0]]);
  return tf.reshape(t, [n, h * sh, w * sw, c]);
}

function conv2dInfo(xShape: Shape4, filterShape: Shape4, strides: number | Pair, pad: ConvPadding, roundingMode?: "floor" | "round" | "ceil"): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(xShape, filterShape, strides, 1, pad, roundingMode, false, "channelsLast");
}

/** Slices rows/cols [top, top+h) x [left, left+w) of x [N,H,W,C] when that is not all of x. */
function cropSpatial(x: tf.Tensor4D, top: number, left: number, h: number, w: number): tf.Tensor4D {
  if (top === 0 && left === 0 && x.shape[1] === h && x.shape[2] === w) return x;
  return tf.slice(x, [0, top, left, 0], [x.shape[0], h, w, x.shape[3]]);
}

/** How conv2dInputGrad builds dx for strides > 1 (stride 1 is the same single conv either way). */
export type ConvInputGradMethod = "subpixel" | "dilate";

/**
 * Gradient of conv2d(x, w, strides, pad) with respect to x [N,H,W,Ci], built from forward
 * convolutions with the spatially flipped, in/out-swapped filter (no Conv2DBackpropInput):
 *   - "dilate": ONE conv over zeroDilate(dy) padded by K-1-padBefore
 *     (dx[i] = sum_{o,k: o*s+k-p=i} dy[o] w[k] = sum_k' dyDil[i+k'-(K-1-p)] w[K-1-k']);
 *   - "subpixel" (default for strides > 1): one small conv per output phase (i+p) mod s with the
 *     sub-filter w[r::s], interleaved by rank-4 concat+reshape: 1/s^2 of the dilate method's work.
 */
export function conv2dInputGrad(dy: tf.Tensor4D, filter: tf.Tensor4D, inputShape: Shape4, strides: number | Pair, pad: ConvPadding, roundingMode?: "floor" | "round" | "ceil", method: ConvInputGradMethod = "subpixel"): tf.Tensor4D {
  assertRank("conv2dInputGrad", "dy", dy, 4);
  assertRank("conv2dInputGrad", "filter", filter, 4);
  const info = conv2dInfo(inputShape, filter.shape, strides, pad, roundingMode);
  if (dy.shape[0] !== inputShape[0] || dy.shape[1] !== info.outHeight || dy.shape[2] !== info.outWidth || dy.shape[3] !== info.outChannels) {
    throw new Error(`conv2dInputGrad: dy shape [${dy.shape}] does not match conv output [${info.outShape}]`);
  }
  const unitStride = info.strideHeight === 1 && info.strideWidth === 1;
  return tf.tidy(() => (unitStride || method === "dilate" ? inputGradDilated(dy, filter, info) : inputGradSubPixel(dy, filter, info)));
}

/**
 * The taps (rows[a], cols[b]) of a filter [KH,KW,Ci,Co], flipped in space and in/out-swapped:
 * [rows.length, cols.length, Co, Ci]. One row gather over the flattened taps and one rank-3
 * transpose (wasm's Reverse and StridedSlice took up to 90 ms on a 3x3x128x256 filter).
 */
function flippedTaps(filter: tf.Tensor4D, rows: number[], cols: number[]): tf.Tensor4D {
  const [, kw, ci, co] = filter.shape;
  const taps: number[] = [];
  for (let a = rows.length - 1; a >= 0; a--) for (let b = cols.length - 1; b >= 0; b--) taps.push(rows[a] * kw + cols[b]);
  const picked = tf.gather(tf.reshape(filter, [-1, ci, co]), tf.tensor1d(taps, "int32"), 0);
  return tf.reshape(tf.transpose(picked, [0, 2, 1]), [rows.length, cols.length, co, ci]) as tf.Tensor4D;
}

const range = (start: number, end: number, step = 1): number[] => Array.from({ length: Math.max(0, Math.ceil((end - start) / step)) }, (_, i) => start + i * step);

/** Filter [KH,KW,Ci,Co] -> flipped in space and in/out-swapped [KH,KW,Co,Ci]. */
function flipFilter(filter: tf.Tensor4D): tf.Tensor4D {
  return flippedTaps(filter, range(0, filter.shape[0]), range(0, filter.shape[1]));
}

function inputGradDilated(dy: tf.Tensor4D, filter: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const { filterHeight: kh, filterWidth: kw, inHeight: h, inWidth: w, strideHeight: sh, strideWidth: sw } = info;
  const dyDil = zeroDilate2d(dy, [sh, sw]);
  // Pads around the dilated dy; a negative pad means "crop that many from the result".
  const top = kh - 1 - info.padInfo.top;
  const left = kw - 1 - info.padInfo.left;
  const bottom = h - dyDil.shape[1] + info.padInfo.top;
  const right = w - dyDil.shape[2] + info.padInfo.left;
  const y = tf.conv2d(dyDil, flipFilter(filter), 1, [[0, 0], [Math.max(top, 0), Math.max(bottom, 0)], [Math.max(left, 0), Math.max(right, 0)], [0, 0]]);
  return cropSpatial(y, Math.max(-top, 0), Math.max(-left, 0), h, w);
}

function inputGradSubPixel(dy: tf.Tensor4D, filter: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const { batchSize: n, filterHeight: kh, filterWidth: kw, inHeight: h, inWidth: w, inChannels: ci, strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow } = info;
  const pt = info.padInfo.top;
  const pl = info.padInfo.left;
  // Padded coordinate i' = i + p = q*s + r; phase r collects dy[q-m] * w[r + m*s] over m.
  const qh = Math.floor((h - 1 + pt) / sh) + 1;
  const qw = Math.floor((w - 1 + pl) / sw) + 1;
  const phase = (rh: number, rw: number): tf.Tensor4D => {
    const mh = Math.ceil((kh - rh) / sh);
    const mw = Math.ceil((kw - rw) / sw);
    if (mh <= 0 || mw <= 0) return tf.zeros([n, qh, qw, ci]);
    const y = tf.conv2d(dy, flippedTaps(filter, range(rh, kh, sh), range(rw, kw, sw)), 1, [[0, 0], [mh - 1, Math.max(0, qh - oh)], [mw - 1, Math.max(0, qw - ow)], [0, 0]]);
    return cropSpatial(y, 0, 0, qh, qw);
  };
  const rows: tf.Tensor4D[] = [];
  for (let rh = 0; rh < sh; rh++) {
    const cols: tf.Tensor4D[] = [];
    for (let rw = 0; rw < sw; rw++) cols.push(phase(rh, rw));
    // [N,qh,qw,sw*Ci] -> [N,qh,qw*sw,Ci]: column q*sw + rw.
    rows.push(sw === 1 ? cols[0] : tf.reshape(tf.concat(cols, 3), [n, qh, qw * sw, ci]));
  }
  // [N,qh,sh*qw*sw,Ci] -> [N,qh*sh,qw*sw,Ci]: row q*sh + rh.
  const full = sh === 1 ? rows[0] : (tf.reshape(tf.concat(rows, 2), [n, qh * sh, qw * sw, ci]) as tf.Tensor4D);
  return cropSpatial(full, pt, pl, h, w);
}

/**
 * Gradient of conv2d(x, w, strides, pad) with respect to w [KH,KW,Ci,Co], as ONE forward
 * convolution with batch and channels swapped: x^T [Ci,H,W,N] correlated with dy^T [OH,OW,N,Co]
 * at dilation = stride gives [Ci,KH,KW,Co]. (dW[a,b,i,o] = sum_{n,y,x} xPad[n, y*s+a, x*s+b, i] dy[n,y,x,o].)
 */
export function conv2dFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: Shape4, strides: number | Pair, pad: ConvPadding, roundingMode?: "floor" | "round" | "ceil"): tf.Tensor4D {
  assertRank("conv2dFilterGrad", "x", x, 4);
  assertRank("conv2dFilterGrad", "dy", dy, 4);
  const info = conv2dInfo(x.shape, filterShape, strides, pad, roundingMode);
  if (dy.shape[0] !== x.shape[0] || dy.shape[1] !== info.outHeight || dy.shape[2] !== info.outWidth || dy.shape[3] !== info.outChannels) {
    throw new Error(`conv2dFilterGrad: dy shape [${dy.shape}] does not match conv output [${info.outShape}]`);
  }
  return tf.tidy(() => {
    const { filterHeight: kh, filterWidth: kw, inHeight: h, inWidth: w, strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow } = info;
    const xT = tf.transpose(x, [3, 1, 2, 0]) as tf.Tensor4D; // [Ci, H, W, N]
    const dyT = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D; // [OH, OW, N, Co]
    const top = info.padInfo.top;
    const left = info.padInfo.left;
    // Enough bottom/right padding that the correlation yields at least KH x KW outputs.
    const bottom = Math.max(0, kh + (oh - 1) * sh - h - top);
    const right = Math.max(0, kw + (ow - 1) * sw - w - left);
    // Rows/cols before the first window (negative explicit pads do not occur in tf convs).
    const g = tf.conv2d(xT, dyT, 1, [[0, 0], [top, bottom], [left, right], [0, 0]], "NHWC", [sh, sw]);
    const gk = cropSpatial(g, 0, 0, kh, kw); // [Ci, KH, KW, Co]
    return tf.transpose(gk, [1, 2, 0, 3]) as tf.Tensor4D;
  });
}

function conv2dWithFastGrads(x: tf.Tensor4D, filter: tf.Tensor4D, strides: Pair, pad: ConvPadding): tf.Tensor4D {
  return opWithLazyGrads(
    { x, filter },
    (save) => {
      save([x, filter]);
      return tf.conv2d(x, filter, strides, pad);
    },
    (dy, saved) => {
      const [sx, sw] = saved as tf.Tensor4D[];
      if (nativeKernelsActive()) {
        // sslkit-native's Winograd / im2col + BLAS kernels compute both gradients directly.
        const attrs = { strides, pad, dataFormat: "NHWC", dilations: 1 };
        return {
          x: () => tf.engine().runKernel("Conv2DBackpropInput", { dy, filter: sw }, { ...attrs, inputShape: sx.shape }) as tf.Tensor,
          filter: () => tf.engine().runKernel("Conv2DBackpropFilter", { x: sx, dy }, { ...attrs, filterShape: sw.shape }) as tf.Tensor,
        };
      }
      return {
        x: () => conv2dInputGrad(dy as tf.Tensor4D, sw, sx.shape, strides, pad),
        filter: () => conv2dFilterGrad(sx, dy as tf.Tensor4D, sw.shape, strides, pad),
      };
    },
  ) as tf.Tensor4D;
}

/**
 * 2-D convolution, NHWC input [N,H,W,Ci], HWIO filter [KH,KW,Ci,Co], dilation 1. Both gradients
 * are forward convolutions (see conv2dInputGrad / conv2dFilterGrad), fast on wasm.
 */
export function conv2d(x: tf.Tensor4D, w: tf.Tensor4D, stride: number | Pair, pad: ConvPadding): tf.Tensor4D {
  assertRank("conv2d", "x", x, 4);
  assertRank("conv2d", "filter", w, 4);
  if (x.shape[3] !== w.shape[2]) throw new Error(`conv2d: input channels ${x.shape[3]} != filter in-channels ${w.shape[2]} (x [${x.shape}], w [${w.shape}])`);
  return conv2dWithFastGrads(x, w, pair(stride), pad);
}

// ---------------------------------------------------------------------------------------------
// Activations and normalisations
// ---------------------------------------------------------------------------------------------

/** max(x, 0), with the gradient taken from the output (dy where y > 0): one kernel with sslkit-native, Step + Multiply otherwise. */
export function relu<T extends tf.Tensor>(x: T): T {
  return opWithLazyGrads(
    { x },
    (save) => {
      const y = tf.relu(x);
      save([y]);
      return y;
    },
    (dy, [y]) => ({ x: () => (nativeKernelsActive() ? (tf.engine().runKernel(RELU_GRAD, { dy, y }) as tf.Tensor[])[0] : tf.mul(dy, tf.step(y))) }),
  ) as T;
}

/**
 * x * scale + shift over x's last axis (scale, shift [C]): eval-mode BatchNorm. One multi-threaded
 * pass on sslkit-native (wasm's Mul and Add are two, on wasm's single thread beside it).
 */
export function channelAffine<T extends tf.Tensor>(x: T, scale: tf.Tensor1D, shift: tf.Tensor1D): T {
  if (!nativeKernelsActive()) return tf.add(tf.mul(x, scale), shift) as T;
  const c = scale.shape[0];
  return opWithLazyGrads(
    { x, scale, shift },
    (save) => {
      save([x, scale]);
      return (tf.engine().runKernel(CHANNEL_AFFINE, { x, scale, shift }) as tf.Tensor[])[0];
    },
    (dy, [sx, sScale]) => ({
      x: () => tf.mul(dy, sScale),
      scale: () => columnSums(tf.reshape(tf.mul(dy, sx), [-1, c]) as tf.Tensor2D),
      shift: () => columnSums(tf.reshape(dy, [-1, c]) as tf.Tensor2D),
    }),
  ) as T;
}

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * exp(u) for u <= 0. On wasm, as s / (1 - s) with s = sigmoid(u): XNNPACK's vectorised sigmoid
 * makes that 3x faster than wasm's scalar Exp loop (17 ms for 852k values), to float precision
 * (s is accurate in relative terms and 1 - s >= 1/2).
 */
function expNonPositive(u: tf.Tensor): tf.Tensor {
  if (tf.getBackend() !== "wasm") return tf.exp(u);
  const s = tf.sigmoid(u);
  return tf.div(s, tf.sub(1, s));
}

const geluErf = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
  // GELU(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))  (Hendrycks & Gimpel 2016; PyTorch nn.GELU()).
  const cdf = tf.mul(0.5, tf.add(1, tf.erf(tf.mul(x, SQRT1_2))));
  save([x, cdf]); // Phi(x) is kept for the gradient: erf is a slow scalar loop on wasm
  const value = tf.mul(x, cdf);
  const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
    const [sx, cdfS] = saved;
    // d/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi).
    const phi = tf.mul(INV_SQRT_2PI, expNonPositive(tf.mul(-0.5, tf.square(sx))));
    return [tf.mul(dy, tf.add(cdfS, tf.mul(sx, phi)))];
  };
  return { value, gradFunc };
}) as AnyCustomGradFn);

/** GELU, exact erf form (PyTorch's nn.GELU() default), float32. One kernel each way on sslkit-native, which saves only x. */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (!nativeKernelsActive() || x.dtype !== "float32") return geluErf(x);
  const engine = tf.engine();
  return opWithLazyGrads(
    { x },
    (save) => {
      save([x]);
      return (engine.runKernel(GELU, { x }) as tf.Tensor[])[0];
    },
    (dy, [sx]) => ({ x: () => (engine.runKernel(GELU_GRAD, { x: sx, dy }) as tf.Tensor[])[0] }),
  );
}

/**
 * softmax(scale x) over the last axis (attention folds its 1 / sqrt(d_head) in as `scale` > 0).
 * On sslkit-native one kernel each way, keeping only the output for the gradient
 * dx = scale y (dy - sum(dy y)); elsewhere tf.softmax (and a multiply when scale is not 1).
 */
export function softmaxLastAxis(x: tf.Tensor, scale = 1): tf.Tensor {
  if (!(scale > 0)) throw new Error(`softmaxLastAxis: scale must be > 0, got ${scale}`);
  if (!nativeKernelsActive() || x.dtype !== "float32" || x.rank < 1) return tf.softmax(scale === 1 ? x : tf.mul(x, scale));
  const engine = tf.engine();
  return opWithLazyGrads(
    { x },
    (save) => {
      const y = (engine.runKernel(SOFTMAX, { x }, { scale }) as tf.Tensor[])[0];
      save([y]);
      return y;
    },
    (dy, [y]) => ({ x: () => (engine.runKernel(SOFTMAX_GRAD, { y, dy }, { scale }) as tf.Tensor[])[0] }),
  );
}

/**
 * Training-mode batch normalisation of x [M, C] over rows as ONE op (Ioffe & Szegedy 2015, alg. 1):
 * xHat = (x - mu) / sqrt(var + eps), y = gamma * xHat + beta, with the batch mean and biased
 * variance. Its intermediates are freed inside the op (only xHat and 1/sqrt(var + eps) are kept for
 * the gradient), which halves a ResNet's activation memory against the op-by-op formula.
 * Backward (alg. 1's): dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xHat * mean(dy * xHat)),
 * dgamma = sum(dy * xHat), dbeta = sum(dy). Returns y and the batch statistics (for running
 * averages; they carry no gradient, and the caller must dispose them: they are kept out of tidy).
 */
export function batchNormTrain(x: tf.Tensor2D, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null, eps: number): { y: tf.Tensor2D; mean: tf.Tensor1D; variance: tf.Tensor1D } {
  assertRank("batchNormTrain", "x", x, 2);
  if (nativeKernelsActive()) return batchNormTrainNative(x, gamma, beta, eps);
  let mean: tf.Tensor1D | null = null;
  let variance: tf.Tensor1D | null = null;
  const inputs: Record<string, tf.Tensor> = gamma && beta ? { x, gamma, beta } : { x };
  const y = opWithLazyGrads(
    inputs,
    (save) => {
      const [value, xHat, invStd, mu, v] = tf.tidy(() => {
        const mu = columnMeans(x);
        const centered = tf.sub(x, mu);
        const v = columnMeans(tf.square(centered) as tf.Tensor2D);
        const invStd = tf.rsqrt(tf.add(v, eps));
        const xHat = tf.mul(centered, invStd);
        const value = gamma && beta ? tf.add(tf.mul(xHat, gamma), beta) : xHat;
        return [value, xHat, invStd, mu, v];
      });
      save(gamma ? [xHat, invStd, gamma] : [xHat, invStd]); // the engine keeps its own references
      if (xHat !== value) xHat.dispose();
      invStd.dispose();
      // The engine runs forward functions in a tidy: the statistics escape by tf.keep (the caller disposes them).
      mean = tf.keep(mu) as tf.Tensor1D;
      variance = tf.keep(v) as tf.Tensor1D;
      return value;
    },
    (dy, [xHat, invStd, g]) => {
      // Each gradient runs in its own engine tidy, so the column reductions are not shared (they are cheap).
      const dyXHat = () => tf.mul(dy, xHat) as tf.Tensor2D;
      return {
        x: () => {
          const scale = g ? tf.mul(g, invStd) : invStd;
          return tf.mul(tf.sub(tf.sub(dy, columnMeans(dy as tf.Tensor2D)), tf.mul(xHat, columnMeans(dyXHat()))), scale);
        },
        gamma: () => columnSums(dyXHat()),
        beta: () => columnSums(dy as tf.Tensor2D),
      };
    },
  ) as tf.Tensor2D;
  return { y, mean: mean as unknown as tf.Tensor1D, variance: variance as unknown as tf.Tensor1D };
}

/** batchNormTrain on sslkit-native's fused kernels: saves x and the statistics, recomputes xHat. */
function batchNormTrainNative(x: tf.Tensor2D, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null, eps: number): { y: tf.Tensor2D; mean: tf.Tensor1D; variance: tf.Tensor1D } {
  const engine = tf.engine();
  let stats: tf.Tensor[] = [];
  const inputs: Record<string, tf.Tensor> = gamma && beta ? { x, gamma, beta } : { x };
  const y = opWithLazyGrads(
    inputs,
    (save) => {
      const [value, mean, variance] = engine.runKernel(BATCH_NORM_FORWARD, inputs, { eps }) as tf.Tensor[];
      save(gamma ? [x, mean, variance, gamma] : [x, mean, variance]);
      stats = [tf.keep(mean), tf.keep(variance)]; // escape the engine's tidy; the caller disposes them
      return value;
    },
    (dy, [sx, mean, variance, g]) => {
      // The engine asks for each input's gradient in its own tidy, so each is its own kernel call.
      const grad = (want: "x" | "gamma" | "beta") => (engine.runKernel(BATCH_NORM_BACKWARD, { x: sx, dy, mean, variance, ...(g ? { gamma: g } : {}) }, { eps, want }) as tf.Tensor[])[0];
      return { x: () => grad("x"), gamma: () => grad("gamma"), beta: () => grad("beta") };
    },
  ) as tf.Tensor2D;
  return { y, mean: stats[0] as tf.Tensor1D, variance: stats[1] as tf.Tensor1D };
}

const layerNormCache = new Map<number, (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor>();

function layerNormLastAxis(eps: number): (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor {
  let f = layerNormCache.get(eps);
  if (f) return f;
  f = tf.customGrad(((x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, save: tf.GradSaveFunc) => {
    const axis = x.rank - 1;
    const mean = tf.mean(x, axis, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), axis, true);
    const invStd = tf.rsqrt(tf.add(variance, eps));
    const xHat = tf.mul(centered, invStd);
    save([xHat, invStd, gamma]);
    const value = tf.add(tf.mul(xHat, gamma), beta);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sxHat, sInvStd, sGamma] = saved;
      const ax = dy.rank - 1;
      // Sums over every leading axis, as column sums of [rows, D].
      const sumRows = (t: tf.Tensor) => (ax === 0 ? t : columnSums(tf.reshape(t, [-1, dy.shape[ax]]) as tf.Tensor2D));
      const dBeta = sumRows(dy);
      const dGamma = sumRows(tf.mul(dy, sxHat));
      // dx = invStd * (g - mean(g) - xHat * mean(g * xHat)), g = dy * gamma  (Ba et al. 2016).
      const g = tf.mul(dy, sGamma);
      const dx = tf.mul(sInvStd, tf.sub(tf.sub(g, tf.mean(g, ax, true)), tf.mul(sxHat, tf.mean(tf.mul(g, sxHat), ax, true))));
      return [dx, dGamma, dBeta];
    };
    return { value, gradFunc };
  }) as AnyCustomGradFn) as (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor;
  layerNormCache.set(eps, f);
  return f;
}

/**
 * Layer normalisation over the last axis: (x - mean) / sqrt(var + eps) * gamma + beta, biased
 * variance (PyTorch nn.LayerNorm). gamma and beta have shape [D].
 */
export function layerNormOp(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps = 1e-5): tf.Tensor {
  const d = x.shape[x.rank - 1];
  if (gamma.rank !== 1 || gamma.shape[0] !== d || beta.rank !== 1 || beta.shape[0] !== d) {
    throw new Error(`layerNormOp: gamma/beta must be [${d}] for x [${x.shape}], got [${gamma.shape}] and [${beta.shape}]`);
  }
  if (x.rank < 2) throw new Error(`layerNormOp: x must be at least rank 2, got [${x.shape}]`);
  if (nativeKernelsActive() && [x, gamma, beta].every((t) => t.dtype === "float32")) return layerNormNative(x, gamma, beta, eps);
  return layerNormLastAxis(eps)(x, gamma, beta);
}

/** layerNormOp on sslkit-native's kernels: saves x and each row's mean and 1 / std, recomputes xHat. */
function layerNormNative(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  const engine = tf.engine();
  return opWithLazyGrads(
    { x, gamma, beta },
    (save) => {
      const [y, mean, rstd] = engine.runKernel(LAYER_NORM_FORWARD, { x, gamma, beta }, { eps }) as tf.Tensor[];
      save([x, mean, rstd, gamma]);
      return y;
    },
    (dy, [sx, mean, rstd, g]) => {
      const grad = (want: "x" | "gamma" | "beta") => (engine.runKernel(LAYER_NORM_BACKWARD, { x: sx, dy, mean, rstd, gamma: g }, { want }) as tf.Tensor[])[0];
      return { x: () => grad("x"), gamma: () => grad("gamma"), beta: () => grad("beta") };
    },
  );
}

const l2NormalizeCache = new Map<string, (x: tf.Tensor) => tf.Tensor>();

/**
 * x / max(||x||_2, eps) along `axis` (PyTorch F.normalize). The gradient is
 * (g - y * <g, y>) / ||x|| where ||x|| > eps and g / eps elsewhere: finite for all-zero rows.
 */
export function l2Normalize(x: tf.Tensor, axis = -1, eps = 1e-12): tf.Tensor {
  const ax = axis < 0 ? x.rank + axis : axis;
  if (ax < 0 || ax >= x.rank) throw new Error(`l2Normalize: axis ${axis} out of range for rank ${x.rank}`);
  const key = `${ax}|${eps}`;
  let f = l2NormalizeCache.get(key);
  if (!f) {
    f = tf.customGrad(((t: tf.Tensor, save: tf.GradSaveFunc) => {
      const norm = tf.sqrt(tf.sum(tf.square(t), ax, true));
      const denom = tf.maximum(norm, eps);
      const value = tf.div(t, denom);
      save([value, norm, denom]);
      const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [y, n, den] = saved;
        const radial = tf.mul(y, tf.sum(tf.mul(dy, y), ax, true));
        const active = tf.cast(tf.greater(n, eps), "float32");
        return [tf.div(tf.sub(dy, tf.mul(radial, active)), den)];
      };
      return { value, gradFunc };
    }) as AnyCustomGradFn) as (x: tf.Tensor) => tf.Tensor;
    l2NormalizeCache.set(key, f);
  }
  return f(x);
}

// ---------------------------------------------------------------------------------------------
// Attention heads
// ---------------------------------------------------------------------------------------------

/** splitHeads by rank <= 4 reshapes and transposes (the path without sslkit-native). */
function splitHeadsTf(x: tf.Tensor3D, parts: number, heads: number): tf.Tensor3D[] {
  const [n, l, width] = x.shape;
  const dh = width / (parts * heads);
  // [N, L, parts*h, dh] -> [N, parts*h, L, dh] -> parts of [N*h, L, dh]
  const t = tf.transpose(tf.reshape(x, [n, l, parts * heads, dh]), [0, 2, 1, 3]);
  // (no 1-way tf.split: its gradient, a concat of one unwrapped tensor, throws)
  if (parts === 1) return [tf.reshape(t, [n * heads, l, dh]) as tf.Tensor3D];
  return tf.split(tf.reshape(t, [n, parts, heads * l * dh]), parts, 1).map((p) => tf.reshape(p, [n * heads, l, dh]) as tf.Tensor3D);
}

/** mergeHeads by rank <= 4 reshapes and transposes (the path without sslkit-native). */
function mergeHeadsTf(pieces: tf.Tensor3D[], n: number, heads: number): tf.Tensor3D {
  const [, l, dh] = pieces[0].shape;
  const perPart = pieces.map((p) => tf.transpose(tf.reshape(p, [n, heads, l, dh]), [0, 2, 1, 3])); // each [N, L, h, dh]
  const joined = perPart.length === 1 ? perPart[0] : tf.stack(perPart, 2); // [N, L, parts, h, dh]
  return tf.reshape(joined, [n, l, pieces.length * heads * dh]) as tf.Tensor3D;
}

/** An engine op (forward, lazy per-input gradients) with any number of outputs; null where the engine lacks runKernelFunc. */
function multiOutputOp(inputs: tf.NamedTensorMap, forward: () => tf.Tensor[], backward: (dys: tf.Tensor[]) => LazyGradFuncs): tf.Tensor[] | null {
  const engine = tf.engine() as unknown as Partial<EngineWithKernelFunc>;
  if (typeof engine.runKernelFunc !== "function") return null;
  const out = engine.runKernelFunc({ forwardFunc: () => forward(), backwardsFunc: (dy) => backward(Array.isArray(dy) ? dy : [dy]), inputs });
  return Array.isArray(out) ? out : [out];
}

const splitHeadsKernel = (x: tf.Tensor, parts: number, heads: number) =>
  tf.engine().runKernel(MOVE_HEADS, { x }, { n: x.shape[0], parts, heads, merge: false }) as unknown as tf.Tensor3D[];
const mergeHeadsKernel = (pieces: tf.Tensor[], n: number, heads: number) =>
  (tf.engine().runKernel(MOVE_HEADS, Object.fromEntries(pieces.map((p, i) => [`part${i}`, p])), { n, parts: pieces.length, heads, merge: true }) as tf.Tensor[])[0] as tf.Tensor3D;

/**
 * Tokens [N, L, parts * h * dh] (a fused projection, e.g. qkv with parts 3) to attention heads:
 * one [N * h, L, dh] tensor per part, ordered (image, head). On sslkit-native each way is one copy
 * (wasm's SplitV, on any axis, copies element by element).
 */
export function splitHeads(x: tf.Tensor3D, parts: number, heads: number): tf.Tensor3D[] {
  if (x.rank !== 3 || x.shape[2] % (parts * heads) !== 0) throw new Error(`splitHeads: x [${x.shape}] is not [N, L, ${parts} x ${heads} x dh]`);
  if (!nativeKernelsActive() || x.dtype !== "float32") return splitHeadsTf(x, parts, heads);
  const n = x.shape[0];
  const out = multiOutputOp({ x }, () => splitHeadsKernel(x, parts, heads), (dys) => ({ x: () => mergeHeadsKernel(dys, n, heads) }));
  return (out as tf.Tensor3D[] | null) ?? splitHeadsTf(x, parts, heads);
}

/** The inverse of splitHeads: one [N * h, L, dh] tensor per part back to tokens [N, L, parts * h * dh]. */
export function mergeHeads(pieces: tf.Tensor3D[], n: number, heads: number): tf.Tensor3D {
  const shape = pieces[0]?.shape;
  if (!shape || shape.length !== 3 || shape[0] !== n * heads || pieces.some((p) => p.shape.join() !== shape.join())) {
    throw new Error(`mergeHeads: expected parts of one shape [${n} x ${heads}, L, dh], got ${pieces.map((p) => `[${p.shape}]`).join(", ")}`);
  }
  if (!nativeKernelsActive() || pieces.some((p) => p.dtype !== "float32")) return mergeHeadsTf(pieces, n, heads);
  const inputs = Object.fromEntries(pieces.map((p, i) => [`part${i}`, p]));
  const out = multiOutputOp(
    inputs,
    () => [mergeHeadsKernel(pieces, n, heads)],
    // each part's gradient in the engine's own tidy (the other parts' copies are freed with it)
    ([dy]) => Object.fromEntries(pieces.map((_, i) => [`part${i}`, () => splitHeadsKernel(dy, pieces.length, heads)[i]])),
  );
  return (out?.[0] as tf.Tensor3D | undefined) ?? mergeHeadsTf(pieces, n, heads);
}

// ---------------------------------------------------------------------------------------------
// ViT / MAE plumbing
// ---------------------------------------------------------------------------------------------

/**
 * Images [N,H,W,C] -> patches [N, (H/p)(W/p), p*p*C], patches in row-major order and each patch
 * flattened as (row, col, channel) (MAE's patchify). Rank <= 4 ops only.
 */
export function patchify(x: tf.Tensor4D, p: number): tf.Tensor3D {
  assertRank("patchify", "x", x, 4);
  const [n, h, w, c] = x.shape;
  if (!Number.isInteger(p) || p < 1 || h % p !== 0 || w % p !== 0) throw new Error(`patchify: patch size ${p} must divide H=${h} and W=${w}`);
  const gh = h / p;
  const gw = w / p;
  return tf.tidy(() => {
    const rows = tf.reshape(x, [n * gh, p, gw, p * c]); // (n*gh+i, py, j, px*C+c)
    const t = tf.transpose(rows, [0, 2, 1, 3]); // (n*gh+i, j, py, px*C+c)
    return tf.reshape(t, [n, gh * gw, p * p * c]);
  });
}

/** Inverse of `patchify`: [N, L, p*p*C] -> [N, gh*p, gw*p, C]; gh x gw defaults to a square grid. */
export function unpatchify(patches: tf.Tensor3D, p: number, grid?: [number, number]): tf.Tensor4D {
  assertRank("unpatchify", "patches", patches, 3);
  const [n, l, d] = patches.shape;
  const side = Math.round(Math.sqrt(l));
  const [gh, gw] = grid ?? [side, side];
  if (gh * gw !== l) throw new Error(`unpatchify: ${l} patches do not form a ${gh}x${gw} grid`);
  if (d % (p * p) !== 0) throw new Error(`unpatchify: patch dim ${d} is not a multiple of p*p=${p * p}`);
  const c = d / (p * p);
  return tf.tidy(() => {
    const t = tf.reshape(patches, [n * gh, gw, p, p * c]);
    const rows = tf.transpose(t, [0, 2, 1, 3]);
    return tf.reshape(rows, [n, gh * p, gw * p, c]);
  });
}

/** Flat row indices as an int32 tensor [N*K]: idx[n,k] + n*L (`perImage`, rows of [N*L, D]) or idx[n,k] (rows of one [L, D] table). */
function flatRowIndices(owner: string, idx: tf.Tensor2D | Int32Array, n: number, l: number, perImage: boolean): tf.Tensor1D {
  if (idx instanceof tf.Tensor) {
    if (idx.rank !== 2 || idx.shape[0] !== n) throw new Error(`${owner}: idx must be [${n}, K], got [${idx.shape}]`);
    if (idx.dtype !== "int32") throw new Error(`${owner}: idx must be int32, got ${idx.dtype}`);
    const k = idx.shape[1];
    if (!perImage) return tf.reshape(idx, [n * k]);
    return tf.tidy(() => tf.reshape(tf.add(idx, tf.reshape(tf.mul(tf.range(0, n, 1, "int32"), tf.scalar(l, "int32")), [n, 1])), [n * k]) as tf.Tensor1D);
  }
  if (idx.length % n !== 0) throw new Error(`${owner}: ${idx.length} indices are not N=${n} rows`);
  const k = idx.length / n;
  const flat = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    const v = idx[i];
    if (!(v >= 0 && v < l)) throw new Error(`${owner}: index ${v} at ${i} outside [0, ${l})`);
    flat[i] = perImage ? v + Math.floor(i / k) * l : v;
  }
  return tf.tensor1d(flat, "int32");
}

/**
 * Batched row gather: x [N,L,D], idx [N,K] (int32 tensor, or an Int32Array of N*K values) ->
 * [N,K,D] with out[n,k] = x[n, idx[n,k]]. One flat gather over [N*L, D]; its gradient is an
 * UnsortedSegmentSum (registered on wasm by backend/wasm-kernels).
 */
export function takeRows(x: tf.Tensor3D, idx: tf.Tensor2D | Int32Array): tf.Tensor3D {
  assertRank("takeRows", "x", x, 3);
  const [n, l, d] = x.shape;
  return tf.tidy(() => {
    const flat = flatRowIndices("takeRows", idx, n, l, true);
    const rows = tf.gather(tf.reshape(x, [n * l, d]), flat);
    return tf.reshape(rows, [n, flat.shape[0] / n, d]);
  });
}

/**
 * Rows of one table shared by N images: table [L,D], idx [N,K] (int32 tensor, or an Int32Array of
 * N*K values) -> [N,K,D] with out[n,k] = table[idx[n,k]] (e.g. the position embeddings of each
 * image's kept patches). Its gradient sums into the table's rows (UnsortedSegmentSum).
 */
export function takeTableRows(table: tf.Tensor2D, idx: tf.Tensor2D | Int32Array, n: number): tf.Tensor3D {
  assertRank("takeTableRows", "table", table, 2);
  const [l, d] = table.shape;
  return tf.tidy(() => {
    const flat = flatRowIndices("takeTableRows", idx, n, l, false);
    return tf.reshape(tf.gather(table, flat), [n, flat.shape[0] / n, d]);
  });
}

/** Same result as `takeRows`, as a one-hot [N,K,L] x [N,L,D] batched matMul (kept for benchmarks). */
export function takeRowsOneHot(x: tf.Tensor3D, idx: tf.Tensor2D): tf.Tensor3D {
  assertRank("takeRowsOneHot", "x", x, 3);
  const l = x.shape[1];
  return tf.tidy(() => matMul(tf.oneHot(idx, l, 1, 0, "float32") as tf.Tensor3D, x) as tf.Tensor3D);
}
