#!/usr/bin/env bash
# Builds tapegrad (Release) and times the scalar cycle y = sin(x1) + x1*x2 on 0-d f64
# (record + backward + reset) in every tool, interleaved in rounds (A B C ... A B C ...):
# tapegrad through the shared library (bench/tape_overhead, linked as `pkg-config --libs
# tapegrad` gives it) and through the static archive (tape_overhead_static), Sacado::Rad,
# ADOL-C (re-taping every cycle), libtorch C++ (bench/peers/), PyTorch eager
# (bench/tape_overhead_torch.py) and the hand-written adjoint. Prints each program's
# output, then the medians over the rounds and the ratios round by round.
#
#   bench/run_tape_overhead.sh [build-dir]        default build dir: build/bench-release
#
# Environment: ROUNDS (3); BATCHES (21) timed batches per program and round, of
# TG_CYCLES (50000) cycles for tapegrad, HAND_CYCLES (1000000), SACADO_CYCLES (200000),
# ADOLC_CYCLES (2000), LIBTORCH_CYCLES (2000), TORCH_CYCLES (2000); PYTHON
# (/usr/bin/python3); BENCH_CLOCK=cpu times CPU time instead of wall time (bench_util.h).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/bench-release}
python=${PYTHON:-/usr/bin/python3}
rounds=${ROUNDS:-3}
batches=${BATCHES:-21}

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_build "$build" bench_tape_overhead bench_tape_overhead_static bench_peer_sacado \
    bench_peer_adolc bench_peer_libtorch
sacado=$(bench_peer "$build" sacado)
adolc=$(bench_peer "$build" adolc)
libtorch=$(bench_peer "$build" libtorch)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

for r in $(seq 1 "$rounds"); do
    bench_run "round $r/$rounds: tapegrad, shared library" \
        "$build/bench/tape_overhead" "$batches" "${TG_CYCLES:-50000}"
    bench_run_suffix _static "round $r/$rounds: tapegrad, static library" \
        "$build/bench/tape_overhead_static" "$batches" "${TG_CYCLES:-50000}"
    bench_run "round $r/$rounds: Sacado::Rad" "$sacado" scalar "$batches" "${SACADO_CYCLES:-200000}"
    bench_run "round $r/$rounds: ADOL-C" \
        bench_in "$scratch" "$adolc" scalar "$batches" "${ADOLC_CYCLES:-2000}"
    bench_run "round $r/$rounds: libtorch C++" "$libtorch" scalar "$batches" \
        "${LIBTORCH_CYCLES:-2000}"
    bench_run "round $r/$rounds: PyTorch eager" \
        "$python" "$root/bench/tape_overhead_torch.py" "$batches" "${TORCH_CYCLES:-2000}"
    bench_run "round $r/$rounds: hand-written adjoint" \
        "$build/bench/tape_overhead" "$batches" "${HAND_CYCLES:-1000000}" hand
done

echo
echo "y = sin(x1) + x1*x2 on 0-d f64: record + backward + reset, ns per cycle" \
    "(${BENCH_CLOCK:-wall} clock; $rounds rounds of $batches batches)"
printf '| %-30s | %14s | %12s | %-28s |\n' "" "median ns" "min ns" "tapegrad / it, per round"
printf '|%s|%s|%s|%s|\n' "--------------------------------" "---------------:" \
    "-------------:" "------------------------------"
for side in tapegrad:"tapegrad (shared, pkg-config)" tapegrad_static:"tapegrad (static archive)" \
    sacado:"Sacado::Rad" adolc:"ADOL-C (re-taping)" libtorch:"libtorch C++" \
    torch:"PyTorch eager" hand:"hand-written adjoint"; do
    key=${side%%:*}
    printf '| %-30s | %14s | %12s | %-28s |\n' "${side#*:}" "$(bench_median "$key" median_ns)" \
        "$(bench_values "$key" min_ns | sort -g | head -1)" \
        "$(bench_round_ratios tapegrad "$key" median_ns)"
done
echo
echo "tapegrad heap allocations per cycle after the warm-up:" \
    "$(bench_median tapegrad allocs_per_cycle)"
echo "shared / static, per round: $(bench_round_ratios tapegrad tapegrad_static median_ns)"
