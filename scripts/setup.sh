#!/usr/bin/env bash
# One-time (idempotent) setup on a fresh Debian/Ubuntu machine: system packages (Fashion-MNIST,
# Debian's Jupyter for the headless notebook runner, a C++ compiler and OpenBLAS for the optional
# sslkit-native kernels), npm packages (which also builds lib/ and
# registers the project-local tslab kernel through postinstall).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(dataset-fashion-mnist jupyter-notebook jupyter-nbconvert python3-nbclient python3-ipykernel g++ make libopenblas-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "setup: no apt-get; install ${missing[*]} yourself (Fashion-MNIST can also be downloaded on first use)" >&2
  fi
fi

npm ci --no-audit --no-fund
