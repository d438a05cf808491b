/* values.c — the NAME=VALUE bindings of tapegrad-check and the lines of a check file
 * (see expr.h). */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"

static int bad(tgc_diag *d, int pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(tgc_diag *d, int pos, const char *fmt, ...) {
    if (d) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->msg, sizeof d->msg, fmt, ap);
        va_end(ap);
        d->pos = pos;
    }
    return -1;
}

/* ---- literals: a number or nested brackets ---- */

typedef struct {
    const char *s;
    int at;
    double *vals;
    int64_t n, cap;
    int ndim;                   /* fixed by the first innermost number reached */
    int64_t shape[TG_MAX_DIMS]; /* shape[k]: the length of every list at depth k */
    tgc_diag *d;
} literal;

static void skip_space(literal *L) {
    while (L->s[L->at] == ' ' || L->s[L->at] == '\t')
        L->at++;
}

static int number(literal *L) {
    const char *start = L->s + L->at;
    char *end;
    if (!(isdigit((unsigned char)*start) || *start == '-' || *start == '+' || *start == '.'))
        return bad(L->d, L->at, "expected a number or '['");
    double v = strtod(start, &end);
    /* strtod also takes hexadecimal, "inf" and "nan": allow only decimal numbers. */
    for (const char *c = start; c < end; c++)
        if (!(isdigit((unsigned char)*c) || strchr("+-.eE", *c)))
            return bad(L->d, (int)(c - L->s), "expected a decimal number");
    if (end == start) return bad(L->d, L->at, "expected a number");
    if (!isfinite(v)) return bad(L->d, L->at, "the number is out of range");
    if (L->n == L->cap) {
        int64_t cap = L->cap ? 2 * L->cap : 16;
        double *v2 = realloc(L->vals, (size_t)cap * sizeof *v2);
        if (!v2) return bad(L->d, L->at, "out of memory");
        L->vals = v2;
        L->cap = cap;
    }
    L->vals[L->n++] = v;
    L->at = (int)(end - L->s);
    return 0;
}

/* A list at depth k (the '[' is the current byte). */
static int list(literal *L, int k) {
    if (k >= TG_MAX_DIMS)
        return bad(L->d, L->at, "too many nested brackets (at most %d dimensions)", TG_MAX_DIMS);
    int open = L->at++;
    int64_t len = 0;
    skip_space(L);
    if (L->s[L->at] == ']') return bad(L->d, L->at, "an empty list: give at least one number");
    for (;;) {
        skip_space(L);
        bool inner = L->s[L->at] == '[';
        /* Every element at one depth is a list, or every one a number. */
        if (L->ndim > 0 && inner != (k + 1 < L->ndim))
            return bad(L->d, L->at,
                       inner ? "expected a number here (the lists are not regular)"
                             : "expected '[' here (the lists are not regular)");
        if (inner ? list(L, k + 1) != 0 : number(L) != 0) return -1;
        if (!inner && L->ndim == 0) L->ndim = k + 1;
        len++;
        skip_space(L);
        if (L->s[L->at] == ',') {
            L->at++;
            continue;
        }
        if (L->s[L->at] == ']') break;
        return bad(L->d, L->at, "expected ',' or ']' to go on with the list opened at column %d",
                   open + 1);
    }
    L->at++;
    if (L->shape[k] == 0)
        L->shape[k] = len;
    else if (L->shape[k] != len)
        return bad(L->d, open,
                   "the lists are not regular: this one has %lld elements, an earlier one at the "
                   "same depth %lld",
                   (long long)len, (long long)L->shape[k]);
    return 0;
}

/* ---- bindings ---- */

static int random_shape(const char *arg, int at, int64_t *shape, int *ndim, tgc_diag *d) {
    int64_t total = 1;
    *ndim = 0;
    for (;;) {
        if (!isdigit((unsigned char)arg[at]))
            return bad(d, at, "expected a dimension (a positive integer), as in W:3x4");
        int64_t v = 0;
        int start = at;
        while (isdigit((unsigned char)arg[at])) {
            v = v * 10 + (arg[at++] - '0');
            if (v > TGC_RANDOM_MAX) break;
        }
        if (v < 1 || v > TGC_RANDOM_MAX || total * v > TGC_RANDOM_MAX)
            return bad(d, start, "a random tensor has 1 to %d elements", TGC_RANDOM_MAX);
        if (*ndim == TG_MAX_DIMS)
            return bad(d, start, "too many dimensions (at most %d)", TG_MAX_DIMS);
        shape[(*ndim)++] = v;
        total *= v;
        if (arg[at] == '\0') return 0;
        if (arg[at] != 'x' && arg[at] != 'X')
            return bad(d, at, "expected 'x' between dimensions or the end, as in W:3x4");
        at++;
    }
}

int tgc_binding_parse(const char *arg, char *name, tg_tensor **out, tgc_diag *d) {
    if (d) d->pos = -1, d->msg[0] = '\0';
    *out = NULL;
    int i = 0;
    if (!(isalpha((unsigned char)arg[0]) || arg[0] == '_'))
        return bad(d, 0, "expected NAME=VALUE or NAME:SHAPE, starting with a name");
    while (isalnum((unsigned char)arg[i]) || arg[i] == '_')
        i++;
    if (i > TGC_NAME_MAX) return bad(d, 0, "the name is longer than %d characters", TGC_NAME_MAX);
    memcpy(name, arg, (size_t)i);
    name[i] = '\0';
    if (arg[i] == ':') {
        int64_t shape[TG_MAX_DIMS];
        int ndim;
        if (random_shape(arg, i + 1, shape, &ndim, d) != 0) return -1;
        tg_tensor *t = tg_tensor_new(TG_F64, ndim, shape);
        if (!t || tg_init_normal(t, 0.0, 1.0) != 0) {
            tg_tensor_free(t);
            const char *m = tg_error();
            return bad(d, i + 1, "%s", m ? m : "out of memory");
        }
        *out = t;
        return 0;
    }
    if (arg[i] != '=') return bad(d, i, "expected '=' (a value) or ':' (a shape) after the name");
    literal L = {.s = arg, .at = i + 1, .d = d};
    skip_space(&L);
    int rc = L.s[L.at] == '[' ? list(&L, 0) : number(&L);
    if (rc == 0) {
        skip_space(&L);
        if (L.s[L.at] != '\0') rc = bad(d, L.at, "unexpected text after the value");
    }
    if (rc == 0) {
        *out = tg_tensor_from(TG_F64, L.ndim, L.shape, L.vals);
        if (!*out) {
            const char *m = tg_error();
            rc = bad(d, i + 1, "%s", m ? m : "out of memory");
        }
    }
    free(L.vals);
    return rc;
}

/* ---- lines of a check file ---- */

int tgc_line_split(char *line, char **expr, char **bindings, int max) {
    char *semi = strchr(line, ';');
    *expr = line;
    if (!semi) return 0;
    *semi = '\0';
    int n = 0, depth = 0;
    char *p = semi + 1, *start = NULL;
    for (;; p++) {
        char c = *p;
        bool space = c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\0';
        if (start && space && (depth <= 0 || c == '\0')) {
            if (n == max) return -1;
            bindings[n++] = start;
            start = NULL;
            if (c == '\0') break;
            *p = '\0';
            continue;
        }
        if (c == '\0') break;
        if (!start && !space) start = p;
        if (c == '[') depth++;
        if (c == ']') depth--;
    }
    return n;
}
