/* Float GEMM/GEMV primitives (contracts in ops.h).
 *
 * Portable builds: plain loops (mdl__gemm_nt_ref, the oracle of every other path), OpenBLAS for
 * large products of two or more rows when built with it; nothing is packed.
 *
 * x86 builds (MDL_HAVE_X86_SIMD): each call dispatches on mdl__cpu_level() (src/ops/x86/cpu.c;
 * MDL_CPU_LEVEL=0|1|2 lowers it) to the AVX-512 or AVX2 kernels of src/ops/x86/gemm_*.c:
 *   - one row, and the unpacked path with few rows: SIMD dot products over B's rows (GEMV);
 *   - two rows or more with packed weights: the register-blocked microkernel over B panels;
 *     mdl__gemm_pack lays them out once at load, behind a header naming the level, N and K, so
 *     data packed for something else is ignored (B is used instead) rather than misread.
 * OpenBLAS is kept only for level 0 (no AVX2): Debian's 0.3.21 runs its generic Prescott
 * kernels on the AVX-512 Xeon we measured on, and lost to these kernels at every size tried
 * (e.g. 3136x64x576: 26 GFLOP/s vs 135; 64x64x784: 25 vs 160; one row: 5 vs 60). */
#include "ops.h"

#include <string.h>

#ifdef MDL_WITH_BLAS
void mdl__gemm_nt_blas(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc);
void mdl__gemm_nn_blas(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc);
/* Below this many multiply-adds the call overhead of BLAS dominates (measured in make bench). */
#define MDL_BLAS_MIN_MACS ((int64_t)1 << 14)
#endif

/* Dot product with four independent accumulators so the compiler can vectorize and pipeline. */
static float dot(const float *a, const float *b, int64_t k) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= k; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < k; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static void epilogue(int64_t M, int64_t N, const float *bias, float *C, int64_t ldc, float lo,
                     float hi) {
    for (int64_t m = 0; m < M; m++) {
        float *c = C + m * ldc;
        for (int64_t n = 0; n < N; n++) c[n] = mdl__clampf(c[n] + (bias ? bias[n] : 0.0f), lo, hi);
    }
}

void mdl__gemm_nt_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc,
                      float lo, float hi) {
    /* Rows of B are contiguous: each output is one dot product (GEMV for M == 1). */
    for (int64_t m = 0; m < M; m++) {
        const float *a = A + m * lda;
        float *c = C + m * ldc;
        for (int64_t n = 0; n < N; n++) {
            float v = dot(a, B + n * ldb, K) + (bias ? bias[n] : 0.0f);
            c[n] = mdl__clampf(v, lo, hi);
        }
    }
}

/* Level 0: the portable loops, or OpenBLAS for large products when built with it. */
static void gemm_nt_portable(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                             const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc,
                             float lo, float hi) {
#ifdef MDL_WITH_BLAS
    /* One row is a GEMV over contiguous weight rows: our dot-product loop beat OpenBLAS sgemv at
       every size measured (64x64 .. 2048x512, 1 or 2 threads), so BLAS is for M >= 2 only. */
    if (M >= 2 && M * N * K >= MDL_BLAS_MIN_MACS) {
        mdl__gemm_nt_blas(M, N, K, A, lda, B, ldb, C, ldc);
        epilogue(M, N, bias, C, ldc, lo, hi);
        return;
    }
#endif
    mdl__gemm_nt_ref(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}

static void gemm_nn_portable(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                             const float *B, int64_t ldb, float *C, int64_t ldc) {
#ifdef MDL_WITH_BLAS
    if (M >= 2 && M * N * K >= MDL_BLAS_MIN_MACS) {
        mdl__gemm_nn_blas(M, N, K, A, lda, B, ldb, C, ldc);
        return;
    }
#endif
    /* i-k-j order: the inner loop streams a row of B and a row of C. */
    for (int64_t m = 0; m < M; m++) {
        float *c = C + m * ldc;
        memset(c, 0, (size_t)N * sizeof *c);
        for (int64_t k = 0; k < K; k++) {
            float a = A[m * lda + k];
            const float *b = B + k * ldb;
            for (int64_t n = 0; n < N; n++) c[n] += a * b[n];
        }
    }
}

#ifndef MDL_HAVE_X86_SIMD

/* ---- portable build: no packing -------------------------------------------------------------
   The reference kernel reads B's rows directly, which is already the ideal order for dot
   products, so nothing is packed. */

void mdl__gemm_nt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, const float *bias, float *C, int64_t ldc, float lo, float hi) {
    gemm_nt_portable(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}

void mdl__gemm_nn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float *C, int64_t ldc) {
    gemm_nn_portable(M, N, K, A, lda, B, ldb, C, ldc);
}

size_t mdl__gemm_pack_bytes(int64_t N, int64_t K) {
    (void)N;
    (void)K;
    return 0;
}

void mdl__gemm_pack(int64_t N, int64_t K, const float *B, int64_t ldb, void *packed) {
    (void)N;
    (void)K;
    (void)B;
    (void)ldb;
    (void)packed;
}

void mdl__gemm_nt_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, const void *packed, const float *bias,
                         float *C, int64_t ldc, float lo, float hi) {
    (void)packed;
    gemm_nt_portable(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}

void mdl__gemm_pack_kn(int64_t N, int64_t K, const float *B, int64_t ldb, void *packed) {
    mdl__gemm_pack(N, K, B, ldb, packed);
}

void mdl__gemm_nn_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, const void *packed, const float *bias,
                         float *C, int64_t ldc, float lo, float hi) {
    (void)packed;
    if (M <= 0 || N <= 0) return;
    gemm_nn_portable(M, N, K, A, lda, B, ldb, C, ldc);
    epilogue(M, N, bias, C, ldc, lo, hi);
}

#else /* MDL_HAVE_X86_SIMD */

/* ---- x86: dispatch by CPU level ------------------------------------------------------------ */
#include "x86/x86.h"

/* From this many rows of A packed panels are used; below, B's rows are read as they are (a GEMV
   gains nothing from panels).  At 2-3 rows both stream B from L2 once and trade places (dot
   tiles up to 20% ahead at K = 784, behind at K = 64); from 4 rows the microkernel is 2x ahead. */
#define PACKED_MIN_M 2

void mdl__gemm_nt_level(int level, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc,
                        float lo, float hi) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || level <= MDL_CPU_PORTABLE)
        gemm_nt_portable(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
    else if (level == MDL_CPU_AVX2)
        mdl__gemm_nt_avx2(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
    else
        mdl__gemm_nt_avx512(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}

void mdl__gemm_nn_level(int level, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || level <= MDL_CPU_PORTABLE)
        gemm_nn_portable(M, N, K, A, lda, B, ldb, C, ldc);
    else if (level == MDL_CPU_AVX2)
        mdl__gemm_nn_avx2(M, N, K, A, lda, B, ldb, C, ldc);
    else
        mdl__gemm_nn_avx512(M, N, K, A, lda, B, ldb, C, ldc);
}

/* Packed weights: a 64-byte header saying what the panels were made for (so that a model packed
   under another level, e.g. with another MDL_CPU_LEVEL, or a caller's wrong N/K falls back to B
   instead of misreading), then the panels of x86.h, 64-byte aligned. */
#define PACK_MAGIC 0x4B504D47u /* "GMPK" */
#define PACK_HEADER 64
typedef struct pack_header {
    uint32_t magic;
    int32_t level, nr, reserved;
    int64_t n, k;
} pack_header;
_Static_assert(sizeof(pack_header) <= PACK_HEADER, "pack header");

static int64_t panel_width(int level) {
    return level == MDL_CPU_AVX512 ? MDL_GEMM_NR_AVX512 : MDL_GEMM_NR_AVX2;
}

size_t mdl__gemm_pack_bytes_level(int level, int64_t N, int64_t K) {
    if (level <= MDL_CPU_PORTABLE || N <= 0 || K <= 0) return 0;
    int64_t half = panel_width(level) / 2;
    uint64_t cols = ((uint64_t)N + (uint64_t)half - 1) / (uint64_t)half * (uint64_t)half;
    size_t floats, bytes;
    if (__builtin_mul_overflow(cols, (uint64_t)K, &floats) ||
        __builtin_mul_overflow(floats, sizeof(float), &bytes) ||
        __builtin_add_overflow(bytes, (size_t)PACK_HEADER, &bytes))
        return 0; /* too large to pack: the caller keeps using B */
    return bytes;
}

/* Element (n, k) of B is at B[n * sn + k * sk]: [N,K] rows (sn = ldb, sk = 1) or [K,N] rows
   (sn = 1, sk = ldb); both give the same panels. */
static void pack_strided(int level, int64_t N, int64_t K, const float *B, int64_t sn, int64_t sk,
                         void *packed) {
    if (!mdl__gemm_pack_bytes_level(level, N, K)) return;
    int64_t nr = panel_width(level);
    pack_header h = {PACK_MAGIC, level, (int32_t)nr, 0, N, K};
    memset(packed, 0, PACK_HEADER);
    memcpy(packed, &h, sizeof h);
    float *p = (float *)((unsigned char *)packed + PACK_HEADER);
    for (int64_t j0 = 0; j0 < N;) {
        int64_t w = N - j0 <= nr / 2 ? nr / 2 : nr, nv = N - j0 < w ? N - j0 : w;
        for (int64_t k = 0; k < K; k++, p += w) {
            for (int64_t j = 0; j < nv; j++) p[j] = B[(j0 + j) * sn + k * sk];
            for (int64_t j = nv; j < w; j++) p[j] = 0.0f;
        }
        j0 += w;
    }
}

void mdl__gemm_pack_level(int level, int64_t N, int64_t K, const float *B, int64_t ldb,
                          void *packed) {
    pack_strided(level, N, K, B, ldb, 1, packed);
}

void mdl__gemm_pack_kn_level(int level, int64_t N, int64_t K, const float *B, int64_t ldb,
                             void *packed) {
    pack_strided(level, N, K, B, 1, ldb, packed);
}

/* Runs the microkernel over `packed` if it was packed for this level, N and K (and returns
   true); false leaves C alone. */
static bool run_panels(int level, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const void *packed, const float *bias, float *C, int64_t ldc, float lo,
                       float hi) {
    if (!packed || level <= MDL_CPU_PORTABLE || K <= 0) return false;
    pack_header h;
    memcpy(&h, packed, sizeof h);
    if (h.magic != PACK_MAGIC || h.level != level || h.n != N || h.k != K) return false;
    const float *panels = (const float *)((const unsigned char *)packed + PACK_HEADER);
    if (level == MDL_CPU_AVX2)
        mdl__gemm_panels_avx2(M, N, K, A, lda, panels, bias, C, ldc, lo, hi);
    else
        mdl__gemm_panels_avx512(M, N, K, A, lda, panels, bias, C, ldc, lo, hi);
    return true;
}

void mdl__gemm_nt_packed_level(int level, int64_t M, int64_t N, int64_t K, const float *A,
                               int64_t lda, const float *B, int64_t ldb, const void *packed,
                               const float *bias, float *C, int64_t ldc, float lo, float hi) {
    if (M <= 0 || N <= 0) return;
    /* Fewer rows than PACKED_MIN_M read B's rows as they are (a GEMV gains nothing from
       panels).  So does a B under a quarter panel wide: it wastes most of each panel vector,
       while long dot products amortize their horizontal sums (63x8x784: 68 GFLOP/s in panels,
       116 in dot tiles). */
    bool narrow = N <= panel_width(level) / 4 && K >= 128;
    if (((M >= PACKED_MIN_M && !narrow) || !B) &&
        run_panels(level, M, N, K, A, lda, packed, bias, C, ldc, lo, hi))
        return;
    mdl__gemm_nt_level(level, M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}

void mdl__gemm_nn_packed_level(int level, int64_t M, int64_t N, int64_t K, const float *A,
                               int64_t lda, const float *B, int64_t ldb, const void *packed,
                               const float *bias, float *C, int64_t ldc, float lo, float hi) {
    if (M <= 0 || N <= 0) return;
    /* B [K,N] has no contiguous rows for dot products: the panels serve every M. */
    if (run_panels(level, M, N, K, A, lda, packed, bias, C, ldc, lo, hi)) return;
    mdl__gemm_nn_level(level, M, N, K, A, lda, B, ldb, C, ldc);
    epilogue(M, N, bias, C, ldc, lo, hi);
}

void mdl__gemm_nt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, const float *bias, float *C, int64_t ldc, float lo, float hi) {
    mdl__gemm_nt_level(mdl__cpu_level(), M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}

void mdl__gemm_nn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float *C, int64_t ldc) {
    mdl__gemm_nn_level(mdl__cpu_level(), M, N, K, A, lda, B, ldb, C, ldc);
}

size_t mdl__gemm_pack_bytes(int64_t N, int64_t K) {
    return mdl__gemm_pack_bytes_level(mdl__cpu_level(), N, K);
}

void mdl__gemm_pack(int64_t N, int64_t K, const float *B, int64_t ldb, void *packed) {
    mdl__gemm_pack_level(mdl__cpu_level(), N, K, B, ldb, packed);
}

void mdl__gemm_nt_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, const void *packed, const float *bias,
                         float *C, int64_t ldc, float lo, float hi) {
    mdl__gemm_nt_packed_level(mdl__cpu_level(), M, N, K, A, lda, B, ldb, packed, bias, C, ldc, lo,
                              hi);
}

void mdl__gemm_pack_kn(int64_t N, int64_t K, const float *B, int64_t ldb, void *packed) {
    mdl__gemm_pack_kn_level(mdl__cpu_level(), N, K, B, ldb, packed);
}

void mdl__gemm_nn_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, const void *packed, const float *bias,
                         float *C, int64_t ldc, float lo, float hi) {
    mdl__gemm_nn_packed_level(mdl__cpu_level(), M, N, K, A, lda, B, ldb, packed, bias, C, ldc, lo,
                              hi);
}

#endif
