/**
 * Image folders: `dir/<class name>/<image>`, one sub-folder per class (sorted sub-folder names
 * are the class names; label i = i-th name), images JPEG, PNG or WebP. Every image is decoded
 * and resized with sharp to `size` ([height, width]) as sRGB (transparency flattened onto
 * black); `channels: 1` then takes ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B, as PIL's "L"). `fit: "cover"` (default) keeps the aspect ratio and
 * centre-crops the overflow (torchvision's Resize + CenterCrop); `fit: "fill"` stretches.
 * Decoding runs `concurrency` images at a time. Hidden files (".*"), Thumbs.db and desktop.ini
 * are skipped and files directly in `dir` are ignored; any other file must be a decodable
 * image, or loading fails naming it.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DatasetError, errorMessage } from "./errors";
import type { ImageDataset } from "./types";

export const IMAGE_FOLDER_EXTENSIONS: readonly string[] = [".png", ".jpg", ".jpeg", ".webp"];
const SKIPPED_FILES = new Set(["thumbs.db", "desktop.ini"]);

export interface LoadImageFolderOptions {
  /** [height, width] of the output images (default [32, 32]). */
  size?: [number, number];
  /** 1 (grayscale) or 3 (RGB); default 3. */
  channels?: 1 | 3;
  /** "cover" (default: keep aspect, centre crop) or "fill" (stretch). */
  fit?: "cover" | "fill";
  /** Images decoded at once (default 8). */
  concurrency?: number;
  /** Dataset name (default: the folder's base name). */
  name?: string;
}

interface ImageEntry {
  file: string;
  label: number;
}

async function listDir(dir: string): Promise<fs.Dirent[]> {
  try {
    return await fs.promises.readdir(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new DatasetError(`${dir}: image folder not found`, dir);
    if (code === "ENOTDIR") throw new DatasetError(`${dir}: is a file, expected a folder with one sub-folder per class`, dir);
    throw new DatasetError(`${dir}: cannot list folder (${errorMessage(err)})`, dir);
  }
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Class names and image files of an image folder, in a fixed order (class, then file name). */
export async function listImageFolder(dir: string): Promise<{ classNames: string[]; entries: ImageEntry[] }> {
  const root = path.resolve(dir);
  const top = await listDir(root);
  const classNames = top
    .filter((d) => !d.name.startsWith(".") && (d.isDirectory() || (d.isSymbolicLink() && isDirectory(path.join(root, d.name)))))
    .map((d) => d.name)
    .sort(byCodePoint);
  if (classNames.length === 0) throw new DatasetError(`${root}: no class sub-folders (expected ${root}/<class name>/<images>)`, root);
  const entries: ImageEntry[] = [];
  for (let label = 0; label < classNames.length; label++) {
    const classDir = path.join(root, classNames[label]);
    const files = (await listDir(classDir))
      .filter((d) => !d.name.startsWith(".") && !SKIPPED_FILES.has(d.name.toLowerCase()) && !d.isDirectory())
      .map((d) => d.name)
      .sort(byCodePoint);
    for (const name of files) {
      const file = path.join(classDir, name);
      if (!IMAGE_FOLDER_EXTENSIONS.includes(path.extname(name).toLowerCase())) {
        throw new DatasetError(`${file}: not an image file (expected ${IMAGE_FOLDER_EXTENSIONS.join(", ")}); move it out of the class folder`, file);
      }
      entries.push({ file, label });
    }
    if (files.length === 0) {
      throw new DatasetError(`${classDir}: class folder '${classNames[label]}' is empty (no ${IMAGE_FOLDER_EXTENSIONS.join(", ")} images)`, classDir);
    }
  }
  return { classNames, entries };
}

/** ITU-R 601 luma, as PIL's convert("L"): L = (299 R + 587 G + 114 B) / 1000, rounded. */
export function rgbToLuma(rgb: Uint8Array, out: Uint8Array, offset: number): void {
  const n = rgb.length / 3;
  for (let p = 0; p < n; p++) out[offset + p] = Math.round((299 * rgb[3 * p] + 587 * rgb[3 * p + 1] + 114 * rgb[3 * p + 2]) / 1000);
}

/** Run `task(i)` for i in [0, n) with at most `limit` running at once; the first failure rejects. */
export async function runLimited(n: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < n) {
      const i = next++;
      try {
        await task(i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
}

/** Load an image folder (see the module comment) as a uint8 NHWC ImageDataset. */
export async function loadImageFolder(dir: string, opts: LoadImageFolderOptions = {}): Promise<ImageDataset> {
  const [height, width] = opts.size ?? [32, 32];
  const channels = opts.channels ?? 3;
  const fit = opts.fit ?? "cover";
  const concurrency = opts.concurrency ?? 8;
  if (!(Number.isInteger(height) && Number.isInteger(width) && height > 0 && width > 0)) {
    throw new DatasetError(`loadImageFolder: size must be two positive integers [height, width], got ${JSON.stringify(opts.size)}`);
  }
  if (channels !== 1 && channels !== 3) throw new DatasetError(`loadImageFolder: channels must be 1 or 3, got ${channels}`);
  if (fit !== "cover" && fit !== "fill") throw new DatasetError(`loadImageFolder: fit must be "cover" or "fill", got ${JSON.stringify(fit)}`);
  if (!(Number.isInteger(concurrency) && concurrency >= 1)) throw new DatasetError(`loadImageFolder: concurrency must be a positive integer, got ${concurrency}`);

  const { classNames, entries } = await listImageFolder(dir);
  // sharp is loaded lazily: the rest of sslkit's data code works without its native module.
  const sharp = (await import("sharp")).default;
  const pixels = height * width * channels;
  const images = new Uint8Array(entries.length * pixels);
  const labels = new Uint8Array(entries.length);
  if (classNames.length > 256) throw new DatasetError(`${dir}: ${classNames.length} classes, at most 256 fit uint8 labels`, dir);

  await runLimited(entries.length, concurrency, async (i) => {
    const { file, label } = entries[i];
    let data: Buffer;
    let info: { width: number; height: number; channels: number };
    try {
      ({ data, info } = await sharp(file, { failOn: "error" })
        .rotate() // EXIF orientation
        .flatten({ background: { r: 0, g: 0, b: 0 } })
        .resize(width, height, { fit, position: "centre" })
        .toColourspace("srgb")
        .raw()
        .toBuffer({ resolveWithObject: true }));
    } catch (err) {
      throw new DatasetError(`${file}: unreadable image (${errorMessage(err)})`, file);
    }
    if (info.width !== width || info.height !== height || info.channels !== 3 || data.length !== width * height * 3) {
      throw new DatasetError(`${file}: decoded to ${info.width}x${info.height}x${info.channels}, expected ${width}x${height}x3`, file);
    }
    if (channels === 3) images.set(data, i * pixels);
    else rgbToLuma(data, images, i * pixels);
    labels[i] = label;
  });

  return {
    name: opts.name ?? path.basename(path.resolve(dir)),
    images,
    labels,
    classNames,
    count: entries.length,
    height,
    width,
    channels,
  };
}
