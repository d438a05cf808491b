/* reduce.c — sum, mean, max, min, var, logsumexp, argmax over one axis or all of them.
 *
 * The one reduction helper views the input as [outer, n, inner] where n is the
 * reduced axis (TG_ALL: [1, numel, 1]); the output is [outer, inner]. */
#include <math.h>
#include <string.h>

#include "ops_internal.h"

typedef struct {
    int64_t outer, n, inner;
    int out_ndim;
    int64_t out_shape[TG_MAX_DIMS];
    int64_t keep_shape[TG_MAX_DIMS]; /* x's shape with the reduced axes set to 1 */
} reduction;

/* Resolves axis/keepdim into the [outer, n, inner] view and the output shapes. */
static bool plan(const char *op, const tg_tensor *x, int axis, bool keepdim, reduction *r) {
    for (int i = 0; i < x->ndim; i++)
        r->keep_shape[i] = x->shape[i];
    if (axis == TG_ALL) {
        r->outer = 1;
        r->n = x->numel;
        r->inner = 1;
        for (int i = 0; i < x->ndim; i++)
            r->keep_shape[i] = 1;
        r->out_ndim = keepdim ? x->ndim : 0;
        for (int i = 0; i < r->out_ndim; i++)
            r->out_shape[i] = 1;
        return true;
    }
    if (!tg__norm_axis(op, x, &axis)) return false;
    r->outer = 1;
    r->inner = 1;
    for (int i = 0; i < axis; i++)
        r->outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++)
        r->inner *= x->shape[i];
    r->n = x->shape[axis];
    r->keep_shape[axis] = 1;
    r->out_ndim = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i == axis && !keepdim) continue;
        r->out_shape[r->out_ndim++] = i == axis ? 1 : x->shape[i];
    }
    return true;
}

typedef enum { R_SUM, R_MAX, R_MIN, R_VAR, R_LSE, R_ARGMAX } rkind;

/* The one place logsumexp, softmax and the fused cross-entropy compute their shift:
 * over the strided row p[0], p[s], ..., p[(n-1)s] (n >= 1), sets *m to its maximum, or
 * to 0 when that is not finite (a row of infinities or with a leading NaN then gives
 * inf or NaN, not inf - inf), and returns sum_j e^(p[js] - *m). Then
 * logsumexp = *m + log(sum) and softmax_j = e^(p[js] - *m) / sum. */
#define EXPSUM(NAME, T, F)                                                                         \
    static double NAME(const T *p, int64_t n, int64_t s, T *m_out) {                               \
        T m = p[0];                                                                                \
        for (int64_t j = 1; j < n; j++)                                                            \
            if (p[j * s] > m) m = p[j * s];                                                        \
        if (!isfinite(m)) m = 0;                                                                   \
        double sum = 0;                                                                            \
        for (int64_t j = 0; j < n; j++)                                                            \
            sum += exp##F(p[j * s] - m);                                                           \
        *m_out = m;                                                                                \
        return sum;                                                                                \
    }
EXPSUM(expsum_f32, float, f)
EXPSUM(expsum_f64, double, )

/* y[o, k] = reduce_j x[o, j, k]; for R_MAX/R_MIN/R_ARGMAX idx (may be NULL) gets the
 * first maximal (minimal) j. NaN wins a max or a min. Sums accumulate in double; R_VAR
 * is the sum of squared deviations from the mean (two passes), scaled by the caller. */
#define REDUCE_KERNEL(NAME, T, EXPSUM_T)                                                           \
    static void NAME(rkind kind, const reduction *r, const T *x, T *y, int64_t *idx) {             \
        for (int64_t o = 0; o < r->outer; o++)                                                     \
            for (int64_t k = 0; k < r->inner; k++) {                                               \
                const T *p = x + o * r->n * r->inner + k;                                          \
                int64_t s = r->inner, best = 0;                                                    \
                double acc = 0;                                                                    \
                if (kind == R_SUM) {                                                               \
                    for (int64_t j = 0; j < r->n; j++)                                             \
                        acc += p[j * s];                                                           \
                } else if (kind == R_VAR) {                                                        \
                    double mean = 0;                                                               \
                    for (int64_t j = 0; j < r->n; j++)                                             \
                        mean += p[j * s];                                                          \
                    mean /= (double)r->n;                                                          \
                    for (int64_t j = 0; j < r->n; j++) {                                           \
                        double d = p[j * s] - mean;                                                \
                        acc += d * d;                                                              \
                    }                                                                              \
                } else if (kind == R_LSE) {                                                        \
                    T m;                                                                           \
                    double e = EXPSUM_T(p, r->n, s, &m);                                           \
                    acc = m + log(e);                                                              \
                } else {                                                                           \
                    T m = p[0];                                                                    \
                    bool lt = kind == R_MIN;                                                       \
                    for (int64_t j = 1; j < r->n && m == m; j++) {                                 \
                        T v = p[j * s];                                                            \
                        if ((lt ? v < m : v > m) || v != v) m = v, best = j;                       \
                    }                                                                              \
                    acc = m;                                                                       \
                }                                                                                  \
                if (y) y[o * r->inner + k] = (T)acc;                                               \
                if (idx) idx[o * r->inner + k] = best;                                             \
            }                                                                                      \
    }
REDUCE_KERNEL(reduce_f32, float, expsum_f32)
REDUCE_KERNEL(reduce_f64, double, expsum_f64)

/* Max (CMP >) or min (CMP <) along an axis that is not the last (inner > 1): the axis is
 * walked outermost and the contiguous inner positions innermost, with the comparison as
 * a select, so the loop vectorises (the max pool reduces over its window this way).
 * Same rule as the general kernel: the first maximal (minimal) element wins, and the
 * first NaN wins and stays. */
#define MAX_INNER_KERNEL(NAME, T, CMP)                                                             \
    static void NAME(const reduction *r, const T *x, T *y, int64_t *idx) {                         \
        const int64_t inner = r->inner;                                                            \
        for (int64_t o = 0; o < r->outer; o++) {                                                   \
            const T *p = x + o * r->n * inner;                                                     \
            T *m = y + o * inner;                                                                  \
            int64_t *b = idx ? idx + o * inner : NULL;                                             \
            memcpy(m, p, (size_t)inner * sizeof(T));                                               \
            if (b) memset(b, 0, (size_t)inner * sizeof *b);                                        \
            for (int64_t j = 1; j < r->n; j++) {                                                   \
                const T *q = p + j * inner;                                                        \
                if (b) {                                                                           \
                    /* the index select as mask arithmetic: a form the compiler vectorises */      \
                    for (int64_t k = 0; k < inner; k++) {                                          \
                        T v = q[k], c = m[k];                                                      \
                        int take = (v CMP c) | ((v != v) & (c == c));                              \
                        int64_t t = -(int64_t)take;                                                \
                        m[k] = take ? v : c;                                                       \
                        b[k] = (b[k] & ~t) | (j & t);                                              \
                    }                                                                              \
                } else {                                                                           \
                    for (int64_t k = 0; k < inner; k++) {                                          \
                        T v = q[k], c = m[k];                                                      \
                        int take = (v CMP c) | ((v != v) & (c == c));                              \
                        m[k] = take ? v : c;                                                       \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
MAX_INNER_KERNEL(max_inner_f32, float, >)
MAX_INNER_KERNEL(max_inner_f64, double, >)
MAX_INNER_KERNEL(min_inner_f32, float, <)
MAX_INNER_KERNEL(min_inner_f64, double, <)

static void run(rkind kind, const reduction *r, const tg_tensor *x, void *y, int64_t *idx) {
    /* An empty result has nothing to compute (the loops would still count through
     * outer, which an empty shape such as [2^31, 0] makes large). */
    if (r->outer == 0 || r->inner == 0) return;
    if ((kind == R_MAX || kind == R_MIN) && r->inner > 1 && r->n > 0) {
        bool f64 = x->dtype == TG_F64;
        if (kind == R_MAX)
            f64 ? max_inner_f64(r, x->data, y, idx) : max_inner_f32(r, x->data, y, idx);
        else
            f64 ? min_inner_f64(r, x->data, y, idx) : min_inner_f32(r, x->data, y, idx);
        return;
    }
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

/* max and min: the gradient goes to the first maximal (minimal) element only: g times a
 * constant one-hot mask built from the indices saved by the forward pass. */
static int max_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[0];
    const int64_t *best = (const int64_t *)n->extra + TG_MAX_DIMS;
    int64_t outer = n->i[0], len = n->i[1], inner = n->i[2];
    tg_tensor *mask = tg__tape_zeros(x->dtype, x->ndim, x->shape);
    if (!mask) return -1;
    for (int64_t o = 0; o < outer && x->numel > 0; o++)
        for (int64_t k = 0; k < inner; k++)
            tg__set(mask, (o * len + best[o * inner + k]) * inner + k, 1.0);
    return (gin[0] = tg_mul(expand_grad(n, g), tg__derived_constant(mask, 1, n->in))) ? 0 : -1;
}

/* d var / dx = 2 (x - mean x) scale, scale = 1 / max(0, n - correction) */
static int var_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[0];
    tg_tensor *dev = tg_sub(x, tg_mean(x, (int)n->i[3], true));
    return (gin[0] = tg_mul(expand_grad(n, g), tg_mul_scalar(dev, 2.0 * n->d[0]))) ? 0 : -1;
}

/* d lse / dx = exp(x - lse) = softmax(x) */
static int lse_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[0];
    const int64_t *keep = n->extra;
    tg_tensor *y = tg_reshape(n->out, x->ndim, keep);
    return (gin[0] = tg_mul(expand_grad(n, g), tg_exp(tg_sub(x, y)))) ? 0 : -1;
}

/* The one reduction op: plan, allocate, run the kernel, scale, record. mean scales the
 * sum by 1/n; R_VAR scales by 1/max(0, n - correction) (correction is unused otherwise). */
static tg_tensor *reduce_op(const char *op, const char *name, rkind kind, bool mean, int correction,
                            tg_tensor *x, int axis, bool keepdim, tg__backward_fn backward) {
    if (!tg__check_float(op, x)) return NULL;
    reduction r;
    if (!plan(op, x, axis, keepdim, &r)) return NULL;
    if ((kind == R_MAX || kind == R_MIN || kind == R_LSE) && r.n == 0)
        return tg__fail("%s: reducing an empty axis of %s", op, tg__shp(x));
    tg_tensor *y = tg__tape_tensor(x->dtype, r.out_ndim, r.out_shape);
    if (!y) return NULL;
    int64_t *best = NULL;
    bool rec = tg__should_record(1, &x);
    /* extra = keep shape, then (max only) the argmax indices. */
    int64_t *extra = NULL;
    if (rec) {
        bool arg = kind == R_MAX || kind == R_MIN;
        size_t m = TG_MAX_DIMS + (arg ? (size_t)(r.outer * r.inner) : 0);
        extra = tg__arena_alloc(m * sizeof *extra);
        if (!extra) return NULL;
        memcpy(extra, r.keep_shape, sizeof r.keep_shape);
        if (arg) best = extra + TG_MAX_DIMS;
    }
    run(kind, &r, x, y->data, best);
    int64_t dof = r.n - (kind == R_VAR ? correction : 0);
    double scale = 1.0 / (double)(dof > 0 ? dof : 0);
    if (mean || kind == R_VAR)
        for (int64_t i = 0; i < y->numel; i++)
            tg__set(y, i, tg__get(y, i) * scale);
    tg__node *n = tg__record(name, y, 1, &x, backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) {
        n->extra = extra;
        n->d[0] = scale;
        n->i[0] = r.outer;
        n->i[1] = r.n;
        n->i[2] = r.inner;
        n->i[3] = axis;
    }
    return y;
}

tg_tensor *tg_sum(tg_tensor *x, int axis, bool keepdim) {
    return reduce_op("tg_sum", "sum", R_SUM, false, 0, x, axis, keepdim, sum_backward);
}
tg_tensor *tg_mean(tg_tensor *x, int axis, bool keepdim) {
    return reduce_op("tg_mean", "mean", R_SUM, true, 0, x, axis, keepdim, mean_backward);
}
tg_tensor *tg_max(tg_tensor *x, int axis, bool keepdim) {
    return reduce_op("tg_max", "max", R_MAX, false, 0, x, axis, keepdim, max_backward);
}
tg_tensor *tg_min(tg_tensor *x, int axis, bool keepdim) {
    return reduce_op("tg_min", "min", R_MIN, false, 0, x, axis, keepdim, max_backward);
}
tg_tensor *tg_logsumexp(tg_tensor *x, int axis, bool keepdim) {
    return reduce_op("tg_logsumexp", "logsumexp", R_LSE, false, 0, x, axis, keepdim, lse_backward);
}

static tg_tensor *var_op(const char *op, tg_tensor *x, int axis, bool keepdim, int correction) {
    if (!tg__check_float(op, x)) return NULL;
    if (correction < 0)
        return tg__fail("%s: correction must be >= 0, got %d (x %s)", op, correction, tg__shp(x));
    return reduce_op(op, "var", R_VAR, false, correction, x, axis, keepdim, var_backward);
}
tg_tensor *tg_var(tg_tensor *x, int axis, bool keepdim, int correction) {
    return var_op("tg_var", x, axis, keepdim, correction);
}
tg_tensor *tg_std(tg_tensor *x, int axis, bool keepdim, int correction) {
    return tg_sqrt(var_op("tg_std", x, axis, keepdim, correction));
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

/* ================= softmax, log_softmax, softmax cross-entropy ================= */

/* Along the reduced axis of each (o, k): m = max, s = sum e^(x - m), then
 *   softmax:     y_j = e^(x_j - m) / s
 *   log_softmax: y_j = x_j - m - log s
 * A row whose maximum is not finite uses m = 0, as logsumexp does. */
#define SOFTMAX_KERNEL(NAME, T, F, EXPSUM_T)                                                       \
    static void NAME(bool log_form, const reduction *r, const T *x, T *y) {                        \
        for (int64_t o = 0; o < r->outer; o++)                                                     \
            for (int64_t k = 0; k < r->inner; k++) {                                               \
                int64_t base = o * r->n * r->inner + k, s = r->inner;                              \
                const T *p = x + base;                                                             \
                T *q = y + base;                                                                   \
                T m;                                                                               \
                double sum = EXPSUM_T(p, r->n, s, &m);                                             \
                if (log_form) {                                                                    \
                    T c = (T)(m + log(sum));                                                       \
                    for (int64_t j = 0; j < r->n; j++)                                             \
                        q[j * s] = p[j * s] - c;                                                   \
                } else {                                                                           \
                    T inv = (T)(1.0 / sum);                                                        \
                    for (int64_t j = 0; j < r->n; j++)                                             \
                        q[j * s] = exp##F(p[j * s] - m) * inv;                                     \
                }                                                                                  \
            }                                                                                      \
    }
SOFTMAX_KERNEL(softmax_f32, float, f, expsum_f32)
SOFTMAX_KERNEL(softmax_f64, double, , expsum_f64)

/* The gradient of an empty softmax or log_softmax is g itself (empty too). The formulas
 * below would first build their sum over the empty axis, which for x [2^31, 0] is a
 * [2^31, 1] tensor of zeros: 16 GiB for nothing. */
static bool empty_softmax_grad(tg_tensor *g, tg_tensor **gin) {
    if (g->numel > 0) return false;
    gin[0] = g;
    return true;
}

/* d softmax: gin = y * (g - sum(g * y)) */
static int softmax_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    if (empty_softmax_grad(g, gin)) return 0;
    int axis = (int)n->i[0];
    tg_tensor *y = n->out;
    return (gin[0] = tg_mul(y, tg_sub(g, tg_sum(tg_mul(g, y), axis, true)))) ? 0 : -1;
}

/* d log_softmax: gin = g - e^y * sum(g) */
static int log_softmax_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    if (empty_softmax_grad(g, gin)) return 0;
    int axis = (int)n->i[0];
    return (gin[0] = tg_sub(g, tg_mul(tg_exp(n->out), tg_sum(g, axis, true)))) ? 0 : -1;
}

static tg_tensor *softmax_op(const char *op, bool log_form, tg_tensor *x, int axis) {
    if (!tg__check_float(op, x)) return NULL;
    if (axis == TG_ALL) return tg__fail("%s: needs one axis, not TG_ALL (%s)", op, tg__shp(x));
    reduction r;
    if (!plan(op, x, axis, true, &r)) return NULL;
    if (axis < 0) axis += x->ndim;
    tg_tensor *y = tg__tape_tensor(x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    if (y->numel > 0) { /* an empty x's loops could still count through a huge outer */
        if (x->dtype == TG_F64)
            softmax_f64(log_form, &r, x->data, y->data);
        else
            softmax_f32(log_form, &r, x->data, y->data);
    }
    tg__node *n = tg__record(log_form ? "log_softmax" : "softmax", y, 1, &x,
                             log_form ? log_softmax_backward : softmax_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) n->i[0] = axis;
    return y;
}

tg_tensor *tg_softmax(tg_tensor *x, int axis) { return softmax_op("tg_softmax", false, x, axis); }
tg_tensor *tg_log_softmax(tg_tensor *x, int axis) {
    return softmax_op("tg_log_softmax", true, x, axis);
}

/* loss = (1/N) sum_i [ logsumexp(x_i) - x_i[y_i] ] in one pass per row. */
#define XENT_KERNEL(NAME, T, EXPSUM_T)                                                             \
    static double NAME(int64_t rows, int64_t c, const T *x, const int64_t *y) {                    \
        double total = 0;                                                                          \
        for (int64_t i = 0; i < rows; i++) {                                                       \
            const T *p = x + i * c;                                                                \
            T m;                                                                                   \
            double sum = EXPSUM_T(p, c, 1, &m);                                                    \
            total += (double)m + log(sum) - (double)p[y[i]];                                       \
        }                                                                                          \
        return total / (double)rows;                                                               \
    }
XENT_KERNEL(xent_f32, float, expsum_f32)
XENT_KERNEL(xent_f64, double, expsum_f64)

/* d loss / d x = g (softmax(x) - onehot(y)) / N. The one-hot matrix is a constant. */
static int xent_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[0];
    const tg_tensor *labels = n->aux[0];
    int64_t rows = x->shape[0], c = x->shape[1];
    tg_tensor *onehot = tg__tape_zeros(x->dtype, x->ndim, x->shape);
    if (!onehot) return -1;
    const int64_t *y = labels->data;
    for (int64_t i = 0; i < rows; i++)
        tg__set(onehot, i * c + y[i], 1.0);
    tg_tensor *scale = tg_mul_scalar(g, 1.0 / (double)rows);
    return (gin[0] = tg_mul(tg_sub(tg_softmax(x, 1), onehot), scale)) ? 0 : -1;
}

bool tg__check_class_inputs(const char *op, const char *what, const tg_tensor *scores,
                            const tg_tensor *labels) {
    if (!tg__check_float(op, scores) || !tg__check_nonnull(op, labels)) return false;
    if (scores->ndim != 2 || scores->shape[0] < 1 || scores->shape[1] < 1) {
        tg__fail("%s: %s must be [N, C] with N >= 1 and C >= 1, got %s", op, what, tg__shp(scores));
        return false;
    }
    if (labels->dtype != TG_I64) {
        tg__fail("%s: labels must be i64, got %s %s (for %s %s)", op, tg_dtype_name(labels->dtype),
                 tg__shp(labels), what, tg__shp(scores));
        return false;
    }
    if (labels->ndim != 1 || labels->shape[0] != scores->shape[0]) {
        tg__fail("%s: labels i64 %s do not match %s %s (want i64 [%lld])", op, tg__shp(labels),
                 what, tg__shp(scores), (long long)scores->shape[0]);
        return false;
    }
    const int64_t *y = labels->data;
    int64_t c = scores->shape[1];
    for (int64_t i = 0; i < labels->numel; i++)
        if (y[i] < 0 || y[i] >= c) {
            tg__fail("%s: label %lld out of range for %lld classes at row %lld", op,
                     (long long)y[i], (long long)c, (long long)i);
            return false;
        }
    return true;
}

tg_tensor *tg__softmax_cross_entropy(const char *op, tg_tensor *logits, const tg_tensor *labels) {
    if (!tg__check_class_inputs(op, "logits", logits, labels)) return NULL;
    int64_t rows = logits->shape[0], c = logits->shape[1];
    const int64_t *y = labels->data;
    tg_tensor *out = tg__tape_tensor(logits->dtype, 0, NULL);
    if (!out) return NULL;
    double v = logits->dtype == TG_F64 ? xent_f64(rows, c, logits->data, y)
                                       : xent_f32(rows, c, logits->data, y);
    tg__set(out, 0, v);
    tg__node *n = tg__record("softmax_cross_entropy", out, 1, &logits, xent_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) n->aux[0] = labels;
    return out;
}

tg_tensor *tg_softmax_cross_entropy(tg_tensor *logits, const tg_tensor *labels) {
    return tg__softmax_cross_entropy("tg_softmax_cross_entropy", logits, labels);
}
