/*
 * tapegrad/function.h — user-defined ops: torch.autograd.Function in C.
 *
 * A tg_function is an op of your own: a forward that computes the result and a
 * backward that turns the result's gradient into the inputs' gradients. tg_apply runs
 * the forward and records one node on the tape, shown by tg_tape_print / tg_tape_dot
 * under the function's name; tg_backward, tg_grad, tg_gradcheck and tg_gradgradcheck
 * treat it like any built-in op.
 *
 *     // y = x^3, written with ops (differentiable again)
 *     static tg_tensor *cube_fwd(tg_tensor *const *in, void *ctx) {
 *         return tg_mul(in[0], tg_square(in[0]));
 *     }
 *     static int cube_bwd(tg_tensor *const *in, tg_tensor *y, tg_tensor *gy,
 *                         tg_tensor **gin, void *ctx) {
 *         gin[0] = tg_mul(gy, tg_mul_scalar(tg_square(in[0]), 3.0));
 *         return gin[0] ? 0 : -1;
 *     }
 *     static const tg_function cube = {"cube", cube_fwd, cube_bwd, false};
 *     ...
 *     tg_tensor *y = tg_apply(&cube, 1, &x, NULL, 0);
 *
 * Two kinds of backward:
 *   - written with ops (tg_mul, tg_matmul_t, ...): in a TG_CREATE_GRAPH sweep those ops
 *     are recorded, so the op has second derivatives (tg_gradgradcheck passes);
 *   - once_differentiable: plain loops over the data of tensors from tg_empty(), the
 *     fast way to write a fused kernel. Such a backward has no derivative of its own,
 *     so a TG_CREATE_GRAPH sweep that reaches the node fails with an error naming the
 *     function instead of returning a wrong second derivative.
 *
 * The forward runs with grad mode off (its ops record nothing) and may equally fill a
 * tg_empty() tensor with loops. Errors from inside the forward or the backward are
 * reported with the function's name in front: "tg_apply: cube: forward failed:
 * tg_mul: ...", "tg_backward: cube: backward failed: ...".
 */
#ifndef TAPEGRAD_FUNCTION_H
#define TAPEGRAD_FUNCTION_H

#include <stdbool.h>
#include <stddef.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_function {
    /* Shown by tg_tape_print / tg_tape_dot and in error messages (a static string). */
    const char *name;
    /* Computes the result from the inputs, with grad mode off. May call ops, or fill a
     * tensor from tg_empty() with plain loops. Returns a new tape tensor (not an input,
     * not a persistent tensor), or NULL with tg_error() set. */
    tg_tensor *(*forward)(tg_tensor *const *in, void *ctx);
    /* Given gy, the gradient of the result y, sets gin[i] for each input with
     * in[i]->requires_grad (NULL means a zero gradient; the others are ignored). gin[i]
     * must have in[i]'s shape and dtype. Written with ops it is differentiable again.
     * Returns 0, or -1 with tg_error() set. in and y are the forward's inputs and result. */
    int (*backward)(tg_tensor *const *in, tg_tensor *y, tg_tensor *gy, tg_tensor **gin, void *ctx);
    /* true: backward uses raw loops; a TG_CREATE_GRAPH sweep through it fails with an
     * error naming the function. */
    bool once_differentiable;
} tg_function;

/* Runs f->forward(in, ctx) and, when grad mode is on and some input requires a
 * gradient, records one node whose backward is f->backward. f is kept by pointer
 * (make it a static const). ctx: with ctx_size > 0, ctx_size bytes at ctx are copied
 * onto the tape (aligned for any type: 64 bytes) and forward and backward get the copy,
 * so ctx may be a local variable; with ctx_size 0 the pointer itself is kept and must
 * stay valid until the tape is reset. Returns the forward's result (a tape tensor), or
 * NULL with tg_error() set: f, its name, forward or backward NULL, n < 0, in NULL when
 * n > 0, ctx NULL with ctx_size > 0, an input NULL (the earlier message is kept, as for any op) or
 * released (checked mode), the forward failing, or returning an input, a persistent tensor or a
 * tensor that already has a history. Errors name tg_apply and the function. */
tg_tensor *tg_apply(const tg_function *f, int n, tg_tensor *const *in, void *ctx, size_t ctx_size);

/* An uninitialised tape tensor of the given dtype and shape, for forwards and
 * backwards that fill their result with loops (data is contiguous, row-major, 64-byte
 * aligned). Released by tg_tape_reset like every tape tensor. NULL with tg_error() set
 * on a bad dtype, ndim outside [0, TG_MAX_DIMS], a NULL shape with ndim > 0, a negative
 * or too large shape, or out of memory. */
tg_tensor *tg_empty(tg_dtype dt, int ndim, const int64_t *shape);

#ifdef __cplusplus
}
#endif
#endif
