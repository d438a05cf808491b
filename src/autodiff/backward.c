/* backward.c — the reverse sweep, tg_backward, tg_grad, tg_zero_grad.
 *
 * During a sweep each tensor's private tg__acc holds the gradient accumulated so far.
 * Walking the nodes newest first, a node whose output has a gradient calls its
 * backward closure, and the gradients of its inputs are added into their tg__acc.
 * The creation order is a topological order, so by the time a node is reached every
 * use of its output (all of them newer) has already contributed. Afterwards the
 * gradients are delivered (into ->grad, or to the caller of tg_grad) and every
 * tg__acc is cleared again. */
#include <string.h>

#include "internal.h"

/* The one place gradients are accumulated. */
static int acc_add(tg_tensor *t, tg_tensor *g) {
    if (!t->tg__acc) {
        t->tg__acc = g;
        return 0;
    }
    tg_tensor *s = tg_add(t->tg__acc, g);
    if (!s) return -1;
    t->tg__acc = s;
    return 0;
}

/* Clears tg__acc on every tensor the sweep may have touched. */
static void clear_acc(tg__node *last, int ny, tg_tensor *const *ys) {
    for (tg__node *n = last; n; n = n->prev) {
        n->out->tg__acc = NULL;
        for (int i = 0; i < n->nin; i++)
            n->in[i]->tg__acc = NULL;
    }
    for (int i = 0; i < ny; i++)
        ys[i]->tg__acc = NULL;
}

static int check_seed(const char *op, const tg_tensor *y, const tg_tensor *dy) {
    if (!tg_same_shape(y, dy) || y->dtype != dy->dtype)
        return tg__fail_int("%s: seed %s %s does not match output %s %s", op, tg__shp(dy),
                            tg_dtype_name(dy->dtype), tg__shp(y), tg_dtype_name(y->dtype));
    return 0;
}

/* Seeds ys and sweeps back from `last`. The caller clears the accumulators. */
static int sweep(const char *op, tg__node *last, int ny, tg_tensor *const *ys,
                 tg_tensor *const *dys) {
    tg__op_name = op;
    for (int i = 0; i < ny; i++) {
        tg_tensor *seed;
        if (dys && dys[i]) {
            if (check_seed(op, ys[i], dys[i]) != 0) return -1;
            seed = (tg_tensor *)dys[i];
        } else {
            seed = tg__ones_like(ys[i]);
            if (!seed) return -1;
        }
        if (acc_add(ys[i], seed) != 0) return -1;
    }
    tg_tensor *local[8];
    for (tg__node *n = last; n; n = n->prev) {
        tg_tensor *g = n->out->tg__acc;
        if (!g) continue;
        tg_tensor **gin = local;
        if (n->nin > 8) {
            gin = tg__arena_alloc((size_t)n->nin * sizeof *gin);
            if (!gin) return -1;
        }
        for (int i = 0; i < n->nin; i++)
            gin[i] = NULL;
        if (n->backward(n, g, gin) != 0) {
            if (!tg_error()) tg__fail("%s: backward of %s failed", op, n->op);
            return -1;
        }
        for (int i = 0; i < n->nin; i++) {
            tg_tensor *x = n->in[i];
            if (!gin[i] || !x->requires_grad) continue;
            if (!tg_same_shape(gin[i], x) || gin[i]->dtype != x->dtype)
                return tg__fail_int("%s: internal error: backward of %s gave %s %s for input "
                                    "%s %s",
                                    op, n->op, tg__shp(gin[i]), tg_dtype_name(gin[i]->dtype),
                                    tg__shp(x), tg_dtype_name(x->dtype));
            if (acc_add(x, gin[i]) != 0) return -1;
        }
    }
    return 0;
}

/* Delivery of the accumulated gradients into ->grad happens in two phases so that a
 * failed backward changes no ->grad: first everything that can fail (allocating new
 * persistent gradients, summing into existing tape gradients) into a list of pending
 * updates; then, if all of it succeeded, the updates, which cannot fail. */
typedef struct {
    tg_tensor *t;     /* the tensor whose ->grad changes */
    tg_tensor *g;     /* its accumulated gradient (for persistent t) */
    tg_tensor *fresh; /* persistent t without ->grad: its new gradient tensor */
    tg_tensor *value; /* tape t: the new ->grad */
} pending;

/* Phase 1 for one tensor: appends its update to list (if it has a gradient to take). */
static int prepare(tg_tensor *t, pending *list, size_t *count) {
    tg_tensor *g = t->tg__acc;
    if (!g || !t->requires_grad) return 0;
    t->tg__acc = NULL; /* taken: a tensor seen again later is skipped */
    pending *u = &list[(*count)++];
    *u = (pending){t, g, NULL, NULL};
    if (t->tg__persistent) {
        if (!t->grad && !(u->fresh = tg_tensor_new(t->dtype, t->ndim, t->shape))) return -1;
    } else {
        u->value = t->grad ? tg_add(t->grad, g) : g;
        if (!u->value) return -1;
    }
    return 0;
}

static int deliver_all(const char *op, tg__node *last, tg_tensor *y) {
    tg__op_name = op;
    size_t cap = 1;
    for (tg__node *n = last; n; n = n->prev)
        cap += 1 + (size_t)n->nin;
    pending *list = tg__arena_alloc(cap * sizeof *list);
    if (!list) return -1;
    size_t count = 0;
    int rc = prepare(y, list, &count);
    for (tg__node *n = last; n && rc == 0; n = n->prev) {
        rc = prepare(n->out, list, &count);
        for (int i = 0; i < n->nin && rc == 0; i++)
            rc = prepare(n->in[i], list, &count);
    }
    if (rc != 0) {
        for (size_t k = 0; k < count; k++)
            tg_tensor_free(list[k].fresh);
        return -1;
    }
    for (size_t k = 0; k < count; k++) {
        pending *u = &list[k];
        if (u->t->tg__persistent) {
            if (u->fresh) u->t->grad = u->fresh;
            tg__accumulate_into(u->t->grad, u->g);
        } else {
            u->t->grad = u->value;
        }
    }
    return 0;
}

/* tg_backward (dy NULL: a ones seed) and tg_backward_seeded; op names the one called. */
static int backward(const char *op, tg_tensor *y, const tg_tensor *dy) {
    if (!y) return tg__fail_soft("%s: output is NULL", op), -1;
    if (tg__checks_on() &&
        (!tg__check_live(op, "the output", y) || (dy && !tg__check_live(op, "the seed", dy)) ||
         !tg__check_tape_live(op)))
        return -1;
    if (!y->requires_grad)
        return tg__fail_int("%s: output %s does not require a gradient (no input of "
                            "it requires one, or it was computed in no-grad mode)",
                            op, tg__shp(y));
    if (!dy && y->numel != 1)
        return tg__fail_int("%s: output %s has %lld elements; give a seed of its shape with "
                            "tg_backward_seeded",
                            op, tg__shp(y), (long long)y->numel);
    tg__node *last = tg__tape_last();
    bool mode = tg_set_grad_enabled(false);
    tg_tensor *dys[1] = {(tg_tensor *)dy};
    int rc = sweep(op, last, 1, &y, dy ? dys : NULL);
    if (rc == 0) rc = deliver_all(op, last, y);
    clear_acc(last, 1, &y);
    tg_set_grad_enabled(mode);
    return rc;
}

int tg_backward(tg_tensor *y) { return backward("tg_backward", y, NULL); }

int tg_backward_seeded(tg_tensor *y, const tg_tensor *dy) {
    /* A NULL seed is most likely a failed op: keep its message. */
    if (!dy)
        return tg__fail_soft("tg_backward_seeded: seed is NULL (tg_backward seeds a "
                             "one-element output with 1)"),
               -1;
    return backward("tg_backward_seeded", y, dy);
}

int tg_grad(int ny, tg_tensor *const *ys, tg_tensor *const *dys, int nx, tg_tensor *const *xs,
            tg_tensor **dxs_out, unsigned flags) {
    if (dxs_out)
        for (int i = 0; i < nx; i++)
            dxs_out[i] = NULL;
    if (ny < 1 || nx < 1 || !ys || !xs || !dxs_out)
        return tg__fail_int("tg_grad: need ny >= 1, nx >= 1 and non-NULL arrays (ny=%d, nx=%d)", ny,
                            nx);
    for (int i = 0; i < ny; i++)
        if (!ys[i]) return tg__fail_soft("tg_grad: ys[%d] is NULL", i), -1;
    for (int j = 0; j < nx; j++) {
        if (!xs[j]) return tg__fail_soft("tg_grad: xs[%d] is NULL", j), -1;
        if (xs[j]->dtype == TG_I64)
            return tg__fail_int("tg_grad: xs[%d] %s is i64 and has no gradient", j, tg__shp(xs[j]));
    }
    if (tg__checks_on()) {
        for (int i = 0; i < ny; i++)
            if (!tg__check_live("tg_grad", "an output (ys)", ys[i]) ||
                (dys && dys[i] && !tg__check_live("tg_grad", "a seed (dys)", dys[i])))
                return -1;
        for (int j = 0; j < nx; j++)
            if (!tg__check_live("tg_grad", "an input (xs)", xs[j])) return -1;
        if (!tg__check_tape_live("tg_grad")) return -1;
    }
    tg__node *last = tg__tape_last();
    bool mode = tg_set_grad_enabled((flags & TG_CREATE_GRAPH) != 0);
    int rc = sweep("tg_grad", last, ny, ys, dys);
    /* Read every result before clearing: xs may repeat or be among ys. */
    for (int j = 0; j < nx && rc == 0; j++)
        dxs_out[j] = xs[j]->tg__acc;
    clear_acc(last, ny, ys);
    for (int j = 0; j < nx && rc == 0; j++) {
        if (!dxs_out[j]) {
            dxs_out[j] = tg__tape_zeros(xs[j]->dtype, xs[j]->ndim, xs[j]->shape);
            if (!dxs_out[j]) rc = -1;
        }
    }
    tg_set_grad_enabled(mode);
    if (rc != 0)
        for (int j = 0; j < nx; j++)
            dxs_out[j] = NULL;
    return rc;
}

void tg_zero_grad(tg_tensor *t) {
    if (!t || !t->grad) return;
    if (t->grad->tg__persistent)
        memset(t->grad->data, 0, (size_t)t->grad->numel * tg_dtype_size(t->grad->dtype));
    else
        t->grad = NULL;
}
