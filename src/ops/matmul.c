/* matmul.c — matrix products on OpenBLAS gemm, with NumPy-broadcast batch dimensions.
 *
 * C = op(A) op(B), op(X) = X or X^T on the last two dimensions. Transposition is only
 * ever a flag passed to gemm: no transposed copy is made, forward or backward. The
 * batch (every dimension but the last two) broadcasts like NumPy; the strided walker
 * (common.c) enumerates the output's batch entries together with the A and B batch
 * entries they read, one gemm per entry. When B has no batch dimensions and A is not
 * transposed, A's batch is folded into gemm's M: one call for the whole batch.
 *
 * tg_matmul also takes vectors, as NumPy does: a 1-D operand becomes a matrix by a
 * reshape (A [k] -> [1, k], B [k] -> [k, 1]) and the result loses that dimension by
 * another reshape. Reshapes share data and are ops, so the gradient (and the second
 * derivative) of a dot, matrix-vector or vector-matrix product comes for free. */
#include <cblas.h>

#include "ops_internal.h"

/* One batch of products: the dimensions, leading dimensions and per-matrix element
 * counts of a planned matmul, plus the data pointers. */
typedef struct {
    tg_dtype dt;
    bool ta, tb;
    int64_t m, n, k;
    int64_t lda, ldb;               /* row lengths of A and B as stored */
    int64_t a_size, b_size, c_size; /* elements in one matrix of A, of B, of C */
    const void *a, *b;
    void *c;
} gemm_plan;

void tg__gemm(tg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a,
              int64_t lda, const void *b, int64_t ldb, double beta, void *c) {
    enum CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE opb = tb ? CblasTrans : CblasNoTrans;
    if (dt == TG_F64)
        cblas_dgemm(CblasRowMajor, opa, opb, (blasint)m, (blasint)n, (blasint)k, 1.0, a,
                    (blasint)lda, b, (blasint)ldb, beta, c, (blasint)n);
    else
        cblas_sgemm(CblasRowMajor, opa, opb, (blasint)m, (blasint)n, (blasint)k, 1.0f, a,
                    (blasint)lda, b, (blasint)ldb, (float)beta, c, (blasint)n);
}

/* C = op(A) op(B) + beta C for one M x N x K product of the plan (beta 0 or 1). */
static void gemm_beta(const gemm_plan *p, int64_t m, const void *a, const void *b, void *c,
                      double beta) {
    tg__gemm(p->dt, p->ta, p->tb, m, p->n, p->k, a, p->lda, b, p->ldb, beta, c);
}

static void gemm_one(const gemm_plan *p, int64_t m, const void *a, const void *b, void *c) {
    gemm_beta(p, m, a, b, c, 0.0);
}

/* A run of the batch walker: n consecutive output matrices; st[0], st[1] are how far
 * (in matrices) A and B advance per output matrix (0 where they broadcast). */
static void gemm_run(int64_t n, int64_t off_c, const int64_t *off, const int64_t *st, void *vp) {
    const gemm_plan *p = vp;
    size_t es = tg_dtype_size(p->dt);
    const char *a = p->a, *b = p->b;
    char *c = p->c;
    for (int64_t i = 0; i < n; i++)
        gemm_one(p, p->m, a + (size_t)((off[0] + i * st[0]) * p->a_size) * es,
                 b + (size_t)((off[1] + i * st[1]) * p->b_size) * es,
                 c + (size_t)((off_c + i) * p->c_size) * es);
}

/* "^T" after a shape printed for an operand passed with its transpose flag set. */
#define T_(t) ((t) ? "^T" : "")

bool tg__fits_blas(int64_t v) { return (int64_t)(blasint)v == v; }

/* Whether the sizes of op(A) op(B) with M = m (A's batch folded in, where it is) fit
 * BLAS's int; an error naming op when not. */
static bool blas_dims_ok(const char *op, const tg_tensor *a, const tg_tensor *b, int64_t m,
                         int64_t n, int64_t k) {
    if (tg__fits_blas(m) && tg__fits_blas(n) && tg__fits_blas(k) &&
        tg__fits_blas(a->shape[a->ndim - 1]) && tg__fits_blas(b->shape[b->ndim - 1]))
        return true;
    tg__fail("%s: dimensions too large for BLAS: %s @ %s", op, tg__shp(a), tg__shp(b));
    return false;
}

/* A product of two operands with transpose flags: tg_matmul_t, or matmul_sum. */
typedef tg_tensor *(*product_fn)(tg_tensor *a, tg_tensor *b, bool ta, bool tb);

static tg_tensor *matmul_sum(tg_tensor *a, tg_tensor *b, bool ta, bool tb);

/* y = op(A) op(B); g = dL/dy. With the four flag combinations (batch dims aside):
 *   ta=0 tb=0: dA = G B^T      dB = A^T G
 *   ta=0 tb=1: dA = G B        dB = G^T A
 *   ta=1 tb=0: dA = B G^T      dB = A G
 *   ta=1 tb=1: dA = B^T G^T    dB = G^T A^T
 * Each is one product with flags (mul), so the backward is differentiable and copy-free. */
static tg_tensor *grad_a(product_fn mul, tg_tensor *b, tg_tensor *g, bool ta, bool tb) {
    return !ta ? (!tb ? mul(g, b, false, true) : mul(g, b, false, false))
               : (!tb ? mul(b, g, false, true) : mul(b, g, true, true));
}

static tg_tensor *grad_b(product_fn mul, tg_tensor *a, tg_tensor *g, bool ta, bool tb) {
    return !ta ? (!tb ? mul(a, g, true, false) : mul(g, a, true, false))
               : (!tb ? mul(a, g, false, false) : mul(g, a, true, true));
}

/* The backward of a matmul: the table above, each product a tg_matmul_t. Over broadcast
 * batch dimensions the result is summed back to the input's shape: an operand without
 * batch dimensions (the weight of a convolution, broadcast over the images) gets the sum
 * over the batch of the per-matrix products from matmul_sum, which accumulates them in
 * one gemm after another into one matrix instead of making all of them. */
static int matmul_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *a = n->in[0], *b = n->in[1];
    bool ta = n->i[0] != 0, tb = n->i[1] != 0;
    if (a->requires_grad) {
        /* A without batch dims: G and B have the output's batch dims, B's own. */
        bool summed = a->ndim == 2 && b->ndim > 2;
        tg_tensor *da = grad_a(summed ? matmul_sum : tg_matmul_t, b, g, ta, tb);
        if (da && !tg_same_shape(da, a)) da = tg_sum_to(da, a->ndim, a->shape);
        if (!(gin[0] = da)) return -1;
    }
    if (b->requires_grad) {
        tg_tensor *aa = a, *gg = g;
        product_fn mul = tg_matmul_t;
        if (b->ndim == 2 && a->ndim > 2) {
            if (!ta) {
                /* A batched and not transposed: the sum over the batch of A_i^T G_i is one
                 * product of A and G with the batch folded into their rows. */
                int64_t rows = tg__numel(a->ndim - 1, a->shape);
                aa = tg_reshape(a, 2, (const int64_t[]){rows, a->shape[a->ndim - 1]});
                gg = tg_reshape(g, 2, (const int64_t[]){rows, g->shape[g->ndim - 1]});
            } else {
                mul = matmul_sum;
            }
        }
        tg_tensor *db = grad_b(mul, aa, gg, ta, tb);
        if (db && !tg_same_shape(db, b)) db = tg_sum_to(db, b->ndim, b->shape);
        if (!(gin[1] = db)) return -1;
    }
    return 0;
}

/* matmul_sum: C = sum_i op(A_i) op(B_i) [m, n] over the batch entries i of A and B, whose
 * batch dimensions are equal. Its gradients are those of the matmul with G broadcast
 * over the batch: the same table, each product a tg_matmul_t of the 2-D G with a batched
 * operand, which gives the batched operand's shape. */
static int matmul_sum_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *a = n->in[0], *b = n->in[1];
    bool ta = n->i[0] != 0, tb = n->i[1] != 0;
    if (a->requires_grad && !(gin[0] = grad_a(tg_matmul_t, b, g, ta, tb))) return -1;
    if (b->requires_grad && !(gin[1] = grad_b(tg_matmul_t, a, g, ta, tb))) return -1;
    return 0;
}

static tg_tensor *matmul_sum(tg_tensor *a, tg_tensor *b, bool ta, bool tb) {
    return tg__matmul_sum("tg_matmul", a, b, ta, tb);
}

/* Reached from matmul_backward and from convolution's backward, with operands of equal
 * batch dimensions (at least one); the check guards that invariant. Errors name op, the
 * public function. */
tg_tensor *tg__matmul_sum(const char *op, tg_tensor *a, tg_tensor *b, bool ta, bool tb) {
    if (!tg__check_float2(op, a, b)) return NULL;
    int na = a->ndim, nb = b->ndim;
    if (na != nb || na < 3 || !tg__shape_eq(na - 2, a->shape, nb - 2, b->shape))
        return tg__fail("%s: a sum over the batch needs equal batch dimensions: %s%s @ %s%s", op,
                        tg__shp(a), T_(ta), tg__shp(b), T_(tb));
    int64_t m = a->shape[na - (ta ? 1 : 2)], k = a->shape[na - (ta ? 2 : 1)];
    int64_t kb = b->shape[nb - (tb ? 1 : 2)], n = b->shape[nb - (tb ? 2 : 1)];
    if (k != kb)
        return tg__fail("%s: inner dimensions differ: %s%s @ %s%s", op, tg__shp(a), T_(ta),
                        tg__shp(b), T_(tb));
    if (!blas_dims_ok(op, a, b, m, n, k)) return NULL;
    int64_t batch = tg__numel(na - 2, a->shape);
    bool empty = batch == 0 || k == 0;
    tg_tensor *y = empty ? tg__tape_zeros(a->dtype, 2, (const int64_t[]){m, n})
                         : tg__tape_tensor(a->dtype, 2, (const int64_t[]){m, n});
    if (!y) return NULL;
    if (y->numel > 0 && !empty) {
        gemm_plan p = {.dt = a->dtype,
                       .ta = ta,
                       .tb = tb,
                       .m = m,
                       .n = n,
                       .k = k,
                       .lda = a->shape[na - 1],
                       .ldb = b->shape[nb - 1]};
        size_t es = tg_dtype_size(a->dtype);
        const char *ap = a->data, *bp = b->data;
        for (int64_t i = 0; i < batch; i++)
            gemm_beta(&p, m, ap + (size_t)(i * m * k) * es, bp + (size_t)(i * k * n) * es, y->data,
                      i == 0 ? 0.0 : 1.0);
    }
    tg__node *nd = tg__record("matmul_sum", y, 2, (tg_tensor *const[]){a, b}, matmul_sum_backward);
    if (nd == TG__RECORD_FAILED) return NULL;
    if (nd) {
        nd->i[0] = ta;
        nd->i[1] = tb;
    }
    return y;
}

static tg_tensor *matmul_impl(const char *op, tg_tensor *a, tg_tensor *b, bool ta, bool tb) {
    if (!tg__check_float2(op, a, b)) return NULL;
    if (a->ndim < 2 || b->ndim < 2)
        return tg__fail("%s: both operands need at least 2 dimensions: %s%s @ %s%s", op, tg__shp(a),
                        T_(ta), tg__shp(b), T_(tb));
    int na = a->ndim, nb = b->ndim;
    int64_t m = a->shape[na - (ta ? 1 : 2)], ka = a->shape[na - (ta ? 2 : 1)];
    int64_t kb = b->shape[nb - (tb ? 1 : 2)], n = b->shape[nb - (tb ? 2 : 1)];
    if (ka != kb)
        return tg__fail("%s: inner dimensions differ: %s%s @ %s%s", op, tg__shp(a), T_(ta),
                        tg__shp(b), T_(tb));
    int nbatch;
    int64_t shape[TG_MAX_DIMS];
    if (!tg__broadcast_shape(op, "@", na - 2, a->shape, nb - 2, b->shape, &nbatch, shape))
        return tg__fail("%s: batch dimensions do not broadcast: %s%s @ %s%s", op, tg__shp(a),
                        T_(ta), tg__shp(b), T_(tb));
    shape[nbatch] = m;
    shape[nbatch + 1] = n;
    int64_t k = ka;
    bool fold = nb == 2 && !ta; /* A's batch folds into M (B is one matrix) */
    int64_t big_m = fold ? tg__numel(na - 1, a->shape) : m;
    if (!blas_dims_ok(op, a, b, big_m, n, k)) return NULL;

    tg_tensor *y = k == 0 ? tg__tape_zeros(a->dtype, nbatch + 2, shape)
                          : tg__tape_tensor(a->dtype, nbatch + 2, shape);
    if (!y) return NULL;
    if (y->numel > 0 && k > 0) {
        gemm_plan p = {.dt = a->dtype,
                       .ta = ta,
                       .tb = tb,
                       .m = m,
                       .n = n,
                       .k = k,
                       .lda = a->shape[na - 1],
                       .ldb = b->shape[nb - 1],
                       .a_size = m * k,
                       .b_size = k * n,
                       .c_size = m * n,
                       .a = a->data,
                       .b = b->data,
                       .c = y->data};
        if (fold)
            gemm_one(&p, big_m, a->data, b->data, y->data);
        else
            tg__broadcast_walk(nbatch, shape, 2, (const int[]){na - 2, nb - 2},
                               (const int64_t *const[]){a->shape, b->shape}, gemm_run, &p);
    }
    tg__node *nd = tg__record("matmul", y, 2, (tg_tensor *const[]){a, b}, matmul_backward);
    if (nd == TG__RECORD_FAILED) return NULL;
    if (nd) {
        nd->i[0] = ta;
        nd->i[1] = tb;
    }
    return y;
}

tg_tensor *tg_matmul(tg_tensor *a, tg_tensor *b) {
    if (!tg__check_float2("tg_matmul", a, b)) return NULL;
    if (a->ndim >= 2 && b->ndim >= 2) return matmul_impl("tg_matmul", a, b, false, false);
    if (a->ndim == 0 || b->ndim == 0)
        return tg__fail("tg_matmul: operands need at least 1 dimension: %s @ %s", tg__shp(a),
                        tg__shp(b));
    int64_t ka = a->shape[a->ndim - 1], kb = b->shape[b->ndim > 1 ? b->ndim - 2 : 0];
    if (ka != kb)
        return tg__fail("tg_matmul: inner dimensions differ: %s @ %s", tg__shp(a), tg__shp(b));
    tg_tensor *a2 = a->ndim == 1 ? tg_reshape(a, 2, (const int64_t[]){1, ka}) : a;
    tg_tensor *b2 = b->ndim == 1 ? tg_reshape(b, 2, (const int64_t[]){kb, 1}) : b;
    tg_tensor *y = matmul_impl("tg_matmul", a2, b2, false, false);
    if (!y) return NULL;
    /* Drop the added dimensions: the row of a vector A (second to last) and the column
     * of a vector B (last). */
    int nd = 0;
    int64_t shape[TG_MAX_DIMS];
    for (int i = 0; i < y->ndim; i++) {
        if (a->ndim == 1 && i == y->ndim - 2) continue;
        if (b->ndim == 1 && i == y->ndim - 1) continue;
        shape[nd++] = y->shape[i];
    }
    return tg_reshape(y, nd, shape);
}

tg_tensor *tg_matmul_t(tg_tensor *a, tg_tensor *b, bool trans_a, bool trans_b) {
    return matmul_impl("tg_matmul_t", a, b, trans_a, trans_b);
}
