/**
 * What a notebook says about a sweep: the per-step records of every arm for one chart, the
 * results table with the baselines, what the preset ran, and verdicts that know the run-to-run
 * noise (a difference smaller than the spread between seeds of one configuration is "within
 * noise", not agreement).
 */
import type { MetricsRecord } from "../train/metrics";
import type { ArmResult } from "./arms";
import { sweepBaselines } from "./arms";

const pct = (x: number | undefined) => (x !== undefined && Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : "n/a");

/** The learned encoder's scores of an arm (NaN when it failed). */
export function armScores(arm: ArmResult): { knnTop1: number; linearTop1: number } {
  const e = arm.results?.encoders.find((x) => x.encoder.startsWith("learned"));
  return { knnTop1: e?.knnTop1 ?? NaN, linearTop1: e?.linearTop1 ?? NaN };
}

/** The arm of a sweep by name (throws with the names there are). */
export function findArm(arms: readonly ArmResult[], name: string): ArmResult {
  const a = arms.find((x) => x.name === name);
  if (!a) throw new Error(`no arm '${name}' (arms: ${arms.map((x) => x.name).join(", ")})`);
  return a;
}

/** Every arm's records of one type, each tagged with `arm: <name>` (one chart, one series per arm). */
export function sweepRecords(arms: readonly ArmResult[], type: "step" | "epoch" = "step", names?: readonly string[]): (MetricsRecord & { arm: string })[] {
  return arms.filter((a) => !names || names.includes(a.name)).flatMap((a) => a.metrics.filter((r) => r.type === type).map((r) => ({ ...r, arm: a.name })));
}

/** The spread (max − min) of one measure over seeds of one configuration: the run-to-run noise. */
export function seedNoise(values: readonly number[]): number {
  const v = values.filter(Number.isFinite);
  if (v.length < 2) throw new Error(`seedNoise: need at least two finite values, got ${JSON.stringify(values)}`);
  return Math.max(...v) - Math.min(...v);
}

export type Verdict = "agrees" | "disagrees" | "within noise";

/**
 * A paper's claim that `difference` (e.g. accuracy of A − accuracy of B) is positive: "agrees" when
 * it is positive by more than the noise, "disagrees" when negative by more than it, otherwise
 * "within noise".
 */
export function verdict(difference: number, noise: number): Verdict {
  if (!Number.isFinite(difference)) return "within noise";
  if (Math.abs(difference) <= noise) return "within noise";
  return difference > 0 ? "agrees" : "disagrees";
}

/** Markdown: one row per arm (k-NN, linear, steps, train time, cached) and the baselines. */
export function sweepTableMarkdown(arms: readonly ArmResult[]): string {
  const { rawPixels, randomInit } = sweepBaselines(arms);
  const rows = arms.map((a) => {
    const s = armScores(a);
    const t = a.results?.trainWallSeconds;
    return `| ${a.name} | ${a.config.method} / ${a.config.backbone} | ${a.config.seed} | ${pct(s.knnTop1)} | ${pct(s.linearTop1)} | ${a.results?.imagesSeen ?? "-"} | ${t !== undefined ? `${(t / 60).toFixed(1)} min` : "-"} | ${a.status} |`;
  });
  return [
    "| arm | method / backbone | seed | k-NN top-1 | linear top-1 | images seen | training | status |",
    "|---|---|---|---|---|---|---|---|",
    ...rows,
    ...(rawPixels ? [`| **raw pixels** | - | - | ${pct(rawPixels.knnTop1)} | ${pct(rawPixels.linearTop1)} | - | - | baseline |`] : []),
    ...(randomInit ? [`| **random init** | ${arms[0].config.backbone} | ${arms[0].config.seed} | ${pct(randomInit.knnTop1)} | ${pct(randomInit.linearTop1)} | 0 | - | baseline |`] : []),
  ].join("\n");
}

/** Markdown: what the sweep ran (preset, data, epochs, backend, wall time) and which arms came from the cache. */
export function sweepRunSummary(arms: readonly ArmResult[], opts: { preset: string; notebookSeconds?: number }): string {
  const ran = arms.filter((a) => a.results);
  const backends = [...new Set(ran.map((a) => a.results!.backend))];
  const cached = arms.filter((a) => a.status === "cached").map((a) => a.name);
  const failed = arms.filter((a) => a.status === "failed").map((a) => a.name);
  const trainMin = ran.reduce((s, a) => s + a.results!.trainWallSeconds, 0) / 60;
  const totalMin = ran.reduce((s, a) => s + a.results!.totalWallSeconds, 0) / 60;
  const sizes = ran.map((a) => `${a.name}: ${a.results!.trainImages} images × ${a.results!.epochs} epoch(s), batch ${a.config.batchSize}`);
  const ev = ran[0]?.results;
  return [
    `**What ran.** Preset \`${opts.preset}\`; ${arms.length} arms, ${cached.length} from the cache${cached.length ? ` (${cached.join(", ")})` : ""}` +
      `${failed.length ? `, ${failed.length} failed (${failed.join(", ")})` : ""}. Backend: ${backends.join("; ") || "n/a"}.`,
    `Training ${trainMin.toFixed(1)} min and ${totalMin.toFixed(1)} min with evaluation, summed over the arms` +
      (opts.notebookSeconds !== undefined ? `; this notebook ran ${(opts.notebookSeconds / 60).toFixed(1)} min` : "") +
      (ev ? `. Evaluation: k-NN and linear probe on ${ev.evalTrainImages} labelled train / ${ev.evalTestImages} test images.` : "."),
    `Arms: ${sizes.join("; ")}.`,
  ].join("\n\n");
}
