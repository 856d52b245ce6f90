/**
 * GMML corruption (Group Masked Model Learning; Atito et al. 2021, "SiT: Self-supervised vIsion
 * Transformer", arXiv 2104.03602, sec. 3.2.1 and 4.1): random rectangular blocks of pixels are
 * overwritten in place, and the network learns to restore them from the rest of the image.
 *
 * - Block sides are drawn uniformly between 5% and 25% of the image side (the paper's range), at
 *   any pixel position: the blocks are not aligned with the ViT patch grid (`align: 1`), which the
 *   paper finds slightly better on small data (sec. 4.5.3). Blocks may overlap; they are drawn
 *   until the corrupted pixels reach `ratio` of the image (the last block may overshoot a little).
 * - `zeros`: the block becomes 0. `noise`: i.i.d. uniform noise in [0, 1) per pixel and channel
 *   (the official code draws N(0, 1) on normalised images; sslkit's images stay in [0, 1]).
 *   `replace`: the same region of another image of the batch (one donor image per image, as the
 *   official GMML_replace_list).
 * - Combined types (`zeros+replace`, `noise+replace`): each block is replaced from the donor with
 *   probability `replaceShare` (default 0.3) and zeroed / noised otherwise, so about 30% of the
 *   corrupted area comes from another image and 70% is zeros / noise: the paper's "up to 70%
 *   replaced with noise, up to 30% from another image".
 * Pixels outside the mask keep their exact values. All randomness comes from `rng`.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../random";
import { assertImageBatch } from "./batch";

export const GMML_CORRUPTION_TYPES = ["zeros", "noise", "replace", "zeros+replace", "noise+replace"] as const;
export type GmmlCorruptionType = (typeof GMML_CORRUPTION_TYPES)[number];

export interface GmmlCorruptOptions {
  type: GmmlCorruptionType;
  /** Share of each image's pixels to corrupt, in (0, 1). */
  ratio: number;
  /** Block side range as fractions of the image side (default [0.05, 0.25], the paper's). */
  blockSize?: [number, number];
  /** Combined types: probability that a block is replaced from the donor image (default 0.3). */
  replaceShare?: number;
  /** Snap block positions and sides to multiples of this many pixels (default 1: not aligned). */
  align?: number;
}

export interface GmmlCorruption {
  /** [N, H, W, C]: the images with their blocks overwritten. */
  corrupted: tf.Tensor4D;
  /** [N, H, W, 1]: 1 on corrupted pixels, 0 elsewhere. */
  mask: tf.Tensor4D;
  /** Per image, the index of the donor image of `replace` blocks (-1 for types without replace). */
  source: Int32Array;
}

const ZERO = 1;
const NOISE = 2;
const REPLACE = 3;

function checkOptions(opts: GmmlCorruptOptions, h: number, w: number): { minH: number; maxH: number; minW: number; maxW: number; align: number; replaceShare: number } {
  if (!opts || !(GMML_CORRUPTION_TYPES as readonly string[]).includes(opts.type)) {
    throw new Error(`gmmlCorrupt: type must be one of ${GMML_CORRUPTION_TYPES.join(", ")}, got '${String(opts?.type)}'`);
  }
  if (!(typeof opts.ratio === "number" && opts.ratio > 0 && opts.ratio < 1)) throw new Error(`gmmlCorrupt: ratio must be a number in (0, 1), got ${opts.ratio}`);
  const [lo, hi] = opts.blockSize ?? [0.05, 0.25];
  if (!(lo > 0 && lo <= hi && hi <= 1)) throw new Error(`gmmlCorrupt: blockSize must be [lo, hi] with 0 < lo <= hi <= 1, got [${opts.blockSize}]`);
  const replaceShare = opts.replaceShare ?? 0.3;
  if (!(replaceShare >= 0 && replaceShare <= 1)) throw new Error(`gmmlCorrupt: replaceShare must be in [0, 1], got ${replaceShare}`);
  const align = opts.align ?? 1;
  if (!(Number.isInteger(align) && align >= 1 && align <= Math.min(h, w))) throw new Error(`gmmlCorrupt: align must be an integer in [1, ${Math.min(h, w)}], got ${align}`);
  const side = (size: number, f: number) => Math.max(align, Math.round((size * f) / align) * align);
  return { minH: side(h, lo), maxH: side(h, hi), minW: side(w, lo), maxW: side(w, hi), align, replaceShare };
}

/** GMML: corrupt random blocks covering about `ratio` of every image (see the file comment). */
export function gmmlCorrupt(images: tf.Tensor4D, rng: Rng, opts: GmmlCorruptOptions): GmmlCorruption {
  assertImageBatch("gmmlCorrupt", images);
  const [n, h, w, c] = images.shape;
  const o = checkOptions(opts, h, w);
  const withReplace = opts.type.includes("replace");
  if (withReplace && n < 2) throw new Error(`gmmlCorrupt: type '${opts.type}' takes content from another image and needs a batch of at least 2, got ${n}`);
  const base = opts.type.startsWith("zeros") ? ZERO : opts.type.startsWith("noise") ? NOISE : REPLACE;
  const combined = withReplace && base !== REPLACE;
  const pixels = h * w;
  const target = Math.ceil(opts.ratio * pixels);
  const src = images.dataSync() as Float32Array;
  const out = Float32Array.from(src);
  const maskData = new Float32Array(n * pixels);
  const source = new Int32Array(n).fill(-1);
  const kind = new Uint8Array(pixels);
  const span = (size: number, lo: number, hi: number) => {
    const len = o.align * rng.int(lo / o.align, Math.floor(Math.min(hi, size) / o.align) + 1);
    return { len, start: o.align * rng.int(0, (size - len) / o.align + 1) };
  };
  for (let i = 0; i < n; i++) {
    kind.fill(0);
    let covered = 0;
    for (let guard = 0; covered < target; guard++) {
      if (guard > 100000) throw new Error("gmmlCorrupt: could not reach the requested ratio");
      const { len: bh, start: top } = span(h, o.minH, o.maxH);
      const { len: bw, start: left } = span(w, o.minW, o.maxW);
      const k = combined ? (rng.bernoulli(o.replaceShare) ? REPLACE : base) : base;
      for (let y = top; y < top + bh; y++) {
        for (let x = left; x < left + bw; x++) {
          if (kind[y * w + x] === 0) covered++;
          kind[y * w + x] = k;
        }
      }
    }
    let donor = -1;
    if (withReplace) {
      donor = rng.int(0, n - 1);
      if (donor >= i) donor++;
      source[i] = donor;
    }
    for (let p = 0; p < pixels; p++) {
      const k = kind[p];
      if (k === 0) continue;
      maskData[i * pixels + p] = 1;
      const at = (i * pixels + p) * c;
      for (let ch = 0; ch < c; ch++) {
        out[at + ch] = k === ZERO ? 0 : k === NOISE ? rng.next() : src[(donor * pixels + p) * c + ch];
      }
    }
  }
  return { corrupted: tf.tensor4d(out, [n, h, w, c]), mask: tf.tensor4d(maskData, [n, h, w, 1]), source };
}
