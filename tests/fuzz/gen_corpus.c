/* gen_corpus.c — writes the seed inputs of the fuzz targets into corpus/.
 *
 * Usage: gen_corpus DIR   (writes DIR/safetensors/ *.safetensors, DIR/csv/ *.csv,
 * DIR/check_expr/ *.txt, DIR/ops/ * and DIR/idx/ *; the subdirectories must exist). The
 * safetensors seeds are written by tg_safetensors_save / tg_model_save, so they are valid
 * files that fuzz_safetensors loads successfully (ab, ba, model) or that exercise other
 * parts of the reader (empty, mixed); the CSV seeds cover a header, CRLF, blanks and label
 * positions; the check_expr seeds every part of tapegrad-check's grammar; the ops seeds are
 * programs for fuzz_ops (layout in fuzz_ops.c), one per family of ops, plus inputs that once
 * found a bug, kept as regression tests; the IDX seeds are small valid files of several
 * element types, plain and gzip-compressed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <tapegrad/io.h>
#include <tapegrad/nn.h>
#include <tapegrad/tape.h>

#include "fuzz_ops.h"

static const char *dir;

static const char *at(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static void check(int rc) {
    if (rc != 0) {
        fprintf(stderr, "gen_corpus: %s\n", tg_error());
        exit(1);
    }
}

static void text(const char *name, const char *s) {
    FILE *f = fopen(at(name), "wb");
    if (!f || fputs(s, f) == EOF || fclose(f) != 0) {
        perror(name);
        exit(1);
    }
}

/* A hand-made safetensors file: the 8-byte length of header, header, ndata zero bytes. */
static void raw_safetensors(const char *name, const char *header, size_t ndata) {
    FILE *f = fopen(at(name), "wb");
    size_t hlen = strlen(header);
    for (int i = 0; f && i < 8; i++)
        fputc((int)((hlen >> (8 * i)) & 0xff), f);
    if (f) fputs(header, f);
    for (size_t i = 0; f && i < ndata; i++)
        fputc(0, f);
    if (!f || fclose(f) != 0) {
        perror(name);
        exit(1);
    }
}

/* A fuzz_ops program: the bytes as given. */
static void ops_seed(const char *name, const uint8_t *bytes, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "ops/%s", name);
    FILE *f = fopen(at(path), "wb");
    if (!f || fwrite(bytes, 1, n, f) != n || fclose(f) != 0) {
        perror(name);
        exit(1);
    }
}

/* An IDX file: 00 00 code ndim, the big-endian dims, then the n element bytes; written
 * gzip-compressed when gz. */
static void idx_file(const char *name, int code, int ndim, const unsigned *dims,
                     const unsigned char *elems, size_t n, int gz) {
    unsigned char buf[256];
    size_t len = 0;
    buf[len++] = 0;
    buf[len++] = 0;
    buf[len++] = (unsigned char)code;
    buf[len++] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++)
        for (int s = 24; s >= 0; s -= 8)
            buf[len++] = (unsigned char)(dims[i] >> s);
    memcpy(buf + len, elems, n);
    len += n;
    if (gz) {
        gzFile f = gzopen(at(name), "wb");
        if (!f || gzwrite(f, buf, (unsigned)len) != (int)len || gzclose(f) != Z_OK) {
            perror(name);
            exit(1);
        }
        return;
    }
    FILE *f = fopen(at(name), "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(name);
        exit(1);
    }
}
#define OPS_SEED(name, ...)                                                                        \
    ops_seed(name, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

/* Each op is: code, operand a, operand b (each counting back from the latest value: 0
 * is the latest), four parameter bytes i0..i3 (axis = i0 % 10 - 5, or TG_ALL when
 * i0 % 11 == 10; ...), then the op's own bytes. An input is: dtype, rank, dimensions,
 * value seed. The first byte is the number of inputs minus one. */
static void ops_seeds(void) {
    /* tg_transpose of [4,4,2,1] on axes 1 and 3: a swapped axis of size 1 with a larger
     * axis between (the values were returned unpermuted). */
    OPS_SEED("transpose_size1", 0, IN_F64, 4, D4, D4, D2, D1, 5, /**/
             OP_TRANSPOSE, 0, 0, 6, 8, 0, 0);
    /* Reductions of an empty tensor with a huge leading axis ([0,0,0,0] broadcast to
     * [2^31,0,0,0,0], then sum, pow, ...): the loops once counted through the 2^31 rows
     * of an empty result (20 s under the sanitizers). */
    OPS_SEED("empty_huge_rows", 0x3f, 0x03, 0x04, 0x7c, 0x7c, 0xfc, 0x7c, 0x7c, 0x7c, 0x7c, 0x7c,
             0x74, 0xd8, 0x9a, 0x01, 0x04, 0x05, 0x00, 0x00, 0x08, 0x1f, 0x00, 0x00, 0x00, 0x00,
             0x03, 0x9a, 0x71, 0x15, 0x15, 0xe7, 0x15, 0x15, 0x9c, 0x9c, 0x00, 0x00, 0x00, 0x03,
             0x03, 0x01, 0x00, 0x02, 0x01, 0x03, 0x1c, 0x01, 0x03, 0x04, 0x01, 0x00, 0x1c, 0x01,
             0x00, 0x00, 0x01);
    /* The fuzzer's mutation of the seed above that found the same loops in tg_gather: an
     * empty index [2^31, 2, 0, 0, 0] (and in the index, softmax and scatter kernels: an
     * empty result's loops counted through its 2^31 outer rows). */
    OPS_SEED("gather_empty_huge_found", 0x3f, 0x03, 0x04, 0x7c, 0x7c, 0xfc, 0x7c, 0x7c, 0x7c, 0x7c,
             0x7c, 0x74, 0xd8, 0x9a, 0x01, 0x04, 0x05, 0x00, 0x00, 0x08, 0x1f, 0x00, 0x00, 0x00,
             0x00, 0x15, 0x15, 0x71, 0xe7, 0x15, 0x15, 0x9a, 0x03, 0x9c, 0x01, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x00, 0x25, 0x02, 0x03, 0x01, 0x01, 0x1c, 0x03, 0x04, 0x01, 0x00, 0x1c,
             0x01, 0x00, 0x00, 0x11);
    /* log_softmax of x [2^31, 0] in a create-graph sweep: its backward summed the empty
     * axis into a [2^31, 1] tensor of zeros (16 GiB) before the fix. */
    OPS_SEED("softmax_empty_huge_found", 0x00, 0x03, 0x01, 0x0c, 0x12, 0x20, 0x01, 0x00, 0xe0, 0xff,
             0x00, 0xfa, 0x01, 0x02, 0x00, 0x00, 0x08, 0x1b, 0x00, 0xff, 0xff, 0xd6, 0xd6, 0x00,
             0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0x00, 0x00, 0x5f,
             0x00, 0xd6, 0xd6, 0xd6, 0x00, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6,
             0xd6, 0xd6, 0xd6, 0x00, 0x00, 0x00, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6,
             0xd6, 0xd6, 0xd6, 0xd2, 0xd6, 0xd6, 0xd6, 0xd2, 0xd6, 0xd6, 0xd6, 0xd6, 0xd4, 0x2a,
             0x97, 0xd6, 0xd6, 0xd6, 0xd6, 0x81, 0xd6, 0xd6, 0xd6, 0xff, 0xff, 0xff, 0x23, 0xd6,
             0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xe6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6,
             0x52, 0x52, 0x52, 0x52, 0x52, 0x52, 0x52, 0x52, 0x52, 0x52, 0x52, 0x52, 0x52, 0x52,
             0x52, 0x52, 0x52, 0x52, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00,
             0x0a, 0x00, 0x01);
    /* sin((x^x)^(x^x)) and its relatives at x = 2.13: central differences at eps 1e-6
     * and 1e-7 both miss the (right) derivative, by truncation error alone. */
    OPS_SEED("pow_tower_curved_found", 0x00, 0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07, 0x07, 0xf8,
             0x25, 0xf8, 0xf8, 0xf8, 0xf8, 0xf8, 0xf8, 0xf8, 0xf8, 0xf8, 0xf8, 0xf9, 0x00, 0x01,
             0x25, 0xf8, 0xf8, 0xf8, 0xf8, 0xf8, 0xf8, 0xf8, 0xf8, 0xf8, 0xf8, 0xf9, 0x00, 0x01,
             0x03, 0x03, 0x00, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7,
             0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7,
             0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0xc7, 0x09, 0x01, 0x00, 0x00, 0x09,
             0xff, 0x00, 0x01, 0xc7, 0xc7, 0x07, 0x00, 0x00, 0x51);
    /* A create-graph sweep whose tape outgrew 64 MiB under the harness's 64 MiB cap on
     * one allocation: the arena asked for a doubled 128 MiB block and the sweep failed
     * with "out of memory" for a 1.9 MB tensor. The arena now takes the smallest block
     * that fits when its doubled one is refused. */
    OPS_SEED("arena_block_cap_found", 0x00, 0x01, 0x22, 0x02, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8,
             0xd8, 0x9a, 0x9a, 0x9a, 0x9a, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0x9a, 0x9a,
             0x9a, 0x9a, 0x20, 0x75, 0xa1, 0x67, 0x1e, 0xd8, 0xd8, 0x9a, 0x75, 0x60, 0x67, 0xa1,
             0x1e, 0xd8, 0xd8, 0x9a, 0xd8, 0xd8, 0x02, 0x9a, 0xd8, 0xd8, 0xd8, 0xd8, 0xd8, 0x0d,
             0x9a, 0x9a, 0x9a, 0x20, 0x75, 0xff, 0x1d, 0x1e, 0xd8, 0xd8, 0x9a, 0x05, 0x00, 0x00,
             0x00, 0x9a, 0x87, 0x00, 0x00, 0x00, 0x00, 0x20, 0x75, 0xa1, 0x67, 0x1e, 0xd8, 0xd8,
             0x9a, 0x75, 0x60, 0x67, 0xa1, 0x1e, 0xd8, 0xd8, 0x9a, 0xd8, 0xd8, 0x02, 0x9a, 0xd8,
             0xd8, 0xd8, 0xd8, 0xd8, 0x0d, 0x9a, 0x9a, 0x9a, 0x20, 0x75, 0xff, 0x1d, 0x1e, 0xd8,
             0xd8, 0x9a, 0x05, 0x00, 0x00, 0x00, 0x9a, 0x87, 0x00, 0x00, 0x00, 0x00);
    /* F32 convolutions whose plain sweep made the weight gradient as cols @ G^T while the
     * create-graph sweep made it as G @ cols^T: the two rounded apart by 5e-5 relative
     * (4.991058 against 4.991302). The recording path now makes the products in the
     * plain path's orientation, and the two agree bit for bit. */
    OPS_SEED("conv_weight_grad_orientation_found", 0x00, 0x01, 0x22, 0x59, 0x59, 0x59, 0x59, 0x59,
             0x59, 0x59, 0x5a, 0x59, 0x59, 0x9f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x00, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59, 0x59,
             0x59, 0x59, 0x59, 0x59, 0x27, 0x59, 0x59, 0x49, 0x59, 0x59, 0x59, 0x0c, 0x59, 0x12,
             0x59, 0x07, 0xde, 0x60, 0xd8, 0x9a, 0x67, 0xd8, 0x16, 0xd8, 0xd0, 0x9a, 0xd8, 0xd8,
             0x02, 0xf6, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x9a, 0x9a, 0x9a, 0x20, 0x8a,
             0xfe, 0x1d, 0x1e, 0xd8, 0xd8, 0x9a, 0x05, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9e, 0x60, 0xa1, 0x75, 0xd8, 0x9a, 0x67, 0xd8,
             0x16, 0xd8, 0xd8, 0x9a, 0x9a, 0x20, 0x8a, 0xfe, 0x1d, 0x1e, 0xd8, 0xd8, 0x9a, 0x05,
             0x08, 0x00, 0x00, 0x9a, 0x87, 0x00, 0x00, 0x00, 0x00);
    /* The same bug as the fuzzer first found it: [1,2,2,1] on axes -2 and -4. */
    OPS_SEED("transpose_size1_found", 0x9a, 0x9a, 0x9a, 0x9a, 0x7b, 0x7b, 0x9a, 0x9a, 0x7b, 0x79,
             0x2f, 0x7b, 0x7b, 0x7b, 0x7b, 0x7b, 0x5b);
    /* Broadcasting: [2,1,3] * [1,3], broadcast_to [2,2,3,3], sum_to [2,1,3], maximum,
     * a subtraction that broadcasts again, abs. */
    OPS_SEED("broadcast", 1, IN_F64, 3, D2, D1, D3, 1, IN_F64, 2, D1, D3, 2, /**/
             OP_MUL, 1, 0, 0, 0, 0, 0,                                       /**/
             OP_BROADCAST_TO, 0, 0, 0, 0, 0, 0, 1, 1, 2, 1,                  /**/
             OP_SUM_TO, 0, 0, 0, 0, 0, 0, 1, 2, 1,                           /**/
             OP_MAXIMUM, 0, 2, 0, 0, 0, 0,                                   /**/
             OP_SUB, 0, 4, 0, 0, 0, 0,                                       /**/
             OP_ABS, 0, 0, 0, 0, 0, 0);
    /* Batched matmul [2,1,2,3] @ [3,2], matmul_t with trans_b, tanh. */
    OPS_SEED("matmul", 1, IN_F64, 4, D2, D1, D2, D3, 3, IN_F64, 2, D3, D2, 4, /**/
             OP_MATMUL, 1, 0, 0, 0, 0, 0,                                     /**/
             OP_MATMUL_T, 2, 2, 0, 2, 0, 0,                                   /**/
             OP_TANH, 0, 0, 0, 0, 0, 0);
    /* conv2d [1,2,3,3] with [2,2,2,2] (padding 1), max_pool2d k2 s2, avg_pool2d k3 p1,
     * unfold 2x2 p1. */
    OPS_SEED("conv_pool", 1, IN_F64, 4, D1, D2, D3, D3, 6, IN_F64, 4, D2, D2, D2, D2, 7, /**/
             OP_CONV2D, 1, 0, 0, 0, 1, 0,                                                /**/
             OP_MAX_POOL2D, 0, 0, 1, 1, 0, 0,                                            /**/
             OP_AVG_POOL2D, 1, 0, 2, 0, 1, 0,                                            /**/
             OP_UNFOLD, 3, 0, 2, 1, 0, 17);
    /* softmax, log_softmax, logsumexp over everything, the fused cross-entropy with
     * labels 0 3 1, max along the last axis, on [3,4]. */
    OPS_SEED("softmax", 0, IN_F64, 2, D3, D4, 8,             /**/
             OP_SOFTMAX, 0, 0, 4, 0, 0, 0,                   /**/
             OP_LOG_SOFTMAX, 1, 0, 5, 0, 0, 0,               /**/
             OP_LOGSUMEXP, 2, 0, 10, 1, 0, 0,                /**/
             OP_SOFTMAX_CE, 3, 0, 0, 0, 0, 0, 1, 1, 0, 3, 1, /**/
             OP_MAX, 4, 0, 4, 0, 0, 0);
    /* Shapes whose element count overflows int64 or exceeds memory: reshape [2,2] to
     * [2^62+1, 4] (an error, not a wrapped product), to [-1, 4], broadcast_to
     * [1, INT64_MAX, 4] and [1, 2^31, 4] (out of memory under the fuzzer's allocator),
     * then a sum. */
    OPS_SEED("huge_shapes", 0, IN_F64, 2, D2, D2, 9,                        /**/
             OP_RESHAPE, 0, 0, 0, 0, 0, 0, 3, 2, W_2POW62_PLUS_1, W4,       /**/
             OP_RESHAPE, 0, 0, 0, 0, 0, 0, 3, 2, W_INFER, W4,               /**/
             OP_BROADCAST_TO, 0, 0, 0, 0, 0, 0, 1, 3, 0, 0, 1, W_INT64_MAX, /**/
             OP_BROADCAST_TO, 0, 0, 0, 0, 0, 0, 1, 3, 0, 0, 1, W_2POW31,    /**/
             OP_SUM, 0, 0, 10, 0, 0, 0);
    /* index_select [3,2] rows 2 0 2 1, gather [2,3] along axis 1, where with a [1,2]
     * condition, concat of three along axis 0. */
    OPS_SEED("indexing", 1, IN_F64, 2, D3, D2, 10, IN_F64, 2, D2, D3, 11, /**/
             OP_INDEX_SELECT, 1, 0, 5, 0, 0, 0, 4, 2, 0, 2, 1,            /**/
             OP_GATHER, 1, 0, 6, 0, 0, 0, 1, 1, 1, 2, 0, 1, 1,            /**/
             OP_WHERE, 3, 3, 0, 0, 0, 0, 0, 0x01, 1, 0,                   /**/
             OP_CONCAT, 4, 4, 5, 0, 0, 0, 2, 2);
    /* argmax, a cast of its I64 result to F64, a cast to F32, dtypes that do not mix
     * (F32 + F64, exp of I64), an invalid cast, detach. */
    OPS_SEED("dtypes", 0, IN_F64, 2, D2, D3, 12, /**/
             OP_ARGMAX, 0, 0, 4, 0, 0, 0,        /**/
             OP_CAST, 0, 0, 0, 1, 0, 0,          /**/
             OP_CAST, 2, 0, 0, 0, 0, 0,          /**/
             OP_ADD, 0, 3, 0, 0, 0, 0,           /**/
             OP_EXP, 2, 0, 0, 0, 0, 0,           /**/
             OP_CAST, 3, 0, 0, 7, 0, 0,          /**/
             OP_DETACH, 3, 0, 0, 0, 0, 0,        /**/
             OP_MUL, 0, 4, 0, 0, 0, 0);
    /* Errors: matmul of [2,3] with itself, then an op given a NULL operand (which must
     * keep that message), slice out of range, transpose of a 0-d tensor. */
    OPS_SEED("errors", 1, IN_F64, 2, D2, D3, 13, IN_F64, 0, 14, /**/
             OP_MATMUL, 1, 1, 0, 0, 0, 0,                       /**/
             250, 0, 0, 0, 0, 0, 0,                             /**/
             OP_SLICE, 1, 0, 5, 7, 7, 0,                        /**/
             OP_TRANSPOSE, 0, 0, 5, 5, 0, 0);
    /* Piecewise-linear ops: abs, relu, max over everything, maximum and minimum of x
     * and -x, pow_scalar with exponent 0 and 3. */
    OPS_SEED("piecewise", 0, IN_F64, 2, D2, D3, 15, /**/
             OP_ABS, 0, 0, 0, 0, 0, 0,              /**/
             OP_RELU, 1, 0, 0, 0, 0, 0,             /**/
             OP_MAX, 2, 0, 10, 0, 0, 0,             /**/
             OP_NEG, 3, 0, 0, 0, 0, 0,              /**/
             OP_MAXIMUM, 4, 0, 0, 0, 0, 0,          /**/
             OP_MINIMUM, 5, 1, 0, 0, 0, 0,          /**/
             OP_POW_SCALAR, 2, 0, 0, 0, 0, 3,       /**/
             OP_POW_SCALAR, 3, 0, 0, 0, 0, 7);
    /* Labels too large to make: [0] broadcast to [2^31, 0] (empty, so valid), then the
     * fused cross-entropy, whose labels would be [2^31] (the harness aborted on that
     * once; a one-element stand-in is used now). */
    OPS_SEED("huge_empty_labels", 0, IN_F64, 1, D0, 18,               /**/
             OP_BROADCAST_TO, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, W_2POW31, /**/
             OP_SOFTMAX_CE, 0, 0, 0, 0, 0, 0, 1, 1, 0);
    /* An F32 program (no gradcheck; TG_CREATE_GRAPH against plain in F32). */
    OPS_SEED("f32", 1, IN_F32, 2, D3, D2, 16, IN_F32, 1, D2, 17, /**/
             OP_ADD, 1, 0, 0, 0, 0, 0,                           /**/
             OP_SIGMOID, 0, 0, 0, 0, 0, 0,                       /**/
             OP_MEAN, 0, 0, 5, 1, 0, 0,                          /**/
             OP_EXP, 0, 0, 0, 0, 0, 0);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    dir = argv[1];

    /* The tensors fuzz_safetensors loads into: "a" F32 [2, 3], "b" I64 [4]. */
    tg_tensor *a = tg_tensor_from(TG_F32, TG_SHAPE(2, 3), (float[]){1, -2, 0.5f, 3, 1e-3f, -7});
    tg_tensor *b = tg_tensor_from(TG_I64, TG_SHAPE(4), (int64_t[]){0, -1, 42, INT64_MAX});
    check(tg_safetensors_save(at("safetensors/ab.safetensors"), 2, (const char *[]){"a", "b"},
                              (tg_tensor *[]){a, b}));
    check(tg_safetensors_save(at("safetensors/ba.safetensors"), 2, (const char *[]){"b", "a"},
                              (tg_tensor *[]){b, a}));
    check(tg_safetensors_save(at("safetensors/empty.safetensors"), 0, NULL, NULL));

    /* Other dtypes and shapes: a 0-d F64, an empty [0, 3], a 3-d F64. */
    tg_tensor *s = tg_scalar(TG_F64, 2.5);
    tg_tensor *e = tg_tensor_new(TG_F32, TG_SHAPE(0, 3));
    tg_tensor *c = tg_tensor_new(TG_F64, TG_SHAPE(2, 1, 2));
    check(tg_safetensors_save(at("safetensors/mixed.safetensors"), 4,
                              (const char *[]){"scalar", "empty", "cube", "a"},
                              (tg_tensor *[]){s, e, c, a}));

    /* "a" and "b" plus an entry that was not asked for. */
    check(tg_safetensors_save(at("safetensors/abc.safetensors"), 3, (const char *[]){"a", "b", "c"},
                              (tg_tensor *[]){a, b, s}));
    /* Shapes the reader must refuse: nine dimensions, and a product that overflows. */
    raw_safetensors("safetensors/nine_dims.safetensors",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                    "\"data_offsets\":[0,4]}}",
                    4);
    raw_safetensors("safetensors/huge_shape.safetensors",
                    "{\"a\":{\"dtype\":\"I64\",\"shape\":[4294967296,4294967296],"
                    "\"data_offsets\":[0,8]}}",
                    8);

    /* The model of fuzz_safetensors: Linear 3 -> 2, BatchNorm1d 2. */
    tg_seed(1);
    tg_model *m = tg_model_new();
    check(m ? 0 : -1);
    check(tg_model_add(m, tg_nn_linear(3, 2, TG_F32)));
    check(tg_model_add(m, tg_nn_batchnorm1d(2, TG_F32)));
    check(tg_model_save(m, at("safetensors/model.safetensors")));

    /* The seeds that should load do load, so the fuzzer starts from the success path. */
    tg_tensor *la = tg_tensor_new(TG_F32, TG_SHAPE(2, 3)), *lb = tg_tensor_new(TG_I64, TG_SHAPE(4));
    check(tg_safetensors_load(at("safetensors/ab.safetensors"), 2, (const char *[]){"a", "b"},
                              (tg_tensor *[]){la, lb}));
    check(tg_safetensors_load(at("safetensors/ba.safetensors"), 2, (const char *[]){"a", "b"},
                              (tg_tensor *[]){la, lb}));
    check(tg_model_load(m, at("safetensors/model.safetensors")));
    tg_tensor_free(la);
    tg_tensor_free(lb);

    text("csv/header_label_last.csv", "x1,x2,label\n0.5,-1.25,0\n1e3,2.5E-2,1\n-0,7,2\n");
    text("csv/no_header_crlf.csv", "3, 0.1 ,\t0.2\r\n\r\n1,-0.3,0.4\r\n  \r\n-2,5,6\r\n");
    text("csv/blank_lines_tabs.csv", "\n\n a , b \n\t1.0\t,\t2\t\n\n3.5,4\n");
    text("csv/wide.csv", "1,2,3,4,5,6,7,8\n-1,-2,-3,-4,-5,-6,-7,-8\n");
    ops_seeds();

    /* Lines of a tapegrad-check file (fuzz_check_expr): every part of the grammar, each
     * kind of value, and lines without values (the target binds x, y, v and A). */
    text("check_expr/sin_mul.txt", "sin(x1) + x1*x2 ; x1=2 x2=5");
    text("check_expr/matvec.txt", "sum(tanh(W @ v)) ; W:3x4 v=[1, -2, 0.5, 3]");
    text("check_expr/logsumexp.txt", "logsumexp(v, 0) ; v=[1,2,3]");
    text("check_expr/where.txt", "where(x > 0, x, -x) * (x <= 2) ; x=[[0.5, -1], [2, 3]]");
    text("check_expr/power.txt", "-x^2 + 2**-x - x ** 0.5 / (1 + exp(-x*x))");
    text("check_expr/reductions.txt",
         "max(A, 0) @ transpose(A) + min(v) + mean(A, -1) - logsumexp(softmax(A, 1))");
    text("check_expr/binary.txt", "maximum(v, x) - minimum(A, y) + pow(abs(v), 2) + matmul(A, v)");
    text("check_expr/unary.txt", "neg(log(sigmoid(x))) + sqrt(square(cos(y))) + relu(tanh(x))");
    text("check_expr/log_softmax.txt", "sum(log_softmax(A) != A) + (v == v) - (x >= y)");
    text("check_expr/bad.txt", "sin(x + ; x=[1, [2]] y:0x3");

    static const unsigned char px[12] = {0, 17, 34, 51, 68, 85, 102, 119, 136, 153, 170, 255};
    idx_file("idx/images_3x2x2", 0x08, 3, (unsigned[]){3, 2, 2}, px, 12, 0);
    idx_file("idx/images_3x2x2.gz", 0x08, 3, (unsigned[]){3, 2, 2}, px, 12, 1);
    idx_file("idx/labels_3.gz", 0x08, 1, (unsigned[]){3}, (const unsigned char[]){9, 0, 4}, 3, 1);
    idx_file("idx/sbyte_4", 0x09, 2, (unsigned[]){2, 2}, (const unsigned char[]){0x80, 1, 0xff, 7},
             4, 0);
    idx_file("idx/int16_2", 0x0B, 1, (unsigned[]){2}, (const unsigned char[]){0xff, 0xfe, 1, 0}, 4,
             0);
    idx_file("idx/int32_1", 0x0C, 1, (unsigned[]){1}, (const unsigned char[]){0, 1, 0x86, 0xa0}, 4,
             0);
    idx_file("idx/float32_2.gz", 0x0D, 1, (unsigned[]){2},
             (const unsigned char[]){0x3f, 0xc0, 0, 0, 0xbe, 0x80, 0, 0}, 8, 1);
    idx_file("idx/float64_1", 0x0E, 1, (unsigned[]){1},
             (const unsigned char[]){0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a}, 8, 0);

    tg_model_free(m);
    tg_tensor_free(a);
    tg_tensor_free(b);
    tg_tensor_free(s);
    tg_tensor_free(e);
    tg_tensor_free(c);
    tg_tape_reset();
    return 0;
}
