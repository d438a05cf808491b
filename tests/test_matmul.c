/* test_matmul.c — tg_matmul and tg_matmul_t: values against the definition
 * C[.., i, j] = sum_l op(A)[.., i, l] op(B)[.., l, j] with NumPy batch broadcasting,
 * gradients and second derivatives against finite differences, F32 against F64,
 * zero-size dimensions, and every way the input can be wrong. */
#include <stdlib.h>
#include <string.h>

#include "autodiff/internal.h"
#include "ref/ops2_ref.h"
#include "testutil.h"

/* ---- a reference product computed from the definition ---- */

/* op(X)[batch, i, l] for X stored with its transpose flag t, batch given as a flat
 * index into X's own batch dimensions. */
static double op_elem(const tg_tensor *x, bool t, int64_t batch, int64_t i, int64_t l) {
    int64_t r = x->shape[x->ndim - 2], c = x->shape[x->ndim - 1];
    int64_t row = t ? l : i, col = t ? i : l;
    return tg_tensor_get(x, (batch * r + row) * c + col);
}

/* Flat index into x's batch dimensions of the output batch multi-index idx[0..nbatch),
 * the dimensions aligned on the right, size-1 dimensions broadcasting. */
static int64_t batch_index(const tg_tensor *x, int nbatch, const int64_t *idx) {
    int nx = x->ndim - 2;
    int64_t flat = 0;
    for (int d = 0; d < nx; d++) {
        int64_t sz = x->shape[d];
        flat = flat * sz + (sz == 1 ? 0 : idx[d + nbatch - nx]);
    }
    return flat;
}

/* Checks y = op(a) op(b) element by element against the definition, and y's shape. */
static void assert_matmul_ref(const tg_tensor *y, const tg_tensor *a, const tg_tensor *b, bool ta,
                              bool tb, double rtol) {
    ck_assert_ptr_nonnull(y);
    int na = a->ndim - 2, nb = b->ndim - 2, nbatch = na > nb ? na : nb;
    int64_t m = a->shape[a->ndim - (ta ? 1 : 2)], k = a->shape[a->ndim - (ta ? 2 : 1)];
    int64_t n = b->shape[b->ndim - (tb ? 2 : 1)];
    ck_assert_int_eq(y->ndim, nbatch + 2);
    int64_t nbt = 1;
    for (int d = 0; d < nbatch; d++) {
        int64_t da = d - (nbatch - na) >= 0 ? a->shape[d - (nbatch - na)] : 1;
        int64_t db = d - (nbatch - nb) >= 0 ? b->shape[d - (nbatch - nb)] : 1;
        ck_assert_int_eq(y->shape[d], da == 1 ? db : da);
        nbt *= y->shape[d];
    }
    ck_assert_int_eq(y->shape[nbatch], m);
    ck_assert_int_eq(y->shape[nbatch + 1], n);
    int64_t idx[TG_MAX_DIMS] = {0};
    for (int64_t t = 0; t < nbt; t++) {
        int64_t rem = t;
        for (int d = nbatch - 1; d >= 0; d--) {
            idx[d] = rem % y->shape[d];
            rem /= y->shape[d];
        }
        int64_t ba = batch_index(a, nbatch, idx), bb = batch_index(b, nbatch, idx);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0, mag = 0;
                for (int64_t l = 0; l < k; l++) {
                    double p = op_elem(a, ta, ba, i, l) * op_elem(b, tb, bb, l, j);
                    s += p;
                    mag += fabs(p);
                }
                double got = tg_tensor_get(y, (t * m + i) * n + j);
                ck_assert_msg(fabs(got - s) <= rtol * mag + 1e-300,
                              "batch %lld [%lld,%lld]: got %.17g, want %.17g", (long long)t,
                              (long long)i, (long long)j, got, s);
            }
    }
}

/* ---- cases: logical shapes op(A) = [.., m, k], op(B) = [.., k, n] ---- */

typedef struct {
    int na;
    int64_t a[4];
    int nb;
    int64_t b[4];
} mm_case;

static const mm_case cases[] = {
    {2, {3, 4}, 2, {4, 2}},          /* plain 2-D */
    {4, {2, 1, 3, 4}, 3, {5, 4, 2}}, /* both batched, broadcast both ways */
    {3, {2, 3, 4}, 2, {4, 5}},       /* batch @ matrix (the folded path) */
    {2, {3, 2}, 3, {2, 2, 4}},       /* matrix @ batch */
    {2, {1, 1}, 2, {1, 1}},          /* 1x1 */
    {2, {2, 1}, 2, {1, 3}},          /* k = 1: an outer product */
    {2, {3, 2}, 4, {2, 2, 2, 3}},    /* matrix @ two batch dims (dA: matmul_sum) */
    {4, {2, 1, 2, 3}, 2, {3, 2}},    /* two batch dims @ matrix */
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* A persistent random tensor with the stored shape of a logical [.., r, c] operand. */
static tg_tensor *operand(tg_dtype dt, int nd, const int64_t *logical, bool t, double lo,
                          double hi) {
    int64_t s[4];
    memcpy(s, logical, (size_t)nd * sizeof *s);
    if (t) {
        s[nd - 2] = logical[nd - 1];
        s[nd - 1] = logical[nd - 2];
    }
    return tgt_rand(dt, nd, s, lo, hi);
}

typedef struct {
    bool ta, tb;
} flags;

static tg_tensor *f_matmul_t(tg_tensor *const *in, void *ctx) {
    const flags *f = ctx;
    return tg_matmul_t(in[0], in[1], f->ta, f->tb);
}

/* A nonlinear function of the product, so that second derivatives in A and B are not
 * only the bilinear cross terms. */
static tg_tensor *f_matmul_sin(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_sin(tg_matmul(in[0], tg_sin(in[1])));
}

static tg_tensor *f_matmul(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_matmul(in[0], in[1]);
}

/* ================= forward values ================= */

START_TEST(test_matmul_2d_values) {
    const double av[] = {1, 2, 3, 4, 5, 6}, bv[] = {7, 8, 9, 10, 11, 12};
    const double want[] = {58, 64, 139, 154};
    for (int f = 0; f < 2; f++) {
        tg_dtype dt = f ? TG_F32 : TG_F64;
        tg_tensor *a = tg_tensor_new(dt, TG_SHAPE(2, 3)), *b = tg_tensor_new(dt, TG_SHAPE(3, 2));
        for (int i = 0; i < 6; i++) {
            tg_tensor_set(a, i, av[i]);
            tg_tensor_set(b, i, bv[i]);
        }
        tg_tensor *y = tg_matmul(a, b);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(y->dtype, dt);
        ck_assert_int_eq(y->ndim, 2);
        ck_assert_int_eq(y->shape[0], 2);
        ck_assert_int_eq(y->shape[1], 2);
        tgt_assert_tensor(y, want, 0);
        /* A^T B^T with A = [2,3] and B = [3,2] stored: (B A)^T = [[39,54,69],[49,68,87],
         * [59,82,105]]^T. */
        const double want_tt[] = {39, 49, 59, 54, 68, 82, 69, 87, 105};
        tgt_assert_tensor(tg_matmul_t(a, b, true, true), want_tt, 0);
        /* A A^T = [[14,32],[32,77]], A^T A = [[17,22,27],[22,29,36],[27,36,45]] */
        tgt_assert_tensor(tg_matmul_t(a, a, false, true), (const double[]){14, 32, 32, 77}, 0);
        tgt_assert_tensor(tg_matmul_t(a, a, true, false),
                          (const double[]){17, 22, 27, 22, 29, 36, 27, 36, 45}, 0);
        tg_tape_reset();
        tg_tensor_free(a);
        tg_tensor_free(b);
    }
}
END_TEST

START_TEST(test_matmul_batched_broadcast_values) {
    tgt_seed(11);
    for (int c = 0; c < NCASES; c++)
        for (int fl = 0; fl < 4; fl++) {
            bool ta = fl & 1, tb = fl & 2;
            const mm_case *k = &cases[c];
            tg_tensor *a = operand(TG_F64, k->na, k->a, ta, -1, 1);
            tg_tensor *b = operand(TG_F64, k->nb, k->b, tb, -1, 1);
            tg_tensor *y = tg_matmul_t(a, b, ta, tb);
            ck_assert_msg(y != NULL, "case %d flags %d: %s", c, fl, tg_error());
            assert_matmul_ref(y, a, b, ta, tb, 1e-14);
            if (!ta && !tb) assert_matmul_ref(tg_matmul(a, b), a, b, false, false, 1e-14);
            tg_tape_reset();
            tg_tensor_free(a);
            tg_tensor_free(b);
        }
}
END_TEST

/* [2,1,3,4] @ [5,4,2] -> [2,5,3,2]: the example of the documentation, one entry by hand. */
START_TEST(test_matmul_broadcast_shape_example) {
    tg_tensor *a = tg_tensor_new(TG_F64, TG_SHAPE(2, 1, 3, 4));
    tg_tensor *b = tg_tensor_new(TG_F64, TG_SHAPE(5, 4, 2));
    for (int64_t i = 0; i < a->numel; i++)
        tg_tensor_set(a, i, (double)i);
    for (int64_t i = 0; i < b->numel; i++)
        tg_tensor_set(b, i, (double)(i % 7));
    tg_tensor *y = tg_matmul(a, b);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->ndim, 4);
    const int64_t want_shape[] = {2, 5, 3, 2};
    for (int d = 0; d < 4; d++)
        ck_assert_int_eq(y->shape[d], want_shape[d]);
    /* y[1, 3, 2, 1] = sum_l a[1, 0, 2, l] * b[3, l, 1]
     *   a[1,0,2,:] = 20..23;  b[3,:,1] = flat 25, 27, 29, 31 -> mod 7: 4, 6, 1, 3
     *   = 20*4 + 21*6 + 22*1 + 23*3 = 80 + 126 + 22 + 69 = 297 */
    ck_assert_close(tg_tensor_get(y, ((1 * 5 + 3) * 3 + 2) * 2 + 1), 297.0, 0);
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_matmul_f32_agrees_with_f64) {
    tgt_seed(5);
    for (int c = 0; c < NCASES; c++)
        for (int fl = 0; fl < 4; fl++) {
            bool ta = fl & 1, tb = fl & 2;
            const mm_case *k = &cases[c];
            tg_tensor *a32 = operand(TG_F32, k->na, k->a, ta, 0.5, 1.5);
            tg_tensor *b32 = operand(TG_F32, k->nb, k->b, tb, 0.5, 1.5);
            tg_tensor *a64 = tg_tensor_new(TG_F64, a32->ndim, a32->shape);
            tg_tensor *b64 = tg_tensor_new(TG_F64, b32->ndim, b32->shape);
            for (int64_t i = 0; i < a32->numel; i++)
                tg_tensor_set(a64, i, tg_tensor_get(a32, i));
            for (int64_t i = 0; i < b32->numel; i++)
                tg_tensor_set(b64, i, tg_tensor_get(b32, i));
            tg_requires_grad(a32, true);
            tg_requires_grad(b32, true);
            tg_requires_grad(a64, true);
            tg_requires_grad(b64, true);
            tg_tensor *y32 = tg_matmul_t(a32, b32, ta, tb), *y64 = tg_matmul_t(a64, b64, ta, tb);
            ck_assert_ptr_nonnull(y32);
            ck_assert_ptr_nonnull(y64);
            ck_assert_int_eq(y32->dtype, TG_F32);
            ck_assert(tg_same_shape(y32, y64));
            for (int64_t i = 0; i < y64->numel; i++) {
                double w = tg_tensor_get(y64, i);
                ck_assert_close(tg_tensor_get(y32, i), w, 1e-5 * fabs(w));
            }
            /* Gradients of sum(y^2) agree too. */
            ck_assert_int_eq(tg_backward(tg_sum(tg_square(y32), TG_ALL, false)), 0);
            ck_assert_int_eq(tg_backward(tg_sum(tg_square(y64), TG_ALL, false)), 0);
            for (int64_t i = 0; i < a64->numel; i++) {
                double w = tg_tensor_get(a64->grad, i);
                ck_assert_close(tg_tensor_get(a32->grad, i), w, 1e-5 * fabs(w));
            }
            for (int64_t i = 0; i < b64->numel; i++) {
                double w = tg_tensor_get(b64->grad, i);
                ck_assert_close(tg_tensor_get(b32->grad, i), w, 1e-5 * fabs(w));
            }
            tg_tape_reset();
            tg_tensor_free(a32);
            tg_tensor_free(b32);
            tg_tensor_free(a64);
            tg_tensor_free(b64);
        }
}
END_TEST

/* tg_matmul itself (no flags) through the shared F32 check: results and the gradients
 * of their sum, on every case. */
START_TEST(test_matmul_plain_f32_agrees) {
    tgt_seed(6);
    for (int c = 0; c < NCASES; c++) {
        const mm_case *k = &cases[c];
        tg_tensor *a = operand(TG_F64, k->na, k->a, false, 0.5, 1.5);
        tg_tensor *b = operand(TG_F64, k->nb, k->b, false, 0.5, 1.5);
        tg_requires_grad(a, true);
        tg_requires_grad(b, true);
        char what[32];
        snprintf(what, sizeof what, "tg_matmul case %d", c);
        tgt_assert_f32_agrees(f_matmul, NULL, 2, (tg_tensor *[]){a, b}, what);
        tg_tensor_free(a);
        tg_tensor_free(b);
    }
}
END_TEST

/* ================= zero-size dimensions ================= */

START_TEST(test_matmul_k_zero_gives_zeros) {
    tg_tensor *a = tg_tensor_new(TG_F64, TG_SHAPE(2, 0)),
              *b = tg_tensor_new(TG_F64, TG_SHAPE(0, 3));
    tg_requires_grad(a, true);
    tg_requires_grad(b, true);
    tg_tensor *y = tg_matmul(a, b);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[0], 2);
    ck_assert_int_eq(y->shape[1], 3);
    tgt_assert_tensor(y, (const double[]){0, 0, 0, 0, 0, 0}, 0);
    ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
    /* Transposed flags and a batch with k = 0 as well. */
    tg_tensor *at = tg_tensor_new(TG_F32, TG_SHAPE(3, 0, 2)),
              *bt = tg_tensor_new(TG_F32, TG_SHAPE(4, 0));
    tg_tensor *yt = tg_matmul_t(at, bt, true, true);
    ck_assert_ptr_nonnull(yt);
    ck_assert_int_eq(yt->ndim, 3);
    ck_assert_int_eq(yt->shape[0], 3);
    ck_assert_int_eq(yt->shape[1], 2);
    ck_assert_int_eq(yt->shape[2], 4);
    for (int64_t i = 0; i < yt->numel; i++)
        ck_assert_close(tg_tensor_get(yt, i), 0.0, 0);
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(at);
    tg_tensor_free(bt);
}
END_TEST

START_TEST(test_matmul_empty_m_n_batch) {
    struct {
        int na;
        int64_t a[3];
        int nb;
        int64_t b[3];
        int ny;
        int64_t y[3];
    } e[] = {
        {2, {0, 3}, 2, {3, 2}, 2, {0, 2}},          {2, {2, 3}, 2, {3, 0}, 2, {2, 0}},
        {3, {0, 2, 3}, 2, {3, 4}, 3, {0, 2, 4}},    {2, {2, 3}, 3, {0, 3, 4}, 3, {0, 2, 4}},
        {3, {2, 0, 3}, 3, {2, 3, 0}, 3, {2, 0, 0}},
    };
    for (size_t c = 0; c < sizeof e / sizeof e[0]; c++)
        for (int fl = 0; fl < 4; fl++) {
            bool ta = fl & 1, tb = fl & 2;
            tg_tensor *a = operand(TG_F64, e[c].na, e[c].a, ta, 0, 1);
            tg_tensor *b = operand(TG_F64, e[c].nb, e[c].b, tb, 0, 1);
            tg_requires_grad(a, true);
            tg_requires_grad(b, true);
            tg_tensor *y = tg_matmul_t(a, b, ta, tb);
            ck_assert_msg(y != NULL, "case %zu: %s", c, tg_error());
            ck_assert_int_eq(y->numel, 0);
            ck_assert(tg__shape_eq(y->ndim, y->shape, e[c].ny, e[c].y));
            ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
            ck_assert_ptr_nonnull(a->grad);
            ck_assert(tg_same_shape(a->grad, a));
            for (int64_t i = 0; i < a->numel; i++)
                ck_assert_close(tg_tensor_get(a->grad, i), 0, 0);
            tg_tape_reset();
            tg_tensor_free(a);
            tg_tensor_free(b);
        }
}
END_TEST

/* ================= gradients ================= */

/* d/dA sum(A B) = 1 B^T: every row of dA holds B's row sums; d/dB = A^T 1: every
 * column of dB holds A's column sums. */
START_TEST(test_matmul_backward_values) {
    tg_tensor *a = tg_tensor_from(TG_F64, TG_SHAPE(2, 3), (const double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = tg_tensor_from(TG_F64, TG_SHAPE(3, 2), (const double[]){7, 8, 9, 10, 11, 12});
    tg_requires_grad(a, true);
    tg_requires_grad(b, true);
    size_t before = tg_tape_size();
    tg_tensor *y = tg_matmul(a, b);
    ck_assert_int_eq(tg_tape_size(), before + 1);
    ck_assert_str_eq(tg__tape_last()->op, "matmul");
    ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
    tgt_assert_tensor(a->grad, (const double[]){15, 19, 23, 15, 19, 23}, 0);
    tgt_assert_tensor(b->grad, (const double[]){5, 5, 7, 7, 9, 9}, 0);
    tg_tape_reset();
    /* Nothing is recorded without a tensor that requires a gradient. */
    tg_requires_grad(a, false);
    tg_requires_grad(b, false);
    ck_assert_ptr_nonnull(tg_matmul(a, b));
    ck_assert_int_eq(tg_tape_size(), 0);
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* The gradient of a matrix broadcast over a batch (a convolution's weight) is the sum
 * over the batch of the per-matrix gradients, accumulated into one matrix by a
 * matmul_sum node; against that sum made by hand, for all four transpose flags, and the
 * node recorded by a TG_CREATE_GRAPH sweep. The same for a batch @ matrix product with A
 * transposed (without the flag its batch folds into one product). */
START_TEST(test_matmul_batch_sum_gradient) {
    tgt_seed(5);
    for (int side = 0; side < 2; side++)
        for (int fl = 0; fl < 4; fl++) {
            bool ta = fl & 1, tb = fl & 2;
            if (side == 1 && !ta) continue;
            const int64_t mat[2] = {3, 4}, bat[3] = {5, 4, 2}, bat_a[3] = {5, 2, 3},
                          mat_b[2] = {3, 4};
            tg_tensor *a = side == 0 ? operand(TG_F64, 2, mat, ta, -1, 1)
                                     : operand(TG_F64, 3, bat_a, ta, -1, 1);
            tg_tensor *b = side == 0 ? operand(TG_F64, 3, bat, tb, -1, 1)
                                     : operand(TG_F64, 2, mat_b, tb, -1, 1);
            tg_tensor *w = side == 0 ? a : b, *batched = side == 0 ? b : a;
            tg_requires_grad(w, true);
            tg_requires_grad(batched, true); /* so that the sweep records its products */
            tg_tensor *y = tg_matmul_t(a, b, ta, tb);
            tg_tensor *seed = tgt_rand(TG_F64, y->ndim, y->shape, -1, 1);
            tg_tensor *loss = tg_sum(tg_mul(y, seed), TG_ALL, false), *dw = NULL;
            ck_assert_int_eq(tg_grad(1, &loss, NULL, 1, &w, &dw, TG_CREATE_GRAPH), 0);
            bool found = false;
            for (const tg__node *n = tg__tape_last(); n; n = n->prev)
                found |= strcmp(n->op, "matmul_sum") == 0;
            ck_assert_msg(found, "side %d flags %d: no matmul_sum node", side, fl);
            /* The sum over the batch of the gradients of each matrix product alone. */
            double want[12] = {0};
            for (int64_t i = 0; i < 5; i++) {
                tg_tensor *bi = tg_reshape(tg_slice(batched, 0, i, i + 1), 2, batched->shape + 1);
                tg_tensor *yi = side == 0 ? tg_matmul_t(a, bi, ta, tb) : tg_matmul_t(bi, b, ta, tb);
                tg_tensor *si = tg_reshape(tg_slice(seed, 0, i, i + 1), 2, seed->shape + 1),
                          *gi = NULL;
                tg_tensor *li = tg_sum(tg_mul(yi, si), TG_ALL, false);
                ck_assert_int_eq(tg_grad(1, &li, NULL, 1, &w, &gi, 0), 0);
                for (int64_t j = 0; j < w->numel; j++)
                    want[j] += tg_tensor_get(gi, j);
            }
            tgt_assert_tensor(dw, want, 1e-13);
            tg_tape_reset();
            tg_tensor_free(a);
            tg_tensor_free(b);
            tg_tensor_free(seed);
        }
}
END_TEST

/* All cases x all four transpose combinations, first and second derivatives. */
START_TEST(test_matmul_gradcheck) {
    tgt_seed(3);
    for (int c = 0; c < NCASES; c++)
        for (int fl = 0; fl < 4; fl++) {
            flags f = {fl & 1, (fl & 2) != 0};
            const mm_case *k = &cases[c];
            tg_tensor *a = operand(TG_F64, k->na, k->a, f.ta, -1, 1);
            tg_tensor *b = operand(TG_F64, k->nb, k->b, f.tb, -1, 1);
            tg_requires_grad(a, true);
            tg_requires_grad(b, true);
            char what[64];
            snprintf(what, sizeof what, "case %d, trans_a %d, trans_b %d", c, f.ta, f.tb);
            tgt_assert_grads(f_matmul_t, &f, 2, (tg_tensor *[]){a, b}, NULL, what);
            /* Only one side requiring a gradient. */
            tg_requires_grad(a, false);
            tgt_assert_grads(f_matmul_t, &f, 2, (tg_tensor *[]){a, b}, NULL, what);
            tg_tape_reset();
            tg_tensor_free(a);
            tg_tensor_free(b);
        }
}
END_TEST

START_TEST(test_matmul_gradcheck_nonlinear) {
    tgt_seed(4);
    for (int c = 0; c < NCASES; c++) {
        const mm_case *k = &cases[c];
        tg_tensor *a = operand(TG_F64, k->na, k->a, false, -1, 1);
        tg_tensor *b = operand(TG_F64, k->nb, k->b, false, -1, 1);
        tg_requires_grad(a, true);
        tg_requires_grad(b, true);
        char what[32];
        snprintf(what, sizeof what, "case %d", c);
        tgt_assert_grads(f_matmul_sin, NULL, 2, (tg_tensor *[]){a, b}, NULL, what);
        tgt_assert_grads(f_matmul, NULL, 2, (tg_tensor *[]){a, b}, NULL, what);
        tg_tape_reset();
        tg_tensor_free(a);
        tg_tensor_free(b);
    }
}
END_TEST

/* ================= bad input ================= */

START_TEST(test_matmul_error_inner_dims) {
    tg_tensor *a = tg_tensor_new(TG_F64, TG_SHAPE(3, 4)),
              *b = tg_tensor_new(TG_F64, TG_SHAPE(5, 2));
    ck_assert_op_error(tg_matmul(a, b), "tg_matmul: inner dimensions differ: [3,4] @ [5,2]");
    ck_assert_op_error(tg_matmul_t(a, b, true, false),
                       "tg_matmul_t: inner dimensions differ: [3,4]^T @ [5,2]");
    ck_assert_op_error(tg_matmul_t(a, b, false, true),
                       "tg_matmul_t: inner dimensions differ: [3,4] @ [5,2]^T");
    /* [3,4] @ [3,4]^T is fine, [3,4]^T @ [3,4]^T is not. */
    ck_assert_ptr_nonnull(tg_matmul_t(a, a, false, true));
    ck_assert_op_error(tg_matmul_t(a, a, true, true),
                       "tg_matmul_t: inner dimensions differ: [3,4]^T @ [3,4]^T");
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_matmul_error_ndim) {
    tg_tensor *v = tg_tensor_new(TG_F64, TG_SHAPE(3)), *m = tg_tensor_new(TG_F64, TG_SHAPE(3, 2));
    tg_tensor *s = tg_scalar(TG_F64, 2.0);
    /* Vectors follow NumPy in tg_matmul; their inner dimension must match. */
    ck_assert_op_error(tg_matmul(v, tg_transpose(m, 0, 1)), "tg_matmul", "inner dimensions differ",
                       "[3] @ [2,3]");
    ck_assert_op_error(tg_matmul(m, v), "tg_matmul", "inner dimensions differ", "[3,2] @ [3]");
    ck_assert_op_error(tg_matmul(v, tg_slice(v, 0, 0, 2)), "tg_matmul", "inner dimensions differ",
                       "[3] @ [2]");
    tg_tensor *b3 = tg_tensor_new(TG_F64, TG_SHAPE(2, 2, 3));
    ck_assert_op_error(tg_matmul(b3, tg_slice(v, 0, 0, 2)), "tg_matmul", "inner dimensions differ",
                       "[2,2,3] @ [2]");
    tg_tensor *v32 = tg_tensor_new(TG_F32, TG_SHAPE(3));
    ck_assert_op_error(tg_matmul(v32, m), "tg_matmul", "dtypes differ", "[3]");
    tg_tensor_free(v32);
    ck_assert_op_error(tg_matmul_t(s, m, true, false), "tg_matmul_t", "at least 2 dimensions",
                       "[]^T @ [3,2]");
    /* 0-d operands: a matrix product has no 0-d form. */
    ck_assert_op_error(tg_matmul(s, s), "tg_matmul", "at least 1 dimension", "[] @ []");
    ck_assert_op_error(tg_matmul(s, v), "tg_matmul", "at least 1 dimension", "[] @ [3]");
    ck_assert_op_error(tg_matmul(m, s), "tg_matmul", "at least 1 dimension", "[3,2] @ []");
    ck_assert_op_error(tg_matmul_t(v, m, false, false), "tg_matmul_t", "at least 2 dimensions",
                       "[3] @ [3,2]");
    ck_assert_op_error(tg_matmul_t(m, v, false, true), "tg_matmul_t", "at least 2 dimensions",
                       "[3,2] @ [3]^T");
    tg_tape_reset();
    tg_tensor_free(v);
    tg_tensor_free(m);
    tg_tensor_free(s);
    tg_tensor_free(b3);
}
END_TEST

/* 1-D operands (NumPy's rules): dot, matrix-vector, vector-matrix and batched
 * matrix-vector against PyTorch (tests/ref/gen_ops2_ref.py), values and the gradients of
 * sum(y * G); then gradcheck/gradgradcheck and F32 for these and for a vector against a
 * batched matrix. */
START_TEST(test_matmul_vectors) {
    tg_tensor *va = tg_tensor_from(TG_F64, TG_SHAPE(4), o2_mm_va);
    tg_tensor *vb = tg_tensor_from(TG_F64, TG_SHAPE(4), o2_mm_vb);
    tg_tensor *ma = tg_tensor_from(TG_F64, TG_SHAPE(3, 4), o2_mm_ma);
    tg_tensor *mb = tg_tensor_from(TG_F64, TG_SHAPE(4, 2), o2_mm_mb);
    tg_tensor *ba = tg_tensor_from(TG_F64, TG_SHAPE(2, 3, 4), o2_mm_ba);
    tg_tensor *g3 = tg_tensor_from(TG_F64, TG_SHAPE(3), o2_g3);
    tg_tensor *g2 = tg_tensor_from(TG_F64, TG_SHAPE(2), o2_g2);
    tg_tensor *g23 = tg_tensor_from(TG_F64, TG_SHAPE(2, 3), o2_g23);
    tg_tensor *all[] = {va, vb, ma, mb, ba};
    for (int i = 0; i < 5; i++)
        tg_requires_grad(all[i], true);
    struct {
        const char *name;
        tg_tensor *a, *b, *g;
        int nd;
        int64_t shape[2];
        const double *y, *ga, *gb;
    } vcases[] = {
        {"dot", va, vb, NULL, 0, {0}, o2_dot_y, o2_dot_ga, o2_dot_gb},
        {"mv", ma, va, g3, 1, {3}, o2_mv_y, o2_mv_ga, o2_mv_gb},
        {"vm", va, mb, g2, 1, {2}, o2_vm_y, o2_vm_ga, o2_vm_gb},
        {"bmv", ba, vb, g23, 2, {2, 3}, o2_bmv_y, o2_bmv_ga, o2_bmv_gb},
    };
    for (int k = 0; k < 4; k++) {
        tg_tensor *a = vcases[k].a, *b = vcases[k].b;
        tg_tensor *y = tg_matmul(a, b);
        tgt_assert_shape(y, vcases[k].nd, vcases[k].shape);
        tgt_assert_tensor(y, vcases[k].y, 1e-14);
        tg_tensor *l = tg_sum(vcases[k].g ? tg_mul(y, vcases[k].g) : y, TG_ALL, false);
        ck_assert_int_eq(tg_backward(l), 0);
        tgt_assert_tensor(a->grad, vcases[k].ga, 1e-14);
        tgt_assert_tensor(b->grad, vcases[k].gb, 1e-14);
        tg_zero_grad(a);
        tg_zero_grad(b);
        tg_tape_reset();
        tgt_assert_grads(f_matmul_sin, NULL, 2, (tg_tensor *[]){a, b}, NULL, vcases[k].name);
        tgt_assert_f32_agrees(f_matmul, NULL, 2, (tg_tensor *[]){a, b}, vcases[k].name);
    }
    /* [4] @ [2,4,3] -> [2,3] (vector against a batch of matrices). */
    tgt_seed(77);
    tg_tensor *bm = tgt_rand(TG_F64, TG_SHAPE(2, 4, 3), -1, 1);
    tg_requires_grad(bm, true);
    tg_tensor *y = tg_matmul(va, bm);
    tgt_assert_shape(y, 2, (int64_t[]){2, 3});
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < 3; j++) {
            double want = 0;
            for (int l = 0; l < 4; l++)
                want += o2_mm_va[l] * tg_tensor_get(bm, (b * 4 + l) * 3 + j);
            ck_assert_close(tg_tensor_get(y, b * 3 + j), want, 1e-14);
        }
    tgt_assert_grads(f_matmul_sin, NULL, 2, (tg_tensor *[]){va, bm}, NULL, "vector @ batch");
    tgt_assert_f32_agrees(f_matmul, NULL, 2, (tg_tensor *[]){va, bm}, "vector @ batch");
    tg_tape_reset();
    for (int i = 0; i < 5; i++)
        tg_tensor_free(all[i]);
    tg_tensor_free(g3);
    tg_tensor_free(g2);
    tg_tensor_free(g23);
    tg_tensor_free(bm);
}
END_TEST

START_TEST(test_matmul_error_dtype) {
    tg_tensor *a = tg_tensor_new(TG_F32, TG_SHAPE(3, 4)),
              *b = tg_tensor_new(TG_F64, TG_SHAPE(4, 2));
    tg_tensor *i = tg_tensor_new(TG_I64, TG_SHAPE(3, 4)),
              *j = tg_tensor_new(TG_I64, TG_SHAPE(4, 2));
    ck_assert_op_error(tg_matmul(a, b), "tg_matmul", "dtypes differ", "f32 [3,4]", "f64 [4,2]");
    ck_assert_op_error(tg_matmul_t(b, a, true, true), "tg_matmul_t", "dtypes differ");
    ck_assert_op_error(tg_matmul(i, j), "tg_matmul", "f32 or f64", "i64 [3,4]");
    ck_assert_op_error(tg_matmul_t(i, j, true, false), "tg_matmul_t", "f32 or f64", "i64 [3,4]");
    ck_assert_op_error(tg_matmul_t(a, j, false, false), "tg_matmul_t", "dtypes differ", "f32 [3,4]",
                       "i64 [4,2]");
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(i);
    tg_tensor_free(j);
}
END_TEST

START_TEST(test_matmul_error_batch) {
    tg_tensor *a = tg_tensor_new(TG_F64, TG_SHAPE(2, 3, 4)),
              *b = tg_tensor_new(TG_F64, TG_SHAPE(3, 4, 2));
    ck_assert_op_error(tg_matmul(a, b), "tg_matmul", "batch dimensions do not broadcast",
                       "[2,3,4] @ [3,4,2]");
    tg_tensor *c = tg_tensor_new(TG_F64, TG_SHAPE(2, 1, 3, 4)),
              *d = tg_tensor_new(TG_F64, TG_SHAPE(3, 3, 2, 4));
    ck_assert_op_error(tg_matmul_t(c, d, false, true), "tg_matmul_t",
                       "batch dimensions do not broadcast", "[2,1,3,4] @ [3,3,2,4]^T");
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(c);
    tg_tensor_free(d);
}
END_TEST

START_TEST(test_matmul_error_null) {
    tg_tensor *a = tg_tensor_new(TG_F64, TG_SHAPE(3, 4));
    ck_assert_op_error(tg_matmul(NULL, a), "tg_matmul", "NULL");
    ck_assert_op_error(tg_matmul(a, NULL), "tg_matmul", "NULL");
    ck_assert_op_error(tg_matmul_t(NULL, NULL, true, false), "tg_matmul_t", "NULL");
    ck_assert_op_error(tg_matmul_t(NULL, a, false, true), "tg_matmul_t", "NULL");
    ck_assert_op_error(tg_matmul_t(a, NULL, true, false), "tg_matmul_t", "NULL");
    tg_tape_reset();
    tg_tensor_free(a);
}
END_TEST

/* A failed op feeding a matmul: the first message survives. */
START_TEST(test_matmul_null_keeps_first_error) {
    tg_tensor *a = tg_tensor_new(TG_F64, TG_SHAPE(3, 4)),
              *b = tg_tensor_new(TG_F64, TG_SHAPE(5, 2));
    tg_clear_error();
    tg_tensor *bad = tg_matmul(a, b);
    ck_assert_ptr_null(bad);
    tg_tensor *y = tg_matmul(tg_matmul_t(bad, a, false, true), a);
    ck_assert_ptr_null(y);
    ck_assert_ptr_nonnull(tg_error());
    ck_assert_str_eq(tg_error(), "tg_matmul: inner dimensions differ: [3,4] @ [5,2]");
    tg_clear_error();
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

static Suite *matmul_suite(void) {
    Suite *s = suite_create("matmul");
    TCase *tc = tcase_create("values");
    tcase_add_test(tc, test_matmul_2d_values);
    tcase_add_test(tc, test_matmul_batched_broadcast_values);
    tcase_add_test(tc, test_matmul_broadcast_shape_example);
    tcase_add_test(tc, test_matmul_f32_agrees_with_f64);
    tcase_add_test(tc, test_matmul_plain_f32_agrees);
    tcase_add_test(tc, test_matmul_k_zero_gives_zeros);
    tcase_add_test(tc, test_matmul_empty_m_n_batch);
    suite_add_tcase(s, tc);
    tc = tcase_create("gradients");
    tcase_add_test(tc, test_matmul_backward_values);
    tcase_add_test(tc, test_matmul_gradcheck);
    tcase_add_test(tc, test_matmul_batch_sum_gradient);
    tcase_add_test(tc, test_matmul_gradcheck_nonlinear);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, test_matmul_error_inner_dims);
    tcase_add_test(tc, test_matmul_error_ndim);
    tcase_add_test(tc, test_matmul_vectors);
    tcase_add_test(tc, test_matmul_error_dtype);
    tcase_add_test(tc, test_matmul_error_batch);
    tcase_add_test(tc, test_matmul_error_null);
    tcase_add_test(tc, test_matmul_null_keeps_first_error);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tgt_run(matmul_suite()); }
