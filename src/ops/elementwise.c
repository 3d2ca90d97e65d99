/* One-input element-wise math: Exp, Sqrt, Log, Neg, Reciprocal, Abs on float32 (IEEE results:
   sqrt(-1) = NaN, log(0) = -inf, 1/0 = inf) and Neg, Abs on int32/int64 (two's complement wrap:
   -INT_MIN = INT_MIN, as NumPy and ONNX Runtime give).  The output has the input's shape and
   type; out may alias the input (each element is read before it is written). */
#include "ops.h"

#include <math.h>

static mdl_status unary_prepare(mdl__kctx *c) {
    const mdl__tensor *x = c->nin > 0 ? c->in[0] : NULL;
    if (c->nin != 1 || c->nout != 1 || !x)
        return mdl__fail(c, MDL_INVALID_ARGUMENT,
                         "expects one input and one output, got %d inputs and %d outputs", c->nin,
                         c->nout);
    bool ints = c->op == MDL_OP_NEG || c->op == MDL_OP_ABS;
    if (!(x->dtype == MDL_DTYPE_FLOAT32 ||
          (ints && (x->dtype == MDL_DTYPE_INT32 || x->dtype == MDL_DTYPE_INT64))))
        return mdl__fail(c, MDL_DTYPE, "no kernel for %s input", mdl_dtype_name(x->dtype));
    mdl__shape_of(&c->out_shape[0], x);
    return MDL_OK;
}

static mdl_status unary_f32_run(mdl__kctx *c) {
    const float *x = c->in_data[0];
    float *y = c->out_data[0];
    int64_t n = c->in[0]->count;
    switch (c->op) {
    case MDL_OP_EXP: for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]); break;
    case MDL_OP_SQRT: for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]); break;
    case MDL_OP_LOG: for (int64_t i = 0; i < n; i++) y[i] = logf(x[i]); break;
    case MDL_OP_NEG: for (int64_t i = 0; i < n; i++) y[i] = -x[i]; break;
    case MDL_OP_RECIPROCAL: for (int64_t i = 0; i < n; i++) y[i] = 1.0f / x[i]; break;
    case MDL_OP_ABS: for (int64_t i = 0; i < n; i++) y[i] = fabsf(x[i]); break;
    default: return mdl__fail(c, MDL_INTERNAL, "not a unary math operator");
    }
    return MDL_OK;
}

#define INT_UNARY(T, UT)                                                                           \
    do {                                                                                           \
        const T *x_ = c->in_data[0];                                                               \
        T *y_ = c->out_data[0];                                                                    \
        if (c->op == MDL_OP_NEG)                                                                   \
            for (int64_t i = 0; i < n; i++) y_[i] = (T)(0 - (UT)x_[i]);                            \
        else                                                                                       \
            for (int64_t i = 0; i < n; i++) y_[i] = x_[i] < 0 ? (T)(0 - (UT)x_[i]) : x_[i];        \
    } while (0)

static mdl_status unary_int_run(mdl__kctx *c) {
    int64_t n = c->in[0]->count;
    if (c->in[0]->dtype == MDL_DTYPE_INT64) INT_UNARY(int64_t, uint64_t);
    else INT_UNARY(int32_t, uint32_t);
    return MDL_OK;
}

const mdl__kernel mdl__exp_f32 = {.prepare = unary_prepare, .run = unary_f32_run};
const mdl__kernel mdl__sqrt_f32 = {.prepare = unary_prepare, .run = unary_f32_run};
const mdl__kernel mdl__log_f32 = {.prepare = unary_prepare, .run = unary_f32_run};
const mdl__kernel mdl__neg_f32 = {.prepare = unary_prepare, .run = unary_f32_run};
const mdl__kernel mdl__reciprocal_f32 = {.prepare = unary_prepare, .run = unary_f32_run};
const mdl__kernel mdl__abs_f32 = {.prepare = unary_prepare, .run = unary_f32_run};
const mdl__kernel mdl__neg_int = {.prepare = unary_prepare, .run = unary_int_run};
const mdl__kernel mdl__abs_int = {.prepare = unary_prepare, .run = unary_int_run};
