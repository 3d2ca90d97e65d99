/* AVX2 forms of the int8 elementwise kernels' inner loops (built with -mavx2; called when
 * mdl__cpu_level() >= MDL_CPU_AVX2).  Each is a lane-wise transcription of the reference loop in
 * the portable kernel (quantize.c, binary_int8.c, pool_int8.c) and gives identical bytes:
 *   quantize  IEEE division as the scalar x / scale, NaN -> 0 before the clamp (the zero point),
 *             the clamp to [qmin - zp, qmax - zp] before rounding (same result as saturating
 *             after: rounding is monotonic and the bounds are integers), round half to even with
 *             an explicit rounding mode (vroundps: independent of MXCSR, like
 *             mdl__round_half_even);
 *   add/sub   mdl__qmul_apply as requant8 with zero point 0 and no clamp, then mdl__q8_requant;
 *   mul       (qa - za) (qb - zb) exact in int32, then mdl__q8_requant;
 *   max       vpmaxsb. */
#include "int8_avx2.h"
#include "int8_x86.h"

#include <string.h>

/* 32 results of 4 x 8 int32 lanes already within the 8-bit range, in order. */
INLINE __m256i pack32(__m256i q0, __m256i q1, __m256i q2, __m256i q3, bool u8) {
    const __m256i a = _mm256_packs_epi32(q0, q1), b = _mm256_packs_epi32(q2, q3);
    const __m256i v = u8 ? _mm256_packus_epi16(a, b) : _mm256_packs_epi16(a, b);
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

INLINE __m256i quant8(const float *x, __m256 s, __m256 lo, __m256 hi, __m256i z) {
    __m256 r = _mm256_div_ps(_mm256_loadu_ps(x), s);
    r = _mm256_andnot_ps(_mm256_cmp_ps(r, r, _CMP_UNORD_Q), r); /* NaN -> 0 */
    r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
    r = _mm256_round_ps(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_add_epi32(_mm256_cvttps_epi32(r), z);
}

static void quantize_block(const float *x, int64_t n, float scale, int32_t zp, int32_t qmin,
                           int32_t qmax, uint8_t *out) {
    const __m256 s = _mm256_set1_ps(scale);
    const __m256 lo = _mm256_set1_ps((float)(qmin - zp)), hi = _mm256_set1_ps((float)(qmax - zp));
    const __m256i z = _mm256_set1_epi32(zp);
    const bool u8 = qmin == 0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v = pack32(quant8(x + i, s, lo, hi, z), quant8(x + i + 8, s, lo, hi, z),
                           quant8(x + i + 16, s, lo, hi, z), quant8(x + i + 24, s, lo, hi, z), u8);
        _mm256_storeu_si256((__m256i *)(out + i), v);
    }
    if (i < n) {
        float t[32] = {0};
        uint8_t o[32];
        memcpy(t, x + i, sizeof(float) * (size_t)(n - i));
        __m256i v = pack32(quant8(t, s, lo, hi, z), quant8(t + 8, s, lo, hi, z),
                           quant8(t + 16, s, lo, hi, z), quant8(t + 24, s, lo, hi, z), u8);
        _mm256_storeu_si256((__m256i *)o, v);
        memcpy(out + i, o, (size_t)(n - i));
    }
}

void mdl__quantize_avx2(const float *x, int64_t n, float scale, int32_t zero_point, int32_t qmin,
                        int32_t qmax, void *out) {
    quantize_block(x, n, scale, zero_point, qmin, qmax, out);
}

/* mdl__qmul_apply(x, m) on 8 lanes (m.mult >= 0). */
INLINE __m256i qmul8(__m256i x, __m256i mult, __m256i shift) {
    return requant8(x, mult, shift, _mm256_setzero_si256(), _mm256_set1_epi32(INT32_MIN),
                    _mm256_set1_epi32(INT32_MAX));
}

INLINE __m256i add8(const int8_t *a, const int8_t *b, const mdl__q8_add_args *p, bool sub) {
    const __m256i xa = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)a));
    const __m256i xb = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)b));
    const __m256i sa = _mm256_slli_epi32(_mm256_sub_epi32(xa, _mm256_set1_epi32(p->za)), p->left_shift);
    const __m256i sb = _mm256_slli_epi32(_mm256_sub_epi32(xb, _mm256_set1_epi32(p->zb)), p->left_shift);
    const __m256i ra = qmul8(sa, _mm256_set1_epi32(p->ma.mult), _mm256_set1_epi32(p->ma.shift));
    const __m256i rb = qmul8(sb, _mm256_set1_epi32(p->mb.mult), _mm256_set1_epi32(p->mb.shift));
    __m256i acc = sub ? _mm256_sub_epi32(ra, rb) : _mm256_add_epi32(ra, rb);
    const __m256i lim = _mm256_set1_epi32(p->lim);
    acc = _mm256_min_epi32(_mm256_max_epi32(acc, _mm256_sub_epi32(_mm256_setzero_si256(), lim)), lim);
    return requant8(acc, _mm256_set1_epi32(p->mo.mult), _mm256_set1_epi32(p->mo.shift),
                    _mm256_set1_epi32(p->zy), _mm256_set1_epi32(p->lo), _mm256_set1_epi32(p->hi));
}

void mdl__add_q8_avx2(const int8_t *a, const int8_t *b, int8_t *o, int64_t n,
                      const mdl__q8_add_args *p, bool sub) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v = pack32(add8(a + i, b + i, p, sub), add8(a + i + 8, b + i + 8, p, sub),
                           add8(a + i + 16, b + i + 16, p, sub), add8(a + i + 24, b + i + 24, p, sub),
                           false);
        _mm256_storeu_si256((__m256i *)(o + i), v);
    }
    if (i < n) {
        int8_t ta[32] = {0}, tb[32] = {0}, to[32];
        memcpy(ta, a + i, (size_t)(n - i));
        memcpy(tb, b + i, (size_t)(n - i));
        __m256i v = pack32(add8(ta, tb, p, sub), add8(ta + 8, tb + 8, p, sub),
                           add8(ta + 16, tb + 16, p, sub), add8(ta + 24, tb + 24, p, sub), false);
        _mm256_storeu_si256((__m256i *)to, v);
        memcpy(o + i, to, (size_t)(n - i));
    }
}

INLINE __m256i mul8(const int8_t *a, const int8_t *b, const mdl__q8_add_args *p) {
    const __m256i xa = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)a));
    const __m256i xb = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)b));
    __m256i acc = _mm256_mullo_epi32(_mm256_sub_epi32(xa, _mm256_set1_epi32(p->za)),
                                     _mm256_sub_epi32(xb, _mm256_set1_epi32(p->zb)));
    const __m256i lim = _mm256_set1_epi32(p->lim);
    acc = _mm256_min_epi32(_mm256_max_epi32(acc, _mm256_sub_epi32(_mm256_setzero_si256(), lim)), lim);
    return requant8(acc, _mm256_set1_epi32(p->mo.mult), _mm256_set1_epi32(p->mo.shift),
                    _mm256_set1_epi32(p->zy), _mm256_set1_epi32(p->lo), _mm256_set1_epi32(p->hi));
}

void mdl__mul_q8_avx2(const int8_t *a, const int8_t *b, int8_t *o, int64_t n,
                      const mdl__q8_add_args *p) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v = pack32(mul8(a + i, b + i, p), mul8(a + i + 8, b + i + 8, p),
                           mul8(a + i + 16, b + i + 16, p), mul8(a + i + 24, b + i + 24, p), false);
        _mm256_storeu_si256((__m256i *)(o + i), v);
    }
    if (i < n) {
        int8_t ta[32] = {0}, tb[32] = {0}, to[32];
        memcpy(ta, a + i, (size_t)(n - i));
        memcpy(tb, b + i, (size_t)(n - i));
        __m256i v = pack32(mul8(ta, tb, p), mul8(ta + 8, tb + 8, p), mul8(ta + 16, tb + 16, p),
                           mul8(ta + 24, tb + 24, p), false);
        _mm256_storeu_si256((__m256i *)to, v);
        memcpy(o + i, to, (size_t)(n - i));
    }
}

void mdl__max_q8_avx2(int8_t *o, const int8_t *x, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        _mm256_storeu_si256((__m256i *)(o + i),
                            _mm256_max_epi8(_mm256_loadu_si256((const __m256i *)(o + i)),
                                            _mm256_loadu_si256((const __m256i *)(x + i))));
    for (; i < n; i++)
        o[i] = x[i] > o[i] ? x[i] : o[i];
}

void mdl__max_window_q8_avx2(const int8_t *xn, int64_t W, int64_t C, int64_t h0, int64_t h1,
                             int64_t w0, int64_t w1, int8_t *o) {
    int64_t c = 0;
    for (; c + 32 <= C; c += 32) {
        __m256i m = _mm256_set1_epi8((char)-128);
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t iw = w0; iw < w1; iw++)
                m = _mm256_max_epi8(m, _mm256_loadu_si256((const __m256i *)(xn + (ih * W + iw) * C + c)));
        _mm256_storeu_si256((__m256i *)(o + c), m);
    }
    for (; c + 16 <= C; c += 16) {
        __m128i m = _mm_set1_epi8((char)-128);
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t iw = w0; iw < w1; iw++)
                m = _mm_max_epi8(m, _mm_loadu_si128((const __m128i *)(xn + (ih * W + iw) * C + c)));
        _mm_storeu_si128((__m128i *)(o + c), m);
    }
    for (; c < C; c++) {
        int8_t m = -128;
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t iw = w0; iw < w1; iw++) {
                const int8_t v = xn[(ih * W + iw) * C + c];
                m = v > m ? v : m;
            }
        o[c] = m;
    }
}
