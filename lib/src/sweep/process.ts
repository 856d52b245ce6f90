/**
 * How an arm's training process is started: this Node with the CLI next to this module
 * (lib/dist/cli.js, or lib/src/cli.ts under tsx with this process's loader flags), and a lock
 * file in the arm's folder so that two sweeps never train the same arm at once.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { ResolvedArm } from "./arms";

/** `[node, ...args]` that run the sslkit CLI. */
export function cliCommand(): { node: string; args: string[] } {
  const fromSource = __filename.endsWith(".ts");
  const cli = path.join(__dirname, "..", fromSource ? "cli.ts" : "cli.js");
  // Under tsx the loader flags (--import tsx / --require ...) are in execArgv; keep only those.
  const loader: string[] = [];
  if (fromSource) {
    const argv = process.execArgv;
    for (let i = 0; i < argv.length; i++) {
      if ((argv[i] === "--import" || argv[i] === "--require" || argv[i] === "--loader") && i + 1 < argv.length) loader.push(argv[i], argv[++i]);
      else if (/^--(import|require|loader)=/.test(argv[i])) loader.push(argv[i]);
    }
    if (loader.length === 0) loader.push("--import", "tsx");
  }
  return { node: process.execPath, args: [...loader, cli] };
}

interface LockInfo {
  pid: number;
  host: string;
  started: string;
}

const lockFile = (arm: ResolvedArm) => path.join(arm.dir, "running.json");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The pid of a live local process that holds the arm's lock, if any (stale locks are removed). */
export function lockHolder(arm: ResolvedArm): number | undefined {
  const file = lockFile(arm);
  if (!fs.existsSync(file)) return undefined;
  try {
    const info = JSON.parse(fs.readFileSync(file, "utf8")) as LockInfo;
    if (info.host === os.hostname() && info.pid !== process.pid && alive(info.pid)) return info.pid;
  } catch {
    /* unreadable: stale */
  }
  fs.rmSync(file, { force: true });
  return undefined;
}

export function writeLock(arm: ResolvedArm, pid: number): void {
  fs.writeFileSync(lockFile(arm), JSON.stringify({ pid, host: os.hostname(), started: new Date().toISOString() } satisfies LockInfo) + "\n");
}

export function releaseLock(arm: ResolvedArm): void {
  fs.rmSync(lockFile(arm), { force: true });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits until a process (not our child) has exited. */
export async function waitForExit(pid: number, pollMs = 1000): Promise<void> {
  while (alive(pid)) await sleep(pollMs);
}
