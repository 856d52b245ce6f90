import { test } from "node:test";
import assert from "node:assert/strict";
import { tf, useBackend } from "./helpers";
import { Rng } from "../lib/src/random";
import { tsne, tsneAffinities, tsneKlDivergence, conditionalAffinities } from "../lib/src/viz/tsne";
import { exactKnnGraph } from "../lib/src/viz/knn-graph";
import { toRowMatrix } from "../lib/src/viz/matrix-input";

// tsne-js (exact O(n^2) t-SNE) is the reference; it has no types and draws from Math.random.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const TSNE = require("tsne-js");
// eslint-disable-next-line @typescript-eslint/no-require-imports
const tsneJsKl = require("tsne-js/dist/kl-divergence");
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ndarray = require("ndarray");

/** n points around k Gaussian centres in d dimensions (labels i % k). */
function clustered(n: number, d: number, k: number, centreStd: number, seed: number): { data: number[][]; labels: number[] } {
  const rng = new Rng(seed);
  const centres = Array.from({ length: k }, () => Array.from({ length: d }, () => rng.normal(0, centreStd)));
  const labels = Array.from({ length: n }, (_, i) => i % k);
  return { data: labels.map((l) => centres[l].map((c) => c + rng.normal())), labels };
}

function sqDist(a: readonly number[], b: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s;
}

/** Indices of the k nearest neighbours of every row (brute force, float64). */
function bruteKnn(rows: readonly (readonly number[])[], k: number): number[][] {
  return rows.map((r, i) =>
    rows
      .map((o, j) => ({ j, d: j === i ? Infinity : sqDist(r, o) }))
      .sort((a, b) => a.d - b.d || a.j - b.j)
      .slice(0, k)
      .map((e) => e.j),
  );
}

/** Mean fraction of each point's k high-dimensional neighbours that are also its k embedding neighbours. */
function knnOverlap(high: number[][], low: number[][], k: number): number {
  const a = bruteKnn(high, k);
  const b = bruteKnn(low, k);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i].filter((j) => b[i].includes(j)).length / k;
  return s / a.length;
}

/** Leave-one-out 5-NN accuracy of the labels in the embedding (cluster separation). */
function knnLabelAccuracy(points: number[][], labels: number[], k = 5): number {
  const nn = bruteKnn(points, k);
  let right = 0;
  nn.forEach((idx, i) => {
    const votes = new Map<number, number>();
    for (const j of idx) votes.set(labels[j], (votes.get(labels[j]) ?? 0) + 1);
    const best = [...votes.entries()].sort((x, y) => y[1] - x[1] || x[0] - y[0])[0][0];
    if (best === labels[i]) right++;
  });
  return right / points.length;
}

test("exactKnnGraph: tf (wasm matMul) and JS paths match brute force, nearest first", async () => {
  await useBackend("wasm");
  const { data } = clustered(120, 12, 4, 2, 3);
  const x = toRowMatrix(data, undefined, "test");
  const truth = bruteKnn(data, 7);
  for (const method of ["tf", "js"] as const) {
    const before = tf.memory().numTensors;
    const g = await exactKnnGraph(x, 7, method);
    assert.equal(tf.memory().numTensors, before, `${method}: no tensor leak`);
    for (let i = 0; i < data.length; i++) {
      assert.deepEqual(Array.from(g.indices.subarray(i * 7, i * 7 + 7)), truth[i], `${method} row ${i}`);
      for (let t = 0; t < 7; t++) {
        const exact = sqDist(data[i], data[g.indices[i * 7 + t]]);
        assert.ok(Math.abs(g.sqDistances[i * 7 + t] - exact) <= 1e-4 * Math.max(1, exact), `${method} distance ${i},${t}`);
      }
    }
  }
});

test("tsne affinities: each conditional row has perplexity 2^H = target, joint P is symmetric and sums to 1", async () => {
  await useBackend("wasm");
  const { data } = clustered(150, 10, 3, 3, 5);
  const x = toRowMatrix(data, undefined, "test");
  const perplexity = 20;
  const k = Math.floor(3 * perplexity + 1);
  const g = await exactKnnGraph(x, k, "js");
  const cond = conditionalAffinities(g.sqDistances, data.length, k, perplexity);
  for (let i = 0; i < data.length; i++) {
    let sum = 0;
    let entropy = 0;
    for (let t = 0; t < k; t++) {
      const p = cond[i * k + t];
      sum += p;
      if (p > 0) entropy -= p * Math.log(p);
    }
    assert.ok(Math.abs(sum - 1) < 1e-9, `row ${i} sums to ${sum}`);
    assert.ok(Math.abs(Math.exp(entropy) - perplexity) < 1e-3 * perplexity, `row ${i} perplexity ${Math.exp(entropy)}`);
  }
  const P = await tsneAffinities(x, perplexity, "js");
  const dense = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < P.n; i++) {
    for (let e = P.rowPtr[i]; e < P.rowPtr[i + 1]; e++) {
      assert.notEqual(P.cols[e], i, "no self-affinity");
      assert.ok(!dense.has(`${i},${P.cols[e]}`), "duplicate entries are merged");
      dense.set(`${i},${P.cols[e]}`, P.vals[e]);
      total += P.vals[e];
    }
  }
  assert.ok(Math.abs(total - 1) < 1e-9, `P sums to ${total}`);
  for (const [key, v] of dense) {
    const [i, j] = key.split(",");
    assert.ok(Math.abs((dense.get(`${j},${i}`) ?? 0) - v) < 1e-15, `P[${key}] symmetric`);
  }
});

test("tsneKlDivergence matches tsne-js's dense KL(P || Q) on the same P and embedding", async () => {
  await useBackend("wasm");
  const { data } = clustered(60, 8, 3, 3, 11);
  const n = data.length;
  const P = await tsneAffinities(toRowMatrix(data, undefined, "test"), 10, "js");
  const denseP = new Float64Array(n * n).fill(2.220446049250313e-16); // tsne-js floors P at machine epsilon
  for (let i = 0; i < n; i++) for (let e = P.rowPtr[i]; e < P.rowPtr[i + 1]; e++) denseP[i * n + P.cols[e]] = P.vals[e];
  const rng = new Rng(2);
  const Y = Float64Array.from({ length: 2 * n }, () => rng.normal(0, 3));
  const ours = tsneKlDivergence(P, Y);
  const ref = tsneJsKl(ndarray(Y, [n, 2]), ndarray(denseP, [n, n]), 1)[0] as number;
  // The floor adds sum eps * log(eps / q) over the ~n^2 zero entries: negligible but not zero.
  assert.ok(Math.abs(ours - ref) < 1e-9 + 1e-6 * Math.abs(ref), `ours ${ours} vs tsne-js ${ref}`);
});

test("tsne vs tsne-js on 180 clustered points: KL no worse than the exact reference, neighbourhoods and clusters kept", async () => {
  await useBackend("wasm");
  const { data, labels } = clustered(180, 20, 4, 2, 1);
  const n = data.length;
  // tsne-js with a seeded Math.random (it has no seed option).
  const rng = new Rng(7);
  const mathRandom = Math.random;
  Math.random = () => rng.next();
  let model: { run(): [number, number]; getOutput(): number[][]; P: unknown; init(o: unknown): void };
  try {
    model = new TSNE({ dim: 2, perplexity: 30, earlyExaggeration: 4, learningRate: 100, nIter: 1000, metric: "euclidean" });
    model.init({ data, type: "dense" });
    model.run();
  } finally {
    Math.random = mathRandom;
  }
  const reference = model.getOutput();
  const ours = await tsne(data, { perplexity: 30, seed: 0 });
  assert.equal(ours.points.length, n);
  assert.ok(ours.points.every((p) => p.length === 2 && p.every(Number.isFinite)));
  // Both embeddings scored on tsne-js's own objective (its dense P, exact Q).
  const klOn = (Y: number[][]) => tsneJsKl(ndarray(Float64Array.from(Y.flat()), [n, 2]), model.P, 1)[0] as number;
  const klOurs = klOn(ours.points);
  const klRef = klOn(reference);
  console.log(`# KL on tsne-js's P: sslkit ${klOurs.toFixed(4)}, tsne-js ${klRef.toFixed(4)}; sslkit BH estimate ${ours.kl.toFixed(4)}`);
  assert.ok(klOurs <= klRef * 1.05, `sslkit KL ${klOurs} vs tsne-js ${klRef}`);
  // Our own KL estimate (sparse P, Barnes-Hut Z) agrees with the exact KL on the same sparse P.
  const P = await tsneAffinities(toRowMatrix(data, undefined, "test"), 30, "js");
  const exactOnOurP = tsneKlDivergence(P, ours.embedding);
  assert.ok(Math.abs(ours.kl - exactOnOurP) < 0.02 * exactOnOurP, `BH KL ${ours.kl} vs exact ${exactOnOurP}`);
  // Neighbourhoods: 10-NN overlap with the input space close to (or above) the reference's.
  const overlapOurs = knnOverlap(data, ours.points, 10);
  const overlapRef = knnOverlap(data, reference, 10);
  console.log(`# 10-NN overlap: sslkit ${overlapOurs.toFixed(3)}, tsne-js ${overlapRef.toFixed(3)}`);
  assert.ok(overlapOurs >= overlapRef - 0.03, `overlap ${overlapOurs} vs ${overlapRef}`);
  // Clusters: 5-NN label accuracy in the embedding is as good as in the input space.
  const accInput = knnLabelAccuracy(data, labels);
  const accOurs = knnLabelAccuracy(ours.points, labels);
  assert.ok(accOurs >= accInput - 0.02, `embedding 5-NN accuracy ${accOurs} vs input ${accInput}`);
});

test("tsne: Barnes-Hut (theta 0.5, grouped or per-point walk) reaches the KL of the exact gradient (theta 0)", async () => {
  await useBackend("wasm");
  const { data } = clustered(240, 16, 5, 2.5, 9);
  const exact = await tsne(data, { perplexity: 25, iterations: 500, theta: 0 });
  const grouped = await tsne(data, { perplexity: 25, iterations: 500, theta: 0.5 });
  const perPoint = await tsne(data, { perplexity: 25, iterations: 500, theta: 0.5, groupSize: 1, leafSize: 1 });
  const P = await tsneAffinities(toRowMatrix(data, undefined, "test"), 25, "js");
  const klExact = tsneKlDivergence(P, exact.embedding);
  for (const [name, r] of [["grouped", grouped], ["per-point", perPoint]] as const) {
    const kl = tsneKlDivergence(P, r.embedding);
    assert.ok(Math.abs(kl - klExact) < 0.05 * klExact, `${name}: KL ${kl} vs exact-gradient ${klExact}`);
  }
});

test("tsne is deterministic for a seed, and accepts number[][], flat arrays and tensors alike", async () => {
  await useBackend("wasm");
  const { data } = clustered(90, 6, 3, 3, 4);
  const flat = Float32Array.from(data.flat());
  const a = await tsne(data, { perplexity: 15, iterations: 200, seed: 3, init: "random" });
  const b = await tsne(flat, { cols: 6, perplexity: 15, iterations: 200, seed: 3, init: "random" });
  const t = tf.tensor2d(flat, [90, 6]);
  const c = await tsne(t as tf.Tensor2D, { perplexity: 15, iterations: 200, seed: 3, init: "random" });
  t.dispose();
  assert.deepEqual(Array.from(b.embedding), Array.from(a.embedding));
  assert.deepEqual(Array.from(c.embedding), Array.from(a.embedding));
  // The neighbour search path (wasm matMul vs JS loop) does not change the result.
  const viaJs = await tsne(data, { perplexity: 15, iterations: 200, seed: 3, init: "random", knnMethod: "js" });
  assert.deepEqual(Array.from(viaJs.embedding), Array.from(a.embedding));
  const d = await tsne(data, { perplexity: 15, iterations: 200, seed: 4, init: "random" });
  assert.notDeepEqual(Array.from(d.embedding), Array.from(a.embedding));
  // PCA init does not depend on the seed's draws for the init itself but is still deterministic.
  const e1 = await tsne(data, { perplexity: 15, iterations: 200 });
  const e2 = await tsne(data, { perplexity: 15, iterations: 200 });
  assert.deepEqual(Array.from(e1.embedding), Array.from(e2.embedding));
});

test("tsne rejects bad input with clear errors", async () => {
  await assert.rejects(tsne([[1, 2], [3]], {}), /row 1 has 1 values/);
  await assert.rejects(tsne(new Float32Array(10), {}), /number of columns/);
  await assert.rejects(tsne([[1], [2], [3], [4]], { perplexity: 30 }), /perplexity must be in \(0, n=4\)/);
  await assert.rejects(tsne([[1], [NaN], [3], [4]], { perplexity: 1 }), /non-finite value NaN at row 1/);
});
