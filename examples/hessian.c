/*
 * hessian.c — second derivatives by differentiating the backward pass.
 *
 *     f(x) = sum_i sin(x_i) x_i^2  +  (sum_i x_i)^2          x in R^5
 *
 * With TG_CREATE_GRAPH, tg_grad records its own sweep on the tape, so the gradient
 * g(x) = grad f(x) is itself a tensor with history. Differentiating  g . v  (or,
 * equivalently, calling tg_grad on g with seed v) gives the Hessian-vector product
 *
 *     H v = d/dx (grad f(x) . v)
 *
 * at the cost of about two more backward passes, without ever forming H. The program
 * compares H v with central differences of the gradient,
 *
 *     H v  ~  (g(x + h v) - g(x - h v)) / (2 h),
 *
 * and with the closed form  H = diag(2 sin x + 4 x cos x - x^2 sin x) + 2 * ones, then
 * builds the whole Hessian one column at a time from the same recorded gradient.
 *
 * Exit status 0 when everything agrees, 1 otherwise.
 */
#include <math.h>
#include <stdio.h>

#include <tapegrad.h>

enum { N = 5 };

/* f(x) = sum(sin(x) * x^2) + (sum x)^2, built with ops. */
static tg_tensor *f(tg_tensor *x) {
    tg_tensor *s = tg_sum(tg_mul(tg_sin(x), tg_square(x)), TG_ALL, false);
    tg_tensor *t = tg_sum(x, TG_ALL, false);
    return tg_add(s, tg_square(t));
}

/* The gradient of f at xv, into out, by a plain (first-order) tg_grad. */
static int grad_at(const double *xv, double *out) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(N), xv);
    tg_requires_grad(x, true);
    size_t mark = tg_tape_mark();
    tg_tensor *y = f(x), *g = NULL;
    int rc = tg_grad(1, &y, NULL, 1, &x, &g, 0);
    for (int i = 0; rc == 0 && i < N; i++)
        out[i] = tg_tensor_get(g, i);
    tg_tape_rewind(mark);
    tg_tensor_free(x);
    return rc;
}

int main(void) {
    const double xv[N] = {0.3, -1.1, 2.0, 0.7, -0.4};
    const double vv[N] = {1.0, -0.5, 0.25, 2.0, -1.5};
    int ok = 1;

    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(N), xv);
    tg_tensor *v = tg_tensor_from(TG_F64, TG_SHAPE(N), vv);
    tg_requires_grad(x, true);

    /* g = grad f, recorded so that it can be differentiated again. */
    tg_tensor *y = f(x), *g = NULL, *hv = NULL;
    if (tg_grad(1, &y, NULL, 1, &x, &g, TG_CREATE_GRAPH) != 0 ||
        tg_grad(1, &g, &v, 1, &x, &hv, 0) != 0) {
        fprintf(stderr, "hessian: %s\n", tg_error());
        tg_tape_reset();
        tg_tensor_free(x);
        tg_tensor_free(v);
        tg_tape_free();
        return 1;
    }
    printf("f(x) = sum(sin(x) * x^2) + (sum x)^2 = %.15g\n", tg_item(y));
    printf("tape: %zu nodes after recording f, grad f and H v\n\n", tg_tape_size());

    /* Central differences of the gradient along v. */
    const double h = 1e-5;
    double xp[N], xm[N], gp[N], gm[N];
    for (int i = 0; i < N; i++)
        xp[i] = xv[i] + h * vv[i], xm[i] = xv[i] - h * vv[i];
    if (grad_at(xp, gp) != 0 || grad_at(xm, gm) != 0) {
        fprintf(stderr, "hessian: %s\n", tg_error());
        ok = 0;
    }

    double sum_v = 0;
    for (int i = 0; i < N; i++)
        sum_v += vv[i];
    double max_fd = 0, max_cf = 0;
    printf(" i   H v (tape, TG_CREATE_GRAPH)   finite differences      closed form\n");
    for (int i = 0; i < N; i++) {
        double t = tg_tensor_get(hv, i);
        double fd = (gp[i] - gm[i]) / (2 * h);
        double d = 2 * sin(xv[i]) + 4 * xv[i] * cos(xv[i]) - xv[i] * xv[i] * sin(xv[i]);
        double cf = d * vv[i] + 2 * sum_v;
        printf("%2d   %24.15f   %20.12f   %20.15f\n", i, t, fd, cf);
        if (fabs(t - fd) > max_fd) max_fd = fabs(t - fd);
        if (fabs(t - cf) > max_cf) max_cf = fabs(t - cf);
    }
    /* Finite differences of a gradient are good to about h^2 and eps/h: ~1e-9 here. */
    printf("\nmax |tape - finite differences| = %.3g (tolerance 1e-6)\n", max_fd);
    printf("max |tape - closed form|        = %.3g (tolerance 1e-12)\n", max_cf);
    ok &= max_fd <= 1e-6 && max_cf <= 1e-12;

    /* The whole Hessian: one seeded sweep over the same recorded gradient per column. */
    printf("\nHessian, column j = tg_grad(g, seed e_j):\n");
    double hess[N][N], max_asym = 0, max_col = 0;
    tg_tensor *e = tg_tensor_new(TG_F64, TG_SHAPE(N));
    for (int j = 0; j < N; j++) {
        tg_tensor *col = NULL;
        tg_tensor_fill(e, 0);
        tg_tensor_set(e, j, 1);
        size_t mark = tg_tape_mark();
        if (tg_grad(1, &g, &e, 1, &x, &col, 0) != 0) {
            fprintf(stderr, "hessian: %s\n", tg_error());
            ok = 0;
            break;
        }
        for (int i = 0; i < N; i++)
            hess[i][j] = tg_tensor_get(col, i);
        tg_tape_rewind(mark); /* drop this column's sweep, keep g's graph */
    }
    for (int i = 0; i < N && ok; i++) {
        double d = 2 * sin(xv[i]) + 4 * xv[i] * cos(xv[i]) - xv[i] * xv[i] * sin(xv[i]);
        for (int j = 0; j < N; j++) {
            printf(" %10.6f", hess[i][j]);
            double want = 2 + (i == j ? d : 0);
            if (fabs(hess[i][j] - want) > max_col) max_col = fabs(hess[i][j] - want);
            if (fabs(hess[i][j] - hess[j][i]) > max_asym) max_asym = fabs(hess[i][j] - hess[j][i]);
        }
        printf("\n");
    }
    printf("max |H - closed form| = %.3g, max |H - H^T| = %.3g\n", max_col, max_asym);
    ok &= max_col <= 1e-12 && max_asym <= 1e-12;

    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(v);
    tg_tensor_free(e);
    tg_tape_free();
    printf("\n%s\n", ok ? "all checks passed" : "SOME CHECKS FAILED");
    return ok ? 0 : 1;
}
