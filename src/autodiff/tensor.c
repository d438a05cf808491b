/* tensor.c — persistent tensors, the allocator hook, element access. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tapegrad/function.h"

/* ---- allocator hook ---- */

static void *default_alloc(size_t size, void *ud) {
    (void)ud;
    return malloc(size);
}
static void default_release(void *p, void *ud) {
    (void)ud;
    free(p);
}
static tg_allocator allocator = {default_alloc, default_release, NULL};

void tg_set_allocator(const tg_allocator *a) {
    if (a && a->alloc && a->release)
        allocator = *a;
    else
        allocator = (tg_allocator){default_alloc, default_release, NULL};
}

_Thread_local const char *tg__op_name TG__TLS_FAST;

void *tg__try_alloc(size_t size) { return allocator.alloc(size ? size : 1, allocator.ud); }

void *tg__out_of_memory(size_t size) {
    return tg__fail("%s: out of memory (allocating %zu bytes)",
                    tg__op_name ? tg__op_name : "tapegrad", size);
}

void *tg__alloc(size_t size) {
    void *p = tg__try_alloc(size);
    return p ? p : tg__out_of_memory(size);
}

void tg__release(void *p) {
    if (p) allocator.release(p, allocator.ud);
}

/* ---- shapes ---- */

size_t tg_dtype_size(tg_dtype dt) {
    switch (dt) {
    case TG_F32:
        return 4;
    case TG_F64:
        return 8;
    case TG_I64:
        return 8;
    }
    return 0;
}

const char *tg_dtype_name(tg_dtype dt) {
    switch (dt) {
    case TG_F32:
        return "f32";
    case TG_F64:
        return "f64";
    case TG_I64:
        return "i64";
    }
    return "?";
}

int64_t tg__shape_numel(const char *op, int ndim, const int64_t *shape) {
    int64_t nonzero = 1;
    bool empty = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            tg__fail("%s: negative dimension in shape %s", op, tg__shp_raw(ndim, shape));
            return -1;
        }
        if (shape[i] == 0) {
            empty = true;
            continue;
        }
        if (nonzero > TG__MAX_NUMEL / shape[i]) {
            tg__fail("%s: shape %s is too large (more than %lld elements)", op,
                     tg__shp_raw(ndim, shape), (long long)TG__MAX_NUMEL);
            return -1;
        }
        nonzero *= shape[i];
    }
    return empty ? 0 : nonzero;
}

int64_t tg__numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

bool tg__shape_eq(int na, const int64_t *sa, int nb, const int64_t *sb) {
    if (na != nb) return false;
    for (int i = 0; i < na; i++)
        if (sa[i] != sb[i]) return false;
    return true;
}

bool tg_same_shape(const tg_tensor *a, const tg_tensor *b) {
    return a && b && tg__shape_eq(a->ndim, a->shape, b->ndim, b->shape);
}

/* Validates (dt, ndim, shape) for a constructor named op; on success *bytes is the
 * data size. Rejects sizes whose byte count would overflow. */
static bool check_shape(const char *op, tg_dtype dt, int ndim, const int64_t *shape,
                        size_t *bytes) {
    if (tg_dtype_size(dt) == 0) return tg__fail("%s: invalid dtype %d", op, (int)dt), false;
    if (ndim < 0 || ndim > TG_MAX_DIMS)
        return tg__fail("%s: ndim %d outside [0, %d]", op, ndim, TG_MAX_DIMS), false;
    if (ndim > 0 && !shape) return tg__fail("%s: shape is NULL with ndim %d", op, ndim), false;
    int64_t n = tg__shape_numel(op, ndim, shape);
    if (n < 0) return false;
    if ((uint64_t)n > (SIZE_MAX - 256) / tg_dtype_size(dt))
        return tg__fail("%s: shape %s is too large", op, tg__shp_raw(ndim, shape)), false;
    *bytes = (size_t)n * tg_dtype_size(dt);
    return true;
}

/* Fills the header fields shared by both kinds of tensor. */
static void init_header(tg_tensor *t, tg_dtype dt, int ndim, const int64_t *shape) {
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < TG_MAX_DIMS; i++)
        t->shape[i] = i < ndim ? shape[i] : 1;
    t->numel = tg__numel(ndim, shape);
    t->grad = NULL;
    t->requires_grad = false;
    t->tg__persistent = false;
    t->tg__view = false;
    t->tg__state = 0;
    t->tg__id = -1;
    t->tg__magic = TG__MAGIC_LIVE;
    t->tg__node = NULL;
    t->tg__acc = NULL;
    t->tg__name = NULL;
    t->tg__hooks = NULL;
}

#define HDR_BYTES ((sizeof(tg_tensor) + 63) & ~(size_t)63)

/* One allocation holds the header and (64-byte aligned) data; the data pointer is
 * aligned by hand because the hook promises only malloc alignment. */
static tg_tensor *persistent_new(const char *op, tg_dtype dt, int ndim, const int64_t *shape) {
    tg__op_name = op;
    size_t bytes;
    if (!check_shape(op, dt, ndim, shape, &bytes)) return NULL;
    char *mem = tg__alloc(HDR_BYTES + 64 + bytes);
    if (!mem) return NULL;
    tg_tensor *t = (tg_tensor *)mem;
    init_header(t, dt, ndim, shape);
    uintptr_t d = ((uintptr_t)(mem + sizeof(tg_tensor)) + 63) & ~(uintptr_t)63;
    t->data = (void *)d;
    t->tg__persistent = true;
    return t;
}

tg_tensor *tg_tensor_new(tg_dtype dt, int ndim, const int64_t *shape) {
    tg_tensor *t = persistent_new("tg_tensor_new", dt, ndim, shape);
    if (t) memset(t->data, 0, (size_t)t->numel * tg_dtype_size(dt));
    return t;
}

tg_tensor *tg_tensor_from(tg_dtype dt, int ndim, const int64_t *shape, const void *data) {
    tg_tensor *t = persistent_new("tg_tensor_from", dt, ndim, shape);
    if (!t) return NULL;
    size_t bytes = (size_t)t->numel * tg_dtype_size(dt);
    if (bytes && !data) {
        tg_tensor_free(t);
        return tg__fail("tg_tensor_from: data is NULL for shape %s", tg__shp_raw(ndim, shape));
    }
    if (bytes) memcpy(t->data, data, bytes);
    return t;
}

tg_tensor *tg_scalar(tg_dtype dt, double value) {
    tg_tensor *t = persistent_new("tg_scalar", dt, 0, NULL);
    if (t) tg__set(t, 0, value);
    return t;
}

/* ---- filled constructors ---- */

/* A value that an I64 tensor can hold exactly enough: finite and within int64's range
 * (it is truncated toward zero). */
static bool fits_i64(double v) { return v >= -0x1p63 && v < 0x1p63; }

static bool check_float_dt(const char *op, tg_dtype dt) {
    if (dt == TG_F32 || dt == TG_F64) return true;
    tg__fail("%s: dtype must be f32 or f64, got %s", op, tg_dtype_name(dt));
    return false;
}

tg_tensor *tg_tensor_full(tg_dtype dt, int ndim, const int64_t *shape, double value) {
    tg__op_name = "tg_tensor_full";
    if (dt == TG_I64 && !fits_i64(value))
        return tg__fail("tg_tensor_full: value %g does not fit an i64 tensor", value);
    tg_tensor *t = persistent_new("tg_tensor_full", dt, ndim, shape);
    if (t)
        for (int64_t i = 0; i < t->numel; i++)
            tg__set(t, i, value);
    return t;
}

tg_tensor *tg_tensor_arange(tg_dtype dt, double start, double stop, double step) {
    const char *op = "tg_tensor_arange";
    tg__op_name = op;
    if (!isfinite(start) || !isfinite(stop) || !isfinite(step) || step == 0.0)
        return tg__fail("%s: needs finite start, stop and a finite nonzero step, got %g, %g, %g",
                        op, start, stop, step);
    if (dt == TG_I64 &&
        (start != floor(start) || step != floor(step) || !fits_i64(start) || !fits_i64(stop)))
        return tg__fail("%s: an i64 range needs whole start and step within i64, got %g, %g", op,
                        start, step);
    double count = ceil((stop - start) / step);
    if (!(count < 0x1p62)) return tg__fail("%s: [%g, %g) by %g is too long", op, start, stop, step);
    int64_t n = count > 0 ? (int64_t)count : 0;
    tg_tensor *t = persistent_new(op, dt, 1, &n);
    if (t)
        for (int64_t i = 0; i < n; i++)
            tg__set(t, i, start + (double)i * step);
    return t;
}

tg_tensor *tg_tensor_linspace(tg_dtype dt, double start, double stop, int64_t n) {
    const char *op = "tg_tensor_linspace";
    tg__op_name = op;
    if (!check_float_dt(op, dt)) return NULL;
    if (!isfinite(start) || !isfinite(stop) || n < 0)
        return tg__fail("%s: needs finite start and stop and n >= 0, got %g, %g, %lld", op, start,
                        stop, (long long)n);
    tg_tensor *t = persistent_new(op, dt, 1, &n);
    if (!t) return NULL;
    double step = n > 1 ? (stop - start) / (double)(n - 1) : 0.0;
    for (int64_t i = 0; i < n; i++)
        tg__set(t, i, start + (double)i * step);
    if (n > 1) tg__set(t, n - 1, stop);
    return t;
}

tg_tensor *tg_tensor_eye(tg_dtype dt, int64_t n) {
    if (n < 0) return tg__fail("tg_tensor_eye: needs n >= 0, got %lld", (long long)n);
    tg_tensor *t = persistent_new("tg_tensor_eye", dt, 2, (const int64_t[]){n, n});
    if (!t) return NULL;
    memset(t->data, 0, (size_t)t->numel * tg_dtype_size(dt));
    for (int64_t i = 0; i < n; i++)
        tg__set(t, i * n + i, 1.0);
    return t;
}

/* A float tensor filled in row-major order by draw() (the thread generator). */
static tg_tensor *random_new(const char *op, tg_dtype dt, int ndim, const int64_t *shape,
                             double (*draw)(void)) {
    tg__op_name = op;
    if (!check_float_dt(op, dt)) return NULL;
    tg_tensor *t = persistent_new(op, dt, ndim, shape);
    if (t)
        for (int64_t i = 0; i < t->numel; i++)
            tg__set(t, i, draw());
    return t;
}

tg_tensor *tg_tensor_randn(tg_dtype dt, int ndim, const int64_t *shape) {
    return random_new("tg_tensor_randn", dt, ndim, shape, tg_rand_normal);
}

tg_tensor *tg_tensor_rand(tg_dtype dt, int ndim, const int64_t *shape) {
    return random_new("tg_tensor_rand", dt, ndim, shape, tg_rand_uniform);
}

tg_tensor *tg_tensor_clone(const tg_tensor *src) {
    if (!src) return tg__fail_soft("tg_tensor_clone: input is NULL");
    tg_tensor *t = tg_tensor_from(src->dtype, src->ndim, src->shape, src->data);
    if (t) t->requires_grad = src->requires_grad;
    return t;
}

void tg_tensor_free(tg_tensor *t) {
    if (!t || !t->tg__persistent) return;
    /* Checked mode: kept, with its gradient, until the tape lets go of it. */
    if (tg__checks_on() && tg__tape_keep_if_referenced(t)) return;
    tg_tensor_free(t->grad);
    tg_clear_hooks(t);
    tg__release(t->tg__name);
    t->tg__persistent = false; /* a use after free of the header fails the check above */
    t->tg__magic = TG__MAGIC_FREED;
    tg__release(t);
}

void tg_requires_grad(tg_tensor *t, bool on) {
    if (!t) return;
    if (on && t->dtype == TG_I64) {
        tg__fail("tg_requires_grad: an i64 tensor %s cannot require a gradient", tg__shp(t));
        return;
    }
    t->requires_grad = on;
}

double tg_item(const tg_tensor *t) {
    if (!t) return tg__fail_soft("tg_item: input is NULL"), NAN;
    if (t->numel != 1)
        return tg__fail("tg_item: tensor %s has %lld elements, not 1", tg__shp(t),
                        (long long)t->numel),
               NAN;
    return tg__get(t, 0);
}

double tg_tensor_get(const tg_tensor *t, int64_t i) {
    if (!t) return tg__fail_soft("tg_tensor_get: input is NULL"), NAN;
    if (i < 0 || i >= t->numel)
        return tg__fail("tg_tensor_get: index %lld out of range for %s", (long long)i, tg__shp(t)),
               NAN;
    return tg__get(t, i);
}

int tg_tensor_set(tg_tensor *t, int64_t i, double value) {
    if (!t) return tg__fail_soft("tg_tensor_set: input is NULL"), -1;
    if (!t->tg__persistent)
        return tg__fail_int("tg_tensor_set: %s is a tape tensor (results of ops are read-only)",
                            tg__shp(t));
    if (i < 0 || i >= t->numel)
        return tg__fail_int("tg_tensor_set: index %lld out of range for %s", (long long)i,
                            tg__shp(t));
    tg__set(t, i, value);
    return 0;
}

int tg_tensor_fill(tg_tensor *t, double value) {
    if (!t) return tg__fail_soft("tg_tensor_fill: input is NULL"), -1;
    if (!t->tg__persistent)
        return tg__fail_int("tg_tensor_fill: %s is a tape tensor (results of ops are read-only)",
                            tg__shp(t));
    for (int64_t i = 0; i < t->numel; i++)
        tg__set(t, i, value);
    return 0;
}

/* Names are kept out of line (most tensors have none): a persistent tensor's on the
 * heap, freed with it, a tape tensor's on the arena. */
enum { NAME_BYTES = 24 };

void tg_tensor_set_name(tg_tensor *t, const char *name) {
    if (!t) return;
    if (!t->tg__name) {
        t->tg__name = t->tg__persistent ? tg__alloc(NAME_BYTES) : tg__arena_alloc_small(NAME_BYTES);
        if (!t->tg__name) return; /* tg_error() says out of memory; the tensor stays unnamed */
    }
    snprintf(t->tg__name, NAME_BYTES, "%s", name ? name : "");
}

void tg__accumulate_into(tg_tensor *dst, const tg_tensor *src) {
    int64_t n = dst->numel;
    if (dst->dtype == TG_F64) {
        double *d = dst->data;
        const double *s = src->data;
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    } else {
        float *d = dst->data;
        const float *s = src->data;
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    }
}

tg_tensor *tg_empty(tg_dtype dt, int ndim, const int64_t *shape) {
    /* Called from inside a user function: the public function running stays named. */
    const char *running = tg__op_name;
    tg__op_name = "tg_empty";
    size_t bytes;
    tg_tensor *t =
        check_shape("tg_empty", dt, ndim, shape, &bytes) ? tg__tape_tensor(dt, ndim, shape) : NULL;
    tg__op_name = running;
    return t;
}
