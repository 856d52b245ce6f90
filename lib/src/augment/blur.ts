/**
 * Gaussian blur with a per-sample sigma (SimCLR / MoCo v2 / BYOL / DINO: sigma ~ U[0.1, 2.0]).
 * Kernel: torchvision's _get_gaussian_kernel1d, taps at -r..r, exp(-x^2 / (2 sigma^2)) normalised
 * to sum 1, applied separably (rows then columns) with reflect padding (torchvision's padding mode).
 * Default size follows SimCLR's code: kernel_size = side // 10, r = kernel_size // 2 (23 taps at
 * 224, 9 at 96), but at least 3 taps so 28-32 px images are blurred too.
 *
 * Batched as ONE depthwise convolution: the batch is moved into the channel axis
 * ([N,H,W,C] -> [1,H,W,N*C]) so each sample's channels get their own kernel; measured ~5x faster
 * on wasm than per-sample [H,H]/[W,W] blur matrices in a batched matMul. The matrix form
 * (`blurImagesMatMul`, reflect padding folded into the matrices) is the fallback for backends
 * without DepthwiseConv2dNative / MirrorPad.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random";
import { applyToGroups, assertImageBatch, assertProbability, backendHasKernel, perSampleValues } from "./batch";

export interface GaussianBlurOptions {
  /** Probability that a sample is blurred; default 0.5 (SimCLR, MoCo v2, DINO local crops). */
  p?: number;
  /** Range of sigma in pixels, sampled uniformly per sample; default [0.1, 2.0]. */
  sigma?: [number, number];
  /** Odd number of taps; default `blurKernelSizeFor(min(H, W))`. */
  kernelSize?: number;
}

/** SimCLR's kernel size for an image side (10% of the side, odd), at least 3 and at most 2*side-1. */
export function blurKernelSizeFor(side: number): number {
  if (!(Number.isInteger(side) && side >= 1)) throw new Error(`blurKernelSizeFor: side must be a positive integer, got ${side}`);
  const radius = Math.min(side - 1, Math.max(1, Math.floor(Math.floor(side / 10) / 2)));
  return 2 * radius + 1;
}

/** Normalised 1-D gaussian taps at -r..r (torchvision _get_gaussian_kernel1d). */
export function gaussianKernel1d(kernelSize: number, sigma: number): Float64Array {
  if (!(Number.isInteger(kernelSize) && kernelSize >= 1 && kernelSize % 2 === 1)) {
    throw new Error(`gaussianKernel1d: kernelSize must be a positive odd integer, got ${kernelSize}`);
  }
  if (!(sigma > 0 && Number.isFinite(sigma))) throw new Error(`gaussianKernel1d: sigma must be > 0, got ${sigma}`);
  const r = (kernelSize - 1) / 2;
  const k = new Float64Array(kernelSize);
  let sum = 0;
  for (let t = -r; t <= r; t++) sum += k[t + r] = Math.exp(-0.5 * (t / sigma) ** 2);
  for (let t = 0; t < kernelSize; t++) k[t] /= sum;
  return k;
}

function resolveKernelSize(fn: string, images: tf.Tensor4D, kernelSize?: number): number {
  const side = Math.min(images.shape[1], images.shape[2]);
  const k = kernelSize ?? blurKernelSizeFor(side);
  if (!(Number.isInteger(k) && k >= 1 && k % 2 === 1)) throw new Error(`${fn}: kernelSize must be a positive odd integer, got ${k}`);
  if ((k - 1) / 2 >= side) throw new Error(`${fn}: kernelSize ${k} is too large for reflect padding of a ${images.shape[1]}x${images.shape[2]} image (radius must be < ${side})`);
  return k;
}

function checkedSigmas(fn: string, sigmas: number | ArrayLike<number>, n: number): number[] {
  const s = perSampleValues(fn, "sigmas", sigmas, n);
  for (const v of s) if (!(v > 0)) throw new Error(`${fn}: sigmas must be > 0, got ${v}`);
  return s;
}

/** Blurs sample i with sigma sigmas[i] (deterministic). */
export function blurImages(images: tf.Tensor4D, sigmas: number | ArrayLike<number>, kernelSize?: number): tf.Tensor4D {
  assertImageBatch("blurImages", images);
  if (!backendHasKernel("DepthwiseConv2dNative") || !backendHasKernel("MirrorPad")) return blurImagesMatMul(images, sigmas, kernelSize);
  const [n, h, w, c] = images.shape;
  const s = checkedSigmas("blurImages", sigmas, n);
  const k = resolveKernelSize("blurImages", images, kernelSize);
  if (n === 0) return tf.clone(images);
  const r = (k - 1) / 2;
  const channels = n * c;
  const taps = new Float32Array(k * channels); // filter [k, 1, N*C, 1]: channel n*C + c gets sample n's kernel
  s.forEach((sigma, i) => {
    const kern = gaussianKernel1d(k, sigma);
    for (let t = 0; t < k; t++) for (let ch = 0; ch < c; ch++) taps[t * channels + i * c + ch] = kern[t];
  });
  return tf.tidy(() => {
    const stacked = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, h, w, channels]) as tf.Tensor4D;
    const padded = tf.mirrorPad(stacked, [[0, 0], [r, r], [r, r], [0, 0]], "reflect");
    const vertical = tf.depthwiseConv2d(padded, tf.tensor4d(taps, [k, 1, channels, 1]), 1, "valid");
    const both = tf.depthwiseConv2d(vertical, tf.tensor4d(taps, [1, k, channels, 1]), 1, "valid");
    return tf.transpose(tf.reshape(both, [h, w, n, c]), [2, 0, 1, 3]) as tf.Tensor4D;
  });
}

/** torchvision "reflect" index (no edge repeat): -1 -> 1, side -> side - 2. */
function reflectIndex(i: number, side: number): number {
  if (side === 1) return 0;
  const period = 2 * (side - 1);
  let m = ((i % period) + period) % period;
  if (m >= side) m = period - m;
  return m;
}

/** Per-sample [side, side] blur matrices with reflect padding folded in: out = B x along one axis. */
function blurMatrices(sigmas: number[], side: number, k: number): tf.Tensor3D {
  const r = (k - 1) / 2;
  const m = new Float32Array(sigmas.length * side * side);
  sigmas.forEach((sigma, s) => {
    const kern = gaussianKernel1d(k, sigma);
    for (let i = 0; i < side; i++) {
      for (let t = -r; t <= r; t++) m[(s * side + i) * side + reflectIndex(i + t, side)] += kern[t + r];
    }
  });
  return tf.tensor3d(m, [sigmas.length, side, side]);
}

/** The same blur as blurImages via batched matMuls with per-sample blur matrices (fallback / reference). */
export function blurImagesMatMul(images: tf.Tensor4D, sigmas: number | ArrayLike<number>, kernelSize?: number): tf.Tensor4D {
  assertImageBatch("blurImagesMatMul", images);
  const [n, h, w, c] = images.shape;
  const s = checkedSigmas("blurImagesMatMul", sigmas, n);
  const k = resolveKernelSize("blurImagesMatMul", images, kernelSize);
  if (n === 0) return tf.clone(images);
  return tf.tidy(() => {
    const rows = tf.matMul(blurMatrices(s, h, k), tf.reshape(images, [n, h, w * c])); // [n, h, w*c]
    const colsFirst = tf.reshape(tf.transpose(tf.reshape(rows, [n, h, w, c]), [0, 2, 1, 3]), [n, w, h * c]);
    const cols = tf.matMul(blurMatrices(s, w, k), colsFirst); // [n, w, h*c]
    return tf.transpose(tf.reshape(cols, [n, w, h, c]), [0, 2, 1, 3]) as tf.Tensor4D;
  });
}

/**
 * Blurs each sample with probability p, sigma ~ U[sigma lo, hi] per sample. Only the selected
 * samples are convolved. Rng use: 2 draws per sample (apply?, sigma).
 */
export function gaussianBlur(images: tf.Tensor4D, rng: Rng, opts: GaussianBlurOptions = {}): tf.Tensor4D {
  assertImageBatch("gaussianBlur", images);
  const p = opts.p ?? 0.5;
  assertProbability("gaussianBlur", "p", p);
  const sigma = opts.sigma ?? [0.1, 2.0];
  if (!(Array.isArray(sigma) && sigma.length === 2 && sigma[0] > 0 && sigma[1] >= sigma[0] && Number.isFinite(sigma[1]))) {
    throw new Error(`gaussianBlur: sigma must be [lo, hi] with 0 < lo <= hi, got ${JSON.stringify(opts.sigma)}`);
  }
  const k = resolveKernelSize("gaussianBlur", images, opts.kernelSize);
  const n = images.shape[0];
  const selected: number[] = [];
  const sigmas: number[] = [];
  for (let i = 0; i < n; i++) {
    const apply = rng.next() < p;
    const sg = rng.uniform(sigma[0], sigma[1]);
    if (apply) {
      selected.push(i);
      sigmas.push(sg);
    }
  }
  return applyToGroups(images, [{ indices: selected, fn: (subset) => blurImages(subset, sigmas, k) }]);
}
