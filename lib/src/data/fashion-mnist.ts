/**
 * Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, https://github.com/zalandoresearch/fashion-mnist):
 * 70,000 28x28 grayscale article images in 10 classes, as four IDX files.
 *
 * Lookup order for a split's two files (each `.gz` or uncompressed):
 *   1. the `dir` option (that folder or its `fashion-mnist` sub-folder; used alone when given);
 *   2. $SSLKIT_DATA_DIR/fashion-mnist;
 *   3. /usr/share/datasets/fashion-mnist (Debian/Ubuntu package `dataset-fashion-mnist`);
 *   4. the sslkit dataset cache (see paths.ts: datasets/cache/fashion-mnist in a repo checkout,
 *      else ~/.cache/sslkit/fashion-mnist);
 *   5. a download from the official address into the cache, verified against the published
 *      sizes and MD5s (unless `download: false` or SSLKIT_OFFLINE=1).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DatasetError, errorMessage } from "./errors";
import { downloadVerified } from "./download";
import { readIdxImagesAndLabels } from "./idx";
import { datasetCacheDir } from "./paths";
import type { ImageDataset } from "./types";

export const FASHION_MNIST_CLASS_NAMES: readonly string[] = [
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
];

/** Official download address (the fashion-mnist README's links). */
export const FASHION_MNIST_BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";

/** Debian/Ubuntu package `dataset-fashion-mnist` installs the files here. */
export const FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist";

export interface FashionMnistFile {
  /** File name of the gzip file as published. */
  name: string;
  /** Size in bytes and MD5 of the published gzip file (fashion-mnist README). */
  size: number;
  md5: string;
}

export type FashionMnistSplit = "train" | "test";

/**
 * The published files. MD5s from the fashion-mnist README; sizes are those the official server
 * sends. (Debian's copies hold the same compressed data but with the gzip header's file-name
 * field stripped, so they are 23-24 bytes smaller and hash differently: they are not verified
 * against these values, only parsed.)
 */
export const FASHION_MNIST_FILES: Readonly<Record<FashionMnistSplit, { images: FashionMnistFile; labels: FashionMnistFile }>> = {
  train: {
    images: { name: "train-images-idx3-ubyte.gz", size: 26421880, md5: "8d4fb7e6c68d591d4c3dfef9ec88bf0d" },
    labels: { name: "train-labels-idx1-ubyte.gz", size: 29515, md5: "25c81989df183df01b3e8a0aad5dffbe" },
  },
  test: {
    images: { name: "t10k-images-idx3-ubyte.gz", size: 4422102, md5: "bef4ecab320f06d8554ea6380940ec79" },
    labels: { name: "t10k-labels-idx1-ubyte.gz", size: 5148, md5: "bb300cfdad3c16e7a12a480ee83cd310" },
  },
};

export interface LoadFashionMnistOptions {
  split: FashionMnistSplit;
  /** Folder holding the files (or a `fashion-mnist` sub-folder); when given, only it is searched. */
  dir?: string;
  /**
   * Download missing files. Default: true when no `dir` is given (into the cache) unless
   * SSLKIT_OFFLINE=1; false when `dir` is given (true then downloads into `dir`).
   */
  download?: boolean;
  /** Download address (default FASHION_MNIST_BASE_URL; tests point it at a local server). */
  baseUrl?: string;
  /** Download inactivity timeout in ms (default 30 s). */
  timeoutMs?: number;
}

/** A place searched for the files and why it is searched. */
export interface DatasetLocation {
  dir: string;
  source: string;
}

/** The folders searched, in order, for Fashion-MNIST (see the module comment). */
export function fashionMnistSearchDirs(opts: { dir?: string } = {}, env: NodeJS.ProcessEnv = process.env): DatasetLocation[] {
  if (opts.dir) {
    const dir = path.resolve(opts.dir);
    return [
      { dir, source: "dir option" },
      { dir: path.join(dir, "fashion-mnist"), source: "dir option" },
    ];
  }
  const out: DatasetLocation[] = [];
  if (env.SSLKIT_DATA_DIR) out.push({ dir: path.join(path.resolve(env.SSLKIT_DATA_DIR), "fashion-mnist"), source: "SSLKIT_DATA_DIR" });
  out.push({ dir: FASHION_MNIST_SYSTEM_DIR, source: "Debian package dataset-fashion-mnist" });
  out.push({ dir: datasetCacheDir("fashion-mnist", env), source: "sslkit dataset cache" });
  return out;
}

/** `name.gz` or its uncompressed twin in `dir`, whichever exists (gzip preferred). */
function findFile(dir: string, gzName: string): string | undefined {
  for (const name of [gzName, gzName.replace(/\.gz$/, "")]) {
    const p = path.join(dir, name);
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

/** The split's files in `dir`: both, none (undefined), or a clear error when only one is there. */
function findSplitFiles(dir: string, split: FashionMnistSplit): { images: string; labels: string } | undefined {
  const spec = FASHION_MNIST_FILES[split];
  const images = findFile(dir, spec.images.name);
  const labels = findFile(dir, spec.labels.name);
  if (images && labels) return { images, labels };
  if (!images && !labels) return undefined;
  const missing = images ? spec.labels.name : spec.images.name;
  const present = (images ?? labels)!;
  throw new DatasetError(
    `${path.join(dir, missing)}: file missing (its partner ${present} is there); ` +
      `Fashion-MNIST ${split} needs both ${spec.images.name} and ${spec.labels.name} (gzip or uncompressed)`,
    path.join(dir, missing),
  );
}

/**
 * Download a split's files that are not yet in `dir` (default: the sslkit cache), each
 * verified against its published size and MD5 and written atomically. Returns `dir`.
 */
export async function downloadFashionMnist(
  opts: { split?: FashionMnistSplit | "all"; dir?: string; baseUrl?: string; timeoutMs?: number } = {},
): Promise<string> {
  const dir = path.resolve(opts.dir ?? datasetCacheDir("fashion-mnist"));
  const base = (opts.baseUrl ?? FASHION_MNIST_BASE_URL).replace(/\/?$/, "/");
  const splits: FashionMnistSplit[] = !opts.split || opts.split === "all" ? ["train", "test"] : [opts.split];
  for (const split of splits) {
    for (const file of [FASHION_MNIST_FILES[split].images, FASHION_MNIST_FILES[split].labels]) {
      if (findFile(dir, file.name)) continue;
      await downloadVerified(base + file.name, path.join(dir, file.name), { size: file.size, md5: file.md5, timeoutMs: opts.timeoutMs });
    }
  }
  return dir;
}

function howToGet(): string {
  return (
    "To get Fashion-MNIST: `sudo apt-get install dataset-fashion-mnist` (installs " +
    `${FASHION_MNIST_SYSTEM_DIR}), or let sslkit download it (needs internet; download: true, SSLKIT_OFFLINE unset), ` +
    `or put the four files from ${FASHION_MNIST_BASE_URL} in $SSLKIT_DATA_DIR/fashion-mnist. See datasets/README.md.`
  );
}

/** Fashion-MNIST split as an ImageDataset: uint8 NHWC [N, 28, 28, 1], labels 0..9. */
export async function loadFashionMnist(opts: LoadFashionMnistOptions): Promise<ImageDataset> {
  const split = opts?.split;
  if (split !== "train" && split !== "test") throw new DatasetError(`loadFashionMnist: split must be "train" or "test", got ${JSON.stringify(split)}`);
  const locations = fashionMnistSearchDirs({ dir: opts.dir });
  let found: { images: string; labels: string } | undefined;
  for (const loc of locations) {
    found = findSplitFiles(loc.dir, split);
    if (found) break;
  }
  if (!found) {
    const spec = FASHION_MNIST_FILES[split];
    const offline = process.env.SSLKIT_OFFLINE === "1" || process.env.SSLKIT_OFFLINE === "true";
    const download = opts.download ?? (!opts.dir && !offline);
    const looked = locations.map((l) => `  - ${l.dir} (${l.source})`).join("\n");
    let downloadNote: string;
    if (download) {
      const target = opts.dir ? path.resolve(opts.dir) : datasetCacheDir("fashion-mnist");
      try {
        await downloadFashionMnist({ split, dir: target, baseUrl: opts.baseUrl, timeoutMs: opts.timeoutMs });
        found = findSplitFiles(target, split);
        downloadNote = "";
      } catch (err) {
        downloadNote = `The download failed: ${errorMessage(err)}\n`;
      }
    } else {
      downloadNote = opts.dir ? "No download was tried (a dir was given and download is not true).\n" : "No download was tried (download: false or SSLKIT_OFFLINE=1).\n";
    }
    if (!found) {
      throw new DatasetError(
        `Fashion-MNIST ${split} split not found: looked for ${spec.images.name} and ${spec.labels.name} ` +
          `(or uncompressed) in\n${looked}\n${downloadNote}${howToGet()}`,
        locations[0].dir,
      );
    }
  }
  const idx = await readIdxImagesAndLabels(found.images, found.labels, FASHION_MNIST_CLASS_NAMES.length);
  return {
    name: `fashion-mnist/${split}`,
    images: idx.images,
    labels: idx.labels,
    classNames: [...FASHION_MNIST_CLASS_NAMES],
    count: idx.count,
    height: idx.height,
    width: idx.width,
    channels: 1,
  };
}
