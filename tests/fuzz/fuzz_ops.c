/* fuzz_ops.c — libFuzzer target over small programs of ops.
 *
 * An input is read as a program (the byte layout is described at decode_inputs and
 * decode_op; running out of bytes reads zeros and ends the program):
 *
 *   inputs   1 to 3 persistent tensors: dtype (mostly F64, some F32, a few I64), rank
 *            0 to 4, dimensions mostly in {1, 2, 3} (so size-1 and broadcast axes are
 *            common), now and then 0, 4 or 5; values on a grid of 1/16 in [-3, 3],
 *            shifted by 1/128 so that none is exactly 0. Float inputs require a gradient
 *            unless a bit says otherwise.
 *   ops      up to 10, each an op of ops.h applied to earlier values (inputs or results)
 *            with parameters from the bytes: axes (some out of range), shapes derived
 *            from the operand's (some random, some whose product overflows int64),
 *            I64 indices and labels (some out of range), scalar constants.
 *
 * Checks, each an abort() with the program printed on failure:
 *   1. No crash, leak or undefined behaviour (the sanitizers of the fuzz build).
 *   2. Every op that returns NULL has set tg_error() to a message that starts with the
 *      name of the function called ("tg_transpose: ..."); given a NULL operand an op
 *      returns NULL and leaves an earlier message as it was.
 *   3. Every result is well formed (ndim, non-negative shape, numel the product), and
 *      the data-movement ops and exact elementwise ops (transpose, reshape, slice,
 *      broadcast_to, concat, index_select, gather, add, sub, mul, div, maximum,
 *      minimum) agree bit for bit with a reference computed here by index arithmetic.
 *   4. The program's output y = sum_k sum(w_k * v_k), over every float result v_k that
 *      requires a gradient, with fixed pseudo-random weights w_k, so that every
 *      element of every result reaches y with a different weight. Its gradient with
 *      respect to the inputs from tg_grad with TG_CREATE_GRAPH equals the plain one.
 *   5. In F64 (every float value F64) with at most 64 input elements: tg_gradcheck of
 *      the whole program (every element: one pair of evaluations per input element).
 *      Finite differences are only meaningful where the program is smooth, so each
 *      evaluation records a signature of every branch it took (sign of the input of
 *      relu and abs, of a - b for maximum and minimum, the index chosen by max,
 *      max_pool2d and argmax, the values of a cast to I64) and the check is skipped
 *      when a perturbed evaluation took another branch than the unperturbed one. It is
 *      also skipped, explicitly, where a value is not finite or over 1e4 in size, or
 *      where log, sqrt, a divisor or the base of a power comes within 0.05 of its
 *      singularity at 0. A mismatch is only reported when it persists at eps 1e-7 as
 *      well as 1e-6, with an absolute tolerance that allows for rounding in y, and does
 *      not shrink 100-fold from one to the other as the truncation error of a strongly
 *      curved program does (the extrapolation of the two must then match the analytic
 *      value: truncation_only).
 *
 * The library runs in its checked mode (tg_set_checked_mode), so a stale tape pointer is
 * an error rather than a silent read of released memory.
 *
 * Statistics (programs run, ops that succeeded / failed, gradchecks run / skipped)
 * are printed at exit when TG_FUZZ_STATS is set in the environment; TG_FUZZ_PRINT
 * prints every program as it runs.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "fuzz_ops.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_INPUTS = 3, MAX_OPS = 10, MAX_VALUES = MAX_INPUTS + MAX_OPS, GRADCHECK_NUMEL = 64 };

#define AS_NAME(code, name) name,
static const char *const op_names[] = {FUZZ_OPS(AS_NAME)};
_Static_assert(sizeof op_names / sizeof *op_names == OP_COUNT, "one name per op");

/* ---------------- reading bytes ---------------- */

typedef struct {
    const uint8_t *p;
    size_t n, i;
} reader;

static unsigned rd(reader *r) { return r->i < r->n ? r->p[r->i++] : 0; }

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* ---------------- the program ---------------- */

typedef struct {
    int code;
    int a, b, c; /* operands: positions in the value list (c: concat's third) */
    int n;       /* concat: number of operands */
    int i[4];    /* integer parameters (axis, keepdim, flags, kernel, stride, ...) */
    double s;    /* scalar constant */
    int ndim;    /* target shape of reshape, broadcast_to, sum_to */
    int64_t shape[TG_MAX_DIMS];
    tg_tensor *k;      /* persistent constant: index, labels or condition */
    tg_tensor *frozen; /* detach: its result in the first run (see run) */
    bool null_arg;     /* called with a NULL operand instead (check 2) */
    bool ok;           /* succeeded when the program was first run */
} fuzz_op;

typedef struct {
    int nin, nops;
    tg_tensor *in[MAX_INPUTS];
    fuzz_op ops[MAX_OPS];
    tg_tensor *w[MAX_VALUES]; /* weight of value k in y, or NULL when v_k is not in y */
    tg_dtype ydt;             /* dtype of y */
    /* filled by a run */
    tg_tensor *v[MAX_VALUES];
    int nv;
    uint64_t sig; /* signature of the branches taken */
    bool unsafe;  /* finite differences are not meaningful (see check 5) */
    bool has_f32; /* some float value that requires a gradient is F32 */
    double y_l1;  /* sum over the terms of y of |w v| */
    /* gradcheck bookkeeping */
    uint64_t ref_sig;
    bool crossed;  /* an evaluation took another branch */
    bool diverged; /* an op that succeeded in the first run failed in a replay */
} program;

static struct {
    long programs, ops_ok, ops_failed, null_args, gradchecks, skip_kink, skip_unsafe, skip_big,
        create_graph, curved;
} stats;

static void print_stats(void) {
    fprintf(stderr,
            "fuzz_ops: %ld programs, %ld ops succeeded, %ld failed, %ld NULL-operand calls, "
            "%ld create-graph comparisons, %ld gradchecks (%ld of them within tolerance only "
            "once extrapolated; skipped: %ld across a branch, %ld near a singularity or not "
            "finite, %ld too large or not all F64)\n",
            stats.programs, stats.ops_ok, stats.ops_failed, stats.null_args, stats.create_graph,
            stats.gradchecks, stats.curved, stats.skip_kink, stats.skip_unsafe, stats.skip_big);
}

static void print_tensor_shape(const tg_tensor *t) {
    char buf[128];
    fprintf(stderr, "%s %s", tg_dtype_name(t->dtype), tg_shape_str(t, buf, sizeof buf));
}

static bool takes_two(int code) {
    return (code >= OP_ADD && code <= OP_MINIMUM) || code == OP_MATMUL || code == OP_MATMUL_T ||
           code == OP_WHERE || code == OP_CONV2D;
}

/* Prints the program (what ran, with its parameters) for a failure report. */
static void print_program(const program *p) {
    fprintf(stderr, "program:\n");
    for (int i = 0; i < p->nin; i++) {
        fprintf(stderr, "  v%d = input ", i);
        print_tensor_shape(p->in[i]);
        fprintf(stderr, "%s =", p->in[i]->requires_grad ? " (requires grad)" : "");
        for (int64_t j = 0; j < p->in[i]->numel && j < 16; j++)
            fprintf(stderr, " %g", tg_tensor_get(p->in[i], j));
        fprintf(stderr, p->in[i]->numel > 16 ? " ...\n" : "\n");
    }
    int nv = p->nin;
    for (int i = 0; i < p->nops; i++) {
        const fuzz_op *o = &p->ops[i];
        fprintf(stderr, "  %s%s(v%d", o->ok ? "" : "(failed) ", op_names[o->code], o->a);
        if (o->code == OP_CONCAT)
            fprintf(stderr, ", n=%d, v%d, v%d", o->n, o->b, o->c);
        else if (takes_two(o->code))
            fprintf(stderr, ", v%d", o->b);
        fprintf(stderr, ", i={%d,%d,%d,%d}, s=%g, shape=[", o->i[0], o->i[1], o->i[2], o->i[3],
                o->s);
        for (int d = 0; d < o->ndim; d++)
            fprintf(stderr, "%s%lld", d ? "," : "", (long long)o->shape[d]);
        fprintf(stderr, "]");
        if (o->k) {
            fprintf(stderr, ", k=");
            print_tensor_shape(o->k);
            for (int64_t j = 0; j < o->k->numel && j < 16; j++)
                fprintf(stderr, " %g", tg_tensor_get(o->k, j));
        }
        fprintf(stderr, ")%s", o->null_arg ? " with a NULL operand" : "");
        if (o->ok && !o->null_arg) fprintf(stderr, " -> v%d", nv++);
        fprintf(stderr, "\n");
    }
}

static _Noreturn void fail(const program *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static _Noreturn void fail(const program *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_ops: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    print_program(p);
    abort();
}

/* ---------------- decoding ---------------- */

static const int64_t small_dims[16] = {1, 2, 3, 1, 2, 3, 1, 2, 3, 4, 1, 2, 0, 3, 1, 5};
/* Dimensions of random target shapes: mostly small, a few that overflow a product. */
static const int64_t wild_dims[16] = {
    -1, 0, 1, 2, 3, 4, 6, 12, INT64_C(1) << 31, (INT64_C(1) << 62) + 1, INT64_MAX, -2, 5, 8, 2, 3};

static double grid_value(uint64_t seed, int64_t i) {
    return ((double)(mix64(seed * 1000003u + (uint64_t)i) % 97) - 48.0) / 16.0 + 1.0 / 128;
}

/* Byte 0: number of inputs. Each input: a dtype byte (bits 0-3: 0 I64, 1-2 F32, else
 * F64; bit 7: no gradient), a rank byte (0 to 4), one byte per dimension (small_dims)
 * and a seed byte for its values. */
static void decode_inputs(reader *r, program *p) {
    p->nin = 1 + (int)(rd(r) % MAX_INPUTS);
    for (int i = 0; i < p->nin; i++) {
        unsigned b = rd(r);
        tg_dtype dt = (b & 15) == 0 ? TG_I64 : (b & 15) <= 2 ? TG_F32 : TG_F64;
        int nd = (int)(rd(r) % 5);
        int64_t shape[4];
        for (int d = 0; d < nd; d++)
            shape[d] = small_dims[rd(r) % 16];
        uint64_t seed = rd(r);
        tg_tensor *t = tg_tensor_new(dt, nd, shape);
        if (!t) abort();
        for (int64_t j = 0; j < t->numel; j++) {
            double x = grid_value(seed, j);
            if (tg_tensor_set(t, j, dt == TG_I64 ? floor(x) : x) != 0) abort();
        }
        if (dt != TG_I64 && !(b & 0x80)) tg_requires_grad(t, true);
        p->in[i] = t;
    }
}

/* A persistent I64 tensor of the given shape with values from the bytes, each b % m + lo. */
/* A persistent constant of the given shape. A shape derived from an empty operand can
 * be too large to make ([2^62+1, 0] with the 0 replaced by 2): then a one-element
 * [1] constant stands in, which the op will most likely refuse with its own message. */
static tg_tensor *constant_new(tg_dtype dt, int nd, const int64_t *shape) {
    tg_tensor *t = tg_tensor_new(dt, nd, shape);
    if (!t) {
        tg_clear_error();
        t = tg_tensor_new(dt, 1, (const int64_t[]){1});
        if (!t) abort();
    }
    return t;
}

static tg_tensor *int_tensor(reader *r, int nd, const int64_t *shape, int64_t m, int64_t lo) {
    tg_tensor *t = constant_new(TG_I64, nd, shape);
    for (int64_t j = 0; j < t->numel; j++)
        ((int64_t *)t->data)[j] = (m > 0 ? (int64_t)rd(r) % m : 0) + lo;
    return t;
}

static int64_t dim_of(const tg_tensor *x, int axis) {
    if (axis < 0) axis += x->ndim;
    return axis >= 0 && axis < x->ndim ? x->shape[axis] : 1;
}

/* Target shapes for reshape, broadcast_to and sum_to, derived from x's shape. */
static void decode_reshape(reader *r, const tg_tensor *x, fuzz_op *o) {
    unsigned how = rd(r) % 4;
    if (how == 0) {
        o->ndim = 1;
        o->shape[0] = x->numel;
    } else if (how == 1 && x->ndim < TG_MAX_DIMS) { /* reversed, with a 1 inserted */
        int at = (int)(rd(r) % (unsigned)(x->ndim + 1));
        o->ndim = 0;
        for (int d = x->ndim - 1; d >= -1; d--) {
            if (x->ndim - 1 - d == at) o->shape[o->ndim++] = 1;
            if (d >= 0) o->shape[o->ndim++] = x->shape[d];
        }
    } else if (how == 2 && x->ndim >= 1) { /* -1 first or last */
        o->ndim = 2;
        bool first = rd(r) & 1;
        o->shape[first ? 0 : 1] = -1;
        o->shape[first ? 1 : 0] = first ? x->shape[x->ndim - 1] : x->shape[0];
    } else {
        o->ndim = (int)(rd(r) % 5);
        for (int d = 0; d < o->ndim; d++)
            o->shape[d] = wild_dims[rd(r) % 16];
    }
}

/* One time in 8, one dimension of the target shape becomes a wild one. */
static void wild_dim(reader *r, fuzz_op *o) {
    if (o->ndim == 0 || rd(r) % 8 != 0) return;
    int d = (int)(rd(r) % (unsigned)o->ndim);
    o->shape[d] = wild_dims[rd(r) % 16];
}

static void decode_broadcast(reader *r, const tg_tensor *x, fuzz_op *o) {
    int extra = (int)(rd(r) % 3);
    if (x->ndim + extra > 6) extra = 0;
    o->ndim = x->ndim + extra;
    for (int d = 0; d < extra; d++)
        o->shape[d] = 1 + rd(r) % 3;
    for (int d = 0; d < x->ndim; d++)
        o->shape[extra + d] = x->shape[d] == 1 ? (int64_t)(1 + rd(r) % 3) : x->shape[d];
    wild_dim(r, o);
}

static void decode_sum_to(reader *r, const tg_tensor *x, fuzz_op *o) {
    int drop = (int)(rd(r) % 3);
    if (drop > x->ndim) drop = x->ndim;
    o->ndim = x->ndim - drop;
    unsigned ones = rd(r);
    for (int d = 0; d < o->ndim; d++)
        o->shape[d] = ones >> d & 1 ? 1 : x->shape[drop + d];
    wild_dim(r, o);
}

/* An op: a code byte, operand bytes (each picks a value counting back from the latest),
 * then the op's parameter bytes. Values already made are passed to derive shapes. */
static void decode_op(reader *r, program *p, fuzz_op *o) {
    memset(o, 0, sizeof *o);
    unsigned code = rd(r);
    o->code = (int)(code % OP_COUNT);
    o->null_arg = code >= 250; /* rare: the NULL-operand check */
    o->a = p->nv - 1 - (int)(rd(r) % (unsigned)p->nv);
    o->b = p->nv - 1 - (int)(rd(r) % (unsigned)p->nv);
    const tg_tensor *x = p->v[o->a], *y = p->v[o->b];
    for (int j = 0; j < 4; j++)
        o->i[j] = (int)rd(r);
    static const double scalars[8] = {-2, -1, -0.5, 0, 0.5, 1, 2, 3};
    o->s = scalars[o->i[3] % 8];
    switch (o->code) {
    case OP_RESHAPE:
        decode_reshape(r, x, o);
        break;
    case OP_BROADCAST_TO:
        decode_broadcast(r, x, o);
        break;
    case OP_SUM_TO:
        decode_sum_to(r, x, o);
        break;
    case OP_CONCAT:
        o->n = 1 + (int)(rd(r) % 3);
        o->c = p->nv - 1 - (int)(rd(r) % (unsigned)p->nv);
        break;
    case OP_INDEX_SELECT: {
        unsigned b = rd(r);
        int64_t len = b % 5;
        int64_t m = dim_of(x, (int)(o->i[0] % 10) - 5) + 1; /* the last one is out of range */
        o->k = b & 0x80 ? int_tensor(r, 2, (int64_t[]){1, len}, m, 0)
                        : int_tensor(r, 1, &len, m, (b & 0x40) ? -1 : 0);
        break;
    }
    case OP_GATHER: {
        int axis = (int)(o->i[0] % 10) - 5;
        int64_t shape[TG_MAX_DIMS];
        for (int d = 0; d < x->ndim; d++)
            shape[d] = x->shape[d];
        int ax = axis < 0 ? axis + x->ndim : axis;
        if (ax >= 0 && ax < x->ndim) shape[ax] = 1 + rd(r) % 3;
        if (x->ndim > 0 && rd(r) % 8 == 0) shape[0] += 1; /* a shape that does not fit */
        o->k = int_tensor(r, x->ndim, shape, dim_of(x, axis) + (rd(r) % 8 == 0), 0);
        break;
    }
    case OP_SOFTMAX_CE: {
        int64_t n = x->ndim >= 1 ? x->shape[0] : 1;
        if (rd(r) % 8 == 0) n += 1;
        o->k = int_tensor(r, 1, &n, (x->ndim >= 2 ? x->shape[1] : 1) + (rd(r) % 8 == 0), 0);
        break;
    }
    case OP_WHERE: { /* a 0/1 condition of x's or y's shape, some axes set to 1 */
        const tg_tensor *like = rd(r) & 1 ? x : y;
        int64_t shape[TG_MAX_DIMS];
        unsigned ones = rd(r);
        for (int d = 0; d < like->ndim; d++)
            shape[d] = ones >> d & 1 ? 1 : like->shape[d];
        tg_dtype dt = ones & 0x80 ? TG_I64 : TG_F64;
        o->k = constant_new(dt, like->ndim, shape);
        for (int64_t j = 0; j < o->k->numel; j++)
            tg_tensor_set(o->k, j, rd(r) & 1);
        break;
    }
    default:
        break;
    }
}

/* ---------------- running ---------------- */

static void sig_add(program *p, uint64_t x) { p->sig = mix64(p->sig ^ x); }

/* Adds the values of an I64 tensor to the signature. */
static void sig_ints(program *p, const tg_tensor *t) {
    if (!t) {
        sig_add(p, 0xdead);
        return;
    }
    for (int64_t j = 0; j < t->numel; j++)
        sig_add(p, (uint64_t)((const int64_t *)t->data)[j]);
}

/* How close to 0 an operand may come before finite differences stop being meaningful. */
typedef enum {
    ANYWHERE,    /* a kink at 0 only: the branch signature covers it */
    AWAY_FROM_0, /* a singularity at 0 (log, sqrt, a divisor): |x| >= 0.05 */
    POSITIVE     /* the base of tg_pow: d/db = a^b log a is NaN for a < 0: x >= 0.05 */
} domain;

/* Adds the sign of every element of a float tensor; flags the program unsafe when an
 * element lies outside dom. */
static void sig_signs(program *p, const tg_tensor *t, domain dom) {
    if (!t) {
        sig_add(p, 0xdead);
        return;
    }
    for (int64_t j = 0; j < t->numel; j++) {
        double x = tg_tensor_get(t, j);
        sig_add(p, x > 0 ? 1 : x < 0 ? 2 : 3);
        if ((dom == AWAY_FROM_0 && !(fabs(x) >= 0.05)) || (dom == POSITIVE && !(x >= 0.05)))
            p->unsafe = true;
    }
}

/* Records the branches op o took on its operands (see check 5), with grad mode off. */
static void record_branches(program *p, const fuzz_op *o, tg_tensor *x, tg_tensor *y,
                            tg_tensor *res) {
    bool mode = tg_set_grad_enabled(false);
    switch (o->code) {
    case OP_RELU:
    case OP_ABS:
        sig_signs(p, x, ANYWHERE);
        break;
    case OP_LOG:
    case OP_SQRT:
        sig_signs(p, x, AWAY_FROM_0);
        break;
    case OP_DIV:
        sig_signs(p, y, AWAY_FROM_0);
        break;
    case OP_POW:
        sig_signs(p, x, POSITIVE);
        break;
    case OP_POW_SCALAR:
        sig_signs(p, x, o->s != floor(o->s) || o->s < 0 ? AWAY_FROM_0 : ANYWHERE);
        break;
    case OP_MAXIMUM:
    case OP_MINIMUM:
        sig_signs(p, tg_sub(x, y), ANYWHERE);
        break;
    case OP_MAX:
        sig_ints(p, tg_argmax(x, (o->i[0] % 11 == 10) ? TG_ALL : o->i[0] % 10 - 5));
        break;
    case OP_ARGMAX:
    case OP_CAST:
        if (res->dtype == TG_I64) sig_ints(p, res);
        break;
    case OP_MAX_POOL2D: { /* the window's argmax; the shift keeps padding zeros below */
        int k = 1 + o->i[0] % 3, stride = 1 + o->i[1] % 3, pad = o->i[2] % 3;
        tg_tensor *cols = tg_unfold(tg_add_scalar(x, 1e5), k, k, stride, pad);
        if (cols) {
            int64_t shape[4] = {x->shape[0], x->shape[1], (int64_t)k * k, cols->shape[2]};
            sig_ints(p, tg_argmax(tg_reshape(cols, 4, shape), 2));
        } else {
            sig_ints(p, NULL);
        }
        break;
    }
    default:
        break;
    }
    tg_set_grad_enabled(mode);
}

/* Calls op o on its operands. */
static tg_tensor *call_op(const fuzz_op *o, tg_tensor *x, tg_tensor *y, tg_tensor *z) {
    int axis = (int)(o->i[0] % 10) - 5, axis_all = o->i[0] % 11 == 10 ? TG_ALL : axis;
    bool keep = o->i[1] & 1;
    switch (o->code) {
    case OP_NEG:
        return tg_neg(x);
    case OP_EXP:
        return tg_exp(x);
    case OP_LOG:
        return tg_log(x);
    case OP_SIN:
        return tg_sin(x);
    case OP_COS:
        return tg_cos(x);
    case OP_TANH:
        return tg_tanh(x);
    case OP_SIGMOID:
        return tg_sigmoid(x);
    case OP_RELU:
        return tg_relu(x);
    case OP_SQRT:
        return tg_sqrt(x);
    case OP_ABS:
        return tg_abs(x);
    case OP_SQUARE:
        return tg_square(x);
    case OP_ADD_SCALAR:
        return tg_add_scalar(x, o->s);
    case OP_MUL_SCALAR:
        return tg_mul_scalar(x, o->s);
    case OP_POW_SCALAR:
        return tg_pow_scalar(x, o->s);
    case OP_ADD:
        return tg_add(x, y);
    case OP_SUB:
        return tg_sub(x, y);
    case OP_MUL:
        return tg_mul(x, y);
    case OP_DIV:
        return tg_div(x, y);
    case OP_POW:
        return tg_pow(x, y);
    case OP_MAXIMUM:
        return tg_maximum(x, y);
    case OP_MINIMUM:
        return tg_minimum(x, y);
    case OP_SUM:
        return tg_sum(x, axis_all, keep);
    case OP_MEAN:
        return tg_mean(x, axis_all, keep);
    case OP_MAX:
        return tg_max(x, axis_all, keep);
    case OP_LOGSUMEXP:
        return tg_logsumexp(x, axis_all, keep);
    case OP_SOFTMAX:
        return tg_softmax(x, axis);
    case OP_LOG_SOFTMAX:
        return tg_log_softmax(x, axis);
    case OP_SOFTMAX_CE:
        return tg_softmax_cross_entropy(x, o->k);
    case OP_MATMUL:
        return tg_matmul(x, y);
    case OP_MATMUL_T:
        return tg_matmul_t(x, y, o->i[1] & 1, o->i[1] & 2);
    case OP_RESHAPE:
        return tg_reshape(x, o->ndim, o->shape);
    case OP_TRANSPOSE:
        return tg_transpose(x, axis, (int)(o->i[1] % 10) - 5);
    case OP_BROADCAST_TO:
        return tg_broadcast_to(x, o->ndim, o->shape);
    case OP_SUM_TO:
        return tg_sum_to(x, o->ndim, o->shape);
    case OP_SLICE:
        return tg_slice(x, axis, (int)(o->i[1] % 8) - 4, (int)(o->i[2] % 8) - 3);
    case OP_CONCAT:
        return tg_concat(o->n, (tg_tensor *[]){x, y, z}, axis);
    case OP_INDEX_SELECT:
        return tg_index_select(x, axis, o->k);
    case OP_GATHER:
        return tg_gather(x, axis, o->k);
    case OP_WHERE:
        return tg_where(o->k, x, y);
    case OP_CAST:
        return tg_cast(x, o->i[1] % 8 == 7 ? (tg_dtype)7 : (tg_dtype)(o->i[1] % 3));
    case OP_DETACH:
        return tg_detach(x);
    case OP_ARGMAX:
        return tg_argmax(x, axis_all);
    case OP_UNFOLD:
        return tg_unfold(x, o->i[0] % 4, 1 + o->i[1] % 3, 1 + o->i[2] % 3 - (o->i[3] % 16 == 0),
                         (int)(o->i[3] / 16 % 3) - (o->i[3] % 32 == 1));
    case OP_CONV2D:
        return tg_conv2d(x, y, 1 + o->i[1] % 3, o->i[2] % 3);
    case OP_MAX_POOL2D:
        return tg_max_pool2d(x, 1 + o->i[0] % 3, 1 + o->i[1] % 3, o->i[2] % 3);
    case OP_AVG_POOL2D:
        return tg_avg_pool2d(x, 1 + o->i[0] % 3, 1 + o->i[1] % 3, o->i[2] % 3);
    default:
        abort();
    }
}

/* ---------------- reference values (check 3) ---------------- */

/* The flat index into t of the element that broadcasting t to out's shape puts at
 * out's flat index j (shapes aligned on the right, size-1 axes stretched). */
static int64_t bcast_index(const tg_tensor *t, const tg_tensor *out, int64_t j) {
    int64_t idx = 0, stride = 1;
    for (int d = out->ndim - 1, e = t->ndim - 1; d >= 0; d--, e--) {
        int64_t i = j % out->shape[d];
        j /= out->shape[d];
        if (e >= 0) {
            if (t->shape[e] != 1) idx += i * stride;
            stride *= t->shape[e];
        }
    }
    return idx;
}

/* Unravels flat index j of t into idx[0..ndim). */
static void unravel(const tg_tensor *t, int64_t j, int64_t *idx) {
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = j % t->shape[d];
        j /= t->shape[d];
    }
}

static int64_t ravel(const tg_tensor *t, const int64_t *idx) {
    int64_t j = 0;
    for (int d = 0; d < t->ndim; d++)
        j = j * t->shape[d] + idx[d];
    return j;
}

static bool same_elem(const tg_tensor *a, int64_t i, const tg_tensor *b, int64_t j) {
    size_t sz = tg_dtype_size(a->dtype);
    return memcmp((const char *)a->data + (size_t)i * sz, (const char *)b->data + (size_t)j * sz,
                  sz) == 0;
}

static double binary_ref(int code, double a, double b, tg_dtype dt) {
    if (dt == TG_F32) {
        float fa = (float)a, fb = (float)b;
        switch (code) {
        case OP_ADD:
            return (float)(fa + fb);
        case OP_SUB:
            return (float)(fa - fb);
        case OP_MUL:
            return (float)(fa * fb);
        case OP_DIV:
            return (float)(fa / fb);
        case OP_MAXIMUM:
            return fa > fb ? fa : fb;
        default:
            return fa < fb ? fa : fb;
        }
    }
    switch (code) {
    case OP_ADD:
        return a + b;
    case OP_SUB:
        return a - b;
    case OP_MUL:
        return a * b;
    case OP_DIV:
        return a / b;
    case OP_MAXIMUM:
        return a > b ? a : b;
    default:
        return a < b ? a : b;
    }
}

/* Where the element at flat index j of the result of o came from: the operand (0, 1
 * or 2) and its flat index; false for ops without a data-movement reference. */
static bool source_of(const fuzz_op *o, tg_tensor *const *ops, const tg_tensor *res, int64_t j,
                      int *which, int64_t *at) {
    const tg_tensor *x = ops[0];
    int64_t idx[TG_MAX_DIMS];
    int axis = (int)(o->i[0] % 10) - 5;
    if (axis < 0) axis += res->ndim;
    *which = 0;
    switch (o->code) {
    case OP_RESHAPE:
    case OP_DETACH:
        *at = j;
        return true;
    case OP_BROADCAST_TO:
        *at = bcast_index(x, res, j);
        return true;
    case OP_TRANSPOSE: {
        int d0 = axis, d1 = (int)(o->i[1] % 10) - 5;
        if (d1 < 0) d1 += res->ndim;
        unravel(res, j, idx);
        int64_t t = idx[d0];
        idx[d0] = idx[d1];
        idx[d1] = t;
        *at = ravel(x, idx);
        return true;
    }
    case OP_SLICE: {
        int64_t start = (int)(o->i[1] % 8) - 4;
        if (start < 0) start += x->shape[axis];
        unravel(res, j, idx);
        idx[axis] += start;
        *at = ravel(x, idx);
        return true;
    }
    case OP_CONCAT:
        unravel(res, j, idx);
        for (int m = 0; m < o->n; m++) {
            if (idx[axis] < ops[m]->shape[axis]) {
                *which = m;
                *at = ravel(ops[m], idx);
                return true;
            }
            idx[axis] -= ops[m]->shape[axis];
        }
        abort();
    case OP_INDEX_SELECT:
        unravel(res, j, idx);
        idx[axis] = ((const int64_t *)o->k->data)[idx[axis]];
        *at = ravel(x, idx);
        return true;
    case OP_GATHER:
        unravel(res, j, idx);
        idx[axis] = ((const int64_t *)o->k->data)[j];
        *at = ravel(x, idx);
        return true;
    default:
        return false;
    }
}

/* Check 3 for one successful op (first run only). */
static void check_result(const program *p, const fuzz_op *o, tg_tensor *const *ops,
                         const tg_tensor *res) {
    const char *name = op_names[o->code];
    int64_t numel = 1;
    bool shape_ok = res->ndim >= 0 && res->ndim <= TG_MAX_DIMS;
    for (int d = 0; shape_ok && d < res->ndim; d++) {
        shape_ok = res->shape[d] >= 0;
        numel *= res->shape[d];
    }
    if (!shape_ok || numel != res->numel || (res->numel > 0 && !res->data) ||
        tg_dtype_size(res->dtype) == 0)
        fail(p, "%s returned a malformed tensor (ndim %d, numel %lld)", name, res->ndim,
             (long long)res->numel);
    if (o->code == OP_RESHAPE || o->code == OP_DETACH || o->code == OP_TRANSPOSE ||
        o->code == OP_BROADCAST_TO || o->code == OP_SLICE || o->code == OP_CONCAT ||
        o->code == OP_INDEX_SELECT || o->code == OP_GATHER) {
        if (res->dtype != ops[0]->dtype) fail(p, "%s changed the dtype", name);
        for (int64_t j = 0; j < res->numel; j++) {
            int which = 0;
            int64_t at = 0;
            if (!source_of(o, ops, res, j, &which, &at)) abort();
            if (!same_elem(res, j, ops[which], at)) {
                char buf[128];
                fail(p,
                     "%s: result element %lld is %g, but should be element %lld of operand "
                     "%d (%g); result shape %s",
                     name, (long long)j, tg_tensor_get(res, j), (long long)at, which,
                     tg_tensor_get(ops[which], at), tg_shape_str(res, buf, sizeof buf));
            }
        }
    }
    if (o->code == OP_ADD || o->code == OP_SUB || o->code == OP_MUL || o->code == OP_DIV ||
        o->code == OP_MAXIMUM || o->code == OP_MINIMUM) {
        for (int64_t j = 0; j < res->numel; j++) {
            double a = tg_tensor_get(ops[0], bcast_index(ops[0], res, j));
            double b = tg_tensor_get(ops[1], bcast_index(ops[1], res, j));
            double want = binary_ref(o->code, a, b, res->dtype), got = tg_tensor_get(res, j);
            if (isnan(a) || isnan(b)) continue; /* NaN rules are not checked here */
            if (!(got == want || (isnan(got) && isnan(want))))
                fail(p, "%s(%.17g, %.17g) gave %.17g at result element %lld, expected %.17g", name,
                     a, b, got, (long long)j, want);
        }
    }
}

/* ---------------- one run of the program ---------------- */

/* Runs the program on inputs in (the first run decodes it from r as it goes; a replay,
 * r NULL, repeats the ops that succeeded). Returns y, or NULL when no value is in y. */
static tg_tensor *run(program *p, tg_tensor *const *in, reader *r) {
    bool first = r != NULL;
    p->nv = 0;
    p->sig = 0;
    for (int i = 0; i < p->nin; i++)
        p->v[p->nv++] = in[i];
    int nops = first ? 0 : p->nops;
    for (int i = 0; first ? (r->i < r->n && i < MAX_OPS) : i < nops; i++) {
        fuzz_op *o = &p->ops[i];
        if (first) {
            decode_op(r, p, o);
            p->nops = i + 1;
        } else if (!o->ok || o->null_arg) {
            continue;
        }
        tg_tensor *ops[3] = {p->v[o->a], p->v[o->b], p->v[o->c]};
        if (o->null_arg) { /* check 2: NULL in, NULL out, the earlier message kept */
            const char *before = tg_error();
            char saved[512] = "";
            if (before) snprintf(saved, sizeof saved, "%s", before);
            tg_tensor *res = call_op(o, NULL, NULL, NULL);
            const char *after = tg_error();
            if (res) fail(p, "%s accepted a NULL operand", op_names[o->code]);
            if (before && (!after || strcmp(saved, after) != 0))
                fail(p, "%s given NULL replaced the message \"%s\" by \"%s\"", op_names[o->code],
                     saved, after ? after : "(none)");
            stats.null_args++;
            continue;
        }
        if (first) tg_clear_error();
        /* A detached value is a constant for the tape; finite differences must hold it
         * constant too, so replays reuse the first run's values. */
        tg_tensor *res = !first && o->frozen ? o->frozen : call_op(o, ops[0], ops[1], ops[2]);
        if (first && res && o->code == OP_DETACH && !(o->frozen = tg_tensor_clone(res))) abort();
        if (!first) {
            if (!res) {
                p->diverged = true;
                return NULL;
            }
        } else if (!res) {
            const char *msg = tg_error();
            size_t len = strlen(op_names[o->code]);
            if (!msg || strncmp(msg, op_names[o->code], len) != 0 || msg[len] != ':')
                fail(p, "%s returned NULL with the message \"%s\" (should start \"%s:\")",
                     op_names[o->code], msg ? msg : "(none)", op_names[o->code]);
            stats.ops_failed++;
            continue;
        } else {
            o->ok = true;
            stats.ops_ok++;
            check_result(p, o, ops, res);
        }
        record_branches(p, o, ops[0], ops[1], res);
        p->v[p->nv++] = res;
    }

    /* y = sum_k sum(w_k * v_k) over the results in y's dtype that require a gradient. */
    if (first) {
        bool any64 = false;
        for (int k = 0; k < p->nv; k++)
            any64 |= p->v[k]->dtype == TG_F64 && p->v[k]->requires_grad;
        p->ydt = any64 ? TG_F64 : TG_F32;
    }
    tg_tensor *y = NULL;
    for (int k = p->nin; k < p->nv; k++) {
        tg_tensor *v = p->v[k];
        if (first) {
            if (v->dtype == TG_F32 && v->requires_grad) p->has_f32 = true;
            for (int64_t j = 0; j < v->numel && v->dtype != TG_I64; j++) {
                double x = tg_tensor_get(v, j);
                if (!(fabs(x) <= 1e4)) p->unsafe = true;
            }
            if (v->dtype == p->ydt && v->requires_grad) {
                p->w[k] = tg_tensor_new(v->dtype, v->ndim, v->shape);
                if (!p->w[k]) abort();
                for (int64_t j = 0; j < v->numel; j++) {
                    uint64_t h = mix64((uint64_t)k * 7919u + (uint64_t)j);
                    tg_tensor_set(p->w[k], j,
                                  (h & 1 ? -1 : 1) * (0.5 + (double)(h >> 11) / 0x1p53));
                    p->y_l1 += fabs(tg_tensor_get(v, j) * tg_tensor_get(p->w[k], j));
                }
            }
        }
        if (!p->w[k]) continue;
        tg_tensor *term = tg_sum(tg_mul(v, p->w[k]), TG_ALL, false);
        y = y ? tg_add(y, term) : term;
        if (!y) fail(p, "building y failed: %s", tg_error() ? tg_error() : "(no message)");
    }
    return y;
}

/* ---------------- checks 4 and 5 ---------------- */

static tg_tensor *replay(tg_tensor *const *in, void *ctx) {
    program *p = ctx;
    tg_tensor *y = run(p, in, NULL);
    if (p->sig != p->ref_sig) p->crossed = true;
    return y;
}

/* Check 4: tg_grad of y with and without TG_CREATE_GRAPH, every input that requires a
 * gradient. */
static void check_create_graph(program *p, tg_tensor *y) {
    tg_tensor *xs[MAX_INPUTS], *plain[MAX_INPUTS], *graph[MAX_INPUTS];
    int nx = 0;
    for (int i = 0; i < p->nin; i++)
        if (p->in[i]->requires_grad) xs[nx++] = p->in[i];
    if (nx == 0 || !y->requires_grad) return;
    if (tg_grad(1, &y, NULL, nx, xs, plain, 0) != 0)
        fail(p, "tg_grad failed: %s", tg_error() ? tg_error() : "(no message)");
    if (tg_grad(1, &y, NULL, nx, xs, graph, TG_CREATE_GRAPH) != 0)
        fail(p, "tg_grad with TG_CREATE_GRAPH failed: %s",
             tg_error() ? tg_error() : "(no message)");
    for (int j = 0; j < nx; j++) {
        if (!tg_same_shape(plain[j], xs[j]) || !tg_same_shape(graph[j], xs[j]) ||
            plain[j]->dtype != xs[j]->dtype || graph[j]->dtype != xs[j]->dtype)
            fail(p, "tg_grad: gradient %d has the wrong shape or dtype", j);
        double tol = xs[j]->dtype == TG_F64 ? 1e-12 : 1e-5;
        for (int64_t e = 0; e < xs[j]->numel; e++) {
            double a = tg_tensor_get(plain[j], e), b = tg_tensor_get(graph[j], e);
            if (!(a == b || fabs(a - b) <= tol * (1 + fabs(a))) && !(isnan(a) && isnan(b)))
                fail(p, "gradient %d element %lld: %.17g plain, %.17g with TG_CREATE_GRAPH", j,
                     (long long)e, a, b);
        }
    }
    stats.create_graph++;
}

/* Whether two failed gradchecks, at eps 1e-6 (a) and 1e-7 (b), are explained by the
 * truncation error of the central difference, eps^2 f^(3) / 6, which is 100 times
 * smaller at the second eps, where a wrong derivative would be off by the same amount
 * at both: true when both name the same element, the difference shrank at least 30-fold,
 * and the extrapolation (100 b - a) / 99, which cancels the eps^2 term, agrees with the
 * analytic value. (sin((x^x)^(x^x)) near x = 2.13 has a third derivative near 1e14.) */
static bool truncation_only(const tg_gradcheck_report *a, const tg_gradcheck_report *b,
                            double atol) {
    if (a->input != b->input || a->index != b->index || a->index < 0) return false;
    double da = fabs(a->numeric - a->analytic), db = fabs(b->numeric - b->analytic);
    if (!(db * 30 <= da)) return false;
    double r = (100 * b->numeric - a->numeric) / 99;
    return fabs(r - b->analytic) <= atol + 1e-3 * fabs(r);
}

/* Check 5. */
static void check_gradients(program *p) {
    int64_t n = 0;
    bool any = false;
    for (int i = 0; i < p->nin; i++) {
        n += p->in[i]->numel;
        if (p->in[i]->requires_grad && p->in[i]->dtype != TG_F64) p->has_f32 = true;
        any |= p->in[i]->requires_grad;
    }
    if (!any) return;
    if (p->has_f32 || p->ydt != TG_F64 || n > GRADCHECK_NUMEL) {
        stats.skip_big++;
        return;
    }
    if (p->unsafe) {
        stats.skip_unsafe++;
        return;
    }
    tg_gradcheck_report rep, rep2;
    p->crossed = p->diverged = false;
    double atol = 1e-5 + 1e-7 * p->y_l1;
    tg_gradcheck_opts opts = {.eps = 1e-6, .atol = atol, .rtol = 1e-3};
    bool ok = tg_gradcheck(replay, p, p->nin, p->in, &opts, &rep);
    if (p->diverged) fail(p, "an op that succeeded failed when run again on the same shapes");
    if (!ok && !p->crossed) {
        opts = (tg_gradcheck_opts){.eps = 1e-7, .atol = 1e-5 + 1e-6 * p->y_l1, .rtol = 1e-3};
        bool ok2 = tg_gradcheck(replay, p, p->nin, p->in, &opts, &rep2);
        if (!ok2 && !p->crossed && truncation_only(&rep, &rep2, opts.atol)) {
            stats.curved++;
            stats.gradchecks++;
            return;
        }
        if (!ok2 && !p->crossed)
            fail(p, "gradcheck failed at eps 1e-6 (%s) and at eps 1e-7 (%s)", rep.message,
                 rep2.message);
    }
    if (ok || !p->crossed)
        stats.gradchecks++;
    else
        stats.skip_kink++;
}

/* ---------------- the target ---------------- */

/* The library allocates through this hook, which refuses more than 64 MiB at once: a
 * valid shape with a huge element count (broadcast_to [2^31]) then fails as it would
 * on a machine without that memory, with an "out of memory" error, instead of taking
 * the machine's memory. A size computation that wrapped around would show up as a
 * small allocation written out of bounds (AddressSanitizer). */
enum { ALLOC_CAP = 64 << 20 };
static void *capped_alloc(size_t size, void *ud) {
    (void)ud;
    return size > ALLOC_CAP ? NULL : malloc(size);
}
static void capped_release(void *ptr, void *ud) {
    (void)ud;
    free(ptr);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    tg_set_allocator(&(tg_allocator){capped_alloc, capped_release, NULL});
    /* A tape tensor used after a reset or rewind released it, by the library or by
     * this harness, is then an error instead of a silent read. */
    tg_set_checked_mode(true);
    if (getenv("TG_FUZZ_STATS")) atexit(print_stats);
    return 0;
}

static void free_program(program *p) {
    for (int i = 0; i < p->nin; i++)
        tg_tensor_free(p->in[i]);
    for (int i = 0; i < p->nops; i++) {
        tg_tensor_free(p->ops[i].k);
        tg_tensor_free(p->ops[i].frozen);
    }
    for (int k = 0; k < MAX_VALUES; k++)
        tg_tensor_free(p->w[k]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reader r = {data, size, 0};
    program p;
    memset(&p, 0, sizeof p);
    tg_tape_reset();
    tg_clear_error();
    decode_inputs(&r, &p);
    tg_tensor *y = run(&p, p.in, &r);
    stats.programs++;
    if (getenv("TG_FUZZ_PRINT")) print_program(&p);
    if (y) {
        check_create_graph(&p, y);
        p.ref_sig = p.sig;
        check_gradients(&p);
    }
    tg_tape_reset();
    free_program(&p);
    return 0;
}
