/* Block-sparse int8 weights (src/ops/sparse.c mdl__qspmm, src/ops/x86/qsparse_avx2.c) through the
   int8 GEMM core (src/ops/gemm_int8.c, a record packed from block-sparse weights):
   - the stored int8 blocks hold exactly W's non-zero 8x1 blocks (W rebuilt from them equals W);
   - the sparse product against a naive oracle written from the definition (int64 sums of
     (a - za) w plus the bias, requantized in double): at most one step apart, nearly all equal;
   - bit-identical to the dense int8 GEMM core on the same W (the reference and the variant of
     this CPU), and every x86 variant of the sparse product bit-identical to its reference;
   over random shapes with odd tails, padded leading dims, per-tensor and per-channel scales,
   input zero points from the extremes, clamps, with and without bias, and sparsity patterns
   from empty (no block at all) through empty row groups and element-wise sparsity to dense.
   main() reruns the program at each lower MDL_CPU_LEVEL. */
#include "common/harness.h"
#include "common/sparse_pattern.h"

#include "ops/int8.h"
#include "ops/ops.h"
#include "ops/sparse.h"
#ifdef MDL_HAVE_X86_SIMD
#include "ops/x86/x86.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof a / sizeof a[0])
#define SENTINEL 0x5a

static const int64_t Ms[] = {1, 2, 3, 4, 5, 9, 33};
static const int64_t Ns[] = {1, 7, 8, 9, 17, 40};
static const int64_t Ks[] = {1, 2, 5, 64, 100};

static void make_weights(int8_t *W, int64_t N, int64_t K, int pattern) {
    for (int64_t i = 0; i < N * K; i++) W[i] = (int8_t)th_rand_int(-127, 127);
    th_sparse_pattern(W, sizeof *W, N, K, K, 1, pattern);
}

typedef struct problem {
    int64_t M, N, K, lda, ldc;
    int8_t *A, *W;
    int32_t *bias;
    float wscale[64];
    int nw;
    int32_t za, zy, lo, hi;
    double sa, sy;
    void *mem;
    mdl__bsr bsr;
    mdl__qgemm_desc d;
} problem;

static void make(problem *p, int64_t M, int64_t N, int64_t K, int pattern) {
    memset(p, 0, sizeof *p);
    p->M = M, p->N = N, p->K = K;
    p->lda = K + th_rand_int(0, 3);
    p->ldc = N + th_rand_int(0, 3);
    p->A = malloc((size_t)(M * p->lda));
    for (int64_t i = 0; i < M * p->lda; i++) p->A[i] = (int8_t)th_rand_int(-128, 127);
    p->W = malloc((size_t)(N * K));
    make_weights(p->W, N, K, pattern);
    static const int32_t zps[] = {-128, 127, 0, 5, -37};
    p->za = zps[th_rand_int(0, 4)];
    p->zy = zps[th_rand_int(0, 4)];
    p->nw = th_rand_int(0, 1) ? (int)N : 1;
    for (int i = 0; i < p->nw; i++) p->wscale[i] = (float)pow(10.0, th_uniform(-3.0f, -1.5f));
    p->sa = pow(10.0, th_uniform(-2.5f, -1.0f));
    p->sy = p->sa * 0.01 * sqrt((double)K) * 64 * pow(10.0, th_uniform(-0.5f, 0.5f));
    p->lo = -128, p->hi = 127;
    if (th_rand_int(0, 2) == 0) p->lo = p->zy > -100 ? p->zy : -100; /* a ReLU-like clamp */
    if (th_rand_int(0, 3) == 0) p->hi = p->lo + th_rand_int(0, 60);
    if (p->hi > 127) p->hi = 127;
    if (th_rand_int(0, 3)) {
        p->bias = malloc(sizeof(int32_t) * (size_t)N);
        for (int64_t n = 0; n < N; n++) p->bias[n] = th_rand_int(-20000, 20000);
    }
    int64_t nb = mdl__bsr_count_s8(N, K, p->W, K);
    p->mem = aligned_alloc(64, (mdl__bsr_bytes_s8(N, nb) + 63) / 64 * 64 + 64);
    mdl__bsr_build_s8(N, K, p->W, K, p->mem, &p->bsr);
    p->d = (mdl__qgemm_desc){.N = N, .K = K, .w = p->W, .sn = K, .sk = 1, .bias = p->bias, .za = p->za,
                             .a_scale = p->sa, .y_scale = p->sy, .w_scale = p->wscale, .nw_scale = p->nw,
                             .zy = p->zy, .lo = p->lo, .hi = p->hi};
}

static void release(problem *p) {
    free(p->A);
    free(p->W);
    free(p->bias);
    free(p->mem);
}

/* A record of variant for p (sparse: from the blocks; the dense weights then unused). */
static void *pack(const problem *p, int variant, bool sparse) {
    mdl__qgemm_desc d = p->d;
    if (sparse) d.sparse = &p->bsr, d.w = NULL;
    size_t bytes = mdl__qgemm_pack_bytes(variant, p->N, p->K);
    void *pk = aligned_alloc(64, bytes);
    mdl__qgemm_pack(variant, &d, pk);
    return pk;
}

static int8_t *out(const problem *p) {
    int8_t *C = malloc((size_t)(p->M * p->ldc));
    memset(C, SENTINEL, (size_t)(p->M * p->ldc));
    return C;
}

static void check_sentinels(const problem *p, const int8_t *C, const char *what) {
    for (int64_t m = 0; m < p->M; m++)
        for (int64_t n = p->N; n < p->ldc; n++)
            if (C[m * p->ldc + n] != (int8_t)SENTINEL) fail_msg("%s wrote past row %lld", what, (long long)m);
}

/* Every (M, N, K, pattern) once, p made and released around body. */
#define EACH_PROBLEM(...)                                                                          \
    for (size_t im = 0; im < COUNT(Ms); im++)                                                      \
        for (size_t in = 0; in < COUNT(Ns); in++)                                                  \
            for (size_t ik = 0; ik < COUNT(Ks); ik++)                                              \
                for (int pat = 0; pat < P_COUNT; pat++) {                                          \
                    problem p;                                                                     \
                    make(&p, Ms[im], Ns[in], Ks[ik], pat);                                         \
                    __VA_ARGS__;                                                                    \
                    release(&p);                                                                   \
                }

static void test_blocks(void **state) {
    (void)state;
    th_seed(41);
    EACH_PROBLEM({
        int8_t *R = calloc((size_t)(p.N * p.K), 1);
        assert_int_equal(p.bsr.ptr[0], 0);
        for (int64_t g = 0; g < mdl__bsr_groups(p.N); g++)
            for (int32_t j = p.bsr.ptr[g]; j < p.bsr.ptr[g + 1]; j++) {
                bool nz = false;
                for (int64_t r = 0; r < MDL_SPARSE_BN; r++) {
                    int8_t v = p.bsr.val8[(int64_t)j * MDL_SPARSE_BN + r];
                    if (g * MDL_SPARSE_BN + r < p.N) R[(g * MDL_SPARSE_BN + r) * p.K + p.bsr.col[j]] = v;
                    else assert_int_equal(v, 0);
                    nz = nz || v;
                }
                assert_true(nz); /* only non-zero blocks are stored */
            }
        assert_memory_equal(R, p.W, (size_t)(p.N * p.K));
        free(R);
    });
}

static void test_oracle_and_dense(void **state) {
    (void)state;
    th_seed(42);
    int64_t n = 0, exact = 0;
    EACH_PROBLEM({
        void *pd = pack(&p, MDL_QGEMM_REF, false), *ps = pack(&p, MDL_QGEMM_REF, true);
        void *pv = pack(&p, mdl__qgemm_variant(), false);
        void *scratch = aligned_alloc(64, (mdl__qgemm_scratch_bytes(p.N, p.K) + 63) / 64 * 64);
        int8_t *Cs = out(&p), *Cd = out(&p), *Cv = out(&p), *Cc = out(&p);
        mdl__qgemm_run_variant(MDL_QGEMM_REF, ps, p.M, p.A, p.lda, NULL, 0, 0, Cs, p.ldc, scratch);
        mdl__qgemm_run_variant(MDL_QGEMM_REF, pd, p.M, p.A, p.lda, p.W, p.K, 1, Cd, p.ldc, scratch);
        mdl__qgemm_run(pv, p.M, p.A, p.lda, p.W, p.K, 1, Cv, p.ldc, scratch);
        mdl__qgemm_run(ps, p.M, p.A, p.lda, NULL, 0, 0, Cc, p.ldc, scratch); /* this CPU's variant */
        check_sentinels(&p, Cs, "sparse reference");
        check_sentinels(&p, Cc, "sparse variant");
        for (int64_t m = 0; m < p.M; m++)
            for (int64_t j = 0; j < p.N; j++) {
                int64_t acc = p.bias ? p.bias[j] : 0;
                for (int64_t k = 0; k < p.K; k++)
                    acc += ((int64_t)p.A[m * p.lda + k] - p.za) * p.W[j * p.K + k];
                double mult = p.sa * (double)p.wscale[p.nw > 1 ? j : 0] / p.sy;
                double v = nearbyint((double)acc * mult) + p.zy;
                int want = (int)fmin(p.hi, fmax(p.lo, v));
                int8_t got = Cs[m * p.ldc + j];
                if (abs(got - want) > 1)
                    fail_msg("M=%lld N=%lld K=%lld pattern %d (%lld, %lld): %d, oracle %d", (long long)p.M,
                             (long long)p.N, (long long)p.K, pat, (long long)m, (long long)j, got, want);
                n++;
                exact += got == want;
                if (got != Cd[m * p.ldc + j] || Cc[m * p.ldc + j] != Cv[m * p.ldc + j] || got != Cc[m * p.ldc + j])
                    fail_msg("M=%lld N=%lld K=%lld pattern %d (%lld, %lld): sparse %d / %d, dense %d / %d "
                             "(reference / this CPU)", (long long)p.M, (long long)p.N, (long long)p.K, pat,
                             (long long)m, (long long)j, got, Cc[m * p.ldc + j], Cd[m * p.ldc + j],
                             Cv[m * p.ldc + j]);
            }
        for (int64_t i = 0; i < p.M * p.ldc; i++) th_digest = (th_digest ^ (uint8_t)Cc[i]) * 1099511628211ull;
        free(pd), free(ps), free(pv), free(scratch), free(Cs), free(Cd), free(Cv), free(Cc);
    });
    print_message("    %lld elements, %.3f%% equal to the oracle\n", (long long)n, 100.0 * (double)exact / (double)n);
    assert_true(exact >= n * 97 / 100);
}

#ifdef MDL_HAVE_X86_SIMD
static void test_avx2(void **state) {
    (void)state;
    if (mdl__cpu_level() < MDL_CPU_AVX2) skip();
    th_seed(43);
    EACH_PROBLEM({
        void *ps = pack(&p, MDL_QGEMM_REF, true);
        mdl__qgemm_packed v;
        assert_true(mdl__qgemm_view(ps, &v));
        int8_t *Cr = out(&p), *Cx = out(&p);
        mdl__qspmm_ref(&v, &p.bsr, p.M, p.A, p.lda, Cr, p.ldc);
        mdl__qspmm_avx2(&v, &p.bsr, p.M, p.A, p.lda, Cx, p.ldc);
        if (memcmp(Cr, Cx, (size_t)(p.M * p.ldc)))
            fail_msg("M=%lld N=%lld K=%lld pattern %d: AVX2 not bit-identical to the reference", (long long)p.M,
                     (long long)p.N, (long long)p.K, pat);
        free(ps), free(Cr), free(Cx);
    });
}
#endif

int main(int argc, char **argv) {
    (void)argc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_oracle_and_dense),
#ifdef MDL_HAVE_X86_SIMD
        cmocka_unit_test(test_avx2),
#endif
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed += th_same_outputs_at_lower_levels(argv[0]);
    return failed;
}
