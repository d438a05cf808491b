/* reduce.c — sum, mean, max, logsumexp, argmax over one axis or all of them.
 *
 * The one reduction helper views the input as [outer, n, inner] where n is the
 * reduced axis (TG_ALL: [1, numel, 1]); the output is [outer, inner]. */
#include <math.h>
#include <string.h>

#include "../autodiff/internal.h"

typedef struct {
    int64_t outer, n, inner;
    int out_ndim;
    int64_t out_shape[TG_MAX_DIMS];
    int64_t keep_shape[TG_MAX_DIMS]; /* x's shape with the reduced axes set to 1 */
} reduction;

/* Resolves axis/keepdim into the [outer, n, inner] view and the output shapes. */
static bool plan(const char *op, const tg_tensor *x, int axis, bool keepdim, reduction *r) {
    for (int i = 0; i < x->ndim; i++) r->keep_shape[i] = x->shape[i];
    if (axis == TG_ALL) {
        r->outer = 1;
        r->n = x->numel;
        r->inner = 1;
        for (int i = 0; i < x->ndim; i++) r->keep_shape[i] = 1;
        r->out_ndim = keepdim ? x->ndim : 0;
        for (int i = 0; i < r->out_ndim; i++) r->out_shape[i] = 1;
        return true;
    }
    if (!tg__norm_axis(op, x, &axis)) return false;
    r->outer = 1;
    r->inner = 1;
    for (int i = 0; i < axis; i++) r->outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++) r->inner *= x->shape[i];
    r->n = x->shape[axis];
    r->keep_shape[axis] = 1;
    r->out_ndim = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i == axis && !keepdim) continue;
        r->out_shape[r->out_ndim++] = i == axis ? 1 : x->shape[i];
    }
    return true;
}

typedef enum { R_SUM, R_MAX, R_LSE, R_ARGMAX } rkind;

/* y[o, k] = reduce_j x[o, j, k]; for R_MAX/R_ARGMAX idx (may be NULL) gets the first
 * maximal j. NaN wins a max. Sums accumulate in double. */
#define REDUCE_KERNEL(NAME, T, F)                                                                  \
    static void NAME(rkind kind, const reduction *r, const T *x, T *y, int64_t *idx) {             \
        for (int64_t o = 0; o < r->outer; o++)                                                     \
            for (int64_t k = 0; k < r->inner; k++) {                                               \
                const T *p = x + o * r->n * r->inner + k;                                          \
                int64_t s = r->inner, best = 0;                                                    \
                double acc = 0;                                                                    \
                if (kind == R_SUM) {                                                               \
                    for (int64_t j = 0; j < r->n; j++) acc += p[j * s];                            \
                } else {                                                                           \
                    T m = p[0];                                                                    \
                    for (int64_t j = 1; j < r->n && m == m; j++)                                   \
                        if (p[j * s] > m || p[j * s] != p[j * s]) m = p[j * s], best = j;          \
                    acc = m;                                                                       \
                    if (kind == R_LSE) {                                                           \
                        T c = isfinite(m) ? m : 0;                                                 \
                        double e = 0;                                                              \
                        for (int64_t j = 0; j < r->n; j++) e += exp##F(p[j * s] - c);              \
                        acc = c + log(e);                                                          \
                    }                                                                              \
                }                                                                                  \
                if (y) y[o * r->inner + k] = (T)acc;                                               \
                if (idx) idx[o * r->inner + k] = best;                                             \
            }                                                                                      \
    }
REDUCE_KERNEL(reduce_f32, float, f)
REDUCE_KERNEL(reduce_f64, double, )

static void run(rkind kind, const reduction *r, const tg_tensor *x, void *y, int64_t *idx) {
    if (x->dtype == TG_F64)
        reduce_f64(kind, r, x->data, y, idx);
    else
        reduce_f32(kind, r, x->data, y, idx);
}

/* g (the output's gradient) broadcast back over x's shape. */
static tg_tensor *expand_grad(const tg__node *n, tg_tensor *g) {
    tg_tensor *x = n->in[0];
    const int64_t *keep = n->extra;
    return tg_broadcast_to(tg_reshape(g, x->ndim, keep), x->ndim, x->shape);
}

static int sum_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = expand_grad(n, g)) ? 0 : -1;
}

static int mean_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_mul_scalar(expand_grad(n, g), n->d[0])) ? 0 : -1;
}

/* The gradient goes to the first maximal element only: g times a constant one-hot mask
 * built from the indices saved by the forward pass. */
static int max_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[0];
    const int64_t *best = (const int64_t *)n->extra + TG_MAX_DIMS;
    int64_t outer = n->i[0], len = n->i[1], inner = n->i[2];
    tg_tensor *mask = tg__tape_zeros(x->dtype, x->ndim, x->shape);
    if (!mask) return -1;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < inner; k++)
            tg__set(mask, (o * len + best[o * inner + k]) * inner + k, 1.0);
    return (gin[0] = tg_mul(expand_grad(n, g), mask)) ? 0 : -1;
}

/* d lse / dx = exp(x - lse) = softmax(x) */
static int lse_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[0];
    const int64_t *keep = n->extra;
    tg_tensor *y = tg_reshape(n->out, x->ndim, keep);
    return (gin[0] = tg_mul(expand_grad(n, g), tg_exp(tg_sub(x, y)))) ? 0 : -1;
}

static tg_tensor *reduce_op(const char *op, const char *name, rkind kind, bool mean, tg_tensor *x,
                            int axis, bool keepdim, tg__backward_fn backward) {
    if (!tg__check_float(op, x)) return NULL;
    reduction r;
    if (!plan(op, x, axis, keepdim, &r)) return NULL;
    if ((kind == R_MAX || kind == R_LSE) && r.n == 0)
        return tg__fail("%s: reducing an empty axis of %s", op, tg__shp(x));
    tg_tensor *y = tg__tape_tensor(x->dtype, r.out_ndim, r.out_shape);
    if (!y) return NULL;
    int64_t *best = NULL;
    bool rec = tg__should_record(1, &x);
    /* extra = keep shape, then (max only) the argmax indices. */
    int64_t *extra = NULL;
    if (rec) {
        size_t m = TG_MAX_DIMS + (kind == R_MAX ? (size_t)(r.outer * r.inner) : 0);
        extra = tg__arena_alloc(m * sizeof *extra);
        if (!extra) return NULL;
        memcpy(extra, r.keep_shape, sizeof r.keep_shape);
        if (kind == R_MAX) best = extra + TG_MAX_DIMS;
    }
    run(kind, &r, x, y->data, best);
    if (mean) {
        tg_tensor *t = y;
        double inv = 1.0 / (double)r.n;
        for (int64_t i = 0; i < t->numel; i++) tg__set(t, i, tg__get(t, i) * inv);
    }
    tg__node *n = tg__record(name, y, 1, &x, backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) {
        n->extra = extra;
        n->d[0] = 1.0 / (double)r.n;
        n->i[0] = r.outer;
        n->i[1] = r.n;
        n->i[2] = r.inner;
    }
    return y;
}

tg_tensor *tg_sum(tg_tensor *x, int axis, bool keepdim) {
    return reduce_op("tg_sum", "sum", R_SUM, false, x, axis, keepdim, sum_backward);
}
tg_tensor *tg_mean(tg_tensor *x, int axis, bool keepdim) {
    return reduce_op("tg_mean", "mean", R_SUM, true, x, axis, keepdim, mean_backward);
}
tg_tensor *tg_max(tg_tensor *x, int axis, bool keepdim) {
    return reduce_op("tg_max", "max", R_MAX, false, x, axis, keepdim, max_backward);
}
tg_tensor *tg_logsumexp(tg_tensor *x, int axis, bool keepdim) {
    return reduce_op("tg_logsumexp", "logsumexp", R_LSE, false, x, axis, keepdim, lse_backward);
}

tg_tensor *tg_argmax(tg_tensor *x, int axis) {
    if (!tg__check_float("tg_argmax", x)) return NULL;
    reduction r;
    if (!plan("tg_argmax", x, axis, false, &r)) return NULL;
    if (r.n == 0) return tg__fail("tg_argmax: reducing an empty axis of %s", tg__shp(x));
    tg_tensor *y = tg__tape_tensor(TG_I64, r.out_ndim, r.out_shape);
    if (!y) return NULL;
    run(R_ARGMAX, &r, x, NULL, y->data);
    return y;
}
