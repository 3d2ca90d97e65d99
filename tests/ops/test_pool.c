/* MAX_POOL2D, AVG_POOL2D, GLOBAL_AVG_POOL, GLOBAL_MAX_POOL against naive loops written from the
   ONNX MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool definitions, directly in NHWC.
   A window enumerates all kernel cells of the padded input: padded cells never win a max, count
   as zeros in an average with count_include_pad and are left out of it otherwise.

   The windowed pools have AVX2 / AVX-512 variants: test_pool_variants compares them with the
   portable kernel directly (bit for bit, NaN inputs included), and main() runs the program again
   under MDL_CPU_LEVEL=1 and 0 so that the operator tests cover every level. */
#include "common/harness.h"

#include "ops/x86/conv_x86.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MDL_HAVE_X86_SIMD
#include "ops/x86/x86.h"
#endif

typedef struct pool_case {
    int64_t N, H, W, C;
    int32_t kh, kw, sh, sw, pt, pl, pb, pr;
    bool include_pad;
} pool_case;

static float *fmalloc(int64_t n) { return malloc(sizeof(float) * (size_t)(n > 0 ? n : 1)); }

/* A window without any input cell (only possible with padding >= kernel) is 0 by mdeploy's
   documented convention (src/ops/pool.c), for both pools. */
static void ref_pool(const pool_case *t, bool is_max, int64_t OH, int64_t OW, const float *x,
                     float *y) {
    for (int64_t n = 0; n < t->N; n++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++)
                for (int64_t c = 0; c < t->C; c++) {
                    double best = -INFINITY, sum = 0;
                    int64_t real = 0, cells = 0;
                    for (int64_t i = 0; i < t->kh; i++)
                        for (int64_t j = 0; j < t->kw; j++) {
                            int64_t ih = oh * t->sh - t->pt + i, iw = ow * t->sw - t->pl + j;
                            cells++;
                            if (ih < 0 || ih >= t->H || iw < 0 || iw >= t->W) continue;
                            double v = x[((n * t->H + ih) * t->W + iw) * t->C + c];
                            real++;
                            sum += v;
                            if (v > best) best = v;
                        }
                    double r;
                    if (real == 0)
                        r = 0;
                    else if (is_max)
                        r = best;
                    else
                        r = sum / (double)(t->include_pad ? cells : real);
                    y[((n * OH + oh) * OW + ow) * t->C + c] = (float)r;
                }
}

static void check_pool(const pool_case *t, bool is_max) {
    int64_t OH = (t->H + t->pt + t->pb - t->kh) / t->sh + 1;
    int64_t OW = (t->W + t->pl + t->pr - t->kw) / t->sw + 1;
    int64_t nx = t->N * t->H * t->W * t->C, ny = t->N * OH * OW * t->C;
    float *x = fmalloc(nx), *ref = fmalloc(ny);
    th_fill_uniform(x, nx, -3, 1); /* mostly negative: a padded 0 winning a max would show */
    ref_pool(t, is_max, OH, OW, x, ref);
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 4, (int64_t[]){t->N, t->H, t->W, t->C}, x);
    mdl_op op = is_max ? MDL_OP_MAX_POOL2D : MDL_OP_AVG_POOL2D;
    mdl_op_options o = mdl_op_options_default(op);
    o.pool.kernel[0] = t->kh;
    o.pool.kernel[1] = t->kw;
    o.pool.stride[0] = t->sh;
    o.pool.stride[1] = t->sw;
    o.pool.pad[0] = t->pt;
    o.pool.pad[1] = t->pl;
    o.pool.pad[2] = t->pb;
    o.pool.pad[3] = t->pr;
    o.pool.count_include_pad = t->include_pad;
    th_tensor out = {0};
    mdl_error err = {0};
    mdl_status st = th_run_op(op, &o, 1, &in, 1, &out, &err);
    if (st != MDL_OK) fail_msg("status %d: %s", (int)st, err.msg);
    assert_int_equal(out.rank, 4);
    assert_int_equal(out.dims[0], t->N);
    assert_int_equal(out.dims[1], OH);
    assert_int_equal(out.dims[2], OW);
    assert_int_equal(out.dims[3], t->C);
    double e = th_max_rel_err(out.data, ref, ny);
    if (!(e <= 1e-6))
        fail_msg("%s N%lld H%lld W%lld C%lld k%dx%d s%dx%d p%d,%d,%d,%d incl%d: error %g",
                 is_max ? "max" : "avg", (long long)t->N, (long long)t->H, (long long)t->W,
                 (long long)t->C, t->kh, t->kw, t->sh, t->sw, t->pt, t->pl, t->pb, t->pr,
                 t->include_pad, e);
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
    free(ref);
}

static void check_both(pool_case t) {
    check_pool(&t, true);
    t.include_pad = false;
    check_pool(&t, false);
    t.include_pad = true;
    check_pool(&t, false);
}

static void test_pool_cases(void **state) {
    (void)state;
    th_seed(21);
    const pool_case cases[] = {
        {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, false},
        {1, 8, 8, 4, 2, 2, 2, 2, 0, 0, 0, 0, false},   /* classic 2x2/2 */
        {2, 7, 9, 3, 3, 3, 2, 2, 1, 1, 1, 1, false},   /* odd sizes, padded */
        {1, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1, 1, false}, /* stride 1 "same" */
        {1, 9, 10, 7, 3, 2, 2, 3, 0, 1, 2, 0, false},  /* asymmetric pads */
        {1, 7, 7, 6, 2, 2, 2, 2, 0, 0, 1, 1, false},   /* ceil_mode as extra bottom/right pad */
        {1, 5, 6, 17, 5, 4, 1, 2, 2, 1, 2, 3, false},  /* big pads, C with a tail */
        {1, 3, 3, 2, 3, 3, 1, 1, 0, 0, 0, 0, false},   /* window = input */
        {1, 6, 1, 3, 3, 1, 2, 1, 1, 0, 1, 0, false},   /* width 1 */
        {1, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, false},   /* pad >= kernel: all-padding windows */
        {3, 14, 14, 32, 3, 3, 2, 2, 1, 1, 1, 1, false},
        {0, 4, 4, 3, 2, 2, 2, 2, 0, 0, 0, 0, false},     /* empty batch */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_both(cases[i]);
}

static void test_pool_random(void **state) {
    (void)state;
    th_seed(22);
    for (int it = 0; it < 200; it++) {
        pool_case t;
        t.N = th_rand_int(1, 2);
        t.H = th_rand_int(1, 12);
        t.W = th_rand_int(1, 12);
        t.C = th_rand_int(1, 11);
        t.kh = (int32_t)th_rand_int(1, 4);
        t.kw = (int32_t)th_rand_int(1, 4);
        t.sh = (int32_t)th_rand_int(1, 3);
        t.sw = (int32_t)th_rand_int(1, 3);
        /* ONNX requires pads < kernel */
        t.pt = (int32_t)th_rand_int(0, t.kh - 1);
        t.pb = (int32_t)th_rand_int(0, t.kh - 1);
        t.pl = (int32_t)th_rand_int(0, t.kw - 1);
        t.pr = (int32_t)th_rand_int(0, t.kw - 1);
        while (t.H + t.pt + t.pb < t.kh) t.H++;
        while (t.W + t.pl + t.pr < t.kw) t.W++;
        t.include_pad = false;
        check_both(t);
    }
}

/* Each SIMD variant equals the portable kernel exactly: same comparisons, same summation order
   and scale.  Channel counts reach past the 64-channel pass of the AVX-512 kernel. */
static void test_pool_variants(void **state) {
    (void)state;
#ifdef MDL_HAVE_X86_SIMD
    th_seed(24);
    const int level = mdl__cpu_level();
    for (int it = 0; it < 300; it++) {
        mdl__pool_args a;
        memset(&a, 0, sizeof a);
        a.N = th_rand_int(1, 2);
        a.C = it % 3 ? th_rand_int(1, 150) : th_rand_int(1, 20);
        a.KH = th_rand_int(1, 3);
        a.KW = th_rand_int(1, 3);
        a.sh = th_rand_int(1, 2);
        a.sw = th_rand_int(1, 2);
        a.pt = th_rand_int(0, a.KH);
        a.pl = th_rand_int(0, a.KW);
        int64_t pb = th_rand_int(0, a.KH), pr = th_rand_int(0, a.KW);
        a.H = th_rand_int(1, 9);
        a.W = th_rand_int(1, 9);
        while (a.H + a.pt + pb < a.KH) a.H++;
        while (a.W + a.pl + pr < a.KW) a.W++;
        a.OH = (a.H + a.pt + pb - a.KH) / a.sh + 1;
        a.OW = (a.W + a.pl + pr - a.KW) / a.sw + 1;
        a.is_max = it % 2;
        a.include_pad = it % 4 == 0;
        int64_t nx = a.N * a.H * a.W * a.C, ny = a.N * a.OH * a.OW * a.C;
        float *x = fmalloc(nx), *ref = fmalloc(ny), *got = fmalloc(ny);
        th_fill_uniform(x, nx, -3, 1);
        if (a.is_max)
            for (int64_t i = 0; i < nx; i += 37) x[i] = NAN; /* a NaN input loses */
        a.x = x;
        a.y = ref;
        mdl__pool_ref(&a);
        for (int lv = MDL_CPU_AVX2; lv <= level; lv++) {
            memset(got, 0xA5, sizeof(float) * (size_t)ny);
            a.y = got;
            if (lv == MDL_CPU_AVX2)
                mdl__pool_avx2(&a);
            else
                mdl__pool_avx512(&a);
            a.y = ref;
            for (int64_t i = 0; i < ny; i++)
                if (memcmp(&got[i], &ref[i], sizeof(float)) != 0)
                    fail_msg("level %d %s C%lld H%lld W%lld k%lldx%lld s%lldx%lld: [%lld] %g != %g",
                             lv, a.is_max ? "max" : "avg", (long long)a.C, (long long)a.H,
                             (long long)a.W, (long long)a.KH, (long long)a.KW, (long long)a.sh,
                             (long long)a.sw, (long long)i, got[i], ref[i]);
        }
        free(x);
        free(ref);
        free(got);
    }
#else
    skip();
#endif
}

static void check_global(int64_t N, int64_t H, int64_t W, int64_t C) {
    int64_t nx = N * H * W * C;
    float *x = fmalloc(nx), *ravg = fmalloc(N * C), *rmax = fmalloc(N * C);
    th_fill_uniform(x, nx, -3, 1);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            double s = 0, m = -INFINITY;
            for (int64_t h = 0; h < H; h++)
                for (int64_t w = 0; w < W; w++) {
                    double v = x[((n * H + h) * W + w) * C + c];
                    s += v;
                    m = v > m ? v : m;
                }
            ravg[n * C + c] = (float)(s / (double)(H * W));
            rmax[n * C + c] = (float)m;
        }
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 4, (int64_t[]){N, H, W, C}, x);
    for (int k = 0; k < 2; k++) {
        th_tensor out = {0};
        mdl_error err = {0};
        mdl_op op = k ? MDL_OP_GLOBAL_MAX_POOL : MDL_OP_GLOBAL_AVG_POOL;
        mdl_status st = th_run_op(op, NULL, 1, &in, 1, &out, &err);
        if (st != MDL_OK) fail_msg("status %d: %s", (int)st, err.msg);
        assert_int_equal(out.rank, 4);
        assert_int_equal(out.dims[0], N);
        assert_int_equal(out.dims[1], 1);
        assert_int_equal(out.dims[2], 1);
        assert_int_equal(out.dims[3], C);
        th_assert_close(out.data, k ? rmax : ravg, N * C, 1e-6);
        th_tensor_free(&out);
    }
    th_tensor_free(&in);
    free(x);
    free(ravg);
    free(rmax);
}

static void test_global_pools(void **state) {
    (void)state;
    th_seed(23);
    check_global(1, 1, 1, 1);
    check_global(1, 7, 7, 13);
    check_global(2, 5, 3, 64);
    check_global(3, 1, 9, 5);
    check_global(1, 224, 224, 3); /* long sums */
    check_global(0, 3, 3, 2);     /* empty batch */
    for (int it = 0; it < 30; it++)
        check_global(th_rand_int(1, 3), th_rand_int(1, 10), th_rand_int(1, 10),
                     th_rand_int(1, 20));
}

static void expect_reject(mdl_op op, const mdl_op_options *o, int rank, const int64_t *dims,
                          mdl_status want, const char *needle) {
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, rank, dims, NULL);
    th_tensor out = {0};
    mdl_error err = {0};
    mdl_status st = th_run_op(op, o, 1, &in, 1, &out, &err);
    if (st != want) fail_msg("want status %d, got %d (%s)", (int)want, (int)st, err.msg);
    if (!strstr(err.msg, "'test'") || !strstr(err.msg, needle))
        fail_msg("message \"%s\" lacks the node name or \"%s\"", err.msg, needle);
    th_tensor_free(&in);
}

static void test_pool_rejects(void **state) {
    (void)state;
    const int64_t x[4] = {1, 6, 6, 3};
    mdl_op_options d = mdl_op_options_default(MDL_OP_MAX_POOL2D), o;
    d.pool.kernel[0] = d.pool.kernel[1] = 2;
    expect_reject(MDL_OP_MAX_POOL2D, &d, 3, (int64_t[]){6, 6, 3}, MDL_SHAPE, "4-D");
    expect_reject(MDL_OP_AVG_POOL2D, &d, 5, (int64_t[]){1, 1, 6, 6, 3}, MDL_SHAPE, "4-D");
    o = d;
    o.pool.kernel[1] = 0;
    expect_reject(MDL_OP_MAX_POOL2D, &o, 4, x, MDL_INVALID_ARGUMENT, "kernel");
    o = d;
    o.pool.stride[0] = 0;
    expect_reject(MDL_OP_AVG_POOL2D, &o, 4, x, MDL_INVALID_ARGUMENT, "stride");
    o = d;
    o.pool.pad[3] = -1;
    expect_reject(MDL_OP_MAX_POOL2D, &o, 4, x, MDL_INVALID_ARGUMENT, "negative padding");
    o = d;
    o.pool.kernel[0] = 7;
    expect_reject(MDL_OP_MAX_POOL2D, &o, 4, x, MDL_SHAPE, "larger than the padded input");
    o.pool.pad[0] = 1; /* 7 rows of padded input: fits */
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 4, x, NULL), out = {0};
    assert_int_equal(th_run_op(MDL_OP_MAX_POOL2D, &o, 1, &in, 1, &out, NULL), MDL_OK);
    assert_int_equal(out.dims[1], 1);
    assert_int_equal(out.dims[2], 5);
    th_tensor_free(&out);
    th_tensor_free(&in);
    expect_reject(MDL_OP_GLOBAL_AVG_POOL, NULL, 2, (int64_t[]){1, 3}, MDL_SHAPE, "4-D");
    expect_reject(MDL_OP_GLOBAL_MAX_POOL, NULL, 4, (int64_t[]){1, 0, 2, 3}, MDL_SHAPE,
                  "empty dimension");
}

int main(int argc, char **argv) {
    (void)argc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_cases),
        cmocka_unit_test(test_pool_random),
        cmocka_unit_test(test_pool_variants),
        cmocka_unit_test(test_global_pools),
        cmocka_unit_test(test_pool_rejects),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed += th_rerun_lower_cpu_levels(argv[0]);
    return failed;
}
