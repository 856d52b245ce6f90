/**
 * Deterministic colour operations on batches with one parameter per sample, following
 * torchvision.transforms.functional (adjust_brightness / contrast / saturation / hue,
 * rgb_to_grayscale). Grey levels use the ITU-R 601-2 luma transform
 * L = 0.299 R + 0.587 G + 0.114 B (PIL's "L" mode, which the SimCLR/MoCo/BYOL/DINO pipelines
 * used on PIL images). On 1-channel images saturation and hue are no-ops (as in torchvision);
 * brightness and contrast still apply.
 */
import * as tf from "@tensorflow/tfjs-core";
import { assertImageBatch, perSampleTensor, perSampleValues } from "./batch";

/** ITU-R 601-2 luma weights for R, G, B. */
export const LUMA_WEIGHTS_601: readonly [number, number, number] = [0.299, 0.587, 0.114];

/** Luma of each pixel, [N,H,W,1] (a copy of the image when C = 1). */
export function imageLuma(images: tf.Tensor4D): tf.Tensor4D {
  assertImageBatch("imageLuma", images);
  const [n, h, w, c] = images.shape;
  return tf.tidy(() => {
    if (c === 1) return tf.clone(images);
    // [P,3] @ [3,1]: a matMul is ~3x faster on wasm than a broadcast multiply + channel sum.
    const luma = tf.matMul(tf.reshape(images, [n * h * w, 3]), tf.tensor2d([...LUMA_WEIGHTS_601], [3, 1]));
    return tf.reshape(luma, [n, h, w, 1]) as tf.Tensor4D;
  });
}

/** A [N,H,W,1] plane repeated into C channels ([P,1] @ ones[1,C]; tf.tile on the last axis is ~50x slower on wasm). */
function repeatChannels(plane: tf.Tensor4D, c: number): tf.Tensor4D {
  const [n, h, w] = plane.shape;
  if (c === 1) return tf.clone(plane);
  return tf.tidy(() => tf.reshape(tf.matMul(tf.reshape(plane, [n * h * w, 1]), tf.ones([1, c])), [n, h, w, c]) as tf.Tensor4D);
}

/** Grayscale with the same number of channels as the input (torchvision Grayscale(num_output_channels=C)). */
export function toGrayscale(images: tf.Tensor4D): tf.Tensor4D {
  assertImageBatch("toGrayscale", images);
  return tf.tidy(() => repeatChannels(imageLuma(images), images.shape[3]));
}

/** torchvision _blend: clamp(ratio * a + (1 - ratio) * b, 0, 1) with one ratio per sample. */
function blendPerSample(a: tf.Tensor4D, b: tf.Tensor, ratios: number[]): tf.Tensor4D {
  return tf.tidy(() => {
    const mixed = tf.add(tf.mul(perSampleTensor(ratios), a), tf.mul(perSampleTensor(ratios.map((r) => 1 - r)), b));
    return tf.clipByValue(mixed, 0, 1) as tf.Tensor4D;
  });
}

function nonNegativeFactors(fn: string, factors: number | ArrayLike<number>, n: number): number[] {
  const f = perSampleValues(fn, "factors", factors, n);
  for (const v of f) if (v < 0) throw new Error(`${fn}: factors must be >= 0, got ${v}`);
  return f;
}

/** x -> clamp(f * x, 0, 1): factor 0 gives black, 1 the original. */
export function adjustBrightness(images: tf.Tensor4D, factors: number | ArrayLike<number>): tf.Tensor4D {
  assertImageBatch("adjustBrightness", images);
  const f = nonNegativeFactors("adjustBrightness", factors, images.shape[0]);
  return tf.tidy(() => tf.clipByValue(tf.mul(images, perSampleTensor(f)), 0, 1) as tf.Tensor4D);
}

/** Blend with the image's mean grey level: factor 0 gives a uniform grey image, 1 the original. */
export function adjustContrast(images: tf.Tensor4D, factors: number | ArrayLike<number>): tf.Tensor4D {
  assertImageBatch("adjustContrast", images);
  const f = nonNegativeFactors("adjustContrast", factors, images.shape[0]);
  return tf.tidy(() => blendPerSample(images, tf.mean(imageLuma(images), [1, 2, 3], true), f));
}

/** Blend with the grayscale image: 0 gives grey, 1 the original, 2 doubles saturation. Identity on C = 1. */
export function adjustSaturation(images: tf.Tensor4D, factors: number | ArrayLike<number>): tf.Tensor4D {
  assertImageBatch("adjustSaturation", images);
  const f = nonNegativeFactors("adjustSaturation", factors, images.shape[0]);
  return tf.tidy(() => (images.shape[3] === 1 ? tf.clone(images) : blendPerSample(images, toGrayscale(images), f)));
}

/**
 * Rotates hue by `shifts` (fractions of a turn in [-0.5, 0.5]) in HSV space: RGB -> HSV
 * (torchvision _rgb2hsv), h <- (h + shift) mod 1, HSV -> RGB. Identity on C = 1.
 * HSV -> RGB uses the closed form channel_n = V - V*S*clamp(min(k, 4 - k), 0, 1),
 * k = (n + 6h) mod 6 with n = 5, 3, 1 for R, G, B (and V*S = max - min), which is continuous in h.
 *
 * Works on [N, H*W] planes so every op is a same-shape or per-sample ([N,1]) elementwise op: on
 * wasm, channel slices, last-axis broadcasts, comparisons and maximum/minimum are 10-50x slower
 * than these. Indicators use step(): for a <= b, a == b exactly when step(b - a) == 0.
 */
export function adjustHue(images: tf.Tensor4D, shifts: number | ArrayLike<number>): tf.Tensor4D {
  assertImageBatch("adjustHue", images);
  const s = perSampleValues("adjustHue", "shifts", shifts, images.shape[0]);
  for (const v of s) if (v < -0.5 || v > 0.5) throw new Error(`adjustHue: shifts must be in [-0.5, 0.5], got ${v}`);
  const [n, h, w, c] = images.shape;
  if (c === 1) return tf.clone(images);
  return tf.tidy(() => {
    const hw = h * w;
    const pixels = tf.reshape(images, [n * hw, 3]);
    const plane = (t: tf.Tensor) => tf.reshape(t, [n, hw]);
    const planes = tf.transpose(pixels, [1, 0]); // [3, P]; rows taken with gather (tf.split is ~30x slower on wasm)
    const [r, g, b] = [0, 1, 2].map((i) => plane(tf.gather(planes, [i])));
    const maxc = plane(tf.max(pixels, 1));
    const minc = plane(tf.min(pixels, 1));
    const chroma = tf.sub(maxc, minc);
    const safeChroma = tf.add(chroma, tf.sub(1, tf.step(chroma))); // 1 where chroma == 0, so no 0/0
    const rc = tf.div(tf.sub(maxc, r), safeChroma);
    const gc = tf.div(tf.sub(maxc, g), safeChroma);
    const bc = tf.div(tf.sub(maxc, b), safeChroma);
    const notR = tf.step(tf.sub(maxc, r)); // 0 where max == r
    const isR = tf.sub(1, notR);
    const gBelowMax = tf.step(tf.sub(maxc, g));
    const isG = tf.mul(tf.sub(1, gBelowMax), notR);
    const isB = tf.mul(gBelowMax, notR);
    const hr = tf.mul(isR, tf.sub(bc, gc));
    const hg = tf.mul(isG, tf.add(tf.sub(rc, bc), 2));
    const hb = tf.mul(isB, tf.add(tf.sub(gc, rc), 4));
    // hue in turns, shifted and wrapped to [0, 1): frac(h6 / 6 + 1 + shift)
    const turns = tf.add(tf.add(tf.div(tf.add(tf.add(hr, hg), hb), 6), 1), tf.tensor2d(s, [n, 1]));
    const hue6 = tf.mul(tf.sub(turns, tf.floor(turns)), 6);
    const channel = (offset: number) => {
      const k6 = tf.add(hue6, offset);
      const k = tf.sub(k6, tf.mul(tf.floor(tf.div(k6, 6)), 6)); // (offset + 6h) mod 6
      const ramp = tf.clipByValue(tf.sub(2, tf.abs(tf.sub(k, 2))), 0, 1); // clamp(min(k, 4 - k), 0, 1)
      return tf.sub(maxc, tf.mul(chroma, ramp)); // in [min, max]: ramp in [0, 1], so no clamp needed
    };
    const rgb = tf.concat([channel(5), channel(3), channel(1)].map((t) => tf.reshape(t, [1, n * hw])), 0); // [3, P]
    return tf.reshape(tf.transpose(rgb, [1, 0]), [n, h, w, 3]) as tf.Tensor4D;
  });
}
