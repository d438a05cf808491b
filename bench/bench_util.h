/* bench_util.h — what every benchmark program shares: a monotonic clock, a median,
 * a timing loop, the peak RSS, and (in C) an allocator hook that counts the library's
 * allocations (installed with tg_set_allocator before any tensor exists). Header-only:
 * every .c file in bench/ is one executable. The C++ peers in bench/peers/ include it
 * too and get everything but the allocator hook. */
#ifndef TG_BENCH_UTIL_H
#define TG_BENCH_UTIL_H

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifndef __cplusplus
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
#endif

/* The clock of every measurement: CLOCK_MONOTONIC (wall time) by default; with
 * BENCH_CLOCK=cpu in the environment, CLOCK_PROCESS_CPUTIME_ID (the CPU time of all the
 * process's threads), which leaves out the time other processes hold the CPU on a
 * shared machine (but counts the time of every thread: with several busy threads it
 * exceeds the wall time). */
static inline double bench_now_ns(void) {
    static int cpu = -1;
    if (cpu < 0) {
        const char *e = getenv("BENCH_CLOCK");
        cpu = e && strcmp(e, "cpu") == 0;
    }
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
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

typedef struct {
    double median, min;
} bench_stat;

/* Sorts v[0..n) and returns its median (the upper one for even n) and minimum. */
static inline bench_stat bench_summarize(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    bench_stat s = {v[n / 2], v[0]};
    return s;
}

/* The process's peak resident set size so far, in MiB. */
static inline double bench_max_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

/* Calls fn(ctx) `calls` times per batch, `batches` times; returns the median and the
 * minimum over the batches of the nanoseconds per call, or a negative median when fn
 * failed (fn returns nonzero on failure; timing stops at the first failure). */
static inline bench_stat bench_time_calls(int batches, long calls, int (*fn)(void *), void *ctx) {
    double *ns = (double *)malloc(sizeof(double) * (size_t)batches);
    bench_stat st = {-1.0, -1.0};
    if (!ns) return st;
    for (int b = 0; b < batches; b++) {
        double t0 = bench_now_ns();
        for (long i = 0; i < calls; i++)
            if (fn(ctx) != 0) {
                free(ns);
                return st;
            }
        ns[b] = (bench_now_ns() - t0) / (double)calls;
    }
    st = bench_summarize(ns, batches);
    free(ns);
    return st;
}

#endif
