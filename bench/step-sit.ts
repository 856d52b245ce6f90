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
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../lib/src/backend";
import { SiT } from "../lib/src/methods/sit";
import { vitTiny } from "../lib/src/nn/vit";
import { AdamW } from "../lib/src/train/optimizers";
import { argValue, childFigure, figureFailed, median, methodStep, peakRssMB, printFigure, runFigureChildren, timeSteps } from "./common";

const FIGURES = ["sit", "sit-recon"] as const;
type Figure = (typeof FIGURES)[number];

async function sitFigure(figure: Figure, steps: number): Promise<Record<string, unknown>> {
  const batch = 128;
  const contrastive = figure === "sit";
  const method = new SiT({ backbone: vitTiny({ imageSize: 28, inChannels: 1, seed: 0 }), inputShape: [28, 28, 1], corruption: "noise+replace", corruptionRatio: 0.5, contrastive, projectionHiddenDim: 512, projectionDim: 128 });
  const opt = new AdamW(method.trainable.parameters(), { lr: 1e-3, weightDecay: 0.05 });
  const images = tf.randomUniform([batch, 28, 28, 1], 0, 1, "float32", 1) as tf.Tensor4D;
  const warmup = 3;
  const viewsMs: number[] = [];
  const step = methodStep(method, opt, images, (i, ms) => {
    if (i >= warmup) viewsMs.push(ms);
  });
  const { stepMs, loss } = await timeSteps(step, warmup, steps);
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
    peakRssMB: peakRssMB(),
    loss: +loss.toFixed(4),
  };
  tf.dispose(images);
  opt.dispose();
  method.dispose();
  return out;
}

const steps = Number(argValue("steps") ?? 10);
const figure = childFigure<Figure>();
if (figure) {
  (async () => {
    const info = await initBackend();
    printFigure("step-sit", await sitFigure(figure, steps), info);
  })().catch(figureFailed("step-sit", figure));
} else {
  runFigureChildren(__filename, FIGURES, ["--steps", String(steps)]);
}
