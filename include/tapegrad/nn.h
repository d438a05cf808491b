/*
 * tapegrad/nn.h — layers, losses, regularizers, initializers and a small model.
 *
 * Everything here is composed from the primitive ops of ops.h: no layer or loss has a
 * hand-written backward, so gradients (and second derivatives) come from the tape.
 *
 *     tg_seed(0);
 *     tg_model *m = tg_model_new();
 *     tg_model_add(m, tg_nn_linear(2, 100, TG_F32));
 *     tg_model_add(m, tg_nn_relu());
 *     tg_model_add(m, tg_nn_linear(100, 3, TG_F32));
 *     tg_optim *opt = tg_adam(...);                   // see optim.h
 *     tg_fit_opts fo = {.batch_size = 20, .epochs = 200, .shuffle = true,
 *                       .loss = tg_loss_cross_entropy, .optim = opt};
 *     tg_model_fit(m, X, y, &fo, NULL);
 *     printf("accuracy %.3f\n", tg_model_accuracy(m, X, y));
 *
 * Ownership: a module owns its parameters (persistent tensors); a model owns the
 * modules added to it. Forward results are tape tensors.
 */
#ifndef TAPEGRAD_NN_H
#define TAPEGRAD_NN_H

#include "ops.h"
#include "random.h"
#include "tape.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_optim tg_optim; /* optim.h */

/* ---------------- layers ----------------
 * A module is one layer: a forward function plus the persistent tensors it owns (its
 * learnable parameters, which have requires_grad set, and buffers such as batch norm's
 * running statistics). Forward passes never modify their input, and always return a
 * tape tensor, even when the layer computes the identity (dropout in eval mode). A
 * layer with parameters accepts inputs of its own dtype only (no silent promotion). */

typedef struct tg_module tg_module;

/* y = x W + b with W [in, out] and b [out]; x is [N, in] (or [..., N, in]: leading
 * dimensions are batch dimensions and carry over to y). Parameters are initialised as
 * PyTorch's nn.Linear does: W and b uniform in [-1/sqrt(in), 1/sqrt(in)], drawn (W
 * first, row-major, then b) from the generator seeded by tg_seed(). State "weight",
 * "bias". NULL with tg_error() set on in/out < 1 or a non-float dtype. Free with
 * tg_module_free (or hand it to a model). */
tg_module *tg_nn_linear(int64_t in, int64_t out, tg_dtype dt);
/* DropConnect: in training mode each forward drops every weight of W independently
 * with probability p (and scales the kept ones by 1/(1-p)), drawing a fresh mask from
 * the thread's generator; identity in eval mode. p = 0 turns it off (the default).
 * p in [0, 1). Returns 0, or -1 with tg_error() set if m is NULL or not a Linear, or p
 * is out of range (or NaN). */
int tg_nn_linear_set_dropconnect(tg_module *m, double p);
/* Activations, for inputs of any shape and either float dtype:
 *     relu(x) = max(x, 0)          (gradient 0 at x = 0)
 *     sigmoid(x) = 1 / (1 + e^-x)
 *     tanh(x)
 *     leaky_relu(x) = x for x > 0, slope x otherwise (gradient slope at x = 0, as in
 *                     PyTorch); NULL when slope is not finite. */
tg_module *tg_nn_relu(void);
tg_module *tg_nn_sigmoid(void);
tg_module *tg_nn_tanh(void);
tg_module *tg_nn_leaky_relu(double slope);
/* gelu(x) = x Phi(x), the erf form (PyTorch's nn.GELU() default), and silu(x) =
 * x sigmoid(x) (nn.SiLU): tg_gelu and tg_silu of ops.h. No state. */
tg_module *tg_nn_gelu(void);
tg_module *tg_nn_silu(void);
/* Inverted dropout: in training, zeroes each element with probability p and scales the
 * rest by 1/(1-p) (a fresh mask from the thread's generator every forward), so the
 * expected output is the input; identity in eval mode and for p = 0. p in [0, 1):
 * NULL with tg_error() set otherwise. */
tg_module *tg_nn_dropout(double p);
/* Batch normalisation over the batch axis of x [N, features], PyTorch semantics:
 *   training:  y = (x - mean_n x) / sqrt(var_n x + eps) * weight + bias, with the
 *              biased batch variance; then, outside the tape,
 *              running_mean = 0.9 running_mean + 0.1 mean_n x and
 *              running_var  = 0.9 running_var  + 0.1 var_n x * N / (N - 1).
 *              N = 1 is an error ("expected more than 1 value per channel").
 *   eval:      y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
 * eps = 1e-5; weight starts at ones, bias at zeros, running_mean at zeros, running_var
 * at ones. State "weight", "bias" (learnable), "running_mean", "running_var". */
tg_module *tg_nn_batchnorm1d(int64_t features, tg_dtype dt);
/* BatchNorm2d (PyTorch semantics) for images x [N, channels, H, W]: as BatchNorm1d with
 * the statistics of each channel taken over the batch and the image (M = N*H*W values
 * per channel, the running variance scaled by M / (M - 1)); M = 1 in training is an
 * error. Same state and defaults as BatchNorm1d, each [channels]. */
tg_module *tg_nn_batchnorm2d(int64_t channels, tg_dtype dt);
/* LayerNorm over the last dimension (PyTorch's nn.LayerNorm(features)): for x [..., features],
 *     y = (x - mean x) / sqrt(var x + eps) * weight + bias
 * with the mean and the biased variance (tg_var, correction 0) over the last axis of
 * each row, eps = 1e-5, weight [features] starting at ones and bias at zeros (state
 * "weight", "bias"). The same in training and eval mode. */
tg_module *tg_nn_layernorm(int64_t features, tg_dtype dt);
/* Embedding (PyTorch's nn.Embedding(num, dim)): a lookup table weight [num, dim],
 * initialised N(0, 1) from the thread generator (state "weight"). The input is an I64
 * tensor of indices of any shape (the one layer tg_module_forward feeds indices; a
 * tg_model whose first layer is an embedding takes an I64 X), each in [0, num) (checked:
 * the error names the index and its position); y = weight[x] has shape x.shape ++ [dim].
 * Gradient: rows of weight picked several times add up. The tape keeps a view of the
 * indices: keep x alive until the backward pass is done. */
tg_module *tg_nn_embedding(int64_t num, int64_t dim, tg_dtype dt);
/* 2-D convolution, PyTorch's nn.Conv2d with square kernels: for x [N, in_ch, H, W],
 *     y = tg_conv2d(x, weight, stride, padding) + bias   (bias broadcast as [out_ch, 1, 1])
 * giving [N, out_ch, OH, OW] (see tg_conv2d in ops.h for OH, OW). weight is
 * [out_ch, in_ch, kernel, kernel] and bias [out_ch], both uniform in
 * [-1/sqrt(fan_in), 1/sqrt(fan_in)] with fan_in = in_ch * kernel * kernel (PyTorch's
 * default), drawn (weight first, row-major, then bias) from the generator seeded by
 * tg_seed(). State "weight", "bias". NULL with tg_error() set on in_ch, out_ch, kernel
 * or stride < 1, padding < 0, or a non-float dtype; the forward pass fails on an input
 * that is not [N, in_ch, H, W] or smaller than the kernel once padded. */
tg_module *tg_nn_conv2d(int64_t in_ch, int64_t out_ch, int kernel, int stride, int padding,
                        tg_dtype dt);
/* Max and average pooling over kernel x kernel windows of x [N, C, H, W]: tg_max_pool2d
 * and tg_avg_pool2d of ops.h (average pooling counts the zero padding, as PyTorch's
 * default). No state; any float dtype. NULL with tg_error() set on kernel or stride < 1,
 * padding < 0 or padding > kernel / 2. */
tg_module *tg_nn_maxpool2d(int kernel, int stride, int padding);
tg_module *tg_nn_avgpool2d(int kernel, int stride, int padding);
/* Flattens every axis but the first: [N, d1, d2, ...] -> [N, d1 * d2 * ...] (a 1-D
 * [N] becomes [N, 1]), sharing the input's data. The step between convolutional and
 * linear layers. A 0-d input is an error. */
tg_module *tg_nn_flatten(void);

/* ---------------- custom layers ----------------
 * A layer of your own: a forward function plus the tensors it owns. It takes part in
 * a tg_model like a built-in layer: tg_model_params lists its parameters (so the
 * optimizer updates them), tg_module_train switches its mode, tg_model_save/load store
 * its state under "<layer index>.<state name>".
 *
 *     // y = x * scale + shift, with scale and shift learnable per feature
 *     static tg_tensor *affine(tg_tensor *x, tg_tensor *const *st, bool training, void *ctx) {
 *         return tg_add(tg_mul(x, st[0]), st[1]);
 *     }
 *     tg_tensor *st[] = {tg_tensor_full(TG_F32, TG_SHAPE(8), 1.0), tg_tensor_new(TG_F32,
 * TG_SHAPE(8))}; tg_module *m = tg_nn_custom("affine", affine, NULL, 2, 2, st, (const char
 * *[]){"scale", "shift"});
 *
 * The forward gets the input (f32/f64 of the layer's dtype, checked), the state tensors
 * (parameters first, then buffers), the training flag and ctx; it builds the result with
 * ops (or user ops, function.h) and returns a tape tensor or NULL with tg_error() set.
 * Buffers are persistent tensors the forward may update in place outside the tape
 * (running statistics). */
#define TG_LAYER_MAX_STATE 4
typedef tg_tensor *(*tg_layer_fn)(tg_tensor *x, tg_tensor *const *state, bool training, void *ctx);

/* A custom layer named name (a static string, e.g. a literal; shown in messages and by
 * tg_module_kind) computing forward(x, state, training, ctx). state[0..nstate) are
 * persistent float tensors of one dtype (the layer's), at most TG_LAYER_MAX_STATE; the
 * first nparams are learnable (requires_grad is turned on), the rest buffers. names[i]
 * names state[i] (static strings, distinct). On success the module owns the state
 * tensors (tg_module_free frees them); on failure (NULL, tg_error() set: NULL name or
 * forward, counts out of range, a NULL, i64, tape or mixed-dtype state tensor, a
 * missing or repeated name) the caller still owns them. ctx is kept by pointer. */
tg_module *tg_nn_custom(const char *name, tg_layer_fn forward, void *ctx, int nparams, int nstate,
                        tg_tensor *const *state, const char *const *names);

/* Runs the module on x. Returns a tape tensor, or NULL with tg_error() set on bad
 * input, naming the layer and the shapes, e.g.
 * "tg_nn_linear: input [4,3] does not match in_features 2". A NULL x (or m) returns
 * NULL without overwriting an earlier message, so layers chain without checks. */
tg_tensor *tg_module_forward(tg_module *m, tg_tensor *x);
/* Writes up to cap learnable parameters into out and returns how many the module has
 * (so a call with cap 0, out NULL, counts them). The tensors stay owned by the module.
 * -1 with tg_error() set on a NULL module, cap < 0, or out NULL with cap > 0. */
int tg_module_params(tg_module *m, tg_tensor **out, int cap);
/* Like tg_module_params, but lists every state tensor, the learnable parameters first
 * and then the buffers, each with its name ("weight", "bias", "running_mean",
 * "running_var": static strings) in names (which may be NULL). */
int tg_module_state(tg_module *m, const char **names, tg_tensor **out, int cap);
/* Training mode (the default) or eval mode (dropout and DropConnect off, batch norm
 * uses and keeps its running statistics). NULL is ignored. */
void tg_module_train(tg_module *m, bool training);
/* True when m is in training mode (false for NULL). */
bool tg_module_is_training(const tg_module *m);
/* "linear", "relu", "sigmoid", "tanh", "leaky_relu", "dropout", "batchnorm1d",
 * "conv2d", "maxpool2d", "avgpool2d", "flatten", "batchnorm2d", "layernorm", "embedding",
 * "gelu", "silu"; NULL for a NULL module. */
const char *tg_module_kind(const tg_module *m);
/* Frees the module and its state tensors (after tg_tape_reset() if the tape refers to
 * them). NULL is fine. */
void tg_module_free(tg_module *m);

/* ---------------- losses (mean over the batch) ----------------
 * Each returns a 0-d tape tensor, or NULL with tg_error() set. Labels and targets are
 * constants: they are never modified and never differentiated (a target that requires
 * a gradient is treated as a constant; its ->grad stays untouched). Scores/logits are
 * [N, C] with N, C >= 1 and labels I64 [N] with values in [0, C), checked one by one:
 * "tg_loss_cross_entropy: label 7 out of range for 3 classes at row 2". */

/* Softmax cross-entropy: mean_n [ logsumexp(logits_n) - logits_n[y_n] ]; exact for
 * large logits. Equals torch.nn.functional.cross_entropy. */
tg_tensor *tg_loss_cross_entropy(tg_tensor *logits, const tg_tensor *labels);
/* Multiclass hinge (Weston-Watkins SVM): mean_n sum_{j != y_n} max(0, s_j - s_{y_n} + 1).
 * (torch.nn.functional.multi_margin_loss also divides by C.) */
tg_tensor *tg_loss_hinge(tg_tensor *scores, const tg_tensor *labels);
/* Mean squared error: mean of (pred - target)^2 over every element. pred and target
 * have the same shape (no broadcasting), the same float dtype, and at least one
 * element. */
tg_tensor *tg_loss_mse(tg_tensor *pred, const tg_tensor *target);
/* Binary cross-entropy on logits: mean of max(x,0) - x t + log(1 + e^-|x|). Never
 * overflows and is exact at |x| = 1000; the gradient is sigmoid(x) - t (per element,
 * over the count) everywhere, x = 0 included. target has logits' shape and dtype,
 * values in [0, 1] (checked). */
tg_tensor *tg_loss_bce_with_logits(tg_tensor *logits, const tg_tensor *target);

/* ---------------- regularizers ----------------
 * Differentiable penalties over n >= 1 float tensors of one dtype (any shapes), for
 * adding to a loss: a 0-d tape tensor, or NULL with tg_error() set on n < 1, a NULL
 * array or entry, a non-float entry, or mixed dtypes. */
tg_tensor *tg_l1_penalty(int n, tg_tensor *const *params); /* sum over params of sum |w| */
tg_tensor *tg_l2_penalty(int n, tg_tensor *const *params); /* sum over params of sum w^2 */

/* ---------------- initializers ----------------
 * Initializers draw from the thread generator of random.h, seeded by tg_seed() (a
 * thread that never calls it uses seed 0), so runs are reproducible: the same seed
 * gives the same numbers. Initializers fill any float
 * tensor (persistent ones: do not write to a tape tensor an op has used) and return 0,
 * or -1 with tg_error() set on a NULL or non-float tensor or a bad argument.
 * fan_in/fan_out of a [in, out] weight are in and out; of a 1-D tensor both are its
 * size; of a 0-d tensor 1; tensors of more dimensions are refused by the fan-based
 * initializers. */
int tg_init_normal(tg_tensor *t, double mean, double std); /* N(mean, std^2); std >= 0 */
int tg_init_uniform(tg_tensor *t, double lo, double hi);   /* U[lo, hi); lo <= hi */
int tg_init_zeros(tg_tensor *t);
int tg_init_constant(tg_tensor *t, double c);
int tg_init_xavier_uniform(tg_tensor *t);  /* U(-a, a), a = sqrt(6 / (fan_in + fan_out)) */
int tg_init_xavier_normal(tg_tensor *t);   /* N(0, 2 / (fan_in + fan_out)) */
int tg_init_kaiming_uniform(tg_tensor *t); /* U(-b, b), b = sqrt(6 / fan_in) (ReLU gain) */
int tg_init_kaiming_normal(tg_tensor *t);  /* N(0, 2 / fan_in) */

/* ---------------- the model ---------------- */

typedef struct tg_model tg_model;
typedef tg_tensor *(*tg_loss_fn)(tg_tensor *pred, const tg_tensor *target);

/* What tg_model_fit reports to its callbacks, after a step (on_step) and after an epoch
 * (on_epoch). Losses are means over rows; "train" figures are running figures over the
 * rows of the epoch seen so far, computed on the batches as they were trained (so with
 * the parameters of the moment, and dropout active), not a second pass over the data. */
typedef struct {
    int epoch;             /* 0-based index of the current epoch (initial_epoch counted) */
    int epochs;            /* the options' epochs: training stops before this index */
    int64_t step, steps;   /* steps done in this epoch (1..steps), steps per epoch */
    int64_t rows;          /* training rows seen in this epoch so far */
    double train_loss;     /* running mean loss of this epoch */
    double train_accuracy; /* running accuracy (argmax == label) of this epoch; NaN when y is
                              not I64 labels or the output not [rows, classes] */
    double val_loss;       /* on the validation data after the epoch; NaN at steps and
                              when there is no validation data */
    double val_accuracy;   /* the same for accuracy (NaN also when not classification) */
    double seconds;        /* wall time since the epoch started */
    int best_epoch;        /* the epoch with the best monitored loss so far (-1: none yet) */
} tg_fit_progress;

/* A callback of tg_model_fit: return 0 to go on, nonzero to stop training after this
 * step or epoch (fit then returns 0: a requested stop is not an error). */
typedef int (*tg_fit_callback)(const tg_fit_progress *p, void *ctx);

typedef struct {
    int64_t batch_size; /* 0: the whole data set */
    int epochs;         /* >= 1: train epochs initial_epoch .. epochs - 1 */
    bool shuffle;       /* reshuffle every epoch with a generator seeded by seed */
    uint64_t seed;
    tg_loss_fn loss; /* required */
    tg_optim *optim; /* required; built over tg_model_params */
    int verbose;     /* 0: silent; 1: one line per epoch; 2: also one per step */
    /* ---- added later; a field left 0 / NULL keeps the behaviour above ---- */
    const tg_tensor *val_X, *val_y; /* validation data (both or neither): its loss and
                                       accuracy after each epoch, in eval mode */
    tg_fit_callback on_step;        /* called after every step (may be NULL) */
    tg_fit_callback on_epoch;       /* called after every epoch (may be NULL) */
    void *callback_ctx;             /* passed to both callbacks */
    int patience;         /* > 0: stop when the monitored loss (validation loss if there is
                             validation data, else the training loss) has not improved by more
                             than min_delta for this many epochs in a row; 0: never */
    double min_delta;     /* >= 0; see patience */
    int initial_epoch;    /* epochs already trained (resuming from a checkpoint): the first
                             epoch run is this one, and the shuffle order continues as if
                             the earlier epochs had run in this call; 0 <= initial_epoch <
                             epochs */
    double max_grad_norm; /* > 0: clip the gradients' global 2-norm to this before every
                             update (tg_clip_grad_norm; when distributed, after the combine,
                             so every rank clips the same gradients); 0: no clipping */
    bool distributed;     /* data-parallel over the MPI ranks (dist.h; needs a build with
                             MPI and tg_dist_init); see "Distributed training" below */
} tg_fit_opts;

tg_model *tg_model_new(void);
/* Appends a layer; the model takes ownership (also on failure, when it frees it). */
int tg_model_add(tg_model *m, tg_module *layer);
int tg_model_params(tg_model *m, tg_tensor **out, int cap); /* all layers' params, in order */
/* Runs the layers in order on x (a tape tensor results). A conv2d layer followed by max
 * pooling (a ReLU between them allowed) runs as one op that pools each image's
 * convolution output while it is in cache, and a ReLU followed by max pooling runs as
 * pooling then ReLU: the same values and gradients as the layers one at a time (a zero
 * may come out with the other sign), with less memory and time. */
tg_tensor *tg_model_forward(tg_model *m, tg_tensor *x);
/* Trains in minibatches for epochs initial_epoch .. epochs - 1; each step resets the
 * tape to where it was on entry, so the tape stays bounded. Parameters are never
 * re-initialised: calling fit again resumes training. One step: zero the gradients,
 * forward and loss over the batch, check the loss is finite, backward, optimizer step.
 *
 * epoch_loss (may be NULL) receives the mean training loss of each epoch run:
 * epoch_loss[e - initial_epoch] for epoch e (room for epochs - initial_epoch values).
 * With verbose >= 1 each epoch prints one labelled line ("train loss", "train accuracy"
 * (running, see tg_fit_progress), "val loss", "val accuracy", seconds).
 *
 * Training stops early, returning 0, when a callback returns nonzero or when patience
 * runs out. A loss that is NaN or infinite stops training before that step updates
 * anything: -1 with an error naming the epoch and the step (both 1-based), e.g.
 * "tg_model_fit: the loss is nan at epoch 3, step 17 (...)".
 *
 * Reproducibility: the batches depend only on seed and the epoch index, so training
 * epochs 0-1, saving with tg_model_save_training, loading into a fresh model and
 * optimizer and fitting epochs 2-3 with initial_epoch = 2 gives the same bits as epochs
 * 0-3 in one call (for layers without randomness; dropout draws from tg_seed's stream,
 * which a checkpoint does not hold).
 *
 * Returns 0, or -1 with tg_error() set: NULL arguments, no loss or optimizer, bad
 * epochs / batch_size / initial_epoch / patience / min_delta, X and y (or val_X and
 * val_y) with different row counts, validation data whose rows differ in shape from X's,
 * a failing forward pass, loss or step, a non-finite loss. */
/*
 * Distributed training (distributed = true, under mpirun; every rank calls fit with the
 * same model architecture, data and options, and tg_dist_init was called):
 *   - on entry the parameters, the layers' buffers and the optimizer's state (moments,
 *     step counts, learning rate) are broadcast from rank 0, so a run resumed from a
 *     checkpoint that only rank 0 loaded, with any number of ranks, starts equal;
 *   - every rank walks the same shuffled batch order; rank r of R computes rows
 *     [b r / R, b (r + 1) / R) of each batch of b rows (slices differ by at most one row
 *     and may be empty);
 *   - the gradients are combined weighted by rows (rank r's by b_r / b) in one fused
 *     buffer per dtype, and every rank receives the same bytes (tg_dist_allreduce_grads),
 *     so the parameters stay bitwise identical and R ranks train the model one rank
 *     would, up to the order of floating-point sums; clipping comes after the combine;
 *   - dropout and DropConnect draw from a different stream on each rank (rank 0 keeps
 *     tg_seed's), reproducible for a given number of ranks;
 *   - batch norm normalises each slice with its own statistics (as PyTorch's
 *     DistributedDataParallel without SyncBatchNorm), and after every step the running
 *     statistics are replaced by their row-weighted mean over ranks: running_mean then
 *     follows the global batch mean exactly, running_var the weighted mean of the
 *     slices' variances; every rank keeps identical buffers. Each slice then needs at
 *     least 2 rows;
 *   - epoch_loss, the progress figures and the stopping decisions are global (the same
 *     on every rank); a stop asked by a callback on any rank stops every rank; the
 *     validation data are evaluated whole on every rank; verbose output is printed by
 *     rank 0 only; callbacks run on every rank (write checkpoints from rank 0 only);
 *   - a failure on any rank (a bad batch, a non-finite loss, mismatched arguments)
 *     returns -1 on every rank: the failed rank's message says why, the others name it.
 */
int tg_model_fit(tg_model *m, const tg_tensor *X, const tg_tensor *y, const tg_fit_opts *o,
                 double *epoch_loss);
/* Mean loss of the model on X against y, in batches, in eval mode and without recording
 * (the loss function is called per batch of at most 1024 rows and weighted by rows). NaN
 * with tg_error() set on error. */
double tg_model_evaluate(tg_model *m, const tg_tensor *X, const tg_tensor *y, tg_loss_fn loss);
/* The model's output on X as a new persistent tensor (free it with tg_tensor_free);
 * runs in batches, in eval mode and without recording, and leaves the tape and the
 * modules' training flags as it found them. */
tg_tensor *tg_model_predict(tg_model *m, const tg_tensor *X);
/* Fraction of rows of X whose argmax prediction equals labels (I64 [N]); NaN on error. */
double tg_model_accuracy(tg_model *m, const tg_tensor *X, const tg_tensor *labels);
void tg_model_train(tg_model *m, bool training); /* every layer */
/* Writes every layer's state as safetensors ("<layer index>.<name>", e.g. "0.weight")
 * to a temporary file renamed over path, so a crash never leaves a broken file. */
int tg_model_save(const tg_model *m, const char *path);
/* Reads a file written by tg_model_save into a model of the same architecture. On a
 * missing, truncated, corrupted or mismatched file returns -1 with tg_error() set and
 * leaves the model untouched. */
int tg_model_load(tg_model *m, const char *path);
/* A training checkpoint: the model's state as tg_model_save writes it, plus the state of
 * optimizer opt (may be NULL: none) and the number of epochs done, in one safetensors
 * file, written atomically:
 *     "<layer>.<name>"            the model, as tg_model_save
 *     "optim.<i>.<state key>"     each state tensor of parameter i ("exp_avg", ...)
 *     "optim.steps"               I64 [n]: each parameter's step count (Adam's t)
 *     "optim.lr"                  F64 [1]: the learning rate of the next step
 *     "epoch"                     I64 [1]
 * opt must have been built over tg_model_params(m). Returns 0, or -1 with tg_error(). */
int tg_model_save_training(const tg_model *m, const tg_optim *opt, int64_t epoch, const char *path);
/* Reads a file of tg_model_save_training into a model of the same architecture and an
 * optimizer of the same kind and options (opt NULL: the file must hold no optimizer
 * state); *epoch (may be NULL) receives the epoch count. The file is validated before
 * anything changes: on a missing, truncated, corrupted or mismatched file (another
 * architecture, another optimizer kind or options that keep other state) returns -1
 * with tg_error() set and leaves model and optimizer untouched. (A negative epoch, step
 * count or learning rate, which tg_model_save_training never writes, is found after
 * the tensors were read: -1 then too.) Pass the epoch as initial_epoch to tg_model_fit
 * to continue. */
int tg_model_load_training(tg_model *m, tg_optim *opt, int64_t *epoch, const char *path);
void tg_model_free(tg_model *m); /* frees the layers; NULL is fine */

#ifdef __cplusplus
}
#endif
#endif
