/*
 * spiral.c — time of one training step of the spiral example, tapegrad against a
 * hand-written floor.
 *
 * The step, on a minibatch of 20 points of the 3-class spiral (300 points, F32):
 *
 *     logits = relu(x W1 + b1) W2 + b2          W1 [2,100], W2 [100,3]
 *     loss   = softmax cross-entropy(logits, y), mean over the batch
 *     SGD with lr 0.1, momentum 0.9 (torch.optim.SGD's rule)
 *
 * (a) tapegrad, written as a user would: tape mark, Linear -> ReLU -> Linear through
 *     tg_module_forward, tg_loss_cross_entropy, tg_optim_zero_grad, tg_backward,
 *     tg_optim_step, tape rewind.
 * (b) the floor: the same step fused by hand in one function, forward and backward
 *     with cblas_sgemm, bias, ReLU, softmax and the momentum update in plain loops over
 *     buffers allocated once; nothing is allocated inside the loop.
 *
 * Both start from the same weights (the floor copies tapegrad's initial Linear
 * parameters) and walk the same minibatches: the 300 points in a fixed random order,
 * cut into 15 batches of 20, used in turn. Before timing, both train for CHECK_STEPS
 * steps side by side and the program checks that their losses and parameters agree
 * (F32 arithmetic in a different order, so to a relative 1e-3); it exits nonzero if
 * they do not, or if tapegrad allocates on the heap after the warm-up.
 *
 * Timing: after WARMUP steps, `repeats` batches of `steps` steps each are timed with
 * CLOCK_MONOTONIC; the result is the median (and the minimum) microseconds per step.
 *
 *     spiral [repeats [steps [tapegrad]]]     defaults 21 and 2000
 *
 * The third argument "tapegrad" skips timing the floor (for profiling tapegrad alone).
 *
 * Prints human-readable lines, then
 *
 *     RESULT tapegrad median_us=<x> min_us=<x> allocs_per_step=<x> final_loss=<x>
 *     RESULT floor median_us=<x> min_us=<x> final_loss=<x>
 *
 * Run with OPENBLAS_NUM_THREADS=1 (bench/run_spiral.sh does).
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tapegrad.h>

#include "bench_sizes.h"
#include "bench_util.h"
#include <tapegrad/data.h>
#include <tapegrad/nn.h>
#include <tapegrad/optim.h>

enum {
    PER_CLASS = BENCH_SPIRAL_PER_CLASS,
    CLASSES = BENCH_SPIRAL_CLASSES,
    N = PER_CLASS * CLASSES,
    IN = BENCH_SPIRAL_IN,
    HID = BENCH_SPIRAL_HID,
    BATCH = BENCH_SPIRAL_BATCH,
    NBATCH = N / BATCH,
    WARMUP = 1000,
    CHECK_STEPS = 300
};
static const double LR = BENCH_SPIRAL_LR, MOMENTUM = BENCH_SPIRAL_MOMENTUM;

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "spiral: out of memory\n");
        exit(1);
    }
    return p;
}

/* ---------------- the floor: one fused step by hand ---------------- */

typedef struct {
    float w1[IN * HID], b1[HID], w2[HID * CLASSES], b2[CLASSES];   /* parameters */
    float m1[IN * HID], mb1[HID], m2[HID * CLASSES], mb2[CLASSES]; /* momentum buffers */
    float g1[IN * HID], gb1[HID], g2[HID * CLASSES], gb2[CLASSES]; /* gradients */
    float h[BATCH * HID], dh[BATCH * HID], z[BATCH * CLASSES];     /* activations */
} floor_net;

static void sgd_update(float *p, float *buf, const float *g, int n) {
    const float lr = (float)LR, mu = (float)MOMENTUM;
    for (int i = 0; i < n; i++) {
        buf[i] = mu * buf[i] + g[i]; /* the buffer starts at 0, so step 1 gives buf = g */
        p[i] -= lr * buf[i];
    }
}

/* One SGD step on x [BATCH, IN], labels y [BATCH]; returns the loss. */
static float floor_step(floor_net *f, const float *x, const int64_t *y) {
    /* h = relu(x W1 + b1) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BATCH, HID, IN, 1.0f, x, IN, f->w1, HID,
                0.0f, f->h, HID);
    for (int n = 0; n < BATCH; n++) {
        float *row = f->h + n * HID;
        for (int j = 0; j < HID; j++) {
            float v = row[j] + f->b1[j];
            row[j] = v > 0.0f ? v : 0.0f;
        }
    }
    /* z = h W2 + b2 */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BATCH, CLASSES, HID, 1.0f, f->h, HID,
                f->w2, CLASSES, 0.0f, f->z, CLASSES);
    /* softmax cross-entropy; z becomes dL/dz = (softmax - onehot) / BATCH */
    float loss = 0.0f;
    for (int n = 0; n < BATCH; n++) {
        float *row = f->z + n * CLASSES, mx = -INFINITY, s = 0.0f;
        for (int c = 0; c < CLASSES; c++) {
            row[c] += f->b2[c];
            if (row[c] > mx) mx = row[c];
        }
        float picked = row[y[n]];
        for (int c = 0; c < CLASSES; c++) {
            row[c] = expf(row[c] - mx);
            s += row[c];
        }
        loss += logf(s) + mx - picked;
        for (int c = 0; c < CLASSES; c++)
            row[c] = row[c] / s / BATCH;
        row[y[n]] -= 1.0f / BATCH;
    }
    loss /= BATCH;
    /* dW2 = h^T dz, db2 = sum_n dz */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, HID, CLASSES, BATCH, 1.0f, f->h, HID, f->z,
                CLASSES, 0.0f, f->g2, CLASSES);
    for (int c = 0; c < CLASSES; c++)
        f->gb2[c] = 0.0f;
    for (int n = 0; n < BATCH; n++)
        for (int c = 0; c < CLASSES; c++)
            f->gb2[c] += f->z[n * CLASSES + c];
    /* dh = (dz W2^T) * (h > 0) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BATCH, HID, CLASSES, 1.0f, f->z, CLASSES,
                f->w2, CLASSES, 0.0f, f->dh, HID);
    for (int i = 0; i < BATCH * HID; i++) /* branch-free: the compiler vectorizes it */
        f->dh[i] = f->h[i] > 0.0f ? f->dh[i] : 0.0f;
    for (int j = 0; j < HID; j++)
        f->gb1[j] = 0.0f;
    for (int n = 0; n < BATCH; n++)
        for (int j = 0; j < HID; j++)
            f->gb1[j] += f->dh[n * HID + j];
    /* dW1 = x^T dh */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, IN, HID, BATCH, 1.0f, x, IN, f->dh, HID,
                0.0f, f->g1, HID);
    sgd_update(f->w1, f->m1, f->g1, IN * HID);
    sgd_update(f->b1, f->mb1, f->gb1, HID);
    sgd_update(f->w2, f->m2, f->g2, HID * CLASSES);
    sgd_update(f->b2, f->mb2, f->gb2, CLASSES);
    return loss;
}

/* ---------------- tapegrad ---------------- */

typedef struct {
    tg_module *l1, *relu, *l2;
    tg_optim *opt;
    tg_tensor *params[4]; /* W1 b1 W2 b2 */
    tg_tensor *xb[NBATCH], *yb[NBATCH];
} tg_net;

static float tg_step(tg_net *t, int b) {
    size_t mark = tg_tape_mark();
    tg_tensor *h = tg_module_forward(t->relu, tg_module_forward(t->l1, t->xb[b]));
    tg_tensor *loss = tg_loss_cross_entropy(tg_module_forward(t->l2, h), t->yb[b]);
    tg_optim_zero_grad(t->opt);
    if (!loss || tg_backward(loss) != 0 || tg_optim_step(t->opt) != 0) {
        fprintf(stderr, "spiral: tapegrad step failed: %s\n", tg_error() ? tg_error() : "?");
        exit(1);
    }
    float l = ((const float *)loss->data)[0];
    tg_tape_rewind(mark);
    return l;
}

static double max_rel_diff(const float *a, const tg_tensor *t, int n) {
    const float *b = t->data;
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (fabs((double)b[i]) + 1e-2);
        if (d > worst) worst = d;
    }
    return worst;
}

/* Times `repeats` batches of `steps` steps; fills per-step microseconds into us. */
#define TIME_LOOP(us, repeats, steps, counter, body)                                               \
    for (int r_ = 0; r_ < (repeats); r_++) {                                                       \
        double t0_ = bench_now_ns();                                                               \
        for (int s_ = 0; s_ < (steps); s_++, (counter)++) {                                        \
            body;                                                                                  \
        }                                                                                          \
        (us)[r_] = (bench_now_ns() - t0_) / 1e3 / (steps);                                         \
    }

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 21, steps = argc > 2 ? atoi(argv[2]) : 2000;
    bool only_tapegrad = argc > 3 && strcmp(argv[3], "tapegrad") == 0;
    if (repeats < 1 || steps < 1 || (argc > 3 && !only_tapegrad)) {
        fprintf(stderr, "usage: spiral [repeats [steps [tapegrad]]]\n");
        return 2;
    }
    bench_count_allocations();

    /* The data, in a fixed random order, cut into batches. */
    tg_tensor *X = NULL, *Y = NULL;
    if (tg_data_spiral(PER_CLASS, CLASSES, 0, &X, &Y) != 0) {
        fprintf(stderr, "spiral: %s\n", tg_error());
        return 1;
    }
    int perm[N];
    for (int i = 0; i < N; i++)
        perm[i] = i;
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    for (int i = N - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)tg_rng_below(&rng, (uint64_t)i + 1), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    float *xs = xmalloc(sizeof(float) * N * IN); /* shuffled copies for the floor */
    int64_t *ys = xmalloc(sizeof(int64_t) * N);
    for (int i = 0; i < N; i++) {
        memcpy(xs + i * IN, (const float *)X->data + perm[i] * IN, sizeof(float) * IN);
        ys[i] = ((const int64_t *)Y->data)[perm[i]];
    }

    tg_net t = {0};
    tg_seed(0);
    t.l1 = tg_nn_linear(IN, HID, TG_F32);
    t.relu = tg_nn_relu();
    t.l2 = tg_nn_linear(HID, CLASSES, TG_F32);
    if (tg_module_params(t.l1, t.params, 2) != 2 || tg_module_params(t.l2, t.params + 2, 2) != 2 ||
        !t.relu || !(t.opt = tg_sgd(4, t.params, (tg_sgd_opts){.lr = LR, .momentum = MOMENTUM}))) {
        fprintf(stderr, "spiral: setup failed: %s\n", tg_error() ? tg_error() : "?");
        return 1;
    }
    for (int b = 0; b < NBATCH; b++) {
        t.xb[b] = tg_tensor_from(TG_F32, TG_SHAPE(BATCH, IN), xs + b * BATCH * IN);
        t.yb[b] = tg_tensor_from(TG_I64, TG_SHAPE(BATCH), ys + b * BATCH);
        if (!t.xb[b] || !t.yb[b]) return 1;
    }

    floor_net *f = calloc(1, sizeof *f);
    if (!f) return 1;
    memcpy(f->w1, t.params[0]->data, sizeof f->w1);
    memcpy(f->b1, t.params[1]->data, sizeof f->b1);
    memcpy(f->w2, t.params[2]->data, sizeof f->w2);
    memcpy(f->b2, t.params[3]->data, sizeof f->b2);

    /* Check: both train side by side on the same batches and must agree. */
    long step_t = 0, step_f = 0;
    double worst_loss = 0;
    float lt = 0, lf = 0;
    for (int s = 0; s < CHECK_STEPS; s++, step_t++, step_f++) {
        int b = s % NBATCH;
        lt = tg_step(&t, b);
        lf = floor_step(f, xs + b * BATCH * IN, ys + b * BATCH);
        double d = fabs((double)lt - (double)lf) / (fabs((double)lt) + 1e-2);
        if (d > worst_loss) worst_loss = d;
    }
    double worst_param = fmax(
        fmax(max_rel_diff(f->w1, t.params[0], IN * HID), max_rel_diff(f->b1, t.params[1], HID)),
        fmax(max_rel_diff(f->w2, t.params[2], HID * CLASSES),
             max_rel_diff(f->b2, t.params[3], CLASSES)));
    printf("check: %d steps side by side, loss %.4f (tapegrad) vs %.4f (floor); worst relative "
           "difference: loss %.2e, parameters %.2e\n",
           CHECK_STEPS, lt, lf, worst_loss, worst_param);
    if (!(worst_loss < 1e-3 && worst_param < 1e-3)) {
        fprintf(stderr, "spiral: tapegrad and the floor disagree\n");
        return 1;
    }

    double *us_t = xmalloc(sizeof(double) * (size_t)repeats);
    double *us_f = xmalloc(sizeof(double) * (size_t)repeats);

    /* (a) tapegrad */
    for (int s = 0; s < WARMUP; s++, step_t++)
        lt = tg_step(&t, (int)(step_t % NBATCH));
    unsigned long long alloc0 = bench_n_alloc;
    TIME_LOOP(us_t, repeats, steps, step_t, lt = tg_step(&t, (int)(step_t % NBATCH)));
    unsigned long long allocs = bench_n_alloc - alloc0;

    /* (b) the floor */
    for (int s = 0; s < WARMUP && !only_tapegrad; s++, step_f++)
        lf = floor_step(f, xs + (step_f % NBATCH) * BATCH * IN, ys + (step_f % NBATCH) * BATCH);
    if (only_tapegrad)
        for (int r = 0; r < repeats; r++)
            us_f[r] = NAN;
    else
        TIME_LOOP(us_f, repeats, steps, step_f,
                  lf = floor_step(f, xs + (step_f % NBATCH) * BATCH * IN,
                                  ys + (step_f % NBATCH) * BATCH));

    double min_t = us_t[0], min_f = us_f[0];
    for (int r = 1; r < repeats; r++) {
        min_t = fmin(min_t, us_t[r]);
        min_f = fmin(min_f, us_f[r]);
    }
    qsort(us_t, (size_t)repeats, sizeof(double), bench_cmp_double);
    qsort(us_f, (size_t)repeats, sizeof(double), bench_cmp_double);
    double med_t = us_t[repeats / 2], med_f = us_f[repeats / 2];
    double per_step = (double)allocs / ((double)repeats * steps);
    printf("tapegrad: %.3f us/step median, %.3f min (%d x %d steps); heap allocations in the "
           "timed steps: %llu; loss after %ld steps %.4f\n",
           med_t, min_t, repeats, steps, allocs, step_t, lt);
    printf("floor:    %.3f us/step median, %.3f min; loss after %ld steps %.4f\n", med_f, min_f,
           step_f, lf);
    printf("RESULT tapegrad median_us=%.3f min_us=%.3f allocs_per_step=%.3g final_loss=%.4f\n",
           med_t, min_t, per_step, lt);
    printf("RESULT floor median_us=%.3f min_us=%.3f final_loss=%.4f\n", med_f, min_f, lf);

    free(us_t);
    free(us_f);
    free(f);
    tg_tape_reset();
    tg_optim_free(t.opt);
    tg_module_free(t.l1);
    tg_module_free(t.relu);
    tg_module_free(t.l2);
    for (int b = 0; b < NBATCH; b++) {
        tg_tensor_free(t.xb[b]);
        tg_tensor_free(t.yb[b]);
    }
    tg_tensor_free(X);
    tg_tensor_free(Y);
    tg_tape_free();
    free(xs);
    free(ys);
    if (bench_n_alloc != bench_n_release)
        fprintf(stderr, "spiral: %llu allocations but %llu releases\n", bench_n_alloc,
                bench_n_release);
    return allocs == 0 && bench_n_alloc == bench_n_release ? 0 : 1;
}
