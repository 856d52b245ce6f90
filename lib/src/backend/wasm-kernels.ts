/**
 * Kernels the wasm backend lacks or gets wrong for training, registered on the wasm backend.
 * (Filled in by the wasm-kernels work; `registerWasmTrainingKernels` must be idempotent.)
 */
export function registerWasmTrainingKernels(): void {}
