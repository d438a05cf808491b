/* loss.c — losses (each the mean over the batch) and the L1/L2 penalties.
 *
 * Each is a composition of ops, so its gradient comes from the tape. Targets and labels
 * are constants of the loss: they are read, never written, and a target that happens to
 * require a gradient is detached rather than differentiated (its ->grad is untouched). */
#include <math.h>

#include "nn_internal.h"

/* labels [N] as an I64 tape tensor [N, 1], the index for tg_gather along axis 1. */
static tg_tensor *label_column(const tg_tensor *labels) {
    tg_tensor *idx = tg__tape_tensor(TG_I64, TG_SHAPE(labels->shape[0], 1));
    if (!idx) return NULL;
    const int64_t *y = labels->data;
    int64_t *d = idx->data;
    for (int64_t i = 0; i < labels->numel; i++)
        d[i] = y[i];
    return idx;
}

tg_tensor *tg_loss_cross_entropy(tg_tensor *logits, const tg_tensor *labels) {
    /* One fused op (ops.h): logsumexp minus the label's logit, averaged, in one pass;
     * its backward is g (softmax - onehot) / N, written with ops. It checks the inputs,
     * naming this loss in its messages. */
    return tg__softmax_cross_entropy("tg_loss_cross_entropy", logits, labels);
}

/* sum over all j of max(0, s_j - s_y + 1) times a constant mask that is 0 at j = y,
 * summed and divided by N. */
tg_tensor *tg_loss_hinge(tg_tensor *scores, const tg_tensor *labels) {
    if (!tg__check_class_inputs("tg_loss_hinge", "scores", scores, labels)) return NULL;
    tg_tensor *idx = label_column(labels);
    tg_tensor *other = tg__tape_full(scores->dtype, scores->ndim, scores->shape, 1.0);
    if (!idx || !other) return NULL;
    const int64_t *y = labels->data;
    int64_t c = scores->shape[1];
    for (int64_t i = 0; i < labels->numel; i++)
        tg__set(other, i * c + y[i], 0.0);
    tg_tensor *sy = tg_gather(scores, 1, idx); /* [N, 1] */
    tg_tensor *margins = tg_relu(tg_add_scalar(tg_sub(scores, sy), 1.0));
    tg_tensor *total = tg_sum(tg_mul(margins, other), TG_ALL, false);
    return tg_mul_scalar(total, 1.0 / (double)scores->shape[0]);
}

/* pred and target: same shape, same float dtype. */
static bool check_same(const char *op, const tg_tensor *pred, const tg_tensor *target) {
    if (!tg__check_nonnull(op, pred) || !tg__check_nonnull(op, target)) return false;
    if (!tg__check_float2(op, pred, target)) return false;
    if (!tg_same_shape(pred, target)) {
        tg__fail("%s: shapes differ: prediction %s, target %s", op, tg__shp(pred), tg__shp(target));
        return false;
    }
    if (pred->numel == 0) {
        tg__fail("%s: the mean of an empty tensor %s is undefined", op, tg__shp(pred));
        return false;
    }
    return true;
}

tg_tensor *tg_loss_mse(tg_tensor *pred, const tg_tensor *target) {
    if (!check_same("tg_loss_mse", pred, target)) return NULL;
    tg_tensor *t = tg_detach((tg_tensor *)target); /* read-only: a tape view, no history */
    return tg_mean(tg_square(tg_sub(pred, t)), TG_ALL, false);
}

/* softplus(x) - x t = max(x, 0) - x t + log(1 + e^-|x|): tg_softplus never overflows
 * and its derivative is sigmoid(x), so the gradient is sigmoid(x) - t everywhere, 1/2 - t
 * at x = 0. */
tg_tensor *tg_loss_bce_with_logits(tg_tensor *logits, const tg_tensor *target) {
    if (!check_same("tg_loss_bce_with_logits", logits, target)) return NULL;
    for (int64_t i = 0; i < target->numel; i++) {
        double v = tg__get(target, i);
        if (!(v >= 0.0 && v <= 1.0))
            return tg__fail("tg_loss_bce_with_logits: target %g at index %lld is not in [0, 1]", v,
                            (long long)i);
    }
    tg_tensor *t = tg_detach((tg_tensor *)target);
    return tg_mean(tg_sub(tg_softplus(logits), tg_mul(logits, t)), TG_ALL, false);
}

/* ---- penalties ---- */

static tg_tensor *penalty(const char *op, int n, tg_tensor *const *params, bool l1) {
    if (n < 1 || !params)
        return tg__fail("%s: needs n >= 1 parameters and a non-NULL array, got n = %d", op, n);
    for (int i = 0; i < n; i++) {
        if (!params[i]) return tg__fail_soft("%s: params[%d] is NULL", op, i);
        if (!tg__check_float(op, params[i])) return NULL;
        if (params[i]->dtype != params[0]->dtype)
            return tg__fail("%s: params[%d] is %s %s but params[0] is %s %s (use tg_cast)", op, i,
                            tg_dtype_name(params[i]->dtype), tg__shp(params[i]),
                            tg_dtype_name(params[0]->dtype), tg__shp(params[0]));
    }
    tg_tensor *total = NULL;
    for (int i = 0; i < n; i++) {
        tg_tensor *w = params[i];
        tg_tensor *s = tg_sum(l1 ? tg_abs(w) : tg_square(w), TG_ALL, false);
        total = total ? tg_add(total, s) : s;
        if (!total) return NULL;
    }
    return total;
}

tg_tensor *tg_l1_penalty(int n, tg_tensor *const *params) {
    return penalty("tg_l1_penalty", n, params, true);
}

tg_tensor *tg_l2_penalty(int n, tg_tensor *const *params) {
    return penalty("tg_l2_penalty", n, params, false);
}
