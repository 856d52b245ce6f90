/**
 * Rich output for notebooks run by the tslab kernel, with plain-Node fallbacks.
 *
 * tslab's public `display.raw(mime, data)` sends one MIME type per output. A chart needs ONE
 * display_data message holding several representations, so that each front end picks the best it
 * can render: JupyterLab 4 renders application/vnd.vegalite.v5+json (its built-in vega5 extension)
 * or application/vnd.plotly.v1+json (with the plotly extension), classic Notebook and nbconvert's
 * HTML fall back to image/png, terminals to text/plain. tslab keeps the current cell's
 * display-data writer in `lastWriteDisplayData` of its dist/jupyter.js module (set at the start
 * of every execute request); `writer({data, metadata, transient: {display_id}}, update)` sends a
 * display_data (update=false) or update_display_data (update=true) message, which is what
 * `notebookProgress` uses to redraw a single output while a cell trains. The writer is found in
 * the process's module cache, so requiring sslkit never loads tslab (or TypeScript) itself.
 *
 * Outside a notebook (plain Node, tests, the CLI) nothing is sent: the functions print their text
 * summary and, when given `file`, write the PNG there.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import sharp from "sharp";
import { formatDuration } from "../train/metrics";
import type { TrainProgress } from "../train/metrics";
import type { VegaLiteSpec } from "./charts";
import { roundForChart, scatterSpec } from "./charts";
import { vegaLiteToPng } from "./render";

/** The Vega-Lite MIME type JupyterLab 4 ships a renderer for. */
export const VEGA_LITE_MIME = "application/vnd.vegalite.v5+json";
export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

/** MIME type -> representation (JSON for vega-lite/plotly, base64 for images, string for text). */
export type DisplayBundle = Record<string, unknown>;

export interface DisplayMessage {
  data: DisplayBundle;
  metadata: Record<string, unknown>;
  transient?: { display_id?: string };
}

type DisplayWriter = (content: DisplayMessage, update: boolean) => void;

/** Module-cache key of tslab's dist/jupyter.js once found (the process has at most one kernel). */
let tslabJupyterKey: string | null = null;

function jupyterModuleWriter(cache: NodeJS.Dict<NodeJS.Module>, key: string): DisplayWriter | null {
  const writer = (cache[key]?.exports as { lastWriteDisplayData?: unknown } | undefined)?.lastWriteDisplayData;
  return typeof writer === "function" ? (writer as DisplayWriter) : null;
}

/** tslab's current display-data writer, when this process is a tslab kernel executing a cell. */
function tslabDisplayWriter(): DisplayWriter | null {
  const cache = typeof require !== "undefined" ? require.cache : undefined;
  if (!cache) return null;
  if (tslabJupyterKey) {
    const writer = jupyterModuleWriter(cache, tslabJupyterKey);
    if (writer) return writer;
  }
  for (const key of Object.keys(cache)) {
    if (!/[\\/]tslab[\\/]dist[\\/]jupyter\.js$/.test(key)) continue;
    const writer = jupyterModuleWriter(cache, key);
    if (writer) {
      tslabJupyterKey = key;
      return writer;
    }
  }
  return null;
}

/** True when running inside a tslab notebook kernel (rich output can be displayed). */
export function inNotebook(): boolean {
  return tslabDisplayWriter() !== null;
}

export interface SendDisplayOptions {
  metadata?: Record<string, unknown>;
  /** Display id: later sends with the same id and `update: true` replace this output. */
  displayId?: string;
  update?: boolean;
}

/** Send one display_data (or update_display_data) message; false when not in a notebook. */
export function sendDisplayBundle(bundle: DisplayBundle, opts: SendDisplayOptions = {}): boolean {
  const writer = tslabDisplayWriter();
  if (!writer) return false;
  const msg: DisplayMessage = { data: bundle, metadata: opts.metadata ?? {} };
  if (opts.displayId) msg.transient = { display_id: opts.displayId };
  writer(msg, opts.update === true);
  return true;
}

function toBase64(png: Buffer | Uint8Array | string): string {
  if (typeof png === "string") return png;
  return Buffer.from(png.buffer, png.byteOffset, png.byteLength).toString("base64");
}

/** The one-output bundle of a chart: the Vega-Lite spec, its PNG (base64) and a text summary. */
export function chartDisplayBundle(spec: VegaLiteSpec, png: Buffer | Uint8Array | string, summary: string): DisplayBundle {
  return { [VEGA_LITE_MIME]: spec, "image/png": toBase64(png), "text/plain": summary };
}

/** A plotly.js figure. */
export interface PlotlyFigure {
  data: Record<string, unknown>[];
  layout?: Record<string, unknown>;
}

/** The one-output bundle of a plotly figure, with an optional PNG fallback and a text summary. */
export function plotlyDisplayBundle(figure: PlotlyFigure, png: Buffer | Uint8Array | string | null, summary: string): DisplayBundle {
  const bundle: DisplayBundle = { [PLOTLY_MIME]: { data: figure.data, layout: figure.layout ?? {} } };
  if (png !== null) bundle["image/png"] = toBase64(png);
  bundle["text/plain"] = summary;
  return bundle;
}

/** A PNG with a text summary. */
export function pngDisplayBundle(png: Buffer | Uint8Array, summary: string): DisplayBundle {
  return { "image/png": toBase64(png), "text/plain": summary };
}

/** Metadata that shows a PNG rendered at `pixelRatio` x at its CSS size (crisp on any screen). */
async function pngMetadata(png: Buffer | Uint8Array, pixelRatio: number): Promise<Record<string, unknown>> {
  if (pixelRatio === 1) return {};
  const meta = await sharp(png).metadata();
  if (!meta.width || !meta.height) return {};
  return { "image/png": { width: Math.round(meta.width / pixelRatio), height: Math.round(meta.height / pixelRatio) } };
}

/** A one-line description of a Vega-Lite spec: title, mark and the number of data rows. */
export function describeVegaLiteSpec(spec: VegaLiteSpec): string {
  const s = spec as unknown as Record<string, unknown>;
  const title = typeof s.title === "string" ? s.title : (s.title as { text?: string } | undefined)?.text ?? "chart";
  const values = (s.data as { values?: unknown[] } | undefined)?.values;
  const mark = s.mark ? (typeof s.mark === "string" ? s.mark : (s.mark as { type?: string }).type) : s.layer ? "layered" : "chart";
  return `[${mark} chart] ${title}${values ? ` (${values.length} data rows)` : ""}`;
}

export interface DisplayOutputOptions {
  /** text/plain representation (default: a one-line description). */
  summary?: string;
  /** Also write the PNG to this file (outside a notebook: the only visual output). */
  file?: string;
}

function writeFileFor(file: string | undefined, png: Buffer): void {
  if (!file) return;
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, png);
}

function printFallback(summary: string, file: string | undefined): void {
  process.stdout.write(`${summary}${file ? `\n(saved ${file})` : ""}\n`);
}

/**
 * Display a Vega-Lite chart as ONE output with three representations: the interactive spec
 * (JupyterLab), a PNG (classic Notebook, nbconvert HTML, GitHub) and a text summary. Await it, so
 * the output lands in the current cell. Outside a notebook it prints the summary (and writes
 * `file` if given).
 */
export async function displayChart(spec: VegaLiteSpec, opts: DisplayOutputOptions & { scale?: number } = {}): Promise<void> {
  const summary = opts.summary ?? describeVegaLiteSpec(spec);
  const scale = opts.scale ?? 2;
  const png = await vegaLiteToPng(spec, { scale });
  writeFileFor(opts.file, png);
  if (!sendDisplayBundle(chartDisplayBundle(spec, png, summary), { metadata: await pngMetadata(png, scale) })) {
    printFallback(summary, opts.file);
  }
}

/** Display a PNG (e.g. an image gallery) with a text summary; outside a notebook print the summary. */
export async function displayPng(png: Buffer | Uint8Array, opts: DisplayOutputOptions = {}): Promise<void> {
  const buf = Buffer.isBuffer(png) ? png : Buffer.from(png);
  const meta = await sharp(buf).metadata();
  const summary = opts.summary ?? `[image ${meta.width}x${meta.height}]`;
  writeFileFor(opts.file, buf);
  if (!sendDisplayBundle(pngDisplayBundle(buf, summary))) printFallback(summary, opts.file);
}

export interface EmbeddingPlotlyOptions {
  classNames?: readonly string[];
  /** Hover text per point (e.g. "test #12"). */
  hoverText?: readonly string[];
  title?: string;
  markerSize?: number;
}

/**
 * A plotly.js figure of an embedding: one trace per class, 3-D (scatter3d) when points have 3
 * coordinates, else 2-D with hover text.
 */
export function embeddingPlotlyFigure(
  points: readonly (readonly number[])[],
  labels?: ArrayLike<number> | readonly string[],
  opts: EmbeddingPlotlyOptions = {},
): PlotlyFigure {
  if (points.length === 0) throw new Error("embeddingPlotlyFigure: no points");
  const dims = points[0].length;
  if (dims !== 2 && dims !== 3) throw new Error(`embeddingPlotlyFigure: points must have 2 or 3 coordinates, got ${dims}`);
  if (labels && labels.length !== points.length) throw new Error(`embeddingPlotlyFigure: ${points.length} points but ${labels.length} labels`);
  const groups = new Map<string, number[]>();
  points.forEach((_, i) => {
    const l = labels ? labels[i] : "points";
    const name = typeof l === "number" && opts.classNames ? (opts.classNames[l] ?? String(l)) : String(l);
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name)!.push(i);
  });
  const names = opts.classNames ? [...groups.keys()].sort((a, b) => opts.classNames!.indexOf(a) - opts.classNames!.indexOf(b)) : [...groups.keys()];
  const size = opts.markerSize ?? (points.length <= 2000 ? 5 : 3);
  const data = names.map((name) => {
    const idx = groups.get(name)!;
    const trace: Record<string, unknown> = {
      type: dims === 3 ? "scatter3d" : "scatter",
      mode: "markers",
      name,
      x: idx.map((i) => roundForChart(points[i][0])),
      y: idx.map((i) => roundForChart(points[i][1])),
      marker: { size, opacity: 0.8 },
      hoverinfo: "text+name",
      text: idx.map((i) => opts.hoverText?.[i] ?? `#${i}`),
    };
    if (dims === 3) trace.z = idx.map((i) => roundForChart(points[i][2]));
    return trace;
  });
  const layout: Record<string, unknown> = {
    title: { text: opts.title ?? "Embedding" },
    width: 720,
    height: 560,
    legend: { itemsizing: "constant" },
    margin: { l: 40, r: 20, t: 50, b: 40 },
  };
  return { data, layout };
}

/** A 2-D Vega-Lite scatter of a plotly figure's x/y per trace (the PNG fallback). */
function fallbackSpecFromPlotly(figure: PlotlyFigure): VegaLiteSpec | null {
  const points: number[][] = [];
  const labels: string[] = [];
  for (const t of figure.data) {
    const xs = t.x as ArrayLike<number> | undefined;
    const ys = t.y as ArrayLike<number> | undefined;
    if (!xs || !ys) continue;
    for (let i = 0; i < Math.min(xs.length, ys.length); i++) {
      if (!Number.isFinite(xs[i]) || !Number.isFinite(ys[i])) continue;
      points.push([xs[i], ys[i]]);
      labels.push(String(t.name ?? "points"));
    }
  }
  if (points.length === 0) return null;
  const title = (figure.layout?.title as { text?: string } | undefined)?.text ?? "Embedding";
  const threeD = figure.data.some((t) => t.type === "scatter3d");
  const traceNames = [...new Set(labels)];
  return scatterSpec(points, labels, { classNames: traceNames, title: threeD ? `${title} (x/y projection of the 3-D view)` : title });
}

/**
 * Display an interactive plotly.js figure (JupyterLab with the plotly extension) as ONE output
 * that also holds a PNG fallback (rendered through Vega-Lite from `pngFallbackSpec`, or from the
 * figure's x/y) and a text summary.
 */
export async function displayPlotly(
  data: Record<string, unknown>[],
  layout: Record<string, unknown> = {},
  opts: DisplayOutputOptions & { pngFallbackSpec?: VegaLiteSpec } = {},
): Promise<void> {
  const figure = { data, layout };
  const points = data.reduce((a, t) => a + ((t.x as ArrayLike<unknown> | undefined)?.length ?? 0), 0);
  const title = (layout.title as { text?: string } | undefined)?.text ?? (typeof layout.title === "string" ? layout.title : "figure");
  const summary = opts.summary ?? `[plotly] ${title} (${data.length} traces, ${points} points)`;
  const spec = opts.pngFallbackSpec ?? fallbackSpecFromPlotly(figure);
  const png = spec ? await vegaLiteToPng(spec, { scale: 2 }) : null;
  if (png) writeFileFor(opts.file, png);
  const metadata = png ? await pngMetadata(png, 2) : {};
  if (!sendDisplayBundle(plotlyDisplayBundle(figure, png, summary), { metadata })) printFallback(summary, png ? opts.file : undefined);
}

function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : v.toFixed(4).replace(/\.?0+$/, "") || "0";
}

/** One compact progress line: bar, step, epoch, loss, lr, speed, elapsed / eta, extra metrics. */
export function formatProgressLine(p: TrainProgress, label = "train", barWidth = 20): string {
  const frac = p.totalSteps > 0 ? Math.min(1, p.step / p.totalSteps) : 0;
  const filled = Math.round(frac * barWidth);
  const bar = "#".repeat(filled) + ".".repeat(barWidth - filled);
  const extras = Object.entries(p.metrics ?? {})
    .filter(([k, v]) => k !== "loss" && k !== "lr" && typeof v === "number")
    .map(([k, v]) => `${k} ${formatNumber(v)}`);
  return [
    `${label} [${bar}] ${Math.round(frac * 100)}%`,
    `step ${p.step}/${p.totalSteps}`,
    `epoch ${p.epoch}/${p.epochs}`,
    `loss ${formatNumber(p.loss)}`,
    `lr ${p.lr.toExponential(2)}`,
    `${p.imagesPerSec.toFixed(0)} img/s`,
    `${formatDuration(p.elapsedSeconds)} elapsed, eta ${formatDuration(p.etaSeconds)}`,
    ...extras,
  ].join(" | ");
}

export interface NotebookProgressOptions {
  /** Prefix of the progress line (default "train"). */
  label?: string;
  /** Minimum seconds between redraws of the notebook output (default 1). */
  everySeconds?: number;
  /** Outside a notebook: seconds between printed lines (default 10). */
  printEverySeconds?: number;
  /** Clock in ms (tests). */
  now?: () => number;
  /** Where plain-Node lines go (default process.stdout). */
  write?: (line: string) => void;
}

let progressDisplayCounter = 0;

/**
 * One live line of text. In a notebook it keeps ONE output up to date (display_data once, then
 * update_display_data with the same display id, at most every `everySeconds`, and always on the
 * final call) -- this redraws live in JupyterLab and classic Notebook, and the executed .ipynb
 * keeps the final state. Outside a notebook it prints the line every `printEverySeconds` (and on
 * the final call).
 */
export function liveLine(opts: Omit<NotebookProgressOptions, "label"> = {}): (line: string, final?: boolean) => void {
  const now = opts.now ?? (() => Date.now());
  const write = opts.write ?? ((line: string) => process.stdout.write(line + "\n"));
  const displayId = `sslkit-progress-${process.pid}-${++progressDisplayCounter}-${Date.now().toString(36)}`;
  let shown = false;
  let last = -Infinity;
  return (line: string, final = false) => {
    const t = now();
    const notebook = inNotebook();
    const interval = 1000 * (notebook ? (opts.everySeconds ?? 1) : (opts.printEverySeconds ?? 10));
    if (!final && shown && t - last < interval) return;
    last = t;
    if (notebook && sendDisplayBundle({ "text/plain": line }, { displayId, update: shown })) {
      shown = true;
      return;
    }
    shown = true;
    write(line);
  };
}

/** A callback for the trainer's `onProgress` hook that shows live progress (see `liveLine`). */
export function notebookProgress(opts: NotebookProgressOptions = {}): (p: TrainProgress) => void {
  const label = opts.label ?? "train";
  const show = liveLine(opts);
  return (p: TrainProgress) => show(formatProgressLine(p, label), p.step >= p.totalSteps);
}
