#!/usr/bin/env bash
# Builds tapegrad (Release) and runs the tape-overhead benchmark in C and in PyTorch
# eager mode, then prints both side by side with the speedup.
#
#   bench/run_tape_overhead.sh [build-dir]        default build dir: build/bench-release
#
# Environment: TG_BATCHES (51), TG_CYCLES (100000) for the C loop; TORCH_BATCHES (51),
# TORCH_CYCLES (5000) for the PyTorch loop; PYTHON (/usr/bin/python3).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/bench-release}
python=${PYTHON:-/usr/bin/python3}

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_build "$build" bench_tape_overhead

bench_run tapegrad "$build/bench/tape_overhead" "${TG_BATCHES:-51}" "${TG_CYCLES:-100000}"
bench_run PyTorch "$python" "$root/bench/tape_overhead_torch.py" "${TORCH_BATCHES:-51}" \
    "${TORCH_CYCLES:-5000}"

field() { bench_best "$1" "$2" median_ns; } # one RESULT line per side
c_med=$(field tapegrad median_ns); c_min=$(field tapegrad min_ns)
c_alloc=$(field tapegrad allocs_per_cycle)
t_med=$(field torch median_ns); t_min=$(field torch min_ns)

echo
echo "y = sin(x1) + x1*x2 on 0-d f64: record + backward + reset, ns per cycle"
printf '| %-16s | %12s | %12s | %18s |\n' "" "median ns" "min ns" "allocs/cycle"
printf '|%s|%s|%s|%s|\n' "------------------" "--------------" "--------------" "--------------------"
printf '| %-16s | %12s | %12s | %18s |\n' "tapegrad" "$c_med" "$c_min" "$c_alloc"
printf '| %-16s | %12s | %12s | %18s |\n' "PyTorch eager" "$t_med" "$t_min" "n/a"
awk -v c="$c_med" -v t="$t_med" -v cm="$c_min" -v tm="$t_min" 'BEGIN {
    printf "| %-16s | %11.1fx | %11.1fx | %18s |\n", "speedup", t / c, tm / cm, "" }'
