/*
 * tapegrad/gradcheck.h — checking gradients against finite differences.
 *
 * tg_gradcheck compares the gradients that the tape computes for a function with
 * central differences  (f(x + eps e) - f(x - eps e)) / (2 eps), in F64, and passes
 * when, for every entry,  |analytic - numeric| <= atol + rtol * |numeric|  (PyTorch's
 * rule and defaults: eps 1e-6, atol 1e-5, rtol 1e-3).
 *
 *     static tg_tensor *f(tg_tensor *const *in, void *ctx) {
 *         (void)ctx;
 *         return tg_add(tg_sin(in[0]), tg_mul(in[0], in[1]));   // sin(x1) + x1*x2
 *     }
 *     ...
 *     tg_gradcheck_report rep;
 *     if (!tg_gradcheck(f, NULL, 2, (tg_tensor *[]){x1, x2}, NULL, &rep))
 *         fprintf(stderr, "%s\n", rep.message);
 *
 * Slow mode (the default) builds the whole Jacobian: one pair of evaluations per
 * element of every input, and one backward pass per element of the output. Fast mode
 * compares the scalar v^T J u for a random input direction u and random output weights
 * v, which costs two evaluations and one backward whatever the sizes.
 *
 * Both also verify that the backward pass is deterministic (two sweeps with the same
 * seed give bitwise identical gradients) and that a zero seed gives exactly zero
 * gradients. The random directions come from a fixed internal generator, so a check
 * is reproducible.
 *
 * The inputs must be persistent tensors. Those with requires_grad set are checked and
 * must be F64; the others are held constant and may have any dtype (an I64 index, for
 * instance). The checked inputs' data is perturbed during the check and restored bit
 * for bit before it returns; their ->grad is not touched (gradients come from tg_grad).
 * f must build its F64 result from the inputs with ops; it may return a tensor of any
 * shape. It is called with grad mode on whatever the caller's mode, and with tg_error()
 * cleared, so that a failure inside f is reported with its own message. The tape is
 * rewound to where it was, and the grad mode restored, on return.
 */
#ifndef TAPEGRAD_GRADCHECK_H
#define TAPEGRAD_GRADCHECK_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builds y from inputs (ctx is passed through). Returns NULL on error. */
typedef tg_tensor *(*tg_fn)(tg_tensor *const *inputs, void *ctx);

/* Zero fields take the defaults: eps 1e-6, atol 1e-5, rtol 1e-3. fast: see above. */
typedef struct {
    double eps, atol, rtol;
    bool fast;
} tg_gradcheck_opts;

/* What was found. max_abs_err is the largest |analytic - numeric| (the one difference in
 * fast mode). On failure: input and index locate the worst entry (the input's position
 * in the inputs array and the flat element index in it; -1 in fast mode or where not
 * applicable), analytic and numeric are the values there, and message says what went
 * wrong, e.g. "tg_gradcheck: gradient mismatch at input 1 element 2 (output element 2):
 * analytic 3, numeric 2, ...". On success input/index locate the largest difference
 * (slow mode) and message is a one-line summary. */
typedef struct {
    bool ok;
    int input;
    int64_t index;
    double analytic, numeric, max_abs_err;
    char message[256];
} tg_gradcheck_report;

/* Checks first derivatives of f at inputs. Returns true when they agree. rep may be
 * NULL. Any failure sets tg_error() to the report's message. Bad arguments (NULL f,
 * n < 1, a NULL input array or input, a non-persistent input, a non-F64 input that
 * requires a gradient, no input requiring a gradient, negative eps/atol/rtol, f
 * returning NULL or a non-F64 result) return false with the reason in rep->message;
 * when f returns NULL the message includes the error f's ops set. */
bool tg_gradcheck(tg_fn f, void *ctx, int n, tg_tensor *const *inputs,
                  const tg_gradcheck_opts *opts, tg_gradcheck_report *rep);

/* Checks second derivatives: for each input x_j that requires a gradient, runs the
 * check above on the map (inputs, v) -> J_j(inputs)^T v, the gradient with respect to
 * x_j that tg_grad builds with TG_CREATE_GRAPH, where v is a fixed pseudo-random F64 seed
 * of f's output shape that is itself checked as an extra input. Checking every gradient
 * block this way covers the whole second-derivative Jacobian. rep->input is a position
 * in inputs, or n for v; the message names the gradient block. Inputs whose gradient
 * does not depend on anything (a linear f, or an f that ignores them) pass. */
bool tg_gradgradcheck(tg_fn f, void *ctx, int n, tg_tensor *const *inputs,
                      const tg_gradcheck_opts *opts, tg_gradcheck_report *rep);

#ifdef __cplusplus
}
#endif
#endif
