/*
 * ops_internal.h — the op layer's internal header: helpers the files of src/ops share
 * (argument checks, broadcasting, the strided walk, derived constants) and what the nn
 * layer needs from ops. Not part of the public API; names are tg__. Includes the
 * core's internal header (src/autodiff/internal.h), which an op needs for recording.
 */
#ifndef TAPEGRAD_OPS_INTERNAL_H
#define TAPEGRAD_OPS_INTERNAL_H

#include "../autodiff/internal.h"
#include "tapegrad/ops.h"

#pragma GCC visibility push(hidden) /* internal: not exported (see internal.h) */

/* ---- checks used by every op ---- */

/* x non-NULL (soft fail otherwise). */
bool tg__check_nonnull(const char *op, const tg_tensor *x);
/* x non-NULL and F32/F64. */
bool tg__check_float(const char *op, const tg_tensor *x);
/* a, b non-NULL, float and of equal dtype. */
bool tg__check_float2(const char *op, const tg_tensor *a, const tg_tensor *b);
/* For classification losses: scores [N, C] (float, N, C >= 1; `what` names them in
 * messages, e.g. "logits") and labels I64 [N] with every value in [0, C). */
bool tg__check_class_inputs(const char *op, const char *what, const tg_tensor *scores,
                            const tg_tensor *labels);
/* tg_softmax_cross_entropy with errors naming op (so a loss built on it names itself). */
tg_tensor *tg__softmax_cross_entropy(const char *op, tg_tensor *logits, const tg_tensor *labels);
/* Normalises axis (negative from the end) against ndim; false + error when out of
 * range. TG_ALL is not accepted here. */
bool tg__norm_axis(const char *op, const tg_tensor *x, int *axis);
/* NumPy broadcast of two shapes into out (ndim in *ondim). False + error naming op
 * when incompatible. */
bool tg__broadcast_shape(const char *op, const char *sym, int na, const int64_t *sa, int nb,
                         const int64_t *sb, int *ondim, int64_t *out);

/* For backward closures of piecewise-constant ops (abs, relu, max, maximum, ...): c is
 * a constant computed from the values of in[0..nin) without history (a mask, a sign).
 * Records that c depends on those inputs with a zero derivative, as PyTorch does, so
 * that in a TG_CREATE_GRAPH sweep the gradient built from c requires a gradient when an
 * input does, and differentiates to zeros. Records nothing outside grad mode (plain
 * sweeps). Returns c, or NULL (c NULL, or allocation failure). */
tg_tensor *tg__derived_constant(tg_tensor *c, int nin, tg_tensor *const *in);

/* True when `small` (leading 1s ignored) is a non-empty trailing part of `big`'s shape
 * with at least one dimension: broadcasting small against big repeats it row after
 * row (the bias add). The fast path of binary ops and of tg_sum_to. */
bool tg__is_row_of(int n_small, const int64_t *small, int n_big, const int64_t *big);

/* ---- products and convolution (matmul.c, conv.c) ---- */

/* Whether v fits BLAS's integer type (blasint: 32 or 64 bits, as OpenBLAS was built). */
bool tg__fits_blas(int64_t v);
/* C [m, n] = op(A) op(B) + beta C, row-major, F32 or F64 as dt, with op(X) = X^T where
 * the flag says, lda and ldb the row lengths of A and B as stored: the one call to
 * cblas_sgemm / cblas_dgemm. Every size >= 1 and fits BLAS (tg__fits_blas). */
void tg__gemm(tg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a,
              int64_t lda, const void *b, int64_t ldb, double beta, void *c);

/* C = sum_i op(A_i) op(B_i) [m, n] over the batch entries i of A and B, whose batch
 * dimensions are equal (at least one): the gradient of an operand broadcast over a
 * batch. Differentiable; errors name op. */
tg_tensor *tg__matmul_sum(const char *op, tg_tensor *a, tg_tensor *b, bool ta, bool tb);
/* The sum of x[0..n) the way tg_sum_to adds up a row: eight partial sums in double
 * (independent adds that vectorise, where one running sum waits for each add), the
 * tail, then the partials in pairs. Every row sum of a gradient goes through it, so a
 * sweep that records (a sum_to) and one that does not (the convolution's bias sums)
 * give the same bits. */
#define TG__ROW_SUM(NAME, T)                                                                       \
    static inline double NAME(const T *x, int64_t n) {                                             \
        double acc[8] = {0}, s = 0;                                                                \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= n; i += 8)                                                                 \
            for (int l = 0; l < 8; l++)                                                            \
                acc[l] += x[i + l];                                                                \
        for (; i < n; i++)                                                                         \
            s += x[i];                                                                             \
        return s + (((acc[0] + acc[1]) + (acc[2] + acc[3])) +                                      \
                    ((acc[4] + acc[5]) + (acc[6] + acc[7])));                                      \
    }
TG__ROW_SUM(tg__row_sum_f32, float)
TG__ROW_SUM(tg__row_sum_f64, double)

/* TG__AVX2_CLONES before a function: on x86-64 with GCC and glibc, it is compiled twice,
 * for AVX2 and for the x86-64 baseline (SSE2), and the dynamic loader picks one for the
 * CPU (an ifunc); elsewhere it does nothing. For the convolution's and pooling's loops of
 * copies, adds and comparisons: their results do not depend on the vector width (FMA
 * is not enabled, so no multiply and add is contracted), and the AVX2 build made the
 * Fashion-MNIST CNN's epoch about 4% faster. Not under ThreadSanitizer, whose
 * instrumented resolver runs before its runtime is set up and crashes. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) &&       \
    !defined(__SANITIZE_THREAD__)
#define TG__AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TG__AVX2_CLONES
#endif

/* y = tg_conv2d(x, w, stride, padding) + bias[o] on every output channel o (bias [O],
 * of w's dtype): the nn conv2d layer's forward in one op, which writes the bias before
 * the product instead of adding it after. Differentiable any number of times; errors
 * name tg_conv2d. */
tg_tensor *tg__conv2d_bias(tg_tensor *x, tg_tensor *w, tg_tensor *bias, int stride, int padding);
/* tg_max_pool2d(tg__conv2d_bias(x, w, bias, stride, padding), k, pstride, ppad) in one
 * op that pools each image's convolution output while it is in cache: the nn model's
 * forward for a conv2d layer followed by max pooling. The same values and gradients, bit
 * for bit; errors as the two ops give them (naming tg_conv2d or tg_max_pool2d).
 * Differentiable any number of times. */
tg_tensor *tg__conv2d_max_pool(tg_tensor *x, tg_tensor *w, tg_tensor *bias, int stride, int padding,
                               int k, int pstride, int ppad);

/* ---- strided iteration (the one broadcasting helper) ----
 * Walks an output of shape (ndim, shape) row by row. For each operand k its strides
 * (in elements, 0 on broadcast dimensions) are derived from its own shape aligned on
 * the right. For every innermost run of `n` output elements it calls
 *     fn(n, off_out, off[0..nops), inner_stride[0..nops), ctx)
 * with the element offsets of the run's start. Dimensions are coalesced where
 * possible so that the equal-shape case is one call with n = numel. */
typedef void (*tg__run_fn)(int64_t n, int64_t off_out, const int64_t *off,
                           const int64_t *inner_stride, void *ctx);
void tg__broadcast_walk(int ndim, const int64_t *shape, int nops, const int *op_ndim,
                        const int64_t *const *op_shape, tg__run_fn fn, void *ctx);

#pragma GCC visibility pop

#endif
