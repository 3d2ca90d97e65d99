/* The kernel table: kernel[op][dtype of input 0].  Each operator family lives in its own file
   and adds its entries in its block below. */
#include "ops.h"

extern const mdl__kernel mdl__fc_f32;
extern const mdl__kernel mdl__matmul_f32;
/* BEGIN conv-pool declarations */
extern const mdl__kernel mdl__conv2d_f32;
extern const mdl__kernel mdl__depthwise_conv2d_f32;
extern const mdl__kernel mdl__max_pool2d_f32;
extern const mdl__kernel mdl__avg_pool2d_f32;
extern const mdl__kernel mdl__global_avg_pool_f32;
extern const mdl__kernel mdl__global_max_pool_f32;
/* END conv-pool declarations */
/* BEGIN elementwise declarations */
extern const mdl__kernel mdl__relu_f32;
extern const mdl__kernel mdl__clip_f32;
extern const mdl__kernel mdl__leaky_relu_f32;
extern const mdl__kernel mdl__sigmoid_f32;
extern const mdl__kernel mdl__tanh_f32;
extern const mdl__kernel mdl__hard_sigmoid_f32;
extern const mdl__kernel mdl__hard_swish_f32;
extern const mdl__kernel mdl__gelu_f32;
extern const mdl__kernel mdl__softmax_f32;
extern const mdl__kernel mdl__log_softmax_f32;
extern const mdl__kernel mdl__add_f32;
extern const mdl__kernel mdl__sub_f32;
extern const mdl__kernel mdl__mul_f32;
extern const mdl__kernel mdl__div_f32;
extern const mdl__kernel mdl__reduce_mean_f32;
extern const mdl__kernel mdl__reduce_sum_f32;
extern const mdl__kernel mdl__reduce_max_f32;
extern const mdl__kernel mdl__batch_norm_f32;
/* END elementwise declarations */
/* BEGIN shape declarations */
extern const mdl__kernel mdl__reshape, mdl__transpose, mdl__concat, mdl__slice, mdl__pad,
    mdl__gather;
/* Shape ops only move bytes: one kernel serves every dtype. */
#define MDL__SHAPE_ALL_DTYPES(op, k)                                                               \
    [op][MDL_DTYPE_FLOAT32] = &k, [op][MDL_DTYPE_INT8] = &k, [op][MDL_DTYPE_UINT8] = &k,           \
    [op][MDL_DTYPE_INT32] = &k, [op][MDL_DTYPE_INT64] = &k, [op][MDL_DTYPE_BOOL] = &k
/* END shape declarations */
/* BEGIN rnn declarations */
extern const mdl__kernel mdl__lstm_f32;
extern const mdl__kernel mdl__gru_f32;
/* END rnn declarations */
/* BEGIN int8 dense-conv declarations */
extern const mdl__kernel mdl__fc_int8;
extern const mdl__kernel mdl__matmul_int8;
extern const mdl__kernel mdl__conv2d_int8;
extern const mdl__kernel mdl__depthwise_conv2d_int8;
/* END int8 dense-conv declarations */
/* BEGIN int8 elementwise declarations */
extern const mdl__kernel mdl__quantize_f32, mdl__dequantize_q;
extern const mdl__kernel mdl__max_pool2d_q8, mdl__avg_pool2d_q8, mdl__global_avg_pool_q8,
    mdl__global_max_pool_q8;
extern const mdl__kernel mdl__add_q8, mdl__sub_q8, mdl__mul_q8;
extern const mdl__kernel mdl__relu_q8, mdl__clip_q8, mdl__leaky_relu_q8, mdl__sigmoid_q8,
    mdl__tanh_q8, mdl__hard_sigmoid_q8, mdl__hard_swish_q8, mdl__gelu_q8, mdl__softmax_q8,
    mdl__log_softmax_q8;
extern const mdl__kernel mdl__concat_q8;
/* END int8 elementwise declarations */
/* BEGIN nn declarations */
extern const mdl__kernel mdl__erf_f32, mdl__layer_norm_f32, mdl__resize_f32;
/* END nn declarations */

/* BEGIN elementwise-math declarations (elementwise.c, binary.c, compare.c, cast.c) */
extern const mdl__kernel mdl__abs_f32, mdl__abs_int, mdl__add_int, mdl__cast, mdl__div_int,
    mdl__equal, mdl__exp_f32, mdl__greater, mdl__greater_or_equal, mdl__less, mdl__less_or_equal,
    mdl__log_f32, mdl__logic, mdl__mul_int, mdl__neg_f32, mdl__neg_int, mdl__not, mdl__pow_f32,
    mdl__reciprocal_f32, mdl__sqrt_f32, mdl__sub_int, mdl__where;
/* END elementwise-math declarations */

static const mdl__kernel *const kernels[MDL_OP_COUNT][MDL_DTYPE_COUNT] = {
    [MDL_OP_FULLY_CONNECTED][MDL_DTYPE_FLOAT32] = &mdl__fc_f32,
    [MDL_OP_MATMUL][MDL_DTYPE_FLOAT32] = &mdl__matmul_f32,
    /* BEGIN conv-pool entries */
    [MDL_OP_CONV2D][MDL_DTYPE_FLOAT32] = &mdl__conv2d_f32,
    [MDL_OP_DEPTHWISE_CONV2D][MDL_DTYPE_FLOAT32] = &mdl__depthwise_conv2d_f32,
    [MDL_OP_MAX_POOL2D][MDL_DTYPE_FLOAT32] = &mdl__max_pool2d_f32,
    [MDL_OP_AVG_POOL2D][MDL_DTYPE_FLOAT32] = &mdl__avg_pool2d_f32,
    [MDL_OP_GLOBAL_AVG_POOL][MDL_DTYPE_FLOAT32] = &mdl__global_avg_pool_f32,
    [MDL_OP_GLOBAL_MAX_POOL][MDL_DTYPE_FLOAT32] = &mdl__global_max_pool_f32,
    /* END conv-pool entries */
    /* BEGIN elementwise entries */
    [MDL_OP_RELU][MDL_DTYPE_FLOAT32] = &mdl__relu_f32,
    [MDL_OP_CLIP][MDL_DTYPE_FLOAT32] = &mdl__clip_f32,
    [MDL_OP_LEAKY_RELU][MDL_DTYPE_FLOAT32] = &mdl__leaky_relu_f32,
    [MDL_OP_SIGMOID][MDL_DTYPE_FLOAT32] = &mdl__sigmoid_f32,
    [MDL_OP_TANH][MDL_DTYPE_FLOAT32] = &mdl__tanh_f32,
    [MDL_OP_HARD_SIGMOID][MDL_DTYPE_FLOAT32] = &mdl__hard_sigmoid_f32,
    [MDL_OP_HARD_SWISH][MDL_DTYPE_FLOAT32] = &mdl__hard_swish_f32,
    [MDL_OP_GELU][MDL_DTYPE_FLOAT32] = &mdl__gelu_f32,
    [MDL_OP_SOFTMAX][MDL_DTYPE_FLOAT32] = &mdl__softmax_f32,
    [MDL_OP_LOG_SOFTMAX][MDL_DTYPE_FLOAT32] = &mdl__log_softmax_f32,
    [MDL_OP_ADD][MDL_DTYPE_FLOAT32] = &mdl__add_f32,
    [MDL_OP_SUB][MDL_DTYPE_FLOAT32] = &mdl__sub_f32,
    [MDL_OP_MUL][MDL_DTYPE_FLOAT32] = &mdl__mul_f32,
    [MDL_OP_DIV][MDL_DTYPE_FLOAT32] = &mdl__div_f32,
    [MDL_OP_REDUCE_MEAN][MDL_DTYPE_FLOAT32] = &mdl__reduce_mean_f32,
    [MDL_OP_REDUCE_SUM][MDL_DTYPE_FLOAT32] = &mdl__reduce_sum_f32,
    [MDL_OP_REDUCE_MAX][MDL_DTYPE_FLOAT32] = &mdl__reduce_max_f32,
    [MDL_OP_BATCH_NORM][MDL_DTYPE_FLOAT32] = &mdl__batch_norm_f32,
    /* END elementwise entries */
    /* BEGIN shape entries */
    MDL__SHAPE_ALL_DTYPES(MDL_OP_RESHAPE, mdl__reshape),
    MDL__SHAPE_ALL_DTYPES(MDL_OP_TRANSPOSE, mdl__transpose),
    /* int8: the requantizing concat (concat_int8.c, declared in the int8 elementwise block) */
    [MDL_OP_CONCAT][MDL_DTYPE_FLOAT32] = &mdl__concat,
    [MDL_OP_CONCAT][MDL_DTYPE_INT8] = &mdl__concat_q8,
    [MDL_OP_CONCAT][MDL_DTYPE_UINT8] = &mdl__concat,
    [MDL_OP_CONCAT][MDL_DTYPE_INT32] = &mdl__concat,
    [MDL_OP_CONCAT][MDL_DTYPE_INT64] = &mdl__concat,
    [MDL_OP_CONCAT][MDL_DTYPE_BOOL] = &mdl__concat,
    MDL__SHAPE_ALL_DTYPES(MDL_OP_SLICE, mdl__slice),
    MDL__SHAPE_ALL_DTYPES(MDL_OP_PAD, mdl__pad),
    MDL__SHAPE_ALL_DTYPES(MDL_OP_GATHER, mdl__gather),
    /* END shape entries */
    /* BEGIN rnn entries */
    [MDL_OP_LSTM][MDL_DTYPE_FLOAT32] = &mdl__lstm_f32,
    [MDL_OP_GRU][MDL_DTYPE_FLOAT32] = &mdl__gru_f32,
    /* END rnn entries */
    /* BEGIN int8 dense-conv entries */
    [MDL_OP_FULLY_CONNECTED][MDL_DTYPE_INT8] = &mdl__fc_int8,
    [MDL_OP_MATMUL][MDL_DTYPE_INT8] = &mdl__matmul_int8,
    [MDL_OP_CONV2D][MDL_DTYPE_INT8] = &mdl__conv2d_int8,
    [MDL_OP_DEPTHWISE_CONV2D][MDL_DTYPE_INT8] = &mdl__depthwise_conv2d_int8,
    /* END int8 dense-conv entries */
    /* BEGIN int8 elementwise entries */
    [MDL_OP_QUANTIZE][MDL_DTYPE_FLOAT32] = &mdl__quantize_f32,
    [MDL_OP_DEQUANTIZE][MDL_DTYPE_INT8] = &mdl__dequantize_q,
    [MDL_OP_DEQUANTIZE][MDL_DTYPE_UINT8] = &mdl__dequantize_q,
    [MDL_OP_DEQUANTIZE][MDL_DTYPE_INT32] = &mdl__dequantize_q,
    [MDL_OP_MAX_POOL2D][MDL_DTYPE_INT8] = &mdl__max_pool2d_q8,
    [MDL_OP_AVG_POOL2D][MDL_DTYPE_INT8] = &mdl__avg_pool2d_q8,
    [MDL_OP_GLOBAL_AVG_POOL][MDL_DTYPE_INT8] = &mdl__global_avg_pool_q8,
    [MDL_OP_GLOBAL_MAX_POOL][MDL_DTYPE_INT8] = &mdl__global_max_pool_q8,
    [MDL_OP_ADD][MDL_DTYPE_INT8] = &mdl__add_q8,
    [MDL_OP_SUB][MDL_DTYPE_INT8] = &mdl__sub_q8,
    [MDL_OP_MUL][MDL_DTYPE_INT8] = &mdl__mul_q8,
    [MDL_OP_RELU][MDL_DTYPE_INT8] = &mdl__relu_q8,
    [MDL_OP_CLIP][MDL_DTYPE_INT8] = &mdl__clip_q8,
    [MDL_OP_LEAKY_RELU][MDL_DTYPE_INT8] = &mdl__leaky_relu_q8,
    [MDL_OP_SIGMOID][MDL_DTYPE_INT8] = &mdl__sigmoid_q8,
    [MDL_OP_TANH][MDL_DTYPE_INT8] = &mdl__tanh_q8,
    [MDL_OP_HARD_SIGMOID][MDL_DTYPE_INT8] = &mdl__hard_sigmoid_q8,
    [MDL_OP_HARD_SWISH][MDL_DTYPE_INT8] = &mdl__hard_swish_q8,
    [MDL_OP_GELU][MDL_DTYPE_INT8] = &mdl__gelu_q8,
    [MDL_OP_SOFTMAX][MDL_DTYPE_INT8] = &mdl__softmax_q8,
    [MDL_OP_LOG_SOFTMAX][MDL_DTYPE_INT8] = &mdl__log_softmax_q8,
    /* END int8 elementwise entries */
    /* BEGIN elementwise-math entries */
    [MDL_OP_EXP][MDL_DTYPE_FLOAT32] = &mdl__exp_f32,
    [MDL_OP_SQRT][MDL_DTYPE_FLOAT32] = &mdl__sqrt_f32,
    [MDL_OP_LOG][MDL_DTYPE_FLOAT32] = &mdl__log_f32,
    [MDL_OP_NEG][MDL_DTYPE_FLOAT32] = &mdl__neg_f32,
    [MDL_OP_RECIPROCAL][MDL_DTYPE_FLOAT32] = &mdl__reciprocal_f32,
    [MDL_OP_ABS][MDL_DTYPE_FLOAT32] = &mdl__abs_f32,
    [MDL_OP_NEG][MDL_DTYPE_INT32] = &mdl__neg_int,
    [MDL_OP_NEG][MDL_DTYPE_INT64] = &mdl__neg_int,
    [MDL_OP_ABS][MDL_DTYPE_INT32] = &mdl__abs_int,
    [MDL_OP_ABS][MDL_DTYPE_INT64] = &mdl__abs_int,
    [MDL_OP_POW][MDL_DTYPE_FLOAT32] = &mdl__pow_f32,
    [MDL_OP_ADD][MDL_DTYPE_INT32] = &mdl__add_int,
    [MDL_OP_ADD][MDL_DTYPE_INT64] = &mdl__add_int,
    [MDL_OP_SUB][MDL_DTYPE_INT32] = &mdl__sub_int,
    [MDL_OP_SUB][MDL_DTYPE_INT64] = &mdl__sub_int,
    [MDL_OP_MUL][MDL_DTYPE_INT32] = &mdl__mul_int,
    [MDL_OP_MUL][MDL_DTYPE_INT64] = &mdl__mul_int,
    [MDL_OP_DIV][MDL_DTYPE_INT32] = &mdl__div_int,
    [MDL_OP_DIV][MDL_DTYPE_INT64] = &mdl__div_int,
    [MDL_OP_EQUAL][MDL_DTYPE_FLOAT32] = &mdl__equal,
    [MDL_OP_EQUAL][MDL_DTYPE_INT32] = &mdl__equal,
    [MDL_OP_EQUAL][MDL_DTYPE_INT64] = &mdl__equal,
    [MDL_OP_EQUAL][MDL_DTYPE_BOOL] = &mdl__equal,
    [MDL_OP_LESS][MDL_DTYPE_FLOAT32] = &mdl__less,
    [MDL_OP_LESS][MDL_DTYPE_INT32] = &mdl__less,
    [MDL_OP_LESS][MDL_DTYPE_INT64] = &mdl__less,
    [MDL_OP_LESS][MDL_DTYPE_BOOL] = &mdl__less,
    [MDL_OP_GREATER][MDL_DTYPE_FLOAT32] = &mdl__greater,
    [MDL_OP_GREATER][MDL_DTYPE_INT32] = &mdl__greater,
    [MDL_OP_GREATER][MDL_DTYPE_INT64] = &mdl__greater,
    [MDL_OP_GREATER][MDL_DTYPE_BOOL] = &mdl__greater,
    [MDL_OP_LESS_OR_EQUAL][MDL_DTYPE_FLOAT32] = &mdl__less_or_equal,
    [MDL_OP_LESS_OR_EQUAL][MDL_DTYPE_INT32] = &mdl__less_or_equal,
    [MDL_OP_LESS_OR_EQUAL][MDL_DTYPE_INT64] = &mdl__less_or_equal,
    [MDL_OP_LESS_OR_EQUAL][MDL_DTYPE_BOOL] = &mdl__less_or_equal,
    [MDL_OP_GREATER_OR_EQUAL][MDL_DTYPE_FLOAT32] = &mdl__greater_or_equal,
    [MDL_OP_GREATER_OR_EQUAL][MDL_DTYPE_INT32] = &mdl__greater_or_equal,
    [MDL_OP_GREATER_OR_EQUAL][MDL_DTYPE_INT64] = &mdl__greater_or_equal,
    [MDL_OP_GREATER_OR_EQUAL][MDL_DTYPE_BOOL] = &mdl__greater_or_equal,
    [MDL_OP_NOT][MDL_DTYPE_BOOL] = &mdl__not,
    [MDL_OP_AND][MDL_DTYPE_BOOL] = &mdl__logic,
    [MDL_OP_OR][MDL_DTYPE_BOOL] = &mdl__logic,
    [MDL_OP_XOR][MDL_DTYPE_BOOL] = &mdl__logic,
    [MDL_OP_WHERE][MDL_DTYPE_BOOL] = &mdl__where,
    [MDL_OP_CAST][MDL_DTYPE_FLOAT32] = &mdl__cast,
    [MDL_OP_CAST][MDL_DTYPE_INT8] = &mdl__cast,
    [MDL_OP_CAST][MDL_DTYPE_UINT8] = &mdl__cast,
    [MDL_OP_CAST][MDL_DTYPE_INT32] = &mdl__cast,
    [MDL_OP_CAST][MDL_DTYPE_INT64] = &mdl__cast,
    [MDL_OP_CAST][MDL_DTYPE_BOOL] = &mdl__cast,
    /* END elementwise-math entries */
    /* BEGIN nn entries */
    [MDL_OP_ERF][MDL_DTYPE_FLOAT32] = &mdl__erf_f32,
    [MDL_OP_LAYER_NORM][MDL_DTYPE_FLOAT32] = &mdl__layer_norm_f32,
    [MDL_OP_RESIZE][MDL_DTYPE_FLOAT32] = &mdl__resize_f32,
    /* END nn entries */
};

const mdl__kernel *mdl__kernel_find(mdl_op op, mdl_dtype dtype) {
    if ((unsigned)op >= MDL_OP_COUNT || (unsigned)dtype >= MDL_DTYPE_COUNT) return NULL;
    return kernels[op][dtype];
}

mdl_status mdl__check_unary_f32(const mdl__kctx *c) {
    const mdl__tensor *x = c->nin > 0 ? c->in[0] : NULL;
    if (c->nin != 1 || c->nout != 1 || !x)
        return mdl__fail(c, MDL_INVALID_ARGUMENT,
                         "expects one input and one output, got %d inputs and %d outputs", c->nin,
                         c->nout);
    if (x->dtype != MDL_DTYPE_FLOAT32)
        return mdl__fail(c, MDL_DTYPE, "float32 kernel got %s input", mdl_dtype_name(x->dtype));
    return MDL_OK;
}
