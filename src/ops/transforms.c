/* transforms.c — functional transforms (transforms.h): tg_jvp by the double-vjp
 * construction, tg_jacobian and tg_hessian row by row, and tg_checkpoint, a node whose
 * backward runs its forward again and sweeps that part of the tape. */
#include <stdio.h>
#include <string.h>

#include "ops_internal.h"
#include "tapegrad/transforms.h"

/* Replaces the current message by "<op>: <what>: <message>". */
static void *fail_within(const char *op, const char *what) {
    char why[200];
    const char *e = tg_error();
    snprintf(why, sizeof why, "%s", e ? e : "no message");
    return tg__fail("%s: %s: %s", op, what, why);
}

static bool check_args(const char *op, tg_fn f, int n, tg_tensor *const *x) {
    if (!f) return tg__fail("%s: function is NULL", op), false;
    if (n < 1 || !x)
        return tg__fail("%s: needs n >= 1 inputs and an input array, got n %d", op, n), false;
    for (int i = 0; i < n; i++)
        if (!tg__check_nonnull(op, x[i])) return false;
    return true;
}

static bool check_wrt(const char *op, int n, tg_tensor *const *x, int wrt) {
    if (wrt < 0 || wrt >= n) return tg__fail("%s: wrt %d outside [0, %d)", op, wrt, n), false;
    if (x[wrt]->dtype == TG_I64)
        return tg__fail("%s: input %d %s is i64 and has no derivative", op, wrt, tg__shp(x[wrt])),
               false;
    return true;
}

/* Tape tensors sharing the inputs' data, as leaves of their own: view i requires a
 * gradient when grad[i]. The caller's tensors are left untouched. */
static tg_tensor **leaf_views(int n, tg_tensor *const *x, const bool *grad) {
    tg_tensor **v = tg__arena_alloc((size_t)n * sizeof *v);
    if (!v) return NULL;
    for (int i = 0; i < n; i++) {
        if (!(v[i] = tg__tape_view(x[i], x[i]->ndim, x[i]->shape))) return NULL;
        v[i]->requires_grad = grad[i];
    }
    return v;
}

/* Runs f with grad mode on; checks its result. */
static tg_tensor *run_f(const char *op, tg_fn f, void *ctx, tg_tensor *const *in) {
    if (!tg_is_grad_enabled())
        return tg__fail("%s: grad mode is off (tg_set_grad_enabled(false))", op);
    tg_clear_error();
    tg_tensor *y = f(in, ctx);
    tg__op_name = op;
    if (!y) return fail_within(op, "f failed");
    if (y->dtype == TG_I64) return tg__fail("%s: f returned an i64 tensor %s", op, tg__shp(y));
    return y;
}

int tg_jvp(tg_fn f, void *ctx, int n, tg_tensor *const *x, tg_tensor *const *v, tg_tensor **y_out,
           tg_tensor **jv_out) {
    static const char op[] = "tg_jvp";
    if (y_out) *y_out = NULL;
    if (jv_out) *jv_out = NULL;
    tg__op_name = op;
    if (!check_args(op, f, n, x)) return -1;
    bool *grad = tg__arena_alloc((size_t)n * sizeof *grad);
    if (!grad) return -1;
    int k = 0;
    for (int i = 0; i < n; i++) {
        grad[i] = v && v[i];
        if (!grad[i]) continue;
        if (x[i]->dtype == TG_I64)
            return tg__fail_int("%s: input %d %s is i64 and takes no tangent", op, i,
                                tg__shp(x[i]));
        if (!tg_same_shape(v[i], x[i]) || v[i]->dtype != x[i]->dtype)
            return tg__fail_int("%s: tangent %d %s %s does not match input %s %s", op, i,
                                tg__shp(v[i]), tg_dtype_name(v[i]->dtype), tg__shp(x[i]),
                                tg_dtype_name(x[i]->dtype));
        k++;
    }
    tg_tensor **xv = leaf_views(n, x, grad);
    if (!xv) return -1;
    tg_tensor *y = run_f(op, f, ctx, xv);
    if (!y) return -1;
    tg_tensor *jv = NULL;
    if (k == 0 || !y->requires_grad) {
        jv = tg__tape_zeros(y->dtype, y->ndim, y->shape);
    } else {
        /* g(u) = J^T u for a dummy seed u, recorded; then J v = d (v . g(u)) / du. */
        tg_tensor **xs = tg__arena_alloc((size_t)k * 3 * sizeof *xs);
        if (!xs) return -1;
        tg_tensor **vs = xs + k, **gs = xs + 2 * k;
        for (int i = 0, j = 0; i < n; i++)
            if (grad[i]) {
                xs[j] = xv[i];
                vs[j++] = v[i];
            }
        tg_tensor *u = tg__tape_zeros(y->dtype, y->ndim, y->shape);
        if (!u) return -1;
        u->requires_grad = true;
        if (tg_grad(1, &y, &u, k, xs, gs, TG_CREATE_GRAPH) != 0 ||
            tg_grad(k, gs, vs, 1, &u, &jv, 0) != 0)
            return fail_within(op, "sweep failed"), -1;
    }
    if (!jv) return -1;
    if (y_out && !(*y_out = tg_detach(y))) return -1;
    if (jv_out) *jv_out = jv;
    return 0;
}

/* Rows d out[k] / d wrt for every element k of out, into res (numel(out) x numel(wrt)),
 * one sweep each; the tape is rewound after each row. */
static bool rows_by_sweeps(const char *op, tg_tensor *out, tg_tensor *wrt, tg_tensor *res) {
    tg_tensor *seed = tg__tape_zeros(out->dtype, out->ndim, out->shape);
    if (!seed) return false;
    size_t es = tg_dtype_size(wrt->dtype), row_bytes = (size_t)wrt->numel * es;
    size_t mark = tg_tape_mark();
    for (int64_t k = 0; k < out->numel; k++) {
        tg__set(seed, k, 1.0);
        tg_tensor *row;
        if (tg_grad(1, &out, &seed, 1, &wrt, &row, 0) != 0)
            return fail_within(op, "sweep failed"), false;
        memcpy((char *)res->data + (size_t)k * row_bytes, row->data, row_bytes);
        tg__set(seed, k, 0.0);
        tg_tape_rewind(mark);
    }
    return true;
}

/* The shape a ++ b, or false (error) when it has too many dimensions. */
static bool concat_shapes(const char *op, const tg_tensor *a, const tg_tensor *b, int *nd,
                          int64_t *shape) {
    if (a->ndim + b->ndim > TG_MAX_DIMS)
        return tg__fail("%s: the result would have %d dimensions (%s ++ %s), more than %d", op,
                        a->ndim + b->ndim, tg__shp(a), tg__shp(b), TG_MAX_DIMS),
               false;
    *nd = a->ndim + b->ndim;
    memcpy(shape, a->shape, (size_t)a->ndim * sizeof *shape);
    memcpy(shape + a->ndim, b->shape, (size_t)b->ndim * sizeof *shape);
    return true;
}

static tg_tensor **views_for(int n, tg_tensor *const *x, int wrt) {
    bool *grad = tg__arena_alloc((size_t)n * sizeof *grad);
    if (!grad) return NULL;
    for (int i = 0; i < n; i++)
        grad[i] = i == wrt;
    return leaf_views(n, x, grad);
}

/* What tg_jacobian and tg_hessian start with: the arguments checked, y = f(views of x)
 * recorded with x[wrt] requiring a gradient (its view in *wrt_view). NULL on error. */
static tg_tensor *record_f(const char *op, tg_fn f, void *ctx, int n, tg_tensor *const *x, int wrt,
                           tg_tensor **wrt_view) {
    tg__op_name = op;
    if (!check_args(op, f, n, x) || !check_wrt(op, n, x, wrt)) return NULL;
    tg_tensor **xv = views_for(n, x, wrt);
    if (!xv) return NULL;
    *wrt_view = xv[wrt];
    return run_f(op, f, ctx, xv);
}

tg_tensor *tg_jacobian(tg_fn f, void *ctx, int n, tg_tensor *const *x, int wrt) {
    static const char op[] = "tg_jacobian";
    tg_tensor *xw = NULL, *y = record_f(op, f, ctx, n, x, wrt, &xw);
    int nd;
    int64_t shape[TG_MAX_DIMS];
    if (!y || !concat_shapes(op, y, x[wrt], &nd, shape)) return NULL;
    tg_tensor *J = tg__tape_zeros(x[wrt]->dtype, nd, shape);
    if (!J) return NULL;
    if (y->requires_grad && !rows_by_sweeps(op, y, xw, J)) return NULL;
    return J;
}

tg_tensor *tg_hessian(tg_fn f, void *ctx, int n, tg_tensor *const *x, int wrt) {
    static const char op[] = "tg_hessian";
    tg_tensor *xw = NULL, *y = record_f(op, f, ctx, n, x, wrt, &xw);
    if (!y) return NULL;
    if (y->numel != 1) return tg__fail("%s: f must give one element, got %s", op, tg__shp(y));
    int nd;
    int64_t shape[TG_MAX_DIMS];
    if (!concat_shapes(op, x[wrt], x[wrt], &nd, shape)) return NULL;
    tg_tensor *H = tg__tape_zeros(x[wrt]->dtype, nd, shape);
    if (!H || !y->requires_grad) return H;
    tg_tensor *g;
    if (tg_grad(1, &y, NULL, 1, &xw, &g, TG_CREATE_GRAPH) != 0)
        return fail_within(op, "sweep failed");
    if (g->requires_grad && !rows_by_sweeps(op, g, xw, H)) return NULL;
    return H;
}

/* ---- tg_checkpoint ---- */

typedef struct {
    tg_fn f;
    void *ctx;
    tg__rand_state rng; /* the generator before the forward */
} checkpoint_record;

/* A tensor whose outer gradient is set aside while the replay is swept. */
typedef struct {
    tg_tensor *t;
    tg_tensor *saved; /* its tg__acc in the outer sweep */
    tg_tensor *grad;  /* its gradient from the replay */
} outside;

static char taken_mark;
#define TAKEN ((tg_tensor *)&taken_mark)

/* Appends t to list (once: a listed tensor's tg__acc is TAKEN until the sweep). */
static void set_aside(tg_tensor *t, outside *list, size_t *count) {
    if (t->tg__acc == TAKEN) return;
    list[(*count)++] = (outside){t, t->tg__acc, NULL};
    t->tg__acc = TAKEN;
}

/* The replay's sweep: seeds y2 with g and sweeps the replay's nodes (newer than stop),
 * with the outer sweep's gradients of every tensor the replay did not make (the inputs,
 * and anything f reached by itself) set aside. On success list[k].grad holds their
 * gradients from the replay. */
static int sweep_replay(const char *sweep, tg__node *stop, tg_tensor *y2, tg_tensor *g, int nin,
                        tg_tensor *const *in, outside *list, size_t *count) {
    tg__node *last = tg__tape_last();
    for (int i = 0; i < nin; i++)
        set_aside(in[i], list, count);
    for (tg__node *n = last; n != stop; n = n->prev)
        for (int i = 0; i < n->nin; i++) {
            tg_tensor *x = n->in[i];
            if (!x->tg__node || (stop && x->tg__node->pos <= stop->pos)) set_aside(x, list, count);
        }
    if (!y2->tg__node || y2->tg__node == stop || (stop && y2->tg__node->pos <= stop->pos))
        set_aside(y2, list, count);
    for (size_t k = 0; k < *count; k++)
        list[k].t->tg__acc = NULL;
    int rc = tg__sweep_range(sweep, last, stop, y2, g);
    for (size_t k = 0; k < *count && rc == 0; k++)
        list[k].grad = list[k].t->tg__acc;
    tg__sweep_clear(last, stop, y2);
    for (size_t k = 0; k < *count; k++)
        list[k].t->tg__acc = list[k].saved;
    return rc;
}

static int checkpoint_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    const checkpoint_record *r = n->extra;
    const char *sweep = tg__sweep_op();
    bool create = tg_is_grad_enabled(); /* on in a sweep only with TG_CREATE_GRAPH */
    /* Outside TG_CREATE_GRAPH the results are copied below a mark and the replay is
     * released; so they are allocated first. */
    tg_tensor **res = tg__arena_alloc((size_t)n->nin * sizeof *res);
    if (!res) return -1;
    for (int i = 0; i < n->nin; i++) {
        tg_tensor *x = n->in[i];
        res[i] = NULL;
        if (!create && x->requires_grad && !(res[i] = tg__tape_tensor(x->dtype, x->ndim, x->shape)))
            return -1;
    }
    size_t cap = (size_t)n->nin + 1;
    size_t mark = tg_tape_mark();
    tg__node *stop = tg__tape_last();
    tg__rand_state now;
    tg__rand_save(&now);
    tg__rand_restore(&r->rng);
    tg_set_grad_enabled(true);
    tg_clear_error();
    tg_tensor *y2 = r->f(n->in, r->ctx);
    tg_set_grad_enabled(create);
    tg__rand_restore(&now);
    tg__op_name = sweep;
    if (!y2) return fail_within(sweep, "checkpoint: replay of f failed"), -1;
    if (!tg_same_shape(y2, n->out) || y2->dtype != n->out->dtype)
        return tg__fail_int("%s: checkpoint: replay of f gave %s %s, the forward gave %s %s", sweep,
                            tg__shp(y2), tg_dtype_name(y2->dtype), tg__shp(n->out),
                            tg_dtype_name(n->out->dtype));
    for (tg__node *m = tg__tape_last(); m != stop; m = m->prev)
        cap += (size_t)m->nin;
    outside *list = tg__arena_alloc(cap * sizeof *list);
    if (!list) return -1;
    size_t count = 0;
    if (sweep_replay(sweep, stop, y2, g, n->nin, n->in, list, &count) != 0) return -1;
    /* list starts with the inputs (each once, in order); the rest f reached by itself. */
    bool keep = create;
    for (size_t k = 0; k < count; k++) {
        outside *o = &list[k];
        int i = 0;
        while (i < n->nin && n->in[i] != o->t)
            i++;
        if (i < n->nin) {
            gin[i] = o->t->requires_grad ? o->grad : NULL;
        } else if (o->grad && o->t->requires_grad) {
            if (tg__acc_add(o->t, o->grad) != 0) return -1;
            keep = true; /* that gradient lives above the mark */
        }
    }
    if (keep) return 0;
    for (int i = 0; i < n->nin; i++) {
        if (!gin[i]) continue;
        memcpy(res[i]->data, gin[i]->data, (size_t)gin[i]->numel * tg_dtype_size(gin[i]->dtype));
        gin[i] = res[i];
    }
    tg_tape_rewind(mark);
    return 0;
}

tg_tensor *tg_checkpoint(tg_fn f, void *ctx, int n, tg_tensor *const *in) {
    static const char op[] = "tg_checkpoint";
    tg__op_name = op;
    if (!check_args(op, f, n, in)) return NULL;
    tg__rand_state before;
    tg__rand_save(&before);
    bool record = tg__should_record(n, in);
    size_t mark = tg_tape_mark();
    bool mode = tg_set_grad_enabled(false);
    tg_clear_error();
    tg_tensor *y = f(in, ctx);
    tg_set_grad_enabled(mode);
    tg__op_name = op;
    if (!y) return fail_within(op, "f failed");
    if (!record || y->dtype == TG_I64) return y;
    bool is_input = false;
    for (int i = 0; i < n; i++)
        is_input = is_input || y == in[i];
    /* f's intermediates are released: only the result stays (a copy at the mark). The
     * node needs a result of its own when f returns an input or a persistent tensor. */
    if (is_input || y->tg__persistent) {
        tg_tape_rewind(mark);
        y = tg__tape_view(y, y->ndim, y->shape);
    } else {
        y = tg__tape_keep_only(mark, y);
    }
    if (!y) return NULL;
    tg__node *node = tg__record("checkpoint", y, n, in, checkpoint_backward);
    if (node == TG__RECORD_FAILED) return NULL;
    checkpoint_record *r = tg__arena_alloc(sizeof *r);
    if (!r) return NULL;
    *r = (checkpoint_record){f, ctx, before};
    node->extra = r;
    return y;
}
