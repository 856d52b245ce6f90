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
import { describeBackend, initBackend } from "../lib/src/backend";
import { BYOL } from "../lib/src/methods/byol";
import { resnetSmall } from "../lib/src/nn/resnet";
import { Rng } from "../lib/src/random";
import { AdamW } from "../lib/src/train/optimizers";

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const stepsArg = args.indexOf("--steps");
  const steps = stepsArg >= 0 ? Number(args[stepsArg + 1]) : 5;
  if (!(Number.isInteger(steps) && steps >= 1)) throw new Error(`--steps expects a positive integer, got '${args[stepsArg + 1]}'`);
  const info = await initBackend();
  const batch = 128;
  const shape: [number, number, number] = [32, 32, 3];
  const totalSteps = 1000;
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
  const vars = method.trainable.variables();
  const warmup = 2;
  const stepMs: number[] = [];
  let loss = NaN;
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    const ctx = { step: i, totalSteps, epoch: 0, rng: new Rng(i) };
    const views = tf.tidy(() => method.views(images, ctx));
    const { value, grads } = tf.variableGrads(() => method.step(views, ctx).loss, vars);
    opt.applyGradients(grads);
    method.afterStep(ctx);
    tf.dispose([...views, ...Object.values(grads)]);
    loss = (await value.data())[0];
    value.dispose();
    if (i >= warmup) stepMs.push(performance.now() - t0);
  }
  const ms = median(stepMs);
  console.log(
    JSON.stringify({
      bench: "step-byol",
      figure: "byol-resnet-small",
      batch,
      input: "32x32x3 x 2 views",
      params: method.trainable.numParameters(),
      warmupSteps: warmup,
      steps,
      stepMsMedian: +ms.toFixed(1),
      imagesPerSec: +((batch * 1000) / ms).toFixed(1),
      peakRssMB: +(process.resourceUsage().maxRSS / 1024).toFixed(0),
      loss: +loss.toFixed(4),
      backend: describeBackend(info),
      threads: info.threads,
    }),
  );
  opt.dispose();
  images.dispose();
  method.dispose();
}

main().catch((err) => {
  console.log(JSON.stringify({ bench: "step-byol", figure: "byol-resnet-small", error: String(err?.message ?? err).slice(0, 500) }));
  process.exit(1);
});
