// Builds the addon with node-gyp against the system OpenBLAS (Debian: libopenblas-dev). Never fails
// the install: without a compiler or OpenBLAS, sslkit runs on wasm's own kernels and says why.
"use strict";
const { spawnSync } = require("node:child_process");
const path = require("node:path");

if (process.env.SSLKIT_NATIVE === "0") {
  console.log("sslkit-native: skipped (SSLKIT_NATIVE=0)");
  process.exit(0);
}
const nodeGyp = process.env.npm_config_node_gyp || require.resolve("node-gyp/bin/node-gyp.js", { paths: [path.dirname(process.execPath) + "/../lib/node_modules/npm/node_modules"] });
// Build against the headers installed beside this node (Debian's and NodeSource's packages ship them)
// when they are there, so that no download from nodejs.org is needed.
const prefix = path.resolve(path.dirname(process.execPath), "..");
const localHeaders = require("node:fs").existsSync(path.join(prefix, "include", "node", "common.gypi"));
const gypArgs = localHeaders && !process.env.npm_config_nodedir ? ["rebuild", `--nodedir=${prefix}`] : ["rebuild"];
const result = spawnSync(process.execPath, [nodeGyp, ...gypArgs], { cwd: __dirname, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
if (result.status === 0) {
  console.log("sslkit-native: built (OpenBLAS kernels for the wasm backend)");
} else {
  const log = `${result.stdout ?? ""}${result.stderr ?? ""}${result.error ? String(result.error) : ""}`;
  const lines = log.split("\n").filter((l) => /error|not found|No such file/i.test(l)).slice(0, 5);
  console.warn(
    "sslkit-native: not built; sslkit will use the wasm backend's own kernels (2-3x slower training on CPU).\n" +
      "  It needs a C++ compiler and OpenBLAS (Debian/Ubuntu: apt-get install g++ make libopenblas-dev), then `npm rebuild sslkit-native`.\n" +
      lines.map((l) => `  ${l.trim()}`).join("\n"),
  );
}
