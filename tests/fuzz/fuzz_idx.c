/* fuzz_idx.c — libFuzzer target for the IDX reader.
 *
 * Each input is taken as the bytes of an IDX file (plain, or gzip when it starts with
 * the gzip magic) and loaded as F32, as F64 and as I64, and as both halves of an
 * images/labels pair. Any return value is fine; a crash, a leak or undefined behaviour is
 * a finding. The contract is also checked: on failure the outputs are NULL; on success
 * the tensor has the requested dtype, 1 to 8 dimensions none of them 0, and the three
 * loads agree on the shape.
 */
#define _GNU_SOURCE /* memfd_create, in fuzz_input.h */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/data.h>
#include <tapegrad/tape.h>

#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Loads path as dt; returns the tensor (NULL on a failed load, checked). */
static tg_tensor *load(const char *path, tg_dtype dt) {
    tg_tensor *t = (tg_tensor *)1;
    if (tg_data_load_idx(path, dt, &t) != 0) {
        if (t) abort();
        return NULL;
    }
    if (!t || t->dtype != dt || t->ndim < 1 || t->ndim > TG_MAX_DIMS) abort();
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 1) abort();
        n *= t->shape[i];
    }
    if (n != t->numel) abort();
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input_path(data, size);
    tg_tensor *f = load(path, TG_F32), *d = load(path, TG_F64), *i = load(path, TG_I64);
    if (!f != !d) abort(); /* the float dtypes succeed or fail together */
    if (f && (f->ndim != d->ndim || memcmp(f->shape, d->shape, sizeof f->shape) != 0)) abort();
    if (i && (!f || i->numel != f->numel)) abort();
    tg_tensor *X = (tg_tensor *)1, *y = (tg_tensor *)1;
    if (tg_data_load_idx_pair(path, path, TG_F32, &X, &y) == 0) {
        if (!X || !y || y->ndim != 1 || X->shape[0] != y->shape[0]) abort();
    } else if (X || y) {
        abort();
    }
    tg_tensor_free(X);
    tg_tensor_free(y);
    tg_tensor_free(f);
    tg_tensor_free(d);
    tg_tensor_free(i);
    tg_tape_reset();
    return 0;
}
