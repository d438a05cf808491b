/* error.c — the thread-local error message (DESIGN rule 7) and shape formatting. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char err_buf[512];
static _Thread_local bool err_set;

static void vset(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static void vset(const char *fmt, va_list ap) {
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    err_set = true;
}

void *tg__fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vset(fmt, ap);
    va_end(ap);
    return NULL;
}

void *tg__fail_soft(const char *fmt, ...) {
    if (err_set) return NULL;
    va_list ap;
    va_start(ap, fmt);
    vset(fmt, ap);
    va_end(ap);
    return NULL;
}

int tg__fail_int(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vset(fmt, ap);
    va_end(ap);
    return -1;
}

const char *tg_error(void) { return err_set ? err_buf : NULL; }

void tg_clear_error(void) {
    err_set = false;
    err_buf[0] = '\0';
}

/* Eight rotating buffers: enough for every shape in one message. */
static _Thread_local char shp_ring[8][TG_MAX_DIMS * 21 + 4];
static _Thread_local unsigned shp_next;

const char *tg__shp_raw(int ndim, const int64_t *shape) {
    char *buf = shp_ring[shp_next++ % 8];
    size_t len = sizeof shp_ring[0], pos = 0;
    buf[pos++] = '[';
    for (int i = 0; i < ndim && i < TG_MAX_DIMS; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, i ? ",%lld" : "%lld", (long long)shape[i]);
    snprintf(buf + pos, len - pos, "]");
    return buf;
}

const char *tg__shp(const tg_tensor *t) {
    if (!t) return "NULL";
    return tg__shp_raw(t->ndim, t->shape);
}

char *tg_shape_str(const tg_tensor *t, char *buf, size_t len) {
    if (!buf || len == 0) return buf;
    snprintf(buf, len, "%s", tg__shp(t));
    return buf;
}
