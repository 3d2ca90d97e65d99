/* Run-time choice of the x86 SIMD level (host builds with MDL_HAVE_X86_SIMD only).
 *
 * MDL_CPU_LEVEL=0|1|2 in the environment lowers the level (0 portable, 1 AVX2+FMA, 2 AVX-512) so
 * the portable and AVX2 kernels can be tested and benchmarked on an AVX-512 machine; it never
 * raises it above what the CPU supports.  The result is computed once and cached. */
#include "x86.h"

#include <stdlib.h>

static int detect(void) {
    /* libgcc's cpu model also checks XCR0, i.e. that the OS saves the wider registers. */
    __builtin_cpu_init();
    int level = MDL_CPU_PORTABLE;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        level = MDL_CPU_AVX2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
            level = MDL_CPU_AVX512;
    }
    const char *env = getenv("MDL_CPU_LEVEL");
    if (env && env[0] >= '0' && env[0] <= '2' && env[1] == '\0' && env[0] - '0' < level)
        level = env[0] - '0';
    return level;
}

int mdl__cpu_level(void) {
    /* -1 = not yet known.  Concurrent first calls compute the same value, so a relaxed atomic
       is enough (no lock, no data race). */
    static int cached = -1;
    int level = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (level < 0) {
        level = detect();
        __atomic_store_n(&cached, level, __ATOMIC_RELAXED);
    }
    return level;
}

bool mdl__cpu_has_vnni(void) {
    static int cached = -1; /* as in mdl__cpu_level */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = mdl__cpu_level() >= MDL_CPU_AVX512 && __builtin_cpu_supports("avx512vnni");
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v == 1;
}
