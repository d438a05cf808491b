/* test_gradcheck.c — tg_gradcheck and tg_gradgradcheck: they pass on correct gradients,
 * fail (at the right place) on wrong ones, reject bad arguments and leave the tape, the
 * inputs and the grad mode as they found them. */
#include <string.h>

#include "testutil.h"

/* ---- functions under test ---- */

/* sin(x1) + x1*x2 */
static tg_tensor *f_sin_mul(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_add(tg_sin(in[0]), tg_mul(in[0], in[1]));
}

/* A composite without matmul: sum over axis 1 of tanh(a) * exp(-b^2) / (1 + sigmoid(a)),
 * with b broadcast over the rows of a. */
static tg_tensor *f_composite(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *a = in[0], *b = in[1];
    tg_tensor *num = tg_mul(tg_tanh(a), tg_exp(tg_neg(tg_square(b))));
    tg_tensor *den = tg_add_scalar(tg_sigmoid(a), 1.0);
    return tg_sum(tg_div(num, den), 1, false);
}

/* ---- deliberately wrong ops, written as user-defined ops (function.h) ---- */

/* y = c x^p elementwise (p is 1 or 2, c and p in ctx): the forward of every op below. */
typedef struct {
    double c;
    int p;
} monomial_ctx;

static tg_tensor *monomial_forward(tg_tensor *const *in, void *ctx) {
    const monomial_ctx *m = ctx;
    tg_tensor *x = in[0], *y = tg_empty(x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    for (int64_t i = 0; i < x->numel; i++) {
        double v = ((const double *)x->data)[i];
        ((double *)y->data)[i] = m->c * (m->p == 2 ? v * v : v);
    }
    return y;
}

#define BACKWARD_ARGS tg_tensor *const *in, tg_tensor *y, tg_tensor *g, tg_tensor **gin, void *ctx

static tg_tensor *monomial(const tg_function *f, tg_tensor *x, double c, int p) {
    monomial_ctx m = {c, p};
    return tg_apply(f, 1, &x, &m, sizeof m);
}

/* y = 2x, whose backward returns 2g plus an extra g at element `bad_index`. */
static int64_t bad_index = 2;

static int wrong_double_backward(BACKWARD_ARGS) {
    (void)y;
    (void)ctx;
    tg_tensor *mask = tg_empty(in[0]->dtype, in[0]->ndim, in[0]->shape);
    if (!mask) return -1;
    memset(mask->data, 0, (size_t)mask->numel * sizeof(double));
    ((double *)mask->data)[bad_index] = 1.0;
    gin[0] = tg_add(tg_mul_scalar(g, 2.0), tg_mul(g, mask));
    return gin[0] ? 0 : -1;
}
static const tg_function wrong_double_fn = {"wrong_double", monomial_forward, wrong_double_backward,
                                            false};

static tg_tensor *wrong_double(tg_tensor *x) { return monomial(&wrong_double_fn, x, 2.0, 1); }

/* x1^2 + wrong_double(x2) */
static tg_tensor *f_wrong(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_add(tg_square(in[0]), wrong_double(in[1]));
}

/* y = x^2 with a backward 2 g x computed from a detached x: right first derivative, no
 * second derivative through x. */
static int flat_square_backward(BACKWARD_ARGS) {
    (void)y;
    (void)ctx;
    gin[0] = tg_mul(g, tg_mul_scalar(tg_detach(in[0]), 2.0));
    return gin[0] ? 0 : -1;
}
static const tg_function flat_square_fn = {"flat_square", monomial_forward, flat_square_backward,
                                           false};

static tg_tensor *f_flat_square(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return monomial(&flat_square_fn, in[0], 1.0, 2);
}

/* y = x^2 whose backward, 2 g x, is built with wrong_double(g): right values, but the
 * derivative of the backward with respect to the seed is wrong at bad_index. */
static int seed_wrong_backward(BACKWARD_ARGS) {
    (void)y;
    (void)ctx;
    gin[0] = tg_mul(wrong_double(g), in[0]);
    return gin[0] ? 0 : -1;
}
static const tg_function seed_wrong_fn = {"seed_wrong", monomial_forward, seed_wrong_backward,
                                          false};

static tg_tensor *f_seed_wrong(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return monomial(&seed_wrong_fn, in[0], 1.0, 2);
}

/* y = 3x whose backward changes in the last bits from one sweep to the next. */
static int flaky_calls;

static int flaky_backward(BACKWARD_ARGS) {
    (void)in;
    (void)y;
    (void)ctx;
    gin[0] = tg_mul_scalar(g, 3.0 * (1.0 + (double)(flaky_calls++ % 2) * 1e-13));
    return gin[0] ? 0 : -1;
}
static const tg_function flaky_fn = {"flaky", monomial_forward, flaky_backward, false};

static tg_tensor *f_flaky(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return monomial(&flaky_fn, in[0], 3.0, 1);
}

/* y = x, whose backward adds 1 to the gradient: nonzero for a zero seed. */
static int offset_backward(BACKWARD_ARGS) {
    (void)in;
    (void)y;
    (void)ctx;
    gin[0] = tg_add_scalar(g, 1.0);
    return gin[0] ? 0 : -1;
}
static const tg_function offset_fn = {"offset", monomial_forward, offset_backward, false};

static tg_tensor *f_offset(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return monomial(&offset_fn, in[0], 1.0, 1);
}

/* ---- passing cases ---- */

START_TEST(test_sin_mul_passes) {
    tgt_seed(1);
    tg_tensor *x1 = tgt_rand(TG_F64, TG_SHAPE(4), -2, 2),
              *x2 = tgt_rand(TG_F64, TG_SHAPE(4), -2, 2);
    tg_requires_grad(x1, true);
    tg_requires_grad(x2, true);
    tg_tensor *in[] = {x1, x2};
    tg_gradcheck_report rep;
    ck_assert_msg(tg_gradcheck(f_sin_mul, NULL, 2, in, NULL, &rep), "%s", rep.message);
    ck_assert(rep.ok);
    ck_assert(rep.max_abs_err < 1e-7);
    ck_assert_int_ge(rep.input, 0);
    ck_assert_msg(tg_gradcheck(f_sin_mul, NULL, 2, in, &(tg_gradcheck_opts){.fast = true}, &rep),
                  "%s", rep.message);
    ck_assert_msg(tg_gradgradcheck(f_sin_mul, NULL, 2, in, NULL, &rep), "%s", rep.message);
    ck_assert_msg(
        tg_gradgradcheck(f_sin_mul, NULL, 2, in, &(tg_gradcheck_opts){.fast = true}, &rep), "%s",
        rep.message);
    ck_assert(tg_gradcheck(f_sin_mul, NULL, 2, in, NULL, NULL)); /* rep may be NULL */
    /* The inputs are untouched and no ->grad was created. */
    ck_assert_ptr_null(x1->grad);
    ck_assert_ptr_null(x2->grad);
    tg_tape_reset();
    tg_tensor_free(x1);
    tg_tensor_free(x2);
}
END_TEST

START_TEST(test_scalar_and_broadcast_pass) {
    tgt_seed(2);
    tg_tensor *x1 = tg_scalar(TG_F64, 0.7), *x2 = tgt_rand(TG_F64, TG_SHAPE(2, 3), -1, 1);
    tg_requires_grad(x1, true);
    tg_requires_grad(x2, true);
    tg_tensor *in[] = {x1, x2};
    tg_gradcheck_report rep;
    ck_assert_msg(tg_gradcheck(f_sin_mul, NULL, 2, in, NULL, &rep), "%s", rep.message);
    ck_assert_msg(tg_gradgradcheck(f_sin_mul, NULL, 2, in, NULL, &rep), "%s", rep.message);
    /* Only x2 checked: x1 is a constant. */
    tg_requires_grad(x1, false);
    ck_assert_msg(tg_gradcheck(f_sin_mul, NULL, 2, in, NULL, &rep), "%s", rep.message);
    ck_assert_int_eq(rep.input, 1);
    ck_assert_msg(tg_gradgradcheck(f_sin_mul, NULL, 2, in, NULL, &rep), "%s", rep.message);
    tg_tape_reset();
    tg_tensor_free(x1);
    tg_tensor_free(x2);
}
END_TEST

START_TEST(test_composite_passes) {
    tgt_seed(3);
    tg_tensor *a = tgt_rand(TG_F64, TG_SHAPE(3, 4), -1.5, 1.5);
    tg_tensor *b = tgt_rand(TG_F64, TG_SHAPE(4), -1, 1);
    tg_requires_grad(a, true);
    tg_requires_grad(b, true);
    tg_tensor *in[] = {a, b};
    tg_gradcheck_report rep;
    ck_assert_msg(tg_gradcheck(f_composite, NULL, 2, in, NULL, &rep), "%s", rep.message);
    ck_assert_msg(tg_gradcheck(f_composite, NULL, 2, in, &(tg_gradcheck_opts){.fast = true}, &rep),
                  "%s", rep.message);
    ck_assert_msg(tg_gradgradcheck(f_composite, NULL, 2, in, NULL, &rep), "%s", rep.message);
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* y = 2 * x2: the gradient for x1 is zeros (no history), which must still check. */
static tg_tensor *f_ignores_first(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_mul_scalar(in[1], 2.0);
}

/* y = 3 x1 + x2^2: x1's gradient depends on the seed only. */
static tg_tensor *f_linear_in_first(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_add(tg_mul_scalar(in[0], 3.0), tg_square(in[1]));
}

START_TEST(test_constant_gradients) {
    tgt_seed(4);
    tg_tensor *x1 = tgt_rand(TG_F64, TG_SHAPE(3), -1, 1),
              *x2 = tgt_rand(TG_F64, TG_SHAPE(3), -1, 1);
    tg_requires_grad(x1, true);
    tg_requires_grad(x2, true);
    tg_tensor *in[] = {x1, x2};
    tg_gradcheck_report rep;
    ck_assert_msg(tg_gradcheck(f_ignores_first, NULL, 2, in, NULL, &rep), "%s", rep.message);
    ck_assert_msg(tg_gradgradcheck(f_ignores_first, NULL, 2, in, NULL, &rep), "%s", rep.message);
    ck_assert_msg(tg_gradgradcheck(f_linear_in_first, NULL, 2, in, NULL, &rep), "%s", rep.message);
    ck_assert_msg(
        tg_gradgradcheck(f_linear_in_first, NULL, 2, in, &(tg_gradcheck_opts){.fast = true}, &rep),
        "%s", rep.message);
    tg_tape_reset();
    tg_tensor_free(x1);
    tg_tensor_free(x2);
}
END_TEST

/* ---- failing cases ---- */

START_TEST(test_wrong_gradient_reported) {
    tgt_seed(5);
    tg_tensor *x1 = tgt_rand(TG_F64, TG_SHAPE(4), -1, 1),
              *x2 = tgt_rand(TG_F64, TG_SHAPE(4), -1, 1);
    tg_requires_grad(x1, true);
    tg_requires_grad(x2, true);
    tg_tensor *in[] = {x1, x2};
    double x2_before[4];
    memcpy(x2_before, x2->data, sizeof x2_before);
    tg_gradcheck_report rep;
    for (bad_index = 0; bad_index < 4; bad_index++) {
        tg_clear_error();
        ck_assert(!tg_gradcheck(f_wrong, NULL, 2, in, NULL, &rep));
        ck_assert(!rep.ok);
        ck_assert_int_eq(rep.input, 1);
        ck_assert_int_eq(rep.index, bad_index);
        ck_assert_close(rep.analytic, 3.0, 1e-12);
        ck_assert_close(rep.numeric, 2.0, 1e-6);
        ck_assert_close(rep.max_abs_err, 1.0, 1e-6);
        ck_assert_ptr_nonnull(strstr(rep.message, "input 1 element"));
        ck_assert_ptr_nonnull(strstr(rep.message, "mismatch"));
        ck_assert_str_eq(tg_error(), rep.message);
    }
    bad_index = 2;
    /* The fast mode sees it too. */
    ck_assert(!tg_gradcheck(f_wrong, NULL, 2, in, &(tg_gradcheck_opts){.fast = true}, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "fast"));
    ck_assert_int_eq(rep.input, -1);
    ck_assert(fabs(rep.analytic - rep.numeric) > 1e-3);
    /* Inputs are restored bit for bit. */
    ck_assert_mem_eq(x2->data, x2_before, sizeof x2_before);
    tg_tape_reset();
    tg_tensor_free(x1);
    tg_tensor_free(x2);
}
END_TEST

START_TEST(test_missing_second_derivative) {
    tgt_seed(6);
    tg_tensor *x = tgt_rand(TG_F64, TG_SHAPE(3), 0.5, 1.5);
    tg_requires_grad(x, true);
    tg_gradcheck_report rep;
    ck_assert_msg(tg_gradcheck(f_flat_square, NULL, 1, &x, NULL, &rep), "%s", rep.message);
    ck_assert(!tg_gradgradcheck(f_flat_square, NULL, 1, &x, NULL, &rep));
    ck_assert_int_eq(rep.input, 0);
    ck_assert_close(rep.analytic, 0.0, 1e-12);
    ck_assert(fabs(rep.numeric) > 0.1); /* d/dx (2 v x) = 2 v */
    ck_assert_ptr_nonnull(strstr(rep.message, "tg_gradgradcheck"));
    ck_assert(
        !tg_gradgradcheck(f_flat_square, NULL, 1, &x, &(tg_gradcheck_opts){.fast = true}, &rep));
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* A wrong derivative with respect to the seed is reported as input n (the seed). */
START_TEST(test_seed_reported_as_last_input) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), (double[]){0.5, -0.7, 1.2});
    tg_requires_grad(x, true);
    bad_index = 1;
    tg_gradcheck_report rep;
    ck_assert_msg(tg_gradcheck(f_seed_wrong, NULL, 1, &x, NULL, &rep), "%s", rep.message);
    ck_assert(!tg_gradgradcheck(f_seed_wrong, NULL, 1, &x, NULL, &rep));
    ck_assert_int_eq(rep.input, 1);
    ck_assert_int_eq(rep.index, 1);
    ck_assert_close(rep.analytic, 3 * -0.7, 1e-12);
    ck_assert_close(rep.numeric, 2 * -0.7, 1e-6);
    ck_assert_ptr_nonnull(strstr(rep.message, "the seed is input 1"));
    bad_index = 2;
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_nondeterministic_backward) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){0.3, -0.4});
    tg_requires_grad(x, true);
    tg_gradcheck_report rep;
    ck_assert(!tg_gradcheck(f_flaky, NULL, 1, &x, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "not deterministic"));
    ck_assert_int_eq(rep.input, 0);
    ck_assert(!tg_gradcheck(f_flaky, NULL, 1, &x, &(tg_gradcheck_opts){.fast = true}, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "not deterministic"));
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_zero_seed) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){0.3, -0.4});
    tg_requires_grad(x, true);
    tg_gradcheck_report rep;
    ck_assert(!tg_gradcheck(f_offset, NULL, 1, &x, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "zero seed"));
    ck_assert_close(rep.analytic, 1.0, 0);
    ck_assert(!tg_gradcheck(f_offset, NULL, 1, &x, &(tg_gradcheck_opts){.fast = true}, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "zero seed"));
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* Tolerances are honoured: the wrong op passes with a huge atol. */
START_TEST(test_options) {
    tg_tensor *x1 = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){0.3, -0.4});
    tg_tensor *x2 = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){0.1, 0.2});
    tg_requires_grad(x1, true);
    tg_requires_grad(x2, true);
    tg_tensor *in[] = {x1, x2};
    bad_index = 1;
    tg_gradcheck_report rep;
    ck_assert(!tg_gradcheck(f_wrong, NULL, 2, in, &(tg_gradcheck_opts){.atol = 0.5}, &rep));
    ck_assert_msg(tg_gradcheck(f_wrong, NULL, 2, in, &(tg_gradcheck_opts){.atol = 1.5}, &rep), "%s",
                  rep.message);
    ck_assert_msg(tg_gradcheck(f_wrong, NULL, 2, in, &(tg_gradcheck_opts){.rtol = 0.6}, &rep), "%s",
                  rep.message);
    ck_assert(!tg_gradcheck(f_sin_mul, NULL, 2, in, &(tg_gradcheck_opts){.eps = -1}, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "eps"));
    bad_index = 2;
    tg_tape_reset();
    tg_tensor_free(x1);
    tg_tensor_free(x2);
}
END_TEST

/* ---- bad arguments ---- */

static tg_tensor *f_mismatch(tg_tensor *const *in, void *ctx) {
    return tg_add(in[0], (tg_tensor *)ctx);
}

static tg_tensor *f_returns_ctx(tg_tensor *const *in, void *ctx) {
    (void)in;
    return ctx;
}

/* Uses its I64 input as a constant: y = x * (the number of elements of idx). */
static tg_tensor *f_with_index(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_mul_scalar(in[0], (double)in[1]->numel);
}

START_TEST(test_bad_arguments) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){0.3, -0.4});
    tg_tensor *c = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){1, 2}); /* no grad */
    tg_tensor *x32 = tg_tensor_new(TG_F32, TG_SHAPE(2));
    tg_tensor *idx = tg_tensor_new(TG_I64, TG_SHAPE(3));
    tg_tensor *five = tg_tensor_new(TG_F64, TG_SHAPE(5));
    tg_requires_grad(x, true);
    tg_requires_grad(x32, true);
    tg_gradcheck_report rep;

    tg_clear_error();
    ck_assert(!tg_gradcheck(NULL, NULL, 1, &x, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "tg_gradcheck"));
    ck_assert_ptr_nonnull(strstr(tg_error(), "NULL"));
    ck_assert(!tg_gradgradcheck(NULL, NULL, 1, &x, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(tg_error(), "tg_gradgradcheck"));

    ck_assert(!tg_gradcheck(f_sin_mul, NULL, 0, &x, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(tg_error(), "at least one input"));
    ck_assert(!tg_gradcheck(f_sin_mul, NULL, 2, NULL, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(tg_error(), "input array is NULL"));
    ck_assert(!tg_gradcheck(f_sin_mul, NULL, 2, (tg_tensor *[]){x, NULL}, NULL, NULL));
    ck_assert_ptr_nonnull(strstr(tg_error(), "input 1 is NULL"));
    ck_assert(!tg_gradgradcheck(f_sin_mul, NULL, 2, (tg_tensor *[]){NULL, x}, NULL, NULL));
    ck_assert_ptr_nonnull(strstr(tg_error(), "input 0 is NULL"));

    /* A tape tensor as input. */
    tg_tensor *t = tg_sin(x);
    ck_assert(!tg_gradcheck(f_sin_mul, NULL, 2, (tg_tensor *[]){x, t}, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "input 1 [2] is a tape tensor"));

    /* F32 requiring a gradient. */
    ck_assert(!tg_gradcheck(f_sin_mul, NULL, 2, (tg_tensor *[]){x, x32}, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "input 1 [2] is f32"));
    ck_assert(!tg_gradgradcheck(f_sin_mul, NULL, 2, (tg_tensor *[]){x32, x}, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "input 0 [2] is f32"));

    /* No input requires a gradient. */
    ck_assert(!tg_gradcheck(f_sin_mul, NULL, 2, (tg_tensor *[]){c, c}, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "no input requires a gradient"));

    /* A constant I64 input is fine. */
    ck_assert_msg(tg_gradcheck(f_with_index, NULL, 2, (tg_tensor *[]){x, idx}, NULL, &rep), "%s",
                  rep.message);
    ck_assert_msg(tg_gradgradcheck(f_with_index, NULL, 2, (tg_tensor *[]){x, idx}, NULL, &rep),
                  "%s", rep.message);

    /* f fails: the op's own message is kept in the report. */
    ck_assert(!tg_gradcheck(f_mismatch, five, 1, &x, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "f returned NULL"));
    ck_assert_ptr_nonnull(strstr(rep.message, "tg_add: shapes do not broadcast: [2] + [5]"));
    ck_assert_str_eq(tg_error(), rep.message);
    ck_assert(!tg_gradgradcheck(f_mismatch, five, 1, &x, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "tg_add: shapes do not broadcast"));

    /* f returns a non-F64 tensor. */
    ck_assert(!tg_gradcheck(f_returns_ctx, x32, 1, &x, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "f returned f32 [2]"));
    ck_assert(!tg_gradgradcheck(f_returns_ctx, idx, 1, &x, NULL, &rep));
    ck_assert_ptr_nonnull(strstr(rep.message, "f returned i64 [3]"));

    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(c);
    tg_tensor_free(x32);
    tg_tensor_free(idx);
    tg_tensor_free(five);
}
END_TEST

/* ---- the tape is left as found ---- */

START_TEST(test_tape_left_as_found) {
    tgt_seed(7);
    tg_tensor *x1 = tgt_rand(TG_F64, TG_SHAPE(3), -1, 1),
              *x2 = tgt_rand(TG_F64, TG_SHAPE(3), -1, 1);
    tg_requires_grad(x1, true);
    tg_requires_grad(x2, true);
    tg_tensor *in[] = {x1, x2};
    /* Something already on the tape, that must survive the checks. */
    tg_tensor *before = tg_sum(tg_mul(x1, x2), TG_ALL, false);
    size_t nodes = tg_tape_size(), used = tg_tape_bytes_used();
    tg_gradcheck_report rep;
    ck_assert(tg_gradcheck(f_sin_mul, NULL, 2, in, NULL, &rep));
    ck_assert(tg_gradcheck(f_sin_mul, NULL, 2, in, &(tg_gradcheck_opts){.fast = true}, &rep));
    ck_assert(tg_gradgradcheck(f_linear_in_first, NULL, 2, in, NULL, &rep));
    ck_assert(tg_gradgradcheck(f_sin_mul, NULL, 2, in, NULL, &rep));
    ck_assert(!tg_gradcheck(f_wrong, NULL, 2, in, NULL, &rep));
    tg_tensor *five = tg_tensor_new(TG_F64, TG_SHAPE(5));
    ck_assert(!tg_gradcheck(f_mismatch, five, 1, &x1, NULL, &rep));
    ck_assert_uint_eq(tg_tape_size(), nodes);
    ck_assert_uint_eq(tg_tape_bytes_used(), used);
    /* The earlier graph still works. */
    ck_assert_int_eq(tg_backward(before), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_close(tg_tensor_get(x1->grad, i), tg_tensor_get(x2, i), 0);
        ck_assert_close(tg_tensor_get(x2->grad, i), tg_tensor_get(x1, i), 0);
    }
    /* Grad mode is restored, and the check records even when it was off. */
    tg_set_grad_enabled(false);
    ck_assert(tg_gradcheck(f_sin_mul, NULL, 2, in, NULL, &rep));
    ck_assert(tg_gradgradcheck(f_sin_mul, NULL, 2, in, NULL, &rep));
    ck_assert(!tg_is_grad_enabled());
    tg_set_grad_enabled(true);
    ck_assert_uint_eq(tg_tape_size(), nodes);
    tg_tape_reset();
    tg_tensor_free(x1);
    tg_tensor_free(x2);
    tg_tensor_free(five);
}
END_TEST

static Suite *gradcheck_suite(void) {
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sin_mul_passes);
    tcase_add_test(tc, test_scalar_and_broadcast_pass);
    tcase_add_test(tc, test_composite_passes);
    tcase_add_test(tc, test_constant_gradients);
    tcase_add_test(tc, test_wrong_gradient_reported);
    tcase_add_test(tc, test_missing_second_derivative);
    tcase_add_test(tc, test_seed_reported_as_last_input);
    tcase_add_test(tc, test_nondeterministic_backward);
    tcase_add_test(tc, test_zero_seed);
    tcase_add_test(tc, test_options);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_tape_left_as_found);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tgt_run(gradcheck_suite()); }
