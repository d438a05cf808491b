"""The small CNN benchmark of bench/conv.c in PyTorch eager mode.

The same network, float32, batches of 32 images [32, 1, 28, 28]:
    torch.nn.Conv2d(1, 8, 5, stride=1, padding=2) -> ReLU -> MaxPool2d(2, 2)
    -> Conv2d(8, 16, 5) -> ReLU -> MaxPool2d(2, 2) -> Flatten -> Linear(400, 10),
F.cross_entropy, torch.optim.SGD lr 0.01, momentum 0.9. Data: 8 batches of standard
normal images with uniform labels in [0, 10) (NumPy seed 1), used in turn.
torch.set_num_threads(1); run with OPENBLAS_NUM_THREADS=1 (bench/run_conv.sh does).

Timed loops, each `repeats` batches of `steps` iterations after 5 warm-up ones, the
three taken in turn within each repeat; median (and minimum) milliseconds per iteration:
  step:     opt.zero_grad(); loss = F.cross_entropy(model(x), y); loss.backward(); opt.step()
  forward:  loss = F.cross_entropy(model(x), y)   (autograd recording, as in training)
  fwd+bwd:  the forward, then loss.backward() (no zero_grad: gradients accumulate)

Checks that training lowers the mean loss over the 8 batches (exits 1 otherwise).

    python3 conv_peers.py [repeats [steps]]        defaults 21 and 20

Prints a RESULT line of key=value pairs that bench/run_conv.sh reads.
"""
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

B, CLASSES, NBATCH, WARMUP = 32, 10, 8, 5
LR, MOMENTUM = 0.01, 0.9


def timed(fns, batches, repeats, steps, counter):
    """Times the loops round-robin (one batch of `steps` iterations of each per repeat);
    returns, per loop, (median ms, min ms, last loss)."""
    last = [None] * len(fns)
    for j, fn in enumerate(fns):
        for _ in range(WARMUP):
            last[j] = fn(*batches[counter[0] % NBATCH])
            counter[0] += 1
    ms = [[] for _ in fns]
    for _ in range(repeats):
        for j, fn in enumerate(fns):
            t0 = time.perf_counter_ns()
            for _ in range(steps):
                last[j] = fn(*batches[counter[0] % NBATCH])
                counter[0] += 1
            ms[j].append((time.perf_counter_ns() - t0) / 1e6 / steps)
    return [(statistics.median(m), min(m), float(l)) for m, l in zip(ms, last)]


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    batches = [(torch.from_numpy(rng.standard_normal((B, 1, 28, 28), dtype=np.float32)),
                torch.from_numpy(rng.integers(0, CLASSES, B, dtype=np.int64)))
               for _ in range(NBATCH)]
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 8, 5, stride=1, padding=2), nn.ReLU(),
                          nn.MaxPool2d(2, 2),
                          nn.Conv2d(8, 16, 5, stride=1, padding=0), nn.ReLU(),
                          nn.MaxPool2d(2, 2),
                          nn.Flatten(), nn.Linear(16 * 5 * 5, CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

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

    with torch.no_grad():
        first = float(sum(forward(x, y) for x, y in batches) / NBATCH)
    counter = [0]
    (st, st_min, last), (fw, _, _), (fb, _, _) = timed(
        (step, forward, fwd_bwd), batches, repeats, steps, counter)
    with torch.no_grad():
        trained = float(sum(forward(x, y) for x, y in batches) / NBATCH)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    print(f"torch {torch.__version__}, numpy {np.__version__}, torch threads "
          f"{torch.get_num_threads()}")
    print(f"torch: mean loss over {NBATCH} batches {first:.4f} before training, {trained:.4f} "
          f"after {WARMUP + repeats * steps} steps (last step loss {last:.4f})")
    print(f"torch: step {st:.3f} ms median (min {st_min:.3f}), forward {fw:.3f} ms, "
          f"forward+backward {fb:.3f} ms ({repeats} x {steps} iterations of each)")
    print(f"RESULT torch step_ms={st:.4f} step_min_ms={st_min:.4f} fwd_ms={fw:.4f} "
          f"fwdbwd_ms={fb:.4f} rss_mib={rss:.1f} loss0={first:.4f} loss={trained:.4f}")
    if not trained < first:
        print("torch: training did not lower the loss", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
