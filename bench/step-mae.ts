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
import { describeBackend, initBackend } from "../lib/src/backend";
import type { MaskSampling } from "../lib/src/augment/patch-masking";
import { MAE } from "../lib/src/methods/mae";
import { vitTiny } from "../lib/src/nn/vit";
import { Rng } from "../lib/src/random";
import { AdamW } from "../lib/src/train/optimizers";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  const info = await initBackend();
  const batch = 128;
  const steps = Number(arg("steps") ?? 20);
  const warmupSteps = 5;
  const maskRatio = Number(arg("ratio") ?? 0.75);
  const maskSampling = (arg("sampling") ?? "random") as MaskSampling;
  const decoderDepth = Number(arg("decoder-depth") ?? 2);
  const method = new MAE({ backbone: vitTiny({ seed: 0 }), inputShape: [28, 28, 1], maskRatio, maskSampling, normPix: true, decoderDepth, seed: 0 });
  const opt = new AdamW(method.trainable.parameters(), { lr: 1e-3, weightDecay: 0.05 });
  const images = tf.randomUniform([batch, 28, 28, 1], 0, 1, "float32", 2) as tf.Tensor4D;
  const vars = method.trainable.variables();
  const step = (i: number): tf.Scalar => {
    const ctx = { step: i, totalSteps: 1000, epoch: 0, rng: new Rng(i) };
    const views = tf.tidy(() => method.views(images, ctx));
    const { value, grads } = tf.variableGrads(() => method.step(views, ctx).loss, vars);
    opt.applyGradients(grads);
    tf.dispose([...views, ...Object.values(grads)]);
    return value;
  };
  const stepMs: number[] = [];
  let loss = NaN;
  for (let i = 0; i < warmupSteps + steps; i++) {
    const t0 = performance.now();
    const l = step(i);
    loss = (await l.data())[0];
    l.dispose();
    if (i >= warmupSteps) stepMs.push(performance.now() - t0);
  }
  if (process.argv.includes("--profile")) {
    const prof = await tf.profile(() => step(1000));
    const byName = new Map<string, number>();
    for (const k of prof.kernels) byName.set(k.name, (byName.get(k.name) ?? 0) + (Number(k.kernelTimeMs) || 0));
    for (const [name, ms] of [...byName].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.error(`  ${name.padEnd(28)} ${ms.toFixed(0).padStart(6)} ms`);
  }
  const ms = median(stepMs);
  console.log(
    JSON.stringify({
      bench: "step-mae",
      figure: "mae-method-vit-tiny",
      batch,
      input: `28x28x1, patch 4, ${Math.round(maskRatio * 100)}% ${maskSampling} masking, crop+flip view, norm-pix, decoder ${decoderDepth}x64`,
      params: method.trainable.numParameters(),
      warmupSteps,
      steps,
      stepMsMedian: +ms.toFixed(1),
      imagesPerSec: +((batch * 1000) / ms).toFixed(1),
      peakRssMB: +(process.resourceUsage().maxRSS / 1024).toFixed(0),
      loss: +loss.toFixed(4),
      backend: describeBackend(info),
      threads: info.threads,
    }),
  );
  tf.dispose(images);
  opt.dispose();
  method.dispose();
}

main().catch((err) => {
  console.log(JSON.stringify({ bench: "step-mae", figure: "mae-method-vit-tiny", error: String(err?.message ?? err).slice(0, 500) }));
  process.exit(1);
});
