/* tensor_print.c — tg_tensor_print: a tensor's values laid out as NumPy prints an array.
 *
 * Nested brackets, one row of the last axis per line, blank lines between blocks of
 * three or more dimensions, every element right-aligned to one common width, rows
 * wrapped at 75 columns. A tensor of more than 1000 elements is summarised: along every
 * axis longer than 6 only the first and last 3 entries are shown, with "..." between.
 * Floats use one format for the whole tensor (chosen over the elements shown): "3."
 * when every finite value is an integer below 1e16, else fixed "%.4f", or "%.4e" when
 * the magnitudes are beyond 1e8, below 1e-4 or span more than 1e3 (NumPy's rule). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

enum { SUMMARY_THRESHOLD = 1000, EDGE = 3, LINE_WIDTH = 75, CELL = 48 };

typedef enum { FMT_INT, FMT_WHOLE, FMT_FIXED, FMT_SCI } elem_format;

typedef struct {
    FILE *out;
    const tg_tensor *t;
    bool summarise;
    elem_format fmt;
    int width; /* of the widest element shown */
    int col;   /* current output column */
    /* the scan of the floats shown, which picks fmt */
    double max_abs, min_abs; /* largest and smallest nonzero finite magnitude */
    bool whole, any_finite;
} printer;

/* Is index i of an axis of size n shown? (and at which point does "..." go) */
static bool shown(const printer *p, int64_t n, int64_t i) {
    return !p->summarise || n <= 2 * EDGE || i < EDGE || i >= n - EDGE;
}

static int format_elem(const printer *p, int64_t i, char *buf) {
    if (p->fmt == FMT_INT)
        return snprintf(buf, CELL, "%lld", (long long)((const int64_t *)p->t->data)[i]);
    double v = tg__get(p->t, i);
    if (isnan(v)) return snprintf(buf, CELL, "nan");
    if (isinf(v)) return snprintf(buf, CELL, v > 0 ? "inf" : "-inf");
    if (p->fmt == FMT_WHOLE) return snprintf(buf, CELL, "%.0f.", v);
    return snprintf(buf, CELL, p->fmt == FMT_FIXED ? "%.4f" : "%.4e", v);
}

/* Calls fn on the flat index of every element shown, in row-major order. */
static void each_shown(printer *p, int dim, int64_t base, void (*fn)(printer *, int64_t)) {
    const tg_tensor *t = p->t;
    if (dim == t->ndim) {
        fn(p, base);
        return;
    }
    for (int64_t i = 0; i < t->shape[dim]; i++)
        if (shown(p, t->shape[dim], i)) each_shown(p, dim + 1, base * t->shape[dim] + i, fn);
}

/* Pass 1 over the floats shown: the range of finite magnitudes, and whether all are
 * whole numbers. */
static void scan_elem(printer *p, int64_t i) {
    double v = tg__get(p->t, i);
    if (!isfinite(v)) return;
    double a = fabs(v);
    p->any_finite = true;
    if (a > p->max_abs) p->max_abs = a;
    if (a > 0 && a < p->min_abs) p->min_abs = a;
    if (v != floor(v) || a >= 1e16) p->whole = false;
}

static void width_elem(printer *p, int64_t i) {
    char buf[CELL];
    int w = format_elem(p, i, buf);
    if (w > p->width) p->width = w;
}

static void put(printer *p, const char *s) {
    fputs(s, p->out);
    p->col += (int)strlen(s);
}

static void newline(printer *p, int indent) {
    fputc('\n', p->out);
    for (int i = 0; i < indent; i++)
        fputc(' ', p->out);
    p->col = indent;
}

/* Writes the sub-array at dimension dim whose first element is at flat index base. */
static void write_block(printer *p, int dim, int64_t base) {
    const tg_tensor *t = p->t;
    int64_t n = t->shape[dim];
    put(p, "[");
    bool last_axis = dim == t->ndim - 1;
    bool first = true;
    for (int64_t i = 0; i < n; i++) {
        if (!shown(p, n, i)) {
            if (i != EDGE) continue;
            /* the elision marker, once, where the hidden entries start */
            if (last_axis) {
                put(p, " ...");
            } else {
                newline(p, dim + 1);
                put(p, "...");
            }
            continue;
        }
        if (!first) {
            if (last_axis) {
                if (p->col + 1 + p->width + 1 > LINE_WIDTH)
                    newline(p, dim + 1);
                else
                    put(p, " ");
            } else {
                for (int k = 0; k < t->ndim - dim - 2; k++)
                    fputc('\n', p->out);
                newline(p, dim + 1);
            }
        }
        first = false;
        int64_t idx = base * n + i;
        if (last_axis) {
            char buf[CELL], cell[2 * CELL];
            format_elem(p, idx, buf);
            snprintf(cell, sizeof cell, "%*s", p->width, buf);
            put(p, cell);
        } else {
            write_block(p, dim + 1, idx);
        }
    }
    put(p, "]");
}

int tg_tensor_print(FILE *out, const tg_tensor *t) {
    tg__op_name = "tg_tensor_print";
    if (!t) return tg__fail_soft("tg_tensor_print: tensor is NULL"), -1;
    if (!out) return tg__fail_int("tg_tensor_print: output stream is NULL (tensor %s)", tg__shp(t));
    printer p = {.out = out,
                 .t = t,
                 .summarise = t->numel > SUMMARY_THRESHOLD,
                 .min_abs = INFINITY,
                 .whole = true};
    if (t->dtype == TG_I64) {
        p.fmt = FMT_INT;
    } else {
        if (t->numel > 0) each_shown(&p, 0, 0, scan_elem);
        bool sci = p.any_finite && p.max_abs > 0 &&
                   (p.max_abs >= 1e8 || p.min_abs < 1e-4 || p.max_abs / p.min_abs > 1e3);
        p.fmt = p.whole ? FMT_WHOLE : sci ? FMT_SCI : FMT_FIXED;
    }
    if (t->numel == 0) {
        fputs("[]", out);
    } else if (t->ndim == 0) {
        char buf[CELL];
        format_elem(&p, 0, buf);
        fputs(buf, out);
    } else {
        each_shown(&p, 0, 0, width_elem);
        write_block(&p, 0, 0);
    }
    fputc('\n', out);
    if (ferror(out)) return tg__fail_int("tg_tensor_print: write error (tensor %s)", tg__shp(t));
    return 0;
}
