/* AVX-512 direct convolution over a padded NHWC image (contract in conv_x86.h; conv_avx2.c is
 * the same at half the width).
 *
 * An implicit GEMM: the rows of A (one per output pixel) are never written out as im2col would;
 * each k reads its tap straight from the padded input at koff[k] + xo[r], xo[r] being where
 * output pixel r's window starts.  A tile is R consecutive output pixels (across row ends) x NB
 * vectors of 16 output channels, R * NB zmm accumulators (24 of 32): per k, NB weight loads and
 * R broadcasts feed R * NB FMAs, so the FMA units set the pace, and small K (first layers,
 * Cin 1..4) pays no im2col copy.  The weights are read in place from the model (HWIO); per
 * chunk of weight rows (conv_driver.h), blocks of output channels are the outer loop so that
 * one block (kc x 64 floats) stays in L1/L2 while all pixels pass.  Bias and clamp are fused
 * into the store. */
#include "conv_x86.h"
#include "simd.h"

#include <immintrin.h>

#define VL MDL_CONV_VL_AVX512
#define NBMAX MDL_CONV_NB_AVX512

/* R pixels (inputs at x + xo[r], outputs y, y + ys, ...) x NB vectors of the weight block wb (rows
   ws floats apart), starting from the bias, or from y when accum is set.  mlast masks the valid
   channels of the last vector, in loads (w is read in place: no padding past OC) and stores.  max(lo, v) / min(hi, v)
   with the bound first keep a NaN v, like mdl__clampf. */
INLINE void tile(const int R, const int NB, const float *x, const int64_t *xo, const int32_t *koff,
                 int64_t K, const float *wb, int64_t ws, const float *bias, float *y, int64_t ys,
                 __mmask16 mlast, float lo, float hi, int accum) {
    __m512 acc[12][NBMAX], b[NBMAX];
#pragma GCC unroll 4
    for (int j = 0; j < NB; j++)
        b[j] = bias && !accum
                   ? _mm512_maskz_loadu_ps(j == NB - 1 ? mlast : 0xFFFF, bias + j * VL)
                   : _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++)
            acc[r][j] = accum ? _mm512_maskz_loadu_ps(j == NB - 1 ? mlast : 0xFFFF,
                                                      y + r * ys + j * VL)
                              : b[j];
    for (int64_t k = 0; k < K; k++) {
        const float *p = x + koff[k], *w = wb + k * ws;
        __m512 wv[NBMAX];
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++) wv[j] = _mm512_maskz_loadu_ps(j == NB - 1 ? mlast : 0xFFFF, w + j * VL);
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            __m512 a = _mm512_set1_ps(p[xo[r]]);
#pragma GCC unroll 4
            for (int j = 0; j < NB; j++) acc[r][j] = _mm512_fmadd_ps(a, wv[j], acc[r][j]);
        }
    }
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++) {
            __m512 v = _mm512_min_ps(vhi, _mm512_max_ps(vlo, acc[r][j]));
            if (j == NB - 1)
                _mm512_mask_storeu_ps(y + r * ys + j * VL, mlast, v);
            else
                _mm512_storeu_ps(y + r * ys + j * VL, v);
        }
}

#define MASK_T __mmask16
#define TAIL_MASK mdl__mask16
#include "conv_driver.h"

TILE(12, 1) TILE(8, 1) TILE(4, 1) TILE(2, 1) TILE(1, 1)
TILE(12, 2) TILE(8, 2) TILE(4, 2) TILE(2, 2) TILE(1, 2)
TILE(8, 3) TILE(4, 3) TILE(2, 3) TILE(1, 3)
TILE(6, 4) TILE(4, 4) TILE(2, 4) TILE(1, 4)

static const tile_set tiles[NBMAX] = {
    {12, tile_12_1, tile_8_1, tile_4_1, tile_2_1, tile_1_1},
    {12, tile_12_2, tile_8_2, tile_4_2, tile_2_2, tile_1_2},
    {8, tile_8_3, tile_8_3, tile_4_3, tile_2_3, tile_1_3},
    {6, tile_6_4, NULL, tile_4_4, tile_2_4, tile_1_4},
};

void mdl__conv_direct_avx512(const mdl__conv_direct_args *a) { direct_loops(a, tiles); }
