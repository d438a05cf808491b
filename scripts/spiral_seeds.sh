#!/usr/bin/env bash
# Trains examples/spiral with its default settings for seeds 0-9 and prints the
# accuracies and their means (the figure the spiral example's documentation quotes).
# Usage: scripts/spiral_seeds.sh [build-dir]   (default: build/release, built if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
if [[ ! -x "$build/examples/spiral" ]]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j "$(nproc)" --target spiral >/dev/null
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for s in $(seq 0 9); do
    r=$("$build/examples/spiral" --seed "$s" --quiet --out "$out")
    train=$(sed -n 's/^train accuracy: //p' <<<"$r")
    test=$(sed -n 's/^test accuracy: //p' <<<"$r")
    echo "seed $s  train $train  test $test"
done | tee "$out/table"
awk '{t += $4; u += $6} END {printf "mean   train %.4f  test %.4f\n", t / NR, u / NR}' "$out/table"
