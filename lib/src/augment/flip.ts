/** Random horizontal flip, decided independently per sample (torchvision RandomHorizontalFlip). */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random";
import { assertImageBatch, assertProbability, drawFlags, selectSamples } from "./batch";

export interface RandomHorizontalFlipOptions {
  /** Probability that a sample is mirrored; default 0.5. */
  p?: number;
}

/** Mirrors every image left-right (the W axis). */
export function flipImagesHorizontally(images: tf.Tensor4D): tf.Tensor4D {
  assertImageBatch("flipImagesHorizontally", images);
  // FlipLeftRight is ~15x faster than tf.reverse on wasm.
  return tf.image.flipLeftRight(images);
}

/** Mirrors each sample left-right with probability p (one Rng draw per sample). */
export function randomHorizontalFlip(images: tf.Tensor4D, rng: Rng, opts: RandomHorizontalFlipOptions = {}): tf.Tensor4D {
  assertImageBatch("randomHorizontalFlip", images);
  const p = opts.p ?? 0.5;
  assertProbability("randomHorizontalFlip", "p", p);
  const flags = drawFlags(rng, images.shape[0], p);
  return tf.tidy(() => {
    if (!flags.some((f) => f)) return tf.clone(images);
    return selectSamples(flags, flipImagesHorizontally(images), images);
  });
}
