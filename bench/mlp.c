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

#include "bench_net.h"
#include "bench_sizes.h"
#include <tapegrad/data.h>
#include <tapegrad/nn.h>
#include <tapegrad/optim.h>

enum {
    B = BENCH_MLP_BATCH,
    D0 = BENCH_MLP_D0,
    D1 = BENCH_MLP_D1,
    D2 = BENCH_MLP_D2,
    D3 = BENCH_MLP_D3,
    NBATCH = BENCH_MLP_NBATCH
};
static const double LR = BENCH_MLP_LR;

/* Floating-point operations of one forward pass (2 per multiply-add of the 3 gemms). */
static double forward_flops(void) {
    return 2.0 * B * ((double)D0 * D1 + (double)D1 * D2 + (double)D2 * D3);
}

/* ---------------- tapegrad ---------------- */

static int run_tapegrad(int repeats, int steps) {
    bench_net t = {.prog = "mlp"};
    bench_net_data(&t, NBATCH, 2, (const int64_t[]){B, D0}, D3, 1);
    tg_seed(0);
    tg_module *layers[5]; /* made in order: the weights draw from tg_seed's stream */
    layers[0] = tg_nn_linear(D0, D1, TG_F32);
    layers[1] = tg_nn_relu();
    layers[2] = tg_nn_linear(D1, D2, TG_F32);
    layers[3] = tg_nn_relu();
    layers[4] = tg_nn_linear(D2, D3, TG_F32);
    bench_net_layers(&t, 5, layers, 6, (tg_sgd_opts){.lr = LR});
    size_t param_bytes = bench_net_param_bytes(&t, false);

    long counter = 0;
    float last[BENCH_MODES];
    float first = bench_net_mean_loss(&t);
    bench_stat times[BENCH_MODES];
    bench_net_time(&t, repeats, steps, 3, false, &counter, last, times);
    bench_stat st = times[BENCH_STEP], fw = times[BENCH_FORWARD], fb = times[BENCH_FWD_BWD];
    float trained = bench_net_mean_loss(&t); /* as `first` */
    size_t grad_bytes = bench_net_param_bytes(&t, true);
    size_t tape = tg_tape_bytes_reserved();
    double rss = bench_max_rss_mib();

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

    bench_net_free(&t);
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

static bench_stat time_gemms(const gemm_shape *g, int n, int repeats, int steps, const float *a,
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
    bench_stat st = {gf[repeats / 2], gf[repeats - 1]}; /* median and best */
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
    bench_stat s1 = time_gemms(fwd1, 1, repeats, steps, a, b, c, &f1);
    bench_stat s2 = time_gemms(fwd2, 1, repeats, steps, a, b, c, &f2);
    bench_stat ss = time_gemms(step, 8, repeats, steps, a, b, c, &fs);
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
