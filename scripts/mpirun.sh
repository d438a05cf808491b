#!/usr/bin/env bash
# Runs a program under Open MPI's mpirun with what this project's runs need, so nobody
# has to remember it: permission to run as root (CI containers), --oversubscribe when
# there are more ranks than cores, and one OpenBLAS thread per rank unless
# OPENBLAS_NUM_THREADS is set (ranks that each start a thread per core fight over them).
# Usage: scripts/mpirun.sh NP PROGRAM [ARGS...]   (extra mpirun options: $MPIRUN_FLAGS)
set -euo pipefail
if (($# < 2)); then
    echo "usage: scripts/mpirun.sh NP PROGRAM [ARGS...]" >&2
    exit 2
fi
np=$1
shift
flags=()
if [[ $(id -u) -eq 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
if ((np > $(nproc))); then flags+=(--oversubscribe); fi
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
# shellcheck disable=SC2086  # MPIRUN_FLAGS is a list of options
exec mpirun -np "$np" "${flags[@]}" ${MPIRUN_FLAGS:-} "$@"
