/* Block-sparse product built for AVX-512 (VL): the same 8-lane blocks, 16 input rows per tile in
   the 32 vector registers, and the broadcasts folded into the FMAs' memory operands.  See
   sparse_driver.h. */
#define MR 16
#include "sparse_driver.h"

SPMM_TILE_FN(1)
SPMM_TILE_FN(2)
SPMM_TILE_FN(3)
SPMM_TILE_FN(4)
SPMM_TILE_FN(5)
SPMM_TILE_FN(6)
SPMM_TILE_FN(7)
SPMM_TILE_FN(8)
SPMM_TILE_FN(9)
SPMM_TILE_FN(10)
SPMM_TILE_FN(11)
SPMM_TILE_FN(12)
SPMM_TILE_FN(13)
SPMM_TILE_FN(14)
SPMM_TILE_FN(15)
SPMM_TILE_FN(16)

static const spmm_tile_fn tiles[MR + 1] = {
    NULL,         spmm_tile_1,  spmm_tile_2,  spmm_tile_3,  spmm_tile_4,  spmm_tile_5,
    spmm_tile_6,  spmm_tile_7,  spmm_tile_8,  spmm_tile_9,  spmm_tile_10, spmm_tile_11,
    spmm_tile_12, spmm_tile_13, spmm_tile_14, spmm_tile_15, spmm_tile_16};

/* ---- many input rows: lanes over rows ------------------------------------------------------
   With 16 lanes, a block's 8 weights would fill half a vector.  Instead a tile of 32 input rows
   is repacked column by column (xp[k] = the tile's 32 values of column k, two vectors), and each
   block adds w[n] * xp[col] into two accumulators per output n of its group: 16 vectors in
   flight, one broadcast weight per two FMAs.  Each lane is one output (row, n) with the same
   fmaf chain in block order as the reference.  The finished 8 x 32 sums are transposed back
   (8x8 at a time) into the rows of Y. */

static void spmm_pixels(int R, const float *xp, const mdl__bsr *W, int64_t g, const float *bias,
                        float *Y, int64_t ldy, float lo, float hi) {
    __m512 acc[8][2];
#pragma GCC unroll 8
    for (int n = 0; n < 8; n++)
        acc[n][0] = acc[n][1] = _mm512_setzero_ps();
    const int32_t *col = W->col;
    const float *val = W->val;
    for (int32_t j = W->ptr[g], end = W->ptr[g + 1]; j < end; j++) {
        const float *x = xp + (int64_t)col[j] * MDL_SPMM_PIXELS, *w = val + (int64_t)j * 8;
        __m512 x0 = _mm512_load_ps(x), x1 = _mm512_load_ps(x + 16);
#pragma GCC unroll 8
        for (int n = 0; n < 8; n++) {
            __m512 wn = _mm512_set1_ps(w[n]);
            acc[n][0] = _mm512_fmadd_ps(wn, x0, acc[n][0]);
            acc[n][1] = _mm512_fmadd_ps(wn, x1, acc[n][1]);
        }
    }
    int64_t n0 = g * 8, nv = W->N - n0 < 8 ? W->N - n0 : 8;
    __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
#pragma GCC unroll 8
    for (int n = 0; n < 8; n++)
        for (int h = 0; h < 2; h++) {
            __m512 s = acc[n][h];
            if (bias && n < nv) s = _mm512_add_ps(s, _mm512_set1_ps(bias[n0 + n]));
            acc[n][h] = _mm512_min_ps(vhi, _mm512_max_ps(vlo, s));
        }
    __m256i nm = mdl__mask8(nv);
    for (int q = 0; q < 4 && q * 8 < R; q++) { /* rows 8q .. 8q+7 */
        __m256 r[8];
        for (int n = 0; n < 8; n++) {
            __m512 a = acc[n][q >> 1];
            r[n] = (q & 1) ? _mm512_extractf32x8_ps(a, 1) : _mm512_castps512_ps256(a);
        }
        transpose8(r); /* r[i] = outputs n0 .. n0+7 of row 8q + i */
        for (int i = 0; i < 8 && 8 * q + i < R; i++) {
            float *y = Y + (8 * q + i) * ldy + n0;
            if (nv == 8)
                _mm256_storeu_ps(y, r[i]);
            else
                _mm256_maskstore_ps(y, nm, r[i]);
        }
    }
}

void mdl__spmm_avx512(int64_t M, const float *X, int64_t ldx, const mdl__bsr *W, const float *bias,
                      float *Y, int64_t ldy, float lo, float hi, void *scratch) {
    if (M < 16) {
        spmm_run(tiles, M, X, ldx, W, bias, Y, ldy, lo, hi, scratch);
        return;
    }
    int64_t groups = mdl__bsr_groups(W->N);
    for (int64_t m = 0; m < M; m += MDL_SPMM_PIXELS) {
        int R = M - m < MDL_SPMM_PIXELS ? (int)(M - m) : MDL_SPMM_PIXELS;
        pack_rows(R, MDL_SPMM_PIXELS, X + m * ldx, ldx, W->K, scratch);
        for (int64_t g = 0; g < groups; g++)
            spmm_pixels(R, scratch, W, g, bias, Y + m * ldy, ldy, lo, hi);
    }
}
