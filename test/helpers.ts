/** Shared test helpers: backend switching and numeric comparison against the cpu backend. */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../lib/src/backend";

export { tf };

/** Switch to a backend (initialising it through sslkit on first use). */
export async function useBackend(name: "wasm" | "cpu"): Promise<void> {
  if (tf.getBackend() === name) return;
  await initBackend(name);
}

/** Max |a-b| / max(1, max|b|): relative error that is robust to near-zero references. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relError: length ${a.length} vs ${b.length}`);
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < a.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    maxRef = Math.max(maxRef, Math.abs(b[i]));
  }
  return maxDiff / Math.max(1, maxRef);
}
