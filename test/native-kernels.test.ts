/**
 * sslkit-native, the optional OpenBLAS kernels for the wasm backend: the addon's functions against
 * hand-written loops, argument checking, determinism, and the wasm kernels it serves (forward and
 * gradients against the cpu backend are in wasm-gradients.test.ts, with and without it).
 * Skipped where the addon is not built, unless SSLKIT_REQUIRE_NATIVE=1 (CI sets it) makes that a failure.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { tf, useBackend, relError } from "./helpers";
import { Rng } from "../lib/src/random";
import * as fastOps from "../lib/src/nn/fast-ops";
import { initBackend, describeBackend } from "../lib/src/backend";
import { BATCH_NORM_FORWARD, loadNativeKernels, nativeKernelNames, nativeKernelsActive } from "../lib/src/backend/native-kernels";
import type { NativeKernels } from "sslkit-native";

const { kernels: native, why } = loadNativeKernels();
const skip = native ? false : `sslkit-native not built: ${why}`;

test("sslkit-native is built where it is required (SSLKIT_REQUIRE_NATIVE=1)", { skip: process.env.SSLKIT_REQUIRE_NATIVE === "1" ? false : "SSLKIT_REQUIRE_NATIVE is not set" }, () => {
  assert.ok(native, `sslkit-native did not load: ${why}`);
});

const random = (n: number, seed: number): Float32Array => {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
};

/** c = op(a) op(b) (+ bias) by the definition, in float64. */
function naiveGemm(a: Float32Array, b: Float32Array, bias: Float32Array | null, ta: boolean, tb: boolean, m: number, n: number, k: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j] : 0;
      for (let p = 0; p < k; p++) s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] = s;
    }
  }
  return c;
}

test("gemm: every transpose combination, a bias, batches with a broadcast operand, and splits over threads", { skip }, () => {
  const kernels = native!;
  for (const [m, n, k] of [[3, 4, 5], [70, 9, 33], [5, 300, 40]]) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const a = random(m * k, m + n);
        const b = random(k * n, k);
        const bias = ta ? random(n, 3) : null;
        const c = new Float32Array(m * n);
        kernels.gemm(a, b, c, bias, ta, tb, 1, m, n, k, m * k, k * n);
        const e = relError(c, naiveGemm(a, b, bias, ta, tb, m, n, k));
        assert.ok(e < 1e-5, `[${m},${k}]x[${k},${n}] ta=${ta} tb=${tb}: rel error ${e}`);
      }
    }
  }
  // Batch 4 with b shared (stride 0) across the batch.
  const [batch, m, n, k] = [4, 6, 3, 5];
  const a = random(batch * m * k, 1);
  const b = random(k * n, 2);
  const c = new Float32Array(batch * m * n);
  kernels.gemm(a, b, c, null, false, false, batch, m, n, k, m * k, 0);
  for (let i = 0; i < batch; i++) {
    const e = relError(c.subarray(i * m * n, (i + 1) * m * n), naiveGemm(a.subarray(i * m * k, (i + 1) * m * k), b, null, false, false, m, n, k));
    assert.ok(e < 1e-5, `batch ${i}: rel error ${e}`);
  }
});

type ConvCase = { n: number; h: number; w: number; ci: number; kh: number; kw: number; co: number; s: number; pt: number; pl: number; oh: number; ow: number };
const convArgs = (c: ConvCase) => [c.n, c.h, c.w, c.ci, c.kh, c.kw, c.co, c.s, c.s, c.pt, c.pl, c.oh, c.ow] as const;

/** y, dW and dx of y = conv(x, w) (and of sum(y * dy)) by the definition. */
function naiveConv(c: ConvCase, x: Float32Array, w: Float32Array, dy: Float32Array) {
  const y = new Float64Array(c.n * c.oh * c.ow * c.co);
  const dw = new Float64Array(w.length);
  const dx = new Float64Array(x.length);
  for (let b = 0; b < c.n; b++)
    for (let oy = 0; oy < c.oh; oy++)
      for (let ox = 0; ox < c.ow; ox++)
        for (let o = 0; o < c.co; o++) {
          const yi = ((b * c.oh + oy) * c.ow + ox) * c.co + o;
          for (let ky = 0; ky < c.kh; ky++)
            for (let kx = 0; kx < c.kw; kx++) {
              const iy = oy * c.s + ky - c.pt;
              const ix = ox * c.s + kx - c.pl;
              if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
              for (let ch = 0; ch < c.ci; ch++) {
                const xi = ((b * c.h + iy) * c.w + ix) * c.ci + ch;
                const wi = ((ky * c.kw + kx) * c.ci + ch) * c.co + o;
                y[yi] += x[xi] * w[wi];
                dw[wi] += x[xi] * dy[yi];
                dx[xi] += w[wi] * dy[yi];
              }
            }
        }
  return { y, dw, dx };
}

/** Runs the three conv kernels on seeded inputs (seeds `seed`, +10, +20) and checks each against naiveConv. */
function checkConvAgainstDefinition(kernels: NativeKernels, c: ConvCase, seed: number, tolerance: number, label: string): void {
  const x = random(c.n * c.h * c.w * c.ci, seed);
  const w = random(c.kh * c.kw * c.ci * c.co, seed + 10);
  const dy = random(c.n * c.oh * c.ow * c.co, seed + 20);
  const ref = naiveConv(c, x, w, dy);
  const [y, dw, dx] = [ref.y.length, w.length, x.length].map((n) => new Float32Array(n).fill(Number.NaN)); // every element must be written
  kernels.conv2d(x, w, y, ...convArgs(c));
  kernels.conv2dFilterGrad(x, dy, dw, ...convArgs(c));
  kernels.conv2dInputGrad(dy, w, dx, ...convArgs(c));
  for (const [name, got, want] of [["y", y, ref.y], ["dw", dw, ref.dw], ["dx", dx, ref.dx]] as const) {
    const e = relError(got, want);
    assert.ok(e < tolerance, `${label} ${name}: rel error ${e}`);
  }
}

test("conv2d and both gradients equal the definition (padding, stride 2, 1x1, chunks of many images)", { skip }, () => {
  const kernels = native!;
  const cases: ConvCase[] = [
    { n: 3, h: 7, w: 6, ci: 5, kh: 3, kw: 3, co: 4, s: 2, pt: 1, pl: 1, oh: 4, ow: 3 },
    { n: 2, h: 5, w: 5, ci: 3, kh: 3, kw: 3, co: 2, s: 1, pt: 0, pl: 0, oh: 3, ow: 3 },
    { n: 4, h: 6, w: 5, ci: 6, kh: 1, kw: 1, co: 7, s: 1, pt: 0, pl: 0, oh: 6, ow: 5 }, // a plain product
    { n: 3, h: 8, w: 8, ci: 4, kh: 1, kw: 1, co: 3, s: 2, pt: 0, pl: 0, oh: 4, ow: 4 },
    { n: 40, h: 4, w: 4, ci: 3, kh: 3, kw: 3, co: 5, s: 1, pt: 1, pl: 1, oh: 4, ow: 4 }, // several images a chunk
    { n: 2, h: 9, w: 7, ci: 2, kh: 2, kw: 4, co: 3, s: 1, pt: 1, pl: 2, oh: 9, ow: 7 }, // uneven explicit pads
    // >= 16 input channels at stride 1: dx as a forward conv with the flipped filter.
    { n: 3, h: 6, w: 5, ci: 16, kh: 3, kw: 3, co: 4, s: 1, pt: 1, pl: 1, oh: 6, ow: 5 },
    { n: 2, h: 7, w: 6, ci: 17, kh: 2, kw: 4, co: 3, s: 1, pt: 1, pl: 2, oh: 7, ow: 6 },
    { n: 2, h: 7, w: 6, ci: 16, kh: 3, kw: 3, co: 5, s: 1, pt: 0, pl: 0, oh: 5, ow: 4 }, // valid
  ];
  cases.forEach((c, i) => checkConvAgainstDefinition(kernels, c, 10 + i, 1e-5, `case ${i}`));
});

test("batch norm forward and backward equal Ioffe & Szegedy's alg. 1 computed in float64", { skip }, () => {
  const kernels = native!;
  const [m, c, eps] = [600, 5, 1e-5];
  const x = random(m * c, 1).map((v, i) => v * (1 + (i % c)) + 4); // columns of different scales, off zero
  const gamma = random(c, 2);
  const beta = random(c, 3);
  const dy = random(m * c, 4);
  const mean = new Float64Array(c);
  const variance = new Float64Array(c);
  for (let i = 0; i < m * c; i++) mean[i % c] += x[i] / m;
  for (let i = 0; i < m * c; i++) variance[i % c] += (x[i] - mean[i % c]) ** 2 / m;
  const xHat = Float64Array.from(x, (v, i) => (v - mean[i % c]) / Math.sqrt(variance[i % c] + eps));
  const dbeta = new Float64Array(c);
  const dgamma = new Float64Array(c);
  for (let i = 0; i < m * c; i++) {
    dbeta[i % c] += dy[i];
    dgamma[i % c] += dy[i] * xHat[i];
  }
  // dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xHat * mean(dy * xHat)).
  const dx = Float64Array.from(dy, (g, i) => (gamma[i % c] / Math.sqrt(variance[i % c] + eps)) * (g - dbeta[i % c] / m - (xHat[i] * dgamma[i % c]) / m));

  const y = new Float32Array(m * c);
  const gotMean = new Float32Array(c);
  const gotVar = new Float32Array(c);
  kernels.batchNormForward(x, gamma, beta, y, gotMean, gotVar, m, c, eps);
  assert.ok(relError(gotMean, mean) < 1e-6 && relError(gotVar, variance) < 1e-6, "statistics");
  assert.ok(relError(y, Float64Array.from(xHat, (v, i) => v * gamma[i % c] + beta[i % c])) < 1e-5, "y");
  const [gotDx, gotDgamma, gotDbeta] = [new Float32Array(m * c), new Float32Array(c), new Float32Array(c)];
  kernels.batchNormBackward(x, dy, gotMean, gotVar, gamma, gotDx, null, null, m, c, eps);
  kernels.batchNormBackward(x, dy, gotMean, gotVar, gamma, null, gotDgamma, gotDbeta, m, c, eps);
  assert.ok(relError(gotDx, dx) < 1e-4, `dx: ${relError(gotDx, dx)}`);
  assert.ok(relError(gotDgamma, dgamma) < 1e-5 && relError(gotDbeta, dbeta) < 1e-5, "dgamma, dbeta");
  const aloneDbeta = new Float32Array(c); // dbeta alone: the pass that reads dy only
  kernels.batchNormBackward(x, dy, gotMean, gotVar, gamma, null, null, aloneDbeta, m, c, eps);
  assert.deepEqual(aloneDbeta, gotDbeta);
  // Without gamma/beta: y = xHat.
  kernels.batchNormForward(x, null, null, y, gotMean, gotVar, m, c, eps);
  assert.ok(relError(y, xHat) < 1e-5, "y without affine");
});

test("channelAffine scales and shifts each channel (eval-mode batch norm)", { skip }, () => {
  const kernels = native!;
  const [m, c] = [70000, 7]; // enough rows for several threads
  const x = random(m * c, 3);
  const scale = random(c, 4);
  const shift = random(c, 5);
  const y = new Float32Array(m * c).fill(Number.NaN);
  kernels.channelAffine(x, scale, shift, y, m, c);
  assert.ok(relError(y, Float64Array.from(x, (v, i) => v * scale[i % c] + shift[i % c])) < 1e-6);
});

test("add and relu, element by element over several threads", { skip }, () => {
  const kernels = native!;
  const n = 300001;
  const [a, b] = [random(n, 6), random(n, 7)];
  const [sum, relu] = [new Float32Array(n).fill(Number.NaN), new Float32Array(n).fill(Number.NaN)];
  kernels.add(a, b, sum, n);
  kernels.relu(a, relu, n);
  assert.deepEqual(sum, Float32Array.from(a, (v, i) => v + b[i]));
  assert.deepEqual(relu, Float32Array.from(a, (v) => Math.max(v, 0)));
});

test("reluGrad passes dy where the output is positive, 0 elsewhere", { skip }, () => {
  const dy = Float32Array.from([1, 2, 3, 4, 5]);
  const y = Float32Array.from([0.5, 0, -0, 2, 1e-30]);
  const dx = new Float32Array(5);
  native!.reluGrad(dy, y, dx, 5);
  assert.deepEqual([...dx], [1, 0, 0, 4, 5]);
});

test("3x3 stride-1 convolutions by Winograd F(4x4, 3x3) and F(2x2, 3x3) equal the definition (edges, pads, many blocks)", { skip }, () => {
  const kernels = native!;
  // Winograd needs >= 16 channels in and out; F(4x4) runs on maps of at least 8x8, F(2x2) below.
  const cases: ConvCase[] = [
    { n: 2, h: 9, w: 11, ci: 16, kh: 3, kw: 3, co: 24, s: 1, pt: 1, pl: 1, oh: 9, ow: 11 }, // sizes not a multiple of the tile
    { n: 3, h: 8, w: 8, ci: 24, kh: 3, kw: 3, co: 16, s: 1, pt: 1, pl: 1, oh: 8, ow: 8 },
    { n: 5, h: 4, w: 4, ci: 16, kh: 3, kw: 3, co: 16, s: 1, pt: 1, pl: 1, oh: 4, ow: 4 }, // small map: F(2x2)
    { n: 2, h: 12, w: 7, ci: 16, kh: 3, kw: 3, co: 17, s: 1, pt: 0, pl: 0, oh: 10, ow: 5 }, // valid, odd channels
    { n: 2, h: 10, w: 13, ci: 17, kh: 3, kw: 3, co: 16, s: 1, pt: 2, pl: 0, oh: 12, ow: 11 }, // uneven explicit pads
    { n: 150, h: 8, w: 8, ci: 16, kh: 3, kw: 3, co: 16, s: 1, pt: 1, pl: 1, oh: 8, ow: 8 }, // several blocks a thread
  ];
  try {
    for (const tile of [4, 2] as const) {
      kernels.setWinograd(tile);
      assert.equal(kernels.info().winograd, tile);
      // F(4x4)'s transforms scale values by up to 8 (error ~1e-6 here); F(2x2) is as exact as im2col.
      cases.forEach((c, i) => checkConvAgainstDefinition(kernels, c, 40 + i, tile === 4 ? 2e-5 : 1e-5, `F(${tile}x${tile}) case ${i}`));
    }
    // The tile setting takes effect: the three algorithms round differently.
    const c = cases[1];
    const x = random(c.n * c.h * c.w * c.ci, 41);
    const w = random(9 * c.ci * c.co, 51);
    const outputs = ([4, 2, 0] as const).map((tile) => {
      kernels.setWinograd(tile);
      const y = new Float32Array(c.n * c.oh * c.ow * c.co);
      kernels.conv2d(x, w, y, ...convArgs(c));
      return Buffer.from(y.buffer).toString("base64");
    });
    assert.equal(new Set(outputs).size, 3, "F(4x4), F(2x2) and im2col give bitwise different results");
    assert.throws(() => kernels.setWinograd(3 as 4), /tile must be 0, 2 or 4, got 3/);
  } finally {
    kernels.setWinograd(4);
  }
});

test("gelu and its gradient keep their relative accuracy into the lower tail (normal CDF by erfc)", { skip }, () => {
  const kernels = native!;
  // Phi(x), the standard normal CDF, to 14 digits (tables; Phi(-x) = 1 - Phi(x)).
  const phi: Array<[number, number]> = [
    [-8, 6.220960574271785e-16], [-5, 2.866515718791939e-7], [-3, 1.349898031630095e-3], [-1, 0.158655253931457],
    [-0.5, 0.308537538725987], [0, 0.5], [0.5, 0.691462461274013], [1, 0.841344746068543], [3, 0.998650101968370], [5, 0.999999713348428],
  ];
  const n = phi.length;
  const x = Float32Array.from(phi, ([v]) => v);
  const y = new Float32Array(n).fill(Number.NaN);
  kernels.gelu(x, y, n);
  phi.forEach(([v, p], i) => {
    if (v === 0) assert.equal(y[i], 0);
    else assert.ok(Math.abs(y[i] - v * p) <= 2e-6 * Math.abs(v * p), `gelu(${v}) = ${y[i]}, expected ${v * p}`);
  });
  // d/dx x Phi(x) = Phi(x) + x phi(x), phi the standard normal density; dy scales it.
  const dy = Float32Array.from(phi, (_, i) => i - 3);
  const dx = new Float32Array(n).fill(Number.NaN);
  kernels.geluGrad(x, dy, dx, n);
  phi.forEach(([v, p], i) => {
    const want = dy[i] * (p + (v * Math.exp(-0.5 * v * v)) / Math.sqrt(2 * Math.PI));
    assert.ok(Math.abs(dx[i] - want) <= 2e-6 * Math.abs(want) + 1e-30, `gelu'(${v}) * ${dy[i]} = ${dx[i]}, expected ${want}`);
  });
  // Far tails: exactly 0 and x (no NaN or inf), over several threads.
  const big = 200003;
  const xs = Float32Array.from({ length: big }, (_, i) => (i % 2 ? 1 : -1) * (20 + (i % 7)));
  const ys = new Float32Array(big);
  kernels.gelu(xs, ys, big);
  assert.ok(ys.every((v, i) => (xs[i] < 0 ? Object.is(Math.abs(v), 0) : v === xs[i])));
});

test("layer norm forward and backward equal the definition computed in float64", { skip }, () => {
  const kernels = native!;
  const [m, d, eps] = [3001, 24, 1e-6]; // enough rows for several threads
  const x = Float32Array.from(random(m * d, 21), (v, i) => v * (1 + (i % 5)) + (i % 3)); // rows of different scales and means
  const [gamma, beta, dy] = [random(d, 22), random(d, 23), random(m * d, 24)];
  const y = new Float32Array(m * d);
  const [mean, rstd] = [new Float32Array(m), new Float32Array(m)];
  kernels.layerNormForward(x, gamma, beta, y, mean, rstd, m, d, eps);
  const [dx, dgamma, dbeta] = [new Float32Array(m * d), new Float32Array(d), new Float32Array(d)];
  kernels.layerNormBackward(x, dy, mean, rstd, gamma, dx, dgamma, dbeta, m, d);
  const yRef = new Float64Array(m * d);
  const dxRef = new Float64Array(m * d);
  const [dgRef, dbRef] = [new Float64Array(d), new Float64Array(d)];
  for (let r = 0; r < m; r++) {
    const row = Array.from(x.subarray(r * d, (r + 1) * d));
    const mu = row.reduce((a, v) => a + v, 0) / d;
    const rs = 1 / Math.sqrt(row.reduce((a, v) => a + (v - mu) ** 2, 0) / d + eps);
    const xHat = row.map((v) => (v - mu) * rs);
    const g = xHat.map((_, j) => dy[r * d + j] * gamma[j]);
    const mg = g.reduce((a, v) => a + v, 0) / d;
    const mgx = g.reduce((a, v, j) => a + v * xHat[j], 0) / d;
    for (let j = 0; j < d; j++) {
      yRef[r * d + j] = xHat[j] * gamma[j] + beta[j];
      dxRef[r * d + j] = rs * (g[j] - mg - xHat[j] * mgx);
      dgRef[j] += dy[r * d + j] * xHat[j];
      dbRef[j] += dy[r * d + j];
    }
  }
  assert.ok(relError(y, yRef) < 1e-5, "y");
  assert.ok(relError(dx, dxRef) < 1e-4, "dx");
  assert.ok(relError(dgamma, dgRef) < 1e-4, "dgamma");
  assert.ok(relError(dbeta, dbRef) < 1e-5, "dbeta");
  // Each gradient alone (null for the others) is the same.
  const dxOnly = new Float32Array(m * d);
  kernels.layerNormBackward(x, dy, mean, rstd, gamma, dxOnly, null, null, m, d);
  assert.deepEqual(dxOnly, dx);
});

test("moveHeads: part p of tokens [n, l, parts, h, dh] to heads [n, h, l, dh] and back", { skip }, () => {
  const kernels = native!;
  const [n, l, parts, h, dh] = [70, 11, 3, 4, 8]; // enough blocks for several threads
  const tokens = Float32Array.from({ length: n * l * parts * h * dh }, (_, i) => i);
  const back = new Float32Array(tokens.length).fill(Number.NaN);
  for (let p = 0; p < parts; p++) {
    const heads = new Float32Array(n * h * l * dh);
    kernels.moveHeads(tokens, heads, n, l, parts, p, h, dh, 0);
    for (const [b, head, t, j] of [[0, 0, 0, 0], [3, 2, 5, 7], [n - 1, h - 1, l - 1, dh - 1], [41, 1, 10, 3]]) {
      assert.equal(heads[((b * h + head) * l + t) * dh + j], tokens[(((b * l + t) * parts + p) * h + head) * dh + j], `part ${p} image ${b} head ${head} token ${t} ${j}`);
    }
    kernels.moveHeads(back, heads, n, l, parts, p, h, dh, 1);
  }
  assert.deepEqual(back, tokens);
  assert.throws(() => kernels.moveHeads(tokens, new Float32Array(8), n, l, parts, 0, h, dh, 0), /heads holds 8 floats/);
  assert.throws(() => kernels.moveHeads(tokens, tokens, n, l, parts, 3, h, dh, 0), /part must be < parts/);
});

test("softmax (scale folded in) and its gradient equal the definition computed in float64", { skip }, () => {
  const kernels = native!;
  const [m, d, scale] = [1500, 50, 1 / Math.sqrt(32)]; // attention rows; several threads
  const x = random(m * d, 21).map((v) => 6 * v);
  // a row of huge logits (max subtraction), one with -Infinity (a masked key), one constant row
  x.set([1000, 999, -1000, 990, ...new Array(d - 4).fill(-5)], 0);
  x.set([Number.NEGATIVE_INFINITY, 2, Number.NEGATIVE_INFINITY, ...new Array(d - 3).fill(0)], d);
  x.fill(3, 2 * d, 3 * d);
  const dy = random(m * d, 22);
  const y = new Float32Array(m * d);
  const dx = new Float32Array(m * d);
  kernels.softmax(x, y, m, d, scale);
  kernels.softmaxGrad(y, dy, dx, m, d, scale);
  const yRef = new Float64Array(m * d);
  const dxRef = new Float64Array(m * d);
  for (let r = 0; r < m; r++) {
    const row = Array.from(x.subarray(r * d, (r + 1) * d), (v) => v * scale);
    const top = Math.max(...row);
    const e = row.map((v) => Math.exp(v - top));
    const sum = e.reduce((a, v) => a + v, 0);
    const p = e.map((v) => v / sum);
    const dot = p.reduce((a, v, j) => a + v * dy[r * d + j], 0);
    p.forEach((v, j) => {
      yRef[r * d + j] = v;
      dxRef[r * d + j] = scale * v * (dy[r * d + j] - dot);
    });
  }
  assert.ok(relError(y, yRef) < 1e-6, `y rel error ${relError(y, yRef)}`);
  assert.ok(relError(dx, dxRef) < 1e-5, `dx rel error ${relError(dx, dxRef)}`);
  assert.ok(Math.abs(y[0] - yRef[0]) < 1e-6 && y[2] === 0, "huge logits: no overflow, exp(-2000 s) is 0");
  assert.ok(y[d] === 0 && y[d + 2] === 0 && Math.abs(y[d + 1] - yRef[d + 1]) < 1e-6, "-Infinity takes no weight");
  assert.ok(y.subarray(2 * d, 3 * d).every((v) => Math.abs(v - 1 / d) < 1e-7), "a constant row is uniform");
  assert.throws(() => kernels.softmax(x, y, m, d, 0), /scale must be > 0/);
  assert.throws(() => kernels.softmaxGrad(y, dy, new Float32Array(d), m, d, scale), /dx holds 50 floats/);
});

test("the addon rejects wrong arguments with a message, not a crash", { skip }, () => {
  const kernels = native!;
  const a = new Float32Array(6);
  assert.throws(() => kernels.gemm(a, a, new Float32Array(3), null, false, false, 1, 2, 2, 3, 6, 6), /c holds 3 floats, needs 4/);
  assert.throws(() => kernels.gemm(new Float64Array(6) as unknown as Float32Array, a, a, null, false, false, 1, 2, 2, 3, 6, 6), /a must be a Float32Array/);
  assert.throws(() => kernels.conv2d(a, a, a, 1, 2, 2, 1, 1, 1, 1, 0, 1, 0, 0, 2, 2), /sh must be an integer >= 1/);
  assert.throws(() => (kernels.gemm as unknown as (...args: unknown[]) => void)(a, a), /expected 12 arguments, got 2/);
});

test("results are bitwise reproducible across runs (fixed work split)", { skip }, () => {
  const kernels = native!;
  const c: ConvCase = { n: 16, h: 12, w: 12, ci: 16, kh: 3, kw: 3, co: 16, s: 1, pt: 1, pl: 1, oh: 12, ow: 12 };
  const x = random(c.n * c.h * c.w * c.ci, 5);
  const dy = random(c.n * c.oh * c.ow * c.co, 6);
  const run = (ci: number) => {
    const shape = { ...c, ci };
    const dw = new Float32Array(c.kh * c.kw * ci * c.co);
    kernels.conv2dFilterGrad(x.subarray(0, c.n * c.h * c.w * ci), dy, dw, ...convArgs(shape));
    return dw;
  };
  assert.deepEqual(run(8), run(8)); // im2col
  assert.deepEqual(run(16), run(16)); // Winograd
});

test("on wasm: the native kernels are registered, described, and a train-mode BatchNorm + ReLU + conv step leaks nothing", { skip }, async () => {
  const info = await initBackend("wasm");
  await useBackend("wasm");
  assert.ok(info.native?.startsWith("OpenBLAS"), `BackendInfo.native: ${info.native}`);
  assert.match(describeBackend(info), /OpenBLAS .* kernels\)$/);
  assert.equal(nativeKernelsActive(), true);
  for (const name of [...nativeKernelNames, BATCH_NORM_FORWARD]) assert.ok(tf.getKernel(name, "wasm"), `${name} registered`);
  const x = tf.randomNormal([4, 6, 6, 3], 0, 1, "float32", 1) as tf.Tensor4D;
  const w = tf.variable(tf.randomNormal([3, 3, 3, 8], 0, 0.3, "float32", 2));
  const gamma = tf.variable(tf.ones([8]));
  const beta = tf.variable(tf.zeros([8]));
  const step = () => {
    const { value, grads } = tf.variableGrads(() => {
      const h = fastOps.conv2d(x, w as unknown as tf.Tensor4D, 1, "same");
      const { y, mean, variance } = fastOps.batchNormTrain(tf.reshape(h, [-1, 8]) as tf.Tensor2D, gamma as unknown as tf.Tensor1D, beta as unknown as tf.Tensor1D, 1e-5);
      tf.dispose([mean, variance]);
      return tf.sum(tf.square(fastOps.relu(y))) as tf.Scalar;
    }, [w, gamma, beta] as unknown as tf.Variable[]);
    tf.dispose([value, ...Object.values(grads)]);
  };
  step();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) step();
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  tf.dispose([x, w, gamma, beta]);
});
