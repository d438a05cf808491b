#!/usr/bin/env python3
"""bench/dist_model.py — the alpha-beta model of docs/distributed.md: predicted step time
of data-parallel training (tg_fit_opts.distributed) on N nodes, from a measured compute
time per step on one node and the gradient bytes combined per step.

One combine of tapegrad (src/nn/dist.c) is an agreement allreduce of 56 bytes, then a
reduce-scatter and an allgather of the fused gradient buffer (M bytes). With Open MPI's
ring algorithms for large messages and recursive doubling for small ones:

    T_comm(N) = ceil(log2 N) * alpha                    agreement (latency only)
              + 2 (N - 1) * alpha                       ring: N - 1 steps, twice
              + 2 (N - 1) / N * M / B                   every byte leaves each node twice

A step of one node takes STEP = T_split + T_fixed: T_split is the forward and backward
pass, which shrinks with the rows a node gets, T_fixed the optimizer update, which every
rank repeats in full (it is the same update everywhere).

Strong scaling (fit's contract: batch_size is the global batch, split across ranks):
    T(N) = T_split / N + T_fixed + T_comm(N)
Weak scaling (each node keeps the one-node batch, the global batch grows N-fold):
    T(N) = T_split + T_fixed + T_comm(N)
Both assume the forward and backward time is proportional to the rows, which is
optimistic for small slices (BLAS is less efficient on a few rows).

Usage: bench/dist_model.py NAME STEP_MS FIXED_MS GRAD_BYTES [NAME STEP_MS FIXED_MS GRAD_BYTES ...]
Prints one Markdown table per model and link."""
import math
import sys

# Links: (name, alpha seconds, bytes per second). The alphas are typical one-way MPI
# latencies, not measured here: TCP over 10 Gbit/s Ethernet, RDMA over 100 Gbit/s
# (InfiniBand or RoCE).
LINKS = [("10 Gbit/s Ethernet (TCP), alpha 25 us", 25e-6, 10e9 / 8),
         ("100 Gbit/s (RDMA), alpha 2 us", 2e-6, 100e9 / 8)]
NODES = [1, 2, 4, 8, 16, 32, 64]


def comm(n, alpha, bw, m):
    if n == 1:
        return 0.0
    return math.ceil(math.log2(n)) * alpha + 2 * (n - 1) * alpha + 2 * (n - 1) / n * m / bw


def table(name, step_s, fixed_s, m):
    split_s = step_s - fixed_s
    for link, alpha, bw in LINKS:
        print(f"\n**{name}**, {link}: {step_s * 1e3:.2f} ms per step on one node "
              f"({fixed_s * 1e3:.2f} ms of it the optimizer update), "
              f"{m:,} gradient bytes per step\n")
        print("| nodes | comm ms | strong: step ms | strong: speedup | strong: efficiency "
              "| weak: efficiency |")
        print("|---:|---:|---:|---:|---:|---:|")
        best_n, best_t = 1, step_s
        for n in NODES:
            c = comm(n, alpha, bw, m)
            strong = split_s / n + fixed_s + c
            if strong < best_t:
                best_n, best_t = n, strong
            print(f"| {n} | {c * 1e3:.3f} | {strong * 1e3:.3f} | {step_s / strong:.2f} | "
                  f"{step_s / strong / n:.0%} | {step_s / (step_s + c):.0%} |")
        print(f"\nFastest strong-scaling step at {best_n} nodes "
              f"({step_s / best_t:.1f}x one node).")


def main(argv):
    if len(argv) < 5 or (len(argv) - 1) % 4:
        print(__doc__)
        return 2
    for i in range(1, len(argv), 4):
        table(argv[i], float(argv[i + 1]) / 1e3, float(argv[i + 2]) / 1e3, int(argv[i + 3]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
