#!/usr/bin/env bash
# `npm run notebooks -- [notebook.ipynb ...] [--timeout S] [--out-dir DIR] [--preset P] [--in-place] [--quiet]`
# Executes notebooks headlessly with the project's tslab kernel (see scripts/run-notebooks.py).
#   SSLKIT_PYTHON      Python with nbclient + nbformat (default /usr/bin/python3, Debian's Jupyter)
#   SSLKIT_PRESET      preset the notebooks read (default smoke when CI=true, else quick)
#   SSLKIT_CELL_TIMEOUT per-cell timeout in seconds (default 3600)
#   SSLKIT_SKIP_BUILD=1 do not rebuild lib/dist when lib/src is newer
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${SSLKIT_PYTHON:-/usr/bin/python3}"
if [ ! -x "$PY" ]; then PY="$(command -v python3)"; fi

if [ ! -f "$ROOT/.jupyter-env/share/jupyter/kernels/tslab/kernel.json" ]; then
  bash "$ROOT/scripts/setup-kernel.sh"
fi

# Notebooks import the built library (node_modules/sslkit -> lib, main lib/dist/index.js):
# rebuild it when it is missing or older than any source file.
if [ "${SSLKIT_SKIP_BUILD:-0}" != "1" ]; then
  if [ ! -f "$ROOT/lib/dist/index.js" ] || [ -n "$(find "$ROOT/lib/src" -newer "$ROOT/lib/dist/index.js" -name '*.ts' -print -quit)" ]; then
    echo "run-notebooks: building lib (npx tsc -p lib)"
    (cd "$ROOT" && npx tsc -p lib) || echo "run-notebooks: warning: tsc reported errors (see above); running with what was emitted" >&2
  fi
fi

exec "$PY" "$ROOT/scripts/run-notebooks.py" "$@"
