/* test_elementwise.c — binary ops with broadcasting, unary ops, ops with a scalar
 * constant, and tg_where: forward values against closed forms, first and second
 * derivatives against finite differences (F64), F32 against F64, and every way an
 * input can be wrong. */
#include <string.h>

#include "autodiff/internal.h"
#include "ref/ops2_ref.h"
#include "testutil.h"

/* Flat index into an operand of shape (nd, sh) broadcast to (ond, osh), for output
 * element flat. */
static int64_t bcast_index(int ond, const int64_t *osh, int64_t flat, int nd, const int64_t *sh) {
    int64_t idx = 0, stride = 1;
    for (int d = ond - 1; d >= 0; d--) {
        int64_t coord = flat % osh[d];
        flat /= osh[d];
        int od = d - (ond - nd);
        if (od < 0) continue;
        if (sh[od] != 1) idx += coord * stride;
        stride *= sh[od];
    }
    return idx;
}

/* Uniform values in [lo, hi); with away set, every other element is negated (so the
 * values avoid (-lo, lo): relu's and abs's kink at 0). */
static tg_tensor *rand_in(int ndim, const int64_t *shape, double lo, double hi, bool away) {
    tg_tensor *t = tgt_rand(TG_F64, ndim, shape, lo, hi);
    if (away)
        for (int64_t i = 1; i < t->numel; i += 2)
            tg_tensor_set(t, i, -tg_tensor_get(t, i));
    tg_requires_grad(t, true);
    return t;
}

/* ================= binary ================= */

typedef tg_tensor *(*bin_fn)(tg_tensor *, tg_tensor *);

typedef struct {
    const char *name;
    bin_fn fn;
    double (*ref)(double, double);
    double alo, ahi, blo, bhi; /* input ranges, away from kinks and poles */
} bin_op;

static double r_add(double a, double b) { return a + b; }
static double r_sub(double a, double b) { return a - b; }
static double r_mul(double a, double b) { return a * b; }
static double r_div(double a, double b) { return a / b; }
static double r_pow(double a, double b) { return pow(a, b); }
static double r_max(double a, double b) { return a > b ? a : b; }
static double r_min(double a, double b) { return a < b ? a : b; }

static const bin_op bin_ops[] = {
    {"tg_add", tg_add, r_add, -2, 2, -2, 2},
    {"tg_sub", tg_sub, r_sub, -2, 2, -2, 2},
    {"tg_mul", tg_mul, r_mul, -2, 2, -2, 2},
    {"tg_div", tg_div, r_div, -2, 2, 0.5, 2},
    {"tg_pow", tg_pow, r_pow, 0.5, 2, -1.5, 1.5},
    {"tg_maximum", tg_maximum, r_max, -2, 2, -2, 2},
    {"tg_minimum", tg_minimum, r_min, -2, 2, -2, 2},
};
enum { NBIN = sizeof bin_ops / sizeof *bin_ops };

/* Shape pairs: 0-d, equal, a row broadcast, both sides broadcasting, a scalar operand. */
typedef struct {
    int na;
    int64_t sa[3];
    int nb;
    int64_t sb[3];
} shape_pair;

static const shape_pair bin_shapes[] = {
    {0, {0}, 0, {0}},          {1, {3}, 1, {3}}, {2, {2, 3}, 1, {3}},
    {3, {2, 1, 3}, 2, {4, 1}}, {1, {3}, 0, {0}}, {0, {0}, 2, {2, 2}},
};
enum { NSHAPES = sizeof bin_shapes / sizeof *bin_shapes };

static tg_tensor *f_bin(tg_tensor *const *in, void *ctx) {
    return ((const bin_op *)ctx)->fn(in[0], in[1]);
}

START_TEST(test_binary_forward) {
    const bin_op *op = &bin_ops[_i];
    tgt_seed(100 + (uint64_t)_i);
    for (int s = 0; s < NSHAPES; s++) {
        const shape_pair *p = &bin_shapes[s];
        tg_tensor *a = rand_in(p->na, p->sa, op->alo, op->ahi, false);
        tg_tensor *b = rand_in(p->nb, p->sb, op->blo, op->bhi, false);
        tg_tensor *y = op->fn(a, b);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(y->dtype, TG_F64);
        ck_assert(y->requires_grad);
        int64_t want_shape[3];
        int nd = p->na > p->nb ? p->na : p->nb;
        for (int d = 0; d < nd; d++) {
            int da = d - (nd - p->na), db = d - (nd - p->nb);
            int64_t x = da >= 0 ? p->sa[da] : 1, z = db >= 0 ? p->sb[db] : 1;
            want_shape[d] = x == 1 ? z : x;
        }
        ck_assert_int_eq(y->ndim, nd);
        for (int d = 0; d < nd; d++)
            ck_assert_int_eq(y->shape[d], want_shape[d]);
        for (int64_t i = 0; i < y->numel; i++) {
            double av = tg_tensor_get(a, bcast_index(nd, y->shape, i, p->na, p->sa));
            double bv = tg_tensor_get(b, bcast_index(nd, y->shape, i, p->nb, p->sb));
            ck_assert_close(tg_tensor_get(y, i), op->ref(av, bv),
                            1e-15 * (1 + fabs(op->ref(av, bv))));
        }
        tg_tape_reset();
        tg_tensor_free(a);
        tg_tensor_free(b);
    }
}
END_TEST

START_TEST(test_binary_grad) {
    const bin_op *op = &bin_ops[_i];
    tgt_seed(200 + (uint64_t)_i);
    for (int s = 0; s < NSHAPES; s++) {
        const shape_pair *p = &bin_shapes[s];
        tg_tensor *a = rand_in(p->na, p->sa, op->alo, op->ahi, false);
        tg_tensor *b = rand_in(p->nb, p->sb, op->blo, op->bhi, false);
        char what[64];
        snprintf(what, sizeof what, "%s shapes #%d", op->name, s);
        tgt_assert_grads(f_bin, (void *)op, 2, (tg_tensor *[]){a, b}, NULL, what);
        /* Only one side requiring a gradient. */
        tg_requires_grad(a, false);
        tgt_assert_grads(f_bin, (void *)op, 2, (tg_tensor *[]){a, b}, NULL, what);
        tg_requires_grad(a, true);
        tg_requires_grad(b, false);
        tgt_assert_grads(f_bin, (void *)op, 2, (tg_tensor *[]){a, b}, NULL, what);
        tg_requires_grad(b, true);
        tgt_assert_f32_agrees(f_bin, (void *)op, 2, (tg_tensor *[]){a, b}, what);
        tg_tape_reset();
        tg_tensor_free(a);
        tg_tensor_free(b);
    }
}
END_TEST

START_TEST(test_binary_errors) {
    const bin_op *op = &bin_ops[_i];
    tg_tensor *a23 = tg_tensor_new(TG_F64, TG_SHAPE(2, 3));
    tg_tensor *b4 = tg_tensor_new(TG_F64, TG_SHAPE(4));
    tg_tensor *f32 = tg_tensor_new(TG_F32, TG_SHAPE(2, 3));
    tg_tensor *i1 = tg_tensor_new(TG_I64, TG_SHAPE(2, 3)),
              *i2 = tg_tensor_new(TG_I64, TG_SHAPE(2, 3));
    /* Shape mismatch: names the op and both shapes. */
    ck_assert_op_error(op->fn(a23, b4), op->name, "do not broadcast", "[2,3]", "[4]");
    ck_assert_op_error(op->fn(b4, a23), op->name, "[4]", "[2,3]");
    /* F32 with F64. */
    ck_assert_op_error(op->fn(a23, f32), op->name, "dtypes differ", "f64", "f32", "[2,3]");
    ck_assert_op_error(op->fn(f32, a23), op->name, "dtypes differ", "f32", "f64");
    /* I64 operands. */
    ck_assert_op_error(op->fn(i1, i2), op->name, "i64", "[2,3]");
    ck_assert_op_error(op->fn(i1, a23), op->name, "dtypes differ", "i64");
    /* NULL: a message naming the op, and an earlier message is not overwritten. */
    ck_assert_op_error(op->fn(NULL, a23), op->name, "NULL");
    ck_assert_op_error(op->fn(a23, NULL), op->name, "NULL");
    tg_clear_error();
    ck_assert_ptr_null(op->fn(a23, b4));
    ck_assert_ptr_null(op->fn(NULL, a23));
    ck_assert_ptr_nonnull(strstr(tg_error(), "do not broadcast"));
    tg_tape_reset();
    tg_tensor_free(a23);
    tg_tensor_free(b4);
    tg_tensor_free(f32);
    tg_tensor_free(i1);
    tg_tensor_free(i2);
}
END_TEST

/* On a tie each input of maximum/minimum receives half of the gradient; a broadcast
 * operand sums its halves. */
START_TEST(test_maximum_minimum_ties) {
    bin_fn fns[2] = {tg_maximum, tg_minimum};
    for (int k = 0; k < 2; k++) {
        tg_tensor *a = tg_tensor_from(TG_F64, TG_SHAPE(4), (double[]){1, 2, 3, 4});
        tg_tensor *b = tg_tensor_from(TG_F64, TG_SHAPE(4), (double[]){1, 5, 3, 0});
        tg_requires_grad(a, true);
        tg_requires_grad(b, true);
        ck_assert_int_eq(tg_backward(tg_sum(fns[k](a, b), TG_ALL, false)), 0);
        double ga_max[] = {0.5, 0, 0.5, 1}, gb_max[] = {0.5, 1, 0.5, 0};
        tgt_assert_tensor(a->grad, k == 0 ? ga_max : gb_max, 0);
        tgt_assert_tensor(b->grad, k == 0 ? gb_max : ga_max, 0);
        tg_tape_reset();
        /* A scalar tied with two elements. */
        tg_tensor *s = tg_scalar(TG_F64, 2.0);
        tg_requires_grad(s, true);
        tg_zero_grad(a);
        ck_assert_int_eq(tg_backward(tg_sum(fns[k](a, s), TG_ALL, false)), 0);
        double ga2_max[] = {0, 0.5, 1, 1}, ga2_min[] = {1, 0.5, 0, 0};
        tgt_assert_tensor(a->grad, k == 0 ? ga2_max : ga2_min, 0);
        ck_assert_close(tg_item(s->grad), k == 0 ? 1.5 : 2.5, 0);
        tg_tape_reset();
        tg_tensor_free(a);
        tg_tensor_free(b);
        tg_tensor_free(s);
    }
}
END_TEST

/* NaN propagates through maximum/minimum from either side. */
START_TEST(test_maximum_nan) {
    tg_tensor *a = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){NAN, 1});
    tg_tensor *b = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){1, NAN});
    tgt_assert_tensor(tg_maximum(a, b), (double[]){NAN, NAN}, 0);
    tgt_assert_tensor(tg_minimum(a, b), (double[]){NAN, NAN}, 0);
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* d/db a^b is 0 where a == 0 and b >= 0 (not NaN), and d/da a^0 is 0 (a^0 == 1). */
START_TEST(test_pow_at_zero) {
    tg_tensor *a = tg_tensor_from(TG_F64, TG_SHAPE(4), (double[]){0, 0, 0, 2});
    tg_tensor *b = tg_tensor_from(TG_F64, TG_SHAPE(4), (double[]){0, 2, 0.5, 0});
    tg_requires_grad(a, true);
    tg_requires_grad(b, true);
    tg_tensor *y = tg_pow(a, b);
    tgt_assert_tensor(y, (double[]){1, 0, 0, 1}, 0);
    ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
    /* d/da = b a^(b-1): 0 (a^0), 2*0 = 0, 0.5 * 0^-0.5 = inf, 0 (a^0). */
    ck_assert_close(tg_tensor_get(a->grad, 0), 0, 0);
    ck_assert_close(tg_tensor_get(a->grad, 1), 0, 0);
    ck_assert(isinf(tg_tensor_get(a->grad, 2)) && tg_tensor_get(a->grad, 2) > 0);
    ck_assert_close(tg_tensor_get(a->grad, 3), 0, 0);
    /* d/db = a^b log a: 0 at a == 0 (b >= 0), 1 * log 2. */
    tgt_assert_tensor(b->grad, (double[]){0, 0, 0, log(2.0)}, 1e-15);
    tg_tape_reset();
    /* Where a < 0: d/db is NaN, d/da is finite for integral b. */
    tg_tensor *an = tg_tensor_from(TG_F64, TG_SHAPE(1), (double[]){-2});
    tg_tensor *bn = tg_tensor_from(TG_F64, TG_SHAPE(1), (double[]){3});
    tg_requires_grad(an, true);
    tg_requires_grad(bn, true);
    ck_assert_int_eq(tg_backward(tg_sum(tg_pow(an, bn), TG_ALL, false)), 0);
    ck_assert_close(tg_item(an->grad), 12.0, 1e-12);
    ck_assert(isnan(tg_item(bn->grad)));
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(an);
    tg_tensor_free(bn);
}
END_TEST

/* ================= unary and scalar ================= */

typedef tg_tensor *(*un_fn)(tg_tensor *);
typedef tg_tensor *(*unc_fn)(tg_tensor *, double);

typedef struct {
    const char *name;
    un_fn fn;   /* or */
    unc_fn fnc; /* with the constant c */
    double c;
    double (*ref)(double, double);
    double lo, hi;
    bool away; /* keep |x| >= lo, both signs */
} un_op;

static double r_neg(double x, double c) { return (void)c, -x; }
static double r_exp(double x, double c) { return (void)c, exp(x); }
static double r_log(double x, double c) { return (void)c, log(x); }
static double r_sin(double x, double c) { return (void)c, sin(x); }
static double r_cos(double x, double c) { return (void)c, cos(x); }
static double r_tanh(double x, double c) { return (void)c, tanh(x); }
static double r_sigmoid(double x, double c) { return (void)c, 1.0 / (1.0 + exp(-x)); }
static double r_relu(double x, double c) { return (void)c, x > 0 ? x : 0; }
static double r_sqrt(double x, double c) { return (void)c, sqrt(x); }
static double r_abs(double x, double c) { return (void)c, fabs(x); }
static double r_square(double x, double c) { return (void)c, x * x; }
static double r_addc(double x, double c) { return x + c; }
static double r_mulc(double x, double c) { return x * c; }
static double r_powc(double x, double c) { return pow(x, c); }
static double r_log1p(double x, double c) { return (void)c, log1p(x); }
static double r_expm1(double x, double c) { return (void)c, expm1(x); }
static double r_softplus(double x, double c) { return (void)c, log1p(exp(x)); }
static double r_erf(double x, double c) { return (void)c, erf(x); }
static double r_gelu(double x, double c) { return (void)c, 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double r_silu(double x, double c) { return (void)c, x / (1 + exp(-x)); }
static double r_elu(double x, double c) { return x > 0 ? x : c * expm1(x); }
static double r_clamp(double x, double c) { return x < -0.5 ? -0.5 : x > c ? c : x; }
static double r_clamp_lo(double x, double c) { return x < c ? c : x; }
/* tg_clamp with bounds [-0.5, c], and with only a lower bound c. */
static tg_tensor *clamp_to(tg_tensor *x, double c) { return tg_clamp(x, -0.5, c); }
static tg_tensor *clamp_lo(tg_tensor *x, double c) { return tg_clamp(x, c, INFINITY); }

static const un_op un_ops[] = {
    {"tg_neg", tg_neg, NULL, 0, r_neg, -2, 2, false},
    {"tg_exp", tg_exp, NULL, 0, r_exp, -2, 2, false},
    {"tg_log", tg_log, NULL, 0, r_log, 0.5, 3, false},
    {"tg_sin", tg_sin, NULL, 0, r_sin, -3, 3, false},
    {"tg_cos", tg_cos, NULL, 0, r_cos, -3, 3, false},
    {"tg_tanh", tg_tanh, NULL, 0, r_tanh, -2, 2, false},
    {"tg_sigmoid", tg_sigmoid, NULL, 0, r_sigmoid, -4, 4, false},
    {"tg_relu", tg_relu, NULL, 0, r_relu, 0.1, 2, true},
    {"tg_sqrt", tg_sqrt, NULL, 0, r_sqrt, 0.5, 3, false},
    {"tg_abs", tg_abs, NULL, 0, r_abs, 0.1, 2, true},
    {"tg_square", tg_square, NULL, 0, r_square, -2, 2, false},
    {"tg_add_scalar", NULL, tg_add_scalar, 1.5, r_addc, -2, 2, false},
    {"tg_mul_scalar", NULL, tg_mul_scalar, -2.5, r_mulc, -2, 2, false},
    {"tg_pow_scalar", NULL, tg_pow_scalar, 2.5, r_powc, 0.5, 2, false},
    {"tg_pow_scalar", NULL, tg_pow_scalar, 3, r_powc, -2, 2, false},
    {"tg_pow_scalar", NULL, tg_pow_scalar, -1.5, r_powc, 0.5, 2, false},
    {"tg_pow_scalar", NULL, tg_pow_scalar, 0, r_powc, -2, 2, false},
    {"tg_log1p", tg_log1p, NULL, 0, r_log1p, -0.6, 3, false},
    {"tg_expm1", tg_expm1, NULL, 0, r_expm1, -2, 2, false},
    {"tg_softplus", tg_softplus, NULL, 0, r_softplus, -4, 4, false},
    {"tg_erf", tg_erf, NULL, 0, r_erf, -2, 2, false},
    {"tg_gelu", tg_gelu, NULL, 0, r_gelu, -3, 3, false},
    {"tg_silu", tg_silu, NULL, 0, r_silu, -4, 4, false},
    {"tg_elu", NULL, tg_elu, 1.3, r_elu, 0.1, 2, true},
    {"tg_clamp", NULL, clamp_to, 0.8, r_clamp, -2, 2, false},
    {"tg_clamp", NULL, clamp_lo, -0.3, r_clamp_lo, -2, 2, false},
};
enum { NUN = sizeof un_ops / sizeof *un_ops };

static tg_tensor *apply_un(const un_op *op, tg_tensor *x) {
    return op->fn ? op->fn(x) : op->fnc(x, op->c);
}

static tg_tensor *f_un(tg_tensor *const *in, void *ctx) { return apply_un(ctx, in[0]); }

/* op(x) * w with x [3,1,2] and w [4,2]: the result broadcasts to [3,4,2]. */
static tg_tensor *f_un_bcast(tg_tensor *const *in, void *ctx) {
    return tg_mul(apply_un(ctx, in[0]), in[1]);
}

typedef struct {
    int nd;
    int64_t s[3];
} shape1;

static const shape1 un_shapes[] = {{0, {0}}, {1, {5}}, {3, {2, 3, 4}}, {3, {3, 1, 2}}};
enum { NUNSHAPES = sizeof un_shapes / sizeof *un_shapes };

START_TEST(test_unary_forward) {
    const un_op *op = &un_ops[_i];
    tgt_seed(300 + (uint64_t)_i);
    for (int s = 0; s < NUNSHAPES; s++) {
        tg_tensor *x = rand_in(un_shapes[s].nd, un_shapes[s].s, op->lo, op->hi, op->away);
        tg_tensor *y = apply_un(op, x);
        ck_assert_ptr_nonnull(y);
        ck_assert(tg_same_shape(x, y));
        ck_assert_int_eq(y->dtype, TG_F64);
        for (int64_t i = 0; i < x->numel; i++) {
            double want = op->ref(tg_tensor_get(x, i), op->c);
            ck_assert_close(tg_tensor_get(y, i), want, 1e-15 * (1 + fabs(want)));
        }
        /* With grad mode off nothing is recorded. */
        size_t nodes = tg_tape_size();
        tg_set_grad_enabled(false);
        tg_tensor *z = apply_un(op, x);
        tg_set_grad_enabled(true);
        ck_assert(!z->requires_grad);
        ck_assert_uint_eq(tg_tape_size(), nodes);
        tg_tape_reset();
        tg_tensor_free(x);
    }
}
END_TEST

START_TEST(test_unary_grad) {
    const un_op *op = &un_ops[_i];
    tgt_seed(400 + (uint64_t)_i);
    char what[64];
    for (int s = 0; s < NUNSHAPES; s++) {
        tg_tensor *x = rand_in(un_shapes[s].nd, un_shapes[s].s, op->lo, op->hi, op->away);
        snprintf(what, sizeof what, "%s(c=%g) shape #%d", op->name, op->c, s);
        tgt_assert_grads(f_un, (void *)op, 1, &x, NULL, what);
        tgt_assert_f32_agrees(f_un, (void *)op, 1, &x, what);
        tg_tensor_free(x);
    }
    /* A broadcast consumer. */
    tg_tensor *x = rand_in(TG_SHAPE(3, 1, 2), op->lo, op->hi, op->away);
    tg_tensor *w = rand_in(TG_SHAPE(4, 2), -1, 1, false);
    snprintf(what, sizeof what, "%s(c=%g) broadcast", op->name, op->c);
    tgt_assert_grads(f_un_bcast, (void *)op, 2, (tg_tensor *[]){x, w}, NULL, what);
    tgt_assert_f32_agrees(f_un_bcast, (void *)op, 2, (tg_tensor *[]){x, w}, what);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_unary_errors) {
    const un_op *op = &un_ops[_i];
    tg_tensor *i64 = tg_tensor_new(TG_I64, TG_SHAPE(2, 3));
    ck_assert_op_error(apply_un(op, i64), op->name, "i64", "[2,3]");
    ck_assert_op_error(apply_un(op, NULL), op->name, "NULL");
    /* NULL keeps an earlier message. */
    tg_clear_error();
    ck_assert_ptr_null(apply_un(op, i64));
    ck_assert_ptr_null(apply_un(op, NULL));
    ck_assert_ptr_nonnull(strstr(tg_error(), "i64"));
    tg_tape_reset();
    tg_tensor_free(i64);
}
END_TEST

/* sigmoid is stable far from 0: exactly 1 and 0 at +-1000 with a zero (not NaN)
 * gradient, and accurate in the tail. */
START_TEST(test_sigmoid_stable) {
    for (int dt = 0; dt < 2; dt++) {
        tg_tensor *x = tg_tensor_new(dt ? TG_F64 : TG_F32, TG_SHAPE(5));
        double v[] = {1000, -1000, -30, 30, 0};
        for (int i = 0; i < 5; i++)
            tg_tensor_set(x, i, v[i]);
        tg_requires_grad(x, true);
        tg_tensor *y = tg_sigmoid(x);
        double want[] = {1, 0, exp(-30) / (1 + exp(-30)), 1 / (1 + exp(-30)), 0.5};
        for (int i = 0; i < 5; i++) {
            double got = tg_tensor_get(y, i);
            ck_assert(isfinite(got));
            ck_assert_close(got, want[i], (dt ? 2e-16 : 3e-7) * want[i]);
        }
        ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
        for (int i = 0; i < 5; i++) {
            double got = tg_tensor_get(x->grad, i), s = want[i];
            ck_assert(isfinite(got));
            /* F32 cannot hold 1 - s below 6e-8: its absolute error is float precision. */
            ck_assert_close(got, s * (1 - s), dt ? 1e-15 * s * (1 - s) : 1e-7);
        }
        tg_tape_reset();
        tg_tensor_free(x);
    }
}
END_TEST

/* The documented values of the derivatives at kinks: relu' (0) = 0, abs'(0) = 0. */
START_TEST(test_kinks) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), (double[]){0, -1, 2});
    tg_requires_grad(x, true);
    ck_assert_int_eq(tg_backward(tg_sum(tg_relu(x), TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, (double[]){0, 0, 1}, 0);
    tg_zero_grad(x);
    ck_assert_int_eq(tg_backward(tg_sum(tg_abs(x), TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, (double[]){0, -1, 1}, 0);
    /* x^0 has a zero gradient everywhere, 0 included. */
    tg_zero_grad(x);
    ck_assert_int_eq(tg_backward(tg_sum(tg_pow_scalar(x, 0), TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, (double[]){0, 0, 0}, 0);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* The second round of unary ops against PyTorch (tests/ref/gen_ops2_ref.py): values and
 * d sum(y) / dx at points that include 0, clamp's bounds and large |x|. */
START_TEST(test_unary_torch_refs) {
    struct {
        const char *name;
        tg_tensor *(*fn)(tg_tensor *);
        const double *x, *y, *g;
        double tol; /* relative */
    } cases[] = {
        {"log1p", tg_log1p, o2_log1p_x, o2_log1p_y, o2_log1p_g, 1e-14},
        {"expm1", tg_expm1, o2_ux, o2_expm1_y, o2_expm1_g, 1e-14},
        /* PyTorch's softplus is x itself past x = 20, with gradient 1: 1e-13 off at 30 */
        {"softplus", tg_softplus, o2_ux, o2_softplus_y, o2_softplus_g, 1e-13},
        {"erf", tg_erf, o2_ux, o2_erf_y, o2_erf_g, 1e-14},
        {"gelu", tg_gelu, o2_ux, o2_gelu_y, o2_gelu_g, 1e-14},
        {"silu", tg_silu, o2_ux, o2_silu_y, o2_silu_g, 1e-14},
        {"elu", NULL, o2_ux, o2_elu_y, o2_elu_g, 1e-14},
        {"clamp", NULL, o2_ux, o2_clamp_y, o2_clamp_g, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(14), cases[k].x);
        tg_requires_grad(x, true);
        tg_tensor *y = cases[k].fn ? cases[k].fn(x)
                       : k == 6    ? tg_elu(x, 1.3)
                                   : tg_clamp(x, -0.5, 0.8);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
        for (int i = 0; i < 14; i++) {
            ck_assert_msg(fabs(tg_tensor_get(y, i) - cases[k].y[i]) <=
                              cases[k].tol * (1 + fabs(cases[k].y[i])),
                          "%s(%g) = %.17g, torch %.17g", cases[k].name, cases[k].x[i],
                          tg_tensor_get(y, i), cases[k].y[i]);
            ck_assert_msg(fabs(tg_tensor_get(x->grad, i) - cases[k].g[i]) <=
                              cases[k].tol * (1 + fabs(cases[k].g[i])),
                          "d %s(%g) = %.17g, torch %.17g", cases[k].name, cases[k].x[i],
                          tg_tensor_get(x->grad, i), cases[k].g[i]);
        }
        tg_tape_reset();
        tg_tensor_free(x);
    }
}
END_TEST

/* softplus is exact at the extremes and its derivative is sigmoid: exactly 1/2 at 0;
 * gelu keeps its accuracy far in the negative tail (where 1 + erf cancels). */
START_TEST(test_softplus_gelu_tails) {
    for (int dt = 0; dt < 2; dt++) {
        tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(4), (double[]){0, 1000, -1000, -40});
        tg_tensor *xd = dt ? tg_tensor_clone(x) : tgt_to_f32(x);
        tg_requires_grad(xd, true);
        tg_tensor *y = tg_softplus(xd);
        ck_assert_close(tg_tensor_get(y, 0), log(2.0), dt ? 1e-16 : 1e-7);
        ck_assert_close(tg_tensor_get(y, 1), 1000, 0);
        ck_assert_close(tg_tensor_get(y, 2), 0, 0);
        ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
        tgt_assert_tensor(xd->grad, (double[]){0.5, 1, 0, 1 / (1 + exp(40.0))}, 1e-20);
        tg_tape_reset();
        tg_tensor_free(x);
        tg_tensor_free(xd);
    }
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){-10, -30});
    tg_tensor *y = tg_gelu(x);
    /* x Phi(x) = x erfc(-x / sqrt 2) / 2 (Python's math.erfc); the erf form gives 0 */
    ck_assert_close(tg_tensor_get(y, 0), -7.619853024160593e-23, 1e-13 * 7.7e-23);
    ck_assert_close(tg_tensor_get(y, 1), -1.4720141781446293e-196, 1e-12 * 1.5e-196);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* elu's and clamp's gradient rules at their kinks and bounds; the argument checks. */
START_TEST(test_elu_clamp_rules) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(6), (double[]){-1, -0.5, 0, 0.8, 1, NAN});
    tg_requires_grad(x, true);
    ck_assert_int_eq(tg_backward(tg_sum(tg_elu(tg_slice(x, 0, 0, 5), 2.0), TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, (double[]){2 * exp(-1), 2 * exp(-0.5), 2, 1, 1, 0}, 1e-15);
    tg_zero_grad(x);
    tg_tensor *y = tg_clamp(x, -0.5, 0.8);
    ck_assert(isnan(tg_tensor_get(y, 5)));
    tg_tensor *ones = tg_tensor_full(TG_F64, TG_SHAPE(6), 1.0);
    ck_assert_int_eq(tg_backward_seeded(y, ones), 0);
    tgt_assert_tensor(x->grad, (double[]){0, 1, 1, 1, 0, 0}, 0);
    /* lo > hi: hi everywhere with a zero gradient, as torch.clamp. */
    tgt_assert_tensor(tg_slice(tg_clamp(x, 1, -1), 0, 0, 5), (double[]){-1, -1, -1, -1, -1}, 0);
    /* A one-sided bound. */
    tgt_assert_tensor(tg_slice(tg_clamp(x, -INFINITY, 0), 0, 0, 5), (double[]){-1, -0.5, 0, 0, 0},
                      0);
    ck_assert_op_error(tg_elu(x, NAN), "tg_elu", "alpha must be finite", "[6]");
    ck_assert_op_error(tg_elu(x, INFINITY), "tg_elu", "alpha");
    ck_assert_op_error(tg_clamp(x, NAN, 1), "tg_clamp", "NaN", "[6]");
    ck_assert_op_error(tg_clamp(x, 0, NAN), "tg_clamp", "NaN");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(ones);
}
END_TEST

/* ================= the where trap =================
 * where(c, f(x), 0) where f's derivative is infinite or NaN outside c: the branch not
 * taken receives a gradient of exactly 0, and 0 times the infinite local derivative
 * stays 0 (PyTorch: NaN). Checked for each such op, for the first and the second
 * derivative, against the analytic derivative where the branch is taken. */

typedef struct {
    const char *name;
    tg_tensor *(*f)(tg_tensor *x); /* the op whose derivative blows up */
    double (*cond)(double x);      /* the branch taken */
    double (*d1)(double x), (*d2)(double x);
    double pts[4]; /* two points outside the branch (the trap), two inside */
} trap_case;

static double c_pos(double x) { return x > 0; }
static double c_gt_m1(double x) { return x > -1; }
static double c_nonzero(double x) { return x != 0; }
static double c_lt100(double x) { return x < 100; }
static tg_tensor *f_sqrt(tg_tensor *x) { return tg_sqrt(x); }
static tg_tensor *f_log(tg_tensor *x) { return tg_log(x); }
static tg_tensor *f_recip(tg_tensor *x) { return tg_div(tg__tape_full(x->dtype, 0, NULL, 1), x); }
static tg_tensor *f_pow(tg_tensor *x) { return tg_pow(x, tg__tape_full(x->dtype, 0, NULL, 0.5)); }
static tg_tensor *f_powc(tg_tensor *x) { return tg_pow_scalar(x, 0.5); }
static tg_tensor *f_log1p(tg_tensor *x) { return tg_log1p(x); }
static tg_tensor *f_exp(tg_tensor *x) { return tg_exp(x); }
static tg_tensor *f_expm1(tg_tensor *x) { return tg_expm1(x); }
static double d1_sqrt(double x) { return 0.5 / sqrt(x); }
static double d2_sqrt(double x) { return -0.25 / (x * sqrt(x)); }
static double d1_log(double x) { return 1 / x; }
static double d2_log(double x) { return -1 / (x * x); }
static double d1_recip(double x) { return -1 / (x * x); }
static double d2_recip(double x) { return 2 / (x * x * x); }
static double d1_log1p(double x) { return 1 / (1 + x); }
static double d2_log1p(double x) { return -1 / ((1 + x) * (1 + x)); }
static double d_exp(double x) { return exp(x); }

static const trap_case traps[] = {
    {"sqrt", f_sqrt, c_pos, d1_sqrt, d2_sqrt, {-1, 0, 0.5, 4}},
    {"log", f_log, c_pos, d1_log, d2_log, {-1, 0, 0.5, 4}},
    {"div", f_recip, c_nonzero, d1_recip, d2_recip, {0, 0, -2, 0.5}},
    {"pow", f_pow, c_pos, d1_sqrt, d2_sqrt, {-1, 0, 0.5, 4}},
    {"pow_scalar", f_powc, c_pos, d1_sqrt, d2_sqrt, {-1, 0, 0.5, 4}},
    {"log1p", f_log1p, c_gt_m1, d1_log1p, d2_log1p, {-2, -1, -0.5, 3}},
    {"exp", f_exp, c_lt100, d_exp, d_exp, {1000, 800, -1, 2}},
    {"expm1", f_expm1, c_lt100, d_exp, d_exp, {1000, 800, -1, 2}},
};
enum { NTRAPS = sizeof traps / sizeof *traps };

static tg_tensor *f_trap(tg_tensor *const *in, void *ctx) {
    const trap_case *t = ctx;
    tg_tensor *x = in[0];
    tg_tensor *cond = tg_tensor_new(TG_F64, x->ndim, x->shape);
    for (int64_t i = 0; i < x->numel; i++)
        tg_tensor_set(cond, i, t->cond(tg_tensor_get(x, i)));
    /* the condition is copied onto the tape so that the persistent one can go now */
    tg_tensor *c = tg_add_scalar(cond, 0.0);
    tg_tensor_free(cond);
    return tg_where(c, t->f(x), tg__tape_full(x->dtype, 0, NULL, 0));
}

START_TEST(test_where_trap) {
    const trap_case *t = &traps[_i];
    for (int dt = 0; dt < 2; dt++) {
        tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(4), t->pts);
        if (!dt) {
            tg_tensor *x32 = tgt_to_f32(x);
            tg_tensor_free(x);
            x = x32;
        }
        tg_requires_grad(x, true);
        /* first derivative, and the second through TG_CREATE_GRAPH */
        tg_tensor *y = tg_sum(f_trap(&x, (void *)t), TG_ALL, false), *g = NULL;
        ck_assert_int_eq(tg_grad(1, &y, NULL, 1, &x, &g, TG_CREATE_GRAPH), 0);
        ck_assert_int_eq(tg_backward(tg_sum(g, TG_ALL, false)), 0);
        double tol = dt ? 1e-14 : 1e-6;
        for (int i = 0; i < 4; i++) {
            double p = t->pts[i], in = t->cond(p);
            double g1 = tg_tensor_get(g, i), g2 = tg_tensor_get(x->grad, i);
            ck_assert_msg(in || (g1 == 0 && g2 == 0),
                          "%s (%s): at x = %g outside the branch the gradients are %g, %g (want "
                          "exactly 0)",
                          t->name, dt ? "f64" : "f32", p, g1, g2);
            if (in) {
                ck_assert_close(g1, t->d1(p), tol * (1 + fabs(t->d1(p))));
                ck_assert_close(g2, t->d2(p), tol * (1 + fabs(t->d2(p))));
            }
        }
        tg_tape_reset();
        tg_tensor_free(x);
    }
    /* And both derivatives against finite differences across both branches, away from
     * the switch point. */
    double pts[6];
    for (int i = 0; i < 6; i++)
        pts[i] = t->pts[2 + i % 2] * (1 + 0.1 * i);
    pts[1] = t->pts[0] == 0 ? -3 : t->pts[0] * 1.1; /* one point in the trap */
    if (t->cond(pts[1])) pts[1] = t->pts[0];
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(6), pts);
    tg_requires_grad(x, true);
    if (t->f != f_recip) tgt_assert_grads(f_trap, (void *)t, 1, &x, NULL, t->name);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* A nonzero gradient still meets the infinity (only exact zeros are kept), and the
 * forward of tg_div is untouched: 0 / 0 is NaN. */
START_TEST(test_zero_gradient_rule_is_narrow) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){0, 4});
    tg_requires_grad(x, true);
    ck_assert_int_eq(tg_backward(tg_sum(tg_sqrt(x), TG_ALL, false)), 0);
    ck_assert(isinf(tg_tensor_get(x->grad, 0)));
    ck_assert_close(tg_tensor_get(x->grad, 1), 0.25, 0);
    tg_tensor *z = tg_div(x, x);
    ck_assert(isnan(tg_tensor_get(z, 0)));
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* ================= where ================= */

static tg_tensor *f_where(tg_tensor *const *in, void *ctx) { return tg_where(ctx, in[0], in[1]); }

START_TEST(test_where) {
    tgt_seed(500);
    /* cond shape, a shape, b shape */
    struct {
        int nc;
        int64_t sc[2];
        int na;
        int64_t sa[2];
        int nb;
        int64_t sb[2];
    } cases[] = {
        {0, {0}, 0, {0}, 0, {0}},
        {1, {4}, 1, {4}, 1, {4}},
        {2, {3, 1}, 1, {4}, 0, {0}},
        {1, {4}, 2, {3, 1}, 2, {1, 4}},
    };
    for (int k = 0; k < 4; k++) {
        for (int cdt = 0; cdt < 3; cdt++) {
            tg_tensor *cond = tg_tensor_new((tg_dtype)cdt, cases[k].nc, cases[k].sc);
            for (int64_t i = 0; i < cond->numel; i++)
                tg_tensor_set(cond, i, (double)(i % 2));
            if (cases[k].nc == 0) tg_tensor_set(cond, 0, k % 2 ? 0 : 1);
            tg_tensor *a = rand_in(cases[k].na, cases[k].sa, -2, 2, false);
            tg_tensor *b = rand_in(cases[k].nb, cases[k].sb, -2, 2, false);
            tg_tensor *y = tg_where(cond, a, b);
            ck_assert_ptr_nonnull(y);
            for (int64_t i = 0; i < y->numel; i++) {
                bool c = tg_tensor_get(
                             cond, bcast_index(y->ndim, y->shape, i, cond->ndim, cond->shape)) != 0;
                const tg_tensor *src = c ? a : b;
                double want =
                    tg_tensor_get(src, bcast_index(y->ndim, y->shape, i, src->ndim, src->shape));
                ck_assert_close(tg_tensor_get(y, i), want, 0);
            }
            char what[64];
            snprintf(what, sizeof what, "tg_where case %d cond %s", k,
                     tg_dtype_name((tg_dtype)cdt));
            tgt_assert_grads(f_where, cond, 2, (tg_tensor *[]){a, b}, NULL, what);
            tgt_assert_f32_agrees(f_where, cond, 2, (tg_tensor *[]){a, b}, what);
            tg_tape_reset();
            tg_tensor_free(cond);
            tg_tensor_free(a);
            tg_tensor_free(b);
        }
    }
}
END_TEST

START_TEST(test_where_errors) {
    tg_tensor *c2 = tg_tensor_new(TG_I64, TG_SHAPE(2)), *c5 = tg_tensor_new(TG_I64, TG_SHAPE(5));
    tg_tensor *a2 = tg_tensor_new(TG_F64, TG_SHAPE(2)), *b3 = tg_tensor_new(TG_F64, TG_SHAPE(3));
    tg_tensor *f2 = tg_tensor_new(TG_F32, TG_SHAPE(2)), *i2 = tg_tensor_new(TG_I64, TG_SHAPE(2));
    ck_assert_op_error(tg_where(c2, a2, b3), "tg_where", "[2]", "[3]");
    ck_assert_op_error(tg_where(c5, a2, a2), "tg_where", "[2]", "[5]");
    ck_assert_op_error(tg_where(c2, a2, f2), "tg_where", "dtypes differ", "f64", "f32");
    ck_assert_op_error(tg_where(c2, i2, i2), "tg_where", "i64", "[2]");
    ck_assert_op_error(tg_where(NULL, a2, a2), "tg_where", "NULL");
    ck_assert_op_error(tg_where(c2, NULL, a2), "tg_where", "NULL");
    ck_assert_op_error(tg_where(c2, a2, NULL), "tg_where", "NULL");
    tg_tape_reset();
    tg_tensor_free(c2);
    tg_tensor_free(c5);
    tg_tensor_free(a2);
    tg_tensor_free(b3);
    tg_tensor_free(f2);
    tg_tensor_free(i2);
}
END_TEST

static Suite *elementwise_suite(void) {
    Suite *s = suite_create("elementwise");
    TCase *tb = tcase_create("binary");
    tcase_add_loop_test(tb, test_binary_forward, 0, NBIN);
    tcase_add_loop_test(tb, test_binary_grad, 0, NBIN);
    tcase_add_loop_test(tb, test_binary_errors, 0, NBIN);
    tcase_add_test(tb, test_maximum_minimum_ties);
    tcase_add_test(tb, test_maximum_nan);
    tcase_add_test(tb, test_pow_at_zero);
    suite_add_tcase(s, tb);
    TCase *tu = tcase_create("unary");
    tcase_add_loop_test(tu, test_unary_forward, 0, NUN);
    tcase_add_loop_test(tu, test_unary_grad, 0, NUN);
    tcase_add_loop_test(tu, test_unary_errors, 0, NUN);
    tcase_add_test(tu, test_sigmoid_stable);
    tcase_add_test(tu, test_kinks);
    tcase_add_test(tu, test_unary_torch_refs);
    tcase_add_test(tu, test_softplus_gelu_tails);
    tcase_add_test(tu, test_elu_clamp_rules);
    suite_add_tcase(s, tu);
    TCase *tt = tcase_create("where_trap");
    tcase_add_loop_test(tt, test_where_trap, 0, NTRAPS);
    tcase_add_test(tt, test_zero_gradient_rule_is_narrow);
    suite_add_tcase(s, tt);
    TCase *tw = tcase_create("where");
    tcase_add_test(tw, test_where);
    tcase_add_test(tw, test_where_errors);
    suite_add_tcase(s, tw);
    return s;
}

int main(void) { return tgt_run(elementwise_suite()); }
