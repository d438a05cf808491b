/* test_dist.c — data-parallel training over MPI (dist.h and tg_fit_opts.distributed).
 *
 * Run under mpirun by ctest (-np 2 and -np 3; see tests/CMakeLists.txt), or alone as a
 * world of one rank. Every rank runs every test in the same order.
 *
 * Why not Check: a failed ck_assert ends one rank's test while its peers sit inside a
 * collective waiting for it, so a failure would turn into a hang. Here a failed CHECK
 * prints the rank, the place and both sides, then calls MPI_Abort, which ends every
 * rank of the job at once with a nonzero status.
 *
 * `test_dist --die` is the rank-death scenario of tests/dist_dies.cmake: the last rank
 * exits in the middle of the job while the others wait in a combine; mpirun must end the
 * job with an error instead of letting them wait. */
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>
#include <tapegrad/data.h>

#include "nn/nn_internal.h"

static int rank, size;

static void fail_at(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", rank, file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    const char *e = tg_error();
    fprintf(stderr, " (tg_error: %s)\n", e ? e : "none");
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* Fails the whole job with a message (printf-style, at least a format) unless cond. */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) fail_at(__FILE__, __LINE__, #cond, __VA_ARGS__);                              \
    } while (0)

/* rc must be -1 and tg_error() must contain fragment. */
#define CHECK_ERROR(rc, fragment)                                                                  \
    do {                                                                                           \
        int ck_rc_ = (rc);                                                                         \
        const char *ck_e_ = tg_error();                                                            \
        CHECK(ck_rc_ == -1, "%s returned %d, expected -1", #rc, ck_rc_);                           \
        CHECK(ck_e_ &&strstr(ck_e_, fragment), "error \"%s\" lacks \"%s\"",                        \
              ck_e_ ? ck_e_ : "(none)", fragment);                                                 \
    } while (0)

/* Every rank must hold the same n bytes at p as rank 0. */
static void check_same_bytes(const void *p, size_t n, const char *what) {
    unsigned char *mine = malloc(n ? n : 1), *root = malloc(n ? n : 1);
    CHECK(mine && root, "out of memory");
    memcpy(mine, p, n);
    memcpy(root, p, n);
    MPI_Bcast(root, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
    size_t k = 0;
    while (k < n && mine[k] == root[k])
        k++;
    CHECK(k == n, "%s: byte %zu differs from rank 0's", what, k);
    free(mine);
    free(root);
}

static void check_same_tensor(const tg_tensor *t, const char *what) {
    check_same_bytes(t->data, (size_t)t->numel * tg_dtype_size(t->dtype), what);
}

/* A value that depends on the rank, the tensor and the element, with a wide range of
 * magnitudes so that the order of a sum changes its rounding. */
static double pattern(int r, int t, int64_t k) {
    double base = sin(1.0 + 0.37 * (double)r + 1.3 * (double)t + 0.011 * (double)k);
    return base * pow(10.0, (double)((k + r) % 9) - 4.0);
}

static tg_tensor *filled(tg_dtype dt, int64_t n, int r, int t) {
    tg_tensor *x = tg_tensor_new(dt, TG_SHAPE(n));
    CHECK(x != NULL, "tg_tensor_new");
    for (int64_t k = 0; k < n; k++)
        tg_tensor_set(x, k, dt == TG_I64 ? (double)(1000 * r + k) : pattern(r, t, k));
    return x;
}

/* Sets tg_error() the way a failed step would have before it reports failure. */
static void set_step_error(void) { tg__fail("test: an error set by the test"); }

/* ---------------- start, rank and size ---------------- */

static void test_rank_and_size(void) {
    CHECK(tg_dist_rank() == rank && tg_dist_size() == size, "rank %d size %d", tg_dist_rank(),
          tg_dist_size());
    CHECK(tg_dist_init(NULL, NULL) == 0, "a second tg_dist_init must be fine");
    int world = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    CHECK(world == size, "MPI_COMM_WORLD has %d ranks, tg_dist_size %d", world, size);
}

/* ---------------- broadcast ---------------- */

static void test_broadcast(void) {
    for (int root = 0; root<size; root += size> 1 ? size - 1 : 1) {
        tg_tensor *ts[3] = {filled(TG_F32, 5, rank, 0), filled(TG_F64, 1001, rank, 1),
                            filled(TG_I64, 7, rank, 2)};
        tg_requires_grad(ts[1], true);
        ts[1]->grad = filled(TG_F64, 1001, rank, 9); /* gradients are not sent */
        CHECK(tg_dist_broadcast(ts, 3, root) == 0, "broadcast from %d", root);
        for (int i = 0; i < 3; i++) {
            tg_tensor *want = filled(ts[i]->dtype, ts[i]->numel, root, i);
            CHECK(memcmp(ts[i]->data, want->data,
                         (size_t)want->numel * tg_dtype_size(want->dtype)) == 0,
                  "tensor %d differs from root %d's", i, root);
            check_same_tensor(ts[i], "broadcast tensor");
            tg_tensor_free(want);
        }
        tg_tensor *g = filled(TG_F64, 1001, rank, 9);
        CHECK(memcmp(ts[1]->grad->data, g->data, 1001 * sizeof(double)) == 0,
              "broadcast touched a gradient");
        tg_tensor_free(g);
        for (int i = 0; i < 3; i++)
            tg_tensor_free(ts[i]);
    }
    CHECK(tg_dist_broadcast(NULL, 0, 0) == 0, "an empty broadcast is fine");
}

static void test_broadcast_errors(void) {
    tg_tensor *ts[2] = {filled(TG_F64, 4, rank, 0), filled(TG_F32, 3, rank, 1)};
    CHECK_ERROR(tg_dist_broadcast(ts, 2, size), "is not a rank");
    CHECK_ERROR(tg_dist_broadcast(ts, 2, -1), "is not a rank");
    CHECK_ERROR(tg_dist_broadcast(ts, -1, 0), "n >= 0");
    /* The last rank alone passes a NULL tensor: it names it, every other rank names it. */
    int last = size - 1;
    tg_tensor *with_null[2] = {ts[0], rank == last ? NULL : ts[1]};
    char who[64];
    snprintf(who, sizeof who, "rank %d failed", last);
    CHECK_ERROR(tg_dist_broadcast(with_null, 2, 0), rank == last ? "tensor 1 is NULL" : who);
    if (size > 1) {
        /* The last rank passes one tensor fewer: everyone fails, nobody waits. */
        CHECK_ERROR(tg_dist_broadcast(ts, rank == last ? 1 : 2, 0), "ranks disagree");
        /* Same count, different sizes. */
        tg_tensor *other = filled(TG_F32, rank == last ? 4 : 3, rank, 1);
        tg_tensor *sized[2] = {ts[0], other};
        CHECK_ERROR(tg_dist_broadcast(sized, 2, 0), "ranks disagree");
        tg_tensor_free(other);
        /* Different roots. */
        CHECK_ERROR(tg_dist_broadcast(ts, 2, rank == last ? 0 : last), "ranks disagree");
    }
    /* A tape tensor cannot be sent. */
    tg_tensor *tape = tg_add(ts[0], ts[0]);
    tg_tensor *with_tape[2] = {ts[0], tape};
    CHECK_ERROR(tg_dist_broadcast(with_tape, 2, 0), "tape tensor");
    tg_tape_reset();
    /* After all those failures the ranks are still in step. */
    CHECK(tg_dist_broadcast(ts, 2, 0) == 0, "broadcast after failures");
    check_same_tensor(ts[0], "after failures");
    tg_tensor_free(ts[0]);
    tg_tensor_free(ts[1]);
}

/* ---------------- allreduce ---------------- */

/* Three F64 parameters (one not a multiple of the size, one frozen), two F32 ones, and
 * a gradient on each that depends on the rank. */
enum { NP = 5 };
static const int64_t sizes[NP] = {1001, 7, 64, 3, 500};
static const tg_dtype dtypes[NP] = {TG_F64, TG_F32, TG_F64, TG_F64, TG_F32};

static void make_params(tg_tensor **ps, int r) {
    for (int i = 0; i < NP; i++) {
        ps[i] = filled(dtypes[i], sizes[i], 0, 100 + i);
        tg_requires_grad(ps[i], i != 3);
        if (i != 3) ps[i]->grad = filled(dtypes[i], sizes[i], r, i);
    }
}

static void free_params(tg_tensor **ps, int n) {
    for (int i = 0; i < n; i++)
        tg_tensor_free(ps[i]);
}

static void test_allreduce_mean(void) {
    tg_tensor *ps[NP];
    make_params(ps, rank);
    CHECK(tg_dist_allreduce_grads(ps, NP) == 0, "allreduce");
    for (int i = 0; i < NP; i++) {
        if (i == 3) {
            CHECK(ps[i]->grad == NULL, "a frozen parameter got a gradient");
            continue;
        }
        check_same_tensor(ps[i]->grad, "averaged gradient");
        /* Against the mean of every rank's values, summed here in double. */
        for (int64_t k = 0; k < sizes[i]; k++) {
            double want = 0.0, scale = 0.0;
            for (int r = 0; r < size; r++) {
                double v = dtypes[i] == TG_F32 ? (double)(float)pattern(r, i, k) : pattern(r, i, k);
                want += v / size;
                scale += fabs(v) / size;
            }
            double got = tg_tensor_get(ps[i]->grad, k);
            double tol = (dtypes[i] == TG_F32 ? 1e-6 : 1e-15) * (scale + 1e-300);
            CHECK(fabs(got - want) <= tol, "param %d [%lld]: got %.17g, want %.17g", i,
                  (long long)k, got, want);
        }
    }
    free_params(ps, NP);
}

/* The combine with weight 1 (the internal one under tg_dist_allreduce_grads and fit) is
 * a plain sum over ranks: exact for integers, whatever the order. Odd ranks start with
 * no gradient, which counts as zeros; the buffers and the sums ride along. */
static void test_combine_exact(void) {
    tg_tensor *a = tg_tensor_new(TG_F64, TG_SHAPE(37)), *b = tg_tensor_new(TG_F32, TG_SHAPE(11));
    tg_tensor *buf = tg_tensor_new(TG_F32, TG_SHAPE(2, 3));
    tg_requires_grad(a, true);
    tg_requires_grad(b, true);
    if (rank % 2 == 0) {
        a->grad = tg_tensor_new(TG_F64, TG_SHAPE(37));
        b->grad = tg_tensor_new(TG_F32, TG_SHAPE(11));
        for (int64_t k = 0; k < 37; k++)
            tg_tensor_set(a->grad, k, (double)((rank + 1) * (k + 1)));
        for (int64_t k = 0; k < 11; k++)
            tg_tensor_set(b->grad, k, (double)((rank + 1) * (k - 5)));
    }
    for (int64_t k = 0; k < 6; k++)
        tg_tensor_set(buf, k, (double)(rank * 10 + k));
    double sums[2] = {1.0, (double)rank};
    tg__dist_reduce_args args = {.params = (tg_tensor *[]){a, b},
                                 .nparams = 2,
                                 .bufs = &buf,
                                 .nbufs = 1,
                                 .weight = 1.0,
                                 .sums = sums,
                                 .nsums = 2};
    CHECK(tg__dist_reduce("test", &args) == 0, "combine");
    CHECK(a->grad && b->grad, "a NULL gradient must be created");
    double even = 0.0, ranks = 0.0; /* sum of (r + 1) over even ranks, of r over all */
    for (int r = 0; r < size; r++) {
        if (r % 2 == 0) even += r + 1;
        ranks += r;
    }
    for (int64_t k = 0; k < 37; k++)
        CHECK(tg_tensor_get(a->grad, k) == even * (double)(k + 1), "a[%lld] = %.17g", (long long)k,
              tg_tensor_get(a->grad, k));
    for (int64_t k = 0; k < 11; k++)
        CHECK(tg_tensor_get(b->grad, k) == even * (double)(k - 5), "b[%lld] = %.9g", (long long)k,
              tg_tensor_get(b->grad, k));
    for (int64_t k = 0; k < 6; k++)
        CHECK(tg_tensor_get(buf, k) == 10.0 * ranks + (double)(size * k), "buf[%lld] = %g",
              (long long)k, tg_tensor_get(buf, k));
    CHECK(sums[0] == (double)size && sums[1] == ranks, "sums %g %g", sums[0], sums[1]);
    /* A rank that reports a failed step makes every rank fail, and nothing moves. */
    args.failed = rank == size - 1;
    char who[64];
    snprintf(who, sizeof who, "rank %d failed", size - 1);
    tg_clear_error();
    if (args.failed) set_step_error();
    CHECK_ERROR(tg__dist_reduce("test", &args), args.failed ? "set by the test" : who);
    CHECK(sums[0] == (double)size, "a failed combine moved data");
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(buf);
}

static void test_allreduce_errors(void) {
    tg_tensor *ps[NP];
    make_params(ps, rank);
    int last = size - 1;
    char who[64];
    snprintf(who, sizeof who, "rank %d failed", last);
    if (size > 1) {
        /* A different parameter count on one rank: every rank fails, none hangs, and no
         * gradient changes. */
        tg_tensor *before = tg_tensor_clone(ps[0]->grad);
        CHECK_ERROR(tg_dist_allreduce_grads(ps, rank == last ? NP - 1 : NP), "ranks disagree");
        CHECK(memcmp(before->data, ps[0]->grad->data, 1001 * sizeof(double)) == 0,
              "a failed allreduce changed a gradient");
        tg_tensor_free(before);
        /* Same count, another dtype on one rank. */
        tg_tensor *odd = filled(rank == last ? TG_F32 : TG_F64, 64, 0, 0);
        tg_requires_grad(odd, true);
        tg_tensor *swapped[NP] = {ps[0], ps[1], odd, ps[3], ps[4]};
        CHECK_ERROR(tg_dist_allreduce_grads(swapped, NP), "ranks disagree");
        tg_tensor_free(odd);
    }
    /* A gradient of the wrong size on the last rank. */
    tg_tensor *wrong = tg_tensor_new(TG_F32, TG_SHAPE(8));
    tg_tensor *saved = ps[1]->grad;
    if (rank == last) ps[1]->grad = wrong;
    CHECK_ERROR(tg_dist_allreduce_grads(ps, NP), rank == last ? "gradient of parameter 1" : who);
    ps[1]->grad = saved;
    tg_tensor_free(wrong);
    /* A failed call must not leave the gradients it would have created. */
    tg_tensor *fresh = tg_tensor_new(TG_F64, TG_SHAPE(3));
    tg_requires_grad(fresh, true);
    tg_tensor *i64 = tg_tensor_new(TG_I64, TG_SHAPE(2));
    tg_tensor *bad[2] = {fresh, rank == last ? i64 : fresh};
    CHECK_ERROR(tg_dist_allreduce_grads(bad, 2), rank == last ? "must be f32 or f64" : who);
    CHECK(fresh->grad == NULL, "a failed allreduce left a new gradient behind");
    tg_tensor_free(fresh);
    tg_tensor_free(i64);
    CHECK_ERROR(tg_dist_allreduce_grads(NULL, 2), "n >= 0");
    /* Still in step. */
    CHECK(tg_dist_allreduce_grads(ps, NP) == 0, "allreduce after failures");
    check_same_tensor(ps[0]->grad, "after failures");
    free_params(ps, NP);
}

/* ---------------- tg_model_fit with distributed = true ---------------- */

/* Linear(4,16) -> [Dropout(0.3) or BatchNorm1d(16)] -> ReLU -> Linear(16,3) in F64 from
 * tg_seed(seed); middle: 0 none, 1 dropout, 2 batch norm, which *mid (may be NULL)
 * receives (owned by the model). */
static tg_model *fit_model_mid(uint64_t seed, int middle, tg_module **mid) {
    tg_seed(seed);
    tg_model *m = tg_model_new();
    CHECK(tg_model_add(m, tg_nn_linear(4, 16, TG_F64)) == 0, "linear");
    tg_module *extra = middle == 1   ? tg_nn_dropout(0.3)
                       : middle == 2 ? tg_nn_batchnorm1d(16, TG_F64)
                                     : NULL;
    if (extra) CHECK(tg_model_add(m, extra) == 0, "middle layer");
    if (mid) *mid = extra;
    CHECK(tg_model_add(m, tg_nn_relu()) == 0, "relu");
    CHECK(tg_model_add(m, tg_nn_linear(16, 3, TG_F64)) == 0, "linear");
    return m;
}

static tg_model *fit_model(uint64_t seed, int middle) { return fit_model_mid(seed, middle, NULL); }

/* F64 X [n, 4] and labels from a fixed generator: the same on every rank. */
static void fit_data(int64_t n, tg_tensor **X, tg_tensor **y) {
    tg_rng g;
    tg_rng_seed(&g, 11);
    *X = tg_tensor_new(TG_F64, TG_SHAPE(n, 4));
    *y = tg_tensor_new(TG_I64, TG_SHAPE(n));
    for (int64_t i = 0; i < n * 4; i++)
        ((double *)(*X)->data)[i] = tg_rng_normal(&g);
    for (int64_t i = 0; i < n; i++)
        ((int64_t *)(*y)->data)[i] = (int64_t)tg_rng_below(&g, 3);
}

static tg_optim *fit_optim(tg_model *m, bool adam) {
    tg_tensor *ps[8];
    int n = tg_model_params(m, ps, 8);
    tg_optim *o = adam ? tg_adam(n, ps, (tg_adam_opts){.lr = 1e-2})
                       : tg_sgd(n, ps, (tg_sgd_opts){.lr = 0.05, .momentum = 0.9});
    CHECK(o != NULL, "optimizer");
    return o;
}

typedef struct {
    const char *name;
    bool adam;
    int64_t rows, batch; /* ragged when batch does not divide rows or the slices */
    double clip;         /* max_grad_norm */
} fit_case;

/* Largest |a - b| over the parameters of two models of one architecture. */
static double params_diff(tg_model *a, tg_model *b) {
    tg_tensor *pa[8], *pb[8];
    int n = tg_model_params(a, pa, 8);
    CHECK(tg_model_params(b, pb, 8) == n, "parameter counts");
    double worst = 0.0;
    for (int i = 0; i < n; i++)
        for (int64_t k = 0; k < pa[i]->numel; k++)
            worst = fmax(worst, fabs(tg_tensor_get(pa[i], k) - tg_tensor_get(pb[i], k)));
    return worst;
}

static void check_same_params(tg_model *m, const char *what) {
    tg_tensor *ps[8];
    int n = tg_model_params(m, ps, 8);
    for (int i = 0; i < n; i++)
        check_same_tensor(ps[i], what);
}

/* One rank training alone (not distributed) against all ranks training together: the
 * same parameters to 1e-9 and the same epoch losses, and bitwise-equal parameters on
 * every rank. The distributed model starts from another seed on every rank but 0, so
 * the broadcast on entry is needed. */
static void check_fit_case(const fit_case *c) {
    enum { EPOCHS = 3 };
    tg_tensor *X, *y;
    fit_data(c->rows, &X, &y);
    tg_model *ref = fit_model(5, 0), *dm = fit_model(rank == 0 ? 5 : 50 + (uint64_t)rank, 0);
    tg_optim *ro = fit_optim(ref, c->adam), *dopt = fit_optim(dm, c->adam);
    tg_fit_opts fo = {.batch_size = c->batch,
                      .epochs = EPOCHS,
                      .shuffle = true,
                      .seed = 3,
                      .loss = tg_loss_cross_entropy,
                      .optim = ro,
                      .max_grad_norm = c->clip};
    double ref_loss[EPOCHS], dist_loss[EPOCHS];
    CHECK(tg_model_fit(ref, X, y, &fo, ref_loss) == 0, "%s: fit alone", c->name);
    fo.optim = dopt;
    fo.distributed = true;
    CHECK(tg_model_fit(dm, X, y, &fo, dist_loss) == 0, "%s: distributed fit", c->name);
    double d = params_diff(ref, dm);
    CHECK(d <= 1e-9, "%s: parameters differ from one rank's by %.3g", c->name, d);
    for (int e = 0; e < EPOCHS; e++)
        CHECK(fabs(ref_loss[e] - dist_loss[e]) <= 1e-9, "%s: epoch %d loss %.17g vs %.17g", c->name,
              e, dist_loss[e], ref_loss[e]);
    check_same_params(dm, c->name);
    check_same_bytes(dist_loss, sizeof dist_loss, "epoch losses");
    if (rank == 0)
        printf("    %s: largest difference from one rank %.2g (%d ranks)\n", c->name, d, size);
    tg_optim_free(ro);
    tg_optim_free(dopt);
    tg_model_free(ref);
    tg_model_free(dm);
    tg_tensor_free(X);
    tg_tensor_free(y);
}

static void test_fit_matches_one_rank(void) {
    static const fit_case cases[] = {
        {"sgd-momentum, divisible", false, 24, 6, 0.0},
        {"sgd-momentum, ragged", false, 25, 7, 0.0},
        {"adam, divisible", true, 24, 6, 0.0},
        {"adam, ragged", true, 25, 7, 0.0},
        {"sgd, batch 2 (empty slices)", false, 7, 2, 0.0},
        {"adam, clipped", true, 25, 5, 0.05},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_fit_case(&cases[i]);
}

/* Dropout: parameters stay bitwise equal across ranks, a second run from the same start
 * gives the same bits, and each rank's generator ends on its own stream. */
static void test_fit_dropout(void) {
    tg_tensor *X, *y;
    fit_data(30, &X, &y);
    double draw[2];
    tg_model *ms[2];
    for (int run = 0; run < 2; run++) {
        ms[run] = fit_model(9, 1);
        tg_optim *o = fit_optim(ms[run], true);
        tg_fit_opts fo = {.batch_size = 10,
                          .epochs = 2,
                          .shuffle = true,
                          .loss = tg_loss_cross_entropy,
                          .optim = o,
                          .distributed = true};
        CHECK(tg_model_fit(ms[run], X, y, &fo, NULL) == 0, "dropout fit, run %d", run);
        draw[run] = tg_rand_uniform();
        tg_optim_free(o);
    }
    check_same_params(ms[0], "dropout model");
    CHECK(params_diff(ms[0], ms[1]) == 0.0, "a second run differs: %g", params_diff(ms[0], ms[1]));
    CHECK(draw[0] == draw[1], "the generator is not reproducible");
    double *all = malloc(sizeof *all * (size_t)size);
    MPI_Allgather(&draw[0], 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, MPI_COMM_WORLD);
    for (int r = 0; r < size; r++)
        CHECK(r == rank || all[r] != draw[0], "ranks %d and %d share a dropout stream", r, rank);
    free(all);
    tg_model_free(ms[0]);
    tg_model_free(ms[1]);
    tg_tensor_free(X);
    tg_tensor_free(y);
}

/* Batch norm: every rank ends with the same running statistics; after one step on the
 * whole data set running_mean is 0.1 * the global batch mean, as on one rank (the mean
 * of the slices' means, weighted by rows, is the batch mean), while running_var is the
 * weighted mean of the slices' variances (documented) and differs from one rank's. */
static void test_fit_batchnorm(void) {
    tg_tensor *X, *y;
    fit_data(36, &X, &y);
    tg_module *bn_ref, *bn_dist;
    tg_model *ref = fit_model_mid(4, 2, &bn_ref), *dm = fit_model_mid(4, 2, &bn_dist);
    tg_optim *ro = fit_optim(ref, false), *dopt = fit_optim(dm, false);
    tg_fit_opts fo = {.batch_size = 36, .epochs = 1, .loss = tg_loss_cross_entropy, .optim = ro};
    CHECK(tg_model_fit(ref, X, y, &fo, NULL) == 0, "batch norm alone");
    fo.optim = dopt;
    fo.distributed = true;
    CHECK(tg_model_fit(dm, X, y, &fo, NULL) == 0, "batch norm distributed");
    tg_tensor *rs[4], *ds[4];
    CHECK(tg_module_state(bn_ref, NULL, rs, 4) == 4 && tg_module_state(bn_dist, NULL, ds, 4) == 4,
          "batch norm state");
    for (int64_t k = 0; k < 16; k++) {
        double want = tg_tensor_get(rs[2], k), got = tg_tensor_get(ds[2], k);
        CHECK(fabs(got - want) <= 1e-12, "running_mean[%lld] %.17g vs %.17g", (long long)k, got,
              want);
    }
    check_same_tensor(ds[2], "running_mean");
    check_same_tensor(ds[3], "running_var");
    double d = params_diff(ref, dm);
    CHECK(size > 1 || d == 0.0, "one rank differs from fit alone by %g", d);
    check_same_params(dm, "batch norm model");
    tg_model_free(ref);
    tg_model_free(dm);
    tg_optim_free(ro);
    tg_optim_free(dopt);
    tg_tensor_free(X);
    tg_tensor_free(y);
}

/* Resuming with any world size: a checkpoint written after 2 epochs by one process is
 * loaded by rank 0 only; every rank fits epochs 2-3 together; the result matches 4
 * epochs in one process (the optimizer's moments and step counts come from rank 0). */
static void test_fit_resume(void) {
    tg_tensor *X, *y;
    fit_data(25, &X, &y);
    tg_model *straight = fit_model(6, 0), *first = fit_model(6, 0);
    tg_optim *so = fit_optim(straight, true), *fo1 = fit_optim(first, true);
    tg_fit_opts fo = {.batch_size = 8,
                      .epochs = 4,
                      .shuffle = true,
                      .seed = 5,
                      .loss = tg_loss_cross_entropy,
                      .optim = so};
    CHECK(tg_model_fit(straight, X, y, &fo, NULL) == 0, "4 epochs straight");
    char path[64];
    snprintf(path, sizeof path, "dist_resume_%d.safetensors", size);
    if (rank == 0) {
        fo.epochs = 2;
        fo.optim = fo1;
        CHECK(tg_model_fit(first, X, y, &fo, NULL) == 0, "2 epochs");
        CHECK(tg_model_save_training(first, fo1, 2, path) == 0, "save");
    }
    tg_model *resumed = fit_model(60 + (uint64_t)rank, 0);
    tg_optim *ro = fit_optim(resumed, true);
    if (rank == 0) {
        int64_t epoch = 0;
        CHECK(tg_model_load_training(resumed, ro, &epoch, path) == 0 && epoch == 2, "load");
        remove(path);
    }
    fo.epochs = 4;
    fo.initial_epoch = 2;
    fo.optim = ro;
    fo.distributed = true;
    CHECK(tg_model_fit(resumed, X, y, &fo, NULL) == 0, "resumed distributed fit");
    double d = params_diff(straight, resumed);
    CHECK(d <= 1e-9, "resumed on %d ranks differs from 4 epochs straight by %.3g", size, d);
    check_same_params(resumed, "resumed model");
    CHECK(tg_optim_param_steps(ro, 0) == tg_optim_param_steps(so, 0), "steps %lld vs %lld",
          (long long)tg_optim_param_steps(ro, 0), (long long)tg_optim_param_steps(so, 0));
    tg_model_free(straight);
    tg_model_free(first);
    tg_model_free(resumed);
    tg_optim_free(so);
    tg_optim_free(fo1);
    tg_optim_free(ro);
    tg_tensor_free(X);
    tg_tensor_free(y);
}

/* A failure or a mismatch on one rank makes fit return -1 on every rank, and nobody
 * waits; afterwards the ranks are still in step. */
static void test_fit_errors(void) {
    tg_tensor *X, *y, *Xs, *ys;
    fit_data(24, &X, &y);
    fit_data(23, &Xs, &ys);
    tg_model *m = fit_model(2, 0), *big = fit_model(2, 1);
    tg_optim *o = fit_optim(m, true), *ob = fit_optim(big, true);
    int last = size - 1;
    char who[64];
    snprintf(who, sizeof who, "rank %d failed", last);
    tg_fit_opts fo = {.batch_size = 6,
                      .epochs = 2,
                      .loss = tg_loss_cross_entropy,
                      .optim = o,
                      .distributed = true};
    /* A bad option on the last rank only. */
    fo.epochs = rank == last ? 0 : 2;
    CHECK_ERROR(tg_model_fit(m, X, y, &fo, NULL), rank == last ? "epochs must be >= 1" : who);
    fo.epochs = 2;
    if (size > 1) {
        /* Fewer rows on the last rank. */
        CHECK_ERROR(tg_model_fit(m, rank == last ? Xs : X, rank == last ? ys : y, &fo, NULL),
                    "ranks disagree on the training run");
        /* Another architecture (one more layer) on the last rank. */
        tg_fit_opts fb = fo;
        if (rank == last) fb.optim = ob;
        CHECK_ERROR(tg_model_fit(rank == last ? big : m, X, y, &fb, NULL), "ranks disagree");
    }
    /* A label out of range in the last rank's rows only: it fails in its slice. */
    tg_tensor *bad = tg_tensor_clone(y);
    if (rank == last)
        for (int64_t i = 0; i < 24; i++)
            ((int64_t *)bad->data)[i] = 7;
    CHECK_ERROR(tg_model_fit(m, X, bad, &fo, NULL), rank == last ? "label 7" : who);
    tg_tensor_free(bad);
    /* Distributed fit of a world of one works without any peers; all still in step. */
    CHECK(tg_model_fit(m, X, y, &fo, NULL) == 0, "fit after failures");
    check_same_params(m, "after failures");
    tg_model_free(m);
    tg_model_free(big);
    tg_optim_free(o);
    tg_optim_free(ob);
    tg_tensor_free(X);
    tg_tensor_free(y);
    tg_tensor_free(Xs);
    tg_tensor_free(ys);
}

/* ---------------- the rank-death scenario ---------------- */

static int run_die(void) {
    tg_tensor *ps[NP];
    make_params(ps, rank);
    if (rank == size - 1) {
        fprintf(stderr, "rank %d: exiting on purpose\n", rank);
        exit(3);
    }
    tg_dist_allreduce_grads(ps, NP);
    printf("rank %d: the combine returned although a rank had died\n", rank);
    free_params(ps, NP);
    tg_dist_finalize();
    return 0;
}

int main(int argc, char **argv) {
    CHECK_ERROR(tg_dist_rank(), "tg_dist_rank: MPI is not initialised");
    CHECK_ERROR(tg_dist_size(), "tg_dist_size: MPI is not initialised");
    if (tg_dist_init(&argc, &argv) != 0) {
        fprintf(stderr, "tg_dist_init: %s\n", tg_error());
        return 1;
    }
    rank = tg_dist_rank();
    size = tg_dist_size();
    if (argc > 1 && strcmp(argv[1], "--die") == 0) return run_die();
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"rank_and_size", test_rank_and_size},
        {"broadcast", test_broadcast},
        {"broadcast_errors", test_broadcast_errors},
        {"allreduce_mean", test_allreduce_mean},
        {"combine_exact", test_combine_exact},
        {"allreduce_errors", test_allreduce_errors},
        {"fit_matches_one_rank", test_fit_matches_one_rank},
        {"fit_dropout", test_fit_dropout},
        {"fit_batchnorm", test_fit_batchnorm},
        {"fit_resume", test_fit_resume},
        {"fit_errors", test_fit_errors},
    };
    int n = (int)(sizeof tests / sizeof *tests);
    for (int i = 0; i < n; i++) {
        tg_clear_error();
        tests[i].fn();
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == 0) printf("ok  %s (%d ranks)\n", tests[i].name, size);
    }
    tg_tape_free();
    tg_dist_finalize();
    if (rank == 0) printf("test_dist: %d tests passed on %d ranks\n", n, size);
    return 0;
}
