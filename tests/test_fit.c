/* test_fit.c — tg_model_fit's options (validation data, callbacks, early stopping, the
 * non-finite loss guard, initial_epoch), tg_model_evaluate, and training checkpoints
 * (model + optimizer state + epoch) with a bitwise resume. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad/data.h>
#include <tapegrad/io.h>
#include <tapegrad/nn.h>
#include <tapegrad/optim.h>

#include "testutil.h"

/* Linear(2,16) -> ReLU -> Linear(16,3), initialised from tg_seed(seed). */
static tg_model *small_model(uint64_t seed) { return tgt_mlp(seed, 2, 16, 3); }

static tg_fit_opts base_opts(tg_optim *opt, int epochs) {
    return (tg_fit_opts){.batch_size = 16,
                         .epochs = epochs,
                         .shuffle = true,
                         .seed = 7,
                         .loss = tg_loss_cross_entropy,
                         .optim = opt};
}

/* Asserts that the parameters of a and b hold the same bytes. */
static void assert_params_bitwise(tg_model *a, tg_model *b) {
    tg_tensor *pa[8], *pb[8];
    int n = tg_model_params(a, pa, 8);
    ck_assert_int_eq(tg_model_params(b, pb, 8), n);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(pa[i]->numel, pb[i]->numel);
        ck_assert_msg(memcmp(pa[i]->data, pb[i]->data, (size_t)pa[i]->numel * sizeof(float)) == 0,
                      "parameter %d differs (first elements %.9g vs %.9g)", i,
                      tg_tensor_get(pa[i], 0), tg_tensor_get(pb[i], 0));
    }
}

typedef struct {
    int epochs_seen, steps_seen;
    int stop_at_epoch, stop_at_step; /* -1: never */
    tg_fit_progress last;
} recorder;

static int record_epoch(const tg_fit_progress *p, void *ctx) {
    recorder *r = ctx;
    r->epochs_seen++;
    r->last = *p;
    return p->epoch == r->stop_at_epoch;
}

static int record_step(const tg_fit_progress *p, void *ctx) {
    recorder *r = ctx;
    r->steps_seen++;
    ck_assert_int_eq(p->step, (r->steps_seen - 1) % p->steps + 1);
    ck_assert(isnan(p->val_loss));
    return r->steps_seen == r->stop_at_step;
}

START_TEST(validation_reported) {
    tg_tensor *X, *y, *Xv, *yv;
    ck_assert_int_eq(tg_data_spiral(30, 3, 1, &X, &y), 0);
    ck_assert_int_eq(tg_data_spiral(20, 3, 2, &Xv, &yv), 0);
    tg_model *m = small_model(1);
    tg_optim *opt = tgt_adam_over(m, 1e-2);
    recorder r = {.stop_at_epoch = -1, .stop_at_step = -1};
    tg_fit_opts fo = base_opts(opt, 3);
    fo.val_X = Xv;
    fo.val_y = yv;
    fo.on_epoch = record_epoch;
    fo.callback_ctx = &r;
    fo.verbose = 1;
    double l[3];
    ck_assert_int_eq(tg_model_fit(m, X, y, &fo, l), 0);
    ck_assert_int_eq(r.epochs_seen, 3);
    ck_assert_int_eq(r.last.epoch, 2);
    ck_assert_int_eq(r.last.steps, 6); /* 90 rows in batches of 16 */
    ck_assert_int_eq(r.last.rows, 90);
    ck_assert_close(r.last.train_loss, l[2], 0.0);
    ck_assert(r.last.train_accuracy >= 0.0 && r.last.train_accuracy <= 1.0);
    /* The reported validation figures are those of the final parameters. */
    ck_assert_close(r.last.val_loss, tg_model_evaluate(m, Xv, yv, tg_loss_cross_entropy), 1e-6);
    ck_assert_close(r.last.val_accuracy, tg_model_accuracy(m, Xv, yv), 0.0);
    tg_tape_reset();
    tg_optim_free(opt);
    tg_model_free(m);
    tg_tensor *del[] = {X, y, Xv, yv};
    for (int i = 0; i < 4; i++)
        tg_tensor_free(del[i]);
}
END_TEST

START_TEST(evaluate_matches_full_batch_loss) {
    tg_tensor *X, *y;
    ck_assert_int_eq(tg_data_spiral(700, 3, 3, &X, &y), 0); /* 2100 rows: three batches */
    tg_model *m = small_model(3);
    double e = tg_model_evaluate(m, X, y, tg_loss_cross_entropy);
    tg_tensor *x = tg_tensor_clone(X);
    double direct = tg_item(tg_loss_cross_entropy(tg_model_forward(m, x), y));
    ck_assert_close(e, direct, 1e-6);
    tg_tape_reset();
    ck_assert(isnan(tg_model_evaluate(NULL, X, y, tg_loss_cross_entropy)));
    ck_assert(isnan(tg_model_evaluate(m, X, y, NULL)));
    tg_tensor *y_short = tg_tensor_new(TG_I64, TG_SHAPE(5));
    ck_assert(isnan(tg_model_evaluate(m, X, y_short, tg_loss_cross_entropy)));
    ck_assert_ptr_nonnull(strstr(tg_error(), "tg_model_evaluate"));
    tg_tensor_free(y_short);
    tg_tensor_free(x);
    tg_model_free(m);
    tg_tensor_free(X);
    tg_tensor_free(y);
}
END_TEST

START_TEST(callbacks_stop_training) {
    tg_tensor *X, *y;
    ck_assert_int_eq(tg_data_spiral(30, 3, 4, &X, &y), 0);
    tg_model *m = small_model(4);
    tg_optim *opt = tgt_adam_over(m, 1e-2);
    recorder r = {.stop_at_epoch = 1, .stop_at_step = -1};
    tg_fit_opts fo = base_opts(opt, 10);
    fo.on_epoch = record_epoch;
    fo.on_step = record_step;
    fo.callback_ctx = &r;
    double l[10];
    for (int i = 0; i < 10; i++)
        l[i] = -1.0;
    ck_assert_int_eq(tg_model_fit(m, X, y, &fo, l), 0);
    ck_assert_int_eq(r.epochs_seen, 2); /* epochs 0 and 1, then the callback said stop */
    ck_assert(l[1] > 0.0 && l[2] == -1.0);
    /* on_step stopping after its 3rd step: the epoch still closes, its figures covering
     * the rows trained. */
    recorder s = {.stop_at_epoch = -1, .stop_at_step = 3};
    fo.callback_ctx = &s;
    ck_assert_int_eq(tg_model_fit(m, X, y, &fo, NULL), 0);
    ck_assert_int_eq(s.steps_seen, 3);
    ck_assert_int_eq(s.epochs_seen, 1);
    ck_assert_int_eq(s.last.rows, 48);
    tg_tape_reset();
    tg_optim_free(opt);
    tg_model_free(m);
    tg_tensor_free(X);
    tg_tensor_free(y);
}
END_TEST

START_TEST(early_stopping_with_patience) {
    tg_tensor *X, *y;
    ck_assert_int_eq(tg_data_spiral(20, 3, 5, &X, &y), 0);
    tg_model *m = small_model(5);
    tg_tensor *ps[8];
    int n = tg_model_params(m, ps, 8);
    /* A zero learning rate: the loss never improves after the first epoch. */
    tg_optim *still = tg_sgd(n, ps, (tg_sgd_opts){.lr = TG_EXACT_ZERO});
    recorder r = {.stop_at_epoch = -1, .stop_at_step = -1};
    tg_fit_opts fo = base_opts(still, 50);
    fo.on_epoch = record_epoch;
    fo.callback_ctx = &r;
    fo.patience = 2;
    fo.min_delta = 1e-6; /* the reshuffled sums differ in the last bits */
    ck_assert_int_eq(tg_model_fit(m, X, y, &fo, NULL), 0);
    ck_assert_int_eq(r.epochs_seen, 3); /* epoch 0 is the best; 1 and 2 use up patience */
    ck_assert_int_eq(r.last.best_epoch, 0);
    /* A learning model with a large patience runs every epoch. */
    tg_optim *opt = tgt_adam_over(m, 1e-2);
    fo.optim = opt;
    fo.epochs = 5;
    fo.patience = 5;
    r = (recorder){.stop_at_epoch = -1, .stop_at_step = -1};
    ck_assert_int_eq(tg_model_fit(m, X, y, &fo, NULL), 0);
    ck_assert_int_eq(r.epochs_seen, 5);
    ck_assert_int_eq(r.last.best_epoch, 4);
    tg_tape_reset();
    tg_optim_free(still);
    tg_optim_free(opt);
    tg_model_free(m);
    tg_tensor_free(X);
    tg_tensor_free(y);
}
END_TEST

START_TEST(non_finite_loss_stops) {
    tg_tensor *X, *y;
    ck_assert_int_eq(tg_data_spiral(20, 3, 6, &X, &y), 0);
    ((float *)X->data)[2 * 37] = NAN; /* row 37: the third batch of 16, in order */
    tg_model *m = small_model(6), *ref = small_model(6);
    tg_optim *opt = tgt_adam_over(m, 1e-2), *ref_opt = tgt_adam_over(ref, 1e-2);
    tg_fit_opts fo = base_opts(opt, 3);
    fo.shuffle = false;
    ck_assert_int_error(tg_model_fit(m, X, y, &fo, NULL), "tg_model_fit", "nan", "epoch 1, step 3");
    /* The first two steps ran and nothing else: the same as a clean run of two steps. */
    tg_tensor *X32 = tg_slice(X, 0, 0, 32), *y32 = tg_slice(y, 0, 0, 32);
    tg_tensor *Xc = tg_tensor_clone(X32), *yc = tg_tensor_clone(y32);
    tg_tape_reset();
    tg_fit_opts ro = base_opts(ref_opt, 1);
    ro.shuffle = false;
    ck_assert_int_eq(tg_model_fit(ref, Xc, yc, &ro, NULL), 0);
    assert_params_bitwise(m, ref);
    /* An optimizer whose options were left at 0 trains (the defaults), not to NaN. */
    ((float *)X->data)[2 * 37] = 0.5f;
    tg_tensor *ps[8];
    int n = tg_model_params(m, ps, 8);
    tg_optim *dflt = tg_adam(n, ps, (tg_adam_opts){.lr = 1e-3});
    fo.optim = dflt;
    double l[3];
    ck_assert_int_eq(tg_model_fit(m, X, y, &fo, l), 0);
    ck_assert(isfinite(l[2]) && l[2] < l[0]);
    tg_tape_reset();
    tg_optim_free(dflt);
    tg_optim_free(opt);
    tg_optim_free(ref_opt);
    tg_model_free(m);
    tg_model_free(ref);
    tg_tensor *del[] = {X, y, Xc, yc};
    for (int i = 0; i < 4; i++)
        tg_tensor_free(del[i]);
}
END_TEST

START_TEST(bad_fit_options) {
    tg_tensor *X, *y, *Xv, *yv;
    ck_assert_int_eq(tg_data_spiral(10, 3, 8, &X, &y), 0);
    ck_assert_int_eq(tg_data_spiral(5, 3, 9, &Xv, &yv), 0);
    tg_tensor *X3 = tg_tensor_new(TG_F32, TG_SHAPE(15, 3));
    tg_tensor *Xd = tg_tensor_new(TG_F64, TG_SHAPE(15, 2));
    tg_model *m = small_model(8);
    tg_optim *opt = tgt_adam_over(m, 1e-2);
    tg_fit_opts fo = base_opts(opt, 3);
    fo.initial_epoch = 3;
    ck_assert_int_error(tg_model_fit(m, X, y, &fo, NULL), "tg_model_fit", "initial_epoch", "3");
    fo.initial_epoch = -1;
    ck_assert_int_error(tg_model_fit(m, X, y, &fo, NULL), "tg_model_fit", "initial_epoch");
    fo = base_opts(opt, 3);
    fo.patience = -2;
    ck_assert_int_error(tg_model_fit(m, X, y, &fo, NULL), "tg_model_fit", "patience", "-2");
    fo = base_opts(opt, 3);
    fo.min_delta = NAN;
    ck_assert_int_error(tg_model_fit(m, X, y, &fo, NULL), "tg_model_fit", "min_delta");
    fo = base_opts(opt, 3);
    fo.val_X = Xv;
    ck_assert_int_error(tg_model_fit(m, X, y, &fo, NULL), "tg_model_fit", "val_y NULL");
    fo.val_y = y; /* 30 labels for 15 rows */
    ck_assert_int_error(tg_model_fit(m, X, y, &fo, NULL), "tg_model_fit", "rows");
    fo.val_X = X3;
    fo.val_y = yv;
    ck_assert_int_error(tg_model_fit(m, X, y, &fo, NULL), "tg_model_fit", "validation", "[15,3]");
    fo.val_X = Xd;
    ck_assert_int_error(tg_model_fit(m, X, y, &fo, NULL), "tg_model_fit", "validation", "f64");
    fo = base_opts(opt, 3);
    fo.max_grad_norm = -1.0;
    ck_assert_int_error(tg_model_fit(m, X, y, &fo, NULL), "tg_model_fit", "max_grad_norm", "-1");
    fo.max_grad_norm = NAN;
    ck_assert_int_error(tg_model_fit(m, X, y, &fo, NULL), "tg_model_fit", "max_grad_norm");
    /* Distributed training needs MPI started (or, without MPI, a build that has it). */
    fo = base_opts(opt, 3);
    fo.distributed = true;
    ck_assert_int_error(tg_model_fit(m, X, y, &fo, NULL), "tg_model_fit",
                        "distributed training needs");
    tg_tape_reset();
    tg_optim_free(opt);
    tg_model_free(m);
    tg_tensor *del[] = {X, y, Xv, yv, X3, Xd};
    for (int i = 0; i < 6; i++)
        tg_tensor_free(del[i]);
}
END_TEST

/* max_grad_norm clips after the backward pass and before the update: fit equals a
 * hand-written loop with tg_clip_grad_norm, bit for bit, and differs from no clipping. */
START_TEST(clipping_matches_manual_loop) {
    tg_tensor *X, *y;
    ck_assert_int_eq(tg_data_spiral(16, 3, 4, &X, &y), 0);
    tg_model *fitted = small_model(3), *manual = small_model(3), *plain = small_model(3);
    tg_optim *of = tgt_adam_over(fitted, 0.05), *om = tgt_adam_over(manual, 0.05), *op = tgt_adam_over(plain, 0.05);
    tg_fit_opts fo = {.batch_size = 16,
                      .epochs = 1,
                      .loss = tg_loss_cross_entropy,
                      .optim = of,
                      .max_grad_norm = 0.1};
    ck_assert_int_eq(tg_model_fit(fitted, X, y, &fo, NULL), 0);
    fo.optim = op;
    fo.max_grad_norm = 0.0;
    ck_assert_int_eq(tg_model_fit(plain, X, y, &fo, NULL), 0);
    tg_tensor *ps[8];
    int n = tg_model_params(manual, ps, 8);
    double largest = 0.0;
    for (int64_t start = 0; start < 48; start += 16) {
        tg_optim_zero_grad(om);
        tg_tensor *yb = tg_tensor_from(TG_I64, TG_SHAPE(16), (int64_t *)y->data + start);
        tg_tensor *loss =
            tg_loss_cross_entropy(tg_model_forward(manual, tg_slice(X, 0, start, start + 16)), yb);
        ck_assert_int_eq(tg_backward(loss), 0);
        largest = fmax(largest, tg_clip_grad_norm(n, ps, 0.1));
        ck_assert_int_eq(tg_optim_step(om), 0);
        tg_tape_reset();
        tg_tensor_free(yb);
    }
    ck_assert_msg(largest > 0.1, "the gradient norm %g never needed clipping", largest);
    assert_params_bitwise(fitted, manual);
    tg_tensor *pf[8], *pp[8];
    tg_model_params(fitted, pf, 8);
    tg_model_params(plain, pp, 8);
    ck_assert_msg(memcmp(pf[0]->data, pp[0]->data, (size_t)pf[0]->numel * sizeof(float)) != 0,
                  "clipping changed nothing");
    tg_optim_free(of);
    tg_optim_free(om);
    tg_optim_free(op);
    tg_model_free(fitted);
    tg_model_free(manual);
    tg_model_free(plain);
    tg_tensor_free(X);
    tg_tensor_free(y);
}
END_TEST

/* A path in the test's working directory, removed first. */
static const char *fresh_path(const char *name) {
    remove(name);
    return name;
}

START_TEST(training_checkpoint_round_trip) {
    tg_tensor *X, *y;
    ck_assert_int_eq(tg_data_spiral(20, 3, 10, &X, &y), 0);
    tg_model *m = small_model(10);
    tg_optim *opt = tgt_adam_over(m, 2e-2);
    tg_fit_opts fo = base_opts(opt, 2);
    ck_assert_int_eq(tg_model_fit(m, X, y, &fo, NULL), 0);
    tg_optim_set_lr(opt, 5e-3);
    const char *path = fresh_path("fit_ckpt.safetensors");
    ck_assert_int_eq(tg_model_save_training(m, opt, 2, path), 0);

    tg_model *m2 = small_model(99);
    tg_optim *opt2 = tgt_adam_over(m2, 1e-3);
    int64_t epoch = -1;
    ck_assert_int_eq(tg_model_load_training(m2, opt2, &epoch, path), 0);
    ck_assert_int_eq(epoch, 2);
    assert_params_bitwise(m, m2);
    ck_assert_close(tg_optim_get_lr(opt2), 5e-3, 0.0);
    static const char *const keys[] = {"exp_avg", "exp_avg_sq"};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(tg_optim_param_steps(opt2, i), tg_optim_param_steps(opt, i));
        ck_assert_int_eq(tg_optim_param_steps(opt2, i), 8); /* 2 epochs of 4 steps */
        for (int k = 0; k < 2; k++) {
            const tg_tensor *a = tg_optim_state(opt, i, keys[k]),
                            *b = tg_optim_state(opt2, i, keys[k]);
            ck_assert(memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0);
        }
    }

    /* Mismatches change nothing: another optimizer kind, a weights-only file, a model
     * file read as a training one and the other way round, a missing file. */
    tg_model *m3 = small_model(3);
    tg_tensor *ps[8];
    int n = tg_model_params(m3, ps, 8);
    tg_optim *sgd = tg_sgd(n, ps, (tg_sgd_opts){.lr = 0.1, .momentum = 0.9});
    tg_model *m3_copy = small_model(3);
    ck_assert_int_error(tg_model_load_training(m3, sgd, NULL, path), "tg_model_load_training",
                        "optim.0.momentum_buffer");
    ck_assert_int_eq(tg_optim_param_steps(sgd, 0), 0);
    assert_params_bitwise(m3, m3_copy);
    ck_assert_int_error(tg_model_load_training(m3, NULL, NULL, path), "tg_model_load_training");
    ck_assert_int_error(tg_model_load(m3, path), "tg_model_load");
    assert_params_bitwise(m3, m3_copy);
    const char *weights = fresh_path("fit_weights.safetensors");
    ck_assert_int_eq(tg_model_save(m, weights), 0);
    ck_assert_int_error(tg_model_load_training(m3, NULL, &epoch, weights), "tg_model_load_training",
                        "epoch");
    ck_assert_int_eq(epoch, 2);
    ck_assert_int_error(tg_model_load_training(m3, opt2, NULL, "no/such/file"),
                        "tg_model_load_training", "no/such/file");
    assert_params_bitwise(m3, m3_copy);
    /* Without an optimizer: model and epoch only. */
    const char *bare = fresh_path("fit_bare.safetensors");
    ck_assert_int_eq(tg_model_save_training(m, NULL, 7, bare), 0);
    ck_assert_int_eq(tg_model_load_training(m3, NULL, &epoch, bare), 0);
    ck_assert_int_eq(epoch, 7);
    assert_params_bitwise(m, m3);
    /* Bad arguments. */
    ck_assert_int_error(tg_model_save_training(NULL, opt, 1, path), "tg_model_save_training");
    ck_assert_int_error(tg_model_save_training(m, opt, -1, path), "tg_model_save_training", "epoch",
                        "-1");
    ck_assert_int_error(tg_model_save_training(m, opt, 1, "no/such/dir/f"),
                        "tg_model_save_training", "no/such/dir");
    ck_assert_int_error(tg_model_load_training(NULL, opt, NULL, path), "tg_model_load_training");
    remove(path);
    remove(weights);
    remove(bare);
    tg_tape_reset();
    tg_optim_free(sgd);
    tg_optim_free(opt);
    tg_optim_free(opt2);
    tg_model_free(m);
    tg_model_free(m2);
    tg_model_free(m3);
    tg_model_free(m3_copy);
    tg_tensor_free(X);
    tg_tensor_free(y);
}
END_TEST

/* 2 epochs, checkpoint, load into a fresh model and optimizer, 2 more epochs: the same
 * bits as 4 epochs in one go (shuffled batches, Adam). */
static void resume_case(tg_model *(*make)(uint64_t), const tg_tensor *X, const tg_tensor *y) {
    tg_model *straight = make(11);
    tg_optim *so = tgt_adam_over(straight, 1e-2);
    tg_fit_opts fo = base_opts(so, 4);
    ck_assert_int_eq(tg_model_fit(straight, X, y, &fo, NULL), 0);

    tg_model *first = make(11);
    tg_optim *fo1 = tgt_adam_over(first, 1e-2);
    fo = base_opts(fo1, 2);
    ck_assert_int_eq(tg_model_fit(first, X, y, &fo, NULL), 0);
    const char *path = fresh_path("fit_resume.safetensors");
    ck_assert_int_eq(tg_model_save_training(first, fo1, 2, path), 0);

    tg_model *resumed = make(12); /* other initial weights: all must come from the file */
    tg_optim *ro = tgt_adam_over(resumed, 1e-2);
    int64_t epoch = 0;
    ck_assert_int_eq(tg_model_load_training(resumed, ro, &epoch, path), 0);
    fo = base_opts(ro, 4);
    fo.initial_epoch = (int)epoch;
    double l[2];
    ck_assert_int_eq(tg_model_fit(resumed, X, y, &fo, l), 0);
    assert_params_bitwise(straight, resumed);
    ck_assert(isfinite(l[1]));
    remove(path);
    tg_tape_reset();
    tg_optim_free(so);
    tg_optim_free(fo1);
    tg_optim_free(ro);
    tg_model_free(straight);
    tg_model_free(first);
    tg_model_free(resumed);
}

/* Conv2d(1,2,3) -> ReLU -> MaxPool2d(2) -> Flatten -> Linear(8,3) on 6x6 images. */
static tg_model *tiny_cnn(uint64_t seed) {
    tg_seed(seed);
    tg_model *m = tg_model_new();
    ck_assert_int_eq(tg_model_add(m, tg_nn_conv2d(1, 2, 3, 1, 0, TG_F32)), 0);
    ck_assert_int_eq(tg_model_add(m, tg_nn_relu()), 0);
    ck_assert_int_eq(tg_model_add(m, tg_nn_maxpool2d(2, 2, 0)), 0);
    ck_assert_int_eq(tg_model_add(m, tg_nn_flatten()), 0);
    ck_assert_int_eq(tg_model_add(m, tg_nn_linear(8, 3, TG_F32)), 0);
    return m;
}

START_TEST(resume_is_bitwise) {
    tg_tensor *X, *y;
    ck_assert_int_eq(tg_data_spiral(20, 3, 12, &X, &y), 0);
    resume_case(small_model, X, y);
    tg_tensor_free(X);
    /* The same with a small CNN on random 6x6 images. */
    X = tgt_rand(TG_F32, TG_SHAPE(60, 1, 6, 6), -1.0, 1.0);
    resume_case(tiny_cnn, X, y);
    tg_tensor_free(X);
    tg_tensor_free(y);
}
END_TEST

static Suite *fit_suite(void) {
    Suite *s = suite_create("fit");
    TCase *t = tcase_create("options");
    tcase_add_test(t, validation_reported);
    tcase_add_test(t, evaluate_matches_full_batch_loss);
    tcase_add_test(t, callbacks_stop_training);
    tcase_add_test(t, early_stopping_with_patience);
    tcase_add_test(t, non_finite_loss_stops);
    tcase_add_test(t, bad_fit_options);
    tcase_add_test(t, clipping_matches_manual_loop);
    suite_add_tcase(s, t);
    t = tcase_create("checkpoints");
    tcase_add_test(t, training_checkpoint_round_trip);
    tcase_add_test(t, resume_is_bitwise);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tgt_run(fit_suite()); }
