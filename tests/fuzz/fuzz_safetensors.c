/* fuzz_safetensors.c — libFuzzer target for the safetensors reader.
 *
 * Each input is taken as the bytes of a safetensors file and loaded three ways:
 * tg_safetensors_load into two fixed tensors "a" (F32 [2, 3]) and "b" (I64 [4]),
 * tg_safetensors_load of nothing (n = 0, which still validates the whole file), and
 * tg_model_load into a small model (Linear 3 -> 2, BatchNorm1d 2), whose entries are
 * "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", .... Any return value
 * is fine; a crash, a leak or undefined behaviour is a finding. A load that succeeds
 * must also have filled the tensors with exactly the file's bytes, which is checked.
 */
#define _GNU_SOURCE /* memfd_create, in fuzz_input.h */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/io.h>
#include <tapegrad/nn.h>
#include <tapegrad/tape.h>

#include "fuzz_input.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tg_tensor *ta, *tb;
static tg_model *model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    ta = tg_tensor_new(TG_F32, TG_SHAPE(2, 3));
    tb = tg_tensor_new(TG_I64, TG_SHAPE(4));
    model = tg_model_new();
    if (!ta || !tb || !model || tg_model_add(model, tg_nn_linear(3, 2, TG_F32)) != 0 ||
        tg_model_add(model, tg_nn_batchnorm1d(2, TG_F32)) != 0)
        abort();
    return 0;
}

/* On success the data section of the file is "a" and "b" in some order, each
 * little-endian; compares the tensors to those bytes (on a little-endian host). */
static void check_loaded(const uint8_t *data, size_t size) {
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)data[i] << (8 * i);
    const uint8_t *d = data + 8 + hlen;
    size_t na = 6 * sizeof(float), nb = 4 * sizeof(int64_t);
    if (size != 8 + hlen + na + nb) abort();
    bool a_first = memcmp(d, ta->data, na) == 0 && memcmp(d + na, tb->data, nb) == 0;
    bool b_first = memcmp(d, tb->data, nb) == 0 && memcmp(d + nb, ta->data, na) == 0;
    if (!a_first && !b_first) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input_path(data, size);

    const char *names[] = {"a", "b"};
    tg_tensor *tensors[] = {ta, tb};
    if (tg_safetensors_load(path, 2, names, tensors) == 0) check_loaded(data, size);

    (void)tg_safetensors_load(path, 0, NULL, NULL);
    (void)tg_model_load(model, path);
    tg_tape_reset();
    return 0;
}
