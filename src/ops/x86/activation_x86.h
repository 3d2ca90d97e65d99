/*
 * Element-wise vector math of src/ops/activation.c and its x86 SIMD variants (internal).
 *
 * Every function computes y[i] = f(x[i]) for 0 <= i < n (n >= 0; y may equal x, otherwise the
 * ranges must not overlap) with the portable block function's formulas and special cases:
 * NaN in gives NaN out, sigmoid saturates to exactly 0 below -87.3 and to 1 above ~17, tanh to
 * +-1, Gelu and HardSwish follow x * (...) (so -inf gives NaN, as in the portable code).
 * Results agree with the portable ones to a few float ulps (FMA contractions round differently).
 *
 * The portable forms (mdl__act_f32v_ref, mdl__exp_shift_ref) are always built and are the test
 * oracle; the _avx2 / _avx512 ones exist only with MDL_HAVE_X86_SIMD and may be called only when
 * mdl__cpu_level() (x86.h) is at least their level.  Kernels call the dispatching forms
 * (mdl__sigmoid_f32v / mdl__tanh_f32v in ops.h, the operators in activation.c).
 */
#ifndef MDL_OPS_ACTIVATION_X86_H
#define MDL_OPS_ACTIVATION_X86_H

#include <stdint.h>

typedef enum mdl__vfn {
    MDL__VF_SIGMOID,
    MDL__VF_TANH,
    MDL__VF_GELU_ERF,  /* 0.5 x (1 + erf(x / sqrt 2)) */
    MDL__VF_GELU_TANH, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    MDL__VF_HARD_SWISH,
    MDL__VF_COUNT
} mdl__vfn;

/* Portable y = f(x) (src/ops/activation.c). */
void mdl__act_f32v_ref(mdl__vfn f, const float *x, float *y, int64_t n);

/* Softmax's exponentials, portable: e[i] = exp(x[i] - m) with one m (mrow NULL) or m = mrow[i]
   per element; x[i] - m must be <= 0 or NaN (larger values count as 0).  Writes e to out when
   out != NULL; then adds the sum of all e[i] into *rsum (mrow NULL) or each e[i] into esum[i]
   (mrow given; rsum unused). */
void mdl__exp_shift_ref(const float *x, float m, const float *mrow, float *out, double *rsum,
                        float *esum, int64_t n);

void mdl__sigmoid_f32v_avx2(const float *x, float *y, int64_t n);
void mdl__tanh_f32v_avx2(const float *x, float *y, int64_t n);
void mdl__gelu_erf_f32v_avx2(const float *x, float *y, int64_t n);
void mdl__gelu_tanh_f32v_avx2(const float *x, float *y, int64_t n);
void mdl__hard_swish_f32v_avx2(const float *x, float *y, int64_t n);
void mdl__exp_shift_avx2(const float *x, float m, const float *mrow, float *out, double *rsum,
                         float *esum, int64_t n);

void mdl__sigmoid_f32v_avx512(const float *x, float *y, int64_t n);
void mdl__tanh_f32v_avx512(const float *x, float *y, int64_t n);
void mdl__gelu_erf_f32v_avx512(const float *x, float *y, int64_t n);
void mdl__gelu_tanh_f32v_avx512(const float *x, float *y, int64_t n);
void mdl__hard_swish_f32v_avx512(const float *x, float *y, int64_t n);
void mdl__exp_shift_avx512(const float *x, float m, const float *mrow, float *out, double *rsum,
                           float *esum, int64_t n);

#endif
