#!/usr/bin/env bash
# Installs any missing Debian packages, builds tapegrad (Release) and runs the main
# examples: the scalar tape walk-through and the spiral classifier.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
echo "== examples/scalar =="
./build/release/examples/scalar build/release/scalar.dot
if [[ -x build/release/examples/spiral ]]; then
    echo "== examples/spiral =="
    mkdir -p build/release/spiral-out
    ./build/release/examples/spiral --out build/release/spiral-out
    echo "pictures: build/release/spiral-out/spiral_regions.png, spiral_loss.png"
fi
