/**
 * Ops the library trains through, with gradient formulations that are correct and fast on
 * every backend, wasm included. Layers call these instead of the raw tf ops:
 *   - matMul: tfjs's own matMul gradient uses transposeA/transposeB, which is 8-16x slower on
 *     wasm than an explicit transpose followed by a plain matMul.
 *   - conv2d: see below.
 * Never train through tf.stridedSlice, tf.einsum or tf.depthToSpace (no gradient on any
 * backend), and keep transposes/slices at rank <= 4 (rank 5-6 are ~100x slower on wasm).
 */
import * as tf from "@tensorflow/tfjs-core";

/** Transpose of the last two axes of a rank-2 or rank-3 tensor. */
export function transposeLast2(x: tf.Tensor): tf.Tensor {
  if (x.rank === 2) return tf.transpose(x, [1, 0]);
  if (x.rank === 3) return tf.transpose(x, [0, 2, 1]);
  throw new Error(`transposeLast2: expected rank 2 or 3, got ${x.rank}`);
}

/**
 * a @ b for rank-2 [m,k]x[k,n] or batched rank-3 [B,m,k]x[B,k,n], with a gradient that uses
 * explicit transposes and plain matMuls: dA = dY @ B^T, dB = A^T @ dY.
 */
const matMulWithPlainGrads = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  const value = tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D);
  const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
    const [sa, sb] = saved;
    return [tf.matMul(dy as tf.Tensor2D, transposeLast2(sb) as tf.Tensor2D), tf.matMul(transposeLast2(sa) as tf.Tensor2D, dy as tf.Tensor2D)];
  };
  return { value, gradFunc };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
}) as any);

export function matMul(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return matMulWithPlainGrads(a, b);
}

/** Affine map on the last axis: x [..., in] @ w [in, out] + b [out], any leading rank. */
export function dense(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  const inDim = x.shape[x.rank - 1];
  const lead = x.shape.slice(0, -1);
  const y = matMul(tf.reshape(x, [-1, inDim]), w);
  const yb = b ? tf.add(y, b) : y;
  return x.rank === 2 ? yb : tf.reshape(yb, [...lead, w.shape[1] as number]);
}

/**
 * 2-D convolution, NHWC input, HWIO filter. Trainable on every backend (the wasm backend's
 * missing Conv2DBackpropFilter is registered by backend/wasm-kernels).
 */
export function conv2d(x: tf.Tensor4D, w: tf.Tensor4D, stride: number, pad: "same" | "valid" | number): tf.Tensor4D {
  return tf.conv2d(x, w, stride, pad as "same" | "valid");
}
