import { test } from "node:test";
import assert from "node:assert/strict";
import { tf, useBackend, relError } from "./helpers";
import { Rng } from "../lib/src/random";
import {
  adjustBrightness,
  adjustContrast,
  adjustHue,
  adjustSaturation,
  applyColorJitterParams,
  blurImages,
  blurImagesMatMul,
  blurKernelSizeFor,
  byolTransforms,
  colorJitter,
  composeTransforms,
  cropResizeBoxes,
  cropResizeBoxesMatMul,
  dinoMultiCrop,
  gaussianBlur,
  gaussianKernel1d,
  mocoV2Transform,
  normalizeImages,
  randomGrayscale,
  randomHorizontalFlip,
  randomResizedCrop,
  sampleResizedCropBoxes,
  simclrTransform,
  solarize,
  toGrayscale,
  type PixelCropBox,
  type ViewTransform,
} from "../lib/src/augment";

const values = (t: tf.Tensor): number[] => Array.from(t.dataSync());

/** A seeded random batch [n,h,w,c] in [0,1]. */
function randomImages(n: number, h: number, w: number, c: number, seed = 1): tf.Tensor4D {
  const rng = new Rng(seed);
  const data = new Float32Array(n * h * w * c);
  for (let i = 0; i < data.length; i++) data[i] = rng.next();
  return tf.tensor4d(data, [n, h, w, c]);
}

/** Runs f and returns its output data, checking that it leaves no tensors behind. */
function runNoLeak(f: () => tf.Tensor | tf.Tensor[]): number[][] {
  const before = tf.memory().numTensors;
  const out = f();
  const list = Array.isArray(out) ? out : [out];
  const data = list.map(values);
  tf.dispose(list);
  assert.equal(tf.memory().numTensors, before, "tensor leak");
  return data;
}

// ---------------------------------------------------------------------------------------------
// Random resized crop
// ---------------------------------------------------------------------------------------------

/**
 * torchvision rounds w = round(sqrt(T r)), h = round(sqrt(T / r)), so a box (w, h) came from a
 * target area T in [(w-.5)(h-.5), (w+.5)(h+.5)] and ratio r in [(w-.5)/(h+.5), (w+.5)/(h-.5)].
 */
function checkBoxAgainstRanges(b: PixelCropBox, h: number, w: number, scale: [number, number], ratio: [number, number]): void {
  assert.ok(Number.isInteger(b.top) && Number.isInteger(b.left) && Number.isInteger(b.height) && Number.isInteger(b.width));
  assert.ok(b.top >= 0 && b.left >= 0 && b.height >= 1 && b.width >= 1 && b.top + b.height <= h && b.left + b.width <= w, JSON.stringify(b));
  const area = h * w;
  assert.ok((b.width - 0.5) * (b.height - 0.5) <= scale[1] * area + 1e-9, `area too large: ${JSON.stringify(b)}`);
  assert.ok((b.width + 0.5) * (b.height + 0.5) >= scale[0] * area - 1e-9, `area too small: ${JSON.stringify(b)}`);
  assert.ok((b.width - 0.5) / (b.height + 0.5) <= ratio[1] + 1e-9, `ratio too large: ${JSON.stringify(b)}`);
  assert.ok((b.width + 0.5) / (b.height - 0.5) >= ratio[0] - 1e-9, `ratio too small: ${JSON.stringify(b)}`);
}

test("sampleResizedCropBoxes: areas and ratios stay in their ranges and cover them", () => {
  const cases: Array<{ h: number; w: number; scale: [number, number]; ratio: [number, number] }> = [
    { h: 1000, w: 1000, scale: [0.08, 1], ratio: [3 / 4, 4 / 3] },
    { h: 224, w: 224, scale: [0.05, 0.4], ratio: [3 / 4, 4 / 3] },
    { h: 32, w: 32, scale: [0.2, 1], ratio: [3 / 4, 4 / 3] },
    { h: 28, w: 28, scale: [0.08, 1], ratio: [1 / 2, 2] },
  ];
  for (const { h, w, scale, ratio } of cases) {
    const boxes = sampleResizedCropBoxes(new Rng(11), 3000, h, w, { scale, ratio });
    assert.equal(boxes.length, 3000);
    for (const b of boxes) checkBoxAgainstRanges(b, h, w, scale, ratio);
    const fractions = boxes.map((b) => (b.height * b.width) / (h * w));
    const lo = Math.min(...fractions);
    const hi = Math.max(...fractions);
    // the whole range is used: smallest crops near the lower bound, largest near the upper bound
    assert.ok(lo < scale[0] + 0.1 * (scale[1] - scale[0]), `${h}x${w} ${scale}: min area fraction ${lo}`);
    assert.ok(hi > scale[1] - 0.1 * (scale[1] - scale[0]), `${h}x${w} ${scale}: max area fraction ${hi}`);
    const lefts = new Set(boxes.map((b) => b.left));
    assert.ok(lefts.size > 5, "crop positions vary");
  }
  // a tight check on a large image: fractions within 1% of [0.08, 1]
  const big = sampleResizedCropBoxes(new Rng(3), 2000, 1000, 1000, { scale: [0.08, 1] });
  for (const b of big) {
    const f = (b.height * b.width) / 1e6;
    assert.ok(f >= 0.08 * 0.99 && f <= 1, `area fraction ${f}`);
    const r = b.width / b.height;
    assert.ok(r >= 0.75 * 0.99 && r <= (4 / 3) * 1.01, `ratio ${r}`);
  }
});

test("sampleResizedCropBoxes: torchvision's centre-crop fallback and determinism", () => {
  // no attempt can fit an area of 2-3x the image: every sample falls back to the centre crop
  const wide = sampleResizedCropBoxes(new Rng(5), 4, 100, 300, { scale: [2, 3], ratio: [3 / 4, 4 / 3] });
  for (const b of wide) assert.deepEqual(b, { top: 0, left: 83, height: 100, width: 133 }); // w = round(100 * 4/3)
  const tall = sampleResizedCropBoxes(new Rng(5), 2, 300, 100, { scale: [2, 3] });
  for (const b of tall) assert.deepEqual(b, { top: 83, left: 0, height: 133, width: 100 }); // h = round(100 / (3/4))
  const square = sampleResizedCropBoxes(new Rng(5), 2, 50, 50, { scale: [2, 3] });
  for (const b of square) assert.deepEqual(b, { top: 0, left: 0, height: 50, width: 50 });
  assert.deepEqual(sampleResizedCropBoxes(new Rng(9), 20, 64, 48), sampleResizedCropBoxes(new Rng(9), 20, 64, 48));
  assert.notDeepEqual(sampleResizedCropBoxes(new Rng(9), 20, 64, 48), sampleResizedCropBoxes(new Rng(10), 20, 64, 48));
  assert.throws(() => sampleResizedCropBoxes(new Rng(1), 2, 10, 10, { scale: [0.5, 0.1] }), /scale/);
  assert.throws(() => sampleResizedCropBoxes(new Rng(1), 2, 10, 10, { ratio: [0, 1] }), /ratio/);
});

test("crop: a full-image box returns the image unchanged; sub-crops are bilinear; matMul fallback agrees", async () => {
  await useBackend("wasm");
  const x = randomImages(3, 7, 9, 3);
  const full: PixelCropBox[] = [0, 1, 2].map(() => ({ top: 0, left: 0, height: 7, width: 9 }));
  const [same] = runNoLeak(() => cropResizeBoxes(x, full, [7, 9]));
  assert.ok(relError(same, values(x)) < 1e-6, "cropAndResize full box");
  const [sameMm] = runNoLeak(() => cropResizeBoxesMatMul(x, full, [7, 9]));
  assert.ok(relError(sameMm, values(x)) < 1e-6, "matMul full box");

  // hand-computed: rows 1..2, cols 0..1 of a ramp v = 10*row + col, resized 2x2 -> 3x3 (bilinear)
  const ramp = tf.tensor4d(Array.from({ length: 16 }, (_, i) => (10 * Math.floor(i / 4) + (i % 4)) / 100), [1, 4, 4, 1]);
  const box = [{ top: 1, left: 0, height: 2, width: 2 }];
  const expected = [10, 10.5, 11, 15, 15.5, 16, 20, 20.5, 21].map((v) => v / 100);
  assert.ok(relError(runNoLeak(() => cropResizeBoxes(ramp, box, 3))[0], expected) < 1e-6);
  assert.ok(relError(runNoLeak(() => cropResizeBoxesMatMul(ramp, box, 3))[0], expected) < 1e-6);
  ramp.dispose();

  // random boxes, resized up and down: the matMul fallback matches CropAndResize
  const boxes = sampleResizedCropBoxes(new Rng(4), 3, 7, 9, { scale: [0.1, 1] });
  for (const size of [5, 12] as const) {
    const a = runNoLeak(() => cropResizeBoxes(x, boxes, size))[0];
    const b = runNoLeak(() => cropResizeBoxesMatMul(x, boxes, size))[0];
    assert.ok(relError(a, b) < 1e-5, `fallback vs kernel at size ${size}`);
  }
  // a constant image stays constant under any crop, including boxes reaching the last row/column
  // (wasm's CropAndResize extrapolates to 0 one float32 ulp past the edge; the boxes are pulled in)
  const flat = tf.fill([64, 32, 32, 3], 0.7) as tf.Tensor4D;
  for (const size of [24, 32, 45]) {
    const cropped = runNoLeak(() => randomResizedCrop(flat, new Rng(size), { size, scale: [0.3, 1] }))[0];
    assert.ok(cropped.every((v) => Math.abs(v - 0.7) < 1e-6), `constant image cropped to ${size}: min ${cropped.reduce((a, b) => Math.min(a, b), 1)}`);
  }
  flat.dispose();
  const y = randomResizedCrop(x, new Rng(1), { size: [5, 6] });
  assert.deepEqual(y.shape, [3, 5, 6, 3]);
  y.dispose();
  assert.throws(() => cropResizeBoxes(x, [{ top: 5, left: 0, height: 3, width: 2 }, ...full.slice(1)], 4), /not inside/);
  assert.throws(() => randomResizedCrop(x, new Rng(1), { size: 0 }), /size/);
  x.dispose();
});

// ---------------------------------------------------------------------------------------------
// Flip, solarize, grayscale
// ---------------------------------------------------------------------------------------------

function mirrored(data: number[], [n, h, w, c]: number[]): number[] {
  const out = new Array<number>(data.length);
  for (let i = 0; i < n; i++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let k = 0; k < c; k++) out[((i * h + y) * w + x) * c + k] = data[((i * h + y) * w + (w - 1 - x)) * c + k];
  return out;
}

test("randomHorizontalFlip mirrors exactly; p=0 is identity, p=1 flips all, p=0.5 flips some", async () => {
  await useBackend("wasm");
  const x = randomImages(16, 5, 6, 3);
  const xs = values(x);
  const flippedAll = mirrored(xs, x.shape);
  assert.deepEqual(runNoLeak(() => randomHorizontalFlip(x, new Rng(1), { p: 1 }))[0], flippedAll);
  assert.deepEqual(runNoLeak(() => randomHorizontalFlip(x, new Rng(1), { p: 0 }))[0], xs);
  const some = runNoLeak(() => randomHorizontalFlip(x, new Rng(2), { p: 0.5 }))[0];
  const per = 5 * 6 * 3;
  let flips = 0;
  for (let i = 0; i < 16; i++) {
    const got = some.slice(i * per, (i + 1) * per);
    const isSame = got.every((v, j) => v === xs[i * per + j]);
    const isFlip = got.every((v, j) => v === flippedAll[i * per + j]);
    assert.ok(isSame || isFlip, `sample ${i} is neither the image nor its mirror`);
    flips += isFlip ? 1 : 0;
  }
  assert.ok(flips > 0 && flips < 16, `expected some but not all flipped, got ${flips}`);
  assert.throws(() => randomHorizontalFlip(x, new Rng(1), { p: 1.5 }), /probability/);
  x.dispose();
});

test("solarize inverts exactly at/above the threshold and leaves values below", async () => {
  await useBackend("wasm");
  const px = [0, 0.1, 0.49, 0.5, 0.51, 0.75, 0.999, 1];
  const x = tf.tensor4d(px, [1, 2, 4, 1]);
  const f32 = (v: number) => Math.fround(v);
  assert.deepEqual(runNoLeak(() => solarize(x, new Rng(1), { p: 1 }))[0], px.map((v) => (f32(v) >= 0.5 ? f32(1 - f32(v)) : f32(v))));
  assert.deepEqual(runNoLeak(() => solarize(x, new Rng(1), { p: 1, threshold: 0.3 }))[0], px.map((v) => (f32(v) >= f32(0.3) ? f32(1 - f32(v)) : f32(v))));
  assert.deepEqual(runNoLeak(() => solarize(x, new Rng(1), { p: 0 }))[0], px.map(f32));
  x.dispose();
  // per sample: every sample is either untouched or fully solarized
  const batch = randomImages(12, 3, 3, 3, 5);
  const bs = values(batch);
  const out = runNoLeak(() => solarize(batch, new Rng(3), { p: 0.5 }))[0];
  let changed = 0;
  for (let i = 0; i < 12; i++) {
    const idx = Array.from({ length: 27 }, (_, j) => i * 27 + j);
    const same = idx.every((j) => out[j] === bs[j]);
    const sol = idx.every((j) => out[j] === (bs[j] >= 0.5 ? f32(1 - bs[j]) : bs[j]));
    assert.ok(same || sol, `sample ${i}`);
    changed += same ? 0 : 1;
  }
  assert.ok(changed > 0 && changed < 12, `solarized ${changed} of 12`);
  batch.dispose();
});

test("grayscale: equal channels matching the ITU-R 601-2 luma; identity on 1 channel", async () => {
  await useBackend("wasm");
  const x = randomImages(4, 3, 5, 3, 7);
  const xs = values(x);
  const g = runNoLeak(() => randomGrayscale(x, new Rng(1), { p: 1 }))[0];
  for (let p = 0; p < xs.length / 3; p++) {
    const luma = 0.299 * xs[3 * p] + 0.587 * xs[3 * p + 1] + 0.114 * xs[3 * p + 2];
    for (let k = 0; k < 3; k++) assert.ok(Math.abs(g[3 * p + k] - luma) < 1e-6, `pixel ${p}`);
    assert.equal(g[3 * p], g[3 * p + 1]);
    assert.equal(g[3 * p], g[3 * p + 2]);
  }
  assert.deepEqual(runNoLeak(() => toGrayscale(x))[0], g);
  assert.deepEqual(runNoLeak(() => randomGrayscale(x, new Rng(1), { p: 0 }))[0], xs);
  const one = randomImages(2, 4, 4, 1);
  assert.deepEqual(runNoLeak(() => randomGrayscale(one, new Rng(1), { p: 1 }))[0], values(one));
  tf.dispose([x, one]);
});

// ---------------------------------------------------------------------------------------------
// Colour jitter
// ---------------------------------------------------------------------------------------------

test("brightness, contrast and saturation on hand-computed values (3- and 1-channel)", async () => {
  await useBackend("wasm");
  // one 1x2 RGB image: pixels (0.2, 0.4, 0.6) and (0.8, 0.1, 0.5)
  const px = [0.2, 0.4, 0.6, 0.8, 0.1, 0.5];
  const x = tf.tensor4d(px, [1, 1, 2, 3]);
  const luma = [0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6, 0.299 * 0.8 + 0.587 * 0.1 + 0.114 * 0.5];
  const mean = (luma[0] + luma[1]) / 2;
  const clip = (v: number) => Math.min(1, Math.max(0, v));
  const close = (got: number[], want: number[]) => assert.ok(relError(got, want) < 1e-6, `${got} vs ${want}`);

  close(runNoLeak(() => adjustBrightness(x, 1.5))[0], px.map((v) => clip(1.5 * v)));
  close(runNoLeak(() => adjustContrast(x, 0.5))[0], px.map((v) => clip(0.5 * v + 0.5 * mean)));
  close(runNoLeak(() => adjustContrast(x, 2))[0], px.map((v) => clip(2 * v - mean)));
  close(runNoLeak(() => adjustSaturation(x, 0))[0], px.map((_, i) => luma[Math.floor(i / 3)]));
  close(runNoLeak(() => adjustSaturation(x, 1.5))[0], px.map((v, i) => clip(1.5 * v - 0.5 * luma[Math.floor(i / 3)])));
  // colorJitter with degenerate [f, f] ranges is the same op
  close(runNoLeak(() => colorJitter(x, new Rng(1), { brightness: [1.5, 1.5] }))[0], px.map((v) => clip(1.5 * v)));
  close(runNoLeak(() => colorJitter(x, new Rng(1), { contrast: [0.5, 0.5] }))[0], px.map((v) => clip(0.5 * v + 0.5 * mean)));

  // 1 channel: brightness and contrast apply (mean of the image itself); saturation and hue are no-ops
  const g = [0.1, 0.3, 0.9, 0.5];
  const x1 = tf.tensor4d(g, [1, 2, 2, 1]);
  const gMean = (0.1 + 0.3 + 0.9 + 0.5) / 4;
  close(runNoLeak(() => adjustBrightness(x1, 0.5))[0], g.map((v) => 0.5 * v));
  close(runNoLeak(() => adjustContrast(x1, 0.25))[0], g.map((v) => 0.25 * v + 0.75 * gMean));
  const g32 = g.map(Math.fround);
  assert.deepEqual(runNoLeak(() => adjustSaturation(x1, 0))[0], g32);
  assert.deepEqual(runNoLeak(() => adjustHue(x1, 0.3))[0], g32);
  assert.deepEqual(runNoLeak(() => colorJitter(x1, new Rng(1), { saturation: 0.8, hue: 0.4 }))[0], g32);
  close(runNoLeak(() => colorJitter(x1, new Rng(1), { brightness: [2, 2], saturation: 0.8, hue: 0.4 }))[0], g.map((v) => clip(2 * v)));
  tf.dispose([x, x1]);
});

/** torchvision _rgb2hsv / adjust_hue / _hsv2rgb for one pixel, in float64. */
function referenceHue([r, g, b]: number[], shift: number): number[] {
  const maxc = Math.max(r, g, b);
  const minc = Math.min(r, g, b);
  const cr = maxc - minc;
  const s = cr / (cr === 0 ? 1 : maxc);
  const div = cr === 0 ? 1 : cr;
  const rc = (maxc - r) / div;
  const gc = (maxc - g) / div;
  const bc = (maxc - b) / div;
  let h = maxc === r ? bc - gc : maxc === g ? 2 + rc - bc : 4 + gc - rc;
  h = (h / 6 + 1) % 1;
  h = (((h + shift) % 1) + 1) % 1;
  const i = Math.floor(h * 6) % 6;
  const f = h * 6 - Math.floor(h * 6);
  const v = maxc;
  const p = v * (1 - s);
  const q = v * (1 - s * f);
  const t = v * (1 - s * (1 - f));
  return [
    [v, t, p],
    [q, v, p],
    [p, v, t],
    [p, q, v],
    [t, p, v],
    [v, p, q],
  ][i];
}

test("hue: shift 0 is identity, 0.5 maps red to cyan, and random shifts match torchvision's HSV code", async () => {
  await useBackend("wasm");
  const x = randomImages(3, 4, 4, 3, 9);
  const xs = values(x);
  assert.ok(relError(runNoLeak(() => adjustHue(x, 0))[0], xs) < 1e-6, "shift 0");
  const prim = tf.tensor4d([1, 0, 0, 0, 1, 0, 0, 0, 1, 0.5, 0.5, 0.5], [1, 1, 4, 3]); // red, green, blue, grey
  const half = runNoLeak(() => adjustHue(prim, 0.5))[0];
  assert.ok(relError(half, [0, 1, 1, 1, 0, 1, 1, 1, 0, 0.5, 0.5, 0.5]) < 1e-6, `red->cyan etc: ${half}`);
  const third = runNoLeak(() => adjustHue(prim, 1 / 3))[0];
  assert.ok(relError(third.slice(0, 3), [0, 1, 0]) < 1e-6, `red + 1/3 turn is green: ${third.slice(0, 3)}`);
  prim.dispose();
  // per-sample shifts against the float64 reference, including ties (max in two channels) and greys
  const tie = tf.tensor4d([0.7, 0.7, 0.2, 0.3, 0.9, 0.9, 0.6, 0.1, 0.6, 0.4, 0.4, 0.4], [1, 2, 2, 3]);
  const batch = tf.concat([tf.reshape(x, [3, 1, 16, 3]), tf.tile(tf.reshape(tie, [1, 1, 4, 3]), [3, 1, 1, 1])], 2) as tf.Tensor4D;
  const shifts = [-0.45, 0.12, 0.5];
  const got = runNoLeak(() => adjustHue(batch, shifts))[0];
  const bs = values(batch);
  const per = bs.length / 3;
  const want: number[] = [];
  for (let i = 0; i < bs.length; i += 3) want.push(...referenceHue(bs.slice(i, i + 3), shifts[Math.floor(i / per)]));
  assert.ok(relError(got, want) < 1e-5, `max error ${relError(got, want)}`);
  assert.throws(() => adjustHue(x, 0.7), /\[-0.5, 0.5\]/);
  tf.dispose([x, tie, batch]);
});

test("colorJitter: per-sample random order is honoured, p gates samples, identity where skipped", async () => {
  await useBackend("wasm");
  const px = [0.2, 0.4, 0.6, 0.8, 0.1, 0.5];
  const x = tf.tile(tf.tensor4d(px, [1, 1, 2, 3]), [3, 1, 1, 1]) as tf.Tensor4D;
  const opts = { brightness: 1, contrast: 1 };
  // sample 0: brightness x2 then contrast 0 -> the mean grey of the brightened image
  // sample 1: contrast 0 then brightness x2 -> 2 * mean grey of the original
  // sample 2: not applied
  const params = [
    { applied: true, order: [0, 1, 2, 3], factors: [2, 0, 1, 0] as [number, number, number, number] },
    { applied: true, order: [1, 0, 3, 2], factors: [2, 0, 1, 0] as [number, number, number, number] },
    { applied: false, order: [0, 1, 2, 3], factors: [2, 0, 1, 0] as [number, number, number, number] },
  ];
  const out = runNoLeak(() => applyColorJitterParams(x, params, opts))[0];
  const clip = (v: number) => Math.min(1, Math.max(0, v));
  const lumaOf = (p: number[]) => [0, 3].map((o) => 0.299 * p[o] + 0.587 * p[o + 1] + 0.114 * p[o + 2]);
  const bright = px.map((v) => clip(2 * v));
  const meanBright = (lumaOf(bright)[0] + lumaOf(bright)[1]) / 2;
  const meanOrig = (lumaOf(px)[0] + lumaOf(px)[1]) / 2;
  const want = [...px.map(() => meanBright), ...px.map(() => clip(2 * meanOrig)), ...px];
  assert.ok(relError(out, want) < 1e-6, `${out} vs ${want}`);
  assert.notEqual(meanBright, 2 * meanOrig); // the order matters for this image

  // p gates whole samples; skipped samples are bit-identical
  const batch = randomImages(24, 4, 4, 3, 2);
  const bs = values(batch);
  const jit = runNoLeak(() => colorJitter(batch, new Rng(8), { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1, p: 0.5 }))[0];
  const per = 48;
  let untouched = 0;
  for (let i = 0; i < 24; i++) if (jit.slice(i * per, (i + 1) * per).every((v, j) => v === bs[i * per + j])) untouched++;
  assert.ok(untouched > 0 && untouched < 24, `untouched ${untouched}`);
  assert.ok(jit.every((v) => v >= 0 && v <= 1), "stays in [0,1]");
  assert.throws(() => colorJitter(batch, new Rng(1), { hue: 0.6 }), /hue/);
  assert.throws(() => colorJitter(batch, new Rng(1), { brightness: -1 }), /brightness/);
  tf.dispose([x, batch]);
});

// ---------------------------------------------------------------------------------------------
// Blur
// ---------------------------------------------------------------------------------------------

/** Direct separable blur with torchvision reflect padding, float64. */
function referenceBlur(data: number[], [n, h, w, c]: number[], sigmas: number[], k: number): number[] {
  const r = (k - 1) / 2;
  const refl = (i: number, side: number) => (i < 0 ? -i : i >= side ? 2 * (side - 1) - i : i);
  const tmp = new Array<number>(data.length).fill(0);
  const out = new Array<number>(data.length).fill(0);
  for (let s = 0; s < n; s++) {
    const kern = gaussianKernel1d(k, sigmas[s]);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let ch = 0; ch < c; ch++)
          for (let t = -r; t <= r; t++) tmp[((s * h + y) * w + x) * c + ch] += kern[t + r] * data[((s * h + refl(y + t, h)) * w + x) * c + ch];
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let ch = 0; ch < c; ch++)
          for (let t = -r; t <= r; t++) out[((s * h + y) * w + x) * c + ch] += kern[t + r] * tmp[((s * h + y) * w + refl(x + t, w)) * c + ch];
  }
  return out;
}

test("blur: constant stays constant, mean is preserved, matches a direct reflect-padded reference", async () => {
  await useBackend("wasm");
  assert.equal(blurKernelSizeFor(224), 23); // SimCLR: 224 // 10 = 22 -> radius 11 -> 23 taps
  assert.equal(blurKernelSizeFor(96), 9);
  assert.equal(blurKernelSizeFor(32), 3);
  assert.equal(blurKernelSizeFor(28), 3);
  const k5 = gaussianKernel1d(5, 1);
  assert.ok(Math.abs(k5.reduce((a, b) => a + b, 0) - 1) < 1e-12 && k5[2] > k5[1] && k5[1] === k5[3]);

  const constant = tf.fill([3, 10, 12, 3], 0.37) as tf.Tensor4D;
  const [flat] = runNoLeak(() => blurImages(constant, [0.5, 1.3, 2], 5));
  assert.ok(flat.every((v) => Math.abs(v - 0.37) < 1e-6), "constant image stays constant");

  const x = randomImages(3, 10, 12, 3, 4);
  const xs = values(x);
  const sigmas = [0.3, 1.1, 2.0];
  const got = runNoLeak(() => blurImages(x, sigmas, 5))[0];
  assert.ok(relError(got, referenceBlur(xs, x.shape, sigmas, 5)) < 1e-5, "depthwise blur vs reference");
  assert.ok(relError(runNoLeak(() => blurImagesMatMul(x, sigmas, 5))[0], got) < 1e-5, "matMul blur vs depthwise");
  // per-sample mean preserved (reflect padding only shifts it slightly at the borders)
  const per = 10 * 12 * 3;
  for (let s = 0; s < 3; s++) {
    const m0 = xs.slice(s * per, (s + 1) * per).reduce((a, b) => a + b, 0) / per;
    const m1 = got.slice(s * per, (s + 1) * per).reduce((a, b) => a + b, 0) / per;
    assert.ok(Math.abs(m0 - m1) < 5e-3, `sample ${s}: mean ${m0} -> ${m1}`);
  }
  // larger sigma smooths more: lower variance
  const variance = (a: number[]) => {
    const m = a.reduce((p, q) => p + q, 0) / a.length;
    return a.reduce((p, q) => p + (q - m) ** 2, 0) / a.length;
  };
  const v = [0, 1, 2].map((s) => variance(got.slice(s * per, (s + 1) * per)));
  assert.ok(v[0] > v[1] && v[1] > v[2], `variance should fall with sigma: ${v}`);

  // gaussianBlur with p: only some samples change
  const big = randomImages(16, 8, 8, 1, 6);
  const bs = values(big);
  const out = runNoLeak(() => gaussianBlur(big, new Rng(2), { p: 0.5 }))[0];
  let same = 0;
  for (let s = 0; s < 16; s++) if (out.slice(s * 64, (s + 1) * 64).every((q, j) => q === bs[s * 64 + j])) same++;
  assert.ok(same > 0 && same < 16, `unblurred samples: ${same}`);
  assert.throws(() => blurImages(x, sigmas, 4), /odd/);
  assert.throws(() => gaussianBlur(x, new Rng(1), { sigma: [0, 1] }), /sigma/);
  tf.dispose([constant, x, big]);
});

// ---------------------------------------------------------------------------------------------
// Normalisation, composition, recipes
// ---------------------------------------------------------------------------------------------

test("normalizeImages and composeTransforms", async () => {
  await useBackend("wasm");
  const x = tf.tensor4d([0.5, 0.25, 1, 0, 0.5, 0.5], [1, 1, 2, 3]);
  const [n] = runNoLeak(() => normalizeImages(x, [0.5, 0.25, 0.5], [0.5, 0.25, 0.25]));
  assert.ok(relError(n, [0, 0, 2, -1, 1, 0]) < 1e-6);
  assert.throws(() => normalizeImages(x, [0.5], [1, 1, 1]), /mean needs 3/);
  assert.throws(() => normalizeImages(x, 0, 0), /std/);
  const double: ViewTransform = (im) => tf.mul(im, 2) as tf.Tensor4D;
  const addOne: ViewTransform = (im) => tf.add(im, 1) as tf.Tensor4D;
  const [c] = runNoLeak(() => composeTransforms(double, addOne)(x, new Rng(1)));
  assert.ok(relError(c, values(x).map((v) => 2 * v + 1)) < 1e-6);
  const [id] = runNoLeak(() => composeTransforms()(x, new Rng(1)));
  assert.deepEqual(id, values(x));
  x.dispose();
});

test("recipes: shapes, ranges, same seed -> same views, different seed -> different views, no leaks", async () => {
  await useBackend("wasm");
  const rgb = randomImages(6, 32, 32, 3, 12);
  const gray = randomImages(6, 28, 28, 1, 13);
  const [byol1, byol2] = byolTransforms({ size: 32 });
  const recipes: Array<[string, ViewTransform, tf.Tensor4D, number[]]> = [
    ["simclr", simclrTransform({ size: 32 }), rgb, [6, 32, 32, 3]],
    ["simclr-cifar", simclrTransform({ size: 32, variant: "cifar" }), rgb, [6, 32, 32, 3]],
    ["simclr-fmnist", simclrTransform({ size: 28, channels: 1 }), gray, [6, 28, 28, 1]],
    ["simclr-resize", simclrTransform({ size: [16, 20] }), rgb, [6, 16, 20, 3]],
    ["moco", mocoV2Transform({ size: 32 }), rgb, [6, 32, 32, 3]],
    ["byol1", byol1, rgb, [6, 32, 32, 3]],
    ["byol2", byol2, gray, [6, 32, 32, 1]],
  ];
  for (const [name, t, x, shape] of recipes) {
    const before = tf.memory().numTensors;
    const a = t(x, new Rng(42));
    const b = t(x, new Rng(42));
    const c = t(x, new Rng(43));
    assert.deepEqual(a.shape, shape, name);
    const av = values(a);
    assert.deepEqual(av, values(b), `${name}: same seed, same views`);
    assert.ok(relError(av, values(c)) > 1e-2, `${name}: different seeds, different views`);
    assert.ok(av.every((v) => v >= 0 && v <= 1), `${name}: stays in [0,1]`);
    tf.dispose([a, b, c]);
    assert.equal(tf.memory().numTensors, before, `${name}: leak`);
  }
  // two draws from one Rng (SimCLR's two views) differ
  const rng = new Rng(5);
  const t = simclrTransform({ size: 32 });
  const [v1, v2] = runNoLeak(() => [t(rgb, rng), t(rgb, rng)]);
  assert.ok(relError(v1, v2) > 1e-2);
  assert.throws(() => simclrTransform({ size: 28, channels: 1 })(rgb, new Rng(1)), /1-channel/);
  tf.dispose([rgb, gray]);
});

test("dinoMultiCrop: globals first at their size, locals at theirs, seeded, no leaks", async () => {
  await useBackend("wasm");
  const x = randomImages(4, 32, 32, 3, 21);
  const dino = dinoMultiCrop({ globalSize: 32, numLocalCrops: 3 });
  const before = tf.memory().numTensors;
  const views = dino(x, new Rng(1));
  assert.equal(views.length, 5);
  assert.deepEqual(views.map((v) => v.shape), [
    [4, 32, 32, 3],
    [4, 32, 32, 3],
    [4, 14, 14, 3],
    [4, 14, 14, 3],
    [4, 14, 14, 3],
  ]);
  const again = dino(x, new Rng(1));
  views.forEach((v, i) => assert.deepEqual(values(v), values(again[i])));
  assert.ok(relError(values(views[0]), values(views[1])) > 1e-2, "the two global crops differ");
  tf.dispose([...views, ...again]);
  assert.equal(tf.memory().numTensors, before, "leak");
  const custom = dinoMultiCrop({ globalSize: 24, localSize: 10, numLocalCrops: 2, channels: 3 })(x, new Rng(2));
  assert.deepEqual(custom.map((v) => v.shape[1]), [24, 24, 10, 10]);
  tf.dispose(custom);
  x.dispose();
});

test("wasm matches cpu for recipes run with the same seed", async () => {
  const x = randomImages(4, 32, 32, 3, 31);
  const xs = values(x);
  x.dispose();
  const run = async (backend: "wasm" | "cpu") => {
    await useBackend(backend);
    const input = tf.tensor4d(xs, [4, 32, 32, 3]);
    const [, byol2] = byolTransforms({ size: 24 });
    const out = runNoLeak(() => [
      simclrTransform({ size: 24 })(input, new Rng(7)),
      byol2(input, new Rng(8)),
      ...dinoMultiCrop({ globalSize: 24, numLocalCrops: 1 })(input, new Rng(9)),
    ]);
    input.dispose();
    return out;
  };
  const onCpu = await run("cpu");
  const onWasm = await run("wasm");
  onCpu.forEach((c, i) => assert.ok(relError(onWasm[i], c) < 1e-4, `view ${i}: wasm vs cpu ${relError(onWasm[i], c)}`));
});

test("primitives reject bad input with clear errors and leak nothing", async () => {
  await useBackend("wasm");
  const rank3 = tf.zeros([4, 4, 3]);
  const twoChannels = tf.zeros([1, 4, 4, 2]);
  assert.throws(() => randomHorizontalFlip(rank3 as unknown as tf.Tensor4D, new Rng(1)), /\[N,H,W,C\]/);
  assert.throws(() => colorJitter(twoChannels as tf.Tensor4D, new Rng(1)), /1 or 3 channels/);
  const ints = tf.zeros([1, 2, 2, 1], "int32") as tf.Tensor4D;
  const pair = tf.zeros([2, 2, 2, 1]) as tf.Tensor4D;
  assert.throws(() => solarize(ints, new Rng(1)), /float32/);
  assert.throws(() => adjustBrightness(pair, [1]), /one value per sample/);
  assert.throws(() => randomGrayscale(pair, new Rng(1), { p: -0.1 }), /probability/);
  tf.dispose([rank3, twoChannels, ints, pair]);
  const x = randomImages(3, 8, 8, 3);
  const rng = new Rng(1);
  const before = tf.memory().numTensors;
  tf.dispose([
    randomResizedCrop(x, rng, { size: 6 }),
    randomHorizontalFlip(x, rng),
    colorJitter(x, rng, { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1, p: 0.8 }),
    randomGrayscale(x, rng, { p: 0.5 }),
    gaussianBlur(x, rng, { p: 0.5 }),
    solarize(x, rng, { p: 0.5 }),
    normalizeImages(x, 0.5, 0.25),
  ]);
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
});
