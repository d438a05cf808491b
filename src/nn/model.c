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

tg_tensor *tg_model_forward(tg_model *m, tg_tensor *x) {
    if (!m) return tg__fail_soft("tg_model_forward: model is NULL");
    if (!x) return tg__fail_soft("tg_model_forward: input is NULL");
    for (int i = 0; i < m->n && x; i++)
        x = tg_module_forward(m->layers[i], x);
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

int tg_model_fit(tg_model *m, const tg_tensor *X, const tg_tensor *y, const tg_fit_opts *o,
                 double *epoch_loss) {
    static const char op[] = "tg_model_fit";
    if (!m || !X || !y || !o)
        return tg__fail_soft("%s: model, X, y and options must not be NULL", op), -1;
    if (!o->loss || !o->optim)
        return tg__fail_int("%s: options need a loss function and an optimizer (got %s%s)", op,
                            o->loss ? "" : "loss NULL ", o->optim ? "" : "optim NULL");
    if (o->epochs < 1) return tg__fail_int("%s: epochs must be >= 1, got %d", op, o->epochs);
    if (o->batch_size < 0)
        return tg__fail_int("%s: batch_size must be >= 0 (0: the whole data set), got %lld", op,
                            (long long)o->batch_size);
    if (check_data(op, m, X, y) != 0) return -1;
    const int64_t N = X->shape[0];
    if (N == 0) return tg__fail_int("%s: X has no rows: %s", op, tg__shp(X));
    const int64_t bs = o->batch_size == 0 || o->batch_size > N ? N : o->batch_size;
    const int64_t steps = (N + bs - 1) / bs;
    const bool labels = y->dtype == TG_I64 && y->ndim == 1;

    int64_t *perm = tg__alloc(sizeof *perm * (size_t)N);
    if (!perm) return -1;
    for (int64_t i = 0; i < N; i++)
        perm[i] = i;
    bool *flags = push_training(m, true);
    if (!flags) {
        tg__release(perm);
        return -1;
    }
    bool grad_was = tg_set_grad_enabled(true);
    /* Shuffling has its own stream so fit is reproducible whatever else draws from
     * the tg_seed() generator (dropout masks, initialisers). */
    tg_rng rng;
    tg_rng_seed(&rng, o->seed);
    const size_t mark = tg_tape_mark();
    int rc = 0;

    for (int ep = 0; ep < o->epochs && rc == 0; ep++) {
        double t0 = now_seconds(), loss_sum = 0.0;
        int64_t correct = 0;
        if (o->shuffle)
            for (int64_t i = N - 1; i > 0; i--) {
                int64_t j = (int64_t)tg_rng_below(&rng, (uint64_t)i + 1);
                int64_t t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
            }
        for (int64_t s = 0; s < steps; s++) {
            int64_t start = s * bs, b = start + bs <= N ? bs : N - start;
            tg_tensor *xb = gather_rows(X, perm, start, b);
            tg_tensor *yb = xb ? gather_rows(y, perm, start, b) : NULL;
            tg_tensor *pred = yb ? tg_model_forward(m, xb) : NULL;
            tg_tensor *loss = pred ? o->loss(pred, yb) : NULL;
            if (!loss) {
                tg__fail_soft("%s: the loss function returned NULL", op);
                rc = -1;
            } else if (loss->numel != 1) {
                rc = tg__fail_int("%s: the loss must have one element, got %s", op, tg__shp(loss));
            }
            double lv = rc == 0 ? tg_item(loss) : 0.0;
            if (rc == 0 && labels && pred->ndim == 2 && pred->shape[0] == b)
                correct += count_correct(pred, yb->data, b);
            if (rc == 0) {
                tg_optim_zero_grad(o->optim);
                if (tg_backward(loss) != 0 || tg_optim_step(o->optim) != 0) rc = -1;
            }
            tg_tape_rewind(mark);
            if (rc != 0) break;
            loss_sum += lv * (double)b;
            if (o->verbose >= 2)
                printf("  epoch %d/%d  step %lld/%lld  loss %.6f\n", ep + 1, o->epochs,
                       (long long)(s + 1), (long long)steps, lv);
        }
        if (rc != 0) break;
        double mean = loss_sum / (double)N;
        if (epoch_loss) epoch_loss[ep] = mean;
        if (o->verbose >= 1) {
            printf("epoch %d/%d  loss %.6f", ep + 1, o->epochs, mean);
            if (labels) printf("  accuracy %.4f", (double)correct / (double)N);
            printf("  %.1f ms\n", 1e3 * (now_seconds() - t0));
            fflush(stdout);
        }
    }

    tg_set_grad_enabled(grad_was);
    pop_training(m, flags);
    tg__release(perm);
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

/* The model's state as parallel arrays of names ("<layer>.<state>") and tensors, from
 * tg__alloc (one block: free *names_out). Returns the count, or -1. */
static int collect_state(const char *op, const tg_model *m, char ***names_out,
                         tg_tensor ***tensors_out) {
    int total = 0;
    for (int i = 0; i < m->n; i++) {
        int k = tg_module_state(m->layers[i], NULL, NULL, 0);
        if (k < 0) return -1;
        total += k;
    }
    enum { NAME_LEN = 48 };
    size_t nbytes =
        (size_t)(total > 0 ? total : 1) * (sizeof(char *) + sizeof(tg_tensor *) + NAME_LEN);
    char *block = tg__alloc(nbytes);
    if (!block) return -1;
    char **names = (char **)block;
    tg_tensor **tensors = (tg_tensor **)(names + total);
    char *text = (char *)(tensors + total);
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
            names[at] = text + (size_t)at * NAME_LEN;
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
    int n = collect_state("tg_model_save", m, &names, &tensors);
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
    int n = collect_state("tg_model_load", m, &names, &tensors);
    if (n < 0) return -1;
    int rc = tg_safetensors_load(path, n, (const char *const *)names, tensors);
    if (rc != 0) relabel_error("tg_model_load", "tg_safetensors_load");
    tg__release(names);
    return rc;
}
