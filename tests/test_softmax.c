/* test_softmax.c — tg_softmax, tg_log_softmax and the fused tg_softmax_cross_entropy. */
#include <math.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    int axis;
    bool log_form;
} sm_ctx;

static tg_tensor *f_softmax(tg_tensor *const *in, void *vctx) {
    const sm_ctx *c = vctx;
    /* A non-uniform weighting so the check sees every output, not just their sum. */
    tg_tensor *y = c->log_form ? tg_log_softmax(in[0], c->axis) : tg_softmax(in[0], c->axis);
    return tg_mul(y, tg_sin(in[0]));
}

/* softmax of one row, by the definition. */
static void softmax_ref(const double *x, int n, double *out, bool log_form) {
    double m = x[0], s = 0;
    for (int i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    for (int i = 0; i < n; i++)
        s += exp(x[i] - m);
    for (int i = 0; i < n; i++)
        out[i] = log_form ? x[i] - m - log(s) : exp(x[i] - m) / s;
}

START_TEST(test_softmax_values) {
    for (int lf = 0; lf < 2; lf++) {
        double xv[6] = {0.5, -1.0, 2.0, 1e4, 1e4 - 1.0, -1e4}, want[6];
        tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2, 3), xv);
        softmax_ref(xv, 3, want, lf);
        softmax_ref(xv + 3, 3, want + 3, lf);
        tg_tensor *y = lf ? tg_log_softmax(x, 1) : tg_softmax(x, -1);
        tgt_assert_tensor(y, want, 1e-12);
        /* Along axis 0: columns. */
        double col[2], wcol[2];
        tg_tensor *y0 = lf ? tg_log_softmax(x, 0) : tg_softmax(x, 0);
        for (int j = 0; j < 3; j++) {
            col[0] = xv[j];
            col[1] = xv[3 + j];
            softmax_ref(col, 2, wcol, lf);
            ck_assert_close(tg_tensor_get(y0, j), wcol[0], 1e-12);
            ck_assert_close(tg_tensor_get(y0, 3 + j), wcol[1], 1e-12);
        }
        tg_tape_reset();
        tg_tensor_free(x);
    }
}
END_TEST

START_TEST(test_softmax_grads) {
    static const int64_t shapes[][3] = {{5, 0, 0}, {3, 4, 0}, {2, 3, 4}};
    static const int ndims[] = {1, 2, 3};
    for (int lf = 0; lf < 2; lf++)
        for (int s = 0; s < 3; s++)
            for (int axis = -1; axis < ndims[s]; axis++) {
                tgt_seed((uint64_t)(s * 10 + axis + 2));
                tg_tensor *x = tgt_rand(TG_F64, ndims[s], shapes[s], -2.0, 2.0);
                tg_requires_grad(x, true);
                sm_ctx c = {axis, lf};
                tgt_assert_grads(f_softmax, &c, 1, &x, NULL, lf ? "log_softmax" : "softmax");
                tgt_assert_f32_agrees(f_softmax, &c, 1, &x, lf ? "log_softmax f32" : "softmax f32");
                tg_tape_reset();
                tg_tensor_free(x);
            }
}
END_TEST

/* softmax of a broadcast sum: x [3,1] + b [4] -> [3,4], along each axis. */
static tg_tensor *f_softmax_bcast(tg_tensor *const *in, void *vctx) {
    const sm_ctx *c = vctx;
    tg_tensor *z = tg_add(in[0], in[1]);
    tg_tensor *y = c->log_form ? tg_log_softmax(z, c->axis) : tg_softmax(z, c->axis);
    return tg_mul(y, tg_sin(z));
}

START_TEST(test_softmax_broadcast_grads) {
    tgt_seed(31);
    tg_tensor *x = tgt_rand(TG_F64, TG_SHAPE(3, 1), -2.0, 2.0);
    tg_tensor *b = tgt_rand(TG_F64, TG_SHAPE(4), -2.0, 2.0);
    tg_requires_grad(x, true);
    tg_requires_grad(b, true);
    for (int lf = 0; lf < 2; lf++)
        for (int axis = -1; axis < 2; axis++) {
            sm_ctx c = {axis, lf};
            const char *what = lf ? "log_softmax broadcast" : "softmax broadcast";
            tgt_assert_grads(f_softmax_bcast, &c, 2, (tg_tensor *[]){x, b}, NULL, what);
            tgt_assert_f32_agrees(f_softmax_bcast, &c, 2, (tg_tensor *[]){x, b}, what);
        }
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(b);
}
END_TEST

/* Empty tensors (an empty batch, or an empty softmax axis): an empty result of the same
 * shape, and first and second derivatives that are empty too (no element is read or
 * written; run under the sanitizers and valgrind). */
START_TEST(test_softmax_empty) {
    static const struct {
        int nd;
        int64_t shape[3];
        int axis;
    } cases[] = {{2, {0, 3}, 1}, {2, {0, 3}, 0},    {2, {3, 0}, 1},
                 {2, {3, 0}, 0}, {3, {2, 0, 4}, 1}, {3, {2, 0, 4}, -1}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int lf = 0; lf < 2; lf++) {
            tg_tensor *x = tg_tensor_new(TG_F64, cases[c].nd, cases[c].shape);
            tg_requires_grad(x, true);
            tg_tensor *y = lf ? tg_log_softmax(x, cases[c].axis) : tg_softmax(x, cases[c].axis);
            ck_assert_msg(y != NULL, "case %zu: %s", c, tg_error());
            ck_assert(tg_same_shape(y, x));
            tg_tensor *loss = tg_sum(tg_square(y), TG_ALL, false), *dx = NULL, *ddx = NULL;
            ck_assert_int_eq(tg_grad(1, &loss, NULL, 1, &x, &dx, TG_CREATE_GRAPH), 0);
            ck_assert(tg_same_shape(dx, x));
            tg_tensor *s = tg_sum(dx, TG_ALL, false);
            ck_assert_int_eq(tg_grad(1, &s, NULL, 1, &x, &ddx, 0), 0);
            ck_assert(tg_same_shape(ddx, x));
            ck_assert_int_eq(tg_backward(loss), 0);
            ck_assert(tg_same_shape(x->grad, x));
            tg_tape_reset();
            tg_tensor_free(x);
        }
}
END_TEST

START_TEST(test_softmax_errors) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(2, 3));
    tg_tensor *i = tg_tensor_new(TG_I64, TG_SHAPE(2, 3));
    tg_tensor *s = tg_scalar(TG_F64, 1.0);
    ck_assert_op_error(tg_softmax(x, 2), "tg_softmax", "axis 2", "[2,3]");
    ck_assert_op_error(tg_log_softmax(x, -3), "tg_log_softmax", "axis -3", "[2,3]");
    ck_assert_op_error(tg_softmax(x, TG_ALL), "tg_softmax", "TG_ALL", "[2,3]");
    ck_assert_op_error(tg_softmax(i, 1), "tg_softmax", "i64", "[2,3]");
    ck_assert_op_error(tg_log_softmax(s, 0), "tg_log_softmax", "axis 0", "[]");
    ck_assert_op_error(tg_softmax(NULL, 0), "tg_softmax", "NULL");
    /* Each kind for both ops. */
    ck_assert_op_error(tg_softmax(x, -3), "tg_softmax", "axis -3", "[2,3]");
    ck_assert_op_error(tg_log_softmax(x, 2), "tg_log_softmax", "axis 2", "[2,3]");
    ck_assert_op_error(tg_log_softmax(x, TG_ALL), "tg_log_softmax", "TG_ALL", "[2,3]");
    ck_assert_op_error(tg_log_softmax(i, 1), "tg_log_softmax", "i64", "[2,3]");
    ck_assert_op_error(tg_softmax(s, 0), "tg_softmax", "axis 0", "[]");
    ck_assert_op_error(tg_log_softmax(NULL, 0), "tg_log_softmax", "NULL");
    /* A NULL input keeps an earlier message. */
    tg_clear_error();
    ck_assert_ptr_null(tg_softmax(i, 1));
    ck_assert_ptr_null(tg_log_softmax(NULL, 0));
    ck_assert_ptr_nonnull(strstr(tg_error(), "tg_softmax"));
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(i);
    tg_tensor_free(s);
}
END_TEST

/* ---- fused cross-entropy ---- */

static tg_tensor *f_xent(tg_tensor *const *in, void *ctx) {
    return tg_softmax_cross_entropy(in[0], (const tg_tensor *)ctx);
}

/* The same loss composed from logsumexp and a one-hot mask (ctx: the mask, [N, C]). */
static tg_tensor *f_xent_composed(tg_tensor *const *in, void *ctx) {
    tg_tensor *onehot = ctx;
    tg_tensor *picked = tg_sum(tg_mul(in[0], onehot), 1, true);
    return tg_mean(tg_sub(tg_logsumexp(in[0], 1, true), picked), TG_ALL, false);
}

START_TEST(test_xent_values_and_grads) {
    tgt_seed(7);
    const int64_t rows = 4, classes = 5;
    tg_tensor *x = tgt_rand(TG_F64, TG_SHAPE(rows, classes), -3.0, 3.0);
    tg_requires_grad(x, true);
    int64_t lv[4] = {0, 4, 2, 2};
    tg_tensor *labels = tg_tensor_from(TG_I64, TG_SHAPE(rows), lv);
    /* Closed form. */
    double want = 0;
    for (int64_t i = 0; i < rows; i++) {
        double row[5], m = -INFINITY, s = 0;
        for (int j = 0; j < classes; j++)
            row[j] = tg_tensor_get(x, i * classes + j);
        for (int j = 0; j < classes; j++)
            m = fmax(m, row[j]);
        for (int j = 0; j < classes; j++)
            s += exp(row[j] - m);
        want += m + log(s) - row[lv[i]];
    }
    want /= (double)rows;
    tg_tensor *y = tg_softmax_cross_entropy(x, labels);
    ck_assert_int_eq(y->ndim, 0);
    ck_assert_close(tg_item(y), want, 1e-12);
    /* The gradient equals that of the composed loss. */
    tg_tensor *onehot = tg_tensor_new(TG_F64, TG_SHAPE(rows, classes));
    for (int64_t i = 0; i < rows; i++)
        tg_tensor_set(onehot, i * classes + lv[i], 1.0);
    tg_tensor *yc = f_xent_composed(&x, onehot);
    ck_assert_close(tg_item(yc), want, 1e-12);
    tg_tensor *g1, *g2;
    ck_assert_int_eq(tg_grad(1, &y, NULL, 1, &x, &g1, 0), 0);
    ck_assert_int_eq(tg_grad(1, &yc, NULL, 1, &x, &g2, 0), 0);
    for (int64_t i = 0; i < x->numel; i++)
        ck_assert_close(tg_tensor_get(g1, i), tg_tensor_get(g2, i), 1e-12);
    tg_tape_reset();
    tgt_assert_grads(f_xent, labels, 1, &x, NULL, "softmax_cross_entropy");
    tgt_assert_f32_agrees(f_xent, labels, 1, &x, "softmax_cross_entropy f32");
    /* Stable at large logits: 1e4 spread gives the exact margin. */
    double big[2] = {1e4, 0.0};
    int64_t l1[1] = {1};
    tg_tensor *xb = tg_tensor_from(TG_F64, TG_SHAPE(1, 2), big);
    tg_tensor *lb = tg_tensor_from(TG_I64, TG_SHAPE(1), l1);
    ck_assert_close(tg_item(tg_softmax_cross_entropy(xb, lb)), 1e4, 1e-9);
    tg_tape_reset();
    tg_tensor_free(onehot);
    tg_tensor_free(xb);
    tg_tensor_free(lb);
    tg_tensor_free(x);
    tg_tensor_free(labels);
}
END_TEST

/* More shapes: one row, two classes, one class (loss and gradient 0), and logits that
 * come from a broadcast sum (x [N,C] + bias [C]). */
static tg_tensor *f_xent_bias(tg_tensor *const *in, void *ctx) {
    return tg_softmax_cross_entropy(tg_add(in[0], in[1]), (const tg_tensor *)ctx);
}

START_TEST(test_xent_shapes) {
    static const struct {
        int64_t rows, classes;
        int64_t labels[6];
    } cases[] = {{1, 3, {2}}, {6, 2, {0, 1, 1, 0, 1, 1}}, {3, 1, {0, 0, 0}}, {2, 7, {6, 0}}};
    tgt_seed(41);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        tg_tensor *x = tgt_rand(TG_F64, TG_SHAPE(cases[k].rows, cases[k].classes), -3.0, 3.0);
        tg_tensor *l = tg_tensor_from(TG_I64, TG_SHAPE(cases[k].rows), cases[k].labels);
        tg_requires_grad(x, true);
        char what[64];
        snprintf(what, sizeof what, "softmax_cross_entropy [%lld,%lld]", (long long)cases[k].rows,
                 (long long)cases[k].classes);
        tgt_assert_grads(f_xent, l, 1, &x, NULL, what);
        tgt_assert_f32_agrees(f_xent, l, 1, &x, what);
        if (cases[k].classes == 1) {
            tg_tensor *y = tg_softmax_cross_entropy(x, l);
            ck_assert_close(tg_item(y), 0, 0);
            ck_assert_int_eq(tg_backward(y), 0);
            for (int64_t i = 0; i < x->numel; i++)
                ck_assert_close(tg_tensor_get(x->grad, i), 0, 0);
        }
        tg_tape_reset();
        tg_tensor_free(x);
        tg_tensor_free(l);
    }
    tg_tensor *x = tgt_rand(TG_F64, TG_SHAPE(4, 3), -2.0, 2.0);
    tg_tensor *bias = tgt_rand(TG_F64, TG_SHAPE(3), -1.0, 1.0);
    tg_tensor *l = tg_tensor_from(TG_I64, TG_SHAPE(4), (int64_t[]){2, 0, 1, 2});
    tg_requires_grad(x, true);
    tg_requires_grad(bias, true);
    tgt_assert_grads(f_xent_bias, l, 2, (tg_tensor *[]){x, bias}, NULL, "xent broadcast bias");
    tgt_assert_f32_agrees(f_xent_bias, l, 2, (tg_tensor *[]){x, bias}, "xent broadcast bias");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(bias);
    tg_tensor_free(l);
}
END_TEST

START_TEST(test_xent_errors) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(2, 3));
    tg_tensor *x3 = tg_tensor_new(TG_F64, TG_SHAPE(2, 3, 1));
    int64_t good[2] = {0, 2}, bad[2] = {0, 3}, neg[2] = {-1, 0};
    tg_tensor *l = tg_tensor_from(TG_I64, TG_SHAPE(2), good);
    tg_tensor *lbad = tg_tensor_from(TG_I64, TG_SHAPE(2), bad);
    tg_tensor *lneg = tg_tensor_from(TG_I64, TG_SHAPE(2), neg);
    tg_tensor *l3 = tg_tensor_new(TG_I64, TG_SHAPE(3));
    tg_tensor *lf = tg_tensor_new(TG_F64, TG_SHAPE(2));
    ck_assert_op_error(tg_softmax_cross_entropy(x, lbad), "tg_softmax_cross_entropy", "label 3",
                       "3 classes", "row 1");
    ck_assert_op_error(tg_softmax_cross_entropy(x, lneg), "tg_softmax_cross_entropy", "label -1",
                       "row 0");
    ck_assert_op_error(tg_softmax_cross_entropy(x, l3), "tg_softmax_cross_entropy", "[3]", "[2,3]");
    ck_assert_op_error(tg_softmax_cross_entropy(x, lf), "tg_softmax_cross_entropy", "f64", "[2]");
    ck_assert_op_error(tg_softmax_cross_entropy(x3, l), "tg_softmax_cross_entropy", "[2,3,1]");
    ck_assert_op_error(tg_softmax_cross_entropy(l3, l), "tg_softmax_cross_entropy", "i64");
    ck_assert_op_error(tg_softmax_cross_entropy(x, NULL), "tg_softmax_cross_entropy", "NULL");
    ck_assert_op_error(tg_softmax_cross_entropy(NULL, l), "tg_softmax_cross_entropy", "NULL");
    /* 0-d and 1-D logits, no rows, no classes, 0-d labels. */
    tg_tensor *s = tg_scalar(TG_F64, 1.0), *v = tg_tensor_new(TG_F64, TG_SHAPE(3));
    tg_tensor *x0 = tg_tensor_new(TG_F64, TG_SHAPE(0, 3)), *l0 = tg_tensor_new(TG_I64, TG_SHAPE(0));
    tg_tensor *xc0 = tg_tensor_new(TG_F64, TG_SHAPE(2, 0)), *ls = tg_scalar(TG_I64, 0);
    ck_assert_op_error(tg_softmax_cross_entropy(s, l), "tg_softmax_cross_entropy", "[N, C]",
                       "got []");
    ck_assert_op_error(tg_softmax_cross_entropy(v, l), "tg_softmax_cross_entropy", "got [3]");
    ck_assert_op_error(tg_softmax_cross_entropy(x0, l0), "tg_softmax_cross_entropy", "N >= 1",
                       "[0,3]");
    ck_assert_op_error(tg_softmax_cross_entropy(xc0, l), "tg_softmax_cross_entropy", "C >= 1",
                       "[2,0]");
    ck_assert_op_error(tg_softmax_cross_entropy(x, ls), "tg_softmax_cross_entropy", "i64 []",
                       "[2,3]");
    /* F32 logits against F64 labels: the labels' dtype is named. */
    tg_tensor *x32 = tg_tensor_new(TG_F32, TG_SHAPE(2, 3));
    ck_assert_op_error(tg_softmax_cross_entropy(x32, lf), "tg_softmax_cross_entropy", "f64 [2]",
                       "[2,3]");
    /* NULL labels keep an earlier message. */
    tg_clear_error();
    ck_assert_ptr_null(tg_softmax_cross_entropy(x, lbad));
    ck_assert_ptr_null(tg_softmax_cross_entropy(NULL, NULL));
    ck_assert_ptr_nonnull(strstr(tg_error(), "label 3"));
    tg_tape_reset();
    tg_tensor *all[] = {x, x3, l, lbad, lneg, l3, lf, s, v, x0, l0, xc0, ls, x32};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        tg_tensor_free(all[i]);
}
END_TEST

/* relu's backward is one op whose own backward is itself: second derivatives of a
 * function that goes through relu twice. */
static tg_tensor *f_relu2(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_mul(tg_relu(tg_mul(in[0], in[1])), tg_relu(in[0]));
}

START_TEST(test_relu_grad_op) {
    double xv[4] = {0.5, -0.7, 1.3, 2.1}, wv[4] = {1.5, 0.4, -0.9, 0.8};
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(4), xv);
    tg_tensor *w = tg_tensor_from(TG_F64, TG_SHAPE(4), wv);
    tg_requires_grad(x, true);
    tg_requires_grad(w, true);
    tgt_assert_grads(f_relu2, NULL, 2, (tg_tensor *[]){x, w}, NULL, "relu twice");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(w);
}
END_TEST

static Suite *softmax_suite(void) {
    Suite *s = suite_create("softmax");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_softmax_values);
    tcase_add_test(tc, test_softmax_grads);
    tcase_add_test(tc, test_softmax_broadcast_grads);
    tcase_add_test(tc, test_softmax_empty);
    tcase_add_test(tc, test_softmax_errors);
    tcase_add_test(tc, test_xent_values_and_grads);
    tcase_add_test(tc, test_xent_shapes);
    tcase_add_test(tc, test_xent_errors);
    tcase_add_test(tc, test_relu_grad_op);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tgt_run(softmax_suite()); }
