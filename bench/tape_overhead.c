/*
 * tape_overhead.c — the fixed cost of the tape on the smallest possible graph.
 *
 * One cycle records y = sin(x1) + x1*x2 on 0-d F64 tensors (three nodes), runs
 * tg_backward(y), resets the tape and zeroes the two persistent gradients. The
 * arithmetic is a handful of flops, so the time per cycle is what the library itself
 * costs: checks, arena allocation, recording, the reverse sweep, and delivery of the
 * gradients.
 *
 * Output: nanoseconds per cycle over `batches` timed batches of `cycles` cycles
 * (median and minimum over batches), and heap allocations per cycle after the warm-up,
 * counted through tg_set_allocator (expected to be 0: the arena keeps its blocks and
 * the persistent gradients exist after the first cycle).
 *
 *     tape_overhead [batches [cycles [hand]]]     defaults: 51 batches of 100000 cycles
 *
 * With "hand", the same cycle is timed as a hand-written adjoint instead (the forward
 * values, then dy/dx1 = cos x1 + x2 and dy/dx2 = x1), the floor of any tool.
 * The program is built twice, against the shared library (tape_overhead) and the
 * static archive (tape_overhead_static). The last line is machine-readable:
 *     RESULT tapegrad median_ns=<x> min_ns=<x> allocs_per_cycle=<x>
 *     RESULT hand median_ns=<x> min_ns=<x>
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tapegrad.h>

#include "bench_util.h"

/* One record + backward + reset cycle. Returns 0, or -1 with tg_error() set. */
static int cycle(tg_tensor *x1, tg_tensor *x2) {
    tg_tensor *v2 = tg_sin(x1);
    tg_tensor *v3 = tg_mul(x1, x2);
    tg_tensor *y = tg_add(v2, v3);
    int rc = tg_backward(y);
    tg_tape_reset();
    tg_zero_grad(x1);
    tg_zero_grad(x2);
    return rc;
}

/* The hand-written adjoint of the cycle; the inputs are read through volatile so that
 * the compiler cannot hoist the work out of the timing loop. */
static volatile double hand_x1 = 2.0, hand_x2 = 5.0, hand_sink;

static int hand_cycle(void *ctx) {
    (void)ctx;
    double x1 = hand_x1, x2 = hand_x2;
    double y = sin(x1) + x1 * x2;
    double g1 = cos(x1) + x2, g2 = x1; /* ybar = 1 */
    hand_sink = y + g1 + g2;
    return 0;
}

static int run_hand(long batches, long cycles) {
    hand_cycle(NULL);
    if (fabs(hand_sink - (sin(2.0) + 10.0 + cos(2.0) + 5.0 + 2.0)) > 1e-12) return 1;
    bench_stat st = bench_time_calls((int)batches, cycles, hand_cycle, NULL);
    printf("hand-written adjoint: median %.1f ns/cycle, min %.1f ns/cycle\n", st.median, st.min);
    printf("RESULT hand median_ns=%.2f min_ns=%.2f\n", st.median, st.min);
    return 0;
}

int main(int argc, char **argv) {
    long batches = argc > 1 ? strtol(argv[1], NULL, 10) : 51;
    long cycles = argc > 2 ? strtol(argv[2], NULL, 10) : 100000;
    bool hand = argc > 3 && strcmp(argv[3], "hand") == 0;
    if (batches < 1 || cycles < 1 || (argc > 3 && !hand) || argc > 4) {
        fprintf(stderr, "usage: %s [batches [cycles [hand]]]\n", argv[0]);
        return 2;
    }
    if (hand) return run_hand(batches, cycles);
    bench_count_allocations();

    tg_tensor *x1 = tg_scalar(TG_F64, 2.0), *x2 = tg_scalar(TG_F64, 5.0);
    if (!x1 || !x2) {
        fprintf(stderr, "tape_overhead: %s\n", tg_error());
        return 1;
    }
    tg_requires_grad(x1, true);
    tg_requires_grad(x2, true);

    /* Warm-up: the arena's first block and the persistent gradients appear here. */
    for (int i = 0; i < 1000; i++)
        if (cycle(x1, x2) != 0) {
            fprintf(stderr, "tape_overhead: %s\n", tg_error());
            return 1;
        }

    /* The gradients of the last cycle, before the zeroing, must be right. */
    tg_tensor *v2 = tg_sin(x1), *v3 = tg_mul(x1, x2), *y = tg_add(v2, v3);
    if (tg_backward(y) != 0 || fabs(tg_item(x1->grad) - (cos(2.0) + 5.0)) > 1e-12 ||
        fabs(tg_item(x2->grad) - 2.0) > 1e-12) {
        fprintf(stderr, "tape_overhead: wrong gradients\n");
        return 1;
    }
    tg_tape_reset();
    tg_zero_grad(x1);
    tg_zero_grad(x2);

    double *ns = malloc((size_t)batches * sizeof *ns);
    if (!ns) return 1;
    unsigned long long alloc0 = bench_n_alloc;
    int bad = 0;
    for (long b = 0; b < batches; b++) {
        double t0 = bench_now_ns();
        for (long i = 0; i < cycles; i++)
            bad |= cycle(x1, x2);
        ns[b] = (bench_now_ns() - t0) / (double)cycles;
    }
    unsigned long long allocs = bench_n_alloc - alloc0;
    if (bad) {
        fprintf(stderr, "tape_overhead: %s\n", tg_error());
        return 1;
    }
    qsort(ns, (size_t)batches, sizeof *ns, bench_cmp_double);
    double median = ns[batches / 2], min = ns[0];
    double per_cycle = (double)allocs / ((double)batches * (double)cycles);

    printf("tapegrad: y = sin(x1) + x1*x2, 0-d f64, record + backward + reset\n");
    printf("  %ld batches x %ld cycles\n", batches, cycles);
    printf("  median %.1f ns/cycle, min %.1f ns/cycle\n", median, min);
    printf("  heap allocations after warm-up: %llu (%.3g per cycle)\n", allocs, per_cycle);
    printf("RESULT tapegrad median_ns=%.1f min_ns=%.1f allocs_per_cycle=%.3g\n", median, min,
           per_cycle);

    free(ns);
    tg_tensor_free(x1);
    tg_tensor_free(x2);
    tg_tape_free();
    if (bench_n_alloc != bench_n_release)
        fprintf(stderr, "tape_overhead: %llu allocations but %llu releases\n", bench_n_alloc,
                bench_n_release);
    return allocs == 0 && bench_n_alloc == bench_n_release ? 0 : 1;
}
