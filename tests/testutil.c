#include "testutil.h"

#include <stdlib.h>
#include <string.h>

void tgt_assert_error_has(const char *what, const char *const *frags, int n) {
    const char *e = tg_error();
    ck_assert_msg(e != NULL, "%s failed without setting tg_error()", what);
    for (int i = 0; i < n; i++)
        ck_assert_msg(strstr(e, frags[i]) != NULL, "error of %s is \"%s\"; expected it to contain \"%s\"",
                      what, e, frags[i]);
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
    for (int64_t i = 0; i < t->numel; i++) tg_tensor_set(t, i, lo + (hi - lo) * next_unit());
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
