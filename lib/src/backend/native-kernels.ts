/**
 * Optional native kernels for the wasm backend (package `sslkit-native`, built at install time
 * against OpenBLAS where a compiler and libopenblas are present). They replace wasm's matrix
 * products and convolutions, reading and writing tensors in place on the wasm heap:
 *   BatchMatMul, _FusedMatMul (linear activation), Conv2D, Conv2DBackpropFilter, Conv2DBackpropInput,
 *   and (on large same-shape float32 tensors, multi-threaded where wasm's pool has one thread) Add, Relu,
 * and adds a fused training-mode batch norm and its gradient (two passes over the data each,
 * where the op-by-op formula took ~10 element-wise kernels), a one-pass ReLU gradient, and the
 * transformer's kernels: exact GELU and its gradient (wasm's Erf is a slow scalar loop), layer
 * norm and its gradient, the attention heads moved out of and back into the tokens in one
 * copy (wasm's SplitV of a non-leading axis copies element by element), and the attention
 * softmax with its scale folded in, and its gradient, one kernel each (wasm's Exp is scalar).
 * Measured on 2 cores: OpenBLAS sgemm 1024^3 runs at ~100 GFLOP/s against XNNPACK-in-wasm's ~31, and
 * transposed operands cost nothing (BLAS flags), so gradients need no explicit transposes.
 * Anything a native kernel does not cover (another dtype, a dilation, NCHW, a fused activation)
 * runs wasm's own kernel. SSLKIT_NATIVE=0 turns them off. 3x3 stride-1 convolutions use Winograd
 * F(4x4, 3x3) (F(2x2, 3x3) on maps under 8x8); SSLKIT_WINOGRAD=2 or 0 (im2col) picks another.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { debuglog } from "node:util";
// Types only (erased at run time): the addon is loaded lazily and may be absent.
import type { ConvShapeArgs, NativeKernels } from "sslkit-native";

const debug = debuglog("sslkit");


type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };
type KernelFunc = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];
type Shape4 = [number, number, number, number];

let loaded: { kernels: NativeKernels | null; why: string } | undefined;

/** The compiled addon, or null with the reason (not installed, not built, turned off). */
export function loadNativeKernels(): { kernels: NativeKernels | null; why: string } {
  if (loaded) return loaded;
  if (process.env.SSLKIT_NATIVE === "0") return (loaded = { kernels: null, why: "SSLKIT_NATIVE=0" });
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pkg = require("sslkit-native") as { binding: NativeKernels | null; error: string | null };
    loaded = pkg.binding ? { kernels: pkg.binding, why: "" } : { kernels: null, why: `sslkit-native is not built (${pkg.error}); run \`npm rebuild sslkit-native\` after installing g++ and libopenblas-dev` };
  } catch (error) {
    loaded = { kernels: null, why: `sslkit-native is not installed (${error instanceof Error ? error.message.split("\n")[0] : String(error)})` };
  }
  return loaded;
}

/** Marks the kernel functions registered here, so that other registrations leave them alone. */
const NATIVE_MARK = Symbol.for("sslkit.nativeKernel");
type MarkedKernelFunc = tf.KernelFunc & { [NATIVE_MARK]?: true };

export function isNativeKernelFunc(f: unknown): boolean {
  return typeof f === "function" && (f as MarkedKernelFunc)[NATIVE_MARK] === true;
}

/** Whether the native kernels serve the current backend (wasm, with sslkit-native registered). */
export function nativeKernelsActive(): boolean {
  return tf.getBackend() === "wasm" && isNativeKernelFunc(tf.getKernel("Conv2DBackpropInput", "wasm")?.kernelFunc);
}

function view(backend: BackendWasm, info: tf.TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(info) as Float32Array;
}

const product = (dims: readonly number[]) => dims.reduce((p, d) => p * d, 1);

/**
 * op(a) op(b) (+ bias) for rank >= 2 float32 operands with equal or broadcast (size-1) batches;
 * null when the native kernel does not cover the case.
 */
function nativeMatMul(native: NativeKernels, args: KernelArgs, fused: boolean): tf.TensorInfo | null {
  const backend = args.backend as BackendWasm;
  const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
  const attrs = args.attrs ?? {};
  if (!a || !b || a.dtype !== "float32" || b.dtype !== "float32" || a.shape.length < 2 || b.shape.length < 2) return null;
  if (fused && (preluActivationWeights != null || (attrs.activation != null && attrs.activation !== "linear"))) return null;
  const ta = Boolean(attrs.transposeA);
  const tb = Boolean(attrs.transposeB);
  const [ar, br] = [a.shape.length, b.shape.length];
  const m = ta ? a.shape[ar - 1] : a.shape[ar - 2];
  const k = ta ? a.shape[ar - 2] : a.shape[ar - 1];
  const kb = tb ? b.shape[br - 1] : b.shape[br - 2];
  const n = tb ? b.shape[br - 2] : b.shape[br - 1];
  if (k !== kb) return null; // let the wasm kernel raise tf's own error
  if (bias != null && (bias.dtype !== "float32" || product(bias.shape) !== n)) return null;
  const batchShape = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = product(batchShape);
  const batchA = product(a.shape.slice(0, -2));
  const batchB = product(b.shape.slice(0, -2));
  // Each operand either spans the whole output batch (then its batch axes equal the output's, in
  // the same order) or is one matrix shared by all; a [3,1] x [1,3] outer broadcast is neither.
  if ((batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1)) return null;
  const out = backend.makeOutput([...batchShape, m, n], "float32");
  if (batch * m * n === 0) return out;
  native.gemm(view(backend, a), view(backend, b), view(backend, out), bias ? view(backend, bias) : null, ta, tb, batch, m, n, k, batchA === 1 ? 0 : m * k, batchB === 1 ? 0 : k * n);
  return out;
}

function convInfo(xShape: Shape4, filterShape: Shape4, attrs: tf.NamedAttrMap): tf.backend_util.Conv2DInfo | null {
  const format = attrs.dataFormat;
  if (format != null && format !== "NHWC" && format !== "channelsLast") return null;
  const d = attrs.dilations;
  if (d != null && (typeof d === "number" ? d !== 1 : (d as number[]).some((v) => v !== 1))) return null;
  return tf.backend_util.computeConv2DInfo(xShape, filterShape, attrs.strides as number | [number, number], 1, attrs.pad as "same", attrs.dimRoundingMode as "floor" | undefined, false, "channelsLast");
}

const shapeArgs = (c: tf.backend_util.Conv2DInfo): ConvShapeArgs => [
  c.batchSize, c.inHeight, c.inWidth, c.inChannels, c.filterHeight, c.filterWidth, c.outChannels, c.strideHeight, c.strideWidth, c.padInfo.top, c.padInfo.left, c.outHeight, c.outWidth,
];

function nativeConv2d(native: NativeKernels, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo | null {
  const { x, filter } = inputs as Record<string, tf.TensorInfo>;
  if (x?.dtype !== "float32" || filter?.dtype !== "float32" || x.shape.length !== 4 || filter.shape.length !== 4) return null;
  const c = convInfo(x.shape as Shape4, filter.shape as Shape4, attrs ?? {});
  if (!c || c.inChannels !== filter.shape[2]) return null;
  const wasm = backend as BackendWasm;
  const out = wasm.makeOutput(c.outShape, "float32");
  if (product(c.outShape) > 0) native.conv2d(view(wasm, x), view(wasm, filter), view(wasm, out), ...shapeArgs(c));
  return out;
}

function nativeConv2dFilterGrad(native: NativeKernels, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo | null {
  const { x, dy } = inputs as Record<string, tf.TensorInfo>;
  const a = attrs ?? {};
  if (x?.dtype !== "float32" || dy?.dtype !== "float32" || x.shape.length !== 4) return null;
  const c = convInfo(x.shape as Shape4, a.filterShape as Shape4, a);
  if (!c || dy.shape.join() !== c.outShape.join()) return null;
  const wasm = backend as BackendWasm;
  const out = wasm.makeOutput(a.filterShape as number[], "float32");
  native.conv2dFilterGrad(view(wasm, x), view(wasm, dy), view(wasm, out), ...shapeArgs(c));
  return out;
}

function nativeConv2dInputGrad(native: NativeKernels, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo | null {
  const { dy, filter } = inputs as Record<string, tf.TensorInfo>;
  const a = attrs ?? {};
  if (dy?.dtype !== "float32" || filter?.dtype !== "float32" || filter.shape.length !== 4) return null;
  const c = convInfo(a.inputShape as Shape4, filter.shape as Shape4, a);
  if (!c || dy.shape.join() !== c.outShape.join()) return null;
  const wasm = backend as BackendWasm;
  const out = wasm.makeOutput(a.inputShape as number[], "float32");
  native.conv2dInputGrad(view(wasm, dy), view(wasm, filter), view(wasm, out), ...shapeArgs(c));
  return out;
}

/** Training-mode batch norm of x [M, C] over its rows: outputs y, mean and (biased) variance. */
function nativeBatchNormForward(native: NativeKernels, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const { x, gamma, beta } = inputs as Record<string, tf.TensorInfo | undefined>;
  if (!x || x.shape.length !== 2 || x.dtype !== "float32") throw new Error(`${BATCH_NORM_FORWARD}: x must be a float32 [M, C] tensor`);
  const [m, c] = x.shape;
  const wasm = backend as BackendWasm;
  const y = wasm.makeOutput([m, c], "float32");
  const mean = wasm.makeOutput([c], "float32");
  const variance = wasm.makeOutput([c], "float32");
  native.batchNormForward(view(wasm, x), gamma ? view(wasm, gamma) : null, beta ? view(wasm, beta) : null, view(wasm, y), view(wasm, mean), view(wasm, variance), m, c, (attrs?.eps as number) ?? 1e-5);
  return [y, mean, variance];
}

/** Its gradient with respect to attrs.want: "x" -> [dx], "gamma" -> [dgamma], "beta" -> [dbeta] (a pass over dy alone). */
function nativeBatchNormBackward(native: NativeKernels, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const { x, dy, mean, variance, gamma } = inputs as Record<string, tf.TensorInfo | undefined>;
  if (!x || !dy || !mean || !variance || x.shape.length !== 2 || dy.shape.join() !== x.shape.join()) throw new Error(`${BATCH_NORM_BACKWARD}: needs x and dy [M, C], mean and variance [C]`);
  const want = attrs?.want;
  if (want !== "x" && want !== "gamma" && want !== "beta") throw new Error(`${BATCH_NORM_BACKWARD}: attrs.want must be "x", "gamma" or "beta", got ${String(want)}`);
  const [m, c] = x.shape;
  const wasm = backend as BackendWasm;
  const out = wasm.makeOutput(want === "x" ? [m, c] : [c], "float32");
  const o = view(wasm, out);
  native.batchNormBackward(view(wasm, x), view(wasm, dy), view(wasm, mean), view(wasm, variance), gamma ? view(wasm, gamma) : null, want === "x" ? o : null, want === "gamma" ? o : null, want === "beta" ? o : null, m, c, (attrs?.eps as number) ?? 1e-5);
  return [out];
}

/** ReLU's gradient from its output: dy where y > 0 (one pass; tf's is Step, Cast and Multiply). */
function nativeReluGrad(native: NativeKernels, { inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const { dy, y } = inputs as Record<string, tf.TensorInfo | undefined>;
  if (!dy || !y || dy.dtype !== "float32" || dy.shape.join() !== y.shape.join()) throw new Error(`${RELU_GRAD}: needs float32 dy and y of one shape`);
  const wasm = backend as BackendWasm;
  const dx = wasm.makeOutput(dy.shape, "float32");
  native.reluGrad(view(wasm, dy), view(wasm, y), view(wasm, dx), product(dy.shape));
  return [dx];
}

/** Below this many values an element-wise kernel stays on wasm (the call costs more than the pass). */
const MIN_NATIVE_ELEMENTWISE = 65536;

/** Add of two float32 tensors of one shape (the residual sums and the engine's gradient sums); else null. */
function nativeAdd(native: NativeKernels, { inputs, backend }: KernelArgs): tf.TensorInfo | null {
  const { a, b } = inputs as Record<string, tf.TensorInfo | undefined>;
  if (a?.dtype !== "float32" || b?.dtype !== "float32" || a.shape.join() !== b.shape.join() || product(a.shape) < MIN_NATIVE_ELEMENTWISE) return null;
  const wasm = backend as BackendWasm;
  const y = wasm.makeOutput(a.shape, "float32");
  native.add(view(wasm, a), view(wasm, b), view(wasm, y), product(a.shape));
  return y;
}

function nativeRelu(native: NativeKernels, { inputs, backend }: KernelArgs): tf.TensorInfo | null {
  const { x } = inputs as Record<string, tf.TensorInfo | undefined>;
  if (x?.dtype !== "float32" || product(x.shape) < MIN_NATIVE_ELEMENTWISE) return null;
  const wasm = backend as BackendWasm;
  const y = wasm.makeOutput(x.shape, "float32");
  native.relu(view(wasm, x), view(wasm, y), product(x.shape));
  return y;
}

/** x * scale + shift over x's last axis (scale, shift [C]): eval-mode BatchNorm in one pass. */
function nativeChannelAffine(native: NativeKernels, { inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const { x, scale, shift } = inputs as Record<string, tf.TensorInfo | undefined>;
  const c = x?.shape[x.shape.length - 1];
  if (!x || !scale || !shift || x.dtype !== "float32" || scale.shape.join() !== `${c}` || shift.shape.join() !== `${c}`) {
    throw new Error(`${CHANNEL_AFFINE}: needs float32 x [..., C] and scale, shift [C]`);
  }
  const wasm = backend as BackendWasm;
  const y = wasm.makeOutput(x.shape, "float32");
  native.channelAffine(view(wasm, x), view(wasm, scale), view(wasm, shift), view(wasm, y), product(x.shape) / (c as number), c as number);
  return [y];
}

/** Exact GELU, y = x Phi(x), over a float32 tensor of any shape. */
function nativeGelu(native: NativeKernels, { inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const { x } = inputs as Record<string, tf.TensorInfo | undefined>;
  if (x?.dtype !== "float32") throw new Error(`${GELU}: needs a float32 x`);
  const wasm = backend as BackendWasm;
  const y = wasm.makeOutput(x.shape, "float32");
  native.gelu(view(wasm, x), view(wasm, y), product(x.shape));
  return [y];
}

/** GELU's gradient from its input: dy (Phi(x) + x phi(x)), one pass. */
function nativeGeluGrad(native: NativeKernels, { inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const { x, dy } = inputs as Record<string, tf.TensorInfo | undefined>;
  if (!x || !dy || x.dtype !== "float32" || dy.dtype !== "float32" || x.shape.join() !== dy.shape.join()) throw new Error(`${GELU_GRAD}: needs float32 x and dy of one shape`);
  const wasm = backend as BackendWasm;
  const dx = wasm.makeOutput(x.shape, "float32");
  native.geluGrad(view(wasm, x), view(wasm, dy), view(wasm, dx), product(x.shape));
  return [dx];
}

/** Layer norm over the last axis of x [..., D]: outputs y, and each row's mean and 1 / sqrt(var + eps) [rows]. */
function nativeLayerNormForward(native: NativeKernels, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const { x, gamma, beta } = inputs as Record<string, tf.TensorInfo | undefined>;
  const d = x?.shape[x.shape.length - 1] ?? 0;
  if (!x || !gamma || !beta || x.dtype !== "float32" || x.shape.length < 2 || gamma.shape.join() !== `${d}` || beta.shape.join() !== `${d}`) {
    throw new Error(`${LAYER_NORM_FORWARD}: needs float32 x [..., D] and gamma, beta [D]`);
  }
  const m = product(x.shape) / d;
  const wasm = backend as BackendWasm;
  const y = wasm.makeOutput(x.shape, "float32");
  const mean = wasm.makeOutput([m], "float32");
  const rstd = wasm.makeOutput([m], "float32");
  if (m > 0) native.layerNormForward(view(wasm, x), view(wasm, gamma), view(wasm, beta), view(wasm, y), view(wasm, mean), view(wasm, rstd), m, d, (attrs?.eps as number) ?? 1e-5);
  return [y, mean, rstd];
}

/** Its gradient with respect to attrs.want: "x" -> [dx], "gamma" -> [dgamma], "beta" -> [dbeta]. */
function nativeLayerNormBackward(native: NativeKernels, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const { x, dy, mean, rstd, gamma } = inputs as Record<string, tf.TensorInfo | undefined>;
  if (!x || !dy || !mean || !rstd || !gamma || dy.shape.join() !== x.shape.join()) throw new Error(`${LAYER_NORM_BACKWARD}: needs x and dy [..., D], mean and rstd [rows], gamma [D]`);
  const want = attrs?.want;
  if (want !== "x" && want !== "gamma" && want !== "beta") throw new Error(`${LAYER_NORM_BACKWARD}: attrs.want must be "x", "gamma" or "beta", got ${String(want)}`);
  const d = x.shape[x.shape.length - 1];
  const m = product(x.shape) / d;
  const wasm = backend as BackendWasm;
  const out = wasm.makeOutput(want === "x" ? x.shape : [d], "float32");
  const o = view(wasm, out);
  if (m === 0) o.fill(0);
  else native.layerNormBackward(view(wasm, x), view(wasm, dy), view(wasm, mean), view(wasm, rstd), view(wasm, gamma), want === "x" ? o : null, want === "gamma" ? o : null, want === "beta" ? o : null, m, d);
  return [out];
}

/**
 * Attention heads out of tokens and back (attrs n, parts, heads). Split: inputs {x} tokens
 * [N, L, parts * h * dh] -> one output per part, heads [N * h, L, dh] ordered (image, head). Merge:
 * inputs {part0, part1, ...} of heads -> tokens.
 */
function nativeMoveHeads(native: NativeKernels, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const { n, parts, heads, merge } = (attrs ?? {}) as { n: number; parts: number; heads: number; merge: boolean };
  const wasm = backend as BackendWasm;
  const map = inputs as Record<string, tf.TensorInfo | undefined>;
  if (merge) {
    const pieces = Array.from({ length: parts }, (_, p) => map[`part${p}`]);
    const first = pieces[0];
    if (!first || first.shape.length !== 3 || first.shape[0] !== n * heads || pieces.some((t) => t?.dtype !== "float32" || t.shape.join() !== first.shape.join())) {
      throw new Error(`${MOVE_HEADS}: merge needs ${parts} float32 parts [${n * heads}, L, dh] of one shape`);
    }
    const [, l, dh] = first.shape;
    const out = wasm.makeOutput([n, l, parts * heads * dh], "float32");
    if (n * l * dh > 0) pieces.forEach((t, p) => native.moveHeads(view(wasm, out), view(wasm, t!), n, l, parts, p, heads, dh, 1));
    return [out];
  }
  const x = map.x;
  if (!x || x.dtype !== "float32" || x.shape.length !== 3 || x.shape[0] !== n || x.shape[2] % (parts * heads) !== 0) throw new Error(`${MOVE_HEADS}: split needs float32 tokens [${n}, L, ${parts} x ${heads} x dh]`);
  const [, l, width] = x.shape;
  const dh = width / (parts * heads);
  return Array.from({ length: parts }, (_, p) => {
    const out = wasm.makeOutput([n * heads, l, dh], "float32");
    if (n * l * dh > 0) native.moveHeads(view(wasm, x), view(wasm, out), n, l, parts, p, heads, dh, 0);
    return out;
  });
}

/** softmax(scale x) over the last axis of a float32 x (attrs.scale > 0, default 1). */
function nativeSoftmax(native: NativeKernels, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const { x } = inputs as Record<string, tf.TensorInfo | undefined>;
  const scale = (attrs?.scale as number | undefined) ?? 1;
  if (x?.dtype !== "float32" || x.shape.length < 1 || !(scale > 0)) throw new Error(`${SOFTMAX}: needs a float32 x [..., D] and attrs.scale > 0`);
  const d = x.shape[x.shape.length - 1];
  const wasm = backend as BackendWasm;
  const y = wasm.makeOutput(x.shape, "float32");
  if (product(x.shape) > 0) native.softmax(view(wasm, x), view(wasm, y), product(x.shape) / d, d, scale);
  return [y];
}

/** Its gradient from its output y: dx = scale y (dy - sum(dy y)) over the last axis. */
function nativeSoftmaxGrad(native: NativeKernels, { inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const { y, dy } = inputs as Record<string, tf.TensorInfo | undefined>;
  if (!y || !dy || y.dtype !== "float32" || dy.dtype !== "float32" || y.shape.length < 1 || y.shape.join() !== dy.shape.join()) throw new Error(`${SOFTMAX_GRAD}: needs float32 y and dy of one shape`);
  const d = y.shape[y.shape.length - 1];
  const wasm = backend as BackendWasm;
  const dx = wasm.makeOutput(y.shape, "float32");
  if (product(y.shape) > 0) native.softmaxGrad(view(wasm, y), view(wasm, dy), view(wasm, dx), product(y.shape) / d, d, (attrs?.scale as number | undefined) ?? 1);
  return [dx];
}

/** Kernels only sslkit-native provides (run through tf.engine().runKernel by nn/fast-ops). */
export const BATCH_NORM_FORWARD = "SslkitBatchNormForward";
export const BATCH_NORM_BACKWARD = "SslkitBatchNormBackward";
export const RELU_GRAD = "SslkitReluGrad";
export const CHANNEL_AFFINE = "SslkitChannelAffine";
export const GELU = "SslkitGelu";
export const GELU_GRAD = "SslkitGeluGrad";
export const LAYER_NORM_FORWARD = "SslkitLayerNormForward";
export const LAYER_NORM_BACKWARD = "SslkitLayerNormBackward";
export const MOVE_HEADS = "SslkitMoveHeads";
export const SOFTMAX = "SslkitSoftmax";
export const SOFTMAX_GRAD = "SslkitSoftmaxGrad";
const NATIVE_ONLY_KERNELS: ReadonlyArray<[string, (native: NativeKernels, args: KernelArgs) => tf.TensorInfo[]]> = [
  [BATCH_NORM_FORWARD, nativeBatchNormForward],
  [BATCH_NORM_BACKWARD, nativeBatchNormBackward],
  [RELU_GRAD, nativeReluGrad],
  [CHANNEL_AFFINE, nativeChannelAffine],
  [GELU, nativeGelu],
  [GELU_GRAD, nativeGeluGrad],
  [LAYER_NORM_FORWARD, nativeLayerNormForward],
  [LAYER_NORM_BACKWARD, nativeLayerNormBackward],
  [MOVE_HEADS, nativeMoveHeads],
  [SOFTMAX, nativeSoftmax],
  [SOFTMAX_GRAD, nativeSoftmaxGrad],
];

const NATIVE_KERNELS: ReadonlyArray<[string, (native: NativeKernels, args: KernelArgs) => tf.TensorInfo | null]> = [
  ["BatchMatMul", (native, args) => nativeMatMul(native, args, false)],
  ["_FusedMatMul", (native, args) => nativeMatMul(native, args, true)],
  ["Conv2D", nativeConv2d],
  ["Conv2DBackpropFilter", nativeConv2dFilterGrad],
  ["Conv2DBackpropInput", nativeConv2dInputGrad],
  ["Add", nativeAdd],
  ["Relu", nativeRelu],
];

/** Kernel names the native path replaces on wasm. */
export const nativeKernelNames: readonly string[] = NATIVE_KERNELS.map(([name]) => name);

/**
 * Registers the native kernels on 'wasm' over whatever is registered there now (wasm's own, or
 * sslkit's training kernels), which stays the fallback. Returns the BLAS in use, or null (with
 * the reason logged under NODE_DEBUG=sslkit) when the addon is unavailable.
 */
export function registerNativeKernels(threads: number, winogradTile: 0 | 2 | 4 = 4): string | null {
  const { kernels: native, why } = loadNativeKernels();
  if (!native) {
    debug("native kernels off: %s", why);
    return null;
  }
  native.setThreads(Math.max(1, threads));
  native.setWinograd(winogradTile);
  for (const [kernelName, run] of NATIVE_KERNELS) {
    const fallback = tf.getKernel(kernelName, "wasm");
    if (!fallback) throw new Error(`sslkit: no wasm kernel '${kernelName}' to fall back on (tfjs-backend-wasm changed?)`);
    if (isNativeKernelFunc(fallback.kernelFunc)) continue;
    const kernelFunc = ((args: KernelArgs) => run(native, args) ?? (fallback.kernelFunc as unknown as KernelFunc)(args)) as unknown as MarkedKernelFunc;
    kernelFunc[NATIVE_MARK] = true;
    fallbacks.set(kernelName, fallback);
    tf.unregisterKernel(kernelName, "wasm");
    tf.registerKernel({ kernelName, backendName: "wasm", kernelFunc });
  }
  for (const [kernelName, run] of NATIVE_ONLY_KERNELS) {
    if (tf.getKernel(kernelName, "wasm")) continue;
    const kernelFunc = ((args: KernelArgs) => run(native, args)) as unknown as MarkedKernelFunc;
    kernelFunc[NATIVE_MARK] = true;
    tf.registerKernel({ kernelName, backendName: "wasm", kernelFunc });
  }
  return blasName(native);
}

/** SSLKIT_WINOGRAD: the Winograd tile for 3x3 stride-1 convolutions, 4 (default), 2, or 0 (im2col). */
export function requestedWinogradTile(): 0 | 2 | 4 {
  const raw = process.env.SSLKIT_WINOGRAD?.trim();
  if (raw === undefined || raw === "") return 4;
  if (raw !== "0" && raw !== "2" && raw !== "4") throw new Error(`sslkit: SSLKIT_WINOGRAD must be 0, 2 or 4 (the Winograd tile; 0 = im2col), got "${raw}"`);
  return Number(raw) as 0 | 2 | 4;
}

/** The BLAS behind the addon, as BackendInfo.native names it: "OpenBLAS 0.3.21". */
export function blasName(native: NativeKernels): string {
  return native.info().blas.split(" ").slice(0, 2).join(" ");
}

const fallbacks = new Map<string, tf.KernelConfig>();

/** Puts back the kernels the native ones replaced (tests and A/B benchmarks). */
export function unregisterNativeKernels(): void {
  for (const [kernelName, fallback] of fallbacks) {
    if (!isNativeKernelFunc(tf.getKernel(kernelName, "wasm")?.kernelFunc)) continue;
    tf.unregisterKernel(kernelName, "wasm");
    tf.registerKernel(fallback);
  }
  fallbacks.clear();
  for (const [kernelName] of NATIVE_ONLY_KERNELS) if (tf.getKernel(kernelName, "wasm")) tf.unregisterKernel(kernelName, "wasm");
}
