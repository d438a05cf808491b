/*
 * internal.h — what the op layer (src/ops) and the nn layer need from the autodiff
 * core, not part of the public API. Names are tg__ (internal, non-static).
 *
 * Writing an op (every op is written the same way):
 *
 *     tg_tensor *tg_sin(tg_tensor *x) {
 *         if (!tg__check_float("tg_sin", x)) return NULL;          // 1. check
 *         tg_tensor *y = tg__tape_tensor(x->dtype, x->ndim, x->shape);  // 2. allocate
 *         if (!y) return NULL;
 *         kernel(x, y);                                              // 3. compute
 *         tg__node *n = tg__record("sin", y, 1, &x, sin_backward);  // 4. record
 *         if (n == TG__RECORD_FAILED) return NULL;
 *         if (n) n->d[0] = ...;           // scalar arguments the backward needs, if any
 *         return y;
 *     }
 *
 *     // gout: gradient of y; fills gin[i] for each input i that requires a gradient,
 *     // using ops only (so the backward is itself differentiable).
 *     static int sin_backward(const tg__node *n, tg_tensor *gout, tg_tensor **gin) {
 *         gin[0] = tg_mul(gout, tg_cos(n->in[0]));
 *         return gin[0] ? 0 : -1;
 *     }
 */
#ifndef TAPEGRAD_INTERNAL_H
#define TAPEGRAD_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>

#include "tapegrad.h"

/* ---- errors ---- */

/* Sets the thread's error message (printf-style). Always returns NULL so an op can
 * write `return tg__fail("tg_x: ...")`. */
void *tg__fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Sets a message only when none is set yet (used for NULL inputs). */
void *tg__fail_soft(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* tg__fail returning -1 for int functions. */
int tg__fail_int(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Shape formatting: a ring of thread-local buffers so several can appear in one
 * message: tg__fail("tg_add: shapes differ: %s + %s", tg__shp(a), tg__shp(b)). */
const char *tg__shp(const tg_tensor *t);
const char *tg__shp_raw(int ndim, const int64_t *shape);

/* The public function running on this thread, set by the argument checks every op
 * starts with (and by constructors and backward), so that an allocation failure deep
 * inside can name it: "tg_matmul: out of memory ...". */
extern _Thread_local const char *tg__op_name;

/* ---- the checked mode (tape.h) ----
 * Every tensor header carries tg__magic. TG__MAGIC_LIVE marks a live tensor; memory
 * released by a reset or rewind in checked mode is filled with TG__POISON_RESET or
 * TG__POISON_REWIND bytes, and a persistent tensor freed while the tape refers to it
 * is kept (until the next reset) with TG__MAGIC_FREED. */
#define TG__MAGIC_LIVE 0x7467a11eu
#define TG__MAGIC_FREED 0x7467f4eeu
#define TG__POISON_RESET 0xd1
#define TG__POISON_REWIND 0xd2
extern _Atomic int tg__checked;
static inline bool tg__checks_on(void) {
    return __builtin_expect(atomic_load_explicit(&tg__checked, memory_order_relaxed), 0);
}
/* In checked mode: true when x is live; otherwise false with an error
 * "<op>: <what> is a tape tensor released by tg_tape_reset" (or the other causes). */
bool tg__check_live(const char *op, const char *what, const tg_tensor *x);
/* In checked mode: every tensor the tape's nodes refer to is live (else false with an
 * error naming op, the node's position and its op). */
bool tg__check_tape_live(const char *op);
/* In checked mode, for tg_tensor_free: true when the tape refers to t; it then keeps t
 * (marked freed) and frees it at the next reset. */
bool tg__tape_keep_if_referenced(tg_tensor *t);

/* ---- memory ---- */
void *tg__alloc(size_t size); /* through the allocator hook; sets tg_error on failure */
void tg__release(void *p);

/* Bump allocation on this thread's tape arena, 64-byte aligned; NULL (tg_error set) on
 * failure. Released by tg_tape_reset/rewind. */
void *tg__arena_alloc(size_t size);

/* A new tape tensor (data uninitialised, grad NULL, requires_grad false), or NULL. */
tg_tensor *tg__tape_tensor(tg_dtype dt, int ndim, const int64_t *shape);
/* Same, with data zeroed. */
tg_tensor *tg__tape_zeros(tg_dtype dt, int ndim, const int64_t *shape);
/* A tape tensor that shares x's data (for reshape/detach). */
tg_tensor *tg__tape_view(tg_tensor *x, int ndim, const int64_t *shape);
/* A 0-d / full-shape tape constant (no history). */
tg_tensor *tg__tape_full(tg_dtype dt, int ndim, const int64_t *shape, double value);

/* ---- the tape ---- */

#define TG__NODE_INLINE 3

typedef struct tg__node tg__node;
/* Computes the gradients of the node's inputs from gout (the gradient of n->out).
 * Sets gin[i] for every i with n->in[i]->requires_grad (may leave NULL for a zero
 * gradient); all other gin[i] are left NULL. Must build results with ops. Returns 0,
 * or -1 with tg_error set. */
typedef int (*tg__backward_fn)(const tg__node *n, tg_tensor *gout, tg_tensor **gin);

struct tg__node {
    tg__node *prev; /* previous node on the tape (creation order) */
    size_t pos;     /* arena position before the node was allocated */
    const char *op; /* op name for printing, e.g. "matmul" */
    tg__backward_fn backward;
    tg_tensor *out; /* the op's result */
    int nin;        /* number of inputs */
    tg_tensor **in; /* inputs (points at inline_in when nin <= 3) */
    tg_tensor *inline_in[TG__NODE_INLINE];
    const tg_tensor *aux[2]; /* non-differentiable tensor arguments (indices, cond) */
    double d[2];             /* scalar arguments */
    int64_t i[4];            /* integer arguments (axes, flags, offsets) */
    void *extra;             /* op-specific data on the arena, or NULL */
};

/* True when an op with these inputs must record: grad mode on and some input
 * requires a gradient. */
bool tg__should_record(int nin, tg_tensor *const *in);

/* Records a node for y = op(in...) if tg__should_record; sets y->requires_grad and
 * y->tg__node. Returns the node (the op may then fill d, i, aux, extra), NULL when
 * nothing needed recording, or TG__RECORD_FAILED on allocation failure. */
#define TG__RECORD_FAILED ((tg__node *)(uintptr_t)1)
tg__node *tg__record(const char *op, tg_tensor *y, int nin, tg_tensor *const *in,
                     tg__backward_fn backward);

/* For backward closures of piecewise-constant ops (abs, relu, max, maximum, ...): c is
 * a constant computed from the values of in[0..nin) without history (a mask, a sign).
 * Records that c depends on those inputs with a zero derivative, as PyTorch does, so
 * that in a TG_CREATE_GRAPH sweep the gradient built from c requires a gradient when an
 * input does, and differentiates to zeros. Records nothing outside grad mode (plain
 * sweeps). Returns c, or NULL (c NULL, or allocation failure). */
tg_tensor *tg__derived_constant(tg_tensor *c, int nin, tg_tensor *const *in);

/* The newest node on this thread's tape, or NULL. */
tg__node *tg__tape_last(void);

/* ---- checks used by every op ---- */

/* x non-NULL (soft fail otherwise). */
bool tg__check_nonnull(const char *op, const tg_tensor *x);
/* x non-NULL and F32/F64. */
bool tg__check_float(const char *op, const tg_tensor *x);
/* a, b non-NULL, float and of equal dtype. */
bool tg__check_float2(const char *op, const tg_tensor *a, const tg_tensor *b);
/* For classification losses: scores [N, C] (float, N, C >= 1; `what` names them in
 * messages, e.g. "logits") and labels I64 [N] with every value in [0, C). */
bool tg__check_class_inputs(const char *op, const char *what, const tg_tensor *scores,
                            const tg_tensor *labels);
/* tg_softmax_cross_entropy with errors naming op (so a loss built on it names itself). */
tg_tensor *tg__softmax_cross_entropy(const char *op, tg_tensor *logits, const tg_tensor *labels);
/* Normalises axis (negative from the end) against ndim; false + error when out of
 * range. TG_ALL is not accepted here. */
bool tg__norm_axis(const char *op, const tg_tensor *x, int *axis);
/* NumPy broadcast of two shapes into out (ndim in *ondim). False + error naming op
 * when incompatible. */
bool tg__broadcast_shape(const char *op, const char *sym, int na, const int64_t *sa, int nb,
                         const int64_t *sb, int *ondim, int64_t *out);

/* The one checked shape product. A shape is valid when every dimension is >= 0 and the
 * product of its non-zero dimensions is at most TG__MAX_NUMEL: then no product of some
 * of its dimensions (numel, strides, outer/inner counts, byte sizes) can overflow.
 * Returns numel (0 when a dimension is 0), or -1 with the error
 * "<op>: shape [..] is too large" (or "... negative dimension ...") naming op. */
#define TG__MAX_NUMEL (INT64_MAX / 16)
int64_t tg__shape_numel(const char *op, int ndim, const int64_t *shape);
/* numel of a shape already known to be valid (a live tensor's, or part of one). */
int64_t tg__numel(int ndim, const int64_t *shape);
bool tg__shape_eq(int na, const int64_t *sa, int nb, const int64_t *sb);

/* True when `small` (leading 1s ignored) is a non-empty trailing part of `big`'s shape
 * with at least one dimension: broadcasting small against big repeats it row after
 * row (the bias add). The fast path of binary ops and of tg_sum_to. */
bool tg__is_row_of(int n_small, const int64_t *small, int n_big, const int64_t *big);

/* ---- strided iteration (the one broadcasting helper) ----
 * Walks an output of shape (ndim, shape) row by row. For each operand k its strides
 * (in elements, 0 on broadcast dimensions) are derived from its own shape aligned on
 * the right. For every innermost run of `n` output elements it calls
 *     fn(n, off_out, off[0..nops), inner_stride[0..nops), ctx)
 * with the element offsets of the run's start. Dimensions are coalesced where
 * possible so that the equal-shape case is one call with n = numel. */
typedef void (*tg__run_fn)(int64_t n, int64_t off_out, const int64_t *off,
                           const int64_t *inner_stride, void *ctx);
void tg__broadcast_walk(int ndim, const int64_t *shape, int nops, const int *op_ndim,
                        const int64_t *const *op_shape, tg__run_fn fn, void *ctx);

/* ---- helpers ---- */
tg_tensor *tg__ones_like(const tg_tensor *x);
static inline double tg__get(const tg_tensor *t, int64_t i) {
    switch (t->dtype) {
    case TG_F32:
        return ((const float *)t->data)[i];
    case TG_F64:
        return ((const double *)t->data)[i];
    default:
        return (double)((const int64_t *)t->data)[i];
    }
}
static inline void tg__set(tg_tensor *t, int64_t i, double v) {
    switch (t->dtype) {
    case TG_F32:
        ((float *)t->data)[i] = (float)v;
        break;
    case TG_F64:
        ((double *)t->data)[i] = v;
        break;
    default:
        ((int64_t *)t->data)[i] = (int64_t)v;
        break;
    }
}

/* Accumulates src into dst's data (same shape and dtype), for persistent gradients. */
void tg__accumulate_into(tg_tensor *dst, const tg_tensor *src);

#endif
