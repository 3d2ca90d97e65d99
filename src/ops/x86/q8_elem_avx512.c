/* AVX-512 form of the int8 ADD / SUB inner loop (built with the AVX-512 flags; called when
 * mdl__cpu_level() >= MDL_CPU_AVX512): binary_int8.c's add_one on 16 lanes, identical bytes.
 *
 * add_one is three fixed-point multiplies: a' = (qa - za) 2^20 * ma, b' likewise, and the sum's
 * requantization by mo.  Each takes the cheapest exact form its multiplier allows, decided once
 * per call:
 *   - ma = 1/2 exactly (mult 2^30, shift 0: the input with the larger scale always has it):
 *     srdhm(d 2^20, 2^30) = d 2^19 with no rounding, so a shift;
 *   - a right shift e in [1, 23] (or a zero multiplier): requant16x, one 64-bit product per lane
 *     and one shift (int8_avx512.h);
 *   - anything else: requant16, the literal transcription of mdl__requant.
 * The sum is clamped to +-lim first where mo shifts left (mdl__q8_requant). */
#include "int8_avx512.h"

/* How one multiplier is applied (see above). */
typedef struct qm16 {
    int kind; /* 0 shift by 19 (ma = 1/2), 1 requant16x, 2 requant16 */
    rq16 q;
    __m512i mult, shift, zy, lo, hi;
} qm16;

static void qm16_setup(mdl__qmul m, int32_t zy, int32_t lo, int32_t hi, qm16 *s) {
    s->mult = _mm512_set1_epi32(m.mult);
    s->shift = _mm512_set1_epi32(m.shift);
    s->zy = _mm512_set1_epi32(zy);
    s->lo = _mm512_set1_epi32(lo);
    s->hi = _mm512_set1_epi32(hi);
    if (m.mult == (1 << 30) && m.shift == 0 && zy == 0) s->kind = 0;
    else s->kind = rq16_setup(s->mult, s->shift, zy, s->lo, s->hi, &s->q) ? 1 : 2;
}

/* qmul_apply(d << 20, m) for d = q - z in [-255, 255] (zero point 0, no clamp: |result| < 2^28) */
INLINE __m512i scale_in(__m512i d, const qm16 *s) {
    if (s->kind == 0) return _mm512_slli_epi32(d, 19);
    const __m512i x = _mm512_slli_epi32(d, 20);
    if (s->kind == 1) return requant16x(x, &s->q, false);
    return requant16(x, s->mult, s->shift, s->zy, s->lo, s->hi);
}

INLINE __m512i add16(__m128i qa, __m128i qb, const __m512i za, const __m512i zb, const qm16 *sa,
                     const qm16 *sb, const qm16 *so, const __m512i lim, const bool sub,
                     const bool clamp_sum) {
    const __m512i a = scale_in(_mm512_sub_epi32(_mm512_cvtepi8_epi32(qa), za), sa);
    const __m512i b = scale_in(_mm512_sub_epi32(_mm512_cvtepi8_epi32(qb), zb), sb);
    __m512i s = sub ? _mm512_sub_epi32(a, b) : _mm512_add_epi32(a, b);
    if (clamp_sum)
        s = _mm512_min_epi32(_mm512_max_epi32(s, _mm512_sub_epi32(_mm512_setzero_si512(), lim)), lim);
    if (so->kind == 1) return requant16x(s, &so->q, so->q.clamp);
    return requant16(s, so->mult, so->shift, so->zy, so->lo, so->hi);
}

INLINE void add_rows(const int8_t *a, const int8_t *b, int8_t *o, int64_t n,
                     const mdl__q8_add_args *p, const qm16 *sa, const qm16 *sb, const qm16 *so,
                     const bool sub, const bool clamp_sum) {
    const __m512i za = _mm512_set1_epi32(p->za), zb = _mm512_set1_epi32(p->zb);
    const __m512i lim = _mm512_set1_epi32(p->lim);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i v = add16(_mm_loadu_si128((const __m128i *)(a + i)),
                                _mm_loadu_si128((const __m128i *)(b + i)), za, zb, sa, sb, so,
                                lim, sub, clamp_sum);
        _mm512_mask_cvtsepi32_storeu_epi8(o + i, (__mmask16)0xFFFF, v);
    }
    if (i < n) {
        const __mmask16 m = mdl__mask16(n - i);
        const __m512i v = add16(_mm_maskz_loadu_epi8(m, a + i), _mm_maskz_loadu_epi8(m, b + i), za,
                                zb, sa, sb, so, lim, sub, clamp_sum);
        _mm512_mask_cvtsepi32_storeu_epi8(o + i, m, v);
    }
}

void mdl__add_q8_avx512(const int8_t *a, const int8_t *b, int8_t *o, int64_t n,
                        const mdl__q8_add_args *p, bool sub) {
    qm16 sa, sb, so;
    qm16_setup(p->ma, 0, INT32_MIN, INT32_MAX, &sa);
    qm16_setup(p->mb, 0, INT32_MIN, INT32_MAX, &sb);
    qm16_setup(p->mo, p->zy, p->lo, p->hi, &so);
    /* lim < INT32_MAX only where mo shifts left, i.e. requant16 */
    const bool clamp = p->lim != INT32_MAX;
    if (sub)
        add_rows(a, b, o, n, p, &sa, &sb, &so, true, clamp);
    else if (clamp)
        add_rows(a, b, o, n, p, &sa, &sb, &so, false, true);
    else
        add_rows(a, b, o, n, p, &sa, &sb, &so, false, false);
}
