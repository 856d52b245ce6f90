/**
 * MAE's reconstruction loss (He et al. 2021, "Masked Autoencoders Are Scalable Vision
 * Learners", sec. 3; the reference implementation's `forward_loss`):
 *
 *   target = normPix ? (x - mean(x)) / sqrt(var(x) + 1e-6) : x     per patch, unbiased variance
 *   loss   = sum_{n,l} mask[n,l] * mean_p (pred - target)^2 / sum_{n,l} mask[n,l]
 *
 * i.e. the per-patch mean squared error averaged over the removed patches only.
 */
import * as tf from "@tensorflow/tfjs-core";

/** The eps the reference adds to each patch's variance before the square root. */
export const MAE_NORM_PIX_EPS = 1e-6;

/**
 * Each patch [.., P] normalised by its own mean and unbiased variance (torch's `var` default):
 * (x - mean) / sqrt(var + eps). The target of MAE's `norm_pix_loss`.
 */
export function normalizePatches(patches: tf.Tensor, eps = MAE_NORM_PIX_EPS): tf.Tensor {
  const p = patches.shape[patches.rank - 1];
  if (!(p >= 2)) throw new Error(`normalizePatches: a patch needs at least 2 values for an unbiased variance, got ${p}`);
  return tf.tidy(() => {
    const mean = tf.mean(patches, -1, true);
    const centred = tf.sub(patches, mean);
    const variance = tf.div(tf.sum(tf.square(centred), -1, true), p - 1);
    return tf.div(centred, tf.sqrt(tf.add(variance, eps)));
  });
}

/**
 * MAE loss. `pred`, `target`: [N, L, P] (patches x pixels per patch, the patchify order);
 * `mask`: [N, L], 1 on removed patches, 0 on visible ones. With `normPix` the target patches
 * are normalised first (`normalizePatches`). A mask without any removed patch gives 0/0 = NaN,
 * as in the reference.
 */
export function maeLoss(pred: tf.Tensor3D, target: tf.Tensor3D, mask: tf.Tensor2D, normPix = false): tf.Scalar {
  if (pred.rank !== 3) throw new Error(`maeLoss: pred must be [N, L, P], got [${pred.shape}]`);
  if (target.rank !== 3 || target.shape.some((d, i) => d !== pred.shape[i])) {
    throw new Error(`maeLoss: target [${target.shape}] must have pred's shape [${pred.shape}]`);
  }
  if (mask.rank !== 2 || mask.shape[0] !== pred.shape[0] || mask.shape[1] !== pred.shape[1]) {
    throw new Error(`maeLoss: mask must be [N, L] = [${pred.shape.slice(0, 2)}], got [${mask.shape}]`);
  }
  return tf.tidy(() => {
    const t = normPix ? normalizePatches(target) : target;
    const perPatch = tf.mean(tf.square(tf.sub(pred, t)), -1); // [N, L]: mean over the pixels of a patch
    const m = tf.cast(mask, "float32");
    return tf.div(tf.sum(tf.mul(perPatch, m)), tf.sum(m)) as tf.Scalar; // mean over removed patches
  });
}
