/*
 * nn_internal.h — the layer object shared by the files of src/nn, not part of the
 * public API. Internal non-static names are tg__.
 *
 * A module is one struct for every kind of layer: a kind tag, a forward function and
 * up to four state tensors. The first nparams entries of state[] are the learnable
 * parameters (requires_grad on); the remaining ones are persistent buffers that the
 * forward pass updates outside the tape (batch norm's running statistics). All state
 * tensors are persistent and owned by the module: tg_module_free frees them.
 */
#ifndef TAPEGRAD_NN_INTERNAL_H
#define TAPEGRAD_NN_INTERNAL_H

#include "../ops/ops_internal.h"
#include "tapegrad/nn.h"
#include "tapegrad/optim.h"
#include "tapegrad/config.h" /* TG_HAVE_DIST */
#ifdef TG_HAVE_DIST
#include "tapegrad/dist.h"
#endif

#pragma GCC visibility push(hidden) /* internal: not exported (see internal.h) */

typedef enum {
    TG__MOD_LINEAR = 0,
    TG__MOD_RELU,
    TG__MOD_SIGMOID,
    TG__MOD_TANH,
    TG__MOD_LEAKY_RELU,
    TG__MOD_DROPOUT,
    TG__MOD_BATCHNORM1D,
    TG__MOD_CONV2D,
    TG__MOD_MAXPOOL2D,
    TG__MOD_AVGPOOL2D,
    TG__MOD_FLATTEN,
    TG__MOD_BATCHNORM2D,
    TG__MOD_LAYERNORM,
    TG__MOD_EMBEDDING,
    TG__MOD_GELU,
    TG__MOD_SILU,
    TG__MOD_CUSTOM
} tg__module_kind;

#define TG__MODULE_MAX_STATE 4

/* Runs the layer on x (already checked non-NULL); returns a tape tensor or NULL with
 * tg_error() set naming the layer and the shapes. */
typedef tg_tensor *(*tg__module_forward_fn)(tg_module *m, tg_tensor *x);

struct tg_module {
    tg__module_kind kind;                          /* which layer this is */
    const char *name;                              /* "linear", "relu", ... (static string) */
    tg__module_forward_fn forward;                 /* never NULL */
    bool training;                                 /* true by default; tg_module_train changes it */
    tg_dtype dtype;                                /* F32 or F64 for layers with state */
    int nparams;                                   /* learnable tensors: state[0..nparams) */
    int nstate;                                    /* nparams <= nstate <= TG__MODULE_MAX_STATE */
    const char *state_names[TG__MODULE_MAX_STATE]; /* static strings */
    tg_tensor *state[TG__MODULE_MAX_STATE];        /* persistent, owned */
    int64_t in, out;      /* Linear: in/out features; BatchNorm1d/2d, LayerNorm: features
                             (channels) in both; Embedding: num (in) and dim (out) */
    double p;             /* Dropout: drop probability; Linear: DropConnect p (0: off);
                             LeakyReLU: negative slope */
    double momentum, eps; /* BatchNorm1d/2d: 0.1 and 1e-5; LayerNorm: eps 1e-5 */
    /* Conv2d (whose in/out are its channels), MaxPool2d, AvgPool2d: the window size, its
     * step and the padding on every side. */
    int kernel, stride, padding;
    tg_layer_fn custom; /* a custom layer's forward (tg_nn_custom) */
    void *custom_ctx;
};

/* A fresh module of the given kind with no state, training mode on; NULL (tg_error
 * set) on allocation failure. Used by the layer constructors. */
tg_module *tg__module_alloc(tg__module_kind kind, const char *name, tg__module_forward_fn fwd);

/* A tape constant of shape (ndim, shape) and dtype dt whose elements are 0 with
 * probability p and 1/(1-p) otherwise, drawn from the thread's generator (the mask of
 * inverted dropout and DropConnect). p in [0, 1). NULL on allocation failure. */
tg_tensor *tg__dropout_mask(tg_dtype dt, int ndim, const int64_t *shape, double p);

/* The state slots that parameter i (0 <= i < tg_optim_num_params) of o keeps, in a
 * fixed order: names[k] (static strings, PyTorch's state keys) and the optimizer's own
 * tensors state[k] for k < the count returned (at most 3). For checkpoints. */
int tg__optim_slots(tg_optim *o, int i, const char **names, tg_tensor **state);

/* The step count of parameter i of o (Adam's t), writable: checkpoints restore it. */
int64_t *tg__optim_steps(tg_optim *o, int i);

#ifdef TG_HAVE_DIST
/* One combine of data-parallel training (dist.c), collective over all ranks. Every
 * gradient of params[0..nparams) (NULL counts as zeros and is created; frozen
 * parameters are skipped) and the data of every tensor of bufs[0..nbufs) become
 *     sum over ranks r of weight_r * value_r
 * and sums[0..nsums) (F64) become their plain sum over ranks; every rank receives the
 * same bytes. A rank whose step failed passes failed = true: then nothing moves and
 * every rank returns -1 (the failed rank keeps its message, the others name it). The
 * checks and errors are tg_dist_allreduce_grads's, naming op. */
typedef struct {
    tg_tensor *const *params;
    int nparams;
    tg_tensor *const *bufs;
    int nbufs;
    double weight; /* this rank's weight */
    double *sums;
    int nsums;
    bool failed;
} tg__dist_reduce_args;
int tg__dist_reduce(const char *op, const tg__dist_reduce_args *a);
/* tg_dist_broadcast with errors naming op. */
int tg__dist_broadcast(const char *op, tg_tensor *const *ts, int n, int root);
/* The agreement step on its own: 0 when no rank failed and every rank passed the same
 * values[0..n), else -1 on every rank with tg_error() set ("<op>: ranks disagree on
 * <what>: ...", or naming the first failed rank; a failed rank keeps its message). */
int tg__dist_agree(const char *op, const char *what, const int64_t *values, int n, bool failed);
/* True on every rank when flag is true on any rank (a logical-or allreduce). */
bool tg__dist_any(bool flag);
#endif
#pragma GCC visibility pop

#endif
