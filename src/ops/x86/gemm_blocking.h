/* Scalar blocking helpers shared by the AVX2 and AVX-512 GEMMs (compiled into each with its own
   flags; the vector microkernels differ, this bookkeeping does not). */
#ifndef MDL_X86_GEMM_BLOCKING_H
#define MDL_X86_GEMM_BLOCKING_H

#include <stdint.h>

/* Splits K into blocks of at most kmax of nearly equal size (no thin last block). */
static inline int64_t mdl__k_block(int64_t K, int64_t kmax) {
    int64_t nb = (K + kmax - 1) / kmax;
    return (K + nb - 1) / nb;
}

/* How the blocked loops find B (see gemm_avx512.c). */
enum { B_PANELS, B_ROWS_KN, B_ROWS_NT };

/* Packs B[n0:n1, k0:k0+kc] (B [N,K] row-major) as panels (x86.h) of kc rows and width nr (nr/2
   for the last narrow block) into dst. */
static inline void mdl__repack_panels(const float *B, int64_t ldb, int64_t N, int64_t n0, int64_t n1,
                                      int64_t k0, int64_t kc, int64_t nr, float *dst) {
    for (int64_t j0 = n0; j0 < n1;) {
        int64_t w = N - j0 <= nr / 2 ? nr / 2 : nr, nv = N - j0 < w ? N - j0 : w;
        for (int64_t j = 0; j < w; j++) {
            const float *src = B + (j0 + j) * ldb + k0;
            if (j < nv)
                for (int64_t k = 0; k < kc; k++) dst[k * w + j] = src[k];
            else
                for (int64_t k = 0; k < kc; k++) dst[k * w + j] = 0.0f;
        }
        dst += w * kc;
        j0 += w;
    }
}

#endif
