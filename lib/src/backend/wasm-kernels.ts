/**
 * Kernels the tfjs 4.22 wasm backend lacks or gets wrong for training, registered on 'wasm':
 *   - Conv2DBackpropFilter (missing: conv2d / conv2dTranspose could not train) and
 *     Conv2DBackpropInput (present but ~12x slower than a forward conv): both become ONE forward
 *     Conv2D via nn/fast-ops `conv2dFilterGrad` / `conv2dInputGrad`.
 *   - DepthwiseConv2dNativeBackpropInput / DepthwiseConv2dNativeBackpropFilter (missing).
 *   - UnsortedSegmentSum (missing: tf.gather had no gradient).
 *   - MaxPoolGrad (wasm's gives 0 gradient to windows whose values are all negative): replaced by
 *     the cpu backend's rule, gradient to the first maximum of each window in row-major order.
 *   - GatherV2 (present but copies element by element, ~50x slower than row copies).
 *   - OneHot (wasm's ignores the dtype attr: tf.oneHot(i, n, 1, 0, "float32") was garbage).
 *   - Identity (wasm's copies the data; the engine clones every tensor it saves for a gradient,
 *     which cost 5-10% of a training step): shares the data by reference count, as the cpu
 *     backend does. Tensor data is immutable, so sharing is safe.
 *
 * Two ways a kernel can run other kernels: call their kernelFunc directly with
 * {inputs, backend, attrs} and free intermediates with backend.disposeData (what the wasm kernels
 * do among themselves), or, since the engine accepts a kernel that returns a tf.Tensor (it only
 * wraps outputs without `rank`), run tf ops inside tf.tidy. Ops run inside a kernel are not
 * recorded on the gradient tape (engine.kernelDepth > 0). The conv kernels take the second way so
 * that they share one implementation with fastOps.conv2d; the rest are loops over the wasm heap.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { conv2dFilterGrad, conv2dInputGrad, type ConvPadding } from "../nn/fast-ops";
import { isNativeKernelFunc } from "./native-kernels";

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };
type Shape4 = [number, number, number, number];
type Pair = [number, number];
type Rounding = "floor" | "round" | "ceil" | undefined;

function inputTensor(kernel: string, name: string, info: tf.TensorInfo | undefined): tf.Tensor {
  if (info == null) throw new Error(`${kernel} (wasm, sslkit): missing input '${name}'`);
  if (!(info instanceof tf.Tensor)) {
    throw new Error(`${kernel} (wasm, sslkit): input '${name}' must be a tf.Tensor (run the kernel through tf ops / engine.runKernel)`);
  }
  return info;
}

function inputInfo(kernel: string, inputs: tf.NamedTensorInfoMap, name: string): tf.TensorInfo {
  const info = inputs[name];
  if (info == null) throw new Error(`${kernel} (wasm, sslkit): missing input '${name}'`);
  return info;
}

function assertNhwc(kernel: string, dataFormat: unknown): void {
  if (dataFormat != null && dataFormat !== "NHWC" && dataFormat !== "channelsLast") {
    throw new Error(`${kernel} (wasm, sslkit): only NHWC is supported, got dataFormat '${String(dataFormat)}'`);
  }
}

function assertUnitDilations(kernel: string, dilations: unknown): void {
  if (dilations == null) return;
  const d = typeof dilations === "number" ? [dilations, dilations] : (dilations as number[]);
  if (d.some((v) => v !== 1)) throw new Error(`${kernel} (wasm, sslkit): dilations must be 1 for gradients, got [${d}]`);
}

/** Float32 (or int32) view of a tensor's data on the wasm heap. Take views AFTER allocating outputs. */
function heapView(backend: BackendWasm, info: tf.TensorInfo): Float32Array | Int32Array {
  return backend.typedArrayFromHeap(info) as Float32Array | Int32Array;
}

// ---------------------------------------------------------------------------------------------
// Conv2D gradients as forward convolutions
// ---------------------------------------------------------------------------------------------

function conv2dBackpropFilterKernel({ inputs, attrs }: KernelArgs): tf.TensorInfo {
  const x = inputTensor("Conv2DBackpropFilter", "x", inputs.x) as tf.Tensor4D;
  const dy = inputTensor("Conv2DBackpropFilter", "dy", inputs.dy) as tf.Tensor4D;
  const a = attrs ?? {};
  assertNhwc("Conv2DBackpropFilter", a.dataFormat);
  return conv2dFilterGrad(x, dy, a.filterShape as Shape4, a.strides as number | Pair, a.pad as ConvPadding, a.dimRoundingMode as Rounding);
}

function conv2dBackpropInputKernel({ inputs, attrs }: KernelArgs): tf.TensorInfo {
  const dy = inputTensor("Conv2DBackpropInput", "dy", inputs.dy) as tf.Tensor4D;
  const filter = inputTensor("Conv2DBackpropInput", "filter", inputs.filter) as tf.Tensor4D;
  const a = attrs ?? {};
  assertNhwc("Conv2DBackpropInput", a.dataFormat);
  return conv2dInputGrad(dy, filter, a.inputShape as Shape4, a.strides as number | Pair, a.pad as ConvPadding, a.dimRoundingMode as Rounding);
}

// ---------------------------------------------------------------------------------------------
// Depthwise conv gradients (loops over the heap; same arithmetic as the cpu backend)
// ---------------------------------------------------------------------------------------------

function depthwiseBackpropInputKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const wasm = backend as BackendWasm;
  const dy = inputInfo("DepthwiseConv2dNativeBackpropInput", inputs, "dy");
  const filter = inputInfo("DepthwiseConv2dNativeBackpropInput", inputs, "filter");
  const a = attrs ?? {};
  assertUnitDilations("DepthwiseConv2dNativeBackpropInput", a.dilations);
  const info = tf.backend_util.computeConv2DInfo(a.inputShape as Shape4, filter.shape as Shape4, a.strides as number | Pair, 1, a.pad as ConvPadding, a.dimRoundingMode as Rounding, true);
  const { batchSize, filterHeight: kh, filterWidth: kw, inChannels, inHeight, inWidth, outChannels, outHeight, outWidth, strideHeight: sh, strideWidth: sw } = info;
  const chMul = outChannels / inChannels;
  const out = wasm.makeOutput(info.inShape, "float32");
  const dyv = heapView(wasm, dy);
  const fv = heapView(wasm, filter);
  const dxv = heapView(wasm, out);
  const topPad = kh - 1 - info.padInfo.top;
  const leftPad = kw - 1 - info.padInfo.left;
  const [dyS0, dyS1, dyS2] = [outHeight * outWidth * outChannels, outWidth * outChannels, outChannels];
  const [fS0, fS1, fS2] = [kw * inChannels * chMul, inChannels * chMul, chMul];
  const [dxS0, dxS1, dxS2] = [inHeight * inWidth * inChannels, inWidth * inChannels, inChannels];
  for (let b = 0; b < batchSize; ++b) {
    for (let xR = 0; xR < inHeight; ++xR) {
      const xRCorner = xR - topPad;
      const yRMin = Math.max(0, Math.ceil(xRCorner / sh));
      const yRMax = Math.min(outHeight, (kh + xRCorner) / sh);
      for (let xC = 0; xC < inWidth; ++xC) {
        const xCCorner = xC - leftPad;
        const yCMin = Math.max(0, Math.ceil(xCCorner / sw));
        const yCMax = Math.min(outWidth, (kw + xCCorner) / sw);
        const dxBase = dxS0 * b + dxS1 * xR + dxS2 * xC;
        for (let d1 = 0; d1 < inChannels; ++d1) {
          let acc = 0;
          for (let yR = yRMin; yR < yRMax; ++yR) {
            const wR = yR * sh - xRCorner;
            for (let yC = yCMin; yC < yCMax; ++yC) {
              const wC = yC * sw - xCCorner;
              const dyOff = dyS0 * b + dyS1 * yR + dyS2 * yC + d1 * chMul;
              const fOff = fS0 * (kh - 1 - wR) + fS1 * (kw - 1 - wC) + fS2 * d1;
              for (let dm = 0; dm < chMul; ++dm) acc += dyv[dyOff + dm] * fv[fOff + dm];
            }
          }
          dxv[dxBase + d1] = acc;
        }
      }
    }
  }
  return out;
}

function depthwiseBackpropFilterKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const wasm = backend as BackendWasm;
  const x = inputInfo("DepthwiseConv2dNativeBackpropFilter", inputs, "x");
  const dy = inputInfo("DepthwiseConv2dNativeBackpropFilter", inputs, "dy");
  const a = attrs ?? {};
  assertUnitDilations("DepthwiseConv2dNativeBackpropFilter", a.dilations);
  const info = tf.backend_util.computeConv2DInfo(x.shape as Shape4, a.filterShape as Shape4, a.strides as number | Pair, 1, a.pad as ConvPadding, a.dimRoundingMode as Rounding, true);
  const { batchSize, filterHeight: kh, filterWidth: kw, inChannels, inHeight, inWidth, outChannels, outHeight, outWidth, strideHeight: sh, strideWidth: sw } = info;
  const chMul = outChannels / inChannels;
  const out = wasm.makeOutput(info.filterShape, "float32");
  const xv = heapView(wasm, x);
  const dyv = heapView(wasm, dy);
  const dwv = heapView(wasm, out);
  dwv.fill(0);
  const topPad = info.padInfo.top;
  const leftPad = info.padInfo.left;
  for (let wR = 0; wR < kh; ++wR) {
    const yRMin = Math.max(0, Math.ceil((topPad - wR) / sh));
    const yRMax = Math.min(outHeight, (inHeight + topPad - wR) / sh);
    for (let wC = 0; wC < kw; ++wC) {
      const yCMin = Math.max(0, Math.ceil((leftPad - wC) / sw));
      const yCMax = Math.min(outWidth, (inWidth + leftPad - wC) / sw);
      const dwBase = (wR * kw + wC) * outChannels; // [KH,KW,C,M] flat: (wR,wC,d1,dm) = base + d1*M + dm = base + d2
      for (let b = 0; b < batchSize; ++b) {
        for (let yR = yRMin; yR < yRMax; ++yR) {
          const xR = wR + yR * sh - topPad;
          for (let yC = yCMin; yC < yCMax; ++yC) {
            const xC = wC + yC * sw - leftPad;
            const xOff = ((b * inHeight + xR) * inWidth + xC) * inChannels;
            const dyOff = ((b * outHeight + yR) * outWidth + yC) * outChannels;
            for (let d2 = 0; d2 < outChannels; ++d2) {
              dwv[dwBase + d2] += xv[xOff + ((d2 / chMul) | 0)] * dyv[dyOff + d2];
            }
          }
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// UnsortedSegmentSum (gather's gradient) and MaxPoolGrad
// ---------------------------------------------------------------------------------------------

function unsortedSegmentSumKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const wasm = backend as BackendWasm;
  const x = inputInfo("UnsortedSegmentSum", inputs, "x");
  const segmentIds = inputInfo("UnsortedSegmentSum", inputs, "segmentIds");
  const numSegments = (attrs ?? {}).numSegments as number;
  if (!Number.isInteger(numSegments) || numSegments < 0) throw new Error(`UnsortedSegmentSum (wasm, sslkit): numSegments must be a non-negative integer, got ${numSegments}`);
  const idsRank = segmentIds.shape.length;
  if (segmentIds.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(`UnsortedSegmentSum (wasm, sslkit): segmentIds [${segmentIds.shape}] must be a prefix of x [${x.shape}]`);
  }
  const rowShape = x.shape.slice(idsRank);
  const rowSize = rowShape.reduce((p, d) => p * d, 1);
  const out = wasm.makeOutput([numSegments, ...rowShape], x.dtype);
  const xv = heapView(wasm, x);
  const ids = heapView(wasm, segmentIds);
  const ov = heapView(wasm, out);
  ov.fill(0);
  const numIds = ids.length;
  for (let i = 0; i < numIds; i++) {
    const s = ids[i];
    if (!(s >= 0 && s < numSegments)) continue; // tf semantics: out-of-range ids are dropped
    const src = i * rowSize;
    const dst = s * rowSize;
    for (let j = 0; j < rowSize; j++) ov[dst + j] += xv[src + j];
  }
  return out;
}

/**
 * GatherV2 as row copies on the heap. wasm's own Gather copies element by element (~125 ns per
 * element: 25 ms for 1024 rows of 192 floats), which made every token gather in MAE/DINO slow.
 */
function gatherV2Kernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const wasm = backend as BackendWasm;
  const x = inputInfo("GatherV2", inputs, "x");
  const indices = inputInfo("GatherV2", inputs, "indices");
  const a = attrs ?? {};
  const axis = tf.util.parseAxisParam(a.axis as number, x.shape)[0];
  const shapeInfo = tf.backend_util.segment_util.collectGatherOpShapeInfo(x as tf.Tensor, indices as tf.Tensor, axis, (a.batchDims as number) ?? 0);
  const { batchSize, outerSize, dimSize, sliceSize, outputShape } = shapeInfo;
  const out = wasm.makeOutput(outputShape, x.dtype);
  const numIdx = indices.shape.reduce((p, d) => p * d, 1);
  if (numIdx === 0 || sliceSize === 0 || outerSize === 0) return out;
  const xv = heapView(wasm, x);
  const idx = heapView(wasm, indices);
  const ov = heapView(wasm, out);
  const perBatch = numIdx / batchSize;
  for (let i = 0; i < numIdx; i++) {
    const v = idx[i];
    if (!(v >= 0 && v < dimSize)) {
      wasm.disposeData(out.dataId);
      throw new Error(`GatherV2: the index value ${v} is not in [0, ${dimSize - 1}]`);
    }
  }
  let dst = 0;
  for (let b = 0; b < batchSize; b++) {
    for (let o = 0; o < outerSize; o++) {
      const xBase = (b * outerSize + o) * dimSize * sliceSize;
      for (let i = 0; i < perBatch; i++) {
        const src = xBase + idx[b * perBatch + i] * sliceSize;
        if (sliceSize >= 16) ov.set(xv.subarray(src, src + sliceSize), dst);
        else for (let j = 0; j < sliceSize; j++) ov[dst + j] = xv[src + j];
        dst += sliceSize;
      }
    }
  }
  return out;
}

/** OneHot honouring its dtype attr (wasm's writes int32 bits whatever dtype, so float32 one-hots are garbage). */
function oneHotKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const wasm = backend as BackendWasm;
  const indices = inputInfo("OneHot", inputs, "indices");
  const a = attrs ?? {};
  const depth = a.depth as number;
  const dtype = (a.dtype as tf.DataType | undefined) ?? "int32";
  if (dtype !== "float32" && dtype !== "int32") throw new Error(`OneHot (wasm, sslkit): dtype must be float32 or int32, got ${dtype}`);
  const out = wasm.makeOutput([...indices.shape, depth], dtype);
  const iv = heapView(wasm, indices);
  const ov = heapView(wasm, out);
  ov.fill((a.offValue as number) ?? 0);
  const on = (a.onValue as number) ?? 1;
  for (let i = 0; i < iv.length; i++) {
    const k = iv[i];
    if (k >= 0 && k < depth) ov[i * depth + k] = on;
  }
  return out;
}

function maxPoolGradKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const wasm = backend as BackendWasm;
  const dy = inputInfo("MaxPoolGrad", inputs, "dy");
  const input = inputInfo("MaxPoolGrad", inputs, "input");
  const output = inputInfo("MaxPoolGrad", inputs, "output");
  if (input.dtype !== "float32" || dy.dtype !== "float32") throw new Error(`MaxPoolGrad (wasm, sslkit): expected float32, got ${input.dtype}/${dy.dtype}`);
  const a = attrs ?? {};
  const info = tf.backend_util.computePool2DInfo(input.shape as Shape4, a.filterSize as number | Pair, a.strides as number | Pair, 1, a.pad as ConvPadding, a.dimRoundingMode as Rounding);
  const { batchSize, inChannels: c, inHeight: h, inWidth: w, outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, effectiveFilterHeight: fh, effectiveFilterWidth: fw } = info;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;
  const out = wasm.makeOutput(input.shape, "float32");
  const xv = wasm.typedArrayFromHeap(input) as Float32Array;
  const yv = wasm.typedArrayFromHeap(output) as Float32Array;
  const dyv = wasm.typedArrayFromHeap(dy) as Float32Array;
  const dxv = wasm.typedArrayFromHeap(out) as Float32Array;
  dxv.fill(0);
  const pending = new Uint8Array(c);
  for (let b = 0; b < batchSize; ++b) {
    for (let yR = 0; yR < oh; ++yR) {
      const rCorner = yR * sh - padTop;
      const rMin = Math.max(0, rCorner);
      const rMax = Math.min(h, rCorner + fh);
      for (let yC = 0; yC < ow; ++yC) {
        const cCorner = yC * sw - padLeft;
        const cMin = Math.max(0, cCorner);
        const cMax = Math.min(w, cCorner + fw);
        const yBase = ((b * oh + yR) * ow + yC) * c;
        pending.fill(1);
        let left = c;
        // The first element (row-major window order) equal to the pooled max gets the gradient:
        // the cpu backend's rule (first strict maximum). NaN windows get none, as on cpu.
        for (let xR = rMin; xR < rMax && left > 0; ++xR) {
          for (let xC = cMin; xC < cMax && left > 0; ++xC) {
            const base = ((b * h + xR) * w + xC) * c;
            for (let d = 0; d < c; ++d) {
              if (xv[base + d] === yv[yBase + d] && pending[d] === 1) {
                pending[d] = 0;
                left--;
                dxv[base + d] += dyv[yBase + d];
              }
            }
          }
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------------

function identityKernel({ inputs, backend }: KernelArgs): tf.TensorInfo {
  const x = inputInfo("Identity", inputs, "x");
  if (x.dtype === "string") return tf.tensor((backend as BackendWasm).readSync(x.dataId) as Uint8Array[], x.shape, x.dtype);
  (backend as BackendWasm).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

const trainingKernels: ReadonlyArray<{ kernelName: string; kernelFunc: (args: KernelArgs) => tf.TensorInfo }> = [
  { kernelName: "Conv2DBackpropFilter", kernelFunc: conv2dBackpropFilterKernel },
  { kernelName: "Conv2DBackpropInput", kernelFunc: conv2dBackpropInputKernel },
  { kernelName: "DepthwiseConv2dNativeBackpropInput", kernelFunc: depthwiseBackpropInputKernel },
  { kernelName: "DepthwiseConv2dNativeBackpropFilter", kernelFunc: depthwiseBackpropFilterKernel },
  { kernelName: "UnsortedSegmentSum", kernelFunc: unsortedSegmentSumKernel },
  { kernelName: "MaxPoolGrad", kernelFunc: maxPoolGradKernel },
  { kernelName: "GatherV2", kernelFunc: gatherV2Kernel },
  { kernelName: "OneHot", kernelFunc: oneHotKernel },
  { kernelName: "Identity", kernelFunc: identityKernel },
];

/** Names of the kernels sslkit registers (or replaces) on the wasm backend. */
export const wasmTrainingKernelNames: readonly string[] = trainingKernels.map((k) => k.kernelName);

/**
 * Registers sslkit's training kernels on the 'wasm' backend, replacing wasm's own where it has a
 * wrong or slow one. Idempotent: kernels already ours are left alone.
 */
export function registerWasmTrainingKernels(): void {
  for (const { kernelName, kernelFunc } of trainingKernels) {
    const existing = tf.getKernel(kernelName, "wasm");
    if (existing?.kernelFunc === (kernelFunc as unknown) || isNativeKernelFunc(existing?.kernelFunc)) continue; // ours, or sslkit-native's (which falls back on ours)
    if (existing) tf.unregisterKernel(kernelName, "wasm");
    tf.registerKernel({ kernelName, backendName: "wasm", kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
}
