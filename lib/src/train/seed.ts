/**
 * Derived seeds: every per-step random choice draws from `new Rng(deriveSeed(seed, step))`,
 * a pure function of (seed, step), so a run resumed from a checkpoint draws exactly what an
 * uninterrupted run would.
 */

function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** A well-mixed 31-bit seed from a base seed and any number of integer keys (step, epoch, stream id). */
export function deriveSeed(seed: number, ...keys: number[]): number {
  if (!Number.isFinite(seed)) throw new Error(`deriveSeed: seed must be finite, got ${seed}`);
  let h = mix32((Math.floor(seed) >>> 0) ^ 0x9e3779b9);
  for (const k of keys) {
    if (!Number.isFinite(k)) throw new Error(`deriveSeed: key must be finite, got ${k}`);
    h = mix32((h + 0x9e3779b9 + (Math.floor(k) >>> 0)) >>> 0 ^ Math.imul(h, 0x27d4eb2d));
  }
  return h & 0x7fffffff;
}
