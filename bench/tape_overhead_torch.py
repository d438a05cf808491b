#!/usr/bin/env python3
"""The tape-overhead cycle of bench/tape_overhead.c in PyTorch eager mode.

One cycle records y = sin(x1) + x1*x2 on 0-d float64 tensors, runs y.backward()
and zeroes the two leaf gradients in place (x.grad.zero_(), which is what
tg_zero_grad does). One thread. Prints nanoseconds per cycle: median and minimum
over `batches` timed batches of `cycles` cycles.

    tape_overhead_torch.py [batches [cycles]]     defaults: 51 batches of 5000 cycles

The last line is machine-readable:
    RESULT torch median_ns=<x> min_ns=<x>
"""
import math
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_harness import now_ns  # noqa: E402


def main():
    batches = int(sys.argv[1]) if len(sys.argv) > 1 else 51
    cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    torch.set_num_threads(1)

    x1 = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    x2 = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)

    def cycle():
        y = torch.sin(x1) + x1 * x2
        y.backward()
        x1.grad.zero_()
        x2.grad.zero_()

    # Warm-up, then a correctness check of one cycle's gradients.
    for _ in range(1000):
        cycle()
    y = torch.sin(x1) + x1 * x2
    y.backward()
    assert abs(x1.grad.item() - (math.cos(2.0) + 5.0)) <= 1e-12
    assert abs(x2.grad.item() - 2.0) <= 1e-12
    x1.grad.zero_()
    x2.grad.zero_()

    ns = []
    for _ in range(batches):
        t0 = now_ns()
        for _ in range(cycles):
            cycle()
        ns.append((now_ns() - t0) / cycles)
    median, lo = statistics.median(ns), min(ns)

    print(f"torch {torch.__version__}: y = sin(x1) + x1*x2, 0-d float64, "
          "forward + backward + grad.zero_()")
    print(f"  {batches} batches x {cycles} cycles, {torch.get_num_threads()} thread")
    print(f"  median {median:.1f} ns/cycle, min {lo:.1f} ns/cycle")
    print(f"RESULT torch median_ns={median:.1f} min_ns={lo:.1f}")


if __name__ == "__main__":
    main()
