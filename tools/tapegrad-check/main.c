/* main.c — tapegrad-check: differentiate and gradient-check an expression from the
 * shell. The options and the check files are read here; each check is tgc_check
 * (runner.c). See tapegrad-check.1 for the manual. */
#define _POSIX_C_SOURCE 200809L /* getline */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "expr.h"
#include "runner.h"

enum { MAX_BINDINGS = 256 };

static const char usage_text[] =
    "usage: tapegrad-check [options] 'EXPR' NAME=VALUE ...\n"
    "       tapegrad-check [options] --file FILE\n"
    "\n"
    "Differentiates EXPR with tapegrad, compares the gradient with central differences\n"
    "and gives tg_gradcheck's verdict (PyTorch's rule). Values: x=0.3, v=[1,2,3],\n"
    "A=[[1,2],[3,4]], W:3x4 (random normal, see --seed).\n"
    "\n"
    "options:\n"
    "  --eps X      finite-difference step (default 1e-6; 1e-3 with --f32)\n"
    "  --atol X     absolute tolerance (default 1e-5; 1e-3 with --f32)\n"
    "  --rtol X     relative tolerance (default 1e-3; 1e-2 with --f32)\n"
    "  --fast       check a random projection of the Jacobian instead of all of it\n"
    "  --hessian    also the Hessian and a second-order check (tg_gradgradcheck)\n"
    "  --tape       print the Wengert list of the forward pass\n"
    "  --dot FILE   write the graph of the forward pass (Graphviz DOT)\n"
    "  --json       one JSON object per check\n"
    "  --f32        evaluate in float32\n"
    "  --seed N     seed of the NAME:SHAPE values (default 0)\n"
    "  --file FILE  one check per line, 'EXPR ; NAME=VALUE ...' ('-': standard input)\n"
    "  --list       list the functions\n"
    "  -h, --help   this text\n"
    "\n"
    "exit status: 0 every check passed, 1 a check failed, 2 bad usage or input\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("tapegrad-check: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(tapegrad-check --help for the usage)\n", stderr);
    va_end(ap);
    return TGC_ERROR;
}

static bool number_arg(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v <= 0) return false;
    *out = v;
    return true;
}

static void list_functions(void) {
    for (int i = 0; i < tgc_func_count(); i++)
        printf("%-28s %s\n", tgc_func_usage(i), tgc_func_help(i));
}

/* Runs every check of a file; returns the worst status. */
static int run_file(const char *path, const tgc_opts *o) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        fprintf(stderr, "tapegrad-check: cannot open %s: %s\n", path, strerror(errno));
        return TGC_ERROR;
    }
    char *line = NULL, *b[MAX_BINDINGS], *expr, where[512];
    size_t cap = 0;
    long lineno = 0, passed = 0, failed = 0;
    int worst = TGC_PASS;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        const char *s = line + strspn(line, " \t");
        if (*s == '\0' || *s == '#') continue;
        snprintf(where, sizeof where, "%s:%ld: ", path, lineno);
        int nb = tgc_line_split(line, &expr, b, MAX_BINDINGS);
        int st;
        if (nb < 0) {
            fprintf(stderr, "%serror: more than %d values\n", where, MAX_BINDINGS);
            st = TGC_ERROR;
        } else {
            if (passed + failed > 0 && !o->json) putchar('\n');
            st = tgc_check(expr, nb, (const char *const *)b, o, stdout, stderr, where);
        }
        if (st == TGC_PASS)
            passed++;
        else
            failed++;
        if (st > worst) worst = st;
    }
    free(line);
    if (f != stdin) fclose(f);
    if (o->json)
        printf("{\"passed\":%ld,\"failed\":%ld}\n", passed, failed);
    else
        printf("%s%ld passed, %ld failed\n", passed + failed ? "\n" : "", passed, failed);
    return worst;
}

int main(int argc, char **argv) {
    tgc_opts o = {0};
    const char *file = NULL, *expr = NULL;
    const char **bindings = calloc((size_t)argc, sizeof *bindings);
    int nb = 0, status;
    bool options_done = false;
    if (!bindings) return TGC_ERROR;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        /* Only "--" options (and -h): an expression may start with '-', as in '-x^2'. */
        if (options_done || strncmp(a, "--", 2) != 0 || strcmp(a, "--") == 0) {
            if (strcmp(a, "--") == 0 && !options_done) {
                options_done = true;
            } else if (strcmp(a, "-h") == 0 && !options_done) {
                fputs(usage_text, stdout);
                free(bindings);
                return 0;
            } else if (!expr && !file) {
                expr = a;
            } else {
                bindings[nb++] = a;
            }
            continue;
        }
        const char *eq = strchr(a, '=');
        char opt[32];
        size_t olen = eq ? (size_t)(eq - a) : strlen(a);
        if (olen >= sizeof opt) olen = sizeof opt - 1;
        memcpy(opt, a, olen);
        opt[olen] = '\0';
        static const char *const with_value[] = {"--eps", "--atol", "--rtol",
                                                 "--dot", "--seed", "--file"};
        const char *val = NULL;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
            if (strcmp(opt, with_value[k]) == 0) {
                if (eq)
                    val = eq + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else {
                    free(bindings);
                    return usage_error("%s needs a value", opt);
                }
            }
        if (eq && !val) {
            free(bindings);
            return usage_error("%s takes no value", opt);
        }
        bool ok = true;
        if (strcmp(opt, "--eps") == 0)
            ok = number_arg(val, &o.eps);
        else if (strcmp(opt, "--atol") == 0)
            ok = number_arg(val, &o.atol);
        else if (strcmp(opt, "--rtol") == 0)
            ok = number_arg(val, &o.rtol);
        else if (strcmp(opt, "--dot") == 0)
            o.dot_path = val;
        else if (strcmp(opt, "--file") == 0)
            file = val;
        else if (strcmp(opt, "--seed") == 0) {
            char *end;
            errno = 0;
            o.seed = strtoull(val, &end, 10);
            ok = end != val && !*end && !errno && val[0] != '-';
        } else if (strcmp(opt, "--fast") == 0)
            o.fast = true;
        else if (strcmp(opt, "--hessian") == 0)
            o.hessian = true;
        else if (strcmp(opt, "--tape") == 0)
            o.tape = true;
        else if (strcmp(opt, "--json") == 0)
            o.json = true;
        else if (strcmp(opt, "--f32") == 0)
            o.f32 = true;
        else if (strcmp(opt, "--list") == 0) {
            list_functions();
            free(bindings);
            return 0;
        } else if (strcmp(opt, "--help") == 0) {
            fputs(usage_text, stdout);
            free(bindings);
            return 0;
        } else {
            free(bindings);
            return usage_error("unknown option %s", a);
        }
        if (!ok) {
            free(bindings);
            return usage_error("bad value for %s (a positive number, or for --seed an integer)",
                               opt);
        }
    }
    if (file && (expr || nb)) {
        status = usage_error("%s", "--file takes the expressions from the file: no EXPR here");
    } else if (file) {
        status = run_file(file, &o);
    } else if (!expr) {
        status = usage_error("%s", "no expression");
    } else {
        status = tgc_check(expr, nb, bindings, &o, stdout, stderr, NULL);
    }
    free(bindings);
    tg_tape_free();
    return status;
}
