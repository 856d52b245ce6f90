import { test } from "node:test";
import assert from "node:assert/strict";
import { tf, useBackend, relError } from "./helpers";
import { ntXentLoss, contrastiveAccuracy } from "../lib/src/losses";

// A small N = 3, D = 4 example (two views of three samples).
const Z1 = [
  [1.0, 0.5, -0.3, 2.0],
  [-0.7, 1.2, 0.8, 0.1],
  [0.3, -1.5, 0.4, -0.6],
];
const Z2 = [
  [0.9, 0.2, -0.1, 1.5],
  [0.4, 0.3, 1.1, -0.9],
  [-0.2, -1.0, 0.9, -0.4],
];

/** SimCLR eq. 1 with plain double loops, in float64. */
function referenceNtXent(z1: number[][], z2: number[][], t: number): number {
  const z = [...z1, ...z2].map((row) => {
    const norm = Math.sqrt(row.reduce((s, v) => s + v * v, 0));
    return row.map((v) => v / norm);
  });
  const n = z1.length;
  const cos = (a: number[], b: number[]) => a.reduce((s, v, d) => s + v * b[d], 0);
  let total = 0;
  for (let i = 0; i < 2 * n; i++) {
    const j = (i + n) % (2 * n);
    let denom = 0;
    for (let k = 0; k < 2 * n; k++) if (k !== i) denom += Math.exp(cos(z[i], z[k]) / t);
    total += -Math.log(Math.exp(cos(z[i], z[j]) / t) / denom);
  }
  return total / (2 * n);
}

function lossValue(z1: number[][], z2: number[][], t: number): number {
  return tf.tidy(() => ntXentLoss(tf.tensor2d(z1), tf.tensor2d(z2), t).dataSync()[0]);
}

test("ntXentLoss matches a hand-computed reference at several temperatures", async () => {
  await useBackend("wasm");
  const before = tf.memory().numTensors;
  for (const t of [0.07, 0.1, 0.5, 1, 2]) {
    const expected = referenceNtXent(Z1, Z2, t);
    const got = lossValue(Z1, Z2, t);
    assert.ok(Math.abs(got - expected) <= 1e-5 * Math.max(1, Math.abs(expected)), `t=${t}: got ${got}, expected ${expected}`);
  }
  assert.equal(tf.memory().numTensors, before, "ntXentLoss leaked tensors");
});

test("ntXentLoss is invariant to scaling each embedding", async () => {
  await useBackend("wasm");
  const scale = [0.01, 3, 250];
  const scaled1 = Z1.map((row, i) => row.map((v) => v * scale[i]));
  const scaled2 = Z2.map((row, i) => row.map((v) => v * scale[2 - i]));
  const a = lossValue(Z1, Z2, 0.2);
  const b = lossValue(scaled1, scaled2, 0.2);
  assert.ok(Math.abs(a - b) < 1e-5, `${a} vs ${b}`);
});

test("ntXentLoss: identical views of orthogonal samples give the analytic value", async () => {
  await useBackend("wasm");
  // z1 = z2 = orthogonal unit vectors: positive similarity 1, every negative 0, so
  // l = -log(e^{1/t} / (e^{1/t} + 2N - 2)) = log(1 + (2N - 2) e^{-1/t}).
  const n = 4;
  const eye = Array.from({ length: n }, (_, i) => Array.from({ length: 6 }, (_, d) => (d === i ? 2 : 0)));
  for (const t of [0.1, 0.5, 1]) {
    const expected = Math.log(1 + (2 * n - 2) * Math.exp(-1 / t));
    const got = lossValue(eye, eye, t);
    assert.ok(Math.abs(got - expected) < 1e-5, `t=${t}: ${got} vs ${expected}`);
  }
  // A single pair has no negatives: the loss is exactly 0.
  assert.ok(Math.abs(lossValue([[1, 2]], [[3, -1]], 0.5)) < 1e-6);
  // Loss is bounded below by 0 and, with a tiny temperature, tends to 0 for a perfect solution.
  assert.ok(lossValue(eye, eye, 0.01) < 1e-6);
});

test("ntXentLoss gradient: wasm matches cpu (rel err <= 1e-4) and the reference's finite differences", async () => {
  const z1Data = tf.tidy(() => tf.randomNormal([8, 16], 0, 1, "float32", 1).arraySync()) as number[][];
  const z2Data = tf.tidy(() => tf.randomNormal([8, 16], 0, 1, "float32", 2).arraySync()) as number[][];
  const gradsOn = async (backend: "wasm" | "cpu") => {
    await useBackend(backend);
    const before = tf.memory().numTensors;
    const out = tf.tidy(() => {
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => ntXentLoss(a as tf.Tensor2D, b as tf.Tensor2D, 0.1));
      const [g1, g2] = g([tf.tensor2d(z1Data), tf.tensor2d(z2Data)]);
      return [...g1.dataSync(), ...g2.dataSync()];
    });
    assert.equal(tf.memory().numTensors, before, `gradient leaked tensors on ${backend}`);
    return out;
  };
  const wasm = await gradsOn("wasm");
  const cpu = await gradsOn("cpu");
  assert.ok(relError(wasm, cpu) <= 1e-4, `wasm vs cpu rel err ${relError(wasm, cpu)}`);
  assert.ok(wasm.some((v) => Math.abs(v) > 1e-3), "gradient is all zero");
  // Central finite differences of the float64 reference on a few coordinates of z1 and z2.
  for (const [view, row, col] of [[0, 0, 0], [0, 3, 7], [1, 5, 2], [1, 7, 15]]) {
    const h = 1e-5;
    const plus = [z1Data.map((r) => r.slice()), z2Data.map((r) => r.slice())];
    const minus = [z1Data.map((r) => r.slice()), z2Data.map((r) => r.slice())];
    plus[view][row][col] += h;
    minus[view][row][col] -= h;
    const fd = (referenceNtXent(plus[0], plus[1], 0.1) - referenceNtXent(minus[0], minus[1], 0.1)) / (2 * h);
    const analytic = wasm[view * 8 * 16 + row * 16 + col];
    assert.ok(Math.abs(analytic - fd) < 1e-3, `d/dz${view + 1}[${row},${col}]: ${analytic} vs fd ${fd}`);
  }
  await useBackend("wasm");
});

test("contrastiveAccuracy counts anchors whose nearest candidate is their positive", async () => {
  await useBackend("wasm");
  // Samples 0 and 1 are well matched across views; sample 2's second view points at sample 0.
  const z1 = [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ];
  const z2 = [
    [1, 0.1, 0],
    [0, 1, 0.1],
    [0.9, 0, 0.1],
  ];
  // anchors: z1[0] -> nearest among {z1[1], z1[2], z2[0], z2[1], z2[2]} = z2[0] (cos .995) correct.
  //          z1[1] -> z2[1] (cos .995) correct.  z1[2] -> z2[1] (.0995) vs z2[2] (.110): z2[2] correct.
  //          z2[0] -> z1[0] (.995) correct. z2[1] -> z1[1] correct.
  //          z2[2] -> z1[0] (.994) beats z1[2] (.110): wrong.   => 5 / 6.
  const acc = tf.tidy(() => contrastiveAccuracy(tf.tensor2d(z1), tf.tensor2d(z2)).dataSync()[0]);
  assert.ok(Math.abs(acc - 5 / 6) < 1e-6, `accuracy ${acc}`);
  const perfect = tf.tidy(() => contrastiveAccuracy(tf.tensor2d(z1), tf.tensor2d(z1)).dataSync()[0]);
  assert.equal(perfect, 1);
});

test("ntXentLoss rejects bad input with a clear error", async () => {
  await useBackend("wasm");
  const a = tf.zeros([3, 4]) as tf.Tensor2D;
  const b = tf.zeros([2, 4]) as tf.Tensor2D;
  assert.throws(() => ntXentLoss(a, b, 0.5), /same shape/);
  assert.throws(() => ntXentLoss(a, a, 0), /temperature/);
  assert.throws(() => ntXentLoss(tf.zeros([3]) as unknown as tf.Tensor2D, a, 0.5), /\[N, D\]/);
  tf.dispose([a, b]);
});
