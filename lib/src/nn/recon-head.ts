/**
 * SiT's reconstruction head (Atito et al. 2021, sec. 3.2.1 and 4.1): the transformer is the
 * autoencoder, and a light decoder maps every output patch token back to its pixels,
 *
 *   tokens [N, L, D] -> Linear(D, h) -> GELU -> Linear(h, h) -> GELU -> Linear(h, p*p*C) -> unpatchify
 *
 * The last Linear applied per patch, then unpatchified, is exactly the official code's
 * ConvTranspose2d(h, C, kernel = stride = p). The paper uses h = 2048 for ViT-S/16 at 224 px; the
 * official RECHead uses the embedding width, which is this head's default. Hidden layers start
 * from trunc normal(0.02) as the official `_init_weights`; the projection from PyTorch's default.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../random";
import { Module } from "./module";
import * as fastOps from "./fast-ops";
import { Linear } from "./layers";

export interface ReconstructionHeadOptions {
  /** Width of the two hidden layers (default: inDim). */
  hiddenDim?: number;
  seed?: number;
  rng?: Rng;
}

export class ReconstructionHead extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly proj: Linear;

  /**
   * @param inDim token width D
   * @param patchSize p (the ViT's patch size)
   * @param channels C of the images
   * @param grid patch grid [rows, cols] (tokens are row-major)
   */
  constructor(
    readonly inDim: number,
    readonly patchSize: number,
    readonly channels: number,
    readonly grid: [number, number],
    opts: ReconstructionHeadOptions = {},
  ) {
    super();
    for (const [name, v] of [["patchSize", patchSize], ["channels", channels], ["grid rows", grid?.[0]], ["grid cols", grid?.[1]]] as const) {
      if (!(Number.isInteger(v) && v > 0)) throw new Error(`ReconstructionHead: ${name} must be a positive integer, got ${v}`);
    }
    const rng = opts.rng ?? new Rng(opts.seed ?? 0);
    const hidden = opts.hiddenDim ?? inDim;
    this.fc1 = this.addChild("fc1", new Linear(inDim, hidden, { rng, init: "trunc-normal" }));
    this.fc2 = this.addChild("fc2", new Linear(hidden, hidden, { rng, init: "trunc-normal" }));
    this.proj = this.addChild("proj", new Linear(hidden, patchSize * patchSize * channels, { rng }));
  }

  /** Per-patch pixel predictions [N, L, p*p*C] (patchify order: row, column, channel). */
  forwardPatches(tokens: tf.Tensor3D): tf.Tensor3D {
    const [gh, gw] = this.grid;
    if (tokens.rank !== 3 || tokens.shape[1] !== gh * gw || tokens.shape[2] !== this.inDim) {
      throw new Error(`ReconstructionHead: expected tokens [N, ${gh * gw}, ${this.inDim}], got [${tokens.shape}]`);
    }
    const h = fastOps.gelu(this.fc2.forward(fastOps.gelu(this.fc1.forward(tokens)))) as tf.Tensor3D;
    return this.proj.forward(h);
  }

  /** The reconstructed images [N, rows*p, cols*p, C]. */
  forward(tokens: tf.Tensor3D): tf.Tensor4D {
    return fastOps.unpatchify(this.forwardPatches(tokens), this.patchSize, this.grid);
  }
}
