/* conv.c — 2-D convolution and pooling, all built on one primitive: unfold (im2col).
 *
 *     unfold:      x [N, C, H, W] -> cols [N, C*kh*kw, OH*OW]
 *                  cols[n][c*kh*kw + i*kw + j][oh*OW + ow] = x[n][c][oh*s - p + i][ow*s - p + j]
 *                  (the pad value where that position falls outside x)
 *     fold:        its adjoint (col2im): each column entry is added back to the input
 *                  position it was read from; entries read from the padding are dropped.
 *
 * The backward of unfold is fold and the backward of fold is unfold, so the pair is
 * differentiable any number of times. Convolution is a matmul with the unfolded input
 * and pooling a max or mean over the unfolded window; neither has a backward of its
 * own: the tape differentiates the composition. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "ops_internal.h"

/* The geometry shared by unfold and fold: x [n, c, h, w], a kh x kw window moved by
 * stride over x padded by pad on every side, giving oh x ow windows. */
typedef struct {
    int64_t n, c, h, w;
    int64_t kh, kw, stride, pad;
    int64_t oh, ow;
} geom;

/* ---- kernels: plain loops over contiguous row-major memory, no allocation ---- */

/* The output columns q of one row whose input column q*stride - pad + j lies inside
 * the image: [*lo, *hi). Outside it the row reads padding. */
static void valid_cols(const geom *g, int64_t j, int64_t *lo, int64_t *hi) {
    int64_t a = g->pad - j; /* q * stride >= a */
    int64_t l = a <= 0 ? 0 : (a + g->stride - 1) / g->stride;
    int64_t b = g->w - 1 + g->pad - j; /* q * stride <= b */
    int64_t h = b < 0 ? 0 : b / g->stride + 1;
    if (h > g->ow) h = g->ow;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* cols[n][(c*kh + i)*kw + j][oh*OW + ow] = x[n][c][oh*s - p + i][ow*s - p + j], or padval
 * where the row or column falls outside x. */
#define UNFOLD_KERNEL(NAME, T)                                                                     \
    static void NAME(const geom *g, T padval, const T *x, T *cols) {                               \
        const int64_t L = g->oh * g->ow;                                                           \
        for (int64_t nc = 0; nc < g->n * g->c; nc++) {                                             \
            const T *xp = x + nc * g->h * g->w;                                                    \
            for (int64_t i = 0; i < g->kh; i++)                                                    \
                for (int64_t j = 0; j < g->kw; j++) {                                              \
                    T *row = cols + (nc * g->kh * g->kw + i * g->kw + j) * L;                      \
                    int64_t lo, hi;                                                                \
                    valid_cols(g, j, &lo, &hi);                                                    \
                    for (int64_t r = 0; r < g->oh; r++) {                                          \
                        int64_t hh = r * g->stride - g->pad + i;                                   \
                        T *out = row + r * g->ow;                                                  \
                        if (hh < 0 || hh >= g->h) {                                                \
                            for (int64_t q = 0; q < g->ow; q++)                                    \
                                out[q] = padval;                                                   \
                            continue;                                                              \
                        }                                                                          \
                        const T *in = xp + hh * g->w;                                              \
                        const int64_t off = j - g->pad; /* input column of q = q * stride + off */ \
                        for (int64_t q = 0; q < lo; q++)                                           \
                            out[q] = padval;                                                       \
                        if (g->stride == 1 && hi > lo)                                             \
                            memcpy(out + lo, in + lo + off, (size_t)(hi - lo) * sizeof(T));        \
                        else                                                                       \
                            for (int64_t q = lo; q < hi; q++)                                      \
                                out[q] = in[q * g->stride + off];                                  \
                        for (int64_t q = hi; q < g->ow; q++)                                       \
                            out[q] = padval;                                                       \
                    }                                                                              \
                }                                                                                  \
        }                                                                                          \
    }
UNFOLD_KERNEL(unfold_f32, float)
UNFOLD_KERNEL(unfold_f64, double)

/* x[n][c][oh*s - p + i][ow*s - p + j] += cols[n][(c*kh + i)*kw + j][oh*OW + ow]
 * for every position inside x. */
#define FOLD_KERNEL(NAME, T)                                                                       \
    static void NAME(const geom *g, const T *cols, T *x) {                                         \
        const int64_t L = g->oh * g->ow;                                                           \
        for (int64_t nc = 0; nc < g->n * g->c; nc++) {                                             \
            T *xp = x + nc * g->h * g->w;                                                          \
            for (int64_t i = 0; i < g->kh; i++)                                                    \
                for (int64_t j = 0; j < g->kw; j++) {                                              \
                    const T *row = cols + (nc * g->kh * g->kw + i * g->kw + j) * L;                \
                    int64_t lo, hi;                                                                \
                    valid_cols(g, j, &lo, &hi);                                                    \
                    for (int64_t r = 0; r < g->oh; r++) {                                          \
                        int64_t hh = r * g->stride - g->pad + i;                                   \
                        if (hh < 0 || hh >= g->h) continue;                                        \
                        const T *in = row + r * g->ow;                                             \
                        T *out = xp + hh * g->w;                                                   \
                        const int64_t off = j - g->pad;                                            \
                        if (g->stride == 1)                                                        \
                            for (int64_t q = lo; q < hi; q++)                                      \
                                out[q + off] += in[q];                                             \
                        else                                                                       \
                            for (int64_t q = lo; q < hi; q++)                                      \
                                out[q * g->stride + off] += in[q];                                 \
                    }                                                                              \
                }                                                                                  \
        }                                                                                          \
    }
FOLD_KERNEL(fold_f32, float)
FOLD_KERNEL(fold_f64, double)

/* ---- checks ---- */

/* Fills g from an input shape [N, C, H, W] and the window; false with an error naming
 * op on a shape that is not 4-D, kernel or stride < 1, padding < 0, or a window larger
 * than the padded input. */
static bool plan(const char *op, int ndim, const int64_t *shape, int kh, int kw, int stride,
                 int padding, geom *g) {
    const char *xs = tg__shp_raw(ndim, shape);
    if (ndim != 4) return tg__fail("%s: input must be 4-D [N, C, H, W], got %s", op, xs), false;
    if (kh < 1 || kw < 1 || stride < 1 || padding < 0)
        return tg__fail("%s: needs kernel >= 1, stride >= 1 and padding >= 0, got kernel %dx%d, "
                        "stride %d, padding %d for input %s",
                        op, kh, kw, stride, padding, xs),
               false;
    *g = (geom){.n = shape[0],
                .c = shape[1],
                .h = shape[2],
                .w = shape[3],
                .kh = kh,
                .kw = kw,
                .stride = stride,
                .pad = padding};
    if (g->h + 2 * g->pad < g->kh || g->w + 2 * g->pad < g->kw)
        return tg__fail("%s: kernel %dx%d is larger than input %s padded by %d", op, kh, kw, xs,
                        padding),
               false;
    g->oh = (g->h + 2 * g->pad - g->kh) / g->stride + 1;
    g->ow = (g->w + 2 * g->pad - g->kw) / g->stride + 1;
    /* The unfolded size N * C*kh*kw * OH*OW must fit in int64 (a huge padding). */
    int64_t t;
    if (__builtin_mul_overflow(g->n * g->c, g->kh * g->kw, &t) ||
        __builtin_mul_overflow(t, g->oh, &t) || __builtin_mul_overflow(t, g->ow, &t))
        return tg__fail("%s: kernel %dx%d, stride %d, padding %d over input %s give too many "
                        "windows",
                        op, kh, kw, stride, padding, xs),
               false;
    return true;
}

/* ---- unfold and fold, each the other's backward ---- */

static tg_tensor *unfold_op(const char *op, tg_tensor *x, int kh, int kw, int stride, int padding,
                            double padval);
static tg_tensor *fold_op(tg_tensor *cols, const int64_t *xshape, int kh, int kw, int stride,
                          int padding);

/* node: i[0..3] = kh, kw, stride, padding for both. */
static int unfold_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    gin[0] = fold_op(g, n->in[0]->shape, (int)n->i[0], (int)n->i[1], (int)n->i[2], (int)n->i[3]);
    return gin[0] ? 0 : -1;
}

static int fold_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    gin[0] = unfold_op("tg_unfold", g, (int)n->i[0], (int)n->i[1], (int)n->i[2], (int)n->i[3], 0.0);
    return gin[0] ? 0 : -1;
}

static void set_window(tg__node *n, int kh, int kw, int stride, int padding) {
    n->i[0] = kh;
    n->i[1] = kw;
    n->i[2] = stride;
    n->i[3] = padding;
}

/* unfold with positions outside x reading padval (0 for tg_unfold and convolution,
 * -inf for max pooling); errors name op. */
static tg_tensor *unfold_op(const char *op, tg_tensor *x, int kh, int kw, int stride, int padding,
                            double padval) {
    if (!tg__check_float(op, x)) return NULL;
    geom g;
    if (!plan(op, x->ndim, x->shape, kh, kw, stride, padding, &g)) return NULL;
    tg_tensor *y =
        tg__tape_tensor(x->dtype, 3, (const int64_t[]){g.n, g.c * g.kh * g.kw, g.oh * g.ow});
    if (!y) return NULL;
    if (x->dtype == TG_F64)
        unfold_f64(&g, padval, x->data, y->data);
    else
        unfold_f32(&g, (float)padval, x->data, y->data);
    tg__node *n = tg__record("unfold", y, 1, &x, unfold_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) set_window(n, kh, kw, stride, padding);
    return y;
}

/* The adjoint of unfold: cols [N, C*kh*kw, OH*OW] summed back into [N, C, H, W]
 * (xshape). Only reached from unfold's backward, with the shapes unfold produced; the
 * check guards that invariant rather than user input. */
static tg_tensor *fold_op(tg_tensor *cols, const int64_t *xshape, int kh, int kw, int stride,
                          int padding) {
    if (!tg__check_float("tg_unfold", cols)) return NULL;
    geom g;
    if (!plan("tg_unfold", 4, xshape, kh, kw, stride, padding, &g)) return NULL;
    if (cols->ndim != 3 || cols->shape[0] != g.n || cols->shape[1] != g.c * g.kh * g.kw ||
        cols->shape[2] != g.oh * g.ow)
        return tg__fail("tg_unfold: gradient %s does not match the unfolded shape of %s",
                        tg__shp(cols), tg__shp_raw(4, xshape));
    tg_tensor *y = tg__tape_zeros(cols->dtype, 4, xshape);
    if (!y) return NULL;
    if (cols->dtype == TG_F64)
        fold_f64(&g, cols->data, y->data);
    else
        fold_f32(&g, cols->data, y->data);
    tg__node *n = tg__record("fold", y, 1, &cols, fold_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) set_window(n, kh, kw, stride, padding);
    return y;
}

tg_tensor *tg_unfold(tg_tensor *x, int kh, int kw, int stride, int padding) {
    return unfold_op("tg_unfold", x, kh, kw, stride, padding, 0.0);
}

/* ---- convolution ---- */

tg_tensor *tg_conv2d(tg_tensor *x, tg_tensor *w, int stride, int padding) {
    const char *op = "tg_conv2d";
    if (!tg__check_float2(op, x, w)) return NULL;
    if (x->ndim != 4 || w->ndim != 4)
        return tg__fail("%s: needs input [N, C, H, W] and weight [O, C, kh, kw], got %s and %s", op,
                        tg__shp(x), tg__shp(w));
    if (x->shape[1] != w->shape[1])
        return tg__fail("%s: input %s has %lld channels but weight %s expects %lld", op, tg__shp(x),
                        (long long)x->shape[1], tg__shp(w), (long long)w->shape[1]);
    if (w->shape[2] > INT_MAX || w->shape[3] > INT_MAX)
        return tg__fail("%s: kernel of weight %s is too large", op, tg__shp(w));
    int kh = (int)w->shape[2], kw = (int)w->shape[3];
    geom g;
    if (!plan(op, x->ndim, x->shape, kh, kw, stride, padding, &g)) return NULL;
    int64_t o = w->shape[0];
    /* [O, C*kh*kw] @ [N, C*kh*kw, L] -> [N, O, L]: the weight broadcasts over the batch. */
    tg_tensor *w2 = tg_reshape(w, 2, (const int64_t[]){o, g.c * g.kh * g.kw});
    tg_tensor *cols = unfold_op(op, x, kh, kw, stride, padding, 0.0);
    tg_tensor *y = tg_matmul(w2, cols);
    if (!y) return NULL;
    return tg_reshape(y, 4, (const int64_t[]){g.n, o, g.oh, g.ow});
}

/* ---- pooling ---- */

/* Each channel pooled on its own: [N*C, 1, H, W] unfolded to [N*C, k*k, L], reduced over
 * the window axis, reshaped to [N, C, OH, OW]. */
static tg_tensor *pool(const char *op, bool is_max, tg_tensor *x, int k, int stride, int padding) {
    if (!tg__check_float(op, x)) return NULL;
    geom g;
    if (!plan(op, x->ndim, x->shape, k, k, stride, padding, &g)) return NULL;
    if (padding > k / 2)
        return tg__fail("%s: padding %d must be at most half the kernel size %d (input %s)", op,
                        padding, k, tg__shp(x));
    tg_tensor *x1 = tg_reshape(x, 4, (const int64_t[]){g.n * g.c, 1, g.h, g.w});
    tg_tensor *cols = unfold_op(op, x1, k, k, stride, padding, is_max ? -INFINITY : 0.0);
    tg_tensor *r = is_max ? tg_max(cols, 1, false) : tg_mean(cols, 1, false);
    if (!r) return NULL;
    return tg_reshape(r, 4, (const int64_t[]){g.n, g.c, g.oh, g.ow});
}

tg_tensor *tg_max_pool2d(tg_tensor *x, int k, int stride, int padding) {
    return pool("tg_max_pool2d", true, x, k, stride, padding);
}

tg_tensor *tg_avg_pool2d(tg_tensor *x, int k, int stride, int padding) {
    return pool("tg_avg_pool2d", false, x, k, stride, padding);
}
