/* test_check_expr.c — the parser, evaluator, value syntax and check-file lines of
 * tapegrad-check, called in-process: the grammar and its precedences, every function
 * of the table against libm, every value syntax, and the message and caret position of
 * each kind of bad input. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "testutil.h"

/* ---- helpers ---- */

/* The values every evaluation below can use. */
typedef struct {
    const char *name, *binding;
} named;
static const named fixtures[] = {
    {"x", "x=0.7"},
    {"y", "y=3"},
    {"v", "v=[0.3, -1.2, 2.0]"},
    {"w", "w=[0.5, -0.25]"},
    {"A", "A=[[1, 2, 3], [-1, 0.5, 2]]"},
    {"B", "B=[[0.5, -1], [2, 1], [0, 3]]"},
};
enum { NFIX = sizeof fixtures / sizeof *fixtures };

/* Parses and evaluates src with the fixtures bound, checks every element of the result
 * against want (n values) and its number of dimensions. */
static void expect_values(const char *src, int ndim, const double *want, int64_t n) {
    tgc_diag d;
    tgc_expr *e = tgc_expr_parse(src, &d);
    ck_assert_msg(e != NULL, "parse of \"%s\" failed at %d: %s", src, d.pos, d.msg);
    tg_tensor *fix[NFIX], *vals[256] = {NULL};
    char name[TGC_NAME_MAX + 1];
    for (int i = 0; i < NFIX; i++)
        ck_assert_int_eq(tgc_binding_parse(fixtures[i].binding, name, &fix[i], &d), 0);
    for (int i = 0; i < tgc_expr_nnames(e); i++)
        for (int k = 0; k < NFIX; k++)
            if (strcmp(tgc_expr_name(e, i), fixtures[k].name) == 0) vals[i] = fix[k];
    tg_tensor *y = tgc_expr_eval(e, vals, TG_F64, &d);
    ck_assert_msg(y != NULL, "\"%s\" failed at %d: %s", src, d.pos, d.msg);
    ck_assert_msg(y->ndim == ndim && y->numel == n, "\"%s\": ndim %d numel %lld, want %d and %lld",
                  src, y->ndim, (long long)y->numel, ndim, (long long)n);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(tg_tensor_get(y, i) - want[i]) <= 1e-12 * (1 + fabs(want[i])),
                      "\"%s\" element %lld: got %.17g, want %.17g", src, (long long)i,
                      tg_tensor_get(y, i), want[i]);
    tg_tape_reset();
    for (int i = 0; i < NFIX; i++)
        tg_tensor_free(fix[i]);
    tgc_expr_free(e);
}

static void expect_value(const char *src, double want) { expect_values(src, 0, &want, 1); }

/* Parsing src fails at byte pos with a message containing frag. */
static void expect_parse_error(const char *src, int pos, const char *frag) {
    tgc_diag d;
    tgc_expr *e = tgc_expr_parse(src, &d);
    ck_assert_msg(e == NULL, "\"%s\" should not parse", src);
    ck_assert_msg(strstr(d.msg, frag) != NULL, "\"%s\": message \"%s\" lacks \"%s\"", src, d.msg,
                  frag);
    ck_assert_msg(d.pos == pos, "\"%s\": error at %d, want %d (%s)", src, d.pos, pos, d.msg);
}

static void expect_binding_error(const char *arg, int pos, const char *frag) {
    tgc_diag d;
    char name[TGC_NAME_MAX + 1];
    tg_tensor *t = (tg_tensor *)1;
    ck_assert_msg(tgc_binding_parse(arg, name, &t, &d) == -1, "\"%s\" should be refused", arg);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(d.msg, frag) != NULL, "\"%s\": message \"%s\" lacks \"%s\"", arg, d.msg,
                  frag);
    ck_assert_msg(d.pos == pos, "\"%s\": error at %d, want %d (%s)", arg, d.pos, pos, d.msg);
}

/* ---- the grammar ---- */

START_TEST(test_precedence) {
    expect_value("2*3+4", 10);
    expect_value("2+3*4", 14);
    expect_value("(2+3)*4", 20);
    expect_value("1-2-3", -4);  /* left-associative */
    expect_value("8/4/2", 1);   /* left-associative */
    expect_value("2^3^2", 512); /* right-associative */
    expect_value("2**3", 8);    /* ** is ^ */
    expect_value("-y^2", -9);   /* ^ binds tighter than unary minus */
    expect_value("2^-1", 0.5);  /* unary minus in an exponent */
    expect_value("- -y", 3);
    expect_value("+y", 3);
    expect_value("1 - -y", 4);
    expect_value("2 / y", 2.0 / 3.0);
    expect_value("y - 1", 2); /* the scalar forms of the ops */
    expect_value("1 - y", -2);
    expect_value("y * 2 + 2 * y", 12);
    expect_value("y ^ 2", 9);
    expect_value("2 ^ y", 8);
    expect_value("y / y", 1);
    expect_value("1e-3 * 1000 + .5 + 2.5E+1", 26.5);
    expect_value("  x\t*\n2 ", 1.4);
    /* A long literal keeps every digit: 1 followed by 200 zeros is 1e200. */
    char big[256] = "1";
    memset(big + 1, '0', 200);
    big[201] = '\0';
    strcat(big, " / 1e200");
    expect_value(big, 1);
}
END_TEST

START_TEST(test_comparisons) {
    expect_value("y > 2", 1);
    expect_value("y > 3", 0);
    expect_value("y >= 3", 1);
    expect_value("y < 3", 0);
    expect_value("y <= 3", 1);
    expect_value("y == 3", 1);
    expect_value("y != 3", 0);
    expect_value("(x < 1) * 5", 5);
    expect_value("y + 1 > 2 * 2", 0); /* arithmetic binds tighter than comparison */
    /* A broadcast mask, and where() on it. */
    expect_values("v > 0", 1, (double[]){1, 0, 1}, 3);
    expect_values("where(v > 0, v, -v)", 1, (double[]){0.3, 1.2, 2.0}, 3);
    expect_values("A > v", 2, (double[]){1, 1, 1, 0, 1, 0}, 6);
}
END_TEST

START_TEST(test_shapes_and_matmul) {
    expect_values("A + v", 2, (double[]){1.3, 0.8, 5, -0.7, -0.7, 4}, 6);
    expect_values("A @ B", 2, (double[]){4.5, 10, 0.5, 7.5}, 4);
    expect_values("A @ v", 1, (double[]){0.3 - 2.4 + 6, -0.3 - 0.6 + 4}, 2); /* column */
    expect_values("w @ A", 1, (double[]){0.75, 0.875, 1.0}, 3);              /* row */
    expect_value("v @ v", 0.09 + 1.44 + 4);                                  /* dot */
    expect_values("transpose(A)", 2, (double[]){1, -1, 2, 0.5, 3, 2}, 6);
    expect_values("transpose(A, 0, 1)", 2, (double[]){1, -1, 2, 0.5, 3, 2}, 6);
    expect_values("transpose(A, 1, 1)", 2, (double[]){1, 2, 3, -1, 0.5, 2}, 6);
    expect_values("sum(A, 0)", 1, (double[]){0, 2.5, 5}, 3);
    expect_values("sum(A, -1)", 1, (double[]){6, 1.5}, 2);
    expect_values("max(A, 1)", 1, (double[]){3, 2}, 2);
    expect_values("min(A, 0)", 1, (double[]){-1, 0.5, 2}, 3);
}
END_TEST

/* One expression per row of the function table, against libm. */
static const struct {
    const char *src;
    double want;
} calls[] = {
    {"neg(x)", -0.7},
    {"exp(x)", 2.0137527074704766},
    {"log(x)", -0.35667494393873245},
    {"sin(x)", 0.644217687237691},
    {"cos(x)", 0.7648421872844885},
    {"tanh(x)", 0.6043677771171636},
    {"sigmoid(x)", 0.6681877721681662},
    {"relu(x) + relu(-x)", 0.7},
    {"sqrt(x)", 0.8366600265340756},
    {"abs(-x)", 0.7},
    {"square(x)", 0.49},
    {"maximum(x, 0.5)", 0.7},
    {"minimum(x, 0.5)", 0.5},
    {"pow(x, 3)", 0.343},
    {"sum(matmul(A, B))", 22.5},
    {"sum(v)", 1.1},
    {"mean(v)", 1.1 / 3},
    {"max(v)", 2.0},
    {"min(v)", -1.2},
    {"logsumexp(v)", 2.2016712449527907},
    {"logsumexp(v, 0)", 2.2016712449527907},
    {"max(softmax(v))", 0.8173635961844473},
    {"max(softmax(A, 0))", 0.8807970779778823},
    {"max(log_softmax(v, -1))", -0.20167124495279065},
    {"sum(transpose(A) @ w)", 1.0 * 0.5 + 2 * 0.5 + 3 * 0.5 - 0.25 * (-1 + 0.5 + 2)},
    {"sum(where(v > 0, v, 0 * v))", 2.3},
};

START_TEST(test_every_function) {
    for (size_t i = 0; i < sizeof calls / sizeof *calls; i++)
        expect_value(calls[i].src, calls[i].want);
    /* Every row of the table is exercised above: a new row needs a line here. */
    for (int f = 0; f < tgc_func_count(); f++) {
        char call[64];
        snprintf(call, sizeof call, "%s(", tgc_func_name(f));
        bool seen = false;
        for (size_t i = 0; i < sizeof calls / sizeof *calls && !seen; i++) {
            const char *at = strstr(calls[i].src, call);
            /* a whole name: not the tail of a longer one (max( inside softmax() */
            while (at && at > calls[i].src && (isalnum((unsigned char)at[-1]) || at[-1] == '_'))
                at = strstr(at + 1, call);
            seen = at != NULL;
        }
        ck_assert_msg(seen, "function %s has no test in calls[]", tgc_func_name(f));
        ck_assert_ptr_nonnull(tgc_func_usage(f));
        ck_assert_ptr_nonnull(tgc_func_help(f));
    }
    ck_assert_ptr_null(tgc_func_name(tgc_func_count()));
    ck_assert_ptr_null(tgc_func_name(-1));
}
END_TEST

START_TEST(test_names) {
    tgc_diag d;
    tgc_expr *e = tgc_expr_parse("b*a + sin(b) + a_1", &d);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(tgc_expr_nnames(e), 3);
    ck_assert_str_eq(tgc_expr_name(e, 0), "b");
    ck_assert_str_eq(tgc_expr_name(e, 1), "a");
    ck_assert_str_eq(tgc_expr_name(e, 2), "a_1");
    ck_assert_int_eq(tgc_expr_name_pos(e, 0), 0);
    ck_assert_int_eq(tgc_expr_name_pos(e, 1), 2);
    ck_assert_int_eq(tgc_expr_name_pos(e, 2), 15);
    ck_assert_ptr_null(tgc_expr_name(e, 3));
    ck_assert_int_eq(tgc_expr_name_pos(e, -1), -1);
    /* A missing value is an error at the name, not a crash. */
    ck_assert_ptr_null(tgc_expr_eval(e, NULL, TG_F64, &d));
    ck_assert_int_eq(d.pos, 0);
    ck_assert_ptr_null(tgc_expr_eval(e, NULL, TG_I64, &d));
    ck_assert_ptr_nonnull(strstr(d.msg, "f32 or f64"));
    tgc_expr_free(e);
    tgc_expr_free(NULL);
    ck_assert_ptr_null(tgc_expr_eval(NULL, NULL, TG_F64, &d));
}
END_TEST

START_TEST(test_f32) {
    tgc_diag d;
    tgc_expr *e = tgc_expr_parse("x * 2 + sin(x) / 3", &d);
    tg_tensor *x = tg_scalar(TG_F32, 0.5);
    tg_tensor *y = tgc_expr_eval(e, &x, TG_F32, &d);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->dtype, TG_F32);
    ck_assert_close(tg_item(y), 1.0 + sin(0.5) / 3, 1e-6);
    tg_tape_reset();
    tg_tensor_free(x);
    tgc_expr_free(e);
}
END_TEST

/* ---- bad expressions: the message and the caret position ---- */

START_TEST(test_parse_errors) {
    expect_parse_error("", 0, "empty");
    expect_parse_error("   ", 0, "empty");
    expect_parse_error("sin(x +", 7, "expected a number, a name or '(', found the end");
    expect_parse_error("sinn(x)", 0, "unknown function 'sinn'");
    expect_parse_error("x $ y", 2, "'$', which is not part of the grammar");
    expect_parse_error("x \x01 y", 2, "byte 0x01");
    expect_parse_error("(x", 2, "expected ')' to close the '(' at column 1");
    expect_parse_error("x)", 1, "unbalanced ')'");
    expect_parse_error("x y", 2, "expected an operator or the end of the expression, found 'y'");
    expect_parse_error("sum(x, 1, 2)", 10, "too many arguments: the form is sum(x[, axis])");
    expect_parse_error("where(x, y)", 10, "too few arguments: the form is where(cond, a, b)");
    expect_parse_error("transpose(A, 0)", 14, "too few arguments");
    expect_parse_error("sum(x, y)", 7, "argument 2 of sum must be an integer");
    expect_parse_error("sum(x, 1.5)", 7, "must be an integer");
    expect_parse_error("softmax(x, 1+1)", 11, "must be an integer");
    expect_parse_error("sin()", 4, "expected an argument");
    expect_parse_error("sin", 0, "sin is a function: the form is sin(x)");
    expect_parse_error("sin(x", 5, "expected ')', found the end");
    expect_parse_error("max(x 1)", 6, "expected ',' or ')'");
    expect_parse_error("x > y > 1", 6, "expected an operator or the end");
    expect_parse_error("x ^", 3, "expected a number");
    expect_parse_error("*x", 0, "expected a number, a name or '('");
    expect_parse_error("x = 1", 2, "'=', which is not part of the grammar");
    expect_parse_error("1.e", 2, "expected an operator"); /* "1." then the name e */
    /* Nesting and length are bounded, so no input exhausts the stack. */
    char deep[700];
    memset(deep, '(', 300);
    strcpy(deep + 300, "x");
    expect_parse_error(deep, 200, "nested too deeply");
    memset(deep, '-', 300);
    strcpy(deep + 300, "x");
    expect_parse_error(deep, 200, "nested too deeply");
    char *longer = malloc(3 * 5000 + 2);
    ck_assert_ptr_nonnull(longer);
    for (int i = 0; i < 5000; i++)
        memcpy(longer + 2 * i, "x+", 2);
    strcpy(longer + 2 * 5000, "x");
    tgc_diag d;
    ck_assert_ptr_null(tgc_expr_parse(longer, &d));
    ck_assert_ptr_nonnull(strstr(d.msg, "too long"));
    free(longer);
    char name[80];
    memset(name, 'n', 70);
    name[70] = '\0';
    expect_parse_error(name, 0, "the name is too long");
    ck_assert_ptr_null(tgc_expr_parse(NULL, &d));
}
END_TEST

/* A shape error from the library comes back with the op's message, at its operator. */
START_TEST(test_library_errors) {
    static const struct {
        const char *src;
        int pos;
        const char *frag;
    } cases[] = {
        {"sum(A @ A)", 6, "tg_matmul: inner dimensions differ: [2,3] @ [2,3]"},
        {"A + B", 2, "tg_add"},
        {"sum(v, 3)", 0, "tg_sum"},
        {"transpose(v)", 0, "tg_transpose"},
        {"x @ A", 2, "tg_matmul"},
        {"softmax(A, 2)", 0, "tg_softmax"},
        {"where(A > B, x, y)", 8, "tg_add"},
    };
    tgc_diag d;
    char name[TGC_NAME_MAX + 1];
    tg_tensor *fix[NFIX];
    for (int i = 0; i < NFIX; i++)
        ck_assert_int_eq(tgc_binding_parse(fixtures[i].binding, name, &fix[i], &d), 0);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        tgc_expr *e = tgc_expr_parse(cases[c].src, &d);
        ck_assert_ptr_nonnull(e);
        tg_tensor *vals[8] = {NULL};
        for (int i = 0; i < tgc_expr_nnames(e); i++)
            for (int k = 0; k < NFIX; k++)
                if (strcmp(tgc_expr_name(e, i), fixtures[k].name) == 0) vals[i] = fix[k];
        ck_assert_msg(tgc_expr_eval(e, vals, TG_F64, &d) == NULL, "%s should fail", cases[c].src);
        ck_assert_msg(strstr(d.msg, cases[c].frag) != NULL && d.pos == cases[c].pos,
                      "%s: \"%s\" at %d, want \"%s\" at %d", cases[c].src, d.msg, d.pos,
                      cases[c].frag, cases[c].pos);
        tg_tape_reset();
        tgc_expr_free(e);
    }
    for (int i = 0; i < NFIX; i++)
        tg_tensor_free(fix[i]);
}
END_TEST

/* ---- values ---- */

static tg_tensor *binding(const char *arg, const char *want_name) {
    tgc_diag d;
    char name[TGC_NAME_MAX + 1];
    tg_tensor *t = NULL;
    ck_assert_msg(tgc_binding_parse(arg, name, &t, &d) == 0, "\"%s\": %s", arg, d.msg);
    ck_assert_str_eq(name, want_name);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, TG_F64);
    return t;
}

START_TEST(test_values) {
    tg_tensor *t = binding("x=0.3", "x");
    ck_assert_int_eq(t->ndim, 0);
    ck_assert_double_eq(tg_item(t), 0.3);
    tg_tensor_free(t);
    t = binding("neg_1= -2.5e-1", "neg_1");
    ck_assert_double_eq(tg_item(t), -0.25);
    tg_tensor_free(t);
    t = binding("v=[1,2,3]", "v");
    tgt_assert_shape(t, TG_SHAPE(3));
    tgt_assert_tensor(t, (double[]){1, 2, 3}, 0);
    tg_tensor_free(t);
    t = binding("A=[[1, 2], [3,4] , [ 5 ,6 ]]", "A");
    tgt_assert_shape(t, TG_SHAPE(3, 2));
    tgt_assert_tensor(t, (double[]){1, 2, 3, 4, 5, 6}, 0);
    tg_tensor_free(t);
    t = binding("T=[[[1],[2]],[[3],[4]]]", "T");
    tgt_assert_shape(t, TG_SHAPE(2, 2, 1));
    tgt_assert_tensor(t, (double[]){1, 2, 3, 4}, 0);
    tg_tensor_free(t);
    t = binding("s=[7]", "s");
    tgt_assert_shape(t, TG_SHAPE(1));
    tg_tensor_free(t);
}
END_TEST

START_TEST(test_random_values) {
    tg_seed(7);
    tg_tensor *a = binding("W:3x4", "W");
    tgt_assert_shape(a, TG_SHAPE(3, 4));
    tg_seed(7);
    tg_tensor *b = binding("W:3X4", "W");
    double sum2 = 0.0;
    for (int64_t i = 0; i < 12; i++) {
        ck_assert_double_eq(tg_tensor_get(a, i), tg_tensor_get(b, i)); /* same seed */
        sum2 += tg_tensor_get(a, i) * tg_tensor_get(a, i);
    }
    ck_assert_msg(sum2 > 0.5 && sum2 < 60, "sum of squares %g: not N(0, 1)-like", sum2);
    tg_seed(8);
    tg_tensor *c = binding("W:3x4", "W");
    ck_assert(tg_tensor_get(a, 0) != tg_tensor_get(c, 0));
    tg_tensor *v = binding("v:5", "v");
    tgt_assert_shape(v, TG_SHAPE(5));
    tg_tensor *h = binding("h:1x2x1x2x1x2x1x2", "h");
    ck_assert_int_eq(h->ndim, 8);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(c);
    tg_tensor_free(v);
    tg_tensor_free(h);
}
END_TEST

START_TEST(test_value_errors) {
    expect_binding_error("=1", 0, "starting with a name");
    expect_binding_error("1x=1", 0, "starting with a name");
    expect_binding_error("x", 1, "expected '=' (a value) or ':' (a shape)");
    expect_binding_error("x+1", 1, "expected '='");
    expect_binding_error("x=", 2, "expected a number or '['");
    expect_binding_error("x=abc", 2, "expected a number or '['");
    expect_binding_error("x=-", 2, "expected a number");
    expect_binding_error("x=0x10", 3, "decimal");
    expect_binding_error("x=-inf", 3, "decimal");
    expect_binding_error("x=nan", 2, "expected a number");
    expect_binding_error("x=1e999", 2, "out of range");
    expect_binding_error("x=1 2", 4, "unexpected text after the value");
    expect_binding_error("x=[1,2", 6, "expected ',' or ']'");
    expect_binding_error("x=[1;2]", 4, "expected ',' or ']'");
    expect_binding_error("x=[]", 3, "empty list");
    expect_binding_error("x=[[1,2],[3]]", 9, "not regular: this one has 1 elements");
    expect_binding_error("x=[[1,2],3]", 9, "expected '[' here");
    expect_binding_error("x=[1,[2]]", 5, "expected a number here");
    expect_binding_error("x=[[[[[[[[[1]]]]]]]]]", 10, "at most 8 dimensions");
    expect_binding_error("W:", 2, "expected a dimension");
    expect_binding_error("W:0x3", 2, "1 to 1048576 elements");
    expect_binding_error("W:3x", 4, "expected a dimension");
    expect_binding_error("W:3y4", 3, "expected 'x'");
    expect_binding_error("W:2000x2000", 7, "1 to 1048576 elements");
    expect_binding_error("W:99999999999999999999", 2, "1 to 1048576 elements");
    expect_binding_error("W:1x1x1x1x1x1x1x1x1", 18, "too many dimensions");
    char longname[80];
    memset(longname, 'a', 70);
    strcpy(longname + 70, "=1");
    expect_binding_error(longname, 0, "longer than 63");
}
END_TEST

/* ---- lines of a check file ---- */

START_TEST(test_line_split) {
    char line[] = "sin(x) + v @ v ; x=1  v=[1, 2,\t3]\tW:2x2 ";
    char *expr, *b[8];
    ck_assert_int_eq(tgc_line_split(line, &expr, b, 8), 3);
    ck_assert_str_eq(expr, "sin(x) + v @ v ");
    ck_assert_str_eq(b[0], "x=1");
    ck_assert_str_eq(b[1], "v=[1, 2,\t3]");
    ck_assert_str_eq(b[2], "W:2x2");
    char none[] = "x * 2";
    ck_assert_int_eq(tgc_line_split(none, &expr, b, 8), 0);
    ck_assert_str_eq(expr, "x * 2");
    char empty[] = "x ;   ";
    ck_assert_int_eq(tgc_line_split(empty, &expr, b, 8), 0);
    char open[] = "x ; v=[1, 2";
    ck_assert_int_eq(tgc_line_split(open, &expr, b, 8), 1);
    ck_assert_str_eq(b[0], "v=[1, 2"); /* the value parser reports the missing ']' */
    char many[] = "x ; a=1 b=2 c=3";
    ck_assert_int_eq(tgc_line_split(many, &expr, b, 2), -1);
}
END_TEST

static Suite *check_expr_suite(void) {
    Suite *s = suite_create("check_expr");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_precedence);
    tcase_add_test(tc, test_comparisons);
    tcase_add_test(tc, test_shapes_and_matmul);
    tcase_add_test(tc, test_every_function);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_f32);
    tcase_add_test(tc, test_parse_errors);
    tcase_add_test(tc, test_library_errors);
    tcase_add_test(tc, test_values);
    tcase_add_test(tc, test_random_values);
    tcase_add_test(tc, test_value_errors);
    tcase_add_test(tc, test_line_split);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tgt_run(check_expr_suite()); }
