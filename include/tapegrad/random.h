/*
 * tapegrad/random.h — random numbers: one module, two kinds of generator.
 *
 *   - The thread generator, seeded by tg_seed(): xoshiro256** (Blackman and Vigna),
 *     one per thread, its 256-bit state filled from the seed by SplitMix64. Everything
 *     the library draws by itself uses it: initializers, dropout and DropConnect masks,
 *     tg_tensor_rand / tg_tensor_randn. Its functions are tg_rand_*().
 *   - A generator you own, tg_rng: plain SplitMix64 on one 64-bit word, a value you
 *     copy to fork a stream. Data sets and the model's shuffling use one of these, so
 *     drawing data never shifts the initialisation of the layers built after it. Its
 *     functions are tg_rng_*() and take the generator.
 *
 * Both kinds turn bits into numbers the same way: a uniform double is the top 53 bits
 * of a 64-bit draw times 2^-53 (in [0, 1), a multiple of 2^-53), and a standard normal
 * is Box-Muller on two such uniforms u1, u2:  sqrt(-2 ln(1 - u1)) cos(2 pi u2)  (one
 * normal per pair). So tg_rand_normal() and tg_rng_normal(&g) are the same algorithm
 * fed by different generators. Equal seeds give equal streams on every platform.
 *
 *     tg_seed(42);                          // the thread generator
 *     double u = tg_rand_uniform(), z = tg_rand_normal();
 *
 *     tg_rng g;                             // a generator of your own
 *     tg_rng_seed(&g, 42);
 *     double v = tg_rng_uniform(&g), w = tg_rng_normal(&g);
 */
#ifndef TAPEGRAD_RANDOM_H
#define TAPEGRAD_RANDOM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the thread generator ---- */

/* Seeds this thread's generator; a thread that never calls it starts from seed 0. */
void tg_seed(uint64_t seed);
/* A uniform double in [0, 1) from the thread generator. */
double tg_rand_uniform(void);
/* A standard normal from the thread generator (Box-Muller, two uniforms per value). */
double tg_rand_normal(void);

/* ---- a generator you own ---- */

/* SplitMix64: state += 0x9E3779B97F4A7C15, then two xor-shift-multiply rounds. Plain
 * data: copy it to fork a stream, keep one per thread. */
typedef struct {
    uint64_t state; /* advanced by every draw */
} tg_rng;

/* Starts g at seed. NULL is ignored. */
void tg_rng_seed(tg_rng *g, uint64_t seed);
/* The next 64 random bits. */
uint64_t tg_rng_next(tg_rng *g);
/* A uniform double in [0, 1): the top 53 bits of tg_rng_next / 2^53. */
double tg_rng_uniform(tg_rng *g);
/* A standard normal: Box-Muller from two uniforms u1, u2 (one normal per pair),
 * sqrt(-2 ln(1 - u1)) cos(2 pi u2); the same algorithm as tg_rand_normal. */
double tg_rng_normal(tg_rng *g);
/* A uniform integer in [0, n) without modulo bias (n >= 1; 0 for n < 1). */
uint64_t tg_rng_below(tg_rng *g, uint64_t n);

#ifdef __cplusplus
}
#endif
#endif
