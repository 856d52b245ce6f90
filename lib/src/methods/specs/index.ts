/**
 * Registers the built-in methods (one file a method family). Importing `sslkit` (or `./methods`)
 * loads this, so `getMethodSpec("moco-v1")` and `sslkit train moco-v1` find them.
 */
export * from "./simclr";
export * from "./byol";
export * from "./sit";
export * from "./mae";
export * from "./moco";
