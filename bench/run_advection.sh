#!/usr/bin/env bash
# Builds tapegrad (Release) and runs the advection benchmark (bench/advection.h: Hogan
# 2014, 100 points, 2000 steps; J = sum q^2 and dJ/dq0) in every tool, each in its own
# process (for its peak RSS), interleaved in rounds (A B C ... A B C ...):
#   scalar form:     tapegrad with 0-d tensors (shared library and static archive),
#                    ADOL-C re-taping every time, Sacado::Rad, the hand-written adjoint;
#   vectorised form: tapegrad on slices (shared and static), ADOL-C re-using one
#                    recorded tape (gradient() = zos_forward + fos_reverse).
# Every program checks its gradient against the hand adjoint to 1e-10 and fails
# otherwise. Prints each program's output, then the medians over the rounds of each
# program's median function + gradient time, the peak RSS, tapegrad's tape, and the
# ratios round by round.
#
#   bench/run_advection.sh [build-dir]         default build dir: build/bench-release
#
# Environment: ROUNDS (3); SCALAR_REPEATS (5) timed runs per round of the scalar tapegrad
# and ADOL-C re-taping programs, REPEATS (21) of the others; BENCH_CLOCK=cpu times CPU
# time instead of wall time (bench_util.h).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/bench-release}
rounds=${ROUNDS:-3}
srep=${SCALAR_REPEATS:-5}
rep=${REPEATS:-21}

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_build "$build" bench_advection bench_advection_static bench_peer_sacado bench_peer_adolc
sacado=$(bench_peer "$build" sacado)
adolc=$(bench_peer "$build" adolc)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

for r in $(seq 1 "$rounds"); do
    t="round $r/$rounds:"
    bench_run "$t tapegrad scalar, shared" "$build/bench/advection" scalar "$srep"
    bench_run_suffix -static "$t tapegrad scalar, static" \
        "$build/bench/advection_static" scalar "$srep"
    bench_run "$t ADOL-C re-taping" bench_in "$scratch" "$adolc" advection-retape "$srep"
    bench_run "$t Sacado::Rad" "$sacado" advection "$rep"
    bench_run "$t hand-written adjoint" "$build/bench/advection" hand "$((rep * 5))"
    bench_run "$t tapegrad vectorised, shared" "$build/bench/advection" vector "$rep"
    bench_run_suffix -static "$t tapegrad vectorised, static" \
        "$build/bench/advection_static" vector "$rep"
    bench_run "$t ADOL-C re-using its tape" bench_in "$scratch" "$adolc" advection-reuse "$rep"
done

row() { # side label: median of the medians, min, peak RSS, per-round ratio to tapegrad
    printf '| %-34s | %10s | %10s | %9s | %-24s |\n' "$2" "$(bench_median "$1" median_ms)" \
        "$(bench_values "$1" min_ms | sort -g | head -1)" "$(bench_median "$1" rss_mib)" \
        "$(bench_round_ratios "$3" "$1" median_ms)"
}
header() {
    echo
    echo "$1 (${BENCH_CLOCK:-wall} clock; $rounds rounds)"
    printf '| %-34s | %10s | %10s | %9s | %-24s |\n' "" "median ms" "min ms" "RSS MiB" \
        "tapegrad / it, per round"
    printf '|%s|%s|%s|%s|%s|\n' "------------------------------------" "-----------:" \
        "-----------:" "----------:" "--------------------------"
}
header "Advection, scalar form: function + gradient"
row tapegrad-scalar "tapegrad, 0-d tensors (shared)" tapegrad-scalar
row tapegrad-scalar-static "tapegrad, 0-d tensors (static)" tapegrad-scalar
row adolc-retape "ADOL-C, re-taping" tapegrad-scalar
row sacado "Sacado::Rad" tapegrad-scalar
row hand "hand-written adjoint" tapegrad-scalar
header "Advection, vectorised form: function + gradient"
row tapegrad-vector "tapegrad, slices (shared)" tapegrad-vector
row tapegrad-vector-static "tapegrad, slices (static)" tapegrad-vector
row adolc-reuse "ADOL-C, re-using its tape" tapegrad-vector
echo
for f in scalar vector; do
    echo "tapegrad $f: $(bench_median "tapegrad-$f" nodes) tape nodes, tape in use after" \
        "backward $(bench_median "tapegrad-$f" tape_used_mib) MiB, reserved" \
        "$(bench_median "tapegrad-$f" tape_reserved_mib) MiB"
done
echo "ADOL-C tape: $(bench_median adolc-retape ops) operations"
