/**
 * IDX files (the MNIST / Fashion-MNIST format, http://yann.lecun.com/exdb/mnist/): a big-endian
 * header `0x00 0x00 <type> <ndims>` then ndims uint32 sizes, then the data, row-major.
 * Files may be gzip-compressed (detected by the gzip magic bytes, not the file name).
 */
import * as fs from "node:fs";
import * as zlib from "node:zlib";
import { promisify } from "node:util";
import { DatasetError, errorMessage } from "./errors";

const gunzip = promisify(zlib.gunzip);

/** Magic number of an IDX file of unsigned-byte images [N, H, W]. */
export const IDX_IMAGES_MAGIC = 0x00000803;
/** Magic number of an IDX file of unsigned-byte labels [N]. */
export const IDX_LABELS_MAGIC = 0x00000801;
const IDX_UBYTE = 0x08;

/** A parsed unsigned-byte IDX array. */
export interface IdxArray {
  dims: number[];
  /** prod(dims) bytes, row-major (a copy, not a view of the file buffer). */
  data: Uint8Array;
}

function hex32(v: number): string {
  return "0x" + (v >>> 0).toString(16).padStart(8, "0");
}

function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Read a file's bytes, gunzipping when it starts with the gzip magic; errors name the file. */
export async function readMaybeGzip(file: string): Promise<Uint8Array> {
  let raw: Buffer;
  try {
    raw = await fs.promises.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new DatasetError(`${file}: file not found`, file);
    if (code === "EISDIR") throw new DatasetError(`${file}: is a directory, expected a file`, file);
    throw new DatasetError(`${file}: cannot read file (${errorMessage(err)})`, file);
  }
  if (!isGzip(raw)) return raw;
  try {
    return await gunzip(raw);
  } catch (err) {
    throw new DatasetError(`${file}: gzip data is corrupt or truncated (${errorMessage(err)}); delete the file and get it again`, file);
  }
}

/**
 * Parse an unsigned-byte IDX array from (already decompressed) bytes. `expectedMagic` is
 * checked first (so an images file passed as labels is reported as a wrong magic number); the
 * data must be exactly as long as the header says: shorter is "truncated", longer is an error too.
 */
export function parseIdx(bytes: Uint8Array, file: string, expectedMagic: number, what: string): IdxArray {
  if (bytes.length < 4) throw new DatasetError(`${file}: truncated: ${bytes.length} bytes, too short for an IDX header`, file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  if (magic !== expectedMagic) {
    throw new DatasetError(
      `${file}: wrong magic number ${hex32(magic)} (expected ${hex32(expectedMagic)} for IDX ${what}); ` +
        `this is not an IDX ${what} file or it is corrupt`,
      file,
    );
  }
  if (bytes[2] !== IDX_UBYTE) throw new DatasetError(`${file}: unsupported IDX data type 0x${bytes[2].toString(16)} (expected 0x08, unsigned byte)`, file);
  const ndims = bytes[3];
  const headerBytes = 4 + 4 * ndims;
  if (bytes.length < headerBytes) {
    throw new DatasetError(`${file}: truncated: ${bytes.length} bytes, but its header declares ${ndims} dimensions (${headerBytes} header bytes)`, file);
  }
  const dims: number[] = [];
  for (let d = 0; d < ndims; d++) dims.push(view.getUint32(4 + 4 * d, false));
  const expected = dims.reduce((a, b) => a * b, 1);
  const actual = bytes.length - headerBytes;
  const shape = dims.join("x");
  if (actual < expected) {
    throw new DatasetError(`${file}: truncated: header declares ${shape} = ${expected} data bytes but only ${actual} follow`, file);
  }
  if (actual > expected) {
    throw new DatasetError(`${file}: corrupt: header declares ${shape} = ${expected} data bytes but ${actual} follow (${actual - expected} extra)`, file);
  }
  return { dims, data: new Uint8Array(bytes.subarray(headerBytes, headerBytes + expected)) };
}

/** Images [count, height, width] from IDX bytes (magic 0x00000803). */
export function parseIdxImages(bytes: Uint8Array, file: string): { count: number; height: number; width: number; data: Uint8Array } {
  const arr = parseIdx(bytes, file, IDX_IMAGES_MAGIC, "images");
  const [count, height, width] = arr.dims;
  if (height < 1 || width < 1) throw new DatasetError(`${file}: images have size ${height}x${width}`, file);
  return { count, height, width, data: arr.data };
}

/** Labels [count] from IDX bytes (magic 0x00000801). */
export function parseIdxLabels(bytes: Uint8Array, file: string): Uint8Array {
  return parseIdx(bytes, file, IDX_LABELS_MAGIC, "labels").data;
}

/**
 * Read an IDX images file and its labels file (each gzip or raw) into NHWC uint8 images with one
 * channel, checking that the counts agree and every label is below `numClasses`.
 */
export async function readIdxImagesAndLabels(
  imagesFile: string,
  labelsFile: string,
  numClasses: number,
): Promise<{ images: Uint8Array; labels: Uint8Array; count: number; height: number; width: number }> {
  const [imageBytes, labelBytes] = await Promise.all([readMaybeGzip(imagesFile), readMaybeGzip(labelsFile)]);
  const images = parseIdxImages(imageBytes, imagesFile);
  const labels = parseIdxLabels(labelBytes, labelsFile);
  if (labels.length !== images.count) {
    throw new DatasetError(
      `label/image count mismatch: ${imagesFile} has ${images.count} images but ${labelsFile} has ${labels.length} labels`,
      labelsFile,
    );
  }
  if (images.count === 0) throw new DatasetError(`${imagesFile}: holds no images`, imagesFile);
  checkLabelRange(labels, numClasses, labelsFile);
  return { images: images.data, labels, count: images.count, height: images.height, width: images.width };
}

/** Throw naming the file when a label is >= numClasses. */
export function checkLabelRange(labels: Uint8Array, numClasses: number, file: string): void {
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] >= numClasses) {
      throw new DatasetError(`${file}: label ${labels[i]} at index ${i} is out of range (expected 0..${numClasses - 1})`, file);
    }
  }
}

/** Encode an unsigned-byte IDX array (for tests and for writing subsets back out). */
export function encodeIdx(dims: number[], data: Uint8Array): Uint8Array {
  const expected = dims.reduce((a, b) => a * b, 1);
  if (data.length !== expected) throw new Error(`encodeIdx: ${data.length} bytes for dims ${dims.join("x")} (${expected})`);
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  out[2] = IDX_UBYTE;
  out[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}
