/**
 * Which patches a masked autoencoder removes (MAE, He et al. 2021, sec. 3 and Fig. 6), sampled
 * per image on the host from a seeded Rng:
 *   - "random": the reference's per-image shuffle, ids_shuffle = argsort(noise), keep the first
 *     K = floor(L * (1 - ratio)) patches;
 *   - "block":  BEiT's block-wise masking (Bao et al. 2021, Algorithm 1): rectangles of random
 *     area and aspect ratio until the removed count is reached (the last few, fewer than a
 *     block, are added next to the blocks), so the count is exact as with "random";
 *   - "grid":   keep one patch of every 2x2 cell (its top-left), remove the rest: 75% on an even
 *     grid (a 7x7 grid keeps 16 of 49, 67%). Deterministic, so the ratio must be 0.75.
 * Patches are numbered row-major over the gh x gw grid (ViT / patchify order).
 */
import * as tf from "@tensorflow/tfjs-core";
import * as fastOps from "../nn/fast-ops";
import type { Rng } from "../random";

export type MaskSampling = "random" | "block" | "grid";
export const MASK_SAMPLINGS: readonly MaskSampling[] = ["random", "block", "grid"];

/** The masks of one batch: N images, L = gh * gw patches, K kept and L - K removed per image. */
export interface PatchMask {
  n: number;
  grid: [number, number];
  numPatches: number;
  keepCount: number;
  removeCount: number;
  /** [N * K] kept patch indices, image-major (what `ViT.forwardTokens({ keep })` takes). */
  keep: Int32Array;
  /** [N * (L - K)] removed patch indices, image-major. */
  removed: Int32Array;
  /** [N * L] 1 on removed patches, 0 on kept ones (maeLoss's mask). */
  mask: Float32Array;
  /** [N * L] ids_restore: position of patch l in the per-image sequence [kept; removed]. */
  idsRestore: Int32Array;
}

function checkGrid(fn: string, n: number, grid: [number, number]): void {
  if (!Number.isInteger(n) || n < 1) throw new Error(`${fn}: n must be a positive integer, got ${n}`);
  if (!Array.isArray(grid) || grid.length !== 2 || !grid.every((d) => Number.isInteger(d) && d >= 1)) {
    throw new Error(`${fn}: grid must be [rows, cols] of positive integers, got ${JSON.stringify(grid)}`);
  }
}

/** K = floor(L * (1 - ratio)) kept patches (the reference's len_keep); at least one kept and one removed. */
export function keptPatchCount(numPatches: number, ratio: number): number {
  if (!(ratio > 0 && ratio < 1)) throw new Error(`mask ratio must be in (0, 1), got ${ratio}`);
  const keep = Math.floor(numPatches * (1 - ratio) + 1e-9); // 1e-9: 10 * (1 - 0.9) is 0.999...
  if (keep < 1 || keep >= numPatches) {
    throw new Error(`mask ratio ${ratio} keeps ${keep} of ${numPatches} patches; at least one patch must be kept and one removed`);
  }
  return keep;
}

/** Builds the PatchMask of per-image orders [kept..., removed...] (each row a permutation of 0..L-1). */
function fromOrders(n: number, grid: [number, number], keepCount: number, order: Int32Array): PatchMask {
  const l = grid[0] * grid[1];
  const m = l - keepCount;
  const keep = new Int32Array(n * keepCount);
  const removed = new Int32Array(n * m);
  const mask = new Float32Array(n * l);
  const idsRestore = new Int32Array(n * l);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < l; j++) {
      const patch = order[i * l + j];
      idsRestore[i * l + patch] = j;
      if (j < keepCount) keep[i * keepCount + j] = patch;
      else {
        removed[i * m + j - keepCount] = patch;
        mask[i * l + patch] = 1;
      }
    }
  }
  return { n, grid: [grid[0], grid[1]], numPatches: l, keepCount, removeCount: m, keep, removed, mask, idsRestore };
}

/** MAE's random_masking: noise ~ U(0,1) per patch, ids_shuffle = argsort(noise), keep the first K. */
export function randomPatchMask(n: number, grid: [number, number], ratio: number, rng: Rng): PatchMask {
  checkGrid("randomPatchMask", n, grid);
  const l = grid[0] * grid[1];
  const keepCount = keptPatchCount(l, ratio);
  const order = new Int32Array(n * l);
  const noise = new Float64Array(l);
  const ids = Array.from({ length: l }, (_, j) => j);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < l; j++) noise[j] = rng.next();
    ids.sort((a, b) => noise[a] - noise[b] || a - b);
    order.set(ids, i * l);
  }
  return fromOrders(n, grid, keepCount, order);
}

/**
 * One image's block-wise mask (BEiT's MaskingGenerator): repeatedly a rectangle of area
 * s ~ U(minBlock, remaining) and aspect ratio r ~ logU(0.3, 1/0.3), h = round(sqrt(s r)),
 * w = round(sqrt(s / r)), at a random place; it is taken if it adds between 1 and `remaining`
 * new patches (10 tries a block). When fewer than `minBlock` patches remain to remove, or no
 * block fits, neighbours of removed patches (then any patch) are added one at a time until exactly
 * `count` are removed: no removed patch stands alone.
 */
function blockMaskOne(gh: number, gw: number, count: number, minBlock: number, rng: Rng): Uint8Array {
  const removed = new Uint8Array(gh * gw);
  let total = 0;
  const logR = [Math.log(0.3), Math.log(1 / 0.3)];
  while (count - total >= minBlock || total === 0) {
    let added = 0;
    for (let attempt = 0; attempt < 10 && added === 0; attempt++) {
      const remaining = count - total;
      const area = rng.uniform(Math.min(minBlock, remaining), remaining);
      const aspect = Math.exp(rng.uniform(logR[0], logR[1]));
      const h = Math.round(Math.sqrt(area * aspect));
      const w = Math.round(Math.sqrt(area / aspect));
      if (h < 1 || w < 1 || h > gh || w > gw) continue;
      const top = rng.int(0, gh - h + 1);
      const left = rng.int(0, gw - w + 1);
      let fresh = 0;
      for (let y = top; y < top + h; y++) for (let x = left; x < left + w; x++) fresh += removed[y * gw + x] ? 0 : 1;
      if (fresh === 0 || fresh > remaining) continue;
      for (let y = top; y < top + h; y++) for (let x = left; x < left + w; x++) removed[y * gw + x] = 1;
      added = fresh;
    }
    if (added === 0) break;
    total += added;
  }
  while (total < count) {
    // top up next to the blocks (a random kept patch with a removed 4-neighbour), else anywhere
    const border: number[] = [];
    const kept: number[] = [];
    for (let y = 0; y < gh; y++) {
      for (let x = 0; x < gw; x++) {
        const p = y * gw + x;
        if (removed[p]) continue;
        kept.push(p);
        if ((y > 0 && removed[p - gw]) || (y < gh - 1 && removed[p + gw]) || (x > 0 && removed[p - 1]) || (x < gw - 1 && removed[p + 1])) border.push(p);
      }
    }
    const pool = border.length > 0 ? border : kept;
    removed[pool[rng.int(0, pool.length)]] = 1;
    total++;
  }
  return removed;
}

/**
 * Block-wise masking (MAE Fig. 6 middle, BEiT's algorithm) with exactly L - K removed patches per
 * image. The smallest block is BEiT's 16 of 196 patches scaled to the grid (4 patches on 7x7).
 */
export function blockPatchMask(n: number, grid: [number, number], ratio: number, rng: Rng): PatchMask {
  checkGrid("blockPatchMask", n, grid);
  const [gh, gw] = grid;
  const l = gh * gw;
  const keepCount = keptPatchCount(l, ratio);
  const minBlock = Math.max(1, Math.round((16 * l) / 196));
  const order = new Int32Array(n * l);
  for (let i = 0; i < n; i++) {
    const removed = blockMaskOne(gh, gw, l - keepCount, minBlock, rng);
    const kept: number[] = [];
    const gone: number[] = [];
    for (let p = 0; p < l; p++) (removed[p] ? gone : kept).push(p);
    order.set(kept, i * l);
    order.set(gone, i * l + keepCount);
  }
  return fromOrders(n, grid, keepCount, order);
}

/** Grid-wise masking (MAE Fig. 6 right): keep the top-left patch of every 2x2 cell, the same for every image. */
export function gridPatchMask(n: number, grid: [number, number], ratio = 0.75): PatchMask {
  checkGrid("gridPatchMask", n, grid);
  if (Math.abs(ratio - 0.75) > 1e-9) throw new Error(`grid mask sampling keeps one patch of every 2x2 cell (ratio 0.75), got mask ratio ${ratio}`);
  const [gh, gw] = grid;
  if (gh < 2 || gw < 2) throw new Error(`grid mask sampling needs a grid of at least 2x2 patches, got ${gh}x${gw}`);
  const l = gh * gw;
  const kept: number[] = [];
  const gone: number[] = [];
  for (let y = 0; y < gh; y++) for (let x = 0; x < gw; x++) (y % 2 === 0 && x % 2 === 0 ? kept : gone).push(y * gw + x);
  const order = new Int32Array(n * l);
  for (let i = 0; i < n; i++) order.set([...kept, ...gone], i * l);
  return fromOrders(n, grid, kept.length, order);
}

/** The mask of one batch by sampling kind (`rng` is unused by "grid"). */
export function samplePatchMask(n: number, grid: [number, number], ratio: number, rng: Rng, sampling: MaskSampling = "random"): PatchMask {
  switch (sampling) {
    case "random":
      return randomPatchMask(n, grid, ratio, rng);
    case "block":
      return blockPatchMask(n, grid, ratio, rng);
    case "grid":
      return gridPatchMask(n, grid, ratio);
    default:
      throw new Error(`mask sampling must be one of ${MASK_SAMPLINGS.join(", ")}, got '${sampling as string}'`);
  }
}

/** Checks a (ratio, sampling) pair for a grid up front; throws the error sampling would throw. */
export function checkMaskSampling(grid: [number, number], ratio: number, sampling: MaskSampling): void {
  if (!MASK_SAMPLINGS.includes(sampling)) throw new Error(`mask sampling must be one of ${MASK_SAMPLINGS.join(", ")}, got '${sampling as string}'`);
  if (sampling === "grid") gridPatchMask(1, grid, ratio);
  else keptPatchCount(grid[0] * grid[1], ratio);
}

/** The images [N, H, W, C] with their removed patches set to `fill` (grey by default): what the encoder is shown, for galleries. */
export function maskPatches(images: tf.Tensor4D, mask: PatchMask, patchSize: number, fill = 0.5): tf.Tensor4D {
  const [n, h, w] = images.shape;
  if (images.rank !== 4 || n !== mask.n || h !== mask.grid[0] * patchSize || w !== mask.grid[1] * patchSize) {
    throw new Error(`maskPatches: images [${images.shape}] do not match ${mask.n} masks of a ${mask.grid.join("x")} grid of ${patchSize}-pixel patches`);
  }
  return tf.tidy(() => {
    const m = tf.tensor3d(mask.mask, [n, mask.numPatches, 1]);
    const kept = tf.mul(fastOps.patchify(images, patchSize), tf.sub(1, m));
    return fastOps.unpatchify(tf.add(kept, tf.mul(m, fill)) as tf.Tensor3D, patchSize, mask.grid);
  });
}
