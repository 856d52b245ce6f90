/**
 * Op-level timings of the training kernels: `node --import tsx bench/ops.ts`.
 * Prints one JSON line per figure (median ms of a few repetitions after a warm-up).
 * SSLKIT_BACKEND picks the backend as usual (default: the library's choice).
 */
import * as tf from "@tensorflow/tfjs-core";
import * as backendModule from "../lib/src/backend";
import * as fastOps from "../lib/src/nn/fast-ops";

const REPS = Number(process.env.SSLKIT_BENCH_REPS ?? 5);
/** Optional section filter: `node --import tsx bench/ops.ts conv takeRows`. */
const only = process.argv.slice(2);
const wanted = (section: string) => only.length === 0 || only.some((o) => section.startsWith(o));

function emit(fields: Record<string, unknown>): void {
  console.log(JSON.stringify({ bench: "ops", ...fields }));
}

/** Median wall time of f (which must return tensors; they are read back and disposed). */
function timeMs(f: () => tf.Tensor | tf.Tensor[], reps = REPS): number {
  const run = () => {
    const out = tf.tidy(f);
    const list = Array.isArray(out) ? out : [out];
    list.forEach((t) => t.dataSync());
    tf.dispose(list);
  };
  run();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    run();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return Number(times[Math.floor(times.length / 2)].toFixed(2));
}

function gradsOf(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], dy: tf.Tensor): tf.Tensor[] {
  return tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), dy)))(inputs);
}

async function main(): Promise<void> {
  // The wasm backend's own Conv2DBackpropInput, captured before sslkit replaces it, for reference.
  const wasmOriginalBackpropInput = tf.getKernel("Conv2DBackpropInput", "wasm");
  const info = await backendModule.initBackend();
  const describe = (backendModule as Record<string, unknown>).describeBackend as ((i: unknown) => string) | undefined;
  emit({ backend: info.name, kind: info.kind, threads: info.threads, description: describe ? describe(info) : undefined, note: "figures are noisy: shared machine" });

  // --- matMul gradient: tfjs default (transposeA/B kernels) vs fastOps.matMul (explicit transposes).
  if (wanted("matMul")) {
    const a = tf.randomNormal([512, 256]);
    const b = tf.randomNormal([256, 512]);
    const dy = tf.randomNormal([512, 512]);
    const shape = "[512x256]x[256x512]";
    emit({ figure: "matMul.forward", shape, ms: timeMs(() => tf.matMul(a, b)) });
    emit({ figure: "matMul.grad", variant: "tf.matMul", shape, ms: timeMs(() => gradsOf((x, y) => tf.matMul(x, y), [a, b], dy)) });
    emit({ figure: "matMul.grad", variant: "fastOps.matMul", shape, ms: timeMs(() => gradsOf((x, y) => fastOps.matMul(x, y), [a, b], dy)) });
    const qa = tf.randomNormal([24, 64, 48]);
    const qb = tf.randomNormal([24, 48, 64]);
    const qdy = tf.randomNormal([24, 64, 64]);
    const bshape = "[24x64x48]x[24x48x64]";
    emit({ figure: "batchMatMul.grad", variant: "tf.matMul", shape: bshape, ms: timeMs(() => gradsOf((x, y) => tf.matMul(x, y), [qa, qb], qdy)) });
    emit({ figure: "batchMatMul.grad", variant: "fastOps.matMul", shape: bshape, ms: timeMs(() => gradsOf((x, y) => fastOps.matMul(x, y), [qa, qb], qdy)) });
    tf.dispose([a, b, dy, qa, qb, qdy]);
  }

  // --- conv2d backward, batch 64, 32x32x32 -> 32, 3x3.
  for (const stride of wanted("conv") ? [1, 2] : []) {
    const x = tf.randomNormal([64, 32, 32, 32]) as tf.Tensor4D;
    const w = tf.mul(tf.randomNormal([3, 3, 32, 32]), 0.1) as tf.Tensor4D;
    const y0 = tf.conv2d(x, w, stride, "same");
    const dy = tf.randomNormal(y0.shape) as tf.Tensor4D;
    y0.dispose();
    const shape = `x[64,32,32,32] w[3,3,32,32] stride ${stride} same`;
    emit({ figure: "conv2d.forward", shape, ms: timeMs(() => tf.conv2d(x, w, stride, "same")) });
    emit({ figure: "conv2d.backward", variant: "tf.conv2d (registered kernels)", shape, ms: timeMs(() => gradsOf((a, b) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, "same"), [x, w], dy)) });
    emit({ figure: "conv2d.backward", variant: "fastOps.conv2d", shape, ms: timeMs(() => gradsOf((a, b) => fastOps.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, "same"), [x, w], dy)) });
    emit({ figure: "conv2d.inputGrad", variant: "fastOps.conv2dInputGrad", shape, ms: timeMs(() => fastOps.conv2dInputGrad(dy, w, x.shape, stride, "same")) });
    if (stride > 1) {
      emit({ figure: "conv2d.inputGrad", variant: "fastOps.conv2dInputGrad dilate", shape, ms: timeMs(() => fastOps.conv2dInputGrad(dy, w, x.shape, stride, "same", undefined, "dilate")) });
    }
    emit({ figure: "conv2d.filterGrad", variant: "fastOps.conv2dFilterGrad", shape, ms: timeMs(() => fastOps.conv2dFilterGrad(x, dy, w.shape, stride, "same")) });
    if (info.name === "wasm" && wasmOriginalBackpropInput) {
      const backend = tf.backend() as unknown as { disposeData(id: unknown): void; readSync(id: unknown): unknown };
      const attrs = { strides: [stride, stride], pad: "same", dataFormat: "NHWC", inputShape: x.shape };
      const ms = timeMs(() => {
        const out = wasmOriginalBackpropInput.kernelFunc({ inputs: { dy, filter: w }, backend: tf.backend(), attrs }) as tf.TensorInfo;
        backend.readSync(out.dataId);
        backend.disposeData(out.dataId);
        return [];
      });
      emit({ figure: "conv2d.inputGrad", variant: "wasm built-in Conv2DBackpropInput", shape, ms });
    }
    tf.dispose([x, w, dy]);
  }

  // --- takeRows (MAE's visible-token gather), forward + backward.
  for (const [n, l, k, d] of wanted("takeRows") ? [[64, 64, 16, 192], [32, 196, 49, 384]] : []) {
    const x = tf.randomNormal([n, l, d]) as tf.Tensor3D;
    const idxData = new Int32Array(n * k);
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) idxData[i * k + j] = (j * 7 + i) % l;
    const idx = tf.tensor2d(idxData, [n, k], "int32");
    const dy = tf.randomNormal([n, k, d]);
    const shape = `x[${n},${l},${d}] idx[${n},${k}]`;
    emit({ figure: "takeRows.fwd+bwd", variant: "flat gather", shape, ms: timeMs(() => gradsOf((t) => fastOps.takeRows(t as tf.Tensor3D, idx), [x], dy)) });
    emit({ figure: "takeRows.fwd+bwd", variant: "one-hot matMul", shape, ms: timeMs(() => gradsOf((t) => fastOps.takeRowsOneHot(t as tf.Tensor3D, idx), [x], dy)) });
    tf.dispose([x, idx, dy]);
  }

  // --- max pool 3x3 stride 2 backward (sslkit's MaxPoolGrad on wasm).
  if (wanted("maxPool")) {
    const x = tf.randomNormal([64, 32, 32, 64]) as tf.Tensor4D;
    const dy = tf.randomNormal([64, 16, 16, 64]);
    emit({ figure: "maxPool.backward", shape: "x[64,32,32,64] 3x3 stride 2 same", ms: timeMs(() => gradsOf((t) => tf.maxPool(t as tf.Tensor4D, 3, 2, "same"), [x], dy)) });
    tf.dispose([x, dy]);
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack ?? err.message : err);
  process.exit(1);
});
