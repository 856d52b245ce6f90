/**
 * Exact k-nearest neighbours (squared Euclidean) for the t-SNE affinities: candidate distances
 * |x|^2 + |y|^2 - 2 x.y from chunked matrix products (tf.matMul on a fast backend, a blocked
 * JS loop otherwise), top-k per row by a bounded max-heap, then the k chosen distances
 * recomputed exactly in float64 so the affinities do not depend on the backend's rounding.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { RowMatrix } from "./matrix-input";

export type KnnComputeMethod = "auto" | "tf" | "js";

export interface KnnGraph {
  /** n * k neighbour indices, row-major, nearest first. */
  indices: Int32Array;
  /** n * k squared Euclidean distances matching `indices`. */
  sqDistances: Float64Array;
  k: number;
}

/** Bounded max-heap over (distance, index) pairs keeping the k smallest (ties by lower index). */
class TopKHeap {
  readonly d: Float64Array;
  readonly idx: Int32Array;
  size = 0;
  constructor(readonly k: number) {
    this.d = new Float64Array(k);
    this.idx = new Int32Array(k);
  }
  reset(): void {
    this.size = 0;
  }
  private greater(a: number, b: number): boolean {
    return this.d[a] > this.d[b] || (this.d[a] === this.d[b] && this.idx[a] > this.idx[b]);
  }
  private swap(a: number, b: number): void {
    const td = this.d[a];
    this.d[a] = this.d[b];
    this.d[b] = td;
    const ti = this.idx[a];
    this.idx[a] = this.idx[b];
    this.idx[b] = ti;
  }
  push(dist: number, index: number): void {
    if (this.size < this.k) {
      let c = this.size++;
      this.d[c] = dist;
      this.idx[c] = index;
      while (c > 0) {
        const p = (c - 1) >> 1;
        if (!this.greater(c, p)) break;
        this.swap(c, p);
        c = p;
      }
      return;
    }
    if (dist > this.d[0] || (dist === this.d[0] && index > this.idx[0])) return;
    this.d[0] = dist;
    this.idx[0] = index;
    let p = 0;
    for (;;) {
      const l = 2 * p + 1;
      const r = l + 1;
      let m = p;
      if (l < this.size && this.greater(l, m)) m = l;
      if (r < this.size && this.greater(r, m)) m = r;
      if (m === p) break;
      this.swap(p, m);
      p = m;
    }
  }
}

function rowSqNorms(x: RowMatrix): Float64Array {
  const { values, rows, cols } = x;
  const norms = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    const b = i * cols;
    for (let c = 0; c < cols; c++) s += values[b + c] * values[b + c];
    norms[i] = s;
  }
  return norms;
}

function activeBackendName(): string | null {
  try {
    return tf.getBackend() ?? null;
  } catch {
    return null;
  }
}

/** Whether the tf path is used: a backend other than the (slow-matMul) reference cpu one is active. */
export function knnUsesTf(method: KnnComputeMethod): boolean {
  if (method === "js") return false;
  const name = activeBackendName();
  if (method === "tf") {
    if (name === null) throw new Error("exactKnnGraph: method 'tf' needs an initialised tf backend (initBackend)");
    return true;
  }
  return name !== null && name !== "cpu";
}

/** Dot products of rows [r0, r0+m) with all rows, written to out[m * n] (blocked JS loop, 4 rows at a time). */
function dotBlockJs(x: RowMatrix, r0: number, m: number, out: Float64Array): void {
  const { values: X, rows: n, cols: d } = x;
  for (let a = 0; a < m; a += 4) {
    const rowsHere = Math.min(4, m - a);
    const b0 = (r0 + a) * d;
    const b1 = b0 + d;
    const b2 = b1 + d;
    const b3 = b2 + d;
    for (let j = 0; j < n; j++) {
      const bj = j * d;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      if (rowsHere === 4) {
        for (let c = 0; c < d; c++) {
          const y = X[bj + c];
          s0 += X[b0 + c] * y;
          s1 += X[b1 + c] * y;
          s2 += X[b2 + c] * y;
          s3 += X[b3 + c] * y;
        }
      } else {
        for (let c = 0; c < d; c++) {
          const y = X[bj + c];
          s0 += X[b0 + c] * y;
          if (rowsHere > 1) s1 += X[b1 + c] * y;
          if (rowsHere > 2) s2 += X[b2 + c] * y;
        }
      }
      out[a * n + j] = s0;
      if (rowsHere > 1) out[(a + 1) * n + j] = s1;
      if (rowsHere > 2) out[(a + 2) * n + j] = s2;
      if (rowsHere > 3) out[(a + 3) * n + j] = s3;
    }
  }
}

/**
 * The k nearest neighbours of every row of x (excluding the row itself), nearest first.
 * `method` "auto" uses tf.matMul when a non-cpu backend is active, else a JS loop.
 */
export async function exactKnnGraph(x: RowMatrix, k: number, method: KnnComputeMethod = "auto"): Promise<KnnGraph> {
  const { values: X, rows: n, cols: d } = x;
  if (!Number.isInteger(k) || k < 1 || k > n - 1) throw new Error(`exactKnnGraph: k must be an integer in [1, ${n - 1}], got ${k}`);
  const norms = rowSqNorms(x);
  const useTf = knnUsesTf(method);
  const chunk = Math.max(4, Math.min(n, Math.floor(4_000_000 / n)));
  const heap = new TopKHeap(k);
  const indices = new Int32Array(n * k);
  const sqDistances = new Float64Array(n * k);
  const jsDots = useTf ? null : new Float64Array(chunk * n);
  const exact = new Float64Array(k);
  const order = new Int32Array(k);
  let all: tf.Tensor2D | null = null;
  let allT: tf.Tensor2D | null = null;
  if (useTf) {
    all = tf.tensor2d(X, [n, d]);
    allT = tf.transpose(all);
  }
  try {
    for (let r0 = 0; r0 < n; r0 += chunk) {
      const m = Math.min(chunk, n - r0);
      let dots: ArrayLike<number>;
      if (useTf) {
        const prod = tf.tidy(() => tf.matMul(tf.slice(all!, [r0, 0], [m, d]), allT!));
        dots = (await prod.data()) as Float32Array;
        prod.dispose();
      } else {
        dotBlockJs(x, r0, m, jsDots!);
        dots = jsDots!;
      }
      for (let a = 0; a < m; a++) {
        const i = r0 + a;
        const ni = norms[i];
        const base = a * n;
        heap.reset();
        for (let j = 0; j < n; j++) {
          if (j === i) continue;
          heap.push(ni + norms[j] - 2 * dots[base + j], j);
        }
        // Exact float64 distances of the chosen k, sorted ascending (ties by index).
        const bi = i * d;
        for (let t = 0; t < k; t++) {
          const bj = heap.idx[t] * d;
          let s = 0;
          for (let c = 0; c < d; c++) {
            const diff = X[bi + c] - X[bj + c];
            s += diff * diff;
          }
          exact[t] = s;
          order[t] = t;
        }
        order.sort((p, q) => exact[p] - exact[q] || heap.idx[p] - heap.idx[q]);
        for (let t = 0; t < k; t++) {
          sqDistances[i * k + t] = exact[order[t]];
          indices[i * k + t] = heap.idx[order[t]];
        }
      }
    }
  } finally {
    all?.dispose();
    allT?.dispose();
  }
  return { indices, sqDistances, k };
}
