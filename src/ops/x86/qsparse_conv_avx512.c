/* Block-sparse int8 CONV2D by vpermb gathers and vpdpbusd (mdl__qsc_* in int8_x86.h).
 *
 * The 8-channel groups (row groups of the blocks) go in pairs (g, g + 1), a last odd group with
 * an empty partner: a 512-bit accumulator holds both, channel r of group g + h in dword lane
 * 2r + h.  Each group's blocks are taken 4 at a time (quads, the last one padded with zero
 * weights); quad q of both groups is one vpdpbusd: the pixel's 8 gathered input bytes (quad q of
 * g, then of g + 1) broadcast as a pair of dwords (even lanes get g's, odd lanes g + 1's), times
 * 64 bytes of weights in the same lane order.  A pair's shorter group is padded with zero quads.
 * One vpermd puts the 16 channels in order for the epilogue. */
#include "../sparse.h"
#include "int8_avx512.h"

#include <immintrin.h>
#include <string.h>

#define QSC_MAX_OC 256     /* output channels */
#define QSC_MAX_BYTES 1024 /* gathered bytes per pixel */
#define QSC_R 4            /* pixels at a time */

/* The packed layout, 64-byte aligned pieces in this order:
     header; idx [nch][KH][64] bytes; masks [nch][KH] uint64; qoff, qcnt [pairs] int32 (byte
     offset of pair P's first quad pair in the gathered vector, its quad pairs); bias [npad]
     int32; the quad pairs' weights, 64 bytes each (dword lane 2r + h: channel r of group
     2P + h, its 4 blocks' weights), pair after pair. */
typedef struct qsc_hdr {
    int32_t pairs, nch, KH, qpairs, npad;
} qsc_hdr;

static size_t up64(size_t n) { return (n + 63) / 64 * 64; }

typedef struct qsc_view {
    const qsc_hdr *h;
    const uint8_t *idx;
    const uint64_t *mask;
    const int32_t *qoff, *qcnt, *bias;
    const int8_t *w;
} qsc_view;

static size_t layout(const qsc_hdr *h, qsc_view *v, const void *base) {
    const unsigned char *b = base;
    size_t o = up64(sizeof(qsc_hdr));
    if (v) v->h = base, v->idx = b + o;
    o += up64((size_t)h->nch * (size_t)h->KH * 64);
    if (v) v->mask = (const uint64_t *)(b + o);
    o += up64((size_t)h->nch * (size_t)h->KH * 8);
    if (v) v->qoff = (const int32_t *)(b + o), v->qcnt = v->qoff + h->pairs;
    o += up64((size_t)h->pairs * 8);
    if (v) v->bias = (const int32_t *)(b + o);
    o += up64((size_t)h->npad * 4);
    if (v) v->w = (const int8_t *)(b + o);
    o += (size_t)h->qpairs * 64;
    return up64(o);
}

static int64_t quads(const mdl__bsr *W, int64_t g) {
    return g < mdl__bsr_groups(W->N) ? (W->ptr[g + 1] - W->ptr[g] + 3) / 4 : 0;
}

static bool header(const mdl__bsr *W, int64_t KH, int64_t KWC, qsc_hdr *h) {
    const int64_t groups = mdl__bsr_groups(W->N), pairs = (groups + 1) / 2;
    if (KWC > MDL_QSC_MAX_RUN || KWC < 1 || KH < 1 || KH > 16 || W->N > QSC_MAX_OC || W->N < 1) return false;
    int64_t qp = 0;
    for (int64_t P = 0; P < pairs; P++) {
        const int64_t a = quads(W, 2 * P), b = quads(W, 2 * P + 1);
        qp += a > b ? a : b;
    }
    if (qp * 8 > QSC_MAX_BYTES) return false;
    h->pairs = (int32_t)pairs;
    h->qpairs = (int32_t)qp;
    h->nch = (int32_t)((qp * 8 + 63) / 64);
    h->KH = (int32_t)KH;
    h->npad = (int32_t)((W->N + 15) / 16 * 16);
    return true;
}

size_t mdl__qsc_pack_bytes(const mdl__bsr *W, int64_t KH, int64_t KWC) {
    qsc_hdr h;
    return header(W, KH, KWC, &h) ? layout(&h, NULL, NULL) : 0;
}

void mdl__qsc_pack(const mdl__qgemm_packed *p, const mdl__bsr *W, int64_t KH, int64_t KWC, void *out) {
    qsc_hdr h;
    if (!header(W, KH, KWC, &h)) return;
    memset(out, 0, layout(&h, NULL, NULL));
    memcpy(out, &h, sizeof h);
    qsc_view v;
    layout(&h, &v, out);
    uint8_t *idx = (uint8_t *)v.idx;
    uint64_t *mask = (uint64_t *)v.mask;
    int32_t *qoff = (int32_t *)v.qoff, *qcnt = (int32_t *)v.qcnt, *bias = (int32_t *)v.bias;
    int8_t *w = (int8_t *)v.w;
    int64_t qp0 = 0; /* quad pairs before this pair */
    for (int64_t P = 0; P < h.pairs; P++) {
        const int64_t qa = quads(W, 2 * P), qb = quads(W, 2 * P + 1), nq = qa > qb ? qa : qb;
        qoff[P] = (int32_t)(qp0 * 8);
        qcnt[P] = (int32_t)nq;
        for (int64_t hh = 0; hh < 2; hh++) {
            const int64_t g = 2 * P + hh;
            if (g >= mdl__bsr_groups(W->N)) break;
            const int64_t j0 = W->ptr[g], nb = W->ptr[g + 1] - j0, n0 = g * MDL_SPARSE_BN;
            for (int64_t l = 0; l < nb; l++) {
                const int64_t q = l / 4, t = (qp0 + q) * 8 + hh * 4 + l % 4; /* gathered byte */
                const int64_t col = W->col[j0 + l], kh = col / KWC, r = col % KWC;
                idx[((t / 64) * h.KH + kh) * 64 + t % 64] = (uint8_t)r;
                mask[(t / 64) * h.KH + kh] |= (uint64_t)1 << (t % 64);
                for (int64_t c = 0; c < MDL_SPARSE_BN; c++)
                    w[(qp0 + q) * 64 + (2 * c + hh) * 4 + l % 4] = W->val8[(j0 + l) * MDL_SPARSE_BN + c];
            }
            /* the unsigned inputs add 128 * the channel's weights */
            for (int64_t c = 0; c < MDL_SPARSE_BN && n0 + c < W->N; c++) {
                int64_t sum = 0;
                for (int64_t l = 0; l < nb; l++) sum += W->val8[(j0 + l) * MDL_SPARSE_BN + c];
                bias[n0 + c] = (int32_t)((int64_t)p->bias[n0 + c] - 128 * sum);
            }
        }
        qp0 += nq;
    }
}

static __mmask64 first_bytes(int64_t n) {
    return n >= 64 ? ~(__mmask64)0 : n <= 0 ? 0 : (((__mmask64)1 << n) - 1);
}

/* The gathered bytes of R pixels (R a constant after inlining) starting at x0: a kernel row of at
   most 64 bytes is one vpermb table, a longer one (up to 128) two tables (vpermt2b). */
static inline __attribute__((always_inline)) void gather(const mdl__qsc_args *a, const qsc_view *v,
                                                         const int R, const bool wide,
                                                         const uint8_t *x0, uint8_t (*gb)[QSC_MAX_BYTES]) {
    const __mmask64 run = first_bytes(a->KWC), run2 = first_bytes(a->KWC - 64);
    const int64_t KH = a->KH, xs = a->sw * a->C;
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        __m512i seg[16], seg2[16];
        for (int64_t kh = 0; kh < KH; kh++) {
            const uint8_t *row = x0 + i * xs + kh * a->dh * a->rs;
            seg[kh] = _mm512_maskz_loadu_epi8(run, row);
            if (wide) seg2[kh] = _mm512_maskz_loadu_epi8(run2, row + 64);
        }
        for (int64_t ch = 0; ch < v->h->nch; ch++) {
            const uint8_t *ix = v->idx + ch * KH * 64;
            const uint64_t *mk = v->mask + ch * KH;
            __m512i gv;
            if (wide) {
                gv = _mm512_maskz_permutex2var_epi8(mk[0], seg[0], _mm512_loadu_si512(ix), seg2[0]);
                for (int64_t kh = 1; kh < KH; kh++)
                    gv = _mm512_or_si512(gv, _mm512_maskz_permutex2var_epi8(mk[kh], seg[kh], _mm512_loadu_si512(ix + kh * 64),
                                                                            seg2[kh]));
            } else {
                gv = _mm512_maskz_permutexvar_epi8(mk[0], _mm512_loadu_si512(ix), seg[0]);
                for (int64_t kh = 1; kh < KH; kh++)
                    gv = _mm512_mask_permutexvar_epi8(gv, mk[kh], _mm512_loadu_si512(ix + kh * 64), seg[kh]);
            }
            _mm512_store_si512(gb[i] + ch * 64, gv);
        }
    }
}

static inline __attribute__((always_inline)) void pixels(const mdl__qsc_args *a, const qsc_view *v,
                                                         const int R, const bool wide, const uint8_t *x0,
                                                         int8_t *y) {
    uint8_t gb[QSC_R][QSC_MAX_BYTES] __attribute__((aligned(64)));
    gather(a, v, R, wide, x0, gb);
    const mdl__qgemm_packed *p = a->p;
    /* lane m <- lane 2 (m % 8) + m / 8: the pair's 16 channels in order */
    const __m512i order = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    const __m512i zy = _mm512_set1_epi32(p->zy), lo = _mm512_set1_epi32(p->lo), hi = _mm512_set1_epi32(p->hi);
    for (int64_t P = 0; P < v->h->pairs; P++) {
        __m512i s[QSC_R];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) s[i] = _mm512_setzero_si512();
        const int64_t o = v->qoff[P];
        const int8_t *w = v->w + o * 8;
        for (int64_t q = 0; q < v->qcnt[P]; q++) {
            const __m512i wq = _mm512_load_si512((const void *)(w + q * 64));
#pragma GCC unroll 4
            for (int i = 0; i < R; i++)
                s[i] = _mm512_dpbusd_epi32(s[i], _mm512_broadcast_i32x2(_mm_loadl_epi64((const __m128i *)(gb[i] + o + q * 8))), wq);
        }
        const int64_t n0 = 16 * P;
        const __m512i mult = _mm512_loadu_si512((const void *)(p->mult + n0));
        const __m512i shift = _mm512_loadu_si512((const void *)(p->shift + n0));
        const __m512i bias = _mm512_loadu_si512((const void *)(v->bias + n0));
        const __mmask16 m = a->OC - n0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (a->OC - n0)) - 1);
        rq16 rq;
        if (rq16_setup(mult, shift, p->zy, lo, hi, &rq)) {
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                const __m512i t = _mm512_add_epi32(_mm512_permutexvar_epi32(order, s[i]), bias);
                _mm_mask_storeu_epi8(y + i * a->OC + n0, m, _mm512_cvtsepi32_epi8(requant16x(t, &rq, rq.clamp)));
            }
        } else {
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                const __m512i t = _mm512_add_epi32(_mm512_permutexvar_epi32(order, s[i]), bias);
                _mm_mask_storeu_epi8(y + i * a->OC + n0, m,
                                     _mm512_cvtsepi32_epi8(requant16(t, mult, shift, zy, lo, hi)));
            }
        }
    }
}

static inline __attribute__((always_inline)) void rows(const mdl__qsc_args *a, const qsc_view *v,
                                                       const bool wide) {
    for (int64_t oh = 0; oh < a->OH; oh++) {
        const uint8_t *xr = a->x + oh * a->sh * a->rs;
        int8_t *yr = a->y + oh * a->OW * a->OC;
        int64_t ow = 0;
        for (; ow + QSC_R <= a->OW; ow += QSC_R) pixels(a, v, QSC_R, wide, xr + ow * a->sw * a->C, yr + ow * a->OC);
        for (; ow < a->OW; ow++) pixels(a, v, 1, wide, xr + ow * a->sw * a->C, yr + ow * a->OC);
    }
}

void mdl__qsc_vnni(const mdl__qsc_args *a) {
    qsc_view v;
    layout((const qsc_hdr *)a->pk, &v, a->pk);
    if (a->KWC > 64) rows(a, &v, true);
    else rows(a, &v, false);
}
