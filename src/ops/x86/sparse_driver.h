/* The block-sparse product (src/ops/sparse.h) on 8-lane vectors, written once: included by
   sparse_avx2.c and sparse_avx512.c after they define MR (input rows per tile) and SPMM_NAME.
   One 8x1 block is one vector of weights; per input row its column's value is broadcast and
   multiplied in: acc[r] = fma(w, x[r][col], acc[r]), in block order, which is exactly the
   reference's fmaf chain (sparse.h), so every variant is bit-identical to it. */
#include "../sparse.h"
#include "simd.h"

/* Finished sums of one row: + bias, clamp (as mdl__clampf: NaN stays NaN), store n valid lanes. */
INLINE void spmm_store(__m256 s, const float *bias, float *y, int64_t n, float lo, float hi) {
    __m256i mask = mdl__mask8(n);
    if (bias) s = _mm256_add_ps(s, n >= 8 ? _mm256_loadu_ps(bias) : _mm256_maskload_ps(bias, mask));
    s = _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), s));
    if (n >= 8)
        _mm256_storeu_ps(y, s);
    else
        _mm256_maskstore_ps(y, mask, s);
}

INLINE void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* xp[k * P + i] = X[i, k] for the R <= P rows of a tile (P a multiple of 8; lanes past R zero):
   the tile's column k is then one contiguous run of P values. */
static void pack_rows(int R, int P, const float *X, int64_t ldx, int64_t K, float *xp) {
    for (int64_t k0 = 0; k0 < K; k0 += 8) {
        int kn = K - k0 < 8 ? (int)(K - k0) : 8;
        __m256i km = mdl__mask8(kn);
        for (int i0 = 0; i0 < P; i0 += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = i0 + i < R ? _mm256_maskload_ps(X + (i0 + i) * ldx + k0, km)
                                  : _mm256_setzero_ps();
            transpose8(r); /* r[c] = rows i0 .. i0+7 of column k0 + c */
            for (int c = 0; c < kn; c++)
                _mm256_store_ps(xp + (k0 + c) * P + i0, r[c]);
        }
    }
}

/* R input rows (R <= MR), packed by pack_rows with P = MR, times row group g. */
INLINE void spmm_tile(int R, const float *xp, const mdl__bsr *W, int64_t g, const float *bias,
                      float *Y, int64_t ldy, float lo, float hi) {
    __m256 acc[MR];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
        acc[r] = _mm256_setzero_ps();
    const int32_t *col = W->col;
    const float *val = W->val;
    for (int32_t j = W->ptr[g], end = W->ptr[g + 1]; j < end; j++) {
        __m256 w = _mm256_loadu_ps(val + (int64_t)j * 8);
        const float *x = xp + (int64_t)col[j] * MR;
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
            acc[r] = _mm256_fmadd_ps(w, _mm256_set1_ps(x[r]), acc[r]);
    }
    int64_t n0 = g * 8, n = W->N - n0;
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
        spmm_store(acc[r], bias ? bias + n0 : NULL, Y + r * ldy + n0, n, lo, hi);
}

/* One input row (a GEMV): four row groups side by side, each its own chain in its own block
   order, so that four FMAs are in flight. */
static void spmm_row(const float *x, const mdl__bsr *W, const float *bias, float *y, float lo,
                     float hi) {
    int64_t groups = mdl__bsr_groups(W->N), g = 0;
    const int32_t *col = W->col, *ptr = W->ptr;
    const float *val = W->val;
    for (; g + 4 <= groups; g += 4) {
        __m256 a[4];
        int32_t j[4], end[4], common = INT32_MAX;
        for (int i = 0; i < 4; i++) {
            a[i] = _mm256_setzero_ps();
            j[i] = ptr[g + i];
            end[i] = ptr[g + i + 1];
            if (end[i] - j[i] < common) common = end[i] - j[i];
        }
        for (int32_t t = 0; t < common; t++)
            for (int i = 0; i < 4; i++) {
                int32_t b = j[i] + t;
                a[i] = _mm256_fmadd_ps(_mm256_loadu_ps(val + (int64_t)b * 8),
                                       _mm256_set1_ps(x[col[b]]), a[i]);
            }
        for (int i = 0; i < 4; i++) {
            for (int32_t b = j[i] + common; b < end[i]; b++)
                a[i] = _mm256_fmadd_ps(_mm256_loadu_ps(val + (int64_t)b * 8),
                                       _mm256_set1_ps(x[col[b]]), a[i]);
            int64_t n0 = (g + i) * 8;
            spmm_store(a[i], bias ? bias + n0 : NULL, y + n0, W->N - n0, lo, hi);
        }
    }
    for (; g < groups; g++) {
        __m256 a = _mm256_setzero_ps();
        for (int32_t b = ptr[g]; b < ptr[g + 1]; b++)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(val + (int64_t)b * 8), _mm256_set1_ps(x[col[b]]),
                                a);
        spmm_store(a, bias ? bias + g * 8 : NULL, y + g * 8, W->N - g * 8, lo, hi);
    }
}

#define SPMM_TILE_FN(R)                                                                            \
    static void spmm_tile_##R(const float *xp, const mdl__bsr *W, int64_t g, const float *bias,    \
                              float *Y, int64_t ldy, float lo, float hi) {                         \
        spmm_tile(R, xp, W, g, bias, Y, ldy, lo, hi);                                              \
    }

typedef void (*spmm_tile_fn)(const float *, const mdl__bsr *, int64_t, const float *, float *,
                             int64_t, float, float);

/* The whole product: a GEMV for one row, else tiles of MR rows (tiles[R] for the last R). */
static void spmm_run(const spmm_tile_fn *tiles, int64_t M, const float *X, int64_t ldx,
                     const mdl__bsr *W, const float *bias, float *Y, int64_t ldy, float lo,
                     float hi, float *xp) {
    if (M == 1) {
        spmm_row(X, W, bias, Y, lo, hi);
        return;
    }
    int64_t groups = mdl__bsr_groups(W->N);
    for (int64_t m = 0; m < M; m += MR) {
        int R = M - m < MR ? (int)(M - m) : MR;
        pack_rows(R, MR, X + m * ldx, ldx, W->K, xp);
        for (int64_t g = 0; g < groups; g++)
            tiles[R](xp, W, g, bias, Y + m * ldy, ldy, lo, hi);
    }
}
