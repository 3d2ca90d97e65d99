/* AVX2 max / average pooling over NHWC windows (contract in conv_x86.h): pool_avx512.c at half
 * the width, partial vectors through maskload.  Each output pixel keeps up to 32 channels in
 * registers while its window's input rows stream past, so every input byte is read once per
 * window that covers it and every output byte written once.  Results equal the portable kernel
 * bit for bit: the same comparisons, and sums in the same tap order scaled by the same
 * reciprocal. */
#include "conv_x86.h"
#include "simd.h"

#include <immintrin.h>
#include <string.h>

#define VL 8
#define NV 4 /* vectors per pass */

/* Channels c0 .. c0 + 16 * nv (the last vector masked by ml) of one output pixel o whose window
   covers input rows [h0,h1) x cols [w0,w1) of the image xn. */
INLINE void window(const int nv, const int is_max, const float *xn, int64_t W, int64_t C,
                   int64_t h0, int64_t h1, int64_t w0, int64_t w1, float scale, float *o,
                   __m256i ml) {
    __m256 acc[NV];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++)
        acc[v] = is_max ? _mm256_set1_ps(-__builtin_inff()) : _mm256_setzero_ps();
    for (int64_t ih = h0; ih < h1; ih++)
        for (int64_t iw = w0; iw < w1; iw++) {
            const float *p = xn + (ih * W + iw) * C;
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                __m256 x = v == nv - 1 ? _mm256_maskload_ps(p + v * VL, ml)
                                       : _mm256_loadu_ps(p + v * VL);
                /* max(x, acc) = x > acc ? x : acc: a NaN input loses, as in pool.c */
                acc[v] = is_max ? _mm256_max_ps(x, acc[v]) : _mm256_add_ps(acc[v], x);
            }
        }
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        __m256 r = is_max ? acc[v] : _mm256_mul_ps(acc[v], _mm256_set1_ps(scale));
        if (v == nv - 1)
            _mm256_maskstore_ps(o + v * VL, ml, r);
        else
            _mm256_storeu_ps(o + v * VL, r);
    }
}

#define MASK_T __m256i
#define TAIL_MASK mdl__mask8
#include "pool_driver.h"

void mdl__pool_avx2(const mdl__pool_args *a) {
    if (a->is_max)
        pool(1, a);
    else
        pool(0, a);
}
