/**
 * SDMP (Ren et al. 2022, "A Simple Data Mixing Prior for Improving Self-Supervised Learning") on
 * MoCo v3 and on DINO. Each batch's two views are mixed with the batch reversed (image i with
 * image N-1-i; one strategy per batch from {Mixup, CutMix, ResizeMix}, one plan for both views so
 * they share boxes and lambdas), and the mixed image gets soft positive labels toward BOTH
 * sources (losses/sdmp.ts):
 *
 *   MoCo v3 (official builder.py, README "extra version"):
 *     x1, x2 = aug(x), aug'(x), swapped with p = 0.5;  x~1, x~2 = mix(x1), mix(x2)  (same lambda)
 *     q1, q2, q~2 = g(h(f_q(x1, x2, x~2)));  k1, k2, k~1 = h_k(f_k(x1, x2, x~1))
 *     L = ctr(q1, k2) + ctr(q2, k1)                          the usual MoCo v3 loss, unmixed views
 *       + 2t [ CE(q~2 k1^T / t, label1) + CE(q~2 k~1^T / t, label2) ]     sdmpLoss, scaled like ctr
 *   The official code weighs these terms the same way: each contrastive term is 2t CE, the mixed
 *   terms sum to the pseudo-code's loss1 + loss2 (builder.py: source_loss + ms / 2 + mm / 2 with a
 *   one-directional source loss; README: naive (both directions) + ms + mb).
 *
 *   DINO (paper Sec. 3.3): L = L_DINO + L_source + L_mix, the student on x~2, the teacher's
 *   distributions of the sources x1 (L_source) and of the mixed x~1 (L_mix) mixed by the same soft
 *   labels (losses/sdmp.ts sdmpDistillationTerms states each target).
 *
 * `naive`: the same mixed views and terms with one-hot instance labels (plain mixing, which the
 * paper finds hurts ViTs). The variants compose the base method (its encoders, heads, schedules,
 * EMA and checkpointed state are the base's own); the realised lambdas travel to step() as a last
 * "view" of shape [N, 1, 1, 1], so step() is a pure function of its views.
 */
import * as tf from "@tensorflow/tfjs-core";
import { MIX_STRATEGIES, RESIZEMIX_DEFAULT_SCALE, applyMixPlan, sampleMixPlan } from "../augment/mixing";
import type { MixPlan, MixStrategy } from "../augment/mixing";
import { nativeKernelsActive } from "../backend/native-kernels";
import { infoNceAccuracy } from "../losses/info-nce";
import { sdmpDistillationTerms, sdmpLossTerms } from "../losses/sdmp";
import type { Backbone } from "../nn/backbone";
import type { Module } from "../nn/module";
import type { MethodOptionValue, RunConfig } from "../presets";
import type { Rng } from "../random";
import { DINO } from "./dino";
import type { DINOOptions } from "./dino";
import { MoCoV3 } from "./moco-v3";
import type { MoCoV3Options } from "./moco-v3";
import type { MethodOptionSpec, MethodSpec } from "./registry";
import type { SSLMethod, StepContext, StepOutput } from "./types";

export interface SdmpOptions {
  /** Strategies, one chosen per batch uniformly (default all three, the paper's setting). */
  strategies?: readonly MixStrategy[];
  /** Beta(alpha, alpha) of Mixup's and CutMix's lambda (default 1, the official code's). */
  alpha?: number;
  /** ResizeMix's range of the patch side share (default [0.1, 0.8]). */
  resizeScale?: [number, number];
  /** Plain mixing: one-hot instance labels instead of SDMP's soft labels. */
  naive?: boolean;
  /**
   * MoCo v3: how many of the three query views (x1, x2, mix(x2), counted from the last) keep no
   * activations for the backward pass and recompute them there instead (0-3). "auto" (default):
   * on the wasm backend, 2 above 64 images a batch (above 128 with sslkit-native, whose fused
   * kernels keep fewer intermediates), else 0. Three views of ViT-tiny activations at batch 128
   * exceed wasm's 4 GB heap on wasm's own kernels (2.2 GB peak RSS with sslkit-native); with 2
   * recomputed the peak is the plain MoCo v3 step's (about +17% compute). With a ViT the result
   * is the same up to float rounding; a BatchNorm backbone normalises a recomputed view on its own
   * batch (as the official code's separate passes).
   */
  recomputeViews?: number | "auto";
}

type ResolvedSdmp = Required<SdmpOptions>;

function resolveSdmp(who: string, o: SdmpOptions = {}): ResolvedSdmp {
  const strategies = o.strategies ?? MIX_STRATEGIES;
  if (!Array.isArray(strategies) || strategies.length === 0) throw new Error(`${who}: at least one mixing strategy is required (${MIX_STRATEGIES.join(", ")})`);
  for (const s of strategies) if (!MIX_STRATEGIES.includes(s)) throw new Error(`${who}: unknown mixing strategy '${s}' (expected ${MIX_STRATEGIES.join(", ")})`);
  const alpha = o.alpha ?? 1;
  if (!(Number.isFinite(alpha) && alpha > 0)) throw new Error(`${who}: alpha must be a positive number, got ${alpha}`);
  const resizeScale = o.resizeScale ?? RESIZEMIX_DEFAULT_SCALE;
  if (!Array.isArray(resizeScale) || resizeScale.length !== 2 || !(resizeScale[0] > 0 && resizeScale[0] <= resizeScale[1] && resizeScale[1] <= 1)) {
    throw new Error(`${who}: resizeScale must be [lo, hi] with 0 < lo <= hi <= 1, got ${JSON.stringify(resizeScale)}`);
  }
  const recomputeViews = o.recomputeViews ?? "auto";
  if (recomputeViews !== "auto" && !(Number.isInteger(recomputeViews) && recomputeViews >= 0 && recomputeViews <= 3)) {
    throw new Error(`${who}: recomputeViews must be "auto" or an integer 0-3, got ${JSON.stringify(recomputeViews)}`);
  }
  return { strategies: [...strategies], alpha, resizeScale, naive: o.naive ?? false, recomputeViews };
}

/**
 * f(x) through `module` without keeping its activations for the backward pass (activation
 * recomputation): the forward runs off the tape (a custom op); the backward runs f(x) again under
 * its own tape for the gradients of the module's trainable parameters, then puts the module's
 * buffers (BatchNorm running statistics) back to their values after the first forward. Peak
 * memory: one call's activations at a time. No gradient flows to x (a view).
 */
export function recomputeInBackward(module: Module, f: (x: tf.Tensor4D) => tf.Tensor2D, x: tf.Tensor4D): tf.Tensor2D {
  const vars = module.parameters().map((p) => p.variable).filter((v) => v.trainable);
  const buffers = module.buffers().map((b) => b.variable);
  // a gradient computed during another one's backward pass replaces the engine's tape: keep it
  const engine = tf.engine() as unknown as { state: { activeTape: unknown } };
  const op = tf.customGrad(((...args: unknown[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const input = args[0] as tf.Tensor4D;
    save([input]);
    return {
      value: f(input),
      gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => {
        const kept = buffers.map((b) => tf.clone(b));
        const tape = engine.state.activeTape;
        let grads: tf.NamedTensorMap;
        try {
          const r = tf.variableGrads(() => tf.sum(tf.mul(f(saved as tf.Tensor4D), dy)), vars);
          r.value.dispose();
          grads = r.grads;
        } finally {
          engine.state.activeTape = tape;
        }
        buffers.forEach((b, i) => b.assign(kept[i]));
        tf.dispose(kept);
        return [tf.zerosLike(saved), ...vars.map((v) => grads[v.name] ?? tf.zerosLike(v))];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x, ...vars) as tf.Tensor2D;
}

/** Swaps the two views with p = 0.5 (builder.py), draws one mixing plan and mixes both views with it. */
function mixTwoViews(v1: tf.Tensor4D, v2: tf.Tensor4D, rng: Rng, mix: ResolvedSdmp): { x1: tf.Tensor4D; x2: tf.Tensor4D; m1: tf.Tensor4D; m2: tf.Tensor4D; plan: MixPlan } {
  const [x1, x2] = rng.next() < 0.5 ? [v2, v1] : [v1, v2];
  const [n, h, w] = x1.shape;
  const plan = sampleMixPlan(rng, n, h, w, { strategies: mix.strategies, alpha: mix.alpha, resizeScale: mix.resizeScale });
  return { x1, x2, m1: applyMixPlan(x1, plan), m2: applyMixPlan(x2, plan), plan };
}

/** The realised lambdas as a [N, 1, 1, 1] "view", and back. */
function lamView(lam: number[]): tf.Tensor4D {
  return tf.tensor4d(Float32Array.from(lam), [lam.length, 1, 1, 1]);
}
function lamFromView(v: tf.Tensor4D | undefined, n: number, who: string): tf.Tensor1D {
  if (!v || v.rank !== 4 || v.shape[0] !== n || v.size !== n) throw new Error(`${who}.step: the last view must be the mixing lambdas [${n}, 1, 1, 1] (from ${who}.views), got [${v?.shape}]`);
  return tf.reshape(v, [n]) as tf.Tensor1D;
}

/** What both SDMP methods take from the method they extend: its networks, EMA updates, state and disposal. */
abstract class SdmpOn<B extends MoCoV3 | DINO> {
  readonly backbone: Backbone;
  readonly trainable: Module;

  protected constructor(
    readonly base: B,
    readonly mix: ResolvedSdmp,
  ) {
    this.backbone = base.backbone;
    this.trainable = base.trainable;
  }

  afterStep(ctx: StepContext): void {
    this.base.afterStep(ctx);
  }

  stateModules(): Record<string, Module> {
    return this.base.stateModules();
  }

  dispose(): void {
    this.base.dispose();
  }
}

/** MoCo v3 + SDMP (see the file comment). Views: [x1, x2, mix(x1), mix(x2), lambdas]. */
export class MoCoV3SDMP extends SdmpOn<MoCoV3> implements SSLMethod {
  readonly name: string = "moco-v3-sdmp";

  constructor(base: MoCoV3 | MoCoV3Options, mix: SdmpOptions = {}) {
    const resolved = resolveSdmp("MoCoV3SDMP", mix);
    super(base instanceof MoCoV3 ? base : new MoCoV3(base), resolved);
  }

  views(images: tf.Tensor4D, ctx: StepContext): tf.Tensor4D[] {
    const [v1, v2] = this.base.views(images, ctx);
    const { x1, x2, m1, m2, plan } = mixTwoViews(v1, v2, ctx.rng, this.mix);
    return [x1, x2, m1, m2, lamView(plan.lam)];
  }

  step(views: tf.Tensor4D[], ctx: StepContext): StepOutput {
    const [x1, x2, m1, m2, lv] = views;
    const lam = lamFromView(lv, x1.shape[0], "MoCoV3SDMP");
    const t = this.base.temperature;
    const [q1, q2, qMix] = this.queries([x1, x2, m2]);
    const [k1, k2, kMix] = this.base.keyViews([x1, x2, m1]);
    const moco = tf.add(this.base.contrastive(q1, k2), this.base.contrastive(q2, k1)); // ctr(q1, k2) + ctr(q2, k1)
    const { source, mix } = sdmpLossTerms(qMix, k1, kMix, lam, t, { naive: this.mix.naive }); // label1 vs k1, label2 vs k~1
    const loss = tf.add(moco, tf.mul(tf.add(source, mix), 2 * t)) as tf.Scalar; // SDMP terms scaled by 2t like ctr
    const acc = tf.div(tf.add(infoNceAccuracy(q1, k2, null), infoNceAccuracy(q2, k1, null)), 2) as tf.Scalar;
    const metrics = { contrastiveAcc: acc, mocoLoss: moco as tf.Scalar, sdmpSource: source, sdmpMix: mix, mixLam: tf.mean(lam) as tf.Scalar, momentum: tf.scalar(this.base.momentumAt(ctx.step, ctx.totalSteps)) };
    return { loss, metrics, embeddings: q1 };
  }

  /** How many query views recompute their activations in the backward pass (see SdmpOptions.recomputeViews). */
  recomputedViews(batch: number): number {
    if (this.mix.recomputeViews !== "auto") return this.mix.recomputeViews;
    return tf.getBackend() === "wasm" && batch > (nativeKernelsActive() ? 128 : 64) ? 2 : 0;
  }

  /** q = g(h(f_q(x))) per view: the first views in one backbone pass, the last `recomputedViews` recomputed in the backward. */
  queries(xs: tf.Tensor4D[]): tf.Tensor2D[] {
    const r = Math.min(xs.length, this.recomputedViews(xs[0].shape[0]));
    const { backbone, projector, predictor } = this.base.trainable;
    const plain = r < xs.length ? this.base.queryViews(xs.slice(0, xs.length - r)) : []; // first: the heads' BN statistics update in view order
    return [...plain, ...xs.slice(xs.length - r).map((x) => predictor.forward(projector.forward(recomputeInBackward(backbone, (v) => backbone.forward(v), x))))];
  }
}

/** DINO + SDMP (see the file comment). Views: [global1, global2, locals..., mix(global1), mix(global2), lambdas]. */
export class DINOSDMP extends SdmpOn<DINO> implements SSLMethod {
  readonly name: string = "dino-sdmp";

  constructor(base: DINO | DINOOptions, mix: SdmpOptions = {}) {
    const resolved = resolveSdmp("DINOSDMP", mix);
    super(base instanceof DINO ? base : new DINO(base), resolved);
  }

  views(images: tf.Tensor4D, ctx: StepContext): tf.Tensor4D[] {
    const [g1, g2, ...locals] = this.base.views(images, ctx);
    const { x1, x2, m1, m2, plan } = mixTwoViews(g1, g2, ctx.rng, this.mix); // L_DINO is symmetric in the globals
    return [x1, x2, ...locals, m1, m2, lamView(plan.lam)];
  }

  step(views: tf.Tensor4D[], ctx: StepContext): StepOutput {
    if (!Array.isArray(views) || views.length < 5) throw new Error(`DINOSDMP.step: expected [global1, global2, locals..., mix1, mix2, lambdas], got ${views?.length} views`);
    const [x1, x2] = views;
    const locals = views.slice(2, -3);
    const [m1, m2, lv] = views.slice(-3);
    const n = x1.shape[0];
    const lam = lamFromView(lv, n, "DINOSDMP");
    const b = this.base;
    b.student.head.setLastLayerFrozen(ctx.epoch < b.freezeLastLayerEpochs);
    // outputs are stacked crop-major ([V N, K], see DINO): the teacher on x1, x2 and mix(x1) ...
    const [t1, t2, tMix] = tf.split(b.teacherOutputs([x1, x2, m1]), 3, 0) as tf.Tensor2D[];
    const teacher = tf.concat([t1, t2], 0) as tf.Tensor2D;
    // ... the student on x1, x2, mix(x2) (one backbone batch) and the locals
    const { outputs, features } = b.studentOutputs([x1, x2, m2, ...locals]);
    const [sGlobal, sMix, sLocal] = tf.split(outputs, locals.length > 0 ? [2 * n, n, locals.length * n] : [2 * n, n], 0) as tf.Tensor2D[];
    const student = sLocal ? (tf.concat([sGlobal, sLocal], 0) as tf.Tensor2D) : sGlobal;
    const dino = b.lossTerms(student, teacher, 2 + locals.length, ctx); // L_DINO on the unmixed crops
    b.rememberBatchCenter(teacher); // the center follows the unmixed globals, as in DINO
    const { source, mix } = sdmpDistillationTerms(sMix, t1, tMix, b.center.value, lam, b.studentTemp, b.teacherTemperature(ctx), { naive: this.mix.naive });
    const loss = tf.addN([dino.loss, source, mix]) as tf.Scalar; // L = L_DINO + L_source + L_mix
    const metrics = {
      dinoLoss: dino.loss,
      teacherEntropy: dino.teacherEntropy,
      kl: dino.kl,
      sdmpSource: source,
      sdmpMix: mix,
      mixLam: tf.mean(lam) as tf.Scalar,
      teacherTemp: tf.scalar(b.teacherTemperature(ctx)),
      teacherMomentum: tf.scalar(b.teacherMomentum(ctx)),
    };
    return { loss, metrics, embeddings: features[0] };
  }
}

// ---- the registry: `--sdmp`, `--mix-alpha`, `--mix-naive` on moco-v3 and dino ------------------

/** SDMP's CLI options, spread into the moco-v3 and dino registry entries. */
export const sdmpOptionSpecs: readonly MethodOptionSpec[] = [
  {
    key: "sdmp",
    flag: "sdmp",
    type: "list",
    choices: MIX_STRATEGIES,
    help: "SDMP (Ren et al. 2022): mix each batch with its reverse (one of these per batch), soft labels toward both sources",
  },
  { key: "mixAlpha", flag: "mix-alpha", type: "number", min: 0, exclusiveMin: true, help: "Beta(a, a) of the Mixup / CutMix coefficient, with --sdmp (default 1)" },
  { key: "mixNaive", flag: "mix-naive", type: "set", value: true, help: "with --sdmp: plain mixing, one-hot instance labels (the baseline SDMP improves on)" },
];

/** Defaults: no mixing (the plain method). */
export const sdmpDefaults: Record<string, MethodOptionValue> = { sdmp: [], mixAlpha: 1, mixNaive: false };

/** SDMP's options from a run configuration; null when `sdmp` is empty (the plain method). Throws on bad values. */
export function sdmpOptionsFromConfig(config: RunConfig): SdmpOptions | null {
  const o = config.methodOptions ?? {};
  const strategies = o.sdmp ?? sdmpDefaults.sdmp;
  const alpha = o.mixAlpha ?? sdmpDefaults.mixAlpha;
  const naive = o.mixNaive ?? sdmpDefaults.mixNaive;
  const who = config.method;
  if (!Array.isArray(strategies)) throw new Error(`${who}: --sdmp expects a comma-separated list of ${MIX_STRATEGIES.join(", ")}, got ${JSON.stringify(strategies)}`);
  if (typeof alpha !== "number" || !(alpha > 0)) throw new Error(`${who}: --mix-alpha expects a number > 0, got ${JSON.stringify(alpha)}`);
  if (typeof naive !== "boolean") throw new Error(`${who}: mixNaive must be true or false, got ${JSON.stringify(naive)}`);
  if (strategies.length === 0) {
    if (naive) throw new Error(`${who}: --mix-naive needs --sdmp <strategies> (which mixing to apply)`);
    if (alpha !== sdmpDefaults.mixAlpha) throw new Error(`${who}: --mix-alpha has no effect without --sdmp <strategies>`);
    return null;
  }
  return resolveSdmp(`${who} --sdmp`, { strategies: strategies as MixStrategy[], alpha, naive });
}

/** Wraps a registry entry's `create`: with `--sdmp <strategies>` the method is built with SDMP on top. */
export function withSdmp(create: MethodSpec["create"]): MethodSpec["create"] {
  return (config, inputShape) => {
    const mix = sdmpOptionsFromConfig(config);
    const base = create(config, inputShape);
    if (!mix) return base;
    if (base instanceof MoCoV3) return new MoCoV3SDMP(base, mix);
    if (base instanceof DINO) return new DINOSDMP(base, mix);
    base.dispose();
    throw new Error(`${config.method}: --sdmp is implemented for moco-v3 and dino only`);
  };
}
