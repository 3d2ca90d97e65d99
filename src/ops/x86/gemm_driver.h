/* The part of the GEMM that is the same at every vector width: the dot tiles' stores, the
   microkernel instances and the blocked loops.  Included by gemm_avx2.c and gemm_avx512.c once
   they define MR and NR; they then define ukernel(), instantiate UK for their row counts and
   define the `ukernels` table declared here. */
#ifndef MDL_X86_GEMM_DRIVER_H
#define MDL_X86_GEMM_DRIVER_H

#include "simd.h"

/* A dot tile's finished sums for 8, 4 or 1 columns: + bias (may be NULL), clamped to [lo, hi],
   stored at c.  The bound goes first in max/min so that a NaN sum stays NaN, like
   mdl__clampf. */
INLINE void store_sums8(__m256 s, const float *bias, float *c, float lo, float hi) {
    if (bias) s = _mm256_add_ps(s, _mm256_loadu_ps(bias));
    _mm256_storeu_ps(c, _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), s)));
}
INLINE void store_sums4(__m128 s, const float *bias, float *c, float lo, float hi) {
    if (bias) s = _mm_add_ps(s, _mm_loadu_ps(bias));
    _mm_storeu_ps(c, _mm_min_ps(_mm_set1_ps(hi), _mm_max_ps(_mm_set1_ps(lo), s)));
}
INLINE void store_sum1(float s, const float *bias, float *c, float lo, float hi) {
    s += bias ? *bias : 0.0f;
    *c = s < lo ? lo : (s > hi ? hi : s);
}

/* One instance per (rows, vectors, masked B loads); `ukernels` picks it at run time.  nvalid:
   the real columns of the block (stores past them are masked). */
typedef void (*ukernel_fn)(int64_t kc, const float *a, int64_t lda, const float *b, int64_t bs,
                           float *c, int64_t ldc, int64_t nvalid, int first, int last,
                           const float *bias, float lo, float hi);
#define UK(R, NV, BM)                                                                              \
    static void uk_##R##_##NV##_##BM(int64_t kc, const float *a, int64_t lda, const float *b,      \
                                     int64_t bs, float *c, int64_t ldc, int64_t nvalid, int first, \
                                     int last, const float *bias, float lo, float hi) {            \
        ukernel(R, NV, BM, kc, a, lda, b, bs, c, ldc, nvalid, first, last, bias, lo, hi);          \
    }
/* [masked B][vectors - 1][rows - 1] */
static const ukernel_fn ukernels[2][2][MR];

/* The blocked loops of every GEMM here.  B is found three ways:
   B_PANELS:  packed panels; the column block at j0 (width w) starts at B + j0 * K (all panels
              before it are NR wide), row stride w;
   B_ROWS_KN: row-major B[K,N] (MatMul, Conv2D's HWIO weights): B + j0, row stride ldb, the last
              block read with masked loads instead of relying on zero padding;
   B_ROWS_NT: row-major B[N,K] (unpacked A B^T with many rows): each KC x NC block is packed into
              a buffer on the stack first, then read as panels. */
/* Rows per block, balanced (49 rows: 7 x 7, not 6 x 8 + 1): a thin last block runs at the
   latency of its few FMA chains, not at the FMA throughput.  A block's row count picks its
   microkernel, and so the order of a row's additions (ukernel): a parallel split of the rows
   keeps the blocks of the whole product (blocked_part). */
static inline int64_t row_block(int64_t M) {
    int64_t nmb = (M + MR - 1) / MR;
    return nmb ? (M + nmb - 1) / nmb : 1;
}

/* Rows [mlo, mhi) x columns [nlo, nhi) of the whole product: mlo, mhi multiples of
   row_block(M) (or M), nlo, nhi multiples of NR (or N), so each element is computed by the
   same microkernel call shape, over the same K blocks, as in the whole product. */
static void blocked_part(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int mode, int64_t ldb, const float *bias, float *C,
                         int64_t ldc, float lo, float hi, int64_t mlo, int64_t mhi, int64_t nlo,
                         int64_t nhi) {
    _Alignas(64) float buf[REPACK_FLOATS];
    int64_t kcb = mdl__k_block(K, mode == B_ROWS_NT ? REPACK_FLOATS / NR : KC);
    int64_t ncb = mode == B_ROWS_NT ? REPACK_FLOATS / kcb / NR * NR : NC;
    int64_t mb = row_block(M);
    for (int64_t n0 = nlo; n0 < nhi; n0 += ncb) {
        int64_t n1 = nhi - n0 > ncb ? n0 + ncb : nhi;
        for (int64_t k0 = 0; k0 < K; k0 += kcb) {
            int64_t kc = K - k0 < kcb ? K - k0 : kcb;
            int first = k0 == 0, last = k0 + kc == K;
            if (mode == B_ROWS_NT) mdl__repack_panels(B, ldb, N, n0, n1, k0, kc, NR, buf);
            for (int64_t m0 = mlo; m0 < mhi; m0 += mb) {
                int64_t mr = M - m0 < mb ? M - m0 : mb;
                const float *a = A + m0 * lda + k0;
                float *c = C + m0 * ldc;
                for (int64_t j0 = n0; j0 < n1;) {
                    /* a block of two vectors, or one for the last few columns */
                    int64_t left = N - j0, w = left <= NR / 2 ? NR / 2 : NR;
                    int64_t nv = left < w ? left : w;
                    const float *b = mode == B_PANELS    ? B + j0 * K + k0 * w
                                     : mode == B_ROWS_KN ? B + k0 * ldb + j0
                                                         : buf + (j0 - n0) * kc;
                    int64_t bs = mode == B_ROWS_KN ? ldb : w;
                    int bm = mode == B_ROWS_KN && nv < w;
                    ukernels[bm][w / (NR / 2) - 1][mr - 1](kc, a, lda, b, bs, c + j0, ldc, nv,
                                                           first, last, bias ? bias + j0 : NULL,
                                                           lo, hi);
                    j0 += w;
                }
            }
        }
    }
}

static void blocked(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                    int mode, int64_t ldb, const float *bias, float *C, int64_t ldc, float lo,
                    float hi) {
    blocked_part(M, N, K, A, lda, B, mode, ldb, bias, C, ldc, lo, hi, 0, M, 0, N);
}

#endif
