/* AVX-512 VNNI int8 GEMM core (built with the AVX-512 flags plus -mavx512vnni; called only when
 * mdl__cpu_has_vnni()).  Contract in ops/int8.h, layout in int8_x86.h.
 *
 * vpdpbusd multiplies unsigned bytes by signed bytes, four per int32 lane, without saturation.
 * The weights are the unsigned side, stored as w + 128, and A the signed side, broadcast four
 * k at a time; so each sum carries an extra 128 * sum_k A[m,k], subtracted per row before the
 * epilogue (the row sum costs K/64 instructions per row, against the xor per broadcast that
 * offsetting A instead would cost in the inner loop).  Sums wrap in int32, which is exact since
 * the true result fits (int8.h).
 *
 * Blocking: RB rows of A at a time (their row sums on the stack); within them, for each pair of
 * 16-column panels, MR x 32 tiles down the rows, so a panel pair (32 K bytes) stays in L1 while
 * the rows stream from L2.  The epilogue is mdl__requant written lane-wise: requant16x where the
 * channels' shifts allow (its constants set up once per panel and row block), else requant16. */
#include "int8_avx512.h"

#include <stdbool.h>
#include <string.h>

#define MR 6   /* rows per tile: 12 accumulators + 2 panel vectors + 1 broadcast */
#define RB 240 /* rows per block (a multiple of MR) */
#define NR MDL_QGEMM_NR_VNNI

/* The A addressing: row i, k in segment q of nseg (each seglen bytes) at
   a + i * lda + seg[q] + (k - q * seglen).  One segment of K bytes at 0 for a plain matrix. */
typedef struct arows {
    const int64_t *seg;
    int nseg;
    int64_t seglen;
} arows;

static int32_t row_sum_segs(const int8_t *a, const arows *ar) {
    int32_t s = 0;
    for (int q = 0; q < ar->nseg; q++)
        s += row_sum(a + ar->seg[q], ar->seglen);
    return s;
}

/* C[0:R, 0:nv] for the NP panels at pw (panel stride ps bytes), channels n0.. (per-channel
   constants at ch offset n0); rs: the rows' sums. */
INLINE void tile(const int R, const int NP, const mdl__qgemm_packed *p, int64_t n0, int64_t nv,
                 const int8_t *a, int64_t lda, const arows *ar, const uint8_t *pw, int64_t ps,
                 const int32_t *rs, int8_t *c, int64_t ldc, const rq16 *qs) {
    /* the sums start at bias - 128 sum_k A[i,k] (see above): one broadcast per row */
    __m512i acc[MR][2], b[2];
#pragma GCC unroll 2
    for (int j = 0; j < NP; j++)
        b[j] = _mm512_loadu_si512(p->bias + n0 + j * NR);
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) {
        const __m512i r = _mm512_set1_epi32((int32_t)((uint32_t)rs[i] * 128u));
#pragma GCC unroll 2
        for (int j = 0; j < NP; j++)
            acc[i][j] = _mm512_sub_epi32(b[j], r);
    }
    const int64_t K = p->K, kfull = ar->seglen & ~(int64_t)3;
    int64_t k = 0;
    for (int q = 0; q < ar->nseg; q++) {
        const int8_t *as = a + ar->seg[q];
        for (k = 0; k < kfull; k += 4, pw += 64) {
            __m512i w0 = _mm512_load_si512(pw), w1 = w0;
            if (NP > 1) w1 = _mm512_load_si512(pw + ps);
#pragma GCC unroll 6
            for (int i = 0; i < R; i++) {
                __m512i av = _mm512_set1_epi32(load4(as + i * lda + k));
                DPBUSD(acc[i][0], w0, av);
                if (NP > 1) DPBUSD(acc[i][1], w1, av);
            }
        }
    }
    if (k < ar->seglen) { /* the last 1..3 k (one segment only): the panel holds zeros past K,
                             A must not be read past it */
        __m512i w0 = _mm512_load_si512(pw), w1 = w0;
        if (NP > 1) w1 = _mm512_load_si512(pw + ps);
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
            /* byte by byte: a memcpy of a run-time size is a libc call per row */
            const int8_t *t = a + ar->seg[0] + i * lda + k;
            uint32_t v = (uint8_t)t[0];
            if (K - k > 1) v |= (uint32_t)(uint8_t)t[1] << 8;
            if (K - k > 2) v |= (uint32_t)(uint8_t)t[2] << 16;
            __m512i av = _mm512_set1_epi32((int32_t)v);
            DPBUSD(acc[i][0], w0, av);
            if (NP > 1) DPBUSD(acc[i][1], w1, av);
        }
    }
    const __m512i zy = _mm512_set1_epi32(p->zy), lo = _mm512_set1_epi32(p->lo),
                  hi = _mm512_set1_epi32(p->hi);
#pragma GCC unroll 2
    for (int j = 0; j < NP; j++) {
        const int64_t n = n0 + j * NR;
        const __m512i mult = _mm512_loadu_si512(p->mult + n);
        const __m512i shift = _mm512_loadu_si512(p->shift + n);
        const __mmask16 sm = mdl__mask16(nv - j * NR);
        if (qs[j].ok && !qs[j].clamp) {
#pragma GCC unroll 6
            for (int i = 0; i < R; i++) {
                __m512i v = acc[i][j];
                v = requant16x(v, &qs[j], false);
                _mm512_mask_cvtsepi32_storeu_epi8(c + i * ldc + j * NR, sm, v);
            }
        } else if (qs[j].ok) {
#pragma GCC unroll 6
            for (int i = 0; i < R; i++) {
                __m512i v = acc[i][j];
                v = requant16x(v, &qs[j], true);
                _mm512_mask_cvtsepi32_storeu_epi8(c + i * ldc + j * NR, sm, v);
            }
        } else {
#pragma GCC unroll 6
            for (int i = 0; i < R; i++) {
                __m512i v = acc[i][j];
                v = requant16(v, mult, shift, zy, lo, hi);
                _mm512_mask_cvtsepi32_storeu_epi8(c + i * ldc + j * NR, sm, v);
            }
        }
    }
}

#define TILE_CASE(r)                                                                               \
    case r:                                                                                        \
        if (np == 2)                                                                               \
            tile(r, 2, p, n0, nv, a, lda, ar, pw, ps, rs, c, ldc, qs);                               \
        else                                                                                       \
            tile(r, 1, p, n0, nv, a, lda, ar, pw, ps, rs, c, ldc, qs);                               \
        break;

static void tile_any(int rows, int np, const mdl__qgemm_packed *p, int64_t n0, int64_t nv,
                     const int8_t *a, int64_t lda, const arows *ar, const uint8_t *pw, int64_t ps,
                     const int32_t *rs, int8_t *c, int64_t ldc, const rq16 *qs) {
    switch (rows) {
        TILE_CASE(1)
        TILE_CASE(2)
        TILE_CASE(3)
        TILE_CASE(4)
        TILE_CASE(5)
    default: tile(MR, 2, p, n0, nv, a, lda, ar, pw, ps, rs, c, ldc, qs); break;
    }
}

static void gemm_rows(const mdl__qgemm_packed *p, int64_t M, const int8_t *A, int64_t lda,
                      const arows *ar, int8_t *C, int64_t ldc) {
    const int64_t N = p->N, K = p->K, ps = (K + 3) / 4 * 64; /* bytes per panel */
    const uint8_t *panels = p->panels;
    int32_t rs[RB];
    for (int64_t m0 = 0; m0 < M; m0 += RB) {
        const int64_t mb = M - m0 < RB ? M - m0 : RB;
        for (int64_t i = 0; i < mb; i++)
            rs[i] = row_sum_segs(A + (m0 + i) * lda, ar);
        for (int64_t n0 = 0; n0 < N; n0 += 2 * NR) {
            const int64_t nv = N - n0 < 2 * NR ? N - n0 : 2 * NR;
            const int np = nv > NR ? 2 : 1;
            const uint8_t *pw = panels + n0 / NR * ps;
            rq16 qs[2]; /* the epilogue's constants, once per panel and row block */
            for (int j = 0; j < np; j++)
                rq16_setup(_mm512_loadu_si512(p->mult + n0 + j * NR),
                           _mm512_loadu_si512(p->shift + n0 + j * NR), p->zy,
                           _mm512_set1_epi32(p->lo), _mm512_set1_epi32(p->hi), &qs[j]);
            if (np == 1) qs[1] = qs[0];
            for (int64_t i = 0; i < mb; i += MR) {
                const int rows = (int)(mb - i < MR ? mb - i : MR);
                if (rows == MR && np == 1)
                    tile(MR, 1, p, n0, nv, A + (m0 + i) * lda, lda, ar, pw, ps, rs + i,
                         C + (m0 + i) * ldc + n0, ldc, qs);
                else
                    tile_any(rows, np, p, n0, nv, A + (m0 + i) * lda, lda, ar, pw, ps, rs + i,
                             C + (m0 + i) * ldc + n0, ldc, qs);
            }
        }
    }
}

void mdl__qgemm_vnni(const mdl__qgemm_packed *p, int64_t M, const int8_t *A, int64_t lda, int8_t *C,
                     int64_t ldc) {
    const int64_t zero = 0;
    const arows ar = {&zero, 1, p->K};
    gemm_rows(p, M, A, lda, &ar, C, ldc);
}

void mdl__qgemm_vnni_segs(const mdl__qgemm_packed *p, int64_t M, const int8_t *A, int64_t lda,
                          const int64_t *seg, int nseg, int8_t *C, int64_t ldc) {
    const arows ar = {seg, nseg, p->K / nseg};
    gemm_rows(p, M, A, lda, &ar, C, ldc);
}

/* ---- depthwise, channel multiplier 1 --------------------------------------------------------
   16 channels per vector, up to 4 vectors per pass in registers: x and w widened to int32,
   (x - zx) * w exact by vpdpwssd (below), summed over the taps inside the input, then the GEMM's
   epilogue.  The taps' range is clipped once per pixel. */
INLINE void dw_block(const int NB, const mdl__qdw_args *a, int64_t c0, const int8_t *xn,
                     int64_t kh0, int64_t kh1, int64_t kw0, int64_t kw1, int64_t ih0, int64_t iw0,
                     int8_t *y, const rq16 *q) {
    const mdl__qgemm_packed *p = a->p;
    const int64_t C = a->C;
    const __m512i zx = _mm512_set1_epi32(a->zx), lo16 = _mm512_set1_epi32(0xFFFF);
    const __mmask16 mt = mdl__mask16(C - c0 - (NB - 1) * 16); /* the last vector's lanes */
    __m512i acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < NB; j++)
        acc[j] = _mm512_loadu_si512(p->bias + c0 + j * 16);
    for (int64_t kh = kh0; kh < kh1; kh++) {
        const int8_t *xr = xn + ((ih0 + kh * a->dh) * a->W + iw0) * C + c0;
        const int8_t *wr = a->w + kh * a->KW * C + c0;
        for (int64_t kw = kw0; kw < kw1; kw++) {
            const int8_t *xp = xr + kw * a->dw * C, *wp = wr + kw * C;
#pragma GCC unroll 4
            for (int j = 0; j < NB; j++) {
                __m512i xv, wv;
                if (j < NB - 1 || mt == 0xFFFF) {
                    xv = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(xp + j * 16)));
                    wv = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(wp + j * 16)));
                } else {
                    xv = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mt, xp + j * 16));
                    wv = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mt, wp + j * 16));
                }
                /* (x - zx) w by vpdpwssd: x - zx in [-255, 255] is its low 16 bits, w's high 16
                   bits are cleared, so the pair's second product is 0 (one port-0 operation
                   where vpmulld + vpaddd took two) */
                acc[j] = _mm512_dpwssd_epi32(acc[j], _mm512_sub_epi32(xv, zx),
                                             _mm512_and_si512(wv, lo16));
            }
        }
    }
    const __m512i zy = _mm512_set1_epi32(p->zy), lo = _mm512_set1_epi32(p->lo),
                  hi = _mm512_set1_epi32(p->hi);
#pragma GCC unroll 4
    for (int j = 0; j < NB; j++) {
        const int64_t c = c0 + j * 16;
        __m512i v;
        if (q[j].ok && !q[j].clamp)
            v = requant16x(acc[j], &q[j], false);
        else if (q[j].ok)
            v = requant16x(acc[j], &q[j], true);
        else
            v = requant16(acc[j], _mm512_loadu_si512(p->mult + c), _mm512_loadu_si512(p->shift + c),
                          zy, lo, hi);
        _mm512_mask_cvtsepi32_storeu_epi8(y + c, j < NB - 1 ? (__mmask16)0xFFFF : mt, v);
    }
}

/* Output row (n, oh), channels [c0, c0 + 16 NB): the epilogue's constants once, then the pixels. */
INLINE void dw_row(const int NB, const mdl__qdw_args *a, int64_t c0, int64_t n, int64_t oh) {
    const mdl__qgemm_packed *p = a->p;
    const int64_t C = a->C;
    rq16 q[4];
#pragma GCC unroll 4
    for (int j = 0; j < NB; j++)
        rq16_setup(_mm512_loadu_si512(p->mult + c0 + j * 16),
                   _mm512_loadu_si512(p->shift + c0 + j * 16), p->zy, _mm512_set1_epi32(p->lo),
                   _mm512_set1_epi32(p->hi), &q[j]);
    const int8_t *xn = a->x + n * a->H * a->W * C;
    const int64_t ih0 = oh * a->sh - a->pt;
    int64_t kh0, kh1;
    mdl__qdw_tap_range(ih0, a->dh, a->KH, a->H, &kh0, &kh1);
    for (int64_t ow = 0; ow < a->OW; ow++) {
        int8_t *y = a->y + ((n * a->OH + oh) * a->OW + ow) * C;
        const int64_t iw0 = ow * a->sw - a->pl;
        int64_t kw0, kw1;
        mdl__qdw_tap_range(iw0, a->dw, a->KW, a->W, &kw0, &kw1);
        dw_block(NB, a, c0, xn, kh0, kh1, kw0, kw1, ih0, iw0, y, q);
    }
}

void mdl__qdw_vnni(const mdl__qdw_args *a) {
    const int64_t C = a->C;
    for (int64_t n = 0; n < a->N; n++)
        for (int64_t oh = 0; oh < a->OH; oh++) {
            int64_t c0 = 0;
            for (; C - c0 > 48; c0 += 64)
                dw_row(4, a, c0, n, oh);
            if (C - c0 > 32)
                dw_row(3, a, c0, n, oh);
            else if (C - c0 > 16)
                dw_row(2, a, c0, n, oh);
            else if (C - c0 > 0)
                dw_row(1, a, c0, n, oh);
        }
}

/* ---- depthwise by vpdpbusd, quads built in registers (KH <= 4, channel multiplier 1) ---------
   An input column's KH <= 4 rows are interleaved into quads: byte 4j + k of the 16-channel quad
   is input row k's value of channel j, plus 128 (u8), padding rows/columns holding zx (which
   adds nothing after the correction below), rows k >= KH zero-weighted.  An output pixel is then
   KW vpdpbusd per 16 channels against the weights interleaved the same way:
       acc = sum_taps (xs + 128) w = sum_taps (xs - zx) w + (128 + zx) sum_taps w,
   so the bias is lowered by (128 + zx) sum_taps w (int32 arithmetic wraps; the true result
   fits, see mdl__qgemm_check).  Weights, lowered bias and the epilogue's constants are packed
   once at load (mdl__qdw_pack); each column's quad is built in a register where it is used: no
   scratch, and a column is built once per output pixel with stride 1 (the last one slides in),
   twice with stride 2.  (An earlier kernel wrote a row of quads to scratch and repacked the
   weights per run: slower, measured on MobileNetV2.)

   A quad of 16 channels: row k's 16 bytes broadcast into 128-bit lane k (one load and three
   masked broadcasts), a dword permutation giving lane L the dwords L of the four rows, and an
   in-lane byte transpose (vpshufb) putting byte j of row k at 4j + k. */

typedef struct dwx {
    rq16 q;                 /* the epilogue's constants for these 16 channels */
    int32_t bias[16];       /* bias - (128 + zx) sum_taps w */
} dwx;

/* Byte offsets in the packed extra data: CB dwx, then KW * CB quads of weights, then (KH <= 3)
   the same weights one kernel row down, for the output row below (mdl__qdw_vnni_reg). */
static int64_t dwx_weights(int64_t C) { return (C + 15) / 16 * (int64_t)sizeof(dwx); }

size_t mdl__qdw_pack_bytes(int64_t C, int64_t KH, int64_t KW) {
    if (C < 1 || KH < 1 || KH > 4 || KW < 1 || C > ((int64_t)1 << 40) || KW > ((int64_t)1 << 16))
        return 0;
    return (size_t)(dwx_weights(C) + (KH < 4 ? 2 : 1) * KW * ((C + 15) / 16) * 64);
}

void mdl__qdw_pack(const mdl__qgemm_packed *p, const int8_t *w, int32_t zx, int64_t C, int64_t KH,
                   int64_t KW, void *out) {
    const int64_t CB = (C + 15) / 16;
    dwx *x = out;
    int8_t *wq = (int8_t *)out + dwx_weights(C), *wd = wq + KW * CB * 64;
    memset(out, 0, mdl__qdw_pack_bytes(C, KH, KW));
    for (int64_t cb = 0; cb < CB; cb++) {
        const int64_t n = C - cb * 16 < 16 ? C - cb * 16 : 16;
        const __m512i mult = _mm512_loadu_si512(p->mult + cb * 16);
        const __m512i shift = _mm512_loadu_si512(p->shift + cb * 16);
        rq16_setup(mult, shift, p->zy, _mm512_set1_epi32(p->lo), _mm512_set1_epi32(p->hi), &x[cb].q);
        for (int64_t j = 0; j < n; j++) {
            const int64_t c = cb * 16 + j;
            uint32_t b = (uint32_t)p->bias[c];
            for (int64_t t = 0; t < KH * KW; t++)
                b -= (uint32_t)(128 + zx) * (uint32_t)(int32_t)w[t * C + c];
            x[cb].bias[j] = (int32_t)b;
            for (int64_t kw = 0; kw < KW; kw++)
                for (int64_t k = 0; k < KH; k++) {
                    const int64_t o = ((kw * CB + cb) * 16 + j) * 4 + k;
                    wq[o] = w[(k * KW + kw) * C + c];
                    if (KH < 4) wd[o + 1] = w[(k * KW + kw) * C + c];
                }
        }
    }
}

/* The quad of input column iw (x offset off = iw * C + c0), rows r[0..3] (KR of them used);
   plain: those rows inside and 16 channels (plain loads), else row k's lanes outside m[k] hold
   zx. */
INLINE __m512i dw_quad(const int8_t *const *r, const __mmask16 *m, int64_t off, const bool plain,
                       const int KR, __m128i zxv, __m512i perm, __m512i tr, __m512i flip) {
    __m512i v;
    if (plain) {
        v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(r[0] + off)));
        if (KR > 1) v = _mm512_mask_broadcast_i32x4(v, 0x00F0, _mm_loadu_si128((const __m128i *)(r[1] + off)));
        if (KR > 2) v = _mm512_mask_broadcast_i32x4(v, 0x0F00, _mm_loadu_si128((const __m128i *)(r[2] + off)));
        if (KR > 3) v = _mm512_mask_broadcast_i32x4(v, 0xF000, _mm_loadu_si128((const __m128i *)(r[3] + off)));
    } else {
        v = _mm512_castsi128_si512(_mm_mask_loadu_epi8(zxv, m[0], r[0] + off));
        v = _mm512_inserti32x4(v, _mm_mask_loadu_epi8(zxv, m[1], r[1] + off), 1);
        v = _mm512_inserti32x4(v, _mm_mask_loadu_epi8(zxv, m[2], r[2] + off), 2);
        v = _mm512_inserti32x4(v, _mm_mask_loadu_epi8(zxv, m[3], r[3] + off), 3);
    }
    return _mm512_xor_si512(_mm512_shuffle_epi8(_mm512_permutexvar_epi32(perm, v), tr), flip);
}

/* One output row's 16 channels at c0 (block cb), or with `two` also the row below (y2; its
   weights one kernel row down in the quads).  mode: the epilogue, 0 requant16x without clamp,
   1 with, 2 requant16. */
INLINE void dw_reg_block(const mdl__qdw_args *a, const dwx *x, const int8_t *wq, int64_t cb,
                         const int8_t *const *r, const __mmask16 *m, int8_t *yr, int8_t *y2,
                         const bool plain, const int KR, const int mode, const bool two) {
    const int64_t C = a->C, CB = (C + 15) / 16, c0 = cb * 16, KW = a->KW, W = a->W;
    const mdl__qgemm_packed *p = a->p;
    const __m128i zxv = _mm_set1_epi8((char)a->zx);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i zq = _mm512_set1_epi8((char)(a->zx ^ 0x80)); /* a column in the padding */
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i tr = _mm512_broadcast_i32x4(
        _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    const __mmask16 sm = mdl__mask16(C - c0);
    const dwx *xb = x + cb;
    const __m512i b = _mm512_loadu_si512(xb->bias);
    const int64_t wstep = CB * 64;
    const int8_t *wb = wq + cb * 64, *wb2 = wb + KW * wstep;
#define DW_EPI(acc, y, ow)                                                                         \
    do {                                                                                           \
        __m512i v_;                                                                                \
        if (mode == 0) v_ = requant16x(acc, &xb->q, false);                                        \
        else if (mode == 1) v_ = requant16x(acc, &xb->q, true);                                    \
        else                                                                                       \
            v_ = requant16(acc, _mm512_loadu_si512(p->mult + c0), _mm512_loadu_si512(p->shift + c0), \
                           _mm512_set1_epi32(p->zy), _mm512_set1_epi32(p->lo),                     \
                           _mm512_set1_epi32(p->hi));                                              \
        _mm512_mask_cvtsepi32_storeu_epi8((y) + (ow) * C + c0, sm, v_);                            \
    } while (0)
#define DW_COL(iw) ((iw) < 0 || (iw) >= W ? zq : dw_quad(r, m, (iw) * C + c0, plain, KR, zxv, perm, tr, flip))
    if (KW == 3 && a->dw == 1 && (a->sw == 1 || a->sw == 2)) {
        const __m512i w0 = _mm512_loadu_si512(wb), w1 = _mm512_loadu_si512(wb + wstep),
                      w2 = _mm512_loadu_si512(wb + 2 * wstep);
        __m512i v0 = w0, v1 = w1, v2 = w2;
        if (two) {
            v0 = _mm512_loadu_si512(wb2);
            v1 = _mm512_loadu_si512(wb2 + wstep);
            v2 = _mm512_loadu_si512(wb2 + 2 * wstep);
        }
        const int64_t sw = a->sw;
        int64_t iw = -a->pl;
        __m512i q0 = DW_COL(iw), q1 = DW_COL(iw + 1), q2;
        for (int64_t ow = 0; ow < a->OW; ow++, iw += sw) {
            /* q0, q1: columns iw, iw + 1 */
            q2 = DW_COL(iw + 2);
            __m512i acc = _mm512_dpbusd_epi32(b, q0, w0);
            acc = _mm512_dpbusd_epi32(acc, q1, w1);
            acc = _mm512_dpbusd_epi32(acc, q2, w2);
            DW_EPI(acc, yr, ow);
            if (two) {
                __m512i acc2 = _mm512_dpbusd_epi32(b, q0, v0);
                acc2 = _mm512_dpbusd_epi32(acc2, q1, v1);
                acc2 = _mm512_dpbusd_epi32(acc2, q2, v2);
                DW_EPI(acc2, y2, ow);
            }
            if (sw == 1) {
                q0 = q1;
                q1 = q2;
            } else {
                q0 = q2;
                q1 = DW_COL(iw + 3);
            }
        }
    } else {
        for (int64_t ow = 0; ow < a->OW; ow++) {
            const int64_t iw0 = ow * a->sw - a->pl;
            __m512i acc = b, acc2 = b;
            for (int64_t kw = 0; kw < KW; kw++) {
                const __m512i q = DW_COL(iw0 + kw * a->dw);
                acc = _mm512_dpbusd_epi32(acc, q, _mm512_loadu_si512(wb + kw * wstep));
                if (two) acc2 = _mm512_dpbusd_epi32(acc2, q, _mm512_loadu_si512(wb2 + kw * wstep));
            }
            DW_EPI(acc, yr, ow);
            if (two) DW_EPI(acc2, y2, ow);
        }
    }
#undef DW_COL
#undef DW_EPI
}

INLINE void dw_reg_modes(const mdl__qdw_args *a, const dwx *x, const int8_t *wq, int64_t cb,
                         const int8_t *const *r, const __mmask16 *m, int8_t *yr, int8_t *y2,
                         const bool plain, const int KR, const bool two) {
    const rq16 *q = &x[cb].q;
    if (q->ok && !q->clamp) dw_reg_block(a, x, wq, cb, r, m, yr, y2, plain, KR, 0, two);
    else if (q->ok) dw_reg_block(a, x, wq, cb, r, m, yr, y2, plain, KR, 1, two);
    else dw_reg_block(a, x, wq, cb, r, m, yr, y2, plain, KR, 2, two);
}

/* Output rows [oh, oh + nr) (nr 2: the quads hold KH + 1 input rows, the second output row's
   weights one row down). */
static void dw_reg_rows(const mdl__qdw_args *a, const void *extra, int64_t n, int64_t oh, int nr) {
    const int64_t C = a->C, CB = (C + 15) / 16, KH = a->KH, KR = KH + nr - 1;
    const dwx *x = extra;
    const int8_t *wq = (const int8_t *)extra + dwx_weights(C);
    const int64_t ih0 = oh * a->sh - a->pt;
    const int8_t *r[4];
    bool in[4], all = true;
    for (int64_t k = 0; k < 4; k++) {
        const int64_t ih = ih0 + k * a->dh;
        in[k] = k < KR && ih >= 0 && ih < a->H;
        /* rows k >= KR have zero weights: any bytes do (row 0's, or the masked zx) */
        r[k] = in[k] ? a->x + (n * a->H + ih) * a->W * C : a->x;
        if (k < KR && !in[k]) all = false;
    }
    if (all)
        for (int64_t k = KR; k < 4; k++)
            r[k] = r[0];
    int8_t *yr = a->y + (n * a->OH + oh) * a->OW * C, *y2 = yr + a->OW * C;
    for (int64_t cb = 0; cb < CB; cb++) {
        const __mmask16 tail = mdl__mask16(C - cb * 16);
        __mmask16 m[4];
        for (int k = 0; k < 4; k++)
            m[k] = in[k] ? tail : 0;
        const bool plain = all && tail == 0xFFFF;
        if (nr == 2 && plain && KR == 4) dw_reg_modes(a, x, wq, cb, r, m, yr, y2, true, 4, true);
        else if (nr == 2) dw_reg_modes(a, x, wq, cb, r, m, yr, y2, false, 4, true);
        else if (plain && KR == 3) dw_reg_modes(a, x, wq, cb, r, m, yr, y2, true, 3, false);
        else if (plain && KR == 1) dw_reg_modes(a, x, wq, cb, r, m, yr, y2, true, 1, false);
        else if (plain && KR == 2) dw_reg_modes(a, x, wq, cb, r, m, yr, y2, true, 2, false);
        else if (plain) dw_reg_modes(a, x, wq, cb, r, m, yr, y2, true, 4, false);
        else dw_reg_modes(a, x, wq, cb, r, m, yr, y2, false, 4, false);
    }
}

void mdl__qdw_vnni_reg(const mdl__qdw_args *a, const void *extra) {
    /* two output rows per pass where their KH + 1 input rows fit in a quad */
    const bool pairs = a->KH < 4 && a->sh == 1 && a->dh == 1;
    for (int64_t n = 0; n < a->N; n++) {
        int64_t oh = 0;
        if (pairs)
            for (; oh + 2 <= a->OH; oh += 2)
                dw_reg_rows(a, extra, n, oh, 2);
        for (; oh < a->OH; oh++)
            dw_reg_rows(a, extra, n, oh, 1);
    }
}
