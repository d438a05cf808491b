/* test_check_cli.c — the tapegrad-check program, run as a user would: its output (the
 * JSON read back with cJSON), its exit status, check files, the Hessian, the tape and
 * graph, float32, the options, and every kind of bad input. The program's path is
 * TGC_BINARY (set by CMake). */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "expr.h"
#include "testutil.h"

/* ---- running the program ---- */

static char tmpdir[64];

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

typedef struct {
    int status;      /* exit status */
    char *out, *err; /* what it wrote */
} run_result;

/* Runs tapegrad-check with the arguments given (NULL-terminated). */
static run_result run(const char *first, ...) {
    const char *argv[64] = {TGC_BINARY};
    int argc = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        ck_assert_int_lt(argc, 63);
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;
    char out_path[128], err_path[128];
    snprintf(out_path, sizeof out_path, "%s/stdout", tmpdir);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmpdir);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(127);
        execv(TGC_BINARY, (char *const *)argv);
        _exit(127);
    }
    int ws;
    ck_assert_int_eq(waitpid(pid, &ws, 0), pid);
    ck_assert_msg(WIFEXITED(ws), "tapegrad-check %s did not exit normally", first);
    return (run_result){WEXITSTATUS(ws), slurp(out_path), slurp(err_path)};
}

static void run_free(run_result *r) {
    free(r->out);
    free(r->err);
}

static void expect_status(const run_result *r, int status, const char *what) {
    ck_assert_msg(r->status == status, "%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", what,
                  r->status, status, r->out, r->err);
}

static void expect_has(const char *text, const char *frag, const char *what) {
    ck_assert_msg(strstr(text, frag) != NULL, "%s: \"%s\" not found in:\n%s", what, frag, text);
}

static char *write_file(const char *name, const char *text) {
    static char path[160];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* ---- JSON ---- */

static cJSON *json_of(const run_result *r) {
    cJSON *j = cJSON_Parse(r->out);
    ck_assert_msg(j != NULL, "stdout is not one JSON object:\n%s", r->out);
    return j;
}

static double num_at(const cJSON *j, const char *path) {
    /* path: keys and array indices separated by '.', e.g. "gradient.W.1.2" */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *at = j;
    for (char *tok = strtok(buf, "."); tok; tok = strtok(NULL, ".")) {
        at = cJSON_IsArray(at) ? cJSON_GetArrayItem(at, atoi(tok))
                               : cJSON_GetObjectItemCaseSensitive(at, tok);
        ck_assert_msg(at != NULL, "no %s in the JSON output", path);
    }
    ck_assert_msg(cJSON_IsNumber(at), "%s is not a number", path);
    return at->valuedouble;
}

static bool bool_at(const cJSON *j, const char *key) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, key);
    ck_assert_msg(cJSON_IsBool(b), "%s is not a boolean", key);
    return cJSON_IsTrue(b);
}

/* ---- the examples of the manual ---- */

START_TEST(test_sin_example) {
    run_result r = run("sin(x1) + x1*x2", "x1=2", "x2=5", "--json", NULL);
    expect_status(&r, 0, "sin(x1) + x1*x2");
    cJSON *j = json_of(&r);
    ck_assert_close(num_at(j, "value"), sin(2.0) + 10, 1e-14);
    ck_assert_close(num_at(j, "gradient.x1"), 5 + cos(2.0), 1e-14);
    ck_assert_close(num_at(j, "gradient.x2"), 2, 1e-14);
    ck_assert_close(num_at(j, "numeric.x1"), 5 + cos(2.0), 1e-8);
    ck_assert_close(num_at(j, "numeric.x2"), 2, 1e-8);
    ck_assert(num_at(j, "max_abs_err") < 1e-8);
    ck_assert(bool_at(j, "ok"));
    ck_assert_close(num_at(j, "gradcheck.eps"), 1e-6, 0);
    ck_assert_close(num_at(j, "gradcheck.atol"), 1e-5, 0);
    ck_assert_close(num_at(j, "gradcheck.rtol"), 1e-3, 0);
    cJSON_Delete(j);
    run_free(&r);

    /* The text form shows the same numbers and the verdict. */
    r = run("sin(x1) + x1*x2", "x1=2", "x2=5", NULL);
    expect_status(&r, 0, "text");
    char want[64];
    snprintf(want, sizeof want, "d/dx1       %.12g", 5 + cos(2.0));
    expect_has(r.out, want, "text");
    expect_has(r.out, "numeric 4.58385316", "text");
    expect_has(r.out, "d/dx2       2 ", "text");
    expect_has(r.out, "largest error", "text");
    expect_has(r.out, "gradcheck: passed", "text");
    run_free(&r);
}
END_TEST

/* d/dW_ij = (1 - tanh(z_i)^2) v_j and d/dv_j = sum_i (1 - tanh(z_i)^2) W_ij, z = W v. */
START_TEST(test_tanh_matvec) {
    double W[2][3] = {{0.1, -0.2, 0.3}, {0.5, 0.4, -0.6}}, v[3] = {1, -2, 0.5};
    run_result r = run("sum(tanh(W @ v))", "W=[[0.1,-0.2,0.3],[0.5,0.4,-0.6]]", "v=[1,-2,0.5]",
                       "--json", NULL);
    expect_status(&r, 0, "sum(tanh(W @ v))");
    cJSON *j = json_of(&r);
    double value = 0, dv[3] = {0};
    for (int i = 0; i < 2; i++) {
        double z = 0;
        for (int k = 0; k < 3; k++)
            z += W[i][k] * v[k];
        value += tanh(z);
        double s = 1 - tanh(z) * tanh(z);
        for (int k = 0; k < 3; k++) {
            char path[32];
            snprintf(path, sizeof path, "gradient.W.%d.%d", i, k);
            ck_assert_close(num_at(j, path), s * v[k], 1e-14);
            snprintf(path, sizeof path, "numeric.W.%d.%d", i, k);
            ck_assert_close(num_at(j, path), s * v[k], 1e-8);
            dv[k] += s * W[i][k];
        }
    }
    ck_assert_close(num_at(j, "value"), value, 1e-14);
    for (int k = 0; k < 3; k++) {
        char path[32];
        snprintf(path, sizeof path, "gradient.v.%d", k);
        ck_assert_close(num_at(j, path), dv[k], 1e-14);
    }
    ck_assert(bool_at(j, "ok"));
    cJSON_Delete(j);
    run_free(&r);

    /* With random W and v (W:3x4): passes, and the gradient has W's shape. */
    r = run("sum(tanh(W @ v))", "W:3x4", "v:4", "--seed", "3", "--json", NULL);
    expect_status(&r, 0, "random W");
    j = json_of(&r);
    const cJSON *g = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "gradient"), "W");
    ck_assert_int_eq(cJSON_GetArraySize(g), 3);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetArrayItem(g, 0)), 4);
    ck_assert(bool_at(j, "ok"));
    double first = num_at(j, "value");
    cJSON_Delete(j);
    run_free(&r);
    /* --seed makes the random values reproducible, and another seed changes them. */
    r = run("sum(tanh(W @ v))", "W:3x4", "v:4", "--seed=3", "--json", NULL);
    j = json_of(&r);
    ck_assert_double_eq(num_at(j, "value"), first);
    cJSON_Delete(j);
    run_free(&r);
    r = run("sum(tanh(W @ v))", "W:3x4", "v:4", "--seed", "4", "--json", NULL);
    j = json_of(&r);
    ck_assert(num_at(j, "value") != first);
    cJSON_Delete(j);
    run_free(&r);
}
END_TEST

START_TEST(test_logsumexp) {
    run_result r = run("logsumexp(v, 0)", "v=[1, 2, 3]", "--json", NULL);
    expect_status(&r, 0, "logsumexp");
    cJSON *j = json_of(&r);
    double z = exp(1) + exp(2) + exp(3);
    ck_assert_close(num_at(j, "value"), log(z), 1e-14);
    for (int k = 0; k < 3; k++) {
        char path[32];
        snprintf(path, sizeof path, "gradient.v.%d", k);
        ck_assert_close(num_at(j, path), exp(k + 1) / z, 1e-14); /* softmax */
        snprintf(path, sizeof path, "numeric.v.%d", k);
        ck_assert_close(num_at(j, path), exp(k + 1) / z, 1e-8);
    }
    cJSON_Delete(j);
    run_free(&r);
}
END_TEST

/* relu at its kink: the tape says 0, the central difference 1/2: the check fails. */
START_TEST(test_relu_kink_fails) {
    run_result r = run("relu(x)", "x=0", "--json", NULL);
    expect_status(&r, 1, "relu(x) at 0");
    cJSON *j = json_of(&r);
    ck_assert_double_eq(num_at(j, "gradient.x"), 0);
    ck_assert_close(num_at(j, "numeric.x"), 0.5, 1e-12);
    ck_assert_close(num_at(j, "max_abs_err"), 0.5, 1e-12);
    ck_assert(!bool_at(j, "ok"));
    cJSON_Delete(j);
    run_free(&r);
    r = run("relu(x)", "x=0", NULL);
    expect_status(&r, 1, "relu text");
    expect_has(r.out, "gradcheck: FAILED: tg_gradcheck: gradient mismatch", "relu text");
    expect_has(r.out, "analytic 0, numeric 0.5", "relu text");
    run_free(&r);
    /* Looser tolerances are the user's call. */
    r = run("relu(x)", "x=0", "--atol", "0.6", NULL);
    expect_status(&r, 0, "--atol 0.6");
    run_free(&r);
    /* Away from the kink it passes. */
    r = run("relu(x)", "x=0.25", NULL);
    expect_status(&r, 0, "relu(x) at 0.25");
    run_free(&r);
}
END_TEST

/* ---- every function, checked through the program ---- */

static const struct {
    const char *name, *expr;
} op_checks[] = {
    {"neg", "neg(x)"},
    {"exp", "exp(x)"},
    {"log", "log(x)"},
    {"sin", "sin(x)"},
    {"cos", "cos(x)"},
    {"tanh", "tanh(x)"},
    {"sigmoid", "sigmoid(x)"},
    {"relu", "relu(v)"},
    {"sqrt", "sqrt(x)"},
    {"abs", "abs(v)"},
    {"square", "square(v)"},
    {"maximum", "maximum(v, x)"},
    {"minimum", "minimum(v, x)"},
    {"pow", "pow(x, v)"},
    {"matmul", "matmul(A, B)"},
    {"sum", "sum(A, 1)"},
    {"mean", "mean(A)"},
    {"max", "max(A, 0)"},
    {"logsumexp", "logsumexp(A, -1)"},
    {"min", "min(v)"},
    {"softmax", "softmax(A, 0)"},
    {"log_softmax", "log_softmax(A)"},
    {"transpose", "transpose(A) @ A"},
    {"where", "where(v > x, v * x, v + x)"},
};

START_TEST(test_every_function_checks) {
    run_result list = run("--list", NULL);
    expect_status(&list, 0, "--list");
    for (int f = 0; f < tgc_func_count(); f++) {
        const char *name = tgc_func_name(f);
        expect_has(list.out, tgc_func_usage(f), "--list");
        const char *expr = NULL;
        for (size_t i = 0; i < sizeof op_checks / sizeof *op_checks; i++)
            if (strcmp(op_checks[i].name, name) == 0) expr = op_checks[i].expr;
        ck_assert_msg(expr != NULL, "function %s has no entry in op_checks[]", name);
        run_result r = run(expr, "x=0.7", "v=[0.3, -1.2, 2.1]", "A=[[1, 2, 3], [-1, 0.5, 2]]",
                           "B=[[0.5, -1], [2, 1], [0, 3]]", "--json", NULL);
        expect_status(&r, 0, expr);
        cJSON *j = json_of(&r);
        ck_assert_msg(bool_at(j, "ok"), "%s: %s", expr, r.out);
        cJSON_Delete(j);
        run_free(&r);
    }
    run_free(&list);
}
END_TEST

/* ---- non-scalar expressions, fast mode, float32 ---- */

START_TEST(test_jacobian_and_fast) {
    /* The printed gradient is that of the sum: d sum(v*v) / dv = 2v. */
    run_result r = run("v * v", "v=[1, -2, 3]", "--json", NULL);
    expect_status(&r, 0, "v * v");
    cJSON *j = json_of(&r);
    ck_assert_double_eq(num_at(j, "shape.0"), 3);
    ck_assert_double_eq(num_at(j, "value.1"), 4);
    ck_assert_double_eq(num_at(j, "gradient.v.1"), -4);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "gradcheck"), "mode")->valuestring,
                     "slow");
    cJSON_Delete(j);
    run_free(&r);
    r = run("tanh(W @ v)", "W:4x5", "v:5", "--fast", "--json", NULL);
    expect_status(&r, 0, "--fast");
    j = json_of(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "gradcheck"), "mode")->valuestring,
                     "fast");
    ck_assert(bool_at(j, "ok"));
    cJSON_Delete(j);
    run_free(&r);
    r = run("tanh(W @ v)", "W:4x5", "v:5", "--fast", NULL);
    expect_has(r.out, "gradient of the sum of the 4 elements", "--fast text");
    expect_has(r.out, "fast mode", "--fast text");
    run_free(&r);
}
END_TEST

START_TEST(test_f32) {
    run_result r = run("sin(x1) + x1*x2", "x1=2", "x2=5", "--f32", "--json", NULL);
    expect_status(&r, 0, "--f32");
    cJSON *j = json_of(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "dtype")->valuestring, "f32");
    ck_assert_close(num_at(j, "gradient.x1"), 5 + cos(2.0), 1e-5);
    ck_assert_close(num_at(j, "value"), sin(2.0) + 10, 1e-5);
    ck_assert(num_at(j, "value") != sin(2.0) + 10); /* rounded to float32 */
    ck_assert_close(num_at(j, "gradcheck.eps"), 1e-3, 0);
    cJSON_Delete(j);
    run_free(&r);
}
END_TEST

/* ---- the Hessian ---- */

START_TEST(test_hessian) {
    run_result r = run("sin(x1) + x1*x2", "x1=2", "x2=5", "--hessian", "--json", NULL);
    expect_status(&r, 0, "--hessian");
    cJSON *j = json_of(&r);
    ck_assert_close(num_at(j, "hessian.analytic.0.0"), -sin(2.0), 1e-14);
    ck_assert_close(num_at(j, "hessian.analytic.0.1"), 1, 1e-14);
    ck_assert_close(num_at(j, "hessian.analytic.1.0"), 1, 1e-14);
    ck_assert_close(num_at(j, "hessian.analytic.1.1"), 0, 1e-14);
    ck_assert_close(num_at(j, "hessian.numeric.0.0"), -sin(2.0), 1e-7);
    ck_assert_close(num_at(j, "hessian.numeric.0.1"), 1, 1e-7);
    ck_assert(bool_at(cJSON_GetObjectItem(j, "hessian"), "ok"));
    cJSON_Delete(j);
    run_free(&r);

    /* A vector input: the Hessian of sum(v^3) is diag(6 v). */
    r = run("sum(v^3)", "v=[1, -2]", "--hessian", "--json", NULL);
    expect_status(&r, 0, "sum(v^3)");
    j = json_of(&r);
    ck_assert_close(num_at(j, "hessian.analytic.0.0"), 6, 1e-13);
    ck_assert_close(num_at(j, "hessian.analytic.1.1"), -12, 1e-13);
    ck_assert_close(num_at(j, "hessian.analytic.0.1"), 0, 0);
    cJSON_Delete(j);
    run_free(&r);

    /* relu(x)^2 at 0: the first derivative is right (0), the second is not (the tape
     * gives 0, the difference quotient of the gradient 1): only gradgradcheck sees it. */
    r = run("relu(x)^2", "x=0", "--hessian", "--json", NULL);
    expect_status(&r, 1, "relu(x)^2");
    j = json_of(&r);
    ck_assert(bool_at(cJSON_GetObjectItem(j, "gradcheck"), "ok"));
    ck_assert(!bool_at(cJSON_GetObjectItem(j, "hessian"), "ok"));
    ck_assert(!bool_at(j, "ok"));
    ck_assert_close(num_at(j, "hessian.analytic.0.0"), 0, 0);
    ck_assert_close(num_at(j, "hessian.numeric.0.0"), 1, 1e-6);
    cJSON_Delete(j);
    run_free(&r);

    r = run("sin(x1) + x1*x2", "x1=2", "x2=5", "--hessian", NULL);
    expect_has(r.out, "hessian (rows and columns: x1, x2)", "--hessian text");
    expect_has(r.out, "gradgradcheck: passed", "--hessian text");
    run_free(&r);

    /* A non-scalar expression has no Hessian: a usage error. */
    r = run("v * v", "v=[1, 2]", "--hessian", NULL);
    expect_status(&r, 2, "--hessian of a vector");
    expect_has(r.err, "--hessian needs an expression with one element; this one has 2", "err");
    run_free(&r);
}
END_TEST

/* ---- the tape and the graph ---- */

START_TEST(test_tape_and_dot) {
    char dot[160];
    snprintf(dot, sizeof dot, "%s/graph.dot", tmpdir);
    run_result r = run("sin(x1) + x1*x2", "x1=2", "x2=5", "--tape", "--dot", dot, NULL);
    expect_status(&r, 0, "--tape --dot");
    expect_has(r.out, "tape (forward pass):", "--tape");
    expect_has(r.out, "= sin(x1)", "--tape");
    expect_has(r.out, "= mul(x1, x2)", "--tape");
    expect_has(r.out, "= add(t0, t1)", "--tape");
    char *g = slurp(dot);
    ck_assert_msg(strncmp(g, "digraph", 7) == 0, "not a DOT graph:\n%s", g);
    expect_has(g, "sin", "--dot");
    free(g);
    run_free(&r);
    r = run("x * 2", "x=1", "--tape", "--json", NULL);
    cJSON *j = json_of(&r);
    const cJSON *tape = cJSON_GetObjectItem(j, "tape");
    ck_assert(cJSON_IsString(tape));
    expect_has(tape->valuestring, "mul_scalar(x)", "--tape --json");
    cJSON_Delete(j);
    run_free(&r);
    r = run("x * 2", "x=1", "--dot", "/nonexistent-dir/g.dot", NULL);
    expect_status(&r, 2, "--dot to a bad path");
    expect_has(r.err, "cannot write the graph to /nonexistent-dir/g.dot", "--dot");
    run_free(&r);
}
END_TEST

/* ---- check files ---- */

START_TEST(test_file) {
    char *path = write_file("pass.txt", "# formulas\n"
                                        "sin(x1) + x1*x2 ; x1=2 x2=5\n"
                                        "\n"
                                        "   # indented comment\n"
                                        "logsumexp(v, 0) ; v=[1, 2, 3]\n"
                                        "sum(tanh(W @ v)) ; W:3x4 v:4\n");
    run_result r = run("--file", path, NULL);
    expect_status(&r, 0, "all pass");
    size_t n = strlen(r.out);
    ck_assert_msg(n > 20 && strcmp(r.out + n - 19, "3 passed, 0 failed\n") == 0, "last line:\n%s",
                  r.out);
    run_free(&r);

    path = write_file("fail.txt", "x^2 ; x=3\nrelu(x) ; x=0\n");
    r = run("--file", path, NULL);
    expect_status(&r, 1, "one fails");
    expect_has(r.out, "1 passed, 1 failed\n", "fail.txt");
    run_free(&r);

    /* A bad line counts as failed, names its line, and makes the status 2. */
    path = write_file("bad.txt", "x^2 ; x=3\nsin(x + ; x=1\nrelu(x) ; x=0\nx*y ; x=1\n"
                                 "v @ v ; v=[1,2\n");
    r = run("--file", path, NULL);
    expect_status(&r, 2, "bad lines");
    expect_has(r.out, "1 passed, 4 failed\n", "bad.txt");
    expect_has(r.err, "bad.txt:2: error: expected a number, a name or '('", "bad.txt");
    expect_has(r.err, "bad.txt:4: error: no value for y", "bad.txt");
    expect_has(r.err, "bad.txt:5: error: expected ',' or ']'", "bad.txt");
    run_free(&r);

    /* --json: one object per check, then the tally as an object. */
    path = write_file("json.txt", "x^2 ; x=3\nsin(x + ; x=1\nrelu(x) ; x=0\n");
    r = run("--file", path, "--json", NULL);
    expect_status(&r, 2, "--file --json");
    int lines = 0;
    bool oks[4] = {false};
    for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        cJSON *j = cJSON_Parse(line);
        ck_assert_msg(j != NULL, "line %d is not JSON: %s", lines + 1, line);
        if (lines < 3) oks[lines] = bool_at(j, "ok");
        if (lines == 1) expect_has(cJSON_GetObjectItem(j, "error")->valuestring, "expected", "");
        if (lines == 3) {
            ck_assert_double_eq(num_at(j, "passed"), 1);
            ck_assert_double_eq(num_at(j, "failed"), 2);
        }
        cJSON_Delete(j);
    }
    ck_assert_int_eq(lines, 4);
    ck_assert(oks[0] && !oks[1] && !oks[2]);
    run_free(&r);

    r = run("--file", "/nonexistent-file", NULL);
    expect_status(&r, 2, "missing file");
    expect_has(r.err, "cannot open /nonexistent-file", "missing file");
    run_free(&r);
    r = run("--file", path, "x^2", NULL);
    expect_status(&r, 2, "--file and an expression");
    run_free(&r);
}
END_TEST

/* ---- bad input: the exit status and the messages ---- */

START_TEST(test_parse_error_caret) {
    run_result r = run("sin(x) + cos(x", "x=1", NULL);
    expect_status(&r, 2, "parse error");
    ck_assert_str_eq(r.out, "");
    ck_assert_str_eq(r.err, "tapegrad-check: error: expected ')', found the end of the expression\n"
                            "  sin(x) + cos(x\n"
                            "                ^\n");
    run_free(&r);
    r = run("x @@ y", "x=1", "y=2", NULL);
    expect_status(&r, 2, "@@");
    ck_assert_str_eq(r.err, "tapegrad-check: error: expected a number, a name or '(', found '@'\n"
                            "  x @@ y\n"
                            "     ^\n");
    run_free(&r);
    /* A bad value is shown with the caret under the value. */
    r = run("x * 2", "x=[1, 2", NULL);
    expect_status(&r, 2, "bad value");
    ck_assert_str_eq(r.err, "tapegrad-check: error: expected ',' or ']' to go on with the list "
                            "opened at column 3\n"
                            "  x=[1, 2\n"
                            "         ^\n");
    run_free(&r);
    /* A shape error from the library: the op's message, the caret under the operator. */
    r = run("sum(W @ v)", "W:3x4", "v:3", NULL);
    expect_status(&r, 2, "shape error");
    ck_assert_str_eq(r.err, "tapegrad-check: error: tg_matmul: inner dimensions differ: [3,4] @ "
                            "[3,1]\n"
                            "  sum(W @ v)\n"
                            "        ^\n");
    run_free(&r);
}
END_TEST

START_TEST(test_exit_codes) {
    static const struct {
        const char *args[6];
        int status;
        const char *err;
    } cases[] = {
        {{NULL}, 2, "no expression"},
        {{"--bogus", "x", "x=1", NULL}, 2, "unknown option --bogus"},
        {{"x", "x=1", "--eps", NULL}, 2, "--eps needs a value"},
        {{"x", "x=1", "--eps", "-1", NULL}, 2, "bad value for --eps"},
        {{"x", "x=1", "--rtol", "abc", NULL}, 2, "bad value for --rtol"},
        {{"x", "x=1", "--seed", "-3", NULL}, 2, "bad value for --seed"},
        {{"x", "x=1", "--fast=1", NULL}, 2, "--fast takes no value"},
        {{"x*y", "x=1", NULL}, 2, "no value for y"},
        {{"x", "x=1", "x=2", NULL}, 2, "x is given twice"},
        {{"2 + 3", NULL}, 2, "no names to differentiate"},
        {{"x", "x=[[1],[2,3]]", NULL}, 2, "not regular"},
        {{"log(x)", "x:2000x2000", NULL}, 2, "1 to 1048576 elements"},
        {{"sum(v, 2)", "v=[1,2]", NULL}, 2, "tg_sum"},
        {{"x", "1x=2", NULL}, 2, "starting with a name"},
        {{"-x^2", "x=3", NULL}, 0, ""}, /* a leading '-' is an expression, not an option */
        {{"--", "--bogus", "x=1", NULL}, 2, "no value for bogus"},
        {{"x", "x=1", "y=2", NULL}, 0, "warning: y is not used in the expression"},
        {{"log(x)", "x=-1", NULL}, 1, ""}, /* NaN everywhere: the check fails */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *const *a = cases[c].args;
        run_result r = run(a[0], a[0] ? a[1] : NULL, a[0] && a[1] ? a[2] : NULL,
                           a[0] && a[1] && a[2] ? a[3] : NULL,
                           a[0] && a[1] && a[2] && a[3] ? a[4] : NULL, NULL);
        char what[128];
        snprintf(what, sizeof what, "case %zu (%s)", c, a[0] ? a[0] : "no arguments");
        expect_status(&r, cases[c].status, what);
        expect_has(r.err, cases[c].err, what);
        run_free(&r);
    }
    run_result r = run("--help", NULL);
    expect_status(&r, 0, "--help");
    expect_has(r.out, "usage: tapegrad-check", "--help");
    run_free(&r);
    r = run("-h", NULL);
    expect_status(&r, 0, "-h");
    run_free(&r);
    /* Options may come anywhere, with '=' or as the next argument. */
    r = run("--eps=1e-4", "x^3", "--rtol", "1e-2", "x=2", "--json", NULL);
    expect_status(&r, 0, "options");
    cJSON *j = json_of(&r);
    ck_assert_close(num_at(j, "gradcheck.eps"), 1e-4, 0);
    ck_assert_close(num_at(j, "gradcheck.rtol"), 1e-2, 0);
    cJSON_Delete(j);
    run_free(&r);
    /* An error under --json is still one JSON object. */
    r = run("sin(", "--json", NULL);
    expect_status(&r, 2, "--json error");
    j = json_of(&r);
    ck_assert(!bool_at(j, "ok"));
    cJSON_Delete(j);
    run_free(&r);
}
END_TEST

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tapegrad-check-test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
    static const char *const files[] = {"stdout",   "stderr",  "graph.dot", "pass.txt",
                                        "fail.txt", "bad.txt", "json.txt"};
    char path[160];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(tmpdir);
}

static Suite *check_cli_suite(void) {
    Suite *s = suite_create("check_cli");
    TCase *tc = tcase_create("core");
    tcase_add_unchecked_fixture(tc, make_tmpdir, remove_tmpdir);
    tcase_add_test(tc, test_sin_example);
    tcase_add_test(tc, test_tanh_matvec);
    tcase_add_test(tc, test_logsumexp);
    tcase_add_test(tc, test_relu_kink_fails);
    tcase_add_test(tc, test_every_function_checks);
    tcase_add_test(tc, test_jacobian_and_fast);
    tcase_add_test(tc, test_f32);
    tcase_add_test(tc, test_hessian);
    tcase_add_test(tc, test_tape_and_dot);
    tcase_add_test(tc, test_file);
    tcase_add_test(tc, test_parse_error_caret);
    tcase_add_test(tc, test_exit_codes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tgt_run(check_cli_suite()); }
