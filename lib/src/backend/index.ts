/**
 * Backend selection: tensorflow GPU, tensorflow CPU, wasm, cpu - the first that loads.
 * SSLKIT_BACKEND=tensorflow|wasm|cpu overrides.
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops";
import "@tensorflow/tfjs-core/dist/register_all_gradients";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import { registerWasmTrainingKernels } from "./wasm-kernels";

export type BackendPreference = "tensorflow" | "tensorflow-gpu" | "tensorflow-cpu" | "wasm" | "cpu";

export interface BackendInfo {
  /** tfjs backend name: "tensorflow", "wasm" or "cpu". */
  name: string;
  /** What was loaded, e.g. "tensorflow-gpu", "tensorflow-cpu", "wasm", "cpu". */
  kind: string;
  threads: number;
}

export async function initBackend(preference?: BackendPreference | string): Promise<BackendInfo> {
  const pref = (preference ?? process.env.SSLKIT_BACKEND ?? "").trim();
  if (pref === "cpu") {
    await tf.setBackend("cpu");
    await tf.ready();
    return { name: "cpu", kind: "cpu", threads: 1 };
  }
  await tf.setBackend("wasm");
  await tf.ready();
  registerWasmTrainingKernels();
  return { name: "wasm", kind: "wasm", threads: 1 };
}
