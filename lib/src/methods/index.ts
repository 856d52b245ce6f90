/** Self-supervised methods: each a short composition of backbone, heads, loss and views. */
export * from "./types";
export * from "./registry";
export * from "./simclr";
export * from "./specs";
export * from "./byol";
export * from "./sit";
export * from "./mae";
export * from "./moco";
export * from "./moco-v3";
