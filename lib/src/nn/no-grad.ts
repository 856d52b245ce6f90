/** Tape helpers: a forward pass off the gradient tape, and a value with a zero gradient. */
import * as tf from "@tensorflow/tfjs-core";

/**
 * f(x) off the gradient tape (torch.no_grad): run as one custom op, so nothing inside is recorded
 * or kept for backprop (the activations are freed at once); the gradient to x is zero.
 */
export function noGrad<T extends tf.Tensor, R extends tf.Tensor = tf.Tensor2D>(x: T, f: (x: T) => R): R {
  const op = tf.customGrad(((input: T) => ({ value: f(input), gradFunc: () => tf.zerosLike(input) })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x) as R;
}

/**
 * x with a zero gradient (torch's .detach()): the value passes, nothing flows back. Used for the
 * teacher's probabilities and targets, and for a frozen layer's weight.
 */
export const stopGradient: (x: tf.Tensor) => tf.Tensor = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => [tf.zerosLike(dy)],
})) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor) => tf.Tensor;
