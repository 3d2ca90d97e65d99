/* int8 MAX_POOL2D, AVG_POOL2D, GLOBAL_MAX_POOL, GLOBAL_AVG_POOL against naive NHWC loops written
   from the ONNX definitions on dequantized values, requantized in double (q8_oracle.h):
     - max pools must be exact (they select a value; parameters are equal);
     - average pools (onnxruntime QLinearAveragePool, the output with its own parameters) within
       one step, mostly exact: the kernel's Q31 multiplier rounds twice and ties away from zero,
       the oracle once and half to even. */
#include "q8_oracle.h"

#include <stdlib.h>

typedef struct pool_case {
    int64_t N, H, W, C;
    int32_t kh, kw, sh, sw, pt, pl, pb, pr;
    bool include_pad;
} pool_case;

static q8_stats avg_stats, gavg_stats;

/* Real-valued pool of the dequantized input; a window without input cells gives real 0. */
static double ref_window(const pool_case *t, bool is_max, const int8_t *x, double sx, int32_t zx,
                         int64_t n, int64_t oh, int64_t ow, int64_t c) {
    double best = -INFINITY, sum = 0;
    int64_t real = 0, cells = 0;
    for (int64_t i = 0; i < t->kh; i++)
        for (int64_t j = 0; j < t->kw; j++) {
            int64_t ih = oh * t->sh - t->pt + i, iw = ow * t->sw - t->pl + j;
            cells++;
            if (ih < 0 || ih >= t->H || iw < 0 || iw >= t->W) continue;
            double v = q8_real(x[((n * t->H + ih) * t->W + iw) * t->C + c], sx, zx);
            real++;
            sum += v;
            if (v > best) best = v;
        }
    if (real == 0) return 0;
    return is_max ? best : sum / (double)(t->include_pad ? cells : real);
}

static void check_pool(const pool_case *t, bool is_max, float sx, int64_t zx, float sy,
                       int64_t zy) {
    int64_t OH = (t->H + t->pt + t->pb - t->kh) / t->sh + 1;
    int64_t OW = (t->W + t->pl + t->pr - t->kw) / t->sw + 1;
    int64_t nx = t->N * t->H * t->W * t->C;
    int8_t *x = malloc((size_t)(nx ? nx : 1));
    q8_fill(x, nx);
    int64_t xd[4] = {t->N, t->H, t->W, t->C}, yd[4] = {t->N, OH, OW, t->C};
    th_tensor in = q8_input(4, xd, x, &sx, &zx);
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
    th_tensor out = q8_declared(4, yd, &sy, &zy);
    mdl_error err = {0};
    mdl_status st = th_run_op(op, &o, 1, &in, 1, &out, &err);
    if (st != MDL_OK) fail_msg("status %d: %s", (int)st, err.msg);
    assert_int_equal(out.dtype, MDL_DTYPE_INT8);
    for (int d = 0; d < 4; d++)
        assert_int_equal(out.dims[d], yd[d]);
    const int8_t *y = out.data;
    for (int64_t n = 0; n < t->N; n++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++)
                for (int64_t c = 0; c < t->C; c++) {
                    double r = ref_window(t, is_max, x, sx, (int32_t)zx, n, oh, ow, c);
                    int32_t want = q8_quantize8(r, sy, (int32_t)zy);
                    int32_t got = y[((n * OH + oh) * OW + ow) * t->C + c];
                    if (is_max) {
                        if (got != want)
                            fail_msg("max pool (%lld,%lld,%lld,%lld): got %d, want %d",
                                     (long long)n, (long long)oh, (long long)ow, (long long)c, got,
                                     want);
                    } else {
                        q8_check(&avg_stats, got, want, r / sy,
                                 "avg N%lld H%lld W%lld C%lld k%dx%d s%dx%d p%d,%d,%d,%d incl%d "
                                 "sx %g zx %lld sy %g zy %lld at (%lld,%lld,%lld,%lld) real %.9g",
                                 (long long)t->N, (long long)t->H, (long long)t->W, (long long)t->C,
                                 t->kh, t->kw, t->sh, t->sw, t->pt, t->pl, t->pb, t->pr,
                                 t->include_pad, (double)sx, (long long)zx, (double)sy,
                                 (long long)zy, (long long)n, (long long)oh, (long long)ow,
                                 (long long)c, r / sy);
                    }
                }
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
}

/* Output scale relative to the input's: equal, or a ratio from 1e-2 to 1e2. */
static void rand_out_params(float sx, float *sy, int64_t *zy) {
    switch (th_rand_int(0, 3)) {
    case 0: *sy = sx; break;
    case 1: *sy = sx * q8_rand_scale(-2, 2); break;
    default: *sy = sx * q8_rand_scale(-0.5, 0.5); break;
    }
    *zy = q8_rand_zp();
}

static void check_all(const pool_case *t) {
    float sx = q8_rand_scale(-4, 1), sy;
    int64_t zx = q8_rand_zp(), zy;
    check_pool(t, true, sx, zx, sx, zx);
    pool_case u = *t;
    for (int incl = 0; incl < 2; incl++) {
        u.include_pad = incl;
        rand_out_params(sx, &sy, &zy);
        check_pool(&u, false, sx, zx, sy, zy);
    }
}

static void test_pool_cases(void **state) {
    (void)state;
    th_seed(201);
    const pool_case cases[] = {
        {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, false},
        {1, 8, 8, 4, 2, 2, 2, 2, 0, 0, 0, 0, false},
        {2, 7, 9, 3, 3, 3, 2, 2, 1, 1, 1, 1, false},
        {1, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1, 1, false},
        {1, 9, 10, 7, 3, 2, 2, 3, 0, 1, 2, 0, false},
        {1, 7, 7, 6, 2, 2, 2, 2, 0, 0, 1, 1, false},
        {1, 5, 6, 17, 5, 4, 1, 2, 2, 1, 2, 3, false},
        {1, 3, 3, 2, 3, 3, 1, 1, 0, 0, 0, 0, false},
        {1, 6, 1, 3, 3, 1, 2, 1, 1, 0, 1, 0, false},
        {1, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, false}, /* all-padding windows: zero point */
        {3, 14, 14, 32, 3, 3, 2, 2, 1, 1, 1, 1, false},
        {1, 15, 15, 3, 15, 15, 1, 1, 0, 0, 0, 0, false}, /* 225-cell window */
        {0, 4, 4, 3, 2, 2, 2, 2, 0, 0, 0, 0, false},
    };
    for (int rep = 0; rep < 4; rep++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            check_all(&cases[i]);
}

static void test_pool_random(void **state) {
    (void)state;
    th_seed(202);
    for (int it = 0; it < 300; it++) {
        pool_case t;
        t.N = th_rand_int(1, 2);
        t.H = th_rand_int(1, 12);
        t.W = th_rand_int(1, 12);
        t.C = th_rand_int(1, 19);
        t.kh = (int32_t)th_rand_int(1, 5);
        t.kw = (int32_t)th_rand_int(1, 5);
        t.sh = (int32_t)th_rand_int(1, 3);
        t.sw = (int32_t)th_rand_int(1, 3);
        t.pt = (int32_t)th_rand_int(0, t.kh - 1);
        t.pl = (int32_t)th_rand_int(0, t.kw - 1);
        t.pb = (int32_t)th_rand_int(0, t.kh - 1);
        t.pr = (int32_t)th_rand_int(0, t.kw - 1);
        t.include_pad = false;
        if (t.H + t.pt + t.pb < t.kh || t.W + t.pl + t.pr < t.kw) continue;
        check_all(&t);
    }
    q8_report(&avg_stats, "avg pool (cases + random)", 0.99);
}

static void check_global(bool is_max, int64_t N, int64_t H, int64_t W, int64_t C, float sx,
                         int64_t zx, float sy, int64_t zy) {
    int64_t nx = N * H * W * C;
    int8_t *x = malloc((size_t)(nx ? nx : 1));
    q8_fill(x, nx);
    int64_t xd[4] = {N, H, W, C}, yd[4] = {N, 1, 1, C};
    th_tensor in = q8_input(4, xd, x, &sx, &zx);
    th_tensor out = q8_declared(4, yd, &sy, &zy);
    mdl_error err = {0};
    mdl_op op = is_max ? MDL_OP_GLOBAL_MAX_POOL : MDL_OP_GLOBAL_AVG_POOL;
    mdl_status st = th_run_op(op, NULL, 1, &in, 1, &out, &err);
    if (st != MDL_OK) fail_msg("status %d: %s", (int)st, err.msg);
    for (int d = 0; d < 4; d++)
        assert_int_equal(out.dims[d], yd[d]);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            double best = -INFINITY, sum = 0;
            for (int64_t p = 0; p < H * W; p++) {
                double v = q8_real(x[(n * H * W + p) * C + c], sx, (int32_t)zx);
                sum += v;
                if (v > best) best = v;
            }
            double r = is_max ? best : sum / (double)(H * W);
            int32_t want = q8_quantize8(r, sy, (int32_t)zy), got = ((int8_t *)out.data)[n * C + c];
            if (is_max)
                assert_int_equal(got, want);
            else
                q8_check(&gavg_stats, got, want, r / sy,
                         "global avg %lldx%lldx%lldx%lld sx %g sy %g", (long long)N, (long long)H,
                         (long long)W, (long long)C, (double)sx, (double)sy);
        }
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
}

static void test_global_pools(void **state) {
    (void)state;
    th_seed(203);
    for (int it = 0; it < 200; it++) {
        int64_t N = th_rand_int(0, 2), H = th_rand_int(1, 15), W = th_rand_int(1, 15),
                C = th_rand_int(1, 33);
        if (it == 0) H = W = 56; /* a large sum */
        float sx = q8_rand_scale(-4, 1), sy;
        int64_t zx = q8_rand_zp(), zy;
        check_global(true, N, H, W, C, sx, zx, sx, zx);
        rand_out_params(sx, &sy, &zy);
        check_global(false, N, H, W, C, sx, zx, sy, zy);
    }
    q8_report(&gavg_stats, "global avg pool", 0.99);
}

static void test_pool_rejects(void **state) {
    (void)state;
    float s = 0.1f, s2 = 0.2f;
    int64_t z = 0, z2 = 1;
    int64_t xd[4] = {1, 4, 4, 2}, yd[4] = {1, 2, 2, 2}, gd[4] = {1, 1, 1, 2};
    int8_t x[32] = {0};
    mdl_op_options o = mdl_op_options_default(MDL_OP_MAX_POOL2D);
    o.pool.kernel[0] = o.pool.kernel[1] = 2;
    o.pool.stride[0] = o.pool.stride[1] = 2;
    mdl_error err = {0};
    th_tensor in = q8_input(4, xd, x, &s, &z);
    /* max pools: output parameters must equal the input's */
    th_tensor out = q8_declared(4, yd, &s2, &z);
    q8_assert_status(th_run_op(MDL_OP_MAX_POOL2D, &o, 1, &in, 1, &out, &err), MDL_UNSUPPORTED, err,
                     "must have the quantization of input");
    out = q8_declared(4, yd, &s, &z2);
    q8_assert_status(th_run_op(MDL_OP_MAX_POOL2D, &o, 1, &in, 1, &out, &err), MDL_UNSUPPORTED, err,
                     "zero point");
    out = q8_declared(4, gd, &s2, &z2);
    q8_assert_status(th_run_op(MDL_OP_GLOBAL_MAX_POOL, NULL, 1, &in, 1, &out, &err),
                     MDL_UNSUPPORTED, err, "quantization");
    /* missing output parameters */
    memset(&out, 0, sizeof out);
    q8_assert_status(th_run_op(MDL_OP_AVG_POOL2D, &o, 1, &in, 1, &out, &err), MDL_INVALID_ARGUMENT,
                     err, "declared with quantization parameters");
    /* per-axis output */
    float sc[2] = {0.1f, 0.2f};
    int64_t zc[2] = {0, 0};
    out = q8_declared(4, yd, &s, &z);
    th_tensor_quant(&out, 2, sc, zc, 3);
    q8_assert_status(th_run_op(MDL_OP_AVG_POOL2D, &o, 1, &in, 1, &out, &err), MDL_UNSUPPORTED, err,
                     "per-tensor");
    /* uint8 output */
    out = q8_declared(4, yd, &s, &z);
    out.dtype = MDL_DTYPE_UINT8;
    q8_assert_status(th_run_op(MDL_OP_AVG_POOL2D, &o, 1, &in, 1, &out, &err), MDL_DTYPE, err,
                     "uint8");
    /* input without parameters */
    th_tensor_quant(&in, 0, NULL, NULL, 0);
    out = q8_declared(4, yd, &s, &z);
    q8_assert_status(th_run_op(MDL_OP_MAX_POOL2D, &o, 1, &in, 1, &out, &err), MDL_UNSUPPORTED, err,
                     "per-tensor");
    /* a scale ratio beyond the fixed-point range (fails in pack) */
    float tiny = 1e-12f;
    th_tensor_quant(&in, 1, &s, &z, 0);
    out = q8_declared(4, gd, &tiny, &z);
    q8_assert_status(th_run_op(MDL_OP_GLOBAL_AVG_POOL, NULL, 1, &in, 1, &out, &err),
                     MDL_UNSUPPORTED, err, "fixed-point");
    th_tensor_free(&out); /* allocated after prepare; pack failed */
    /* shape errors as in the float kernel */
    th_tensor_free(&in);
    in = q8_input(3, xd, x, &s, &z);
    out = q8_declared(4, gd, &s, &z);
    q8_assert_status(th_run_op(MDL_OP_GLOBAL_AVG_POOL, NULL, 1, &in, 1, &out, &err), MDL_SHAPE, err,
                     "4-D");
    th_tensor_free(&in);
}

int main(int argc, char **argv) {
    (void)argc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_cases),
        cmocka_unit_test(test_pool_random),
        cmocka_unit_test(test_global_pools),
        cmocka_unit_test(test_pool_rejects),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + th_same_outputs_at_lower_levels(argv[0]);
}
