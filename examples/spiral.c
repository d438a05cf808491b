/*
 * spiral.c — the classic spiral classification demo (as in Stanford's CS231n notes),
 * end to end: data, a two-layer network, minibatch training, evaluation, pictures.
 *
 *     ./spiral [--optim sgd|adam|rmsprop] [--lr LR] [--epochs N] [--seed S]
 *              [--out DIR] [--quiet]
 *
 * 3 classes x 100 points of tg_data_spiral, Linear(2,100) -> ReLU -> Linear(100,3),
 * softmax cross-entropy, batches of 20, 200 epochs, F32. The test set is a second
 * draw of the same distribution (data seed + 1000003). The last two lines printed are
 * always "train accuracy: X" and "test accuracy: Y". Two pictures are written to
 * --out (default "."): spiral_regions.png (the decision regions, with the training
 * points on top) and spiral_loss.png (mean training loss per epoch).
 *
 * Default optimizer: Adam with lr 1e-2 (PyTorch's betas 0.9/0.999, eps 1e-8). With it
 * every seed from 0 to 9 reaches training accuracy 0.9933 (test 0.9867 to 0.9933), the
 * best possible: the first point of every class is the origin (r = 0), so three
 * identical points carry three different labels and at most 298 of 300 can be right.
 * SGD needs momentum here: --optim sgd uses momentum 0.9 with a default lr of 0.1
 * (training accuracy 0.980 to 0.993 over the same seeds). lr 1.0 with momentum 0.9, as
 * some teaching code uses, does not learn (about 0.57): it only appeared to work where
 * the momentum update was broken. --optim rmsprop defaults to lr 1e-2 (0.9933 on every
 * seed as well).
 */
#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <tapegrad.h>
#include <tapegrad/data.h>
#include <tapegrad/nn.h>
#include <tapegrad/optim.h>

enum { CLASSES = 3, PER_CLASS = 100, HIDDEN = 100, BATCH = 20 };

typedef struct {
    const char *optim;
    double lr; /* NaN: the optimizer's default above */
    int epochs;
    unsigned long long seed;
    const char *out;
    bool quiet;
} options;

static void usage(FILE *f) {
    fprintf(f, "usage: spiral [--optim sgd|adam|rmsprop] [--lr LR] [--epochs N] [--seed S]\n"
               "              [--out DIR] [--quiet]\n");
}

static int parse_args(int argc, char **argv, options *o) {
    *o = (options){.optim = "adam", .lr = NAN, .epochs = 200, .seed = 0, .out = "."};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--quiet") == 0) {
            o->quiet = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        static const char *const valued[] = {"--optim", "--lr", "--epochs", "--seed", "--out"};
        bool known = false;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++)
            known = known || strcmp(a, valued[k]) == 0;
        if (!known) {
            fprintf(stderr, "spiral: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        if (!v) {
            fprintf(stderr, "spiral: %s needs a value\n", a);
            return -1;
        }
        i++;
        errno = 0;
        if (strcmp(a, "--optim") == 0) {
            o->optim = v;
            if (strcmp(v, "sgd") && strcmp(v, "adam") && strcmp(v, "rmsprop")) {
                fprintf(stderr, "spiral: unknown optimizer \"%s\"\n", v);
                return -1;
            }
        } else if (strcmp(a, "--lr") == 0) {
            o->lr = strtod(v, &end);
            if (*end || errno || !(o->lr >= 0)) {
                fprintf(stderr, "spiral: bad --lr \"%s\"\n", v);
                return -1;
            }
        } else if (strcmp(a, "--epochs") == 0) {
            long e = strtol(v, &end, 10);
            if (*end || errno || e < 1 || e > 1000000) {
                fprintf(stderr, "spiral: bad --epochs \"%s\"\n", v);
                return -1;
            }
            o->epochs = (int)e;
        } else if (strcmp(a, "--seed") == 0) {
            o->seed = strtoull(v, &end, 10);
            if (*end || errno || *v == '-') {
                fprintf(stderr, "spiral: bad --seed \"%s\"\n", v);
                return -1;
            }
        } else {
            o->out = v;
        }
    }
    return 0;
}

static tg_optim *make_optim(const options *o, int n, tg_tensor *const *params) {
    if (strcmp(o->optim, "sgd") == 0)
        return tg_sgd(n, params, (tg_sgd_opts){.lr = isnan(o->lr) ? 0.1 : o->lr, .momentum = 0.9});
    if (strcmp(o->optim, "rmsprop") == 0) {
        tg_rmsprop_opts r = TG_RMSPROP_DEFAULTS;
        if (!isnan(o->lr)) r.lr = o->lr;
        return tg_rmsprop(n, params, r);
    }
    tg_adam_opts a = TG_ADAM_DEFAULTS;
    a.lr = isnan(o->lr) ? 1e-2 : o->lr;
    return tg_adam(n, params, a);
}

/* ---------------- a tiny RGB canvas ---------------- */

typedef struct {
    int w, h;
    unsigned char *px; /* w * h * 3 */
} canvas;

static void put(canvas *c, int x, int y, const unsigned char rgb[3]) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    memcpy(c->px + 3 * ((size_t)y * (size_t)c->w + (size_t)x), rgb, 3);
}

static void line(canvas *c, int x0, int y0, int x1, int y1, const unsigned char rgb[3]) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    for (int err = dx + dy;;) { /* Bresenham */
        put(c, x0, y0, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

static void disc(canvas *c, int cx, int cy, int r, const unsigned char rgb[3]) {
    for (int y = -r; y <= r; y++)
        for (int x = -r; x <= r; x++)
            if (x * x + y * y <= r * r) put(c, cx + x, cy + y, rgb);
}

/* 3x5 bitmaps of "0123456789.-e", one row per 3 bits. */
static void glyph(canvas *c, int x, int y, char ch, const unsigned char rgb[3]) {
    static const char set[] = "0123456789.-e";
    static const unsigned char rows[][5] = {
        {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1},
        {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7},
        {0, 0, 0, 0, 2}, {0, 0, 7, 0, 0}, {0, 7, 5, 6, 7}};
    const char *p = strchr(set, ch);
    if (!p || !ch) return;
    for (int r = 0; r < 5; r++)
        for (int b = 0; b < 3; b++)
            if (rows[p - set][r] & (4 >> b)) /* each font pixel is 2x2 */
                for (int k = 0; k < 4; k++)
                    put(c, x + 2 * b + k % 2, y + 2 * r + k / 2, rgb);
}

static void text(canvas *c, int x, int y, const char *s, const unsigned char rgb[3]) {
    for (; *s; s++, x += 8)
        glyph(c, x, y, *s, rgb);
}

static int write_png(const char *path, const canvas *c) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "spiral: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        fprintf(stderr, "spiral: libpng failed writing %s\n", path);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < c->h; y++)
        png_write_row(png, c->px + 3 * (size_t)y * (size_t)c->w);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f) == 0 ? 0 : -1;
}

static const unsigned char PALETTE[][3] = {{214, 39, 40}, {44, 160, 44}, {31, 119, 180}};
static const unsigned char BLACK[3] = {0, 0, 0}, GREY[3] = {220, 220, 220},
                           BLUE[3] = {31, 119, 180};

/* Decision regions over [-L, L]^2: the model's class at every pixel, in pale colours,
 * with the training points drawn on top. */
static int plot_regions(const char *path, tg_model *m, const tg_tensor *X, const tg_tensor *y) {
    enum { SIZE = 480 };
    const double L = 1.15;
    tg_tensor *grid = tg_tensor_new(TG_F32, TG_SHAPE(SIZE * SIZE, 2));
    canvas c = {SIZE, SIZE, malloc(3 * SIZE * SIZE)};
    if (!grid || !c.px) goto fail;
    float *g = grid->data;
    for (int py = 0; py < SIZE; py++)
        for (int px = 0; px < SIZE; px++) {
            g[2 * (py * SIZE + px)] = (float)(-L + 2 * L * (px + 0.5) / SIZE);
            g[2 * (py * SIZE + px) + 1] = (float)(L - 2 * L * (py + 0.5) / SIZE);
        }
    tg_tensor *scores = tg_model_predict(m, grid);
    if (!scores) goto fail;
    for (int i = 0; i < SIZE * SIZE; i++) {
        int best = 0;
        for (int k = 1; k < CLASSES; k++)
            if (tg_tensor_get(scores, i * CLASSES + k) > tg_tensor_get(scores, i * CLASSES + best))
                best = k;
        for (int ch = 0; ch < 3; ch++) /* 35% colour, 65% white */
            c.px[3 * i + ch] = (unsigned char)(0.35 * PALETTE[best][ch] + 0.65 * 255 + 0.5);
    }
    tg_tensor_free(scores);
    for (int64_t i = 0; i < X->shape[0]; i++) {
        int px = (int)lround((tg_tensor_get(X, 2 * i) + L) / (2 * L) * SIZE);
        int py = (int)lround((L - tg_tensor_get(X, 2 * i + 1)) / (2 * L) * SIZE);
        disc(&c, px, py, 5, BLACK);
        disc(&c, px, py, 4, PALETTE[(int)tg_tensor_get(y, i) % CLASSES]);
    }
    int rc = write_png(path, &c);
    free(c.px);
    tg_tensor_free(grid);
    return rc;
fail:
    fprintf(stderr, "spiral: cannot draw the regions: %s\n", tg_error() ? tg_error() : "no memory");
    free(c.px);
    tg_tensor_free(grid);
    return -1;
}

/* The loss curve: epochs on x, loss on y from 0 to the largest loss, with ticks and
 * numeric labels on both axes; the point of epoch e (1-based) sits at x = e. */
static int plot_loss(const char *path, const double *loss, int n) {
    enum { W = 640, H = 400, LEFT = 70, RIGHT = 20, TOP = 20, BOTTOM = 40 };
    canvas c = {W, H, malloc(3 * W * H)};
    if (!c.px) return -1;
    memset(c.px, 255, 3 * W * H);
    double top = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(loss[i]) && loss[i] > top) top = loss[i];
    if (top <= 0) top = 1;
    const int x0 = LEFT, x1 = W - RIGHT, y0 = H - BOTTOM, y1 = TOP;
    char buf[32];
    for (int t = 0; t <= 5; t++) { /* horizontal grid lines and loss labels */
        int yy = y0 - (y0 - y1) * t / 5;
        line(&c, x0, yy, x1, yy, GREY);
        line(&c, x0 - 5, yy, x0, yy, BLACK);
        snprintf(buf, sizeof buf, "%.2f", top * t / 5);
        text(&c, x0 - 10 - 8 * (int)strlen(buf), yy - 5, buf, BLACK);
    }
    for (int t = 0; t <= 4; t++) { /* epoch ticks */
        int xx = x0 + (x1 - x0) * t / 4;
        line(&c, xx, y0, xx, y0 + 5, BLACK);
        snprintf(buf, sizeof buf, "%d", n * t / 4);
        text(&c, xx - 4 * (int)strlen(buf), y0 + 10, buf, BLACK);
    }
    line(&c, x0, y0, x1, y0, BLACK);
    line(&c, x0, y0, x0, y1, BLACK);
    int px = 0, py = 0;
    for (int i = 0; i < n; i++) {
        double v = isfinite(loss[i]) ? loss[i] : top;
        int qx = x0 + (int)lround((double)(x1 - x0) * (i + 1) / n); /* after epoch i+1 */
        int qy = y0 - (int)lround((double)(y0 - y1) * v / top);
        if (i > 0) {
            line(&c, px, py, qx, qy, BLUE);
            line(&c, px, py + 1, qx, qy + 1, BLUE);
        }
        px = qx;
        py = qy;
    }
    int rc = write_png(path, &c);
    free(c.px);
    return rc;
}

int main(int argc, char **argv) {
    options o;
    if (parse_args(argc, argv, &o) != 0) return 2;

    tg_tensor *X = NULL, *y = NULL, *Xt = NULL, *yt = NULL;
    tg_model *m = NULL;
    tg_optim *opt = NULL;
    double *loss = calloc((size_t)o.epochs, sizeof *loss);
    int status = 1;
    if (!loss) goto done;
    if (tg_data_spiral(PER_CLASS, CLASSES, o.seed, &X, &y) != 0 ||
        tg_data_spiral(PER_CLASS, CLASSES, o.seed + 1000003, &Xt, &yt) != 0)
        goto done;

    tg_seed(o.seed); /* the layers' initial weights */
    m = tg_model_new();
    if (!m || tg_model_add(m, tg_nn_linear(2, HIDDEN, TG_F32)) != 0 ||
        tg_model_add(m, tg_nn_relu()) != 0 ||
        tg_model_add(m, tg_nn_linear(HIDDEN, CLASSES, TG_F32)) != 0)
        goto done;
    tg_tensor *params[8];
    int np = tg_model_params(m, params, 8);
    if (np < 0 || !(opt = make_optim(&o, np, params))) goto done;

    tg_fit_opts fo = {.batch_size = BATCH,
                      .epochs = o.epochs,
                      .shuffle = true,
                      .seed = o.seed,
                      .loss = tg_loss_cross_entropy,
                      .optim = opt,
                      .verbose = o.quiet ? 0 : 1};
    if (tg_model_fit(m, X, y, &fo, loss) != 0) goto done;
    double acc = tg_model_accuracy(m, X, y), test_acc = tg_model_accuracy(m, Xt, yt);
    if (isnan(acc) || isnan(test_acc)) goto done;

    /* The output folder is created if missing (its parent must exist). */
    if (mkdir(o.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "spiral: cannot create %s: %s\n", o.out, strerror(errno));
        goto done;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/spiral_regions.png", o.out);
    if (plot_regions(path, m, X, y) != 0) goto done;
    snprintf(path, sizeof path, "%s/spiral_loss.png", o.out);
    if (plot_loss(path, loss, o.epochs) != 0) goto done;
    printf("train accuracy: %.4f\n", acc);
    printf("test accuracy: %.4f\n", test_acc);
    status = 0;
done:
    if (status != 0 && tg_error()) fprintf(stderr, "spiral: %s\n", tg_error());
    tg_tape_reset();
    tg_optim_free(opt);
    tg_model_free(m);
    tg_tensor_free(X);
    tg_tensor_free(y);
    tg_tensor_free(Xt);
    tg_tensor_free(yt);
    tg_tape_free();
    free(loss);
    return status;
}
