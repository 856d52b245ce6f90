/**
 * InfoNCE, the MoCo loss (He et al. 2020, eq. 1; Algorithm 1):
 *
 *   L_q = -log( exp(q.k+ / t) / (exp(q.k+ / t) + sum_i exp(q.k_i / t)) )
 *
 * a (K+1)-way softmax cross-entropy with the positive key k+ at index 0 and the K negatives from
 * the queue, averaged over the N queries. Without a queue (MoCo v3, Chen et al. 2021, Algorithm 1,
 * and MoCo's "end-to-end" variant) the keys of the other images of the batch are the negatives:
 * logits = q k^T / t, the positive of row i at column i.
 *
 * The cross-entropy reads the positive's log-probability from tf.logSoftmax (a custom gradient;
 * tf.logSumExp's gradient goes through a broadcast Equal that takes ~0.3 s on wasm at K = 4096):
 * column 0 with a queue, the diagonal (a one-hot mask) without.
 */
import * as tf from "@tensorflow/tfjs-core";
import { nativeKernelsActive } from "../backend/native-kernels";
import { l2Normalize, matMul } from "../nn/fast-ops";

function checkInputs(fn: string, q: tf.Tensor, k: tf.Tensor, queue: tf.Tensor | null): void {
  if (q.rank !== 2 || k.rank !== 2) throw new Error(`${fn}: q and k must be [N, D] tensors, got [${q.shape}] and [${k.shape}]`);
  if (q.shape[0] !== k.shape[0] || q.shape[1] !== k.shape[1]) throw new Error(`${fn}: q and k must have the same shape, got [${q.shape}] and [${k.shape}]`);
  if (q.size < 1) throw new Error(`${fn}: empty batch, shape [${q.shape}]`);
  if (queue !== null && (queue.rank !== 2 || queue.shape[1] !== q.shape[1] || queue.shape[0] < 1)) {
    throw new Error(`${fn}: queue must be [K, ${q.shape[1]}] with K >= 1 (or null), got [${queue.shape}]`);
  }
}

/** The logits and each row's positive logit: [N, 1+K] / [N, N], and [N]. Inputs normalised here. */
function infoNceLogits(q: tf.Tensor2D, k: tf.Tensor2D, queue: tf.Tensor2D | null, temperature: number): { logits: tf.Tensor2D; positive: tf.Tensor1D } {
  const qn = l2Normalize(q, 1) as tf.Tensor2D;
  const kn = l2Normalize(k, 1) as tf.Tensor2D;
  const positive = tf.div(tf.sum(tf.mul(qn, kn), 1), temperature) as tf.Tensor1D; // q.k+ / t
  if (queue === null) return { logits: tf.div(matMul(qn, tf.transpose(kn)), temperature) as tf.Tensor2D, positive };
  // q.queue^T / t: [N, K]; the queue needs no gradient, so sslkit-native takes its transpose as a BLAS flag
  const negatives = tf.div(nativeKernelsActive() ? tf.matMul(qn, queue, false, true) : matMul(qn, tf.transpose(queue)), temperature);
  return { logits: tf.concat([tf.reshape(positive, [-1, 1]), negatives], 1) as tf.Tensor2D, positive };
}

/**
 * InfoNCE of queries q [N, D] against keys k [N, D] (both l2-normalised here) and a queue [K, D]
 * of stored (already normalised) keys, or null for the in-batch form. Mean over the N queries.
 */
export function infoNceLoss(q: tf.Tensor2D, k: tf.Tensor2D, queue: tf.Tensor2D | null, temperature: number): tf.Scalar {
  checkInputs("infoNceLoss", q, k, queue);
  if (!(Number.isFinite(temperature) && temperature > 0)) throw new Error(`infoNceLoss: temperature must be a positive number, got ${temperature}`);
  return tf.tidy(() => {
    const n = q.shape[0];
    const logProb = tf.logSoftmax(infoNceLogits(q, k, queue, temperature).logits);
    // CE with the positive's label: -1/N sum_i log p(positive_i)
    const positive = queue ? tf.sum(tf.slice(logProb, [0, 0], [n, 1])) : tf.sum(tf.mul(logProb, tf.eye(n)));
    return tf.div(tf.neg(positive), n) as tf.Scalar;
  });
}

/** Top-1 accuracy of the (K+1)-way (or N-way) instance discrimination: the positive scores highest. Not differentiable. */
export function infoNceAccuracy(q: tf.Tensor2D, k: tf.Tensor2D, queue: tf.Tensor2D | null): tf.Scalar {
  checkInputs("infoNceAccuracy", q, k, queue);
  return tf.tidy(() => {
    const { logits, positive } = infoNceLogits(q, k, queue, 1);
    // the positive is itself one of the logits, so "no other logit is larger" is "the positive is the max"
    return tf.mean(tf.cast(tf.greaterEqual(positive, tf.max(logits, 1)), "float32")) as tf.Scalar;
  });
}
