/* transforms.c — the cost of tg_jvp, tg_jacobian, tg_hessian and tg_checkpoint relative
 * to one forward + backward sweep, and the tape memory checkpointing saves.
 *
 *   transforms [reps]          (default 21: the median of that many timed runs)
 *
 * f(x) = tanh(x A) B with x [1, 64], A [64, 64], B [64, 32]: y has 32 elements. The
 * reference cost "fb" is one recorded forward of f plus one tg_backward of sum(y).
 * The Hessian is of the scalar sum(f(x)^2) w.r.t. x (64 rows).
 * The checkpoint chain is 32 blocks z = tanh(z A + b), z [64, 128], A [128, 128], and
 * y = sum(z^2): one training step (forward, backward, reset) with every block
 * checkpointed or none, the tape bytes in use after the forward (what the backward
 * needs kept) and the peak over the step (tg_tape_bytes_peak), which also counts the
 * gradients the backward sweep makes. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"

enum { N = 64, H = 64, M = 32, DEPTH = 32, ROWS = 64, WIDTH = 128 };

typedef struct {
    tg_tensor *A, *B, *b;
} params;

static tg_tensor *f(tg_tensor *const *in, void *ctx) {
    params *p = ctx;
    return tg_matmul(tg_tanh(tg_matmul(in[0], p->A)), p->B);
}

static tg_tensor *f_scalar(tg_tensor *const *in, void *ctx) {
    return tg_sum(tg_square(f(in, ctx)), TG_ALL, false);
}

static tg_tensor *block(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_tanh(tg_add(tg_matmul(in[0], in[1]), in[2]));
}

static tg_tensor *chain(tg_tensor *x, params *p, bool ck) {
    tg_tensor *z = x;
    for (int k = 0; k < DEPTH; k++) {
        tg_tensor *in[] = {z, p->A, p->b};
        z = ck ? tg_checkpoint(block, NULL, 3, in) : block(in, NULL);
    }
    return tg_sum(tg_square(z), TG_ALL, false);
}

static int reps = 21;

/* The median over reps runs of what (a small enum) in ns; every run ends with a reset. */
enum what { FB, JVP, JAC, HESS, STEP_PLAIN, STEP_CK };
static double measure(enum what w, tg_tensor *x, tg_tensor *v, params *p, params *q,
                      tg_tensor *xc) {
    double *t = malloc((size_t)reps * sizeof *t);
    tg_tensor *y, *jv;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now_ns();
        int ok = 1;
        switch (w) {
        case FB: {
            tg_tensor *xs = tg_detach(x); /* a leaf of its own, like the transforms use */
            tg_requires_grad(xs, true);
            tg_tensor *in[] = {xs};
            ok = tg_backward(tg_sum(f(in, p), TG_ALL, false)) == 0;
            break;
        }
        case JVP:
            ok = tg_jvp(f, p, 1, &x, &v, &y, &jv) == 0;
            break;
        case JAC:
            ok = tg_jacobian(f, p, 1, &x, 0) != NULL;
            break;
        case HESS:
            ok = tg_hessian(f_scalar, p, 1, &x, 0) != NULL;
            break;
        case STEP_PLAIN:
        case STEP_CK:
            ok = tg_backward(chain(xc, q, w == STEP_CK)) == 0;
            tg_zero_grad(q->A);
            tg_zero_grad(q->b);
            break;
        }
        tg_tape_reset();
        t[r] = bench_now_ns() - t0;
        if (!ok) {
            fprintf(stderr, "failed: %s\n", tg_error());
            exit(1);
        }
    }
    double m = bench_median(t, (size_t)reps);
    free(t);
    return m;
}

/* Peak tape bytes of one step; *kept: bytes in use after the forward (what is kept for
 * the backward). */
static size_t peak_of(bool ck, tg_tensor *xc, params *q, size_t *kept) {
    tg_tape_reset();
    tg_tensor *y = chain(xc, q, ck);
    *kept = tg_tape_bytes_used();
    if (tg_backward(y) != 0) exit(1);
    size_t peak = tg_tape_bytes_peak();
    tg_zero_grad(q->A);
    tg_zero_grad(q->b);
    tg_tape_reset();
    return peak;
}

int main(int argc, char **argv) {
    if (argc > 1) reps = atoi(argv[1]);
    if (reps < 1) reps = 1;
    tg_seed(1);
    params p = {tg_tensor_randn(TG_F64, TG_SHAPE(N, H)), tg_tensor_randn(TG_F64, TG_SHAPE(H, M)),
                NULL};
    tg_tensor *x = tg_tensor_randn(TG_F64, TG_SHAPE(1, N)),
              *v = tg_tensor_randn(TG_F64, TG_SHAPE(1, N));
    params q = {tg_tensor_randn(TG_F64, TG_SHAPE(WIDTH, WIDTH)), NULL,
                tg_tensor_randn(TG_F64, TG_SHAPE(WIDTH))};
    tg_tensor *xc = tg_tensor_randn(TG_F64, TG_SHAPE(ROWS, WIDTH));
    double *a = q.A->data;
    for (int64_t i = 0; i < q.A->numel; i++)
        a[i] *= 0.1; /* keeps tanh out of saturation */
    tg_requires_grad(q.A, true);
    tg_requires_grad(q.b, true);

    double fb = measure(FB, x, v, &p, &q, xc), jvp = measure(JVP, x, v, &p, &q, xc);
    double jac = measure(JAC, x, v, &p, &q, xc), hess = measure(HESS, x, v, &p, &q, xc);
    double plain = measure(STEP_PLAIN, x, v, &p, &q, xc), ck = measure(STEP_CK, x, v, &p, &q, xc);
    size_t fwd_plain, fwd_ck;
    size_t peak_plain = peak_of(false, xc, &q, &fwd_plain),
           peak_ck = peak_of(true, xc, &q, &fwd_ck);

    printf("f: [1,%d] -> tanh(x A) B -> [1,%d]; median of %d runs\n", N, M, reps);
    printf("%-34s %10.1f us   1.00 x fb\n", "forward + backward (fb)", fb / 1e3);
    printf("%-34s %10.1f us %6.2f x fb\n", "tg_jvp (double vjp)", jvp / 1e3, jvp / fb);
    printf("%-34s %10.1f us %6.2f x fb  (%d rows: %.2f x fb per row)\n", "tg_jacobian", jac / 1e3,
           jac / fb, M, jac / fb / M);
    printf("%-34s %10.1f us %6.2f x fb  (%d rows: %.2f x fb per row)\n", "tg_hessian of sum(f^2)",
           hess / 1e3, hess / fb, N, hess / fb / N);
    printf("chain of %d blocks tanh(z A + b), z [%d,%d]: one step (forward, backward, reset)\n",
           DEPTH, ROWS, WIDTH);
    printf("%-26s %10.1f us   after forward %8.1f KiB   peak %8.1f KiB\n", "plain", plain / 1e3,
           fwd_plain / 1024.0, peak_plain / 1024.0);
    printf("%-26s %10.1f us   after forward %8.1f KiB   peak %8.1f KiB\n",
           "every block checkpointed", ck / 1e3, fwd_ck / 1024.0, peak_ck / 1024.0);
    printf("checkpointed / plain: time %.2f x, kept after forward %.2f x, peak %.2f x\n",
           ck / plain, (double)fwd_ck / (double)fwd_plain, (double)peak_ck / (double)peak_plain);
    printf("RESULT transforms fb_ns=%.0f jvp_x=%.3f jacobian_x=%.3f hessian_x=%.3f "
           "ckpt_time_x=%.3f fwd_plain=%zu fwd_ckpt=%zu peak_plain=%zu peak_ckpt=%zu\n",
           fb, jvp / fb, jac / fb, hess / fb, ck / plain, fwd_plain, fwd_ck, peak_plain, peak_ck);

    tg_tensor *all[] = {p.A, p.B, x, v, q.A, q.b, xc};
    for (int i = 0; i < 7; i++)
        tg_tensor_free(all[i]);
    tg_tape_free();
    return 0;
}
