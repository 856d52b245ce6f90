/**
 * MoCo training-step throughput and peak memory, one JSON line per figure:
 *   moco-v2-resnet-small: MoCo v2 step (two mocoV2Transform views, resnet-small with 8-way
 *     SplitBatchNorm and the key batch shuffled across the groups, MLP head 256-256-128, a queue of
 *     4096 keys, t 0.2, AdamW, then the momentum update m 0.99 and the enqueue) at batch 128 on 32x32x3.
 *   moco-v3-vit-tiny: MoCo v3 step (two byolTransforms views, vit-tiny backbone, projector
 *     128-512-512-128 with BN, predictor 128-512-128, the momentum encoder on both views,
 *     symmetric 2t-scaled InfoNCE, AdamW, then the cosine momentum update) at batch 128 on 28x28x1
 *     (the size of the MAE figure in train-step.ts).
 * Target (issue 13, not asserted): each step at least as fast as the same step in PyTorch on the same
 * machine (bench/torch/moco.py; `--vs-torch` runs it after the figures and prints the ratios).
 * Each figure runs in its own child process, so its peak RSS is its own. images/s counts source
 * images (not views) per optimisation step, augmentation included (PyTorch's figure makes its views once).
 *
 *   node --import tsx bench/step-moco.ts [moco-v2|moco-v3] [--steps N] [--vs-torch]
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../lib/src/backend";
import { MoCoV2 } from "../lib/src/methods/moco";
import { MoCoV3 } from "../lib/src/methods/moco-v3";
import type { SSLMethod } from "../lib/src/methods/types";
import { SplitBatchNorm } from "../lib/src/nn/split-batch-norm";
import { resnetSmall } from "../lib/src/nn/resnet";
import { vitTiny } from "../lib/src/nn/vit";
import { AdamW } from "../lib/src/train/optimizers";
import { argValue, childFigure, figureFailed, methodStep, peakRssMB, printFigure, runFigureChildren, stepSpeed, timeSteps } from "./common";

const FIGURES = ["moco-v2", "moco-v3"] as const;
type Figure = (typeof FIGURES)[number];

/** One full training step as the Trainer runs it (common.ts's methodStep), timed after `warmup` steps. */
async function timeMethod(method: SSLMethod, images: tf.Tensor4D, warmup: number, steps: number): Promise<{ stepMs: number[]; loss: number }> {
  const opt = new AdamW(method.trainable.parameters().filter((p) => p.variable.trainable), { lr: 1e-3, weightDecay: 1e-6 });
  const timed = await timeSteps(methodStep(method, opt, images), warmup, steps);
  opt.dispose();
  return timed;
}

async function figure(which: Figure, steps: number): Promise<Record<string, unknown>> {
  const batch = 128;
  if (which === "moco-v2") {
    const shape: [number, number, number] = [32, 32, 3];
    const backbone = () => resnetSmall({ inChannels: 3, seed: 0, norm: (c) => new SplitBatchNorm(c, { groups: 8 }) });
    const method = new MoCoV2({ backbone: backbone(), keyBackbone: backbone(), inputShape: shape, queueSize: 4096, momentum: 0.99, bnSplits: 8, shuffleBn: true });
    const images = tf.randomUniform([batch, ...shape], 0, 1, "float32", 1) as tf.Tensor4D;
    const warmupSteps = 2;
    const { stepMs, loss } = await timeMethod(method, images, warmupSteps, steps);
    return { figure: "moco-v2-resnet-small", batch, input: "32x32x3 x 2 views", params: method.trainable.numParameters(), queue: 4096, bnSplits: 8, warmupSteps, steps, ...stepSpeed(batch, stepMs), peakRssMB: peakRssMB(), loss: +loss.toFixed(4) };
  }
  const shape: [number, number, number] = [28, 28, 1];
  const vit = () => vitTiny({ imageSize: 28, inChannels: 1, seed: 0 });
  const method = new MoCoV3({ backbone: vit(), keyBackbone: vit(), inputShape: shape, projectionHiddenDim: 512, projectionDim: 128, momentum: 0.99, cropScale: [0.2, 1] });
  const images = tf.randomUniform([batch, ...shape], 0, 1, "float32", 2) as tf.Tensor4D;
  const warmupSteps = 3;
  const { stepMs, loss } = await timeMethod(method, images, warmupSteps, steps);
  return { figure: "moco-v3-vit-tiny", batch, input: "28x28x1 x 2 views", params: method.trainable.numParameters(), warmupSteps, steps, ...stepSpeed(batch, stepMs), peakRssMB: peakRssMB(), loss: +loss.toFixed(4) };
}

async function child(which: Figure, stepsOverride: number | undefined): Promise<void> {
  const info = await initBackend();
  const result = await figure(which, stepsOverride ?? (which === "moco-v2" ? 5 : 10));
  printFigure("step-moco", result, info);
}

const stepsFlag = argValue("steps");
const steps = stepsFlag !== undefined ? Number(stepsFlag) : undefined;
const which = childFigure<Figure>();
if (which) child(which, steps).catch(figureFailed("step-moco", which));
else runFigureChildren(__filename, FIGURES, steps !== undefined ? ["--steps", String(steps)] : [], { bench: "step-moco", script: "moco.py" });
