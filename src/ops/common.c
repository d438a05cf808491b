/* common.c — the checks every op starts with, NumPy broadcasting of shapes, and the
 * one strided walker that every broadcasting kernel runs on. */
#include <string.h>

#include "../autodiff/internal.h"

bool tg__check_nonnull(const char *op, const tg_tensor *x) {
    tg__op_name = op;
    if (x) return !tg__checks_on() || tg__check_live(op, "input", x);
    tg__fail_soft("%s: input is NULL", op);
    return false;
}

bool tg__check_float(const char *op, const tg_tensor *x) {
    if (!tg__check_nonnull(op, x)) return false;
    if (x->dtype == TG_F32 || x->dtype == TG_F64) return true;
    tg__fail("%s: needs an f32 or f64 tensor, got %s %s", op, tg_dtype_name(x->dtype), tg__shp(x));
    return false;
}

bool tg__check_float2(const char *op, const tg_tensor *a, const tg_tensor *b) {
    if (!tg__check_nonnull(op, a) || !tg__check_nonnull(op, b)) return false;
    if (a->dtype != b->dtype) {
        tg__fail("%s: dtypes differ: %s %s and %s %s (use tg_cast)", op, tg_dtype_name(a->dtype),
                 tg__shp(a), tg_dtype_name(b->dtype), tg__shp(b));
        return false;
    }
    return tg__check_float(op, a);
}

bool tg__norm_axis(const char *op, const tg_tensor *x, int *axis) {
    int a = *axis;
    if (a < 0) a += x->ndim;
    if (a < 0 || a >= x->ndim) {
        tg__fail("%s: axis %d out of range for %s", op, *axis, tg__shp(x));
        return false;
    }
    *axis = a;
    return true;
}

/* The derivative of a derived constant is zero: explicit zeros, so that a tensor reached
 * only through it gets a zero gradient (as in PyTorch) rather than none. */
static int derived_constant_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    for (int i = 0; i < n->nin; i++) {
        tg_tensor *x = n->in[i];
        if (x->requires_grad && !(gin[i] = tg__tape_zeros(x->dtype, x->ndim, x->shape))) return -1;
    }
    return 0;
}

tg_tensor *tg__derived_constant(tg_tensor *c, int nin, tg_tensor *const *in) {
    if (!c) return NULL;
    if (tg__record("constant", c, nin, in, derived_constant_backward) == TG__RECORD_FAILED)
        return NULL;
    return c;
}

bool tg__broadcast_shape(const char *op, const char *sym, int na, const int64_t *sa, int nb,
                         const int64_t *sb, int *ondim, int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = i - (n - na), ib = i - (n - nb);
        int64_t da = ia >= 0 ? sa[ia] : 1, db = ib >= 0 ? sb[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            tg__fail("%s: shapes do not broadcast: %s %s %s", op, tg__shp_raw(na, sa), sym,
                     tg__shp_raw(nb, sb));
            return false;
        }
        out[i] = da == 1 ? db : da;
    }
    *ondim = n;
    return true;
}

bool tg__is_row_of(int n_small, const int64_t *small, int n_big, const int64_t *big) {
    int lead = 0;
    while (lead < n_small && small[lead] == 1)
        lead++;
    int k = n_small - lead;
    if (k == 0 || k > n_big) return false;
    for (int i = 0; i < k; i++)
        if (small[lead + i] != big[n_big - k + i] || small[lead + i] == 0) return false;
    return true;
}

enum { MAX_OPS = 4 };

void tg__broadcast_walk(int ndim, const int64_t *shape, int nops, const int *op_ndim,
                        const int64_t *const *op_shape, tg__run_fn fn, void *ctx) {
    int64_t dims[TG_MAX_DIMS], str[MAX_OPS][TG_MAX_DIMS];
    int nd = 0;
    /* Strides of each operand in the output's index space, 0 where it broadcasts. */
    int64_t cont[MAX_OPS];
    for (int k = 0; k < nops; k++)
        cont[k] = 1;
    int64_t rstr[MAX_OPS][TG_MAX_DIMS];
    for (int d = ndim - 1; d >= 0; d--) {
        if (shape[d] == 0) return;
        for (int k = 0; k < nops; k++) {
            int od = d - (ndim - op_ndim[k]);
            int64_t sz = od >= 0 ? op_shape[k][od] : 1;
            rstr[k][d] = sz == 1 ? 0 : cont[k];
            cont[k] *= sz;
        }
    }
    /* Drop size-1 dimensions and merge neighbours that are contiguous for everyone. */
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue;
        bool merge = nd > 0;
        for (int k = 0; k < nops && merge; k++)
            if (str[k][nd - 1] != rstr[k][d] * shape[d]) merge = false;
        if (merge) {
            dims[nd - 1] *= shape[d];
            for (int k = 0; k < nops; k++)
                str[k][nd - 1] = rstr[k][d];
        } else {
            dims[nd] = shape[d];
            for (int k = 0; k < nops; k++)
                str[k][nd] = rstr[k][d];
            nd++;
        }
    }
    int64_t off[MAX_OPS] = {0}, inner[MAX_OPS] = {0};
    if (nd == 0) {
        fn(1, 0, off, inner, ctx);
        return;
    }
    int64_t n = dims[nd - 1];
    for (int k = 0; k < nops; k++)
        inner[k] = str[k][nd - 1];
    int64_t idx[TG_MAX_DIMS] = {0};
    int64_t off_out = 0;
    for (;;) {
        fn(n, off_out, off, inner, ctx);
        off_out += n;
        int d = nd - 2;
        for (; d >= 0; d--) {
            idx[d]++;
            for (int k = 0; k < nops; k++)
                off[k] += str[k][d];
            if (idx[d] < dims[d]) break;
            for (int k = 0; k < nops; k++)
                off[k] -= str[k][d] * dims[d];
            idx[d] = 0;
        }
        if (d < 0) return;
    }
}
