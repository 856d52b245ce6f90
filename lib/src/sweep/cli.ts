/**
 * `sslkit sweep <spec.json> [options]`: runs a sweep file's arms (see runSweep) and prints the
 * results table. The spec is a JSON array of arms, or an object
 * `{ "arms": [...], "cacheDir"?, "executor"?, "parallel"?, "baselines"?, "slurm"?: {...} }`;
 * a relative cacheDir is read from the spec file's folder. Flags override the spec.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import type { SweepArm } from "./arms";
import type { SlurmOptions } from "./slurm";
import { defaultSweepDir, runSweep } from "./index";
import type { SweepOptions } from "./index";

export const SWEEP_USAGE = `usage: sslkit sweep <spec.json> [options]

The spec: a JSON array of arms, or {"arms": [...], "cacheDir": "...", "executor": "local"|"slurm",
"parallel": n, "baselines": "first"|"all"|"none", "slurm": {"partition": ..., "time": ..., ...}}.
An arm: {"name": "K=256", "method": "moco-v1", "preset": "smoke", "config": {"seed": 1, "methodOptions": {...}}}.

options:
  --executor local|slurm   where the arms run (default local)
  --parallel N             local: arms at once (default 1; each gets cores/N threads)
  --cache-dir DIR          arm folders (default: the spec's cacheDir, else $SSLKIT_SWEEP_DIR or runs/sweeps)
  --baselines first|all|none  which arms compute the raw-pixel / random-init baselines (default first)
  --dry-run                slurm: print the batch script and submit nothing
  --partition P  --time T  --cpus-per-task N  --gpus N  --mem M  --max-concurrent N  --account A  --qos Q
                           slurm: the job array's settings
  --poll S                 slurm: seconds between squeue polls (default 5)
  --json FILE              also write the results (arms, table, baselines) as JSON
  -h, --help`;

export class SweepUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SweepUsageError";
  }
}

interface SweepSpec {
  arms: SweepArm[];
  cacheDir?: string;
  executor?: "local" | "slurm";
  parallel?: number;
  baselines?: "first" | "all" | "none";
  slurm?: SlurmOptions;
}

function readSpec(file: string): SweepSpec {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new SweepUsageError(`${file}: ${(err as Error).message}`);
  }
  const spec = (Array.isArray(parsed) ? { arms: parsed } : parsed) as SweepSpec;
  if (!spec || typeof spec !== "object" || !Array.isArray(spec.arms) || spec.arms.length === 0) throw new SweepUsageError(`${file}: expected a non-empty list of arms`);
  if (spec.cacheDir !== undefined) spec.cacheDir = path.resolve(path.dirname(file), spec.cacheDir);
  return spec;
}

function positiveInt(flag: string, v: string | undefined, min = 1): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new SweepUsageError(`--${flag} expects an integer >= ${min}, got '${v}'`);
  return n;
}

export function parseSweepArgs(argv: string[]): { spec: SweepSpec; options: SweepOptions; json?: string } | "help" {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      executor: { type: "string" },
      parallel: { type: "string" },
      "cache-dir": { type: "string" },
      baselines: { type: "string" },
      "dry-run": { type: "boolean" },
      partition: { type: "string" },
      time: { type: "string" },
      "cpus-per-task": { type: "string" },
      gpus: { type: "string" },
      mem: { type: "string" },
      "max-concurrent": { type: "string" },
      account: { type: "string" },
      qos: { type: "string" },
      poll: { type: "string" },
      json: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return "help";
  const [command, specFile, ...rest] = positionals;
  if (command !== "sweep") throw new SweepUsageError("expected 'sweep <spec.json>'");
  if (!specFile) throw new SweepUsageError("missing the sweep spec (a JSON file)");
  if (rest.length > 0) throw new SweepUsageError(`unexpected arguments: ${rest.join(" ")}`);
  const spec = readSpec(specFile);
  const executor = values.executor ?? spec.executor ?? "local";
  if (executor !== "local" && executor !== "slurm") throw new SweepUsageError(`--executor expects local or slurm, got '${executor}'`);
  const baselines = values.baselines ?? spec.baselines ?? "first";
  if (!["first", "all", "none"].includes(baselines)) throw new SweepUsageError(`--baselines expects first, all or none, got '${baselines}'`);
  const poll = values.poll !== undefined ? Number(values.poll) : undefined;
  if (poll !== undefined && !(poll > 0)) throw new SweepUsageError(`--poll expects a positive number of seconds, got '${values.poll}'`);
  const slurm: SlurmOptions = {
    ...(spec.slurm ?? {}),
    ...(values.partition !== undefined ? { partition: values.partition } : {}),
    ...(values.time !== undefined ? { time: values.time } : {}),
    ...(values["cpus-per-task"] !== undefined ? { cpusPerTask: positiveInt("cpus-per-task", values["cpus-per-task"]) } : {}),
    ...(values.gpus !== undefined ? { gpus: positiveInt("gpus", values.gpus, 0) } : {}),
    ...(values.mem !== undefined ? { mem: values.mem } : {}),
    ...(values["max-concurrent"] !== undefined ? { maxConcurrent: positiveInt("max-concurrent", values["max-concurrent"]) } : {}),
    ...(values.account !== undefined ? { account: values.account } : {}),
    ...(values.qos !== undefined ? { qos: values.qos } : {}),
    ...(poll !== undefined ? { pollSeconds: poll } : {}),
  };
  if (values["dry-run"] && executor !== "slurm") throw new SweepUsageError("--dry-run prints the Slurm batch script: use it with --executor slurm");
  return {
    spec,
    json: values.json,
    options: {
      cacheDir: values["cache-dir"] !== undefined ? path.resolve(values["cache-dir"]) : spec.cacheDir ?? defaultSweepDir(),
      executor,
      parallel: positiveInt("parallel", values.parallel) ?? spec.parallel,
      baselines: baselines as SweepOptions["baselines"],
      slurm,
      dryRun: values["dry-run"] ?? false,
    },
  };
}

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(2)}%` : "n/a");

/** `sslkit sweep ...`; returns the exit code (1 when an arm failed, 130/143 when stopped by a signal). */
export async function runSweepCli(argv: string[]): Promise<number> {
  const parsed = parseSweepArgs(argv);
  if (parsed === "help") {
    console.log(SWEEP_USAGE);
    return 0;
  }
  const { spec } = parsed;
  let signal: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signal) process.exit(sig === "SIGINT" ? 130 : 143); // second signal: stop now
    signal = sig;
    console.log(`sweep: ${sig}: stopping the running arms at their next step (they checkpoint; run the sweep again to resume)`);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const result = await runSweep(spec.arms, { ...parsed.options, stopRequested: () => signal !== undefined });
    if (parsed.options.dryRun) {
      console.log(result.slurm?.script ?? "");
      return 0;
    }
    const { rawPixels, randomInit } = result.baselines;
    console.log(["", "| arm | method | seed | status | k-NN top-1 | linear top-1 | steps | train time |", "|---|---|---|---|---|---|---|---|"].join("\n"));
    for (const r of result.table) {
      console.log(`| ${r.arm} | ${r.method} | ${r.seed} | ${r.status} | ${pct(r.knnTop1)} | ${pct(r.linearTop1)} | ${r.steps} | ${Number.isFinite(r.trainSeconds) ? `${r.trainSeconds.toFixed(0)} s` : "-"} |`);
    }
    if (rawPixels) console.log(`| raw pixels | - | - | - | ${pct(rawPixels.knnTop1)} | ${pct(rawPixels.linearTop1)} | - | - |`);
    if (randomInit) console.log(`| random init | - | - | - | ${pct(randomInit.knnTop1)} | ${pct(randomInit.linearTop1)} | - | - |`);
    if (result.slurm?.jobId) console.log(`\nslurm job ${result.slurm.jobId}`);
    console.log(`\nsweep: ${result.arms.length} arms, ${result.table.filter((r) => r.cached).length} from the cache, ${result.failed.length} failed, ${result.seconds.toFixed(0)} s`);
    if (parsed.json) fs.writeFileSync(parsed.json, JSON.stringify({ arms: result.arms.map(({ metrics: _m, ...a }) => a), table: result.table, baselines: result.baselines }, null, 2) + "\n");
    if (signal) return signal === "SIGINT" ? 130 : 143;
    return result.failed.length > 0 ? 1 : 0;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
