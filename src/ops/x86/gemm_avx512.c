/* AVX-512 float GEMM/GEMV kernels (built with -mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma;
 * called only when mdl__cpu_level() >= MDL_CPU_AVX512).  Contracts in x86.h.
 *
 * Two kernels:
 *  - dot tiles for the unpacked C = A B^T with few rows: RA rows of A x RB rows of B, one 16-lane
 *    accumulator each, horizontal sums at the end.  For one row (GEMV) 8 rows of B share each
 *    load of A and the 8 independent FMA chains cover the FMA latency; the weights stream once,
 *    so this runs at cache bandwidth (hence the care for B's alignment, see dot_tile).
 *  - a register-blocked microkernel over B panels (x86.h): MR rows x 32 columns of C live in
 *    2*MR zmm registers; each k broadcasts A[m,k] and multiplies two panel vectors.  That is 2
 *    loads + MR broadcasts per 2*MR FMAs, so the FMA units, not the loads, set the pace.  It
 *    serves pre-packed B, row-major B[K,N] (MatMul) read in place, and unpacked A B^T with many
 *    rows, whose B is packed block by block on the fly.
 * Bias, clamp and the K-block accumulation are fused into the store. */
#include "gemm_blocking.h"
#include "x86.h"
#include "simd.h"

#include <immintrin.h>

#define MR 8   /* rows of C per microkernel call */
#define NR 32  /* panel width (MDL_GEMM_NR_AVX512) */

#include "gemm_driver.h"

_Static_assert(NR == MDL_GEMM_NR_AVX512, "panel width");

/* ---- unpacked: dot-product tiles ----------------------------------------------------------- */

static inline __m256 fold256(__m512 v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
}

/* [sum v0, ..., sum v7] */
static inline __m256 hsum8(const __m512 *v) {
    __m256 h01 = _mm256_hadd_ps(fold256(v[0]), fold256(v[1]));
    __m256 h23 = _mm256_hadd_ps(fold256(v[2]), fold256(v[3]));
    __m256 h45 = _mm256_hadd_ps(fold256(v[4]), fold256(v[5]));
    __m256 h67 = _mm256_hadd_ps(fold256(v[6]), fold256(v[7]));
    __m256 lo4 = _mm256_hadd_ps(h01, h23); /* [v0..v3 low halves | v0..v3 high halves] */
    __m256 hi4 = _mm256_hadd_ps(h45, h67);
    return _mm256_add_ps(_mm256_permute2f128_ps(lo4, hi4, 0x20),
                         _mm256_permute2f128_ps(lo4, hi4, 0x31));
}

/* [sum v0, ..., sum v3] */
static inline __m128 hsum4(const __m512 *v) {
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(fold256(v[0]), fold256(v[1])),
                              _mm256_hadd_ps(fold256(v[2]), fold256(v[3])));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* acc[i][j] += A[i, k..] * B[j, k..] over the lanes in mk; a and b point at element k. */
INLINE void dot_step(const int RA, const int RB, __mmask16 mk, const int masked, const float *a,
                     int64_t lda, const float *b, int64_t ldb, __m512 acc[3][8]) {
    __m512 av[3];
#pragma GCC unroll 3
    for (int i = 0; i < RA; i++)
        av[i] = masked ? _mm512_maskz_loadu_ps(mk, a + i * lda) : _mm512_loadu_ps(a + i * lda);
#pragma GCC unroll 8
    for (int j = 0; j < RB; j++) {
        __m512 bv = masked ? _mm512_maskz_loadu_ps(mk, b + j * ldb) : _mm512_loadu_ps(b + j * ldb);
#pragma GCC unroll 3
        for (int i = 0; i < RA; i++) acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
    }
}

/* C[0:RA, 0:RB] = clamp(A[0:RA,:] . B[0:RB,:] + bias).  max(lo, x) / min(hi, x) with the bound
   first keep a NaN x, like mdl__clampf. */
INLINE void dot_tile(const int RA, const int RB, int64_t K, const float *a, int64_t lda,
                     const float *b, int64_t ldb, const float *bias, float *c, int64_t ldc,
                     float lo, float hi) {
    __m512 acc[3][8];
#pragma GCC unroll 3
    for (int i = 0; i < RA; i++)
#pragma GCC unroll 8
        for (int j = 0; j < RB; j++) acc[i][j] = _mm512_setzero_ps();
    int64_t k = 0;
    /* Weights may be only 16-byte aligned (a buffer loaded in place; files give 64), or rows
       of an odd K start anywhere, and a load that splits two cache
       lines halves the bandwidth this loop lives on (measured: 784x64 took 3.4 us instead of
       1.5).  When all rows of B share one alignment, a first partial vector read from the
       aligned address below b (lanes before b masked off; masked lanes never fault) makes every
       later load of B aligned.  The A lanes shift the same way, so products still pair up. */
    int64_t off = (int64_t)(((uintptr_t)b / sizeof(float)) % 16);
    if (off && ldb % 16 == 0) {
        __mmask16 mk = (__mmask16)(mdl__mask16(off + K) & ~mdl__mask16(off));
        dot_step(RA, RB, mk, 1, (const float *)((uintptr_t)a - (uintptr_t)off * sizeof(float)),
                 lda, (const float *)((uintptr_t)b - (uintptr_t)off * sizeof(float)), ldb, acc);
        k = 16 - off < K ? 16 - off : K;
    }
    for (; k + 16 <= K; k += 16) dot_step(RA, RB, 0, 0, a + k, lda, b + k, ldb, acc);
    if (k < K) dot_step(RA, RB, mdl__mask16(K - k), 1, a + k, lda, b + k, ldb, acc);
#pragma GCC unroll 3
    for (int i = 0; i < RA; i++) {
        float *ci = c + i * ldc;
        if (RB == 8) store_sums8(hsum8(acc[i]), bias, ci, lo, hi);
        else if (RB == 4) store_sums4(hsum4(acc[i]), bias, ci, lo, hi);
        else
#pragma GCC unroll 8
            for (int j = 0; j < RB; j++)
                store_sum1(_mm512_reduce_add_ps(acc[i][j]), bias ? bias + j : NULL, ci + j, lo, hi);
    }
}

/* RA rows of A against all N rows of B. */
INLINE void dot_rows(const int RA, int64_t N, int64_t K, const float *a, int64_t lda,
                     const float *B, int64_t ldb, const float *bias, float *c, int64_t ldc,
                     float lo, float hi) {
    int64_t n = 0;
    for (; n + 8 <= N; n += 8)
        dot_tile(RA, 8, K, a, lda, B + n * ldb, ldb, bias ? bias + n : NULL, c + n, ldc, lo, hi);
    if (n + 4 <= N) {
        dot_tile(RA, 4, K, a, lda, B + n * ldb, ldb, bias ? bias + n : NULL, c + n, ldc, lo, hi);
        n += 4;
    }
    for (; n < N; n++)
        dot_tile(RA, 1, K, a, lda, B + n * ldb, ldb, bias ? bias + n : NULL, c + n, ldc, lo, hi);
}

static void dot_rows1(int64_t N, int64_t K, const float *a, int64_t lda, const float *B,
                      int64_t ldb, const float *bias, float *c, int64_t ldc, float lo, float hi) {
    dot_rows(1, N, K, a, lda, B, ldb, bias, c, ldc, lo, hi);
}
static void dot_rows2(int64_t N, int64_t K, const float *a, int64_t lda, const float *B,
                      int64_t ldb, const float *bias, float *c, int64_t ldc, float lo, float hi) {
    dot_rows(2, N, K, a, lda, B, ldb, bias, c, ldc, lo, hi);
}
static void dot_rows3(int64_t N, int64_t K, const float *a, int64_t lda, const float *B,
                      int64_t ldb, const float *bias, float *c, int64_t ldc, float lo, float hi) {
    dot_rows(3, N, K, a, lda, B, ldb, bias, c, ldc, lo, hi);
}

/* ---- panels: the GEMM microkernel ---------------------------------------------------------- */

/* acc[i][v] += A[i, k] * Bp[k, 16v .. 16v+15] for the rows i < R. */
INLINE void uk_step(const int R, const int NV, const int BMASK, const float *bk, const float *ak,
                    int64_t lda, __mmask16 m0, __mmask16 m1, __m512 acc[MR][2]) {
    __m512 b0 = BMASK ? _mm512_maskz_loadu_ps(m0, bk) : _mm512_loadu_ps(bk);
    __m512 b1 = _mm512_setzero_ps();
    if (NV == 2) b1 = BMASK ? _mm512_maskz_loadu_ps(m1, bk + 16) : _mm512_loadu_ps(bk + 16);
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        __m512 av = _mm512_set1_ps(ak[i * lda]);
        acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
        if (NV == 2) acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
    }
}

/* C[0:R, 0:16*NV] (+)= A[0:R, 0:kc] * Bp[0:kc, 0:16*NV], Bp's rows bs floats apart.  nvalid
   columns of C are real: m0/m1 mask them in each vector (stores; and B loads when BMASK, i.e.
   when B is not a zero-padded panel).  first: C holds no partial sum yet; last: add bias and
   clamp. */
INLINE void ukernel(const int R, const int NV, const int BMASK, int64_t kc, const float *a,
                    int64_t lda, const float *b, int64_t bs, float *c, int64_t ldc, int64_t nvalid,
                    int first, int last, const float *bias, float lo, float hi) {
    const __mmask16 m0 = mdl__mask16(nvalid), m1 = mdl__mask16(nvalid - 16);
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    int64_t k = 0;
    if (R * NV < 8) {
        /* Fewer than 8 FMA chains cannot cover the FMA latency (4 cycles, 2 units): odd k go
           to a second set of accumulators (a 2- or 3-row product then runs at full speed). */
        __m512 odd[MR][2];
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) odd[i][0] = odd[i][1] = _mm512_setzero_ps();
        for (; k + 2 <= kc; k += 2) {
            uk_step(R, NV, BMASK, b + k * bs, a + k, lda, m0, m1, acc);
            uk_step(R, NV, BMASK, b + (k + 1) * bs, a + k + 1, lda, m0, m1, odd);
        }
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            acc[i][0] = _mm512_add_ps(acc[i][0], odd[i][0]);
            if (NV == 2) acc[i][1] = _mm512_add_ps(acc[i][1], odd[i][1]);
        }
    }
    for (; k < kc; k++) uk_step(R, NV, BMASK, b + k * bs, a + k, lda, m0, m1, acc);
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    /* ReLU needs no upper bound, no activation neither: skip what cannot bite (short K, e.g.
       1x1 convolutions, makes the epilogue a visible share). */
    const int clamp_lo = lo > -__builtin_inff(), clamp_hi = hi < __builtin_inff();
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        float *ci = c + i * ldc;
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            __mmask16 mk = v ? m1 : m0;
            __m512 x = acc[i][v];
            if (!first) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, ci + 16 * v));
            if (last) {
                if (bias) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, bias + 16 * v));
                if (clamp_lo) x = _mm512_max_ps(vlo, x);
                if (clamp_hi) x = _mm512_min_ps(vhi, x);
            }
            _mm512_mask_storeu_ps(ci + 16 * v, mk, x);
        }
    }
}

#define UK_ROWS(NV, BM)                                                                            \
    UK(1, NV, BM) UK(2, NV, BM) UK(3, NV, BM) UK(4, NV, BM) UK(5, NV, BM) UK(6, NV, BM)            \
    UK(7, NV, BM) UK(8, NV, BM)
UK_ROWS(1, 0)
UK_ROWS(2, 0)
UK_ROWS(1, 1)
UK_ROWS(2, 1)
#define UK_ROW_TABLE(NV, BM)                                                                       \
    {uk_1_##NV##_##BM, uk_2_##NV##_##BM, uk_3_##NV##_##BM, uk_4_##NV##_##BM,                      \
     uk_5_##NV##_##BM, uk_6_##NV##_##BM, uk_7_##NV##_##BM, uk_8_##NV##_##BM}
/* [masked B][vectors - 1][rows - 1] */
static const ukernel_fn ukernels[2][2][MR] = {
    {UK_ROW_TABLE(1, 0), UK_ROW_TABLE(2, 0)},
    {UK_ROW_TABLE(1, 1), UK_ROW_TABLE(2, 1)},
};

void mdl__gemm_nt_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc,
                         float lo, float hi) {
    if (REPACK(M, N, K)) {
        blocked(M, N, K, A, lda, B, B_ROWS_NT, ldb, bias, C, ldc, lo, hi);
        return;
    }
    /* Three rows of A share each load of B (24 accumulators); the remainder goes in ones/twos. */
    int64_t m = 0;
    for (; m + 3 <= M; m += 3)
        dot_rows3(N, K, A + m * lda, lda, B, ldb, bias, C + m * ldc, ldc, lo, hi);
    if (M - m == 2) dot_rows2(N, K, A + m * lda, lda, B, ldb, bias, C + m * ldc, ldc, lo, hi);
    else if (M - m == 1) dot_rows1(N, K, A + m * lda, lda, B, ldb, bias, C + m * ldc, ldc, lo, hi);
}

void mdl__gemm_panels_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                             const float *panels, const float *bias, float *C, int64_t ldc,
                             float lo, float hi) {
    blocked(M, N, K, A, lda, panels, B_PANELS, 0, bias, C, ldc, lo, hi);
}

void mdl__gemm_nn_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float *C, int64_t ldc) {
    blocked(M, N, K, A, lda, B, B_ROWS_KN, ldb, NULL, C, ldc, -__builtin_inff(), __builtin_inff());
}

/* ---- parts for a parallel split (x86.h) ----------------------------------------------------
   The dot tiles compute each element alone (a tile's row count only shares loads), so their
   rows split anywhere (whole tiles of 3 rows are just faster); columns split at multiples of 8,
   where the 8/4/1-column tiling restarts as in the whole call.  The blocked loops split at row
   blocks and panels (blocked_part). */
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
    for (; m + 3 <= m1; m += 3)
        dot_rows3(N, K, A + m * lda, lda, B, ldb, bias, C + m * ldc, ldc, lo, hi);
    if (m1 - m == 2) dot_rows2(N, K, A + m * lda, lda, B, ldb, bias, C + m * ldc, ldc, lo, hi);
    else if (m1 - m == 1) dot_rows1(N, K, A + m * lda, lda, B, ldb, bias, C + m * ldc, ldc, lo, hi);
}

void mdl__gemm_part_grain_avx512(const mdl__gemm_part *p, int64_t *mg, int64_t *ng) {
    if (p->kind == MDL_GEMM_PART_NT && !REPACK(p->M, p->N, p->K)) {
        *mg = 3;
        *ng = 8; /* the column tiles: 8, then 4, then 1 */
        return;
    }
    *mg = row_block(p->M);
    *ng = NR;
}

void mdl__gemm_part_avx512(const mdl__gemm_part *p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
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
