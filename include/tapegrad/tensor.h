/*
 * tapegrad/tensor.h — n-dimensional arrays.
 *
 * A tensor is a contiguous, row-major array of F32, F64 or I64 values with up to
 * TG_MAX_DIMS dimensions. There are two kinds, with one ownership rule each:
 *
 *   - Persistent tensors (parameters, data sets, constants you keep) are made by the
 *     tg_tensor_* constructors below and freed by the caller with tg_tensor_free(),
 *     after the tape no longer refers to them (after tg_tape_reset()).
 *   - Tape tensors are the results of ops (see ops.h). They live in the tape's arena
 *     and are released all at once by tg_tape_reset() or tg_tape_rewind().
 *
 *     tg_tensor *w = tg_tensor_new(TG_F64, TG_SHAPE(3, 2));   // zeros, persistent
 *     tg_requires_grad(w, true);
 *     ...  build a loss from w with ops, tg_backward(loss) ...
 *     // w->grad now holds d loss / d w, a persistent tensor of w's shape
 *     tg_tape_reset();
 *     tg_tensor_free(w);                                       // also frees w->grad
 *
 * Every field of struct tg_tensor is read-only for users; data may be written through
 * for persistent tensors (that is how an optimizer updates parameters), never for
 * tape tensors that an op has already consumed.
 */
#ifndef TAPEGRAD_TENSOR_H
#define TAPEGRAD_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types. Values are only ever appended. */
typedef enum {
    TG_F32 = 0, /* float, differentiable */
    TG_F64 = 1, /* double, differentiable */
    TG_I64 = 2  /* int64_t, labels and indices, never differentiated */
} tg_dtype;

#define TG_MAX_DIMS 8

/* TG_SHAPE(2, 3) expands to the two arguments `2, (const int64_t[]){2, 3}`.
 * For a 0-d (scalar) shape pass `0, NULL` (or use tg_scalar). */
#define TG_SHAPE(...)                                                                              \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]) { __VA_ARGS__ }

typedef struct tg_tensor tg_tensor;

struct tg_tensor {
    tg_dtype dtype;             /* element type */
    int ndim;                   /* 0 <= ndim <= TG_MAX_DIMS; 0 is a scalar */
    int64_t shape[TG_MAX_DIMS]; /* shape[i] >= 0 for i < ndim; unused entries are 1 */
    int64_t numel;              /* product of shape[0..ndim) (1 for a scalar) */
    void *data;                 /* numel elements, contiguous, row-major, 64-byte aligned
                                   (a one-element tape tensor: 16-byte aligned) */
    tg_tensor *grad;            /* accumulated gradient after tg_backward, or NULL */
    bool requires_grad;         /* gradients flow into this tensor */
    /* --- private: maintained by the library --- */
    bool tg__persistent;        /* made by a tg_tensor_* constructor */
    bool tg__view;              /* data belongs to another tensor */
    uint8_t tg__state;          /* delivery state during tg_backward (backward.c), else 0 */
    int32_t tg__id;             /* tape tensors: creation number on the tape (for printing) */
    uint32_t tg__magic;         /* liveness stamp read by the checked mode (tape.h) */
    struct tg__node *tg__node;  /* node that produced this tensor, or NULL for a leaf */
    tg_tensor *tg__acc;         /* gradient being accumulated during a backward sweep */
    double tg__sacc;            /* the same as a double (one-element F64, plain sweeps) */
    char *tg__name;             /* tg_tensor_set_name's copy (NUL-terminated), or NULL */
    struct tg__hook *tg__hooks; /* gradient hooks (tg_register_hook), oldest first, or NULL */
};

/* Size in bytes of one element of dtype dt (4 or 8); 0 for an invalid dtype. */
size_t tg_dtype_size(tg_dtype dt);

/* "f32", "f64", "i64" (or "?"). */
const char *tg_dtype_name(tg_dtype dt);

/* A new persistent tensor of the given shape filled with zeros. Returns NULL (and sets
 * tg_error()) on a bad dtype, ndim outside [0, TG_MAX_DIMS], a negative dimension, a
 * NULL shape with ndim > 0, or allocation failure. Free with tg_tensor_free(). */
tg_tensor *tg_tensor_new(tg_dtype dt, int ndim, const int64_t *shape);

/* Like tg_tensor_new, then copies numel elements of type dt from data (which may be
 * NULL only when numel is 0). */
tg_tensor *tg_tensor_from(tg_dtype dt, int ndim, const int64_t *shape, const void *data);

/* A new persistent 0-d tensor holding value (converted to dt). */
tg_tensor *tg_scalar(tg_dtype dt, double value);

/* ---- filled constructors: persistent tensors, freed with tg_tensor_free() ----
 * Each returns NULL with tg_error() naming it on a bad dtype or shape (as
 * tg_tensor_new) or a bad argument below. */

/* Every element = value (converted to dt; an I64 value is truncated toward zero and
 * must be within int64's range, NaN refused). */
tg_tensor *tg_tensor_full(tg_dtype dt, int ndim, const int64_t *shape, double value);
/* NumPy's arange: the 1-D tensor [start + i step for 0 <= i < ceil((stop - start) /
 * step)], stop excluded; empty when stop lies behind start for the step's sign (NumPy's
 * rule; PyTorch raises an error there). start, stop, step finite and step != 0; for
 * I64, whole start and step. */
tg_tensor *tg_tensor_arange(tg_dtype dt, double start, double stop, double step);
/* NumPy's linspace: n >= 0 evenly spaced values from start to stop, both included:
 * start + i (stop - start) / (n - 1), with the last one exactly stop (n = 1 gives
 * [start]). F32 or F64; start and stop finite. */
tg_tensor *tg_tensor_linspace(tg_dtype dt, double start, double stop, int64_t n);
/* The n x n identity (n >= 0), any dtype. */
tg_tensor *tg_tensor_eye(tg_dtype dt, int64_t n);
/* Standard normal / uniform [0, 1) values (F32 or F64) drawn in row-major order from
 * the thread generator seeded by tg_seed() (random.h): tg_rand_normal / tg_rand_uniform. */
tg_tensor *tg_tensor_randn(tg_dtype dt, int ndim, const int64_t *shape);
tg_tensor *tg_tensor_rand(tg_dtype dt, int ndim, const int64_t *shape);

/* Writes t's values to out the way NumPy prints an array, then a newline: nested
 * brackets, one row of the last axis per line (wrapped at 75 columns), elements
 * right-aligned to a common width; floats as "2." when all shown values are whole,
 * else "%.4f", or "%.4e" when magnitudes pass 1e8, fall below 1e-4 or span over 1e3;
 * nan, inf, -inf by name; a 0-d tensor as its value, an empty one as []. More than
 * 1000 elements are summarised: the first and last 3 entries of every axis longer
 * than 6, with "..." between. Either kind of tensor. Returns 0, or -1 with tg_error()
 * set on a NULL t or out, or a write error.
 *
 *     [[1.0000 2.5000]
 *      [3.0000 4.0000]]
 */
int tg_tensor_print(FILE *out, const tg_tensor *t);

/* A persistent copy of t (of either kind): same dtype, shape, data and requires_grad;
 * no gradient and no history. NULL on bad input or allocation failure. */
tg_tensor *tg_tensor_clone(const tg_tensor *t);

/* Frees a persistent tensor and its .grad. NULL is fine. Passing a tape tensor is
 * ignored (tape tensors are released by tg_tape_reset). The tape must no longer refer
 * to t: call this after tg_tape_reset(). */
void tg_tensor_free(tg_tensor *t);

/* Marks t as a leaf whose gradient is wanted (on) or not (off). Only F32 and F64
 * tensors can require gradients: for an I64 tensor this sets tg_error() and does
 * nothing. NULL is ignored. */
void tg_requires_grad(tg_tensor *t, bool on);

/* The element of a one-element tensor (any ndim), as a double. For a tensor with more
 * than one element, or NULL, returns NaN and sets tg_error(). */
double tg_item(const tg_tensor *t);

/* Element i (flat, row-major index) as a double; NaN and tg_error() if out of range. */
double tg_tensor_get(const tg_tensor *t, int64_t i);

/* Sets element i (flat index) of a persistent tensor. Returns 0, or -1 on bad input. */
int tg_tensor_set(tg_tensor *t, int64_t i, double value);

/* Sets every element of a persistent tensor to value. Returns 0, or -1 on bad input. */
int tg_tensor_fill(tg_tensor *t, double value);

/* Gives t a short name (at most 23 bytes are kept) shown by tg_tape_print/tg_tape_dot. */
void tg_tensor_set_name(tg_tensor *t, const char *name);

/* Writes "[2,3]" (or "[]" for a scalar) into buf and returns buf. */
char *tg_shape_str(const tg_tensor *t, char *buf, size_t len);

/* True when a and b have the same ndim and shape. */
bool tg_same_shape(const tg_tensor *a, const tg_tensor *b);

/* Memory hooks. Every allocation the library makes goes through these, so a program
 * can count allocations or (in tests) make the k-th one fail. alloc returns memory of
 * at least size bytes aligned for any type, or NULL; release accepts NULL.
 * Passing NULL restores malloc/free. Set it before any tensor exists: memory must be
 * released by the allocator that gave it. Not thread-safe. */
typedef struct {
    void *(*alloc)(size_t size, void *ud);
    void (*release)(void *p, void *ud);
    void *ud;
} tg_allocator;
void tg_set_allocator(const tg_allocator *a);

#ifdef __cplusplus
}
#endif
#endif
