/**
 * ResNet backbones with the CIFAR-style stem (He et al. 2016; the SimCLR/MoCo CIFAR recipe):
 * 3x3 conv stride 1 + BN + ReLU, no max-pool, then stages of BasicBlocks, then global average
 * pooling. NHWC input [N, H, W, C] -> features [N, widths[last]].
 */
import * as tf from "@tensorflow/tfjs-core";
import * as fastOps from "./fast-ops";
import { Rng } from "../random";
import { Backbone } from "./backbone";
import { Module } from "./module";
import { BatchNorm, Conv2d } from "./layers";
import { initZeros } from "./init";

/** A 3x3 / 3x3 residual block with an optional 1x1 projection shortcut (ResNet-18/34). */
export class BasicBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm;
  readonly downsampleConv: Conv2d | null;
  readonly downsampleBn: BatchNorm | null;

  constructor(inChannels: number, outChannels: number, stride: number, rng: Rng, opts: { zeroInitResidual?: boolean; norm?: (channels: number) => BatchNorm } = {}) {
    super();
    const norm = opts.norm ?? ((c: number) => new BatchNorm(c));
    this.conv1 = this.addChild("conv1", new Conv2d(inChannels, outChannels, 3, { rng, stride, padding: 1 }));
    this.bn1 = this.addChild("bn1", norm(outChannels));
    this.conv2 = this.addChild("conv2", new Conv2d(outChannels, outChannels, 3, { rng, stride: 1, padding: 1 }));
    this.bn2 = this.addChild("bn2", norm(outChannels));
    if (opts.zeroInitResidual && this.bn2.weight) this.bn2.weight.assign(tf.tidy(() => initZeros([outChannels])));
    if (stride !== 1 || inChannels !== outChannels) {
      this.downsampleConv = this.addChild("downsample.conv", new Conv2d(inChannels, outChannels, 1, { rng, stride, padding: 0 }));
      this.downsampleBn = this.addChild("downsample.bn", norm(outChannels));
    } else {
      this.downsampleConv = null;
      this.downsampleBn = null;
    }
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    const out = this.bn2.forward(this.conv2.forward(fastOps.relu(this.bn1.forward(this.conv1.forward(x)))));
    const identity = this.downsampleConv && this.downsampleBn ? this.downsampleBn.forward(this.downsampleConv.forward(x)) : x;
    return fastOps.relu(tf.add(out, identity)) as tf.Tensor4D;
  }
}

export interface ResNetOptions {
  /** Input channels (default 3). */
  inChannels?: number;
  /** Output channels of each stage. */
  widths?: number[];
  /** BasicBlocks per stage (same length as widths). */
  blocks?: number[];
  /** Initialise each block's last BN scale to zero (Goyal et al. 2017); default false as torchvision. */
  zeroInitResidual?: boolean;
  /** Builds each BatchNorm (default `new BatchNorm(c)`); e.g. a SplitBatchNorm for MoCo's shuffling BN on one machine. */
  norm?: (channels: number) => BatchNorm;
  seed?: number;
  rng?: Rng;
}

/** ResNet with CIFAR stem; `forward` returns globally average-pooled features [N, widths[last]]. */
export class ResNet extends Backbone {
  readonly outputDim: number;
  readonly inChannels: number;
  readonly widths: readonly number[];
  readonly blockCounts: readonly number[];
  readonly stemConv: Conv2d;
  readonly stemBn: BatchNorm;
  readonly blocks: BasicBlock[] = [];

  constructor(opts: ResNetOptions = {}) {
    super();
    const widths = opts.widths ?? [64, 128, 256, 512];
    const blocks = opts.blocks ?? [2, 2, 2, 2];
    if (widths.length === 0 || widths.length !== blocks.length) {
      throw new Error(`ResNet: widths [${widths}] and blocks [${blocks}] must be non-empty and of equal length`);
    }
    if (blocks.some((b) => !Number.isInteger(b) || b < 1)) throw new Error(`ResNet: blocks must be positive integers, got [${blocks}]`);
    const rng = opts.rng ?? new Rng(opts.seed ?? 0);
    this.inChannels = opts.inChannels ?? 3;
    this.widths = widths.slice();
    this.blockCounts = blocks.slice();
    this.outputDim = widths[widths.length - 1];
    this.stemConv = this.addChild("stem.conv", new Conv2d(this.inChannels, widths[0], 3, { rng, stride: 1, padding: 1 }));
    this.stemBn = this.addChild("stem.bn", (opts.norm ?? ((c: number) => new BatchNorm(c)))(widths[0]));
    let inC = widths[0];
    widths.forEach((w, stage) => {
      for (let b = 0; b < blocks[stage]; b++) {
        const stride = b === 0 && stage > 0 ? 2 : 1;
        const block = new BasicBlock(inC, w, stride, rng, { zeroInitResidual: opts.zeroInitResidual, norm: opts.norm });
        this.blocks.push(this.addChild(`layer${stage + 1}.${b}`, block));
        inC = w;
      }
    });
  }

  /** Feature map before pooling: [N, H / 2^(stages-1), W / 2^(stages-1), outputDim]. */
  forwardFeatures(x: tf.Tensor4D): tf.Tensor4D {
    if (x.rank !== 4 || x.shape[3] !== this.inChannels) throw new Error(`ResNet: expected input [N, H, W, ${this.inChannels}], got [${x.shape}]`);
    let h = fastOps.relu(this.stemBn.forward(this.stemConv.forward(x)));
    for (const block of this.blocks) h = block.forward(h);
    return h;
  }

  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.mean(this.forwardFeatures(x), [1, 2]) as tf.Tensor2D;
  }
}

/** ResNet-18 with CIFAR stem: widths 64/128/256/512, [2,2,2,2] BasicBlocks (~11.2M parameters). */
export function resnet18(opts: Omit<ResNetOptions, "widths" | "blocks"> = {}): ResNet {
  return new ResNet({ ...opts, widths: [64, 128, 256, 512], blocks: [2, 2, 2, 2] });
}

/** Narrow CPU-friendly ResNet: widths 32/64/128/256, one BasicBlock per stage (~1.2M parameters). */
export function resnetSmall(opts: Omit<ResNetOptions, "widths" | "blocks"> = {}): ResNet {
  return new ResNet({ ...opts, widths: [32, 64, 128, 256], blocks: [1, 1, 1, 1] });
}

/** resnet-small at half width: widths 16/32/64/128, one BasicBlock per stage (~0.3M parameters, ~4x fewer multiply-adds; 2.7x the images/s). */
export function resnetTiny(opts: Omit<ResNetOptions, "widths" | "blocks"> = {}): ResNet {
  return new ResNet({ ...opts, widths: [16, 32, 64, 128], blocks: [1, 1, 1, 1] });
}
