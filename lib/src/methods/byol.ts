/**
 * BYOL (Grill et al. 2020, "Bootstrap Your Own Latent"), sec. 3.1 and Algorithm 1:
 *
 *   v = t(x), v' = t'(x)                       two asymmetric views (t: blur 1.0; t': blur 0.1, solarize 0.2)
 *   online  theta: y = f(v), z = g(y), p = q(z)  encoder, projector, predictor
 *   target  xi:    z' = g_xi(f_xi(v'))           no predictor, no gradient (sg)
 *   L = ||p/|p| - sg(z')/|z'|||^2 + (v <-> v')   eq. 2, symmetrised
 *   theta <- opt(theta, grad L);  xi <- tau xi + (1 - tau) theta,
 *   tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2      (sec. 3.2; from tau_base to 1)
 *
 * The ablations of Table 5: tau_base = 1 keeps the target at its random initialisation (the
 * online network's initial weights); tau_base = 0 is "no target network": the target is the
 * online network itself under a stop-gradient. The two are the same thing: with tau = 0 the EMA
 * copies the online weights after every step, so the target computes exactly the online
 * projection of the same batch (the paper reports 0.3% for both). With tau_base = 0 the method
 * therefore keeps no target copy and uses sg(z) of the online forward pass, and tau stays 0
 * throughout (as the paper's footnote to Table 5a). `predictor: false` makes q the identity.
 */
import * as tf from "@tensorflow/tfjs-core";
import { byolTransforms } from "../augment";
import type { ByolTransformOptions, ViewTransform } from "../augment";
import { byolLoss } from "../losses/byol";
import type { Backbone } from "../nn/backbone";
import { Module } from "../nn/module";
import { PredictionHead, ProjectedEncoder, ProjectionHead, byolProjectionHead } from "../nn/heads";
import { noGrad } from "../nn/no-grad";
import { EmaUpdater } from "../train/ema";
import { cosineMomentum } from "../train/schedules";
import type { SSLMethod, StepContext, StepOutput } from "./types";

export interface BYOLOptions {
  /** The online encoder f_theta (the representation that is evaluated). */
  backbone: Backbone;
  /**
   * A second instance of the same architecture for the target encoder f_xi; its weights are
   * replaced by a copy of the online backbone's. Required unless targetMomentum is 0.
   */
  targetBackbone?: Backbone;
  /** Image [height, width, channels] (for the default views). */
  inputShape: [number, number, number];
  /** Projector g: Linear(D, hidden)-BN-ReLU-Linear(hidden, out) (paper: 4096, 256). */
  projectionHiddenDim?: number;
  projectionDim?: number;
  /** Predictor q: Linear(out, hidden)-BN-ReLU-Linear(hidden, out); hidden defaults to projectionHiddenDim. */
  predictorHiddenDim?: number;
  /** tau_base in [0, 1] (paper: 0.996). 0: no target network (sg of the online net); 1: a fixed random target. */
  targetMomentum?: number;
  /** false: no predictor (q = identity), the collapse ablation. Default true. */
  predictor?: boolean;
  /** RandomResizedCrop area range of the views (paper: [0.08, 1]). */
  cropScale?: [number, number];
  /** Options of the default byolTransforms (size/channels come from inputShape). */
  transformOptions?: Partial<ByolTransformOptions>;
  /** Custom [t, t'] instead of byolTransforms. */
  transforms?: [ViewTransform, ViewTransform];
  /** Seed of the heads' initialisation. */
  seed?: number;
}

/** y = f(x), z = g(y): the online and the target networks share this shape. */
export class BYOLEncoder extends ProjectedEncoder {}

/** What the optimiser trains: f, g and q (theta). */
export class BYOLOnline extends Module {
  constructor(
    readonly backbone: Backbone,
    readonly projector: ProjectionHead,
    readonly predictor: PredictionHead | null,
  ) {
    super();
    this.addChild("backbone", backbone);
    this.addChild("projector", projector);
    if (predictor) this.addChild("predictor", predictor);
  }
}

export class BYOL implements SSLMethod {
  readonly name = "byol";
  readonly backbone: Backbone;
  readonly trainable: BYOLOnline;
  /** xi: the EMA target f_xi, g_xi; null when targetMomentum = 0 (the online network is the target). */
  readonly target: BYOLEncoder | null;
  readonly targetMomentum: number;
  readonly transforms: [ViewTransform, ViewTransform];
  private readonly online: BYOLEncoder;
  private readonly ema: EmaUpdater | null;

  constructor(opts: BYOLOptions) {
    if (!opts?.backbone) throw new Error("BYOL: a backbone is required");
    const [h, w, c] = opts.inputShape ?? [];
    if (![h, w, c].every((d) => Number.isInteger(d) && d > 0)) throw new Error(`BYOL: inputShape must be [height, width, channels], got ${JSON.stringify(opts.inputShape)}`);
    const tauBase = opts.targetMomentum ?? 0.996;
    if (!(typeof tauBase === "number" && tauBase >= 0 && tauBase <= 1)) throw new Error(`BYOL: targetMomentum (tau_base) must be a number in [0, 1], got ${String(opts.targetMomentum)}`);
    if (tauBase > 0 && !opts.targetBackbone) throw new Error(`BYOL: targetMomentum ${tauBase} needs a targetBackbone (a second instance of the backbone's architecture)`);
    if (tauBase === 0 && opts.targetBackbone) throw new Error("BYOL: targetMomentum 0 means no target network (the online network under a stop-gradient); do not pass a targetBackbone");
    if (opts.targetBackbone === opts.backbone) throw new Error("BYOL: targetBackbone must be a separate instance, not the online backbone");
    const hidden = opts.projectionHiddenDim ?? 4096;
    const dim = opts.projectionDim ?? 256;
    const seed = opts.seed ?? 0;
    this.backbone = opts.backbone;
    this.targetMomentum = tauBase;
    const projector = byolProjectionHead(opts.backbone.outputDim, hidden, dim, { seed });
    const predictor = opts.predictor === false ? null : new PredictionHead(dim, opts.predictorHiddenDim ?? hidden, dim, { seed: seed + 1 });
    this.trainable = new BYOLOnline(opts.backbone, projector, predictor);
    this.online = new BYOLEncoder(opts.backbone, projector);
    if (opts.targetBackbone) {
      const targetProjector = byolProjectionHead(opts.targetBackbone.outputDim, hidden, dim, { seed });
      this.target = new BYOLEncoder(opts.targetBackbone, targetProjector).setTrainable(false);
      try {
        this.ema = new EmaUpdater(this.online, this.target); // checks that the two architectures match
      } catch (err) {
        [projector, predictor, targetProjector].forEach((m) => m?.dispose());
        throw err;
      }
      this.ema.copy(); // xi <- theta at initialisation
    } else {
      this.target = null;
      this.ema = null;
    }
    this.transforms =
      opts.transforms ?? byolTransforms({ scale: opts.cropScale ?? [0.08, 1], ...opts.transformOptions, size: [h, w], channels: c });
  }

  /** tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2; 0 throughout when tau_base = 0. */
  momentumAt(step: number, totalSteps: number): number {
    return this.targetMomentum === 0 ? 0 : cosineMomentum(step, totalSteps, this.targetMomentum);
  }

  /** The asymmetric pair t(x), t'(x). */
  views(images: tf.Tensor4D, ctx: StepContext): tf.Tensor4D[] {
    return [this.transforms[0](images, ctx.rng), this.transforms[1](images, ctx.rng)];
  }

  /** L = byol(q(z1), sg(z2')) + byol(q(z2), sg(z1')); both views go through each network as one batch of 2N. */
  step([view1, view2]: tf.Tensor4D[], ctx: StepContext): StepOutput {
    const n = view1.shape[0];
    const x = tf.concat([view1, view2], 0) as tf.Tensor4D;
    const z = this.online.forward(x);
    const p = this.trainable.predictor ? this.trainable.predictor.forward(z) : z;
    const target = this.target;
    const zt = target ? noGrad(x, (v) => target.forward(v)) : noGrad(z, (v) => tf.clone(v));
    const [p1, p2] = tf.split(p, [n, n], 0) as [tf.Tensor2D, tf.Tensor2D];
    const [zt1, zt2] = tf.split(zt, [n, n], 0) as [tf.Tensor2D, tf.Tensor2D];
    const loss = tf.add(byolLoss(p1, zt2), byolLoss(p2, zt1)) as tf.Scalar;
    const [z1] = tf.split(z, [n, n], 0) as [tf.Tensor2D, tf.Tensor2D];
    return { loss, metrics: { tau: tf.scalar(this.momentumAt(ctx.step, ctx.totalSteps)) }, embeddings: z1 };
  }

  /** xi <- tau_k xi + (1 - tau_k) theta after the optimiser's update of step k (nothing to do at tau = 1). */
  afterStep(ctx: StepContext): void {
    if (!this.ema) return;
    const tau = this.momentumAt(ctx.step, ctx.totalSteps);
    if (tau < 1) this.ema.update(tau);
  }

  /** The target network is checkpointed, so a resumed run continues exactly. */
  stateModules(): Record<string, Module> {
    return this.target ? { target: this.target } : {};
  }

  dispose(): void {
    this.trainable.dispose();
    this.target?.dispose();
  }
}
