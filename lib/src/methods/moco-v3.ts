/**
 * MoCo v3 (Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised Vision
 * Transformers"), Algorithm 1:
 *
 *   for x in loader:
 *     x1, x2 = aug(x), aug(x)                         two views (BYOL's asymmetric recipe)
 *     q1, q2 = g(h(f_q(x1))), g(h(f_q(x2)))           backbone f_q, projector h, predictor g
 *     k1, k2 = h_k(f_k(x1)), h_k(f_k(x2))             momentum encoder: backbone + projector, no grad
 *     loss = ctr(q1, k2) + ctr(q2, k1)                symmetrised
 *     update f_q, h, g;  f_k, h_k = m f_k, h_k + (1 - m) f_q, h      m: cosine from 0.99 to 1
 *   ctr(q, k) = CrossEntropy(q k^T / t, labels = arange(N)) * 2t    q, k l2-normalised; in-batch negatives
 *
 * No queue: the negatives are the other keys of the batch. The BatchNorms in the heads see each
 * view's batch on its own, as in the official code.
 *
 * Built to be extended (SDMP's MoCoV3SDMP): `query(x)`, `key(x)` and `contrastive(q, k)` are the
 * pieces of the loss, `queryViews` / `keyViews` the batched forms the step uses.
 */
import * as tf from "@tensorflow/tfjs-core";
import { byolTransforms } from "../augment";
import type { ByolTransformOptions, ViewTransform } from "../augment";
import { infoNceAccuracy, infoNceLoss } from "../losses/info-nce";
import type { Backbone } from "../nn/backbone";
import { Module } from "../nn/module";
import { PredictionHead, ProjectionHead, mocoV3ProjectionHead } from "../nn/heads";
import { noGrad } from "../nn/no-grad";
import { EmaUpdater } from "../train/ema";
import { cosineMomentum } from "../train/schedules";
import { MoCoEncoder } from "./moco";
import type { SSLMethod, StepContext, StepOutput } from "./types";

export interface MoCoV3Options {
  /** The online backbone f_q (a ViT in the paper; any Backbone works). */
  backbone: Backbone;
  /** A second instance of the same architecture for the momentum encoder f_k (its weights become f_q's). */
  keyBackbone: Backbone;
  /** Image [height, width, channels] (for the default views). */
  inputShape: [number, number, number];
  /** Temperature t (paper: 0.2 for ViT). */
  temperature?: number;
  /** Base momentum m0 of the cosine schedule m0 -> 1 (paper: 0.99). */
  momentum?: number;
  /** Projector h: 3 Linear-BN layers, hidden 4096, out 256 in the paper (the last BN without affine). */
  projectionHiddenDim?: number;
  projectionDim?: number;
  /** Predictor g: Linear-BN-ReLU-Linear, hidden (default projectionHiddenDim) -> projectionDim. */
  predictorHiddenDim?: number;
  /** RandomResizedCrop area range of the views (paper: [0.08, 1]). */
  cropScale?: [number, number];
  /** Options of the default byolTransforms (size/channels come from inputShape). */
  transformOptions?: Partial<ByolTransformOptions>;
  /** Custom [t1, t2] instead of byolTransforms. */
  transforms?: [ViewTransform, ViewTransform];
  /** Seed of the heads' initialisation. */
  seed?: number;
}

/** What the optimiser trains: backbone, projector and predictor. */
export class MoCoV3Online extends Module {
  constructor(
    readonly backbone: Backbone,
    readonly projector: ProjectionHead,
    readonly predictor: PredictionHead,
  ) {
    super();
    this.addChild("backbone", backbone);
    this.addChild("projector", projector);
    this.addChild("predictor", predictor);
  }
}

export class MoCoV3 implements SSLMethod {
  readonly name: string = "moco-v3";
  readonly backbone: Backbone;
  readonly trainable: MoCoV3Online;
  /** f_k and h_k: the EMA of backbone + projector (no predictor). */
  readonly momentumEncoder: MoCoEncoder;
  readonly temperature: number;
  readonly baseMomentum: number;
  readonly transforms: [ViewTransform, ViewTransform];
  protected readonly ema: EmaUpdater;

  constructor(opts: MoCoV3Options) {
    if (!opts?.backbone) throw new Error("MoCoV3: a backbone is required");
    if (!opts.keyBackbone || opts.keyBackbone === opts.backbone) throw new Error("MoCoV3: keyBackbone must be a second instance of the backbone's architecture");
    const [h, w, c] = opts.inputShape ?? [];
    if (![h, w, c].every((d) => Number.isInteger(d) && d > 0)) throw new Error(`MoCoV3: inputShape must be [height, width, channels], got ${JSON.stringify(opts.inputShape)}`);
    this.temperature = opts.temperature ?? 0.2;
    if (!(this.temperature > 0)) throw new Error(`MoCoV3: temperature must be positive, got ${this.temperature}`);
    this.baseMomentum = opts.momentum ?? 0.99;
    if (!(this.baseMomentum >= 0 && this.baseMomentum <= 1)) throw new Error(`MoCoV3: momentum must be in [0, 1], got ${this.baseMomentum}`);
    const hidden = opts.projectionHiddenDim ?? 4096;
    const dim = opts.projectionDim ?? 256;
    const seed = opts.seed ?? 0;
    this.backbone = opts.backbone;
    const projector = () => mocoV3ProjectionHead(opts.backbone.outputDim, hidden, dim, { seed });
    const predictor = new PredictionHead(dim, opts.predictorHiddenDim ?? hidden, dim, { seed: seed + 1, lastBias: false });
    this.trainable = new MoCoV3Online(opts.backbone, projector(), predictor);
    this.momentumEncoder = new MoCoEncoder(opts.keyBackbone, projector());
    this.momentumEncoder.setTrainable(false);
    this.ema = new EmaUpdater(new MoCoEncoder(this.trainable.backbone, this.trainable.projector), this.momentumEncoder);
    this.ema.copy();
    this.transforms = opts.transforms ?? byolTransforms({ scale: opts.cropScale ?? [0.08, 1], ...opts.transformOptions, size: [h, w], channels: c });
  }

  /** m(k) = 1 - (1 - m0)(cos(pi k / K) + 1) / 2: from m0 at the first step to 1 at the last. */
  momentumAt(step: number, totalSteps: number): number {
    return cosineMomentum(step, totalSteps, this.baseMomentum);
  }

  views(images: tf.Tensor4D, ctx: StepContext): tf.Tensor4D[] {
    return [this.transforms[0](images, ctx.rng), this.transforms[1](images, ctx.rng)];
  }

  /** q = g(h(f_q(x))): the online branch, with gradient. */
  query(x: tf.Tensor4D): tf.Tensor2D {
    return this.queryViews([x])[0];
  }

  /** k = h_k(f_k(x)): the momentum branch, without gradient. */
  key(x: tf.Tensor4D): tf.Tensor2D {
    return this.keyViews([x])[0];
  }

  /** ctr(q, k) = InfoNCE(q, k, in-batch negatives; t) * 2t. */
  contrastive(q: tf.Tensor2D, k: tf.Tensor2D): tf.Scalar {
    return tf.mul(infoNceLoss(q, k, null, this.temperature), 2 * this.temperature) as tf.Scalar;
  }

  /** Queries of several equal-size views: one backbone pass over all of them, the heads per view (BN per view). */
  queryViews(xs: tf.Tensor4D[]): tf.Tensor2D[] {
    const { backbone, projector, predictor } = this.trainable;
    return splitViews(backbone.forward(concatViews(xs)), xs.length).map((y) => predictor.forward(projector.forward(y)));
  }

  /** Keys of several equal-size views from the momentum encoder, off the gradient tape. */
  keyViews(xs: tf.Tensor4D[]): tf.Tensor2D[] {
    const { backbone, projector } = this.momentumEncoder;
    const n = xs[0].shape[0];
    const keys = noGrad(concatViews(xs), (x) => tf.concat(splitViews(backbone.forward(x), xs.length).map((y) => projector.forward(y)), 0) as tf.Tensor2D);
    return xs.length === 1 ? [keys] : (tf.split(keys, xs.map(() => n), 0) as tf.Tensor2D[]);
  }

  /** L = ctr(q1, k2) + ctr(q2, k1). */
  step([x1, x2]: tf.Tensor4D[], ctx: StepContext): StepOutput {
    const [q1, q2] = this.queryViews([x1, x2]);
    const [k1, k2] = this.keyViews([x1, x2]);
    const loss = tf.add(this.contrastive(q1, k2), this.contrastive(q2, k1)) as tf.Scalar;
    const acc = tf.div(tf.add(infoNceAccuracy(q1, k2, null), infoNceAccuracy(q2, k1, null)), 2) as tf.Scalar;
    return { loss, metrics: { contrastiveAcc: acc, momentum: tf.scalar(this.momentumAt(ctx.step, ctx.totalSteps)) }, embeddings: q1 };
  }

  /** After the optimiser step: f_k, h_k <- m f_k, h_k + (1 - m) f_q, h with this step's m. */
  afterStep(ctx: StepContext): void {
    this.ema.update(this.momentumAt(ctx.step, ctx.totalSteps));
  }

  stateModules(): Record<string, Module> {
    return { momentumEncoder: this.momentumEncoder };
  }

  dispose(): void {
    this.trainable.dispose();
    this.momentumEncoder.dispose();
  }
}

function concatViews(xs: tf.Tensor4D[]): tf.Tensor4D {
  if (xs.length === 0) throw new Error("MoCoV3: no views");
  if (xs.some((x) => x.shape.some((d, i) => d !== xs[0].shape[i]))) throw new Error(`MoCoV3: views must share one shape, got ${xs.map((x) => `[${x.shape}]`).join(", ")}`);
  return xs.length === 1 ? xs[0] : (tf.concat(xs, 0) as tf.Tensor4D);
}

function splitViews(y: tf.Tensor2D, count: number): tf.Tensor2D[] {
  return count === 1 ? [y] : (tf.split(y, count, 0) as tf.Tensor2D[]);
}
