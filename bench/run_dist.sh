#!/usr/bin/env bash
# bench/run_dist.sh — data-parallel training on this machine: the training time of one
# Fashion-MNIST epoch (examples/fashion_mnist, MLP and CNN, batch 64, Adam) with
#   1 process, 1 OpenBLAS thread;  2 processes (mpirun, --distributed), 1 thread each;
#   1 process, 2 OpenBLAS threads (the same 2 cores used inside one process),
# best of --reps runs each (the machine may be shared), then tg_dist_allreduce_grads alone
# for the two models' gradient sizes and a sweep (bench/dist_allreduce.c). Prints the load
# average before and after, since other processes change every figure here.
# Usage: bench/run_dist.sh [--limit N] [--reps R]   (needs scripts/deps.sh --data)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
limit=60000
reps=3
while (($#)); do
    case "$1" in
    --limit) limit=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    *) echo "run_dist.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
build=$root/build/bench-dist
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTG_BUILD_TESTS=OFF \
    -DTG_BUILD_EXAMPLES=ON -DTG_BUILD_BENCH=ON >/dev/null
cmake --build "$build" -j2 --target fashion_mnist bench_dist_allreduce >/dev/null
ex=$build/examples/fashion_mnist
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# epoch_seconds <threads> <procs> <model>: the example's training time of one epoch.
epoch_seconds() {
    local args=(--model "$3" --epochs 1 --limit "$limit" --quiet --out "$out")
    if (($2 == 1)); then
        OPENBLAS_NUM_THREADS=$1 "$ex" "${args[@]}"
    else
        OPENBLAS_NUM_THREADS=$1 "$root/scripts/mpirun.sh" "$2" "$ex" --distributed "${args[@]}"
    fi | awk '/mean training time per epoch/ { print $6 }'
}

best_of() { sort -g | head -1; }

for model in mlp cnn; do
    one=$(for _ in $(seq "$reps"); do epoch_seconds 1 1 "$model"; done | best_of)
    two=$(for _ in $(seq "$reps"); do epoch_seconds 1 2 "$model"; done | best_of)
    thr=$(for _ in $(seq "$reps"); do epoch_seconds 2 1 "$model"; done | best_of)
    awk -v m="$model" -v n="$limit" -v a="$one" -v b="$two" -v c="$thr" 'BEGIN {
        printf "RESULT dist model=%s images=%d one_proc_s=%.3f two_procs_s=%.3f " \
               "two_threads_s=%.3f speedup_procs=%.2f efficiency_procs=%.2f " \
               "speedup_threads=%.2f\n", m, n, a, b, c, a / b, a / b / 2, a / c }'
done
"$root/scripts/mpirun.sh" 2 "$build/bench/dist_allreduce"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
