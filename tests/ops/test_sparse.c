/* Block-sparse weights and the sparse product (src/ops/sparse.c, src/ops/x86/sparse_*.c):
   - the stored blocks hold exactly W's non-zero 8x1 blocks (W rebuilt from them equals W);
   - the reference product against a naive double-precision dense product of the original W
     (an independent oracle: it never sees the sparse storage);
   - every x86 variant bit-identical to the reference (the contract in sparse.h);
   over random shapes with odd tails, padded leading dims, every fused epilogue, with and without
   bias, and sparsity patterns from empty (no block at all) through empty row groups and
   element-wise (unstructured) sparsity to dense. */
#include "common/harness.h"
#include "common/sparse_pattern.h"

#include "ops/ops.h"
#include "ops/sparse.h"
#ifdef MDL_HAVE_X86_SIMD
#include "ops/x86/x86.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL 12345.0f
#define COUNT(a) (sizeof a / sizeof a[0])

static const int64_t Ms[] = {1, 2, 3, 7, 8, 9, 16, 17, 31, 33, 48, 62}; /* AVX-512: 32-row tiles, tails of 1..30 */
static const int64_t Ns[] = {1, 7, 8, 9, 15, 16, 17, 40, 64};
static const int64_t Ks[] = {1, 2, 5, 64, 100};
static const float los[] = {-INFINITY, 0.0f, 0.0f, -0.5f};
static const float his[] = {INFINITY, INFINITY, 6.0f, 0.5f};

static void make_weights(float *W, int64_t N, int64_t K, int pattern) {
    th_fill_uniform(W, N * K, -1, 1);
    th_sparse_pattern(W, sizeof *W, N, K, K, 1, pattern);
}

typedef struct problem {
    int64_t M, N, K, ldx, ldy;
    float *X, *W, *bias, *Y;
    void *mem, *scratch;
    mdl__bsr bsr;
    float lo, hi;
} problem;

static problem make(int64_t M, int64_t N, int64_t K, int pattern, int with_bias, int epi) {
    problem p = {.M = M, .N = N, .K = K, .ldx = K + (M % 2) * 3, .ldy = N + (N % 3)};
    p.X = malloc(sizeof(float) * (size_t)(M * p.ldx));
    th_fill_uniform(p.X, M * p.ldx, -1, 1);
    p.W = malloc(sizeof(float) * (size_t)(N * K));
    make_weights(p.W, N, K, pattern);
    if (with_bias) {
        p.bias = malloc(sizeof(float) * (size_t)N);
        th_fill_uniform(p.bias, N, -1, 1);
    }
    p.Y = malloc(sizeof(float) * (size_t)(M * p.ldy));
    int64_t nb = mdl__bsr_count(N, K, p.W, K);
    p.mem = aligned_alloc(64, (mdl__bsr_bytes(N, nb) + 63) / 64 * 64);
    mdl__bsr_build(N, K, p.W, K, p.mem, &p.bsr);
    size_t sb = mdl__spmm_scratch_bytes(M, K);
    p.scratch = sb ? aligned_alloc(64, (sb + 63) / 64 * 64) : NULL;
    p.lo = los[epi];
    p.hi = his[epi];
    return p;
}

static void drop(problem *p) {
    free(p->X);
    free(p->W);
    free(p->bias);
    free(p->Y);
    free(p->mem);
    free(p->scratch);
}

static void clear(problem *p) {
    for (int64_t i = 0; i < p->M * p->ldy; i++)
        p->Y[i] = SENTINEL;
}

/* The stored blocks are exactly W's non-zero blocks, in order, aligned. */
static void check_storage(const problem *p) {
    const mdl__bsr *b = &p->bsr;
    assert_int_equal(b->N, p->N);
    assert_int_equal(b->K, p->K);
    assert_true(((uintptr_t)b->val & 31) == 0);
    int64_t groups = mdl__bsr_groups(p->N);
    assert_int_equal(b->ptr[0], 0);
    assert_int_equal(b->ptr[groups], b->nblocks);
    float *rebuilt = calloc((size_t)(p->N * p->K), sizeof(float));
    for (int64_t g = 0; g < groups; g++)
        for (int32_t j = b->ptr[g]; j < b->ptr[g + 1]; j++) {
            if (j > b->ptr[g]) assert_true(b->col[j] > b->col[j - 1]);
            int nonzero = 0;
            for (int r = 0; r < MDL_SPARSE_BN; r++) {
                int64_t n = g * MDL_SPARSE_BN + r;
                float v = b->val[(int64_t)j * MDL_SPARSE_BN + r];
                if (n < p->N)
                    rebuilt[n * p->K + b->col[j]] = v;
                else
                    assert_true(v == 0.0f);
                nonzero |= v != 0.0f;
            }
            assert_true(nonzero);
        }
    assert_memory_equal(rebuilt, p->W, sizeof(float) * (size_t)(p->N * p->K));
    free(rebuilt);
}

/* Reference against a naive double-precision dense product of the original W. */
static void check_oracle(const problem *p) {
    for (int64_t m = 0; m < p->M; m++)
        for (int64_t n = 0; n < p->N; n++) {
            double s = 0, mag = 0;
            for (int64_t k = 0; k < p->K; k++) {
                double t = (double)p->X[m * p->ldx + k] * p->W[n * p->K + k];
                s += t;
                mag += fabs(t);
            }
            if (p->bias) s += p->bias[n], mag += fabs(p->bias[n]);
            double want = s < p->lo ? p->lo : s > p->hi ? p->hi : s;
            double got = p->Y[m * p->ldy + n];
            double tol = 1e-6 * (mag + 1) * (double)(p->K + 1);
            if (fabs(got - want) > tol)
                fail_msg("M=%lld N=%lld K=%lld at (%lld,%lld): got %.9g want %.9g", (long long)p->M,
                         (long long)p->N, (long long)p->K, (long long)m, (long long)n, got, want);
        }
    for (int64_t m = 0; m < p->M; m++)
        for (int64_t i = p->N; i < p->ldy; i++)
            assert_true(p->Y[m * p->ldy + i] == SENTINEL);
}

#define FOR_EACH_PROBLEM(body)                                                                     \
    for (size_t im = 0; im < COUNT(Ms); im++)                                                      \
        for (size_t in = 0; in < COUNT(Ns); in++)                                                  \
            for (size_t ik = 0; ik < COUNT(Ks); ik++)                                              \
                for (int pat = 0; pat < P_COUNT; pat++) {                                          \
                    int epi = (int)((im + in + ik + (size_t)pat) % COUNT(los));                    \
                    problem p = make(Ms[im], Ns[in], Ks[ik], pat, (int)((in + ik) % 2), epi);      \
                    body;                                                                          \
                    drop(&p);                                                                      \
                }

static void test_reference(void **state) {
    (void)state;
    th_seed(31);
    FOR_EACH_PROBLEM({
        check_storage(&p);
        clear(&p);
        mdl__spmm_ref(p.M, p.X, p.ldx, &p.bsr, p.bias, p.Y, p.ldy, p.lo, p.hi, p.scratch);
        check_oracle(&p);
    });
}

/* The dispatching entry point (whatever this CPU and MDL_CPU_LEVEL choose) against the oracle. */
static void test_dispatch(void **state) {
    (void)state;
    th_seed(32);
    FOR_EACH_PROBLEM({
        clear(&p);
        mdl__spmm(p.M, p.X, p.ldx, &p.bsr, p.bias, p.Y, p.ldy, p.lo, p.hi, p.scratch);
        check_oracle(&p);
    });
}

/* Block counts: a dense matrix has every block, an empty one none; NaN counts as non-zero. */
static void test_count(void **state) {
    (void)state;
    float W[3 * 9] = {0};
    assert_int_equal(mdl__bsr_count(3, 9, W, 9), 0);
    W[2 * 9 + 4] = NAN;
    W[0 * 9 + 8] = -0.5f;
    assert_int_equal(mdl__bsr_count(3, 9, W, 9), 2);
    for (int i = 0; i < 27; i++)
        W[i] = 1.0f;
    assert_int_equal(mdl__bsr_count(3, 9, W, 9), 9);
    assert_int_equal(mdl__bsr_count(17, 5, (float[85]){[84] = 1.0f}, 5), 1);
}

#ifdef MDL_HAVE_X86_SIMD
static void run_level(int level) {
    FOR_EACH_PROBLEM({
        float *want = malloc(sizeof(float) * (size_t)(p.M * p.ldy));
        clear(&p);
        mdl__spmm_ref(p.M, p.X, p.ldx, &p.bsr, p.bias, p.Y, p.ldy, p.lo, p.hi, p.scratch);
        memcpy(want, p.Y, sizeof(float) * (size_t)(p.M * p.ldy));
        clear(&p);
        if (level == MDL_CPU_AVX2)
            mdl__spmm_avx2(p.M, p.X, p.ldx, &p.bsr, p.bias, p.Y, p.ldy, p.lo, p.hi, p.scratch);
        else
            mdl__spmm_avx512(p.M, p.X, p.ldx, &p.bsr, p.bias, p.Y, p.ldy, p.lo, p.hi, p.scratch);
        if (memcmp(want, p.Y, sizeof(float) * (size_t)(p.M * p.ldy)) != 0)
            fail_msg("level %d M=%lld N=%lld K=%lld pattern %d: not bit-identical to the reference",
                     level, (long long)p.M, (long long)p.N, (long long)p.K, pat);
        free(want);
    });
}

static void test_avx2(void **state) {
    (void)state;
    if (mdl__cpu_level() < MDL_CPU_AVX2) skip();
    th_seed(33);
    run_level(MDL_CPU_AVX2);
}

static void test_avx512(void **state) {
    (void)state;
    if (mdl__cpu_level() < MDL_CPU_AVX512) skip();
    th_seed(34);
    run_level(MDL_CPU_AVX512);
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count),    cmocka_unit_test(test_reference),
        cmocka_unit_test(test_dispatch),
#ifdef MDL_HAVE_X86_SIMD
        cmocka_unit_test(test_avx2),     cmocka_unit_test(test_avx512),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
