/*
 * tapegrad/ops.h — primitive differentiable ops.
 *
 * Every op checks its inputs, allocates its result on the tape (a tape tensor, see
 * tensor.h), computes it, and — when grad mode is on and an input requires a gradient
 * — records a node whose backward is written with these same ops, so gradients can be
 * differentiated again (tg_grad with TG_CREATE_GRAPH).
 *
 *     // f(x) = a*x^2 + b, on F64 tensors a, x, b
 *     tg_tensor *f = tg_add(tg_mul(a, tg_square(x)), b);
 *
 * Rules shared by every op:
 *   - Binary elementwise ops broadcast like NumPy: shapes are aligned on the right and
 *     a dimension of 1 stretches; the result has the broadcast shape.
 *   - Both operands must have the same dtype (no silent promotion; use tg_cast).
 *     Differentiable ops take F32 or F64 only.
 *   - Errors: on bad input the op returns NULL and sets tg_error() to a message naming
 *     the op and the shapes, e.g. "tg_matmul: inner dimensions differ: [3,4] @ [5,2]".
 *     Given a NULL input an op returns NULL without overwriting an earlier message, so
 *     a whole forward pass can be written without checks and tested once at the end.
 *   - The result is a tape tensor: released by tg_tape_reset(), never freed by you.
 *   - A zero gradient stays zero. Where an op's local derivative is infinite or NaN at
 *     a finite input (sqrt and log at 0, division by 0, pow at a = 0 or a < 0, exp and
 *     expm1 past overflow, log1p at -1), an incoming gradient of exactly 0 gives 0, not
 *     0 * inf = NaN; a nonzero gradient still meets the infinity. So the branch that
 *     tg_where did not take contributes exactly 0: where(x > 0, sqrt(x), 0) has
 *     gradient 0 at x <= 0, also in second derivatives. PyTorch gives NaN there.
 */
#ifndef TAPEGRAD_OPS_H
#define TAPEGRAD_OPS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- binary elementwise, broadcasting ---- */
tg_tensor *tg_add(tg_tensor *a, tg_tensor *b); /* a + b */
tg_tensor *tg_sub(tg_tensor *a, tg_tensor *b); /* a - b */
tg_tensor *tg_mul(tg_tensor *a, tg_tensor *b); /* a * b */
tg_tensor *tg_div(tg_tensor *a, tg_tensor *b); /* a / b */
/* a^b. d/da = b a^(b-1); d/db = a^b log(a), taken as 0 where a = 0 and b >= 0 (as
 * PyTorch does), NaN where a < 0. */
tg_tensor *tg_pow(tg_tensor *a, tg_tensor *b);
/* max(a, b) / min(a, b) elementwise. On a tie the gradient is split evenly: each
 * input receives half (as in PyTorch). */
tg_tensor *tg_maximum(tg_tensor *a, tg_tensor *b);
tg_tensor *tg_minimum(tg_tensor *a, tg_tensor *b);

/* ---- unary elementwise ---- */
tg_tensor *tg_neg(tg_tensor *x);     /* -x */
tg_tensor *tg_exp(tg_tensor *x);     /* e^x;                d = e^x */
tg_tensor *tg_log(tg_tensor *x);     /* ln x;               d = 1/x */
tg_tensor *tg_sin(tg_tensor *x);     /* sin x;              d = cos x */
tg_tensor *tg_cos(tg_tensor *x);     /* cos x;              d = -sin x */
tg_tensor *tg_tanh(tg_tensor *x);    /* tanh x;             d = 1 - tanh^2 x */
tg_tensor *tg_sigmoid(tg_tensor *x); /* 1/(1+e^-x), stable for large |x|; d = s(1-s) */
tg_tensor *tg_relu(tg_tensor *x);    /* max{0,x};           d = 1 if x > 0 else 0 */
tg_tensor *tg_sqrt(tg_tensor *x);    /* sqrt x;             d = 1/(2 sqrt x) */
tg_tensor *tg_abs(tg_tensor *x);     /* |x|;                d = sign x (0 at 0) */
tg_tensor *tg_square(tg_tensor *x);  /* x^2;                d = 2x */
tg_tensor *tg_log1p(tg_tensor *x);   /* ln(1 + x), exact near 0;  d = 1/(1+x) */
tg_tensor *tg_expm1(tg_tensor *x);   /* e^x - 1, exact near 0;    d = e^x */
/* softplus(x) = ln(1 + e^x), computed as max(x, 0) + log1p(e^-|x|): never overflows and
 * is exact for large |x| (PyTorch's beta = 1; PyTorch returns x itself past x > 20, which
 * differs from this by less than 2e-9 relative). d = sigmoid(x), exactly 1/2 at 0. */
tg_tensor *tg_softplus(tg_tensor *x);
/* erf(x) = (2/sqrt pi) int_0^x e^(-t^2) dt;  d = (2/sqrt pi) e^(-x^2) */
tg_tensor *tg_erf(tg_tensor *x);
/* gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact (erf) form of PyTorch's
 * default GELU, computed as 0.5 x erfc(-x / sqrt 2) so it stays accurate for x << 0.
 * d = Phi(x) + x phi(x) with phi(x) = e^(-x^2/2) / sqrt(2 pi). */
tg_tensor *tg_gelu(tg_tensor *x);
/* silu(x) = x sigmoid(x) = x / (1 + e^-x) (swish);  d = s (1 + x (1 - s)), s = sigmoid(x) */
tg_tensor *tg_silu(tg_tensor *x);
/* elu(x) = x for x > 0, alpha (e^x - 1) otherwise (PyTorch's ELU; alpha = 1 is its
 * default). d = 1 for x > 0, alpha e^x otherwise (alpha at 0, as in PyTorch). alpha must
 * be finite (else NULL and tg_error()). */
tg_tensor *tg_elu(tg_tensor *x, double alpha);
/* clamp(x) = min(max(x, lo), hi) (torch.clamp): -INFINITY or +INFINITY means no bound on
 * that side; lo > hi gives hi everywhere (as in PyTorch). NaN stays NaN. The gradient is
 * 1 where lo <= x <= hi (the bounds included) and 0 elsewhere (also at NaN). NaN bounds
 * are an error. */
tg_tensor *tg_clamp(tg_tensor *x, double lo, double hi);

/* ---- with a scalar constant c ---- */
tg_tensor *tg_add_scalar(tg_tensor *x, double c); /* x + c */
tg_tensor *tg_mul_scalar(tg_tensor *x, double c); /* x * c */
tg_tensor *tg_pow_scalar(tg_tensor *x, double c); /* x^c; d = c x^(c-1) */

/* ---- reductions ----
 * axis in [-ndim, ndim) (negative counts from the end) or TG_ALL for every axis.
 * keepdim keeps the reduced axis with size 1; with TG_ALL and !keepdim the result is
 * 0-d. Reducing an empty axis: sum gives 0, mean NaN, max and logsumexp an error. */
enum { TG_ALL = 127 };
tg_tensor *tg_sum(tg_tensor *x, int axis, bool keepdim);  /* sum_i x_i */
tg_tensor *tg_mean(tg_tensor *x, int axis, bool keepdim); /* (1/n) sum_i x_i */
/* max_i x_i. The gradient goes to one maximal element only: the first one (lowest
 * index along the axis, or in row-major order for TG_ALL), like tg_argmax. NaN
 * propagates. */
tg_tensor *tg_max(tg_tensor *x, int axis, bool keepdim);
/* min_i x_i, with tg_max's rules: the gradient goes to the first minimal element only
 * (lowest index along the axis, or in row-major order for TG_ALL); NaN propagates (the
 * first NaN is the one chosen); an empty axis is an error. */
tg_tensor *tg_min(tg_tensor *x, int axis, bool keepdim);
/* The variance (1 / max(0, n - correction)) sum_i (x_i - mean x)^2 over n elements, as
 * torch.var(x, dim, correction=correction, keepdim): correction 1 is the unbiased
 * (Bessel) estimate, 0 the population variance. n - correction <= 0 divides by 0
 * (giving inf, or NaN for a constant or empty input), as PyTorch does. Computed in two
 * passes (the mean first), accumulating in double. d/dx_i = 2 (x_i - mean x) /
 * max(0, n - correction), written with ops (differentiable twice). correction < 0 is an
 * error. */
tg_tensor *tg_var(tg_tensor *x, int axis, bool keepdim, int correction);
/* sqrt(tg_var(x, axis, keepdim, correction)) (torch.std). Its gradient is infinite
 * where the variance is 0 (as in PyTorch): add a small constant under the root if the
 * input can be constant. */
tg_tensor *tg_std(tg_tensor *x, int axis, bool keepdim, int correction);
/* log sum_i e^(x_i), computed as m + log sum_i e^(x_i - m) with m = max_i x_i, so it
 * is exact for large inputs (1e4) and does not overflow; d/dx_i = softmax(x)_i. */
tg_tensor *tg_logsumexp(tg_tensor *x, int axis, bool keepdim);

/* ---- softmax ----
 * Along one axis (negative counts from the end; TG_ALL is an error), computed stably
 * with the maximum subtracted first. */
/* y_j = e^(x_j) / sum_k e^(x_k);            dx = y * (g - sum(g * y)) */
tg_tensor *tg_softmax(tg_tensor *x, int axis);
/* y_j = x_j - log sum_k e^(x_k);            dx = g - softmax(x) * sum(g) */
tg_tensor *tg_log_softmax(tg_tensor *x, int axis);
/* The fused softmax cross-entropy of logits [N, C] against labels (I64 [N], values in
 * [0, C)): the 0-d mean  (1/N) sum_i [ logsumexp(x_i) - x_i[y_i] ],  one pass per row.
 * d/dx = g (softmax(x) - onehot(y)) / N, itself differentiable. The tape keeps a
 * pointer to labels: keep it alive until the backward pass is done. */
tg_tensor *tg_softmax_cross_entropy(tg_tensor *logits, const tg_tensor *labels);

/* ---- matrix products (OpenBLAS gemm) ----
 * tg_matmul: C[.., i, j] = sum_l A[.., i, l] B[.., l, j] for A [..., m, k] and
 * B [..., k, n]. The leading (batch) dimensions broadcast like NumPy:
 * [2,1,3,4] @ [5,4,2] -> [2,5,3,2]. Result [..., m, n], same dtype (F32/F64).
 * A 1-D operand follows NumPy (np.matmul): a vector A [k] is a row [1, k] and a vector
 * B [k] a column [k, 1], and that added dimension is dropped from the result:
 * [k] @ [k] is the dot product (0-d), [..., m, k] @ [k] -> [..., m] (matrix-vector),
 * [k] @ [..., k, n] -> [..., n] (vector-matrix). 0-d operands are an error.
 * tg_matmul_t: C = op(A) op(B) where op transposes the last two dimensions when its
 * flag is set (trans_a: A is stored [..., k, m]; trans_b: B is stored [..., n, k]);
 * the transpose is passed to gemm, never copied.
 * Gradients: d op(A) = G op(B)^T and d op(B) = op(A)^T G, each computed as one
 * tg_matmul_t with flags (no copies), then summed over the batch dimensions that
 * broadcast.
 * k = 0 gives zeros; m = 0 or n = 0 (or an empty batch) gives an empty result.
 * Errors (NULL and tg_error() naming the shapes, "^T" marking a transposed operand):
 * a 0-d operand (tg_matmul) or ndim < 2 (tg_matmul_t, which takes no vectors), inner
 * dimensions that differ ("tg_matmul: inner dimensions differ: [3,4] @ [5,2]"), batch
 * dimensions that do not broadcast, dtypes that differ or are not F32/F64. */
tg_tensor *tg_matmul(tg_tensor *a, tg_tensor *b);
tg_tensor *tg_matmul_t(tg_tensor *a, tg_tensor *b, bool trans_a, bool trans_b);

/* ---- shape ---- */
/* Same elements, new shape (numel must match). One entry may be -1 (inferred). */
tg_tensor *tg_reshape(tg_tensor *x, int ndim, const int64_t *shape);
/* y = x with dimensions dim0 and dim1 swapped (negative counts from the end; dim0 ==
 * dim1 is a plain copy): y[.., j, .., i, ..] = x[.., i, .., j, ..]. The result is a
 * contiguous copy. Any dtype (I64 is copied, never differentiated). A 0-d x has no
 * axis to name: an error. Gradient: g transposed back. */
tg_tensor *tg_transpose(tg_tensor *x, int dim0, int dim1);
/* Stretches x to shape by NumPy broadcasting (x's shape must be broadcastable to it). */
tg_tensor *tg_broadcast_to(tg_tensor *x, int ndim, const int64_t *shape);
/* The reverse of broadcast_to: sums x over the dimensions that broadcasting to x's
 * shape would have stretched, giving shape. The gradient of a broadcast. */
tg_tensor *tg_sum_to(tg_tensor *x, int ndim, const int64_t *shape);
/* The elements start <= i < stop along axis, as a copy: y.shape[axis] = stop - start.
 * Negative axis, start and stop count from the end (start = -2 is shape[axis] - 2).
 * After that 0 <= start <= stop <= shape[axis] must hold (no clamping: a range out of
 * bounds is an error); start == stop gives an empty axis. Any dtype. Gradient: g put
 * back in zeros of x's shape. */
tg_tensor *tg_slice(tg_tensor *x, int axis, int64_t start, int64_t stop);
/* Joins xs[0..n) (n >= 1) along axis, in order, as a new tensor: y.shape[axis] is the
 * sum of theirs. They must agree in dtype and ndim and on every other dimension;
 * empty inputs are allowed. Negative axis counts from the end. Any dtype. Gradient:
 * each input that requires one receives its own slice of g. */
tg_tensor *tg_concat(int n, tg_tensor *const *xs, int axis);
/* y = x with axis restricted to the entries index[0..k), in that order:
 * y[.., j, ..] = x[.., index[j], ..] and y.shape[axis] = k. index: I64, 1-D, each value
 * in [0, shape[axis]) (checked: an error names the value, its position and x's shape;
 * negative values are not wrapped); repeats allowed (their gradients add up). Any
 * dtype for x. The tape keeps a pointer to index: it must outlive the backward pass. */
tg_tensor *tg_index_select(tg_tensor *x, int axis, const tg_tensor *index);
/* y[i][j][k] = x[i][index[i][j][k]][k] (for axis 1; likewise for any axis). index is
 * I64 with x's ndim and, on every axis but axis, the same size as x (torch.gather only
 * asks for no larger); its size along axis is free; y has index's shape. Each index value must lie
 * in [0, x.shape[axis]) (checked). Any dtype for x. Gradient: g scattered back into
 * zeros of x's shape, repeats adding up. The tape keeps a pointer to index: it must
 * outlive the backward pass. */
tg_tensor *tg_gather(tg_tensor *x, int axis, const tg_tensor *index);
/* cond ? a : b elementwise, broadcasting all three. cond is any dtype; nonzero is
 * true. Not differentiable in cond. */
tg_tensor *tg_where(const tg_tensor *cond, tg_tensor *a, tg_tensor *b);
/* Converts to dtype dt, always as a new tensor (dt == x's dtype gives a copy).
 * Differentiable between F32 and F64 (the gradient is cast back to x's dtype); casting
 * to or from I64 records nothing. To I64 truncates toward zero; NaN becomes 0 and
 * values beyond the int64 range saturate at INT64_MIN / INT64_MAX. An invalid dt is
 * an error. */
tg_tensor *tg_cast(tg_tensor *x, tg_dtype dt);
/* The same values with no history and requires_grad off: a constant for the tape.
 * Shares x's data (do not write to it). */
tg_tensor *tg_detach(tg_tensor *x);
/* Index of the maximum along axis (first on ties), as I64; axis reduced (or TG_ALL:
 * a 0-d flat index). Not differentiable. */
tg_tensor *tg_argmax(tg_tensor *x, int axis);

/* ---- convolution and pooling ----
 * Images are x [N, C, H, W] (F32 or F64). A kh x kw window moves over x padded by
 * `padding` on every side, `stride` positions at a time, giving OH x OW windows with
 *     OH = (H + 2 padding - kh) / stride + 1,   OW = (W + 2 padding - kw) / stride + 1
 * (floor division, as PyTorch's default). Errors (NULL and tg_error() naming the op
 * and the shapes): x not 4-D, kernel or stride < 1, padding < 0, a window larger than
 * the padded input, NULL, a non-float dtype. Average pooling is a composition of
 * tg_unfold with tg_mean; convolution and max pooling are ops whose gradients are
 * themselves ops; all are differentiable twice (and more). */

/* im2col (torch.nn.functional.unfold): cols [N, C*kh*kw, OH*OW] with, for s = stride
 * and p = padding,
 *     cols[n][c*kh*kw + i*kw + j][oh*OW + ow] = x[n][c][oh*s - p + i][ow*s - p + j]
 * and 0 where that position lies in the padding. Gradient: fold (col2im), which adds
 * every column entry back into the position of x it was read from and drops those read
 * from the padding; fold's own gradient is unfold, so double backward works. */
tg_tensor *tg_unfold(tg_tensor *x, int kh, int kw, int stride, int padding);
/* 2-D cross-correlation (torch.nn.functional.conv2d without bias) of x [N, C, H, W]
 * with w [O, C, kh, kw], for s = stride and p = padding (zero padding):
 *     y[n][o][oh][ow] = sum_{c,i,j} w[o][c][i][j] x[n][c][oh*s - p + i][ow*s - p + j]
 * giving y [N, O, OH, OW]; computed as reshape(w, [O, C*kh*kw]) @ tg_unfold(x), the
 * weight broadcast over the batch, and recorded as one op. The product is made image by
 * image, and so is x's gradient, fold(w^T @ dy): neither the unfolded input nor its
 * gradient is ever made for the whole batch [N, C*kh*kw, OH*OW]. A bias
 * b [O] is added as
 * tg_add(y, tg_reshape(b, 3, (int64_t[]){O, 1, 1})). Also an error: w not 4-D, channels
 * of x and w that differ, dtypes that differ. */
tg_tensor *tg_conv2d(tg_tensor *x, tg_tensor *w, int stride, int padding);
/* Max pooling over k x k windows (torch.nn.functional.max_pool2d): y [N, C, OH, OW],
 * y[n][c][oh][ow] = max over the window, the padding counting as -inf (so never chosen).
 * The gradient goes to one element per window: the first maximal one in row-major
 * order within the window (tg_max's rule); windows that overlap add up. Also an error,
 * as in PyTorch: padding > k / 2. */
tg_tensor *tg_max_pool2d(tg_tensor *x, int k, int stride, int padding);
/* Average pooling over k x k windows (torch.nn.functional.avg_pool2d with its defaults,
 * count_include_pad=True): the window sum divided by k*k, the padding counting as 0.
 * Also an error: padding > k / 2. */
tg_tensor *tg_avg_pool2d(tg_tensor *x, int k, int stride, int padding);

#ifdef __cplusplus
}
#endif
#endif
