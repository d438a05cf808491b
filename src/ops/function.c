/* function.c — user-defined ops (function.h): tg_apply records a node whose backward
 * calls the user's, on the same recording API (tg__record) as every built-in op. */
#include <stdio.h>
#include <string.h>

#include "ops_internal.h"
#include "tapegrad/function.h"

/* What the node keeps: the function (by pointer) and its ctx (the copy on the tape or
 * the caller's pointer). */
typedef struct {
    const tg_function *f;
    void *ctx;
} apply_record;

/* Replaces the current error message by "<prefix><message>". */
static void prefix_error(const char *fmt_prefix, const char *a, const char *b) {
    char why[200];
    const char *e = tg_error();
    snprintf(why, sizeof why, "%s", e ? e : "no message");
    tg__fail("%s: %s: %s: %s", a, b, fmt_prefix, why);
}

static int apply_backward(const tg__node *n, tg_tensor *gy, tg_tensor **gin) {
    const apply_record *r = n->extra;
    const char *sweep = tg__sweep_op();
    /* Grad mode is on in a sweep only with TG_CREATE_GRAPH. */
    if (r->f->once_differentiable && tg_is_grad_enabled())
        return tg__fail_int("%s: %s is once_differentiable (its backward uses raw loops) and "
                            "cannot be differentiated again (TG_CREATE_GRAPH)",
                            sweep, r->f->name);
    tg_clear_error();
    if (r->f->backward(n->in, n->out, gy, gin, r->ctx) != 0) {
        prefix_error("backward failed", sweep, r->f->name);
        tg__op_name = sweep;
        return -1;
    }
    tg__op_name = sweep;
    for (int i = 0; i < n->nin; i++) {
        tg_tensor *x = n->in[i];
        if (!x->requires_grad) {
            gin[i] = NULL; /* ignored, as documented */
            continue;
        }
        if (gin[i] && (!tg_same_shape(gin[i], x) || gin[i]->dtype != x->dtype))
            return tg__fail_int("%s: %s: backward gave a gradient %s %s for input %d %s %s", sweep,
                                r->f->name, tg__shp(gin[i]), tg_dtype_name(gin[i]->dtype), i,
                                tg__shp(x), tg_dtype_name(x->dtype));
    }
    return 0;
}

static bool check_function(const tg_function *f, int n, tg_tensor *const *in) {
    if (!f) return tg__fail("tg_apply: function is NULL"), false;
    const char *name = f->name ? f->name : "(unnamed)";
    if (!f->name || !f->forward || !f->backward)
        return tg__fail("tg_apply: %s: name, forward and backward must all be set", name), false;
    if (n < 0 || (n > 0 && !in))
        return tg__fail("tg_apply: %s: needs n >= 0 inputs and an input array, got n %d", name, n),
               false;
    for (int i = 0; i < n; i++)
        if (!tg__check_nonnull("tg_apply", in[i])) return false;
    return true;
}

static bool check_ctx(const tg_function *f, const void *ctx, size_t ctx_size) {
    if (ctx_size > 0 && !ctx)
        return tg__fail("tg_apply: %s: ctx is NULL with ctx_size %zu", f->name, ctx_size), false;
    return true;
}

tg_tensor *tg_apply(const tg_function *f, int n, tg_tensor *const *in, void *ctx, size_t ctx_size) {
    if (!check_function(f, n, in) || !check_ctx(f, ctx, ctx_size)) return NULL;
    bool record = tg__should_record(n, in);
    void *kept = ctx;
    if (record && ctx_size > 0) {
        kept = tg__arena_alloc(ctx_size); /* 64-byte aligned */
        if (!kept) return NULL;
        memcpy(kept, ctx, ctx_size);
    }
    bool mode = tg_set_grad_enabled(false);
    tg_clear_error();
    tg_tensor *y = f->forward(in, kept);
    tg_set_grad_enabled(mode);
    tg__op_name = "tg_apply";
    if (!y) {
        prefix_error("forward failed", "tg_apply", f->name);
        return NULL;
    }
    bool is_input = false;
    for (int i = 0; i < n; i++)
        is_input = is_input || y == in[i];
    if (is_input || y->tg__persistent || y->tg__node)
        return tg__fail("tg_apply: %s: forward must return a new tape tensor, got %s %s", f->name,
                        is_input            ? "an input"
                        : y->tg__persistent ? "a persistent tensor"
                                            : "a tensor with a history",
                        tg__shp(y));
    if (y->dtype == TG_I64) return y; /* not differentiable: no history */
    tg__node *node = tg__record(f->name, y, n, in, apply_backward);
    if (node == TG__RECORD_FAILED) return NULL;
    if (node) {
        apply_record *r = tg__arena_alloc(sizeof *r);
        if (!r) return NULL;
        *r = (apply_record){f, kept};
        node->extra = r;
    }
    return y;
}
