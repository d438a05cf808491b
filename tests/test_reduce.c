/* test_reduce.c — reductions (sum, mean, max, min, var, std, logsumexp, argmax) and the
 * view ops that
 * are their adjoints and companions (reshape, broadcast_to, sum_to, detach): forward
 * values against closed forms, first and second derivatives against finite differences
 * (F64), F32 against F64, the documented tie and empty-axis rules, and every way an
 * input can be wrong. */
#include <string.h>

#include "ref/ops2_ref.h"
#include "testutil.h"

static tg_tensor *rand_req(int ndim, const int64_t *shape, double lo, double hi) {
    tg_tensor *t = tgt_rand(TG_F64, ndim, shape, lo, hi);
    tg_requires_grad(t, true);
    return t;
}

/* ================= reductions ================= */

typedef tg_tensor *(*red_fn)(tg_tensor *, int, bool);
typedef enum { K_SUM, K_MEAN, K_MAX, K_LSE, K_MIN, K_VAR0, K_VAR1, K_STD0, K_STD1 } red_kind;

typedef struct {
    const char *name;
    red_fn fn;
    red_kind kind;
} red_op;

/* tg_var and tg_std with corrections 0 and 1, as reductions of the common signature. */
static tg_tensor *var0(tg_tensor *x, int axis, bool keep) { return tg_var(x, axis, keep, 0); }
static tg_tensor *var1(tg_tensor *x, int axis, bool keep) { return tg_var(x, axis, keep, 1); }
static tg_tensor *std0(tg_tensor *x, int axis, bool keep) { return tg_std(x, axis, keep, 0); }
static tg_tensor *std1(tg_tensor *x, int axis, bool keep) { return tg_std(x, axis, keep, 1); }

static const red_op red_ops[] = {
    {"tg_sum", tg_sum, K_SUM}, {"tg_mean", tg_mean, K_MEAN},
    {"tg_max", tg_max, K_MAX}, {"tg_logsumexp", tg_logsumexp, K_LSE},
    {"tg_min", tg_min, K_MIN}, {"tg_var", var0, K_VAR0},
    {"tg_var", var1, K_VAR1},  {"tg_std", std0, K_STD0},
    {"tg_std", std1, K_STD1},
};
enum { NRED = sizeof red_ops / sizeof *red_ops };

/* The closed form over the [outer, n, inner] view of x for one axis (TG_ALL: all). */
static double red_ref(red_kind k, const tg_tensor *x, int axis, int64_t out_index) {
    int64_t outer = 1, n = x->numel, inner = 1;
    if (axis != TG_ALL) {
        int a = axis < 0 ? axis + x->ndim : axis;
        outer = 1;
        inner = 1;
        for (int i = 0; i < a; i++)
            outer *= x->shape[i];
        for (int i = a + 1; i < x->ndim; i++)
            inner *= x->shape[i];
        n = x->shape[a];
    }
    int64_t o = out_index / inner, in = out_index % inner;
    double s = 0, m = -INFINITY, lo = INFINITY, ss = 0;
    for (int64_t j = 0; j < n; j++) {
        double v = tg_tensor_get(x, (o * n + j) * inner + in);
        s += v;
        if (v > m) m = v;
        if (v < lo) lo = v;
    }
    for (int64_t j = 0; j < n; j++) {
        double d = tg_tensor_get(x, (o * n + j) * inner + in) - s / (double)n;
        ss += d * d;
    }
    switch (k) {
    case K_SUM:
        return s;
    case K_MEAN:
        return s / (double)n;
    case K_MAX:
        return m;
    case K_MIN:
        return lo;
    case K_VAR0:
        return ss / (double)n;
    case K_VAR1:
        return ss / (double)(n - 1);
    case K_STD0:
        return sqrt(ss / (double)n);
    case K_STD1:
        return sqrt(ss / (double)(n - 1));
    case K_LSE: {
        double e = 0;
        for (int64_t j = 0; j < n; j++)
            e += exp(tg_tensor_get(x, (o * n + j) * inner + in) - m);
        return m + log(e);
    }
    }
    return NAN;
}

typedef struct {
    const red_op *op;
    int axis;
    bool keepdim;
} red_call;

static tg_tensor *f_red(tg_tensor *const *in, void *ctx) {
    const red_call *c = ctx;
    return c->op->fn(in[0], c->axis, c->keepdim);
}

/* The reduction of a broadcast sum: op(x + y) with x [2,1,4] and y [3,1]. */
static tg_tensor *f_red_bcast(tg_tensor *const *in, void *ctx) {
    const red_call *c = ctx;
    return c->op->fn(tg_add(in[0], in[1]), c->axis, c->keepdim);
}

typedef struct {
    int nd;
    int64_t s[3];
} shape1;

static const shape1 red_shapes[] = {{0, {0}}, {1, {5}}, {3, {2, 3, 4}}};
static const int red_axes[] = {TG_ALL, 0, 1, 2, -1, -3};

/* The expected output shape of a reduction. */
static int red_shape(const tg_tensor *x, int axis, bool keepdim, int64_t *out) {
    if (axis == TG_ALL) {
        for (int i = 0; keepdim && i < x->ndim; i++)
            out[i] = 1;
        return keepdim ? x->ndim : 0;
    }
    int a = axis < 0 ? axis + x->ndim : axis, nd = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i == a && !keepdim) continue;
        out[nd++] = i == a ? 1 : x->shape[i];
    }
    return nd;
}

START_TEST(test_reduce_forward_and_grad) {
    const red_op *op = &red_ops[_i];
    tgt_seed(600 + (uint64_t)_i);
    char what[96];
    for (int s = 0; s < 3; s++) {
        tg_tensor *x = rand_req(red_shapes[s].nd, red_shapes[s].s, -2, 2);
        for (size_t ai = 0; ai < sizeof red_axes / sizeof *red_axes; ai++) {
            int axis = red_axes[ai];
            if (axis != TG_ALL && (axis >= x->ndim || axis < -x->ndim)) continue;
            /* correction 1 over one element divides by 0: tested on its own below */
            int64_t count = axis == TG_ALL ? x->numel : x->shape[axis < 0 ? axis + x->ndim : axis];
            if ((op->kind == K_VAR1 || op->kind == K_STD1) && count < 2) continue;
            /* std of one value is 0, where its gradient is infinite (as in PyTorch) */
            if (op->kind == K_STD0 && count < 2) continue;
            for (int keep = 0; keep < 2; keep++) {
                red_call c = {op, axis, keep};
                tg_tensor *y = op->fn(x, axis, keep);
                int64_t want[TG_MAX_DIMS];
                int nd = red_shape(x, axis, keep, want);
                tgt_assert_shape(y, nd, want);
                for (int64_t i = 0; i < y->numel; i++) {
                    double r = red_ref(op->kind, x, axis, i);
                    ck_assert_close(tg_tensor_get(y, i), r, 1e-14 * (1 + fabs(r)));
                }
                snprintf(what, sizeof what, "%s shape #%d axis %d keepdim %d", op->name, s, axis,
                         keep);
                tgt_assert_grads(f_red, &c, 1, &x, NULL, what);
                tgt_assert_f32_agrees(f_red, &c, 1, &x, what);
            }
        }
        tg_tensor_free(x);
    }
    /* A broadcast input. */
    tg_tensor *x = rand_req(TG_SHAPE(2, 1, 4), -2, 2), *y = rand_req(TG_SHAPE(3, 1), -2, 2);
    for (int axis = -1; axis < 3; axis++) {
        red_call c = {op, axis < 0 ? TG_ALL : axis, axis == 1};
        snprintf(what, sizeof what, "%s broadcast axis %d", op->name, c.axis);
        tgt_assert_grads(f_red_bcast, &c, 2, (tg_tensor *[]){x, y}, NULL, what);
        tgt_assert_f32_agrees(f_red_bcast, &c, 2, (tg_tensor *[]){x, y}, what);
    }
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(y);
}
END_TEST

START_TEST(test_reduce_errors) {
    const red_op *op = &red_ops[_i];
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(2, 3)), *s = tg_scalar(TG_F64, 1);
    tg_tensor *i64 = tg_tensor_new(TG_I64, TG_SHAPE(2, 3));
    ck_assert_op_error(op->fn(i64, 0, false), op->name, "i64", "[2,3]");
    ck_assert_op_error(op->fn(x, 2, false), op->name, "axis 2 out of range", "[2,3]");
    ck_assert_op_error(op->fn(x, -3, true), op->name, "axis -3 out of range", "[2,3]");
    ck_assert_op_error(op->fn(x, 100, false), op->name, "axis 100", "[2,3]");
    ck_assert_op_error(op->fn(s, 0, false), op->name, "axis 0 out of range", "[]");
    ck_assert_op_error(op->fn(NULL, 0, false), op->name, "NULL");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(s);
    tg_tensor_free(i64);
}
END_TEST

/* Reducing an empty axis: sum 0, mean NaN, max and logsumexp (and argmax) an error.
 * A non-empty axis of an empty tensor gives an empty result. */
START_TEST(test_reduce_empty) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(0, 3));
    tg_requires_grad(x, true);
    tg_tensor *s0 = tg_sum(x, 0, false);
    tgt_assert_shape(s0, 1, (int64_t[]){3});
    tgt_assert_tensor(s0, (double[]){0, 0, 0}, 0);
    ck_assert_close(tg_item(tg_sum(x, TG_ALL, false)), 0, 0);
    tgt_assert_tensor(tg_mean(x, 0, false), (double[]){NAN, NAN, NAN}, 0);
    ck_assert(isnan(tg_item(tg_mean(x, TG_ALL, false))));
    ck_assert_op_error(tg_max(x, 0, false), "tg_max", "empty axis", "[0,3]");
    ck_assert_op_error(tg_max(x, TG_ALL, false), "tg_max", "empty axis", "[0,3]");
    ck_assert_op_error(tg_logsumexp(x, 0, true), "tg_logsumexp", "empty axis", "[0,3]");
    ck_assert_op_error(tg_argmax(x, 0), "tg_argmax", "empty axis", "[0,3]");
    /* Along the non-empty axis: results of shape [0]. */
    tgt_assert_shape(tg_max(x, 1, false), 1, (int64_t[]){0});
    tgt_assert_shape(tg_logsumexp(x, 1, false), 1, (int64_t[]){0});
    tgt_assert_shape(tg_argmax(x, 1), 1, (int64_t[]){0});
    /* The gradient of an empty sum is an empty gradient. */
    ck_assert_int_eq(tg_backward(tg_sum(x, TG_ALL, false)), 0);
    tgt_assert_shape(x->grad, 2, (int64_t[]){0, 3});
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* The gradient of max goes to the first maximal element; NaN wins. min follows the same
 * rules: it is checked on the negated data, with the same expected gradients. */
START_TEST(test_max_ties) {
    const double v[6] = {1, 3, 3, 2, 2, 1};
    for (int k = 0; k < 2; k++) {
        red_fn fn = k ? tg_min : tg_max;
        double sgn = k ? -1 : 1, d[6];
        for (int i = 0; i < 6; i++)
            d[i] = sgn * v[i];
        tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2, 3), d);
        tg_requires_grad(x, true);
        tgt_assert_tensor(fn(x, 1, false), (double[]){3 * sgn, 2 * sgn}, 0);
        ck_assert_int_eq(tg_backward(tg_sum(fn(x, 1, false), TG_ALL, false)), 0);
        tgt_assert_tensor(x->grad, (double[]){0, 1, 0, 1, 0, 0}, 0);
        tg_zero_grad(x);
        /* Along axis 0 (the vectorised kernel): columns (1,2) (3,2) (3,1). */
        ck_assert_int_eq(tg_backward(tg_sum(fn(x, 0, true), TG_ALL, false)), 0);
        tgt_assert_tensor(x->grad, (double[]){0, 1, 1, 1, 0, 0}, 0);
        tg_zero_grad(x);
        /* TG_ALL: row-major first. */
        ck_assert_int_eq(tg_backward(fn(x, TG_ALL, false)), 0);
        tgt_assert_tensor(x->grad, (double[]){0, 1, 0, 0, 0, 0}, 0);
        if (!k) { /* argmax agrees. */
            tg_tensor *am = tg_argmax(x, 1);
            ck_assert_int_eq(am->dtype, TG_I64);
            tgt_assert_tensor(am, (double[]){1, 0}, 0);
            ck_assert_close(tg_item(tg_argmax(x, TG_ALL)), 1, 0);
        }
        tg_tape_reset();
        tg_tensor_free(x);
    }
    tg_tensor *xn = tg_tensor_from(TG_F64, TG_SHAPE(3), (double[]){1, NAN, 5});
    ck_assert(isnan(tg_item(tg_max(xn, 0, false))));
    ck_assert_close(tg_item(tg_argmax(xn, 0)), 1, 0);
    tg_tape_reset();
    tg_tensor_free(xn);
}
END_TEST

/* min: NaN wins on both kernels, an empty axis is an error. */
START_TEST(test_min_nan_empty) {
    tg_tensor *xn = tg_tensor_from(TG_F64, TG_SHAPE(3, 2), (double[]){1, 4, NAN, 2, 0, NAN});
    tgt_assert_tensor(tg_min(xn, 0, false), (double[]){NAN, NAN}, 0);
    tgt_assert_tensor(tg_min(xn, 1, false), (double[]){1, NAN, NAN}, 0);
    tg_tensor *e = tg_tensor_new(TG_F64, TG_SHAPE(0, 3));
    ck_assert_op_error(tg_min(e, 0, false), "tg_min", "empty axis", "[0,3]");
    ck_assert_op_error(tg_min(e, TG_ALL, false), "tg_min", "empty axis", "[0,3]");
    tgt_assert_shape(tg_min(e, 1, false), 1, (int64_t[]){0});
    tg_tape_reset();
    tg_tensor_free(xn);
    tg_tensor_free(e);
}
END_TEST

/* min, var and std against PyTorch (tests/ref/gen_ops2_ref.py): values and the gradient
 * of sum(y * G), over each axis of [3,4] and over everything, corrections 0, 1 and 2.
 * PyTorch's full min() splits the gradient among ties; tg_min (like tg_max) gives it to
 * the first one, so that case is checked by its value and the rule above. */
START_TEST(test_min_var_std_torch_refs) {
    tg_tensor *mx = tg_tensor_from(TG_F64, TG_SHAPE(3, 4), o2_min_x);
    tg_tensor *vx = tg_tensor_from(TG_F64, TG_SHAPE(3, 4), o2_var_x);
    tg_tensor *g4 = tg_tensor_from(TG_F64, TG_SHAPE(4), o2_g4);
    tg_tensor *g3 = tg_tensor_from(TG_F64, TG_SHAPE(3), o2_g3);
    tg_requires_grad(mx, true);
    tg_requires_grad(vx, true);
    struct {
        tg_tensor *x;
        int kind; /* 0 min, 1 var, 2 std */
        int axis, corr;
        const double *y, *g;
    } cases[] = {
        {mx, 0, 0, 0, o2_min0_y, o2_min0_g},
        {mx, 0, 1, 0, o2_min1_y, o2_min1_g},
        {vx, 1, 1, 0, o2_var1_c0_y, o2_var1_c0_g},
        {vx, 1, 0, 0, o2_var0_c0_y, o2_var0_c0_g},
        {vx, 1, TG_ALL, 0, o2_varall_c0_y, o2_varall_c0_g},
        {vx, 1, 1, 1, o2_var1_c1_y, o2_var1_c1_g},
        {vx, 1, 0, 1, o2_var0_c1_y, o2_var0_c1_g},
        {vx, 1, TG_ALL, 1, o2_varall_c1_y, o2_varall_c1_g},
        {vx, 1, 1, 2, o2_var1_c2_y, o2_var1_c2_g},
        {vx, 1, 0, 2, o2_var0_c2_y, o2_var0_c2_g},
        {vx, 1, TG_ALL, 2, o2_varall_c2_y, o2_varall_c2_g},
        {vx, 2, 1, 0, o2_std1_c0_y, o2_std1_c0_g},
        {vx, 2, 0, 0, o2_std0_c0_y, o2_std0_c0_g},
        {vx, 2, TG_ALL, 0, o2_stdall_c0_y, o2_stdall_c0_g},
        {vx, 2, 1, 1, o2_std1_c1_y, o2_std1_c1_g},
        {vx, 2, 0, 1, o2_std0_c1_y, o2_std0_c1_g},
        {vx, 2, TG_ALL, 1, o2_stdall_c1_y, o2_stdall_c1_g},
        {vx, 2, 1, 2, o2_std1_c2_y, o2_std1_c2_g},
        {vx, 2, 0, 2, o2_std0_c2_y, o2_std0_c2_g},
        {vx, 2, TG_ALL, 2, o2_stdall_c2_y, o2_stdall_c2_g},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        tg_tensor *x = cases[k].x;
        int axis = cases[k].axis;
        tg_tensor *y = cases[k].kind == 0   ? tg_min(x, axis, false)
                       : cases[k].kind == 1 ? tg_var(x, axis, false, cases[k].corr)
                                            : tg_std(x, axis, false, cases[k].corr);
        ck_assert_ptr_nonnull(y);
        tgt_assert_tensor(y, cases[k].y, 1e-14);
        tg_tensor *w = axis == 0 ? g4 : axis == 1 ? g3 : NULL;
        ck_assert_int_eq(tg_backward(tg_sum(w ? tg_mul(y, w) : y, TG_ALL, false)), 0);
        tgt_assert_tensor(x->grad, cases[k].g, 1e-14);
        tg_zero_grad(x);
        tg_tape_reset();
    }
    ck_assert_close(tg_item(tg_min(mx, TG_ALL, false)), o2_minall_y[0], 0);
    tg_tensor_free(mx);
    tg_tensor_free(vx);
    tg_tensor_free(g4);
    tg_tensor_free(g3);
}
END_TEST

/* var/std with n - correction <= 0 divide by 0 as PyTorch does; a negative correction
 * and the usual bad inputs are errors naming the function. */
START_TEST(test_var_std_edges_and_errors) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2, 3), (double[]){1, 2, 4, 3, 3, 3});
    /* column 0 is (1, 3): two values, correction 2: 2 / 0 */
    ck_assert(isinf(tg_item(tg_var(tg_slice(x, 1, 0, 1), TG_ALL, false, 2))));
    tg_tensor *v = tg_var(x, 0, false, 2);
    for (int i = 0; i < 3; i++)
        ck_assert(isinf(tg_tensor_get(v, i)));
    ck_assert(isnan(tg_item(tg_var(tg_slice(x, 0, 1, 2), 1, false, 3)))); /* 0 / 0 */
    tgt_assert_tensor(tg_std(x, 1, true, 0), (double[]){sqrt(14.0 / 9), 0}, 1e-15);
    tgt_assert_shape(tg_std(x, 1, true, 0), 2, (int64_t[]){2, 1});
    tg_tensor *e = tg_tensor_new(TG_F64, TG_SHAPE(0));
    ck_assert(isnan(tg_item(tg_var(e, 0, false, 0))));
    tg_tensor *i64 = tg_tensor_new(TG_I64, TG_SHAPE(2, 3));
    ck_assert_op_error(tg_var(x, 0, false, -1), "tg_var", "correction must be >= 0", "[2,3]");
    ck_assert_op_error(tg_std(x, 0, false, -2), "tg_std", "correction", "-2");
    ck_assert_op_error(tg_std(i64, 0, false, 1), "tg_std", "i64", "[2,3]");
    ck_assert_op_error(tg_std(x, 2, false, 1), "tg_std", "axis 2 out of range", "[2,3]");
    ck_assert_op_error(tg_std(NULL, 0, false, 1), "tg_std", "NULL");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(e);
    tg_tensor_free(i64);
}
END_TEST

/* logsumexp at 1e4 is exact (no overflow), against m + log(sum exp(x - m)) by hand;
 * its gradient is the softmax. */
START_TEST(test_logsumexp_large) {
    double v[] = {1e4, 1e4 + 1, 1e4 - 2, 1e4 + 0.5};
    for (int sign = -1; sign <= 1; sign += 2) {
        double xs[4], m = -INFINITY, e = 0;
        for (int i = 0; i < 4; i++)
            xs[i] = sign * v[i];
        for (int i = 0; i < 4; i++)
            m = xs[i] > m ? xs[i] : m;
        for (int i = 0; i < 4; i++)
            e += exp(xs[i] - m);
        double want = m + log(e);
        for (int dt = 0; dt < 2; dt++) {
            tg_tensor *x = tg_tensor_new(dt ? TG_F64 : TG_F32, TG_SHAPE(4));
            for (int i = 0; i < 4; i++)
                tg_tensor_set(x, i, xs[i]);
            tg_requires_grad(x, true);
            tg_tensor *y = tg_logsumexp(x, 0, false);
            ck_assert(isfinite(tg_item(y)));
            /* F64: exact to rounding; F32: to float precision of 1e4. */
            ck_assert_close(tg_item(y), want, dt ? 1e-15 * fabs(want) : 1e-3);
            ck_assert_int_eq(tg_backward(y), 0);
            for (int i = 0; i < 4; i++)
                ck_assert_close(tg_tensor_get(x->grad, i), exp(xs[i] - want), dt ? 1e-12 : 1e-3);
            tg_tape_reset();
            tg_tensor_free(x);
        }
    }
    /* The check also holds at 1e4 (F64). */
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2, 2), v);
    tg_requires_grad(x, true);
    red_call c = {&red_ops[3], 1, false};
    tgt_assert_grads(f_red, &c, 1, &x, NULL, "tg_logsumexp at 1e4");
    /* -inf entries contribute nothing; all -inf gives -inf. */
    tg_tensor *xi =
        tg_tensor_from(TG_F64, TG_SHAPE(2, 2), (double[]){-INFINITY, 0, -INFINITY, -INFINITY});
    tg_tensor *yi = tg_logsumexp(xi, 1, false);
    ck_assert_close(tg_tensor_get(yi, 0), 0, 0);
    ck_assert(isinf(tg_tensor_get(yi, 1)) && tg_tensor_get(yi, 1) < 0);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(xi);
}
END_TEST

START_TEST(test_argmax) {
    tgt_seed(700);
    tg_tensor *x = rand_req(TG_SHAPE(2, 3, 4), -2, 2);
    for (int axis = -3; axis < 3; axis++) {
        tg_tensor *a = tg_argmax(x, axis);
        int64_t want[TG_MAX_DIMS];
        int nd = red_shape(x, axis, false, want);
        tgt_assert_shape(a, nd, want);
        ck_assert_int_eq(a->dtype, TG_I64);
        ck_assert(!a->requires_grad);
        int ax = axis < 0 ? axis + 3 : axis;
        int64_t inner = 1;
        for (int i = ax + 1; i < 3; i++)
            inner *= x->shape[i];
        for (int64_t i = 0; i < a->numel; i++) {
            int64_t o = i / inner, k = i % inner, best = 0;
            for (int64_t j = 1; j < x->shape[ax]; j++)
                if (tg_tensor_get(x, (o * x->shape[ax] + j) * inner + k) >
                    tg_tensor_get(x, (o * x->shape[ax] + best) * inner + k))
                    best = j;
            ck_assert_int_eq((int64_t)tg_tensor_get(a, i), best);
        }
    }
    tg_tensor *all = tg_argmax(x, TG_ALL);
    tgt_assert_shape(all, 0, NULL);
    int64_t best = 0;
    for (int64_t i = 1; i < x->numel; i++)
        if (tg_tensor_get(x, i) > tg_tensor_get(x, best)) best = i;
    ck_assert_int_eq((int64_t)tg_item(all), best);
    /* 0-d input. */
    tg_tensor *s = tg_scalar(TG_F64, 3);
    ck_assert_close(tg_item(tg_argmax(s, TG_ALL)), 0, 0);
    /* F32 gives the same indices as F64 (the random values are far apart compared with
     * float rounding). */
    tg_tensor *x32 = tgt_to_f32(x);
    for (int axis = -3; axis < 3; axis++) {
        tg_tensor *a64 = tg_argmax(x, axis), *a32 = tg_argmax(x32, axis);
        ck_assert_ptr_nonnull(a32);
        ck_assert_int_eq(a32->dtype, TG_I64);
        ck_assert(tg_same_shape(a32, a64));
        for (int64_t i = 0; i < a64->numel; i++)
            ck_assert_int_eq((int64_t)tg_tensor_get(a32, i), (int64_t)tg_tensor_get(a64, i));
    }
    ck_assert_close(tg_item(tg_argmax(x32, TG_ALL)), tg_item(all), 0);
    tg_tensor_free(x32);
    /* Errors. */
    tg_tensor *i64 = tg_tensor_new(TG_I64, TG_SHAPE(2, 3));
    ck_assert_op_error(tg_argmax(i64, 0), "tg_argmax", "i64", "[2,3]");
    ck_assert_op_error(tg_argmax(x, 3), "tg_argmax", "axis 3 out of range", "[2,3,4]");
    ck_assert_op_error(tg_argmax(x, -4), "tg_argmax", "axis -4 out of range", "[2,3,4]");
    ck_assert_op_error(tg_argmax(s, 0), "tg_argmax", "axis 0", "[]");
    ck_assert_op_error(tg_argmax(NULL, 0), "tg_argmax", "NULL");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(s);
    tg_tensor_free(i64);
}
END_TEST

/* ================= views ================= */

typedef struct {
    int nd;
    int64_t s[4];
} target;

static tg_tensor *f_reshape(tg_tensor *const *in, void *ctx) {
    const target *t = ctx;
    return tg_reshape(in[0], t->nd, t->s);
}

/* reshape(x + y) for a broadcast sum. */
static tg_tensor *f_reshape_bcast(tg_tensor *const *in, void *ctx) {
    const target *t = ctx;
    return tg_reshape(tg_add(in[0], in[1]), t->nd, t->s);
}

START_TEST(test_reshape) {
    tgt_seed(800);
    struct {
        shape1 from;
        target to;
        target want;
    } cases[] = {
        {{0, {0}}, {2, {1, 1}}, {2, {1, 1}}},
        {{1, {6}}, {2, {2, 3}}, {2, {2, 3}}},
        {{3, {2, 3, 4}}, {2, {4, -1}}, {2, {4, 6}}},
        {{2, {2, 3}}, {0, {0}}, {0, {0}}}, /* replaced below: [2,3] -> [6] */
    };
    cases[3].to = (target){1, {-1}};
    cases[3].want = (target){1, {6}};
    for (int k = 0; k < 4; k++) {
        tg_tensor *x = rand_req(cases[k].from.nd, cases[k].from.s, -2, 2);
        tg_tensor *y = tg_reshape(x, cases[k].to.nd, cases[k].to.s);
        tgt_assert_shape(y, cases[k].want.nd, cases[k].want.s);
        for (int64_t i = 0; i < x->numel; i++)
            ck_assert_close(tg_tensor_get(y, i), tg_tensor_get(x, i), 0);
        char what[64];
        snprintf(what, sizeof what, "tg_reshape case %d", k);
        tgt_assert_grads(f_reshape, &cases[k].to, 1, &x, NULL, what);
        tgt_assert_f32_agrees(f_reshape, &cases[k].to, 1, &x, what);
        tg_tape_reset();
        tg_tensor_free(x);
    }
    tg_tensor *a = rand_req(TG_SHAPE(2, 1), -2, 2), *b = rand_req(TG_SHAPE(3), -2, 2);
    target t6 = {1, {6}};
    tgt_assert_grads(f_reshape_bcast, &t6, 2, (tg_tensor *[]){a, b}, NULL, "tg_reshape broadcast");
    tgt_assert_f32_agrees(f_reshape_bcast, &t6, 2, (tg_tensor *[]){a, b}, "tg_reshape broadcast");
    /* To a 0-d result. */
    tg_tensor *one = rand_req(TG_SHAPE(1, 1), -2, 2);
    target t0 = {0, {0}};
    tgt_assert_shape(tg_reshape(one, 0, NULL), 0, NULL);
    tgt_assert_grads(f_reshape, &t0, 1, &one, NULL, "tg_reshape [1,1] -> []");
    tgt_assert_f32_agrees(f_reshape, &t0, 1, &one, "tg_reshape [1,1] -> []");
    tg_tensor_free(one);
    /* I64 tensors can be reshaped (indices). */
    tg_tensor *i64 = tg_tensor_from(TG_I64, TG_SHAPE(4), (int64_t[]){1, 2, 3, 4});
    tg_tensor *ri = tg_reshape(i64, TG_SHAPE(2, 2));
    ck_assert_int_eq(ri->dtype, TG_I64);
    ck_assert_close(tg_tensor_get(ri, 3), 4, 0);
    /* Errors. */
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(2, 3));
    ck_assert_op_error(tg_reshape(x, TG_SHAPE(4)), "tg_reshape", "[2,3]", "[4]");
    ck_assert_op_error(tg_reshape(x, TG_SHAPE(-1, -1)), "tg_reshape", "[-1,-1]", "[2,3]");
    ck_assert_op_error(tg_reshape(x, TG_SHAPE(4, -1)), "tg_reshape", "[4,-1]", "[2,3]");
    ck_assert_op_error(tg_reshape(x, TG_SHAPE(-2, -3)), "tg_reshape", "[2,3]");
    ck_assert_op_error(tg_reshape(x, 9, (int64_t[9]){1, 1, 1, 1, 1, 1, 1, 2, 3}), "tg_reshape",
                       "ndim 9", "[2,3]");
    ck_assert_op_error(tg_reshape(x, 2, NULL), "tg_reshape", "[2,3]");
    ck_assert_op_error(tg_reshape(NULL, TG_SHAPE(6)), "tg_reshape", "NULL");
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(i64);
    tg_tensor_free(x);
}
END_TEST

static tg_tensor *f_broadcast_to(tg_tensor *const *in, void *ctx) {
    const target *t = ctx;
    return tg_broadcast_to(in[0], t->nd, t->s);
}

static tg_tensor *f_sum_to(tg_tensor *const *in, void *ctx) {
    const target *t = ctx;
    return tg_sum_to(in[0], t->nd, t->s);
}

START_TEST(test_broadcast_to_and_sum_to) {
    tgt_seed(900);
    /* (small, big) pairs: broadcast_to goes small -> big, sum_to big -> small. */
    struct {
        target small, big;
    } cases[] = {
        {{0, {0}}, {2, {2, 3}}},
        {{1, {3}}, {2, {2, 3}}},
        {{3, {2, 1, 3}}, {4, {2, 2, 4, 3}}},
        {{2, {2, 1}}, {3, {4, 2, 3}}},
        {{2, {2, 3}}, {2, {2, 3}}},
    };
    for (int k = 0; k < 5; k++) {
        const target *sm = &cases[k].small, *bg = &cases[k].big;
        tg_tensor *x = rand_req(sm->nd, sm->s, -2, 2);
        tg_tensor *y = tg_broadcast_to(x, bg->nd, bg->s);
        tgt_assert_shape(y, bg->nd, bg->s);
        /* y[i] = x at the broadcast index. */
        tg_tensor *z = rand_req(bg->nd, bg->s, -2, 2);
        tg_tensor *s = tg_sum_to(z, sm->nd, sm->s);
        tgt_assert_shape(s, sm->nd, sm->s);
        double want_s[64] = {0};
        for (int64_t i = 0; i < y->numel; i++) {
            int64_t idx = 0, stride = 1, flat = i;
            for (int d = bg->nd - 1; d >= 0; d--) {
                int64_t coord = flat % bg->s[d];
                flat /= bg->s[d];
                int od = d - (bg->nd - sm->nd);
                if (od < 0) continue;
                if (sm->s[od] != 1) idx += coord * stride;
                stride *= sm->s[od];
            }
            ck_assert_close(tg_tensor_get(y, i), tg_tensor_get(x, idx), 0);
            want_s[idx] += tg_tensor_get(z, i);
        }
        tgt_assert_tensor(s, want_s, 1e-14);
        char what[64];
        snprintf(what, sizeof what, "tg_broadcast_to case %d", k);
        tgt_assert_grads(f_broadcast_to, (void *)bg, 1, &x, NULL, what);
        tgt_assert_f32_agrees(f_broadcast_to, (void *)bg, 1, &x, what);
        snprintf(what, sizeof what, "tg_sum_to case %d", k);
        tgt_assert_grads(f_sum_to, (void *)sm, 1, &z, NULL, what);
        tgt_assert_f32_agrees(f_sum_to, (void *)sm, 1, &z, what);
        tg_tape_reset();
        tg_tensor_free(x);
        tg_tensor_free(z);
    }
    /* I64 broadcasts (indices); sum_to needs floats. */
    tg_tensor *i64 = tg_tensor_from(TG_I64, TG_SHAPE(2, 1), (int64_t[]){7, 9});
    tgt_assert_tensor(tg_broadcast_to(i64, TG_SHAPE(2, 2)), (double[]){7, 7, 9, 9}, 0);
    ck_assert_op_error(tg_sum_to(i64, TG_SHAPE(1)), "tg_sum_to", "i64", "[2,1]");
    /* Errors. */
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(2, 3));
    ck_assert_op_error(tg_broadcast_to(x, TG_SHAPE(4)), "tg_broadcast_to", "[2,3]", "[4]");
    ck_assert_op_error(tg_broadcast_to(x, TG_SHAPE(3, 3)), "tg_broadcast_to", "[2,3]", "[3,3]");
    ck_assert_op_error(tg_broadcast_to(x, TG_SHAPE(-1, 3)), "tg_broadcast_to", "[-1,3]");
    ck_assert_op_error(tg_broadcast_to(x, 9, NULL), "tg_broadcast_to", "ndim 9", "[2,3]");
    ck_assert_op_error(tg_broadcast_to(NULL, TG_SHAPE(2)), "tg_broadcast_to", "NULL");
    ck_assert_op_error(tg_sum_to(x, TG_SHAPE(4)), "tg_sum_to", "[2,3]", "[4]");
    ck_assert_op_error(tg_sum_to(x, TG_SHAPE(1, 2, 3, 1)), "tg_sum_to", "[2,3]", "[1,2,3,1]");
    ck_assert_op_error(tg_sum_to(x, TG_SHAPE(-1)), "tg_sum_to", "[-1]");
    ck_assert_op_error(tg_sum_to(NULL, TG_SHAPE(2)), "tg_sum_to", "NULL");
    /* A NULL target shape and too many target dimensions. */
    ck_assert_op_error(tg_broadcast_to(x, 2, NULL), "tg_broadcast_to", "[2,3]");
    ck_assert_op_error(tg_sum_to(x, 2, NULL), "tg_sum_to", "[2,3]");
    ck_assert_op_error(tg_sum_to(x, 9, NULL), "tg_sum_to", "ndim 9", "[2,3]");
    ck_assert_op_error(tg_broadcast_to(x, -1, NULL), "tg_broadcast_to", "ndim -1", "[2,3]");
    ck_assert_op_error(tg_reshape(x, -1, NULL), "tg_reshape", "ndim -1", "[2,3]");
    tg_tape_reset();
    tg_tensor_free(i64);
    tg_tensor_free(x);
}
END_TEST

static tg_tensor *f_times_detached(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_mul(in[0], tg_detach(in[0]));
}

/* tg_max along a leading axis (the contiguous, vectorised path) against the rule
 * written out by hand, on values with many ties and a few NaNs: the first maximal
 * element wins, the first NaN wins and stays, and the gradient goes to the winner. */
START_TEST(test_max_leading_axis_rule) {
    const int64_t R = 7, C = 9;
    tgt_seed(11);
    for (int dt = 0; dt < 2; dt++) {
        tg_tensor *x = tg_tensor_new(dt ? TG_F64 : TG_F32, TG_SHAPE(R, C));
        tg_tensor *u = tgt_rand(TG_F64, TG_SHAPE(R, C), 0.0, 1.0);
        for (int64_t i = 0; i < R * C; i++) {
            double v = floor(tg_tensor_get(u, i) * 4.0); /* 0..3: many ties */
            if (i % 17 == 5) v = NAN;
            tg_tensor_set(x, i, v);
        }
        tg_requires_grad(x, true);
        tg_tensor *y = tg_max(x, 0, false);
        ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
        for (int64_t c = 0; c < C; c++) {
            int64_t best = 0;
            double m = tg_tensor_get(x, c);
            for (int64_t r = 1; r < R && !isnan(m); r++) {
                double v = tg_tensor_get(x, r * C + c);
                if (v > m || isnan(v)) m = v, best = r;
            }
            ck_assert_close(tg_tensor_get(y, c), m, 0.0);
            for (int64_t r = 0; r < R; r++)
                ck_assert_msg(tg_tensor_get(x->grad, r * C + c) == (r == best ? 1.0 : 0.0),
                              "column %lld row %lld: gradient %g, winner row %lld", (long long)c,
                              (long long)r, tg_tensor_get(x->grad, r * C + c), (long long)best);
        }
        tg_tape_reset();
        tg_tensor_free(x);
        tg_tensor_free(u);
    }
}
END_TEST

START_TEST(test_detach) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), (double[]){1, -2, 3});
    tg_requires_grad(x, true);
    size_t nodes = tg_tape_size();
    tg_tensor *d = tg_detach(x);
    ck_assert_ptr_nonnull(d);
    ck_assert(!d->requires_grad);
    ck_assert_ptr_eq(d->data, x->data); /* shares the data */
    ck_assert(tg_same_shape(d, x));
    ck_assert_uint_eq(tg_tape_size(), nodes);
    /* No gradient flows through it: d/dx (x * detach(x)) = x, not 2x. */
    ck_assert_int_eq(tg_backward(tg_sum(f_times_detached(&x, NULL), TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, (double[]){1, -2, 3}, 0);
    /* An intermediate's history is cut too. */
    tg_tensor *e = tg_detach(tg_exp(x));
    ck_assert(!e->requires_grad);
    ck_assert_ptr_null(e->grad);
    /* I64, F32 and 0-d are fine. */
    tg_tensor *s = tg_scalar(TG_F64, 2.5);
    ck_assert_close(tg_item(tg_detach(s)), 2.5, 0);
    tg_tensor *l = tg_tensor_from(TG_I64, TG_SHAPE(2), (int64_t[]){4, -5});
    tg_tensor *dl = tg_detach(l);
    ck_assert_int_eq(dl->dtype, TG_I64);
    tgt_assert_tensor(dl, (double[]){4, -5}, 0);
    tg_tensor *x32 = tgt_to_f32(x);
    tg_tensor *d32 = tg_detach(tg_mul_scalar(x32, 2.0));
    ck_assert_int_eq(d32->dtype, TG_F32);
    ck_assert(!d32->requires_grad);
    tgt_assert_tensor(d32, (double[]){2, -4, 6}, 0);
    tg_tensor_free(l);
    tg_tensor_free(x32);
    ck_assert_op_error(tg_detach(NULL), "tg_detach", "NULL");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(s);
}
END_TEST

static Suite *reduce_suite(void) {
    Suite *s = suite_create("reduce");
    TCase *tr = tcase_create("reductions");
    tcase_add_loop_test(tr, test_reduce_forward_and_grad, 0, NRED);
    tcase_add_loop_test(tr, test_reduce_errors, 0, NRED);
    tcase_add_test(tr, test_reduce_empty);
    tcase_add_test(tr, test_max_ties);
    tcase_add_test(tr, test_min_nan_empty);
    tcase_add_test(tr, test_min_var_std_torch_refs);
    tcase_add_test(tr, test_var_std_edges_and_errors);
    tcase_add_test(tr, test_max_leading_axis_rule);
    tcase_add_test(tr, test_logsumexp_large);
    tcase_add_test(tr, test_argmax);
    suite_add_tcase(s, tr);
    TCase *tv = tcase_create("views");
    tcase_add_test(tv, test_reshape);
    tcase_add_test(tv, test_broadcast_to_and_sum_to);
    tcase_add_test(tv, test_detach);
    suite_add_tcase(s, tv);
    return s;
}

int main(void) { return tgt_run(reduce_suite()); }
