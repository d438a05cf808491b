/*
 * expr.h — the expressions and values of tapegrad-check.
 *
 * An expression is parsed once into a small tree and can then be evaluated any number
 * of times (a gradient check evaluates it at perturbed inputs), each time building the
 * result with the library's ops, so the tape records it like any C program would:
 *
 *     tgc_diag d;
 *     tgc_expr *e = tgc_expr_parse("sin(x1) + x1*x2", &d);     // NULL: d.pos, d.msg
 *     // tgc_expr_nnames(e) == 2, names "x1" then "x2" (order of first use)
 *     tg_tensor *y = tgc_expr_eval(e, (tg_tensor *[]){x1, x2}, TG_F64, &d);
 *     ...
 *     tg_tape_reset();
 *     tgc_expr_free(e);
 *
 * Grammar (lowest precedence first; `^` is right-associative and binds tighter than
 * unary minus, so -x^2 is -(x^2) and 2^-x is allowed):
 *
 *     expr     := additive [ ('<' | '<=' | '>' | '>=' | '==' | '!=') additive ]
 *     additive := term { ('+' | '-') term }
 *     term     := unary { ('*' | '/' | '@') unary }
 *     unary    := ('-' | '+') unary | power
 *     power    := primary [ ('^' | '**') unary ]
 *     primary  := NUMBER | NAME | NAME '(' expr { ',' expr } ')' | '(' expr ')'
 *
 * A comparison gives a mask of 0s and 1s (no gradient flows through it), meant for
 * where(a > b, x, y). Functions come from one table (expr.c), one row per name.
 *
 * Nothing here exits or prints: every failure is returned as a tgc_diag with the byte
 * position it refers to, so a fuzzer can drive the parser in one process.
 */
#ifndef TGC_EXPR_H
#define TGC_EXPR_H

#include <stdbool.h>
#include <stdint.h>

#include <tapegrad.h>

/* What went wrong and where: pos is a byte offset into the text that was parsed (the
 * expression or the value), or -1 when no position applies. */
typedef struct {
    int pos;
    char msg[256];
} tgc_diag;

/* Longest name, in bytes; longer ones are an error. */
enum { TGC_NAME_MAX = 63 };

typedef struct tgc_expr tgc_expr;

/* Parses src (NUL-terminated). Returns the tree, or NULL with d filled (a syntax error,
 * an unknown function, a wrong number of arguments, an axis that is not an integer, or
 * an expression too long or too deeply nested). Free with tgc_expr_free. */
tgc_expr *tgc_expr_parse(const char *src, tgc_diag *d);

/* Frees e and the constant tensors it made. Call it after tg_tape_reset() when e has
 * been evaluated (the tape refers to those constants). NULL is fine. */
void tgc_expr_free(tgc_expr *e);

/* The distinct variable names of e, in order of first use, and the byte position of
 * that first use. */
int tgc_expr_nnames(const tgc_expr *e);
const char *tgc_expr_name(const tgc_expr *e, int i);
int tgc_expr_name_pos(const tgc_expr *e, int i);

/* Builds the value of e with ops: vals[i] is the tensor bound to name i (any float
 * dtype); numbers become constants of dtype dt (TG_F32 or TG_F64). Returns a tape
 * tensor, or NULL with d set to the op's message (tg_error()) and the position of the
 * operator or function that failed. */
tg_tensor *tgc_expr_eval(tgc_expr *e, tg_tensor *const *vals, tg_dtype dt, tgc_diag *d);

/* The function table: how many names, and each one's name and call form
 * ("sum(x[, axis])") with a one-line description. */
int tgc_func_count(void);
const char *tgc_func_name(int i);
const char *tgc_func_usage(int i);
const char *tgc_func_help(int i);

/* Parses one binding: "NAME=NUMBER", "NAME=[1, 2, 3]" (nested brackets for more
 * dimensions, rectangular), or "NAME:3x4" (a tensor of that shape filled from the
 * library's generator, tg_seed, with N(0, 1) values). On success writes the name into
 * name (TGC_NAME_MAX + 1 bytes) and a new persistent F64 tensor into *out, owned by
 * the caller, and returns 0. On error returns -1 with d set (pos is an offset in arg).
 * Random shapes are limited to TGC_RANDOM_MAX elements. */
enum { TGC_RANDOM_MAX = 1 << 20 };
int tgc_binding_parse(const char *arg, char *name, tg_tensor **out, tgc_diag *d);

/* Splits a line of a check file, "EXPR ; BINDING BINDING ...", in place: writes a NUL
 * at the ';' (if any), stores the expression start in *expr and up to max bindings
 * (split at white space outside brackets, each NUL-terminated) in bindings. Returns
 * the number of bindings, or -1 when there are more than max. Offsets of each piece
 * in the original line are (piece - line). */
int tgc_line_split(char *line, char **expr, char **bindings, int max);

#endif
