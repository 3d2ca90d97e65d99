/*
 * x86 SIMD variants of the float GEMM primitives (internal; only built with MDL_HAVE_X86_SIMD).
 * src/ops/gemm.c picks one per call from mdl__cpu_level(); tests call them directly.
 *
 * Every entry point computes C[M,N] = A[M,K] * B^T (+ bias[N]) clamped to [lo, hi] like
 * mdl__gemm_nt (ops.h), and is correct for any M, N >= 0 and K >= 1 and any leading dims.
 */
#ifndef MDL_OPS_X86_H
#define MDL_OPS_X86_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CPU levels, in increasing order. */
#define MDL_CPU_PORTABLE 0
#define MDL_CPU_AVX2 1   /* AVX2 + FMA */
#define MDL_CPU_AVX512 2 /* AVX-512 F + VL + BW + DQ (+ FMA) */
/* A sub-level of MDL_CPU_AVX512, for the int8 GEMM only: AVX-512 VNNI + AMX-TILE + AMX-INT8 with
   the OS's permission.  mdl__cpu_level() never returns it (the float kernels are those of
   MDL_CPU_AVX512); mdl__cpu_sublevel() and mdl__cpu_has_amx() do. */
#define MDL_CPU_AMX 3

/* The best level this CPU (and OS) supports, lowered by the environment variable MDL_CPU_LEVEL
   (0, 1, 2 or 3; it can only lower, to test or benchmark the other variants; 2 = AVX-512
   without AMX).  At most MDL_CPU_AVX512.  Read once, then cached; thread safe. */
int mdl__cpu_level(void);

/* The same with MDL_CPU_AMX where AMX is usable (and MDL_CPU_LEVEL does not lower it). */
int mdl__cpu_sublevel(void);

/* AMX for the int8 GEMM: mdl__cpu_sublevel() == MDL_CPU_AMX.  The first call (of any of these
   functions) asks Linux for the tile data permission (arch_prctl), once per process. */
bool mdl__cpu_has_amx(void);

/* AVX-512 VNNI (vpdpbusd, the int8 kernels): only when mdl__cpu_level() is MDL_CPU_AVX512, so
   MDL_CPU_LEVEL=1 or 0 turns it off too.  Cached like the level. */
bool mdl__cpu_has_vnni(void);
/* AVX-512 VBMI (vpermb) as well as VNNI: the block-sparse int8 conv (qsparse_conv_avx512.c). */
bool mdl__cpu_has_vbmi(void);

/* ---- packed B panels ------------------------------------------------------------------------
   B [N,K] is cut into column panels: starting at column j0 = 0, NR, 2 NR, ... each panel is
   w = NR columns wide, except the last, which is NR/2 wide when at most NR/2 columns are left.
   A panel holds K rows of w floats (row k = B[j0 .. j0+w-1, k]), columns past N zero; panels
   follow each other (the next starts w * K floats later).  NR is the level's panel width below;
   panels must start 64-byte aligned. */
#define MDL_GEMM_NR_AVX2 16
#define MDL_GEMM_NR_AVX512 32

/* Unpacked C = A B^T: register-tiled dot products over the contiguous rows of A and B (the GEMV
   for M == 1, and few rows); with many rows, B is packed block by block into a 32 KiB stack
   buffer and multiplied by the panel microkernel. */
void mdl__gemm_nt_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc,
                       float lo, float hi);
void mdl__gemm_nt_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc,
                         float lo, float hi);

/* C = A B^T with B given as the panels above (for the level's NR). */
void mdl__gemm_panels_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                           const float *panels, const float *bias, float *C, int64_t ldc,
                           float lo, float hi);
void mdl__gemm_panels_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                             const float *panels, const float *bias, float *C, int64_t ldc,
                             float lo, float hi);

/* C[M,N] = A[M,K] * B[K,N] (row-major B, no bias or clamp) for MatMul: B's rows are already
   panel rows, so the GEMM microkernel reads them in place. */
void mdl__gemm_nn_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc);
void mdl__gemm_nn_avx512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float *C, int64_t ldc);

/* ---- parts of one product, for a parallel split (src/ops/gemm.c) ----------------------------
   kind NT: mdl__gemm_nt_*; PANELS: mdl__gemm_panels_* (B is the panels); NN: mdl__gemm_nn_*
   (bias NULL, no clamp).  mdl__gemm_part_grain_* gives the row and column granules: rows
   [m0, m1) x columns [n0, n1) with m0, m1 multiples of *mg (or M) and n0, n1 multiples of *ng
   (or N) are computed by mdl__gemm_part_* with exactly the arithmetic the whole call gives
   them.  *ng == N: the columns cannot be split. */
enum { MDL_GEMM_PART_NT, MDL_GEMM_PART_PANELS, MDL_GEMM_PART_NN };
typedef struct mdl__gemm_part {
    int kind;
    int64_t M, N, K;
    const float *A, *B, *bias;
    int64_t lda, ldb, ldc;
    float *C;
    float lo, hi;
} mdl__gemm_part;
void mdl__gemm_part_grain_avx2(const mdl__gemm_part *p, int64_t *mg, int64_t *ng);
void mdl__gemm_part_grain_avx512(const mdl__gemm_part *p, int64_t *mg, int64_t *ng);
void mdl__gemm_part_avx2(const mdl__gemm_part *p, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
void mdl__gemm_part_avx512(const mdl__gemm_part *p, int64_t m0, int64_t m1, int64_t n0,
                           int64_t n1);

/* Level-explicit forms of the ops.h primitives (defined in src/ops/gemm.c), so that tests and
   benchmarks can run every variant on one machine: level must be <= mdl__cpu_level().
   mdl__gemm_nt_packed_level uses `packed` only if it was packed for the same level, N and K;
   otherwise it computes from B. */
void mdl__gemm_nt_level(int level, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc,
                        float lo, float hi);
size_t mdl__gemm_pack_bytes_level(int level, int64_t N, int64_t K);
void mdl__gemm_pack_level(int level, int64_t N, int64_t K, const float *B, int64_t ldb,
                          void *packed);
void mdl__gemm_nt_packed_level(int level, int64_t M, int64_t N, int64_t K, const float *A,
                               int64_t lda, const float *B, int64_t ldb, const void *packed,
                               const float *bias, float *C, int64_t ldc, float lo, float hi);
void mdl__gemm_pack_kn_level(int level, int64_t N, int64_t K, const float *B, int64_t ldb,
                             void *packed);
void mdl__gemm_nn_packed_level(int level, int64_t M, int64_t N, int64_t K, const float *A,
                               int64_t lda, const float *B, int64_t ldb, const void *packed,
                               const float *bias, float *C, int64_t ldc, float lo, float hi);
void mdl__gemm_nn_level(int level, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float *C, int64_t ldc);

/* Level-explicit forms of the parallel primitives (ops.h), for tests. */
struct mdl__par;
void mdl__gemm_nt_packed_par_level(int level, const struct mdl__par *p, int64_t M, int64_t N,
                                   int64_t K, const float *A, int64_t lda, const float *B,
                                   int64_t ldb, const void *packed, const float *bias, float *C,
                                   int64_t ldc, float lo, float hi);
void mdl__gemm_nn_packed_par_level(int level, const struct mdl__par *p, int64_t M, int64_t N,
                                   int64_t K, const float *A, int64_t lda, const float *B,
                                   int64_t ldb, const void *packed, const float *bias, float *C,
                                   int64_t ldc, float lo, float hi);
int64_t mdl__gemm_nt_packed_granule_level(int level, int64_t M, int64_t N, int64_t K,
                                          const float *B, const void *packed);
void mdl__gemm_nt_packed_rows_level(int level, int64_t M, int64_t m0, int64_t m1, int64_t N,
                                    int64_t K, const float *A, int64_t lda, const float *B,
                                    int64_t ldb, const void *packed, const float *bias, float *C,
                                    int64_t ldc, float lo, float hi);

#endif
