/** sslkit: self-supervised visual representation learning on TensorFlow.js. */
export * as tf from "@tensorflow/tfjs-core";
export * from "./random";
export * from "./backend";
export * from "./nn";
export * from "./data";
export * from "./augment";
export * from "./losses";
export * from "./eval";
export * from "./train";
export * from "./methods";
export * from "./viz";
export * from "./presets";
export * from "./train/key-queue";
export * from "./nn/split-batch-norm";
export * from "./sweep";
