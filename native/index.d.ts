/** Row-major products, NHWC/HWIO convolutions (dilation 1) and batch norm over Float32Arrays, split over `threads`. */
export interface NativeKernels {
  /** c[batch, m, n] = op(a) op(b) (+ bias[n]); a batch stride of 0 broadcasts that operand. */
  gemm(a: Float32Array, b: Float32Array, c: Float32Array, bias: Float32Array | null, transposeA: boolean, transposeB: boolean, batch: number, m: number, n: number, k: number, aBatchStride: number, bBatchStride: number): void;
  conv2d(x: Float32Array, filter: Float32Array, y: Float32Array, ...shape: ConvShapeArgs): void;
  conv2dFilterGrad(x: Float32Array, dy: Float32Array, dw: Float32Array, ...shape: ConvShapeArgs): void;
  conv2dInputGrad(dy: Float32Array, filter: Float32Array, dx: Float32Array, ...shape: ConvShapeArgs): void;
  /** Training-mode batch norm of x [m, c] over its rows: y, and the batch mean and biased variance. */
  batchNormForward(x: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, y: Float32Array, mean: Float32Array, variance: Float32Array, m: number, c: number, eps: number): void;
  /** Its gradient; each of dx, dgamma, dbeta is computed only when given. */
  batchNormBackward(x: Float32Array, dy: Float32Array, mean: Float32Array, variance: Float32Array, gamma: Float32Array | null, dx: Float32Array | null, dgamma: Float32Array | null, dbeta: Float32Array | null, m: number, c: number, eps: number): void;
  /** y[r, j] = x[r, j] * scale[j] + shift[j] for x [m, c] (eval-mode batch norm). */
  channelAffine(x: Float32Array, scale: Float32Array, shift: Float32Array, y: Float32Array, m: number, c: number): void;
  /** y = a + b, n values. */
  add(a: Float32Array, b: Float32Array, y: Float32Array, n: number): void;
  /** y = max(x, 0), n values. */
  relu(x: Float32Array, y: Float32Array, n: number): void;
  /** dx = dy where y (ReLU's output) > 0, else 0. */
  reluGrad(dy: Float32Array, y: Float32Array, dx: Float32Array, n: number): void;
  /** y = x Phi(x) (exact GELU), n values. */
  gelu(x: Float32Array, y: Float32Array, n: number): void;
  /** dx = dy (Phi(x) + x phi(x)), n values. */
  geluGrad(x: Float32Array, dy: Float32Array, dx: Float32Array, n: number): void;
  /** Layer norm of each row of x [m, d]: y, and each row's mean and 1 / sqrt(var + eps). */
  layerNormForward(x: Float32Array, gamma: Float32Array, beta: Float32Array, y: Float32Array, mean: Float32Array, rstd: Float32Array, m: number, d: number, eps: number): void;
  /** Its gradient; each of dx, dgamma, dbeta is computed only when given. */
  layerNormBackward(x: Float32Array, dy: Float32Array, mean: Float32Array, rstd: Float32Array, gamma: Float32Array, dx: Float32Array | null, dgamma: Float32Array | null, dbeta: Float32Array | null, m: number, d: number): void;
  /** Part `part` of tokens [n, l, parts, h, dh] to heads [n, h, l, dh] (merge 0), or heads into that part of tokens (merge 1). */
  moveHeads(tokens: Float32Array, heads: Float32Array, n: number, l: number, parts: number, part: number, h: number, dh: number, merge: 0 | 1): void;
  /** y = softmax(scale x) over each row of x [m, d] (scale > 0). */
  softmax(x: Float32Array, y: Float32Array, m: number, d: number, scale: number): void;
  /** Its gradient from its output y: dx = scale y (dy - sum(dy y)) per row. */
  softmaxGrad(y: Float32Array, dy: Float32Array, dx: Float32Array, m: number, d: number, scale: number): void;
  setThreads(threads: number): void;
  /** 3x3 stride-1 convolutions by Winograd F(m x m, 3x3): m = 4 (default; 2 on maps under 8x8), 2, or 0 for im2col. */
  setWinograd(tile: 0 | 2 | 4): void;
  info(): { threads: number; blas: string; winograd: number };
}
/** n, h, w, ci, kh, kw, co, strideH, strideW, padTop, padLeft, outH, outW */
export type ConvShapeArgs = [number, number, number, number, number, number, number, number, number, number, number, number, number];
export declare const binding: NativeKernels | null;
export declare const error: string | null;
