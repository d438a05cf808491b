/* random.c — the library's one random module (random.h): the SplitMix64 step, the
 * thread generator (xoshiro256**, seeded through SplitMix64) and the caller-owned
 * tg_rng, and the two conversions every draw goes through (bits to a uniform double,
 * two uniforms to a normal). */
#include <math.h>

#include "internal.h"

/* 2 pi (M_PI is not part of C11). */
#define TWO_PI 6.283185307179586476925286766559

/* The one SplitMix64 step (Steele, Lea and Flood): advances *state and returns 64
 * well-mixed bits. tg_rng is this step alone; the thread generator uses it to spread
 * a seed over its four state words. */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The top 53 bits as a double in [0, 1): every value is a multiple of 2^-53. */
static double unit_double(uint64_t bits) { return (double)(bits >> 11) * 0x1.0p-53; }

/* Box-Muller: a standard normal from two uniforms in [0, 1) (1 - u1 is in (0, 1], so
 * the logarithm is finite). */
static double normal_from(double u1, double u2) {
    return sqrt(-2.0 * log(1.0 - u1)) * cos(TWO_PI * u2);
}

/* ---- the thread generator: xoshiro256** ---- */

typedef struct {
    uint64_t s[4];
    bool seeded; /* false until the first use or tg_seed: then seeded with 0 */
} thread_rng;

static _Thread_local thread_rng rng;

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void tg_seed(uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        rng.s[i] = splitmix64(&x);
    rng.seeded = true;
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

double tg_rand_uniform(void) { return unit_double(next_u64()); }

double tg_rand_normal(void) {
    double u1 = tg_rand_uniform();
    return normal_from(u1, tg_rand_uniform());
}

void tg__rng_stream(uint64_t stream) {
    if (stream == 0) return;
    uint64_t x = next_u64();
    tg_seed(x ^ splitmix64(&stream));
}

void tg__rand_save(tg__rand_state *out) {
    for (int i = 0; i < 4; i++)
        out->s[i] = rng.s[i];
    out->seeded = rng.seeded;
}

void tg__rand_restore(const tg__rand_state *st) {
    for (int i = 0; i < 4; i++)
        rng.s[i] = st->s[i];
    rng.seeded = st->seeded;
}

/* ---- a generator the caller owns: SplitMix64 ---- */

void tg_rng_seed(tg_rng *g, uint64_t seed) {
    if (g) g->state = seed;
}

uint64_t tg_rng_next(tg_rng *g) { return splitmix64(&g->state); }

double tg_rng_uniform(tg_rng *g) { return unit_double(tg_rng_next(g)); }

double tg_rng_normal(tg_rng *g) {
    double u1 = tg_rng_uniform(g);
    return normal_from(u1, tg_rng_uniform(g));
}

uint64_t tg_rng_below(tg_rng *g, uint64_t n) {
    if (n < 1) return 0;
    /* Reject the lowest (2^64 mod n) values so every residue is equally likely. */
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t r = tg_rng_next(g);
        if (r >= threshold) return r % n;
    }
}
