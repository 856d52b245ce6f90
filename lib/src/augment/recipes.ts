/**
 * Named view recipes from the papers, parameterised by output size so they serve 28x28x1
 * Fashion-MNIST and 32x32x3 CIFAR as well as 224 ImageNet. Every setting can be overridden.
 * Outputs stay in [0,1]; normalisation (normalizeImages) is left to the model input.
 * On 1-channel images saturation, hue and grayscale are no-ops (brightness/contrast still apply).
 * The blur kernel is 10% of the output side (>= 3 taps) with sigma ~ U[0.1, 2] px at every size.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random";
import { assertImageBatch, assertProbability } from "./batch";
import { colorJitter, type ColorJitterOptions } from "./color-jitter";
import { composeTransforms, type MultiViewTransform, type ViewTransform } from "./compose";
import { randomResizedCrop } from "./crop";
import { gaussianBlur } from "./blur";
import { randomHorizontalFlip } from "./flip";
import { randomGrayscale } from "./grayscale";
import { solarize } from "./solarize";

/** Settings shared by the recipes; each recipe documents its paper defaults. */
export interface RecipeBaseOptions {
  /** Output side (square) or [height, width]. */
  size: number | [number, number];
  /** If given, inputs must have this many channels (1 or 3). */
  channels?: number;
  /** RandomResizedCrop area range (torchvision `scale`). */
  scale?: [number, number];
  /** RandomResizedCrop aspect-ratio range (torchvision `ratio`); default [3/4, 4/3]. */
  ratio?: [number, number];
  flipProb?: number;
  /** [brightness, contrast, saturation, hue] jitter strengths. */
  jitter?: [number, number, number, number];
  jitterProb?: number;
  grayscaleProb?: number;
  blurSigma?: [number, number];
  blurKernelSize?: number;
}

export interface SimclrTransformOptions extends RecipeBaseOptions {
  /**
   * "imagenet" (default): colour strength s = 1, blur p = 0.5. "cifar": the small-image variant
   * SimCLR used for CIFAR-10 (s = 0.5, no blur; simclr README: --color_jitter_strength=0.5 --use_blur=False).
   */
  variant?: "imagenet" | "cifar";
  /** Colour distortion strength s: jitter = (0.8s, 0.8s, 0.8s, 0.2s); default by variant. */
  strength?: number;
  blurProb?: number;
}

export interface MocoV2TransformOptions extends RecipeBaseOptions {
  blurProb?: number;
}

export interface ByolTransformOptions extends RecipeBaseOptions {
  /** Blur probability for view 1 and view 2; default [1.0, 0.1]. */
  blurProbs?: [number, number];
  /** Solarization probability for view 1 and view 2; default [0, 0.2]. */
  solarizeProbs?: [number, number];
}

export interface DinoMultiCropOptions {
  /** Side (or [h, w]) of the 2 global crops, e.g. 224 or the dataset's own size (28, 32). */
  globalSize: number | [number, number];
  /** Side of the local crops; default round(globalSize * 96 / 224) (DINO: 96 for 224), at least 8. */
  localSize?: number | [number, number];
  /** Number of local crops; default 8 (DINO --local_crops_number). 0 gives the 2 global crops only. */
  numLocalCrops?: number;
  /** DINO --global_crops_scale, default [0.4, 1]. */
  globalScale?: [number, number];
  /** DINO --local_crops_scale, default [0.05, 0.4]. */
  localScale?: [number, number];
  channels?: number;
  ratio?: [number, number];
  flipProb?: number;
  jitter?: [number, number, number, number];
  jitterProb?: number;
  grayscaleProb?: number;
  /** Blur probability: [global 1, global 2, locals]; default [1.0, 0.1, 0.5]. */
  blurProbs?: [number, number, number];
  /** Solarization probability: [global 1, global 2, locals]; default [0, 0.2, 0]. */
  solarizeProbs?: [number, number, number];
  blurSigma?: [number, number];
}

function checkChannels(fn: string, images: tf.Tensor4D, channels?: number): void {
  assertImageBatch(fn, images);
  if (channels != null && channels !== 1 && channels !== 3) throw new Error(`${fn}: channels must be 1 or 3, got ${channels}`);
  if (channels != null && images.shape[3] !== channels) {
    throw new Error(`${fn}: configured for ${channels}-channel images, got shape [${images.shape}]`);
  }
}

function jitterOptions(jitter: [number, number, number, number], p: number): ColorJitterOptions {
  if (!(Array.isArray(jitter) && jitter.length === 4)) throw new Error(`jitter must be [brightness, contrast, saturation, hue], got ${JSON.stringify(jitter)}`);
  return { brightness: jitter[0], contrast: jitter[1], saturation: jitter[2], hue: jitter[3], p };
}

function probabilities(fn: string, name: string, ps: number[]): void {
  ps.forEach((p, i) => assertProbability(fn, `${name}[${i}]`, p));
}

/** crop -> flip -> jitter -> grayscale -> blur -> solarize, skipping blur/solarize when their p is 0. */
function standardView(fn: string, o: {
  size: number | [number, number]; channels?: number; cropScale: [number, number]; cropRatio?: [number, number];
  flipProb: number; jitter: ColorJitterOptions; grayscaleProb: number; blurProb: number; blurSigma?: [number, number];
  blurKernelSize?: number; solarizeProb: number; flipLast?: boolean;
}): ViewTransform {
  probabilities(fn, "p", [o.flipProb, o.jitter.p ?? 1, o.grayscaleProb, o.blurProb, o.solarizeProb]);
  const crop: ViewTransform = (x, rng) => {
    checkChannels(fn, x, o.channels);
    return randomResizedCrop(x, rng, { size: o.size, scale: o.cropScale, ratio: o.cropRatio });
  };
  const flip: ViewTransform = (x, rng) => randomHorizontalFlip(x, rng, { p: o.flipProb });
  const steps: ViewTransform[] = [crop];
  if (!o.flipLast) steps.push(flip);
  steps.push((x, rng) => colorJitter(x, rng, o.jitter));
  steps.push((x, rng) => randomGrayscale(x, rng, { p: o.grayscaleProb }));
  if (o.blurProb > 0) steps.push((x, rng) => gaussianBlur(x, rng, { p: o.blurProb, sigma: o.blurSigma, kernelSize: o.blurKernelSize }));
  if (o.solarizeProb > 0) steps.push((x, rng) => solarize(x, rng, { p: o.solarizeProb }));
  if (o.flipLast) steps.push(flip);
  return composeTransforms(...steps);
}

/**
 * SimCLR (Chen et al. 2020, Appendix A): RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3), flip 0.5,
 * RandomApply(ColorJitter(0.8s, 0.8s, 0.8s, 0.2s), p=0.8), RandomGrayscale(0.2), blur p=0.5
 * (kernel 10% of the side, sigma 0.1-2). variant "cifar": s = 0.5 -> jitter (0.4, 0.4, 0.4, 0.1), no blur.
 */
export function simclrTransform(opts: SimclrTransformOptions): ViewTransform {
  const variant = opts.variant ?? "imagenet";
  if (variant !== "imagenet" && variant !== "cifar") throw new Error(`simclrTransform: variant must be "imagenet" or "cifar", got ${String(variant)}`);
  const s = opts.strength ?? (variant === "cifar" ? 0.5 : 1.0);
  if (!(s >= 0)) throw new Error(`simclrTransform: strength must be >= 0, got ${s}`);
  return standardView("simclrTransform", {
    size: opts.size,
    channels: opts.channels,
    cropScale: opts.scale ?? [0.08, 1],
    cropRatio: opts.ratio,
    flipProb: opts.flipProb ?? 0.5,
    jitter: jitterOptions(opts.jitter ?? [0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s], opts.jitterProb ?? 0.8),
    grayscaleProb: opts.grayscaleProb ?? 0.2,
    blurProb: opts.blurProb ?? (variant === "cifar" ? 0 : 0.5),
    blurSigma: opts.blurSigma,
    blurKernelSize: opts.blurKernelSize,
    solarizeProb: 0,
  });
}

/**
 * MoCo v2 (Chen et al. 2020b; moco main_moco.py --aug-plus): RandomResizedCrop(scale 0.2-1),
 * RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p=0.8), RandomGrayscale(0.2), blur p=0.5
 * (sigma 0.1-2), then horizontal flip 0.5 (flip last, as in the reference code).
 */
export function mocoV2Transform(opts: MocoV2TransformOptions): ViewTransform {
  return standardView("mocoV2Transform", {
    size: opts.size,
    channels: opts.channels,
    cropScale: opts.scale ?? [0.2, 1],
    cropRatio: opts.ratio,
    flipProb: opts.flipProb ?? 0.5,
    jitter: jitterOptions(opts.jitter ?? [0.4, 0.4, 0.4, 0.1], opts.jitterProb ?? 0.8),
    grayscaleProb: opts.grayscaleProb ?? 0.2,
    blurProb: opts.blurProb ?? 0.5,
    blurSigma: opts.blurSigma,
    blurKernelSize: opts.blurKernelSize,
    solarizeProb: 0,
    flipLast: true,
  });
}

/**
 * BYOL (Grill et al. 2020, Table 6), asymmetric views: RandomResizedCrop(0.08-1), flip 0.5,
 * RandomApply(ColorJitter(0.4, 0.4, 0.2, 0.1), p=0.8), grayscale 0.2, blur p = 1.0 / 0.1,
 * solarize p = 0 / 0.2 for view 1 / view 2.
 */
export function byolTransforms(opts: ByolTransformOptions): [ViewTransform, ViewTransform] {
  const blurProbs = opts.blurProbs ?? [1.0, 0.1];
  const solarizeProbs = opts.solarizeProbs ?? [0, 0.2];
  const view = (i: 0 | 1) =>
    standardView("byolTransforms", {
      size: opts.size,
      channels: opts.channels,
      cropScale: opts.scale ?? [0.08, 1],
      cropRatio: opts.ratio,
      flipProb: opts.flipProb ?? 0.5,
      jitter: jitterOptions(opts.jitter ?? [0.4, 0.4, 0.2, 0.1], opts.jitterProb ?? 0.8),
      grayscaleProb: opts.grayscaleProb ?? 0.2,
      blurProb: blurProbs[i],
      blurSigma: opts.blurSigma,
      blurKernelSize: opts.blurKernelSize,
      solarizeProb: solarizeProbs[i],
    });
  return [view(0), view(1)];
}

/**
 * DINO multi-crop (Caron et al. 2021, main_dino.py DataAugmentationDINO): 2 global crops at
 * scale (0.4, 1) and N local crops at scale (0.05, 0.4) at a smaller size, each followed by
 * flip 0.5, RandomApply(ColorJitter(0.4, 0.4, 0.2, 0.1), p=0.8), grayscale 0.2; then
 * global 1: blur p=1.0; global 2: blur p=0.1 + solarize p=0.2; locals: blur p=0.5.
 * Returns [global1, global2, local1, ..., localN] (globals first).
 */
export function dinoMultiCrop(opts: DinoMultiCropOptions): MultiViewTransform {
  const fn = "dinoMultiCrop";
  if (opts == null || opts.globalSize == null) throw new Error(`${fn}: opts.globalSize is required`);
  const globalSide = typeof opts.globalSize === "number" ? opts.globalSize : Math.min(...opts.globalSize);
  const localSize = opts.localSize ?? Math.max(8, Math.round((globalSide * 96) / 224));
  const numLocal = opts.numLocalCrops ?? 8;
  if (!(Number.isInteger(numLocal) && numLocal >= 0)) throw new Error(`${fn}: numLocalCrops must be a non-negative integer, got ${numLocal}`);
  const blurProbs = opts.blurProbs ?? [1.0, 0.1, 0.5];
  const solarizeProbs = opts.solarizeProbs ?? [0, 0.2, 0];
  const jitter = jitterOptions(opts.jitter ?? [0.4, 0.4, 0.2, 0.1], opts.jitterProb ?? 0.8);
  const crop = (size: number | [number, number], scale: [number, number], which: 0 | 1 | 2) =>
    standardView(fn, {
      size,
      channels: opts.channels,
      cropScale: scale,
      cropRatio: opts.ratio,
      flipProb: opts.flipProb ?? 0.5,
      jitter,
      grayscaleProb: opts.grayscaleProb ?? 0.2,
      blurProb: blurProbs[which],
      blurSigma: opts.blurSigma,
      solarizeProb: solarizeProbs[which],
    });
  const globalScale = opts.globalScale ?? [0.4, 1];
  const localScale = opts.localScale ?? [0.05, 0.4];
  const views = [crop(opts.globalSize, globalScale, 0), crop(opts.globalSize, globalScale, 1)];
  for (let i = 0; i < numLocal; i++) views.push(crop(localSize, localScale, 2));
  return (images: tf.Tensor4D, rng: Rng) => {
    checkChannels(fn, images, opts.channels);
    const out: tf.Tensor4D[] = [];
    try {
      for (const view of views) out.push(view(images, rng));
    } catch (err) {
      tf.dispose(out);
      throw err;
    }
    return out;
  };
}
