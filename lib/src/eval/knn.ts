/**
 * Weighted k-nearest-neighbour classifier on frozen features (Wu et al. 2018, InstDisc; the
 * DINO eval_knn.py protocol): cosine similarity between L2-normalised features, the k most
 * similar training samples vote for their class with weight exp(sim / T), top-1 of the votes.
 * The test set is processed in chunks so the [chunk, Ntrain] similarity block bounds memory.
 */
import * as tf from "@tensorflow/tfjs-core";
import { l2Normalize } from "../nn/fast-ops";
import { EvalLabels, checkFeatures, inferNumClasses, labelsToInt32 } from "./labels";

export interface KnnOptions {
  /** Neighbours that vote (default 20; capped at the training-set size). */
  k?: number;
  /** Vote weight exp(sim / temperature) (default 0.07, as DINO). Infinity gives a plain majority vote. */
  temperature?: number;
  /** Number of classes (default: 1 + the largest label). */
  numClasses?: number;
  /** Test rows per similarity block (default: 2^23 / Ntrain rows, i.e. a 32 MB block; 139 rows for 60k, at most 4096). */
  chunkSize?: number;
}

/** Weighted k-NN predicted class of every test row: Int32Array of length Ntest. Ties go to the lower class index. */
export function knnPredict(trainFeatures: tf.Tensor2D, trainLabels: EvalLabels, testFeatures: tf.Tensor2D, opts: KnnOptions = {}): Int32Array {
  checkFeatures("knnPredict", "trainFeatures", trainFeatures);
  checkFeatures("knnPredict", "testFeatures", testFeatures);
  const [nTrain, dim] = trainFeatures.shape;
  const nTest = testFeatures.shape[0];
  if (testFeatures.shape[1] !== dim) {
    throw new Error(`knnPredict: train features have dimension ${dim} but test features have ${testFeatures.shape[1]}`);
  }
  const trainY = labelsToInt32("knnPredict", "trainLabels", trainLabels, nTrain);
  const numClasses = opts.numClasses ?? inferNumClasses(trainY);
  if (!(Number.isInteger(numClasses) && numClasses >= 1)) throw new Error(`knnPredict: numClasses must be a positive integer, got ${numClasses}`);
  for (let i = 0; i < nTrain; i++) {
    if (trainY[i] >= numClasses) throw new Error(`knnPredict: trainLabels[${i}] = ${trainY[i]} >= numClasses ${numClasses}`);
  }
  const kRequested = opts.k ?? 20;
  if (!(Number.isInteger(kRequested) && kRequested >= 1)) throw new Error(`knnPredict: k must be a positive integer, got ${kRequested}`);
  const k = Math.min(kRequested, nTrain);
  const temperature = opts.temperature ?? 0.07;
  if (!(temperature > 0)) throw new Error(`knnPredict: temperature must be > 0, got ${temperature}`);
  const chunkSize = opts.chunkSize ?? Math.max(1, Math.min(4096, Math.floor(2 ** 23 / nTrain)));
  if (!(Number.isInteger(chunkSize) && chunkSize >= 1)) throw new Error(`knnPredict: chunkSize must be a positive integer, got ${chunkSize}`);

  // Inverse norms of the training rows, [1, Ntrain], computed in row blocks (no full-size
  // temporary). cos(q, x_j) = (q/|q|) . x_j / |x_j|: no normalised copy of the training set.
  const trainInvNorm = tf.tidy(() => {
    const blocks: tf.Tensor[] = [];
    for (let start = 0; start < nTrain; start += 4096) {
      const rows = Math.min(4096, nTrain - start);
      const block = tf.slice(trainFeatures, [start, 0], [rows, dim]);
      blocks.push(tf.rsqrt(tf.maximum(tf.sum(tf.square(block), 1), 1e-24)));
    }
    return tf.reshape(tf.concat(blocks, 0), [1, nTrain]);
  });
  const predictions = new Int32Array(nTest);
  const votes = new Float64Array(numClasses);
  try {
    for (let start = 0; start < nTest; start += chunkSize) {
      const rows = Math.min(chunkSize, nTest - start);
      const { values, indices } = tf.tidy(() => {
        const query = l2Normalize(tf.slice(testFeatures, [start, 0], [rows, dim]), 1) as tf.Tensor2D;
        // train [Ntrain, D] @ query^T [D, rows], then transpose. With the training set as the
        // right operand instead, the wasm backend's matMul keeps a packed copy of it (its heap
        // grew by ~1.3x the training set's size) and ran 2x slower in our measurement.
        const similarityT = tf.matMul(trainFeatures, tf.transpose(query, [1, 0]) as tf.Tensor2D);
        const similarity = tf.mul(tf.transpose(similarityT, [1, 0]), trainInvNorm);
        return tf.topk(similarity, k, true);
      });
      const sims = values.dataSync();
      const idx = indices.dataSync();
      tf.dispose([values, indices]);
      for (let r = 0; r < rows; r++) {
        votes.fill(0);
        const top = sims[r * k]; // weights exp((s - top) / T) = exp(s / T) up to a common factor
        for (let j = 0; j < k; j++) votes[trainY[idx[r * k + j]]] += Math.exp((sims[r * k + j] - top) / temperature);
        let best = 0;
        for (let c = 1; c < numClasses; c++) if (votes[c] > votes[best]) best = c;
        predictions[start + r] = best;
      }
    }
  } finally {
    trainInvNorm.dispose();
  }
  return predictions;
}

/** Top-1 accuracy in [0, 1] of the weighted k-NN classifier (see knnPredict). */
export function knnAccuracy(
  trainFeatures: tf.Tensor2D,
  trainLabels: EvalLabels,
  testFeatures: tf.Tensor2D,
  testLabels: EvalLabels,
  opts: KnnOptions = {},
): number {
  checkFeatures("knnAccuracy", "testFeatures", testFeatures);
  const testY = labelsToInt32("knnAccuracy", "testLabels", testLabels, testFeatures.shape[0]);
  const predictions = knnPredict(trainFeatures, trainLabels, testFeatures, opts);
  let correct = 0;
  for (let i = 0; i < testY.length; i++) if (predictions[i] === testY[i]) correct++;
  return correct / testY.length;
}
