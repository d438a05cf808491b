/* data.c — the spiral data set and the CSV loader (data.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_internal.h"
#include "tapegrad/data.h"

/* 2 pi (M_PI is not part of C11). */
#define TWO_PI 6.283185307179586476925286766559

/* ---------------- spiral ---------------- */

int tg_data_spiral_dtype(int64_t per_class, int classes, uint64_t seed, tg_dtype dt, tg_tensor **X,
                         tg_tensor **y) {
    if (X) *X = NULL;
    if (y) *y = NULL;
    if (!X || !y) return tg__fail_int("tg_data_spiral: X and y must not be NULL");
    if (per_class < 1 || classes < 1)
        return tg__fail_int("tg_data_spiral: need per_class >= 1 and classes >= 1, got %lld and %d",
                            (long long)per_class, classes);
    if (dt != TG_F32 && dt != TG_F64)
        return tg__fail_int("tg_data_spiral: X must be f32 or f64, got %s", tg_dtype_name(dt));
    if (per_class > INT64_MAX / 2 / classes)
        return tg__fail_int("tg_data_spiral: %lld points per class x %d classes is too many",
                            (long long)per_class, classes);
    int64_t rows = per_class * classes;
    tg_tensor *xs = tg_tensor_new(dt, TG_SHAPE(rows, 2));
    tg_tensor *ys = tg_tensor_new(TG_I64, TG_SHAPE(rows));
    if (!xs || !ys) {
        tg_tensor_free(xs);
        tg_tensor_free(ys);
        return -1;
    }
    tg_rng g;
    tg_rng_seed(&g, seed);
    const double arm = TWO_PI / classes;
    int64_t *lab = ys->data;
    for (int k = 0; k < classes; k++) {
        for (int64_t i = 0; i < per_class; i++) {
            int64_t row = (int64_t)k * per_class + i;
            double f = per_class > 1 ? (double)i / (double)(per_class - 1) : 0.0;
            double t = arm * k + 1.5 * arm * f + 0.1 * tg_rng_normal(&g);
            tg__set(xs, 2 * row, f * sin(t));
            tg__set(xs, 2 * row + 1, f * cos(t));
            lab[row] = k;
        }
    }
    *X = xs;
    *y = ys;
    return 0;
}

int tg_data_spiral(int64_t per_class, int classes, uint64_t seed, tg_tensor **X, tg_tensor **y) {
    return tg_data_spiral_dtype(per_class, classes, seed, TG_F32, X, y);
}

/* ---------------- CSV ---------------- */

/* Reads the whole file into a NUL-terminated buffer from tg__alloc. */
static char *read_file(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) return tg__fail("tg_data_load_csv: cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = tg__alloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *bigger = tg__alloc(cap * 2);
            if (bigger) memcpy(bigger, buf, len);
            tg__release(buf);
            buf = bigger;
            cap *= 2;
            if (!buf) break;
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                tg__fail("tg_data_load_csv: cannot read %s: %s", path, strerror(errno));
                tg__release(buf);
                buf = NULL;
            }
            break;
        }
    }
    fclose(f);
    if (!buf) return NULL;
    /* A NUL byte would end a field early ("1\0x" read as 1): not a text file. */
    const char *nul = memchr(buf, '\0', len);
    if (nul) {
        long long line = 1;
        for (const char *c = buf; c < nul; c++)
            line += *c == '\n';
        tg__fail("tg_data_load_csv: %s:%lld: contains a NUL byte (not a text file)", path, line);
        tg__release(buf);
        return NULL;
    }
    buf[len] = '\0';
    *len_out = len;
    return buf;
}

/* Splits the line [s, e) (no line terminator) at commas; field k is trimmed of blanks
 * and NUL-terminated in place. Returns the number of fields (up to cap stored). */
static int split_fields(char *s, char *e, char **fields, int cap) {
    int n = 0;
    for (char *p = s;;) {
        char *q = p;
        while (q < e && *q != ',')
            q++;
        char *a = p, *b = q;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (n < cap) fields[n] = a;
        n++;
        bool last = q >= e;
        *b = '\0';
        if (last) break;
        p = q + 1;
    }
    return n;
}

static bool parse_number(const char *s, double *v) {
    if (!*s) return false;
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *end == '\0' && end != s;
}

/* A line: start, end (before "\r\n" or "\n"), and its 1-based number. */
typedef struct {
    char *s, *e;
    int64_t lineno;
} csv_line;

/* Advances *p to the next non-blank line; false at the end of the buffer. */
static bool next_line(char **p, char *end, int64_t *lineno, csv_line *out) {
    while (*p < end) {
        char *s = *p, *e = s;
        while (e < end && *e != '\n')
            e++;
        *p = e < end ? e + 1 : end;
        (*lineno)++;
        if (e > s && e[-1] == '\r') e--;
        char *t = s;
        while (t < e && (*t == ' ' || *t == '\t'))
            t++;
        if (t == e) continue;
        out->s = s;
        out->e = e;
        out->lineno = *lineno;
        return true;
    }
    return false;
}

int tg_data_load_csv(const char *path, int label_column, tg_dtype dt, tg_tensor **X,
                     tg_tensor **y) {
    if (X) *X = NULL;
    if (y) *y = NULL;
    if (!path || !X || !y) return tg__fail_int("tg_data_load_csv: path, X and y must not be NULL");
    if (dt != TG_F32 && dt != TG_F64)
        return tg__fail_int("tg_data_load_csv: X must be f32 or f64, got %s", tg_dtype_name(dt));
    size_t len = 0;
    char *buf = read_file(path, &len);
    if (!buf) return -1;

    int rc = -1;
    char **fields = NULL;
    tg_tensor *xs = NULL, *ys = NULL;
    char *end = buf + len;

    /* Pass 1: count rows and columns, detect the header. Fields are split in place
     * only in pass 2, so pass 1 works on a copy of each line's bounds. */
    char *p = buf;
    int64_t lineno = 0, rows = 0, header_line = 0;
    int ncol = 0;
    csv_line ln;
    if (!next_line(&p, end, &lineno, &ln)) {
        tg__fail("tg_data_load_csv: %s: no data rows", path);
        goto done;
    }
    ncol = 1;
    for (char *c = ln.s; c < ln.e; c++)
        ncol += *c == ',';
    fields = tg__alloc(sizeof *fields * (size_t)ncol);
    if (!fields) goto done;
    if (ncol < 2) {
        tg__fail("tg_data_load_csv: %s:%lld: need at least 2 columns (features and a label), "
                 "found 1",
                 path, (long long)ln.lineno);
        goto done;
    }
    int lab = label_column == -1 ? ncol - 1 : label_column;
    if (lab < 0 || lab >= ncol) {
        tg__fail("tg_data_load_csv: %s: label_column %d out of range for %d columns", path,
                 label_column, ncol);
        goto done;
    }
    {
        /* The header test needs the fields; split this first line now (it is
         * re-parsed below only when it is data, from a saved copy of its text). */
        size_t n = (size_t)(ln.e - ln.s);
        char *copy = tg__alloc(n + 1);
        if (!copy) goto done;
        memcpy(copy, ln.s, n);
        split_fields(copy, copy + n, fields, ncol);
        bool numeric = true;
        for (int k = 0; k < ncol && numeric; k++) {
            double v;
            numeric = parse_number(fields[k], &v);
        }
        tg__release(copy);
        if (!numeric)
            header_line = ln.lineno;
        else
            rows = 1;
    }
    while (next_line(&p, end, &lineno, &ln))
        rows++;
    if (rows == 0) {
        tg__fail("tg_data_load_csv: %s: no data rows after the header", path);
        goto done;
    }

    xs = tg_tensor_new(dt, TG_SHAPE(rows, ncol - 1));
    ys = tg_tensor_new(TG_I64, TG_SHAPE(rows));
    if (!xs || !ys) goto done;

    /* Pass 2: parse. */
    p = buf;
    lineno = 0;
    int64_t r = 0;
    while (next_line(&p, end, &lineno, &ln)) {
        if (ln.lineno == header_line) continue;
        int nf = split_fields(ln.s, ln.e, fields, ncol);
        if (nf != ncol) {
            tg__fail("tg_data_load_csv: %s:%lld: %d fields, expected %d", path,
                     (long long)ln.lineno, nf, ncol);
            goto done;
        }
        int64_t c = 0;
        for (int k = 0; k < ncol; k++) {
            double v;
            if (!parse_number(fields[k], &v)) {
                if (*fields[k])
                    tg__fail("tg_data_load_csv: %s:%lld: field %d is not a number: \"%s\"", path,
                             (long long)ln.lineno, k + 1, fields[k]);
                else
                    tg__fail("tg_data_load_csv: %s:%lld: field %d is empty", path,
                             (long long)ln.lineno, k + 1);
                goto done;
            }
            if (k == lab) {
                if (!(v == floor(v)) || fabs(v) > 9007199254740992.0) {
                    tg__fail("tg_data_load_csv: %s:%lld: label (field %d) is not an integer: "
                             "\"%s\"",
                             path, (long long)ln.lineno, k + 1, fields[k]);
                    goto done;
                }
                ((int64_t *)ys->data)[r] = (int64_t)v;
            } else {
                tg__set(xs, r * (ncol - 1) + c++, v);
            }
        }
        r++;
    }
    *X = xs;
    *y = ys;
    xs = ys = NULL;
    rc = 0;
done:
    tg_tensor_free(xs);
    tg_tensor_free(ys);
    tg__release(fields);
    tg__release(buf);
    return rc;
}
