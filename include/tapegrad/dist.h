/*
 * tapegrad/dist.h — data-parallel training over MPI.
 *
 * Present when the library was built with MPI: tapegrad.h then defines TG_HAVE_DIST and
 * includes this header. A program is started N times by `mpirun -np N` (on one machine
 * or, with --hostfile, on several); each copy is a rank 0..N-1. Every rank builds the
 * same model, the parameters are broadcast from rank 0 so that all ranks start equal,
 * each rank computes the gradients of its share of a batch, and the gradients are
 * combined so that every rank applies the same update and the parameters stay
 * bitwise identical:
 *
 *     tg_dist_init(&argc, &argv);
 *     ... build the model and the optimizer over params[0..n) ...
 *     tg_dist_broadcast(params, n, 0);                 // everyone starts from rank 0's
 *     for (each step) {
 *         tg_optim_zero_grad(opt);
 *         tg_backward(loss of this rank's rows);
 *         tg_dist_allreduce_grads(params, n);          // ->grad: the mean over ranks
 *         tg_clip_grad_norm(n, params, 1.0);           // optional, after the combine
 *         tg_optim_step(opt);
 *         tg_tape_reset();
 *     }
 *     tg_dist_finalize();
 *
 * tg_model_fit does all of this itself with tg_fit_opts.distributed (nn.h).
 *
 * Collective calls. tg_dist_broadcast and tg_dist_allreduce_grads are collective: every
 * rank must make the same calls in the same order, each with the same number of tensors
 * of the same dtypes and sizes. A cheap agreement check (one small MPI_Allreduce) runs
 * first, so a rank that passes a different list, or fails its own argument checks, makes
 * the call fail with -1 and tg_error() set on every rank instead of leaving the others
 * waiting. A rank that never makes the call at all cannot be detected: the others wait,
 * as with any MPI collective. A rank that dies (crash, exit) ends the whole job: MPI's
 * default error handler stays in place and mpirun stops the remaining ranks with its
 * own message.
 *
 * Threads. The library uses MPI from the thread that called tg_dist_init only
 * (MPI_THREAD_FUNNELED); call every tg_dist_ function from that thread.
 *
 * Communicator. The ranks are those of MPI_COMM_WORLD; the library talks over its own
 * duplicate of it, so its messages never match collectives the program makes itself.
 */
#ifndef TAPEGRAD_DIST_H
#define TAPEGRAD_DIST_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Starts MPI (MPI_Init_thread with MPI_THREAD_FUNNELED, passing argc and argv, which
 * may both be NULL) unless the program has already initialised it, and sets up the
 * library's communicator. Calling it again is fine and does nothing. Returns 0, or -1
 * with tg_error() set when MPI has already been finalised or MPI reports an error. */
int tg_dist_init(int *argc, char ***argv);

/* Releases the library's communicator and buffers, then calls MPI_Finalize if and only
 * if tg_dist_init started MPI (a program that initialised MPI itself finalises it
 * itself, after this call). Collective over all ranks. Does nothing when tg_dist_init
 * was not called or after a previous tg_dist_finalize. */
void tg_dist_finalize(void);

/* This process's rank in [0, size), and the number of ranks. Before tg_dist_init (or
 * after tg_dist_finalize) both return -1 and set tg_error(). */
int tg_dist_rank(void);
int tg_dist_size(void);

/* Copies the data of the n tensors of rank root into the same tensors on every other
 * rank. The tensors are persistent (tg_tensor_* made), of any dtype (F32, F64, I64),
 * and must agree across ranks in count, dtype and number of elements; their gradients
 * are not touched. n = 0 is fine. Collective. Returns 0, or -1 with tg_error() set on
 * every rank: a NULL array (with n > 0) or tensor, a tape tensor, root outside
 * [0, size), ranks that disagree on root or on the tensors, MPI not initialised. */
int tg_dist_broadcast(tg_tensor *const *ts, int n, int root);

/* Replaces the gradient of each parameter by the mean of that gradient over all ranks:
 *     p->grad = (1 / size) * sum over ranks r of p->grad on rank r
 * The gradients travel in one buffer per dtype (F32, F64), not one message per tensor:
 * each rank sums one block of the buffer (a reduce-scatter) and the blocks are then
 * gathered, so every element is summed by exactly one rank and every rank receives the
 * same bytes (bitwise-identical gradients, whatever the MPI library's reduction order).
 * The traffic per rank is about 2 (size - 1) / size times the gradient bytes, as in a
 * ring allreduce. A parameter whose ->grad is NULL counts as zeros, and receives a new
 * (persistent) gradient tensor; a parameter that does not require a gradient (a frozen
 * layer) is skipped. The parameters are persistent F32/F64 tensors that agree across
 * ranks in count, dtype and size. Collective. Returns 0, or -1 with
 * tg_error() set on every rank (the gradients are then unchanged): a NULL array (with
 * n > 0) or parameter, a tape or non-float parameter, ranks that disagree on the
 * parameters, MPI not initialised, allocation failure on any rank. */
int tg_dist_allreduce_grads(tg_tensor *const *params, int n);

#ifdef __cplusplus
}
#endif
#endif
