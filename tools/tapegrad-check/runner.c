/* runner.c — one check of tapegrad-check (see runner.h).
 *
 * The expression is evaluated through a tg_fn, so the same function serves the printed
 * results (value, gradient, central differences, Hessian) and the library's verdict
 * (tg_gradcheck, tg_gradgradcheck). For a non-scalar expression the printed gradient is
 * that of the sum of its elements (the vector-Jacobian product with a seed of ones),
 * while the verdict covers the whole Jacobian (or its random projection in fast mode). */
#define _POSIX_C_SOURCE 200809L /* open_memstream */
#include "runner.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "expr.h"

/* What f needs: the parsed expression and where each of its names finds its value. */
typedef struct {
    tgc_expr *e;
    int n;         /* bound inputs, in the order given */
    tg_tensor **x; /* persistent F64 tensors, requires_grad on */
    char (*name)[TGC_NAME_MAX + 1];
    int *input_of;    /* expression name i -> index into x */
    tg_tensor **vals; /* per expression name, filled by f */
    bool f32;
    tgc_diag diag; /* the first failure inside f */
} problem;

static tg_tensor *problem_fn(tg_tensor *const *in, void *ctx) {
    problem *p = ctx;
    int nn = tgc_expr_nnames(p->e);
    for (int i = 0; i < nn; i++) {
        tg_tensor *v = in[p->input_of[i]];
        p->vals[i] = p->f32 ? tg_cast(v, TG_F32) : v;
        if (!p->vals[i]) {
            p->diag.pos = -1;
            snprintf(p->diag.msg, sizeof p->diag.msg, "%s", tg_error() ? tg_error() : "tg_cast");
            return NULL;
        }
    }
    tg_tensor *y = tgc_expr_eval(p->e, p->vals, p->f32 ? TG_F32 : TG_F64, &p->diag);
    if (y && p->f32) y = tg_cast(y, TG_F64);
    return y;
}

/* ---- diagnostics ---- */

/* "where: error: msg", then the text with a caret under byte pos (when pos >= 0). */
static void diag_print(FILE *err, const char *where, const char *what, const char *text,
                       const tgc_diag *d) {
    fprintf(err, "%serror: %s%s\n", where ? where : "tapegrad-check: ", what, d->msg);
    if (!text || d->pos < 0) return;
    fprintf(err, "  %s\n  ", text);
    int len = (int)strlen(text);
    for (int i = 0; i < d->pos && i < len; i++)
        fputc(text[i] == '\t' ? '\t' : ' ', err);
    fputs("^\n", err);
}

/* ---- numbers and arrays ---- */

static void print_array(FILE *out, const double *v, int ndim, const int64_t *shape) {
    if (ndim == 0) {
        fprintf(out, "%.12g", v[0]);
        return;
    }
    int64_t inner = 1;
    for (int i = 1; i < ndim; i++)
        inner *= shape[i];
    fputc('[', out);
    for (int64_t i = 0; i < shape[0]; i++) {
        if (i) fputs(", ", out);
        print_array(out, v + i * inner, ndim - 1, shape + 1);
    }
    fputc(']', out);
}

static cJSON *json_array(const double *v, int ndim, const int64_t *shape) {
    if (ndim == 0) return cJSON_CreateNumber(v[0]);
    int64_t inner = 1;
    for (int i = 1; i < ndim; i++)
        inner *= shape[i];
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; a && i < shape[0]; i++)
        cJSON_AddItemToArray(a, json_array(v + i * inner, ndim - 1, shape + 1));
    return a;
}

static cJSON *json_shape(int ndim, const int64_t *shape) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < ndim; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)shape[i]));
    return a;
}

static double max_abs_diff(const double *a, const double *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(a[i] - b[i]);
        if (isnan(e)) e = INFINITY;
        if (e > m) m = e;
    }
    return m;
}

/* ---- the computations ---- */

/* Everything one check computes, laid out over the inputs end to end (ncols values). */
typedef struct {
    int64_t ncols, *off; /* off[k]: first column of input k */
    int ndim;            /* the expression's shape */
    int64_t shape[TG_MAX_DIMS], nout;
    double *value;       /* nout */
    double *grad, *num;  /* ncols: d sum(y) / dx, analytic and central differences */
    double *hess, *hnum; /* ncols * ncols, or NULL */
    tg_gradcheck_report rep, hrep;
    char *tape; /* the Wengert list, for JSON */
} results;

/* Gradient of sum(y) into row (ncols); zeros when y depends on no input. */
static int grad_row(problem *p, results *r, tg_tensor *y, unsigned flags, tg_tensor **gs,
                    double *row) {
    if (!y->requires_grad) {
        memset(row, 0, (size_t)r->ncols * sizeof *row);
        for (int k = 0; k < p->n; k++)
            gs[k] = NULL;
        return 0;
    }
    if (tg_grad(1, &y, NULL, p->n, p->x, gs, flags) != 0) return -1;
    for (int k = 0; k < p->n; k++)
        for (int64_t j = 0; j < p->x[k]->numel; j++)
            row[r->off[k] + j] = tg_tensor_get(gs[k], j);
    return 0;
}

static double sum_of(const tg_tensor *y) {
    double s = 0.0;
    for (int64_t i = 0; i < y->numel; i++)
        s += tg_tensor_get(y, i);
    return s;
}

/* Sets input column c to its saved value plus delta (0: restores it). */
static void nudge(problem *p, const results *r, int64_t c, double saved, double delta) {
    int k = 0;
    while (k + 1 < p->n && c >= r->off[k + 1])
        k++;
    ((double *)p->x[k]->data)[c - r->off[k]] = saved + delta;
}

static double column_value(problem *p, const results *r, int64_t c) {
    int k = 0;
    while (k + 1 < p->n && c >= r->off[k + 1])
        k++;
    return ((double *)p->x[k]->data)[c - r->off[k]];
}

/* Central differences of sum(y), column by column. */
static int numeric_gradient(problem *p, results *r, double eps) {
    size_t mark = tg_tape_mark();
    for (int64_t c = 0; c < r->ncols; c++) {
        double saved = column_value(p, r, c), f[2];
        for (int s = 0; s < 2; s++) {
            nudge(p, r, c, saved, s == 0 ? eps : -eps);
            tg_tensor *y = problem_fn(p->x, p);
            f[s] = y ? sum_of(y) : NAN;
            tg_tape_rewind(mark);
            if (!y) {
                nudge(p, r, c, saved, 0.0);
                return -1;
            }
        }
        nudge(p, r, c, saved, 0.0);
        r->num[c] = (f[0] - f[1]) / (2.0 * eps);
    }
    return 0;
}

/* The Hessian of a one-element y: analytic rows by differentiating each gradient entry
 * again (gradients built with TG_CREATE_GRAPH), numeric columns by central differences
 * of the analytic gradient. */
static int hessian(problem *p, results *r, tg_tensor *y, double eps, tg_tensor **gs,
                   tg_tensor **hs) {
    int64_t nc = r->ncols;
    double *tmp = malloc((size_t)(nc ? nc : 1) * sizeof *tmp);
    if (!tmp) return -1;
    size_t mark = tg_tape_mark();
    int rc = grad_row(p, r, y, TG_CREATE_GRAPH, gs, tmp);
    for (int k = 0; k < p->n && rc == 0; k++) {
        tg_tensor *flat = gs[k] ? tg_reshape(gs[k], 1, (int64_t[]){gs[k]->numel}) : NULL;
        if (gs[k] && !flat) rc = -1;
        for (int64_t j = 0; j < p->x[k]->numel && rc == 0; j++) {
            double *row = r->hess + (r->off[k] + j) * nc;
            size_t m2 = tg_tape_mark();
            tg_tensor *s = flat ? tg_slice(flat, 0, j, j + 1) : NULL;
            if (flat && !s)
                rc = -1;
            else if (!s || !s->requires_grad)
                memset(row, 0, (size_t)nc * sizeof *row);
            else
                rc = grad_row(p, r, s, 0, hs, row);
            tg_tape_rewind(m2);
        }
    }
    tg_tape_rewind(mark);
    for (int64_t c = 0; c < nc && rc == 0; c++) {
        double saved = column_value(p, r, c);
        nudge(p, r, c, saved, eps);
        tg_tensor *yp = problem_fn(p->x, p);
        rc = yp ? grad_row(p, r, yp, 0, gs, tmp) : -1;
        for (int64_t i = 0; i < nc && rc == 0; i++)
            r->hnum[i * nc + c] = tmp[i];
        tg_tape_rewind(mark);
        nudge(p, r, c, saved, -eps);
        tg_tensor *ym = rc == 0 ? problem_fn(p->x, p) : NULL;
        rc = ym ? grad_row(p, r, ym, 0, gs, tmp) : -1;
        for (int64_t i = 0; i < nc && rc == 0; i++)
            r->hnum[i * nc + c] = (r->hnum[i * nc + c] - tmp[i]) / (2.0 * eps);
        tg_tape_rewind(mark);
        nudge(p, r, c, saved, 0.0);
    }
    free(tmp);
    return rc;
}

/* ---- output ---- */

static const char *mode_text(const tgc_opts *o) {
    return o->fast ? "fast mode: one random projection v^T J u" : "slow mode: every Jacobian entry";
}

static void print_text(FILE *out, const char *expr, const problem *p, const results *r,
                       const tgc_opts *o, const tg_gradcheck_opts *go) {
    fprintf(out, "expression  %s\n", expr);
    fprintf(out, "value       ");
    if (r->ndim > 0) {
        fputc('[', out);
        for (int i = 0; i < r->ndim; i++)
            fprintf(out, "%s%lld", i ? "," : "", (long long)r->shape[i]);
        fputs("] ", out);
    }
    print_array(out, r->value, r->ndim, r->shape);
    fputc('\n', out);
    if (r->tape) fprintf(out, "tape (forward pass):\n%s", r->tape);
    if (r->nout != 1)
        fprintf(out,
                "gradient of the sum of the %lld elements, and central differences "
                "(eps %g):\n",
                (long long)r->nout, go->eps);
    else
        fprintf(out, "gradient, and central differences (eps %g):\n", go->eps);
    for (int k = 0; k < p->n; k++) {
        const tg_tensor *x = p->x[k];
        const double *g = r->grad + r->off[k], *nm = r->num + r->off[k];
        double err = max_abs_diff(g, nm, x->numel);
        if (x->ndim == 0) {
            fprintf(out, "  d/d%-8s %-22.12g numeric %-22.12g |diff| %.2g\n", p->name[k], g[0],
                    nm[0], err);
            continue;
        }
        char buf[128];
        fprintf(out, "  d/d%s %s\n    analytic ", p->name[k], tg_shape_str(x, buf, sizeof buf));
        print_array(out, g, x->ndim, x->shape);
        fputs("\n    numeric  ", out);
        print_array(out, nm, x->ndim, x->shape);
        fprintf(out, "\n    |diff|   %.2g (largest)\n", err);
    }
    fprintf(out, "largest error %.3g\n", max_abs_diff(r->grad, r->num, r->ncols));
    if (r->rep.ok)
        fprintf(out,
                "gradcheck: passed, max |analytic - numeric| %.3g (%s, eps %g, atol %g, rtol "
                "%g, %s)\n",
                r->rep.max_abs_err, o->f32 ? "f32" : "f64", go->eps, go->atol, go->rtol,
                mode_text(o));
    else
        fprintf(out, "gradcheck: FAILED: %s\n", r->rep.message);
    if (!r->hess) return;
    int64_t shape[2] = {r->ncols, r->ncols};
    fprintf(out, "hessian (rows and columns:");
    for (int k = 0; k < p->n; k++)
        fprintf(out, "%s %s", k ? "," : "", p->name[k]);
    fprintf(out, "%s)\n  analytic ", r->ncols > p->n ? ", each flattened" : "");
    print_array(out, r->hess, 2, shape);
    fputs("\n  numeric  ", out);
    print_array(out, r->hnum, 2, shape);
    fprintf(out, "\n  largest error %.3g\n", max_abs_diff(r->hess, r->hnum, r->ncols * r->ncols));
    if (r->hrep.ok)
        fprintf(out, "gradgradcheck: passed, max |analytic - numeric| %.3g\n", r->hrep.max_abs_err);
    else
        fprintf(out, "gradgradcheck: FAILED: %s\n", r->hrep.message);
}

static void print_json(FILE *out, const char *expr, const problem *p, const results *r,
                       const tgc_opts *o, const tg_gradcheck_opts *go) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "expr", expr);
    cJSON_AddStringToObject(j, "dtype", o->f32 ? "f32" : "f64");
    cJSON_AddItemToObject(j, "shape", json_shape(r->ndim, r->shape));
    cJSON_AddItemToObject(j, "value", json_array(r->value, r->ndim, r->shape));
    cJSON *g = cJSON_AddObjectToObject(j, "gradient");
    cJSON *nm = cJSON_AddObjectToObject(j, "numeric");
    for (int k = 0; k < p->n; k++) {
        const tg_tensor *x = p->x[k];
        cJSON_AddItemToObject(g, p->name[k], json_array(r->grad + r->off[k], x->ndim, x->shape));
        cJSON_AddItemToObject(nm, p->name[k], json_array(r->num + r->off[k], x->ndim, x->shape));
    }
    cJSON_AddNumberToObject(j, "gradient_max_abs_err", max_abs_diff(r->grad, r->num, r->ncols));
    cJSON_AddNumberToObject(j, "max_abs_err", r->rep.max_abs_err);
    cJSON_AddBoolToObject(j, "ok", r->rep.ok && (!r->hess || r->hrep.ok));
    cJSON *c = cJSON_AddObjectToObject(j, "gradcheck");
    cJSON_AddBoolToObject(c, "ok", r->rep.ok);
    cJSON_AddStringToObject(c, "mode", o->fast ? "fast" : "slow");
    cJSON_AddNumberToObject(c, "eps", go->eps);
    cJSON_AddNumberToObject(c, "atol", go->atol);
    cJSON_AddNumberToObject(c, "rtol", go->rtol);
    cJSON_AddNumberToObject(c, "max_abs_err", r->rep.max_abs_err);
    cJSON_AddStringToObject(c, "message", r->rep.message);
    if (r->hess) {
        int64_t shape[2] = {r->ncols, r->ncols};
        cJSON *h = cJSON_AddObjectToObject(j, "hessian");
        cJSON_AddItemToObject(h, "analytic", json_array(r->hess, 2, shape));
        cJSON_AddItemToObject(h, "numeric", json_array(r->hnum, 2, shape));
        cJSON_AddNumberToObject(h, "max_abs_err",
                                max_abs_diff(r->hess, r->hnum, r->ncols * r->ncols));
        cJSON_AddBoolToObject(h, "ok", r->hrep.ok);
        cJSON_AddStringToObject(h, "message", r->hrep.message);
    }
    if (r->tape) cJSON_AddStringToObject(j, "tape", r->tape);
    char *s = cJSON_PrintUnformatted(j);
    if (s) fprintf(out, "%s\n", s);
    cJSON_free(s);
    cJSON_Delete(j);
}

/* An error as one JSON object, so that a --json stream has one object per check. */
static void print_json_error(FILE *out, const char *expr, const char *msg) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "expr", expr ? expr : "");
    cJSON_AddBoolToObject(j, "ok", false);
    cJSON_AddStringToObject(j, "error", msg);
    char *s = cJSON_PrintUnformatted(j);
    if (s) fprintf(out, "%s\n", s);
    cJSON_free(s);
    cJSON_Delete(j);
}

/* ---- one check ---- */

/* The steps that can fail with TGC_ERROR report through here. */
static tgc_status error(FILE *out, FILE *err, const char *where, const tgc_opts *o,
                        const char *expr, const char *what, const char *text, const tgc_diag *d) {
    diag_print(err, where, what, text, d);
    if (o->json) print_json_error(out, expr, d->msg);
    return TGC_ERROR;
}

static int bind(problem *p, int nb, const char *const *bindings, int *bad, tgc_diag *d) {
    p->x = calloc((size_t)(nb ? nb : 1), sizeof *p->x);
    p->name = calloc((size_t)(nb ? nb : 1), sizeof *p->name);
    if (!p->x || !p->name) {
        d->pos = -1;
        snprintf(d->msg, sizeof d->msg, "out of memory");
        return -1;
    }
    for (int i = 0; i < nb; i++) {
        *bad = i;
        if (tgc_binding_parse(bindings[i], p->name[i], &p->x[i], d) != 0) return -1;
        p->n = i + 1;
        for (int k = 0; k < i; k++)
            if (strcmp(p->name[k], p->name[i]) == 0) {
                d->pos = 0;
                snprintf(d->msg, sizeof d->msg, "%s is given twice", p->name[i]);
                return -1;
            }
        tg_requires_grad(p->x[i], true);
        tg_tensor_set_name(p->x[i], p->name[i]);
    }
    return 0;
}

static void problem_free(problem *p) {
    for (int i = 0; i < p->n; i++)
        tg_tensor_free(p->x[i]);
    free(p->x);
    free(p->name);
    free(p->input_of);
    free(p->vals);
    tgc_expr_free(p->e);
}

static void results_free(results *r) {
    free(r->off);
    free(r->value);
    free(r->grad);
    free(r->num);
    free(r->hess);
    free(r->hnum);
    free(r->tape);
}

/* Keeps the forward pass's tape (for --tape) and writes its graph (for --dot). */
static int keep_tape(const tgc_opts *o, results *r, tgc_diag *d) {
    if (o->tape) {
        size_t len = 0;
        FILE *mem = open_memstream(&r->tape, &len);
        if (!mem) {
            snprintf(d->msg, sizeof d->msg, "out of memory");
            return -1;
        }
        tg_tape_print(mem);
        fclose(mem);
    }
    if (!o->dot_path) return 0;
    FILE *f = fopen(o->dot_path, "w");
    int rc = f ? tg_tape_dot(f) : -1;
    if (f && fclose(f) != 0) rc = -1;
    if (rc != 0) snprintf(d->msg, sizeof d->msg, "cannot write the graph to %s", o->dot_path);
    return rc;
}

tgc_status tgc_check(const char *expr, int nb, const char *const *bindings, const tgc_opts *o,
                     FILE *out, FILE *err, const char *where) {
    tgc_diag d = {.pos = -1};
    problem p = {.f32 = o->f32};
    results r = {0};
    tgc_status st = TGC_ERROR;
    tg_gradcheck_opts go = {
        .eps = o->eps > 0 ? o->eps
               : o->f32   ? 1e-3
                          : 1e-6,
        .atol = o->atol > 0 ? o->atol
                : o->f32    ? 1e-3
                            : 1e-5,
        .rtol = o->rtol > 0 ? o->rtol
                : o->f32    ? 1e-2
                            : 1e-3,
        .fast = o->fast,
    };
    tg_tensor **gs = NULL, **hs = NULL;

    p.e = tgc_expr_parse(expr, &d);
    if (!p.e) return error(out, err, where, o, expr, "", expr, &d);
    tg_seed(o->seed);
    int badb = 0;
    if (bind(&p, nb, bindings, &badb, &d) != 0) {
        st = error(out, err, where, o, expr, "", bindings[badb], &d);
        goto done;
    }
    int nn = tgc_expr_nnames(p.e);
    if (nn == 0) {
        d.pos = 0;
        snprintf(d.msg, sizeof d.msg, "the expression has no names to differentiate");
        st = error(out, err, where, o, expr, "", expr, &d);
        goto done;
    }
    p.input_of = calloc((size_t)nn, sizeof *p.input_of);
    p.vals = calloc((size_t)nn, sizeof *p.vals);
    gs = calloc((size_t)(p.n ? p.n : 1), sizeof *gs);
    hs = calloc((size_t)(p.n ? p.n : 1), sizeof *hs);
    r.off = calloc((size_t)p.n + 1, sizeof *r.off);
    if (!p.input_of || !p.vals || !gs || !hs || !r.off) {
        snprintf(d.msg, sizeof d.msg, "out of memory");
        st = error(out, err, where, o, expr, "", NULL, &d);
        goto done;
    }
    for (int i = 0; i < nn; i++) {
        p.input_of[i] = -1;
        for (int k = 0; k < p.n; k++)
            if (strcmp(p.name[k], tgc_expr_name(p.e, i)) == 0) p.input_of[i] = k;
        if (p.input_of[i] < 0) {
            d.pos = tgc_expr_name_pos(p.e, i);
            snprintf(d.msg, sizeof d.msg, "no value for %s: give it as %s=VALUE or %s:SHAPE",
                     tgc_expr_name(p.e, i), tgc_expr_name(p.e, i), tgc_expr_name(p.e, i));
            st = error(out, err, where, o, expr, "", expr, &d);
            goto done;
        }
    }
    for (int k = 0; k < p.n; k++) {
        bool used = false;
        for (int i = 0; i < nn; i++)
            used = used || p.input_of[i] == k;
        if (!used)
            fprintf(err, "%swarning: %s is not used in the expression (its gradient is 0)\n",
                    where ? where : "", p.name[k]);
        r.off[k + 1] = r.off[k] + p.x[k]->numel;
    }
    r.ncols = r.off[p.n];

    /* The forward pass, its tape and its gradient. */
    tg_tensor *y = problem_fn(p.x, &p);
    if (!y) {
        st = error(out, err, where, o, expr, "", expr, &p.diag);
        goto done;
    }
    r.ndim = y->ndim;
    memcpy(r.shape, y->shape, sizeof r.shape);
    r.nout = y->numel;
    r.value = malloc((size_t)(r.nout ? r.nout : 1) * sizeof *r.value);
    r.grad = malloc((size_t)(r.ncols ? r.ncols : 1) * sizeof *r.grad);
    r.num = malloc((size_t)(r.ncols ? r.ncols : 1) * sizeof *r.num);
    if (o->hessian) {
        if (r.nout != 1) {
            d.pos = -1;
            snprintf(d.msg, sizeof d.msg,
                     "--hessian needs an expression with one element; this one has %lld",
                     (long long)r.nout);
            st = error(out, err, where, o, expr, "", NULL, &d);
            goto done;
        }
        size_t cells = (size_t)(r.ncols > 0 ? r.ncols * r.ncols : 1);
        r.hess = malloc(cells * sizeof *r.hess);
        r.hnum = malloc(cells * sizeof *r.hnum);
    }
    if (!r.value || !r.grad || !r.num || (o->hessian && (!r.hess || !r.hnum))) {
        snprintf(d.msg, sizeof d.msg, "out of memory");
        st = error(out, err, where, o, expr, "", NULL, &d);
        goto done;
    }
    for (int64_t i = 0; i < r.nout; i++)
        r.value[i] = tg_tensor_get(y, i);
    if (keep_tape(o, &r, &d) != 0 || grad_row(&p, &r, y, 0, gs, r.grad) != 0) {
        if (!d.msg[0]) snprintf(d.msg, sizeof d.msg, "%s", tg_error() ? tg_error() : "backward");
        st = error(out, err, where, o, expr, "", NULL, &d);
        goto done;
    }
    if (numeric_gradient(&p, &r, go.eps) != 0 ||
        (o->hessian && hessian(&p, &r, y, go.eps, gs, hs) != 0)) {
        if (p.diag.msg[0])
            d = p.diag;
        else
            snprintf(d.msg, sizeof d.msg, "%s", tg_error() ? tg_error() : "backward");
        st = error(out, err, where, o, expr, "", NULL, &d);
        goto done;
    }

    /* The verdicts. */
    tg_gradcheck(problem_fn, &p, p.n, p.x, &go, &r.rep);
    if (o->hessian) tg_gradgradcheck(problem_fn, &p, p.n, p.x, &go, &r.hrep);
    st = r.rep.ok && (!o->hessian || r.hrep.ok) ? TGC_PASS : TGC_FAIL;
    if (o->json)
        print_json(out, expr, &p, &r, o, &go);
    else
        print_text(out, expr, &p, &r, o, &go);

done:
    tg_tape_reset();
    tg_clear_error();
    free(gs);
    free(hs);
    results_free(&r);
    problem_free(&p);
    return st;
}
