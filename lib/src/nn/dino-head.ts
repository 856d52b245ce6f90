/**
 * DINO's projection head (Caron et al. 2021, sec. 3.1 and the reference DINOHead; lightly's
 * DINOProjectionHead): a 3-layer MLP (hidden 2048, GELU, no BatchNorm) down to a 256-d bottleneck,
 * l2 normalisation, then a weight-normalised linear layer of K outputs without bias whose weight
 * norm g is fixed to 1 (norm_last_layer=True: weight_g frozen at 1), i.e. each output is the
 * cosine between the bottleneck and a unit prototype, w_k = v_k / ||v_k||.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../random";
import * as fastOps from "./fast-ops";
import { initOnes, initTorchDefault } from "./init";
import { Linear } from "./layers";
import { Module } from "./module";
import { stopGradient } from "./no-grad";

export interface WeightNormLinearOptions {
  rng: Rng;
  /** true (DINO's default): g is fixed to 1, a buffer; false: g is a trainable parameter (initialised to 1). */
  fixedNorm?: boolean;
}

/**
 * y = x W with W[:, k] = g_k v[:, k] / ||v[:, k]|| (torch.nn.utils.weight_norm over the output
 * dimension; weights here are [in, out]), no bias. v starts as PyTorch's nn.Linear default.
 */
export class WeightNormLinear extends Module {
  readonly inDim: number;
  readonly outDim: number;
  /** The direction v [in, out] (torch: weight_v, transposed). */
  readonly weightV: tf.Variable;
  /** The norm g [out] (torch: weight_g); a buffer of ones when fixedNorm. */
  readonly weightG: tf.Variable;
  readonly fixedNorm: boolean;
  /** While true, v gets a zero gradient (DINO freezes the last layer for the first epoch). */
  frozen = false;

  constructor(inDim: number, outDim: number, opts: WeightNormLinearOptions) {
    super();
    for (const [what, v] of [["inDim", inDim], ["outDim", outDim]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`WeightNormLinear: ${what} must be a positive integer, got ${v}`);
    }
    if (!opts || !(opts.rng instanceof Rng)) throw new Error("WeightNormLinear: opts.rng (an Rng) is required");
    this.inDim = inDim;
    this.outDim = outDim;
    this.fixedNorm = opts.fixedNorm ?? true;
    this.weightV = this.addParam("weightV", initTorchDefault([inDim, outDim], inDim, opts.rng));
    this.weightG = this.fixedNorm ? this.addBuffer("weightG", initOnes([outDim])) : this.addParam("weightG", initOnes([outDim]), { decay: false });
  }

  /** The effective weight W = g v / ||v|| (column norms), [in, out]. */
  weight(): tf.Tensor2D {
    const v = this.frozen ? stopGradient(this.weightV) : this.weightV;
    const direction = fastOps.l2Normalize(v, 0);
    return (this.fixedNorm ? direction : tf.mul(direction, this.weightG)) as tf.Tensor2D;
  }

  forward(x: tf.Tensor2D): tf.Tensor2D {
    if (x.rank !== 2 || x.shape[1] !== this.inDim) throw new Error(`WeightNormLinear: expected input [N, ${this.inDim}], got [${x.shape}]`);
    return fastOps.matMul(x, this.weight()) as tf.Tensor2D;
  }
}

export interface DinoHeadOptions {
  /** Output dimension K (the number of prototypes; DINO: 65536 on ImageNet). */
  outDim: number;
  /** Hidden width of the MLP (DINO: 2048). */
  hiddenDim?: number;
  /** Bottleneck width (DINO: 256). */
  bottleneckDim?: number;
  /** Linear layers of the MLP (DINO: 3). */
  numLayers?: number;
  /** g fixed to 1 (DINO's norm_last_layer, default true). */
  normLastLayer?: boolean;
  seed?: number;
  rng?: Rng;
}

/** x [N, inDim] -> mlp -> l2 normalise -> weight-normalised last layer -> [N, K]. */
export class DinoHead extends Module {
  readonly inDim: number;
  readonly outDim: number;
  readonly hiddenDim: number;
  readonly bottleneckDim: number;
  readonly layers: Linear[] = [];
  readonly lastLayer: WeightNormLinear;

  constructor(inDim: number, opts: DinoHeadOptions) {
    super();
    const hidden = opts.hiddenDim ?? 2048;
    const bottleneck = opts.bottleneckDim ?? 256;
    const numLayers = opts.numLayers ?? 3;
    for (const [what, v] of [["inDim", inDim], ["outDim", opts.outDim], ["hiddenDim", hidden], ["bottleneckDim", bottleneck], ["numLayers", numLayers]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`DinoHead: ${what} must be a positive integer, got ${v}`);
    }
    const rng = opts.rng ?? new Rng(opts.seed ?? 0);
    this.inDim = inDim;
    this.outDim = opts.outDim;
    this.hiddenDim = hidden;
    this.bottleneckDim = bottleneck;
    // DINOHead._init_weights: trunc_normal(std=0.02) weights, zero biases
    const dims = numLayers === 1 ? [inDim, bottleneck] : [inDim, ...Array<number>(numLayers - 1).fill(hidden), bottleneck];
    for (let i = 0; i + 1 < dims.length; i++) this.layers.push(this.addChild(`mlp.${i}`, new Linear(dims[i], dims[i + 1], { rng, init: "trunc-normal" })));
    this.lastLayer = this.addChild("lastLayer", new WeightNormLinear(bottleneck, opts.outDim, { rng, fixedNorm: opts.normLastLayer ?? true }));
  }

  /** The l2-normalised bottleneck [N, bottleneckDim]. */
  bottleneck(x: tf.Tensor2D): tf.Tensor2D {
    if (x.rank !== 2 || x.shape[1] !== this.inDim) throw new Error(`DinoHead: expected input [N, ${this.inDim}], got [${x.shape}]`);
    let h: tf.Tensor2D = x;
    this.layers.forEach((layer, i) => {
      h = layer.forward(h);
      if (i < this.layers.length - 1) h = fastOps.gelu(h) as tf.Tensor2D;
    });
    return fastOps.l2Normalize(h, 1) as tf.Tensor2D;
  }

  forward(x: tf.Tensor2D): tf.Tensor2D {
    return this.lastLayer.forward(this.bottleneck(x));
  }

  /** Freeze (zero gradient) or release the last layer (DINO: frozen during the first epoch). */
  setLastLayerFrozen(frozen: boolean): void {
    this.lastLayer.frozen = frozen;
  }
}
