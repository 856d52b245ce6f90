/**
 * A matrix as a Vega-Lite heatmap (rect marks, one per cell): soft-label matrices, similarity
 * matrices, confusion matrices. Data is inlined, so the spec renders here (vegaLiteToPng /
 * displayChart) and in JupyterLab alike.
 */
import type { VegaLiteSpec } from "./charts";

export interface HeatmapOptions {
  title?: string;
  /** Cell size in px (default: so that the matrix is about 320 px wide, 6-24 px a cell). */
  cellSize?: number;
  rowTitle?: string;
  colTitle?: string;
  /** Colour scale domain (default [min, max] of the values). */
  domain?: [number, number];
  /** Vega colour scheme (default "blues"). */
  scheme?: string;
  /** Print each value in its cell (default: when the matrix is at most 12 x 12). */
  valueLabels?: boolean;
  /** d3-format of values in labels and tooltips (default ".2f"). */
  format?: string;
}

/** `matrix[i][j]` (row i, column j) as a heatmap, row 0 at the top. */
export function heatmapSpec(matrix: readonly (readonly number[] | Float32Array)[], opts: HeatmapOptions = {}): VegaLiteSpec {
  const rows = matrix.length;
  const cols = rows > 0 ? matrix[0].length : 0;
  if (rows === 0 || cols === 0) throw new Error("heatmapSpec: the matrix is empty");
  const values: { row: number; col: number; value: number }[] = [];
  let lo = Infinity;
  let hi = -Infinity;
  matrix.forEach((r, i) => {
    if (r.length !== cols) throw new Error(`heatmapSpec: row ${i} has ${r.length} values, row 0 has ${cols}`);
    Array.from(r).forEach((v, j) => {
      if (!Number.isFinite(v)) throw new Error(`heatmapSpec: value [${i}][${j}] is not finite (${v})`);
      values.push({ row: i, col: j, value: v });
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    });
  });
  const cell = opts.cellSize ?? Math.max(6, Math.min(24, Math.floor(320 / Math.max(rows, cols))));
  const format = opts.format ?? ".2f";
  const labels = opts.valueLabels ?? (rows <= 12 && cols <= 12);
  const domain = opts.domain ?? [lo, hi > lo ? hi : lo + 1];
  const axis = (title: string | undefined, n: number) => ({ title, labelExpr: n > 16 ? "datum.value % 8 == 0 ? datum.label : ''" : undefined });
  const layers: unknown[] = [
    {
      mark: { type: "rect", tooltip: true },
      encoding: {
        color: { field: "value", type: "quantitative", scale: { scheme: opts.scheme ?? "blues", domain }, legend: { format } },
        tooltip: [
          { field: "row", type: "ordinal" },
          { field: "col", type: "ordinal" },
          { field: "value", type: "quantitative", format },
        ],
      },
    },
  ];
  if (labels) {
    const mid = (domain[0] + domain[1]) / 2;
    layers.push({
      mark: { type: "text", fontSize: Math.max(7, Math.min(11, cell / 2.4)) },
      encoding: {
        text: { field: "value", type: "quantitative", format },
        color: { condition: { test: `datum.value > ${mid}`, value: "white" }, value: "black" },
      },
    });
  }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: opts.title ?? "matrix",
    width: cell * cols,
    height: cell * rows,
    data: { values },
    encoding: {
      x: { field: "col", type: "ordinal", axis: axis(opts.colTitle ?? "column", cols) },
      y: { field: "row", type: "ordinal", axis: axis(opts.rowTitle ?? "row", rows) },
    },
    layer: layers,
  } as VegaLiteSpec;
}
