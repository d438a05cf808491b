/* gradcheck.c — tg_gradcheck and tg_gradgradcheck: the tape's gradients against
 * central differences, in F64.
 *
 * Slow mode builds two Jacobians of y = f(inputs), each with one row per element of y
 * and one column per element of every input that requires a gradient:
 *   analytic  row o = tg_grad(y, seed = e_o)            (one backward per output element)
 *   numeric   col c = (f(x + eps e_c) - f(x - eps e_c)) / (2 eps)   (two evaluations)
 * and compares them entry by entry. Fast mode compares one scalar, v^T J u, for a fixed
 * pseudo-random input direction u and output weights v. Both modes also run every
 * backward twice (the results must be bitwise identical) and once with a zero seed
 * (the gradients must be exactly zero).
 *
 * tg_gradgradcheck runs the same check once per input x_j that requires a gradient, on
 * the map (inputs, v) -> J_j^T v = tg_grad(f(inputs), seed v, x_j, TG_CREATE_GRAPH),
 * with v a persistent pseudo-random seed of f's output shape that is itself an input.
 * Checking each gradient block as its own function gives the full second-derivative
 * Jacobian without having to concatenate the blocks.
 *
 * Everything made on the tape is released with tg_tape_rewind before returning, grad
 * mode is restored, and every perturbed input element gets its saved value back. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "tapegrad/gradcheck.h"
#include "tapegrad/ops.h"

/* A deterministic draw in [-1, 1) from a generator local to each check (random.h). */
static double rng_uniform(tg_rng *r) { return tg_rng_uniform(r) * 2.0 - 1.0; }

/* ---- reports ---- */

static void report_init(tg_gradcheck_report *rep) {
    rep->ok = true;
    rep->input = -1;
    rep->index = -1;
    rep->analytic = rep->numeric = rep->max_abs_err = 0.0;
    rep->message[0] = '\0';
}

/* Fills rep->message, marks the report failed, sets tg_error() to the same text. */
static bool report_fail(tg_gradcheck_report *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool report_fail(tg_gradcheck_report *rep, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->message, sizeof rep->message, fmt, ap);
    va_end(ap);
    rep->ok = false;
    tg__fail("%s", rep->message);
    return false;
}

/* ---- one check ---- */

typedef struct {
    const char *name; /* "tg_gradcheck" or "tg_gradgradcheck", for messages */
    const char *what; /* "" or e.g. " (second derivatives through the gradient of input 1)" */
    tg_fn f;
    void *ctx;
    int n;
    tg_tensor *const *in;
    double eps, atol, rtol;
    bool fast;
} checker;

/* The columns of the Jacobian: the inputs that require a gradient, laid end to end. */
typedef struct {
    int nreq;
    int *req;       /* index in c->in of each checked input */
    tg_tensor **xs; /* the checked inputs */
    int64_t *off;   /* first column of each; off[nreq] = ncols */
    int64_t ncols;
    int ndim; /* f's output shape, from the first evaluation */
    int64_t shape[TG_MAX_DIMS];
    int64_t nout;
} layout;

static bool resolve_opts(const char *name, const tg_gradcheck_opts *opts, checker *c,
                         tg_gradcheck_report *rep) {
    tg_gradcheck_opts o = opts ? *opts : (tg_gradcheck_opts){0};
    c->eps = o.eps == 0.0 ? 1e-6 : o.eps;
    c->atol = o.atol == 0.0 ? 1e-5 : o.atol;
    c->rtol = o.rtol == 0.0 ? 1e-3 : o.rtol;
    c->fast = o.fast;
    if (!(c->eps > 0.0 && isfinite(c->eps)) || !(c->atol >= 0.0) || !(c->rtol >= 0.0))
        return report_fail(rep,
                           "%s: bad options: eps %g must be positive, atol %g and rtol %g "
                           "non-negative",
                           name, o.eps, o.atol, o.rtol);
    return true;
}

/* The argument checks shared by both entry points. */
static bool check_args(const char *name, tg_fn f, int n, tg_tensor *const *in,
                       tg_gradcheck_report *rep) {
    if (!f) return report_fail(rep, "%s: the function is NULL", name);
    if (n < 1) return report_fail(rep, "%s: needs at least one input (n = %d)", name, n);
    if (!in) return report_fail(rep, "%s: the input array is NULL (n = %d)", name, n);
    int nreq = 0;
    for (int i = 0; i < n; i++) {
        const tg_tensor *x = in[i];
        if (!x) return report_fail(rep, "%s: input %d is NULL", name, i);
        if (!x->tg__persistent)
            return report_fail(rep,
                               "%s: input %d %s is a tape tensor; inputs must be persistent "
                               "(made by a tg_tensor_* constructor)",
                               name, i, tg__shp(x));
        if (x->requires_grad) {
            if (x->dtype != TG_F64)
                return report_fail(rep,
                                   "%s: input %d %s is %s; inputs that require a gradient "
                                   "must be f64 (use tg_cast inside f for other dtypes)",
                                   name, i, tg__shp(x), tg_dtype_name(x->dtype));
            nreq++;
        }
    }
    if (nreq == 0) return report_fail(rep, "%s: no input requires a gradient", name);
    return true;
}

static void layout_free(layout *L) {
    tg__release(L->req);
    tg__release(L->xs);
    tg__release(L->off);
    L->req = NULL;
    L->xs = NULL;
    L->off = NULL;
}

static bool layout_init(const checker *c, layout *L, tg_gradcheck_report *rep) {
    memset(L, 0, sizeof *L);
    L->req = tg__alloc((size_t)c->n * sizeof *L->req);
    L->xs = tg__alloc((size_t)c->n * sizeof *L->xs);
    L->off = tg__alloc((size_t)(c->n + 1) * sizeof *L->off);
    if (!L->req || !L->xs || !L->off) {
        layout_free(L);
        return report_fail(rep, "%s: out of memory", c->name);
    }
    for (int i = 0; i < c->n; i++) {
        if (!c->in[i]->requires_grad) continue;
        L->req[L->nreq] = i;
        L->xs[L->nreq] = c->in[i];
        L->off[L->nreq] = L->ncols;
        L->ncols += c->in[i]->numel;
        L->nreq++;
    }
    L->off[L->nreq] = L->ncols;
    L->nout = -1;
    return true;
}

/* Column -> (input index in c->in, flat element index). */
static void locate(const layout *L, int64_t col, int *input, int64_t *index) {
    int k = 0;
    while (k + 1 < L->nreq && col >= L->off[k + 1])
        k++;
    *input = L->req[k];
    *index = col - L->off[k];
}

/* Runs f (grad mode is on). The first call fixes the output shape; later ones must
 * match it. Copies the output's values into out when out is non-NULL. */
static tg_tensor *evaluate(const checker *c, layout *L, double *out, tg_gradcheck_report *rep) {
    tg_clear_error();
    tg_tensor *y = c->f(c->in, c->ctx);
    if (!y) {
        const char *e = tg_error();
        report_fail(rep, "%s%s: f returned NULL: %s", c->name, c->what, e ? e : "(no message)");
        return NULL;
    }
    if (y->dtype != TG_F64) {
        report_fail(rep, "%s%s: f returned %s %s; the output must be f64", c->name, c->what,
                    tg_dtype_name(y->dtype), tg__shp(y));
        return NULL;
    }
    if (L->nout < 0) {
        L->ndim = y->ndim;
        memcpy(L->shape, y->shape, sizeof L->shape);
        L->nout = y->numel;
    } else if (!tg__shape_eq(y->ndim, y->shape, L->ndim, L->shape)) {
        report_fail(rep, "%s%s: f returned %s after returning %s at the unperturbed inputs",
                    c->name, c->what, tg__shp(y), tg__shp_raw(L->ndim, L->shape));
        return NULL;
    }
    if (out && y->numel) memcpy(out, y->data, (size_t)y->numel * sizeof(double));
    return y;
}

/* row[col] = (seed^T dy/dx)[col] for every checked input, by one tg_grad sweep. */
static bool backward_into(const checker *c, const layout *L, tg_tensor *y, tg_tensor *seed,
                          tg_tensor **dx, double *row, tg_gradcheck_report *rep) {
    if (tg_grad(1, &y, &seed, L->nreq, L->xs, dx, 0) != 0) {
        const char *e = tg_error();
        return report_fail(rep, "%s%s: backward failed: %s", c->name, c->what,
                           e ? e : "(no message)");
    }
    for (int k = 0; k < L->nreq; k++)
        if (dx[k]->numel) memcpy(row + L->off[k], dx[k]->data, (size_t)dx[k]->numel * 8);
    return true;
}

/* Two sweeps with the same seed must agree bit for bit. */
static bool same_bits(const checker *c, const layout *L, const double *a, const double *b,
                      tg_gradcheck_report *rep) {
    for (int64_t col = 0; col < L->ncols; col++) {
        if (memcmp(&a[col], &b[col], sizeof(double)) == 0) continue;
        locate(L, col, &rep->input, &rep->index);
        rep->analytic = a[col];
        rep->numeric = b[col];
        return report_fail(rep,
                           "%s%s: backward is not deterministic: input %d element %lld gave "
                           "%.17g, then %.17g with the same seed",
                           c->name, c->what, rep->input, (long long)rep->index, a[col], b[col]);
    }
    return true;
}

/* A zero seed must give exactly zero gradients. */
static bool zero_seed(const checker *c, const layout *L, tg_tensor *y, tg_tensor **dx, double *row,
                      tg_gradcheck_report *rep) {
    tg_tensor *seed = tg__tape_zeros(TG_F64, y->ndim, y->shape);
    if (!seed) return report_fail(rep, "%s: out of memory", c->name);
    if (!backward_into(c, L, y, seed, dx, row, rep)) return false;
    for (int64_t col = 0; col < L->ncols; col++) {
        if (row[col] == 0.0) continue;
        locate(L, col, &rep->input, &rep->index);
        rep->analytic = row[col];
        rep->numeric = 0.0;
        return report_fail(rep,
                           "%s%s: a zero seed gave a nonzero gradient: input %d element %lld is "
                           "%.17g",
                           c->name, c->what, rep->input, (long long)rep->index, row[col]);
    }
    return true;
}

/* err <= atol + rtol |numeric|, false for NaN. */
static bool within(const checker *c, double analytic, double numeric, double *excess) {
    double err = fabs(analytic - numeric), tol = c->atol + c->rtol * fabs(numeric);
    *excess = err - tol;
    return err <= tol;
}

/* The full Jacobians. */
static bool check_slow(const checker *c, layout *L, tg_tensor *y, tg_tensor **dx,
                       tg_gradcheck_report *rep) {
    int64_t nout = L->nout, ncols = L->ncols;
    size_t cells = (size_t)(nout * ncols);
    double *ja = tg__alloc((cells ? cells : 1) * sizeof *ja);
    double *jn = tg__alloc((cells ? cells : 1) * sizeof *jn);
    double *row = tg__alloc((size_t)(ncols ? ncols : 1) * sizeof *row);
    double *plus = tg__alloc((size_t)(nout ? nout : 1) * sizeof *plus);
    double *minus = tg__alloc((size_t)(nout ? nout : 1) * sizeof *minus);
    bool ok = ja && jn && row && plus && minus;
    if (!ok) report_fail(rep, "%s: out of memory", c->name);

    /* Analytic rows, each twice. */
    size_t m = tg_tape_mark();
    for (int64_t o = 0; o < nout && ok; o++) {
        tg_tensor *seed = tg__tape_zeros(TG_F64, y->ndim, y->shape);
        if (!seed) {
            ok = report_fail(rep, "%s: out of memory", c->name);
            break;
        }
        ((double *)seed->data)[o] = 1.0;
        ok = backward_into(c, L, y, seed, dx, ja + o * ncols, rep) &&
             backward_into(c, L, y, seed, dx, row, rep) &&
             same_bits(c, L, ja + o * ncols, row, rep);
        tg_tape_rewind(m);
    }
    if (ok) ok = zero_seed(c, L, y, dx, row, rep);
    tg_tape_rewind(m);

    /* Numeric columns. */
    for (int k = 0; k < L->nreq && ok; k++) {
        double *d = L->xs[k]->data;
        for (int64_t j = 0; j < L->xs[k]->numel && ok; j++) {
            double saved = d[j];
            d[j] = saved + c->eps;
            ok = evaluate(c, L, plus, rep) != NULL;
            tg_tape_rewind(m);
            if (ok) {
                d[j] = saved - c->eps;
                ok = evaluate(c, L, minus, rep) != NULL;
                tg_tape_rewind(m);
            }
            d[j] = saved;
            int64_t col = L->off[k] + j;
            for (int64_t o = 0; o < nout && ok; o++)
                jn[o * ncols + col] = (plus[o] - minus[o]) / (2.0 * c->eps);
        }
    }

    /* Compare; report the entry that exceeds its tolerance the most. */
    if (ok) {
        int64_t worst = -1, largest = -1;
        double worst_excess = -INFINITY, max_err = -1.0;
        for (int64_t e = 0; e < nout * ncols; e++) {
            double excess, err = fabs(ja[e] - jn[e]);
            if (isnan(err)) err = INFINITY;
            if (err > max_err) max_err = err, largest = e;
            if (!within(c, ja[e], jn[e], &excess) &&
                (worst < 0 || excess > worst_excess || (isnan(excess) && !isnan(worst_excess))))
                worst = e, worst_excess = excess;
        }
        int64_t at = worst >= 0 ? worst : largest;
        rep->max_abs_err = max_err < 0 ? 0.0 : max_err;
        if (at >= 0) {
            locate(L, at % ncols, &rep->input, &rep->index);
            rep->analytic = ja[at];
            rep->numeric = jn[at];
        }
        if (worst >= 0)
            ok = report_fail(
                rep,
                "%s%s: gradient mismatch at input %d element %lld (output element "
                "%lld): analytic %.10g, numeric %.10g, |diff| %.3g > %g + %g*|numeric|",
                c->name, c->what, rep->input, (long long)rep->index, (long long)(at / ncols),
                rep->analytic, rep->numeric, fabs(rep->analytic - rep->numeric), c->atol, c->rtol);
    }
    tg__release(ja);
    tg__release(jn);
    tg__release(row);
    tg__release(plus);
    tg__release(minus);
    return ok;
}

/* One projection: v^T J u. */
static bool check_fast(const checker *c, layout *L, tg_tensor *y, tg_tensor **dx,
                       tg_gradcheck_report *rep) {
    int64_t nout = L->nout, ncols = L->ncols;
    size_t nc = (size_t)(ncols ? ncols : 1), no = (size_t)(nout ? nout : 1);
    double *u = tg__alloc(nc * sizeof *u), *saved = tg__alloc(nc * sizeof *saved);
    double *row = tg__alloc(nc * sizeof *row), *row2 = tg__alloc(nc * sizeof *row2);
    double *plus = tg__alloc(no * sizeof *plus), *minus = tg__alloc(no * sizeof *minus);
    size_t m = tg_tape_mark();
    tg_tensor *v = u && saved && row && row2 && plus && minus
                       ? tg__tape_tensor(TG_F64, y->ndim, y->shape)
                       : NULL;
    bool ok = v != NULL;
    if (!ok) report_fail(rep, "%s: out of memory", c->name);
    double analytic = 0.0, numeric = 0.0;
    if (ok) {
        tg_rng r = {0x7467726164636bull}; /* fixed: the check is reproducible */
        for (int64_t o = 0; o < nout; o++)
            ((double *)v->data)[o] = rng_uniform(&r);
        for (int64_t col = 0; col < ncols; col++)
            u[col] = rng_uniform(&r);
        ok = backward_into(c, L, y, v, dx, row, rep) && backward_into(c, L, y, v, dx, row2, rep) &&
             same_bits(c, L, row, row2, rep) && zero_seed(c, L, y, dx, row2, rep);
    }
    if (ok) {
        for (int64_t col = 0; col < ncols; col++)
            analytic += row[col] * u[col];
        /* The seed's values are needed after the rewind: keep them in row2. */
        double *vw = tg__alloc(no * sizeof *vw);
        if (!vw) {
            ok = report_fail(rep, "%s: out of memory", c->name);
        } else {
            if (nout) memcpy(vw, v->data, (size_t)nout * sizeof *vw);
            tg__release(row2);
            row2 = vw;
        }
    }
    tg_tape_rewind(m);
    if (ok) {
        for (int k = 0; k < L->nreq; k++)
            if (L->xs[k]->numel)
                memcpy(saved + L->off[k], L->xs[k]->data, (size_t)L->xs[k]->numel * 8);
        for (int pass = 0; pass < 2 && ok; pass++) {
            double s = pass == 0 ? c->eps : -c->eps;
            for (int k = 0; k < L->nreq; k++) {
                double *d = L->xs[k]->data;
                for (int64_t j = 0; j < L->xs[k]->numel; j++)
                    d[j] = saved[L->off[k] + j] + s * u[L->off[k] + j];
            }
            ok = evaluate(c, L, pass == 0 ? plus : minus, rep) != NULL;
            tg_tape_rewind(m);
        }
        for (int k = 0; k < L->nreq; k++)
            if (L->xs[k]->numel)
                memcpy(L->xs[k]->data, saved + L->off[k], (size_t)L->xs[k]->numel * 8);
    }
    if (ok) {
        for (int64_t o = 0; o < nout; o++)
            numeric += row2[o] * (plus[o] - minus[o]) / (2.0 * c->eps);
        double excess;
        rep->analytic = analytic;
        rep->numeric = numeric;
        rep->max_abs_err = fabs(analytic - numeric);
        if (!within(c, analytic, numeric, &excess))
            ok = report_fail(rep,
                             "%s%s: fast check failed: v^T J u is %.10g analytically, %.10g "
                             "numerically, |diff| %.3g > %g + %g*|numeric|",
                             c->name, c->what, analytic, numeric, fabs(analytic - numeric), c->atol,
                             c->rtol);
    }
    tg__release(u);
    tg__release(saved);
    tg__release(row);
    tg__release(row2);
    tg__release(plus);
    tg__release(minus);
    return ok;
}

/* Evaluates f once at the given inputs, then runs the slow or fast check. The caller
 * has checked the arguments; this leaves the tape as it found it. */
static bool run_check(const checker *c, tg_gradcheck_report *rep) {
    layout L;
    if (!layout_init(c, &L, rep)) return false;
    tg_tensor **dx = tg__alloc((size_t)L.nreq * sizeof *dx);
    size_t mark = tg_tape_mark();
    bool mode = tg_set_grad_enabled(true);
    bool ok = dx != NULL;
    if (!ok) report_fail(rep, "%s: out of memory", c->name);
    tg_tensor *y = ok ? evaluate(c, &L, NULL, rep) : NULL;
    ok = y != NULL;
    if (ok) ok = c->fast ? check_fast(c, &L, y, dx, rep) : check_slow(c, &L, y, dx, rep);
    tg_tape_rewind(mark);
    tg_set_grad_enabled(mode);
    tg__release(dx);
    layout_free(&L);
    if (ok) {
        rep->ok = true;
        snprintf(rep->message, sizeof rep->message, "%s%s: ok (max |analytic - numeric| %.3g)",
                 c->name, c->what, rep->max_abs_err);
    }
    return ok;
}

bool tg_gradcheck(tg_fn f, void *ctx, int n, tg_tensor *const *inputs,
                  const tg_gradcheck_opts *opts, tg_gradcheck_report *rep) {
    tg_gradcheck_report local;
    if (!rep) rep = &local;
    report_init(rep);
    checker c = {"tg_gradcheck", "", f, ctx, n, inputs, 0, 0, 0, false};
    if (!resolve_opts(c.name, opts, &c, rep) || !check_args(c.name, f, n, inputs, rep))
        return false;
    return run_check(&c, rep);
}

/* ---- second derivatives ---- */

typedef struct {
    tg_fn f;
    void *ctx;
    int n;     /* f's inputs; the seed v is input n */
    int block; /* which input's gradient this map returns */
} gradgrad_ctx;

/* (inputs, v) -> J_block^T v, recorded on the tape so it can be differentiated. */
static tg_tensor *gradient_block(tg_tensor *const *in, void *vctx) {
    const gradgrad_ctx *g = vctx;
    tg_tensor *y = g->f(in, g->ctx);
    if (!y) return NULL;
    tg_tensor *v = in[g->n], *dx = NULL;
    if (tg_grad(1, &y, &v, 1, &in[g->block], &dx, TG_CREATE_GRAPH) != 0) return NULL;
    return dx;
}

bool tg_gradgradcheck(tg_fn f, void *ctx, int n, tg_tensor *const *inputs,
                      const tg_gradcheck_opts *opts, tg_gradcheck_report *rep) {
    tg_gradcheck_report local;
    if (!rep) rep = &local;
    report_init(rep);
    const char *name = "tg_gradgradcheck";
    checker c = {name, "", f, ctx, n, inputs, 0, 0, 0, false};
    if (!resolve_opts(name, opts, &c, rep) || !check_args(name, f, n, inputs, rep)) return false;

    /* One evaluation to learn the output's shape, then the seed v of that shape. */
    layout L;
    if (!layout_init(&c, &L, rep)) return false;
    size_t mark = tg_tape_mark();
    bool mode = tg_set_grad_enabled(true);
    tg_tensor *y = evaluate(&c, &L, NULL, rep);
    tg_tape_rewind(mark);
    tg_set_grad_enabled(mode);
    layout_free(&L);
    if (!y) return false;

    tg_tensor *v = tg_tensor_new(TG_F64, L.ndim, L.shape);
    tg_tensor **in2 = tg__alloc((size_t)(n + 1) * sizeof *in2);
    bool ok = v && in2;
    if (!ok) report_fail(rep, "%s: out of memory", name);
    if (ok) {
        tg_rng r = {0x6772616467726164ull};
        for (int64_t o = 0; o < v->numel; o++)
            ((double *)v->data)[o] = rng_uniform(&r);
        v->requires_grad = true;
        memcpy(in2, inputs, (size_t)n * sizeof *in2);
        in2[n] = v;
    }
    char what[96];
    tg_gradcheck_report largest = *rep;
    for (int j = 0; j < n && ok; j++) {
        if (!inputs[j]->requires_grad) continue;
        gradgrad_ctx g = {f, ctx, n, j};
        snprintf(what, sizeof what, " (through the gradient of input %d; the seed is input %d)", j,
                 n);
        checker cj = c;
        cj.what = what;
        cj.f = gradient_block;
        cj.ctx = &g;
        cj.n = n + 1;
        cj.in = in2;
        ok = run_check(&cj, rep);
        if (ok && rep->max_abs_err >= largest.max_abs_err) largest = *rep;
    }
    if (ok) {
        *rep = largest;
        snprintf(rep->message, sizeof rep->message, "%s: ok (max |analytic - numeric| %.3g)", name,
                 rep->max_abs_err);
    }
    tg__release(in2);
    tg_tensor_free(v);
    return ok;
}
