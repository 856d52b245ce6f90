/**
 * Self-attention maps as an image gallery (DINO, Caron et al. 2021, Figure 1 and
 * visualize_attention.py): per image, the last block's attention from the class token to every
 * patch, one map per head, upsampled to the image by nearest neighbour (one block a patch), each
 * map min-max scaled and colour-mapped; then the heads' mean and the image masked to the patches
 * that hold `massThreshold` of the mean attention (DINO's --threshold 0.6).
 */
import * as tf from "@tensorflow/tfjs-core";
import { imageGridPng } from "./gallery";
import type { GalleryOptions } from "./gallery";

export interface AttentionGalleryOptions extends GalleryOptions {
  /** Fraction of the attention mass the masked column keeps (default 0.6, DINO's threshold). */
  massThreshold?: number;
  /** Caption left of each row (e.g. class names). */
  rowLabels?: readonly string[];
  /** Add the heads' mean and the thresholded mask columns (default true). */
  summaryColumns?: boolean;
}

// viridis at 5 stops (matplotlib), linearly interpolated
const VIRIDIS: [number, number, number][] = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

function viridis(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  return [0, 1, 2].map((c) => Math.round(VIRIDIS[i][c] + f * (VIRIDIS[i + 1][c] - VIRIDIS[i][c]))) as [number, number, number];
}

/**
 * Indices of the patches holding `mass` of the attention: the largest values first, until their sum
 * reaches mass * total (DINO's visualize_attention thresholding).
 */
export function attentionMassMask(values: ArrayLike<number>, mass: number): Uint8Array {
  if (!(mass > 0 && mass <= 1)) throw new Error(`attentionMassMask: mass must be in (0, 1], got ${mass}`);
  const order = Array.from(values, (v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]);
  const total = order.reduce((s, [v]) => s + v, 0);
  const keep = new Uint8Array(values.length);
  let cum = 0;
  for (const [v, i] of order) {
    if (cum >= mass * total) break;
    keep[i] = 1;
    cum += v;
  }
  return keep;
}

/**
 * A gallery of class-token attention maps: `images` [N, H, W, C] in [0, 1], `attention`
 * [N, heads, gh, gw] (ViT.clsAttention) with H and W multiples of gh and gw. One row per image:
 * the image, each head's map, then (summaryColumns) the heads' mean and the image masked to the
 * patches holding `massThreshold` of the mean attention.
 */
export async function attentionMapsGallery(images: tf.Tensor4D, attention: tf.Tensor4D, opts: AttentionGalleryOptions = {}): Promise<Buffer> {
  if (!(images instanceof tf.Tensor) || images.rank !== 4) throw new Error(`attentionMapsGallery: images must be [N, H, W, C], got [${images?.shape}]`);
  if (!(attention instanceof tf.Tensor) || attention.rank !== 4) throw new Error(`attentionMapsGallery: attention must be [N, heads, gh, gw], got [${attention?.shape}]`);
  const [n, h, w, c] = images.shape;
  const [na, heads, gh, gw] = attention.shape;
  if (na !== n) throw new Error(`attentionMapsGallery: ${n} images but attention for ${na}`);
  if (h % gh !== 0 || w % gw !== 0) throw new Error(`attentionMapsGallery: the ${gh}x${gw} attention grid does not tile ${h}x${w} images`);
  if (c !== 1 && c !== 3) throw new Error(`attentionMapsGallery: images must have 1 or 3 channels, got ${c}`);
  const mass = opts.massThreshold ?? 0.6;
  const summary = opts.summaryColumns ?? true;
  const px = (await images.data()) as Float32Array;
  const att = (await attention.data()) as Float32Array;
  const cols = 1 + heads + (summary ? 2 : 0);
  const tile = h * w * 3;
  const out = new Uint8Array(n * cols * tile);
  const [sy, sx] = [h / gh, w / gw];
  const rgbAt = (img: number, y: number, x: number): [number, number, number] => {
    const o = ((img * h + y) * w + x) * c;
    const v = (k: number) => Math.round(255 * Math.min(1, Math.max(0, px[o + (c === 1 ? 0 : k)])));
    return [v(0), v(1), v(2)];
  };
  const drawMap = (dst: number, map: ArrayLike<number>) => {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < map.length; i++) {
      lo = Math.min(lo, map[i]);
      hi = Math.max(hi, map[i]);
    }
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = map[Math.floor(y / sy) * gw + Math.floor(x / sx)];
        out.set(viridis(hi > lo ? (v - lo) / (hi - lo) : 0), dst + (y * w + x) * 3);
      }
    }
  };
  for (let i = 0; i < n; i++) {
    const row = i * cols * tile;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out.set(rgbAt(i, y, x), row + (y * w + x) * 3);
    const mean = new Float32Array(gh * gw);
    for (let k = 0; k < heads; k++) {
      const map = att.subarray((i * heads + k) * gh * gw, (i * heads + k + 1) * gh * gw);
      map.forEach((v, j) => (mean[j] += v / heads));
      drawMap(row + (1 + k) * tile, map);
    }
    if (!summary) continue;
    drawMap(row + (1 + heads) * tile, mean);
    const keep = attentionMassMask(mean, mass);
    const dst = row + (2 + heads) * tile;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const kept = keep[Math.floor(y / sy) * gw + Math.floor(x / sx)] === 1;
        const [r, g, b] = rgbAt(i, y, x);
        // kept patches as they are, the rest dimmed and tinted
        out.set(kept ? [r, g, b] : [Math.round(0.25 * r + 40), Math.round(0.25 * g), Math.round(0.25 * b + 60)], dst + (y * w + x) * 3);
      }
    }
  }
  const captions = opts.captions ?? true;
  const colLabels = ["image", ...Array.from({ length: heads }, (_, k) => `head ${k + 1}`), ...(summary ? ["mean", `top ${Math.round(100 * mass)}%`] : [])];
  return imageGridPng(out, {
    rows: n,
    cols,
    height: h,
    width: w,
    channels: 3,
    colLabels: captions ? colLabels : undefined,
    rowLabels: captions ? opts.rowLabels : undefined,
    scale: opts.scale,
    padding: opts.padding,
    fontSize: opts.fontSize,
  });
}
