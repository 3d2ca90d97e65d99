/* Block-sparse int8 product (sparse.h, mdl__qspmm), AVX2: two blocks of a row group at a time,
   their 8 + 8 weights interleaved as int16 pairs and multiplied with a pair of input values by
   vpmaddwd (exact: int8 x int8 products summed in int32), for 4 input rows at once (the weights
   widened once per pair).  The sums equal the reference's; the epilogue is mdl__requant itself. */
#include "../int8.h"
#include "../sparse.h"
#include "int8_avx2.h"

#include <immintrin.h>
#include <string.h>

#define QMR 4

/* 8 int32 lanes in [-128, 127] as 8 bytes. */
static inline int64_t narrow8(__m256i v) {
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return _mm_cvtsi128_si64(_mm_packs_epi16(w, w));
}

/* Blocks j and j + 1 (16 contiguous bytes): int16 pairs (w_j[r], w_j+1[r]), r = 0 .. 7. */
static inline __m256i pair_weights(const int8_t *w) {
    __m128i v = _mm_loadu_si128((const __m128i *)w);
    return _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(v, _mm_srli_si128(v, 8)));
}

/* A last block alone: pairs (w_j[r], 0). */
static inline __m256i single_weights(const int8_t *w) {
    __m128i v = _mm_loadl_epi64((const __m128i *)w);
    return _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(v, _mm_setzero_si128()));
}

static inline __m256i pair_inputs(int8_t a0, int8_t a1) {
    return _mm256_set1_epi32((int32_t)((uint32_t)(uint16_t)a0 | (uint32_t)(uint16_t)a1 << 16));
}

/* Rows m0 .. m0 + R - 1 against every row group (R a constant after inlining). */
static inline __attribute__((always_inline)) void tile(const mdl__qgemm_packed *p, const mdl__bsr *W,
                                                       const int R, const int8_t *A, int64_t lda,
                                                       int8_t *C, int64_t ldc) {
    const int64_t groups = mdl__bsr_groups(W->N);
    for (int64_t g = 0; g < groups; g++) {
        __m256i acc[QMR];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) acc[i] = _mm256_setzero_si256();
        int32_t j = W->ptr[g];
        const int32_t e = W->ptr[g + 1];
        for (; j + 1 < e; j += 2) {
            const __m256i w = pair_weights(W->val8 + (int64_t)j * MDL_SPARSE_BN);
            const int32_t c0 = W->col[j], c1 = W->col[j + 1];
#pragma GCC unroll 4
            for (int i = 0; i < R; i++)
                acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(w, pair_inputs(A[i * lda + c0], A[i * lda + c1])));
        }
        if (j < e) {
            const __m256i w = single_weights(W->val8 + (int64_t)j * MDL_SPARSE_BN);
            const int32_t c0 = W->col[j];
#pragma GCC unroll 4
            for (int i = 0; i < R; i++)
                acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(w, pair_inputs(A[i * lda + c0], 0)));
        }
        /* the epilogue: mdl__requant lane-wise (requant8; the record's constants are padded
           with zeros to 16 channels, so a last partial group reads inside them) */
        const int64_t n0 = g * MDL_SPARSE_BN, nr = W->N - n0 < MDL_SPARSE_BN ? W->N - n0 : MDL_SPARSE_BN;
        const __m256i mult = _mm256_loadu_si256((const __m256i *)(p->mult + n0));
        const __m256i shift = _mm256_loadu_si256((const __m256i *)(p->shift + n0));
        const __m256i bias = _mm256_loadu_si256((const __m256i *)(p->bias + n0));
        const __m256i zy = _mm256_set1_epi32(p->zy), lo = _mm256_set1_epi32(p->lo), hi = _mm256_set1_epi32(p->hi);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            int64_t v = narrow8(requant8(_mm256_add_epi32(acc[i], bias), mult, shift, zy, lo, hi));
            if (nr == MDL_SPARSE_BN) memcpy(C + i * ldc + n0, &v, 8);
            else memcpy(C + i * ldc + n0, &v, (size_t)nr);
        }
    }
}

void mdl__qspmm_avx2(const mdl__qgemm_packed *p, const mdl__bsr *W, int64_t M, const int8_t *A,
                     int64_t lda, int8_t *C, int64_t ldc) {
    int64_t m = 0;
    for (; m + QMR <= M; m += QMR) tile(p, W, QMR, A + m * lda, lda, C + m * ldc, ldc);
    for (; m < M; m++) tile(p, W, 1, A + m * lda, lda, C + m * ldc, ldc);
}
