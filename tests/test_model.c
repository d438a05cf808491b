/* test_model.c — the sequential model: add, params, forward, fit, predict, accuracy. */
#include <math.h>
#include <string.h>

#include <tapegrad/data.h>
#include <tapegrad/nn.h>
#include <tapegrad/optim.h>

#include "testutil.h"

/* Linear(2,100) -> ReLU -> Linear(100,3), initialised from tg_seed(seed). */
static tg_model *spiral_model(uint64_t seed) { return tgt_mlp(seed, 2, 100, 3); }

/* The spiral task most tests train on: tg_data_spiral(per_class, 3 classes, seed), the
 * model spiral_model(seed) and Adam with lr 1e-2 over its parameters. */
typedef struct {
    tg_tensor *X, *y;
    tg_model *m;
    tg_optim *opt;
} spiral_task;

static spiral_task spiral_task_new(int per_class, uint64_t seed) {
    spiral_task sp;
    ck_assert_int_eq(tg_data_spiral(per_class, 3, seed, &sp.X, &sp.y), 0);
    sp.m = spiral_model(seed);
    sp.opt = tgt_adam_over(sp.m, 1e-2);
    return sp;
}

/* Frees the optimizer, the model and the data (the tape is the caller's to reset). */
static void spiral_task_free(spiral_task *sp) {
    tg_optim_free(sp->opt);
    tg_model_free(sp->m);
    tg_tensor_free(sp->X);
    tg_tensor_free(sp->y);
}

/* Copies of every parameter, to compare against later. */
static int snapshot(tg_model *m, tg_tensor **out) {
    tg_tensor *ps[8];
    int n = tg_model_params(m, ps, 8);
    for (int i = 0; i < n; i++)
        out[i] = tg_tensor_clone(ps[i]);
    return n;
}

static bool params_equal(tg_model *m, tg_tensor *const *snap) {
    tg_tensor *ps[8];
    int n = tg_model_params(m, ps, 8);
    for (int i = 0; i < n; i++)
        if (memcmp(ps[i]->data, snap[i]->data, (size_t)ps[i]->numel * sizeof(float)) != 0)
            return false;
    return true;
}

static void free_all(tg_tensor **ts, int n) {
    for (int i = 0; i < n; i++)
        tg_tensor_free(ts[i]);
}

START_TEST(fit_spiral) {
    spiral_task sp = spiral_task_new(100, 0);
    double loss[200];
    tg_fit_opts fo = {.batch_size = 20,
                      .epochs = 200,
                      .shuffle = true,
                      .seed = 0,
                      .loss = tg_loss_cross_entropy,
                      .optim = sp.opt};
    ck_assert_int_eq(tg_model_fit(sp.m, sp.X, sp.y, &fo, loss), 0);
    /* 298/300 is the ceiling: the three classes share the point (0, 0). */
    double acc = tg_model_accuracy(sp.m, sp.X, sp.y);
    ck_assert_msg(acc >= 0.99, "training accuracy %g", acc);
    ck_assert_msg(loss[199] < 0.1 * loss[0], "loss %g -> %g", loss[0], loss[199]);
    ck_assert_msg(loss[0] < 1.2, "the first epoch's mean loss %g (ln 3 = 1.0986 at start)",
                  loss[0]);

    /* The same seeds give the same run, bit for bit. */
    tg_model *m2 = spiral_model(0);
    tg_optim *opt2 = tgt_adam_over(m2, 1e-2);
    double loss2[200];
    fo.optim = opt2;
    ck_assert_int_eq(tg_model_fit(m2, sp.X, sp.y, &fo, loss2), 0);
    ck_assert_int_eq(memcmp(loss, loss2, sizeof loss), 0);
    tg_optim_free(opt2);
    tg_model_free(m2);

    tg_tape_reset();
    spiral_task_free(&sp);
}
END_TEST

START_TEST(fit_resumes) {
    spiral_task sp = spiral_task_new(50, 1);
    double first[30], second[30];
    tg_fit_opts fo = {.batch_size = 16,
                      .epochs = 30,
                      .shuffle = true,
                      .seed = 4,
                      .loss = tg_loss_cross_entropy,
                      .optim = sp.opt};
    ck_assert_int_eq(tg_model_fit(sp.m, sp.X, sp.y, &fo, first), 0);
    ck_assert_int_eq(tg_model_fit(sp.m, sp.X, sp.y, &fo, second), 0);
    /* The second call starts where the first ended, not from scratch. */
    ck_assert_msg(second[0] < 0.7 * first[0] && second[0] < 1.5 * first[29],
                  "first call %g -> %g, second starts at %g", first[0], first[29], second[0]);

    /* A fit that cannot move the parameters (SGD with lr 0) leaves them exactly as
     * they were: fit never re-initialises. */
    tg_tensor *snap[4];
    int n = snapshot(sp.m, snap);
    tg_tensor *ps[4];
    tg_model_params(sp.m, ps, 4);
    tg_optim *still = tg_sgd(n, ps, (tg_sgd_opts){.lr = TG_EXACT_ZERO});
    fo.optim = still;
    fo.epochs = 2;
    double l[2];
    ck_assert_int_eq(tg_model_fit(sp.m, sp.X, sp.y, &fo, l), 0);
    ck_assert(params_equal(sp.m, snap));
    ck_assert_close(l[0], l[1], 1e-6); /* the same parameters, the same mean loss */

    tg_tape_reset();
    free_all(snap, n);
    tg_optim_free(still);
    spiral_task_free(&sp);
}
END_TEST

START_TEST(fit_tape_bounded) {
    spiral_task sp = spiral_task_new(40, 2);
    /* Something already on the tape: fit must leave it there. */
    tg_tensor *k = tg_scalar(TG_F32, 2);
    tg_requires_grad(k, true);
    tg_tensor *pre = tg_mul(k, k);
    size_t nodes = tg_tape_size(), used = tg_tape_bytes_used();
    tg_fit_opts fo = {.batch_size = 7,
                      .epochs = 1,
                      .shuffle = true,
                      .seed = 1,
                      .loss = tg_loss_cross_entropy,
                      .optim = sp.opt};
    ck_assert_int_eq(tg_model_fit(sp.m, sp.X, sp.y, &fo, NULL), 0);
    size_t reserved = tg_tape_bytes_reserved();
    for (int e = 0; e < 5; e++) {
        fo.seed = (uint64_t)e;
        ck_assert_int_eq(tg_model_fit(sp.m, sp.X, sp.y, &fo, NULL), 0);
        ck_assert_uint_eq(tg_tape_bytes_reserved(), reserved);
        ck_assert_uint_eq(tg_tape_size(), nodes);
        ck_assert_uint_eq(tg_tape_bytes_used(), used);
    }
    fo.epochs = 25;
    ck_assert_int_eq(tg_model_fit(sp.m, sp.X, sp.y, &fo, NULL), 0);
    ck_assert_uint_eq(tg_tape_bytes_reserved(), reserved);
    /* The earlier tensor is intact and still differentiable. */
    ck_assert_int_eq(tg_backward(pre), 0);
    ck_assert_close(tg_item(k->grad), 4.0, 0.0);

    tg_tape_reset();
    tg_tensor_free(k);
    spiral_task_free(&sp);
}
END_TEST

START_TEST(fit_regression_full_batch) {
    /* y = 3 x - 1 with MSE, batch_size 0 (the whole set), F64, shuffle off. */
    tg_tensor *X = tg_tensor_new(TG_F64, TG_SHAPE(16, 1));
    tg_tensor *y = tg_tensor_new(TG_F64, TG_SHAPE(16, 1));
    for (int i = 0; i < 16; i++) {
        tg_tensor_set(X, i, i / 8.0 - 1);
        tg_tensor_set(y, i, 3 * (i / 8.0 - 1) - 1);
    }
    tg_seed(5);
    tg_model *m = tg_model_new();
    tg_model_add(m, tg_nn_linear(1, 1, TG_F64));
    tg_tensor *ps[2];
    ck_assert_int_eq(tg_model_params(m, ps, 2), 2);
    tg_optim *opt = tg_sgd(2, ps, (tg_sgd_opts){.lr = 0.3, .momentum = 0.5});
    tg_fit_opts fo = {.epochs = 300, .loss = tg_loss_mse, .optim = opt};
    double loss[300];
    ck_assert_int_eq(tg_model_fit(m, X, y, &fo, loss), 0);
    ck_assert_close(tg_tensor_get(ps[0], 0), 3.0, 1e-6);
    ck_assert_close(tg_tensor_get(ps[1], 0), -1.0, 1e-6);
    ck_assert(loss[299] < 1e-10);
    tg_tape_reset();
    tg_optim_free(opt);
    tg_model_free(m);
    tg_tensor_free(X);
    tg_tensor_free(y);
}
END_TEST

static const bool MIXED[4] = {false, true, false, true};

static void set_mixed(tg_module *const *layers) {
    for (int i = 0; i < 4; i++)
        tg_module_train(layers[i], MIXED[i]);
}

static void assert_mixed(tg_module *const *layers) {
    for (int i = 0; i < 4; i++)
        ck_assert_msg(tg_module_is_training(layers[i]) == MIXED[i], "layer %d training flag is %d",
                      i, tg_module_is_training(layers[i]));
}

START_TEST(predict_restores_state) {
    tg_seed(3);
    tg_model *m = tg_model_new();
    tg_module *layers[4] = {tg_nn_linear(2, 8, TG_F64), tg_nn_dropout(0.5),
                            tg_nn_batchnorm1d(8, TG_F64), tg_nn_linear(8, 3, TG_F64)};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(tg_model_add(m, layers[i]), 0);
    /* Mixed flags: predict runs every layer in eval mode, then puts these back. */
    set_mixed(layers);
    tg_tensor *X = tgt_rand(TG_F64, TG_SHAPE(2500, 2), -1, 1); /* several batches */
    tg_tensor *k = tg_scalar(TG_F64, 1);
    tg_requires_grad(k, true);
    tg_tensor *pre = tg_add(k, k);
    size_t nodes = tg_tape_size(), used = tg_tape_bytes_used();

    for (int mode = 0; mode < 2; mode++) {
        tg_set_grad_enabled(mode == 0);
        tg_tensor *p1 = tg_model_predict(m, X);
        ck_assert_ptr_nonnull(p1);
        ck_assert_int_eq(tg_is_grad_enabled(), mode == 0);
        ck_assert_int_eq(p1->ndim, 2);
        ck_assert_int_eq(p1->shape[0], 2500);
        ck_assert_int_eq(p1->shape[1], 3);
        ck_assert(!p1->requires_grad);
        ck_assert_uint_eq(tg_tape_size(), nodes);
        ck_assert_uint_eq(tg_tape_bytes_used(), used);
        /* Eval mode: no dropout, so a second call agrees exactly, and it equals one
         * forward pass over all rows in eval mode. */
        tg_tensor *p2 = tg_model_predict(m, X);
        ck_assert_int_eq(memcmp(p1->data, p2->data, (size_t)p1->numel * sizeof(double)), 0);
        assert_mixed(layers);
        tg_model_train(m, false);
        size_t mk = tg_tape_mark();
        tg_tensor *all = tg_model_forward(m, (tg_tensor *)X);
        ck_assert_ptr_nonnull(all);
        for (int64_t i = 0; i < all->numel; i += 97)
            ck_assert_close(tg_tensor_get(p1, i), tg_tensor_get(all, i), 1e-12);
        tg_tape_rewind(mk);
        set_mixed(layers);
        tg_tensor_free(p1);
        tg_tensor_free(p2);
    }
    tg_set_grad_enabled(true);
    /* The training flags survived: in training mode dropout makes two forwards differ. */
    tg_tensor *xb = tgt_rand(TG_F64, TG_SHAPE(64, 2), -1, 1);
    size_t mk = tg_tape_mark();
    tg_tensor *a = tg_model_forward(m, xb), *b = tg_model_forward(m, xb);
    ck_assert_int_ne(memcmp(a->data, b->data, (size_t)a->numel * sizeof(double)), 0);
    tg_tape_rewind(mk);
    ck_assert_int_eq(tg_backward(pre), 0);
    ck_assert_close(tg_item(k->grad), 2.0, 0.0);

    assert_mixed(layers);
    /* Empty input: an empty result of the right width. */
    tg_tensor *none = tg_tensor_new(TG_F64, TG_SHAPE(0, 2));
    tg_tensor *pn = tg_model_predict(m, none);
    if (pn) { /* layers may or may not accept 0 rows; when they do, shape [0, 3] */
        ck_assert_int_eq(pn->shape[0], 0);
        ck_assert_int_eq(pn->shape[1], 3);
    }
    tg_tape_reset();
    tg_tensor_free(pn);
    tg_tensor_free(none);
    tg_tensor_free(xb);
    tg_tensor_free(X);
    tg_tensor_free(k);
    tg_model_free(m);
}
END_TEST

START_TEST(fit_restores_flags_and_grad_mode) {
    spiral_task sp = spiral_task_new(10, 0);
    tg_model_train(sp.m, false);
    tg_set_grad_enabled(false); /* fit trains anyway, then restores the mode */
    tg_fit_opts fo = {.batch_size = 8,
                      .epochs = 3,
                      .shuffle = true,
                      .loss = tg_loss_cross_entropy,
                      .optim = sp.opt};
    tg_tensor *snap[4];
    int n = snapshot(sp.m, snap);
    ck_assert_int_eq(tg_model_fit(sp.m, sp.X, sp.y, &fo, NULL), 0);
    ck_assert(!tg_is_grad_enabled());
    ck_assert(!params_equal(sp.m, snap));
    tg_set_grad_enabled(true);
    tg_tape_reset();
    free_all(snap, n);
    spiral_task_free(&sp);
}
END_TEST

START_TEST(bad_inputs) {
    spiral_task sp = spiral_task_new(10, 0);
    tg_tensor *X = sp.X, *y = sp.y;
    tg_model *m = sp.m;
    tg_fit_opts good = {
        .batch_size = 8, .epochs = 1, .loss = tg_loss_cross_entropy, .optim = sp.opt};
    tg_fit_opts o;

    ck_assert_int_error(tg_model_fit(NULL, X, y, &good, NULL), "tg_model_fit", "NULL");
    ck_assert_int_error(tg_model_fit(m, NULL, y, &good, NULL), "tg_model_fit", "NULL");
    ck_assert_int_error(tg_model_fit(m, X, y, NULL, NULL), "tg_model_fit", "NULL");
    o = good;
    o.loss = NULL;
    ck_assert_int_error(tg_model_fit(m, X, y, &o, NULL), "tg_model_fit", "loss NULL");
    o = good;
    o.optim = NULL;
    ck_assert_int_error(tg_model_fit(m, X, y, &o, NULL), "tg_model_fit", "optim NULL");
    o = good;
    o.epochs = 0;
    ck_assert_int_error(tg_model_fit(m, X, y, &o, NULL), "tg_model_fit", "epochs must be >= 1");
    o = good;
    o.batch_size = -1;
    ck_assert_int_error(tg_model_fit(m, X, y, &o, NULL), "tg_model_fit", "batch_size", "-1");

    tg_tensor *y_short = tg_tensor_new(TG_I64, TG_SHAPE(29));
    ck_assert_int_error(tg_model_fit(m, X, y_short, &good, NULL), "tg_model_fit",
                        "X has 30 rows but y is [29]");
    tg_tensor *Xi = tg_tensor_new(TG_I64, TG_SHAPE(30, 2));
    ck_assert_int_error(tg_model_fit(m, Xi, y, &good, NULL), "tg_model_fit", "f32 or f64",
                        "i64 [30,2]");
    tg_tensor *X0 = tg_tensor_new(TG_F32, TG_SHAPE(0, 2)), *y0 = tg_tensor_new(TG_I64, TG_SHAPE(0));
    ck_assert_int_error(tg_model_fit(m, X0, y0, &good, NULL), "tg_model_fit", "no rows");
    /* A failing forward (3 features into Linear(2, ...)) reports the layer's error and
     * leaves the tape as it was. */
    tg_tensor *X3 = tg_tensor_new(TG_F32, TG_SHAPE(30, 3));
    size_t nodes = tg_tape_size(), used = tg_tape_bytes_used();
    tg_tensor *snap[4];
    int n = snapshot(m, snap);
    ck_assert_int_error(tg_model_fit(m, X3, y, &good, NULL), "linear");
    ck_assert(params_equal(m, snap));
    ck_assert_uint_eq(tg_tape_size(), nodes);
    ck_assert_uint_eq(tg_tape_bytes_used(), used);
    ck_assert(tg_is_grad_enabled());
    /* Float targets into cross-entropy: the loss's own error comes through. */
    tg_tensor *yf = tg_tensor_new(TG_F32, TG_SHAPE(30));
    tg_clear_error();
    ck_assert_int_eq(tg_model_fit(m, X, yf, &good, NULL), -1);
    ck_assert_ptr_nonnull(tg_error());

    ck_assert_op_error(tg_model_predict(NULL, X), "tg_model_predict", "NULL");
    ck_assert_op_error(tg_model_predict(m, X3), "linear");
    ck_assert_op_error(tg_model_predict(m, Xi), "tg_model_predict", "f32 or f64");

    tg_clear_error();
    ck_assert(isnan(tg_model_accuracy(m, X, y_short)));
    tgt_assert_error_has("accuracy", (const char *[]){"tg_model_accuracy", "[29]"}, 2);
    tg_clear_error();
    ck_assert(isnan(tg_model_accuracy(m, X, yf)));
    tgt_assert_error_has("accuracy", (const char *[]){"tg_model_accuracy", "i64"}, 2);
    tg_clear_error();
    ck_assert(isnan(tg_model_accuracy(m, X0, y0)));
    tgt_assert_error_has("accuracy", (const char *[]){"no rows"}, 1);

    /* add: NULL layer (its constructor's error is kept), NULL model (the layer is freed). */
    tg_clear_error();
    ck_assert_int_eq(tg_model_add(m, tg_nn_linear(0, 3, TG_F32)), -1);
    ck_assert_ptr_nonnull(tg_error());
    ck_assert_int_error(tg_model_add(NULL, tg_nn_relu()), "tg_model_add", "NULL");
    ck_assert_int_error(tg_model_params(NULL, NULL, 0), "tg_model_params");
    ck_assert_int_error(tg_model_params(m, NULL, 3), "tg_model_params", "cap");
    ck_assert_int_eq(tg_model_params(m, NULL, 0), 4);
    tg_tensor *two[2];
    ck_assert_int_eq(tg_model_params(m, two, 2), 4); /* counts all, writes two */
    ck_assert_op_error(tg_model_forward(NULL, X), "tg_model_forward");
    tg_model_train(NULL, true);
    tg_model_free(NULL);

    tg_tape_reset();
    free_all(snap, n);
    tg_tensor *del[] = {y_short, Xi, X0, y0, X3, yf};
    free_all(del, 6);
    spiral_task_free(&sp);
}
END_TEST

/* The model runs a ReLU followed by a max pooling as pooling then ReLU (a quarter of the
 * data through the ReLU). Checked against the two ops in the order the layers give, on
 * data with negatives, zeros, ties, all-negative windows and a NaN: equal values and
 * bitwise equal input gradients, for two pooling geometries (one with padding and
 * overlapping windows). */
START_TEST(relu_then_max_pool_matches_layers) {
    const int geoms[2][3] = {{2, 2, 0}, {3, 2, 1}};
    for (int gi = 0; gi < 2; gi++) {
        const int k = geoms[gi][0], st = geoms[gi][1], pad = geoms[gi][2];
        tg_model *m = tg_model_new();
        ck_assert_int_eq(tg_model_add(m, tg_nn_relu()), 0);
        ck_assert_int_eq(tg_model_add(m, tg_nn_maxpool2d(k, st, pad)), 0);
        tg_tensor *xa = tg_tensor_new(TG_F64, TG_SHAPE(2, 3, 7, 7));
        double *xd = xa->data;
        const double vals[6] = {-2.0, -1.0, 0.0, 0.5, 1.0, 2.0};
        uint64_t r = 12345;
        for (int64_t i = 0; i < xa->numel; i++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            xd[i] = vals[(r >> 33) % 6];
        }
        for (int64_t i = 0; i < 7 * 7; i++) /* one channel with no positive value */
            xd[i] = -1.0 - (double)(i % 3);
        xd[60] = NAN;
        tg_tensor *xb = tg_tensor_clone(xa);
        tg_requires_grad(xa, true);
        tg_requires_grad(xb, true);

        tg_tensor *ya = tg_model_forward(m, xa);
        tg_tensor *yb = tg_max_pool2d(tg_relu(xb), k, st, pad);
        ck_assert_ptr_nonnull(ya);
        ck_assert_ptr_nonnull(yb);
        ck_assert_int_eq(ya->numel, yb->numel);
        tg_tensor *w = tg_tensor_new(TG_F64, 4, ya->shape); /* weights for a scalar loss */
        double *wd = w->data;
        for (int64_t i = 0; i < w->numel; i++)
            wd[i] = 1.0 + (double)(i % 5);
        bool nan_seen = false;
        for (int64_t i = 0; i < ya->numel; i++) {
            double a = ((double *)ya->data)[i], b = ((double *)yb->data)[i];
            nan_seen |= isnan(a);
            ck_assert_msg(a == b || (isnan(a) && isnan(b)), "value %lld: %g against %g",
                          (long long)i, a, b);
        }
        ck_assert(nan_seen);
        ck_assert_int_eq(tg_backward(tg_sum(tg_mul(ya, w), TG_ALL, false)), 0);
        ck_assert_int_eq(tg_backward(tg_sum(tg_mul(yb, w), TG_ALL, false)), 0);
        ck_assert_ptr_nonnull(xa->grad);
        ck_assert_ptr_nonnull(xb->grad);
        ck_assert_mem_eq(xa->grad->data, xb->grad->data, (size_t)xa->numel * sizeof(double));
        bool some = false;
        for (int64_t i = 0; i < xa->numel; i++)
            some |= ((double *)xa->grad->data)[i] != 0.0;
        ck_assert(some);

        /* a 3-D input gets the pooling's error either way */
        tg_tensor *x3 = tg_tensor_new(TG_F64, TG_SHAPE(3, 7, 7));
        ck_assert_op_error(tg_model_forward(m, x3), "max_pool2d", "[3,7,7]");
        tg_tensor_free(x3);
        tg_tensor_free(w);
        tg_tensor_free(xa);
        tg_tensor_free(xb);
        tg_model_free(m);
        tg_tape_reset();
    }
}
END_TEST

/* A conv2d layer, an optional ReLU and a max pooling run in the model as one op
 * (tg__conv2d_max_pool, then the ReLU). Checked against the same layers run one at a
 * time through tg_module_forward (the same initial weights from the same seed): the same
 * output and the same gradients of x, the weight and the bias, bit for bit; or, where
 * the geometry does not fit, the same error. */
typedef struct {
    tg_dtype dt;
    bool relu, frozen_w, x_grad;
    int64_t n, c, o, h, w;
    int kernel, stride, padding; /* the convolution's */
    int pk, ps, pp;              /* the pooling's */
} conv_pool_cfg;

/* The gradients of the loss l with respect to x (when x_grad), the weight p[0] (when
 * w_grad) and the bias p[1] from a sweep that records (TG_CREATE_GRAPH) equal those of a
 * plain sweep bit for bit: the recording backwards do the same arithmetic. */
static void assert_create_graph_same(tg_tensor *l, tg_tensor *x, tg_tensor *const *p, bool x_grad,
                                     bool w_grad) {
    tg_tensor *xs[3], *plain[3], *graph[3];
    int nx = 0;
    if (x_grad) xs[nx++] = x;
    if (w_grad) xs[nx++] = p[0];
    xs[nx++] = p[1];
    ck_assert_int_eq(tg_grad(1, &l, NULL, nx, xs, plain, 0), 0);
    ck_assert_int_eq(tg_grad(1, &l, NULL, nx, xs, graph, TG_CREATE_GRAPH), 0);
    for (int j = 0; j < nx; j++)
        ck_assert_mem_eq(plain[j]->data, graph[j]->data,
                         (size_t)xs[j]->numel * tg_dtype_size(xs[j]->dtype));
}

static void conv_pool_case(const conv_pool_cfg *q) {
    tg_module *ref[3];
    tg_model *m = tg_model_new();
    for (int copy = 0; copy < 2; copy++) {
        tg_seed(77);
        tg_module *layers[3] = {tg_nn_conv2d(q->c, q->o, q->kernel, q->stride, q->padding, q->dt),
                                tg_nn_relu(), tg_nn_maxpool2d(q->pk, q->ps, q->pp)};
        for (int j = 0; j < 3; j++) {
            ck_assert_ptr_nonnull(layers[j]);
            if (copy == 0)
                ref[j] = layers[j];
            else if (j == 1 && !q->relu)
                tg_module_free(layers[j]);
            else
                ck_assert_int_eq(tg_model_add(m, layers[j]), 0);
        }
    }
    size_t es = tg_dtype_size(q->dt);
    tg_tensor *pm[2], *pr[2];
    ck_assert_int_eq(tg_model_params(m, pm, 2), 2);
    ck_assert_int_eq(tg_module_params(ref[0], pr, 2), 2);
    for (int j = 0; j < 2; j++) {
        ck_assert_mem_eq(pm[j]->data, pr[j]->data, (size_t)pm[j]->numel * es);
        if (q->frozen_w && j == 0) {
            tg_requires_grad(pm[j], false);
            tg_requires_grad(pr[j], false);
        }
    }
    tg_tensor *x64 = tgt_rand(TG_F64, TG_SHAPE(q->n, q->c, q->h, q->w), -1, 1);
    tg_tensor *xa = q->dt == TG_F64 ? tg_tensor_clone(x64) : tgt_to_f32(x64);
    tg_tensor *xb = tg_tensor_clone(xa);
    tg_requires_grad(xa, q->x_grad);
    tg_requires_grad(xb, q->x_grad);

    tg_clear_error();
    tg_tensor *ya = tg_model_forward(m, xa);
    char err[512];
    snprintf(err, sizeof err, "%s", tg_error() ? tg_error() : "");
    tg_clear_error();
    tg_tensor *yb = tg_module_forward(ref[0], xb);
    if (yb && q->relu) yb = tg_module_forward(ref[1], yb);
    if (yb) yb = tg_module_forward(ref[2], yb);
    if (!yb) { /* the geometry does not fit: the same error either way */
        ck_assert_ptr_null(ya);
        ck_assert_str_eq(err, tg_error());
    } else {
        ck_assert_msg(ya, "fused forward failed: %s", err);
        ck_assert(tg_same_shape(ya, yb));
        for (int64_t i = 0; i < ya->numel; i++)
            ck_assert_msg(tg_tensor_get(ya, i) == tg_tensor_get(yb, i),
                          "output %lld: %.17g and %.17g", (long long)i, tg_tensor_get(ya, i),
                          tg_tensor_get(yb, i));
        /* no-grad mode (evaluation, predict): the pooling keeps no argmax, same values */
        bool was = tg_set_grad_enabled(false);
        tg_tensor *yn = tg_model_forward(m, xa);
        tg_set_grad_enabled(was);
        ck_assert_ptr_nonnull(yn);
        ck_assert(!yn->requires_grad);
        for (int64_t i = 0; i < ya->numel; i++)
            ck_assert(tg_tensor_get(yn, i) == tg_tensor_get(ya, i));
        tg_tensor *w = tg_tensor_new(q->dt, 4, ya->shape); /* weights for a scalar loss */
        for (int64_t i = 0; i < w->numel; i++)
            tg_tensor_set(w, i, 1.0 + (double)(i % 5) - 2.5);
        tg_tensor *la = tg_sum(tg_mul(ya, w), TG_ALL, false);
        tg_tensor *lb = tg_sum(tg_mul(yb, w), TG_ALL, false);
        assert_create_graph_same(la, xa, pm, q->x_grad, !q->frozen_w);
        assert_create_graph_same(lb, xb, pr, q->x_grad, !q->frozen_w);
        ck_assert_int_eq(tg_backward(la), 0);
        ck_assert_int_eq(tg_backward(lb), 0);
        tg_tensor *ga[3] = {xa->grad, pm[0]->grad, pm[1]->grad};
        tg_tensor *gb[3] = {xb->grad, pr[0]->grad, pr[1]->grad};
        for (int j = 0; j < 3; j++) {
            if ((j == 0 && !q->x_grad) || (j == 1 && q->frozen_w)) {
                ck_assert_ptr_null(ga[j]);
                ck_assert_ptr_null(gb[j]);
                continue;
            }
            ck_assert_msg(ga[j] && gb[j], "gradient %d missing", j);
            ck_assert_mem_eq(ga[j]->data, gb[j]->data, (size_t)ga[j]->numel * es);
        }
        tg_tensor_free(w);
    }
    tg_tensor_free(x64);
    tg_tensor_free(xa);
    tg_tensor_free(xb);
    for (int j = 0; j < 3; j++)
        tg_module_free(ref[j]);
    tg_model_free(m);
    tg_tape_reset();
}

START_TEST(conv_then_max_pool_matches_layers) {
    /* the Fashion-MNIST CNN's two blocks, in both dtypes, with and without the ReLU */
    for (int dti = 0; dti < 2; dti++)
        for (int relu = 0; relu < 2; relu++) {
            tg_dtype dt = dti ? TG_F64 : TG_F32;
            conv_pool_case(
                &(conv_pool_cfg){dt, relu, false, false, 3, 1, 4, 28, 28, 5, 1, 0, 2, 2, 0});
            conv_pool_case(
                &(conv_pool_cfg){dt, relu, false, true, 3, 4, 5, 12, 12, 5, 1, 0, 2, 2, 0});
        }
    /* random geometries: strides, paddings, overlapping and padded windows, frozen
     * weights, and windows that do not fit */
    tgt_seed(81);
    uint64_t r = 99;
    for (int t = 0; t < 300; t++) {
        uint64_t v[16];
        for (int i = 0; i < 16; i++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            v[i] = r >> 33;
        }
        conv_pool_cfg q = {.dt = v[0] % 2 ? TG_F64 : TG_F32,
                           .relu = v[1] % 2,
                           .frozen_w = v[2] % 4 == 0,
                           .x_grad = v[3] % 3 != 0,
                           .n = (int64_t)(v[4] % 3), /* 0 now and then */
                           .c = 1 + (int64_t)(v[5] % 3),
                           .o = 1 + (int64_t)(v[6] % 4),
                           .h = 1 + (int64_t)(v[7] % 9),
                           .w = 1 + (int64_t)(v[8] % 9),
                           .kernel = 1 + (int)(v[9] % 4),
                           .stride = 1 + (int)(v[10] % 2),
                           .padding = (int)(v[11] % 2),
                           .pk = 1 + (int)(v[12] % 3),
                           .ps = 1 + (int)(v[13] % 3),
                           .pp = (int)(v[14] % 2)};
        if (q.pp > q.pk / 2) q.pp = 0; /* the layer refuses it when built */
        conv_pool_case(&q);
    }
}
END_TEST

typedef struct {
    tg_model *m;
    tg_tensor *w;
} model_ctx;

static tg_tensor *f_model_weighted(tg_tensor *const *in, void *vc) {
    model_ctx *c = vc;
    return tg_sum(tg_mul(tg_model_forward(c->m, in[0]), c->w), TG_ALL, false);
}

/* First and second derivatives through the fused convolution and pooling (the second
 * goes through its recording backward) with respect to the input and both parameters;
 * and its errors: the same messages as the layers run one at a time. */
START_TEST(conv_then_max_pool_gradcheck_and_errors) {
    tg_seed(79);
    tg_model *m = tg_model_new();
    ck_assert_int_eq(tg_model_add(m, tg_nn_conv2d(2, 2, 3, 1, 1, TG_F64)), 0);
    ck_assert_int_eq(tg_model_add(m, tg_nn_relu()), 0);
    ck_assert_int_eq(tg_model_add(m, tg_nn_maxpool2d(3, 2, 1)), 0);
    tg_tensor *p[2];
    ck_assert_int_eq(tg_model_params(m, p, 2), 2);
    tgt_seed(80);
    tg_tensor *x = tgt_rand(TG_F64, TG_SHAPE(2, 2, 5, 4), -1, 1);
    tg_requires_grad(x, true);
    model_ctx c = {m, tgt_rand(TG_F64, TG_SHAPE(2, 2, 3, 2), -1, 1)};
    tgt_assert_grads(f_model_weighted, &c, 3, (tg_tensor *[]){x, p[0], p[1]}, NULL,
                     "conv2d, relu, max pool in the model");

    /* errors: the pooling's window against the convolution's output */
    tg_model *bad = tg_model_new();
    ck_assert_int_eq(tg_model_add(bad, tg_nn_conv2d(2, 2, 3, 1, 0, TG_F64)), 0);
    ck_assert_int_eq(tg_model_add(bad, tg_nn_maxpool2d(4, 1, 0)), 0);
    ck_assert_op_error(tg_model_forward(bad, x), "tg_max_pool2d", "kernel 4x4 is larger",
                       "[2,2,3,2]");
    tg_tensor *xs = tgt_rand(TG_F64, TG_SHAPE(1, 2, 2, 2), -1, 1); /* smaller than the kernel */
    ck_assert_op_error(tg_model_forward(bad, xs), "tg_conv2d", "kernel 3x3 is larger", "[1,2,2,2]");
    tg_tensor *xc = tgt_rand(TG_F64, TG_SHAPE(1, 3, 5, 5), -1, 1); /* wrong channels */
    ck_assert_op_error(tg_model_forward(bad, xc), "tg_nn_conv2d", "[1,3,5,5]");
    tg_tensor *xf = tgt_to_f32(x); /* wrong dtype */
    ck_assert_op_error(tg_model_forward(bad, xf), "tg_nn_conv2d", "f32", "f64");
    tg_tensor_free(xs);
    tg_tensor_free(xc);
    tg_tensor_free(xf);
    tg_model_free(bad);
    tg_tensor_free(c.w);
    tg_tensor_free(x);
    tg_model_free(m);
    tg_tape_reset();
}
END_TEST

START_TEST(verbose_runs) {
    /* verbose 1 and 2 print progress lines; the run itself is unchanged. */
    spiral_task sp = spiral_task_new(4, 0);
    tg_fit_opts fo = {
        .batch_size = 5, .epochs = 2, .loss = tg_loss_cross_entropy, .optim = sp.opt, .verbose = 2};
    double l[2];
    ck_assert_int_eq(tg_model_fit(sp.m, sp.X, sp.y, &fo, l), 0);
    ck_assert(isfinite(l[0]) && isfinite(l[1]));
    tg_tape_reset();
    spiral_task_free(&sp);
}
END_TEST

static Suite *model_suite(void) {
    Suite *s = suite_create("model");
    TCase *t = tcase_create("fit");
    tcase_add_test(t, fit_spiral);
    tcase_add_test(t, fit_resumes);
    tcase_add_test(t, fit_tape_bounded);
    tcase_add_test(t, fit_regression_full_batch);
    tcase_add_test(t, fit_restores_flags_and_grad_mode);
    tcase_add_test(t, verbose_runs);
    suite_add_tcase(s, t);
    t = tcase_create("predict");
    tcase_add_test(t, predict_restores_state);
    tcase_add_test(t, relu_then_max_pool_matches_layers);
    tcase_add_test(t, conv_then_max_pool_matches_layers);
    tcase_add_test(t, conv_then_max_pool_gradcheck_and_errors);
    suite_add_tcase(s, t);
    t = tcase_create("errors");
    tcase_add_test(t, bad_inputs);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tgt_run(model_suite()); }
