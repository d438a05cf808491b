// adolc.cpp — the ADOL-C peer of bench/tape_overhead.c and bench/advection.c.
//
//   peer_adolc scalar [batches [cycles]]        defaults 51 and 20000
//       y = sin(x1) + x1*x2 at (2, 5): trace_on, the adoubles, trace_off, then
//       gradient() (zos_forward + fos_reverse): the tape is recorded anew every cycle.
//   peer_adolc advection-retape [repeats]       default 11
//       the advection benchmark (bench/advection.h) with every grid value an adouble,
//       traced anew and differentiated with gradient() each time;
//   peer_adolc advection-reuse [repeats]        default 21
//       the same function traced once, outside the timing; each timed iteration is
//       gradient() on the recorded tape (zos_forward evaluates J from the tape, then
//       fos_reverse).
//
// Tapes are held in memory: trace_on gets buffers large enough for the whole tape
// (ADOL-C would otherwise spill to ADOLC-*.tap files in the working directory; the
// program checks that it did not). The scalar cycle uses ADOL-C's default buffers. Gradients are
// checked before timing (the scalar one against cos(2) + 5 and 2, the advection one against the
// hand adjoint to 1e-10). Output ends with a RESULT line like the C programs':
//   RESULT adolc median_ns=<x> min_ns=<x>
//   RESULT adolc-retape|adolc-reuse median_ms=<x> min_ms=<x> rss_mib=<x>
#include <adolc/adolc.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

#include "../bench_util.h"
#include "advection.hpp"

namespace {

// Buffer sizes for trace_on, in entries: the advection tape has 1.39 million
// operations, 3.56 million locations, 0.40 million values and a Taylor stack of 1.39
// million doubles (tapestats). Each buffer is at most 32 MiB, so that glibc's malloc
// keeps the memory between tracings instead of mapping it afresh every time.
const unsigned OP_BUF = 1u << 21, LOC_BUF = 1u << 22, VAL_BUF = 1u << 19, TAY_BUF = 1u << 21;
const short TAG_SCALAR = 1, TAG_ADV = 2;

int scalar_cycle(void *) {
    double x[2] = {2.0, 5.0}, yv, g[2];
    trace_on(TAG_SCALAR);
    adouble x1, x2, y;
    x1 <<= x[0];
    x2 <<= x[1];
    y = sin(x1) + x1 * x2;
    y >>= yv;
    trace_off();
    return gradient(TAG_SCALAR, 2, x, g) < 0 ? 1 : 0;
}

int run_scalar(int batches, long cycles) {
    double x[2] = {2.0, 5.0}, g[2];
    if (scalar_cycle(nullptr) != 0 || gradient(TAG_SCALAR, 2, x, g) < 0 ||
        std::fabs(g[0] - (std::cos(2.0) + 5.0)) > 1e-12 || std::fabs(g[1] - 2.0) > 1e-12) {
        std::fprintf(stderr, "peer_adolc: wrong scalar gradient\n");
        return 1;
    }
    for (int i = 0; i < 1000; i++)
        scalar_cycle(nullptr);
    bench_stat st = bench_time_calls(batches, cycles, scalar_cycle, nullptr);
    if (st.median < 0) return 1;
    std::printf("ADOL-C: y = sin(x1) + x1*x2, trace + gradient: median %.1f ns/cycle, min %.1f\n",
                st.median, st.min);
    std::printf("RESULT adolc median_ns=%.1f min_ns=%.1f\n", st.median, st.min);
    return 0;
}

struct adv_state {
    double q0[ADV_N], J, grad[ADV_N];
};

// Traces J(q0) on TAG_ADV; returns J.
double trace_advection(const double *q0) {
    double J;
    trace_on(TAG_ADV, 0, OP_BUF, LOC_BUF, VAL_BUF, TAY_BUF);
    {
        adouble q[ADV_N];
        for (int i = 0; i < ADV_N; i++)
            q[i] <<= q0[i];
        adouble sum;
        adv_function(q, sum);
        sum >>= J;
    }
    trace_off();
    return J;
}

int adv_retape(void *ctx) {
    adv_state *a = static_cast<adv_state *>(ctx);
    a->J = trace_advection(a->q0);
    return gradient(TAG_ADV, ADV_N, a->q0, a->grad) < 0 ? 1 : 0;
}

int adv_reuse(void *ctx) {
    adv_state *a = static_cast<adv_state *>(ctx);
    // gradient() = zos_forward (J from the tape, Taylors kept) + fos_reverse.
    if (zos_forward(TAG_ADV, 1, ADV_N, 1, a->q0, &a->J) < 0) return 1;
    double one = 1.0;
    return fos_reverse(TAG_ADV, 1, ADV_N, &one, a->grad) < 0 ? 1 : 0;
}

// True when the tape (tapestats' file-access flags) or its Taylor stack (the file in
// the working directory) went to files instead of staying in memory.
bool spilled_to_files(const size_t *stats) {
    return stats[OP_FILE_ACCESS] || stats[LOC_FILE_ACCESS] || stats[VAL_FILE_ACCESS] ||
           access("ADOLC-Taylors_2.tap", F_OK) == 0;
}

int run_advection(bool reuse, int repeats) {
    adv_state a;
    adv_init(a.q0);
    const char *tool = reuse ? "adolc-reuse" : "adolc-retape";
    if (reuse) trace_advection(a.q0); // the one recording, not timed
    int (*fn)(void *) = reuse ? adv_reuse : adv_retape;
    bench_stat st = adv_time(tool, fn, &a, &a.J, a.grad, repeats, 2);
    if (st.median < 0) return 1;
    size_t stats[STAT_SIZE];
    tapestats(TAG_ADV, stats);
    if (spilled_to_files(stats)) {
        std::fprintf(stderr, "peer_adolc: the tape spilled to ADOLC-*.tap files\n");
        return 1;
    }
    double rss = bench_max_rss_mib();
    std::printf("%s: function + gradient %.3f ms median, %.3f min (%d runs); peak RSS %.1f MiB; "
                "tape: %zu operations, %zu locations, %zu values, Taylor stack %zu\n",
                tool, st.median / 1e6, st.min / 1e6, repeats, rss, stats[NUM_OPERATIONS],
                stats[NUM_LOCATIONS], stats[NUM_VALUES], stats[TAY_STACK_SIZE]);
    std::printf("RESULT %s median_ms=%.4f min_ms=%.4f rss_mib=%.1f ops=%zu\n", tool,
                st.median / 1e6, st.min / 1e6, rss, stats[NUM_OPERATIONS]);
    return 0;
}

} // namespace

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (std::strcmp(mode, "scalar") == 0) {
        int batches = argc > 2 ? std::atoi(argv[2]) : 51;
        long cycles = argc > 3 ? std::atol(argv[3]) : 20000;
        if (batches >= 1 && cycles >= 1) return run_scalar(batches, cycles);
    } else if (std::strcmp(mode, "advection-retape") == 0 ||
               std::strcmp(mode, "advection-reuse") == 0) {
        bool reuse = std::strcmp(mode, "advection-reuse") == 0;
        int repeats = argc > 2 ? std::atoi(argv[2]) : reuse ? 21 : 11;
        if (repeats >= 1) return run_advection(reuse, repeats);
    }
    std::fprintf(stderr, "usage: peer_adolc scalar [batches [cycles]] | advection-retape "
                         "[repeats] | advection-reuse [repeats]\n");
    return 2;
}
