/**
 * Square matMul throughput: `node --import tsx bench/matmul.ts`.
 * Spawns itself once per configuration (backend initialisation is once per process): wasm with
 * SSLKIT_THREADS=1 and =2 at n = 1024, and the plain JavaScript cpu backend at n = 512 for reference.
 * Prints one JSON line per figure: {"figure":"matmul_gflops","backend","threads","n","gflops",...}
 * (GFLOP/s = 2 n^3 / median seconds of a few runs after a warm-up). Figures, not assertions.
 */
import { spawnSync } from "node:child_process";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend, describeBackend } from "../lib/src/backend";

const CHILD_FLAG = "--measure";
const REPS = Number(process.env.SSLKIT_BENCH_REPS ?? 7);

interface MatmulConfig {
  backend: "wasm" | "cpu";
  threads?: number;
  n: number;
}

const CONFIGS: MatmulConfig[] = [
  { backend: "wasm", threads: 1, n: 1024 },
  { backend: "wasm", threads: 2, n: 1024 },
  { backend: "cpu", n: 512 },
];

/** Median wall-clock ms of one n x n matMul (read back), after one warm-up run. */
function medianMatmulMs(n: number, reps: number): number {
  const a = tf.randomUniform([n, n], -1, 1, "float32", 1);
  const b = tf.randomUniform([n, n], -1, 1, "float32", 2);
  const once = () => tf.tidy(() => tf.matMul(a, b)).dataSync();
  once();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const start = performance.now();
    once();
    times.push(performance.now() - start);
  }
  tf.dispose([a, b]);
  times.sort((x, y) => x - y);
  return times[Math.floor(times.length / 2)];
}

/** Child: measure one configuration (backend and threads come from SSLKIT_BACKEND / SSLKIT_THREADS). */
async function measure(n: number): Promise<void> {
  const info = await initBackend();
  const reps = info.name === "cpu" ? Math.min(REPS, 3) : REPS;
  const ms = medianMatmulMs(n, reps);
  const gflops = (2 * n ** 3) / (ms * 1e6);
  console.log(
    JSON.stringify({
      figure: "matmul_gflops",
      backend: info.name,
      threads: info.threads,
      n,
      gflops: Number(gflops.toFixed(2)),
      ms: Number(ms.toFixed(1)),
      reps,
      description: describeBackend(info),
    }),
  );
}

/** Parent: one child process per configuration; their JSON lines pass straight through. */
function runAll(): number {
  let failures = 0;
  for (const config of CONFIGS) {
    const env: NodeJS.ProcessEnv = { ...process.env, SSLKIT_BACKEND: config.backend };
    if (config.threads != null) env.SSLKIT_THREADS = String(config.threads);
    else delete env.SSLKIT_THREADS;
    const child = spawnSync(process.execPath, ["--import", "tsx", __filename, CHILD_FLAG, String(config.n)], {
      env,
      stdio: ["ignore", "inherit", "inherit"],
      timeout: 240_000,
    });
    if (child.status !== 0) {
      failures++;
      console.log(JSON.stringify({ figure: "matmul_gflops", ...config, error: `exited with ${child.status ?? child.signal}` }));
    }
  }
  return failures;
}

const childIndex = process.argv.indexOf(CHILD_FLAG);
if (childIndex >= 0) {
  void measure(Number(process.argv[childIndex + 1]));
} else {
  process.exitCode = runAll() > 0 ? 1 : 0;
}
