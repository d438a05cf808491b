/* fuzz_check_expr.c — libFuzzer target for the expressions and values of tapegrad-check.
 *
 * Each input is one line of a check file, "EXPR ; NAME=VALUE ...". Without bindings the
 * names x, y (scalars), v [3] and A [2, 3] are bound. The expression is parsed and, if
 * it parses and its names are bound, evaluated and differentiated; when the inputs and
 * the result are small, the whole check also runs (gradient, central differences,
 * tg_gradcheck, Hessian and tg_gradgradcheck, text or JSON to /dev/null). Any outcome
 * is fine; a crash, a leak or undefined behaviour is a finding. The contract is checked
 * too: a failed parse or evaluation has a message and a position inside the text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "expr.h"
#include "runner.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_BINDINGS = 16, SMALL = 16 };

static const char *const defaults[] = {"x=0.7", "y=-1.3", "v=[0.5, -2, 3]",
                                       "A=[[1, 2, 3], [4, -5, 6]]"};

static void check_diag(const tgc_diag *d, size_t len) {
    if (d->msg[0] == '\0' || d->pos < -1 || (d->pos >= 0 && (size_t)d->pos > len)) abort();
}

/* Parses, binds, evaluates and differentiates; returns the number of input elements
 * and of result elements (0 when something failed). */
static int64_t evaluate(const char *expr, int nb, char **b, int64_t *nout) {
    tgc_diag d;
    *nout = 0;
    tgc_expr *e = tgc_expr_parse(expr, &d);
    if (!e) {
        check_diag(&d, strlen(expr));
        return 0;
    }
    tg_tensor *x[MAX_BINDINGS] = {NULL}, *vals[256] = {NULL};
    char names[MAX_BINDINGS][TGC_NAME_MAX + 1];
    int64_t total = 0;
    bool ok = true;
    for (int i = 0; i < nb && ok; i++) {
        if (tgc_binding_parse(b[i], names[i], &x[i], &d) != 0) {
            check_diag(&d, strlen(b[i]));
            ok = false;
        } else {
            tg_requires_grad(x[i], true);
            total += x[i]->numel;
        }
    }
    for (int i = 0; ok && i < tgc_expr_nnames(e); i++) {
        for (int k = 0; k < nb; k++)
            if (strcmp(names[k], tgc_expr_name(e, i)) == 0) vals[i] = x[k];
        ok = vals[i] != NULL;
    }
    if (ok) {
        tg_tensor *y = tgc_expr_eval(e, vals, TG_F64, &d);
        if (!y) {
            check_diag(&d, strlen(expr));
            ok = false;
        } else {
            *nout = y->numel;
            tg_tensor *g[MAX_BINDINGS];
            if (y->requires_grad && tg_grad(1, &y, NULL, nb, x, g, TG_CREATE_GRAPH) != 0)
                ok = false;
        }
    }
    tg_tape_reset();
    tg_clear_error();
    for (int i = 0; i < nb; i++)
        tg_tensor_free(x[i]);
    tgc_expr_free(e);
    return ok ? total : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *null;
    if (!null && !(null = fopen("/dev/null", "w"))) abort();
    char *line = malloc(size + 1);
    if (!line) return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    char *expr, *b[MAX_BINDINGS];
    int nb = tgc_line_split(line, &expr, b, MAX_BINDINGS);
    if (nb == 0) {
        for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++)
            b[nb++] = (char *)defaults[i];
    }
    int64_t nout = 0;
    int64_t total = nb > 0 ? evaluate(expr, nb, b, &nout) : 0;
    if (total > 0 && total <= SMALL && nout <= SMALL) {
        tgc_opts o = {.hessian = nout == 1, .json = size % 2 == 1, .tape = size % 3 == 0};
        tgc_status s =
            tgc_check(expr, nb, (const char *const *)b, &o, null, null, size % 5 ? NULL : "f:1: ");
        if (s != TGC_PASS && s != TGC_FAIL && s != TGC_ERROR) abort();
    }
    free(line);
    return 0;
}
