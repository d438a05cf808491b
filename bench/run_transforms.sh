#!/usr/bin/env bash
# Builds tapegrad (Release) and measures tg_jvp, tg_jacobian, tg_hessian and
# tg_checkpoint against one forward + backward sweep (bench/transforms.c).
#
#   bench/run_transforms.sh [build-dir]     default build dir: build/bench-release
#
# Environment: TG_REPS (21): timed runs per measurement (the median is shown).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/bench-release}

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_build "$build" bench_transforms
bench_run transforms "$build/bench/transforms" "${TG_REPS:-21}"
