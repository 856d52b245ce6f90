/**
 * Registers the built-in methods (one file a method family). Importing `sslkit` (or `./methods`)
 * loads this, so `getMethodSpec("moco-v1")` and `sslkit train moco-v1` find them.
 */
export * from "./simclr";
export * from "./dino";
export * from "./moco";
export * from "./sit";
export * from "./byol";
export * from "./mae";
