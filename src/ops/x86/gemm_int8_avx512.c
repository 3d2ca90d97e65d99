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
                acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], w0, av);
                if (NP > 1) acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], w1, av);
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
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], w0, av);
            if (NP > 1) acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], w1, av);
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

/* ---- depthwise by vpdpbusd (KH <= 4, channel multiplier 1) ----------------------------------
   For each output row, the KH input rows it reads are interleaved once into a row of quads:
   byte 4j + k of the 64 bytes at (column, channel block) is input row k's value of channel j,
   plus 128 (u8), padding rows/columns holding zx (which adds nothing after the correction
   below), rows k >= KH zero-weighted.  An output pixel is then KW vpdpbusd per 16 channels
   against the weights interleaved the same way:
       acc = sum_taps (xs + 128) w = sum_taps (xs - zx) w + (128 + zx) sum_taps w,
   so the bias is lowered by (128 + zx) sum_taps w once per run (int32 arithmetic wraps; the true
   result fits, see mdl__qgemm_check).  Scratch: mdl__qdw4_scratch_bytes. */
void mdl__qdw_vnni4(const mdl__qdw_args *a, void *scratch) {
    const int64_t C = a->C, CB = (C + 15) / 16, KW = a->KW, KH = a->KH;
    const int64_t Wp = (a->OW - 1) * a->sw + (KW - 1) * a->dw + 1;
    const mdl__qgemm_packed *p = a->p;
    uint8_t *xr = scratch;
    int8_t *wq = (int8_t *)(xr + Wp * CB * 64);
    int32_t *b2 = (int32_t *)(wq + KW * CB * 64);
    /* wq: byte 4c + k of (kw, channel block) is w[k, kw, c] (c, k past C, KH zero); the
       channel quad (16 bytes x 4 rows) is one 4x16 byte transpose, as for the input below */
    memset(wq, 0, (size_t)(KW * CB * 64));
    for (int64_t kw = 0; kw < KW; kw++)
        for (int64_t k = 0; k < KH; k++)
            for (int64_t c = 0; c < C; c++)
                wq[(kw * CB * 16 + c) * 4 + k] = a->w[(k * KW + kw) * C + c];
    memcpy(b2, p->bias, (size_t)C * sizeof *b2);
    for (int64_t t = 0; t < KH * KW; t++)
        for (int64_t c = 0; c < C; c++)
            b2[c] = (int32_t)((uint32_t)b2[c] - (uint32_t)(128 + a->zx) * (uint32_t)(int32_t)a->w[t * C + c]);
    for (int64_t c = C; c < CB * 16; c++)
        b2[c] = 0;
    const __mmask16 tail = mdl__mask16(C - (CB - 1) * 16);
    const __m128i zxv = _mm_set1_epi8((char)a->zx), flip = _mm_set1_epi8((char)0x80);
    const __m512i zy = _mm512_set1_epi32(p->zy), lo = _mm512_set1_epi32(p->lo),
                  hi = _mm512_set1_epi32(p->hi);
    for (int64_t n = 0; n < a->N; n++)
        for (int64_t oh = 0; oh < a->OH; oh++) {
            const int64_t ih0 = oh * a->sh - a->pt;
            const int8_t *rows[4];
            for (int64_t k = 0; k < 4; k++) {
                const int64_t ih = ih0 + k * a->dh;
                rows[k] = k < KH && ih >= 0 && ih < a->H ? a->x + (n * a->H + ih) * a->W * C : NULL;
            }
            /* columns [j0, j1) are inside the input; with every row inside too, blocks without
               a tail need no checks (a row k >= KH has zero weights: any bytes do, row 0's) */
            const int64_t j0 = a->pl < Wp ? a->pl : Wp, j1 = a->pl + a->W < Wp ? a->pl + a->W : Wp;
            const bool all_rows = rows[0] && rows[1 < KH ? 1 : 0] && rows[2 < KH ? 2 : 0] &&
                                  rows[3 < KH ? 3 : 0];
            const int64_t cfull = C / 16; /* blocks without a tail */
            if (all_rows && j0 < j1 && cfull > 0) {
                const int8_t *r0 = rows[0], *r1 = rows[1 < KH ? 1 : 0], *r2 = rows[2 < KH ? 2 : 0],
                             *r3 = rows[3 < KH ? 3 : 0];
                const __m512i flip4 = _mm512_set1_epi8((char)0x80);
                for (int64_t j = j0; j < j1; j++) {
                    const int64_t off = (j - a->pl) * C;
                    int64_t cb = 0;
                    /* 64 channels at a time: the same unpacks within 128-bit lanes, then a 4x4
                       transpose of the lanes gives the four blocks' layout */
                    for (; cb + 4 <= cfull; cb += 4) {
                        const __m512i x0 = _mm512_xor_si512(_mm512_loadu_si512(r0 + off + cb * 16), flip4);
                        const __m512i x1 = _mm512_xor_si512(_mm512_loadu_si512(r1 + off + cb * 16), flip4);
                        const __m512i x2 = _mm512_xor_si512(_mm512_loadu_si512(r2 + off + cb * 16), flip4);
                        const __m512i x3 = _mm512_xor_si512(_mm512_loadu_si512(r3 + off + cb * 16), flip4);
                        const __m512i ab0 = _mm512_unpacklo_epi8(x0, x1), ab1 = _mm512_unpackhi_epi8(x0, x1);
                        const __m512i cd0 = _mm512_unpacklo_epi8(x2, x3), cd1 = _mm512_unpackhi_epi8(x2, x3);
                        const __m512i q0 = _mm512_unpacklo_epi16(ab0, cd0), q1 = _mm512_unpackhi_epi16(ab0, cd0);
                        const __m512i q2 = _mm512_unpacklo_epi16(ab1, cd1), q3 = _mm512_unpackhi_epi16(ab1, cd1);
                        const __m512i u0 = _mm512_shuffle_i64x2(q0, q1, _MM_SHUFFLE(1, 0, 1, 0));
                        const __m512i u1 = _mm512_shuffle_i64x2(q2, q3, _MM_SHUFFLE(1, 0, 1, 0));
                        const __m512i u2 = _mm512_shuffle_i64x2(q0, q1, _MM_SHUFFLE(3, 2, 3, 2));
                        const __m512i u3 = _mm512_shuffle_i64x2(q2, q3, _MM_SHUFFLE(3, 2, 3, 2));
                        uint8_t *o4 = xr + (j * CB + cb) * 64;
                        _mm512_storeu_si512(o4, _mm512_shuffle_i64x2(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)));
                        _mm512_storeu_si512(o4 + 64, _mm512_shuffle_i64x2(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
                        _mm512_storeu_si512(o4 + 128, _mm512_shuffle_i64x2(u2, u3, _MM_SHUFFLE(2, 0, 2, 0)));
                        _mm512_storeu_si512(o4 + 192, _mm512_shuffle_i64x2(u2, u3, _MM_SHUFFLE(3, 1, 3, 1)));
                    }
                    __m128i *o = (__m128i *)(xr + (j * CB + cb) * 64);
                    for (; cb < cfull; cb++, o += 4) {
                        const __m128i x0 = _mm_loadu_si128((const __m128i *)(r0 + off + cb * 16));
                        const __m128i x1 = _mm_loadu_si128((const __m128i *)(r1 + off + cb * 16));
                        const __m128i x2 = _mm_loadu_si128((const __m128i *)(r2 + off + cb * 16));
                        const __m128i x3 = _mm_loadu_si128((const __m128i *)(r3 + off + cb * 16));
                        const __m128i ab0 = _mm_unpacklo_epi8(x0, x1), ab1 = _mm_unpackhi_epi8(x0, x1);
                        const __m128i cd0 = _mm_unpacklo_epi8(x2, x3), cd1 = _mm_unpackhi_epi8(x2, x3);
                        _mm_storeu_si128(o + 0, _mm_xor_si128(_mm_unpacklo_epi16(ab0, cd0), flip));
                        _mm_storeu_si128(o + 1, _mm_xor_si128(_mm_unpackhi_epi16(ab0, cd0), flip));
                        _mm_storeu_si128(o + 2, _mm_xor_si128(_mm_unpacklo_epi16(ab1, cd1), flip));
                        _mm_storeu_si128(o + 3, _mm_xor_si128(_mm_unpackhi_epi16(ab1, cd1), flip));
                    }
                }
            }
            const bool fast_done = all_rows && j0 < j1 && cfull > 0;
            for (int64_t j = 0; j < Wp; j++) {
                const int64_t iw = j - a->pl;
                const bool col = iw >= 0 && iw < a->W;
                for (int64_t cb = fast_done && col ? cfull : 0; cb < CB; cb++) {
                    __m128i r[4];
                    for (int k = 0; k < 4; k++) {
                        if (!col || !rows[k])
                            r[k] = zxv;
                        else if (cb < CB - 1)
                            r[k] = _mm_loadu_si128((const __m128i *)(rows[k] + iw * C + cb * 16));
                        else
                            r[k] = _mm_maskz_loadu_epi8((__mmask16)tail, rows[k] + iw * C + cb * 16);
                    }
                    const __m128i ab0 = _mm_unpacklo_epi8(r[0], r[1]), ab1 = _mm_unpackhi_epi8(r[0], r[1]);
                    const __m128i cd0 = _mm_unpacklo_epi8(r[2], r[3]), cd1 = _mm_unpackhi_epi8(r[2], r[3]);
                    __m128i *o = (__m128i *)(xr + (j * CB + cb) * 64);
                    _mm_storeu_si128(o + 0, _mm_xor_si128(_mm_unpacklo_epi16(ab0, cd0), flip));
                    _mm_storeu_si128(o + 1, _mm_xor_si128(_mm_unpackhi_epi16(ab0, cd0), flip));
                    _mm_storeu_si128(o + 2, _mm_xor_si128(_mm_unpacklo_epi16(ab1, cd1), flip));
                    _mm_storeu_si128(o + 3, _mm_xor_si128(_mm_unpackhi_epi16(ab1, cd1), flip));
                }
            }
            int8_t *yr = a->y + (n * a->OH + oh) * a->OW * C;
            for (int64_t cb = 0; cb < CB; cb++) {
                const __m512i b = _mm512_loadu_si512(b2 + cb * 16);
                const __m512i mult = _mm512_loadu_si512(p->mult + cb * 16);
                const __m512i shift = _mm512_loadu_si512(p->shift + cb * 16);
                const __mmask16 m = cb < CB - 1 ? (__mmask16)0xFFFF : tail;
                rq16 q;
                const bool x = rq16_setup(mult, shift, p->zy, lo, hi, &q);
                const __m512i w0 = _mm512_loadu_si512(wq + cb * 64);
                const __m512i w1 = KW > 1 ? _mm512_loadu_si512(wq + (CB + cb) * 64) : w0;
                const __m512i w2 = KW > 2 ? _mm512_loadu_si512(wq + (2 * CB + cb) * 64) : w0;
                const int64_t step = a->dw * CB * 64;
                for (int64_t ow = 0; ow < a->OW; ow++) {
                    __m512i acc = b;
                    const uint8_t *xp = xr + (ow * a->sw * CB + cb) * 64;
                    if (KW == 3) { /* the usual 3x3: weights in registers, no loop */
                        acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(xp), w0);
                        acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(xp + step), w1);
                        acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(xp + 2 * step), w2);
                    } else {
                        for (int64_t kw = 0; kw < KW; kw++)
                            acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(xp + kw * step),
                                                      _mm512_loadu_si512(wq + (kw * CB + cb) * 64));
                    }
                    acc = x && !q.clamp ? requant16x(acc, &q, false)
                          : x               ? requant16x(acc, &q, true)
                                            : requant16(acc, mult, shift, zy, lo, hi);
                    _mm512_mask_cvtsepi32_storeu_epi8(yr + ow * C + cb * 16, m, acc);
                }
            }
        }
}
