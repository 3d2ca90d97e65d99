/* QUANTIZE (ONNX QuantizeLinear) and DEQUANTIZE (DequantizeLinear), per tensor or per axis.

     QUANTIZE:   float32 -> int8 / uint8 (the declared output's dtype and parameters):
                 y = saturate(round_half_even(x / scale) + zero_point), x / scale in float as
                 ONNX specifies (mdl__quantize_value); NaN gives the zero point.
     DEQUANTIZE: int8 / uint8 / int32 -> float32 with the input's parameters:
                 y = (x - zero_point) * scale.  For 8-bit inputs the difference is exact in
                 float and the one float product is correctly rounded; int32 differences may
                 not fit a float's mantissa, so they are scaled in double and rounded once.

   Neither needs packed data: there is no fixed-point multiplier to precompute. */
#include "int8_elem.h"

#ifdef MDL_HAVE_X86_SIMD
#include "x86/int8_x86.h"
#include "x86/x86.h"
#endif

/* saturate(round_half_even(x / s) + z): mdl__quantize_value with the saturation as a clamp before
   the rounding (the same result: rounding is monotonic and the bounds are integers), branch-free
   for a whole row; the oracle of mdl__quantize_avx2. */
static void quantize_row(const float *x, ptrdiff_t n, float s, int32_t z, int32_t qmin, int32_t qmax,
                         void *out) {
#ifdef MDL_HAVE_X86_SIMD
    if (mdl__cpu_level() >= MDL_CPU_AVX2) {
        mdl__quantize_avx2(x, n, s, z, qmin, qmax, out);
        return;
    }
#endif
    const float lo = (float)(qmin - z), hi = (float)(qmax - z);
    int8_t *o8 = out;
    uint8_t *u8 = out;
    for (ptrdiff_t i = 0; i < n; i++) {
        float r = x[i] / s;
        r = r == r ? r : 0.0f; /* NaN -> the zero point */
        r = r < lo ? lo : (r > hi ? hi : r);
        const int32_t v = mdl__round_half_even(r) + z;
        if (qmin == 0) u8[i] = (uint8_t)v;
        else o8[i] = (int8_t)v;
    }
}

/* The tensor seen as [outer, n, inner] around its quantization axis (n = 1 per tensor).
   ptrdiff_t: indices within a tensor fit it (mdl__shape_size); the native word on 32-bit cores. */
static void axis_geometry(const mdl__tensor *q, const mdl__tensor *shape, ptrdiff_t *outer,
                          ptrdiff_t *n, ptrdiff_t *inner) {
    *outer = 1;
    *n = 1;
    if (q->nquant <= 1) {
        *inner = 1;
        for (int32_t d = 0; d < shape->rank; d++)
            *inner *= (ptrdiff_t)shape->dims[d];
        return;
    }
    int32_t ax = 0;
    mdl__axis(q->quant_axis, shape->rank, &ax);
    *inner = 1;
    for (int32_t d = 0; d < ax; d++)
        *outer *= (ptrdiff_t)shape->dims[d];
    *n = (ptrdiff_t)shape->dims[ax];
    for (int32_t d = ax + 1; d < shape->rank; d++)
        *inner *= (ptrdiff_t)shape->dims[d];
}

static bool same_shape(const mdl__tensor *a, const mdl__tensor *b) {
    if (a->rank != b->rank) return false;
    for (int32_t d = 0; d < a->rank; d++)
        if (a->dims[d] != b->dims[d]) return false;
    return true;
}

static mdl_status quantize_prepare(mdl__kctx *c) {
    const mdl__tensor *x = c->nin > 0 ? c->in[0] : NULL, *y = c->out[0];
    char s1[96], s2[96];
    if (c->nin != 1 || c->nout != 1 || !x)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects one input and one output");
    if (x->dtype != MDL_DTYPE_FLOAT32)
        return mdl__fail(c, MDL_DTYPE, "input '%s' is %s, expected float32", mdl__q8_name(x),
                         mdl_dtype_name(x->dtype));
    if (!y || y->nquant < 1)
        return mdl__fail(c, MDL_INVALID_ARGUMENT,
                         "output must be declared with quantization parameters");
    if (y->dtype != MDL_DTYPE_INT8 && y->dtype != MDL_DTYPE_UINT8)
        return mdl__fail(c, MDL_DTYPE, "output '%s' is %s, expected int8 or uint8", mdl__q8_name(y),
                         mdl_dtype_name(y->dtype));
    if (!same_shape(x, y))
        return mdl__fail(c, MDL_SHAPE, "output '%s' %s does not have the input's shape %s",
                         mdl__q8_name(y), mdl__dims_str(s1, sizeof s1, y->rank, y->dims),
                         mdl__dims_str(s2, sizeof s2, x->rank, x->dims));
    mdl_status st = mdl__quant_check(y, c->err);
    if (st) return st;
    mdl__shape_of(&c->out_shape[0], x);
    c->out_shape[0].dtype = y->dtype;
    return MDL_OK;
}

static mdl_status quantize_run(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0], *y = c->out[0];
    const float *xd = c->in_data[0];
    ptrdiff_t outer, n, inner;
    axis_geometry(y, x, &outer, &n, &inner);
    int32_t qmin, qmax;
    mdl__qrange(y->dtype, &qmin, &qmax);
    uint8_t *out = c->out_data[0];
    for (ptrdiff_t o = 0; o < outer; o++)
        for (ptrdiff_t k = 0; k < n; k++) {
            const ptrdiff_t base = (o * n + k) * inner;
            quantize_row(xd + base, inner, y->scale[k], (int32_t)y->zero_point[k], qmin, qmax, out + base);
        }
    return MDL_OK;
}

const mdl__kernel mdl__quantize_f32 = {.prepare = quantize_prepare, .run = quantize_run};

static mdl_status dequantize_prepare(mdl__kctx *c) {
    const mdl__tensor *x = c->nin > 0 ? c->in[0] : NULL, *y = c->out[0];
    char s1[96], s2[96];
    if (c->nin != 1 || c->nout != 1 || !x)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects one input and one output");
    if (x->dtype != MDL_DTYPE_INT8 && x->dtype != MDL_DTYPE_UINT8 && x->dtype != MDL_DTYPE_INT32)
        return mdl__fail(c, MDL_DTYPE, "input '%s' is %s, expected int8, uint8 or int32",
                         mdl__q8_name(x), mdl_dtype_name(x->dtype));
    if (x->nquant < 1)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "input '%s' has no quantization parameters",
                         mdl__q8_name(x));
    mdl_status st = mdl__quant_check(x, c->err);
    if (st) return st;
    if (y && y->dtype != MDL_DTYPE_FLOAT32)
        return mdl__fail(c, MDL_DTYPE, "output '%s' is %s, expected float32", mdl__q8_name(y),
                         mdl_dtype_name(y->dtype));
    if (y && !same_shape(x, y))
        return mdl__fail(c, MDL_SHAPE, "output '%s' %s does not have the input's shape %s",
                         mdl__q8_name(y), mdl__dims_str(s1, sizeof s1, y->rank, y->dims),
                         mdl__dims_str(s2, sizeof s2, x->rank, x->dims));
    mdl__shape_of(&c->out_shape[0], x);
    c->out_shape[0].dtype = MDL_DTYPE_FLOAT32;
    return MDL_OK;
}

static mdl_status dequantize_run(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0];
    float *yd = c->out_data[0];
    ptrdiff_t outer, n, inner;
    axis_geometry(x, x, &outer, &n, &inner);
    for (ptrdiff_t o = 0; o < outer; o++)
        for (ptrdiff_t k = 0; k < n; k++) {
            const float s = x->scale[k];
            const int64_t z = x->zero_point[k];
            const ptrdiff_t base = (o * n + k) * inner;
            float *yo = yd + base;
            switch (x->dtype) {
            case MDL_DTYPE_INT8: {
                const int8_t *q = (const int8_t *)c->in_data[0] + base;
                for (ptrdiff_t i = 0; i < inner; i++)
                    yo[i] = (float)(q[i] - (int32_t)z) * s;
                break;
            }
            case MDL_DTYPE_UINT8: {
                const uint8_t *q = (const uint8_t *)c->in_data[0] + base;
                for (ptrdiff_t i = 0; i < inner; i++)
                    yo[i] = (float)(q[i] - (int32_t)z) * s;
                break;
            }
            default: {
                const int32_t *q = (const int32_t *)c->in_data[0] + base;
                for (ptrdiff_t i = 0; i < inner; i++)
                    yo[i] = (float)((double)(q[i] - z) * (double)s);
                break;
            }
            }
        }
    return MDL_OK;
}

const mdl__kernel mdl__dequantize_q = {.prepare = dequantize_prepare, .run = dequantize_run};
