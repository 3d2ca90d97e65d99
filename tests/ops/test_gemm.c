/* The float GEMM primitives (src/ops/gemm.c) and every x86 variant (src/ops/x86/) against a naive
   double-precision product and against the portable mdl__gemm_nt_ref, over random shapes with odd
   tails, padded leading dims, every fused epilogue, packed and unpacked B. */
#include "common/harness.h"

#include "ops/ops.h"
#ifdef MDL_HAVE_X86_SIMD
#include "ops/x86/x86.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL 12345.0f /* written into C's padding; no kernel may touch it */

static const int64_t Ms[] = {1, 2, 3, 5, 7, 13, 64, 100};
static const int64_t Ns[] = {1, 3, 15, 16, 17, 31, 33, 64, 100};
static const int64_t Ks[] = {1, 2, 7, 15, 16, 17, 64, 100, 300, 1000};
#define COUNT(a) (sizeof a / sizeof a[0])

/* Fused epilogues: none, ReLU, ReLU6, a clip that cuts both sides. */
static const float los[] = {-INFINITY, 0.0f, 0.0f, -0.5f};
static const float his[] = {INFINITY, INFINITY, 6.0f, 0.5f};

typedef struct problem {
    int64_t M, N, K, lda, ldb, ldc;
    float *A, *B, *bias;
    float lo, hi;
    double *dot;  /* exact A B^T (no bias) */
    double term;  /* largest |A[m,k] B[n,k]| */
    double scale; /* error scale: largest pre-activation |dot + bias| or single term */
    float *want;  /* clamp(dot + bias), dense M x N */
    float *got;   /* M x ldc, padding = SENTINEL */
    float *dense; /* got compacted to M x N */
} problem;

static float *rand_floats(int64_t n) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    th_fill_uniform(p, n, -1, 1);
    return p;
}

/* Naive C = A B^T in double, straight from the definition. */
static void naive_nt(problem *p) {
    p->term = 0;
    for (int64_t m = 0; m < p->M; m++)
        for (int64_t n = 0; n < p->N; n++) {
            double s = 0;
            for (int64_t k = 0; k < p->K; k++) {
                double t = (double)p->A[m * p->lda + k] * (double)p->B[n * p->ldb + k];
                s += t;
                p->term = fmax(p->term, fabs(t));
            }
            p->dot[m * p->N + n] = s;
        }
}

/* The tolerance is relative to the magnitude of the values before the clamp (a clip to +-0.5
   does not make the sums more exact), and at least to the largest single product or bias (a
   cancelling 1x1 product has an error relative to its terms, not to its tiny result). */
static void set_epilogue(problem *p, bool bias, int act) {
    p->lo = los[act];
    p->hi = his[act];
    p->scale = fmax(1e-6, p->term);
    for (int64_t m = 0; m < p->M; m++)
        for (int64_t n = 0; n < p->N; n++) {
            double v = p->dot[m * p->N + n] + (bias ? (double)p->bias[n] : 0.0);
            p->scale = fmax(p->scale, fmax(fabs(v), bias ? fabs((double)p->bias[n]) : 0.0));
            p->want[m * p->N + n] = fminf(fmaxf((float)v, p->lo), p->hi);
        }
}

static problem make(int64_t M, int64_t N, int64_t K, bool padded) {
    problem p;
    memset(&p, 0, sizeof p);
    p.M = M, p.N = N, p.K = K;
    p.lda = K + (padded ? 3 : 0);
    p.ldb = K + (padded ? 5 : 0);
    p.ldc = N + (padded ? 7 : 0);
    p.A = rand_floats(M * p.lda);
    p.B = rand_floats(N * p.ldb);
    p.bias = rand_floats(N);
    p.dot = malloc(sizeof(double) * (size_t)(M * N));
    p.want = malloc(sizeof(float) * (size_t)(M * N));
    p.got = malloc(sizeof(float) * (size_t)(M * p.ldc));
    p.dense = malloc(sizeof(float) * (size_t)(M * N));
    naive_nt(&p);
    return p;
}

static void drop(problem *p) {
    free(p->A); free(p->B); free(p->bias); free(p->dot);
    free(p->want); free(p->got); free(p->dense);
}

static void clear_out(problem *p) {
    for (int64_t i = 0; i < p->M * p->ldc; i++) p->got[i] = SENTINEL;
}

/* Checks got against want and that C's padding is untouched. */
static void check_out(problem *p, const char *what) {
    for (int64_t m = 0; m < p->M; m++) {
        memcpy(p->dense + m * p->N, p->got + m * p->ldc, sizeof(float) * (size_t)p->N);
        for (int64_t n = p->N; n < p->ldc; n++)
            if (p->got[m * p->ldc + n] != SENTINEL)
                fail_msg("%s M=%lld N=%lld K=%lld: wrote C[%lld][%lld] past N", what,
                         (long long)p->M, (long long)p->N, (long long)p->K, (long long)m,
                         (long long)n);
    }
    double e = 0;
    for (int64_t i = 0; i < p->M * p->N; i++) {
        double d = fabs((double)p->dense[i] - (double)p->want[i]) / p->scale;
        e = d > e || isnan(d) ? d : e;
    }
    if (!(e <= 1e-5))
        fail_msg("%s M=%lld N=%lld K=%lld lo=%g hi=%g: relative error %g", what, (long long)p->M,
                 (long long)p->N, (long long)p->K, (double)p->lo, (double)p->hi, e);
}

static const float *bias_of(const problem *p, bool bias) { return bias ? p->bias : NULL; }

/* B as a [K,N] matrix (Conv2D's HWIO layout), rows N + 2 floats apart: *ldt receives that. */
static float *transposed_b(const problem *p, int64_t *ldt) {
    *ldt = p->N + 2;
    float *t = malloc(sizeof(float) * (size_t)(p->K * *ldt + 1));
    for (int64_t k = 0; k < p->K; k++) {
        for (int64_t n = 0; n < p->N; n++) t[k * *ldt + n] = p->B[n * p->ldb + k];
        t[k * *ldt + p->N] = t[k * *ldt + p->N + 1] = NAN; /* must not be read */
    }
    return t;
}

/* Every shape of the grid; the epilogue (bias or not x 4 clamps) and padding rotate with the
   shape index so each combination meets every size class. */
#define FOR_EACH_PROBLEM(body)                                                                     \
    do {                                                                                           \
        int idx_ = 0;                                                                              \
        for (size_t im = 0; im < COUNT(Ms); im++)                                                  \
            for (size_t in = 0; in < COUNT(Ns); in++)                                              \
                for (size_t ik = 0; ik < COUNT(Ks); ik++, idx_++) {                                \
                    problem p = make(Ms[im], Ns[in], Ks[ik], idx_ % 3 != 0);                       \
                    bool bias = (idx_ / 3) % 2 == 0;                                               \
                    set_epilogue(&p, bias, (idx_ / 2) % 4);                                        \
                    body;                                                                          \
                    drop(&p);                                                                      \
                }                                                                                  \
    } while (0)

static void test_reference(void **state) {
    (void)state;
    th_seed(11);
    FOR_EACH_PROBLEM({
        clear_out(&p);
        mdl__gemm_nt_ref(p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, bias_of(&p, bias), p.got, p.ldc,
                         p.lo, p.hi);
        check_out(&p, "mdl__gemm_nt_ref");
    });
}

/* The public entry points at this machine's level (and the portable ones in SIMD=0 builds). */
static void test_public(void **state) {
    (void)state;
    th_seed(12);
    FOR_EACH_PROBLEM({
        clear_out(&p);
        mdl__gemm_nt(p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, bias_of(&p, bias), p.got, p.ldc, p.lo,
                     p.hi);
        check_out(&p, "mdl__gemm_nt");
        size_t bytes = mdl__gemm_pack_bytes(p.N, p.K);
        void *packed = NULL;
        if (bytes) {
            packed = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
            mdl__gemm_pack(p.N, p.K, p.B, p.ldb, packed);
        }
        clear_out(&p);
        mdl__gemm_nt_packed(p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, packed, bias_of(&p, bias),
                            p.got, p.ldc, p.lo, p.hi);
        check_out(&p, "mdl__gemm_nt_packed");
        /* the same product from B [K,N], packed and as it is */
        int64_t ldt;
        float *bt = transposed_b(&p, &ldt);
        if (packed) mdl__gemm_pack_kn(p.N, p.K, bt, ldt, packed);
        clear_out(&p);
        mdl__gemm_nn_packed(p.M, p.N, p.K, p.A, p.lda, bt, ldt, packed, bias_of(&p, bias), p.got,
                            p.ldc, p.lo, p.hi);
        check_out(&p, "mdl__gemm_nn_packed");
        clear_out(&p);
        mdl__gemm_nn_packed(p.M, p.N, p.K, p.A, p.lda, bt, ldt, NULL, bias_of(&p, bias), p.got,
                            p.ldc, p.lo, p.hi);
        check_out(&p, "mdl__gemm_nn_packed unpacked");
        free(bt);
        free(packed);
    });
}

static void naive_nn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                     int64_t ldb, float *C) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)A[m * lda + k] * B[k * ldb + n];
            C[m * N + n] = (float)s;
        }
}

/* C = A B with B [K,N]: run `level` (-1: the public mdl__gemm_nn) on the whole grid. */
static void run_nn(int level) {
    for (size_t im = 0; im < COUNT(Ms); im++)
        for (size_t in = 0; in < COUNT(Ns); in++)
            for (size_t ik = 0; ik < COUNT(Ks); ik++) {
                int64_t M = Ms[im], N = Ns[in], K = Ks[ik];
                bool pad = (im + in + ik) % 2;
                int64_t lda = K + pad * 3, ldb = N + pad * 5, ldc = N + pad * 7;
                float *A = rand_floats(M * lda), *B = rand_floats(K * ldb);
                float *C = malloc(sizeof(float) * (size_t)(M * ldc));
                float *want = malloc(sizeof(float) * (size_t)(M * N));
                float *dense = malloc(sizeof(float) * (size_t)(M * N));
                for (int64_t i = 0; i < M * ldc; i++) C[i] = SENTINEL;
                naive_nn(M, N, K, A, lda, B, ldb, want);
#ifdef MDL_HAVE_X86_SIMD
                if (level >= 0) mdl__gemm_nn_level(level, M, N, K, A, lda, B, ldb, C, ldc);
                else
#endif
                    mdl__gemm_nn(M, N, K, A, lda, B, ldb, C, ldc);
                for (int64_t m = 0; m < M; m++) {
                    memcpy(dense + m * N, C + m * ldc, sizeof(float) * (size_t)N);
                    for (int64_t n = N; n < ldc; n++)
                        if (C[m * ldc + n] != SENTINEL) fail_msg("gemm_nn wrote past N");
                }
                double e = th_max_rel_err(dense, want, M * N);
                if (!(e <= 1e-5))
                    fail_msg("gemm_nn level %d M=%lld N=%lld K=%lld: relative error %g", level,
                             (long long)M, (long long)N, (long long)K, e);
                free(A); free(B); free(C); free(want); free(dense);
            }
}

static void test_nn_public(void **state) {
    (void)state;
    th_seed(13);
    run_nn(-1);
}

/* K == 0: the product is empty, C = clamp(bias). */
static void test_empty_k(void **state) {
    (void)state;
    float bias[5] = {-2, -0.25f, 0, 0.5f, 9}, C[2 * 5], want[5] = {0, 0, 0, 0.5f, 6};
    float A[1] = {0}, B[1] = {0};
    mdl__gemm_nt(2, 5, 0, A, 0, B, 0, bias, C, 5, 0.0f, 6.0f);
    th_assert_close(C, want, 5, 1e-6);
    th_assert_close(C + 5, want, 5, 1e-6);
    float Z[2 * 5], zero[2 * 5] = {0};
    for (int i = 0; i < 10; i++) Z[i] = 7;
    mdl__gemm_nn(2, 5, 0, A, 0, B, 5, Z, 5);
    th_assert_close(Z, zero, 10, 1e-6);
}

#ifdef MDL_HAVE_X86_SIMD

/* Panels laid out as x86.h describes them, written here from that description. */
static float *make_panels(const problem *p, int64_t nr) {
    int64_t half = nr / 2, cols = (p->N + half - 1) / half * half;
    float *panels = aligned_alloc(64, ((size_t)(cols * p->K) * sizeof(float) + 63) & ~(size_t)63);
    float *dst = panels;
    for (int64_t j0 = 0; j0 < p->N;) {
        int64_t w = p->N - j0 <= half ? half : nr;
        for (int64_t k = 0; k < p->K; k++)
            for (int64_t j = 0; j < w; j++)
                *dst++ = j0 + j < p->N ? p->B[(j0 + j) * p->ldb + k] : 0.0f;
        j0 += w;
    }
    return panels;
}

static void run_variants(int level) {
    FOR_EACH_PROBLEM({
        const float *b = bias_of(&p, bias);
        /* unpacked */
        clear_out(&p);
        if (level == MDL_CPU_AVX2)
            mdl__gemm_nt_avx2(p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, b, p.got, p.ldc, p.lo, p.hi);
        else
            mdl__gemm_nt_avx512(p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, b, p.got, p.ldc, p.lo, p.hi);
        check_out(&p, level == MDL_CPU_AVX2 ? "mdl__gemm_nt_avx2" : "mdl__gemm_nt_avx512");
        /* panels written by the test */
        float *panels =
            make_panels(&p, level == MDL_CPU_AVX2 ? MDL_GEMM_NR_AVX2 : MDL_GEMM_NR_AVX512);
        clear_out(&p);
        if (level == MDL_CPU_AVX2)
            mdl__gemm_panels_avx2(p.M, p.N, p.K, p.A, p.lda, panels, b, p.got, p.ldc, p.lo, p.hi);
        else
            mdl__gemm_panels_avx512(p.M, p.N, p.K, p.A, p.lda, panels, b, p.got, p.ldc, p.lo, p.hi);
        check_out(&p, level == MDL_CPU_AVX2 ? "mdl__gemm_panels_avx2" : "mdl__gemm_panels_avx512");
        free(panels);
        /* packed by gemm.c, through the level-explicit dispatch */
        size_t bytes = mdl__gemm_pack_bytes_level(level, p.N, p.K);
        assert_true(bytes > 0);
        void *packed = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        mdl__gemm_pack_level(level, p.N, p.K, p.B, p.ldb, packed);
        clear_out(&p);
        mdl__gemm_nt_packed_level(level, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, packed, b, p.got,
                                  p.ldc, p.lo, p.hi);
        check_out(&p, "mdl__gemm_nt_packed_level");
        /* B alone must also do, whatever M (a caller without B's rows gets the panels) */
        clear_out(&p);
        mdl__gemm_nt_packed_level(level, p.M, p.N, p.K, p.A, p.lda, NULL, p.ldb, packed, b, p.got,
                                  p.ldc, p.lo, p.hi);
        check_out(&p, "mdl__gemm_nt_packed_level without B");
        clear_out(&p);
        mdl__gemm_nt_level(level, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, b, p.got, p.ldc, p.lo,
                           p.hi);
        check_out(&p, "mdl__gemm_nt_level");
        /* B [K,N]: packed into the same panels, and read as it is without them */
        int64_t ldt;
        float *bt = transposed_b(&p, &ldt);
        mdl__gemm_pack_kn_level(level, p.N, p.K, bt, ldt, packed);
        clear_out(&p);
        mdl__gemm_nn_packed_level(level, p.M, p.N, p.K, p.A, p.lda, bt, ldt, packed, b, p.got,
                                  p.ldc, p.lo, p.hi);
        check_out(&p, "mdl__gemm_nn_packed_level");
        clear_out(&p);
        mdl__gemm_nn_packed_level(level, p.M, p.N, p.K, p.A, p.lda, bt, ldt, NULL, b, p.got,
                                  p.ldc, p.lo, p.hi);
        check_out(&p, "mdl__gemm_nn_packed_level unpacked");
        free(bt);
        free(packed);
    });
}

static void test_avx2(void **state) {
    (void)state;
    if (mdl__cpu_level() < MDL_CPU_AVX2) skip();
    th_seed(21);
    run_variants(MDL_CPU_AVX2);
    run_nn(MDL_CPU_AVX2);
}

static void test_avx512(void **state) {
    (void)state;
    if (mdl__cpu_level() < MDL_CPU_AVX512) skip();
    th_seed(22);
    run_variants(MDL_CPU_AVX512);
    run_nn(MDL_CPU_AVX512);
}

/* The level is 0..2, stable, and MDL_CPU_LEVEL (when set) can only lower it. */
static void test_cpu_level(void **state) {
    (void)state;
    int level = mdl__cpu_level();
    assert_true(level >= MDL_CPU_PORTABLE && level <= MDL_CPU_AVX512);
    assert_int_equal(mdl__cpu_level(), level);
    const char *env = getenv("MDL_CPU_LEVEL");
    if (env && env[0] >= '0' && env[0] <= '2' && !env[1]) assert_true(level <= env[0] - '0');
}

static void test_portable_level(void **state) {
    (void)state;
    th_seed(23);
    assert_int_equal(mdl__gemm_pack_bytes_level(MDL_CPU_PORTABLE, 64, 64), 0);
    FOR_EACH_PROBLEM({
        clear_out(&p);
        mdl__gemm_nt_level(MDL_CPU_PORTABLE, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb,
                           bias_of(&p, bias), p.got, p.ldc, p.lo, p.hi);
        check_out(&p, "mdl__gemm_nt_level(0)");
    });
    run_nn(MDL_CPU_PORTABLE);
}

/* Panels made for another level, N or K must not be read as if they matched: the call falls
   back to B and stays correct. */
static void test_packed_mismatch(void **state) {
    (void)state;
    int top = mdl__cpu_level();
    if (top < MDL_CPU_AVX2) skip();
    th_seed(24);
    problem p = make(37, 45, 70, true);
    set_epilogue(&p, true, 1);
    for (int packed_for = MDL_CPU_AVX2; packed_for <= top; packed_for++)
        for (int used_at = MDL_CPU_PORTABLE; used_at <= top; used_at++) {
            size_t bytes = mdl__gemm_pack_bytes_level(packed_for, p.N + 3, p.K);
            void *packed = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
            /* wrong N (a wider B whose first N rows are this B) */
            float *wide = rand_floats((p.N + 3) * p.ldb);
            memcpy(wide, p.B, sizeof(float) * (size_t)(p.N * p.ldb));
            mdl__gemm_pack_level(packed_for, p.N + 3, p.K, wide, p.ldb, packed);
            free(wide);
            clear_out(&p);
            mdl__gemm_nt_packed_level(used_at, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, packed,
                                      p.bias, p.got, p.ldc, p.lo, p.hi);
            check_out(&p, "packed for another N");
            /* right N and K, maybe another level */
            mdl__gemm_pack_level(packed_for, p.N, p.K, p.B, p.ldb, packed);
            clear_out(&p);
            mdl__gemm_nt_packed_level(used_at, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, packed,
                                      p.bias, p.got, p.ldc, p.lo, p.hi);
            check_out(&p, "packed for another level");
            /* K differs: 69 columns of A against panels of 70 */
            problem q = p;
            q.K = p.K - 1;
            q.dot = malloc(sizeof(double) * (size_t)(q.M * q.N));
            q.want = malloc(sizeof(float) * (size_t)(q.M * q.N));
            naive_nt(&q);
            set_epilogue(&q, true, 1);
            clear_out(&q);
            mdl__gemm_nt_packed_level(used_at, q.M, q.N, q.K, q.A, q.lda, q.B, q.ldb, packed,
                                      q.bias, q.got, q.ldc, q.lo, q.hi);
            check_out(&q, "packed for another K");
            free(q.dot);
            free(q.want);
            free(packed);
        }
    drop(&p);
}

/* Bigger shapes (K blocks, N blocks, panel tails together) once per level. */
static void test_large(void **state) {
    (void)state;
    th_seed(25);
    const int64_t shapes[][3] = {{70, 530, 1100}, {130, 47, 1500}, {9, 300, 2049}};
    for (size_t s = 0; s < COUNT(shapes); s++) {
        problem p = make(shapes[s][0], shapes[s][1], shapes[s][2], s % 2 == 0);
        set_epilogue(&p, true, (int)s % 4);
        for (int level = MDL_CPU_PORTABLE; level <= mdl__cpu_level(); level++) {
            size_t bytes = mdl__gemm_pack_bytes_level(level, p.N, p.K);
            void *packed = bytes ? aligned_alloc(64, (bytes + 63) & ~(size_t)63) : NULL;
            if (packed) mdl__gemm_pack_level(level, p.N, p.K, p.B, p.ldb, packed);
            clear_out(&p);
            mdl__gemm_nt_packed_level(level, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, packed, p.bias,
                                      p.got, p.ldc, p.lo, p.hi);
            check_out(&p, "large packed");
            clear_out(&p);
            mdl__gemm_nt_level(level, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, p.bias, p.got, p.ldc,
                               p.lo, p.hi);
            check_out(&p, "large unpacked");
            free(packed);
        }
        drop(&p);
    }
}

#endif /* MDL_HAVE_X86_SIMD */

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_public),
        cmocka_unit_test(test_nn_public),
        cmocka_unit_test(test_empty_k),
#ifdef MDL_HAVE_X86_SIMD
        cmocka_unit_test(test_cpu_level),
        cmocka_unit_test(test_portable_level),
        cmocka_unit_test(test_avx2),
        cmocka_unit_test(test_avx512),
        cmocka_unit_test(test_packed_mismatch),
        cmocka_unit_test(test_large),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
