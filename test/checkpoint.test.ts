/**
 * Checkpoints: exact round trip of weights + optimiser state + RNG, atomic writes (a crash
 * mid-write leaves the previous checkpoint readable), corrupt checkpoints skipped, and resume
 * after an interruption (stop, SIGTERM) reaching exactly the uninterrupted run's weights/metrics.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { tf, useBackend } from "./helpers";
import { Backbone } from "../lib/src/nn/backbone";
import type { WeightMap } from "../lib/src/nn/module";
import type { ImageDataset } from "../lib/src/data/types";
import type { SSLMethod, StepContext, StepOutput } from "../lib/src/methods/types";
import { AdamW, CheckpointManager, EmaUpdater, Trainer, cosineMomentum, deriveSeed, readCheckpoint, writeCheckpoint } from "../lib/src/train";
import type { TrainBatchSource } from "../lib/src/train";
import { Rng } from "../lib/src/random";

const tmp = (prefix: string) => fs.mkdtempSync(path.join(os.tmpdir(), `sslkit-${prefix}-`));

// ---- stand-ins: a tiny backbone/method and a batch source (pure in (seed, epoch)) -----------

class TinyBackbone extends Backbone {
  readonly outputDim = 8;
  readonly w: tf.Variable;
  readonly b: tf.Variable;
  readonly runningMean: tf.Variable;
  constructor(inDim: number, seed: number) {
    super();
    this.w = this.addParam("w", tf.randomNormal([inDim, 8], 0, 0.1, "float32", seed));
    this.b = this.addParam("b", tf.zeros([8]), { decay: false });
    this.runningMean = this.addBuffer("running_mean", tf.zeros([8]));
  }
  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => tf.add(tf.matMul(tf.reshape(x, [x.shape[0], -1]), this.w), this.b) as tf.Tensor2D);
  }
}

class TinyMethod implements SSLMethod {
  readonly name = "tiny";
  readonly backbone = new TinyBackbone(16, 1);
  readonly trainable = this.backbone;
  readonly target = new TinyBackbone(16, 2);
  private readonly ema = new EmaUpdater(this.backbone, this.target);
  private lastZ?: tf.Tensor2D;
  constructor() {
    this.ema.copy();
  }
  views(images: tf.Tensor4D, ctx: StepContext): tf.Tensor4D[] {
    return [0, 1].map(() => tf.add(images, tf.randomNormal(images.shape, 0, 0.1, "float32", ctx.rng.seed())) as tf.Tensor4D);
  }
  step(views: tf.Tensor4D[], _ctx: StepContext): StepOutput {
    const z1 = this.backbone.forward(views[0]);
    const z2 = tf.tidy(() => this.target.forward(views[1]));
    const loss = tf.add(tf.mean(tf.square(tf.sub(z1, z2))), tf.square(tf.sub(tf.mean(tf.square(z1)), 1))) as tf.Scalar;
    this.lastZ?.dispose();
    this.lastZ = tf.keep(tf.mean(z1, 0) as unknown as tf.Tensor2D);
    return { loss, embeddings: z1 };
  }
  afterStep(ctx: StepContext): void {
    tf.tidy(() => this.backbone.runningMean.assign(tf.add(tf.mul(this.backbone.runningMean, 0.9), tf.mul(this.lastZ!, 0.1))));
    this.ema.update(cosineMomentum(ctx.step, ctx.totalSteps, 0.9));
  }
  stateModules() {
    return { target: this.target };
  }
  dispose(): void {
    this.lastZ?.dispose();
    this.backbone.dispose();
    this.target.dispose();
  }
}

function tinyDataset(count: number, seed: number): ImageDataset {
  const rng = new Rng(seed);
  const images = new Uint8Array(count * 16);
  for (let i = 0; i < images.length; i++) images[i] = rng.int(0, 256);
  return { name: "tiny", images, labels: new Uint8Array(count), classNames: ["a"], count, height: 4, width: 4, channels: 1 };
}

function tinyBatches(ds: ImageDataset, batchSize: number, seed: number): TrainBatchSource {
  return function* (epoch: number, startBatch: number) {
    const order = new Rng(deriveSeed(seed, epoch)).permutation(ds.count);
    for (let b = startBatch; (b + 1) * batchSize <= ds.count; b++) {
      const data = new Float32Array(batchSize * 16);
      for (let i = 0; i < batchSize; i++) for (let j = 0; j < 16; j++) data[i * 16 + j] = ds.images[order[b * batchSize + i] * 16 + j] / 255;
      yield { images: tf.tensor4d(data, [batchSize, 4, 4, 1]) };
    }
  };
}

function assertWeightsEqual(a: WeightMap, b: WeightMap, what: string): void {
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), `${what}: names`);
  for (const k of Object.keys(a)) {
    assert.deepEqual(a[k].shape, b[k].shape, `${what}.${k} shape`);
    assert.deepEqual(Array.from(a[k].data), Array.from(b[k].data), `${what}.${k} differs`);
  }
}

const stepLosses = (records: readonly { type: string; loss?: unknown }[]) => records.filter((r) => r.type === "step").map((r) => r.loss);
const epochLosses = (records: readonly { type: string; loss?: unknown }[]) => records.filter((r) => r.type === "epoch").map((r) => r.loss);

// ---- tests -------------------------------------------------------------------------------

test("checkpoint round trip: weights, buffers, optimiser state and RNG restore exactly", async () => {
  await useBackend("wasm");
  const dir = tmp("roundtrip");
  const a = new TinyBackbone(16, 1);
  const opt = new AdamW(a.parameters(), { lr: 0.01, weightDecay: 0.1 });
  const x = tf.randomUniform([4, 4, 4, 1], 0, 1, "float32", 3) as tf.Tensor4D;
  const lossOf = (m: TinyBackbone) => () => tf.mean(tf.square(m.forward(x))) as tf.Scalar;
  for (let i = 0; i < 3; i++) {
    const { value, grads } = tf.variableGrads(lossOf(a));
    opt.applyGradients(grads);
    tf.dispose([value, ...Object.values(grads)]);
  }
  tf.tidy(() => a.runningMean.assign(tf.fill([8], 0.25)));
  const rng = new Rng(42);
  rng.next();
  const payload = { step: 3, meta: { rng: rng.getState(), note: "hello" }, tensors: { model: await a.getWeights(), optimizer: await opt.getState() } };
  const written = writeCheckpoint(dir, payload);
  const loaded = readCheckpoint(written);
  assert.equal(loaded.step, 3);
  assert.equal(loaded.meta.note, "hello");
  assertWeightsEqual(loaded.tensors.model, payload.tensors.model, "model");
  assertWeightsEqual(loaded.tensors.optimizer, payload.tensors.optimizer, "optimizer");
  assert.equal(loaded.tensors.optimizer.step.data[0], 3);
  // restore into fresh objects: the next update and the next random draw are identical
  const b = new TinyBackbone(16, 99);
  b.setWeights(loaded.tensors.model);
  const opt2 = new AdamW(b.parameters(), { lr: 0.01, weightDecay: 0.1 });
  opt2.setState(loaded.tensors.optimizer);
  const rng2 = new Rng(0);
  rng2.setState(loaded.meta.rng as [number, number, number, number]);
  assert.equal(rng2.next(), rng.next());
  for (const [m, o] of [[a, opt], [b, opt2]] as const) {
    const { value, grads } = tf.variableGrads(lossOf(m), m.variables());
    o.applyGradients(grads);
    tf.dispose([value, ...Object.values(grads)]);
  }
  assertWeightsEqual(await b.getWeights(), await a.getWeights(), "after one more step");
  assertWeightsEqual(await opt2.getState(), await opt.getState(), "optimizer after one more step");
  assert.throws(() => opt2.setState({ step: loaded.tensors.optimizer.step }), /missing state/);
  tf.dispose(x);
  for (const d of [a, b, opt, opt2]) d.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

test("atomic writes: a failed or killed write leaves the previous checkpoint; corrupt ones are skipped with a warning", async () => {
  const root = tmp("atomic");
  const big = (v: number): WeightMap => ({ w: { shape: [1000], dtype: "float32", data: new Float32Array(1000).fill(v) } });
  const warnings: string[] = [];
  const mgr = new CheckpointManager(root, { keep: 3, warn: (m) => warnings.push(m) });
  mgr.save({ step: 2, meta: { v: 2 }, tensors: { model: big(2) } });
  // a crash between writing the files and the rename: no ckpt-4 appears, the temp dir is gone
  assert.throws(() => mgr.save({ step: 4, meta: { v: 4 }, tensors: { model: big(4) } }, { beforeRename: () => { throw new Error("simulated crash"); } }), /simulated crash/);
  assert.deepEqual(mgr.list().map((c) => c.step), [2]);
  assert.deepEqual(fs.readdirSync(root), ["ckpt-00000002"]);
  // a leftover temp dir of a killed writer is never listed
  fs.mkdirSync(path.join(root, ".tmp-ckpt-00000006-1-1"));
  fs.writeFileSync(path.join(root, ".tmp-ckpt-00000006-1-1", "tensors.bin"), "partial");
  assert.equal(mgr.loadLatest()!.step, 2);
  // a truncated tensors.bin / a missing manifest / flipped bytes: skipped in favour of the previous one
  mgr.save({ step: 4, meta: { v: 4 }, tensors: { model: big(4) } });
  mgr.save({ step: 6, meta: { v: 6 }, tensors: { model: big(6) } });
  const bin6 = path.join(root, "ckpt-00000006", "tensors.bin");
  fs.truncateSync(bin6, 100);
  const bytes4 = fs.readFileSync(path.join(root, "ckpt-00000004", "tensors.bin"));
  bytes4[10] ^= 0xff;
  fs.writeFileSync(path.join(root, "ckpt-00000004", "tensors.bin"), bytes4);
  const latest = mgr.loadLatest()!;
  assert.equal(latest.step, 2);
  assert.equal(latest.tensors.model.w.data[999], 2);
  assert.equal(warnings.length, 2);
  assert.match(warnings[0], /ckpt-00000006.*tensors\.bin has 100 bytes/);
  assert.match(warnings[1], /ckpt-00000004.*CRC-32/);
  fs.rmSync(path.join(root, "ckpt-00000002", "manifest.json"));
  assert.equal(mgr.loadLatest(), undefined);
  // keep K: only the newest K survive
  const keep2 = new CheckpointManager(path.join(root, "k"), { keep: 2 });
  for (const s of [1, 2, 3, 4]) keep2.save({ step: s, meta: {}, tensors: { model: big(s) } });
  assert.deepEqual(keep2.list().map((c) => c.step), [3, 4]);
  fs.rmSync(root, { recursive: true, force: true });
});

test("atomic writes: SIGKILL of a writer mid-checkpoint never leaves an unreadable final checkpoint", async () => {
  const root = tmp("kill");
  const script = path.join(root, "writer.ts");
  const lib = path.resolve(__dirname, "../lib/src/train/checkpoint.ts");
  fs.writeFileSync(
    script,
    `import { CheckpointManager } from ${JSON.stringify(lib)};
const mgr = new CheckpointManager(${JSON.stringify(path.join(root, "ck"))}, { keep: 2 });
const data = new Float32Array(2_000_000);
for (let step = 1; ; step++) {
  data.fill(step);
  mgr.save({ step, meta: { step }, tensors: { model: { w: { shape: [data.length], dtype: "float32", data } } } });
  if (step === 1) process.stdout.write("first\\n");
}
`,
  );
  const child = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
  await new Promise((r) => setTimeout(r, 150 + Math.random() * 300));
  child.kill("SIGKILL");
  await new Promise((r) => child.once("exit", r));
  const warnings: string[] = [];
  const mgr = new CheckpointManager(path.join(root, "ck"), { warn: (m) => warnings.push(m) });
  const latest = mgr.loadLatest();
  assert.ok(latest, "a checkpoint is readable");
  assert.deepEqual(warnings, [], "no final checkpoint was corrupt");
  assert.equal(latest.tensors.model.w.data[1_999_999], latest.step);
  fs.rmSync(root, { recursive: true, force: true });
});

async function runTiny(out: string | undefined, extra: Partial<ConstructorParameters<typeof Trainer>[2]> = {}) {
  const ds = tinyDataset(72, 5);
  const method = new TinyMethod();
  const trainer = new Trainer(method, ds, {
    epochs: 3, batchSize: 8, seed: 11, outDir: out, checkpointEvery: 4, progress: "none", log: () => {},
    optimizer: { name: "adamw", lr: 0.02, weightDecay: 0.05 }, maxGradNorm: 5, collapseEvery: 5,
    batches: tinyBatches(ds, 8, 11), ...extra,
  });
  const result = await trainer.fit();
  const weights = await method.trainable.getWeights();
  const target = await method.target.getWeights();
  const optState = await trainer.optimizer.getState();
  trainer.dispose();
  method.dispose();
  return { result, weights, target, optState };
}

test("resume after an interruption reaches exactly the uninterrupted run's weights and metrics", async () => {
  await useBackend("wasm");
  const fullOut = tmp("full");
  const full = await runTiny(fullOut);
  assert.equal(full.result.steps, 27);
  const out = tmp("resume");
  // stop mid-epoch at step 13 (not a checkpoint multiple): a checkpoint is written at the stop
  const first = await runTiny(out, { stopAfterStep: 13 });
  assert.equal(first.result.interrupted, true);
  assert.equal(first.result.steps, 13);
  const second = await runTiny(out, { resume: true });
  assert.equal(second.result.resumedFromStep, 13);
  assert.equal(second.result.steps, 27);
  assert.equal(second.result.interrupted, false);
  assertWeightsEqual(second.weights, full.weights, "weights");
  assertWeightsEqual(second.target, full.target, "target (EMA state module)");
  assertWeightsEqual(second.optState, full.optState, "optimiser state");
  assert.deepEqual(stepLosses(second.result.metrics), stepLosses(full.result.metrics));
  assert.deepEqual(epochLosses(second.result.metrics), epochLosses(full.result.metrics));
  // metrics.jsonl on disk equals the in-memory log (no duplicated steps after the resume)
  const lines = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(stepLosses(lines), stepLosses(full.result.metrics));
  assert.deepEqual(lines.filter((r) => r.type === "step").map((r) => r.step), Array.from({ length: 27 }, (_, i) => i));
  // a resume with a different batch size is refused with a clear error
  await assert.rejects(runTiny(out, { resume: true, batchSize: 4, batches: tinyBatches(tinyDataset(72, 5), 4, 11) }), /batch 8, seed 11.*batch 4/);
  for (const d of [fullOut, out]) fs.rmSync(d, { recursive: true, force: true });
});

test("SIGTERM during training writes a checkpoint at the current step; resume finishes identically", async () => {
  await useBackend("wasm");
  const full = await runTiny(undefined);
  const out = tmp("signal");
  const listenersBefore = process.listenerCount("SIGTERM");
  const first = await runTiny(out, {
    handleSignals: true,
    onProgress: (p) => {
      if (p.step === 6) process.kill(process.pid, "SIGTERM");
    },
  });
  assert.equal(first.result.interrupted, true);
  assert.equal(first.result.signal, "SIGTERM");
  assert.ok(first.result.steps >= 6 && first.result.steps < 27, `stopped at ${first.result.steps}`);
  const latest = new CheckpointManager(path.join(out, "checkpoints")).loadLatest()!;
  assert.equal(latest.step, first.result.steps);
  assert.equal(process.listenerCount("SIGTERM"), listenersBefore, "signal handlers removed after fit");
  const second = await runTiny(out, { resume: true });
  assertWeightsEqual(second.weights, full.weights, "weights");
  assert.deepEqual(stepLosses(second.result.metrics), stepLosses(full.result.metrics));
  fs.rmSync(out, { recursive: true, force: true });
});

test("CLI: a run killed (SIGKILL) after its first checkpoint resumes with --resume and completes", async () => {
  const out = tmp("cli");
  const cli = path.resolve(__dirname, "../lib/src/cli.ts");
  const args = [
    "--import", "tsx", cli, "train", "simclr", "--preset", "smoke", "--backbone", "resnet-small", "--train-subset", "64", "--batch", "16",
    "--eval-train-subset", "100", "--eval-test-subset", "50", "--checkpoint-every", "1", "--no-baselines", "--progress", "plain", "--out", out,
  ];
  const env = { ...process.env, SSLKIT_OFFLINE: "1" };
  const first = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env });
  let firstOutput = "";
  first.stdout!.on("data", (d) => (firstOutput += d));
  first.stderr!.on("data", (d) => (firstOutput += d));
  const firstExit = new Promise<number | null>((r) => first.once("exit", (code) => r(code)));
  const ckptDir = path.join(out, "checkpoints");
  // kill as soon as the first checkpoint is in place
  for (let i = 0; i < 1200 && !(fs.existsSync(ckptDir) && fs.readdirSync(ckptDir).some((n) => n.startsWith("ckpt-"))); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  first.kill("SIGKILL");
  await firstExit;
  const before = new CheckpointManager(ckptDir).loadLatest();
  assert.ok(before, `a checkpoint exists after the kill; output:\n${firstOutput.slice(-2000)}`);
  assert.ok(before.step >= 1 && before.step < 4, `killed at step ${before.step}`);
  assert.ok(!fs.existsSync(path.join(out, "results.json")));
  const second = spawn(process.execPath, [...args, "--resume"], { stdio: ["ignore", "pipe", "pipe"], env });
  let output = "";
  second.stdout!.on("data", (d) => (output += d));
  second.stderr!.on("data", (d) => (output += d));
  const code = await new Promise<number | null>((r) => second.once("exit", (c) => r(c)));
  assert.equal(code, 0, output.slice(-3000));
  assert.match(output, new RegExp(`resuming from .*ckpt-0*${before.step} \\(step ${before.step}`));
  const results = JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8"));
  assert.equal(results.steps, 4);
  assert.equal(results.imagesSeen, 64);
  const lines = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.filter((r) => r.type === "step").map((r) => r.step), [0, 1, 2, 3]);
  assert.ok(fs.existsSync(path.join(out, "results.md")));
  fs.rmSync(out, { recursive: true, force: true });
});
