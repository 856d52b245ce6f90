/**
 * Image galleries as PNG grids (sharp): tiles are upscaled by an integer factor (nearest
 * neighbour, so pixels stay crisp), laid out row-major with padding, with optional per-tile
 * captions and row/column captions drawn as an SVG text overlay (librsvg via sharp, system fonts).
 */
import * as tf from "@tensorflow/tfjs-core";
import sharp from "sharp";
import type { ImageDataset } from "../data/types";
import { Rng } from "../random";

/** Images for a gallery: NHWC uint8 pixels with their shape, or a float [0,1] / int [0,255] tensor. */
export type GalleryImages = tf.Tensor4D | Pick<ImageDataset, "images" | "count" | "height" | "width" | "channels">;

export interface ImageGridOptions {
  rows: number;
  cols: number;
  /** Tile size and channels (1 or 3) of the source images: required for a raw Uint8Array. */
  height?: number;
  width?: number;
  channels?: number;
  /** Caption under each tile (row-major, like the images). */
  labels?: readonly string[];
  /** Caption left of each row. */
  rowLabels?: readonly string[];
  /** Caption above each column. */
  colLabels?: readonly string[];
  /** Integer upscale factor (default: so that tiles are at least 64 px, at most 4). */
  scale?: number;
  /** Gap between tiles in px (default 4). */
  padding?: number;
  /** Background RGB (default white). */
  background?: [number, number, number];
  /** Caption font size in px (default 12). */
  fontSize?: number;
}

/** Where every tile lands in the gallery, and the canvas size. */
export interface ImageGridLayout {
  canvasWidth: number;
  canvasHeight: number;
  tileWidth: number;
  tileHeight: number;
  scale: number;
  /** Top-left corner of tile (r, c) is (x0 + c * strideX, y0 + r * strideY). */
  x0: number;
  y0: number;
  strideX: number;
  strideY: number;
  /** Height of the caption band under each tile (0 without tile labels). */
  labelHeight: number;
}

const FONT_FAMILY = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";

function positiveInt(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new Error(`imageGridPng: ${what} must be a positive integer, got ${v}`);
  return v;
}

/** Approximate text width in px for layout (DejaVu Sans averages ~0.6 em per character). */
function textWidth(s: string, fontSize: number): number {
  return Math.ceil(s.length * fontSize * 0.62);
}

/** The geometry of an image grid (pure): used by imageGridPng and its tests. */
export function imageGridLayout(opts: ImageGridOptions & { height: number; width: number }): ImageGridLayout {
  const rows = positiveInt(opts.rows, "rows");
  const cols = positiveInt(opts.cols, "cols");
  const h = positiveInt(opts.height, "height");
  const w = positiveInt(opts.width, "width");
  const scale = opts.scale ?? Math.min(4, Math.max(1, Math.ceil(64 / Math.max(h, w))));
  positiveInt(scale, "scale");
  const pad = opts.padding ?? 4;
  if (!Number.isInteger(pad) || pad < 0) throw new Error(`imageGridPng: padding must be an integer >= 0, got ${pad}`);
  const fontSize = opts.fontSize ?? 12;
  const tileWidth = w * scale;
  const tileHeight = h * scale;
  const labelHeight = opts.labels ? Math.ceil(fontSize * 1.4) : 0;
  const rowLabelWidth = opts.rowLabels ? Math.max(...opts.rowLabels.map((s) => textWidth(s, fontSize))) + 8 : 0;
  const colLabelHeight = opts.colLabels ? Math.ceil(fontSize * 1.6) : 0;
  const strideX = tileWidth + pad;
  const strideY = tileHeight + labelHeight + pad;
  return {
    canvasWidth: rowLabelWidth + pad + cols * strideX,
    canvasHeight: colLabelHeight + pad + rows * strideY,
    tileWidth,
    tileHeight,
    scale,
    x0: rowLabelWidth + pad,
    y0: colLabelHeight + pad,
    strideX,
    strideY,
    labelHeight,
  };
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c]!);
}

/** Clip a caption to roughly `maxWidth` px. */
function fitText(s: string, maxWidth: number, fontSize: number): string {
  const maxChars = Math.max(1, Math.floor(maxWidth / (fontSize * 0.62)));
  return s.length <= maxChars ? s : s.slice(0, Math.max(1, maxChars - 1)) + "\u2026";
}

interface PixelSource {
  pixels: Uint8Array;
  count: number;
  height: number;
  width: number;
  channels: number;
}

/** uint8 NHWC pixels from a tensor (float: [0,1] scaled by 255; int: [0,255]) or raw bytes. */
function toPixels(images: Uint8Array | GalleryImages, opts: { height?: number; width?: number; channels?: number }, what: string): PixelSource {
  if (images instanceof tf.Tensor) {
    if (images.rank !== 4) throw new Error(`${what}: expected a [N, H, W, C] tensor, got shape [${images.shape}]`);
    const [count, height, width, channels] = images.shape;
    const data = images.dataSync();
    const pixels = new Uint8Array(data.length);
    const factor = images.dtype === "float32" ? 255 : 1;
    for (let i = 0; i < data.length; i++) pixels[i] = Math.max(0, Math.min(255, Math.round(data[i] * factor)));
    return { pixels, count, height, width, channels };
  }
  if (images instanceof Uint8Array) {
    const height = positiveInt(opts.height, "height");
    const width = positiveInt(opts.width, "width");
    const channels = positiveInt(opts.channels ?? 1, "channels");
    const per = height * width * channels;
    if (images.length % per !== 0) throw new Error(`${what}: ${images.length} bytes is not a multiple of ${height}x${width}x${channels}`);
    return { pixels: images, count: images.length / per, height, width, channels };
  }
  if (images && typeof images === "object" && "images" in images) {
    const { count, height, width, channels } = images;
    if (images.images.length !== count * height * width * channels) {
      throw new Error(`${what}: images has ${images.images.length} bytes, expected ${count}x${height}x${width}x${channels}`);
    }
    return { pixels: images.images, count, height, width, channels };
  }
  throw new Error(`${what}: images must be a Uint8Array (with height/width/channels), a dataset-like object or a tf.Tensor4D`);
}

/**
 * A rows x cols grid of images as a PNG (RGB). Images fill the grid row-major; missing images leave
 * blank tiles. Grayscale (1-channel) images are drawn as gray RGB.
 */
export async function imageGridPng(images: Uint8Array | GalleryImages, opts: ImageGridOptions): Promise<Buffer> {
  const src = toPixels(images, opts, "imageGridPng");
  if (src.channels !== 1 && src.channels !== 3 && src.channels !== 4) {
    throw new Error(`imageGridPng: channels must be 1, 3 or 4, got ${src.channels}`);
  }
  if (opts.height !== undefined && opts.height !== src.height) throw new Error(`imageGridPng: height ${opts.height} but images are ${src.height} px high`);
  if (opts.width !== undefined && opts.width !== src.width) throw new Error(`imageGridPng: width ${opts.width} but images are ${src.width} px wide`);
  const layout = imageGridLayout({ ...opts, height: src.height, width: src.width });
  const { rows, cols } = opts;
  if (src.count > rows * cols) throw new Error(`imageGridPng: ${src.count} images do not fit a ${rows}x${cols} grid`);
  if (opts.labels && opts.labels.length > rows * cols) throw new Error(`imageGridPng: ${opts.labels.length} labels for ${rows * cols} tiles`);
  if (opts.rowLabels && opts.rowLabels.length !== rows) throw new Error(`imageGridPng: ${opts.rowLabels.length} row labels for ${rows} rows`);
  if (opts.colLabels && opts.colLabels.length !== cols) throw new Error(`imageGridPng: ${opts.colLabels.length} column labels for ${cols} columns`);
  const W = layout.canvasWidth;
  const H = layout.canvasHeight;
  const bg = opts.background ?? [255, 255, 255];
  const canvas = new Uint8Array(W * H * 3);
  for (let p = 0; p < W * H; p++) {
    canvas[3 * p] = bg[0];
    canvas[3 * p + 1] = bg[1];
    canvas[3 * p + 2] = bg[2];
  }
  const { height: h, width: w, channels: c, pixels } = src;
  const s = layout.scale;
  for (let idx = 0; idx < src.count; idx++) {
    const r = Math.floor(idx / cols);
    const col = idx % cols;
    const ox = layout.x0 + col * layout.strideX;
    const oy = layout.y0 + r * layout.strideY;
    const base = idx * h * w * c;
    for (let y = 0; y < h * s; y++) {
      const sy = Math.floor(y / s);
      const rowOut = ((oy + y) * W + ox) * 3;
      for (let x = 0; x < w * s; x++) {
        const sp = base + (sy * w + Math.floor(x / s)) * c;
        const o = rowOut + 3 * x;
        if (c === 1) {
          canvas[o] = canvas[o + 1] = canvas[o + 2] = pixels[sp];
        } else {
          canvas[o] = pixels[sp];
          canvas[o + 1] = pixels[sp + 1];
          canvas[o + 2] = pixels[sp + 2];
        }
      }
    }
  }
  let img = sharp(Buffer.from(canvas.buffer, canvas.byteOffset, canvas.byteLength), { raw: { width: W, height: H, channels: 3 } });
  const overlay = captionsSvg(layout, opts);
  if (overlay) img = img.composite([{ input: Buffer.from(overlay), top: 0, left: 0 }]);
  return img.png().toBuffer();
}

function captionsSvg(layout: ImageGridLayout, opts: ImageGridOptions): string | null {
  if (!opts.labels && !opts.rowLabels && !opts.colLabels) return null;
  const fs = opts.fontSize ?? 12;
  const texts: string[] = [];
  const text = (x: number, y: number, s: string, anchor: "start" | "middle" | "end", weight = "normal") =>
    texts.push(`<text x="${x}" y="${y}" font-size="${fs}" font-weight="${weight}" text-anchor="${anchor}">${escapeXml(s)}</text>`);
  if (opts.labels) {
    opts.labels.forEach((label, idx) => {
      const r = Math.floor(idx / opts.cols);
      const c = idx % opts.cols;
      const x = layout.x0 + c * layout.strideX + layout.tileWidth / 2;
      const y = layout.y0 + r * layout.strideY + layout.tileHeight + fs;
      text(x, y, fitText(label, layout.tileWidth + 2, fs), "middle");
    });
  }
  if (opts.rowLabels) {
    opts.rowLabels.forEach((label, r) => {
      const y = layout.y0 + r * layout.strideY + layout.tileHeight / 2 + fs * 0.35;
      text(layout.x0 - 6, y, label, "end", "bold");
    });
  }
  if (opts.colLabels) {
    opts.colLabels.forEach((label, c) => {
      const x = layout.x0 + c * layout.strideX + layout.tileWidth / 2;
      text(x, layout.y0 - fs * 0.5, fitText(label, layout.strideX, fs), "middle", "bold");
    });
  }
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${layout.canvasWidth}" height="${layout.canvasHeight}">` +
    `<g font-family="${FONT_FAMILY}" fill="#222">${texts.join("")}</g></svg>`
  );
}

/** Concatenate several image sets into one uint8 NHWC source (all must share H, W, C). */
function concatImages(sets: PixelSource[], what: string): PixelSource {
  const { height, width, channels } = sets[0];
  for (const s of sets) {
    if (s.height !== height || s.width !== width || s.channels !== channels) {
      throw new Error(`${what}: image sets differ in shape (${s.height}x${s.width}x${s.channels} vs ${height}x${width}x${channels})`);
    }
  }
  const per = height * width * channels;
  const count = sets.reduce((a, s) => a + s.count, 0);
  const pixels = new Uint8Array(count * per);
  let off = 0;
  for (const s of sets) {
    pixels.set(s.pixels.subarray(0, s.count * per), off);
    off += s.count * per;
  }
  return { pixels, count, height, width, channels };
}

/** Take images [from, from + n) of a source. */
function sliceImages(src: PixelSource, from: number, n: number): PixelSource {
  const per = src.height * src.width * src.channels;
  return { ...src, pixels: src.pixels.subarray(from * per, (from + n) * per), count: n };
}

function gridFrom(src: PixelSource, opts: ImageGridOptions): Promise<Buffer> {
  return imageGridPng(src.pixels.subarray(0, src.count * src.height * src.width * src.channels), {
    ...opts,
    height: src.height,
    width: src.width,
    channels: src.channels,
  });
}

export interface GalleryOptions {
  scale?: number;
  padding?: number;
  fontSize?: number;
  /** Draw captions (default true). */
  captions?: boolean;
}

/** `perClass` samples of every class, one row per class (row captions = class names). */
export async function classSamplesGallery(ds: ImageDataset, perClass: number, opts: GalleryOptions & { seed?: number } = {}): Promise<Buffer> {
  positiveInt(perClass, "perClass");
  const numClasses = Math.max(ds.classNames.length, ...Array.from(ds.labels, (l) => l + 1));
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < ds.count; i++) byClass[ds.labels[i]].push(i);
  const rng = opts.seed === undefined ? null : new Rng(opts.seed);
  const per = ds.height * ds.width * ds.channels;
  const pixels = new Uint8Array(numClasses * perClass * per);
  pixels.fill(255);
  byClass.forEach((indices, cls) => {
    const chosen = rng ? Array.from(rng.shuffle(indices.slice())).slice(0, perClass) : indices.slice(0, perClass);
    chosen.forEach((i, t) => pixels.set(ds.images.subarray(i * per, (i + 1) * per), (cls * perClass + t) * per));
  });
  const captions = opts.captions ?? true;
  return imageGridPng(pixels, {
    rows: numClasses,
    cols: perClass,
    height: ds.height,
    width: ds.width,
    channels: ds.channels,
    rowLabels: captions ? Array.from({ length: numClasses }, (_, c) => ds.classNames[c] ?? `class ${c}`) : undefined,
    scale: opts.scale,
    padding: opts.padding,
    fontSize: opts.fontSize,
  });
}

/** One row per original image: the original, then each augmented view of it (columns). */
export async function augmentedViewsGallery(
  original: GalleryImages,
  views: readonly GalleryImages[],
  opts: GalleryOptions & { viewNames?: readonly string[] } = {},
): Promise<Buffer> {
  const orig = toPixels(original, {}, "augmentedViewsGallery");
  const vs = views.map((v) => toPixels(v, {}, "augmentedViewsGallery"));
  for (const v of vs) {
    if (v.count !== orig.count) throw new Error(`augmentedViewsGallery: a view set has ${v.count} images, originals have ${orig.count}`);
  }
  const cols = 1 + vs.length;
  const perRow: PixelSource[] = [];
  for (let i = 0; i < orig.count; i++) {
    perRow.push(sliceImages(orig, i, 1));
    for (const v of vs) perRow.push(sliceImages(v, i, 1));
  }
  const captions = opts.captions ?? true;
  const names = opts.viewNames ?? vs.map((_, k) => `view ${k + 1}`);
  return gridFrom(concatImages(perRow, "augmentedViewsGallery"), {
    rows: orig.count,
    cols,
    colLabels: captions ? ["original", ...names] : undefined,
    scale: opts.scale,
    padding: opts.padding,
    fontSize: opts.fontSize,
  });
}

/**
 * Nearest-neighbour retrieval: one row per query, the query first, then its k neighbours.
 * `neighbours` holds queries x k images, query-major.
 */
export async function retrievalGallery(
  queries: GalleryImages,
  neighbours: GalleryImages,
  opts: GalleryOptions & { queryLabels?: readonly string[]; neighbourLabels?: readonly string[] } = {},
): Promise<Buffer> {
  const q = toPixels(queries, {}, "retrievalGallery");
  const nb = toPixels(neighbours, {}, "retrievalGallery");
  if (nb.count % q.count !== 0) throw new Error(`retrievalGallery: ${nb.count} neighbours is not a multiple of ${q.count} queries`);
  const k = nb.count / q.count;
  const parts: PixelSource[] = [];
  const labels: string[] = [];
  for (let i = 0; i < q.count; i++) {
    parts.push(sliceImages(q, i, 1));
    labels.push(opts.queryLabels?.[i] ?? "query");
    parts.push(sliceImages(nb, i * k, k));
    for (let t = 0; t < k; t++) labels.push(opts.neighbourLabels?.[i * k + t] ?? `#${t + 1}`);
  }
  const captions = opts.captions ?? true;
  return gridFrom(concatImages(parts, "retrievalGallery"), {
    rows: q.count,
    cols: 1 + k,
    labels: captions ? labels : undefined,
    scale: opts.scale,
    padding: opts.padding,
    fontSize: opts.fontSize,
  });
}

/**
 * Masked-image modelling: rows original / masked / reconstructed, one column per image; with
 * `pasted`, a fourth row (MAE's "reconstruction + visible": the visible patches pasted back).
 */
export async function reconstructionGallery(
  originals: GalleryImages,
  masked: GalleryImages,
  reconstructed: GalleryImages,
  opts: GalleryOptions & { pasted?: GalleryImages; rowLabels?: readonly string[] } = {},
): Promise<Buffer> {
  const sets = [originals, masked, reconstructed, ...(opts.pasted ? [opts.pasted] : [])].map((s) => toPixels(s, {}, "reconstructionGallery"));
  const n = sets[0].count;
  if (sets.some((s) => s.count !== n)) throw new Error(`reconstructionGallery: image counts differ (${sets.map((s) => s.count).join(", ")})`);
  const rowLabels = opts.rowLabels ?? ["original", "masked", "reconstructed", "recon. + visible"].slice(0, sets.length);
  if (rowLabels.length !== sets.length) throw new Error(`reconstructionGallery: ${rowLabels.length} row labels for ${sets.length} rows`);
  const captions = opts.captions ?? true;
  return gridFrom(concatImages(sets, "reconstructionGallery"), {
    rows: sets.length,
    cols: n,
    rowLabels: captions ? rowLabels : undefined,
    scale: opts.scale,
    padding: opts.padding,
    fontSize: opts.fontSize,
  });
}
