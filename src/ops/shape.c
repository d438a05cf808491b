/* shape.c — ops that move elements without arithmetic: transpose, slice, concat,
 * index_select, gather, and the dtype conversion cast.
 *
 * Most of them see a tensor along one axis as [outer, len, inner] (outer: the product
 * of the dimensions before the axis, inner: after it), so that a slab of one index
 * along the axis is `inner` contiguous elements and every copy is a loop of memcpy.
 * Their gradients need adjoint ops that put a gradient back into zeros of the input's
 * shape: embed (for slice), index_add (for index_select) and scatter_add (for
 * gather). Those are ops of their own, recorded on the tape with the forward op as
 * their backward, so that double backward works. They are internal: not in ops.h. */
#include <string.h>

#include "ops_internal.h"

/* The [outer, len, inner] view of shape around axis. */
static void axis_split(int ndim, const int64_t *shape, int axis, int64_t *outer, int64_t *inner) {
    *outer = tg__numel(axis, shape);
    *inner = tg__numel(ndim - axis - 1, shape + axis + 1);
}

/* For o in [0, outer): copies n elements from src + o*src_row + src_off to
 * dst + o*dst_row + dst_off (all counted in elements of es bytes). */
static void block_copy(size_t es, int64_t outer, int64_t n, const void *src, int64_t src_row,
                       int64_t src_off, void *dst, int64_t dst_row, int64_t dst_off) {
    if (n == 0) return;
    const char *s = src;
    char *d = dst;
    for (int64_t o = 0; o < outer; o++)
        memcpy(d + (size_t)(o * dst_row + dst_off) * es, s + (size_t)(o * src_row + src_off) * es,
               (size_t)n * es);
}

/* The start of every adjoint op below: checks that g is a float tensor, then returns
 * zeros of g's shape but with length len along axis (on the tape), with that shape's
 * [outer, len, inner] view in *outer and *inner. */
static tg_tensor *adjoint_zeros(const char *op, const tg_tensor *g, int axis, int64_t len,
                                int64_t *outer, int64_t *inner) {
    if (!tg__check_float(op, g)) return NULL;
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, g->shape, sizeof shape);
    shape[axis] = len;
    axis_split(g->ndim, g->shape, axis, outer, inner);
    return tg__tape_zeros(g->dtype, g->ndim, shape);
}

/* Stores the axis and the index tensor in the node n that recorded y (for the index
 * ops, whose backwards read them as i[0] and aux[0]); returns y, or NULL if recording
 * failed. */
static tg_tensor *keep_axis_index(tg_tensor *y, tg__node *n, int axis, const tg_tensor *index) {
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) {
        n->i[0] = axis;
        n->aux[0] = index;
    }
    return y;
}

/* ================= transpose ================= */

/* dst (contiguous, shape[0..nd)) = src read with element strides str[0..nd). */
static void strided_copy(size_t es, int nd, const int64_t *shape, const int64_t *str,
                         const void *src, void *dst) {
    int64_t total = tg__numel(nd, shape);
    if (total == 0) return;
    if (nd == 0) {
        memcpy(dst, src, es);
        return;
    }
    int64_t n = shape[nd - 1], s = str[nd - 1];
    int64_t idx[TG_MAX_DIMS] = {0}, off = 0;
    const char *sp = src;
    char *dp = dst;
    for (int64_t done = 0; done < total; done += n) {
        if (es == 8) {
            for (int64_t j = 0; j < n; j++)
                memcpy(dp + j * 8, sp + (off + j * s) * 8, 8);
        } else {
            for (int64_t j = 0; j < n; j++)
                memcpy(dp + j * 4, sp + (off + j * s) * 4, 4);
        }
        dp += (size_t)n * es;
        for (int d = nd - 2; d >= 0; d--) {
            off += str[d];
            if (++idx[d] < shape[d]) break;
            off -= str[d] * shape[d];
            idx[d] = 0;
        }
    }
}

static int transpose_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_transpose(g, (int)n->i[0], (int)n->i[1])) ? 0 : -1;
}

/* True when swapping axes dim0 and dim1 leaves the elements in the same memory order:
 * the axes of size > 1, read in the output's order, are still in increasing order. A
 * size-1 swapped axis is not enough on its own: transposing [4,4,2,1] on axes 1 and 3
 * moves the size-2 axis 2 in front of the size-4 axis 1. */
static bool keeps_memory_order(int ndim, const int64_t *shape, int dim0, int dim1) {
    int last = -1;
    for (int d = 0; d < ndim; d++) {
        int src = d == dim0 ? dim1 : d == dim1 ? dim0 : d;
        if (shape[src] == 1) continue;
        if (src < last) return false;
        last = src;
    }
    return true;
}

tg_tensor *tg_transpose(tg_tensor *x, int dim0, int dim1) {
    if (!tg__check_nonnull("tg_transpose", x)) return NULL;
    if (!tg__norm_axis("tg_transpose", x, &dim0) || !tg__norm_axis("tg_transpose", x, &dim1))
        return NULL;
    int64_t shape[TG_MAX_DIMS], str[TG_MAX_DIMS];
    for (int d = x->ndim - 1; d >= 0; d--) {
        shape[d] = x->shape[d];
        str[d] = d == x->ndim - 1 ? 1 : str[d + 1] * x->shape[d + 1];
    }
    shape[dim0] = x->shape[dim1];
    shape[dim1] = x->shape[dim0];
    int64_t t = str[dim0];
    str[dim0] = str[dim1];
    str[dim1] = t;
    tg_tensor *y = tg__tape_tensor(x->dtype, x->ndim, shape);
    if (!y) return NULL;
    size_t es = tg_dtype_size(x->dtype);
    if (keeps_memory_order(x->ndim, x->shape, dim0, dim1))
        memcpy(y->data, x->data, (size_t)x->numel * es);
    else
        strided_copy(es, x->ndim, shape, str, x->data, y->data);
    tg__node *n = tg__record("transpose", y, 1, &x, transpose_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) {
        n->i[0] = dim0;
        n->i[1] = dim1;
    }
    return y;
}

/* ================= slice and its adjoint, embed ================= */

static tg_tensor *embed(tg_tensor *g, int axis, int64_t start, int64_t len);

/* node: i[0] axis, i[1] start, i[2] stop */
static int slice_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[0];
    int axis = (int)n->i[0];
    /* A plain sweep adds g into x's gradient where it belongs, without a full-size copy. */
    if (tg__sweep_in_place() && x->numel > 1)
        return x->requires_grad ? tg__acc_add_slice(x, g, axis, n->i[1]) : 0;
    return (gin[0] = embed(g, axis, n->i[1], x->shape[axis])) ? 0 : -1;
}

tg_tensor *tg_slice(tg_tensor *x, int axis, int64_t start, int64_t stop) {
    if (!tg__check_nonnull("tg_slice", x)) return NULL;
    if (!tg__norm_axis("tg_slice", x, &axis)) return NULL;
    int64_t len = x->shape[axis], b = start < 0 ? start + len : start,
            e = stop < 0 ? stop + len : stop;
    if (b < 0 || e < b || e > len)
        return tg__fail("tg_slice: range [%lld, %lld) out of bounds for axis %d of %s",
                        (long long)start, (long long)stop, axis, tg__shp(x));
    int64_t shape[TG_MAX_DIMS], outer, inner;
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = e - b;
    axis_split(x->ndim, x->shape, axis, &outer, &inner);
    tg_tensor *y = tg__tape_tensor(x->dtype, x->ndim, shape);
    if (!y) return NULL;
    block_copy(tg_dtype_size(x->dtype), outer, (e - b) * inner, x->data, len * inner, b * inner,
               y->data, (e - b) * inner, 0);
    tg__node *n = tg__record("slice", y, 1, &x, slice_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) {
        n->i[0] = axis;
        n->i[1] = b;
        n->i[2] = e;
    }
    return y;
}

/* node: i[0] axis, i[1] start */
static int embed_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *src = n->in[0];
    int axis = (int)n->i[0];
    return (gin[0] = tg_slice(g, axis, n->i[1], n->i[1] + src->shape[axis])) ? 0 : -1;
}

/* z = zeros with z.shape[axis] = len and g's other dims; z[.., start:start+k, ..] = g.
 * The adjoint of tg_slice. */
static tg_tensor *embed(tg_tensor *g, int axis, int64_t start, int64_t len) {
    int64_t outer, inner;
    tg_tensor *z = adjoint_zeros("tg_slice (backward)", g, axis, len, &outer, &inner);
    if (!z) return NULL;
    int64_t k = g->shape[axis];
    block_copy(tg_dtype_size(g->dtype), outer, k * inner, g->data, k * inner, 0, z->data,
               len * inner, start * inner);
    tg__node *n = tg__record("embed", z, 1, &g, embed_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) {
        n->i[0] = axis;
        n->i[1] = start;
    }
    return z;
}

/* ================= concat ================= */

/* node: i[0] axis. Input i's slab starts where the earlier inputs end. */
static int concat_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    int axis = (int)n->i[0];
    int64_t off = 0;
    for (int i = 0; i < n->nin; i++) {
        tg_tensor *x = n->in[i];
        int64_t len = x->shape[axis];
        if (x->requires_grad && !(gin[i] = tg_slice(g, axis, off, off + len))) return -1;
        off += len;
    }
    return 0;
}

tg_tensor *tg_concat(int n, tg_tensor *const *xs, int axis) {
    if (n < 1 || !xs)
        return tg__fail("tg_concat: needs n >= 1 tensors, got n = %d%s", n,
                        xs ? "" : " and xs = NULL");
    for (int i = 0; i < n; i++)
        if (!tg__check_nonnull("tg_concat", xs[i])) return NULL;
    const tg_tensor *x0 = xs[0];
    if (!tg__norm_axis("tg_concat", x0, &axis)) return NULL;
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[axis] = 0;
    for (int i = 0; i < n; i++) {
        const tg_tensor *x = xs[i];
        if (x->dtype != x0->dtype)
            return tg__fail("tg_concat: dtypes differ: input 0 is %s %s, input %d is %s %s (use "
                            "tg_cast)",
                            tg_dtype_name(x0->dtype), tg__shp(x0), i, tg_dtype_name(x->dtype),
                            tg__shp(x));
        bool same = x->ndim == x0->ndim;
        for (int d = 0; same && d < x->ndim; d++)
            same = d == axis || x->shape[d] == x0->shape[d];
        if (!same)
            return tg__fail("tg_concat: shapes differ outside axis %d: input 0 is %s, input %d "
                            "is %s",
                            axis, tg__shp(x0), i, tg__shp(x));
        if (shape[axis] > TG__MAX_NUMEL - x->shape[axis])
            return tg__fail("tg_concat: the inputs' sizes along axis %d add up to too many "
                            "elements (input %d is %s)",
                            axis, i, tg__shp(x));
        shape[axis] += x->shape[axis];
    }
    tg_tensor *y = tg__tape_tensor(x0->dtype, x0->ndim, shape);
    if (!y) return NULL;
    int64_t outer, inner, total = shape[axis], off = 0;
    axis_split(x0->ndim, shape, axis, &outer, &inner);
    size_t es = tg_dtype_size(x0->dtype);
    for (int i = 0; i < n; i++) {
        int64_t len = xs[i]->shape[axis];
        block_copy(es, outer, len * inner, xs[i]->data, len * inner, 0, y->data, total * inner,
                   off * inner);
        off += len;
    }
    tg__node *nd = tg__record("concat", y, n, xs, concat_backward);
    if (nd == TG__RECORD_FAILED) return NULL;
    if (nd) nd->i[0] = axis;
    return y;
}

/* ================= index_select and its adjoint, index_add ================= */

/* Checks that every value of the I64 tensor index lies in [0, len). */
static bool check_index_values(const char *op, const tg_tensor *index, int64_t len, int axis,
                               const tg_tensor *x) {
    const int64_t *v = index->data;
    for (int64_t j = 0; j < index->numel; j++)
        if (v[j] < 0 || v[j] >= len) {
            tg__fail("%s: index value %lld (at flat position %lld of index %s) out of range "
                     "[0, %lld) for axis %d of %s",
                     op, (long long)v[j], (long long)j, tg__shp(index), (long long)len, axis,
                     tg__shp(x));
            return false;
        }
    return true;
}

static tg_tensor *index_add(tg_tensor *g, int axis, const tg_tensor *index, int64_t len);

/* node: i[0] axis, aux[0] index */
static int index_select_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    int axis = (int)n->i[0];
    return (gin[0] = index_add(g, axis, n->aux[0], n->in[0]->shape[axis])) ? 0 : -1;
}

tg_tensor *tg_index_select(tg_tensor *x, int axis, const tg_tensor *index) {
    if (!tg__check_nonnull("tg_index_select", x) || !tg__check_nonnull("tg_index_select", index))
        return NULL;
    if (index->dtype != TG_I64 || index->ndim != 1)
        return tg__fail("tg_index_select: index must be a 1-D i64 tensor, got %s %s (x is %s)",
                        tg_dtype_name(index->dtype), tg__shp(index), tg__shp(x));
    if (!tg__norm_axis("tg_index_select", x, &axis)) return NULL;
    int64_t len = x->shape[axis], k = index->numel, outer, inner;
    if (!check_index_values("tg_index_select", index, len, axis, x)) return NULL;
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = k;
    axis_split(x->ndim, x->shape, axis, &outer, &inner);
    tg_tensor *y = tg__tape_tensor(x->dtype, x->ndim, shape);
    if (!y) return NULL;
    size_t es = tg_dtype_size(x->dtype);
    const int64_t *idx = index->data;
    const char *src = x->data;
    char *dst = y->data;
    if (y->numel > 0) /* an empty result's loops could still count through a huge outer */
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < k; j++)
                memcpy(dst + (size_t)((o * k + j) * inner) * es,
                       src + (size_t)((o * len + idx[j]) * inner) * es, (size_t)inner * es);
    return keep_axis_index(y, tg__record("index_select", y, 1, &x, index_select_backward), axis,
                           index);
}

/* node: i[0] axis, aux[0] index */
static int index_add_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_index_select(g, (int)n->i[0], n->aux[0])) ? 0 : -1;
}

#define INDEX_ADD(NAME, T)                                                                         \
    static void NAME(int64_t outer, int64_t k, int64_t len, int64_t inner, const int64_t *idx,     \
                     const T *g, T *z) {                                                           \
        for (int64_t o = 0; o < outer; o++)                                                        \
            for (int64_t j = 0; j < k; j++) {                                                      \
                const T *s = g + (o * k + j) * inner;                                              \
                T *d = z + (o * len + idx[j]) * inner;                                             \
                for (int64_t i = 0; i < inner; i++)                                                \
                    d[i] += s[i];                                                                  \
            }                                                                                      \
    }
INDEX_ADD(index_add_f32, float)
INDEX_ADD(index_add_f64, double)

/* z = zeros with z.shape[axis] = len; z[.., index[j], ..] += g[.., j, ..] for every j
 * (repeated indices add up). The adjoint of tg_index_select. */
static tg_tensor *index_add(tg_tensor *g, int axis, const tg_tensor *index, int64_t len) {
    int64_t outer, inner;
    tg_tensor *z = adjoint_zeros("tg_index_select (backward)", g, axis, len, &outer, &inner);
    if (!z) return NULL;
    int64_t k = g->shape[axis];
    /* An empty g adds nothing, and its loops could still count through a huge outer. */
    if (g->numel > 0 && g->dtype == TG_F64)
        index_add_f64(outer, k, len, inner, index->data, g->data, z->data);
    else if (g->numel > 0)
        index_add_f32(outer, k, len, inner, index->data, g->data, z->data);
    return keep_axis_index(z, tg__record("index_add", z, 1, &g, index_add_backward), axis, index);
}

/* ================= gather and its adjoint, scatter_add ================= */

/* With x as [outer, len, inner] and index / y as [outer, k, inner]:
 * y[o, j, i] = x[o, index[o, j, i], i]. */
static tg_tensor *scatter_add(tg_tensor *g, int axis, const tg_tensor *index, int64_t len);

/* node: i[0] axis, aux[0] index */
static int gather_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    int axis = (int)n->i[0];
    return (gin[0] = scatter_add(g, axis, n->aux[0], n->in[0]->shape[axis])) ? 0 : -1;
}

tg_tensor *tg_gather(tg_tensor *x, int axis, const tg_tensor *index) {
    if (!tg__check_nonnull("tg_gather", x) || !tg__check_nonnull("tg_gather", index)) return NULL;
    if (index->dtype != TG_I64)
        return tg__fail("tg_gather: index must be an i64 tensor, got %s %s (x is %s)",
                        tg_dtype_name(index->dtype), tg__shp(index), tg__shp(x));
    if (!tg__norm_axis("tg_gather", x, &axis)) return NULL;
    bool same = index->ndim == x->ndim;
    for (int d = 0; same && d < x->ndim; d++)
        same = d == axis || index->shape[d] == x->shape[d];
    if (!same)
        return tg__fail("tg_gather: index %s must match x %s on every axis but axis %d",
                        tg__shp(index), tg__shp(x), axis);
    int64_t len = x->shape[axis], k = index->shape[axis], outer, inner;
    if (!check_index_values("tg_gather", index, len, axis, x)) return NULL;
    axis_split(x->ndim, x->shape, axis, &outer, &inner);
    tg_tensor *y = tg__tape_tensor(x->dtype, index->ndim, index->shape);
    if (!y) return NULL;
    size_t es = tg_dtype_size(x->dtype);
    const int64_t *idx = index->data;
    const char *src = x->data;
    char *dst = y->data;
    /* Nothing to copy into an empty result; its loops could still count through a huge
     * outer or k (an index [2^31, 2, 0]). */
    for (int64_t o = 0; o < outer && y->numel > 0; o++)
        for (int64_t j = 0; j < k; j++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t p = (o * k + j) * inner + i;
                memcpy(dst + (size_t)p * es, src + (size_t)((o * len + idx[p]) * inner + i) * es,
                       es);
            }
    return keep_axis_index(y, tg__record("gather", y, 1, &x, gather_backward), axis, index);
}

/* node: i[0] axis, aux[0] index */
static int scatter_add_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_gather(g, (int)n->i[0], n->aux[0])) ? 0 : -1;
}

#define SCATTER_ADD(NAME, T)                                                                       \
    static void NAME(int64_t outer, int64_t k, int64_t len, int64_t inner, const int64_t *idx,     \
                     const T *g, T *z) {                                                           \
        for (int64_t o = 0; o < outer; o++)                                                        \
            for (int64_t j = 0; j < k; j++)                                                        \
                for (int64_t i = 0; i < inner; i++) {                                              \
                    int64_t p = (o * k + j) * inner + i;                                           \
                    z[(o * len + idx[p]) * inner + i] += g[p];                                     \
                }                                                                                  \
    }
SCATTER_ADD(scatter_add_f32, float)
SCATTER_ADD(scatter_add_f64, double)

/* z = zeros of g's shape with z.shape[axis] = len; z[o, index[o,j,i], i] += g[o, j, i].
 * The adjoint of tg_gather. */
static tg_tensor *scatter_add(tg_tensor *g, int axis, const tg_tensor *index, int64_t len) {
    int64_t outer, inner;
    tg_tensor *z = adjoint_zeros("tg_gather (backward)", g, axis, len, &outer, &inner);
    if (!z) return NULL;
    int64_t k = g->shape[axis];
    /* An empty g adds nothing, and its loops could still count through a huge outer. */
    if (g->numel > 0 && g->dtype == TG_F64)
        scatter_add_f64(outer, k, len, inner, index->data, g->data, z->data);
    else if (g->numel > 0)
        scatter_add_f32(outer, k, len, inner, index->data, g->data, z->data);
    return keep_axis_index(z, tg__record("scatter_add", z, 1, &g, scatter_add_backward), axis,
                           index);
}

/* ================= cast ================= */

/* float -> int64: truncation toward zero; NaN gives 0 and values beyond the int64
 * range saturate (a plain C conversion would be undefined there). */
static int64_t to_i64(double v) {
    if (v != v) return 0;
    if (v >= 9223372036854775808.0) return INT64_MAX;
    if (v < -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

static void convert(const tg_tensor *x, tg_tensor *y) {
    int64_t n = x->numel;
    if (x->dtype == y->dtype) {
        memcpy(y->data, x->data, (size_t)n * tg_dtype_size(x->dtype));
    } else if (x->dtype == TG_F32 && y->dtype == TG_F64) {
        const float *s = x->data;
        double *d = y->data;
        for (int64_t i = 0; i < n; i++)
            d[i] = s[i];
    } else if (x->dtype == TG_F64 && y->dtype == TG_F32) {
        const double *s = x->data;
        float *d = y->data;
        for (int64_t i = 0; i < n; i++)
            d[i] = (float)s[i];
    } else if (y->dtype == TG_I64) {
        int64_t *d = y->data;
        for (int64_t i = 0; i < n; i++)
            d[i] = to_i64(tg__get(x, i));
    } else {
        const int64_t *s = x->data;
        for (int64_t i = 0; i < n; i++)
            tg__set(y, i, (double)s[i]);
    }
}

static int cast_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_cast(g, n->in[0]->dtype)) ? 0 : -1;
}

tg_tensor *tg_cast(tg_tensor *x, tg_dtype dt) {
    if (!tg__check_nonnull("tg_cast", x)) return NULL;
    if (tg_dtype_size(dt) == 0)
        return tg__fail("tg_cast: invalid target dtype %d for %s %s", (int)dt,
                        tg_dtype_name(x->dtype), tg__shp(x));
    tg_tensor *y = tg__tape_tensor(dt, x->ndim, x->shape);
    if (!y) return NULL;
    convert(x, y);
    if (dt == TG_I64 || x->dtype == TG_I64) return y; /* not differentiable: no history */
    if (tg__record("cast", y, 1, &x, cast_backward) == TG__RECORD_FAILED) return NULL;
    return y;
}
