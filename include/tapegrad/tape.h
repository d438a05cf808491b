/*
 * tapegrad/tape.h — the Wengert tape, backward sweeps and gradients.
 *
 * Every op (ops.h) appends one node to a per-thread tape when grad mode is on and at
 * least one of its inputs requires a gradient. Nodes sit in creation order, which is
 * already a valid topological order, so backward is one sweep in reverse: no graph
 * search, no sort.
 *
 *     tg_tensor *x1 = tg_scalar(TG_F64, 2.0), *x2 = tg_scalar(TG_F64, 5.0);
 *     tg_requires_grad(x1, true);
 *     tg_requires_grad(x2, true);
 *     tg_tensor *y = tg_add(tg_sin(x1), tg_mul(x1, x2));   // y = sin(x1) + x1*x2
 *     tg_backward(y);                // x1->grad = cos(x1) + x2, x2->grad = x1
 *     tg_tape_reset();               // releases y and every intermediate
 *
 * Memory: tape tensors and nodes live in an arena of blocks that double in size (up to
 * 64 MiB).
 * tg_tape_reset() releases everything on the tape but keeps the blocks, so a training
 * loop reaches a steady state in which a step allocates nothing. tg_tape_mark() and
 * tg_tape_rewind() release only what was made after the mark.
 *
 * Gradients: tg_backward(y) adds d y / d t into t->grad for every tensor t on the
 * path from the leaves to y that requires a gradient. For a persistent leaf, ->grad is
 * a persistent tensor that survives tg_tape_reset() until tg_zero_grad(); for a tape
 * tensor (an intermediate) it is a tape tensor. Calling backward twice before a reset
 * adds the gradients up. tg_grad() returns gradients without touching ->grad.
 *
 * Threads: the tape, the grad mode and the error message are per thread. A persistent
 * tensor that requires a gradient must not be used in backward sweeps of two threads
 * at once.
 */
#ifndef TAPEGRAD_TAPE_H
#define TAPEGRAD_TAPE_H

#include <stdio.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Backward from y, which must have exactly one element: seeds dy = 1 and adds the
 * gradient of y into ->grad of every tensor that requires one. Returns 0, or -1 with
 * tg_error() set when y is NULL, has more than one element, does not require a
 * gradient (no input of it does, or it was computed in no-grad mode), or an allocation
 * fails. On failure no ->grad has been changed. */
int tg_backward(tg_tensor *y);

/* Backward from y with the given seed dy (same shape and dtype as y): adds dy^T dy/dx
 * into ->grad of every tensor x that requires one. Returns 0, or -1 with tg_error() set
 * (naming tg_backward_seeded) in the cases above, when the seed's shape or dtype differs
 * from y's, or when dy is NULL: a NULL seed is an error, not a ones seed (use
 * tg_backward for that), and like a NULL input of an op it keeps an earlier message,
 * so a failed op that produced the seed is the one reported. */
int tg_backward_seeded(tg_tensor *y, const tg_tensor *dy);

enum { TG_CREATE_GRAPH = 1 };

/* The functional form (like torch.autograd.grad): computes
 *     dxs_out[j] = sum_i  dys[i]^T  d ys[i] / d xs[j]
 * for j < nx, without touching any ->grad. dys may be NULL (every seed is ones), and
 * each dys[i] must have ys[i]'s shape and dtype. dxs_out[j] is a tape tensor of
 * xs[j]'s shape; it is a tensor of zeros when ys does not depend on xs[j].
 * With TG_CREATE_GRAPH the sweep itself is recorded on the tape, so the results can be
 * differentiated again (Hessian-vector products, gradient penalties). Without it the
 * results carry no history. Returns 0, or -1 with tg_error() set. */
int tg_grad(int ny, tg_tensor *const *ys, tg_tensor *const *dys, int nx, tg_tensor *const *xs,
            tg_tensor **dxs_out, unsigned flags);

/* Releases every tape tensor and node of this thread; keeps the arena's blocks.
 * Every tape tensor pointer, including intermediates' ->grad, becomes invalid. */
void tg_tape_reset(void);

/* A position on the tape, for tg_tape_rewind(). */
size_t tg_tape_mark(void);

/* Releases every tape tensor and node made after mark was taken (a mark taken after
 * a reset or a rewind to an earlier point is invalid and ignored). */
void tg_tape_rewind(size_t mark);

/* Frees the arena's blocks too (tg_tape_reset plus returning memory to the system).
 * Call it at the end of a thread or program for a leak-free exit. */
void tg_tape_free(void);

/* Number of nodes on this thread's tape. */
size_t tg_tape_size(void);

/* Bytes of arena memory reserved (held in blocks) and in use by this thread's tape. */
size_t tg_tape_bytes_reserved(void);
size_t tg_tape_bytes_used(void);
/* The highest arena position reached since the last tg_tape_reset (what a step needs
 * at its peak: rewinds lower tg_tape_bytes_used but not this). */
size_t tg_tape_bytes_peak(void);

/* Turns recording on or off for this thread; returns the previous mode. With it off
 * (inference, optimizer updates) ops only compute. On by default. */
bool tg_set_grad_enabled(bool on);
bool tg_is_grad_enabled(void);

/* The checked mode: catches the two ways a C program most easily gets silently wrong
 * gradients from a stale pointer, at a cost paid only while it is on.
 *
 *   - A tape tensor used after tg_tape_reset() or tg_tape_rewind() released it: the
 *     op (or tg_backward, tg_grad) fails with "<function>: input is a tape tensor
 *     released by tg_tape_reset" (or tg_tape_rewind) instead of reading whatever now
 *     lies in that memory.
 *   - A persistent tensor freed by tg_tensor_free() while the tape still refers to
 *     it: the free is deferred to the next tg_tape_reset() (or tg_tape_free()), and the
 *     next tg_backward / tg_grad, or an op given it, fails with an error naming the
 *     node that uses it and saying tg_tensor_free released it.
 *
 * How: released arena memory is filled with a poison pattern and not handed out again
 * at once. A reset switches between two arenas, so tensors released by the latest
 * reset are always caught; a rewind leaves the released range unused (up to 64 MiB of
 * such holes, then memory is reused and older stale pointers may alias new tensors).
 * A free scans the tape for references. Memory use is up to about twice the usual
 * and resets and rewinds cost a pass over the memory they release; with the mode off
 * the only cost is one test of a global flag per op.
 *
 * Process-wide (set it before starting threads that record). On at start-up when the
 * environment variable TAPEGRAD_CHECKS is set to a value other than "0" or "". Returns
 * the previous setting. */
bool tg_set_checked_mode(bool on);
bool tg_is_checked_mode(void);

/* ---- gradient hooks ----
 *
 * A hook sees a tensor's gradient once it is complete in a sweep and may replace it:
 *
 *     static tg_tensor *clip(tg_tensor *g, void *ctx) {      // clamp the gradient
 *         double c = *(double *)ctx;
 *         return tg_clamp(g, -c, c);
 *     }
 *     tg_register_hook(h, clip, &limit);   // h: a leaf or an intermediate
 *
 * A hook returns the gradient to use: g itself (to look at it), or a new tensor of g's
 * shape and dtype (made with ops; in a TG_CREATE_GRAPH sweep it is recorded, so it is
 * differentiated again). NULL means an error: the sweep fails (-1, tg_error() names
 * the sweep and the hooked tensor, after the hook's own message) and no ->grad is
 * changed. */
typedef tg_tensor *(*tg_hook_fn)(tg_tensor *grad, void *ctx);

/* Adds fn (called with ctx) to t's hooks. They run in registration order every time
 * t's gradient is complete in a sweep (tg_backward, tg_backward_seeded or tg_grad),
 * before it flows on to the inputs of t's op or is stored in t->grad (or returned by
 * tg_grad): for an intermediate when the sweep reaches the node that made t, for a
 * leaf at the end of the sweep. Each hook gets the previous one's result. A
 * persistent tensor's hooks last until tg_clear_hooks or tg_tensor_free; a tape
 * tensor's until the tape releases it (reset or rewind). Returns 0, or -1 with
 * tg_error() set (t or fn NULL, t of dtype i64, out of memory). Cost: none for tensors
 * without hooks beyond a test of one field the sweep reads anyway. */
int tg_register_hook(tg_tensor *t, tg_hook_fn fn, void *ctx);

/* Removes every hook of t. NULL is fine. */
void tg_clear_hooks(tg_tensor *t);

/* ---- anomaly mode ----
 *
 * For finding where a NaN or an infinity comes from. Per thread, off by default;
 * returns the previous mode. While on:
 *   - forward: an op whose result holds a NaN or +-Inf although every input is finite
 *     fails (returns NULL) with e.g. "tg_sqrt: anomaly: sqrt gave nan at element 2 of
 *     its [4] f64 result from finite inputs (node 7 of the tape)". The first such op is
 *     the one that fails; results of ops that already had a non-finite input pass.
 *   - backward: a node whose backward turns a finite gradient into a gradient with a
 *     NaN or +-Inf fails the sweep (-1, no ->grad changed), naming the node's own op
 *     (the forward op, e.g. sqrt, not the ops its backward calls), the input, the
 *     first bad element and the node's position on the tape.
 * The checks read every result (forward) and every gradient (backward), so they cost
 * one pass over the data per op. Off, an op pays one test of a thread-local flag next
 * to the grad mode, and a sweep one test per sweep. */
bool tg_set_anomaly_mode(bool on);
bool tg_is_anomaly_mode(void);

/* Zeroes t->grad: a persistent gradient is filled with zeros (its memory is kept),
 * a tape gradient is dropped. NULL is fine. */
void tg_zero_grad(tg_tensor *t);

/* Prints the Wengert list, one node a line, e.g.
 *     t4 = add(t2, t3)            [] f64
 * Leaves are printed by name (tg_tensor_set_name) or as p<address-hash>. A user op
 * (function.h) shows its tg_function's name, a checkpointed block "checkpoint". */
void tg_tape_print(FILE *out);

/* Writes the graph in Graphviz DOT: leaves as boxes, op results as ellipses labelled
 * with the op, edges from inputs to results. Returns 0, or -1 on a write error. */
int tg_tape_dot(FILE *out);

/* The thread's last error message, e.g. "tg_matmul: inner dimensions differ: [3,4] @
 * [5,2]", or NULL when there is none. Valid until the next call that sets an error. */
const char *tg_error(void);

/* Forgets the thread's error message. */
void tg_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
