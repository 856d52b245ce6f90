import { initBackend } from "../lib/src/backend";
import { Rng } from "../lib/src/random";
import { tsne } from "../lib/src/viz/tsne";
(async () => {
  await initBackend((process.argv[3] ?? "wasm") as any);
  const n = Number(process.argv[2] ?? 1000), dims = 128;
  const rng = new Rng(n);
  const centres = Array.from({ length: 10 }, () => Array.from({ length: dims }, () => rng.normal(0, 3)));
  const data = new Float32Array(n * dims);
  for (let i = 0; i < n; i++) for (let d = 0; d < dims; d++) data[i * dims + d] = centres[i % 10][d] + rng.normal();
  for (const leafSize of (process.argv[4] ?? "1").split(",").map(Number)) {
  const c0 = process.cpuUsage(); const t0 = performance.now();
  const r = await tsne(data, { cols: dims, leafSize, groupSize: Number(process.argv[7] ?? 32), theta: Number(process.argv[5] ?? 0.5), iterations: Number(process.argv[6] ?? 1000) }); console.log("visits/pt/it", (globalThis as any).__visits / n / Number(process.argv[6] ?? 1000)); (globalThis as any).__visits = 0;
  const c1 = process.cpuUsage(c0);
  console.log(JSON.stringify(r.timings), "leaf", leafSize, "tsne wall", ((performance.now() - t0) / 1000).toFixed(2), "cpu", ((c1.user + c1.system) / 1e6).toFixed(2), "kl", r.kl.toFixed(4));
  }
})();
