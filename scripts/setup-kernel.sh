#!/usr/bin/env bash
# Registers the project's tslab (TypeScript) kernel WITHOUT touching the user's global Jupyter
# setup: writes a kernelspec to <project>/.jupyter-env/share/jupyter/kernels/tslab (gitignored).
# Jupyter finds it when started with
#   JUPYTER_PATH=<project>/.jupyter-env/share/jupyter
# (scripts/run-notebooks.sh and scripts/screenshot-notebook.sh set that themselves).
# Idempotent; run by `npm install` (postinstall) and safe to rerun after moving the checkout.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TSLAB_BIN="$ROOT/node_modules/tslab/bin/tslab"
KERNEL_DIR="$ROOT/.jupyter-env/share/jupyter/kernels/tslab"

if [ ! -f "$TSLAB_BIN" ]; then
  echo "setup-kernel: $TSLAB_BIN not found; run 'npm install' first (tslab is a devDependency)" >&2
  exit 1
fi
NODE_BIN="$(command -v node || true)"
if [ -z "$NODE_BIN" ]; then
  echo "setup-kernel: node is not on PATH" >&2
  exit 1
fi

mkdir -p "$KERNEL_DIR"
# The same argv that `tslab install` writes ([tslab, kernel, --config-path, {connection_file}]),
# but with absolute paths to this project's node and tslab, so the kernel does not depend on PATH
# or on a global tslab. tslab's kernel also prefers the node_modules/tslab found above the
# notebook's folder, which is this one.
"$NODE_BIN" -e '
const [file, node, tslab] = process.argv.slice(1);
const spec = {
  argv: [node, tslab, "kernel", "--config-path", "{connection_file}"],
  display_name: "TypeScript (sslkit tslab)",
  language: "typescript",
  metadata: { debugger: false },
};
require("fs").writeFileSync(file, JSON.stringify(spec, null, 2) + "\n");
' "$KERNEL_DIR/kernel.json" "$NODE_BIN" "$TSLAB_BIN"
echo "setup-kernel: wrote $KERNEL_DIR/kernel.json"
echo "setup-kernel: use it with JUPYTER_PATH=$ROOT/.jupyter-env/share/jupyter"
