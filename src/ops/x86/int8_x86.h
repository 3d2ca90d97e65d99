/*
 * x86 variants of the int8 GEMM core (contract in src/ops/int8.h; only built with
 * MDL_HAVE_X86_SIMD).  Both compute C = requant(bias + A W) for M >= 1 rows and any N >= 1,
 * K >= 1, from the packed record p, bit-identical to the reference.
 *
 * Weight layouts (written by mdl__qgemm_pack, src/ops/gemm_int8.c), panels following each other,
 * the first 64-byte aligned:
 *   AVX2: panels of 8 columns; a panel is ceil(K/2) groups of 16 bytes, byte 2j + r of group q
 *         being W(n0 + j, 2q + r) (int8; 0 past K or N).  vpmovsxbw turns a group into the 16
 *         int16 that vpmaddwd pairs with a broadcast pair (A[m,2q], A[m,2q+1]).
 *   VNNI: panels of 16 columns; a panel is ceil(K/4) groups of 64 bytes, byte 4j + r of group q
 *         being W(n0 + j, 4q + r) + 128 as uint8 (0 past K or N, which adds nothing).
 */
#ifndef MDL_OPS_INT8_X86_H
#define MDL_OPS_INT8_X86_H

#include "ops/int8.h"

#define MDL_QGEMM_NR_AVX2 8 /* columns per panel */
#define MDL_QGEMM_NR_VNNI 16
#define MDL_QGEMM_MR_AVX2 3 /* rows of A the AVX2 kernel widens to int16 at once */

/* a16: scratch for MDL_QGEMM_MR_AVX2 rows of round_up(K, 2) int16 (mdl__qgemm_scratch_bytes). */
void mdl__qgemm_avx2(const mdl__qgemm_packed *p, int64_t M, const int8_t *A, int64_t lda, int8_t *C,
                     int64_t ldc, int16_t *a16);
void mdl__qgemm_vnni(const mdl__qgemm_packed *p, int64_t M, const int8_t *A, int64_t lda, int8_t *C,
                     int64_t ldc);
/* mdl__qgemm_avx2 with row m of A the concatenation of nseg segments of K / nseg bytes (any
   length), segment q at A + m * lda + seg[q]. */
void mdl__qgemm_avx2_segs(const mdl__qgemm_packed *p, int64_t M, const int8_t *A, int64_t lda,
                          const int64_t *seg, int nseg, int8_t *C, int64_t ldc, int16_t *a16);
/* The same with row m of A the concatenation of nseg segments of K / nseg bytes (a multiple of
   4), segment q at A + m * lda + seg[q]: a convolution reads its receptive fields straight from
   the input (one segment per kernel row), without im2col. */
void mdl__qgemm_vnni_segs(const mdl__qgemm_packed *p, int64_t M, const int8_t *A, int64_t lda,
                          const int64_t *seg, int nseg, int8_t *C, int64_t ldc);

/* The VNNI-packed product by AMX tiles (gemm_int8_amx_avx512.c; only where mdl__cpu_has_amx()),
   rows of A as in mdl__qgemm_vnni_segs (nseg 1, seg {0} for a plain matrix).  False (nothing
   done) where it cannot read A in place: K not a multiple of 4, or with several segments, a
   segment length not a multiple of 64. */
bool mdl__qgemm_amx(const mdl__qgemm_packed *p, int64_t M, const int8_t *A, int64_t lda,
                    const int64_t *seg, int nseg, int8_t *C, int64_t ldc);

/* Depthwise conv with channel multiplier 1 (conv_int8.c): y[n,oh,ow,c] = requant(bias[c] +
   sum over the taps inside the input of (x[n,ih,iw,c] - zx) * w[kh,kw,c]); p holds the
   per-channel multipliers and bias (padded to a multiple of 16 channels). */
typedef struct mdl__qdw_args {
    const int8_t *x, *w; /* x NHWC [N,H,W,C]; w [KH,KW,C] */
    int8_t *y;           /* [N,OH,OW,C] */
    const mdl__qgemm_packed *p;
    int32_t zx;
    int64_t N, H, W, C, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl;
} mdl__qdw_args;
/* First tap index k in [0, K) with 0 <= i0 + k * d < n, and one past the last. */
static inline void mdl__qdw_tap_range(int64_t i0, int64_t d, int64_t K, int64_t n, int64_t *k0,
                                      int64_t *k1) {
    int64_t lo = i0 >= 0 ? 0 : (-i0 + d - 1) / d;
    int64_t hi = i0 >= n ? 0 : (n - 1 - i0) / d + 1;
    *k0 = lo < K ? lo : K;
    *k1 = hi < K ? hi : K;
    if (*k1 < *k0) *k1 = *k0;
}

void mdl__qdw_avx2(const mdl__qdw_args *a);
/* AVX-512, called only where VNNI is: the kernels with more than 4 rows (mdl__qdw_vnni_reg below
   takes the others) */
void mdl__qdw_vnni(const mdl__qdw_args *a);

/* Depthwise by vpdpbusd with each column's kernel-row quads built in registers (KH <= 4, any
   KW, strides and dilations; gemm_int8_avx512.c): no scratch.  extra: the constants
   mdl__qdw_pack wrote at load, mdl__qdw_pack_bytes(C, KH, KW) bytes (0: not this kernel's shape),
   64-byte aligned. */
size_t mdl__qdw_pack_bytes(int64_t C, int64_t KH, int64_t KW);
void mdl__qdw_pack(const mdl__qgemm_packed *p, const int8_t *w, int32_t zx, int64_t C, int64_t KH,
                   int64_t KW, void *extra);
void mdl__qdw_vnni_reg(const mdl__qdw_args *a, const void *extra);

/* CONV2D whose kernel row reads few values (KW * C <= MDL_QCS_MAX_RUN, no groups, no horizontal
   dilation; conv_int8.c): direct, without im2col.  The input is a band of padded rows (padding
   = zx) widened to int16, rows of rs elements, one readable element past the band's end; the
   weights are packed per kernel row as int16 pairs of adjacent row values (the last pair's
   second weight 0 when KW * C is odd) for every output channel, so one vpmaddwd multiplies a
   pair of input values (one 32-bit broadcast) with 8 or 16 channels.  y[oh, ow, oc] =
   requant(p->bias[oc] + sum x * w): p's bias has the zero point folded in over every tap
   (mdl__qgemm_pack), which the zx padding makes exact, so the result is the GEMM core's. */
#define MDL_QCS_MAX_RUN 16
typedef struct mdl__qcs_args {
    const int16_t *x;  /* the band's first padded row */
    int64_t rs;        /* elements per padded row */
    int64_t OH, OW;    /* output rows of this band, output columns */
    int64_t sh, sw, dh, C, KH, P; /* P: pairs per kernel row, (KW * C + 1) / 2 */
    const mdl__qgemm_packed *p;
    const int32_t *w; /* [KH][P][ocpad] pairs (mdl__qcs_pack) */
    int64_t OC, ocpad;
    int8_t *y; /* the band's first output pixel, OC values per pixel */
} mdl__qcs_args;
/* Bytes of the packed weights (64-byte multiple), and the packing from HWIO w [KH, KW, C, OC]. */
size_t mdl__qcs_pack_bytes(int64_t KH, int64_t KW, int64_t C, int64_t OC);
void mdl__qcs_pack(const int8_t *w, int64_t KH, int64_t KW, int64_t C, int64_t OC, void *out);
void mdl__qcs_avx2(const mdl__qcs_args *a);
void mdl__qcs_vnni(const mdl__qcs_args *a); /* AVX-512 VNNI (vpdpwssd); AVX-512 alone: avx2 */

/* CONV2D with block-sparse weights (8x1 blocks over output channels, sparse.h) whose kernel row
   reads at most 128 bytes (KW * C <= 128, no groups, no horizontal dilation; conv_int8.c),
   AVX-512 VNNI + VBMI (qsparse_conv_avx512.c).  Per output pixel, vpermb (vpermt2b for a row
   longer than 64 bytes) gathers the input value of every stored block from the pixel's KH kernel
   rows of a padded band (values + 128, unsigned; index vectors and masks packed at load) into
   one byte vector, each 8-channel group's blocks in quads; one vpdpbusd multiplies a quad of two
   groups with their 16 channels' 4 weights.  The packed bias subtracts the 128 * (sum of the
   weights) the unsigned inputs add; integer sums are exact, the epilogue is mdl__requant
   lane-wise: the GEMM core's result.  0 bytes: not this kernel's shape. */
#define MDL_QSC_MAX_RUN 128
size_t mdl__qsc_pack_bytes(const struct mdl__bsr *W, int64_t KH, int64_t KWC);
void mdl__qsc_pack(const mdl__qgemm_packed *p, const struct mdl__bsr *W, int64_t KH, int64_t KWC,
                   void *out);
typedef struct mdl__qsc_args {
    const uint8_t *x; /* the band's first padded row (values + 128) */
    int64_t rs;       /* bytes per padded row */
    int64_t OH, OW;   /* output rows of this band, output columns */
    int64_t sh, sw, dh, C, KH, KWC;
    const mdl__qgemm_packed *p;
    const void *pk; /* mdl__qsc_pack's data */
    int64_t OC;
    int8_t *y; /* the band's first output pixel, OC values per pixel */
} mdl__qsc_args;
void mdl__qsc_vnni(const mdl__qsc_args *a);

/* ---- elementwise (q8_elem_avx2.c; identical to the portable loops) ------------------------- */

/* QUANTIZE of n floats with one scale and zero point into int8 (qmin -128) or uint8 (qmin 0). */
void mdl__quantize_avx2(const float *x, int64_t n, float scale, int32_t zero_point, int32_t qmin,
                        int32_t qmax, void *out);

/* int8 ADD / SUB of two rows of n elements (no broadcasting): binary_int8.c's add_one per lane.
   left_shift: the inputs' common left shift (20); lim: the bound mdl__q8_requant clamps the sum
   to for mo (INT32_MAX when mo.shift <= 0). */
typedef struct mdl__q8_add_args {
    int32_t za, zb, zy, lo, hi, left_shift, lim;
    mdl__qmul ma, mb, mo;
} mdl__q8_add_args;
void mdl__add_q8_avx2(const int8_t *a, const int8_t *b, int8_t *o, int64_t n,
                      const mdl__q8_add_args *p, bool sub);

/* The same on AVX-512 (q8_elem_avx512.c; mdl__cpu_level() >= MDL_CPU_AVX512). */
void mdl__add_q8_avx512(const int8_t *a, const int8_t *b, int8_t *o, int64_t n,
                        const mdl__q8_add_args *p, bool sub);

/* int8 MUL of two rows (binary_int8.c's mul_one per lane; ma, mb, left_shift unused). */
void mdl__mul_q8_avx2(const int8_t *a, const int8_t *b, int8_t *o, int64_t n,
                      const mdl__q8_add_args *p);

/* o[c] = max over the window [h0, h1) x [w0, w1) of the NHWC image xn (W columns, C channels). */
void mdl__max_window_q8_avx2(const int8_t *xn, int64_t W, int64_t C, int64_t h0, int64_t h1,
                             int64_t w0, int64_t w1, int8_t *o);

/* o[i] = max(o[i], x[i]) for n bytes. */
void mdl__max_q8_avx2(int8_t *o, const int8_t *x, int64_t n);

#endif
