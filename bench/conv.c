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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "bench_net.h"
#include "bench_sizes.h"

enum {
    B = BENCH_CONV_BATCH,
    SIDE = BENCH_CONV_SIDE,
    CLASSES = BENCH_CONV_CLASSES,
    NBATCH = BENCH_CONV_NBATCH,
    NLAYER = 8,
    NPARAM = 6,
    WARMUP = 5
};
static const double LR = BENCH_CONV_LR, MOMENTUM = BENCH_CONV_MOMENTUM;

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 21, steps = argc > 2 ? atoi(argv[2]) : 20;
    bool only_step = argc > 3 && strcmp(argv[3], "step") == 0;
    if (argc > 4 || (argc > 3 && !only_step) || repeats < 1 || steps < 1) {
        fprintf(stderr, "usage: conv [repeats [steps [step]]]\n");
        return 2;
    }
    bench_count_allocations();

    bench_net t = {.prog = "conv"};
    bench_net_data(&t, NBATCH, 4, (const int64_t[]){B, 1, SIDE, SIDE}, CLASSES, 1);
    tg_seed(0);
    tg_module *layers[NLAYER]; /* made in order: the weights draw from tg_seed's stream */
    layers[0] = tg_nn_conv2d(1, BENCH_CONV_C1, BENCH_CONV_K, 1, BENCH_CONV_PAD1, TG_F32);
    layers[1] = tg_nn_relu();
    layers[2] = tg_nn_maxpool2d(2, 2, 0);
    layers[3] = tg_nn_conv2d(BENCH_CONV_C1, BENCH_CONV_C2, BENCH_CONV_K, 1, 0, TG_F32);
    layers[4] = tg_nn_relu();
    layers[5] = tg_nn_maxpool2d(2, 2, 0);
    layers[6] = tg_nn_flatten();
    layers[7] = tg_nn_linear(BENCH_CONV_FLAT, CLASSES, TG_F32);
    bench_net_layers(&t, NLAYER, layers, NPARAM, (tg_sgd_opts){.lr = LR, .momentum = MOMENTUM});
    size_t param_bytes = bench_net_param_bytes(&t, false);

    float first = bench_net_mean_loss(&t);
    long counter = 0;
    float last[BENCH_MODES] = {0};
    bench_stat times[BENCH_MODES];
    unsigned long long allocs =
        bench_net_time(&t, repeats, steps, WARMUP, only_step, &counter, last, times);
    bench_stat st = times[BENCH_STEP], fw = times[BENCH_FORWARD], fb = times[BENCH_FWD_BWD];

    float trained = bench_net_mean_loss(&t);
    size_t grad_bytes = bench_net_param_bytes(&t, true);
    size_t tape = tg_tape_bytes_reserved();
    double rss = bench_max_rss_mib();
    double per_step = (double)allocs / ((only_step ? 1.0 : 3.0) * repeats * steps);
    long n_steps = WARMUP + (long)repeats * steps; /* training steps taken (BENCH_STEP) */
    printf("tapegrad: mean loss over %d batches %.4f before training, %.4f after %ld steps "
           "(last step loss %.4f)\n",
           NBATCH, first, trained, n_steps, last[BENCH_STEP]);
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

    bench_net_free(&t);
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
