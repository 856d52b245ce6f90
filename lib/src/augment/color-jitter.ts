/**
 * torchvision ColorJitter on a batch, wrapped in RandomApply(p). Factor ranges follow
 * torchvision: a number b for brightness / contrast / saturation means a factor ~ U[max(0, 1-b), 1+b],
 * a number h for hue means a shift ~ U[-h, h] with 0 <= h <= 0.5; a [lo, hi] pair gives the range
 * directly. A range that is exactly the identity (0, or [1, 1] / [0, 0] for hue) disables that op.
 *
 * Order: like torchvision, the four ops run in a random order, drawn PER SAMPLE (torchvision
 * transforms each image independently). Batched as 4 stages: at stage s each op runs once on the
 * samples whose s-th op it is (applyToGroups), so each sample pays for each op once.
 * On 1-channel images saturation and hue are no-ops; brightness and contrast still apply.
 *
 * Rng use per sample, fixed regardless of settings: 1 draw for "apply?", 3 for the order
 * (Fisher-Yates on 4 ops), 4 for the factors.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random";
import { applyToGroups, assertImageBatch, assertProbability, type SampleGroup } from "./batch";
import { adjustBrightness, adjustContrast, adjustHue, adjustSaturation } from "./color";

export type JitterRange = number | [number, number];

export interface ColorJitterOptions {
  brightness?: JitterRange;
  contrast?: JitterRange;
  saturation?: JitterRange;
  hue?: JitterRange;
  /** Probability that a sample is jittered at all (RandomApply); default 1. */
  p?: number;
}

/** Per-sample jitter parameters, as drawn by `sampleColorJitterParams`. */
export interface ColorJitterParams {
  applied: boolean;
  /** Op indices (0 brightness, 1 contrast, 2 saturation, 3 hue) in the order they run. */
  order: number[];
  /** Brightness, contrast, saturation factors and hue shift (identity values for disabled ops). */
  factors: [number, number, number, number];
}

const OP_NAMES = ["brightness", "contrast", "saturation", "hue"] as const;
const IDENTITY_FACTORS = [1, 1, 1, 0];

/** Resolved [lo, hi] ranges for the four ops, null where an op is disabled. */
export function colorJitterRanges(opts: ColorJitterOptions): Array<[number, number] | null> {
  const ranges: Array<[number, number] | null> = [];
  for (let k = 0; k < 4; k++) {
    const name = OP_NAMES[k];
    const v = opts[name];
    const isHue = k === 3;
    const centre = isHue ? 0 : 1;
    let range: [number, number];
    if (v == null) {
      ranges.push(null);
      continue;
    } else if (typeof v === "number") {
      if (!(v >= 0) || (isHue && v > 0.5)) {
        throw new Error(`colorJitter: ${name} must be ${isHue ? "in [0, 0.5]" : ">= 0"}, got ${v}`);
      }
      range = isHue ? [-v, v] : [Math.max(0, 1 - v), 1 + v];
    } else if (Array.isArray(v) && v.length === 2 && v[0] <= v[1]) {
      const [lo, hi] = v;
      if (isHue ? lo < -0.5 || hi > 0.5 : !(lo >= 0 && Number.isFinite(hi))) {
        throw new Error(`colorJitter: ${name} range must lie in ${isHue ? "[-0.5, 0.5]" : "[0, inf)"}, got [${v}]`);
      }
      range = [lo, hi];
    } else {
      throw new Error(`colorJitter: ${name} must be a number or a [lo, hi] pair with lo <= hi, got ${JSON.stringify(v)}`);
    }
    ranges.push(range[0] === centre && range[1] === centre ? null : range);
  }
  return ranges;
}

/** Draws per-sample jitter parameters (pure: only the Rng is touched). */
export function sampleColorJitterParams(rng: Rng, n: number, opts: ColorJitterOptions): ColorJitterParams[] {
  const p = opts.p ?? 1;
  assertProbability("colorJitter", "p", p);
  const ranges = colorJitterRanges(opts);
  const params: ColorJitterParams[] = [];
  for (let i = 0; i < n; i++) {
    const applied = rng.next() < p;
    const order = rng.shuffle([0, 1, 2, 3]);
    const factors = [0, 1, 2, 3].map((k) => {
      const u = rng.next();
      const r = ranges[k];
      return r === null ? IDENTITY_FACTORS[k] : r[0] + (r[1] - r[0]) * u;
    }) as [number, number, number, number];
    params.push({ applied, order, factors });
  }
  return params;
}

const OPS: Array<(x: tf.Tensor4D, f: number[]) => tf.Tensor4D> = [adjustBrightness, adjustContrast, adjustSaturation, adjustHue];

/** Colour jitter with per-sample factors and per-sample random op order, applied with probability p. */
export function colorJitter(images: tf.Tensor4D, rng: Rng, opts: ColorJitterOptions = {}): tf.Tensor4D {
  assertImageBatch("colorJitter", images);
  const n = images.shape[0];
  const params = sampleColorJitterParams(rng, n, opts);
  return applyColorJitterParams(images, params, opts);
}

/** Applies already-drawn jitter parameters (see `sampleColorJitterParams`). */
export function applyColorJitterParams(images: tf.Tensor4D, params: ColorJitterParams[], opts: ColorJitterOptions): tf.Tensor4D {
  assertImageBatch("colorJitter", images);
  if (params.length !== images.shape[0]) throw new Error(`colorJitter: need one parameter set per sample (${images.shape[0]}), got ${params.length}`);
  const ranges = colorJitterRanges(opts);
  // Saturation and hue do nothing on 1-channel images: leave them out entirely.
  const enabled = ranges.map((r, k) => r !== null && (images.shape[3] === 3 || k < 2));
  return tf.tidy(() => {
    let x = images;
    for (let stage = 0; stage < 4; stage++) {
      const groups: SampleGroup[] = [];
      for (let k = 0; k < 4; k++) {
        if (!enabled[k]) continue;
        const indices: number[] = [];
        params.forEach((prm, i) => prm.applied && prm.order[stage] === k && indices.push(i));
        groups.push({ indices, fn: (subset, idx) => OPS[k](subset, idx.map((i) => params[i].factors[k])) });
      }
      if (groups.every((g) => g.indices.length === 0)) continue;
      x = applyToGroups(x, groups);
    }
    return x === images ? tf.clone(images) : x;
  });
}
