/* fuzz_ops.h — the op codes of fuzz_ops' programs, shared with gen_corpus (which
 * writes seed programs with them). fuzz_ops.c describes the byte layout of a program.
 * Rows are only ever appended: a code is the op's position, and changing positions
 * would change what every stored seed means. */
#ifndef TG_FUZZ_OPS_H
#define TG_FUZZ_OPS_H

/* One row per op: the code and the public function it calls. */
#define FUZZ_OPS(X)                                                                                \
    X(NEG, "tg_neg")                                                                               \
    X(EXP, "tg_exp")                                                                               \
    X(LOG, "tg_log")                                                                               \
    X(SIN, "tg_sin")                                                                               \
    X(COS, "tg_cos")                                                                               \
    X(TANH, "tg_tanh")                                                                             \
    X(SIGMOID, "tg_sigmoid")                                                                       \
    X(RELU, "tg_relu")                                                                             \
    X(SQRT, "tg_sqrt")                                                                             \
    X(ABS, "tg_abs")                                                                               \
    X(SQUARE, "tg_square")                                                                         \
    X(ADD_SCALAR, "tg_add_scalar")                                                                 \
    X(MUL_SCALAR, "tg_mul_scalar")                                                                 \
    X(POW_SCALAR, "tg_pow_scalar")                                                                 \
    X(ADD, "tg_add")                                                                               \
    X(SUB, "tg_sub")                                                                               \
    X(MUL, "tg_mul")                                                                               \
    X(DIV, "tg_div")                                                                               \
    X(POW, "tg_pow")                                                                               \
    X(MAXIMUM, "tg_maximum")                                                                       \
    X(MINIMUM, "tg_minimum")                                                                       \
    X(SUM, "tg_sum")                                                                               \
    X(MEAN, "tg_mean")                                                                             \
    X(MAX, "tg_max")                                                                               \
    X(LOGSUMEXP, "tg_logsumexp")                                                                   \
    X(SOFTMAX, "tg_softmax")                                                                       \
    X(LOG_SOFTMAX, "tg_log_softmax")                                                               \
    X(SOFTMAX_CE, "tg_softmax_cross_entropy")                                                      \
    X(MATMUL, "tg_matmul")                                                                         \
    X(MATMUL_T, "tg_matmul_t")                                                                     \
    X(RESHAPE, "tg_reshape")                                                                       \
    X(TRANSPOSE, "tg_transpose")                                                                   \
    X(BROADCAST_TO, "tg_broadcast_to")                                                             \
    X(SUM_TO, "tg_sum_to")                                                                         \
    X(SLICE, "tg_slice")                                                                           \
    X(CONCAT, "tg_concat")                                                                         \
    X(INDEX_SELECT, "tg_index_select")                                                             \
    X(GATHER, "tg_gather")                                                                         \
    X(WHERE, "tg_where")                                                                           \
    X(CAST, "tg_cast")                                                                             \
    X(DETACH, "tg_detach")                                                                         \
    X(ARGMAX, "tg_argmax")                                                                         \
    X(UNFOLD, "tg_unfold")                                                                         \
    X(CONV2D, "tg_conv2d")                                                                         \
    X(MAX_POOL2D, "tg_max_pool2d")                                                                 \
    X(AVG_POOL2D, "tg_avg_pool2d")

#define AS_CODE(code, name) OP_##code,
enum { FUZZ_OPS(AS_CODE) OP_COUNT };
#undef AS_CODE

/* Byte values of the input dtypes and of the dimensions (indices into small_dims and
 * wild_dims of fuzz_ops.c). */
enum { IN_I64 = 0, IN_F32 = 1, IN_F64 = 3, IN_NO_GRAD = 0x80 };
enum { D1 = 0, D2 = 1, D3 = 2, D4 = 9, D0 = 12, D5 = 15 };
enum { W_INFER = 0, W4 = 5, W_2POW31 = 8, W_2POW62_PLUS_1 = 9, W_INT64_MAX = 10 };

#endif
