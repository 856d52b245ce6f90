/**
 * MAE: maeLoss against hand-computed values (raw and normalised-pixel targets), the patch masks
 * (exact counts per image, block and grid shapes, seeded), the decoder's shapes and gradients on
 * wasm against cpu, the encoder seeing only visible patches, reconstructions, resume through the
 * Trainer, no tensor leak per step, the CLI's option errors and a tiny CLI run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { tf, relError, useBackend, imagesTensor, trainSteps, expectNoLeakPerStep, expectExactResume, runCliSmoke } from "./helpers";
import type { TrainRun } from "./helpers";
import { maeLoss } from "../lib/src/losses";
import { blockPatchMask, gridPatchMask, keptPatchCount, randomPatchMask, samplePatchMask } from "../lib/src/augment/patch-masking";
import type { PatchMask } from "../lib/src/augment/patch-masking";
import { MaeDecoder } from "../lib/src/nn/mae-decoder";
import { ViT } from "../lib/src/nn/vit";
import * as fastOps from "../lib/src/nn/fast-ops";
import { MAE, MeanPooledViT } from "../lib/src/methods/mae";
import type { MAEOptions } from "../lib/src/methods/mae";
import { createMethod, methodConfig } from "../lib/src/methods";
import { parseTrainArgs } from "../lib/src/cli";
import { readCheckpoint } from "../lib/src/train";
import type { TrainerOptions } from "../lib/src/train";
import type { ImageDataset } from "../lib/src/data/types";
import { Rng } from "../lib/src/random";
import { reconstructionGallery } from "../lib/src/viz/gallery";
import sharp from "sharp";

const sq = (x: number) => x * x;

// ---- maeLoss -----------------------------------------------------------------------------------

test("maeLoss: per-patch MSE averaged over the removed patches of the whole batch (hand-computed)", async () => {
  await useBackend("wasm");
  // N=2, L=2, P=3
  const pred = tf.tensor3d([[[1, 2, 3], [0, 0, 0]], [[1, 1, 1], [2, 0, -1]]]);
  const target = tf.tensor3d([[[0, 2, 6], [1, 1, 1]], [[1, 2, 6], [0, 0, 0]]]);
  // per-patch MSE: (1 + 0 + 9)/3, (1 + 1 + 1)/3, (0 + 1 + 25)/3, (4 + 0 + 1)/3
  const mse = [10 / 3, 1, 26 / 3, 5 / 3];
  const mask1 = tf.tensor2d([[1, 0], [1, 1]]); // image 0: 1 removed, image 1: 2 removed -> mean over 3 patches
  assert.ok(Math.abs(maeLoss(pred, target, mask1).dataSync()[0] - (mse[0] + mse[2] + mse[3]) / 3) < 1e-6);
  const mask2 = tf.tensor2d([[0, 1], [0, 0]]);
  assert.ok(Math.abs(maeLoss(pred, target, mask2).dataSync()[0] - mse[1]) < 1e-6);

  // normPix: each target patch -> (x - mean) / sqrt(unbiased var + 1e-6)
  const norm = (p: number[]) => {
    const m = (p[0] + p[1] + p[2]) / 3;
    const v = (sq(p[0] - m) + sq(p[1] - m) + sq(p[2] - m)) / 2; // unbiased: / (P - 1)
    return p.map((x) => (x - m) / Math.sqrt(v + 1e-6));
  };
  const t = [[0, 2, 6], [1, 1, 1], [1, 2, 6], [0, 0, 0]].map(norm); // [1,1,1] and [0,0,0] -> zeros
  const p = [[1, 2, 3], [0, 0, 0], [1, 1, 1], [2, 0, -1]];
  const nmse = p.map((row, i) => row.reduce((s, x, j) => s + sq(x - t[i][j]), 0) / 3);
  assert.ok(Math.abs(t[0][2] - 10 / 3 / Math.sqrt(28 / 3 + 1e-6)) < 1e-9); // mean 8/3, unbiased var 28/3
  const got = maeLoss(pred, target, mask1, true).dataSync()[0];
  assert.ok(Math.abs(got - (nmse[0] + nmse[2] + nmse[3]) / 3) < 1e-5, `${got} vs ${(nmse[0] + nmse[2] + nmse[3]) / 3}`);

  // the gradient reaches only the removed patches: dL/dpred = 2 (pred - target) / (P * #removed)
  const g = tf.grad((x: tf.Tensor) => maeLoss(x as tf.Tensor3D, target, mask1))(pred).arraySync() as number[][][];
  assert.ok(g[0][1].every((v) => v === 0), `visible patch gradient ${g[0][1]}`);
  assert.ok(Math.abs(g[1][1][0] - (2 * 2) / (3 * 3)) < 1e-6 && Math.abs(g[0][0][2] - (2 * -3) / 9) < 1e-6);

  assert.throws(() => maeLoss(pred, tf.zeros([2, 2, 4]) as tf.Tensor3D, mask1), /target \[2,2,4\] must have pred's shape/);
  assert.throws(() => maeLoss(pred, target, tf.zeros([2, 3]) as tf.Tensor2D), /mask must be \[N, L\] = \[2,2\]/);
  assert.throws(() => maeLoss(tf.zeros([2, 2, 1]) as tf.Tensor3D, tf.zeros([2, 2, 1]) as tf.Tensor3D, mask1, true), /at least 2 values/);
});

// ---- masks -------------------------------------------------------------------------------------

function checkMask(m: PatchMask, keepCount: number): void {
  const l = m.numPatches;
  assert.equal(m.keepCount, keepCount);
  assert.equal(m.removeCount, l - keepCount);
  for (let i = 0; i < m.n; i++) {
    const kept = Array.from(m.keep.subarray(i * keepCount, (i + 1) * keepCount));
    const gone = Array.from(m.removed.subarray(i * (l - keepCount), (i + 1) * (l - keepCount)));
    assert.deepEqual([...kept, ...gone].sort((a, b) => a - b), Array.from({ length: l }, (_, j) => j), `image ${i}: kept + removed is every patch once`);
    let removed = 0;
    for (let j = 0; j < l; j++) removed += m.mask[i * l + j];
    assert.equal(removed, l - keepCount, `image ${i}: removed count`);
    for (const j of gone) assert.equal(m.mask[i * l + j], 1);
    // ids_restore: the sequence [kept; removed] at idsRestore[l] is patch l
    const seq = [...kept, ...gone];
    for (let j = 0; j < l; j++) assert.equal(seq[m.idsRestore[i * l + j]], j);
  }
}

/** Removed/kept 4-neighbour pairs of one image's mask (short for blocks, long for scattered patches). */
function boundary(m: PatchMask, i: number): number {
  const [gh, gw] = m.grid;
  const r = (y: number, x: number) => m.mask[i * gh * gw + y * gw + x];
  let b = 0;
  for (let y = 0; y < gh; y++) for (let x = 0; x < gw; x++) b += (x + 1 < gw && r(y, x) !== r(y, x + 1) ? 1 : 0) + (y + 1 < gh && r(y, x) !== r(y + 1, x) ? 1 : 0);
  return b;
}

test("masks: random and block remove exactly L - floor(L(1 - r)) patches per image; seeded; different per image", () => {
  for (const [ratio, keep] of [[0.25, 36], [0.5, 24], [0.75, 12], [0.9, 4]] as const) {
    assert.equal(keptPatchCount(49, ratio), keep);
    for (const sample of [randomPatchMask, blockPatchMask]) {
      const m = sample(16, [7, 7], ratio, new Rng(3));
      checkMask(m, keep);
      const again = sample(16, [7, 7], ratio, new Rng(3));
      assert.deepEqual(again.keep, m.keep, `${sample.name} is reproducible from its seed`);
      assert.notDeepEqual(sample(16, [7, 7], ratio, new Rng(4)).mask, m.mask);
      assert.notDeepEqual(m.mask.subarray(0, 49), m.mask.subarray(49, 98), `${sample.name}: images get their own masks`);
    }
  }
  assert.equal(keptPatchCount(10, 0.9), 1, "10 * (1 - 0.9) = 0.999... still keeps one patch");
  assert.throws(() => keptPatchCount(49, 0.99), /keeps 0 of 49 patches/);
  for (const bad of [0, 1, -0.5, NaN]) assert.throws(() => randomPatchMask(2, [7, 7], bad, new Rng(0)), /mask ratio must be in \(0, 1\)/);
  assert.throws(() => samplePatchMask(2, [7, 7], 0.75, new Rng(0), "diagonal" as never), /random, block, grid/);
  // random masking removes each patch with probability ~ratio (argsort of uniform noise)
  const big = randomPatchMask(2000, [7, 7], 0.75, new Rng(9));
  for (let j = 0; j < 49; j++) {
    let c = 0;
    for (let i = 0; i < 2000; i++) c += big.mask[i * 49 + j];
    assert.ok(Math.abs(c / 2000 - 37 / 49) < 0.04, `patch ${j} removed in ${c / 2000} of images`);
  }
});

test("masks: block masks are contiguous blocks (BEiT), grid keeps the top-left patch of each 2x2 cell", () => {
  for (const ratio of [0.5, 0.75]) {
    const block = blockPatchMask(200, [7, 7], ratio, new Rng(5));
    const random = randomPatchMask(200, [7, 7], ratio, new Rng(5));
    let bb = 0;
    let rb = 0;
    for (let i = 0; i < 200; i++) {
      bb += boundary(block, i);
      rb += boundary(random, i);
      // every removed patch touches another removed one
      for (let p = 0; p < 49; p++) {
        if (!block.mask[i * 49 + p]) continue;
        const [y, x] = [Math.floor(p / 7), p % 7];
        const nb = [[y - 1, x], [y + 1, x], [y, x - 1], [y, x + 1]].filter(([a, b]) => a >= 0 && a < 7 && b >= 0 && b < 7);
        assert.ok(nb.some(([a, b]) => block.mask[i * 49 + a * 7 + b] === 1), `image ${i}: removed patch ${p} is isolated`);
      }
    }
    assert.ok(bb < 0.6 * rb, `ratio ${ratio}: block boundary ${bb / 200} per image vs random ${rb / 200}`);
  }
  const g7 = gridPatchMask(3, [7, 7]);
  checkMask(g7, 16);
  assert.deepEqual(Array.from(g7.keep.subarray(0, 16)), [0, 2, 4, 6, 14, 16, 18, 20, 28, 30, 32, 34, 42, 44, 46, 48]);
  assert.deepEqual(g7.mask.subarray(0, 49), g7.mask.subarray(98, 147), "the same grid for every image");
  const g8 = gridPatchMask(1, [8, 8]);
  checkMask(g8, 16); // exactly 75% removed on an even grid
  for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) assert.equal(g8.mask[y * 8 + x], y % 2 === 0 && x % 2 === 0 ? 0 : 1);
  assert.throws(() => gridPatchMask(1, [7, 7], 0.5), /one patch of every 2x2 cell \(ratio 0.75\)/);
  assert.deepEqual(samplePatchMask(2, [8, 8], 0.75, new Rng(1), "grid").mask, gridPatchMask(2, [8, 8]).mask);
});

// ---- decoder and method ------------------------------------------------------------------------

/** A 16x16x1 ViT with 4x4 patches (a 4x4 grid) and a tiny decoder: cheap on the cpu backend. */
function tinyMae(opts: Partial<MAEOptions> = {}, seed = 0): MAE {
  const backbone = new ViT({ imageSize: 16, inChannels: 1, patchSize: 4, dim: 16, depth: 1, heads: 2, mlpRatio: 2, seed });
  return new MAE({ backbone, inputShape: [16, 16, 1], decoderDim: 8, decoderDepth: 1, decoderHeads: 2, seed, ...opts });
}

function randomImages(n: number, seed: number): tf.Tensor4D {
  const rng = new Rng(seed);
  return tf.tensor4d(Float32Array.from({ length: n * 256 }, () => rng.next()), [n, 16, 16, 1]);
}

async function stepAndGrads(backend: "wasm" | "cpu", normPix: boolean) {
  await useBackend(backend);
  const method = tinyMae({ normPix });
  const x = randomImages(4, 1);
  const vars = method.trainable.parameters();
  const { value, grads } = tf.variableGrads(() => method.step([x], { step: 0, totalSteps: 1, epoch: 0, rng: new Rng(7) }).loss, vars.map((p) => p.variable));
  // decoder alone: gradients with respect to its inputs too
  const mask = randomPatchMask(4, [4, 4], 0.75, new Rng(2));
  const cls = tf.tensor2d(Float32Array.from({ length: 64 }, (_, i) => Math.sin(i)), [4, 16]);
  const patches = tf.tensor3d(Float32Array.from({ length: 4 * 4 * 16 }, (_, i) => Math.cos(i * 0.7)), [4, 4, 16]);
  const pred = method.decoder.forward(cls, patches, mask.idsRestore);
  const inputGrads = tf.grads((c: tf.Tensor, p: tf.Tensor) => tf.sum(tf.mul(method.decoder.forward(c as tf.Tensor2D, p as tf.Tensor3D, mask.idsRestore), tf.range(0, 4 * 16 * 16).reshape([4, 16, 16]).mul(0.01))))([cls, patches]);
  const out = {
    loss: value.dataSync()[0],
    grads: Object.fromEntries(vars.map((p) => [p.name, Float32Array.from(grads[p.variable.name].dataSync())])),
    predShape: pred.shape,
    pred: Float32Array.from(pred.dataSync()),
    inputGrads: inputGrads.map((g) => Float32Array.from(g.dataSync())),
  };
  tf.dispose([value, ...Object.values(grads), x, cls, patches, pred, ...inputGrads]);
  method.dispose();
  return out;
}

test("MAE decoder and step: shapes, loss and every gradient on wasm match the cpu backend", async () => {
  for (const normPix of [false, true]) {
    const cpu = await stepAndGrads("cpu", normPix);
    const wasm = await stepAndGrads("wasm", normPix);
    assert.deepEqual(wasm.predShape, [4, 16, 16]); // [N, L, p*p*C]
    assert.ok(Math.abs(wasm.loss - cpu.loss) < 1e-4 * Math.max(1, cpu.loss), `loss ${wasm.loss} vs ${cpu.loss}`);
    assert.ok(relError(wasm.pred, cpu.pred) < 1e-4);
    for (const [name, g] of Object.entries(cpu.grads)) {
      assert.ok(relError(wasm.grads[name], g) < 1e-4, `normPix ${normPix}: gradient of ${name}: rel error ${relError(wasm.grads[name], g)}`);
    }
    for (const name of ["backbone.patchEmbed.weight", "backbone.blocks.0.attn.qkv.weight", "decoder.maskToken", "decoder.embed.weight", "decoder.pred.weight"]) {
      assert.ok(cpu.grads[name].some((v) => Math.abs(v) > 1e-8), `${name} gets a gradient`);
    }
    cpu.inputGrads.forEach((g, i) => assert.ok(relError(wasm.inputGrads[i], g) < 1e-4 && g.some((v) => v !== 0), `decoder input ${i} gradient`));
  }
  await useBackend("wasm");
  const m = tinyMae();
  assert.throws(() => m.decoder.forward(tf.zeros([2, 16]) as tf.Tensor2D, tf.zeros([2, 16, 16]) as tf.Tensor3D, new Int32Array(32)), /1 <= K < 16/);
  assert.throws(() => m.decoder.forward(tf.zeros([2, 16]) as tf.Tensor2D, tf.zeros([2, 4, 16]) as tf.Tensor3D, new Int32Array(8)), /N \* L = 32/);
  assert.throws(() => new MaeDecoder({ encoderDim: 16, grid: [4, 4], patchPixels: 16, dim: 10 }), /multiple of 4/);
  m.dispose();
});

test("MAE: the encoder sees only the visible patches; reconstructions paste the visible patches back; no leak", async () => {
  await useBackend("wasm");
  const method = tinyMae({ maskRatio: 0.75 });
  const x = randomImages(3, 4);
  const mask = randomPatchMask(3, [4, 4], 0.75, new Rng(1));
  // scribble over the removed patches: predictions of every patch do not change
  const scribbled = tf.tidy(() => {
    const m = fastOps.unpatchify(tf.tile(tf.tensor3d(mask.mask, [3, 16, 1]), [1, 1, 16]) as tf.Tensor3D, 4);
    return tf.add(x, tf.mul(m, tf.randomUniform(x.shape, 0, 5, "float32", 3))) as tf.Tensor4D;
  });
  const predOf = (imgs: tf.Tensor4D) =>
    tf.tidy(() => {
      const { cls, patches } = method.backbone.forwardTokens(imgs, { keep: mask.keep });
      return method.decoder.forward(cls, patches, mask.idsRestore).dataSync();
    });
  assert.deepEqual(predOf(scribbled), predOf(x));
  assert.notDeepEqual(predOf(tf.add(x, 0.5) as tf.Tensor4D), predOf(x));

  // the mean-pooled view: the mean of the unmasked patch tokens, the ViT's weights untouched by dispose()
  const pooled = new MeanPooledViT(method.backbone);
  const pooledOut = tf.tidy(() => pooled.forward(x).arraySync() as number[][]);
  const byHand = tf.tidy(() => tf.mean(method.backbone.forwardTokens(x).patches, 1).arraySync() as number[][]);
  assert.deepEqual(pooledOut, byHand);
  assert.equal(pooledOut[0].length, 16);
  pooled.dispose();
  assert.ok(!method.backbone.patchEmbed.weight.isDisposed);

  const before = tf.memory().numTensors;
  for (const normPix of [true, false]) {
    const m = tinyMae({ normPix });
    const r = m.reconstruct(x, { maskRatio: 0.5, seed: 2 });
    assert.equal(r.mask.keepCount, 8);
    for (const t of [r.masked, r.reconstruction, r.pasted]) assert.deepEqual(t.shape, [3, 16, 16, 1]);
    const px = x.dataSync();
    const [masked, recon, pasted] = [r.masked, r.reconstruction, r.pasted].map((t) => t.dataSync());
    const pm = tf.tidy(() => fastOps.unpatchify(tf.tile(tf.tensor3d(r.mask.mask, [3, 16, 1]), [1, 1, 16]) as tf.Tensor3D, 4));
    const removed = pm.dataSync();
    for (let i = 0; i < px.length; i++) {
      if (removed[i]) {
        assert.equal(masked[i], 0.5);
        assert.equal(pasted[i], recon[i]);
      } else {
        assert.equal(masked[i], px[i]);
        assert.equal(pasted[i], px[i]);
      }
      assert.ok(recon[i] >= 0 && recon[i] <= 1);
    }
    assert.ok(Number.isFinite(r.loss) && r.loss > 0);
    assert.equal(m.trainable.training, true, "the training mode is restored");
    // the gallery's four rows: original, masked, reconstruction, reconstruction + visible
    const png = await reconstructionGallery(x, r.masked, r.reconstruction, { pasted: r.pasted, captions: false, scale: 1, padding: 2 });
    const meta = await sharp(png).metadata();
    assert.deepEqual([meta.width, meta.height], [2 + 3 * 18, 2 + 4 * 18]);
    tf.dispose([r.masked, r.reconstruction, r.pasted, pm]);
    m.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
  assert.throws(() => tinyMae({ maskRatio: 0.99 }), /MAE: mask ratio 0.99 keeps 0 of 16 patches/);
  assert.throws(() => tinyMae({ maskSampling: "grid", maskRatio: 0.5 }), /MAE: grid mask sampling keeps one patch of every 2x2 cell/);
  assert.throws(() => new MAE({ backbone: method.backbone, inputShape: [28, 28, 1] }), /the ViT takes 16x16x1 images/);
  tf.dispose([x, scribbled]);
  method.dispose();
});

// ---- trainer: resume, leaks --------------------------------------------------------------------

function blobs(count: number, seed: number): ImageDataset {
  const rng = new Rng(seed);
  const images = new Uint8Array(count * 256);
  const labels = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    labels[n] = n % 2;
    const [cy, cx] = [rng.int(4, 12), rng.int(4, 12)];
    for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) images[n * 256 + y * 16 + x] = Math.min(255, (sq(y - cy) + sq(x - cx) < (labels[n] ? 9 : 20) ? 200 : 10) + rng.int(0, 40));
  }
  return { name: "blobs", images, labels, classNames: ["small", "large"], count, height: 16, width: 16, channels: 1 };
}

/** 2 epochs of 6 batches of 8 blobs, block masks, checkpoints every 4 steps; `extra` over the Trainer options. */
function trainTiny(extra: Partial<TrainerOptions> = {}): Promise<TrainRun> {
  return trainSteps(tinyMae({ maskSampling: "block" }, 3), blobs(48, 2), {
    epochs: 2, batchSize: 8, seed: 5, checkpointEvery: 4, collapseEvery: 3,
    optimizer: { name: "adamw", lr: 3e-3, weightDecay: 0.05 }, ...extra,
  });
}

test("MAE under the Trainer: resume mid-epoch is bitwise exact (encoder, decoder, optimiser, losses); no tensor leak per step", async () => {
  await useBackend("wasm");
  const full = await trainTiny();
  assert.equal(full.result.steps, 12);
  expectNoLeakPerStep(full.counts);
  const steps = full.result.metrics.filter((r) => r.type === "step");
  assert.ok(steps.every((r) => Number.isFinite(r.loss)));
  assert.equal(steps.filter((r) => typeof r.collapseScore === "number").length, 4);
  assert.ok(Object.keys(full.weights).some((k) => k.startsWith("decoder.blocks.0.")) && Object.keys(full.weights).some((k) => k.startsWith("backbone.")));
  // weights (encoder and decoder), the optimiser state and the losses equal the straight run's
  await expectExactResume(full, trainTiny, {
    name: "mae",
    stopAfterStep: 5,
    stopped: (first) => {
      assert.equal(first.result.steps, 5);
      const ckpt = readCheckpoint(first.result.lastCheckpoint!);
      assert.ok(ckpt.tensors.model["decoder.maskToken"], "the checkpoint holds the decoder");
    },
  });
});

test("MAE: a few optimisation steps on a fixed batch and mask decrease the loss", async () => {
  await useBackend("wasm");
  const method = tinyMae({ normPix: false }, 1);
  const x = imagesTensor(blobs(16, 3));
  const { AdamW } = await import("../lib/src/train/optimizers");
  const opt = new AdamW(method.trainable.parameters(), { lr: 3e-3, weightDecay: 0 });
  const losses: number[] = [];
  for (let i = 0; i < 15; i++) {
    const { value, grads } = tf.variableGrads(() => method.step([x], { step: 0, totalSteps: 1, epoch: 0, rng: new Rng(11) }).loss, method.trainable.variables());
    losses.push(value.dataSync()[0]);
    opt.applyGradients(grads);
    tf.dispose([value, ...Object.values(grads)]);
  }
  assert.ok(losses[14] < 0.5 * losses[0], `loss ${losses.map((l) => l.toFixed(4)).join(" -> ")}`);
  tf.dispose(x);
  opt.dispose();
  method.dispose();
});

// ---- CLI ---------------------------------------------------------------------------------------

test("CLI: mae's options parse (--mask-ratio, --mask-sampling, --norm-pix) and bad values fail clearly", async () => {
  const cfg = (...flags: string[]) => {
    const r = parseTrainArgs(["train", "mae", "--preset", "smoke", ...flags]);
    assert.notEqual(r, "help");
    return (r as Exclude<typeof r, "help">).config;
  };
  const c = cfg();
  assert.deepEqual(c.methodOptions, { maskRatio: 0.75, maskSampling: "random", normPix: true, decoderDepth: 2, decoderDim: 64 });
  assert.equal(c.backbone, "vit-tiny");
  assert.deepEqual([c.optimizer, c.lr, c.weightDecay, c.cropScale], ["adamw", 1e-3, 0.05, [0.2, 1]]);
  const paper = parseTrainArgs(["train", "mae", "--preset", "paper"]) as Exclude<ReturnType<typeof parseTrainArgs>, "help">;
  assert.deepEqual([paper.config.optimizer, paper.config.lr, paper.config.epochs], ["adamw", 3e-4, 800]);
  assert.equal(cfg("--mask-ratio", "0.9").methodOptions.maskRatio, 0.9);
  assert.equal(cfg("--mask-sampling", "block", "--mask-ratio", "0.5").methodOptions.maskSampling, "block");
  assert.equal(cfg("--norm-pix", "off").methodOptions.normPix, false);
  assert.equal(cfg("--decoder-depth", "4").methodOptions.decoderDepth, 4);
  for (const bad of ["0", "1", "1.5", "abc", ""]) assert.throws(() => cfg("--mask-ratio", bad), /--mask-ratio expects a number > 0 and <= 0.99/);
  assert.throws(() => cfg("--mask-ratio=-0.2"), /--mask-ratio expects a number > 0 and <= 0.99, got '-0.2'/);
  assert.throws(() => cfg("--mask-sampling", "diagonal"), /--mask-sampling expects one of random \| block \| grid, got 'diagonal'/);
  assert.throws(() => cfg("--norm-pix", "yes"), /--norm-pix expects on or off/);
  assert.throws(() => cfg("--decoder-depth", "1.5"), /--decoder-depth expects an integer/);
  assert.throws(() => parseTrainArgs(["train", "simclr", "--mask-ratio", "0.5"]), /--mask-ratio is not an option of simclr/);
  // combinations the method rejects when it is built
  await useBackend("wasm");
  assert.throws(() => createMethod(cfg("--mask-sampling", "grid", "--mask-ratio", "0.5"), [28, 28, 1]), /grid mask sampling keeps one patch of every 2x2 cell \(ratio 0.75\), got mask ratio 0.5/);
  assert.throws(() => createMethod(cfg("--backbone", "resnet-small"), [28, 28, 1]), /mae: the backbone must be a ViT/);
  assert.throws(() => createMethod(cfg("--mask-ratio", "0.99"), [28, 28, 1]), /keeps 0 of 49 patches/);
  const m = createMethod(methodConfig("mae", "smoke", { methodOptions: { maskSampling: "grid" } }), [28, 28, 1]) as MAE;
  assert.equal(m.maskSampling, "grid");
  m.dispose();
});

test("CLI: a tiny mae run trains, evaluates the encoder's class token and writes results.json and weights", async () => {
  const { out, results } = await runCliSmoke("mae", ["--progress", "plain"]);
  assert.equal(results.method, "mae");
  assert.equal(results.backbone, "vit-tiny");
  assert.equal(results.steps, 4);
  assert.equal(results.encoders.length, 1);
  assert.equal(results.encoders[0].featureDim, 128, "the ViT-tiny class token");
  assert.ok(results.encoders[0].knnTop1 > 0.1 && results.encoders[0].linearTop1 > 0.1, JSON.stringify(results.encoders));
  const weights = readCheckpoint(path.join(out, "weights", "ckpt-00000004"));
  assert.ok(weights.tensors.model["decoder.maskToken"] && weights.tensors.model["backbone.clsToken"]);
  fs.rmSync(out, { recursive: true, force: true });
});
