/**
 * The augmentation contract: a view transform maps a batch of images [N,H,W,C] (float32 in
 * [0,1]) to a new batch of augmented views, drawing all its randomness from the given Rng.
 * Transforms never dispose their input and always return a new tensor (even when they change
 * nothing), so the caller owns and disposes every output.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random";

export type ViewTransform = (images: tf.Tensor4D, rng: Rng) => tf.Tensor4D;

/** Several views of one batch, e.g. DINO's multi-crop (global crops first, then local crops). */
export type MultiViewTransform = (images: tf.Tensor4D, rng: Rng) => tf.Tensor4D[];

/** Runs transforms left to right; intermediates are disposed, the input is kept. */
export function composeTransforms(...transforms: ViewTransform[]): ViewTransform {
  transforms.forEach((t, i) => {
    if (typeof t !== "function") throw new Error(`composeTransforms: transform ${i} is not a function (got ${typeof t})`);
  });
  return (images: tf.Tensor4D, rng: Rng) =>
    tf.tidy(() => {
      let x = images;
      for (const t of transforms) x = t(x, rng);
      return x === images ? tf.clone(images) : x;
    });
}

/** The identity view (a copy of the batch). */
export const identityTransform: ViewTransform = (images) => tf.clone(images);
