/* int8 activations.

   Pointwise ones (RELU, CLIP, LEAKY_RELU, SIGMOID, TANH, HARD_SIGMOID, HARD_SWISH, GELU) read a
   256-entry table built in pack from the float definition, exactly what a float model with
   DequantizeLinear / QuantizeLinear around the op computes:
       table[q] = quantize_out(f(scale_in * (q - zero_in)))
   f is evaluated in double with libm (exp, tanh, erf) and rounded to float, and quantize_out is
   ONNX QuantizeLinear (mdl__quantize_value: x / scale in float, round half to even, saturate).
   A table costs 256 evaluations per model load and one byte load per element at run time.

   SOFTMAX / LOG_SOFTMAX over opt->axis.axis: per row, the largest q; a float table of
   e[d] = exp(scale_in * d) for d = q - qmax in [-255, 0] (pack) gives the numerators, summed in
   float; y = e / sum (LOG_SOFTMAX: scale_in * d - log(sum)) is quantized to the output as
   above (round half to even).  The only error against an exact computation is float rounding
   of e, the sum and the quotient (a few ulp), which moves a result by one step only where it
   lies within those ulp of a rounding boundary. */
#include "int8_elem.h"

#include <math.h>

/* ---- table activations ----------------------------------------------------------------- */

static mdl_status table_prepare(mdl__kctx *c) {
    mdl_status st = mdl__q8_unary_io(c);
    if (st) return st;
    const mdl_act_options *a = &c->opt->act;
    switch (c->op) {
    case MDL_OP_CLIP:
        if (isnan(a->min) || isnan(a->max))
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "clip bounds min %g, max %g must not be NaN",
                             (double)a->min, (double)a->max);
        break;
    case MDL_OP_LEAKY_RELU:
        if (!isfinite(a->alpha))
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "alpha %g is not finite", (double)a->alpha);
        break;
    case MDL_OP_HARD_SIGMOID:
        if (!isfinite(a->alpha) || !isfinite(a->beta))
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "alpha %g and beta %g must be finite",
                             (double)a->alpha, (double)a->beta);
        break;
    default: break;
    }
    mdl__shape_of(&c->out_shape[0], c->in[0]);
    c->packed_bytes = 256;
    return MDL_OK;
}

static double hard_sigmoid(double v, double alpha, double beta) {
    double t = alpha * v + beta;
    return t < 0 ? 0 : (t > 1 ? 1 : t);
}

static double act_value(mdl_op op, const mdl_act_options *a, double v) {
    switch (op) {
    case MDL_OP_RELU: return v > 0 ? v : 0;
    case MDL_OP_CLIP: {
        double lo = a->min, hi = a->max;
        double t = v < lo ? lo : v; /* ONNX Clip: max with min, then min with max */
        return t > hi ? hi : t;
    }
    case MDL_OP_LEAKY_RELU: return v >= 0 ? v : (double)a->alpha * v;
    case MDL_OP_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case MDL_OP_TANH: return tanh(v);
    case MDL_OP_HARD_SIGMOID: return hard_sigmoid(v, a->alpha, a->beta);
    case MDL_OP_HARD_SWISH: return v * hard_sigmoid(v, 1.0 / 6.0, 0.5);
    case MDL_OP_GELU:
        if (a->approximate)
            return 0.5 * v * (1.0 + tanh(0.79788456080286535588 * (v + 0.044715 * v * v * v)));
        return 0.5 * v * erfc(-v * 0.70710678118654752440);
    default: return 0;
    }
}

static mdl_status table_pack(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0], *y = c->out[0];
    int8_t *t = c->packed;
    const float sx = x->scale[0], sy = y->scale[0];
    const int32_t zx = (int32_t)x->zero_point[0], zy = (int32_t)y->zero_point[0];
    for (int32_t q = -128; q <= 127; q++) {
        float v = (float)(q - zx) * sx; /* DequantizeLinear in float */
        float f = (float)act_value(c->op, &c->opt->act, (double)v);
        t[q + 128] = (int8_t)mdl__quantize_value(f, sy, zy, -128, 127);
    }
    return MDL_OK;
}

static mdl_status table_run(mdl__kctx *c) {
    const int8_t *t = c->packed;
    if (!t) return mdl__fail(c, MDL_INTERNAL, "run without the packed lookup table");
    const int8_t *x = c->in_data[0];
    int8_t *y = c->out_data[0];
    const int64_t n = c->in[0]->count;
    for (int64_t i = 0; i < n; i++)
        y[i] = t[x[i] + 128];
    return MDL_OK;
}

#define TABLE_KERNEL(name)                                                                         \
    const mdl__kernel mdl__##name##_q8 = {                                                         \
        .prepare = table_prepare, .run = table_run, .pack = table_pack};
TABLE_KERNEL(relu)
TABLE_KERNEL(clip)
TABLE_KERNEL(leaky_relu)
TABLE_KERNEL(sigmoid)
TABLE_KERNEL(tanh)
TABLE_KERNEL(hard_sigmoid)
TABLE_KERNEL(hard_swish)
TABLE_KERNEL(gelu)

/* ---- softmax --------------------------------------------------------------------------- */

typedef struct sm_pack {
    float e[256]; /* e[255 + d] = exp(scale_in * d), d = q - qmax in [-255, 0] */
    float sx, sy;
    int32_t zy;
} sm_pack;

static mdl_status softmax_prepare(mdl__kctx *c) {
    mdl_status st = mdl__q8_unary_io(c);
    if (st) return st;
    const mdl__tensor *x = c->in[0];
    int32_t axis;
    if (!mdl__axis(c->opt->axis.axis, x->rank, &axis))
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "axis %d is out of range for rank %d",
                         (int)c->opt->axis.axis, (int)x->rank);
    mdl__shape_of(&c->out_shape[0], x);
    c->packed_bytes = sizeof(sm_pack);
    return MDL_OK;
}

static mdl_status softmax_pack(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0], *y = c->out[0];
    sm_pack *p = c->packed;
    p->sx = x->scale[0];
    p->sy = y->scale[0];
    p->zy = (int32_t)y->zero_point[0];
    for (int32_t d = -255; d <= 0; d++)
        p->e[255 + d] = (float)exp((double)p->sx * d);
    return MDL_OK;
}

static mdl_status softmax_run(mdl__kctx *c) {
    const sm_pack *p = c->packed;
    if (!p) return mdl__fail(c, MDL_INTERNAL, "run without the packed exp table");
    const mdl__tensor *x = c->in[0];
    int32_t axis = 0;
    mdl__axis(c->opt->axis.axis, x->rank, &axis);
    /* indices within the tensor: ptrdiff_t (mdl__shape_size), the native word on 32-bit cores */
    ptrdiff_t outer = 1, n = (ptrdiff_t)x->dims[axis], inner = 1;
    for (int32_t d = 0; d < axis; d++)
        outer *= x->dims[d];
    for (int32_t d = axis + 1; d < x->rank; d++)
        inner *= x->dims[d];
    const bool logsm = c->op == MDL_OP_LOG_SOFTMAX;
    const int8_t *xd = c->in_data[0];
    int8_t *yd = c->out_data[0];
    for (ptrdiff_t o = 0; o < outer; o++)
        for (ptrdiff_t i = 0; i < inner; i++) {
            const int8_t *xr = xd + o * n * inner + i;
            int8_t *yr = yd + o * n * inner + i;
            int32_t qmax = -128;
            for (ptrdiff_t k = 0; k < n; k++)
                if (xr[k * inner] > qmax) qmax = xr[k * inner];
            float sum = 0.0f;
            for (ptrdiff_t k = 0; k < n; k++)
                sum += p->e[255 + xr[k * inner] - qmax];
            /* the largest element contributes 1: sum >= 1 */
            const float lsum = logsm ? logf(sum) : 0.0f;
            for (ptrdiff_t k = 0; k < n; k++) {
                const int32_t d = xr[k * inner] - qmax;
                const float v = logsm ? p->sx * (float)d - lsum : p->e[255 + d] / sum;
                yr[k * inner] = (int8_t)mdl__quantize_value(v, p->sy, p->zy, -128, 127);
            }
        }
    return MDL_OK;
}

const mdl__kernel mdl__softmax_q8 = {
    .prepare = softmax_prepare, .run = softmax_run, .pack = softmax_pack};
const mdl__kernel mdl__log_softmax_q8 = {
    .prepare = softmax_prepare, .run = softmax_run, .pack = softmax_pack};
