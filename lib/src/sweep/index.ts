/**
 * `runSweep(arms, options)`: the arms of an ablation as cached jobs, on local processes or a Slurm
 * cluster. Finished arms come from the cache, interrupted ones resume from their checkpoints, a
 * failed arm is reported (configuration + log tail) while the others go on, and the results come
 * back as one table.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createMethod } from "../methods/registry";
import type { SSLMethod } from "../methods/types";
import type { RunConfig } from "../presets";
import { readCheckpoint } from "../train/checkpoint";
import { liveLine } from "../viz/display";
import type { ArmResult, ResolvedArm, SweepArm, SweepRow } from "./arms";
import { lastProgressLine, prepareArmDir, readArmMetrics, readArmResults, resolveArms, sweepBaselines, sweepTable, tailFile } from "./arms";
import type { ArmRunOutcome } from "./local";
import { runLocal } from "./local";
import type { SlurmOptions } from "./slurm";
import { runSlurm, slurmBatchScript, slurmManifest } from "./slurm";

export * from "./arms";
export * from "./report";
export { runLocal, threadsPerArm } from "./local";
export type { ArmRunOutcome, LocalExecutorOptions } from "./local";
export { runSlurm, shellQuote, slurmBatchScript, slurmManifest, validateSlurmOptions } from "./slurm";
export type { SlurmOptions } from "./slurm";

export interface SweepOptions {
  /** Where arm folders live (default $SSLKIT_SWEEP_DIR or runs/sweeps). */
  cacheDir?: string;
  executor?: "local" | "slurm";
  /** Local executor: arms at once (default $SSLKIT_SWEEP_PARALLEL, else 1); each gets cores / parallel threads. */
  parallel?: number;
  /** Which arms compute the raw-pixel and random-init baselines (default "first"). */
  baselines?: "first" | "all" | "none";
  slurm?: SlurmOptions;
  /** Slurm: print the batch script and submit nothing. */
  dryRun?: boolean;
  /** "auto": a live line in a notebook, lines every 10 s elsewhere; "none": silent. */
  progress?: "auto" | "none";
  /** Where progress lines and failure reports go outside a notebook (default console.log). */
  log?: (line: string) => void;
  /** Extra environment of the training processes (local executor). */
  env?: Record<string, string>;
  /** Polled: when it returns true, running arms checkpoint and stop, and no new arm starts. */
  stopRequested?: () => boolean;
}

export interface SweepResult {
  arms: ArmResult[];
  table: SweepRow[];
  baselines: ReturnType<typeof sweepBaselines>;
  failed: ArmResult[];
  /** Slurm: the job id and the batch script (also the dry run's output). */
  slurm?: { jobId?: string; script: string };
  seconds: number;
}

/** $SSLKIT_SWEEP_PARALLEL (a positive integer), else 1: one run already uses every core. */
export function defaultParallel(): number {
  const v = process.env.SSLKIT_SWEEP_PARALLEL;
  if (v === undefined || v === "") return 1;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`SSLKIT_SWEEP_PARALLEL must be a positive integer, got '${v}'`);
  return n;
}

export function defaultSweepDir(): string {
  return path.resolve(process.env.SSLKIT_SWEEP_DIR || path.join("runs", "sweeps"));
}

function collect(arm: ResolvedArm, cached: boolean, outcome: ArmRunOutcome | undefined, seconds: number): ArmResult {
  const results = readArmResults(arm.dir);
  const metrics = readArmMetrics(arm.dir);
  if (results) return { ...arm, status: cached ? "cached" : "done", results, metrics, seconds };
  const why =
    outcome?.error ??
    (outcome === undefined ? "not run (the sweep was stopped)" : outcome.signal ? `training process killed by ${outcome.signal}` : `training process exited with code ${outcome.exitCode}`);
  return { ...arm, status: "failed", metrics, error: why, logTail: tailFile(path.join(arm.dir, "log.txt"), 15), seconds };
}

export function formatFailure(a: ArmResult): string {
  return [
    `sweep: arm '${a.name}' FAILED: ${a.error}`,
    `  folder: ${a.dir}`,
    `  configuration: ${JSON.stringify({ method: a.config.method, preset: a.config.preset, seed: a.config.seed, methodOptions: a.config.methodOptions })}`,
    ...(a.logTail ? ["  log tail:", ...a.logTail.split("\n").map((l) => `    ${l}`)] : []),
  ].join("\n");
}

/** Runs (or reuses) every arm and returns their results as one table. */
export async function runSweep(arms: readonly SweepArm[], opts: SweepOptions = {}): Promise<SweepResult> {
  const t0 = Date.now();
  const cacheDir = path.resolve(opts.cacheDir ?? defaultSweepDir());
  const resolved = resolveArms(arms, cacheDir, opts.baselines ?? "first");
  const log = opts.log ?? ((l: string) => console.log(l));
  const cached = new Set(resolved.filter((a) => readArmResults(a.dir)).map((a) => a.hash));
  const pending = resolved.filter((a) => !cached.has(a.hash));
  const executor = opts.executor ?? "local";

  if (opts.dryRun) {
    if (executor !== "slurm") throw new Error("sweep: --dry-run prints the Slurm batch script; use it with the slurm executor");
    const sweepDir = path.join(cacheDir, "slurm", "dry-run");
    const script = slurmBatchScript({ ...(opts.slurm ?? {}), count: Math.max(1, pending.length), manifest: path.join(sweepDir, "arms.tsv"), workDir: process.cwd() });
    const all = resolved.map((a) => collect(a, cached.has(a.hash), undefined, 0));
    return { arms: all, table: sweepTable(all), baselines: sweepBaselines(all), failed: [], slurm: { script: `${script}\n# arms.tsv:\n${pending.length ? slurmManifest(pending) : "# (every arm is cached)\n"}` }, seconds: 0 };
  }

  for (const a of pending) prepareArmDir(a);
  const show = opts.progress === "none" ? undefined : liveLine({ write: log });
  const running = new Set<ResolvedArm>();
  let done = cached.size;
  let failedCount = 0;
  const status = (final = false) => {
    if (!show) return;
    const parts = [`sweep: ${done}/${resolved.length} arms done (${cached.size} cached), ${running.size} running, ${failedCount} failed`];
    for (const a of running) {
      const line = lastProgressLine(path.join(a.dir, "log.txt"));
      parts.push(`[${a.name}] ${line ?? "starting"}`);
    }
    show(parts.join(" | "), final);
  };
  const ticker = show ? setInterval(() => status(), 1000) : undefined;
  let outcomes = new Map<string, ArmRunOutcome>();
  let slurmInfo: SweepResult["slurm"];
  const startTimes = new Map<string, number>();
  try {
    if (pending.length > 0) {
      if (executor === "local") {
        outcomes = await runLocal(pending, {
          parallel: opts.parallel ?? defaultParallel(),
          env: opts.env,
          stopRequested: opts.stopRequested,
          onStart: (a) => {
            running.add(a);
            startTimes.set(a.hash, Date.now());
            status();
          },
          onEnd: (a, o) => {
            running.delete(a);
            done += 1;
            if (!readArmResults(a.dir)) {
              failedCount += 1;
              log(formatFailure(collect(a, false, o, 0)));
            }
            status();
          },
        });
      } else if (executor === "slurm") {
        const sweepDir = path.join(cacheDir, "slurm", `sweep-${Date.now().toString(36)}`);
        const r = await runSlurm(pending, sweepDir, {
          ...(opts.slurm ?? {}),
          stopRequested: opts.stopRequested,
          onPoll: (states) => {
            running.clear();
            for (const [i, s] of states) if (s === "RUNNING") running.add(pending[i]);
            done = cached.size + pending.filter((a, i) => !states.has(i) && fs.existsSync(path.join(a.dir, "results.json"))).length;
          },
        });
        outcomes = r.outcomes;
        slurmInfo = { jobId: r.jobId, script: r.script };
        running.clear();
      } else {
        throw new Error(`sweep: unknown executor '${executor as string}' (expected local or slurm)`);
      }
    }
  } finally {
    if (ticker) clearInterval(ticker);
  }
  const all = resolved.map((a) => collect(a, cached.has(a.hash), outcomes.get(a.hash), startTimes.has(a.hash) ? (Date.now() - startTimes.get(a.hash)!) / 1000 : 0));
  const failed = all.filter((a) => a.status === "failed");
  done = all.filter((a) => a.status !== "failed").length;
  failedCount = failed.length;
  status(true);
  if (executor === "slurm") for (const f of failed) log(formatFailure(f));
  return { arms: all, table: sweepTable(all), baselines: sweepBaselines(all), failed, slurm: slurmInfo, seconds: (Date.now() - t0) / 1000 };
}

export interface LoadedArm {
  config: RunConfig;
  /** The method rebuilt through the registry, with the arm's trained weights and state; dispose() it. */
  method: SSLMethod;
  inputShape: [number, number, number];
}

/** Rebuilds an arm's trained method from its weights/ folder (for galleries and projections). */
export function loadArm(arm: Pick<ArmResult, "dir"> | string): LoadedArm {
  const dir = typeof arm === "string" ? arm : arm.dir;
  const weightsRoot = path.join(dir, "weights");
  const entries = fs.existsSync(weightsRoot) ? fs.readdirSync(weightsRoot).filter((d) => d.startsWith("ckpt-")).sort() : [];
  if (entries.length === 0) throw new Error(`loadArm: ${dir} has no trained weights (weights/ckpt-*); did the arm finish?`);
  const ckpt = readCheckpoint(path.join(weightsRoot, entries[entries.length - 1]));
  const meta = ckpt.meta as { config: RunConfig; inputShape: [number, number, number] };
  const method = createMethod(meta.config, meta.inputShape);
  try {
    method.trainable.setWeights(ckpt.tensors.model);
    for (const [name, m] of Object.entries(method.stateModules?.() ?? {})) {
      const w = ckpt.tensors[`state.${name}`];
      if (!w) throw new Error(`loadArm: ${dir} has no state '${name}'`);
      m.setWeights(w);
    }
    method.trainable.eval();
  } catch (err) {
    method.dispose();
    throw err;
  }
  return { config: meta.config, method, inputShape: meta.inputShape };
}
