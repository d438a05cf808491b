/*
 * tapegrad/data.h — data sets: the spiral toy problem (drawing from a tg_rng, random.h), a numeric
 * CSV loader and a reader of the IDX files of MNIST-style image sets.
 *
 * Every function here returns persistent tensors (see tensor.h) that the caller frees
 * with tg_tensor_free(). Random data come from a tg_rng the caller seeds, not from the
 * thread generator of tg_seed() (random.h), so drawing a data set does not shift the
 * initialisation of the layers built after it, and the same seed always gives the
 * same data.
 *
 *     tg_tensor *X, *y;
 *     if (tg_data_spiral(100, 3, 0, &X, &y) != 0)      // X: F32 [300, 2], y: I64 [300]
 *         fprintf(stderr, "%s\n", tg_error());
 *     ...
 *     tg_tensor_free(X);
 *     tg_tensor_free(y);
 *
 *     tg_rng g;                                       // a generator of your own
 *     tg_rng_seed(&g, 42);
 *     double u = tg_rng_uniform(&g), z = tg_rng_normal(&g);
 */
#ifndef TAPEGRAD_DATA_H
#define TAPEGRAD_DATA_H

#include "random.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The generator tg_rng (tg_rng_seed, tg_rng_uniform, tg_rng_normal, ...) is declared
 * in random.h. */

/* ---------------- the spiral ----------------
 * The classic K-class spiral (as in Stanford's CS231n notes). For class k < K and
 * point i < N (N = per_class), with row index k*N + i:
 *
 *     r = i / (N - 1)                                  (r = 0 when N = 1)
 *     t = 2 pi k / K + 1.5 (2 pi / K) i / (N - 1) + 0.1 z
 *     X[k*N + i] = (r sin t, r cos t),   y[k*N + i] = k
 *
 * i.e. r = linspace(0, 1, N) and t = linspace(2 pi k / K, 2 pi (k + 1.5) / K, N) plus
 * noise, where z is standard normal drawn by tg_rng_normal from a tg_rng seeded with
 * seed, one per point in row order. X is F32 [K*N, 2] and y is I64 [K*N]; both are
 * new persistent tensors written to *X and *y. Returns 0, or -1 with tg_error() set
 * (per_class < 1, classes < 1, NULL outputs, allocation failure), leaving *X and *y
 * NULL. */
int tg_data_spiral(int64_t per_class, int classes, uint64_t seed, tg_tensor **X, tg_tensor **y);
/* The same points with X of dtype dt (TG_F32 or TG_F64); the values are computed in
 * double precision and rounded once. */
int tg_data_spiral_dtype(int64_t per_class, int classes, uint64_t seed, tg_dtype dt, tg_tensor **X,
                         tg_tensor **y);

/* ---------------- CSV ----------------
 * Reads a numeric table with one row per line and fields separated by commas (blanks
 * around a field are ignored, CRLF line ends are fine, blank lines are skipped). The
 * first line is taken as a header and skipped when any of its fields is not a number.
 * Every row must have the same number of fields, at least two.
 *
 * Column label_column (0-based; -1 means the last one) holds the class label: an
 * integer, stored in y as I64 [rows]. The other columns, in order, form X of dtype dt
 * (TG_F32 or TG_F64), shape [rows, columns - 1]. Both are new persistent tensors.
 *
 * Returns 0, or -1 with tg_error() set and *X, *y NULL: file cannot be read (with the
 * system's reason), no data rows, a field that is empty or not a number, a label that
 * is not an integer, a row with a different number of fields (each message names the
 * file, the line number and the field), label_column out of range, bad dt. */
int tg_data_load_csv(const char *path, int label_column, tg_dtype dt, tg_tensor **X, tg_tensor **y);

/* ---------------- IDX (MNIST-style data sets) ----------------
 * The IDX format of MNIST, Fashion-MNIST and their relatives, plain or gzip-compressed
 * (recognised by content, not by name; read through zlib):
 *
 *     4 bytes     magic: 0x00 0x00, a type code, the number of dimensions d
 *                 type 0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32,
 *                 0x0D float32, 0x0E float64
 *     4*d bytes   the dimensions, each an unsigned 32-bit big-endian integer
 *     the rest    the elements, big-endian, row-major; exactly as many as the dimensions
 *                 say (no trailing bytes)
 *
 * tg_data_load_idx reads one file into a new persistent tensor *out of dtype dt (f32,
 * f64, or i64 for integer types) and the file's shape, e.g. F32 [60000, 28, 28] for
 * train-images-idx3-ubyte.gz, holding the stored values unscaled (0..255 for bytes).
 * Returns 0, or -1 with tg_error() naming the file and *out NULL: a missing, unreadable
 * or non-regular file, a wrong magic (an unknown type code, nonzero leading bytes), 0 or
 * more than 8 dimensions, a dimension of 0, more than 2^36 elements, a header or data
 * shorter than the dimensions say (truncated), bytes after the data, a corrupt gzip
 * stream (zlib's reason), float data asked for as i64, a bad dt. Memory grows with the
 * data actually read, never with what a header claims. */
int tg_data_load_idx(const char *path, tg_dtype dt, tg_tensor **out);

/* An images file and its labels file: X (dtype dt, f32 or f64) of the images' shape
 * [N, ...] and y the labels as I64 [N]. The labels file must be one-dimensional, of an
 * integer type, with as many entries as there are images. Returns 0, or -1 with
 * tg_error() set (every error of tg_data_load_idx, named for this function, and a count
 * or shape mismatch) and *X, *y NULL. */
int tg_data_load_idx_pair(const char *images_path, const char *labels_path, tg_dtype dt,
                          tg_tensor **X, tg_tensor **y);

#ifdef __cplusplus
}
#endif
#endif
