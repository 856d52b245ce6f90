/**
 * MoCo v3 + SDMP training-step throughput and peak memory, one JSON line per figure:
 *   moco-v3-sdmp-vit-tiny: the MoCoV3SDMP step on 28x28x1 at batch 128: byolTransforms' two views,
 *     one intra-batch mixing plan per batch (Mixup / CutMix / ResizeMix, chosen per step as in
 *     training) applied to both views, the online ViT-tiny (patch 4, dim 128, depth 4,
 *     4 heads) + projector (512 hidden, 128 out, 3 Linear-BN layers) + predictor on x1, x2, mix(x2)
 *     (one backbone pass, heads per view), the momentum encoder on x1, x2, mix(x1) (no grad), the
 *     symmetric MoCo v3 loss + 2t sdmpLoss, AdamW, then the EMA update.
 *   moco-v3-vit-tiny: the plain MoCo v3 step with the same sizes (the denominator of the ratio).
 *   moco-v3-vit-tiny-same-work: the plain step at 1.5x the batch (192), i.e. the SDMP step's backbone
 *     work (3 query and 3 key views of 128 images against 2 and 2).
 * Target (not asserted): SDMP's ratio to bench/torch/sdmp.py's "sdmp" figure no worse than the plain
 * MoCo v3 step's ratio to its "moco-v3" figure. PyTorch's cost per image falls more than sslkit's
 * from 256 to 384 backbone images a step; the same-work figures show how much of a gap that makes.
 * `viewsMs` is the part of a step spent making the views (augmentation and mixing);
 * `modelImagesPerSec` leaves it out, which is what the PyTorch reference times (its views are made
 * once). `cpuMsMedian`: process CPU time a step (all threads), a figure less sensitive than the
 * wall time to other load on the machine. Each figure runs in its own process (peak RSS).
 *
 *   node --import tsx bench/step-sdmp.ts [sdmp|moco-v3|moco-v3-same-work] [--steps N] [--batch N (128)]
 *     [--profile] [--vs-torch: then bench/torch/sdmp.py, the ratios, and SDMP's ratio over the plain one]
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../lib/src/backend";
import { MoCoV3 } from "../lib/src/methods/moco-v3";
import { MoCoV3SDMP } from "../lib/src/methods/sdmp";
import type { SSLMethod } from "../lib/src/methods/types";
import { vitTiny } from "../lib/src/nn/vit";
import { Rng } from "../lib/src/random";
import { AdamW } from "../lib/src/train/optimizers";
import { argValue, childFigure, figureFailed, median, peakRssMB, printFigure, printProfile, runFigureChildren } from "./common";

const FIGURES = ["sdmp", "moco-v3", "moco-v3-same-work"] as const;
type Figure = (typeof FIGURES)[number];
const args = process.argv.slice(2);
const STEPS = Number(argValue("steps") ?? 6);
const BATCH = Number(argValue("batch") ?? 128);
if (!(Number.isInteger(BATCH) && BATCH >= 2 && BATCH % 2 === 0)) throw new Error(`step-sdmp: --batch must be an even integer >= 2, got ${argValue("batch")}`);

async function figure(which: Figure): Promise<Record<string, unknown>> {
  const batch = which === "moco-v3-same-work" ? (BATCH * 3) / 2 : BATCH;
  const base = () =>
    new MoCoV3({ backbone: vitTiny({ seed: 0 }), keyBackbone: vitTiny({ seed: 0 }), inputShape: [28, 28, 1], temperature: 0.2, projectionHiddenDim: 512, projectionDim: 128, cropScale: [0.2, 1] });
  const method: SSLMethod = which === "sdmp" ? new MoCoV3SDMP(base()) : base();
  const opt = new AdamW(method.trainable.parameters(), { lr: 1e-3, weightDecay: 0.1 });
  const vars = method.trainable.variables();
  const images = tf.randomUniform([batch, 28, 28, 1], 0, 1, "float32", 1) as tf.Tensor4D;
  const stepMs: number[] = [];
  const viewsMs: number[] = [];
  const cpuMs: number[] = [];
  let loss = NaN;
  const warmup = 2;
  for (let i = 0; i < warmup + STEPS; i++) {
    const ctx = { step: i, totalSteps: 1000, epoch: 0, rng: new Rng(i) };
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const views = tf.tidy(() => method.views(images, ctx));
    await views[0].data(); // views done
    const t1 = performance.now();
    const { value, grads } = tf.variableGrads(() => method.step(views, ctx).loss, vars);
    opt.applyGradients(grads);
    method.afterStep?.(ctx);
    loss = (await value.data())[0];
    tf.dispose([value, ...views, ...Object.values(grads)]);
    if (i >= warmup) {
      stepMs.push(performance.now() - t0);
      viewsMs.push(t1 - t0);
      const c = process.cpuUsage(c0);
      cpuMs.push((c.user + c.system) / 1000);
    }
  }
  if (process.argv.includes("--profile")) {
    await printProfile(which, (i) => {
      const ctx = { step: i, totalSteps: 1000, epoch: 0, rng: new Rng(i) };
      const views = tf.tidy(() => method.views(images, ctx));
      const { value, grads } = tf.variableGrads(() => method.step(views, ctx).loss, vars);
      opt.applyGradients(grads);
      method.afterStep?.(ctx);
      tf.dispose([...views, ...Object.values(grads)]);
      return value;
    });
  }
  const ms = median(stepMs);
  const vms = median(viewsMs);
  const result = {
    figure: { sdmp: "moco-v3-sdmp-vit-tiny", "moco-v3": "moco-v3-vit-tiny", "moco-v3-same-work": "moco-v3-vit-tiny-same-work" }[which],
    batch,
    input: which === "sdmp" ? "28x28x1: 2 views + 2 mixed views (query: x1, x2, mix(x2); keys: x1, x2, mix(x1))" : "28x28x1 x 2 views",
    params: method.trainable.numParameters(),
    warmupSteps: warmup,
    steps: STEPS,
    stepMsMedian: +ms.toFixed(1),
    viewsMs: +vms.toFixed(1),
    imagesPerSec: +((batch * 1000) / ms).toFixed(1),
    modelImagesPerSec: +((batch * 1000) / (ms - vms)).toFixed(1),
    cpuMsMedian: +median(cpuMs).toFixed(0),
    peakRssMB: peakRssMB(),
    loss: +loss.toFixed(4),
  };
  method.dispose();
  opt.dispose();
  images.dispose();
  return result;
}

async function child(which: Figure): Promise<void> {
  const info = await initBackend();
  const result = await figure(which);
  printFigure("step-sdmp", result, info);
}

const which = childFigure<Figure>();
if (which) child(which).catch(figureFailed("step-sdmp", which));
// each figure in its own process, so the peak RSS is that figure's alone
else {
  const sdmp = "moco-v3-sdmp-vit-tiny";
  runFigureChildren(__filename, FIGURES, args, {
    bench: "step-sdmp",
    script: "sdmp.py",
    field: "modelImagesPerSec",
    args: argValue("batch") !== undefined ? ["--batch", String(BATCH)] : [],
    // the target: SDMP's ratio over the plain step's (1 = the same); and over the same-work step's
    summary: (r) => {
      const over = (baseline: string) => (r[sdmp] && r[baseline] ? +(r[sdmp] / r[baseline]).toFixed(3) : null);
      const value = over("moco-v3-vit-tiny");
      return value === null ? null : { figure: "sdmp-ratio-over-plain-ratio", value, overSameWorkRatio: over("moco-v3-vit-tiny-same-work") };
    },
  });
}
