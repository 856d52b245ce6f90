export * from "./module";
export * from "./backbone";
export * as fastOps from "./fast-ops";
export * from "./init";
export * from "./layers";
export * from "./resnet";
export * from "./vit";
export * from "./heads";
export * from "./dino-head";
export * from "./recon-head";
export * from "./mae-decoder";
export * from "./no-grad";

import { Rng } from "../random";
import { Backbone } from "./backbone";
import { resnet18, resnetSmall, resnetTiny } from "./resnet";
import { vitSmall16, vitTiny } from "./vit";

/** Names accepted by `createBackbone`. */
export type BackboneName = "resnet-tiny" | "resnet-small" | "resnet18" | "vit-tiny" | "vit-s16";

export const backboneNames: readonly BackboneName[] = ["resnet-tiny", "resnet-small", "resnet18", "vit-tiny", "vit-s16"];

export interface CreateBackboneOptions {
  /** Input [height, width, channels]. */
  inputShape: [number, number, number];
  seed?: number;
  rng?: Rng;
}

/** Builds a backbone by name for images of `inputShape`, initialised from `seed` (default 0) or `rng`. */
export function createBackbone(name: BackboneName, opts: CreateBackboneOptions): Backbone {
  const shape = opts?.inputShape;
  if (!Array.isArray(shape) || shape.length !== 3 || shape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new Error(`createBackbone: inputShape must be [height, width, channels] of positive integers, got ${JSON.stringify(shape)}`);
  }
  const [h, w, c] = shape;
  const rng = opts.rng ?? new Rng(opts.seed ?? 0);
  switch (name) {
    case "resnet-tiny":
      return resnetTiny({ inChannels: c, rng });
    case "resnet-small":
      return resnetSmall({ inChannels: c, rng });
    case "resnet18":
      return resnet18({ inChannels: c, rng });
    case "vit-tiny":
      return vitTiny({ imageSize: [h, w], inChannels: c, rng });
    case "vit-s16":
      return vitSmall16({ imageSize: [h, w], inChannels: c, rng });
    default:
      throw new Error(`createBackbone: unknown backbone '${name as string}' (expected one of ${backboneNames.join(", ")})`);
  }
}
