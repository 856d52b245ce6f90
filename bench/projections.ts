/**
 * t-SNE (Barnes-Hut, lib/src/viz/tsne.ts) and UMAP (umap-js) timings on clustered 128-D data.
 * Prints one JSON line per (method, n). Usage:
 *   node --import tsx bench/projections.ts [--n 1000,2000,5000] [--dims 128] [--backend wasm|cpu] [--only tsne|umap]
 * Timings on a shared machine are noisy: compare runs taken at the same time.
 */
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

async function main(): Promise<void> {
  const sizes = arg("n", "1000,2000,5000").split(",").map(Number);
  const dims = Number(arg("dims", "128"));
  const only = arg("only", "");
  const backend = await initBackend(arg("backend", "wasm"));
  for (const n of sizes) {
    const data = clusteredData(n, dims, n);
    if (only !== "umap") {
      const r = await tsne(data, { cols: dims, seed: 0 });
      console.log(JSON.stringify({ bench: "projections", method: "tsne", n, dims, backend: backend.name, seconds: +r.seconds.toFixed(2), kl: +r.kl.toFixed(4) }));
    }
    if (only !== "tsne") {
      const t0 = performance.now();
      await umapProject(data, { cols: dims, seed: 0 });
      const seconds = (performance.now() - t0) / 1000;
      console.log(JSON.stringify({ bench: "projections", method: "umap", n, dims, backend: backend.name, seconds: +seconds.toFixed(2) }));
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
