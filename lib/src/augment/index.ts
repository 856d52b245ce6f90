/** Batched, seeded image augmentations ([N,H,W,C] float32 in [0,1], C = 1 or 3) and SSL view recipes. */
export * from "./compose";
export * from "./crop";
export * from "./flip";
export * from "./color";
export * from "./color-jitter";
export * from "./grayscale";
export * from "./blur";
export * from "./solarize";
export * from "./normalize";
export * from "./recipes";
export * from "./mixing";
export * from "./gmml";
export * from "./patch-masking";
