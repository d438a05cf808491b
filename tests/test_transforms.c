/* test_transforms.c — the extension API and the functional transforms: user-defined
 * ops (function.h), custom layers, tg_jvp / tg_jacobian / tg_hessian, gradient hooks,
 * anomaly mode and tg_checkpoint, against PyTorch references (tests/ref/
 * gen_transforms_ref.py) and against tapegrad's own plain sweeps. */
#include <stdint.h>
#include <string.h>

#include "ref/transforms_ref.h"
#include "testutil.h"

static tg_tensor *from(const double *v, int ndim, const int64_t *shape) {
    return tg_tensor_from(TG_F64, ndim, shape, v);
}

static void assert_tensors_equal(const tg_tensor *a, const tg_tensor *b, double tol) {
    ck_assert(a && b);
    ck_assert_int_eq(a->numel, b->numel);
    for (int64_t i = 0; i < a->numel; i++) {
        double x = ((const double *)a->data)[i], y = ((const double *)b->data)[i];
        ck_assert_msg(fabs(x - y) <= tol, "element %lld: %.17g vs %.17g", (long long)i, x, y);
    }
}

/* ---------------- user-defined ops ---------------- */

/* cube: y = x^3 with a backward written with ops (differentiable again). */
static tg_tensor *cube_forward(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_mul(in[0], tg_square(in[0]));
}
static int cube_backward(tg_tensor *const *in, tg_tensor *y, tg_tensor *gy, tg_tensor **gin,
                         void *ctx) {
    (void)y;
    (void)ctx;
    gin[0] = tg_mul(gy, tg_mul_scalar(tg_square(in[0]), 3.0));
    return gin[0] ? 0 : -1;
}
static const tg_function cube = {"cube", cube_forward, cube_backward, false};

/* softplus as a fused kernel: forward and backward in plain loops (once differentiable). */
static tg_tensor *softplus_forward(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    const tg_tensor *x = in[0];
    tg_tensor *y = tg_empty(x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    const double *xd = x->data;
    double *yd = y->data;
    for (int64_t i = 0; i < x->numel; i++)
        yd[i] = xd[i] > 0 ? xd[i] + log1p(exp(-xd[i])) : log1p(exp(xd[i]));
    return y;
}
static int softplus_backward(tg_tensor *const *in, tg_tensor *y, tg_tensor *gy, tg_tensor **gin,
                             void *ctx) {
    (void)y;
    (void)ctx;
    const tg_tensor *x = in[0];
    tg_tensor *g = tg_empty(x->dtype, x->ndim, x->shape);
    if (!g) return -1;
    const double *xd = x->data, *gd = gy->data;
    double *out = g->data;
    for (int64_t i = 0; i < x->numel; i++)
        out[i] = gd[i] / (1.0 + exp(-xd[i]));
    gin[0] = g;
    return 0;
}
static const tg_function fused_softplus = {"fused_softplus", softplus_forward, softplus_backward,
                                           true};

static tg_tensor *f_cube(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_apply(&cube, 1, in, NULL, 0);
}
static tg_tensor *f_softplus(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_apply(&fused_softplus, 1, in, NULL, 0);
}

START_TEST(test_user_op_gradchecks) {
    const int64_t shapes[3][3] = {{5, 1, 1}, {2, 3, 1}, {2, 2, 3}};
    const int nds[3] = {1, 2, 3};
    for (int s = 0; s < 3; s++) {
        tgt_seed((uint64_t)s + 1);
        tg_tensor *x = tgt_rand(TG_F64, nds[s], shapes[s], -2, 2);
        tg_requires_grad(x, true);
        tgt_assert_grads(f_cube, NULL, 1, &x, NULL, "cube");
        tgt_assert_gradcheck(f_softplus, NULL, 1, &x, NULL, "fused_softplus");
        /* once_differentiable: gradgradcheck fails, naming the function */
        tg_gradcheck_report rep;
        ck_assert(!tg_gradgradcheck(f_softplus, NULL, 1, &x, NULL, &rep));
        ck_assert_msg(strstr(rep.message, "fused_softplus") &&
                          strstr(rep.message, "once_differentiable"),
                      "%s", rep.message);
        tgt_assert_f32_agrees(f_cube, NULL, 1, &x, "cube f32");
        tg_tape_reset();
        tg_tensor_free(x);
    }
}
END_TEST

START_TEST(test_user_op_against_torch) {
    tg_tensor *x = from(tr_sp_x, TG_SHAPE(2, 5)), *gy = from(tr_sp_gy, TG_SHAPE(2, 5));
    tg_requires_grad(x, true);
    tg_tensor *y = tg_apply(&fused_softplus, 1, &x, NULL, 0);
    tgt_assert_tensor(y, tr_sp_y, 1e-12);
    ck_assert_int_eq(tg_backward_seeded(y, gy), 0);
    tgt_assert_tensor(x->grad, tr_sp_grad, 1e-12);
    /* A create-graph sweep through it fails, naming it; nothing else changes. */
    tg_tensor *g;
    ck_assert_int_error(tg_grad(1, &y, &gy, 1, &x, &g, TG_CREATE_GRAPH), "tg_grad",
                        "fused_softplus", "once_differentiable");
    ck_assert_int_eq(tg_grad(1, &y, &gy, 1, &x, &g, 0), 0);
    tgt_assert_tensor(g, tr_sp_grad, 1e-12);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(gy);
}
END_TEST

/* Reads what was written to the temporary file f into buf (NUL-terminated); closes f. */
static void read_back(FILE *f, char *buf, size_t cap) {
    ck_assert_ptr_nonnull(f);
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

START_TEST(test_user_op_tape_print_and_dot) {
    tg_tensor *x = tg_tensor_full(TG_F64, TG_SHAPE(3), 2.0);
    tg_requires_grad(x, true);
    tg_tensor *y = tg_apply(&cube, 1, &x, NULL, 0);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_tape_size(), 1); /* the forward's own ops are not recorded */
    char buf[1024];
    FILE *f = tmpfile();
    tg_tape_print(f);
    read_back(f, buf, sizeof buf);
    ck_assert_msg(strstr(buf, "= cube(") != NULL, "%s", buf);
    f = tmpfile();
    ck_assert_int_eq(tg_tape_dot(f), 0);
    read_back(f, buf, sizeof buf);
    ck_assert_msg(strstr(buf, " = cube\\n") != NULL, "%s", buf);
    for (int64_t i = 0; i < 3; i++)
        ck_assert_close(((double *)y->data)[i], 8.0, 0);
    /* No recording when no input requires a gradient, or in no-grad mode. */
    tg_tape_reset();
    tg_requires_grad(x, false);
    ck_assert_ptr_nonnull(tg_apply(&cube, 1, &x, NULL, 0));
    ck_assert_int_eq(tg_tape_size(), 0);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* y = a * x with a in ctx; the forward and backward check that they get the same,
 * 64-byte aligned copy. */
typedef struct {
    double a;
    const void *seen;
} scale_ctx;
static tg_tensor *scale_forward(tg_tensor *const *in, void *ctx) {
    scale_ctx *c = ctx;
    c->seen = ctx;
    return tg_mul_scalar(in[0], c->a);
}
static int scale_backward(tg_tensor *const *in, tg_tensor *y, tg_tensor *gy, tg_tensor **gin,
                          void *ctx) {
    (void)in;
    (void)y;
    const scale_ctx *c = ctx;
    if (c->seen != ctx) return -1;
    gin[0] = tg_mul_scalar(gy, c->a);
    return gin[0] ? 0 : -1;
}
static const tg_function scale_fn = {"scale", scale_forward, scale_backward, false};

START_TEST(test_user_op_ctx) {
    tg_tensor *x = tg_tensor_full(TG_F64, TG_SHAPE(2), 1.0);
    tg_requires_grad(x, true);
    scale_ctx c = {3.0, NULL};
    tg_tensor *y = tg_apply(&scale_fn, 1, &x, &c, sizeof c); /* copied */
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_ne(c.seen, &c);
    ck_assert_uint_eq((uintptr_t)c.seen % 64, 0);
    c.a = 100.0; /* the copy on the tape is what backward reads */
    ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
    ck_assert_close(((double *)x->grad->data)[0], 3.0, 0);
    tg_tape_reset();
    tg_zero_grad(x);
    scale_ctx k = {2.0, NULL};
    y = tg_apply(&scale_fn, 1, &x, &k, 0); /* kept by pointer */
    ck_assert_ptr_eq(k.seen, &k);
    k.a = 5.0;
    ck_assert_int_eq(tg_backward(tg_sum(y, TG_ALL, false)), 0);
    ck_assert_close(((double *)x->grad->data)[0], 5.0, 0);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

static tg_tensor *bad_forward_input(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return in[0];
}
static tg_tensor *bad_forward_persistent(tg_tensor *const *in, void *ctx) {
    (void)in;
    return ctx;
}
static tg_tensor *bad_forward_fails(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_reshape(in[0], TG_SHAPE(7));
}
static int bad_backward_fails(tg_tensor *const *in, tg_tensor *y, tg_tensor *gy, tg_tensor **gin,
                              void *ctx) {
    (void)y;
    (void)ctx;
    (void)gy;
    gin[0] = tg_reshape(in[0], TG_SHAPE(7));
    return gin[0] ? 0 : -1;
}
static int bad_backward_shape(tg_tensor *const *in, tg_tensor *y, tg_tensor *gy, tg_tensor **gin,
                              void *ctx) {
    (void)y;
    (void)ctx;
    (void)in;
    gin[0] = tg_sum(gy, TG_ALL, false);
    return gin[0] ? 0 : -1;
}

START_TEST(test_user_op_errors) {
    tg_tensor *x = tg_tensor_full(TG_F64, TG_SHAPE(3), 1.0), *p = tg_scalar(TG_F64, 1.0);
    tg_requires_grad(x, true);
    ck_assert_op_error(tg_apply(NULL, 1, &x, NULL, 0), "tg_apply", "NULL");
    tg_function nofwd = {"nofwd", NULL, cube_backward, false};
    ck_assert_op_error(tg_apply(&nofwd, 1, &x, NULL, 0), "tg_apply", "nofwd");
    ck_assert_op_error(tg_apply(&cube, -1, &x, NULL, 0), "tg_apply", "cube");
    ck_assert_op_error(tg_apply(&cube, 1, NULL, NULL, 0), "tg_apply", "cube");
    ck_assert_op_error(tg_apply(&cube, 1, &x, NULL, 16), "tg_apply", "cube", "ctx is NULL");
    /* A ctx_size no memory holds is refused as out of memory before anything is copied
     * (the tape's rounding of the size must not wrap it into a small block). */
    double c1 = 1;
    ck_assert_op_error(tg_apply(&cube, 1, &x, &c1, ((size_t)1 << 63) + 1), "out of memory");
    ck_assert_op_error(tg_apply(&cube, 1, &x, &c1, SIZE_MAX), "out of memory");
    /* A NULL input keeps the earlier message. */
    tg_clear_error();
    ck_assert_ptr_null(tg_log(NULL));
    tg_tensor *none[] = {NULL};
    ck_assert_ptr_null(tg_reshape(x, TG_SHAPE(7)));
    const char *first = tg_error();
    ck_assert_ptr_nonnull(first);
    char saved[256];
    snprintf(saved, sizeof saved, "%s", first);
    ck_assert_ptr_null(tg_apply(&cube, 1, none, NULL, 0));
    ck_assert_str_eq(tg_error(), saved);
    tg_function f1 = {"ident", bad_forward_input, cube_backward, false};
    ck_assert_op_error(tg_apply(&f1, 1, &x, NULL, 0), "tg_apply", "ident", "an input");
    tg_function f2 = {"keeper", bad_forward_persistent, cube_backward, false};
    ck_assert_op_error(tg_apply(&f2, 1, &x, p, 0), "tg_apply", "keeper", "persistent");
    tg_function f3 = {"broken", bad_forward_fails, cube_backward, false};
    ck_assert_op_error(tg_apply(&f3, 1, &x, NULL, 0), "tg_apply", "broken", "forward failed",
                       "tg_reshape");
    tg_function f4 = {"badgrad", cube_forward, bad_backward_fails, false};
    tg_tensor *y = tg_apply(&f4, 1, &x, NULL, 0);
    ck_assert_int_error(tg_backward(tg_sum(y, TG_ALL, false)), "tg_backward", "badgrad",
                        "backward failed", "tg_reshape");
    ck_assert_ptr_null(x->grad);
    tg_function f5 = {"badshape", cube_forward, bad_backward_shape, false};
    y = tg_apply(&f5, 1, &x, NULL, 0);
    ck_assert_int_error(tg_backward(tg_sum(y, TG_ALL, false)), "tg_backward", "badshape", "[3]");
    ck_assert_ptr_null(x->grad);
    /* tg_empty */
    ck_assert_op_error(tg_empty(TG_F64, -1, NULL), "tg_empty", "ndim");
    ck_assert_op_error(tg_empty(TG_F64, 2, NULL), "tg_empty", "NULL");
    ck_assert_op_error(tg_empty((tg_dtype)9, 0, NULL), "tg_empty", "dtype");
    ck_assert_op_error(tg_empty(TG_F32, TG_SHAPE(2, -3)), "tg_empty", "[2,-3]");
    ck_assert_op_error(tg_empty(TG_F32, TG_SHAPE(INT64_MAX / 2, 4)), "tg_empty", "too large");
    tg_tensor *e = tg_empty(TG_I64, TG_SHAPE(2, 3));
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->numel, 6);
    ck_assert_uint_eq((uintptr_t)e->data % 64, 0);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(p);
}
END_TEST

START_TEST(test_user_op_checked_mode) {
    bool prev = tg_set_checked_mode(true);
    tg_tensor *x = tg_tensor_full(TG_F64, TG_SHAPE(3), 1.0);
    tg_requires_grad(x, true);
    tg_tensor *t = tg_exp(x);
    tg_tape_reset();
    ck_assert_op_error(tg_apply(&cube, 1, &t, NULL, 0), "tg_apply", "tg_tape_reset");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_set_checked_mode(prev);
}
END_TEST

/* ---------------- custom layers ---------------- */

/* y = x * scale + shift per feature; counts the calls in training mode. */
static int affine_train_calls;
static tg_tensor *affine_forward(tg_tensor *x, tg_tensor *const *st, bool training, void *ctx) {
    (void)ctx;
    if (training) affine_train_calls++;
    return tg_add(tg_mul(x, st[0]), st[1]);
}

static tg_module *affine_layer(int64_t features) {
    tg_tensor *st[] = {tg_tensor_full(TG_F64, TG_SHAPE(features), 1.0),
                       tg_tensor_new(TG_F64, TG_SHAPE(features))};
    return tg_nn_custom("affine", affine_forward, NULL, 2, 2, st,
                        (const char *const[]){"scale", "shift"});
}

static tg_tensor *f_layer(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    /* the layer's parameters as inputs: run with in[1], in[2] as its state */
    return affine_forward(in[0], in + 1, true, NULL);
}

START_TEST(test_custom_layer_in_model) {
    tg_model *m = tg_model_new();
    ck_assert_int_eq(tg_model_add(m, affine_layer(2)), 0);
    ck_assert_int_eq(tg_model_add(m, tg_nn_linear(2, 1, TG_F64)), 0);
    tg_tensor *params[8];
    ck_assert_int_eq(tg_model_params(m, params, 8), 4);
    /* y = 3 x0 - 2 x1 + 1 */
    double X[40], Y[20];
    for (int i = 0; i < 20; i++) {
        X[2 * i] = sin(0.3 * i);
        X[2 * i + 1] = cos(0.7 * i);
        Y[i] = 3 * X[2 * i] - 2 * X[2 * i + 1] + 1;
    }
    tg_tensor *x = from(X, TG_SHAPE(20, 2)), *y = from(Y, TG_SHAPE(20, 1));
    tg_optim *opt = tg_adam(4, params, (tg_adam_opts){.lr = 0.05, .beta1 = 0.9, .beta2 = 0.999});
    tg_fit_opts fo = {.batch_size = 5, .epochs = 60, .loss = tg_loss_mse, .optim = opt};
    double loss[60];
    affine_train_calls = 0;
    ck_assert_int_eq(tg_model_fit(m, x, y, &fo, loss), 0);
    ck_assert_int_ge(affine_train_calls, 60 * 4);
    ck_assert_msg(loss[59] < 1e-2 * loss[0], "loss %g -> %g", loss[0], loss[59]);
    affine_train_calls = 0;
    tg_tensor *pred = tg_model_predict(m, x); /* eval mode */
    ck_assert_int_eq(affine_train_calls, 0);
    ck_assert_ptr_nonnull(pred);
    /* save / load into a fresh model of the same architecture */
    const char *path = "custom_layer_model.safetensors";
    ck_assert_int_eq(tg_model_save(m, path), 0);
    tg_model *m2 = tg_model_new();
    tg_model_add(m2, affine_layer(2));
    tg_model_add(m2, tg_nn_linear(2, 1, TG_F64));
    ck_assert_int_eq(tg_model_load(m2, path), 0);
    tg_tensor *pred2 = tg_model_predict(m2, x);
    assert_tensors_equal(pred, pred2, 0);
    remove(path);
    /* gradient check of the layer's forward w.r.t. input and parameters */
    tgt_seed(3);
    tg_tensor *in[] = {tgt_rand(TG_F64, TG_SHAPE(3, 2), -1, 1),
                       tgt_rand(TG_F64, TG_SHAPE(2), -1, 1), tgt_rand(TG_F64, TG_SHAPE(2), -1, 1)};
    for (int i = 0; i < 3; i++)
        tg_requires_grad(in[i], true);
    tgt_assert_grads(f_layer, NULL, 3, in, NULL, "custom layer");
    for (int i = 0; i < 3; i++)
        tg_tensor_free(in[i]);
    tg_tensor_free(pred);
    tg_tensor_free(pred2);
    tg_optim_free(opt);
    tg_model_free(m);
    tg_model_free(m2);
    tg_tensor_free(x);
    tg_tensor_free(y);
    tg_tape_reset();
}
END_TEST

START_TEST(test_custom_layer_errors) {
    tg_tensor *a = tg_tensor_new(TG_F64, TG_SHAPE(2)), *b = tg_tensor_new(TG_F32, TG_SHAPE(2));
    const char *names[] = {"a", "b"};
    ck_assert_op_error(tg_nn_custom(NULL, affine_forward, NULL, 0, 0, NULL, NULL), "tg_nn_custom");
    ck_assert_op_error(tg_nn_custom("c", NULL, NULL, 0, 0, NULL, NULL), "tg_nn_custom");
    ck_assert_op_error(tg_nn_custom("c", affine_forward, NULL, 3, 2, (tg_tensor *[]){a, b}, names),
                       "tg_nn_custom", "nparams");
    ck_assert_op_error(tg_nn_custom("c", affine_forward, NULL, 1, 5, (tg_tensor *[]){a, b}, names),
                       "tg_nn_custom", "nstate");
    ck_assert_op_error(tg_nn_custom("c", affine_forward, NULL, 1, 2, (tg_tensor *[]){a, b}, names),
                       "tg_nn_custom", "state 1", "f32");
    ck_assert_op_error(tg_nn_custom("c", affine_forward, NULL, 1, 2, (tg_tensor *[]){a, a}, names),
                       "tg_nn_custom", "repeats");
    ck_assert_op_error(
        tg_nn_custom("c", affine_forward, NULL, 1, 1, (tg_tensor *[]){a}, (const char *[]){""}),
        "tg_nn_custom", "no name");
    /* The caller still owns the tensors after a failure; the module after success. */
    tg_module *m = tg_nn_custom("affine", affine_forward, NULL, 1, 1, (tg_tensor *[]){a}, names);
    ck_assert_ptr_nonnull(m);
    ck_assert(a->requires_grad);
    ck_assert_str_eq(tg_module_kind(m), "affine");
    tg_tensor *x32 = tg_tensor_new(TG_F32, TG_SHAPE(3, 2));
    ck_assert_op_error(tg_module_forward(m, x32), "tg_nn_custom affine", "f32");
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(3, 5));
    ck_assert_op_error(tg_module_forward(m, x), "tg_nn_custom affine", "forward failed");
    tg_module_free(m);
    tg_tensor_free(b);
    tg_tensor_free(x);
    tg_tensor_free(x32);
    tg_tape_reset();
}
END_TEST

/* ---------------- jvp, jacobian, hessian ---------------- */

static tg_tensor *f_fails(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_matmul(in[0], in[0]);
}

static tg_tensor *fa(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_mul(tg_tanh(tg_matmul(in[0], in[1])), tg_sigmoid(tg_sum(in[0], 1, true)));
}

static tg_tensor *fh(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *x = in[0];
    tg_tensor *s = tg_sum(tg_mul(tg_sin(x), tg_square(x)), TG_ALL, false);
    tg_tensor *q = tg_mul_scalar(tg_square(tg_sum(x, TG_ALL, false)), 0.1);
    return tg_add(tg_add(s, q), tg_logsumexp(x, 0, false));
}

static tg_tensor *fw(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_sum(tg_square(tg_tanh(tg_matmul(in[0], in[1]))), TG_ALL, false);
}

START_TEST(test_jvp_against_torch) {
    tg_tensor *x = from(tr_x, TG_SHAPE(2, 3)), *w = from(tr_w, TG_SHAPE(3, 2));
    tg_tensor *vx = from(tr_vx, TG_SHAPE(2, 3)), *vw = from(tr_vw, TG_SHAPE(3, 2));
    tg_tensor *in[] = {x, w}, *v[] = {vx, vw}, *vxo[] = {vx, NULL};
    tg_tensor *y, *jv;
    ck_assert_int_eq(tg_jvp(fa, NULL, 2, in, v, &y, &jv), 0);
    tgt_assert_tensor(y, tr_fa, 1e-12);
    tgt_assert_tensor(jv, tr_fa_jvp, 1e-12);
    ck_assert(!y->requires_grad && !jv->requires_grad);
    ck_assert_int_eq(tg_jvp(fa, NULL, 2, in, vxo, NULL, &jv), 0);
    tgt_assert_tensor(jv, tr_fa_jvp_x_only, 1e-12);
    ck_assert_int_eq(tg_jvp(fa, NULL, 2, in, NULL, &y, &jv), 0); /* zero tangent */
    for (int i = 0; i < 4; i++)
        ck_assert_close(((double *)jv->data)[i], 0, 0);
    /* J v also equals the Jacobian applied to v */
    tg_tensor *J = tg_jacobian(fa, NULL, 2, in, 0);
    ck_assert_int_eq(tg_jvp(fa, NULL, 2, in, vxo, NULL, &jv), 0);
    for (int r = 0; r < 4; r++) {
        double s = 0;
        for (int c = 0; c < 6; c++)
            s += ((double *)J->data)[r * 6 + c] * tr_vx[c];
        ck_assert_close(((double *)jv->data)[r], s, 1e-12);
    }
    ck_assert_ptr_null(x->grad); /* the caller's tensors are untouched */
    ck_assert(!x->requires_grad);
    /* errors */
    ck_assert_int_error(tg_jvp(NULL, NULL, 2, in, v, &y, &jv), "tg_jvp");
    ck_assert_int_error(tg_jvp(fa, NULL, 2, in, (tg_tensor *[]){vw, NULL}, &y, &jv), "tg_jvp",
                        "tangent 0");
    ck_assert_int_error(tg_jvp(f_fails, NULL, 2, in, v, &y, &jv), "tg_jvp", "f failed",
                        "tg_matmul");
    ck_assert_ptr_null(jv);
    tg_tensor *soft[] = {x};
    ck_assert_int_error(tg_jvp(f_softplus, NULL, 1, soft, soft, &y, &jv), "tg_jvp",
                        "fused_softplus");
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(w);
    tg_tensor_free(vx);
    tg_tensor_free(vw);
}
END_TEST

START_TEST(test_jacobian_against_torch) {
    tg_tensor *x = from(tr_x, TG_SHAPE(2, 3)), *w = from(tr_w, TG_SHAPE(3, 2));
    tg_tensor *in[] = {x, w};
    tg_tensor *Jx = tg_jacobian(fa, NULL, 2, in, 0), *Jw = tg_jacobian(fa, NULL, 2, in, 1);
    tgt_assert_shape(Jx, TG_SHAPE(2, 2, 2, 3));
    tgt_assert_shape(Jw, TG_SHAPE(2, 2, 3, 2));
    tgt_assert_tensor(Jx, tr_fa_jac_x, 1e-12);
    tgt_assert_tensor(Jw, tr_fa_jac_w, 1e-12);
    /* user ops too, including once_differentiable ones */
    tg_tensor *s = from(tr_sp_x, TG_SHAPE(10));
    tg_tensor *Js = tg_jacobian(f_softplus, NULL, 1, &s, 0);
    for (int i = 0; i < 10; i++)
        for (int j = 0; j < 10; j++)
            ck_assert_close(((double *)Js->data)[i * 10 + j],
                            i == j ? 1 / (1 + exp(-tr_sp_x[i])) : 0, 1e-14);
    ck_assert_op_error(tg_jacobian(fa, NULL, 2, in, 2), "tg_jacobian", "wrt 2");
    ck_assert_op_error(tg_jacobian(fa, NULL, 0, in, 0), "tg_jacobian");
    tg_tensor *big = tg_tensor_new(TG_F64, TG_SHAPE(1, 1, 1, 1, 1));
    ck_assert_op_error(tg_jacobian(f_cube, NULL, 1, &big, 0), "tg_jacobian", "dimensions");
    tg_tape_reset();
    tg_tensor_free(big);
    tg_tensor_free(s);
    tg_tensor_free(x);
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_hessian_against_torch) {
    tg_tensor *x = from(tr_xh, TG_SHAPE(4));
    tg_tensor *H = tg_hessian(fh, NULL, 1, &x, 0);
    tgt_assert_shape(H, TG_SHAPE(4, 4));
    tgt_assert_tensor(H, tr_fh_hess, 1e-11);
    tg_tensor *W = from(tr_W, TG_SHAPE(2, 3)), *c = from(tr_c, TG_SHAPE(3, 1));
    tg_tensor *in[] = {W, c};
    tg_tensor *HW = tg_hessian(fw, NULL, 2, in, 0);
    tgt_assert_shape(HW, TG_SHAPE(2, 3, 2, 3));
    tgt_assert_tensor(HW, tr_fw_hess, 1e-11);
    ck_assert_op_error(tg_hessian(fa, NULL, 2, (tg_tensor *[]){W, c}, 1), "tg_hessian");
    ck_assert_op_error(tg_hessian(f_cube, NULL, 1, &x, 0), "tg_hessian", "one element", "[4]");
    tg_tensor *s = from(tr_xh, TG_SHAPE(4));
    ck_assert_op_error(tg_hessian(fh, NULL, 1, &s, -1), "tg_hessian", "wrt -1");
    tg_tape_reset();
    tg_tensor_free(s);
    tg_tensor_free(x);
    tg_tensor_free(W);
    tg_tensor_free(c);
}
END_TEST

static tg_tensor *f_sum_cube(tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_sum(tg_apply(&cube, 1, in, NULL, 0), TG_ALL, false);
}

START_TEST(test_hessian_of_user_op) {
    tg_tensor *x = from(tr_xh, TG_SHAPE(4));
    tg_tensor *H = tg_hessian(f_sum_cube, NULL, 1, &x, 0);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            ck_assert_close(((double *)H->data)[i * 4 + j], i == j ? 6 * tr_xh[i] : 0, 1e-12);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* ---------------- hooks ---------------- */

static tg_tensor *hook_double(tg_tensor *g, void *ctx) {
    (void)ctx;
    return tg_mul_scalar(g, 2.0);
}
static tg_tensor *hook_add1(tg_tensor *g, void *ctx) {
    (void)ctx;
    return tg_add_scalar(g, 1.0);
}
static tg_tensor *hook_fail(tg_tensor *g, void *ctx) {
    (void)ctx;
    return tg_reshape(g, TG_SHAPE(7));
}
static tg_tensor *hook_wrong_shape(tg_tensor *g, void *ctx) {
    (void)ctx;
    return tg_sum(g, TG_ALL, false);
}
/* Records the order hooks ran in (ctx: the hook's number). */
static char hook_log[16];
static tg_tensor *hook_note(tg_tensor *g, void *ctx) {
    size_t n = strlen(hook_log);
    hook_log[n] = (char)('0' + (int)(intptr_t)ctx);
    return g;
}

START_TEST(test_hooks_against_torch) {
    tg_tensor *x = from(tr_hk_x, TG_SHAPE(3)), *w = from(tr_hk_w, TG_SHAPE(3));
    tg_requires_grad(x, true);
    tg_requires_grad(w, true);
    ck_assert_int_eq(tg_register_hook(x, hook_add1, NULL), 0);
    tg_tensor *h = tg_mul(x, w);
    ck_assert_int_eq(tg_register_hook(h, hook_double, NULL), 0);
    ck_assert_int_eq(tg_backward(tg_sum(tg_exp(h), TG_ALL, false)), 0);
    tgt_assert_tensor(x->grad, tr_hk_xgrad, 1e-12);
    tgt_assert_tensor(w->grad, tr_hk_wgrad, 1e-12);
    /* tg_grad sees the same; a persistent tensor's hook outlives a reset */
    tg_tape_reset();
    h = tg_mul(x, w);
    tg_register_hook(h, hook_double, NULL);
    tg_tensor *y = tg_sum(tg_exp(h), TG_ALL, false), *g[2];
    ck_assert_int_eq(tg_grad(1, &y, NULL, 2, (tg_tensor *[]){x, w}, g, 0), 0);
    tgt_assert_tensor(g[0], tr_hk_xgrad, 1e-12);
    tgt_assert_tensor(g[1], tr_hk_wgrad, 1e-12);
    /* after tg_clear_hooks: plain gradient */
    tg_clear_hooks(x);
    ck_assert_int_eq(tg_grad(1, &y, NULL, 1, &x, g, 0), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_close(((double *)g[0]->data)[i], tr_hk_xgrad[i] - 1, 1e-12);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(w);
}
END_TEST

START_TEST(test_hooks_order_and_failure) {
    tg_tensor *x = tg_tensor_full(TG_F64, TG_SHAPE(2), 1.5);
    tg_requires_grad(x, true);
    tg_tensor *t = tg_exp(x);
    for (int k = 1; k <= 3; k++)
        tg_register_hook(t, hook_note, (void *)(intptr_t)k);
    tg_register_hook(x, hook_note, (void *)(intptr_t)4);
    hook_log[0] = '\0';
    tg_tensor *y = tg_sum(tg_mul(t, t), TG_ALL, false); /* t used twice: one complete gradient */
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert_str_eq(hook_log, "1234");
    tg_clear_hooks(x);
    tg_clear_hooks(t);
    /* a failing hook: -1, naming the sweep, no ->grad changed */
    tg_tensor *before = tg_tensor_from(TG_F64, TG_SHAPE(2), x->grad->data), *tgrad = t->grad;
    tg_register_hook(t, hook_fail, NULL);
    ck_assert_int_error(tg_backward(y), "tg_backward", "hook 0", "failed", "tg_reshape");
    assert_tensors_equal(x->grad, before, 0);
    ck_assert_ptr_eq(t->grad, tgrad);
    tg_clear_hooks(t);
    tg_register_hook(x, hook_wrong_shape, NULL);
    ck_assert_int_error(tg_backward(y), "tg_backward", "hook 0", "[2]", "returned");
    assert_tensors_equal(x->grad, before, 0);
    tg_clear_hooks(x);
    ck_assert_int_error(tg_register_hook(NULL, hook_add1, NULL), "tg_register_hook");
    ck_assert_int_error(tg_register_hook(x, NULL, NULL), "tg_register_hook");
    tg_tensor *idx = tg_tensor_new(TG_I64, TG_SHAPE(2));
    ck_assert_int_error(tg_register_hook(idx, hook_add1, NULL), "tg_register_hook", "i64");
    tg_clear_hooks(NULL);
    tg_tape_reset();
    tg_tensor_free(idx);
    tg_tensor_free(before);
    tg_tensor_free(x);
}
END_TEST

/* With TG_CREATE_GRAPH a hook's ops are recorded: d/dx of (2 * dy/dx) for y = x^3. */
START_TEST(test_hook_create_graph) {
    tg_tensor *x = tg_scalar(TG_F64, 1.5);
    tg_requires_grad(x, true);
    tg_register_hook(x, hook_double, NULL);
    tg_tensor *y = tg_mul(x, tg_square(x)), *g, *gg;
    ck_assert_int_eq(tg_grad(1, &y, NULL, 1, &x, &g, TG_CREATE_GRAPH), 0);
    ck_assert_close(tg_item(g), 2 * 3 * 1.5 * 1.5, 1e-12);
    tg_clear_hooks(x);
    ck_assert_int_eq(tg_grad(1, &g, NULL, 1, &x, &gg, 0), 0);
    ck_assert_close(tg_item(gg), 2 * 6 * 1.5, 1e-12);
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

/* ---------------- anomaly mode ---------------- */

START_TEST(test_anomaly_forward) {
    ck_assert(!tg_set_anomaly_mode(true));
    ck_assert(tg_is_anomaly_mode());
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), (double[]){1, -1, 4});
    tg_requires_grad(x, true);
    tg_tensor *e = tg_exp(x);
    ck_assert_ptr_nonnull(e);
    ck_assert_op_error(tg_sqrt(x), "tg_sqrt", "anomaly", "sqrt", "nan", "element 1", "[3]",
                       "node 2");
    tg_tensor *z = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){1, 0});
    ck_assert_op_error(tg_log(z), "tg_log", "-inf", "element 1"); /* not recorded: checked too */
    /* A result of a non-finite input passes: the first op is the one reported. */
    tg_set_anomaly_mode(false);
    tg_tensor *n = tg_sqrt(x);
    ck_assert(isnan(((double *)n->data)[1]));
    ck_assert(!tg_set_anomaly_mode(true));
    ck_assert_ptr_nonnull(tg_exp(n));
    ck_assert(tg_set_anomaly_mode(false));
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(z);
}
END_TEST

START_TEST(test_anomaly_backward) {
    tg_tensor *x = tg_tensor_from(TG_F64, TG_SHAPE(3), (double[]){1, 0, 4});
    tg_requires_grad(x, true);
    tg_set_anomaly_mode(true);
    tg_tensor *y = tg_sum(tg_mul_scalar(tg_sqrt(x), 2.0), TG_ALL, false);
    ck_assert_ptr_nonnull(y); /* sqrt(0) = 0 is finite */
    ck_assert_int_error(tg_backward(y), "tg_backward", "anomaly", "backward of sqrt", "node 1",
                        "inf", "element 1", "input 0");
    ck_assert_ptr_null(x->grad);
    tg_tensor *g;
    ck_assert_int_error(tg_grad(1, &y, NULL, 1, &x, &g, 0), "tg_grad", "sqrt");
    /* a user op is named by its function */
    tg_tape_reset();
    tg_tensor *s = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){800, 1});
    tg_requires_grad(s, true);
    y = tg_sum(tg_apply(&cube, 1, &s, NULL, 0), TG_ALL, false);
    ck_assert_op_error(tg_apply(&cube, 1, (tg_tensor *[]){tg_mul_scalar(s, 1e120)}, NULL, 0),
                       "tg_apply", "cube", "inf");
    tg_set_anomaly_mode(false);
    ck_assert_int_eq(tg_backward(y), 0); /* off: the same sweeps run */
    tg_tape_reset();
    y = tg_sum(tg_sqrt(x), TG_ALL, false);
    ck_assert_int_eq(tg_backward(y), 0);
    ck_assert(isinf(((double *)x->grad->data)[1]));
    tg_tape_reset();
    tg_tensor_free(s);
    tg_tensor_free(x);
}
END_TEST

/* ---------------- checkpointing ---------------- */

typedef struct {
    tg_tensor *a, *b;
    tg_module *dropout; /* NULL: none */
} block_ctx;

/* z -> tanh(z @ a + b), with dropout after it when the ctx has one. */
static tg_tensor *block(tg_tensor *const *in, void *ctx) {
    block_ctx *c = ctx;
    tg_tensor *z = tg_tanh(tg_add(tg_matmul(in[0], in[1]), in[2]));
    return c->dropout ? tg_module_forward(c->dropout, z) : z;
}

/* y = sum(z^2) after `depth` blocks, checkpointed or not. */
static tg_tensor *chain(tg_tensor *x, block_ctx *c, int depth, bool ck) {
    tg_tensor *z = x;
    for (int k = 0; k < depth; k++) {
        tg_tensor *in[] = {z, c->a, c->b};
        z = ck ? tg_checkpoint(block, c, 3, in) : block(in, c);
    }
    return tg_sum(tg_square(z), TG_ALL, false);
}

START_TEST(test_checkpoint_against_torch) {
    tg_tensor *x = from(tr_ck_x, TG_SHAPE(4, 3)), *a = from(tr_ck_a, TG_SHAPE(3, 3)),
              *b = from(tr_ck_b, TG_SHAPE(3));
    tg_requires_grad(x, true);
    tg_requires_grad(a, true);
    tg_requires_grad(b, true);
    block_ctx c = {a, b, NULL};
    tg_tensor *y = chain(x, &c, 3, true);
    ck_assert_int_eq(tg_tape_size(), 3 + 2); /* three checkpoint nodes, square, sum */
    ck_assert_int_eq(tg_backward(y), 0);
    tgt_assert_tensor(x->grad, tr_ck_xgrad, 1e-12);
    tgt_assert_tensor(a->grad, tr_ck_agrad, 1e-12);
    tgt_assert_tensor(b->grad, tr_ck_bgrad, 1e-12);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

static tg_tensor *f_checkpointed(tg_tensor *const *in, void *ctx) {
    return tg_checkpoint(block, ctx, 3, in);
}

START_TEST(test_checkpoint_gradchecks) {
    tgt_seed(11);
    tg_tensor *in[] = {tgt_rand(TG_F64, TG_SHAPE(2, 3), -1, 1),
                       tgt_rand(TG_F64, TG_SHAPE(3, 3), -1, 1),
                       tgt_rand(TG_F64, TG_SHAPE(3), -1, 1)};
    for (int i = 0; i < 3; i++)
        tg_requires_grad(in[i], true);
    block_ctx c = {NULL, NULL, NULL};
    tgt_assert_grads(f_checkpointed, &c, 3, in, NULL, "checkpoint"); /* create-graph too */
    for (int i = 0; i < 3; i++)
        tg_tensor_free(in[i]);
    tg_tape_reset();
}
END_TEST

START_TEST(test_checkpoint_dropout_replay) {
    tg_tensor *x = from(tr_ck_x, TG_SHAPE(4, 3)), *a = from(tr_ck_a, TG_SHAPE(3, 3)),
              *b = from(tr_ck_b, TG_SHAPE(3));
    tg_requires_grad(x, true);
    tg_requires_grad(a, true);
    tg_requires_grad(b, true);
    block_ctx c = {a, b, tg_nn_dropout(0.5)};
    double grads[2][3][12], value[2], next[2];
    for (int ck = 0; ck < 2; ck++) {
        tg_seed(77);
        tg_tensor *y = chain(x, &c, 4, ck == 1);
        value[ck] = tg_item(y);
        ck_assert_int_eq(tg_backward(y), 0);
        next[ck] = tg_rand_uniform(); /* the generator is where the plain run leaves it */
        memcpy(grads[ck][0], x->grad->data, 12 * sizeof(double));
        memcpy(grads[ck][1], a->grad->data, 9 * sizeof(double));
        memcpy(grads[ck][2], b->grad->data, 3 * sizeof(double));
        tg_zero_grad(x);
        tg_zero_grad(a);
        tg_zero_grad(b);
        tg_tape_reset();
    }
    ck_assert_close(value[1], value[0], 0);
    ck_assert_close(next[1], next[0], 0);
    for (int k = 0; k < 12; k++) {
        ck_assert_close(grads[1][0][k], grads[0][0][k], 1e-15);
        if (k < 9) ck_assert_close(grads[1][1][k], grads[0][1][k], 1e-15);
        if (k < 3) ck_assert_close(grads[1][2][k], grads[0][2][k], 1e-15);
    }
    tg_module_free(c.dropout);
    tg_tensor_free(x);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_checkpoint_saves_memory) {
    tgt_seed(5);
    tg_tensor *x = tgt_rand(TG_F64, TG_SHAPE(64, 32), -1, 1),
              *a = tgt_rand(TG_F64, TG_SHAPE(32, 32), -0.2, 0.2),
              *b = tgt_rand(TG_F64, TG_SHAPE(32), -0.1, 0.1);
    tg_requires_grad(a, true);
    tg_requires_grad(b, true);
    block_ctx c = {a, b, NULL};
    size_t peak[2], kept[2];
    double ga[2];
    for (int ck = 0; ck < 2; ck++) {
        tg_tape_reset();
        tg_tensor *y = chain(x, &c, 32, ck == 1);
        kept[ck] = tg_tape_bytes_used(); /* what the forward keeps for the backward */
        ck_assert_int_eq(tg_backward(y), 0);
        peak[ck] = tg_tape_bytes_peak();
        ga[ck] = ((double *)a->grad->data)[7];
        tg_zero_grad(a);
        tg_zero_grad(b);
    }
    ck_assert_close(ga[1], ga[0], 1e-12);
    ck_assert_msg(kept[1] * 2 < kept[0], "after forward: checkpointed %zu, plain %zu", kept[1],
                  kept[0]);
    ck_assert_msg(peak[1] * 5 < peak[0] * 4, "peak bytes: checkpointed %zu, plain %zu", peak[1],
                  peak[0]);
    tg_tape_reset();
    tg_tensor_free(x);
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

START_TEST(test_checkpoint_errors) {
    tg_tensor *x = tg_tensor_new(TG_F64, TG_SHAPE(2, 3));
    tg_requires_grad(x, true);
    ck_assert_op_error(tg_checkpoint(NULL, NULL, 1, &x), "tg_checkpoint");
    ck_assert_op_error(tg_checkpoint(f_cube, NULL, 0, &x), "tg_checkpoint");
    ck_assert_op_error(tg_checkpoint(f_fails, NULL, 1, &x), "tg_checkpoint", "f failed",
                       "tg_matmul");
    tg_tensor *none[] = {NULL};
    ck_assert_ptr_null(tg_checkpoint(f_cube, NULL, 1, none));
    /* once_differentiable inside: fine without TG_CREATE_GRAPH, an error naming it with */
    tg_tensor *y = tg_sum(tg_checkpoint(f_softplus, NULL, 1, &x), TG_ALL, false), *g;
    ck_assert_int_eq(tg_grad(1, &y, NULL, 1, &x, &g, 0), 0);
    ck_assert_close(((double *)g->data)[0], 0.5, 1e-15);
    ck_assert_int_error(tg_grad(1, &y, NULL, 1, &x, &g, TG_CREATE_GRAPH), "tg_grad",
                        "fused_softplus");
    tg_tape_reset();
    tg_tensor_free(x);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("transforms");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_user_op_gradchecks);
    tcase_add_test(t, test_user_op_against_torch);
    tcase_add_test(t, test_user_op_tape_print_and_dot);
    tcase_add_test(t, test_user_op_ctx);
    tcase_add_test(t, test_user_op_errors);
    tcase_add_test(t, test_user_op_checked_mode);
    tcase_add_test(t, test_custom_layer_in_model);
    tcase_add_test(t, test_custom_layer_errors);
    tcase_add_test(t, test_jvp_against_torch);
    tcase_add_test(t, test_jacobian_against_torch);
    tcase_add_test(t, test_hessian_against_torch);
    tcase_add_test(t, test_hessian_of_user_op);
    tcase_add_test(t, test_hooks_against_torch);
    tcase_add_test(t, test_hooks_order_and_failure);
    tcase_add_test(t, test_hook_create_graph);
    tcase_add_test(t, test_anomaly_forward);
    tcase_add_test(t, test_anomaly_backward);
    tcase_add_test(t, test_checkpoint_against_torch);
    tcase_add_test(t, test_checkpoint_gradchecks);
    tcase_add_test(t, test_checkpoint_dropout_replay);
    tcase_add_test(t, test_checkpoint_saves_memory);
    tcase_add_test(t, test_checkpoint_errors);
    suite_add_tcase(s, t);
    return s;
}

int main(void) {
    int rc = tgt_run(suite());
    tg_tape_free();
    return rc;
}
