/**
 * Vega-Lite 5 chart specs for the research workbook: training curves from a metrics log,
 * grouped bars for ablations (with an optional reference line), and embedding scatters coloured by
 * class. Data is inlined in long format, so a spec is self-contained (renderable by
 * vegaLiteToPng here and by JupyterLab's Vega-Lite 5 renderer in the browser).
 */
import type { TopLevelSpec } from "vega-lite";

/** A Vega-Lite 5 top-level spec. */
export type VegaLiteSpec = TopLevelSpec;

const VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json";

interface ChartFrameOptions {
  title?: string;
  width?: number;
  height?: number;
}

export interface LineChartOptions extends ChartFrameOptions {
  /** Field of the x axis (default "step"). */
  x?: string;
  /** Field(s) plotted on the y axis; several fields become several series named after the field. */
  y: string | string[];
  /** Field that names the series of each record (e.g. "method"); combined with the y field name when both vary. */
  series?: string;
  xTitle?: string;
  yTitle?: string;
  /** Logarithmic y axis (non-positive values are dropped). */
  logY?: boolean;
  /** Draw a point at every record (default: only when there are <= 60 points per series). */
  points?: boolean;
}

function finiteNumber(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/**
 * Training curves: one line per series over the records that have a finite number in the y field,
 * e.g. `lineChartSpec(MetricsLog.read("runs/x/metrics.jsonl").filter(r => r.type === "step"), { y: "loss" })`.
 */
export function lineChartSpec(records: readonly Record<string, unknown>[], opts: LineChartOptions): VegaLiteSpec {
  const xField = opts.x ?? "step";
  const yFields = Array.isArray(opts.y) ? opts.y : [opts.y];
  if (yFields.length === 0) throw new Error("lineChartSpec: at least one y field is required");
  const values: Array<{ x: number; y: number; series: string }> = [];
  for (const r of records) {
    const x = r[xField];
    if (!finiteNumber(x)) continue;
    for (const f of yFields) {
      const y = r[f];
      if (!finiteNumber(y) || (opts.logY && y <= 0)) continue;
      const name = opts.series !== undefined ? String(r[opts.series] ?? "") : "";
      const series = yFields.length > 1 ? (name ? `${name} ${f}` : f) : name || f;
      values.push({ x, y, series });
    }
  }
  if (values.length === 0) {
    throw new Error(`lineChartSpec: no record has finite numbers in '${xField}' and '${yFields.join("', '")}'`);
  }
  const seriesCount = new Set(values.map((v) => v.series)).size;
  const showPoints = opts.points ?? values.length / seriesCount <= 60;
  const yTitle = opts.yTitle ?? (yFields.length === 1 ? yFields[0] : "value");
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: opts.title ?? `${yTitle} by ${xField}`,
    width: opts.width ?? 480,
    height: opts.height ?? 280,
    data: { values },
    mark: { type: "line", point: showPoints, tooltip: true },
    encoding: {
      x: { field: "x", type: "quantitative", title: opts.xTitle ?? xField },
      y: {
        field: "y",
        type: "quantitative",
        title: yTitle,
        scale: opts.logY ? { type: "log" } : { zero: false },
      },
      color: { field: "series", type: "nominal", title: opts.series ?? "series", legend: seriesCount > 1 ? {} : null },
    },
  } as VegaLiteSpec;
}

export interface BarChartOptions extends ChartFrameOptions {
  /** Field naming each bar's category on the x axis (e.g. "method"). */
  category: string;
  /** Numeric field giving the bar height (e.g. "top1"). */
  value: string;
  /** Field splitting each category into side-by-side bars (e.g. "crop"); omitted = one bar per category. */
  group?: string;
  /** A horizontal reference line (e.g. the supervised baseline). */
  reference?: { value: number; label?: string };
  categoryTitle?: string;
  valueTitle?: string;
  /** Print the value above each bar (default true). */
  valueLabels?: boolean;
  /** Number format of the value labels (d3-format, default ".3~f"). */
  format?: string;
  /** Category order (default: order of first appearance). */
  categoryOrder?: string[];
}

/** Bars for ablations and method comparisons, grouped when `group` is set, with an optional reference line. */
export function barChartSpec(rows: readonly Record<string, unknown>[], opts: BarChartOptions): VegaLiteSpec {
  const values: Array<Record<string, string | number>> = [];
  for (const r of rows) {
    const v = r[opts.value];
    if (!finiteNumber(v)) continue;
    const row: Record<string, string | number> = { category: String(r[opts.category]), value: v };
    if (opts.group) row.group = String(r[opts.group]);
    values.push(row);
  }
  if (values.length === 0) throw new Error(`barChartSpec: no row has a finite number in '${opts.value}'`);
  const order = opts.categoryOrder ?? [...new Set(values.map((v) => String(v.category)))];
  const valueTitle = opts.valueTitle ?? opts.value;
  const format = opts.format ?? ".3~f";
  const x = { field: "category", type: "nominal", title: opts.categoryTitle ?? opts.category, sort: order, axis: { labelAngle: 0 } };
  const y = { field: "value", type: "quantitative", title: valueTitle };
  const barEncoding: Record<string, unknown> = { x, y };
  if (opts.group) {
    barEncoding.xOffset = { field: "group", type: "nominal" };
    barEncoding.color = { field: "group", type: "nominal", title: opts.group };
  }
  const layers: unknown[] = [{ mark: { type: "bar", tooltip: true }, encoding: barEncoding }];
  if (opts.valueLabels ?? true) {
    const textEncoding: Record<string, unknown> = { x, y, text: { field: "value", type: "quantitative", format } };
    if (opts.group) textEncoding.xOffset = { field: "group", type: "nominal" };
    layers.push({ mark: { type: "text", dy: -6, fontSize: 10 }, encoding: textEncoding });
  }
  if (opts.reference) {
    const ref = { data: { values: [{ ref: opts.reference.value, label: opts.reference.label ?? `${opts.reference.value}` }] } };
    layers.push({
      ...ref,
      mark: { type: "rule", color: "#d62728", strokeDash: [6, 4], strokeWidth: 1.5 },
      encoding: { y: { field: "ref", type: "quantitative" } },
    });
    layers.push({
      ...ref,
      mark: { type: "text", align: "right", baseline: "bottom", dy: -3, color: "#d62728", fontSize: 11, x: "width" },
      encoding: { y: { field: "ref", type: "quantitative" }, text: { field: "label" } },
    });
  }
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: opts.title ?? `${valueTitle} by ${opts.category}`,
    width: opts.width ?? (opts.group ? Math.max(320, order.length * 90) : Math.max(240, order.length * 60)),
    height: opts.height ?? 280,
    data: { values },
    layer: layers,
  } as VegaLiteSpec;
}

export interface ScatterOptions extends ChartFrameOptions {
  /** Names of the label values (label i -> classNames[i]). */
  classNames?: readonly string[];
  xTitle?: string;
  yTitle?: string;
  /** Point area in px^2 (default: 30 below 1,000 points, smaller above). */
  pointSize?: number;
  opacity?: number;
  /** Extra per-point tooltip text (e.g. the image index). */
  tooltip?: readonly string[];
}

/**
 * Embedding scatter (t-SNE / UMAP output) coloured by class. `points` are [x, y] rows;
 * `labels` are class indices (or names), one per point.
 */
/** A coordinate to 4 significant digits, for chart data stored in notebooks. */
export function roundForChart(v: number): number {
  return Number(v.toPrecision(4));
}

export function scatterSpec(
  points: readonly (readonly number[])[],
  labels?: ArrayLike<number> | readonly string[],
  opts: ScatterOptions = {},
): VegaLiteSpec {
  if (labels && labels.length !== points.length) {
    throw new Error(`scatterSpec: ${points.length} points but ${labels.length} labels`);
  }
  const values = points.map((p, i) => {
    if (!p || p.length < 2 || !finiteNumber(p[0]) || !finiteNumber(p[1])) {
      throw new Error(`scatterSpec: point ${i} is not a pair of finite numbers: ${JSON.stringify(p)}`);
    }
    // 4 significant digits: a chart needs no more, and a notebook stores every point (x2 kB a 100 points)
    const row: Record<string, number | string> = { x: roundForChart(p[0]), y: roundForChart(p[1]) };
    if (labels) {
      const l = labels[i];
      row.class = typeof l === "number" && opts.classNames ? (opts.classNames[l] ?? String(l)) : String(l);
    }
    if (opts.tooltip) row.info = opts.tooltip[i] ?? "";
    return row;
  });
  const classes = labels ? new Set(values.map((v) => v.class)).size : 0;
  const size = opts.pointSize ?? (points.length <= 1000 ? 30 : points.length <= 5000 ? 12 : 6);
  const encoding: Record<string, unknown> = {
    x: { field: "x", type: "quantitative", title: opts.xTitle ?? "dim 1", axis: { grid: false } },
    y: { field: "y", type: "quantitative", title: opts.yTitle ?? "dim 2", axis: { grid: false } },
  };
  const tooltip: unknown[] = [];
  if (labels) {
    const order = opts.classNames ? [...opts.classNames] : undefined;
    encoding.color = {
      field: "class",
      type: "nominal",
      title: "class",
      scale: { scheme: classes <= 10 ? "category10" : "tableau20" },
      ...(order ? { sort: order } : {}),
    };
    tooltip.push({ field: "class", type: "nominal" });
  }
  if (opts.tooltip) tooltip.push({ field: "info", type: "nominal" });
  if (tooltip.length > 0) encoding.tooltip = tooltip;
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: opts.title ?? "Embedding",
    width: opts.width ?? 420,
    height: opts.height ?? 420,
    data: { values },
    mark: { type: "circle", size, opacity: opts.opacity ?? 0.75 },
    encoding,
  } as VegaLiteSpec;
}
