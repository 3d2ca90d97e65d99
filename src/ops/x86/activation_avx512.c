/* AVX-512 forms of the activation vector math (contract: activation_x86.h).
 *
 * The same formulas as the portable block functions in src/ops/activation.c, 16 lanes at a time
 * with FMA: Cephes' expf (range reduction by n = round(x log2 e), degree-5 polynomial, 2^n by
 * vscalefps), Cephes' tanhf, Eigen's rational erf.  Special values are handled by the same
 * selects as the portable code, so NaN, +-inf, -0 and the saturation points behave alike.
 * Tails go through masked loads and stores (lanes past n compute on zeros and are dropped), so
 * there is no scalar remainder loop.
 *
 * Quotients are taken as a product with a reciprocal refined by one Newton step (vrcp14ps: 14
 * bits; after the step the error is ~2^-28 plus rounding, about 1 ulp) instead of vdivps, which
 * alone costs ~10 cycles per vector here.  Every denominator is a normal float or NaN (sigmoid
 * 1 + e in [1, 2], tanh 1 + z in [1, 1.3], erf's q <= -0.014), and the step maps an exact 1 to
 * exactly 1, so results saturate to +-1 exactly as with a division. */
#include "activation_x86.h"
#include "simd.h"

#include <immintrin.h>
#include <math.h>

#define EXP_LO -87.33654f /* as in activation.c: below it exp() returns 0 */
#define GELU_TAIL -2.0f   /* as in activation.c */
#define SQRT1_2_D 0.70710678118654752440

#define V(c) _mm512_set1_ps(c)

static inline __m512 signbit_ps(void) { return _mm512_castsi512_ps(_mm512_set1_epi32(INT32_MIN)); }

/* n / d for a normal (or NaN) d, see above. */
static inline __m512 quotient(__m512 n, __m512 d) {
    __m512 r = _mm512_rcp14_ps(d);
    r = _mm512_fmadd_ps(_mm512_fnmadd_ps(d, r, V(1.0f)), r, r); /* r += r (1 - d r) */
    return _mm512_mul_ps(n, r);
}

/* e^x for x <= 0 (larger x count as 0), exactly 0 below EXP_LO; NaN propagates. */
static inline __m512 exp_nonpos(__m512 x) {
    /* max/min return their second operand for a NaN first operand: NaN becomes EXP_LO here
       (keeping the arithmetic defined) and is restored at the end. */
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, V(EXP_LO)), _mm512_setzero_ps());
    __m512 nf = _mm512_roundscale_ps(_mm512_mul_ps(xc, V(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x - n ln 2 in two parts (Cody-Waite) */
    __m512 r = _mm512_fnmadd_ps(nf, V(0.693359375f), xc);
    r = _mm512_fmadd_ps(nf, V(2.12194440e-4f), r);
    __m512 q = _mm512_fmadd_ps(V(1.9875691500e-4f), r, V(1.3981999507e-3f));
    q = _mm512_fmadd_ps(q, r, V(8.3334519073e-3f));
    q = _mm512_fmadd_ps(q, r, V(4.1665795894e-2f));
    q = _mm512_fmadd_ps(q, r, V(1.6666665459e-1f));
    q = _mm512_fmadd_ps(q, r, V(5.0000001201e-1f));
    __m512 p = _mm512_add_ps(_mm512_fmadd_ps(q, _mm512_mul_ps(r, r), r), V(1.0f));
    __m512 t = _mm512_scalef_ps(p, nf); /* n >= -126: no overflow, no scalef special cases */
    t = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, V(EXP_LO), _CMP_GE_OQ), t);
    return _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

/* 1 / (1 + e^-v) as num / (1 + e), e = e^-|v|, num = 1 for v >= 0 and e otherwise: no overflow,
   and tiny results keep their relative accuracy. */
static inline __m512 sigmoid_v(__m512 v) {
    __m512 e = exp_nonpos(_mm512_or_ps(v, signbit_ps()));
    __m512 num =
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ), e, V(1.0f));
    return quotient(num, _mm512_add_ps(V(1.0f), e));
}

/* Cephes tanhf: odd polynomial below |v| = 0.625, else sign(v) (1 - z) / (1 + z), z = e^-2|v|.
   Both parts carry v's sign by OR-ing it in (both magnitudes are >= 0), so tanh(-0) = -0. */
static inline __m512 tanh_v(__m512 v) {
    __m512 sg = _mm512_and_ps(v, signbit_ps());
    __m512 a = _mm512_andnot_ps(signbit_ps(), v);
    __m512 z = exp_nonpos(_mm512_mul_ps(a, V(-2.0f)));
    __m512 big = quotient(_mm512_sub_ps(V(1.0f), z), _mm512_add_ps(V(1.0f), z));
    __m512 t = _mm512_mul_ps(v, v);
    __m512 q = _mm512_fmadd_ps(V(-5.70498872745e-3f), t, V(2.06390887954e-2f));
    q = _mm512_fmadd_ps(q, t, V(-5.37397155531e-2f));
    q = _mm512_fmadd_ps(q, t, V(1.33314422036e-1f));
    q = _mm512_fmadd_ps(q, t, V(-3.33332819422e-1f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(q, t), v, v);
    small = _mm512_or_ps(_mm512_andnot_ps(signbit_ps(), small), sg);
    big = _mm512_or_ps(big, sg);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, V(0.625f), _CMP_LT_OQ), big, small);
}

/* Eigen's erf on [-4, 4] (+-1 in float outside).  A NaN argument comes out as erf(4); the
   callers multiply by it, which brings the NaN back. */
static inline __m512 erf_v(__m512 u) {
    __m512 v = _mm512_max_ps(_mm512_min_ps(u, V(4.0f)), V(-4.0f));
    __m512 w = _mm512_mul_ps(v, v);
    __m512 p = _mm512_fmadd_ps(V(-2.72614225801306e-10f), w, V(2.77068142495902e-08f));
    p = _mm512_fmadd_ps(p, w, V(-2.10102402082508e-06f));
    p = _mm512_fmadd_ps(p, w, V(-5.69250639462346e-05f));
    p = _mm512_fmadd_ps(p, w, V(-7.34990630326855e-04f));
    p = _mm512_fmadd_ps(p, w, V(-2.95459980854025e-03f));
    p = _mm512_fmadd_ps(p, w, V(-1.60960333262415e-02f));
    p = _mm512_mul_ps(p, v);
    __m512 q = _mm512_fmadd_ps(V(-1.45660718464996e-05f), w, V(-2.13374055278905e-04f));
    q = _mm512_fmadd_ps(q, w, V(-1.68282697438203e-03f));
    q = _mm512_fmadd_ps(q, w, V(-7.37332916720468e-03f));
    q = _mm512_fmadd_ps(q, w, V(-1.42647390514189e-02f));
    return quotient(p, q);
}

/* 0.5 v (1 + erf(v / sqrt 2)); below GELU_TAIL, where 1 + erf cancels, 0.5 v erfc(-v / sqrt 2)
   in double per element (rare: ~2% of N(0, 1) inputs). */
static inline __m512 gelu_erf_v(__m512 v) {
    __m512 e = erf_v(_mm512_mul_ps(v, V(0.70710678118654752440f)));
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(V(0.5f), v), _mm512_add_ps(V(1.0f), e));
    __mmask16 tail = _mm512_cmp_ps_mask(v, V(GELU_TAIL), _CMP_LT_OQ);
    if (tail) {
        float vs[16], ys[16];
        _mm512_storeu_ps(vs, v);
        _mm512_storeu_ps(ys, y);
        for (int k = 0; k < 16; k++)
            if (tail >> k & 1) ys[k] = (float)(0.5 * vs[k] * erfc(-(double)vs[k] * SQRT1_2_D));
        y = _mm512_loadu_ps(ys);
    }
    return y;
}

/* v sigmoid(2u) == 0.5 v (1 + tanh(u)), u = sqrt(2/pi) (v + 0.044715 v^3): no cancellation. */
static inline __m512 gelu_tanh_v(__m512 v) {
    __m512 c = _mm512_mul_ps(_mm512_mul_ps(v, v), V(0.044715f));
    __m512 u = _mm512_mul_ps(_mm512_fmadd_ps(c, v, v), V(2.0f * 0.79788456080286535588f));
    return _mm512_mul_ps(v, sigmoid_v(u));
}

/* v * clamp(v / 6 + 1/2, 0, 1); max(0, t) / min(1, t) keep a NaN t (second operand). */
static inline __m512 hard_swish_v(__m512 v) {
    __m512 t = _mm512_fmadd_ps(v, V(1.0f / 6.0f), V(0.5f));
    t = _mm512_min_ps(V(1.0f), _mm512_max_ps(_mm512_setzero_ps(), t));
    return _mm512_mul_ps(v, t);
}

/* Whole vectors, then one masked vector for the rest.  (Unrolling does not help: iterations
   are independent, and the out-of-order core already overlaps them.) */
#define MAP_F32V(NAME, FN)                                                                         \
    void NAME(const float *x, float *y, int64_t n) {                                               \
        int64_t i = 0;                                                                             \
        for (; i + 16 <= n; i += 16)                                                               \
            _mm512_storeu_ps(y + i, FN(_mm512_loadu_ps(x + i)));                                   \
        if (i < n) {                                                                               \
            __mmask16 k = mdl__mask16(n - i);                                                        \
            _mm512_mask_storeu_ps(y + i, k, FN(_mm512_maskz_loadu_ps(k, x + i)));                  \
        }                                                                                          \
    }

MAP_F32V(mdl__sigmoid_f32v_avx512, sigmoid_v)
MAP_F32V(mdl__tanh_f32v_avx512, tanh_v)
MAP_F32V(mdl__gelu_erf_f32v_avx512, gelu_erf_v)
MAP_F32V(mdl__gelu_tanh_f32v_avx512, gelu_tanh_v)
MAP_F32V(mdl__hard_swish_f32v_avx512, hard_swish_v)

/* exp(x - m) of one vector (lanes outside k give 0), stored to out if given. */
static inline __m512 exp_shift_v(const float *x, __m512 m, float *out, __mmask16 k) {
    __m512 e = _mm512_maskz_mov_ps(k, exp_nonpos(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x), m)));
    if (out) _mm512_mask_storeu_ps(out, k, e);
    return e;
}

void mdl__exp_shift_avx512(const float *x, float m, const float *mrow, float *out, double *rsum,
                           float *esum, int64_t n) {
    if (mrow) {
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : mdl__mask16(n - i);
            __m512 e =
                exp_shift_v(x + i, _mm512_maskz_loadu_ps(k, mrow + i), out ? out + i : NULL, k);
            _mm512_mask_storeu_ps(esum + i, k,
                                  _mm512_add_ps(_mm512_maskz_loadu_ps(k, esum + i), e));
        }
        return;
    }
    /* The row sum in double lanes: exact enough for any row length, and cheap here. */
    __m512 mv = _mm512_set1_ps(m);
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : mdl__mask16(n - i);
        __m512 e = exp_shift_v(x + i, mv, out ? out + i : NULL, k);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    *rsum += _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}
