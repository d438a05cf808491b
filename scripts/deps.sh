#!/usr/bin/env bash
# Installs the Debian packages tapegrad needs to build and test, if any are missing.
# Usage: scripts/deps.sh [--bench] [--ci] [--fuzz] [--data]
#   --bench adds the peers of bench/: PyTorch and NumPy, libtorch (C++), ADOL-C and
#   Sacado (Trilinos); --ci adds valgrind,
#   --fuzz adds clang and its libFuzzer runtime (scripts/fuzz.sh),
#   --data adds the Fashion-MNIST data set (IDX files under /usr/share/datasets/fashion-mnist,
#   about 30 MB) that examples/fashion_mnist.c and bench/run_fashion.sh train on.
# Open MPI (openmpi-bin, libopenmpi-dev) is in the default set: with it the library gains
# data-parallel training (dist.h) and the mpirun tests run; the build works without it.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-dev check libcjson-dev libpng-dev zlib1g-dev
      openmpi-bin libopenmpi-dev)
for arg in "$@"; do
    case "$arg" in
    --bench) pkgs+=(python3-torch python3-numpy libtorch-dev libadolc-dev libtrilinos-sacado-dev) ;;
    --ci) pkgs+=(valgrind) ;;
    --fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
    --data) pkgs+=(dataset-fashion-mnist) ;;
    *) echo "deps.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done
missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
