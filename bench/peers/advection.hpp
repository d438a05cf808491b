// advection.hpp — the advection function of bench/advection.h on a C++ active type,
// shared by the ADOL-C and Sacado peers (each instantiates it with its own type).
#ifndef TG_BENCH_PEERS_ADVECTION_HPP
#define TG_BENCH_PEERS_ADVECTION_HPP

#include "../advection.h"

// Runs the ADV_STEPS steps on q[0..ADV_N) in place and sets J = sum q[i]^2 (an out
// parameter: Sacado's ADvar is better not copied).
template <class T> void adv_function(T *q, T &J) {
    T flux[ADV_N - 1];
    for (int s = 0; s < ADV_STEPS; s++) {
        for (int i = 0; i < ADV_N - 1; i++)
            flux[i] = 0.5 * ADV_C * (q[i] + q[i + 1] + ADV_C * (q[i] - q[i + 1]));
        for (int i = 1; i < ADV_N - 1; i++)
            q[i] += flux[i - 1] - flux[i];
        q[0] = q[ADV_N - 2];
        q[ADV_N - 1] = q[1];
    }
    J = q[0] * q[0];
    for (int i = 1; i < ADV_N; i++)
        J += q[i] * q[i];
}

#endif
