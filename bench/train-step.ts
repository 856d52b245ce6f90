/**
 * Training-step throughput and peak memory, one JSON line per figure:
 *   (a) simclr-resnet-small: SimCLR step (two simclrTransform views, resnetSmall + projection head,
 *       NT-Xent, AdamW) at batch 128 on 32x32x3 images. Target (not asserted): >= 100 img/s, peak RSS <= 2.5 GB.
 *   (a') simclr-resnet-tiny: the same step with the half-width resnet-tiny, 16/32/64/128 (context, no target).
 *   (b) mae-vit-tiny: masked-autoencoder step on 28x28x1 (ViT-tiny: patch 4, dim 128, depth 4, 4 heads;
 *       75% of patches masked via ViT.forwardTokens(x, {keep}); a one-block dim-64 decoder; MSE on the
 *       masked patches; AdamW) at batch 128. Target (not asserted): >= 180 img/s.
 * Each figure runs in its own child process, so the peak RSS is that figure's alone.
 * images/s counts source images (not views) per optimisation step.
 *
 *   node --import tsx bench/train-step.ts [simclr|simclr-tiny|mae] [--steps N] [--profile]
 * Timed steps default to 5 (SimCLR) and 20 (MAE), after 2 and 5 warm-up steps.
 * --profile adds one profiled step per figure: kernel time per kernel name and input shapes (stderr);
 * SSLKIT_PROFILE_KERNEL=<name> lists every shape of that kernel.
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../lib/src/backend";
import { SimCLR } from "../lib/src/methods/simclr";
import { Module } from "../lib/src/nn/module";
import { LayerNorm, Linear } from "../lib/src/nn/layers";
import { resnetSmall, resnetTiny } from "../lib/src/nn/resnet";
import { TransformerBlock, get2dSincosPosEmbed, vitTiny } from "../lib/src/nn/vit";
import * as fastOps from "../lib/src/nn/fast-ops";
import { Rng } from "../lib/src/random";
import { AdamW } from "../lib/src/train/optimizers";
import { argValue, childFigure, figureFailed, methodStep, peakRssMB, printFigure, printProfile, runFigureChildren, stepSpeed, timeSteps } from "./common";

const FIGURES = ["simclr", "simclr-tiny", "mae"] as const;
type Figure = (typeof FIGURES)[number];

/** `--profile`: one more profiled step per figure (bench/common.ts's printProfile). */
const PROFILE = process.argv.includes("--profile");

/**
 * SimCLR step. `tiny` swaps resnet-small (widths 32/64/128/256) for resnet-tiny (16/32/64/128,
 * ~1/4 of the FLOPs), for context: at full width the convolutions alone are ~97 GFLOP a step.
 */
async function simclrFigure(steps: number, tiny = false): Promise<Record<string, unknown>> {
  const batch = 128;
  const shape: [number, number, number] = [32, 32, 3];
  const method = new SimCLR({ backbone: (tiny ? resnetTiny : resnetSmall)({ inChannels: 3, seed: 0 }), inputShape: shape, temperature: 0.2, projectionHiddenDim: 512, projectionDim: 128 });
  const opt = new AdamW(method.trainable.parameters(), { lr: 1e-3, weightDecay: 1e-6 });
  const images = tf.randomUniform([batch, ...shape], 0, 1, "float32", 1) as tf.Tensor4D;
  const step = methodStep(method, opt, images);
  const warmupSteps = 2;
  const { stepMs, loss } = await timeSteps(step, warmupSteps, steps);
  if (PROFILE) await printProfile("simclr", step);
  return {
    figure: tiny ? "simclr-resnet-tiny" : "simclr-resnet-small",
    batch,
    input: "32x32x3 x 2 views",
    params: method.trainable.numParameters(),
    warmupSteps,
    steps,
    ...stepSpeed(batch, stepMs),
    ...(tiny ? {} : { targetImagesPerSec: 100 }),
    peakRssMB: peakRssMB(),
    ...(tiny ? {} : { targetPeakRssMB: 2560 }),
    loss: +loss.toFixed(4),
  };
}

/** MAE-style light decoder: embed to 64, mask tokens + sincos positions, one block, predict patch pixels. */
class LightMaeDecoder extends Module {
  readonly embed: Linear;
  readonly maskToken: tf.Variable;
  readonly block: TransformerBlock;
  readonly norm: LayerNorm;
  readonly pred: Linear;
  readonly posTable: Float32Array;

  constructor(encDim: number, readonly dim: number, grid: [number, number], patchPixels: number, rng: Rng) {
    super();
    this.embed = this.addChild("embed", new Linear(encDim, dim, { rng }));
    this.maskToken = this.addParam("maskToken", tf.mul(tf.randomNormal([1, 1, dim], 0, 1, "float32", rng.seed()), 0.02), { decay: false });
    this.block = this.addChild("block", new TransformerBlock(dim, 4, 4, rng));
    this.norm = this.addChild("norm", new LayerNorm(dim));
    this.pred = this.addChild("pred", new Linear(dim, patchPixels, { rng }));
    this.posTable = get2dSincosPosEmbed(dim, grid[0], grid[1], false);
  }

  /** Position embeddings of the given patch indices per image: [N, K, dim] (a constant). */
  positions(idx: Int32Array, n: number, k: number): tf.Tensor3D {
    const out = new Float32Array(n * k * this.dim);
    for (let i = 0; i < n * k; i++) out.set(this.posTable.subarray(idx[i] * this.dim, (idx[i] + 1) * this.dim), i * this.dim);
    return tf.tensor3d(out, [n, k, this.dim]);
  }

  /**
   * Visible tokens then mask tokens, each with its own position embedding (attention is
   * permutation-equivariant, so no unshuffle is needed); returns predictions of the masked patches.
   */
  forward(visible: tf.Tensor3D, keep: Int32Array, masked: Int32Array): tf.Tensor3D {
    const [n, k] = visible.shape;
    const m = masked.length / n;
    const vis = tf.add(this.embed.forward(visible), this.positions(keep, n, k));
    const mask = tf.add(fastOps.broadcastTo(this.maskToken, [n, m, this.dim]), this.positions(masked, n, m));
    const h = this.norm.forward(this.block.forward(tf.concat([vis, mask], 1) as tf.Tensor3D));
    return this.pred.forward(tf.slice(h, [0, k, 0], [n, m, this.dim])) as tf.Tensor3D;
  }
}

async function maeFigure(steps: number): Promise<Record<string, unknown>> {
  const batch = 128;
  const patch = 4;
  const encoder = vitTiny({ imageSize: 28, inChannels: 1, seed: 0 });
  const numPatches = encoder.numPatches;
  const keepCount = Math.round(numPatches * 0.25);
  const maskCount = numPatches - keepCount;
  const decoder = new LightMaeDecoder(encoder.dim, 64, encoder.gridSize, patch * patch, new Rng(1));
  const params = [...encoder.parameters().map((p) => ({ ...p, name: `encoder.${p.name}` })), ...decoder.parameters().map((p) => ({ ...p, name: `decoder.${p.name}` }))];
  const opt = new AdamW(params, { lr: 1.5e-4, weightDecay: 0.05 });
  const images = tf.randomUniform([batch, 28, 28, 1], 0, 1, "float32", 2) as tf.Tensor4D;
  const patchPixels = tf.tidy(() => fastOps.patchify(images, patch)).arraySync() as number[][][];
  const vars = params.map((p) => p.variable);
  const step = (i: number) => {
    const rng = new Rng(i);
    const keep = new Int32Array(batch * keepCount);
    const masked = new Int32Array(batch * maskCount);
    const target = new Float32Array(batch * maskCount * patch * patch);
    for (let n = 0; n < batch; n++) {
      const perm = rng.permutation(numPatches);
      keep.set(perm.subarray(0, keepCount), n * keepCount);
      masked.set(perm.subarray(keepCount), n * maskCount);
      for (let j = 0; j < maskCount; j++) target.set(patchPixels[n][perm[keepCount + j]], (n * maskCount + j) * patch * patch);
    }
    const targetT = tf.tensor3d(target, [batch, maskCount, patch * patch]);
    const { value, grads } = tf.variableGrads(() => {
      const { patches } = encoder.forwardTokens(images, { keep });
      const pred = decoder.forward(patches, keep, masked);
      return tf.mean(tf.square(tf.sub(pred, targetT))) as tf.Scalar; // MAE eq.: MSE on masked patches
    }, vars);
    opt.applyGradients(grads);
    tf.dispose([targetT, ...Object.values(grads)]);
    return value;
  };
  const warmupSteps = 5; // the first ~5 steps run 10-20% slower (JIT, heap growth) before a steady state
  const { stepMs, loss } = await timeSteps(step, warmupSteps, steps);
  if (PROFILE) await printProfile("mae", step);
  return {
    figure: "mae-vit-tiny",
    batch,
    input: "28x28x1, patch 4, 75% masked",
    params: params.reduce((s, p) => s + p.variable.size, 0),
    warmupSteps,
    steps,
    ...stepSpeed(batch, stepMs),
    targetImagesPerSec: 180,
    peakRssMB: peakRssMB(),
    loss: +loss.toFixed(4),
  };
}

async function child(figure: Figure, stepsOverride: number | undefined): Promise<void> {
  const info = await initBackend();
  const steps = stepsOverride ?? (figure === "mae" ? 20 : 5); // ~15 s and ~35 s of timed steps
  const result = figure === "mae" ? await maeFigure(steps) : await simclrFigure(steps, figure === "simclr-tiny");
  printFigure("train-step", result, info);
}

const stepsArg = argValue("steps");
const steps = stepsArg !== undefined ? Number(stepsArg) : undefined;
const figure = childFigure<Figure>();
if (figure) {
  child(figure, steps).catch(figureFailed("train-step", figure));
} else {
  runFigureChildren(__filename, FIGURES, [...(steps !== undefined ? ["--steps", String(steps)] : []), ...(PROFILE ? ["--profile"] : [])]);
}
