/* QUANTIZE and DEQUANTIZE against the ONNX QuantizeLinear / DequantizeLinear definitions in
   double precision (tests/ops/q8_oracle.h), per tensor and per axis, int8 and uint8 (and int32
   for DEQUANTIZE).  Both must agree exactly:
     - QUANTIZE: ONNX divides in float32 (x / y_scale on float tensors), so the oracle takes the
       float quotient and rounds half to even / saturates in double; a second oracle dividing in
       double is reported too (it may differ only on the rare quotients that float rounding
       moves across a rounding boundary: counted, at most one step).
     - DEQUANTIZE: (q - zp) * scale in double, rounded once to float. */
#include "q8_oracle.h"

#include <stdlib.h>

static void rand_shape(int *rank, int64_t *dims) {
    *rank = (int)th_rand_int(0, 4);
    static const int64_t sizes[] = {1, 3, 7, 17, 2, 5};
    for (int i = 0; i < *rank; i++)
        dims[i] = sizes[th_rand_int(0, 5)];
}

/* Random floats around the representable range of (s, zp) plus special values. */
static void fill_x(float *x, int64_t n, float s, bool ties) {
    for (int64_t i = 0; i < n; i++) {
        int64_t k = th_rand_int(0, 99);
        if (k < 2)
            x[i] = k == 0 ? NAN : (th_rand_int(0, 1) ? INFINITY : -INFINITY);
        else if (k < 4)
            x[i] = th_uniform(-1e30f, 1e30f);
        else if (ties || k < 20)
            x[i] = ((float)th_rand_int(-400, 400) + 0.5f) * s; /* ties */
        else
            x[i] = th_uniform(-300.0f, 300.0f) * s;
    }
}

/* Axis layout [outer, n, inner] of a per-axis tensor. */
static void axis_split(int rank, const int64_t *dims, int axis, int64_t *outer, int64_t *n,
                       int64_t *inner) {
    *outer = *inner = 1;
    *n = 1;
    for (int d = 0; d < rank; d++) {
        if (d < axis)
            *outer *= dims[d];
        else if (d == axis)
            *n = dims[d];
        else
            *inner *= dims[d];
    }
}

static int64_t n_double_diff; /* elements where dividing in double would round differently */

static void check_quantize(mdl_dtype dt, int rank, const int64_t *dims, int nq, int axis,
                           bool ties) {
    int64_t count = th_count(rank, dims);
    float scale[32];
    int64_t zp[32];
    int32_t qmin = dt == MDL_DTYPE_INT8 ? -128 : 0, qmax = dt == MDL_DTYPE_INT8 ? 127 : 255;
    for (int k = 0; k < nq; k++) {
        /* powers of two make x = (k + 0.5) * s an exact tie */
        scale[k] = ties ? ldexpf(1.0f, (int)th_rand_int(-12, 4)) : q8_rand_scale(-5, 2);
        int64_t z = q8_rand_zp();
        zp[k] = dt == MDL_DTYPE_INT8 ? z : z + 128;
    }
    float *x = malloc(sizeof(float) * (size_t)(count ? count : 1));
    fill_x(x, count, scale[0], ties);
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, rank, dims, x);
    th_tensor out;
    memset(&out, 0, sizeof out);
    out.dtype = dt;
    out.rank = rank;
    memcpy(out.dims, dims, sizeof(int64_t) * (size_t)rank);
    out.declared = true;
    th_tensor_quant(&out, nq, scale, zp, nq > 1 ? axis - (int)(axis % 2 ? rank : 0) : 0);
    mdl_error err = {0};
    mdl_status st = th_run_op(MDL_OP_QUANTIZE, NULL, 1, &in, 1, &out, &err);
    if (st) fail_msg("status %d: %s", (int)st, err.msg);
    assert_int_equal(out.dtype, dt);
    int64_t outer, n, inner;
    if (nq > 1)
        axis_split(rank, dims, axis, &outer, &n, &inner);
    else
        outer = 1, n = 1, inner = count;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < n; k++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t j = (o * n + k) * inner + i;
                float s = scale[nq > 1 ? k : 0];
                int32_t z = (int32_t)zp[nq > 1 ? k : 0];
                int32_t got =
                    dt == MDL_DTYPE_INT8 ? ((int8_t *)out.data)[j] : ((uint8_t *)out.data)[j];
                float fq = x[j] / s; /* ONNX: float32 division */
                int32_t want = isnan(x[j]) ? z : q8_quantize((double)fq, 1.0, z, qmin, qmax);
                if (got != want)
                    fail_msg("x %.9g scale %.9g zp %d: got %d, oracle %d", (double)x[j], (double)s,
                             (int)z, (int)got, (int)want);
                int32_t wd = q8_quantize((double)x[j], (double)s, z, qmin, qmax);
                if (wd != want) {
                    assert_true(abs(wd - want) <= 1);
                    n_double_diff++;
                }
            }
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
}

static void test_quantize_random(void **state) {
    (void)state;
    th_seed(101);
    n_double_diff = 0;
    for (int it = 0; it < 300; it++) {
        int rank;
        int64_t dims[MDL_MAX_RANK];
        rand_shape(&rank, dims);
        mdl_dtype dt = th_rand_int(0, 1) ? MDL_DTYPE_INT8 : MDL_DTYPE_UINT8;
        check_quantize(dt, rank, dims, 1, 0, it % 5 == 0);
        if (rank > 0) {
            int axis = (int)th_rand_int(0, rank - 1);
            if (dims[axis] <= 32)
                check_quantize(dt, rank, dims, (int)dims[axis], axis, it % 7 == 0);
        }
    }
    print_message("quantize: %lld element(s) where a double division would round differently\n",
                  (long long)n_double_diff);
}

static void check_dequantize(mdl_dtype dt, int rank, const int64_t *dims, int nq, int axis) {
    int64_t count = th_count(rank, dims);
    float scale[32];
    int64_t zp[32];
    for (int k = 0; k < nq; k++) {
        scale[k] = q8_rand_scale(-6, 3);
        int64_t z = q8_rand_zp();
        zp[k] = dt == MDL_DTYPE_UINT8 ? z + 128 : dt == MDL_DTYPE_INT32 ? z * 1000003 : z;
    }
    void *q = th_rand_data(dt, count);
    th_tensor in = th_tensor_make(dt, rank, dims, q);
    th_tensor_quant(&in, nq, scale, zp, nq > 1 ? axis : 0);
    th_tensor out;
    memset(&out, 0, sizeof out);
    mdl_error err = {0};
    mdl_status st = th_run_op(MDL_OP_DEQUANTIZE, NULL, 1, &in, 1, &out, &err);
    if (st) fail_msg("status %d: %s", (int)st, err.msg);
    assert_int_equal(out.dtype, MDL_DTYPE_FLOAT32);
    assert_int_equal(out.rank, rank);
    int64_t outer, n, inner;
    if (nq > 1)
        axis_split(rank, dims, axis, &outer, &n, &inner);
    else
        outer = 1, n = 1, inner = count;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < n; k++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t j = (o * n + k) * inner + i;
                int64_t v = dt == MDL_DTYPE_INT8    ? ((int8_t *)q)[j]
                            : dt == MDL_DTYPE_UINT8 ? ((uint8_t *)q)[j]
                                                    : ((int32_t *)q)[j];
                int64_t z = zp[nq > 1 ? k : 0];
                float want = (float)((double)(v - z) * (double)scale[nq > 1 ? k : 0]);
                float got = ((float *)out.data)[j];
                if (memcmp(&got, &want, sizeof got))
                    fail_msg("q %lld zp %lld: got %.9g, oracle %.9g", (long long)v, (long long)z,
                             (double)got, (double)want);
            }
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(q);
}

static void test_dequantize_random(void **state) {
    (void)state;
    th_seed(102);
    const mdl_dtype dts[] = {MDL_DTYPE_INT8, MDL_DTYPE_UINT8, MDL_DTYPE_INT32};
    for (int it = 0; it < 300; it++) {
        int rank;
        int64_t dims[MDL_MAX_RANK];
        rand_shape(&rank, dims);
        mdl_dtype dt = dts[it % 3];
        check_dequantize(dt, rank, dims, 1, 0);
        if (rank > 0) {
            int axis = (int)th_rand_int(0, rank - 1);
            if (dims[axis] <= 32) check_dequantize(dt, rank, dims, (int)dims[axis], axis);
        }
    }
}

/* Round trip: dequantize(quantize(x)) is within half a step of x inside the range. */
static void test_round_trip(void **state) {
    (void)state;
    th_seed(103);
    float s = 0.05f;
    int64_t z = -3;
    int64_t dims[1] = {1000};
    float x[1000];
    th_fill_uniform(x, 1000, -6.0f, 6.0f);
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 1, dims, x);
    th_tensor q;
    memset(&q, 0, sizeof q);
    q.dtype = MDL_DTYPE_INT8;
    q.rank = 1;
    q.dims[0] = 1000;
    th_tensor_quant(&q, 1, &s, &z, 0);
    mdl_error err = {0};
    assert_int_equal(th_run_op(MDL_OP_QUANTIZE, NULL, 1, &in, 1, &q, &err), MDL_OK);
    th_tensor y;
    memset(&y, 0, sizeof y);
    assert_int_equal(th_run_op(MDL_OP_DEQUANTIZE, NULL, 1, &q, 1, &y, &err), MDL_OK);
    for (int i = 0; i < 1000; i++)
        assert_true(fabsf(((float *)y.data)[i] - x[i]) <= 0.5f * s + 1e-6f);
    th_tensor_free(&in);
    th_tensor_free(&q);
    th_tensor_free(&y);
}

static void test_rejects(void **state) {
    (void)state;
    float s = 0.1f, s2[3] = {0.1f, 0.2f, 0.3f}, bad = 0.0f;
    int64_t z = 0, z2[3] = {0, 1, 2}, zbig = 300;
    int64_t dims[2] = {2, 3};
    float x[6] = {0};
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 2, dims, x);
    mdl_error err = {0};
    th_tensor out;
    /* no output parameters */
    memset(&out, 0, sizeof out);
    q8_assert_status(th_run_op(MDL_OP_QUANTIZE, NULL, 1, &in, 1, &out, &err), MDL_INVALID_ARGUMENT,
                     err, "quantization parameters");
    /* float output */
    out = q8_declared(2, dims, &s, &z);
    out.dtype = MDL_DTYPE_FLOAT32;
    q8_assert_status(th_run_op(MDL_OP_QUANTIZE, NULL, 1, &in, 1, &out, &err), MDL_DTYPE, err,
                     "int8 or uint8");
    /* wrong declared shape */
    out = q8_declared(1, dims, &s, &z);
    q8_assert_status(th_run_op(MDL_OP_QUANTIZE, NULL, 1, &in, 1, &out, &err), MDL_SHAPE, err,
                     "shape");
    /* bad parameters */
    out = q8_declared(2, dims, &bad, &z);
    q8_assert_status(th_run_op(MDL_OP_QUANTIZE, NULL, 1, &in, 1, &out, &err), MDL_CORRUPT_MODEL,
                     err, "scale");
    out = q8_declared(2, dims, &s, &zbig);
    q8_assert_status(th_run_op(MDL_OP_QUANTIZE, NULL, 1, &in, 1, &out, &err), MDL_CORRUPT_MODEL,
                     err, "zero point");
    out = q8_declared(2, dims, s2, z2);
    th_tensor_quant(&out, 3, s2, z2, 0); /* 3 scales on an axis of 2 */
    q8_assert_status(th_run_op(MDL_OP_QUANTIZE, NULL, 1, &in, 1, &out, &err), MDL_CORRUPT_MODEL,
                     err, "per-channel");
    th_tensor_free(&in);

    /* DEQUANTIZE: no parameters, float input, non-float output */
    int8_t q[6] = {0};
    in = th_tensor_make(MDL_DTYPE_INT8, 2, dims, q);
    memset(&out, 0, sizeof out);
    q8_assert_status(th_run_op(MDL_OP_DEQUANTIZE, NULL, 1, &in, 1, &out, &err),
                     MDL_INVALID_ARGUMENT, err, "no quantization parameters");
    th_tensor_quant(&in, 1, &s, &z, 0);
    out = q8_declared(2, dims, &s, &z);
    q8_assert_status(th_run_op(MDL_OP_DEQUANTIZE, NULL, 1, &in, 1, &out, &err), MDL_DTYPE, err,
                     "float32");
    th_tensor_free(&in);
    in = th_tensor_make(MDL_DTYPE_FLOAT32, 2, dims, x);
    memset(&out, 0, sizeof out);
    assert_int_equal(th_run_op(MDL_OP_DEQUANTIZE, NULL, 1, &in, 1, &out, &err), MDL_UNSUPPORTED);
    th_tensor_free(&in);
    in = th_tensor_make(MDL_DTYPE_INT8, 2, dims, q);
    memset(&out, 0, sizeof out);
    assert_int_equal(th_run_op(MDL_OP_QUANTIZE, NULL, 1, &in, 1, &out, &err), MDL_UNSUPPORTED);
    th_tensor_free(&in);
}

int main(int argc, char **argv) {
    (void)argc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_random),
        cmocka_unit_test(test_dequantize_random),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_rejects),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + th_same_outputs_at_lower_levels(argv[0]);
}
