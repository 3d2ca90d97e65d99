/*
 * Quantization math shared by the int8 kernels, the loader and the converter (libc only; builds
 * for Cortex-M).  The scheme is TFLite's (bit-exact with TFLM and CMSIS-NN):
 *
 *     real = scale * (q - zero_point)
 *
 * weights int8 symmetric per output channel (zero point 0), activations int8 (or uint8) per
 * tensor, bias int32 with scale = input_scale * weight_scale and zero point 0.  An int32
 * accumulator is brought back to 8 bits by a real multiplier M = in_scale * w_scale / out_scale
 * represented as a Q31 fixed-point multiplier and a power-of-two shift:
 *
 *     M = mult * 2^(shift - 31),   mult in [2^30, 2^31)
 *
 * and applied with a saturating rounding doubling high multiply followed by a rounding divide by
 * a power of two (TFLite's MultiplyByQuantizedMultiplier, "double rounding").  Every fast kernel
 * uses these same functions for its epilogue, so SIMD results are identical to the reference.
 */
#ifndef MDL_QUANT_H
#define MDL_QUANT_H

#include "mdeploy/mdeploy.h"

#include <stdbool.h>
#include <stdint.h>

struct mdl__tensor;

/* A real multiplier in fixed point (see above).  mult == 0 encodes the real value 0. */
typedef struct mdl__qmul {
    int32_t mult;
    int32_t shift; /* > 0: left shift before the high multiply; < 0: rounding right shift after */
} mdl__qmul;

/* Q31 multiplier and shift for real >= 0 (TFLite QuantizeMultiplier).  False when real is
   negative, not finite, or so large (>= 2^31) or small that it cannot be represented; values below
   2^-31 become {0, 0} (true), which multiplies to 0. */
bool mdl__qmul_from_real(double real, mdl__qmul *out);

/* (a * b * 2 + 2^30) >> 31 with rounding half away from zero; INT32_MIN * INT32_MIN saturates to
   INT32_MAX (gemmlowp SaturatingRoundingDoublingHighMul). */
static inline int32_t mdl__srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    /* C division truncates toward zero, which is what gemmlowp specifies here */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^exponent rounded to nearest, ties away from zero (gemmlowp RoundingDivideByPOT);
   0 <= exponent <= 31. */
static inline int32_t mdl__rdivpot(int32_t x, int exponent) {
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * M, rounded as TFLite's reference MultiplyByQuantizedMultiplier (the left shift saturates
   through the high multiply's saturation only where TFLite's does: callers keep |x| small enough,
   which int8 accumulators are). */
static inline int32_t mdl__qmul_apply(int32_t x, mdl__qmul m) {
    const int left = m.shift > 0 ? m.shift : 0;
    const int right = m.shift > 0 ? 0 : -m.shift;
    return mdl__rdivpot(mdl__srdhm((int32_t)((uint32_t)x << left), m.mult), right);
}

/* Requantizes an int32 accumulator: zero_point + acc * M clamped to [lo, hi]. */
static inline int32_t mdl__requant(int32_t acc, mdl__qmul m, int32_t zero_point, int32_t lo,
                                   int32_t hi) {
    int32_t v = mdl__qmul_apply(acc, m) + zero_point;
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Round half to even (ONNX QuantizeLinear's rounding), independent of the FPU's rounding mode.
   |x| must be below 2^31. */
static inline int32_t mdl__round_half_even(float x) {
    /* branch-free: quantizing a tensor calls this per element, and the three-way tie test of a
       branchy version mispredicts about every other value */
    const int32_t t = (int32_t)x;           /* trunc */
    const int32_t f = t - ((float)t > x);   /* floor */
    const float diff = x - (float)f;        /* exact: in [0, 1) */
    return f + (diff > 0.5f) + ((diff == 0.5f) & (f & 1));
}

/* ONNX QuantizeLinear for one value: saturate(round_half_even(x / scale) + zero_point) into
   [qmin, qmax].  NaN becomes zero_point; +-Inf saturate. */
int32_t mdl__quantize_value(float x, float scale, int32_t zero_point, int32_t qmin, int32_t qmax);

/* Range of an 8-bit (or int32) quantized dtype; false for dtypes that cannot be quantized. */
bool mdl__qrange(mdl_dtype dtype, int32_t *qmin, int32_t *qmax);

/* Checks a tensor's quantization parameters (every scale finite and > 0, every zero point within
   the dtype's range, one entry or one per index of an in-range axis).  A tensor without
   parameters passes.  Message names the tensor. */
mdl_status mdl__quant_check(const struct mdl__tensor *t, mdl_error *err);

/* Quantized range [lo, hi] of a fused activation clamp (real bounds lo_r..hi_r) on an output
   with the given scale/zero point, intersected with [qmin, qmax]. */
void mdl__quant_act_range(float lo_r, float hi_r, float scale, int32_t zero_point, int32_t qmin,
                          int32_t qmax, int32_t *lo, int32_t *hi);

#endif
