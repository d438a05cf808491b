// sacado.cpp — the Sacado (Trilinos) peer of bench/tape_overhead.c and
// bench/advection.c, with Sacado::Rad, its operator-overloading reverse mode.
//
//   peer_sacado scalar [batches [cycles]]      defaults 51 and 100000
//       y = sin(x1) + x1*x2 at (2, 5): the ADvars, ADvar::Gradcomp(), the adjoints.
//   peer_sacado advection [repeats]            default 11
//       the advection benchmark (bench/advection.h), every grid value an ADvar.
//
// Rad records into its own memory blocks; Gradcomp() runs the reverse sweep, and the
// next ADvar made afterwards starts a new recording in the same blocks, so each cycle
// makes its independent variables anew. Gradients are checked before timing (the
// scalar one against cos(2) + 5 and 2, the advection one against the hand adjoint to
// 1e-10). Output ends with a RESULT line like the C programs':
//   RESULT sacado median_ns=<x> min_ns=<x>
//   RESULT sacado median_ms=<x> min_ms=<x> rss_mib=<x>
#include <Sacado_trad.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../bench_util.h"
#include "advection.hpp"

namespace {

typedef Sacado::Rad::ADvar<double> AD;

struct scalar_out {
    double g1, g2;
};

int scalar_cycle(void *ctx) {
    scalar_out *o = static_cast<scalar_out *>(ctx);
    AD x1 = 2.0, x2 = 5.0;
    AD y = sin(x1) + x1 * x2;
    AD::Gradcomp();
    o->g1 = x1.adj();
    o->g2 = x2.adj();
    return 0;
}

int run_scalar(int batches, long cycles) {
    scalar_out o;
    scalar_cycle(&o);
    if (std::fabs(o.g1 - (std::cos(2.0) + 5.0)) > 1e-12 || std::fabs(o.g2 - 2.0) > 1e-12) {
        std::fprintf(stderr, "peer_sacado: wrong scalar gradient %g %g\n", o.g1, o.g2);
        return 1;
    }
    for (int i = 0; i < 1000; i++)
        scalar_cycle(&o);
    bench_stat st = bench_time_calls(batches, cycles, scalar_cycle, &o);
    std::printf("Sacado::Rad: y = sin(x1) + x1*x2: median %.1f ns/cycle, min %.1f\n", st.median,
                st.min);
    std::printf("RESULT sacado median_ns=%.1f min_ns=%.1f\n", st.median, st.min);
    return 0;
}

struct adv_state {
    double q0[ADV_N], J, grad[ADV_N];
};

int adv_run(void *ctx) {
    adv_state *a = static_cast<adv_state *>(ctx);
    AD q0[ADV_N], q[ADV_N];
    for (int i = 0; i < ADV_N; i++) {
        q0[i] = a->q0[i];
        q[i] = q0[i];
    }
    AD J;
    adv_function(q, J);
    AD::Gradcomp();
    a->J = J.val();
    for (int i = 0; i < ADV_N; i++)
        a->grad[i] = q0[i].adj();
    return 0;
}

int run_advection(int repeats) {
    adv_state a;
    adv_init(a.q0);
    bench_stat st = adv_time("sacado", adv_run, &a, &a.J, a.grad, repeats, 2);
    if (st.median < 0) return 1;
    double rss = bench_max_rss_mib();
    std::printf("sacado: function + gradient %.3f ms median, %.3f min (%d runs); peak RSS %.1f "
                "MiB\n",
                st.median / 1e6, st.min / 1e6, repeats, rss);
    std::printf("RESULT sacado median_ms=%.4f min_ms=%.4f rss_mib=%.1f\n", st.median / 1e6,
                st.min / 1e6, rss);
    return 0;
}

} // namespace

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (std::strcmp(mode, "scalar") == 0) {
        int batches = argc > 2 ? std::atoi(argv[2]) : 51;
        long cycles = argc > 3 ? std::atol(argv[3]) : 100000;
        if (batches >= 1 && cycles >= 1) return run_scalar(batches, cycles);
    } else if (std::strcmp(mode, "advection") == 0) {
        int repeats = argc > 2 ? std::atoi(argv[2]) : 11;
        if (repeats >= 1) return run_advection(repeats);
    }
    std::fprintf(stderr, "usage: peer_sacado scalar [batches [cycles]] | advection [repeats]\n");
    return 2;
}
