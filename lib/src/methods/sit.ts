/**
 * SiT / GMML (Atito, Awais, Kittler 2021, "SiT: Self-supervised vIsion Transformer",
 * arXiv 2104.03602), sec. 3.2-3.3:
 *
 *   for each minibatch {x}:  x1 = t(x), x2 = t'(x)                      two augmented (clean) views
 *                            x1_bar, x2_bar = GMML(x1), GMML(x2)         corrupted groups of pixels
 *                            cls, tokens = ViT(x_bar)                    the student sees the corrupted views
 *                            L_recons = l1(D(tokens), x) on the corrupted pixels       (sec. 3.2.1)
 *                            q = g(cls);  k = g_m(ViT_m(x))              contrastive token; momentum teacher on clean views
 *                            L_contr = [NT-Xent(q1, k2) + NT-Xent(q2, k1)] / 2, tau = 0.2   (sec. 3.2.2-3.2.3)
 *                            L = alpha L_recons + L_contr                (sec. 3.3; alpha = 5 on small data)
 *                            theta_m <- m theta_m + (1 - m) theta,  m: cosine 0.996 -> 1   (sec. 4.1.3)
 *
 * The contrastive token is the ViT's class token. With `contrastive: false` only one corrupted
 * view is made and L = alpha L_recons (the paper's reconstruction-only ablation).
 */
import * as tf from "@tensorflow/tfjs-core";
import { GMML_CORRUPTION_TYPES, gmmlCorrupt, simclrTransform } from "../augment";
import type { GmmlCorruptionType, SimclrTransformOptions, ViewTransform } from "../augment";
import { contrastiveAccuracy, maskedL1Loss, ntXentLoss } from "../losses";
import { Backbone } from "../nn/backbone";
import { ProjectedEncoder, ProjectionHead } from "../nn/heads";
import { Module } from "../nn/module";
import { noGrad } from "../nn/no-grad";
import { ReconstructionHead } from "../nn/recon-head";
import { ViT } from "../nn/vit";
import { Rng } from "../random";
import { EmaUpdater } from "../train/ema";
import { cosineMomentum } from "../train/schedules";
import type { SSLMethod, StepContext, StepOutput } from "./types";

export interface SiTOptions {
  /** The ViT encoder (its patch tokens feed the reconstruction head, its class token the contrastive head). */
  backbone: ViT;
  /** Image [height, width, channels]. */
  inputShape: [number, number, number];
  /** GMML corruption type (default "noise+replace", the paper's best). */
  corruption?: GmmlCorruptionType;
  /** Share of each view's pixels corrupted, in (0, 1) (default 0.5; the paper's best is 0.5-0.7). */
  corruptionRatio?: number;
  /** Contrastive token with a momentum teacher (default true). */
  contrastive?: boolean;
  /** Weight alpha of the reconstruction loss (default 5, the paper's for small data). */
  alpha?: number;
  /** NT-Xent temperature (default 0.2, the paper's). */
  temperature?: number;
  /** Base momentum of the teacher's EMA, rising on a cosine to 1 (default 0.996). */
  momentum?: number;
  /** Contrastive head: Linear-BN-GELU-Linear-BN-GELU-Linear (paper: 4096, 4096, 256). */
  projectionHiddenDim?: number;
  projectionDim?: number;
  /** Hidden width of the reconstruction head (default: the ViT's width, as the official RECHead). */
  reconHiddenDim?: number;
  /** RandomResizedCrop area range of the default view transform (default [0.3, 1]). */
  cropScale?: [number, number];
  transformOptions?: Partial<SimclrTransformOptions>;
  /** A custom clean-view augmentation instead of simclrTransform's "cifar" variant. */
  transform?: ViewTransform;
  /** The momentum teacher's ViT (default: a new ViT of the backbone's architecture; its weights are copied). */
  targetBackbone?: ViT;
  /** Seed of the heads' initialisation. */
  seed?: number;
}

const SIT_DEFAULTS = { corruption: "noise+replace" as GmmlCorruptionType, corruptionRatio: 0.5, alpha: 5, temperature: 0.2, momentum: 0.996 };

/** The contrastive head g of the paper's sec. 4.1.3 (BatchNorm + GELU hidden layers). */
export function sitContrastiveHead(inDim: number, hiddenDim: number, outDim: number, rng: Rng): ProjectionHead {
  return new ProjectionHead(
    [
      { inDim, outDim: hiddenDim, batchNorm: true, nonlinearity: "gelu" },
      { inDim: hiddenDim, outDim: hiddenDim, batchNorm: true, nonlinearity: "gelu" },
      { inDim: hiddenDim, outDim },
    ],
    { rng },
  );
}

/** What the optimiser trains: the ViT, the reconstruction head D and (with the contrastive token) g. */
export class SiTModel extends Module {
  constructor(
    readonly backbone: ViT,
    readonly reconHead: ReconstructionHead,
    readonly projector: ProjectionHead | null,
  ) {
    super();
    this.addChild("backbone", backbone);
    this.addChild("reconHead", reconHead);
    if (projector) this.addChild("projector", projector);
  }
}

/** The momentum teacher: EMA copies of the ViT and the contrastive head (checkpointed as state). */
export class SiTTeacher extends ProjectedEncoder<ViT> {}

/** A ViT read out as the mean of its final patch tokens (an evaluation alternative to the class token). */
export class PatchMeanEncoder extends Backbone {
  readonly outputDim: number;
  constructor(readonly vit: ViT) {
    super();
    this.outputDim = vit.dim;
  }
  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.mean(this.vit.forwardTokens(x).patches, 1) as tf.Tensor2D;
  }
}

export class SiT implements SSLMethod {
  readonly name = "sit";
  readonly backbone: ViT;
  readonly trainable: SiTModel;
  readonly teacher: SiTTeacher | null;
  readonly transform: ViewTransform;
  readonly corruption: GmmlCorruptionType;
  readonly corruptionRatio: number;
  readonly contrastive: boolean;
  readonly alpha: number;
  readonly temperature: number;
  readonly momentum: number;
  private readonly ema: EmaUpdater[] = [];

  constructor(opts: SiTOptions) {
    if (!(opts?.backbone instanceof ViT)) throw new Error("SiT: the backbone must be a ViT (its patch tokens are reconstructed), e.g. --backbone vit-tiny");
    const [h, w, c] = opts.inputShape ?? [];
    if (![h, w, c].every((d) => Number.isInteger(d) && d > 0)) throw new Error(`SiT: inputShape must be [height, width, channels], got ${JSON.stringify(opts.inputShape)}`);
    const vit = opts.backbone;
    if (vit.imageSize[0] !== h || vit.imageSize[1] !== w || vit.inChannels !== c) throw new Error(`SiT: the ViT takes ${vit.imageSize.join("x")}x${vit.inChannels} images, inputShape is ${h}x${w}x${c}`);
    const d = SIT_DEFAULTS;
    const o = { corruption: opts.corruption ?? d.corruption, corruptionRatio: opts.corruptionRatio ?? d.corruptionRatio, alpha: opts.alpha ?? d.alpha, temperature: opts.temperature ?? d.temperature, momentum: opts.momentum ?? d.momentum };
    if (!(GMML_CORRUPTION_TYPES as readonly string[]).includes(o.corruption)) throw new Error(`SiT: corruption must be one of ${GMML_CORRUPTION_TYPES.join(", ")}, got '${o.corruption}'`);
    if (!(o.corruptionRatio > 0 && o.corruptionRatio < 1)) throw new Error(`SiT: corruptionRatio must be in (0, 1), got ${o.corruptionRatio}`);
    if (!(o.alpha > 0)) throw new Error(`SiT: alpha must be positive, got ${o.alpha}`);
    if (!(o.temperature > 0)) throw new Error(`SiT: temperature must be positive, got ${o.temperature}`);
    if (!(o.momentum >= 0 && o.momentum <= 1)) throw new Error(`SiT: momentum must be in [0, 1], got ${o.momentum}`);
    this.corruption = o.corruption;
    this.corruptionRatio = o.corruptionRatio;
    this.contrastive = opts.contrastive ?? true;
    this.alpha = o.alpha;
    this.temperature = o.temperature;
    this.momentum = o.momentum;
    this.backbone = vit;
    const rng = new Rng(opts.seed ?? 0);
    const reconHead = new ReconstructionHead(vit.dim, vit.patchSize, c, vit.gridSize, { hiddenDim: opts.reconHiddenDim, rng });
    const [hidden, out] = [opts.projectionHiddenDim ?? 512, opts.projectionDim ?? 128];
    const projector = this.contrastive ? sitContrastiveHead(vit.dim, hidden, out, rng) : null;
    this.trainable = new SiTModel(vit, reconHead, projector);
    this.teacher = null;
    if (projector) {
      const targetVit = opts.targetBackbone ?? new ViT({ imageSize: vit.imageSize, inChannels: c, patchSize: vit.patchSize, dim: vit.dim, depth: vit.depth, heads: vit.heads, mlpRatio: vit.mlpRatio, posEmbed: vit.posEmbedKind });
      this.teacher = new SiTTeacher(targetVit, sitContrastiveHead(vit.dim, hidden, out, new Rng(0))).setTrainable(false);
      this.ema = [new EmaUpdater(vit, targetVit), new EmaUpdater(projector, this.teacher.projector)];
      for (const e of this.ema) e.copy(); // theta_m <- theta at the start
    }
    this.transform =
      opts.transform ?? simclrTransform({ variant: "cifar", scale: opts.cropScale ?? [0.3, 1], ...opts.transformOptions, size: [h, w], channels: c });
  }

  /** GMML on one clean view (this method's type and ratio unless overridden): { corrupted, mask }. */
  corrupt(view: tf.Tensor4D, rng: Rng, opts: { type?: GmmlCorruptionType; ratio?: number } = {}): { corrupted: tf.Tensor4D; mask: tf.Tensor4D } {
    const { corrupted, mask } = gmmlCorrupt(view, rng, { type: opts.type ?? this.corruption, ratio: opts.ratio ?? this.corruptionRatio });
    return { corrupted, mask };
  }

  /** [clean1, (clean2,) corrupted1, (corrupted2,) mask1, (mask2)]: two views with the contrastive token, one without. */
  views(images: tf.Tensor4D, ctx: StepContext): tf.Tensor4D[] {
    const clean = (this.contrastive ? [0, 1] : [0]).map(() => this.transform(images, ctx.rng));
    const corrupted = clean.map((v) => this.corrupt(v, ctx.rng));
    return [...clean, ...corrupted.map((x) => x.corrupted), ...corrupted.map((x) => x.mask)];
  }

  step(views: tf.Tensor4D[], _ctx: StepContext): StepOutput {
    const k = views.length / 3;
    const cat = (vs: tf.Tensor4D[]) => (vs.length === 1 ? vs[0] : (tf.concat(vs, 0) as tf.Tensor4D));
    const [clean, corrupted, mask] = [cat(views.slice(0, k)), cat(views.slice(k, 2 * k)), cat(views.slice(2 * k))];
    const { cls, patches } = this.backbone.forwardTokens(corrupted);
    const recon = maskedL1Loss(this.trainable.reconHead.forward(patches), clean, mask); // L_recons
    const weighted = tf.mul(recon, this.alpha) as tf.Scalar;
    if (!this.teacher || !this.trainable.projector) {
      return { loss: weighted, metrics: { recon }, embeddings: tf.mean(patches, 1) as tf.Tensor2D };
    }
    const n = views[0].shape[0];
    const [q1, q2] = tf.split(this.trainable.projector.forward(cls), [n, n], 0) as [tf.Tensor2D, tf.Tensor2D];
    const teacher = this.teacher;
    const [k1, k2] = tf.split(noGrad(clean, (x) => teacher.forward(x)), [n, n], 0) as [tf.Tensor2D, tf.Tensor2D];
    const contr = tf.div(tf.add(ntXentLoss(q1, k2, this.temperature), ntXentLoss(q2, k1, this.temperature)), 2) as tf.Scalar;
    return {
      loss: tf.add(weighted, contr) as tf.Scalar, // L = alpha L_recons + L_contr
      metrics: { recon, contrastive: contr, contrastiveAcc: contrastiveAccuracy(q1, k2) },
      embeddings: q1,
    };
  }

  /** theta_m <- m theta_m + (1 - m) theta with m on BYOL's cosine schedule from `momentum` to 1. */
  afterStep(ctx: StepContext): void {
    const m = cosineMomentum(ctx.step, ctx.totalSteps, this.momentum);
    for (const e of this.ema) e.update(m);
  }

  stateModules(): Record<string, Module> {
    return this.teacher ? { teacher: this.teacher } : {};
  }

  /**
   * For galleries: corrupt `images` with this method's GMML settings (or `opts`) and reconstruct
   * them (eval mode, clipped to [0, 1]). `pasted` is the reconstruction inside the mask and the
   * input outside it.
   */
  reconstruct(
    images: tf.Tensor4D,
    rng: Rng,
    opts: { type?: GmmlCorruptionType; ratio?: number } = {},
  ): { corrupted: tf.Tensor4D; mask: tf.Tensor4D; reconstruction: tf.Tensor4D; pasted: tf.Tensor4D } {
    const wasTraining = this.trainable.training;
    this.trainable.eval();
    try {
      return tf.tidy(() => {
        const { corrupted, mask } = this.corrupt(images, rng, opts);
        const reconstruction = tf.clipByValue(this.trainable.reconHead.forward(this.backbone.forwardTokens(corrupted).patches), 0, 1) as tf.Tensor4D;
        const pasted = tf.add(tf.mul(reconstruction, mask), tf.mul(images, tf.sub(1, mask))) as tf.Tensor4D;
        return { corrupted, mask, reconstruction, pasted };
      });
    } finally {
      this.trainable.train(wasTraining);
    }
  }

  dispose(): void {
    this.trainable.dispose();
    this.teacher?.dispose();
  }
}
