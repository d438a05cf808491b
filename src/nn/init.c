/* init.c — the parameter initializers, drawing from the thread generator of
 * random.h (src/autodiff/random.c). */
#include <math.h>

#include "nn_internal.h"

/* ---- initializers ---- */

static bool check_init(const char *op, const tg_tensor *t) {
    if (!t) {
        tg__fail_soft("%s: tensor is NULL", op);
        return false;
    }
    return tg__check_float(op, t);
}

/* fan_in / fan_out as nn.h documents them: [in, out] for 2-D, the size for 1-D and 1 for
 * a scalar. Tensors of more dimensions have no agreed layout here and are refused. */
static bool fans(const char *op, const tg_tensor *t, double *fan_in, double *fan_out) {
    if (t->ndim > 2) {
        tg__fail("%s: fan_in/fan_out are defined for tensors of at most 2 dimensions, got %s", op,
                 tg__shp(t));
        return false;
    }
    *fan_in = t->ndim == 0 ? 1.0 : (double)t->shape[0];
    *fan_out = t->ndim == 2 ? (double)t->shape[1] : *fan_in;
    return true;
}

static void fill_uniform(tg_tensor *t, double lo, double hi) {
    for (int64_t i = 0; i < t->numel; i++)
        tg__set(t, i, lo + (hi - lo) * tg_rand_uniform());
}

static void fill_normal(tg_tensor *t, double mean, double std) {
    for (int64_t i = 0; i < t->numel; i++)
        tg__set(t, i, mean + std * tg_rand_normal());
}

int tg_init_normal(tg_tensor *t, double mean, double std) {
    if (!check_init("tg_init_normal", t)) return -1;
    if (!isfinite(mean) || !isfinite(std) || std < 0)
        return tg__fail_int("tg_init_normal: needs a finite mean and std >= 0, got mean %g std %g",
                            mean, std);
    fill_normal(t, mean, std);
    return 0;
}

int tg_init_uniform(tg_tensor *t, double lo, double hi) {
    if (!check_init("tg_init_uniform", t)) return -1;
    if (!isfinite(lo) || !isfinite(hi) || lo > hi)
        return tg__fail_int("tg_init_uniform: needs finite lo <= hi, got [%g, %g)", lo, hi);
    fill_uniform(t, lo, hi);
    return 0;
}

static int init_constant(const char *op, tg_tensor *t, double c) {
    if (!check_init(op, t)) return -1;
    for (int64_t i = 0; i < t->numel; i++)
        tg__set(t, i, c);
    return 0;
}

int tg_init_zeros(tg_tensor *t) { return init_constant("tg_init_zeros", t, 0.0); }

int tg_init_constant(tg_tensor *t, double c) { return init_constant("tg_init_constant", t, c); }

/* The fan-scaled initializers: std = sqrt(2 / fan) with fan = fan_in + fan_out (xavier)
 * or fan_in (kaiming); normal draws N(0, std^2), uniform draws U(-b, b) with
 * b = sqrt(6 / fan) = sqrt(3) std, which has the same std. An empty tensor (a zero fan)
 * has nothing to fill: the scale is never computed. */
static int init_fan_scaled(const char *op, tg_tensor *t, bool xavier, bool uniform) {
    double fi, fo;
    if (!check_init(op, t) || !fans(op, t, &fi, &fo)) return -1;
    if (t->numel == 0) return 0;
    double fan = xavier ? fi + fo : fi;
    if (uniform) {
        double b = sqrt(6.0 / fan);
        fill_uniform(t, -b, b);
    } else {
        fill_normal(t, 0.0, sqrt(2.0 / fan));
    }
    return 0;
}

int tg_init_xavier_uniform(tg_tensor *t) {
    return init_fan_scaled("tg_init_xavier_uniform", t, true, true);
}

int tg_init_xavier_normal(tg_tensor *t) {
    return init_fan_scaled("tg_init_xavier_normal", t, true, false);
}

int tg_init_kaiming_uniform(tg_tensor *t) {
    return init_fan_scaled("tg_init_kaiming_uniform", t, false, true);
}

int tg_init_kaiming_normal(tg_tensor *t) {
    return init_fan_scaled("tg_init_kaiming_normal", t, false, false);
}
