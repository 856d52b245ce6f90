/** Random solarization (BYOL, DINO): pixels x >= threshold become 1 - x, per sample with probability p. */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random";
import { assertImageBatch, assertProbability, drawFlags, perSampleTensor } from "./batch";

export interface SolarizeOptions {
  /** Probability that a sample is solarized; default 0.2 (BYOL's second view). */
  p?: number;
  /** Pixels at or above this value are inverted; default 0.5 (128/255 in torchvision's uint8 terms). */
  threshold?: number;
}

/** Solarizes each sample with probability p (one Rng draw per sample). */
export function solarize(images: tf.Tensor4D, rng: Rng, opts: SolarizeOptions = {}): tf.Tensor4D {
  assertImageBatch("solarize", images);
  const p = opts.p ?? 0.2;
  const threshold = opts.threshold ?? 0.5;
  assertProbability("solarize", "p", p);
  if (!Number.isFinite(threshold)) throw new Error(`solarize: threshold must be a finite number, got ${threshold}`);
  const flags = drawFlags(rng, images.shape[0], p);
  return tf.tidy(() => {
    if (!flags.some((f) => f)) return tf.clone(images);
    // m = 1 where the sample is selected and x >= threshold; out = m (1 - x) + (1 - m) x, exact for m in {0, 1}
    // x >= t exactly when t - x <= 0, i.e. step(t - x) == 0 (comparisons are ~20x slower on wasm)
    const above = tf.sub(1, tf.step(tf.sub(threshold, images)));
    const m = tf.mul(above, perSampleTensor(flags.map((f) => (f ? 1 : 0))));
    return tf.add(tf.mul(m, tf.sub(1, images)), tf.mul(tf.sub(1, m), images)) as tf.Tensor4D;
  });
}
