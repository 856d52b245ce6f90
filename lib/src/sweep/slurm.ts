/**
 * The Slurm executor: the arms go to the cluster as one job array (`sbatch --array=0-(n-1)`), one
 * task per arm. Each task reads its arm's line from a manifest in the shared output folder and runs
 * `sslkit train` into the arm's folder, which the sweep then reads back. The sweep follows the
 * tasks with `squeue` (and `sacct` where accounting is on).
 *
 * Nothing from a configuration is ever evaluated by a shell: directive values are validated against
 * strict patterns, paths are single-quoted, and the per-arm values (folder, method) are read from
 * the manifest as data.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { ResolvedArm } from "./arms";
import type { ArmRunOutcome } from "./local";
import { cliCommand, sleep } from "./process";

export interface SlurmOptions {
  partition?: string;
  /** Time limit per task, e.g. "01:00:00" or "90" (minutes) or "1-00:00:00". */
  time?: string;
  cpusPerTask?: number;
  /** GPUs per task (`--gres=gpu:N`). */
  gpus?: number;
  /** Memory per task, e.g. "8G". */
  mem?: string;
  /** Most tasks running at once (`--array=0-N%max`). */
  maxConcurrent?: number;
  account?: string;
  qos?: string;
  /** Seconds between squeue polls (default 5). */
  pollSeconds?: number;
  /** Prefix of the Slurm commands (e.g. a path to their folder); default: PATH. */
  binDir?: string;
}

const PATTERNS: Record<string, RegExp> = {
  partition: /^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$/,
  time: /^(\d+-)?\d+(:\d{1,2}){0,2}$/,
  mem: /^\d+[KMGT]?$/,
  account: /^[A-Za-z0-9_.-]+$/,
  qos: /^[A-Za-z0-9_.-]+$/,
};

/** Single-quotes a value for bash; a value with NUL or a line break is refused. */
export function shellQuote(value: string): string {
  if (/[\0\n\r]/.test(value)) throw new Error(`slurm: refusing a value with a NUL or line break: ${JSON.stringify(value)}`);
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Checks the options; throws an Error naming the bad one. */
export function validateSlurmOptions(o: SlurmOptions): void {
  for (const key of ["partition", "time", "mem", "account", "qos"] as const) {
    const v = o[key];
    if (v !== undefined && !(typeof v === "string" && PATTERNS[key].test(v))) throw new Error(`slurm: bad ${key} ${JSON.stringify(v)} (expected ${PATTERNS[key]})`);
  }
  for (const key of ["cpusPerTask", "gpus", "maxConcurrent"] as const) {
    const v = o[key];
    if (v !== undefined && !(Number.isInteger(v) && v >= (key === "gpus" ? 0 : 1))) throw new Error(`slurm: ${key} must be a ${key === "gpus" ? "non-negative" : "positive"} integer, got ${JSON.stringify(v)}`);
  }
  if (o.pollSeconds !== undefined && !(typeof o.pollSeconds === "number" && o.pollSeconds > 0)) throw new Error(`slurm: pollSeconds must be positive, got ${o.pollSeconds}`);
}

/** The manifest: one line per task, `<arm folder>\t<method>\t<baselines 0|1>`. */
export function slurmManifest(arms: readonly ResolvedArm[]): string {
  return arms
    .map((a) => {
      if (/[\t\n\r\0]/.test(a.dir)) throw new Error(`slurm: arm folder ${JSON.stringify(a.dir)} has a tab or line break`);
      if (!/^[a-z][a-z0-9-]*$/.test(a.config.method)) throw new Error(`slurm: bad method name ${JSON.stringify(a.config.method)}`);
      return `${a.dir}\t${a.config.method}\t${a.baselines ? 1 : 0}`;
    })
    .join("\n") + "\n";
}

/** The batch script of a job array over the manifest's lines. */
export function slurmBatchScript(opts: SlurmOptions & { count: number; manifest: string; workDir: string; jobName?: string }): string {
  validateSlurmOptions(opts);
  if (!(Number.isInteger(opts.count) && opts.count >= 1)) throw new Error(`slurm: need at least one task, got ${opts.count}`);
  const jobName = opts.jobName ?? "sslkit-sweep";
  if (!/^[A-Za-z0-9_.-]+$/.test(jobName)) throw new Error(`slurm: bad job name ${JSON.stringify(jobName)}`);
  const { node, args } = cliCommand();
  const directives = [
    `--job-name=${jobName}`,
    `--array=0-${opts.count - 1}${opts.maxConcurrent ? `%${opts.maxConcurrent}` : ""}`,
    ...(opts.partition ? [`--partition=${opts.partition}`] : []),
    ...(opts.time ? [`--time=${opts.time}`] : []),
    ...(opts.cpusPerTask ? [`--cpus-per-task=${opts.cpusPerTask}`] : []),
    ...(opts.gpus ? [`--gres=gpu:${opts.gpus}`] : []),
    ...(opts.mem ? [`--mem=${opts.mem}`] : []),
    ...(opts.account ? [`--account=${opts.account}`] : []),
    ...(opts.qos ? [`--qos=${opts.qos}`] : []),
  ];
  return [
    "#!/bin/bash",
    ...directives.map((d) => `#SBATCH ${d}`),
    "# One sslkit sweep arm per array task; its line of the manifest names the arm's folder.",
    "set -euo pipefail",
    `cd ${shellQuote(opts.workDir)}`,
    `IFS=$'\\t' read -r ARM_DIR METHOD BASELINES < <(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" ${shellQuote(opts.manifest)})`,
    'EXTRA=()',
    'if [ "$BASELINES" != "1" ]; then EXTRA+=(--no-baselines); fi',
    'export SSLKIT_THREADS="${SLURM_CPUS_PER_TASK:-${SSLKIT_THREADS:-2}}"',
    `echo "=== $(date -Is) slurm job \${SLURM_ARRAY_JOB_ID:-?} task \${SLURM_ARRAY_TASK_ID} on $(hostname)" >> "$ARM_DIR/log.txt"`,
    `exec ${[node, ...args].map(shellQuote).join(" ")} train "$METHOD" --config "$ARM_DIR/run-config.json" --out "$ARM_DIR" --resume --progress plain "\${EXTRA[@]}" >> "$ARM_DIR/log.txt" 2>&1`,
    "",
  ].join("\n");
}

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === "number" ? ((err as unknown as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && !stderr ? err.message : "") });
    });
  });
}

export interface SlurmRun {
  jobId: string;
  script: string;
  outcomes: Map<string, ArmRunOutcome>;
}

/**
 * Submits the arms as one job array and waits for every task to leave the queue. `onPoll` sees the
 * task states (by array index) after each squeue poll.
 */
export async function runSlurm(
  arms: readonly ResolvedArm[],
  sweepDir: string,
  opts: SlurmOptions & { onPoll?: (states: Map<number, string>) => void; stopRequested?: () => boolean } = {},
): Promise<SlurmRun> {
  validateSlurmOptions(opts);
  const bin = (name: string) => (opts.binDir ? path.join(opts.binDir, name) : name);
  fs.mkdirSync(sweepDir, { recursive: true });
  const manifest = path.join(sweepDir, "arms.tsv");
  fs.writeFileSync(manifest, slurmManifest(arms));
  const script = slurmBatchScript({ ...opts, count: arms.length, manifest, workDir: process.cwd() });
  const scriptFile = path.join(sweepDir, "sweep.sbatch");
  fs.writeFileSync(scriptFile, script, { mode: 0o755 });
  const sub = await run(bin("sbatch"), ["--parsable", `--output=${path.join(sweepDir, "slurm-%A_%a.out")}`, scriptFile]);
  if (sub.code !== 0) throw new Error(`slurm: sbatch failed (exit ${sub.code}): ${sub.stderr.trim() || sub.stdout.trim()}`);
  const jobId = sub.stdout.trim().split(";")[0];
  if (!/^\d+$/.test(jobId)) throw new Error(`slurm: sbatch printed no job id: ${JSON.stringify(sub.stdout)}`);
  fs.writeFileSync(path.join(sweepDir, "job-id"), jobId + "\n");

  const pollMs = 1000 * (opts.pollSeconds ?? 5);
  let cancelled = false;
  for (;;) {
    if (!cancelled && opts.stopRequested?.()) {
      cancelled = true;
      // SIGTERM lets each running task checkpoint before it ends; pending tasks are dropped.
      await run(bin("scancel"), ["--signal=TERM", "--full", jobId]);
      await run(bin("scancel"), ["--state=PENDING", jobId]);
    }
    const q = await run(bin("squeue"), ["-h", "-r", "-j", jobId, "-o", "%i|%T"]);
    if (q.code !== 0 && !/Invalid job id/i.test(q.stderr)) throw new Error(`slurm: squeue failed (exit ${q.code}): ${q.stderr.trim()}`);
    const states = new Map<number, string>();
    for (const line of q.stdout.split("\n")) {
      const m = /^\d+_(\d+)\|(\w+)/.exec(line.trim());
      if (m) states.set(Number(m[1]), m[2]);
    }
    opts.onPoll?.(states);
    if (states.size === 0 && (q.stdout.trim() === "" || q.code !== 0)) break;
    await sleep(pollMs);
  }

  // Final states from accounting where it is on (sacct fails without a database: then the files tell).
  const acct = await run(bin("sacct"), ["-n", "-P", "-X", "-j", jobId, "-o", "JobID,State,ExitCode"]);
  const finalState = new Map<number, { state: string; exit: string }>();
  if (acct.code === 0) {
    for (const line of acct.stdout.split("\n")) {
      const [id, state, exit] = line.trim().split("|");
      const m = /^\d+_(\d+)$/.exec(id ?? "");
      if (m) finalState.set(Number(m[1]), { state, exit });
    }
  }
  const outcomes = new Map<string, ArmRunOutcome>();
  arms.forEach((arm, i) => {
    const ok = fs.existsSync(path.join(arm.dir, "results.json"));
    const acc = finalState.get(i);
    outcomes.set(arm.hash, {
      exitCode: ok ? 0 : 1,
      error: ok ? undefined : `slurm task ${jobId}_${i} ended without results${acc ? ` (state ${acc.state}, exit ${acc.exit})` : ""}; see ${path.join(sweepDir, `slurm-${jobId}_${i}.out`)}`,
    });
  });
  return { jobId, script, outcomes };
}
