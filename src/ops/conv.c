/* conv.c — 2-D convolution and pooling, all built on one primitive: unfold (im2col).
 *
 *     unfold:      x [N, C, H, W] -> cols [N, C*kh*kw, OH*OW]
 *                  cols[n][c*kh*kw + i*kw + j][oh*OW + ow] = x[n][c][oh*s - p + i][ow*s - p + j]
 *                  (the pad value where that position falls outside x)
 *     fold:        its adjoint (col2im): each column entry is added back to the input
 *                  position it was read from; entries read from the padding are dropped.
 *
 * The backward of unfold is fold and the backward of fold is unfold, so the pair is
 * differentiable any number of times. Convolution is a matmul with the unfolded input,
 * recorded as one op whose input gradient folds image by image (below); average pooling
 * is a mean over the unfolded window, with no backward of its own: the tape
 * differentiates the composition. Max pooling is an op of its own: it
 * reads the windows of x in place and keeps the argmax, and its gradient is a pair of
 * ops (scatter by the argmax, whose adjoint is the gather), so it too is differentiable
 * any number of times without an unfolded copy or a one-hot mask. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "ops_internal.h"

/* The geometry shared by unfold and fold: x [n, c, h, w], a kh x kw window moved by
 * stride over x padded by pad on every side, giving oh x ow windows. */
enum { GEOM_COLS = 16 };
typedef struct {
    int64_t n, c, h, w;
    int64_t kh, kw, stride, pad;
    int64_t oh, ow;
    /* valid_cols of the window's first GEOM_COLS columns, worked out once by plan: the
     * kernels ask for them once per row of x or of the output, and they divide */
    int64_t lo[GEOM_COLS], hi[GEOM_COLS];
} geom;

/* ---- kernels: plain loops over contiguous row-major memory, no allocation ---- */

/* The outputs q in [0, n) whose input position q*stride - pad + j lies inside [0, len):
 * [*lo, *hi). Outside it the window reads padding. */
static void inside(int64_t len, int64_t n, int64_t stride, int64_t pad, int64_t j, int64_t *lo,
                   int64_t *hi) {
    int64_t a = pad - j; /* q * stride >= a */
    int64_t l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int64_t b = len - 1 + pad - j; /* q * stride <= b */
    int64_t h = b < 0 ? 0 : b / stride + 1;
    if (h > n) h = n;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* The output columns of one row whose input column is inside x, for window column j. */
static void cols_inside(const geom *g, int64_t j, int64_t *lo, int64_t *hi) {
    inside(g->w, g->ow, g->stride, g->pad, j, lo, hi);
}

static inline void valid_cols(const geom *g, int64_t j, int64_t *lo, int64_t *hi) {
    if (j < GEOM_COLS) {
        *lo = g->lo[j];
        *hi = g->hi[j];
    } else {
        cols_inside(g, j, lo, hi);
    }
}

/* Copies n bytes (a multiple of 4) from in to out, which do not overlap. The rows an
 * unfold copies are short (one output row: often 8 to 32 elements), where a memcpy call
 * costs more than the copy: here every size of at least 8 bytes is a few fixed-size
 * moves, the last one overlapping the one before it rather than a tail loop. */
static inline void copy_row(void *restrict out, const void *restrict in, size_t n) {
    char *o = out;
    const char *i = in;
    if (n >= 32) {
        for (size_t q = 0; q + 32 < n; q += 32)
            memcpy(o + q, i + q, 32);
        memcpy(o + n - 32, i + n - 32, 32);
    } else if (n >= 16) {
        memcpy(o, i, 16);
        memcpy(o + n - 16, i + n - 16, 16);
    } else if (n >= 8) {
        memcpy(o, i, 8);
        memcpy(o + n - 8, i + n - 8, 8);
    } else if (n >= 4) {
        memcpy(o, i, 4);
    }
}

/* cols[n][(c*kh + i)*kw + j][oh*OW + ow] = x[n][c][oh*s - p + i][ow*s - p + j], or padval
 * where the row or column falls outside x. The output rows [rlo, rhi) read a row of x,
 * the others are all padding. */
#define UNFOLD_KERNEL(NAME, T)                                                                     \
    TG__AVX2_CLONES static void NAME(const geom *g, T padval, const T *x, T *cols) {               \
        const int64_t L = g->oh * g->ow, s = g->stride;                                            \
        for (int64_t nc = 0; nc < g->n * g->c; nc++) {                                             \
            const T *xp = x + nc * g->h * g->w;                                                    \
            for (int64_t i = 0; i < g->kh; i++) {                                                  \
                int64_t rlo, rhi;                                                                  \
                inside(g->h, g->oh, s, g->pad, i, &rlo, &rhi);                                     \
                for (int64_t j = 0; j < g->kw; j++) {                                              \
                    T *row = cols + (nc * g->kh * g->kw + i * g->kw + j) * L;                      \
                    int64_t lo, hi;                                                                \
                    valid_cols(g, j, &lo, &hi);                                                    \
                    const int64_t off = j - g->pad; /* input column of q = q * s + off */          \
                    for (int64_t q = 0; q < rlo * g->ow; q++)                                      \
                        row[q] = padval;                                                           \
                    /* the common case: whole rows of x, a block copy; otherwise in is the row     \
                     * of x that output row r reads, padded on either side */                      \
                    if (s == 1 && lo == 0 && hi == g->ow) {                                        \
                        const size_t bytes = (size_t)g->ow * sizeof(T);                            \
                        for (int64_t r = rlo, at = (rlo - g->pad + i) * g->w + off; r < rhi;       \
                             r++, at += g->w)                                                      \
                            copy_row(row + r * g->ow, xp + at, bytes);                             \
                    } else {                                                                       \
                        for (int64_t r = rlo; r < rhi; r++) {                                      \
                            const T *in = xp + (r * s - g->pad + i) * g->w;                        \
                            T *out = row + r * g->ow;                                              \
                            for (int64_t q = 0; q < lo; q++)                                       \
                                out[q] = padval;                                                   \
                            if (s == 1)                                                            \
                                copy_row(out + lo, in + lo + off, (size_t)(hi - lo) * sizeof(T));  \
                            else                                                                   \
                                for (int64_t q = lo; q < hi; q++)                                  \
                                    out[q] = in[q * s + off];                                      \
                            for (int64_t q = hi; q < g->ow; q++)                                   \
                                out[q] = padval;                                                   \
                        }                                                                          \
                    }                                                                              \
                    for (int64_t q = rhi * g->ow; q < L; q++)                                      \
                        row[q] = padval;                                                           \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
UNFOLD_KERNEL(unfold_f32, float)
UNFOLD_KERNEL(unfold_f64, double)

/* out[0..n) += in[0..n) (not overlapping), in fixed-size blocks the compiler turns into
 * vector adds (the rows a fold adds are as short as unfold's). */
#define ADD_ROW_KERNEL(NAME, T)                                                                    \
    static inline void NAME(T *restrict out, const T *restrict in, int64_t n) {                    \
        int64_t q = 0;                                                                             \
        for (; q + 8 <= n; q += 8)                                                                 \
            for (int t = 0; t < 8; t++)                                                            \
                out[q + t] += in[q + t];                                                           \
        if (q + 4 <= n) {                                                                          \
            for (int t = 0; t < 4; t++)                                                            \
                out[q + t] += in[q + t];                                                           \
            q += 4;                                                                                \
        }                                                                                          \
        for (; q < n; q++)                                                                         \
            out[q] += in[q];                                                                       \
    }
ADD_ROW_KERNEL(add_row_f32, float)
ADD_ROW_KERNEL(add_row_f64, double)

/* x[n][c][oh*s - p + i][ow*s - p + j] += cols[n][(c*kh + i)*kw + j][oh*OW + ow]
 * for every position inside x, visiting i, j, oh in that order (so each element of x
 * sums its terms in a fixed order). */
#define FOLD_KERNEL(NAME, T, ADD)                                                                  \
    TG__AVX2_CLONES static void NAME(const geom *g, const T *cols, T *x) {                         \
        const int64_t L = g->oh * g->ow, s = g->stride;                                            \
        for (int64_t nc = 0; nc < g->n * g->c; nc++) {                                             \
            T *xp = x + nc * g->h * g->w;                                                          \
            for (int64_t i = 0; i < g->kh; i++) {                                                  \
                int64_t rlo, rhi;                                                                  \
                inside(g->h, g->oh, s, g->pad, i, &rlo, &rhi);                                     \
                for (int64_t j = 0; j < g->kw; j++) {                                              \
                    const T *row = cols + (nc * g->kh * g->kw + i * g->kw + j) * L;                \
                    int64_t lo, hi;                                                                \
                    valid_cols(g, j, &lo, &hi);                                                    \
                    /* input column of q = q * s + off; rows inside x in the common case */        \
                    const int64_t off = j - g->pad;                                                \
                    if (s == 1 && lo == 0 && hi == g->ow) {                                        \
                        for (int64_t r = rlo, at = (rlo - g->pad + i) * g->w + off; r < rhi;       \
                             r++, at += g->w)                                                      \
                            ADD(xp + at, row + r * g->ow, g->ow);                                  \
                        continue;                                                                  \
                    }                                                                              \
                    for (int64_t r = rlo; r < rhi; r++) {                                          \
                        const T *in = row + r * g->ow;                                             \
                        T *out = xp + (r * s - g->pad + i) * g->w;                                 \
                        if (s == 1)                                                                \
                            ADD(out + lo + off, in + lo, hi - lo);                                 \
                        else                                                                       \
                            for (int64_t q = lo; q < hi; q++)                                      \
                                out[q * s + off] += in[q];                                         \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
FOLD_KERNEL(fold_f32, float, add_row_f32)
FOLD_KERNEL(fold_f64, double, add_row_f64)

/* Unfolds image i of x (g describes all of x) into cols [C*kh*kw, OH*OW], with zero
 * padding; fold_image is its adjoint: image i of dx = 0 + the fold of cols. */
static void unfold_image(const geom *g, const tg_tensor *x, int64_t i, void *cols) {
    geom one = *g;
    one.n = 1;
    int64_t off = i * g->c * g->h * g->w;
    if (x->dtype == TG_F64)
        unfold_f64(&one, 0.0, (const double *)x->data + off, cols);
    else
        unfold_f32(&one, 0.0f, (const float *)x->data + off, cols);
}

static void fold_image(const geom *g, const void *cols, int64_t i, tg_tensor *dx) {
    geom one = *g;
    one.n = 1;
    int64_t xn = g->c * g->h * g->w;
    char *dxi = (char *)dx->data + (size_t)(i * xn) * tg_dtype_size(dx->dtype);
    memset(dxi, 0, (size_t)xn * tg_dtype_size(dx->dtype)); /* just before its fold: in cache */
    if (dx->dtype == TG_F64)
        fold_f64(&one, cols, (double *)dxi);
    else
        fold_f32(&one, cols, (float *)dxi);
}

/* ---- checks ---- */

/* Fills g from an input shape [N, C, H, W] and the window; false with an error naming
 * op on a shape that is not 4-D, kernel or stride < 1, padding < 0, or a window larger
 * than the padded input. */
static bool plan(const char *op, int ndim, const int64_t *shape, int kh, int kw, int stride,
                 int padding, geom *g) {
#define xs tg__shp_raw(ndim, shape) /* formatted only for a message */
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
#undef xs
    for (int64_t j = 0; j < g->kw && j < GEOM_COLS; j++)
        cols_inside(g, j, &g->lo[j], &g->hi[j]);
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

/* ---- convolution ----
 *
 *     conv2d:      y[n] = W2 @ unfold(x)[n] (+ bias[o] on row o)     W2 = w as [O, C*kh*kw]
 *     input grad:  dx[n] = fold(W2^T @ G[n])                          G = dy as [N, O, L]
 *
 * Convolution is one op rather than unfold followed by a matmul so that its backward
 * can give x's gradient without the unfolded [N, C*kh*kw, L] gradient: the input
 * gradient is an op of its own that makes W2^T @ G[n] for one image at a time in a
 * scratch matrix that stays in cache and folds it straight into dx. Its backward is
 * written with convolution and tg__matmul_sum, so the pair is differentiable any
 * number of times. The bias, where the nn layer has one, is written into y before the
 * product (gemm with beta = 1) instead of a zero fill and a separate add. */

/* Checks x [N, C, H, W] and w [O, C, kh, kw] (and bias [O] when not NULL) and fills g;
 * false with an error naming op. */
static bool conv_plan(const char *op, tg_tensor *x, tg_tensor *w, tg_tensor *bias, int stride,
                      int padding, geom *g) {
    if (!tg__check_float2(op, x, w)) return false;
    if (x->ndim != 4 || w->ndim != 4)
        return tg__fail("%s: needs input [N, C, H, W] and weight [O, C, kh, kw], got %s and %s", op,
                        tg__shp(x), tg__shp(w)),
               false;
    if (x->shape[1] != w->shape[1])
        return tg__fail("%s: input %s has %lld channels but weight %s expects %lld", op, tg__shp(x),
                        (long long)x->shape[1], tg__shp(w), (long long)w->shape[1]),
               false;
    if (bias &&
        (!tg__check_float2(op, w, bias) || bias->ndim != 1 || bias->shape[0] != w->shape[0])) {
        if (bias->dtype == w->dtype)
            tg__fail("%s: bias %s does not match the %lld output channels of weight %s", op,
                     tg__shp(bias), (long long)w->shape[0], tg__shp(w));
        return false;
    }
    if (w->shape[2] > INT_MAX || w->shape[3] > INT_MAX)
        return tg__fail("%s: kernel of weight %s is too large", op, tg__shp(w)), false;
    if (!plan(op, x->ndim, x->shape, (int)w->shape[2], (int)w->shape[3], stride, padding, g))
        return false;
    /* The products' dimensions are BLAS ints: checked here so that the error names this
     * op (the gemm would refuse them). */
    int64_t o = w->shape[0], k = g->c * g->kh * g->kw, l = g->oh * g->ow;
    if (!tg__fits_blas(o) || !tg__fits_blas(k) || !tg__fits_blas(l))
        return tg__fail("%s: dimensions too large for BLAS: input %s, weight %s", op, tg__shp(x),
                        tg__shp(w)),
               false;
    return true;
}

/* y [O, L] (one image): row o filled with bias[o] (bias may be NULL: zeros). */
#define BIAS_FILL_KERNEL(NAME, T)                                                                  \
    TG__AVX2_CLONES static void NAME(int64_t o, int64_t l, const T *bias, T *y) {                  \
        for (int64_t i = 0; i < o; i++) {                                                          \
            T v = bias ? bias[i] : 0;                                                              \
            for (int64_t q = 0; q < l; q++)                                                        \
                y[i * l + q] = v;                                                                  \
        }                                                                                          \
    }
BIAS_FILL_KERNEL(bias_fill_f32, float)
BIAS_FILL_KERNEL(bias_fill_f64, double)

static void bias_fill(tg_dtype dt, int64_t o, int64_t l, const void *bias, void *y) {
    if (dt == TG_F64)
        bias_fill_f64(o, l, bias, y);
    else
        bias_fill_f32(o, l, bias, y);
}

/* One image's share of the convolution and of its gradients, each through a scratch
 * matrix that stays in cache; w is [O, C, kh, kw], W2 its [O, K] view, and the image's
 * output and gradient G are [O, L] (K = C*kh*kw, L = OH*OW). */

/* y = W2 @ unfold(x[i]), added to what y holds when beta is 1 (the bias) */
static void conv_image(const geom *g, const tg_tensor *x, int64_t i, const tg_tensor *w, void *cols,
                       double beta, void *y) {
    int64_t o = w->shape[0], k = g->c * g->kh * g->kw, l = g->oh * g->ow;
    unfold_image(g, x, i, cols);
    tg__gemm(x->dtype, false, false, o, l, k, w->data, k, cols, l, beta, y);
}

/* dx[i] = fold(W2^T @ G), through buf [K, L] */
static void input_grad_image(const geom *g, const tg_tensor *w, const void *gi, void *buf,
                             int64_t i, tg_tensor *dx) {
    int64_t o = w->shape[0], k = g->c * g->kh * g->kw, l = g->oh * g->ow;
    tg__gemm(dx->dtype, true, false, k, l, o, w->data, k, gi, l, 0.0, buf);
    fold_image(g, buf, i, dx);
}

/* dW2^T [K, O] = unfold(x[i]) @ G^T, or += that when not first */
static void weight_grad_image(const geom *g, const tg_tensor *x, int64_t i, const void *gi,
                              int64_t o, void *cols, bool first, void *dwt) {
    int64_t k = g->c * g->kh * g->kw, l = g->oh * g->ow;
    unfold_image(g, x, i, cols);
    tg__gemm(x->dtype, false, true, k, o, l, cols, l, gi, l, first ? 0.0 : 1.0, dwt);
}

static tg_tensor *conv_op(const char *op, tg_tensor *x, tg_tensor *w, tg_tensor *bias, int stride,
                          int padding);
static tg_tensor *conv_input_grad(const char *op, tg_tensor *g3, tg_tensor *w,
                                  const int64_t *xshape, int stride, int padding);

/* The gradient of w from G [N, O, L] and the unfolded input cols [N, K, L]:
 * dW2 = (sum_n cols[n] @ G[n]^T)^T, reshaped to w's shape: the products of
 * conv_weight_grad_direct below, in its orientation, so that a sweep that records gives
 * the same bits as one that does not. */
static tg_tensor *conv_weight_grad(const char *op, tg_tensor *g3, tg_tensor *cols, tg_tensor *w) {
    tg_tensor *dwt = tg__matmul_sum(op, cols, g3, false, true);
    return tg_reshape(tg_transpose(dwt, 0, 1), w->ndim, w->shape);
}

/* acc[i] += the sum of row i of g [o, l], for the bias gradient: each row summed and
 * added as tg_sum_to does (tg__row_sum, rounded to T), so that a sweep that records (a
 * sum_to) gives the same bits as one that does not (these sums, image by image). */
#define ROW_SUMS_KERNEL(NAME, T, ROW_SUM)                                                          \
    TG__AVX2_CLONES static void NAME(int64_t o, int64_t l, const T *restrict g, T *restrict acc) { \
        for (int64_t i = 0; i < o; i++)                                                            \
            acc[i] += (T)ROW_SUM(g + i * l, l);                                                    \
    }
ROW_SUMS_KERNEL(row_sums_f32, float, tg__row_sum_f32)
ROW_SUMS_KERNEL(row_sums_f64, double, tg__row_sum_f64)

static void row_sums(tg_dtype dt, int64_t o, int64_t l, const void *g, void *acc) {
    if (dt == TG_F64)
        row_sums_f64(o, l, g, acc);
    else
        row_sums_f32(o, l, g, acc);
}

/* acc[o] += sum over n and l of G [N, O, L] */
static void bias_grad_sums(const tg_tensor *g3, void *acc) {
    int64_t o = g3->shape[1], l = g3->shape[2];
    size_t es = tg_dtype_size(g3->dtype);
    for (int64_t i = 0; i < g3->shape[0]; i++)
        row_sums(g3->dtype, o, l, (const char *)g3->data + (size_t)(i * o * l) * es, acc);
}

/* dst [r, c] = src [c, r]^T */
#define TRANSPOSE_KERNEL(NAME, T)                                                                  \
    static void NAME(int64_t r, int64_t c, const T *restrict src, T *restrict dst) {               \
        for (int64_t i = 0; i < r; i++)                                                            \
            for (int64_t j = 0; j < c; j++)                                                        \
                dst[i * c + j] = src[j * r + i];                                                   \
    }
TRANSPOSE_KERNEL(transpose_f32, float)
TRANSPOSE_KERNEL(transpose_f64, double)

static void transpose(tg_dtype dt, int64_t r, int64_t c, const void *src, void *dst) {
    if (dt == TG_F64)
        transpose_f64(r, c, src, dst);
    else
        transpose_f32(r, c, src, dst);
}

/* The same dW2 with nothing recorded: image by image, x[n] unfolded into a [K, L]
 * scratch matrix and cols @ G[n]^T added into dW2^T [K, O] (gemm with beta = 1), which
 * is transposed into dW2 at the end. When db is not NULL, the sums over n and l of G
 * (the bias gradient) are added into db [O] on the way, while G[n] is in cache. The
 * product is made in that orientation because OpenBLAS runs it faster than
 * G[n] @ cols^T for the shapes measured (a batch of the Fashion-MNIST CNN's conv2: 1.18
 * against 1.31 ms; the LeNet benchmark's conv1: 0.21 against 0.29 ms; no slower
 * elsewhere). The kernels group the terms of a sum differently in the two orientations,
 * so the last bits can differ. */
static tg_tensor *conv_weight_grad_direct(const char *op, tg_tensor *g3, tg_tensor *x, tg_tensor *w,
                                          int stride, int padding, void *db) {
    if (!tg__check_float2(op, g3, x)) return NULL;
    geom g;
    if (!plan(op, x->ndim, x->shape, (int)w->shape[2], (int)w->shape[3], stride, padding, &g))
        return NULL;
    int64_t o = w->shape[0], k = g.c * g.kh * g.kw, l = g.oh * g.ow;
    bool gemm = o > 0 && k > 0 && l > 0 && g.n > 0;
    tg_tensor *dw = gemm ? tg__tape_tensor(w->dtype, w->ndim, w->shape)
                         : tg__tape_zeros(w->dtype, w->ndim, w->shape);
    if (dw && !gemm && db) bias_grad_sums(g3, db);
    if (!dw || !gemm) return dw;
    tg_tensor *cols = tg__tape_tensor(x->dtype, 2, (const int64_t[]){k, l});
    tg_tensor *dwt = tg__tape_tensor(w->dtype, 2, (const int64_t[]){k, o});
    if (!cols || !dwt) return NULL;
    size_t es = tg_dtype_size(x->dtype);
    for (int64_t i = 0; i < g.n; i++) {
        const char *gi = (const char *)g3->data + (size_t)(i * o * l) * es;
        weight_grad_image(&g, x, i, gi, o, cols->data, i == 0, dwt->data);
        if (db) row_sums(x->dtype, o, l, gi, db); /* G[n] is still in cache */
    }
    transpose(w->dtype, o, k, dwt->data, dw->data);
    return dw;
}

/* node of conv2d: in[0] = x, in[1] = w, in[2] = bias (nin 3 when there is one);
 * i[0] = stride, i[1] = padding. */
static int conv_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    const char *op = "tg_conv2d";
    tg_tensor *x = n->in[0], *w = n->in[1];
    int stride = (int)n->i[0], padding = (int)n->i[1];
    int64_t o = w->shape[0], l = g->shape[2] * g->shape[3];
    tg_tensor *g3 = tg_reshape(g, 3, (const int64_t[]){g->shape[0], o, l});
    if (!g3) return -1;
    if (x->requires_grad && !(gin[0] = conv_input_grad(op, g3, w, x->shape, stride, padding)))
        return -1;
    /* The bias gradient (sums of G over n and l): with nothing recorded, into db,
     * added up with the weight gradient's sweep over the images when there is one; a
     * recording sweep takes a sum_to. */
    bool want_db = n->nin > 2 && n->in[2]->requires_grad, db_summed = false;
    tg_tensor *db = NULL; /* the plain sweep's bias gradient, summed into */
    if (want_db && !tg__should_record(1, &g3) &&
        !(db = tg__tape_zeros(g->dtype, 1, (const int64_t[]){o})))
        return -1;
    if (w->requires_grad) {
        /* A sweep that records (TG_CREATE_GRAPH) unfolds x as an op, so that w's gradient
         * depends on x and G; otherwise each image is unfolded again into a scratch
         * matrix that stays in cache (cheaper than keeping the unfolded batch from the
         * forward, which would be written to and read back from memory). */
        if (tg__should_record(2, (tg_tensor *const[]){x, g3})) {
            tg_tensor *cols =
                unfold_op(op, x, (int)w->shape[2], (int)w->shape[3], stride, padding, 0.0);
            if (!cols || !(gin[1] = conv_weight_grad(op, g3, cols, w))) return -1;
        } else {
            if (!(gin[1] =
                      conv_weight_grad_direct(op, g3, x, w, stride, padding, db ? db->data : NULL)))
                return -1;
            db_summed = true;
        }
    }
    if (want_db) {
        if (!db) { /* recorded: a sum_to, differentiable again */
            tg_tensor *sum = tg_sum_to(g, 3, (const int64_t[]){o, 1, 1});
            if (!(gin[2] = tg_reshape(sum, 1, (const int64_t[]){o}))) return -1;
        } else {
            if (!db_summed) bias_grad_sums(g3, db->data);
            gin[2] = db;
        }
    }
    return 0;
}

static tg_tensor *conv_op(const char *op, tg_tensor *x, tg_tensor *w, tg_tensor *bias, int stride,
                          int padding) {
    geom g;
    if (!conv_plan(op, x, w, bias, stride, padding, &g)) return NULL;
    int64_t o = w->shape[0], k = g.c * g.kh * g.kw, l = g.oh * g.ow;
    tg_tensor *y = tg__tape_tensor(x->dtype, 4, (const int64_t[]){g.n, o, g.oh, g.ow});
    if (!y) return NULL;
    bool gemm = o > 0 && k > 0 && l > 0 && g.n > 0;
    tg_tensor *cols = gemm ? tg__tape_tensor(x->dtype, 2, (const int64_t[]){k, l}) : NULL;
    if (gemm && !cols) return NULL;
    size_t es = tg_dtype_size(x->dtype);
    for (int64_t i = 0; i < g.n; i++) { /* the bias just before its image's product: in cache */
        void *yi = (char *)y->data + (size_t)(i * o * l) * es;
        if (bias || !gemm) bias_fill(x->dtype, o, l, bias ? bias->data : NULL, yi);
        if (gemm) conv_image(&g, x, i, w, cols->data, bias ? 1.0 : 0.0, yi);
    }
    tg_tensor *in[3] = {x, w, bias};
    tg__node *n = tg__record("conv2d", y, bias ? 3 : 2, in, conv_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) {
        n->i[0] = stride;
        n->i[1] = padding;
    }
    return y;
}

/* node of conv2d_input_grad: in[0] = G [N, O, L], in[1] = w; i[0] = stride, i[1] =
 * padding. With gg the gradient of dx:
 *     dG[n] = W2 @ unfold(gg)[n]                 (a convolution of gg)
 *     dW2   = sum_n G[n] @ unfold(gg)[n]^T */
static int conv_input_grad_backward(const tg__node *n, tg_tensor *gg, tg_tensor **gin) {
    const char *op = "tg_conv2d";
    tg_tensor *g3 = n->in[0], *w = n->in[1];
    int stride = (int)n->i[0], padding = (int)n->i[1];
    if (g3->requires_grad) {
        tg_tensor *dg = conv_op(op, gg, w, NULL, stride, padding);
        if (!(gin[0] = tg_reshape(dg, 3, g3->shape))) return -1;
    }
    if (w->requires_grad) {
        tg_tensor *cols =
            unfold_op(op, gg, (int)w->shape[2], (int)w->shape[3], stride, padding, 0.0);
        if (!cols || !(gin[1] = conv_weight_grad(op, g3, cols, w))) return -1;
    }
    return 0;
}

/* dx [xshape] = fold(W2^T @ G[n]) image by image, through a [K, L] scratch matrix on
 * the tape. Only reached from the backward closures above, with the shapes the forward
 * produced; the checks guard that invariant. */
static tg_tensor *conv_input_grad(const char *op, tg_tensor *g3, tg_tensor *w,
                                  const int64_t *xshape, int stride, int padding) {
    if (!tg__check_float2(op, g3, w)) return NULL;
    geom g;
    if (!plan(op, 4, xshape, (int)w->shape[2], (int)w->shape[3], stride, padding, &g)) return NULL;
    int64_t o = w->shape[0], k = g.c * g.kh * g.kw, l = g.oh * g.ow;
    if (g3->ndim != 3 || g3->shape[0] != g.n || g3->shape[1] != o || g3->shape[2] != l)
        return tg__fail("%s: gradient %s does not match the output of weight %s over input %s", op,
                        tg__shp(g3), tg__shp(w), tg__shp_raw(4, xshape));
    bool gemm = o > 0 && k > 0 && l > 0 && g.n > 0;
    tg_tensor *dx =
        gemm ? tg__tape_tensor(g3->dtype, 4, xshape) : tg__tape_zeros(g3->dtype, 4, xshape);
    if (!dx) return NULL;
    if (gemm) {
        tg_tensor *buf = tg__tape_tensor(g3->dtype, 2, (const int64_t[]){k, l});
        if (!buf) return NULL;
        size_t es = tg_dtype_size(g3->dtype);
        for (int64_t i = 0; i < g.n; i++)
            input_grad_image(&g, w, (const char *)g3->data + (size_t)(i * o * l) * es, buf->data, i,
                             dx);
    }
    tg__node *n = tg__record("conv2d_input_grad", dx, 2, (tg_tensor *const[]){g3, w},
                             conv_input_grad_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) {
        n->i[0] = stride;
        n->i[1] = padding;
    }
    return dx;
}

tg_tensor *tg_conv2d(tg_tensor *x, tg_tensor *w, int stride, int padding) {
    return conv_op("tg_conv2d", x, w, NULL, stride, padding);
}

tg_tensor *tg__conv2d_bias(tg_tensor *x, tg_tensor *w, tg_tensor *bias, int stride, int padding) {
    if (!tg__check_nonnull("tg_conv2d", bias)) return NULL;
    return conv_op("tg_conv2d", x, w, bias, stride, padding);
}

/* ---- max pooling: its own op, with the argmax kept for the backward ---- */

/* Max pooling is computed in two steps, each a loop the compiler vectorises (a select
 * with a branch would be mispredicted half the time on real data):
 *   1. the maximum m, visiting the window in row-major order with tg_max's rule
 *      MAX_STEP: v replaces m when larger, or when it is the first NaN (a NaN m stays);
 *   2. where it is: the first element of the window that MATCHes m (equals it, or is a
 *      NaN when m is), found by visiting the window backwards and keeping the last match.
 * The first maximal element is the first one equal to the maximum (a later equal one
 * never replaces it under MAX_STEP), so the two steps give tg_max's index. The padding
 * is never visited: a window of -inf values takes its first element inside x. */
#define MAX_STEP(v, m) ((m) != (m) ? (m) : (v) <= (m) ? (m) : (v))
#define MATCH(v, m) ((v) == (m) || ((v) != (v) && (m) != (m)))

/* Step 1 for one window offset over n outputs of a row: in[q * s] is the element of
 * output q's window at that offset. Inlined with s a constant 1 or 2 (the common
 * strides) so that the strided loads vectorise. */
#define MAXPOOL_MAX_PASS(NAME, T)                                                                  \
    static inline __attribute__((always_inline)) void NAME(const T *in, int64_t s, int64_t n,      \
                                                           T *m) {                                 \
        for (int64_t q = 0; q < n; q++)                                                            \
            m[q] = MAX_STEP(in[q * s], m[q]);                                                      \
    }
/* Step 2 for one window offset: b[q] = at (the offset's place in the window, i * W + j)
 * where the element matches m[q]. */
#define MAXPOOL_ARG_PASS(NAME, T)                                                                  \
    static inline __attribute__((always_inline)) void NAME(const T *in, int64_t s, int64_t n,      \
                                                           int64_t at, const T *m, int64_t *b) {   \
        for (int64_t q = 0; q < n; q++)                                                            \
            b[q] = MATCH(in[q * s], m[q]) ? at : b[q];                                             \
    }
MAXPOOL_MAX_PASS(max_pass_f32, float)
MAXPOOL_MAX_PASS(max_pass_f64, double)
MAXPOOL_ARG_PASS(arg_pass_f32, float)
MAXPOOL_ARG_PASS(arg_pass_f64, double)

/* The common 2 x 2 window with every window inside x (no padding): both steps in one
 * pass over an output row, whose windows start at p0[q * S] (their first row) and
 * p1[q * S] (their second); origin is the flat index of p0[0], w the row length of x.
 * Not inlined, and p1 a parameter rather than p0 + w: the compiler then vectorises the
 * loop (it does not when it sees the two rows as one array at an unknown distance); S is
 * the constant 2, the common stride, or the parameter s. */
#define MAXPOOL2_ROW(NAME, T, S)                                                                   \
    TG__AVX2_CLONES static __attribute__((noinline)) void NAME(                                    \
        const T *restrict p0, const T *restrict p1, int64_t s, int64_t n, int64_t w,               \
        int64_t origin, T *restrict y, int64_t *restrict b) {                                      \
        (void)s;                                                                                   \
        if (!b) { /* the loads first: inside MAX_STEP they would be conditional, a branch */       \
            for (int64_t q = 0; q < n; q++) {                                                      \
                T a = p0[q * S], c = p0[q * S + 1], d = p1[q * S], e = p1[q * S + 1];              \
                y[q] = MAX_STEP(e, MAX_STEP(d, MAX_STEP(c, a)));                                   \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t q = 0; q < n; q++) {                                                          \
            T a = p0[q * S], c = p0[q * S + 1], d = p1[q * S], e = p1[q * S + 1];                  \
            T m = MAX_STEP(e, MAX_STEP(d, MAX_STEP(c, a)));                                        \
            int at = (int)w + 1;                                                                   \
            at = MATCH(d, m) ? (int)w : at;                                                        \
            at = MATCH(c, m) ? 1 : at;                                                             \
            at = MATCH(a, m) ? 0 : at;                                                             \
            y[q] = m;                                                                              \
            b[q] = origin + q * S + at;                                                            \
        }                                                                                          \
    }
MAXPOOL2_ROW(maxpool2_row_f32, float, 2)
MAXPOOL2_ROW(maxpool2_row_f64, double, 2)
MAXPOOL2_ROW(maxpool2_row_s_f32, float, s)
MAXPOOL2_ROW(maxpool2_row_s_f64, double, s)

/* y[nc][oh][ow] = the maximum of x[nc] over the window's positions inside x, and
 * idx[nc][oh][ow] (when idx is not NULL) = the flat index into x of the first maximal
 * element in row-major window order (the two steps above). A window with no position
 * inside x (possible only for an empty input) gives -inf and index -1. In general one
 * pass per window offset (i, j) over the row's valid columns; idx first holds the
 * winning offset's i * W + j, made a flat index at the end of the row. */
#define MAXPOOL_KERNEL(NAME, T, MAXP, ARGP, ROW2, ROW2S)                                           \
    TG__AVX2_CLONES static void NAME(const geom *g, const T *x, T *y, int64_t *idx) {              \
        const int64_t hw = g->h * g->w, s = g->stride;                                             \
        if (g->kh == 2 && g->kw == 2 && g->pad == 0 && g->w <= INT_MAX - 1) {                      \
            for (int64_t nc = 0; nc < g->n * g->c; nc++)                                           \
                for (int64_t r = 0; r < g->oh; r++) {                                              \
                    int64_t o = (nc * g->oh + r) * g->ow, origin = nc * hw + r * s * g->w;         \
                    int64_t *b = idx ? idx + o : NULL;                                             \
                    const T *p0 = x + origin, *p1 = p0 + g->w;                                     \
                    (s == 2 ? ROW2 : ROW2S)(p0, p1, s, g->ow, g->w, origin, y + o, b);             \
                }                                                                                  \
            return;                                                                                \
        }                                                                                          \
        for (int64_t nc = 0; nc < g->n * g->c; nc++) {                                             \
            const T *xp = x + nc * hw;                                                             \
            for (int64_t r = 0; r < g->oh; r++) {                                                  \
                T *m = y + (nc * g->oh + r) * g->ow;                                               \
                int64_t *b = idx ? idx + (nc * g->oh + r) * g->ow : NULL;                          \
                for (int64_t q = 0; q < g->ow; q++)                                                \
                    m[q] = (T)-INFINITY;                                                           \
                for (int step = 0; step < (b ? 2 : 1); step++) {                                   \
                    if (step == 1)                                                                 \
                        for (int64_t q = 0; q < g->ow; q++)                                        \
                            b[q] = -1;                                                             \
                    for (int64_t k = 0; k < g->kh * g->kw; k++) {                                  \
                        /* step 1 visits the window forwards, step 2 backwards */                  \
                        int64_t e = step == 0 ? k : g->kh * g->kw - 1 - k;                         \
                        int64_t i = e / g->kw, j = e % g->kw;                                      \
                        int64_t hh = r * s - g->pad + i;                                           \
                        if (hh < 0 || hh >= g->h) continue;                                        \
                        int64_t lo, hi;                                                            \
                        valid_cols(g, j, &lo, &hi);                                                \
                        if (lo >= hi) continue;                                                    \
                        const T *in = xp + hh * g->w + lo * s + j - g->pad;                        \
                        int64_t n = hi - lo;                                                       \
                        if (step == 0 && s == 1)                                                   \
                            MAXP(in, 1, n, m + lo);                                                \
                        else if (step == 0 && s == 2)                                              \
                            MAXP(in, 2, n, m + lo);                                                \
                        else if (step == 0)                                                        \
                            MAXP(in, s, n, m + lo);                                                \
                        else                                                                       \
                            ARGP(in, s, n, i * g->w + j, m + lo, b + lo);                          \
                    }                                                                              \
                }                                                                                  \
                /* the window's origin (possibly in the padding) plus the offset */                \
                int64_t origin = nc * hw + (r * s - g->pad) * g->w - g->pad;                       \
                for (int64_t q = 0; b && q < g->ow; q++)                                           \
                    b[q] = b[q] < 0 ? -1 : origin + q * s + b[q];                                  \
            }                                                                                      \
        }                                                                                          \
    }
MAXPOOL_KERNEL(maxpool_f32, float, max_pass_f32, arg_pass_f32, maxpool2_row_f32, maxpool2_row_s_f32)
MAXPOOL_KERNEL(maxpool_f64, double, max_pass_f64, arg_pass_f64, maxpool2_row_f64,
               maxpool2_row_s_f64)

/* The gradient's scatter and its adjoint, the gather, over the kept argmax idx (an I64
 * tensor of the pooled shape; -1 marks a window with nothing to take):
 *     scatter: dx[idx[o]] += g[o]         (dx zero elsewhere; overlapping windows add)
 *     gather:  y[o] = gg[idx[o]]          (0 where idx[o] = -1) */
#define SCATTER_KERNEL(NAME, T)                                                                    \
    TG__AVX2_CLONES static void NAME(int64_t n, const int64_t *idx, const T *g, T *dx) {           \
        for (int64_t o = 0; o < n; o++)                                                            \
            if (idx[o] >= 0) dx[idx[o]] += g[o];                                                   \
    }
SCATTER_KERNEL(scatter_f32, float)
SCATTER_KERNEL(scatter_f64, double)

#define GATHER_KERNEL(NAME, T)                                                                     \
    static void NAME(int64_t n, const int64_t *idx, const T *gg, T *y) {                           \
        for (int64_t o = 0; o < n; o++)                                                            \
            y[o] = idx[o] >= 0 ? gg[idx[o]] : 0;                                                   \
    }
GATHER_KERNEL(gather_f32, float)
GATHER_KERNEL(gather_f64, double)

static tg_tensor *pool_scatter(tg_tensor *g, tg_tensor *x, const tg_tensor *idx);
static tg_tensor *pool_gather(tg_tensor *gg, const tg_tensor *idx);

/* node of max_pool2d: in[0] = x, aux[0] = idx. */
static int max_pool_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = pool_scatter(g, n->in[0], n->aux[0])) ? 0 : -1;
}

/* node of max_pool2d_backward: in[0] = g, in[1] = x (for its shape; the scatter does not
 * depend on x's values, which it takes through idx as a constant: a zero derivative, as
 * tg_max's mask), aux[0] = idx. */
static int pool_scatter_backward(const tg__node *n, tg_tensor *gg, tg_tensor **gin) {
    tg_tensor *g = n->in[0], *x = n->in[1];
    if (g->requires_grad && !(gin[0] = pool_gather(gg, n->aux[0]))) return -1;
    if (x->requires_grad && !(gin[1] = tg__tape_zeros(x->dtype, x->ndim, x->shape))) return -1;
    return 0;
}

/* node of max_pool2d_gather: in[0] = gg, aux[0] = idx. */
static int pool_gather_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = pool_scatter(g, n->in[0], n->aux[0])) ? 0 : -1;
}

/* dx of x's shape with g [pooled shape] added at idx: max_pool2d's gradient, an op (with
 * inputs g and x) so that a TG_CREATE_GRAPH sweep can differentiate it again. Only
 * reached from the backward closures above, with the shapes the forward produced; the
 * checks guard that invariant. */
static tg_tensor *pool_scatter(tg_tensor *g, tg_tensor *x, const tg_tensor *idx) {
    const char *op = "tg_max_pool2d";
    if (!tg__check_float2(op, g, x)) return NULL;
    if (!tg_same_shape(g, idx))
        return tg__fail("%s: gradient %s does not match the pooled shape %s", op, tg__shp(g),
                        tg__shp(idx));
    tg_tensor *dx = tg__tape_zeros(x->dtype, x->ndim, x->shape);
    if (!dx) return NULL;
    if (x->dtype == TG_F64)
        scatter_f64(g->numel, idx->data, g->data, dx->data);
    else
        scatter_f32(g->numel, idx->data, g->data, dx->data);
    tg__node *n =
        tg__record("max_pool2d_backward", dx, 2, (tg_tensor *const[]){g, x}, pool_scatter_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) n->aux[0] = idx;
    return dx;
}

/* y [pooled shape] = gg at idx: the adjoint of pool_scatter, and so its backward. */
static tg_tensor *pool_gather(tg_tensor *gg, const tg_tensor *idx) {
    const char *op = "tg_max_pool2d";
    if (!tg__check_float(op, gg)) return NULL;
    tg_tensor *y = tg__tape_tensor(gg->dtype, idx->ndim, idx->shape);
    if (!y) return NULL;
    if (gg->dtype == TG_F64)
        gather_f64(y->numel, idx->data, gg->data, y->data);
    else
        gather_f32(y->numel, idx->data, gg->data, y->data);
    tg__node *n = tg__record("max_pool2d_gather", y, 1, &gg, pool_gather_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) n->aux[0] = idx;
    return y;
}

/* The window checks of pooling over an input of this shape (plan, and PyTorch's
 * padding <= k / 2); false with an error naming op. */
static bool pool_plan_shape(const char *op, int ndim, const int64_t *shape, int k, int stride,
                            int padding, geom *g) {
    if (!plan(op, ndim, shape, k, k, stride, padding, g)) return false;
    if (padding > k / 2) {
        tg__fail("%s: padding %d must be at most half the kernel size %d (input %s)", op, padding,
                 k, tg__shp_raw(ndim, shape));
        return false;
    }
    return true;
}

/* The checks both poolings share: a float 4-D input and the window. */
static bool pool_plan(const char *op, tg_tensor *x, int k, int stride, int padding, geom *g) {
    return tg__check_float(op, x) && pool_plan_shape(op, x->ndim, x->shape, k, stride, padding, g);
}

tg_tensor *tg_max_pool2d(tg_tensor *x, int k, int stride, int padding) {
    const char *op = "tg_max_pool2d";
    geom g;
    if (!pool_plan(op, x, k, stride, padding, &g)) return NULL;
    const int64_t shape[4] = {g.n, g.c, g.oh, g.ow};
    tg_tensor *y = tg__tape_tensor(x->dtype, 4, shape);
    if (!y) return NULL;
    tg_tensor *idx = NULL;
    if (tg__should_record(1, &x) && !(idx = tg__tape_tensor(TG_I64, 4, shape))) return NULL;
    int64_t *ip = idx ? idx->data : NULL;
    if (x->dtype == TG_F64)
        maxpool_f64(&g, x->data, y->data, ip);
    else
        maxpool_f32(&g, x->data, y->data, ip);
    tg__node *n = tg__record("max_pool2d", y, 1, &x, max_pool_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) n->aux[0] = idx;
    return y;
}

/* ---- convolution then max pooling, in one sweep over the images ---- */

/* p = max_pool2d(conv2d(x, w) + bias, k, pstride, ppad), for the nn model (a conv2d
 * layer followed by max pooling). Each image's convolution output is made in a scratch
 * matrix and pooled while it is in cache, so the batch's convolution output is never
 * written to the tape; the backward scatters each image's pooled gradient into a
 * scratch matrix and runs the convolution's three products on it, again in cache. The
 * arithmetic is that of conv2d followed by max_pool2d, operation for operation, so the
 * results are the same bits. A sweep that records (TG_CREATE_GRAPH) goes through the two
 * ops' own differentiable backwards instead. */

static void maxpool_image(tg_dtype dt, const geom *pg, const void *y, void *p, int64_t *idx) {
    if (dt == TG_F64)
        maxpool_f64(pg, y, p, idx);
    else
        maxpool_f32(pg, y, p, idx);
}

/* node of conv2d_max_pool2d: in[0] = x, in[1] = w, in[2] = bias (nin 3 when there is
 * one); aux[0] = the argmax [N, O, PH, PW], each a flat index into its own image's
 * convolution output [O, OH, OW]; i[0] = stride, i[1] = padding of the convolution. */
static int conv_pool_backward(const tg__node *nd, tg_tensor *g, tg_tensor **gin) {
    const char *op = "tg_conv2d";
    tg_tensor *x = nd->in[0], *w = nd->in[1], *bias = nd->nin > 2 ? nd->in[2] : NULL;
    const tg_tensor *idx = nd->aux[0];
    int stride = (int)nd->i[0], padding = (int)nd->i[1];
    geom cg;
    if (!tg__check_float2(op, g, x) ||
        !plan(op, 4, x->shape, (int)w->shape[2], (int)w->shape[3], stride, padding, &cg))
        return -1;
    int64_t o = w->shape[0], kk = cg.c * cg.kh * cg.kw, l = cg.oh * cg.ow;
    int64_t pl = o * idx->shape[2] * idx->shape[3]; /* pooled values per image */
    tg_dtype dt = g->dtype;
    size_t es = tg_dtype_size(dt);
    if (tg__should_record(3, (tg_tensor *const[]){g, x, w})) {
        /* the convolution again, as an op, and the pooling's scatter over indices into
         * the whole batch's output */
        tg_tensor *y = conv_op(op, x, w, bias, stride, padding);
        tg_tensor *gidx = tg__tape_tensor(TG_I64, idx->ndim, idx->shape);
        if (!y || !gidx) return -1;
        const int64_t *ri = idx->data;
        int64_t *gi = gidx->data;
        for (int64_t e = 0; e < idx->numel; e++)
            gi[e] = ri[e] < 0 ? -1 : ri[e] + (e / pl) * o * l;
        tg_tensor *gy = pool_scatter(g, y, gidx);
        if (!gy) return -1;
        tg__node conv = {.in = nd->in, .nin = nd->nin, .i = {stride, padding}};
        return conv_backward(&conv, gy, gin);
    }
    bool gemm = o > 0 && kk > 0 && l > 0 && cg.n > 0;
    bool want_x = x->requires_grad, want_w = w->requires_grad;
    bool want_b = bias && bias->requires_grad;
    tg_tensor *dx = NULL, *dw = NULL, *cols = NULL, *buf = NULL, *dwt = NULL, *gi = NULL;
    tg_tensor *db = NULL;
    if (want_x && !(dx = gemm ? tg__tape_tensor(dt, 4, x->shape) : tg__tape_zeros(dt, 4, x->shape)))
        return -1;
    if (want_w && !(dw = gemm ? tg__tape_tensor(dt, 4, w->shape) : tg__tape_zeros(dt, 4, w->shape)))
        return -1;
    if (want_b && !(db = tg__tape_zeros(dt, 1, (const int64_t[]){o}))) return -1;
    if ((gemm && (want_x || want_w)) || want_b) {
        gi = tg__tape_tensor(dt, 2, (const int64_t[]){o, l});
        if (!gi) return -1;
    }
    if (gemm && want_x && !(buf = tg__tape_tensor(dt, 2, (const int64_t[]){kk, l}))) return -1;
    if (gemm && want_w &&
        (!(cols = tg__tape_tensor(dt, 2, (const int64_t[]){kk, l})) ||
         !(dwt = tg__tape_tensor(dt, 2, (const int64_t[]){kk, o}))))
        return -1;
    for (int64_t i = 0; gi && i < cg.n; i++) {
        /* G[n]: the pooled gradient put back where each maximum was */
        const int64_t *ii = (const int64_t *)idx->data + i * pl;
        memset(gi->data, 0, (size_t)(o * l) * es);
        if (dt == TG_F64)
            scatter_f64(pl, ii, (const double *)g->data + i * pl, gi->data);
        else
            scatter_f32(pl, ii, (const float *)g->data + i * pl, gi->data);
        if (buf) input_grad_image(&cg, w, gi->data, buf->data, i, dx);
        if (cols) weight_grad_image(&cg, x, i, gi->data, o, cols->data, i == 0, dwt->data);
        if (db) row_sums(dt, o, l, gi->data, db->data);
    }
    if (dwt) transpose(dt, o, kk, dwt->data, dw->data);
    gin[0] = dx;
    gin[1] = dw;
    gin[2] = db;
    return 0;
}

tg_tensor *tg__conv2d_max_pool(tg_tensor *x, tg_tensor *w, tg_tensor *bias, int stride, int padding,
                               int k, int pstride, int ppad) {
    geom g, pg;
    if (!tg__check_nonnull("tg_conv2d", bias) ||
        !conv_plan("tg_conv2d", x, w, bias, stride, padding, &g))
        return NULL;
    int64_t o = w->shape[0], kk = g.c * g.kh * g.kw, l = g.oh * g.ow;
    const int64_t yshape[4] = {g.n, o, g.oh, g.ow};
    if (!pool_plan_shape("tg_max_pool2d", 4, yshape, k, pstride, ppad, &pg)) return NULL;
    const int64_t pshape[4] = {g.n, o, pg.oh, pg.ow};
    int64_t pl = o * pg.oh * pg.ow;
    tg_dtype dt = x->dtype;
    size_t es = tg_dtype_size(dt);
    tg_tensor *in[3] = {x, w, bias};
    tg_tensor *p = tg__tape_tensor(dt, 4, pshape);
    tg_tensor *idx = NULL;
    if (!p || (tg__should_record(3, in) && !(idx = tg__tape_tensor(TG_I64, 4, pshape))))
        return NULL;
    bool gemm = o > 0 && kk > 0 && l > 0 && g.n > 0;
    tg_tensor *y = tg__tape_tensor(dt, 3, (const int64_t[]){o, g.oh, g.ow}); /* one image */
    tg_tensor *cols = gemm ? tg__tape_tensor(dt, 2, (const int64_t[]){kk, l}) : NULL;
    if (!y || (gemm && !cols)) return NULL;
    geom pg1 = pg;
    pg1.n = 1;
    for (int64_t i = 0; i < g.n; i++) {
        bias_fill(dt, o, l, bias->data, y->data);
        if (gemm) conv_image(&g, x, i, w, cols->data, 1.0, y->data);
        maxpool_image(dt, &pg1, y->data, (char *)p->data + (size_t)(i * pl) * es,
                      idx ? (int64_t *)idx->data + i * pl : NULL);
    }
    tg__node *n = tg__record("conv2d_max_pool2d", p, 3, in, conv_pool_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) {
        n->i[0] = stride;
        n->i[1] = padding;
        n->aux[0] = idx;
    }
    return p;
}

/* ---- average pooling ---- */

/* Each channel pooled on its own: [N*C, 1, H, W] unfolded to [N*C, k*k, L], averaged
 * over the window axis, reshaped to [N, C, OH, OW]. */
tg_tensor *tg_avg_pool2d(tg_tensor *x, int k, int stride, int padding) {
    const char *op = "tg_avg_pool2d";
    geom g;
    if (!pool_plan(op, x, k, stride, padding, &g)) return NULL;
    tg_tensor *x1 = tg_reshape(x, 4, (const int64_t[]){g.n * g.c, 1, g.h, g.w});
    tg_tensor *cols = unfold_op(op, x1, k, k, stride, padding, 0.0);
    tg_tensor *r = tg_mean(cols, 1, false);
    if (!r) return NULL;
    return tg_reshape(r, 4, (const int64_t[]){g.n, g.c, g.oh, g.ow});
}
