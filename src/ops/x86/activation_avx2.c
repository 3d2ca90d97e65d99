/* AVX2 + FMA forms of the activation vector math (contract: activation_x86.h).
 *
 * The AVX-512 file's algorithms with 8 lanes (see there): Cephes' expf with 2^n built in the
 * exponent field, Cephes' tanhf, Eigen's rational erf, the portable code's selects for the
 * special values.  Tails use vmaskmovps loads and stores (masked lanes neither fault nor are
 * written). */
#include "activation_x86.h"
#include "simd.h"

#include <immintrin.h>
#include <math.h>

#define EXP_LO -87.33654f /* as in activation.c: below it exp() returns 0 */
#define GELU_TAIL -2.0f   /* as in activation.c */
#define SQRT1_2_D 0.70710678118654752440

#define V(c) _mm256_set1_ps(c)

static inline __m256 signbit_ps(void) { return _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN)); }

/* e^x for x <= 0 (larger x count as 0), exactly 0 below EXP_LO; NaN propagates. */
static inline __m256 exp_nonpos(__m256 x) {
    /* max/min return their second operand for a NaN first operand: NaN becomes EXP_LO here
       (keeping the conversion to int defined) and is restored at the end. */
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, V(EXP_LO)), _mm256_setzero_ps());
    __m256 nf = _mm256_round_ps(_mm256_mul_ps(xc, V(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(nf, V(0.693359375f), xc);
    r = _mm256_fmadd_ps(nf, V(2.12194440e-4f), r);
    __m256 q = _mm256_fmadd_ps(V(1.9875691500e-4f), r, V(1.3981999507e-3f));
    q = _mm256_fmadd_ps(q, r, V(8.3334519073e-3f));
    q = _mm256_fmadd_ps(q, r, V(4.1665795894e-2f));
    q = _mm256_fmadd_ps(q, r, V(1.6666665459e-1f));
    q = _mm256_fmadd_ps(q, r, V(5.0000001201e-1f));
    __m256 p = _mm256_add_ps(_mm256_fmadd_ps(q, _mm256_mul_ps(r, r), r), V(1.0f));
    /* 2^n in the exponent field; n >= -126, so it is a normal float. */
    __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(nf), _mm256_set1_epi32(127)), 23);
    __m256 t = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    t = _mm256_and_ps(_mm256_cmp_ps(x, V(EXP_LO), _CMP_GE_OQ), t);
    return _mm256_blendv_ps(t, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/* num / (1 + e), e = e^-|v|, num = 1 for v >= 0 and e otherwise.  A true division: vrcpps has
   only 12 bits, and one Newton step from there leaves 1 / 1 = 1 - 1 ulp (no exact saturation). */
static inline __m256 sigmoid_v(__m256 v) {
    __m256 e = exp_nonpos(_mm256_or_ps(v, signbit_ps()));
    __m256 num = _mm256_blendv_ps(e, V(1.0f), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GE_OQ));
    return _mm256_div_ps(num, _mm256_add_ps(V(1.0f), e));
}

/* Cephes tanhf; both parts get v's sign OR-ed in, so tanh(-0) = -0. */
static inline __m256 tanh_v(__m256 v) {
    __m256 sg = _mm256_and_ps(v, signbit_ps());
    __m256 a = _mm256_andnot_ps(signbit_ps(), v);
    __m256 z = exp_nonpos(_mm256_mul_ps(a, V(-2.0f)));
    __m256 big = _mm256_div_ps(_mm256_sub_ps(V(1.0f), z), _mm256_add_ps(V(1.0f), z));
    __m256 t = _mm256_mul_ps(v, v);
    __m256 q = _mm256_fmadd_ps(V(-5.70498872745e-3f), t, V(2.06390887954e-2f));
    q = _mm256_fmadd_ps(q, t, V(-5.37397155531e-2f));
    q = _mm256_fmadd_ps(q, t, V(1.33314422036e-1f));
    q = _mm256_fmadd_ps(q, t, V(-3.33332819422e-1f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(q, t), v, v);
    small = _mm256_or_ps(_mm256_andnot_ps(signbit_ps(), small), sg);
    big = _mm256_or_ps(big, sg);
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, V(0.625f), _CMP_LT_OQ));
}

/* Eigen's erf on [-4, 4]; a NaN argument comes out as erf(4) (callers multiply it back in). */
static inline __m256 erf_v(__m256 u) {
    __m256 v = _mm256_max_ps(_mm256_min_ps(u, V(4.0f)), V(-4.0f));
    __m256 w = _mm256_mul_ps(v, v);
    __m256 p = _mm256_fmadd_ps(V(-2.72614225801306e-10f), w, V(2.77068142495902e-08f));
    p = _mm256_fmadd_ps(p, w, V(-2.10102402082508e-06f));
    p = _mm256_fmadd_ps(p, w, V(-5.69250639462346e-05f));
    p = _mm256_fmadd_ps(p, w, V(-7.34990630326855e-04f));
    p = _mm256_fmadd_ps(p, w, V(-2.95459980854025e-03f));
    p = _mm256_fmadd_ps(p, w, V(-1.60960333262415e-02f));
    p = _mm256_mul_ps(p, v);
    __m256 q = _mm256_fmadd_ps(V(-1.45660718464996e-05f), w, V(-2.13374055278905e-04f));
    q = _mm256_fmadd_ps(q, w, V(-1.68282697438203e-03f));
    q = _mm256_fmadd_ps(q, w, V(-7.37332916720468e-03f));
    q = _mm256_fmadd_ps(q, w, V(-1.42647390514189e-02f));
    return _mm256_div_ps(p, q);
}

/* 0.5 v (1 + erf(v / sqrt 2)); lanes below GELU_TAIL redone as 0.5 v erfc(-v / sqrt 2) in
   double (see activation.c). */
static inline __m256 gelu_erf_v(__m256 v) {
    __m256 e = erf_v(_mm256_mul_ps(v, V(0.70710678118654752440f)));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(V(0.5f), v), _mm256_add_ps(V(1.0f), e));
    int tail = _mm256_movemask_ps(_mm256_cmp_ps(v, V(GELU_TAIL), _CMP_LT_OQ));
    if (tail) {
        float vs[8], ys[8];
        _mm256_storeu_ps(vs, v);
        _mm256_storeu_ps(ys, y);
        for (int k = 0; k < 8; k++)
            if (tail >> k & 1) ys[k] = (float)(0.5 * vs[k] * erfc(-(double)vs[k] * SQRT1_2_D));
        y = _mm256_loadu_ps(ys);
    }
    return y;
}

static inline __m256 gelu_tanh_v(__m256 v) {
    __m256 c = _mm256_mul_ps(_mm256_mul_ps(v, v), V(0.044715f));
    __m256 u = _mm256_mul_ps(_mm256_fmadd_ps(c, v, v), V(2.0f * 0.79788456080286535588f));
    return _mm256_mul_ps(v, sigmoid_v(u));
}

static inline __m256 hard_swish_v(__m256 v) {
    __m256 t = _mm256_fmadd_ps(v, V(1.0f / 6.0f), V(0.5f));
    t = _mm256_min_ps(V(1.0f), _mm256_max_ps(_mm256_setzero_ps(), t));
    return _mm256_mul_ps(v, t);
}

#define MAP_F32V(NAME, FN)                                                                         \
    void NAME(const float *x, float *y, int64_t n) {                                               \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= n; i += 8)                                                                 \
            _mm256_storeu_ps(y + i, FN(_mm256_loadu_ps(x + i)));                                   \
        if (i < n) {                                                                               \
            __m256i k = mdl__mask8(n - i);                                                          \
            _mm256_maskstore_ps(y + i, k, FN(_mm256_maskload_ps(x + i, k)));                       \
        }                                                                                          \
    }

MAP_F32V(mdl__sigmoid_f32v_avx2, sigmoid_v)
MAP_F32V(mdl__tanh_f32v_avx2, tanh_v)
MAP_F32V(mdl__gelu_erf_f32v_avx2, gelu_erf_v)
MAP_F32V(mdl__gelu_tanh_f32v_avx2, gelu_tanh_v)
MAP_F32V(mdl__hard_swish_f32v_avx2, hard_swish_v)

/* exp(x - m) of one vector (lanes outside k give 0), stored to out if given. */
static inline __m256 exp_shift_v(const float *x, __m256 m, float *out, __m256i k) {
    __m256 e = exp_nonpos(_mm256_sub_ps(_mm256_maskload_ps(x, k), m));
    e = _mm256_and_ps(_mm256_castsi256_ps(k), e);
    if (out) _mm256_maskstore_ps(out, k, e);
    return e;
}

void mdl__exp_shift_avx2(const float *x, float m, const float *mrow, float *out, double *rsum,
                         float *esum, int64_t n) {
    if (mrow) {
        for (int64_t i = 0; i < n; i += 8) {
            __m256i k = mdl__mask8(n - i >= 8 ? 8 : n - i);
            __m256 e = exp_shift_v(x + i, _mm256_maskload_ps(mrow + i, k), out ? out + i : NULL, k);
            _mm256_maskstore_ps(esum + i, k, _mm256_add_ps(_mm256_maskload_ps(esum + i, k), e));
        }
        return;
    }
    __m256 mv = _mm256_set1_ps(m);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (int64_t i = 0; i < n; i += 8) {
        __m256i k = mdl__mask8(n - i >= 8 ? 8 : n - i);
        __m256 e = exp_shift_v(x + i, mv, out ? out + i : NULL, k);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    __m256d s = _mm256_add_pd(s0, s1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    *rsum += _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}
