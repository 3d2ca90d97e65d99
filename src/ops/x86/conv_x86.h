/*
 * Convolution and pooling kernels shared between src/ops/conv.c, src/ops/pool.c and their x86
 * SIMD variants (internal).  The portable functions declared here are always built (they live in
 * conv.c / pool.c) and are the oracle the SIMD variants are tested against; the *_avx2 /
 * *_avx512 ones exist only with MDL_HAVE_X86_SIMD and may be called only when mdl__cpu_level()
 * (x86.h) is at least their level.  Layouts are NHWC; every kernel is correct for any sizes >= 1
 * (batch >= 0) and any channel count, incl. odd ones.
 */
#ifndef MDL_OPS_CONV_X86_H
#define MDL_OPS_CONV_X86_H

#include <stdbool.h>
#include <stdint.h>

/* ---- depthwise convolution, one output channel per input channel ----------------------------
   y[n,oh,ow,c] = clamp(bias[c] + sum_{kh,kw} x[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, c]
                        * w[kh,kw,c], lo, hi), taps outside the input skipped.
   w is [KH,KW,C]; bias may be NULL. */
typedef struct mdl__dw_args {
    const float *x, *w, *bias;
    float *y;
    int64_t N, H, W, C, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl;
    float lo, hi;
    /* Output rows [oh0, oh1) of every image (a parallel split; each pixel's arithmetic does not
       depend on it); oh1 == 0 means all rows. */
    int64_t oh0, oh1;
} mdl__dw_args;

static inline int64_t mdl__dw_row_end(const mdl__dw_args *a) { return a->oh1 ? a->oh1 : a->OH; }

void mdl__dwconv_ref(const mdl__dw_args *a);

/* First (*lo) and one-past-last (*hi) output index along one axis whose taps 0..k-1 all lie in
   [0, in): i*s - p >= 0 and i*s - p + (k-1)*d <= in - 1, clipped to [0, out].  The SIMD
   kernels run those outputs without bounds checks. */
static inline void mdl__dw_interior(int64_t in, int64_t out, int64_t k, int64_t s, int64_t d,
                                    int64_t p, int64_t *lo, int64_t *hi) {
    int64_t l = (p + s - 1) / s, top = in - 1 + p - (k - 1) * d;
    int64_t h = top < 0 ? 0 : top / s + 1;
    if (l > out) l = out;
    if (h > out) h = out;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}
void mdl__dwconv_avx2(const mdl__dw_args *a);
void mdl__dwconv_avx512(const mdl__dw_args *a);

/* ---- direct convolution over a padded input (implicit GEMM) ---------------------------------
   OH rows of one image's output: y[oh,ow,oc] = clamp(bias[oc] + sum_k xp[(oh*sh*Wp + ow*sw) * C
   + koff[k]] * w[k,oc], lo, hi) for k < K, where xp is the input (or the band of it these rows
   read) already zero-padded to width Wp, so there are no bounds checks: every tap is inside xp,
   and koff[k] is the offset of tap k = (kh,kw,ci) in floats, (kh*dh*Wp + kw*dw) * C + ci.  The
   weights w are the model's own HWIO tensor [KH,KW,C,OC] read in place as a [K, OC] matrix:
   nothing is packed or copied at load. */
typedef struct mdl__conv_direct_args {
    const float *xp;     /* padded input rows */
    int64_t Wp, C;       /* their width (pixels) and channels */
    const int32_t *koff; /* K tap offsets */
    int64_t K;
    const float *w, *bias; /* w [K, OC]; bias may be NULL */
    float *y;            /* OH output rows [OH,OW,OC] */
    int64_t OH, OW, OC, sh, sw;
    float lo, hi;
    int64_t p0, p1; /* compute output pixels [p0, p1) of those rows (y still points at pixel 0);
                       p1 == 0: all OH * OW.  A pixel's arithmetic does not depend on the range. */
} mdl__conv_direct_args;

/* The weight rows one pass over the output pixels reads: at most this many bytes of w
   ([kc, OC]), so that they stay in L2 and span few pages (w lives in the mapped model file, in
   4 KiB pages).  Measured on ResNet-18's 3x3 layers (AVX-512, 2 MiB L2): with the whole K in one
   pass, 7x7x512 ran at 45 GFLOP/s reading w in place (a 2 KiB row stride folds the rows onto
   an eighth of L2's sets); in 512 KiB chunks at 121-160 GFLOP/s on every layer, like the packed
   copy it replaces. */
#define MDL_CONV_CHUNK_BYTES ((int64_t)512 << 10)

#define MDL_CONV_VL_AVX2 8 /* floats per vector */
#define MDL_CONV_NB_AVX2 2 /* vectors per block of output channels */
#define MDL_CONV_VL_AVX512 16
#define MDL_CONV_NB_AVX512 4

void mdl__conv_direct_avx2(const mdl__conv_direct_args *a);
void mdl__conv_direct_avx512(const mdl__conv_direct_args *a);

/* ---- pooling over channel rows ---------------------------------------------------------------
   Max / average pool of one image, windows clipped to the input (see pool.c for the conventions:
   an empty window gives 0; the average divides by KH*KW with include_pad, else by the clipped
   window's size). */
typedef struct mdl__pool_args {
    const float *x;
    float *y;
    int64_t N, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl;
    int is_max, include_pad;
} mdl__pool_args;

/* The window of output pixel (oh, ow) clipped to the input, rows [w[0], w[1]) and columns
   [w[2], w[3]), and the average's divisor; false when the window misses the input entirely
   (possible only with padding of at least the kernel size): that output is 0. */
static inline bool mdl__pool_window(const mdl__pool_args *a, int64_t oh, int64_t ow, int64_t w[4],
                                    float *scale) {
    int64_t h0 = oh * a->sh - a->pt, h1 = h0 + a->KH, w0 = ow * a->sw - a->pl, w1 = w0 + a->KW;
    w[0] = h0 < 0 ? 0 : h0;
    w[1] = h1 > a->H ? a->H : h1;
    w[2] = w0 < 0 ? 0 : w0;
    w[3] = w1 > a->W ? a->W : w1;
    if (w[0] >= w[1] || w[2] >= w[3]) return false;
    *scale = 1.0f / (float)(a->include_pad ? a->KH * a->KW : (w[1] - w[0]) * (w[3] - w[2]));
    return true;
}

void mdl__pool_ref(const mdl__pool_args *a);
void mdl__pool_avx2(const mdl__pool_args *a);
void mdl__pool_avx512(const mdl__pool_args *a);

#endif
