"""PyTorch eager peer of examples/fashion_mnist.c: the same data, standardisation,
models, optimizer (Adam), batch size, epochs and per-epoch test evaluation, on one
thread, printing lines in the example's format:

    epoch E/N  train loss L  train accuracy A  test loss L  test accuracy A  cpu C s  time S s
    mean training time per epoch: S
    train accuracy: X
    test accuracy: Y

"cpu" (process CPU seconds) and "time" (wall clock) cover the training loop of the epoch
only (batches, forward, backward, step), as in the example. Initial weights are PyTorch's defaults (the same uniform bound
1/sqrt(fan_in) as tapegrad's Linear and Conv2d, from another generator).

    fashion_peer.py [--model mlp|cnn|mlp64] [--epochs N] [--batch B] [--lr LR] [--seed S]
                    [--data DIR] [--limit N]
"""
import argparse
import gzip
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    """An IDX file (gzip) as a NumPy array of its shape (unsigned bytes only)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def model_of(name):
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "mlp64":
        return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def evaluate(model, X, y, batch=1024):
    """Mean cross-entropy and accuracy over (X, y), eval mode, no autograd."""
    model.eval()
    loss = correct = 0.0
    with torch.no_grad():
        for i in range(0, len(X), batch):
            out = model(X[i:i + batch])
            loss += float(F.cross_entropy(out, y[i:i + batch], reduction="sum"))
            correct += int((out.argmax(1) == y[i:i + batch]).sum())
    model.train()
    return loss / len(X), correct / len(X)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp", choices=["mlp", "cnn", "mlp64"])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)

    def split(prefix):
        X = read_idx(f"{a.data}/{prefix}-images-idx3-ubyte.gz").astype(np.float32)
        y = read_idx(f"{a.data}/{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        if a.limit:
            X, y = X[:a.limit], y[:a.limit]
        return X, y

    Xr, yr = split("train")
    Xt, yt = split("t10k")
    mean = Xr.astype(np.float64).mean()
    std = Xr.astype(np.float64).std()
    shape = (-1, 1, 28, 28) if a.model == "cnn" else (-1, 784)
    X = torch.from_numpy(((Xr - mean) / std).astype(np.float32).reshape(shape))
    Xv = torch.from_numpy(((Xt - mean) / std).astype(np.float32).reshape(shape))
    y, yv = torch.from_numpy(yr), torch.from_numpy(yt)

    model = model_of(a.model)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    n = len(X)
    times = []
    for e in range(a.epochs):
        perm = torch.randperm(n)
        t0, c0 = time.perf_counter(), time.process_time()
        loss_sum = correct = 0.0
        for i in range(0, n, a.batch):
            idx = perm[i:i + a.batch]
            xb, yb = X[idx], y[idx]
            opt.zero_grad()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            loss_sum += float(loss) * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        times.append(time.perf_counter() - t0)
        cpu = time.process_time() - c0
        vl, va = evaluate(model, Xv, yv)
        print(f"epoch {e + 1}/{a.epochs}  train loss {loss_sum / n:.4f}  train accuracy "
              f"{correct / n:.4f}  test loss {vl:.4f}  test accuracy {va:.4f}  "
              f"cpu {cpu:.2f} s  time {times[-1]:.2f} s", flush=True)
    print(f"mean training time per epoch: {sum(times) / len(times):.3f} s")
    print(f"train accuracy: {evaluate(model, X, y)[1]:.4f}")
    print(f"test accuracy: {evaluate(model, Xv, yv)[1]:.4f}")


if __name__ == "__main__":
    main()
