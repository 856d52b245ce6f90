/**
 * Backend selection. With no preference, the first of these that loads:
 *   1. TensorFlow on an NVIDIA GPU  (@tensorflow/tfjs-node-gpu, optional dependency)
 *   2. TensorFlow on the CPU        (@tensorflow/tfjs-node, optional dependency)
 *   3. wasm, multi-threaded SIMD    (@tensorflow/tfjs-backend-wasm; SSLKIT_THREADS threads, default: cores),
 *      with its matrix products and convolutions on OpenBLAS where the optional sslkit-native
 *      addon built (backend/native-kernels; SSLKIT_NATIVE=0 turns it off)
 *   4. cpu, plain JavaScript        (@tensorflow/tfjs-backend-cpu)
 * A preference passed to initBackend wins; otherwise SSLKIT_BACKEND=tensorflow|tensorflow-gpu|
 * tensorflow-cpu|wasm|cpu overrides the order. A requested backend that cannot load is an Error.
 * NODE_DEBUG=sslkit prints why each candidate was skipped.
 */
import * as tf from "@tensorflow/tfjs-core";
// Gradients and chained tensor methods: tfjs-core ships them only as extensionless ES modules,
// which plain Node (tslab, the CLI) cannot load. The @tensorflow/tfjs bundle registers them
// (CommonJS) into tfjs's global registries, which @tensorflow/tfjs-core shares.
import "@tensorflow/tfjs";
// Types only (erased at run time): the chained-op methods on tf.Tensor.
import type {} from "@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { debuglog } from "node:util";
import { registerWasmTrainingKernels } from "./wasm-kernels";
import { loadNativeKernels, registerNativeKernels, requestedWinogradTile } from "./native-kernels";
import { initWasmBackend, requestedWasmThreads } from "./wasm-threads";

export type BackendPreference = "tensorflow" | "tensorflow-gpu" | "tensorflow-cpu" | "wasm" | "cpu";
export type BackendKind = "tensorflow-gpu" | "tensorflow-cpu" | "wasm" | "cpu";

export interface BackendInfo {
  /** tfjs backend name: "tensorflow", "wasm" or "cpu". */
  name: string;
  /** What was loaded: "tensorflow-gpu", "tensorflow-cpu", "wasm" or "cpu". */
  kind: BackendKind;
  /** Compute threads sslkit set up (wasm); 1 for cpu; 0 where TensorFlow manages its own pool. */
  threads: number;
  /** wasm only: whether the SIMD build runs. */
  simd?: boolean;
  /** wasm only: the BLAS behind sslkit-native's matrix-product and convolution kernels, when they run. */
  native?: string;
  /**
   * wasm with `native` only: threads of wasm's own kernels (1). The native kernels run on `threads`;
   * wasm's pool workers spin between ops and took CPU from them (SimCLR step 1.40 s with a 2-thread
   * pool beside 2 native threads, 1.30 s with 1), and the ops left to wasm are light.
   */
  wasmThreads?: number;
}

const BACKEND_PREFERENCES: readonly BackendPreference[] = ["tensorflow", "tensorflow-gpu", "tensorflow-cpu", "wasm", "cpu"];
const TFJS_NODE_GPU = "@tensorflow/tfjs-node-gpu";
const TFJS_NODE = "@tensorflow/tfjs-node";
const HOW_TO_GET_TENSORFLOW =
  `To get TensorFlow: \`npm install ${TFJS_NODE}@${tf.version_core}\` (CPU), or ` +
  `\`npm install ${TFJS_NODE_GPU}@${tf.version_core}\` (NVIDIA GPU; Linux x64 or Windows x64 with an NVIDIA driver >= 450, ` +
  `CUDA 11.x (11.2 to 11.8) and cuDNN 8 on the library path). Both download libtensorflow at install time.`;

const debug = debuglog("sslkit");

// ---------------------------------------------------------------------------------------------
// Public API

let queue: Promise<unknown> = Promise.resolve();
const resolved = new Map<string, BackendInfo>();

/**
 * Picks, initialises and activates a backend (see the file comment for the order) and returns what
 * runs. Cheap to call again: a choice already made is reused (only re-activated if another backend
 * was set in between). Throws an Error naming what is installed when a requested backend cannot load.
 */
export function initBackend(preference?: BackendPreference | string): Promise<BackendInfo> {
  const run = queue.then(() => initBackendSerial(preference));
  queue = run.catch(() => {});
  return run;
}

/** One line for logs: "backend wasm (simd, 2 threads)", "backend tensorflow (gpu)", "backend cpu (1 thread)". */
export function describeBackend(info: BackendInfo): string {
  switch (info.kind) {
    case "wasm": {
      const threads = `${info.threads} thread${info.threads === 1 ? "" : "s"}`;
      const native = info.native ? `, ${info.native} kernels` : "";
      return `backend wasm (${info.simd === false ? "no simd" : "simd"}, ${threads}${native})`;
    }
    case "tensorflow-gpu":
      return "backend tensorflow (gpu)";
    case "tensorflow-cpu":
      return "backend tensorflow (cpu)";
    default:
      return `backend ${info.name} (${info.threads} thread${info.threads === 1 ? "" : "s"})`;
  }
}

// ---------------------------------------------------------------------------------------------
// Selection

async function initBackendSerial(preference?: string): Promise<BackendInfo> {
  const { choice, source } = parsePreference(preference);
  const cached = resolved.get(choice);
  if (cached) {
    if (tf.getBackend() !== cached.name) await activate(cached);
    return cached;
  }
  const info = choice === "auto" ? await initAutomatic() : await initRequested(choice as BackendPreference, source);
  resolved.set(choice, info);
  resolved.set(info.kind, info);
  if (info.name === "tensorflow") resolved.set("tensorflow", info);
  debug("using %s", describeBackend(info));
  return info;
}

function parsePreference(preference?: string): { choice: BackendPreference | "auto"; source: string } {
  const fromArgument = preference != null && preference.trim() !== "";
  const raw = (fromArgument ? preference : process.env.SSLKIT_BACKEND ?? "").trim().toLowerCase();
  const source = fromArgument ? `initBackend("${preference}")` : `SSLKIT_BACKEND=${process.env.SSLKIT_BACKEND}`;
  if (raw === "" || raw === "auto") return { choice: "auto", source };
  if ((BACKEND_PREFERENCES as readonly string[]).includes(raw)) return { choice: raw as BackendPreference, source };
  throw new Error(
    `sslkit: unknown backend "${fromArgument ? preference : process.env.SSLKIT_BACKEND}" (from ${source}). ` +
      `Valid values: ${BACKEND_PREFERENCES.join(", ")} (or leave it unset to pick automatically). ${installedSummary()}`,
  );
}

async function initAutomatic(): Promise<BackendInfo> {
  const tensorflow = await tryTensorflow("any");
  if (tensorflow.info) return tensorflow.info;
  for (const reason of tensorflow.skipped) debug("skipping tensorflow: %s", reason);
  // A bad SSLKIT_THREADS or SSLKIT_WINOGRAD is an error, not a reason to fall back.
  const threads = requestedWasmThreads();
  const winogradTile = requestedWinogradTile();
  try {
    return await initWasm(threads, winogradTile);
  } catch (error) {
    console.warn(`sslkit: wasm backend failed to load (${errorMessage(error)}); using the plain JavaScript cpu backend.`);
  }
  return initCpu();
}

async function initRequested(choice: BackendPreference, source: string): Promise<BackendInfo> {
  if (choice === "cpu") return initCpu();
  if (choice === "wasm") {
    const threads = requestedWasmThreads();
    const winogradTile = requestedWinogradTile();
    try {
      return await initWasm(threads, winogradTile);
    } catch (error) {
      throw new Error(
        `sslkit: the wasm backend was requested (${source}) but failed to load: ${errorMessage(error)}. ` +
          `Use SSLKIT_BACKEND=cpu for the plain JavaScript backend. ${installedSummary()}`,
      );
    }
  }
  const want = choice === "tensorflow-gpu" ? "gpu" : choice === "tensorflow-cpu" ? "cpu" : "any";
  const tensorflow = await tryTensorflow(want);
  if (tensorflow.info) return tensorflow.info;
  throw new Error(
    `sslkit: the ${choice} backend was requested (${source}) but cannot load: ${tensorflow.skipped.join("; ")}. ` +
      `The wasm and cpu backends are available (leave SSLKIT_BACKEND unset to pick automatically). ${HOW_TO_GET_TENSORFLOW}`,
  );
}

async function activate(info: BackendInfo): Promise<void> {
  if (info.name === "wasm") await initWasmBackend(info.threads);
  else if (!(await tf.setBackend(info.name))) throw new Error(`sslkit: could not switch back to the ${info.name} backend`);
}

async function initCpu(): Promise<BackendInfo> {
  if (!(await tf.setBackend("cpu"))) throw new Error("sslkit: the cpu backend failed to initialise");
  // tfjs-backend-cpu prints a "install tfjs-node" banner on first use in Node; sslkit's own messages cover that.
  (tf.backend() as { firstUse?: boolean }).firstUse = false;
  return { name: "cpu", kind: "cpu", threads: 1 };
}

async function initWasm(threads: number, winogradTile: 0 | 2 | 4): Promise<BackendInfo> {
  const withNative = loadNativeKernels().kernels !== null;
  const result = await initWasmBackend(withNative ? 1 : threads);
  registerWasmTrainingKernels();
  const native = withNative ? registerNativeKernels(threads, winogradTile) : null; // after the training kernels: they are its fallback
  if (!native) return { name: "wasm", kind: "wasm", threads: result.threads, simd: result.simd };
  return { name: "wasm", kind: "wasm", threads, simd: result.simd, native, wasmThreads: result.threads };
}

// ---------------------------------------------------------------------------------------------
// TensorFlow (tfjs-node / tfjs-node-gpu): optional, required lazily.

type PackageState = { state: "absent" } | { state: "installed"; version: string };

function packageState(name: string): PackageState {
  try {
    const manifest = require.resolve(`${name}/package.json`);
    const version = String(JSON.parse(fs.readFileSync(manifest, "utf8")).version ?? "?");
    return { state: "installed", version };
  } catch {
    return { state: "absent" };
  }
}

/** One sentence on what this install can run, for error messages. */
function installedSummary(): string {
  const describe = (name: string) => {
    const pkg = packageState(name);
    return pkg.state === "installed" ? `${name}@${pkg.version} is installed` : `${name} is not installed`;
  };
  return `Here: ${describe(TFJS_NODE_GPU)}, ${describe(TFJS_NODE)}; wasm and cpu are always available.`;
}

/**
 * Whether an NVIDIA GPU is visible: Linux driver entries, else `nvidia-smi -L`.
 * CUDA_VISIBLE_DEVICES="" or "-1" hides every GPU, as it does from TensorFlow.
 */
function nvidiaGpuVisible(): { visible: boolean; how: string } {
  const mask = process.env.CUDA_VISIBLE_DEVICES;
  if (mask != null && (mask.trim() === "" || mask.trim() === "-1")) return { visible: false, how: `CUDA_VISIBLE_DEVICES="${mask}"` };
  try {
    if (fs.readdirSync("/proc/driver/nvidia/gpus").length > 0) return { visible: true, how: "/proc/driver/nvidia/gpus" };
  } catch {
    // no Linux NVIDIA driver entries; ask nvidia-smi
  }
  const smi = spawnSync("nvidia-smi", ["-L"], { encoding: "utf8", timeout: 5000 });
  if (smi.status === 0 && /GPU \d+:/.test(smi.stdout)) return { visible: true, how: "nvidia-smi -L" };
  return { visible: false, how: smi.error ? "no NVIDIA driver (nvidia-smi not found)" : "nvidia-smi lists no GPU" };
}

/** Folders of @tensorflow/tfjs-core copies other than sslkit's that have modules loaded in this process. */
function otherLoadedTfjsCoreCopies(): string[] {
  const ours = path.dirname(require.resolve("@tensorflow/tfjs-core/package.json")) + path.sep;
  const others = new Set<string>();
  for (const file of Object.keys(require.cache)) {
    const root = /^(.*[\\/]@tensorflow[\\/]tfjs-core[\\/])/.exec(file)?.[1];
    if (root != null && root !== ours) others.add(root);
  }
  return [...others];
}

/**
 * Requires a tfjs-node package and checks its 'tensorflow' backend landed in OUR tfjs-core engine
 * (tfjs-node brings @tensorflow/tfjs of its own version; a second tfjs-core copy is warned about).
 */
async function loadTensorflowPackage(name: string, kind: BackendKind): Promise<BackendInfo> {
  // Lazy on purpose: the package is optional and loading it loads libtensorflow.
  require(name);
  const copies = otherLoadedTfjsCoreCopies();
  if (copies.length > 0) {
    console.warn(
      `sslkit: loading ${name} also loaded another copy of @tensorflow/tfjs-core (${copies.join(", ")}) next to sslkit's ` +
        `(${tf.version_core}). Tensors from two copies do not mix; install ${name}@${tf.version_core} so npm keeps one copy.`,
    );
  }
  if (tf.findBackendFactory("tensorflow") == null) {
    throw new Error(`it did not register a 'tensorflow' backend in sslkit's @tensorflow/tfjs-core ${tf.version_core}`);
  }
  if (!(await tf.setBackend("tensorflow"))) throw new Error("its 'tensorflow' backend failed to initialise");
  return { name: "tensorflow", kind, threads: 0 };
}

/**
 * Tries tfjs-node-gpu (only where a GPU is visible, unless it is the only TensorFlow package and any
 * TensorFlow will do), then tfjs-node. Not installed: silent (debug). Installed but failing: a warning
 * with the error. Returns why each candidate was skipped when none loads.
 */
async function tryTensorflow(want: "gpu" | "cpu" | "any"): Promise<{ info?: BackendInfo; skipped: string[] }> {
  const skipped: string[] = [];
  if (tf.findBackendFactory("tensorflow") != null && tf.engine().registry.tensorflow != null) {
    // Already loaded earlier in this process (by sslkit under another preference, or by the user).
    const known = resolved.get("tensorflow");
    if (known && (want === "any" || known.kind === `tensorflow-${want}`)) {
      await activate(known);
      return { info: known, skipped };
    }
  }
  const gpuPackage = packageState(TFJS_NODE_GPU);
  const cpuPackage = packageState(TFJS_NODE);
  const candidates: Array<{ name: string; kind: BackendKind }> = [];

  if (want !== "cpu") {
    if (gpuPackage.state === "absent") {
      skipped.push(`${TFJS_NODE_GPU} is not installed`);
    } else {
      const gpu = nvidiaGpuVisible();
      if (gpu.visible) {
        debug("NVIDIA GPU visible (%s)", gpu.how);
        candidates.push({ name: TFJS_NODE_GPU, kind: "tensorflow-gpu" });
      } else if (want === "any" && cpuPackage.state === "absent") {
        // tfjs-node-gpu still runs, on the CPU: say so, and call it what it is.
        console.warn(`sslkit: ${TFJS_NODE_GPU} is installed but no NVIDIA GPU is visible (${gpu.how}); TensorFlow will run on the CPU.`);
        candidates.push({ name: TFJS_NODE_GPU, kind: "tensorflow-cpu" });
      } else {
        skipped.push(`${TFJS_NODE_GPU} is installed but no NVIDIA GPU is visible (${gpu.how})`);
      }
    }
  }
  if (want !== "gpu") {
    if (cpuPackage.state === "absent") skipped.push(`${TFJS_NODE} is not installed`);
    else candidates.push({ name: TFJS_NODE, kind: "tensorflow-cpu" });
  }

  for (const candidate of candidates) {
    try {
      return { info: await loadTensorflowPackage(candidate.name, candidate.kind), skipped };
    } catch (error) {
      const reason = `${candidate.name} is installed but failed to load: ${errorMessage(error)}`;
      console.warn(`sslkit: ${reason}`);
      skipped.push(reason);
      // Both packages register the same 'tensorflow' backend name: after one was required, the other cannot be.
      if (tf.findBackendFactory("tensorflow") != null) break;
    }
  }
  return { skipped };
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
