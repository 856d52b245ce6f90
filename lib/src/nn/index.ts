export * from "./module";
export * from "./backbone";
export * as fastOps from "./fast-ops";
