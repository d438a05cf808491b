/* plot.c — canvas, font, charts and PNG output for the examples (plot.h). */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const unsigned char PLOT_BLACK[3] = {0, 0, 0}, PLOT_WHITE[3] = {255, 255, 255},
                    PLOT_GREY[3] = {225, 225, 225}, PLOT_DARK_GREY[3] = {110, 110, 110},
                    PLOT_BLUE[3] = {31, 119, 180}, PLOT_ORANGE[3] = {230, 120, 20},
                    PLOT_GREEN[3] = {44, 160, 44}, PLOT_RED[3] = {214, 39, 40};

/* ---------------- the font ----------------
 * Printable ASCII from ' ' to '~', 5 columns x 7 rows, '#' for ink. Row 6 is the
 * baseline and lower-case letters start at row 2, except g, p, q and y, whose 7 rows are
 * drawn 2 rows lower so that their tails hang below the baseline. */
static const char *const FONT[95][7] = {
    {".....", ".....", ".....", ".....", ".....", ".....", "....."}, /* space */
    {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."}, /* ! */
    {".#.#.", ".#.#.", ".....", ".....", ".....", ".....", "....."}, /* " */
    {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."}, /* # */
    {"..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."}, /* $ */
    {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}, /* % */
    {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"}, /* & */
    {"..#..", "..#..", ".....", ".....", ".....", ".....", "....."}, /* ' */
    {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}, /* ( */
    {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}, /* ) */
    {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."}, /* * */
    {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}, /* + */
    {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}, /* , */
    {".....", ".....", ".....", "#####", ".....", ".....", "....."}, /* - */
    {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}, /* . */
    {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}, /* / */
    {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}, /* 0 */
    {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* 1 */
    {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}, /* 2 */
    {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}, /* 3 */
    {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}, /* 4 */
    {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}, /* 5 */
    {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}, /* 6 */
    {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}, /* 7 */
    {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}, /* 8 */
    {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}, /* 9 */
    {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}, /* : */
    {".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."}, /* ; */
    {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."}, /* < */
    {".....", ".....", "#####", ".....", "#####", ".....", "....."}, /* = */
    {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."}, /* > */
    {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}, /* ? */
    {".###.", "#...#", "....#", ".##.#", "#.#.#", "#.#.#", ".###."}, /* @ */
    {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}, /* A */
    {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}, /* B */
    {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}, /* C */
    {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."}, /* D */
    {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}, /* E */
    {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}, /* F */
    {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}, /* G */
    {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}, /* H */
    {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* I */
    {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}, /* J */
    {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}, /* K */
    {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}, /* L */
    {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}, /* M */
    {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}, /* N */
    {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}, /* O */
    {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}, /* P */
    {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}, /* Q */
    {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}, /* R */
    {".####", "#....", "#....", ".###.", "....#", "....#", "####."}, /* S */
    {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}, /* T */
    {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}, /* U */
    {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}, /* V */
    {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}, /* W */
    {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}, /* X */
    {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}, /* Y */
    {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}, /* Z */
    {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."}, /* [ */
    {".....", "#....", ".#...", "..#..", "...#.", "....#", "....."}, /* \ */
    {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."}, /* ] */
    {"..#..", ".#.#.", "#...#", ".....", ".....", ".....", "....."}, /* ^ */
    {".....", ".....", ".....", ".....", ".....", ".....", "#####"}, /* _ */
    {".#...", "..#..", ".....", ".....", ".....", ".....", "....."}, /* ` */
    {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"}, /* a */
    {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."}, /* b */
    {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."}, /* c */
    {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"}, /* d */
    {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."}, /* e */
    {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."}, /* f */
    {".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."}, /* g (descends) */
    {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"}, /* h */
    {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."}, /* i */
    {"...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."}, /* j */
    {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."}, /* k */
    {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* l */
    {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"}, /* m */
    {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"}, /* n */
    {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."}, /* o */
    {"####.", "#...#", "#...#", "#...#", "####.", "#....", "#...."}, /* p (descends) */
    {".####", "#...#", "#...#", "#...#", ".####", "....#", "....#"}, /* q (descends) */
    {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."}, /* r */
    {".....", ".....", ".###.", "#....", ".###.", "....#", "####."}, /* s */
    {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."}, /* t */
    {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"}, /* u */
    {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."}, /* v */
    {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."}, /* w */
    {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"}, /* x */
    {"#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###."}, /* y (descends) */
    {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"}, /* z */
    {"...#.", "..#..", "..#..", ".#...", "..#..", "..#..", "...#."}, /* { */
    {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}, /* | */
    {".#...", "..#..", "..#..", "...#.", "..#..", "..#..", ".#..."}, /* } */
    {".....", ".....", ".#...", "#.#.#", "...#.", ".....", "....."}, /* ~ */
};

/* ---------------- canvas and shapes ---------------- */

int plot_canvas_init(plot_canvas *c, int w, int h) {
    c->w = w;
    c->h = h;
    c->px = malloc((size_t)w * (size_t)h * 3);
    if (!c->px) return -1;
    memset(c->px, 255, (size_t)w * (size_t)h * 3);
    return 0;
}

void plot_canvas_free(plot_canvas *c) {
    free(c->px);
    c->px = NULL;
}

void plot_put(plot_canvas *c, int x, int y, const unsigned char rgb[3]) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    memcpy(c->px + 3 * ((size_t)y * (size_t)c->w + (size_t)x), rgb, 3);
}

void plot_line(plot_canvas *c, int x0, int y0, int x1, int y1, const unsigned char rgb[3]) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    for (int err = dx + dy;;) { /* Bresenham */
        plot_put(c, x0, y0, rgb);
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

void plot_fill(plot_canvas *c, plot_box b, const unsigned char rgb[3]) {
    for (int y = b.y; y < b.y + b.h; y++)
        for (int x = b.x; x < b.x + b.w; x++)
            plot_put(c, x, y, rgb);
}

void plot_frame(plot_canvas *c, plot_box b, int t, const unsigned char rgb[3]) {
    plot_fill(c, (plot_box){b.x, b.y, b.w, t}, rgb);
    plot_fill(c, (plot_box){b.x, b.y + b.h - t, b.w, t}, rgb);
    plot_fill(c, (plot_box){b.x, b.y, t, b.h}, rgb);
    plot_fill(c, (plot_box){b.x + b.w - t, b.y, t, b.h}, rgb);
}

void plot_disc(plot_canvas *c, int cx, int cy, int r, const unsigned char rgb[3]) {
    for (int y = -r; y <= r; y++)
        for (int x = -r; x <= r; x++)
            if (x * x + y * y <= r * r) plot_put(c, cx + x, cy + y, rgb);
}

/* ---------------- text ---------------- */

static const char *const *glyph_of(char ch) {
    unsigned char u = (unsigned char)ch;
    return FONT[u >= 32 && u <= 126 ? u - 32 : '?' - 32];
}

/* Draws one glyph; up: turned counter-clockwise with (x, y) its bottom-left corner. */
static void draw_glyph(plot_canvas *c, int x, int y, char ch, int s, bool up,
                       const unsigned char rgb[3]) {
    const char *const *g = glyph_of(ch);
    int drop = ch && strchr("gpqy", ch) ? 2 : 0;
    for (int r = 0; r < 7; r++)
        for (int col = 0; col < 5; col++) {
            if (g[r][col] != '#') continue;
            for (int k = 0; k < s * s; k++) {
                int dx = col * s + k % s, dy = (r + drop) * s + k / s; /* upright glyph */
                if (up)
                    plot_put(c, x + dy, y - dx, rgb);
                else
                    plot_put(c, x + dx, y + dy, rgb);
            }
        }
}

int plot_text_width(const char *s, int scale) {
    size_t n = strlen(s);
    return n ? (int)n * 6 * scale - scale : 0;
}

int plot_text(plot_canvas *c, int x, int y, const char *s, int scale, const unsigned char rgb[3]) {
    for (int i = 0; s[i]; i++)
        draw_glyph(c, x + 6 * scale * i, y, s[i], scale, false, rgb);
    return plot_text_width(s, scale);
}

void plot_text_up(plot_canvas *c, int x, int y, const char *s, int scale,
                  const unsigned char rgb[3]) {
    for (int i = 0; s[i]; i++)
        draw_glyph(c, x, y - 6 * scale * i, s[i], scale, true, rgb);
}

/* ---------------- ticks and charts ---------------- */

double plot_nice_step(double lo, double hi, int max_ticks, double min_step, double *first,
                      double *last) {
    if (!(hi > lo)) hi = lo + (min_step > 0 ? min_step : 1.0);
    double raw = (hi - lo) / (max_ticks > 1 ? max_ticks - 1 : 1);
    double p = pow(10.0, floor(log10(raw))), step = 10 * p;
    static const double mult[] = {1, 2, 5, 10};
    for (int i = 0; i < 4; i++)
        if (mult[i] * p >= raw * (1 - 1e-9)) {
            step = mult[i] * p;
            break;
        }
    if (step < min_step) step = min_step;
    for (;;) { /* the rounded ends may need one more widening */
        *first = floor(lo / step + 1e-9) * step;
        *last = ceil(hi / step - 1e-9) * step;
        if ((*last - *first) / step <= max_ticks - 1 + 1e-9) break;
        double m = step / pow(10.0, floor(log10(step) + 1e-9));
        step *= m < 1.5 ? 2 : m < 3 ? 2.5 : 2; /* 1 -> 2 -> 5 -> 10 */
    }
    return step;
}

/* A tick label with as many decimals as the step needs ("0.25", "3", "1e-04"). */
static void tick_label(char *buf, size_t n, double v, double step) {
    int dec = 0;
    while (dec < 6 && fabs(step * pow(10.0, dec) - round(step * pow(10.0, dec))) > 1e-6)
        dec++;
    if (fabs(v) < step * 1e-9) v = 0; /* no "-0" */
    snprintf(buf, n, "%.*f", dec, v);
}

void plot_chart(plot_canvas *c, plot_box b, const plot_chart_spec *spec, const plot_series *s,
                int ns) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) continue;
            xlo = fmin(xlo, s[k].x[i]);
            xhi = fmax(xhi, s[k].x[i]);
            ylo = fmin(ylo, s[k].y[i]);
            yhi = fmax(yhi, s[k].y[i]);
        }
    if (!isfinite(xlo)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
    if (spec->y_from_zero) ylo = fmin(ylo, 0.0);
    if (spec->y_max > 0) yhi = fmax(yhi, spec->y_max);
    double x0v, x1v, y0v, y1v;
    double xs = plot_nice_step(xlo, xhi, 8, spec->integer_x ? 1.0 : 0.0, &x0v, &x1v);
    double ys = plot_nice_step(ylo, yhi, 7, 0.0, &y0v, &y1v);
    if (spec->y_max > 0 && y1v > spec->y_max && yhi <= spec->y_max) y1v = spec->y_max;

    char buf[32];
    int label_w = 0;
    for (double v = y0v; v <= y1v + ys * 1e-6; v += ys) {
        tick_label(buf, sizeof buf, v, ys);
        int w = plot_text_width(buf, 1);
        if (w > label_w) label_w = w;
    }
    /* Plot area: room for the title above, tick labels and axis titles left and below. */
    int left = b.x + 8 + 8 * 2 + 8 + label_w + 6, right = b.x + b.w - 12;
    int top = b.y + 8 + (spec->title ? 24 : 0), bottom = b.y + b.h - (8 + 16 + 8 + 12 + 6);
    if (spec->title) {
        int tw = plot_text_width(spec->title, 2);
        plot_text(c, (left + right - tw) / 2, b.y + 6, spec->title, 2, PLOT_BLACK);
    }
#define PX(v) (left + (int)lround((double)(right - left) * ((v)-x0v) / (x1v - x0v)))
#define PY(v) (bottom - (int)lround((double)(bottom - top) * ((v)-y0v) / (y1v - y0v)))
    for (double v = y0v; v <= y1v + ys * 1e-6; v += ys) {
        int yy = PY(v);
        plot_line(c, left, yy, right, yy, PLOT_GREY);
        plot_line(c, left - 5, yy, left, yy, PLOT_BLACK);
        tick_label(buf, sizeof buf, v, ys);
        plot_text(c, left - 8 - plot_text_width(buf, 1), yy - 3, buf, 1, PLOT_BLACK);
    }
    for (double v = x0v; v <= x1v + xs * 1e-6; v += xs) {
        int xx = PX(v);
        plot_line(c, xx, top, xx, bottom, PLOT_GREY);
        plot_line(c, xx, bottom, xx, bottom + 5, PLOT_BLACK);
        tick_label(buf, sizeof buf, v, xs);
        plot_text(c, xx - plot_text_width(buf, 1) / 2, bottom + 9, buf, 1, PLOT_BLACK);
    }
    plot_line(c, left, bottom, right, bottom, PLOT_BLACK);
    plot_line(c, left, bottom, left, top, PLOT_BLACK);
    if (spec->xlabel) {
        int tw = plot_text_width(spec->xlabel, 2);
        plot_text(c, (left + right - tw) / 2, bottom + 24, spec->xlabel, 2, PLOT_BLACK);
    }
    if (spec->ylabel) {
        int tw = plot_text_width(spec->ylabel, 2);
        plot_text_up(c, b.x + 8, (top + bottom + tw) / 2, spec->ylabel, 2, PLOT_BLACK);
    }
    for (int k = 0; k < ns; k++) {
        bool have = false;
        int px = 0, py = 0;
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) {
                have = false;
                continue;
            }
            int qx = PX(s[k].x[i]), qy = PY(s[k].y[i]);
            if (have)
                for (int d = 0; d < 2; d++)
                    plot_line(c, px, py + d, qx, qy + d, s[k].rgb);
            if (s[k].n <= 40) plot_disc(c, qx, qy, 3, s[k].rgb);
            px = qx;
            py = qy;
            have = true;
        }
    }
#undef PX
#undef PY
    /* Legend in the top-right (or bottom-right) corner of the plot area. */
    int ly = top + 8;
    if (spec->legend_bottom)
        for (int k = 0; k < ns; k++)
            if (s[k].label) ly = ly == top + 8 ? bottom - 8 - 12 : ly - 16;
    for (int k = 0; k < ns; k++) {
        if (!s[k].label) continue;
        int tw = plot_text_width(s[k].label, 1);
        int lx = right - 8 - tw - 26;
        plot_fill(c, (plot_box){lx - 4, ly - 4, tw + 38, 15}, PLOT_WHITE);
        plot_fill(c, (plot_box){lx, ly + 2, 20, 3}, s[k].rgb);
        plot_text(c, lx + 26, ly, s[k].label, 1, PLOT_BLACK);
        ly += 16;
    }
}

/* ---------------- PNG ---------------- */

int plot_write_png(const char *path, const plot_canvas *c) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "plot: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        fprintf(stderr, "plot: libpng failed writing %s\n", path);
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
    if (fclose(f) != 0) {
        fprintf(stderr, "plot: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}
