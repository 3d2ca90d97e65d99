/* CONV2D with a short kernel row (mdl__qcs_args in int8_x86.h), AVX2: 8 output channels per
   vector, 4 output pixels at a time; the pair products by vpmaddwd are exact and summed in int32,
   the epilogue is requant8 (mdl__requant lane-wise).  Also the weights' packing, shared with the
   AVX-512 variant (plain C). */
#include "int8_avx2.h"
#include "int8_x86.h"

#include <immintrin.h>
#include <string.h>

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

size_t mdl__qcs_pack_bytes(int64_t KH, int64_t KW, int64_t C, int64_t OC) {
    const uint64_t b = (uint64_t)KH * (uint64_t)((KW * C + 1) / 2) * (uint64_t)round16(OC) * 4;
    return (size_t)((b + 63) / 64 * 64);
}

void mdl__qcs_pack(const int8_t *w, int64_t KH, int64_t KW, int64_t C, int64_t OC, void *out) {
    const int64_t run = KW * C, P = (run + 1) / 2, ocpad = round16(OC);
    int32_t *o = out;
    memset(out, 0, mdl__qcs_pack_bytes(KH, KW, C, OC));
    for (int64_t kh = 0; kh < KH; kh++)
        for (int64_t q = 0; q < P; q++)
            for (int64_t oc = 0; oc < OC; oc++) {
                /* row value t of kernel row kh is HWIO element ((kh * KW * C) + t, oc) */
                const int64_t t = 2 * q;
                const int8_t w0 = w[(kh * run + t) * OC + oc];
                const int8_t w1 = t + 1 < run ? w[(kh * run + t + 1) * OC + oc] : 0;
                o[(kh * P + q) * ocpad + oc] = (int32_t)((uint32_t)(uint16_t)w0 | (uint32_t)(uint16_t)w1 << 16);
            }
}

static inline int32_t pair_at(const int16_t *x) {
    int32_t v;
    memcpy(&v, x, 4);
    return v;
}

/* R output pixels (a constant after inlining) starting at column ow, channels ocb .. ocb + 7. */
static inline __attribute__((always_inline)) void pixels(const mdl__qcs_args *a, const int R,
                                                         const int16_t *x0, int64_t ocb,
                                                         __m256i bias, __m256i mult,
                                                         __m256i shift, int8_t *y) {
    __m256i acc[4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) acc[i] = bias;
    const int64_t xs = a->sw * a->C;
    for (int64_t kh = 0; kh < a->KH; kh++) {
        const int16_t *xr = x0 + kh * a->dh * a->rs;
        const int32_t *wr = a->w + kh * a->P * a->ocpad + ocb;
        for (int64_t q = 0; q < a->P; q++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(wr + q * a->ocpad));
#pragma GCC unroll 4
            for (int i = 0; i < R; i++)
                acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(w, _mm256_set1_epi32(pair_at(xr + i * xs + 2 * q))));
        }
    }
    const __m256i zy = _mm256_set1_epi32(a->p->zy), lo = _mm256_set1_epi32(a->p->lo),
                  hi = _mm256_set1_epi32(a->p->hi);
    const int64_t nr = a->OC - ocb < 8 ? a->OC - ocb : 8;
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        const __m256i r = requant8(acc[i], mult, shift, zy, lo, hi);
        __m128i v = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        int64_t b = _mm_cvtsi128_si64(_mm_packs_epi16(v, v));
        memcpy(y + i * a->OC, &b, (size_t)nr);
    }
}

void mdl__qcs_avx2(const mdl__qcs_args *a) {
    const mdl__qgemm_packed *p = a->p;
    for (int64_t ocb = 0; ocb < a->OC; ocb += 8) {
        /* the record's constants are padded with zeros to 16 channels */
        const __m256i mult = _mm256_loadu_si256((const __m256i *)(p->mult + ocb));
        const __m256i shift = _mm256_loadu_si256((const __m256i *)(p->shift + ocb));
        const __m256i bias = _mm256_loadu_si256((const __m256i *)(p->bias + ocb));
        for (int64_t oh = 0; oh < a->OH; oh++) {
            const int16_t *xr = a->x + oh * a->sh * a->rs;
            int8_t *yr = a->y + oh * a->OW * a->OC + ocb;
            int64_t ow = 0;
            for (; ow + 4 <= a->OW; ow += 4)
                pixels(a, 4, xr + ow * a->sw * a->C, ocb, bias, mult, shift, yr + ow * a->OC);
            for (; ow < a->OW; ow++)
                pixels(a, 1, xr + ow * a->sw * a->C, ocb, bias, mult, shift, yr + ow * a->OC);
        }
    }
}
