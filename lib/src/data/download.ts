/**
 * Verified, atomic downloads: the bytes are streamed to a temporary file next to the
 * destination while their size and MD5 are computed; only a file that matches the published
 * size and checksum is renamed into place. Anything else (HTTP error, timeout, wrong size or
 * checksum) removes the temporary file, so the cache never holds a partial or corrupt file.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { DatasetError, errorMessage } from "./errors";

/** What a file must look like: byte size and/or hex MD5. */
export interface FileExpectation {
  size?: number;
  md5?: string;
}

export interface DownloadVerifiedOptions extends FileExpectation {
  /** Abort when no data arrives for this long (default 30 s). */
  timeoutMs?: number;
  /** Redirects followed at most (default 5). */
  maxRedirects?: number;
}

/** Hex MD5 of a file, streamed. */
export async function fileMd5(file: string): Promise<string> {
  const hash = crypto.createHash("md5");
  await pipeline(fs.createReadStream(file), hash);
  return hash.digest("hex");
}

/** Throw a DatasetError naming the file when its size or MD5 differs from the expectation. */
export async function verifyFile(file: string, expect: FileExpectation): Promise<void> {
  let size: number;
  try {
    size = (await fs.promises.stat(file)).size;
  } catch (err) {
    throw new DatasetError(`${file}: cannot verify, ${errorMessage(err)}`, file);
  }
  if (expect.size !== undefined && size !== expect.size) {
    throw new DatasetError(`${file}: size ${size} bytes, expected ${expect.size}`, file);
  }
  if (expect.md5 !== undefined) {
    const md5 = await fileMd5(file);
    if (md5 !== expect.md5.toLowerCase()) throw new DatasetError(`${file}: MD5 ${md5} does not match the published ${expect.md5}`, file);
  }
}

/** GET `url`, following redirects; resolves with the 200 response. */
function httpGet(url: string, timeoutMs: number, redirectsLeft: number, state: { timedOut?: string }): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      reject(new Error(`invalid URL '${url}'`));
      return;
    }
    const client = parsed.protocol === "https:" ? https : parsed.protocol === "http:" ? http : undefined;
    if (!client) {
      reject(new Error(`unsupported protocol '${parsed.protocol}' in ${url}`));
      return;
    }
    const req = client.get(parsed, { headers: { "user-agent": "sslkit" } }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        if (redirectsLeft <= 0) {
          reject(new Error(`too many redirects at ${url}`));
          return;
        }
        const next = new URL(res.headers.location, parsed).toString();
        httpGet(next, timeoutMs, redirectsLeft - 1, state).then(resolve, reject);
        return;
      }
      if (status !== 200) {
        res.resume();
        reject(new Error(`HTTP ${status} ${res.statusMessage ?? ""} from ${url}`.trim()));
        return;
      }
      resolve(res);
    });
    // Socket inactivity timeout: covers connecting, waiting for headers and stalls mid-body.
    req.setTimeout(timeoutMs, () => {
      state.timedOut = `no data from ${url} for ${timeoutMs / 1000} s (timed out)`;
      req.destroy(new Error(state.timedOut));
    });
    req.on("error", reject);
  });
}

/**
 * Download `url` to `dest` atomically (temporary file + rename) and check `size` / `md5`.
 * Resolves once `dest` holds the verified file; on any failure `dest` is untouched, the
 * temporary file is removed and a DatasetError names the URL, the destination and the cause.
 */
export async function downloadVerified(url: string, dest: string, opts: DownloadVerifiedOptions = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const maxRedirects = opts.maxRedirects ?? 5;
  await fs.promises.mkdir(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.partial-${process.pid}-${crypto.randomBytes(4).toString("hex")}`;
  let received = 0;
  let started = false;
  const state: { timedOut?: string } = {};
  try {
    const res = await httpGet(url, timeoutMs, maxRedirects, state);
    const declared = Number(res.headers["content-length"]);
    if (opts.size !== undefined && Number.isFinite(declared) && res.headers["content-length"] !== undefined && declared !== opts.size) {
      res.destroy();
      throw new Error(`server announces ${declared} bytes, expected ${opts.size}`);
    }
    const hash = crypto.createHash("md5");
    started = true;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        received += chunk.length;
        if (opts.size !== undefined && received > opts.size) {
          done(new Error(`received more than the expected ${opts.size} bytes`));
          return;
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    await pipeline(res, meter, fs.createWriteStream(tmp, { flags: "wx" }));
    if (res.complete === false) throw new Error(`connection closed after ${received} bytes`);
    if (opts.size !== undefined && received !== opts.size) throw new Error(`received ${received} bytes, expected ${opts.size} (truncated download)`);
    const md5 = hash.digest("hex");
    if (opts.md5 !== undefined && md5 !== opts.md5.toLowerCase()) {
      throw new Error(`MD5 ${md5} does not match the published ${opts.md5} (corrupt download)`);
    }
    await fs.promises.rename(tmp, dest);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    if (err instanceof DatasetError) throw err;
    let cause = state.timedOut ?? errorMessage(err);
    if (started && opts.size !== undefined && received < opts.size) cause = `connection lost after ${received} of ${opts.size} bytes (truncated download: ${cause})`;
    throw new DatasetError(`download of ${url} to ${dest} failed: ${cause}; nothing was written`, dest);
  }
}
