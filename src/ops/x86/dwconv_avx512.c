/* AVX-512 depthwise convolution, one output channel per input channel (contract in conv_x86.h).
 *
 * Vectorized over channels, 16 per zmm, masked for the last block.  The 3x3 kernel (MobileNet's)
 * has its own loop: for a band of output rows whose input fits in L2, one 16-channel block at a
 * time sweeps the band with its nine weight vectors in registers, so the three input rows under
 * an output row (3 x W x 64 bytes) stay in L1 and each input line comes from L2 about once.
 * Interior pixels go four at a time (four independent FMA chains; at stride 1 each loaded input
 * vector serves three of them); pixels at the border mask off the taps outside the input
 * (masked load and masked FMA: no branches, and nothing from outside leaks into the sum).  Other
 * kernel sizes take a general per-pixel loop over the valid taps.  Bias and clamp are fused into
 * the store.  Measured (one core): MobileNetV2's 3x3 layers 30-45 GFLOP/s where the input fits
 * in L2, memory-bound at 112x112 (the portable loop: 6-10). */
#include "conv_x86.h"
#include "simd.h"

#include <immintrin.h>
#include <stdbool.h>

#define VL 16
#define BAND (512 * 1024)

/* Four adjacent interior output pixels (stride S, no column dilation) of a 3x3 kernel, from p
   (the top-left tap of the first one), channels c0 .. c0 + 16: four independent FMA chains, and
   with S = 1 each loaded input vector serves up to three of them. */
INLINE void fast4(const int S, const float *p, int64_t rs, int64_t C, __mmask16 m,
                  const float *w, __m512 b, __m512 vlo, __m512 vhi, float *o) {
    __m512 acc[4] = {b, b, b, b};
#pragma GCC unroll 3
    for (int i = 0; i < 3; i++, p += rs) {
        __m512 v[3 * S + 3], wv[3];
#pragma GCC unroll 9
        for (int j = 0; j < 3 * S + 3; j++) v[j] = _mm512_maskz_loadu_ps(m, p + j * C);
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; kw++) wv[kw] = _mm512_maskz_loadu_ps(m, w + (3 * i + kw) * C);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
#pragma GCC unroll 3
            for (int kw = 0; kw < 3; kw++) acc[j] = _mm512_fmadd_ps(v[j * S + kw], wv[kw], acc[j]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        _mm512_mask_storeu_ps(o + j * C, m, _mm512_min_ps(vhi, _mm512_max_ps(vlo, acc[j])));
}

/* One output pixel of a 3x3 kernel next to the border, channels c0 .. c0 + 16 (xn and w already
   offset by c0, weights in registers): taps outside the input get a zero mask (their load is
   suppressed and their FMA leaves the sum as it is, so even an inf weight there cannot leak
   in), which keeps the nine taps branch-free. */
static inline void border3(const mdl__dw_args *a, const float *xn, int64_t ih0, int64_t iw0,
                           __mmask16 m, const __m512 *w, __m512 b, __m512 vlo, __m512 vhi,
                           float *o) {
    const int64_t C = a->C, H = a->H, W = a->W;
    __m512 acc = b;
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) {
        const int64_t ih = ih0 + t / 3 * a->dh, iw = iw0 + t % 3 * a->dw;
        const bool v = ih >= 0 && ih < H && iw >= 0 && iw < W;
        const __mmask16 k = v ? m : 0;
        acc = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(k, xn + (v ? (ih * W + iw) * C : 0)),
                                    w[t], acc, k);
    }
    _mm512_mask_storeu_ps(o, m, _mm512_min_ps(vhi, _mm512_max_ps(vlo, acc)));
}

/* One output pixel, channels c0 .. c0 + 16 (xn, w offset by c0), over the taps
   kh0 <= kh < kh1, kw0 <= kw < kw1 (those inside the input); ih0 / iw0 is its top-left tap. */
static inline void pixel(const mdl__dw_args *a, const float *xn, int64_t ih0, int64_t iw0,
                         int64_t kh0, int64_t kh1, int64_t kw0, int64_t kw1, __mmask16 m,
                         const float *w, __m512 b, __m512 vlo, __m512 vhi, float *o) {
    const int64_t C = a->C, W = a->W, KW = a->KW;
    __m512 acc = b;
    for (int64_t kh = kh0; kh < kh1; kh++) {
        const float *xr = xn + ((ih0 + kh * a->dh) * W + iw0) * C;
        const float *wr = w + kh * KW * C;
        for (int64_t kw = kw0; kw < kw1; kw++)
            acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xr + kw * a->dw * C),
                                  _mm512_maskz_loadu_ps(m, wr + kw * C), acc);
    }
    _mm512_mask_storeu_ps(o, m, _mm512_min_ps(vhi, _mm512_max_ps(vlo, acc)));
}

/* Four adjacent interior output pixels (stride S, no column dilation) of a 3x3 kernel from p,
   their top-left tap (channels c0 .. c0 + 16): four independent FMA chains, and with S = 1 each
   loaded input vector serves up to three of them. */
INLINE void quad3(const int S, const float *p, int64_t rs, int64_t C, __mmask16 m,
                  const __m512 *w, __m512 b, __m512 vlo, __m512 vhi, float *o) {
    __m512 acc[4] = {b, b, b, b};
#pragma GCC unroll 3
    for (int i = 0; i < 3; i++) {
        __m512 v[3 * S + 3];
#pragma GCC unroll 9
        for (int j = 0; j < 3 * S + 3; j++) v[j] = _mm512_maskz_loadu_ps(m, p + i * rs + j * C);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
#pragma GCC unroll 3
            for (int kw = 0; kw < 3; kw++)
                acc[j] = _mm512_fmadd_ps(v[j * S + kw], w[3 * i + kw], acc[j]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        _mm512_mask_storeu_ps(o + j * C, m, _mm512_min_ps(vhi, _mm512_max_ps(vlo, acc[j])));
}

/* A 3x3 kernel, 16 channels from c0, output rows oh0 .. oh1 - 1: the weights stay in registers,
   and the input rows of successive output rows (3 x W x 64 bytes) stay in L1, so each input
   cache line comes from L2 about once. */
INLINE void channels3(const int S, const mdl__dw_args *a, const float *xn, float *yn, int64_t c0,
                      int64_t oh0, int64_t oh1, int64_t ow_lo, int64_t ow_hi) {
    const int64_t C = a->C, W = a->W, rs = a->dh * W * C;
    const __m512 vlo = _mm512_set1_ps(a->lo), vhi = _mm512_set1_ps(a->hi);
    const __mmask16 m = mdl__mask16(C - c0);
    const __m512 b = a->bias ? _mm512_maskz_loadu_ps(m, a->bias + c0) : _mm512_setzero_ps();
    __m512 w[9];
    for (int t = 0; t < 9; t++) w[t] = _mm512_maskz_loadu_ps(m, a->w + t * C + c0);
    xn += c0;
    for (int64_t oh = oh0; oh < oh1; oh++) {
        const int64_t ih0 = oh * a->sh - a->pt;
        const bool full = ih0 >= 0 && ih0 + 2 * a->dh < a->H;
        float *yr = yn + oh * a->OW * C + c0;
        int64_t ow = 0;
        if (full && S) {
            for (; ow < ow_lo; ow++)
                border3(a, xn, ih0, ow * S - a->pl, m, w, b, vlo, vhi, yr + ow * C);
            const float *p = xn + (ih0 * W + ow * S - a->pl) * C;
            for (; ow + 4 <= ow_hi; ow += 4, p += 4 * S * C)
                quad3(S, p, rs, C, m, w, b, vlo, vhi, yr + ow * C);
        }
        for (; ow < a->OW; ow++)
            border3(a, xn, ih0, ow * a->sw - a->pl, m, w, b, vlo, vhi, yr + ow * C);
    }
}

void mdl__dwconv_avx512(const mdl__dw_args *a) {
    const int64_t C = a->C, H = a->H, W = a->W, KH = a->KH, KW = a->KW;
    const __m512 vlo = _mm512_set1_ps(a->lo), vhi = _mm512_set1_ps(a->hi);
    int64_t ow_lo, ow_hi;
    mdl__dw_interior(W, a->OW, KW, a->sw, a->dw, a->pl, &ow_lo, &ow_hi);
    for (int64_t n = 0; n < a->N; n++) {
        const float *xn = a->x + n * H * W * C;
        float *yn = a->y + n * a->OH * a->OW * C;
        if (KH == 3 && KW == 3) {
            /* S = 0: no four-pixel blocks (column dilation or a stride above 2) */
            const int S = a->dw != 1 ? 0 : a->sw == 1 ? 1 : a->sw == 2 ? 2 : 0;
            /* Bands of output rows whose input (about BAND bytes) stays in L2 while every
               channel block passes over it. */
            int64_t band = BAND / (a->sh * W * C * (int64_t)sizeof(float));
            if (band < 1) band = 1;
            const int64_t oh_end = mdl__dw_row_end(a);
            for (int64_t oh0 = a->oh0; oh0 < oh_end; oh0 += band) {
                const int64_t oh1 = oh_end - oh0 < band ? oh_end : oh0 + band;
                for (int64_t c0 = 0; c0 < C; c0 += VL) {
                    if (S == 1)
                        channels3(1, a, xn, yn, c0, oh0, oh1, ow_lo, ow_hi);
                    else if (S == 2)
                        channels3(2, a, xn, yn, c0, oh0, oh1, ow_lo, ow_hi);
                    else
                        channels3(0, a, xn, yn, c0, oh0, oh1, ow_lo, ow_hi);
                }
            }
            continue;
        }
        for (int64_t oh = a->oh0; oh < mdl__dw_row_end(a); oh++) {
            const int64_t ih0 = oh * a->sh - a->pt;
            int64_t kh0 = 0, kh1 = KH; /* taps inside the input: kh0 <= kh < kh1 */
            while (kh0 < KH && ih0 + kh0 * a->dh < 0) kh0++;
            while (kh1 > kh0 && ih0 + (kh1 - 1) * a->dh >= H) kh1--;
            float *yr = yn + oh * a->OW * C;
            for (int64_t ow = 0; ow < a->OW; ow++) {
                const int64_t iw0 = ow * a->sw - a->pl;
                int64_t kw0 = 0, kw1 = KW;
                while (kw0 < KW && iw0 + kw0 * a->dw < 0) kw0++;
                while (kw1 > kw0 && iw0 + (kw1 - 1) * a->dw >= W) kw1--;
                for (int64_t c0 = 0; c0 < C; c0 += VL) {
                    const __mmask16 m = mdl__mask16(C - c0);
                    const __m512 b =
                        a->bias ? _mm512_maskz_loadu_ps(m, a->bias + c0) : _mm512_setzero_ps();
                    pixel(a, xn + c0, ih0, iw0, kh0, kh1, kw0, kw1, m, a->w + c0, b, vlo, vhi,
                          yr + ow * C + c0);
                }
            }
        }
    }
}
