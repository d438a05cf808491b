# shellcheck shell=bash
# shellcheck disable=SC2154  # $root is set by the sourcing script
# bench/lib.sh — what the bench/run_*.sh scripts share. Source it after setting $root
# (the repository); it adds no options of its own.

# bench_build <build-dir> <target>: configures a Release build of the benchmarks
# (tests and examples off) and builds one target.
bench_build() {
    cmake -S "$root" -B "$1" -DCMAKE_BUILD_TYPE=Release -DTG_BUILD_TESTS=OFF \
        -DTG_BUILD_EXAMPLES=OFF -DTG_BUILD_BENCH=ON >/dev/null
    cmake --build "$1" -j2 --target "$2" >/dev/null
}

# bench_run <title> <command...>: prints the title and the command's output, and keeps
# the output for bench_best. A failing command stops the script (set -e).
bench_results=""
bench_run() {
    echo "== $1"
    shift
    local out
    out=$("$@")
    echo "$out"
    bench_results+="$out"$'\n'
}

# bench_best <side> <key> <rank-key>: the value of key=... on the RESULT line of <side>
# (second word) with the lowest rank-key, among all outputs kept by bench_run.
bench_best() {
    printf '%s\n' "$bench_results" | awk -v s="$1" -v k="$2" -v rk="$3" '
        $1 == "RESULT" && $2 == s {
            delete kv; for (i = 3; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
            if (!n++ || kv[rk] + 0 < best) { best = kv[rk] + 0; v = kv[k] } }
        END { print v }'
}
