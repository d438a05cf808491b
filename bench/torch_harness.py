"""What bench/mlp_peers.py and bench/conv_peers.py share: a model trained with SGD
and F.cross_entropy on fixed batches of random data, timed like bench/bench_net.h.

Three loops, each `repeats` batches of `steps` iterations after `warmup` ones, taken in
turn within each repeat; median (and minimum) milliseconds per iteration:
  step:     opt.zero_grad(); loss = F.cross_entropy(model(x), y); loss.backward(); opt.step()
  forward:  loss = F.cross_entropy(model(x), y)   (autograd recording, as in training)
  fwd+bwd:  the forward, then loss.backward() (no zero_grad: gradients accumulate)
"""
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F


# The clock of bench_util.h: wall time, or with BENCH_CLOCK=cpu the process's CPU time
# (for a machine shared with other work).
now_ns = time.process_time_ns if os.environ.get("BENCH_CLOCK") == "cpu" else time.perf_counter_ns


def make_batches(nbatch, xshape, classes, seed=1):
    """nbatch (x, y): float32 standard normal x of xshape, int64 labels in [0, classes)."""
    rng = np.random.default_rng(seed)
    return [(torch.from_numpy(rng.standard_normal(xshape, dtype=np.float32)),
             torch.from_numpy(rng.integers(0, classes, xshape[0], dtype=np.int64)))
            for _ in range(nbatch)]


def _timed(fns, batches, repeats, steps, warmup):
    """Times the loops round-robin; returns, per loop, (median ms, min ms, last loss)."""
    counter = 0
    last = [None] * len(fns)
    for j, fn in enumerate(fns):
        for _ in range(warmup):
            last[j] = fn(*batches[counter % len(batches)])
            counter += 1
    ms = [[] for _ in fns]
    for _ in range(repeats):
        for j, fn in enumerate(fns):
            t0 = now_ns()
            for _ in range(steps):
                last[j] = fn(*batches[counter % len(batches)])
                counter += 1
            ms[j].append((now_ns() - t0) / 1e6 / steps)
    return [(statistics.median(m), min(m), float(l)) for m, l in zip(ms, last)]


def train_and_time(model, opt, batches, repeats, steps, warmup):
    """Returns (mean loss before, mean loss after, step, forward, fwd+bwd), the last
    three as (median ms, min ms, last loss)."""

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    def forward(x, y):
        return F.cross_entropy(model(x), y).detach()

    def fwd_bwd(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss.detach()

    def mean_loss():
        with torch.no_grad():
            return float(sum(forward(x, y) for x, y in batches) / len(batches))

    first = mean_loss()
    st, fw, fb = _timed((step, forward, fwd_bwd), batches, repeats, steps, warmup)
    return first, mean_loss(), st, fw, fb
