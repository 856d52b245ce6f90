import { test } from "node:test";
import assert from "node:assert/strict";
import { tf, useBackend } from "./helpers";
import { Rng } from "../lib/src/random";
import { Backbone } from "../lib/src/nn/backbone";
import type { ImageDataset } from "../lib/src/data/types";
import {
  knnAccuracy,
  knnPredict,
  linearProbe,
  collapseScore,
  CollapseMonitor,
  extractFeatures,
  rawPixelFeatures,
  evaluateRepresentation,
} from "../lib/src/eval";

function gaussian(rng: Rng, n: number, d: number): number[][] {
  return Array.from({ length: n }, () => Array.from({ length: d }, () => rng.normal()));
}

/** Brute-force weighted k-NN in float64 (full similarity rows, sort, vote). */
function referenceKnn(train: number[][], trainY: number[], test: number[][], k: number, t: number, numClasses: number): number[] {
  const unit = (v: number[]) => {
    const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    return v.map((x) => x / n);
  };
  const trainU = train.map(unit);
  return test.map((q) => {
    const qu = unit(q);
    const sims = trainU.map((x, j) => ({ j, s: x.reduce((acc, v, d) => acc + v * qu[d], 0) }));
    sims.sort((a, b) => b.s - a.s);
    const votes = new Array(numClasses).fill(0);
    for (const { j, s } of sims.slice(0, k)) votes[trainY[j]] += Math.exp(s / t);
    return votes.indexOf(Math.max(...votes));
  });
}

test("knnPredict: hand-computed vote where the exp(sim/T) weighting overrules the majority", async () => {
  await useBackend("wasm");
  // Query [1, 0]. Neighbours: one class-0 point at cos 1, two class-1 points at cos 0.8, one
  // class-2 point at cos -1 (outside k = 3).
  //   T = 0.07: class 0 gets e^{14.29}, class 1 gets 2 e^{11.43}  (ratio e^{2.86}/2 = 8.7) -> 0
  //   T = 1:    class 0 gets e^1 = 2.72, class 1 gets 2 e^0.8 = 4.45                       -> 1
  //   T = Infinity (plain majority): 1 vote vs 2 votes                                      -> 1
  const train = tf.tensor2d([[2, 0], [0.8, 0.6], [4, -3], [-1, 0]]);
  const trainY = new Int32Array([0, 1, 1, 2]);
  const query = tf.tensor2d([[1, 0]]);
  const queries = tf.tensor2d([[1, 0], [0, 1], [-1, 0.1]]);
  const before = tf.memory().numTensors;
  assert.deepEqual(Array.from(knnPredict(train, trainY, query, { k: 3, temperature: 0.07 })), [0]);
  assert.deepEqual(Array.from(knnPredict(train, trainY, query, { k: 3, temperature: 1 })), [1]);
  assert.deepEqual(Array.from(knnPredict(train, trainY, query, { k: 3, temperature: Infinity })), [1]);
  // k = 1 is nearest neighbour; k larger than the training set uses all of it (class-2 point's
  // weight e^{-1/0.07} is negligible).
  assert.deepEqual(Array.from(knnPredict(train, trainY, query, { k: 1, temperature: 1 })), [0]);
  assert.deepEqual(Array.from(knnPredict(train, trainY, query, { k: 50, temperature: 0.07 })), [0]);
  // Accuracy over three queries with labels [0, 1, 2]: [1,0] -> 0 (right), [0,1] -> class 1
  // (nearest [0.8,0.6] cos 0.6 and [2,0] cos 0 vs [4,-3] cos -0.6: 1 wins; right), [-1,0.1] -> 2 (right)
  // with k = 1; with the label of the second query set to 0 the accuracy is 2/3.
  assert.equal(knnAccuracy(train, trainY, queries, new Int32Array([0, 1, 2]), { k: 1 }), 1);
  assert.ok(Math.abs(knnAccuracy(train, trainY, queries, new Int32Array([0, 0, 2]), { k: 1 }) - 2 / 3) < 1e-12);
  assert.equal(tf.memory().numTensors, before, "knn leaked tensors");
  tf.dispose([train, query, queries]);
});

test("knnAccuracy matches a brute-force reference; chunking and label types do not change it", async () => {
  await useBackend("wasm");
  const rng = new Rng(3);
  const numClasses = 5;
  // Clustered data so the answer is neither 0 nor 1.
  const centers = gaussian(rng, numClasses, 8);
  const make = (n: number) => {
    const y = Array.from({ length: n }, () => rng.int(0, numClasses));
    const x = y.map((c) => centers[c].map((v) => v + 1.3 * rng.normal()));
    return { x, y };
  };
  const tr = make(300);
  const te = make(101);
  const trainF = tf.tensor2d(tr.x);
  const testF = tf.tensor2d(te.x);
  const trainYArr = Int32Array.from(tr.y);
  const testYArr = Int32Array.from(te.y);
  for (const [k, t] of [[20, 0.07], [5, 0.5], [1, 1]] as const) {
    const expected = referenceKnn(tr.x, tr.y, te.x, k, t, numClasses);
    const got = Array.from(knnPredict(trainF, trainYArr, testF, { k, temperature: t, numClasses }));
    assert.deepEqual(got, expected, `k=${k} T=${t}`);
  }
  const unchunked = knnAccuracy(trainF, trainYArr, testF, testYArr, { chunkSize: 1000 });
  assert.ok(unchunked > 0.3 && unchunked < 1, `accuracy ${unchunked} should be informative`);
  for (const chunkSize of [1, 7, 64, 101]) {
    assert.equal(knnAccuracy(trainF, trainYArr, testF, testYArr, { chunkSize }), unchunked, `chunkSize ${chunkSize}`);
  }
  const trainYT = tf.tensor1d(trainYArr, "int32");
  const testYT = tf.tensor1d(testYArr, "int32");
  assert.equal(knnAccuracy(trainF, trainYT, testF, testYT), unchunked);
  assert.equal(knnAccuracy(trainF, Uint8Array.from(tr.y), testF, Uint8Array.from(te.y)), unchunked);
  assert.throws(() => knnAccuracy(trainF, trainYArr.subarray(1), testF, testYArr), /trainLabels has 299 labels/);
  const wrongDim = tf.zeros([101, 3]) as tf.Tensor2D;
  assert.throws(() => knnAccuracy(trainF, trainYArr, wrongDim, testYArr), /dimension 8 but test features have 3/);
  tf.dispose([trainF, testF, trainYT, testYT, wrongDim]);
});

function clusters(seed: number, n: number, d: number, numClasses: number, spread: number) {
  const rng = new Rng(seed);
  const centers = gaussian(new Rng(1000), numClasses, d).map((c) => c.map((v) => 4 * v));
  const y = Int32Array.from({ length: n }, () => rng.int(0, numClasses));
  const x = tf.tensor2d(Array.from(y, (c) => centers[c].map((v) => v + spread * rng.normal() + 50)));
  return { x: x as tf.Tensor2D, y };
}

test("linearProbe: ~100% on separable clusters, ~chance on random labels, deterministic per seed", async () => {
  await useBackend("wasm");
  const before = tf.memory().numTensors;
  const train = clusters(1, 600, 16, 4, 1);
  const test = clusters(2, 300, 16, 4, 1);
  const opts = { epochs: 30, batchSize: 64, lr: 1e-2, weightDecay: 1e-4, seed: 5 };
  const sep = await linearProbe(train.x, train.y, test.x, test.y, opts);
  assert.ok(sep.top1 >= 0.99 && sep.trainTop1 >= 0.99, `separable: ${JSON.stringify(sep)}`);
  assert.equal(sep.epochs, 30);

  // Random labels: the probe can memorise some of the training set but tests at chance (1/4).
  const rng = new Rng(9);
  const randomTrainY = Int32Array.from({ length: 600 }, () => rng.int(0, 4));
  const randomTestY = Int32Array.from({ length: 300 }, () => rng.int(0, 4));
  const rnd = await linearProbe(train.x, randomTrainY, test.x, randomTestY, opts);
  assert.ok(rnd.top1 > 0.15 && rnd.top1 < 0.35, `random labels: top1 ${rnd.top1}`);

  const again = await linearProbe(train.x, train.y, test.x, test.y, opts);
  assert.deepEqual(again, sep, "same seed must give the same result");
  const otherSeed = await linearProbe(train.x, train.y, test.x, test.y, { ...opts, seed: 6, epochs: 2 });
  const otherSeed2 = await linearProbe(train.x, train.y, test.x, test.y, { ...opts, seed: 7, epochs: 2 });
  assert.notEqual(otherSeed.finalTrainLoss, otherSeed2.finalTrainLoss, "different seeds should shuffle differently");

  // Standardisation: the same features scaled by 1e-3 per dimension give the same result.
  const scaledTrain = tf.mul(train.x, 1e-3) as tf.Tensor2D;
  const scaledTest = tf.mul(test.x, 1e-3) as tf.Tensor2D;
  const scaled = await linearProbe(scaledTrain, train.y, scaledTest, test.y, opts);
  assert.ok(Math.abs(scaled.top1 - sep.top1) < 0.01, `scaled features: ${scaled.top1} vs ${sep.top1}`);
  await assert.rejects(linearProbe(train.x, train.y, test.x, test.y, { epochs: 0 }), /epochs/);
  tf.dispose([train.x, test.x, scaledTrain, scaledTest]);
  assert.equal(tf.memory().numTensors, before, "linearProbe leaked tensors");
});

test("collapseScore: ~1 for isotropic embeddings, ~0 for a constant one; scale-free", async () => {
  await useBackend("wasm");
  const before = tf.memory().numTensors;
  const read = (z: tf.Tensor2D) => tf.tidy(() => collapseScore(z).dataSync()[0]);
  const healthy = tf.randomNormal([1024, 128], 0, 1, "float32", 11) as tf.Tensor2D;
  const score = read(healthy);
  assert.ok(Math.abs(score - 1) < 0.03, `gaussian score ${score}`);
  const constant = tf.tidy(() => tf.tile(tf.tensor2d([[0.3, -1, 2, 0.5, 7, 1, 1, 0]]), [64, 1])) as tf.Tensor2D;
  assert.ok(read(constant) < 1e-3, `constant score ${read(constant)}`);
  // mean + small noise: score ~ |noise| / |mean| = 0.05 sqrt(128) / sqrt(128) = 0.05.
  const nearCollapsed = tf.tidy(() => tf.add(tf.mul(healthy, 0.05), 1)) as tf.Tensor2D;
  const nc = read(nearCollapsed);
  assert.ok(Math.abs(nc - 0.05) < 0.01, `near-collapsed score ${nc}`);
  const scaled = tf.tidy(() => tf.mul(healthy, tf.randomUniform([1024, 1], 0.1, 10, "float32", 2))) as tf.Tensor2D;
  assert.ok(Math.abs(read(scaled) - score) < 1e-4, "score must not depend on embedding norms");
  const single = tf.zeros([1, 4]) as tf.Tensor2D;
  assert.throws(() => collapseScore(single), /at least 2/);
  tf.dispose([healthy, constant, nearCollapsed, scaled, single]);
  assert.equal(tf.memory().numTensors, before);
});

test("CollapseMonitor warns below the threshold and on a large drop from the running max", async () => {
  await useBackend("wasm");
  const seen: string[] = [];
  const monitor = new CollapseMonitor({ onWarning: (msg) => seen.push(msg) });
  assert.equal(monitor.threshold, 0.15);
  assert.equal(monitor.update(0, 0.9), null);
  assert.equal(monitor.update(10, 0.7), null);
  assert.equal(monitor.update(20, 0.4), null);
  const w = monitor.update(30, 0.05);
  assert.match(w ?? "", /collapse.*step 30.*threshold/);
  assert.equal(seen.length, 1);
  const scalar = tf.scalar(0.01);
  assert.match(monitor.update(40, scalar) ?? "", /step 40/);
  assert.ok(!scalar.isDisposed, "a tensor score is read, not disposed");
  scalar.dispose();
  assert.deepEqual(monitor.history.map((h) => h.step), [0, 10, 20, 30, 40]);
  assert.deepEqual(monitor.history.map((h) => h.warning !== null), [false, false, false, true, true]);

  const drops = new CollapseMonitor({ threshold: 0.01, dropFactor: 4 });
  assert.equal(drops.update(0, 0.8), null);
  assert.equal(drops.update(1, 0.3), null);
  assert.match(drops.update(2, 0.19) ?? "", /4x below its maximum 0.8/);

  const warm = new CollapseMonitor({ warmupSteps: 100 });
  assert.equal(warm.update(0, 0.01), null, "no warnings during warmup");
  assert.equal(warm.update(50, 5), null);
  assert.equal(warm.update(100, 0.5), null, "warmup scores do not set the running max");
  assert.equal(warm.maxScore, 0.5);
  assert.notEqual(warm.update(101, 0.01), null);
  assert.throws(() => new CollapseMonitor({ dropFactor: 1 }), /dropFactor/);
});

/** Features [mean pixel, training flag, batch size] per image; records batch sizes it saw. */
class FakeBackbone extends Backbone {
  readonly outputDim = 3;
  readonly batchSizes: number[] = [];
  forward(x: tf.Tensor4D): tf.Tensor2D {
    const n = x.shape[0];
    this.batchSizes.push(n);
    return tf.tidy(() => {
      const mean = tf.mean(tf.reshape(x, [n, -1]), 1, true);
      return tf.concat([mean, tf.fill([n, 1], this.training ? 1 : 0), tf.fill([n, 1], n)], 1) as tf.Tensor2D;
    });
  }
}

function tinyDataset(count: number, h: number, w: number, c: number, seed: number): ImageDataset {
  const rng = new Rng(seed);
  const images = Uint8Array.from({ length: count * h * w * c }, () => rng.int(0, 256));
  const labels = Uint8Array.from({ length: count }, (_, i) => i % 3);
  return { name: `tiny-${seed}`, images, labels, classNames: ["a", "b", "c"], count, height: h, width: w, channels: c };
}

test("extractFeatures: batched, eval mode during extraction and restored, transform applied, no leaks", async () => {
  await useBackend("wasm");
  const ds = tinyDataset(10, 3, 2, 2, 1);
  const backbone = new FakeBackbone();
  const before = tf.memory().numTensors;
  const feats = await extractFeatures(backbone, ds, { batchSize: 4 });
  assert.deepEqual(feats.shape, [10, 3]);
  assert.deepEqual(backbone.batchSizes, [4, 4, 2]);
  assert.equal(backbone.training, true, "training mode restored");
  const f = feats.arraySync();
  for (let i = 0; i < 10; i++) {
    let sum = 0;
    for (let p = 0; p < 12; p++) sum += ds.images[i * 12 + p];
    assert.ok(Math.abs(f[i][0] - sum / 12 / 255) < 1e-6, `row ${i} mean`);
    assert.equal(f[i][1], 0, "forward ran in eval mode");
    assert.equal(f[i][2], i < 8 ? 4 : 2);
  }
  feats.dispose();
  assert.equal(tf.memory().numTensors, before, "extractFeatures leaked tensors");

  backbone.eval();
  const doubled = await extractFeatures(backbone, ds, { transform: (x) => tf.mul(x, 2) as tf.Tensor4D });
  assert.equal(backbone.training, false, "eval mode restored");
  assert.ok(Math.abs(doubled.arraySync()[3][0] - 2 * f[3][0]) < 1e-6, "transform applied");
  assert.equal(backbone.batchSizes.at(-1), 10, "default batch size covers the tiny set in one batch");
  doubled.dispose();
  await assert.rejects(extractFeatures(backbone, ds, { batchSize: 0 }), /batchSize/);
  assert.equal(tf.memory().numTensors, before);
});

test("rawPixelFeatures and evaluateRepresentation", async () => {
  await useBackend("wasm");
  const train = tinyDataset(60, 4, 4, 1, 2);
  const test = tinyDataset(30, 4, 4, 1, 3);
  const before = tf.memory().numTensors;
  const raw = rawPixelFeatures(train);
  assert.deepEqual(raw.shape, [60, 16]);
  const rawData = raw.dataSync();
  assert.ok(Math.abs(rawData[17] - train.images[17] / 255) < 1e-7);
  const rawTest = rawPixelFeatures(test);
  const knnOpts = { k: 5, temperature: 0.1 };
  const expectedKnn = knnAccuracy(raw, train.labels, rawTest, test.labels, knnOpts);
  tf.dispose([raw, rawTest]);

  const probe = { epochs: 3, batchSize: 32, seed: 1 };
  const pixels = await evaluateRepresentation({ train, test, knn: knnOpts, probe });
  assert.equal(pixels.source, "raw-pixels");
  assert.equal(pixels.featureDim, 16);
  assert.equal(pixels.knnTop1, expectedKnn);
  assert.ok(pixels.linearTop1 >= 0 && pixels.linearTop1 <= 1);

  const backbone = new FakeBackbone();
  const learned = await evaluateRepresentation({ backbone, train, test, knn: knnOpts, probe: false, batchSize: 16 });
  assert.equal(learned.source, "backbone");
  assert.equal(learned.featureDim, 3);
  assert.ok(Number.isNaN(learned.linearTop1));
  assert.ok(learned.knnTop1 >= 0 && learned.knnTop1 <= 1);
  assert.equal(tf.memory().numTensors, before, "evaluateRepresentation leaked tensors");
});
