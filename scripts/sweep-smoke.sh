#!/usr/bin/env bash
# `npx sslkit sweep` end to end on the two-arm smoke sweep (scripts/sweep-smoke.json): locally, then
# through the Slurm cluster when one is up (CI starts one with scripts/slurm-local.sh), each twice;
# the second invocation must take both arms from the cache. Used by CI; safe to run by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d "${TMPDIR:-/tmp}/sslkit-sweep-smoke.XXXXXX")"
trap 'rm -rf "$out"' EXIT
run() {  # run <label> <args...>: the sweep twice; the second must reuse both arms
  local label="$1"; shift
  npx sslkit sweep scripts/sweep-smoke.json --cache-dir "$out/$label" "$@" | tail -n 8
  local again
  again="$(npx sslkit sweep scripts/sweep-smoke.json --cache-dir "$out/$label" "$@" | tail -n 1)"
  echo "$again"
  case "$again" in
    *"2 arms, 2 from the cache, 0 failed"*) echo "sweep-smoke: $label: the second invocation reused both arms" ;;
    *) echo "sweep-smoke: $label: the second invocation did not reuse both arms" >&2; exit 1 ;;
  esac
}
run local
if sinfo -h -o '%T' 2>/dev/null | grep -Eq 'idle|mixed|allocated'; then
  npx sslkit sweep scripts/sweep-smoke.json --cache-dir "$out/dry" --executor slurm --dry-run | head -n 4
  run slurm --executor slurm --poll 1
else
  echo "sweep-smoke: no Slurm cluster up; skipped the slurm executor (bash scripts/slurm-local.sh start)"
fi
