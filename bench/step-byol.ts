/**
 * BYOL training-step throughput and peak memory, one JSON line:
 *   byol-resnet-small: a full BYOL step at batch 128 on 32x32x3 images: the two byolTransforms
 *   views, the online resnet-small + projector (256 -> 1024 (BN, ReLU) -> 256) + predictor
 *   (256 -> 1024 (BN, ReLU) -> 256) forward and backward, the target network's forward (off the
 *   gradient tape), the symmetrised loss, AdamW, and the target's EMA update (tau_base 0.99).
 * The PyTorch reference of the same step is bench/torch/byol.py (views made once there, so it
 * times the model step only; sslkit times its batched augmentation inside the step).
 * images/s counts source images (not views) per optimisation step.
 *
 *   node --import tsx bench/step-byol.ts [--steps N]      (default 5 timed steps after 2 warm-up steps)
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../lib/src/backend";
import { BYOL } from "../lib/src/methods/byol";
import { resnetSmall } from "../lib/src/nn/resnet";
import { AdamW } from "../lib/src/train/optimizers";
import { argValue, figureFailed, methodStep, peakRssMB, printFigure, stepSpeed, timeSteps } from "./common";

async function main(): Promise<void> {
  const stepsArg = argValue("steps");
  const steps = stepsArg !== undefined ? Number(stepsArg) : 5;
  if (!(Number.isInteger(steps) && steps >= 1)) throw new Error(`--steps expects a positive integer, got '${stepsArg}'`);
  const info = await initBackend();
  const batch = 128;
  const shape: [number, number, number] = [32, 32, 3];
  const method = new BYOL({
    backbone: resnetSmall({ inChannels: 3, seed: 0 }),
    targetBackbone: resnetSmall({ inChannels: 3, seed: 1 }),
    inputShape: shape,
    projectionHiddenDim: 1024,
    projectionDim: 256,
    targetMomentum: 0.99,
    cropScale: [0.08, 1],
  });
  const opt = new AdamW(method.trainable.parameters(), { lr: 1e-3, weightDecay: 1e-6 });
  const images = tf.randomUniform([batch, ...shape], 0, 1, "float32", 1) as tf.Tensor4D;
  const warmup = 2;
  const { stepMs, loss } = await timeSteps(methodStep(method, opt, images), warmup, steps);
  printFigure(
    "step-byol",
    {
      figure: "byol-resnet-small",
      batch,
      input: "32x32x3 x 2 views",
      params: method.trainable.numParameters(),
      warmupSteps: warmup,
      steps,
      ...stepSpeed(batch, stepMs),
      peakRssMB: peakRssMB(),
      loss: +loss.toFixed(4),
    },
    info,
  );
  opt.dispose();
  images.dispose();
  method.dispose();
}

main().catch(figureFailed("step-byol", "byol-resnet-small"));
