/* expr.c — parsing and evaluating tapegrad-check expressions (see expr.h).
 *
 * A recursive-descent parser builds a tree of nodes in one array; evaluation walks the
 * tree and calls one library op per node. Functions are rows of one table: adding an
 * op of the library to the tool is adding its row (a unary op is one line). */
#include "expr.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the function table ---- */

/* How a row calls the library. Integer arguments (axes) are literals checked when the
 * expression is parsed; int_from is the first argument that must be one. */
typedef enum {
    F_UNARY,      /* f(x) */
    F_BINARY,     /* f(a, b) */
    F_REDUCE,     /* f(x[, axis]): axis default every axis, keepdim off */
    F_REDUCE_NEG, /* -f(-x[, axis]): a reduction expressed through its mirror image */
    F_AXIS,       /* f(x[, axis]): axis default -1 */
    F_TRANSPOSE,  /* f(x[, dim0, dim1]): default the last two dimensions */
    F_WHERE       /* f(cond, a, b) */
} func_kind;

typedef struct {
    const char *name;
    func_kind kind;
    int min_args, max_args, int_from;
    union {
        tg_tensor *(*unary)(tg_tensor *);
        tg_tensor *(*binary)(tg_tensor *, tg_tensor *);
        tg_tensor *(*reduce)(tg_tensor *, int, bool);
        tg_tensor *(*axis)(tg_tensor *, int);
        tg_tensor *(*transpose)(tg_tensor *, int, int);
        tg_tensor *(*where)(const tg_tensor *, tg_tensor *, tg_tensor *);
    } fn;
    const char *usage, *help;
} func;

/* tg_matmul with NumPy's rule for 1-D operands: a vector on the left is a row [1, k], one
 * on the right a column [k, 1], and the dimension so added is removed from the result
 * (vector @ vector is 0-d). Written with reshapes, so it is differentiable twice. */
static tg_tensor *matmul_numpy(tg_tensor *a, tg_tensor *b) {
    if (!a || !b || a->ndim == 0 || b->ndim == 0 || (a->ndim >= 2 && b->ndim >= 2))
        return tg_matmul(a, b); /* the library's result or its message */
    tg_tensor *a2 = a->ndim == 1 ? tg_reshape(a, 2, (int64_t[]){1, a->shape[0]}) : a;
    tg_tensor *b2 = b->ndim == 1 ? tg_reshape(b, 2, (int64_t[]){b->shape[0], 1}) : b;
    tg_tensor *c = tg_matmul(a2, b2);
    if (!c) return NULL;
    int64_t shape[TG_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < c->ndim; i++)
        if (!(a->ndim == 1 && i == c->ndim - 2) && !(b->ndim == 1 && i == c->ndim - 1))
            shape[nd++] = c->shape[i];
    return tg_reshape(c, nd, shape);
}

#define UNARY(n, h)                                                                                \
    { #n, F_UNARY, 1, 1, 1, {.unary = tg_##n }, #n "(x)", h }
#define REDUCE(n, h)                                                                               \
    { #n, F_REDUCE, 1, 2, 1, {.reduce = tg_##n }, #n "(x[, axis])", h }

/* One row per name. The unary rows are every unary op of ops.h. */
static const func funcs[] = {
    UNARY(neg, "-x"),
    UNARY(exp, "e^x"),
    UNARY(log, "natural logarithm"),
    UNARY(sin, "sine"),
    UNARY(cos, "cosine"),
    UNARY(tanh, "hyperbolic tangent"),
    UNARY(sigmoid, "1 / (1 + e^-x)"),
    UNARY(relu, "max(0, x); derivative 0 at 0"),
    UNARY(sqrt, "square root"),
    UNARY(abs, "|x|; derivative 0 at 0"),
    UNARY(square, "x^2"),
    {"maximum",
     F_BINARY,
     2,
     2,
     2,
     {.binary = tg_maximum},
     "maximum(a, b)",
     "elementwise max, broadcasting; ties split the gradient"},
    {"minimum",
     F_BINARY,
     2,
     2,
     2,
     {.binary = tg_minimum},
     "minimum(a, b)",
     "elementwise min, broadcasting; ties split the gradient"},
    {"pow", F_BINARY, 2, 2, 2, {.binary = tg_pow}, "pow(a, b)", "a^b with tensor b"},
    {"matmul",
     F_BINARY,
     2,
     2,
     2,
     {.binary = matmul_numpy},
     "matmul(a, b)",
     "matrix product, like a @ b"},
    REDUCE(sum, "sum over axis (default: every element)"),
    REDUCE(mean, "mean over axis (default: every element)"),
    REDUCE(max, "largest element over axis; the gradient goes to the first one"),
    REDUCE(logsumexp, "log sum e^x over axis, computed stably"),
    /* min(x) = -max(-x): the same value and the same gradient rule as max (the first
     * minimal element), until the library has a min reduction of its own. */
    {"min",
     F_REDUCE_NEG,
     1,
     2,
     1,
     {.reduce = tg_max},
     "min(x[, axis])",
     "smallest element over axis, as -max(-x); the gradient goes to the first one"},
    {"softmax",
     F_AXIS,
     1,
     2,
     1,
     {.axis = tg_softmax},
     "softmax(x[, axis])",
     "e^x / sum e^x along axis (default -1)"},
    {"log_softmax",
     F_AXIS,
     1,
     2,
     1,
     {.axis = tg_log_softmax},
     "log_softmax(x[, axis])",
     "x - logsumexp(x) along axis (default -1)"},
    {"transpose",
     F_TRANSPOSE,
     1,
     3,
     1,
     {.transpose = tg_transpose},
     "transpose(x[, dim0, dim1])",
     "swaps two dimensions (default the last two)"},
    {"where",
     F_WHERE,
     3,
     3,
     3,
     {.where = tg_where},
     "where(cond, a, b)",
     "a where cond is nonzero, else b; no gradient through cond"},
};
enum { NFUNCS = (int)(sizeof funcs / sizeof *funcs) };

int tgc_func_count(void) { return NFUNCS; }
const char *tgc_func_name(int i) { return i >= 0 && i < NFUNCS ? funcs[i].name : NULL; }
const char *tgc_func_usage(int i) { return i >= 0 && i < NFUNCS ? funcs[i].usage : NULL; }
const char *tgc_func_help(int i) { return i >= 0 && i < NFUNCS ? funcs[i].help : NULL; }

static const func *func_find(const char *name, size_t len) {
    for (int i = 0; i < NFUNCS; i++)
        if (strlen(funcs[i].name) == len && memcmp(funcs[i].name, name, len) == 0) return &funcs[i];
    return NULL;
}

/* ---- the tree ---- */

typedef enum { N_NUM, N_VAR, N_NEG, N_BIN, N_CMP, N_CALL } node_kind;
typedef enum { C_LT, C_LE, C_GT, C_GE, C_EQ, C_NE } cmp_op;

enum { MAX_ARGS = 3, MAX_NODES = 4096, MAX_DEPTH = 200, MAX_NAMES = 256 };

typedef struct node {
    node_kind kind;
    int pos;        /* where the number, name, operator or function name starts */
    char op;        /* N_BIN: + - * / ^ @ */
    cmp_op cmp;     /* N_CMP */
    double num;     /* N_NUM */
    int var;        /* N_VAR: index into the names */
    const func *fn; /* N_CALL */
    int nargs;
    struct node *arg[MAX_ARGS];
    tg_tensor *konst[2]; /* N_NUM: the constant made for F32 [0] and F64 [1] */
} node;

struct tgc_expr {
    node *nodes;
    int nnodes;
    node *root;
    int nnames;
    char *names[MAX_NAMES];
    int name_pos[MAX_NAMES];
};

int tgc_expr_nnames(const tgc_expr *e) { return e ? e->nnames : 0; }
const char *tgc_expr_name(const tgc_expr *e, int i) {
    return e && i >= 0 && i < e->nnames ? e->names[i] : NULL;
}
int tgc_expr_name_pos(const tgc_expr *e, int i) {
    return e && i >= 0 && i < e->nnames ? e->name_pos[i] : -1;
}

void tgc_expr_free(tgc_expr *e) {
    if (!e) return;
    for (int i = 0; i < e->nnodes; i++) {
        tg_tensor_free(e->nodes[i].konst[0]);
        tg_tensor_free(e->nodes[i].konst[1]);
    }
    for (int i = 0; i < e->nnames; i++)
        free(e->names[i]);
    free(e->nodes);
    free(e);
}

/* ---- diagnostics ---- */

static void diag_set(tgc_diag *d, int pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void diag_set(tgc_diag *d, int pos, const char *fmt, ...) {
    if (!d) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
    d->pos = pos;
}

/* ---- the lexer ---- */

typedef enum { T_END, T_NUM, T_NAME, T_OP, T_BAD } tok_kind;

typedef struct {
    tok_kind kind;
    int pos, len;
    char op[3]; /* T_OP: "+", "**", ">=", ... */
    double num;
} token;

typedef struct {
    const char *src;
    int at; /* next byte to read */
    token tok;
    tgc_expr *e;
    int depth;
    tgc_diag *d;
    bool failed;
} parser;

/* Length of a number at s (digits [. digits] [e [+-] digits], or . digits), 0 if none. */
static int number_len(const char *s) {
    int i = 0, digits = 0;
    while (isdigit((unsigned char)s[i]))
        i++, digits++;
    if (s[i] == '.') {
        i++;
        while (isdigit((unsigned char)s[i]))
            i++, digits++;
    }
    if (digits == 0) return 0;
    if (s[i] == 'e' || s[i] == 'E') {
        int j = i + 1;
        if (s[j] == '+' || s[j] == '-') j++;
        if (isdigit((unsigned char)s[j])) {
            while (isdigit((unsigned char)s[j]))
                j++;
            i = j;
        }
    }
    return i;
}

/* strtod on exactly len bytes (the lexeme was validated by number_len; strtod on the
 * source itself could read further, e.g. "0x1p3" as hexadecimal). NAN when out of
 * memory: the value then fails any check rather than being silently wrong. */
static double number_value(const char *s, int len) {
    char small[64], *buf = len < (int)sizeof small ? small : malloc((size_t)len + 1);
    if (!buf) return NAN;
    memcpy(buf, s, (size_t)len);
    buf[len] = '\0';
    double v = strtod(buf, NULL);
    if (buf != small) free(buf);
    return v;
}

static bool is_name_start(char c) { return isalpha((unsigned char)c) || c == '_'; }
static bool is_name_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

static void next(parser *p) {
    const char *s = p->src;
    while (s[p->at] == ' ' || s[p->at] == '\t' || s[p->at] == '\n' || s[p->at] == '\r')
        p->at++;
    token *t = &p->tok;
    memset(t, 0, sizeof *t);
    t->pos = p->at;
    char c = s[p->at];
    if (c == '\0') {
        t->kind = T_END;
        return;
    }
    int n = number_len(s + p->at);
    if (n > 0) {
        t->kind = T_NUM;
        t->len = n;
        t->num = number_value(s + p->at, n);
        p->at += n;
        return;
    }
    if (is_name_start(c)) {
        int i = p->at;
        while (is_name_char(s[i]))
            i++;
        t->kind = T_NAME;
        t->len = i - p->at;
        p->at = i;
        return;
    }
    static const char *const two[] = {"**", "<=", ">=", "==", "!="};
    for (size_t k = 0; k < sizeof two / sizeof *two; k++)
        if (s[p->at] == two[k][0] && s[p->at + 1] == two[k][1]) {
            t->kind = T_OP;
            t->len = 2;
            memcpy(t->op, two[k], 2);
            p->at += 2;
            return;
        }
    if (strchr("+-*/^@(),<>", c)) {
        t->kind = T_OP;
        t->len = 1;
        t->op[0] = c;
        p->at++;
        return;
    }
    t->kind = T_BAD;
    t->len = 1;
}

static bool is_op(const parser *p, const char *op) {
    return p->tok.kind == T_OP && strcmp(p->tok.op, op) == 0;
}

/* What the current token is, for "expected X, found Y" messages. */
static const char *found(const parser *p, char *buf, size_t len) {
    const token *t = &p->tok;
    switch (t->kind) {
    case T_END:
        return "the end of the expression";
    case T_BAD:
        if (isprint((unsigned char)p->src[t->pos]))
            snprintf(buf, len, "'%c', which is not part of the grammar", p->src[t->pos]);
        else
            snprintf(buf, len, "byte 0x%02x, which is not part of the grammar",
                     (unsigned char)p->src[t->pos]);
        return buf;
    default:
        snprintf(buf, len, "'%.*s'", t->len > 40 ? 40 : t->len, p->src + t->pos);
        return buf;
    }
}

static node *fail(parser *p, int pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static node *fail(parser *p, int pos, const char *fmt, ...) {
    if (p->failed) return NULL; /* keep the first message */
    p->failed = true;
    if (p->d) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->d->msg, sizeof p->d->msg, fmt, ap);
        va_end(ap);
        p->d->pos = pos;
    }
    return NULL;
}

static node *expected(parser *p, const char *what) {
    char buf[80];
    return fail(p, p->tok.pos, "expected %s, found %s", what, found(p, buf, sizeof buf));
}

static node *new_node(parser *p, node_kind kind, int pos) {
    if (p->e->nnodes >= MAX_NODES)
        return fail(p, pos, "the expression is too long (more than %d terms)", MAX_NODES);
    node *n = &p->e->nodes[p->e->nnodes++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->pos = pos;
    return n;
}

static int name_index(parser *p, const char *s, int len, int pos) {
    tgc_expr *e = p->e;
    for (int i = 0; i < e->nnames; i++)
        if ((int)strlen(e->names[i]) == len && memcmp(e->names[i], s, (size_t)len) == 0) return i;
    if (len > TGC_NAME_MAX) {
        fail(p, pos, "the name is too long (more than %d characters)", TGC_NAME_MAX);
        return -1;
    }
    if (e->nnames >= MAX_NAMES) {
        fail(p, pos, "too many different names (more than %d)", MAX_NAMES);
        return -1;
    }
    char *copy = malloc((size_t)len + 1);
    if (!copy) {
        fail(p, pos, "out of memory");
        return -1;
    }
    memcpy(copy, s, (size_t)len);
    copy[len] = '\0';
    e->names[e->nnames] = copy;
    e->name_pos[e->nnames] = pos;
    return e->nnames++;
}

/* ---- the parser ---- */

static node *parse_expr(parser *p);
static node *parse_unary(parser *p);

/* Every cycle of the recursion (a parenthesis, a function argument, a unary sign, an
 * exponent) passes through parse_unary, which counts its depth here, so no input can
 * exhaust the stack. */
static bool enter(parser *p) {
    if (++p->depth > MAX_DEPTH) {
        fail(p, p->tok.pos, "the expression is nested too deeply (more than %d levels)", MAX_DEPTH);
        return false;
    }
    return true;
}

/* An integer literal argument (an axis), possibly negative. */
static bool int_literal(const node *n, int *out) {
    bool neg = false;
    if (n->kind == N_NEG) {
        neg = true;
        n = n->arg[0];
    }
    if (n->kind != N_NUM || n->num != floor(n->num) || n->num > 1000) return false;
    *out = (int)(neg ? -n->num : n->num);
    return true;
}

static node *parse_call(parser *p, int pos, int len) {
    const func *fn = func_find(p->src + pos, (size_t)len);
    if (!fn) return fail(p, pos, "unknown function '%.*s'", len > 40 ? 40 : len, p->src + pos);
    node *n = new_node(p, N_CALL, pos);
    if (!n) return NULL;
    n->fn = fn;
    next(p); /* '(' */
    if (is_op(p, ")"))
        return fail(p, p->tok.pos, "%s takes %s: expected an argument, found ')'", fn->name,
                    fn->usage);
    for (;;) {
        int apos = p->tok.pos;
        if (n->nargs == fn->max_args)
            return fail(p, apos, "too many arguments: the form is %s", fn->usage);
        node *a = parse_expr(p);
        if (!a) return NULL;
        int ival;
        if (n->nargs >= fn->int_from && !int_literal(a, &ival))
            return fail(p, apos, "argument %d of %s must be an integer (an axis): the form is %s",
                        n->nargs + 1, fn->name, fn->usage);
        n->arg[n->nargs++] = a;
        if (is_op(p, ",")) {
            next(p);
            continue;
        }
        if (is_op(p, ")")) break;
        return expected(p, n->nargs == fn->max_args ? "')'" : "',' or ')'");
    }
    if (n->nargs < fn->min_args || (fn->kind == F_TRANSPOSE && n->nargs == 2))
        return fail(p, p->tok.pos, "too few arguments: the form is %s", fn->usage);
    next(p); /* ')' */
    return n;
}

static node *parse_primary(parser *p) {
    token t = p->tok;
    if (t.kind == T_NUM) {
        node *n = new_node(p, N_NUM, t.pos);
        if (!n) return NULL;
        n->num = t.num;
        next(p);
        return n;
    }
    if (t.kind == T_NAME) {
        next(p);
        if (is_op(p, "(")) return parse_call(p, t.pos, t.len);
        const func *fn = func_find(p->src + t.pos, (size_t)t.len);
        if (fn) return fail(p, t.pos, "%s is a function: the form is %s", fn->name, fn->usage);
        node *n = new_node(p, N_VAR, t.pos);
        if (!n) return NULL;
        n->var = name_index(p, p->src + t.pos, t.len, t.pos);
        return n->var < 0 ? NULL : n;
    }
    if (is_op(p, "(")) {
        int open = t.pos;
        next(p);
        node *n = parse_expr(p);
        if (!n) return NULL;
        if (!is_op(p, ")")) {
            char buf[80];
            return fail(p, p->tok.pos, "expected ')' to close the '(' at column %d, found %s",
                        open + 1, found(p, buf, sizeof buf));
        }
        next(p);
        return n;
    }
    return expected(p, "a number, a name or '('");
}

static node *parse_power(parser *p) {
    node *base = parse_primary(p);
    if (!base) return NULL;
    if (!is_op(p, "^") && !is_op(p, "**")) return base;
    node *n = new_node(p, N_BIN, p->tok.pos);
    if (!n) return NULL;
    next(p);
    n->op = '^';
    n->nargs = 2;
    n->arg[0] = base;
    n->arg[1] = parse_unary(p);
    return n->arg[1] ? n : NULL;
}

static node *parse_unary(parser *p) {
    if (!enter(p)) return NULL;
    node *r;
    if (is_op(p, "-") || is_op(p, "+")) {
        int pos = p->tok.pos;
        bool minus = is_op(p, "-");
        next(p);
        node *x = parse_unary(p);
        if (!x || !minus) {
            r = x;
        } else {
            r = new_node(p, N_NEG, pos);
            if (r) {
                r->nargs = 1;
                r->arg[0] = x;
            }
        }
    } else {
        r = parse_power(p);
    }
    p->depth--;
    return r;
}

static node *binary(parser *p, node_kind kind, int pos, char op, node *a, node *b) {
    if (!a || !b) return NULL;
    node *n = new_node(p, kind, pos);
    if (!n) return NULL;
    n->op = op;
    n->nargs = 2;
    n->arg[0] = a;
    n->arg[1] = b;
    return n;
}

static node *parse_term(parser *p) {
    node *n = parse_unary(p);
    while (n && (is_op(p, "*") || is_op(p, "/") || is_op(p, "@"))) {
        int pos = p->tok.pos;
        char op = p->tok.op[0];
        next(p);
        n = binary(p, N_BIN, pos, op, n, parse_unary(p));
    }
    return n;
}

static node *parse_additive(parser *p) {
    node *n = parse_term(p);
    while (n && (is_op(p, "+") || is_op(p, "-"))) {
        int pos = p->tok.pos;
        char op = p->tok.op[0];
        next(p);
        n = binary(p, N_BIN, pos, op, n, parse_term(p));
    }
    return n;
}

static node *parse_expr(parser *p) {
    static const struct {
        const char *text;
        cmp_op op;
    } cmps[] = {{"<", C_LT}, {"<=", C_LE}, {">", C_GT}, {">=", C_GE}, {"==", C_EQ}, {"!=", C_NE}};
    node *n = parse_additive(p);
    for (size_t k = 0; n && k < sizeof cmps / sizeof *cmps; k++) {
        if (!is_op(p, cmps[k].text)) continue;
        int pos = p->tok.pos;
        next(p);
        n = binary(p, N_CMP, pos, 0, n, parse_additive(p));
        if (n) n->cmp = cmps[k].op;
        break;
    }
    return n;
}

tgc_expr *tgc_expr_parse(const char *src, tgc_diag *d) {
    if (d) d->pos = -1, d->msg[0] = '\0';
    if (!src) {
        diag_set(d, -1, "no expression");
        return NULL;
    }
    tgc_expr *e = calloc(1, sizeof *e);
    if (e) e->nodes = malloc(MAX_NODES * sizeof *e->nodes);
    if (!e || !e->nodes) {
        free(e);
        diag_set(d, -1, "out of memory");
        return NULL;
    }
    parser p = {.src = src, .e = e, .d = d};
    next(&p);
    if (p.tok.kind == T_END) {
        diag_set(d, 0, "the expression is empty");
        tgc_expr_free(e);
        return NULL;
    }
    e->root = parse_expr(&p);
    if (e->root && p.tok.kind != T_END) {
        if (is_op(&p, ")"))
            fail(&p, p.tok.pos, "unbalanced ')': there is no '(' to close");
        else
            expected(&p, "an operator or the end of the expression");
        e->root = NULL;
    }
    if (!e->root) {
        tgc_expr_free(e);
        return NULL;
    }
    return e;
}

/* ---- evaluation ---- */

/* r, or on NULL the op's message at n's position (the first failure wins: a parent
 * never calls an op with a NULL operand). */
static tg_tensor *checked(tg_tensor *r, const node *n, tgc_diag *d) {
    if (!r && d) {
        const char *m = tg_error();
        diag_set(d, n->pos, "%s", m ? m : "the operation failed (no message)");
    }
    return r;
}

static tg_tensor *constant(node *n, tg_dtype dt, tgc_diag *d) {
    int slot = dt == TG_F64;
    if (!n->konst[slot]) {
        n->konst[slot] = tg_scalar(dt, n->num);
        char label[32];
        snprintf(label, sizeof label, "%g", n->num);
        if (n->konst[slot]) tg_tensor_set_name(n->konst[slot], label); /* for tg_tape_print */
    }
    return checked(n->konst[slot], n, d);
}

static bool compare(cmp_op op, double a, double b) {
    switch (op) {
    case C_LT:
        return a < b;
    case C_LE:
        return a <= b;
    case C_GT:
        return a > b;
    case C_GE:
        return a >= b;
    case C_EQ:
        return a == b;
    case C_NE:
        return a != b;
    }
    return false;
}

/* The 0/1 mask of a comparison, in a's dtype and the broadcast shape. It is computed
 * with recording off, so nothing flows back through it; its values are written into a
 * tape tensor that was just made and that no op has read yet. */
static tg_tensor *mask(const node *n, tg_tensor *a, tg_tensor *b, tgc_diag *d) {
    bool was = tg_set_grad_enabled(false);
    tg_tensor *m = tg_add(a, b); /* the broadcast shape, or the library's message */
    tg_tensor *ab = m ? tg_broadcast_to(a, m->ndim, m->shape) : NULL;
    tg_tensor *bb = ab ? tg_broadcast_to(b, m->ndim, m->shape) : NULL;
    tg_set_grad_enabled(was);
    if (!checked(bb, n, d)) return NULL;
    for (int64_t i = 0; i < m->numel; i++) {
        double v = compare(n->cmp, tg_tensor_get(ab, i), tg_tensor_get(bb, i)) ? 1.0 : 0.0;
        if (m->dtype == TG_F32)
            ((float *)m->data)[i] = (float)v;
        else
            ((double *)m->data)[i] = v;
    }
    return m;
}

static tg_tensor *eval(node *n, tg_tensor *const *vals, tg_dtype dt, tgc_diag *d);

static tg_tensor *eval_binary(node *n, tg_tensor *const *vals, tg_dtype dt, tgc_diag *d) {
    node *na = n->arg[0], *nb = n->arg[1];
    /* A number beside +, -, * or as an exponent becomes the scalar form of the op. */
    bool ca = na->kind == N_NUM, cb = nb->kind == N_NUM;
    if (cb && strchr("+-*^", n->op)) {
        tg_tensor *a = eval(na, vals, dt, d);
        if (!a) return NULL;
        double c = nb->num;
        switch (n->op) {
        case '+':
            return checked(tg_add_scalar(a, c), n, d);
        case '-':
            return checked(tg_add_scalar(a, -c), n, d);
        case '*':
            return checked(tg_mul_scalar(a, c), n, d);
        default:
            return checked(tg_pow_scalar(a, c), n, d);
        }
    }
    if (ca && strchr("+-*", n->op)) {
        tg_tensor *b = eval(nb, vals, dt, d);
        if (!b) return NULL;
        double c = na->num;
        if (n->op == '-') b = checked(tg_neg(b), n, d);
        if (!b) return NULL;
        return checked(n->op == '*' ? tg_mul_scalar(b, c) : tg_add_scalar(b, c), n, d);
    }
    tg_tensor *a = eval(na, vals, dt, d);
    tg_tensor *b = a ? eval(nb, vals, dt, d) : NULL;
    if (!b) return NULL;
    switch (n->op) {
    case '+':
        return checked(tg_add(a, b), n, d);
    case '-':
        return checked(tg_sub(a, b), n, d);
    case '*':
        return checked(tg_mul(a, b), n, d);
    case '/':
        return checked(tg_div(a, b), n, d);
    case '^':
        return checked(tg_pow(a, b), n, d);
    default:
        return checked(matmul_numpy(a, b), n, d);
    }
}

static tg_tensor *eval_call(node *n, tg_tensor *const *vals, tg_dtype dt, tgc_diag *d) {
    const func *fn = n->fn;
    tg_tensor *t[MAX_ARGS] = {NULL};
    int ints[MAX_ARGS] = {0};
    for (int i = 0; i < n->nargs; i++) {
        if (i >= fn->int_from) {
            int_literal(n->arg[i], &ints[i]); /* checked by the parser */
        } else if (!(t[i] = eval(n->arg[i], vals, dt, d))) {
            return NULL;
        }
    }
    bool has_axis = n->nargs > 1;
    switch (fn->kind) {
    case F_UNARY:
        return checked(fn->fn.unary(t[0]), n, d);
    case F_BINARY:
        return checked(fn->fn.binary(t[0], t[1]), n, d);
    case F_REDUCE:
        return checked(fn->fn.reduce(t[0], has_axis ? ints[1] : TG_ALL, false), n, d);
    case F_REDUCE_NEG: {
        tg_tensor *neg = checked(tg_neg(t[0]), n, d);
        tg_tensor *r =
            neg ? checked(fn->fn.reduce(neg, has_axis ? ints[1] : TG_ALL, false), n, d) : NULL;
        return r ? checked(tg_neg(r), n, d) : NULL;
    }
    case F_AXIS:
        return checked(fn->fn.axis(t[0], has_axis ? ints[1] : -1), n, d);
    case F_TRANSPOSE:
        return checked(fn->fn.transpose(t[0], has_axis ? ints[1] : -2, has_axis ? ints[2] : -1), n,
                       d);
    case F_WHERE:
        return checked(fn->fn.where(t[0], t[1], t[2]), n, d);
    }
    return NULL;
}

static tg_tensor *eval(node *n, tg_tensor *const *vals, tg_dtype dt, tgc_diag *d) {
    switch (n->kind) {
    case N_NUM:
        return constant(n, dt, d);
    case N_VAR:
        if (!vals || !vals[n->var]) {
            diag_set(d, n->pos, "no value was given for this name");
            return NULL;
        }
        return vals[n->var];
    case N_NEG: {
        tg_tensor *x = eval(n->arg[0], vals, dt, d);
        return x ? checked(tg_neg(x), n, d) : NULL;
    }
    case N_BIN:
        return eval_binary(n, vals, dt, d);
    case N_CMP: {
        tg_tensor *a = eval(n->arg[0], vals, dt, d);
        tg_tensor *b = a ? eval(n->arg[1], vals, dt, d) : NULL;
        return b ? mask(n, a, b, d) : NULL;
    }
    case N_CALL:
        return eval_call(n, vals, dt, d);
    }
    return NULL;
}

tg_tensor *tgc_expr_eval(tgc_expr *e, tg_tensor *const *vals, tg_dtype dt, tgc_diag *d) {
    if (d) d->pos = -1, d->msg[0] = '\0';
    if (!e || !e->root) {
        diag_set(d, -1, "no expression");
        return NULL;
    }
    if (dt != TG_F32 && dt != TG_F64) {
        diag_set(d, -1, "constants must be f32 or f64, not %s", tg_dtype_name(dt));
        return NULL;
    }
    return eval(e->root, vals, dt, d);
}
