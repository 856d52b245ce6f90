/**
 * DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers"),
 * Algorithm 1:
 *
 *   gt.params = gs.params                                  teacher starts as the student
 *   for x in loader:
 *     x1, x2, locals = multicrop(x)                         2 global crops + N local crops
 *     s = gs(x1, x2, locals)                                 the student sees every crop
 *     t = gt(x1, x2)                                         the teacher only the global ones
 *     loss = H(t, s) over pairs (i, v != i)                  eq. 3 (losses/dino.ts)
 *     update gs;  gt.params = l gt.params + (1 - l) gs.params     EMA, l cosine 0.996 -> 1
 *     C = m C + (1 - m) mean(t1, t2)                         centering, m = 0.9 (eq. 4)
 *   H(t, s) = -softmax((t - C) / tau_t) . log_softmax(s / tau_s)   sharpening: tau_t < tau_s
 *
 * g = backbone + DinoHead. What keeps the teacher from collapsing is the balance of centering
 * (prevents one dimension from dominating, pushes toward uniform) and sharpening (the reverse);
 * the step logs both monitors of the paper's Figure 7: the teacher entropy and KL(teacher||student).
 *
 * Pieces a subclass (e.g. SDMP's DINOSDMP) overrides or reuses, each small. Outputs of several
 * crops are STACKED crop-major ([V N, K]: rows v N .. (v + 1) N - 1 are crop v, globals first):
 *   studentOutputs(crops)  -> { outputs [V N, K], features [N, D] per crop }   (with gradient)
 *   teacherOutputs(globals) -> [T N, K] (no gradient, not recorded on the tape)
 *   teacherTemperature(ctx), teacherMomentum(ctx)  the schedules
 *   lossTerms(student, teacher, numCrops, ctx) -> { loss, teacherEntropy, kl } (current center)
 *   rememberBatchCenter(teacher)  the center update's input, applied in afterStep (updateCenter)
 *   updateTeacher(ctx)  the EMA
 */
import * as tf from "@tensorflow/tfjs-core";
import { dinoMultiCrop } from "../augment";
import type { DinoMultiCropOptions, MultiViewTransform } from "../augment";
import { dinoBatchCenter, dinoCenterUpdate, dinoLossTermsStacked } from "../losses/dino";
import type { DinoLossTerms } from "../losses/dino";
import type { Backbone } from "../nn/backbone";
import { DinoHead } from "../nn/dino-head";
import { initZeros } from "../nn/init";
import { Module } from "../nn/module";
import { noGrad } from "../nn/no-grad";
import { ViT } from "../nn/vit";
import { EmaUpdater } from "../train/ema";
import { cosineMomentum } from "../train/schedules";
import type { SSLMethod, StepContext, StepOutput } from "./types";

export interface DINOOptions {
  /** The student's encoder. */
  backbone: Backbone;
  /** A second encoder of the same architecture for the teacher (its weights become the student's). */
  teacherBackbone: Backbone;
  /** Image [height, width, channels] (the global crop size of the default multi-crop). */
  inputShape: [number, number, number];
  /** Head output dimension K (paper: 65536 on ImageNet). Default 4096. */
  outDim?: number;
  /** Head MLP hidden width (paper 2048), bottleneck (paper 256) and number of linears (paper 3). */
  headHiddenDim?: number;
  bottleneckDim?: number;
  headLayers?: number;
  /** Local crops per image (paper: 8-10 at 96 px). Default 6. 0 = two global crops only. */
  numLocalCrops?: number;
  /** Side of the local crops; default round(side * 96 / 224) rounded to the ViT patch size (12 for 28). */
  localCropSize?: number;
  /** Crop area ranges (paper: global (0.4, 1), local (0.05, 0.4)). */
  globalCropScale?: [number, number];
  localCropScale?: [number, number];
  /** Other settings of the default dinoMultiCrop. */
  transformOptions?: Partial<DinoMultiCropOptions>;
  /** A custom multi-crop: returns the 2 global crops first, then the local ones. */
  transform?: MultiViewTransform;
  /** Student temperature tau_s (paper 0.1). */
  studentTemp?: number;
  /** Teacher temperature tau_t after the warm-up (paper 0.04-0.07). Default 0.07. */
  teacherTemp?: number;
  /** Teacher temperature at step 0, rising linearly to teacherTemp (paper 0.04). Default 0.04. */
  warmupTeacherTemp?: number;
  /** Fraction of the run the warm-up lasts (paper: 30 of 100-300 epochs). Default 0.3; 0 = fixed teacherTemp. */
  teacherTempWarmup?: number;
  /** false: no sharpening, tau_t = tau_s throughout. Default true. */
  sharpening?: boolean;
  /** false: no centering, the center stays 0. Default true. */
  centering?: boolean;
  /** Center momentum m (paper 0.9). */
  centerMomentum?: number;
  /** Teacher EMA momentum: base of the cosine schedule to 1 (paper 0.996), or the constant. */
  teacherMomentum?: number;
  /** "cosine" (paper): base -> 1 over the run; "constant": the base throughout (0 = the teacher is the student, copied each step). */
  teacherMomentumSchedule?: "cosine" | "constant";
  /** Epochs during which the head's last layer gets a zero gradient (paper: freeze_last_layer = 1). */
  freezeLastLayerEpochs?: number;
  /** Which encoder `backbone` (the evaluated one) is: "teacher" (the paper evaluates the teacher) or "student". */
  evalEncoder?: "teacher" | "student";
  /**
   * Gradient checkpointing of the student ViT's blocks (ViT.gradientCheckpointing): "auto" (default)
   * turns it on for steps with more than 12,288 student tokens, where tfjs's ~240 KB of activations
   * and gradients a token would pass ~3 GB (batch 128 with 2 global + 6 local crops is 20,480
   * tokens, ~5 GB: more than wasm's 4 GB heap); it costs one more forward pass of the blocks.
   */
  checkpointing?: "auto" | boolean;
  /** Seed of the head's initialisation. */
  seed?: number;
}

/** g = head(backbone(x)): the student (trained) or the teacher (EMA). */
export class DINOModel extends Module {
  constructor(
    readonly backbone: Backbone,
    readonly head: DinoHead,
  ) {
    super();
    this.addChild("backbone", backbone);
    this.addChild("head", head);
  }

  forward(x: tf.Tensor4D): tf.Tensor2D {
    return this.head.forward(this.backbone.forward(x));
  }
}

/** The center C [1, K] as a checkpointed buffer. */
export class DinoCenter extends Module {
  readonly value: tf.Variable;

  constructor(outDim: number) {
    super();
    this.value = this.addBuffer("center", initZeros([1, outDim]));
  }
}

/**
 * Student tokens in a step above which the student ViT checkpoints its blocks: tfjs holds ~240 KB
 * of activations and gradients a token until the backward pass ends, so 12,288 tokens are ~3 GB.
 */
const CHECKPOINT_TOKENS = 12288;

const positive = (name: string, v: number) => {
  if (!(Number.isFinite(v) && v > 0)) throw new Error(`DINO: ${name} must be a positive number, got ${v}`);
};
const unit = (name: string, v: number) => {
  if (!(Number.isFinite(v) && v >= 0 && v <= 1)) throw new Error(`DINO: ${name} must be in [0, 1], got ${v}`);
};

export class DINO implements SSLMethod {
  readonly name: string = "dino";
  readonly student: DINOModel;
  readonly teacher: DINOModel;
  readonly trainable: DINOModel;
  /** The evaluated encoder (the teacher's by default, as in the paper). */
  readonly backbone: Backbone;
  readonly center: DinoCenter;
  readonly transform: MultiViewTransform;
  readonly numGlobalCrops = 2;
  readonly numLocalCrops: number;
  readonly localCropSize: number;
  readonly studentTemp: number;
  readonly teacherTemp: number;
  readonly warmupTeacherTemp: number;
  readonly teacherTempWarmup: number;
  readonly sharpening: boolean;
  readonly centering: boolean;
  readonly centerMomentum: number;
  readonly baseTeacherMomentum: number;
  readonly teacherMomentumSchedule: "cosine" | "constant";
  readonly freezeLastLayerEpochs: number;
  readonly checkpointing: "auto" | boolean;
  protected readonly ema: EmaUpdater;
  /** mean of this step's teacher outputs [1, K], kept from step() to afterStep(). */
  private pendingCenter: tf.Tensor | null = null;

  constructor(opts: DINOOptions) {
    if (!opts?.backbone || !opts.teacherBackbone) throw new Error("DINO: backbone and teacherBackbone are required");
    if (opts.backbone === opts.teacherBackbone) throw new Error("DINO: the teacher needs its own backbone instance");
    const [h, w, c] = opts.inputShape ?? [];
    if (![h, w, c].every((d) => Number.isInteger(d) && d > 0)) throw new Error(`DINO: inputShape must be [height, width, channels], got ${JSON.stringify(opts.inputShape)}`);
    this.studentTemp = opts.studentTemp ?? 0.1;
    this.teacherTemp = opts.teacherTemp ?? 0.07;
    this.warmupTeacherTemp = opts.warmupTeacherTemp ?? 0.04;
    this.teacherTempWarmup = opts.teacherTempWarmup ?? 0.3;
    this.centerMomentum = opts.centerMomentum ?? 0.9;
    this.baseTeacherMomentum = opts.teacherMomentum ?? 0.996;
    this.teacherMomentumSchedule = opts.teacherMomentumSchedule ?? "cosine";
    this.sharpening = opts.sharpening ?? true;
    this.centering = opts.centering ?? true;
    this.freezeLastLayerEpochs = opts.freezeLastLayerEpochs ?? 1;
    this.numLocalCrops = opts.numLocalCrops ?? 6;
    this.checkpointing = opts.checkpointing ?? "auto";
    positive("studentTemp", this.studentTemp);
    positive("teacherTemp", this.teacherTemp);
    positive("warmupTeacherTemp", this.warmupTeacherTemp);
    unit("teacherTempWarmup", this.teacherTempWarmup);
    unit("centerMomentum", this.centerMomentum);
    unit("teacherMomentum", this.baseTeacherMomentum);
    if (this.teacherMomentumSchedule !== "cosine" && this.teacherMomentumSchedule !== "constant") {
      throw new Error(`DINO: teacherMomentumSchedule must be "cosine" or "constant", got '${this.teacherMomentumSchedule as string}'`);
    }
    if (!(Number.isInteger(this.freezeLastLayerEpochs) && this.freezeLastLayerEpochs >= 0)) throw new Error(`DINO: freezeLastLayerEpochs must be a non-negative integer, got ${this.freezeLastLayerEpochs}`);
    if (!(Number.isInteger(this.numLocalCrops) && this.numLocalCrops >= 0)) throw new Error(`DINO: numLocalCrops must be a non-negative integer, got ${this.numLocalCrops}`);
    const evalEncoder = opts.evalEncoder ?? "teacher";
    if (evalEncoder !== "teacher" && evalEncoder !== "student") throw new Error(`DINO: evalEncoder must be "teacher" or "student", got '${evalEncoder as string}'`);

    // multi-crop through one ViT: position embeddings are interpolated to each crop's patch grid
    const patch = opts.backbone instanceof ViT ? opts.backbone.patchSize : 1;
    for (const b of [opts.backbone, opts.teacherBackbone]) if (b instanceof ViT) b.interpolatePosEmbed = true;
    this.localCropSize = opts.localCropSize ?? Math.max(patch, Math.round((Math.min(h, w) * 96) / 224 / patch) * patch);
    if (!(Number.isInteger(this.localCropSize) && this.localCropSize >= 1) || this.localCropSize % patch !== 0) {
      throw new Error(`DINO: localCropSize must be a positive multiple of the ViT patch size ${patch}, got ${this.localCropSize}`);
    }
    if (h % patch !== 0 || w % patch !== 0) throw new Error(`DINO: the global crop ${h}x${w} must divide by the ViT patch size ${patch}`);

    const k = opts.outDim ?? 4096;
    const head = (seed: number) =>
      new DinoHead(opts.backbone.outputDim, { outDim: k, hiddenDim: opts.headHiddenDim ?? 2048, bottleneckDim: opts.bottleneckDim ?? 256, numLayers: opts.headLayers ?? 3, seed });
    this.student = new DINOModel(opts.backbone, head(opts.seed ?? 0));
    this.teacher = new DINOModel(opts.teacherBackbone, head(opts.seed ?? 0));
    this.teacher.setTrainable(false);
    this.trainable = this.student;
    this.ema = new EmaUpdater(this.student, this.teacher);
    this.ema.copy(); // gt.params = gs.params
    this.center = new DinoCenter(k);
    this.backbone = evalEncoder === "teacher" ? this.teacher.backbone : this.student.backbone;
    this.transform =
      opts.transform ??
      dinoMultiCrop({
        globalSize: [h, w],
        localSize: this.localCropSize,
        numLocalCrops: this.numLocalCrops,
        globalScale: opts.globalCropScale ?? [0.4, 1],
        localScale: opts.localCropScale ?? [0.05, 0.4],
        channels: c,
        ...opts.transformOptions,
      });
  }

  /** [global1, global2, local1, ..., localN] of every image. */
  views(images: tf.Tensor4D, ctx: StepContext): tf.Tensor4D[] {
    return this.transform(images, ctx.rng);
  }

  /** tau_t: linear warm-up from warmupTeacherTemp over the first teacherTempWarmup of the run; tau_s without sharpening. */
  teacherTemperature(ctx: Pick<StepContext, "step" | "totalSteps">): number {
    if (!this.sharpening) return this.studentTemp;
    const warmupSteps = Math.round(this.teacherTempWarmup * ctx.totalSteps);
    if (ctx.step >= warmupSteps) return this.teacherTemp;
    return this.warmupTeacherTemp + ((this.teacherTemp - this.warmupTeacherTemp) * ctx.step) / warmupSteps;
  }

  /** The EMA momentum of this step: cosine from the base to 1 (BYOL/DINO), or constant. */
  teacherMomentum(ctx: Pick<StepContext, "step" | "totalSteps">): number {
    if (this.teacherMomentumSchedule === "constant") return this.baseTeacherMomentum;
    return cosineMomentum(ctx.step, ctx.totalSteps, this.baseTeacherMomentum);
  }

  /**
   * The student on every crop: crops of one size go through the backbone as one batch, then all
   * class tokens through the head at once (the reference MultiCropWrapper). Returns the outputs
   * stacked crop-major, [V N, K], and each crop's backbone features [N, D].
   */
  studentOutputs(crops: tf.Tensor4D[]): { outputs: tf.Tensor2D; features: tf.Tensor2D[] } {
    const vit = this.student.backbone;
    if (vit instanceof ViT && this.checkpointing !== false) {
      const tokens = crops.reduce((sum, c) => sum + c.shape[0] * (1 + (c.shape[1] * c.shape[2]) / vit.patchSize ** 2), 0);
      vit.gradientCheckpointing = this.checkpointing === true || tokens > CHECKPOINT_TOKENS;
    }
    const groups: tf.Tensor2D[] = [];
    const features: tf.Tensor2D[] = [];
    for (let i = 0; i < crops.length; ) {
      let j = i + 1;
      while (j < crops.length && crops[j].shape[1] === crops[i].shape[1] && crops[j].shape[2] === crops[i].shape[2]) j++;
      const group = crops.slice(i, j);
      const f = this.student.backbone.forward(group.length === 1 ? group[0] : (tf.concat(group, 0) as tf.Tensor4D));
      groups.push(f);
      features.push(...(group.length === 1 ? [f] : (tf.split(f, group.map((c) => c.shape[0]), 0) as tf.Tensor2D[])));
      i = j;
    }
    const outputs = this.student.head.forward(groups.length === 1 ? groups[0] : (tf.concat(groups, 0) as tf.Tensor2D));
    return { outputs, features };
  }

  /** The teacher on the global crops, stacked [T N, K]: no gradient, and its activations are not kept for the backward pass. */
  teacherOutputs(globals: tf.Tensor4D[]): tf.Tensor2D {
    return noGrad(globals.length === 1 ? globals[0] : (tf.concat(globals, 0) as tf.Tensor4D), (x) => this.teacher.forward(x));
  }

  /** Eq. 3 against the current center (zero without centering) at this step's temperatures. */
  lossTerms(student: tf.Tensor2D, teacher: tf.Tensor2D, numCrops: number, ctx: StepContext): DinoLossTerms {
    return dinoLossTermsStacked(student, teacher, numCrops, this.numGlobalCrops, this.center.value, this.studentTemp, this.teacherTemperature(ctx));
  }

  /** Keeps mean(teacher outputs) for the center update after the optimiser step. */
  rememberBatchCenter(teacher: tf.Tensor2D): void {
    this.pendingCenter?.dispose();
    this.pendingCenter = this.centering ? tf.keep(dinoBatchCenter(teacher)) : null;
  }

  step(crops: tf.Tensor4D[], ctx: StepContext): StepOutput {
    if (!Array.isArray(crops) || crops.length < this.numGlobalCrops) throw new Error(`DINO.step: expected at least ${this.numGlobalCrops} crops (globals first), got ${crops?.length}`);
    if (crops.some((c) => c.shape[0] !== crops[0].shape[0])) throw new Error(`DINO.step: every crop needs the same batch size, got ${crops.map((c) => c.shape[0]).join(", ")}`);
    this.student.head.setLastLayerFrozen(ctx.epoch < this.freezeLastLayerEpochs);
    this.teacher.train(); // as the reference: the teacher runs in training mode (matters for BatchNorm backbones only)
    const teacher = this.teacherOutputs(crops.slice(0, this.numGlobalCrops));
    const { outputs, features } = this.studentOutputs(crops);
    const { loss, teacherEntropy, kl } = this.lossTerms(outputs, teacher, crops.length, ctx);
    this.rememberBatchCenter(teacher);
    const metrics = { teacherEntropy, kl, teacherTemp: tf.scalar(this.teacherTemperature(ctx)), teacherMomentum: tf.scalar(this.teacherMomentum(ctx)) };
    return { loss, metrics, embeddings: features[0] };
  }

  /** gt <- l gt + (1 - l) gs over every parameter and buffer. */
  updateTeacher(ctx: StepContext): void {
    this.ema.update(this.teacherMomentum(ctx));
  }

  /** C <- m C + (1 - m) mean(t) with this step's teacher outputs (eq. 4). */
  updateCenter(): void {
    if (!this.pendingCenter) return;
    const next = dinoCenterUpdate(this.center.value, this.pendingCenter, this.centerMomentum);
    this.center.value.assign(next);
    tf.dispose([next, this.pendingCenter]);
    this.pendingCenter = null;
  }

  afterStep(ctx: StepContext): void {
    this.updateTeacher(ctx);
    this.updateCenter();
  }

  stateModules(): Record<string, Module> {
    return { teacher: this.teacher, center: this.center };
  }

  dispose(): void {
    this.pendingCenter?.dispose();
    this.pendingCenter = null;
    this.student.dispose();
    this.teacher.dispose();
    this.center.dispose();
  }
}
