/* Load time of a long chain model (tests/common/models.c, tm_build_chain): a file with a stored
   memory plan (the loader checks it) and one without (the loader plans).  Prints one line per
   file: nodes, bytes, median and min of REPS loads in ms.  `make bench` runs it with 32,000 nodes.
   usage: loadtime [NODES [REPS]] */
#include "common/models.h"
#include "mdeploy/mdeploy.h"

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 32000, reps = argc > 2 ? atoi(argv[2]) : 5;
    if (n < 1 || reps < 1 || reps > 100) return 2;
    void *file[2];
    size_t size[2];
    for (int p = 0; p < 2; p++)
        if (tm_build_chain(n, p ? TM_PLAN_STORED : TM_PLAN_NONE, &file[p], &size[p])) return 1;
    double t[2][100];
    for (int r = 0; r < reps; r++)
        for (int p = 0; p < 2; p++) { /* interleaved: both files see the same machine load */
            mdl_model *m;
            mdl_error err;
            double t0 = bench_now_ms();
            mdl_status st = mdl_model_load_buffer(file[p], size[p], NULL, &m, &err);
            t[p][r] = bench_now_ms() - t0;
            if (st) {
                fprintf(stderr, "load failed: %s\n", err.msg);
                return 1;
            }
            mdl_model_free(m);
        }
    for (int p = 0; p < 2; p++) {
        qsort(t[p], (size_t)reps, sizeof(double), bench_cmp_double);
        printf("load %-14s %6d nodes %8zu bytes: median %.2f ms, min %.2f ms (%d loads)\n",
               p ? "stored plan" : "no plan", n, size[p], t[p][reps / 2], t[p][0], reps);
        free(file[p]);
    }
    return 0;
}
