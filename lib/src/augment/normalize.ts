/** Per-channel normalisation (torchvision Normalize): (x - mean) / std. */
import * as tf from "@tensorflow/tfjs-core";

/** ImageNet channel statistics (RGB), used by the SimCLR / MoCo / BYOL / DINO reference code. */
export const IMAGENET_MEAN: readonly number[] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: readonly number[] = [0.229, 0.224, 0.225];

/** (x - mean) / std per channel; mean and std are numbers or one value per channel. */
export function normalizeImages(x: tf.Tensor4D, mean: number | readonly number[], std: number | readonly number[]): tf.Tensor4D {
  if (!(x instanceof tf.Tensor) || x.rank !== 4) throw new Error(`normalizeImages: x must be [N,H,W,C], got ${x instanceof tf.Tensor ? `shape [${x.shape}]` : typeof x}`);
  const c = x.shape[3];
  const asChannels = (name: string, v: number | readonly number[]): number[] => {
    const arr = typeof v === "number" ? new Array<number>(c).fill(v) : Array.from(v);
    if (arr.length !== c) throw new Error(`normalizeImages: ${name} needs ${c} values (one per channel), got ${arr.length}`);
    if (!arr.every(Number.isFinite)) throw new Error(`normalizeImages: ${name} must be finite, got [${arr}]`);
    return arr;
  };
  const m = asChannels("mean", mean);
  const s = asChannels("std", std);
  if (!s.every((v) => v > 0)) throw new Error(`normalizeImages: std must be > 0, got [${s}]`);
  return tf.tidy(() => tf.div(tf.sub(x, tf.tensor1d(m)), tf.tensor1d(s)) as tf.Tensor4D);
}
