/* Run-time choice of the x86 SIMD level (host builds with MDL_HAVE_X86_SIMD only).
 *
 * MDL_CPU_LEVEL=0|1|2|3 in the environment lowers the level (0 portable, 1 AVX2+FMA, 2 AVX-512
 * without AMX, 3 everything) so the other kernels can be tested and benchmarked on a machine
 * that has more; it never raises it above what the CPU supports.  The result is computed once
 * and cached. */
#define _DEFAULT_SOURCE /* syscall() */
#include "x86.h"

#include <stdlib.h>

#include <cpuid.h>
#ifdef __linux__
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* AMX-TILE and AMX-INT8 in cpuid, the tile state enabled in XCR0, and (Linux) the process
   allowed to use it: since Linux 5.16 a process asks once with arch_prctl(ARCH_REQ_XCOMP_PERM,
   XFEATURE_XTILEDATA); without that permission the first tile instruction kills it. */
static bool amx_usable(void) {
#ifdef __linux__
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(d & (1u << 24)) || !(d & (1u << 25))) return false; /* AMX-TILE, AMX-INT8 */
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false; /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return false; /* XTILECFG, XTILEDATA */
    const long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
#else
    return false;
#endif
}

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
    int cap = MDL_CPU_AMX;
    if (env && env[0] >= '0' && env[0] <= '3' && env[1] == '\0') cap = env[0] - '0';
    /* the permission request only where AMX may be used */
    if (level == MDL_CPU_AVX512 && cap >= MDL_CPU_AMX && __builtin_cpu_supports("avx512vnni") &&
        amx_usable())
        level = MDL_CPU_AMX;
    return level < cap ? level : cap;
}

/* The level with AMX as 3 (-1 = not yet known).  Concurrent first calls compute the same value,
   so a relaxed atomic is enough (no lock, no data race). */
static int sublevel(void) {
    static int cached = -1;
    int level = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (level < 0) {
        level = detect();
        __atomic_store_n(&cached, level, __ATOMIC_RELAXED);
    }
    return level;
}

int mdl__cpu_level(void) {
    const int level = sublevel();
    return level < MDL_CPU_AVX512 ? level : MDL_CPU_AVX512;
}

int mdl__cpu_sublevel(void) { return sublevel(); }

bool mdl__cpu_has_amx(void) { return sublevel() >= MDL_CPU_AMX; }

bool mdl__cpu_has_vnni(void) {
    static int cached = -1; /* as in sublevel */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = mdl__cpu_level() >= MDL_CPU_AVX512 && __builtin_cpu_supports("avx512vnni");
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v == 1;
}

bool mdl__cpu_has_vbmi(void) {
    static int cached = -1; /* as in sublevel */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = mdl__cpu_has_vnni() && __builtin_cpu_supports("avx512vbmi");
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v == 1;
}
