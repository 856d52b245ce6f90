/** Self-supervised methods: each a short composition of backbone, heads, loss and views. */
export * from "./types";
export * from "./registry";
export * from "./simclr";
export * from "./dino";
export * from "./moco";
export * from "./moco-v3";
export * from "./sdmp";
export * from "./sit";
export * from "./byol";
export * from "./mae";
export * from "./specs";
