/* optim.c — SGD, Adam/AdamW and RMSprop, global-norm gradient clipping and the
 * closed forms of two learning-rate schedules.
 *
 * Each rule is one kernel over the parameter, its gradient and its
 * state slots. The kernels follow PyTorch's single-tensor implementations operation by
 * operation (same expressions, same order), so F64 runs agree with torch.optim to the
 * last few bits. Each rule is one kernel written for both storage types.
 *
 * Updates are plain loops over ->data outside the tape: an optimizer step is not part
 * of any computation that is differentiated. */
#include <math.h>
#include <string.h>

#include "../ops/ops_internal.h"
#include "nn_internal.h"
#include "tapegrad/optim.h"

typedef enum { KIND_SGD, KIND_ADAM, KIND_RMSPROP } optim_kind;

#define MAX_STATE 3

/* The state slots of each rule, by PyTorch's state-key names. A slot is allocated only
 * when the options use it. */
static const char *const state_names[3][MAX_STATE] = {
    [KIND_SGD] = {"momentum_buffer", NULL, NULL},
    [KIND_ADAM] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    [KIND_RMSPROP] = {"square_avg", "momentum_buffer", "grad_avg"},
};

typedef struct {
    tg_tensor *param;            /* borrowed; persistent, F32 or F64 */
    tg_tensor *state[MAX_STATE]; /* owned; param's dtype and shape; NULL for unused slots */
    int64_t steps;               /* steps that updated this parameter (Adam's t) */
} param_slot;

struct tg_optim {
    optim_kind kind;
    const char *fn; /* constructor name, for messages */
    double lr;      /* current learning rate (tg_optim_set_lr changes it) */
    union {
        tg_sgd_opts sgd;
        tg_adam_opts adam;
        tg_rmsprop_opts rms;
    } o;               /* the options as given (their lr field is not used) */
    int n;             /* number of parameters, >= 1 */
    param_slot *slots; /* n entries */
};

/* ---------------- kernels ----------------
 * n elements; p the parameter, g its gradient, s[k] state slot k (NULL when unused);
 * t the step count of this parameter including the current step (t >= 1). Each rule is
 * written once as a macro and instantiated for float and double: the per-element
 * arithmetic is in the parameter's own type, as PyTorch's tensor ops are, with the
 * scalar factors (bias corrections, step sizes) computed in double first. */
typedef void (*kernel_fn)(const tg_optim *o, int64_t n, void *p, const void *g, void *const *s,
                          int64_t t);

/* SGD. The common cases (plain, momentum without Nesterov or weight decay) get loops of
 * their own without per-element tests, so they vectorise. */
#define SGD_KERNEL(NAME, T)                                                                        \
    static void NAME(const tg_optim *o, int64_t n, void *vp, const void *vg, void *const *s,       \
                     int64_t t) {                                                                  \
        T *p = vp, *buf = s[0];                                                                    \
        const T *g = vg;                                                                           \
        const T neg_lr = (T)(-o->lr), mom = (T)o->o.sgd.momentum;                                  \
        const T wd = (T)o->o.sgd.weight_decay, keep = (T)(1.0 - o->o.sgd.dampening);               \
        const bool nesterov = o->o.sgd.nesterov;                                                   \
        if (mom == 0 && wd == 0) {                                                                 \
            for (int64_t i = 0; i < n; i++)                                                        \
                p[i] = p[i] + neg_lr * g[i];                                                       \
            return;                                                                                \
        }                                                                                          \
        if (mom != 0 && wd == 0 && !nesterov && t > 1) {                                           \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T b = buf[i] * mom + keep * g[i];                                                  \
                buf[i] = b;                                                                        \
                p[i] = p[i] + neg_lr * b;                                                          \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T d = g[i];                                                                            \
            if (wd != 0) d = d + wd * p[i];                                                        \
            if (mom != 0) {                                                                        \
                /* First step: the buffer is the gradient itself, without dampening. */            \
                buf[i] = t == 1 ? d : buf[i] * mom + keep * d;                                     \
                d = nesterov ? d + mom * buf[i] : buf[i];                                          \
            }                                                                                      \
            p[i] = p[i] + neg_lr * d;                                                              \
        }                                                                                          \
    }

/* Adam's step with the default options (no weight decay, no AMSGrad) over arrays that do
 * not overlap. */
#define ADAM_PLAIN(T, F)                                                                           \
    static void adam_plain_##T(int64_t n, T *restrict p, const T *restrict g, T *restrict m,       \
                               T *restrict v, T b1, T b2, T one_b1, T one_b2, T eps, T neg_step,   \
                               T bc2_sqrt) {                                                       \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T gi = g[i];                                                                           \
            T mi = m[i] * b1 + one_b1 * gi;                                                        \
            T vi = v[i] * b2 + one_b2 * gi * gi;                                                   \
            m[i] = mi;                                                                             \
            v[i] = vi;                                                                             \
            T denom = sqrt##F(vi) / bc2_sqrt + eps;                                                \
            p[i] = p[i] + neg_step * mi / denom;                                                   \
        }                                                                                          \
    }
ADAM_PLAIN(float, f)
ADAM_PLAIN(double, )

#define ADAM_KERNEL(NAME, T, F)                                                                    \
    static void NAME(const tg_optim *o, int64_t n, void *vp, const void *vg, void *const *s,       \
                     int64_t t) {                                                                  \
        const tg_adam_opts *a = &o->o.adam;                                                        \
        const double bc1 = 1.0 - pow(a->beta1, (double)t), bc2 = 1.0 - pow(a->beta2, (double)t);   \
        const T b1 = (T)a->beta1, b2 = (T)a->beta2, eps = (T)a->eps, wd = (T)a->weight_decay;      \
        const T one_b1 = (T)(1.0 - a->beta1), one_b2 = (T)(1.0 - a->beta2);                        \
        const T neg_step = (T)(-(o->lr / bc1)), bc2_sqrt = (T)sqrt(bc2);                           \
        const T decay = (T)(1.0 - o->lr * a->weight_decay);                                        \
        T *p = vp, *m = s[0], *v = s[1], *vmax = s[2];                                             \
        const T *g = vg;                                                                           \
        if (!a->decoupled && wd == 0 && !a->amsgrad) {                                             \
            /* The default options: the same arithmetic as the loop below, in a loop without       \
             * branches over distinct arrays, which the compiler vectorises (sqrt included:        \
             * this file is built with -fno-math-errno). */                                        \
            adam_plain_##T(n, p, g, m, v, b1, b2, one_b1, one_b2, eps, neg_step, bc2_sqrt);        \
            return;                                                                                \
        }                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T gi = g[i], pi = p[i];                                                                \
            if (a->decoupled)                                                                      \
                pi = pi * decay;                                                                   \
            else if (wd != 0)                                                                      \
                gi = gi + wd * pi;                                                                 \
            T mi = m[i] * b1 + one_b1 * gi;                                                        \
            T vi = v[i] * b2 + one_b2 * gi * gi;                                                   \
            m[i] = mi;                                                                             \
            v[i] = vi;                                                                             \
            T vv = vi;                                                                             \
            if (a->amsgrad) {                                                                      \
                /* torch.maximum propagates NaN */                                                 \
                if (vv > vmax[i] || isnan(vv)) vmax[i] = vv;                                       \
                vv = vmax[i];                                                                      \
            }                                                                                      \
            T denom = sqrt##F(vv) / bc2_sqrt + eps;                                                \
            p[i] = pi + neg_step * mi / denom;                                                     \
        }                                                                                          \
    }

#define RMSPROP_KERNEL(NAME, T, F)                                                                 \
    static void NAME(const tg_optim *o, int64_t n, void *vp, const void *vg, void *const *s,       \
                     int64_t t) {                                                                  \
        const tg_rmsprop_opts *r = &o->o.rms;                                                      \
        const T neg_lr = (T)(-o->lr), al = (T)r->alpha, one_al = (T)(1.0 - r->alpha);              \
        const T eps = (T)r->eps, wd = (T)r->weight_decay, mom = (T)r->momentum;                    \
        T *p = vp, *sq = s[0], *buf = s[1], *ga = s[2];                                            \
        const T *g = vg;                                                                           \
        (void)t;                                                                                   \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T gi = g[i], pi = p[i];                                                                \
            if (wd != 0) gi = gi + wd * pi;                                                        \
            T sqi = sq[i] * al + one_al * gi * gi;                                                 \
            sq[i] = sqi;                                                                           \
            T avg;                                                                                 \
            if (r->centered) {                                                                     \
                T gai = ga[i] * al + one_al * gi;                                                  \
                ga[i] = gai;                                                                       \
                avg = sqrt##F(sqi - gai * gai);                                                    \
            } else {                                                                               \
                avg = sqrt##F(sqi);                                                                \
            }                                                                                      \
            avg = avg + eps;                                                                       \
            if (mom > 0) {                                                                         \
                T bi = buf[i] * mom + gi / avg;                                                    \
                buf[i] = bi;                                                                       \
                p[i] = pi + neg_lr * bi;                                                           \
            } else {                                                                               \
                p[i] = pi + neg_lr * gi / avg;                                                     \
            }                                                                                      \
        }                                                                                          \
    }

SGD_KERNEL(sgd_f32, float)
SGD_KERNEL(sgd_f64, double)
ADAM_KERNEL(adam_f32, float, f)
ADAM_KERNEL(adam_f64, double, )
RMSPROP_KERNEL(rmsprop_f32, float, f)
RMSPROP_KERNEL(rmsprop_f64, double, )

static kernel_fn kernel_of(optim_kind k, tg_dtype dt) {
    bool f64 = dt == TG_F64;
    switch (k) {
    case KIND_SGD:
        return f64 ? sgd_f64 : sgd_f32;
    case KIND_ADAM:
        return f64 ? adam_f64 : adam_f32;
    default:
        return f64 ? rmsprop_f64 : rmsprop_f32;
    }
}

/* Runs the rule on one parameter, in place. */
static void update_param(const tg_optim *o, param_slot *sl) {
    tg_tensor *p = sl->param;
    void *s[MAX_STATE];
    for (int k = 0; k < MAX_STATE; k++)
        s[k] = sl->state[k] ? sl->state[k]->data : NULL;
    kernel_of(o->kind, p->dtype)(o, p->numel, p->data, p->grad->data, s, sl->steps);
}

/* ---------------- construction ---------------- */

/* v in [lo, hi) (hi_open) or [lo, hi]; NaN fails. */
static bool check_range(const char *fn, const char *what, double v, double lo, double hi,
                        bool hi_open) {
    bool ok = v >= lo && (hi_open ? v < hi : v <= hi);
    if (ok) return true;
    if (isinf(hi))
        tg__fail("%s: %s must be a finite number >= %g, got %g", fn, what, lo, v);
    else
        tg__fail("%s: %s must be in [%g, %g%s, got %g", fn, what, lo, hi, hi_open ? ")" : "]", v);
    return false;
}

/* The options rule of optim.h: a +0 field takes its default, a -0 (TG_EXACT_ZERO) or any
 * other value is kept. */
static double or_default(double v, double dflt) { return v == 0.0 && !signbit(v) ? dflt : v; }

static bool check_params(const char *fn, int n, tg_tensor *const *params) {
    if (!params) return tg__fail_soft("%s: params is NULL", fn), false;
    if (n < 1) return tg__fail("%s: needs at least one parameter, got n = %d", fn, n), false;
    for (int i = 0; i < n; i++) {
        const tg_tensor *p = params[i];
        if (!p) return tg__fail_soft("%s: parameter %d is NULL", fn, i), false;
        if (p->dtype != TG_F32 && p->dtype != TG_F64)
            return tg__fail("%s: parameter %d is %s %s; only f32 and f64 tensors can be optimized",
                            fn, i, tg_dtype_name(p->dtype), tg__shp(p)),
                   false;
        if (!p->tg__persistent)
            return tg__fail("%s: parameter %d %s is a tape tensor; parameters must be persistent "
                            "tensors (made by tg_tensor_new and friends)",
                            fn, i, tg__shp(p)),
                   false;
        for (int j = 0; j < i; j++)
            if (params[j] == p)
                return tg__fail("%s: parameter %d %s is the same tensor as parameter %d", fn, i,
                                tg__shp(p), j),
                       false;
    }
    return true;
}

/* Allocates the optimizer and the used state slots (used[k]) for every parameter.
 * Parameters and options must have been checked. */
static tg_optim *optim_new(optim_kind kind, const char *fn, double lr, int n,
                           tg_tensor *const *params, const bool used[MAX_STATE]) {
    tg_optim *o = tg__alloc(sizeof *o);
    if (!o) return NULL;
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->fn = fn;
    o->lr = lr;
    o->n = n;
    o->slots = tg__alloc((size_t)n * sizeof *o->slots);
    if (!o->slots) {
        tg__release(o);
        return NULL;
    }
    memset(o->slots, 0, (size_t)n * sizeof *o->slots);
    for (int i = 0; i < n; i++) {
        tg_tensor *p = params[i];
        o->slots[i].param = p;
        for (int k = 0; k < MAX_STATE; k++) {
            if (!used[k]) continue;
            tg_tensor *st = tg_tensor_new(p->dtype, p->ndim, p->shape);
            if (!st) {
                tg_optim_free(o);
                return NULL;
            }
            o->slots[i].state[k] = st;
        }
    }
    return o;
}

tg_optim *tg_sgd(int n, tg_tensor *const *params, tg_sgd_opts opts) {
    const char *fn = "tg_sgd";
    if (!check_params(fn, n, params)) return NULL;
    opts.lr = or_default(opts.lr, 1e-3);
    if (!check_range(fn, "lr", opts.lr, 0.0, INFINITY, true) ||
        !check_range(fn, "momentum", opts.momentum, 0.0, 1.0, true) ||
        !check_range(fn, "dampening", opts.dampening, 0.0, 1.0, false) ||
        !check_range(fn, "weight_decay", opts.weight_decay, 0.0, INFINITY, true))
        return NULL;
    if (opts.nesterov && (opts.momentum <= 0.0 || opts.dampening != 0.0))
        return tg__fail("%s: nesterov needs momentum > 0 and dampening 0, got momentum %g and "
                        "dampening %g",
                        fn, opts.momentum, opts.dampening);
    bool used[MAX_STATE] = {opts.momentum != 0.0, false, false};
    tg_optim *o = optim_new(KIND_SGD, fn, opts.lr, n, params, used);
    if (o) o->o.sgd = opts;
    return o;
}

tg_optim *tg_adam(int n, tg_tensor *const *params, tg_adam_opts opts) {
    const char *fn = "tg_adam";
    if (!check_params(fn, n, params)) return NULL;
    opts.lr = or_default(opts.lr, 1e-3);
    opts.beta1 = or_default(opts.beta1, 0.9);
    opts.beta2 = or_default(opts.beta2, 0.999);
    opts.eps = or_default(opts.eps, 1e-8);
    if (!check_range(fn, "lr", opts.lr, 0.0, INFINITY, true) ||
        !check_range(fn, "beta1", opts.beta1, 0.0, 1.0, true) ||
        !check_range(fn, "beta2", opts.beta2, 0.0, 1.0, true) ||
        !check_range(fn, "eps", opts.eps, 0.0, INFINITY, true) ||
        !check_range(fn, "weight_decay", opts.weight_decay, 0.0, INFINITY, true))
        return NULL;
    bool used[MAX_STATE] = {true, true, opts.amsgrad};
    tg_optim *o = optim_new(KIND_ADAM, fn, opts.lr, n, params, used);
    if (o) o->o.adam = opts;
    return o;
}

tg_optim *tg_rmsprop(int n, tg_tensor *const *params, tg_rmsprop_opts opts) {
    const char *fn = "tg_rmsprop";
    if (!check_params(fn, n, params)) return NULL;
    opts.lr = or_default(opts.lr, 1e-2);
    opts.alpha = or_default(opts.alpha, 0.99);
    opts.eps = or_default(opts.eps, 1e-8);
    if (!check_range(fn, "lr", opts.lr, 0.0, INFINITY, true) ||
        !check_range(fn, "alpha", opts.alpha, 0.0, 1.0, true) ||
        !check_range(fn, "eps", opts.eps, 0.0, INFINITY, true) ||
        !check_range(fn, "weight_decay", opts.weight_decay, 0.0, INFINITY, true) ||
        !check_range(fn, "momentum", opts.momentum, 0.0, 1.0, true))
        return NULL;
    bool used[MAX_STATE] = {true, opts.momentum > 0.0, opts.centered};
    tg_optim *o = optim_new(KIND_RMSPROP, fn, opts.lr, n, params, used);
    if (o) o->o.rms = opts;
    return o;
}

/* ---------------- stepping ---------------- */

int tg_optim_step(tg_optim *o) {
    if (!o) return tg__fail_soft("tg_optim_step: optimizer is NULL"), -1;
    /* Check every gradient before touching anything, so a failed step changes nothing. */
    for (int i = 0; i < o->n; i++) {
        const tg_tensor *p = o->slots[i].param, *g = p->grad;
        if (!g) continue;
        if (g->dtype != p->dtype || !tg_same_shape(g, p))
            return tg__fail_int("tg_optim_step: gradient of parameter %d is %s %s but the "
                                "parameter is %s %s",
                                i, tg_dtype_name(g->dtype), tg__shp(g), tg_dtype_name(p->dtype),
                                tg__shp(p));
    }
    for (int i = 0; i < o->n; i++) {
        param_slot *sl = &o->slots[i];
        if (!sl->param->grad) continue;
        sl->steps++;
        update_param(o, sl);
    }
    return 0;
}

void tg_optim_zero_grad(tg_optim *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++)
        tg_zero_grad(o->slots[i].param);
}

void tg_optim_free(tg_optim *o) {
    if (!o) return;
    if (o->slots)
        for (int i = 0; i < o->n; i++)
            for (int k = 0; k < MAX_STATE; k++)
                tg_tensor_free(o->slots[i].state[k]);
    tg__release(o->slots);
    tg__release(o);
}

double tg_optim_get_lr(const tg_optim *o) {
    if (!o) return tg__fail_soft("tg_optim_get_lr: optimizer is NULL"), NAN;
    return o->lr;
}

void tg_optim_set_lr(tg_optim *o, double lr) {
    if (!o) {
        tg__fail_soft("tg_optim_set_lr: optimizer is NULL");
        return;
    }
    if (!check_range("tg_optim_set_lr", "lr", lr, 0.0, INFINITY, true)) return;
    o->lr = lr;
}

int tg_optim_num_params(const tg_optim *o) { return o ? o->n : 0; }

const tg_tensor *tg_optim_state(const tg_optim *o, int i, const char *name) {
    if (!o) return tg__fail_soft("tg_optim_state: optimizer is NULL");
    if (!name) return tg__fail_soft("tg_optim_state: name is NULL");
    if (i < 0 || i >= o->n)
        return tg__fail("tg_optim_state: parameter index %d out of range [0, %d)", i, o->n);
    for (int k = 0; k < MAX_STATE; k++) {
        const char *sn = state_names[o->kind][k];
        if (!sn || strcmp(sn, name) != 0) continue;
        if (!o->slots[i].state[k])
            return tg__fail("tg_optim_state: %s with these options keeps no \"%s\"", o->fn, name);
        return o->slots[i].state[k];
    }
    return tg__fail("tg_optim_state: %s keeps no state named \"%s\"", o->fn, name);
}

int64_t tg_optim_param_steps(const tg_optim *o, int i) {
    if (!o) return tg__fail_soft("tg_optim_param_steps: optimizer is NULL"), -1;
    if (i < 0 || i >= o->n)
        return tg__fail_int("tg_optim_param_steps: parameter index %d out of range [0, %d)", i,
                            o->n);
    return o->slots[i].steps;
}

int tg__optim_slots(tg_optim *o, int i, const char **names, tg_tensor **state) {
    int k = 0;
    for (int s = 0; s < MAX_STATE; s++) {
        if (!o->slots[i].state[s]) continue;
        names[k] = state_names[o->kind][s];
        state[k++] = o->slots[i].state[s];
    }
    return k;
}

int64_t *tg__optim_steps(tg_optim *o, int i) { return &o->slots[i].steps; }

/* ---------------- gradient clipping ---------------- */

static double sum_squares(const tg_tensor *g) {
    double s = 0.0;
    for (int64_t i = 0; i < g->numel; i++) {
        double v = tg__get(g, i);
        s += v * v;
    }
    return s;
}

double tg_clip_grad_norm(int n, tg_tensor *const *params, double max_norm) {
    const char *fn = "tg_clip_grad_norm";
    if (!params) return tg__fail_soft("%s: params is NULL", fn), NAN;
    if (n < 1) return tg__fail("%s: needs at least one parameter, got n = %d", fn, n), NAN;
    if (!(max_norm >= 0.0)) return tg__fail("%s: max_norm must be >= 0, got %g", fn, max_norm), NAN;
    for (int i = 0; i < n; i++) {
        const tg_tensor *p = params[i];
        if (!p) return tg__fail_soft("%s: parameter %d is NULL", fn, i), NAN;
        const tg_tensor *g = p->grad;
        if (g && g->dtype != TG_F32 && g->dtype != TG_F64)
            return tg__fail("%s: gradient of parameter %d is %s %s, not f32 or f64", fn, i,
                            tg_dtype_name(g->dtype), tg__shp(g)),
                   NAN;
    }
    /* As PyTorch: the norm of the per-tensor norms. */
    double sq = 0.0;
    bool any = false;
    for (int i = 0; i < n; i++) {
        const tg_tensor *g = params[i]->grad;
        if (!g) continue;
        double nrm = sqrt(sum_squares(g));
        sq += nrm * nrm;
        any = true;
    }
    if (!any) return 0.0;
    double total = sqrt(sq);
    /* PyTorch evaluates max_norm / (total + 1e-6) as reciprocal times max_norm. */
    double coef = (1.0 / (total + 1e-6)) * max_norm;
    if (!(coef < 1.0) && !isnan(coef)) return total; /* clamped to 1: nothing to scale */
    for (int i = 0; i < n; i++) {
        tg_tensor *g = params[i]->grad;
        if (!g) continue;
        for (int64_t j = 0; j < g->numel; j++)
            tg__set(g, j, tg__get(g, j) * coef);
    }
    return total;
}

/* ---------------- learning-rate schedules ---------------- */

double tg_lr_step(double base_lr, int epoch, int step_size, double gamma) {
    const char *fn = "tg_lr_step";
    if (!check_range(fn, "base_lr", base_lr, 0.0, INFINITY, true) ||
        !check_range(fn, "gamma", gamma, 0.0, INFINITY, true))
        return NAN;
    if (epoch < 0) return tg__fail("%s: epoch must be >= 0, got %d", fn, epoch), NAN;
    if (step_size < 1) return tg__fail("%s: step_size must be >= 1, got %d", fn, step_size), NAN;
    return base_lr * pow(gamma, (double)(epoch / step_size));
}

double tg_lr_cosine(double base_lr, int epoch, int t_max, double eta_min) {
    const char *fn = "tg_lr_cosine";
    static const double pi = 3.141592653589793; /* the double nearest pi, as math.pi */
    if (!check_range(fn, "base_lr", base_lr, 0.0, INFINITY, true) ||
        !check_range(fn, "eta_min", eta_min, 0.0, INFINITY, true))
        return NAN;
    if (epoch < 0) return tg__fail("%s: epoch must be >= 0, got %d", fn, epoch), NAN;
    if (t_max < 1) return tg__fail("%s: t_max must be >= 1, got %d", fn, t_max), NAN;
    return eta_min + (base_lr - eta_min) * (1.0 + cos(pi * epoch / t_max)) / 2.0;
}
