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
 * Both also verify that the backward pass is deterministic (two sweeps give identical
 * gradients) and that a zero seed gives zero gradients.
 *
 * The inputs must be persistent F64 tensors; those with requires_grad set are
 * checked, the others are held constant. Their data is perturbed during the check and
 * restored before it returns. f must build its result from the inputs with ops; it may
 * return a tensor of any shape. The tape is rewound to where it was on return.
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

/* What was found. On failure: the input and flat element index of the worst entry
 * (-1 where not applicable), the analytic and numeric values there, and a message. */
typedef struct {
    bool ok;
    int input;
    int64_t index;
    double analytic, numeric, max_abs_err;
    char message[256];
} tg_gradcheck_report;

/* Checks first derivatives of f at inputs. Returns true when they agree. rep may be
 * NULL. Bad arguments (NULL f, n < 1, a NULL, non-persistent or non-F64 input, f
 * failing) return false with the reason in rep->message and tg_error(). */
bool tg_gradcheck(tg_fn f, void *ctx, int n, tg_tensor *const *inputs,
                  const tg_gradcheck_opts *opts, tg_gradcheck_report *rep);

/* Checks second derivatives: runs tg_gradcheck on the map (inputs, v) -> J(inputs)^T v
 * built by tg_grad with TG_CREATE_GRAPH, for a random seed v. rep->input counts the
 * inputs that require a gradient first, then v as the last one. */
bool tg_gradgradcheck(tg_fn f, void *ctx, int n, tg_tensor *const *inputs,
                      const tg_gradcheck_opts *opts, tg_gradcheck_report *rep);

#ifdef __cplusplus
}
#endif
#endif
