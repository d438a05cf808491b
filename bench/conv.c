/*
 * conv.c — time of one training step of a small LeNet-like CNN (F32, batch 32):
 * the whole step, the forward pass alone and forward + backward, heap allocations per
 * step and the tape's memory.
 *
 *     conv1 = Conv2d(1, 8, k=5, stride 1, pad 2)       [32,1,28,28] -> [32,8,28,28]
 *     ReLU, MaxPool2d(2, 2)                             -> [32,8,14,14]
 *     conv2 = Conv2d(8, 16, k=5, stride 1, pad 0)       -> [32,16,10,10]
 *     ReLU, MaxPool2d(2, 2)                             -> [32,16,5,5]
 *     Flatten, Linear(400, 10)                          -> [32,10]
 *     softmax cross-entropy (mean), SGD lr 0.01, momentum 0.9
 *
 * Written as a user would: tg_tape_mark, tg_module_forward per layer,
 * tg_loss_cross_entropy, tg_optim_zero_grad, tg_backward, tg_optim_step,
 * tg_tape_rewind. Data: NBATCH batches of 32 standard normal images with uniform labels
 * in [0, 10) from tg_rng seed 1, used in turn (random data: training can only memorise
 * it, which is enough to check that the loss goes down).
 *
 * Three loops are timed, each as `repeats` batches of `steps` iterations after a
 * warm-up, the three taken in turn within each repeat; median (and minimum)
 * milliseconds per iteration:
 *   step:     the whole training step above;
 *   forward:  forward + loss (recording on, as in training), then rewind;
 *   fwd+bwd:  forward + loss + tg_backward, then rewind (no zero_grad, no update).
 * backward = fwd+bwd - forward.
 *
 * Checks (the program exits nonzero if one fails): the mean loss over the batches must
 * be lower after the timed loops than before, and the library must make no heap
 * allocation (counted through tg_set_allocator) in the timed loops, after the warm-up
 * (allocs_per_step is that count over all timed iterations of the three loops);
 * allocations and releases must balance at exit.
 *
 *     conv [repeats [steps [step]]]     defaults 21 and 20
 *
 * The third argument "step" times the step loop alone (forward and fwd+bwd report nan),
 * for profiling the training step with perf.
 *
 * Output ends with a RESULT line of key=value pairs that bench/run_conv.sh reads.
 * Run with OPENBLAS_NUM_THREADS=1 (bench/run_conv.sh does).
 */
#define _POSIX_C_SOURCE 200809L
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

enum { B = 32, CLASSES = 10, NBATCH = 8, NLAYER = 8, NPARAM = 6, WARMUP = 5 };
static const double LR = 0.01, MOMENTUM = 0.9;

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

typedef struct {
    tg_module *layer[NLAYER];
    tg_tensor *params[NPARAM];
    tg_optim *opt;
    tg_tensor *xb[NBATCH], *yb[NBATCH];
} net;

enum { MODE_STEP, MODE_FORWARD, MODE_FWD_BWD };

static void die(const char *what) {
    fprintf(stderr, "conv: %s: %s\n", what, tg_error() ? tg_error() : "?");
    exit(1);
}

static float run_once(net *t, int b, int mode) {
    size_t mark = tg_tape_mark();
    tg_tensor *h = t->xb[b];
    for (int i = 0; i < NLAYER; i++)
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

static float mean_loss(net *t) {
    float s = 0;
    for (int b = 0; b < NBATCH; b++)
        s += run_once(t, b, MODE_FORWARD) / NBATCH;
    return s;
}

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 21, steps = argc > 2 ? atoi(argv[2]) : 20;
    bool only_step = argc > 3 && strcmp(argv[3], "step") == 0;
    if (argc > 4 || (argc > 3 && !only_step) || repeats < 1 || steps < 1) {
        fprintf(stderr, "usage: conv [repeats [steps [step]]]\n");
        return 2;
    }
    bench_count_allocations();

    net t = {0};
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    for (int b = 0; b < NBATCH; b++) {
        t.xb[b] = tg_tensor_new(TG_F32, TG_SHAPE(B, 1, 28, 28));
        t.yb[b] = tg_tensor_new(TG_I64, TG_SHAPE(B));
        if (!t.xb[b] || !t.yb[b]) die("data");
        float *x = t.xb[b]->data;
        int64_t *y = t.yb[b]->data;
        for (int i = 0; i < B * 28 * 28; i++)
            x[i] = (float)tg_rng_normal(&rng);
        for (int i = 0; i < B; i++)
            y[i] = (int64_t)tg_rng_below(&rng, CLASSES);
    }
    tg_seed(0);
    t.layer[0] = tg_nn_conv2d(1, 8, 5, 1, 2, TG_F32);
    t.layer[1] = tg_nn_relu();
    t.layer[2] = tg_nn_maxpool2d(2, 2, 0);
    t.layer[3] = tg_nn_conv2d(8, 16, 5, 1, 0, TG_F32);
    t.layer[4] = tg_nn_relu();
    t.layer[5] = tg_nn_maxpool2d(2, 2, 0);
    t.layer[6] = tg_nn_flatten();
    t.layer[7] = tg_nn_linear(16 * 5 * 5, CLASSES, TG_F32);
    for (int i = 0; i < NLAYER; i++)
        if (!t.layer[i]) die("layers");
    int np = 0;
    for (int i = 0; i < NLAYER; i++) {
        int k = tg_module_params(t.layer[i], t.params + np, NPARAM - np);
        if (k < 0 || np + k > NPARAM) die("params");
        np += k;
    }
    if (np != NPARAM ||
        !(t.opt = tg_sgd(NPARAM, t.params, (tg_sgd_opts){.lr = LR, .momentum = MOMENTUM})))
        die("setup");
    size_t param_bytes = 0;
    for (int i = 0; i < NPARAM; i++)
        param_bytes += (size_t)t.params[i]->numel * sizeof(float);

    float first = mean_loss(&t);
    long counter = 0;
    float last[3] = {0};
    /* Warm-up: every mode, so that the tape's blocks, the gradients and the momentum
     * buffers exist before counting allocations. */
    for (int mode = 0; mode < 3; mode++)
        for (int w = 0; w < WARMUP; w++, counter++)
            last[mode] = run_once(&t, (int)(counter % NBATCH), mode);

    double *ms = malloc(sizeof(double) * 3 * (size_t)repeats);
    if (!ms) die("out of memory");
    unsigned long long alloc0 = bench_n_alloc;
    for (int r = 0; r < repeats; r++)
        for (int mode = 0; mode < 3; mode++) {
            if (only_step && mode != MODE_STEP) {
                ms[mode * repeats + r] = NAN;
                continue;
            }
            double t0 = bench_now_ns();
            for (int s = 0; s < steps; s++, counter++)
                last[mode] = run_once(&t, (int)(counter % NBATCH), mode);
            ms[mode * repeats + r] = (bench_now_ns() - t0) / 1e6 / steps;
        }
    unsigned long long allocs = bench_n_alloc - alloc0;
    stat st = summarize(ms, repeats), fw = summarize(ms + repeats, repeats),
         fb = summarize(ms + 2 * repeats, repeats);
    free(ms);

    float trained = mean_loss(&t);
    size_t grad_bytes = 0;
    for (int i = 0; i < NPARAM; i++)
        if (t.params[i]->grad) grad_bytes += (size_t)t.params[i]->grad->numel * sizeof(float);
    size_t tape = tg_tape_bytes_reserved();
    double rss = max_rss_mib();
    double per_step = (double)allocs / ((only_step ? 1.0 : 3.0) * repeats * steps);
    long n_steps = WARMUP + (long)repeats * steps; /* training steps taken (MODE_STEP) */

    printf("tapegrad: mean loss over %d batches %.4f before training, %.4f after %ld steps "
           "(last step loss %.4f)\n",
           NBATCH, first, trained, n_steps, last[MODE_STEP]);
    printf("tapegrad: step %.3f ms median (min %.3f), forward %.3f ms, forward+backward %.3f ms "
           "(%d x %d iterations of each)\n",
           st.median, st.min, fw.median, fb.median, repeats, steps);
    printf("tapegrad: heap allocations in the timed loops: %llu; tape reserved %.3f MiB, "
           "parameters %.4f MiB, gradients %.4f MiB, max RSS %.1f MiB\n",
           allocs, (double)tape / 1048576.0, (double)param_bytes / 1048576.0,
           (double)grad_bytes / 1048576.0, rss);
    printf("RESULT tapegrad step_ms=%.4f step_min_ms=%.4f fwd_ms=%.4f fwdbwd_ms=%.4f "
           "allocs_per_step=%.3g tape_bytes=%zu param_bytes=%zu grad_bytes=%zu rss_mib=%.1f "
           "loss0=%.4f loss=%.4f\n",
           st.median, st.min, fw.median, fb.median, per_step, tape, param_bytes, grad_bytes, rss,
           first, trained);

    tg_tape_reset();
    tg_optim_free(t.opt);
    for (int i = 0; i < NLAYER; i++)
        tg_module_free(t.layer[i]);
    for (int b = 0; b < NBATCH; b++) {
        tg_tensor_free(t.xb[b]);
        tg_tensor_free(t.yb[b]);
    }
    tg_tape_free();
    int rc = 0;
    if (!(trained < first)) {
        fprintf(stderr, "conv: training did not lower the loss (%.4f -> %.4f)\n", first, trained);
        rc = 1;
    }
    if (allocs != 0) {
        fprintf(stderr, "conv: %llu heap allocations after the warm-up\n", allocs);
        rc = 1;
    }
    if (bench_n_alloc != bench_n_release) {
        fprintf(stderr, "conv: %llu allocations but %llu releases\n", bench_n_alloc,
                bench_n_release);
        rc = 1;
    }
    return rc;
}
