/** Training: optimisers, schedules, EMA, checkpoints, metrics and the trainer. */
export * from "./optimizers";
export * from "./schedules";
export * from "./ema";
export * from "./seed";
export * from "./checkpoint";
export * from "./metrics";
export * from "./trainer";
