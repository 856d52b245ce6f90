/** Row-major products and NHWC/HWIO convolutions (dilation 1) over Float32Arrays, split over `threads`. */
export interface NativeKernels {
  /** c[batch, m, n] = op(a) op(b) (+ bias[n]); a batch stride of 0 broadcasts that operand. */
  gemm(a: Float32Array, b: Float32Array, c: Float32Array, bias: Float32Array | null, transposeA: boolean, transposeB: boolean, batch: number, m: number, n: number, k: number, aBatchStride: number, bBatchStride: number): void;
  conv2d(x: Float32Array, filter: Float32Array, y: Float32Array, ...shape: ConvShapeArgs): void;
  conv2dFilterGrad(x: Float32Array, dy: Float32Array, dw: Float32Array, ...shape: ConvShapeArgs): void;
  conv2dInputGrad(dy: Float32Array, filter: Float32Array, dx: Float32Array, ...shape: ConvShapeArgs): void;
  setThreads(threads: number): void;
  info(): { threads: number; blas: string };
}
/** n, h, w, ci, kh, kw, co, strideH, strideW, padTop, padLeft, outH, outW */
export type ConvShapeArgs = [number, number, number, number, number, number, number, number, number, number, number, number, number];
export declare const binding: NativeKernels | null;
export declare const error: string | null;
