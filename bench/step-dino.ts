/**
 * DINO training-step throughput and peak memory, one JSON line per figure:
 *   dino-vit-tiny: a DINO step (Caron et al. 2021) on 28x28x1 images at batch 128: dinoMultiCrop
 *   (2 global 28x28 crops + 6 local 12x12 crops), the student (ViT-tiny: patch 4, dim 128, depth 4,
 *   4 heads, position embeddings interpolated for the locals) on all 8 crops, the EMA teacher on the
 *   2 globals, DINO head (2048 hidden, 256 bottleneck, K = 4096 weight-normalised outputs), the DINO
 *   loss, AdamW with gradient clipping at 3, then the teacher EMA and the center update.
 *   Target (not asserted): peak RSS < 3 GB; at least as fast as bench/torch/dino.py on this machine.
 * images/s counts source images per optimisation step; the multi-crop augmentation is timed inside
 * the step (PyTorch's reference makes its crops once, outside the timing).
 *
 *   node --import tsx bench/step-dino.ts [--steps N] [--local-crops N] [--out-dim K] [--batch B] [--hidden H] [--profile]
 * (the defaults are the figure above; --batch 64 --hidden 512 is the notebook's quick arm)
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../lib/src/backend";
import { DINO } from "../lib/src/methods/dino";
import { vitTiny } from "../lib/src/nn/vit";
import { Rng } from "../lib/src/random";
import { AdamW, clipGradientsByGlobalNorm } from "../lib/src/train/optimizers";
import { argValue, childFigure, figureFailed, peakRssMB, printFigure, printProfile, runFigureChildren, stepSpeed, timeSteps } from "./common";

const num = (flag: string, fallback: number) => Number(argValue(flag) ?? fallback);
const PROFILE = process.argv.includes("--profile");

async function dinoFigure(steps: number, localCrops: number, outDim: number, batch: number, hidden: number): Promise<Record<string, unknown>> {
  const method = new DINO({
    backbone: vitTiny({ seed: 0 }),
    teacherBackbone: vitTiny({ seed: 0 }),
    inputShape: [28, 28, 1],
    outDim,
    headHiddenDim: hidden,
    bottleneckDim: 256,
    numLocalCrops: localCrops,
    localCropSize: 12,
    freezeLastLayerEpochs: 0,
  });
  const params = method.trainable.parameters();
  const opt = new AdamW(params, { lr: 5e-4, weightDecay: 0.04 });
  const vars = params.map((p) => p.variable);
  const images = tf.randomUniform([batch, 28, 28, 1], 0, 1, "float32", 1) as tf.Tensor4D;
  const totalSteps = 1000;
  // methodStep's step with the gradients clipped at 3 before the update
  const step = (i: number): tf.Scalar => {
    const ctx = { step: i, totalSteps, epoch: 0, rng: new Rng(i) };
    const crops = tf.tidy(() => method.views(images, ctx));
    const { value, grads } = tf.variableGrads(() => method.step(crops, ctx).loss, vars);
    const clipped = clipGradientsByGlobalNorm(grads, 3);
    opt.applyGradients(clipped.grads);
    method.afterStep(ctx);
    tf.dispose([...crops, ...Object.values(grads), ...Object.values(clipped.grads), clipped.globalNorm]);
    return value;
  };
  const warmupSteps = 3;
  const { stepMs, loss } = await timeSteps(step, warmupSteps, steps);
  if (PROFILE) await printProfile("dino-vit-tiny", step);
  const result = {
    figure: "dino-vit-tiny",
    batch,
    input: `28x28x1: 2 global 28x28 + ${localCrops} local 12x12 crops`,
    outDim,
    headHiddenDim: hidden,
    params: method.trainable.numParameters(),
    warmupSteps,
    steps,
    ...stepSpeed(batch, stepMs),
    peakRssMB: peakRssMB(),
    targetPeakRssMB: 3072,
    loss: +loss.toFixed(4),
  };
  method.dispose();
  opt.dispose();
  images.dispose();
  return result;
}

async function child(): Promise<void> {
  const info = await initBackend();
  const result = await dinoFigure(num("steps", 5), num("local-crops", 6), num("out-dim", 4096), num("batch", 128), num("hidden", 2048));
  printFigure("step-dino", result, info);
}

if (childFigure()) child().catch(figureFailed("step-dino", "dino-vit-tiny"));
// each figure in its own process, so the peak RSS is the figure's alone
else runFigureChildren(__filename, ["dino-vit-tiny"], process.argv.slice(2));
