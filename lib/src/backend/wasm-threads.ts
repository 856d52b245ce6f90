/**
 * Multi-threaded tfjs wasm backend in Node.
 *
 * tfjs-backend-wasm 4.22 reports no thread support whenever it runs in Node (tfjs issue #3830), so it
 * loads the single-threaded SIMD build. Forcing WASM_HAS_MULTITHREAD_SUPPORT loads the threaded
 * build, but three things then break in Node, and this file handles each:
 *  1. Its emscripten pthread workers are created with `new Worker(blob: URL)`; Node's Worker rejects
 *     blob: URLs. -> a global `Worker` factory that starts the bundle's own pthread worker script
 *     (`wasmWorkerContents`, read out of the installed bundle) from source with `eval: true`.
 *  2. That script then loads the main module from a Blob it cannot read synchronously, and the module
 *     code refers to the bundle's top-level names (require$$0 = fs, ..., tslib's __values/__read/...).
 *     -> a prelude in the worker reads the Blob asynchronously and evaluates the module in a scope
 *     that provides those names (also read out of the installed bundle).
 *  3. The XNNPACK pool is capped at emscripten_num_logical_cores() / 2, i.e. os.cpus().length / 2
 *     (1 on a 2-core machine) and at 8 (the prebuilt emscripten pool). -> os.cpus() reports
 *     2 x threads while the module initialises; setThreadsCount(threads) asks for exactly that.
 * Running pthreads call worker.ref(), which would keep the process alive forever (they wait on a
 * futex): the workers here never ref, so a script exits when its own work is done.
 * If any step fails, sslkit falls back to the single-threaded SIMD build with one warning.
 *
 * Both builds also add process 'uncaughtException'/'unhandledRejection' listeners that rethrow,
 * making Node print the whole minified module on any later error: they are removed after init.
 */
import * as tf from "@tensorflow/tfjs-core";
import * as wasmBackend from "@tensorflow/tfjs-backend-wasm";
import * as fs from "node:fs";
import os from "node:os";
import { debuglog } from "node:util";
import { Worker as NodeWorker, type WorkerOptions } from "node:worker_threads";

const debug = debuglog("sslkit");

/** The prebuilt emscripten pool holds 8 pthread workers; XNNPACK can use at most that many. */
export const MAX_WASM_THREADS = 8;
/** Upper bound on the time the threaded module may take to start its workers before sslkit gives up. */
const THREADED_INIT_TIMEOUT_MS = 60_000;
/** Priority tfjs-backend-wasm registers its backend factory with (used when re-registering it). */
const WASM_BACKEND_PRIORITY = 2;
/** The string the worker prelude hands to the pthread script in place of the module Blob. */
const MAIN_SCRIPT_MARKER = "sslkit:wasm-threaded-main-script";

export interface WasmInitResult {
  /** Threads XNNPACK actually uses (1 for the single-threaded build). */
  threads: number;
  simd: boolean;
  /** True when the multi-threaded build is running. */
  threaded: boolean;
  /** Why threads were not used although more than one was asked for, if so. */
  fallbackReason?: string;
}

/** Threads to ask for: SSLKIT_THREADS, else the number of cores; clamped to [1, MAX_WASM_THREADS]. */
export function requestedWasmThreads(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SSLKIT_THREADS?.trim();
  if (raw == null || raw === "") {
    const cores = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
    return Math.min(Math.max(1, cores), MAX_WASM_THREADS);
  }
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`sslkit: SSLKIT_THREADS must be a positive integer (the number of wasm threads), got "${raw}".`);
  }
  if (n > MAX_WASM_THREADS) {
    console.warn(`sslkit: SSLKIT_THREADS=${n} is more than the wasm backend's pool of ${MAX_WASM_THREADS}; using ${MAX_WASM_THREADS}.`);
    return MAX_WASM_THREADS;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Process listeners added by the emscripten module.

type ProcessListenerSnapshot = { uncaughtException: Function[]; unhandledRejection: Function[] };

function snapshotProcessListeners(): ProcessListenerSnapshot {
  return {
    uncaughtException: process.listeners("uncaughtException"),
    unhandledRejection: process.listeners("unhandledRejection"),
  };
}

/** Removes the 'uncaughtException'/'unhandledRejection' listeners added since `before`. */
function removeListenersAddedSince(before: ProcessListenerSnapshot): number {
  let removed = 0;
  for (const listener of process.listeners("uncaughtException")) {
    if (!before.uncaughtException.includes(listener)) {
      process.removeListener("uncaughtException", listener);
      removed++;
    }
  }
  for (const listener of process.listeners("unhandledRejection")) {
    if (!before.unhandledRejection.includes(listener)) {
      process.removeListener("unhandledRejection", listener);
      removed++;
    }
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------
// Pieces of the installed tfjs-backend-wasm bundle the pthread workers need.

interface ThreadedBundleParts {
  bundlePath: string;
  /** The emscripten pthread worker script (the bundle's `wasmWorkerContents`). */
  workerScript: string;
  /** Top-level bundle declarations the module code refers to: `var require$$N = require(...)`, tslib helpers. */
  bundleScope: string;
}

let bundlePartsCache: ThreadedBundleParts | undefined;

/** Reads the worker script and the module's top-level scope out of the installed node bundle. */
function readThreadedBundleParts(): ThreadedBundleParts {
  if (bundlePartsCache) return bundlePartsCache;
  const bundlePath = require.resolve("@tensorflow/tfjs-backend-wasm");
  const source = fs.readFileSync(bundlePath, "utf8");
  const literal = /^var wasmWorkerContents = ("(?:[^"\\\n]|\\.)*");$/m.exec(source);
  if (!literal) throw new Error(`no pthread worker script (wasmWorkerContents) found in ${bundlePath}`);
  // As tfjs does before making its Blob: "\n" escapes inside the script's own strings must stay escaped.
  const workerScript = (JSON.parse(literal[1]) as string).replace(/\n/g, "\\n");
  const requires = source.match(/^var require\$\$\d+ = require\('[\w:/-]+'\);$/gm) ?? [];
  const helpers = source.match(/^function __\w+\([^)]*\) \{\n[\s\S]*?\n\}$/gm) ?? [];
  if (requires.length === 0 || helpers.length === 0) {
    throw new Error(`unexpected layout of ${bundlePath}: module-scope requires or tslib helpers not found`);
  }
  bundlePartsCache = { bundlePath, workerScript, bundleScope: [...requires, ...helpers].join("\n") };
  return bundlePartsCache;
}

/**
 * Source of one pthread worker: a prelude, then tfjs' own worker script. The prelude hands the script
 * a parentPort that holds messages back while the module Blob of a "load" message is read (Node can
 * only read a Blob asynchronously), evaluates the module with the bundle's top-level names in scope,
 * and lets the script's importScripts() skip the marker that stands in for the Blob.
 */
function pthreadWorkerSource(parts: ThreadedBundleParts): string {
  return `"use strict";
const nodeRequire = require; // the script below replaces the global require with requireForScript
const realThreads = nodeRequire("worker_threads");
const realPort = realThreads.parentPort;
const messageListeners = [];
const heldPort = {
  on(event, listener) { if (event === "message") messageListeners.push(listener); else realPort.on(event, listener); return heldPort; },
  postMessage(message, transfer) { realPort.postMessage(message, transfer); },
};
const threadsForScript = Object.assign({}, realThreads, { parentPort: heldPort });
const requireForScript = (id) => (id === "worker_threads" || id === "node:worker_threads" ? threadsForScript : nodeRequire(id));
const BUNDLE_PATH = ${JSON.stringify(parts.bundlePath)};
const MAIN_SCRIPT_MARKER = ${JSON.stringify(MAIN_SCRIPT_MARKER)};
function defineThreadedModule(moduleSource) {
  const body = '"use strict";\\n' + ${JSON.stringify(parts.bundleScope)} + "\\n" + moduleSource + "\\nreturn WasmBackendModuleThreadedSimd;";
  const make = new Function("require", "commonjsGlobal", "_scriptDir", "__filename", "__dirname", body);
  globalThis.WasmBackendModuleThreadedSimd =
    make(requireForScript, globalThis, BUNDLE_PATH, BUNDLE_PATH, nodeRequire("path").dirname(BUNDLE_PATH));
}
let held = null;
function deliver(data) { for (const listener of messageListeners) listener(data); }
realPort.on("message", (data) => {
  if (held) { held.push(data); return; }
  if (data && data.cmd === "load" && typeof data.urlOrBlob !== "string") {
    held = [];
    data.urlOrBlob.text().then((moduleSource) => {
      defineThreadedModule(moduleSource);
      data.urlOrBlob = MAIN_SCRIPT_MARKER;
      const later = held;
      held = null;
      deliver(data);
      for (const next of later) deliver(next);
    }).catch((error) => process.nextTick(() => { throw error; }));
    return;
  }
  deliver(data);
});
(function (require, __filename) {
${parts.workerScript}
})(requireForScript, BUNDLE_PATH);
const scriptImportScripts = globalThis.importScripts;
globalThis.importScripts = (file) => (file === MAIN_SCRIPT_MARKER ? undefined : scriptImportScripts(file));
`;
}

// ---------------------------------------------------------------------------------------------
// The Worker that the threaded module's `new Worker(url)` gets.

interface PthreadWorkerPool {
  workers: NodeWorker[];
  /** Rejects when a worker fails before the module is up (the module would otherwise wait forever). */
  failed: Promise<never>;
  /** After init: worker errors go to emscripten's own handlers again. */
  settle(): void;
  terminateAll(): void;
}

function createPthreadWorkerPool(source: string): { pool: PthreadWorkerPool; WorkerFactory: Function } {
  const workers: NodeWorker[] = [];
  let settled = false;
  let reportFailure: (error: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => {
    reportFailure = reject;
  });
  failed.catch(() => {}); // observed by the race in initThreadedWasm; never an unhandled rejection

  class PthreadWorker extends NodeWorker {
    constructor() {
      // Ref'd until emscripten unrefs it on "loaded", so the process stays up while the pool starts.
      super(source, { eval: true, name: "sslkit-wasm-pthread" } as WorkerOptions);
      // Listen from birth: a worker can fail before emscripten attaches its own 'error' listener,
      // and an 'error' event with no listener would crash the process instead of falling back.
      super.on("error", (error: Error) => {
        if (!settled) reportFailure(error instanceof Error ? error : new Error(String(error)));
        else if (this.listenerCount("error") <= 1) console.warn(`sslkit: wasm worker error: ${error instanceof Error ? error.message : error}`);
      });
    }
    /** Pthreads would ref() themselves while running (forever, for XNNPACK's pool): never keep the process alive. */
    override ref(): void {}
    /** Until the module is up, a worker error means the threaded setup failed: report it, do not throw. */
    override on(event: string | symbol, listener: (...args: any[]) => void): this {
      if (event !== "error") return super.on(event, listener);
      return super.on("error", (error: Error) => {
        if (!settled) reportFailure(error instanceof Error ? error : new Error(String(error)));
        else listener(error);
      });
    }
    override addListener(event: string | symbol, listener: (...args: any[]) => void): this {
      return this.on(event, listener);
    }
  }

  // Called with `new` by emscripten; returning an object from a function constructor hands that object back.
  function WorkerFactory(this: unknown, url: string | URL, options?: WorkerOptions): NodeWorker {
    // tfjs hands emscripten a blob: URL for its pthread script (Node cannot start those anyway).
    const href = String(url);
    if (href.startsWith("blob:") || href.endsWith("tfjs-backend-wasm-threaded-simd.worker.js")) {
      const worker = new PthreadWorker();
      workers.push(worker);
      return worker;
    }
    return new NodeWorker(url, options);
  }

  const pool: PthreadWorkerPool = {
    workers,
    failed,
    settle: () => {
      settled = true;
    },
    terminateAll: () => {
      for (const worker of workers) void worker.terminate();
      workers.length = 0;
    },
  };
  return { pool, WorkerFactory };
}

/** Puts `factory` at globalThis.Worker and keeps it there while the module's own `Worker = node Worker` runs. */
function pinGlobalWorker(factory: Function): () => void {
  Object.defineProperty(globalThis, "Worker", {
    configurable: true,
    enumerable: false,
    get: () => factory,
    set: () => {},
  });
  return function unpin(): void {
    // Leave the factory as a plain global (the threaded module needs it if it ever grows its pool);
    // it starts ordinary Node workers for any URL that is not an emscripten pthread script.
    Object.defineProperty(globalThis, "Worker", { configurable: true, enumerable: false, writable: true, value: factory });
  };
}

/** Makes os.cpus() report `count` entries (emscripten_num_logical_cores reads it); returns the undo. */
function reportLogicalCores(count: number): () => void {
  const original = os.cpus;
  const real = original();
  const fake = Array.from({ length: count }, (_, i) => real[i % Math.max(1, real.length)]);
  (os as { cpus: typeof os.cpus }).cpus = () => fake;
  return () => {
    (os as { cpus: typeof os.cpus }).cpus = original;
  };
}

/** True when this Node can run wasm threads at all: SharedArrayBuffer and the atomics opcodes. */
function nodeSupportsWasmThreads(): boolean {
  if (typeof SharedArrayBuffer === "undefined") return false;
  try {
    // From wasm-feature-detect, as tfjs uses: a module with a shared memory and an atomic op.
    return WebAssembly.validate(
      new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 5, 4, 1, 3, 1, 1, 10, 11, 1, 9, 0, 65, 0, 254, 16, 2, 0, 26, 11]),
    );
  } catch {
    return false;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    // Ref'd on purpose: while the module starts, this timer keeps the process from exiting under it.
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Test hook: SSLKIT_WASM_THREADS_FAULT=worker makes every pthread worker fail to start (checks the fallback). */
function faultInjectedSource(source: string): string {
  return process.env.SSLKIT_WASM_THREADS_FAULT === "worker"
    ? `throw new Error("injected pthread worker failure (SSLKIT_WASM_THREADS_FAULT=worker)");\n${source}`
    : source;
}

/** Tries the threaded SIMD build with `threads` threads; throws (after cleaning up) if it cannot start. */
async function initThreadedWasm(threads: number): Promise<number> {
  if (!nodeSupportsWasmThreads()) throw new Error("this Node has no SharedArrayBuffer / wasm atomics");
  const source = faultInjectedSource(pthreadWorkerSource(readThreadedBundleParts()));
  const { pool, WorkerFactory } = createPthreadWorkerPool(source);
  const factory = tf.findBackendFactory("wasm");
  if (factory == null) throw new Error("the wasm backend is not registered");

  const unpinWorker = pinGlobalWorker(WorkerFactory);
  const restoreCpus = reportLogicalCores(2 * threads);
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  wasmBackend.setThreadsCount(threads);
  try {
    const ok = await withTimeout(Promise.race([tf.setBackend("wasm"), pool.failed]), THREADED_INIT_TIMEOUT_MS, "starting the wasm pthread workers");
    if (!ok) throw new Error("tfjs could not initialise the threaded wasm module");
    pool.settle();
    return wasmBackend.getThreadsCount();
  } catch (error) {
    // Drop the half-started module and register the untouched factory again for the single-threaded build.
    pool.terminateAll();
    if (tf.findBackendFactory("wasm") != null) tf.removeBackend("wasm");
    tf.registerBackend("wasm", factory, WASM_BACKEND_PRIORITY);
    tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
    wasmBackend.setThreadsCount(1);
    throw error;
  } finally {
    restoreCpus();
    unpinWorker();
  }
}

let wasmInitCache: Promise<WasmInitResult> | undefined;

/**
 * Initialises and activates the tfjs wasm backend with `threads` threads (threaded SIMD build when
 * threads > 1, falling back to the single-threaded build with one warning). Idempotent: later calls
 * just make wasm the active backend again and return the first result.
 */
export function initWasmBackend(threads: number): Promise<WasmInitResult> {
  if (!wasmInitCache) {
    wasmInitCache = initWasmBackendOnce(threads).catch((error) => {
      wasmInitCache = undefined;
      throw error;
    });
    return wasmInitCache;
  }
  return wasmInitCache.then(async (result) => {
    if (tf.getBackend() !== "wasm" && !(await tf.setBackend("wasm"))) throw new Error("could not switch back to the wasm backend");
    return result;
  });
}

async function initWasmBackendOnce(threads: number): Promise<WasmInitResult> {
  const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
  const before = snapshotProcessListeners();
  try {
    if (tf.engine().registry.wasm != null) {
      // Someone initialised wasm before sslkit (e.g. a tf op ran first): keep it, report what it runs.
      await tf.setBackend("wasm");
      const actual = wasmBackend.getThreadsCount();
      return { threads: actual, simd: Boolean(simd), threaded: actual > 1 };
    }
    let fallbackReason: string | undefined;
    if (threads > 1 && simd) {
      try {
        const actual = await initThreadedWasm(threads);
        return { threads: actual, simd: true, threaded: true };
      } catch (error) {
        fallbackReason = error instanceof Error ? error.message : String(error);
        debug("threaded wasm setup failed: %s", error instanceof Error ? error.stack : error);
        removeListenersAddedSince(before);
        console.warn(
          `sslkit: multi-threaded wasm backend unavailable (${fallbackReason}); using the single-threaded build. ` +
            `Set SSLKIT_THREADS=1 to skip trying.`,
        );
      }
    } else if (threads > 1) {
      fallbackReason = "the threaded wasm build needs SIMD, which this Node lacks";
    }
    tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
    if (!(await tf.setBackend("wasm"))) throw new Error("tfjs could not initialise the wasm backend (see the warning above)");
    return { threads: wasmBackend.getThreadsCount(), simd: Boolean(simd), threaded: false, fallbackReason };
  } finally {
    removeListenersAddedSince(before);
  }
}
