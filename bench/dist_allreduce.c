/* dist_allreduce.c — time of tg_dist_allreduce_grads (agreement step, reduce-scatter,
 * allgather) on one F32 gradient of n floats, for the sizes of the Fashion-MNIST MLP and
 * CNN and a sweep from 1 Ki to 4 Mi floats, to fit the latency (alpha) and inverse
 * bandwidth (beta) of the machine's own transport; and one Adam update of the same two
 * gradient sizes, the part of a step that every rank repeats in full whatever the number
 * of ranks. Run under mpirun (scripts/mpirun.sh 2 build/.../bench/dist_allreduce); rank 0
 * prints one RESULT line per size:
 *     RESULT allreduce ranks=2 floats=235146 bytes=940584 median_us=...
 *     RESULT adam floats=235146 median_us=... */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"

/* Median wall time in microseconds of reps calls of step(ctx) after three warm-up calls;
 * a failing call ends the program with the library's message. */
static double median_us(int (*step)(void *), void *ctx, int reps) {
    double *t = malloc(sizeof *t * (size_t)reps);
    for (int r = -3; r < reps; r++) {
        double t0 = bench_now_ns();
        if (step(ctx) != 0) {
            fprintf(stderr, "dist_allreduce: %s\n", tg_error());
            exit(1);
        }
        if (r >= 0) t[r] = (bench_now_ns() - t0) / 1e3;
    }
    double med = bench_median(t, (size_t)reps);
    free(t);
    return med;
}

static int allreduce_step(void *p) {
    tg_tensor *t = p;
    return tg_dist_allreduce_grads(&t, 1);
}
static int adam_step(void *o) { return tg_optim_step(o); }

/* One combine of an F32 gradient of n floats (created as zeros by the first call). */
static double time_allreduce(int64_t n, int reps) {
    tg_tensor *p = tg_tensor_new(TG_F32, TG_SHAPE(n));
    tg_requires_grad(p, true);
    double us = median_us(allreduce_step, p, reps);
    tg_tensor_free(p);
    return us;
}

/* One Adam update of an F32 parameter of n floats. */
static double time_adam(int64_t n, int reps) {
    tg_tensor *p = tg_tensor_new(TG_F32, TG_SHAPE(n));
    tg_requires_grad(p, true);
    p->grad = tg_tensor_new(TG_F32, TG_SHAPE(n));
    tg_tensor_fill(p->grad, 1e-3);
    tg_optim *o = tg_adam(1, &p, (tg_adam_opts){.lr = 1e-3});
    double us = median_us(adam_step, o, reps);
    tg_optim_free(o);
    tg_tensor_free(p);
    return us;
}

int main(int argc, char **argv) {
    if (tg_dist_init(&argc, &argv) != 0) {
        fprintf(stderr, "dist_allreduce: %s\n", tg_error());
        return 1;
    }
    int rank = tg_dist_rank(), size = tg_dist_size();
    /* The MLP 784-256-128-10 and the CNN of examples/fashion_mnist, then the sweep. */
    int64_t sizes[32] = {235146, 80202};
    int n = 2;
    for (int64_t k = 1024; k <= ((int64_t)4 << 20); k *= 4)
        sizes[n++] = k;
    for (int i = 0; i < n; i++) {
        int reps = sizes[i] > (1 << 20) ? 30 : 200;
        double us = time_allreduce(sizes[i], reps);
        if (rank == 0)
            printf("RESULT allreduce ranks=%d floats=%lld bytes=%lld median_us=%.1f\n", size,
                   (long long)sizes[i], (long long)(4 * sizes[i]), us);
    }
    for (int i = 0; i < 2; i++) {
        double us = time_adam(sizes[i], 200);
        if (rank == 0) printf("RESULT adam floats=%lld median_us=%.1f\n", (long long)sizes[i], us);
    }
    tg_dist_finalize();
    return 0;
}
