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
import os
import resource
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_harness import make_batches, train_and_time  # noqa: E402

B, CLASSES, NBATCH, WARMUP = 32, 10, 8, 5
LR, MOMENTUM = 0.01, 0.9


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    torch.set_num_threads(1)
    batches = make_batches(NBATCH, (B, 1, 28, 28), CLASSES)
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 8, 5, stride=1, padding=2), nn.ReLU(),
                          nn.MaxPool2d(2, 2),
                          nn.Conv2d(8, 16, 5, stride=1, padding=0), nn.ReLU(),
                          nn.MaxPool2d(2, 2),
                          nn.Flatten(), nn.Linear(16 * 5 * 5, CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    first, trained, (st, st_min, last), (fw, _, _), (fb, _, _) = train_and_time(
        model, opt, batches, repeats, steps, WARMUP)
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
