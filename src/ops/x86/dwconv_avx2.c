/* AVX2+FMA depthwise convolution, one output channel per input channel (contract in
 * conv_x86.h): dwconv_avx512.c at half the width, 8 channels per ymm.  AVX2 has no cheap masked
 * loads, so full channel blocks use plain loads and only a last partial block goes through
 * maskload/maskstore (one instance of the row loop each). */
#include "conv_x86.h"
#include "simd.h"

#include <immintrin.h>
#include <stdbool.h>

#define VL 8

INLINE __m256 ld(const float *p, __m256i m, const int FULL) {
    return FULL ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}

/* One output row (input rows from xn, taps kh0 <= kh < kh1) for channels c0 .. c0 + VL. */
INLINE void row(const int FULL, const mdl__dw_args *a, const float *xn, float *yr, int64_t ih0,
                int64_t kh0, int64_t kh1, bool fast, int64_t ow_lo, int64_t ow_hi, int64_t c0) {
    const int64_t C = a->C, W = a->W, KW = a->KW;
    const int64_t rs = a->dh * W * C, cs = a->dw * C;
    const __m256i m = mdl__mask8(C - c0);
    const __m256 vlo = _mm256_set1_ps(a->lo), vhi = _mm256_set1_ps(a->hi);
    const __m256 b = a->bias ? ld(a->bias + c0, m, FULL) : _mm256_setzero_ps();
    __m256 w[9];
    if (fast)
        for (int t = 0; t < 9; t++) w[t] = ld(a->w + t * C + c0, m, FULL);
    for (int64_t ow = 0; ow < a->OW; ow++) {
        const int64_t iw0 = ow * a->sw - a->pl;
        __m256 acc = b;
        if (fast && ow >= ow_lo && ow < ow_hi) {
            const float *p = xn + (ih0 * W + iw0) * C + c0;
            for (int i = 0; i < 3; i++, p += rs) {
                acc = _mm256_fmadd_ps(ld(p, m, FULL), w[3 * i], acc);
                acc = _mm256_fmadd_ps(ld(p + cs, m, FULL), w[3 * i + 1], acc);
                acc = _mm256_fmadd_ps(ld(p + 2 * cs, m, FULL), w[3 * i + 2], acc);
            }
        } else {
            int64_t kw0 = 0, kw1 = KW;
            while (kw0 < KW && iw0 + kw0 * a->dw < 0) kw0++;
            while (kw1 > kw0 && iw0 + (kw1 - 1) * a->dw >= W) kw1--;
            for (int64_t kh = kh0; kh < kh1; kh++) {
                const float *xr = xn + (ih0 + kh * a->dh) * W * C + c0;
                const float *wr = a->w + kh * KW * C + c0;
                for (int64_t kw = kw0; kw < kw1; kw++)
                    acc = _mm256_fmadd_ps(ld(xr + (iw0 + kw * a->dw) * C, m, FULL),
                                          ld(wr + kw * C, m, FULL), acc);
            }
        }
        acc = _mm256_min_ps(vhi, _mm256_max_ps(vlo, acc));
        if (FULL)
            _mm256_storeu_ps(yr + ow * C + c0, acc);
        else
            _mm256_maskstore_ps(yr + ow * C + c0, m, acc);
    }
}

void mdl__dwconv_avx2(const mdl__dw_args *a) {
    const int64_t C = a->C, H = a->H, KH = a->KH;
    int64_t ow_lo, ow_hi;
    mdl__dw_interior(a->W, a->OW, a->KW, a->sw, a->dw, a->pl, &ow_lo, &ow_hi);
    for (int64_t n = 0; n < a->N; n++) {
        const float *xn = a->x + n * H * a->W * C;
        for (int64_t oh = a->oh0; oh < mdl__dw_row_end(a); oh++) {
            const int64_t ih0 = oh * a->sh - a->pt;
            int64_t kh0 = 0, kh1 = KH;
            while (kh0 < KH && ih0 + kh0 * a->dh < 0) kh0++;
            while (kh1 > kh0 && ih0 + (kh1 - 1) * a->dh >= H) kh1--;
            const bool fast = KH == 3 && a->KW == 3 && kh0 == 0 && kh1 == 3;
            float *yr = a->y + (n * a->OH + oh) * a->OW * C;
            int64_t c0 = 0;
            for (; c0 + VL <= C; c0 += VL) row(1, a, xn, yr, ih0, kh0, kh1, fast, ow_lo, ow_hi, c0);
            if (c0 < C) row(0, a, xn, yr, ih0, kh0, kh1, fast, ow_lo, ow_hi, c0);
        }
    }
}
