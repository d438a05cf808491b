/* backward.c — the reverse sweep, tg_backward, tg_grad, tg_zero_grad.
 *
 * During a sweep each tensor's private tg__acc holds the gradient accumulated so far.
 * Walking the nodes newest first, a node whose output has a gradient calls its
 * backward closure, and the gradients of its inputs are added into their tg__acc.
 * The creation order is a topological order, so by the time a node is reached every
 * use of its output (all of them newer) has already contributed. Afterwards the
 * gradients are delivered (into ->grad, or to the caller of tg_grad) and every
 * tg__acc is cleared again.
 *
 * Scalar code: in a plain, full sweep (no TG_CREATE_GRAPH, no anomaly mode, not the
 * partial sweep of a checkpoint) a one-element F64 tensor without hooks accumulates its
 * gradient as a double in tg__sacc, marked by tg__acc == TG__SACC, and a node with a
 * scalar_backward (elementwise ops on such tensors) runs on doubles. The sums are the
 * same as with tensors, in the same order, so the results are the same bit for bit; a
 * tensor is made from the double only where a closure, a hook or the caller needs one. */
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "tapegrad/ops.h"

#define TG__SACC ((tg_tensor *)(uintptr_t)1)

/* Whether the running sweep keeps one-element F64 gradients as doubles (for
 * tg__acc_add, called from closures; the sweep itself passes it along). */
static _Thread_local bool sweep_scalars TG__TLS_FAST;

/* Whether t's gradient is kept as a double in a sweep that allows it. */
static inline bool scalar_acc(const tg_tensor *t, bool scalars) {
    return scalars && t->numel == 1 && t->dtype == TG_F64 && !t->tg__hooks;
}

/* t's accumulated gradient as a tensor (made from the double if it is one), or NULL. */
static tg_tensor *acc_tensor(const tg_tensor *t) {
    if (t->tg__acc != TG__SACC) return t->tg__acc;
    return tg__tape_full(t->dtype, t->ndim, t->shape, t->tg__sacc);
}

static int acc_add(tg_tensor *t, tg_tensor *g, bool scalars);

/* Adds the double v to t's gradient. */
static inline int acc_add_double(tg_tensor *t, double v, bool scalars) {
    if (!scalar_acc(t, scalars)) {
        tg_tensor *g = tg__tape_full(t->dtype, t->ndim, t->shape, v);
        return g ? acc_add(t, g, false) : -1;
    }
    if (t->tg__acc == TG__SACC) {
        t->tg__sacc += v;
    } else {
        t->tg__acc = TG__SACC;
        t->tg__sacc = v;
    }
    return 0;
}

/* Owned accumulators (plain sweeps, the same ones that keep doubles): a gradient tensor
 * that the accumulator made itself (a sum, or a slice's gradient spread to its input's
 * shape) and has handed to no one yet carries STATE_OWNED, and later gradients are added
 * into it in place (the same sums in the same order as tg_add, so the same values). The
 * mark goes as soon as the tensor leaves the accumulator: to a hook, to its node's
 * closure (which may pass it on as an input's gradient), to ->grad or to tg_grad. */
enum { STATE_OWNED = 8 };
static inline bool owned(const tg_tensor *g) {
    return g && g != TG__SACC && (g->tg__state & STATE_OWNED);
}
static inline void disown(tg_tensor *g) {
    if (g && g != TG__SACC) g->tg__state &= (uint8_t)~STATE_OWNED;
}

/* The one place gradients are accumulated. */
static int acc_add(tg_tensor *t, tg_tensor *g, bool scalars) {
    if (scalar_acc(t, scalars)) return acc_add_double(t, ((const double *)g->data)[0], true);
    if (!t->tg__acc) {
        t->tg__acc = g;
        return 0;
    }
    if (scalars && owned(t->tg__acc)) {
        tg__accumulate_into(t->tg__acc, g);
        return 0;
    }
    tg_tensor *s = tg_add(t->tg__acc, g);
    if (!s) return -1;
    if (scalars) s->tg__state |= STATE_OWNED;
    t->tg__acc = s;
    return 0;
}

bool tg__sweep_in_place(void) { return sweep_scalars; }

/* The rows of x's gradient a that the slice covers, plus g's (see tg__acc_add_slice). */
#define ADD_ROWS(T)                                                                                \
    for (int64_t o = 0; o < outer; o++) {                                                          \
        T *d = (T *)a->data + (o * len + start) * inner;                                           \
        const T *s = (const T *)g->data + o * k * inner;                                           \
        for (int64_t j = 0; j < k * inner; j++)                                                    \
            d[j] += s[j];                                                                          \
    }

/* y = x[.., start:start+k, ..] along axis: adds g (y's gradient) into that part of x's
 * accumulated gradient, made an owned full-size tensor first if it is not one (zeros
 * with g copied in, as the adjoint op embed gives, or a copy of what x had). */
int tg__acc_add_slice(tg_tensor *x, tg_tensor *g, int axis, int64_t start) {
    int64_t outer = 1, inner = 1, len = x->shape[axis], k = g->shape[axis];
    for (int i = 0; i < axis; i++)
        outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++)
        inner *= x->shape[i];
    size_t es = tg_dtype_size(x->dtype);
    tg_tensor *a = x->tg__acc;
    if (!owned(a)) {
        tg_tensor *z = tg__tape_tensor(x->dtype, x->ndim, x->shape);
        if (!z) return -1;
        z->tg__state |= STATE_OWNED;
        if (!a) { /* zeros, and g copied in */
            memset(z->data, 0, (size_t)z->numel * es);
            for (int64_t o = 0; o < outer; o++)
                memcpy((char *)z->data + (size_t)((o * len + start) * inner) * es,
                       (const char *)g->data + (size_t)(o * k * inner) * es,
                       (size_t)(k * inner) * es);
            x->tg__acc = z;
            return 0;
        }
        memcpy(z->data, a->data, (size_t)z->numel * es);
        x->tg__acc = a = z;
    }
    if (x->dtype == TG_F64)
        ADD_ROWS(double)
    else
        ADD_ROWS(float)
    return 0;
}
#undef ADD_ROWS

/* Clears tg__acc on every tensor a sweep from last down to stop (exclusive) may have
 * touched. */
static void clear_acc(tg__node *last, tg__node *stop, int ny, tg_tensor *const *ys) {
    for (tg__node *n = last; n && n != stop; n = n->prev) {
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

/* Copies the current message so that a new one can quote it. */
static void save_message(char *buf, size_t len) {
    const char *e = tg_error();
    snprintf(buf, len, "%s", e ? e : "no message");
}

/* Runs t's hooks on its complete gradient t->tg__acc, in registration order. */
static int run_hooks(const char *op, tg_tensor *t) {
    int k = 0;
    disown(t->tg__acc);
    for (tg__hook *h = t->tg__hooks; h; h = h->next, k++) {
        tg_clear_error();
        tg_tensor *g = h->fn(t->tg__acc, h->ctx);
        if (!g) {
            char why[200];
            save_message(why, sizeof why);
            return tg__fail_int("%s: hook %d on %s %s failed: %s", op, k, tg__shp(t),
                                tg_dtype_name(t->dtype), why);
        }
        if (!tg_same_shape(g, t) || g->dtype != t->dtype)
            return tg__fail_int("%s: hook %d on %s %s returned a gradient %s %s", op, k, tg__shp(t),
                                tg_dtype_name(t->dtype), tg__shp(g), tg_dtype_name(g->dtype));
        t->tg__acc = g;
    }
    return 0;
}

/* Numbers the sweeps of this thread so that a leaf's hooks run once per sweep. */
static _Thread_local unsigned sweep_count;

static int leaf_hooks(const char *op, tg_tensor *x, unsigned id) {
    if (!x->tg__hooks || !x->tg__acc || x->tg__node || x->tg__hooks->seen == id) return 0;
    x->tg__hooks->seen = id;
    return run_hooks(op, x);
}

/* Anomaly mode: the backward of node n (position pos) turned a finite gradient into
 * gx, the gradient of input i, which holds a non-finite value at bad. */
static int anomaly_backward(const char *op, const tg__node *n, size_t pos, int i,
                            const tg_tensor *gx, int64_t bad) {
    return tg__fail_int("%s: anomaly: the backward of %s (node %zu of the tape) turned a finite "
                        "gradient %s into %s at element %lld of the gradient of input %d %s",
                        op, n->op, pos, tg__shp(n->out), tg__value_name(tg__get(gx, bad)),
                        (long long)bad, i, tg__shp(n->in[i]));
}

/* Runs node n's backward closure on g and adds the gradients it gives into the inputs'
 * accumulators, checking each (shape, dtype; in anomaly mode, finiteness). */
static inline __attribute__((always_inline)) int run_node(const char *op, tg__node *n, tg_tensor *g,
                                                          tg_tensor **gin, bool anomaly,
                                                          bool scalars, size_t pos) {
    for (int i = 0; i < n->nin; i++)
        gin[i] = NULL;
    if (n->backward(n, g, gin) != 0) {
        if (!tg_error()) tg__fail("%s: backward of %s failed", op, n->op);
        return -1;
    }
    bool finite_in = anomaly && tg__first_nonfinite(g) < 0;
    for (int i = 0; i < n->nin; i++) {
        tg_tensor *x = n->in[i];
        if (!gin[i] || !x->requires_grad) continue;
        if (!tg_same_shape(gin[i], x) || gin[i]->dtype != x->dtype)
            return tg__fail_int("%s: internal error: backward of %s gave %s %s for input %s %s", op,
                                n->op, tg__shp(gin[i]), tg_dtype_name(gin[i]->dtype), tg__shp(x),
                                tg_dtype_name(x->dtype));
        if (finite_in) {
            int64_t bad = tg__first_nonfinite(gin[i]);
            if (bad >= 0) return anomaly_backward(op, n, pos, i, gin[i], bad);
        }
        if (acc_add(x, gin[i], scalars) != 0) return -1;
    }
    return 0;
}

/* Delivery of the accumulated gradients into ->grad happens in two phases so that a
 * failed backward changes no ->grad. Phase 1 (prepare) does everything that can fail:
 * a persistent tensor without ->grad gets a new zero gradient (tg__state FRESH), and a
 * tape tensor's new ->grad (its gradient, plus the ->grad it had) is made and left in
 * tg__acc (tg__state TAKEN). Phase 2 (commit), if all of it succeeded, makes the changes,
 * which cannot fail; otherwise roll_back frees the new gradients again. Both clear
 * tg__acc and tg__state.
 *
 * tg_backward prepares a node's output inside the sweep, as soon as its gradient is
 * complete (when the sweep reaches its node: every use of it is newer), while its header
 * is in the cache; the leaves (inputs without a node, complete only at the end) are
 * listed as the sweep meets them and prepared after it. The commit then walks the
 * nodes' outputs and the list. The state lives in the tensors, so none of this needs
 * memory per node. */
enum { STATE_TAKEN = 1, STATE_FRESH = 2, STATE_LISTED = 4 };

static int prepare(tg_tensor *t) {
    tg_tensor *g = t->tg__acc;
    if (!g || !t->requires_grad || (t->tg__state & (STATE_TAKEN | STATE_FRESH))) return 0;
    if (t->tg__persistent) {
        if (t->grad) {
            t->tg__state = STATE_TAKEN;
            return 0;
        }
        if (!(t->grad = tg_tensor_new(t->dtype, t->ndim, t->shape))) return -1;
        t->tg__state = STATE_FRESH;
        return 0;
    }
    if (g == TG__SACC) {
        if (t->ndim == 0) {
            if (!(g = tg__tape_scalar(TG_F64))) return -1;
            *(double *)g->data = t->tg__sacc;
        } else if (!(g = tg__tape_full(t->dtype, t->ndim, t->shape, t->tg__sacc))) {
            return -1;
        }
    }
    tg_tensor *v = t->grad ? tg_add(t->grad, g) : g;
    if (!v) return -1;
    t->tg__acc = v;
    t->tg__state = STATE_TAKEN;
    return 0;
}

static void commit(tg_tensor *t) {
    if (t->tg__state & (STATE_TAKEN | STATE_FRESH)) {
        disown(t->tg__acc);
        if (!t->tg__persistent)
            t->grad = t->tg__acc;
        else if (t->tg__acc == TG__SACC)
            ((double *)t->grad->data)[0] += t->tg__sacc;
        else
            tg__accumulate_into(t->grad, t->tg__acc);
    }
    t->tg__state = 0;
    t->tg__acc = NULL;
}

static void roll_back(tg_tensor *t) {
    if (t->tg__state & STATE_FRESH) {
        tg_tensor_free(t->grad);
        t->grad = NULL;
    }
    t->tg__state = 0;
    t->tg__acc = NULL;
}

/* The outputs a delivering sweep prepared, for the commit to visit without walking the
 * tape again (a walk from node to node waits on every load); in chunks on the arena. */
enum { CHUNK = 510 };
typedef struct out_chunk {
    struct out_chunk *prev;
    size_t n;
    tg_tensor *t[CHUNK];
} out_chunk;

/* The leaves a delivering sweep met (on the arena, grown by doubling), and its outputs. */
typedef struct {
    tg_tensor **t;
    size_t n, cap;
    out_chunk *outs;
} leaf_list;

static int list_out(leaf_list *lv, tg_tensor *t) {
    out_chunk *c = lv->outs;
    if (!c || c->n == CHUNK) {
        if (!(c = tg__arena_alloc(sizeof *c))) return -1;
        c->prev = lv->outs;
        c->n = 0;
        lv->outs = c;
    }
    c->t[c->n++] = t;
    return 0;
}

static int list_leaf(leaf_list *lv, tg_tensor *x) {
    if (x->tg__state & STATE_LISTED) return 0;
    if (lv->n == lv->cap) {
        size_t cap = lv->cap ? 2 * lv->cap : 32;
        tg_tensor **t = tg__arena_alloc_small(cap * sizeof *t);
        if (!t) return -1;
        if (lv->n) memcpy(t, lv->t, lv->n * sizeof *t);
        lv->t = t;
        lv->cap = cap;
    }
    lv->t[lv->n++] = x;
    x->tg__state |= STATE_LISTED;
    return 0;
}

/* After a successful sweep from last (y its output): phase 1 for y and the leaves, then
 * phase 2, or the roll-back; clears the sweep's accumulators either way. */
static int deliver_all(tg__node *last, tg_tensor *y, leaf_list *lv) {
    int rc = prepare(y);
    for (size_t k = 0; k < lv->n && rc == 0; k++)
        rc = prepare(lv->t[k]);
    if (rc != 0) {
        roll_back(y);
        for (tg__node *n = last; n; n = n->prev) {
            roll_back(n->out);
            for (int i = 0; i < n->nin; i++)
                roll_back(n->in[i]);
        }
        return -1;
    }
    commit(y);
    for (size_t k = 0; k < lv->n; k++)
        commit(lv->t[k]);
    for (out_chunk *c = lv->outs; c; c = c->prev)
        for (size_t k = 0; k < c->n; k++) {
            if (k + 8 < c->n) __builtin_prefetch(c->t[k + 8], 1);
            commit(c->t[k]);
        }
    return 0;
}

/* In a delivering sweep, after node n's backward: prepares n's output (its gradient is
 * complete) and lists the leaves among its inputs that got a gradient. */
static inline int delivery_step(tg__node *n, leaf_list *lv) {
    for (int i = 0; i < n->nin; i++) {
        tg_tensor *x = n->in[i];
        if (!x->tg__node && x->tg__acc && list_leaf(lv, x) != 0) return -1;
    }
    if (prepare(n->out) != 0) return -1;
    return n->out->tg__state ? list_out(lv, n->out) : 0;
}

/* Seeds ys and sweeps back from `last` to `stop` (exclusive). The caller clears the
 * accumulators. */
static inline __attribute__((always_inline)) int
sweep_nodes(const char *op, tg__node *last, tg__node *stop, int ny, tg_tensor *const *ys,
            tg_tensor *const *dys, unsigned mode, leaf_list *lv) {
    bool anomaly = mode & TG__SWEEP_ANOMALY, scalars = sweep_scalars;
    for (int i = 0; i < ny; i++) {
        tg_tensor *seed;
        if (dys && dys[i]) {
            if (check_seed(op, ys[i], dys[i]) != 0) return -1;
            seed = (tg_tensor *)dys[i];
        } else if (scalar_acc(ys[i], scalars)) {
            acc_add_double(ys[i], 1.0, true);
            continue;
        } else {
            seed = tg__ones_like(ys[i]);
            if (!seed) return -1;
        }
        if (acc_add(ys[i], seed, scalars) != 0) return -1;
    }
    tg_tensor *local[8];
    size_t pos = anomaly && last == tg__tape_last() ? tg_tape_size() : 0; /* for messages */
    for (tg__node *n = last; n && n != stop; n = n->prev, pos--) {
        /* The walk waits on each node and output header it reaches; ask for the next
         * node's output and the one after it while this one works. (Scalar code's
         * nodes are small and close together: the hardware's prefetch does it.) */
        tg__node *p = n->prev;
        if (p && !n->scalar_backward) {
            __builtin_prefetch(p->prev);
            __builtin_prefetch(p->out);
        }
        tg_tensor *g = n->out->tg__acc;
        if (!g) continue;
        if (g == TG__SACC) {
            if (n->scalar_backward) {
                double gs[2];
                n->scalar_backward(n, n->out->tg__sacc, gs);
                for (int i = 0; i < n->nin; i++)
                    if (n->in[i]->requires_grad && acc_add_double(n->in[i], gs[i], true) != 0)
                        return -1;
                if (lv && delivery_step(n, lv) != 0) return -1;
                continue;
            }
            if (!(g = acc_tensor(n->out))) return -1;
        }
        if (n->out->tg__hooks) {
            if (run_hooks(op, n->out) != 0) return -1;
            g = n->out->tg__acc;
        }
        disown(g);
        tg_tensor **gin = local;
        if (n->nin > 8) {
            gin = tg__arena_alloc((size_t)n->nin * sizeof *gin);
            if (!gin) return -1;
        }
        if (run_node(op, n, g, gin, anomaly, scalars, pos) != 0) return -1;
        if (lv && delivery_step(n, lv) != 0) return -1;
    }
    if (!stop && (mode & TG__SWEEP_HOOKS)) { /* a partial sweep's leaves are not complete yet */
        unsigned id = ++sweep_count;
        for (int i = 0; i < ny; i++)
            if (leaf_hooks(op, ys[i], id) != 0) return -1;
        for (tg__node *n = last; n && n != stop; n = n->prev)
            for (int i = 0; i < n->nin; i++)
                if (leaf_hooks(op, n->in[i], id) != 0) return -1;
    }
    return 0;
}

/* The public function whose sweep is running on this thread (for closures that name
 * it in messages: the ops they call overwrite tg__op_name). */
static _Thread_local const char *sweep_op;

const char *tg__sweep_op(void) { return sweep_op ? sweep_op : "tg_backward"; }

/* create: the sweep records (TG_CREATE_GRAPH). */
/* lv: the sweep of tg_backward, which prepares the delivery as it goes (see above). */
static int sweep(const char *op, tg__node *last, tg__node *stop, int ny, tg_tensor *const *ys,
                 tg_tensor *const *dys, bool create, leaf_list *lv) {
    tg__op_name = op;
    const char *outer = sweep_op;
    bool outer_scalars = sweep_scalars;
    sweep_op = op;
    unsigned mode = tg__sweep_begin();
    sweep_scalars = !create && !stop && !(mode & TG__SWEEP_ANOMALY);
    int rc = sweep_nodes(op, last, stop, ny, ys, dys, mode, lv);
    tg__sweep_end();
    sweep_op = outer;
    sweep_scalars = outer_scalars;
    return rc;
}

int tg__sweep_range(const char *op, tg__node *last, tg__node *stop, tg_tensor *y, tg_tensor *g) {
    return sweep(op, last, stop, 1, &y, &g, tg_is_grad_enabled(), NULL);
}

int tg__acc_add(tg_tensor *t, tg_tensor *g) { return acc_add(t, g, sweep_scalars); }

void tg__sweep_clear(tg__node *last, tg__node *stop, tg_tensor *y) { clear_acc(last, stop, 1, &y); }

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
    leaf_list lv = {NULL, 0, 0, NULL};
    int rc = sweep(op, last, NULL, 1, &y, dy ? dys : NULL, false, &lv);
    if (rc == 0) {
        tg__op_name = op;
        rc = deliver_all(last, y, &lv); /* clears the accumulators */
    } else {
        for (tg__node *n = last; n; n = n->prev) { /* frees nothing: only leaves are FRESH */
            roll_back(n->out);
            for (int i = 0; i < n->nin; i++)
                roll_back(n->in[i]);
        }
        roll_back(y);
    }
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
    int rc = sweep("tg_grad", last, NULL, ny, ys, dys, (flags & TG_CREATE_GRAPH) != 0, NULL);
    /* Read every result before clearing: xs may repeat or be among ys. */
    for (int j = 0; j < nx && rc == 0; j++)
        if (xs[j]->tg__acc && !(dxs_out[j] = acc_tensor(xs[j])))
            rc = -1;
        else
            disown(dxs_out[j]);
    clear_acc(last, NULL, ny, ys);
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
    tg_tensor *g = t->grad;
    if (g->tg__persistent) {
        if (g->numel == 1 && g->dtype == TG_F64) /* scalar code zeroes a gradient per step */
            *(double *)g->data = 0.0;
        else
            memset(g->data, 0, (size_t)g->numel * tg_dtype_size(g->dtype));
    } else
        t->grad = NULL;
}
