/**
 * Intra-batch data mixing (SDMP, Ren et al. 2022, Sec. 3.1-3.2; timm's "batch" mixing mode):
 * image i is mixed with its partner N-1-i, i.e. with the batch reversed (`x.flip(0)`).
 *
 *   Mixup     (Zhang et al. 2018):  x~_i = lam_i x_i + (1 - lam_i) x_{N-1-i}        lam_i ~ Beta(a, a)
 *   CutMix    (Yun et al. 2019):    x~_i = M_i * x_i + (1 - M_i) * x_{N-1-i}        box area ~ (1 - lam_i) HW
 *   ResizeMix (Qin et al. 2020):    x~_i = Paste(R(x_{N-1-i}, h_i, w_i), x_i)       h_i = t_i H, t_i ~ U(scale)
 *
 * Each op returns the lambda it realised: the share of image i's OWN pixels in x~_i (for the
 * region methods, 1 - box area / HW after clipping). Parameters are drawn in JavaScript from a
 * seeded Rng (a `MixPlan`) and only then applied to tensors, so the same plan mixes two views of a
 * batch identically (same boxes, same lambda), and the same seed gives the same mix on every
 * backend. Resizing is bilinear on tensors (half-pixel centres, torch's F.interpolate without
 * antialias) as two batched products with per-image interpolation matrices.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random";
import { assertImageBatch } from "./batch";
import type { PixelCropBox } from "./crop";

export type MixStrategy = "mixup" | "cutmix" | "resizemix";
export const MIX_STRATEGIES: readonly MixStrategy[] = ["mixup", "cutmix", "resizemix"];
/** ResizeMix's default range of the pasted patch's side, as a share of the image side. */
export const RESIZEMIX_DEFAULT_SCALE: [number, number] = [0.1, 0.8];

/** One batch's mixing: the strategy, the realised lambda per image and (region methods) the pasted boxes. */
export interface MixPlan {
  strategy: MixStrategy;
  /** Share of image i's own pixels in mixed image i. */
  lam: number[];
  /** The box of image i that receives its partner (cutmix: the partner's pixels there; resizemix: the whole partner, resized). */
  boxes?: PixelCropBox[];
}

export interface MixPlanOptions {
  /** Enabled strategies; one is chosen per batch, uniformly (SDMP's default: all three). */
  strategies?: readonly MixStrategy[];
  /** Beta(alpha, alpha) of Mixup's and CutMix's lambda (default 1: uniform). */
  alpha?: number;
  /** ResizeMix's range of the patch side share (default [0.1, 0.8]). */
  resizeScale?: [number, number];
}

function checkAlpha(fn: string, alpha: number): void {
  if (!(typeof alpha === "number" && Number.isFinite(alpha) && alpha > 0)) throw new Error(`${fn}: alpha must be a positive number, got ${alpha}`);
}

function checkScale(fn: string, scale: [number, number]): void {
  if (!Array.isArray(scale) || scale.length !== 2 || !(scale[0] > 0 && scale[0] <= scale[1] && scale[1] <= 1)) {
    throw new Error(`${fn}: scale must be [lo, hi] with 0 < lo <= hi <= 1, got ${JSON.stringify(scale)}`);
  }
}

function checkLam(fn: string, lam: ArrayLike<number>, n: number): number[] {
  const out = Array.from(lam);
  if (out.length !== n) throw new Error(`${fn}: lam needs one value per image (${n}), got ${out.length}`);
  for (const v of out) if (!(v >= 0 && v <= 1)) throw new Error(`${fn}: lam values must be in [0, 1], got ${v}`);
  return out;
}

/** The partner batch: image i of the result is image N-1-i (SDMP's `x.flip(0)`). */
export function partnerBatch<T extends tf.Tensor>(x: T): T {
  return tf.reverse(x, 0);
}

/** n draws of lambda ~ Beta(alpha, alpha) from the seeded generator (two Gamma draws each, Rng.beta). */
export function sampleBeta(rng: Rng, n: number, alpha: number): number[] {
  checkAlpha("sampleBeta", alpha);
  if (!(Number.isInteger(n) && n >= 0)) throw new Error(`sampleBeta: n must be a non-negative integer, got ${n}`);
  return Array.from({ length: n }, () => rng.beta(alpha, alpha));
}

/** The strategy of one batch, uniformly from the enabled set. */
export function chooseMixStrategy(rng: Rng, strategies: readonly MixStrategy[]): MixStrategy {
  if (!Array.isArray(strategies) || strategies.length === 0) throw new Error("chooseMixStrategy: at least one strategy is required");
  for (const s of strategies) if (!MIX_STRATEGIES.includes(s)) throw new Error(`chooseMixStrategy: unknown strategy '${s}' (expected ${MIX_STRATEGIES.join(", ")})`);
  return strategies[rng.int(0, strategies.length)];
}

/** Mixup with the reversed batch: x~_i = lam_i x_i + (1 - lam_i) x_{N-1-i}. `lam` is [N]. */
export function mixup(x: tf.Tensor4D, lam: ArrayLike<number> | tf.Tensor1D): tf.Tensor4D {
  assertImageBatch("mixup", x);
  const n = x.shape[0];
  return tf.tidy(() => {
    let l: tf.Tensor;
    if (lam instanceof tf.Tensor) {
      if (lam.rank !== 1 || lam.shape[0] !== n) throw new Error(`mixup: lam must be [${n}], got [${lam.shape}]`);
      l = tf.reshape(lam, [n, 1, 1, 1]);
    } else {
      l = tf.tensor4d(Float32Array.from(checkLam("mixup", lam, n)), [n, 1, 1, 1]);
    }
    return tf.add(tf.mul(l, x), tf.mul(tf.sub(1, l), partnerBatch(x))) as tf.Tensor4D;
  });
}

/**
 * CutMix boxes as timm's rand_bbox: a box of side sqrt(1 - lam_i) times each image side, centred
 * at a uniform pixel and clipped at the edges. Returns the boxes and the realised lambdas.
 */
export function sampleCutmixBoxes(rng: Rng, lam: ArrayLike<number>, height: number, width: number): { boxes: PixelCropBox[]; lam: number[] } {
  const l = checkLam("cutmix", lam, lam.length);
  const boxes: PixelCropBox[] = [];
  const realised: number[] = [];
  for (const li of l) {
    const r = Math.sqrt(1 - li);
    const ch = Math.floor(height * r);
    const cw = Math.floor(width * r);
    const cy = rng.int(0, height);
    const cx = rng.int(0, width);
    const top = Math.min(height, Math.max(0, cy - Math.floor(ch / 2)));
    const bottom = Math.min(height, Math.max(0, cy + ch - Math.floor(ch / 2)));
    const left = Math.min(width, Math.max(0, cx - Math.floor(cw / 2)));
    const right = Math.min(width, Math.max(0, cx + cw - Math.floor(cw / 2)));
    boxes.push({ top, left, height: bottom - top, width: right - left });
    realised.push(1 - ((bottom - top) * (right - left)) / (height * width));
  }
  return { boxes, lam: realised };
}

/**
 * ResizeMix boxes: side share t_i ~ U(scale) of each image side (at least one pixel), at a
 * uniform position fully inside the image. Returns the boxes and the realised lambdas.
 */
export function sampleResizemixBoxes(rng: Rng, n: number, height: number, width: number, scale: [number, number] = RESIZEMIX_DEFAULT_SCALE): { boxes: PixelCropBox[]; lam: number[] } {
  checkScale("resizemix", scale);
  const boxes: PixelCropBox[] = [];
  const lam: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = rng.uniform(scale[0], scale[1]);
    const h = Math.min(height, Math.max(1, Math.round(t * height)));
    const w = Math.min(width, Math.max(1, Math.round(t * width)));
    const top = rng.int(0, height - h + 1);
    const left = rng.int(0, width - w + 1);
    boxes.push({ top, left, height: h, width: w });
    lam.push(1 - (h * w) / (height * width));
  }
  return { boxes, lam };
}

function checkBoxes(fn: string, boxes: PixelCropBox[], n: number, height: number, width: number): void {
  if (boxes.length !== n) throw new Error(`${fn}: need one box per image (${n}), got ${boxes.length}`);
  boxes.forEach((b, i) => {
    const ok = [b.top, b.left, b.height, b.width].every(Number.isInteger) && b.top >= 0 && b.left >= 0 && b.height >= 0 && b.width >= 0;
    if (!ok || b.top + b.height > height || b.left + b.width > width) throw new Error(`${fn}: box ${i} ${JSON.stringify(b)} is not inside a ${height}x${width} image`);
  });
}

/** [N, H, W, 1] mask: 1 inside box i, 0 elsewhere. */
function boxMask(boxes: PixelCropBox[], height: number, width: number): tf.Tensor4D {
  const m = new Float32Array(boxes.length * height * width);
  boxes.forEach((b, i) => {
    for (let y = b.top; y < b.top + b.height; y++) m.fill(1, (i * height + y) * width + b.left, (i * height + y) * width + b.left + b.width);
  });
  return tf.tensor4d(m, [boxes.length, height, width, 1]);
}

/** Pastes the partner's pixels inside box i (CutMix with given boxes). */
export function pasteBoxes(x: tf.Tensor4D, boxes: PixelCropBox[]): tf.Tensor4D {
  assertImageBatch("pasteBoxes", x);
  const [n, h, w] = x.shape;
  checkBoxes("pasteBoxes", boxes, n, h, w);
  return tf.tidy(() => {
    const m = boxMask(boxes, h, w);
    return tf.add(tf.mul(tf.sub(1, m), x), tf.mul(m, partnerBatch(x))) as tf.Tensor4D;
  });
}

/**
 * [N, side, side] matrices that resample an axis of length `side` into [start, start + len) of
 * the same axis (bilinear, half-pixel centres, clamped at the edges); rows outside are zero.
 */
function pasteInterpolation(starts: number[], lens: number[], side: number): tf.Tensor3D {
  const n = starts.length;
  const m = new Float32Array(n * side * side);
  for (let s = 0; s < n; s++) {
    const scale = side / Math.max(1, lens[s]);
    for (let k = 0; k < lens[s]; k++) {
      const pos = Math.min(side - 1, Math.max(0, (k + 0.5) * scale - 0.5));
      const lo = Math.floor(pos);
      const hi = Math.min(side - 1, lo + 1);
      const row = (s * side + starts[s] + k) * side;
      m[row + lo] += 1 - (pos - lo);
      m[row + hi] += pos - lo;
    }
  }
  return tf.tensor3d(m, [n, side, side]);
}

/** Pastes the whole partner, resized bilinearly to box i, into box i (ResizeMix with given boxes). */
export function pasteResized(x: tf.Tensor4D, boxes: PixelCropBox[]): tf.Tensor4D {
  assertImageBatch("pasteResized", x);
  const [n, h, w, c] = x.shape;
  checkBoxes("pasteResized", boxes, n, h, w);
  return tf.tidy(() => {
    const ry = pasteInterpolation(boxes.map((b) => b.top), boxes.map((b) => b.height), h); // [n, h, h]
    const rx = pasteInterpolation(boxes.map((b) => b.left), boxes.map((b) => b.width), w); // [n, w, w]
    const partner = partnerBatch(x);
    const rows = tf.matMul(ry, tf.reshape(partner, [n, h, w * c])); // [n, h, w*c]
    const colsFirst = tf.reshape(tf.transpose(tf.reshape(rows, [n, h, w, c]), [0, 2, 1, 3]), [n, w, h * c]);
    const resized = tf.transpose(tf.reshape(tf.matMul(rx, colsFirst), [n, w, h, c]), [0, 2, 1, 3]); // zero outside the box
    return tf.add(tf.mul(tf.sub(1, boxMask(boxes, h, w)), x), resized) as tf.Tensor4D;
  });
}

/** CutMix with the reversed batch: a box of area about (1 - lam_i) HW from image N-1-i, at a random position. */
export function cutmix(x: tf.Tensor4D, lam: ArrayLike<number>, rng: Rng): { mixed: tf.Tensor4D; lam: number[] } {
  assertImageBatch("cutmix", x);
  const [n, h, w] = x.shape;
  const plan = sampleCutmixBoxes(rng, checkLam("cutmix", lam, n), h, w);
  return { mixed: pasteBoxes(x, plan.boxes), lam: plan.lam };
}

/** ResizeMix with the reversed batch: image N-1-i, resized to a side share in `scale`, pasted at a random position. */
export function resizemix(x: tf.Tensor4D, rng: Rng, opts: { scale?: [number, number] } = {}): { mixed: tf.Tensor4D; lam: number[] } {
  assertImageBatch("resizemix", x);
  const [n, h, w] = x.shape;
  const plan = sampleResizemixBoxes(rng, n, h, w, opts.scale ?? RESIZEMIX_DEFAULT_SCALE);
  return { mixed: pasteResized(x, plan.boxes), lam: plan.lam };
}

/**
 * One batch's mixing parameters: the strategy (uniform over the enabled set), then lambda ~
 * Beta(alpha, alpha) per image (Mixup, CutMix) or the ResizeMix boxes. Pure: only `rng` is touched.
 */
export function sampleMixPlan(rng: Rng, n: number, height: number, width: number, opts: MixPlanOptions = {}): MixPlan {
  const alpha = opts.alpha ?? 1;
  checkAlpha("sampleMixPlan", alpha);
  const strategy = chooseMixStrategy(rng, opts.strategies ?? MIX_STRATEGIES);
  if (strategy === "resizemix") return { strategy, ...sampleResizemixBoxes(rng, n, height, width, opts.resizeScale ?? RESIZEMIX_DEFAULT_SCALE) };
  const lam = sampleBeta(rng, n, alpha);
  if (strategy === "mixup") return { strategy, lam };
  return { strategy, ...sampleCutmixBoxes(rng, lam, height, width) };
}

/** Applies a plan to a batch (deterministic: two views mixed with one plan share boxes and lambdas). */
export function applyMixPlan(x: tf.Tensor4D, plan: MixPlan): tf.Tensor4D {
  assertImageBatch("applyMixPlan", x);
  if (plan.lam.length !== x.shape[0]) throw new Error(`applyMixPlan: the plan is for ${plan.lam.length} images, the batch has ${x.shape[0]}`);
  if (plan.strategy === "mixup") return mixup(x, plan.lam);
  if (!plan.boxes) throw new Error(`applyMixPlan: a ${plan.strategy} plan needs boxes`);
  return plan.strategy === "cutmix" ? pasteBoxes(x, plan.boxes) : pasteResized(x, plan.boxes);
}
