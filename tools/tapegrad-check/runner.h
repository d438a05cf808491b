/*
 * runner.h — one tapegrad-check run: parse an expression and its bindings, evaluate it,
 * compare its gradient with central differences and give the verdict of tg_gradcheck
 * (and, on request, the Hessian and tg_gradgradcheck).
 *
 *     tgc_opts o = {0};                                  // PyTorch's defaults
 *     const char *b[] = {"x1=2", "x2=5"};
 *     tgc_status s = tgc_check("sin(x1) + x1*x2", 2, b, &o, stdout, stderr, NULL);
 *
 * Results go to out (text, or one JSON object per check with o.json), diagnostics to
 * err: a parse error shows the text with a caret under the position. Nothing here
 * exits the process; the tape is reset and everything allocated is freed on return.
 */
#ifndef TGC_RUNNER_H
#define TGC_RUNNER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Zero eps/atol/rtol take the defaults: 1e-6, 1e-5, 1e-3 (PyTorch's gradcheck), or with
 * f32 1e-3, 1e-3, 1e-2 (float32 central differences with eps 1e-6 are mostly rounding). */
typedef struct {
    double eps, atol, rtol;
    bool fast;            /* tg_gradcheck's projected check instead of the whole Jacobian */
    bool hessian;         /* also the Hessian and tg_gradgradcheck (scalar expressions) */
    bool tape;            /* print the Wengert list of the forward pass */
    bool json;            /* one JSON object instead of text */
    bool f32;             /* evaluate the expression in float32 */
    const char *dot_path; /* write the graph (Graphviz DOT) of the forward pass here */
    uint64_t seed;        /* for NAME:SHAPE bindings (tg_seed) */
} tgc_opts;

/* The outcome of a check, which is also the program's exit status. */
typedef enum {
    TGC_PASS = 0, /* every check passed */
    TGC_FAIL = 1, /* a gradient (or second-derivative) check failed */
    TGC_ERROR = 2 /* bad input: a parse error, a bad value, an expression the library
                     rejects (shapes, dtypes), a file that cannot be written */
} tgc_status;

/* Runs one check of expr with the nb bindings ("NAME=VALUE" or "NAME:SHAPE"); where,
 * when not NULL, prefixes diagnostics (e.g. "checks.txt:3: "). */
tgc_status tgc_check(const char *expr, int nb, const char *const *bindings, const tgc_opts *o,
                     FILE *out, FILE *err, const char *where);

#endif
