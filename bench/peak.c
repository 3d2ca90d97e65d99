/* Float32 peak of one core: independent fused multiply-add chains at 128-, 256- and 512-bit
   vector widths (GCC vector types; built with -O2 -march=native by bench/run.sh, so the widths
   this CPU lacks are split by the compiler and simply measure lower).  Prints one JSON object.
   usage: peak [SECONDS_PER_WIDTH] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Enough independent accumulators to cover FMA latency (4-5 cycles) times the issue ports (2)
   with margin; fewer would measure latency, not throughput. */
#define CHAINS 16

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One function per width: acc = acc * m + a on CHAINS vectors, reps times.  The result is
   returned so the loop cannot be dropped. */
#define FMA_KERNEL(NAME, LANES)                                                                     \
    typedef float NAME##_v __attribute__((vector_size(4 * LANES)));                                \
    static __attribute__((noinline)) float NAME(long reps) {                                        \
        NAME##_v acc[CHAINS], m, a;                                                                 \
        for (int l = 0; l < LANES; l++) {                                                           \
            m[l] = 0.9999999f;                                                                      \
            a[l] = 1e-7f;                                                                           \
        }                                                                                           \
        for (int c = 0; c < CHAINS; c++)                                                            \
            for (int l = 0; l < LANES; l++) acc[c][l] = (float)(c + l);                             \
        for (long r = 0; r < reps; r++) {                                                           \
            _Pragma("GCC unroll 16") for (int c = 0; c < CHAINS; c++) acc[c] = acc[c] * m + a;      \
            __asm__ volatile("" : "+x"(m)); /* keeps m opaque: no algebra across iterations */     \
        }                                                                                           \
        float s = 0;                                                                                \
        for (int c = 0; c < CHAINS; c++)                                                            \
            for (int l = 0; l < LANES; l++) s += acc[c][l];                                         \
        return s;                                                                                   \
    }

FMA_KERNEL(fma4, 4)
FMA_KERNEL(fma8, 8)
FMA_KERNEL(fma16, 16)

/* Best GFLOP/s over 5 tries of about `seconds` each. */
static double measure(float (*fn)(long), int lanes, double seconds, float *sink) {
    long reps = 1000;
    for (;;) { /* calibrate */
        double t0 = now_s();
        *sink += fn(reps);
        double dt = now_s() - t0;
        if (dt > seconds / 10) {
            reps = (long)((double)reps * seconds / dt) + 1;
            break;
        }
        reps *= 4;
    }
    double best = 0;
    for (int k = 0; k < 5; k++) {
        double t0 = now_s();
        *sink += fn(reps);
        double dt = now_s() - t0;
        double gflops = 2.0 * CHAINS * lanes * (double)reps / dt / 1e9;
        if (gflops > best) best = gflops;
    }
    return best;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 0.2;
    if (!(seconds > 0)) seconds = 0.2;
    float sink = 0;
    double g4 = measure(fma4, 4, seconds, &sink);
    double g8 = measure(fma8, 8, seconds, &sink);
    double g16 = measure(fma16, 16, seconds, &sink);
    double peak = g4 > g8 ? g4 : g8;
    if (g16 > peak) peak = g16;
    printf("{\"sse_128_gflops\": %.2f, \"avx_256_gflops\": %.2f, \"avx512_gflops\": %.2f, "
           "\"peak_gflops\": %.2f, \"chains\": %d, \"checksum\": %g}\n",
           g4, g8, g16, peak, CHAINS, (double)sink);
    return 0;
}
