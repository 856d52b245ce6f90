/**
 * BYOL's regression loss (Grill et al. 2020, eq. 2): the mean squared error between the
 * l2-normalised prediction p and the l2-normalised target projection z,
 *
 *   L(p, z) = || p/|p| - z/|z| ||^2 = 2 - 2 <p, z> / (|p| |z|),
 *
 * averaged over the batch. It lies in [0, 4]: 0 when p and z point the same way, 2 when they are
 * orthogonal. Differentiable in both arguments; BYOL stops the gradient into z (the target
 * network's output) and sums the loss over both orderings of the two views (L + L~).
 */
import * as tf from "@tensorflow/tfjs-core";
import { l2Normalize } from "../nn/fast-ops";

function checkPair(fn: string, p: tf.Tensor, z: tf.Tensor): void {
  if (!(p instanceof tf.Tensor) || !(z instanceof tf.Tensor) || p.rank !== 2 || z.rank !== 2) {
    throw new Error(`${fn}: p and z must be [N, D] tensors, got shapes [${p?.shape}] and [${z?.shape}]`);
  }
  if (p.shape[0] !== z.shape[0] || p.shape[1] !== z.shape[1]) {
    throw new Error(`${fn}: p and z must have the same shape, got [${p.shape}] and [${z.shape}]`);
  }
  if (p.size < 1) throw new Error(`${fn}: empty batch, shape [${p.shape}]`);
}

/** Row-wise cosine similarity cos(p_i, z_i): [N]. */
export function rowCosine(p: tf.Tensor2D, z: tf.Tensor2D): tf.Tensor1D {
  checkPair("rowCosine", p, z);
  return tf.tidy(() => tf.sum(tf.mul(l2Normalize(p, 1), l2Normalize(z, 1)), 1) as tf.Tensor1D);
}

/** BYOL eq. 2: mean_i (2 - 2 cos(p_i, z_i)) for p, z: [N, D] (a scalar). */
export function byolLoss(p: tf.Tensor2D, z: tf.Tensor2D): tf.Scalar {
  checkPair("byolLoss", p, z);
  return tf.tidy(() => tf.sub(2, tf.mul(2, tf.mean(rowCosine(p, z)))) as tf.Scalar);
}
