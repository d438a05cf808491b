"""Time of one training step of the spiral example in PyTorch eager mode and in NumPy.

The same step as bench/spiral.c: a minibatch of 20 points of the 3-class spiral (300
points, float32), Linear(2,100) -> ReLU -> Linear(100,3), softmax cross-entropy (mean),
SGD with lr 0.1 and momentum 0.9; the 300 points in a fixed random order, cut into 15
batches used in turn.

  PyTorch: torch.set_num_threads(1), torch.nn.Linear, F.cross_entropy, torch.optim.SGD;
           each step is zero_grad, forward, loss, backward, step.
  NumPy:   forward and backward written by hand in float32 (matmuls through NumPy's
           BLAS), momentum update in place.

Both check that training lowers the loss. After `warmup` steps, `repeats` batches of
`steps` steps are timed with time.perf_counter_ns (with BENCH_CLOCK=cpu, the process's
CPU time); prints the median and the minimum microseconds per step:

    RESULT torch median_us=<x> min_us=<x> final_loss=<x>
    RESULT numpy median_us=<x> min_us=<x> final_loss=<x>

    python3 spiral_peers.py [repeats [steps [warmup]]]     defaults 21 2000 1000

Run with OPENBLAS_NUM_THREADS=1 (bench/run_spiral.sh does).
"""
import os
import statistics
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_harness import now_ns  # noqa: E402

PER_CLASS, CLASSES, IN, HID, BATCH = 100, 3, 2, 100, 20
LR, MOMENTUM = 0.1, 0.9


def spiral(rng):
    """The spiral of tapegrad's tg_data_spiral (same formula, NumPy's generator)."""
    X = np.zeros((PER_CLASS * CLASSES, IN), dtype=np.float32)
    y = np.zeros(PER_CLASS * CLASSES, dtype=np.int64)
    for k in range(CLASSES):
        r = np.linspace(0.0, 1.0, PER_CLASS)
        t = np.linspace(k * 2 * np.pi / CLASSES, (k + 1.5) * 2 * np.pi / CLASSES, PER_CLASS)
        t = t + 0.1 * rng.standard_normal(PER_CLASS)
        X[k * PER_CLASS:(k + 1) * PER_CLASS] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[k * PER_CLASS:(k + 1) * PER_CLASS] = k
    perm = rng.permutation(len(y))
    X, y = X[perm], y[perm]
    return [(X[i:i + BATCH].copy(), y[i:i + BATCH].copy()) for i in range(0, len(y), BATCH)]


def timed(step, batches, repeats, steps, warmup):
    """Runs warmup steps, then repeats x steps timed steps; returns (us list, last loss)."""
    nb = len(batches)
    k = 0
    loss = None
    for _ in range(warmup):
        loss = step(*batches[k % nb])
        k += 1
    first = float(loss)
    us = []
    for _ in range(repeats):
        t0 = now_ns()
        for _ in range(steps):
            loss = step(*batches[k % nb])
            k += 1
        us.append((now_ns() - t0) / 1e3 / steps)
    return us, first, float(loss)


def torch_side(batches, repeats, steps, warmup):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(IN, HID), torch.nn.ReLU(),
                                torch.nn.Linear(HID, CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    tb = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    # the loss of the untrained model, for the check that training works
    with torch.no_grad():
        start = float(sum(F.cross_entropy(model(x), y) for x, y in tb) / len(tb))
    us, _, last = timed(step, tb, repeats, steps, warmup)
    return us, start, last


def numpy_side(batches, repeats, steps, warmup):
    rng = np.random.default_rng(1)
    b1_ = 1 / np.sqrt(IN)
    b2_ = 1 / np.sqrt(HID)
    p = {
        "w1": rng.uniform(-b1_, b1_, (IN, HID)).astype(np.float32),
        "b1": rng.uniform(-b1_, b1_, HID).astype(np.float32),
        "w2": rng.uniform(-b2_, b2_, (HID, CLASSES)).astype(np.float32),
        "b2": rng.uniform(-b2_, b2_, CLASSES).astype(np.float32),
    }
    buf = {k: np.zeros_like(v) for k, v in p.items()}
    lr, mu = np.float32(LR), np.float32(MOMENTUM)
    rows = np.arange(BATCH)

    def step(x, y):
        h = x @ p["w1"] + p["b1"]
        np.maximum(h, 0, out=h)
        z = h @ p["w2"] + p["b2"]
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) - z[rows, y])
        dz = e / s
        dz[rows, y] -= 1
        dz /= BATCH
        dh = dz @ p["w2"].T
        dh[h <= 0] = 0
        g = {"w2": h.T @ dz, "b2": dz.sum(axis=0), "w1": x.T @ dh, "b1": dh.sum(axis=0)}
        for k in p:
            buf[k] *= mu
            buf[k] += g[k]
            p[k] -= lr * buf[k]
        return loss

    def loss_only(x, y):
        z = np.maximum(x @ p["w1"] + p["b1"], 0) @ p["w2"] + p["b2"]
        z -= z.max(axis=1, keepdims=True)
        return np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, y])

    start = float(np.mean([loss_only(x, y) for x, y in batches]))
    us, _, last = timed(step, batches, repeats, steps, warmup)
    assert all(v.dtype == np.float32 for v in p.values()), "NumPy side left float32"
    return us, start, last


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    torch.set_num_threads(1)
    batches = spiral(np.random.default_rng(0))
    print(f"torch {torch.__version__}, numpy {np.__version__}, "
          f"torch threads {torch.get_num_threads()}")
    for name, side in (("torch", torch_side), ("numpy", numpy_side)):
        us, start, last = side(batches, repeats, steps, warmup)
        med, mn = statistics.median(us), min(us)
        print(f"{name}: {med:.3f} us/step median, {mn:.3f} min ({repeats} x {steps} steps); "
              f"loss {start:.4f} before training, {last:.4f} after")
        if not last < 0.5 * start:
            print(f"{name}: training did not lower the loss", file=sys.stderr)
            sys.exit(1)
        print(f"RESULT {name} median_us={med:.3f} min_us={mn:.3f} final_loss={last:.4f}")


if __name__ == "__main__":
    main()
