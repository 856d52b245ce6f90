/**
 * NT-Xent (normalised temperature-scaled cross-entropy), the SimCLR loss (Chen et al. 2020, eq. 1):
 *
 *   l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t) )
 *
 * averaged over all 2N anchors of a batch of N pairs, where sim is cosine similarity and the
 * positive j of anchor i is the other view of the same image. Every other of the 2N - 1
 * candidates (both views of the other N - 1 images) is a negative.
 *
 * Differentiable on every backend: the diagonal (self-similarity) is removed with a large
 * negative additive mask and the positives are picked with a one-hot mask product, so the
 * gradient path has no stridedSlice / einsum / gather.
 */
import * as tf from "@tensorflow/tfjs-core";
import { l2Normalize, matMul } from "../nn/fast-ops";

/** Added to the self-similarity logits; exp(-1e9 - max) underflows to exactly 0. */
const SELF_MASK_VALUE = -1e9;

function checkPair(fn: string, z1: tf.Tensor, z2: tf.Tensor): void {
  if (z1.rank !== 2 || z2.rank !== 2) {
    throw new Error(`${fn}: z1 and z2 must be [N, D] tensors, got shapes [${z1.shape}] and [${z2.shape}]`);
  }
  if (z1.shape[0] !== z2.shape[0] || z1.shape[1] !== z2.shape[1]) {
    throw new Error(`${fn}: z1 and z2 must have the same shape, got [${z1.shape}] and [${z2.shape}]`);
  }
  if (z1.size < 1) throw new Error(`${fn}: empty batch, shape [${z1.shape}]`);
}

/** Row-wise L2 normalisation x / max(||x||, 1e-12), as torch.nn.functional.normalize. */
/** [2N, 2N] additive mask: SELF_MASK_VALUE on the diagonal, 0 elsewhere (a constant). */
function selfSimilarityMask(n2: number): tf.Tensor2D {
  return tf.mul(tf.eye(n2), SELF_MASK_VALUE) as tf.Tensor2D;
}

/** [2N, 2N] one-hot of each anchor's positive: row i has a 1 at column (i + N) mod 2N. */
function positivePairMask(n: number): tf.Tensor2D {
  const data = new Float32Array(4 * n * n);
  for (let i = 0; i < 2 * n; i++) data[i * 2 * n + ((i + n) % (2 * n))] = 1;
  return tf.tensor2d(data, [2 * n, 2 * n]);
}

/** Cosine-similarity logits of the 2N stacked views with the diagonal masked: [2N, 2N]. */
function maskedSimilarityLogits(z1: tf.Tensor2D, z2: tf.Tensor2D, temperature: number): tf.Tensor2D {
  const z = l2Normalize(tf.concat([z1, z2], 0), 1) as tf.Tensor2D;
  const sim = matMul(z, tf.transpose(z, [1, 0])) as tf.Tensor2D;
  return tf.add(tf.div(sim, temperature), selfSimilarityMask(2 * z1.shape[0])) as tf.Tensor2D;
}

/**
 * SimCLR's NT-Xent loss. z1, z2: [N, D] projections of the two views (not normalised; this
 * function normalises them). Returns the mean over the 2N anchors (a scalar).
 */
export function ntXentLoss(z1: tf.Tensor2D, z2: tf.Tensor2D, temperature: number): tf.Scalar {
  checkPair("ntXentLoss", z1, z2);
  if (!(Number.isFinite(temperature) && temperature > 0)) {
    throw new Error(`ntXentLoss: temperature must be a positive number, got ${temperature}`);
  }
  return tf.tidy(() => {
    const n = z1.shape[0];
    const logits = maskedSimilarityLogits(z1, z2, temperature);
    const logProb = tf.logSoftmax(logits, 1);
    // -1/(2N) sum_i log p(positive of i | i)   (eq. 1 summed over both orderings of every pair)
    const positiveLogProb = tf.sum(tf.mul(logProb, positivePairMask(n)));
    return tf.div(tf.neg(positiveLogProb), 2 * n) as tf.Scalar;
  });
}

/**
 * Top-1 contrastive accuracy: the fraction of the 2N anchors whose most similar candidate
 * (among the other 2N - 1 embeddings, by cosine similarity) is their positive. Not differentiable.
 */
export function contrastiveAccuracy(z1: tf.Tensor2D, z2: tf.Tensor2D): tf.Scalar {
  checkPair("contrastiveAccuracy", z1, z2);
  return tf.tidy(() => {
    const n = z1.shape[0];
    const logits = maskedSimilarityLogits(z1, z2, 1);
    const predicted = tf.argMax(logits, 1);
    const positiveIndex = tf.tensor1d(Array.from({ length: 2 * n }, (_, i) => (i + n) % (2 * n)), "int32");
    return tf.mean(tf.cast(tf.equal(predicted, positiveIndex), "float32")) as tf.Scalar;
  });
}
