/* module.c — what every layer shares: allocation, forward dispatch, parameter and
 * state listing, train/eval mode and freeing. The layers themselves are in layers.c. */
#include <string.h>

#include "nn_internal.h"

tg_module *tg__module_alloc(tg__module_kind kind, const char *name, tg__module_forward_fn fwd) {
    tg_module *m = tg__alloc(sizeof *m);
    if (!m) return NULL;
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->name = name;
    m->forward = fwd;
    m->training = true;
    m->dtype = TG_F32;
    return m;
}

/* Messages name a custom layer "tg_nn_custom <name>", a built-in one "tg_nn_<kind>". */
#define CUSTOM(m) ((m)->kind == TG__MOD_CUSTOM ? "custom " : "")

tg_tensor *tg_module_forward(tg_module *m, tg_tensor *x) {
    if (!m) return tg__fail_soft("tg_module_forward: module is NULL");
    if (!x) return tg__fail_soft("tg_nn_%s%s: input is NULL", CUSTOM(m), m->name);
    if (m->kind == TG__MOD_EMBEDDING) { /* the one layer fed indices */
        if (x->dtype != TG_I64)
            return tg__fail("tg_nn_embedding: input must be i64 indices, got %s %s",
                            tg_dtype_name(x->dtype), tg__shp(x));
        return m->forward(m, x);
    }
    if (x->dtype != TG_F32 && x->dtype != TG_F64)
        return tg__fail("tg_nn_%s%s: input must be f32 or f64, got %s %s", CUSTOM(m), m->name,
                        tg_dtype_name(x->dtype), tg__shp(x));
    if (m->nstate > 0 && x->dtype != m->dtype)
        return tg__fail("tg_nn_%s%s: input is %s %s but the layer is %s (use tg_cast)", CUSTOM(m),
                        m->name, tg_dtype_name(x->dtype), tg__shp(x), tg_dtype_name(m->dtype));
    return m->forward(m, x);
}

static int list_state(const char *op, tg_module *m, int count, const char **names, tg_tensor **out,
                      int cap) {
    if (!m) return tg__fail_soft("%s: module is NULL", op), -1;
    if (cap < 0 || (cap > 0 && !out))
        return tg__fail_int("%s: needs cap >= 0 and an output array when cap > 0, got cap %d", op,
                            cap);
    for (int i = 0; i < count && i < cap; i++) {
        out[i] = m->state[i];
        if (names) names[i] = m->state_names[i];
    }
    return count;
}

int tg_module_params(tg_module *m, tg_tensor **out, int cap) {
    return list_state("tg_module_params", m, m ? m->nparams : 0, NULL, out, cap);
}

int tg_module_state(tg_module *m, const char **names, tg_tensor **out, int cap) {
    return list_state("tg_module_state", m, m ? m->nstate : 0, names, out, cap);
}

void tg_module_train(tg_module *m, bool training) {
    if (m) m->training = training;
}

bool tg_module_is_training(const tg_module *m) { return m && m->training; }

const char *tg_module_kind(const tg_module *m) { return m ? m->name : NULL; }

void tg_module_free(tg_module *m) {
    if (!m) return;
    for (int i = 0; i < m->nstate; i++)
        tg_tensor_free(m->state[i]);
    tg__release(m);
}
