/* Float GEMM/GEMV primitives.  The portable path is the oracle for the BLAS path. */
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

#ifdef MDL_WITH_BLAS
static void epilogue(int64_t M, int64_t N, const float *bias, float *C, int64_t ldc, float lo,
                     float hi) {
    for (int64_t m = 0; m < M; m++) {
        float *c = C + m * ldc;
        for (int64_t n = 0; n < N; n++) c[n] = mdl__clampf(c[n] + (bias ? bias[n] : 0.0f), lo, hi);
    }
}
#endif

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

void mdl__gemm_nt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, const float *bias, float *C, int64_t ldc, float lo, float hi) {
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

void mdl__gemm_nn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float *C, int64_t ldc) {
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

/* ---- packed weights ------------------------------------------------------------------------
   Portable layout: none (the reference kernel reads B's rows directly, which is already the
   ideal order for dot products), so nothing is packed. */

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
    mdl__gemm_nt(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}
