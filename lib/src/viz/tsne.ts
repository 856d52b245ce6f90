/**
 * Barnes-Hut t-SNE (van der Maaten 2014, "Accelerating t-SNE using tree-based algorithms") in
 * typed arrays, following scikit-learn's TSNE(method="barnes_hut") defaults:
 *   - sparse input affinities from the exact 3*perplexity nearest neighbours (squared Euclidean),
 *     per-point bandwidths by binary search on the entropy (eq. 1 of van der Maaten & Hinton 2008),
 *     symmetrised P = (P + P^T) / sum;
 *   - gradient dC/dy_i = 4 (sum_j p_ij q_ij Z (y_i - y_j) - sum_j q_ij^2 Z (y_i - y_j))  (eq. 5 of the
 *     2014 paper), the repulsive sum approximated on a quadtree with the theta criterion
 *     (cell width / distance < theta);
 *   - early exaggeration 12 for 250 iterations with momentum 0.5, then momentum 0.8; gains
 *     (+0.2 / *0.8, min 0.01); learning rate "auto" = max(n / exaggeration / 4, 50); PCA init
 *     scaled to std 1e-4 (or seeded Gaussian init).
 * The result is a deterministic function of the data and options (the seed drives the random init).
 */
import { Rng } from "../random";
import { exactKnnGraph, type KnnComputeMethod } from "./knn-graph";
import { rowsToArrays, toRowMatrix, type ProjectionInput, type RowMatrix } from "./matrix-input";

export interface TsneOptions {
  /** Effective number of neighbours (default 30). Must be < number of points. */
  perplexity?: number;
  /** Gradient-descent iterations in total, including the early-exaggeration phase (default 1000). */
  iterations?: number;
  /** Seed of the random init (default 0). */
  seed?: number;
  /** Barnes-Hut accuracy: 0 = exact repulsion (O(n^2)), default 0.5. */
  theta?: number;
  earlyExaggeration?: number;
  /** Iterations with early exaggeration (default 250, capped at `iterations`). */
  exaggerationIterations?: number;
  /** Step size; "auto" (default) = max(n / earlyExaggeration / 4, 50) as scikit-learn. */
  learningRate?: number | "auto";
  /** "pca" (default, scaled to std 1e-4 on the first axis) or "random" (N(0, 1e-4^2), seeded). */
  init?: "pca" | "random";
  /** How the neighbour search computes distances (default "auto": tf.matMul on a non-cpu backend). */
  knnMethod?: KnnComputeMethod;
  /** Number of columns when `data` is a flat typed array. */
  cols?: number;
  /** Called every `progressEvery` iterations (and at the end) with the current KL divergence. */
  onProgress?: (p: { iteration: number; iterations: number; kl: number }) => void;
  progressEvery?: number;
  /** Points per quadtree leaf (default 4; scikit-learn uses 1). Leaf interactions are exact. */
  leafSize?: number;
  /** Points per group of the grouped tree walk (default 32; 1 = one walk per point as scikit-learn). */
  groupSize?: number;
}

export interface TsneResult {
  /** n rows of [x, y]. */
  points: number[][];
  /** The same coordinates, row-major [n, 2]. */
  embedding: Float64Array;
  /** KL(P || Q) at the end (Q's normaliser from the Barnes-Hut estimate when theta > 0). */
  kl: number;
  iterations: number;
  seconds: number;
  /** Seconds spent per phase (affinities, init, attraction, build, repulsion). */
  timings: Record<string, number>;
}

/** Symmetric sparse joint probabilities P in CSR form (rows sum to the row marginals, total 1). */
export interface TsneAffinities {
  n: number;
  rowPtr: Int32Array;
  cols: Int32Array;
  vals: Float64Array;
}

const MACHINE_EPSILON = 2.220446049250313e-16;

/**
 * Conditional probabilities p_{j|i} over each point's k neighbours with the bandwidth found by
 * binary search so that the entropy equals log(perplexity) (scikit-learn's _binary_search_perplexity).
 */
export function conditionalAffinities(sqDistances: Float64Array, n: number, k: number, perplexity: number): Float64Array {
  const P = new Float64Array(n * k);
  const desiredEntropy = Math.log(perplexity);
  const tol = 1e-5;
  for (let i = 0; i < n; i++) {
    let beta = 1;
    let betaMin = -Infinity;
    let betaMax = Infinity;
    const b = i * k;
    for (let step = 0; step < 100; step++) {
      let sumP = 0;
      for (let t = 0; t < k; t++) {
        const p = Math.exp(-sqDistances[b + t] * beta);
        P[b + t] = p;
        sumP += p;
      }
      if (sumP === 0) sumP = 1e-8;
      let sumDistP = 0;
      for (let t = 0; t < k; t++) {
        P[b + t] /= sumP;
        sumDistP += sqDistances[b + t] * P[b + t];
      }
      const entropy = Math.log(sumP) + beta * sumDistP;
      const diff = entropy - desiredEntropy;
      if (Math.abs(diff) <= tol) break;
      if (diff > 0) {
        betaMin = beta;
        beta = betaMax === Infinity ? beta * 2 : (beta + betaMax) / 2;
      } else {
        betaMax = beta;
        beta = betaMin === -Infinity ? beta / 2 : (beta + betaMin) / 2;
      }
    }
  }
  return P;
}

/** P = (P_cond + P_cond^T) / sum, as CSR (each row's columns in first-seen order). */
export function symmetrizeAffinities(indices: Int32Array, condP: Float64Array, n: number, k: number): TsneAffinities {
  // Row i of P_cond + P_cond^T: its own k neighbours, then every j that has i as a neighbour.
  const incoming = new Int32Array(n + 1);
  for (let e = 0; e < n * k; e++) incoming[indices[e] + 1]++;
  for (let i = 0; i < n; i++) incoming[i + 1] += incoming[i];
  const inFill = incoming.slice(0, n);
  const inFrom = new Int32Array(n * k);
  const inVal = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < k; t++) {
      const j = indices[i * k + t];
      inFrom[inFill[j]] = i;
      inVal[inFill[j]++] = condP[i * k + t];
    }
  }
  const rowPtr = new Int32Array(n + 1);
  const cols = new Int32Array(2 * n * k);
  const vals = new Float64Array(2 * n * k);
  const slot = new Int32Array(n).fill(-1);
  let m = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const rowStart = m;
    const add = (j: number, p: number) => {
      total += p;
      if (slot[j] >= rowStart) {
        vals[slot[j]] += p;
      } else {
        slot[j] = m;
        cols[m] = j;
        vals[m++] = p;
      }
    };
    for (let t = 0; t < k; t++) add(indices[i * k + t], condP[i * k + t]);
    for (let e = incoming[i]; e < incoming[i + 1]; e++) add(inFrom[e], inVal[e]);
    rowPtr[i + 1] = m;
  }
  const norm = Math.max(total, MACHINE_EPSILON);
  const outVals = vals.slice(0, m);
  for (let e = 0; e < m; e++) outVals[e] /= norm;
  return { n, rowPtr, cols: cols.slice(0, m), vals: outVals };
}

function isRowMatrix(v: unknown): v is RowMatrix {
  return typeof v === "object" && v !== null && (v as RowMatrix).values instanceof Float32Array && Number.isInteger((v as RowMatrix).rows);
}

/**
 * Sparse t-SNE input affinities P of the rows of `data` (exact kNN with
 * k = min(n - 1, floor(3 * perplexity + 1)), as scikit-learn's Barnes-Hut t-SNE).
 */
export async function tsneAffinities(
  data: ProjectionInput | RowMatrix,
  perplexity: number,
  knnMethod: KnnComputeMethod = "auto",
  cols?: number,
): Promise<TsneAffinities> {
  const x = isRowMatrix(data) ? data : toRowMatrix(data, cols, "tsneAffinities");
  const n = x.rows;
  if (!(perplexity > 0) || perplexity >= n) throw new Error(`tsneAffinities: perplexity must be in (0, n=${n}), got ${perplexity}`);
  const k = Math.min(n - 1, Math.floor(3 * perplexity + 1));
  const graph = await exactKnnGraph(x, k, knnMethod);
  const condP = conditionalAffinities(graph.sqDistances, n, k, perplexity);
  return symmetrizeAffinities(graph.indices, condP, n, k);
}

/** Exact KL(P || Q) of a 2-D embedding (O(n^2) for Q's normaliser): the t-SNE objective. */
export function tsneKlDivergence(P: TsneAffinities, embedding: ArrayLike<number>): number {
  const n = P.n;
  let Z = 0;
  for (let i = 0; i < n; i++) {
    const xi = embedding[2 * i];
    const yi = embedding[2 * i + 1];
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const dx = xi - embedding[2 * j];
      const dy = yi - embedding[2 * j + 1];
      Z += 1 / (1 + dx * dx + dy * dy);
    }
  }
  return klWithNormaliser(P, embedding, Z);
}

function klWithNormaliser(P: TsneAffinities, Y: ArrayLike<number>, Z: number): number {
  let kl = 0;
  for (let i = 0; i < P.n; i++) {
    for (let e = P.rowPtr[i]; e < P.rowPtr[i + 1]; e++) {
      const j = P.cols[e];
      const p = P.vals[e];
      const dx = Y[2 * i] - Y[2 * j];
      const dy = Y[2 * i + 1] - Y[2 * j + 1];
      const q = 1 / (1 + dx * dx + dy * dy) / Z;
      kl += p * Math.log(Math.max(p, MACHINE_EPSILON) / Math.max(q, MACHINE_EPSILON));
    }
  }
  return kl;
}

/**
 * Scatter matrix sum_i (x_i - mean)(x_i - mean)^T (d x d): dot products of the centred columns
 * (transposed to contiguous rows), 4 columns at a time, upper triangle mirrored.
 */
function scatterMatrix(X: Float32Array, n: number, d: number, mean: Float64Array): Float64Array {
  const cols = new Float64Array(d * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < d; c++) cols[c * n + i] = X[i * d + c] - mean[c];
  const cov = new Float64Array(d * d);
  for (let a = 0; a < d; a += 4) {
    const rowsHere = Math.min(4, d - a);
    const a0 = a * n;
    const a1 = a0 + n;
    const a2 = a1 + n;
    const a3 = a2 + n;
    for (let b = a; b < d; b++) {
      const bb = b * n;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      if (rowsHere === 4) {
        for (let i = 0; i < n; i++) {
          const y = cols[bb + i];
          s0 += cols[a0 + i] * y;
          s1 += cols[a1 + i] * y;
          s2 += cols[a2 + i] * y;
          s3 += cols[a3 + i] * y;
        }
      } else {
        for (let i = 0; i < n; i++) {
          const y = cols[bb + i];
          s0 += cols[a0 + i] * y;
          if (rowsHere > 1) s1 += cols[a1 + i] * y;
          if (rowsHere > 2) s2 += cols[a2 + i] * y;
        }
      }
      const sums = [s0, s1, s2, s3];
      for (let r = 0; r < rowsHere; r++) {
        const ar = a + r;
        if (b < ar) continue;
        cov[ar * d + b] = sums[r];
        cov[b * d + ar] = sums[r];
      }
    }
  }
  return cov;
}

/** Top-2 principal component scores of x (power iteration on the covariance, sign fixed). */
function pcaInit(x: RowMatrix, rng: Rng): Float64Array {
  const { values: X, rows: n, cols: d } = x;
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let c = 0; c < d; c++) mean[c] += X[i * d + c];
  for (let c = 0; c < d; c++) mean[c] /= n;
  const cov = scatterMatrix(X, n, d, mean);
  const comps: Float64Array[] = [];
  for (let comp = 0; comp < 2; comp++) {
    let v = new Float64Array(d);
    for (let c = 0; c < d; c++) v[c] = rng.normal();
    for (let it = 0; it < 300; it++) {
      const w = new Float64Array(d);
      for (let a = 0; a < d; a++) {
        let s = 0;
        for (let b = 0; b < d; b++) s += cov[a * d + b] * v[b];
        w[a] = s;
      }
      for (const u of comps) {
        let dot = 0;
        for (let c = 0; c < d; c++) dot += w[c] * u[c];
        for (let c = 0; c < d; c++) w[c] -= dot * u[c];
      }
      let norm = 0;
      for (let c = 0; c < d; c++) norm += w[c] * w[c];
      norm = Math.sqrt(norm);
      if (norm < 1e-300) break; // rank-deficient: keep the previous direction
      let change = 0;
      for (let c = 0; c < d; c++) {
        const nv = w[c] / norm;
        change += Math.abs(nv - v[c]);
        v[c] = nv;
      }
      v = v.slice();
      if (change < 1e-10) break;
    }
    // Sign convention: the largest-magnitude loading is positive.
    let big = 0;
    for (let c = 0; c < d; c++) if (Math.abs(v[c]) > Math.abs(v[big])) big = c;
    if (v[big] < 0) for (let c = 0; c < d; c++) v[c] = -v[c];
    comps.push(v);
  }
  const Y = new Float64Array(n * 2);
  for (let i = 0; i < n; i++) {
    for (let comp = 0; comp < 2; comp++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += (X[i * d + c] - mean[c]) * comps[comp][c];
      Y[2 * i + comp] = s;
    }
  }
  let m0 = 0;
  for (let i = 0; i < n; i++) m0 += Y[2 * i];
  m0 /= n;
  let var0 = 0;
  for (let i = 0; i < n; i++) var0 += (Y[2 * i] - m0) ** 2;
  const std0 = Math.sqrt(var0 / n);
  if (!(std0 > 0)) return randomInit(n, rng);
  for (let i = 0; i < Y.length; i++) Y[i] = (Y[i] / std0) * 1e-4;
  return Y;
}

function randomInit(n: number, rng: Rng): Float64Array {
  const Y = new Float64Array(n * 2);
  for (let i = 0; i < Y.length; i++) Y[i] = 1e-4 * rng.normal();
  return Y;
}

/** Spread the low 16 bits of v to the even bit positions (Morton interleave). */
function part1by1(v: number): number {
  v &= 0xffff;
  v = (v | (v << 8)) & 0x00ff00ff;
  v = (v | (v << 4)) & 0x0f0f0f0f;
  v = (v | (v << 2)) & 0x33333333;
  v = (v | (v << 1)) & 0x55555555;
  return v >>> 0;
}

const MORTON_LEVELS = 16;

/**
 * A quadtree over the current 2-D embedding, rebuilt every iteration. Built from the points
 * sorted by Morton (Z-order) code: every node is a contiguous range of the sorted points, its
 * children are the sub-ranges sharing the next 2 code bits, and its centre of mass comes from
 * prefix sums. Nodes live in flat typed arrays; the non-empty children of a node are consecutive.
 * Leaves hold up to `leafSize` points (more at the 16-level resolution limit, e.g. duplicates).
 */
class QuadTree {
  private cap = 0;
  private comX = new Float64Array(0);
  private comY = new Float64Array(0);
  /** Size of the node in the theta criterion: the side of its square cell. */
  private width = new Float64Array(0);
  private count = new Int32Array(0);
  private firstChild = new Int32Array(0);
  private numChildren = new Int32Array(0);
  private start = new Int32Array(0);
  private level = new Int32Array(0);
  private nodes = 0;
  /** Point indices in Morton order, and their codes and coordinates in that order. */
  private readonly perm: Int32Array;
  private readonly codes: Uint32Array;
  private readonly sortedX: Float64Array;
  private readonly sortedY: Float64Array;
  private readonly prefX: Float64Array;
  private readonly prefY: Float64Array;
  private readonly scratchPerm: Int32Array;
  private readonly scratchCodes: Uint32Array;
  private readonly buckets = new Int32Array(257);
  private stack = new Int32Array(4096);
  private listX = new Float64Array(1024);
  private listY = new Float64Array(1024);
  private listW = new Float64Array(1024);

  constructor(private readonly n: number, private readonly leafSize = 1) {
    this.perm = new Int32Array(n);
    this.codes = new Uint32Array(n);
    this.sortedX = new Float64Array(n);
    this.sortedY = new Float64Array(n);
    this.prefX = new Float64Array(n + 1);
    this.prefY = new Float64Array(n + 1);
    this.scratchPerm = new Int32Array(n);
    this.scratchCodes = new Uint32Array(n);
    this.grow(Math.max(64, 2 * n));
  }

  private grow(cap: number): void {
    const f = (a: Float64Array) => {
      const b = new Float64Array(cap);
      b.set(a.subarray(0, this.nodes));
      return b;
    };
    const i32 = (a: Int32Array) => {
      const b = new Int32Array(cap);
      b.set(a.subarray(0, this.nodes));
      return b;
    };
    this.comX = f(this.comX);
    this.comY = f(this.comY);
    this.width = f(this.width);
    this.count = i32(this.count);
    this.firstChild = i32(this.firstChild);
    this.numChildren = i32(this.numChildren);
    this.start = i32(this.start);
    this.level = i32(this.level);
    this.cap = cap;
  }

  /** LSD radix sort of (codes, perm) by code, 4 passes of 8 bits. */
  private sortByCode(): void {
    let srcC = this.codes;
    let srcP = this.perm;
    let dstC = this.scratchCodes;
    let dstP = this.scratchPerm;
    const buckets = this.buckets;
    const n = this.n;
    for (let shift = 0; shift < 32; shift += 8) {
      buckets.fill(0);
      for (let i = 0; i < n; i++) buckets[((srcC[i] >>> shift) & 255) + 1]++;
      for (let b = 0; b < 256; b++) buckets[b + 1] += buckets[b];
      for (let i = 0; i < n; i++) {
        const pos = buckets[(srcC[i] >>> shift) & 255]++;
        dstC[pos] = srcC[i];
        dstP[pos] = srcP[i];
      }
      const tc = srcC;
      srcC = dstC;
      dstC = tc;
      const tp = srcP;
      srcP = dstP;
      dstP = tp;
    }
    // After 4 passes the sorted data is back in this.codes / this.perm.
  }

  build(Y: Float64Array): void {
    const n = this.n;
    let minX = Infinity;
    let maxX = -Infinity;
    let minY = Infinity;
    let maxY = -Infinity;
    for (let i = 0; i < n; i++) {
      const x = Y[2 * i];
      const y = Y[2 * i + 1];
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
    }
    const side = Math.max(maxX - minX, maxY - minY, 1e-12) * (1 + 1e-6);
    const scale = 65536 / side;
    const codes = this.codes;
    const perm = this.perm;
    for (let i = 0; i < n; i++) {
      const qx = Math.min(65535, Math.floor((Y[2 * i] - minX) * scale));
      const qy = Math.min(65535, Math.floor((Y[2 * i + 1] - minY) * scale));
      codes[i] = (part1by1(qx) | (part1by1(qy) << 1)) >>> 0;
      perm[i] = i;
    }
    this.sortByCode();
    const sx = this.sortedX;
    const sy = this.sortedY;
    const px = this.prefX;
    const py = this.prefY;
    for (let t = 0; t < n; t++) {
      const p = perm[t];
      sx[t] = Y[2 * p];
      sy[t] = Y[2 * p + 1];
      px[t + 1] = px[t] + sx[t];
      py[t + 1] = py[t] + sy[t];
    }
    this.nodes = 0;
    this.addNode(0, n, side, 0);
    const bounds = new Int32Array(5);
    for (let node = 0; node < this.nodes; node++) {
      const cnt = this.count[node];
      const lvl = this.level[node];
      if (cnt <= this.leafSize || lvl >= MORTON_LEVELS) continue;
      const s = this.start[node];
      const e = s + cnt;
      const shift = 2 * (MORTON_LEVELS - 1 - lvl);
      // Children: sub-ranges whose next two code bits are 0, 1, 2, 3 (x bit + 2 * y bit).
      bounds[0] = s;
      bounds[4] = e;
      for (let q = 1; q < 4; q++) {
        let lo = bounds[q - 1];
        let hi = e;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (((codes[mid] >>> shift) & 3) < q) lo = mid + 1;
          else hi = mid;
        }
        bounds[q] = lo;
      }
      const half = this.width[node] / 2;
      let first = -1;
      let kids = 0;
      for (let q = 0; q < 4; q++) {
        const c = bounds[q + 1] - bounds[q];
        if (c === 0) continue;
        const id = this.addNode(bounds[q], c, half, lvl + 1);
        if (first < 0) first = id;
        kids++;
      }
      this.firstChild[node] = first;
      this.numChildren[node] = kids;
    }
  }

  private addNode(start: number, count: number, width: number, level: number): number {
    if (this.nodes >= this.cap) this.grow(this.cap * 2);
    const id = this.nodes++;
    this.start[id] = start;
    this.count[id] = count;
    this.width[id] = width;
    this.level[id] = level;
    this.comX[id] = (this.prefX[start + count] - this.prefX[start]) / count;
    this.comY[id] = (this.prefY[start + count] - this.prefY[start]) / count;
    this.numChildren[id] = 0;
    this.firstChild[id] = -1;
    return id;
  }

  private pushChildren(node: number, sp: number): number {
    const kids = this.numChildren[node];
    if (sp + kids > this.stack.length) {
      const bigger = new Int32Array(this.stack.length * 2);
      bigger.set(this.stack);
      this.stack = bigger;
    }
    const c0 = this.firstChild[node];
    for (let c = 0; c < kids; c++) this.stack[sp++] = c0 + c;
    return sp;
  }

  /**
   * Unnormalised repulsive forces, one tree walk per point (scikit-learn's scheme):
   * rep[i] = sum_j (1 + d_ij^2)^-2 (y_i - y_j), a cell summarised at its centre of mass when
   * width^2 < theta^2 d^2. Returns Z = sum_{i != j} (1 + d_ij^2)^-1.
   */
  repulsion(Y: Float64Array, theta: number, rep: Float64Array): number {
    const theta2 = theta * theta;
    const { comX, comY, width, count, numChildren, start, perm, sortedX, sortedY } = this;
    let Z = 0;
    for (let i = 0; i < this.n; i++) {
      const yx = Y[2 * i];
      const yy = Y[2 * i + 1];
      let fx = 0;
      let fy = 0;
      let z = 0;
      let sp = 0;
      this.stack[sp++] = 0;
      while (sp > 0) {
        const node = this.stack[--sp];
        const dx = yx - comX[node];
        const dy = yy - comY[node];
        const d2 = dx * dx + dy * dy;
        const w = width[node];
        if (w * w < theta2 * d2) {
          const cnt = count[node];
          const q = 1 / (1 + d2);
          z += cnt * q;
          const m = cnt * q * q;
          fx += m * dx;
          fy += m * dy;
        } else if (numChildren[node] === 0) {
          const s = start[node];
          const e = s + count[node];
          for (let t = s; t < e; t++) {
            if (perm[t] === i) continue;
            const ex = yx - sortedX[t];
            const ey = yy - sortedY[t];
            const q = 1 / (1 + ex * ex + ey * ey);
            z += q;
            const q2 = q * q;
            fx += q2 * ex;
            fy += q2 * ey;
          }
        } else {
          sp = this.pushChildren(node, sp);
        }
      }
      rep[2 * i] = fx;
      rep[2 * i + 1] = fy;
      Z += z;
    }
    return Z;
  }

  private growList(): void {
    const cap = this.listX.length * 2;
    const f = (a: Float64Array) => {
      const b = new Float64Array(cap);
      b.set(a);
      return b;
    };
    this.listX = f(this.listX);
    this.listY = f(this.listY);
    this.listW = f(this.listW);
  }

  /**
   * The same forces as `repulsion`, computed per group of nearby points (Barnes 1990): the tree is
   * walked once per group (a node with <= groupSize points), the theta criterion taken against
   * the group's bounding box (the distance from a cell's centre of mass to the box is a lower
   * bound on its distance to every point of the group, so each accepted cell also passes the
   * per-point test), and the interaction list is applied to each point of the group in a tight
   * loop. At least as accurate as the per-point walk, and cheaper.
   */
  repulsionGrouped(Y: Float64Array, theta: number, rep: Float64Array, groupSize: number): number {
    const theta2 = theta * theta;
    const { comX, comY, width, count, numChildren, start, perm, sortedX, sortedY } = this;
    let Z = 0;
    // Groups: the largest nodes with <= groupSize points (or leaves).
    const groups: number[] = [];
    let sp = 0;
    this.stack[sp++] = 0;
    while (sp > 0) {
      const node = this.stack[--sp];
      if (count[node] <= groupSize || numChildren[node] === 0) groups.push(node);
      else sp = this.pushChildren(node, sp);
    }
    for (const g of groups) {
      const gs = start[g];
      const ge = gs + count[g];
      let bx0 = Infinity;
      let bx1 = -Infinity;
      let by0 = Infinity;
      let by1 = -Infinity;
      for (let t = gs; t < ge; t++) {
        const x = sortedX[t];
        const y = sortedY[t];
        if (x < bx0) bx0 = x;
        if (x > bx1) bx1 = x;
        if (y < by0) by0 = y;
        if (y > by1) by1 = y;
      }
      let len = 0;
      sp = 0;
      this.stack[sp++] = 0;
      while (sp > 0) {
        const node = this.stack[--sp];
        const ns = start[node];
        const cnt = count[node];
        // Nodes holding the group (its ancestors and itself) are never summarised.
        if (!(ns <= gs && ge <= ns + cnt)) {
          const cx = comX[node];
          const cy = comY[node];
          const ddx = cx < bx0 ? bx0 - cx : cx > bx1 ? cx - bx1 : 0;
          const ddy = cy < by0 ? by0 - cy : cy > by1 ? cy - by1 : 0;
          const w = width[node];
          if (w * w < theta2 * (ddx * ddx + ddy * ddy)) {
            if (len === this.listX.length) this.growList();
            this.listX[len] = cx;
            this.listY[len] = cy;
            this.listW[len++] = cnt;
            continue;
          }
        }
        if (numChildren[node] === 0) {
          while (len + cnt > this.listX.length) this.growList();
          const lx = this.listX;
          const ly = this.listY;
          const lw = this.listW;
          for (let t = ns; t < ns + cnt; t++) {
            lx[len] = sortedX[t];
            ly[len] = sortedY[t];
            lw[len++] = 1;
          }
          continue;
        }
        sp = this.pushChildren(node, sp);
      }
      const lx = this.listX;
      const ly = this.listY;
      const lw = this.listW;
      for (let t = gs; t < ge; t++) {
        const yx = sortedX[t];
        const yy = sortedY[t];
        let fx = 0;
        let fy = 0;
        let z = 0;
        for (let c = 0; c < len; c++) {
          const dx = yx - lx[c];
          const dy = yy - ly[c];
          const q = 1 / (1 + dx * dx + dy * dy);
          const wq = lw[c] * q;
          z += wq;
          const wq2 = wq * q;
          fx += wq2 * dx;
          fy += wq2 * dy;
        }
        // The list holds y_i itself (weight 1, q = 1, zero force): take it out of Z.
        const i = perm[t];
        rep[2 * i] = fx;
        rep[2 * i + 1] = fy;
        Z += z - 1;
      }
    }
    return Z;
  }
}

/** The pairs (i, j > i) of a symmetric P with their p_ij, for a single pass over each pair. */
interface UpperPairs {
  n: number;
  a: Int32Array;
  b: Int32Array;
  p: Float64Array;
}

function upperTriangle(P: TsneAffinities): UpperPairs {
  let m = 0;
  for (let i = 0; i < P.n; i++) for (let e = P.rowPtr[i]; e < P.rowPtr[i + 1]; e++) if (P.cols[e] > i) m++;
  const a = new Int32Array(m);
  const b = new Int32Array(m);
  const p = new Float64Array(m);
  let t = 0;
  for (let i = 0; i < P.n; i++) {
    for (let e = P.rowPtr[i]; e < P.rowPtr[i + 1]; e++) {
      const j = P.cols[e];
      if (j <= i) continue;
      a[t] = i;
      b[t] = j;
      p[t++] = P.vals[e];
    }
  }
  return { n: P.n, a, b, p };
}

/** Attractive forces sum_j p_ij (1 + d_ij^2)^-1 (y_i - y_j) (times `exaggeration`), once per pair. */
function attraction(pairs: UpperPairs, Y: Float64Array, exaggeration: number, out: Float64Array): void {
  const { a, b, p } = pairs;
  out.fill(0);
  const m = a.length;
  for (let t = 0; t < m; t++) {
    const i2 = 2 * a[t];
    const j2 = 2 * b[t];
    const dx = Y[i2] - Y[j2];
    const dy = Y[i2 + 1] - Y[j2 + 1];
    const w = (exaggeration * p[t]) / (1 + dx * dx + dy * dy);
    const fx = w * dx;
    const fy = w * dy;
    out[i2] += fx;
    out[i2 + 1] += fy;
    out[j2] -= fx;
    out[j2 + 1] -= fy;
  }
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * t-SNE of the rows of `data` into 2-D (Barnes-Hut, see the file comment). 5,000 x 128 points take
 * well under 20 s on one CPU core. Async: it yields to the event loop every 25 iterations so
 * notebook displays and progress callbacks stay live.
 */
export async function tsne(data: ProjectionInput, opts: TsneOptions = {}): Promise<TsneResult> {
  const t0 = performance.now();
  const x = toRowMatrix(data, opts.cols, "tsne");
  const n = x.rows;
  const perplexity = opts.perplexity ?? 30;
  const iterations = opts.iterations ?? 1000;
  const theta = opts.theta ?? 0.5;
  const exaggeration = opts.earlyExaggeration ?? 12;
  const exIters = Math.min(opts.exaggerationIterations ?? 250, iterations);
  const progressEvery = opts.progressEvery ?? 50;
  if (n < 3) throw new Error(`tsne: need at least 3 points, got ${n}`);
  if (!(perplexity > 0) || perplexity >= n) throw new Error(`tsne: perplexity must be in (0, n=${n}), got ${perplexity}`);
  if (!Number.isInteger(iterations) || iterations < 1) throw new Error(`tsne: iterations must be a positive integer, got ${iterations}`);
  if (!(theta >= 0) || theta > 1) throw new Error(`tsne: theta must be in [0, 1], got ${theta}`);
  if (!(exaggeration >= 1)) throw new Error(`tsne: earlyExaggeration must be >= 1, got ${exaggeration}`);
  const lrOpt = opts.learningRate ?? "auto";
  const learningRate = lrOpt === "auto" ? Math.max(n / exaggeration / 4, 50) : lrOpt;
  if (!(learningRate > 0)) throw new Error(`tsne: learningRate must be > 0 or "auto", got ${lrOpt}`);
  const rng = new Rng(opts.seed ?? 0);

  const timings = { affinities: 0, init: 0, attraction: 0, build: 0, repulsion: 0 };
  let tp0 = performance.now();
  const P = await tsneAffinities(x, perplexity, opts.knnMethod ?? "auto");
  const upper = upperTriangle(P);
  timings.affinities = performance.now() - tp0;
  tp0 = performance.now();
  const Y = (opts.init ?? "pca") === "pca" ? pcaInit(x, rng) : randomInit(n, rng);
  timings.init = performance.now() - tp0;

  const groupSize = opts.groupSize ?? 32;
  const tree = new QuadTree(n, opts.leafSize ?? 4);
  const attr = new Float64Array(2 * n);
  const rep = new Float64Array(2 * n);
  const update = new Float64Array(2 * n);
  const gains = new Float64Array(2 * n).fill(1);
  let lastZ = 1;
  for (let it = 0; it < iterations; it++) {
    if (it === exIters) {
      // Second stage (scikit-learn restarts the optimiser state between the stages).
      update.fill(0);
      gains.fill(1);
    }
    const ex = it < exIters ? exaggeration : 1;
    const momentum = it < exIters ? 0.5 : 0.8;
    let tp = performance.now();
    attraction(upper, Y, ex, attr);
    timings.attraction += performance.now() - tp;
    if (theta === 0) {
      lastZ = exactRepulsion(Y, n, rep);
    } else {
      tp = performance.now();
      tree.build(Y);
      timings.build += performance.now() - tp;
      tp = performance.now();
      lastZ = groupSize > 1 ? tree.repulsionGrouped(Y, theta, rep, groupSize) : tree.repulsion(Y, theta, rep);
      timings.repulsion += performance.now() - tp;
    }
    const invZ = 1 / Math.max(lastZ, MACHINE_EPSILON);
    for (let e = 0; e < 2 * n; e++) {
      const grad = 4 * (attr[e] - rep[e] * invZ);
      // Gains (Jacobs 1988): grow where the gradient keeps its sign against the last update.
      gains[e] = update[e] * grad < 0 ? gains[e] + 0.2 : Math.max(gains[e] * 0.8, 0.01);
      update[e] = momentum * update[e] - learningRate * gains[e] * grad;
      Y[e] += update[e];
    }
    if (opts.onProgress && ((it + 1) % progressEvery === 0 || it + 1 === iterations)) {
      opts.onProgress({ iteration: it + 1, iterations, kl: klWithNormaliser(P, Y, lastZ) });
    }
    if ((it + 1) % 25 === 0) await yieldToEventLoop();
  }
  // Final KL with Q normalised by Z at the final positions.
  let Zfinal: number;
  if (theta === 0) Zfinal = exactRepulsion(Y, n, rep);
  else {
    tree.build(Y);
    Zfinal = groupSize > 1 ? tree.repulsionGrouped(Y, theta, rep, groupSize) : tree.repulsion(Y, theta, rep);
  }
  const kl = klWithNormaliser(P, Y, Zfinal);
  return {
    points: rowsToArrays(Y, n, 2),
    embedding: Y,
    kl,
    iterations,
    seconds: (performance.now() - t0) / 1000,
    timings: Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, v / 1000])),
  };
}

/** Exact O(n^2) repulsion (theta = 0). */
function exactRepulsion(Y: Float64Array, n: number, rep: Float64Array): number {
  rep.fill(0);
  let Z = 0;
  for (let i = 0; i < n; i++) {
    const yx = Y[2 * i];
    const yy = Y[2 * i + 1];
    let fx = 0;
    let fy = 0;
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const dx = yx - Y[2 * j];
      const dy = yy - Y[2 * j + 1];
      const q = 1 / (1 + dx * dx + dy * dy);
      Z += q;
      fx += q * q * dx;
      fy += q * q * dy;
    }
    rep[2 * i] = fx;
    rep[2 * i + 1] = fy;
  }
  return Z;
}
