/**
 * MAE in the method registry: `sslkit train mae --mask-ratio 0.75 --mask-sampling random|block|grid
 * --norm-pix on|off [--decoder-depth D --decoder-dim W]`. The backbone must be a ViT (vit-tiny by default).
 */
import { MASK_SAMPLINGS } from "../../augment/patch-masking";
import type { MaskSampling } from "../../augment/patch-masking";
import { MAE } from "../mae";
import { methodOption, registerMethod, specBackbone } from "../registry";

export const maeSpec = registerMethod({
  name: "mae",
  summary: "MAE (He et al. 2021): encode the visible patches, reconstruct the removed ones (ViT backbones)",
  options: [
    { key: "maskRatio", flag: "mask-ratio", type: "number", min: 0, exclusiveMin: true, max: 0.99, help: "fraction of patches removed, 0 < r < 1 (default 0.75)" },
    { key: "maskSampling", flag: "mask-sampling", type: "enum", choices: MASK_SAMPLINGS, help: "random | block | grid (grid: one kept patch per 2x2 cell, ratio 0.75)" },
    { key: "normPix", flag: "norm-pix", type: "onoff", help: "normalised-pixel target, each patch by its own mean/std (default on)" },
    { key: "decoderDepth", flag: "decoder-depth", type: "integer", min: 1, max: 16, help: "decoder transformer blocks (default 2)" },
    { key: "decoderDim", flag: "decoder-dim", type: "integer", min: 4, max: 1024, help: "decoder width, a multiple of 4 (default 64)" },
  ],
  defaults: { maskRatio: 0.75, maskSampling: "random", normPix: true, decoderDepth: 2, decoderDim: 64 },
  presets: {
    // the reference's recipe (AdamW, weight decay 0.05, crop 0.2-1 + flip) with a learning rate for
    // short runs (the reference's 1.5e-4 x batch/256 is for 800 epochs).
    all: { backbone: "vit-tiny", optimizer: "adamw", lr: 1e-3, weightDecay: 0.05, cropScale: [0.2, 1] },
    quick: { warmupEpochs: 0.25 },
    // the reference's schedule: blr 1.5e-4 x batch / 256, 800 epochs, 40 of warmup
    paper: { lr: 1.5e-4 * (512 / 256), epochs: 800, warmupEpochs: 40 },
  },
  create: (config, inputShape) => {
    const backbone = specBackbone(config, inputShape, { vit: true, method: "mae" });
    return new MAE({
      backbone,
      inputShape,
      maskRatio: methodOption<number>(config, "maskRatio"),
      maskSampling: methodOption<MaskSampling>(config, "maskSampling"),
      normPix: methodOption<boolean>(config, "normPix"),
      decoderDepth: methodOption<number>(config, "decoderDepth"),
      decoderDim: methodOption<number>(config, "decoderDim"),
      cropScale: config.cropScale,
      seed: config.seed,
    });
  },
});
