/**
 * CIFAR-10, binary version (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html):
 * `data_batch_1.bin` .. `data_batch_5.bin` (train, 50,000) and `test_batch.bin` (10,000). Each
 * record is 1 label byte then 3072 pixel bytes, channel-planar: 1024 R, 1024 G, 1024 B, each a
 * row-major 32x32 plane. sslkit converts to NHWC.
 *
 * Lookup: the `dir` option (the folder with the .bin files, or a folder holding
 * `cifar-10-batches-bin`); without `dir`, $SSLKIT_DATA_DIR/cifar10, $SSLKIT_DATA_DIR and the
 * sslkit cache folder `cifar10` (each also with a `cifar-10-batches-bin` sub-folder). There is
 * no automatic download (the archive is 162 MB): see datasets/README.md.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DatasetError, errorMessage } from "./errors";
import { checkLabelRange } from "./idx";
import { datasetCacheDir } from "./paths";
import type { ImageDataset } from "./types";
import type { DatasetLocation } from "./fashion-mnist";

export const CIFAR10_CLASS_NAMES: readonly string[] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

export const CIFAR10_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/** MD5 of that archive as published on the CIFAR page (170,052,171 bytes). */
export const CIFAR10_BINARY_MD5 = "c32a1d4ab5d03f1284b67883e8d87530";

const SIDE = 32;
const PLANE = SIDE * SIDE;
const RECORD = 1 + 3 * PLANE;

export interface LoadCifar10Options {
  split: "train" | "test";
  /** Folder with the .bin files, or a folder holding `cifar-10-batches-bin`. */
  dir?: string;
}

/** Batch file names of a split. */
export function cifar10BatchFiles(split: "train" | "test"): string[] {
  return split === "train" ? [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`) : ["test_batch.bin"];
}

/** The folders searched for CIFAR-10 binaries, in order. */
export function cifar10SearchDirs(opts: { dir?: string } = {}, env: NodeJS.ProcessEnv = process.env): DatasetLocation[] {
  const roots: DatasetLocation[] = [];
  if (opts.dir) roots.push({ dir: path.resolve(opts.dir), source: "dir option" });
  else {
    if (env.SSLKIT_DATA_DIR) {
      roots.push({ dir: path.join(path.resolve(env.SSLKIT_DATA_DIR), "cifar10"), source: "SSLKIT_DATA_DIR" });
      roots.push({ dir: path.resolve(env.SSLKIT_DATA_DIR), source: "SSLKIT_DATA_DIR" });
    }
    roots.push({ dir: datasetCacheDir("cifar10", env), source: "sslkit dataset cache" });
  }
  return roots.flatMap((r) => [r, { dir: path.join(r.dir, "cifar-10-batches-bin"), source: r.source }]);
}

function looksLikeCifarDir(dir: string): boolean {
  return ["data_batch_1.bin", "test_batch.bin", "batches.meta.txt"].some((f) => fs.existsSync(path.join(dir, f)));
}

/** Class names from batches.meta.txt (one per line), else the standard ten. */
function readClassNames(dir: string): string[] {
  const meta = path.join(dir, "batches.meta.txt");
  if (!fs.existsSync(meta)) return [...CIFAR10_CLASS_NAMES];
  const names = fs
    .readFileSync(meta, "utf8")
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (names.length === 0) throw new DatasetError(`${meta}: holds no class names`, meta);
  return names;
}

/** Convert channel-planar CIFAR records into NHWC pixels and labels (record i -> image offset + i). */
export function decodeCifarRecords(bytes: Uint8Array, images: Uint8Array, labels: Uint8Array, offset: number): void {
  const n = bytes.length / RECORD;
  for (let r = 0; r < n; r++) {
    const src = r * RECORD;
    labels[offset + r] = bytes[src];
    const dst = (offset + r) * 3 * PLANE;
    for (let p = 0; p < PLANE; p++) {
      images[dst + 3 * p] = bytes[src + 1 + p];
      images[dst + 3 * p + 1] = bytes[src + 1 + PLANE + p];
      images[dst + 3 * p + 2] = bytes[src + 1 + 2 * PLANE + p];
    }
  }
}

/** CIFAR-10 split as an ImageDataset: uint8 NHWC [N, 32, 32, 3]. */
export async function loadCifar10(opts: LoadCifar10Options): Promise<ImageDataset> {
  const split = opts?.split;
  if (split !== "train" && split !== "test") throw new DatasetError(`loadCifar10: split must be "train" or "test", got ${JSON.stringify(split)}`);
  const locations = cifar10SearchDirs({ dir: opts.dir });
  const dir = locations.find((l) => looksLikeCifarDir(l.dir))?.dir;
  if (!dir) {
    throw new DatasetError(
      `CIFAR-10 (binary version) not found: looked for ${cifar10BatchFiles(split).join(", ")} in\n` +
        locations.map((l) => `  - ${l.dir} (${l.source})`).join("\n") +
        `\nTo get it: download ${CIFAR10_BINARY_URL}, extract it (tar xzf) and pass the folder as dir ` +
        `(or put cifar-10-batches-bin in $SSLKIT_DATA_DIR/cifar10). See datasets/README.md.`,
      locations[0]?.dir,
    );
  }
  const files = cifar10BatchFiles(split).map((f) => path.join(dir, f));
  const contents: Uint8Array[] = [];
  for (const file of files) {
    let bytes: Buffer;
    try {
      bytes = await fs.promises.readFile(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new DatasetError(
        code === "ENOENT" ? `${file}: file missing (CIFAR-10 ${split} needs ${cifar10BatchFiles(split).join(", ")})` : `${file}: cannot read (${errorMessage(err)})`,
        file,
      );
    }
    if (bytes.length === 0 || bytes.length % RECORD !== 0) {
      throw new DatasetError(
        `${file}: truncated or not a CIFAR-10 binary batch: ${bytes.length} bytes is not a positive multiple of ${RECORD} ` +
          `(1 label byte + 3072 pixel bytes per record)`,
        file,
      );
    }
    contents.push(bytes);
  }
  const classNames = readClassNames(dir);
  const count = contents.reduce((a, b) => a + b.length / RECORD, 0);
  const images = new Uint8Array(count * 3 * PLANE);
  const labels = new Uint8Array(count);
  let offset = 0;
  contents.forEach((bytes, i) => {
    const n = bytes.length / RECORD;
    decodeCifarRecords(bytes, images, labels, offset);
    checkLabelRange(labels.subarray(offset, offset + n), classNames.length, files[i]);
    offset += n;
  });
  return { name: `cifar10/${split}`, images, labels, classNames, count, height: SIDE, width: SIDE, channels: 3 };
}
