/* test_data.c — the generator, the spiral data set and the CSV loader (data.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad/data.h>
#include <tapegrad/nn.h>

#include "testutil.h"

#define TWO_PI 6.283185307179586476925286766559

/* ---------------- generator ---------------- */

START_TEST(rng_splitmix_reference) {
    /* The published first outputs of SplitMix64 from state 0 (Vigna's splitmix64.c). */
    tg_rng g;
    tg_rng_seed(&g, 0);
    ck_assert_uint_eq(tg_rng_next(&g), 0xE220A8397B1DCDAFull);
    ck_assert_uint_eq(tg_rng_next(&g), 0x6E789E6AA1B965F4ull);
    ck_assert_uint_eq(tg_rng_next(&g), 0x06C45D188009454Full);
}
END_TEST

START_TEST(rng_ranges_and_moments) {
    tg_rng g;
    tg_rng_seed(&g, 7);
    double sum = 0, sumsq = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double u = tg_rng_uniform(&g);
        ck_assert(u >= 0.0 && u < 1.0);
        uint64_t k = tg_rng_below(&g, 7);
        ck_assert_uint_lt(k, 7);
        double z = tg_rng_normal(&g);
        ck_assert(isfinite(z));
        sum += z;
        sumsq += z * z;
    }
    /* Mean 0 and variance 1 within ~5 standard errors. */
    ck_assert_close(sum / n, 0.0, 5.0 / sqrt(n));
    ck_assert_close(sumsq / n, 1.0, 5.0 * sqrt(2.0 / n));
    ck_assert_uint_eq(tg_rng_below(&g, 0), 0);
    ck_assert_uint_eq(tg_rng_below(&g, 1), 0);
}
END_TEST

/* ---------------- spiral ---------------- */

START_TEST(spiral_shapes_and_formula) {
    const int64_t N = 50;
    const int K = 4;
    tg_tensor *X, *y;
    ck_assert_int_eq(tg_data_spiral(N, K, 123, &X, &y), 0);
    ck_assert_int_eq(X->dtype, TG_F32);
    ck_assert_int_eq(X->ndim, 2);
    ck_assert_int_eq(X->shape[0], N * K);
    ck_assert_int_eq(X->shape[1], 2);
    ck_assert_int_eq(y->dtype, TG_I64);
    ck_assert_int_eq(y->ndim, 1);
    ck_assert_int_eq(y->shape[0], N * K);
    /* The documented formula, with the noise drawn in row order from tg_rng(seed). */
    tg_rng g;
    tg_rng_seed(&g, 123);
    for (int k = 0; k < K; k++)
        for (int64_t i = 0; i < N; i++) {
            int64_t row = k * N + i;
            double r = (double)i / (double)(N - 1);
            double t = TWO_PI * k / K + 1.5 * TWO_PI / K * r + 0.1 * tg_rng_normal(&g);
            ck_assert_close(tg_tensor_get(X, 2 * row), r * sin(t), 1e-6);
            ck_assert_close(tg_tensor_get(X, 2 * row + 1), r * cos(t), 1e-6);
            ck_assert_int_eq((int64_t)tg_tensor_get(y, row), k);
        }
    /* r = linspace(0, 1, N): the radius is exact whatever the noise. */
    ck_assert_close(tg_tensor_get(X, 0), 0.0, 0.0);
    ck_assert_close(hypot(tg_tensor_get(X, 2 * (N - 1)), tg_tensor_get(X, 2 * (N - 1) + 1)), 1.0,
                    1e-6);
    tg_tensor_free(X);
    tg_tensor_free(y);
    tg_tape_reset();
}
END_TEST

START_TEST(spiral_reproducible_and_dtypes) {
    tg_tensor *a, *ya, *b, *yb, *c, *yc, *d, *yd;
    ck_assert_int_eq(tg_data_spiral(30, 3, 5, &a, &ya), 0);
    ck_assert_int_eq(tg_data_spiral(30, 3, 5, &b, &yb), 0);
    ck_assert_int_eq(tg_data_spiral(30, 3, 6, &c, &yc), 0);
    ck_assert_int_eq(tg_data_spiral_dtype(30, 3, 5, TG_F64, &d, &yd), 0);
    ck_assert_int_eq(memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(ya->data, yb->data, (size_t)ya->numel * sizeof(int64_t)), 0);
    ck_assert_int_ne(memcmp(a->data, c->data, (size_t)a->numel * sizeof(float)), 0);
    ck_assert_int_eq(d->dtype, TG_F64);
    for (int64_t i = 0; i < a->numel; i++) {
        double v = tg_tensor_get(d, i);
        ck_assert_close(tg_tensor_get(a, i), (float)v, 0.0); /* rounded once from double */
    }
    /* Drawing data does not touch the tg_seed() generator. */
    tg_seed(9);
    double u1 = tg_rand_uniform();
    tg_seed(9);
    tg_tensor *e, *ye;
    ck_assert_int_eq(tg_data_spiral(10, 2, 1, &e, &ye), 0);
    ck_assert_close(tg_rand_uniform(), u1, 0.0);
    /* One point per class sits at the origin, and N = 1 is allowed. */
    tg_tensor *f, *yf;
    ck_assert_int_eq(tg_data_spiral(1, 2, 0, &f, &yf), 0);
    ck_assert_int_eq(f->shape[0], 2);
    tgt_assert_tensor(f, (double[]){0, 0, 0, 0}, 0.0);
    tg_tensor *all[] = {a, ya, b, yb, c, yc, d, yd, e, ye, f, yf};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        tg_tensor_free(all[i]);
    tg_tape_reset();
}
END_TEST

START_TEST(spiral_bad_input) {
    tg_tensor *X = (tg_tensor *)1, *y = (tg_tensor *)1;
    ck_assert_int_error(tg_data_spiral(0, 3, 0, &X, &y), "tg_data_spiral", "per_class");
    ck_assert_ptr_null(X);
    ck_assert_ptr_null(y);
    ck_assert_int_error(tg_data_spiral(10, 0, 0, &X, &y), "tg_data_spiral", "classes");
    ck_assert_int_error(tg_data_spiral(10, 3, 0, NULL, &y), "tg_data_spiral", "NULL");
    ck_assert_int_error(tg_data_spiral_dtype(10, 3, 0, TG_I64, &X, &y), "tg_data_spiral", "i64");
    ck_assert_int_error(tg_data_spiral(INT64_MAX / 2, 3, 0, &X, &y), "too many");
    tg_tape_reset();
}
END_TEST

/* ---------------- CSV ---------------- */

static const char *write_text(const char *name, const char *text) {
    FILE *f = fopen(name, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return name;
}

START_TEST(csv_with_header_label_last) {
    const char *p = write_text("test_data_a.csv", "x1, x2 ,label\n"
                                                  "0.5,-1.25,2\r\n"
                                                  "\n"
                                                  "  3 ,4e-1, 0\n"
                                                  "1,2,1");
    tg_tensor *X, *y;
    ck_assert_int_eq(tg_data_load_csv(p, -1, TG_F64, &X, &y), 0);
    ck_assert_int_eq(X->dtype, TG_F64);
    ck_assert_int_eq(X->shape[0], 3);
    ck_assert_int_eq(X->shape[1], 2);
    tgt_assert_tensor(X, (double[]){0.5, -1.25, 3, 0.4, 1, 2}, 0.0);
    ck_assert_int_eq(y->dtype, TG_I64);
    tgt_assert_tensor(y, (double[]){2, 0, 1}, 0.0);
    tg_tensor_free(X);
    tg_tensor_free(y);
    remove(p);
    tg_tape_reset();
}
END_TEST

START_TEST(csv_no_header_label_first) {
    const char *p = write_text("test_data_b.csv", "1,0.25,5,0.75\n0,1,2,3\n");
    tg_tensor *X, *y;
    ck_assert_int_eq(tg_data_load_csv(p, 0, TG_F32, &X, &y), 0);
    ck_assert_int_eq(X->dtype, TG_F32);
    ck_assert_int_eq(X->shape[0], 2);
    ck_assert_int_eq(X->shape[1], 3);
    tgt_assert_tensor(X, (double[]){0.25, 5, 0.75, 1, 2, 3}, 0.0);
    tgt_assert_tensor(y, (double[]){1, 0}, 0.0);
    tg_tensor_free(X);
    tg_tensor_free(y);
    /* A middle label column. */
    ck_assert_int_eq(tg_data_load_csv(p, 2, TG_F64, &X, &y), 0);
    tgt_assert_tensor(X, (double[]){1, 0.25, 0.75, 0, 1, 3}, 0.0);
    tgt_assert_tensor(y, (double[]){5, 2}, 0.0);
    tg_tensor_free(X);
    tg_tensor_free(y);
    remove(p);
    tg_tape_reset();
}
END_TEST

START_TEST(csv_errors) {
    tg_tensor *X = (tg_tensor *)1, *y = (tg_tensor *)1;
    ck_assert_int_error(tg_data_load_csv("test_data_missing.csv", -1, TG_F32, &X, &y),
                        "tg_data_load_csv", "test_data_missing.csv", "No such file");
    ck_assert_ptr_null(X);
    ck_assert_ptr_null(y);
    const char *p;
    p = write_text("test_data_c.csv", "a,b,c\n1,2,3\n4,5\n");
    ck_assert_int_error(tg_data_load_csv(p, -1, TG_F32, &X, &y), "test_data_c.csv:3", "2 fields",
                        "expected 3");
    {
        /* A NUL byte inside a field ("1\0x") must not read as the number 1. */
        static const char nul_csv[] = "1,2,3\n4,5\0x,6\n";
        FILE *f = fopen("test_data_nul.csv", "wb");
        ck_assert_ptr_nonnull(f);
        fwrite(nul_csv, 1, sizeof nul_csv - 1, f);
        fclose(f);
        ck_assert_int_error(tg_data_load_csv("test_data_nul.csv", -1, TG_F32, &X, &y),
                            "test_data_nul.csv:2", "NUL byte");
        ck_assert_ptr_null(X);
        ck_assert_ptr_null(y);
        remove("test_data_nul.csv");
    }
    p = write_text("test_data_c.csv", "1,2,3\n4,x5,6\n");
    ck_assert_int_error(tg_data_load_csv(p, -1, TG_F32, &X, &y), "test_data_c.csv:2", "field 2",
                        "not a number", "x5");
    p = write_text("test_data_c.csv", "1,2,3\n\n4,,6\n");
    ck_assert_int_error(tg_data_load_csv(p, -1, TG_F32, &X, &y), "test_data_c.csv:3", "field 2",
                        "empty");
    p = write_text("test_data_c.csv", "1,2,3\n4,5,6.5\n");
    ck_assert_int_error(tg_data_load_csv(p, -1, TG_F32, &X, &y), "test_data_c.csv:2",
                        "not an integer", "6.5");
    p = write_text("test_data_c.csv", "1,2,3\n");
    ck_assert_int_error(tg_data_load_csv(p, 3, TG_F32, &X, &y), "label_column 3", "3 columns");
    ck_assert_int_error(tg_data_load_csv(p, -2, TG_F32, &X, &y), "label_column -2");
    ck_assert_int_error(tg_data_load_csv(p, -1, TG_I64, &X, &y), "f32 or f64");
    ck_assert_int_error(tg_data_load_csv(p, -1, TG_F32, NULL, &y), "NULL");
    p = write_text("test_data_c.csv", "x,y,label\n");
    ck_assert_int_error(tg_data_load_csv(p, -1, TG_F32, &X, &y), "no data rows");
    p = write_text("test_data_c.csv", "\n\n");
    ck_assert_int_error(tg_data_load_csv(p, -1, TG_F32, &X, &y), "no data rows");
    p = write_text("test_data_c.csv", "1\n2\n");
    ck_assert_int_error(tg_data_load_csv(p, -1, TG_F32, &X, &y), "test_data_c.csv:1",
                        "at least 2 columns");
    ck_assert_ptr_null(X);
    ck_assert_ptr_null(y);
    remove(p);
    tg_tape_reset();
}
END_TEST

static Suite *data_suite(void) {
    Suite *s = suite_create("data");
    TCase *t = tcase_create("rng");
    tcase_add_test(t, rng_splitmix_reference);
    tcase_add_test(t, rng_ranges_and_moments);
    suite_add_tcase(s, t);
    t = tcase_create("spiral");
    tcase_add_test(t, spiral_shapes_and_formula);
    tcase_add_test(t, spiral_reproducible_and_dtypes);
    tcase_add_test(t, spiral_bad_input);
    suite_add_tcase(s, t);
    t = tcase_create("csv");
    tcase_add_test(t, csv_with_header_label_last);
    tcase_add_test(t, csv_no_header_label_first);
    tcase_add_test(t, csv_errors);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tgt_run(data_suite()); }
