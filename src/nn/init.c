/* init.c — the per-thread random generator and the parameter initializers.
 *
 * The generator is xoshiro256** (Blackman and Vigna): 256 bits of state, period
 * 2^256 - 1, passes BigCrush, and four 64-bit words per thread cost nothing. Its state
 * is filled from the seed by splitmix64, which turns even seeds 0, 1, 2 into
 * well-mixed, never-all-zero states. Normals come from the Marsaglia polar method;
 * the second value of each pair is kept for the next call, and tg_seed drops it so a
 * seed fully determines the sequence. */
#include <math.h>

#include "nn_internal.h"

typedef struct {
    uint64_t s[4];
    bool seeded;     /* false until the first use or tg_seed: then seeded with 0 */
    bool have_spare; /* a normal deviate is waiting in spare */
    double spare;
} rng_state;

static _Thread_local rng_state rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void tg_seed(uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        rng.s[i] = splitmix64(&x);
    rng.seeded = true;
    rng.have_spare = false;
}

static uint64_t next_u64(void) {
    if (!rng.seeded) tg_seed(0);
    uint64_t *s = rng.s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void tg__rng_stream(uint64_t stream) {
    if (stream == 0) return;
    uint64_t x = next_u64();
    uint64_t mixed = x ^ splitmix64(&stream);
    tg_seed(mixed);
}

/* The top 53 bits as a double in [0, 1): every value is a multiple of 2^-53. */
double tg_rand_uniform(void) { return (double)(next_u64() >> 11) * 0x1.0p-53; }

double tg_rand_normal(void) {
    if (!rng.seeded) tg_seed(0);
    if (rng.have_spare) {
        rng.have_spare = false;
        return rng.spare;
    }
    double u, v, s;
    do {
        u = 2.0 * tg_rand_uniform() - 1.0;
        v = 2.0 * tg_rand_uniform() - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double f = sqrt(-2.0 * log(s) / s);
    rng.spare = v * f;
    rng.have_spare = true;
    return u * f;
}

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
