/*
 * advection.c — the linear advection benchmark (bench/advection.h) in tapegrad, in the
 * two ways a user writes it, and the hand-written adjoint:
 *
 *   scalar  every grid value a 0-d F64 tensor, the loops written out element by
 *           element as in the formulas (5 ops per flux, 2 per update: 1.38 million
 *           tape nodes), the way scalar scientific code is written;
 *   vector  q one F64 tensor [100]; a step is 15 ops on slices: the fluxes from the
 *           slices q[0:99] and q[1:100] (2 slices, add, sub, mul_scalar, add,
 *           mul_scalar), the update of q[1:99] (3 slices, sub, add), and the periodic
 *           copies joined by tg_concat (2 slices, concat);
 *   hand    adv_hand(), the hand-written adjoint.
 *
 * One iteration computes J and dJ/dq0 from scratch: record, tg_backward(J), read the
 * gradient, tg_tape_reset() and tg_zero_grad() of the inputs. Before timing, the
 * gradient must agree with the hand adjoint to ADV_TOL, and again after it (the
 * program exits 1 if not); adv_time() in advection.h.
 *
 *     advection scalar|vector|hand [repeats [warmup]]     defaults 11 (hand 101) and 2
 *
 * (warmup counts the checked first run: at least 1.)
 *
 * Output ends with the machine-readable line
 *     RESULT <tapegrad-scalar|tapegrad-vector|hand> median_ms=<x> min_ms=<x> rss_mib=<x>
 *         [nodes=<x> tape_used_mib=<x> tape_reserved_mib=<x>]
 * where rss_mib is the process's peak RSS (run one mode per process to compare tools)
 * and, for tapegrad, nodes is the tape's node count after recording, tape_used_mib the
 * arena bytes in use after tg_backward (the peak: the backward's gradients live on the
 * tape too) and tape_reserved_mib what the arena holds (tg_tape_bytes_reserved).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "advection.h"
#include "bench_util.h"

typedef struct {
    tg_tensor *q0[ADV_N]; /* scalar form: the inputs, persistent, requiring gradients */
    tg_tensor *q0v;       /* vector form: the input [ADV_N] */
    double J, grad[ADV_N];
    size_t nodes, used; /* tape size and bytes in use after the last backward */
} adv_ctx;

/* J(q0) recorded one scalar op at a time. */
static tg_tensor *record_scalar(tg_tensor *const *q0) {
    tg_tensor *q[ADV_N], *flux[ADV_N - 1];
    for (int i = 0; i < ADV_N; i++)
        q[i] = q0[i];
    for (int s = 0; s < ADV_STEPS; s++) {
        for (int i = 0; i < ADV_N - 1; i++) {
            tg_tensor *sum = tg_add(q[i], q[i + 1]), *diff = tg_sub(q[i], q[i + 1]);
            flux[i] = tg_mul_scalar(tg_add(sum, tg_mul_scalar(diff, ADV_C)), 0.5 * ADV_C);
        }
        for (int i = 1; i < ADV_N - 1; i++)
            q[i] = tg_add(q[i], tg_sub(flux[i - 1], flux[i]));
        q[0] = q[ADV_N - 2];
        q[ADV_N - 1] = q[1];
    }
    tg_tensor *J = tg_square(q[0]);
    for (int i = 1; i < ADV_N; i++)
        J = tg_add(J, tg_square(q[i]));
    return J; /* NULL if any op failed */
}

/* J(q0) recorded on whole-grid slices. */
static tg_tensor *record_vector(tg_tensor *q0) {
    tg_tensor *q = q0;
    for (int s = 0; s < ADV_STEPS; s++) {
        tg_tensor *lo = tg_slice(q, 0, 0, ADV_N - 1), *hi = tg_slice(q, 0, 1, ADV_N);
        tg_tensor *flux = tg_mul_scalar(
            tg_add(tg_add(lo, hi), tg_mul_scalar(tg_sub(lo, hi), ADV_C)), 0.5 * ADV_C);
        tg_tensor *inner =
            tg_add(tg_slice(q, 0, 1, ADV_N - 1),
                   tg_sub(tg_slice(flux, 0, 0, ADV_N - 2), tg_slice(flux, 0, 1, ADV_N - 1)));
        /* inner holds q[1..98]: q[0] = q[98] is inner[97], q[99] = q[1] is inner[0] */
        tg_tensor *parts[3] = {tg_slice(inner, 0, ADV_N - 3, ADV_N - 2), inner,
                               tg_slice(inner, 0, 0, 1)};
        q = tg_concat(3, parts, 0);
    }
    return tg_sum(tg_square(q), TG_ALL, false);
}

/* One function + gradient evaluation of the tapegrad forms; 0 or -1 (tg_error() set). */
static int run_tapegrad(adv_ctx *c, bool scalar) {
    tg_tensor *J = scalar ? record_scalar(c->q0) : record_vector(c->q0v);
    c->nodes = tg_tape_size();
    int rc = J ? tg_backward(J) : -1;
    c->used = tg_tape_bytes_used();
    if (rc == 0) {
        c->J = tg_item(J);
        for (int i = 0; i < ADV_N; i++)
            c->grad[i] = scalar ? tg_item(c->q0[i]->grad) : ((const double *)c->q0v->grad->data)[i];
    }
    tg_tape_reset();
    if (scalar)
        for (int i = 0; i < ADV_N; i++)
            tg_zero_grad(c->q0[i]);
    else
        tg_zero_grad(c->q0v);
    return rc;
}

static int run_scalar(void *ctx) { return run_tapegrad(ctx, true); }
static int run_vector(void *ctx) { return run_tapegrad(ctx, false); }

static int run_hand(void *ctx) {
    adv_ctx *c = ctx;
    double q0[ADV_N];
    adv_init(q0);
    c->J = adv_hand(q0, c->grad);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    bool scalar = strcmp(mode, "scalar") == 0, vector = strcmp(mode, "vector") == 0,
         hand = strcmp(mode, "hand") == 0;
    int repeats = argc > 2 ? atoi(argv[2]) : hand ? 101 : 11, warmup = argc > 3 ? atoi(argv[3]) : 2;
    if (!(scalar || vector || hand) || repeats < 1 || warmup < 1) {
        fprintf(stderr, "usage: advection scalar|vector|hand [repeats [warmup]]\n");
        return 2;
    }
    adv_ctx *c = calloc(1, sizeof *c);
    if (!c) return 1;
    double q0[ADV_N];
    adv_init(q0);
    for (int i = 0; i < ADV_N && scalar; i++) {
        if (!(c->q0[i] = tg_scalar(TG_F64, q0[i]))) return 1;
        tg_requires_grad(c->q0[i], true);
    }
    if (vector) {
        if (!(c->q0v = tg_tensor_from(TG_F64, TG_SHAPE(ADV_N), q0))) return 1;
        tg_requires_grad(c->q0v, true);
    }
    int (*fn)(void *) = scalar ? run_scalar : vector ? run_vector : run_hand;
    const char *tool = scalar ? "tapegrad-scalar" : vector ? "tapegrad-vector" : "hand";

    bench_stat st = adv_time(tool, fn, c, &c->J, c->grad, repeats, warmup);
    if (st.median < 0) {
        fprintf(stderr, "advection %s: %s\n", mode, tg_error() ? tg_error() : "failed");
        return 1;
    }
    double rss = bench_max_rss_mib();
    printf("%s: function + gradient %.3f ms median, %.3f min (%d runs); peak RSS %.1f MiB\n", tool,
           st.median / 1e6, st.min / 1e6, repeats, rss);
    if (hand) {
        printf("RESULT %s median_ms=%.4f min_ms=%.4f rss_mib=%.1f\n", tool, st.median / 1e6,
               st.min / 1e6, rss);
    } else {
        double mib = 1024.0 * 1024.0, reserved = (double)tg_tape_bytes_reserved() / mib;
        printf("%s: %zu tape nodes, %.1f MiB of tape in use at the end of backward, %.1f MiB "
               "reserved\n",
               tool, c->nodes, (double)c->used / mib, reserved);
        printf("RESULT %s median_ms=%.4f min_ms=%.4f rss_mib=%.1f nodes=%zu tape_used_mib=%.2f "
               "tape_reserved_mib=%.2f\n",
               tool, st.median / 1e6, st.min / 1e6, rss, c->nodes, (double)c->used / mib, reserved);
    }
    for (int i = 0; i < ADV_N && scalar; i++)
        tg_tensor_free(c->q0[i]);
    tg_tensor_free(c->q0v);
    tg_tape_free();
    free(c);
    return 0;
}
