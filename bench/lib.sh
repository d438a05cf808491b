# shellcheck shell=bash
# shellcheck disable=SC2154  # $root is set by the sourcing script
# bench/lib.sh — what the bench/run_*.sh scripts share. Source it after setting $root
# (the repository); it adds no options of its own.

# bench_build <build-dir> <target...>: configures a Release build of the benchmarks
# (tests and examples off; the C++ peers that are installed on) and builds the targets.
# The benchmark programs link libtapegrad.so as `pkg-config --libs tapegrad` gives it;
# <name>_static is the same program against libtapegrad.a.
bench_build() {
    local dir=$1
    shift
    cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DTG_BUILD_TESTS=OFF \
        -DTG_BUILD_EXAMPLES=OFF -DTG_BUILD_BENCH=ON -DTG_BENCH_PEERS=ON >/dev/null
    cmake --build "$dir" -j2 --target "$@" >/dev/null
}

# bench_peer <build-dir> <name>: the path of a C++ peer program (bench/peers/), or a
# failure naming the package that provides it when it was not built.
bench_peer() {
    local exe=$1/bench/peer_$2
    if [[ ! -x $exe ]]; then
        echo "bench: $exe was not built: install the peers with scripts/deps.sh --bench" >&2
        return 1
    fi
    echo "$exe"
}

# bench_blas_core <program>: prints the kernel family OpenBLAS chose for this CPU, as its
# OPENBLAS_VERBOSE=2 start-up line reports it when the program (linked with OpenBLAS)
# runs with --help. OPENBLAS_CORETYPE overrides the choice, and is printed when set,
# since it changes what the numbers measure: some machines set it in the environment
# (an AMD Zen 5 running Debian 12's OpenBLAS 0.3.21 with OPENBLAS_CORETYPE=Haswell gets
# AVX2 kernels at about half the speed of the AVX-512 "Cooperlake" ones it picks alone).
bench_blas_core() {
    local core
    core=$(OPENBLAS_VERBOSE=2 "$1" --help 2>&1 | sed -n 's/^Core: //p' | head -n 1)
    echo "OpenBLAS core: ${core:-unknown}${OPENBLAS_CORETYPE:+ (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE)}"
}

# bench_in <dir> <command...>: runs the command in dir (ADOL-C writes a tape that
# outgrows its buffers to files in the working directory).
bench_in() { (cd "$1" && shift && "${bench_pin[@]}" "$@"); }

# bench_run <title> <command...>: prints the title and the command's output, and keeps
# the output for bench_best and bench_values. A failing command stops the script
# (set -e). bench_run_suffix <suffix> <title> <command...> does the same but renames the
# sides of the RESULT lines it keeps to <side><suffix> (a second build of the same
# program, e.g. against the static library).
#
# Every program runs pinned to one CPU, BENCH_CPU (default 0; "none": not pinned), with
# taskset when it is installed: the two virtual CPUs of the machines these numbers come
# from ran the same one-threaded program at speeds 1.7x apart, so an unpinned run
# measured whichever CPU the scheduler picked.
bench_results=""
bench_pin=()
if [[ "${BENCH_CPU:-0}" != none ]] && command -v taskset >/dev/null; then
    bench_pin=(taskset -c "${BENCH_CPU:-0}")
fi
bench_run() {
    bench_run_suffix "" "$@"
}
bench_run_suffix() {
    local suffix=$1 out
    echo "== $2"
    shift 2
    if declare -F "$1" >/dev/null; then # bench_in pins what it runs
        out=$("$@")
    else
        out=$("${bench_pin[@]}" "$@")
    fi
    echo "$out"
    bench_results+=$(printf '%s\n' "$out" | awk -v s="$suffix" '$1 == "RESULT" { $2 = $2 s } 1')
    bench_results+=$'\n'
}

# bench_values <side> <key>: the value of key=... on every RESULT line of <side> kept by
# bench_run, one per line, in the order they were run (one per round).
bench_values() {
    printf '%s\n' "$bench_results" | awk -v s="$1" -v k="$2" '
        $1 == "RESULT" && $2 == s {
            for (i = 3; i <= NF; i++) { split($i, p, "="); if (p[1] == k) print p[2] } }'
}

# bench_median <side> <key>: the median of bench_values (the lower one for an even count).
bench_median() {
    bench_values "$1" "$2" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

# bench_round_ratios <side-a> <side-b> <key>: a / b of key, round by round, as
# "1.23x 1.19x ...".
bench_round_ratios() {
    paste -d' ' <(bench_values "$1" "$3") <(bench_values "$2" "$3") |
        awk '{ r = $1 / $2; printf (r >= 100 ? "%s%.0fx" : "%s%.3gx"), (NR > 1 ? " " : ""), r }
             END { print "" }'
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

# bench_net_table <title>: the training-step table of the tapegrad shared and static
# builds, libtorch C++ and PyTorch eager (sides tapegrad, tapegrad_static, libtorch,
# torch of RESULT lines with step_ms, step_min_ms, fwd_ms, fwdbwd_ms, rss_mib): the
# medians over the rounds, and the step-time ratios round by round.
bench_net_table() {
    echo
    echo "$1 (${BENCH_CLOCK:-wall} clock; medians over the rounds)"
    printf '| %-26s | %9s | %9s | %9s | %9s | %8s | %-24s |\n' "" "step ms" "min ms" \
        "fwd ms" "fwd+bwd" "RSS MiB" "it / tapegrad, per round"
    printf '|%s|%s|%s|%s|%s|%s|%s|\n' "----------------------------" "----------:" \
        "----------:" "----------:" "----------:" "---------:" "--------------------------"
    local side
    for side in tapegrad:"tapegrad (shared)" tapegrad_static:"tapegrad (static archive)" \
        libtorch:"libtorch C++" torch:"PyTorch eager"; do
        local k=${side%%:*}
        printf '| %-26s | %9s | %9s | %9s | %9s | %8s | %-24s |\n' "${side#*:}" \
            "$(bench_median "$k" step_ms)" "$(bench_values "$k" step_min_ms | sort -g | head -1)" \
            "$(bench_median "$k" fwd_ms)" "$(bench_median "$k" fwdbwd_ms)" \
            "$(bench_median "$k" rss_mib)" "$(bench_round_ratios "$k" tapegrad step_ms)"
    done
}
