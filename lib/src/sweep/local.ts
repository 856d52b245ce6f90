/**
 * The local executor: arms run as child processes of this one, `parallel` at a time (default 1,
 * since one training run already uses every core; with n in parallel each gets cores / n
 * threads through SSLKIT_THREADS). On a stop request the running arms get SIGTERM, checkpoint
 * and exit; the next invocation resumes them.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { ResolvedArm } from "./arms";
import { trainArgs } from "./arms";
import { cliCommand, lockHolder, releaseLock, waitForExit, writeLock } from "./process";

export interface ArmRunOutcome {
  exitCode: number | null;
  signal?: string;
  error?: string;
}

export interface LocalExecutorOptions {
  parallel?: number;
  /** Extra environment of the training processes. */
  env?: Record<string, string>;
  /** Called when an arm starts / ends. */
  onStart?: (arm: ResolvedArm) => void;
  onEnd?: (arm: ResolvedArm, outcome: ArmRunOutcome) => void;
  /** Set by the caller to stop: running arms are sent SIGTERM, no new arm starts. */
  stopRequested?: () => boolean;
}

export function threadsPerArm(parallel: number, env: NodeJS.ProcessEnv = process.env): number {
  const cores = Math.max(1, Number(env.SSLKIT_THREADS) || os.availableParallelism?.() || os.cpus().length);
  return Math.max(1, Math.floor(cores / parallel));
}

/** Runs one arm's training process to its end; output goes to <arm>/log.txt. */
export async function runArmProcess(arm: ResolvedArm, opts: { env?: Record<string, string>; threads: number; stopRequested?: () => boolean }): Promise<ArmRunOutcome> {
  const holder = lockHolder(arm);
  if (holder !== undefined) {
    // Another sweep on this machine is training this arm: wait for it instead of racing it.
    await waitForExit(holder);
    if (fs.existsSync(path.join(arm.dir, "results.json"))) return { exitCode: 0 };
    return { exitCode: null, error: `process ${holder}, which was training this arm, ended without results` };
  }
  const { node, args } = cliCommand();
  const log = fs.openSync(path.join(arm.dir, "log.txt"), "a");
  fs.writeSync(log, `\n=== ${new Date().toISOString()} ${[node, ...args, ...trainArgs(arm)].join(" ")}\n`);
  try {
    const child = spawn(node, [...args, ...trainArgs(arm)], {
      stdio: ["ignore", log, log],
      env: { ...process.env, SSLKIT_THREADS: String(opts.threads), ...opts.env },
    });
    if (child.pid !== undefined) writeLock(arm, child.pid);
    let sentStop = false;
    const ticker = setInterval(() => {
      if (!sentStop && opts.stopRequested?.()) {
        sentStop = true;
        child.kill("SIGTERM");
      }
    }, 200);
    try {
      return await new Promise<ArmRunOutcome>((resolve) => {
        child.on("error", (err) => resolve({ exitCode: null, error: err.message }));
        child.on("exit", (code, signal) => resolve({ exitCode: code, signal: signal ?? undefined }));
      });
    } finally {
      clearInterval(ticker);
      releaseLock(arm);
    }
  } finally {
    fs.closeSync(log);
  }
}

/** Runs the arms, `parallel` at a time, in order. */
export async function runLocal(arms: readonly ResolvedArm[], opts: LocalExecutorOptions = {}): Promise<Map<string, ArmRunOutcome>> {
  const parallel = Math.max(1, Math.floor(opts.parallel ?? 1));
  const threads = threadsPerArm(parallel);
  const outcomes = new Map<string, ArmRunOutcome>();
  let next = 0;
  const worker = async () => {
    while (next < arms.length && !opts.stopRequested?.()) {
      const arm = arms[next++];
      opts.onStart?.(arm);
      const outcome = await runArmProcess(arm, { env: opts.env, threads, stopRequested: opts.stopRequested });
      outcomes.set(arm.hash, outcome);
      opts.onEnd?.(arm, outcome);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, arms.length) }, worker));
  return outcomes;
}
