import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import sharp from "sharp";
import { tf, useBackend } from "./helpers";
import { Rng } from "../lib/src/random";
import { lineChartSpec, barChartSpec, scatterSpec } from "../lib/src/viz/charts";
import { compileVegaLite, vegaLiteToPng, vegaLiteToSvg, svgSize } from "../lib/src/viz/render";
import {
  chartDisplayBundle,
  plotlyDisplayBundle,
  pngDisplayBundle,
  displayChart,
  displayPng,
  displayPlotly,
  embeddingPlotlyFigure,
  notebookProgress,
  formatProgressLine,
  inNotebook,
  VEGA_LITE_MIME,
  PLOTLY_MIME,
  type DisplayMessage,
} from "../lib/src/viz/display";
import { imageGridPng, imageGridLayout, reconstructionGallery, retrievalGallery, augmentedViewsGallery, classSamplesGallery } from "../lib/src/viz/gallery";
import { umapProject } from "../lib/src/viz/umap";
import type { TrainProgress } from "../lib/src/train/metrics";
import type { ImageDataset } from "../lib/src/data/types";

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const metrics = Array.from({ length: 50 }, (_, i) => ({ type: "step", step: i, epoch: Math.floor(i / 25), loss: 4 / (1 + i), lr: 1e-3, knn: i % 10 === 0 ? 0.5 + i / 200 : undefined }));

async function rawRgb(png: Buffer): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

function pixel(img: { data: Buffer; width: number }, x: number, y: number): number[] {
  const o = (y * img.width + x) * 3;
  return [img.data[o], img.data[o + 1], img.data[o + 2]];
}

/** Pretend to be a tslab kernel executing a cell: register a fake tslab/dist/jupyter.js in the module cache. */
function withFakeTslab<T>(fn: (sent: Array<{ msg: DisplayMessage; update: boolean }>) => Promise<T>): Promise<T> {
  const key = path.join(os.tmpdir(), "fake", "node_modules", "tslab", "dist", "jupyter.js");
  const sent: Array<{ msg: DisplayMessage; update: boolean }> = [];
  const fake = { id: key, filename: key, loaded: true, exports: { lastWriteDisplayData: (msg: DisplayMessage, update: boolean) => sent.push({ msg, update }) } };
  require.cache[key] = fake as unknown as NodeJS.Module;
  return fn(sent).finally(() => {
    delete require.cache[key];
  });
}

test("chart specs compile with Vega-Lite 5 and carry their data, titles and axes", () => {
  const line = lineChartSpec(metrics, { y: ["loss", "knn"], title: "Curves" }) as Record<string, any>;
  assert.equal(line.$schema, "https://vega.github.io/schema/vega-lite/v5.json");
  assert.equal(line.title, "Curves");
  // loss on all 50 records, knn only where it is a number (5 records).
  assert.equal(line.data.values.length, 55);
  assert.deepEqual([...new Set(line.data.values.map((v: any) => v.series))].sort(), ["knn", "loss"]);
  const bar = barChartSpec(
    [
      { method: "SimCLR", crop: "small", top1: 0.8 },
      { method: "SimCLR", crop: "large", top1: 0.82 },
      { method: "BYOL", crop: "small", top1: 0.81 },
    ],
    { category: "method", value: "top1", group: "crop", reference: { value: 0.9, label: "supervised" } },
  ) as Record<string, any>;
  assert.equal(bar.layer.length, 4, "bars, value labels, reference rule, reference label");
  assert.equal(bar.layer[0].encoding.xOffset.field, "group");
  const scatter = scatterSpec([[0, 1], [2, 3], [4, 5]], [0, 1, 0], { classNames: ["cat", "dog"] }) as Record<string, any>;
  assert.deepEqual(scatter.data.values.map((v: any) => v.class), ["cat", "dog", "cat"]);
  for (const spec of [line, bar, scatter]) {
    const vg = compileVegaLite(spec as any) as Record<string, any>;
    assert.ok(Array.isArray(vg.marks) && vg.marks.length > 0, "compiled Vega spec has marks");
  }
  assert.throws(() => lineChartSpec([{ step: 1 }], { y: "loss" }), /no record has finite numbers/);
  assert.throws(() => scatterSpec([[0, 1]], [0, 1]), /1 points but 2 labels/);
  assert.throws(() => scatterSpec([[0, NaN]]), /point 0 is not a pair of finite numbers/);
});

test("vegaLiteToPng: a valid PNG at the SVG's size times the scale, not blank, with the title drawn", async () => {
  const spec = lineChartSpec(metrics, { y: "loss", title: "Loss title" });
  const svg = await vegaLiteToSvg(spec);
  const { width, height } = svgSize(svg);
  assert.ok(width > 480 && height > 280, `chart frame ${width}x${height} includes axes and title`);
  const png = await vegaLiteToPng(spec, { scale: 2 });
  assert.deepEqual(png.subarray(0, 8), PNG_SIGNATURE);
  const img = await rawRgb(png);
  assert.equal(img.width, Math.round(width * 2));
  assert.equal(img.height, Math.round(height * 2));
  // Non-blank: a few percent of the pixels are ink, and the stats are not flat.
  let ink = 0;
  for (let p = 0; p < img.width * img.height; p++) if (img.data[3 * p] < 200 || img.data[3 * p + 2] < 200) ink++;
  const frac = ink / (img.width * img.height);
  assert.ok(frac > 0.01 && frac < 0.5, `ink fraction ${frac}`);
  const stats = await sharp(png).stats();
  assert.ok(stats.channels[0].stdev > 10, `stdev ${stats.channels[0].stdev}`);
  // The title is drawn: dark pixels in the top band, centred over the plot (text needs fonts).
  let titleInk = 0;
  for (let y = 0; y < 36; y++) for (let x = 0; x < img.width; x++) if (pixel(img, x, y)[0] < 100) titleInk++;
  assert.ok(titleInk > 100, `title pixels ${titleInk}`);
});

test("display bundles hold the three MIME representations in one output (pure builders)", async () => {
  const spec = scatterSpec([[0, 0], [1, 1]], [0, 1]);
  const png = await vegaLiteToPng(spec, { scale: 1 });
  const bundle = chartDisplayBundle(spec, png, "two points");
  assert.deepEqual(Object.keys(bundle).sort(), ["application/vnd.vegalite.v5+json", "image/png", "text/plain"]);
  assert.equal(VEGA_LITE_MIME, "application/vnd.vegalite.v5+json");
  assert.equal(bundle[VEGA_LITE_MIME], spec);
  assert.deepEqual(Buffer.from(bundle["image/png"] as string, "base64"), png);
  assert.equal(bundle["text/plain"], "two points");
  const figure = embeddingPlotlyFigure([[0, 0, 0], [1, 1, 1], [2, 2, 2]], [0, 1, 1], { classNames: ["a", "b"] });
  assert.equal(figure.data.length, 2);
  assert.equal(figure.data[0].type, "scatter3d");
  const pb = plotlyDisplayBundle(figure, png, "3 points");
  assert.deepEqual(Object.keys(pb).sort(), [PLOTLY_MIME, "image/png", "text/plain"].sort());
  assert.deepEqual((pb[PLOTLY_MIME] as any).data, figure.data);
  assert.deepEqual(Object.keys(plotlyDisplayBundle(figure, null, "x")).sort(), [PLOTLY_MIME, "text/plain"].sort());
  assert.deepEqual(Object.keys(pngDisplayBundle(png, "img")).sort(), ["image/png", "text/plain"]);
});

test("in a (fake) tslab kernel, displayChart / displayPlotly / displayPng send ONE display_data each", async () => {
  assert.equal(inNotebook(), false);
  await withFakeTslab(async (sent) => {
    assert.equal(inNotebook(), true);
    await displayChart(lineChartSpec(metrics, { y: "loss" }), { summary: "loss curve" });
    const fig = embeddingPlotlyFigure([[0, 1], [2, 3]], [0, 1]);
    await displayPlotly(fig.data, fig.layout);
    await displayPng(await imageGridPng(new Uint8Array(4 * 4), { rows: 1, cols: 1, height: 4, width: 4, channels: 1 }), { summary: "grid" });
    assert.equal(sent.length, 3);
    assert.deepEqual(Object.keys(sent[0].msg.data).sort(), [VEGA_LITE_MIME, "image/png", "text/plain"].sort());
    assert.equal(sent[0].msg.data["text/plain"], "loss curve");
    assert.equal(sent[0].update, false);
    // The 2x PNG is shown at its CSS size.
    const meta = sent[0].msg.metadata["image/png"] as { width: number };
    const pngWidth = (await sharp(Buffer.from(sent[0].msg.data["image/png"] as string, "base64")).metadata()).width!;
    assert.equal(meta.width, Math.round(pngWidth / 2));
    assert.deepEqual(Object.keys(sent[1].msg.data).sort(), [PLOTLY_MIME, "image/png", "text/plain"].sort());
    assert.deepEqual(Object.keys(sent[2].msg.data).sort(), ["image/png", "text/plain"]);
  });
});

function progressAt(step: number, total = 10): TrainProgress {
  return { step, totalSteps: total, epoch: 1, epochs: 2, loss: 1 / step, lr: 1e-3, imagesPerSec: 100, etaSeconds: total - step, elapsedSeconds: step, metrics: { collapse: 0.7 } };
}

test("notebookProgress: one display redrawn via update_display_data (throttled), plain lines outside a notebook", async () => {
  let clock = 0;
  await withFakeTslab(async (sent) => {
    const cb = notebookProgress({ everySeconds: 1, now: () => clock });
    for (let step = 1; step <= 10; step++) {
      clock += 300; // 0.3 s per step: at most one redraw per second
      cb(progressAt(step));
    }
    const ids = new Set(sent.map((s) => s.msg.transient?.display_id));
    assert.equal(ids.size, 1, "one display id");
    assert.equal(sent[0].update, false, "first message is display_data");
    assert.ok(sent.slice(1).every((s) => s.update), "later messages are update_display_data");
    assert.ok(sent.length >= 3 && sent.length <= 5, `${sent.length} messages for 10 steps over 3 s`);
    assert.match(sent.at(-1)!.msg.data["text/plain"] as string, /step 10\/10/, "the final step is always shown");
  });
  const lines: string[] = [];
  clock = 0;
  const plain = notebookProgress({ printEverySeconds: 10, now: () => clock, write: (l) => lines.push(l) });
  for (let step = 1; step <= 10; step++) {
    clock += 3000;
    plain(progressAt(step));
  }
  // t = 3 (first), 15, 27 and the final step (t = 30).
  assert.equal(lines.length, 4);
  assert.match(lines[3], /^train \[#{20}\] 100% \| step 10\/10 \| epoch 1\/2 \| loss 0\.1 \| lr 1\.00e-3/);
  assert.match(formatProgressLine(progressAt(5)), /collapse 0\.7/);
});

test("outside a notebook the display functions print a summary and write the requested file", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sslkit-viz-"));
  const file = path.join(dir, "chart.png");
  const written: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  // Record what is printed, and let it through (the test runner reports on stdout too).
  process.stdout.write = ((chunk: string, ...rest: unknown[]) => {
    written.push(String(chunk));
    return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  try {
    await displayChart(barChartSpec([{ m: "a", v: 1 }], { category: "m", value: "v", title: "Bars" }), { file });
    const fig = embeddingPlotlyFigure([[0, 1], [1, 0]]);
    await displayPlotly(fig.data, fig.layout);
  } finally {
    process.stdout.write = write;
  }
  assert.match(written.join(""), /\[layered chart\] Bars/);
  assert.match(written.join(""), /\[plotly\] Embedding \(1 traces, 2 points\)/);
  assert.deepEqual(fs.readFileSync(file).subarray(0, 8), PNG_SIGNATURE);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("imageGridPng: geometry, and a known pixel lands where the layout says", async () => {
  await useBackend("wasm");
  const n = 6;
  const h = 5;
  const w = 7;
  const images = new Uint8Array(n * h * w * 3).fill(0);
  // Image 4 (row 1, col 1 of a 2x3 grid): pixel (y=2, x=3) is pure red.
  const o = ((4 * h + 2) * w + 3) * 3;
  images[o] = 255;
  const opts = { rows: 2, cols: 3, height: h, width: w, channels: 3, scale: 3, padding: 2 };
  const layout = imageGridLayout(opts);
  assert.equal(layout.canvasWidth, 2 + 3 * (7 * 3 + 2));
  assert.equal(layout.canvasHeight, 2 + 2 * (5 * 3 + 2));
  const img = await rawRgb(await imageGridPng(images, opts));
  assert.equal(img.width, layout.canvasWidth);
  assert.equal(img.height, layout.canvasHeight);
  const x0 = layout.x0 + 1 * layout.strideX + 3 * 3;
  const y0 = layout.y0 + 1 * layout.strideY + 2 * 3;
  for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) assert.deepEqual(pixel(img, x0 + dx, y0 + dy), [255, 0, 0]);
  assert.deepEqual(pixel(img, x0 - 1, y0), [0, 0, 0], "neighbouring source pixel is black");
  assert.deepEqual(pixel(img, 0, 0), [255, 255, 255], "padding is background");
  // Count of red pixels: exactly one upscaled 3x3 block.
  let red = 0;
  for (let y = 0; y < img.height; y++) for (let x = 0; x < img.width; x++) if (pixel(img, x, y).join() === "255,0,0") red++;
  assert.equal(red, 9);
  // A float tensor in [0, 1] gives the same picture.
  const t = tf.div(tf.tensor4d(images, [n, h, w, 3], "float32"), 255) as tf.Tensor4D;
  const fromTensor = await rawRgb(await imageGridPng(t, { rows: 2, cols: 3, scale: 3, padding: 2 }));
  t.dispose();
  assert.deepEqual(fromTensor.data, img.data);
  await assert.rejects(imageGridPng(images, { ...opts, rows: 1 }), /6 images do not fit a 1x3 grid/);
  await assert.rejects(imageGridPng(images, { rows: 2, cols: 3 }), /height must be a positive integer/);
});

test("galleries: captions move the tiles by the caption bands, grids have the documented rows and columns", async () => {
  await useBackend("wasm");
  const gray = (v: number, n: number) => ({ images: new Uint8Array(n * 8 * 8).fill(v), count: n, height: 8, width: 8, channels: 1 });
  const recon = await rawRgb(await reconstructionGallery(gray(10, 4), gray(120, 4), gray(250, 4), { scale: 2, padding: 2, captions: false }));
  const layout = imageGridLayout({ rows: 3, cols: 4, height: 8, width: 8, scale: 2, padding: 2 });
  assert.equal(recon.width, layout.canvasWidth);
  assert.equal(recon.height, layout.canvasHeight);
  // Rows: original (10), masked (120), reconstructed (250).
  for (const [r, v] of [[0, 10], [1, 120], [2, 250]]) {
    assert.deepEqual(pixel(recon, layout.x0 + 3 * layout.strideX + 1, layout.y0 + r * layout.strideY + 1), [v, v, v]);
  }
  const withCaptions = await rawRgb(await reconstructionGallery(gray(10, 4), gray(120, 4), gray(250, 4), { scale: 2, padding: 2 }));
  assert.ok(withCaptions.width > recon.width, "row captions add a left band");
  // Caption text is drawn (dark pixels in the left band).
  let ink = 0;
  for (let y = 0; y < withCaptions.height; y++) for (let x = 0; x < withCaptions.width - recon.width; x++) if (pixel(withCaptions, x, y)[0] < 128) ink++;
  assert.ok(ink > 50, `caption pixels ${ink}`);
  const retrieval = await sharp(await retrievalGallery(gray(0, 2), gray(255, 6), { scale: 1, padding: 1 })).metadata();
  const rl = imageGridLayout({ rows: 2, cols: 4, height: 8, width: 8, scale: 1, padding: 1, labels: ["x"] });
  assert.deepEqual([retrieval.width, retrieval.height], [rl.canvasWidth, rl.canvasHeight]);
  const views = tf.zeros([3, 8, 8, 3]) as tf.Tensor4D;
  const meta = await sharp(await augmentedViewsGallery(views, [views, views], { scale: 1, padding: 1, captions: false })).metadata();
  views.dispose();
  assert.deepEqual([meta.width, meta.height], [1 + 3 * 9, 1 + 3 * 9]);
  const ds: ImageDataset = { name: "toy", images: new Uint8Array(12 * 16).fill(90), labels: Uint8Array.from({ length: 12 }, (_, i) => i % 3), classNames: ["a", "b", "c"], count: 12, height: 4, width: 4, channels: 1 };
  const cls = await sharp(await classSamplesGallery(ds, 4, { scale: 1, padding: 1, captions: false })).metadata();
  assert.deepEqual([cls.width, cls.height], [1 + 4 * 5, 1 + 3 * 5]);
  await assert.rejects(retrievalGallery(gray(0, 2), gray(0, 5)), /not a multiple of 2 queries/);
});

test("umapProject is deterministic for a seed and separates clusters", async () => {
  await useBackend("wasm");
  const rng = new Rng(5);
  const centres = [0, 1, 2].map(() => Array.from({ length: 10 }, () => rng.normal(0, 5)));
  const labels = Array.from({ length: 90 }, (_, i) => i % 3);
  const data = labels.map((l) => centres[l].map((c) => c + rng.normal()));
  const a = await umapProject(data, { nNeighbors: 10, minDist: 0.1, seed: 1, nEpochs: 80 });
  const b = await umapProject(Float32Array.from(data.flat()), { cols: 10, nNeighbors: 10, minDist: 0.1, seed: 1, nEpochs: 80 });
  const c = await umapProject(data, { nNeighbors: 10, minDist: 0.1, seed: 2, nEpochs: 80 });
  assert.equal(a.length, 90);
  assert.ok(a.every((p) => p.length === 2 && p.every(Number.isFinite)));
  assert.deepEqual(b, a);
  assert.notDeepEqual(c, a);
  // Each point's nearest embedded neighbour has its label.
  let right = 0;
  a.forEach((p, i) => {
    let best = -1;
    let bestD = Infinity;
    a.forEach((q, j) => {
      const d = (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2;
      if (j !== i && d < bestD) [best, bestD] = [j, d];
    });
    if (labels[best] === labels[i]) right++;
  });
  assert.ok(right / 90 > 0.95, `1-NN label agreement ${right / 90}`);
  await assert.rejects(umapProject([[1], [2]], { nNeighbors: 15 }), /nNeighbors must be an integer in \[2, 1\]/);
});
