/* Sparse against dense, side by side (make bench; issue #15): the block-sparse product
   (src/ops/sparse.h) and mdeploy's own dense kernel on the same shapes, on one core.
   - dense: what a FullyConnected or a stride-1 1x1 Conv2D runs: mdl__gemm_nt_packed with the
     weights packed once (a GEMV on the weights as they are for one row);
   - sparse: mdl__spmm on the 8x1 blocks left by block magnitude pruning (the weakest blocks by
     L2 norm set to zero until the asked share of weights is zero) and, for comparison, on
     element-wise (unstructured) pruning at 80%, which leaves most 8x1 blocks non-zero.
   Both run the same inputs; the outputs are compared (max |sparse - dense| against the dense
   output's scale, printed).  Timing: blocks of about 5 ms of each kernel alternate (ABBA) for the
   budget; the ratio is the median sparse time over the median dense time.
   usage: sparse BUDGET_SECONDS [sweep]  -> JSON lines on stdout, one per row (sweep: block
   sparsity 20% .. 70%, where the converter's threshold comes from) */
#include "ops/int8.h"
#include "ops/ops.h"
#include "ops/sparse.h"

#include <math.h>
#include "bench_util.h"

#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static float urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Zeroes the weakest 8x1 blocks (L2 norm) until about `sparsity` of W is zero. */
static void prune_blocks(float *W, int64_t N, int64_t K, double sparsity) {
    int64_t groups = mdl__bsr_groups(N), nb = groups * K;
    float *norm = malloc(sizeof(float) * (size_t)nb), *sorted = malloc(sizeof(float) * (size_t)nb);
    for (int64_t g = 0; g < groups; g++)
        for (int64_t k = 0; k < K; k++) {
            float s = 0;
            for (int64_t n = g * 8; n < g * 8 + 8 && n < N; n++)
                s += W[n * K + k] * W[n * K + k];
            norm[g * K + k] = sorted[g * K + k] = s;
        }
    qsort(sorted, (size_t)nb, sizeof(float), cmp_float);
    float cut = sorted[(int64_t)(sparsity * (double)nb)];
    for (int64_t g = 0; g < groups; g++)
        for (int64_t k = 0; k < K; k++)
            if (norm[g * K + k] < cut)
                for (int64_t n = g * 8; n < g * 8 + 8 && n < N; n++)
                    W[n * K + k] = 0.0f;
    free(norm);
    free(sorted);
}

static void prune_elements(float *W, int64_t n, double sparsity) {
    for (int64_t i = 0; i < n; i++)
        if ((urand() + 1.0f) * 0.5f < sparsity) W[i] = 0.0f;
}

typedef struct row {
    const char *layer, *pruning;
    int64_t M, N, K;
    double sparsity;
} row;

static void run_row(const row *r, double budget) {
    int64_t M = r->M, N = r->N, K = r->K;
    float *X = malloc(sizeof(float) * (size_t)(M * K)),
          *W = malloc(sizeof(float) * (size_t)(N * K));
    float *b = malloc(sizeof(float) * (size_t)N);
    float *Yd = malloc(sizeof(float) * (size_t)(M * N)),
          *Ys = malloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++)
        X[i] = urand();
    for (int64_t i = 0; i < N * K; i++)
        W[i] = urand();
    for (int64_t i = 0; i < N; i++)
        b[i] = urand();
    if (strcmp(r->pruning, "block8x1") == 0)
        prune_blocks(W, N, K, r->sparsity);
    else
        prune_elements(W, N * K, r->sparsity);
    int64_t zeros = 0;
    for (int64_t i = 0; i < N * K; i++)
        zeros += W[i] == 0.0f;

    size_t pb = M >= 2 ? mdl__gemm_pack_bytes(N, K) : 0;
    void *packed = pb ? aligned_alloc(64, (pb + 63) / 64 * 64) : NULL;
    if (packed) mdl__gemm_pack(N, K, W, K, packed);
    int64_t nblocks = mdl__bsr_count(N, K, W, K);
    size_t sb = mdl__bsr_bytes(N, nblocks);
    void *mem = aligned_alloc(64, (sb + 63) / 64 * 64);
    mdl__bsr bsr;
    mdl__bsr_build(N, K, W, K, mem, &bsr);

    size_t xb = mdl__spmm_scratch_bytes(M, K);
    void *scratch = xb ? aligned_alloc(64, (xb + 63) / 64 * 64) : NULL;
    float lo = 0.0f, hi = INFINITY; /* a fused ReLU, as most such layers have */
    mdl__gemm_nt_packed(M, N, K, X, K, W, K, packed, b, Yd, N, lo, hi);
    mdl__spmm(M, X, K, &bsr, b, Ys, N, lo, hi, scratch);
    double err = 0, scale = 0;
    for (int64_t i = 0; i < M * N; i++) {
        err = fmax(err, fabs((double)Ys[i] - Yd[i]));
        scale = fmax(scale, fabs((double)Yd[i]));
    }

    /* calls per ~5 ms block */
    double t0 = now();
    int64_t calls = 0;
    while (now() - t0 < 0.005)
        mdl__gemm_nt_packed(M, N, K, X, K, W, K, packed, b, Yd, N, lo, hi), calls++;
    enum { MAXB = 4096 };
    static double td[MAXB], ts[MAXB];
    int nb = 0;
    double end = now() + budget;
    while (nb < MAXB && (now() < end || nb < 8)) {
        for (int pass = 0; pass < 2; pass++) {
            int sparse_first = (nb + pass) % 2;
            for (int which = 0; which < 2; which++) {
                int sparse = which ^ !sparse_first;
                double a = now();
                for (int64_t c = 0; c < calls; c++) {
                    if (sparse)
                        mdl__spmm(M, X, K, &bsr, b, Ys, N, lo, hi, scratch);
                    else
                        mdl__gemm_nt_packed(M, N, K, X, K, W, K, packed, b, Yd, N, lo, hi);
                }
                double t = (now() - a) / (double)calls;
                if (sparse)
                    ts[nb] = t;
                else
                    td[nb] = t;
            }
            nb++;
            if (nb >= MAXB) break;
        }
    }
    qsort(td, (size_t)nb, sizeof(double), bench_cmp_double);
    qsort(ts, (size_t)nb, sizeof(double), bench_cmp_double);
    double md = td[nb / 2], ms = ts[nb / 2];
    printf("{\"layer\": \"%s\", \"pruning\": \"%s\", \"M\": %lld, \"N\": %lld, \"K\": %lld, "
           "\"sparsity\": %.4f, \"block_density\": %.4f, \"dense_us\": %.3f, \"sparse_us\": %.3f, "
           "\"dense_min_us\": %.3f, \"sparse_min_us\": %.3f, \"speedup\": %.3f, "
           "\"dense_weight_bytes\": %lld, \"sparse_weight_bytes\": %lld, \"max_rel_diff\": %.3g, "
           "\"blocks\": %d}\n",
           r->layer, r->pruning, (long long)M, (long long)N, (long long)K,
           (double)zeros / (double)(N * K), (double)nblocks / (double)(mdl__bsr_groups(N) * K),
           md * 1e6, ms * 1e6, td[0] * 1e6, ts[0] * 1e6, md / ms, (long long)(N * K * 4),
           (long long)sb, err / (scale > 0 ? scale : 1), nb);
    fflush(stdout);
    free(X), free(W), free(b), free(Yd), free(Ys), free(packed), free(mem), free(scratch);
}

/* ---- int8 --------------------------------------------------------------------------------- */

/* The int8 GEMM core (int8.h) on dense weights (the variant of this CPU: VNNI/AMX, AVX2 or the
   reference) and on the block-sparse ones (mdl__qspmm), the same record otherwise; both results
   must be equal (the contract). */
typedef struct q8_ctx {
    int64_t M, N, K;
    const int8_t *A, *W;
    const void *pd, *ps;
    int8_t *C;
    void *scratch;
} q8_ctx;

static void q8_dense(const q8_ctx *q) {
    mdl__qgemm_run(q->pd, q->M, q->A, q->K, q->W, q->K, 1, q->C, q->N, q->scratch);
}
static void q8_sparse(const q8_ctx *q) {
    mdl__qgemm_run(q->ps, q->M, q->A, q->K, NULL, 0, 0, q->C, q->N, q->scratch);
}

static void run_row_q8(const row *r, double budget) {
    int64_t M = r->M, N = r->N, K = r->K;
    float *Wf = malloc(sizeof(float) * (size_t)(N * K));
    for (int64_t i = 0; i < N * K; i++) Wf[i] = urand();
    if (strcmp(r->pruning, "block8x1") == 0) prune_blocks(Wf, N, K, r->sparsity);
    else prune_elements(Wf, N * K, r->sparsity);
    int8_t *W = malloc((size_t)(N * K)), *A = malloc((size_t)(M * K));
    int8_t *Cd = malloc((size_t)(M * N)), *Cs = malloc((size_t)(M * N));
    int32_t *bias = malloc(sizeof(int32_t) * (size_t)N);
    int64_t zeros = 0;
    for (int64_t i = 0; i < N * K; i++) zeros += (W[i] = (int8_t)lrintf(Wf[i] * 127.0f)) == 0;
    for (int64_t i = 0; i < M * K; i++) A[i] = (int8_t)lrintf(urand() * 127.0f);
    for (int64_t i = 0; i < N; i++) bias[i] = (int32_t)lrintf(urand() * 1000.0f);
    const float ws = 1.0f / 127;
    int64_t nblocks = mdl__bsr_count_s8(N, K, W, K);
    size_t sb = mdl__bsr_bytes_s8(N, nblocks);
    void *mem = aligned_alloc(64, (sb + 63) / 64 * 64);
    mdl__bsr bsr;
    mdl__bsr_build_s8(N, K, W, K, mem, &bsr);
    mdl__qgemm_desc d = {.N = N, .K = K, .w = W, .sn = K, .sk = 1, .bias = bias, .za = 3, .a_scale = 0.02,
                         .y_scale = 0.02 * sqrt((double)K) * 0.3, .w_scale = &ws, .nw_scale = 1, .zy = -5,
                         .lo = -5, .hi = 127};
    int v = mdl__qgemm_variant();
    void *pd = aligned_alloc(64, mdl__qgemm_pack_bytes(v, N, K));
    mdl__qgemm_pack(v, &d, pd);
    d.sparse = &bsr;
    void *ps = aligned_alloc(64, mdl__qgemm_pack_bytes(MDL_QGEMM_REF, N, K));
    mdl__qgemm_pack(MDL_QGEMM_REF, &d, ps);
    void *scratch = aligned_alloc(64, (mdl__qgemm_scratch_bytes(N, K) + 63) / 64 * 64);
    q8_ctx q = {M, N, K, A, W, pd, ps, Cd, scratch};
    q8_dense(&q);
    q.C = Cs;
    q8_sparse(&q);
    int64_t diff = 0;
    for (int64_t i = 0; i < M * N; i++) diff += Cd[i] != Cs[i];
    double t0 = now();
    int64_t calls = 0;
    while (now() - t0 < 0.005) q8_dense(&q), calls++;
    enum { MAXB = 4096 };
    static double td[MAXB], ts[MAXB];
    int nb = 0;
    double end = now() + budget;
    while (nb < MAXB && (now() < end || nb < 8)) {
        for (int pass = 0; pass < 2 && nb < MAXB; pass++, nb++)
            for (int which = 0; which < 2; which++) {
                int sparse = which ^ !((nb + pass) % 2);
                double a = now();
                for (int64_t c = 0; c < calls; c++) sparse ? q8_sparse(&q) : q8_dense(&q);
                (sparse ? ts : td)[nb] = (now() - a) / (double)calls;
            }
    }
    qsort(td, (size_t)nb, sizeof(double), bench_cmp_double);
    qsort(ts, (size_t)nb, sizeof(double), bench_cmp_double);
    double md = td[nb / 2], ms = ts[nb / 2];
    printf("{\"layer\": \"%s\", \"dtype\": \"int8\", \"dense_variant\": %d, \"pruning\": \"%s\", \"M\": %lld, "
           "\"N\": %lld, \"K\": %lld, \"sparsity\": %.4f, \"block_density\": %.4f, \"dense_us\": %.3f, "
           "\"sparse_us\": %.3f, \"dense_min_us\": %.3f, \"sparse_min_us\": %.3f, \"speedup\": %.3f, "
           "\"dense_weight_bytes\": %lld, \"sparse_weight_bytes\": %lld, \"outputs_differing\": %lld, \"blocks\": %d}\n",
           r->layer, v, r->pruning, (long long)M, (long long)N, (long long)K, (double)zeros / (double)(N * K),
           (double)nblocks / (double)(mdl__bsr_groups(N) * K), md * 1e6, ms * 1e6, td[0] * 1e6, ts[0] * 1e6, md / ms,
           (long long)(N * K),
           (long long)sb, (long long)diff, nb);
    fflush(stdout);
    free(Wf), free(W), free(A), free(Cd), free(Cs), free(bias), free(mem), free(pd), free(ps), free(scratch);
}

int main(int argc, char **argv) {
    double budget = argc > 1 ? atof(argv[1]) : 1.0;
    /* FullyConnected 1024 -> 1024 at batch 1 and 32; stride-1 1x1 convs on a 14x14 map at batch
       1 (196 pixels) and 32 (6272 pixels): 256 -> 256 channels (a ResNet/MobileNet middle layer)
       and, to show where the repacking overhead shows, a small 128 -> 128 one; and element-wise
       pruning, which leaves most 8x1 blocks non-zero (the converter keeps such a layer dense). */
    static const row rows[] = {
        {"fc 1024x1024", "block8x1", 1, 1024, 1024, 0.8},
        {"fc 1024x1024", "block8x1", 1, 1024, 1024, 0.9},
        {"fc 1024x1024", "block8x1", 32, 1024, 1024, 0.8},
        {"fc 1024x1024", "block8x1", 32, 1024, 1024, 0.9},
        {"conv1x1 256->256 14x14", "block8x1", 196, 256, 256, 0.8},
        {"conv1x1 256->256 14x14", "block8x1", 196, 256, 256, 0.9},
        {"conv1x1 256->256 14x14", "block8x1", 6272, 256, 256, 0.8},
        {"conv1x1 256->256 14x14", "block8x1", 6272, 256, 256, 0.9},
        {"conv1x1 128->128 14x14", "block8x1", 196, 128, 128, 0.8},
        {"conv1x1 128->128 14x14", "block8x1", 6272, 128, 128, 0.8},
        {"fc 1024x1024", "element", 32, 1024, 1024, 0.8},
    };
    const bool q8 = argc > 2 && !strcmp(argv[2], "int8-sweep");
    if (q8 || (argc > 2 && !strcmp(argv[2], "sweep"))) {
        /* Where sparse starts to pay against the dense kernel on the same shapes: block sparsity
           20% .. 70% in float, 30% .. 90% in int8 (the converter's density thresholds,
           src/quant/prune_host.c, come from these sweeps). */
        static const row shapes[] = {
            {"fc 1024x1024", "block8x1", 1, 1024, 1024, 0},
            {"fc 1024x1024", "block8x1", 32, 1024, 1024, 0},
            {"conv1x1 256->256 14x14", "block8x1", 196, 256, 256, 0},
            {"conv1x1 128->128 14x14", "block8x1", 6272, 128, 128, 0},
        };
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int pct = q8 ? 30 : 20; pct <= (q8 ? 90 : 70); pct += 10) {
                row r = shapes[i];
                r.sparsity = pct / 100.0;
                if (q8) run_row_q8(&r, budget);
                else run_row(&r, budget);
            }
        return 0;
    }
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        run_row(&rows[i], budget);
    for (size_t i = 0; i + 1 < sizeof rows / sizeof rows[0]; i++) /* the same shapes, int8 */
        run_row_q8(&rows[i], budget);
    return 0;
}
