/* The window loops of max/average pooling, the same at every vector width.  Included by
   pool_avx2.c and pool_avx512.c after they define VL, NV, MASK_T, TAIL_MASK() and window(). */
#ifndef MDL_X86_POOL_DRIVER_H
#define MDL_X86_POOL_DRIVER_H

#include <string.h>

INLINE void pool(const int is_max, const mdl__pool_args *a) {
    const int64_t C = a->C, W = a->W;
    for (int64_t n = 0; n < a->N; n++) {
        const float *xn = a->x + n * a->H * W * C;
        for (int64_t oh = 0; oh < a->OH; oh++)
            for (int64_t ow = 0; ow < a->OW; ow++) {
                float *o = a->y + ((n * a->OH + oh) * a->OW + ow) * C;
                int64_t w[4];
                float scale;
                if (!mdl__pool_window(a, oh, ow, w, &scale)) {
                    memset(o, 0, (size_t)C * sizeof *o);
                    continue;
                }
                const int64_t h0 = w[0], h1 = w[1], w0 = w[2], w1 = w[3];
                int64_t c0 = 0;
                for (; c0 + NV * VL <= C; c0 += NV * VL)
                    window(NV, is_max, xn + c0, W, C, h0, h1, w0, w1, scale, o + c0, TAIL_MASK(VL));
                int64_t left = C - c0;
                if (left > 0) {
                    MASK_T ml = TAIL_MASK(left - (left - 1) / VL * VL);
                    const int64_t nv = (left + VL - 1) / VL;
                    const float *x0 = xn + c0;
                    float *o0 = o + c0;
                    if (nv == 1) window(1, is_max, x0, W, C, h0, h1, w0, w1, scale, o0, ml);
                    else if (nv == 2) window(2, is_max, x0, W, C, h0, h1, w0, w1, scale, o0, ml);
                    else if (nv == 3) window(3, is_max, x0, W, C, h0, h1, w0, w1, scale, o0, ml);
                    else window(4, is_max, x0, W, C, h0, h1, w0, w1, scale, o0, ml);
                }
            }
    }
}

#endif
