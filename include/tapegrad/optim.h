/*
 * tapegrad/optim.h — optimizers, gradient clipping and learning-rate schedules.
 *
 * An optimizer holds a list of parameters (persistent F32/F64 tensors) and, for each,
 * the state its rule needs (momentum buffers, moment estimates), allocated once when
 * the optimizer is made and kept until tg_optim_free(). tg_optim_step() reads every
 * parameter's ->grad, as left there by tg_backward(), and updates the parameter's data
 * in place; tg_optim_zero_grad() zeroes the gradients for the next step. The update
 * rules reproduce torch.optim.SGD, Adam, AdamW and RMSprop operation by operation
 * (in the parameter's own precision, as PyTorch's tensor ops are: F32 parameters in float).
 *
 *     tg_tensor *params[2] = {w, b};                   // persistent, requires_grad
 *     tg_optim *opt = tg_adam(2, params, TG_ADAM_DEFAULTS);
 *     for (int epoch = 0; epoch < 100; epoch++) {
 *         tg_optim_set_lr(opt, tg_lr_cosine(1e-3, epoch, 100, 0.0));
 *         tg_optim_zero_grad(opt);
 *         tg_tensor *loss = tg_loss_mse(forward(x, w, b), y);   // see nn.h
 *         tg_backward(loss);
 *         tg_clip_grad_norm(2, params, 1.0);           // optional
 *         tg_optim_step(opt);
 *         tg_tape_reset();
 *     }
 *     tg_optim_free(opt);                              // the parameters stay the caller's
 *
 * Ownership: the optimizer borrows the parameters (it never frees them) and owns its
 * state. Free the optimizer before or after the parameters, but do not step it once a
 * parameter is gone. Updates run outside the tape: a step records nothing and does not
 * change the parameters' requires_grad or history.
 *
 * Skipping: a parameter whose ->grad is NULL at a step is left untouched, and so is its
 * state (in particular Adam's step count for bias correction), as in PyTorch.
 *
 * Options follow the rule of tg_gradcheck_opts: a field left at 0 means the documented
 * default (PyTorch's), so (tg_adam_opts){.lr = 1e-2} is Adam with betas 0.9 / 0.999 and
 * eps 1e-8, not an Adam whose betas and eps are 0. The fields where 0 is the default
 * anyway (momentum, dampening, weight decay, the flags) simply mean 0. Where a real zero
 * is wanted for a field whose default is not 0 (beta1 = 0, eps = 0, lr = 0), write
 * TG_EXACT_ZERO: a negative zero, which compares equal to 0 but is told apart from the
 * +0 of an omitted field.
 *
 * Bad input to a constructor (NULL array, n < 1, a NULL, non-float, tape or repeated
 * parameter, a hyperparameter out of range or NaN, an invalid combination such as
 * Nesterov without momentum) returns NULL with tg_error() naming the function and the
 * problem, e.g. "tg_adam: beta2 must be in [0, 1), got 1".
 */
#ifndef TAPEGRAD_OPTIM_H
#define TAPEGRAD_OPTIM_H

#include <stdbool.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_optim tg_optim;

/* An explicit zero for an option whose 0 would otherwise select the default: -0.0,
 * equal to 0 in every comparison and computation, recognised by its sign bit. */
#define TG_EXACT_ZERO (-0.0)

/* ---------------- SGD ----------------
 * Per element, with g the gradient and p the parameter (torch.optim.SGD):
 *     g = g + weight_decay * p                       if weight_decay != 0
 *     b = g                                          first step (momentum != 0)
 *     b = momentum * b + (1 - dampening) * g         later steps
 *     g = g + momentum * b  (nesterov)  or  g = b    if momentum != 0
 *     p = p - lr * g
 * Ranges: lr >= 0, momentum in [0, 1), dampening in [0, 1], weight_decay >= 0;
 * nesterov needs momentum > 0 and dampening == 0. Defaults (fields left 0): lr 1e-3
 * (torch.optim.SGD's); everything else 0. Write e.g. (tg_sgd_opts){.lr = 0.1,
 * .momentum = 0.9}. */
typedef struct {
    double lr;           /* learning rate; 0: 1e-3 */
    double momentum;     /* 0: plain SGD */
    double dampening;    /* weight of the new gradient in the buffer is 1 - dampening */
    double weight_decay; /* L2 penalty added to the gradient */
    bool nesterov;       /* Nesterov momentum */
} tg_sgd_opts;

/* ---------------- Adam / AdamW ----------------
 * Per element, with step count t of this parameter (counted from 1) (torch.optim.Adam,
 * and torch.optim.AdamW when decoupled):
 *     p = p * (1 - lr * weight_decay)                decoupled (AdamW)
 *     g = g + weight_decay * p                       not decoupled, weight_decay != 0
 *     m = beta1 * m + (1 - beta1) * g
 *     v = beta2 * v + (1 - beta2) * g * g
 *     vmax = max(vmax, v); use vmax for v below      amsgrad
 *     denom = sqrt(v) / sqrt(1 - beta2^t) + eps
 *     p = p - (lr / (1 - beta1^t)) * m / denom
 * Ranges: lr >= 0, beta1 and beta2 in [0, 1), eps >= 0, weight_decay >= 0.
 * Defaults (fields left 0): lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8; weight_decay 0. */
typedef struct {
    double lr;           /* learning rate; 0: 1e-3 */
    double beta1, beta2; /* decay rates of the moment estimates; 0: 0.9 and 0.999 */
    double eps;          /* added to the denominator; 0: 1e-8 */
    double weight_decay; /* L2 penalty (Adam) or decoupled decay rate (AdamW) */
    bool decoupled;      /* AdamW: decay the parameter instead of adding to the gradient */
    bool amsgrad;        /* normalise by the running maximum of the second moment */
} tg_adam_opts;

/* PyTorch's Adam defaults: lr 1e-3, betas 0.9 / 0.999, eps 1e-8, no weight decay.
 * A compound literal: pass it directly, or copy and adjust:
 *     tg_adam_opts o = TG_ADAM_DEFAULTS;  o.weight_decay = 0.01;  o.decoupled = true; */
#define TG_ADAM_DEFAULTS                                                                           \
    ((tg_adam_opts){.lr = 1e-3,                                                                    \
                    .beta1 = 0.9,                                                                  \
                    .beta2 = 0.999,                                                                \
                    .eps = 1e-8,                                                                   \
                    .weight_decay = 0.0,                                                           \
                    .decoupled = false,                                                            \
                    .amsgrad = false})

/* ---------------- RMSprop ----------------
 * Per element (torch.optim.RMSprop):
 *     g = g + weight_decay * p                       if weight_decay != 0
 *     s = alpha * s + (1 - alpha) * g * g
 *     a = alpha * a + (1 - alpha) * g;  d = sqrt(s - a * a) + eps      centered
 *     d = sqrt(s) + eps                                                otherwise
 *     b = momentum * b + g / d;  p = p - lr * b      if momentum > 0
 *     p = p - lr * g / d                             otherwise
 * The momentum buffer b starts at zero. Ranges: lr >= 0, alpha in [0, 1), eps >= 0,
 * weight_decay >= 0, momentum in [0, 1). Defaults (fields left 0): lr 1e-2, alpha 0.99,
 * eps 1e-8; weight_decay and momentum 0. */
typedef struct {
    double lr;           /* learning rate; 0: 1e-2 */
    double alpha;        /* smoothing constant of the squared-gradient average; 0: 0.99 */
    double eps;          /* added to the denominator; 0: 1e-8 */
    double weight_decay; /* L2 penalty added to the gradient */
    double momentum;     /* 0: no momentum buffer */
    bool centered;       /* normalise by an estimate of the gradient's variance */
} tg_rmsprop_opts;

/* PyTorch's RMSprop defaults: lr 1e-2, alpha 0.99, eps 1e-8, no weight decay or
 * momentum, not centered. A compound literal, like TG_ADAM_DEFAULTS. */
#define TG_RMSPROP_DEFAULTS                                                                        \
    ((tg_rmsprop_opts){.lr = 1e-2,                                                                 \
                       .alpha = 0.99,                                                              \
                       .eps = 1e-8,                                                                \
                       .weight_decay = 0.0,                                                        \
                       .momentum = 0.0,                                                            \
                       .centered = false})

/* ---------------- constructors ----------------
 * Each makes an optimizer over params[0..n). Every parameter must be a persistent
 * (tg_tensor_* made) F32 or F64 tensor, and appear once; a parameter that does not
 * require a gradient is accepted and simply never has one (a frozen layer). The state
 * tensors (of each parameter's dtype and shape, zero-filled) are allocated here, so a
 * step allocates nothing. The params array itself is copied: the caller may free it.
 * Returns a new optimizer (free it with tg_optim_free), or NULL with tg_error() set on
 * bad input or allocation failure (nothing is leaked). */
tg_optim *tg_sgd(int n, tg_tensor *const *params, tg_sgd_opts o);
tg_optim *tg_adam(int n, tg_tensor *const *params, tg_adam_opts o); /* decoupled: AdamW */
tg_optim *tg_rmsprop(int n, tg_tensor *const *params, tg_rmsprop_opts o);

/* One update of every parameter that has a gradient (->grad non-NULL), by the rule
 * above; parameters without a gradient, and their state, are left unchanged. The
 * gradients are read, not modified, and nothing is recorded on the tape. All gradients
 * are checked first: a gradient whose dtype or shape differs from its parameter's
 * makes the step fail with nothing updated. Returns 0, or -1 with tg_error() set
 * (also when o is NULL). */
int tg_optim_step(tg_optim *o);

/* Zeroes the gradient of every parameter (tg_zero_grad on each; the gradient tensors
 * are kept, filled with zeros). NULL is fine. */
void tg_optim_zero_grad(tg_optim *o);

/* Frees the optimizer and its state; the parameters are not touched. NULL is fine. */
void tg_optim_free(tg_optim *o);

/* The learning rate the next step will use. NaN (and tg_error()) when o is NULL. */
double tg_optim_get_lr(const tg_optim *o);

/* Sets the learning rate for the following steps (the other hyperparameters and the
 * state are kept), as assigning param_groups[0]["lr"] does in PyTorch. A NULL o, or a
 * negative or NaN lr, sets tg_error() and changes nothing. */
void tg_optim_set_lr(tg_optim *o, double lr);

/* Number of parameters of the optimizer (0 when o is NULL). */
int tg_optim_num_params(const tg_optim *o);

/* Read-only view of one state tensor of parameter i (0 <= i < n), by PyTorch's
 * state-key name: "momentum_buffer" (SGD with momentum, RMSprop with momentum),
 * "exp_avg", "exp_avg_sq", "max_exp_avg_sq" (Adam; the last with amsgrad),
 * "square_avg", "grad_avg" (RMSprop; the last when centered). The tensor has the
 * parameter's dtype and shape and is owned by the optimizer. Also the step count:
 * tg_optim_param_steps. NULL with tg_error() for an unknown name, a state this
 * optimizer does not keep, or i out of range. */
const tg_tensor *tg_optim_state(const tg_optim *o, int i, const char *name);

/* How many steps have updated parameter i (steps where it had a gradient); this is
 * the t of Adam's bias correction. -1 with tg_error() on a NULL o or i out of range. */
int64_t tg_optim_param_steps(const tg_optim *o, int i);

/* ---------------- gradient clipping ----------------
 * Global-norm clipping, as torch.nn.utils.clip_grad_norm_ (2-norm): with
 *     total = sqrt( sum over parameters with a gradient of ||grad||^2 )
 * every gradient is multiplied by min(1, max_norm / (total + 1e-6)). Parameters whose
 * ->grad is NULL are skipped. Returns total (the norm before clipping; 0 when no
 * parameter has a gradient). A non-finite total scales the gradients by NaN or 0, as
 * PyTorch does, and is returned. On bad input (params NULL, n < 1, a NULL parameter,
 * a gradient that is not F32/F64, max_norm negative or NaN) returns NaN with
 * tg_error() set and changes nothing. */
double tg_clip_grad_norm(int n, tg_tensor *const *params, double max_norm);

/* ---------------- learning-rate schedules ----------------
 * Closed forms of torch.optim.lr_scheduler; pass the result to tg_optim_set_lr at the
 * start of each epoch (epoch counted from 0, the learning rate of epoch 0 is base_lr).
 * On bad input they return NaN with tg_error() set. */

/* StepLR: base_lr * gamma^floor(epoch / step_size). epoch >= 0, step_size >= 1. */
double tg_lr_step(double base_lr, int epoch, int step_size, double gamma);

/* CosineAnnealingLR: eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2.
 * epoch >= 0, t_max >= 1; past t_max the cosine continues (the rate rises again), as
 * PyTorch's closed form does. */
double tg_lr_cosine(double base_lr, int epoch, int t_max, double eta_min);

#ifdef __cplusplus
}
#endif
#endif
