/*
 * scalar.c — reverse mode on the textbook example
 *
 *     y = f(x1, x2) = sin(x1) + x1 * x2      at x1 = 2, x2 = 5
 *
 * The forward pass writes the Wengert list (one node per primitive op):
 *
 *     v2 = sin(x1)
 *     v3 = x1 * x2
 *     v4 = v2 + v3 = y
 *
 * and the adjoint sweep walks it backwards from v4bar = dy/dv4 = 1:
 *
 *     v3bar = v4bar                    (v4 = v2 + v3)
 *     v2bar = v4bar
 *     x2bar = v3bar * x1               (v3 = x1 * x2)
 *     x1bar = v3bar * x2 + v2bar * cos(x1)
 *
 * so dy/dx1 = cos(x1) + x2 and dy/dx2 = x1. The program prints the list, the
 * adjoints (each tensor's ->grad after tg_backward), compares the gradient with that
 * closed form, runs tg_gradcheck against central differences, and writes the graph in
 * Graphviz DOT to scalar.dot (or argv[1]); render it with `dot -Tpng scalar.dot`.
 *
 * Exit status 0 when every check passes, 1 otherwise.
 */
#include <math.h>
#include <stdio.h>

#include <tapegrad.h>

/* The function under test, in the form tg_gradcheck wants. */
static tg_tensor *f(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *v2 = tg_sin(in[0]);
    tg_tensor *v3 = tg_mul(in[0], in[1]);
    return tg_add(v2, v3);
}

static int check(const char *what, double got, double want, double tol) {
    double diff = fabs(got - want);
    int ok = diff <= tol;
    printf("  %-8s tape %-20.17g closed form %-20.17g |diff| %.3g  %s\n", what, got, want, diff,
           ok ? "ok" : "FAIL");
    return ok;
}

int main(int argc, char **argv) {
    const char *dot_path = argc > 1 ? argv[1] : "scalar.dot";
    const double a = 2.0, b = 5.0;
    int ok = 1;

    tg_tensor *x1 = tg_scalar(TG_F64, a);
    tg_tensor *x2 = tg_scalar(TG_F64, b);
    tg_tensor_set_name(x1, "x1");
    tg_tensor_set_name(x2, "x2");
    tg_requires_grad(x1, true);
    tg_requires_grad(x2, true);

    /* Forward: one statement per primitive, so the nodes appear in this order. */
    tg_tensor *v2 = tg_sin(x1);
    tg_tensor *v3 = tg_mul(x1, x2);
    tg_tensor *v4 = tg_add(v2, v3);
    if (!v4) {
        fprintf(stderr, "scalar: forward failed: %s\n", tg_error());
        tg_tensor_free(x1);
        tg_tensor_free(x2);
        tg_tape_free();
        return 1;
    }
    tg_tensor_set_name(v2, "v2");
    tg_tensor_set_name(v3, "v3");
    tg_tensor_set_name(v4, "v4");

    printf("y = sin(x1) + x1*x2 at x1 = %g, x2 = %g\n", a, b);
    printf("y = %.17g   (closed form %.17g)\n\n", tg_item(v4), sin(a) + a * b);
    ok &= fabs(tg_item(v4) - (sin(a) + a * b)) <= 1e-12;

    printf("Wengert list (forward pass, %zu nodes):\n", tg_tape_size());
    tg_tape_print(stdout);

    FILE *dot = fopen(dot_path, "w");
    if (!dot || tg_tape_dot(dot) != 0) {
        fprintf(stderr, "scalar: cannot write %s: %s\n", dot_path,
                tg_error() ? tg_error() : "fopen failed");
        ok = 0;
    }
    if (dot && fclose(dot) != 0) ok = 0;
    printf("\ngraph written to %s\n", dot_path);

    /* Reverse: one sweep fills ->grad of every tensor on the path. */
    if (tg_backward(v4) != 0) {
        fprintf(stderr, "scalar: backward failed: %s\n", tg_error());
        tg_tape_reset();
        tg_tensor_free(x1);
        tg_tensor_free(x2);
        tg_tape_free();
        return 1;
    }
    printf("\nadjoint sweep (reverse order):\n");
    printf("  v4bar = 1                               = %.17g\n", tg_item(v4->grad));
    printf("  v3bar = v4bar                           = %.17g\n", tg_item(v3->grad));
    printf("  v2bar = v4bar                           = %.17g\n", tg_item(v2->grad));
    printf("  x2bar = v3bar * x1                      = %.17g\n", tg_item(x2->grad));
    printf("  x1bar = v3bar * x2 + v2bar * cos(x1)    = %.17g\n", tg_item(x1->grad));
    ok &= tg_item(v4->grad) == 1.0 && tg_item(v3->grad) == 1.0 && tg_item(v2->grad) == 1.0;

    printf("\ngradient vs closed form:\n");
    ok &= check("dy/dx1", tg_item(x1->grad), cos(a) + b, 1e-12);
    ok &= check("dy/dx2", tg_item(x2->grad), a, 1e-12);
    tg_tape_reset(); /* v2, v3, v4 and their gradients are gone; x1->grad stays */

    tg_gradcheck_report rep;
    bool gc = tg_gradcheck(f, NULL, 2, (tg_tensor *[]){x1, x2}, NULL, &rep);
    printf("\ntg_gradcheck (central differences): %s, max abs err %.3g%s%s\n", gc ? "pass" : "FAIL",
           rep.max_abs_err, gc ? "" : ": ", gc ? "" : rep.message);
    ok &= gc;

    tg_tape_reset();
    tg_tensor_free(x1); /* also frees x1->grad */
    tg_tensor_free(x2);
    tg_tape_free();

    printf("\n%s\n", ok ? "all checks passed" : "SOME CHECKS FAILED");
    return ok ? 0 : 1;
}
