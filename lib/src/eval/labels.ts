/** Label inputs accepted by the evaluators: typed/plain arrays of class indices or a rank-1 tensor. */
import * as tf from "@tensorflow/tfjs-core";

export type EvalLabels = ArrayLike<number> | tf.Tensor;

/** Copy labels to an Int32Array, checking length and that every entry is a class index >= 0. */
export function labelsToInt32(fn: string, name: string, labels: EvalLabels, expectedLength: number): Int32Array {
  let values: ArrayLike<number>;
  if (labels instanceof tf.Tensor) {
    if (labels.rank !== 1) throw new Error(`${fn}: ${name} must be a rank-1 tensor, got shape [${labels.shape}]`);
    values = labels.dataSync();
  } else {
    values = labels;
  }
  if (values.length !== expectedLength) {
    throw new Error(`${fn}: ${name} has ${values.length} labels but the features have ${expectedLength} rows`);
  }
  const out = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isInteger(v) || v < 0) throw new Error(`${fn}: ${name}[${i}] = ${v} is not a class index (integer >= 0)`);
    out[i] = v;
  }
  return out;
}

/** 1 + the largest label across the given label arrays (at least 1). */
export function inferNumClasses(...labelSets: Int32Array[]): number {
  let max = 0;
  for (const labels of labelSets) for (let i = 0; i < labels.length; i++) if (labels[i] > max) max = labels[i];
  return max + 1;
}

export function checkFeatures(fn: string, name: string, f: tf.Tensor): void {
  if (!(f instanceof tf.Tensor) || f.rank !== 2) {
    throw new Error(`${fn}: ${name} must be an [N, D] tensor, got ${f instanceof tf.Tensor ? `shape [${f.shape}]` : typeof f}`);
  }
  if (f.size < 1) throw new Error(`${fn}: ${name} is empty, shape [${f.shape}]`);
}
