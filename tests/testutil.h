/* testutil.h — helpers shared by the Check suites. */
#ifndef TG_TESTUTIL_H
#define TG_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>

#include <tapegrad.h>

/* Fails the test with both values (and what they are) when |a - b| > tol. */
#define ck_assert_close(a, b, tol)                                                                 \
    do {                                                                                           \
        double ck_a_ = (a), ck_b_ = (b), ck_t_ = (tol);                                            \
        ck_assert_msg(fabs(ck_a_ - ck_b_) <= ck_t_ || (isnan(ck_a_) && isnan(ck_b_)),             \
                      "%s = %.17g but %s = %.17g (tolerance %g)", #a, ck_a_, #b, ck_b_, ck_t_);    \
    } while (0)

/* Asserts that expr returned NULL and that tg_error() contains every fragment given. */
#define ck_assert_op_error(expr, ...)                                                              \
    do {                                                                                           \
        tg_clear_error();                                                                          \
        const void *ck_r_ = (expr);                                                                \
        ck_assert_msg(ck_r_ == NULL, "%s should have failed", #expr);                              \
        const char *ck_frags_[] = {__VA_ARGS__};                                                   \
        tgt_assert_error_has(#expr, ck_frags_, (int)(sizeof ck_frags_ / sizeof *ck_frags_));       \
    } while (0)

void tgt_assert_error_has(const char *what, const char *const *frags, int n);

/* Asserts every element of t equals the matching entry of want to within tol; on
 * failure prints the index, both values and the shape. */
void tgt_assert_tensor(const tg_tensor *t, const double *want, double tol);

/* A persistent F64/F32 tensor filled with values uniform in [lo, hi) from a fixed
 * generator (tgt_seed). */
tg_tensor *tgt_rand(tg_dtype dt, int ndim, const int64_t *shape, double lo, double hi);
void tgt_seed(uint64_t s);

/* Runs a Check suite with one process (no fork), returns the exit status. */
int tgt_run(Suite *s);

#endif
