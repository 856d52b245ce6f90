/** Random grayscale (torchvision RandomGrayscale): luma in all C channels, per sample with probability p. */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random";
import { assertImageBatch, assertProbability, drawFlags, selectSamples } from "./batch";
import { toGrayscale } from "./color";

export interface RandomGrayscaleOptions {
  /** Probability that a sample is converted; default 0.1 (torchvision), recipes use 0.2. */
  p?: number;
}

/** Converts each sample to grey (ITU-R 601-2 luma, C channels kept) with probability p; identity on C = 1. */
export function randomGrayscale(images: tf.Tensor4D, rng: Rng, opts: RandomGrayscaleOptions = {}): tf.Tensor4D {
  assertImageBatch("randomGrayscale", images);
  const p = opts.p ?? 0.1;
  assertProbability("randomGrayscale", "p", p);
  const flags = drawFlags(rng, images.shape[0], p);
  return tf.tidy(() => {
    if (images.shape[3] === 1 || !flags.some((f) => f)) return tf.clone(images);
    return selectSamples(flags, toGrayscale(images), images);
  });
}
