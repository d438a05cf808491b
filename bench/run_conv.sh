#!/usr/bin/env bash
# Builds tapegrad (Release) and times one training step of a small LeNet-like CNN
# (batch 32, F32, SGD momentum) in one run, all on one thread (OPENBLAS_NUM_THREADS=1,
# torch.set_num_threads(1)): tapegrad (bench/conv.c, linked to the shared library, and
# bench/conv_static, to the static archive), libtorch C++ (bench/peers/libtorch.cpp)
# and PyTorch eager (bench/conv_peers.py). Prints each program's output, then the
# tables.
#
#   bench/run_conv.sh [build-dir]            default build dir: build/bench-release
#
# The machine may be shared, so the two programs run ROUNDS times in turn and the table
# takes, for each side, the round with the lowest median step time (all rounds are
# printed).
#
# Environment: REPEATS (21) timed batches of STEPS (20) iterations each; ROUNDS (3);
# PYTHON (/usr/bin/python3); BENCH_CLOCK=cpu times CPU time instead of wall time
# (bench_util.h).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/bench-release}
python=${PYTHON:-/usr/bin/python3}
repeats=${REPEATS:-21}
steps=${STEPS:-20}
rounds=${ROUNDS:-3}
export OPENBLAS_NUM_THREADS=1

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_build "$build" bench_conv bench_conv_static bench_peer_libtorch
libtorch=$(bench_peer "$build" libtorch)

for r in $(seq 1 "$rounds"); do
    bench_run "round $r/$rounds: tapegrad (OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS)" \
        "$build/bench/conv" "$repeats" "$steps"
    bench_run_suffix _static "round $r/$rounds: tapegrad, static library" \
        "$build/bench/conv_static" "$repeats" "$steps"
    bench_run "round $r/$rounds: libtorch C++" "$libtorch" conv "$repeats" "$steps"
    bench_run "round $r/$rounds: PyTorch eager" \
        "$python" "$root/bench/conv_peers.py" "$repeats" "$steps"
done

v() { bench_best "$1" "$2" step_ms; } # the side's round with the lowest median step

echo
echo "Small CNN training step (LeNet-like, batch 32, [32,1,28,28]), F32, SGD momentum, one thread"
awk -v ts="$(v tapegrad step_ms)" -v tsm="$(v tapegrad step_min_ms)" \
    -v tf="$(v tapegrad fwd_ms)" -v tfb="$(v tapegrad fwdbwd_ms)" \
    -v ta="$(v tapegrad allocs_per_step)" -v tt="$(v tapegrad tape_bytes)" \
    -v tp="$(v tapegrad param_bytes)" -v tr="$(v tapegrad rss_mib)" \
    -v tl0="$(v tapegrad loss0)" -v tl="$(v tapegrad loss)" \
    -v ps="$(v torch step_ms)" -v psm="$(v torch step_min_ms)" \
    -v pf="$(v torch fwd_ms)" -v pfb="$(v torch fwdbwd_ms)" -v pr="$(v torch rss_mib)" \
    -v pl0="$(v torch loss0)" -v pl="$(v torch loss)" 'BEGIN {
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
    printf row, "heap allocations per step (after warm-up)", ta, "n/a"
    printf row, "tape arena reserved, MiB", sprintf("%.2f", tt / 1048576), "n/a"
    printf row, "parameters, KiB", sprintf("%.1f", tp / 1024), sprintf("%.1f", tp / 1024)
    printf row, "process max RSS, MiB", sprintf("%.1f", tr), sprintf("%.1f", pr)
    printf row, "mean loss before -> after training", sprintf("%.3f -> %.3f", tl0, tl),
        sprintf("%.3f -> %.3f", pl0, pl)
    printf "\nstep time, PyTorch / tapegrad: %.2fx (no target for this benchmark)\n", ps / ts
}'

bench_net_table "LeNet-like CNN training step, batch 32, F32, one thread"
