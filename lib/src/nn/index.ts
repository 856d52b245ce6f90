export * from "./module";
export * as fastOps from "./fast-ops";
