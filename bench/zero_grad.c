/*
 * zero_grad.c — the cost of keeping zero gradients zero on the elementwise backward path.
 *
 * One cycle records y = sum(log(sqrt(x) / z)) on two 1-D tensors of n elements, runs
 * tg_backward(y) and resets the tape. Its backward is all grad_div / grad_mul (the
 * masked quotient and product that turn 0 * inf into 0, see src/ops/elementwise.c), so
 * built against a library without the rule (plain tg_div / tg_mul in those backwards)
 * the same program measures what the rule costs. Values are fixed (no random numbers),
 * every one positive and away from 0, as in a training loop.
 *
 * Output: milliseconds per cycle over `cycles` cycles (median and minimum), f32 then f64.
 *
 *     zero_grad [n [cycles]]      defaults: n = 100000, 201 cycles
 *
 * The last lines are machine-readable:
 *     RESULT <f32|f64> median_ms=<x> min_ms=<x>
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include <tapegrad.h>

#include "bench_util.h"

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? atoll(argv[1]) : 100000;
    int cycles = argc > 2 ? atoi(argv[2]) : 201;
    if (n < 1 || cycles < 1) {
        fprintf(stderr, "usage: zero_grad [n >= 1 [cycles >= 1]]\n");
        return 2;
    }
    double *t = malloc(sizeof *t * (size_t)cycles);
    if (!t) return 1;
    for (int dt = 0; dt < 2; dt++) {
        tg_dtype d = dt ? TG_F64 : TG_F32;
        tg_tensor *x = tg_tensor_new(d, 1, &n), *z = tg_tensor_new(d, 1, &n);
        if (!x || !z) {
            fprintf(stderr, "%s\n", tg_error());
            return 1;
        }
        for (int64_t i = 0; i < n; i++) {
            tg_tensor_set(x, i, 0.1 + (double)(i % 97) * 0.01);
            tg_tensor_set(z, i, 0.2 + (double)(i % 89) * 0.01);
        }
        tg_requires_grad(x, true);
        tg_requires_grad(z, true);
        for (int c = -10; c < cycles; c++) { /* 10 warm-up cycles */
            double t0 = bench_now_ns();
            tg_tensor *y = tg_sum(tg_log(tg_div(tg_sqrt(x), z)), TG_ALL, false);
            if (!y || tg_backward(y) != 0) {
                fprintf(stderr, "%s\n", tg_error());
                return 1;
            }
            tg_tape_reset();
            if (c >= 0) t[c] = (bench_now_ns() - t0) * 1e-6;
        }
        double med = bench_median(t, (size_t)cycles);
        printf("%s n=%lld: y = sum(log(sqrt(x) / z)) forward + backward, median %.3f ms, min "
               "%.3f ms\n",
               dt ? "f64" : "f32", (long long)n, med, t[0]);
        printf("RESULT %s median_ms=%.4f min_ms=%.4f\n", dt ? "f64" : "f32", med, t[0]);
        tg_tensor_free(x);
        tg_tensor_free(z);
    }
    free(t);
    return 0;
}
