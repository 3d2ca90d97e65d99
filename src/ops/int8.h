/*
 * The int8 GEMM core shared by the quantized FULLY_CONNECTED, MATMUL and CONV2D kernels
 * (src/ops/gemm_int8.c; x86 variants in src/ops/x86/gemm_int8_*.c).  Internal.
 *
 * It computes, for rows m of an int8 matrix A[M,K] (leading dim lda) and a constant int8 weight
 * matrix W with N columns (element (n, k) at w[n * sn + k * sk]: [N,K] rows for FC, [K,N] rows
 * for HWIO conv weights and MatMul's B):
 *
 *     acc[m,n] = bias[n] - za * sum_k W[n,k] + sum_k A[m,k] * W[n,k]        (int32, exact)
 *     C[m,n]   = mdl__requant(acc[m,n], mul[n], zy, lo, hi)                  (int8, ldc)
 *
 * i.e. requant(bias + sum (a - za) * w): the input zero point is folded into the bias once at
 * load.  Every variant gives identical results (integer sums are exact; the SIMD epilogues are
 * lane-wise transcriptions of mdl__requant).
 *
 * Overflow: mdl__qgemm_check proves that bias + sum_k (a - za) * w and every partial sum of the
 * folded form stay in int32 (|bias[n]| + 256 * sum_k |W[n,k]| <= INT32_MAX); SIMD variants
 * accumulate with wrap-around, which is exact whenever the true result fits.
 *
 * Variants (mdl__qgemm_variant):
 *   MDL_QGEMM_REF   plain C, reads W in place (packs only multipliers and the folded bias, so
 *                   firmware keeps no second copy of the weights);
 *   MDL_QGEMM_AVX2  AVX2: sign-extends to int16 and multiplies pairs with vpmaddwd (exact);
 *   MDL_QGEMM_VNNI  AVX-512 VNNI: vpdpbusd on W + 128 (unsigned) x A (signed); the extra
 *                   128 * sum_k A[m,k] is subtracted per row at the end.
 * The packed data records the variant it was made for; run falls back to the reference when it
 * differs from the current one (e.g. another MDL_CPU_LEVEL), never misreading it.
 *
 * The kernels (src/ops/dense_int8.c, conv_int8.c) validate operands with the mdl__qcheck_*
 * helpers below, describe each weight matrix with a mdl__qgemm_desc, and call check (prepare),
 * pack (load) and run.
 */
#ifndef MDL_OPS_INT8_H
#define MDL_OPS_INT8_H

#include "ops.h"
#include "quant/quant.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { MDL_QGEMM_REF = 0, MDL_QGEMM_AVX2, MDL_QGEMM_VNNI, MDL_QGEMM_COUNT };

/* The best variant on this CPU (honours MDL_CPU_LEVEL): REF in builds without x86 SIMD. */
int mdl__qgemm_variant(void);

/* One weight matrix and its requantization, as pack needs it. */
typedef struct mdl__qgemm_desc {
    int64_t N, K;
    const int8_t *w; /* W(n, k) = w[n * sn + k * sk] */
    int64_t sn, sk;
    const int32_t *bias; /* [N] or NULL */
    int32_t za;          /* zero point of A */
    double a_scale, y_scale;
    const float *w_scale; /* [1] or [N] */
    int32_t nw_scale;
    int32_t zy, lo, hi; /* output zero point and clamp */
    /* Block-sparse W [N, K] (src/ops/sparse.h, int8 values; w then unused): pack it with
       MDL_QGEMM_REF (no panels); the record keeps this pointer, and run computes the sparse
       product (mdl__qspmm), the same result as the dense weights.  NULL: dense. */
    const struct mdl__bsr *sparse;
} mdl__qgemm_desc;

/* Checks what prepare can check: every multiplier a_scale * w_scale[n] / y_scale representable,
   and the overflow bound above (when d->w is set).  Failures go through mdl__fail, naming the
   weight tensor wname and the channel. */
mdl_status mdl__qgemm_check(const mdl__kctx *c, const char *wname, const mdl__qgemm_desc *d);

/* Bytes of packed data for variant (header, per-channel constants, weights in the variant's
   layout); 0 if the sizes overflow.  A multiple of 64. */
size_t mdl__qgemm_pack_bytes(int variant, int64_t N, int64_t K);

/* Fills packed (mdl__qgemm_pack_bytes(variant, N, K) bytes, 64-byte aligned) from d.  d must have
   passed mdl__qgemm_check. */
void mdl__qgemm_pack(int variant, const mdl__qgemm_desc *d, void *packed);

/* Scratch bytes mdl__qgemm_run needs for N x K weights: the same on every CPU. */
size_t mdl__qgemm_scratch_bytes(int64_t N, int64_t K);

/* C = requant(A W) for M rows, with the data packed above.  w/sn/sk are the original weights
   (the reference reads them).  scratch: mdl__qgemm_scratch_bytes(N, K) bytes, 16-byte aligned.
   Runs the packed variant if it is the current one, else the reference. */
void mdl__qgemm_run(const void *packed, int64_t M, const int8_t *A, int64_t lda, const int8_t *w,
                    int64_t sn, int64_t sk, int8_t *C, int64_t ldc, void *scratch);

/* mdl__qgemm_run for kernel c (N x K weights): M rows split over c's workers when the product is
   worth it, each with its worker's scratch (the kernel needs MDL__KERNEL_WORKER_SCRATCH);
   bit-identical to the serial call. */
void mdl__qgemm_run_par(const mdl__kctx *c, const void *packed, int64_t M, int64_t N, int64_t K,
                        const int8_t *A, int64_t lda, const int8_t *w, int64_t sn, int64_t sk,
                        int8_t *C, int64_t ldc);

/* The same at an explicit variant (<= mdl__qgemm_variant(); tests and benchmarks): runs that
   variant if packed was made for it, else the reference (any record serves the reference). */
void mdl__qgemm_run_variant(int variant, const void *packed, int64_t M, const int8_t *A,
                            int64_t lda, const int8_t *w, int64_t sn, int64_t sk, int8_t *C,
                            int64_t ldc, void *scratch);

/* acc[n] += a * w[n] for n < N (the reference loops' inner step; the caller keeps the sums in
   int32). */
void mdl__qaxpy(int32_t *restrict acc, int32_t a, const int8_t *restrict w, int64_t N);

/* ---- what the x86 files implement (x86/int8_x86.h has their layouts) ----------------------- */

/* The packed record's view for the kernels. */
typedef struct mdl__qgemm_packed {
    int64_t N, K;
    const int32_t *mult, *shift, *bias; /* [Npad] each (padding: mult 0, bias 0) */
    const void *panels;                 /* the variant's weight layout */
    int32_t zy, lo, hi;
} mdl__qgemm_packed;

/* C = requant(A W) with row m of A the concatenation of nseg segments of K / nseg bytes, segment
   q at A + m * lda + seg[q]: a convolution's receptive fields read in place, one segment per
   kernel row.  Only where the variant can read A that way (AVX2: any segment length; VNNI: K /
   nseg a multiple of 4, its 4-byte groups must not straddle segments); false (nothing done)
   otherwise: the caller gathers the rows (im2col) and calls mdl__qgemm_run, with the same
   result.  scratch: mdl__qgemm_scratch_bytes(N, K) bytes, as for mdl__qgemm_run. */
bool mdl__qgemm_run_segs(const void *packed, int64_t M, const int8_t *A, int64_t lda,
                         const int64_t *seg, int nseg, int8_t *C, int64_t ldc, void *scratch);

/* Scratch an earlier AVX-512 VNNI depthwise kernel used for C channels, KH <= 4, stride 1 (a row
   of interleaved input quads, the interleaved weights and the corrected bias).  No kernel needs
   it now (mdl__qdw_vnni_reg builds the quads in registers); prepare still reserves it, so that
   plans stored in existing .mdl files stay the ones it computes.  0 on overflow. */
size_t mdl__qdw4_scratch_bytes(int64_t C, int64_t OW, int64_t KW, int64_t sw, int64_t dw);

/* The packed record's constants and panels, or false if packed is not one. */
bool mdl__qgemm_view(const void *packed, mdl__qgemm_packed *v);

/* ---- operand checks shared by the int8 kernels (prepare) ------------------------------------
   Each fails through mdl__fail with a message naming the tensor. */

/* Input/output quantization of a layer, and its fused activation as a quantized clamp. */
typedef struct mdl__qio {
    double sx, sy;
    int32_t zx, zy, lo, hi;
} mdl__qio;

/* x int8 with one scale/zero point; ctx->out[0] declared int8 with one scale/zero point; act
   (may be NULL) a known kind.  Fills io. */
mdl_status mdl__qcheck_io(const mdl__kctx *c, const mdl__tensor *x, const mdl_fused_act *act,
                          mdl__qio *io);

/* w int8, constant, symmetric (every zero point 0), one scale or one per index of `axis`. */
mdl_status mdl__qcheck_weight(const mdl__kctx *c, const mdl__tensor *w, int32_t axis);

/* b int32, constant, zero point 0, scale sx * w's scale of the channel (relative difference
   <= 1e-4), or no parameters (that scale implied).  b's shape is checked by the caller. */
mdl_status mdl__qcheck_bias(const mdl__kctx *c, const mdl__tensor *b, double sx,
                            const mdl__tensor *w);

#endif
