/* bench_util.h — what every benchmark program shares: a monotonic clock, a median,
 * and an allocator hook that counts the library's allocations (installed with
 * tg_set_allocator before any tensor exists). Header-only: every .c file in bench/ is one
 * executable. */
#ifndef TG_BENCH_UTIL_H
#define TG_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

#include <tapegrad.h>

static unsigned long long bench_n_alloc, bench_n_release;

static inline void *bench_count_alloc(size_t size, void *ud) {
    (void)ud;
    bench_n_alloc++;
    return malloc(size);
}

static inline void bench_count_release(void *p, void *ud) {
    (void)ud;
    if (p) bench_n_release++;
    free(p);
}

/* Routes every library allocation through the counters above. */
static inline void bench_count_allocations(void) {
    tg_set_allocator(&(tg_allocator){bench_count_alloc, bench_count_release, NULL});
}

static inline double bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v[0..n) in place and returns its median. */
static inline double bench_median(double *v, size_t n) {
    qsort(v, n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
