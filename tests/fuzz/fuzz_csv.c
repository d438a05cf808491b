/* fuzz_csv.c — libFuzzer target for the CSV reader.
 *
 * Each input is taken as the bytes of a CSV file and loaded three times: label in the
 * last column with F32 features, label in the first column with F64 features, and label
 * in the third column (out of range for a two-column file). Any
 * return value is fine; a crash, a leak or undefined behaviour is a finding. The
 * contract is also checked: on failure both outputs are NULL, on success X is
 * [rows, columns - 1] of the requested dtype and y is I64 [rows].
 */
#define _GNU_SOURCE /* memfd_create, in fuzz_input.h */
#include <stdint.h>
#include <stdlib.h>

#include <tapegrad/data.h>
#include <tapegrad/tape.h>

#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void load(const char *path, int label_column, tg_dtype dt) {
    tg_tensor *X = (tg_tensor *)1, *y = (tg_tensor *)1;
    if (tg_data_load_csv(path, label_column, dt, &X, &y) != 0) {
        if (X || y) abort();
        return;
    }
    if (!X || !y || X->dtype != dt || y->dtype != TG_I64 || X->ndim != 2 || y->ndim != 1 ||
        X->shape[0] != y->shape[0] || X->shape[0] < 1 || X->shape[1] < 1)
        abort();
    tg_tensor_free(X);
    tg_tensor_free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input_path(data, size);
    load(path, -1, TG_F32);
    load(path, 0, TG_F64);
    load(path, 2, TG_F32); /* out of range for two columns */
    tg_tape_reset();
    return 0;
}
