/**
 * SiT / GMML in the method registry: `sslkit train sit --corruption zeros|noise|replace|zeros+replace|noise+replace
 * --corruption-ratio r [--no-contrastive] [--alpha A] [--momentum M]`. The backbone must be a ViT (vit-tiny by default).
 */
import { GMML_CORRUPTION_TYPES } from "../../augment/gmml";
import type { GmmlCorruptionType } from "../../augment/gmml";
import { methodOption, registerMethod, specBackbone } from "../registry";
import { SiT } from "../sit";

export const sitSpec = registerMethod({
  name: "sit",
  summary: "SiT / GMML (Atito et al. 2021): reconstruct corrupted pixel groups + a contrastive token (ViT backbones)",
  options: [
    { key: "corruption", flag: "corruption", type: "enum", choices: GMML_CORRUPTION_TYPES, help: "GMML corruption type (default noise+replace)" },
    { key: "corruptionRatio", flag: "corruption-ratio", type: "number", min: 0, exclusiveMin: true, max: 0.95, help: "share of pixels corrupted, 0 < r <= 0.95 (default 0.5)" },
    { key: "contrastive", flag: "no-contrastive", type: "set", value: false, help: "reconstruction only: no contrastive token / momentum teacher" },
    { key: "alpha", flag: "alpha", type: "number", min: 0, exclusiveMin: true, help: "weight of the reconstruction loss (default 5, the paper's for small data)" },
    { key: "momentum", flag: "momentum", type: "number", min: 0, max: 1, help: "base EMA momentum of the teacher, cosine to 1 (default 0.996)" },
  ],
  defaults: { corruption: "noise+replace", corruptionRatio: 0.5, contrastive: true, alpha: 5, momentum: 0.996 },
  presets: {
    // The paper's optimiser (Adam(W), weight decay 0.05, tau 0.2) with a learning rate for short
    // runs; on a few hundred steps the teacher's EMA starts at 0.99 (0.996 follows too slowly).
    all: { backbone: "vit-tiny", temperature: 0.2, lr: 1e-3, weightDecay: 0.05 },
    smoke: { methodOptions: { momentum: 0.99 } },
    quick: { warmupEpochs: 0.25, methodOptions: { momentum: 0.99 } },
  },
  create: (config, inputShape) => {
    const backbone = specBackbone(config, inputShape, { vit: true, method: "sit" });
    return new SiT({
      backbone,
      inputShape,
      corruption: methodOption<GmmlCorruptionType>(config, "corruption"),
      corruptionRatio: methodOption<number>(config, "corruptionRatio"),
      contrastive: methodOption<boolean>(config, "contrastive"),
      alpha: methodOption<number>(config, "alpha"),
      momentum: methodOption<number>(config, "momentum"),
      temperature: config.temperature,
      projectionHiddenDim: config.projectionHiddenDim,
      projectionDim: config.projectionDim,
      cropScale: config.cropScale,
      seed: config.seed,
    });
  },
});
