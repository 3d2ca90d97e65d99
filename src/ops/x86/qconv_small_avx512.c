/* CONV2D with a short kernel row (mdl__qcs_args in int8_x86.h), AVX-512 VNNI: 16 output channels
   per vector, 4 output pixels at a time; exact int16 pair products summed in int32 by vpdpwssd,
   the epilogue requant16x (or requant16 for the channels it does not take; both are mdl__requant
   lane-wise), a masked saturating store for a last partial block.  (AVX-512 without VNNI takes
   the AVX2 variant.) */
#include "int8_avx512.h"

#include <immintrin.h>
#include <string.h>

static inline int32_t pair_at(const int16_t *x) {
    int32_t v;
    memcpy(&v, x, 4);
    return v;
}

static inline __attribute__((always_inline)) void pixels(const mdl__qcs_args *a, const int R,
                                                         const int16_t *x0,
                                                         int64_t ocb, __m512i bias, const rq16 *rq,
                                                         __m512i mult, __m512i shift, __mmask16 m,
                                                         int8_t *y) {
    __m512i acc[4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) acc[i] = bias;
    const int64_t xs = a->sw * a->C;
    for (int64_t kh = 0; kh < a->KH; kh++) {
        const int16_t *xr = x0 + kh * a->dh * a->rs;
        const int32_t *wr = a->w + kh * a->P * a->ocpad + ocb;
        for (int64_t q = 0; q < a->P; q++) {
            const __m512i w = _mm512_loadu_si512((const void *)(wr + q * a->ocpad));
#pragma GCC unroll 4
            for (int i = 0; i < R; i++)
                acc[i] = _mm512_dpwssd_epi32(acc[i], w, _mm512_set1_epi32(pair_at(xr + i * xs + 2 * q)));
        }
    }
    const __m512i zy = _mm512_set1_epi32(a->p->zy), lo = _mm512_set1_epi32(a->p->lo),
                  hi = _mm512_set1_epi32(a->p->hi);
    if (rq->ok && !rq->clamp) {
#pragma GCC unroll 4
        for (int i = 0; i < R; i++)
            _mm_mask_storeu_epi8(y + i * a->OC, m, _mm512_cvtsepi32_epi8(requant16x(acc[i], rq, false)));
    } else if (rq->ok) {
#pragma GCC unroll 4
        for (int i = 0; i < R; i++)
            _mm_mask_storeu_epi8(y + i * a->OC, m, _mm512_cvtsepi32_epi8(requant16x(acc[i], rq, true)));
    } else {
#pragma GCC unroll 4
        for (int i = 0; i < R; i++)
            _mm_mask_storeu_epi8(y + i * a->OC, m,
                                 _mm512_cvtsepi32_epi8(requant16(acc[i], mult, shift, zy, lo, hi)));
    }
}

void mdl__qcs_vnni(const mdl__qcs_args *a) {
    const mdl__qgemm_packed *p = a->p;
    for (int64_t ocb = 0; ocb < a->OC; ocb += 16) {
        /* the record's constants are padded with zeros to 16 channels */
        const __m512i mult = _mm512_loadu_si512((const void *)(p->mult + ocb));
        const __m512i shift = _mm512_loadu_si512((const void *)(p->shift + ocb));
        const __m512i bias = _mm512_loadu_si512((const void *)(p->bias + ocb));
        const __mmask16 m = a->OC - ocb >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (a->OC - ocb)) - 1);
        rq16 q;
        rq16_setup(mult, shift, p->zy, _mm512_set1_epi32(p->lo), _mm512_set1_epi32(p->hi), &q);
        for (int64_t oh = 0; oh < a->OH; oh++) {
            const int16_t *xr = a->x + oh * a->sh * a->rs;
            int8_t *yr = a->y + oh * a->OW * a->OC + ocb;
            int64_t ow = 0;
            for (; ow + 4 <= a->OW; ow += 4)
                pixels(a, 4, xr + ow * a->sw * a->C, ocb, bias, &q, mult, shift, m, yr + ow * a->OC);
            for (; ow < a->OW; ow++)
                pixels(a, 1, xr + ow * a->sw * a->C, ocb, bias, &q, mult, shift, m, yr + ow * a->OC);
        }
    }
}
