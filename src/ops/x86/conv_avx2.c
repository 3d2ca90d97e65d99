/* AVX2+FMA direct convolution over a padded NHWC image (contract in conv_x86.h): the implicit
 * GEMM of conv_avx512.c at half the width with 16 registers, tiles of R output pixels x NB
 * vectors of 8 output channels (6 x 2 or 12 x 1: 12 accumulators + weights + one broadcast).
 * Per chunk of weight rows, channel blocks (kc x 16 floats of the in-place HWIO weights) are
 * the outer loop; bias and clamp fused into the store. */
#include "conv_x86.h"
#include "simd.h"

#include <immintrin.h>

#define VL MDL_CONV_VL_AVX2
#define NBMAX MDL_CONV_NB_AVX2

/* R pixels (inputs at x + xo[r], outputs y, y + ys, ...) x NB vectors of the weight block wb (rows
   ws floats apart), starting from the bias, or from y when accum is set.  mlast masks the valid
   channels of the last vector, in loads (w is read in place: no padding past OC) and stores.  max(lo, v) / min(hi, v)
   with the bound first keep a NaN v, like mdl__clampf. */
INLINE void tile(const int R, const int NB, const float *x, const int64_t *xo, const int32_t *koff,
                 int64_t K, const float *wb, int64_t ws, const float *bias, float *y, int64_t ys,
                 __m256i mlast, float lo, float hi, int accum) {
    __m256 acc[12][NBMAX], b[NBMAX];
    const __m256i all = mdl__mask8(VL);
#pragma GCC unroll 4
    for (int j = 0; j < NB; j++)
        b[j] = bias && !accum ? _mm256_maskload_ps(bias + j * VL, j == NB - 1 ? mlast : all)
                              : _mm256_setzero_ps();
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++)
            acc[r][j] = accum ? _mm256_maskload_ps(y + r * ys + j * VL, j == NB - 1 ? mlast : all)
                              : b[j];
    for (int64_t k = 0; k < K; k++) {
        const float *p = x + koff[k], *w = wb + k * ws;
        __m256 wv[NBMAX];
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++) wv[j] = j == NB - 1 ? _mm256_maskload_ps(w + j * VL, mlast) : _mm256_loadu_ps(w + j * VL);
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            __m256 a = _mm256_set1_ps(p[xo[r]]);
#pragma GCC unroll 4
            for (int j = 0; j < NB; j++) acc[r][j] = _mm256_fmadd_ps(a, wv[j], acc[r][j]);
        }
    }
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++) {
            __m256 v = _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc[r][j]));
            if (j == NB - 1)
                _mm256_maskstore_ps(y + r * ys + j * VL, mlast, v);
            else
                _mm256_storeu_ps(y + r * ys + j * VL, v);
        }
}

#define MASK_T __m256i
#define TAIL_MASK mdl__mask8
#include "conv_driver.h"

TILE(12, 1) TILE(8, 1) TILE(4, 1) TILE(2, 1) TILE(1, 1)
TILE(6, 2) TILE(4, 2) TILE(2, 2) TILE(1, 2)

static const tile_set tiles[NBMAX] = {
    {12, tile_12_1, tile_8_1, tile_4_1, tile_2_1, tile_1_1},
    {6, tile_6_2, NULL, tile_4_2, tile_2_2, tile_1_2},
};

void mdl__conv_direct_avx2(const mdl__conv_direct_args *a) { direct_loops(a, tiles); }
