/**
 * The trainer: drives any `SSLMethod` over a dataset. It owns the optimiser, the learning-rate
 * schedule, checkpoints (every N steps, at the end, on SIGINT/SIGTERM), resume, metrics
 * (metrics.jsonl, terminal progress, `onProgress`), the collapse monitor and an optional k-NN
 * monitor. Exactness of resume: the step's randomness is `new Rng(deriveSeed(seed, step))` and the
 * data order a pure function of (seed, epoch), so a resumed run repeats an uninterrupted one.
 */
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { datasetBatches } from "../data";
import type { ImageDataset } from "../data/types";
import { CollapseMonitor, collapseScore, evaluateRepresentation } from "../eval";
import type { EvalImageTransform } from "../eval";
import type { ParamInfo, WeightMap } from "../nn/module";
import type { SSLMethod, StepContext, StepOutput } from "../methods/types";
import { Rng, RngState } from "../random";
import { CheckpointManager, LoadedCheckpoint } from "./checkpoint";
import { MetricsLog, MetricsRecord, ProgressDisplay, TrainProgress } from "./metrics";
import { OptimizerSpec, SslOptimizer, clipGradientsByGlobalNorm, createOptimizer } from "./optimizers";
import { warmupCosine } from "./schedules";
import { deriveSeed } from "./seed";

/** The loss became NaN or infinite; training stopped BEFORE applying that step's update. */
export class NonFiniteLossError extends Error {
  constructor(
    readonly step: number,
    readonly loss: number,
    readonly lastCheckpoint?: string,
  ) {
    super(
      `non-finite loss (${loss}) at step ${step}; training stopped before applying the update` +
        (lastCheckpoint ? `; the last good checkpoint is ${lastCheckpoint}` : "; no checkpoint was written"),
    );
    this.name = "NonFiniteLossError";
  }
}

/** A batch as the trainer consumes it (what `datasetBatches` yields). */
export interface TrainBatch {
  images: tf.Tensor4D;
  labels?: Int32Array;
  indices?: Int32Array;
}

/** The batches of one epoch, starting at batch `startBatch`; must be a pure function of (seed, epoch). */
export type TrainBatchSource = (epoch: number, startBatch: number) => Iterable<TrainBatch> | AsyncIterable<TrainBatch>;

export interface KnnMonitorOptions {
  /** Small labelled subsets (e.g. 2k train / 1k test). */
  train: ImageDataset;
  test: ImageDataset;
  /** Every this many epochs (default 1). */
  everyEpochs?: number;
  k?: number;
  transform?: EvalImageTransform;
}

export interface TrainerOptions {
  epochs: number;
  batchSize: number;
  seed: number;
  /** Optimiser spec (default AdamW, lr 1e-3, weight decay 1e-6) or a factory over the trainable parameters. */
  optimizer?: OptimizerSpec | ((params: ParamInfo[]) => SslOptimizer);
  /** lr(step); default warmupCosine from the optimiser's lr with `warmupSteps` (default ~1 epoch capped at 10% of the run). */
  schedule?: (step: number) => number;
  warmupSteps?: number;
  finalLr?: number;
  /** Global-norm gradient clipping (off when undefined). */
  maxGradNorm?: number;
  /** Output directory: metrics.jsonl and checkpoints/. Undefined: in memory only. */
  outDir?: string;
  /** Checkpoint every N steps (default: once per epoch); a checkpoint is always written at the end. */
  checkpointEvery?: number;
  /** Checkpoints kept (default 3). */
  keepCheckpoints?: number;
  /** Continue from the newest valid checkpoint in outDir/checkpoints (if any). */
  resume?: boolean;
  /** Write a step record every N steps (default 1). */
  logEvery?: number;
  /** Collapse score of the method's embeddings every M steps (default 50; 0 = off). */
  collapseEvery?: number;
  knnMonitor?: KnnMonitorOptions;
  /** Stop (checkpoint + return `interrupted`) after this many steps in total: tests, time budgets. */
  stopAfterStep?: number;
  /** Live progress after each step (notebooks). */
  onProgress?: (p: TrainProgress) => void;
  /** Terminal progress (default "auto": a bar on a TTY, plain lines otherwise). */
  progress?: "auto" | "bar" | "plain" | "none";
  /** Checkpoint and stop cleanly on SIGINT/SIGTERM (default true when outDir is set). */
  handleSignals?: boolean;
  /** Saved into checkpoints (e.g. the CLI config). */
  config?: Record<string, unknown>;
  /** Override the data pipeline (default: datasetBatches(ds, {batchSize, seed, epoch, startBatch, shuffle, dropLast})). */
  batches?: TrainBatchSource;
  /** Warnings and notices (default: the progress display / console.warn). */
  log?: (message: string) => void;
}

export interface TrainResult {
  /** Steps completed in total (including steps before a resume). */
  steps: number;
  totalSteps: number;
  epochsCompleted: number;
  imagesSeen: number;
  /** Training wall time in seconds, summed over resumed segments. */
  wallSeconds: number;
  /** The part of wallSeconds spent before this run resumed (0 without a resume). */
  resumedWallSeconds: number;
  /** Mean loss of the last logged epoch (or the last step's loss). */
  finalLoss: number;
  interrupted: boolean;
  signal?: string;
  resumedFromStep?: number;
  lastCheckpoint?: string;
  metrics: readonly MetricsRecord[];
}

interface Position {
  step: number;
  epoch: number;
  batch: number;
}

const DEFAULT_OPTIMIZER: OptimizerSpec = { name: "adamw", lr: 1e-3, weightDecay: 1e-6 };

export class Trainer {
  readonly method: SSLMethod;
  readonly dataset: ImageDataset;
  readonly opts: TrainerOptions;
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
  readonly optimizer: SslOptimizer;
  readonly schedule: (step: number) => number;
  readonly metrics: MetricsLog;
  readonly collapseMonitor: CollapseMonitor;
  readonly checkpoints?: CheckpointManager;
  /** Seeded generator for anything not tied to a step (saved in checkpoints). */
  readonly rng: Rng;
  private readonly trainableVariables: tf.Variable[];
  /** Running sums of the current epoch (checkpointed, so a resumed epoch's record is exact). */
  private epochAcc = { lossSum: 0, steps: 0, seconds: 0 };
  private stopSignal?: string;
  private replaying = false;
  private lastCheckpoint?: string;
  private display?: ProgressDisplay;

  constructor(method: SSLMethod, dataset: ImageDataset, opts: TrainerOptions) {
    if (!method || typeof method.step !== "function" || typeof method.views !== "function") throw new Error("Trainer: expected an SSLMethod");
    if (!dataset || !(dataset.images instanceof Uint8Array)) throw new Error("Trainer: expected an ImageDataset");
    for (const key of ["epochs", "batchSize"] as const) {
      if (!(Number.isInteger(opts[key]) && opts[key] >= 1)) throw new Error(`Trainer: ${key} must be a positive integer, got ${opts[key]}`);
    }
    if (!Number.isFinite(opts.seed)) throw new Error(`Trainer: seed must be a finite number, got ${opts.seed}`);
    if (dataset.count < opts.batchSize) {
      throw new Error(`Trainer: dataset '${dataset.name}' has ${dataset.count} images, fewer than one batch of ${opts.batchSize}`);
    }
    if (opts.checkpointEvery !== undefined && !(Number.isInteger(opts.checkpointEvery) && opts.checkpointEvery >= 1)) {
      throw new Error(`Trainer: checkpointEvery must be a positive integer, got ${opts.checkpointEvery}`);
    }
    this.method = method;
    this.dataset = dataset;
    this.opts = opts;
    this.stepsPerEpoch = Math.floor(dataset.count / opts.batchSize);
    this.totalSteps = this.stepsPerEpoch * opts.epochs;
    const params = method.trainable.parameters().filter((p) => p.variable.trainable);
    this.trainableVariables = params.map((p) => p.variable);
    if (params.length === 0) throw new Error(`Trainer: method '${method.name}' has no trainable parameters`);
    const spec = opts.optimizer ?? DEFAULT_OPTIMIZER;
    this.optimizer = typeof spec === "function" ? spec(params) : createOptimizer(params, spec);
    const warmupSteps = opts.warmupSteps ?? Math.min(this.stepsPerEpoch, Math.floor(this.totalSteps / 10));
    this.schedule =
      opts.schedule ??
      warmupCosine({ baseLr: this.optimizer.lr, warmupSteps: Math.min(warmupSteps, this.totalSteps), totalSteps: this.totalSteps, finalLr: opts.finalLr ?? 0 });
    this.metrics = new MetricsLog(opts.outDir ? path.join(opts.outDir, "metrics.jsonl") : undefined);
    this.collapseMonitor = new CollapseMonitor({ warmupSteps: 1, onWarning: (m) => this.replaying || this.warn(`warning: ${m}`) });
    if (opts.outDir) {
      this.checkpoints = new CheckpointManager(path.join(opts.outDir, "checkpoints"), { keep: opts.keepCheckpoints ?? 3, warn: (m) => this.warn(m) });
    }
    this.rng = new Rng(deriveSeed(opts.seed, 0x7261696e));
  }

  /** Ask the run to stop at the next step boundary (a checkpoint is written first). */
  requestStop(reason = "stop requested"): void {
    this.stopSignal = reason;
  }

  private warn(message: string): void {
    if (this.opts.log) this.opts.log(message);
    else if (this.display) this.display.message(message);
    else console.warn(message);
  }

  private batchSource(): TrainBatchSource {
    if (this.opts.batches) return this.opts.batches;
    const { batchSize, seed } = this.opts;
    return (epoch, startBatch) =>
      datasetBatches(this.dataset, { batchSize, seed, epoch, startBatch, shuffle: true, dropLast: true, keepBatches: true });
  }

  /** All tensors a checkpoint holds, by group. */
  private async snapshotTensors(): Promise<Record<string, WeightMap>> {
    const tensors: Record<string, WeightMap> = { model: await this.method.trainable.getWeights(), optimizer: await this.optimizer.getState() };
    for (const [name, m] of Object.entries(this.method.stateModules?.() ?? {})) tensors[`state.${name}`] = await m.getWeights();
    return tensors;
  }

  private async saveCheckpoint(pos: Position, wallSeconds: number): Promise<string | undefined> {
    if (!this.checkpoints) return undefined;
    const tensors = await this.snapshotTensors();
    this.lastCheckpoint = this.checkpoints.save({
      step: pos.step,
      tensors,
      meta: {
        method: this.method.name,
        epoch: pos.epoch,
        batchInEpoch: pos.batch,
        totalSteps: this.totalSteps,
        stepsPerEpoch: this.stepsPerEpoch,
        rng: this.rng.getState(),
        wallSeconds,
        trainer: { epochs: this.opts.epochs, batchSize: this.opts.batchSize, seed: this.opts.seed },
        config: this.opts.config ?? null,
        metrics: this.metrics.records,
        epochAccumulator: this.epochAcc,
        collapse: this.collapseMonitor.history,
      },
    });
    return this.lastCheckpoint;
  }

  private restore(ckpt: LoadedCheckpoint): { pos: Position; wallSeconds: number } {
    const meta = ckpt.meta as {
      epoch: number;
      batchInEpoch: number;
      rng: RngState;
      wallSeconds?: number;
      method?: string;
      trainer?: { epochs: number; batchSize: number; seed: number };
      metrics?: MetricsRecord[];
      epochAccumulator?: { lossSum: number; steps: number; seconds: number };
      collapse?: { step: number; score: number }[];
    };
    if (meta.method && meta.method !== this.method.name) {
      throw new Error(`Trainer: checkpoint ${ckpt.path} is from method '${meta.method}', not '${this.method.name}'`);
    }
    const t = meta.trainer;
    if (t && (t.batchSize !== this.opts.batchSize || t.seed !== this.opts.seed)) {
      throw new Error(
        `Trainer: checkpoint ${ckpt.path} was written with batch ${t.batchSize}, seed ${t.seed}; this run has batch ${this.opts.batchSize}, seed ${this.opts.seed} (resume needs the same)`,
      );
    }
    if (t && t.epochs !== this.opts.epochs) this.warn(`warning: resuming a ${t.epochs}-epoch run as a ${this.opts.epochs}-epoch run: the learning-rate schedule changes`);
    if (!ckpt.tensors.model) throw new Error(`Trainer: checkpoint ${ckpt.path} has no model weights`);
    this.method.trainable.setWeights(ckpt.tensors.model);
    for (const [name, m] of Object.entries(this.method.stateModules?.() ?? {})) {
      const w = ckpt.tensors[`state.${name}`];
      if (!w) throw new Error(`Trainer: checkpoint ${ckpt.path} has no state module '${name}'`);
      m.setWeights(w);
    }
    if (!ckpt.tensors.optimizer) throw new Error(`Trainer: checkpoint ${ckpt.path} has no optimiser state`);
    this.optimizer.setState(ckpt.tensors.optimizer);
    this.rng.setState(meta.rng);
    this.metrics.reset(meta.metrics ?? []);
    this.replaying = true;
    for (const r of meta.collapse ?? []) this.collapseMonitor.update(r.step, r.score);
    this.replaying = false;
    this.epochAcc = { ...(meta.epochAccumulator ?? { lossSum: 0, steps: 0, seconds: 0 }) };
    let { epoch, batchInEpoch: batch } = meta;
    if (batch >= this.stepsPerEpoch) {
      epoch += 1;
      batch = 0;
    }
    return { pos: { step: ckpt.step, epoch, batch }, wallSeconds: meta.wallSeconds ?? 0 };
  }

  /** One optimisation step; returns the loss and extra metrics as numbers. Throws NonFiniteLossError. */
  private async trainStep(images: tf.Tensor4D, ctx: StepContext, wantEmbeddings: boolean): Promise<{ loss: number; metrics: Record<string, number>; collapse?: number }> {
    const views = tf.tidy(() => this.method.views(images, ctx));
    let out: StepOutput | undefined;
    let kept: tf.Tensor[] = [];
    let value: tf.Scalar | undefined;
    let grads: tf.NamedTensorMap | undefined;
    try {
      ({ value, grads } = tf.variableGrads(() => {
        out = this.method.step(views, ctx);
        kept = [...Object.values(out.metrics ?? {}), ...(wantEmbeddings && out.embeddings ? [out.embeddings] : [])];
        for (const t of kept) tf.keep(t);
        return out.loss;
      }, this.trainableVariables));
    } finally {
      tf.dispose(views);
    }
    try {
      const loss = (await value.data())[0];
      // check BEFORE the update: a non-finite loss must never reach the weights or a checkpoint
      if (!Number.isFinite(loss)) throw new NonFiniteLossError(ctx.step, loss, this.lastCheckpoint);
      if (this.opts.maxGradNorm !== undefined) {
        const clipped = clipGradientsByGlobalNorm(grads, this.opts.maxGradNorm);
        try {
          this.optimizer.applyGradients(clipped.grads);
        } finally {
          tf.dispose([...Object.values(clipped.grads), clipped.globalNorm]);
        }
      } else {
        this.optimizer.applyGradients(grads);
      }
      this.method.afterStep?.(ctx);
      const metrics: Record<string, number> = {};
      for (const [name, t] of Object.entries(out?.metrics ?? {})) metrics[name] = (await t.data())[0];
      let collapse: number | undefined;
      if (wantEmbeddings && out?.embeddings) {
        const score = collapseScore(out.embeddings);
        collapse = (await score.data())[0];
        score.dispose();
      }
      return { loss, metrics, collapse };
    } finally {
      tf.dispose([value, ...Object.values(grads), ...kept]);
    }
  }

  private async knnMonitor(epoch: number): Promise<number | undefined> {
    const mon = this.opts.knnMonitor;
    if (!mon || (epoch + 1) % (mon.everyEpochs ?? 1) !== 0) return undefined;
    const scores = await evaluateRepresentation({
      backbone: this.method.backbone,
      train: mon.train,
      test: mon.test,
      transform: mon.transform,
      knn: { k: mon.k ?? 20 },
      probe: false,
    });
    this.method.trainable.train();
    return scores.knnTop1;
  }

  /** Train to the end (or until stopped); returns a summary. */
  async fit(): Promise<TrainResult> {
    const o = this.opts;
    this.display = new ProgressDisplay({ mode: o.progress ?? "auto" });
    let pos: Position = { step: 0, epoch: 0, batch: 0 };
    let wallBefore = 0;
    let resumedFromStep: number | undefined;
    if (o.resume) {
      if (!this.checkpoints) throw new Error("Trainer: resume needs outDir");
      const ckpt = this.checkpoints.loadLatest();
      if (ckpt) {
        ({ pos, wallSeconds: wallBefore } = this.restore(ckpt));
        resumedFromStep = pos.step;
        this.lastCheckpoint = ckpt.path;
        this.warn(`resuming from ${ckpt.path} (step ${pos.step}, epoch ${pos.epoch + 1}, batch ${pos.batch})`);
      } else {
        this.warn("resume: no checkpoint found, starting from scratch");
        this.metrics.reset([]);
      }
    } else {
      this.metrics.reset([]);
    }

    const handleSignals = o.handleSignals ?? o.outDir !== undefined;
    const onSignal = (sig: NodeJS.Signals) => {
      if (this.stopSignal) process.exit(sig === "SIGINT" ? 130 : 143); // second signal: stop now
      this.stopSignal = sig;
    };
    if (handleSignals) {
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
    }

    const source = this.batchSource();
    const checkpointEvery = o.checkpointEvery ?? this.stepsPerEpoch;
    const collapseEvery = o.collapseEvery ?? 50;
    const logEvery = o.logEvery ?? 1;
    const startTime = performance.now();
    const wall = () => wallBefore + (performance.now() - startTime) / 1000;
    let lastLoss = NaN;
    let imagesPerSecSmoothed = 0;
    let interrupted = false;
    this.method.trainable.train();
    try {
      outer: while (pos.epoch < o.epochs) {
        for await (const batch of source(pos.epoch, pos.batch)) {
          if (pos.batch >= this.stepsPerEpoch) {
            tf.dispose(batch.images);
            break;
          }
          const stepStart = performance.now();
          const ctx: StepContext = { step: pos.step, totalSteps: this.totalSteps, epoch: pos.epoch, rng: new Rng(deriveSeed(o.seed, pos.step)) };
          const lr = this.schedule(pos.step);
          this.optimizer.lr = lr;
          const wantCollapse = collapseEvery > 0 && pos.step % collapseEvery === 0;
          let result: Awaited<ReturnType<Trainer["trainStep"]>>;
          try {
            result = await this.trainStep(batch.images, ctx, wantCollapse);
          } finally {
            tf.dispose(batch.images);
          }
          const seconds = (performance.now() - stepStart) / 1000;
          const imagesPerSec = o.batchSize / seconds;
          imagesPerSecSmoothed = imagesPerSecSmoothed === 0 ? imagesPerSec : 0.9 * imagesPerSecSmoothed + 0.1 * imagesPerSec;
          lastLoss = result.loss;
          this.epochAcc.lossSum += result.loss;
          this.epochAcc.steps += 1;
          this.epochAcc.seconds += seconds;
          if (result.collapse !== undefined) this.collapseMonitor.update(pos.step, result.collapse);
          if (pos.step % logEvery === 0) {
            this.metrics.append({ type: "step", step: pos.step, epoch: pos.epoch, loss: result.loss, lr, imagesPerSec, ...result.metrics, ...(result.collapse !== undefined ? { collapseScore: result.collapse } : {}) });
          }
          pos = { step: pos.step + 1, epoch: pos.epoch, batch: pos.batch + 1 };
          const progress: TrainProgress = {
            step: pos.step,
            totalSteps: this.totalSteps,
            epoch: pos.epoch,
            epochs: o.epochs,
            loss: result.loss,
            lr,
            imagesPerSec: imagesPerSecSmoothed,
            etaSeconds: ((this.totalSteps - pos.step) * o.batchSize) / imagesPerSecSmoothed,
            elapsedSeconds: wall(),
            metrics: result.metrics,
          };
          this.display.update(progress);
          o.onProgress?.(progress);
          const endOfEpoch = pos.batch >= this.stepsPerEpoch;
          if (endOfEpoch) {
            const knnTop1 = await this.knnMonitor(pos.epoch);
            this.metrics.append({
              type: "epoch",
              step: pos.step,
              epoch: pos.epoch,
              loss: this.epochAcc.lossSum / Math.max(1, this.epochAcc.steps),
              imagesPerSec: (this.epochAcc.steps * o.batchSize) / Math.max(1e-9, this.epochAcc.seconds),
              wallSeconds: wall(),
              ...(knnTop1 !== undefined ? { knnTop1 } : {}),
            });
            this.epochAcc = { lossSum: 0, steps: 0, seconds: 0 };
            if (knnTop1 !== undefined) this.display.message(`epoch ${pos.epoch + 1}: k-NN monitor top-1 ${(100 * knnTop1).toFixed(2)}%`);
          }
          // let signal handlers run between steps
          await new Promise<void>((resolve) => setImmediate(resolve));
          const stopNow = this.stopSignal !== undefined || (o.stopAfterStep !== undefined && pos.step >= o.stopAfterStep);
          if (pos.step % checkpointEvery === 0 || pos.step === this.totalSteps || stopNow) await this.saveCheckpoint(pos, wall());
          if (stopNow) {
            interrupted = pos.step < this.totalSteps;
            break outer;
          }
          if (endOfEpoch) break;
        }
        if (pos.batch < this.stepsPerEpoch) {
          throw new Error(`Trainer: the batch source yielded only ${pos.batch} of ${this.stepsPerEpoch} batches in epoch ${pos.epoch}`);
        }
        pos = { step: pos.step, epoch: pos.epoch + 1, batch: 0 };
      }
    } finally {
      this.display.finish();
      if (handleSignals) {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    }
    const epochRecords = this.metrics.records.filter((r) => r.type === "epoch");
    const lastEpoch = epochRecords[epochRecords.length - 1];
    return {
      steps: pos.step,
      totalSteps: this.totalSteps,
      epochsCompleted: Math.floor(pos.step / this.stepsPerEpoch),
      imagesSeen: pos.step * o.batchSize,
      wallSeconds: wall(),
      resumedWallSeconds: wallBefore,
      finalLoss: lastEpoch && typeof lastEpoch.loss === "number" ? lastEpoch.loss : lastLoss,
      interrupted,
      signal: interrupted ? this.stopSignal ?? "stopAfterStep" : undefined,
      resumedFromStep,
      lastCheckpoint: this.lastCheckpoint,
      metrics: this.metrics.records,
    };
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}
