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
        ck_assert_msg(fabs(ck_a_ - ck_b_) <= ck_t_ || (isnan(ck_a_) && isnan(ck_b_)),              \
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

/* Asserts that the int-returning expr returned -1 and that tg_error() contains every
 * fragment given. */
#define ck_assert_int_error(expr, ...)                                                             \
    do {                                                                                           \
        tg_clear_error();                                                                          \
        int ck_r_ = (expr);                                                                        \
        ck_assert_msg(ck_r_ == -1, "%s returned %d, expected -1", #expr, ck_r_);                   \
        const char *ck_frags_[] = {__VA_ARGS__};                                                   \
        tgt_assert_error_has(#expr, ck_frags_, (int)(sizeof ck_frags_ / sizeof *ck_frags_));       \
    } while (0)

/* Asserts that tg_error() is set and contains each of the n fragments; what names the
 * failed call in the message. */
void tgt_assert_error_has(const char *what, const char *const *frags, int n);

/* Asserts every element of t equals the matching entry of want to within tol; on
 * failure prints the index, both values and the shape. */
void tgt_assert_tensor(const tg_tensor *t, const double *want, double tol);

/* Asserts that t is non-NULL and has shape (ndim, shape); on failure prints both. */
void tgt_assert_shape(const tg_tensor *t, int ndim, const int64_t *shape);

/* tg_gradcheck of f at in (opts may be NULL), with what and the report in the
 * failure message. */
void tgt_assert_gradcheck(tg_fn f, void *ctx, int n, tg_tensor *const *in,
                          const tg_gradcheck_opts *opts, const char *what);

/* Both derivative checks: tg_gradcheck then tg_gradgradcheck, as above. */
void tgt_assert_grads(tg_fn f, void *ctx, int n, tg_tensor *const *in,
                      const tg_gradcheck_opts *opts, const char *what);

/* A persistent F32 copy of an F64 (or F32) tensor, with the same requires_grad; the
 * caller frees it. */
tg_tensor *tgt_to_f32(const tg_tensor *x);

/* Asserts t32 is F32 and agrees with t64 (same shape) to float precision: each
 * element within 1e-6 * (1 + |t64|), i.e. relative ~2^-20 plus the same absolute
 * amount near 0. */
void tgt_assert_close_f32(const tg_tensor *t32, const tg_tensor *t64, const char *what);

/* Runs f on the n (<= 4) F64 inputs and on F32 copies of them; asserts that the
 * results and the gradients of their sum (tg_grad with a ones seed) agree as
 * tgt_assert_close_f32 says. Resets the tape and frees the copies. */
void tgt_assert_f32_agrees(tg_fn f, void *ctx, int n, tg_tensor *const *in, const char *what);

/* A persistent F64/F32 tensor filled with values uniform in [lo, hi) from a fixed
 * generator (tgt_seed). */
tg_tensor *tgt_rand(tg_dtype dt, int ndim, const int64_t *shape, double lo, double hi);
void tgt_seed(uint64_t s);

/* Linear(in, hidden) -> ReLU -> Linear(hidden, out), F32, initialised from tg_seed(seed):
 * the small model the model and fit suites train. */
tg_model *tgt_mlp(uint64_t seed, int64_t in, int64_t hidden, int64_t out);

/* Adam with lr (other options default) over the 4 parameters of a tgt_mlp model. */
tg_optim *tgt_adam_over(tg_model *m, double lr);

/* Runs a Check suite with one process (no fork), returns the exit status. */
int tgt_run(Suite *s);

#endif
