/* AVX2 int8 GEMM core (built with -mavx2 -mfma; called when mdl__cpu_level() >= MDL_CPU_AVX2
 * and the CPU has no AVX-512 VNNI).  Contract in ops/int8.h, layout in int8_x86.h.
 *
 * vpmaddwd multiplies int16 pairs and adds each pair into an int32 lane: exact for int8 values
 * sign-extended to int16 (vpmaddubsw would saturate its int16 pair sums).  MR rows of A are
 * widened to int16 in scratch once, so each k pair is one 32-bit broadcast; the weights are
 * widened as they are loaded (vpmovsxbw), 16 bytes = 8 columns x 2 k per vector.  A tile is
 * MR = 3 rows x 16 columns (two panels) in 6 accumulators: with 4 rows gcc 12 kept two of the 8
 * accumulators on the stack, and the store-to-load chain through them halved the speed.  The
 * epilogue is mdl__requant written lane-wise (requant8).  Also the depthwise loop (mdl__qdw_avx2).
 */
#include "int8_avx2.h"
#include "int8_x86.h"

#include <string.h>

#define MR MDL_QGEMM_MR_AVX2
#define NR MDL_QGEMM_NR_AVX2

/* The first n (1..8) lanes of v, in [-128, 127], as bytes at c. */
static inline void store8(int8_t *c, __m256i v, int64_t n) {
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    __m128i b = _mm_packs_epi16(w, w);
    if (n >= 8) {
        _mm_storel_epi64((__m128i *)c, b);
    } else {
        int8_t t[16];
        _mm_storeu_si128((__m128i *)t, b);
        memcpy(c, t, (size_t)n);
    }
}

static inline int32_t load_pair(const int16_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* C[0:R, 0:nv] from the R widened rows a16 (stride kp) and the NP panels at pw (stride ps). */
INLINE void tile(const int R, const int NP, const mdl__qgemm_packed *p, int64_t n0, int64_t nv,
                 const int16_t *a16, int64_t kp, const int8_t *pw, int64_t ps, int8_t *c,
                 int64_t ldc) {
    __m256i acc[MR][2];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int j = 0; j < NP; j++)
            acc[i][j] = _mm256_setzero_si256();
    for (int64_t k = 0; k < kp; k += 2, pw += 16) {
        __m256i w0 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)pw)), w1 = w0;
        if (NP > 1) w1 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(pw + ps)));
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m256i av = _mm256_set1_epi32(load_pair(a16 + i * kp + k));
            acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(av, w0));
            if (NP > 1) acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(av, w1));
        }
    }
    const __m256i zy = _mm256_set1_epi32(p->zy), lo = _mm256_set1_epi32(p->lo),
                  hi = _mm256_set1_epi32(p->hi);
#pragma GCC unroll 2
    for (int j = 0; j < NP; j++) {
        const int64_t n = n0 + j * NR;
        const __m256i mult = _mm256_loadu_si256((const __m256i *)(p->mult + n));
        const __m256i shift = _mm256_loadu_si256((const __m256i *)(p->shift + n));
        const __m256i bias = _mm256_loadu_si256((const __m256i *)(p->bias + n));
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m256i v = requant8(_mm256_add_epi32(acc[i][j], bias), mult, shift, zy, lo, hi);
            store8(c + i * ldc + j * NR, v, nv - j * NR);
        }
    }
}

#define TILE_CASE(r)                                                                               \
    case r:                                                                                        \
        if (np == 2)                                                                               \
            tile(r, 2, p, n0, nv, a16, kp, pw, ps, c, ldc);                                        \
        else                                                                                       \
            tile(r, 1, p, n0, nv, a16, kp, pw, ps, c, ldc);                                        \
        break;

/* n bytes of a widened to int16 at d */
static inline void widen(int16_t *d, const int8_t *a, int64_t n) {
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        _mm256_storeu_si256((__m256i *)(d + k),
                            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + k))));
    for (; k < n; k++)
        d[k] = a[k];
}

/* Row m of A: nseg segments of K / nseg bytes, segment q at A + m * lda + seg[q] (one segment at
   0 for a plain matrix).  The rows are widened segment by segment, so any segment length works. */
static void gemm_rows(const mdl__qgemm_packed *p, int64_t M, const int8_t *A, int64_t lda,
                      const int64_t *seg, int nseg, int8_t *C, int64_t ldc, int16_t *a16) {
    const int64_t N = p->N, K = p->K, kp = (K + 1) & ~(int64_t)1, ps = kp * NR;
    const int64_t seglen = K / nseg;
    const int8_t *panels = p->panels;
    for (int64_t m0 = 0; m0 < M; m0 += MR) {
        const int rows = (int)(M - m0 < MR ? M - m0 : MR);
        for (int i = 0; i < rows; i++) {
            const int8_t *a = A + (m0 + i) * lda;
            int16_t *d = a16 + i * kp;
            for (int q = 0; q < nseg; q++)
                widen(d + q * seglen, a + seg[q], seglen);
            if (K < kp) d[K] = 0;
        }
        for (int64_t n0 = 0; n0 < N; n0 += 2 * NR) {
            const int64_t nv = N - n0 < 2 * NR ? N - n0 : 2 * NR;
            const int np = nv > NR ? 2 : 1;
            const int8_t *pw = panels + n0 / NR * ps;
            int8_t *c = C + m0 * ldc + n0;
            switch (rows) {
                TILE_CASE(1)
                TILE_CASE(2)
                TILE_CASE(3)
            default:
                if (np == 2)
                    tile(MR, 2, p, n0, nv, a16, kp, pw, ps, c, ldc);
                else
                    tile(MR, 1, p, n0, nv, a16, kp, pw, ps, c, ldc);
                break;
            }
        }
    }
}

void mdl__qgemm_avx2(const mdl__qgemm_packed *p, int64_t M, const int8_t *A, int64_t lda, int8_t *C,
                     int64_t ldc, int16_t *a16) {
    const int64_t zero = 0;
    gemm_rows(p, M, A, lda, &zero, 1, C, ldc, a16);
}

void mdl__qgemm_avx2_segs(const mdl__qgemm_packed *p, int64_t M, const int8_t *A, int64_t lda,
                          const int64_t *seg, int nseg, int8_t *C, int64_t ldc, int16_t *a16) {
    gemm_rows(p, M, A, lda, seg, nseg, C, ldc, a16);
}

/* ---- depthwise, channel multiplier 1 (see mdl__qdw_vnni): 8 channels per vector, up to 4
   vectors per pass ----------------------------------------------------------------------------- */

/* n bytes (all 8 when n >= 8) widened to int32 lanes, lanes past n zero */
static inline __m256i load8_i32(const int8_t *p, int64_t n) {
    if (n >= 8) return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
    int8_t t[8] = {0};
    memcpy(t, p, (size_t)n);
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)t));
}

INLINE void dw_block(const int NB, const mdl__qdw_args *a, int64_t c0, const int8_t *xn,
                     int64_t kh0, int64_t kh1, int64_t kw0, int64_t kw1, int64_t ih0, int64_t iw0,
                     int8_t *y) {
    const mdl__qgemm_packed *p = a->p;
    const int64_t C = a->C, nt = C - c0 - (NB - 1) * 8; /* the last vector's lanes */
    const __m256i zx = _mm256_set1_epi32(a->zx);
    __m256i acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < NB; j++)
        acc[j] = _mm256_loadu_si256((const __m256i *)(p->bias + c0 + j * 8));
    for (int64_t kh = kh0; kh < kh1; kh++) {
        const int8_t *xr = xn + ((ih0 + kh * a->dh) * a->W + iw0) * C + c0;
        const int8_t *wr = a->w + kh * a->KW * C + c0;
        for (int64_t kw = kw0; kw < kw1; kw++) {
            const int8_t *xp = xr + kw * a->dw * C, *wp = wr + kw * C;
#pragma GCC unroll 4
            for (int j = 0; j < NB; j++) {
                const int64_t n = j < NB - 1 ? 8 : nt;
                __m256i xv = load8_i32(xp + j * 8, n), wv = load8_i32(wp + j * 8, n);
                acc[j] = _mm256_add_epi32(acc[j], _mm256_mullo_epi32(_mm256_sub_epi32(xv, zx), wv));
            }
        }
    }
    const __m256i zy = _mm256_set1_epi32(p->zy), lo = _mm256_set1_epi32(p->lo),
                  hi = _mm256_set1_epi32(p->hi);
#pragma GCC unroll 4
    for (int j = 0; j < NB; j++) {
        const int64_t c = c0 + j * 8;
        __m256i v = requant8(acc[j], _mm256_loadu_si256((const __m256i *)(p->mult + c)),
                             _mm256_loadu_si256((const __m256i *)(p->shift + c)), zy, lo, hi);
        store8(y + c, v, j < NB - 1 ? 8 : nt);
    }
}

void mdl__qdw_avx2(const mdl__qdw_args *a) {
    const int64_t C = a->C;
    for (int64_t n = 0; n < a->N; n++)
        for (int64_t oh = 0; oh < a->OH; oh++)
            for (int64_t ow = 0; ow < a->OW; ow++) {
                const int8_t *xn = a->x + n * a->H * a->W * C;
                int8_t *y = a->y + ((n * a->OH + oh) * a->OW + ow) * C;
                const int64_t ih0 = oh * a->sh - a->pt, iw0 = ow * a->sw - a->pl;
                int64_t kh0, kh1, kw0, kw1;
                mdl__qdw_tap_range(ih0, a->dh, a->KH, a->H, &kh0, &kh1);
                mdl__qdw_tap_range(iw0, a->dw, a->KW, a->W, &kw0, &kw1);
                int64_t c0 = 0;
                for (; C - c0 > 24; c0 += 32)
                    dw_block(4, a, c0, xn, kh0, kh1, kw0, kw1, ih0, iw0, y);
                if (C - c0 > 16)
                    dw_block(3, a, c0, xn, kh0, kh1, kw0, kw1, ih0, iw0, y);
                else if (C - c0 > 8)
                    dw_block(2, a, c0, xn, kh0, kh1, kw0, kw1, ih0, iw0, y);
                else if (C - c0 > 0)
                    dw_block(1, a, c0, xn, kh0, kh1, kw0, kw1, ih0, iw0, y);
            }
}
