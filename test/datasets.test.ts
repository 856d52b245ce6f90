/**
 * Datasets: the real Fashion-MNIST, generated IDX / CIFAR-10 / image-folder data (round trips and
 * every corruption case), verified downloads against a local 127.0.0.1 server, and seeded batching.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import sharp from "sharp";
import { tf, useBackend } from "./helpers";
import { Rng } from "../lib/src/random";
import {
  DatasetError,
  FASHION_MNIST_CLASS_NAMES,
  FASHION_MNIST_FILES,
  CIFAR10_CLASS_NAMES,
  balancedSubset,
  datasetCacheDir,
  datasetCacheRoot,
  batchToTensor,
  datasetBatchCount,
  datasetBatches,
  datasetSummary,
  downloadVerified,
  encodeIdx,
  fashionMnistSearchDirs,
  loadCifar10,
  loadDatasetByName,
  loadFashionMnist,
  loadImageFolder,
  readIdxImagesAndLabels,
  subsetDataset,
  verifyFile,
} from "../lib/src/data";
import type { ImageDataset } from "../lib/src/data";

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "sslkit-datasets-"));
after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

let dirCounter = 0;
function freshDir(label: string): string {
  const dir = path.join(tmpRoot, `${label}-${dirCounter++}`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Assert that `promise` rejects with a DatasetError whose message matches every pattern. */
async function rejectsWith(promise: Promise<unknown>, ...patterns: (RegExp | string)[]): Promise<DatasetError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof DatasetError, `expected a DatasetError, got ${caught === undefined ? "no error" : String(caught)}`);
  for (const p of patterns) {
    if (typeof p === "string") assert.ok(caught.message.includes(p), `message should contain '${p}':\n${caught.message}`);
    else assert.match(caught.message, p);
  }
  return caught;
}

// ---------------------------------------------------------------------------------------------
// Generated IDX data

interface SmallIdx {
  count: number;
  height: number;
  width: number;
  images: Uint8Array;
  labels: Uint8Array;
}

function makeSmallIdx(count: number, height = 5, width = 4, seed = 1): SmallIdx {
  const rng = new Rng(seed);
  const images = new Uint8Array(count * height * width).map(() => rng.int(0, 256));
  const labels = new Uint8Array(count).map(() => rng.int(0, 10));
  return { count, height, width, images, labels };
}

/** Write a split's two IDX files into dir (gzip or raw); returns their paths. */
function writeIdxSplit(dir: string, split: "train" | "test", data: SmallIdx, gzip: boolean): { images: string; labels: string } {
  const spec = FASHION_MNIST_FILES[split];
  const imageBytes = encodeIdx([data.count, data.height, data.width], data.images);
  const labelBytes = encodeIdx([data.count], data.labels);
  const images = path.join(dir, gzip ? spec.images.name : spec.images.name.replace(/\.gz$/, ""));
  const labels = path.join(dir, gzip ? spec.labels.name : spec.labels.name.replace(/\.gz$/, ""));
  fs.writeFileSync(images, gzip ? zlib.gzipSync(imageBytes) : imageBytes);
  fs.writeFileSync(labels, gzip ? zlib.gzipSync(labelBytes) : labelBytes);
  return { images, labels };
}

describe("Fashion-MNIST (real files)", () => {
  test("train and test splits load with the published sizes, labels and class names", async () => {
    const train = await loadFashionMnist({ split: "train", download: false });
    const testSplit = await loadFashionMnist({ split: "test", download: false });
    assert.equal(train.count, 60000);
    assert.equal(testSplit.count, 10000);
    for (const ds of [train, testSplit]) {
      assert.equal(ds.height, 28);
      assert.equal(ds.width, 28);
      assert.equal(ds.channels, 1);
      assert.equal(ds.images.length, ds.count * 28 * 28);
      assert.equal(ds.labels.length, ds.count);
      assert.deepEqual(ds.classNames, [...FASHION_MNIST_CLASS_NAMES]);
      let min = 255;
      let max = 0;
      for (let i = 0; i < ds.images.length; i++) {
        min = Math.min(min, ds.images[i]);
        max = Math.max(max, ds.images[i]);
      }
      assert.equal(min, 0);
      assert.equal(max, 255);
      const perClass = new Array(10).fill(0);
      for (const l of ds.labels) perClass[l]++;
      assert.deepEqual(perClass, new Array(10).fill(ds.count / 10));
    }
    assert.equal(train.name, "fashion-mnist/train");
    assert.equal(train.labels[0], 9, "first training label is 9 (Ankle boot)");
    assert.equal(testSplit.labels[0], 9, "first test label is 9 (Ankle boot)");
    assert.deepEqual(FASHION_MNIST_CLASS_NAMES.slice(0, 2), ["T-shirt/top", "Trouser"]);
    // Published per-pixel statistics of the training set: mean 0.2860, std 0.3530.
    const summary = datasetSummary(train);
    assert.match(summary, /60000 images 28x28x1/);
    assert.match(summary, /pixel mean 0\.286\d std 0\.353\d/);
    assert.match(summary, /Ankle boot 6000/);
  });
});

describe("IDX parsing", () => {
  test("generated IDX files round-trip, gzip and raw, through loadFashionMnist({dir})", async () => {
    const dir = freshDir("idx-roundtrip");
    const train = makeSmallIdx(7, 5, 4, 1);
    const testData = makeSmallIdx(3, 5, 4, 2);
    writeIdxSplit(dir, "train", train, true);
    writeIdxSplit(dir, "test", testData, false);
    const a = await loadFashionMnist({ split: "train", dir });
    assert.equal(a.count, 7);
    assert.equal(a.height, 5);
    assert.equal(a.width, 4);
    assert.equal(a.channels, 1);
    assert.deepEqual(a.images, train.images);
    assert.deepEqual(a.labels, train.labels);
    const b = await loadFashionMnist({ split: "test", dir });
    assert.deepEqual(b.images, testData.images);
    assert.deepEqual(b.labels, testData.labels);
    // A parent folder holding fashion-mnist/ works too.
    const parent = freshDir("idx-parent");
    fs.mkdirSync(path.join(parent, "fashion-mnist"));
    writeIdxSplit(path.join(parent, "fashion-mnist"), "test", testData, true);
    assert.deepEqual((await loadFashionMnist({ split: "test", dir: parent })).labels, testData.labels);
  });

  test("SSLKIT_DATA_DIR is searched before the system copy; explicit dir is used alone", async () => {
    const root = freshDir("data-dir-env");
    fs.mkdirSync(path.join(root, "fashion-mnist"));
    const small = makeSmallIdx(4, 28, 28, 3);
    writeIdxSplit(path.join(root, "fashion-mnist"), "test", small, true);
    const saved = process.env.SSLKIT_DATA_DIR;
    process.env.SSLKIT_DATA_DIR = root;
    try {
      const dirs = fashionMnistSearchDirs();
      assert.equal(dirs[0].dir, path.join(root, "fashion-mnist"));
      assert.equal(dirs[1].dir, "/usr/share/datasets/fashion-mnist");
      assert.match(dirs[2].dir, /fashion-mnist$/);
      const ds = await loadFashionMnist({ split: "test", download: false });
      assert.equal(ds.count, 4);
      assert.deepEqual(ds.labels, small.labels);
      const byName = await loadDatasetByName("fashion-mnist", "test", { download: false });
      assert.equal(byName.count, 4);
    } finally {
      if (saved === undefined) delete process.env.SSLKIT_DATA_DIR;
      else process.env.SSLKIT_DATA_DIR = saved;
    }
    assert.deepEqual(
      fashionMnistSearchDirs({ dir: "/x" }).map((d) => d.dir),
      ["/x", "/x/fashion-mnist"],
    );
  });

  test("cache location: SSLKIT_CACHE_DIR, else datasets/cache in this checkout", () => {
    assert.equal(datasetCacheRoot({ SSLKIT_CACHE_DIR: "/some/cache" }), "/some/cache");
    assert.equal(datasetCacheDir("fashion-mnist", {}), path.resolve(__dirname, "..", "datasets", "cache", "fashion-mnist"));
  });

  test("missing dataset: one error listing where it looked and how to get it", async () => {
    const dir = freshDir("idx-empty");
    const err = await rejectsWith(
      loadFashionMnist({ split: "train", dir }),
      "not found",
      dir,
      "train-images-idx3-ubyte.gz",
      "apt-get install dataset-fashion-mnist",
      "SSLKIT_DATA_DIR",
      "download",
    );
    assert.equal(err.file, dir);
  });

  test("one file of a split missing names the missing file", async () => {
    const dir = freshDir("idx-missing");
    const files = writeIdxSplit(dir, "train", makeSmallIdx(5), true);
    fs.rmSync(files.labels);
    const err = await rejectsWith(loadFashionMnist({ split: "train", dir }), "file missing", files.labels);
    assert.equal(err.file, files.labels);
  });

  test("truncated data, truncated gzip and a short header each name the file", async () => {
    const raw = freshDir("idx-trunc-raw");
    const f1 = writeIdxSplit(raw, "test", makeSmallIdx(6), false);
    fs.truncateSync(f1.images, fs.statSync(f1.images).size - 7);
    await rejectsWith(loadFashionMnist({ split: "test", dir: raw }), f1.images, "truncated", "6x5x4 = 120 data bytes but only 113 follow");

    const gz = freshDir("idx-trunc-gz");
    const f2 = writeIdxSplit(gz, "test", makeSmallIdx(50), true);
    const bytes = fs.readFileSync(f2.images);
    fs.writeFileSync(f2.images, bytes.subarray(0, bytes.length - 20));
    await rejectsWith(loadFashionMnist({ split: "test", dir: gz }), f2.images, "gzip data is corrupt or truncated");

    const hdr = freshDir("idx-trunc-header");
    const f3 = writeIdxSplit(hdr, "test", makeSmallIdx(6), false);
    fs.writeFileSync(f3.labels, Uint8Array.of(0, 0, 8, 1, 0, 0));
    await rejectsWith(loadFashionMnist({ split: "test", dir: hdr }), f3.labels, "truncated", "header");

    const extra = freshDir("idx-extra");
    const f4 = writeIdxSplit(extra, "test", makeSmallIdx(6), false);
    fs.appendFileSync(f4.labels, Uint8Array.of(1, 2, 3));
    await rejectsWith(loadFashionMnist({ split: "test", dir: extra }), f4.labels, "3 extra");
  });

  test("wrong magic number: labels file where images belong, and garbage", async () => {
    const dir = freshDir("idx-magic");
    const f = writeIdxSplit(dir, "test", makeSmallIdx(6), false);
    const labels = fs.readFileSync(f.labels);
    fs.writeFileSync(f.images, labels);
    await rejectsWith(loadFashionMnist({ split: "test", dir }), f.images, "wrong magic number 0x00000801", "expected 0x00000803");

    const dir2 = freshDir("idx-magic2");
    const g = writeIdxSplit(dir2, "test", makeSmallIdx(6), false);
    fs.writeFileSync(g.labels, Buffer.from("<html>Not Found</html>"));
    await rejectsWith(loadFashionMnist({ split: "test", dir: dir2 }), g.labels, "wrong magic number 0x3c68746d", "expected 0x00000801");
  });

  test("label/image count mismatch and out-of-range labels", async () => {
    const dir = freshDir("idx-count");
    const data = makeSmallIdx(6);
    const f = writeIdxSplit(dir, "test", data, true);
    fs.writeFileSync(f.labels, zlib.gzipSync(encodeIdx([5], data.labels.subarray(0, 5))));
    await rejectsWith(loadFashionMnist({ split: "test", dir }), "label/image count mismatch", f.images, f.labels, "6 images", "5 labels");

    const dir2 = freshDir("idx-range");
    const bad = makeSmallIdx(6);
    bad.labels[4] = 10;
    const g = writeIdxSplit(dir2, "test", bad, false);
    await rejectsWith(readIdxImagesAndLabels(g.images, g.labels, 10), g.labels, "label 10 at index 4 is out of range");
  });
});

// ---------------------------------------------------------------------------------------------
// CIFAR-10

/** A CIFAR record whose R,G,B at (y,x) are (n+y, 100+x, 200+((y*x)%50)), label n%10. */
function cifarRecord(n: number): Uint8Array {
  const rec = new Uint8Array(3073);
  rec[0] = n % 10;
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 32; x++) {
      rec[1 + y * 32 + x] = (n + y) & 255;
      rec[1 + 1024 + y * 32 + x] = 100 + x;
      rec[1 + 2048 + y * 32 + x] = 200 + ((y * x) % 50);
    }
  }
  return rec;
}

function writeCifarBatch(file: string, first: number, n: number): void {
  const out = Buffer.alloc(n * 3073);
  for (let r = 0; r < n; r++) out.set(cifarRecord(first + r), r * 3073);
  fs.writeFileSync(file, out);
}

/** cifar-10-batches-bin with train batches of 2,1,1,1,1 records (indices 0..5) and a 3-record test batch. */
function writeCifar(parent: string, meta?: string): string {
  const dir = path.join(parent, "cifar-10-batches-bin");
  fs.mkdirSync(dir, { recursive: true });
  const sizes = [2, 1, 1, 1, 1];
  let first = 0;
  sizes.forEach((n, i) => {
    writeCifarBatch(path.join(dir, `data_batch_${i + 1}.bin`), first, n);
    first += n;
  });
  writeCifarBatch(path.join(dir, "test_batch.bin"), 40, 3);
  if (meta !== undefined) fs.writeFileSync(path.join(dir, "batches.meta.txt"), meta);
  return dir;
}

describe("CIFAR-10 binary", () => {
  test("records convert from channel-planar to NHWC; labels and class names", async () => {
    const parent = freshDir("cifar");
    const dir = writeCifar(parent);
    const train = await loadCifar10({ split: "train", dir: parent });
    assert.equal(train.count, 6);
    assert.deepEqual([train.height, train.width, train.channels], [32, 32, 3]);
    assert.deepEqual([...train.labels], [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(train.classNames, [...CIFAR10_CLASS_NAMES]);
    const px = (ds: ImageDataset, n: number, y: number, x: number, c: number) => ds.images[((n * 32 + y) * 32 + x) * 3 + c];
    // image 3 (first record of data_batch_3), pixel (y=7, x=11)
    assert.equal(px(train, 3, 7, 11, 0), 3 + 7);
    assert.equal(px(train, 3, 7, 11, 1), 100 + 11);
    assert.equal(px(train, 3, 7, 11, 2), 200 + ((7 * 11) % 50));
    assert.equal(px(train, 5, 31, 31, 0), 5 + 31);
    const testSplit = await loadCifar10({ split: "test", dir });
    assert.equal(testSplit.count, 3);
    assert.deepEqual([...testSplit.labels], [0, 1, 2]);
    assert.equal(px(testSplit, 2, 0, 5, 0), 42);

    const named = writeCifar(freshDir("cifar-meta"), "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n");
    assert.deepEqual((await loadCifar10({ split: "test", dir: named })).classNames, "abcdefghij".split(""));
  });

  test("truncated batch, missing batch, out-of-range label and missing dataset", async () => {
    const dir = writeCifar(freshDir("cifar-trunc"));
    const f = path.join(dir, "data_batch_2.bin");
    fs.truncateSync(f, 3000);
    await rejectsWith(loadCifar10({ split: "train", dir }), f, "truncated", "3073");

    const dir2 = writeCifar(freshDir("cifar-missing"));
    const g = path.join(dir2, "data_batch_4.bin");
    fs.rmSync(g);
    await rejectsWith(loadCifar10({ split: "train", dir: dir2 }), g, "file missing");

    const dir3 = writeCifar(freshDir("cifar-label"), "cat\ndog\n");
    await rejectsWith(loadCifar10({ split: "test", dir: dir3 }), path.join(dir3, "test_batch.bin"), "label 2 at index 2 is out of range");

    const empty = freshDir("cifar-none");
    await rejectsWith(loadCifar10({ split: "test", dir: empty }), "CIFAR-10", "not found", empty, "cifar-10-binary.tar.gz");
  });
});

// ---------------------------------------------------------------------------------------------
// Image folders

async function solidPng(file: string, width: number, height: number, rgb: [number, number, number]): Promise<void> {
  await sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).png().toFile(file);
}

/** 120x10 image: red | green | blue thirds. */
async function stripesPng(file: string): Promise<void> {
  const w = 120;
  const h = 10;
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px[(y * w + x) * 3 + Math.floor(x / 40)] = 255;
  await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
}

describe("image folders", () => {
  test("class order, resize (cover vs fill), channels, PNG/JPEG/WebP", async () => {
    const root = freshDir("folder");
    fs.mkdirSync(path.join(root, "b_stripes"));
    fs.mkdirSync(path.join(root, "a_red"));
    fs.writeFileSync(path.join(root, "labels.txt"), "ignored: files next to the class folders");
    await solidPng(path.join(root, "a_red", "1.png"), 8, 6, [255, 0, 0]);
    await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 255, g: 0, b: 0 } } })
      .jpeg({ quality: 95 })
      .toFile(path.join(root, "a_red", "2.jpg"));
    await sharp({ create: { width: 5, height: 9, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 1 } } })
      .webp({ lossless: true })
      .toFile(path.join(root, "a_red", "3.webp"));
    await stripesPng(path.join(root, "b_stripes", "s.png"));
    fs.mkdirSync(path.join(root, "c_gray"));
    await sharp(Buffer.alloc(36, 77), { raw: { width: 6, height: 6, channels: 1 } }).png().toFile(path.join(root, "c_gray", "g.png"));
    fs.writeFileSync(path.join(root, "b_stripes", ".DS_Store"), "junk");

    const px = (ds: ImageDataset, n: number, y: number, x: number) =>
      Array.from(ds.images.subarray(((n * ds.height + y) * ds.width + x) * ds.channels, ((n * ds.height + y) * ds.width + x + 1) * ds.channels));
    const cover = await loadImageFolder(root, { size: [4, 4], channels: 3, concurrency: 2 });
    assert.deepEqual(cover.classNames, ["a_red", "b_stripes", "c_gray"]);
    assert.equal(cover.count, 5);
    assert.deepEqual([...cover.labels], [0, 0, 0, 1, 2]);
    assert.deepEqual([cover.height, cover.width, cover.channels], [4, 4, 3]);
    assert.equal(cover.images.length, 5 * 4 * 4 * 3);
    assert.deepEqual(px(cover, 4, 3, 3), [77, 77, 77], "a 1-channel PNG becomes gray RGB");
    for (const n of [0, 1, 2]) {
      const [r, g, b] = px(cover, n, 2, 1);
      assert.ok(r > 240 && g < 15 && b < 15, `image ${n} should be red, got ${[r, g, b]}`);
    }
    // Colour that dominates a pixel (resampling filters blur edges a little).
    const dominant = (rgb: number[]) => (Math.max(...rgb) > 200 && rgb.filter((v) => v < 60).length === 2 ? "rgb"[rgb.indexOf(Math.max(...rgb))] : `mixed ${rgb}`);
    // cover: the 120x10 stripes scale to 48x4 and the centre 4 columns (original 55..65) are green.
    for (const x of [0, 1, 2, 3]) assert.equal(dominant(px(cover, 3, 1, x)), "g");
    // fill: stretched, so the left column is red and the right column blue.
    const fill = await loadImageFolder(root, { size: [4, 4], channels: 3, fit: "fill" });
    assert.equal(dominant(px(fill, 3, 1, 0)), "r");
    assert.equal(dominant(px(fill, 3, 1, 3)), "b");

    const gray = await loadImageFolder(root, { size: [6, 3], channels: 1 });
    assert.deepEqual([gray.height, gray.width, gray.channels], [6, 3, 1]);
    assert.equal(gray.images.length, 5 * 6 * 3);
    assert.equal(gray.images[0], 76, "pure red -> ITU-R 601 luma round(0.299 * 255) = 76");
    assert.equal(gray.images[4 * 18 + 5], 77, "gray stays gray");
  });

  test("unreadable image, empty class folder, stray file, missing folder", async () => {
    const root = freshDir("folder-bad");
    fs.mkdirSync(path.join(root, "a"));
    fs.mkdirSync(path.join(root, "b"));
    await solidPng(path.join(root, "a", "ok.png"), 4, 4, [1, 2, 3]);
    const bad = path.join(root, "b", "broken.png");
    fs.writeFileSync(bad, "this is not a PNG");
    const err = await rejectsWith(loadImageFolder(root, { size: [4, 4] }), bad, "unreadable image");
    assert.equal(err.file, bad);

    fs.rmSync(bad);
    await rejectsWith(loadImageFolder(root, { size: [4, 4] }), path.join(root, "b"), "is empty");

    const stray = path.join(root, "b", "notes.txt");
    fs.writeFileSync(stray, "x");
    await rejectsWith(loadImageFolder(root, { size: [4, 4] }), stray, "not an image file");

    await rejectsWith(loadImageFolder(path.join(root, "nope")), path.join(root, "nope"), "not found");
    await rejectsWith(loadImageFolder(path.join(root, "a")), path.join(root, "a"), "no class sub-folders");
  });

  test("loadDatasetByName recognises CIFAR, IDX and train/test image folders by their files", async () => {
    const cifarParent = freshDir("byname-cifar");
    writeCifar(cifarParent);
    assert.equal((await loadDatasetByName(cifarParent, "train")).count, 6);

    const idxDir = freshDir("byname-idx");
    writeIdxSplit(idxDir, "test", makeSmallIdx(3), true);
    assert.equal((await loadDatasetByName(idxDir, "test")).count, 3);

    const folder = freshDir("byname-folder");
    for (const split of ["train", "test"]) {
      for (const cls of ["x", "y"]) {
        fs.mkdirSync(path.join(folder, split, cls), { recursive: true });
        await solidPng(path.join(folder, split, cls, "0.png"), 3, 3, [9, 9, 9]);
      }
    }
    const ds = await loadDatasetByName(folder, "test", { imageFolder: { size: [3, 3], channels: 1 } });
    assert.equal(ds.count, 2);
    assert.deepEqual(ds.classNames, ["x", "y"]);
    assert.equal(ds.name, `${path.basename(folder)}/test`);

    await rejectsWith(loadDatasetByName(path.join(tmpRoot, "does-not-exist"), "train"), "unknown dataset", "fashion-mnist, cifar10");
    await rejectsWith(loadDatasetByName(freshDir("byname-empty"), "train"), "train: not found");
  });
});

// ---------------------------------------------------------------------------------------------
// Verified downloads against a local server

describe("verified download (127.0.0.1)", () => {
  const payload = new Uint8Array(100_000).map((_, i) => (i * 31 + (i >> 7)) & 255);
  const goodMd5 = crypto.createHash("md5").update(payload).digest("hex");
  const corrupt = new Uint8Array(payload);
  corrupt[50_000] ^= 1;
  const fakeIdx = zlib.gzipSync(encodeIdx([2], Uint8Array.of(1, 2)));
  let server: http.Server;
  let base = "";
  const stalled: http.ServerResponse[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      const url = req.url ?? "/";
      if (url === "/good") res.end(payload);
      else if (url === "/redirect") res.writeHead(302, { location: "/good" }).end();
      else if (url === "/redirect-loop") res.writeHead(301, { location: "/redirect-loop" }).end();
      else if (url === "/corrupt") res.end(corrupt);
      else if (url === "/short") {
        res.writeHead(200, { "content-length": String(payload.length) });
        res.write(payload.subarray(0, 60_000), () => res.destroy());
      } else if (url === "/stall") stalled.push(res);
      else if (url === "/stall-body") {
        res.writeHead(200, { "content-length": String(payload.length) });
        res.write(payload.subarray(0, 30_000));
        stalled.push(res);
      }
      else if (url.endsWith(".gz")) {
        // A Fashion-MNIST file name: the published size, wrong bytes, no content-length (chunked).
        const spec = [FASHION_MNIST_FILES.test.images, FASHION_MNIST_FILES.test.labels].find((f) => url.endsWith(f.name));
        const body = Buffer.alloc(spec ? spec.size : 10);
        body.set(fakeIdx);
        res.write(body);
        res.end();
      }
      else res.writeHead(404).end("not here");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const r of stalled) r.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const expect = () => ({ size: payload.length, md5: goodMd5 });

  test("a good file (through a redirect) is accepted and written", async () => {
    const dir = freshDir("dl-good");
    const dest = path.join(dir, "sub", "file.bin");
    await downloadVerified(`${base}/redirect`, dest, expect());
    assert.deepEqual(new Uint8Array(fs.readFileSync(dest)), payload);
    assert.deepEqual(fs.readdirSync(path.dirname(dest)), ["file.bin"]);
    await verifyFile(dest, expect());
    await rejectsWith(verifyFile(dest, { md5: "0".repeat(32) }), dest, "does not match");
    await rejectsWith(verifyFile(dest, { size: 5 }), dest, "size 100000 bytes, expected 5");
  });

  test("bad checksum, truncation, HTTP errors, redirect loops and stalls are rejected leaving no file", async () => {
    const cases: [string, (string | RegExp)[], object?][] = [
      ["/corrupt", ["MD5", "does not match the published", goodMd5]],
      ["/short", ["connection lost after 60000 of 100000 bytes", "truncated"]],
      ["/stall-body", ["connection lost after 30000 of 100000 bytes", "timed out"], { timeoutMs: 300 }],
      ["/missing", ["HTTP 404"]],
      ["/redirect-loop", ["too many redirects"]],
      ["/stall", ["timed out"], { timeoutMs: 300 }],
      ["/good", ["server announces 100000 bytes, expected 99999"], { size: 99_999 }],
    ];
    for (const [route, patterns, extra] of cases) {
      const dir = freshDir("dl-bad");
      const dest = path.join(dir, "file.bin");
      const err = await rejectsWith(downloadVerified(`${base}${route}`, dest, { ...expect(), ...extra }), `${base}${route}`, dest, "nothing was written", ...patterns);
      assert.equal(err.file, dest);
      assert.deepEqual(fs.readdirSync(dir), [], `${route}: no partial or temporary file may remain`);
    }
    const dir = freshDir("dl-refused");
    const dest = path.join(dir, "file.bin");
    await rejectsWith(downloadVerified("http://127.0.0.1:1/x", dest, { ...expect(), timeoutMs: 2000 }), "ECONNREFUSED");
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  test("loadFashionMnist download: files failing the published MD5 are discarded", async () => {
    const dir = freshDir("dl-fmnist");
    await rejectsWith(
      loadFashionMnist({ split: "test", dir, download: true, baseUrl: base }),
      "The download failed",
      "t10k-images-idx3-ubyte.gz",
      `does not match the published ${FASHION_MNIST_FILES.test.images.md5}`,
      "apt-get install dataset-fashion-mnist",
    );
    assert.deepEqual(fs.readdirSync(dir), []);
  });
});

// ---------------------------------------------------------------------------------------------
// Batching, subsets

/** n images of 2x2x1 whose pixels all equal the image index; label = index % 3. */
function indexDataset(n: number): ImageDataset {
  const images = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) images.fill(i, i * 4, i * 4 + 4);
  return {
    name: "index",
    images,
    labels: Uint8Array.from({ length: n }, (_, i) => i % 3),
    classNames: ["a", "b", "c"],
    count: n,
    height: 2,
    width: 2,
    channels: 1,
  };
}

function epochIndices(ds: ImageDataset, opts: Parameters<typeof datasetBatches>[1]): number[][] {
  return Array.from(datasetBatches(ds, opts), (b) => Array.from(b.indices));
}

describe("batching", () => {
  before(async () => {
    await useBackend("wasm");
  });

  test("order is a pure function of (seed, epoch); startBatch resumes it; dropLast", () => {
    const ds = indexDataset(23);
    const a = epochIndices(ds, { batchSize: 5, seed: 7, epoch: 3 });
    assert.deepEqual(epochIndices(ds, { batchSize: 5, seed: 7, epoch: 3 }), a);
    assert.equal(a.length, 4);
    assert.ok(a.every((b) => b.length === 5));
    assert.notDeepEqual(epochIndices(ds, { batchSize: 5, seed: 7, epoch: 4 }), a);
    assert.notDeepEqual(epochIndices(ds, { batchSize: 5, seed: 8, epoch: 3 }), a);
    assert.deepEqual(epochIndices(ds, { batchSize: 5, seed: 7, epoch: 3, startBatch: 2 }), a.slice(2));
    assert.deepEqual(epochIndices(ds, { batchSize: 5, seed: 7, epoch: 3, startBatch: 4 }), []);
    assert.throws(() => datasetBatches(ds, { batchSize: 5, seed: 7, startBatch: 5 }), /startBatch must be an integer in \[0, 4\]/);
    assert.throws(() => datasetBatches(ds, { batchSize: 0, seed: 7 }), /batchSize/);
    assert.throws(() => datasetBatches(ds, { batchSize: 4 }), /seed or an rng/);

    const full = epochIndices(ds, { batchSize: 5, seed: 7, epoch: 3, dropLast: false });
    assert.deepEqual(full.map((b) => b.length), [5, 5, 5, 5, 3]);
    assert.deepEqual(full.slice(0, 4), a, "dropLast only drops the tail");
    assert.deepEqual(full.flat().sort((x, y) => x - y), Array.from({ length: 23 }, (_, i) => i), "one epoch is a permutation");
    assert.notDeepEqual(full.flat(), Array.from({ length: 23 }, (_, i) => i), "and it is shuffled");
    assert.deepEqual(epochIndices(ds, { batchSize: 10, shuffle: false, dropLast: false }).flat(), Array.from({ length: 23 }, (_, i) => i));
    assert.equal(datasetBatchCount(23, 5, true), 4);
    assert.equal(datasetBatchCount(23, 5, false), 5);

    // rng option: one seed drawn at creation, so equal rng states give equal orders.
    const r1 = new Rng(5);
    const r2 = new Rng(5);
    assert.deepEqual(epochIndices(ds, { batchSize: 5, rng: r1 }), epochIndices(ds, { batchSize: 5, rng: r2 }));
  });

  test("batch contents: float [0,1] images of the listed indices and their labels", () => {
    const ds = indexDataset(23);
    for (const batch of datasetBatches(ds, { batchSize: 6, seed: 1, dropLast: false })) {
      assert.equal(batch.images.dtype, "float32");
      assert.deepEqual(batch.images.shape, [batch.indices.length, 2, 2, 1]);
      const px = batch.images.dataSync();
      batch.indices.forEach((idx, b) => {
        for (let p = 0; p < 4; p++) assert.ok(Math.abs(px[b * 4 + p] - idx / 255) < 1e-7);
        assert.equal(batch.labels[b], idx % 3);
      });
      assert.ok(batch.labels instanceof Int32Array && batch.indices instanceof Int32Array);
    }
    const t = batchToTensor(ds, [22, 0]);
    assert.deepEqual(Array.from(t.dataSync()), [22, 22, 22, 22, 0, 0, 0, 0].map((v) => Math.fround(v / 255)));
    t.dispose();
    assert.throws(() => batchToTensor(ds, [23]), /index 23 out of range/);
  });

  test("no tensor leaks: at most the current batch is alive, also after an early break", () => {
    const ds = indexDataset(40);
    const before = tf.memory().numTensors;
    for (const batch of datasetBatches(ds, { batchSize: 4, seed: 3 })) {
      assert.equal(tf.memory().numTensors, before + 1);
      assert.ok(!batch.images.isDisposed);
    }
    assert.equal(tf.memory().numTensors, before);
    let seen = 0;
    for (const batch of datasetBatches(ds, { batchSize: 4, seed: 3 })) {
      tf.dispose(batch.images); // a consumer that disposes itself (the trainer) is fine too
      if (++seen === 3) break;
    }
    assert.equal(tf.memory().numTensors, before);
    const kept = Array.from(datasetBatches(ds, { batchSize: 8, seed: 3, keepBatches: true }), (b) => b.images);
    assert.equal(tf.memory().numTensors, before + 5);
    assert.ok(kept.every((t) => !t.isDisposed));
    tf.dispose(kept);
    assert.equal(tf.memory().numTensors, before);
  });

  test("subsetDataset, balancedSubset, datasetSummary", () => {
    const ds = indexDataset(30);
    const sub = subsetDataset(ds, [4, 2, 4]);
    assert.equal(sub.count, 3);
    assert.deepEqual([...sub.labels], [1, 2, 1]);
    assert.deepEqual([...sub.images], [4, 4, 4, 4, 2, 2, 2, 2, 4, 4, 4, 4]);
    assert.deepEqual(sub.classNames, ds.classNames);
    assert.throws(() => subsetDataset(ds, [30]), /index 30 .* out of range/);

    const bal = balancedSubset(ds, 4, 11);
    assert.equal(bal.count, 12);
    const perClass = [0, 0, 0];
    for (const l of bal.labels) perClass[l]++;
    assert.deepEqual(perClass, [4, 4, 4]);
    const ids = Array.from({ length: bal.count }, (_, i) => bal.images[i * 4]);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), "kept in dataset order");
    assert.deepEqual(balancedSubset(ds, 4, 11).images, bal.images, "same seed, same subset");
    assert.notDeepEqual(balancedSubset(ds, 4, 12).images, bal.images, "other seed, other subset");
    assert.throws(() => balancedSubset(ds, 11, 1), /class 'a' .* has 10 images, fewer than 11/);

    const s = datasetSummary(ds);
    assert.match(s, /^index: 30 images 2x2x1/);
    assert.match(s, /3 classes \(a 10, b 10, c 10\)/);
  });
});
