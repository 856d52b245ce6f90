/**
 * Random resized crop with torchvision's RandomResizedCrop semantics: per sample, up to 10
 * attempts at an area fraction ~ U(scale) and a log-uniform aspect ratio (w/h) ~ ratio; the
 * first crop that fits the image wins, else a centre crop clamped to the ratio range. The crop
 * is then resized (bilinear) to the output size.
 *
 * Resampling: tf.image.cropAndResize with per-sample boxes whose sampling grid runs from the
 * crop's first to its last pixel centre (align-corners style). torchvision samples at half-pixel
 * centres and antialiases when shrinking; the two differ by sub-pixel shifts, and strong
 * down-scaling here aliases a little (there is no antialias filter).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random";
import { assertImageBatch, backendHasKernel } from "./batch";

/** A crop in pixels: rows top..top+height-1, columns left..left+width-1 (torchvision's i, j, h, w). */
export interface PixelCropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

export interface ResizedCropRanges {
  /** Range of the crop's area as a fraction of the image area; default [0.08, 1] (Inception / SimCLR). */
  scale?: [number, number];
  /** Range of the crop's aspect ratio width/height, sampled log-uniformly; default [3/4, 4/3]. */
  ratio?: [number, number];
}

export interface RandomResizedCropOptions extends ResizedCropRanges {
  /** Output size: a side for square outputs, or [height, width]. */
  size: number | [number, number];
}

function checkRange(fn: string, name: string, r: [number, number] | undefined, fallback: [number, number]): [number, number] {
  const v = r ?? fallback;
  if (!Array.isArray(v) || v.length !== 2 || !(v[0] > 0) || !(v[1] >= v[0]) || !Number.isFinite(v[1])) {
    throw new Error(`${fn}: ${name} must be [lo, hi] with 0 < lo <= hi, got ${JSON.stringify(r)}`);
  }
  return [v[0], v[1]];
}

/** Output size [h, w] from a number or pair, with a clear Error for bad values. */
export function resolveImageSize(fn: string, size: number | [number, number]): [number, number] {
  const hw: [number, number] = typeof size === "number" ? [size, size] : size;
  if (!Array.isArray(hw) || hw.length !== 2 || !hw.every((s) => Number.isInteger(s) && s >= 1)) {
    throw new Error(`${fn}: size must be a positive integer or [height, width], got ${JSON.stringify(size)}`);
  }
  return [hw[0], hw[1]];
}

/**
 * Per-sample crop boxes drawn exactly like torchvision's RandomResizedCrop.get_params
 * (10 attempts, then a centre crop). Pure: only the Rng is touched.
 */
export function sampleResizedCropBoxes(rng: Rng, n: number, height: number, width: number, opts: ResizedCropRanges = {}): PixelCropBox[] {
  const fn = "sampleResizedCropBoxes";
  if (!(Number.isInteger(n) && n >= 0)) throw new Error(`${fn}: n must be a non-negative integer, got ${n}`);
  if (!(Number.isInteger(height) && height >= 1 && Number.isInteger(width) && width >= 1)) {
    throw new Error(`${fn}: height and width must be positive integers, got ${height}x${width}`);
  }
  const scale = checkRange(fn, "scale", opts.scale, [0.08, 1]);
  const ratio = checkRange(fn, "ratio", opts.ratio, [3 / 4, 4 / 3]);
  const area = height * width;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  const boxes: PixelCropBox[] = [];
  for (let s = 0; s < n; s++) {
    let box: PixelCropBox | null = null;
    for (let attempt = 0; attempt < 10 && box === null; attempt++) {
      const targetArea = area * rng.uniform(scale[0], scale[1]);
      const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
      const w = Math.round(Math.sqrt(targetArea * aspect));
      const h = Math.round(Math.sqrt(targetArea / aspect));
      if (w > 0 && w <= width && h > 0 && h <= height) {
        box = { top: rng.int(0, height - h + 1), left: rng.int(0, width - w + 1), height: h, width: w };
      }
    }
    if (box === null) box = centreCropBox(height, width, ratio);
    boxes.push(box);
  }
  return boxes;
}

/** torchvision's fallback: the largest centred crop whose aspect ratio lies in `ratio`. */
function centreCropBox(height: number, width: number, ratio: [number, number]): PixelCropBox {
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = Math.min(height, Math.max(1, Math.round(w / ratio[0])));
  else if (inRatio > ratio[1]) w = Math.min(width, Math.max(1, Math.round(h * ratio[1])));
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/**
 * tf.image.cropAndResize boxes [y1, x1, y2, x2] (normalised by H-1, W-1) for pixel boxes resized
 * to [outHeight, outWidth]. The kernel evaluates y1*(H-1) + k*(y2-y1)*(H-1)/(out-1) in float32 on
 * wasm and treats a coordinate even 1 ulp past the last pixel as outside (extrapolation value 0),
 * so boxes that reach the last row/column are pulled in by 2e-6*(side-1) px (16+ ulps), except
 * for an identity grid (whole axis, out == side), which is computed exactly.
 */
export function normalizedCropBoxes(boxes: PixelCropBox[], height: number, width: number, outSize?: [number, number]): Float32Array {
  const out = new Float32Array(boxes.length * 4);
  const dy = Math.max(1, height - 1);
  const dx = Math.max(1, width - 1);
  const farEdge = (start: number, len: number, side: number, outLen: number | undefined): number => {
    const end = start + len - 1;
    if (len < 2 || start + len < side || (start === 0 && outLen === side)) return end;
    return end - 2e-6 * (side - 1);
  };
  boxes.forEach((b, i) => {
    if (!(b.top >= 0 && b.left >= 0 && b.height >= 1 && b.width >= 1 && b.top + b.height <= height && b.left + b.width <= width)) {
      throw new Error(`cropResizeBoxes: box ${i} ${JSON.stringify(b)} is not inside a ${height}x${width} image`);
    }
    const y2 = farEdge(b.top, b.height, height, outSize?.[0]);
    const x2 = farEdge(b.left, b.width, width, outSize?.[1]);
    out.set([b.top / dy, b.left / dx, y2 / dy, x2 / dx], i * 4);
  });
  return out;
}

/**
 * Crops box i out of image i and resizes it bilinearly to `size` (one box per sample). Uses the
 * backend's CropAndResize kernel, or `cropResizeBoxesMatMul` where the backend lacks it.
 */
export function cropResizeBoxes(images: tf.Tensor4D, boxes: PixelCropBox[], size: number | [number, number]): tf.Tensor4D {
  assertImageBatch("cropResizeBoxes", images);
  if (!backendHasKernel("CropAndResize")) return cropResizeBoxesMatMul(images, boxes, size);
  const [n, h, w] = images.shape;
  const [oh, ow] = resolveImageSize("cropResizeBoxes", size);
  if (boxes.length !== n) throw new Error(`cropResizeBoxes: need one box per image (${n}), got ${boxes.length}`);
  if (n === 0) return tf.zeros([0, oh, ow, images.shape[3]]) as tf.Tensor4D;
  return tf.tidy(() => {
    const normalized = tf.tensor2d(normalizedCropBoxes(boxes, h, w, [oh, ow]), [n, 4]);
    const boxIndex = tf.range(0, n, 1, "int32") as tf.Tensor1D;
    return tf.image.cropAndResize(images, normalized, boxIndex, [oh, ow], "bilinear");
  });
}

/**
 * Row-interpolation matrices [N, out, side] for bilinear resampling along one axis on
 * cropAndResize's grid: output k samples coordinate lo*(side-1) + k*(hi-lo)*(side-1)/(out-1),
 * with lo/hi the normalised box edges (`normalizedCropBoxes`), or the centre when out == 1.
 */
function interpolationMatrices(lo: number[], hi: number[], side: number, out: number): tf.Tensor3D {
  const n = lo.length;
  const m = new Float32Array(n * out * side);
  const span = side - 1;
  for (let s = 0; s < n; s++) {
    const step = out > 1 ? ((hi[s] - lo[s]) * span) / (out - 1) : 0;
    for (let k = 0; k < out; k++) {
      const pos = Math.min(span, Math.max(0, out > 1 ? lo[s] * span + k * step : 0.5 * (lo[s] + hi[s]) * span));
      const below = Math.floor(pos);
      const above = Math.min(span, Math.ceil(pos));
      const frac = pos - below;
      const row = (s * out + k) * side;
      m[row + below] += 1 - frac;
      m[row + above] += frac;
    }
  }
  return tf.tensor3d(m, [n, out, side]);
}

/**
 * Bilinear crop-and-resize as two batched matMuls with per-sample interpolation matrices
 * (out = Ry X Rx^T): the fallback for backends without CropAndResize; same grid as cropResizeBoxes.
 */
export function cropResizeBoxesMatMul(images: tf.Tensor4D, boxes: PixelCropBox[], size: number | [number, number]): tf.Tensor4D {
  assertImageBatch("cropResizeBoxesMatMul", images);
  const [n, h, w, c] = images.shape;
  const [oh, ow] = resolveImageSize("cropResizeBoxesMatMul", size);
  if (boxes.length !== n) throw new Error(`cropResizeBoxesMatMul: need one box per image (${n}), got ${boxes.length}`);
  const nb = normalizedCropBoxes(boxes, h, w, [oh, ow]); // validates the boxes; same grid as the kernel
  if (n === 0) return tf.zeros([0, oh, ow, c]) as tf.Tensor4D;
  const column = (j: number) => Array.from({ length: n }, (_, i) => nb[4 * i + j]);
  return tf.tidy(() => {
    const ry = interpolationMatrices(column(0), column(2), h, oh);
    const rx = interpolationMatrices(column(1), column(3), w, ow);
    const rows = tf.matMul(ry, tf.reshape(images, [n, h, w * c])); // [n, oh, w*c]
    const colsFirst = tf.reshape(tf.transpose(tf.reshape(rows, [n, oh, w, c]), [0, 2, 1, 3]), [n, w, oh * c]);
    const resized = tf.matMul(rx, colsFirst); // [n, ow, oh*c]
    return tf.transpose(tf.reshape(resized, [n, ow, oh, c]), [0, 2, 1, 3]) as tf.Tensor4D;
  });
}

/** torchvision RandomResizedCrop on a batch, with independent boxes per sample. */
export function randomResizedCrop(images: tf.Tensor4D, rng: Rng, opts: RandomResizedCropOptions): tf.Tensor4D {
  assertImageBatch("randomResizedCrop", images);
  if (opts == null || opts.size == null) throw new Error("randomResizedCrop: opts.size (output size) is required");
  const size = resolveImageSize("randomResizedCrop", opts.size);
  const [n, h, w] = images.shape;
  const boxes = sampleResizedCropBoxes(rng, n, h, w, opts);
  return cropResizeBoxes(images, boxes, size);
}
