/* bench_net.h — the training harness bench/mlp.c and bench/conv.c share: a stack of
 * layers trained with SGD and softmax cross-entropy on fixed batches of random data
 * (standard normal inputs, uniform labels, from tg_rng), written as a user writes a
 * training step: tape mark, tg_module_forward per layer, tg_loss_cross_entropy,
 * tg_optim_zero_grad, tg_backward, tg_optim_step, tape rewind.
 *
 * Three loops can be timed, each as `repeats` batches of `steps` iterations after a
 * warm-up, the three taken in turn within each repeat (so they see the same conditions
 * on a shared machine):
 *   BENCH_STEP     the whole training step;
 *   BENCH_FORWARD  forward + loss (recording on, as in training), then rewind;
 *   BENCH_FWD_BWD  forward + loss + tg_backward, then rewind (no zero_grad, no update).
 * Header-only: every .c file in bench/ is one executable. */
#ifndef TG_BENCH_NET_H
#define TG_BENCH_NET_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <tapegrad.h>

#include "bench_util.h"

enum { BENCH_MAX_LAYERS = 8, BENCH_MAX_PARAMS = 8, BENCH_MAX_BATCHES = 8 };
enum { BENCH_STEP, BENCH_FORWARD, BENCH_FWD_BWD, BENCH_MODES };

typedef struct {
    const char *prog; /* for messages */
    int nlayer, nparam, nbatch;
    tg_module *layer[BENCH_MAX_LAYERS];
    tg_tensor *params[BENCH_MAX_PARAMS];
    tg_optim *opt;
    tg_tensor *xb[BENCH_MAX_BATCHES], *yb[BENCH_MAX_BATCHES];
} bench_net;

static inline void bench_die(const bench_net *t, const char *what) {
    fprintf(stderr, "%s: %s: %s\n", t->prog, what, tg_error() ? tg_error() : "?");
    exit(1);
}

/* nbatch F32 batches of shape xshape (the batch size first) with labels in [0, classes),
 * drawn from a tg_rng seeded with seed. */
static inline void bench_net_data(bench_net *t, int nbatch, int ndim, const int64_t *xshape,
                                  int classes, uint64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    t->nbatch = nbatch;
    for (int b = 0; b < nbatch; b++) {
        t->xb[b] = tg_tensor_new(TG_F32, ndim, xshape);
        t->yb[b] = tg_tensor_new(TG_I64, 1, xshape);
        if (!t->xb[b] || !t->yb[b]) bench_die(t, "data");
        float *x = t->xb[b]->data;
        int64_t *y = t->yb[b]->data;
        for (int64_t i = 0; i < t->xb[b]->numel; i++)
            x[i] = (float)tg_rng_normal(&rng);
        for (int64_t i = 0; i < xshape[0]; i++)
            y[i] = (int64_t)tg_rng_below(&rng, (uint64_t)classes);
    }
}

/* Takes the layers (owned from now on), collects their parameters (nparam of them)
 * and makes the SGD optimizer. */
static inline void bench_net_layers(bench_net *t, int nlayer, tg_module *const *layers, int nparam,
                                    tg_sgd_opts sgd) {
    t->nlayer = nlayer;
    for (int i = 0; i < nlayer; i++)
        if (!(t->layer[i] = layers[i])) bench_die(t, "layers");
    int np = 0;
    for (int i = 0; i < nlayer; i++) {
        int k = tg_module_params(t->layer[i], t->params + np, nparam - np);
        if (k < 0 || np + k > nparam) bench_die(t, "params");
        np += k;
    }
    t->nparam = np;
    if (np != nparam || !(t->opt = tg_sgd(np, t->params, sgd))) bench_die(t, "setup");
}

/* One iteration of the given mode on batch b; returns the loss. */
static inline float bench_net_run(bench_net *t, int b, int mode) {
    size_t mark = tg_tape_mark();
    tg_tensor *h = t->xb[b];
    for (int i = 0; i < t->nlayer; i++)
        h = tg_module_forward(t->layer[i], h);
    tg_tensor *loss = tg_loss_cross_entropy(h, t->yb[b]);
    if (!loss) bench_die(t, "forward");
    if (mode == BENCH_STEP) tg_optim_zero_grad(t->opt);
    if (mode != BENCH_FORWARD && tg_backward(loss) != 0) bench_die(t, "backward");
    if (mode == BENCH_STEP && tg_optim_step(t->opt) != 0) bench_die(t, "step");
    float l = ((const float *)loss->data)[0];
    tg_tape_rewind(mark);
    return l;
}

/* The mean loss over the batches (forward only). */
static inline float bench_net_mean_loss(bench_net *t) {
    float s = 0;
    for (int b = 0; b < t->nbatch; b++)
        s += bench_net_run(t, b, BENCH_FORWARD) / (float)t->nbatch;
    return s;
}

/* Warms every mode up (warmup iterations each, so that the tape's blocks, the
 * gradients and the optimizer's state exist), then times the modes in turn, repeats x
 * steps iterations each (only BENCH_STEP when only_step; the others report NaN).
 * Fills out[mode] in milliseconds per iteration and last[mode] with the last loss;
 * returns the library's heap allocations during the timed loops (counted when the
 * program installed bench_count_allocations). *counter numbers the iterations, which
 * pick the batches in turn. */
static inline unsigned long long bench_net_time(bench_net *t, int repeats, int steps, int warmup,
                                                bool only_step, long *counter, float *last,
                                                bench_stat *out) {
    for (int mode = 0; mode < BENCH_MODES; mode++)
        for (int w = 0; w < warmup; w++, (*counter)++)
            last[mode] = bench_net_run(t, (int)(*counter % t->nbatch), mode);
    double *ms = malloc(sizeof(double) * BENCH_MODES * (size_t)repeats);
    if (!ms) bench_die(t, "out of memory");
    unsigned long long alloc0 = bench_n_alloc;
    for (int r = 0; r < repeats; r++)
        for (int mode = 0; mode < BENCH_MODES; mode++) {
            if (only_step && mode != BENCH_STEP) {
                ms[mode * repeats + r] = NAN;
                continue;
            }
            double t0 = bench_now_ns();
            for (int s = 0; s < steps; s++, (*counter)++)
                last[mode] = bench_net_run(t, (int)(*counter % t->nbatch), mode);
            ms[mode * repeats + r] = (bench_now_ns() - t0) / 1e6 / steps;
        }
    unsigned long long allocs = bench_n_alloc - alloc0;
    for (int mode = 0; mode < BENCH_MODES; mode++)
        out[mode] = bench_summarize(ms + mode * repeats, repeats);
    free(ms);
    return allocs;
}

/* Bytes of the parameters and of their gradients (F32). */
static inline size_t bench_net_param_bytes(const bench_net *t, bool grads) {
    size_t n = 0;
    for (int i = 0; i < t->nparam; i++) {
        const tg_tensor *p = grads ? t->params[i]->grad : t->params[i];
        if (p) n += (size_t)p->numel * sizeof(float);
    }
    return n;
}

/* Frees everything, the tape included. */
static inline void bench_net_free(bench_net *t) {
    tg_tape_reset();
    tg_optim_free(t->opt);
    for (int i = 0; i < t->nlayer; i++)
        tg_module_free(t->layer[i]);
    for (int b = 0; b < t->nbatch; b++) {
        tg_tensor_free(t->xb[b]);
        tg_tensor_free(t->yb[b]);
    }
    tg_tape_free();
}

#endif
