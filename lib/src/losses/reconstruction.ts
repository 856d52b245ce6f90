/**
 * SiT's reconstruction loss (Atito et al. 2021, sec. 3.2.1): l1 between the image and its
 * reconstruction from the corrupted image,
 *
 *   L_recons = sum_{corrupted pixels, channels} |x - SiT_recons(x_bar)| / (corrupted pixels * C)
 *
 * i.e. the mean absolute error over the corrupted pixels only, as the official code's
 * `l1_loss(recons, clean, reduction='none')[mask == 1].mean()`. An empty mask gives 0.
 */
import * as tf from "@tensorflow/tfjs-core";

/**
 * pred, target: [N, H, W, C]; mask: [N, H, W, 1] (broadcast over channels) or [N, H, W, C],
 * 1 on the pixels that count. Returns a scalar; the gradient flows into `pred` (and `target`).
 */
export function maskedL1Loss(pred: tf.Tensor4D, target: tf.Tensor4D, mask: tf.Tensor4D): tf.Scalar {
  if (pred.rank !== 4 || target.rank !== 4 || mask.rank !== 4) {
    throw new Error(`maskedL1Loss: pred, target and mask must be [N, H, W, C] tensors, got [${pred.shape}], [${target.shape}], [${mask.shape}]`);
  }
  if (pred.shape.some((d, i) => d !== target.shape[i])) throw new Error(`maskedL1Loss: pred [${pred.shape}] and target [${target.shape}] differ`);
  const c = pred.shape[3];
  if (mask.shape.slice(0, 3).some((d, i) => d !== pred.shape[i]) || (mask.shape[3] !== 1 && mask.shape[3] !== c)) {
    throw new Error(`maskedL1Loss: mask must be [${pred.shape.slice(0, 3)}, 1] or [${pred.shape}], got [${mask.shape}]`);
  }
  return tf.tidy(() => {
    const sum = tf.sum(tf.mul(tf.abs(tf.sub(pred, target)), mask));
    const count = tf.maximum(tf.mul(tf.sum(mask), c / mask.shape[3]), 1);
    return tf.div(sum, count) as tf.Scalar;
  });
}
