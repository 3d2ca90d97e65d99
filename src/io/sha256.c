/* SHA-256 as FIPS 180-4 defines it (sections 4.1.2, 4.2.2, 5.1.1, 5.3.3, 6.2).  Written for the
   model digest: portable C, no tables beyond the 64 round constants, about 1 KB of code.  x86
   hosts with the SHA extensions (MDL_HAVE_X86_SIMD builds, cpuid SHA, MDL_CPU_LEVEL >= 1)
   compress with them instead: the same function, about 10 times faster. */
#include "io/sha256.h"

#include "mdeploy/security.h"

#include <stdbool.h>
#include <string.h>

#ifdef MDL_HAVE_X86_SIMD
#include "ops/x86/x86.h"

#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void compress(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 | (uint32_t)p[4 * t + 2] << 8 | p[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = ROR(w[t - 15], 7) ^ ROR(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = ROR(w[t - 2], 17) ^ ROR(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

#ifdef MDL_HAVE_X86_SIMD
/* The compression function on the SHA extensions.  The state lives in two registers as
   SHA256RNDS2 wants it, ABEF and CDGH (A in the highest dword); each round pair takes the
   schedule words plus constants; SHA256MSG1/MSG2 extend the schedule four words at a time:
   W[t..t+3] = MSG2(MSG1(W[t-16..], W[t-12..]) + W[t-7..t-4], W[t-4..t-1]). */
__attribute__((target("sha,sse4.1,ssse3"))) static void compress_shani(uint32_t h[8], const uint8_t *p,
                                                                        size_t nblocks) {
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h), 0xB1);       /* b a d c */
    __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(h + 4)), 0x1B); /* h g f e */
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);                                           /* f e b a */
    s1 = _mm_blend_epi16(s1, t, 0xF0);                                                /* h g d c */
    for (; nblocks; nblocks--, p += 64) {
        __m128i save0 = s0, save1 = s1, m[4];
        for (int i = 0; i < 16; i++) {
            __m128i w;
            if (i < 4) {
                w = m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
            } else {
                __m128i x = _mm_sha256msg1_epu32(m[i & 3], m[(i - 3) & 3]);
                x = _mm_add_epi32(x, _mm_alignr_epi8(m[(i - 1) & 3], m[(i - 2) & 3], 4));
                w = m[i & 3] = _mm_sha256msg2_epu32(x, m[(i - 1) & 3]);
            }
            __m128i x = _mm_add_epi32(w, _mm_loadu_si128((const __m128i *)(K + 4 * i)));
            s1 = _mm_sha256rnds2_epu32(s1, s0, x);
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(x, 0x0E));
        }
        s0 = _mm_add_epi32(s0, save0);
        s1 = _mm_add_epi32(s1, save1);
    }
    t = _mm_shuffle_epi32(s0, 0x1B);  /* a b e f */
    s1 = _mm_shuffle_epi32(s1, 0xB1); /* g h c d */
    _mm_storeu_si128((__m128i *)h, _mm_blend_epi16(t, s1, 0xF0));
    _mm_storeu_si128((__m128i *)(h + 4), _mm_alignr_epi8(s1, t, 8));
}

/* SHA extensions usable: cpuid and MDL_CPU_LEVEL >= 1 (0 tests the portable code).  Cached like
   the CPU level (a relaxed atomic: concurrent first calls compute the same value). */
static bool use_shani(void) {
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        unsigned a, b = 0, c = 0, d;
        bool sha = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29));
        bool sse41 = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 19)) && (c & (1u << 9));
        v = sha && sse41 && mdl__cpu_level() >= MDL_CPU_AVX2;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#endif

/* nblocks whole 64-byte blocks. */
static void compress_blocks(uint32_t h[8], const uint8_t *p, size_t nblocks) {
#ifdef MDL_HAVE_X86_SIMD
    if (use_shani()) {
        compress_shani(h, p, nblocks);
        return;
    }
#endif
    for (; nblocks; nblocks--, p += 64) compress(h, p);
}

void mdl__sha256_init(mdl__sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->bytes = 0;
    s->n = 0;
}

/* data NULL: zeros */
static void feed(mdl__sha256 *s, const uint8_t *p, size_t len) {
    s->bytes += len;
    while (len) {
        if (s->n == 0 && len >= 64 && p) { /* whole blocks straight from the input */
            size_t nb = len / 64;
            compress_blocks(s->h, p, nb);
            p += 64 * nb;
            len -= 64 * nb;
            continue;
        }
        size_t take = 64 - s->n < len ? 64 - s->n : len;
        if (p) {
            memcpy(s->blk + s->n, p, take);
            p += take;
        } else {
            memset(s->blk + s->n, 0, take);
        }
        s->n += take;
        len -= take;
        if (s->n == 64) {
            compress_blocks(s->h, s->blk, 1);
            s->n = 0;
        }
    }
}

void mdl__sha256_update(mdl__sha256 *s, const void *data, size_t len) {
    if (len) feed(s, (const uint8_t *)data, len);
}
void mdl__sha256_zeros(mdl__sha256 *s, size_t len) { feed(s, NULL, len); }

void mdl__sha256_final(mdl__sha256 *s, uint8_t out[32]) {
    uint64_t bits = s->bytes * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = (s->n < 56 ? 56 : 120) - s->n;
    for (int i = 0; i < 8; i++) pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t keep = s->bytes;
    feed(s, pad, padlen + 8);
    s->bytes = keep;
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

void mdl_sha256(const void *data, size_t size, uint8_t out[32]) {
    mdl__sha256 s;
    mdl__sha256_init(&s);
    mdl__sha256_update(&s, data, size);
    mdl__sha256_final(&s, out);
}
