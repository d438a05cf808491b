#!/usr/bin/env bash
# Runs every test suite and the examples under valgrind's memcheck (leaks, invalid
# reads and writes, uses of uninitialised memory). Usage: scripts/valgrind.sh [build-dir]
# (default build/debug, configured and built here). Exits nonzero on any error.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/debug}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DTG_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# shellcheck disable=SC2054  # the commas belong to valgrind's option values
vg=(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect,possible
    --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=1)
# OpenBLAS's worker threads keep their buffers until exit: one thread keeps it quiet.
export OPENBLAS_NUM_THREADS=1
status=0
passed=0
failed=0
run() {
    local name=$1
    shift
    if (cd "$out" && "${vg[@]}" "$@" >"$out/$name.log" 2>&1); then
        echo "ok    $name"
        passed=$((passed + 1))
    else
        echo "FAIL  $name (log follows)"
        cat "$out/$name.log"
        failed=$((failed + 1))
        status=1
    fi
}
for t in "$build"/tests/test_*; do
    [[ -x "$t" && ! -d "$t" ]] || continue
    supp=()
    # test_dist (built with MPI) runs here as a world of one rank; Open MPI keeps memory
    # until exit, and tests/valgrind_mpi.supp ignores the leak reports inside it.
    if [[ $(basename "$t") == test_dist ]]; then supp=(--suppressions="$(realpath tests/valgrind_mpi.supp)"); fi
    run "$(basename "$t")" "${supp[@]}" "$(realpath "$t")"
done
ex=$(realpath "$build/examples")
run scalar "$ex/scalar" "$out/scalar.dot"
run hessian "$ex/hessian"
run gradcheck "$ex/gradcheck"
run custom_op "$ex/custom_op"
run train_custom "$ex/train_custom" "$out/train_custom.safetensors"
run spiral "$ex/spiral" --quiet --epochs 5 --out "$out/spiral"
# tapegrad-check: its in-process parser tests, one check with every output (Hessian,
# tape, graph), and a check file in JSON.
tc=$(realpath "$build/tools/tapegrad-check")
run test_check_expr "$tc/tests/test_check_expr"
run tapegrad-check "$tc/tapegrad-check" 'sum(tanh(W @ v)) + logsumexp(v, 0)' W:3x4 v:4 \
    --hessian --tape --dot "$out/check.dot"
run tapegrad-check-file "$tc/tapegrad-check" --json --file "$(realpath scripts/formulas.txt)"
echo "valgrind: $passed passed, $failed failed"
exit $status
