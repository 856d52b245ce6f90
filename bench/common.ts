/**
 * Shared pieces of the training-step benches (bench/train-step.ts, bench/step-<method>.ts): flag
 * reading, warm-up + timed steps, the median, peak RSS, a figure's speed fields, the JSON lines,
 * `--profile`'s kernel table, one child process per figure (so a figure's peak RSS is its own), and
 * `--vs-torch`: the PyTorch reference (bench/torch/<script>.py) run after the figures, with the ratios.
 * Not a bench itself (bench/run.ts does not list it).
 */
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { describeBackend } from "../lib/src/backend";
import type { BackendInfo } from "../lib/src/backend";
import type { SSLMethod } from "../lib/src/methods/types";
import { Rng } from "../lib/src/random";
import type { SslOptimizer } from "../lib/src/train/optimizers";

/** The value after `--name` on the command line (undefined when the flag is absent; an error when its value is). */
export function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  if (i + 1 >= process.argv.length) throw new Error(`--${name} expects a value`);
  return process.argv[i + 1];
}

export function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** This process's peak resident set so far, in whole MB. */
export function peakRssMB(): number {
  return +(process.resourceUsage().maxRSS / 1024).toFixed(0);
}

/**
 * One training step of `method` on `images` as the Trainer runs it: the views (off the tape), the
 * loss and its gradients, the optimiser's update, then afterStep (EMA targets, queues, centers).
 * Returns the loss tensor (for timeSteps). Step i draws from Rng(i), of 1000 steps in all;
 * `onViews(i, ms)` gets the time spent making the views.
 */
export function methodStep(method: SSLMethod, opt: SslOptimizer, images: tf.Tensor4D, onViews?: (i: number, ms: number) => void): (i: number) => tf.Scalar {
  const vars = method.trainable.variables();
  return (i) => {
    const ctx = { step: i, totalSteps: 1000, epoch: 0, rng: new Rng(i) };
    const t0 = performance.now();
    const views = tf.tidy(() => method.views(images, ctx));
    onViews?.(i, performance.now() - t0);
    const { value, grads } = tf.variableGrads(() => method.step(views, ctx).loss, vars);
    opt.applyGradients(grads);
    method.afterStep?.(ctx);
    tf.dispose([...views, ...Object.values(grads)]);
    return value;
  };
}

/** Warm up, then time `steps` calls of `step`; each returns its loss tensor (read to sync, then disposed). */
export async function timeSteps(step: (i: number) => tf.Scalar, warmup: number, steps: number): Promise<{ stepMs: number[]; loss: number }> {
  let loss = NaN;
  const stepMs: number[] = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    const l = step(i);
    loss = (await l.data())[0];
    l.dispose();
    if (i >= warmup) stepMs.push(performance.now() - t0);
  }
  return { stepMs, loss };
}

/** A figure's speed fields: the median step time and the source images per second at `batch`. */
export function stepSpeed(batch: number, stepMs: number[]): { stepMsMedian: number; imagesPerSec: number } {
  const ms = median(stepMs);
  return { stepMsMedian: +ms.toFixed(1), imagesPerSec: +((batch * 1000) / ms).toFixed(1) };
}

/** One figure's JSON line: the bench's name, the figure's fields, then the backend and its threads. */
export function printFigure(bench: string, figure: Record<string, unknown>, info: BackendInfo): void {
  console.log(JSON.stringify({ bench, ...figure, backend: describeBackend(info), threads: info.threads }));
}

/** A `.catch` handler: a figure that threw prints its error as its JSON line and exits 1. */
export function figureFailed(bench: string, figure: string): (err: unknown) => never {
  return (err) => {
    const e = err as { message?: unknown } | undefined;
    console.log(JSON.stringify({ bench, figure, error: String(e?.message ?? err).slice(0, 500) }));
    process.exit(1);
  };
}

/** `--profile`: one more step under tf.profile, kernel time summed per kernel name and input shapes (to stderr). */
export async function printProfile(label: string, step: (i: number) => tf.Scalar): Promise<void> {
  const t0 = performance.now();
  const info = await tf.profile(() => step(1000));
  const wall = performance.now() - t0;
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
  const total = [...byName.values()].reduce((s, e) => s + e.ms, 0);
  console.error(`profile ${label}: wall ${wall.toFixed(0)} ms, kernels ${total.toFixed(0)} ms, ${info.kernels.length} kernel calls`);
  for (const [name, e] of [...byName].sort((a, b) => b[1].ms - a[1].ms).slice(0, 25)) {
    const top = [...e.shapes].sort((a, b) => b[1] - a[1]).slice(0, name === process.env.SSLKIT_PROFILE_KERNEL ? 40 : 3).map(([s, ms]) => `${s} ${ms.toFixed(0)}ms`).join("; ");
    console.error(`  ${name.padEnd(28)} ${e.ms.toFixed(0).padStart(6)} ms ${String(e.calls).padStart(5)} calls  ${top}`);
  }
}

/** The figure a child process runs (`--child=<figure>`), if this is one. */
export function childFigure<F extends string>(): F | undefined {
  return process.argv.find((a) => a.startsWith("--child="))?.slice("--child=".length) as F | undefined;
}

/** A bench's PyTorch reference, for `--vs-torch`. */
export interface TorchReference {
  /** The bench name of the ratio lines. */
  bench: string;
  /** bench/torch/<script>; it takes the same figure names as the children and prints a JSON line per figure. */
  script: string;
  /** The sslkit field the ratio reads (default imagesPerSec; modelImagesPerSec where PyTorch makes its views once). */
  field?: string;
  /** More arguments for the script. */
  args?: string[];
  /** One more JSON line from the ratios by figure (e.g. one ratio against another), or null for none. */
  summary?: (ratios: Record<string, number>) => Record<string, unknown> | null;
}

/**
 * The parent: runs `script` once per figure named on the command line (all `figures` when none is),
 * each as `--child=<figure> ...childArgs` in its own process. With `--vs-torch` and a `torch`
 * reference, then runs it for the same figures (/usr/bin/python3) and prints, per figure both
 * printed, sslkit's and PyTorch's images/s and their ratio. Exits 1 if anything failed.
 */
export function runFigureChildren(script: string, figures: readonly string[], childArgs: string[], torch?: TorchReference): never {
  const only = process.argv.slice(2).filter((a) => figures.includes(a));
  const vsTorch = torch !== undefined && process.argv.includes("--vs-torch");
  const ours: Record<string, number> = {};
  let failed = 0;
  // prints a process's lines and collects each figure's `field` into `into`
  const forward = (stdout: string, into: Record<string, number>, field = "imagesPerSec") => {
    process.stdout.write(stdout);
    for (const line of stdout.split("\n").filter((l) => l.startsWith("{"))) {
      const j = JSON.parse(line) as Record<string, unknown>;
      if (typeof j.figure === "string" && typeof j[field] === "number") into[j.figure] = j[field] as number;
    }
  };
  const run = only.length > 0 ? only : figures;
  for (const figure of run) {
    const r = spawnSync(process.execPath, ["--import", "tsx", script, `--child=${figure}`, ...childArgs], { encoding: "utf8", env: process.env, stdio: ["ignore", vsTorch ? "pipe" : "inherit", "inherit"] });
    if (vsTorch) forward(r.stdout ?? "", ours, torch.field);
    if (r.status !== 0) failed++;
  }
  if (vsTorch) {
    const py = spawnSync("/usr/bin/python3", [path.join(__dirname, "torch", torch.script), ...run, ...(torch.args ?? [])], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
    const theirs: Record<string, number> = {};
    forward(py.stdout ?? "", theirs);
    if (py.status !== 0) failed++;
    const ratios: Record<string, number> = {};
    for (const [figure, torchImagesPerSec] of Object.entries(theirs)) {
      if (!(figure in ours)) continue;
      ratios[figure] = ours[figure] / torchImagesPerSec;
      console.log(JSON.stringify({ bench: torch.bench, figure, sslkitImagesPerSec: ours[figure], torchImagesPerSec, ratio: +ratios[figure].toFixed(2) }));
    }
    const extra = torch.summary?.(ratios);
    if (extra) console.log(JSON.stringify({ bench: torch.bench, ...extra }));
  }
  process.exit(failed > 0 ? 1 : 0);
}
