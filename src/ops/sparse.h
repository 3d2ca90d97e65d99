/*
 * Block-sparse weights and the sparse matrix product (internal; pruning, issue #15).
 *
 * A weight matrix W [N, K] (N outputs, K inputs: a FullyConnected weight, or a 1x1 convolution's
 * [Cout, Cin]) is cut into 8x1 blocks: rows n0 .. n0+7 of one column k, for n0 = 0, 8, 16, ...
 * (a "row group").  Only blocks with a non-zero value are stored: per row group, the columns of
 * its blocks in increasing order and their 8 values (rows past N are 0).  Why 8x1:
 *  - the product runs over the stored blocks only, one 8-lane FMA per block and input row, with
 *    the block's 8 weights in one vector and one input value broadcast: no gathers, and the
 *    same instruction mix as the dense microkernel, so the work falls with the block density;
 *  - 8 lanes are one AVX2 register (and half an AVX-512 or two NEON registers): one portable
 *    file layout serves every CPU;
 *  - the index costs 4 bytes per 32 bytes of values (12.5%), against 100% for scalar CSR.
 * Unstructured sparsity (element pruning) leaves few all-zero 8x1 blocks; the converter measures
 * the block density and keeps such a layer dense.
 *
 * Arithmetic contract (every variant is bit-identical to mdl__spmm_ref): output (m, n) is
 *     s = 0; for each stored block j of n's group, in order:  s = fmaf(w[j][n % 8], x[m, col[j]],
 * s) y[m, n] = clamp(s + bias[n], lo, hi)        (bias NULL: s; clamp as mdl__clampf)
 */
#ifndef MDL_OPS_SPARSE_H
#define MDL_OPS_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#define MDL_SPARSE_BN 8
#define MDL_SPMM_PIXELS 32 /* input rows per repacked tile (mdl__spmm_scratch_bytes) */

typedef struct mdl__bsr {
    int64_t N, K;
    int64_t nblocks;
    const int32_t *ptr; /* (N + 7) / 8 + 1 block offsets: group g has blocks ptr[g] .. ptr[g+1]-1 */
    const int32_t *col; /* per block: its column, increasing within a group */
    union {             /* per block: 8 values (rows n0 .. n0+7), 32-byte aligned when built here */
        const float *val;   /* a float32 weight */
        const int8_t *val8; /* an int8 weight (mdl__qspmm) */
    };
} mdl__bsr;

static inline int64_t mdl__bsr_groups(int64_t N) { return (N + MDL_SPARSE_BN - 1) / MDL_SPARSE_BN; }

/* Number of 8x1 blocks of W [N, K] (row stride ldw) holding a non-zero (or NaN) value. */
int64_t mdl__bsr_count(int64_t N, int64_t K, const float *W, int64_t ldw);

/* Bytes mdl__bsr_build needs for nblocks blocks of an N-row matrix (values first, 32-byte
   aligned when mem is). */
size_t mdl__bsr_bytes(int64_t N, int64_t nblocks);

/* Stores the non-zero blocks of W [N, K] into mem (mdl__bsr_bytes(N, mdl__bsr_count(...))
   bytes, 32-byte aligned) and describes them in *out.  K must be below 2^31. */
void mdl__bsr_build(int64_t N, int64_t K, const float *W, int64_t ldw, void *mem, mdl__bsr *out);

/* The same for an int8 weight (a block is non-zero when one of its values is; 8 bytes of
   values per block). */
int64_t mdl__bsr_count_s8(int64_t N, int64_t K, const int8_t *W, int64_t ldw);
size_t mdl__bsr_bytes_s8(int64_t N, int64_t nblocks);
void mdl__bsr_build_s8(int64_t N, int64_t K, const int8_t *W, int64_t ldw, void *mem, mdl__bsr *out);

/* Scratch bytes the product of M input rows of K values needs (the same on every CPU): a tile
   of input rows repacked column by column for the AVX-512 variant. */
size_t mdl__spmm_scratch_bytes(int64_t M, int64_t K);

/* What a kernel reserves as scratch for the product (arena scratch is only 16-byte aligned: room
   to align it) and the aligned start mdl__spmm gets. */
static inline size_t mdl__spmm_kernel_scratch(int64_t M, int64_t K) {
    size_t s = mdl__spmm_scratch_bytes(M, K);
    return s ? s + 64 : 0;
}
static inline void *mdl__spmm_scratch_align(void *p) {
    return (void *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* Y [M, N] = X [M, K] * W^T (+ bias) clamped to [lo, hi], W block-sparse (contract above).
   Leading dimensions in elements; scratch: mdl__spmm_scratch_bytes(M, K) bytes, 64-byte
   aligned (unused by the reference).  mdl__spmm picks the variant for this CPU
   (MDL_CPU_LEVEL). */
void mdl__spmm_ref(int64_t M, const float *X, int64_t ldx, const mdl__bsr *W, const float *bias,
                   float *Y, int64_t ldy, float lo, float hi, void *scratch);
void mdl__spmm(int64_t M, const float *X, int64_t ldx, const mdl__bsr *W, const float *bias,
               float *Y, int64_t ldy, float lo, float hi, void *scratch);

/* mdl__spmm inside a kernel's run, split over c's workers (c->par) when the product is large:
   by input rows when there are many, else by row groups of W; each worker's scratch is
   mdl__par_scratch(c, worker) (a kernel using this sets MDL__KERNEL_WORKER_SCRATCH and reserves
   mdl__spmm_kernel_scratch(M, K)).  Bit-identical to one call: every output keeps its chain. */
struct mdl__kctx;
void mdl__spmm_par(const struct mdl__kctx *c, int64_t M, const float *X, int64_t ldx,
                   const mdl__bsr *W, const float *bias, float *Y, int64_t ldy, float lo, float hi);

/* ---- int8: the int8 GEMM core's contract (int8.h) on block-sparse weights ------------------
   C[m, n] = mdl__requant(bias[n] + sum over n's stored blocks j of val8[j][n % 8] * A[m, col[j]],
   mult[n], shift[n], zy, lo, hi), with p's constants (the bias with the input zero point folded
   in over every weight, mdl__qgemm_pack).  Integer sums are exact (mdl__qgemm_check bounds them
   as for the dense weights), so every variant equals the dense core's result bit for bit.  The
   GEMM core runs this when its record was packed from a block-sparse weight (mdl__qgemm_desc.
   sparse). */
struct mdl__qgemm_packed;
void mdl__qspmm_ref(const struct mdl__qgemm_packed *p, const mdl__bsr *W, int64_t M, const int8_t *A,
                    int64_t lda, int8_t *C, int64_t ldc);
/* The variant for this CPU (MDL_CPU_LEVEL). */
void mdl__qspmm(const struct mdl__qgemm_packed *p, const mdl__bsr *W, int64_t M, const int8_t *A,
                int64_t lda, int8_t *C, int64_t ldc);

#ifdef MDL_HAVE_X86_SIMD
void mdl__qspmm_avx2(const struct mdl__qgemm_packed *p, const mdl__bsr *W, int64_t M, const int8_t *A,
                     int64_t lda, int8_t *C, int64_t ldc);
void mdl__spmm_avx2(int64_t M, const float *X, int64_t ldx, const mdl__bsr *W, const float *bias,
                    float *Y, int64_t ldy, float lo, float hi, void *scratch);
void mdl__spmm_avx512(int64_t M, const float *X, int64_t ldx, const mdl__bsr *W, const float *bias,
                      float *Y, int64_t ldy, float lo, float hi, void *scratch);
#endif

#endif
