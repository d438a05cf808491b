/* idx.c — the IDX reader of MNIST-style data sets (data.h), plain or gzip-compressed.
 *
 * zlib's gz* interface reads both kinds: on a file without the gzip magic it passes the
 * bytes through unchanged. The element data are read in chunks into a buffer that grows
 * with what the file really holds, so a header that claims more than the file has fails
 * as truncated instead of allocating what it claims. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "nn_internal.h"
#include "tapegrad/data.h"

/* Largest element count accepted: the tensors' sizes stay well inside size_t and int64. */
#define IDX_MAX_ELEMENTS (INT64_C(1) << 36)
/* Bytes per read call (gzread takes an unsigned count). */
#define IDX_CHUNK (1u << 20)

typedef struct {
    unsigned char code; /* 0x08 ubyte, 0x09 sbyte, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64 */
    const char *name;
    int size; /* bytes per element */
    bool integer;
} idx_type;

static const idx_type IDX_TYPES[] = {
    {0x08, "unsigned byte", 1, true}, {0x09, "signed byte", 1, true}, {0x0B, "int16", 2, true},
    {0x0C, "int32", 4, true},         {0x0D, "float32", 4, false},    {0x0E, "float64", 8, false},
};

/* Reads exactly n bytes into buf. Returns 0; 1 when the file ends first (*got says how
 * many were read); -1 on a read or decompression error (message in *why). */
static int read_exact(gzFile f, void *buf, size_t n, size_t *got, const char **why) {
    size_t done = 0;
    while (done < n) {
        unsigned want = n - done < IDX_CHUNK ? (unsigned)(n - done) : IDX_CHUNK;
        int r = gzread(f, (char *)buf + done, want);
        if (r < 0) {
            int code;
            *why = gzerror(f, &code);
            if (got) *got = done;
            return -1;
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    if (got) *got = done;
    if (done == n) return 0;
    /* A gzip stream cut short reads as an early end; zlib names it when it knows. */
    int code;
    const char *msg = gzerror(f, &code);
    if (code != Z_OK && code != Z_STREAM_END) {
        *why = msg;
        return -1;
    }
    return 1;
}

/* zlib's message without the "<path>: " it puts in front. */
static const char *zlib_reason(const char *path, const char *why) {
    size_t n = strlen(path);
    if (why && strncmp(why, path, n) == 0 && strncmp(why + n, ": ", 2) == 0) return why + n + 2;
    return why ? why : "unknown error";
}

static uint32_t be32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Element i of the big-endian data of type t, as a double (every IDX type fits). */
static double idx_value(const idx_type *t, const unsigned char *d, int64_t i) {
    const unsigned char *b = d + (size_t)i * (size_t)t->size;
    switch (t->code) {
    case 0x08:
        return b[0];
    case 0x09:
        return (signed char)b[0];
    case 0x0B:
        return (int16_t)(uint16_t)(b[0] << 8 | b[1]);
    case 0x0C:
        return (int32_t)be32(b);
    case 0x0D: {
        uint32_t u = be32(b);
        float v;
        memcpy(&v, &u, sizeof v);
        return v;
    }
    default: {
        uint64_t u = (uint64_t)be32(b) << 32 | be32(b + 4);
        double v;
        memcpy(&v, &u, sizeof v);
        return v;
    }
    }
}

/* The body of tg_data_load_idx with the file open; op names the public function. */
static tg_tensor *read_idx(const char *op, const char *path, gzFile f, tg_dtype dt) {
    unsigned char head[4];
    size_t got = 0;
    const char *why = NULL;
    int r = read_exact(f, head, 4, &got, &why);
    if (r < 0)
        return tg__fail("%s: %s: cannot read (corrupt gzip data?): %s", op, path,
                        zlib_reason(path, why));
    if (r > 0)
        return tg__fail("%s: %s: truncated: %zu bytes, shorter than the 4-byte IDX magic", op, path,
                        got);
    const idx_type *t = NULL;
    for (size_t k = 0; k < sizeof IDX_TYPES / sizeof *IDX_TYPES; k++)
        if (IDX_TYPES[k].code == head[2]) t = &IDX_TYPES[k];
    if (head[0] != 0 || head[1] != 0 || !t)
        return tg__fail("%s: %s: not an IDX file: magic bytes %02x %02x %02x %02x (want 00 00, "
                        "a type code 08/09/0b/0c/0d/0e, the number of dimensions)",
                        op, path, head[0], head[1], head[2], head[3]);
    int ndim = head[3];
    if (ndim < 1 || ndim > TG_MAX_DIMS)
        return tg__fail("%s: %s: %d dimensions; tapegrad tensors have 1 to %d", op, path, ndim,
                        TG_MAX_DIMS);
    if (dt == TG_I64 && !t->integer)
        return tg__fail("%s: %s holds %s values, which cannot be read as i64", op, path, t->name);
    unsigned char dims[4 * TG_MAX_DIMS];
    r = read_exact(f, dims, 4 * (size_t)ndim, &got, &why);
    if (r < 0)
        return tg__fail("%s: %s: cannot read (corrupt gzip data?): %s", op, path,
                        zlib_reason(path, why));
    if (r > 0)
        return tg__fail("%s: %s: truncated in the header: %d dimensions need %d bytes, found %zu",
                        op, path, ndim, 4 * ndim, got);
    int64_t shape[TG_MAX_DIMS], count = 1;
    for (int i = 0; i < ndim; i++) {
        shape[i] = be32(dims + 4 * i);
        if (shape[i] == 0)
            return tg__fail("%s: %s: dimension %d is 0 (shape %s)", op, path, i,
                            tg__shp_raw(ndim, shape));
        if (shape[i] > IDX_MAX_ELEMENTS / count)
            return tg__fail("%s: %s: too large: shape %s is over 2^36 elements", op, path,
                            tg__shp_raw(i + 1, shape));
        count *= shape[i];
    }
    /* Read what the header announces, growing the buffer only as data arrive. */
    size_t need = (size_t)count * (size_t)t->size, have = 0, cap = 0;
    unsigned char *raw = NULL;
    while (have < need) {
        size_t want = need - have < IDX_CHUNK ? need - have : IDX_CHUNK;
        if (have + want > cap) {
            size_t ncap = cap ? 2 * cap : IDX_CHUNK;
            if (ncap > need) ncap = need;
            unsigned char *bigger = realloc(raw, ncap);
            if (!bigger) {
                free(raw);
                return tg__fail("%s: %s: out of memory for %zu bytes", op, path, ncap);
            }
            raw = bigger;
            cap = ncap;
        }
        r = read_exact(f, raw + have, want, &got, &why);
        have += got;
        if (r < 0) {
            free(raw);
            return tg__fail("%s: %s: cannot read the data (corrupt gzip data?): %s", op, path,
                            zlib_reason(path, why));
        }
        if (r > 0) {
            free(raw);
            return tg__fail("%s: %s: truncated: shape %s of %s needs %zu data bytes, found %zu", op,
                            path, tg__shp_raw(ndim, shape), t->name, need, have);
        }
    }
    unsigned char extra;
    r = read_exact(f, &extra, 1, &got, &why);
    if (r <= 0) {
        free(raw);
        if (r < 0)
            return tg__fail("%s: %s: cannot read (corrupt gzip data?): %s", op, path,
                            zlib_reason(path, why));
        return tg__fail("%s: %s: data continue past the %zu bytes that shape %s of %s needs", op,
                        path, need, tg__shp_raw(ndim, shape), t->name);
    }
    tg_tensor *out = tg_tensor_new(dt, ndim, shape);
    if (out)
        for (int64_t i = 0; i < count; i++)
            tg__set(out, i, idx_value(t, raw, i));
    free(raw);
    return out;
}

int tg_data_load_idx(const char *path, tg_dtype dt, tg_tensor **out) {
    static const char op[] = "tg_data_load_idx";
    if (out) *out = NULL;
    if (!path || !out) return tg__fail_soft("%s: path and out must not be NULL", op), -1;
    if (dt != TG_F32 && dt != TG_F64 && dt != TG_I64)
        return tg__fail_int("%s: dtype must be f32, f64 or i64, got %d", op, (int)dt);
    struct stat st;
    if (stat(path, &st) != 0)
        return tg__fail_int("%s: cannot open %s: %s", op, path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return tg__fail_int("%s: %s is not a regular file", op, path);
    gzFile f = gzopen(path, "rb");
    if (!f)
        return tg__fail_int("%s: cannot open %s: %s", op, path,
                            errno ? strerror(errno) : "out of memory");
    *out = read_idx(op, path, f, dt);
    gzclose(f);
    return *out ? 0 : -1;
}

int tg_data_load_idx_pair(const char *images_path, const char *labels_path, tg_dtype dt,
                          tg_tensor **X, tg_tensor **y) {
    static const char op[] = "tg_data_load_idx_pair";
    if (X) *X = NULL;
    if (y) *y = NULL;
    if (!images_path || !labels_path || !X || !y)
        return tg__fail_soft("%s: paths and outputs must not be NULL", op), -1;
    if (dt != TG_F32 && dt != TG_F64)
        return tg__fail_int("%s: dtype must be f32 or f64, got %d", op, (int)dt);
    tg_tensor *images = NULL, *labels = NULL;
    if (tg_data_load_idx(images_path, dt, &images) != 0 ||
        tg_data_load_idx(labels_path, TG_I64, &labels) != 0) {
        tg_tensor_free(images);
        const char *e = tg_error();
        char copy[512];
        snprintf(copy, sizeof copy, "%s", e ? e : "unknown error");
        /* "tg_data_load_idx: ..." -> "tg_data_load_idx_pair: ..." */
        const char *rest = strncmp(copy, "tg_data_load_idx: ", 18) == 0 ? copy + 18 : copy;
        return tg__fail_int("%s: %s", op, rest);
    }
    if (labels->ndim != 1 || labels->shape[0] != images->shape[0]) {
        tg__fail("%s: %s has %lld images but the labels of %s have shape %s", op, images_path,
                 (long long)images->shape[0], labels_path, tg__shp(labels));
        tg_tensor_free(images);
        tg_tensor_free(labels);
        return -1;
    }
    *X = images;
    *y = labels;
    return 0;
}
