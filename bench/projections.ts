/**
 * t-SNE (Barnes-Hut, lib/src/viz/tsne.ts) and UMAP (umap-js) timings on clustered 128-D data.
 * Prints one JSON line per (method, n). Usage:
 *   node --import tsx bench/projections.ts [--n 1000,2000,5000] [--dims 128] [--backend wasm|cpu] [--only tsne|umap]
 * Timings on a shared machine are noisy: compare runs taken at the same time. Each line also
 * carries the process CPU seconds and the 1-minute load average when the line was printed.
 */
import * as os from "node:os";
import { initBackend } from "../lib/src/backend";
import { Rng } from "../lib/src/random";
import { tsne } from "../lib/src/viz/tsne";
import { umapProject } from "../lib/src/viz/umap";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

/** n points around 10 Gaussian cluster centres in `dims` dimensions (like SSL embeddings of 10 classes). */
function clusteredData(n: number, dims: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const centres = Array.from({ length: 10 }, () => Array.from({ length: dims }, () => rng.normal(0, 3)));
  const out = new Float32Array(n * dims);
  for (let i = 0; i < n; i++) {
    const c = centres[i % 10];
    for (let d = 0; d < dims; d++) out[i * dims + d] = c[d] + rng.normal();
  }
  return out;
}

function cpuSince(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start);
  return +((d.user + d.system) / 1e6).toFixed(2);
}

async function main(): Promise<void> {
  const sizes = arg("n", "1000,2000,5000").split(",").map(Number);
  const dims = Number(arg("dims", "128"));
  const only = arg("only", "");
  const backend = await initBackend(arg("backend", "wasm"));
  for (const n of sizes) {
    const data = clusteredData(n, dims, n);
    const common = { bench: "projections", n, dims, backend: backend.name };
    if (only !== "umap") {
      const cpu0 = process.cpuUsage();
      const r = await tsne(data, { cols: dims, seed: 0 });
      const phases = Object.fromEntries(Object.entries(r.timings).map(([k, v]) => [k, +v.toFixed(2)]));
      console.log(JSON.stringify({ ...common, method: "tsne", seconds: +r.seconds.toFixed(2), cpuSeconds: cpuSince(cpu0), kl: +r.kl.toFixed(4), phases, loadavg1: +os.loadavg()[0].toFixed(2) }));
    }
    if (only !== "tsne") {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await umapProject(data, { cols: dims, seed: 0 });
      const seconds = (performance.now() - t0) / 1000;
      console.log(JSON.stringify({ ...common, method: "umap", seconds: +seconds.toFixed(2), cpuSeconds: cpuSince(cpu0), loadavg1: +os.loadavg()[0].toFixed(2) }));
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
