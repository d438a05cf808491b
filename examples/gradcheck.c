/*
 * gradcheck.c — checking the gradients of your own functions, and what a failure
 * looks like.
 *
 * A function built from tapegrad's ops gets its gradient from the tape. When you
 * compose ops into something larger (a likelihood, a loss, a layer), tg_gradcheck
 * compares that gradient with central differences, and tg_gradgradcheck does the same
 * for second derivatives. This program checks, in both the slow mode (the whole
 * Jacobian) and the fast mode (one random projection v^T J u):
 *
 *   must pass
 *     1. nll       the negative log-likelihood of data x under N(mu, sigma^2) per
 *                  column, with sigma = exp(log_sigma):
 *                      sum_ij [ (x_ij - mu_j)^2 / (2 sigma_j^2) + log sigma_j ]
 *                      + (n/2) log(2 pi)
 *                  x is data (no gradient); mu and log_sigma are checked.
 *     2. softplus  sum_i w_i softplus(a_i), with the stable form
 *                      softplus(a) = max(a, 0) + log(1 + e^-|a|)
 *
 *   must fail (deliberate mistakes, each caught by the check that is meant to)
 *     3. nll with tg_detach(sigma) in the standardisation: the value is the same, but
 *        the tape no longer sees that z = (x - mu) / sigma depends on log_sigma, so
 *        tg_gradcheck reports a mismatch at input 2 (log_sigma; x is input 0, mu 1).
 *     4. softplus whose derivative is "injected" by the detach trick
 *            y = detach(softplus(a)) + detach(sigmoid(a)) * (a - detach(a))
 *        The value and the first derivative (sigmoid) are right, so tg_gradcheck
 *        passes; but the tape sees a derivative that is constant in a, so the second
 *        derivative is 0 instead of sigmoid(a)(1 - sigmoid(a)): tg_gradgradcheck fails.
 *     5. the correct softplus of case 2, evaluated at a = 0 exactly: max and |.| have
 *        kinks there, and the tape takes each one's one-sided derivative (0 for both),
 *        giving 0 where the smooth function's derivative is 1/2. Keep the points of a
 *        check away from the kinks of relu, abs, max, maximum and minimum.
 *
 * Every input that is checked must be a persistent F64 tensor with requires_grad set;
 * the data x is a constant input (requires_grad off), passed along so that f can use it.
 *
 * Exit status 0 when every "must pass" check passes and every "must fail" check fails
 * (the failures printed below are expected); 1 otherwise.
 */
#include <math.h>
#include <stdio.h>

#include <tapegrad.h>

enum { ROWS = 6, COLS = 3, NA = 5 };

/* ---------------- the functions, in the form tg_fn wants ---------------- */

/* in[0] = x [ROWS, COLS] (data), in[1] = mu [COLS], in[2] = log_sigma [COLS]. ctx
 * points to a bool: detach sigma in the standardisation (the mistake of case 3). */
static tg_tensor *nll(tg_tensor *const *in, void *ctx) {
    const bool broken = ctx && *(const bool *)ctx;
    tg_tensor *x = in[0], *mu = in[1], *log_sigma = in[2];
    tg_tensor *sigma = tg_exp(log_sigma);
    if (broken) sigma = tg_detach(sigma);
    tg_tensor *z = tg_div(tg_sub(x, mu), sigma); /* [ROWS, COLS], broadcasting mu, sigma */
    tg_tensor *quad = tg_mul_scalar(tg_sum(tg_square(z), TG_ALL, false), 0.5);
    /* log sigma appears once per row: ROWS * sum_j log_sigma_j */
    tg_tensor *logdet = tg_mul_scalar(tg_sum(log_sigma, TG_ALL, false), ROWS);
    const double n = ROWS * COLS;
    return tg_add_scalar(tg_add(quad, logdet), 0.5 * n * log(2 * 3.14159265358979323846));
}

static tg_tensor *softplus_stable(tg_tensor *a) {
    return tg_add(tg_relu(a), tg_log(tg_add_scalar(tg_exp(tg_neg(tg_abs(a))), 1.0)));
}

/* in[0] = a [NA], in[1] = w [NA] (weights, also checked). */
static tg_tensor *softplus_sum(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_sum(tg_mul(in[1], softplus_stable(in[0])), TG_ALL, false);
}

/* The same value with a hand-supplied derivative (the mistake of case 4). */
static tg_tensor *softplus_sum_injected(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *a = in[0];
    tg_tensor *value = tg_detach(softplus_stable(a));
    tg_tensor *slope = tg_detach(tg_sigmoid(a));
    tg_tensor *sp = tg_add(value, tg_mul(slope, tg_sub(a, tg_detach(a))));
    return tg_sum(tg_mul(in[1], sp), TG_ALL, false);
}

/* ---------------- running and reporting ---------------- */

typedef bool (*checker)(tg_fn, void *, int, tg_tensor *const *, const tg_gradcheck_opts *,
                        tg_gradcheck_report *);

static int failures; /* checks whose outcome differs from the expected one */

static void run(const char *what, checker check, const char *check_name, bool fast, bool expect,
                tg_fn f, void *ctx, int n, tg_tensor *const *in, const char *why) {
    tg_gradcheck_opts opts = {.fast = fast}; /* zeros: eps 1e-6, atol 1e-5, rtol 1e-3 */
    tg_gradcheck_report rep;
    bool ok = check(f, ctx, n, in, &opts, &rep);
    bool as_expected = ok == expect;
    printf("%-34s %-16s %-4s %-4s  (expected %s)%s\n", what, check_name, fast ? "fast" : "slow",
           ok ? "pass" : "FAIL", expect ? "pass" : "FAIL", as_expected ? "" : "   <-- UNEXPECTED");
    if (ok) {
        printf("    %s\n", rep.message);
    } else {
        printf("    %s\n", rep.message);
        if (fast)
            printf("    v^T J u: analytic %.10g, numeric %.10g\n", rep.analytic, rep.numeric);
        else
            printf("    worst entry: input %d, element %lld: analytic %.10g, numeric %.10g\n",
                   rep.input, (long long)rep.index, rep.analytic, rep.numeric);
        tg_clear_error(); /* a failed check also sets tg_error() to its message */
    }
    if (why) printf("    why: %s\n", why);
    if (!as_expected) failures++;
}

int main(void) {
    /* Data and parameters (persistent F64 tensors). */
    double xv[ROWS * COLS];
    tg_rng g;
    tg_rng_seed(&g, 7);
    for (int i = 0; i < ROWS * COLS; i++)
        xv[i] = 1.5 * tg_rng_normal(&g) + (i % COLS);
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(ROWS, COLS), xv);
    tg_tensor *mu = tg_tensor_from(TG_F64, TG_SHAPE(COLS), (const double[]){0.2, 0.9, 2.1});
    tg_tensor *log_sigma = tg_tensor_from(TG_F64, TG_SHAPE(COLS), (const double[]){0.1, 0.5, -0.3});
    tg_tensor *a =
        tg_tensor_from(TG_F64, TG_SHAPE(NA), (const double[]){-2.0, -0.7, 0.3, 1.1, 3.0});
    tg_tensor *w = tg_tensor_from(TG_F64, TG_SHAPE(NA), (const double[]){0.5, -1.0, 2.0, 0.3, 1.5});
    tg_tensor *a0 =
        tg_tensor_from(TG_F64, TG_SHAPE(NA), (const double[]){-2.0, -0.7, 0.0, 1.1, 3.0});
    if (!x || !mu || !log_sigma || !a || !w || !a0) {
        fprintf(stderr, "gradcheck: %s\n", tg_error());
        failures++;
        goto done;
    }
    tg_requires_grad(mu, true);
    tg_requires_grad(log_sigma, true);
    tg_requires_grad(a, true);
    tg_requires_grad(w, true);
    tg_requires_grad(a0, true);

    tg_tensor *nll_in[] = {x, mu, log_sigma};
    tg_tensor *sp_in[] = {a, w}, *sp0_in[] = {a0, w};
    bool correct = false, broken = true;

    printf("== must pass ==\n");
    for (int fast = 0; fast <= 1; fast++) {
        run("1. nll", tg_gradcheck, "tg_gradcheck", fast, true, nll, &correct, 3, nll_in, NULL);
        run("1. nll", tg_gradgradcheck, "tg_gradgradcheck", fast, true, nll, &correct, 3, nll_in,
            NULL);
        run("2. softplus", tg_gradcheck, "tg_gradcheck", fast, true, softplus_sum, NULL, 2, sp_in,
            NULL);
        run("2. softplus", tg_gradgradcheck, "tg_gradgradcheck", fast, true, softplus_sum, NULL, 2,
            sp_in, NULL);
    }

    printf("\n== deliberate mistakes: the FAILs below are expected ==\n");
    const char *why3 = "tg_detach(sigma) hides d z / d log_sigma from the tape; the analytic "
                       "gradient of log_sigma keeps only the log-determinant term (ROWS = 6)";
    for (int fast = 0; fast <= 1; fast++)
        run("3. nll, sigma detached", tg_gradcheck, "tg_gradcheck", fast, false, nll, &broken, 3,
            nll_in, why3);
    run("4. softplus, injected derivative", tg_gradcheck, "tg_gradcheck", false, true,
        softplus_sum_injected, NULL, 2, sp_in,
        "value and first derivative are right, so the first-order check cannot see the mistake");
    const char *why4 = "the injected slope is a constant for the tape: second derivative 0 "
                       "instead of w sigmoid(a)(1 - sigmoid(a))";
    for (int fast = 0; fast <= 1; fast++)
        run("4. softplus, injected derivative", tg_gradgradcheck, "tg_gradgradcheck", fast, false,
            softplus_sum_injected, NULL, 2, sp_in, why4);
    run("5. softplus at a kink (a_2 = 0)", tg_gradcheck, "tg_gradcheck", false, false, softplus_sum,
        NULL, 2, sp0_in,
        "relu and abs have derivative 0 at 0, so the tape gives 0; the smooth function has "
        "w_2 / 2 = 1 there");

done:
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(mu);
    tg_tensor_free(log_sigma);
    tg_tensor_free(a);
    tg_tensor_free(w);
    tg_tensor_free(a0);
    tg_tape_free();

    printf("\n%s\n", failures == 0 ? "every check behaved as expected"
                                   : "SOME CHECKS DID NOT BEHAVE AS EXPECTED");
    return failures == 0 ? 0 : 1;
}
