#!/usr/bin/python3
"""Reference values for the second round of ops and layers, computed with PyTorch
(torch, torch.nn, torch.nn.functional) and NumPy.

Run from the repository root:  /usr/bin/python3 tests/ref/gen_ops2_ref.py
It rewrites tests/ref/ops2_ref.h, which tests/test_elementwise.c, test_reduce.c,
test_matmul.c, test_tensor.c and test_nn.c include (the test suites never run Python).
Every input is written to the header too, so the C side feeds the very same numbers.

Contents:
  - unary ops (log1p expm1 softplus erf gelu silu elu(1.3) clamp(-0.5, 0.8)) on a
    vector of points that includes 0, the clamp bounds, and large |x|: value and
    d sum(y) / dx.
  - min over an axis (ties included) and over everything; var and std with corrections
    0, 1 and 2 over an axis and over everything: values and the gradient of
    sum(y * G) for a fixed G.
  - matmul with 1-D operands: dot, matrix-vector, vector-matrix, batched
    matrix-vector: values and gradients of sum(y * G).
  - numpy.arange / numpy.linspace values.
  - BatchNorm2d(3): two training steps (outputs, running statistics, gradients of
    sum(y * G) w.r.t. x, weight and bias in the first step) and one eval forward.
  - LayerNorm(4) on [2,3,4] with fixed weight and bias: output and gradients.
  - Embedding(5, 3) with a fixed table: output for [2,3] indices (with repeats) and the
    gradient of sum(y * G) w.r.t. the table.
"""
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "ops2_ref.h")

lines = []


def carr(name, t):
    vals = [float(v) for v in torch.as_tensor(t).reshape(-1).tolist()]
    body = ", ".join(repr(v) for v in vals)
    lines.append(f"static const double {name}[{len(vals)}] = {{{body}}};\n")


def closed(shape, a, b, c):
    """x[i] = sin(a i + b) * c over the flat index i: a smooth, sign-changing fill."""
    n = int(np.prod(shape))
    return torch.tensor([math.sin(a * i + b) * c for i in range(n)]).reshape(shape)


def grad_of(fn, *xs, G=None):
    xs = [x.clone().requires_grad_(True) for x in xs]
    y = fn(*xs)
    seed = torch.ones_like(y) if G is None else G
    gs = torch.autograd.grad(y, xs, seed)
    return y.detach(), gs


# ---- unary ops ----
ux = torch.tensor([-30.0, -6.0, -2.5, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 0.8, 1.0, 2.5, 6.0, 30.0])
carr("o2_ux", ux)
unary = {
    "log1p": (torch.log1p, ux.clamp(min=-0.9)),
    "expm1": (torch.expm1, ux),
    "softplus": (F.softplus, ux),
    "erf": (torch.erf, ux),
    "gelu": (F.gelu, ux),
    "silu": (F.silu, ux),
    "elu": (lambda t: F.elu(t, alpha=1.3), ux),
    "clamp": (lambda t: torch.clamp(t, -0.5, 0.8), ux),
}
for name, (fn, x) in unary.items():
    if name == "log1p":
        carr("o2_log1p_x", x)
    y, (g,) = grad_of(fn, x)
    carr(f"o2_{name}_y", y)
    carr(f"o2_{name}_g", g)

# ---- min, var, std ----
mx = torch.tensor([[3.0, 1.0, 4.0, 1.0], [5.0, 9.0, 2.0, 6.0], [-5.0, 3.0, -5.0, 8.0]])
carr("o2_min_x", mx)
G34 = closed((3, 4), 0.9, 0.3, 1.0)
G4 = closed((4,), 1.7, 0.1, 1.0)
G3 = closed((3,), 0.6, 1.2, 1.0)
carr("o2_g34", G34)
carr("o2_g4", G4)
carr("o2_g3", G3)
y, (g,) = grad_of(lambda t: t.min(dim=0).values, mx, G=G4)
carr("o2_min0_y", y)
carr("o2_min0_g", g)
y, (g,) = grad_of(lambda t: t.min(dim=1).values, mx, G=G3)
carr("o2_min1_y", y)
carr("o2_min1_g", g)
y, (g,) = grad_of(lambda t: t.min(), mx)
carr("o2_minall_y", y)
carr("o2_minall_g", g)

vx = closed((3, 4), 1.3, 0.4, 2.0) + 0.5
carr("o2_var_x", vx)
for c in (0, 1, 2):
    for fname, fn in (("var", torch.var), ("std", torch.std)):
        y, (g,) = grad_of(lambda t: fn(t, dim=1, correction=c), vx, G=G3)
        carr(f"o2_{fname}1_c{c}_y", y)
        carr(f"o2_{fname}1_c{c}_g", g)
        y, (g,) = grad_of(lambda t: fn(t, dim=0, correction=c), vx, G=G4)
        carr(f"o2_{fname}0_c{c}_y", y)
        carr(f"o2_{fname}0_c{c}_g", g)
        y, (g,) = grad_of(lambda t: fn(t, dim=None, correction=c), vx)
        carr(f"o2_{fname}all_c{c}_y", y)
        carr(f"o2_{fname}all_c{c}_g", g)

# ---- 1-D matmul ----
va = closed((4,), 0.7, 0.2, 1.5)
vb = closed((4,), 1.1, 0.9, 1.0)
ma = closed((3, 4), 0.5, 0.3, 1.0)
mb = closed((4, 2), 0.8, 1.4, 1.0)
ba = closed((2, 3, 4), 0.45, 0.6, 1.0)
carr("o2_mm_va", va)
carr("o2_mm_vb", vb)
carr("o2_mm_ma", ma)
carr("o2_mm_mb", mb)
carr("o2_mm_ba", ba)
G2 = closed((2,), 1.9, 0.5, 1.0)
G23 = closed((2, 3), 0.35, 0.15, 1.0)
carr("o2_g2", G2)
carr("o2_g23", G23)
for name, (a, b, G) in {
    "dot": (va, vb, None),
    "mv": (ma, va, G3),
    "vm": (va, mb, G2),
    "bmv": (ba, vb, G23),
}.items():
    y, (ga, gb) = grad_of(torch.matmul, a, b, G=G)
    carr(f"o2_{name}_y", y)
    carr(f"o2_{name}_ga", ga)
    carr(f"o2_{name}_gb", gb)

# ---- constructors (NumPy) ----
carr("o2_arange_a", np.arange(0.5, 3.2, 0.3))
carr("o2_arange_b", np.arange(5.0, -2.0, -1.5))
carr("o2_linspace_a", np.linspace(-1.0, 2.0, 7))
carr("o2_linspace_b", np.linspace(0.1, 0.7, 13))

# ---- BatchNorm2d ----
bn = torch.nn.BatchNorm2d(3)
with torch.no_grad():
    bn.weight.copy_(torch.tensor([0.5, -1.25, 2.0]))
    bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
carr("o2_bn_weight", bn.weight)
carr("o2_bn_bias", bn.bias)
bx0 = closed((2, 3, 2, 3), 0.37, 0.1, 2.0) + 0.3
bx1 = closed((2, 3, 2, 3), 0.53, 1.1, 1.5) - 0.2
bG = closed((2, 3, 2, 3), 0.71, 0.4, 1.0)
carr("o2_bn_x0", bx0)
carr("o2_bn_x1", bx1)
carr("o2_bn_g", bG)
bn.train()
x0 = bx0.clone().requires_grad_(True)
y0 = bn(x0)
gx, gw, gb = torch.autograd.grad(y0, [x0, bn.weight, bn.bias], bG)
carr("o2_bn_y0", y0.detach())
carr("o2_bn_dx0", gx)
carr("o2_bn_dw0", gw)
carr("o2_bn_db0", gb)
carr("o2_bn_rmean0", bn.running_mean)
carr("o2_bn_rvar0", bn.running_var)
y1 = bn(bx1)
carr("o2_bn_y1", y1.detach())
carr("o2_bn_rmean1", bn.running_mean)
carr("o2_bn_rvar1", bn.running_var)
bn.eval()
carr("o2_bn_eval_y", bn(bx0).detach())

# ---- LayerNorm ----
ln = torch.nn.LayerNorm(4)
with torch.no_grad():
    ln.weight.copy_(torch.tensor([1.5, -0.5, 0.75, 2.0]))
    ln.bias.copy_(torch.tensor([0.0, 0.25, -0.1, 0.3]))
lx = closed((2, 3, 4), 0.83, 0.2, 3.0)
lG = closed((2, 3, 4), 0.29, 1.3, 1.0)
carr("o2_ln_weight", ln.weight)
carr("o2_ln_bias", ln.bias)
carr("o2_ln_x", lx)
carr("o2_ln_g", lG)
x = lx.clone().requires_grad_(True)
y = ln(x)
gx, gw, gb = torch.autograd.grad(y, [x, ln.weight, ln.bias], lG)
carr("o2_ln_y", y.detach())
carr("o2_ln_dx", gx)
carr("o2_ln_dw", gw)
carr("o2_ln_db", gb)

# ---- Embedding ----
emb = torch.nn.Embedding(5, 3)
with torch.no_grad():
    emb.weight.copy_(closed((5, 3), 0.61, 0.7, 1.0))
idx = torch.tensor([[4, 0, 2], [2, 2, 1]])
eG = closed((2, 3, 3), 0.43, 0.9, 1.0)
carr("o2_emb_weight", emb.weight)
lines.append("static const int64_t o2_emb_idx[6] = {%s};\n" % ", ".join(str(int(v)) for v in idx.reshape(-1)))
carr("o2_emb_g", eG)
y = emb(idx)
(gw,) = torch.autograd.grad(y, [emb.weight], eG)
carr("o2_emb_y", y.detach())
carr("o2_emb_dw", gw)

with open(OUT, "w") as f:
    f.write(f"/* ops2_ref.h: generated by tests/ref/gen_ops2_ref.py (torch {torch.__version__}, "
            f"numpy {np.__version__}); do not edit. */\n")
    f.write("#ifndef TG_OPS2_REF_H\n#define TG_OPS2_REF_H\n\n#include <stdint.h>\n\n")
    f.writelines(lines)
    f.write("\n#endif\n")
print("wrote", OUT)
