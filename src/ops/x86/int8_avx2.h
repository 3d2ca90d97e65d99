/* Lane-wise int8 helpers shared by the AVX2 int8 kernels (gemm_int8_avx2.c, q8_elem_avx2.c):
   included only by files built with -mavx2. */
#ifndef MDL_OPS_X86_INT8_AVX2_H
#define MDL_OPS_X86_INT8_AVX2_H

#include "simd.h"

/* mdl__requant on 8 lanes (see requant16 in gemm_int8_avx512.c for the derivation): multipliers
   >= 0, any shift in [-31, 30]. */
INLINE __m256i requant8(__m256i acc, __m256i mult, __m256i shift, __m256i zy, __m256i lo,
                        __m256i hi) {
    const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
    const __m256i left = _mm256_max_epi32(shift, zero);
    const __m256i right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
    const __m256i x = _mm256_sllv_epi32(acc, left);
    const __m256i nudge = _mm256_set1_epi64x((int64_t)1 << 30);
    __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(x, mult), nudge);
    __m256i po = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(mult, 32)), nudge);
    __m256i h = _mm256_blend_epi32(_mm256_srli_epi64(pe, 31), _mm256_slli_epi64(po, 1), 0xAA);
    const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    const __m256i rem = _mm256_and_si256(h, mask);
    const __m256i thr = _mm256_sub_epi32(_mm256_srli_epi32(mask, 1), _mm256_srai_epi32(h, 31));
    __m256i r = _mm256_srav_epi32(h, right);
    r = _mm256_sub_epi32(r, _mm256_cmpgt_epi32(rem, thr)); /* true = -1 */
    r = _mm256_add_epi32(r, zy);
    return _mm256_min_epi32(_mm256_max_epi32(r, lo), hi);
}

#endif
