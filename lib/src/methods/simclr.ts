/**
 * SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
 * Representations"), Algorithm 1:
 *
 *   for each minibatch {x_k}:  x~ = t(x), x~' = t'(x)        two augmented views per image
 *                              h = f(x~), z = g(h)            encoder f, projection head g
 *                              L = NT-Xent(z, z'; tau)         eq. 1 over all 2N anchors
 *                              update f and g to minimise L
 *   return f (throw away g)
 */
import * as tf from "@tensorflow/tfjs-core";
import { simclrTransform } from "../augment";
import type { SimclrTransformOptions, ViewTransform } from "../augment";
import { contrastiveAccuracy, ntXentLoss } from "../losses";
import type { Backbone } from "../nn/backbone";
import { ProjectedEncoder, ProjectionHead, simclrProjectionHead } from "../nn/heads";
import type { SSLMethod, StepContext, StepOutput } from "./types";

export interface SimCLROptions {
  /** The encoder f. */
  backbone: Backbone;
  /** Image [height, width, channels] (for the default view transform). */
  inputShape: [number, number, number];
  /** NT-Xent temperature tau (paper: 0.5 for CIFAR-10; 0.1-0.2 for small batches). */
  temperature?: number;
  /** Projection head g: Linear(D, hidden)-BN-ReLU-Linear(hidden, out). */
  projectionHiddenDim?: number;
  projectionDim?: number;
  /** RandomResizedCrop area range of the default transform (paper: [0.08, 1]). */
  cropScale?: [number, number];
  /**
   * Options of the default augmentation simclrTransform (size/channels come from inputShape).
   * Default variant: "cifar" (colour strength 0.5, no blur; SimCLR's CIFAR-10 setting) for
   * images up to 64 px, "imagenet" above.
   */
  transformOptions?: Partial<SimclrTransformOptions>;
  /** A custom augmentation t ~ T instead of simclrTransform. */
  transform?: ViewTransform;
  /** Seed of the projection head's initialisation. */
  seed?: number;
}

/** f and g together: what the optimiser trains. */
export class SimCLRModel extends ProjectedEncoder {}

export class SimCLR implements SSLMethod {
  readonly name = "simclr";
  readonly backbone: Backbone;
  readonly trainable: SimCLRModel;
  readonly temperature: number;
  readonly transform: ViewTransform;

  constructor(opts: SimCLROptions) {
    if (!opts?.backbone) throw new Error("SimCLR: a backbone is required");
    const [h, w, c] = opts.inputShape ?? [];
    if (![h, w, c].every((d) => Number.isInteger(d) && d > 0)) throw new Error(`SimCLR: inputShape must be [height, width, channels], got ${JSON.stringify(opts.inputShape)}`);
    this.temperature = opts.temperature ?? 0.5;
    if (!(this.temperature > 0)) throw new Error(`SimCLR: temperature must be positive, got ${this.temperature}`);
    this.backbone = opts.backbone;
    const projector = simclrProjectionHead(opts.backbone.outputDim, opts.projectionHiddenDim ?? 2048, opts.projectionDim ?? 128, { seed: opts.seed ?? 0 });
    this.trainable = new SimCLRModel(opts.backbone, projector);
    this.transform =
      opts.transform ??
      simclrTransform({ variant: Math.max(h, w) <= 64 ? "cifar" : "imagenet", scale: opts.cropScale ?? [0.08, 1], ...opts.transformOptions, size: [h, w], channels: c });
  }

  /** Two independently augmented views t(x), t'(x) of every image. */
  views(images: tf.Tensor4D, ctx: StepContext): tf.Tensor4D[] {
    return [this.transform(images, ctx.rng), this.transform(images, ctx.rng)];
  }

  /** L = NT-Xent(g(f(x~)), g(f(x~')); tau); both views go through f and g as one batch of 2N. */
  step([view1, view2]: tf.Tensor4D[], _ctx: StepContext): StepOutput {
    const n = view1.shape[0];
    const z = this.trainable.forward(tf.concat([view1, view2], 0) as tf.Tensor4D);
    const [z1, z2] = tf.split(z, [n, n], 0) as [tf.Tensor2D, tf.Tensor2D];
    const loss = ntXentLoss(z1, z2, this.temperature);
    return { loss, metrics: { contrastiveAcc: contrastiveAccuracy(z1, z2) }, embeddings: z1 };
  }

  dispose(): void {
    this.trainable.dispose();
  }
}
