/* ERF, LAYER_NORM and RESIZE against independent oracles evaluated in double: libm's erf, the
   LayerNormalization formula over each row, and ONNX's reference Resize (coordinate transform,
   then for linear the two neighbours of floor(x) with edge padding, for nearest the rounding
   rule then clamping).  Every output is also required to be bit-identical at each lower
   MDL_CPU_LEVEL (th_same_outputs_at_lower_levels). */
#include "common/harness.h"

#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Erf ----------------------------------------------------------------------------------- */

/* Distance in float ulps between got and the correctly rounded value of ref (at ref's binade). */
static double ulps(float got, double ref) {
    float r = (float)ref;
    double ulp = r == 0.0f ? 1.4e-45 : fabs((double)nextafterf(r, INFINITY) - (double)r);
    return fabs((double)got - ref) / ulp;
}

static void test_erf(void **state) {
    (void)state;
    /* a dense grid over [-6, 6] plus tiny and huge magnitudes, NaN and infinities */
    int64_t n = 240001 + 8;
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < 240001; i++) x[i] = -6.0f + 12.0f * (float)i / 240000.0f;
    const float extra[8] = {1e-30f, -1e-20f, 1e-8f, 30.0f, -100.0f, INFINITY, -INFINITY, NAN};
    memcpy(x + 240001, extra, sizeof extra);
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 1, &n, x), out = {0};
    mdl_error err;
    mdl_op_options o = mdl_op_options_default(MDL_OP_ERF);
    if (th_run_op(MDL_OP_ERF, &o, 1, &in, 1, &out, &err) != MDL_OK) fail_msg("%s", err.msg);
    const float *y = out.data;
    double max_abs = 0, max_ulp = 0, max_ulp_at = 0;
    for (int64_t i = 0; i < n - 1; i++) {
        double ref = erf((double)x[i]);
        double a = fabs((double)y[i] - ref), u = ulps(y[i], ref);
        if (a > max_abs) max_abs = a;
        if (u > max_ulp) {
            max_ulp = u;
            max_ulp_at = x[i];
        }
    }
    assert_true(isnan(y[n - 1]));
    printf("erf: max abs error %.3g, max %.2f ulp (at x = %.6g) vs double erf on [-6, 6]\n", max_abs,
           max_ulp, max_ulp_at);
    /* the measured figures (see the printout) with a little headroom */
    if (!(max_abs <= 1.2e-7 && max_ulp <= 1.0)) fail_msg("erf error %g abs, %g ulp", max_abs, max_ulp);
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
}

/* ---- LayerNorm ------------------------------------------------------------------------------ */

static void check_ln(int rank, const int64_t *dims, float eps, int params) {
    int64_t C = dims[rank - 1], n = th_count(rank, dims);
    float *x = malloc(sizeof(float) * (size_t)(n + 1)), *ref = malloc(sizeof(float) * (size_t)(n + 1));
    float *s = malloc(sizeof(float) * (size_t)C), *b = malloc(sizeof(float) * (size_t)C);
    th_fill_uniform(x, n, -3, 5);
    th_fill_uniform(s, C, -2, 2);
    th_fill_uniform(b, C, -1, 1);
    bool has_s = params & 1, has_b = params & 2;
    /* Float's own conditioning: x - mean carries about an ulp of max |x| of rounding, amplified
       by 1 / sqrt(var + eps) (a row of nearly equal values with a tiny epsilon); any float
       implementation (ONNX Runtime's too) has that much error on top of its own rounding. */
    float *tol = malloc(sizeof(float) * (size_t)(n + 1));
    for (int64_t r = 0; r < n / C; r++) {
        double m = 0, v = 0;
        for (int64_t k = 0; k < C; k++) m += x[r * C + k];
        m /= (double)C;
        for (int64_t k = 0; k < C; k++) v += (x[r * C + k] - m) * (x[r * C + k] - m);
        v /= (double)C;
        double amax = 0;
        for (int64_t k = 0; k < C; k++) amax = fmax(amax, fabs(x[r * C + k]));
        for (int64_t k = 0; k < C; k++) {
            double y = (x[r * C + k] - m) / sqrt(v + eps);
            tol[r * C + k] = (float)(8 * 1.2e-7 * amax / sqrt(v + eps) * (has_s ? fabs(s[k]) : 1.0));
            ref[r * C + k] = (float)(y * (has_s ? s[k] : 1.0) + (has_b ? b[k] : 0.0));
        }
    }
    th_tensor in[3] = {th_tensor_make(MDL_DTYPE_FLOAT32, rank, dims, x),
                       has_s ? th_tensor_make(MDL_DTYPE_FLOAT32, 1, &C, s) : th_tensor_absent(),
                       has_b ? th_tensor_make(MDL_DTYPE_FLOAT32, 1, &C, b) : th_tensor_absent()};
    in[1].constant = in[2].constant = true;
    mdl_op_options o = mdl_op_options_default(MDL_OP_LAYER_NORM);
    o.batch_norm.epsilon = eps;
    th_tensor out = {0};
    mdl_error err;
    if (th_run_op(MDL_OP_LAYER_NORM, &o, 3, in, 1, &out, &err) != MDL_OK) fail_msg("%s", err.msg);
    assert_int_equal(out.rank, rank);
    double rmax = 1;
    for (int64_t i = 0; i < n; i++) rmax = fmax(rmax, fabs(ref[i]));
    const float *got = out.data;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(got[i] - ref[i]) <= 2e-6 * rmax + tol[i]))
            fail_msg("layer norm C=%lld rank %d eps %g params %d: element %lld is %.9g, expected %.9g",
                     (long long)C, rank, (double)eps, params, (long long)i, got[i], ref[i]);
    free(tol);
    for (int i = 0; i < 3; i++) th_tensor_free(&in[i]);
    th_tensor_free(&out);
    free(x);
    free(ref);
    free(s);
    free(b);
}

static void test_layer_norm(void **state) {
    (void)state;
    th_seed(1313);
    const int64_t cs[] = {1, 2, 3, 7, 8, 16, 31, 64, 100, 768};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        for (int p = 0; p < 4; p++) {
            check_ln(1, (int64_t[]){cs[i]}, 1e-5f, p);
            check_ln(3, (int64_t[]){2, 5, cs[i]}, 1e-12f, p);
            check_ln(2, (int64_t[]){3, cs[i]}, 0.5f, p);
        }
}

static void test_layer_norm_reject(void **state) {
    (void)state;
    float x[6] = {0}, s[2] = {1, 1};
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, x),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 1, (int64_t[]){2}, s)};
    mdl_op_options o = mdl_op_options_default(MDL_OP_LAYER_NORM);
    th_tensor out = {0};
    mdl_error err;
    assert_int_equal(th_run_op(MDL_OP_LAYER_NORM, &o, 2, in, 1, &out, &err), MDL_SHAPE);
    o.batch_norm.epsilon = -1;
    in[1].dims[0] = 3;
    in[1].count = 3;
    assert_int_not_equal(th_run_op(MDL_OP_LAYER_NORM, &o, 1, in, 1, &out, &err), MDL_OK);
    for (int i = 0; i < 2; i++) th_tensor_free(&in[i]);
}

/* ---- Resize --------------------------------------------------------------------------------- */

/* The source coordinate (ONNX's formulas); scale is out / in when the size was given. */
static double coord(mdl_resize_coord m, int64_t xo, double scale, int64_t in, int64_t out) {
    switch (m) {
    case MDL_RESIZE_ASYMMETRIC: return xo / scale;
    case MDL_RESIZE_ALIGN_CORNERS: return out == 1 ? 0 : xo * (double)(in - 1) / (double)(out - 1);
    case MDL_RESIZE_PYTORCH_HALF_PIXEL: return out > 1 ? (xo + 0.5) / scale - 0.5 : 0;
    default: return (xo + 0.5) / scale - 0.5;
    }
}

static int64_t clampi(int64_t v, int64_t n) { return v < 0 ? 0 : v >= n ? n - 1 : v; }

static int64_t nearest(mdl_resize_nearest m, double x) {
    double f = floor(x);
    switch (m) {
    case MDL_RESIZE_FLOOR: return (int64_t)f;
    case MDL_RESIZE_CEIL: return (int64_t)ceil(x);
    case MDL_RESIZE_ROUND_PREFER_CEIL: return (int64_t)(x - f >= 0.5 ? f + 1 : f);
    default: return (int64_t)(x - f > 0.5 ? f + 1 : f);
    }
}

static void check_resize(const int64_t *dims, const mdl_resize_options *ro) {
    int64_t N = dims[0], H = dims[1], W = dims[2], C = dims[3], n = th_count(4, dims);
    int64_t OH = ro->out[0] ? ro->out[0] : (int64_t)floor(H * (double)ro->scale[0]);
    int64_t OW = ro->out[1] ? ro->out[1] : (int64_t)floor(W * (double)ro->scale[1]);
    float *x = malloc(sizeof(float) * (size_t)n);
    float *ref = malloc(sizeof(float) * (size_t)(N * OH * OW * C + 1));
    th_fill_uniform(x, n, -2, 2);
    for (int64_t b = 0; b < N; b++)
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++)
                for (int64_t c = 0; c < C; c++) {
                    double sy = ro->out[0] ? (double)OH / H : ro->scale[0];
                    double sx = ro->out[1] ? (double)OW / W : ro->scale[1];
                    double yy = coord(ro->coord, oy, sy, H, OH), xx = coord(ro->coord, ox, sx, W, OW);
#define AT(i, j) (double)x[((b * H + clampi(i, H)) * W + clampi(j, W)) * C + c]
                    double v;
                    if (ro->mode == MDL_RESIZE_NEAREST) {
                        v = AT(nearest(ro->nearest, yy), nearest(ro->nearest, xx));
                    } else {
                        int64_t y0 = (int64_t)floor(yy), x0 = (int64_t)floor(xx);
                        double ry = yy - y0, rx = xx - x0;
                        v = (1 - ry) * ((1 - rx) * AT(y0, x0) + rx * AT(y0, x0 + 1)) +
                            ry * ((1 - rx) * AT(y0 + 1, x0) + rx * AT(y0 + 1, x0 + 1));
                    }
#undef AT
                    ref[((b * OH + oy) * OW + ox) * C + c] = (float)v;
                }
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 4, dims, x), out = {0};
    mdl_op_options o = mdl_op_options_default(MDL_OP_RESIZE);
    o.resize = *ro;
    mdl_error err;
    if (th_run_op(MDL_OP_RESIZE, &o, 1, &in, 1, &out, &err) != MDL_OK) fail_msg("%s", err.msg);
    assert_int_equal(out.dims[1], OH);
    assert_int_equal(out.dims[2], OW);
    double e = th_max_rel_err(out.data, ref, N * OH * OW * C);
    if (!(e <= (ro->mode == MDL_RESIZE_NEAREST ? 0 : 1e-5)))
        fail_msg("resize mode %d coord %d nearest %d scale %gx%g out %dx%d from %lldx%lld: error %g",
                 ro->mode, ro->coord, ro->nearest, (double)ro->scale[0], (double)ro->scale[1],
                 ro->out[0], ro->out[1], (long long)H, (long long)W, e);
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
    free(ref);
}

static void test_resize(void **state) {
    (void)state;
    th_seed(77);
    /* scales exact in binary (so float and double coordinates agree on nearest's ties), and
       sizes (scale = out / in) */
    const float scales[][2] = {{2, 2}, {0.5f, 0.5f}, {4, 1}, {1.5f, 2.5f}, {0.75f, 1}, {1, 1}};
    const int32_t sizes[][2] = {{13, 11}, {1, 1}, {3, 20}, {7, 6}};
    const int64_t shapes[][4] = {{1, 7, 6, 3}, {2, 4, 5, 8}, {1, 1, 3, 1}, {1, 8, 8, 17}};
    for (int m = 0; m < MDL_RESIZE_MODE_COUNT; m++)
        for (int cd = 0; cd < MDL_RESIZE_COORD_COUNT; cd++)
            for (int nm = 0; nm < (m == MDL_RESIZE_NEAREST ? MDL_RESIZE_NEAREST_COUNT : 1); nm++)
                for (size_t sh = 0; sh < 4; sh++) {
                    mdl_resize_options ro = {{0, 0}, {1, 1}, (mdl_resize_mode)m, (mdl_resize_coord)cd,
                                             (mdl_resize_nearest)nm};
                    for (size_t k = 0; k < sizeof scales / sizeof scales[0]; k++) {
                        ro.out[0] = ro.out[1] = 0;
                        ro.scale[0] = scales[k][0];
                        ro.scale[1] = scales[k][1];
                        if (floor(shapes[sh][1] * (double)ro.scale[0]) < 1 ||
                            floor(shapes[sh][2] * (double)ro.scale[1]) < 1)
                            continue;
                        check_resize(shapes[sh], &ro);
                    }
                    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
                        ro.out[0] = sizes[k][0];
                        ro.out[1] = sizes[k][1];
                        ro.scale[0] = (float)sizes[k][0] / (float)shapes[sh][1];
                        ro.scale[1] = (float)sizes[k][1] / (float)shapes[sh][2];
                        check_resize(shapes[sh], &ro);
                    }
                }
}

static void test_resize_reject(void **state) {
    (void)state;
    float x[12] = {0};
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){1, 3, 4}, x), out = {0};
    mdl_op_options o = mdl_op_options_default(MDL_OP_RESIZE);
    mdl_error err;
    assert_int_equal(th_run_op(MDL_OP_RESIZE, &o, 1, &in, 1, &out, &err), MDL_SHAPE);
    th_tensor_free(&in);
    in = th_tensor_make(MDL_DTYPE_FLOAT32, 4, (int64_t[]){1, 3, 4, 1}, x);
    o.resize.scale[0] = 0;
    assert_int_equal(th_run_op(MDL_OP_RESIZE, &o, 1, &in, 1, &out, &err), MDL_INVALID_ARGUMENT);
    o.resize.scale[0] = 1;
    o.resize.mode = MDL_RESIZE_MODE_COUNT;
    assert_int_equal(th_run_op(MDL_OP_RESIZE, &o, 1, &in, 1, &out, &err), MDL_INVALID_ARGUMENT);
    th_tensor_free(&in);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_erf),
        cmocka_unit_test(test_layer_norm),
        cmocka_unit_test(test_layer_norm_reject),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_resize_reject),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    (void)argc;
    return failed + th_same_outputs_at_lower_levels(argv[0]);
}
