/**
 * Collapse monitoring. The score is the per-dimension standard deviation of L2-normalised
 * embeddings, averaged over dimensions, times sqrt(d) (SimSiam, Chen & He 2021, sec. 4.1;
 * lightly's std_of_l2_normalized). Unit vectors spread uniformly over the sphere have a
 * per-dimension std of 1/sqrt(d), so a healthy representation scores ~1 and a collapsed one
 * (every input mapped to the same direction) scores ~0. Embeddings of the form
 * mu + noise score about |noise| / |mu|. It detects collapse to a point, not dimensional
 * collapse onto a randomly oriented low-dimensional subspace (that still scores ~1).
 */
import * as tf from "@tensorflow/tfjs-core";
import { l2Normalize } from "../nn/fast-ops";

/** sqrt(d) * mean_d std_n(z_n / |z_n|) for z: [N, D], N >= 2 (unbiased std, as torch.std). */
export function collapseScore(z: tf.Tensor2D): tf.Scalar {
  if (!(z instanceof tf.Tensor) || z.rank !== 2) throw new Error(`collapseScore: z must be an [N, D] tensor, got shape [${z?.shape}]`);
  const [n, d] = z.shape;
  if (n < 2 || d < 1) throw new Error(`collapseScore: need at least 2 embeddings of dimension >= 1, got shape [${z.shape}]`);
  return tf.tidy(() => {
    const { variance } = tf.moments(l2Normalize(z, 1), 0);
    const std = tf.sqrt(tf.mul(variance, n / (n - 1)));
    return tf.mul(tf.mean(std), Math.sqrt(d)) as tf.Scalar;
  });
}

export interface CollapseMonitorOptions {
  /**
   * Warn when the score falls below this (default 0.15: embeddings whose spread is under ~15%
   * of their common component, i.e. close to a single point; isotropic embeddings score ~1).
   */
  threshold?: number;
  /** Also warn when the score drops below runningMax / dropFactor (default 5). */
  dropFactor?: number;
  /**
   * Updates before this step are recorded but never warn and do not count towards the running
   * max (e.g. a randomly initialised network) (default 0).
   */
  warmupSteps?: number;
  /** Called with the warning text every time update() returns one. */
  onWarning?: (message: string, step: number, score: number) => void;
}

export interface CollapseRecord {
  step: number;
  score: number;
  warning: string | null;
}

export class CollapseMonitor {
  readonly threshold: number;
  readonly dropFactor: number;
  readonly warmupSteps: number;
  readonly history: CollapseRecord[] = [];
  private readonly onWarning?: CollapseMonitorOptions["onWarning"];
  private runningMax = -Infinity;

  constructor(opts: CollapseMonitorOptions = {}) {
    this.threshold = opts.threshold ?? 0.15;
    this.dropFactor = opts.dropFactor ?? 5;
    this.warmupSteps = opts.warmupSteps ?? 0;
    this.onWarning = opts.onWarning;
    if (!(this.threshold >= 0)) throw new Error(`CollapseMonitor: threshold must be >= 0, got ${this.threshold}`);
    if (!(this.dropFactor > 1)) throw new Error(`CollapseMonitor: dropFactor must be > 1, got ${this.dropFactor}`);
  }

  /** Highest score seen after warmup (-Infinity before the first such update). */
  get maxScore(): number {
    return this.runningMax;
  }

  /**
   * Record a score (a number or a scalar tensor, which is read, not disposed); returns a warning
   * string when it indicates collapse, else null.
   */
  update(step: number, score: number | tf.Tensor): string | null {
    const value = score instanceof tf.Tensor ? score.dataSync()[0] : score;
    if (!Number.isFinite(value)) throw new Error(`CollapseMonitor.update: score must be finite, got ${value} at step ${step}`);
    let warning: string | null = null;
    if (step >= this.warmupSteps) {
      if (value < this.threshold) {
        warning = `representation collapse suspected at step ${step}: collapse score ${value.toFixed(4)} < threshold ${this.threshold} (healthy ~1, collapsed ~0)`;
      } else if (value < this.runningMax / this.dropFactor) {
        warning = `representation collapse suspected at step ${step}: collapse score ${value.toFixed(4)} fell more than ${this.dropFactor}x below its maximum ${this.runningMax.toFixed(4)}`;
      }
    }
    if (step >= this.warmupSteps) this.runningMax = Math.max(this.runningMax, value);
    this.history.push({ step, score: value, warning });
    if (warning && this.onWarning) this.onWarning(warning, step, value);
    return warning;
  }
}
