/**
 * The MAE method's training step (lib/src/methods/mae.ts, as `sslkit train mae` runs it), one JSON
 * line per figure:
 *   mae-method-vit-tiny: batch 128 of 28x28x1, crop + flip view, 75% random masking drawn on the
 *     host, ViT-tiny encoder on the visible patches, the 2-block dim-64 decoder (mask tokens,
 *     unshuffle, its own sin-cos positions, class token), normalised-pixel MSE on the removed
 *     patches, AdamW. bench/train-step.ts's `mae-vit-tiny` is the bare model step (one decoder
 *     block, no augmentation, no class token in the decoder); bench/torch/mae.py is this step in
 *     PyTorch.
 * images/s counts source images per optimisation step.
 *
 *   node --import tsx bench/step-mae.ts [--steps N] [--ratio R] [--sampling random|block|grid]
 *                                       [--decoder-depth D] [--profile]
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../lib/src/backend";
import type { MaskSampling } from "../lib/src/augment/patch-masking";
import { MAE } from "../lib/src/methods/mae";
import { vitTiny } from "../lib/src/nn/vit";
import { AdamW } from "../lib/src/train/optimizers";
import { argValue, figureFailed, methodStep, peakRssMB, printFigure, printProfile, stepSpeed, timeSteps } from "./common";

async function main(): Promise<void> {
  const info = await initBackend();
  const batch = 128;
  const steps = Number(argValue("steps") ?? 20);
  const warmupSteps = 5;
  const maskRatio = Number(argValue("ratio") ?? 0.75);
  const maskSampling = (argValue("sampling") ?? "random") as MaskSampling;
  const decoderDepth = Number(argValue("decoder-depth") ?? 2);
  const method = new MAE({ backbone: vitTiny({ seed: 0 }), inputShape: [28, 28, 1], maskRatio, maskSampling, normPix: true, decoderDepth, seed: 0 });
  const opt = new AdamW(method.trainable.parameters(), { lr: 1e-3, weightDecay: 0.05 });
  const images = tf.randomUniform([batch, 28, 28, 1], 0, 1, "float32", 2) as tf.Tensor4D;
  const step = methodStep(method, opt, images);
  const { stepMs, loss } = await timeSteps(step, warmupSteps, steps);
  if (process.argv.includes("--profile")) await printProfile("mae-method", step);
  printFigure(
    "step-mae",
    {
      figure: "mae-method-vit-tiny",
      batch,
      input: `28x28x1, patch 4, ${Math.round(maskRatio * 100)}% ${maskSampling} masking, crop+flip view, norm-pix, decoder ${decoderDepth}x64`,
      params: method.trainable.numParameters(),
      warmupSteps,
      steps,
      ...stepSpeed(batch, stepMs),
      peakRssMB: peakRssMB(),
      loss: +loss.toFixed(4),
    },
    info,
  );
  tf.dispose(images);
  opt.dispose();
  method.dispose();
}

main().catch(figureFailed("step-mae", "mae-method-vit-tiny"));
