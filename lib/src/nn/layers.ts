/**
 * Layers as `Module`s: Linear, Conv2d, BatchNorm, LayerNorm, MultiHeadSelfAttention, Mlp.
 * Every layer computes with the ops in fast-ops (fast, correct gradients on wasm) and takes its
 * initial weights from an `Rng`, so a seed gives the same layer on every backend.
 * Layout conventions are TensorFlow's: activations NHWC / [N, L, D], dense weights [in, out],
 * conv filters HWIO [KH, KW, Ci, Co].
 */
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../random";
import { Module } from "./module";
import * as fastOps from "./fast-ops";
import { initConvKaimingFanOut, initOnes, initTorchDefault, initTruncNormal, initXavierUniform, initZeros } from "./init";

function assertPositiveInt(layer: string, what: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${layer}: ${what} must be a positive integer, got ${v}`);
}

function assertLastDim(layer: string, x: tf.Tensor, dim: number, minRank = 2): void {
  if (x.rank < minRank || x.shape[x.rank - 1] !== dim) {
    throw new Error(`${layer}: expected input [..., ${dim}] of rank >= ${minRank}, got [${x.shape}]`);
  }
}

// ---------------------------------------------------------------------------------------------
// Linear
// ---------------------------------------------------------------------------------------------

/** How a Linear layer's weight starts: PyTorch's nn.Linear default, xavier uniform (MAE), or trunc normal 0.02 (timm). */
export type LinearInit = "torch-default" | "xavier-uniform" | "trunc-normal";

export interface LinearOptions {
  rng: Rng;
  /** Add a bias (default true). */
  bias?: boolean;
  /** Weight init (default "torch-default"). Biases are zero except for "torch-default", which draws them like PyTorch. */
  init?: LinearInit;
}

/** y = x W + b on the last axis; x [..., in] -> [..., out]; W is [in, out]. */
export class Linear extends Module {
  readonly inDim: number;
  readonly outDim: number;
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | null;

  constructor(inDim: number, outDim: number, opts: LinearOptions) {
    super();
    assertPositiveInt("Linear", "inDim", inDim);
    assertPositiveInt("Linear", "outDim", outDim);
    if (!opts || !(opts.rng instanceof Rng)) throw new Error("Linear: opts.rng (an Rng) is required");
    this.inDim = inDim;
    this.outDim = outDim;
    const init = opts.init ?? "torch-default";
    let w: tf.Tensor;
    if (init === "torch-default") w = initTorchDefault([inDim, outDim], inDim, opts.rng);
    else if (init === "xavier-uniform") w = initXavierUniform([inDim, outDim], inDim, outDim, opts.rng);
    else if (init === "trunc-normal") w = initTruncNormal([inDim, outDim], 0.02, opts.rng);
    else throw new Error(`Linear: unknown init '${init as string}'`);
    this.weight = this.addParam("weight", w);
    const useBias = opts.bias ?? true;
    this.bias = useBias
      ? this.addParam("bias", init === "torch-default" ? initTorchDefault([outDim], inDim, opts.rng) : initZeros([outDim]), { decay: false })
      : null;
  }

  forward<T extends tf.Tensor>(x: T): T {
    assertLastDim("Linear", x, this.inDim);
    return fastOps.dense(x, this.weight, this.bias ?? undefined) as T;
  }
}

// ---------------------------------------------------------------------------------------------
// Conv2d
// ---------------------------------------------------------------------------------------------

export interface Conv2dOptions {
  rng: Rng;
  stride?: number;
  /** Symmetric zero padding in pixels (PyTorch style), "same" or "valid". Default: floor(kernel/2). */
  padding?: number | "same" | "valid";
  /** Add a bias (default false: convolutions here are followed by BatchNorm). */
  bias?: boolean;
  /** Weight init (default "kaiming-fan-out", torchvision ResNet). */
  init?: "kaiming-fan-out" | "torch-default";
}

/** 2-D convolution, x [N,H,W,Ci] -> [N,H',W',Co], filter HWIO, via fastOps.conv2d. */
export class Conv2d extends Module {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernelSize: number;
  readonly stride: number;
  readonly padding: number | "same" | "valid";
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | null;

  constructor(inChannels: number, outChannels: number, kernelSize: number, opts: Conv2dOptions) {
    super();
    assertPositiveInt("Conv2d", "inChannels", inChannels);
    assertPositiveInt("Conv2d", "outChannels", outChannels);
    assertPositiveInt("Conv2d", "kernelSize", kernelSize);
    if (!opts || !(opts.rng instanceof Rng)) throw new Error("Conv2d: opts.rng (an Rng) is required");
    this.inChannels = inChannels;
    this.outChannels = outChannels;
    this.kernelSize = kernelSize;
    this.stride = opts.stride ?? 1;
    assertPositiveInt("Conv2d", "stride", this.stride);
    this.padding = opts.padding ?? Math.floor(kernelSize / 2);
    if (typeof this.padding === "number" && (!Number.isInteger(this.padding) || this.padding < 0)) {
      throw new Error(`Conv2d: padding must be a non-negative integer, "same" or "valid", got ${this.padding}`);
    }
    const shape: [number, number, number, number] = [kernelSize, kernelSize, inChannels, outChannels];
    const fanIn = kernelSize * kernelSize * inChannels;
    const init = opts.init ?? "kaiming-fan-out";
    const w = init === "kaiming-fan-out" ? initConvKaimingFanOut(shape, opts.rng) : initTorchDefault(shape, fanIn, opts.rng);
    this.weight = this.addParam("weight", w);
    this.bias = opts.bias ? this.addParam("bias", initTorchDefault([outChannels], fanIn, opts.rng), { decay: false }) : null;
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    if (x.rank !== 4 || x.shape[3] !== this.inChannels) {
      throw new Error(`Conv2d: expected input [N, H, W, ${this.inChannels}], got [${x.shape}]`);
    }
    const y = fastOps.conv2d(x, this.weight as tf.Tensor4D, this.stride, this.padding);
    if (!this.bias) return y;
    return tf.reshape(fastOps.addBias(tf.reshape(y, [-1, this.outChannels]) as tf.Tensor2D, this.bias), y.shape) as tf.Tensor4D;
  }
}

// ---------------------------------------------------------------------------------------------
// BatchNorm
// ---------------------------------------------------------------------------------------------

export interface BatchNormOptions {
  /** Running-stat momentum, PyTorch convention: running = (1 - m) running + m batch (default 0.1). */
  momentum?: number;
  eps?: number;
  /** Learnable scale and shift (default true). MoCo v3's last projector BN has none. */
  affine?: boolean;
}

/**
 * Batch normalisation over the last (channel) axis of [N, C] or [N, H, W, C] inputs
 * (BatchNorm1d / BatchNorm2d). Training mode: normalises with the batch's mean and biased
 * variance and updates the running buffers with the unbiased variance, as PyTorch does.
 * Eval mode: uses the running statistics. Scale and shift have decay: false.
 */
export class BatchNorm extends Module {
  readonly numFeatures: number;
  readonly momentum: number;
  readonly eps: number;
  readonly weight: tf.Variable | null;
  readonly bias: tf.Variable | null;
  readonly runningMean: tf.Variable;
  readonly runningVar: tf.Variable;

  constructor(numFeatures: number, opts: BatchNormOptions = {}) {
    super();
    assertPositiveInt("BatchNorm", "numFeatures", numFeatures);
    this.numFeatures = numFeatures;
    this.momentum = opts.momentum ?? 0.1;
    this.eps = opts.eps ?? 1e-5;
    if (!(this.momentum >= 0 && this.momentum <= 1)) throw new Error(`BatchNorm: momentum must be in [0, 1], got ${this.momentum}`);
    if (!(this.eps > 0)) throw new Error(`BatchNorm: eps must be > 0, got ${this.eps}`);
    const affine = opts.affine ?? true;
    this.weight = affine ? this.addParam("weight", initOnes([numFeatures]), { decay: false }) : null;
    this.bias = affine ? this.addParam("bias", initZeros([numFeatures]), { decay: false }) : null;
    this.runningMean = this.addBuffer("runningMean", initZeros([numFeatures]));
    this.runningVar = this.addBuffer("runningVar", initOnes([numFeatures]));
  }

  forward<T extends tf.Tensor>(x: T): T {
    const c = this.numFeatures;
    if ((x.rank !== 2 && x.rank !== 4) || x.shape[x.rank - 1] !== c) {
      throw new Error(`BatchNorm: expected input [N, ${c}] or [N, H, W, ${c}], got [${x.shape}]`);
    }
    if (!this.training) {
      // y = x * gamma / sqrt(rv + eps) + (beta - rm * gamma / sqrt(rv + eps))
      const invStd = tf.rsqrt(tf.add(this.runningVar, this.eps));
      const scale = this.weight ? tf.mul(this.weight, invStd) : invStd;
      const shifted = tf.mul(this.runningMean, scale);
      const shift = this.bias ? tf.sub(this.bias, shifted) : tf.neg(shifted);
      return fastOps.channelAffine(x, scale as tf.Tensor1D, shift as tf.Tensor1D);
    }
    const rows = x.rank === 2 ? (x as unknown as tf.Tensor2D) : (tf.reshape(x, [-1, c]) as tf.Tensor2D);
    const m = rows.shape[0];
    if (m < 2) throw new Error(`BatchNorm: training mode needs more than 1 value per channel, got input [${x.shape}]`);
    const { y, mean, variance } = fastOps.batchNormTrain(rows, this.weight as tf.Tensor1D | null, this.bias as tf.Tensor1D | null, this.eps);
    this.updateRunningStats(mean, variance, m); // variance: biased (normalises); running: unbiased
    tf.dispose([mean, variance]);
    return (x.rank === 2 ? y : tf.reshape(y, x.shape)) as T;
  }

  /** running = (1 - momentum) running + momentum batch, with the unbiased batch variance. */
  private updateRunningStats(mean: tf.Tensor1D, variance: tf.Tensor1D, count: number): void {
    const mom = this.momentum;
    tf.tidy(() => {
      const unbiased = tf.mul(variance, count / (count - 1));
      this.runningMean.assign(tf.add(tf.mul(this.runningMean, 1 - mom), tf.mul(mean, mom)));
      this.runningVar.assign(tf.add(tf.mul(this.runningVar, 1 - mom), tf.mul(unbiased, mom)));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm
// ---------------------------------------------------------------------------------------------

/** Layer normalisation over the last axis (nn.LayerNorm(dim, eps)); MAE/ViT use eps = 1e-6. */
export class LayerNorm extends Module {
  readonly dim: number;
  readonly eps: number;
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;

  constructor(dim: number, opts: { eps?: number } = {}) {
    super();
    assertPositiveInt("LayerNorm", "dim", dim);
    this.dim = dim;
    this.eps = opts.eps ?? 1e-5;
    if (!(this.eps > 0)) throw new Error(`LayerNorm: eps must be > 0, got ${this.eps}`);
    this.weight = this.addParam("weight", initOnes([dim]), { decay: false });
    this.bias = this.addParam("bias", initZeros([dim]), { decay: false });
  }

  forward<T extends tf.Tensor>(x: T): T {
    assertLastDim("LayerNorm", x, this.dim);
    return fastOps.layerNormOp(x, this.weight, this.bias, this.eps) as T;
  }
}

// ---------------------------------------------------------------------------------------------
// Multi-head self-attention and the transformer MLP
// ---------------------------------------------------------------------------------------------

export interface MultiHeadSelfAttentionOptions {
  rng: Rng;
  /** Bias on the qkv projection (default true, as timm/MAE). */
  qkvBias?: boolean;
  /** Init of the qkv and output projections (default "xavier-uniform", MAE). */
  init?: LinearInit;
}

/**
 * Multi-head self-attention (Vaswani et al. 2017): Attention(Q,K,V) = softmax(Q K^T / sqrt(d_head)) V
 * for each head, heads concatenated and projected. x [N, L, D] -> [N, L, D].
 * Set `recordAttention = true` to keep the last forward's attention map in `lastAttention`
 * ([N, heads, L, L], owned by this module: it is replaced on the next forward and freed by dispose).
 */
export class MultiHeadSelfAttention extends Module {
  readonly dim: number;
  readonly numHeads: number;
  readonly headDim: number;
  readonly qkv: Linear;
  readonly proj: Linear;
  recordAttention = false;
  lastAttention: tf.Tensor4D | null = null;

  constructor(dim: number, numHeads: number, opts: MultiHeadSelfAttentionOptions) {
    super();
    assertPositiveInt("MultiHeadSelfAttention", "dim", dim);
    assertPositiveInt("MultiHeadSelfAttention", "numHeads", numHeads);
    if (dim % numHeads !== 0) throw new Error(`MultiHeadSelfAttention: dim ${dim} is not divisible by numHeads ${numHeads}`);
    this.dim = dim;
    this.numHeads = numHeads;
    this.headDim = dim / numHeads;
    const init = opts.init ?? "xavier-uniform";
    this.qkv = this.addChild("qkv", new Linear(dim, 3 * dim, { rng: opts.rng, bias: opts.qkvBias ?? true, init }));
    this.proj = this.addChild("proj", new Linear(dim, dim, { rng: opts.rng, init }));
  }

  forward(x: tf.Tensor3D): tf.Tensor3D {
    if (x.rank !== 3 || x.shape[2] !== this.dim) throw new Error(`MultiHeadSelfAttention: expected input [N, L, ${this.dim}], got [${x.shape}]`);
    const [n, l] = x.shape;
    const h = this.numHeads;
    const dh = this.headDim;
    // qkv [N, L, 3D] -> q, k, v each [N*h, L, dh]
    const [q, k, v] = fastOps.splitHeads(this.qkv.forward(x) as tf.Tensor3D, 3, h);
    const scores = fastOps.matMulTransposeB(q, k); // q k^T [N*h, L, L]
    const attn = fastOps.softmaxLastAxis(scores, 1 / Math.sqrt(dh)); // softmax(q k^T / sqrt(d_h))
    if (this.recordAttention) this.setLastAttention(tf.reshape(attn, [n, h, l, l]) as tf.Tensor4D);
    const out = fastOps.matMul(attn, v); // [N*h, L, dh]
    const merged = fastOps.mergeHeads([out as tf.Tensor3D], n, h); // [N, L, D]
    return this.proj.forward(merged) as tf.Tensor3D;
  }

  private setLastAttention(a: tf.Tensor4D): void {
    this.lastAttention?.dispose();
    this.lastAttention = tf.keep(a);
  }

  /** Frees the recorded attention map (if any). */
  clearAttention(): void {
    this.lastAttention?.dispose();
    this.lastAttention = null;
  }

  override dispose(): void {
    this.clearAttention();
    super.dispose();
  }
}

export interface MlpOptions {
  rng: Rng;
  /** Output width (default: inDim). */
  outDim?: number;
  /** Init of both linears (default "xavier-uniform", MAE). */
  init?: LinearInit;
}

/** Transformer feed-forward block: Linear -> GELU -> Linear. x [..., in] -> [..., out]. */
export class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(inDim: number, hiddenDim: number, opts: MlpOptions) {
    super();
    const init = opts.init ?? "xavier-uniform";
    this.fc1 = this.addChild("fc1", new Linear(inDim, hiddenDim, { rng: opts.rng, init }));
    this.fc2 = this.addChild("fc2", new Linear(hiddenDim, opts.outDim ?? inDim, { rng: opts.rng, init }));
  }

  forward<T extends tf.Tensor>(x: T): T {
    return this.fc2.forward(fastOps.gelu(this.fc1.forward(x))) as T;
  }
}
