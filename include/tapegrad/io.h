/*
 * tapegrad/io.h — tensors to and from safetensors files.
 *
 * safetensors is the checkpoint format of the Hugging Face ecosystem, readable from
 * Python with `safetensors.numpy.load_file` or `safetensors.torch.load_file`:
 *
 *     8 bytes     N, the header length, unsigned little-endian
 *     N bytes     a JSON object, padded with spaces to a multiple of 8 bytes:
 *                   {"0.weight": {"dtype": "F32", "shape": [2, 100],
 *                                 "data_offsets": [0, 800]},
 *                    ...,
 *                    "__metadata__": {"producer": "tapegrad"}}
 *     the rest    the tensors' raw bytes, little-endian, row-major; data_offsets are
 *                 [begin, end) byte offsets into this part, which they cover exactly.
 *
 * tapegrad writes F32, F64 and I64 tensors. Files are written to a temporary file in
 * the destination's directory, flushed to disk (fsync) and then renamed over the
 * destination, so a crash leaves either the old file or the new one, never a torn one.
 * Loading validates the whole file before touching any tensor.
 *
 *     tg_tensor *w = ..., *b = ...;
 *     const char *names[] = {"w", "b"};
 *     if (tg_safetensors_save("ckpt.safetensors", 2, names, (tg_tensor *[]){w, b}) != 0 ||
 *         tg_safetensors_load("ckpt.safetensors", 2, names, (tg_tensor *[]){w, b}) != 0)
 *         fprintf(stderr, "%s\n", tg_error());
 *
 * A whole model is saved and loaded with tg_model_save / tg_model_load (nn.h), which
 * use these functions with the names "<layer index>.<state name>".
 */
#ifndef TAPEGRAD_IO_H
#define TAPEGRAD_IO_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the n tensors (any kind, F32/F64/I64, any shape) under the given names to
 * path as a safetensors file, atomically (temporary file + fsync + rename; the file is
 * created with mode 0644). Names must be distinct, non-empty and not "__metadata__".
 * n may be 0 (an empty file with the header "{}" padded). Returns 0, or -1 with
 * tg_error() set (NULL arguments, a bad name, an I/O error with the system's reason);
 * on error path is left as it was and no temporary file remains. */
int tg_safetensors_save(const char *path, int n, const char *const *names,
                        tg_tensor *const *tensors);

/* Reads the safetensors file at path into the n existing tensors: tensors[i] receives
 * the entry names[i], which must have exactly its dtype and shape. The file must hold
 * exactly these n entries (plus an optional "__metadata__" of string values): an
 * extra entry is an error, as it means the file was written for something else.
 *
 * Everything is validated and read into scratch memory first; only when the whole
 * file is good are the tensors overwritten. Returns 0, or -1 with tg_error() set and
 * every tensor untouched on: a missing or unreadable file, a file shorter than its
 * header or data claim (truncated), a header length over 100 MB or past the end of the
 * file, a header that is not a JSON object, an entry with a missing or malformed
 * dtype/shape/data_offsets, a dtype other than F32/F64/I64, a missing entry, an extra
 * entry, a dtype or shape that differs from the tensor's, offsets whose size does not
 * match the shape, offsets that overlap or leave gaps or do not end at the end of the
 * file, or NULL arguments. */
int tg_safetensors_load(const char *path, int n, const char *const *names,
                        tg_tensor *const *tensors);

#ifdef __cplusplus
}
#endif
#endif
