/** SimCLR in the method registry: the shared options (temperature, projection sizes, crop scale) are all it needs. */
import { createBackbone } from "../../nn";
import type { BackboneName } from "../../nn";
import { registerMethod } from "../registry";
import { SimCLR } from "../simclr";

export const simclrSpec = registerMethod({
  name: "simclr",
  summary: "SimCLR (Chen et al. 2020): NT-Xent over two views of each image",
  options: [],
  defaults: {},
  create: (config, inputShape) =>
    new SimCLR({
      backbone: createBackbone(config.backbone as BackboneName, { inputShape, seed: config.seed }),
      inputShape,
      temperature: config.temperature,
      projectionHiddenDim: config.projectionHiddenDim,
      projectionDim: config.projectionDim,
      cropScale: config.cropScale,
      seed: config.seed,
    }),
});
