/**
 * `npm run bench`: runs every benchmark script in its own process (so peak RSS is per figure)
 * and forwards their JSON lines. Figures, not assertions.
 */
import { spawnSync } from "node:child_process";
import * as path from "node:path";

const scripts = ["matmul.ts", "ops.ts", "train-step.ts", "projections.ts", "step-sit.ts", "step-sdmp.ts", "step-byol.ts", "step-mae.ts", "step-moco.ts", "step-dino.ts"];
const only = process.argv.slice(2);
let failed = 0;
for (const script of scripts) {
  if (only.length > 0 && !only.some((o) => script.startsWith(o))) continue;
  const file = path.join(__dirname, script);
  const result = spawnSync(process.execPath, ["--import", "tsx", file], { stdio: "inherit", env: process.env });
  if (result.status !== 0) {
    failed++;
    console.error(JSON.stringify({ bench: script, error: `exited with ${result.status ?? result.signal}` }));
  }
}
process.exit(failed > 0 ? 1 : 0);
