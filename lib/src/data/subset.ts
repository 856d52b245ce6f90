/** Subsets and summaries of an in-memory ImageDataset. */
import { Rng } from "../random";
import { DatasetError } from "./errors";
import type { ImageDataset } from "./types";

/** The images `indices` of `ds` (copied, in the given order; repeats allowed). */
export function subsetDataset(ds: ImageDataset, indices: ArrayLike<number>, name?: string): ImageDataset {
  const pixels = ds.height * ds.width * ds.channels;
  const images = new Uint8Array(indices.length * pixels);
  const labels = new Uint8Array(indices.length);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k];
    if (!(Number.isInteger(i) && i >= 0 && i < ds.count)) throw new DatasetError(`subsetDataset: index ${i} (position ${k}) out of range for '${ds.name}' (${ds.count} images)`);
    images.set(ds.images.subarray(i * pixels, (i + 1) * pixels), k * pixels);
    labels[k] = ds.labels[i];
  }
  return {
    name: name ?? `${ds.name}[${indices.length}]`,
    images,
    labels,
    classNames: [...ds.classNames],
    count: indices.length,
    height: ds.height,
    width: ds.width,
    channels: ds.channels,
  };
}

/** Images per class, indexed by label. */
export function classCounts(ds: ImageDataset): number[] {
  const counts = new Array<number>(ds.classNames.length).fill(0);
  for (let i = 0; i < ds.count; i++) counts[ds.labels[i]] = (counts[ds.labels[i]] ?? 0) + 1;
  return counts;
}

/**
 * `n` images chosen by a seeded shuffle (a pure function of (ds, n, seed)), returned in dataset
 * order; the whole dataset when `n` is undefined or not smaller than it.
 */
export function randomSubset(ds: ImageDataset, n: number | undefined, seed: number): ImageDataset {
  if (n === undefined || n >= ds.count) return ds;
  return subsetDataset(ds, new Rng(seed).permutation(ds.count).slice(0, n).sort());
}

/**
 * `perClass` images of every class, chosen by a seeded shuffle within each class (a pure
 * function of (ds, perClass, seed)), returned in dataset order. Throws when a class has fewer.
 */
export function balancedSubset(ds: ImageDataset, perClass: number, seed: number): ImageDataset {
  if (!(Number.isInteger(perClass) && perClass >= 1)) throw new DatasetError(`balancedSubset: perClass must be a positive integer, got ${perClass}`);
  const byClass: number[][] = ds.classNames.map(() => []);
  for (let i = 0; i < ds.count; i++) byClass[ds.labels[i]].push(i);
  const rng = new Rng(seed);
  const chosen: number[] = [];
  byClass.forEach((members, label) => {
    if (members.length < perClass) {
      throw new DatasetError(`balancedSubset: class '${ds.classNames[label]}' of '${ds.name}' has ${members.length} images, fewer than ${perClass}`);
    }
    chosen.push(...rng.shuffle(members).slice(0, perClass));
  });
  chosen.sort((a, b) => a - b);
  return subsetDataset(ds, chosen, `${ds.name}[${perClass}/class]`);
}

/** One-paragraph description: size, shape, class balance and pixel statistics. */
export function datasetSummary(ds: ImageDataset): string {
  const counts = classCounts(ds);
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < ds.images.length; i++) {
    const v = ds.images[i];
    sum += v;
    sumSq += v * v;
  }
  const n = Math.max(1, ds.images.length);
  const mean = sum / n / 255;
  const std = Math.sqrt(Math.max(0, sumSq / n / (255 * 255) - mean * mean));
  const classes = ds.classNames.map((c, i) => `${c} ${counts[i]}`).join(", ");
  const mb = (ds.images.length / 1e6).toFixed(1);
  return (
    `${ds.name}: ${ds.count} images ${ds.height}x${ds.width}x${ds.channels} (${mb} MB uint8), ` +
    `${ds.classNames.length} classes (${classes}); pixel mean ${mean.toFixed(4)} std ${std.toFixed(4)} (in [0,1])`
  );
}
