/**
 * SimCLR: views and step shapes, the loss is NT-Xent of the projections, a few steps on tiny
 * data decrease the loss, and a Trainer run leaks no tensors and checkpoints the whole model.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { expectNoLeakPerStep, imagesTensor, squaresDataset, tf, useBackend } from "./helpers";
import { SimCLR } from "../lib/src/methods/simclr";
import { resnetSmall } from "../lib/src/nn/resnet";
import { vitTiny } from "../lib/src/nn/vit";
import { ntXentLoss } from "../lib/src/losses";
import { AdamW, Trainer } from "../lib/src/train";
import { Rng } from "../lib/src/random";

test("SimCLR: two views of the batch's shape, loss = NT-Xent(g(f(v1)), g(f(v2))), finite metrics", async () => {
  await useBackend("wasm");
  const ds = squaresDataset(16, 16, 1);
  const method = new SimCLR({ backbone: resnetSmall({ inChannels: 1, seed: 0 }), inputShape: [16, 16, 1], temperature: 0.2, projectionHiddenDim: 64, projectionDim: 32 });
  const x = imagesTensor(ds, 8);
  const ctx = { step: 0, totalSteps: 1, epoch: 0, rng: new Rng(3) };
  const views = method.views(x, ctx);
  assert.equal(views.length, 2);
  for (const v of views) assert.deepEqual(v.shape, [8, 16, 16, 1]);
  assert.ok(tf.max(tf.abs(tf.sub(views[0], views[1]))).dataSync()[0] > 0.01, "the two views differ");
  const before = tf.memory().numTensors;
  const out = tf.tidy(() => {
    const o = method.step(views, ctx);
    return [o.loss, o.metrics!.contrastiveAcc, o.embeddings!];
  });
  const [loss, acc, emb] = out;
  assert.deepEqual(emb.shape, [8, 32]);
  const acc01 = acc.dataSync()[0];
  assert.ok(acc01 >= 0 && acc01 <= 1);
  // reference: project each view separately, in the same (training) mode on the concatenated batch
  const ref = tf.tidy(() => {
    const z = method.trainable.forward(tf.concat(views, 0) as tf.Tensor4D);
    const [z1, z2] = tf.split(z, 2, 0) as [tf.Tensor2D, tf.Tensor2D];
    return ntXentLoss(z1, z2, 0.2);
  });
  assert.ok(Math.abs(loss.dataSync()[0] - ref.dataSync()[0]) < 1e-5);
  // log(2N - 1) is the loss of uninformative embeddings; an untrained net is near it
  assert.ok(Math.abs(loss.dataSync()[0] - Math.log(15)) < 1.5, `initial loss ${loss.dataSync()[0]}`);
  tf.dispose([...out, ref]);
  assert.equal(tf.memory().numTensors, before);
  // the encoder f and the head g are both trained; backbone parameters carry the 'backbone.' prefix
  const names = method.trainable.parameters().map((p) => p.name);
  assert.ok(names.some((n) => n.startsWith("backbone.")) && names.some((n) => n.startsWith("projector.")));
  assert.throws(() => new SimCLR({ backbone: method.backbone, inputShape: [16, 16, 1], temperature: 0 }), /temperature/);
  tf.dispose([x, ...views]);
  method.dispose();
});

test("SimCLR: a few optimisation steps on fixed views decrease the NT-Xent loss", async () => {
  await useBackend("wasm");
  const ds = squaresDataset(16, 16, 2);
  const method = new SimCLR({ backbone: vitTiny({ imageSize: 16, inChannels: 1, seed: 0 }), inputShape: [16, 16, 1], temperature: 0.5, projectionHiddenDim: 64, projectionDim: 32 });
  const opt = new AdamW(method.trainable.parameters(), { lr: 2e-3, weightDecay: 0 });
  const x = imagesTensor(ds, 16);
  const ctx = { step: 0, totalSteps: 10, epoch: 0, rng: new Rng(5) };
  const views = method.views(x, ctx);
  const losses: number[] = [];
  const counts: number[] = [];
  for (let i = 0; i < 8; i++) {
    const { value, grads } = tf.variableGrads(() => method.step(views, ctx).loss, method.trainable.variables());
    losses.push(value.dataSync()[0]);
    opt.applyGradients(grads);
    tf.dispose([value, ...Object.values(grads)]);
    counts.push(tf.memory().numTensors);
  }
  assert.ok(losses[7] < losses[0] - 0.1, `loss ${losses.map((l) => l.toFixed(3)).join(" -> ")}`);
  assert.ok(counts.every((c) => c === counts[0]), `numTensors ${counts}`);
  tf.dispose([x, ...views]);
  opt.dispose();
  method.dispose();
});

test("SimCLR under the Trainer: no tensor leaks, finite metrics, contrastive accuracy logged", async () => {
  await useBackend("wasm");
  const ds = squaresDataset(64, 16, 3);
  const method = new SimCLR({ backbone: resnetSmall({ inChannels: 1, seed: 1 }), inputShape: [16, 16, 1], temperature: 0.2, projectionHiddenDim: 64, projectionDim: 32 });
  const counts: number[] = [];
  const trainer = new Trainer(method, ds, {
    epochs: 2, batchSize: 16, seed: 4, progress: "none", log: () => {}, collapseEvery: 2,
    optimizer: { name: "adamw", lr: 1e-3, weightDecay: 1e-6 },
    onProgress: () => counts.push(tf.memory().numTensors),
  });
  const result = await trainer.fit();
  assert.equal(result.steps, 8);
  expectNoLeakPerStep(counts);
  const steps = result.metrics.filter((r) => r.type === "step");
  assert.ok(steps.every((r) => typeof r.loss === "number" && Number.isFinite(r.loss) && typeof r.contrastiveAcc === "number"));
  assert.equal(steps.filter((r) => typeof r.collapseScore === "number").length, 4);
  trainer.dispose();
  method.dispose();
});
