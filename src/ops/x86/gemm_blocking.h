/* Scalar blocking helpers shared by the AVX2 and AVX-512 GEMMs (compiled into each with its own
   flags; the vector microkernels differ, this bookkeeping does not). */
#ifndef MDL_X86_GEMM_BLOCKING_H
#define MDL_X86_GEMM_BLOCKING_H

#include <stdint.h>

/* K block: MR rows x KC of A (12-16 KiB) stay in L1 while every panel of the N block passes;
   KC x NC of the panels (512 KiB) stay in L2 across the M loop. */
#define KC 512
#define NC 256
/* Unpacked A B^T with many rows packs B block by block into a stack buffer of REPACK_FLOATS
   (32 KiB) and runs the microkernel; fewer rows use the dot tiles.  Packing costs about a cycle
   per element of B; it paid off from 64 rows at K = 784 and from 16 rows at K = 16, where each
   dot product is too short to amortize its horizontal sum.  A B under a quarter panel (NR, the
   includer's panel width) wide stays with the dot tiles when K is long (see
   mdl__gemm_nt_packed_level in gemm.c). */
#define REPACK(M, N, K)                                                                            \
    (((M) >= 64 || ((M) >= 16 && (K) <= 64)) && !((N) <= NR / 4 && (K) >= 128))
#define REPACK_FLOATS 8192

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
