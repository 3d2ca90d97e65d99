/* AVX2+FMA float GEMM/GEMV kernels (built with -mavx2 -mfma; called only when mdl__cpu_level() >=
 * MDL_CPU_AVX2).  Same structure as gemm_avx512.c at half the width and with 16 registers:
 *  - dot tiles for the unpacked C = A B^T with few rows (1 row of A x 8 rows of B, or 2 x 4),
 *    horizontal sums at the end, K tails with masked loads;
 *  - a 6 x 16 microkernel over B panels (12 accumulators + 2 panel vectors + 1 broadcast), also
 *    for MatMul's row-major B and for unpacked A B^T with many rows (B packed on the fly).
 * Bias, clamp and the K-block accumulation are fused into the store.  Contracts in x86.h. */
#include "gemm_blocking.h"
#include "x86.h"
#include "simd.h"

#include <immintrin.h>

#define MR 6  /* rows of C per microkernel call */
#define NR 16 /* panel width (MDL_GEMM_NR_AVX2) */

#include "gemm_driver.h"

_Static_assert(NR == MDL_GEMM_NR_AVX2, "panel width");

/* ---- unpacked: dot-product tiles ----------------------------------------------------------- */

static inline __m256i mk_none(void) { return _mm256_setzero_si256(); } /* unused mask */

static inline __m256 hsum8(const __m256 *v) {
    __m256 lo4 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    __m256 hi4 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(lo4, hi4, 0x20),
                         _mm256_permute2f128_ps(lo4, hi4, 0x31));
}

static inline __m128 hsum4(const __m256 *v) {
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

static inline float hsum1(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* acc[i][j] += A[i, k..] * B[j, k..] over the lanes in mk (all 8 unless masked); a and b
   point at element k. */
INLINE void dot_step(const int RA, const int RB, __m256i mk, const int masked, const float *a,
                     int64_t lda, const float *b, int64_t ldb, __m256 acc[2][8]) {
    __m256 av[2];
#pragma GCC unroll 2
    for (int i = 0; i < RA; i++)
        av[i] = masked ? _mm256_maskload_ps(a + i * lda, mk) : _mm256_loadu_ps(a + i * lda);
#pragma GCC unroll 8
    for (int j = 0; j < RB; j++) {
        __m256 bv = masked ? _mm256_maskload_ps(b + j * ldb, mk) : _mm256_loadu_ps(b + j * ldb);
#pragma GCC unroll 2
        for (int i = 0; i < RA; i++) acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
    }
}

/* C[0:RA, 0:RB] = clamp(A[0:RA,:] . B[0:RB,:] + bias); RA * RB <= 8. */
INLINE void dot_tile(const int RA, const int RB, int64_t K, const float *a, int64_t lda,
                     const float *b, int64_t ldb, const float *bias, float *c, int64_t ldc,
                     float lo, float hi) {
    __m256 acc[2][8];
#pragma GCC unroll 2
    for (int i = 0; i < RA; i++)
#pragma GCC unroll 8
        for (int j = 0; j < RB; j++) acc[i][j] = _mm256_setzero_ps();
    int64_t k = 0;
    /* Align B's loads to 32 bytes when all its rows share one alignment: every other unaligned
       load would split a cache line (see gemm_avx512.c; masked lanes never fault). */
    int64_t off = (int64_t)(((uintptr_t)b / sizeof(float)) % 8);
    if (off && ldb % 8 == 0) {
        __m256i mk = _mm256_andnot_si256(mdl__mask8(off), mdl__mask8(off + K));
        dot_step(RA, RB, mk, 1, (const float *)((uintptr_t)a - (uintptr_t)off * sizeof(float)),
                 lda, (const float *)((uintptr_t)b - (uintptr_t)off * sizeof(float)), ldb, acc);
        k = 8 - off < K ? 8 - off : K;
    }
    for (; k + 8 <= K; k += 8) dot_step(RA, RB, mk_none(), 0, a + k, lda, b + k, ldb, acc);
    if (k < K) dot_step(RA, RB, mdl__mask8(K - k), 1, a + k, lda, b + k, ldb, acc);
#pragma GCC unroll 2
    for (int i = 0; i < RA; i++) {
        float *ci = c + i * ldc;
        if (RB == 8) store_sums8(hsum8(acc[i]), bias, ci, lo, hi);
        else if (RB == 4) store_sums4(hsum4(acc[i]), bias, ci, lo, hi);
        else
#pragma GCC unroll 8
            for (int j = 0; j < RB; j++)
                store_sum1(hsum1(acc[i][j]), bias ? bias + j : NULL, ci + j, lo, hi);
    }
}

static void dot_rows1(int64_t N, int64_t K, const float *a, int64_t lda, const float *B,
                      int64_t ldb, const float *bias, float *c, int64_t ldc, float lo, float hi) {
    int64_t n = 0;
    for (; n + 8 <= N; n += 8)
        dot_tile(1, 8, K, a, lda, B + n * ldb, ldb, bias ? bias + n : NULL, c + n, ldc, lo, hi);
    if (n + 4 <= N) {
        dot_tile(1, 4, K, a, lda, B + n * ldb, ldb, bias ? bias + n : NULL, c + n, ldc, lo, hi);
        n += 4;
    }
    for (; n < N; n++)
        dot_tile(1, 1, K, a, lda, B + n * ldb, ldb, bias ? bias + n : NULL, c + n, ldc, lo, hi);
}

static void dot_rows2(int64_t N, int64_t K, const float *a, int64_t lda, const float *B,
                      int64_t ldb, const float *bias, float *c, int64_t ldc, float lo, float hi) {
    int64_t n = 0;
    for (; n + 4 <= N; n += 4)
        dot_tile(2, 4, K, a, lda, B + n * ldb, ldb, bias ? bias + n : NULL, c + n, ldc, lo, hi);
    for (; n < N; n++)
        dot_tile(2, 1, K, a, lda, B + n * ldb, ldb, bias ? bias + n : NULL, c + n, ldc, lo, hi);
}

/* ---- panels: the GEMM microkernel ---------------------------------------------------------- */

/* acc[i][v] += A[i, k] * Bp[k, 8v .. 8v+7] for the rows i < R. */
INLINE void uk_step(const int R, const int NV, const int BMASK, const float *bk, const float *ak,
                    int64_t lda, __m256i m0, __m256i m1, __m256 acc[MR][2]) {
    __m256 b0 = BMASK ? _mm256_maskload_ps(bk, m0) : _mm256_loadu_ps(bk);
    __m256 b1 = _mm256_setzero_ps();
    if (NV == 2) b1 = BMASK ? _mm256_maskload_ps(bk + 8, m1) : _mm256_loadu_ps(bk + 8);
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) {
        __m256 av = _mm256_broadcast_ss(ak + i * lda);
        acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
        if (NV == 2) acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
    }
}

/* C[0:R, 0:8*NV] (+)= A[0:R, 0:kc] * Bp[0:kc, 0:8*NV], Bp's rows bs floats apart.  nvalid
   columns of C are real (stores past them are masked); BMASK: B is not zero-padded, so its
   loads are masked too.  first: C holds no partial sum yet; last: add bias and clamp. */
INLINE void ukernel(const int R, const int NV, const int BMASK, int64_t kc, const float *a,
                    int64_t lda, const float *b, int64_t bs, float *c, int64_t ldc, int64_t nvalid,
                    int first, int last, const float *bias, float lo, float hi) {
    __m256 acc[MR][2];
    const __m256i m0 = mdl__mask8(nvalid), m1 = mdl__mask8(nvalid - 8);
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    int64_t k = 0;
    if (R * NV <= 5) {
        /* Too few FMA chains to cover the FMA latency: odd k go to a second set of
           accumulators (as many as the 16 registers allow). */
        __m256 odd[MR][2];
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) odd[i][0] = odd[i][1] = _mm256_setzero_ps();
        for (; k + 2 <= kc; k += 2) {
            uk_step(R, NV, BMASK, b + k * bs, a + k, lda, m0, m1, acc);
            uk_step(R, NV, BMASK, b + (k + 1) * bs, a + k + 1, lda, m0, m1, odd);
        }
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
            acc[i][0] = _mm256_add_ps(acc[i][0], odd[i][0]);
            if (NV == 2) acc[i][1] = _mm256_add_ps(acc[i][1], odd[i][1]);
        }
    }
    for (; k < kc; k++) uk_step(R, NV, BMASK, b + k * bs, a + k, lda, m0, m1, acc);
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    /* ReLU needs no upper bound, no activation neither: skip what cannot bite (short K, e.g.
       1x1 convolutions, makes the epilogue a visible share). */
    const int clamp_lo = lo > -__builtin_inff(), clamp_hi = hi < __builtin_inff();
    const int full = nvalid >= 8 * NV;
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) {
        float *ci = c + i * ldc;
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            __m256i mk = v ? m1 : m0;
            __m256 x = acc[i][v];
            if (!first)
                x = _mm256_add_ps(x, full ? _mm256_loadu_ps(ci + 8 * v)
                                          : _mm256_maskload_ps(ci + 8 * v, mk));
            if (last) {
                if (bias)
                    x = _mm256_add_ps(x, full ? _mm256_loadu_ps(bias + 8 * v)
                                              : _mm256_maskload_ps(bias + 8 * v, mk));
                if (clamp_lo) x = _mm256_max_ps(vlo, x);
                if (clamp_hi) x = _mm256_min_ps(vhi, x);
            }
            if (full) _mm256_storeu_ps(ci + 8 * v, x);
            else _mm256_maskstore_ps(ci + 8 * v, mk, x);
        }
    }
}

#define UK_ROWS(NV, BM)                                                                            \
    UK(1, NV, BM) UK(2, NV, BM) UK(3, NV, BM) UK(4, NV, BM) UK(5, NV, BM) UK(6, NV, BM)
UK_ROWS(1, 0)
UK_ROWS(2, 0)
UK_ROWS(1, 1)
UK_ROWS(2, 1)
#define UK_ROW_TABLE(NV, BM)                                                                       \
    {uk_1_##NV##_##BM, uk_2_##NV##_##BM, uk_3_##NV##_##BM,                                        \
     uk_4_##NV##_##BM, uk_5_##NV##_##BM, uk_6_##NV##_##BM}
/* [masked B][vectors - 1][rows - 1] */
static const ukernel_fn ukernels[2][2][MR] = {
    {UK_ROW_TABLE(1, 0), UK_ROW_TABLE(2, 0)},
    {UK_ROW_TABLE(1, 1), UK_ROW_TABLE(2, 1)},
};

void mdl__gemm_nt_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc,
                       float lo, float hi) {
    if (REPACK(M, N, K)) {
        blocked(M, N, K, A, lda, B, B_ROWS_NT, ldb, bias, C, ldc, lo, hi);
        return;
    }
    int64_t m = 0;
    for (; m + 2 <= M; m += 2)
        dot_rows2(N, K, A + m * lda, lda, B, ldb, bias, C + m * ldc, ldc, lo, hi);
    if (m < M) dot_rows1(N, K, A + m * lda, lda, B, ldb, bias, C + m * ldc, ldc, lo, hi);
}

void mdl__gemm_panels_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                           const float *panels, const float *bias, float *C, int64_t ldc,
                           float lo, float hi) {
    blocked(M, N, K, A, lda, panels, B_PANELS, 0, bias, C, ldc, lo, hi);
}

void mdl__gemm_nn_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc) {
    blocked(M, N, K, A, lda, B, B_ROWS_KN, ldb, NULL, C, ldc, -__builtin_inff(), __builtin_inff());
}

/* ---- parts for a parallel split (x86.h) ----------------------------------------------------
   The dot tiles' sums depend on the tile width, which here depends on the rows (pairs of rows
   take 4-column tiles, a single row 8-column ones): rows split at even rows, as the whole call
   pairs them; columns at multiples of 8, where both tilings restart alike.  The blocked loops
   split at row blocks and panels (blocked_part). */
static void dot_part(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                     int64_t ldb, const float *bias, float *C, int64_t ldc, float lo, float hi,
                     int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    (void)M;
    (void)N;
    /* columns from n0 (a multiple of 8): the same 8/4/1-column tiles as from 0 */
    B += n0 * ldb;
    C += n0;
    bias = bias ? bias + n0 : NULL;
    N = n1 - n0;
    int64_t m = m0;
    for (; m + 2 <= m1; m += 2)
        dot_rows2(N, K, A + m * lda, lda, B, ldb, bias, C + m * ldc, ldc, lo, hi);
    if (m < m1) dot_rows1(N, K, A + m * lda, lda, B, ldb, bias, C + m * ldc, ldc, lo, hi);
}

void mdl__gemm_part_grain_avx2(const mdl__gemm_part *p, int64_t *mg, int64_t *ng) {
    if (p->kind == MDL_GEMM_PART_NT && !REPACK(p->M, p->N, p->K)) {
        *mg = 2;
        *ng = 8; /* the column tiles: 8, then 4, then 1 */
        return;
    }
    *mg = row_block(p->M);
    *ng = NR;
}

void mdl__gemm_part_avx2(const mdl__gemm_part *p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    switch (p->kind) {
    case MDL_GEMM_PART_NT:
        if (!REPACK(p->M, p->N, p->K)) {
            dot_part(p->M, p->N, p->K, p->A, p->lda, p->B, p->ldb, p->bias, p->C, p->ldc, p->lo,
                     p->hi, m0, m1, n0, n1);
            return;
        }
        blocked_part(p->M, p->N, p->K, p->A, p->lda, p->B, B_ROWS_NT, p->ldb, p->bias, p->C,
                     p->ldc, p->lo, p->hi, m0, m1, n0, n1);
        return;
    case MDL_GEMM_PART_PANELS:
        blocked_part(p->M, p->N, p->K, p->A, p->lda, p->B, B_PANELS, 0, p->bias, p->C, p->ldc,
                     p->lo, p->hi, m0, m1, n0, n1);
        return;
    default:
        blocked_part(p->M, p->N, p->K, p->A, p->lda, p->B, B_ROWS_KN, p->ldb, NULL, p->C, p->ldc,
                     -__builtin_inff(), __builtin_inff(), m0, m1, n0, n1);
        return;
    }
}
