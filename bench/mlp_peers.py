"""The 784-512-512-10 MLP benchmark of bench/mlp.c in PyTorch eager mode.

The same network (torch.nn.Linear(784,512) -> ReLU -> Linear(512,512) -> ReLU ->
Linear(512,10)), F.cross_entropy, torch.optim.SGD lr 0.01 (no momentum), batches of
128 float32 rows: 8 batches of standard normal inputs and uniform labels in [0, 10)
(NumPy seed 1), used in turn. torch.set_num_threads(1): PyTorch's own OpenMP pool
stays at one thread, and its matrix products go to OpenBLAS, whose pool takes its size
from OPENBLAS_NUM_THREADS (2 in bench/run_mlp.sh), as tapegrad's do; two pools of two
threads on two cores would fight.

Timed loops, each `repeats` batches of `steps` iterations after 3 warm-up ones, the
three taken in turn within each repeat; median (and minimum) milliseconds per iteration:
  step:     opt.zero_grad(); loss = F.cross_entropy(model(x), y); loss.backward(); opt.step()
  forward:  loss = F.cross_entropy(model(x), y)   (autograd recording, as in training)
  fwd+bwd:  the forward, then loss.backward() (no zero_grad: gradients accumulate)

Memory: the bytes of parameters and gradients, and the peak RSS of the process from
resource.getrusage (which includes the Python interpreter and the torch library; the
RSS right after importing torch is printed too).

    python3 mlp_peers.py [repeats [steps]]        defaults 21 and 10

Prints a RESULT line of key=value pairs that bench/run_mlp.sh reads.
"""
import os
import resource
import sys

import numpy as np
import torch

RSS_AFTER_IMPORT = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # MiB

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_harness import make_batches, train_and_time  # noqa: E402

B, D0, D1, D2, D3, NBATCH = 128, 784, 512, 512, 10, 8
LR = 0.01


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    torch.set_num_threads(1)
    batches = make_batches(NBATCH, (B, D0), D3)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(D0, D1), torch.nn.ReLU(),
                                torch.nn.Linear(D1, D2), torch.nn.ReLU(),
                                torch.nn.Linear(D2, D3))
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    first, trained, (st, st_min, _), (fw, _, _), (fb, _, _) = train_and_time(
        model, opt, batches, repeats, steps, 3)
    params = list(model.parameters())
    param_mib = sum(p.numel() * p.element_size() for p in params) / 1048576.0
    grad_mib = sum(p.grad.numel() * p.grad.element_size() for p in params) / 1048576.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    gflops = 3 * 2 * B * (D0 * D1 + D1 * D2 + D2 * D3) / 1e9 / (st / 1e3)

    print(f"torch {torch.__version__}, numpy {np.__version__}, torch threads "
          f"{torch.get_num_threads()}")
    print(f"torch: mean loss {first:.4f} before training, {trained:.4f} after "
          f"{3 + repeats * steps} steps")
    print(f"torch: step {st:.3f} ms median (min {st_min:.3f}), forward {fw:.3f} ms, "
          f"forward+backward {fb:.3f} ms")
    print(f"torch: parameters {param_mib:.2f} MiB, gradients {grad_mib:.2f} MiB, max RSS "
          f"{rss:.1f} MiB ({RSS_AFTER_IMPORT:.1f} MiB right after import torch)")
    print(f"RESULT torch step_ms={st:.4f} step_min_ms={st_min:.4f} fwd_ms={fw:.4f} "
          f"fwdbwd_ms={fb:.4f} gflops={gflops:.2f} param_mib={param_mib:.3f} "
          f"grad_mib={grad_mib:.3f} rss_mib={rss:.1f} rss_import_mib={RSS_AFTER_IMPORT:.1f} "
          f"loss0={first:.4f} loss={trained:.4f}")
    if not trained < first:
        print("torch: training did not lower the loss", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
