/**
 * Datasets by name, for the CLI and notebooks: "fashion-mnist", "cifar10", or a path. A path
 * is recognised by what it holds: CIFAR-10 binary batches, Fashion-MNIST/MNIST-style IDX files
 * (the Fashion-MNIST file names), or an image folder with one sub-folder per split
 * (`<path>/train/<class>/<images>`, `<path>/test/<class>/<images>`).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { cifar10SearchDirs, loadCifar10 } from "./cifar10";
import { DatasetError } from "./errors";
import { FASHION_MNIST_FILES, loadFashionMnist } from "./fashion-mnist";
import { loadImageFolder } from "./image-folder";
import type { LoadImageFolderOptions } from "./image-folder";
import type { ImageDataset } from "./types";

/** Built-in dataset names (anything else is taken as a path). */
export const DATASET_NAMES = ["fashion-mnist", "cifar10"] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

export interface LoadDatasetByNameOptions {
  /** Folder of a built-in dataset (as the `dir` option of its loader). */
  dir?: string;
  /** Passed to loadFashionMnist. */
  download?: boolean;
  /** For image folders. */
  imageFolder?: LoadImageFolderOptions;
}

const ALIASES: Record<string, DatasetName> = {
  "fashion-mnist": "fashion-mnist",
  fashion_mnist: "fashion-mnist",
  fashionmnist: "fashion-mnist",
  "cifar10": "cifar10",
  "cifar-10": "cifar10",
};

function hasAny(dir: string, names: string[]): boolean {
  return names.some((n) => fs.existsSync(path.join(dir, n)));
}

/** Load split `split` of a built-in dataset or of the dataset at a path. */
export async function loadDatasetByName(name: string, split: "train" | "test", opts: LoadDatasetByNameOptions = {}): Promise<ImageDataset> {
  if (split !== "train" && split !== "test") throw new DatasetError(`loadDatasetByName: split must be "train" or "test", got ${JSON.stringify(split)}`);
  const builtin = ALIASES[name.toLowerCase()];
  if (builtin === "fashion-mnist") return loadFashionMnist({ split, dir: opts.dir, download: opts.download });
  if (builtin === "cifar10") return loadCifar10({ split, dir: opts.dir });

  const dir = path.resolve(name);
  if (!fs.existsSync(dir)) {
    throw new DatasetError(`unknown dataset '${name}': not one of ${DATASET_NAMES.join(", ")} and no such folder ${dir}`, dir);
  }
  if (!fs.statSync(dir).isDirectory()) throw new DatasetError(`${dir}: expected a dataset folder, got a file`, dir);
  if (cifar10SearchDirs({ dir }).some((l) => hasAny(l.dir, ["data_batch_1.bin", "test_batch.bin"]))) return loadCifar10({ split, dir });
  const idx = FASHION_MNIST_FILES[split];
  const idxNames = [idx.images.name, idx.labels.name].flatMap((n) => [n, n.replace(/\.gz$/, "")]);
  if (hasAny(dir, idxNames) || hasAny(path.join(dir, "fashion-mnist"), idxNames)) return loadFashionMnist({ split, dir, download: false });
  const splitDir = path.join(dir, split);
  if (!fs.existsSync(splitDir)) {
    throw new DatasetError(
      `${splitDir}: not found; a dataset folder holds CIFAR-10 binary batches, Fashion-MNIST IDX files, ` +
        `or image folders ${path.join(dir, "train")}/<class>/<images> and ${path.join(dir, "test")}/<class>/<images>`,
      splitDir,
    );
  }
  const ds = await loadImageFolder(splitDir, opts.imageFolder);
  return { ...ds, name: `${path.basename(dir)}/${split}` };
}
