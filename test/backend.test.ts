/**
 * Backend selection from a fresh process each time (initialisation happens once per process):
 * the default choice and thread count, SSLKIT_THREADS / SSLKIT_BACKEND, clear errors, the threaded
 * fallback, tfjs-node loading (with stand-in packages on NODE_PATH), readable error stacks after
 * init, wasm-threads numbers against the cpu backend, and that every child exits by itself.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MAX_WASM_THREADS } from "../lib/src/backend/wasm-threads";
import { initBackend, describeBackend } from "../lib/src/backend";
import { blasName, loadNativeKernels } from "../lib/src/backend/native-kernels";
import * as tf from "@tensorflow/tfjs-core";

const REPO = path.resolve(__dirname, "..");
const BACKEND_SOURCE = path.join(REPO, "lib/src/backend/index.ts");
const TFJS_CORE = require.resolve("@tensorflow/tfjs-core");
const TFJS_CPU = require.resolve("@tensorflow/tfjs-backend-cpu");
/** A child that has not exited this long after starting is kept alive by something (or hung). */
const CHILD_TIMEOUT_MS = 45_000;
const CORES = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;

interface ChildResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** True when the child had to be killed: it did not exit by itself. */
  timedOut: boolean;
}

/** Variables of the parent that would change the child's choice. */
const CLEARED_ENV = ["SSLKIT_BACKEND", "SSLKIT_THREADS", "SSLKIT_WASM_THREADS_FAULT", "SSLKIT_NATIVE", "SSLKIT_WINOGRAD", "NODE_DEBUG", "NODE_PATH"];

// At most 3 children at once: each starts tfjs and up to 8 wasm worker threads on a small machine.
let running = 0;
const waiting: Array<() => void> = [];
async function withChildSlot<T>(f: () => Promise<T>): Promise<T> {
  if (running >= 3) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await f();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** Runs `code` (CommonJS, may require .ts) in `node --import tsx -e`, never calling process.exit. */
function runChild(code: string, env: Record<string, string> = {}): Promise<ChildResult> {
  return withChildSlot(
    () =>
      new Promise((resolve) => {
        const childEnv: NodeJS.ProcessEnv = { ...process.env };
        for (const name of CLEARED_ENV) delete childEnv[name];
        Object.assign(childEnv, env);
        const child = spawn(process.execPath, ["--import", "tsx", "-e", code], { cwd: REPO, env: childEnv });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          child.kill("SIGKILL");
        }, CHILD_TIMEOUT_MS);
        child.on("close", (exitCode) => {
          clearTimeout(timer);
          resolve({ code: exitCode, stdout, stderr, timedOut });
        });
      }),
  );
}

/** Child code: initBackend() twice, then one JSON line about what runs. `extra` runs after, with `tf` and `info` in scope. */
function reportScript(extra = ""): string {
  return `
const listenersBefore = [process.listenerCount("uncaughtException"), process.listenerCount("unhandledRejection")];
const { initBackend, describeBackend } = require(${JSON.stringify(BACKEND_SOURCE)});
const tf = require(${JSON.stringify(TFJS_CORE)});
(async () => {
  const info = await initBackend();
  const again = await initBackend();
  const report = {
    info, description: describeBackend(info), same: again === info, active: tf.getBackend(),
    listenersBefore,
    listenersAfter: [process.listenerCount("uncaughtException"), process.listenerCount("unhandledRejection")],
  };
  ${extra}
  console.log(JSON.stringify(report));
})();`;
}

function parseReport(result: ChildResult): any {
  assert.equal(result.timedOut, false, `child did not exit by itself within ${CHILD_TIMEOUT_MS / 1000} s; stderr:\n${result.stderr}`);
  assert.equal(result.code, 0, `child failed (exit ${result.code}); stderr:\n${result.stderr}`);
  const line = result.stdout.trim().split("\n").pop() ?? "";
  return JSON.parse(line);
}

/** Lines sslkit wrote to stderr (its warnings start with "sslkit:"). */
function sslkitWarnings(stderr: string): string[] {
  return stderr.split("\n").filter((line) => line.startsWith("sslkit:"));
}

/** Writes a stand-in package `name` (index.js = `main`) under a fresh node_modules; returns that folder for NODE_PATH. */
const tempDirs: string[] = [];
after(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function standInPackages(packages: Record<string, string>, nested: Record<string, Record<string, string>> = {}): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "sslkit-backend-test-"));
  tempDirs.push(root);
  const write = (dir: string, name: string, version: string, main: string) => {
    const pkgDir = path.join(dir, name);
    fs.mkdirSync(pkgDir, { recursive: true });
    fs.writeFileSync(path.join(pkgDir, "package.json"), JSON.stringify({ name, version, main: "index.js" }));
    fs.writeFileSync(path.join(pkgDir, "index.js"), main);
  };
  for (const [name, main] of Object.entries(packages)) {
    write(path.join(root, "node_modules"), name, "4.22.0", main);
    for (const [nestedName, nestedMain] of Object.entries(nested[name] ?? {})) {
      write(path.join(root, "node_modules", name, "node_modules"), nestedName, "4.0.0", nestedMain);
    }
  }
  return path.join(root, "node_modules");
}

/**
 * A stand-in tfjs-node: registers a 'tensorflow' backend (really the cpu backend) in sslkit's tfjs-core,
 * and loads "@tensorflow/tfjs-core" as the real one would (a nested copy, where the test puts one).
 */
const WORKING_TFJS_NODE = `
try { require("@tensorflow/tfjs-core"); } catch {}
const tf = require(${JSON.stringify(TFJS_CORE)});
const { MathBackendCPU } = require(${JSON.stringify(TFJS_CPU)});
tf.registerBackend("tensorflow", () => new MathBackendCPU(), 3);`;
const BROKEN_TFJS_NODE = `throw new Error("libtensorflow.so.2: cannot open shared object file (stand-in)");`;

// Start every child now, so they overlap; each test awaits its own.
const children = {
  auto: runChild(reportScript()),
  twoThreads: runChild(
    reportScript(`
  const rel = (a, b) => { let d = 0, r = 0; for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); r = Math.max(r, Math.abs(b[i])); } return d / Math.max(1, r); };
  const shapes = { a: [300, 257], b: [257, 190], x: [4, 33, 33, 16], w: [3, 3, 16, 32] };
  const inputs = Object.fromEntries(Object.entries(shapes).map(([k, s], i) => [k, tf.randomUniform(s, -1, 1, "float32", i + 1).dataSync()]));
  const compute = () => tf.tidy(() => {
    const t = (k) => tf.tensor(inputs[k], shapes[k]);
    return {
      matMul: tf.matMul(t("a"), t("b")).dataSync(),
      conv2d: tf.conv2d(t("x"), t("w"), 1, "same").dataSync(),
      conv2dStrided: tf.conv2d(t("x"), t("w"), 2, "valid").dataSync(),
    };
  });
  const onWasm = compute();
  await initBackend("cpu");
  const onCpu = compute();
  report.relError = Object.fromEntries(Object.keys(onWasm).map((k) => [k, rel(onWasm[k], onCpu[k])]));
  report.backToWasm = (await initBackend("wasm")) === info && tf.getBackend() === "wasm";`),
    { SSLKIT_THREADS: "2", SSLKIT_NATIVE: "0" }, // wasm's own threaded kernels (the native ones would take these ops)
  ),
  nativeTwoThreads: runChild(reportScript(`report.wasmThreadsCount = require("@tensorflow/tfjs-backend-wasm").getThreadsCount();`), { SSLKIT_THREADS: "2" }),
  winogradTile2: runChild(reportScript(`report.winograd = require("sslkit-native").binding.info().winograd;`), { SSLKIT_WINOGRAD: "2" }),
  winogradBogus: runChild(
    `
const { initBackend } = require(${JSON.stringify(BACKEND_SOURCE)});
const outcome = (p) => p.then(() => null, (error) => error.message);
(async () => console.log(JSON.stringify({ requested: await outcome(initBackend("wasm")), automatic: await outcome(initBackend()) })))();`,
    { SSLKIT_WINOGRAD: "3" },
  ),
  oneThread: runChild(reportScript(), { SSLKIT_THREADS: "1" }),
  threadFault: runChild(reportScript(`report.sum = tf.sum(tf.matMul(tf.ones([64, 64]), tf.ones([64, 64]))).dataSync()[0];`), {
    SSLKIT_THREADS: "2",
    SSLKIT_WASM_THREADS_FAULT: "worker",
    SSLKIT_NATIVE: "0", // with the native kernels, wasm's own pool is not threaded (nothing to fall back from)
  }),
  uncaught: runChild(`
const { initBackend } = require(${JSON.stringify(BACKEND_SOURCE)});
initBackend().then(() => setTimeout(() => { throw new Error("sslkit-test-boom after init"); }, 10));`),
  tfjsNode: runChild(reportScript(), {
    NODE_PATH: standInPackages(
      { "@tensorflow/tfjs-node": WORKING_TFJS_NODE },
      { "@tensorflow/tfjs-node": { "@tensorflow/tfjs-core": "module.exports = {};" } },
    ),
  }),
  // First asks for tensorflow explicitly (must throw), then lets sslkit choose (must warn and use wasm).
  brokenTfjsNode: runChild(
    `
const { initBackend } = require(${JSON.stringify(BACKEND_SOURCE)});
initBackend("tensorflow").then(
  () => console.log(JSON.stringify({ requestedError: null })),
  (error) => initBackend().then((info) => console.log(JSON.stringify({ requestedError: error.message, info }))),
);`,
    { NODE_PATH: standInPackages({ "@tensorflow/tfjs-node": BROKEN_TFJS_NODE }) },
  ),
  gpuPackageNoGpu: runChild(reportScript(), {
    NODE_PATH: standInPackages({ "@tensorflow/tfjs-node-gpu": WORKING_TFJS_NODE }),
    CUDA_VISIBLE_DEVICES: "-1",
  }),
};

/** What describeBackend adds for sslkit-native's kernels when the addon is built here (", OpenBLAS 0.3.21 kernels"). */
const native = loadNativeKernels().kernels;
const NATIVE_SUFFIX = native ? `, ${blasName(native)} kernels` : "";

test("no preference: wasm with one thread per core (here min(cores, 8)), idempotent, listeners removed, exits by itself", async () => {
  const report = parseReport(await children.auto);
  const expected = Math.min(CORES, MAX_WASM_THREADS);
  assert.equal(report.info.name, "wasm");
  assert.equal(report.info.kind, "wasm");
  assert.equal(report.info.threads, expected);
  assert.equal(report.active, "wasm");
  assert.equal(report.same, true, "a second initBackend() returns the cached BackendInfo");
  assert.equal(report.description, `backend wasm (simd, ${expected} thread${expected === 1 ? "" : "s"}${NATIVE_SUFFIX})`);
  assert.deepEqual(report.listenersAfter, report.listenersBefore, "emscripten's process listeners are removed");
});

test("SSLKIT_THREADS=2 SSLKIT_NATIVE=0: matMul and conv2d on 2 wasm threads match the cpu backend", async () => {
  const report = parseReport(await children.twoThreads);
  assert.equal(report.info.threads, 2);
  assert.equal(report.info.native, undefined);
  assert.equal(report.description, "backend wasm (simd, 2 threads)");
  for (const [op, err] of Object.entries(report.relError as Record<string, number>)) {
    assert.ok(err <= 1e-4, `${op}: relative error ${err} against the cpu backend`);
  }
  assert.equal(report.backToWasm, true, "switching cpu -> wasm reuses the initialised wasm backend");
});

test("SSLKIT_THREADS=2 with sslkit-native: the native kernels on 2 threads, wasm's own pool on 1", { skip: native ? false : "sslkit-native is not built here" }, async () => {
  const report = parseReport(await children.nativeTwoThreads);
  assert.equal(report.info.threads, 2);
  assert.equal(report.info.wasmThreads, 1);
  assert.equal(report.wasmThreadsCount, 1, "tfjs-backend-wasm reports one thread");
  assert.equal(report.info.native, NATIVE_SUFFIX.slice(2, -" kernels".length));
  assert.equal(report.description, `backend wasm (simd, 2 threads${NATIVE_SUFFIX})`);
});

test("SSLKIT_WINOGRAD picks the native kernels' Winograd tile; a bad value is a clear error", { skip: native ? false : "sslkit-native is not built here" }, async () => {
  assert.equal(parseReport(await children.winogradTile2).winograd, 2);
  const bogus = parseReport(await children.winogradBogus);
  assert.match(bogus.requested, /SSLKIT_WINOGRAD must be 0, 2 or 4 .*got "3"/);
  assert.match(bogus.automatic, /SSLKIT_WINOGRAD must be 0, 2 or 4 .*got "3"/, "an error, not a fall-back to the cpu backend");
});

test("SSLKIT_THREADS=1: single-threaded wasm", async () => {
  const report = parseReport(await children.oneThread);
  assert.equal(report.info.name, "wasm");
  assert.equal(report.info.threads, 1);
  assert.equal(report.description, `backend wasm (simd, 1 thread${NATIVE_SUFFIX})`);
});

/** Runs f with environment variables set (undefined: unset), restoring them after. */
async function withEnv<T>(vars: Record<string, string | undefined>, f: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(vars);
  try {
    return await f();
  } finally {
    apply(saved);
  }
}

// The error paths initialise nothing, and cpu is cheap: these run in this process.
test("SSLKIT_BACKEND=cpu: the plain JavaScript backend; a second call is the cached result", async () => {
  await withEnv({ SSLKIT_BACKEND: "cpu", SSLKIT_THREADS: undefined }, async () => {
    const info = await initBackend();
    assert.deepEqual(info, { name: "cpu", kind: "cpu", threads: 1 });
    assert.equal(tf.getBackend(), "cpu");
    assert.equal(describeBackend(info), "backend cpu (1 thread)");
    assert.equal(await initBackend(), info);
    assert.equal(await initBackend("cpu"), info, "the argument and the variable name the same choice");
  });
});

test("SSLKIT_BACKEND=bogus, initBackend('bogus') and SSLKIT_THREADS=two: one clear error each", async () => {
  await withEnv({ SSLKIT_BACKEND: "bogus" }, async () => {
    await assert.rejects(initBackend(), /unknown backend "bogus" \(from SSLKIT_BACKEND=bogus\)\. Valid values: tensorflow, tensorflow-gpu, tensorflow-cpu, wasm, cpu/);
  });
  await assert.rejects(initBackend("webgl"), /unknown backend "webgl" \(from initBackend\("webgl"\)\)/);
  await withEnv({ SSLKIT_BACKEND: "wasm", SSLKIT_THREADS: "two" }, async () => {
    await assert.rejects(initBackend(), /SSLKIT_THREADS must be a positive integer .*got "two"/);
  });
});

test("SSLKIT_BACKEND=tensorflow without tfjs-node: error says it is not installed and how to get it", async () => {
  await withEnv({ SSLKIT_BACKEND: "tensorflow" }, async () => {
    await assert.rejects(initBackend(), (error: Error) => {
      assert.match(error.message, /the tensorflow backend was requested \(SSLKIT_BACKEND=tensorflow\)/);
      assert.match(error.message, /@tensorflow\/tfjs-node-gpu is not installed; @tensorflow\/tfjs-node is not installed/);
      assert.match(error.message, /npm install @tensorflow\/tfjs-node@4\.22\.0/);
      assert.match(error.message, /npm install @tensorflow\/tfjs-node-gpu@4\.22\.0.*CUDA 11/);
      return true;
    });
  });
  await assert.rejects(initBackend("tensorflow-gpu"), /@tensorflow\/tfjs-node-gpu is not installed/);
});

test("threaded setup failing falls back to single-threaded wasm with exactly one warning", async () => {
  const result = await children.threadFault;
  const report = parseReport(result);
  assert.equal(report.info.name, "wasm");
  assert.equal(report.info.threads, 1);
  assert.equal(report.sum, 64 * 64 * 64);
  const warnings = sslkitWarnings(result.stderr);
  assert.equal(warnings.length, 1, `warnings: ${JSON.stringify(warnings)}`);
  assert.match(warnings[0], /multi-threaded wasm backend unavailable .*injected pthread worker failure.*single-threaded/);
  assert.ok(result.stderr.length < 1000, `stderr is short, got ${result.stderr.length} chars`);
  assert.deepEqual(report.listenersAfter, report.listenersBefore);
});

test("an error thrown after initBackend prints a normal, short stack", async () => {
  const result = await children.uncaught;
  assert.equal(result.timedOut, false);
  assert.equal(result.code, 1);
  assert.ok(result.stderr.includes("Error: sslkit-test-boom after init"), result.stderr.slice(0, 500));
  assert.ok(result.stderr.length < 2000, `stderr has ${result.stderr.length} chars (minified wasm source printed?)`);
  const longest = Math.max(...result.stderr.split("\n").map((line) => line.length));
  assert.ok(longest < 300, `a ${longest}-char stderr line`);
});

test("tfjs-node installed: its 'tensorflow' backend is used; a second tfjs-core copy loaded is warned about", async () => {
  const result = await children.tfjsNode;
  const report = parseReport(result);
  assert.deepEqual(report.info, { name: "tensorflow", kind: "tensorflow-cpu", threads: 0 });
  assert.equal(report.active, "tensorflow");
  assert.equal(report.description, "backend tensorflow (cpu)");
  const warnings = sslkitWarnings(result.stderr);
  assert.equal(warnings.length, 1, `warnings: ${JSON.stringify(warnings)}`);
  assert.match(warnings[0], /also loaded another copy of @tensorflow\/tfjs-core \(.*tfjs-node\/node_modules\/@tensorflow\/tfjs-core\/\)/);
});

test("tfjs-node installed but failing: requested -> a clear Error; automatic -> a warning with the error, then wasm", async () => {
  const result = await children.brokenTfjsNode;
  const report = parseReport(result);
  assert.match(report.requestedError, /the tensorflow backend was requested .*@tensorflow\/tfjs-node is installed but failed to load: libtensorflow\.so\.2/);
  assert.equal(report.info.name, "wasm");
  const warnings = sslkitWarnings(result.stderr);
  assert.ok(warnings.length >= 1);
  for (const warning of warnings) {
    assert.match(warning, /@tensorflow\/tfjs-node is installed but failed to load: libtensorflow\.so\.2: cannot open/);
  }
});

test("tfjs-node-gpu without a visible GPU: runs, labelled tensorflow-cpu, with a warning", async () => {
  const result = await children.gpuPackageNoGpu;
  const report = parseReport(result);
  assert.deepEqual(report.info, { name: "tensorflow", kind: "tensorflow-cpu", threads: 0 });
  const warnings = sslkitWarnings(result.stderr);
  assert.equal(warnings.length, 1, `warnings: ${JSON.stringify(warnings)}`);
  assert.match(warnings[0], /tfjs-node-gpu is installed but no NVIDIA GPU is visible \(CUDA_VISIBLE_DEVICES="-1"\)/);
});
