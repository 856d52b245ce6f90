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
  return tf.tidy(() => {
    if (images.shape[3] === 1) return tf.clone(images);
    return tf.sum(tf.mul(images, tf.tensor1d([...LUMA_WEIGHTS_601])), 3, true) as tf.Tensor4D;
  });
}

/** Grayscale with the same number of channels as the input (torchvision Grayscale(num_output_channels=C)). */
export function toGrayscale(images: tf.Tensor4D): tf.Tensor4D {
  assertImageBatch("toGrayscale", images);
  return tf.tidy(() => {
    const c = images.shape[3];
    const luma = imageLuma(images);
    return c === 1 ? luma : (tf.tile(luma, [1, 1, 1, c]) as tf.Tensor4D);
  });
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
  return tf.tidy(() => (images.shape[3] === 1 ? tf.clone(images) : blendPerSample(images, imageLuma(images), f)));
}

/**
 * Rotates hue by `shifts` (fractions of a turn in [-0.5, 0.5]) in HSV space: RGB -> HSV
 * (torchvision _rgb2hsv), h <- (h + shift) mod 1, HSV -> RGB. Identity on C = 1.
 * HSV -> RGB uses the closed form channel_n = V - V*S*clamp(min(k, 4 - k), 0, 1),
 * k = (n + 6h) mod 6 with n = 5, 3, 1 for R, G, B (and V*S = max - min), which is continuous in h.
 */
export function adjustHue(images: tf.Tensor4D, shifts: number | ArrayLike<number>): tf.Tensor4D {
  assertImageBatch("adjustHue", images);
  const s = perSampleValues("adjustHue", "shifts", shifts, images.shape[0]);
  for (const v of s) if (v < -0.5 || v > 0.5) throw new Error(`adjustHue: shifts must be in [-0.5, 0.5], got ${v}`);
  if (images.shape[3] === 1) return tf.clone(images);
  return tf.tidy(() => {
    const [r, g, b] = tf.split(images, 3, 3);
    const maxc = tf.max(images, 3, true);
    const minc = tf.min(images, 3, true);
    const chroma = tf.sub(maxc, minc);
    const isGrey = tf.cast(tf.equal(chroma, 0), "float32");
    const safeChroma = tf.add(chroma, isGrey); // 1 where chroma == 0, so no 0/0
    const rc = tf.div(tf.sub(maxc, r), safeChroma);
    const gc = tf.div(tf.sub(maxc, g), safeChroma);
    const bc = tf.div(tf.sub(maxc, b), safeChroma);
    const isR = tf.cast(tf.equal(maxc, r), "float32");
    const notR = tf.sub(1, isR);
    const isG = tf.mul(tf.cast(tf.equal(maxc, g), "float32"), notR);
    const isB = tf.mul(tf.cast(tf.notEqual(maxc, g), "float32"), notR);
    const hr = tf.mul(isR, tf.sub(bc, gc));
    const hg = tf.mul(isG, tf.add(tf.sub(rc, bc), 2));
    const hb = tf.mul(isB, tf.add(tf.sub(gc, rc), 4));
    // h in turns, shifted and wrapped to [0, 1): frac(h6 / 6 + 1 + shift)
    const turns = tf.add(tf.add(tf.div(tf.add(tf.add(hr, hg), hb), 6), 1), perSampleTensor(s));
    const h = tf.sub(turns, tf.floor(turns));
    const k6 = tf.add(tf.mul(h, 6), tf.tensor1d([5, 3, 1])); // [N,H,W,3]
    const k = tf.sub(k6, tf.mul(tf.floor(tf.div(k6, 6)), 6));
    const ramp = tf.clipByValue(tf.minimum(k, tf.sub(4, k)), 0, 1);
    return tf.clipByValue(tf.sub(maxc, tf.mul(chroma, ramp)), 0, 1) as tf.Tensor4D;
  });
}
