/** Visualisation: Vega-Lite charts rendered in Node, notebook display, t-SNE / UMAP, image galleries. */
export * from "./charts";
export * from "./render";
export * from "./display";
export * from "./gallery";
export * from "./attention";
export * from "./heatmap";
export { tsne, tsneAffinities, tsneKlDivergence } from "./tsne";
export type { TsneOptions, TsneResult, TsneAffinities } from "./tsne";
export { umapProject } from "./umap";
export type { UmapProjectOptions } from "./umap";
export { exactKnnGraph } from "./knn-graph";
export type { KnnGraph, KnnComputeMethod } from "./knn-graph";
export type { ProjectionInput } from "./matrix-input";
