/* test_tape.c — the tape: gradient accumulation over fan-out and diamonds, repeated
 * backward, zeroing, mark/rewind, no-grad mode, intermediate gradients, the functional
 * tg_grad, second derivatives through TG_CREATE_GRAPH, backward's errors, printing,
 * per-thread tapes and the allocation-free steady state. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Captures what fn writes to a stream, through a temporary file. The caller frees the
 * result. */
static char *capture(void (*fn)(FILE *)) {
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    fn(f);
    ck_assert_int_eq(fflush(f), 0);
    long len = ftell(f);
    ck_assert_int_ge(len, 0);
    rewind(f);
    char *buf = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* ---- accumulation ---- */

START_TEST(test_fan_out) {
    /* y = x*x + sin(x) + x*3:  dy/dx = 2x + cos x + 3 (x feeds four inputs) */
    const double xv = 0.7;
    tg_tensor *x = tg_scalar(TG_F64, xv);
    tg_requires_grad(x, true);
    tg_tensor *y = tg_add(tg_add(tg_mul(x, x), tg_sin(x)), tg_mul_scalar(x, 3));
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert_close(tg_item(y), xv * xv + sin(xv) + 3 * xv, 1e-15);
    ck_assert_close(tg_item(x->grad), 2 * xv + cos(xv) + 3, 1e-14);
    tg_tape_reset();

    /* A vector used with broadcasting against itself reduced: y = sum(x * sum(x)) = (sum x)^2
     * dy/dx_i = 2 sum(x) */
    tg_tensor *v = tg_tensor_from(TG_F64, TG_SHAPE(4), (const double[]){1, -2, 0.5, 3});
    tg_requires_grad(v, true);
    y = tg_sum(tg_mul(v, tg_sum(v, TG_ALL, false)), TG_ALL, false);
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert_close(tg_item(y), 2.5 * 2.5, 1e-14);
    tgt_assert_tensor(v->grad, (const double[]){5, 5, 5, 5}, 1e-14);

    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(v);
}
END_TEST

START_TEST(test_diamond) {
    /* a = 2x, b = e^x, y = a*b + a:  dy/dx = 2e^x + 2x e^x + 2 */
    const double xv = -0.4;
    tg_tensor *x = tg_scalar(TG_F64, xv);
    tg_requires_grad(x, true);
    tg_tensor *a = tg_mul_scalar(x, 2);
    tg_tensor *b = tg_exp(x);
    tg_tensor *y = tg_add(tg_mul(a, b), a);
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert_close(tg_item(x->grad), 2 * exp(xv) + 2 * xv * exp(xv) + 2, 1e-14);
    /* Intermediates: dy/da = b + 1, dy/db = a. */
    ck_assert_close(tg_item(a->grad), exp(xv) + 1, 1e-14);
    ck_assert_close(tg_item(b->grad), 2 * xv, 1e-14);
    tg_tape_reset();

    /* Nested diamond through one intermediate: u = sin x, y = u*u + u:
     * dy/dx = (2u + 1) cos x */
    tg_zero_grad(x);
    tg_tensor *u = tg_sin(x);
    y = tg_add(tg_mul(u, u), u);
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert_close(tg_item(x->grad), (2 * sin(xv) + 1) * cos(xv), 1e-14);
    ck_assert_close(tg_item(u->grad), 2 * sin(xv) + 1, 1e-14);

    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_backward_twice_adds) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), (const double[]){1, 2, 3});
    tg_requires_grad(x, true);
    tg_tensor *u = tg_square(x);
    tg_tensor *y = tg_sum(u, TG_ALL, false);
    ck_assert_int_eq(tg_backward(y), 0);
    tgt_assert_tensor(x->grad, (const double[]){2, 4, 6}, 0);
    tg_tensor *g = x->grad;
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert_ptr_eq(x->grad, g); /* the same persistent gradient, added into */
    tgt_assert_tensor(x->grad, (const double[]){4, 8, 12}, 0);
    tgt_assert_tensor(u->grad, (const double[]){2, 2, 2}, 0); /* intermediates add up too */
    ck_assert_close(tg_item(y->grad), 2.0, 0);

    /* And across tape resets, a persistent gradient keeps adding until zeroed. */
    tg_tape_reset();
    y = tg_sum(tg_mul_scalar(x, 0.5), TG_ALL, false);
    ck_assert_int_eq(tg_backward(y), 0);
    tgt_assert_tensor(x->grad, (const double[]){4.5, 8.5, 12.5}, 0);

    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_zero_grad) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2), (const double[]){1, -1});
    tg_requires_grad(x, true);
    tg_tensor *u = tg_exp(x);
    tg_tensor *y = tg_sum(u, TG_ALL, false);
    ck_assert_int_eq(tg_backward(y), 0);
    tg_tensor *g = x->grad;
    void *gdata = g->data;
    tg_zero_grad(x);
    ck_assert_ptr_eq(x->grad, g); /* memory kept */
    ck_assert_ptr_eq(x->grad->data, gdata);
    tgt_assert_tensor(x->grad, (const double[]){0, 0}, 0);

    /* A tape gradient is dropped. */
    ck_assert_ptr_nonnull(u->grad);
    tg_zero_grad(u);
    ck_assert_ptr_null(u->grad);

    /* The next backward starts from zero. */
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert_ptr_eq(x->grad, g);
    tgt_assert_tensor(x->grad, (const double[]){exp(1.0), exp(-1.0)}, 1e-15);
    tgt_assert_tensor(u->grad, (const double[]){1, 1}, 0);

    tg_zero_grad(NULL); /* fine */
    tg_tensor *z = tg_scalar(TG_F64, 0);
    tg_zero_grad(z); /* no gradient yet: fine */
    ck_assert_ptr_null(z->grad);

    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(z);
}
END_TEST

/* ---- mark / rewind ---- */

START_TEST(test_mark_rewind) {
    /* Reuse of rewound memory is the default mode's; the checked mode leaves it unused. */
    bool checked = tg_set_checked_mode(false);
    tg_tape_reset();
    tg_tensor *x = tg_scalar(TG_F64, 0.5);
    tg_requires_grad(x, true);
    tg_tensor *a = tg_sin(x);
    tg_tensor *b = tg_mul(a, x);
    ck_assert_int_eq((int)tg_tape_size(), 2);
    size_t mark = tg_tape_mark();
    size_t used = tg_tape_bytes_used();
    ck_assert_uint_eq(mark, used);

    tg_tensor *c = tg_exp(b);
    tg_tensor *d = tg_add(c, tg_cos(x));
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq((int)tg_tape_size(), 5);
    ck_assert_uint_gt(tg_tape_bytes_used(), used);
    void *first_after_mark = c;

    tg_tape_rewind(mark);
    ck_assert_int_eq((int)tg_tape_size(), 2);
    ck_assert_uint_eq(tg_tape_bytes_used(), used);

    /* The nodes after the mark are gone: printing lists sin and mul only. */
    char *buf = capture(tg_tape_print);
    ck_assert_ptr_nonnull(strstr(buf, "sin("));
    ck_assert_ptr_nonnull(strstr(buf, "mul("));
    ck_assert_ptr_null(strstr(buf, "exp("));
    ck_assert_ptr_null(strstr(buf, "cos("));
    ck_assert_ptr_null(strstr(buf, "add("));
    free(buf);

    /* Their memory is reused by the next op. */
    tg_tensor *e = tg_square(b);
    ck_assert_ptr_eq((void *)e, first_after_mark);
    ck_assert_int_eq((int)tg_tape_size(), 3);

    /* Backward still works on what remains: y = (x sin x)^2,
     * dy/dx = 2 x sin x (sin x + x cos x) */
    ck_assert_int_eq(tg_backward(e), 0);
    double xv = 0.5;
    ck_assert_close(tg_item(x->grad), 2 * xv * sin(xv) * (sin(xv) + xv * cos(xv)), 1e-14);

    /* A mark beyond the current position is ignored. */
    size_t now = tg_tape_bytes_used();
    tg_tape_rewind(now + 4096);
    ck_assert_uint_eq(tg_tape_bytes_used(), now);
    ck_assert_int_eq((int)tg_tape_size(), 3);

    /* Rewinding to the start of the tape empties it. */
    tg_tape_reset();
    size_t zero = tg_tape_mark();
    ck_assert_uint_eq(zero, 0);
    ck_assert_ptr_nonnull(tg_sin(x));
    tg_tape_rewind(zero);
    ck_assert_int_eq((int)tg_tape_size(), 0);
    ck_assert_uint_eq(tg_tape_bytes_used(), 0);

    tg_tape_reset();
    tg_tensor_free(x);
    tg_set_checked_mode(checked);
}
END_TEST

START_TEST(test_rewind_across_blocks) {
    /* Fill more than one arena block after the mark, then rewind into the first. */
    tg_tape_reset();
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(1000));
    tg_requires_grad(x, true);
    tg_tensor *a = tg_exp(x);
    size_t mark = tg_tape_mark();
    size_t n0 = tg_tape_size();
    tg_tensor *t = a;
    for (int i = 0; i < 64; i++)
        t = tg_add_scalar(t, 1.0); /* ~512 KiB */
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_gt(tg_tape_bytes_used(), 256 * 1024);
    size_t reserved = tg_tape_bytes_reserved();
    tg_tape_rewind(mark);
    ck_assert_uint_eq(tg_tape_bytes_used(), mark);
    ck_assert_uint_eq(tg_tape_size(), n0);
    ck_assert_uint_eq(tg_tape_bytes_reserved(), reserved); /* blocks are kept */
    tg_tensor *y = tg_sum(a, TG_ALL, false);
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert_close(tg_tensor_get(x->grad, 999), 1.0, 0);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* ---- grad mode ---- */

START_TEST(test_no_grad) {
    tg_tape_reset();
    tg_tensor *x = tg_scalar(TG_F64, 3);
    tg_requires_grad(x, true);
    ck_assert(tg_is_grad_enabled());
    bool prev = tg_set_grad_enabled(false);
    ck_assert(prev);
    ck_assert(!tg_is_grad_enabled());
    tg_tensor *y = tg_mul(tg_sin(x), x);
    ck_assert_ptr_nonnull(y);
    ck_assert_close(tg_item(y), sin(3.0) * 3, 1e-15); /* computed ... */
    ck_assert(!y->requires_grad);                     /* ... but not recorded */
    ck_assert_int_eq((int)tg_tape_size(), 0);
    ck_assert_int_eq(tg_backward(y), -1);
    ck_assert_ptr_nonnull(strstr(tg_error(), "does not require a gradient"));
    ck_assert(!tg_set_grad_enabled(false)); /* previous mode: off */
    ck_assert(!tg_set_grad_enabled(true));
    ck_assert(tg_set_grad_enabled(true));

    /* Back on: the same expression records. */
    y = tg_mul(tg_sin(x), x);
    ck_assert(y->requires_grad);
    ck_assert_int_eq((int)tg_tape_size(), 2);
    tg_clear_error();
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_constants_not_recorded) {
    /* Nothing requires a gradient: ops only compute, even with grad mode on. */
    tg_tape_reset();
    tg_tensor *c = tg_scalar(TG_F64, 2);
    tg_tensor *y = tg_exp(tg_mul(c, c));
    ck_assert_close(tg_item(y), exp(4.0), 1e-12);
    ck_assert(!y->requires_grad);
    ck_assert_int_eq((int)tg_tape_size(), 0);
    /* Mixed: only the path from x is recorded; c gets no gradient. */
    tg_tensor *x = tg_scalar(TG_F64, 1);
    tg_requires_grad(x, true);
    y = tg_mul(tg_exp(c), x);
    ck_assert_int_eq((int)tg_tape_size(), 1);
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert_ptr_null(c->grad);
    ck_assert_close(tg_item(x->grad), exp(2.0), 1e-14);
    tg_tape_reset();
    tg_tensor_free(c);
    tg_tensor_free(x);
}
END_TEST

/* ---- intermediate gradients ---- */

START_TEST(test_intermediate_grads) {
    tg_tensor *x1 = tg_scalar(TG_F64, 2), *x2 = tg_scalar(TG_F64, 5);
    tg_requires_grad(x1, true);
    tg_requires_grad(x2, true);
    tg_tensor *v2 = tg_sin(x1);
    tg_tensor *v3 = tg_mul(x1, x2);
    tg_tensor *y = tg_add(v2, v3);
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert_close(tg_item(y->grad), 1, 0);
    ck_assert_close(tg_item(v2->grad), 1, 0);
    ck_assert_close(tg_item(v3->grad), 1, 0);
    ck_assert_close(tg_item(x1->grad), cos(2.0) + 5, 1e-15);
    ck_assert_close(tg_item(x2->grad), 2, 0);
    ck_assert(!y->grad->tg__persistent); /* intermediates' gradients live on the tape */
    ck_assert(x1->grad->tg__persistent);
    tg_tape_reset();

    /* Chain: u = x^2 (vector), v = sin(u), y = sum(v): du-bar = cos(u) */
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), (const double[]){0.1, 0.5, 1.5});
    tg_requires_grad(x, true);
    tg_tensor *u = tg_square(x);
    tg_tensor *v = tg_sin(u);
    y = tg_sum(v, TG_ALL, false);
    ck_assert_int_eq(tg_backward(y), 0);
    tgt_assert_tensor(v->grad, (const double[]){1, 1, 1}, 0);
    tgt_assert_tensor(u->grad, (const double[]){cos(0.01), cos(0.25), cos(2.25)}, 1e-15);
    tgt_assert_tensor(x->grad, (const double[]){0.2 * cos(0.01), 1.0 * cos(0.25), 3.0 * cos(2.25)},
                      1e-14);
    tg_tape_reset();
    tg_tensor_free(x1);
    tg_tensor_free(x2);
    tg_tensor_free(x);
}
END_TEST

/* ---- tg_grad, the functional form ---- */

START_TEST(test_grad_functional) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), (const double[]){0.2, -0.7, 1.1});
    tg_tensor *z = tg_tensor_from(TG_F64, TG_SHAPE(2), (const double[]){4, 5});
    tg_requires_grad(x, true);
    tg_requires_grad(z, true);
    tg_tensor *u = tg_square(x);
    tg_tensor *y = tg_sum(u, TG_ALL, false);

    tg_tensor *dx[2] = {NULL, NULL};
    ck_assert_int_eq(tg_grad(1, &y, NULL, 2, (tg_tensor *[]){x, z}, dx, 0), 0);
    tgt_assert_tensor(dx[0], (const double[]){0.4, -1.4, 2.2}, 1e-15);
    /* z is not connected to y: zeros of z's shape. */
    ck_assert(tg_same_shape(dx[1], z));
    tgt_assert_tensor(dx[1], (const double[]){0, 0}, 0);
    /* Nothing was written into ->grad, of leaves or intermediates. */
    ck_assert_ptr_null(x->grad);
    ck_assert_ptr_null(z->grad);
    ck_assert_ptr_null(u->grad);
    ck_assert_ptr_null(y->grad);
    /* Without TG_CREATE_GRAPH the result has no history. */
    ck_assert(!dx[0]->requires_grad);

    /* Gradient with respect to an intermediate. */
    tg_tensor *du = NULL;
    ck_assert_int_eq(tg_grad(1, &y, NULL, 1, &u, &du, 0), 0);
    tgt_assert_tensor(du, (const double[]){1, 1, 1}, 0);

    /* Several outputs with seeds: y1 = x*x (seed s) and y2 = sum(sin x) (seed NULL: 1):
     * dx = 2 x s + cos x */
    tg_tensor *y1 = tg_mul(x, x);
    tg_tensor *y2 = tg_sum(tg_sin(x), TG_ALL, false);
    tg_tensor *s = tg_tensor_from(TG_F64, TG_SHAPE(3), (const double[]){1, -2, 0.5});
    tg_tensor *g = NULL;
    ck_assert_int_eq(tg_grad(2, (tg_tensor *[]){y1, y2}, (tg_tensor *[]){s, NULL}, 1, &x, &g, 0),
                     0);
    const double xv[3] = {0.2, -0.7, 1.1}, sv[3] = {1, -2, 0.5};
    double want[3];
    for (int i = 0; i < 3; i++)
        want[i] = 2 * xv[i] * sv[i] + cos(xv[i]);
    tgt_assert_tensor(g, want, 1e-14);
    /* The same with dys = NULL (all ones). */
    ck_assert_int_eq(tg_grad(2, (tg_tensor *[]){y1, y2}, NULL, 1, &x, &g, 0), 0);
    for (int i = 0; i < 3; i++)
        want[i] = 2 * xv[i] + cos(xv[i]);
    tgt_assert_tensor(g, want, 1e-14);
    /* Each ys[i] with respect to itself is its seed. */
    tg_tensor *gy = NULL;
    ck_assert_int_eq(tg_grad(1, &y1, &s, 1, &y1, &gy, 0), 0);
    tgt_assert_tensor(gy, sv, 0);
    ck_assert_ptr_null(x->grad);

    /* Bad arguments. */
    tg_clear_error();
    ck_assert_int_eq(tg_grad(0, &y, NULL, 1, &x, &g, 0), -1);
    ck_assert_ptr_nonnull(strstr(tg_error(), "tg_grad"));
    tg_clear_error();
    ck_assert_int_eq(tg_grad(1, &y, NULL, 1, (tg_tensor *[]){NULL}, &g, 0), -1);
    ck_assert_ptr_nonnull(strstr(tg_error(), "xs[0] is NULL"));
    tg_clear_error();
    tg_tensor *bad_seed = tg_tensor_new(TG_F64, TG_SHAPE(2));
    ck_assert_int_eq(tg_grad(1, &y1, &bad_seed, 1, &x, &g, 0), -1);
    ck_assert_ptr_nonnull(
        strstr(tg_error(), "tg_grad: seed [2] f64 does not match output [3] f64"));
    ck_assert_ptr_null(g);
    tg_tensor *idx = tg_tensor_from(TG_I64, TG_SHAPE(1), (const int64_t[]){0});
    tg_clear_error();
    ck_assert_int_eq(tg_grad(1, &y, NULL, 1, &idx, &g, 0), -1);
    ck_assert_ptr_nonnull(strstr(tg_error(), "i64"));

    tg_clear_error();
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(z);
    tg_tensor_free(s);
    tg_tensor_free(bad_seed);
    tg_tensor_free(idx);
}
END_TEST

/* ---- second derivatives ---- */

START_TEST(test_second_derivative_cube) {
    const double xv = 1.3;
    tg_tensor *x = tg_scalar(TG_F64, xv);
    tg_requires_grad(x, true);
    tg_tensor *y = tg_mul(tg_mul(x, x), x); /* x^3 */
    tg_tensor *g = NULL, *h = NULL, *t = NULL;
    ck_assert_int_eq(tg_grad(1, &y, NULL, 1, &x, &g, TG_CREATE_GRAPH), 0);
    ck_assert_close(tg_item(g), 3 * xv * xv, 1e-14);
    ck_assert(g->requires_grad); /* recorded: can be differentiated again */
    ck_assert_int_eq(tg_grad(1, &g, NULL, 1, &x, &h, TG_CREATE_GRAPH), 0);
    ck_assert_close(tg_item(h), 6 * xv, 1e-14);
    ck_assert_int_eq(tg_grad(1, &h, NULL, 1, &x, &t, 0), 0);
    ck_assert_close(tg_item(t), 6.0, 1e-14);
    ck_assert_ptr_null(x->grad);

    /* tg_backward on a first derivative delivers the second into ->grad. */
    ck_assert_int_eq(tg_backward(g), 0);
    ck_assert_close(tg_item(x->grad), 6 * xv, 1e-14);
    tg_tape_reset();

    /* The same through tg_pow_scalar and a transcendental: d2/dx2 sin(x)^3 =
     * 6 sin x cos^2 x - 3 sin^3 x */
    tg_zero_grad(x);
    y = tg_pow_scalar(tg_sin(x), 3);
    ck_assert_int_eq(tg_grad(1, &y, NULL, 1, &x, &g, TG_CREATE_GRAPH), 0);
    ck_assert_int_eq(tg_grad(1, &g, NULL, 1, &x, &h, 0), 0);
    double s = sin(xv), c = cos(xv);
    ck_assert_close(tg_item(h), 6 * s * c * c - 3 * s * s * s, 1e-13);

    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_hessian_vector_product) {
    /* f(x) = (sum x_i^2)^2 / 4 + sum sin(x_i)
     * grad f = S x + cos x  (S = sum x_i^2)
     * H = S I + 2 x x^T - diag(sin x),  so  H v = S v + 2 x (x.v) - sin(x) * v */
    const double xv[4] = {0.5, -1.0, 0.25, 2.0}, vv[4] = {1.0, 0.5, -2.0, 0.3};
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(4), xv);
    tg_tensor *v = tg_tensor_from(TG_F64, TG_SHAPE(4), vv);
    tg_requires_grad(x, true);
    tg_tensor *S = tg_sum(tg_square(x), TG_ALL, false);
    tg_tensor *f = tg_add(tg_mul_scalar(tg_square(S), 0.25), tg_sum(tg_sin(x), TG_ALL, false));

    tg_tensor *g = NULL, *hv = NULL;
    ck_assert_int_eq(tg_grad(1, &f, NULL, 1, &x, &g, TG_CREATE_GRAPH), 0);
    double s2 = 0, xdotv = 0;
    for (int i = 0; i < 4; i++)
        s2 += xv[i] * xv[i], xdotv += xv[i] * vv[i];
    double want_g[4], want_hv[4];
    for (int i = 0; i < 4; i++) {
        want_g[i] = s2 * xv[i] + cos(xv[i]);
        want_hv[i] = s2 * vv[i] + 2 * xv[i] * xdotv - sin(xv[i]) * vv[i];
    }
    tgt_assert_tensor(g, want_g, 1e-13);

    /* H v = d/dx (grad f . v), two ways: a scalar product, and a seeded tg_grad. */
    tg_tensor *gv = tg_sum(tg_mul(g, v), TG_ALL, false);
    ck_assert_int_eq(tg_grad(1, &gv, NULL, 1, &x, &hv, 0), 0);
    tgt_assert_tensor(hv, want_hv, 1e-13);
    ck_assert_int_eq(tg_grad(1, &g, &v, 1, &x, &hv, 0), 0);
    tgt_assert_tensor(hv, want_hv, 1e-13);

    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(v);
}
END_TEST

/* ---- backward's errors ---- */

START_TEST(test_backward_errors) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), (const double[]){1, 2, 3});
    tg_requires_grad(x, true);
    tg_tensor *y = tg_exp(x);

    tg_clear_error();
    ck_assert_int_eq(tg_backward(y), -1);
    tgt_assert_error_has("tg_backward([3])",
                         (const char *[]){"tg_backward", "[3]", "3 elements", "tg_backward_seeded"},
                         4);
    ck_assert_ptr_null(x->grad);

    tg_tensor *c = tg_tensor_new(TG_F64, TG_SHAPE(2));
    tg_tensor *yc = tg_sum(tg_exp(c), TG_ALL, false);
    tg_clear_error();
    ck_assert_int_eq(tg_backward(yc), -1);
    tgt_assert_error_has("tg_backward(constant)",
                         (const char *[]){"tg_backward", "does not require a gradient"}, 2);

    tg_tensor *s2 = tg_tensor_new(TG_F64, TG_SHAPE(2));
    tg_clear_error();
    ck_assert_int_eq(tg_backward_seeded(y, s2), -1);
    tgt_assert_error_has("seed [2] for [3]",
                         (const char *[]){"tg_backward_seeded", "seed [2] f64", "output [3] f64"},
                         3);
    tg_tensor *s32 = tg_tensor_new(TG_F32, TG_SHAPE(3));
    tg_clear_error();
    ck_assert_int_eq(tg_backward_seeded(y, s32), -1);
    tgt_assert_error_has("f32 seed", (const char *[]){"seed [3] f32", "output [3] f64"}, 2);
    ck_assert_ptr_null(x->grad); /* failed sweeps deliver nothing */

    tg_clear_error();
    ck_assert_int_eq(tg_backward(NULL), -1);
    tgt_assert_error_has("tg_backward(NULL)", (const char *[]){"tg_backward", "NULL"}, 2);
    /* NULL does not overwrite the first error of a failed forward pass. */
    tg_clear_error();
    tg_tensor *bad = tg_add(x, c); /* [3] + [2] */
    ck_assert_ptr_null(bad);
    ck_assert_int_eq(tg_backward(tg_sum(bad, TG_ALL, false)), -1);
    tgt_assert_error_has("chain", (const char *[]){"tg_add", "[3] + [2]"}, 2);

    /* A NULL seed is an error naming the function called, also for a one-element
     * output, and keeps the message of the failed op that gave the NULL. */
    tg_tensor *y1 = tg_sum(y, TG_ALL, false);
    ck_assert_int_error(tg_backward_seeded(y1, NULL), "tg_backward_seeded", "seed is NULL");
    ck_assert_int_error(tg_backward_seeded(y, NULL), "tg_backward_seeded", "seed is NULL");
    tg_clear_error();
    ck_assert_int_eq(tg_backward_seeded(y, tg_add(x, c)), -1);
    tgt_assert_error_has("NULL seed from a failed op", (const char *[]){"tg_add", "[3] + [2]"}, 2);
    ck_assert_ptr_null(x->grad);
    /* The non-scalar hint names the function that was called. */
    tg_clear_error();
    ck_assert_int_eq(tg_backward(y), -1);
    tgt_assert_error_has("tg_backward([3]) hint",
                         (const char *[]){"tg_backward: output [3]", "tg_backward_seeded"}, 2);

    /* A correct seed works: y = e^x, seed s -> x->grad = s e^x. */
    tg_tensor *s = tg_tensor_from(TG_F64, TG_SHAPE(3), (const double[]){1, 0, -1});
    ck_assert_int_eq(tg_backward_seeded(y, s), 0);
    tgt_assert_tensor(x->grad, (const double[]){exp(1), 0, -exp(3)}, 1e-13);

    tg_clear_error();
    tg_tape_reset();
    tg_tensor *all[] = {x, c, s2, s32, s};
    for (int i = 0; i < 5; i++)
        tg_tensor_free(all[i]);
}
END_TEST

/* Gradients of piecewise-constant ops taken with TG_CREATE_GRAPH can be differentiated
 * again, as in PyTorch: the result requires a gradient and its derivative is zero, so a
 * gradient penalty built on it runs and gives zeros. */
static tg_tensor *pw_abs(tg_tensor *x) { return tg_abs(x); }
static tg_tensor *pw_relu(tg_tensor *x) { return tg_relu(x); }
static tg_tensor *pw_max(tg_tensor *x) { return tg_max(x, 1, false); }
static tg_tensor *pw_maximum(tg_tensor *x) { return tg_maximum(x, tg_mul_scalar(x, -0.5)); }
static tg_tensor *pw_minimum(tg_tensor *x) { return tg_minimum(tg_mul_scalar(x, 0.25), x); }
static tg_tensor *pw_pool(tg_tensor *x) {
    return tg_max_pool2d(tg_reshape(x, TG_SHAPE(1, 1, 2, 3)), 2, 1, 0);
}

START_TEST(test_create_graph_piecewise_constant) {
    static tg_tensor *(*const fs[])(tg_tensor *) = {pw_abs,     pw_relu,    pw_max,
                                                    pw_maximum, pw_minimum, pw_pool};
    static const char *const names[] = {"abs", "relu", "max", "maximum", "minimum", "max_pool2d"};
    const double xv[6] = {0.5, -1.5, 2.0, -0.25, 3.0, 1.0};
    for (int k = 0; k < 6; k++) {
        tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2, 3), xv);
        tg_requires_grad(x, true);
        tg_tensor *y = tg_sum(fs[k](x), TG_ALL, false);
        tg_tensor *g = NULL, *h = NULL;
        ck_assert_int_eq(tg_grad(1, &y, NULL, 1, &x, &g, TG_CREATE_GRAPH), 0);
        ck_assert_msg(g->requires_grad, "%s: create-graph gradient does not require a gradient",
                      names[k]);
        /* A gradient penalty: its backward runs and gives a zero gradient. */
        tg_tensor *pen = tg_sum(tg_square(g), TG_ALL, false);
        ck_assert_msg(tg_backward(pen) == 0, "%s: %s", names[k], tg_error());
        ck_assert_ptr_nonnull(x->grad);
        for (int i = 0; i < 6; i++)
            ck_assert_msg(tg_tensor_get(x->grad, i) == 0.0, "%s: d penalty/dx[%d] = %g", names[k],
                          i, tg_tensor_get(x->grad, i));
        /* tg_grad of the gradient: zeros, and the first gradient is unchanged. */
        ck_assert_int_eq(tg_grad(1, &g, NULL, 1, &x, &h, 0), 0);
        for (int i = 0; i < 6; i++)
            ck_assert_double_eq(tg_tensor_get(h, i), 0.0);
        /* Without TG_CREATE_GRAPH the result stays a constant. */
        ck_assert_int_eq(tg_grad(1, &y, NULL, 1, &x, &h, 0), 0);
        ck_assert(!h->requires_grad);
        tg_tape_reset();
        tg_tensor_free(x);
    }
}
END_TEST

/* ---- scalar code: the plain sweep on doubles ---- */

/* A program over one-element F64 values mixing every elementwise op that has a scalar
 * backward, fan-out, a reduction of a vector into a scalar, a [1]-shaped tensor and a
 * vector op fed by a scalar. Returns the loss. */
static tg_tensor *scalar_program(tg_tensor *const *x, tg_tensor *vec) {
    tg_tensor *v[64];
    int n = 0;
    v[n++] = x[0];
    v[n++] = x[1];
    v[n++] = x[2];
    v[n++] = tg_sum(vec, TG_ALL, false);                  /* tensor -> scalar */
    v[n++] = tg_reshape(tg_mul(x[0], x[1]), TG_SHAPE(1)); /* a [1] tensor */
    for (int k = 0; n < 60; k++) {
        tg_tensor *a = v[(k * 7 + 3) % n], *b = v[(k * 5 + 1) % n];
        tg_tensor *pos = tg_add_scalar(tg_square(a), 0.5); /* > 0 for log, sqrt, div */
        tg_tensor *r;
        switch (k % 20) {
        case 0:
            r = tg_add(a, b);
            break;
        case 1:
            r = tg_sub(a, b);
            break;
        case 2:
            r = tg_mul(a, b);
            break;
        case 3:
            r = tg_div(a, pos);
            break;
        case 4:
            r = tg_maximum(a, b);
            break;
        case 5:
            r = tg_minimum(a, a);
            break; /* a tie: the gradient is shared */
        case 6:
            r = tg_neg(a);
            break;
        case 7:
            r = tg_exp(tg_mul_scalar(a, 0.1));
            break;
        case 8:
            r = tg_log(pos);
            break;
        case 9:
            r = tg_sin(a);
            break;
        case 10:
            r = tg_cos(b);
            break;
        case 11:
            r = tg_tanh(a);
            break;
        case 12:
            r = tg_sigmoid(b);
            break;
        case 13:
            r = tg_relu(tg_sub(a, b));
            break;
        case 14:
            r = tg_sqrt(pos);
            break;
        case 15:
            r = tg_abs(tg_sub(b, a));
            break;
        case 16:
            r = tg_square(tg_mul_scalar(a, 0.3));
            break;
        case 17:
            r = tg_pow_scalar(pos, 1.5);
            break;
        case 18:
            r = tg_mul(vec, a);
            r = tg_mean(r, TG_ALL, false);
            break; /* scalar -> vector */
        default:
            r = tg_add_scalar(a, -0.25);
            break;
        }
        v[n++] = r;
    }
    tg_tensor *y = v[n - 1];
    for (int i = n - 2; i >= 3; i -= 3)
        y = tg_add(y, tg_mul_scalar(v[i], 0.01 * i));
    return tg_sum(y, TG_ALL, false);
}

static tg_tensor *double_it(tg_tensor *g, void *ctx) {
    (void)ctx;
    return tg_mul_scalar(g, 2.0);
}

START_TEST(test_scalar_sweep_matches_tensor_sweep) {
    tg_tensor *x[3] = {tg_scalar(TG_F64, 0.7), tg_scalar(TG_F64, -1.3), tg_scalar(TG_F64, 2.1)};
    tg_tensor *vec = tg_tensor_from(TG_F64, TG_SHAPE(3), (const double[]){0.2, -0.4, 1.5});
    tg_tensor *all[4] = {x[0], x[1], x[2], vec};
    for (int i = 0; i < 4; i++)
        tg_requires_grad(all[i], true);
    /* The plain sweep (doubles where it can) ... */
    tg_tensor *y = scalar_program(x, vec);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_backward(y), 0);
    /* ... against a create-graph sweep, which always runs the tensor closures. */
    tg_tensor *g[4];
    ck_assert_int_eq(tg_grad(1, &y, NULL, 4, all, g, TG_CREATE_GRAPH), 0);
    for (int i = 0; i < 4; i++)
        for (int64_t e = 0; e < all[i]->numel; e++) {
            double fast = tg_tensor_get(all[i]->grad, e), slow = tg_tensor_get(g[i], e);
            ck_assert_msg(memcmp(&fast, &slow, sizeof fast) == 0,
                          "input %d element %lld: plain sweep %.17g, tensor sweep %.17g", i,
                          (long long)e, fast, slow);
            ck_assert(isfinite(fast) && fast != 0.0);
        }
    /* tg_grad without the flag takes the scalar path too and gives the same. */
    tg_tensor *h[4];
    ck_assert_int_eq(tg_grad(1, &y, NULL, 4, all, h, 0), 0);
    for (int i = 0; i < 4; i++)
        for (int64_t e = 0; e < all[i]->numel; e++)
            ck_assert_double_eq(tg_tensor_get(h[i], e), tg_tensor_get(g[i], e));
    /* A hook on a scalar leaf and on a scalar intermediate: both sweeps run them. */
    tg_tape_reset();
    for (int i = 0; i < 4; i++)
        tg_zero_grad(all[i]);
    ck_assert_int_eq(tg_register_hook(x[1], double_it, NULL), 0);
    tg_tensor *s = tg_sin(x[0]);
    ck_assert_int_eq(tg_register_hook(s, double_it, NULL), 0);
    tg_tensor *y2 = tg_add(tg_mul(s, x[1]), tg_mul(x[1], x[2]));
    ck_assert_int_eq(tg_backward(y2), 0);
    ck_assert_int_eq(tg_grad(1, &y2, NULL, 4, all, g, TG_CREATE_GRAPH), 0);
    ck_assert_double_eq(tg_tensor_get(all[1]->grad, 0), 2 * (sin(0.7) + 2.1));
    ck_assert_double_eq(tg_tensor_get(all[0]->grad, 0), 2 * -1.3 * cos(0.7));
    for (int i = 0; i < 3; i++)
        ck_assert_double_eq(tg_tensor_get(all[i]->grad, 0), tg_tensor_get(g[i], 0));
    tg_clear_hooks(x[1]);
    tg_tape_reset();
    for (int i = 0; i < 4; i++)
        tg_tensor_free(all[i]);
}
END_TEST

/* Plain sweeps add slice gradients and third and later contributions into the input's
 * gradient in place; the values must be those of the create-graph sweep (which takes
 * the op path: embed and tg_add), the intermediates' ->grad included, and a gradient
 * that a closure passed on (add's, to both inputs) must not change under another. */
static tg_tensor *slice_program(tg_tensor *q, tg_tensor **mid) {
    tg_tensor *q2 = q;
    for (int s = 0; s < 3; s++) {
        tg_tensor *lo = tg_slice(q2, 0, 0, 5), *hi = tg_slice(q2, 0, 1, 6);
        tg_tensor *f = tg_mul_scalar(tg_add(tg_mul(lo, hi), tg_sub(lo, hi)), 0.25);
        tg_tensor *inner =
            tg_add(tg_slice(q2, 0, 1, 5), tg_sub(tg_slice(f, 0, 0, 4), tg_slice(f, 0, 1, 5)));
        tg_tensor *parts[3] = {tg_slice(inner, 0, 3, 4), inner, tg_slice(inner, 0, 0, 1)};
        q2 = tg_concat(3, parts, 0);
        if (s == 1) *mid = q2;
    }
    /* q2 feeds an add whose gradient goes to both inputs unchanged */
    return tg_sum(tg_add(tg_square(q2), tg_mul(q2, q2)), TG_ALL, false);
}

START_TEST(test_in_place_accumulation_matches_op_path) {
    tg_tensor *q =
        tg_tensor_from(TG_F64, TG_SHAPE(6), (const double[]){0.3, -1.1, 0.8, 2.0, -0.6, 1.4});
    tg_requires_grad(q, true);
    tg_tensor *mid = NULL;
    tg_tensor *y = slice_program(q, &mid);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_backward(y), 0);
    tg_tensor *g[2];
    tg_tensor *xs[2] = {q, mid};
    ck_assert_int_eq(tg_grad(1, &y, NULL, 2, xs, g, TG_CREATE_GRAPH), 0);
    const tg_tensor *fast[2] = {q->grad, mid->grad};
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_nonnull(fast[i]);
        for (int64_t e = 0; e < fast[i]->numel; e++) {
            double a = tg_tensor_get(fast[i], e), b = tg_tensor_get(g[i], e);
            ck_assert_msg(a == b, "tensor %d element %lld: plain sweep %.17g, op path %.17g", i,
                          (long long)e, a, b);
            ck_assert(isfinite(a));
        }
    }
    /* A second backward adds up, in place or not: twice the first. */
    double first = tg_tensor_get(q->grad, 2);
    ck_assert(first != 0.0);
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert_double_eq(tg_tensor_get(q->grad, 2), 2 * first);
    tg_tape_reset();
    tg_tensor_free(q);
}
END_TEST

/* ---- the checked mode: stale pointers ---- */

/* The mode starts as TAPEGRAD_CHECKS says (CI's sanitizer runs set it). */
START_TEST(test_checked_mode_from_environment) {
    const char *v = getenv("TAPEGRAD_CHECKS");
    bool want = v && *v && strcmp(v, "0") != 0;
    ck_assert_int_eq(tg_is_checked_mode(), want);
    bool prev = tg_set_checked_mode(!want);
    ck_assert_int_eq(prev, want);
    ck_assert_int_eq(tg_is_checked_mode(), !want);
    tg_set_checked_mode(want);
}
END_TEST

START_TEST(test_checked_mode_stale_tape_tensor) {
    bool prev = tg_set_checked_mode(true);
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), (const double[]){0.5, 1, 2});
    tg_requires_grad(x, true);

    /* Released by a reset: tg_backward after one new op, and an op given it. */
    tg_tensor *y = tg_sum(tg_sin(x), TG_ALL, false);
    tg_tape_reset();
    tg_tensor *z = tg_exp(x);
    ck_assert_ptr_nonnull(z);
    ck_assert_int_error(tg_backward(y), "tg_backward",
                        "output is a tape tensor released by "
                        "tg_tape_reset");
    ck_assert_ptr_null(x->grad);
    ck_assert_op_error(tg_add(y, z), "tg_add", "released by tg_tape_reset");
    tg_tensor *gx = NULL;
    ck_assert_int_error(tg_grad(1, &y, NULL, 1, &x, &gx, 0), "tg_grad",
                        "released by tg_tape_reset");
    /* Also after a second reset (the arenas alternate) and more work. */
    tg_tensor *y2 = tg_sum(tg_mul(x, x), TG_ALL, false);
    tg_tape_reset();
    for (int i = 0; i < 50; i++)
        ck_assert_ptr_nonnull(tg_exp(tg_sin(x)));
    ck_assert_int_error(tg_backward(y2), "tg_backward", "released by tg_tape_reset");

    /* Released by a rewind: the next op does not hand its memory out again. */
    tg_tape_reset();
    size_t m = tg_tape_mark();
    tg_tensor *t = tg_exp(x);
    tg_tape_rewind(m);
    tg_tensor *u = tg_cos(x);
    ck_assert_ptr_nonnull(u);
    ck_assert_ptr_ne(u, t);
    ck_assert_op_error(tg_mul(t, x), "tg_mul", "input is a tape tensor released by tg_tape_rewind");
    ck_assert_int_error(tg_backward_seeded(t, x), "tg_backward_seeded",
                        "released by tg_tape_rewind");
    /* Live tensors still work, gradients are right, and the space is accounted. */
    ck_assert_int_eq(tg_backward(tg_sum(u, TG_ALL, false)), 0);
    ck_assert_close(tg_tensor_get(x->grad, 1), -sin(1.0), 1e-15);
    tg_tape_reset();
    ck_assert_uint_eq(tg_tape_bytes_used(), 0);
    tg_tensor_free(x);
    tg_set_checked_mode(prev);
}
END_TEST

START_TEST(test_checked_mode_freed_persistent) {
    bool prev = tg_set_checked_mode(true);
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(2), (const double[]){1, 2});
    tg_tensor *w = tg_tensor_from(TG_F64, TG_SHAPE(2), (const double[]){3, 4});
    tg_requires_grad(x, true);
    tg_requires_grad(w, true);
    tg_tensor *y = tg_sum(tg_mul(x, w), TG_ALL, false);
    ck_assert_int_eq(tg_backward(y), 0); /* w->grad exists: it is kept along with w */
    tg_zero_grad(x);
    tg_tensor_free(w); /* the tape still refers to w */
    ck_assert_int_error(tg_backward(y), "tg_backward", "input 1 of node 1 (mul)",
                        "persistent tensor released by tg_tensor_free");
    ck_assert_double_eq(tg_tensor_get(x->grad, 0), 0.0); /* nothing was delivered */
    tg_tensor *gx = NULL;
    ck_assert_int_error(tg_grad(1, &y, NULL, 1, &x, &gx, 0), "tg_grad", "tg_tensor_free");
    ck_assert_op_error(tg_add(x, w), "tg_add", "released by tg_tensor_free");
    /* The reset lets go of the tape's references and frees w (the sanitizer and
     * valgrind runs check that nothing leaks). */
    tg_tape_reset();
    /* A tensor the tape does not refer to is freed at once, as usual. */
    tg_tensor *v = tg_tensor_new(TG_F64, TG_SHAPE(2));
    tg_tensor_free(v);
    tg_tensor_free(x);
    tg_set_checked_mode(prev);
}
END_TEST

/* ---- printing ---- */

static void dot_to(FILE *f) { ck_assert_int_eq(tg_tape_dot(f), 0); }

static int count_of(const char *s, const char *what) {
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + strlen(what), what))
        n++;
    return n;
}

START_TEST(test_print_and_dot) {
    tg_tape_reset();
    tg_tensor *x1 = tg_scalar(TG_F64, 2), *x2 = tg_scalar(TG_F64, 5);
    tg_tensor_set_name(x1, "x1");
    tg_tensor_set_name(x2, "x2");
    tg_requires_grad(x1, true);
    tg_requires_grad(x2, true);
    tg_tensor *v2 = tg_sin(x1);
    tg_tensor *v3 = tg_mul(x1, x2);
    tg_tensor *y = tg_add(v2, v3);
    ck_assert_ptr_nonnull(y);

    char *out = capture(tg_tape_print);
    ck_assert_int_eq(count_of(out, "\n"), (int)tg_tape_size());
    ck_assert_int_eq((int)tg_tape_size(), 3);
    /* One line per node, in creation order, naming the op and its inputs. */
    const char *sin_at = strstr(out, "sin(x1)");
    const char *mul_at = strstr(out, "mul(x1, x2)");
    const char *add_at = strstr(out, "add(");
    ck_assert_msg(sin_at && mul_at && add_at, "tape print:\n%s", out);
    ck_assert(sin_at < mul_at && mul_at < add_at);
    ck_assert_int_eq(count_of(out, "f64"), 3);
    /* The add line names the two results before it. */
    char line[128];
    snprintf(line, sizeof line, "t%d = add(t%d, t%d)", (int)y->tg__id, (int)v2->tg__id,
             (int)v3->tg__id);
    ck_assert_msg(strstr(out, line), "no \"%s\" in:\n%s", line, out);
    free(out);

    out = capture(dot_to);
    ck_assert_msg(strncmp(out, "digraph", 7) == 0, "dot output:\n%s", out);
    ck_assert_int_eq(count_of(out, "->"), 5); /* sin: 1 input, mul: 2, add: 2 */
    ck_assert_ptr_nonnull(strstr(out, "x1"));
    ck_assert_ptr_nonnull(strstr(out, "x2"));
    ck_assert_ptr_nonnull(strstr(out, "shape=box"));
    ck_assert_int_eq(count_of(out, "shape=ellipse"), 3);
    ck_assert_ptr_nonnull(strstr(out, "sin"));
    ck_assert(out[strlen(out) - 2] == '}');
    free(out);

    tg_clear_error();
    ck_assert_int_eq(tg_tape_dot(NULL), -1);
    ck_assert_ptr_nonnull(strstr(tg_error(), "tg_tape_dot"));
    tg_tape_print(NULL); /* ignored */

    /* An empty tape prints nothing and is still a valid graph. */
    tg_tape_reset();
    out = capture(tg_tape_print);
    ck_assert_str_eq(out, "");
    free(out);
    out = capture(dot_to);
    ck_assert(strncmp(out, "digraph", 7) == 0);
    ck_assert_int_eq(count_of(out, "->"), 0);
    free(out);

    tg_clear_error();
    tg_tensor_free(x1);
    tg_tensor_free(x2);
}
END_TEST

/* ---- threads ---- */

typedef struct {
    double x1, x2;
    int steps;
    int failures;
    size_t tape_size_seen;
    bool grad_mode_seen;
} thread_job;

/* Each thread records y = sin(x1) + x1*x2 with its own values, many times, on its own
 * tape, and checks every gradient. Thread 1 also turns grad mode off at the end to show
 * that the mode is per thread. */
static void *thread_main(void *arg) {
    thread_job *job = arg;
    tg_tensor *x1 = tg_scalar(TG_F64, job->x1), *x2 = tg_scalar(TG_F64, job->x2);
    tg_requires_grad(x1, true);
    tg_requires_grad(x2, true);
    for (int s = 0; s < job->steps; s++) {
        double a = job->x1 + 1e-3 * s;
        tg_tensor_set(x1, 0, a);
        tg_zero_grad(x1);
        tg_zero_grad(x2);
        tg_tensor *v2 = tg_sin(x1);
        tg_tensor *v3 = tg_mul(x1, x2);
        tg_tensor *y = tg_add(v2, v3);
        if (tg_tape_size() != 3) job->failures++;
        if (tg_backward(y) != 0)
            job->failures++;
        else if (fabs(tg_item(x1->grad) - (cos(a) + job->x2)) > 1e-13 ||
                 fabs(tg_item(x2->grad) - a) > 1e-13 ||
                 fabs(tg_item(y) - (sin(a) + a * job->x2)) > 1e-12)
            job->failures++;
        tg_tape_reset();
    }
    tg_tensor *x = tg_sin(x1); /* leave one node on this thread's tape */
    job->tape_size_seen = x ? tg_tape_size() : 0;
    job->grad_mode_seen = tg_set_grad_enabled(false);
    tg_tape_free();
    tg_tensor_free(x1);
    tg_tensor_free(x2);
    return NULL;
}

START_TEST(test_threads) {
    tg_tape_reset();
    tg_tensor *m = tg_scalar(TG_F64, 1);
    tg_requires_grad(m, true);
    tg_tensor *mine = tg_exp(m); /* the main thread's tape holds one node throughout */
    thread_job jobs[2] = {{.x1 = 2, .x2 = 5, .steps = 20000},
                          {.x1 = -1, .x2 = 0.5, .steps = 20000}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, thread_main, &jobs[i]), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(jobs[i].failures == 0, "thread %d: %d wrong steps", i, jobs[i].failures);
        ck_assert_uint_eq(jobs[i].tape_size_seen, 1); /* not the main thread's node */
        ck_assert(jobs[i].grad_mode_seen);            /* each thread starts with grad on */
    }
    ck_assert(tg_is_grad_enabled()); /* the threads' mode changes did not reach here */
    ck_assert_uint_eq(tg_tape_size(), 1);
    ck_assert_int_eq(tg_backward(mine), 0);
    ck_assert_close(tg_item(m->grad), exp(1.0), 1e-15);
    tg_tape_reset();
    tg_tensor_free(m);
}
END_TEST

/* ---- steady state: no allocation after the first step ---- */

typedef struct {
    long allocs, releases;
} count_state;

static void *count_alloc(size_t size, void *ud) {
    ((count_state *)ud)->allocs++;
    return malloc(size);
}

static void count_release(void *p, void *ud) {
    if (p) ((count_state *)ud)->releases++;
    free(p);
}

START_TEST(test_steady_state_loop) {
    /* The checked mode alternates between two arenas by design; this is about the
     * default mode. */
    bool checked = tg_set_checked_mode(false);
    tg_tape_free(); /* start from an empty arena owned by the counting allocator */
    count_state cs = {0, 0};
    tg_set_allocator(&(tg_allocator){count_alloc, count_release, &cs});

    /* A small model-like step: y = sum(tanh(W x + b)^2) with broadcasting, plus the
     * scalar example, all recorded, differentiated and reset each step. */
    tg_tensor *w = tgt_rand(TG_F64, TG_SHAPE(4, 3), -1, 1);
    tg_tensor *x = tgt_rand(TG_F64, TG_SHAPE(3), -1, 1);
    tg_tensor *b = tgt_rand(TG_F64, TG_SHAPE(4), -1, 1);
    tg_tensor *x1 = tg_scalar(TG_F64, 2), *x2 = tg_scalar(TG_F64, 5);
    tg_tensor *params[] = {w, b, x1, x2};
    for (int i = 0; i < 4; i++)
        tg_requires_grad(params[i], true);

    size_t reserved = 0;
    long allocs_after_first = 0;
    double g_first = 0;
    for (int step = 0; step < 10000; step++) {
        for (int i = 0; i < 4; i++)
            tg_zero_grad(params[i]);
        tg_tensor *h = tg_add(tg_sum(tg_mul(w, x), 1, false), b); /* [4] */
        tg_tensor *l1 = tg_sum(tg_square(tg_tanh(h)), TG_ALL, false);
        tg_tensor *l2 = tg_add(tg_sin(x1), tg_mul(x1, x2));
        tg_tensor *loss = tg_add(l1, l2);
        ck_assert_int_eq(tg_backward(loss), 0);
        if (step == 0) {
            reserved = tg_tape_bytes_reserved();
            allocs_after_first = cs.allocs;
            g_first = tg_tensor_get(w->grad, 5);
            ck_assert_uint_gt(reserved, 0);
        } else {
            ck_assert_msg(tg_tape_bytes_reserved() == reserved,
                          "step %d: %zu bytes reserved, %zu after the first step", step,
                          tg_tape_bytes_reserved(), reserved);
            ck_assert_msg(cs.allocs == allocs_after_first,
                          "step %d: %ld allocations, %ld after the first step", step, cs.allocs,
                          allocs_after_first);
        }
        tg_tape_reset();
    }
    /* The same gradients every step (nothing changed the parameters). */
    ck_assert_close(tg_tensor_get(w->grad, 5), g_first, 0);
    ck_assert_close(tg_item(x1->grad), cos(2.0) + 5, 1e-14);
    ck_assert_int_eq(cs.releases, 0); /* nothing was given back in between either */

    for (int i = 0; i < 4; i++)
        tg_tensor_free(params[i]);
    tg_tensor_free(x);
    tg_tape_free();
    ck_assert_int_eq(cs.allocs, cs.releases);
    tg_set_allocator(NULL);
    tg_set_checked_mode(checked);
}
END_TEST

/* An allocator that refuses blocks above a cap (a memory limit, or the fuzzing
 * harness's): the arena then takes the smallest block that fits instead of failing on
 * its doubled one, and a refused block leaves no error behind. */
typedef struct {
    size_t cap;
    long refused;
} capped_state;

static void *capped_alloc(size_t size, void *ud) {
    capped_state *st = ud;
    if (size > st->cap) {
        st->refused++;
        return NULL;
    }
    return malloc(size);
}

static void capped_release(void *p, void *ud) {
    (void)ud;
    free(p);
}

START_TEST(test_arena_fits_under_allocator_cap) {
    bool checked = tg_set_checked_mode(false);
    tg_tape_free();
    capped_state st = {3u << 20, 0};
    tg_set_allocator(&(tg_allocator){capped_alloc, capped_release, &st});
    tg_tensor *x = tg_tensor_full(TG_F32, TG_SHAPE(1 << 18), 1.0); /* 1 MiB */
    tg_clear_error();
    for (int i = 0; i < 12; i++) { /* 12 MiB of results, blocks of at most 3 MiB */
        tg_tensor *y = tg_add(x, x);
        ck_assert_msg(y != NULL, "result %d: %s", i, tg_error() ? tg_error() : "(no error)");
        ck_assert(tg_tensor_get(y, (1 << 18) - 1) == 2.0);
    }
    ck_assert_int_gt(st.refused, 0); /* a doubled block was asked for and refused */
    ck_assert_ptr_null(tg_error());
    ck_assert_uint_ge(tg_tape_bytes_reserved(), (size_t)12 << 20);
    /* A request no block under the cap can hold still fails, naming the op. */
    tg_tensor *big = tg_tensor_full(TG_F32, TG_SHAPE(1 << 18), 1.0);
    tg_tensor *wide = tg_broadcast_to(big, 2, (int64_t[]){4, 1 << 18}); /* 4 MiB */
    ck_assert_ptr_null(wide);
    ck_assert_ptr_nonnull(strstr(tg_error(), "tg_broadcast_to: out of memory"));
    tg_tensor_free(big);
    tg_tensor_free(x);
    tg_tape_free();
    tg_set_allocator(NULL);
    tg_set_checked_mode(checked);
}
END_TEST

static Suite *tape_suite(void) {
    Suite *s = suite_create("tape");
    TCase *c = tcase_create("accumulation");
    tcase_add_test(c, test_checked_mode_from_environment); /* first: before any test sets it */
    tcase_add_test(c, test_fan_out);
    tcase_add_test(c, test_diamond);
    tcase_add_test(c, test_backward_twice_adds);
    tcase_add_test(c, test_zero_grad);
    tcase_add_test(c, test_intermediate_grads);
    suite_add_tcase(s, c);
    c = tcase_create("tape");
    tcase_add_test(c, test_mark_rewind);
    tcase_add_test(c, test_rewind_across_blocks);
    tcase_add_test(c, test_no_grad);
    tcase_add_test(c, test_constants_not_recorded);
    tcase_add_test(c, test_print_and_dot);
    tcase_add_test(c, test_threads);
    tcase_add_test(c, test_steady_state_loop);
    tcase_add_test(c, test_arena_fits_under_allocator_cap);
    suite_add_tcase(s, c);
    c = tcase_create("grad");
    tcase_add_test(c, test_grad_functional);
    tcase_add_test(c, test_second_derivative_cube);
    tcase_add_test(c, test_hessian_vector_product);
    tcase_add_test(c, test_backward_errors);
    tcase_add_test(c, test_create_graph_piecewise_constant);
    tcase_add_test(c, test_scalar_sweep_matches_tensor_sweep);
    tcase_add_test(c, test_in_place_accumulation_matches_op_path);
    tcase_add_test(c, test_checked_mode_stale_tape_tensor);
    tcase_add_test(c, test_checked_mode_freed_persistent);
    suite_add_tcase(s, c);
    return s;
}

int main(void) { return tgt_run(tape_suite()); }
