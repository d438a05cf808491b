/* model.c — a sequential model: a list of owned layers, the minibatch training loop
 * (fit), batched inference (predict), accuracy, and checkpoints through io.h. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "nn_internal.h"
#include "tapegrad/data.h"
#include "tapegrad/io.h"
#include "tapegrad/nn.h"
#include "tapegrad/optim.h"

/* Rows per forward pass in tg_model_predict: bounds the tape's memory for large X. */
#define PREDICT_BATCH 1024

struct tg_model {
    tg_module **layers; /* owned; layers[0..n) run in order */
    int n, cap;
};

tg_model *tg_model_new(void) {
    tg_model *m = tg__alloc(sizeof *m);
    if (!m) return NULL;
    m->layers = NULL;
    m->n = m->cap = 0;
    return m;
}

void tg_model_free(tg_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++)
        tg_module_free(m->layers[i]);
    tg__release(m->layers);
    tg__release(m);
}

int tg_model_add(tg_model *m, tg_module *layer) {
    if (!layer) {
        tg__fail_soft("tg_model_add: layer is NULL (did its constructor fail?)");
        return -1;
    }
    if (!m) {
        tg_module_free(layer);
        tg__fail_soft("tg_model_add: model is NULL");
        return -1;
    }
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 8;
        tg_module **bigger = tg__alloc(sizeof *bigger * (size_t)cap);
        if (!bigger) {
            tg_module_free(layer);
            return -1;
        }
        if (m->n) memcpy(bigger, m->layers, sizeof *bigger * (size_t)m->n);
        tg__release(m->layers);
        m->layers = bigger;
        m->cap = cap;
    }
    m->layers[m->n++] = layer;
    return 0;
}

int tg_model_params(tg_model *m, tg_tensor **out, int cap) {
    if (!m) return tg__fail_soft("tg_model_params: model is NULL"), -1;
    if (cap < 0 || (cap > 0 && !out))
        return tg__fail_int("tg_model_params: needs cap >= 0 and an output array when cap > 0, "
                            "got cap %d",
                            cap);
    int total = 0;
    for (int i = 0; i < m->n; i++) {
        int room = cap > total ? cap - total : 0;
        int k = tg_module_params(m->layers[i], room ? out + total : NULL, room);
        if (k < 0) return -1;
        total += k;
    }
    return total;
}

/* Whether layers i and i + 1 are a ReLU then a max pooling, run on a float x. The two
 * commute: max is monotonic, so relu(max over a window) = max over the window of relu,
 * and the gradients agree too (both reach the window's first maximum when it is
 * positive, and nothing otherwise; a NaN maximum gives no gradient either way). Every
 * window holds an element of x (padding is at most half the window), so a -inf pad never
 * decides. The only visible difference is the sign of a zero result: a window holding
 * -1 then -0.0 gives +0 with the ReLU first (relu(-1) = +0 comes first among equal
 * maxima) and -0.0 with the pooling first. On a float x the ReLU cannot fail, so the
 * errors are the pooling's either way, with the same shapes. */
static bool relu_then_max_pool(const tg_model *m, int i, const tg_tensor *x) {
    return i + 1 < m->n && m->layers[i]->kind == TG__MOD_RELU &&
           m->layers[i + 1]->kind == TG__MOD_MAXPOOL2D &&
           (x->dtype == TG_F32 || x->dtype == TG_F64);
}

/* The number of layers from i that are a conv2d layer, an optional ReLU and a max
 * pooling, on an x the conv2d layer takes (of its dtype, [N, in_channels, H, W]): 2 or
 * 3, run as tg__conv2d_max_pool (then the ReLU, moved after the pooling as above); 0
 * otherwise. Errors past those checks are the two ops' either way. */
static int conv_then_max_pool(const tg_model *m, int i, const tg_tensor *x) {
    const tg_module *c = m->layers[i];
    if (c->kind != TG__MOD_CONV2D || x->dtype != c->dtype || x->ndim != 4 || x->shape[1] != c->in)
        return 0;
    int j = i + 1;
    if (j < m->n && m->layers[j]->kind == TG__MOD_RELU) j++;
    return j < m->n && m->layers[j]->kind == TG__MOD_MAXPOOL2D ? j - i + 1 : 0;
}

tg_tensor *tg_model_forward(tg_model *m, tg_tensor *x) {
    if (!m) return tg__fail_soft("tg_model_forward: model is NULL");
    if (!x) return tg__fail_soft("tg_model_forward: input is NULL");
    for (int i = 0; i < m->n && x; i++) {
        int span = conv_then_max_pool(m, i, x);
        if (span) { /* one op for the convolution and the pooling; the ReLU after them */
            const tg_module *c = m->layers[i], *pool = m->layers[i + span - 1];
            x = tg__conv2d_max_pool(x, c->state[0], c->state[1], c->stride, c->padding,
                                    pool->kernel, pool->stride, pool->padding);
            if (x && span == 3) x = tg_module_forward(m->layers[i + 1], x);
            i += span - 1;
            continue;
        }
        if (relu_then_max_pool(m, i, x)) { /* pool first, then the ReLU on a quarter of the data */
            x = tg_module_forward(m->layers[i + 1], x);
            x = x ? tg_module_forward(m->layers[i], x) : NULL;
            i++;
            continue;
        }
        x = tg_module_forward(m->layers[i], x);
    }
    return x;
}

void tg_model_train(tg_model *m, bool training) {
    if (!m) return;
    for (int i = 0; i < m->n; i++)
        tg_module_train(m->layers[i], training);
}

/* ---------------- helpers ---------------- */

/* Rows idx[0..b) of X (or rows start..start+b when idx is NULL) as a new tape tensor
 * without history: the minibatch. */
static tg_tensor *gather_rows(const tg_tensor *X, const int64_t *idx, int64_t start, int64_t b) {
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, X->shape, sizeof shape);
    shape[0] = b;
    tg_tensor *out = tg__tape_tensor(X->dtype, X->ndim, shape);
    if (!out) return NULL;
    size_t row = (size_t)(X->shape[0] ? X->numel / X->shape[0] : 0) * tg_dtype_size(X->dtype);
    if (row == 0 || b == 0) return out;
    const char *src = X->data;
    char *dst = out->data;
    if (!idx) {
        memcpy(dst, src + (size_t)start * row, (size_t)b * row);
    } else {
        for (int64_t r = 0; r < b; r++)
            memcpy(dst + (size_t)r * row, src + (size_t)idx[start + r] * row, row);
    }
    return out;
}

/* Index of the largest of the c values of row r of the 2-D tensor p (first on ties; a
 * NaN counts as the largest, as in NumPy). */
static int64_t row_argmax(const tg_tensor *p, int64_t r, int64_t c) {
    int64_t best = 0;
    double bv = tg__get(p, r * c);
    for (int64_t j = 1; j < c && !isnan(bv); j++) {
        double v = tg__get(p, r * c + j);
        if (v > bv || isnan(v)) {
            bv = v;
            best = j;
        }
    }
    return best;
}

/* Number of rows of pred ([b, C]) whose argmax equals the label. */
static int64_t count_correct(const tg_tensor *pred, const int64_t *labels, int64_t b) {
    int64_t c = pred->shape[1], ok = 0;
    for (int64_t r = 0; r < b; r++)
        ok += row_argmax(pred, r, c) == labels[r];
    return ok;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Saves every layer's training flag into flags (n entries) and sets them to on. */
static bool *push_training(tg_model *m, bool on) {
    bool *flags = tg__alloc(sizeof *flags * (size_t)(m->n > 0 ? m->n : 1));
    if (!flags) return NULL;
    for (int i = 0; i < m->n; i++) {
        flags[i] = m->layers[i]->training;
        tg_module_train(m->layers[i], on);
    }
    return flags;
}

static void pop_training(tg_model *m, bool *flags) {
    for (int i = 0; i < m->n; i++)
        tg_module_train(m->layers[i], flags[i]);
    tg__release(flags);
}

/* ---------------- fit ---------------- */

/* X is float, or I64 indices when the first layer is an embedding. */
static int check_data(const char *op, const tg_model *m, const tg_tensor *X, const tg_tensor *y) {
    bool indices = m->n > 0 && m->layers[0]->kind == TG__MOD_EMBEDDING;
    if (indices ? X->dtype != TG_I64 : X->dtype != TG_F32 && X->dtype != TG_F64)
        return tg__fail_int("%s: X must be %s, got %s %s", op,
                            indices ? "i64 (the first layer is an embedding)" : "f32 or f64",
                            tg_dtype_name(X->dtype), tg__shp(X));
    if (X->ndim < 1) return tg__fail_int("%s: X must have a row axis, got %s", op, tg__shp(X));
    if (y && (y->ndim < 1 || y->shape[0] != X->shape[0]))
        return tg__fail_int("%s: X has %lld rows but y is %s", op, (long long)X->shape[0],
                            tg__shp(y));
    return 0;
}

/* Rows of a batch in the evaluation passes (validation, tg_model_evaluate). */
#define EVAL_BATCH 1024

/* One pass over X in eval mode without recording: the row-weighted mean of loss per
 * batch (*loss_out) and, when y holds labels and the output is [rows, classes], the
 * accuracy (*acc_out, else NaN). Returns 0 or -1 (tg_error set, naming op). */
static int eval_pass(const char *op, tg_model *m, const tg_tensor *X, const tg_tensor *y,
                     tg_loss_fn loss, double *loss_out, double *acc_out) {
    const int64_t N = X->shape[0];
    bool labels = y->dtype == TG_I64 && y->ndim == 1;
    bool *flags = push_training(m, false);
    if (!flags) return -1;
    bool grad_was = tg_set_grad_enabled(false);
    const size_t mark = tg_tape_mark();
    double sum = 0.0;
    int64_t correct = 0;
    int rc = 0;
    for (int64_t start = 0; start < N && rc == 0; start += EVAL_BATCH) {
        int64_t b = N - start < EVAL_BATCH ? N - start : EVAL_BATCH;
        tg_tensor *xb = gather_rows(X, NULL, start, b);
        tg_tensor *yb = xb ? gather_rows(y, NULL, start, b) : NULL;
        tg_tensor *pred = yb ? tg_model_forward(m, xb) : NULL;
        tg_tensor *l = pred ? loss(pred, yb) : NULL;
        if (!l) {
            tg__fail_soft("%s: the loss function returned NULL", op);
            rc = -1;
        } else if (l->numel != 1) {
            rc = tg__fail_int("%s: the loss must have one element, got %s", op, tg__shp(l));
        } else {
            sum += tg_item(l) * (double)b;
            if (labels && pred->ndim == 2 && pred->shape[0] == b && pred->shape[1] >= 1)
                correct += count_correct(pred, yb->data, b);
            else
                labels = false;
        }
        tg_tape_rewind(mark);
    }
    tg_set_grad_enabled(grad_was);
    pop_training(m, flags);
    if (rc != 0) return -1;
    *loss_out = sum / (double)N;
    *acc_out = labels ? (double)correct / (double)N : NAN;
    return 0;
}

double tg_model_evaluate(tg_model *m, const tg_tensor *X, const tg_tensor *y, tg_loss_fn loss) {
    static const char op[] = "tg_model_evaluate";
    if (!m || !X || !y || !loss) {
        tg__fail_soft("%s: model, X, y and loss must not be NULL", op);
        return NAN;
    }
    if (check_data(op, m, X, y) != 0) return NAN;
    if (X->shape[0] == 0) {
        tg__fail("%s: X has no rows: %s", op, tg__shp(X));
        return NAN;
    }
    double l, acc;
    return eval_pass(op, m, X, y, loss, &l, &acc) == 0 ? l : NAN;
}

/* The tensors one call of fit keeps: the parameters (clipped, and combined across ranks
 * when distributed) and the layers' buffers (averaged across ranks when distributed),
 * in one tg__alloc block. */
typedef struct {
    tg_tensor **params, **bufs;
    int nparams, nbufs;
    int rank, size; /* distributed: this rank and the number of ranks; else 0 and 1 */
} fit_tensors;

/* What one call of fit works on; the step functions below read it. */
typedef struct {
    tg_model *m;
    const tg_fit_opts *o;
    const tg_tensor *X, *y;
    const int64_t *perm; /* this epoch's row order */
    bool labels;         /* y holds I64 class labels: count the running accuracy */
    size_t mark;         /* the tape position on entry; every step rewinds to it */
    fit_tensors t;
} fit_run;

/* Forward, loss and backward over the rows perm[start .. start + b) (a batch, or a
 * slice of one): accumulates into the parameters' ->grad, and returns the batch's mean
 * loss in *loss and its correct predictions in *correct (0 unless labels). A loss that
 * is not finite fails before the backward pass, naming epoch ep and step s (0-based
 * here, 1-based in the message). The tape is rewound in every case. */
static int slice_backward(fit_run *f, int ep, int64_t s, int64_t start, int64_t b, double *loss,
                          int64_t *correct) {
    static const char op[] = "tg_model_fit";
    int rc = 0;
    tg_tensor *xb = gather_rows(f->X, f->perm, start, b);
    tg_tensor *yb = xb ? gather_rows(f->y, f->perm, start, b) : NULL;
    tg_tensor *pred = yb ? tg_model_forward(f->m, xb) : NULL;
    tg_tensor *l = pred ? f->o->loss(pred, yb) : NULL;
    *correct = 0;
    if (!l) {
        tg__fail_soft("%s: the loss function returned NULL", op);
        rc = -1;
    } else if (l->numel != 1) {
        rc = tg__fail_int("%s: the loss must have one element, got %s", op, tg__shp(l));
    } else if (!isfinite(*loss = tg_item(l))) {
        rc = tg__fail_int("%s: the loss is %g at epoch %d, step %lld (batch rows %lld..%lld); "
                          "no parameter was updated at this step",
                          op, *loss, ep + 1, (long long)s + 1, (long long)start,
                          (long long)(start + b - 1));
    } else {
        if (f->labels && pred->ndim == 2 && pred->shape[0] == b && pred->shape[1] >= 1)
            *correct = count_correct(pred, yb->data, b);
        if (tg_backward(l) != 0) rc = -1;
    }
    tg_tape_rewind(f->mark);
    return rc;
}

/* Clipping (when asked) and the optimizer's update, once the gradients are final. */
static int clip_and_update(fit_run *f) {
    if (f->o->max_grad_norm > 0.0 && f->t.nparams > 0 &&
        isnan(tg_clip_grad_norm(f->t.nparams, f->t.params, f->o->max_grad_norm)))
        return -1;
    return tg_optim_step(f->o->optim);
}

#ifdef TG_HAVE_DIST
/* A distributed step: this rank's slice of the batch (maybe empty), then the combine of
 * the gradients (weighted by the slice's share of the rows), the buffers and the loss
 * and accuracy sums; every rank takes part even when its slice failed, so that all
 * stop together. */
static int dist_train_step(fit_run *f, int ep, int64_t s, int64_t start, int64_t b, double *loss,
                           int64_t *correct) {
    int64_t lo = b * f->t.rank / f->t.size, hi = b * (f->t.rank + 1) / f->t.size;
    double lv = 0.0;
    int64_t ok = 0;
    tg_optim_zero_grad(f->o->optim);
    bool failed = hi > lo && slice_backward(f, ep, s, start + lo, hi - lo, &lv, &ok) != 0;
    double sums[2] = {lv * (double)(hi - lo), (double)ok};
    tg__dist_reduce_args a = {.params = f->t.params,
                              .nparams = f->t.nparams,
                              .bufs = f->t.bufs,
                              .nbufs = f->t.nbufs,
                              .weight = (double)(hi - lo) / (double)b,
                              .sums = sums,
                              .nsums = 2,
                              .failed = failed};
    if (tg__dist_reduce("tg_model_fit", &a) != 0) return -1;
    *loss = sums[0] / (double)b;
    *correct = (int64_t)sums[1];
    return clip_and_update(f);
}
#endif

/* One training step on the batch perm[start .. start + b): zero the gradients, forward,
 * loss and backward (slice_backward), then the optimizer's update. */
static int train_step(fit_run *f, int ep, int64_t s, int64_t start, int64_t b, double *loss,
                      int64_t *correct) {
#ifdef TG_HAVE_DIST
    if (f->o->distributed) return dist_train_step(f, ep, s, start, b, loss, correct);
#endif
    tg_optim_zero_grad(f->o->optim);
    if (slice_backward(f, ep, s, start, b, loss, correct) != 0) return -1;
    return clip_and_update(f);
}

/* Fisher-Yates over perm[0..N) with g: one epoch's reshuffle. */
static void shuffle_rows(int64_t *perm, int64_t N, tg_rng *g) {
    for (int64_t i = N - 1; i > 0; i--) {
        int64_t j = (int64_t)tg_rng_below(g, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static int check_fit_opts(const char *op, const tg_fit_opts *o) {
    if (!o->loss || !o->optim)
        return tg__fail_int("%s: options need a loss function and an optimizer (got %s%s)", op,
                            o->loss ? "" : "loss NULL ", o->optim ? "" : "optim NULL");
    if (o->epochs < 1) return tg__fail_int("%s: epochs must be >= 1, got %d", op, o->epochs);
    if (o->batch_size < 0)
        return tg__fail_int("%s: batch_size must be >= 0 (0: the whole data set), got %lld", op,
                            (long long)o->batch_size);
    if (o->initial_epoch < 0 || o->initial_epoch >= o->epochs)
        return tg__fail_int("%s: initial_epoch must be in [0, epochs = %d), got %d", op, o->epochs,
                            o->initial_epoch);
    if (o->patience < 0) return tg__fail_int("%s: patience must be >= 0, got %d", op, o->patience);
    if (!(o->min_delta >= 0.0))
        return tg__fail_int("%s: min_delta must be >= 0, got %g", op, o->min_delta);
    if (!o->val_X != !o->val_y)
        return tg__fail_int("%s: validation needs both val_X and val_y (got %s)", op,
                            o->val_X ? "val_y NULL" : "val_X NULL");
    if (!(o->max_grad_norm >= 0.0))
        return tg__fail_int("%s: max_grad_norm must be >= 0 (0: no clipping), got %g", op,
                            o->max_grad_norm);
    return 0;
}

/* Every argument check of fit, before anything runs. */
static int check_fit_args(const char *op, const tg_model *m, const tg_tensor *X, const tg_tensor *y,
                          const tg_fit_opts *o) {
    if (check_fit_opts(op, o) != 0 || check_data(op, m, X, y) != 0) return -1;
    if (X->shape[0] == 0) return tg__fail_int("%s: X has no rows: %s", op, tg__shp(X));
    if (!o->val_X) return 0;
    if (check_data(op, m, o->val_X, o->val_y) != 0) return -1;
    if (o->val_X->shape[0] == 0 || o->val_X->dtype != X->dtype ||
        !tg__shape_eq(X->ndim - 1, X->shape + 1, o->val_X->ndim - 1, o->val_X->shape + 1) ||
        o->val_y->dtype != y->dtype)
        return tg__fail_int("%s: validation data %s %s, %s %s does not match the training "
                            "data %s %s, %s %s",
                            op, tg_dtype_name(o->val_X->dtype), tg__shp(o->val_X),
                            tg_dtype_name(o->val_y->dtype), tg__shp(o->val_y),
                            tg_dtype_name(X->dtype), tg__shp(X), tg_dtype_name(y->dtype),
                            tg__shp(y));
    return 0;
}

/* The model's parameters and buffers into t (one block; free t->params). 0 or -1. */
static int collect_fit_tensors(tg_model *m, fit_tensors *t) {
    int np = tg_model_params(m, NULL, 0), nb = 0;
    if (np < 0) return -1;
    for (int i = 0; i < m->n; i++)
        nb += m->layers[i]->nstate - m->layers[i]->nparams;
    t->params = tg__alloc(sizeof *t->params * (size_t)(np + nb + 1));
    if (!t->params) return -1;
    t->bufs = t->params + np;
    t->nparams = tg_model_params(m, t->params, np);
    t->nbufs = 0;
    for (int i = 0; i < m->n; i++)
        for (int k = m->layers[i]->nparams; k < m->layers[i]->nstate; k++)
            t->bufs[t->nbufs++] = m->layers[i]->state[k];
    t->rank = 0;
    t->size = 1;
    return 0;
}

/* The start of a distributed fit, collective: checks that every rank passed its own
 * argument checks (failed: this one did not) and runs the same training (rows, batch
 * size, epochs, options), then broadcasts from rank 0 the parameters, the buffers and
 * the optimizer's state, and gives each rank its own dropout stream. */
static int dist_begin(const char *op, fit_run *f, bool failed) {
#ifndef TG_HAVE_DIST
    (void)failed;
    (void)f;
    return tg__fail_int("%s: distributed training needs a tapegrad built with MPI "
                        "(TG_HAVE_DIST is not defined)",
                        op);
#else
    if (tg_dist_size() < 0)
        return tg__fail_int("%s: distributed training needs tg_dist_init first", op);
    const tg_fit_opts *o = f->o;
    tg_optim *opt = o->optim;
    int nopt = failed ? 0 : tg_optim_num_params(opt);
    tg_tensor *steps = NULL, *lr = NULL, **list = NULL;
    if (!failed) {
        steps = tg_tensor_new(TG_I64, TG_SHAPE(nopt));
        lr = tg_scalar(TG_F64, tg_optim_get_lr(opt));
        list = tg__alloc(sizeof *list * (size_t)(f->t.nparams + f->t.nbufs + 3 * nopt + 2));
        failed = !steps || !lr || !list;
    }
    int n = 0;
    if (!failed) {
        for (int i = 0; i < f->t.nparams + f->t.nbufs; i++)
            list[n++] = f->t.params[i]; /* the buffers follow the parameters */
        for (int i = 0; i < nopt; i++) {
            const char *names[4];
            n += tg__optim_slots(opt, i, names, list + n);
            ((int64_t *)steps->data)[i] = *tg__optim_steps(opt, i);
        }
        list[n++] = steps;
        list[n++] = lr;
    }
    const tg_tensor *X = f->X;
    double clip = o->max_grad_norm;
    int64_t clip_bits;
    memcpy(&clip_bits, &clip, sizeof clip_bits);
    int64_t run[] = {X->shape[0],
                     o->batch_size,
                     o->epochs,
                     o->initial_epoch,
                     o->shuffle,
                     (int64_t)o->seed,
                     X->numel,
                     X->dtype,
                     o->val_X ? o->val_X->shape[0] : -1,
                     o->on_step != NULL,
                     o->patience,
                     clip_bits,
                     f->m->n};
    int rc = tg__dist_agree(op, "the training run (rows, batch size, epochs, seed, options)", run,
                            (int)(sizeof run / sizeof *run), failed);
    if (rc == 0) rc = tg__dist_broadcast(op, list, n, 0);
    if (rc == 0) {
        for (int i = 0; i < nopt; i++)
            *tg__optim_steps(opt, i) = ((int64_t *)steps->data)[i];
        tg_optim_set_lr(opt, tg_item(lr));
        f->t.rank = tg_dist_rank();
        f->t.size = tg_dist_size();
        tg__rng_stream((uint64_t)f->t.rank);
    }
    tg_tensor_free(steps);
    tg_tensor_free(lr);
    tg__release(list);
    return rc;
#endif
}

/* Whether this process prints fit's progress: always, but only rank 0 when distributed. */
static bool fit_prints(const fit_run *f) { return f->t.rank == 0; }

/* A stop decision every rank shares: when distributed, any rank's stop stops them all. */
static bool fit_stop(const fit_run *f, bool stop) {
#ifdef TG_HAVE_DIST
    if (f->o->distributed) return tg__dist_any(stop);
#endif
    (void)f;
    return stop;
}

static void print_epoch(const tg_fit_progress *p) {
    printf("epoch %d/%d  train loss %.6f", p->epoch + 1, p->epochs, p->train_loss);
    if (!isnan(p->train_accuracy)) printf("  train accuracy %.4f", p->train_accuracy);
    if (!isnan(p->val_loss)) printf("  val loss %.6f", p->val_loss);
    if (!isnan(p->val_accuracy)) printf("  val accuracy %.4f", p->val_accuracy);
    printf("  %.2f s\n", p->seconds);
    fflush(stdout);
}

int tg_model_fit(tg_model *m, const tg_tensor *X, const tg_tensor *y, const tg_fit_opts *o,
                 double *epoch_loss) {
    static const char op[] = "tg_model_fit";
    if (!m || !X || !y || !o)
        return tg__fail_soft("%s: model, X, y and options must not be NULL", op), -1;
    fit_run f = {.m = m, .o = o, .X = X, .y = y, .mark = tg_tape_mark()};
    int64_t *perm = NULL;
    bool *flags = NULL;
    bool bad = check_fit_args(op, m, X, y, o) != 0 || collect_fit_tensors(m, &f.t) != 0 ||
               !(perm = tg__alloc(sizeof *perm * (size_t)X->shape[0])) ||
               !(flags = push_training(m, true));
    /* Distributed, every rank learns here whether all others are ready too. */
    if (o->distributed && dist_begin(op, &f, bad) != 0) bad = true;
    if (bad) {
        if (flags) pop_training(m, flags);
        tg__release(perm);
        tg__release(f.t.params);
        return -1;
    }
    const int64_t N = X->shape[0];
    const int64_t bs = o->batch_size == 0 || o->batch_size > N ? N : o->batch_size;
    const int64_t steps = (N + bs - 1) / bs;
    for (int64_t i = 0; i < N; i++)
        perm[i] = i;
    bool grad_was = tg_set_grad_enabled(true);
    /* Shuffling has its own stream so fit is reproducible whatever else draws from
     * the tg_seed() generator (dropout masks, initialisers). The epochs before
     * initial_epoch are replayed (shuffles only), so a resumed run sees the same batches. */
    tg_rng rng;
    tg_rng_seed(&rng, o->seed);
    if (o->shuffle)
        for (int ep = 0; ep < o->initial_epoch; ep++)
            shuffle_rows(perm, N, &rng);
    f.perm = perm;
    f.labels = y->dtype == TG_I64 && y->ndim == 1;
    tg_fit_progress p = {.epochs = o->epochs, .steps = steps, .best_epoch = -1};
    double best = INFINITY;
    int wait = 0, rc = 0;
    bool stop = false;

    for (int ep = o->initial_epoch; ep < o->epochs && rc == 0 && !stop; ep++) {
        double t0 = now_seconds(), loss_sum = 0.0;
        int64_t correct = 0;
        bool counted = f.labels;
        if (o->shuffle) shuffle_rows(perm, N, &rng);
        p.epoch = ep;
        p.val_loss = p.val_accuracy = NAN;
        for (int64_t s = 0; s < steps && !stop; s++) {
            int64_t start = s * bs, b = start + bs <= N ? bs : N - start, ok = 0;
            double lv = 0.0;
            rc = train_step(&f, ep, s, start, b, &lv, &ok);
            if (rc != 0) break;
            loss_sum += lv * (double)b;
            correct += ok;
            p.step = s + 1;
            p.rows = start + b;
            p.train_loss = loss_sum / (double)p.rows;
            p.train_accuracy = counted ? (double)correct / (double)p.rows : NAN;
            p.seconds = now_seconds() - t0;
            if (o->verbose >= 2 && fit_prints(&f))
                printf("  epoch %d/%d  step %lld/%lld  loss %.6f\n", ep + 1, o->epochs,
                       (long long)(s + 1), (long long)steps, lv);
            if (o->on_step) stop = fit_stop(&f, o->on_step(&p, o->callback_ctx) != 0);
        }
        if (rc != 0) break;
        if (epoch_loss) epoch_loss[ep - o->initial_epoch] = p.train_loss;
        if (o->val_X) {
            bool failed =
                eval_pass(op, m, o->val_X, o->val_y, o->loss, &p.val_loss, &p.val_accuracy) != 0;
            if (fit_stop(&f, failed)) { /* distributed: a failure on any rank stops all */
                if (!failed) tg__fail("%s: the validation pass failed on another rank", op);
                rc = -1;
                break;
            }
        }
        double monitored = o->val_X ? p.val_loss : p.train_loss;
        if (monitored < best - o->min_delta) {
            best = monitored;
            p.best_epoch = ep;
            wait = 0;
        } else if (o->patience > 0 && ++wait >= o->patience) {
            stop = true;
        }
        p.seconds = now_seconds() - t0;
        if (o->verbose >= 1 && fit_prints(&f)) print_epoch(&p);
        if (o->on_epoch && o->on_epoch(&p, o->callback_ctx) != 0) stop = true;
        stop = fit_stop(&f, stop);
    }

    tg_set_grad_enabled(grad_was);
    pop_training(m, flags);
    tg__release(perm);
    tg__release(f.t.params);
    return rc;
}

/* ---------------- predict / accuracy ---------------- */

tg_tensor *tg_model_predict(tg_model *m, const tg_tensor *X) {
    static const char op[] = "tg_model_predict";
    if (!m || !X) return tg__fail_soft("%s: model and X must not be NULL", op);
    if (check_data(op, m, X, NULL) != 0) return NULL;
    const int64_t N = X->shape[0];
    bool *flags = push_training(m, false);
    if (!flags) return NULL;
    bool grad_was = tg_set_grad_enabled(false);
    const size_t mark = tg_tape_mark();
    tg_tensor *result = NULL;
    bool failed = false;
    /* An empty X still runs one (empty) batch, which gives the output's shape. */
    for (int64_t start = 0; !failed && (start < N || start == 0); start += PREDICT_BATCH) {
        int64_t b = N - start < PREDICT_BATCH ? N - start : PREDICT_BATCH;
        tg_tensor *xb = gather_rows(X, NULL, start, b);
        tg_tensor *out = xb ? tg_model_forward(m, xb) : NULL;
        if (!out) {
            failed = true;
        } else if (out->ndim < 1 || out->shape[0] != b) {
            tg__fail("%s: the model maps %s to %s: the row count must be kept", op, tg__shp(xb),
                     tg__shp(out));
            failed = true;
        } else {
            if (!result) {
                int64_t shape[TG_MAX_DIMS];
                memcpy(shape, out->shape, sizeof shape);
                shape[0] = N;
                result = tg_tensor_new(out->dtype, out->ndim, shape);
            }
            if (!result) {
                failed = true;
            } else if (result->dtype != out->dtype ||
                       !tg__shape_eq(result->ndim - 1, result->shape + 1, out->ndim - 1,
                                     out->shape + 1)) {
                tg__fail("%s: batches disagree: %s %s then %s %s", op, tg_dtype_name(result->dtype),
                         tg__shp(result), tg_dtype_name(out->dtype), tg__shp(out));
                failed = true;
            } else if (out->numel > 0) {
                size_t row = (size_t)(out->numel / b) * tg_dtype_size(out->dtype);
                memcpy((char *)result->data + (size_t)start * row, out->data,
                       (size_t)out->numel * tg_dtype_size(out->dtype));
            }
        }
        tg_tape_rewind(mark);
        if (N == 0) break;
    }
    tg_set_grad_enabled(grad_was);
    pop_training(m, flags);
    if (failed) {
        tg_tensor_free(result);
        return NULL;
    }
    return result;
}

double tg_model_accuracy(tg_model *m, const tg_tensor *X, const tg_tensor *labels) {
    static const char op[] = "tg_model_accuracy";
    if (!m || !X || !labels) {
        tg__fail_soft("%s: model, X and labels must not be NULL", op);
        return NAN;
    }
    if (labels->dtype != TG_I64 || labels->ndim != 1 || X->ndim < 1 ||
        labels->shape[0] != X->shape[0]) {
        tg__fail("%s: labels must be i64 [rows of X]; X is %s, labels %s %s", op, tg__shp(X),
                 tg_dtype_name(labels->dtype), tg__shp(labels));
        return NAN;
    }
    if (X->shape[0] == 0) {
        tg__fail("%s: X has no rows: %s", op, tg__shp(X));
        return NAN;
    }
    tg_tensor *pred = tg_model_predict(m, X);
    if (!pred) return NAN;
    double acc = NAN;
    if (pred->ndim != 2 || pred->shape[1] < 1)
        tg__fail("%s: the model's output %s is not [rows, classes]", op, tg__shp(pred));
    else
        acc = (double)count_correct(pred, labels->data, X->shape[0]) / (double)X->shape[0];
    tg_tensor_free(pred);
    return acc;
}

/* ---------------- checkpoints ---------------- */

enum { NAME_LEN = 48 };

/* The model's state as parallel arrays of names ("<layer>.<state>") and tensors, from
 * tg__alloc (one block: free *names_out), with room for extra more entries after the
 * model's (names[i] points to NAME_LEN writable bytes for every i). Returns the
 * model's count, or -1. */
static int collect_state(const char *op, const tg_model *m, int extra, char ***names_out,
                         tg_tensor ***tensors_out) {
    int total = 0;
    for (int i = 0; i < m->n; i++) {
        int k = tg_module_state(m->layers[i], NULL, NULL, 0);
        if (k < 0) return -1;
        total += k;
    }
    int room = total + extra;
    size_t nbytes =
        (size_t)(room > 0 ? room : 1) * (sizeof(char *) + sizeof(tg_tensor *) + NAME_LEN);
    char *block = tg__alloc(nbytes);
    if (!block) return -1;
    char **names = (char **)block;
    tg_tensor **tensors = (tg_tensor **)(names + room);
    char *text = (char *)(tensors + room);
    for (int i = 0; i < room; i++)
        names[i] = text + (size_t)i * NAME_LEN;
    int at = 0;
    for (int i = 0; i < m->n; i++) {
        const char *sn[TG__MODULE_MAX_STATE];
        tg_tensor *st[TG__MODULE_MAX_STATE];
        int k = tg_module_state(m->layers[i], sn, st, TG__MODULE_MAX_STATE);
        if (k < 0 || k > TG__MODULE_MAX_STATE) {
            tg__release(block);
            return tg__fail_soft("%s: cannot list the state of layer %d", op, i), -1;
        }
        for (int j = 0; j < k; j++, at++) {
            snprintf(names[at], NAME_LEN, "%d.%s", i, sn[j]);
            tensors[at] = st[j];
        }
    }
    *names_out = names;
    *tensors_out = tensors;
    return total;
}

/* Re-labels an io.h error as coming from op: "tg_safetensors_load: f: ..." becomes
 * "tg_model_load: f: ...". */
static void relabel_error(const char *op, const char *from) {
    const char *e = tg_error();
    size_t fl = strlen(from);
    if (!e || strncmp(e, from, fl) != 0) return;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", e + fl);
    tg__fail("%s%s", op, copy);
}

int tg_model_save(const tg_model *m, const char *path) {
    if (!m || !path) return tg__fail_soft("tg_model_save: model and path must not be NULL"), -1;
    char **names;
    tg_tensor **tensors;
    int n = collect_state("tg_model_save", m, 0, &names, &tensors);
    if (n < 0) return -1;
    int rc = tg_safetensors_save(path, n, (const char *const *)names, tensors);
    if (rc != 0) relabel_error("tg_model_save", "tg_safetensors_save");
    tg__release(names);
    return rc;
}

int tg_model_load(tg_model *m, const char *path) {
    if (!m || !path) return tg__fail_soft("tg_model_load: model and path must not be NULL"), -1;
    char **names;
    tg_tensor **tensors;
    int n = collect_state("tg_model_load", m, 0, &names, &tensors);
    if (n < 0) return -1;
    int rc = tg_safetensors_load(path, n, (const char *const *)names, tensors);
    if (rc != 0) relabel_error("tg_model_load", "tg_safetensors_load");
    tg__release(names);
    return rc;
}

/* ---------------- training checkpoints ---------------- */

/* The entries of a training checkpoint (see nn.h): the model's, then the optimizer's
 * state tensors, its step counts and learning rate (in the scratch tensors *steps and
 * *lr, made here), then the epoch (*ep, made here). Returns the count, or -1 with
 * everything freed. */
static int collect_training(const char *op, const tg_model *m, tg_optim *opt, char ***names,
                            tg_tensor ***tensors, tg_tensor **steps, tg_tensor **lr,
                            tg_tensor **ep) {
    enum { MAX_SLOTS = 3 };
    int np = opt ? tg_optim_num_params(opt) : 0;
    int n = collect_state(op, m, np * MAX_SLOTS + 3, names, tensors);
    if (n < 0) return -1;
    *steps = *lr = NULL;
    *ep = tg_tensor_new(TG_I64, TG_SHAPE(1));
    if (opt) {
        *steps = tg_tensor_new(TG_I64, TG_SHAPE(np));
        *lr = tg_tensor_new(TG_F64, TG_SHAPE(1));
    }
    if (!*ep || (opt && (!*steps || !*lr))) {
        tg_tensor_free(*ep);
        tg_tensor_free(*steps);
        tg_tensor_free(*lr);
        tg__release(*names);
        return -1;
    }
    for (int i = 0; i < np; i++) {
        const char *sn[MAX_SLOTS];
        tg_tensor *st[MAX_SLOTS];
        int k = tg__optim_slots(opt, i, sn, st);
        for (int j = 0; j < k; j++, n++) {
            snprintf((*names)[n], NAME_LEN, "optim.%d.%s", i, sn[j]);
            (*tensors)[n] = st[j];
        }
    }
    if (opt) {
        snprintf((*names)[n], NAME_LEN, "optim.steps");
        (*tensors)[n++] = *steps;
        snprintf((*names)[n], NAME_LEN, "optim.lr");
        (*tensors)[n++] = *lr;
    }
    snprintf((*names)[n], NAME_LEN, "epoch");
    (*tensors)[n++] = *ep;
    return n;
}

int tg_model_save_training(const tg_model *m, const tg_optim *opt, int64_t epoch,
                           const char *path) {
    static const char op[] = "tg_model_save_training";
    if (!m || !path) return tg__fail_soft("%s: model and path must not be NULL", op), -1;
    if (epoch < 0) return tg__fail_int("%s: epoch must be >= 0, got %lld", op, (long long)epoch);
    char **names;
    tg_tensor **tensors, *steps, *lr, *ep;
    /* The optimizer is only read; the collection helper is shared with loading. */
    int n = collect_training(op, m, (tg_optim *)opt, &names, &tensors, &steps, &lr, &ep);
    if (n < 0) return -1;
    ((int64_t *)ep->data)[0] = epoch;
    if (opt) {
        for (int i = 0; i < tg_optim_num_params(opt); i++)
            ((int64_t *)steps->data)[i] = tg_optim_param_steps(opt, i);
        ((double *)lr->data)[0] = tg_optim_get_lr(opt);
    }
    int rc = tg_safetensors_save(path, n, (const char *const *)names, tensors);
    if (rc != 0) relabel_error(op, "tg_safetensors_save");
    tg_tensor_free(steps);
    tg_tensor_free(lr);
    tg_tensor_free(ep);
    tg__release(names);
    return rc;
}

int tg_model_load_training(tg_model *m, tg_optim *opt, int64_t *epoch, const char *path) {
    static const char op[] = "tg_model_load_training";
    if (!m || !path) return tg__fail_soft("%s: model and path must not be NULL", op), -1;
    char **names;
    tg_tensor **tensors, *steps, *lr, *ep;
    int n = collect_training(op, m, opt, &names, &tensors, &steps, &lr, &ep);
    if (n < 0) return -1;
    /* The model's and optimizer's tensors are written only when the whole file is good;
     * then the scratch values are checked and copied. A bad step count or rate means the
     * file was not written by tg_model_save_training: the tensors already read are then
     * left loaded, but that needs a hand-made file. */
    int rc = tg_safetensors_load(path, n, (const char *const *)names, tensors);
    if (rc != 0) relabel_error(op, "tg_safetensors_load");
    int64_t e = rc == 0 ? ((int64_t *)ep->data)[0] : 0;
    if (rc == 0 && e < 0) rc = tg__fail_int("%s: %s: negative epoch %lld", op, path, (long long)e);
    for (int i = 0; rc == 0 && opt && i < tg_optim_num_params(opt); i++)
        if (((int64_t *)steps->data)[i] < 0)
            rc = tg__fail_int("%s: %s: negative step count for parameter %d", op, path, i);
    if (rc == 0 && opt && !(((double *)lr->data)[0] >= 0.0))
        rc = tg__fail_int("%s: %s: bad learning rate %g", op, path, ((double *)lr->data)[0]);
    if (rc == 0) {
        if (opt) {
            for (int i = 0; i < tg_optim_num_params(opt); i++)
                *tg__optim_steps(opt, i) = ((int64_t *)steps->data)[i];
            tg_optim_set_lr(opt, ((double *)lr->data)[0]);
        }
        if (epoch) *epoch = e;
    }
    tg_tensor_free(steps);
    tg_tensor_free(lr);
    tg_tensor_free(ep);
    tg__release(names);
    return rc;
}
