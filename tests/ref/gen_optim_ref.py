#!/usr/bin/python3
"""Reference values for tests/test_optim.c, computed with torch.optim.

Run from the repository root:  /usr/bin/python3 tests/ref/gen_optim_ref.py
It rewrites tests/ref/optim_ref.h, which the C test includes (the test suite never
runs Python).

Every configuration optimises the same two parameters, p0 of shape [3] and p1 of
shape [2,2] (seven elements, k = 0..6 in row-major order across both), for STEPS
steps t = 1..STEPS. The gradient of element k at step t is a deterministic function
of t and the current parameter value, evaluated in double precision in exactly the
order the C test evaluates it:

    g_k(t) = 0.5 * (p_k - (0.1 * k - 0.2)) + 0.3 * sin(0.7 * t + 1.3 * k)

On every step with t % 7 == 3, p1 has no gradient (p1.grad is None), so the
optimiser must skip it and leave its state (and Adam's step count) alone.
Optional learning-rate schedules set the learning rate before step t from the
closed form of StepLR / CosineAnnealingLR at epoch t - 1.

The header also holds clip_grad_norm_ results and StepLR / CosineAnnealingLR
closed-form learning rates.
"""
import math
import os

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, StepLR

STEPS = 60
INIT = [0.5, -1.2, 2.0, 0.3, -0.7, 1.1, -0.05]
SPLIT = 3  # p0 = INIT[:3], p1 = INIT[3:] as [2, 2]
SKIP_MOD, SKIP_REM = 7, 3

SGD, ADAM, RMSPROP = 0, 1, 2
NO_SCHED, SCHED_STEP, SCHED_COSINE = 0, 1, 2


def case(name, kind, lr, **kw):
    c = dict(name=name, kind=kind, lr=lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
             beta1=0.9, beta2=0.999, eps=1e-8, alpha=0.99, nesterov=False, decoupled=False,
             amsgrad=False, centered=False, sched=NO_SCHED, sched_n=0, sched_a=0.0)
    c.update(kw)
    return c


CASES = [
    case("sgd_plain", SGD, 0.1),
    case("sgd_momentum", SGD, 0.05, momentum=0.9),
    case("sgd_dampening", SGD, 0.05, momentum=0.9, dampening=0.3),
    case("sgd_nesterov", SGD, 0.05, momentum=0.8, nesterov=True),
    case("sgd_weight_decay", SGD, 0.05, momentum=0.9, weight_decay=0.1),
    case("sgd_plain_weight_decay", SGD, 0.1, weight_decay=0.2),
    case("sgd_nesterov_weight_decay", SGD, 0.03, momentum=0.9, nesterov=True, weight_decay=0.05),
    case("sgd_step_lr", SGD, 0.1, momentum=0.5, sched=SCHED_STEP, sched_n=10, sched_a=0.5),
    case("adam", ADAM, 0.05),
    case("adam_weight_decay", ADAM, 0.05, weight_decay=0.1),
    case("adamw", ADAM, 0.05, weight_decay=0.1, decoupled=True),
    case("adam_amsgrad", ADAM, 0.05, amsgrad=True),
    case("adamw_amsgrad", ADAM, 0.03, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.05,
         decoupled=True, amsgrad=True),
    case("adam_amsgrad_weight_decay", ADAM, 0.02, beta1=0.5, beta2=0.9, weight_decay=0.3,
         amsgrad=True),
    case("adam_cosine", ADAM, 0.05, sched=SCHED_COSINE, sched_n=20, sched_a=0.001),
    case("rmsprop", RMSPROP, 0.01),
    case("rmsprop_momentum", RMSPROP, 0.01, momentum=0.9),
    case("rmsprop_centered", RMSPROP, 0.01, centered=True),
    case("rmsprop_weight_decay", RMSPROP, 0.01, weight_decay=0.1),
    case("rmsprop_all", RMSPROP, 0.005, alpha=0.9, eps=1e-6, momentum=0.5, weight_decay=0.05,
         centered=True),
]


def grad_of(k, p, t):
    return 0.5 * (p - (0.1 * k - 0.2)) + 0.3 * math.sin(0.7 * t + 1.3 * k)


def make_optim(c, params):
    if c["kind"] == SGD:
        return torch.optim.SGD(params, lr=c["lr"], momentum=c["momentum"],
                               dampening=c["dampening"], weight_decay=c["weight_decay"],
                               nesterov=c["nesterov"], foreach=False)
    if c["kind"] == ADAM:
        cls = torch.optim.AdamW if c["decoupled"] else torch.optim.Adam
        return cls(params, lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                   weight_decay=c["weight_decay"], amsgrad=c["amsgrad"], foreach=False)
    return torch.optim.RMSprop(params, lr=c["lr"], alpha=c["alpha"], eps=c["eps"],
                               weight_decay=c["weight_decay"], momentum=c["momentum"],
                               centered=c["centered"], foreach=False)


def make_sched(c, opt):
    if c["sched"] == SCHED_STEP:
        return StepLR(opt, step_size=c["sched_n"], gamma=c["sched_a"])
    if c["sched"] == SCHED_COSINE:
        return CosineAnnealingLR(opt, T_max=c["sched_n"], eta_min=c["sched_a"])
    return None


def run(c, dtype):
    p0 = torch.tensor(INIT[:SPLIT], dtype=dtype, requires_grad=True)
    p1 = torch.tensor(INIT[SPLIT:], dtype=dtype).reshape(2, 2).requires_grad_(True)
    opt = make_optim(c, [p0, p1])
    sched = make_sched(c, opt)
    for t in range(1, STEPS + 1):
        if sched is not None:
            sched.last_epoch = t - 1
            opt.param_groups[0]["lr"] = sched._get_closed_form_lr()[0]
        vals = p0.detach().tolist() + p1.detach().reshape(-1).tolist()
        g = [grad_of(k, v, t) for k, v in enumerate(vals)]
        p0.grad = torch.tensor(g[:SPLIT], dtype=dtype)
        if t % SKIP_MOD == SKIP_REM:
            p1.grad = None
        else:
            p1.grad = torch.tensor(g[SPLIT:], dtype=dtype).reshape(2, 2)
        opt.step()
    return p0.detach().tolist() + p1.detach().reshape(-1).tolist()


def fmt(xs):
    return "{" + ", ".join("%.17g" % x for x in xs) + "}"


def clip_case(max_norm):
    a = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(2, dtype=torch.float64, requires_grad=True)  # no gradient: skipped
    a.grad = torch.tensor(CLIP_GA, dtype=torch.float64)
    b.grad = torch.tensor(CLIP_GB, dtype=torch.float64).reshape(2, 2)
    total = torch.nn.utils.clip_grad_norm_([a, b, c], max_norm)
    return float(total), a.grad.tolist() + b.grad.reshape(-1).tolist()


CLIP_GA = [0.3, -1.2, 2.5]
CLIP_GB = [-0.7, 0.05, 1.9, -3.1]


def main():
    out = []
    w = out.append
    w("/* optim_ref.h: generated by tests/ref/gen_optim_ref.py (torch %s); do not edit."
      % torch.__version__)
    w(" * Final parameters after OPTREF_STEPS steps of torch.optim on the synthetic")
    w(" * problem described in the script, plus clip_grad_norm_ and lr_scheduler values. */")
    w("#ifndef TG_OPTIM_REF_H")
    w("#define TG_OPTIM_REF_H")
    w("")
    w("#define OPTREF_STEPS %d" % STEPS)
    w("#define OPTREF_NUMEL %d" % len(INIT))
    w("#define OPTREF_SPLIT %d /* p0 = elements [0, SPLIT), p1 = the rest as [2,2] */" % SPLIT)
    w("#define OPTREF_SKIP_MOD %d /* p1 has no gradient when t %% MOD == REM */" % SKIP_MOD)
    w("#define OPTREF_SKIP_REM %d" % SKIP_REM)
    w("enum { OPTREF_SGD = %d, OPTREF_ADAM = %d, OPTREF_RMSPROP = %d };" % (SGD, ADAM, RMSPROP))
    w("enum { OPTREF_NO_SCHED = %d, OPTREF_SCHED_STEP = %d, OPTREF_SCHED_COSINE = %d };"
      % (NO_SCHED, SCHED_STEP, SCHED_COSINE))
    w("")
    w("static const double optref_init[OPTREF_NUMEL] = %s;" % fmt(INIT))
    w("")
    w("typedef struct {")
    w("    const char *name;")
    w("    int kind;")
    w("    double lr, momentum, dampening, weight_decay, beta1, beta2, eps, alpha;")
    w("    int nesterov, decoupled, amsgrad, centered;")
    w("    int sched, sched_n; /* schedule and its step_size / T_max */")
    w("    double sched_a;     /* gamma / eta_min */")
    w("    double want64[OPTREF_NUMEL]; /* torch.float64 run */")
    w("    double want32[OPTREF_NUMEL]; /* torch.float32 run */")
    w("} optref_case;")
    w("")
    w("static const optref_case optref_cases[] = {")
    for c in CASES:
        w("    {\"%s\", %d, %.17g, %.17g, %.17g, %.17g, %.17g, %.17g, %.17g, %.17g, %d, %d, %d, %d,"
          % (c["name"], c["kind"], c["lr"], c["momentum"], c["dampening"], c["weight_decay"],
             c["beta1"], c["beta2"], c["eps"], c["alpha"], c["nesterov"], c["decoupled"],
             c["amsgrad"], c["centered"]))
        w("     %d, %d, %.17g," % (c["sched"], c["sched_n"], c["sched_a"]))
        w("     %s," % fmt(run(c, torch.float64)))
        w("     %s}," % fmt(run(c, torch.float32)))
    w("};")
    w("#define OPTREF_NCASES ((int)(sizeof optref_cases / sizeof optref_cases[0]))")
    w("")
    w("/* clip_grad_norm_ over a [3] and a [2,2] gradient (and a parameter without one). */")
    w("static const double optref_clip_ga[3] = %s;" % fmt(CLIP_GA))
    w("static const double optref_clip_gb[4] = %s;" % fmt(CLIP_GB))
    for tag, mx in (("small", 1.5), ("large", 100.0)):
        total, g = clip_case(mx)
        w("#define OPTREF_CLIP_MAX_%s %.17g" % (tag.upper(), mx))
        w("static const double optref_clip_total_%s = %.17g;" % (tag, total))
        w("static const double optref_clip_grads_%s[7] = %s;" % (tag, fmt(g)))
    w("")
    # Closed-form learning rates, epochs 0..NLR-1, from the schedulers themselves.
    nlr = 25
    dummy = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([dummy], lr=0.1)
    step = StepLR(opt, step_size=3, gamma=0.5)
    steps = []
    for e in range(nlr):
        step.last_epoch = e
        steps.append(step._get_closed_form_lr()[0])
    opt = torch.optim.SGD([dummy], lr=0.1)
    cos = CosineAnnealingLR(opt, T_max=10, eta_min=0.001)
    coss = []
    for e in range(nlr):
        cos.last_epoch = e
        coss.append(cos._get_closed_form_lr()[0])
    w("#define OPTREF_NLR %d" % nlr)
    w("/* StepLR(base 0.1, step_size 3, gamma 0.5), epochs 0..NLR-1 */")
    w("static const double optref_step_lr[OPTREF_NLR] = %s;" % fmt(steps))
    w("/* CosineAnnealingLR(base 0.1, T_max 10, eta_min 0.001), epochs 0..NLR-1 */")
    w("static const double optref_cosine_lr[OPTREF_NLR] = %s;" % fmt(coss))
    w("")
    w("#endif")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_ref.h")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
