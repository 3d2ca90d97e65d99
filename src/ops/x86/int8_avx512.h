/* Lane-wise int8 helpers shared by the AVX-512 int8 kernels (gemm_int8_avx512.c,
   gemm_int8_amx_avx512.c): included only by files built with the AVX-512 and VNNI flags. */
#ifndef MDL_OPS_X86_INT8_AVX512_H
#define MDL_OPS_X86_INT8_AVX512_H

#include "int8_x86.h"
#include "simd.h"

#include <stdbool.h>
#include <string.h>

/* mdl__requant on 16 lanes: x << left, the saturating rounding doubling high multiply as
   (x * mult + 2^30) >> 31 (equal to it for mult >= 0, the only multipliers packed: see
   mdl__srdhm's rounding, which this reproduces for both signs), then the rounding right shift
   (mdl__rdivpot), zero point and clamp. */
INLINE __m512i requant16(__m512i acc, __m512i mult, __m512i shift, __m512i zy, __m512i lo,
                         __m512i hi) {
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    const __m512i left = _mm512_max_epi32(shift, zero);
    const __m512i right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
    const __m512i x = _mm512_sllv_epi32(acc, left);
    const __m512i nudge = _mm512_set1_epi64((int64_t)1 << 30);
    __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(x, mult), nudge);
    __m512i po = _mm512_add_epi64(
        _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(mult, 32)), nudge);
    /* bits 31..62 of each product: the low dword of pe >> 31, the high dword of po << 1 */
    __m512i h =
        _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 31), _mm512_slli_epi64(po, 1));
    const __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
    const __m512i rem = _mm512_and_si512(h, mask);
    const __m512i thr = _mm512_sub_epi32(_mm512_srli_epi32(mask, 1), _mm512_srai_epi32(h, 31));
    __m512i r = _mm512_srav_epi32(h, right);
    r = _mm512_mask_add_epi32(r, _mm512_cmpgt_epi32_mask(rem, thr), r, one);
    r = _mm512_add_epi32(r, zy);
    return _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
}

/* requant16 in fewer operations (its result to be stored with saturation: vpmovsdb), for channels with a right shift e = -shift in [1, 23] (or a
   zero multiplier: any e gives 0): the usual case, checked per vector of channels (rq16_setup).
   The two roundings fold into one shift of the 64-bit product P = acc * mult:
     srdhm = floor((P + 2^30) / 2^31) (for mult >= 0, see requant16), and
     rdivpot(h, e) = floor((h + 2^(e-1) - [h < 0]) / 2^e) (ties away from zero), where
     h < 0 <=> P < -2^30; nested floors of divisions by 2^a and 2^b are one floor by 2^(a+b), so
     T + zy = floor((P + 2^30 + 2^(30+e) - [P < -2^30] 2^31 + zy 2^(31+e)) / 2^(31+e))
   exactly (|P| < 2^62 and the constant below 2^62 for e <= 23: no 64-bit overflow).  The odd
   lanes shift by 32 fewer bits and keep the high dword.  4 of its 13 operations (the multiplies
   and shifts) need port 0, which vpdpbusd also needs, against 8 of requant16's 18. */
typedef struct rq16 {
    __m512i mult, mo;   /* multipliers: even lanes as loaded, odd lanes moved down */
    __m512i be, bo;     /* the constant above, per even / odd lane (64-bit) */
    __m512i se, so;     /* shift counts: 31 + e (even), e - 1 (odd) */
    __m512i lo, hi;
    bool ok;    /* false: these channels take requant16 */
    bool clamp; /* false: [lo, hi] is all of int8, which the callers' saturating store gives */
} rq16;

/* The constants for 16 channels; false if one of them needs requant16 (a left shift, no
   shift, or e > 23). */
INLINE bool rq16_setup(__m512i mult, __m512i shift, int32_t zy, __m512i lo, __m512i hi, rq16 *q) {
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i e = _mm512_sub_epi32(_mm512_setzero_si512(), shift);
    const __mmask16 bad = _mm512_mask_cmpgt_epu32_mask(_mm512_test_epi32_mask(mult, mult),
                                                       _mm512_sub_epi32(e, one),
                                                       _mm512_set1_epi32(22));
    q->ok = !bad;
    if (bad) return false;
    const __m512i e1 = _mm512_max_epi32(e, one); /* zero multipliers: any e in range */
    const __m512i ee = _mm512_and_si512(e1, _mm512_set1_epi64(0xFFFFFFFF));
    const __m512i eo = _mm512_srli_epi64(e1, 32);
    const __m512i c30 = _mm512_set1_epi64((int64_t)1 << 30), z = _mm512_set1_epi64(zy);
    const __m512i one64 = _mm512_set1_epi64(1), k30 = _mm512_set1_epi64(30);
    q->mult = mult;
    q->mo = _mm512_srli_epi64(mult, 32);
    q->se = _mm512_add_epi64(ee, _mm512_set1_epi64(31));
    q->so = _mm512_sub_epi64(eo, one64);
    q->be = _mm512_add_epi64(_mm512_add_epi64(c30, _mm512_sllv_epi64(one64, _mm512_add_epi64(ee, k30))),
                             _mm512_sllv_epi64(z, q->se));
    q->bo = _mm512_add_epi64(_mm512_add_epi64(c30, _mm512_sllv_epi64(one64, _mm512_add_epi64(eo, k30))),
                             _mm512_sllv_epi64(z, _mm512_add_epi64(eo, _mm512_set1_epi64(31))));
    q->lo = lo;
    q->hi = hi;
    q->clamp = (_mm512_cmpneq_epi32_mask(lo, _mm512_set1_epi32(-128)) |
                _mm512_cmpneq_epi32_mask(hi, _mm512_set1_epi32(127))) != 0;
    return true;
}

/* clamp: q->clamp, a constant where the callers branch on it outside their loops */
INLINE __m512i requant16x(__m512i acc, const rq16 *q, const bool clamp) {
    const __m512i lim = _mm512_set1_epi64(-((int64_t)1 << 30)), c31 = _mm512_set1_epi64((int64_t)1 << 31);
    __m512i pe = _mm512_mul_epi32(acc, q->mult);
    __m512i po = _mm512_mul_epi32(_mm512_shuffle_epi32(acc, _MM_PERM_DDBB), q->mo);
    const __mmask8 ne = _mm512_cmplt_epi64_mask(pe, lim), no = _mm512_cmplt_epi64_mask(po, lim);
    pe = _mm512_add_epi64(pe, q->be);
    po = _mm512_add_epi64(po, q->bo);
    pe = _mm512_srav_epi64(_mm512_mask_sub_epi64(pe, ne, pe, c31), q->se);
    po = _mm512_srav_epi64(_mm512_mask_sub_epi64(po, no, po, c31), q->so);
    const __m512i r = _mm512_mask_blend_epi32(0xAAAA, pe, po);
    return clamp ? _mm512_min_epi32(_mm512_max_epi32(r, q->lo), q->hi) : r;
}

/* acc += u8(u) . s8(s), in place.  GCC 12 copies the intrinsic's accumulator to another
   register and back around every vpdpbusd in a loop (two moves per instruction in the GEMM
   tile's k loop); the "+v" constraint rules that out. */
#define DPBUSD(acc, u, s) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s))

static inline int32_t load4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* sum_k a[k] */
static inline int32_t row_sum(const int8_t *a, int64_t K) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i s = _mm512_setzero_si512();
    int64_t k = 0;
    for (; k + 64 <= K; k += 64)
        DPBUSD(s, ones, _mm512_loadu_si512(a + k));
    if (k < K) {
        __mmask64 m = K - k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (K - k)) - 1);
        DPBUSD(s, ones, _mm512_maskz_loadu_epi8(m, a + k));
    }
    return _mm512_reduce_add_epi32(s);
}

#endif
