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
   fmaf chain in block order as the reference.  The finished 8 outputs x 16 rows of each half are
   transposed back in registers (store_rows) into the rows of Y. */

/* a[n] = output n0 + n of 16 rows (lane p: row p); stores the rows p < R (nv outputs each) at
   Y + p * ldy.  Three shuffle stages for 128 values: unpack and shuffle_ps within 128-bit lanes
   (as transpose8), then one two-source lane permute per pair of rows. */
INLINE void store_rows(__m512 a[8], int R, float *Y, int64_t ldy, __mmask16 mlo) {
    __m512 t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_ps(a[i], a[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(a[i], a[i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 8; i += 4) { /* u[i + j], lane L: outputs i .. i+3 of row 4L + j */
        u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i hi = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    const __mmask16 mhi = (__mmask16)(mlo << 8);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        /* rows j, 4+j (from lanes 0, 1) and 8+j, 12+j (lanes 2, 3), each outputs 0..3 | 4..7;
           the upper row of a pair is stored from the vector's upper half, 8 floats back */
        __m512 r0 = _mm512_permutex2var_ps(u[j], lo, u[j + 4]);
        __m512 r1 = _mm512_permutex2var_ps(u[j], hi, u[j + 4]);
        if (j < R) _mm512_mask_storeu_ps(Y + j * ldy, mlo, r0);
        if (4 + j < R) _mm512_mask_storeu_ps((float *)((uintptr_t)(Y + (4 + j) * ldy) - 32), mhi, r0);
        if (8 + j < R) _mm512_mask_storeu_ps(Y + (8 + j) * ldy, mlo, r1);
        if (12 + j < R) _mm512_mask_storeu_ps((float *)((uintptr_t)(Y + (12 + j) * ldy) - 32), mhi, r1);
    }
}

static void spmm_pixels(int R, const float *xp, const mdl__bsr *W, int64_t g, const float *bias,
                        float *Y, int64_t ldy, float lo, float hi) {
    __m512 acc[2][8];
#pragma GCC unroll 8
    for (int n = 0; n < 8; n++)
        acc[0][n] = acc[1][n] = _mm512_setzero_ps();
    const int32_t *col = W->col;
    const float *val = W->val;
    for (int32_t j = W->ptr[g], end = W->ptr[g + 1]; j < end; j++) {
        const float *x = xp + (int64_t)col[j] * MDL_SPMM_PIXELS, *w = val + (int64_t)j * 8;
        __m512 x0 = _mm512_load_ps(x), x1 = _mm512_load_ps(x + 16);
#pragma GCC unroll 8
        for (int n = 0; n < 8; n++) {
            __m512 wn = _mm512_set1_ps(w[n]);
            acc[0][n] = _mm512_fmadd_ps(wn, x0, acc[0][n]);
            acc[1][n] = _mm512_fmadd_ps(wn, x1, acc[1][n]);
        }
    }
    int64_t n0 = g * 8, nv = W->N - n0 < 8 ? W->N - n0 : 8;
    __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++)
#pragma GCC unroll 8
        for (int n = 0; n < 8; n++) {
            __m512 s = acc[h][n];
            if (bias && n < nv) s = _mm512_add_ps(s, _mm512_set1_ps(bias[n0 + n]));
            acc[h][n] = _mm512_min_ps(vhi, _mm512_max_ps(vlo, s));
        }
    const __mmask16 m = (__mmask16)((1u << nv) - 1);
    store_rows(acc[0], R, Y + n0, ldy, m);
    if (R > 16) store_rows(acc[1], R - 16, Y + 16 * ldy + n0, ldy, m);
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
        if (R <= MR) {
            /* a last tile of at most 16 rows: 8 lanes over outputs, R rows (not 32 lanes
               mostly idle) */
            spmm_run(tiles, R, X + m * ldx, ldx, W, bias, Y + m * ldy, ldy, lo, hi, scratch);
            break;
        }
        pack_rows(R, MDL_SPMM_PIXELS, X + m * ldx, ldx, W->K, scratch);
        for (int64_t g = 0; g < groups; g++)
            spmm_pixels(R, scratch, W, g, bias, Y + m * ldy, ldy, lo, hi);
    }
}
