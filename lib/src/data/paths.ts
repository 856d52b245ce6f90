/**
 * Where sslkit keeps downloaded datasets.
 *
 * The cache root is, in order:
 *   1. $SSLKIT_CACHE_DIR, when set;
 *   2. `datasets/cache` in the sslkit repository, when the library runs from a checkout of it
 *      (found from the library's own location, whatever the working directory);
 *   3. `$XDG_CACHE_HOME/sslkit`, else `~/.cache/sslkit`.
 * Each dataset has its own folder in it (`fashion-mnist`, `cifar10`).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** The sslkit repository root when this library runs from a checkout of it, else undefined. */
export function sslkitRepoRoot(): string | undefined {
  const here = typeof __dirname === "string" ? __dirname : undefined;
  if (!here) return undefined;
  // lib/src/data (tsx, ts-node) or lib/dist/data (built): the repository root is three levels up.
  const root = path.resolve(here, "..", "..", "..");
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { name?: string };
    if (pkg.name === "sslkit-workspace" && fs.existsSync(path.join(root, "datasets"))) return root;
  } catch {
    // not a checkout (installed from a registry): fall through
  }
  return undefined;
}

/** The dataset cache root (see the module comment for the order). */
export function datasetCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SSLKIT_CACHE_DIR) return path.resolve(env.SSLKIT_CACHE_DIR);
  const repo = sslkitRepoRoot();
  if (repo) return path.join(repo, "datasets", "cache");
  const xdg = env.XDG_CACHE_HOME;
  return path.join(xdg ? path.resolve(xdg) : path.join(os.homedir(), ".cache"), "sslkit");
}

/** The cache folder of one dataset, e.g. datasetCacheDir("fashion-mnist"). */
export function datasetCacheDir(dataset: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(datasetCacheRoot(env), dataset);
}
