/* io.c — safetensors files (io.h): atomic writer and a validating reader. The JSON
 * header is built and parsed with cJSON. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "nn_internal.h"
#include "tapegrad/io.h"

/* The reference implementation refuses headers over 100 MB; so do we. */
#define MAX_HEADER 100000000ull
#define META_KEY "__metadata__"

static const char *st_dtype_name(tg_dtype dt) {
    switch (dt) {
    case TG_F32:
        return "F32";
    case TG_F64:
        return "F64";
    case TG_I64:
        return "I64";
    }
    return NULL;
}

static bool st_dtype_parse(const char *s, tg_dtype *dt) {
    static const tg_dtype all[] = {TG_F32, TG_F64, TG_I64};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (strcmp(s, st_dtype_name(all[i])) == 0) {
            *dt = all[i];
            return true;
        }
    return false;
}

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Copies n bytes of elements of size es from src to dst, converting between host order
 * and little-endian (the same operation both ways). */
static void copy_le(void *dst, const void *src, size_t n, size_t es) {
    if (n == 0) return;
    memcpy(dst, src, n);
    if (host_is_little_endian()) return;
    unsigned char *p = dst;
    for (size_t i = 0; i + es <= n; i += es)
        for (size_t a = 0, b = es - 1; a < b; a++, b--) {
            unsigned char t = p[i + a];
            p[i + a] = p[i + b];
            p[i + b] = t;
        }
}

/* ---------------- save ---------------- */

/* The JSON header (unpadded) for the tensors, from cJSON's allocator; NULL on failure. */
static char *build_header(int n, const char *const *names, tg_tensor *const *tensors) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_CreateObject();
    if (!root || !meta) goto fail_meta;
    if (!cJSON_AddStringToObject(meta, "producer", "tapegrad")) goto fail_meta;
    cJSON_AddItemToObject(root, META_KEY, meta);
    meta = NULL;
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const tg_tensor *t = tensors[i];
        cJSON *e = cJSON_CreateObject();
        if (!e) goto fail;
        cJSON_AddItemToObject(root, names[i], e);
        if (!cJSON_AddStringToObject(e, "dtype", st_dtype_name(t->dtype))) goto fail;
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        cJSON *offs = shape ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        if (!offs) goto fail;
        for (int d = 0; d < t->ndim; d++) {
            cJSON *v = cJSON_CreateNumber((double)t->shape[d]);
            if (!v) goto fail;
            cJSON_AddItemToArray(shape, v);
        }
        uint64_t end = off + (uint64_t)t->numel * tg_dtype_size(t->dtype);
        cJSON *b = cJSON_CreateNumber((double)off), *en = cJSON_CreateNumber((double)end);
        if (b) cJSON_AddItemToArray(offs, b);
        if (en) cJSON_AddItemToArray(offs, en);
        if (!b || !en) goto fail;
        off = end;
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s) tg__fail("tg_safetensors_save: out of memory building the header");
    return s;
fail_meta:
    cJSON_Delete(meta);
fail:
    cJSON_Delete(root);
    tg__fail("tg_safetensors_save: out of memory building the header");
    return NULL;
}

static bool write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n; }

/* Writes a tensor's data little-endian, through a small buffer on big-endian hosts. */
static bool write_tensor(FILE *f, const tg_tensor *t) {
    size_t es = tg_dtype_size(t->dtype), n = (size_t)t->numel * es;
    if (host_is_little_endian()) return write_all(f, t->data, n);
    unsigned char buf[4096];
    const unsigned char *src = t->data;
    for (size_t i = 0; i < n; i += sizeof buf) {
        size_t k = n - i < sizeof buf ? n - i : sizeof buf;
        copy_le(buf, src + i, k, es);
        if (!write_all(f, buf, k)) return false;
    }
    return true;
}

/* fsync of the directory holding path, so the rename itself is durable. Best effort:
 * some file systems refuse to sync a directory. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 1;
    if (slash && len == 0) len = 1; /* "/file" */
    char *dir = tg__alloc(len + 1);
    if (!dir) return;
    memcpy(dir, slash ? path : ".", len);
    dir[len] = '\0';
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    tg__release(dir);
}

int tg_safetensors_save(const char *path, int n, const char *const *names,
                        tg_tensor *const *tensors) {
    static const char op[] = "tg_safetensors_save";
    if (!path || n < 0 || (n > 0 && (!names || !tensors)))
        return tg__fail_int("%s: path, names and tensors must not be NULL and n >= 0 (n = %d)", op,
                            n);
    for (int i = 0; i < n; i++) {
        if (!tensors[i])
            return tg__fail_int("%s: tensor %d (\"%s\") is NULL", op, i, names[i] ? names[i] : "?");
        if (!names[i] || !names[i][0] || strcmp(names[i], META_KEY) == 0)
            return tg__fail_int("%s: tensor %d has an empty or reserved name", op, i);
        if (!st_dtype_name(tensors[i]->dtype))
            return tg__fail_int("%s: tensor \"%s\" has an unknown dtype", op, names[i]);
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return tg__fail_int("%s: name \"%s\" appears twice", op, names[i]);
    }

    char *json = build_header(n, names, tensors);
    if (!json) return -1;
    size_t jlen = strlen(json), hlen = (jlen + 7) / 8 * 8;
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));

    size_t plen = strlen(path);
    char *tmp = tg__alloc(plen + 16);
    if (!tmp) {
        cJSON_free(json);
        return -1;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp-XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        tg__fail("%s: cannot create a temporary file next to %s: %s", op, path, strerror(errno));
        cJSON_free(json);
        tg__release(tmp);
        return -1;
    }
    (void)fchmod(fd, 0644);
    FILE *f = fdopen(fd, "wb");
    bool ok = f != NULL;
    if (!f) close(fd);
    ok = ok && write_all(f, lenbuf, 8) && write_all(f, json, jlen);
    for (size_t i = jlen; ok && i < hlen; i++)
        ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < n; i++)
        ok = write_tensor(f, tensors[i]);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved = errno;
    if (f && fclose(f) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    cJSON_free(json);
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        unlink(tmp);
        tg__release(tmp);
        return tg__fail_int("%s: cannot write %s: %s", op, path, strerror(saved));
    }
    tg__release(tmp);
    sync_parent_dir(path);
    return 0;
}

/* ---------------- load ---------------- */

/* One entry of the header, after validation. */
typedef struct {
    const char *name; /* points into the cJSON tree */
    tg_dtype dtype;
    int ndim;
    int64_t shape[TG_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

/* A non-negative integer that a double represents exactly. */
static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d)) return false;
    *out = (uint64_t)d;
    return true;
}

static int parse_entry(const char *path, const cJSON *e, st_entry *out) {
    static const char op[] = "tg_safetensors_load";
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return tg__fail_int("%s: %s: entry \"%s\" is not a JSON object", op, path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return tg__fail_int("%s: %s: entry \"%s\" lacks a dtype string, a shape array or a "
                            "data_offsets array",
                            op, path, name);
    out->name = name;
    if (!st_dtype_parse(dt->valuestring, &out->dtype))
        return tg__fail_int("%s: %s: entry \"%s\" has dtype \"%s\"; only F32, F64 and I64 are "
                            "supported",
                            op, path, name, dt->valuestring);
    int nd = cJSON_GetArraySize(shape);
    if (nd > TG_MAX_DIMS)
        return tg__fail_int("%s: %s: entry \"%s\" has %d dimensions (at most %d)", op, path, name,
                            nd, TG_MAX_DIMS);
    out->ndim = nd;
    int d = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, shape) {
        uint64_t s;
        if (!json_uint(v, &s))
            return tg__fail_int("%s: %s: entry \"%s\": shape[%d] is not a non-negative integer", op,
                                path, name, d);
        if (s > (uint64_t)TG__MAX_NUMEL)
            return tg__fail_int("%s: %s: entry \"%s\": shape is too large", op, path, name);
        out->shape[d++] = (int64_t)s;
    }
    int64_t count = tg__shape_numel(op, nd, out->shape);
    if (count < 0) return tg__fail_int("%s: %s: entry \"%s\": shape is too large", op, path, name);
    uint64_t numel = (uint64_t)count;
    uint64_t b, en;
    if (cJSON_GetArraySize(offs) != 2 || !json_uint(cJSON_GetArrayItem(offs, 0), &b) ||
        !json_uint(cJSON_GetArrayItem(offs, 1), &en) || en < b)
        return tg__fail_int("%s: %s: entry \"%s\": data_offsets must be [begin, end] with "
                            "0 <= begin <= end",
                            op, path, name);
    uint64_t want = numel * tg_dtype_size(out->dtype);
    if (en - b != want)
        return tg__fail_int("%s: %s: entry \"%s\": data_offsets [%llu, %llu] span %llu bytes "
                            "but dtype %s and its shape need %llu",
                            op, path, name, (unsigned long long)b, (unsigned long long)en,
                            (unsigned long long)(en - b), dt->valuestring,
                            (unsigned long long)want);
    out->begin = b;
    out->end = en;
    return 0;
}

static int cmp_begin(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Validates the header entries against each other and the data size: sorted by begin
 * they must tile [0, data_len) exactly. */
static int check_layout(const char *path, st_entry *ents, int m, uint64_t data_len) {
    static const char op[] = "tg_safetensors_load";
    st_entry **order = tg__alloc(sizeof *order * (size_t)(m > 0 ? m : 1));
    if (!order) return -1;
    for (int i = 0; i < m; i++)
        order[i] = &ents[i];
    qsort(order, (size_t)m, sizeof *order, cmp_begin);
    uint64_t at = 0;
    int rc = 0;
    for (int i = 0; i < m && rc == 0; i++) {
        const st_entry *e = order[i];
        if (e->begin < at)
            rc = tg__fail_int("%s: %s: data of \"%s\" [%llu, %llu) overlaps the previous "
                              "tensor's (ending at %llu)",
                              op, path, e->name, (unsigned long long)e->begin,
                              (unsigned long long)e->end, (unsigned long long)at);
        else if (e->begin > at)
            rc = tg__fail_int("%s: %s: a gap in the data before \"%s\" (bytes %llu to %llu)", op,
                              path, e->name, (unsigned long long)at, (unsigned long long)e->begin);
        else if (e->end > data_len)
            rc = tg__fail_int("%s: %s: data of \"%s\" ends at byte %llu but the file holds only "
                              "%llu bytes of data (truncated?)",
                              op, path, e->name, (unsigned long long)e->end,
                              (unsigned long long)data_len);
        at = e->end;
    }
    if (rc == 0 && at != data_len)
        rc = tg__fail_int("%s: %s: the tensors cover %llu bytes of data but the file holds %llu",
                          op, path, (unsigned long long)at, (unsigned long long)data_len);
    tg__release(order);
    return rc;
}

/* Reads exactly n bytes at the current position; distinguishes a short file. */
static int read_exact(FILE *f, void *p, size_t n, const char *path, const char *what) {
    if (fread(p, 1, n, f) == n) return 0;
    if (ferror(f))
        return tg__fail_int("tg_safetensors_load: %s: cannot read the %s: %s", path, what,
                            strerror(errno));
    return tg__fail_int("tg_safetensors_load: %s: file ends inside the %s (truncated)", path, what);
}

int tg_safetensors_load(const char *path, int n, const char *const *names,
                        tg_tensor *const *tensors) {
    static const char op[] = "tg_safetensors_load";
    if (!path || n < 0 || (n > 0 && (!names || !tensors)))
        return tg__fail_int("%s: path, names and tensors must not be NULL and n >= 0 (n = %d)", op,
                            n);
    for (int i = 0; i < n; i++) {
        if (!names[i] || !tensors[i]) return tg__fail_int("%s: name or tensor %d is NULL", op, i);
        if (!tensors[i]->tg__persistent)
            return tg__fail_int("%s: tensor \"%s\" is a tape tensor; load into persistent "
                                "tensors",
                                op, names[i]);
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return tg__fail_int("%s: name \"%s\" is requested twice", op, names[i]);
    }

    int rc = -1;
    char *header = NULL;
    unsigned char *data = NULL;
    cJSON *root = NULL;
    st_entry *ents = NULL;
    int *match = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return tg__fail_int("%s: cannot open %s: %s", op, path, strerror(errno));

    struct stat stbuf;
    if (fstat(fileno(f), &stbuf) != 0) {
        tg__fail("%s: cannot stat %s: %s", op, path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(stbuf.st_mode)) {
        tg__fail("%s: %s is not a regular file", op, path);
        goto done;
    }
    uint64_t fsize = (uint64_t)stbuf.st_size;
    unsigned char lenbuf[8];
    if (read_exact(f, lenbuf, 8, path, "8-byte header length") != 0) goto done;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)lenbuf[i] << (8 * i);
    if (hlen > MAX_HEADER) {
        tg__fail("%s: %s: header length %llu is absurd (limit %llu): not a safetensors file?", op,
                 path, (unsigned long long)hlen, (unsigned long long)MAX_HEADER);
        goto done;
    }
    if (hlen > fsize - 8) {
        tg__fail("%s: %s: header of %llu bytes does not fit in a file of %llu bytes (truncated)",
                 op, path, (unsigned long long)hlen, (unsigned long long)fsize);
        goto done;
    }
    if (hlen < 2) {
        tg__fail("%s: %s: header of %llu bytes cannot hold a JSON object", op, path,
                 (unsigned long long)hlen);
        goto done;
    }
    header = tg__alloc((size_t)hlen + 1);
    if (!header || read_exact(f, header, (size_t)hlen, path, "header") != 0) goto done;
    header[hlen] = '\0';
    root = cJSON_ParseWithLength(header, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        tg__fail("%s: %s: the header is not a valid JSON object", op, path);
        goto done;
    }

    /* Validate every entry, whether requested or not. */
    int m = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) m++;
    ents = tg__alloc(sizeof *ents * (size_t)(m > 0 ? m : 1));
    if (!ents) goto done;
    int k = 0;
    bool seen_meta = false;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, META_KEY) == 0) {
            const cJSON *v;
            bool good = cJSON_IsObject(e) && !seen_meta;
            if (good) cJSON_ArrayForEach(v, e) good = good && cJSON_IsString(v);
            if (!good) {
                tg__fail("%s: %s: \"%s\" must appear once and map strings to strings", op, path,
                         META_KEY);
                goto done;
            }
            seen_meta = true;
            continue;
        }
        for (int j = 0; j < k; j++)
            if (strcmp(ents[j].name, e->string) == 0) {
                tg__fail("%s: %s: entry \"%s\" appears twice", op, path, e->string);
                goto done;
            }
        if (parse_entry(path, e, &ents[k]) != 0) goto done;
        k++;
    }
    m = k;
    uint64_t data_len = fsize - 8 - hlen;
    if (check_layout(path, ents, m, data_len) != 0) goto done;

    /* Match requests to entries: each exactly once, same dtype and shape. */
    match = tg__alloc(sizeof *match * (size_t)(n > 0 ? n : 1));
    if (!match) goto done;
    for (int i = 0; i < n; i++) {
        match[i] = -1;
        for (int j = 0; j < m && match[i] < 0; j++)
            if (strcmp(ents[j].name, names[i]) == 0) match[i] = j;
        if (match[i] < 0) {
            tg__fail("%s: %s: no tensor named \"%s\" in the file", op, path, names[i]);
            goto done;
        }
        const st_entry *en = &ents[match[i]];
        const tg_tensor *t = tensors[i];
        if (en->dtype != t->dtype || !tg__shape_eq(en->ndim, en->shape, t->ndim, t->shape)) {
            tg__fail("%s: %s: \"%s\" is %s %s in the file but the tensor is %s %s", op, path,
                     names[i], tg_dtype_name(en->dtype), tg__shp_raw(en->ndim, en->shape),
                     tg_dtype_name(t->dtype), tg__shp(t));
            goto done;
        }
    }
    if (m != n) {
        /* Some entry was not requested: name the first one. */
        for (int j = 0; j < m; j++) {
            bool wanted = false;
            for (int i = 0; i < n && !wanted; i++)
                wanted = match[i] == j;
            if (!wanted) {
                tg__fail("%s: %s: the file holds a tensor \"%s\" that was not asked for (%d "
                         "tensors in the file, %d requested)",
                         op, path, ents[j].name, m, n);
                goto done;
            }
        }
    }

    /* Read all the data into scratch memory, then copy. */
    data = tg__alloc(data_len > 0 ? (size_t)data_len : 1);
    if (!data || read_exact(f, data, (size_t)data_len, path, "tensor data") != 0) goto done;
    for (int i = 0; i < n; i++) {
        const st_entry *en = &ents[match[i]];
        copy_le(tensors[i]->data, data + en->begin, (size_t)(en->end - en->begin),
                tg_dtype_size(en->dtype));
    }
    rc = 0;
done:
    fclose(f);
    cJSON_Delete(root);
    tg__release(header);
    tg__release(ents);
    tg__release(match);
    tg__release(data);
    return rc;
}
