/**
 * Shared test helpers: backend switching, numeric comparison against the cpu backend, and the pieces
 * of the method tests (tiny datasets, Trainer runs, exact resume, leak checks, CLI smoke runs).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../lib/src/backend";
import type { ImageDataset } from "../lib/src/data/types";
import type { SSLMethod } from "../lib/src/methods/types";
import type { WeightMap } from "../lib/src/nn/module";
import { Rng } from "../lib/src/random";
import { Trainer } from "../lib/src/train/trainer";
import type { TrainerOptions, TrainResult } from "../lib/src/train/trainer";

export { tf };

/** Switch to a backend (initialising it through sslkit on first use). */
export async function useBackend(name: "wasm" | "cpu"): Promise<void> {
  if (tf.getBackend() === name) return;
  await initBackend(name);
}

/** Max |a-b| / max(1, max|b|): relative error that is robust to near-zero references. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relError: length ${a.length} vs ${b.length}`);
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < a.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    maxRef = Math.max(maxRef, Math.abs(b[i]));
  }
  return maxDiff / Math.max(1, maxRef);
}

// ---- method tests: tiny data, training through the Trainer, exact resume, the CLI ------------

/** Tiny structured images: a bright square in one of 4 quadrants (the class), plus noise. */
export function squaresDataset(count: number, size: number, seed: number): ImageDataset {
  const rng = new Rng(seed);
  const images = new Uint8Array(count * size * size);
  const labels = new Uint8Array(count);
  const half = size / 2;
  for (let n = 0; n < count; n++) {
    const c = n % 4;
    labels[n] = c;
    const [oy, ox] = [c < 2 ? 0 : half, c % 2 === 0 ? 0 : half];
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const inside = y >= oy && y < oy + half && x >= ox && x < ox + half;
        images[n * size * size + y * size + x] = Math.min(255, (inside ? 180 : 20) + rng.int(0, 60));
      }
    }
  }
  return { name: "squares", images, labels, classNames: ["tl", "tr", "bl", "br"], count, height: size, width: size, channels: 1 };
}

/** The first `n` images of a dataset as a [n, H, W, C] tensor in [0, 1]. */
export function imagesTensor(ds: ImageDataset, n = ds.count): tf.Tensor4D {
  const px = ds.height * ds.width * ds.channels;
  return tf.tidy(() => tf.div(tf.tensor4d(ds.images.subarray(0, n * px), [n, ds.height, ds.width, ds.channels], "float32"), 255) as tf.Tensor4D);
}

/** A fresh directory under the OS's tmp dir, `sslkit-<name>-XXXXXX`. */
export function tmpDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `sslkit-${name}-`));
}

/** The loss of every step record, in order. */
export function stepLosses(records: readonly { type: string; loss?: unknown }[]): unknown[] {
  return records.filter((r) => r.type === "step").map((r) => r.loss);
}

/** Two weight maps hold the same names and bitwise the same values. */
export function assertWeightsEqual(a: WeightMap, b: WeightMap, what: string): void {
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), `${what}: names`);
  for (const k of Object.keys(a)) assert.deepEqual(a[k].data, b[k].data, `${what}.${k} differs`);
}

/** tf.memory().numTensors after each step (from the second on) never changes: no step leaks a tensor. */
export function expectNoLeakPerStep(counts: readonly number[], what = ""): void {
  assert.ok(counts.length >= 2, `${what}only ${counts.length} step(s) counted`);
  assert.ok(counts.slice(1).every((c) => c === counts[1]), `${what}numTensors drifted: ${counts}`);
}

export interface TrainRun {
  result: TrainResult;
  /** The trained model (`method.trainable`). */
  weights: WeightMap;
  /** Every state module's weights (`method.stateModules()`: EMA targets, queues, centers), by name. */
  state: Record<string, WeightMap>;
  optState: WeightMap;
  /** tf.memory().numTensors at each progress callback (after each step). */
  counts: number[];
}

/**
 * Trains `method` on `dataset` with the Trainer (quiet unless `options` say otherwise), counting the
 * live tensors after each step; returns the result, the trained weights, the state modules' weights
 * and the optimiser state, and disposes the trainer and the method.
 */
export async function trainSteps(method: SSLMethod, dataset: ImageDataset, options: TrainerOptions): Promise<TrainRun> {
  const counts: number[] = [];
  const trainer = new Trainer(method, dataset, {
    progress: "none", log: () => {}, ...options,
    onProgress: (p) => {
      counts.push(tf.memory().numTensors);
      options.onProgress?.(p);
    },
  });
  const result = await trainer.fit();
  const weights = await method.trainable.getWeights();
  const state: Record<string, WeightMap> = {};
  for (const [name, module] of Object.entries(method.stateModules?.() ?? {})) state[name] = await module.getWeights();
  const optState = await trainer.optimizer.getState();
  trainer.dispose();
  method.dispose();
  return { result, weights, state, optState, counts };
}

/**
 * Exact resume. `train(extra)` repeats the training of `full` (a straight run) with `extra` merged into
 * its Trainer options: it is run stopped after `stopAfterStep` steps in a fresh tmp outDir, then resumed
 * there. The resumed run's weights, every state module, the optimiser state and the per-step losses must
 * equal the straight run's bitwise. `stopped` checks the stopped run while its checkpoint is still there.
 */
export async function expectExactResume(
  full: TrainRun,
  train: (extra: Partial<TrainerOptions>) => Promise<TrainRun>,
  opts: { name: string; stopAfterStep: number; stopped?: (run: TrainRun) => void },
): Promise<{ stopped: TrainRun; resumed: TrainRun }> {
  const outDir = tmpDir(`${opts.name}-resume`);
  const stopped = await train({ outDir, stopAfterStep: opts.stopAfterStep });
  opts.stopped?.(stopped);
  const resumed = await train({ outDir, resume: true });
  assert.equal(resumed.result.resumedFromStep, opts.stopAfterStep);
  assertWeightsEqual(resumed.weights, full.weights, "weights");
  assert.deepEqual(Object.keys(resumed.state), Object.keys(full.state), "state modules");
  for (const name of Object.keys(full.state)) assertWeightsEqual(resumed.state[name], full.state[name], `state.${name}`);
  assertWeightsEqual(resumed.optState, full.optState, "optimiser state");
  assert.deepEqual(stepLosses(resumed.result.metrics), stepLosses(full.result.metrics));
  fs.rmSync(outDir, { recursive: true, force: true });
  return { stopped, resumed };
}

/**
 * A tiny `sslkit train <method> --preset smoke` in a child process (128 training images, batch 32,
 * k-NN / linear on 200 / 100, no baselines, offline; `extraArgs` go before `--out`) into a fresh tmp
 * outDir. Asserts it exits 0 (showing the output's tail); returns the outDir (for the caller to
 * remove) and its results.json.
 */
export async function runCliSmoke(method: string, extraArgs: string[] = [], opts: { timeoutMs?: number } = {}): Promise<{ out: string; results: Record<string, any> }> {
  const out = tmpDir(`${method}-cli`);
  const cli = path.resolve(__dirname, "../lib/src/cli.ts");
  const args = [
    "--import", "tsx", cli, "train", method, "--preset", "smoke", "--train-subset", "128", "--batch", "32",
    "--eval-train-subset", "200", "--eval-test-subset", "100", "--no-baselines", ...extraArgs, "--out", out,
  ];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, SSLKIT_OFFLINE: "1" }, timeout: opts.timeoutMs });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  assert.equal(code, 0, output.slice(-3000));
  return { out, results: JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8")) };
}
