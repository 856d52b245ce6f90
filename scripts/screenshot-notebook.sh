#!/usr/bin/env bash
# Screenshot an (executed) notebook as classic Jupyter Notebook shows it, to check that its
# outputs render in a browser (e.g. that a chart's PNG fallback is visible).
#
#   bash scripts/screenshot-notebook.sh notebooks/_executed/01-simclr.ipynb /tmp/simclr.png
#
# Starts Debian's classic `jupyter-notebook` (/usr/bin/python3, JUPYTER_PATH with the project's
# tslab kernelspec, no token/password, 127.0.0.1, a free port, --no-browser) on a temporary copy
# of the notebook, with Jupyter's config/data/runtime dirs in a temporary folder (the user's own
# Jupyter setup is neither read nor written), opens it in headless Chromium, waits for the page to
# render, writes the screenshot and stops the server.
#   SCREENSHOT_WIDTH / SCREENSHOT_HEIGHT  window size (default 1280 x 4000)
#   SCREENSHOT_WAIT_MS                     virtual time Chromium waits for rendering (default 15000)
#   CHROMIUM                               browser binary (default /usr/bin/chromium)
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <notebook.ipynb> <out.png>" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NB="$1"
OUT="$2"
PY="${SSLKIT_PYTHON:-/usr/bin/python3}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
WIDTH="${SCREENSHOT_WIDTH:-1280}"
HEIGHT="${SCREENSHOT_HEIGHT:-4000}"
WAIT_MS="${SCREENSHOT_WAIT_MS:-15000}"

[ -f "$NB" ] || { echo "screenshot-notebook: no such notebook: $NB" >&2; exit 2; }
command -v "$CHROMIUM" >/dev/null 2>&1 || { echo "screenshot-notebook: $CHROMIUM not found (apt-get install chromium)" >&2; exit 2; }
"$PY" -c "import notebook" 2>/dev/null || { echo "screenshot-notebook: classic notebook not importable by $PY (apt-get install jupyter-notebook)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sslkit-screenshot.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/serve" "$WORK/config" "$WORK/data" "$WORK/runtime" "$WORK/chrome"
NAME="$(basename "$NB")"
cp "$NB" "$WORK/serve/$NAME"

ROOT_FLAG=()
if [ "$(id -u)" -eq 0 ]; then ROOT_FLAG=(--allow-root); fi
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"

JUPYTER_PATH="$ROOT/.jupyter-env/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}" \
JUPYTER_CONFIG_DIR="$WORK/config" JUPYTER_DATA_DIR="$WORK/data" JUPYTER_RUNTIME_DIR="$WORK/runtime" \
  "$PY" -m notebook --no-browser --ip=127.0.0.1 --port="$PORT" --port-retries=0 \
    --NotebookApp.token='' --NotebookApp.password='' "${ROOT_FLAG[@]}" \
    --notebook-dir="$WORK/serve" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

BASE="http://127.0.0.1:$PORT"
for i in $(seq 1 150); do
  if "$PY" -c "import urllib.request, sys; urllib.request.urlopen('$BASE/api', timeout=2)" 2>/dev/null; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "screenshot-notebook: the notebook server exited:" >&2
    cat "$WORK/server.log" >&2
    exit 1
  fi
  if [ "$i" -eq 150 ]; then
    echo "screenshot-notebook: the notebook server did not answer on $BASE within 30 s" >&2
    cat "$WORK/server.log" >&2
    exit 1
  fi
  sleep 0.2
done

URL="$BASE/notebooks/$("$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$NAME")"
mkdir -p "$(dirname "$(realpath -m "$OUT")")"
OUT_ABS="$(realpath -m "$OUT")"
rm -f "$OUT_ABS"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --disable-dev-shm-usage --hide-scrollbars \
  --user-data-dir="$WORK/chrome" --window-size="$WIDTH,$HEIGHT" \
  --virtual-time-budget="$WAIT_MS" \
  --screenshot="$OUT_ABS" "$URL" >"$WORK/chrome.log" 2>&1 || true

if [ ! -s "$OUT_ABS" ]; then
  echo "screenshot-notebook: Chromium wrote no screenshot; its log:" >&2
  cat "$WORK/chrome.log" >&2
  exit 1
fi
echo "screenshot-notebook: $NB -> $OUT ($URL)"
