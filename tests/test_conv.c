/* test_conv.c — unfold, conv2d, max_pool2d and avg_pool2d: forward values and
 * gradients against PyTorch (tests/ref/gen_conv_ref.py) and against direct loops
 * written here, first and second derivatives against finite differences (F64), F32
 * against F64, the max tie rule and the -inf padding of max pooling, every way an input
 * can be wrong, and a small convolutional network trained end to end. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/internal.h"
#include "testutil.h"

#include "ref/conv_ref.h"

static tg_tensor *rand_req(int ndim, const int64_t *shape, double lo, double hi) {
    tg_tensor *t = tgt_rand(TG_F64, ndim, shape, lo, hi);
    tg_requires_grad(t, true);
    return t;
}

/* ================= direct loops (the definitions) ================= */

static int64_t out_size(int64_t n, int k, int stride, int pad) {
    return (n + 2 * pad - k) / stride + 1;
}

/* x[n][c][h][w] or `pad` outside x. */
static double at(const tg_tensor *x, int64_t n, int64_t c, int64_t h, int64_t w, double pad) {
    if (h < 0 || h >= x->shape[2] || w < 0 || w >= x->shape[3]) return pad;
    return tg_tensor_get(x, ((n * x->shape[1] + c) * x->shape[2] + h) * x->shape[3] + w);
}

/* Asserts y equals unfold(x) element by element. */
static void check_unfold_direct(const tg_tensor *y, const tg_tensor *x, int kh, int kw, int s,
                                int p, double tol) {
    int64_t N = x->shape[0], C = x->shape[1];
    int64_t OH = out_size(x->shape[2], kh, s, p), OW = out_size(x->shape[3], kw, s, p);
    tgt_assert_shape(y, 3, (int64_t[]){N, C * kh * kw, OH * OW});
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int i = 0; i < kh; i++)
                for (int j = 0; j < kw; j++)
                    for (int64_t oh = 0; oh < OH; oh++)
                        for (int64_t ow = 0; ow < OW; ow++) {
                            int64_t row = c * kh * kw + i * kw + j;
                            double want = at(x, n, c, oh * s - p + i, ow * s - p + j, 0.0);
                            double got =
                                tg_tensor_get(y, (n * C * kh * kw + row) * OH * OW + oh * OW + ow);
                            ck_assert_close(got, want, tol);
                        }
}

/* Asserts y equals the direct convolution of x with w. */
static void check_conv_direct(const tg_tensor *y, const tg_tensor *x, const tg_tensor *w, int s,
                              int p, double tol) {
    int64_t N = x->shape[0], C = x->shape[1], O = w->shape[0];
    int kh = (int)w->shape[2], kw = (int)w->shape[3];
    int64_t OH = out_size(x->shape[2], kh, s, p), OW = out_size(x->shape[3], kw, s, p);
    tgt_assert_shape(y, 4, (int64_t[]){N, O, OH, OW});
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double acc = 0;
                    for (int64_t c = 0; c < C; c++)
                        for (int i = 0; i < kh; i++)
                            for (int j = 0; j < kw; j++)
                                acc += tg_tensor_get(w, ((o * C + c) * kh + i) * kw + j) *
                                       at(x, n, c, oh * s - p + i, ow * s - p + j, 0.0);
                    double got = tg_tensor_get(y, ((n * O + o) * OH + oh) * OW + ow);
                    ck_assert_close(got, acc, tol * (1 + fabs(acc)));
                }
}

/* Asserts y equals the direct max (is_max) or average (count_include_pad) pooling. */
static void check_pool_direct(const tg_tensor *y, const tg_tensor *x, bool is_max, int k, int s,
                              int p, double tol) {
    int64_t N = x->shape[0], C = x->shape[1];
    int64_t OH = out_size(x->shape[2], k, s, p), OW = out_size(x->shape[3], k, s, p);
    tgt_assert_shape(y, 4, (int64_t[]){N, C, OH, OW});
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double m = -INFINITY, sum = 0;
                    for (int i = 0; i < k; i++)
                        for (int j = 0; j < k; j++) {
                            double v = at(x, n, c, oh * s - p + i, ow * s - p + j,
                                          is_max ? -INFINITY : 0.0);
                            sum += v;
                            if (v > m) m = v;
                        }
                    double want = is_max ? m : sum / (k * k);
                    double got = tg_tensor_get(y, ((n * C + c) * OH + oh) * OW + ow);
                    ck_assert_close(got, want, tol * (1 + fabs(want)));
                }
}

/* ================= the ops as tg_fn, for the checks ================= */

typedef enum { OP_UNFOLD, OP_CONV, OP_MAXPOOL, OP_AVGPOOL } op_kind;

typedef struct {
    op_kind kind;
    int kh, kw, stride, padding;
} call;

static tg_tensor *run(const call *c, tg_tensor *const *in) {
    switch (c->kind) {
    case OP_UNFOLD:
        return tg_unfold(in[0], c->kh, c->kw, c->stride, c->padding);
    case OP_CONV:
        return tg_conv2d(in[0], in[1], c->stride, c->padding);
    case OP_MAXPOOL:
        return tg_max_pool2d(in[0], c->kh, c->stride, c->padding);
    case OP_AVGPOOL:
        return tg_avg_pool2d(in[0], c->kh, c->stride, c->padding);
    }
    return NULL;
}

static tg_tensor *f_op(tg_tensor *const *in, void *ctx) { return run(ctx, in); }

/* G with G.flat[i] = cos(0.9 i), as in gen_conv_ref.py. */
static tg_tensor *seed_like(const tg_tensor *y) {
    tg_tensor *g = tg_tensor_new(TG_F64, y->ndim, y->shape);
    for (int64_t i = 0; i < g->numel; i++)
        tg_tensor_set(g, i, cos(0.9 * (double)i));
    return g;
}

/* ================= against PyTorch ================= */

static void check_ref(op_kind kind, const convref_case *rc) {
    tg_tensor *x = tg_tensor_from(TG_F64, 4, convref_x_shape, convref_x);
    tg_requires_grad(x, true);
    tg_tensor *w = NULL;
    if (kind == OP_CONV) {
        w = tg_tensor_from(TG_F64, TG_SHAPE(3, convref_x_shape[1], rc->kh, rc->kw),
                           rc == &convref_conv[0]   ? convref_conv0_w
                           : rc == &convref_conv[1] ? convref_conv1_w
                           : rc == &convref_conv[2] ? convref_conv2_w
                                                    : convref_conv3_w);
        tg_requires_grad(w, true);
    }
    call c = {kind, rc->kh, rc->kw, rc->stride, rc->padding};
    tg_tensor *y = run(&c, (tg_tensor *[]){x, w});
    tgt_assert_shape(y, rc->ndim, rc->shape);
    tgt_assert_tensor(y, rc->y, 1e-13);
    /* The same numbers from the direct loops. */
    switch (kind) {
    case OP_UNFOLD:
        check_unfold_direct(y, x, rc->kh, rc->kw, rc->stride, rc->padding, 0);
        break;
    case OP_CONV:
        check_conv_direct(y, x, w, rc->stride, rc->padding, 1e-14);
        break;
    default:
        check_pool_direct(y, x, kind == OP_MAXPOOL, rc->kh, rc->stride, rc->padding, 1e-15);
    }
    /* Gradients of sum(y * G). */
    tg_tensor *g = seed_like(y);
    ck_assert_int_eq(tg_backward(tg_sum(tg_mul(y, g), TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, rc->dx, 1e-13);
    if (w) tgt_assert_tensor(w->grad, rc->dw, 1e-13);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(g);
}

START_TEST(test_unfold_torch) { check_ref(OP_UNFOLD, &convref_unfold[_i]); }
END_TEST

START_TEST(test_conv2d_torch) { check_ref(OP_CONV, &convref_conv[_i]); }
END_TEST

START_TEST(test_max_pool2d_torch) { check_ref(OP_MAXPOOL, &convref_maxpool[_i]); }
END_TEST

START_TEST(test_avg_pool2d_torch) { check_ref(OP_AVGPOOL, &convref_avgpool[_i]); }
END_TEST

/* ================= against the direct loops, more shapes ================= */

/* Non-square inputs and kernels, stride 3, kernels as large as the padded input, a
 * single channel, and F32 alongside F64. */
START_TEST(test_direct_shapes) {
    tgt_seed(900);
    static const struct {
        int64_t x[4];
        int kh, kw, s, p;
    } cases[] = {
        {{1, 1, 4, 4}, 1, 1, 1, 0}, {{2, 3, 7, 5}, 3, 2, 3, 1}, {{1, 2, 3, 4}, 5, 6, 1, 1},
        {{3, 1, 6, 6}, 2, 2, 2, 0}, {{1, 2, 1, 1}, 3, 3, 1, 1}, {{2, 2, 9, 4}, 4, 3, 2, 2},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        for (int d = 0; d < 2; d++) {
            tg_dtype dt = d ? TG_F64 : TG_F32;
            double tol = d ? 1e-14 : 1e-6;
            tg_tensor *x = tgt_rand(dt, 4, cases[k].x, -2, 2);
            tg_tensor *w =
                tgt_rand(dt, TG_SHAPE(2, cases[k].x[1], cases[k].kh, cases[k].kw), -1, 1);
            int kh = cases[k].kh, kw = cases[k].kw, s = cases[k].s, p = cases[k].p;
            check_unfold_direct(tg_unfold(x, kh, kw, s, p), x, kh, kw, s, p, 0);
            check_conv_direct(tg_conv2d(x, w, s, p), x, w, s, p, tol);
            if (kh == kw && p <= kh / 2) {
                check_pool_direct(tg_max_pool2d(x, kh, s, p), x, true, kh, s, p, 0);
                check_pool_direct(tg_avg_pool2d(x, kh, s, p), x, false, kh, s, p, tol);
            }
            tg_tape_reset();
            tg_tensor_free(x);
            tg_tensor_free(w);
        }
    }
}
END_TEST

/* An empty batch gives an empty result of the right shape (and an empty gradient). */
START_TEST(test_empty_batch) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(0, 2, 5, 5));
    tg_tensor *w = tg_tensor_new(TG_F64, TG_SHAPE(3, 2, 3, 3));
    tg_requires_grad(x, true);
    tg_requires_grad(w, true);
    tgt_assert_shape(tg_unfold(x, 3, 3, 1, 0), 3, (int64_t[]){0, 18, 9});
    tg_tensor *y = tg_conv2d(x, w, 2, 1);
    tgt_assert_shape(y, 4, (int64_t[]){0, 3, 3, 3});
    tgt_assert_shape(tg_max_pool2d(x, 2, 2, 0), 4, (int64_t[]){0, 2, 2, 2});
    tgt_assert_shape(tg_avg_pool2d(x, 3, 1, 1), 4, (int64_t[]){0, 2, 5, 5});
    ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
    tgt_assert_shape(x->grad, 4, (int64_t[]){0, 2, 5, 5});
    tgt_assert_tensor(w->grad, (double[54]){0}, 0);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(w);
}
END_TEST

/* ================= derivatives ================= */

/* Three or more configurations per op: stride 1 and 2, padding 0 and 1, non-square
 * kernels for unfold and conv2d. Sizes stay tiny: the slow checks perturb every
 * element. */
static const call grad_calls[] = {
    {OP_UNFOLD, 3, 3, 1, 0},  {OP_UNFOLD, 3, 3, 2, 1},  {OP_UNFOLD, 2, 3, 1, 1},
    {OP_CONV, 3, 3, 1, 0},    {OP_CONV, 3, 3, 2, 1},    {OP_CONV, 2, 3, 1, 1},
    {OP_CONV, 1, 1, 2, 0},    {OP_MAXPOOL, 2, 2, 2, 0}, {OP_MAXPOOL, 3, 3, 1, 1},
    {OP_MAXPOOL, 3, 3, 2, 1}, {OP_AVGPOOL, 2, 2, 2, 0}, {OP_AVGPOOL, 3, 3, 1, 1},
    {OP_AVGPOOL, 3, 3, 2, 1},
};
enum { NGRAD = sizeof grad_calls / sizeof *grad_calls };

/* x [2, 2, 5, 5] whose values are a shuffled grid with steps of 0.05, far apart
 * compared with the finite-difference step, so no max pooling window has a tie or a
 * near-tie the perturbation could flip. */
static tg_tensor *untied_input(uint64_t seed) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(2, 2, 5, 5));
    int64_t n = x->numel;
    for (int64_t i = 0; i < n; i++)
        tg_tensor_set(x, i, -2.5 + 0.05 * (double)i);
    tgt_seed(seed);
    tg_tensor *r = tgt_rand(TG_F64, TG_SHAPE(100), 0, 1);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(tg_tensor_get(r, i) * (double)(i + 1));
        double t = tg_tensor_get(x, i);
        tg_tensor_set(x, i, tg_tensor_get(x, j));
        tg_tensor_set(x, j, t);
    }
    tg_tensor_free(r);
    tg_requires_grad(x, true);
    return x;
}

START_TEST(test_grads) {
    const call *c = &grad_calls[_i];
    tg_tensor *x = untied_input(1000 + (uint64_t)_i);
    tg_tensor *w = c->kind == OP_CONV ? rand_req(TG_SHAPE(3, 2, c->kh, c->kw), -1, 1) : NULL;
    int n = w ? 2 : 1;
    tg_tensor *in[2] = {x, w};
    char what[96];
    snprintf(what, sizeof what, "op %d kernel %dx%d stride %d padding %d", c->kind, c->kh, c->kw,
             c->stride, c->padding);
    tgt_assert_grads(f_op, (void *)c, n, in, NULL, what);
    tgt_assert_f32_agrees(f_op, (void *)c, n, in, what);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(w);
}
END_TEST

/* Each op applied to a broadcast sum a[2,1,4,4] + b[2,1,4] -> [2,2,4,4] (conv2d also to
 * a weight u[3,2,1,3] + v[2,3,1] -> [3,2,3,3]), so that tg_sum_to reduces the
 * gradients that leave the op. */
static tg_tensor *f_op_bcast(tg_tensor *const *in, void *ctx) {
    const call *c = ctx;
    tg_tensor *x = tg_add(in[0], in[1]);
    tg_tensor *w = c->kind == OP_CONV ? tg_add(in[2], in[3]) : NULL;
    return run(c, (tg_tensor *[]){x, w});
}

START_TEST(test_broadcast_input) {
    static const call calls[] = {{OP_UNFOLD, 2, 3, 1, 1},
                                 {OP_CONV, 3, 3, 2, 1},
                                 {OP_MAXPOOL, 3, 3, 1, 1},
                                 {OP_AVGPOOL, 2, 2, 2, 0}};
    tgt_seed(1150);
    for (int k = 0; k < 4; k++) {
        tg_tensor *in[4] = {
            rand_req(TG_SHAPE(2, 1, 4, 4), -1, 1), rand_req(TG_SHAPE(2, 1, 4), -1, 1),
            rand_req(TG_SHAPE(3, 2, 1, 3), -1, 1), rand_req(TG_SHAPE(2, 3, 1), -1, 1)};
        int n = calls[k].kind == OP_CONV ? 4 : 2;
        char what[64];
        snprintf(what, sizeof what, "broadcast input, op %d", calls[k].kind);
        tgt_assert_grads(f_op_bcast, (void *)&calls[k], n, in, NULL, what);
        tgt_assert_f32_agrees(f_op_bcast, (void *)&calls[k], n, in, what);
        tg_tape_reset();
        for (int i = 0; i < 4; i++)
            tg_tensor_free(in[i]);
    }
}
END_TEST

/* A second derivative that is not zero: d/dx of |d conv(x, w)^2 / dw|^2 goes through
 * the unfold that w's gradient makes in a recording sweep and its backward (fold); against finite
 * differences of the first derivative by gradgradcheck above, and here through tg_grad twice with
 * the closed form for a 1x1 kernel: y = w x, L = sum y^2, dL/dw = 2 w sum x^2,
 * d/dx sum(dL/dw) = 4 w x. */
START_TEST(test_double_backward_closed_form) {
    tgt_seed(1100);
    tg_tensor *x = rand_req(TG_SHAPE(1, 1, 3, 4), -1, 1);
    tg_tensor *w = tg_tensor_from(TG_F64, TG_SHAPE(1, 1, 1, 1), (double[]){0.75});
    tg_requires_grad(w, true);
    tg_tensor *y = tg_conv2d(x, w, 1, 0);
    tg_tensor *loss = tg_sum(tg_square(y), TG_ALL, false);
    tg_tensor *dw = NULL, *dx = NULL;
    ck_assert_int_eq(tg_grad(1, &loss, NULL, 1, &w, &dw, TG_CREATE_GRAPH), 0);
    tg_tensor *s = tg_sum(dw, TG_ALL, false);
    ck_assert_int_eq(tg_grad(1, &s, NULL, 1, &x, &dx, 0), 0);
    double want[12];
    for (int i = 0; i < 12; i++)
        want[i] = 4 * 0.75 * tg_tensor_get(x, i);
    tgt_assert_tensor(dx, want, 1e-14);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(w);
}
END_TEST

/* The input gradient of a convolution is an op of its own (conv2d_input_grad) whose
 * backward is again a convolution and a weight gradient: with the closed form for a 1x1
 * kernel, y = w x, L = sum y^2, dL/dx = 2 w^2 x and d/dw sum(dL/dx) = 4 w sum x. */
START_TEST(test_input_grad_double_backward_closed_form) {
    tgt_seed(1101);
    tg_tensor *x = rand_req(TG_SHAPE(2, 1, 3, 4), -1, 1);
    tg_tensor *w = tg_tensor_from(TG_F64, TG_SHAPE(1, 1, 1, 1), (double[]){0.75});
    tg_requires_grad(w, true);
    tg_tensor *y = tg_conv2d(x, w, 1, 0);
    tg_tensor *loss = tg_sum(tg_square(y), TG_ALL, false);
    tg_tensor *dx = NULL, *dw = NULL;
    ck_assert_int_eq(tg_grad(1, &loss, NULL, 1, &x, &dx, TG_CREATE_GRAPH), 0);
    double want[24], sum = 0;
    for (int i = 0; i < 24; i++) {
        want[i] = 2 * 0.75 * 0.75 * tg_tensor_get(x, i);
        sum += tg_tensor_get(x, i);
    }
    tgt_assert_tensor(dx, want, 1e-14);
    tg_tensor *s = tg_sum(dx, TG_ALL, false);
    ck_assert_int_eq(tg_grad(1, &s, NULL, 1, &w, &dw, 0), 0);
    tgt_assert_tensor(dw, (double[]){4 * 0.75 * sum}, 1e-13);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(w);
}
END_TEST

/* max_pool2d's backward is an op (a scatter by the kept argmax) whose backward is a
 * gather, and the gather's is the scatter: second and third derivatives through max
 * pooling. With y = max_pool2d(x), L = sum y^2 and count[i] = the number of windows whose
 * maximum is x[i] (the gradient of sum y):
 *     dL/dx = scatter(2 y),  d/dx sum(dL/dx * v) = 2 count v,  d/dv sum(that * u) = 2 count u,
 * and gradcheck / gradgradcheck of y^2 against finite differences. */
static tg_tensor *f_maxpool_square(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_square(tg_max_pool2d(in[0], 3, 1, 1));
}

START_TEST(test_max_pool_higher_order) {
    tg_tensor *x = untied_input(1400);
    tgt_assert_grads(f_maxpool_square, NULL, 1, &x, NULL, "max_pool2d squared");
    tgt_assert_f32_agrees(f_maxpool_square, NULL, 1, &x, "max_pool2d squared");
    tgt_seed(1401);
    tg_tensor *v = rand_req(TG_SHAPE(2, 2, 5, 5), -1, 1),
              *u = rand_req(TG_SHAPE(2, 2, 5, 5), -1, 1);
    tg_tensor *count = NULL;
    tg_tensor *y = tg_max_pool2d(x, 3, 1, 1);
    tg_tensor *s1 = tg_sum(y, TG_ALL, false);
    ck_assert_int_eq(tg_grad(1, &s1, NULL, 1, &x, &count, 0), 0);
    tg_tensor *L = tg_sum(tg_square(y), TG_ALL, false), *dx = NULL, *hv = NULL, *hu = NULL;
    ck_assert_int_eq(tg_grad(1, &L, NULL, 1, &x, &dx, TG_CREATE_GRAPH), 0);
    tg_tensor *s2 = tg_sum(tg_mul(dx, v), TG_ALL, false);
    ck_assert_int_eq(tg_grad(1, &s2, NULL, 1, &x, &hv, TG_CREATE_GRAPH), 0);
    tg_tensor *s3 = tg_sum(tg_mul(hv, u), TG_ALL, false);
    ck_assert_int_eq(tg_grad(1, &s3, NULL, 1, &v, &hu, 0), 0);
    double want_v[100], want_u[100];
    for (int i = 0; i < 100; i++) {
        want_v[i] = 2 * tg_tensor_get(count, i) * tg_tensor_get(v, i);
        want_u[i] = 2 * tg_tensor_get(count, i) * tg_tensor_get(u, i);
    }
    tgt_assert_tensor(hv, want_v, 1e-14);
    tgt_assert_tensor(hu, want_u, 1e-14);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(v);
    tg_tensor_free(u);
}
END_TEST

/* ================= pooling rules ================= */

/* The gradient of a max pooling window with a tie goes to its first maximal element in
 * row-major order; overlapping windows add up. */
START_TEST(test_max_pool_ties) {
    /* Every 2x2 window has its maximum 2 more than once. */
    tg_tensor *x =
        tg_tensor_from(TG_F64, TG_SHAPE(1, 1, 3, 3), (double[]){1, 2, 2, 2, 2, 0, 1, 2, 0});
    tg_requires_grad(x, true);
    tg_tensor *y = tg_max_pool2d(x, 2, 1, 0); /* windows: (1,2,2,2) (2,2,2,0) (2,2,1,2) (2,0,2,0) */
    tgt_assert_tensor(y, (double[]){2, 2, 2, 2}, 0);
    ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
    /* First maxima: (0,1), (0,1), (1,0), (1,1). */
    tgt_assert_tensor(x->grad, (double[]){0, 2, 0, 1, 1, 0, 0, 0, 0}, 0);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* A NaN in a window wins it (NaN propagates, as in PyTorch) and takes the gradient;
 * the first NaN of a window wins over a later one. */
START_TEST(test_max_pool_nan) {
    tg_tensor *x =
        tg_tensor_from(TG_F64, TG_SHAPE(1, 1, 2, 4), (double[]){1, 5, NAN, 2, 3, NAN, 9, NAN});
    tg_requires_grad(x, true);
    tg_tensor *y = tg_max_pool2d(x, 2, 2, 0); /* windows (1,5,3,NaN) and (NaN,2,9,NaN) */
    ck_assert(isnan(tg_tensor_get(y, 0)) && isnan(tg_tensor_get(y, 1)));
    ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, (double[]){0, 0, 1, 0, 0, 1, 0, 0}, 0);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* Max pooling pads with -inf: an all-negative input never yields the padding's 0.
 * Average pooling counts the padding (as zeros) in the divisor. */
START_TEST(test_pool_padding) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(1, 1, 2, 2), (double[]){-1, -2, -3, -4});
    tg_requires_grad(x, true);
    tg_tensor *m = tg_max_pool2d(x, 2, 1, 1);
    tgt_assert_tensor(m, (double[]){-1, -1, -2, -1, -1, -2, -3, -3, -4}, 0);
    tg_tensor *a = tg_avg_pool2d(x, 2, 1, 1);
    tgt_assert_tensor(a, (double[]){-0.25, -0.75, -0.5, -1, -2.5, -1.5, -0.75, -1.75, -1}, 1e-15);
    ck_assert_int_eq(tg_backward(tg_sum(m, TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, (double[]){4, 2, 2, 1}, 0);
    tg_zero_grad(x);
    ck_assert_int_eq(tg_backward(tg_sum(a, TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, (double[]){1, 1, 1, 1}, 0);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* Every path of the max pooling kernel (the 2 x 2 windows inside x at stride 2 and at
 * other strides, and the general one with padding) against the definition, on inputs
 * full of ties (small integers), with NaN and -inf sprinkled in, F32 and F64: the values,
 * with and without the argmax kept, and the gradient of sum(y * G), which shows which
 * element each window chose. */
START_TEST(test_max_pool_paths_against_definition) {
    static const struct {
        int64_t x[4];
        int k, s, p;
    } cases[] = {
        {{2, 3, 6, 8}, 2, 2, 0}, {{1, 2, 7, 9}, 2, 2, 0}, {{2, 1, 5, 6}, 2, 1, 0},
        {{1, 2, 7, 7}, 2, 3, 0}, {{2, 2, 6, 5}, 3, 1, 1}, {{1, 3, 7, 6}, 3, 2, 1},
        {{1, 1, 4, 5}, 2, 1, 1}, {{2, 1, 6, 6}, 1, 2, 0}, {{1, 2, 8, 9}, 4, 3, 2},
    };
    tgt_seed(1450);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int d = 0; d < 2; d++) {
            tg_dtype dt = d ? TG_F64 : TG_F32;
            int k = cases[c].k, st = cases[c].s, p = cases[c].p;
            tg_tensor *x = tg_tensor_new(dt, 4, cases[c].x);
            tg_tensor *r = tgt_rand(TG_F64, 1, (int64_t[]){x->numel}, 0, 1);
            for (int64_t i = 0; i < x->numel; i++) {
                double u = tg_tensor_get(r, i);
                double v = u < 0.03 ? NAN : u < 0.08 ? -INFINITY : floor(u * 4);
                tg_tensor_set(x, i, v);
            }
            /* the values alone, as in evaluation: no argmax is kept (its own loops) */
            tg_tensor *y0 = tg_max_pool2d(x, k, st, p);
            ck_assert_ptr_nonnull(y0);
            tg_requires_grad(x, true);
            tg_tensor *y = tg_max_pool2d(x, k, st, p);
            ck_assert_ptr_nonnull(y);
            ck_assert(!y0->requires_grad && y->requires_grad);
            tg_tensor *g = tgt_rand(dt, y->ndim, y->shape, 0.5, 1.5);
            ck_assert_int_eq(tg_backward_seeded(y, g), 0);
            int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
            int64_t OH = out_size(H, k, st, p), OW = out_size(W, k, st, p);
            double *want = calloc((size_t)x->numel, sizeof *want);
            for (int64_t nc = 0; nc < N * C; nc++)
                for (int64_t oh = 0; oh < OH; oh++)
                    for (int64_t ow = 0; ow < OW; ow++) {
                        int64_t best = -1;
                        double m = -INFINITY;
                        for (int i = 0; i < k; i++)
                            for (int j = 0; j < k; j++) {
                                int64_t h = oh * st - p + i, w = ow * st - p + j;
                                if (h < 0 || h >= H || w < 0 || w >= W) continue;
                                int64_t at = (nc * H + h) * W + w;
                                double v = tg_tensor_get(x, at);
                                if (best < 0 || v > m || (isnan(v) && !isnan(m))) best = at, m = v;
                            }
                        int64_t o = (nc * OH + oh) * OW + ow;
                        double got = tg_tensor_get(y, o);
                        double got0 = tg_tensor_get(y0, o);
                        ck_assert_msg(isnan(m) ? isnan(got) && isnan(got0) : got == m && got0 == m,
                                      "case %zu dtype %d output %lld: %g (without grad %g), "
                                      "want %g",
                                      c, d, (long long)o, got, got0, m);
                        want[best] += tg_tensor_get(g, o);
                    }
            tgt_assert_tensor(x->grad, want, d ? 1e-15 : 1e-6);
            free(want);
            tg_tape_reset();
            tg_tensor_free(x);
            tg_tensor_free(r);
            tg_tensor_free(g);
        }
}
END_TEST

/* A window whose values are all -inf takes the gradient at its first position inside x,
 * never at the padding (the -inf padding does not win a tie with a -inf value). */
START_TEST(test_max_pool_all_neg_inf) {
    tg_tensor *x = tg_tensor_full(TG_F64, TG_SHAPE(1, 1, 2, 2), -INFINITY);
    tg_requires_grad(x, true);
    tg_tensor *y = tg_max_pool2d(x, 2, 1, 1);
    for (int i = 0; i < 9; i++)
        ck_assert(isinf(tg_tensor_get(y, i)) && tg_tensor_get(y, i) < 0);
    tg_tensor *g = tg_tensor_full(TG_F64, TG_SHAPE(1, 1, 3, 3), 1.0);
    ck_assert_int_eq(tg_backward_seeded(y, g), 0);
    tgt_assert_tensor(x->grad, (double[]){4, 2, 2, 1}, 0);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(g);
}
END_TEST

/* An empty input whose padding still holds a window: the window has no position inside
 * x, so it gives -inf, and the gradient is empty. */
START_TEST(test_max_pool_window_in_padding) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(1, 1, 0, 3));
    tg_requires_grad(x, true);
    tg_tensor *y = tg_max_pool2d(x, 2, 2, 1);
    tgt_assert_shape(y, 4, (int64_t[]){1, 1, 1, 2});
    ck_assert(isinf(tg_tensor_get(y, 0)) && tg_tensor_get(y, 1) < 0);
    tg_tensor *g = tg_tensor_full(TG_F64, TG_SHAPE(1, 1, 1, 2), 1.0);
    ck_assert_int_eq(tg_backward_seeded(y, g), 0);
    tgt_assert_shape(x->grad, 4, (int64_t[]){1, 1, 0, 3});
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(g);
}
END_TEST

/* True when the tape holds a node of op `name`. */
static bool tape_has(const char *name) {
    for (const tg__node *n = tg__tape_last(); n; n = n->prev)
        if (strcmp(n->op, name) == 0) return true;
    return false;
}

/* Nodes are recorded only for inputs that require a gradient, and only in grad mode:
 * a convolution records one conv2d node (no unfold or matmul); with both constant
 * nothing at all. */
START_TEST(test_recording) {
    tgt_seed(1200);
    tg_tensor *x = tgt_rand(TG_F64, TG_SHAPE(1, 2, 4, 4), -1, 1);
    tg_tensor *w = tgt_rand(TG_F64, TG_SHAPE(2, 2, 3, 3), -1, 1);
    tg_tape_reset();
    tg_tensor *y = tg_conv2d(x, w, 1, 1);
    ck_assert_ptr_nonnull(y);
    ck_assert(!y->requires_grad);
    ck_assert_ptr_null(tg__tape_last());
    tg_requires_grad(w, true);
    ck_assert(tg_conv2d(x, w, 1, 1)->requires_grad);
    ck_assert(tape_has("conv2d") && !tape_has("matmul") && !tape_has("unfold"));
    tg_requires_grad(x, true);
    ck_assert(tg_max_pool2d(x, 2, 2, 0)->requires_grad);
    ck_assert(tape_has("max_pool2d") && !tape_has("unfold") && !tape_has("max"));
    tg_tape_reset();
    bool was = tg_set_grad_enabled(false);
    ck_assert(!tg_conv2d(x, w, 1, 1)->requires_grad);
    ck_assert_ptr_null(tg__tape_last());
    tg_set_grad_enabled(was);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(w);
}
END_TEST

/* ================= bad input ================= */

START_TEST(test_errors) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(2, 3, 5, 5));
    tg_tensor *x3 = tg_tensor_new(TG_F64, TG_SHAPE(3, 5, 5));
    tg_tensor *xi = tg_tensor_new(TG_I64, TG_SHAPE(2, 3, 5, 5));
    tg_tensor *x32 = tg_tensor_new(TG_F32, TG_SHAPE(2, 3, 5, 5));
    tg_tensor *w = tg_tensor_new(TG_F64, TG_SHAPE(4, 3, 3, 3));
    tg_tensor *w2 = tg_tensor_new(TG_F64, TG_SHAPE(4, 2, 3, 3));
    tg_tensor *w3 = tg_tensor_new(TG_F64, TG_SHAPE(4, 27));
    tg_tensor *wbig = tg_tensor_new(TG_F64, TG_SHAPE(4, 3, 8, 3));

    /* unfold */
    ck_assert_op_error(tg_unfold(NULL, 3, 3, 1, 0), "tg_unfold", "NULL");
    ck_assert_op_error(tg_unfold(xi, 3, 3, 1, 0), "tg_unfold", "i64", "[2,3,5,5]");
    ck_assert_op_error(tg_unfold(x3, 3, 3, 1, 0), "tg_unfold", "4-D", "[3,5,5]");
    ck_assert_op_error(tg_unfold(x, 0, 3, 1, 0), "tg_unfold", "kernel 0x3", "[2,3,5,5]");
    ck_assert_op_error(tg_unfold(x, 3, -1, 1, 0), "tg_unfold", "kernel 3x-1", "[2,3,5,5]");
    ck_assert_op_error(tg_unfold(x, 3, 3, 0, 0), "tg_unfold", "stride 0", "[2,3,5,5]");
    ck_assert_op_error(tg_unfold(x, 3, 3, 1, -1), "tg_unfold", "padding -1", "[2,3,5,5]");
    ck_assert_op_error(tg_unfold(x, 6, 3, 1, 0), "tg_unfold", "kernel 6x3 is larger", "[2,3,5,5]",
                       "padded by 0");
    ck_assert_op_error(tg_unfold(x, 3, 8, 1, 1), "tg_unfold", "kernel 3x8 is larger",
                       "padded by 1");
    /* A padding so large that the windows cannot be counted in int64. */
    ck_assert_op_error(tg_unfold(x, 1, 1, 1, INT_MAX), "tg_unfold", "too many windows",
                       "[2,3,5,5]");
    /* conv2d */
    ck_assert_op_error(tg_conv2d(NULL, w, 1, 0), "tg_conv2d", "NULL");
    ck_assert_op_error(tg_conv2d(x, NULL, 1, 0), "tg_conv2d", "NULL");
    ck_assert_op_error(tg_conv2d(xi, w, 1, 0), "tg_conv2d", "i64");
    ck_assert_op_error(tg_conv2d(x32, w, 1, 0), "tg_conv2d", "f32", "f64");
    ck_assert_op_error(tg_conv2d(x3, w, 1, 0), "tg_conv2d", "[3,5,5]", "[4,3,3,3]");
    ck_assert_op_error(tg_conv2d(x, w3, 1, 0), "tg_conv2d", "[2,3,5,5]", "[4,27]");
    ck_assert_op_error(tg_conv2d(x, w2, 1, 0), "tg_conv2d", "3 channels", "[2,3,5,5]", "[4,2,3,3]",
                       "expects 2");
    ck_assert_op_error(tg_conv2d(x, w, 0, 0), "tg_conv2d", "stride 0", "[2,3,5,5]");
    ck_assert_op_error(tg_conv2d(x, w, 1, -2), "tg_conv2d", "padding -2", "[2,3,5,5]");
    ck_assert_op_error(tg_conv2d(x, wbig, 1, 1), "tg_conv2d", "kernel 8x3 is larger", "[2,3,5,5]");
    /* 2^31 output channels (an empty weight): more than a BLAS int, refused under this
     * op's name, not the tg_matmul it is built on. */
    tg_tensor *x0 = tg_tensor_new(TG_F64, TG_SHAPE(1, 0, 3, 3));
    tg_tensor *whuge = tg_tensor_new(TG_F64, TG_SHAPE((int64_t)1 << 31, 0, 3, 3));
    ck_assert_op_error(tg_conv2d(x0, whuge, 1, 0), "tg_conv2d", "too large for BLAS", "[1,0,3,3]",
                       "[2147483648,0,3,3]");
    tg_tensor_free(x0);
    tg_tensor_free(whuge);
    /* pooling */
    const char *names[2] = {"tg_max_pool2d", "tg_avg_pool2d"};
    tg_tensor *(*pools[2])(tg_tensor *, int, int, int) = {tg_max_pool2d, tg_avg_pool2d};
    for (int k = 0; k < 2; k++) {
        ck_assert_op_error(pools[k](NULL, 2, 2, 0), names[k], "NULL");
        ck_assert_op_error(pools[k](xi, 2, 2, 0), names[k], "i64", "[2,3,5,5]");
        ck_assert_op_error(pools[k](x3, 2, 2, 0), names[k], "4-D", "[3,5,5]");
        ck_assert_op_error(pools[k](x, 0, 1, 0), names[k], "kernel 0x0", "[2,3,5,5]");
        ck_assert_op_error(pools[k](x, 2, 0, 0), names[k], "stride 0", "[2,3,5,5]");
        ck_assert_op_error(pools[k](x, 2, 2, -1), names[k], "padding -1", "[2,3,5,5]");
        ck_assert_op_error(pools[k](x, 6, 1, 0), names[k], "kernel 6x6 is larger", "[2,3,5,5]");
        ck_assert_op_error(pools[k](x, 3, 1, 2), names[k], "padding 2", "at most half",
                           "kernel size 3", "[2,3,5,5]");
        ck_assert_op_error(pools[k](x, 2, 1, 2), names[k], "padding 2", "at most half");
    }
    /* A NULL input from an earlier failure keeps the first message. */
    tg_clear_error();
    ck_assert_ptr_null(tg_max_pool2d(tg_conv2d(x, w2, 1, 0), 2, 2, 0));
    ck_assert_ptr_nonnull(strstr(tg_error(), "tg_conv2d"));
    tg_tape_reset();
    tg_tensor *all[] = {x, x3, xi, x32, w, w2, w3, wbig};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        tg_tensor_free(all[i]);
}
END_TEST

/* ================= end to end ================= */

/* A small convolutional network (conv -> relu -> max pool -> flatten -> linear) trained
 * with tg_model_fit tells 8x8 images of a vertical bar from images of a horizontal bar
 * (bar at a random row or column, Gaussian noise of sd 0.5 on every pixel). */
START_TEST(test_conv_net_learns_bars) {
    enum { N = 200, S = 8 };
    tg_seed(1300);
    tg_tensor *X = tg_tensor_new(TG_F32, TG_SHAPE(N, 1, S, S));
    tg_tensor *y = tg_tensor_new(TG_I64, TG_SHAPE(N));
    for (int64_t n = 0; n < N; n++) {
        int64_t cls = n % 2, at = (int64_t)(tg_rand_uniform() * S);
        for (int64_t h = 0; h < S; h++)
            for (int64_t w = 0; w < S; w++) {
                bool on = cls == 0 ? w == at : h == at;
                tg_tensor_set(X, (n * S + h) * S + w, (on ? 1.0 : 0.0) + 0.5 * tg_rand_normal());
            }
        tg_tensor_set(y, n, (double)cls);
    }
    tg_model *m = tg_model_new();
    tg_model_add(m, tg_nn_conv2d(1, 4, 3, 1, 1, TG_F32));
    tg_model_add(m, tg_nn_relu());
    tg_model_add(m, tg_nn_maxpool2d(2, 2, 0));
    tg_model_add(m, tg_nn_flatten());
    tg_model_add(m, tg_nn_linear(4 * 4 * 4, 2, TG_F32));
    tg_tensor *ps[4];
    ck_assert_int_eq(tg_model_params(m, ps, 4), 4);
    tg_adam_opts ao = TG_ADAM_DEFAULTS;
    ao.lr = 1e-2;
    tg_optim *opt = tg_adam(4, ps, ao);
    ck_assert_ptr_nonnull(opt);
    double before = tg_model_accuracy(m, X, y);
    double loss[30];
    tg_fit_opts fo = {.batch_size = 20,
                      .epochs = 30,
                      .shuffle = true,
                      .seed = 1,
                      .loss = tg_loss_cross_entropy,
                      .optim = opt};
    ck_assert_int_eq(tg_model_fit(m, X, y, &fo, loss), 0);
    double acc = tg_model_accuracy(m, X, y);
    ck_assert_msg(acc >= 0.95, "accuracy %g (%g before training), loss %g -> %g", acc, before,
                  loss[0], loss[29]);
    ck_assert_msg(loss[29] < 0.5 * loss[0], "loss %g -> %g", loss[0], loss[29]);
    tg_tape_reset();
    tg_optim_free(opt);
    tg_model_free(m);
    tg_tensor_free(X);
    tg_tensor_free(y);
}
END_TEST

static Suite *conv_suite(void) {
    Suite *s = suite_create("conv");
    TCase *tf = tcase_create("forward");
    tcase_add_loop_test(tf, test_unfold_torch, 0, 4);
    tcase_add_loop_test(tf, test_conv2d_torch, 0, 4);
    tcase_add_loop_test(tf, test_max_pool2d_torch, 0, 4);
    tcase_add_loop_test(tf, test_avg_pool2d_torch, 0, 4);
    tcase_add_test(tf, test_direct_shapes);
    tcase_add_test(tf, test_empty_batch);
    tcase_add_test(tf, test_max_pool_ties);
    tcase_add_test(tf, test_max_pool_nan);
    tcase_add_test(tf, test_pool_padding);
    tcase_add_test(tf, test_max_pool_all_neg_inf);
    tcase_add_test(tf, test_max_pool_paths_against_definition);
    tcase_add_test(tf, test_max_pool_window_in_padding);
    tcase_add_test(tf, test_recording);
    suite_add_tcase(s, tf);
    TCase *tg = tcase_create("derivatives");
    tcase_add_loop_test(tg, test_grads, 0, NGRAD);
    tcase_add_test(tg, test_broadcast_input);
    tcase_add_test(tg, test_double_backward_closed_form);
    tcase_add_test(tg, test_input_grad_double_backward_closed_form);
    tcase_add_test(tg, test_max_pool_higher_order);
    suite_add_tcase(s, tg);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_errors);
    suite_add_tcase(s, te);
    TCase *tl = tcase_create("learning");
    tcase_add_test(tl, test_conv_net_learns_bars);
    suite_add_tcase(s, tl);
    return s;
}

int main(void) { return tgt_run(conv_suite()); }
