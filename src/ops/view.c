/* view.c — reshape, detach, broadcast_to and its adjoint sum_to. */
#include <string.h>

#include "ops_internal.h"

/* ---- reshape ---- */

static int reshape_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[0];
    return (gin[0] = tg_reshape(g, x->ndim, x->shape)) ? 0 : -1;
}

tg_tensor *tg_reshape(tg_tensor *x, int ndim, const int64_t *shape) {
    if (!tg__check_nonnull("tg_reshape", x)) return NULL;
    if (ndim < 0 || ndim > TG_MAX_DIMS || (ndim > 0 && !shape))
        return tg__fail("tg_reshape: bad target ndim %d for %s", ndim, tg__shp(x));
    int64_t s[TG_MAX_DIMS];
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0) {
            infer = i;
            s[i] = 1; /* counted as 1 while the other dimensions are checked */
        } else if (s[i] < 0) {
            return tg__fail("tg_reshape: bad target shape %s for %s", tg__shp_raw(ndim, shape),
                            tg__shp(x));
        }
    }
    int64_t known = tg__shape_numel("tg_reshape", ndim, s);
    if (known < 0) return NULL;
    if (infer >= 0) {
        if (known == 0 || x->numel % known != 0)
            return tg__fail("tg_reshape: cannot infer -1 in %s from %s", tg__shp_raw(ndim, shape),
                            tg__shp(x));
        s[infer] = x->numel / known;
        known *= s[infer];
    }
    if (known != x->numel)
        return tg__fail("tg_reshape: %s has %lld elements, target %s has %lld", tg__shp(x),
                        (long long)x->numel, tg__shp_raw(ndim, shape), (long long)known);
    tg_tensor *y = tg__tape_view(x, ndim, s);
    if (!y) return NULL;
    if (tg__record("reshape", y, 1, &x, reshape_backward) == TG__RECORD_FAILED) return NULL;
    return y;
}

tg_tensor *tg_detach(tg_tensor *x) {
    if (!tg__check_nonnull("tg_detach", x)) return NULL;
    return tg__tape_view(x, x->ndim, x->shape);
}

/* ---- broadcast_to / sum_to ---- */

/* What the tg__broadcast_walk callbacks of both ops read: input data, output data and
 * their dtype. */
typedef struct {
    const void *x;
    void *y;
    tg_dtype dt;
} copy_ctx;

/* The target of broadcast_to / sum_to: 0..TG_MAX_DIMS dimensions of sizes >= 0. */
static bool check_target(const char *op, const tg_tensor *x, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > TG_MAX_DIMS || (ndim > 0 && !shape)) {
        tg__fail("%s: bad target ndim %d for %s", op, ndim, tg__shp(x));
        return false;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            tg__fail("%s: bad target shape %s", op, tg__shp_raw(ndim, shape));
            return false;
        }
    return tg__shape_numel(op, ndim, shape) >= 0;
}

static void bcast_run(int64_t n, int64_t oo, const int64_t *off, const int64_t *st, void *vc) {
    const copy_ctx *c = vc;
    size_t es = tg_dtype_size(c->dt);
    const char *x = (const char *)c->x + off[0] * (int64_t)es;
    char *y = (char *)c->y + oo * (int64_t)es;
    if (st[0] == 1) {
        memcpy(y, x, (size_t)n * es);
    } else if (c->dt == TG_F32) {
        float v = *(const float *)x;
        for (int64_t i = 0; i < n; i++)
            ((float *)y)[i] = v;
    } else {
        int64_t v;
        memcpy(&v, x, 8);
        for (int64_t i = 0; i < n; i++)
            memcpy(y + i * 8, &v, 8);
    }
}

/* True when `from` broadcasts to `to` exactly (to's shape unchanged). */
static bool broadcasts_to(int nf, const int64_t *sf, int nt, const int64_t *st) {
    if (nf > nt) return false;
    for (int i = 0; i < nf; i++) {
        int64_t a = sf[nf - 1 - i], b = st[nt - 1 - i];
        if (a != b && a != 1) return false;
    }
    return true;
}

static int broadcast_to_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[0];
    return (gin[0] = tg_sum_to(g, x->ndim, x->shape)) ? 0 : -1;
}

tg_tensor *tg_broadcast_to(tg_tensor *x, int ndim, const int64_t *shape) {
    if (!tg__check_nonnull("tg_broadcast_to", x)) return NULL;
    if (!check_target("tg_broadcast_to", x, ndim, shape)) return NULL;
    if (!broadcasts_to(x->ndim, x->shape, ndim, shape))
        return tg__fail("tg_broadcast_to: %s does not broadcast to %s", tg__shp(x),
                        tg__shp_raw(ndim, shape));
    tg_tensor *y = tg__tape_tensor(x->dtype, ndim, shape);
    if (!y) return NULL;
    copy_ctx c = {x->data, y->data, x->dtype};
    tg__broadcast_walk(ndim, shape, 1, (const int[]){x->ndim}, (const int64_t *const[]){x->shape},
                       bcast_run, &c);
    if (tg__record("broadcast_to", y, 1, &x, broadcast_to_backward) == TG__RECORD_FAILED)
        return NULL;
    return y;
}

/* sum_to walks the big input x; operand 0 is the small output with stride 0 on the
 * summed dimensions, so each run adds x's elements into y (a row sum when the run's
 * output stride is 0, an elementwise add when it is 1). */

#define SUMTO_RUN(NAME, T, ROW_SUM)                                                                \
    static void NAME(int64_t n, int64_t ox, const int64_t *off, const int64_t *st, void *vc) {     \
        const copy_ctx *c = vc;                                                                    \
        const T *x = (const T *)c->x + ox;                                                         \
        T *y = (T *)c->y + off[0];                                                                 \
        if (st[0] == 1) {                                                                          \
            for (int64_t i = 0; i < n; i++)                                                        \
                y[i] += x[i];                                                                      \
        } else {                                                                                   \
            y[0] += (T)ROW_SUM(x, n);                                                              \
        }                                                                                          \
    }
SUMTO_RUN(sumto_f32, float, tg__row_sum_f32)
SUMTO_RUN(sumto_f64, double, tg__row_sum_f64)

static int sum_to_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[0];
    return (gin[0] = tg_broadcast_to(g, x->ndim, x->shape)) ? 0 : -1;
}

tg_tensor *tg_sum_to(tg_tensor *x, int ndim, const int64_t *shape) {
    if (!tg__check_float("tg_sum_to", x)) return NULL;
    if (!check_target("tg_sum_to", x, ndim, shape)) return NULL;
    if (!broadcasts_to(ndim, shape, x->ndim, x->shape))
        return tg__fail("tg_sum_to: %s cannot be summed to %s (the target must broadcast to the "
                        "input)",
                        tg__shp(x), tg__shp_raw(ndim, shape));
    tg_tensor *y = tg__tape_zeros(x->dtype, ndim, shape);
    if (!y) return NULL;
    copy_ctx c = {x->data, y->data, x->dtype};
    tg__run_fn run = x->dtype == TG_F64 ? sumto_f64 : sumto_f32;
    if (tg__is_row_of(ndim, shape, x->ndim, x->shape)) {
        /* The bias gradient: add up the rows of x. */
        for (int64_t at = 0; at < x->numel; at += y->numel)
            run(y->numel, at, (const int64_t[]){0}, (const int64_t[]){1}, &c);
    } else {
        tg__broadcast_walk(x->ndim, x->shape, 1, (const int[]){ndim},
                           (const int64_t *const[]){shape}, run, &c);
    }
    if (tg__record("sum_to", y, 1, &x, sum_to_backward) == TG__RECORD_FAILED) return NULL;
    return y;
}
