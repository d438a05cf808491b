/* elementwise.c — binary ops with NumPy broadcasting, unary ops, ops with a scalar
 * constant, and tg_where. Kernels are single passes over contiguous memory: the
 * strided walker (common.c) hands them runs whose operand strides are 0 or 1, so the
 * equal-shape case is one run and the bias add (row broadcast) one run per row.
 *
 * A zero gradient stays zero. The backward of an op whose local derivative can be
 * infinite or NaN at a finite input (sqrt and log at 0, div by 0, pow, exp and expm1
 * when they overflow, log1p at -1) multiplies or divides the incoming gradient by that
 * derivative with grad_mul / grad_div: the product or quotient, except 0 wherever the
 * gradient is 0 (and, for grad_mul, wherever the derivative is 0). So the branch tg_where did not
 * select gets exactly 0, not 0 * inf = NaN: where(x > 0, sqrt(x), 0) has gradient 0 at x < 0
 * (PyTorch gives NaN there). The mask is a select in the same pass as the product, and grad_mul /
 * grad_div are ops with their own backward, so second derivatives keep the rule. */
#include <math.h>
#include <string.h>

#include "ops_internal.h"

/* ================= binary ================= */

typedef enum {
    B_ADD,
    B_SUB,
    B_MUL,
    B_DIV,
    B_POW,
    B_MAX,
    B_MIN,
    B_MASK_GT,   /* 1 where a > b, 0.5 where a == b, 0 elsewhere (maximum's gradient share) */
    B_MASK_LT,   /* 1 where a < b, 0.5 where a == b, 0 elsewhere */
    B_RELU_GRAD, /* a where b > 0, else 0: relu's backward in one pass (a = g, b = x) */
    B_GMUL,      /* a * b, but 0 where a == 0 or b == 0: grad_mul */
    B_GDIV,      /* a / b, but 0 where a == 0: grad_div */
    B_COUNT
} binop;

static const char *const bin_names[B_COUNT] = {
    "tg_add",     "tg_sub",     "tg_mul",     "tg_div",       "tg_pow", "tg_maximum",
    "tg_minimum", "tg_mask_gt", "tg_mask_lt", "tg_relu_grad", "tg_mul", "tg_div"};
static const char *const bin_syms[B_COUNT] = {"+",   "-", "*", "/",        "^", "max",
                                              "min", ">", "<", "where >0", "*", "/"};

typedef struct {
    const void *a, *b;
    void *y;
    binop op;
} bin_ctx;

/* grad_mul on one element, written so that its loop vectorises: each select picks
 * between a loaded operand and the constant 0, and the product is unconditional. */
#define GRAD_MUL(T)                                                                                \
    static inline T gmul_##T(T x, T z) { return (z == 0 ? (T)0 : x) * (x == 0 ? (T)0 : z); }
GRAD_MUL(float)
GRAD_MUL(double)

/* One kernel body per op, instantiated for float and double. x, z: operands. */
#define BIN_EXPR(op, x, z, T)                                                                      \
    ((op) == B_ADD       ? (x) + (z)                                                               \
     : (op) == B_SUB     ? (x) - (z)                                                               \
     : (op) == B_MUL     ? (x) * (z)                                                               \
     : (op) == B_DIV     ? (x) / (z)                                                               \
     : (op) == B_POW     ? (T)pow((x), (z))                                                        \
     : (op) == B_MAX     ? (((x) > (z) || (x) != (x)) ? (x) : (z))                                 \
     : (op) == B_MIN     ? (((x) < (z) || (x) != (x)) ? (x) : (z))                                 \
     : (op) == B_MASK_GT ? ((x) > (z)    ? (T)1                                                    \
                            : (x) == (z) ? (T)0.5                                                  \
                                         : (T)0)                                                   \
     : (op) == B_MASK_LT ? ((x) < (z)    ? (T)1                                                    \
                            : (x) == (z) ? (T)0.5                                                  \
                                         : (T)0)                                                   \
     : (op) == B_GMUL    ? gmul_##T((x), (z))                                                      \
     : (op) == B_GDIV    ? ((x) == 0 ? (T)0 : (x) / (z)) /* the loop is GDIV_LOOPS */              \
                         : ((z) > 0 ? (x) : (T)0))

/* The switch sits outside the loops so every loop has a fixed operation. Operands are
 * loaded into locals first: a select such as relu_grad's then reads memory
 * unconditionally and the loop vectorises (blends instead of branches). */
#define BIN_LOOP(T, OP, IA, IB)                                                                    \
    for (int64_t i = 0; i < n; i++) {                                                              \
        T x_ = a[IA], z_ = b[IB];                                                                  \
        y[i] = BIN_EXPR(OP, x_, z_, T);                                                            \
    }
/* grad_div in blocks of 256 elements, each in two passes: the quotients, then 0 where
 * the numerator is 0. A select around a division would keep the division on one side
 * of a branch (it may trap, so it is not evaluated speculatively) and the loop would not
 * vectorise; both passes here do, and a block stays in L1 between them. */
#define GDIV_LOOP(T, IA, IB)                                                                       \
    for (int64_t s0 = 0; s0 < n; s0 += 256) {                                                      \
        int64_t e = s0 + 256 < n ? s0 + 256 : n;                                                   \
        for (int64_t i = s0; i < e; i++)                                                           \
            y[i] = a[IA] / b[IB];                                                                  \
        for (int64_t i = s0; i < e; i++) {                                                         \
            T x_ = a[IA], q_ = y[i];                                                               \
            y[i] = x_ == 0 ? (T)0 : q_;                                                            \
        }                                                                                          \
    }
#define GDIV_LOOPS(T)                                                                              \
    case B_GDIV:                                                                                   \
        if (sa == 1 && sb == 1)                                                                    \
            GDIV_LOOP(T, i, i)                                                                     \
        else if (sa == 1)                                                                          \
            GDIV_LOOP(T, i, 0)                                                                     \
        else if (sb == 1)                                                                          \
            GDIV_LOOP(T, 0, i)                                                                     \
        else                                                                                       \
            GDIV_LOOP(T, 0, 0)                                                                     \
        break;

#define BIN_LOOPS(T, OP)                                                                           \
    case OP:                                                                                       \
        if (sa == 1 && sb == 1)                                                                    \
            BIN_LOOP(T, OP, i, i)                                                                  \
        else if (sa == 1)                                                                          \
            BIN_LOOP(T, OP, i, 0)                                                                  \
        else if (sb == 1)                                                                          \
            BIN_LOOP(T, OP, 0, i)                                                                  \
        else                                                                                       \
            BIN_LOOP(T, OP, 0, 0)                                                                  \
        break;

#define BIN_RUN(NAME, T)                                                                           \
    static void NAME(int64_t n, int64_t oo, const int64_t *off, const int64_t *st, void *vc) {     \
        const bin_ctx *c = vc;                                                                     \
        const T *a = (const T *)c->a + off[0], *b = (const T *)c->b + off[1];                      \
        T *y = (T *)c->y + oo;                                                                     \
        int64_t sa = st[0], sb = st[1];                                                            \
        switch (c->op) {                                                                           \
            BIN_LOOPS(T, B_ADD)                                                                    \
            BIN_LOOPS(T, B_SUB)                                                                    \
            BIN_LOOPS(T, B_MUL)                                                                    \
            BIN_LOOPS(T, B_DIV)                                                                    \
            BIN_LOOPS(T, B_POW)                                                                    \
            BIN_LOOPS(T, B_MAX)                                                                    \
            BIN_LOOPS(T, B_MIN)                                                                    \
            BIN_LOOPS(T, B_MASK_GT)                                                                \
            BIN_LOOPS(T, B_MASK_LT)                                                                \
            BIN_LOOPS(T, B_RELU_GRAD)                                                              \
            BIN_LOOPS(T, B_GMUL)                                                                   \
            GDIV_LOOPS(T)                                                                          \
        default:                                                                                   \
            break;                                                                                 \
        }                                                                                          \
    }

BIN_RUN(bin_run_f32, float)
BIN_RUN(bin_run_f64, double)

/* y = a op b for two 0-d F64 tensors (scalar code): the same kernel, without the shape
 * work. Checked mode takes the general path, which checks that a and b are live. */
static inline bool scalar_f64(const tg_tensor *x) {
    return x && x->ndim == 0 && x->dtype == TG_F64 && !tg__checks_on();
}
static tg_tensor *binary_scalar(binop op, tg_tensor *a, tg_tensor *b) {
    tg__op_name = bin_names[op];
    tg_tensor *y = tg__tape_scalar(TG_F64);
    if (!y) return NULL;
    double x = *(const double *)a->data, z = *(const double *)b->data, *r = y->data;
    switch (op) { /* one IEEE operation each: the kernel's result, bit for bit */
    case B_ADD:
        *r = x + z;
        break;
    case B_SUB:
        *r = x - z;
        break;
    case B_MUL:
        *r = x * z;
        break;
    default: {
        bin_ctx c = {a->data, b->data, y->data, op};
        bin_run_f64(1, 0, (const int64_t[]){0, 0}, (const int64_t[]){1, 1}, &c);
    }
    }
    return y;
}

static tg_tensor *binary_compute(binop op, tg_tensor *a, tg_tensor *b) {
    if (scalar_f64(a) && scalar_f64(b)) return binary_scalar(op, a, b);
    const char *name = bin_names[op];
    if (!tg__check_float2(name, a, b)) return NULL;
    int nd;
    int64_t shape[TG_MAX_DIMS];
    if (!tg__broadcast_shape(name, bin_syms[op], a->ndim, a->shape, b->ndim, b->shape, &nd, shape))
        return NULL;
    tg_tensor *y = tg__tape_tensor(a->dtype, nd, shape);
    if (!y) return NULL;
    bin_ctx c = {a->data, b->data, y->data, op};
    tg__run_fn run = a->dtype == TG_F64 ? bin_run_f64 : bin_run_f32;
    if (tg__shape_eq(a->ndim, a->shape, b->ndim, b->shape)) {
        if (y->numel) run(y->numel, 0, (const int64_t[]){0, 0}, (const int64_t[]){1, 1}, &c);
    } else if (tg__is_row_of(b->ndim, b->shape, a->ndim, a->shape) ||
               tg__is_row_of(a->ndim, a->shape, b->ndim, b->shape)) {
        /* One operand is a row repeated over the other's leading dimensions. */
        bool b_row = b->numel <= a->numel;
        int64_t inner = b_row ? b->numel : a->numel;
        for (int64_t at = 0; at < y->numel; at += inner)
            run(inner, at, (const int64_t[]){b_row ? at : 0, b_row ? 0 : at},
                (const int64_t[]){1, 1}, &c);
    } else {
        tg__broadcast_walk(nd, shape, 2, (const int[]){a->ndim, b->ndim},
                           (const int64_t *const[]){a->shape, b->shape}, run, &c);
    }
    return y;
}

/* The gradient g of a broadcast result, reduced back to x's shape. */
static tg_tensor *reduce_like(tg_tensor *g, const tg_tensor *x) {
    if (!g) return NULL;
    if (tg_same_shape(g, x)) return g;
    return tg_sum_to(g, x->ndim, x->shape);
}

static int add_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *a = n->in[0], *b = n->in[1];
    if (a->requires_grad && !(gin[0] = reduce_like(g, a))) return -1;
    if (b->requires_grad && !(gin[1] = reduce_like(g, b))) return -1;
    return 0;
}

static int sub_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *a = n->in[0], *b = n->in[1];
    if (a->requires_grad && !(gin[0] = reduce_like(g, a))) return -1;
    if (b->requires_grad && !(gin[1] = reduce_like(tg_neg(g), b))) return -1;
    return 0;
}

static int mul_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *a = n->in[0], *b = n->in[1];
    if (a->requires_grad && !(gin[0] = reduce_like(tg_mul(g, b), a))) return -1;
    if (b->requires_grad && !(gin[1] = reduce_like(tg_mul(g, a), b))) return -1;
    return 0;
}

static tg_tensor *binary(binop op, tg_tensor *a, tg_tensor *b);

/* g * d and g / d for a gradient g and a local derivative d, but 0 wherever g is 0
 * (see the top of the file); grad_mul also gives 0 where d is 0, so that it is
 * symmetric and its own derivative w.r.t. d (g times the next gradient) keeps the rule
 * where g is 0. */
static tg_tensor *grad_mul(tg_tensor *g, tg_tensor *d) { return binary(B_GMUL, g, d); }
static tg_tensor *grad_div(tg_tensor *g, tg_tensor *d) { return binary(B_GDIV, g, d); }

/* y = grad_mul(a, b):  da = grad_mul(g, b),  db = grad_mul(g, a). */
static int gmul_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *a = n->in[0], *b = n->in[1];
    if (a->requires_grad && !(gin[0] = reduce_like(grad_mul(g, b), a))) return -1;
    if (b->requires_grad && !(gin[1] = reduce_like(grad_mul(g, a), b))) return -1;
    return 0;
}

/* y = a / b (tg_div or grad_div):  da = g / b,  db = -g a / b^2 = -(g y) / b, with the
 * products of g taken by grad_mul / grad_div: g y is 0 where y is 0 (a = 0) before it
 * meets b, so a zero numerator gives b no NaN even where b is 0 or NaN. */
static int div_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *a = n->in[0], *b = n->in[1];
    if (a->requires_grad && !(gin[0] = reduce_like(grad_div(g, b), a))) return -1;
    if (b->requires_grad && !(gin[1] = reduce_like(tg_neg(grad_div(grad_mul(g, n->out), b)), b)))
        return -1;
    return 0;
}

/* t with its entries set to 0 where pred(a, b) holds (a, b broadcast to t's shape).
 * The condition is a constant computed from the values, without history, so only t's
 * history remains; t itself is returned when no entry matches. */
typedef bool (*pow_pred)(double a, double b);
static bool pow_base0(double a, double b) { return a == 0.0 && b >= 0.0; }
static bool pow_exp0(double a, double b) {
    (void)a;
    return b == 0.0;
}

static tg_tensor *zero_where(tg_tensor *t, tg_tensor *a, tg_tensor *b, pow_pred pred) {
    if (!t) return NULL;
    tg_tensor *at = tg_broadcast_to(tg_detach(a), t->ndim, t->shape);
    tg_tensor *bt = tg_broadcast_to(tg_detach(b), t->ndim, t->shape);
    tg_tensor *cond = tg__tape_tensor(t->dtype, t->ndim, t->shape);
    if (!at || !bt || !cond) return NULL;
    bool any = false;
    for (int64_t i = 0; i < t->numel; i++) {
        bool c = pred(tg__get(at, i), tg__get(bt, i));
        any |= c;
        tg__set(cond, i, c ? 1.0 : 0.0);
    }
    if (!any) return t;
    tg_tensor *zero = tg__tape_full(t->dtype, 0, NULL, 0.0);
    return zero ? tg_where(cond, zero, t) : NULL;
}

/* y = a^b:  da = g b a^(b-1)  (0 where b == 0: a^0 is constant, even at a == 0),
 *           db = g a^b log a  (0 where a == 0 and b >= 0). */
static int pow_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *a = n->in[0], *b = n->in[1];
    if (a->requires_grad) {
        tg_tensor *t = grad_mul(g, tg_mul(b, tg_pow(a, tg_add_scalar(b, -1.0))));
        if (!(gin[0] = reduce_like(zero_where(t, a, b, pow_exp0), a))) return -1;
    }
    if (b->requires_grad) {
        tg_tensor *t = grad_mul(g, tg_mul(tg_pow(a, b), tg_log(a)));
        if (!(gin[1] = reduce_like(zero_where(t, a, b, pow_base0), b))) return -1;
    }
    return 0;
}

/* max/min: each input gets g times its share (1, 1/2 on a tie, 0); lt: minimum. */
static int maxmin_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin, bool lt) {
    tg_tensor *a = tg_detach(n->in[0]), *b = tg_detach(n->in[1]);
    binop m = lt ? B_MASK_LT : B_MASK_GT;
    if (n->in[0]->requires_grad &&
        !(gin[0] = reduce_like(tg_mul(g, tg__derived_constant(binary_compute(m, a, b), 2, n->in)),
                               n->in[0])))
        return -1;
    if (n->in[1]->requires_grad &&
        !(gin[1] = reduce_like(tg_mul(g, tg__derived_constant(binary_compute(m, b, a), 2, n->in)),
                               n->in[1])))
        return -1;
    return 0;
}
static int max_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return maxmin_backward(n, g, gin, false);
}
static int min_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return maxmin_backward(n, g, gin, true);
}

static const tg__backward_fn bin_backward[B_COUNT] = {
    [B_ADD] = add_backward,
    [B_SUB] = sub_backward,
    [B_MUL] = mul_backward,
    [B_DIV] = div_backward,
    [B_POW] = pow_backward,
    [B_MAX] = max_backward,
    [B_MIN] = min_backward,
    /* masks are constants and never recorded; relu_grad records itself */
    [B_MASK_GT] = NULL,
    [B_MASK_LT] = NULL,
    [B_RELU_GRAD] = NULL,
    [B_GMUL] = gmul_backward,
    [B_GDIV] = div_backward};
static const char *const bin_opnames[B_COUNT] = {"add",  "sub",       "mul",      "div",
                                                 "pow",  "maximum",   "minimum",  "mask",
                                                 "mask", "relu_grad", "grad_mul", "grad_div"};

/* The backwards above on doubles, for scalar code (tg__scalar_backward_fn): the same
 * expressions in the same order, grad_mul and grad_div included. */
static double in0(const tg__node *n) { return ((const double *)n->in[0]->data)[0]; }
static double in1(const tg__node *n) { return ((const double *)n->in[1]->data)[0]; }
static double out0(const tg__node *n) { return ((const double *)n->out->data)[0]; }
static void add_sbackward(const tg__node *n, double g, double *gin) {
    (void)n;
    gin[0] = gin[1] = g;
}
static void sub_sbackward(const tg__node *n, double g, double *gin) {
    (void)n;
    gin[0] = g;
    gin[1] = -g;
}
static void mul_sbackward(const tg__node *n, double g, double *gin) {
    gin[0] = g * in1(n);
    gin[1] = g * in0(n);
}
static double gdiv(double g, double d) { return g == 0 ? 0.0 : g / d; }
static double gmul(double g, double d) { return gmul_double(g, d); }
static void div_sbackward(const tg__node *n, double g, double *gin) {
    double b = in1(n);
    gin[0] = gdiv(g, b);
    gin[1] = -gdiv(gmul(g, out0(n)), b);
}
static void maxmin_sbackward(const tg__node *n, double g, double *gin, bool lt) {
    double a = in0(n), b = in1(n);
    double ma = BIN_EXPR(lt ? B_MASK_LT : B_MASK_GT, a, b, double);
    double mb = BIN_EXPR(lt ? B_MASK_LT : B_MASK_GT, b, a, double);
    gin[0] = g * ma;
    gin[1] = g * mb;
}
static void max_sbackward(const tg__node *n, double g, double *gin) {
    maxmin_sbackward(n, g, gin, false);
}
static void min_sbackward(const tg__node *n, double g, double *gin) {
    maxmin_sbackward(n, g, gin, true);
}
static const tg__scalar_backward_fn bin_sbackward[B_COUNT] = {
    [B_ADD] = add_sbackward, [B_SUB] = sub_sbackward, [B_MUL] = mul_sbackward,
    [B_DIV] = div_sbackward, [B_MAX] = max_sbackward, [B_MIN] = min_sbackward};

static tg_tensor *binary(binop op, tg_tensor *a, tg_tensor *b) {
    tg_tensor *y = binary_compute(op, a, b);
    if (!y) return NULL;
    tg__node *n =
        tg__record_small(bin_opnames[op], y, 2, (tg_tensor *const[]){a, b}, bin_backward[op]);
    if (n == TG__RECORD_FAILED) return NULL;
    tg__set_scalar_backward(n, bin_sbackward[op]);
    return y;
}

tg_tensor *tg_add(tg_tensor *a, tg_tensor *b) { return binary(B_ADD, a, b); }
tg_tensor *tg_sub(tg_tensor *a, tg_tensor *b) { return binary(B_SUB, a, b); }
tg_tensor *tg_mul(tg_tensor *a, tg_tensor *b) { return binary(B_MUL, a, b); }
tg_tensor *tg_div(tg_tensor *a, tg_tensor *b) { return binary(B_DIV, a, b); }
tg_tensor *tg_pow(tg_tensor *a, tg_tensor *b) { return binary(B_POW, a, b); }
tg_tensor *tg_maximum(tg_tensor *a, tg_tensor *b) { return binary(B_MAX, a, b); }
tg_tensor *tg_minimum(tg_tensor *a, tg_tensor *b) { return binary(B_MIN, a, b); }

/* ================= unary ================= */

typedef enum {
    U_NEG,
    U_EXP,
    U_LOG,
    U_SIN,
    U_COS,
    U_TANH,
    U_SIGMOID,
    U_RELU,
    U_SQRT,
    U_ABS,
    U_SQUARE,
    U_SIGN, /* -1, 0, 1: abs's derivative */
    U_ADDC,
    U_MULC,
    U_POWC, /* with the constant c */
    U_LOG1P,
    U_EXPM1,
    U_SOFTPLUS,
    U_ERF,
    U_GELU,
    U_SILU,
    U_ELU,     /* alpha = c */
    U_CLAMP,   /* lo = c, hi = c2 */
    U_STEP,    /* 1 where x > 0, else 0: elu's mask */
    U_INRANGE, /* 1 where c <= x <= c2, else 0: clamp's gradient mask */
    U_COUNT
} unop;

static const char *const un_names[U_COUNT] = {
    "tg_neg",    "tg_exp",     "tg_log",        "tg_sin",        "tg_cos",
    "tg_tanh",   "tg_sigmoid", "tg_relu",       "tg_sqrt",       "tg_abs",
    "tg_square", "tg_sign",    "tg_add_scalar", "tg_mul_scalar", "tg_pow_scalar",
    "tg_log1p",  "tg_expm1",   "tg_softplus",   "tg_erf",        "tg_gelu",
    "tg_silu",   "tg_elu",     "tg_clamp",      "tg_step",       "tg_inrange"};

/* 1/sqrt(2) (M_SQRT1_2 is not part of C11). */
#define SQRT1_2 0.70710678118654752440084436210484903

/* x, c, c2: the element and the op's constants. softplus is max(x, 0) + log1p(e^-|x|),
 * exact for large |x|; gelu is x Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2 (the erf
 * form, 0.5 x (1 + erf(x / sqrt 2)), without its cancellation for x << 0); silu is
 * x / (1 + e^-x). NaN stays NaN in every op (clamp included). */
#define UN_EXPR(op, x, c, c2, T, F)                                                                \
    ((op) == U_NEG    ? -(x)                                                                       \
     : (op) == U_EXP  ? exp##F(x)                                                                  \
     : (op) == U_LOG  ? log##F(x)                                                                  \
     : (op) == U_SIN  ? sin##F(x)                                                                  \
     : (op) == U_COS  ? cos##F(x)                                                                  \
     : (op) == U_TANH ? tanh##F(x)                                                                 \
     : (op) == U_SIGMOID                                                                           \
         ? ((x) >= 0 ? (T)1 / ((T)1 + exp##F(-(x))) : exp##F(x) / ((T)1 + exp##F(x)))              \
     : (op) == U_RELU     ? ((x) < 0 ? (T)0 : (x)) /* NaN stays NaN */                             \
     : (op) == U_SQRT     ? sqrt##F(x)                                                             \
     : (op) == U_ABS      ? fabs##F(x)                                                             \
     : (op) == U_SQUARE   ? (x) * (x)                                                              \
     : (op) == U_SIGN     ? ((x) > 0   ? (T)1                                                      \
                             : (x) < 0 ? (T)-1                                                     \
                                       : (T)0)                                                     \
     : (op) == U_ADDC     ? (x) + (c)                                                              \
     : (op) == U_MULC     ? (x) * (c)                                                              \
     : (op) == U_POWC     ? pow##F((x), (c))                                                       \
     : (op) == U_LOG1P    ? log1p##F(x)                                                            \
     : (op) == U_EXPM1    ? expm1##F(x)                                                            \
     : (op) == U_SOFTPLUS ? ((x) > 0 ? (x) + log1p##F(exp##F(-(x))) : log1p##F(exp##F(x)))         \
     : (op) == U_ERF      ? erf##F(x)                                                              \
     : (op) == U_GELU     ? (T)0.5 * (x)*erfc##F(-(x) * (T)SQRT1_2)                                \
     : (op) == U_SILU     ? (x) / ((T)1 + exp##F(-(x)))                                            \
     : (op) == U_ELU      ? ((x) > 0 ? (x) : (c)*expm1##F(x))                                      \
     : (op) == U_CLAMP    ? ((x) < (c)    ? ((c) > (c2) ? (c2) : (c))                              \
                             : (x) > (c2) ? (c2)                                                   \
                                          : (x))                                                   \
     : (op) == U_STEP     ? ((x) > 0 ? (T)1 : (T)0)                                                \
                          : ((x) >= (c) && (x) <= (c2) ? (T)1 : (T)0))

#define UN_LOOP(T, F, OP)                                                                          \
    case OP:                                                                                       \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T v_ = x[i];                                                                           \
            y[i] = UN_EXPR(OP, v_, c, c2, T, F);                                                   \
        }                                                                                          \
        break;

#define UN_KERNEL(NAME, T, F)                                                                      \
    static void NAME(unop op, int64_t n, const T *x, T c, T c2, T *y) {                            \
        switch (op) {                                                                              \
            UN_LOOP(T, F, U_NEG)                                                                   \
            UN_LOOP(T, F, U_EXP)                                                                   \
            UN_LOOP(T, F, U_LOG)                                                                   \
            UN_LOOP(T, F, U_SIN)                                                                   \
            UN_LOOP(T, F, U_COS)                                                                   \
            UN_LOOP(T, F, U_TANH)                                                                  \
            UN_LOOP(T, F, U_SIGMOID)                                                               \
            UN_LOOP(T, F, U_RELU)                                                                  \
            UN_LOOP(T, F, U_SQRT)                                                                  \
            UN_LOOP(T, F, U_ABS)                                                                   \
            UN_LOOP(T, F, U_SQUARE)                                                                \
            UN_LOOP(T, F, U_SIGN)                                                                  \
            UN_LOOP(T, F, U_ADDC)                                                                  \
            UN_LOOP(T, F, U_MULC)                                                                  \
            UN_LOOP(T, F, U_POWC)                                                                  \
            UN_LOOP(T, F, U_LOG1P)                                                                 \
            UN_LOOP(T, F, U_EXPM1)                                                                 \
            UN_LOOP(T, F, U_SOFTPLUS)                                                              \
            UN_LOOP(T, F, U_ERF)                                                                   \
            UN_LOOP(T, F, U_GELU)                                                                  \
            UN_LOOP(T, F, U_SILU)                                                                  \
            UN_LOOP(T, F, U_ELU)                                                                   \
            UN_LOOP(T, F, U_CLAMP)                                                                 \
            UN_LOOP(T, F, U_STEP)                                                                  \
            UN_LOOP(T, F, U_INRANGE)                                                               \
        default:                                                                                   \
            break;                                                                                 \
        }                                                                                          \
    }

UN_KERNEL(un_f32, float, f)
UN_KERNEL(un_f64, double, )

static tg_tensor *unary_compute(unop op, tg_tensor *x, double c, double c2) {
    if (scalar_f64(x)) { /* scalar code: the same kernel, without the shape work */
        tg__op_name = un_names[op];
        tg_tensor *y = tg__tape_scalar(TG_F64);
        if (y) un_f64(op, 1, x->data, c, c2, y->data);
        return y;
    }
    if (!tg__check_float(un_names[op], x)) return NULL;
    tg_tensor *y = tg__tape_tensor(x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    if (x->dtype == TG_F64)
        un_f64(op, x->numel, x->data, c, c2, y->data);
    else
        un_f32(op, x->numel, x->data, (float)c, (float)c2, y->data);
    return y;
}

static int neg_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    (void)n;
    return (gin[0] = tg_neg(g)) ? 0 : -1;
}
static int exp_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = grad_mul(g, n->out)) ? 0 : -1;
}
static int log_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = grad_div(g, n->in[0])) ? 0 : -1;
}
static int sin_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_mul(g, tg_cos(n->in[0]))) ? 0 : -1;
}
static int cos_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_neg(tg_mul(g, tg_sin(n->in[0])))) ? 0 : -1;
}
/* d tanh = 1 - y^2 */
static int tanh_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_mul(g, tg_add_scalar(tg_neg(tg_square(n->out)), 1.0))) ? 0 : -1;
}
/* d sigmoid = y (1 - y) */
static int sigmoid_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *y = n->out;
    return (gin[0] = tg_mul(g, tg_mul(y, tg_add_scalar(tg_neg(y), 1.0)))) ? 0 : -1;
}
/* relu's backward as one op: y = g where x > 0, else 0. Linear in g, so its own
 * backward is the same op on the incoming gradient; x is an input with a zero
 * derivative (as in PyTorch: the result of a create-graph sweep through relu requires
 * a gradient when x does, and its derivative with respect to x is 0). */
static tg_tensor *relu_grad(tg_tensor *g, tg_tensor *x);
static int relu_grad_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[1];
    if (n->in[0]->requires_grad && !(gin[0] = relu_grad(g, x))) return -1;
    if (x->requires_grad && !(gin[1] = tg__tape_zeros(x->dtype, x->ndim, x->shape))) return -1;
    return 0;
}
static tg_tensor *relu_grad(tg_tensor *g, tg_tensor *x) {
    tg_tensor *y = binary_compute(B_RELU_GRAD, g, x);
    if (!y) return NULL;
    if (tg__record_small("relu_grad", y, 2, (tg_tensor *const[]){g, x}, relu_grad_backward) ==
        TG__RECORD_FAILED)
        return NULL;
    return y;
}
static int relu_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = relu_grad(g, n->in[0])) ? 0 : -1;
}
/* d sqrt = 1 / (2 y) */
static int sqrt_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = grad_div(g, tg_mul_scalar(n->out, 2.0))) ? 0 : -1;
}
static int abs_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *sign = tg__derived_constant(unary_compute(U_SIGN, n->in[0], 0, 0), 1, n->in);
    return (gin[0] = tg_mul(g, sign)) ? 0 : -1;
}
static int square_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_mul(g, tg_mul_scalar(n->in[0], 2.0))) ? 0 : -1;
}
static int addc_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    (void)n;
    gin[0] = g;
    return 0;
}
static int mulc_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_mul_scalar(g, n->d[0])) ? 0 : -1;
}
/* d x^c = c x^(c-1) */
static int powc_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    double c = n->d[0];
    if (c == 0.0) {
        gin[0] = tg__tape_zeros(g->dtype, g->ndim, g->shape);
        return gin[0] ? 0 : -1;
    }
    return (gin[0] = grad_mul(g, tg_mul_scalar(tg_pow_scalar(n->in[0], c - 1.0), c))) ? 0 : -1;
}
/* d log1p = 1 / (1 + x) */
static int log1p_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = grad_div(g, tg_add_scalar(n->in[0], 1.0))) ? 0 : -1;
}
/* d expm1 = e^x = y + 1 */
static int expm1_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = grad_mul(g, tg_add_scalar(n->out, 1.0))) ? 0 : -1;
}
/* d softplus = sigmoid(x) (exactly 1/2 at 0) */
static int softplus_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_mul(g, tg_sigmoid(n->in[0]))) ? 0 : -1;
}
/* d erf = (2 / sqrt pi) e^(-x^2) */
static int erf_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *e = tg_exp(tg_neg(tg_square(n->in[0])));
    return (gin[0] = tg_mul(g, tg_mul_scalar(e, 1.1283791670955125738961589031215452))) ? 0 : -1;
}
/* d gelu = Phi(x) + x phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2, phi(x) = e^(-x^2/2) / sqrt(2 pi)
 */
static int gelu_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[0];
    tg_tensor *cdf = tg_add_scalar(tg_mul_scalar(tg_erf(tg_mul_scalar(x, SQRT1_2)), 0.5), 0.5);
    tg_tensor *pdf = tg_mul_scalar(tg_exp(tg_mul_scalar(tg_square(x), -0.5)),
                                   0.39894228040143267793994605993438187);
    return (gin[0] = tg_mul(g, tg_add(cdf, tg_mul(x, pdf)))) ? 0 : -1;
}
/* d silu = s (1 + x (1 - s)), s = sigmoid(x) */
static int silu_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *x = n->in[0], *s = tg_sigmoid(x);
    tg_tensor *d = tg_mul(s, tg_add_scalar(tg_mul(x, tg_add_scalar(tg_neg(s), 1.0)), 1.0));
    return (gin[0] = tg_mul(g, d)) ? 0 : -1;
}
/* d elu = 1 where x > 0, else alpha e^x = y + alpha (PyTorch's choice at 0: alpha).
 * Written with y so that e^x never overflows in the branch that is not taken. */
static int elu_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *pos = unary_compute(U_STEP, n->in[0], 0, 0);
    tg_tensor *neg = tg_mul(g, tg_add_scalar(n->out, n->d[0]));
    return (gin[0] = tg_where(pos, g, neg)) ? 0 : -1;
}
/* d clamp = 1 where lo <= x <= hi, else 0 (a constant mask) */
static int clamp_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *mask =
        tg__derived_constant(unary_compute(U_INRANGE, n->in[0], n->d[0], n->d[1]), 1, n->in);
    return (gin[0] = tg_mul(g, mask)) ? 0 : -1;
}

static const tg__backward_fn un_backward[U_COUNT] = {
    [U_NEG] = neg_backward,
    [U_EXP] = exp_backward,
    [U_LOG] = log_backward,
    [U_SIN] = sin_backward,
    [U_COS] = cos_backward,
    [U_TANH] = tanh_backward,
    [U_SIGMOID] = sigmoid_backward,
    [U_RELU] = relu_backward,
    [U_SQRT] = sqrt_backward,
    [U_ABS] = abs_backward,
    [U_SQUARE] = square_backward,
    [U_SIGN] = NULL, /* a constant mask, never recorded */
    [U_ADDC] = addc_backward,
    [U_MULC] = mulc_backward,
    [U_POWC] = powc_backward,
    [U_LOG1P] = log1p_backward,
    [U_EXPM1] = expm1_backward,
    [U_SOFTPLUS] = softplus_backward,
    [U_ERF] = erf_backward,
    [U_GELU] = gelu_backward,
    [U_SILU] = silu_backward,
    [U_ELU] = elu_backward,
    [U_CLAMP] = clamp_backward,
    [U_STEP] = NULL, /* masks: constants, never recorded */
    [U_INRANGE] = NULL};

/* The backwards above on doubles, for scalar code (tg__scalar_backward_fn): the same
 * expressions in the same order, grad_mul and grad_div included. */
static void neg_sbackward(const tg__node *n, double g, double *gin) {
    (void)n;
    gin[0] = -g;
}
static void exp_sbackward(const tg__node *n, double g, double *gin) { gin[0] = gmul(g, out0(n)); }
static void log_sbackward(const tg__node *n, double g, double *gin) { gin[0] = gdiv(g, in0(n)); }
static void sin_sbackward(const tg__node *n, double g, double *gin) { gin[0] = g * cos(in0(n)); }
static void cos_sbackward(const tg__node *n, double g, double *gin) { gin[0] = -(g * sin(in0(n))); }
static void tanh_sbackward(const tg__node *n, double g, double *gin) {
    double y = out0(n);
    gin[0] = g * (-(y * y) + 1.0);
}
static void sigmoid_sbackward(const tg__node *n, double g, double *gin) {
    double y = out0(n);
    gin[0] = g * (y * (-y + 1.0));
}
static void relu_sbackward(const tg__node *n, double g, double *gin) {
    gin[0] = in0(n) > 0 ? g : 0;
}
static void sqrt_sbackward(const tg__node *n, double g, double *gin) {
    gin[0] = gdiv(g, out0(n) * 2.0);
}
static void abs_sbackward(const tg__node *n, double g, double *gin) {
    double x = in0(n);
    gin[0] = g * (x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0);
}
static void square_sbackward(const tg__node *n, double g, double *gin) {
    gin[0] = g * (in0(n) * 2.0);
}
static void addc_sbackward(const tg__node *n, double g, double *gin) {
    (void)n;
    gin[0] = g;
}
static void mulc_sbackward(const tg__node *n, double g, double *gin) { gin[0] = g * n->d[0]; }
static void powc_sbackward(const tg__node *n, double g, double *gin) {
    double c = n->d[0];
    gin[0] = c == 0.0 ? 0.0 : gmul(g, pow(in0(n), c - 1.0) * c);
}
static const tg__scalar_backward_fn un_sbackward[U_COUNT] = {
    [U_NEG] = neg_sbackward,         [U_EXP] = exp_sbackward,       [U_LOG] = log_sbackward,
    [U_SIN] = sin_sbackward,         [U_COS] = cos_sbackward,       [U_TANH] = tanh_sbackward,
    [U_SIGMOID] = sigmoid_sbackward, [U_RELU] = relu_sbackward,     [U_SQRT] = sqrt_sbackward,
    [U_ABS] = abs_sbackward,         [U_SQUARE] = square_sbackward, [U_ADDC] = addc_sbackward,
    [U_MULC] = mulc_sbackward,       [U_POWC] = powc_sbackward};

static tg_tensor *unary2(unop op, tg_tensor *x, double c, double c2) {
    tg_tensor *y = unary_compute(op, x, c, c2);
    if (!y) return NULL;
    tg__node *n = tg__record_small(un_names[op] + 3, y, 1, &x, un_backward[op]);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) {
        n->d[0] = c;
        n->d[1] = c2;
        tg__set_scalar_backward(n, un_sbackward[op]);
    }
    return y;
}
static tg_tensor *unary(unop op, tg_tensor *x, double c) { return unary2(op, x, c, 0.0); }

tg_tensor *tg_neg(tg_tensor *x) { return unary(U_NEG, x, 0); }
tg_tensor *tg_exp(tg_tensor *x) { return unary(U_EXP, x, 0); }
tg_tensor *tg_log(tg_tensor *x) { return unary(U_LOG, x, 0); }
tg_tensor *tg_sin(tg_tensor *x) { return unary(U_SIN, x, 0); }
tg_tensor *tg_cos(tg_tensor *x) { return unary(U_COS, x, 0); }
tg_tensor *tg_tanh(tg_tensor *x) { return unary(U_TANH, x, 0); }
tg_tensor *tg_sigmoid(tg_tensor *x) { return unary(U_SIGMOID, x, 0); }
tg_tensor *tg_relu(tg_tensor *x) { return unary(U_RELU, x, 0); }
tg_tensor *tg_sqrt(tg_tensor *x) { return unary(U_SQRT, x, 0); }
tg_tensor *tg_abs(tg_tensor *x) { return unary(U_ABS, x, 0); }
tg_tensor *tg_square(tg_tensor *x) { return unary(U_SQUARE, x, 0); }
tg_tensor *tg_add_scalar(tg_tensor *x, double c) { return unary(U_ADDC, x, c); }
tg_tensor *tg_mul_scalar(tg_tensor *x, double c) { return unary(U_MULC, x, c); }
tg_tensor *tg_pow_scalar(tg_tensor *x, double c) { return unary(U_POWC, x, c); }
tg_tensor *tg_log1p(tg_tensor *x) { return unary(U_LOG1P, x, 0); }
tg_tensor *tg_expm1(tg_tensor *x) { return unary(U_EXPM1, x, 0); }
tg_tensor *tg_softplus(tg_tensor *x) { return unary(U_SOFTPLUS, x, 0); }
tg_tensor *tg_erf(tg_tensor *x) { return unary(U_ERF, x, 0); }
tg_tensor *tg_gelu(tg_tensor *x) { return unary(U_GELU, x, 0); }
tg_tensor *tg_silu(tg_tensor *x) { return unary(U_SILU, x, 0); }

tg_tensor *tg_elu(tg_tensor *x, double alpha) {
    if (!tg__check_float("tg_elu", x)) return NULL;
    if (!isfinite(alpha))
        return tg__fail("tg_elu: alpha must be finite, got %g (x %s)", alpha, tg__shp(x));
    return unary(U_ELU, x, alpha);
}

tg_tensor *tg_clamp(tg_tensor *x, double lo, double hi) {
    if (!tg__check_float("tg_clamp", x)) return NULL;
    if (isnan(lo) || isnan(hi))
        return tg__fail("tg_clamp: bounds must not be NaN, got [%g, %g] (x %s)", lo, hi,
                        tg__shp(x));
    return unary2(U_CLAMP, x, lo, hi);
}

/* ================= where ================= */

typedef struct {
    const tg_tensor *c;
    const void *a, *b;
    void *y;
} where_ctx;

#define WHERE_RUN(NAME, T)                                                                         \
    static void NAME(int64_t n, int64_t oo, const int64_t *off, const int64_t *st, void *vc) {     \
        const where_ctx *w = vc;                                                                   \
        const T *a = (const T *)w->a + off[1], *b = (const T *)w->b + off[2];                      \
        T *y = (T *)w->y + oo;                                                                     \
        for (int64_t i = 0; i < n; i++)                                                            \
            y[i] = tg__get(w->c, off[0] + i * st[0]) != 0 ? a[i * st[1]] : b[i * st[2]];           \
    }
WHERE_RUN(where_f32, float)
WHERE_RUN(where_f64, double)

static int where_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *cond = (tg_tensor *)n->aux[0];
    tg_tensor *zero = tg__tape_full(g->dtype, 0, NULL, 0.0);
    if (!zero) return -1;
    if (n->in[0]->requires_grad && !(gin[0] = reduce_like(tg_where(cond, g, zero), n->in[0])))
        return -1;
    if (n->in[1]->requires_grad && !(gin[1] = reduce_like(tg_where(cond, zero, g), n->in[1])))
        return -1;
    return 0;
}

tg_tensor *tg_where(const tg_tensor *cond, tg_tensor *a, tg_tensor *b) {
    if (!tg__check_nonnull("tg_where", cond) || !tg__check_float2("tg_where", a, b)) return NULL;
    int n1, nd;
    int64_t s1[TG_MAX_DIMS], shape[TG_MAX_DIMS];
    if (!tg__broadcast_shape("tg_where", "and", a->ndim, a->shape, b->ndim, b->shape, &n1, s1))
        return NULL;
    if (!tg__broadcast_shape("tg_where", "with condition", n1, s1, cond->ndim, cond->shape, &nd,
                             shape))
        return NULL;
    tg_tensor *y = tg__tape_tensor(a->dtype, nd, shape);
    if (!y) return NULL;
    where_ctx w = {cond, a->data, b->data, y->data};
    tg__broadcast_walk(nd, shape, 3, (const int[]){cond->ndim, a->ndim, b->ndim},
                       (const int64_t *const[]){cond->shape, a->shape, b->shape},
                       a->dtype == TG_F64 ? where_f64 : where_f32, &w);
    tg__node *n = tg__record("where", y, 2, (tg_tensor *const[]){a, b}, where_backward);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) n->aux[0] = cond;
    return y;
}
