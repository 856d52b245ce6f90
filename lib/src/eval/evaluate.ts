/**
 * One call that scores a representation the two standard ways (weighted k-NN and a linear
 * probe), for a learned encoder, a random encoder, precomputed features or raw pixels.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Backbone } from "../nn/backbone";
import type { ImageDataset } from "../data/types";
import { EvalImageTransform, extractFeatures, rawPixelFeatures } from "./features";
import { KnnOptions, knnAccuracy } from "./knn";
import { inferNumClasses } from "./labels";
import { LinearProbeOptions, LinearProbeResult, linearProbe } from "./linear-probe";

export interface EvaluateRepresentationOptions {
  /** Encoder to evaluate (frozen; extracted in eval mode). */
  backbone?: Backbone;
  /** Precomputed features instead of a backbone (not disposed). Neither given: raw pixels. */
  features?: { train: tf.Tensor2D; test: tf.Tensor2D };
  train: ImageDataset;
  test: ImageDataset;
  /** Feature-extraction batch size (default 256) and preprocessing for the backbone. */
  batchSize?: number;
  transform?: EvalImageTransform;
  /** k-NN options, or false to skip (knnTop1 is then NaN). */
  knn?: KnnOptions | false;
  /** Linear-probe options, or false to skip (linearTop1 is then NaN). */
  probe?: LinearProbeOptions | false;
}

export interface RepresentationScores {
  knnTop1: number;
  linearTop1: number;
  /** Where the features came from. */
  source: "backbone" | "features" | "raw-pixels";
  featureDim: number;
  probe?: LinearProbeResult;
  seconds: { features: number; knn: number; probe: number };
}

export async function evaluateRepresentation(opts: EvaluateRepresentationOptions): Promise<RepresentationScores> {
  const { train, test } = opts;
  if (!train || !test) throw new Error("evaluateRepresentation: train and test datasets are required");
  if (opts.backbone && opts.features) throw new Error("evaluateRepresentation: give either backbone or features, not both");
  const t0 = performance.now();
  let trainF: tf.Tensor2D;
  let testF: tf.Tensor2D;
  let source: RepresentationScores["source"];
  if (opts.features) {
    ({ train: trainF, test: testF } = opts.features);
    source = "features";
    if (trainF.shape[0] !== train.count || testF.shape[0] !== test.count) {
      throw new Error(`evaluateRepresentation: features have ${trainF.shape[0]}/${testF.shape[0]} rows but the datasets have ${train.count}/${test.count} images`);
    }
  } else if (opts.backbone) {
    const extractOpts = { batchSize: opts.batchSize, transform: opts.transform };
    trainF = await extractFeatures(opts.backbone, train, extractOpts);
    try {
      testF = await extractFeatures(opts.backbone, test, extractOpts);
    } catch (e) {
      trainF.dispose();
      throw e;
    }
    source = "backbone";
  } else {
    trainF = rawPixelFeatures(train);
    testF = rawPixelFeatures(test);
    source = "raw-pixels";
  }
  const trainY = Int32Array.from(train.labels);
  const testY = Int32Array.from(test.labels);
  const numClasses = Math.max(train.classNames.length, inferNumClasses(trainY, testY));
  const t1 = performance.now();
  try {
    const knnTop1 = opts.knn === false ? NaN : knnAccuracy(trainF, trainY, testF, testY, { numClasses, ...opts.knn });
    const t2 = performance.now();
    const probe = opts.probe === false ? undefined : await linearProbe(trainF, trainY, testF, testY, { numClasses, ...opts.probe });
    const t3 = performance.now();
    return {
      knnTop1,
      linearTop1: probe ? probe.top1 : NaN,
      source,
      featureDim: trainF.shape[1],
      probe,
      seconds: { features: (t1 - t0) / 1000, knn: (t2 - t1) / 1000, probe: (t3 - t2) / 1000 },
    };
  } finally {
    if (source !== "features") tf.dispose([trainF, testF]);
  }
}
