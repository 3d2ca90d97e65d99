/* The part of the direct convolution that is the same at every vector width: the tile table and
   the loops over output-channel blocks and pixels.  Included by conv_avx2.c and conv_avx512.c
   after they define VL, NBMAX, MASK_T (their tail-mask type), TAIL_MASK() and tile(). */
#ifndef MDL_X86_CONV_DRIVER_H
#define MDL_X86_CONV_DRIVER_H

typedef void (*tile_fn)(const float *x, const int64_t *xo, const int32_t *koff, int64_t K,
                        const float *wb, int64_t ws, const float *bias, float *y, int64_t ys,
                        MASK_T mlast, float lo, float hi, int accum);
#define TILE(R, NB)                                                                                \
    static void tile_##R##_##NB(const float *x, const int64_t *xo, const int32_t *koff, int64_t K, \
                                const float *wb, int64_t ws, const float *bias, float *y,          \
                                int64_t ys, MASK_T mlast, float lo, float hi, int accum) {         \
        tile(R, NB, x, xo, koff, K, wb, ws, bias, y, ys, mlast, lo, hi, accum);                    \
    }

/* Per block width NB: the widest tile (rmax pixels), then narrower ones for a row's remainder. */
typedef struct tile_set {
    int rmax;
    tile_fn wide, r8, r4, r2, r1;
} tile_set;

/* The weight rows are taken in chunks of about MDL_CONV_CHUNK_BYTES; the first chunk starts
   the outputs from the bias, the later ones add to them, and only the last clamps. */
static void direct_loops(const mdl__conv_direct_args *a, const tile_set *tiles) {
    const int64_t OC = a->OC, OW = a->OW, K = a->K;
    const int64_t q0 = a->p1 ? a->p0 : 0, q1 = a->p1 ? a->p1 : a->OH * OW;
    const int64_t pitch = a->sh * a->Wp * a->C, step = a->sw * a->C;
    const int64_t chunks = (K * OC * (int64_t)sizeof(float) + MDL_CONV_CHUNK_BYTES - 1) /
                           MDL_CONV_CHUNK_BYTES,
                  kc = (K + chunks - 1) / chunks;
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
        const int64_t kn = K - k0 < kc ? K - k0 : kc;
        const int accum = k0 > 0, last = k0 + kn == K;
        const float lo = last ? a->lo : -__builtin_inff(), hi = last ? a->hi : __builtin_inff();
        for (int64_t oc0 = 0; oc0 < OC;) {
            /* one block of output channels: nb vectors wide, the last one masked */
            int64_t left = OC - oc0, nb = (left + VL - 1) / VL;
            if (nb > NBMAX) nb = NBMAX;
            const MASK_T mlast = TAIL_MASK(left - (nb - 1) * VL);
            const float *bias = a->bias ? a->bias + oc0 : NULL, *wb = a->w + k0 * OC + oc0;
            const tile_set *t = &tiles[nb - 1];
            /* Tiles run over the output pixels in order, across row ends: only the input
               offsets of a tile's pixels (xo) jump there, the outputs stay OC floats apart. */
            int64_t oh = q0 / OW, ow = q0 % OW;
            for (int64_t q = q0; q < q1;) {
                const int64_t n = q1 - q;
                tile_fn f;
                int r;
                if (n >= t->rmax) f = t->wide, r = t->rmax;
                else if (n >= 8 && t->r8) f = t->r8, r = 8;
                else if (n >= 4) f = t->r4, r = 4;
                else if (n >= 2) f = t->r2, r = 2;
                else f = t->r1, r = 1;
                int64_t xo[12];
                for (int i = 0; i < r; i++) {
                    xo[i] = oh * pitch + ow * step;
                    if (++ow == OW) ow = 0, oh++;
                }
                f(a->xp, xo, a->koff + k0, kn, wb, OC, bias, a->y + q * OC + oc0, OC, mlast, lo,
                  hi, accum);
                q += r;
            }
            oc0 += nb * VL;
        }
    }
}

#endif
