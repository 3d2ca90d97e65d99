/*
 * mdeploy — operator registration: which kernels a model may use (in the spirit of TFLite
 * Micro's MicroMutableOpResolver).
 *
 * By default (mdl_load_options.resolver == NULL) the loader finds every node's kernel in the full
 * table of all kernels, which references every kernel in the library.  A firmware image that
 * should contain only the kernels its model uses registers them in a resolver instead and passes
 * it to mdl_model_load_buffer; with -ffunction-sections -fdata-sections -Wl,--gc-sections and a
 * core built with -DMDL_NO_DEFAULT_KERNELS (the full table is then never referenced, so the
 * linker drops it and every kernel no resolver names), only the registered kernels are linked:
 *
 *     static mdl_op_resolver_entry entries[4];
 *     mdl_op_resolver r;
 *     mdl_op_resolver_init(&r, entries, 4);
 *     MDL_OP_RESOLVER_ADD(&r, CONV2D, INT8);      // -> mdl_op_resolver_add_CONV2D_INT8(&r)
 *     MDL_OP_RESOLVER_ADD(&r, FULLY_CONNECTED, INT8);
 *     mdl_load_options o = mdl_load_options_default();
 *     o.resolver = &r;
 *     mdl_model_load_buffer(model, size, &o, &m, &err);
 *
 * tools/mdeploy-embed writes this list for a model (NAME_register() in the generated NAME.h).
 * A node whose (operator, dtype of input 0) is not registered fails the load with
 * MDL_UNSUPPORTED and a message naming the node and the registration it needs; nothing runs.
 *
 * Memory: the resolver and its entries are the caller's; they must outlive every model loaded
 * with them.  Thread safety: fill a resolver before loading; afterwards it is only read.
 */
#ifndef MDEPLOY_RESOLVER_H
#define MDEPLOY_RESOLVER_H

#include "mdeploy/graph.h"
#include "mdeploy/mdeploy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every kernel of the library: X(OPERATOR, DTYPE of input 0, kernel).  OPERATOR and DTYPE are
   the MDL_OP_* / MDL_DTYPE_* suffixes; kernel names the internal implementation (the shape
   operators use one kernel for every dtype).  Kept equal to the full table by a test
   (tests/ops/test_resolver.c). */
#define MDL_KERNEL_MAP(X)                                                                          \
    X(FULLY_CONNECTED, FLOAT32, fc_f32)                                                             \
    X(MATMUL, FLOAT32, matmul_f32)                                                                  \
    X(CONV2D, FLOAT32, conv2d_f32)                                                                  \
    X(DEPTHWISE_CONV2D, FLOAT32, depthwise_conv2d_f32)                                              \
    X(MAX_POOL2D, FLOAT32, max_pool2d_f32)                                                          \
    X(AVG_POOL2D, FLOAT32, avg_pool2d_f32)                                                          \
    X(GLOBAL_AVG_POOL, FLOAT32, global_avg_pool_f32)                                                \
    X(GLOBAL_MAX_POOL, FLOAT32, global_max_pool_f32)                                                \
    X(RELU, FLOAT32, relu_f32)                                                                      \
    X(CLIP, FLOAT32, clip_f32)                                                                      \
    X(LEAKY_RELU, FLOAT32, leaky_relu_f32)                                                          \
    X(SIGMOID, FLOAT32, sigmoid_f32)                                                                \
    X(TANH, FLOAT32, tanh_f32)                                                                      \
    X(HARD_SIGMOID, FLOAT32, hard_sigmoid_f32)                                                      \
    X(HARD_SWISH, FLOAT32, hard_swish_f32)                                                          \
    X(GELU, FLOAT32, gelu_f32)                                                                      \
    X(SOFTMAX, FLOAT32, softmax_f32)                                                                \
    X(LOG_SOFTMAX, FLOAT32, log_softmax_f32)                                                        \
    X(ADD, FLOAT32, add_f32)                                                                        \
    X(SUB, FLOAT32, sub_f32)                                                                        \
    X(MUL, FLOAT32, mul_f32)                                                                        \
    X(DIV, FLOAT32, div_f32)                                                                        \
    X(REDUCE_MEAN, FLOAT32, reduce_mean_f32)                                                        \
    X(REDUCE_SUM, FLOAT32, reduce_sum_f32)                                                          \
    X(REDUCE_MAX, FLOAT32, reduce_max_f32)                                                          \
    X(BATCH_NORM, FLOAT32, batch_norm_f32)                                                          \
    X(CONCAT, FLOAT32, concat)                                                                      \
    X(CONCAT, INT8, concat_q8)                                                                      \
    X(CONCAT, UINT8, concat)                                                                        \
    X(CONCAT, INT32, concat)                                                                        \
    X(CONCAT, INT64, concat)                                                                        \
    X(LSTM, FLOAT32, lstm_f32)                                                                      \
    X(GRU, FLOAT32, gru_f32)                                                                        \
    X(FULLY_CONNECTED, INT8, fc_int8)                                                               \
    X(MATMUL, INT8, matmul_int8)                                                                    \
    X(CONV2D, INT8, conv2d_int8)                                                                    \
    X(DEPTHWISE_CONV2D, INT8, depthwise_conv2d_int8)                                                \
    X(QUANTIZE, FLOAT32, quantize_f32)                                                              \
    X(DEQUANTIZE, INT8, dequantize_q)                                                               \
    X(DEQUANTIZE, UINT8, dequantize_q)                                                              \
    X(DEQUANTIZE, INT32, dequantize_q)                                                              \
    X(MAX_POOL2D, INT8, max_pool2d_q8)                                                              \
    X(AVG_POOL2D, INT8, avg_pool2d_q8)                                                              \
    X(GLOBAL_AVG_POOL, INT8, global_avg_pool_q8)                                                    \
    X(GLOBAL_MAX_POOL, INT8, global_max_pool_q8)                                                    \
    X(ADD, INT8, add_q8)                                                                            \
    X(SUB, INT8, sub_q8)                                                                            \
    X(MUL, INT8, mul_q8)                                                                            \
    X(RELU, INT8, relu_q8)                                                                          \
    X(CLIP, INT8, clip_q8)                                                                          \
    X(LEAKY_RELU, INT8, leaky_relu_q8)                                                              \
    X(SIGMOID, INT8, sigmoid_q8)                                                                    \
    X(TANH, INT8, tanh_q8)                                                                          \
    X(HARD_SIGMOID, INT8, hard_sigmoid_q8)                                                          \
    X(HARD_SWISH, INT8, hard_swish_q8)                                                              \
    X(GELU, INT8, gelu_q8)                                                                          \
    X(SOFTMAX, INT8, softmax_q8)                                                                    \
    X(LOG_SOFTMAX, INT8, log_softmax_q8)                                                            \
    X(RESHAPE, FLOAT32, reshape)                                                                    \
    X(RESHAPE, INT8, reshape)                                                                       \
    X(RESHAPE, UINT8, reshape)                                                                      \
    X(RESHAPE, INT32, reshape)                                                                      \
    X(RESHAPE, INT64, reshape)                                                                      \
    X(TRANSPOSE, FLOAT32, transpose)                                                                \
    X(TRANSPOSE, INT8, transpose)                                                                   \
    X(TRANSPOSE, UINT8, transpose)                                                                  \
    X(TRANSPOSE, INT32, transpose)                                                                  \
    X(TRANSPOSE, INT64, transpose)                                                                  \
    X(SLICE, FLOAT32, slice)                                                                        \
    X(SLICE, INT8, slice)                                                                           \
    X(SLICE, UINT8, slice)                                                                          \
    X(SLICE, INT32, slice)                                                                          \
    X(SLICE, INT64, slice)                                                                          \
    X(PAD, FLOAT32, pad)                                                                            \
    X(PAD, INT8, pad)                                                                               \
    X(PAD, UINT8, pad)                                                                              \
    X(PAD, INT32, pad)                                                                              \
    X(PAD, INT64, pad)                                                                              \
    X(GATHER, FLOAT32, gather)                                                                      \
    X(GATHER, INT8, gather)                                                                         \
    X(GATHER, UINT8, gather)                                                                        \
    X(GATHER, INT32, gather)                                                                        \
    X(GATHER, INT64, gather)                                                                    \
    X(EXP, FLOAT32, exp_f32)                                                                    \
    X(SQRT, FLOAT32, sqrt_f32)                                                                  \
    X(LOG, FLOAT32, log_f32)                                                                    \
    X(NEG, FLOAT32, neg_f32)                                                                    \
    X(RECIPROCAL, FLOAT32, reciprocal_f32)                                                      \
    X(ABS, FLOAT32, abs_f32)                                                                    \
    X(NEG, INT32, neg_int)                                                                      \
    X(NEG, INT64, neg_int)                                                                      \
    X(ABS, INT32, abs_int)                                                                      \
    X(ABS, INT64, abs_int)                                                                      \
    X(POW, FLOAT32, pow_f32)                                                                    \
    X(ADD, INT32, add_int)                                                                      \
    X(ADD, INT64, add_int)                                                                      \
    X(SUB, INT32, sub_int)                                                                      \
    X(SUB, INT64, sub_int)                                                                      \
    X(MUL, INT32, mul_int)                                                                      \
    X(MUL, INT64, mul_int)                                                                      \
    X(DIV, INT32, div_int)                                                                      \
    X(DIV, INT64, div_int)                                                                      \
    X(EQUAL, FLOAT32, equal)                                                                    \
    X(EQUAL, INT32, equal)                                                                      \
    X(EQUAL, INT64, equal)                                                                      \
    X(EQUAL, BOOL, equal)                                                                       \
    X(LESS, FLOAT32, less)                                                                      \
    X(LESS, INT32, less)                                                                        \
    X(LESS, INT64, less)                                                                        \
    X(LESS, BOOL, less)                                                                         \
    X(GREATER, FLOAT32, greater)                                                                \
    X(GREATER, INT32, greater)                                                                  \
    X(GREATER, INT64, greater)                                                                  \
    X(GREATER, BOOL, greater)                                                                   \
    X(LESS_OR_EQUAL, FLOAT32, less_or_equal)                                                    \
    X(LESS_OR_EQUAL, INT32, less_or_equal)                                                      \
    X(LESS_OR_EQUAL, INT64, less_or_equal)                                                      \
    X(LESS_OR_EQUAL, BOOL, less_or_equal)                                                       \
    X(GREATER_OR_EQUAL, FLOAT32, greater_or_equal)                                              \
    X(GREATER_OR_EQUAL, INT32, greater_or_equal)                                                \
    X(GREATER_OR_EQUAL, INT64, greater_or_equal)                                                \
    X(GREATER_OR_EQUAL, BOOL, greater_or_equal)                                                 \
    X(NOT, BOOL, not)                                                                           \
    X(AND, BOOL, logic)                                                                         \
    X(OR, BOOL, logic)                                                                          \
    X(XOR, BOOL, logic)                                                                         \
    X(WHERE, BOOL, where)                                                                       \
    X(CAST, FLOAT32, cast)                                                                      \
    X(CAST, INT8, cast)                                                                         \
    X(CAST, UINT8, cast)                                                                        \
    X(CAST, INT32, cast)                                                                        \
    X(CAST, INT64, cast)                                                                        \
    X(CAST, BOOL, cast)                                                                         \
    X(RESHAPE, BOOL, reshape)                                                                   \
    X(TRANSPOSE, BOOL, transpose)                                                               \
    X(SLICE, BOOL, slice)                                                                       \
    X(PAD, BOOL, pad)                                                                           \
    X(GATHER, BOOL, gather)                                                                     \
    X(CONCAT, BOOL, concat)                                                                     \
    X(ERF, FLOAT32, erf_f32)                                                                        \
    X(LAYER_NORM, FLOAT32, layer_norm_f32)                                                          \
    X(RESIZE, FLOAT32, resize_f32)

typedef struct mdl_op_resolver_entry {
    int16_t op, dtype;  /* mdl_op, mdl_dtype */
    const void *kernel; /* internal */
} mdl_op_resolver_entry;

/* A caller-owned table of registered kernels over caller-owned entries. */
struct mdl_op_resolver {
    mdl_op_resolver_entry *entries;
    int32_t count, capacity;
    const void *load_planner; /* internal: set by mdl_op_resolver_add_load_planner */
};

/* Empties r and makes it use entries[0..capacity). */
MDL_API void mdl_op_resolver_init(mdl_op_resolver *r, mdl_op_resolver_entry *entries,
                                  int32_t capacity);

/* One registration function per kernel, e.g. mdl_op_resolver_add_CONV2D_INT8(r): each refers to
   its kernel only, so an image links just the kernels it registers.  Adding a registered kernel
   again is a no-op.  Errors: INVALID_ARGUMENT (r NULL), BUFFER_TOO_SMALL (r is full). */
#define MDL__RESOLVER_ADD_DECL(op, dtype, kernel)                                                  \
    MDL_API mdl_status mdl_op_resolver_add_##op##_##dtype(mdl_op_resolver *r);
MDL_KERNEL_MAP(MDL__RESOLVER_ADD_DECL)
#undef MDL__RESOLVER_ADD_DECL

/* MDL_OP_RESOLVER_ADD(r, CONV2D, INT8): registers the kernel for that operator and dtype. */
#define MDL_OP_RESOLVER_ADD(r, op, dtype) mdl_op_resolver_add_##op##_##dtype(r)

/* Number of kernels in MDL_KERNEL_MAP (the capacity mdl_op_resolver_add_all needs). */
#define MDL__KERNEL_ONE(op, dtype, kernel) +1
enum { MDL_KERNEL_COUNT = 0 MDL_KERNEL_MAP(MDL__KERNEL_ONE) };
#undef MDL__KERNEL_ONE

/* Registers every kernel (links them all).  Errors as for one. */
MDL_API mdl_status mdl_op_resolver_add_all(mdl_op_resolver *r);

/* Whether r has a kernel for (op, dtype of input 0). */
MDL_API bool mdl_op_resolver_has(const mdl_op_resolver *r, mdl_op op, mdl_dtype dtype);

/* The loader's own graph work, registered like a kernel in cores built with
   MDL_NO_DEFAULT_KERNELS (firmware; other builds always have it and ignore this): widening the
   int8 weights that a DEQUANTIZE node reads to float (weight-only quantized models, e.g.
   onnxruntime's quantize_dynamic: the file keeps int8, the loader makes float copies) and
   computing the memory plan where the file's cannot be used (after widening, or a file without
   one).  A model that needs it, loaded without it, fails with MDL_UNSUPPORTED (the message
   names this function).  About 1 KB of code on a Cortex-M4; mdeploy-embed registers it in
   NAME_register() when mdl_model_needs_load_planner says so.  Errors: INVALID_ARGUMENT. */
MDL_API mdl_status mdl_op_resolver_add_load_planner(mdl_op_resolver *r);

/* Whether loading m took the load planner (above): its plan was computed at load. */
MDL_API bool mdl_model_needs_load_planner(const mdl_model *m);

#ifdef __cplusplus
}
#endif
#endif
