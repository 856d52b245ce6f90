/**
 * UMAP (McInnes et al. 2018) through umap-js with a seeded random source, so the same seed gives
 * the same projection. The neighbour graph is either exact (kNN from chunked matrix products,
 * see knn-graph.ts) or umap-js's approximate nearest-neighbour descent.
 */
import { UMAP } from "umap-js";
import { Rng } from "../random";
import { exactKnnGraph, type KnnComputeMethod } from "./knn-graph";
import { rowsToArrays, toRowMatrix, type ProjectionInput } from "./matrix-input";

export interface UmapProjectOptions {
  /** Neighbourhood size (default 15). */
  nNeighbors?: number;
  /** Minimum distance between embedded points (default 0.1). */
  minDist?: number;
  /** Output dimensions (default 2). */
  nComponents?: number;
  /** Optimisation epochs (default: umap-js's choice, 500 below 10k points). */
  nEpochs?: number;
  seed?: number;
  /** "exact" (default) computes the kNN graph exactly; "nn-descent" uses umap-js's approximate search. */
  neighbours?: "exact" | "nn-descent";
  knnMethod?: KnnComputeMethod;
  /** Number of columns when `data` is a flat typed array. */
  cols?: number;
  /** Called after each epoch; return false to stop early. */
  onEpoch?: (epoch: number) => boolean | void;
}

/** The rows of `data` projected by UMAP: n rows of nComponents numbers. */
export async function umapProject(data: ProjectionInput, opts: UmapProjectOptions = {}): Promise<number[][]> {
  const x = toRowMatrix(data, opts.cols, "umapProject");
  const nNeighbors = opts.nNeighbors ?? 15;
  if (!Number.isInteger(nNeighbors) || nNeighbors < 2 || nNeighbors >= x.rows) {
    throw new Error(`umapProject: nNeighbors must be an integer in [2, ${x.rows - 1}] (n=${x.rows}), got ${nNeighbors}`);
  }
  const minDist = opts.minDist ?? 0.1;
  if (!(minDist >= 0)) throw new Error(`umapProject: minDist must be >= 0, got ${minDist}`);
  const rng = new Rng(opts.seed ?? 0);
  const umap = new UMAP({
    nNeighbors,
    minDist,
    nComponents: opts.nComponents ?? 2,
    nEpochs: opts.nEpochs,
    random: () => rng.next(),
  });
  const rows = rowsToArrays(x.values, x.rows, x.cols);
  if ((opts.neighbours ?? "exact") === "exact") {
    // umap-js's kNN lists include the point itself first (distance 0).
    const k = nNeighbors - 1;
    const g = await exactKnnGraph(x, k, opts.knnMethod ?? "auto");
    const knnIndices: number[][] = new Array(x.rows);
    const knnDistances: number[][] = new Array(x.rows);
    for (let i = 0; i < x.rows; i++) {
      const idx = [i];
      const dist = [0];
      for (let t = 0; t < k; t++) {
        idx.push(g.indices[i * k + t]);
        dist.push(Math.sqrt(g.sqDistances[i * k + t]));
      }
      knnIndices[i] = idx;
      knnDistances[i] = dist;
    }
    umap.setPrecomputedKNN(knnIndices, knnDistances);
  }
  const embedding = await umap.fitAsync(rows, (e) => opts.onEpoch?.(e));
  return embedding.map((r) => r.slice());
}
