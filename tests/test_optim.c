/* test_optim.c — optimizers against torch.optim, gradient clipping, schedules, bad
 * input. Reference values: tests/ref/optim_ref.h, made by tests/ref/gen_optim_ref.py. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include <tapegrad/optim.h>

#include "autodiff/internal.h"
#include "ref/optim_ref.h"

/* ---------------- helpers ---------------- */

/* A persistent parameter (requires_grad) with a persistent gradient of zeros attached,
 * which the tests fill directly. tg_tensor_free(p) frees both. */
static tg_tensor *param_with_grad(tg_dtype dt, int ndim, const int64_t *shape, const double *init) {
    tg_tensor *p = tg_tensor_new(dt, ndim, shape);
    ck_assert_ptr_nonnull(p);
    for (int64_t i = 0; i < p->numel; i++)
        tg_tensor_set(p, i, init[i]);
    tg_requires_grad(p, true);
    p->grad = tg_tensor_new(dt, ndim, shape);
    ck_assert_ptr_nonnull(p->grad);
    return p;
}

static tg_optim *make_ref_optim(const optref_case *c, tg_tensor *const *params) {
    switch (c->kind) {
    case OPTREF_SGD:
        return tg_sgd(2, params,
                      (tg_sgd_opts){.lr = c->lr,
                                    .momentum = c->momentum,
                                    .dampening = c->dampening,
                                    .weight_decay = c->weight_decay,
                                    .nesterov = c->nesterov});
    case OPTREF_ADAM:
        return tg_adam(2, params,
                       (tg_adam_opts){.lr = c->lr,
                                      .beta1 = c->beta1,
                                      .beta2 = c->beta2,
                                      .eps = c->eps,
                                      .weight_decay = c->weight_decay,
                                      .decoupled = c->decoupled,
                                      .amsgrad = c->amsgrad});
    default:
        return tg_rmsprop(2, params,
                          (tg_rmsprop_opts){.lr = c->lr,
                                            .alpha = c->alpha,
                                            .eps = c->eps,
                                            .weight_decay = c->weight_decay,
                                            .momentum = c->momentum,
                                            .centered = c->centered});
    }
}

/* Runs one reference case in dtype dt and compares the final parameters. The
 * gradient is the script's g_k(t), evaluated in the same order. */
static void run_ref_case(const optref_case *c, tg_dtype dt, double tol) {
    tg_tensor *p0 = param_with_grad(dt, TG_SHAPE(OPTREF_SPLIT), optref_init);
    tg_tensor *p1 = param_with_grad(dt, TG_SHAPE(2, 2), optref_init + OPTREF_SPLIT);
    tg_tensor *params[2] = {p0, p1};
    tg_tensor *g1 = p1->grad;
    tg_optim *o = make_ref_optim(c, params);
    ck_assert_msg(o != NULL, "%s: %s", c->name, tg_error());
    int64_t p1_steps = 0;
    for (int t = 1; t <= OPTREF_STEPS; t++) {
        if (c->sched == OPTREF_SCHED_STEP)
            tg_optim_set_lr(o, tg_lr_step(c->lr, t - 1, c->sched_n, c->sched_a));
        else if (c->sched == OPTREF_SCHED_COSINE)
            tg_optim_set_lr(o, tg_lr_cosine(c->lr, t - 1, c->sched_n, c->sched_a));
        for (int k = 0; k < OPTREF_NUMEL; k++) {
            tg_tensor *p = k < OPTREF_SPLIT ? p0 : p1;
            int64_t j = k < OPTREF_SPLIT ? k : k - OPTREF_SPLIT;
            double v = tg_tensor_get(p, j);
            double g = 0.5 * (v - (0.1 * k - 0.2)) + 0.3 * sin(0.7 * t + 1.3 * k);
            ck_assert_int_eq(tg_tensor_set(p->grad, j, g), 0);
        }
        bool skip = t % OPTREF_SKIP_MOD == OPTREF_SKIP_REM;
        p1->grad = skip ? NULL : g1;
        p1_steps += !skip;
        ck_assert_msg(tg_optim_step(o) == 0, "%s: %s", c->name, tg_error());
        p1->grad = g1;
    }
    ck_assert_int_eq(tg_optim_param_steps(o, 0), OPTREF_STEPS);
    ck_assert_int_eq(tg_optim_param_steps(o, 1), p1_steps);
    const double *want = dt == TG_F64 ? c->want64 : c->want32;
    for (int k = 0; k < OPTREF_NUMEL; k++) {
        const tg_tensor *p = k < OPTREF_SPLIT ? p0 : p1;
        double got = tg_tensor_get(p, k < OPTREF_SPLIT ? k : k - OPTREF_SPLIT);
        ck_assert_msg(fabs(got - want[k]) <= tol, "%s (%s): element %d is %.17g, torch %.17g",
                      c->name, tg_dtype_name(dt), k, got, want[k]);
    }
    tg_optim_free(o);
    tg_tape_reset();
    tg_tensor_free(p0);
    tg_tensor_free(p1);
}

/* ---------------- against torch.optim ---------------- */

START_TEST(test_reference_f64) { run_ref_case(&optref_cases[_i], TG_F64, 1e-12); }
END_TEST

/* F32 parameters go through the same rules (computed in double, stored as float);
 * torch computes in float, so agreement is to float precision. */
START_TEST(test_reference_f32) { run_ref_case(&optref_cases[_i], TG_F32, 2e-5); }
END_TEST

/* ---------------- state ---------------- */

/* The momentum buffer is stored: after a step with gradient 1, a step with gradient 0
 * still moves the parameter by lr * momentum. */
START_TEST(test_sgd_momentum_persists) {
    tg_tensor *p = param_with_grad(TG_F64, TG_SHAPE(2), (double[]){1.0, -2.0});
    tg_optim *o = tg_sgd(1, &p, (tg_sgd_opts){.lr = 0.1, .momentum = 0.9});
    ck_assert_ptr_nonnull(o);
    tg_tensor_fill(p->grad, 1.0);
    ck_assert_int_eq(tg_optim_step(o), 0);
    tgt_assert_tensor(p, (double[]){0.9, -2.1}, 1e-15);
    tg_optim_zero_grad(o);
    tgt_assert_tensor(p->grad, (double[]){0.0, 0.0}, 0.0);
    ck_assert_int_eq(tg_optim_step(o), 0);
    tgt_assert_tensor(p, (double[]){0.9 - 0.1 * 0.9, -2.1 - 0.1 * 0.9}, 1e-15);
    ck_assert_int_eq(tg_optim_step(o), 0);
    tgt_assert_tensor(p, (double[]){0.9 - 0.1 * 0.9 - 0.1 * 0.81, -2.1 - 0.1 * 0.9 - 0.1 * 0.81},
                      1e-15);
    const tg_tensor *buf = tg_optim_state(o, 0, "momentum_buffer");
    ck_assert_ptr_nonnull(buf);
    tgt_assert_tensor(buf, (double[]){0.81, 0.81}, 1e-15);
    tg_optim_free(o);
    tg_tape_reset();
    tg_tensor_free(p);
}
END_TEST

/* The same for Adam (the first moment keeps moving the parameter) and RMSprop with
 * momentum. */
START_TEST(test_adam_rmsprop_state_persists) {
    tg_tensor *p = param_with_grad(TG_F64, TG_SHAPE(1), (double[]){0.0});
    tg_optim *o = tg_adam(1, &p, TG_ADAM_DEFAULTS);
    ck_assert_ptr_nonnull(o);
    tg_tensor_fill(p->grad, 1.0);
    ck_assert_int_eq(tg_optim_step(o), 0);
    ck_assert_close(tg_tensor_get(p, 0), -1e-3, 1e-10); /* the first Adam step is lr */
    tg_optim_zero_grad(o);
    ck_assert_int_eq(tg_optim_step(o), 0);
    ck_assert(tg_tensor_get(p, 0) < -1e-3 - 1e-4);
    ck_assert_close(tg_tensor_get(tg_optim_state(o, 0, "exp_avg"), 0), 0.09, 1e-15);
    ck_assert_int_eq(tg_optim_param_steps(o, 0), 2);
    tg_optim_free(o);

    tg_tensor_fill(p, 0.0);
    tg_rmsprop_opts ro = TG_RMSPROP_DEFAULTS;
    ro.momentum = 0.5;
    o = tg_rmsprop(1, &p, ro);
    ck_assert_ptr_nonnull(o);
    tg_tensor_fill(p->grad, 1.0);
    ck_assert_int_eq(tg_optim_step(o), 0);
    double after1 = tg_tensor_get(p, 0);
    tg_optim_zero_grad(o);
    ck_assert_int_eq(tg_optim_step(o), 0);
    ck_assert_close(tg_tensor_get(p, 0) - after1, 0.5 * after1, 1e-15);
    tg_optim_free(o);
    tg_tape_reset();
    tg_tensor_free(p);
}
END_TEST

START_TEST(test_state_names) {
    tg_tensor *p = param_with_grad(TG_F32, TG_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
    tg_optim *o =
        tg_adam(1, &p, (tg_adam_opts){.lr = 0.1, .beta1 = 0.9, .beta2 = 0.99, .amsgrad = true});
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(tg_optim_num_params(o), 1);
    const char *names[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    for (int k = 0; k < 3; k++) {
        const tg_tensor *s = tg_optim_state(o, 0, names[k]);
        ck_assert_ptr_nonnull(s);
        ck_assert_int_eq(s->dtype, TG_F32);
        ck_assert(tg_same_shape(s, p));
    }
    ck_assert_op_error(tg_optim_state(o, 0, "momentum_buffer"), "tg_optim_state",
                       "momentum_buffer");
    ck_assert_op_error(tg_optim_state(o, 1, "exp_avg"), "tg_optim_state", "out of range");
    ck_assert_op_error(tg_optim_state(NULL, 0, "exp_avg"), "tg_optim_state", "NULL");
    tg_optim_free(o);
    o = tg_sgd(1, &p, (tg_sgd_opts){.lr = 0.1});
    ck_assert_op_error(tg_optim_state(o, 0, "momentum_buffer"), "tg_optim_state", "no");
    tg_optim_free(o);
    o = tg_rmsprop(1, &p, TG_RMSPROP_DEFAULTS);
    ck_assert_ptr_nonnull(tg_optim_state(o, 0, "square_avg"));
    ck_assert_op_error(tg_optim_state(o, 0, "grad_avg"), "tg_optim_state", "grad_avg");
    tg_optim_free(o);
    tg_tape_reset();
    tg_tensor_free(p);
}
END_TEST

/* ---------------- skipping, F32, backward ---------------- */

START_TEST(test_null_grad_skipped) {
    tg_tensor *a = param_with_grad(TG_F64, TG_SHAPE(2), (double[]){1.0, 2.0});
    tg_tensor *b = tg_tensor_from(TG_F64, TG_SHAPE(2), (double[]){3.0, 4.0});
    tg_requires_grad(b, true); /* never gets a gradient */
    tg_tensor *params[2] = {a, b};
    tg_optim *opts[3] = {tg_sgd(2, params, (tg_sgd_opts){.lr = 0.5, .momentum = 0.9}),
                         tg_adam(2, params, TG_ADAM_DEFAULTS),
                         tg_rmsprop(2, params, TG_RMSPROP_DEFAULTS)};
    for (int k = 0; k < 3; k++) {
        ck_assert_ptr_nonnull(opts[k]);
        tg_tensor_fill(a->grad, 1.0);
        ck_assert_int_eq(tg_optim_step(opts[k]), 0);
        ck_assert_int_eq(tg_optim_param_steps(opts[k], 0), 1);
        ck_assert_int_eq(tg_optim_param_steps(opts[k], 1), 0);
        ck_assert(tg_tensor_get(a, 0) < 1.0);
        tgt_assert_tensor(b, (double[]){3.0, 4.0}, 0.0);
        tg_optim_zero_grad(opts[k]); /* b has no gradient: fine */
        ck_assert_ptr_null(b->grad);
        tg_optim_free(opts[k]);
    }
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* A training loop over gradients from tg_backward: minimise sum((w - c)^2) in F32. */
START_TEST(test_f32_with_backward) {
    const double c[3] = {0.5, -1.5, 2.0};
    tg_tensor *w = tg_tensor_new(TG_F32, TG_SHAPE(3));
    tg_tensor *target = tg_tensor_from(TG_F32, TG_SHAPE(3), (float[]){0.5f, -1.5f, 2.0f});
    tg_requires_grad(w, true);
    tg_optim *o =
        tg_adam(1, &w, (tg_adam_opts){.lr = 0.05, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8});
    ck_assert_ptr_nonnull(o);
    for (int it = 0; it < 500; it++) {
        tg_optim_zero_grad(o);
        tg_tensor *loss = tg_sum(tg_square(tg_sub(w, target)), TG_ALL, false);
        ck_assert_msg(loss && tg_backward(loss) == 0, "%s", tg_error());
        ck_assert_int_eq(tg_optim_step(o), 0);
        tg_tape_reset();
    }
    ck_assert_int_eq(w->dtype, TG_F32);
    tgt_assert_tensor(w, c, 1e-3);
    tg_optim_free(o);
    tg_tape_reset();
    tg_tensor_free(w);
    tg_tensor_free(target);
}
END_TEST

/* F32 parameters larger than one conversion chunk agree with the same run in F64. */
START_TEST(test_f32_matches_f64_large) {
    enum { N = 1000 };
    double *init = malloc(N * sizeof *init);
    ck_assert_ptr_nonnull(init);
    for (int i = 0; i < N; i++)
        init[i] = sin(0.37 * i);
    tg_tensor *p32 = param_with_grad(TG_F32, TG_SHAPE(N), init);
    tg_tensor *p64 = param_with_grad(TG_F64, TG_SHAPE(N), init);
    tg_rmsprop_opts ro = {.lr = 0.01, .alpha = 0.9, .eps = 1e-6, .momentum = 0.5, .centered = true};
    tg_optim *o32 = tg_rmsprop(1, &p32, ro), *o64 = tg_rmsprop(1, &p64, ro);
    ck_assert_ptr_nonnull(o32);
    ck_assert_ptr_nonnull(o64);
    for (int t = 1; t <= 20; t++) {
        for (int i = 0; i < N; i++) {
            double g = cos(0.1 * t + 0.01 * i);
            tg_tensor_set(p32->grad, i, g);
            tg_tensor_set(p64->grad, i, g);
        }
        ck_assert_int_eq(tg_optim_step(o32), 0);
        ck_assert_int_eq(tg_optim_step(o64), 0);
    }
    double want[N];
    for (int i = 0; i < N; i++)
        want[i] = tg_tensor_get(p64, i);
    tgt_assert_tensor(p32, want, 1e-5);
    tg_optim_free(o32);
    tg_optim_free(o64);
    free(init);
    tg_tape_reset();
    tg_tensor_free(p32);
    tg_tensor_free(p64);
}
END_TEST

START_TEST(test_step_bad_grad) {
    tg_tensor *p = param_with_grad(TG_F64, TG_SHAPE(2), (double[]){1.0, 2.0});
    tg_tensor *q = param_with_grad(TG_F64, TG_SHAPE(3), (double[]){1.0, 2.0, 3.0});
    tg_tensor *params[2] = {p, q};
    tg_optim *o = tg_sgd(2, params, (tg_sgd_opts){.lr = 0.1});
    tg_tensor *good = q->grad;
    tg_tensor *bad = tg_tensor_new(TG_F64, TG_SHAPE(2));
    tg_tensor_fill(p->grad, 1.0);
    q->grad = bad;
    tg_clear_error();
    ck_assert_int_eq(tg_optim_step(o), -1);
    tgt_assert_error_has("tg_optim_step",
                         (const char *[]){"tg_optim_step", "parameter 1", "[2]", "[3]"}, 4);
    tgt_assert_tensor(p, (double[]){1.0, 2.0}, 0.0); /* nothing was updated */
    tg_tensor_free(bad);
    bad = tg_tensor_new(TG_F32, TG_SHAPE(3));
    q->grad = bad;
    ck_assert_int_eq(tg_optim_step(o), -1);
    tgt_assert_error_has("tg_optim_step", (const char *[]){"f32", "f64"}, 2);
    tg_tensor_free(bad);
    q->grad = good;
    tg_clear_error();
    ck_assert_int_eq(tg_optim_step(NULL), -1);
    tgt_assert_error_has("tg_optim_step", (const char *[]){"tg_optim_step", "NULL"}, 2);
    tg_optim_free(o);
    tg_tape_reset();
    tg_tensor_free(p);
    tg_tensor_free(q);
}
END_TEST

/* ---------------- learning rate ---------------- */

START_TEST(test_get_set_lr) {
    tg_tensor *p = param_with_grad(TG_F64, TG_SHAPE(1), (double[]){1.0});
    tg_optim *o = tg_adam(1, &p, TG_ADAM_DEFAULTS);
    ck_assert_double_eq(tg_optim_get_lr(o), 1e-3);
    tg_optim_set_lr(o, 0.25);
    ck_assert_double_eq(tg_optim_get_lr(o), 0.25);
    tg_clear_error();
    tg_optim_set_lr(o, -1.0);
    tgt_assert_error_has("tg_optim_set_lr", (const char *[]){"tg_optim_set_lr", "lr"}, 2);
    tg_optim_set_lr(o, NAN);
    ck_assert_double_eq(tg_optim_get_lr(o), 0.25);
    tg_clear_error();
    ck_assert(isnan(tg_optim_get_lr(NULL)));
    tgt_assert_error_has("tg_optim_get_lr", (const char *[]){"tg_optim_get_lr", "NULL"}, 2);
    tg_clear_error();
    tg_optim_set_lr(NULL, 0.1);
    ck_assert_ptr_nonnull(tg_error());
    /* The step uses the new rate: the first Adam step moves by lr. */
    tg_tensor_fill(p->grad, 3.0);
    ck_assert_int_eq(tg_optim_step(o), 0);
    ck_assert_close(tg_tensor_get(p, 0), 0.75, 1e-8);
    ck_assert_int_eq(tg_optim_num_params(NULL), 0);
    tg_optim_free(o);
    tg_optim_free(NULL);
    tg_optim_zero_grad(NULL);
    tg_tape_reset();
    tg_tensor_free(p);
}
END_TEST

START_TEST(test_schedules) {
    for (int e = 0; e < OPTREF_NLR; e++) {
        ck_assert_close(tg_lr_step(0.1, e, 3, 0.5), optref_step_lr[e], 1e-17);
        ck_assert_close(tg_lr_cosine(0.1, e, 10, 0.001), optref_cosine_lr[e], 1e-17);
    }
    ck_assert_double_eq(tg_lr_cosine(0.1, 0, 10, 0.001), 0.1);
    ck_assert_double_eq(tg_lr_cosine(0.1, 10, 10, 0.001), 0.001);
    ck_assert_double_eq(tg_lr_step(0.1, 2, 3, 0.5), 0.1);

    tg_clear_error();
    ck_assert(isnan(tg_lr_step(0.1, -1, 3, 0.5)));
    tgt_assert_error_has("tg_lr_step", (const char *[]){"tg_lr_step", "epoch"}, 2);
    ck_assert(isnan(tg_lr_step(0.1, 1, 0, 0.5)));
    tgt_assert_error_has("tg_lr_step", (const char *[]){"tg_lr_step", "step_size"}, 2);
    ck_assert(isnan(tg_lr_step(-0.1, 1, 3, 0.5)));
    tgt_assert_error_has("tg_lr_step", (const char *[]){"tg_lr_step", "base_lr"}, 2);
    ck_assert(isnan(tg_lr_step(0.1, 1, 3, NAN)));
    tgt_assert_error_has("tg_lr_step", (const char *[]){"tg_lr_step", "gamma"}, 2);
    ck_assert(isnan(tg_lr_cosine(0.1, -2, 10, 0.0)));
    tgt_assert_error_has("tg_lr_cosine", (const char *[]){"tg_lr_cosine", "epoch"}, 2);
    ck_assert(isnan(tg_lr_cosine(0.1, 1, 0, 0.0)));
    tgt_assert_error_has("tg_lr_cosine", (const char *[]){"tg_lr_cosine", "t_max"}, 2);
    ck_assert(isnan(tg_lr_cosine(NAN, 1, 10, 0.0)));
    tgt_assert_error_has("tg_lr_cosine", (const char *[]){"tg_lr_cosine", "base_lr"}, 2);
    ck_assert(isnan(tg_lr_cosine(0.1, 1, 10, -1.0)));
    tgt_assert_error_has("tg_lr_cosine", (const char *[]){"tg_lr_cosine", "eta_min"}, 2);
    tg_tape_reset();
}
END_TEST

/* ---------------- clipping ---------------- */

static void clip_case(double max_norm, double want_total, const double *want) {
    tg_tensor *a = param_with_grad(TG_F64, TG_SHAPE(3), (double[]){0, 0, 0});
    tg_tensor *b = param_with_grad(TG_F64, TG_SHAPE(2, 2), (double[]){0, 0, 0, 0});
    tg_tensor *c = tg_tensor_new(TG_F64, TG_SHAPE(2)); /* no gradient */
    tg_requires_grad(c, true);
    for (int i = 0; i < 3; i++)
        tg_tensor_set(a->grad, i, optref_clip_ga[i]);
    for (int i = 0; i < 4; i++)
        tg_tensor_set(b->grad, i, optref_clip_gb[i]);
    tg_tensor *params[3] = {a, b, c};
    ck_assert_close(tg_clip_grad_norm(3, params, max_norm), want_total, 1e-14);
    tgt_assert_tensor(a->grad, want, 1e-14);
    tgt_assert_tensor(b->grad, want + 3, 1e-14);
    ck_assert_ptr_null(c->grad);
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(c);
}

START_TEST(test_clip_grad_norm) {
    clip_case(OPTREF_CLIP_MAX_SMALL, optref_clip_total_small, optref_clip_grads_small);
    clip_case(OPTREF_CLIP_MAX_LARGE, optref_clip_total_large, optref_clip_grads_large);

    /* After clipping, the norm is max_norm (up to the 1e-6). */
    tg_tensor *a = param_with_grad(TG_F32, TG_SHAPE(2), (double[]){0, 0});
    tg_tensor_set(a->grad, 0, 3.0);
    tg_tensor_set(a->grad, 1, 4.0);
    ck_assert_close(tg_clip_grad_norm(1, &a, 1.0), 5.0, 1e-6);
    ck_assert_close(tg_clip_grad_norm(1, &a, 1.0), 1.0, 1e-5);
    /* No gradient anywhere: norm 0. */
    tg_tensor *b = tg_tensor_new(TG_F64, TG_SHAPE(2));
    ck_assert_double_eq(tg_clip_grad_norm(1, &b, 1.0), 0.0);

    tg_clear_error();
    ck_assert(isnan(tg_clip_grad_norm(1, NULL, 1.0)));
    tgt_assert_error_has("clip", (const char *[]){"tg_clip_grad_norm", "NULL"}, 2);
    tg_clear_error();
    ck_assert(isnan(tg_clip_grad_norm(0, &a, 1.0)));
    tgt_assert_error_has("clip", (const char *[]){"tg_clip_grad_norm", "n = 0"}, 2);
    tg_clear_error();
    ck_assert(isnan(tg_clip_grad_norm(1, &a, -1.0)));
    tgt_assert_error_has("clip", (const char *[]){"tg_clip_grad_norm", "max_norm"}, 2);
    tg_clear_error();
    ck_assert(isnan(tg_clip_grad_norm(1, &a, NAN)));
    tgt_assert_error_has("clip", (const char *[]){"tg_clip_grad_norm", "max_norm"}, 2);
    tg_clear_error();
    tg_tensor *with_null[2] = {a, NULL};
    ck_assert(isnan(tg_clip_grad_norm(2, with_null, 1.0)));
    tgt_assert_error_has("clip", (const char *[]){"tg_clip_grad_norm", "parameter 1", "NULL"}, 3);
    ck_assert_close(tg_tensor_get(a->grad, 0), 0.6, 1e-5); /* unchanged by the failures */
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
}
END_TEST

/* ---------------- bad input ---------------- */

START_TEST(test_bad_params) {
    tg_tensor *p = param_with_grad(TG_F64, TG_SHAPE(2), (double[]){1.0, 2.0});
    tg_tensor *lab = tg_tensor_new(TG_I64, TG_SHAPE(2));
    tg_tensor *tape = tg_add_scalar(p, 1.0);
    ck_assert_ptr_nonnull(tape);
    tg_sgd_opts so = {.lr = 0.1};
    tg_adam_opts ao = TG_ADAM_DEFAULTS;
    tg_rmsprop_opts ro = TG_RMSPROP_DEFAULTS;

    ck_assert_op_error(tg_sgd(1, NULL, so), "tg_sgd", "params is NULL");
    ck_assert_op_error(tg_adam(1, NULL, ao), "tg_adam", "params is NULL");
    ck_assert_op_error(tg_rmsprop(1, NULL, ro), "tg_rmsprop", "params is NULL");
    ck_assert_op_error(tg_sgd(0, &p, so), "tg_sgd", "n = 0");
    ck_assert_op_error(tg_adam(-3, &p, ao), "tg_adam", "n = -3");
    ck_assert_op_error(tg_rmsprop(0, &p, ro), "tg_rmsprop", "n = 0");
    tg_tensor *with_null[2] = {p, NULL};
    ck_assert_op_error(tg_sgd(2, with_null, so), "tg_sgd", "parameter 1 is NULL");
    ck_assert_op_error(tg_adam(2, with_null, ao), "tg_adam", "parameter 1 is NULL");
    ck_assert_op_error(tg_rmsprop(2, with_null, ro), "tg_rmsprop", "parameter 1 is NULL");
    tg_tensor *with_i64[2] = {p, lab};
    ck_assert_op_error(tg_sgd(2, with_i64, so), "tg_sgd", "parameter 1", "i64", "[2]");
    ck_assert_op_error(tg_adam(2, with_i64, ao), "tg_adam", "parameter 1", "i64");
    ck_assert_op_error(tg_rmsprop(2, with_i64, ro), "tg_rmsprop", "parameter 1", "i64");
    tg_tensor *with_tape[2] = {tape, p};
    ck_assert_op_error(tg_sgd(2, with_tape, so), "tg_sgd", "parameter 0", "tape tensor");
    ck_assert_op_error(tg_adam(2, with_tape, ao), "tg_adam", "parameter 0", "tape tensor");
    ck_assert_op_error(tg_rmsprop(2, with_tape, ro), "tg_rmsprop", "parameter 0", "tape tensor");
    tg_tensor *twice[2] = {p, p};
    ck_assert_op_error(tg_sgd(2, twice, so), "tg_sgd", "parameter 1", "same tensor as parameter 0");
    ck_assert_op_error(tg_adam(2, twice, ao), "tg_adam", "same tensor");
    ck_assert_op_error(tg_rmsprop(2, twice, ro), "tg_rmsprop", "same tensor");
    /* A NULL parameter after an earlier failure keeps the first message. */
    tg__fail("tg_matmul: first failure");
    ck_assert_ptr_null(tg_sgd(2, with_null, so));
    ck_assert_str_eq(tg_error(), "tg_matmul: first failure");
    tg_tape_reset();
    tg_tensor_free(p);
    tg_tensor_free(lab);
}
END_TEST

START_TEST(test_bad_hyperparameters) {
    tg_tensor *p = param_with_grad(TG_F64, TG_SHAPE(2), (double[]){1.0, 2.0});
    /* SGD */
    ck_assert_op_error(tg_sgd(1, &p, (tg_sgd_opts){.lr = -0.1}), "tg_sgd", "lr", "-0.1");
    ck_assert_op_error(tg_sgd(1, &p, (tg_sgd_opts){.lr = NAN}), "tg_sgd", "lr");
    ck_assert_op_error(tg_sgd(1, &p, (tg_sgd_opts){.lr = INFINITY}), "tg_sgd", "lr");
    ck_assert_op_error(tg_sgd(1, &p, (tg_sgd_opts){.lr = 0.1, .momentum = -0.5}), "tg_sgd",
                       "momentum");
    ck_assert_op_error(tg_sgd(1, &p, (tg_sgd_opts){.lr = 0.1, .momentum = 1.0}), "tg_sgd",
                       "momentum", "[0, 1)");
    ck_assert_op_error(tg_sgd(1, &p, (tg_sgd_opts){.lr = 0.1, .momentum = 0.9, .dampening = 1.5}),
                       "tg_sgd", "dampening");
    ck_assert_op_error(tg_sgd(1, &p, (tg_sgd_opts){.lr = 0.1, .weight_decay = -1}), "tg_sgd",
                       "weight_decay");
    ck_assert_op_error(tg_sgd(1, &p, (tg_sgd_opts){.lr = 0.1, .nesterov = true}), "tg_sgd",
                       "nesterov", "momentum");
    ck_assert_op_error(
        tg_sgd(1, &p,
               (tg_sgd_opts){.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}),
        "tg_sgd", "nesterov", "dampening");
    /* Adam */
    tg_adam_opts ao = TG_ADAM_DEFAULTS;
    ao.lr = -1e-3;
    ck_assert_op_error(tg_adam(1, &p, ao), "tg_adam", "lr");
    ao = TG_ADAM_DEFAULTS;
    ao.beta1 = 1.0;
    ck_assert_op_error(tg_adam(1, &p, ao), "tg_adam", "beta1", "[0, 1)");
    ao = TG_ADAM_DEFAULTS;
    ao.beta1 = -0.1;
    ck_assert_op_error(tg_adam(1, &p, ao), "tg_adam", "beta1");
    ao = TG_ADAM_DEFAULTS;
    ao.beta2 = 1.0;
    ck_assert_op_error(tg_adam(1, &p, ao), "tg_adam", "beta2", "got 1");
    ao = TG_ADAM_DEFAULTS;
    ao.beta2 = NAN;
    ck_assert_op_error(tg_adam(1, &p, ao), "tg_adam", "beta2");
    ao = TG_ADAM_DEFAULTS;
    ao.eps = -1e-8;
    ck_assert_op_error(tg_adam(1, &p, ao), "tg_adam", "eps");
    ao = TG_ADAM_DEFAULTS;
    ao.weight_decay = -0.01;
    ao.decoupled = true;
    ck_assert_op_error(tg_adam(1, &p, ao), "tg_adam", "weight_decay");
    /* RMSprop */
    tg_rmsprop_opts ro = TG_RMSPROP_DEFAULTS;
    ro.lr = -1;
    ck_assert_op_error(tg_rmsprop(1, &p, ro), "tg_rmsprop", "lr");
    ro = TG_RMSPROP_DEFAULTS;
    ro.alpha = 1.0;
    ck_assert_op_error(tg_rmsprop(1, &p, ro), "tg_rmsprop", "alpha");
    ro = TG_RMSPROP_DEFAULTS;
    ro.eps = -1;
    ck_assert_op_error(tg_rmsprop(1, &p, ro), "tg_rmsprop", "eps");
    ro = TG_RMSPROP_DEFAULTS;
    ro.weight_decay = -1;
    ck_assert_op_error(tg_rmsprop(1, &p, ro), "tg_rmsprop", "weight_decay");
    ro = TG_RMSPROP_DEFAULTS;
    ro.momentum = -0.1;
    ck_assert_op_error(tg_rmsprop(1, &p, ro), "tg_rmsprop", "momentum");
    ro = TG_RMSPROP_DEFAULTS;
    ro.momentum = 1.0;
    ck_assert_op_error(tg_rmsprop(1, &p, ro), "tg_rmsprop", "momentum");
    /* Edges that are fine: lr 0 leaves the parameter alone, momentum 0 with dampening. */
    tg_optim *o = tg_sgd(1, &p, (tg_sgd_opts){.lr = TG_EXACT_ZERO, .dampening = 0.5});
    ck_assert_ptr_nonnull(o);
    tg_tensor_fill(p->grad, 1.0);
    ck_assert_int_eq(tg_optim_step(o), 0);
    tgt_assert_tensor(p, (double[]){1.0, 2.0}, 0.0);
    tg_optim_free(o);
    tg_tape_reset();
    tg_tensor_free(p);
}
END_TEST

/* Allocation failure while building the state: NULL, an error, and no leak. */
static int fail_countdown = -1;
static void *failing_alloc(size_t size, void *ud) {
    (void)ud;
    if (fail_countdown == 0) return NULL;
    if (fail_countdown > 0) fail_countdown--;
    return malloc(size);
}
static void plain_release(void *p, void *ud) {
    (void)ud;
    free(p);
}

/* ---------------- the options rule ---------------- */

/* Steps an optimizer made by make three times with gradients 0.5, -1, 2 from p = 1 and
 * returns the final parameter value. */
static double three_steps(tg_optim *(*make)(tg_tensor *p, const void *opts), const void *opts) {
    tg_tensor *p = param_with_grad(TG_F64, TG_SHAPE(1), (double[]){1.0});
    tg_optim *o = make(p, opts);
    ck_assert_ptr_nonnull(o);
    const double g[3] = {0.5, -1.0, 2.0};
    for (int i = 0; i < 3; i++) {
        tg_tensor_fill(p->grad, g[i]);
        ck_assert_int_eq(tg_optim_step(o), 0);
    }
    double v = tg_item(p);
    tg_optim_free(o);
    tg_tensor_free(p);
    return v;
}

static tg_optim *make_adam(tg_tensor *p, const void *o) {
    return tg_adam(1, &p, *(const tg_adam_opts *)o);
}
static tg_optim *make_rmsprop(tg_tensor *p, const void *o) {
    return tg_rmsprop(1, &p, *(const tg_rmsprop_opts *)o);
}
static tg_optim *make_sgd(tg_tensor *p, const void *o) {
    return tg_sgd(1, &p, *(const tg_sgd_opts *)o);
}

/* Zero fields mean the documented defaults; TG_EXACT_ZERO means a real zero. */
START_TEST(test_zero_means_default) {
    tg_adam_opts dflt = TG_ADAM_DEFAULTS, lr_only = {.lr = 1e-3}, none = {0};
    double want = three_steps(make_adam, &dflt);
    ck_assert(isfinite(want) && want != 1.0);
    ck_assert_close(three_steps(make_adam, &lr_only), want, 0.0);
    ck_assert_close(three_steps(make_adam, &none), want, 0.0);
    /* beta1 = exact zero: the first moment is the gradient itself, so the last step is
     * lr * 2 / (sqrt(v_hat) + eps): a different result from the default. */
    tg_adam_opts b0 = {.lr = 1e-3, .beta1 = TG_EXACT_ZERO};
    double with_b0 = three_steps(make_adam, &b0);
    ck_assert(isfinite(with_b0) && fabs(with_b0 - want) > 1e-6);
    tg_tensor *p = param_with_grad(TG_F64, TG_SHAPE(1), (double[]){1.0});
    tg_optim *o = tg_adam(1, &p, b0);
    tg_tensor_fill(p->grad, 0.25);
    ck_assert_int_eq(tg_optim_step(o), 0);
    tgt_assert_tensor(tg_optim_state(o, 0, "exp_avg"), (double[]){0.25}, 0.0);
    /* eps = exact zero is kept: 1 - 1e-3 * 0.25 / 0.25 exactly. */
    tg_optim_free(o);
    o = tg_adam(1, &p, (tg_adam_opts){.eps = TG_EXACT_ZERO});
    tg_tensor_fill(p, 1.0);
    ck_assert_int_eq(tg_optim_step(o), 0);
    tgt_assert_tensor(p, (double[]){1.0 - 1e-3}, 1e-16);
    tg_optim_free(o);

    tg_rmsprop_opts rd = TG_RMSPROP_DEFAULTS, rnone = {0}, rmom = {.momentum = 0.5};
    double rwant = three_steps(make_rmsprop, &rd);
    ck_assert_close(three_steps(make_rmsprop, &rnone), rwant, 0.0);
    rd.momentum = 0.5;
    ck_assert_close(three_steps(make_rmsprop, &rmom), three_steps(make_rmsprop, &rd), 0.0);

    /* SGD: lr 0 means 1e-3; one step with gradient 2 moves p by 2e-3. */
    o = tg_sgd(1, &p, (tg_sgd_opts){0});
    tg_tensor_fill(p, 1.0);
    tg_tensor_fill(p->grad, 2.0);
    ck_assert_int_eq(tg_optim_step(o), 0);
    tgt_assert_tensor(p, (double[]){1.0 - 2e-3}, 1e-16);
    ck_assert_close(tg_optim_get_lr(o), 1e-3, 0.0);
    tg_optim_free(o);
    tg_sgd_opts s_exact = {.lr = TG_EXACT_ZERO};
    ck_assert_close(three_steps(make_sgd, &s_exact), 1.0, 0.0);
    /* Invalid combinations are still rejected at construction. */
    ck_assert_op_error(tg_sgd(1, &p, (tg_sgd_opts){.nesterov = true}), "tg_sgd", "nesterov");
    ck_assert_op_error(tg_adam(1, &p, (tg_adam_opts){.beta2 = -0.5}), "tg_adam", "beta2");
    tg_tape_reset();
    tg_tensor_free(p);
}
END_TEST

START_TEST(test_alloc_failure) {
    tg_tape_free(); /* memory must be released by the allocator that gave it */
    tg_set_allocator(&(tg_allocator){failing_alloc, plain_release, NULL});
    fail_countdown = -1;
    tg_tensor *a = param_with_grad(TG_F64, TG_SHAPE(3), (double[]){1, 2, 3});
    tg_tensor *b = param_with_grad(TG_F32, TG_SHAPE(2), (double[]){1, 2});
    tg_tensor *params[2] = {a, b};
    bool succeeded = false;
    for (int k = 0; k < 20 && !succeeded; k++) {
        fail_countdown = k;
        tg_clear_error();
        tg_adam_opts ao = TG_ADAM_DEFAULTS;
        ao.amsgrad = true;
        tg_optim *o = tg_adam(2, params, ao);
        fail_countdown = -1;
        if (o) {
            succeeded = true;
            ck_assert_int_eq(tg_optim_step(o), 0);
            tg_optim_free(o);
        } else {
            tgt_assert_error_has("tg_adam", (const char *[]){"out of memory"}, 1);
        }
    }
    ck_assert(succeeded);
    tg_tape_reset();
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_set_allocator(NULL);
}
END_TEST

static Suite *optim_suite(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, test_reference_f64, 0, OPTREF_NCASES);
    tcase_add_loop_test(tc, test_reference_f32, 0, OPTREF_NCASES);
    tcase_add_test(tc, test_sgd_momentum_persists);
    tcase_add_test(tc, test_adam_rmsprop_state_persists);
    tcase_add_test(tc, test_state_names);
    tcase_add_test(tc, test_null_grad_skipped);
    tcase_add_test(tc, test_f32_with_backward);
    tcase_add_test(tc, test_f32_matches_f64_large);
    tcase_add_test(tc, test_step_bad_grad);
    tcase_add_test(tc, test_get_set_lr);
    tcase_add_test(tc, test_schedules);
    tcase_add_test(tc, test_clip_grad_norm);
    tcase_add_test(tc, test_bad_params);
    tcase_add_test(tc, test_bad_hyperparameters);
    tcase_add_test(tc, test_zero_means_default);
    tcase_add_test(tc, test_alloc_failure);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tgt_run(optim_suite()); }
