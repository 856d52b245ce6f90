/**
 * MAE's lightweight decoder (He et al. 2021, sec. 3 "MAE decoder"; the reference's
 * forward_decoder): the encoded visible tokens are embedded to the decoder width, a shared learned
 * mask token stands in for every removed patch, the full set is put back in patch order
 * (ids_restore), gets the decoder's own fixed 2-D sin-cos positions, runs through a few
 * transformer blocks, and a linear layer predicts each patch's pixels.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../random";
import * as fastOps from "./fast-ops";
import { initNormal } from "./init";
import { LayerNorm, Linear } from "./layers";
import { Module } from "./module";
import { TransformerBlock, get2dSincosPosEmbed } from "./vit";

export interface MaeDecoderOptions {
  /** Width of the encoder's tokens. */
  encoderDim: number;
  /** Patch grid [rows, cols] of the encoder. */
  grid: [number, number];
  /** Pixels per patch (p * p * channels): the prediction's width. */
  patchPixels: number;
  /** Decoder width (default 64; the reference: 512 for a 1024-wide ViT-L). */
  dim?: number;
  /** Transformer blocks (default 2; the reference: 8). */
  depth?: number;
  /** Attention heads (default 4; dim must be divisible by it). */
  heads?: number;
  mlpRatio?: number;
  seed?: number;
  rng?: Rng;
}

export class MaeDecoder extends Module {
  readonly encoderDim: number;
  readonly dim: number;
  readonly depth: number;
  readonly heads: number;
  readonly grid: [number, number];
  readonly numPatches: number;
  readonly patchPixels: number;
  readonly embed: Linear;
  readonly maskToken: tf.Variable;
  /** Fixed 2-D sin-cos positions [1, 1 + L, dim]; row 0 (the class token) is zeros. */
  readonly posEmbed: tf.Variable;
  readonly blocks: TransformerBlock[] = [];
  readonly norm: LayerNorm;
  readonly pred: Linear;

  constructor(opts: MaeDecoderOptions) {
    super();
    const posInt = (v: unknown, what: string) => {
      if (!Number.isInteger(v) || (v as number) < 1) throw new Error(`MaeDecoder: ${what} must be a positive integer, got ${v}`);
      return v as number;
    };
    this.encoderDim = posInt(opts.encoderDim, "encoderDim");
    this.patchPixels = posInt(opts.patchPixels, "patchPixels");
    if (!Array.isArray(opts.grid) || opts.grid.length !== 2) throw new Error(`MaeDecoder: grid must be [rows, cols], got ${JSON.stringify(opts.grid)}`);
    this.grid = [posInt(opts.grid[0], "grid rows"), posInt(opts.grid[1], "grid cols")];
    this.numPatches = this.grid[0] * this.grid[1];
    this.dim = posInt(opts.dim ?? 64, "dim");
    this.depth = posInt(opts.depth ?? 2, "depth");
    this.heads = posInt(opts.heads ?? 4, "heads");
    if (this.dim % 4 !== 0) throw new Error(`MaeDecoder: dim must be a multiple of 4 (sin-cos positions), got ${this.dim}`);
    if (this.dim % this.heads !== 0) throw new Error(`MaeDecoder: dim ${this.dim} is not divisible by heads ${this.heads}`);
    const rng = opts.rng ?? new Rng(opts.seed ?? 0);
    const d = this.dim;
    this.embed = this.addChild("embed", new Linear(this.encoderDim, d, { rng, init: "xavier-uniform" }));
    this.maskToken = this.addParam("maskToken", initNormal([1, 1, d], 0.02, rng), { decay: false });
    const table = get2dSincosPosEmbed(d, this.grid[0], this.grid[1], true);
    this.posEmbed = this.addBuffer("posEmbed", tf.tensor3d(table, [1, this.numPatches + 1, d]));
    for (let i = 0; i < this.depth; i++) {
      this.blocks.push(this.addChild(`blocks.${i}`, new TransformerBlock(d, this.heads, opts.mlpRatio ?? 4, rng, { eps: 1e-6 })));
    }
    this.norm = this.addChild("norm", new LayerNorm(d, { eps: 1e-6 }));
    this.pred = this.addChild("pred", new Linear(d, this.patchPixels, { rng, init: "xavier-uniform" }));
  }

  /**
   * cls [N, E] and the K visible patch tokens [N, K, E] (in the order [kept...] of the mask) ->
   * predicted pixels of every patch [N, L, patchPixels] in patch order. `idsRestore` ([N * L]):
   * the position of patch l in the sequence [kept; removed] (PatchMask.idsRestore).
   */
  forward(cls: tf.Tensor2D, patches: tf.Tensor3D, idsRestore: Int32Array | tf.Tensor2D): tf.Tensor3D {
    if (cls.rank !== 2 || cls.shape[1] !== this.encoderDim) throw new Error(`MaeDecoder: cls must be [N, ${this.encoderDim}], got [${cls.shape}]`);
    const [n, k, e] = patches.shape;
    const l = this.numPatches;
    if (patches.rank !== 3 || n !== cls.shape[0] || e !== this.encoderDim || k < 1 || k >= l) {
      throw new Error(`MaeDecoder: patches must be [${cls.shape[0]}, K, ${this.encoderDim}] with 1 <= K < ${l}, got [${patches.shape}]`);
    }
    const restoreSize = idsRestore instanceof tf.Tensor ? idsRestore.size : idsRestore.length;
    if (restoreSize !== n * l) throw new Error(`MaeDecoder: idsRestore must hold N * L = ${n * l} indices, got ${restoreSize}`);
    const d = this.dim;
    const x = this.embed.forward(tf.concat([tf.reshape(cls, [n, 1, e]), patches], 1) as tf.Tensor3D); // [N, 1+K, d]
    const visible = tf.slice(x, [0, 1, 0], [n, k, d]);
    const maskTokens = fastOps.broadcastTo(this.maskToken, [n, l - k, d]); // one learned token per removed patch
    const ordered = fastOps.takeRows(tf.concat([visible, maskTokens], 1) as tf.Tensor3D, idsRestore); // unshuffle
    let h = tf.add(tf.concat([tf.slice(x, [0, 0, 0], [n, 1, d]), ordered], 1), this.posEmbed) as tf.Tensor3D;
    for (const block of this.blocks) h = block.forward(h);
    const out = this.pred.forward(this.norm.forward(h)); // [N, 1+L, patchPixels]
    return tf.slice(out, [0, 1, 0], [n, l, this.patchPixels]); // drop the class token
  }
}
