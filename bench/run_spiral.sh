#!/usr/bin/env bash
# Builds tapegrad (Release) and times one training step of the spiral example in one
# run, all on one thread (OPENBLAS_NUM_THREADS=1, torch.set_num_threads(1)): tapegrad
# and the hand-written floor (bench/spiral.c, linked to the shared library; tapegrad
# again from bench/spiral_static, linked to the static archive), libtorch C++
# (bench/peers/libtorch.cpp), PyTorch eager and NumPy (bench/spiral_peers.py). Prints
# each program's output, then the table.
#
#   bench/run_spiral.sh [build-dir]            default build dir: build/bench-release
#
# The machine may be shared, so the two programs run ROUNDS times in turn and the table
# takes, for each side, the round with the lowest median (all rounds are printed).
#
# Environment: REPEATS (21) timed batches of STEPS (2000) steps each, after the
# programs' warm-up; ROUNDS (3); PYTHON (/usr/bin/python3); BENCH_CLOCK=cpu times CPU
# time instead of wall time (bench_util.h).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/bench-release}
python=${PYTHON:-/usr/bin/python3}
repeats=${REPEATS:-21}
steps=${STEPS:-2000}
rounds=${ROUNDS:-3}
export OPENBLAS_NUM_THREADS=1

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_build "$build" bench_spiral bench_spiral_static bench_peer_libtorch
libtorch=$(bench_peer "$build" libtorch)

for r in $(seq 1 "$rounds"); do
    bench_run "round $r/$rounds: tapegrad and the floor (OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS)" \
        "$build/bench/spiral" "$repeats" "$steps"
    bench_run_suffix _static "round $r/$rounds: tapegrad, static library" \
        "$build/bench/spiral_static" "$repeats" "$steps" tapegrad
    bench_run "round $r/$rounds: libtorch C++" "$libtorch" spiral "$repeats" "$steps"
    bench_run "round $r/$rounds: PyTorch eager and NumPy" \
        "$python" "$root/bench/spiral_peers.py" "$repeats" "$steps"
done

field() { bench_best "$1" "$2" median_us; } # the side's round with the lowest median
tg=$(field tapegrad median_us); tg_min=$(field tapegrad min_us)
fl=$(field floor median_us); fl_min=$(field floor min_us)
th=$(field torch median_us); th_min=$(field torch min_us)
np=$(field numpy median_us); np_min=$(field numpy min_us)
ts=$(field tapegrad_static median_us); ts_min=$(field tapegrad_static min_us)
lt=$(field libtorch median_us); lt_min=$(field libtorch min_us)

echo
echo "Spiral training step (batch 20, 2-100-3 MLP, SGD momentum), F32, one thread"
awk -v tg="$tg" -v fl="$fl" -v th="$th" -v np="$np" -v tgm="$tg_min" -v flm="$fl_min" \
    -v thm="$th_min" -v npm="$np_min" -v ts="$ts" -v tsm="$ts_min" -v lt="$lt" \
    -v ltm="$lt_min" 'BEGIN {
    printf "| %-30s | %14s | %11s | %-26s |\n", "", "median us/step", "min us/step", "ratio (median)"
    printf "|%s|%s|%s|%s|\n", "--------------------------------", "---------------:",
        "------------:", "----------------------------"
    printf "| %-30s | %14.2f | %11.2f | %-26s |\n", "hand-written C floor", fl, flm, ""
    printf "| %-30s | %14.2f | %11.2f | tapegrad/floor = %6.2fx  |\n", "tapegrad", tg, tgm, tg / fl
    printf "| %-30s | %14.2f | %11.2f | shared/static  = %6.2fx  |\n", "tapegrad, static archive",
        ts, tsm, tg / ts
    printf "| %-30s | %14.2f | %11.2f | libtorch/tapegrad = %5.1fx |\n", "libtorch C++",
        lt, ltm, lt / tg
    printf "| %-30s | %14.2f | %11.2f | torch/tapegrad = %6.1fx  |\n", "PyTorch eager", th, thm, th / tg
    printf "| %-30s | %14.2f | %11.2f | numpy/tapegrad = %6.1fx  |\n", "NumPy (hand-written)", np, npm, np / tg
    printf "\ntargets: tapegrad/floor <= 2: %s (%.2fx); torch/tapegrad >= 15: %s (%.1fx)\n",
        (tg / fl <= 2) ? "met" : "MISSED", tg / fl, (th / tg >= 15) ? "met" : "MISSED", th / tg
}'

echo "per round: shared/static $(bench_round_ratios tapegrad tapegrad_static median_us);" \
    "libtorch/tapegrad $(bench_round_ratios libtorch tapegrad median_us)"
