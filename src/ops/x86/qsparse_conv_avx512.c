/* Block-sparse int8 CONV2D by vpermb gathers and vpdpbusd (mdl__qsc_* in int8_x86.h). */
#include "../sparse.h"
#include "int8_avx512.h"

#include <immintrin.h>
#include <string.h>

#define QSC_MAX_OC 256      /* output channels (the per-pixel int32 sums live on the stack) */
#define QSC_MAX_BYTES 1024  /* gathered bytes per pixel: stored blocks rounded up to quads */
#define QSC_R 4             /* pixels at a time */

/* The packed layout, 64-byte aligned pieces in this order:
     header; idx [nch][KH][64] bytes; masks [nch][KH] uint64; qoff, qcnt [groups] int32 (byte
     offset of group g's first quad in the gathered vector, its quads); bias [npad] int32; the
     quads' weights, 32 bytes each (lane r: the 4 blocks' weights of channel r), group by group. */
typedef struct qsc_hdr {
    int32_t groups, nch, KH, quads, npad;
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
    if (v) v->qoff = (const int32_t *)(b + o), v->qcnt = v->qoff + h->groups;
    o += up64((size_t)h->groups * 8);
    if (v) v->bias = (const int32_t *)(b + o);
    o += up64((size_t)h->npad * 4);
    if (v) v->w = (const int8_t *)(b + o);
    o += (size_t)h->quads * 32;
    return up64(o);
}

static bool header(const mdl__bsr *W, int64_t KH, int64_t KWC, qsc_hdr *h) {
    const int64_t groups = mdl__bsr_groups(W->N);
    if (KWC > MDL_QSC_MAX_RUN || KWC < 1 || KH < 1 || KH > 16 || W->N > QSC_MAX_OC || W->N < 1) return false;
    int64_t quads = 0;
    for (int64_t g = 0; g < groups; g++) quads += (W->ptr[g + 1] - W->ptr[g] + 3) / 4;
    if (quads * 4 > QSC_MAX_BYTES) return false;
    h->groups = (int32_t)groups;
    h->quads = (int32_t)quads;
    h->nch = (int32_t)((quads * 4 + 63) / 64);
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
    const size_t bytes = layout(&h, NULL, NULL);
    memset(out, 0, bytes);
    memcpy(out, &h, sizeof h);
    qsc_view v;
    layout(&h, &v, out);
    uint8_t *idx = (uint8_t *)v.idx;
    uint64_t *mask = (uint64_t *)v.mask;
    int32_t *qoff = (int32_t *)v.qoff, *qcnt = (int32_t *)v.qcnt, *bias = (int32_t *)v.bias;
    int8_t *w = (int8_t *)v.w;
    int64_t t = 0; /* gathered byte */
    for (int64_t g = 0; g < h.groups; g++) {
        const int64_t j0 = W->ptr[g], nb = W->ptr[g + 1] - j0, nq = (nb + 3) / 4, n0 = g * MDL_SPARSE_BN;
        qoff[g] = (int32_t)t;
        qcnt[g] = (int32_t)nq;
        for (int64_t l = 0; l < nq * 4; l++, t++) {
            if (l >= nb) continue; /* a quad's padding: weight 0, the byte left 0 */
            const int64_t col = W->col[j0 + l], kh = col / KWC, r = col % KWC;
            idx[((t / 64) * h.KH + kh) * 64 + t % 64] = (uint8_t)r;
            mask[(t / 64) * h.KH + kh] |= (uint64_t)1 << (t % 64);
            for (int64_t c = 0; c < MDL_SPARSE_BN; c++)
                w[(qoff[g] + (l / 4) * 4) * 8 + c * 4 + l % 4] = W->val8[(j0 + l) * MDL_SPARSE_BN + c];
        }
        /* the unsigned inputs add 128 * the channel's weights */
        for (int64_t c = 0; c < MDL_SPARSE_BN && n0 + c < W->N; c++) {
            int64_t sum = 0;
            for (int64_t l = 0; l < nb; l++) sum += W->val8[(j0 + l) * MDL_SPARSE_BN + c];
            bias[n0 + c] = (int32_t)((int64_t)p->bias[n0 + c] - 128 * sum);
        }
    }
}

/* The gathered bytes of R pixels (R a constant after inlining) starting at x0. */
static inline __attribute__((always_inline)) void gather(const mdl__qsc_args *a, const qsc_view *v,
                                                         const int R, const uint8_t *x0,
                                                         uint8_t (*gb)[QSC_MAX_BYTES]) {
    const __mmask64 run = a->KWC >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << a->KWC) - 1);
    const int64_t KH = a->KH, xs = a->sw * a->C;
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        __m512i seg[16];
        for (int64_t kh = 0; kh < KH; kh++)
            seg[kh] = _mm512_maskz_loadu_epi8(run, x0 + i * xs + kh * a->dh * a->rs);
        for (int64_t ch = 0; ch < v->h->nch; ch++) {
            const uint8_t *ix = v->idx + ch * KH * 64;
            const uint64_t *mk = v->mask + ch * KH;
            __m512i gv = _mm512_maskz_permutexvar_epi8(mk[0], _mm512_loadu_si512(ix), seg[0]);
            for (int64_t kh = 1; kh < KH; kh++)
                gv = _mm512_mask_permutexvar_epi8(gv, mk[kh], _mm512_loadu_si512(ix + kh * 64), seg[kh]);
            _mm512_storeu_si512(gb[i] + ch * 64, gv);
        }
    }
}

static inline __attribute__((always_inline)) void pixels(const mdl__qsc_args *a, const qsc_view *v,
                                                         const int R, const uint8_t *x0, int8_t *y) {
    uint8_t gb[QSC_R][QSC_MAX_BYTES] __attribute__((aligned(64)));
    int32_t acc[QSC_R][QSC_MAX_OC] __attribute__((aligned(64)));
    gather(a, v, R, x0, gb);
    for (int64_t g = 0; g < v->h->groups; g++) {
        __m256i s[QSC_R];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) s[i] = _mm256_setzero_si256();
        const int64_t o = v->qoff[g];
        const int8_t *w = v->w + o * 8;
        for (int64_t q = 0; q < v->qcnt[g]; q++) {
            const __m256i wq = _mm256_load_si256((const __m256i *)(w + q * 32));
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                int32_t in;
                memcpy(&in, gb[i] + o + q * 4, 4);
                s[i] = _mm256_dpbusd_epi32(s[i], _mm256_set1_epi32(in), wq);
            }
        }
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) _mm256_store_si256((__m256i *)(acc[i] + g * MDL_SPARSE_BN), s[i]);
    }
    if (v->h->groups % 2) /* the last 16-channel vector's upper half: masked off, but defined */
#pragma GCC unroll 4
        for (int i = 0; i < R; i++)
            _mm256_store_si256((__m256i *)(acc[i] + v->h->groups * MDL_SPARSE_BN), _mm256_setzero_si256());
    const mdl__qgemm_packed *p = a->p;
    const __m512i zy = _mm512_set1_epi32(p->zy), lo = _mm512_set1_epi32(p->lo), hi = _mm512_set1_epi32(p->hi);
    for (int64_t ocb = 0; ocb < a->OC; ocb += 16) {
        /* the record's constants (and this bias) are padded with zeros to 16 channels */
        const __m512i mult = _mm512_loadu_si512((const void *)(p->mult + ocb));
        const __m512i shift = _mm512_loadu_si512((const void *)(p->shift + ocb));
        const __m512i bias = _mm512_loadu_si512((const void *)(v->bias + ocb));
        const __mmask16 m = a->OC - ocb >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (a->OC - ocb)) - 1);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            const __m512i s = _mm512_add_epi32(_mm512_loadu_si512((const void *)(acc[i] + ocb)), bias);
            _mm_mask_storeu_epi8(y + i * a->OC + ocb, m,
                                 _mm512_cvtsepi32_epi8(requant16(s, mult, shift, zy, lo, hi)));
        }
    }
}

void mdl__qsc_vnni(const mdl__qsc_args *a) {
    qsc_view v;
    layout((const qsc_hdr *)a->pk, &v, a->pk);
    for (int64_t oh = 0; oh < a->OH; oh++) {
        const uint8_t *xr = a->x + oh * a->sh * a->rs;
        int8_t *yr = a->y + oh * a->OW * a->OC;
        int64_t ow = 0;
        for (; ow + QSC_R <= a->OW; ow += QSC_R) pixels(a, &v, QSC_R, xr + ow * a->sw * a->C, yr + ow * a->OC);
        for (; ow < a->OW; ow++) pixels(a, &v, 1, xr + ow * a->sw * a->C, yr + ow * a->OC);
    }
}
