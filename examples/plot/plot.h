/*
 * plot.h — just enough drawing for the examples' pictures: an RGB canvas, lines,
 * rectangles, text in a small built-in bitmap font, line charts with labelled axes and
 * round (1-2-5) ticks, and PNG output through libpng.
 *
 *     plot_canvas c;
 *     if (plot_canvas_init(&c, 640, 400) != 0) return -1;
 *     double x[3] = {1, 2, 3}, y[3] = {0.9, 0.5, 0.4};
 *     plot_series s = {x, y, 3, PLOT_BLUE, "train"};
 *     plot_chart(&c, (plot_box){0, 0, 640, 400}, &(plot_chart_spec){
 *                    .title = "loss", .xlabel = "epoch", .ylabel = "loss", .integer_x = true},
 *                &s, 1);
 *     plot_write_png("loss.png", &c);
 *     plot_canvas_free(&c);
 *
 * The font is 5x7 pixels per character (printable ASCII; the tails of g, p, q, y reach
 * 2 rows lower), drawn at an integer scale; a character cell is 6 * scale wide and
 * 8 * scale high.
 */
#ifndef TG_EXAMPLES_PLOT_H
#define TG_EXAMPLES_PLOT_H

#include <stdbool.h>

typedef struct {
    int w, h;
    unsigned char *px; /* w * h RGB triples, row-major from the top-left */
} plot_canvas;

typedef struct {
    int x, y, w, h; /* top-left corner and size in pixels */
} plot_box;

extern const unsigned char PLOT_BLACK[3], PLOT_WHITE[3], PLOT_GREY[3], PLOT_DARK_GREY[3],
    PLOT_BLUE[3], PLOT_ORANGE[3], PLOT_GREEN[3], PLOT_RED[3];

/* A white w x h canvas; 0, or -1 when out of memory. */
int plot_canvas_init(plot_canvas *c, int w, int h);
void plot_canvas_free(plot_canvas *c);

/* Drawing; everything outside the canvas is clipped. */
void plot_put(plot_canvas *c, int x, int y, const unsigned char rgb[3]);
void plot_line(plot_canvas *c, int x0, int y0, int x1, int y1, const unsigned char rgb[3]);
void plot_fill(plot_canvas *c, plot_box b, const unsigned char rgb[3]);
void plot_frame(plot_canvas *c, plot_box b, int thickness, const unsigned char rgb[3]);
void plot_disc(plot_canvas *c, int cx, int cy, int r, const unsigned char rgb[3]);

/* Text with its top-left corner at (x, y); returns the width drawn. Characters outside
 * printable ASCII are drawn as '?'. */
int plot_text(plot_canvas *c, int x, int y, const char *s, int scale, const unsigned char rgb[3]);
/* Text turned 90 degrees counter-clockwise (read from bottom to top), its bottom-left
 * corner at (x, y): for vertical axis titles. */
void plot_text_up(plot_canvas *c, int x, int y, const char *s, int scale,
                  const unsigned char rgb[3]);
/* Width in pixels of s at scale (no trailing gap). */
int plot_text_width(const char *s, int scale);

/* Round ticks for the range [lo, hi]: a step of 1, 2 or 5 times a power of ten (at
 * least min_step) such that at most max_ticks ticks cover the range; *first and *last
 * become the multiples of the step at or below lo and at or above hi. Returns the step. */
double plot_nice_step(double lo, double hi, int max_ticks, double min_step, double *first,
                      double *last);

/* One line of a chart: n points (x[i], y[i]); non-finite points are skipped. */
typedef struct {
    const double *x, *y;
    int n;
    const unsigned char *rgb;
    const char *label; /* shown in the legend; NULL: none */
} plot_series;

typedef struct {
    const char *title, *xlabel, *ylabel;
    bool integer_x;     /* x ticks are whole numbers (epochs) */
    bool y_from_zero;   /* the y axis starts at 0 (else at the data's rounded minimum) */
    double y_max;       /* > 0: the y axis ends at least here (e.g. 1 for accuracy) */
    bool legend_bottom; /* the legend in the bottom-right corner (else top-right) */
} plot_chart_spec;

/* Draws axes with round ticks and labels, grid lines, the series and a legend inside
 * box b. */
void plot_chart(plot_canvas *c, plot_box b, const plot_chart_spec *spec, const plot_series *s,
                int ns);

/* Writes c as an 8-bit RGB PNG; 0, or -1 with a message on stderr. */
int plot_write_png(const char *path, const plot_canvas *c);

#endif
