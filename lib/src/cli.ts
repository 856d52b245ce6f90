#!/usr/bin/env node
/**
 * `sslkit train <method> --dataset fashion-mnist --backbone resnet-small --preset quick --out runs/x`
 *
 * Prints the backend, trains with checkpoints and metrics, then scores the learned encoder by
 * weighted k-NN and a linear probe next to two baselines computed in the same run: a randomly
 * initialised encoder of the same architecture and raw pixels. Writes to --out: config.json,
 * metrics.jsonl, checkpoints/, results.json, results.md, training-curve.png.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { describeBackend, initBackend } from "./backend";
import { loadNativeKernels } from "./backend/native-kernels";
import { DATASET_NAMES, balancedSubset, loadDatasetByName, randomSubset } from "./data";
import type { ImageDataset } from "./data/types";
import { evaluateRepresentation } from "./eval";
import type { RepresentationScores } from "./eval";
import { allMethodOptions, createMethod, getMethodSpec, methodNames, parseMethodOption } from "./methods";
import type { SSLMethod } from "./methods/types";
import type { Backbone } from "./nn/backbone";
import type { WeightMap } from "./nn/module";
import { backboneNames, createBackbone } from "./nn";
import type { BackboneName } from "./nn";
import { PRESET_NAMES, RunConfig, presetConfig } from "./presets";
import { MetricsLog, Trainer, deriveSeed, writeCheckpoint } from "./train";
import type { MetricsRecord } from "./train";
import { SWEEP_USAGE, SweepUsageError, runSweepCli } from "./sweep/cli";
import { lineChartSpec, vegaLiteToPng } from "./viz";

export const CLI_BACKBONES: readonly BackboneName[] = backboneNames;

/** The method options' part of the usage text: per method, its flags. */
function methodUsage(): string {
  return methodNames()
    .map((name) => {
      const spec = getMethodSpec(name);
      const opts = spec.options.map((o) => {
        const arg = o.type === "set" ? "" : o.type === "onoff" ? " on|off" : o.type === "enum" ? ` ${o.choices?.join("|")}` : o.type === "list" ? ` ${o.choices?.join(",")}` : " X";
        return `    --${o.flag}${arg}`.padEnd(40) + ` ${o.help}`;
      });
      return [`  ${name.padEnd(10)} ${spec.summary}`, ...opts].join("\n");
    })
    .join("\n");
}

const usage = () => `usage: sslkit train <method> [options]
       sslkit sweep <spec.json> [--executor local|slurm] [--parallel N] [--dry-run] ...   (sslkit sweep --help)

methods and their own options:
${methodUsage()}
options:
  --dataset NAME|PATH    ${DATASET_NAMES.join(" | ")} or a folder (IDX files, CIFAR-10 batches, or
                         train/<class>/*.png + test/<class>/*.png); default fashion-mnist
  --data-dir DIR         where a built-in dataset's files are (default: system folders / cache)
  --backbone NAME        ${CLI_BACKBONES.join(" | ")} (default resnet-small)
  --preset NAME          ${PRESET_NAMES.join(" | ")} (default quick)
  --epochs N  --batch B  --seed S  --lr LR  --weight-decay WD  --optimizer adamw|sgd|lars
  --temperature T        contrastive temperature
  --warmup-epochs E      linear learning-rate warmup (fractional allowed)
  --train-subset N       train on N images (0 = all)
  --eval-train-subset N  labelled train images for k-NN / linear probe (0 = all)
  --eval-test-subset N   test images for k-NN / linear probe (0 = all)
  --checkpoint-every N   steps between checkpoints (0 = once per epoch)
  --keep-checkpoints K   newest checkpoints kept (default 3)
  --out DIR              output folder (default runs/<method>-<preset>)
  --config FILE          a run configuration (JSON: a RunConfig or {"config": RunConfig}, as the sweep
                         runner writes) used instead of the preset; flags still override it
  --resume               continue from the newest valid checkpoint in --out
  --backend NAME         tensorflow | wasm | cpu (default: best available; or SSLKIT_BACKEND)
  --progress MODE        auto | bar | plain | none
  --no-baselines         skip the random-init and raw-pixel baselines
  -h, --help`;

export class CliUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CliUsageError";
  }
}

function parseNumber(flag: string, value: string | undefined, opts: { integer?: boolean; min?: number } = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min)) {
    throw new CliUsageError(`--${flag} expects ${opts.integer ? "an integer" : "a number"}${opts.min !== undefined ? ` >= ${opts.min}` : ""}, got '${value}'`);
  }
  return n;
}

function oneOf<T extends string>(flag: string, value: string, choices: readonly T[]): T {
  if (!choices.includes(value as T)) throw new CliUsageError(`unknown ${flag} '${value}' (expected one of: ${choices.join(", ")})`);
  return value as T;
}

export interface CliTrainArgs {
  config: RunConfig;
  out: string;
  dataDir?: string;
  resume: boolean;
  backend?: string;
  progress: "auto" | "bar" | "plain" | "none";
  baselines: boolean;
}

/** A configuration file for `train --config` (what the sweep runner writes), checked against the method. */
function readConfigFile(file: string, method: string): Partial<RunConfig> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new CliUsageError(`--config ${file}: ${(err as Error).message}`);
  }
  const obj = parsed as { config?: Partial<RunConfig> } & Partial<RunConfig>;
  const config = obj && typeof obj === "object" && obj.config && typeof obj.config === "object" ? obj.config : obj;
  if (!config || typeof config !== "object" || Array.isArray(config)) throw new CliUsageError(`--config ${file}: expected a JSON object`);
  if (config.method !== undefined && config.method !== method) throw new CliUsageError(`--config ${file} is for method '${config.method}', not '${method}'`);
  return config;
}

/** parseArgs options for every registered method's flags (a flag shared by methods must have one kind). */
function methodFlagOptions(): Record<string, { type: "string" | "boolean" }> {
  const out: Record<string, { type: "string" | "boolean" }> = {};
  for (const { method, option } of allMethodOptions()) {
    const type = option.type === "set" ? "boolean" : "string";
    if (out[option.flag] && out[option.flag].type !== type) throw new Error(`method ${method}: --${option.flag} is a ${type} flag here and not elsewhere`);
    out[option.flag] = { type };
  }
  return out;
}

/** Parse `train <method> ...` into a run configuration (preset, then saved config on --resume, then flags). */
export function parseTrainArgs(argv: string[]): CliTrainArgs | "help" {
  const methodFlags = methodFlagOptions();
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      ...methodFlags,
      dataset: { type: "string" },
      "data-dir": { type: "string" },
      backbone: { type: "string" },
      preset: { type: "string" },
      epochs: { type: "string" },
      batch: { type: "string" },
      seed: { type: "string" },
      lr: { type: "string" },
      "weight-decay": { type: "string" },
      optimizer: { type: "string" },
      temperature: { type: "string" },
      "warmup-epochs": { type: "string" },
      "train-subset": { type: "string" },
      "eval-train-subset": { type: "string" },
      "eval-test-subset": { type: "string" },
      "checkpoint-every": { type: "string" },
      "keep-checkpoints": { type: "string" },
      config: { type: "string" },
      out: { type: "string" },
      resume: { type: "boolean" },
      backend: { type: "string" },
      progress: { type: "string" },
      "no-baselines": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return "help";
  const [command, methodName, ...rest] = positionals;
  if (command !== "train") throw new CliUsageError(command ? `unknown command '${command}' (expected 'train' or 'sweep')` : "missing command (expected 'train' or 'sweep')");
  if (!methodName) throw new CliUsageError("missing method (e.g. 'sslkit train simclr')");
  if (rest.length > 0) throw new CliUsageError(`unexpected arguments: ${rest.join(" ")}`);
  const method = oneOf("method", methodName, methodNames());
  const spec = getMethodSpec(method);
  const fromFile = values.config !== undefined ? readConfigFile(values.config, method) : undefined;
  const preset = oneOf("preset", values.preset ?? fromFile?.preset ?? "quick", PRESET_NAMES);
  const out = values.out ?? path.join("runs", `${method}-${preset}`);
  const resume = values.resume ?? false;

  let config: RunConfig = presetConfig(method, preset);
  if (fromFile) config = { ...config, ...fromFile, preset, methodOptions: { ...config.methodOptions, ...(fromFile.methodOptions ?? {}) } };
  const savedPath = path.join(out, "config.json");
  if (resume && fs.existsSync(savedPath)) {
    const saved = JSON.parse(fs.readFileSync(savedPath, "utf8")) as { config?: RunConfig };
    if (saved.config && saved.config.method === method) config = { ...config, ...saved.config };
  }
  const subset = (flag: string, v: string | undefined) => {
    const n = parseNumber(flag, v, { integer: true, min: 0 });
    return n === undefined ? undefined : n === 0 ? null : n;
  };
  const set = <K extends keyof RunConfig>(key: K, value: RunConfig[K] | undefined) => {
    if (value !== undefined) config[key] = value;
  };
  if (values.preset !== undefined && resume && fs.existsSync(savedPath) && config.preset !== preset) {
    throw new CliUsageError(`--resume: ${savedPath} was written with preset '${config.preset}', not '${preset}'`);
  }
  set("dataset", values.dataset);
  set("backbone", values.backbone !== undefined ? oneOf("backbone", values.backbone, CLI_BACKBONES) : undefined);
  set("epochs", parseNumber("epochs", values.epochs, { integer: true, min: 1 }));
  set("batchSize", parseNumber("batch", values.batch, { integer: true, min: 2 }));
  set("seed", parseNumber("seed", values.seed, { integer: true, min: 0 }));
  set("lr", parseNumber("lr", values.lr, { min: 0 }));
  set("weightDecay", parseNumber("weight-decay", values["weight-decay"], { min: 0 }));
  set("optimizer", values.optimizer !== undefined ? oneOf("optimizer", values.optimizer, ["adamw", "sgd", "lars"] as const) : undefined);
  const temperature = parseNumber("temperature", values.temperature, { min: 0 });
  if (temperature === 0) throw new CliUsageError("--temperature must be positive");
  set("temperature", temperature);
  set("warmupEpochs", parseNumber("warmup-epochs", values["warmup-epochs"], { min: 0 }));
  for (const [flag, key] of [["train-subset", "trainSubset"], ["eval-train-subset", "evalTrainSubset"], ["eval-test-subset", "evalTestSubset"]] as const) {
    const v = subset(flag, values[flag]);
    if (v === null) delete config[key];
    else if (v !== undefined) config[key] = v;
  }
  set("checkpointEvery", parseNumber("checkpoint-every", values["checkpoint-every"], { integer: true, min: 0 }));
  set("keepCheckpoints", parseNumber("keep-checkpoints", values["keep-checkpoints"], { integer: true, min: 1 }));
  const given = values as Record<string, string | boolean | undefined>;
  const own = new Set(spec.options.map((o) => o.flag));
  for (const flag of Object.keys(methodFlags)) {
    if (given[flag] !== undefined && !own.has(flag)) throw new CliUsageError(`--${flag} is not an option of ${method}`);
  }
  const methodOptions = { ...config.methodOptions };
  for (const o of spec.options) {
    if (given[o.flag] === undefined) continue;
    try {
      methodOptions[o.key] = parseMethodOption(o, given[o.flag]);
    } catch (err) {
      throw new CliUsageError((err as Error).message);
    }
  }
  config = { ...config, methodOptions };
  const progress = oneOf("progress mode", values.progress ?? "auto", ["auto", "bar", "plain", "none"] as const);
  return { config, out, dataDir: values["data-dir"], resume, backend: values.backend, progress, baselines: !values["no-baselines"] };
}

/** Load the train and test splits of a dataset by name (fashion-mnist, cifar10) or folder path. */
export async function loadCliDataset(name: string, dataDir?: string): Promise<{ train: ImageDataset; test: ImageDataset }> {
  return { train: await loadDatasetByName(name, "train", { dir: dataDir }), test: await loadDatasetByName(name, "test", { dir: dataDir }) };
}

/** Build a method by name on a fresh backbone (the method registry's `create`). */
export function createCliMethod(config: RunConfig, inputShape: [number, number, number]): SSLMethod {
  try {
    getMethodSpec(config.method);
  } catch (err) {
    throw new CliUsageError((err as Error).message);
  }
  return createMethod(config, inputShape);
}

function evalSubset(ds: ImageDataset, n: number | undefined, seed: number): ImageDataset {
  if (n === undefined || n >= ds.count) return ds;
  const perClass = Math.max(1, Math.floor(n / ds.classNames.length));
  return balancedSubset(ds, perClass, seed);
}

interface EncoderResult {
  encoder: string;
  knnTop1: number;
  linearTop1: number;
  featureDim: number;
  seconds: number;
}

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(2)}%` : "n/a");

function formatSeconds(s: number): string {
  if (s < 90) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export interface CliResults {
  method: string;
  backbone: string;
  dataset: string;
  preset: string;
  backend: string;
  epochs: number;
  steps: number;
  imagesSeen: number;
  trainImages: number;
  evalTrainImages: number;
  evalTestImages: number;
  trainWallSeconds: number;
  totalWallSeconds: number;
  finalLoss: number;
  encoders: EncoderResult[];
}

export function resultsMarkdown(r: CliResults): string {
  const lines = [
    `# ${r.method} on ${r.dataset} (${r.preset} preset)`,
    "",
    `Backbone ${r.backbone}, ${r.epochs} epoch(s) on ${r.trainImages} images (${r.steps} steps, ${r.imagesSeen} images seen), ` +
      `training wall time ${formatSeconds(r.trainWallSeconds)} (total ${formatSeconds(r.totalWallSeconds)}), backend ${r.backend}. ` +
      `Evaluation: weighted k-NN (k=20) and a linear probe on ${r.evalTrainImages} labelled train images, top-1 on ${r.evalTestImages} test images.`,
    "",
    "| encoder | method | backbone | epochs | images seen | wall time | backend | k-NN top-1 | linear top-1 |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const e of r.encoders) {
    const trained = e.encoder.startsWith("learned");
    lines.push(
      `| ${e.encoder} | ${trained ? r.method : "-"} | ${e.encoder === "raw pixels" ? "-" : r.backbone} | ${trained ? r.epochs : 0} | ` +
        `${trained ? r.imagesSeen : 0} | ${trained ? formatSeconds(r.trainWallSeconds) : "-"} | ${r.backend} | ${pct(e.knnTop1)} | ${pct(e.linearTop1)} |`,
    );
  }
  return lines.join("\n") + "\n";
}

/**
 * training-curve.png: the loss by step (top) and, by step, the contrastive accuracy, the collapse
 * score and the per-epoch k-NN monitor (bottom), rendered by lib/src/viz.
 */
export async function writeTrainingCurve(records: readonly MetricsRecord[], file: string, title: string): Promise<void> {
  const steps = records.filter((r) => r.type === "step");
  const loss = lineChartSpec(steps, { y: "loss", title: `${title}: training loss`, xTitle: "step", points: false });
  const panels: [string, string][] = [["contrastiveAcc", "contrastive accuracy"], ["collapseScore", "collapse score"], ["knnTop1", "k-NN monitor top-1"]];
  const present = panels.filter(([field]) => records.some((r) => typeof r[field] === "number"));
  const quality = present.length > 0 ? lineChartSpec(records, { y: present.map(([f]) => f), title: present.map(([, t]) => t).join(", "), xTitle: "step", yTitle: "value" }) : undefined;
  const strip = (spec: object) => Object.fromEntries(Object.entries(spec).filter(([k]) => k !== "$schema"));
  const spec = { $schema: (loss as { $schema?: string }).$schema, vconcat: quality ? [strip(loss), strip(quality)] : [strip(loss)], resolve: { scale: { color: "independent" }, legend: { color: "independent" } } } as unknown as Parameters<typeof vegaLiteToPng>[0];
  fs.writeFileSync(file, await vegaLiteToPng(spec));
}

/** The trained model and the method's state modules, as the trainer checkpoints them. */
export async function trainedTensors(method: SSLMethod): Promise<Record<string, WeightMap>> {
  const tensors: Record<string, WeightMap> = { model: await method.trainable.getWeights() };
  for (const [name, m] of Object.entries(method.stateModules?.() ?? {})) tensors[`state.${name}`] = await m.getWeights();
  return tensors;
}

/** `sslkit train ...`; returns the process exit code. */
export async function runTrain(argv: string[]): Promise<number> {
  const parsed = parseTrainArgs(argv);
  if (parsed === "help") {
    console.log(usage());
    return 0;
  }
  const { config, out, resume } = parsed;
  const t0 = performance.now();
  const info = await initBackend(parsed.backend);
  const backend = describeBackend(info).replace(/^backend /, "");
  console.log(`sslkit: backend ${backend}`);
  if (info.kind === "wasm" && !info.native && config.preset !== "smoke") {
    console.warn(
      `sslkit: warning: sslkit-native is not active (${loadNativeKernels().why}). wasm's own kernels train about 4x slower: ` +
        `the ${config.preset} preset's timings in the README assume the native kernels.`,
    );
  }
  const { train: fullTrain, test: fullTest } = await loadCliDataset(config.dataset, parsed.dataDir);
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, "config.json"), JSON.stringify({ config, backend, argv }, null, 2) + "\n");
  const train = randomSubset(fullTrain, config.trainSubset, deriveSeed(config.seed, 1));
  const evalTrain = evalSubset(fullTrain, config.evalTrainSubset, deriveSeed(config.seed, 2));
  const evalTest = evalSubset(fullTest, config.evalTestSubset, deriveSeed(config.seed, 3));
  const inputShape: [number, number, number] = [train.height, train.width, train.channels];
  console.log(
    `sslkit: ${config.method} / ${config.backbone} on ${config.dataset}: ${train.count} train images, ${config.epochs} epoch(s), batch ${config.batchSize}, seed ${config.seed}, preset ${config.preset}`,
  );

  const method = createCliMethod(config, inputShape);
  const stepsPerEpoch = Math.floor(train.count / config.batchSize);
  const knnMonitor =
    config.knnMonitor[0] > 0
      ? { train: evalSubset(fullTrain, config.knnMonitor[0], deriveSeed(config.seed, 4)), test: evalSubset(fullTest, config.knnMonitor[1], deriveSeed(config.seed, 5)), k: config.knnK }
      : undefined;
  const trainer = new Trainer(method, train, {
    epochs: config.epochs,
    batchSize: config.batchSize,
    seed: config.seed,
    optimizer: { name: config.optimizer, lr: config.lr, weightDecay: config.weightDecay },
    warmupSteps: Math.round(config.warmupEpochs * stepsPerEpoch),
    maxGradNorm: config.maxGradNorm,
    outDir: out,
    checkpointEvery: config.checkpointEvery > 0 ? config.checkpointEvery : undefined,
    keepCheckpoints: config.keepCheckpoints,
    resume,
    collapseEvery: config.collapseEvery,
    knnMonitor,
    progress: parsed.progress,
    config: config as unknown as Record<string, unknown>,
    handleSignals: true,
  });
  const result = await trainer.fit();
  if (result.interrupted) {
    console.log(`sslkit: interrupted (${result.signal}) at step ${result.steps}/${result.totalSteps}; checkpoint ${result.lastCheckpoint}. Continue with --resume.`);
    trainer.dispose();
    method.dispose();
    return result.signal === "SIGINT" ? 130 : result.signal === "SIGTERM" ? 143 : 0;
  }
  console.log(`sslkit: trained ${result.steps} steps in ${formatSeconds(result.wallSeconds)}; final loss ${result.finalLoss.toFixed(4)}`);

  const encoders: EncoderResult[] = [];
  const score = async (encoder: string, backbone: Backbone | undefined) => {
    const s: RepresentationScores = await evaluateRepresentation({
      backbone,
      train: evalTrain,
      test: evalTest,
      transform: backbone ? (method as { evalTransform?: (x: import("@tensorflow/tfjs-core").Tensor4D) => import("@tensorflow/tfjs-core").Tensor4D }).evalTransform : undefined,
      knn: { k: config.knnK },
      probe: { epochs: config.probeEpochs, seed: config.seed },
    });
    const seconds = s.seconds.features + s.seconds.knn + s.seconds.probe;
    encoders.push({ encoder, knnTop1: s.knnTop1, linearTop1: s.linearTop1, featureDim: s.featureDim, seconds });
    console.log(`sslkit: ${encoder.padEnd(24)} k-NN ${pct(s.knnTop1).padStart(7)}  linear ${pct(s.linearTop1).padStart(7)}  (${formatSeconds(seconds)})`);
  };
  await score(`learned (${config.method})`, method.backbone);
  if (parsed.baselines) {
    const randomInit = createBackbone(config.backbone as BackboneName, { inputShape, seed: config.seed });
    try {
      await score("random init", randomInit);
    } finally {
      randomInit.dispose();
    }
    await score("raw pixels", undefined);
  }

  const results: CliResults = {
    method: config.method,
    backbone: config.backbone,
    dataset: config.dataset,
    preset: config.preset,
    backend,
    epochs: config.epochs,
    steps: result.steps,
    imagesSeen: result.imagesSeen,
    trainImages: train.count,
    evalTrainImages: evalTrain.count,
    evalTestImages: evalTest.count,
    trainWallSeconds: result.wallSeconds,
    totalWallSeconds: (performance.now() - t0) / 1000 + result.resumedWallSeconds,
    finalLoss: result.finalLoss,
    encoders,
  };
  // The trained networks (trainable + method state, no optimiser), for notebooks' galleries: loadArm().
  fs.rmSync(path.join(out, "weights"), { recursive: true, force: true });
  writeCheckpoint(path.join(out, "weights"), {
    step: result.steps,
    meta: { config, inputShape, backend },
    tensors: await trainedTensors(method),
  });
  fs.writeFileSync(path.join(out, "results.json"), JSON.stringify(results, null, 2) + "\n");
  fs.writeFileSync(path.join(out, "results.md"), resultsMarkdown(results));
  try {
    await writeTrainingCurve(MetricsLog.read(path.join(out, "metrics.jsonl")), path.join(out, "training-curve.png"), `${config.method} / ${config.backbone}`);
  } catch (err) {
    console.warn(`warning: training-curve.png not written: ${(err as Error).message}`);
  }
  console.log(`\n${resultsMarkdown(results)}`);
  console.log(`sslkit: wrote ${["config.json", "metrics.jsonl", "results.json", "results.md", "training-curve.png"].filter((f) => fs.existsSync(path.join(out, f))).map((f) => path.join(out, f)).join(", ")}`);
  trainer.dispose();
  method.dispose();
  return 0;
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  try {
    if (argv.length === 0 || argv[0] === "-h" || argv[0] === "--help") {
      console.log(usage());
      return argv.length === 0 ? 2 : 0;
    }
    if (argv[0] === "sweep") return await runSweepCli(argv);
    return await runTrain(argv);
  } catch (err) {
    const e = err as Error & { code?: string };
    if (err instanceof SweepUsageError || (argv[0] === "sweep" && e.code?.startsWith("ERR_PARSE_ARGS"))) {
      console.error(`sslkit: ${e.message}\n\n${SWEEP_USAGE}`);
      return 2;
    }
    if (err instanceof CliUsageError || e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" || e.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      console.error(`sslkit: ${e.message}\n\n${usage()}`);
      return 2;
    }
    console.error(`sslkit: error: ${e.message}`);
    if (process.env.SSLKIT_DEBUG) console.error(e.stack);
    return 1;
  }
}

if (require.main === module) {
  main().then((code) => process.exit(code));
}
