#!/usr/bin/env bash
# Fashion-MNIST, tapegrad (examples/fashion_mnist.c) against PyTorch eager
# (bench/fashion_peer.py): the same data, standardisation, model, Adam (lr 1e-3), batch
# size and epochs, one thread each (OPENBLAS_NUM_THREADS=1, torch.set_num_threads(1)).
#
#   bench/run_fashion.sh [build-dir]          default build dir: build/bench-fashion
#
# For every model and seed the two programs run in turn (tapegrad, then PyTorch), so a
# change in the machine's load hits both sides alike. Each run's output is kept in
# <build-dir>/logs/<model>-<side>-seed<S>.log, and tapegrad's pictures and checkpoint in
# <build-dir>/out-<model>-seed<S>/. The table gives, per model and side, the
# final test accuracy of every seed and their mean, and the medians over all epochs of
# all seeds of the training time per epoch, as process CPU seconds and as wall-clock
# seconds (the training loop only; the per-epoch test evaluation is not counted). Both
# programs are one-threaded, so on a shared, loaded machine the CPU seconds are the
# steadier comparison. The load average is printed before and after. Both programs run
# pinned to the CPU BENCH_CPU (default 0; "none": not pinned), as in bench/lib.sh.
#
# Environment: MODELS ("mlp cnn"; also mlp64 = 784-64-10), SEEDS ("0 1 2"), EPOCHS (10),
# BATCH (64), LIMIT (0: all 60,000 training images), DATA (the package's folder),
# PYTHON (/usr/bin/python3), SUMMARY_ONLY (1: no runs, only the table from the logs of an
# earlier run in the same build dir). OPENBLAS_CORETYPE, when set, reaches both programs
# (PyTorch's linear layers use the same OpenBLAS; its convolutions use oneDNN); the
# output's first line names the OpenBLAS core in use. Needs scripts/deps.sh --bench --data.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/bench-fashion}
python=${PYTHON:-/usr/bin/python3}
models=${MODELS:-mlp cnn}
seeds=${SEEDS:-0 1 2}
epochs=${EPOCHS:-10}
batch=${BATCH:-64}
limit=${LIMIT:-0}
data=${DATA:-/usr/share/datasets/fashion-mnist}
export OPENBLAS_NUM_THREADS=1
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

logs=$build/logs
if [[ "${SUMMARY_ONLY:-0}" != 1 ]]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTG_BUILD_TESTS=OFF \
        -DTG_BUILD_EXAMPLES=ON -DTG_BUILD_BENCH=OFF >/dev/null
    cmake --build "$build" -j2 --target fashion_mnist >/dev/null
    mkdir -p "$logs"
    common=(--epochs "$epochs" --batch "$batch" --data "$data")
    if ((limit > 0)); then common+=(--limit "$limit"); fi

    bench_blas_core "$build/examples/fashion_mnist"
    echo "load before: $(uptime)"
    for model in $models; do
        for seed in $seeds; do
            tg=$logs/$model-tapegrad-seed$seed.log
            pt=$logs/$model-torch-seed$seed.log
            echo "== $model seed $seed: tapegrad"
            "${bench_pin[@]}" "$build/examples/fashion_mnist" --model "$model" --seed "$seed" --out "$build/out-$model-seed$seed" \
                "${common[@]}" >"$tg"
            tail -n 3 "$tg"
            echo "== $model seed $seed: PyTorch eager"
            "${bench_pin[@]}" "$python" "$root/bench/fashion_peer.py" --model "$model" --seed "$seed" "${common[@]}" \
                >"$pt"
            tail -n 3 "$pt"
        done
    done
    echo "load after: $(uptime)"
fi

# One row per model and side: test accuracy per seed, mean, and the medians over all
# epochs of all seeds of the training CPU seconds and wall seconds per epoch.
summary() {
    local model=$1 side=$2 accs="" cpus="" walls=""
    for seed in $seeds; do
        local f=$logs/$model-$side-seed$seed.log
        accs+="$(awk '/^test accuracy:/ {print $3}' "$f") "
        cpus+="$(awk '/^epoch .* cpu / {for (i = 1; i < NF; i++) if ($i == "cpu") print $(i+1)}' "$f" | tr '\n' ' ')"
        walls+="$(awk '/^epoch .* time / {print $(NF-1)}' "$f" | tr '\n' ' ')"
    done
    echo "$model $side $accs|$cpus|$walls"
}
echo
echo "Fashion-MNIST, $epochs epochs, batch $batch, Adam lr 1e-3, one thread; seeds: $seeds"
if ((limit > 0)); then echo "(first $limit training and test images only)"; fi
{
    for model in $models; do
        summary "$model" tapegrad
        summary "$model" torch
    done
} | awk -F'|' '
    function median(a, n,   i, j, t) {
        if (n == 0) return "n/a"
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
        return sprintf("%.2f", n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2)
    }
    BEGIN { printf "| %-6s | %-13s | %-26s | %-7s | %-14s | %-15s |\n", "model", "library",
                   "test accuracy per seed", "mean", "CPU s / epoch", "wall s / epoch"
            print "|--------|---------------|----------------------------|---------|----------------|-----------------|" }
    { split($1, h, " "); n = 0; s = 0; acc = ""
      for (i = 3; i in h; i++) { acc = acc (acc ? " " : "") h[i]; s += h[i]; n++ }
      nc = split($2, c, " "); nw = split($3, w, " ")
      printf "| %-6s | %-13s | %-26s | %-7.4f | %-14s | %-15s |\n", h[1],
             h[2] == "torch" ? "PyTorch eager" : "tapegrad", acc, n ? s / n : 0, median(c, nc), median(w, nw) }'
