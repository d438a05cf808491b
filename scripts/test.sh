#!/usr/bin/env bash
# Builds tapegrad and runs every test. Usage: scripts/test.sh [preset]  (default: release;
# "ci" turns warnings into errors, "asan" builds with AddressSanitizer + UBSan).
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)"
ctest --preset "$preset" -j "$(nproc)"
