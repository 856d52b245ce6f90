/**
 * Seeded parameter initialisers. Every initialiser draws its numbers from an `Rng` in plain
 * JavaScript and only then builds a tensor, so the same seed gives bit-identical weights on
 * every backend (cpu, wasm, tensorflow). Conventions follow the reference code:
 *   - conv: kaiming normal, mode fan_out, relu gain (torchvision ResNet)
 *   - ViT linears: xavier uniform (MAE), class/mask tokens: normal(0.02), learnable position
 *     embeddings: truncated normal(0.02) (timm)
 *   - plain linears (projection heads): PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 *   - norms: ones / zeros
 */
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../random";

function sizeOf(shape: number[]): number {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`init: invalid shape [${shape}]`);
  }
  return shape.reduce((a, b) => a * b, 1);
}

function filled(shape: number[], draw: () => number): tf.Tensor {
  const data = new Float32Array(sizeOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = draw();
  return tf.tensor(data, shape, "float32");
}

/** All zeros, float32. */
export function initZeros(shape: number[]): tf.Tensor {
  return tf.tensor(new Float32Array(sizeOf(shape)), shape, "float32");
}

/** All ones, float32. */
export function initOnes(shape: number[]): tf.Tensor {
  return tf.tensor(new Float32Array(sizeOf(shape)).fill(1), shape, "float32");
}

/** N(mean, std^2) samples. */
export function initNormal(shape: number[], std: number, rng: Rng, mean = 0): tf.Tensor {
  return filled(shape, () => rng.normal(mean, std));
}

/** U(-bound, bound) samples. */
export function initUniform(shape: number[], bound: number, rng: Rng): tf.Tensor {
  return filled(shape, () => rng.uniform(-bound, bound));
}

/**
 * Normal(0, std^2) truncated to [-bound*std, bound*std] by rejection (timm's trunc_normal_(std=.02)
 * with its default cut at +-2 in units of std).
 */
export function initTruncNormal(shape: number[], std: number, rng: Rng, bound = 2): tf.Tensor {
  if (!(bound > 0)) throw new Error(`initTruncNormal: bound must be > 0, got ${bound}`);
  return filled(shape, () => {
    for (;;) {
      const z = rng.normal();
      if (Math.abs(z) <= bound) return z * std;
    }
  });
}

/** Glorot/xavier uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)). */
export function initXavierUniform(shape: number[], fanIn: number, fanOut: number, rng: Rng, gain = 1): tf.Tensor {
  return initUniform(shape, gain * Math.sqrt(6 / (fanIn + fanOut)), rng);
}

/** He/kaiming normal: N(0, gain^2 / fan), gain = sqrt(2) for ReLU. */
export function initKaimingNormal(shape: number[], fan: number, rng: Rng, gain = Math.SQRT2): tf.Tensor {
  return initNormal(shape, gain / Math.sqrt(fan), rng);
}

/**
 * HWIO conv filter [KH, KW, Ci, Co] with kaiming normal in fan_out mode for ReLU
 * (torchvision ResNet: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")),
 * fan_out = KH * KW * Co.
 */
export function initConvKaimingFanOut(shape: [number, number, number, number], rng: Rng): tf.Tensor4D {
  const [kh, kw, , co] = shape;
  return initKaimingNormal(shape, kh * kw * co, rng) as tf.Tensor4D;
}

/** PyTorch's default nn.Linear / nn.Conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5)). */
export function initTorchDefault(shape: number[], fanIn: number, rng: Rng): tf.Tensor {
  return initUniform(shape, 1 / Math.sqrt(fanIn), rng);
}
