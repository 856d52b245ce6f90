/**
 * Learning-rate and momentum schedules: pure functions of the step, so a resumed run follows
 * exactly the curve an uninterrupted one would.
 */

export interface WarmupCosineOptions {
  /** Peak learning rate, reached at the end of the warmup. */
  baseLr: number;
  /** Linear warmup length in steps (0 = none). */
  warmupSteps: number;
  /** Total optimisation steps of the run. */
  totalSteps: number;
  /** Learning rate at the last step (default 0). */
  finalLr?: number;
}

/**
 * Linear warmup then cosine decay (SimCLR / MoCo v3 / MAE):
 *   step < W:  lr = baseLr (step + 1) / W
 *   else:      lr = finalLr + (baseLr - finalLr) (1 + cos(pi (step - W) / (T - W))) / 2
 * with the cosine progress clamped to [0, 1] (so steps >= T stay at finalLr).
 */
export function warmupCosine(opts: WarmupCosineOptions): (step: number) => number {
  const { baseLr, warmupSteps, totalSteps } = opts;
  const finalLr = opts.finalLr ?? 0;
  if (!(Number.isFinite(baseLr) && baseLr >= 0)) throw new Error(`warmupCosine: baseLr must be a non-negative number, got ${baseLr}`);
  if (!(Number.isFinite(finalLr) && finalLr >= 0)) throw new Error(`warmupCosine: finalLr must be a non-negative number, got ${finalLr}`);
  if (!(Number.isInteger(totalSteps) && totalSteps > 0)) throw new Error(`warmupCosine: totalSteps must be a positive integer, got ${totalSteps}`);
  if (!(Number.isInteger(warmupSteps) && warmupSteps >= 0 && warmupSteps <= totalSteps)) {
    throw new Error(`warmupCosine: warmupSteps must be an integer in [0, totalSteps=${totalSteps}], got ${warmupSteps}`);
  }
  return (step: number) => {
    if (!(Number.isInteger(step) && step >= 0)) throw new Error(`warmupCosine: step must be a non-negative integer, got ${step}`);
    if (step < warmupSteps) return (baseLr * (step + 1)) / warmupSteps;
    const decaySteps = Math.max(1, totalSteps - warmupSteps);
    const progress = Math.min(1, (step - warmupSteps) / decaySteps);
    return finalLr + ((baseLr - finalLr) * (1 + Math.cos(Math.PI * progress))) / 2;
  };
}

/**
 * BYOL's target-momentum schedule (Grill et al. 2020, sec. 3.2):
 *   m(k) = 1 - (1 - base) (cos(pi k / K) + 1) / 2,
 * rising from `base` at k = 0 to 1 at k = K.
 */
export function cosineMomentum(step: number, totalSteps: number, base: number): number {
  if (!(totalSteps > 0)) throw new Error(`cosineMomentum: totalSteps must be positive, got ${totalSteps}`);
  if (!(base >= 0 && base <= 1)) throw new Error(`cosineMomentum: base must be in [0, 1], got ${base}`);
  const k = Math.min(Math.max(step, 0), totalSteps);
  return 1 - ((1 - base) * (Math.cos((Math.PI * k) / totalSteps) + 1)) / 2;
}
