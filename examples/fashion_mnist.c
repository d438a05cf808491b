/*
 * fashion_mnist.c — a real data set end to end: Fashion-MNIST (70,000 grey 28x28 images
 * of ten kinds of clothing) read from its published IDX files, an MLP or a CNN trained
 * with Adam, progress you can watch, checkpoints you can resume from, and pictures.
 *
 *     ./fashion_mnist [--model mlp|cnn|mlp64] [--epochs N] [--batch B] [--lr LR] [--seed S]
 *                     [--out DIR] [--resume FILE] [--data DIR] [--limit N] [--quiet]
 *                     [--distributed]
 *
 * Data: train-{images,labels} and t10k-{images,labels} IDX files (.gz) in --data
 * (default /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist package:
 * scripts/deps.sh --data installs it). Inputs are standardised with the mean and
 * standard deviation of the training pixels. --limit N trains on the first N training
 * images and tests on the first N test images (a quick run).
 *
 * Models (fixed, so they can be compared with other libraries), F32:
 *     mlp    784-256-128-10, ReLU
 *     cnn    conv 1->16 5x5, ReLU, max-pool 2; conv 16->32 5x5, ReLU, max-pool 2;
 *            flatten (512), linear 512->128, ReLU, linear 128->10
 *     mlp64  784-64-10, ReLU (the configuration of kann's MNIST MLP figure)
 * Softmax cross-entropy, Adam (lr 1e-3 by default), batch 64, 10 epochs, shuffled with
 * --seed, which also seeds the initial weights.
 *
 * Output: on a terminal each epoch shows a progress bar (steps, loss, images per
 * second, time left); otherwise one line per epoch with the training loss, the running
 * training accuracy, the test loss and accuracy, and the epoch's training time (the
 * process's CPU seconds and the wall-clock seconds, without the test evaluation). After every epoch
 * a checkpoint (model, Adam state, epoch) is written to DIR/fashion_<model>.ckpt.safetensors and
 * the history to DIR/fashion_<model>_history.csv; --resume FILE continues from such a checkpoint
 * (same --model, --seed and --epochs as the total to reach). Pictures in DIR:
 * fashion_<model>_curves.png (loss and accuracy per epoch), fashion_<model>_confusion.png
 * (the test confusion matrix) and fashion_<model>_samples.png (test images with their
 * predicted and true classes, mistakes framed in red). The last two lines are always
 * "train accuracy: X" and "test accuracy: Y" (X over the whole training set in eval mode).
 *
 * Several processes (a build with MPI): `mpirun -np N ./fashion_mnist --distributed ...`
 * trains data-parallel (tg_fit_opts.distributed): each rank computes its share of every
 * batch of B images, and all ranks apply the same update. Rank 0 alone prints, writes the
 * checkpoints, history and pictures, and reads --resume (its state reaches the other
 * ranks through fit's broadcast, so the file need only exist on rank 0's machine and the
 * number of ranks may change between runs). The last line of rank 0 is then
 * "params checksum: <16 hex digits>", a hash (FNV-1a) of every parameter byte: each rank
 * compares its own checksum with rank 0's and exits nonzero if they differ.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <tapegrad.h>
#include <tapegrad/data.h>
#include <tapegrad/nn.h>
#include <tapegrad/optim.h>

#include "plot.h"

enum { CLASSES = 10, SIDE = 28, PIXELS = SIDE * SIDE };

static const char *const CLASS_NAMES[CLASSES] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};

typedef struct {
    const char *model, *out, *resume, *data;
    int epochs;
    int64_t batch, limit;
    double lr;
    unsigned long long seed;
    bool quiet, distributed;
} options;

static void usage(FILE *f) {
    fprintf(f, "usage: fashion_mnist [--model mlp|cnn|mlp64] [--epochs N] [--batch B] [--lr LR]\n"
               "                     [--seed S] [--out DIR] [--resume FILE] [--data DIR]\n"
               "                     [--limit N] [--quiet] [--distributed]\n");
}

/* A whole number in [lo, hi] from v, or -1 (with a message) on a bad value. */
static int parse_count(const char *opt, const char *v, long long lo, long long hi, long long *out) {
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "fashion_mnist: bad %s \"%s\" (want %lld..%lld)\n", opt, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_args(int argc, char **argv, options *o) {
    *o = (options){.model = "mlp",
                   .out = ".",
                   .data = "/usr/share/datasets/fashion-mnist",
                   .epochs = 10,
                   .batch = 64,
                   .lr = 1e-3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quiet") == 0) {
            o->quiet = true;
            continue;
        }
        if (strcmp(a, "--distributed") == 0) {
            o->distributed = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        static const char *const valued[] = {"--model", "--epochs", "--batch", "--lr",   "--seed",
                                             "--out",   "--resume", "--data",  "--limit"};
        bool known = false;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++)
            known = known || strcmp(a, valued[k]) == 0;
        if (!known) {
            fprintf(stderr, "fashion_mnist: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        if (!v) {
            fprintf(stderr, "fashion_mnist: %s needs a value\n", a);
            return -1;
        }
        i++;
        long long x;
        if (strcmp(a, "--model") == 0) {
            if (strcmp(v, "mlp") && strcmp(v, "cnn") && strcmp(v, "mlp64")) {
                fprintf(stderr, "fashion_mnist: --model must be mlp, cnn or mlp64, got \"%s\"\n",
                        v);
                return -1;
            }
            o->model = v;
        } else if (strcmp(a, "--epochs") == 0) {
            if (parse_count(a, v, 1, 100000, &x) != 0) return -1;
            o->epochs = (int)x;
        } else if (strcmp(a, "--batch") == 0) {
            if (parse_count(a, v, 1, 60000, &x) != 0) return -1;
            o->batch = x;
        } else if (strcmp(a, "--limit") == 0) {
            if (parse_count(a, v, 1, 60000, &x) != 0) return -1;
            o->limit = x;
        } else if (strcmp(a, "--seed") == 0) {
            if (parse_count(a, v, 0, (long long)1 << 62, &x) != 0) return -1;
            o->seed = (unsigned long long)x;
        } else if (strcmp(a, "--lr") == 0) {
            char *end = NULL;
            errno = 0;
            o->lr = strtod(v, &end);
            if (!*v || *end || errno || !(o->lr > 0) || !isfinite(o->lr)) {
                fprintf(stderr, "fashion_mnist: bad --lr \"%s\"\n", v);
                return -1;
            }
        } else if (strcmp(a, "--out") == 0) {
            o->out = v;
        } else if (strcmp(a, "--resume") == 0) {
            o->resume = v;
        } else {
            o->data = v;
        }
    }
    return 0;
}

/* ---------------- data ---------------- */

typedef struct {
    tg_tensor *X, *y; /* X standardised, shaped for the model; y I64 labels */
    tg_tensor *raw;   /* the test images as stored (0..255), [N, 28, 28], for pictures */
} split;

/* Loads one split (prefix "train" or "t10k"), keeping the first limit rows (0: all). */
static int load_split(const options *o, const char *prefix, int64_t limit, tg_tensor **X,
                      tg_tensor **y) {
    char ip[4096], lp[4096];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", o->data, prefix);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", o->data, prefix);
    if (tg_data_load_idx_pair(ip, lp, TG_F32, X, y) != 0) {
        fprintf(stderr, "fashion_mnist: %s\n", tg_error());
        fprintf(stderr, "fashion_mnist: install the data with scripts/deps.sh --data, or point "
                        "--data at a folder with the four IDX files\n");
        tg_clear_error(); /* said above */
        return -1;
    }
    if ((*X)->ndim != 3 || (*X)->shape[1] != SIDE || (*X)->shape[2] != SIDE) {
        fprintf(stderr, "fashion_mnist: %s holds images of shape [%lld,%lld,...], not 28x28\n", ip,
                (long long)(*X)->shape[0], (long long)(*X)->shape[1]);
        return -1;
    }
    int64_t n = (*X)->shape[0];
    if (limit > 0 && limit < n) { /* keep the first rows: copies of the leading block */
        tg_tensor *Xs = tg_tensor_from(TG_F32, TG_SHAPE(limit, SIDE, SIDE), (*X)->data);
        tg_tensor *ys = tg_tensor_from(TG_I64, TG_SHAPE(limit), (*y)->data);
        tg_tensor_free(*X);
        tg_tensor_free(*y);
        *X = Xs;
        *y = ys;
        if (!Xs || !ys) return -1;
    }
    return 0;
}

/* (raw - mean) / std into a new tensor of shape [N, 784] (mlp) or [N, 1, 28, 28]. */
static tg_tensor *standardise(const tg_tensor *raw, double mean, double std, bool cnn) {
    int64_t n = raw->shape[0];
    tg_tensor *t = cnn ? tg_tensor_new(TG_F32, TG_SHAPE(n, 1, SIDE, SIDE))
                       : tg_tensor_new(TG_F32, TG_SHAPE(n, PIXELS));
    if (!t) return NULL;
    const float *s = raw->data;
    float *d = t->data;
    for (int64_t i = 0; i < raw->numel; i++)
        d[i] = (float)((s[i] - mean) / std);
    return t;
}

static int load_data(const options *o, split *train, split *test) {
    tg_tensor *Xr = NULL, *Xt = NULL;
    if (load_split(o, "train", o->limit, &Xr, &train->y) != 0 ||
        load_split(o, "t10k", o->limit, &Xt, &test->y) != 0) {
        tg_tensor_free(Xr);
        tg_tensor_free(Xt);
        return -1;
    }
    double sum = 0, sq = 0;
    const float *p = Xr->data;
    for (int64_t i = 0; i < Xr->numel; i++) {
        sum += p[i];
        sq += (double)p[i] * p[i];
    }
    double mean = sum / (double)Xr->numel;
    double std = sqrt(fmax(sq / (double)Xr->numel - mean * mean, 1e-12));
    bool cnn = strcmp(o->model, "cnn") == 0;
    train->X = standardise(Xr, mean, std, cnn);
    test->X = standardise(Xt, mean, std, cnn);
    test->raw = Xt;
    tg_tensor_free(Xr);
    return train->X && test->X ? 0 : -1;
}

/* ---------------- the models ---------------- */

static tg_model *build_model(const char *name) {
    bool cnn = strcmp(name, "cnn") == 0;
    tg_model *m = tg_model_new();
    if (!m) return NULL;
    int rc = 0;
    if (cnn) {
        rc |= tg_model_add(m, tg_nn_conv2d(1, 16, 5, 1, 0, TG_F32)); /* 16 x 24 x 24 */
        rc |= tg_model_add(m, tg_nn_relu());
        rc |= tg_model_add(m, tg_nn_maxpool2d(2, 2, 0));              /* 16 x 12 x 12 */
        rc |= tg_model_add(m, tg_nn_conv2d(16, 32, 5, 1, 0, TG_F32)); /* 32 x 8 x 8 */
        rc |= tg_model_add(m, tg_nn_relu());
        rc |= tg_model_add(m, tg_nn_maxpool2d(2, 2, 0)); /* 32 x 4 x 4 */
        rc |= tg_model_add(m, tg_nn_flatten());          /* 512 */
        rc |= tg_model_add(m, tg_nn_linear(512, 128, TG_F32));
        rc |= tg_model_add(m, tg_nn_relu());
        rc |= tg_model_add(m, tg_nn_linear(128, CLASSES, TG_F32));
    } else if (strcmp(name, "mlp64") == 0) {
        rc |= tg_model_add(m, tg_nn_linear(PIXELS, 64, TG_F32));
        rc |= tg_model_add(m, tg_nn_relu());
        rc |= tg_model_add(m, tg_nn_linear(64, CLASSES, TG_F32));
    } else {
        rc |= tg_model_add(m, tg_nn_linear(PIXELS, 256, TG_F32));
        rc |= tg_model_add(m, tg_nn_relu());
        rc |= tg_model_add(m, tg_nn_linear(256, 128, TG_F32));
        rc |= tg_model_add(m, tg_nn_relu());
        rc |= tg_model_add(m, tg_nn_linear(128, CLASSES, TG_F32));
    }
    if (rc != 0) {
        tg_model_free(m);
        return NULL;
    }
    return m;
}

/* ---------------- progress and history ---------------- */

typedef struct {
    const options *o;
    tg_model *m;
    tg_optim *opt;
    bool tty;
    int rank;         /* 0 unless --distributed: only rank 0 prints and writes files */
    double last_draw; /* seconds into the epoch of the last progress bar */
    int first_epoch;  /* initial_epoch of this run */
    /* per epoch (index = epoch), filled as epochs finish; NaN where unknown */
    double *train_loss, *train_acc, *test_loss, *test_acc, *train_seconds;
    double cpu_mark, train_cpu; /* process CPU seconds: at the epoch's start, its training */
    char ckpt[4096], history[4096];
} run_state;

static void draw_bar(const tg_fit_progress *p) {
    enum { WIDTH = 24 };
    int filled = (int)(WIDTH * p->step / p->steps);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = 0;
    double rate = p->seconds > 0 ? (double)p->rows / p->seconds : 0.0;
    double eta = p->step > 0 ? p->seconds * (double)(p->steps - p->step) / (double)p->step : 0.0;
    printf("\repoch %d/%d [%s] %lld/%lld  loss %.4f  acc %.4f  %.0f img/s  ETA %d:%02d ",
           p->epoch + 1, p->epochs, bar, (long long)p->step, (long long)p->steps, p->train_loss,
           p->train_accuracy, rate, (int)eta / 60, (int)eta % 60);
    fflush(stdout);
}

/* CPU time of this process: on a shared machine a steadier measure than the wall clock
 * for a one-threaded run. */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int on_step(const tg_fit_progress *p, void *ctx) {
    run_state *r = ctx;
    if (p->step == p->steps) { /* training time only, without the test evaluation */
        r->train_seconds[p->epoch] = p->seconds;
        r->train_cpu = cpu_seconds() - r->cpu_mark;
    }
    if (r->tty && !r->o->quiet &&
        (p->step == p->steps || p->step == 1 || p->seconds - r->last_draw >= 0.1)) {
        draw_bar(p);
        r->last_draw = p->seconds;
    }
    return 0;
}

static int write_history(const run_state *r, int upto) {
    FILE *f = fopen(r->history, "w");
    if (!f) {
        fprintf(stderr, "fashion_mnist: cannot write %s: %s\n", r->history, strerror(errno));
        return -1;
    }
    fprintf(f, "epoch,train_loss,train_accuracy,test_loss,test_accuracy,train_seconds\n");
    for (int e = 0; e < upto; e++)
        if (!isnan(r->train_loss[e]))
            fprintf(f, "%d,%.9g,%.9g,%.9g,%.9g,%.6g\n", e + 1, r->train_loss[e], r->train_acc[e],
                    r->test_loss[e], r->test_acc[e], r->train_seconds[e]);
    return fclose(f) == 0 ? 0 : -1;
}

/* After a resume: the earlier epochs' figures from the history file, if it is there. */
static void read_history(run_state *r) {
    if (access(r->history, R_OK) != 0) return;
    tg_tensor *X = NULL, *y = NULL;
    if (tg_data_load_csv(r->history, 0, TG_F64, &X, &y) != 0 || X->shape[1] != 5) {
        fprintf(stderr, "fashion_mnist: ignoring %s: %s\n", r->history,
                tg_error() ? tg_error() : "not 6 columns");
    } else {
        for (int64_t i = 0; i < X->shape[0]; i++) {
            int64_t e = ((int64_t *)y->data)[i] - 1;
            if (e < 0 || e >= r->first_epoch || e >= r->o->epochs) continue;
            const double *row = (const double *)X->data + 5 * i;
            r->train_loss[e] = row[0];
            r->train_acc[e] = row[1];
            r->test_loss[e] = row[2];
            r->test_acc[e] = row[3];
            r->train_seconds[e] = row[4];
        }
    }
    tg_clear_error();
    tg_tensor_free(X);
    tg_tensor_free(y);
}

static int on_epoch(const tg_fit_progress *p, void *ctx) {
    run_state *r = ctx;
    int e = p->epoch;
    r->train_loss[e] = p->train_loss;
    r->train_acc[e] = p->train_accuracy;
    r->test_loss[e] = p->val_loss;
    r->test_acc[e] = p->val_accuracy;
    if (!r->o->quiet) {
        if (r->tty) printf("\n");
        printf("epoch %d/%d  train loss %.4f  train accuracy %.4f  test loss %.4f  "
               "test accuracy %.4f  cpu %.2f s  time %.2f s\n",
               e + 1, p->epochs, p->train_loss, p->train_accuracy, p->val_loss, p->val_accuracy,
               r->train_cpu, r->train_seconds[e]);
        fflush(stdout);
    }
    r->last_draw = 0;
    int rc = 0;
    if (r->rank == 0) { /* one writer; a failure here stops every rank */
        if (tg_model_save_training(r->m, r->opt, e + 1, r->ckpt) != 0) {
            fprintf(stderr, "fashion_mnist: %s\n", tg_error());
            return 1;
        }
        rc = write_history(r, e + 1) == 0 ? 0 : 1;
    }
    r->cpu_mark = cpu_seconds(); /* the next epoch starts here */
    return rc;
}

/* ---------------- pictures ---------------- */

static int plot_curves(const char *path, const run_state *r) {
    int n = r->o->epochs;
    double *x = malloc(sizeof *x * (size_t)n);
    plot_canvas c;
    if (!x || plot_canvas_init(&c, 1000, 400) != 0) {
        free(x);
        return -1;
    }
    for (int e = 0; e < n; e++)
        x[e] = e + 1;
    plot_series loss[2] = {{x, r->train_loss, n, PLOT_BLUE, "train (running)"},
                           {x, r->test_loss, n, PLOT_ORANGE, "test"}};
    plot_series acc[2] = {{x, r->train_acc, n, PLOT_BLUE, "train (running)"},
                          {x, r->test_acc, n, PLOT_ORANGE, "test"}};
    char title[64];
    snprintf(title, sizeof title, "%s: loss", r->o->model);
    plot_chart(&c, (plot_box){0, 0, 500, 400},
               &(plot_chart_spec){.title = title,
                                  .xlabel = "epoch",
                                  .ylabel = "cross-entropy loss",
                                  .integer_x = true,
                                  .y_from_zero = true},
               loss, 2);
    snprintf(title, sizeof title, "%s: accuracy", r->o->model);
    plot_chart(&c, (plot_box){500, 0, 500, 400},
               &(plot_chart_spec){.title = title,
                                  .xlabel = "epoch",
                                  .ylabel = "accuracy",
                                  .integer_x = true,
                                  .legend_bottom = true},
               acc, 2);
    int rc = plot_write_png(path, &c);
    plot_canvas_free(&c);
    free(x);
    return rc;
}

static int plot_confusion(const char *path, const int64_t *pred, const int64_t *truth, int64_t n,
                          const char *model) {
    enum { CELL = 46, LEFT = 175, TOP = 60, LABEL_H = 140 };
    int64_t counts[CLASSES][CLASSES] = {{0}}, rows[CLASSES] = {0};
    for (int64_t i = 0; i < n; i++) {
        counts[truth[i]][pred[i]]++;
        rows[truth[i]]++;
    }
    plot_canvas c;
    int w = LEFT + CLASSES * CELL + 30, h = TOP + CLASSES * CELL + LABEL_H - 16;
    if (plot_canvas_init(&c, w, h) != 0) return -1;
    char buf[96];
    snprintf(buf, sizeof buf, "%s: confusion matrix, %lld test images", model, (long long)n);
    plot_text(&c, (w - plot_text_width(buf, 2)) / 2, 14, buf, 2, PLOT_BLACK);
    for (int t = 0; t < CLASSES; t++) {
        int y = TOP + t * CELL;
        plot_text(&c, LEFT - 10 - plot_text_width(CLASS_NAMES[t], 1), y + CELL / 2 - 3,
                  CLASS_NAMES[t], 1, PLOT_BLACK);
        for (int p = 0; p < CLASSES; p++) {
            double f = rows[t] ? (double)counts[t][p] / (double)rows[t] : 0.0;
            /* white -> blue by the fraction of the true class's images */
            unsigned char rgb[3];
            for (int k = 0; k < 3; k++)
                rgb[k] = (unsigned char)lround(255 + (PLOT_BLUE[k] - 255) * sqrt(f));
            plot_box cell = {LEFT + p * CELL, y, CELL, CELL};
            plot_fill(&c, cell, rgb);
            plot_frame(&c, cell, 1, PLOT_GREY);
            snprintf(buf, sizeof buf, "%lld", (long long)counts[t][p]);
            plot_text(&c, cell.x + (CELL - plot_text_width(buf, 1)) / 2, y + CELL / 2 - 3, buf, 1,
                      f > 0.3 ? PLOT_WHITE : PLOT_BLACK);
        }
    }
    plot_frame(&c, (plot_box){LEFT, TOP, CLASSES * CELL, CLASSES * CELL}, 1, PLOT_BLACK);
    for (int p = 0; p < CLASSES; p++) /* predicted class names, read upwards */
        plot_text_up(&c, LEFT + p * CELL + CELL / 2 - 3,
                     TOP + CLASSES * CELL + 10 + plot_text_width(CLASS_NAMES[p], 1), CLASS_NAMES[p],
                     1, PLOT_BLACK);
    const char *xt = "predicted class", *yt = "true class";
    plot_text(&c, LEFT + (CLASSES * CELL - plot_text_width(xt, 2)) / 2,
              TOP + CLASSES * CELL + 10 + 70 + 12, xt, 2, PLOT_BLACK);
    plot_text_up(&c, 12, TOP + (CLASSES * CELL + plot_text_width(yt, 2)) / 2, yt, 2, PLOT_BLACK);
    int rc = plot_write_png(path, &c);
    plot_canvas_free(&c);
    return rc;
}

/* The first 32 test images, then 8 more that the model gets wrong: each with its
 * predicted class (top line) and true class (bottom line); mistakes framed in red. */
static int plot_samples(const char *path, const tg_tensor *raw, const int64_t *pred,
                        const int64_t *truth, int64_t n, const char *model) {
    enum { COLS = 8, ROWS = 5, SCALE = 3, IMG = SIDE * SCALE, CW = 100, CH = 124, TOP = 56 };
    int64_t pick[COLS * ROWS];
    int k = 0;
    for (int64_t i = 0; i < n && k < COLS * (ROWS - 1); i++)
        pick[k++] = i;
    for (int64_t i = k; i < n && k < COLS * ROWS; i++)
        if (pred[i] != truth[i]) pick[k++] = i;
    plot_canvas c;
    int w = COLS * CW + 20, h = TOP + ROWS * CH + 10;
    if (plot_canvas_init(&c, w, h) != 0) return -1;
    char buf[128];
    snprintf(buf, sizeof buf, "%s: test images, predicted / true class", model);
    plot_text(&c, (w - plot_text_width(buf, 2)) / 2, 10, buf, 2, PLOT_BLACK);
    const char *note = "first 32 test images, then 8 more mistakes; red frame: wrong";
    plot_text(&c, (w - plot_text_width(note, 1)) / 2, 34, note, 1, PLOT_DARK_GREY);
    const float *px = raw->data;
    for (int j = 0; j < k; j++) {
        int x = 10 + (j % COLS) * CW, y = TOP + (j / COLS) * CH;
        int ix = x + (CW - IMG) / 2, iy = y + 4;
        bool wrong = pred[pick[j]] != truth[pick[j]];
        if (wrong) plot_frame(&c, (plot_box){ix - 4, iy - 4, IMG + 8, IMG + 8}, 3, PLOT_RED);
        for (int r = 0; r < SIDE; r++)
            for (int q = 0; q < SIDE; q++) { /* dark ink on white, as on paper */
                float v = px[pick[j] * PIXELS + r * SIDE + q];
                unsigned char g = (unsigned char)lroundf(255.0f - fminf(fmaxf(v, 0), 255));
                plot_fill(&c, (plot_box){ix + q * SCALE, iy + r * SCALE, SCALE, SCALE},
                          (unsigned char[3]){g, g, g});
            }
        const char *pn = CLASS_NAMES[pred[pick[j]]], *tn = CLASS_NAMES[truth[pick[j]]];
        plot_text(&c, x + (CW - plot_text_width(pn, 1)) / 2, iy + IMG + 8, pn, 1,
                  wrong ? PLOT_RED : PLOT_BLACK);
        plot_text(&c, x + (CW - plot_text_width(tn, 1)) / 2, iy + IMG + 19, tn, 1, PLOT_DARK_GREY);
    }
    int rc = plot_write_png(path, &c);
    plot_canvas_free(&c);
    return rc;
}

/* Argmax of each row of the model's output on X, into a new array. */
static int64_t *predict_classes(tg_model *m, const tg_tensor *X) {
    tg_tensor *out = tg_model_predict(m, X);
    if (!out) return NULL;
    int64_t n = out->shape[0], *cls = malloc(sizeof *cls * (size_t)n);
    const float *s = out->data;
    for (int64_t i = 0; cls && i < n; i++) {
        int best = 0;
        for (int j = 1; j < CLASSES; j++)
            if (s[i * CLASSES + j] > s[i * CLASSES + best]) best = j;
        cls[i] = best;
    }
    tg_tensor_free(out);
    return cls;
}

/* ---------------- several processes ---------------- */

/* FNV-1a over the bytes of every parameter, in order. */
static uint64_t params_checksum(tg_model *m) {
    tg_tensor *ps[16];
    int n = tg_model_params(m, ps, 16);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < n; i++) {
        const unsigned char *b = ps[i]->data;
        for (size_t k = 0; k < (size_t)ps[i]->numel * tg_dtype_size(ps[i]->dtype); k++)
            h = (h ^ b[k]) * 0x100000001b3ULL;
    }
    return h;
}

#ifdef TG_HAVE_DIST
/* Rank 0's values v[0..n) on every rank (a broadcast through a small I64 tensor). */
static int share_from_rank0(int64_t *v, int n) {
    tg_tensor *t = tg_tensor_from(TG_I64, TG_SHAPE(n), v);
    int rc = t ? tg_dist_broadcast(&t, 1, 0) : -1;
    if (rc == 0) memcpy(v, t->data, sizeof *v * (size_t)n);
    tg_tensor_free(t);
    return rc;
}
#endif

/* ---------------- main ---------------- */

int main(int argc, char **argv) {
    options o;
    if (parse_args(argc, argv, &o) != 0) return 2;
    int rank = 0;
    if (o.distributed) {
#ifdef TG_HAVE_DIST
        if (tg_dist_init(&argc, &argv) != 0) {
            fprintf(stderr, "fashion_mnist: %s\n", tg_error());
            return 1;
        }
        rank = tg_dist_rank();
        if (rank != 0) o.quiet = true;
#else
        fprintf(stderr, "fashion_mnist: --distributed needs a tapegrad built with MPI\n");
        return 2;
#endif
    }
    if (rank == 0 && mkdir(o.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "fashion_mnist: cannot create %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    split train = {0}, test = {0};
    tg_model *m = NULL;
    tg_optim *opt = NULL;
    int64_t *pred = NULL;
    int status = 1;
    run_state r = {.o = &o, .tty = rank == 0 && isatty(STDOUT_FILENO) == 1, .rank = rank};
    double *hist = malloc(sizeof *hist * 5 * (size_t)o.epochs);
    if (!hist) goto done;
    for (int i = 0; i < 5 * o.epochs; i++)
        hist[i] = NAN;
    r.train_loss = hist;
    r.train_acc = hist + o.epochs;
    r.test_loss = hist + 2 * o.epochs;
    r.test_acc = hist + 3 * o.epochs;
    r.train_seconds = hist + 4 * o.epochs;
    snprintf(r.ckpt, sizeof r.ckpt, "%s/fashion_%s.ckpt.safetensors", o.out, o.model);
    snprintf(r.history, sizeof r.history, "%s/fashion_%s_history.csv", o.out, o.model);

    if (load_data(&o, &train, &test) != 0) goto done;
    tg_seed(o.seed); /* the initial weights */
    m = build_model(o.model);
    tg_tensor *params[16];
    int np = m ? tg_model_params(m, params, 16) : -1;
    if (np < 0 || !(opt = tg_adam(np, params, (tg_adam_opts){.lr = o.lr}))) goto done;
    r.m = m;
    r.opt = opt;

    if (o.resume) {
        /* Distributed, rank 0 reads the file and tells the others how it went. */
        int64_t got[2] = {0, 0}; /* load status, epochs done */
        if (rank == 0) got[0] = tg_model_load_training(m, opt, &got[1], o.resume);
#ifdef TG_HAVE_DIST
        if (o.distributed && share_from_rank0(got, 2) != 0) goto done;
#endif
        if (got[0] != 0) goto done;
        int64_t done_epochs = got[1];
        r.first_epoch = done_epochs < o.epochs ? (int)done_epochs : o.epochs;
        if (rank == 0) read_history(&r);
        if (!o.quiet)
            printf("resumed from %s after epoch %lld\n", o.resume, (long long)done_epochs);
    }
    if (!o.quiet)
        printf("%s on %lld training and %lld test images, batch %lld, Adam lr %g, seed %llu\n",
               o.model, (long long)train.X->shape[0], (long long)test.X->shape[0],
               (long long)o.batch, o.lr, o.seed);
    if (r.first_epoch < o.epochs) {
        tg_fit_opts fo = {.batch_size = o.batch,
                          .epochs = o.epochs,
                          .shuffle = true,
                          .seed = o.seed,
                          .loss = tg_loss_cross_entropy,
                          .optim = opt,
                          .val_X = test.X,
                          .val_y = test.y,
                          .on_step = on_step,
                          .on_epoch = on_epoch,
                          .callback_ctx = &r,
                          .initial_epoch = r.first_epoch,
                          .distributed = o.distributed};
        r.cpu_mark = cpu_seconds();
        if (tg_model_fit(m, train.X, train.y, &fo, NULL) != 0) goto done;
    }

    uint64_t checksum = params_checksum(m);
#ifdef TG_HAVE_DIST
    if (o.distributed) { /* every rank against rank 0 */
        int64_t root_sum = (int64_t)checksum;
        if (share_from_rank0(&root_sum, 1) != 0) goto done;
        if ((uint64_t)root_sum != checksum) {
            fprintf(stderr,
                    "fashion_mnist: rank %d: params checksum %016llx differs from rank 0's "
                    "%016llx\n",
                    rank, (unsigned long long)checksum, (unsigned long long)root_sum);
            goto done;
        }
    }
#endif
    if (rank != 0) { /* the pictures and figures are rank 0's */
        status = 0;
        goto done;
    }
    double train_acc = tg_model_accuracy(m, train.X, train.y);
    pred = predict_classes(m, test.X);
    if (isnan(train_acc) || !pred) goto done;
    int64_t nt = test.X->shape[0], right = 0;
    const int64_t *truth = test.y->data;
    for (int64_t i = 0; i < nt; i++)
        right += pred[i] == truth[i];
    double secs = 0;
    int timed = 0;
    for (int e = r.first_epoch; e < o.epochs; e++)
        if (!isnan(r.train_seconds[e])) secs += r.train_seconds[e], timed++;

    char path[4200];
    snprintf(path, sizeof path, "%s/fashion_%s_curves.png", o.out, o.model);
    if (plot_curves(path, &r) != 0) goto done;
    snprintf(path, sizeof path, "%s/fashion_%s_confusion.png", o.out, o.model);
    if (plot_confusion(path, pred, truth, nt, o.model) != 0) goto done;
    snprintf(path, sizeof path, "%s/fashion_%s_samples.png", o.out, o.model);
    if (plot_samples(path, test.raw, pred, truth, nt, o.model) != 0) goto done;
    if (timed) printf("mean training time per epoch: %.3f s\n", secs / timed);
    printf("train accuracy: %.4f\n", train_acc);
    printf("test accuracy: %.4f\n", (double)right / (double)nt);
    if (o.distributed) printf("params checksum: %016llx\n", (unsigned long long)checksum);
    status = 0;
done:
    if (status != 0 && tg_error()) fprintf(stderr, "fashion_mnist: %s\n", tg_error());
    tg_tape_reset();
    free(pred);
    tg_optim_free(opt);
    tg_model_free(m);
    tg_tensor_free(train.X);
    tg_tensor_free(train.y);
    tg_tensor_free(test.X);
    tg_tensor_free(test.y);
    tg_tensor_free(test.raw);
    tg_tape_free();
    free(hist);
#ifdef TG_HAVE_DIST
    /* On failure a rank leaves without MPI_Finalize, which could wait for peers that are
     * still inside a collective: mpirun sees the exit and ends the whole job instead. */
    if (o.distributed && status == 0) tg_dist_finalize();
#endif
    return status;
}
