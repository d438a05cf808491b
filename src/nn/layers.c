/* layers.c — Linear, the activations, Dropout, BatchNorm1d/2d, LayerNorm, Embedding,
 * Conv2d, the pooling layers and Flatten.
 *
 * Every forward is a composition of ops from ops.h, so the tape differentiates it
 * (twice, if asked). The only raw loops write constants the tape never differentiates:
 * the random masks of dropout and DropConnect, the sign mask of leaky ReLU, and batch
 * norm's running statistics. */
#include <math.h>
#include <string.h>

#include "nn_internal.h"

tg_tensor *tg__dropout_mask(tg_dtype dt, int ndim, const int64_t *shape, double p) {
    tg_tensor *mask = tg__tape_tensor(dt, ndim, shape);
    if (!mask) return NULL;
    double keep = 1.0 / (1.0 - p);
    for (int64_t i = 0; i < mask->numel; i++)
        tg__set(mask, i, tg_rand_uniform() < p ? 0.0 : keep);
    return mask;
}

/* The identity as a tape tensor (a reshape to the same shape: shares x's data and
 * passes the gradient through), so that a layer that does nothing still returns a
 * tape tensor and never the caller's own tensor. */
static tg_tensor *identity(tg_tensor *x) { return tg_reshape(x, x->ndim, x->shape); }

static bool valid_prob(double p) { return p >= 0.0 && p < 1.0; } /* false for NaN */

/* Gives m its learnable "weight" and "bias" (either NULL: allocation failed, m is
 * freed), both drawn uniform in +-1/sqrt(fan_in) as PyTorch's Linear and Conv2d do. */
static tg_module *weight_and_bias(tg_module *m, tg_tensor *w, tg_tensor *b, double fan_in) {
    m->state[0] = w;
    m->state[1] = b;
    m->nparams = m->nstate = 2;
    m->state_names[0] = "weight";
    m->state_names[1] = "bias";
    if (!w || !b) {
        tg_module_free(m);
        return NULL;
    }
    double bound = 1.0 / sqrt(fan_in);
    for (int i = 0; i < 2; i++) {
        tg_init_uniform(m->state[i], -bound, bound);
        tg_requires_grad(m->state[i], true);
    }
    return m;
}

/* ================= Linear ================= */

static tg_tensor *linear_forward(tg_module *m, tg_tensor *x) {
    if (x->ndim < 2)
        return tg__fail("tg_nn_linear: input %s must be [N, %lld] (at least 2-D)", tg__shp(x),
                        (long long)m->in);
    if (x->shape[x->ndim - 1] != m->in)
        return tg__fail("tg_nn_linear: input %s does not match in_features %lld", tg__shp(x),
                        (long long)m->in);
    tg_tensor *w = m->state[0];
    if (m->training && m->p > 0.0) {
        tg_tensor *mask = tg__dropout_mask(w->dtype, w->ndim, w->shape, m->p);
        if (!mask) return NULL;
        w = tg_mul(w, mask);
    }
    return tg_add(tg_matmul(x, w), m->state[1]);
}

tg_module *tg_nn_linear(int64_t in, int64_t out, tg_dtype dt) {
    if (in < 1 || out < 1)
        return tg__fail("tg_nn_linear: needs in_features >= 1 and out_features >= 1, got %lld "
                        "and %lld",
                        (long long)in, (long long)out);
    if (dt != TG_F32 && dt != TG_F64)
        return tg__fail("tg_nn_linear: dtype must be f32 or f64, got %s", tg_dtype_name(dt));
    tg_module *m = tg__module_alloc(TG__MOD_LINEAR, "linear", linear_forward);
    if (!m) return NULL;
    m->dtype = dt;
    m->in = in;
    m->out = out;
    /* PyTorch's nn.Linear: both bounds are 1/sqrt(fan_in). */
    return weight_and_bias(m, tg_tensor_new(dt, TG_SHAPE(in, out)),
                           tg_tensor_new(dt, TG_SHAPE(out)), (double)in);
}

int tg_nn_linear_set_dropconnect(tg_module *m, double p) {
    if (!m) return tg__fail_soft("tg_nn_linear_set_dropconnect: module is NULL"), -1;
    if (m->kind != TG__MOD_LINEAR)
        return tg__fail_int("tg_nn_linear_set_dropconnect: module is a %s, not a linear", m->name);
    if (!valid_prob(p))
        return tg__fail_int("tg_nn_linear_set_dropconnect: p must be in [0, 1), got %g", p);
    m->p = p;
    return 0;
}

/* ================= activations ================= */

static tg_tensor *relu_forward(tg_module *m, tg_tensor *x) { return tg_relu(x); }
static tg_tensor *sigmoid_forward(tg_module *m, tg_tensor *x) { return tg_sigmoid(x); }
static tg_tensor *tanh_forward(tg_module *m, tg_tensor *x) { return tg_tanh(x); }
static tg_tensor *gelu_forward(tg_module *m, tg_tensor *x) { return tg_gelu(x); }
static tg_tensor *silu_forward(tg_module *m, tg_tensor *x) { return tg_silu(x); }

/* where(x > 0, x, slope x): the gradient is 1 for x > 0 and slope otherwise, as in
 * PyTorch (the slope also at x = 0). */
static tg_tensor *leaky_relu_forward(tg_module *m, tg_tensor *x) {
    tg_tensor *pos = tg__tape_tensor(x->dtype, x->ndim, x->shape);
    if (!pos) return NULL;
    for (int64_t i = 0; i < x->numel; i++)
        tg__set(pos, i, tg__get(x, i) > 0.0 ? 1.0 : 0.0);
    return tg_where(pos, x, tg_mul_scalar(x, m->p));
}

tg_module *tg_nn_relu(void) { return tg__module_alloc(TG__MOD_RELU, "relu", relu_forward); }

tg_module *tg_nn_sigmoid(void) {
    return tg__module_alloc(TG__MOD_SIGMOID, "sigmoid", sigmoid_forward);
}

tg_module *tg_nn_tanh(void) { return tg__module_alloc(TG__MOD_TANH, "tanh", tanh_forward); }

tg_module *tg_nn_gelu(void) { return tg__module_alloc(TG__MOD_GELU, "gelu", gelu_forward); }

tg_module *tg_nn_silu(void) { return tg__module_alloc(TG__MOD_SILU, "silu", silu_forward); }

tg_module *tg_nn_leaky_relu(double slope) {
    if (!isfinite(slope)) return tg__fail("tg_nn_leaky_relu: slope must be finite, got %g", slope);
    tg_module *m = tg__module_alloc(TG__MOD_LEAKY_RELU, "leaky_relu", leaky_relu_forward);
    if (m) m->p = slope;
    return m;
}

/* ================= Dropout ================= */

static tg_tensor *dropout_forward(tg_module *m, tg_tensor *x) {
    if (!m->training || m->p == 0.0) return identity(x);
    tg_tensor *mask = tg__dropout_mask(x->dtype, x->ndim, x->shape, m->p);
    return mask ? tg_mul(x, mask) : NULL;
}

tg_module *tg_nn_dropout(double p) {
    if (!valid_prob(p)) return tg__fail("tg_nn_dropout: p must be in [0, 1), got %g", p);
    tg_module *m = tg__module_alloc(TG__MOD_DROPOUT, "dropout", dropout_forward);
    if (m) m->p = p;
    return m;
}

/* ================= BatchNorm1d, BatchNorm2d, LayerNorm ================= */

/* The mean over the axes batch norm reduces, kept as size 1: the batch axis of
 * [N, C], or the batch and image axes of [N, C, H, W]. */
static tg_tensor *batch_mean(tg_tensor *x) {
    tg_tensor *m = tg_mean(x, 0, true);
    return x->ndim == 4 ? tg_mean(tg_mean(m, 2, true), 3, true) : m;
}

/* A per-channel [C] state tensor shaped to broadcast over x: [C] for [N, C] and
 * [C, 1, 1] for [N, C, H, W]. */
static tg_tensor *per_channel(tg_tensor *v, const tg_tensor *x) {
    return x->ndim == 4 ? tg_reshape(v, 3, (const int64_t[]){v->numel, 1, 1}) : v;
}

/* Training:  mu = mean x,  var = mean (x - mu)^2  (biased; over the batch, and for
 *            BatchNorm2d also the image),  y = (x - mu) / sqrt(var + eps) * weight + bias,
 *            running <- (1 - momentum) running + momentum batch  (var unbiased: M/(M-1)
 *            for the M values per channel).
 * Eval:      y = (x - running_mean) / sqrt(running_var + eps) * weight + bias. */
static tg_tensor *batchnorm_forward(tg_module *m, tg_tensor *x) {
    bool two_d = m->kind == TG__MOD_BATCHNORM2D;
    const char *op = two_d ? "tg_nn_batchnorm2d" : "tg_nn_batchnorm1d";
    if (x->ndim != (two_d ? 4 : 2) || x->shape[1] != m->in)
        return tg__fail("%s: input %s does not match [N, %lld%s]", op, tg__shp(x), (long long)m->in,
                        two_d ? ", H, W" : "");
    tg_tensor *w = per_channel(m->state[0], x), *b = per_channel(m->state[1], x);
    tg_tensor *rmean = m->state[2], *rvar = m->state[3];
    int64_t count = x->numel / m->in; /* values per channel */
    tg_tensor *xhat;
    if (m->training) {
        if (count < 2)
            return tg__fail("%s: expected more than 1 value per channel when training, got "
                            "input %s",
                            op, tg__shp(x));
        tg_tensor *mu = batch_mean(x);
        tg_tensor *xc = tg_sub(x, mu);
        tg_tensor *var = batch_mean(tg_square(xc));
        xhat = tg_div(xc, tg_sqrt(tg_add_scalar(var, m->eps)));
        if (!xhat) return NULL;
        /* Running statistics: buffers, updated outside the tape. mu and var hold one
         * value per channel, in channel order. */
        double unbias = (double)count / (double)(count - 1);
        for (int64_t j = 0; j < m->in; j++) {
            double rm = tg__get(rmean, j), rv = tg__get(rvar, j);
            tg__set(rmean, j, (1.0 - m->momentum) * rm + m->momentum * tg__get(mu, j));
            tg__set(rvar, j, (1.0 - m->momentum) * rv + m->momentum * tg__get(var, j) * unbias);
        }
    } else {
        tg_tensor *sd = tg_sqrt(tg_add_scalar(per_channel(rvar, x), m->eps));
        xhat = tg_div(tg_sub(x, per_channel(rmean, x)), sd);
    }
    return tg_add(tg_mul(xhat, w), b);
}

/* A normalisation layer's state: "weight" (ones) and "bias" (zeros) of [features], learnable,
 * then, for batch norm, "running_mean" (zeros) and "running_var" (ones). */
static tg_module *norm_layer(tg__module_kind kind, const char *op, const char *name,
                             tg__module_forward_fn fwd, int64_t features, tg_dtype dt,
                             bool running) {
    if (features < 1) return tg__fail("%s: needs features >= 1, got %lld", op, (long long)features);
    if (dt != TG_F32 && dt != TG_F64)
        return tg__fail("%s: dtype must be f32 or f64, got %s", op, tg_dtype_name(dt));
    tg_module *m = tg__module_alloc(kind, name, fwd);
    if (!m) return NULL;
    m->dtype = dt;
    m->in = m->out = features;
    m->momentum = 0.1;
    m->eps = 1e-5;
    static const char *const names[4] = {"weight", "bias", "running_mean", "running_var"};
    m->nparams = 2;
    m->nstate = running ? 4 : 2;
    for (int i = 0; i < m->nstate; i++) {
        m->state_names[i] = names[i];
        if (!(m->state[i] = tg_tensor_new(dt, TG_SHAPE(features)))) {
            tg_module_free(m);
            return NULL;
        }
    }
    tg_init_constant(m->state[0], 1.0);
    if (running) tg_init_constant(m->state[3], 1.0);
    tg_requires_grad(m->state[0], true);
    tg_requires_grad(m->state[1], true);
    return m;
}

tg_module *tg_nn_batchnorm1d(int64_t features, tg_dtype dt) {
    return norm_layer(TG__MOD_BATCHNORM1D, "tg_nn_batchnorm1d", "batchnorm1d", batchnorm_forward,
                      features, dt, true);
}

tg_module *tg_nn_batchnorm2d(int64_t channels, tg_dtype dt) {
    return norm_layer(TG__MOD_BATCHNORM2D, "tg_nn_batchnorm2d", "batchnorm2d", batchnorm_forward,
                      channels, dt, true);
}

/* y = (x - mean x) / sqrt(var x + eps) * weight + bias over the last axis (biased
 * variance), as PyTorch's nn.LayerNorm(features). */
static tg_tensor *layernorm_forward(tg_module *m, tg_tensor *x) {
    if (x->ndim < 1 || x->shape[x->ndim - 1] != m->in)
        return tg__fail("tg_nn_layernorm: input %s does not match [..., %lld]", tg__shp(x),
                        (long long)m->in);
    tg_tensor *xc = tg_sub(x, tg_mean(x, -1, true));
    tg_tensor *sd = tg_sqrt(tg_add_scalar(tg_var(x, -1, true, 0), m->eps));
    return tg_add(tg_mul(tg_div(xc, sd), m->state[0]), m->state[1]);
}

tg_module *tg_nn_layernorm(int64_t features, tg_dtype dt) {
    return norm_layer(TG__MOD_LAYERNORM, "tg_nn_layernorm", "layernorm", layernorm_forward,
                      features, dt, false);
}

/* ================= Embedding ================= */

/* y[i..., :] = weight[x[i...], :]: the rows of weight [num, dim] picked by the I64
 * indices x (any shape), giving x.shape ++ [dim]; one tg_index_select on the flattened
 * indices. */
static tg_tensor *embedding_forward(tg_module *m, tg_tensor *x) {
    if (x->ndim >= TG_MAX_DIMS)
        return tg__fail("tg_nn_embedding: input %s has too many dimensions (at most %d)",
                        tg__shp(x), TG_MAX_DIMS - 1);
    const int64_t *idx = x->data;
    for (int64_t i = 0; i < x->numel; i++)
        if (idx[i] < 0 || idx[i] >= m->in)
            return tg__fail("tg_nn_embedding: index %lld at position %lld of input %s is out of "
                            "range for %lld embeddings",
                            (long long)idx[i], (long long)i, tg__shp(x), (long long)m->in);
    tg_tensor *flat = tg_reshape(x, 1, (const int64_t[]){x->numel});
    tg_tensor *rows = tg_index_select(m->state[0], 0, flat);
    int64_t shape[TG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        shape[i] = x->shape[i];
    shape[x->ndim] = m->out;
    return tg_reshape(rows, x->ndim + 1, shape);
}

tg_module *tg_nn_embedding(int64_t num, int64_t dim, tg_dtype dt) {
    if (num < 1 || dim < 1)
        return tg__fail("tg_nn_embedding: needs num >= 1 and dim >= 1, got %lld and %lld",
                        (long long)num, (long long)dim);
    if (dt != TG_F32 && dt != TG_F64)
        return tg__fail("tg_nn_embedding: dtype must be f32 or f64, got %s", tg_dtype_name(dt));
    tg_module *m = tg__module_alloc(TG__MOD_EMBEDDING, "embedding", embedding_forward);
    if (!m) return NULL;
    m->dtype = dt;
    m->in = num;
    m->out = dim;
    m->nparams = m->nstate = 1;
    m->state_names[0] = "weight";
    if (!(m->state[0] = tg_tensor_new(dt, TG_SHAPE(num, dim)))) {
        tg_module_free(m);
        return NULL;
    }
    tg_init_normal(m->state[0], 0.0, 1.0); /* PyTorch's nn.Embedding: N(0, 1) */
    tg_requires_grad(m->state[0], true);
    return m;
}

/* ================= Conv2d, pooling, Flatten ================= */

/* y = conv2d(x, weight) + bias on every output channel, in one op (tg__conv2d_bias)
 * that writes the bias before the product instead of adding it in a second pass. */
static tg_tensor *conv2d_forward(tg_module *m, tg_tensor *x) {
    if (x->ndim != 4 || x->shape[1] != m->in)
        return tg__fail("tg_nn_conv2d: input %s does not match [N, %lld, H, W]", tg__shp(x),
                        (long long)m->in);
    return tg__conv2d_bias(x, m->state[0], m->state[1], m->stride, m->padding);
}

tg_module *tg_nn_conv2d(int64_t in_ch, int64_t out_ch, int kernel, int stride, int padding,
                        tg_dtype dt) {
    if (in_ch < 1 || out_ch < 1 || kernel < 1 || stride < 1 || padding < 0)
        return tg__fail("tg_nn_conv2d: needs in_channels, out_channels, kernel, stride >= 1 and "
                        "padding >= 0, got %lld, %lld, %d, %d, %d",
                        (long long)in_ch, (long long)out_ch, kernel, stride, padding);
    if (dt != TG_F32 && dt != TG_F64)
        return tg__fail("tg_nn_conv2d: dtype must be f32 or f64, got %s", tg_dtype_name(dt));
    tg_module *m = tg__module_alloc(TG__MOD_CONV2D, "conv2d", conv2d_forward);
    if (!m) return NULL;
    m->dtype = dt;
    m->in = in_ch;
    m->out = out_ch;
    m->kernel = kernel;
    m->stride = stride;
    m->padding = padding;
    /* PyTorch's nn.Conv2d: both bounds are 1/sqrt(fan_in), fan_in = in_ch * k * k. */
    return weight_and_bias(m, tg_tensor_new(dt, TG_SHAPE(out_ch, in_ch, kernel, kernel)),
                           tg_tensor_new(dt, TG_SHAPE(out_ch)), (double)in_ch * kernel * kernel);
}

static tg_tensor *maxpool2d_forward(tg_module *m, tg_tensor *x) {
    return tg_max_pool2d(x, m->kernel, m->stride, m->padding);
}

static tg_tensor *avgpool2d_forward(tg_module *m, tg_tensor *x) {
    return tg_avg_pool2d(x, m->kernel, m->stride, m->padding);
}

/* The pooling layers check their window when built, with the rules of the ops. */
static tg_module *pool_layer(tg__module_kind kind, const char *op, const char *name,
                             tg__module_forward_fn fwd, int kernel, int stride, int padding) {
    if (kernel < 1 || stride < 1 || padding < 0)
        return tg__fail("%s: needs kernel >= 1, stride >= 1 and padding >= 0, got %d, %d, %d", op,
                        kernel, stride, padding);
    if (padding > kernel / 2)
        return tg__fail("%s: padding %d must be at most half the kernel size %d", op, padding,
                        kernel);
    tg_module *m = tg__module_alloc(kind, name, fwd);
    if (!m) return NULL;
    m->kernel = kernel;
    m->stride = stride;
    m->padding = padding;
    return m;
}

tg_module *tg_nn_maxpool2d(int kernel, int stride, int padding) {
    return pool_layer(TG__MOD_MAXPOOL2D, "tg_nn_maxpool2d", "maxpool2d", maxpool2d_forward, kernel,
                      stride, padding);
}

tg_module *tg_nn_avgpool2d(int kernel, int stride, int padding) {
    return pool_layer(TG__MOD_AVGPOOL2D, "tg_nn_avgpool2d", "avgpool2d", avgpool2d_forward, kernel,
                      stride, padding);
}

/* [N, ...] -> [N, prod(...)]. */
static tg_tensor *flatten_forward(tg_module *m, tg_tensor *x) {
    if (x->ndim < 1)
        return tg__fail("tg_nn_flatten: input %s must have a batch axis (at least 1-D)",
                        tg__shp(x));
    int64_t rest = 1;
    for (int i = 1; i < x->ndim; i++)
        rest *= x->shape[i];
    return tg_reshape(x, 2, (const int64_t[]){x->shape[0], rest});
}

tg_module *tg_nn_flatten(void) {
    return tg__module_alloc(TG__MOD_FLATTEN, "flatten", flatten_forward);
}

/* ---- custom layers ---- */

_Static_assert(TG_LAYER_MAX_STATE == TG__MODULE_MAX_STATE, "custom layers hold a module's state");

static tg_tensor *custom_forward(tg_module *m, tg_tensor *x) {
    tg_clear_error();
    tg_tensor *y = m->custom(x, m->state, m->training, m->custom_ctx);
    if (y) return y;
    char why[200];
    snprintf(why, sizeof why, "%s", tg_error() ? tg_error() : "no message");
    return tg__fail("tg_nn_custom %s: forward failed: %s", m->name, why);
}

static bool check_custom_state(const char *name, int nparams, int nstate, tg_tensor *const *state,
                               const char *const *names) {
    if (nstate < 0 || nstate > TG_LAYER_MAX_STATE || nparams < 0 || nparams > nstate)
        return tg__fail("tg_nn_custom: %s: needs 0 <= nparams <= nstate <= %d, got %d and %d", name,
                        TG_LAYER_MAX_STATE, nparams, nstate),
               false;
    if (nstate > 0 && (!state || !names))
        return tg__fail("tg_nn_custom: %s: state and names are NULL with nstate %d", name, nstate),
               false;
    for (int i = 0; i < nstate; i++) {
        const tg_tensor *t = state[i];
        if (!t) return tg__fail("tg_nn_custom: %s: state %d is NULL", name, i), false;
        if (!t->tg__persistent || t->dtype == TG_I64 || t->dtype != state[0]->dtype)
            return tg__fail("tg_nn_custom: %s: state %d %s %s must be a persistent float tensor "
                            "of the dtype of state 0 (%s)",
                            name, i, tg__shp(t), tg_dtype_name(t->dtype),
                            tg_dtype_name(state[0]->dtype)),
                   false;
        if (!names[i] || !names[i][0])
            return tg__fail("tg_nn_custom: %s: state %d has no name", name, i), false;
        for (int j = 0; j < i; j++)
            if (state[j] == t || strcmp(names[j], names[i]) == 0)
                return tg__fail("tg_nn_custom: %s: state %d repeats state %d (%s)", name, i, j,
                                names[i]),
                       false;
    }
    return true;
}

tg_module *tg_nn_custom(const char *name, tg_layer_fn forward, void *ctx, int nparams, int nstate,
                        tg_tensor *const *state, const char *const *names) {
    if (!name || !forward)
        return tg__fail("tg_nn_custom: name and forward must be set (name %s)",
                        name ? name : "NULL");
    if (!check_custom_state(name, nparams, nstate, state, names)) return NULL;
    tg_module *m = tg__module_alloc(TG__MOD_CUSTOM, name, custom_forward);
    if (!m) return NULL;
    m->custom = forward;
    m->custom_ctx = ctx;
    m->nparams = nparams;
    m->nstate = nstate;
    if (nstate > 0) m->dtype = state[0]->dtype;
    for (int i = 0; i < nstate; i++) {
        m->state[i] = state[i];
        m->state_names[i] = names[i];
        if (i < nparams) tg_requires_grad(state[i], true);
    }
    return m;
}
