#!/usr/bin/env bash
# Fuzzes with libFuzzer: the file readers, fuzz_safetensors (tg_safetensors_load and
# tg_model_load), fuzz_csv (tg_data_load_csv) and fuzz_idx (tg_data_load_idx and
# tg_data_load_idx_pair, plain and gzip); the expression parser,
# fuzz_check_expr (the expressions and values of tools/tapegrad-check, evaluated and
# checked); and programs of ops, fuzz_ops (error messages, reference values,
# TG_CREATE_GRAPH against plain gradients, tg_gradcheck); built with clang under
# AddressSanitizer + UndefinedBehaviorSanitizer in build/fuzz.
#
# Usage: scripts/fuzz.sh [seconds] [target...]
#   seconds   time per target (default 60)
#   target    fuzz_safetensors, fuzz_csv, fuzz_idx, fuzz_check_expr, fuzz_ops (default all five)
#   scripts/fuzz.sh --regen-corpus   rewrites the seeds in tests/fuzz/corpus
#
# Each target starts from a copy of its seeds in tests/fuzz/corpus (the copy, in
# build/fuzz/corpus-<target>, keeps growing over runs; the seeds are never modified).
# A crash, leak or sanitizer report stops the target, leaves the input as
# build/fuzz/artifacts/crash-*, and makes this script exit nonzero. Reproduce with
# build/fuzz/tests/fuzz/<target> build/fuzz/artifacts/crash-<id>.
# Needs clang and its libFuzzer runtime: scripts/deps.sh --fuzz installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=$root/build/fuzz
CC=${CC:-clang}
if ! command -v "$CC" >/dev/null; then
    echo "fuzz.sh: $CC not found; install clang and its libFuzzer runtime (Debian: clang libclang-rt-14-dev)" >&2
    exit 2
fi

configure() {
    cmake -S . -B "$build" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DTG_BUILD_FUZZ=ON -DTG_BUILD_TESTS=OFF -DTG_BUILD_EXAMPLES=OFF \
        -DTG_BUILD_BENCH=OFF >/dev/null
}

if [[ "${1:-}" == "--regen-corpus" ]]; then
    configure
    cmake --build "$build" -j2 --target gen_corpus
    rm -rf tests/fuzz/corpus
    mkdir -p tests/fuzz/corpus/safetensors tests/fuzz/corpus/csv tests/fuzz/corpus/check_expr \
        tests/fuzz/corpus/ops tests/fuzz/corpus/idx
    "$build/tests/fuzz/gen_corpus" tests/fuzz/corpus
    echo "fuzz.sh: seeds written to tests/fuzz/corpus"
    exit 0
fi

secs=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then targets=(fuzz_safetensors fuzz_csv fuzz_idx fuzz_check_expr fuzz_ops); fi

configure
cmake --build "$build" -j2 --target "${targets[@]}"

mkdir -p "$build/artifacts"
shopt -s nullglob # a target without seeds starts from an empty corpus
# fuzz_ops prints its counts (programs, ops, gradient checks) at exit.
export TG_FUZZ_STATS=1
status=0
for t in "${targets[@]}"; do
    case $t in
    fuzz_safetensors) seeds=safetensors dict=(-dict="$root/tests/fuzz/safetensors.dict") len=4096 ;;
    fuzz_csv) seeds=csv dict=(-dict="$root/tests/fuzz/csv.dict") len=4096 ;;
    fuzz_idx) seeds=idx dict=() len=4096 ;;
    fuzz_check_expr) seeds=check_expr dict=(-dict="$root/tests/fuzz/check_expr.dict") len=4096 ;;
    fuzz_ops) seeds=ops dict=() len=512 ;; # a program reads at most a few hundred bytes
    *)
        echo "fuzz.sh: unknown target $t" >&2
        exit 2
        ;;
    esac
    work=$build/corpus-$t
    mkdir -p "$work"
    for f in "$root/tests/fuzz/corpus/$seeds"/*; do
        [[ -e "$work/${f##*/}" ]] || cp "$f" "$work/"
    done
    echo "== $t: $secs s =="
    # Leak checking is on (ASan's default); -max_len bounds the size of an input.
    if ! "$build/tests/fuzz/$t" "$work" "${dict[@]}" -max_total_time="$secs" \
        -max_len="$len" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$build/artifacts/" 2>"$build/$t.log"; then
        status=1
        echo "fuzz.sh: $t FAILED; see $build/$t.log and $build/artifacts/; its end:" >&2
        grep -v '^#[0-9]' "$build/$t.log" | tail -n 40 >&2
    fi
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+ *DONE|^fuzz_ops: [0-9]' \
        "$build/$t.log" || true
done
exit $status
