/**
 * Projection and prediction heads, separate from the backbones (as lightly's heads module):
 * small MLPs on [N, D] features. Each block is Linear -> optional BatchNorm -> optional
 * nonlinearity; the Linear has a bias only when no BatchNorm follows it (lightly / MoCo v3).
 */
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../random";
import type { Backbone } from "./backbone";
import { Module } from "./module";
import * as fastOps from "./fast-ops";
import { BatchNorm, Linear } from "./layers";

/** One head block: Linear(inDim, outDim) -> BatchNorm? -> nonlinearity?. */
export interface ProjectionHeadBlock {
  inDim: number;
  outDim: number;
  /** false/undefined: none; true: affine BN; { affine: false }: BN without scale/shift (MoCo v3's last BN). */
  batchNorm?: boolean | { affine?: boolean };
  nonlinearity?: "relu" | "gelu" | null;
  /** Linear bias; default: true exactly when there is no BatchNorm. */
  bias?: boolean;
}

export interface HeadOptions {
  seed?: number;
  rng?: Rng;
}

function headRng(opts: HeadOptions): Rng {
  return opts.rng ?? new Rng(opts.seed ?? 0);
}

/** Generic MLP head built from a list of blocks; x [N, blocks[0].inDim] -> [N, blocks[last].outDim]. */
export class ProjectionHead extends Module {
  readonly inDim: number;
  readonly outDim: number;
  private readonly layers: { linear: Linear; bn: BatchNorm | null; nonlinearity: "relu" | "gelu" | null }[] = [];

  constructor(blocks: ProjectionHeadBlock[], opts: HeadOptions = {}) {
    super();
    if (!Array.isArray(blocks) || blocks.length === 0) throw new Error("ProjectionHead: needs at least one block");
    blocks.forEach((b, i) => {
      if (i > 0 && b.inDim !== blocks[i - 1].outDim) {
        throw new Error(`ProjectionHead: block ${i} inDim ${b.inDim} != block ${i - 1} outDim ${blocks[i - 1].outDim}`);
      }
      const nl = b.nonlinearity ?? null;
      if (nl !== null && nl !== "relu" && nl !== "gelu") throw new Error(`ProjectionHead: unknown nonlinearity '${nl as string}' in block ${i}`);
    });
    const rng = headRng(opts);
    this.inDim = blocks[0].inDim;
    this.outDim = blocks[blocks.length - 1].outDim;
    blocks.forEach((b, i) => {
      const useBn = b.batchNorm !== undefined && b.batchNorm !== false;
      const affine = typeof b.batchNorm === "object" ? b.batchNorm.affine ?? true : true;
      const linear = this.addChild(`${i}.linear`, new Linear(b.inDim, b.outDim, { rng, bias: b.bias ?? !useBn }));
      const bn = useBn ? this.addChild(`${i}.bn`, new BatchNorm(b.outDim, { affine })) : null;
      this.layers.push({ linear, bn, nonlinearity: b.nonlinearity ?? null });
    });
  }

  forward(x: tf.Tensor2D): tf.Tensor2D {
    if (x.rank !== 2 || x.shape[1] !== this.inDim) throw new Error(`ProjectionHead: expected input [N, ${this.inDim}], got [${x.shape}]`);
    let h: tf.Tensor2D = x;
    for (const { linear, bn, nonlinearity } of this.layers) {
      h = linear.forward(h);
      if (bn) h = bn.forward(h);
      if (nonlinearity === "relu") h = fastOps.relu(h);
      else if (nonlinearity === "gelu") h = fastOps.gelu(h) as tf.Tensor2D;
    }
    return h;
  }
}

/** SimCLR projector (Chen et al. 2020): Linear-BN-ReLU-Linear (numLayers >= 2 adds hidden blocks). */
export function simclrProjectionHead(inDim: number, hiddenDim = 2048, outDim = 128, opts: HeadOptions & { numLayers?: number; batchNorm?: boolean } = {}): ProjectionHead {
  const numLayers = opts.numLayers ?? 2;
  if (!Number.isInteger(numLayers) || numLayers < 2) throw new Error(`simclrProjectionHead: numLayers must be >= 2, got ${numLayers}`);
  const bn = opts.batchNorm ?? true;
  const blocks: ProjectionHeadBlock[] = [{ inDim, outDim: hiddenDim, batchNorm: bn, nonlinearity: "relu" }];
  for (let i = 2; i < numLayers; i++) blocks.push({ inDim: hiddenDim, outDim: hiddenDim, batchNorm: bn, nonlinearity: "relu" });
  blocks.push({ inDim: hiddenDim, outDim });
  return new ProjectionHead(blocks, opts);
}

/** MoCo v2 projector (Chen et al. 2020b): Linear-ReLU-Linear, no BatchNorm. */
export function mocoV2ProjectionHead(inDim = 2048, hiddenDim = 2048, outDim = 128, opts: HeadOptions = {}): ProjectionHead {
  return new ProjectionHead([{ inDim, outDim: hiddenDim, nonlinearity: "relu" }, { inDim: hiddenDim, outDim }], opts);
}

/** BYOL projector (Grill et al. 2020): Linear-BN-ReLU-Linear, 4096 hidden, 256 out. */
export function byolProjectionHead(inDim = 2048, hiddenDim = 4096, outDim = 256, opts: HeadOptions = {}): ProjectionHead {
  return new ProjectionHead([{ inDim, outDim: hiddenDim, batchNorm: true, nonlinearity: "relu" }, { inDim: hiddenDim, outDim }], opts);
}

/**
 * MoCo v3 projector (Chen et al. 2021): numLayers (default 3) Linear-BN blocks with ReLU between,
 * the last BN without affine; all Linears without bias, as the official _build_mlp.
 */
export function mocoV3ProjectionHead(inDim = 2048, hiddenDim = 4096, outDim = 256, opts: HeadOptions & { numLayers?: number } = {}): ProjectionHead {
  const numLayers = opts.numLayers ?? 3;
  if (!Number.isInteger(numLayers) || numLayers < 2) throw new Error(`mocoV3ProjectionHead: numLayers must be >= 2, got ${numLayers}`);
  const blocks: ProjectionHeadBlock[] = [];
  for (let i = 0; i < numLayers; i++) {
    const last = i === numLayers - 1;
    blocks.push({
      inDim: i === 0 ? inDim : hiddenDim,
      outDim: last ? outDim : hiddenDim,
      batchNorm: last ? { affine: false } : true,
      nonlinearity: last ? null : "relu",
      bias: false,
    });
  }
  return new ProjectionHead(blocks, opts);
}

export interface PredictionHeadOptions extends HeadOptions {
  /** Bias on the last Linear (default true, BYOL; MoCo v3's predictor has none). */
  lastBias?: boolean;
}

/**
 * Predictor q of BYOL (Grill et al. 2020) and MoCo v3: Linear-BN-ReLU-Linear, defaults 256 -> 4096 -> 256.
 * For MoCo v3 use new PredictionHead(dim, mlpDim, dim, { lastBias: false }).
 */
export class PredictionHead extends ProjectionHead {
  constructor(inDim = 256, hiddenDim = 4096, outDim = 256, opts: PredictionHeadOptions = {}) {
    super(
      [
        { inDim, outDim: hiddenDim, batchNorm: true, nonlinearity: "relu" },
        { inDim: hiddenDim, outDim, bias: opts.lastBias ?? true },
      ],
      opts,
    );
  }
}

/**
 * z = g(f(x)): an encoder with its projection head, the shape SimCLR's trained model, BYOL's online
 * and target networks and SiT's momentum teacher share (children "backbone" and "projector").
 */
export class ProjectedEncoder<B extends Backbone = Backbone> extends Module {
  constructor(
    readonly backbone: B,
    readonly projector: ProjectionHead,
  ) {
    super();
    this.addChild("backbone", backbone);
    this.addChild("projector", projector);
  }

  forward(x: tf.Tensor4D): tf.Tensor2D {
    return this.projector.forward(this.backbone.forward(x));
  }
}
