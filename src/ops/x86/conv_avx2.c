/* AVX2+FMA direct convolution over a padded NHWC image (contract in conv_x86.h): the implicit
 * GEMM of conv_avx512.c at half the width with 16 registers, tiles of R output pixels x NB
 * vectors of 8 output channels (6 x 2 or 12 x 1: 12 accumulators + weights + one broadcast).
 * Channel blocks (K x 16 packed floats) are the outer loop; bias and clamp fused into the
 * store. */
#include "conv_x86.h"

#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))
#define VL MDL_CONV_VL_AVX2
#define NBMAX MDL_CONV_NB_AVX2

/* Lane masks for maskload/maskstore: the first n of 8 lanes (n clamped to 0..8). */
static const int32_t mask_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline __m256i tail_mask(int64_t n) {
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(mask_tab + 8 - n));
}

/* R pixels (inputs at x + xo[r], outputs y, y + ys, ...) x NB vectors of the weight block wb (rows
   ws floats apart).  mlast masks the valid channels of the last vector.  max(lo, v) / min(hi, v)
   with the bound first keep a NaN v, like mdl__clampf. */
INLINE void tile(const int R, const int NB, const float *x, const int64_t *xo, const int32_t *koff,
                 int64_t K, const float *wb, int64_t ws, const float *bias, float *y, int64_t ys,
                 __m256i mlast, float lo, float hi) {
    __m256 acc[12][NBMAX], b[NBMAX];
#pragma GCC unroll 4
    for (int j = 0; j < NB; j++)
        b[j] = bias ? _mm256_maskload_ps(bias + j * VL, j == NB - 1 ? mlast : tail_mask(VL))
                    : _mm256_setzero_ps();
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++) acc[r][j] = b[j];
    for (int64_t k = 0; k < K; k++) {
        const float *p = x + koff[k], *w = wb + k * ws;
        __m256 wv[NBMAX];
#pragma GCC unroll 4
        for (int j = 0; j < NB; j++) wv[j] = _mm256_loadu_ps(w + j * VL);
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

typedef void (*tile_fn)(const float *x, const int64_t *xo, const int32_t *koff, int64_t K,
                        const float *wb, int64_t ws, const float *bias, float *y, int64_t ys,
                        __m256i mlast, float lo, float hi);
#define TILE(R, NB)                                                                                \
    static void tile_##R##_##NB(const float *x, const int64_t *xo, const int32_t *koff, int64_t K, \
                                const float *wb, int64_t ws, const float *bias, float *y,          \
                                int64_t ys, __m256i mlast, float lo, float hi) {                   \
        tile(R, NB, x, xo, koff, K, wb, ws, bias, y, ys, mlast, lo, hi);                           \
    }
TILE(12, 1) TILE(8, 1) TILE(4, 1) TILE(2, 1) TILE(1, 1)
TILE(6, 2) TILE(4, 2) TILE(2, 2) TILE(1, 2)

/* Per block width NB: the widest tile (rmax pixels), then narrower ones for a row's remainder. */
static const struct {
    int rmax;
    tile_fn wide, r8, r4, r2, r1;
} tiles[NBMAX] = {
    {12, tile_12_1, tile_8_1, tile_4_1, tile_2_1, tile_1_1},
    {6, tile_6_2, NULL, tile_4_2, tile_2_2, tile_1_2},
};

void mdl__conv_direct_avx2(const mdl__conv_direct_args *a) {
    const int64_t OC = a->OC, OW = a->OW, M = a->OH * OW;
    const int64_t pitch = a->sh * a->Wp * a->C, step = a->sw * a->C;
    const float *wb = a->wpack;
    for (int64_t oc0 = 0; oc0 < OC;) {
        /* one packed block: nb vectors wide, K rows of nb * VL floats */
        int64_t left = OC - oc0, nb = (left + VL - 1) / VL;
        if (nb > NBMAX) nb = NBMAX;
        const __m256i mlast = tail_mask(left - (nb - 1) * VL);
        const float *bias = a->bias ? a->bias + oc0 : NULL;
        const int rmax = tiles[nb - 1].rmax;
        /* Tiles run over the output pixels in order, across row ends: only the input offsets
           of a tile's pixels (xo) jump there, the outputs stay OC floats apart. */
        int64_t oh = 0, ow = 0;
        for (int64_t q = 0; q < M;) {
            const int64_t n = M - q;
            tile_fn f;
            int r;
            if (n >= rmax) f = tiles[nb - 1].wide, r = rmax;
            else if (n >= 8 && tiles[nb - 1].r8) f = tiles[nb - 1].r8, r = 8;
            else if (n >= 4) f = tiles[nb - 1].r4, r = 4;
            else if (n >= 2) f = tiles[nb - 1].r2, r = 2;
            else f = tiles[nb - 1].r1, r = 1;
            int64_t xo[12];
            for (int i = 0; i < r; i++) {
                xo[i] = oh * pitch + ow * step;
                if (++ow == OW) ow = 0, oh++;
            }
            f(a->xp, xo, a->koff, a->K, wb, nb * VL, bias, a->y + q * OC + oc0, OC, mlast, a->lo,
              a->hi);
            q += r;
        }
        wb += a->K * nb * VL;
        oc0 += nb * VL;
    }
}
