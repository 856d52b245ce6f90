/**
 * BYOL: the loss against hand-computed values and its analytic gradient; the method sends no
 * gradient into the target, updates it by the cosine EMA, treats tau_base = 0 as the online
 * network under a stop-gradient; resume through the Trainer is bitwise exact (target included);
 * no tensor leak per step; CLI option errors; a tiny CLI run writes results.json.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { tf, useBackend, relError, squaresDataset, imagesTensor, trainSteps, expectNoLeakPerStep, expectExactResume, runCliSmoke } from "./helpers";
import type { TrainRun } from "./helpers";
import { byolLoss } from "../lib/src/losses";
import { BYOL } from "../lib/src/methods/byol";
import type { BYOLOptions } from "../lib/src/methods/byol";
import { parseTrainArgs } from "../lib/src/cli";
import { resnetSmall, resnetTiny } from "../lib/src/nn/resnet";
import type { WeightMap } from "../lib/src/nn/module";
import { AdamW, readCheckpoint } from "../lib/src/train";
import type { TrainerOptions } from "../lib/src/train";
import { Rng } from "../lib/src/random";

const P = [
  [1.0, 0.5, -0.3, 2.0],
  [-0.7, 1.2, 0.8, 0.1],
  [0.3, -1.5, 0.4, -0.6],
];
const Z = [
  [0.9, 0.2, -0.1, 1.5],
  [0.4, 0.3, 1.1, -0.9],
  [-0.2, -1.0, 0.9, -0.4],
];

const dot = (a: number[], b: number[]) => a.reduce((s, v, i) => s + v * b[i], 0);
const norm = (a: number[]) => Math.sqrt(dot(a, a));

/** BYOL eq. 2 in float64: mean_i || p_i/|p_i| - z_i/|z_i| ||^2. */
function referenceLoss(p: number[][], z: number[][]): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) {
    const d = p[i].map((v, k) => v / norm(p[i]) - z[i][k] / norm(z[i]));
    total += dot(d, d);
  }
  return total / p.length;
}

const lossOf = (p: number[][], z: number[][]) => tf.tidy(() => byolLoss(tf.tensor2d(p), tf.tensor2d(z)).dataSync()[0]);

test("byolLoss = mean ||p/|p| - z/|z|||^2 = 2 - 2 cos: hand-computed values, extremes, scale invariance, errors", async () => {
  await useBackend("wasm");
  const before = tf.memory().numTensors;
  const expected = referenceLoss(P, Z);
  // by hand, row 0: cos = (0.9 + 0.1 + 0.03 + 3.0) / (sqrt(5.34) sqrt(3.11)) = 4.03 / 4.07530...
  const cos0 = 4.03 / (Math.sqrt(5.34) * Math.sqrt(3.11));
  assert.ok(Math.abs(2 - 2 * cos0 - referenceLoss([P[0]], [Z[0]])) < 1e-12);
  assert.ok(Math.abs(lossOf(P, Z) - expected) < 1e-5, `${lossOf(P, Z)} vs ${expected}`);
  assert.ok(Math.abs(lossOf([P[0]], [Z[0]]) - (2 - 2 * cos0)) < 1e-5);
  assert.ok(Math.abs(lossOf(P, P)) < 1e-6, "identical directions: 0");
  assert.ok(Math.abs(lossOf(P, P.map((r) => r.map((v) => -3 * v))) - 4) < 1e-5, "opposite directions: 4");
  assert.ok(Math.abs(lossOf([[1, 0, 0], [0, 2, 0]], [[0, 5, 0], [0, 0, 0.1]]) - 2) < 1e-6, "orthogonal: 2");
  const scaled = lossOf(P.map((r, i) => r.map((v) => v * [0.01, 7, 300][i])), Z.map((r, i) => r.map((v) => v * [50, 0.2, 1][i])));
  assert.ok(Math.abs(scaled - expected) < 1e-5, "invariant to each row's scale");
  assert.equal(tf.memory().numTensors, before, "byolLoss leaked tensors");
  const a = tf.zeros([3, 4]) as tf.Tensor2D;
  const b = tf.zeros([3, 5]) as tf.Tensor2D;
  const c = tf.zeros([3, 4, 1]) as unknown as tf.Tensor2D;
  assert.throws(() => byolLoss(a, b), /byolLoss: p and z must have the same shape, got \[3,4\] and \[3,5\]/);
  assert.throws(() => byolLoss(c, c), /byolLoss: p and z must be \[N, D\] tensors/);
  tf.dispose([a, b, c]);
});

test("byolLoss gradient: the analytic -2/N (z^ - cos p^)/|p| and central finite differences of the float64 reference", async () => {
  await useBackend("wasm");
  const n = P.length;
  const [gp, gz] = tf.tidy(() => tf.grads((p: tf.Tensor, z: tf.Tensor) => byolLoss(p as tf.Tensor2D, z as tf.Tensor2D))([tf.tensor2d(P), tf.tensor2d(Z)]).map((g) => g.arraySync() as number[][]));
  // d/dp_i (2 - 2 cos(p_i, z_i)) / N = -(2 / N) (z^_i - cos_i p^_i) / |p_i| (and symmetrically for z)
  const analytic = (a: number[][], b: number[][]) =>
    a.map((ai, i) => {
      const cos = dot(ai, b[i]) / (norm(ai) * norm(b[i]));
      return ai.map((v, k) => (-(2 / n) * (b[i][k] / norm(b[i]) - (cos * v) / norm(ai))) / norm(ai));
    });
  assert.ok(relError(gp.flat(), analytic(P, Z).flat()) < 1e-5, `dL/dp ${gp.flat()} vs ${analytic(P, Z).flat()}`);
  assert.ok(relError(gz.flat(), analytic(Z, P).flat()) < 1e-5, "dL/dz");
  const h = 1e-6;
  const fd = P.map((row, i) =>
    row.map((_, k) => {
      const plus = P.map((r) => r.slice());
      const minus = P.map((r) => r.slice());
      plus[i][k] += h;
      minus[i][k] -= h;
      return (referenceLoss(plus, Z) - referenceLoss(minus, Z)) / (2 * h);
    }),
  );
  assert.ok(relError(gp.flat(), fd.flat()) < 1e-4, `finite differences ${fd.flat()}`);
});

function tinyByol(opts: Partial<BYOLOptions> = {}, seed = 0): BYOL {
  const tau = opts.targetMomentum ?? 0.9;
  return new BYOL({
    backbone: resnetTiny({ inChannels: 1, seed }),
    targetBackbone: tau > 0 ? resnetTiny({ inChannels: 1, seed: seed + 100 }) : undefined,
    inputShape: [16, 16, 1],
    projectionHiddenDim: 32,
    projectionDim: 16,
    targetMomentum: tau,
    seed,
    ...opts,
  });
}

const values = (m: WeightMap) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Array.from(v.data)]));

test("BYOL step: L = byol(q(z1), sg(z2')) + byol(q(z2), sg(z1')); gradients reach f, g, q and never the target", async () => {
  await useBackend("wasm");
  const method = tinyByol();
  const ds = squaresDataset(8, 16, 1);
  const x = imagesTensor(ds, 8);
  const ctx = { step: 0, totalSteps: 10, epoch: 0, rng: new Rng(3) };
  const views = method.views(x, ctx);
  assert.equal(views.length, 2);
  for (const v of views) assert.deepEqual(v.shape, [8, 16, 16, 1]);
  // the target starts as a copy of the online encoder (different init seed, overwritten)
  const online = values(await method.trainable.getWeights());
  for (const [name, data] of Object.entries(values(await method.target!.getWeights()))) assert.deepEqual(data, online[name], `target ${name} = online at init`);
  const targetVars = method.target!.parameters().map((p) => p.variable);
  assert.ok(targetVars.every((v) => !v.trainable), "target parameters are frozen");
  const onlineNames = method.trainable.parameters().map((p) => p.variable.name);
  assert.ok(["backbone.", "projector.", "predictor."].every((pre) => method.trainable.parameters().some((p) => p.name.startsWith(pre))));
  const before = tf.memory().numTensors;
  // make the target trainable for this check only: even then the loss has no path into it
  method.target!.setTrainable(true);
  const { value, grads } = tf.variableGrads(() => method.step(views, ctx).loss, [...method.trainable.variables(), ...targetVars]);
  method.target!.setTrainable(false);
  // no gradient into any target variable; every online variable gets one
  assert.deepEqual(Object.keys(grads).sort(), onlineNames.slice().sort());
  assert.ok(Object.values(grads).some((g) => tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]) > 0));
  // the loss equals the two halves computed by hand from the networks' outputs
  const ref = tf.tidy(() => {
    const xx = tf.concat(views, 0) as tf.Tensor4D;
    const z = method.trainable.projector.forward(method.trainable.backbone.forward(xx));
    const p = method.trainable.predictor!.forward(z);
    const zt = method.target!.forward(xx);
    const [p1, p2] = tf.split(p, 2, 0) as tf.Tensor2D[];
    const [t1, t2] = tf.split(zt, 2, 0) as tf.Tensor2D[];
    return tf.add(byolLoss(p1, t2), byolLoss(p2, t1)).dataSync()[0];
  });
  const loss = value.dataSync()[0];
  assert.ok(Math.abs(loss - ref) < 1e-5, `${loss} vs ${ref}`);
  assert.ok(loss >= 0 && loss <= 8);
  tf.dispose([value, ...Object.values(grads)]);
  assert.equal(tf.memory().numTensors, before, "the step leaked tensors");
  const out = tf.tidy(() => {
    const o = method.step(views, ctx);
    return [o.embeddings!, o.metrics!.tau];
  });
  assert.deepEqual(out[0].shape, [8, 16]);
  assert.ok(Math.abs(out[1].dataSync()[0] - 0.9) < 1e-7, "tau metric at step 0 = tau_base");
  tf.dispose([x, ...views, ...out]);
  method.dispose();
});

test("BYOL tau_base = 0 ('no target network') is the online network under a stop-gradient: same loss and gradients as a target copy", async () => {
  await useBackend("wasm");
  // a tau_base > 0 method right after initialisation has target = online, which tau = 0 keeps true at every step
  const withTarget = tinyByol({ targetMomentum: 0.5 }, 7);
  const noTarget = tinyByol({ targetMomentum: 0 }, 7);
  assert.equal(noTarget.target, null);
  assert.deepEqual(noTarget.stateModules(), {});
  const x = imagesTensor(squaresDataset(8, 16, 2), 8);
  const ctx = { step: 0, totalSteps: 10, epoch: 0, rng: new Rng(4) };
  const views = withTarget.views(x, ctx);
  const run = (m: BYOL) => {
    const { value, grads } = tf.variableGrads(() => m.step(views, ctx).loss, m.trainable.variables());
    const names = m.trainable.parameters().map((p) => p.name);
    const g = Object.fromEntries(m.trainable.parameters().map((p, i) => [names[i], Array.from(grads[p.variable.name].dataSync())]));
    const l = value.dataSync()[0];
    tf.dispose([value, ...Object.values(grads)]);
    return { l, g };
  };
  const a = run(withTarget);
  const b = run(noTarget);
  assert.ok(Math.abs(a.l - b.l) < 1e-6, `${a.l} vs ${b.l}`);
  for (const name of Object.keys(a.g)) assert.ok(relError(b.g[name], a.g[name]) < 1e-5, `gradient of ${name}`);
  assert.ok(Math.abs(tf.tidy(() => noTarget.step(views, ctx).metrics!.tau.dataSync()[0])) === 0);
  assert.equal(noTarget.momentumAt(5, 10), 0, "tau stays 0 (no cosine ramp)");
  tf.dispose([x, ...views]);
  withTarget.dispose();
  noTarget.dispose();
});

test("BYOL target update: xi <- tau_k xi + (1 - tau_k) theta with the cosine tau_k; tau_base = 1 keeps the random target", async () => {
  await useBackend("wasm");
  for (const tauBase of [0.9, 1]) {
    const method = tinyByol({ targetMomentum: tauBase }, 3);
    const opt = new AdamW(method.trainable.parameters(), { lr: 0.05, weightDecay: 0 });
    const x = imagesTensor(squaresDataset(8, 16, 3), 8);
    const ctx = { step: 3, totalSteps: 10, epoch: 0, rng: new Rng(5) };
    const views = method.views(x, ctx);
    const { value, grads } = tf.variableGrads(() => method.step(views, ctx).loss, method.trainable.variables());
    opt.applyGradients(grads);
    tf.dispose([value, ...Object.values(grads)]);
    // (the target's own forward pass in training mode has moved its BatchNorm running statistics; the EMA mixes those too)
    const targetBefore = values(await method.target!.getWeights());
    const online = values(await method.trainable.getWeights());
    method.afterStep(ctx);
    const targetAfter = values(await method.target!.getWeights());
    const tau = 1 - ((1 - tauBase) * (Math.cos((Math.PI * 3) / 10) + 1)) / 2;
    assert.ok(Math.abs(method.momentumAt(3, 10) - tau) < 1e-12);
    let moved = 0;
    for (const name of Object.keys(targetAfter)) {
      const expected = targetBefore[name].map((t, i) => tau * t + (1 - tau) * online[name][i]);
      assert.ok(relError(targetAfter[name], expected) < 1e-6, `${name} (tau_base ${tauBase})`);
      if (tauBase === 1) assert.deepEqual(targetAfter[name], targetBefore[name], `tau_base 1: ${name} fixed`);
      for (let i = 0; i < targetAfter[name].length; i++) moved = Math.max(moved, Math.abs(targetAfter[name][i] - targetBefore[name][i]));
    }
    if (tauBase < 1) assert.ok(moved > 0, "the target moved towards the online network");
    tf.dispose([x, ...views]);
    opt.dispose();
    method.dispose();
  }
});

test("BYOL options: clear errors for bad tau_base and a missing or shared target backbone", async () => {
  await useBackend("wasm");
  const bb = resnetTiny({ inChannels: 1, seed: 0 });
  const base = { backbone: bb, inputShape: [16, 16, 1] as [number, number, number], projectionHiddenDim: 8, projectionDim: 4 };
  for (const bad of [1.5, -0.1, Number.NaN]) assert.throws(() => new BYOL({ ...base, targetMomentum: bad, targetBackbone: bb }), /targetMomentum \(tau_base\) must be a number in \[0, 1\]/);
  assert.throws(() => new BYOL({ ...base, targetMomentum: 0.9 }), /needs a targetBackbone/);
  assert.throws(() => new BYOL({ ...base, targetMomentum: 0.9, targetBackbone: bb }), /separate instance/);
  const other = resnetTiny({ inChannels: 1, seed: 1 });
  assert.throws(() => new BYOL({ ...base, targetMomentum: 0, targetBackbone: other }), /no target network/);
  other.dispose();
  // a target of another architecture is refused, and the heads built so far are freed
  const wider = resnetSmall({ inChannels: 1, seed: 1 });
  const before = tf.memory().numTensors;
  assert.throws(() => new BYOL({ ...base, targetMomentum: 0.9, targetBackbone: wider }), /EmaUpdater: .*(online|target)/);
  assert.equal(tf.memory().numTensors, before);
  wider.dispose();
  bb.dispose();
});

/** 2 epochs of 6 batches of 8 on squares, checkpoints every 4 steps; `extra` over the Trainer options. */
function runTiny(extra: Partial<TrainerOptions> = {}, opts: Partial<BYOLOptions> = {}): Promise<TrainRun> {
  return trainSteps(tinyByol({ targetMomentum: 0.9, ...opts }, 11), squaresDataset(48, 16, 5), {
    epochs: 2, batchSize: 8, seed: 11, checkpointEvery: 4,
    optimizer: { name: "adamw", lr: 0.01, weightDecay: 1e-4 }, collapseEvery: 2, ...extra,
  });
}

test("BYOL under the Trainer: resume from a mid-epoch checkpoint is bitwise exact (weights, target, optimiser, losses); no tensor leak", async () => {
  await useBackend("wasm");
  const full = await runTiny();
  assert.equal(full.result.steps, 12);
  expectNoLeakPerStep(full.counts);
  const steps = full.result.metrics.filter((r) => r.type === "step");
  assert.ok(steps.every((r) => Number.isFinite(r.loss) && typeof r.tau === "number"));
  assert.equal(steps.filter((r) => typeof r.collapseScore === "number").length, 6);
  assert.deepEqual(Object.keys(full.state), ["target"], "the target (EMA) network is a state module");
  // weights, the target (EMA) weights, the optimiser state and the losses equal the straight run's
  await expectExactResume(full, runTiny, {
    name: "byol",
    stopAfterStep: 5,
    stopped: (first) => {
      assert.equal(first.result.steps, 5);
      const ckpt = readCheckpoint(first.result.lastCheckpoint!);
      assert.ok(ckpt.tensors["state.target"], "the checkpoint holds the target network");
    },
  });
});

test("BYOL ablation arms (tau_base 0, no predictor) train under the Trainer without leaking tensors", async () => {
  await useBackend("wasm");
  for (const opts of [{ targetMomentum: 0 }, { predictor: false }]) {
    const r = await runTiny({ epochs: 1 }, opts);
    assert.equal(r.result.steps, 6);
    expectNoLeakPerStep(r.counts, `${JSON.stringify(opts)}: `);
    assert.ok(r.result.metrics.filter((m) => m.type === "step").every((m) => Number.isFinite(m.loss)));
  }
});

test("CLI: byol's options parse (--target-momentum, --no-target-network, --no-predictor) and bad values fail clearly", () => {
  const cfg = (...flags: string[]) => {
    const r = parseTrainArgs(["train", "byol", "--preset", "smoke", ...flags]);
    assert.notEqual(r, "help");
    return (r as Exclude<typeof r, "help">).config;
  };
  assert.deepEqual(cfg().methodOptions, { targetMomentum: 0.99, predictor: true });
  assert.equal(cfg("--target-momentum", "0.9").methodOptions.targetMomentum, 0.9);
  assert.equal(cfg("--target-momentum", "1").methodOptions.targetMomentum, 1);
  assert.equal(cfg("--no-target-network").methodOptions.targetMomentum, 0);
  assert.equal(cfg("--no-predictor").methodOptions.predictor, false);
  assert.equal(cfg().optimizer, "adamw");
  assert.equal(parseTrainArgs(["train", "byol", "--preset", "paper"]) !== "help" && (parseTrainArgs(["train", "byol", "--preset", "paper"]) as { config: { optimizer: string } }).config.optimizer, "lars");
  for (const bad of ["1.5", "-0.1", "abc", "", "nan", "Infinity"]) {
    assert.throws(() => cfg(`--target-momentum=${bad}`), new RegExp(`--target-momentum expects a number >= 0 and <= 1, got '${bad}'`));
  }
  assert.throws(() => cfg("--target-momentum"), /argument missing|expects a value/);
  assert.throws(() => cfg("--no-predictor=yes"), /does not take an argument/);
  assert.throws(() => parseTrainArgs(["train", "simclr", "--no-predictor"]), /--no-predictor is not an option of simclr/);
  assert.throws(() => parseTrainArgs(["train", "simclr", "--target-momentum", "0.9"]), /--target-momentum is not an option of simclr/);
});

test("CLI: a tiny byol run trains, evaluates and writes results.json and the target network", async () => {
  const { out, results } = await runCliSmoke("byol", ["--progress", "plain"]);
  assert.equal(results.method, "byol");
  assert.equal(results.steps, 4);
  assert.equal(results.encoders.length, 1);
  assert.ok(results.encoders[0].knnTop1 > 0.1 && results.encoders[0].linearTop1 > 0.1, JSON.stringify(results.encoders));
  const weights = readCheckpoint(path.join(out, "weights", "ckpt-00000004"));
  assert.ok(weights.tensors["state.target"] && Object.keys(weights.tensors["state.target"]).some((k) => k.startsWith("projector.")));
  assert.ok(Object.keys(weights.tensors.model).some((k) => k.startsWith("predictor.")));
  fs.rmSync(out, { recursive: true, force: true });
});
