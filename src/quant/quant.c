/* Quantization math (see quant.h). */
#include "quant.h"

#include "graph/util.h"
#include "ops/ops.h"

#include <math.h>

bool mdl__qmul_from_real(double real, mdl__qmul *out) {
    out->mult = 0;
    out->shift = 0;
    if (!(real >= 0.0) || !isfinite(real)) return false;
    if (real == 0.0) return true;
    int shift;
    double q = frexp(real, &shift); /* real = q * 2^shift, q in [0.5, 1) */
    int64_t fixed = (int64_t)round(q * (double)((int64_t)1 << 31));
    if (fixed == ((int64_t)1 << 31)) {
        fixed /= 2;
        shift++;
    }
    if (shift < -31) return true; /* below 2^-31: multiplies every int32 to 0 */
    if (shift > 30) return false;
    out->mult = (int32_t)fixed;
    out->shift = shift;
    return true;
}

int32_t mdl__quantize_value(float x, float scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
    if (isnan(x)) return zero_point < qmin ? qmin : (zero_point > qmax ? qmax : zero_point);
    float r = x / scale;
    /* saturate before rounding so the conversion to int32 stays defined */
    const float lim = 4294967296.0f; /* 2^32: beyond any zero point + range */
    int64_t v;
    if (r >= lim) v = (int64_t)qmax + ((int64_t)1 << 32);
    else if (r <= -lim) v = (int64_t)qmin - ((int64_t)1 << 32);
    else if (r > 2147483520.0f || r < -2147483520.0f) v = (int64_t)r; /* integral already */
    else v = mdl__round_half_even(r);
    v += zero_point;
    return (int32_t)(v < qmin ? qmin : (v > qmax ? qmax : v));
}

bool mdl__qrange(mdl_dtype dtype, int32_t *qmin, int32_t *qmax) {
    switch (dtype) {
    case MDL_DTYPE_INT8: *qmin = -128; *qmax = 127; return true;
    case MDL_DTYPE_UINT8: *qmin = 0; *qmax = 255; return true;
    case MDL_DTYPE_INT32: *qmin = INT32_MIN; *qmax = INT32_MAX; return true;
    default: return false;
    }
}

mdl_status mdl__quant_check(const mdl__tensor *t, mdl_error *err) {
    if (t->nquant == 0) return MDL_OK;
    const char *nm = t->name ? t->name : "";
    int32_t qmin, qmax;
    if (!mdl__qrange(t->dtype, &qmin, &qmax))
        return mdl__error(err, MDL_CORRUPT_MODEL,
                          "tensor '%s': quantization parameters on a %s tensor (int8, uint8 or "
                          "int32 only)",
                          nm, mdl_dtype_name(t->dtype));
    if (t->nquant < 0 || !t->scale || !t->zero_point)
        return mdl__error(err, MDL_CORRUPT_MODEL, "tensor '%s': incomplete quantization parameters",
                          nm);
    if (t->nquant > 1) {
        int32_t ax;
        if (!mdl__axis(t->quant_axis, t->rank, &ax))
            return mdl__error(err, MDL_CORRUPT_MODEL,
                              "tensor '%s': quantization axis %d is out of range for rank %d", nm,
                              (int)t->quant_axis, (int)t->rank);
        if (t->dims[ax] != t->nquant)
            return mdl__error(err, MDL_CORRUPT_MODEL,
                              "tensor '%s': %d per-channel scales for %lld channels on axis %d", nm,
                              (int)t->nquant, (long long)t->dims[ax], (int)ax);
    }
    for (int32_t i = 0; i < t->nquant; i++) {
        float s = t->scale[i];
        if (!(s > 0.0f) || !isfinite(s))
            return mdl__error(err, MDL_CORRUPT_MODEL,
                              "tensor '%s': quantization scale[%d] is %g (must be finite and > 0)",
                              nm, (int)i, (double)s);
        int64_t z = t->zero_point[i];
        if (z < qmin || z > qmax)
            return mdl__error(err, MDL_CORRUPT_MODEL,
                              "tensor '%s': zero point[%d] %lld is out of the %s range [%ld, %ld]",
                              nm, (int)i, (long long)z, mdl_dtype_name(t->dtype), (long)qmin,
                              (long)qmax);
    }
    return MDL_OK;
}

void mdl__quant_act_range(float lo_r, float hi_r, float scale, int32_t zero_point, int32_t qmin,
                          int32_t qmax, int32_t *lo, int32_t *hi) {
    int32_t l = qmin, h = qmax;
    if (lo_r > -INFINITY) {
        int32_t v = mdl__quantize_value(lo_r, scale, zero_point, qmin, qmax);
        if (v > l) l = v;
    }
    if (hi_r < INFINITY) {
        int32_t v = mdl__quantize_value(hi_r, scale, zero_point, qmin, qmax);
        if (v < h) h = v;
    }
    *lo = l;
    *hi = h;
}
