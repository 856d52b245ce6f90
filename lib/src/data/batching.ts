/**
 * Seeded shuffling and batching. The order of epoch e is a pure function of (seed, e), so a run
 * resumed at (epoch, startBatch) sees exactly the batches it would have seen. Only the current
 * batch exists as a float tensor: the generator disposes a batch's images when the next one is
 * requested (and when the loop ends), unless `keepBatches` is set.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../random";
import { DatasetError } from "./errors";
import type { ImageDataset } from "./types";

/** One batch: float32 [B,H,W,C] images in [0,1], their labels and dataset indices. */
export interface DatasetBatch {
  images: tf.Tensor4D;
  labels: Int32Array;
  indices: Int32Array;
  /** Epoch and the batch's position in it. */
  epoch: number;
  batch: number;
}

export interface DatasetBatchesOptions {
  batchSize: number;
  /** Seed of the shuffle; or `rng`, from which one seed is drawn when the generator is created. */
  seed?: number;
  rng?: Rng;
  /** Epoch number (default 0): the permutation is a pure function of (seed, epoch). */
  epoch?: number;
  /** Shuffle (default true); false keeps dataset order. */
  shuffle?: boolean;
  /** Drop the last incomplete batch (default true). */
  dropLast?: boolean;
  /** Skip this many batches of the epoch (batches already consumed before a resume). */
  startBatch?: number;
  /** Leave disposing each batch's images to the caller (default false: disposed on advance). */
  keepBatches?: boolean;
}

const BYTE_TO_UNIT = new Float32Array(256).map((_, i) => i / 255);

function checkDataset(fn: string, ds: ImageDataset): void {
  if (!ds || !(ds.images instanceof Uint8Array) || !(ds.labels instanceof Uint8Array)) throw new DatasetError(`${fn}: expected an ImageDataset`);
  const expected = ds.count * ds.height * ds.width * ds.channels;
  if (ds.images.length !== expected || ds.labels.length !== ds.count) {
    throw new DatasetError(
      `${fn}: dataset '${ds.name}' is inconsistent: ${ds.images.length} image bytes (expected ${ds.count}x${ds.height}x${ds.width}x${ds.channels} = ${expected}) and ${ds.labels.length} labels`,
    );
  }
}

/** 32-bit mix of (seed, epoch) -> seed of that epoch's shuffle (murmur3 finaliser). */
function epochSeed(seed: number, epoch: number): number {
  let h = (Math.floor(seed) >>> 0) ^ Math.imul(Math.floor(epoch) + 1, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The sample order of epoch `epoch`: a pure function of (count, seed, epoch). */
export function epochPermutation(count: number, seed: number, epoch: number): Int32Array {
  return new Rng(epochSeed(seed, epoch)).permutation(count);
}

/** Batches in one epoch. */
export function datasetBatchCount(count: number, batchSize: number, dropLast = true): number {
  return dropLast ? Math.floor(count / batchSize) : Math.ceil(count / batchSize);
}

/** Images `indices` of `ds` as a float32 [B,H,W,C] tensor in [0, 1]. */
export function batchToTensor(ds: ImageDataset, indices: ArrayLike<number>): tf.Tensor4D {
  checkDataset("batchToTensor", ds);
  const pixels = ds.height * ds.width * ds.channels;
  const out = new Float32Array(indices.length * pixels);
  for (let b = 0; b < indices.length; b++) {
    const i = indices[b];
    if (!(Number.isInteger(i) && i >= 0 && i < ds.count)) throw new DatasetError(`batchToTensor: index ${i} out of range for '${ds.name}' (${ds.count} images)`);
    const src = ds.images.subarray(i * pixels, (i + 1) * pixels);
    const dst = b * pixels;
    for (let p = 0; p < pixels; p++) out[dst + p] = BYTE_TO_UNIT[src[p]];
  }
  return tf.tensor4d(out, [indices.length, ds.height, ds.width, ds.channels], "float32");
}

/**
 * Seeded batches of one epoch (see the module comment). Options are checked when called, not
 * on the first `next()`.
 */
export function datasetBatches(ds: ImageDataset, opts: DatasetBatchesOptions): Generator<DatasetBatch, void, undefined> {
  checkDataset("datasetBatches", ds);
  const { batchSize } = opts;
  const epoch = opts.epoch ?? 0;
  const shuffle = opts.shuffle ?? true;
  const dropLast = opts.dropLast ?? true;
  const startBatch = opts.startBatch ?? 0;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new DatasetError(`datasetBatches: batchSize must be a positive integer, got ${batchSize}`);
  if (!(Number.isInteger(epoch) && epoch >= 0)) throw new DatasetError(`datasetBatches: epoch must be a non-negative integer, got ${epoch}`);
  if (shuffle && opts.seed === undefined && !opts.rng) throw new DatasetError("datasetBatches: shuffling needs a seed or an rng (or shuffle: false)");
  if (opts.seed !== undefined && !Number.isFinite(opts.seed)) throw new DatasetError(`datasetBatches: seed must be a finite number, got ${opts.seed}`);
  const total = datasetBatchCount(ds.count, batchSize, dropLast);
  if (!(Number.isInteger(startBatch) && startBatch >= 0 && startBatch <= total)) {
    throw new DatasetError(`datasetBatches: startBatch must be an integer in [0, ${total}], got ${startBatch}`);
  }
  const seed = opts.seed ?? (opts.rng ? opts.rng.nextUint32() : 0);
  const order = shuffle ? epochPermutation(ds.count, seed, epoch) : Int32Array.from({ length: ds.count }, (_, i) => i);
  return generateBatches(ds, order, batchSize, total, startBatch, epoch, opts.keepBatches ?? false);
}

function* generateBatches(
  ds: ImageDataset,
  order: Int32Array,
  batchSize: number,
  total: number,
  startBatch: number,
  epoch: number,
  keepBatches: boolean,
): Generator<DatasetBatch, void, undefined> {
  let previous: tf.Tensor | undefined;
  try {
    for (let b = startBatch; b < total; b++) {
      if (previous && !keepBatches) previous.dispose();
      const indices = order.slice(b * batchSize, Math.min(ds.count, (b + 1) * batchSize));
      const labels = new Int32Array(indices.length);
      for (let i = 0; i < indices.length; i++) labels[i] = ds.labels[indices[i]];
      const images = batchToTensor(ds, indices);
      previous = images;
      yield { images, labels, indices, epoch, batch: b };
    }
  } finally {
    if (previous && !keepBatches) previous.dispose();
  }
}
