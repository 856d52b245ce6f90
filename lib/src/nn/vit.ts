/**
 * Vision Transformer (Dosovitskiy et al. 2021) as in the MAE reference code: patch embedding
 * (patchify + one matMul), class token, fixed 2-D sin-cos or learnable position embedding,
 * pre-norm blocks x + MHSA(LN(x)), x + MLP(LN(x)), final LayerNorm.
 * `forward` returns the class token; `forwardTokens` also returns the patch tokens and can keep
 * only a subset of patches (MAE's random masking: position embeddings are added first).
 * With `interpolatePosEmbed` a ViT also takes inputs of other sizes whose sides divide by the patch
 * size (DINO's multi-crop: 28x28 global and 12x12 local crops through one network), resampling the
 * position-embedding grid bicubically; `clsAttention` gives the last block's class-token attention
 * to every patch, per head (DINO's Figure 1).
 */
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../random";
import { Backbone } from "./backbone";
import { Module } from "./module";
import * as fastOps from "./fast-ops";
import { LayerNorm, Linear, LinearInit, Mlp, MultiHeadSelfAttention } from "./layers";
import { initNormal, initTruncNormal } from "./init";

/**
 * MAE's get_2d_sincos_pos_embed: [gridH * gridW (+1 when clsToken), dim], row-major patches.
 * For the patch in row i, column j: the first dim/2 values encode the column j, the last dim/2
 * the row i (MAE's meshgrid puts w first); each half is [sin(pos * w_k), cos(pos * w_k)],
 * w_k = 1 / 10000^(k / (dim/4)), k = 0 .. dim/4 - 1. The class token's row is zeros.
 */
export function get2dSincosPosEmbed(dim: number, gridH: number, gridW: number, clsToken = false): Float32Array {
  if (!Number.isInteger(dim) || dim <= 0 || dim % 4 !== 0) throw new Error(`get2dSincosPosEmbed: dim must be a positive multiple of 4, got ${dim}`);
  if (!Number.isInteger(gridH) || !Number.isInteger(gridW) || gridH < 1 || gridW < 1) {
    throw new Error(`get2dSincosPosEmbed: grid must be positive integers, got ${gridH}x${gridW}`);
  }
  const quarter = dim / 4;
  const offset = clsToken ? 1 : 0;
  const out = new Float32Array((gridH * gridW + offset) * dim);
  for (let i = 0; i < gridH; i++) {
    for (let j = 0; j < gridW; j++) {
      const row = (offset + i * gridW + j) * dim;
      for (let k = 0; k < quarter; k++) {
        const omega = 1 / Math.pow(10000, k / quarter);
        out[row + k] = Math.sin(j * omega);
        out[row + quarter + k] = Math.cos(j * omega);
        out[row + 2 * quarter + k] = Math.sin(i * omega);
        out[row + 3 * quarter + k] = Math.cos(i * omega);
      }
    }
  }
  return out;
}

/** torch's cubic-convolution kernel (A = -0.75): weights of the samples at offsets -1, 0, 1, 2 from floor(x), t = x - floor(x). */
function cubicWeights(t: number): [number, number, number, number] {
  const a = -0.75;
  const near = (x: number) => ((a + 2) * x - (a + 3)) * x * x + 1; // |x| <= 1
  const far = (x: number) => ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; // 1 < |x| < 2
  return [far(t + 1), near(t), near(1 - t), far(2 - t)];
}

/**
 * [outSize, inSize] matrix of 1-D bicubic resampling as torch's F.interpolate(mode="bicubic",
 * align_corners=False): output j samples the input at (j + 0.5) * in / out - 0.5 with the
 * cubic-convolution kernel (A = -0.75), indices clamped at the borders. Rows sum to 1; inSize ===
 * outSize gives the identity. (DINO's interpolate_pos_encoding resamples with this kernel; its
 * scale_factor of (out + 0.1) / in shifts the sample points by a few hundredths of a patch.)
 */
export function bicubicResizeMatrix(inSize: number, outSize: number): Float32Array {
  if (!Number.isInteger(inSize) || !Number.isInteger(outSize) || inSize < 1 || outSize < 1) {
    throw new Error(`bicubicResizeMatrix: sizes must be positive integers, got ${inSize} -> ${outSize}`);
  }
  const m = new Float32Array(outSize * inSize);
  const scale = inSize / outSize;
  for (let j = 0; j < outSize; j++) {
    const x = (j + 0.5) * scale - 0.5;
    const x0 = Math.floor(x);
    const w = cubicWeights(x - x0);
    for (let k = 0; k < 4; k++) {
      const src = Math.min(inSize - 1, Math.max(0, x0 - 1 + k));
      m[j * inSize + src] += w[k];
    }
  }
  return m;
}

/**
 * [gh'*gw', gh*gw] matrix that resamples a row-major grid of position embeddings from gh x gw to
 * gh' x gw' (the Kronecker product of the row and column bicubic matrices): pos' = M pos.
 */
export function posEmbedResizeMatrix(from: [number, number], to: [number, number]): Float32Array {
  const [gh, gw] = from;
  const [th, tw] = to;
  const mh = bicubicResizeMatrix(gh, th);
  const mw = bicubicResizeMatrix(gw, tw);
  const out = new Float32Array(th * tw * gh * gw);
  for (let i = 0; i < th; i++) {
    for (let j = 0; j < tw; j++) {
      const row = (i * tw + j) * gh * gw;
      for (let a = 0; a < gh; a++) {
        const wa = mh[i * gh + a];
        if (wa === 0) continue;
        for (let b = 0; b < gw; b++) out[row + a * gw + b] = wa * mw[j * gw + b];
      }
    }
  }
  return out;
}

/** One pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)). */
export class TransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: MultiHeadSelfAttention;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;

  constructor(dim: number, heads: number, mlpRatio: number, rng: Rng, opts: { qkvBias?: boolean; eps?: number; init?: LinearInit } = {}) {
    super();
    const hidden = Math.round(dim * mlpRatio);
    this.norm1 = this.addChild("norm1", new LayerNorm(dim, { eps: opts.eps }));
    this.attn = this.addChild("attn", new MultiHeadSelfAttention(dim, heads, { rng, qkvBias: opts.qkvBias, init: opts.init }));
    this.norm2 = this.addChild("norm2", new LayerNorm(dim, { eps: opts.eps }));
    this.mlp = this.addChild("mlp", new Mlp(dim, hidden, { rng, init: opts.init }));
  }

  /**
   * In a tf.tidy: under a gradient tape the tensors the backward pass needs are kept by the tape
   * anyway, and the other intermediates (transposes, reshaped copies, sums) are freed here instead of
   * living until the whole backward pass ends.
   */
  forward(x: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      const h = tf.add(x, this.attn.forward(this.norm1.forward(x))) as tf.Tensor3D;
      return tf.add(h, this.mlp.forward(this.norm2.forward(h))) as tf.Tensor3D;
    });
  }
}

type EngineState = { state: { activeTape: unknown; gradientDepth: number; kernelDepth: number } };

/**
 * block(x) with gradient checkpointing (Chen et al. 2016; torch.utils.checkpoint): the forward pass
 * runs as one custom op, so none of the block's activations are kept for the backward pass (only
 * its input); the backward pass runs the block again under its own gradient tape and backpropagates
 * dy through it, freeing that block's activations and gradients before the next block's. tfjs keeps
 * every taped intermediate AND every intermediate gradient of a step until the whole backward pass
 * ends, ~240 KB a token for ViT-tiny; with checkpointing the peak is one block's worth, for one extra
 * forward pass of the blocks. The block's trainable variables are inputs of the op, so their
 * gradients reach the optimiser as usual.
 */
function checkpointedBlock(block: TransformerBlock, x: tf.Tensor3D): tf.Tensor3D {
  const vars = block.parameters().map((p) => p.variable).filter((v) => v.trainable);
  const op = tf.customGrad(((...args: unknown[]) => {
    const input = args[0] as tf.Tensor3D;
    (args[args.length - 1] as tf.GradSaveFunc)([input]);
    return {
      value: block.forward(input),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        // A nested tape during the outer backward pass: the engine starts a fresh one (as the outer
        // pass's depth is 0) and clears it at its end, so the outer tape is put back afterwards.
        const engine = tf.engine() as unknown as EngineState;
        const outerTape = engine.state.activeTape;
        try {
          return tf.tidy(() => {
            const xs = [saved[0], ...vars];
            const { grads } = tf.engine().gradients(() => block.forward(saved[0] as tf.Tensor3D), xs, dy, true);
            return grads.map((g, i) => g ?? tf.zerosLike(xs[i]));
          });
        } finally {
          engine.state.activeTape = outerTape;
        }
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x, ...vars) as tf.Tensor3D;
}

/** Architecture of a ViT (everything but the input size). */
export interface ViTConfig {
  patchSize: number;
  dim: number;
  depth: number;
  heads: number;
  mlpRatio: number;
}

/** Named ViT configurations. "vit-tiny" is the 28x28 benchmark config; the /16 ones are DeiT/ViT's. */
export const vitConfigs = {
  "vit-tiny": { patchSize: 4, dim: 128, depth: 4, heads: 4, mlpRatio: 4 },
  "vit-ti16": { patchSize: 16, dim: 192, depth: 12, heads: 3, mlpRatio: 4 },
  "vit-s16": { patchSize: 16, dim: 384, depth: 12, heads: 6, mlpRatio: 4 },
  "vit-b16": { patchSize: 16, dim: 768, depth: 12, heads: 12, mlpRatio: 4 },
} as const satisfies Record<string, ViTConfig>;

export interface ViTOptions extends Partial<ViTConfig> {
  /** Input height and width (a number for square images). Default 224. */
  imageSize?: number | [number, number];
  /** Input channels. Default 3. */
  inChannels?: number;
  /** "sincos": fixed 2-D sin-cos (MAE, a buffer); "learnable": trunc normal 0.02 parameter. Default "sincos". */
  posEmbed?: "sincos" | "learnable";
  /** Bias on the qkv projection (default true). */
  qkvBias?: boolean;
  /** LayerNorm eps (default 1e-6, MAE). */
  layerNormEps?: number;
  /** Init of the blocks' linears: "xavier-uniform" (MAE, default) or "trunc-normal" (timm/DINO, std 0.02). */
  linearInit?: LinearInit;
  /**
   * Accept any input whose sides divide by the patch size, resampling the position embeddings
   * bicubically to its patch grid (DINO's multi-crop). Default false: only `imageSize` is accepted.
   */
  interpolatePosEmbed?: boolean;
  /**
   * Recompute blocks' forward passes in the backward pass instead of keeping their activations:
   * true = every block, a number k = the first k blocks (default false).
   */
  gradientCheckpointing?: boolean | number;
  seed?: number;
  rng?: Rng;
}

/** Options of ViT.forwardTokens. */
export interface ViTForwardTokensOptions {
  /**
   * Patch indices to keep per image, [N, K] int32 tensor or an Int32Array of N*K values
   * (row n lists image n's kept patches, in the order they should appear). Default: all patches.
   */
  keep?: Int32Array | tf.Tensor2D;
}

/** ViT backbone: images [N, H, W, C] -> class token [N, dim]. */
export class ViT extends Backbone {
  readonly outputDim: number;
  readonly dim: number;
  readonly depth: number;
  readonly heads: number;
  readonly mlpRatio: number;
  readonly patchSize: number;
  readonly inChannels: number;
  readonly imageSize: [number, number];
  /** Patch grid [rows, cols]. */
  readonly gridSize: [number, number];
  readonly numPatches: number;
  readonly posEmbedKind: "sincos" | "learnable";
  readonly patchEmbed: Linear;
  readonly clsToken: tf.Variable;
  /** [1, 1 + numPatches, dim]; row 0 belongs to the class token. */
  readonly posEmbed: tf.Variable;
  readonly blocks: TransformerBlock[] = [];
  readonly norm: LayerNorm;
  /** Accept other input sizes (sides divisible by the patch size), interpolating the position embeddings. */
  interpolatePosEmbed: boolean;
  /** Under a gradient tape, run every block (true) or the first k blocks (k) with gradient checkpointing: a fraction of the memory for one more forward pass of those blocks. */
  gradientCheckpointing: boolean | number;
  /** Resampling matrices by target grid "rows x cols" (plain arrays: a tensor is made per use). */
  private readonly posResize = new Map<string, Float32Array>();

  constructor(opts: ViTOptions = {}) {
    super();
    const base = vitConfigs["vit-s16"];
    this.patchSize = opts.patchSize ?? base.patchSize;
    this.dim = opts.dim ?? base.dim;
    this.depth = opts.depth ?? base.depth;
    this.heads = opts.heads ?? base.heads;
    this.mlpRatio = opts.mlpRatio ?? base.mlpRatio;
    this.outputDim = this.dim;
    this.inChannels = opts.inChannels ?? 3;
    const size = opts.imageSize ?? 224;
    this.imageSize = typeof size === "number" ? [size, size] : [size[0], size[1]];
    const [ih, iw] = this.imageSize;
    const p = this.patchSize;
    if (!Number.isInteger(p) || p < 1 || ih % p !== 0 || iw % p !== 0) {
      throw new Error(`ViT: patch size ${p} must divide the image size ${ih}x${iw}`);
    }
    if (!Number.isInteger(this.depth) || this.depth < 0) throw new Error(`ViT: depth must be a non-negative integer, got ${this.depth}`);
    if (!Number.isInteger(this.inChannels) || this.inChannels < 1) throw new Error(`ViT: inChannels must be a positive integer, got ${this.inChannels}`);
    this.gridSize = [ih / p, iw / p];
    this.numPatches = this.gridSize[0] * this.gridSize[1];
    this.posEmbedKind = opts.posEmbed ?? "sincos";
    this.interpolatePosEmbed = opts.interpolatePosEmbed ?? false;
    this.gradientCheckpointing = opts.gradientCheckpointing ?? false;
    const rng = opts.rng ?? new Rng(opts.seed ?? 0);
    const d = this.dim;
    const patchDim = p * p * this.inChannels;
    // MAE: xavier_uniform on the patch projection viewed as [D, p*p*C]; cls token normal(0.02).
    this.patchEmbed = this.addChild("patchEmbed", new Linear(patchDim, d, { rng, init: "xavier-uniform" }));
    this.clsToken = this.addParam("clsToken", initNormal([1, 1, d], 0.02, rng), { decay: false });
    if (this.posEmbedKind === "sincos") {
      const table = get2dSincosPosEmbed(d, this.gridSize[0], this.gridSize[1], true);
      this.posEmbed = this.addBuffer("posEmbed", tf.tensor3d(table, [1, this.numPatches + 1, d]));
    } else if (this.posEmbedKind === "learnable") {
      this.posEmbed = this.addParam("posEmbed", initTruncNormal([1, this.numPatches + 1, d], 0.02, rng), { decay: false });
    } else {
      throw new Error(`ViT: posEmbed must be "sincos" or "learnable", got '${this.posEmbedKind as string}'`);
    }
    for (let i = 0; i < this.depth; i++) {
      this.blocks.push(this.addChild(`blocks.${i}`, new TransformerBlock(d, this.heads, this.mlpRatio, rng, { qkvBias: opts.qkvBias, eps: opts.layerNormEps ?? 1e-6, init: opts.linearInit })));
    }
    this.norm = this.addChild("norm", new LayerNorm(d, { eps: opts.layerNormEps ?? 1e-6 }));
  }

  /** Checks the input and returns its patch grid [rows, cols]. */
  private checkInput(x: tf.Tensor4D): [number, number] {
    const [ih, iw] = this.imageSize;
    const p = this.patchSize;
    if (this.interpolatePosEmbed) {
      if (x.rank !== 4 || x.shape[3] !== this.inChannels || x.shape[1] % p !== 0 || x.shape[2] % p !== 0 || x.shape[1] < p || x.shape[2] < p) {
        throw new Error(`ViT: expected input [N, H, W, ${this.inChannels}] with H and W multiples of the patch size ${p}, got [${x.shape}]`);
      }
      return [x.shape[1] / p, x.shape[2] / p];
    }
    if (x.rank !== 4 || x.shape[1] !== ih || x.shape[2] !== iw || x.shape[3] !== this.inChannels) {
      throw new Error(`ViT: expected input [N, ${ih}, ${iw}, ${this.inChannels}], got [${x.shape}]`);
    }
    return this.gridSize;
  }

  /**
   * Position embeddings of the patches of a gh x gw grid, [1, gh*gw, D]: the stored ones for the
   * native grid, else the stored grid resampled bicubically (a matMul with a fixed matrix, so a
   * learnable embedding gets its gradient through it).
   */
  patchPositions(grid: [number, number] = this.gridSize): tf.Tensor3D {
    const [gh, gw] = grid;
    const pos = tf.slice(this.posEmbed, [0, 1, 0], [1, this.numPatches, this.dim]) as tf.Tensor3D;
    if (gh === this.gridSize[0] && gw === this.gridSize[1]) return pos;
    const key = `${gh}x${gw}`;
    let m = this.posResize.get(key);
    if (!m) {
      m = posEmbedResizeMatrix(this.gridSize, grid);
      this.posResize.set(key, m);
    }
    const resized = fastOps.matMul(tf.tensor2d(m, [gh * gw, this.numPatches]), tf.reshape(pos, [this.numPatches, this.dim]));
    return tf.reshape(resized, [1, gh * gw, this.dim]) as tf.Tensor3D;
  }

  /**
   * Patch tokens with position embeddings: all of them [N, L, D], or with `keep` only the kept
   * patches [N, K, D] (the same values: the embedding is per patch, so selecting the pixels first
   * spares embedding the dropped ones).
   */
  embedPatches(x: tf.Tensor4D, keep?: Int32Array | tf.Tensor2D): tf.Tensor3D {
    const grid = this.checkInput(x);
    const numPatches = grid[0] * grid[1];
    const pixels = fastOps.patchify(x, this.patchSize);
    const pos = this.patchPositions(grid);
    if (keep === undefined) return tf.add(this.patchEmbed.forward(pixels), pos) as tf.Tensor3D;
    const keptPos = fastOps.takeTableRows(tf.reshape(pos, [numPatches, this.dim]), keep, x.shape[0]);
    return tf.add(this.patchEmbed.forward(fastOps.takeRows(pixels, keep)), keptPos) as tf.Tensor3D;
  }

  /** Class token plus its position embedding, broadcast to [N, 1, D]. */
  private classTokens(n: number): tf.Tensor3D {
    const pos = tf.slice(this.posEmbed, [0, 0, 0], [1, 1, this.dim]);
    return fastOps.broadcastTo(tf.add(this.clsToken, pos), [n, 1, this.dim]) as tf.Tensor3D;
  }

  /** Runs the transformer on [cls; patch tokens] ([N, 1+K, D] in), returns the final-normed sequence. */
  private encode(x: tf.Tensor4D, keep?: Int32Array | tf.Tensor2D): tf.Tensor3D {
    const n = x.shape[0];
    let h = tf.concat([this.classTokens(n), this.embedPatches(x, keep)], 1) as tf.Tensor3D;
    const { state } = tf.engine() as unknown as EngineState;
    const taping = state.gradientDepth > 0 && state.kernelDepth === 0;
    const ck = this.gradientCheckpointing;
    const numCheckpointed = !taping || ck === false ? 0 : ck === true ? this.depth : ck;
    this.blocks.forEach((block, i) => {
      h = i < numCheckpointed ? checkpointedBlock(block, h) : block.forward(h);
    });
    return this.norm.forward(h);
  }

  /**
   * Class token [N, D] and patch tokens [N, K or L, D] after the final LayerNorm. With `keep`,
   * only those patches enter the transformer (position embeddings were added before selection).
   */
  forwardTokens(x: tf.Tensor4D, opts: ViTForwardTokensOptions = {}): { cls: tf.Tensor2D; patches: tf.Tensor3D } {
    const h = this.encode(x, opts.keep);
    const [n, len, d] = h.shape;
    const cls = tf.reshape(tf.slice(h, [0, 0, 0], [n, 1, d]), [n, d]) as tf.Tensor2D;
    const patches = tf.slice(h, [0, 1, 0], [n, len - 1, d]) as tf.Tensor3D;
    return { cls, patches };
  }

  forward(x: tf.Tensor4D): tf.Tensor2D {
    const h = this.encode(x);
    const [n, , d] = h.shape;
    return tf.reshape(tf.slice(h, [0, 0, 0], [n, 1, d]), [n, d]) as tf.Tensor2D;
  }

  /** Record (or stop recording) each block's attention map on the following forwards. */
  setRecordAttention(on: boolean): void {
    for (const b of this.blocks) {
      b.attn.recordAttention = on;
      if (!on) b.attn.clearAttention();
    }
  }

  /** Each block's last recorded attention map [N, heads, 1+K, 1+K] (token 0 = class token), or null. */
  lastAttentions(): (tf.Tensor4D | null)[] {
    return this.blocks.map((b) => b.attn.lastAttention);
  }

  /**
   * The last block's self-attention from the class token to every patch, per head:
   * [N, heads, gh, gw] (each head's map sums to 1 minus its attention to the class token itself),
   * DINO's Figure 1. Runs a forward pass (no gradient is needed; wrap in tf.tidy as usual) and
   * leaves the other blocks' recording settings as they were.
   */
  clsAttention(x: tf.Tensor4D): tf.Tensor4D {
    if (this.depth === 0) throw new Error("ViT.clsAttention: the ViT has no blocks");
    const [gh, gw] = this.checkInput(x);
    const attn = this.blocks[this.depth - 1].attn;
    const before = attn.recordAttention;
    attn.recordAttention = true;
    try {
      return tf.tidy(() => {
        this.encode(x);
        const a = attn.lastAttention;
        if (!a) throw new Error("ViT.clsAttention: no attention was recorded");
        const [n, h, l] = a.shape;
        // row 0 (the class token's query), columns 1.. (the patches)
        return tf.reshape(tf.slice(a, [0, 0, 0, 1], [n, h, 1, l - 1]), [n, h, gh, gw]) as tf.Tensor4D;
      });
    } finally {
      attn.recordAttention = before;
      if (!before) attn.clearAttention();
    }
  }
}

type ViTFactoryOptions = Omit<ViTOptions, keyof ViTConfig>;

/** The 28x28 benchmark ViT: patch 4, dim 128, depth 4, heads 4, MLP ratio 4. Defaults to 28x28x1 (Fashion-MNIST). */
export function vitTiny(opts: ViTFactoryOptions = {}): ViT {
  return new ViT({ imageSize: 28, inChannels: 1, ...opts, ...vitConfigs["vit-tiny"] });
}

/** ViT-S/16: patch 16, dim 384, depth 12, heads 6 (22M parameters at 224x224). Defaults to 224x224x3. */
export function vitSmall16(opts: ViTFactoryOptions = {}): ViT {
  return new ViT({ imageSize: 224, inChannels: 3, ...opts, ...vitConfigs["vit-s16"] });
}
