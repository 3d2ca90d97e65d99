/* What every x86 SIMD source file needs, written once: the force-inline macro and the tail
   masks.  Included by the *_avx2.c / *_avx512.c files, each built with its own -m flags; the
   AVX-512 mask exists only where those flags allow it. */
#ifndef MDL_X86_SIMD_H
#define MDL_X86_SIMD_H

#include <immintrin.h>
#include <stdint.h>

/* The kernels' shape parameters (rows, vectors, ...) are compile-time constants only once the
   helpers taking them are inlined. */
#define INLINE static inline __attribute__((always_inline))

/* The first n of 8 lanes as a maskload/maskstore mask (n clamped to 0..8): a window into eight
   -1 followed by eight 0. */
static inline __m256i mdl__mask8(int64_t n) {
    static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1};
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 8 - n));
}

#ifdef __AVX512F__
/* The first n of 16 lanes (n clamped to 0..16). */
static inline __mmask16 mdl__mask16(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}
#endif

#endif
