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
import { spawnSync } from "node:child_process";
import * as tf from "@tensorflow/tfjs-core";
import { describeBackend, initBackend } from "../lib/src/backend";
import { DINO } from "../lib/src/methods/dino";
import { vitTiny } from "../lib/src/nn/vit";
import { Rng } from "../lib/src/random";
import { AdamW, clipGradientsByGlobalNorm } from "../lib/src/train/optimizers";

const args = process.argv.slice(2);
const argValue = (flag: string, fallback: number) => {
  const i = args.indexOf(flag);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const PROFILE = args.includes("--profile");

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function printProfile(step: (i: number) => Promise<number>): Promise<void> {
  const info = await tf.profile(async () => {
    await step(1000);
  });
  const byName = new Map<string, { ms: number; calls: number; shapes: Map<string, number> }>();
  for (const k of info.kernels) {
    const e = byName.get(k.name) ?? { ms: 0, calls: 0, shapes: new Map() };
    const ms = Number(k.kernelTimeMs) || 0;
    e.ms += ms;
    e.calls++;
    const key = JSON.stringify(k.inputShapes);
    e.shapes.set(key, (e.shapes.get(key) ?? 0) + ms);
    byName.set(k.name, e);
  }
  for (const [name, e] of [...byName].sort((a, b) => b[1].ms - a[1].ms).slice(0, 25)) {
    const top = [...e.shapes].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([sh, ms]) => `${sh} ${ms.toFixed(0)}ms`).join("; ");
    console.error(`  ${name.padEnd(28)} ${e.ms.toFixed(0).padStart(6)} ms ${String(e.calls).padStart(5)} calls  ${top}`);
  }
}

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
  const step = async (i: number) => {
    const ctx = { step: i, totalSteps, epoch: 0, rng: new Rng(i) };
    const crops = tf.tidy(() => method.views(images, ctx));
    const { value, grads } = tf.variableGrads(() => method.step(crops, ctx).loss, vars);
    const clipped = clipGradientsByGlobalNorm(grads, 3);
    opt.applyGradients(clipped.grads);
    method.afterStep(ctx);
    const loss = (await value.data())[0];
    tf.dispose([value, ...crops, ...Object.values(grads), ...Object.values(clipped.grads), clipped.globalNorm]);
    return loss;
  };
  const warmupSteps = 3;
  const stepMs: number[] = [];
  let loss = NaN;
  for (let i = 0; i < warmupSteps + steps; i++) {
    const t0 = performance.now();
    loss = await step(i);
    if (i >= warmupSteps) stepMs.push(performance.now() - t0);
  }
  if (PROFILE) await printProfile(step);
  const ms = median(stepMs);
  const result = {
    figure: "dino-vit-tiny",
    batch,
    input: `28x28x1: 2 global 28x28 + ${localCrops} local 12x12 crops`,
    outDim,
    headHiddenDim: hidden,
    params: method.trainable.numParameters(),
    warmupSteps,
    steps,
    stepMsMedian: +ms.toFixed(1),
    imagesPerSec: +((batch * 1000) / ms).toFixed(1),
    peakRssMB: +(process.resourceUsage().maxRSS / 1024).toFixed(0),
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
  const result = await dinoFigure(argValue("--steps", 5), argValue("--local-crops", 6), argValue("--out-dim", 4096), argValue("--batch", 128), argValue("--hidden", 2048));
  console.log(JSON.stringify({ bench: "step-dino", ...result, backend: describeBackend(info), threads: info.threads }));
}

if (args.includes("--child")) {
  child().catch((err) => {
    console.log(JSON.stringify({ bench: "step-dino", figure: "dino-vit-tiny", error: String(err?.message ?? err).slice(0, 500) }));
    process.exit(1);
  });
} else {
  // its own process, so the peak RSS is this figure's alone
  const r = spawnSync(process.execPath, ["--import", "tsx", __filename, "--child", ...args], { stdio: "inherit", env: process.env });
  process.exit(r.status ?? 1);
}
