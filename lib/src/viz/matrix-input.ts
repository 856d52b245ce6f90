/**
 * The row-matrix inputs that the projections (t-SNE, UMAP) accept: nested arrays, a flat typed
 * array with a column count, or a rank-2 tensor. Everything is copied into a row-major Float32Array.
 */
import * as tf from "@tensorflow/tfjs-core";

/** n rows of d numbers: `number[][]`, a flat (Float32|Float64)Array with `cols`, or a tf.Tensor2D. */
export type ProjectionInput = number[][] | Float32Array | Float64Array | tf.Tensor2D;

/** A dense row-major matrix. */
export interface RowMatrix {
  values: Float32Array;
  rows: number;
  cols: number;
}

/** Copy `data` into a row-major Float32Array (`cols` is required for flat arrays). */
export function toRowMatrix(data: ProjectionInput, cols: number | undefined, what: string): RowMatrix {
  let values: Float32Array;
  let rows: number;
  let d: number;
  if (data instanceof tf.Tensor) {
    if (data.rank !== 2) throw new Error(`${what}: expected a rank-2 tensor [n, d], got shape [${data.shape}]`);
    [rows, d] = data.shape as [number, number];
    values = Float32Array.from(data.dataSync() as ArrayLike<number>);
  } else if (data instanceof Float32Array || data instanceof Float64Array) {
    if (cols === undefined || !Number.isInteger(cols) || cols <= 0) {
      throw new Error(`${what}: a flat array needs the number of columns (option 'cols'), got ${cols}`);
    }
    if (data.length % cols !== 0) throw new Error(`${what}: flat array length ${data.length} is not a multiple of cols=${cols}`);
    d = cols;
    rows = data.length / cols;
    values = data instanceof Float32Array ? data.slice() : Float32Array.from(data);
  } else if (Array.isArray(data)) {
    rows = data.length;
    d = rows > 0 ? data[0].length : 0;
    values = new Float32Array(rows * d);
    for (let i = 0; i < rows; i++) {
      const row = data[i];
      if (!row || row.length !== d) throw new Error(`${what}: row ${i} has ${row?.length} values, row 0 has ${d}`);
      for (let c = 0; c < d; c++) values[i * d + c] = row[c];
    }
  } else {
    throw new Error(`${what}: data must be number[][], a Float32Array/Float64Array with cols, or a tf.Tensor2D`);
  }
  if (rows === 0 || d === 0) throw new Error(`${what}: empty input (${rows} x ${d})`);
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new Error(`${what}: non-finite value ${values[i]} at row ${Math.floor(i / d)}, column ${i % d}`);
    }
  }
  return { values, rows, cols: d };
}

/** Row-major [n, k] Float32Array/Float64Array -> number[][]. */
export function rowsToArrays(values: ArrayLike<number>, rows: number, cols: number): number[][] {
  const out: number[][] = new Array(rows);
  for (let i = 0; i < rows; i++) {
    const r = new Array<number>(cols);
    for (let c = 0; c < cols; c++) r[c] = values[i * cols + c];
    out[i] = r;
  }
  return out;
}
