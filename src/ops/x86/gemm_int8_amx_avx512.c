/* AMX int8 GEMM core (built with the AVX-512 flags plus -mavx512vnni -mamx-tile -mamx-int8;
 * called only when mdl__cpu_has_amx(), i.e. cpuid has AMX-TILE and AMX-INT8 and Linux granted
 * the tile data state, see cpu.c).  Contract in ops/int8.h: the same result as the reference,
 * bit for bit (int32 sums are exact, and the epilogue is the VNNI kernel's).
 *
 * It reads the VNNI variant's packed weights as they are: a panel of 16 columns is ceil(K/4)
 * groups of 64 bytes (byte 4j + r = W(n0 + j, 4q + r) + 128), i.e. 16 groups (64 k) are one
 * B tile of 16 rows x 64 bytes, and tdpbsud multiplies signed A bytes by those unsigned ones;
 * so each sum carries 128 * sum_k A[m,k], subtracted per row as in the VNNI kernel.
 *
 * Tiles: 0, 1 the int32 sums of 16 rows x 2 panels; 2 a 16 x 64-byte block of A; 3, 4 the two
 * panels' B tiles; 5, 6, 7 the same for the last K % 64 bytes.  Rows of A are read in place (a
 * tile load takes a row stride), so K must be a multiple of 4 (a tile row of K % 64 bytes must
 * not read past a row), and with segments (a convolution's kernel rows) each 64-byte block must
 * lie in one segment: segment length a multiple of 64.  The sums start at the bias (a tile load
 * with row stride 0) and go through a 2 KiB buffer to the AVX-512 epilogue; rows are taken in
 * blocks of RBLK, whose row sums and whose panels' epilogue constants are computed once. */
#include "int8_avx512.h"

#include <string.h>

#define MB 16 /* rows per tile */

typedef struct tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;
_Static_assert(sizeof(tilecfg) == 64, "tile config");

static void configure(int64_t mr, int64_t kt) {
    tilecfg t;
    memset(&t, 0, sizeof t);
    t.palette = 1;
    for (int i = 0; i < 8; i++) {
        t.rows[i] = (uint8_t)mr;
        t.colsb[i] = 64;
    }
    t.rows[3] = t.rows[4] = 16;
    t.colsb[5] = (uint16_t)(kt ? kt : 64);
    t.rows[6] = t.rows[7] = (uint8_t)(kt ? kt / 4 : 16);
    _tile_loadconfig(&t);
}

/* The epilogue of one 16-row tile's panel j: sums in buf (bias included), rs128 the rows'
   128 sum_k A; mode 0 requant16x without clamp, 1 with, 2 requant16. */
INLINE void epilogue(const int mode, const int32_t *buf, const int32_t *rs128, int64_t mr,
                     const rq16 *q, __m512i mult, __m512i shift, __m512i zy, __m512i lo, __m512i hi,
                     int8_t *c, int64_t ldc, __mmask16 sm) {
    for (int64_t i = 0; i < mr; i++) {
        __m512i v = _mm512_sub_epi32(_mm512_load_si512(buf + i * 16), _mm512_set1_epi32(rs128[i]));
        v = mode == 0 ? requant16x(v, q, false)
            : mode == 1 ? requant16x(v, q, true)
                        : requant16(v, mult, shift, zy, lo, hi);
        _mm512_mask_cvtsepi32_storeu_epi8(c + i * ldc, sm, v);
    }
}

#define RBLK 256 /* rows per block: the rows' sums once, the epilogue's constants once per panel */

bool mdl__qgemm_amx(const mdl__qgemm_packed *p, int64_t M, const int8_t *A, int64_t lda,
                    const int64_t *seg, int nseg, int8_t *C, int64_t ldc) {
    const int64_t N = p->N, K = p->K, seglen = K / nseg;
    if (K % 4 || (nseg > 1 && seglen % 64) || M < 1) return false;
    const int64_t ps = K / 4 * 64, nk = K / 64, kt = K % 64;
    const uint8_t *panels = p->panels;
    int32_t buf[2][MB * 16] __attribute__((aligned(64)));
    int32_t rs128[RBLK];
    const __m512i zy = _mm512_set1_epi32(p->zy), lo = _mm512_set1_epi32(p->lo),
                  hi = _mm512_set1_epi32(p->hi);
    int64_t configured = -1;
    for (int64_t b0 = 0; b0 < M; b0 += RBLK) {
        const int64_t mb = M - b0 < RBLK ? M - b0 : RBLK;
        for (int64_t i = 0; i < mb; i++) {
            int32_t r = 0;
            for (int q = 0; q < nseg; q++)
                r += row_sum(A + (b0 + i) * lda + seg[q], seglen);
            rs128[i] = (int32_t)((uint32_t)r * 128u);
        }
        for (int64_t n0 = 0; n0 < N; n0 += 32) {
            const int64_t nv = N - n0 < 32 ? N - n0 : 32;
            const int np = nv > 16 ? 2 : 1;
            const uint8_t *pw = panels + n0 / 16 * ps;
            rq16 qs[2];
            int mode[2];
            __m512i mult[2], shift[2];
            for (int j = 0; j < np; j++) {
                mult[j] = _mm512_loadu_si512(p->mult + n0 + j * 16);
                shift[j] = _mm512_loadu_si512(p->shift + n0 + j * 16);
                mode[j] = !rq16_setup(mult[j], shift[j], p->zy, lo, hi, &qs[j]) ? 2 : qs[j].clamp ? 1 : 0;
            }
            for (int64_t m0 = b0; m0 < b0 + mb; m0 += MB) {
                const int64_t mr = b0 + mb - m0 < MB ? b0 + mb - m0 : MB;
                if (mr != configured) configure(mr, kt), configured = mr;
                const int8_t *a = A + m0 * lda;
                /* the sums start at the bias: its 16 values in every row (stride 0) */
                _tile_loadd(0, p->bias + n0, 0);
                if (np == 2) _tile_loadd(1, p->bias + n0 + 16, 0);
                for (int64_t kc = 0; kc < nk; kc++) {
                    const int64_t k = kc * 64, q = k / seglen;
                    _tile_loadd(2, a + seg[q] + (k - q * seglen), lda);
                    _tile_loadd(3, pw + kc * 1024, 64);
                    _tile_dpbsud(0, 2, 3);
                    if (np == 2) {
                        _tile_loadd(4, pw + ps + kc * 1024, 64);
                        _tile_dpbsud(1, 2, 4);
                    }
                }
                if (kt) { /* one segment only (see above) */
                    _tile_loadd(5, a + seg[0] + nk * 64, lda);
                    _tile_loadd(6, pw + nk * 1024, 64);
                    _tile_dpbsud(0, 5, 6);
                    if (np == 2) {
                        _tile_loadd(7, pw + ps + nk * 1024, 64);
                        _tile_dpbsud(1, 5, 7);
                    }
                }
                _tile_stored(0, buf[0], 64);
                if (np == 2) _tile_stored(1, buf[1], 64);
                for (int j = 0; j < np; j++) {
                    const __mmask16 sm = mdl__mask16(nv - j * 16);
                    int8_t *c = C + m0 * ldc + n0 + j * 16;
                    const int32_t *r = rs128 + (m0 - b0);
                    if (mode[j] == 0) epilogue(0, buf[j], r, mr, &qs[j], mult[j], shift[j], zy, lo, hi, c, ldc, sm);
                    else if (mode[j] == 1) epilogue(1, buf[j], r, mr, &qs[j], mult[j], shift[j], zy, lo, hi, c, ldc, sm);
                    else epilogue(2, buf[j], r, mr, &qs[j], mult[j], shift[j], zy, lo, hi, c, ldc, sm);
                }
            }
        }
    }
    _tile_release();
    return true;
}
