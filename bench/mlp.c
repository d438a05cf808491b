/*
 * mlp.c — a 784-512-512-10 ReLU network trained with SGD on batches of 128 (F32):
 * time per training step, forward and backward times, GFLOP/s and memory; plus, as a
 * reference, what raw cblas_sgemm reaches on the step's own matrix shapes.
 *
 *     mlp tapegrad [repeats [steps]]     defaults 21 and 10
 *     mlp gemm     [repeats [steps]]     defaults 21 and 20
 *
 * tapegrad: Linear(784,512) -> ReLU -> Linear(512,512) -> ReLU -> Linear(512,10), softmax
 * cross-entropy, SGD lr 0.01 (no momentum), written as a user would: tape mark,
 * tg_module_forward through the layers, tg_loss_cross_entropy, tg_optim_zero_grad,
 * tg_backward, tg_optim_step, tape rewind. Data: 8 batches of 128 rows of standard
 * normal inputs and uniform labels in [0, 10) from tg_rng seed 1, used in turn.
 * Three loops are timed, each as `repeats` batches of `steps` iterations after a
 * warm-up, the three taken in turn within each repeat; median (and minimum)
 * milliseconds per iteration:
 *   step:     the whole training step above;
 *   forward:  forward + loss (recording on, as in training), then rewind;
 *   fwd+bwd:  forward + loss + tg_backward, then rewind (no zero_grad, no update:
 *             the gradients accumulate, which costs the same as writing them).
 * backward = fwd+bwd - forward. Memory: tg_tape_bytes_reserved() after the loops, the
 * bytes of the parameters and of their gradients, and the process's peak RSS
 * (getrusage ru_maxrss).
 *
 * gemm: cblas_sgemm alone, on buffers allocated once, for the shapes of the step:
 * the forward products [128,784]x[784,512] and [128,512]x[512,512], and "all gemms of
 * one step" (the 3 forward products, the 3 weight gradients X^T G and the 2 input
 * gradients G W^T; the first layer's input needs no gradient), as GFLOP/s.
 *
 * Output ends with RESULT lines of key=value pairs that bench/run_mlp.sh reads.
 * Run with OPENBLAS_NUM_THREADS=2 (bench/run_mlp.sh does).
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <tapegrad.h>

#include "bench_util.h"
#include <tapegrad/data.h>
#include <tapegrad/nn.h>
#include <tapegrad/optim.h>

enum { B = 128, D0 = 784, D1 = 512, D2 = 512, D3 = 10, NBATCH = 8 };
static const double LR = 0.01;

typedef struct {
    double median, min;
} stat;

static stat summarize(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return (stat){v[n / 2], v[0]};
}

static double max_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

/* Floating-point operations of one forward pass (2 per multiply-add of the 3 gemms). */
static double forward_flops(void) {
    return 2.0 * B * ((double)D0 * D1 + (double)D1 * D2 + (double)D2 * D3);
}

/* ---------------- tapegrad ---------------- */

typedef struct {
    tg_module *layer[5]; /* linear relu linear relu linear */
    tg_tensor *params[6];
    tg_optim *opt;
    tg_tensor *xb[NBATCH], *yb[NBATCH];
} net;

enum { MODE_STEP, MODE_FORWARD, MODE_FWD_BWD };

static void die(const char *what) {
    fprintf(stderr, "mlp: %s: %s\n", what, tg_error() ? tg_error() : "?");
    exit(1);
}

static float run_once(net *t, int b, int mode) {
    size_t mark = tg_tape_mark();
    tg_tensor *h = t->xb[b];
    for (int i = 0; i < 5; i++)
        h = tg_module_forward(t->layer[i], h);
    tg_tensor *loss = tg_loss_cross_entropy(h, t->yb[b]);
    if (!loss) die("forward");
    if (mode == MODE_STEP) tg_optim_zero_grad(t->opt);
    if (mode != MODE_FORWARD && tg_backward(loss) != 0) die("backward");
    if (mode == MODE_STEP && tg_optim_step(t->opt) != 0) die("step");
    float l = ((const float *)loss->data)[0];
    tg_tape_rewind(mark);
    return l;
}

/* Times the three loops round-robin (one batch of `steps` iterations of each per
 * repeat, so that all three see the same conditions on a shared machine); fills the
 * median/min milliseconds per iteration of each mode. */
static void time_modes(net *t, int repeats, int steps, long *counter, float *last, stat *out) {
    double *ms = malloc(sizeof(double) * 3 * (size_t)repeats);
    if (!ms) die("out of memory");
    for (int mode = 0; mode < 3; mode++)
        for (int w = 0; w < 3; w++, (*counter)++)
            last[mode] = run_once(t, (int)(*counter % NBATCH), mode);
    for (int r = 0; r < repeats; r++)
        for (int mode = 0; mode < 3; mode++) {
            double t0 = bench_now_ns();
            for (int s = 0; s < steps; s++, (*counter)++)
                last[mode] = run_once(t, (int)(*counter % NBATCH), mode);
            ms[mode * repeats + r] = (bench_now_ns() - t0) / 1e6 / steps;
        }
    for (int mode = 0; mode < 3; mode++)
        out[mode] = summarize(ms + mode * repeats, repeats);
    free(ms);
}

static int run_tapegrad(int repeats, int steps) {
    net t = {0};
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    for (int b = 0; b < NBATCH; b++) {
        t.xb[b] = tg_tensor_new(TG_F32, TG_SHAPE(B, D0));
        t.yb[b] = tg_tensor_new(TG_I64, TG_SHAPE(B));
        if (!t.xb[b] || !t.yb[b]) die("data");
        float *x = t.xb[b]->data;
        int64_t *y = t.yb[b]->data;
        for (int i = 0; i < B * D0; i++)
            x[i] = (float)tg_rng_normal(&rng);
        for (int i = 0; i < B; i++)
            y[i] = (int64_t)tg_rng_below(&rng, D3);
    }
    tg_seed(0);
    t.layer[0] = tg_nn_linear(D0, D1, TG_F32);
    t.layer[1] = tg_nn_relu();
    t.layer[2] = tg_nn_linear(D1, D2, TG_F32);
    t.layer[3] = tg_nn_relu();
    t.layer[4] = tg_nn_linear(D2, D3, TG_F32);
    for (int i = 0; i < 5; i++)
        if (!t.layer[i]) die("layers");
    int np = 0;
    for (int i = 0; i < 5; i += 2)
        np += tg_module_params(t.layer[i], t.params + np, 6 - np);
    if (np != 6 || !(t.opt = tg_sgd(6, t.params, (tg_sgd_opts){.lr = LR}))) die("setup");
    size_t param_bytes = 0;
    for (int i = 0; i < 6; i++)
        param_bytes += (size_t)t.params[i]->numel * sizeof(float);

    long counter = 0;
    float first = 0, last[3];
    for (int b = 0; b < NBATCH; b++)
        first += run_once(&t, b, MODE_FORWARD) / NBATCH;
    stat times[3];
    time_modes(&t, repeats, steps, &counter, last, times);
    stat st = times[MODE_STEP], fw = times[MODE_FORWARD], fb = times[MODE_FWD_BWD];
    float trained = 0; /* mean loss over the 8 batches, as `first` */
    for (int b = 0; b < NBATCH; b++)
        trained += run_once(&t, b, MODE_FORWARD) / NBATCH;
    size_t grad_bytes = 0;
    for (int i = 0; i < 6; i++)
        if (t.params[i]->grad) grad_bytes += (size_t)t.params[i]->grad->numel * sizeof(float);
    size_t tape = tg_tape_bytes_reserved();
    double rss = max_rss_mib();

    double gflop = 3.0 * forward_flops() / 1e9;
    printf("tapegrad: mean loss %.4f before training, %.4f after %d steps\n", first, trained,
           3 + repeats * steps);
    printf("tapegrad: step %.3f ms median (min %.3f), forward %.3f ms, forward+backward %.3f ms\n",
           st.median, st.min, fw.median, fb.median);
    printf("tapegrad: tape reserved %.2f MiB, parameters %.2f MiB, gradients %.2f MiB, max RSS "
           "%.1f MiB\n",
           (double)tape / 1048576.0, (double)param_bytes / 1048576.0,
           (double)grad_bytes / 1048576.0, rss);
    printf("RESULT tapegrad step_ms=%.4f step_min_ms=%.4f fwd_ms=%.4f fwdbwd_ms=%.4f "
           "gflops=%.2f tape_mib=%.3f param_mib=%.3f grad_mib=%.3f rss_mib=%.1f loss0=%.4f "
           "loss=%.4f\n",
           st.median, st.min, fw.median, fb.median, gflop / (st.median / 1e3),
           (double)tape / 1048576.0, (double)param_bytes / 1048576.0,
           (double)grad_bytes / 1048576.0, rss, first, trained);

    tg_tape_reset();
    tg_optim_free(t.opt);
    for (int i = 0; i < 5; i++)
        tg_module_free(t.layer[i]);
    for (int b = 0; b < NBATCH; b++) {
        tg_tensor_free(t.xb[b]);
        tg_tensor_free(t.yb[b]);
    }
    tg_tape_free();
    if (!(trained < first)) {
        fprintf(stderr, "mlp: training did not lower the loss\n");
        return 1;
    }
    return 0;
}

/* ---------------- raw sgemm ---------------- */

typedef struct {
    int m, n, k;
    bool ta, tb;
} gemm_shape;

/* C[m,n] = op(A) op(B), row-major, on the given buffers (large enough). */
static void gemm(const gemm_shape *g, const float *a, const float *b, float *c) {
    int lda = g->ta ? g->m : g->k, ldb = g->tb ? g->k : g->n;
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
                g->m, g->n, g->k, 1.0f, a, lda, b, ldb, 0.0f, c, g->n);
}

static stat time_gemms(const gemm_shape *g, int n, int repeats, int steps, const float *a,
                       const float *b, float *c, double *flops) {
    *flops = 0;
    for (int i = 0; i < n; i++)
        *flops += 2.0 * g[i].m * g[i].n * g[i].k;
    double *gf = malloc(sizeof(double) * (size_t)repeats);
    if (!gf) exit(1);
    for (int w = 0; w < 3; w++)
        for (int i = 0; i < n; i++)
            gemm(&g[i], a, b, c);
    for (int r = 0; r < repeats; r++) {
        double t0 = bench_now_ns();
        for (int s = 0; s < steps; s++)
            for (int i = 0; i < n; i++)
                gemm(&g[i], a, b, c);
        gf[r] = *flops * steps / (bench_now_ns() - t0); /* flop per ns = GFLOP/s */
    }
    qsort(gf, (size_t)repeats, sizeof *gf, bench_cmp_double);
    stat st = {gf[repeats / 2], gf[repeats - 1]}; /* median and best */
    free(gf);
    return st;
}

static int run_gemm(int repeats, int steps) {
    size_t big = (size_t)D0 * D1; /* the largest operand or result */
    float *a = malloc(big * sizeof *a), *b = malloc(big * sizeof *b), *c = malloc(big * sizeof *c);
    if (!a || !b || !c) return 1;
    for (size_t i = 0; i < big; i++) {
        a[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        b[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    }
    const gemm_shape fwd1[] = {{B, D1, D0, false, false}};
    const gemm_shape fwd2[] = {{B, D2, D1, false, false}};
    const gemm_shape step[] = {
        {B, D1, D0, false, false}, {B, D2, D1, false, false}, {B, D3, D2, false, false},
        {D2, D3, B, true, false},  {B, D2, D3, false, true},  {D1, D2, B, true, false},
        {B, D1, D2, false, true},  {D0, D1, B, true, false},
    };
    double f1, f2, fs;
    stat s1 = time_gemms(fwd1, 1, repeats, steps, a, b, c, &f1);
    stat s2 = time_gemms(fwd2, 1, repeats, steps, a, b, c, &f2);
    stat ss = time_gemms(step, 8, repeats, steps, a, b, c, &fs);
    printf("sgemm 128x784 @ 784x512: %.1f GFLOP/s median (best %.1f)\n", s1.median, s1.min);
    printf("sgemm 128x512 @ 512x512: %.1f GFLOP/s median (best %.1f)\n", s2.median, s2.min);
    printf("sgemm, the 8 gemms of one step (%.1f MFLOP): %.1f GFLOP/s median (best %.1f), "
           "%.3f ms\n",
           fs / 1e6, ss.median, ss.min, fs / ss.median / 1e6);
    printf("RESULT gemm fwd1_gflops=%.2f fwd2_gflops=%.2f step_gflops=%.2f step_ms=%.4f "
           "step_mflop=%.2f\n",
           s1.median, s2.median, ss.median, fs / ss.median / 1e6, fs / 1e6);
    free(a);
    free(b);
    free(c);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "tapegrad";
    bool is_gemm = strcmp(mode, "gemm") == 0;
    int repeats = argc > 2 ? atoi(argv[2]) : 21, steps = argc > 3  ? atoi(argv[3])
                                                         : is_gemm ? 20
                                                                   : 10;
    if ((!is_gemm && strcmp(mode, "tapegrad") != 0) || repeats < 1 || steps < 1) {
        fprintf(stderr, "usage: mlp tapegrad|gemm [repeats [steps]]\n");
        return 2;
    }
    return is_gemm ? run_gemm(repeats, steps) : run_tapegrad(repeats, steps);
}
