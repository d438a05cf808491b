/*
 * tapegrad/transforms.h — functional transforms built on the tape: forward-mode
 * products, Jacobians, Hessians, and activation checkpointing.
 *
 * Each takes the function as a tg_fn (gradcheck.h): f(inputs, ctx) builds y from the
 * inputs with ops. The transforms call f with tape tensors that share the data of
 * the given inputs, so f must build y from those inputs (not from the persistent
 * tensors directly).
 *
 *     // J v of y = sin(x) * x at x, in one call:
 *     tg_tensor *y, *jv;
 *     tg_jvp(f, NULL, 1, &x, &v, &y, &jv);
 *     tg_tensor *J = tg_jacobian(f, NULL, 1, &x, 0);     // [y.shape..., x.shape...]
 *     tg_tensor *H = tg_hessian(loss, NULL, 1, &w, 0);   // for a one-element loss
 *
 * How and what it costs (a backward sweep = one tg_backward of y; measured with
 * bench/run_transforms.sh, numbers in docs/benchmarks.md):
 *   - tg_jvp uses the double-vjp construction: g(u) = J^T u is built with a
 *     TG_CREATE_GRAPH sweep from a dummy seed u, and J v = d(v . g)/du is one more
 *     sweep. It is right for every op whose backward is differentiable (every built-in
 *     op and every user op that is not once_differentiable), and costs a forward plus
 *     about three backward sweeps.
 *   - tg_jacobian: row by row, one backward sweep per element of y over the recorded
 *     forward (the tape is rewound after each row, so memory stays that of one sweep).
 *     Cost: numel(y) sweeps plus one forward.
 *   - tg_hessian: one TG_CREATE_GRAPH sweep gives the gradient g with its history, then
 *     one sweep per element of x[wrt] gives a row d g_k / d x: numel(x) sweeps of the
 *     gradient's graph, each about twice a backward sweep.
 *   - tg_checkpoint: a forward without recording, and in backward one more forward
 *     (recorded) plus the sweep: about one extra forward per step, in exchange for not
 *     keeping f's intermediates between forward and backward.
 *
 * Results are tape tensors (released by tg_tape_reset); tg_jvp, tg_jacobian and
 * tg_hessian return them without history. Errors return NULL / -1 with tg_error()
 * naming the transform.
 */
#ifndef TAPEGRAD_TRANSFORMS_H
#define TAPEGRAD_TRANSFORMS_H

#include "gradcheck.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Forward-mode product: y = f(x) and jv = sum_i (dy/dx_i) v_i, for persistent float
 * inputs x[0..n) and tangents v[i] of x[i]'s shape and dtype (v[i] NULL: a zero
 * tangent; v NULL: every tangent is zero).
 * *y_out and *jv_out (either pointer may be NULL when not wanted) are tape tensors of
 * y's shape without history. Returns 0, or -1 with tg_error() set (bad arguments, f
 * failing, y not float, a once_differentiable op on the way). Grad mode must be on (it
 * is by default). */
int tg_jvp(tg_fn f, void *ctx, int n, tg_tensor *const *x, tg_tensor *const *v, tg_tensor **y_out,
           tg_tensor **jv_out);

/* d f / d x[wrt] as a tape tensor of shape y.shape ++ x[wrt].shape (at most TG_MAX_DIMS
 * dimensions): J[i..., j...] = d y[i...] / d x[wrt][j...]. Row by row (see above). NULL
 * with tg_error() set on bad arguments or a failing f. */
tg_tensor *tg_jacobian(tg_fn f, void *ctx, int n, tg_tensor *const *x, int wrt);

/* For a one-element y = f(x): the Hessian w.r.t. x[wrt], a tape tensor of shape
 * x[wrt].shape ++ x[wrt].shape, H[i..., j...] = d^2 y / d x[i...] d x[j...]. NULL with
 * tg_error() set on bad arguments, y with more than one element, or a failing f. */
tg_tensor *tg_hessian(tg_fn f, void *ctx, int n, tg_tensor *const *x, int wrt);

/* y = f(in) recorded as one node "checkpoint": f runs with grad mode off, so none of its
 * intermediates stay on the tape; the backward runs f again on the same inputs with
 * recording on and sweeps that (gradients are those of f itself). The thread
 * generator's state (random.h) is saved before the forward and restored for the replay,
 * so dropout inside f draws the same masks, and the generator is left where it was.
 * Outside TG_CREATE_GRAPH the replay's memory is released again once its gradients are
 * taken (so the peak is one block's intermediates); with TG_CREATE_GRAPH the replay is
 * kept and the result is differentiable again. ctx is kept by pointer and must stay
 * valid until the backward. Tensors f reaches other than through in (e.g. weights in
 * ctx) get their gradients too. Returns y (a tape tensor), or NULL with tg_error() set. */
tg_tensor *tg_checkpoint(tg_fn f, void *ctx, int n, tg_tensor *const *in);

#ifdef __cplusplus
}
#endif
#endif
