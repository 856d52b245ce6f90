/** Evaluation of frozen representations: feature extraction, weighted k-NN, linear probe, collapse monitor. */
export { extractFeatures, rawPixelFeatures } from "./features";
export type { EvalImageTransform, ExtractFeaturesOptions } from "./features";
export { knnPredict, knnAccuracy } from "./knn";
export type { KnnOptions } from "./knn";
export { linearProbe } from "./linear-probe";
export type { LinearProbeOptions, LinearProbeResult } from "./linear-probe";
export { collapseScore, CollapseMonitor } from "./collapse";
export type { CollapseMonitorOptions, CollapseRecord } from "./collapse";
export { evaluateRepresentation } from "./evaluate";
export type { EvaluateRepresentationOptions, RepresentationScores } from "./evaluate";
export type { EvalLabels } from "./labels";
