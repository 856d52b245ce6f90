/**
 * BYOL in the method registry. Options: the target momentum tau_base (`--target-momentum`,
 * `--no-target-network` = tau_base 0) and `--no-predictor`, the arms of BYOL's Table 5.
 *
 * Optimiser: the paper trains with LARS at lr 0.2 x B/256 (B = 4096, 300-1000 epochs); the paper
 * preset keeps LARS. The smoke and quick presets keep the shared AdamW 1e-3 recipe that sslkit's
 * SimCLR quick run validated on this backbone, data and batch: at a few hundred to a thousand
 * steps of batch 128 a large-batch LARS schedule has no room to warm up, and BYOL is no more
 * sensitive to the optimiser than SimCLR at that scale. tau_base 0.99 rather than the paper's
 * 0.996: with a few hundred steps the target's EMA horizon 1 / (1 - tau) must be well below the
 * run's length (0.996 is 250 steps, most of a quick run).
 */
import { createBackbone } from "../../nn";
import type { BackboneName } from "../../nn";
import type { RunConfig } from "../../presets";
import { BYOL } from "../byol";
import { methodOption, registerMethod } from "../registry";

export const byolSpec = registerMethod({
  name: "byol",
  summary: "BYOL (Grill et al. 2020): predict the EMA target's projection of the other view, no negatives",
  options: [
    {
      key: "targetMomentum",
      flag: "target-momentum",
      type: "number",
      min: 0,
      max: 1,
      help: "target EMA tau_base, cosine to 1 (0 = no target network, 1 = fixed random target)",
    },
    {
      key: "targetMomentum",
      flag: "no-target-network",
      type: "set",
      value: 0,
      help: "the target is the online network under a stop-gradient (= --target-momentum 0)",
    },
    { key: "predictor", flag: "no-predictor", type: "set", value: false, help: "no predictor (q = identity): the collapse ablation" },
  ],
  defaults: { targetMomentum: 0.99, predictor: true },
  presets: {
    all: { projectionHiddenDim: 1024, projectionDim: 256 },
    // BYOL's heads and schedule (sec. 3.2 / App. C): 4096 -> 256, LARS lr 0.2 x B/256, wd 1.5e-6, tau_base 0.996.
    paper: {
      projectionHiddenDim: 4096,
      projectionDim: 256,
      optimizer: "lars",
      lr: 0.2 * (512 / 256),
      weightDecay: 1.5e-6,
      warmupEpochs: 10,
      methodOptions: { targetMomentum: 0.996 },
    },
    // BYOL's step costs ~1.3 SimCLR steps (the target's forward pass): 2 epochs keep the run near 30 min here.
    quick: { epochs: 2 },
  },
  create: (config: RunConfig, inputShape) => {
    const tauBase = methodOption<number>(config, "targetMomentum");
    const backbone = () => createBackbone(config.backbone as BackboneName, { inputShape, seed: config.seed });
    return new BYOL({
      backbone: backbone(),
      targetBackbone: tauBase > 0 ? backbone() : undefined,
      inputShape,
      targetMomentum: tauBase,
      predictor: methodOption<boolean>(config, "predictor"),
      projectionHiddenDim: config.projectionHiddenDim,
      projectionDim: config.projectionDim,
      cropScale: config.cropScale,
      seed: config.seed,
    });
  },
});
