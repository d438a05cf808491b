/* advection.h — the linear advection benchmark of Hogan (2014), the one Adept's
 * benchmark suite uses, shared by bench/advection.c (tapegrad) and the C++ peers in
 * bench/peers/ (ADOL-C, Sacado). Plain C, valid C++.
 *
 * ADV_N = 100 grid points, ADV_STEPS = 2000 Lax-Wendroff steps at Courant number
 * c = 0.5 from q0[i] = 0.5 + 0.5 sin(2 pi i / 100). One step:
 *
 *     flux[i] = 0.5 c (q[i] + q[i+1] + c (q[i] - q[i+1]))     0 <= i < 99
 *     q[i]   += flux[i-1] - flux[i]                            0 <  i < 99
 *     q[0]    = q[98],  q[99] = q[1]                           (periodic copies)
 *
 * The cost function is J = sum_i q[i]^2 after the last step; the benchmark computes J
 * and dJ/dq0. adv_hand() is the hand-written adjoint every tool is checked against:
 * the map is linear, so its reverse sweep needs only the final state. */
#ifndef TG_BENCH_ADVECTION_H
#define TG_BENCH_ADVECTION_H

#include <math.h>
#include <stdio.h>

#include "bench_util.h"

enum { ADV_N = 100, ADV_STEPS = 2000 };
#define ADV_C 0.5
#define ADV_TOL 1e-10 /* largest allowed |dJ/dq0 - hand adjoint| */
#define ADV_PI 3.14159265358979323846

/* q0[i] = 0.5 + 0.5 sin(2 pi i / ADV_N). */
static inline void adv_init(double *q0) {
    for (int i = 0; i < ADV_N; i++)
        q0[i] = 0.5 + 0.5 * sin(2.0 * ADV_PI * i / ADV_N);
}

/* J(q0) and grad = dJ/dq0 by hand: the forward steps, then their adjoints in reverse
 * order (each statement of a step undone in reverse, from the copies back to the
 * fluxes). */
static inline double adv_hand(const double *q0, double *grad) {
    double q[ADV_N], flux[ADV_N - 1];
    for (int i = 0; i < ADV_N; i++)
        q[i] = q0[i];
    for (int s = 0; s < ADV_STEPS; s++) {
        for (int i = 0; i < ADV_N - 1; i++)
            flux[i] = 0.5 * ADV_C * (q[i] + q[i + 1] + ADV_C * (q[i] - q[i + 1]));
        for (int i = 1; i < ADV_N - 1; i++)
            q[i] += flux[i - 1] - flux[i];
        q[0] = q[ADV_N - 2];
        q[ADV_N - 1] = q[1];
    }
    double J = 0.0, *qb = grad, fb[ADV_N - 1];
    for (int i = 0; i < ADV_N; i++) {
        J += q[i] * q[i];
        qb[i] = 2.0 * q[i];
    }
    for (int s = 0; s < ADV_STEPS; s++) {
        qb[1] += qb[ADV_N - 1]; /* q[99] = q[1] */
        qb[ADV_N - 1] = 0.0;
        qb[ADV_N - 2] += qb[0]; /* q[0] = q[98] */
        qb[0] = 0.0;
        for (int i = 0; i < ADV_N - 1; i++)
            fb[i] = 0.0;
        for (int i = 1; i < ADV_N - 1; i++) { /* q[i] += flux[i-1] - flux[i] */
            fb[i - 1] += qb[i];
            fb[i] -= qb[i];
        }
        for (int i = 0; i < ADV_N - 1; i++) { /* flux[i] = 0.5c(q[i] + q[i+1] + c(...)) */
            qb[i] += 0.5 * ADV_C * (1.0 + ADV_C) * fb[i];
            qb[i + 1] += 0.5 * ADV_C * (1.0 - ADV_C) * fb[i];
        }
    }
    return J;
}

/* Compares a tool's J and gradient with the hand adjoint's; prints the largest
 * difference and returns 0 when every one is within ADV_TOL, else 1. */
static inline int adv_check(const char *tool, double J, const double *grad) {
    double q0[ADV_N], ref[ADV_N];
    adv_init(q0);
    double worst = fabs(J - adv_hand(q0, ref));
    int bad = !(worst <= ADV_TOL); /* NaN fails */
    for (int i = 0; i < ADV_N; i++) {
        double d = fabs(grad[i] - ref[i]);
        bad |= !(d <= ADV_TOL);
        if (d > worst) worst = d;
    }
    printf("%s: J = %.15g, largest difference from the hand adjoint (J and dJ/dq0) %.3g\n", tool, J,
           worst);
    if (bad) {
        fprintf(stderr, "%s: J or dJ/dq0 differs from the hand adjoint by more than %g\n", tool,
                ADV_TOL);
        return 1;
    }
    return 0;
}

/* What every advection program does with its tool: one run of fn(ctx) (which sets *J
 * and grad[0..ADV_N)) checked against the hand adjoint, warmup - 1 more runs, then
 * `repeats` timed runs, the last one checked too. Returns the median and minimum
 * nanoseconds per run, or a negative median when fn failed or a check did. */
static inline bench_stat adv_time(const char *tool, int (*fn)(void *), void *ctx, const double *J,
                                  const double *grad, int repeats, int warmup) {
    bench_stat fail = {-1.0, -1.0};
    if (fn(ctx) != 0 || adv_check(tool, *J, grad) != 0) return fail;
    for (int w = 1; w < warmup; w++)
        if (fn(ctx) != 0) return fail;
    bench_stat st = bench_time_calls(repeats, 1, fn, ctx);
    if (st.median < 0 || adv_check(tool, *J, grad) != 0) return fail;
    return st;
}

#endif
