#!/usr/bin/env bash
# Installs the Debian packages tapegrad needs to build and test, if any are missing.
# Usage: scripts/deps.sh [--bench]   (--bench adds PyTorch and NumPy for bench/)
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-dev check libcjson-dev libpng-dev)
if [[ "${1:-}" == "--bench" ]]; then
    pkgs+=(python3-torch python3-numpy)
fi
missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
