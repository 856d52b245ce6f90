/**
 * MoCo v1, v2 and v3 in the method registry.
 *
 * v1 / v2 options: `--queue-size K` (0 = end-to-end: in-batch negatives, gradient through both
 * branches), `--momentum m`, `--shuffle-bn on|off` and `--bn-splits G` (the ResNet's BatchNorms
 * normalise G groups of the batch apart, the official CIFAR demo's SplitBatchNorm, 8 splits).
 * v3: `--momentum m0` (cosine m0 -> 1), a ViT (`vit-tiny`) backbone.
 *
 * Defaults. The paper's m = 0.999 and K = 65536 are ImageNet's (5k steps an epoch, 200 epochs); the
 * registry defaults are the official CIFAR-10 demo's m = 0.99 and K = 4096: the key
 * encoder's EMA horizon 1 / (1 - m) must be short against a run of a few hundred steps, and 4096
 * keys are 7% of Fashion-MNIST's 60k images (65536 would exceed the dataset). The crop is MoCo's
 * [0.2, 1] for all three (v3's paper crop [0.08, 1] leaves too little of a 28x28 image). The
 * optimiser is the shared AdamW 1e-3 with warmup + cosine decay that SimCLR's quick preset uses
 * (so v1 runs a cosine schedule too: the step schedule of the v1 paper is not reproduced); the
 * paper preset takes the CIFAR demo's SGD (lr 0.06, wd 5e-4, 200 epochs) for v1 / v2 and MoCo
 * v3's AdamW (lr 1.5e-4 x B / 256, wd 0.1, 40 warmup epochs) for v3.
 */
import { createBackbone, resnet18, resnetSmall, resnetTiny } from "../../nn";
import type { Backbone, BackboneName } from "../../nn";
import { SplitBatchNorm } from "../../nn/split-batch-norm";
import type { RunConfig } from "../../presets";
import { Rng } from "../../random";
import { MoCoV1, MoCoV2 } from "../moco";
import { MoCoV3 } from "../moco-v3";
import { sdmpDefaults, sdmpOptionSpecs, withSdmp } from "../sdmp";
import { methodOption, registerMethod, specBackbone } from "../registry";
import type { MethodOptionSpec } from "../registry";

const RESNETS = { "resnet-tiny": resnetTiny, "resnet-small": resnetSmall, resnet18 } as const;

/**
 * The named backbone, its ResNet BatchNorms split into `bnSplits` groups (SplitBatchNorm). Same
 * initial weights as createBackbone(name, { inputShape, seed }); a ViT has no BatchNorm to split.
 */
export function mocoBackbone(name: string, inputShape: [number, number, number], seed: number, bnSplits: number): Backbone {
  const resnet = RESNETS[name as keyof typeof RESNETS];
  if (!resnet || bnSplits <= 1) return createBackbone(name as BackboneName, { inputShape, seed });
  return resnet({ inChannels: inputShape[2], rng: new Rng(seed), norm: (c) => new SplitBatchNorm(c, { groups: bnSplits }) });
}

const momentumOption: MethodOptionSpec = { key: "momentum", flag: "momentum", type: "number", min: 0, max: 1, help: "key-encoder momentum m in [0, 1] (0 = f_k is a copy of f_q)" };

export const mocoOptions: readonly MethodOptionSpec[] = [
  { key: "queueSize", flag: "queue-size", type: "integer", min: 0, help: "K keys in the queue (0 = end-to-end: the batch's own keys, gradient through both)" },
  momentumOption,
  { key: "shuffleBn", flag: "shuffle-bn", type: "onoff", help: "shuffle the key batch across the BN groups (MoCo sec. 3.3)" },
  { key: "bnSplits", flag: "bn-splits", type: "integer", min: 1, help: "BatchNorm groups G of the batch (the CIFAR demo's 8; 1 = plain BN)" },
];

/** The CIFAR demo's K and m (the classes default to the paper's ImageNet 65536 and 0.999). */
const mocoDefaults = { queueSize: 4096, momentum: 0.99, shuffleBn: true, bnSplits: 8 };

function createMoCo(version: 1 | 2, config: RunConfig, inputShape: [number, number, number]): MoCoV1 {
  const queueSize = methodOption<number>(config, "queueSize");
  const bnSplits = methodOption<number>(config, "bnSplits");
  if (config.backbone in RESNETS && config.batchSize % bnSplits !== 0) {
    throw new Error(`${config.method}: the batch (${config.batchSize}) must divide into --bn-splits ${bnSplits} BatchNorm groups`);
  }
  const backbone = () => mocoBackbone(config.backbone, inputShape, config.seed, bnSplits);
  const opts = {
    backbone: backbone(),
    keyBackbone: queueSize > 0 ? backbone() : undefined,
    inputShape,
    temperature: config.temperature,
    queueSize,
    momentum: methodOption<number>(config, "momentum"),
    shuffleBn: methodOption<boolean>(config, "shuffleBn"),
    bnSplits: config.backbone in RESNETS ? bnSplits : 1,
    projectionDim: config.projectionDim,
    cropScale: config.cropScale,
    seed: config.seed,
  };
  return version === 1 ? new MoCoV1(opts) : new MoCoV2(opts);
}

export const mocoV1Spec = registerMethod({
  name: "moco-v1",
  summary: "MoCo v1 (He et al. 2020): InfoNCE against a queue of keys from a momentum encoder",
  options: mocoOptions,
  defaults: mocoDefaults,
  presets: {
    all: { temperature: 0.07, cropScale: [0.2, 1] },
    paper: { optimizer: "sgd", lr: 0.06, weightDecay: 5e-4, epochs: 200, warmupEpochs: 0, temperature: 0.1 },
  },
  create: (config, inputShape) => createMoCo(1, config, inputShape),
});

export const mocoV2Spec = registerMethod({
  name: "moco-v2",
  summary: "MoCo v2 (Chen et al. 2020): MoCo v1 with an MLP head, blur and t = 0.2",
  options: mocoOptions,
  defaults: mocoDefaults,
  presets: {
    all: { temperature: 0.2, cropScale: [0.2, 1] },
    paper: { optimizer: "sgd", lr: 0.06, weightDecay: 5e-4, epochs: 200, warmupEpochs: 0 },
  },
  create: (config, inputShape) => createMoCo(2, config, inputShape),
});

export const mocoV3Spec = registerMethod({
  name: "moco-v3",
  summary: "MoCo v3 (Chen et al. 2021): ViT, predictor, symmetric in-batch InfoNCE against a momentum encoder",
  options: [{ ...momentumOption, help: "base momentum m0 of the cosine schedule m0 -> 1" }, ...sdmpOptionSpecs],
  defaults: { momentum: 0.99, ...sdmpDefaults },
  presets: {
    all: { backbone: "vit-tiny", temperature: 0.2, cropScale: [0.2, 1] },
    paper: { optimizer: "adamw", lr: 1.5e-4 * (512 / 256), weightDecay: 0.1, warmupEpochs: 40, epochs: 300, projectionHiddenDim: 4096, projectionDim: 256 },
  },
  create: withSdmp((config, inputShape) => {
    const backbone = () => specBackbone(config, inputShape);
    return new MoCoV3({
      backbone: backbone(),
      keyBackbone: backbone(),
      inputShape,
      temperature: config.temperature,
      momentum: methodOption<number>(config, "momentum"),
      projectionHiddenDim: config.projectionHiddenDim,
      projectionDim: config.projectionDim,
      cropScale: config.cropScale,
      seed: config.seed,
    });
  }),
});
