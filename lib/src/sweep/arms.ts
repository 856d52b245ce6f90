/**
 * Sweep arms: one arm is one training configuration, run as its own `sslkit train` process into
 * its own folder. The folder is named by a hash of the arm's full configuration, so a rerun reuses
 * finished arms, resumes interrupted ones from their checkpoints and runs only what changed.
 *
 *   <cacheDir>/<method>-<hash>/arm.json        the arm: name, hash, full configuration
 *   <cacheDir>/<method>-<hash>/run-config.json what `sslkit train --config` reads
 *   <cacheDir>/<method>-<hash>/log.txt         the training process's output
 *   <cacheDir>/<method>-<hash>/{config.json, metrics.jsonl, checkpoints/, weights/, results.json, ...}
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { CliResults } from "../cli";
import { methodConfig } from "../methods/registry";
import type { PresetName, RunConfig } from "../presets";
import { MetricsLog } from "../train/metrics";
import type { MetricsRecord } from "../train/metrics";

/** Bumped when the arm folder layout or the meaning of a cached result changes. */
export const SWEEP_CACHE_VERSION = 1;

export interface SweepArm {
  /** A label for tables and charts (not part of the cache key). */
  name: string;
  method: string;
  preset?: PresetName;
  /** Merged over the method's preset; `methodOptions` merge key by key. */
  config?: Partial<RunConfig>;
  /** Compute the raw-pixel and random-init baselines in this arm (default: the sweep's `baselines`). */
  baselines?: boolean;
}

export interface ResolvedArm {
  name: string;
  config: RunConfig;
  baselines: boolean;
  hash: string;
  dir: string;
}

export type ArmStatus = "done" | "cached" | "failed";

export interface ArmResult extends ResolvedArm {
  status: ArmStatus;
  /** The arm's results.json (undefined when it failed). */
  results?: CliResults;
  /** metrics.jsonl: per-step and per-epoch records. */
  metrics: MetricsRecord[];
  /** For a failed arm: what went wrong and the tail of its log. */
  error?: string;
  logTail?: string;
  /** Seconds this invocation spent on the arm (0 when cached). */
  seconds: number;
}

/** JSON with sorted object keys: the same configuration always serialises (and hashes) the same way. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The cache key of an arm: its full configuration, whether it computes baselines, and the cache layout version. */
export function armHash(config: RunConfig, baselines: boolean): string {
  return createHash("sha256").update(canonicalJson({ v: SWEEP_CACHE_VERSION, config, baselines })).digest("hex").slice(0, 16);
}

/** The arm's full configuration (the method's preset, then the arm's overrides), its hash and folder. */
export function resolveArm(arm: SweepArm, cacheDir: string, defaultBaselines: boolean): ResolvedArm {
  if (!arm || typeof arm.name !== "string" || arm.name.length === 0) throw new Error(`sweep: every arm needs a name, got ${JSON.stringify(arm)}`);
  if (typeof arm.method !== "string") throw new Error(`sweep: arm '${arm.name}' needs a method`);
  const config = methodConfig(arm.method, arm.preset ?? arm.config?.preset ?? "quick", { ...(arm.config ?? {}) });
  if (config.method !== arm.method) throw new Error(`sweep: arm '${arm.name}': config.method '${config.method}' is not the arm's method '${arm.method}'`);
  const baselines = arm.baselines ?? defaultBaselines;
  const hash = armHash(config, baselines);
  return { name: arm.name, config, baselines, hash, dir: path.resolve(cacheDir, `${arm.method}-${hash}`) };
}

/** Resolves every arm; two arms with the same configuration would share a folder, so that is an error. */
export function resolveArms(arms: readonly SweepArm[], cacheDir: string, baselines: "first" | "all" | "none"): ResolvedArm[] {
  if (!Array.isArray(arms) || arms.length === 0) throw new Error("sweep: no arms");
  const out = arms.map((a, i) => resolveArm(a, cacheDir, baselines === "all" || (baselines === "first" && i === 0)));
  const seen = new Map<string, string>();
  for (const a of out) {
    const key = canonicalJson(a.config);
    const other = seen.get(key);
    if (other !== undefined) throw new Error(`sweep: arms '${other}' and '${a.name}' have the same configuration`);
    seen.set(key, a.name);
  }
  const names = new Set<string>();
  for (const a of out) {
    if (names.has(a.name)) throw new Error(`sweep: two arms are named '${a.name}'`);
    names.add(a.name);
  }
  return out;
}

/** Writes arm.json and run-config.json into the arm's folder (idempotent). */
export function prepareArmDir(arm: ResolvedArm): void {
  fs.mkdirSync(arm.dir, { recursive: true });
  fs.writeFileSync(path.join(arm.dir, "arm.json"), JSON.stringify({ name: arm.name, hash: arm.hash, baselines: arm.baselines, config: arm.config }, null, 2) + "\n");
  fs.writeFileSync(path.join(arm.dir, "run-config.json"), JSON.stringify({ config: arm.config }, null, 2) + "\n");
}

/** The command line of an arm's training process (arguments after the CLI script). */
export function trainArgs(arm: ResolvedArm): string[] {
  return [
    "train",
    arm.config.method,
    "--config",
    path.join(arm.dir, "run-config.json"),
    "--out",
    arm.dir,
    "--resume",
    "--progress",
    "plain",
    ...(arm.baselines ? [] : ["--no-baselines"]),
  ];
}

export function readArmResults(dir: string): CliResults | undefined {
  const file = path.join(dir, "results.json");
  if (!fs.existsSync(file)) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as CliResults;
  } catch {
    return undefined; // a half-written file: the arm reruns (its checkpoints make that cheap)
  }
}

export function readArmMetrics(dir: string): MetricsRecord[] {
  const file = path.join(dir, "metrics.jsonl");
  return fs.existsSync(file) ? MetricsLog.read(file) : [];
}

/** The last `lines` lines of a text file ("" when missing). */
export function tailFile(file: string, lines = 20): string {
  if (!fs.existsSync(file)) return "";
  const text = fs.readFileSync(file, "utf8");
  return text.split(/\r?\n|\r/).filter((l) => l.trim() !== "").slice(-lines).join("\n");
}

/** The newest training progress line in an arm's log ("[###...] 12/40 ep 1/2 loss ..."), for the sweep's status line. */
export function lastProgressLine(file: string): string | undefined {
  const tail = tailFile(file, 30).split("\n").reverse();
  return tail.find((l) => /\b\d+\/\d+ ep \d+\/\d+/.test(l)) ?? tail.find((l) => l.startsWith("sslkit:"));
}

/** One row of a sweep's table. */
export interface SweepRow {
  arm: string;
  method: string;
  seed: number;
  status: ArmStatus;
  knnTop1: number;
  linearTop1: number;
  steps: number;
  trainSeconds: number;
  cached: boolean;
}

export function sweepTable(arms: readonly ArmResult[]): SweepRow[] {
  return arms.map((a) => {
    const learned = a.results?.encoders.find((e) => e.encoder.startsWith("learned"));
    return {
      arm: a.name,
      method: a.config.method,
      seed: a.config.seed,
      status: a.status,
      knnTop1: learned?.knnTop1 ?? NaN,
      linearTop1: learned?.linearTop1 ?? NaN,
      steps: a.results?.steps ?? 0,
      trainSeconds: a.results?.trainWallSeconds ?? NaN,
      cached: a.status === "cached",
    };
  });
}

/** The baselines (raw pixels, random init) of the first arm that computed them. */
export function sweepBaselines(arms: readonly ArmResult[]): { rawPixels?: { knnTop1: number; linearTop1: number }; randomInit?: { knnTop1: number; linearTop1: number } } {
  for (const a of arms) {
    const enc = a.results?.encoders ?? [];
    const raw = enc.find((e) => e.encoder === "raw pixels");
    const rnd = enc.find((e) => e.encoder === "random init");
    if (raw || rnd) return { rawPixels: raw, randomInit: rnd };
  }
  return {};
}
