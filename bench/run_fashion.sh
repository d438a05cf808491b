#!/usr/bin/env bash
# Fashion-MNIST, tapegrad (examples/fashion_mnist.c) against PyTorch eager
# (bench/fashion_peer.py): the same data, standardisation, model, Adam (lr 1e-3), batch
# size and epochs, one thread each (OPENBLAS_NUM_THREADS=1, torch.set_num_threads(1)).
#
#   bench/run_fashion.sh [build-dir]          default build dir: build/bench-fashion
#
# For every model and seed the two programs run in turn (tapegrad, then PyTorch), so a
# change in the machine's load hits both sides alike. Each run's output is kept in
# <build-dir>/logs/<model>-<side>-seed<S>.log. The table gives, per model and side, the
# final test accuracy of every seed and their mean, and the median over all epochs of
# all seeds of the training time per epoch (the training loop only; the per-epoch test
# evaluation is not counted). The load average is printed before and after.
#
# Environment: MODELS ("mlp cnn"; also mlp64 = 784-64-10), SEEDS ("0 1 2"), EPOCHS (10),
# BATCH (64), LIMIT (0: all 60,000 training images), DATA (the package's folder),
# PYTHON (/usr/bin/python3). Needs scripts/deps.sh --bench --data.
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

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTG_BUILD_TESTS=OFF \
    -DTG_BUILD_EXAMPLES=ON -DTG_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j2 --target fashion_mnist >/dev/null
logs=$build/logs
mkdir -p "$logs"
common=(--epochs "$epochs" --batch "$batch" --data "$data")
if ((limit > 0)); then common+=(--limit "$limit"); fi

echo "load before: $(uptime)"
for model in $models; do
    for seed in $seeds; do
        tg=$logs/$model-tapegrad-seed$seed.log
        pt=$logs/$model-torch-seed$seed.log
        echo "== $model seed $seed: tapegrad"
        "$build/examples/fashion_mnist" --model "$model" --seed "$seed" --out "$build/out-$model" \
            "${common[@]}" >"$tg"
        tail -n 3 "$tg"
        echo "== $model seed $seed: PyTorch eager"
        "$python" "$root/bench/fashion_peer.py" --model "$model" --seed "$seed" "${common[@]}" \
            >"$pt"
        tail -n 3 "$pt"
    done
done
echo "load after: $(uptime)"

# One row per model and side: test accuracy per seed, mean, median epoch time.
summary() {
    local model=$1 side=$2 accs="" times=""
    for seed in $seeds; do
        local f=$logs/$model-$side-seed$seed.log
        accs+="$(awk '/^test accuracy:/ {print $3}' "$f") "
        times+="$(awk '/^epoch .* time / {print $(NF-1)}' "$f" | tr '\n' ' ')"
    done
    echo "$model $side $accs| $times"
}
echo
echo "Fashion-MNIST, $epochs epochs, batch $batch, Adam lr 1e-3, one thread; seeds: $seeds"
{
    for model in $models; do
        summary "$model" tapegrad
        summary "$model" torch
    done
} | awk -F'|' '
    function median(a, n,   i, j, t) {
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
        return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
    }
    BEGIN { printf "| %-6s | %-13s | %-26s | %-9s | %-22s |\n", "model", "library",
                   "test accuracy per seed", "mean", "median s / epoch (train)"
            print "|--------|---------------|----------------------------|-----------|------------------------|" }
    { split($1, h, " "); n = 0; s = 0; acc = ""
      for (i = 3; i in h; i++) { acc = acc (acc ? " " : "") h[i]; s += h[i]; n++ }
      m = split($2, t, " ")
      printf "| %-6s | %-13s | %-26s | %-9.4f | %-22.2f |\n", h[1],
             h[2] == "torch" ? "PyTorch eager" : "tapegrad", acc, s / n, median(t, m) }'
