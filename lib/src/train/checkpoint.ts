/**
 * Checkpoints: named tensors (weights, buffers, optimiser state) plus JSON metadata (step,
 * epoch, batch position, RNG state, config, metrics so far), one directory per checkpoint:
 *
 *   <root>/ckpt-00000120/tensors.bin     raw little-endian tensor bytes, back to back
 *   <root>/ckpt-00000120/state.json      metadata + tensor index (name, shape, dtype, offset)
 *   <root>/ckpt-00000120/manifest.json   sizes and CRC-32 of the two files above (written last)
 *
 * Writes are atomic: everything goes to a temporary directory, is fsync'ed, then renamed into
 * place (and the parent directory fsync'ed), so a crash mid-write never leaves a half checkpoint
 * under a final name. A checkpoint whose manifest is missing or disagrees with its files is
 * reported as corrupt and `CheckpointManager.loadLatest` falls back to the previous one.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { NamedTensorData, WeightMap } from "../nn/module";

export const CHECKPOINT_FORMAT = "sslkit-checkpoint/1";

export interface CheckpointPayload {
  /** Optimisation steps completed when the checkpoint was taken. */
  step: number;
  /** JSON-serialisable metadata (epoch, batch position, RNG state, config, metrics, ...). */
  meta: Record<string, unknown>;
  /** Named tensor groups, e.g. { model: ..., "state.target": ..., optimizer: ... }. */
  tensors: Record<string, WeightMap>;
}

export interface LoadedCheckpoint extends CheckpointPayload {
  path: string;
}

export class CheckpointCorruptError extends Error {
  constructor(
    readonly checkpointPath: string,
    reason: string,
  ) {
    super(`corrupt checkpoint ${checkpointPath}: ${reason}`);
    this.name = "CheckpointCorruptError";
  }
}

interface TensorIndexEntry {
  group: string;
  name: string;
  shape: number[];
  dtype: "float32" | "int32";
  offset: number;
  byteLength: number;
}

interface Manifest {
  format: string;
  step: number;
  files: Record<string, { bytes: number; crc32: number }>;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE, as zlib) of a byte range. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function checkpointDirName(step: number): string {
  return `ckpt-${String(step).padStart(8, "0")}`;
}

function writeFileSynced(file: string, chunks: Uint8Array[]): { bytes: number; crc32: number } {
  const fd = fs.openSync(file, "w");
  let bytes = 0;
  let crc = 0;
  try {
    for (const chunk of chunks) {
      let written = 0;
      while (written < chunk.length) written += fs.writeSync(fd, chunk, written, chunk.length - written);
      bytes += chunk.length;
      crc = crc32(chunk, crc);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return { bytes, crc32: crc };
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
  } catch {
    // directories cannot be fsync'ed on every platform; the rename is still atomic
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function tensorBytes(t: NamedTensorData): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

export interface WriteCheckpointOptions {
  /** Test hook: called after the files are written, before the rename (throw to simulate a crash). */
  beforeRename?: (tmpDir: string) => void;
}

/** Atomically write a checkpoint under `root`; returns its directory. */
export function writeCheckpoint(root: string, payload: CheckpointPayload, opts: WriteCheckpointOptions = {}): string {
  if (!(Number.isInteger(payload.step) && payload.step >= 0)) throw new Error(`writeCheckpoint: step must be a non-negative integer, got ${payload.step}`);
  fs.mkdirSync(root, { recursive: true });
  const finalDir = path.join(root, checkpointDirName(payload.step));
  const tmpDir = path.join(root, `.tmp-${checkpointDirName(payload.step)}-${process.pid}-${Date.now()}`);
  fs.mkdirSync(tmpDir);
  try {
    const index: TensorIndexEntry[] = [];
    const chunks: Uint8Array[] = [];
    let offset = 0;
    for (const [group, weights] of Object.entries(payload.tensors)) {
      for (const [name, t] of Object.entries(weights)) {
        if (t.dtype !== "float32" && t.dtype !== "int32") throw new Error(`writeCheckpoint: tensor '${group}/${name}' has unsupported dtype ${t.dtype}`);
        const size = t.shape.reduce((a, b) => a * b, 1);
        if (size !== t.data.length) throw new Error(`writeCheckpoint: tensor '${group}/${name}' has ${t.data.length} values for shape [${t.shape}]`);
        const bytes = tensorBytes(t);
        index.push({ group, name, shape: t.shape.slice(), dtype: t.dtype, offset, byteLength: bytes.length });
        chunks.push(bytes);
        offset += bytes.length;
      }
    }
    const files: Manifest["files"] = {};
    files["tensors.bin"] = writeFileSynced(path.join(tmpDir, "tensors.bin"), chunks);
    const stateJson = JSON.stringify({ format: CHECKPOINT_FORMAT, step: payload.step, meta: payload.meta, tensors: index });
    files["state.json"] = writeFileSynced(path.join(tmpDir, "state.json"), [Buffer.from(stateJson, "utf8")]);
    const manifest: Manifest = { format: CHECKPOINT_FORMAT, step: payload.step, files };
    writeFileSynced(path.join(tmpDir, "manifest.json"), [Buffer.from(JSON.stringify(manifest, null, 2), "utf8")]);
    fsyncDir(tmpDir);
    opts.beforeRename?.(tmpDir);
    if (fs.existsSync(finalDir)) {
      // re-saving a step (e.g. after a resume): move the old one aside first, then drop it
      const old = `${finalDir}.old-${process.pid}-${Date.now()}`;
      fs.renameSync(finalDir, old);
      fs.renameSync(tmpDir, finalDir);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmpDir, finalDir);
    }
    fsyncDir(root);
    return finalDir;
  } catch (err) {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    throw err;
  }
}

/** Read and verify a checkpoint directory; throws `CheckpointCorruptError` on any mismatch. */
export function readCheckpoint(dir: string): LoadedCheckpoint {
  const manifestPath = path.join(dir, "manifest.json");
  if (!fs.existsSync(manifestPath)) throw new CheckpointCorruptError(dir, "no manifest.json (incomplete write?)");
  let manifest: Manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
  } catch (e) {
    throw new CheckpointCorruptError(dir, `unreadable manifest.json (${(e as Error).message})`);
  }
  if (manifest.format !== CHECKPOINT_FORMAT) throw new CheckpointCorruptError(dir, `unknown format '${manifest.format}'`);
  const contents: Record<string, Buffer> = {};
  for (const file of ["tensors.bin", "state.json"]) {
    const expected = manifest.files?.[file];
    if (!expected) throw new CheckpointCorruptError(dir, `manifest lists no ${file}`);
    const p = path.join(dir, file);
    if (!fs.existsSync(p)) throw new CheckpointCorruptError(dir, `missing ${file}`);
    const size = fs.statSync(p).size;
    if (size !== expected.bytes) throw new CheckpointCorruptError(dir, `${file} has ${size} bytes, manifest says ${expected.bytes}`);
    const buf = fs.readFileSync(p);
    if (crc32(buf) !== expected.crc32) throw new CheckpointCorruptError(dir, `${file} fails its CRC-32 check`);
    contents[file] = buf;
  }
  const state = JSON.parse(contents["state.json"].toString("utf8")) as { step: number; meta: Record<string, unknown>; tensors: TensorIndexEntry[] };
  const bin = contents["tensors.bin"];
  const tensors: Record<string, WeightMap> = {};
  for (const e of state.tensors) {
    if (e.offset + e.byteLength > bin.length) throw new CheckpointCorruptError(dir, `tensor '${e.group}/${e.name}' lies outside tensors.bin`);
    const copy = new Uint8Array(e.byteLength);
    copy.set(bin.subarray(e.offset, e.offset + e.byteLength));
    const data = e.dtype === "int32" ? new Int32Array(copy.buffer) : new Float32Array(copy.buffer);
    (tensors[e.group] ??= {})[e.name] = { shape: e.shape, dtype: e.dtype, data };
  }
  return { path: dir, step: state.step, meta: state.meta, tensors };
}

export interface CheckpointManagerOptions {
  /** How many of the newest checkpoints to keep (default 3). */
  keep?: number;
  /** Where warnings go (default console.warn). */
  warn?: (message: string) => void;
}

/** Saves numbered checkpoints under a directory, keeps the newest K, loads the newest valid one. */
export class CheckpointManager {
  readonly keep: number;
  private readonly warn: (message: string) => void;

  constructor(
    readonly root: string,
    opts: CheckpointManagerOptions = {},
  ) {
    this.keep = opts.keep ?? 3;
    if (!(Number.isInteger(this.keep) && this.keep >= 1)) throw new Error(`CheckpointManager: keep must be an integer >= 1, got ${opts.keep}`);
    this.warn = opts.warn ?? ((m) => console.warn(m));
  }

  /** Final (renamed) checkpoint directories, oldest first. */
  list(): { step: number; path: string }[] {
    if (!fs.existsSync(this.root)) return [];
    return fs
      .readdirSync(this.root)
      .map((name) => /^ckpt-(\d+)$/.exec(name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ step: Number(m[1]), path: path.join(this.root, m[0]) }))
      .sort((a, b) => a.step - b.step);
  }

  /** Write a checkpoint, then delete all but the newest `keep` (and stale temporary directories). */
  save(payload: CheckpointPayload, opts: WriteCheckpointOptions = {}): string {
    const dir = writeCheckpoint(this.root, payload, opts);
    const all = this.list();
    for (const old of all.slice(0, Math.max(0, all.length - this.keep))) fs.rmSync(old.path, { recursive: true, force: true });
    for (const name of fs.readdirSync(this.root)) {
      if (name.startsWith(".tmp-") && !name.includes(`-${process.pid}-`)) fs.rmSync(path.join(this.root, name), { recursive: true, force: true });
    }
    return dir;
  }

  /** The newest checkpoint that verifies; corrupt ones are skipped with a warning. */
  loadLatest(): LoadedCheckpoint | undefined {
    const all = this.list();
    for (let i = all.length - 1; i >= 0; i--) {
      try {
        return readCheckpoint(all[i].path);
      } catch (err) {
        if (!(err instanceof CheckpointCorruptError)) throw err;
        this.warn(`warning: ${err.message}; falling back to the previous checkpoint`);
      }
    }
    return undefined;
  }
}
