/*
 * custom_op.c — extending tapegrad: a user-defined op and a custom layer.
 *
 * 1. A fused kernel as an op of its own (function.h). Root-mean-square normalisation of
 *    each row of x [N, D]:
 *
 *        r_n = sqrt(mean_d x_nd^2 + eps),      y_nd = x_nd / r_n
 *
 *    The forward and the backward are plain loops over the data, one pass each, instead
 *    of the six ops (square, mean, add, sqrt, div, ...) and their intermediates. The
 *    backward is the closed form
 *
 *        dx_nd = (g_nd - y_nd * mean_d(g_nd y_nd)) / r_n,
 *
 *    written with loops, so the op is once_differentiable: first derivatives are
 *    checked with tg_gradcheck; a second-derivative sweep through it is refused with an
 *    error naming it (shown below).
 *
 * 2. A custom layer (tg_nn_custom): RMSNorm with a learnable gain per feature,
 *    y = rmsnorm(x) * gain, built on the op. It goes into a tg_model next to a built-in
 *    Linear layer: tg_model_fit trains its gain, tg_model_predict runs it in eval mode,
 *    tg_model_save / tg_model_load store it. Its forward is gradient-checked (first
 *    and second order: the gain's path is made of ops) w.r.t. both input and gain.
 *
 * Exit status 0 when every check passes, 1 otherwise.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad.h>

#define EPS 1e-6

/* ---- the fused op: F64 rows ---- */

/* Row norms r_n of x [N, D]. */
static void row_rms(const double *x, int64_t n, int64_t d, double *r) {
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++)
            s += x[i * d + j] * x[i * d + j];
        r[i] = sqrt(s / (double)d + EPS);
    }
}

static tg_tensor *rmsnorm_forward(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    const tg_tensor *x = in[0];
    if (x->dtype != TG_F64 || x->ndim != 2) return NULL; /* tg_apply reports it, naming us */
    int64_t n = x->shape[0], d = x->shape[1];
    tg_tensor *y = tg_empty(TG_F64, 2, x->shape);
    tg_tensor *r = tg_empty(TG_F64, 1, x->shape); /* scratch on the tape */
    if (!y || !r) return NULL;
    const double *xd = x->data;
    double *yd = y->data, *rd = r->data;
    row_rms(xd, n, d, rd);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            yd[i * d + j] = xd[i * d + j] / rd[i];
    return y;
}

static int rmsnorm_backward(tg_tensor *const *in, tg_tensor *y, tg_tensor *gy, tg_tensor **gin,
                            void *ctx) {
    (void)ctx;
    const tg_tensor *x = in[0];
    int64_t n = x->shape[0], d = x->shape[1];
    tg_tensor *gx = tg_empty(TG_F64, 2, x->shape), *r = tg_empty(TG_F64, 1, x->shape);
    if (!gx || !r) return -1;
    const double *yd = y->data, *g = gy->data;
    double *out = gx->data, *rd = r->data;
    row_rms(x->data, n, d, rd);
    for (int64_t i = 0; i < n; i++) {
        double m = 0;
        for (int64_t j = 0; j < d; j++)
            m += g[i * d + j] * yd[i * d + j];
        m /= (double)d;
        for (int64_t j = 0; j < d; j++)
            out[i * d + j] = (g[i * d + j] - yd[i * d + j] * m) / rd[i];
    }
    gin[0] = gx;
    return 0;
}

static const tg_function rmsnorm_fn = {"rmsnorm", rmsnorm_forward, rmsnorm_backward, true};

static tg_tensor *rmsnorm(tg_tensor *x) { return tg_apply(&rmsnorm_fn, 1, &x, NULL, 0); }

/* ---- the custom layer ---- */

static tg_tensor *rmsnorm_layer_forward(tg_tensor *x, tg_tensor *const *state, bool training,
                                        void *ctx) {
    (void)training;
    (void)ctx;
    return tg_mul(rmsnorm(x), state[0]);
}

static tg_module *rmsnorm_layer(int64_t features) {
    tg_tensor *gain = tg_tensor_full(TG_F64, TG_SHAPE(features), 1.0);
    tg_module *m =
        tg_nn_custom("rmsnorm", rmsnorm_layer_forward, NULL, 1, 1, &gain, (const char *[]){"gain"});
    if (!m) tg_tensor_free(gain);
    return m;
}

/* ---- checks ---- */

static tg_tensor *f_op(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return rmsnorm(in[0]);
}

/* The layer's forward as a function of (x, gain), for the gradient checks. */
static tg_tensor *f_layer(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return rmsnorm_layer_forward(in[0], in + 1, true, NULL);
}

/* The same normalisation composed of ops: the fused op must agree with it. */
static tg_tensor *f_composed(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *x = in[0];
    tg_tensor *r = tg_sqrt(tg_add_scalar(tg_mean(tg_square(x), 1, true), EPS));
    return tg_div(x, r);
}

static int failures;
static void check(bool ok, const char *what) {
    printf("%-58s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok) {
        failures++;
        if (tg_error()) printf("    %s\n", tg_error());
    }
}

int main(void) {
    tg_seed(7);
    tg_tensor *x = tg_tensor_randn(TG_F64, TG_SHAPE(4, 5));
    tg_tensor *gain = tg_tensor_randn(TG_F64, TG_SHAPE(5));
    tg_requires_grad(x, true);
    tg_requires_grad(gain, true);

    /* 1. the op: values and gradients against the composed version, gradcheck */
    tg_tensor *seed = tg_tensor_randn(TG_F64, TG_SHAPE(4, 5));
    tg_tensor *g[2];
    tg_tensor *y1 = f_op(&x, NULL), *y2 = f_composed(&x, NULL);
    bool same = tg_grad(1, &y1, &seed, 1, &x, &g[0], 0) == 0 &&
                tg_grad(1, &y2, &seed, 1, &x, &g[1], 0) == 0;
    double err = 0;
    for (int64_t i = 0; same && i < x->numel; i++) {
        err = fmax(err, fabs(((double *)y1->data)[i] - ((double *)y2->data)[i]));
        err = fmax(err, fabs(((double *)g[0]->data)[i] - ((double *)g[1]->data)[i]));
    }
    check(same && err < 1e-12, "rmsnorm: values and gradients match the composed ops");
    tg_gradcheck_report rep;
    check(tg_gradcheck(f_op, NULL, 1, &x, NULL, &rep), "rmsnorm: tg_gradcheck");
    printf("    max |analytic - numeric| = %.2e\n", rep.max_abs_err);
    tg_tape_reset();
    /* once_differentiable: a second-order sweep through it is refused, naming it */
    tg_tensor *y = tg_sum(tg_square(rmsnorm(x)), TG_ALL, false);
    bool refused = tg_grad(1, &y, NULL, 1, &x, &g[0], TG_CREATE_GRAPH) != 0 &&
                   strstr(tg_error(), "rmsnorm") != NULL;
    if (refused) printf("    %s\n", tg_error());
    tg_clear_error();
    check(refused, "rmsnorm: second derivatives refused (once_differentiable)");
    printf("    the tape of one call:\n");
    tg_tape_reset();
    y = rmsnorm(x);
    tg_tape_print(stdout);
    tg_tape_reset();

    /* 2. the layer: gradient checks w.r.t. input and gain */
    tg_tensor *in[] = {x, gain};
    check(tg_gradcheck(f_layer, NULL, 2, in, NULL, &rep), "rmsnorm layer: tg_gradcheck (x, gain)");
    tg_requires_grad(x, false); /* second order only along the gain's path of ops */
    check(tg_gradgradcheck(f_layer, NULL, 2, in, NULL, &rep),
          "rmsnorm layer: tg_gradgradcheck (gain)");
    tg_tape_reset();

    /* 3. the layer in a model: y = sum of the normalised features, fitted */
    enum { N = 64, D = 5 };
    double X[N * D], Y[N];
    for (int i = 0; i < N; i++) {
        double s = 0, r = 0;
        for (int j = 0; j < D; j++) {
            X[i * D + j] = sin(1.7 * i + 0.9 * j) * (1 + j);
            r += X[i * D + j] * X[i * D + j];
        }
        r = sqrt(r / D + EPS);
        for (int j = 0; j < D; j++)
            s += (j + 1) * X[i * D + j] / r;
        Y[i] = s;
    }
    tg_tensor *Xt = tg_tensor_from(TG_F64, TG_SHAPE(N, D), X);
    tg_tensor *Yt = tg_tensor_from(TG_F64, TG_SHAPE(N, 1), Y);
    tg_model *m = tg_model_new();
    tg_model_add(m, rmsnorm_layer(D));
    tg_model_add(m, tg_nn_linear(D, 1, TG_F64));
    tg_tensor *params[3];
    check(tg_model_params(m, params, 3) == 3, "model: parameters listed (gain, weight, bias)");
    tg_optim *opt =
        tg_adam(3, params, (tg_adam_opts){.lr = 0.05, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8});
    tg_fit_opts fo = {.batch_size = 16, .epochs = 150, .loss = tg_loss_mse, .optim = opt};
    double loss[150];
    int rc = tg_model_fit(m, Xt, Yt, &fo, loss);
    printf("    loss: epoch 1 %.4f, epoch 150 %.2e\n", loss[0], loss[149]);
    check(rc == 0 && loss[149] < 1e-3 * loss[0], "model: fit");
    tg_tensor *p1 = tg_model_predict(m, Xt);
    const char *path = "custom_op_model.safetensors";
    tg_model *m2 = tg_model_new();
    tg_model_add(m2, rmsnorm_layer(D));
    tg_model_add(m2, tg_nn_linear(D, 1, TG_F64));
    bool io = tg_model_save(m, path) == 0 && tg_model_load(m2, path) == 0;
    remove(path);
    tg_tensor *p2 = io ? tg_model_predict(m2, Xt) : NULL;
    io = io && p1 && p2 && memcmp(p1->data, p2->data, N * sizeof(double)) == 0;
    check(io, "model: saved and loaded, same predictions");

    tg_tensor_free(p1);
    tg_tensor_free(p2);
    tg_optim_free(opt);
    tg_model_free(m);
    tg_model_free(m2);
    tg_tensor_free(Xt);
    tg_tensor_free(Yt);
    tg_tensor_free(seed);
    tg_tensor_free(x);
    tg_tensor_free(gain);
    tg_tape_free();
    printf("%s\n", failures ? "SOME CHECKS FAILED" : "all checks passed");
    return failures ? 1 : 0;
}
