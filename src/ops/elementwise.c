/* elementwise.c — binary ops with NumPy broadcasting, unary ops, ops with a scalar
 * constant, and tg_where. Kernels are single passes over contiguous memory: the
 * strided walker (common.c) hands them runs whose operand strides are 0 or 1, so the
 * equal-shape case is one run and the bias add (row broadcast) one run per row. */
#include <math.h>
#include <string.h>

#include "../autodiff/internal.h"

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
    B_COUNT
} binop;

static const char *const bin_names[B_COUNT] = {
    "tg_add",     "tg_sub",     "tg_mul",     "tg_div",     "tg_pow",
    "tg_maximum", "tg_minimum", "tg_mask_gt", "tg_mask_lt", "tg_relu_grad"};
static const char *const bin_syms[B_COUNT] = {"+",   "-",   "*", "/", "^",
                                              "max", "min", ">", "<", "where >0"};

typedef struct {
    const void *a, *b;
    void *y;
    binop op;
} bin_ctx;

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
                         : ((z) > 0 ? (x) : (T)0))

/* The switch sits outside the loops so every loop has a fixed operation. Operands are
 * loaded into locals first: a select such as relu_grad's then reads memory
 * unconditionally and the loop vectorises (blends instead of branches). */
#define BIN_LOOP(T, OP, IA, IB)                                                                    \
    for (int64_t i = 0; i < n; i++) {                                                              \
        T x_ = a[IA], z_ = b[IB];                                                                  \
        y[i] = BIN_EXPR(OP, x_, z_, T);                                                            \
    }
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
        default:                                                                                   \
            break;                                                                                 \
        }                                                                                          \
    }

BIN_RUN(bin_run_f32, float)
BIN_RUN(bin_run_f64, double)

static tg_tensor *binary_compute(binop op, tg_tensor *a, tg_tensor *b) {
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

/* y = a / b:  da = g / b,  db = -g a / b^2 = -(g / b) y */
static int div_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *a = n->in[0], *b = n->in[1];
    tg_tensor *gb = tg_div(g, b);
    if (a->requires_grad && !(gin[0] = reduce_like(gb, a))) return -1;
    if (b->requires_grad && !(gin[1] = reduce_like(tg_neg(tg_mul(gb, tg_div(a, b))), b))) return -1;
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
        tg_tensor *t = tg_mul(g, tg_mul(b, tg_pow(a, tg_add_scalar(b, -1.0))));
        if (!(gin[0] = reduce_like(zero_where(t, a, b, pow_exp0), a))) return -1;
    }
    if (b->requires_grad) {
        tg_tensor *t = tg_mul(g, tg_mul(tg_pow(a, b), tg_log(a)));
        if (!(gin[1] = reduce_like(zero_where(t, a, b, pow_base0), b))) return -1;
    }
    return 0;
}

/* max/min: each input gets g times its share (1, 1/2 on a tie, 0). */
static int maxmin_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *a = tg_detach(n->in[0]), *b = tg_detach(n->in[1]);
    binop m = n->i[0] ? B_MASK_LT : B_MASK_GT;
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

static const tg__backward_fn bin_backward[B_COUNT] = {
    [B_ADD] = add_backward,
    [B_SUB] = sub_backward,
    [B_MUL] = mul_backward,
    [B_DIV] = div_backward,
    [B_POW] = pow_backward,
    [B_MAX] = maxmin_backward,
    [B_MIN] = maxmin_backward,
    /* masks are constants and never recorded; relu_grad records itself */
    [B_MASK_GT] = NULL,
    [B_MASK_LT] = NULL,
    [B_RELU_GRAD] = NULL};
static const char *const bin_opnames[B_COUNT] = {"add",     "sub",     "mul",  "div",  "pow",
                                                 "maximum", "minimum", "mask", "mask", "relu_grad"};

static tg_tensor *binary(binop op, tg_tensor *a, tg_tensor *b) {
    tg_tensor *y = binary_compute(op, a, b);
    if (!y) return NULL;
    tg__node *n = tg__record(bin_opnames[op], y, 2, (tg_tensor *const[]){a, b}, bin_backward[op]);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) n->i[0] = op == B_MIN;
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
    U_COUNT
} unop;

static const char *const un_names[U_COUNT] = {
    "tg_neg",    "tg_exp",     "tg_log",        "tg_sin",        "tg_cos",
    "tg_tanh",   "tg_sigmoid", "tg_relu",       "tg_sqrt",       "tg_abs",
    "tg_square", "tg_sign",    "tg_add_scalar", "tg_mul_scalar", "tg_pow_scalar"};

#define UN_EXPR(op, x, c, T, F)                                                                    \
    ((op) == U_NEG    ? -(x)                                                                       \
     : (op) == U_EXP  ? exp##F(x)                                                                  \
     : (op) == U_LOG  ? log##F(x)                                                                  \
     : (op) == U_SIN  ? sin##F(x)                                                                  \
     : (op) == U_COS  ? cos##F(x)                                                                  \
     : (op) == U_TANH ? tanh##F(x)                                                                 \
     : (op) == U_SIGMOID                                                                           \
         ? ((x) >= 0 ? (T)1 / ((T)1 + exp##F(-(x))) : exp##F(x) / ((T)1 + exp##F(x)))              \
     : (op) == U_RELU   ? ((x) < 0 ? (T)0 : (x)) /* NaN stays NaN */                               \
     : (op) == U_SQRT   ? sqrt##F(x)                                                               \
     : (op) == U_ABS    ? fabs##F(x)                                                               \
     : (op) == U_SQUARE ? (x) * (x)                                                                \
     : (op) == U_SIGN   ? ((x) > 0   ? (T)1                                                        \
                           : (x) < 0 ? (T)-1                                                       \
                                     : (T)0)                                                       \
     : (op) == U_ADDC   ? (x) + (c)                                                                \
     : (op) == U_MULC   ? (x) * (c)                                                                \
                        : pow##F((x), (c)))

#define UN_LOOP(T, F, OP)                                                                          \
    case OP:                                                                                       \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T v_ = x[i];                                                                           \
            y[i] = UN_EXPR(OP, v_, c, T, F);                                                       \
        }                                                                                          \
        break;

#define UN_KERNEL(NAME, T, F)                                                                      \
    static void NAME(unop op, int64_t n, const T *x, T c, T *y) {                                  \
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
        default:                                                                                   \
            break;                                                                                 \
        }                                                                                          \
    }

UN_KERNEL(un_f32, float, f)
UN_KERNEL(un_f64, double, )

static tg_tensor *unary_compute(unop op, tg_tensor *x, double c) {
    if (!tg__check_float(un_names[op], x)) return NULL;
    tg_tensor *y = tg__tape_tensor(x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    if (x->dtype == TG_F64)
        un_f64(op, x->numel, x->data, c, y->data);
    else
        un_f32(op, x->numel, x->data, (float)c, y->data);
    return y;
}

static int neg_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    (void)n;
    return (gin[0] = tg_neg(g)) ? 0 : -1;
}
static int exp_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_mul(g, n->out)) ? 0 : -1;
}
static int log_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_div(g, n->in[0])) ? 0 : -1;
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
    if (tg__record("relu_grad", y, 2, (tg_tensor *const[]){g, x}, relu_grad_backward) ==
        TG__RECORD_FAILED)
        return NULL;
    return y;
}
static int relu_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = relu_grad(g, n->in[0])) ? 0 : -1;
}
/* d sqrt = 1 / (2 y) */
static int sqrt_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    return (gin[0] = tg_div(g, tg_mul_scalar(n->out, 2.0))) ? 0 : -1;
}
static int abs_backward(const tg__node *n, tg_tensor *g, tg_tensor **gin) {
    tg_tensor *sign = tg__derived_constant(unary_compute(U_SIGN, n->in[0], 0), 1, n->in);
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
    return (gin[0] = tg_mul(g, tg_mul_scalar(tg_pow_scalar(n->in[0], c - 1.0), c))) ? 0 : -1;
}

static const tg__backward_fn un_backward[U_COUNT] = {
    [U_NEG] = neg_backward,         [U_EXP] = exp_backward,
    [U_LOG] = log_backward,         [U_SIN] = sin_backward,
    [U_COS] = cos_backward,         [U_TANH] = tanh_backward,
    [U_SIGMOID] = sigmoid_backward, [U_RELU] = relu_backward,
    [U_SQRT] = sqrt_backward,       [U_ABS] = abs_backward,
    [U_SQUARE] = square_backward,   [U_SIGN] = NULL, /* a constant mask, never recorded */
    [U_ADDC] = addc_backward,       [U_MULC] = mulc_backward,
    [U_POWC] = powc_backward};

static tg_tensor *unary(unop op, tg_tensor *x, double c) {
    tg_tensor *y = unary_compute(op, x, c);
    if (!y) return NULL;
    tg__node *n = tg__record(un_names[op] + 3, y, 1, &x, un_backward[op]);
    if (n == TG__RECORD_FAILED) return NULL;
    if (n) n->d[0] = c;
    return y;
}

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
