/**
 * SiT / GMML training-step throughput and peak memory, one JSON line per figure:
 *   sit-vit-tiny:        the SiT step of lib/src/methods/sit.ts at batch 128 on 28x28x1: two clean views
 *                        (crop + flip + brightness/contrast), GMML noise+replace at 50% on each, the ViT-tiny
 *                        student (patch 4, dim 128, depth 4, 4 heads) on the 2N corrupted views, the
 *                        reconstruction head (2 x Linear(128)-GELU, Linear(128, 16)), masked l1, the contrastive
 *                        head (512-BN-GELU x2, 128) with cross-view NT-Xent against the momentum teacher on the
 *                        clean views, AdamW, and the teacher's EMA update.
 *   sit-recon-vit-tiny:  the same with --no-contrastive (one corrupted view, no teacher).
 * `viewsMs` is the part of a step spent making the views (augmentation + GMML, on the CPU in JS);
 * `modelImagesPerSec` leaves it out, which is what bench/torch/sit.py measures (views made once).
 * images/s counts source images per optimisation step. Target (issue 15): at least PyTorch's figure.
 *
 *   node --import tsx bench/step-sit.ts [sit|sit-recon] [--steps N]
 */
import { spawnSync } from "node:child_process";
import * as tf from "@tensorflow/tfjs-core";
import { describeBackend, initBackend } from "../lib/src/backend";
import { SiT } from "../lib/src/methods/sit";
import { vitTiny } from "../lib/src/nn/vit";
import { Rng } from "../lib/src/random";
import { AdamW } from "../lib/src/train/optimizers";

const FIGURES = ["sit", "sit-recon"] as const;
type Figure = (typeof FIGURES)[number];

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function sitFigure(figure: Figure, steps: number): Promise<Record<string, unknown>> {
  const batch = 128;
  const contrastive = figure === "sit";
  const method = new SiT({ backbone: vitTiny({ imageSize: 28, inChannels: 1, seed: 0 }), inputShape: [28, 28, 1], corruption: "noise+replace", corruptionRatio: 0.5, contrastive, projectionHiddenDim: 512, projectionDim: 128 });
  const opt = new AdamW(method.trainable.parameters(), { lr: 1e-3, weightDecay: 0.05 });
  const images = tf.randomUniform([batch, 28, 28, 1], 0, 1, "float32", 1) as tf.Tensor4D;
  const vars = method.trainable.variables();
  const warmup = 3;
  const stepMs: number[] = [];
  const viewsMs: number[] = [];
  let loss = NaN;
  for (let i = 0; i < warmup + steps; i++) {
    const ctx = { step: i, totalSteps: 1000, epoch: 0, rng: new Rng(i) };
    const t0 = performance.now();
    const views = tf.tidy(() => method.views(images, ctx));
    const t1 = performance.now();
    const { value, grads } = tf.variableGrads(() => method.step(views, ctx).loss, vars);
    opt.applyGradients(grads);
    method.afterStep(ctx);
    loss = (await value.data())[0];
    tf.dispose([value, ...views, ...Object.values(grads)]);
    if (i >= warmup) {
      stepMs.push(performance.now() - t0);
      viewsMs.push(t1 - t0);
    }
  }
  const ms = median(stepMs);
  const vms = median(viewsMs);
  const out = {
    figure: `${figure}-vit-tiny`,
    batch,
    input: `28x28x1, ${contrastive ? "2 views" : "1 view"}, GMML noise+replace 50%`,
    params: method.trainable.numParameters(),
    warmupSteps: warmup,
    steps,
    stepMsMedian: +ms.toFixed(1),
    viewsMs: +vms.toFixed(1),
    imagesPerSec: +((batch * 1000) / ms).toFixed(1),
    modelImagesPerSec: +((batch * 1000) / (ms - vms)).toFixed(1),
    peakRssMB: +(process.resourceUsage().maxRSS / 1024).toFixed(0),
    loss: +loss.toFixed(4),
  };
  tf.dispose(images);
  opt.dispose();
  method.dispose();
  return out;
}

const args = process.argv.slice(2);
const stepsArg = args.indexOf("--steps");
const steps = stepsArg >= 0 ? Number(args[stepsArg + 1]) : 10;
const childFigure = args.find((a) => a.startsWith("--child="))?.slice("--child=".length) as Figure | undefined;
if (childFigure) {
  (async () => {
    const info = await initBackend();
    const result = await sitFigure(childFigure, steps);
    console.log(JSON.stringify({ bench: "step-sit", ...result, backend: describeBackend(info), threads: info.threads }));
  })().catch((err) => {
    console.log(JSON.stringify({ bench: "step-sit", figure: childFigure, error: String(err?.message ?? err).slice(0, 500) }));
    process.exit(1);
  });
} else {
  // each figure in its own process, so the peak RSS is that figure's alone
  const only = args.filter((a) => (FIGURES as readonly string[]).includes(a)) as Figure[];
  let failed = 0;
  for (const figure of only.length > 0 ? only : FIGURES) {
    const r = spawnSync(process.execPath, ["--import", "tsx", __filename, `--child=${figure}`, "--steps", String(steps)], { stdio: "inherit", env: process.env });
    if (r.status !== 0) failed++;
  }
  process.exit(failed > 0 ? 1 : 0);
}
