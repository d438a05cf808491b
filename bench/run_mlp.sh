#!/usr/bin/env bash
# Builds tapegrad (Release) and runs the 784-512-512-10 MLP benchmark in one run:
# raw cblas_sgemm on the step's shapes, tapegrad (bench/mlp.c, linked to the shared
# library, and bench/mlp_static, to the static archive), libtorch C++
# (bench/peers/libtorch.cpp) and PyTorch eager (bench/mlp_peers.py), all with
# OPENBLAS_NUM_THREADS=2 (libtorch's and PyTorch's own pools at one thread). Prints each
# program's output, then the tables.
#
#   bench/run_mlp.sh [build-dir]            default build dir: build/bench-release
#
# The machine may be shared (and two OpenBLAS threads on two cores are hurt by any other
# load), so the programs run ROUNDS times in turn and the table takes, for each, the
# round with the lowest median step time (all rounds are printed).
#
# Environment: REPEATS (21) timed batches of STEPS (10) iterations each; ROUNDS (3);
# PYTHON (/usr/bin/python3); BENCH_CLOCK=cpu times CPU time instead of wall time
# (bench_util.h; it counts both OpenBLAS threads).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/bench-release}
python=${PYTHON:-/usr/bin/python3}
repeats=${REPEATS:-21}
steps=${STEPS:-10}
rounds=${ROUNDS:-3}
export OPENBLAS_NUM_THREADS=2

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_build "$build" bench_mlp bench_mlp_static bench_peer_libtorch
libtorch=$(bench_peer "$build" libtorch)

for r in $(seq 1 "$rounds"); do
    bench_run "round $r/$rounds: raw sgemm (OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS)" \
        "$build/bench/mlp" gemm "$repeats" 20
    bench_run "round $r/$rounds: tapegrad" "$build/bench/mlp" tapegrad "$repeats" "$steps"
    bench_run_suffix _static "round $r/$rounds: tapegrad, static library" \
        "$build/bench/mlp_static" tapegrad "$repeats" "$steps"
    bench_run "round $r/$rounds: libtorch C++" "$libtorch" mlp "$repeats" "$steps"
    bench_run "round $r/$rounds: PyTorch eager" \
        "$python" "$root/bench/mlp_peers.py" "$repeats" "$steps"
done

v() { bench_best "$1" "$2" step_ms; } # the side's round with the lowest median step

echo
echo "MLP 784-512-512-10, batch 128, F32, SGD; OPENBLAS_NUM_THREADS=2"
awk -v ts="$(v tapegrad step_ms)" -v tsm="$(v tapegrad step_min_ms)" \
    -v tf="$(v tapegrad fwd_ms)" -v tfb="$(v tapegrad fwdbwd_ms)" \
    -v tg="$(v tapegrad gflops)" -v tt="$(v tapegrad tape_mib)" \
    -v tp="$(v tapegrad param_mib)" -v tgr="$(v tapegrad grad_mib)" \
    -v tr="$(v tapegrad rss_mib)" \
    -v ps="$(v torch step_ms)" -v psm="$(v torch step_min_ms)" \
    -v pf="$(v torch fwd_ms)" -v pfb="$(v torch fwdbwd_ms)" \
    -v pg="$(v torch gflops)" -v pp="$(v torch param_mib)" \
    -v pgr="$(v torch grad_mib)" -v pr="$(v torch rss_mib)" \
    -v pri="$(v torch rss_import_mib)" \
    -v g1="$(v gemm fwd1_gflops)" -v g2="$(v gemm fwd2_gflops)" \
    -v gs="$(v gemm step_gflops)" -v gms="$(v gemm step_ms)" \
    -v gmf="$(v gemm step_mflop)" 'BEGIN {
    row = "| %-44s | %14s | %14s |\n"
    printf row, "", "tapegrad", "PyTorch eager"
    printf "|%s|%s|%s|\n", "----------------------------------------------", "---------------:",
        "---------------:"
    printf row, "training step, median ms", sprintf("%.3f", ts), sprintf("%.3f", ps)
    printf row, "training step, min ms", sprintf("%.3f", tsm), sprintf("%.3f", psm)
    printf row, "forward (+ loss), median ms", sprintf("%.3f", tf), sprintf("%.3f", pf)
    printf row, "forward + backward, median ms", sprintf("%.3f", tfb), sprintf("%.3f", pfb)
    printf row, "backward alone (difference), median ms", sprintf("%.3f", tfb - tf), sprintf("%.3f", pfb - pf)
    printf row, "backward / forward", sprintf("%.2f", (tfb - tf) / tf), sprintf("%.2f", (pfb - pf) / pf)
    printf row, "zero_grad + update (step - fwd+bwd), ms", sprintf("%.3f", ts - tfb), sprintf("%.3f", ps - pfb)
    printf row, "GFLOP/s (3 x forward flops / step time)", sprintf("%.1f", tg), sprintf("%.1f", pg)
    printf row, "GFLOP/s (flops the gemms do / step time)", sprintf("%.1f", gmf / ts), sprintf("%.1f", gmf / ps)
    printf row, "tape arena reserved, MiB", sprintf("%.2f", tt), "n/a"
    printf row, "parameters + gradients, MiB", sprintf("%.2f", tp + tgr), sprintf("%.2f", pp + pgr)
    printf row, "tape + parameters, MiB", sprintf("%.2f", tt + tp), "n/a"
    printf row, "process max RSS, MiB", sprintf("%.1f", tr), sprintf("%.1f (%.1f at import)", pr, pri)
    printf "\nraw cblas_sgemm: 128x784 @ 784x512 %.1f GFLOP/s, 128x512 @ 512x512 %.1f GFLOP/s;\n", g1, g2
    printf "the 8 gemms of one step back to back: %.3f ms (%.1f GFLOP/s)\n", gms, gs
    printf "step time over the gemms alone: tapegrad %.2fx, PyTorch %.2fx\n", ts / gms, ps / gms
    printf "\ntargets: tapegrad no slower than PyTorch: %s (%.2fx); backward/forward <= 2.5: %s (%.2f)\n",
        (ts <= ps) ? "met" : "MISSED", ps / ts, ((tfb - tf) / tf <= 2.5) ? "met" : "MISSED", (tfb - tf) / tf
}'

bench_net_table "MLP 784-512-512-10 training step, batch 128, F32; OPENBLAS_NUM_THREADS=2"
