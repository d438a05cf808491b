/* test_tensor.c — persistent tensors: constructors (filled ones against NumPy),
 * alignment, element access and its errors, bad shapes, the printer, and the allocator
 * hook (every allocation failure is survived without a crash or a leak). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ref/ops2_ref.h"
#include "testutil.h"

/* ---- filled constructors ---- */

START_TEST(test_full_eye) {
    tg_tensor *t = tg_tensor_full(TG_F32, TG_SHAPE(2, 3), 2.5);
    tgt_assert_shape(t, 2, (int64_t[]){2, 3});
    tgt_assert_tensor(t, (double[]){2.5, 2.5, 2.5, 2.5, 2.5, 2.5}, 0);
    tg_tensor *i = tg_tensor_full(TG_I64, TG_SHAPE(2), -3.7); /* truncated toward zero */
    ck_assert_int_eq(i->dtype, TG_I64);
    tgt_assert_tensor(i, (double[]){-3, -3}, 0);
    tg_tensor *s = tg_tensor_full(TG_F64, 0, NULL, NAN);
    ck_assert(isnan(tg_item(s)));
    tg_tensor *e = tg_tensor_eye(TG_F64, 3), *e0 = tg_tensor_eye(TG_I64, 0);
    tgt_assert_tensor(e, (double[]){1, 0, 0, 0, 1, 0, 0, 0, 1}, 0);
    tgt_assert_shape(e0, 2, (int64_t[]){0, 0});
    ck_assert_op_error(tg_tensor_full(TG_I64, TG_SHAPE(2), NAN), "tg_tensor_full", "nan", "i64");
    ck_assert_op_error(tg_tensor_full(TG_I64, TG_SHAPE(2), 1e19), "tg_tensor_full", "i64");
    ck_assert_op_error(tg_tensor_full(TG_F64, TG_SHAPE(2, -1), 0), "tg_tensor_full",
                       "negative dimension", "[2,-1]");
    ck_assert_op_error(tg_tensor_full((tg_dtype)7, TG_SHAPE(2), 0), "tg_tensor_full",
                       "invalid dtype");
    ck_assert_op_error(tg_tensor_full(TG_F64, 1, NULL, 0), "tg_tensor_full", "shape is NULL");
    ck_assert_op_error(tg_tensor_eye(TG_F64, -1), "tg_tensor_eye", "n >= 0", "-1");
    ck_assert_op_error(tg_tensor_eye((tg_dtype)9, 2), "tg_tensor_eye", "invalid dtype");
    tg_tensor_free(t);
    tg_tensor_free(i);
    tg_tensor_free(s);
    tg_tensor_free(e);
    tg_tensor_free(e0);
}
END_TEST

/* arange and linspace against NumPy (tests/ref/gen_ops2_ref.py). */
START_TEST(test_arange_linspace) {
    for (int dt = 0; dt < 2; dt++) {
        tg_dtype d = dt ? TG_F64 : TG_F32;
        double tol = dt ? 1e-15 : 3e-7;
        tg_tensor *a = tg_tensor_arange(d, 0.5, 3.2, 0.3);
        tgt_assert_shape(a, 1, (int64_t[]){sizeof o2_arange_a / sizeof(double)});
        tgt_assert_tensor(a, o2_arange_a, tol * 4);
        tg_tensor *b = tg_tensor_arange(d, 5, -2, -1.5);
        tgt_assert_shape(b, 1, (int64_t[]){sizeof o2_arange_b / sizeof(double)});
        tgt_assert_tensor(b, o2_arange_b, tol * 5);
        tg_tensor *c = tg_tensor_linspace(d, -1, 2, 7);
        tgt_assert_tensor(c, o2_linspace_a, tol * 2);
        tg_tensor *e = tg_tensor_linspace(d, 0.1, 0.7, 13);
        tgt_assert_shape(e, 1, (int64_t[]){13});
        tgt_assert_tensor(e, o2_linspace_b, tol);
        ck_assert(tg_tensor_get(e, 12) == (dt ? 0.7 : (double)0.7f)); /* the end is exact */
        tg_tensor_free(a);
        tg_tensor_free(b);
        tg_tensor_free(c);
        tg_tensor_free(e);
    }
    /* stop behind start for the step's sign: empty (NumPy) */
    tg_tensor *empty = tg_tensor_arange(TG_F64, 3, 1, 1);
    tgt_assert_shape(empty, 1, (int64_t[]){0});
    tg_tensor *ints = tg_tensor_arange(TG_I64, 0, 5, 2);
    ck_assert_int_eq(ints->dtype, TG_I64);
    tgt_assert_tensor(ints, (double[]){0, 2, 4}, 0);
    tg_tensor *one = tg_tensor_linspace(TG_F64, 4, 9, 1),
              *none = tg_tensor_linspace(TG_F64, 4, 9, 0);
    tgt_assert_tensor(one, (double[]){4}, 0);
    tgt_assert_shape(none, 1, (int64_t[]){0});
    ck_assert_op_error(tg_tensor_arange(TG_F64, 0, 1, 0), "tg_tensor_arange", "nonzero step");
    ck_assert_op_error(tg_tensor_arange(TG_F64, NAN, 1, 1), "tg_tensor_arange", "finite");
    ck_assert_op_error(tg_tensor_arange(TG_F64, 0, INFINITY, 1), "tg_tensor_arange", "finite");
    ck_assert_op_error(tg_tensor_arange(TG_F64, 0, 1, 1e-300), "tg_tensor_arange", "too long");
    ck_assert_op_error(tg_tensor_arange(TG_I64, 0.5, 3, 1), "tg_tensor_arange", "whole");
    ck_assert_op_error(tg_tensor_arange((tg_dtype)5, 0, 3, 1), "tg_tensor_arange", "invalid dtype");
    ck_assert_op_error(tg_tensor_linspace(TG_F64, 0, 1, -1), "tg_tensor_linspace", "n >= 0");
    ck_assert_op_error(tg_tensor_linspace(TG_F64, 0, NAN, 3), "tg_tensor_linspace", "finite");
    ck_assert_op_error(tg_tensor_linspace(TG_I64, 0, 1, 3), "tg_tensor_linspace", "f32 or f64",
                       "i64");
    tg_tensor_free(empty);
    tg_tensor_free(ints);
    tg_tensor_free(one);
    tg_tensor_free(none);
}
END_TEST

/* randn and rand draw the thread generator's sequence in row-major order. */
START_TEST(test_randn_rand) {
    tg_seed(11);
    tg_tensor *n = tg_tensor_randn(TG_F64, TG_SHAPE(3, 4));
    tg_tensor *u = tg_tensor_rand(TG_F32, TG_SHAPE(5));
    tg_seed(11);
    for (int i = 0; i < 12; i++)
        ck_assert(tg_tensor_get(n, i) == tg_rand_normal());
    for (int i = 0; i < 5; i++)
        ck_assert(tg_tensor_get(u, i) == (double)(float)tg_rand_uniform());
    /* moments of a large draw */
    tg_tensor *big = tg_tensor_randn(TG_F64, TG_SHAPE(200000));
    tg_tensor *ub = tg_tensor_rand(TG_F64, TG_SHAPE(200000));
    double s = 0, s2 = 0, us = 0, lo = 1, hi = 0;
    for (int i = 0; i < 200000; i++) {
        double z = tg_tensor_get(big, i), v = tg_tensor_get(ub, i);
        s += z;
        s2 += z * z;
        us += v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    ck_assert_close(s / 200000, 0, 0.012);
    ck_assert_close(s2 / 200000, 1, 0.015);
    ck_assert_close(us / 200000, 0.5, 0.005);
    ck_assert(lo >= 0 && hi < 1);
    ck_assert_op_error(tg_tensor_randn(TG_I64, TG_SHAPE(2)), "tg_tensor_randn", "f32 or f64");
    ck_assert_op_error(tg_tensor_rand(TG_I64, TG_SHAPE(2)), "tg_tensor_rand", "f32 or f64");
    ck_assert_op_error(tg_tensor_rand(TG_F64, TG_SHAPE(-2)), "tg_tensor_rand", "negative");
    ck_assert_op_error(tg_tensor_randn(TG_F64, 9, (int64_t[9]){1}), "tg_tensor_randn", "ndim 9");
    tg_tensor_free(n);
    tg_tensor_free(u);
    tg_tensor_free(big);
    tg_tensor_free(ub);
}
END_TEST

/* ---- the printer ---- */

/* What tg_tensor_print writes for t (freed), as a string in buf. */
static const char *printed(tg_tensor *t, char *buf, size_t cap) {
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(tg_tensor_print(f, t), 0);
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    tg_tensor_free(t);
    return buf;
}

START_TEST(test_tensor_print) {
    static char buf[8192];
    ck_assert_str_eq(
        printed(tg_tensor_from(TG_F64, TG_SHAPE(2, 2), (double[]){1, 2.5, 3, 4}), buf, sizeof buf),
        "[[1.0000 2.5000]\n [3.0000 4.0000]]\n");
    ck_assert_str_eq(
        printed(tg_tensor_from(TG_F32, TG_SHAPE(3), (float[]){1, -2, 3}), buf, sizeof buf),
        "[ 1. -2.  3.]\n");
    ck_assert_str_eq(printed(tg_tensor_from(TG_I64, TG_SHAPE(2, 3), (int64_t[]){0, 10, 2, 3, 4, 5}),
                             buf, sizeof buf),
                     "[[ 0 10  2]\n [ 3  4  5]]\n");
    ck_assert_str_eq(printed(tg_scalar(TG_F64, 2.5), buf, sizeof buf), "2.5000\n");
    ck_assert_str_eq(printed(tg_tensor_new(TG_F64, TG_SHAPE(0, 3)), buf, sizeof buf), "[]\n");
    ck_assert_str_eq(
        printed(tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){1e-5, 1}), buf, sizeof buf),
        "[1.0000e-05 1.0000e+00]\n");
    ck_assert_str_eq(printed(tg_tensor_from(TG_F64, TG_SHAPE(3), (double[]){NAN, 1.5, -INFINITY}),
                             buf, sizeof buf),
                     "[   nan 1.5000   -inf]\n");
    ck_assert_str_eq(printed(tg_tensor_arange(TG_F64, 0, 8, 1), buf, sizeof buf),
                     "[0. 1. 2. 3. 4. 5. 6. 7.]\n");
    tg_tensor *a8 = tg_tensor_arange(TG_F64, 0, 8, 1);
    tg_tensor *cube = tg_tensor_clone(tg_reshape(a8, TG_SHAPE(2, 2, 2)));
    tg_tape_reset();
    tg_tensor_free(a8);
    ck_assert_str_eq(printed(cube, buf, sizeof buf),
                     "[[[0. 1.]\n  [2. 3.]]\n\n [[4. 5.]\n  [6. 7.]]]\n");
    /* more than 1000 elements: 3 + ... + 3 along each long axis */
    ck_assert_str_eq(printed(tg_tensor_arange(TG_I64, 0, 2000, 1), buf, sizeof buf),
                     "[   0    1    2 ... 1997 1998 1999]\n");
    tg_tensor *r = tg_tensor_arange(TG_I64, 0, 2000, 1);
    tg_tensor *m = tg_tensor_clone(tg_reshape(r, TG_SHAPE(40, 50)));
    tg_tape_reset();
    tg_tensor_free(r);
    ck_assert_str_eq(printed(m, buf, sizeof buf), "[[   0    1    2 ...   47   48   49]\n"
                                                  " [  50   51   52 ...   97   98   99]\n"
                                                  " [ 100  101  102 ...  147  148  149]\n"
                                                  " ...\n"
                                                  " [1850 1851 1852 ... 1897 1898 1899]\n"
                                                  " [1900 1901 1902 ... 1947 1948 1949]\n"
                                                  " [1950 1951 1952 ... 1997 1998 1999]]\n");
    /* rows wrap at 75 columns, continuing one column in */
    printed(tg_tensor_linspace(TG_F64, 0.5, 20.5, 30), buf, sizeof buf);
    int lines = 0;
    for (const char *p = buf, *q; *p; p = q + 1, lines++) {
        q = strchr(p, '\n');
        ck_assert_ptr_nonnull(q);
        ck_assert_int_le(q - p, 75);
        if (p != buf) ck_assert(p[0] == ' ');
    }
    ck_assert_int_ge(lines, 3);
    ck_assert_int_error(tg_tensor_print(stdout, NULL), "tg_tensor_print", "NULL");
    tg_tensor *t = tg_scalar(TG_F64, 1);
    ck_assert_int_error(tg_tensor_print(NULL, t), "tg_tensor_print", "stream is NULL");
    tg_tensor_free(t);
}
END_TEST

/* ---- constructors ---- */

START_TEST(test_new_zeros) {
    tg_tensor *t = tg_tensor_new(TG_F64, TG_SHAPE(2, 3, 4));
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, TG_F64);
    ck_assert_int_eq(t->ndim, 3);
    ck_assert_int_eq(t->shape[0], 2);
    ck_assert_int_eq(t->shape[1], 3);
    ck_assert_int_eq(t->shape[2], 4);
    for (int i = 3; i < TG_MAX_DIMS; i++)
        ck_assert_int_eq(t->shape[i], 1);
    ck_assert_int_eq(t->numel, 24);
    ck_assert_ptr_null(t->grad);
    ck_assert(!t->requires_grad);
    for (int64_t i = 0; i < t->numel; i++)
        ck_assert(((double *)t->data)[i] == 0.0);

    tg_tensor *f = tg_tensor_new(TG_F32, TG_SHAPE(5));
    tg_tensor *l = tg_tensor_new(TG_I64, TG_SHAPE(2, 2));
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(l);
    for (int i = 0; i < 5; i++)
        ck_assert(((float *)f->data)[i] == 0.0f);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(((int64_t *)l->data)[i], 0);

    /* An empty dimension is a valid shape with no elements. */
    tg_tensor *e = tg_tensor_new(TG_F64, TG_SHAPE(0, 3));
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->numel, 0);
    ck_assert_int_eq(e->ndim, 2);

    /* ndim 0 with a NULL shape is a scalar. */
    tg_tensor *s = tg_tensor_new(TG_F64, 0, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->ndim, 0);
    ck_assert_int_eq(s->numel, 1);
    ck_assert_close(tg_item(s), 0.0, 0);

    /* The largest rank is accepted. */
    tg_tensor *big = tg_tensor_new(TG_F32, TG_SHAPE(1, 2, 1, 2, 1, 2, 1, 2));
    ck_assert_ptr_nonnull(big);
    ck_assert_int_eq(big->ndim, TG_MAX_DIMS);
    ck_assert_int_eq(big->numel, 16);

    tg_tensor *all[] = {t, f, l, e, s, big};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        tg_tensor_free(all[i]);
    tg_tape_reset();
}
END_TEST

START_TEST(test_from_copies) {
    double d[6] = {1, -2, 3.5, 4, 5, 6.25};
    float f[3] = {1.5f, -0.25f, 8.0f};
    int64_t l[4] = {7, -1, 0, INT64_C(1) << 40};
    tg_tensor *td = tg_tensor_from(TG_F64, TG_SHAPE(2, 3), d);
    tg_tensor *tf = tg_tensor_from(TG_F32, TG_SHAPE(3), f);
    tg_tensor *tl = tg_tensor_from(TG_I64, TG_SHAPE(4), l);
    ck_assert_ptr_nonnull(td);
    ck_assert_ptr_nonnull(tf);
    ck_assert_ptr_nonnull(tl);
    tgt_assert_tensor(td, d, 0);
    tgt_assert_tensor(tf, (const double[]){1.5, -0.25, 8.0}, 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(((int64_t *)tl->data)[i], l[i]);

    /* The data was copied: changing the source changes nothing. */
    d[0] = 100;
    ck_assert_close(tg_tensor_get(td, 0), 1.0, 0);
    ck_assert_ptr_ne(td->data, d);

    /* NULL data is fine for an empty tensor and an error otherwise. */
    tg_tensor *e = tg_tensor_from(TG_F64, TG_SHAPE(0), NULL);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->numel, 0);
    ck_assert_op_error(tg_tensor_from(TG_F64, TG_SHAPE(2, 2), NULL), "tg_tensor_from",
                       "data is NULL", "[2,2]");

    tg_tensor_free(td);
    tg_tensor_free(tf);
    tg_tensor_free(tl);
    tg_tensor_free(e);
    tg_tape_reset();
}
END_TEST

START_TEST(test_scalar) {
    tg_tensor *a = tg_scalar(TG_F64, 2.5);
    tg_tensor *b = tg_scalar(TG_F32, 0.1);
    tg_tensor *c = tg_scalar(TG_I64, -3.0);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(a->ndim, 0);
    ck_assert_int_eq(a->numel, 1);
    ck_assert_close(tg_item(a), 2.5, 0);
    ck_assert_close(tg_item(b), (double)0.1f, 0); /* rounded to float */
    ck_assert_int_eq(((int64_t *)c->data)[0], -3);
    ck_assert_close(tg_item(c), -3.0, 0);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(c);
    tg_tape_reset();
}
END_TEST

START_TEST(test_clone) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), (const double[]){1, 2, 3});
    tg_requires_grad(x, true);
    tg_tensor *y = tg_mul(x, x); /* gives x a gradient after backward */
    ck_assert_int_eq(tg_backward_seeded(y, y), 0);
    ck_assert_ptr_nonnull(x->grad);

    tg_tensor *c = tg_tensor_clone(x);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_ne(c, x);
    ck_assert_ptr_ne(c->data, x->data);
    ck_assert_int_eq(c->dtype, TG_F64);
    ck_assert(tg_same_shape(c, x));
    ck_assert(c->requires_grad);
    ck_assert_ptr_null(c->grad); /* no gradient, no history */
    tgt_assert_tensor(c, (const double[]){1, 2, 3}, 0);
    ck_assert_int_eq(tg_tensor_set(x, 0, 9), 0);
    ck_assert_close(tg_tensor_get(c, 0), 1.0, 0);

    /* A clone of a tape tensor is persistent: it survives the reset. */
    tg_tensor *cy = tg_tensor_clone(y);
    ck_assert_ptr_nonnull(cy);
    ck_assert(cy->requires_grad);
    tg_tape_reset();
    tgt_assert_tensor(cy, (const double[]){1, 4, 9}, 0);
    ck_assert_int_eq(tg_tensor_set(cy, 2, -1), 0);

    tg_clear_error();
    ck_assert_ptr_null(tg_tensor_clone(NULL));
    ck_assert_ptr_nonnull(tg_error());
    ck_assert_ptr_nonnull(strstr(tg_error(), "tg_tensor_clone"));

    tg_tensor_free(x);
    tg_tensor_free(c);
    tg_tensor_free(cy);
    tg_tape_reset();
}
END_TEST

/* ---- alignment ---- */

static bool aligned64(const void *p) { return ((uintptr_t)p & 63) == 0; }

START_TEST(test_alignment) {
    /* Persistent tensors of awkward sizes and every dtype. */
    tg_tensor *ps[12];
    int np = 0;
    for (int n = 1; n <= 4; n++) {
        ps[np++] = tg_tensor_new(TG_F32, TG_SHAPE(n));
        ps[np++] = tg_tensor_new(TG_F64, TG_SHAPE(n, 3));
        ps[np++] = tg_tensor_from(TG_I64, TG_SHAPE(1), (const int64_t[]){n});
    }
    for (int i = 0; i < np; i++) {
        ck_assert_ptr_nonnull(ps[i]);
        ck_assert_msg(aligned64(ps[i]->data), "persistent tensor %d: data %p", i, ps[i]->data);
    }
    tg_tensor *s = tg_scalar(TG_F32, 1);
    ck_assert(aligned64(s->data));

    /* Tape tensors: op results of odd sizes, one after another in the arena. */
    tg_tensor *a = tg_tensor_new(TG_F32, TG_SHAPE(3));
    tg_tensor *b = tg_tensor_new(TG_F64, TG_SHAPE(5));
    tg_requires_grad(b, true);
    tg_tensor *t = a;
    for (int i = 0; i < 20; i++) {
        t = tg_add_scalar(t, 1.0);
        ck_assert_ptr_nonnull(t);
        ck_assert_msg(aligned64(t->data), "tape tensor %d: data %p", i, t->data);
        tg_tensor *u = tg_sin(b);
        ck_assert_ptr_nonnull(u);
        ck_assert_msg(aligned64(u->data), "tape tensor (f64, recorded) %d: data %p", i, u->data);
        tg_tensor *v = tg_sum(u, TG_ALL, false);
        ck_assert_ptr_nonnull(v);
        /* one element (scalar code): 16-byte aligned, right after its header */
        ck_assert_uint_eq((uintptr_t)v->data % 16, 0);
    }
    /* Gradients too: the persistent one made by backward, and an intermediate's. */
    tg_tensor *u = tg_exp(b);
    tg_tensor *y = tg_sum(u, TG_ALL, false);
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert(aligned64(b->grad->data));
    ck_assert(aligned64(u->grad->data));

    tg_tape_reset();
    for (int i = 0; i < np; i++)
        tg_tensor_free(ps[i]);
    tg_tensor_free(s);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* ---- element access and its errors ---- */

START_TEST(test_item_get_set_fill) {
    tg_tensor *v = tg_tensor_from(TG_F64, TG_SHAPE(2, 2), (const double[]){1, 2, 3, 4});
    tg_tensor *one = tg_tensor_from(TG_F32, TG_SHAPE(1, 1, 1), (const float[]){7.5f});

    /* tg_item: any ndim with one element. */
    ck_assert_close(tg_item(one), 7.5, 0);
    tg_clear_error();
    double r = tg_item(v);
    ck_assert(isnan(r));
    tgt_assert_error_has("tg_item(v)", (const char *[]){"tg_item", "[2,2]", "4 elements"}, 3);
    tg_clear_error();
    ck_assert(isnan(tg_item(NULL)));
    tgt_assert_error_has("tg_item(NULL)", (const char *[]){"tg_item", "NULL"}, 2);

    /* tg_tensor_get / set: flat indices, both ends checked. */
    ck_assert_close(tg_tensor_get(v, 3), 4.0, 0);
    tg_clear_error();
    ck_assert(isnan(tg_tensor_get(v, 4)));
    tgt_assert_error_has("get(v, 4)", (const char *[]){"tg_tensor_get", "index 4", "[2,2]"}, 3);
    tg_clear_error();
    ck_assert(isnan(tg_tensor_get(v, -1)));
    tgt_assert_error_has("get(v, -1)", (const char *[]){"tg_tensor_get", "out of range"}, 2);
    tg_clear_error();
    ck_assert(isnan(tg_tensor_get(NULL, 0)));
    ck_assert_ptr_nonnull(tg_error());

    ck_assert_int_eq(tg_tensor_set(v, 1, -5), 0);
    ck_assert_close(tg_tensor_get(v, 1), -5.0, 0);
    tg_clear_error();
    ck_assert_int_eq(tg_tensor_set(v, 4, 1), -1);
    tgt_assert_error_has("set(v, 4)", (const char *[]){"tg_tensor_set", "out of range", "[2,2]"},
                         3);
    tg_clear_error();
    ck_assert_int_eq(tg_tensor_set(v, -3, 1), -1);
    ck_assert_ptr_nonnull(tg_error());
    tg_clear_error();
    ck_assert_int_eq(tg_tensor_set(NULL, 0, 1), -1);
    tgt_assert_error_has("set(NULL)", (const char *[]){"tg_tensor_set", "NULL"}, 2);
    tgt_assert_tensor(v, (const double[]){1, -5, 3, 4}, 0); /* failed sets changed nothing */

    /* tg_tensor_fill, for every dtype. */
    ck_assert_int_eq(tg_tensor_fill(v, 0.5), 0);
    tgt_assert_tensor(v, (const double[]){0.5, 0.5, 0.5, 0.5}, 0);
    tg_tensor *l = tg_tensor_new(TG_I64, TG_SHAPE(3));
    ck_assert_int_eq(tg_tensor_fill(l, 4), 0);
    tgt_assert_tensor(l, (const double[]){4, 4, 4}, 0);
    ck_assert_int_eq(tg_tensor_fill(one, -2), 0);
    ck_assert_close(tg_item(one), -2.0, 0);
    tg_clear_error();
    ck_assert_int_eq(tg_tensor_fill(NULL, 1), -1);
    tgt_assert_error_has("fill(NULL)", (const char *[]){"tg_tensor_fill", "NULL"}, 2);

    tg_tensor_free(v);
    tg_tensor_free(one);
    tg_tensor_free(l);
    tg_tape_reset();
}
END_TEST

START_TEST(test_free_null_and_tape_tensor) {
    tg_tensor_free(NULL); /* fine */
    tg_tensor *x = tg_scalar(TG_F64, 1);
    tg_tensor *y = tg_exp(x);
    ck_assert_ptr_nonnull(y);
    tg_tensor_free(y); /* a tape tensor: ignored, still readable until the reset */
    ck_assert_close(tg_item(y), exp(1.0), 1e-15);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

START_TEST(test_requires_grad) {
    tg_tensor *x = tg_tensor_new(TG_F32, TG_SHAPE(2));
    tg_requires_grad(x, true);
    ck_assert(x->requires_grad);
    tg_requires_grad(x, false);
    ck_assert(!x->requires_grad);
    tg_requires_grad(NULL, true); /* ignored */

    tg_tensor *idx = tg_tensor_from(TG_I64, TG_SHAPE(2), (const int64_t[]){0, 1});
    tg_clear_error();
    tg_requires_grad(idx, true);
    ck_assert(!idx->requires_grad);
    tgt_assert_error_has("tg_requires_grad(i64)",
                         (const char *[]){"tg_requires_grad", "i64", "[2]"}, 3);
    tg_clear_error();
    tg_requires_grad(idx, false); /* turning it off is no error */
    ck_assert_ptr_null(tg_error());

    tg_tensor_free(x);
    tg_tensor_free(idx);
    tg_tape_reset();
}
END_TEST

START_TEST(test_bad_shapes) {
    ck_assert_op_error(tg_tensor_new(TG_F64, TG_SHAPE(2, -3)), "tg_tensor_new",
                       "negative dimension", "[2,-3]");
    ck_assert_op_error(tg_tensor_from(TG_F32, TG_SHAPE(-1), (const float[]){0}), "tg_tensor_from",
                       "negative dimension", "[-1]");
    ck_assert_op_error(tg_tensor_new(TG_F64, TG_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1)), "tg_tensor_new",
                       "ndim 9", "outside [0, 8]");
    ck_assert_op_error(tg_tensor_new(TG_F64, -1, (const int64_t[]){1}), "tg_tensor_new", "ndim -1");
    ck_assert_op_error(tg_tensor_new(TG_F64, 2, NULL), "tg_tensor_new", "shape is NULL", "ndim 2");
    ck_assert_op_error(tg_tensor_from(TG_F64, 1, NULL, (const double[]){1}), "tg_tensor_from",
                       "shape is NULL");
    ck_assert_op_error(tg_tensor_new((tg_dtype)7, TG_SHAPE(2)), "tg_tensor_new", "invalid dtype 7");
    ck_assert_op_error(tg_scalar((tg_dtype)-1, 0), "tg_scalar", "invalid dtype");
    /* A byte count that does not fit is refused, not wrapped around. */
    ck_assert_op_error(tg_tensor_new(TG_F64, TG_SHAPE(INT64_C(1) << 31, INT64_C(1) << 31, 8)),
                       "tg_tensor_new", "too large");
    ck_assert_op_error(tg_tensor_new(TG_F64, TG_SHAPE(INT64_MAX)), "tg_tensor_new", "too large");
    tg_tape_reset();
}
END_TEST

START_TEST(test_names_and_shape_helpers) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(4, 1, 2));
    tg_tensor *s = tg_scalar(TG_F64, 0);
    char buf[64];
    ck_assert_str_eq(tg_shape_str(x, buf, sizeof buf), "[4,1,2]");
    ck_assert_str_eq(tg_shape_str(s, buf, sizeof buf), "[]");
    char small[4];
    tg_shape_str(x, small, sizeof small); /* truncated, still terminated */
    ck_assert_int_eq((int)strlen(small), 3);
    ck_assert(tg_same_shape(x, x));
    ck_assert(!tg_same_shape(x, s));
    ck_assert(!tg_same_shape(x, NULL));
    ck_assert_int_eq((int)tg_dtype_size(TG_F32), 4);
    ck_assert_int_eq((int)tg_dtype_size(TG_F64), 8);
    ck_assert_int_eq((int)tg_dtype_size(TG_I64), 8);
    ck_assert_int_eq((int)tg_dtype_size((tg_dtype)9), 0);
    ck_assert_str_eq(tg_dtype_name(TG_F32), "f32");
    ck_assert_str_eq(tg_dtype_name(TG_F64), "f64");
    ck_assert_str_eq(tg_dtype_name(TG_I64), "i64");

    tg_tensor_set_name(x, "weights");
    ck_assert_str_eq(x->tg__name, "weights");
    tg_tensor_set_name(x, "a_name_that_is_much_longer_than_the_buffer");
    ck_assert_int_eq((int)strlen(x->tg__name), 23);
    ck_assert(strncmp(x->tg__name, "a_name_that_is_much_lon", 23) == 0);
    tg_tensor_set_name(x, NULL);
    ck_assert_str_eq(x->tg__name, "");
    tg_tensor_set_name(NULL, "x"); /* ignored */

    tg_tensor_free(x);
    tg_tensor_free(s);
    tg_tape_reset();
}
END_TEST

/* ---- the allocator hook ---- */

/* Counts allocations and releases, and fails the fail_at-th allocation (1-based;
 * 0 never fails) and, when sticky, every one after it (memory that has run out: a
 * smaller request that the library retries with fails too). */
typedef struct {
    long count, fail_at, live, failed;
    bool sticky;
} fail_alloc_state;

static void *fail_alloc(size_t size, void *ud) {
    fail_alloc_state *s = ud;
    ++s->count;
    if (s->fail_at > 0 && (s->count == s->fail_at || (s->sticky && s->count > s->fail_at))) {
        s->failed++;
        return NULL;
    }
    void *p = malloc(size);
    if (p) s->live++;
    return p;
}

static void fail_release(void *p, void *ud) {
    fail_alloc_state *s = ud;
    if (p) s->live--;
    free(p);
}

/* A small graph with fan-out, broadcasting and a reduction:
 *     y = sum(sin(x) * w + x * x) / 2     x: [3] f64, w: [] f64
 * dy/dx = (cos(x) * w + 2x) / 2,  dy/dw = sum(sin(x)) / 2.
 * Returns 0 on success (and checks the gradients), -1 when something failed. */
static int run_small_graph(void) {
    const double xv[3] = {0.3, -1.2, 2.0}, wv = 1.5;
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), xv);
    tg_tensor *w = tg_scalar(TG_F64, wv);
    tg_requires_grad(x, true);
    tg_requires_grad(w, true);
    tg_tensor *y =
        tg_mul_scalar(tg_sum(tg_add(tg_mul(tg_sin(x), w), tg_mul(x, x)), TG_ALL, false), 0.5);
    int rc = tg_backward(y);
    if (rc == 0) {
        double gw = 0;
        for (int i = 0; i < 3; i++) {
            ck_assert_close(tg_tensor_get(x->grad, i), (cos(xv[i]) * wv + 2 * xv[i]) / 2, 1e-14);
            gw += sin(xv[i]) / 2;
        }
        ck_assert_close(tg_item(w->grad), gw, 1e-14);
        /* A second, functional, pass exercises tg_grad's allocations too. */
        tg_tensor *dx = NULL;
        rc = tg_grad(1, &y, NULL, 1, &x, &dx, TG_CREATE_GRAPH);
        if (rc == 0) {
            ck_assert_ptr_nonnull(dx);
            ck_assert_close(tg_tensor_get(dx, 0), (cos(xv[0]) * wv + 2 * xv[0]) / 2, 1e-14);
        } else {
            ck_assert_ptr_null(dx);
        }
    }
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(w);
    return rc;
}

/* A failed tg_backward changes no ->grad: with gradients already present from a first
 * pass (x) and absent (v), a second pass whose k-th allocation fails leaves x->grad as
 * it was and v->grad NULL; when it succeeds the gradients have added up. */
START_TEST(test_failed_backward_changes_no_grad) {
    tg_tape_free();
    fail_alloc_state st = {0};
    tg_set_allocator(&(tg_allocator){fail_alloc, fail_release, &st});
    const double xv[3] = {0.3, -1.2, 2.0};
    for (long k = 1;; k++) {
        tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), xv);
        tg_tensor *v = tg_scalar(TG_F64, 0.5);
        ck_assert_ptr_nonnull(x);
        ck_assert_ptr_nonnull(v);
        tg_requires_grad(x, true);
        tg_requires_grad(v, true);
        ck_assert_int_eq(tg_backward(tg_sum(tg_sin(x), TG_ALL, false)), 0); /* dx = cos x */
        tg_tape_reset();
        st = (fail_alloc_state){.fail_at = k, .live = st.live};
        /* dx = v cos x + 2x. x's last use comes after v's, so the sweep delivers x's
         * gradient before v's is allocated. */
        tg_tensor *first = tg_sum(tg_mul(tg_sin(x), v), TG_ALL, false);
        tg_tensor *second = tg_sum(tg_square(x), TG_ALL, false);
        tg_tensor *y = tg_add(first, second);
        int rc = y ? tg_backward(y) : -1;
        for (int i = 0; i < 3; i++) {
            double want = cos(xv[i]) + (rc == 0 ? 0.5 * cos(xv[i]) + 2 * xv[i] : 0.0);
            ck_assert_close(tg_tensor_get(x->grad, i), want, 1e-15);
        }
        if (rc == 0) {
            ck_assert_ptr_nonnull(v->grad);
        } else {
            ck_assert_msg(v->grad == NULL, "allocation %ld failed but v->grad was set", k);
        }
        bool reached = st.failed > 0;
        tg_tape_reset();
        tg_tensor_free(x);
        tg_tensor_free(v);
        tg_tape_free();
        if (!reached) break; /* every allocation of the second pass has been failed once */
    }
    ck_assert_int_eq(st.live, 0);
    tg_set_allocator(NULL);
    tg_clear_error();
}
END_TEST

/* An allocation failure inside an op names the op and the result's shape. */
START_TEST(test_out_of_memory_names_the_op) {
    tg_tensor *a = tg_tensor_new(TG_F32, TG_SHAPE(3, 4)),
              *b = tg_tensor_new(TG_F32, TG_SHAPE(4, 5));
    tg_tape_free(); /* an empty arena: the matmul's result needs a new block */
    fail_alloc_state st = {.fail_at = 1};
    tg_set_allocator(&(tg_allocator){fail_alloc, fail_release, &st});
    ck_assert_op_error(tg_matmul(a, b), "tg_matmul: out of memory", "[3,5]", "f32");
    st = (fail_alloc_state){.fail_at = 1};
    tg_tensor *c = tg_tensor_new(TG_F64, TG_SHAPE(2));
    ck_assert_ptr_null(c);
    tgt_assert_error_has("tg_tensor_new", (const char *[]){"tg_tensor_new: out of memory"}, 1);
    tg_tape_free();
    tg_set_allocator(NULL);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_clear_error();
}
END_TEST

START_TEST(test_allocation_failure_every_k) {
    tg_tape_free(); /* memory must be released by the allocator that gave it */
    fail_alloc_state st = {0};
    tg_set_allocator(&(tg_allocator){fail_alloc, fail_release, &st});

    /* Count the allocations of a run that fails nowhere. */
    tg_clear_error();
    ck_assert_int_eq(run_small_graph(), 0);
    ck_assert_ptr_null(tg_error());
    tg_tape_free();
    long total = st.count;
    ck_assert_int_eq(st.live, 0);
    ck_assert_int_gt(total, 3); /* x, w, the arena and at least one gradient */

    for (long k = 1; k <= total + 1; k++) {
        st = (fail_alloc_state){.fail_at = k};
        tg_clear_error();
        int rc = run_small_graph();
        if (k <= total) {
            ck_assert_msg(st.failed == 1, "allocation %ld of %ld was not reached", k, total);
            ck_assert_msg(rc == -1, "allocation %ld failed but the run reported success", k);
            ck_assert_msg(tg_error() != NULL, "allocation %ld failed without tg_error()", k);
            ck_assert_msg(strstr(tg_error(), "out of memory") != NULL,
                          "allocation %ld: error is \"%s\"", k, tg_error());
        } else {
            ck_assert_int_eq(rc, 0);
            ck_assert_int_eq(st.failed, 0);
        }
        tg_tape_free();
        ck_assert_msg(st.live == 0, "failing allocation %ld leaked %ld blocks", k, st.live);
    }
    tg_set_allocator(NULL);
    tg_clear_error();
}
END_TEST

/* A graph through the ops with their own allocation patterns, sized by (n, d, c):
 *     xs = index_select(x, 0, rows)              x [n,d], rows i64 [n]
 *     h  = matmul(xs, w)                         w [d,c]
 *     hc = concat(h, tanh(h)) along axis 1       [n,2c]
 *     loss = softmax_cross_entropy(hc, labels) + mean(gather(hc, 1, pick)^2)
 *            + 0.1 * sum(max(hc, 1))
 * then tg_backward(loss), a tg_grad of dloss/dx with TG_CREATE_GRAPH and a second
 * tg_grad of sum((dloss/dx)^2) with respect to w (double backward through every op).
 * Returns 0 on success, -1 when a step failed; *stage is 1 when the forward pass
 * failed, 2 when a backward pass did. On success the gradients are written into
 * gx [n*d], gw [d*c] and ggw [d*c]. */
typedef struct {
    int64_t n, d, c;
} graph_size;

static int run_op_graph(graph_size z, int *stage, double *gx, double *gw, double *ggw) {
    int64_t n = z.n, d = z.d, c = z.c;
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(n, d)),
              *w = tg_tensor_new(TG_F64, TG_SHAPE(d, c));
    tg_tensor *rows = tg_tensor_new(TG_I64, TG_SHAPE(n)),
              *labels = tg_tensor_new(TG_I64, TG_SHAPE(n));
    tg_tensor *pick = tg_tensor_new(TG_I64, TG_SHAPE(n, 2));
    for (int64_t i = 0; x && i < x->numel; i++)
        tg_tensor_set(x, i, sin(0.7 * (double)i));
    for (int64_t i = 0; w && i < w->numel; i++)
        tg_tensor_set(w, i, cos(1.3 * (double)i) / 2);
    for (int64_t i = 0; rows && i < n; i++)
        tg_tensor_set(rows, i, (double)((i * 5 + 1) % n));
    for (int64_t i = 0; labels && i < n; i++)
        tg_tensor_set(labels, i, (double)((i * 3) % (2 * c)));
    for (int64_t i = 0; pick && i < 2 * n; i++)
        tg_tensor_set(pick, i, (double)((i * 7) % (2 * c)));
    tg_requires_grad(x, true);
    tg_requires_grad(w, true);

    tg_tensor *h = tg_matmul(tg_index_select(x, 0, rows), w);
    tg_tensor *hc = tg_concat(2, (tg_tensor *[]){h, tg_tanh(h)}, 1);
    tg_tensor *loss = tg_add(tg_add(tg_softmax_cross_entropy(hc, labels),
                                    tg_mean(tg_square(tg_gather(hc, 1, pick)), TG_ALL, false)),
                             tg_mul_scalar(tg_sum(tg_max(hc, 1, false), TG_ALL, false), 0.1));
    int rc = -1;
    *stage = 1;
    if (loss) {
        *stage = 2;
        tg_tensor *dx = NULL, *ddw = NULL;
        rc = tg_backward(loss);
        if (rc == 0) rc = tg_grad(1, &loss, NULL, 1, &x, &dx, TG_CREATE_GRAPH);
        if (rc == 0) {
            tg_tensor *gn = tg_sum(tg_square(dx), TG_ALL, false);
            rc = tg_grad(1, &gn, NULL, 1, &w, &ddw, 0);
        }
        if (rc == 0) {
            *stage = 0;
            for (int64_t i = 0; i < n * d; i++)
                gx[i] = tg_tensor_get(x->grad, i);
            for (int64_t i = 0; i < d * c; i++)
                gw[i] = tg_tensor_get(w->grad, i);
            for (int64_t i = 0; i < d * c; i++)
                ggw[i] = tg_tensor_get(ddw, i);
        } else {
            ck_assert_ptr_null(ddw);
        }
    }
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(rows);
    tg_tensor_free(labels);
    tg_tensor_free(pick);
    return rc;
}

/* Memory runs out at every allocation of run_op_graph in turn (that one and all after
 * it fail: a single refused request could be recovered, as the arena does when its
 * doubled block is refused, see test_tape), at several sizes: a tiny graph (the
 * first arena block holds everything) and graphs whose tensors outgrow the blocks, so
 * the tape has to add blocks in the middle of forward and backward ops. The arena
 * doubles its blocks, so one size reaches only a few ops; together these sizes make a
 * new block fall in 30 different places (in the forward index_select, matmul, tanh,
 * concat, add, max, sum and mul_scalar, and in most nodes of the two backward passes).
 * Each failure gives -1 (or a NULL loss) with "out of memory", never a crash or a
 * leak; the run after the last allocation succeeds with the gradients of an unhooked
 * run. */
START_TEST(test_allocation_failure_every_k_ops) {
    const graph_size sizes[] = {
        {3, 4, 3},     {16, 32, 4},   {16, 8, 24},  {20, 48, 16}, {20, 48, 24},  {32, 48, 24},
        {48, 32, 4},   {64, 48, 16},  {100, 16, 4}, {100, 32, 8}, {100, 32, 16}, {100, 32, 24},
        {100, 48, 16}, {100, 48, 24}, {128, 8, 16}, {128, 32, 8}, {160, 32, 4},  {160, 32, 16},
        {160, 32, 24}, {200, 16, 4},  {256, 8, 16}};
    for (size_t zi = 0; zi < sizeof sizes / sizeof *sizes; zi++) {
        graph_size z = sizes[zi];
        size_t nx = (size_t)(z.n * z.d), nw = (size_t)(z.d * z.c);
        double *ref = malloc((2 * nx + 4 * nw) * sizeof *ref);
        ck_assert_ptr_nonnull(ref);
        double *rgx = ref, *rgw = ref + nx, *rggw = rgw + nw;
        double *gx = rggw + nw, *gw = gx + nx, *ggw = gw + nw;
        int stage;
        /* The reference, on malloc. */
        tg_tape_free();
        tg_clear_error();
        ck_assert_msg(run_op_graph(z, &stage, rgx, rgw, rggw) == 0, "%s", tg_error());
        tg_tape_free();

        fail_alloc_state st = {0};
        tg_set_allocator(&(tg_allocator){fail_alloc, fail_release, &st});
        ck_assert_int_eq(run_op_graph(z, &stage, gx, gw, ggw), 0);
        tg_tape_free();
        long total = st.count;
        ck_assert_int_eq(st.live, 0);
        int failed_in[3] = {0};
        for (long k = 1; k <= total + 1; k++) {
            st = (fail_alloc_state){.fail_at = k, .sticky = true};
            tg_clear_error();
            int rc = run_op_graph(z, &stage, gx, gw, ggw);
            if (k <= total) {
                ck_assert_msg(st.failed >= 1, "size %zu: allocation %ld of %ld not reached", zi, k,
                              total);
                ck_assert_msg(rc == -1, "size %zu: allocation %ld failed but the run succeeded", zi,
                              k);
                ck_assert_msg(tg_error() && strstr(tg_error(), "out of memory"),
                              "size %zu: allocation %ld: error is \"%s\"", zi, k,
                              tg_error() ? tg_error() : "(none)");
                failed_in[stage]++;
            } else {
                ck_assert_int_eq(rc, 0);
                for (size_t i = 0; i < nx; i++)
                    ck_assert_close(gx[i], rgx[i], 1e-12);
                for (size_t i = 0; i < nw; i++) {
                    ck_assert_close(gw[i], rgw[i], 1e-12);
                    ck_assert_close(ggw[i], rggw[i], 1e-12 * (1 + fabs(rggw[i])));
                }
            }
            tg_tape_free();
            ck_assert_msg(st.live == 0, "size %zu: failing allocation %ld leaked %ld blocks", zi, k,
                          st.live);
        }
        /* The persistent tensors and the first block fail in the forward pass; the larger
         * graphs also need new blocks during the backward passes. */
        ck_assert_int_gt(failed_in[1], 0);
        if (zi > 0) ck_assert_int_gt(failed_in[2], 0);
        tg_set_allocator(NULL);
        tg_clear_error();
        free(ref);
    }
}
END_TEST

START_TEST(test_allocation_failure_constructors) {
    tg_tape_free();
    fail_alloc_state st = {.fail_at = 1};
    tg_set_allocator(&(tg_allocator){fail_alloc, fail_release, &st});
    tg_tensor *src = NULL;
    ck_assert_op_error(tg_tensor_new(TG_F64, TG_SHAPE(4)), "out of memory");
    st = (fail_alloc_state){.fail_at = 1};
    ck_assert_op_error(tg_scalar(TG_F32, 1), "out of memory");
    st = (fail_alloc_state){.fail_at = 2};
    src = tg_tensor_new(TG_F64, TG_SHAPE(2));
    ck_assert_ptr_nonnull(src);
    ck_assert_op_error(tg_tensor_clone(src), "out of memory");
    tg_tensor_free(src);
    /* The first op on an empty tape needs the arena. */
    tg_tensor *x = tg_scalar(TG_F64, 1);
    st.fail_at = st.count + 1;
    ck_assert_op_error(tg_exp(x), "out of memory");
    tg_tensor_free(x);
    tg_tape_free();
    ck_assert_int_eq(st.live, 0);
    tg_set_allocator(NULL);
    tg_clear_error();
}
END_TEST

START_TEST(test_allocator_counts_everything) {
    tg_tape_free();
    fail_alloc_state st = {0};
    tg_set_allocator(&(tg_allocator){fail_alloc, fail_release, &st});
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(10));
    ck_assert_int_eq(st.count, 1);
    ck_assert_int_eq(st.live, 1);
    tg_requires_grad(x, true);
    tg_tensor *y = tg_sum(tg_square(x), TG_ALL, false);
    ck_assert_int_eq(tg_backward(y), 0); /* arena blocks + the persistent gradient */
    ck_assert_int_ge(st.live, 3);
    tg_tape_reset();
    tg_tensor_free(x); /* frees x->grad too */
    tg_tape_free();
    ck_assert_int_eq(st.live, 0);
    tg_set_allocator(NULL);
    /* Back on malloc: the hook is no longer called. */
    long before = st.count;
    tg_tensor *z = tg_tensor_new(TG_F64, TG_SHAPE(2));
    ck_assert_ptr_nonnull(z);
    tg_tensor_free(z);
    ck_assert_int_eq(st.count, before);
    ck_assert_int_eq(st.live, 0);
    tg_tape_reset();
}
END_TEST

static Suite *tensor_suite(void) {
    Suite *s = suite_create("tensor");
    TCase *c = tcase_create("constructors");
    tcase_add_test(c, test_new_zeros);
    tcase_add_test(c, test_full_eye);
    tcase_add_test(c, test_arange_linspace);
    tcase_add_test(c, test_randn_rand);
    tcase_add_test(c, test_tensor_print);
    tcase_add_test(c, test_from_copies);
    tcase_add_test(c, test_scalar);
    tcase_add_test(c, test_clone);
    tcase_add_test(c, test_alignment);
    suite_add_tcase(s, c);
    c = tcase_create("access");
    tcase_add_test(c, test_item_get_set_fill);
    tcase_add_test(c, test_free_null_and_tape_tensor);
    tcase_add_test(c, test_requires_grad);
    tcase_add_test(c, test_bad_shapes);
    tcase_add_test(c, test_names_and_shape_helpers);
    suite_add_tcase(s, c);
    c = tcase_create("allocator");
    tcase_add_test(c, test_allocation_failure_every_k);
    tcase_add_test(c, test_failed_backward_changes_no_grad);
    tcase_add_test(c, test_out_of_memory_names_the_op);
    tcase_add_test(c, test_allocation_failure_every_k_ops);
    tcase_add_test(c, test_allocation_failure_constructors);
    tcase_add_test(c, test_allocator_counts_everything);
    suite_add_tcase(s, c);
    return s;
}

int main(void) { return tgt_run(tensor_suite()); }
