/**
 * MAE (He et al. 2021, "Masked Autoencoders Are Scalable Vision Learners"), sec. 3:
 *
 *   for each minibatch x:  x = crop+flip(x)                         the reference's only augmentation
 *                          keep, removed = mask(L patches, ratio)    per image (random / block / grid)
 *                          z = f(x[keep])                            the encoder sees visible patches only
 *                          x^ = g(z, mask tokens)                    light decoder predicts every patch
 *                          L = MSE(x^, norm(x)) over removed patches (normalised-pixel target optional)
 *   return f (the decoder is thrown away)
 *
 * Evaluation uses f's class token on the full, unmasked image (`ViT.forward`), as the paper's
 * linear probe does with its auxiliary class token (appendix A.1).
 */
import * as tf from "@tensorflow/tfjs-core";
import { composeTransforms, randomHorizontalFlip, randomResizedCrop } from "../augment";
import type { ViewTransform } from "../augment";
import { checkMaskSampling, maskPatches, samplePatchMask } from "../augment/patch-masking";
import type { MaskSampling, PatchMask } from "../augment/patch-masking";
import { MAE_NORM_PIX_EPS, maeLoss } from "../losses/mae";
import { Backbone } from "../nn/backbone";
import * as fastOps from "../nn/fast-ops";
import { MaeDecoder } from "../nn/mae-decoder";
import { Module } from "../nn/module";
import { ViT } from "../nn/vit";
import { Rng } from "../random";
import type { SSLMethod, StepContext, StepOutput } from "./types";

export interface MAEOptions {
  /** The encoder f: a ViT (it runs on the visible patches only). */
  backbone: ViT;
  /** Image [height, width, channels] (for the default crop + flip). */
  inputShape: [number, number, number];
  /** Fraction of patches removed, in (0, 1) (paper: 0.75). */
  maskRatio?: number;
  /** How removed patches are chosen (paper Fig. 6; default "random"). */
  maskSampling?: MaskSampling;
  /** Predict each patch normalised by its own mean and std (paper Table 1c; default true). */
  normPix?: boolean;
  /** Decoder width, depth, heads (default 64, 2, 4: light, as the paper's 512-wide 8-block decoder for ViT-L). */
  decoderDim?: number;
  decoderDepth?: number;
  decoderHeads?: number;
  /** RandomResizedCrop area range (the reference: [0.2, 1]). */
  cropScale?: [number, number];
  /** A custom augmentation instead of crop + flip. */
  transform?: ViewTransform;
  /** Seed of the decoder's initialisation. */
  seed?: number;
}

/** What `MAE.reconstruct` returns (images [N, H, W, C] in [0, 1]; the caller disposes them). */
export interface MaeReconstruction {
  /** The input with the removed patches grey (0.5). */
  masked: tf.Tensor4D;
  /** The decoder's prediction of every patch (with normPix: de-normalised with each patch's own statistics, as the reference's demo). */
  reconstruction: tf.Tensor4D;
  /** The reconstruction with the visible patches pasted back from the input. */
  pasted: tf.Tensor4D;
  /** MSE of the prediction on the removed patches in the training target's space (maeLoss). */
  loss: number;
  mask: PatchMask;
}

/**
 * The encoder with its patch tokens mean-pooled as the features (no class token), for comparing
 * with the class token MAE is evaluated on (the paper reports the two are about equal, sec. A.1).
 * A view: it shares the ViT's weights, and dispose() leaves them alone.
 */
export class MeanPooledViT extends Backbone {
  readonly outputDim: number;
  constructor(readonly vit: ViT) {
    super();
    this.outputDim = vit.dim;
  }

  forward(x: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => tf.mean(this.vit.forwardTokens(x).patches, 1) as tf.Tensor2D);
  }
}

/** Encoder f and decoder g together: what the optimiser trains. */
export class MAEModel extends Module {
  constructor(
    readonly backbone: ViT,
    readonly decoder: MaeDecoder,
  ) {
    super();
    this.addChild("backbone", backbone);
    this.addChild("decoder", decoder);
  }
}

export class MAE implements SSLMethod {
  readonly name = "mae";
  readonly backbone: ViT;
  readonly decoder: MaeDecoder;
  readonly trainable: MAEModel;
  readonly maskRatio: number;
  readonly maskSampling: MaskSampling;
  readonly normPix: boolean;
  readonly transform: ViewTransform;

  constructor(opts: MAEOptions) {
    if (!(opts?.backbone instanceof ViT)) throw new Error("MAE: the backbone must be a ViT (e.g. --backbone vit-tiny): the encoder runs on the visible patches only");
    const [h, w, c] = opts.inputShape ?? [];
    if (![h, w, c].every((d) => Number.isInteger(d) && d > 0)) throw new Error(`MAE: inputShape must be [height, width, channels], got ${JSON.stringify(opts.inputShape)}`);
    const vit = opts.backbone;
    if (vit.imageSize[0] !== h || vit.imageSize[1] !== w || vit.inChannels !== c) {
      throw new Error(`MAE: the ViT takes ${vit.imageSize.join("x")}x${vit.inChannels} images, inputShape is ${h}x${w}x${c}`);
    }
    this.maskRatio = opts.maskRatio ?? 0.75;
    this.maskSampling = opts.maskSampling ?? "random";
    try {
      checkMaskSampling(vit.gridSize, this.maskRatio, this.maskSampling);
    } catch (err) {
      throw new Error(`MAE: ${(err as Error).message}`);
    }
    this.normPix = opts.normPix ?? true;
    if (this.normPix && vit.patchSize * vit.patchSize * c < 2) throw new Error("MAE: normPix needs patches of at least 2 pixels");
    this.backbone = vit;
    this.decoder = new MaeDecoder({
      encoderDim: vit.dim,
      grid: vit.gridSize,
      patchPixels: vit.patchSize * vit.patchSize * c,
      dim: opts.decoderDim,
      depth: opts.decoderDepth,
      heads: opts.decoderHeads,
      seed: opts.seed ?? 0,
    });
    this.trainable = new MAEModel(vit, this.decoder);
    const size: [number, number] = [h, w];
    this.transform =
      opts.transform ??
      composeTransforms((x, rng) => randomResizedCrop(x, rng, { size, scale: opts.cropScale ?? [0.2, 1] }), (x, rng) => randomHorizontalFlip(x, rng));
  }

  /** One view: a random resized crop, mirrored half the time. */
  views(images: tf.Tensor4D, ctx: StepContext): tf.Tensor4D[] {
    return [this.transform(images, ctx.rng)];
  }

  /** Encoder on the visible patches, decoder on all of them, loss on the removed ones. */
  private predict(x: tf.Tensor4D, mask: PatchMask): { pred: tf.Tensor3D; cls: tf.Tensor2D } {
    const { cls, patches } = this.backbone.forwardTokens(x, { keep: mask.keep }); // f(x[keep])
    return { pred: this.decoder.forward(cls, patches, mask.idsRestore), cls }; // g(z, mask tokens): [N, L, P]
  }

  step([x]: tf.Tensor4D[], ctx: StepContext): StepOutput {
    const n = x.shape[0];
    const mask = samplePatchMask(n, this.backbone.gridSize, this.maskRatio, ctx.rng, this.maskSampling);
    const { pred, cls } = this.predict(x, mask);
    const target = fastOps.patchify(x, this.backbone.patchSize); // [N, L, P]
    const loss = maeLoss(pred, target, tf.tensor2d(mask.mask, [n, mask.numPatches]), this.normPix);
    return { loss, embeddings: cls };
  }

  /**
   * Masks `images` ([N, H, W, C] in [0, 1]) and reconstructs them (eval mode, no gradient):
   * the masked input, the reconstruction and the reconstruction with the visible patches pasted
   * back. Ratio and sampling default to the method's; the mask is drawn from `seed`.
   */
  reconstruct(images: tf.Tensor4D, opts: { maskRatio?: number; maskSampling?: MaskSampling; seed?: number } = {}): MaeReconstruction {
    const vit = this.backbone;
    const n = images.shape[0];
    const mask = samplePatchMask(n, vit.gridSize, opts.maskRatio ?? this.maskRatio, new Rng(opts.seed ?? 0), opts.maskSampling ?? this.maskSampling);
    const wasTraining = this.trainable.training;
    this.trainable.eval();
    try {
      let loss = NaN;
      const out = tf.tidy(() => {
        const { pred } = this.predict(images, mask);
        const target = fastOps.patchify(images, vit.patchSize);
        const m = tf.tensor3d(mask.mask, [n, mask.numPatches, 1]);
        loss = maeLoss(pred, target, tf.reshape(m, [n, mask.numPatches]) as tf.Tensor2D, this.normPix).dataSync()[0];
        let pixels: tf.Tensor = pred;
        if (this.normPix) {
          // back to pixels with each target patch's own mean and std (the reference's visualisation)
          const mean = tf.mean(target, -1, true);
          const variance = tf.div(tf.sum(tf.square(tf.sub(target, mean)), -1, true), target.shape[2] - 1);
          pixels = tf.add(tf.mul(pred, tf.sqrt(tf.add(variance, MAE_NORM_PIX_EPS))), mean);
        }
        pixels = tf.clipByValue(pixels, 0, 1);
        const keepMask = tf.sub(1, m);
        const toImages = (t: tf.Tensor) => fastOps.unpatchify(t as tf.Tensor3D, vit.patchSize, vit.gridSize);
        return {
          masked: maskPatches(images, mask, vit.patchSize),
          reconstruction: toImages(pixels),
          pasted: toImages(tf.add(tf.mul(target, keepMask), tf.mul(pixels, m))),
        };
      });
      return { ...out, loss, mask };
    } finally {
      this.trainable.train(wasTraining);
    }
  }

  dispose(): void {
    this.trainable.dispose();
  }
}
