/**
 * Training metrics: JSON lines in <out>/metrics.jsonl (one record per logged step, one per
 * epoch), and a terminal progress display (a redrawn bar on a TTY, a plain line every few
 * seconds otherwise).
 */
import * as fs from "node:fs";
import * as path from "node:path";

/** One line of metrics.jsonl. `type` says what the line is; other fields are numbers. */
export interface MetricsRecord {
  type: "step" | "epoch";
  step: number;
  epoch: number;
  [key: string]: number | string | null | undefined;
}

/** An append-only JSONL log that also keeps its records in memory (they go into checkpoints). */
export class MetricsLog {
  private _records: MetricsRecord[] = [];

  /** `file` undefined: in memory only. */
  constructor(readonly file?: string) {
    if (file) fs.mkdirSync(path.dirname(file), { recursive: true });
  }

  get records(): readonly MetricsRecord[] {
    return this._records;
  }

  append(record: MetricsRecord): void {
    this._records.push(record);
    if (this.file) fs.appendFileSync(this.file, JSON.stringify(record) + "\n");
  }

  /** Replace the log with `records` (a resume rewrites the file up to the checkpoint). */
  reset(records: readonly MetricsRecord[] = []): void {
    this._records = records.slice();
    if (this.file) {
      const tmp = `${this.file}.tmp-${process.pid}`;
      fs.writeFileSync(tmp, this._records.map((r) => JSON.stringify(r) + "\n").join(""));
      fs.renameSync(tmp, this.file);
    }
  }

  /** Read a metrics.jsonl file back. */
  static read(file: string): MetricsRecord[] {
    return fs
      .readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l.trim().length > 0)
      .map((l) => JSON.parse(l) as MetricsRecord);
  }
}

/** What the trainer reports after every step (the `onProgress` hook and the terminal display). */
export interface TrainProgress {
  step: number;
  totalSteps: number;
  epoch: number;
  epochs: number;
  loss: number;
  lr: number;
  imagesPerSec: number;
  /** Seconds left at the current speed. */
  etaSeconds: number;
  elapsedSeconds: number;
  metrics: Record<string, number>;
}

/** A duration as m:ss, or XhYYm past an hour ("?" when unknown). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}:${String(sec).padStart(2, "0")}`;
}

export interface ProgressDisplayOptions {
  /** Stream to write to (default process.stdout). */
  stream?: NodeJS.WriteStream;
  /** "auto" (default): a bar on a TTY, plain lines otherwise. */
  mode?: "auto" | "bar" | "plain" | "none";
  /** Seconds between plain lines (default 5). */
  plainIntervalSeconds?: number;
}

/** Terminal progress: `[#####.....] 120/900 ep 1/3 loss 4.812 312 img/s ETA 2:31`. */
export class ProgressDisplay {
  private readonly stream: NodeJS.WriteStream;
  private readonly mode: "bar" | "plain" | "none";
  private readonly interval: number;
  private lastPlain = 0;
  private lastBar = 0;
  private barShown = false;

  constructor(opts: ProgressDisplayOptions = {}) {
    this.stream = opts.stream ?? process.stdout;
    const mode = opts.mode ?? "auto";
    this.mode = mode === "auto" ? (this.stream.isTTY ? "bar" : "plain") : mode;
    this.interval = (opts.plainIntervalSeconds ?? 5) * 1000;
  }

  static line(p: TrainProgress, width = 24): string {
    const frac = p.totalSteps > 0 ? Math.min(1, p.step / p.totalSteps) : 0;
    const filled = Math.round(frac * width);
    const bar = "#".repeat(filled) + ".".repeat(width - filled);
    return (
      `[${bar}] ${p.step}/${p.totalSteps} ep ${p.epoch + 1}/${p.epochs} loss ${p.loss.toFixed(4)} ` +
      `lr ${p.lr.toExponential(2)} ${p.imagesPerSec.toFixed(0)} img/s ETA ${formatDuration(p.etaSeconds)}`
    );
  }

  update(p: TrainProgress): void {
    if (this.mode === "none") return;
    const now = Date.now();
    if (this.mode === "bar") {
      if (now - this.lastBar < 100 && p.step < p.totalSteps) return;
      this.lastBar = now;
      this.stream.write(`\r${ProgressDisplay.line(p)}\x1b[K`);
      this.barShown = true;
    } else if (now - this.lastPlain >= this.interval || p.step === p.totalSteps) {
      this.lastPlain = now;
      this.stream.write(ProgressDisplay.line(p) + "\n");
    }
  }

  /** Print a message without breaking the bar. */
  message(text: string): void {
    if (this.mode === "bar" && this.barShown) {
      this.stream.write(`\r\x1b[K${text}\n`);
    } else if (this.mode !== "none") {
      this.stream.write(text + "\n");
    }
  }

  finish(): void {
    if (this.mode === "bar" && this.barShown) this.stream.write("\n");
    this.barShown = false;
  }
}
