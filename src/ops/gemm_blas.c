/* OpenBLAS path of the float GEMM primitives (built only with BLAS=1). */
#include "ops.h"

#include <cblas.h>

void mdl__gemm_nt_blas(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc);
void mdl__gemm_nn_blas(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc);

void mdl__gemm_nt_blas(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, A, (int)lda,
                B, (int)ldb, 0.0f, C, (int)ldc);
}

void mdl__gemm_nn_blas(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, A,
                (int)lda, B, (int)ldb, 0.0f, C, (int)ldc);
}
