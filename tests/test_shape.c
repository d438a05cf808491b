/* test_shape.c — tg_transpose, tg_slice, tg_concat, tg_index_select, tg_gather and
 * tg_cast: values by hand or from their definitions, first and second derivatives
 * against finite differences, F32 against F64, I64 data, empty and 0-d tensors, and
 * every way the input can be wrong. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/internal.h"
#include "testutil.h"

/* ---- small helpers ---- */

/* A persistent tensor holding 0, 1, 2, ... */
static tg_tensor *iota(tg_dtype dt, int ndim, const int64_t *shape) {
    tg_tensor *t = tg_tensor_new(dt, ndim, shape);
    for (int64_t i = 0; t && i < t->numel; i++)
        tg_tensor_set(t, i, (double)i);
    return t;
}

static tg_tensor *index_1d(int64_t n, const int64_t *v) {
    return tg_tensor_from(TG_I64, 1, (const int64_t[]){n}, v);
}

/* ---- the ops as tg_fn, for the gradient checks ---- */

typedef struct {
    int axis, dim1;
    int64_t start, stop;
    int n;
    const tg_tensor *index;
} op_ctx;

static tg_tensor *f_transpose(tg_tensor *const *in, void *vc) {
    const op_ctx *c = vc;
    return tg_transpose(in[0], c->axis, c->dim1);
}
static tg_tensor *f_slice(tg_tensor *const *in, void *vc) {
    const op_ctx *c = vc;
    return tg_slice(in[0], c->axis, c->start, c->stop);
}
static tg_tensor *f_concat(tg_tensor *const *in, void *vc) {
    const op_ctx *c = vc;
    return tg_concat(c->n, in, c->axis);
}
static tg_tensor *f_index_select(tg_tensor *const *in, void *vc) {
    const op_ctx *c = vc;
    return tg_index_select(in[0], c->axis, c->index);
}
static tg_tensor *f_gather(tg_tensor *const *in, void *vc) {
    const op_ctx *c = vc;
    return tg_gather(in[0], c->axis, c->index);
}
/* Casting to the input's own dtype: a differentiable copy. */
static tg_tensor *f_cast_same(tg_tensor *const *in, void *vc) {
    (void)vc;
    return tg_cast(in[0], in[0]->dtype);
}
/* F64 -> F32 -> F64: differentiable, exact up to float rounding. */
static tg_tensor *f_cast_roundtrip(tg_tensor *const *in, void *vc) {
    (void)vc;
    return tg_cast(tg_mul(tg_cast(in[0], TG_F32), tg_cast(in[0], TG_F32)), TG_F64);
}
/* A nonlinear use of an op, so that second derivatives go through its backward. */
static tg_tensor *f_square_of(tg_tensor *const *in, void *vc) {
    const op_ctx *c = vc;
    tg_tensor *y = c->n == -1   ? tg_slice(in[0], c->axis, c->start, c->stop)
                   : c->n == -2 ? tg_gather(in[0], c->axis, c->index)
                                : tg_index_select(in[0], c->axis, c->index);
    return tg_mul(tg_square(y), tg_sin(y));
}

/* ---- the table of cases run through gradcheck, gradgradcheck and F32 vs F64 ---- */

typedef struct {
    const char *what;
    tg_fn f;
    op_ctx c;
    int nin;
    int nd[4];
    int64_t shape[4][4];
    int idx_nd; /* 0: no index */
    int64_t idx_shape[3];
    int64_t idx[24];
} op_case;

/* clang-format off */
static const op_case cases[] = {
    {"transpose [3,4] (0,1)", f_transpose, {0, 1, 0, 0, 0, NULL}, 1, {2}, {{3, 4}}, 0, {0}, {0}},
    {"transpose [2,3,4] (0,2)", f_transpose, {0, 2, 0, 0, 0, NULL}, 1, {3}, {{2, 3, 4}}, 0, {0}, {0}},
    {"transpose [2,3,4] (-1,-2)", f_transpose, {-1, -2, 0, 0, 0, NULL}, 1, {3}, {{2, 3, 4}}, 0, {0}, {0}},
    {"transpose [1,5] (0,1)", f_transpose, {0, 1, 0, 0, 0, NULL}, 1, {2}, {{1, 5}}, 0, {0}, {0}},
    {"transpose [4] (0,0)", f_transpose, {0, 0, 0, 0, 0, NULL}, 1, {1}, {{4}}, 0, {0}, {0}},

    {"slice [3,4] axis 1 [1,3)", f_slice, {1, 0, 1, 3, 0, NULL}, 1, {2}, {{3, 4}}, 0, {0}, {0}},
    {"slice [2,3,4] axis 0 [-1,2)", f_slice, {0, 0, -1, 2, 0, NULL}, 1, {3}, {{2, 3, 4}}, 0, {0}, {0}},
    {"slice [2,3,4] axis -1 [0,-1)", f_slice, {-1, 0, 0, -1, 0, NULL}, 1, {3}, {{2, 3, 4}}, 0, {0}, {0}},
    {"slice [1] axis 0 [0,1)", f_slice, {0, 0, 0, 1, 0, NULL}, 1, {1}, {{1}}, 0, {0}, {0}},
    {"square of slice [3,4] axis 0 [1,3)", f_square_of, {0, 0, 1, 3, -1, NULL}, 1, {2}, {{3, 4}}, 0, {0}, {0}},

    {"concat 3 x [2,*] axis 1", f_concat, {1, 0, 0, 0, 3, NULL}, 3, {2, 2, 2}, {{2, 3}, {2, 1}, {2, 2}}, 0, {0}, {0}},
    {"concat [1,3] [2,3] axis 0", f_concat, {0, 0, 0, 0, 2, NULL}, 2, {2, 2}, {{1, 3}, {2, 3}}, 0, {0}, {0}},
    {"concat 4 x [2,*,2] axis -2", f_concat, {-2, 0, 0, 0, 4, NULL}, 4, {3, 3, 3, 3},
     {{2, 2, 2}, {2, 1, 2}, {2, 1, 2}, {2, 3, 2}}, 0, {0}, {0}},
    {"concat 1 x [3]", f_concat, {0, 0, 0, 0, 1, NULL}, 1, {1}, {{3}}, 0, {0}, {0}},

    {"index_select [4,3] axis 0", f_index_select, {0, 0, 0, 0, 0, NULL}, 1, {2}, {{4, 3}}, 1, {4}, {3, 0, 3, 1}},
    {"index_select [2,3,4] axis 1", f_index_select, {1, 0, 0, 0, 0, NULL}, 1, {3}, {{2, 3, 4}}, 1, {2}, {2, 2}},
    {"index_select [2,3,4] axis -1", f_index_select, {-1, 0, 0, 0, 0, NULL}, 1, {3}, {{2, 3, 4}}, 1, {5}, {0, 3, 1, 1, 2}},
    {"index_select [1] axis 0", f_index_select, {0, 0, 0, 0, 0, NULL}, 1, {1}, {{1}}, 1, {3}, {0, 0, 0}},
    {"square of index_select [3,2] axis 0", f_square_of, {0, 0, 0, 0, 0, NULL}, 1, {2}, {{3, 2}}, 1, {4}, {2, 0, 2, 2}},

    {"gather [2,3] axis 1", f_gather, {1, 0, 0, 0, 0, NULL}, 1, {2}, {{2, 3}}, 2, {2, 2}, {0, 0, 2, 1}},
    {"gather [3,2] axis 0", f_gather, {0, 0, 0, 0, 0, NULL}, 1, {2}, {{3, 2}}, 2, {4, 2}, {2, 0, 2, 2, 0, 1, 1, 1}},
    {"gather [2,3,2] axis -2", f_gather, {-2, 0, 0, 0, 0, NULL}, 1, {3}, {{2, 3, 2}}, 3, {2, 2, 2}, {0, 2, 1, 1, 2, 2, 0, 0}},
    {"gather [1] axis 0", f_gather, {0, 0, 0, 0, 0, NULL}, 1, {1}, {{1}}, 1, {3}, {0, 0, 0}},
    {"square of gather [2,3] axis 1", f_square_of, {1, 0, 0, 0, -2, NULL}, 1, {2}, {{2, 3}}, 2, {2, 4}, {0, 0, 2, 1, 1, 1, 1, 0}},

    {"cast [2,3] to its own dtype", f_cast_same, {0, 0, 0, 0, 0, NULL}, 1, {2}, {{2, 3}}, 0, {0}, {0}},
    {"cast [] to its own dtype", f_cast_same, {0, 0, 0, 0, 0, NULL}, 1, {0}, {{0}}, 0, {0}, {0}},
    {"cast [4] to its own dtype", f_cast_same, {0, 0, 0, 0, 0, NULL}, 1, {1}, {{4}}, 0, {0}, {0}},
};
/* clang-format on */
enum { NCASES = sizeof cases / sizeof cases[0] };

/* The case's context with its index tensor made (free it with tg_tensor_free). */
static op_ctx case_ctx(const op_case *k, tg_tensor **index) {
    op_ctx c = k->c;
    *index = NULL;
    if (k->idx_nd) {
        *index = tg_tensor_from(TG_I64, k->idx_nd, k->idx_shape, k->idx);
        ck_assert_ptr_nonnull(*index);
        c.index = *index;
    }
    return c;
}

START_TEST(test_shape_gradcheck) {
    tgt_seed(21);
    for (int i = 0; i < NCASES; i++) {
        const op_case *k = &cases[i];
        tg_tensor *index, *in[4] = {NULL};
        op_ctx c = case_ctx(k, &index);
        for (int j = 0; j < k->nin; j++) {
            in[j] = tgt_rand(TG_F64, k->nd[j], k->shape[j], -1, 1);
            tg_requires_grad(in[j], true);
        }
        tgt_assert_grads(k->f, &c, k->nin, in, NULL, k->what);
        tg_tape_reset();
        for (int j = 0; j < k->nin; j++)
            tg_tensor_free(in[j]);
        tg_tensor_free(index);
    }
}
END_TEST

/* Same inputs in F32 and F64 (the F64 copy holds the F32 values exactly): forward
 * results and the gradients of sum(y^2) agree to float precision. */
START_TEST(test_shape_f32_agrees_with_f64) {
    tgt_seed(22);
    for (int i = 0; i < NCASES; i++) {
        const op_case *k = &cases[i];
        tg_tensor *index, *in32[4] = {NULL}, *in64[4] = {NULL};
        op_ctx c = case_ctx(k, &index);
        for (int j = 0; j < k->nin; j++) {
            in32[j] = tgt_rand(TG_F32, k->nd[j], k->shape[j], 0.5, 1.5);
            in64[j] = tg_tensor_new(TG_F64, k->nd[j], k->shape[j]);
            for (int64_t e = 0; e < in32[j]->numel; e++)
                tg_tensor_set(in64[j], e, tg_tensor_get(in32[j], e));
            tg_requires_grad(in32[j], true);
            tg_requires_grad(in64[j], true);
        }
        tg_tensor *y32 = k->f(in32, &c), *y64 = k->f(in64, &c);
        ck_assert_msg(y32 && y64, "%s: %s", k->what, tg_error());
        ck_assert_int_eq(y32->dtype, TG_F32);
        ck_assert_int_eq(y64->dtype, TG_F64);
        ck_assert(tg_same_shape(y32, y64));
        for (int64_t e = 0; e < y64->numel; e++) {
            double w = tg_tensor_get(y64, e);
            ck_assert_close(tg_tensor_get(y32, e), w, 1e-5 * fabs(w));
        }
        ck_assert_int_eq(tg_backward(tg_sum(tg_square(y32), TG_ALL, false)), 0);
        ck_assert_int_eq(tg_backward(tg_sum(tg_square(y64), TG_ALL, false)), 0);
        for (int j = 0; j < k->nin; j++) {
            ck_assert_int_eq(in32[j]->grad->dtype, TG_F32);
            for (int64_t e = 0; e < in64[j]->numel; e++) {
                double w = tg_tensor_get(in64[j]->grad, e);
                ck_assert_close(tg_tensor_get(in32[j]->grad, e), w, 1e-5 * fabs(w));
            }
        }
        tg_tape_reset();
        for (int j = 0; j < k->nin; j++) {
            tg_tensor_free(in32[j]);
            tg_tensor_free(in64[j]);
        }
        tg_tensor_free(index);
    }
}
END_TEST

/* Each op applied to a broadcast sum x [2,1,4] + y [3,1] -> [2,3,4], so that its
 * backward feeds a gradient that sum_to reduces back to both shapes. */
typedef enum { B_TRANSPOSE, B_SLICE, B_CONCAT, B_INDEX_SELECT, B_GATHER, B_CAST } bcast_kind;

typedef struct {
    bcast_kind kind;
    const tg_tensor *index;
} bcast_ctx;

static tg_tensor *f_bcast(tg_tensor *const *in, void *vc) {
    const bcast_ctx *c = vc;
    tg_tensor *z = tg_add(in[0], in[1]);
    switch (c->kind) {
    case B_TRANSPOSE:
        return tg_transpose(z, 0, 2);
    case B_SLICE:
        return tg_slice(z, 1, 1, 3);
    case B_CONCAT:
        return tg_concat(3, (tg_tensor *[]){z, in[0], z}, 1);
    case B_INDEX_SELECT:
        return tg_index_select(z, 1, c->index);
    case B_GATHER:
        return tg_gather(z, 2, c->index);
    case B_CAST:
        return tg_cast(z, z->dtype);
    }
    return NULL;
}

START_TEST(test_shape_broadcast_inputs) {
    static const char *names[] = {"transpose", "slice", "concat", "index_select", "gather", "cast"};
    tgt_seed(23);
    tg_tensor *x = tgt_rand(TG_F64, TG_SHAPE(2, 1, 4), -1, 1),
              *y = tgt_rand(TG_F64, TG_SHAPE(3, 1), -1, 1);
    tg_requires_grad(x, true);
    tg_requires_grad(y, true);
    tg_tensor *isel = index_1d(4, (const int64_t[]){2, 0, 2, 1});
    tg_tensor *igat = tg_tensor_from(TG_I64, TG_SHAPE(2, 3, 2),
                                     (const int64_t[]){3, 0, 1, 1, 2, 3, 0, 0, 3, 2, 1, 3});
    for (int k = B_TRANSPOSE; k <= B_CAST; k++) {
        bcast_ctx c = {(bcast_kind)k, k == B_INDEX_SELECT ? isel : igat};
        char what[64];
        snprintf(what, sizeof what, "%s of a broadcast sum", names[k]);
        tgt_assert_grads(f_bcast, &c, 2, (tg_tensor *[]){x, y}, NULL, what);
        tgt_assert_f32_agrees(f_bcast, &c, 2, (tg_tensor *[]){x, y}, what);
    }
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(y);
    tg_tensor_free(isel);
    tg_tensor_free(igat);
}
END_TEST

/* ================= transpose ================= */

START_TEST(test_transpose_values) {
    tg_tensor *x = iota(TG_F64, TG_SHAPE(2, 3));
    tg_tensor *y = tg_transpose(x, 0, 1);
    tgt_assert_shape(y, TG_SHAPE(3, 2));
    tgt_assert_tensor(y, (const double[]){0, 3, 1, 4, 2, 5}, 0);
    tgt_assert_tensor(tg_transpose(x, -1, 0), (const double[]){0, 3, 1, 4, 2, 5}, 0);
    /* Swapping an axis with itself is a copy. */
    tg_tensor *same = tg_transpose(x, 1, 1);
    tgt_assert_shape(same, TG_SHAPE(2, 3));
    ck_assert_ptr_ne(same->data, x->data);
    tgt_assert_tensor(same, (const double[]){0, 1, 2, 3, 4, 5}, 0);

    /* 3-D, by the definition y[i,j,k] = x[k,j,i]; in F32 and I64 too. */
    for (int t = 0; t < 3; t++) {
        tg_dtype dt = t == 0 ? TG_F64 : t == 1 ? TG_F32 : TG_I64;
        tg_tensor *z = iota(dt, TG_SHAPE(2, 3, 4));
        tg_tensor *w = tg_transpose(z, 0, 2);
        tgt_assert_shape(w, TG_SHAPE(4, 3, 2));
        ck_assert_int_eq(w->dtype, dt);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 2; k++)
                    ck_assert_close(tg_tensor_get(w, (i * 3 + j) * 2 + k),
                                    tg_tensor_get(z, (k * 3 + j) * 4 + i), 0);
        /* middle and last: y[i,k,j] = x[i,j,k] */
        tg_tensor *v = tg_transpose(z, 1, 2);
        tgt_assert_shape(v, TG_SHAPE(2, 4, 3));
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 4; k++)
                for (int j = 0; j < 3; j++)
                    ck_assert_close(tg_tensor_get(v, (i * 4 + k) * 3 + j),
                                    tg_tensor_get(z, (i * 3 + j) * 4 + k), 0);
        tg_tape_reset();
        tg_tensor_free(z);
    }
    /* Empty. */
    tg_tensor *e = tg_tensor_new(TG_F64, TG_SHAPE(0, 3));
    tgt_assert_shape(tg_transpose(e, 0, 1), TG_SHAPE(3, 0));
    tg_tape_reset();
    tg_tensor_free(e);
    tg_tensor_free(x);
}
END_TEST

/* "[a,b,c]" for failure messages (one static buffer: one call per message). */
static const char *shape_str(const tg_tensor *t) {
    static char buf[128];
    int at = snprintf(buf, sizeof buf, "[");
    for (int d = 0; d < t->ndim; d++)
        at += snprintf(buf + at, sizeof buf - (size_t)at, d ? ",%lld" : "%lld",
                       (long long)t->shape[d]);
    snprintf(buf + at, sizeof buf - (size_t)at, "]");
    return buf;
}

/* Row-major strides of shape. */
static void strides_of(int nd, const int64_t *shape, int64_t *st) {
    for (int d = nd - 1; d >= 0; d--)
        st[d] = d == nd - 1 ? 1 : st[d + 1] * shape[d + 1];
}

/* The element of x at y's flat index i when y is x with its axes permuted (y's axis d
 * is x's axis perm[d]): computed by index arithmetic alone. */
static int64_t permuted_source(int nd, const int64_t *xshape, const int *perm, int64_t i) {
    int64_t xst[TG_MAX_DIMS], yshape[TG_MAX_DIMS], yst[TG_MAX_DIMS], src = 0;
    for (int d = 0; d < nd; d++)
        yshape[d] = xshape[perm[d]];
    strides_of(nd, xshape, xst);
    strides_of(nd, yshape, yst);
    for (int d = 0; d < nd; d++) {
        int64_t idx = (i / yst[d]) % yshape[d];
        src += idx * xst[perm[d]];
    }
    return src;
}

/* Every transpose (dim0, dim1), negative axes included, and every permutation of the
 * axes built as a chain of transposes, on every shape of rank 1..4 with dims in {1,2,3}:
 * values and gradients (a seeded backward sends dy back through the inverse permutation)
 * against index arithmetic. A [4,4,2,1] case pins the old size-1 shortcut. */
static void check_permutation(tg_dtype dt, int nd, const int64_t *shape, const int *perm,
                              const int (*swaps)[2], int nswaps) {
    tg_tensor *x = iota(dt, nd, shape);
    if (dt != TG_I64) tg_requires_grad(x, true);
    tg_tensor *y = x;
    for (int s = 0; s < nswaps; s++)
        y = tg_transpose(y, swaps[s][0], swaps[s][1]);
    ck_assert_ptr_nonnull(y);
    for (int d = 0; d < nd; d++)
        ck_assert_int_eq(y->shape[d], shape[perm[d]]);
    for (int64_t i = 0; i < y->numel; i++)
        ck_assert_msg(tg_tensor_get(y, i) == (double)permuted_source(nd, shape, perm, i),
                      "%s after %d transposes: element %lld is %g, want %lld", shape_str(x), nswaps,
                      (long long)i, tg_tensor_get(y, i),
                      (long long)permuted_source(nd, shape, perm, i));
    if (dt != TG_I64) {
        /* dy[i] = 1000 + i, so dx[src(i)] must be 1000 + i. */
        tg_tensor *dy = tg_tensor_new(dt, y->ndim, y->shape);
        for (int64_t i = 0; i < dy->numel; i++)
            tg_tensor_set(dy, i, 1000.0 + (double)i);
        ck_assert_int_eq(tg_backward_seeded(y, dy), 0);
        for (int64_t i = 0; i < y->numel; i++) {
            int64_t src = permuted_source(nd, shape, perm, i);
            ck_assert_msg(tg_tensor_get(x->grad, src) == 1000.0 + (double)i,
                          "%s: gradient at %lld is %g, want %g", shape_str(x), (long long)src,
                          tg_tensor_get(x->grad, src), 1000.0 + (double)i);
        }
        tg_tensor_free(dy);
    }
    tg_tape_reset();
    tg_tensor_free(x);
}

START_TEST(test_transpose_every_pattern) {
    static const tg_dtype dts[] = {TG_F64, TG_F32, TG_I64};
    int64_t shape[4];
    int ncases = 0;
    for (int nd = 1; nd <= 4; nd++) {
        int total = 1;
        for (int d = 0; d < nd; d++)
            total *= 3;
        for (int code = 0; code < total; code++) {
            for (int d = 0, c = code; d < nd; d++, c /= 3)
                shape[d] = 1 + c % 3;
            tg_dtype dt = dts[code % 3];
            /* Single transposes, each axis pair given both as non-negative and negative. */
            for (int a = 0; a < nd; a++)
                for (int b = 0; b < nd; b++) {
                    int perm[4] = {0, 1, 2, 3};
                    perm[a] = b;
                    perm[b] = a;
                    int sw[1][2] = {{a, b}};
                    check_permutation(dt, nd, shape, perm, sw, 1);
                    int swn[1][2] = {{a - nd, b - nd}};
                    check_permutation(dt, nd, shape, perm, swn, 1);
                    ncases += 2;
                }
            /* Every permutation, by selection: place the wanted axis at position d with
             * one transpose of the current arrangement. */
            int nperm = 1;
            for (int d = 2; d <= nd; d++)
                nperm *= d;
            for (int p = 0; p < nperm; p++) {
                int perm[4], avail[4] = {0, 1, 2, 3}, navail = nd, c = p;
                for (int d = 0; d < nd; d++) {
                    int k = c % navail;
                    c /= navail;
                    perm[d] = avail[k];
                    for (int j = k; j < navail - 1; j++)
                        avail[j] = avail[j + 1];
                    navail--;
                }
                int cur[4] = {0, 1, 2, 3}, sw[4][2], ns = 0;
                for (int d = 0; d < nd; d++) {
                    int at = d;
                    while (cur[at] != perm[d])
                        at++;
                    if (at != d) {
                        sw[ns][0] = d;
                        sw[ns][1] = at;
                        ns++;
                        int t = cur[d];
                        cur[d] = cur[at];
                        cur[at] = t;
                    }
                }
                check_permutation(dt, nd, shape, perm, (const int(*)[2])sw, ns);
                ncases++;
            }
        }
    }
    ck_assert_int_gt(ncases, 2000);
    /* The reported case: [4,4,2,1] holding 0..31, axes 1 and 3. */
    tg_tensor *z = iota(TG_F64, TG_SHAPE(4, 4, 2, 1));
    tg_tensor *w = tg_transpose(z, 1, 3);
    tgt_assert_shape(w, TG_SHAPE(4, 1, 2, 4));
    tgt_assert_tensor(w, (const double[]){0,  2,  4,  6,  1,  3,  5,  7,  8,  10, 12,
                                          14, 9,  11, 13, 15, 16, 18, 20, 22, 17, 19,
                                          21, 23, 24, 26, 28, 30, 25, 27, 29, 31},
                      0);
    tg_tape_reset();
    tg_tensor_free(z);
}
END_TEST

/* Shapes whose element count overflows int64 (or passes the library's limit) are
 * rejected by every function that takes or makes a shape, with a message naming the
 * function and the shape: before, [2^62+1, 4] wrapped to 4 elements and matched. */
START_TEST(test_shape_overflow_rejected) {
    const int64_t big = ((int64_t)1 << 62) + 1, half = (int64_t)1 << 40;
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(4));
    tg_requires_grad(x, true);
    ck_assert_op_error(tg_reshape(x, TG_SHAPE(big, 4)), "tg_reshape", "[4611686018427387905,4]",
                       "too large");
    ck_assert_op_error(tg_reshape(x, TG_SHAPE(-1, big, 4)), "tg_reshape", "too large");
    ck_assert_op_error(tg_reshape(x, TG_SHAPE(half, half, 0)), "tg_reshape", "too large");
    ck_assert_op_error(tg_broadcast_to(x, TG_SHAPE(big, 4)), "tg_broadcast_to", "too large");
    ck_assert_op_error(tg_broadcast_to(x, TG_SHAPE(half, half, 4)), "tg_broadcast_to",
                       "[1099511627776,1099511627776,4]", "too large");
    ck_assert_op_error(tg_sum_to(x, TG_SHAPE(big, 4)), "tg_sum_to", "too large");
    ck_assert_op_error(tg_tensor_new(TG_F64, TG_SHAPE(big, 4)), "tg_tensor_new", "too large");
    ck_assert_op_error(tg_tensor_from(TG_F64, TG_SHAPE(half, half, 4), NULL), "tg_tensor_from",
                       "too large");
    /* Empty tensors may have huge dimensions, but results whose non-zero dimensions
     * multiply past the limit are refused where they are made. */
    tg_tensor *a = tg_tensor_new(TG_F64, TG_SHAPE(half, 1, 0));
    tg_tensor *b = tg_tensor_new(TG_F64, TG_SHAPE(1, half, 0));
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_op_error(tg_add(a, b), "tg_add", "[1099511627776,1099511627776,0]", "too large");
    tg_tensor *c = tg_tensor_new(TG_F64, TG_SHAPE((int64_t)1 << 58, 0));
    ck_assert_op_error(tg_concat(5, (tg_tensor *const[]){c, c, c, c, c}, 0), "tg_concat",
                       "too many elements");
    /* A legal reshape of the same tensor still works, and its sum runs. */
    tg_tensor *y = tg_reshape(x, TG_SHAPE(2, -1));
    tgt_assert_shape(y, TG_SHAPE(2, 2));
    ck_assert_ptr_nonnull(tg_sum(y, TG_ALL, false));
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(c);
}
END_TEST

START_TEST(test_transpose_errors) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(2, 3)), *s = tg_scalar(TG_F64, 1.0);
    ck_assert_op_error(tg_transpose(x, 0, 2), "tg_transpose", "axis 2 out of range for [2,3]");
    ck_assert_op_error(tg_transpose(x, -3, 1), "tg_transpose", "axis -3 out of range for [2,3]");
    ck_assert_op_error(tg_transpose(s, 0, 0), "tg_transpose", "axis 0 out of range for []");
    ck_assert_op_error(tg_transpose(NULL, 0, 1), "tg_transpose", "NULL");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(s);
}
END_TEST

/* ================= slice ================= */

START_TEST(test_slice_values) {
    tg_tensor *x = iota(TG_F64, TG_SHAPE(3, 4));
    tg_tensor *y = tg_slice(x, 1, 1, 3);
    tgt_assert_shape(y, TG_SHAPE(3, 2));
    tgt_assert_tensor(y, (const double[]){1, 2, 5, 6, 9, 10}, 0);
    /* Negative start/stop count from the end: rows [-2, -1) = row 1. */
    y = tg_slice(x, 0, -2, -1);
    tgt_assert_shape(y, TG_SHAPE(1, 4));
    tgt_assert_tensor(y, (const double[]){4, 5, 6, 7}, 0);
    /* Negative axis, the whole axis, and an empty range. */
    tgt_assert_tensor(tg_slice(x, -1, -1, 4), (const double[]){3, 7, 11}, 0);
    tgt_assert_tensor(tg_slice(x, 0, 0, 3), (const double[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11},
                      0);
    tgt_assert_shape(tg_slice(x, 1, 2, 2), TG_SHAPE(3, 0));
    tgt_assert_shape(tg_slice(x, 1, 4, 4), TG_SHAPE(3, 0));
    /* I64 data. */
    tg_tensor *l = iota(TG_I64, TG_SHAPE(5));
    tg_tensor *ls = tg_slice(l, 0, 1, -1);
    ck_assert_int_eq(ls->dtype, TG_I64);
    tgt_assert_tensor(ls, (const double[]){1, 2, 3}, 0);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(l);
}
END_TEST

/* The gradient of a slice is g in the sliced positions and zero elsewhere. */
START_TEST(test_slice_backward_values) {
    tg_tensor *x = iota(TG_F64, TG_SHAPE(2, 3));
    tg_requires_grad(x, true);
    tg_tensor *y = tg_slice(x, 1, 1, 3);
    ck_assert_str_eq(tg__tape_last()->op, "slice");
    ck_assert_int_eq(tg_backward(tg_sum(tg_mul_scalar(y, 2.0), TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, (const double[]){0, 2, 2, 0, 2, 2}, 0);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_slice_errors) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(3, 4)), *s = tg_scalar(TG_F32, 1.0);
    ck_assert_op_error(tg_slice(x, 1, 2, 5), "tg_slice", "[2, 5)", "axis 1 of [3,4]");
    ck_assert_op_error(tg_slice(x, 1, 3, 2), "tg_slice", "[3, 2)", "axis 1 of [3,4]");
    ck_assert_op_error(tg_slice(x, 0, -4, 2), "tg_slice", "[-4, 2)", "axis 0 of [3,4]");
    ck_assert_op_error(tg_slice(x, 2, 0, 1), "tg_slice", "axis 2 out of range for [3,4]");
    ck_assert_op_error(tg_slice(s, 0, 0, 1), "tg_slice", "axis 0 out of range for []");
    ck_assert_op_error(tg_slice(NULL, 0, 0, 1), "tg_slice", "NULL");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(s);
}
END_TEST

/* ================= concat ================= */

START_TEST(test_concat_values) {
    tg_tensor *a = iota(TG_F64, TG_SHAPE(2, 2)),
              *b = tg_tensor_from(TG_F64, TG_SHAPE(2, 1), (const double[]){10, 11});
    tg_tensor *y = tg_concat(2, (tg_tensor *[]){a, b}, 1);
    tgt_assert_shape(y, TG_SHAPE(2, 3));
    tgt_assert_tensor(y, (const double[]){0, 1, 10, 2, 3, 11}, 0);
    y = tg_concat(3, (tg_tensor *[]){b, a, b}, -1);
    tgt_assert_shape(y, TG_SHAPE(2, 4));
    tgt_assert_tensor(y, (const double[]){10, 0, 1, 10, 11, 2, 3, 11}, 0);
    y = tg_concat(2, (tg_tensor *[]){a, a}, 0);
    tgt_assert_shape(y, TG_SHAPE(4, 2));
    tgt_assert_tensor(y, (const double[]){0, 1, 2, 3, 0, 1, 2, 3}, 0);
    /* One input: a copy. An empty input contributes nothing. */
    y = tg_concat(1, (tg_tensor *[]){a}, 0);
    tgt_assert_shape(y, TG_SHAPE(2, 2));
    ck_assert_ptr_ne(y->data, a->data);
    tg_tensor *e = tg_tensor_new(TG_F64, TG_SHAPE(2, 0));
    y = tg_concat(3, (tg_tensor *[]){e, b, e}, 1);
    tgt_assert_shape(y, TG_SHAPE(2, 1));
    tgt_assert_tensor(y, (const double[]){10, 11}, 0);
    tgt_assert_shape(tg_concat(2, (tg_tensor *[]){e, e}, 1), TG_SHAPE(2, 0));
    /* I64 data. */
    tg_tensor *l = iota(TG_I64, TG_SHAPE(3));
    y = tg_concat(2, (tg_tensor *[]){l, l}, 0);
    ck_assert_int_eq(y->dtype, TG_I64);
    tgt_assert_tensor(y, (const double[]){0, 1, 2, 0, 1, 2}, 0);
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(e);
    tg_tensor_free(l);
}
END_TEST

/* Only the inputs that require a gradient get one; each gets its own slab of g. */
START_TEST(test_concat_backward_values) {
    tg_tensor *a = iota(TG_F64, TG_SHAPE(2, 2)), *b = iota(TG_F64, TG_SHAPE(2, 1)),
              *c = iota(TG_F64, TG_SHAPE(2, 3));
    tg_requires_grad(a, true);
    tg_requires_grad(c, true);
    tg_tensor *y = tg_concat(3, (tg_tensor *[]){a, b, c}, 1);
    ck_assert_str_eq(tg__tape_last()->op, "concat");
    /* weights w[i, j] = j + 1 over y's 6 columns */
    tg_tensor *w = tg_tensor_from(TG_F64, TG_SHAPE(6), (const double[]){1, 2, 3, 4, 5, 6});
    ck_assert_int_eq(tg_backward(tg_sum(tg_mul(y, w), TG_ALL, false)), 0);
    tgt_assert_tensor(a->grad, (const double[]){1, 2, 1, 2}, 0);
    ck_assert_ptr_null(b->grad);
    tgt_assert_tensor(c->grad, (const double[]){4, 5, 6, 4, 5, 6}, 0);
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(c);
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_concat_errors) {
    tg_tensor *a = tg_tensor_new(TG_F64, TG_SHAPE(2, 3)),
              *b = tg_tensor_new(TG_F64, TG_SHAPE(3, 3));
    tg_tensor *f = tg_tensor_new(TG_F32, TG_SHAPE(2, 3)), *v = tg_tensor_new(TG_F64, TG_SHAPE(6));
    tg_tensor *s = tg_scalar(TG_F64, 1);
    ck_assert_op_error(tg_concat(2, (tg_tensor *[]){a, b}, 1), "tg_concat",
                       "shapes differ outside axis 1", "[2,3]", "[3,3]");
    ck_assert_op_error(tg_concat(2, (tg_tensor *[]){a, v}, 0), "tg_concat",
                       "shapes differ outside axis 0", "[2,3]", "[6]");
    ck_assert_op_error(tg_concat(3, (tg_tensor *[]){a, a, f}, 0), "tg_concat", "dtypes differ",
                       "f64 [2,3]", "input 2 is f32 [2,3]");
    ck_assert_op_error(tg_concat(2, (tg_tensor *[]){a, a}, 2), "tg_concat",
                       "axis 2 out of range for [2,3]");
    ck_assert_op_error(tg_concat(2, (tg_tensor *[]){s, s}, 0), "tg_concat",
                       "axis 0 out of range for []");
    ck_assert_op_error(tg_concat(0, (tg_tensor *[]){a}, 0), "tg_concat", "n >= 1", "n = 0");
    ck_assert_op_error(tg_concat(1, NULL, 0), "tg_concat", "xs = NULL");
    ck_assert_op_error(tg_concat(2, (tg_tensor *[]){a, NULL}, 0), "tg_concat", "NULL");
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(f);
    tg_tensor_free(v);
    tg_tensor_free(s);
}
END_TEST

/* ================= index_select ================= */

START_TEST(test_index_select_values) {
    tg_tensor *x = iota(TG_F64, TG_SHAPE(3, 2));
    tg_tensor *i0 = index_1d(3, (const int64_t[]){2, 0, 2});
    tg_tensor *y = tg_index_select(x, 0, i0);
    tgt_assert_shape(y, TG_SHAPE(3, 2));
    tgt_assert_tensor(y, (const double[]){4, 5, 0, 1, 4, 5}, 0);
    tg_tensor *i1 = index_1d(4, (const int64_t[]){1, 1, 0, 1});
    y = tg_index_select(x, -1, i1);
    tgt_assert_shape(y, TG_SHAPE(3, 4));
    tgt_assert_tensor(y, (const double[]){1, 1, 0, 1, 3, 3, 2, 3, 5, 5, 4, 5}, 0);
    /* An empty index gives an empty axis. */
    tg_tensor *ie = tg_tensor_new(TG_I64, TG_SHAPE(0));
    tgt_assert_shape(tg_index_select(x, 1, ie), TG_SHAPE(3, 0));
    /* I64 data (an embedding of labels). */
    tg_tensor *l = iota(TG_I64, TG_SHAPE(4));
    y = tg_index_select(l, 0, i0);
    ck_assert_int_eq(y->dtype, TG_I64);
    tgt_assert_tensor(y, (const double[]){2, 0, 2}, 0);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(i0);
    tg_tensor_free(i1);
    tg_tensor_free(ie);
    tg_tensor_free(l);
}
END_TEST

/* Repeated indices: their gradients add up; unselected rows get zero. */
START_TEST(test_index_select_backward_values) {
    tg_tensor *x = iota(TG_F64, TG_SHAPE(4, 2));
    tg_tensor *idx = index_1d(4, (const int64_t[]){2, 0, 2, 2});
    tg_requires_grad(x, true);
    tg_tensor *y = tg_index_select(x, 0, idx);
    ck_assert_str_eq(tg__tape_last()->op, "index_select");
    /* weights 1, 10, 100, 1000 on the four selected rows */
    tg_tensor *w = tg_tensor_from(TG_F64, TG_SHAPE(4, 1), (const double[]){1, 10, 100, 1000});
    ck_assert_int_eq(tg_backward(tg_sum(tg_mul(y, w), TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, (const double[]){10, 10, 0, 0, 1101, 1101, 0, 0}, 0);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(idx);
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_index_select_errors) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(3, 2)), *s = tg_scalar(TG_F64, 1);
    tg_tensor *ok = index_1d(2, (const int64_t[]){0, 1});
    tg_tensor *big = index_1d(3, (const int64_t[]){0, 3, 1});
    tg_tensor *neg = index_1d(1, (const int64_t[]){-1});
    tg_tensor *fidx = tg_tensor_from(TG_F64, TG_SHAPE(2), (const double[]){0, 1});
    tg_tensor *idx2d = tg_tensor_new(TG_I64, TG_SHAPE(2, 1));
    ck_assert_op_error(tg_index_select(x, 0, big), "tg_index_select", "index value 3", "position 1",
                       "out of range [0, 3)", "axis 0 of [3,2]");
    ck_assert_op_error(tg_index_select(x, 1, big), "tg_index_select", "index value 3",
                       "out of range [0, 2)", "axis 1 of [3,2]");
    ck_assert_op_error(tg_index_select(x, 0, neg), "tg_index_select", "index value -1", "[3,2]");
    ck_assert_op_error(tg_index_select(x, 0, fidx), "tg_index_select", "1-D i64", "f64 [2]",
                       "[3,2]");
    ck_assert_op_error(tg_index_select(x, 0, idx2d), "tg_index_select", "1-D i64", "i64 [2,1]");
    tg_tensor *idx0d = tg_scalar(TG_I64, 0);
    ck_assert_op_error(tg_index_select(x, 0, idx0d), "tg_index_select", "1-D i64", "i64 []",
                       "[3,2]");
    tg_tensor_free(idx0d);
    ck_assert_op_error(tg_index_select(x, 2, ok), "tg_index_select",
                       "axis 2 out of range for [3,2]");
    ck_assert_op_error(tg_index_select(s, 0, ok), "tg_index_select", "axis 0 out of range for []");
    ck_assert_op_error(tg_index_select(NULL, 0, ok), "tg_index_select", "NULL");
    ck_assert_op_error(tg_index_select(x, 0, NULL), "tg_index_select", "NULL");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(s);
    tg_tensor_free(ok);
    tg_tensor_free(big);
    tg_tensor_free(neg);
    tg_tensor_free(fidx);
    tg_tensor_free(idx2d);
}
END_TEST

/* ================= gather ================= */

START_TEST(test_gather_values) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2, 3), (const double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *i1 = tg_tensor_from(TG_I64, TG_SHAPE(2, 2), (const int64_t[]){0, 0, 2, 1});
    tg_tensor *y = tg_gather(x, 1, i1);
    tgt_assert_shape(y, TG_SHAPE(2, 2));
    tgt_assert_tensor(y, (const double[]){1, 1, 6, 5}, 0);
    /* axis 0: y[i][j] = x[index[i][j]][j] */
    tg_tensor *i0 = tg_tensor_from(TG_I64, TG_SHAPE(1, 3), (const int64_t[]){1, 0, 1});
    y = tg_gather(x, -2, i0);
    tgt_assert_shape(y, TG_SHAPE(1, 3));
    tgt_assert_tensor(y, (const double[]){4, 2, 6}, 0);
    /* 3-D by the definition y[i][j][k] = z[i][index[i][j][k]][k], I64 data. */
    tg_tensor *z = iota(TG_I64, TG_SHAPE(2, 3, 2));
    const int64_t iv[] = {2, 0, 1, 1, 0, 0, 0, 2, 2, 1, 1, 2, 0, 0, 2, 1};
    tg_tensor *i3 = tg_tensor_from(TG_I64, TG_SHAPE(2, 4, 2), iv);
    tg_tensor *w = tg_gather(z, 1, i3);
    tgt_assert_shape(w, TG_SHAPE(2, 4, 2));
    ck_assert_int_eq(w->dtype, TG_I64);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 2; k++)
                ck_assert_close(tg_tensor_get(w, (i * 4 + j) * 2 + k),
                                tg_tensor_get(z, (i * 3 + iv[(i * 4 + j) * 2 + k]) * 2 + k), 0);
    /* An empty index along the axis. */
    tg_tensor *ie = tg_tensor_new(TG_I64, TG_SHAPE(2, 0));
    tgt_assert_shape(tg_gather(x, 1, ie), TG_SHAPE(2, 0));
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(i1);
    tg_tensor_free(i0);
    tg_tensor_free(z);
    tg_tensor_free(i3);
    tg_tensor_free(ie);
}
END_TEST

START_TEST(test_gather_backward_values) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2, 3), (const double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *idx = tg_tensor_from(TG_I64, TG_SHAPE(2, 2), (const int64_t[]){0, 0, 2, 1});
    tg_requires_grad(x, true);
    tg_tensor *y = tg_gather(x, 1, idx);
    ck_assert_str_eq(tg__tape_last()->op, "gather");
    ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, (const double[]){2, 0, 0, 0, 1, 1}, 0);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(idx);
}
END_TEST

START_TEST(test_gather_errors) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(2, 3)), *s = tg_scalar(TG_F64, 1);
    tg_tensor *ok = tg_tensor_from(TG_I64, TG_SHAPE(2, 1), (const int64_t[]){0, 2});
    tg_tensor *big = tg_tensor_from(TG_I64, TG_SHAPE(2, 2), (const int64_t[]){0, 1, 3, 0});
    tg_tensor *neg = tg_tensor_from(TG_I64, TG_SHAPE(2, 1), (const int64_t[]){0, -2});
    tg_tensor *fidx = tg_tensor_new(TG_F64, TG_SHAPE(2, 1));
    tg_tensor *i1d = tg_tensor_new(TG_I64, TG_SHAPE(2));
    tg_tensor *wrong = tg_tensor_new(TG_I64, TG_SHAPE(3, 1));
    ck_assert_op_error(tg_gather(x, 1, big), "tg_gather", "index value 3", "position 2",
                       "out of range [0, 3)", "axis 1 of [2,3]");
    ck_assert_op_error(tg_gather(x, 1, neg), "tg_gather", "index value -2", "[2,3]");
    ck_assert_op_error(tg_gather(x, 1, fidx), "tg_gather", "i64", "f64 [2,1]", "[2,3]");
    ck_assert_op_error(tg_gather(x, 1, i1d), "tg_gather", "index [2]", "x [2,3]");
    tg_tensor *i0d = tg_scalar(TG_I64, 0);
    ck_assert_op_error(tg_gather(x, 0, i0d), "tg_gather", "index []", "x [2,3]");
    tg_tensor_free(i0d);
    ck_assert_op_error(tg_gather(x, 1, wrong), "tg_gather", "index [3,1]", "x [2,3]",
                       "every axis but axis 1");
    ck_assert_op_error(tg_gather(x, 2, ok), "tg_gather", "axis 2 out of range for [2,3]");
    ck_assert_op_error(tg_gather(s, 0, ok), "tg_gather", "axis 0 out of range for []");
    ck_assert_op_error(tg_gather(NULL, 0, ok), "tg_gather", "NULL");
    ck_assert_op_error(tg_gather(x, 0, NULL), "tg_gather", "NULL");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(s);
    tg_tensor_free(ok);
    tg_tensor_free(big);
    tg_tensor_free(neg);
    tg_tensor_free(fidx);
    tg_tensor_free(i1d);
    tg_tensor_free(wrong);
}
END_TEST

/* ================= cast ================= */

START_TEST(test_cast_values) {
    tg_tensor *x =
        tg_tensor_from(TG_F64, TG_SHAPE(6), (const double[]){0.1, -2.7, 2.7, 1e30, -1e30, NAN});
    tg_tensor *f = tg_cast(x, TG_F32);
    ck_assert_int_eq(f->dtype, TG_F32);
    ck_assert_close(tg_tensor_get(f, 0), (double)0.1f, 0);
    ck_assert_close(tg_tensor_get(f, 1), (double)-2.7f, 0);
    ck_assert(isnan(tg_tensor_get(f, 5)));
    tg_tensor *d = tg_cast(f, TG_F64);
    ck_assert_int_eq(d->dtype, TG_F64);
    ck_assert_close(tg_tensor_get(d, 0), (double)0.1f, 0);
    /* To I64: truncation toward zero, saturation beyond the range, NaN -> 0. */
    tg_tensor *l = tg_cast(x, TG_I64);
    ck_assert_int_eq(l->dtype, TG_I64);
    const int64_t *lv = l->data;
    ck_assert_int_eq(lv[0], 0);
    ck_assert_int_eq(lv[1], -2);
    ck_assert_int_eq(lv[2], 2);
    ck_assert_int_eq(lv[3], INT64_MAX);
    ck_assert_int_eq(lv[4], INT64_MIN);
    ck_assert_int_eq(lv[5], 0);
    /* From I64. */
    tg_tensor *li = tg_tensor_from(TG_I64, TG_SHAPE(2), (const int64_t[]){-3, 1 << 20});
    tgt_assert_tensor(tg_cast(li, TG_F32), (const double[]){-3, 1 << 20}, 0);
    tgt_assert_tensor(tg_cast(li, TG_F64), (const double[]){-3, 1 << 20}, 0);
    /* Same dtype: a copy. 0-d and empty. */
    tg_tensor *c = tg_cast(x, TG_F64);
    ck_assert_ptr_ne(c->data, x->data);
    ck_assert_close(tg_tensor_get(c, 2), 2.7, 0);
    tg_tensor *s = tg_scalar(TG_F64, 1.5);
    tg_tensor *s32 = tg_cast(s, TG_F32);
    ck_assert_int_eq(s32->ndim, 0);
    ck_assert_close(tg_item(s32), 1.5, 0);
    tg_tensor *e = tg_tensor_new(TG_F32, TG_SHAPE(0, 2));
    tgt_assert_shape(tg_cast(e, TG_I64), TG_SHAPE(0, 2));
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(li);
    tg_tensor_free(s);
    tg_tensor_free(e);
}
END_TEST

/* F32 <-> F64 is differentiable, the gradient cast back; to or from I64 records
 * nothing. */
START_TEST(test_cast_gradients) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), (const double[]){1, -2, 0.5});
    tg_requires_grad(x, true);
    tg_tensor *y = tg_cast(x, TG_F32);
    ck_assert(y->requires_grad);
    ck_assert_str_eq(tg__tape_last()->op, "cast");
    ck_assert_int_eq(tg_backward(tg_sum(tg_square(y), TG_ALL, false)), 0);
    ck_assert_int_eq(x->grad->dtype, TG_F64);
    tgt_assert_tensor(x->grad, (const double[]){2, -4, 1}, 0);
    tg_tape_reset();

    tg_tensor *x32 = tg_tensor_from(TG_F32, TG_SHAPE(2), (const float[]){3, 4});
    tg_requires_grad(x32, true);
    ck_assert_int_eq(tg_backward(tg_sum(tg_square(tg_cast(x32, TG_F64)), TG_ALL, false)), 0);
    ck_assert_int_eq(x32->grad->dtype, TG_F32);
    tgt_assert_tensor(x32->grad, (const double[]){6, 8}, 0);
    tg_tape_reset();

    size_t before = tg_tape_size();
    tg_tensor *l = tg_cast(x, TG_I64);
    ck_assert_ptr_nonnull(l);
    ck_assert(!l->requires_grad);
    ck_assert_int_eq(tg_tape_size(), before);
    tg_tensor *back = tg_cast(l, TG_F64);
    ck_assert(!back->requires_grad);
    ck_assert_int_eq(tg_tape_size(), before);

    /* The round trip through F32 against finite differences: eps large enough that
     * the float rounding of the perturbed input (about 1e-7) stays below tolerance. */
    tg_gradcheck_opts opts = {1e-3, 1e-4, 1e-3, false};
    tgt_assert_grads(f_cast_roundtrip, NULL, 1, (tg_tensor *[]){x}, &opts, "cast F64-F32-F64");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(x32);
}
END_TEST

START_TEST(test_cast_errors) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(2, 3));
    ck_assert_op_error(tg_cast(x, (tg_dtype)7), "tg_cast", "invalid target dtype 7", "f64 [2,3]");
    ck_assert_op_error(tg_cast(NULL, TG_F32), "tg_cast", "NULL");
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* ================= error propagation ================= */

/* A failed op feeding a chain of shape ops: the first message survives. */
START_TEST(test_shape_null_keeps_first_error) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(3, 4));
    tg_tensor *idx = index_1d(1, (const int64_t[]){0});
    tg_clear_error();
    tg_tensor *bad = tg_slice(x, 1, 0, 9);
    ck_assert_ptr_null(bad);
    const char *first = "tg_slice: range [0, 9) out of bounds for axis 1 of [3,4]";
    ck_assert_str_eq(tg_error(), first);
    tg_tensor *y = tg_transpose(bad, 0, 1);
    y = tg_concat(2, (tg_tensor *[]){x, y}, 0);
    y = tg_index_select(y, 0, idx);
    y = tg_gather(y, 0, idx);
    y = tg_cast(y, TG_F32);
    y = tg_slice(y, 0, 0, 1);
    ck_assert_ptr_null(y);
    ck_assert_str_eq(tg_error(), first);
    tg_clear_error();
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(idx);
}
END_TEST

static Suite *shape_suite(void) {
    Suite *s = suite_create("shape");
    TCase *tc = tcase_create("all ops");
    tcase_add_test(tc, test_shape_gradcheck);
    tcase_add_test(tc, test_shape_f32_agrees_with_f64);
    tcase_add_test(tc, test_shape_broadcast_inputs);
    tcase_add_test(tc, test_shape_null_keeps_first_error);
    suite_add_tcase(s, tc);
    tc = tcase_create("transpose");
    tcase_add_test(tc, test_transpose_values);
    tcase_add_test(tc, test_transpose_errors);
    tcase_add_test(tc, test_transpose_every_pattern);
    tcase_add_test(tc, test_shape_overflow_rejected);
    suite_add_tcase(s, tc);
    tc = tcase_create("slice");
    tcase_add_test(tc, test_slice_values);
    tcase_add_test(tc, test_slice_backward_values);
    tcase_add_test(tc, test_slice_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("concat");
    tcase_add_test(tc, test_concat_values);
    tcase_add_test(tc, test_concat_backward_values);
    tcase_add_test(tc, test_concat_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("index_select");
    tcase_add_test(tc, test_index_select_values);
    tcase_add_test(tc, test_index_select_backward_values);
    tcase_add_test(tc, test_index_select_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("gather");
    tcase_add_test(tc, test_gather_values);
    tcase_add_test(tc, test_gather_backward_values);
    tcase_add_test(tc, test_gather_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("cast");
    tcase_add_test(tc, test_cast_values);
    tcase_add_test(tc, test_cast_gradients);
    tcase_add_test(tc, test_cast_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tgt_run(shape_suite()); }
