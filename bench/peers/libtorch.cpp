// libtorch.cpp — the libtorch (PyTorch's C++ API) peer of bench/tape_overhead.c,
// bench/spiral.c, bench/mlp.c and bench/conv.c: the same computations through
// torch::autograd, torch::nn and torch::optim, one intra-op thread
// (torch::set_num_threads(1); the scripts set OPENBLAS_NUM_THREADS as for tapegrad).
//
//   peer_libtorch scalar [batches [cycles]]         defaults 51 and 5000
//       y = sin(x1) + x1*x2 on 0-d float64 tensors requiring gradients (x1 = 2, x2 = 5):
//       y.backward(), then both gradients zeroed, as bench/tape_overhead_torch.py.
//   peer_libtorch spiral [repeats [steps]]          defaults 21 and 2000
//       a training step of Linear(2,100) -> ReLU -> Linear(100,3) on batches of 20
//       points of the 3-class spiral (same formula as tg_data_spiral, drawn with
//       std::mt19937_64), cross-entropy, SGD lr 0.1 momentum 0.9; 1000 warm-up steps.
//   peer_libtorch mlp [repeats [steps]]             defaults 21 and 10
//   peer_libtorch conv [repeats [steps]]            defaults 21 and 20
//       the networks of bench/mlp.c and bench/conv.c (bench/bench_sizes.h) trained with
//       SGD on 8 fixed batches of standard normal inputs and uniform labels
//       (torch::manual_seed(1)); three loops timed in turn as in bench/bench_net.h:
//       the whole step, forward + loss, forward + loss + backward.
//
// Every mode checks its result (the scalar gradients; training must lower the loss)
// and exits 1 otherwise. Output ends with RESULT lines like the C programs':
//   RESULT libtorch median_ns=<x> min_ns=<x>                           (scalar)
//   RESULT libtorch median_us=<x> min_us=<x> final_loss=<x>            (spiral)
//   RESULT libtorch step_ms=<x> step_min_ms=<x> fwd_ms=<x> fwdbwd_ms=<x> rss_mib=<x>
//          loss0=<x> loss=<x>                                          (mlp, conv)
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../bench_sizes.h"
#include "../bench_util.h"

namespace {

namespace F = torch::nn::functional;
using torch::Tensor;

struct scalar_ctx {
    Tensor x1, x2;
};

int scalar_cycle(void *ctx) {
    scalar_ctx *c = static_cast<scalar_ctx *>(ctx);
    Tensor y = torch::sin(c->x1) + c->x1 * c->x2;
    y.backward();
    c->x1.grad().zero_();
    c->x2.grad().zero_();
    return 0;
}

int run_scalar(int batches, long cycles) {
    auto opts = torch::dtype(torch::kFloat64).requires_grad(true);
    scalar_ctx c{torch::scalar_tensor(2.0, opts), torch::scalar_tensor(5.0, opts)};
    Tensor y = torch::sin(c.x1) + c.x1 * c.x2;
    y.backward();
    if (y.dim() != 0 || std::fabs(c.x1.grad().item<double>() - (std::cos(2.0) + 5.0)) > 1e-12 ||
        std::fabs(c.x2.grad().item<double>() - 2.0) > 1e-12) {
        std::fprintf(stderr, "peer_libtorch: wrong scalar gradient\n");
        return 1;
    }
    c.x1.grad().zero_();
    c.x2.grad().zero_();
    for (int i = 0; i < 1000; i++)
        scalar_cycle(&c);
    bench_stat st = bench_time_calls(batches, cycles, scalar_cycle, &c);
    std::printf("libtorch: y = sin(x1) + x1*x2, 0-d float64: median %.1f ns/cycle, min %.1f\n",
                st.median, st.min);
    std::printf("RESULT libtorch median_ns=%.1f min_ns=%.1f\n", st.median, st.min);
    return 0;
}

// ---- training ----

struct trainer {
    torch::nn::Sequential model;
    torch::optim::SGD opt;
    std::vector<Tensor> xb, yb;
    trainer(torch::nn::Sequential m, double lr, double momentum)
        : model(m), opt(m->parameters(), torch::optim::SGDOptions(lr).momentum(momentum)) {}
};

enum { STEP, FORWARD, FWD_BWD, MODES };

Tensor run_once(trainer &t, size_t b, int mode) {
    if (mode == STEP) t.opt.zero_grad();
    Tensor loss = F::cross_entropy(t.model->forward(t.xb[b]), t.yb[b]);
    if (mode != FORWARD) loss.backward();
    if (mode == STEP) t.opt.step();
    return loss.detach();
}

double mean_loss(trainer &t) {
    torch::NoGradGuard no_grad;
    double s = 0;
    for (size_t b = 0; b < t.xb.size(); b++)
        s += F::cross_entropy(t.model->forward(t.xb[b]), t.yb[b]).item<double>();
    return s / (double)t.xb.size();
}

// Times the modes in turn (only STEP when only_step), repeats x steps iterations each
// after warmup ones; out[mode] in nanoseconds per iteration.
void time_modes(trainer &t, int repeats, int steps, int warmup, bool only_step, bench_stat *out) {
    size_t k = 0, nb = t.xb.size();
    int nmodes = only_step ? 1 : MODES;
    for (int mode = 0; mode < nmodes; mode++)
        for (int w = 0; w < warmup; w++, k++)
            run_once(t, k % nb, mode);
    std::vector<double> ns((size_t)MODES * repeats);
    for (int r = 0; r < repeats; r++)
        for (int mode = 0; mode < nmodes; mode++) {
            double t0 = bench_now_ns();
            for (int s = 0; s < steps; s++, k++)
                run_once(t, k % nb, mode);
            ns[(size_t)mode * repeats + r] = (bench_now_ns() - t0) / steps;
        }
    for (int mode = 0; mode < nmodes; mode++)
        out[mode] = bench_summarize(ns.data() + (size_t)mode * repeats, repeats);
}

// The spiral of tg_data_spiral: class k's points at radius r = linspace(0, 1) and angle
// t = linspace(k 2pi/3, (k + 1.5) 2pi/3) + 0.1 N(0, 1); shuffled, cut into batches.
void spiral_batches(trainer &t) {
    const int per = BENCH_SPIRAL_PER_CLASS, classes = BENCH_SPIRAL_CLASSES, n = per * classes;
    std::mt19937_64 gen(0);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<float> x((size_t)n * 2);
    std::vector<int64_t> y((size_t)n);
    const double pi = 3.14159265358979323846;
    for (int k = 0; k < classes; k++)
        for (int i = 0; i < per; i++) {
            double r = (double)i / (per - 1);
            double a0 = k * 2 * pi / classes, a1 = (k + 1.5) * 2 * pi / classes;
            double a = a0 + (a1 - a0) * i / (per - 1) + 0.1 * normal(gen);
            x[2 * (size_t)(k * per + i)] = (float)(r * std::sin(a));
            x[2 * (size_t)(k * per + i) + 1] = (float)(r * std::cos(a));
            y[(size_t)(k * per + i)] = k;
        }
    std::vector<int> perm((size_t)n);
    for (int i = 0; i < n; i++)
        perm[(size_t)i] = i;
    std::shuffle(perm.begin(), perm.end(), gen);
    const int B = BENCH_SPIRAL_BATCH;
    for (int b = 0; b < n / B; b++) {
        Tensor xb = torch::empty({B, BENCH_SPIRAL_IN}), yb = torch::empty({B}, torch::kLong);
        for (int i = 0; i < B; i++) {
            int src = perm[(size_t)(b * B + i)];
            xb[i][0] = x[2 * (size_t)src];
            xb[i][1] = x[2 * (size_t)src + 1];
            yb[i] = y[(size_t)src];
        }
        t.xb.push_back(xb);
        t.yb.push_back(yb);
    }
}

int run_spiral(int repeats, int steps) {
    torch::manual_seed(0);
    namespace nn = torch::nn;
    trainer t(nn::Sequential(nn::Linear(BENCH_SPIRAL_IN, BENCH_SPIRAL_HID), nn::ReLU(),
                             nn::Linear(BENCH_SPIRAL_HID, BENCH_SPIRAL_CLASSES)),
              BENCH_SPIRAL_LR, BENCH_SPIRAL_MOMENTUM);
    spiral_batches(t);
    double start = mean_loss(t);
    bench_stat st[MODES];
    time_modes(t, repeats, steps, 1000, true, st);
    double last = mean_loss(t);
    std::printf("libtorch: %.3f us/step median, %.3f min (%d x %d steps); mean loss %.4f before "
                "training, %.4f after\n",
                st[STEP].median / 1e3, st[STEP].min / 1e3, repeats, steps, start, last);
    if (!(last < 0.5 * start)) {
        std::fprintf(stderr, "peer_libtorch: training did not lower the loss\n");
        return 1;
    }
    std::printf("RESULT libtorch median_us=%.3f min_us=%.3f final_loss=%.4f\n",
                st[STEP].median / 1e3, st[STEP].min / 1e3, last);
    return 0;
}

// Fixed batches of standard normal inputs of shape xshape with labels in [0, classes).
void random_batches(trainer &t, int nbatch, std::vector<int64_t> xshape, int classes) {
    torch::manual_seed(1);
    for (int b = 0; b < nbatch; b++) {
        t.xb.push_back(torch::randn(xshape));
        t.yb.push_back(torch::randint(0, classes, {xshape[0]}, torch::kLong));
    }
}

int run_net(const char *name, trainer &t, int repeats, int steps, int warmup) {
    double first = mean_loss(t);
    bench_stat st[MODES];
    time_modes(t, repeats, steps, warmup, false, st);
    double trained = mean_loss(t), rss = bench_max_rss_mib();
    std::printf("libtorch %s: step %.3f ms median (min %.3f), forward %.3f ms, forward+backward "
                "%.3f ms; mean loss %.4f before, %.4f after; max RSS %.1f MiB\n",
                name, st[STEP].median / 1e6, st[STEP].min / 1e6, st[FORWARD].median / 1e6,
                st[FWD_BWD].median / 1e6, first, trained, rss);
    std::printf("RESULT libtorch step_ms=%.4f step_min_ms=%.4f fwd_ms=%.4f fwdbwd_ms=%.4f "
                "rss_mib=%.1f loss0=%.4f loss=%.4f\n",
                st[STEP].median / 1e6, st[STEP].min / 1e6, st[FORWARD].median / 1e6,
                st[FWD_BWD].median / 1e6, rss, first, trained);
    if (!(trained < first)) {
        std::fprintf(stderr, "peer_libtorch: training did not lower the loss\n");
        return 1;
    }
    return 0;
}

int run_mlp(int repeats, int steps) {
    torch::manual_seed(0);
    namespace nn = torch::nn;
    trainer t(nn::Sequential(nn::Linear(BENCH_MLP_D0, BENCH_MLP_D1), nn::ReLU(),
                             nn::Linear(BENCH_MLP_D1, BENCH_MLP_D2), nn::ReLU(),
                             nn::Linear(BENCH_MLP_D2, BENCH_MLP_D3)),
              BENCH_MLP_LR, 0.0);
    random_batches(t, BENCH_MLP_NBATCH, {BENCH_MLP_BATCH, BENCH_MLP_D0}, BENCH_MLP_D3);
    return run_net("mlp", t, repeats, steps, 3);
}

int run_conv(int repeats, int steps) {
    torch::manual_seed(0);
    namespace nn = torch::nn;
    trainer t(
        nn::Sequential(
            nn::Conv2d(nn::Conv2dOptions(1, BENCH_CONV_C1, BENCH_CONV_K).padding(BENCH_CONV_PAD1)),
            nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)),
            nn::Conv2d(nn::Conv2dOptions(BENCH_CONV_C1, BENCH_CONV_C2, BENCH_CONV_K)), nn::ReLU(),
            nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)), nn::Flatten(),
            nn::Linear(BENCH_CONV_FLAT, BENCH_CONV_CLASSES)),
        BENCH_CONV_LR, BENCH_CONV_MOMENTUM);
    random_batches(t, BENCH_CONV_NBATCH, {BENCH_CONV_BATCH, 1, BENCH_CONV_SIDE, BENCH_CONV_SIDE},
                   BENCH_CONV_CLASSES);
    return run_net("conv", t, repeats, steps, 5);
}

} // namespace

int main(int argc, char **argv) {
    torch::set_num_threads(1);
    const char *mode = argc > 1 ? argv[1] : "";
    int a = argc > 2 ? std::atoi(argv[2]) : 0;
    long b = argc > 3 ? std::atol(argv[3]) : 0;
    if (std::strcmp(mode, "scalar") == 0) return run_scalar(a ? a : 51, b ? b : 5000);
    if (std::strcmp(mode, "spiral") == 0) return run_spiral(a ? a : 21, b ? (int)b : 2000);
    if (std::strcmp(mode, "mlp") == 0) return run_mlp(a ? a : 21, b ? (int)b : 10);
    if (std::strcmp(mode, "conv") == 0) return run_conv(a ? a : 21, b ? (int)b : 20);
    std::fprintf(stderr, "usage: peer_libtorch scalar|spiral|mlp|conv [repeats [steps]]\n");
    return 2;
}
