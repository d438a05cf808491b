/*
 * internal.h — the autodiff core's internal header: what the op layer (src/ops) needs
 * from the core (errors, the arena, tape tensors, the node and tg__record, the checked
 * mode, shapes). Not part of the public API; names are tg__ (internal, non-static).
 * The ops' own shared helpers and what the nn layer needs from ops are in
 * src/ops/ops_internal.h, which includes this one. The public extension API
 * (tapegrad/function.h: tg_apply, tg_empty) is built on tg__record and
 * tg__tape_tensor below.
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
#include <stddef.h>

#include "tapegrad/random.h"
#include "tapegrad/tape.h"
#include "tapegrad/tensor.h"

/* Everything declared in the internal headers stays inside the shared library: the
 * library exports the public API of include/ and nothing else (scripts/check_exports.sh).
 * Closed at the end of the header. */
#pragma GCC visibility push(hidden)

/* Thread-locals read on every op use the initial-exec model: a shared library then
 * reaches them at a fixed offset from the thread pointer instead of calling
 * __tls_get_addr. They are kept small (glibc reserves some static TLS for libraries
 * loaded later with dlopen). */
#define TG__TLS_FAST __attribute__((tls_model("initial-exec")))

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
extern _Thread_local const char *tg__op_name TG__TLS_FAST;

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
void *tg__alloc(size_t size);         /* through the allocator hook; sets tg_error on failure */
void *tg__try_alloc(size_t size);     /* the same, leaving tg_error alone: a failure is handled */
void *tg__out_of_memory(size_t size); /* sets tg_error's "out of memory" for size; NULL */
void tg__release(void *p);

/* Bump allocation on this thread's tape arena, 64-byte aligned; NULL (tg_error set) on
 * failure. Released by tg_tape_reset/rewind. */
void *tg__arena_alloc(size_t size);
/* The same, 16-byte aligned: for small records (nodes, lists of pointers). */
void *tg__arena_alloc_small(size_t size);

/* A new tape tensor (data uninitialised, grad NULL, requires_grad false), or NULL. */
tg_tensor *tg__tape_tensor(tg_dtype dt, int ndim, const int64_t *shape);
/* A new 0-d tape tensor (data uninitialised), or NULL with an out-of-memory error
 * naming tg__op_name: the one-element results of scalar code, without the shape checks. */
tg_tensor *tg__tape_scalar(tg_dtype dt);
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
/* The same backward on plain doubles, for a node whose output and inputs all have one
 * element and dtype F64 (scalar code): given g, the gradient of n->out, sets gin[i] for
 * each input i (at most 2) that requires a gradient. Plain sweeps (without
 * TG_CREATE_GRAPH) use it instead of the tensor closure, so scalar code sweeps without
 * allocating; it must give the same doubles as the closure, bit for bit. */
typedef void (*tg__scalar_backward_fn)(const tg__node *n, double g, double *gin);

struct tg__node {
    tg__node *prev; /* previous node on the tape (creation order) */
    const char *op; /* op name for printing, e.g. "matmul" */
    tg__backward_fn backward;
    tg__scalar_backward_fn scalar_backward; /* or NULL; see tg__scalar_backward_fn */
    tg_tensor *out;                         /* the op's result */
    tg_tensor **in;                         /* inputs (points at inline_in when nin <= 3) */
    int nin;                                /* number of inputs */
    bool small;  /* recorded by tg__record_small: TG__NODE_SMALL bytes (no aux, i, extra) */
    size_t pos;  /* arena position before the node was allocated */
    double d[2]; /* scalar arguments */
    tg_tensor *inline_in[TG__NODE_INLINE]; /* a small node ends after inline_in[1] */
    const tg_tensor *aux[2];               /* non-differentiable tensor arguments (indices, cond) */
    int64_t i[4];                          /* integer arguments (axes, flags, offsets) */
    void *extra;                           /* op-specific data on the arena, or NULL */
};
/* The bytes of a small node: up to two inputs, and no aux, i or extra. */
#define TG__NODE_SMALL (offsetof(tg__node, inline_in) + 2 * sizeof(tg_tensor *))

/* True when an op with these inputs must record: grad mode on and some input
 * requires a gradient. */
bool tg__should_record(int nin, tg_tensor *const *in);

/* Records a node for y = op(in...) if tg__should_record; sets y->requires_grad and
 * y->tg__node. Returns the node (the op may then fill d, i, aux, extra), NULL when
 * nothing needed recording, or TG__RECORD_FAILED on allocation failure. */
#define TG__RECORD_FAILED ((tg__node *)(uintptr_t)1)
tg__node *tg__record(const char *op, tg_tensor *y, int nin, tg_tensor *const *in,
                     tg__backward_fn backward);
/* The same for an op whose node uses in, out and d only (elementwise ops): a node with
 * at most 2 inputs is allocated without aux, i and extra, which must then not be
 * touched (n->small says so). Scalar code is made of such ops, and a node is a third of
 * its tape. */
tg__node *tg__record_small(const char *op, tg_tensor *y, int nin, tg_tensor *const *in,
                           tg__backward_fn backward);

/* Releases everything made on the tape since mark except y's values: returns a new
 * tape tensor (no history) holding a copy of y, allocated at mark; NULL (error set) on
 * allocation failure. For tg_checkpoint, whose forward's intermediates are not kept. */
tg_tensor *tg__tape_keep_only(size_t mark, tg_tensor *y);

/* Sets n->scalar_backward to fn when n (may be NULL or TG__RECORD_FAILED) qualifies:
 * its output has one element of dtype F64 (so do its inputs: broadcasting cannot shrink)
 * and it has at most 2 inputs. */
static inline void tg__set_scalar_backward(tg__node *n, tg__scalar_backward_fn fn) {
    if (n && n != TG__RECORD_FAILED && n->out->numel == 1 && n->out->dtype == TG_F64 && n->nin <= 2)
        n->scalar_backward = fn;
}

/* The newest node on this thread's tape, or NULL. */
tg__node *tg__tape_last(void);

/* ---- sweeps (backward.c) ----
 * A sweep over part of the tape, for ops whose backward runs a forward again
 * (tg_checkpoint): adds g to y's accumulated gradient and sweeps the nodes from last
 * back to, not including, stop (NULL: the whole tape), running the hooks of the
 * intermediates it reaches (not those of its leaves, whose gradients are not complete)
 * and the anomaly checks like tg_backward. The gradients are left in the tg__acc fields: the caller
 * reads what it needs and then calls tg__sweep_clear with the same arguments. op names
 * the public function in messages. 0, or -1 with tg_error() set. */
int tg__sweep_range(const char *op, tg__node *last, tg__node *stop, tg_tensor *y, tg_tensor *g);
void tg__sweep_clear(tg__node *last, tg__node *stop, tg_tensor *y);
/* For backward closures: the public function whose sweep is running ("tg_backward",
 * "tg_grad", ...), to name it in messages. */
const char *tg__sweep_op(void);
/* Adds g to t's gradient of the sweep in progress (the one place gradients add up). */
int tg__acc_add(tg_tensor *t, tg_tensor *g);
/* True in a plain sweep (no TG_CREATE_GRAPH, no anomaly mode, a full sweep), whose
 * gradients are never differentiated: a closure may then add into its input's gradient
 * in place through tg__acc_add_slice instead of returning a full-size gradient. */
bool tg__sweep_in_place(void);
/* In such a sweep, for y = tg_slice(x, axis, start, start + k) (x of more than one
 * element, requiring a gradient): adds g, y's gradient, into x's gradient at the
 * slice's place; the closure then leaves gin[0] NULL. 0, or -1 (out of memory). */
int tg__acc_add_slice(tg_tensor *x, tg_tensor *g, int axis, int64_t start);

/* ---- gradient hooks and anomaly mode (tape.h) ---- */

/* One registered hook; a persistent tensor's are allocated with tg__alloc (heap true),
 * a tape tensor's on the arena. */
typedef struct tg__hook {
    tg_hook_fn fn;
    void *ctx;
    struct tg__hook *next; /* the next one registered, or NULL */
    bool heap;
    unsigned seen; /* first hook of a leaf: the last sweep that ran the leaf's hooks */
} tg__hook;

/* True when some tensor may have hooks (a sweep then looks for hooked leaves). */
bool tg__hooks_exist(void);
/* Called by every sweep around its work: turns the forward anomaly checks off inside
 * (the sweep checks each closure instead) and returns TG__SWEEP_ANOMALY when anomaly
 * mode is on, plus TG__SWEEP_HOOKS when some tensor may have hooks. */
enum { TG__SWEEP_ANOMALY = 1, TG__SWEEP_HOOKS = 2 };
unsigned tg__sweep_begin(void);
void tg__sweep_end(void);

/* Index of the first NaN or +-Inf element of a float tensor, or -1 (always -1 for i64). */
int64_t tg__first_nonfinite(const tg_tensor *t);
/* "nan", "inf" or "-inf" for a non-finite v. */
const char *tg__value_name(double v);

/* ---- the thread generator's state (random.c) ----
 * Saved and restored around a replay (tg_checkpoint) so that the replay draws the
 * same numbers and the generator is left where it was. */
typedef struct {
    uint64_t s[4];
    bool seeded;
} tg__rand_state;
void tg__rand_save(tg__rand_state *out);
void tg__rand_restore(const tg__rand_state *st);
/* Moves the thread's generator (tg_seed's) onto a stream of its own: draws one value
 * from it and seeds the generator with that value mixed with stream. Equal states and
 * equal streams give equal results, so a run stays reproducible; stream 0 leaves the
 * generator as it is. Data-parallel training gives each rank its own dropout draws
 * this way. */
void tg__rng_stream(uint64_t stream);

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

#pragma GCC visibility pop

#endif
