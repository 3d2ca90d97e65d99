/* Cast between float32, int8, uint8, int32, int64 and bool (options.cast.to), as ONNX Cast:
     float -> float:    unchanged;
     float -> integer:  truncated toward zero; NaN or a value outside the target's range fails
                        the run with MDL_OUT_OF_RANGE naming the element (ONNX: undefined);
     integer -> float:  rounded to nearest (int32/int64 above 2^24 may round);
     integer -> integer: the low bits, read as two's complement (200 int32 -> -56 int8);
     anything -> bool:  x != 0 (NaN is true); bool -> number: 1 or 0 (any non-zero byte is true).
   The output has the input's shape. */
#include "ops.h"

#include <math.h>
#include <string.h>

static bool castable(mdl_dtype t) {
    return t == MDL_DTYPE_FLOAT32 || t == MDL_DTYPE_INT8 || t == MDL_DTYPE_UINT8 ||
           t == MDL_DTYPE_INT32 || t == MDL_DTYPE_INT64 || t == MDL_DTYPE_BOOL;
}

static mdl_status cast_prepare(mdl__kctx *c) {
    const mdl__tensor *x = c->nin > 0 ? c->in[0] : NULL;
    if (c->nin != 1 || c->nout != 1 || !x)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects one input and one output");
    mdl_dtype to = c->opt->cast.to;
    if (!castable(x->dtype) || (unsigned)to >= MDL_DTYPE_COUNT || !castable(to))
        return mdl__fail(c, MDL_UNSUPPORTED, "no cast from %s to %s", mdl_dtype_name(x->dtype),
                         mdl_dtype_name(to));
    mdl__shape_of(&c->out_shape[0], x);
    c->out_shape[0].dtype = to;
    return MDL_OK;
}

static int64_t int_at(mdl_dtype t, const void *p, int64_t i) {
    switch (t) {
    case MDL_DTYPE_INT8: return ((const int8_t *)p)[i];
    case MDL_DTYPE_UINT8: return ((const uint8_t *)p)[i];
    case MDL_DTYPE_INT32: return ((const int32_t *)p)[i];
    case MDL_DTYPE_INT64: return ((const int64_t *)p)[i];
    default: return ((const uint8_t *)p)[i] != 0; /* bool */
    }
}

/* Stores integer v into an integer or bool element: low bits for narrower types. */
static void put_int(mdl_dtype t, void *p, int64_t i, int64_t v) {
    uint64_t u = (uint64_t)v;
    switch (t) {
    case MDL_DTYPE_INT8: ((int8_t *)p)[i] = (int8_t)(uint8_t)u; break;
    case MDL_DTYPE_UINT8: ((uint8_t *)p)[i] = (uint8_t)u; break;
    case MDL_DTYPE_INT32: ((int32_t *)p)[i] = (int32_t)(uint32_t)u; break;
    case MDL_DTYPE_INT64: ((int64_t *)p)[i] = v; break;
    default: ((uint8_t *)p)[i] = v != 0; break;
    }
}

/* [lo, hi): the float values whose truncation fits the integer type. */
static void int_range(mdl_dtype t, double *lo, double *hi) {
    switch (t) {
    case MDL_DTYPE_INT8: *lo = -129.0; *hi = 128.0; break;
    case MDL_DTYPE_UINT8: *lo = -1.0; *hi = 256.0; break;
    case MDL_DTYPE_INT32: *lo = -2147483649.0; *hi = 2147483648.0; break;
    default: *lo = -9223372036854775808.0; *hi = 9223372036854775808.0; break;
    }
}

static mdl_status cast_run(mdl__kctx *c) {
    mdl_dtype from = c->in[0]->dtype, to = c->opt->cast.to;
    const void *x = c->in_data[0];
    void *y = c->out_data[0];
    int64_t n = c->in[0]->count;
    if (from == to) {
        if (n && x != y) memcpy(y, x, (size_t)n * mdl_dtype_size(to));
        if (to == MDL_DTYPE_BOOL) /* normalize: any non-zero byte is true */
            for (int64_t i = 0; i < n; i++) ((uint8_t *)y)[i] = ((const uint8_t *)y)[i] != 0;
        return MDL_OK;
    }
    if (from == MDL_DTYPE_FLOAT32) {
        const float *f = x;
        if (to == MDL_DTYPE_BOOL) {
            for (int64_t i = 0; i < n; i++) ((uint8_t *)y)[i] = f[i] != 0.0f || f[i] != f[i];
            return MDL_OK;
        }
        double lo, hi;
        int_range(to, &lo, &hi);
        for (int64_t i = 0; i < n; i++) {
            double v = f[i];
            /* > lo and < hi: truncation lands in range (also rejects NaN) */
            if (!(v > lo && v < hi))
                return mdl__fail(c, MDL_OUT_OF_RANGE,
                                 "element %lld is %g, outside the range of %s (ONNX leaves the "
                                 "result undefined)", (long long)i, v, mdl_dtype_name(to));
            put_int(to, y, i, (int64_t)v);
        }
        return MDL_OK;
    }
    if (to == MDL_DTYPE_FLOAT32) {
        for (int64_t i = 0; i < n; i++) ((float *)y)[i] = (float)int_at(from, x, i);
        return MDL_OK;
    }
    for (int64_t i = 0; i < n; i++) put_int(to, y, i, int_at(from, x, i));
    return MDL_OK;
}

const mdl__kernel mdl__cast = {.prepare = cast_prepare, .run = cast_run};
