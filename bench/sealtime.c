/* What the content digest costs at load (include/mdeploy/security.h): loads MODEL.mdl with the
   digest check and with MDL_LOAD_NO_DIGEST, interleaved (both see the same machine load), and
   times mdl_sha256 over the file alone.  Prints the medians and the cost in microseconds per MB.
   usage: sealtime MODEL.mdl [ROUNDS]     (make bench-seal builds a ResNet-18 to measure) */
#include "mdeploy/mdeploy.h"
#include "mdeploy/security.h"

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: sealtime MODEL.mdl [ROUNDS]\n");
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 11;
    if (rounds < 1 || rounds > 1000) return 2;
    FILE *f = fopen(argv[1], "rb");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(size);
    if (!buf || fread(buf, 1, size, f) != size) return 1;
    fclose(f);
    double *t[3];
    for (int k = 0; k < 3; k++) t[k] = malloc(sizeof(double) * (size_t)rounds);
    uint8_t d[32];
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) { /* 0: digest checked, 1: MDL_LOAD_NO_DIGEST */
            mdl_load_options o = mdl_load_options_default();
            if (k) o.flags |= MDL_LOAD_NO_DIGEST;
            mdl_model *m;
            mdl_error err;
            double t0 = bench_now_ms();
            if (mdl_model_load_file(argv[1], &o, &m, &err)) {
                fprintf(stderr, "load failed: %s\n", err.msg);
                return 1;
            }
            t[k][r] = bench_now_ms() - t0;
            mdl_model_free(m);
        }
        double t0 = bench_now_ms();
        mdl_sha256(buf, size, d);
        t[2][r] = bench_now_ms() - t0;
    }
    double mb = (double)size / 1e6, with = median(t[0], rounds), without = median(t[1], rounds);
    double sha = median(t[2], rounds);
    printf("%s: %.1f MB, %d rounds interleaved (medians)\n", argv[1], mb, rounds);
    printf("  load with digest check      %8.1f ms\n", with);
    printf("  load with MDL_LOAD_NO_DIGEST %7.1f ms\n", without);
    printf("  difference                  %8.1f ms = %.0f us/MB\n", with - without, (with - without) * 1e3 / mb);
    printf("  mdl_sha256 of the file alone %7.1f ms = %.0f us/MB (%.0f MB/s)\n", sha, sha * 1e3 / mb, mb / sha * 1e3);
    return 0;
}
