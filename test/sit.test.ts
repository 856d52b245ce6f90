/**
 * SiT / GMML: gmmlCorrupt per corruption type (exact pixels outside the mask, the corrupted share,
 * content from another image, unaligned blocks, seeding), the masked l1 against hand-computed values,
 * the reconstruction head's shapes and gradients on wasm against cpu, the method's step, exact
 * resume through the Trainer (teacher state included), no tensor leak, CLI option errors and a
 * tiny CLI run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { tf, useBackend, relError, squaresDataset, imagesTensor, tmpDir, trainSteps, expectNoLeakPerStep, expectExactResume, runCliSmoke } from "./helpers";
import type { TrainRun } from "./helpers";
import { GMML_CORRUPTION_TYPES, gmmlCorrupt } from "../lib/src/augment/gmml";
import type { GmmlCorruptionType } from "../lib/src/augment/gmml";
import { maskedL1Loss, ntXentLoss } from "../lib/src/losses";
import { ReconstructionHead } from "../lib/src/nn/recon-head";
import * as fastOps from "../lib/src/nn/fast-ops";
import { resnetSmall } from "../lib/src/nn/resnet";
import { vitTiny } from "../lib/src/nn/vit";
import { SiT } from "../lib/src/methods/sit";
import { createMethod, methodConfig } from "../lib/src/methods";
import { parseTrainArgs } from "../lib/src/cli";
import { readCheckpoint } from "../lib/src/train";
import type { TrainerOptions } from "../lib/src/train";
import { Rng } from "../lib/src/random";

/** Images with values in [0.1, 0.9], all distinct between images (so a copied pixel is recognisable). */
function randomImages(n: number, h: number, w: number, c: number, seed: number): tf.Tensor4D {
  const rng = new Rng(seed);
  return tf.tensor4d(Float32Array.from({ length: n * h * w * c }, () => rng.uniform(0.1, 0.9)), [n, h, w, c]);
}

test("gmmlCorrupt: every type leaves pixels outside the mask exactly unchanged and covers about `ratio` of each image", async () => {
  await useBackend("wasm");
  const [n, h, w] = [8, 28, 28];
  for (const c of [1, 3]) {
    const images = randomImages(n, h, w, c, 1 + c);
    const src = images.dataSync();
    for (const type of GMML_CORRUPTION_TYPES) {
      for (const ratio of [0.3, 0.6]) {
        const { corrupted, mask, source } = gmmlCorrupt(images, new Rng(7), { type, ratio });
        assert.deepEqual(corrupted.shape, [n, h, w, c]);
        assert.deepEqual(mask.shape, [n, h, w, 1]);
        const out = corrupted.dataSync();
        const m = mask.dataSync();
        assert.ok(m.every((v) => v === 0 || v === 1), "binary mask");
        let donorPixels = 0;
        let maskedPixels = 0;
        for (let i = 0; i < n; i++) {
          let share = 0;
          for (let p = 0; p < h * w; p++) {
            const inMask = m[i * h * w + p] === 1;
            share += inMask ? 1 : 0;
            const at = (i * h * w + p) * c;
            if (!inMask) {
              for (let ch = 0; ch < c; ch++) assert.equal(out[at + ch], src[at + ch], `${type}: pixel outside the mask changed`);
              continue;
            }
            maskedPixels++;
            const fromDonor = source[i] >= 0 && [...Array(c).keys()].every((ch) => out[at + ch] === src[(source[i] * h * w + p) * c + ch]);
            donorPixels += fromDonor ? 1 : 0;
            const isZero = [...Array(c).keys()].every((ch) => out[at + ch] === 0);
            if (type === "zeros") assert.ok(isZero, "zeros: a masked pixel is not 0");
            if (type === "replace") assert.ok(fromDonor, "replace: a masked pixel does not come from the donor image");
            if (type === "zeros+replace") assert.ok(isZero || fromDonor, "zeros+replace: neither 0 nor the donor's pixel");
            if (type === "noise") for (let ch = 0; ch < c; ch++) assert.ok(out[at + ch] >= 0 && out[at + ch] < 1 && out[at + ch] !== src[at + ch]);
          }
          share /= h * w;
          assert.ok(share >= ratio && share < ratio + 0.08, `${type} ratio ${ratio}: image ${i} has ${share.toFixed(3)} corrupted`);
          if (type.includes("replace")) assert.ok(source[i] >= 0 && source[i] < n && source[i] !== i, `${type}: donor ${source[i]} of image ${i}`);
          else assert.equal(source[i], -1);
        }
        // the combined types take about 30% of the corrupted area from the donor
        const donorShare = donorPixels / maskedPixels;
        if (type === "replace") assert.equal(donorShare, 1);
        if (type === "zeros" || type === "noise") assert.equal(donorShare, 0);
        if (type.includes("+")) assert.ok(donorShare > 0.12 && donorShare < 0.5, `${type}: donor share ${donorShare.toFixed(3)}`);
        tf.dispose([corrupted, mask]);
      }
    }
    images.dispose();
  }
});

test("gmmlCorrupt: seeded, blocks not aligned with the patch grid, clear errors", async () => {
  await useBackend("wasm");
  const images = randomImages(6, 28, 28, 1, 3);
  const a = gmmlCorrupt(images, new Rng(1), { type: "noise+replace", ratio: 0.5 });
  const b = gmmlCorrupt(images, new Rng(1), { type: "noise+replace", ratio: 0.5 });
  const d = gmmlCorrupt(images, new Rng(2), { type: "noise+replace", ratio: 0.5 });
  assert.deepEqual(a.corrupted.dataSync(), b.corrupted.dataSync());
  assert.deepEqual(a.mask.dataSync(), b.mask.dataSync());
  assert.deepEqual(a.source, b.source);
  assert.notDeepEqual(a.mask.dataSync(), d.mask.dataSync());
  // some mask edge falls inside a 4x4 patch (a transition between columns x-1 and x with x % 4 != 0)
  const m = a.mask.dataSync();
  let unaligned = 0;
  for (let r = 0; r < 6 * 28; r++) for (let x = 1; x < 28; x++) if (x % 4 !== 0 && m[r * 28 + x] !== m[r * 28 + x - 1]) unaligned++;
  assert.ok(unaligned > 0, "block edges fall between patch boundaries");
  // with align = 4, every edge is on the grid
  const aligned = gmmlCorrupt(images, new Rng(1), { type: "zeros", ratio: 0.5, align: 4 }).mask.dataSync();
  for (let r = 0; r < 6 * 28; r++) for (let x = 1; x < 28; x++) if (x % 4 !== 0) assert.equal(aligned[r * 28 + x], aligned[r * 28 + x - 1]);
  assert.throws(() => gmmlCorrupt(images, new Rng(1), { type: "blur" as GmmlCorruptionType, ratio: 0.5 }), /type must be one of zeros, noise, replace/);
  for (const ratio of [0, 1, -0.2, NaN]) assert.throws(() => gmmlCorrupt(images, new Rng(1), { type: "zeros", ratio }), /ratio must be a number in \(0, 1\)/);
  const one = tf.slice(images, [0, 0, 0, 0], [1, 28, 28, 1]);
  assert.throws(() => gmmlCorrupt(one, new Rng(1), { type: "replace", ratio: 0.5 }), /at least 2/);
  assert.throws(() => gmmlCorrupt(tf.zeros([2, 28, 28]) as unknown as tf.Tensor4D, new Rng(1), { type: "zeros", ratio: 0.5 }), /\[N,H,W,C\]/);
  tf.dispose([images, one, a.corrupted, a.mask, b.corrupted, b.mask, d.corrupted, d.mask]);
});

test("maskedL1Loss: mean |pred - target| over the masked pixels (hand-computed), its gradient, empty mask", async () => {
  await useBackend("wasm");
  tf.tidy(() => {
    const pred = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]);
    const target = tf.tensor4d([0, 2, 5, 1], [1, 2, 2, 1]);
    const mask = tf.tensor4d([1, 0, 1, 1], [1, 2, 2, 1]);
    // (|1-0| + |3-5| + |4-1|) / 3 = 2
    assert.ok(Math.abs(maskedL1Loss(pred, target, mask).dataSync()[0] - 2) < 1e-6);
    // d/dpred = sign(pred - target) * mask / 3
    const g = tf.grad((p: tf.Tensor) => maskedL1Loss(p as tf.Tensor4D, target, mask))(pred).dataSync();
    assert.ok(relError(g, [1 / 3, 0, -1 / 3, 1 / 3]) < 1e-6, `grad ${g}`);
    // two channels, a [N,H,W,1] mask broadcast: (|0.5-0| + |1-3|) over masked pixel 0's 2 channels, + pixel 1's (|2-2| + |0-1|) -> 3.5 / 4
    const p2 = tf.tensor4d([0.5, 1, 2, 0, 9, 9], [1, 1, 3, 2]);
    const t2 = tf.tensor4d([0, 3, 2, 1, 0, 0], [1, 1, 3, 2]);
    const m2 = tf.tensor4d([1, 1, 0], [1, 1, 3, 1]);
    assert.ok(Math.abs(maskedL1Loss(p2, t2, m2).dataSync()[0] - 3.5 / 4) < 1e-6);
    assert.equal(maskedL1Loss(p2, t2, tf.zerosLike(m2) as tf.Tensor4D).dataSync()[0], 0);
    assert.throws(() => maskedL1Loss(p2, t2, tf.ones([1, 1, 2, 1]) as tf.Tensor4D), /mask must be/);
    assert.throws(() => maskedL1Loss(p2, tf.zeros([1, 1, 3, 1]) as tf.Tensor4D, m2), /differ/);
  });
});

test("ReconstructionHead: tokens [N, L, D] -> images [N, H, W, C]; forward and gradients on wasm equal cpu", async () => {
  const [n, grid, d, p, c] = [3, [2, 3] as [number, number], 16, 4, 2];
  const rng = new Rng(5);
  const tokenData = Float32Array.from({ length: n * grid[0] * grid[1] * d }, () => rng.normal());
  const targetData = Float32Array.from({ length: n * grid[0] * p * grid[1] * p * c }, () => rng.uniform(0, 1));
  const maskData = Float32Array.from({ length: n * grid[0] * p * grid[1] * p }, () => (rng.bernoulli(0.5) ? 1 : 0));
  const run = () => {
    const head = new ReconstructionHead(d, p, c, grid, { hiddenDim: 24, seed: 3 });
    const tokens = tf.tensor3d(tokenData, [n, grid[0] * grid[1], d]);
    const target = tf.tensor4d(targetData, [n, grid[0] * p, grid[1] * p, c]);
    const mask = tf.tensor4d(maskData, [n, grid[0] * p, grid[1] * p, 1]);
    const out = tf.tidy(() => {
      const img = head.forward(tokens);
      assert.deepEqual(img.shape, [n, grid[0] * p, grid[1] * p, c]);
      // forward == unpatchify(forwardPatches): patch l of image i holds head(token l)
      assert.ok(relError(fastOps.patchify(img, p).dataSync(), head.forwardPatches(tokens).dataSync()) < 1e-6);
      const vars = head.variables();
      const { value, grads } = tf.variableGrads(() => maskedL1Loss(head.forward(tokens), target, mask), vars);
      const dTokens = tf.grad((t: tf.Tensor) => tf.sum(tf.square(head.forward(t as tf.Tensor3D))))(tokens);
      return { value: Array.from(img.dataSync()), loss: value.dataSync()[0], grads: vars.map((v) => Array.from(grads[v.name].dataSync())), dTokens: Array.from(dTokens.dataSync()) };
    });
    assert.equal(head.parameters().length, 6);
    head.dispose();
    tf.dispose([tokens, target, mask]);
    return out;
  };
  await useBackend("cpu");
  const ref = run();
  await useBackend("wasm");
  const got = run();
  assert.ok(relError(got.value, ref.value) <= 1e-4, "forward");
  assert.ok(Math.abs(got.loss - ref.loss) <= 1e-4 * Math.max(1, Math.abs(ref.loss)));
  got.grads.forEach((g, i) => {
    assert.ok(g.some((v) => v !== 0) && g.every(Number.isFinite), `grad ${i} non-zero and finite`);
    assert.ok(relError(g, ref.grads[i]) <= 1e-4, `grad ${i} rel error ${relError(g, ref.grads[i])}`);
  });
  assert.ok(relError(got.dTokens, ref.dTokens) <= 1e-4, "d tokens");
  assert.throws(() => new ReconstructionHead(16, 4, 1, [2, 2]).forward(tf.zeros([1, 5, 16]) as tf.Tensor3D), /expected tokens \[N, 4, 16\]/);
});

function tinySit(opts: Partial<ConstructorParameters<typeof SiT>[0]> = {}): SiT {
  return new SiT({ backbone: vitTiny({ imageSize: 16, inChannels: 1, seed: 0 }), inputShape: [16, 16, 1], projectionHiddenDim: 32, projectionDim: 16, ...opts });
}

test("SiT step: loss = alpha * masked l1 of the reconstruction + cross-view NT-Xent against the teacher; no-contrastive variant", async () => {
  await useBackend("wasm");
  const ds = squaresDataset(8, 16, 1);
  const x = imagesTensor(ds);
  const method = tinySit({ corruption: "zeros+replace", corruptionRatio: 0.4 });
  const ctx = { step: 0, totalSteps: 10, epoch: 0, rng: new Rng(3) };
  const views = method.views(x, ctx);
  assert.equal(views.length, 6);
  for (const v of views.slice(0, 4)) assert.deepEqual(v.shape, [8, 16, 16, 1]);
  for (const v of views.slice(4)) assert.deepEqual(v.shape, [8, 16, 16, 1]);
  const before = tf.memory().numTensors;
  const [loss, recon, contr, emb, ref] = tf.tidy(() => {
    const o = method.step(views, ctx);
    // reference, op by op
    const clean = tf.concat(views.slice(0, 2), 0) as tf.Tensor4D;
    const { cls, patches } = method.backbone.forwardTokens(tf.concat(views.slice(2, 4), 0) as tf.Tensor4D);
    const r = maskedL1Loss(method.trainable.reconHead.forward(patches), clean, tf.concat(views.slice(4), 0) as tf.Tensor4D);
    const q = method.trainable.projector!.forward(cls);
    const k = method.teacher!.forward(clean);
    const [q1, q2, k1, k2] = [tf.slice(q, 0, 8), tf.slice(q, 8, 8), tf.slice(k, 0, 8), tf.slice(k, 8, 8)] as tf.Tensor2D[];
    const c = tf.div(tf.add(ntXentLoss(q1, k2, 0.2), ntXentLoss(q2, k1, 0.2)), 2);
    return [o.loss, o.metrics!.recon, o.metrics!.contrastive, o.embeddings!, tf.add(tf.mul(r, 5), c)];
  });
  assert.deepEqual(emb.shape, [8, 16]);
  const [l, r, c] = [loss.dataSync()[0], recon.dataSync()[0], contr.dataSync()[0]];
  assert.ok(Math.abs(l - (5 * r + c)) < 1e-4, `${l} vs 5 * ${r} + ${c}`);
  assert.ok(Math.abs(l - ref.dataSync()[0]) < 1e-4, `${l} vs reference ${ref.dataSync()[0]}`);
  assert.ok(r > 0 && c > 0);
  tf.dispose([loss, recon, contr, emb, ref]);
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(Object.keys(method.stateModules()), ["teacher"]);
  // the teacher starts as a copy of the online networks
  const [w0, t0] = [method.backbone.parameters()[0].variable.dataSync(), method.teacher!.backbone.parameters()[0].variable.dataSync()];
  assert.deepEqual(w0, t0);
  tf.dispose(views);
  method.dispose();

  const solo = tinySit({ contrastive: false, corruption: "noise" });
  const soloViews = solo.views(x, ctx);
  assert.equal(soloViews.length, 3);
  assert.deepEqual(solo.stateModules(), {});
  assert.equal(solo.trainable.projector, null);
  const out = tf.tidy(() => {
    const o = solo.step(soloViews, ctx);
    const ref2 = tf.mul(maskedL1Loss(solo.trainable.reconHead.forward(solo.backbone.forwardTokens(soloViews[1]).patches), soloViews[0], soloViews[2]), 5);
    return [o.loss, ref2];
  });
  assert.ok(Math.abs(out[0].dataSync()[0] - out[1].dataSync()[0]) < 1e-5);
  const rec = solo.reconstruct(x, new Rng(1));
  assert.deepEqual(rec.reconstruction.shape, [8, 16, 16, 1]);
  // pasted = the input outside the mask
  const [pasted, mask, xs] = [rec.pasted.dataSync(), rec.mask.dataSync(), x.dataSync()];
  for (let i = 0; i < xs.length; i++) if (mask[i] === 0) assert.ok(Math.abs(pasted[i] - xs[i]) < 1e-6);
  tf.dispose([...out, ...soloViews, rec.corrupted, rec.mask, rec.reconstruction, rec.pasted, x]);
  solo.dispose();

  assert.throws(() => new SiT({ backbone: resnetSmall({ inChannels: 1 }) as never, inputShape: [16, 16, 1] }), /must be a ViT/);
  assert.throws(() => tinySit({ corruptionRatio: 1 }), /corruptionRatio must be in \(0, 1\)/);
  assert.throws(() => tinySit({ corruption: "blur" as GmmlCorruptionType }), /corruption must be one of/);
  assert.throws(() => tinySit({ inputShape: [28, 28, 1] }), /takes 16x16x1 images/);
});

/** 1 epoch of 4 batches of 16 on squares, checkpoints every 2 steps; `extra` over the Trainer options. */
function trainTiny(extra: Partial<TrainerOptions> = {}): Promise<TrainRun> {
  return trainSteps(tinySit({ corruption: "noise+replace", momentum: 0.9 }), squaresDataset(64, 16, 2), {
    epochs: 1, batchSize: 16, seed: 5, collapseEvery: 2, checkpointEvery: 2,
    optimizer: { name: "adamw", lr: 1e-3, weightDecay: 0.05 },
    ...extra,
  });
}

test("SiT under the Trainer: resume is exact (model, momentum teacher, optimiser, losses); no tensor leak per step", async () => {
  await useBackend("wasm");
  const fullOut = tmpDir("sit-full");
  const full = await trainTiny({ outDir: fullOut });
  assert.equal(full.result.steps, 4);
  expectNoLeakPerStep(full.counts);
  const steps = full.result.metrics.filter((r) => r.type === "step");
  assert.ok(steps.every((r) => [r.loss, r.recon, r.contrastive, r.contrastiveAcc].every((v) => typeof v === "number" && Number.isFinite(v))));
  assert.equal(steps.filter((r) => typeof r.collapseScore === "number").length, 2);
  // the teacher moved away from its initial copy, and differs from the online weights
  assert.deepEqual(Object.keys(full.state), ["teacher"], "the momentum teacher is a state module");
  const name = "backbone.patchEmbed.weight";
  assert.notDeepEqual(full.state.teacher[name].data, full.weights[name].data);
  // the model, the teacher (state module), the optimiser state and the losses equal the straight run's
  const { resumed } = await expectExactResume(full, trainTiny, {
    name: "sit",
    stopAfterStep: 2,
    stopped: (first) => assert.equal(first.result.interrupted, true),
  });
  assert.equal(resumed.result.steps, 4);
  fs.rmSync(fullOut, { recursive: true, force: true });
});

test("sit in the registry: CLI flags parse, bad values get clear errors", () => {
  const parse = (...flags: string[]) => parseTrainArgs(["train", "sit", "--out", "/tmp/unused-sit", ...flags]);
  const ok = parse("--corruption", "zeros+replace", "--corruption-ratio", "0.7", "--no-contrastive", "--preset", "smoke");
  assert.ok(ok !== "help");
  assert.equal(ok.config.backbone, "vit-tiny");
  assert.equal(ok.config.temperature, 0.2);
  assert.deepEqual(ok.config.methodOptions, { corruption: "zeros+replace", corruptionRatio: 0.7, contrastive: false, alpha: 5, momentum: 0.99 });
  const def = parse();
  assert.ok(def !== "help");
  assert.deepEqual(def.config.methodOptions, { corruption: "noise+replace", corruptionRatio: 0.5, contrastive: true, alpha: 5, momentum: 0.99 });
  assert.throws(() => parse("--corruption", "blur"), /--corruption expects one of zeros \| noise \| replace \| zeros\+replace \| noise\+replace, got 'blur'/);
  for (const bad of ["0", "1", "-0.1", "abc", ""]) assert.throws(() => parse(`--corruption-ratio=${bad}`), /--corruption-ratio expects a number > 0 and <= 0.95/);
  assert.throws(() => parse("--alpha", "0"), /--alpha expects a number > 0/);
  assert.throws(() => parse("--momentum", "1.5"), /--momentum expects a number >= 0 and <= 1/);
  assert.throws(() => parseTrainArgs(["train", "simclr", "--corruption", "zeros"]), /--corruption is not an option of simclr/);
  assert.throws(() => createMethod(methodConfig("sit", "smoke", { backbone: "resnet-small" }), [28, 28, 1]), /sit: the backbone must be a ViT/);
});

test("CLI: `sslkit train sit` runs a tiny smoke run and writes results and the teacher", async () => {
  const { out, results } = await runCliSmoke("sit", ["--progress", "none"], { timeoutMs: 240_000 });
  assert.equal(results.method, "sit");
  assert.equal(results.backbone, "vit-tiny");
  assert.equal(results.steps, 4);
  assert.ok(results.encoders[0].knnTop1 > 0.1, `k-NN ${results.encoders[0].knnTop1}`);
  const steps = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((m) => m.type === "step");
  assert.ok(steps.every((m) => typeof m.recon === "number" && typeof m.contrastive === "number"));
  const [ckpt] = fs.readdirSync(path.join(out, "weights")).filter((f) => f.startsWith("ckpt-"));
  const saved = readCheckpoint(path.join(out, "weights", ckpt));
  assert.ok(saved.tensors["state.teacher"]?.["backbone.patchEmbed.weight"], `groups: ${Object.keys(saved.tensors)}`);
  fs.rmSync(out, { recursive: true, force: true });
});
