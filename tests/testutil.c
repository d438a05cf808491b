#include "testutil.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void tgt_assert_error_has(const char *what, const char *const *frags, int n) {
    const char *e = tg_error();
    ck_assert_msg(e != NULL, "%s failed without setting tg_error()", what);
    for (int i = 0; i < n; i++)
        ck_assert_msg(strstr(e, frags[i]) != NULL,
                      "error of %s is \"%s\"; expected it to contain \"%s\"", what, e, frags[i]);
}

void tgt_assert_tensor(const tg_tensor *t, const double *want, double tol) {
    ck_assert_ptr_nonnull(t);
    char buf[128];
    for (int64_t i = 0; i < t->numel; i++) {
        double got = tg_tensor_get(t, i);
        ck_assert_msg(fabs(got - want[i]) <= tol || (isnan(got) && isnan(want[i])),
                      "element %lld of %s tensor %s: got %.17g, want %.17g (tolerance %g)",
                      (long long)i, tg_dtype_name(t->dtype), tg_shape_str(t, buf, sizeof buf), got,
                      want[i], tol);
    }
}

void tgt_assert_shape(const tg_tensor *t, int ndim, const int64_t *shape) {
    ck_assert_ptr_nonnull(t);
    bool same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = t->shape[d] == shape[d];
    if (same) return;
    char got[128], want[128] = "[";
    size_t len = 1;
    for (int d = 0; d < ndim && len < sizeof want; d++)
        len += (size_t)snprintf(want + len, sizeof want - len, "%s%lld", d ? "," : "",
                                (long long)shape[d]);
    if (len < sizeof want) snprintf(want + len, sizeof want - len, "]");
    ck_abort_msg("shape is %s, want %s", tg_shape_str(t, got, sizeof got), want);
}

void tgt_assert_gradcheck(tg_fn f, void *ctx, int n, tg_tensor *const *in,
                          const tg_gradcheck_opts *opts, const char *what) {
    tg_gradcheck_report rep;
    memset(&rep, 0, sizeof rep);
    ck_assert_msg(tg_gradcheck(f, ctx, n, in, opts, &rep), "gradcheck %s: %s", what, rep.message);
}

void tgt_assert_grads(tg_fn f, void *ctx, int n, tg_tensor *const *in,
                      const tg_gradcheck_opts *opts, const char *what) {
    tgt_assert_gradcheck(f, ctx, n, in, opts, what);
    tg_gradcheck_report rep;
    memset(&rep, 0, sizeof rep);
    ck_assert_msg(tg_gradgradcheck(f, ctx, n, in, opts, &rep), "gradgradcheck %s: %s", what,
                  rep.message);
}

tg_tensor *tgt_to_f32(const tg_tensor *x) {
    tg_tensor *t = tg_tensor_new(TG_F32, x->ndim, x->shape);
    ck_assert_ptr_nonnull(t);
    for (int64_t i = 0; i < x->numel; i++)
        tg_tensor_set(t, i, tg_tensor_get(x, i));
    t->requires_grad = x->requires_grad;
    return t;
}

void tgt_assert_close_f32(const tg_tensor *t32, const tg_tensor *t64, const char *what) {
    char b1[64], b2[64];
    ck_assert_msg(t32 && t64, "%s: missing result", what);
    ck_assert_msg(tg_same_shape(t32, t64), "%s: shapes %s and %s", what,
                  tg_shape_str(t32, b1, sizeof b1), tg_shape_str(t64, b2, sizeof b2));
    ck_assert_int_eq(t32->dtype, TG_F32);
    for (int64_t i = 0; i < t64->numel; i++) {
        double a = tg_tensor_get(t32, i), b = tg_tensor_get(t64, i);
        ck_assert_msg(fabs(a - b) <= 1e-6 * (1 + fabs(b)), "%s: element %lld: f32 %.9g, f64 %.17g",
                      what, (long long)i, a, b);
    }
}

void tgt_assert_f32_agrees(tg_fn f, void *ctx, int n, tg_tensor *const *in, const char *what) {
    tg_tensor *in32[4];
    ck_assert_int_le(n, 4);
    for (int i = 0; i < n; i++)
        in32[i] = tgt_to_f32(in[i]);
    tg_tensor *y64 = f(in, ctx), *y32 = f(in32, ctx);
    tgt_assert_close_f32(y32, y64, what);
    tg_tensor *g64[4], *g32[4];
    ck_assert_int_eq(tg_grad(1, &y64, NULL, n, in, g64, 0), 0);
    ck_assert_int_eq(tg_grad(1, &y32, NULL, n, in32, g32, 0), 0);
    for (int i = 0; i < n; i++)
        tgt_assert_close_f32(g32[i], g64[i], what);
    tg_tape_reset();
    for (int i = 0; i < n; i++)
        tg_tensor_free(in32[i]);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
void tgt_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }
static double next_unit(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

tg_tensor *tgt_rand(tg_dtype dt, int ndim, const int64_t *shape, double lo, double hi) {
    tg_tensor *t = tg_tensor_new(dt, ndim, shape);
    if (!t) return NULL;
    for (int64_t i = 0; i < t->numel; i++)
        tg_tensor_set(t, i, lo + (hi - lo) * next_unit());
    return t;
}

int tgt_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tg_tape_free();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

tg_model *tgt_mlp(uint64_t seed, int64_t in, int64_t hidden, int64_t out) {
    tg_seed(seed);
    tg_model *m = tg_model_new();
    ck_assert_int_eq(tg_model_add(m, tg_nn_linear(in, hidden, TG_F32)), 0);
    ck_assert_int_eq(tg_model_add(m, tg_nn_relu()), 0);
    ck_assert_int_eq(tg_model_add(m, tg_nn_linear(hidden, out, TG_F32)), 0);
    return m;
}

tg_optim *tgt_adam_over(tg_model *m, double lr) {
    tg_tensor *ps[8];
    int n = tg_model_params(m, ps, 8);
    ck_assert_int_eq(n, 4);
    tg_optim *opt = tg_adam(n, ps, (tg_adam_opts){.lr = lr});
    ck_assert_ptr_nonnull(opt);
    return opt;
}
