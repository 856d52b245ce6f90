/**
 * MoCo v1 (He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning"),
 * Algorithm 1, and MoCo v2 (Chen et al. 2020, "Improved Baselines with Momentum Contrastive Learning"):
 *
 *   f_k.params = f_q.params                          initialise the key encoder
 *   for x in loader:
 *     x_q, x_k = aug(x), aug(x)                      two random views
 *     q = f_q(x_q);  k = f_k(x_k).detach()           keys carry no gradient (shuffling BN: sec. 3.3)
 *     loss = InfoNCE(q, k, queue; t)                 eq. 1: logits [q.k, q.queue^T] / t, positive at 0
 *     update f_q                                     (the trainer's optimiser step)
 *     f_k.params = m f_k.params + (1 - m) f_q.params momentum update, eq. 2   } afterStep, AFTER the
 *     enqueue(queue, k); dequeue(queue)              the oldest keys leave   } loss used the old queue
 *
 * v2 = v1 with an MLP head (fc-ReLU-fc), blur in the augmentation, t = 0.2 and a cosine learning rate.
 * `queueSize: 0` is MoCo's "end-to-end" mechanism (Fig. 2a / 3): no queue and no key encoder; the
 * keys come from the query encoder itself WITH gradient (back-propagated into both branches) and
 * the negatives are the batch's other keys (K = N - 1).
 */
import * as tf from "@tensorflow/tfjs-core";
import { mocoV2Transform, simclrTransform } from "../augment";
import type { ViewTransform } from "../augment";
import { infoNceAccuracy, infoNceLoss } from "../losses/info-nce";
import type { Backbone } from "../nn/backbone";
import { Module } from "../nn/module";
import { Linear } from "../nn/layers";
import { noGrad } from "../nn/no-grad";
import { mocoV2ProjectionHead } from "../nn/heads";
import { groupShuffle, permuteRows } from "../nn/split-batch-norm";
import { Rng } from "../random";
import { EmaUpdater } from "../train/ema";
import { KeyQueue } from "../train/key-queue";
import type { SSLMethod, StepContext, StepOutput } from "./types";

export interface MoCoOptions {
  /** The query encoder f_q (the representation that is evaluated). */
  backbone: Backbone;
  /** A second instance of the same architecture for the key encoder f_k (its weights become f_q's). Needed unless queueSize is 0. */
  keyBackbone?: Backbone;
  /** Image [height, width, channels] (for the default views). */
  inputShape: [number, number, number];
  /** InfoNCE temperature t (v1: 0.07, v2: 0.2). */
  temperature?: number;
  /** K keys in the queue (paper 65536, CIFAR demo 4096); 0 = end-to-end (see above). */
  queueSize?: number;
  /** Key-encoder momentum m (paper 0.999; 0 copies f_q into f_k after every step). */
  momentum?: number;
  /** Shuffle the key batch across the backbone's BatchNorm groups (`bnSplits`) and put it back after. */
  shuffleBn?: boolean;
  /** The number of SplitBatchNorm groups the backbone was built with (the shuffle's groups); 1 = plain BN. */
  bnSplits?: number;
  /** Head: "linear" (v1: fc D -> 128) or "mlp" (v2: fc D -> hidden, ReLU, fc -> 128). Default by version. */
  head?: "linear" | "mlp";
  projectionDim?: number;
  /** Hidden width of the v2 MLP head (default: the backbone's width, as the official code). */
  projectionHiddenDim?: number;
  /** RandomResizedCrop area range of the views (MoCo: [0.2, 1]). */
  cropScale?: [number, number];
  /** A custom augmentation instead of the version's recipe. */
  transform?: ViewTransform;
  /** Seed of the head and of the queue's initial keys. */
  seed?: number;
}

/** f(x) projected: the query and key encoders share this shape. */
export class MoCoEncoder extends Module {
  constructor(
    readonly backbone: Backbone,
    readonly projector: Module & { forward(x: tf.Tensor2D): tf.Tensor2D },
  ) {
    super();
    this.addChild("backbone", backbone);
    this.addChild("projector", projector);
  }

  forward(x: tf.Tensor4D): tf.Tensor2D {
    return this.projector.forward(this.backbone.forward(x));
  }
}

/** The v1 view (main_moco.py without --aug-plus): crop 0.2-1, grayscale 0.2, ColorJitter(0.4, 0.4, 0.4, 0.4), flip. */
export function mocoV1Transform(size: [number, number], channels: number, scale: [number, number] = [0.2, 1]): ViewTransform {
  return simclrTransform({ size, channels, scale, jitter: [0.4, 0.4, 0.4, 0.4], jitterProb: 1, grayscaleProb: 0.2, blurProb: 0 });
}

export class MoCoV1 implements SSLMethod {
  readonly name: string = "moco-v1";
  readonly backbone: Backbone;
  /** f_q and its head: what the optimiser trains. */
  readonly trainable: MoCoEncoder;
  /** f_k and its head (EMA of f_q); null end-to-end. */
  readonly keyEncoder: MoCoEncoder | null;
  /** The dictionary; null end-to-end. */
  readonly queue: KeyQueue | null;
  readonly temperature: number;
  readonly momentum: number;
  readonly shuffleBn: boolean;
  readonly bnSplits: number;
  readonly transform: ViewTransform;
  private readonly ema: EmaUpdater | null;
  /** This step's keys, enqueued by afterStep. */
  private pendingKeys: tf.Tensor2D | null = null;

  constructor(opts: MoCoOptions, version: 1 | 2 = 1) {
    const who = `MoCoV${version}`;
    if (!opts?.backbone) throw new Error(`${who}: a backbone is required`);
    const [h, w, c] = opts.inputShape ?? [];
    if (![h, w, c].every((d) => Number.isInteger(d) && d > 0)) throw new Error(`${who}: inputShape must be [height, width, channels], got ${JSON.stringify(opts.inputShape)}`);
    this.temperature = opts.temperature ?? (version === 1 ? 0.07 : 0.2);
    if (!(this.temperature > 0)) throw new Error(`${who}: temperature must be positive, got ${this.temperature}`);
    const queueSize = opts.queueSize ?? 65536;
    if (!(Number.isInteger(queueSize) && queueSize >= 0)) throw new Error(`${who}: queueSize must be an integer >= 0 (0 = end-to-end), got ${queueSize}`);
    this.momentum = opts.momentum ?? 0.999;
    if (!(this.momentum >= 0 && this.momentum <= 1)) throw new Error(`${who}: momentum must be in [0, 1], got ${this.momentum}`);
    this.bnSplits = opts.bnSplits ?? 1;
    if (!(Number.isInteger(this.bnSplits) && this.bnSplits >= 1)) throw new Error(`${who}: bnSplits must be a positive integer, got ${this.bnSplits}`);
    this.shuffleBn = opts.shuffleBn ?? true;
    if (queueSize > 0 && !opts.keyBackbone) throw new Error(`${who}: a queue needs a keyBackbone (a second instance of the backbone's architecture)`);
    if (opts.keyBackbone && opts.keyBackbone === opts.backbone) throw new Error(`${who}: keyBackbone must be a separate instance, not the query backbone`);
    if (queueSize === 0 && opts.keyBackbone) throw new Error(`${who}: queueSize 0 (end-to-end) encodes keys with the query encoder; do not pass a keyBackbone`);

    const seed = opts.seed ?? 0;
    const dim = opts.projectionDim ?? 128;
    const d = opts.backbone.outputDim;
    const hidden = opts.projectionHiddenDim ?? d;
    const mlp = (opts.head ?? (version === 1 ? "linear" : "mlp")) === "mlp";
    const head = (): Module & { forward(x: tf.Tensor2D): tf.Tensor2D } =>
      mlp ? mocoV2ProjectionHead(d, hidden, dim, { seed }) : new Linear(d, dim, { rng: new Rng(seed) });
    this.backbone = opts.backbone;
    this.trainable = new MoCoEncoder(opts.backbone, head());
    if (queueSize > 0) {
      this.keyEncoder = new MoCoEncoder(opts.keyBackbone!, head());
      this.keyEncoder.setTrainable(false);
      this.ema = new EmaUpdater(this.trainable, this.keyEncoder); // checks the two architectures match
      this.ema.copy(); // f_k.params = f_q.params
      this.queue = new KeyQueue(queueSize, dim, { seed: seed + 1 });
    } else {
      this.keyEncoder = null;
      this.ema = null;
      this.queue = null;
    }
    const scale = opts.cropScale ?? [0.2, 1];
    this.transform = opts.transform ?? (version === 1 ? mocoV1Transform([h, w], c, scale) : mocoV2Transform({ size: [h, w], channels: c, scale }));
  }

  /** Two independently augmented views: x_q, x_k. */
  views(images: tf.Tensor4D, ctx: StepContext): tf.Tensor4D[] {
    return [this.transform(images, ctx.rng), this.transform(images, ctx.rng)];
  }

  /** k = unshuffle(f(shuffle(x_k))) with f = f_k (no gradient) or, end-to-end, f_q (with gradient). */
  keys(xk: tf.Tensor4D, rng: Rng): tf.Tensor2D {
    const shuffle = this.shuffleBn && this.bnSplits > 1 ? groupShuffle(xk.shape[0], this.bnSplits, rng) : null;
    const encode = (x: tf.Tensor4D) => {
      const f = this.keyEncoder ?? this.trainable;
      return shuffle ? permuteRows(f.forward(permuteRows(x, shuffle)), { perm: shuffle.inverse, inverse: shuffle.perm }) : f.forward(x);
    };
    return this.keyEncoder ? noGrad(xk, encode) : encode(xk);
  }

  /** L = InfoNCE(q, k, queue; t) with the queue as it was before this step (eq. 1). */
  step([xq, xk]: tf.Tensor4D[], ctx: StepContext): StepOutput {
    this.dropPendingKeys(); // keys of a step that never reached afterStep
    const q = this.trainable.forward(xq);
    const k = this.keys(xk, ctx.rng);
    const negatives = this.queue ? (this.queue.keys as tf.Tensor2D) : null;
    const loss = infoNceLoss(q, k, negatives, this.temperature);
    if (this.queue) this.pendingKeys = tf.keep(k);
    return { loss, metrics: { contrastiveAcc: infoNceAccuracy(q, k, negatives) }, embeddings: q };
  }

  /** After the optimiser step: momentum update of f_k (eq. 2), then enqueue this step's keys. */
  afterStep(_ctx: StepContext): void {
    if (!this.queue || !this.ema) return;
    this.ema.update(this.momentum);
    if (this.pendingKeys) this.queue.enqueue(this.pendingKeys);
    this.dropPendingKeys();
  }

  private dropPendingKeys(): void {
    this.pendingKeys?.dispose();
    this.pendingKeys = null;
  }

  /** The key encoder and the queue (pointer included): checkpoints restore them exactly. */
  stateModules(): Record<string, Module> {
    return this.keyEncoder && this.queue ? { keyEncoder: this.keyEncoder, queue: this.queue } : {};
  }

  dispose(): void {
    this.dropPendingKeys();
    this.trainable.dispose();
    this.keyEncoder?.dispose();
    this.queue?.dispose();
  }
}

/** MoCo v2: v1 with the MLP head, mocoV2Transform (blur), t = 0.2; the cosine lr is the trainer's default schedule. */
export class MoCoV2 extends MoCoV1 {
  override readonly name: string = "moco-v2";

  constructor(opts: MoCoOptions) {
    super(opts, 2);
  }
}
