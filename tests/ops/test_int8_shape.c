/* Shape operators on quantized tensors: RESHAPE, TRANSPOSE, SLICE, PAD, GATHER and CONCAT keep
   the values' meaning only when the output carries the input's quantization parameters, so an
   output with other parameters (or none, or undeclared) is refused naming both tensors, and
   per-axis parameters pass only along an axis the operator keeps.  PAD's value is real and is
   quantized with the input's parameters.  CONCAT on int8 requantizes inputs with other
   parameters to the output's (onnxruntime QLinearConcat): checked against the double oracle. */
#include "q8_oracle.h"

#include <stdlib.h>

static th_tensor decl(mdl_dtype dt, int rank, const int64_t *dims, int nq, const float *s,
                      const int64_t *z, int axis) {
    th_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.rank = rank;
    for (int i = 0; i < rank; i++)
        t.dims[i] = dims[i];
    t.declared = true;
    th_tensor_quant(&t, nq, s, z, axis);
    return t;
}

static th_tensor qin(mdl_dtype dt, int rank, const int64_t *dims, int nq, const float *s,
                     const int64_t *z, int axis) {
    int64_t n = th_count(rank, dims);
    void *d = th_rand_data(dt, n);
    th_tensor t = th_tensor_make(dt, rank, dims, d);
    free(d);
    th_tensor_quant(&t, nq, s, z, axis);
    return t;
}

static mdl_status run1(mdl_op op, const mdl_op_options *o, th_tensor *in, int nin, th_tensor *out,
                       mdl_error *err) {
    memset(err, 0, sizeof *err);
    return th_run_op(op, o, nin, in, 1, out, err);
}

/* Refused with a message naming both operands (the harness names inputs "in"; a declared output
   has no name yet when prepare runs, so only the "output '...'" mention is checked). */
static void expect_refused(mdl_status st, const mdl_error *err) {
    if (st != MDL_UNSUPPORTED) fail_msg("status %d (want unsupported): %s", (int)st, err->msg);
    if (!strstr(err->msg, "'in'") || !strstr(err->msg, "output '"))
        fail_msg("message \"%s\" does not name both tensors", err->msg);
}

static void test_reshape_quant(void **state) {
    (void)state;
    float s = 0.05f, s2 = 0.06f, sc[3] = {0.1f, 0.2f, 0.3f};
    int64_t z = 3, z2 = 4, zc[3] = {0, 1, 2};
    int64_t xd[3] = {2, 3, 4}, yd[2] = {6, 4}, y2[3] = {2, 3, 4}, y3[2] = {2, 12};
    mdl_error err;
    th_tensor in = qin(MDL_DTYPE_INT8, 3, xd, 1, &s, &z, 0);
    th_tensor out = decl(MDL_DTYPE_INT8, 2, yd, 1, &s, &z, 0);
    assert_int_equal(run1(MDL_OP_RESHAPE, NULL, &in, 1, &out, &err), MDL_OK);
    assert_memory_equal(out.data, in.data, 24);
    th_tensor_free(&out);
    out = decl(MDL_DTYPE_INT8, 2, yd, 1, &s2, &z, 0);
    expect_refused(run1(MDL_OP_RESHAPE, NULL, &in, 1, &out, &err), &err);
    out = decl(MDL_DTYPE_INT8, 2, yd, 1, &s, &z2, 0);
    expect_refused(run1(MDL_OP_RESHAPE, NULL, &in, 1, &out, &err), &err);
    out = decl(MDL_DTYPE_INT8, 2, yd, 0, NULL, NULL, 0); /* parameters dropped */
    expect_refused(run1(MDL_OP_RESHAPE, NULL, &in, 1, &out, &err), &err);
    th_tensor_free(&in);
    /* parameters appearing on a plain int8 tensor are refused too */
    in = qin(MDL_DTYPE_INT8, 3, xd, 0, NULL, NULL, 0);
    out = decl(MDL_DTYPE_INT8, 2, yd, 1, &s, &z, 0);
    expect_refused(run1(MDL_OP_RESHAPE, NULL, &in, 1, &out, &err), &err);
    th_tensor_free(&in);
    /* per axis: axis 1 (3 channels) survives [2,3,4] -> [2,3,4] (axis 1 or -2), not [6,4] */
    in = qin(MDL_DTYPE_INT8, 3, xd, 3, sc, zc, 1);
    out = decl(MDL_DTYPE_INT8, 3, y2, 3, sc, zc, -2);
    assert_int_equal(run1(MDL_OP_RESHAPE, NULL, &in, 1, &out, &err), MDL_OK);
    th_tensor_free(&out);
    out = decl(MDL_DTYPE_INT8, 3, y2, 3, sc, zc, 2);
    th_tensor_quant(&out, 3, sc, zc, 0); /* axis 0 has 2 entries: corrupt */
    assert_int_equal(run1(MDL_OP_RESHAPE, NULL, &in, 1, &out, &err), MDL_CORRUPT_MODEL);
    int64_t y4[3] = {3, 2, 4};
    out = decl(MDL_DTYPE_INT8, 3, y4, 3, sc, zc, 0); /* 3 along axis 0, but other data */
    expect_refused(run1(MDL_OP_RESHAPE, NULL, &in, 1, &out, &err), &err);
    out = decl(MDL_DTYPE_INT8, 2, y3, 0, NULL, NULL, 0);
    expect_refused(run1(MDL_OP_RESHAPE, NULL, &in, 1, &out, &err), &err);
    th_tensor_free(&in);
    /* float reshape unchanged */
    in = qin(MDL_DTYPE_FLOAT32, 3, xd, 0, NULL, NULL, 0);
    out = decl(MDL_DTYPE_FLOAT32, 2, yd, 0, NULL, NULL, 0);
    assert_int_equal(run1(MDL_OP_RESHAPE, NULL, &in, 1, &out, &err), MDL_OK);
    th_tensor_free(&out);
    th_tensor_free(&in);
}

static void test_transpose_quant(void **state) {
    (void)state;
    float s = 0.05f, s2 = 0.06f, sc[3] = {0.1f, 0.2f, 0.3f};
    int64_t z = -128, zc[3] = {0, 1, 2};
    int64_t xd[3] = {2, 3, 5}, yd[3] = {5, 2, 3};
    mdl_op_options o = mdl_op_options_default(MDL_OP_TRANSPOSE);
    o.transpose.perm[0] = 2;
    o.transpose.perm[1] = 0;
    o.transpose.perm[2] = 1;
    mdl_error err;
    th_tensor in = qin(MDL_DTYPE_INT8, 3, xd, 1, &s, &z, 0);
    th_tensor out = decl(MDL_DTYPE_INT8, 3, yd, 1, &s, &z, 0);
    assert_int_equal(run1(MDL_OP_TRANSPOSE, &o, &in, 1, &out, &err), MDL_OK);
    for (int64_t i = 0; i < 2; i++)
        for (int64_t j = 0; j < 3; j++)
            for (int64_t k = 0; k < 5; k++)
                assert_int_equal(((int8_t *)out.data)[(k * 2 + i) * 3 + j],
                                 ((int8_t *)in.data)[(i * 3 + j) * 5 + k]);
    th_tensor_free(&out);
    out = decl(MDL_DTYPE_INT8, 3, yd, 1, &s2, &z, 0);
    expect_refused(run1(MDL_OP_TRANSPOSE, &o, &in, 1, &out, &err), &err);
    memset(&out, 0, sizeof out); /* undeclared: parameters could not follow */
    assert_int_equal(run1(MDL_OP_TRANSPOSE, &o, &in, 1, &out, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "'in'"));
    th_tensor_free(&in);
    /* per axis: input axis 1 (3) becomes output axis 2 */
    in = qin(MDL_DTYPE_INT8, 3, xd, 3, sc, zc, 1);
    out = decl(MDL_DTYPE_INT8, 3, yd, 3, sc, zc, 2);
    assert_int_equal(run1(MDL_OP_TRANSPOSE, &o, &in, 1, &out, &err), MDL_OK);
    th_tensor_free(&out);
    int64_t yd2[3] = {3, 2, 5}; /* declared with the channels first: wrong axis for this perm */
    out = decl(MDL_DTYPE_INT8, 3, yd2, 3, sc, zc, 0);
    expect_refused(run1(MDL_OP_TRANSPOSE, &o, &in, 1, &out, &err), &err);
    th_tensor_free(&in);
}

static void test_slice_quant(void **state) {
    (void)state;
    float s = 0.05f, sc[3] = {0.1f, 0.2f, 0.3f};
    int64_t z = 7, z2 = 8, zc[3] = {0, 1, 2};
    int64_t xd[2] = {4, 3}, yd[2] = {2, 3}, yd2[2] = {4, 2};
    mdl_op_options o = mdl_op_options_default(MDL_OP_SLICE);
    o.slice.begin[0] = 1;
    o.slice.step[0] = 2;
    o.slice.begin[1] = 0;
    o.slice.step[1] = 1;
    mdl_error err;
    th_tensor in = qin(MDL_DTYPE_INT8, 2, xd, 1, &s, &z, 0);
    th_tensor out = decl(MDL_DTYPE_INT8, 2, yd, 1, &s, &z, 0);
    assert_int_equal(run1(MDL_OP_SLICE, &o, &in, 1, &out, &err), MDL_OK);
    assert_memory_equal(out.data, (int8_t *)in.data + 3, 3);
    th_tensor_free(&out);
    out = decl(MDL_DTYPE_INT8, 2, yd, 1, &s, &z2, 0);
    expect_refused(run1(MDL_OP_SLICE, &o, &in, 1, &out, &err), &err);
    th_tensor_free(&in);
    /* per axis 1: rows sliced (axis kept whole): fine; cutting the channels: refused */
    in = qin(MDL_DTYPE_INT8, 2, xd, 3, sc, zc, 1);
    out = decl(MDL_DTYPE_INT8, 2, yd, 3, sc, zc, 1);
    assert_int_equal(run1(MDL_OP_SLICE, &o, &in, 1, &out, &err), MDL_OK);
    th_tensor_free(&out);
    o.slice.begin[0] = 0;
    o.slice.step[0] = 1;
    o.slice.begin[1] = 1;
    out = decl(MDL_DTYPE_INT8, 2, yd2, 0, NULL, NULL, 0);
    expect_refused(run1(MDL_OP_SLICE, &o, &in, 1, &out, &err), &err);
    th_tensor_free(&in);
}

static void test_pad_quant(void **state) {
    (void)state;
    float s = 0.5f, s2 = 0.25f;
    int64_t z = -5, zu = 130, z32 = 1000;
    int64_t xd[2] = {2, 3}, yd[2] = {4, 4};
    mdl_op_options o = mdl_op_options_default(MDL_OP_PAD);
    o.pad.pads[0] = 1; /* before dim 0 */
    o.pad.pads[3] = 1; /* after dim 1 */
    o.pad.pads[2] = 1; /* after dim 0 */
    const float values[] = {0.0f, 1.25f, 1.75f, -100.0f, 1000.0f, NAN};
    const mdl_dtype dts[] = {MDL_DTYPE_INT8, MDL_DTYPE_UINT8, MDL_DTYPE_INT32};
    const int64_t *zps[] = {&z, &zu, &z32};
    mdl_error err;
    for (int d = 0; d < 3; d++)
        for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
            o.pad.value = values[v];
            th_tensor in = qin(dts[d], 2, xd, 1, &s, zps[d], 0);
            th_tensor out = decl(dts[d], 2, yd, 1, &s, zps[d], 0);
            assert_int_equal(run1(MDL_OP_PAD, &o, &in, 1, &out, &err), MDL_OK);
            int32_t qmin = d == 0 ? -128 : d == 1 ? 0 : INT32_MIN;
            int32_t qmax = d == 0 ? 127 : d == 1 ? 255 : INT32_MAX;
            int64_t want = q8_quantize(values[v], s, (int32_t)*zps[d], qmin, qmax);
            for (int64_t i = 0; i < 4; i++)
                for (int64_t j = 0; j < 4; j++) {
                    bool inside = i >= 1 && i <= 2 && j <= 2;
                    int64_t got, ref;
                    int64_t k = i * 4 + j, ki = (i - 1) * 3 + j;
                    switch (dts[d]) {
                    case MDL_DTYPE_INT8:
                        got = ((int8_t *)out.data)[k];
                        ref = inside ? ((int8_t *)in.data)[ki] : want;
                        break;
                    case MDL_DTYPE_UINT8:
                        got = ((uint8_t *)out.data)[k];
                        ref = inside ? ((uint8_t *)in.data)[ki] : want;
                        break;
                    default:
                        got = ((int32_t *)out.data)[k];
                        ref = inside ? ((int32_t *)in.data)[ki] : want;
                        break;
                    }
                    if (got != ref)
                        fail_msg("%s pad %g at (%lld,%lld): got %lld, want %lld",
                                 mdl_dtype_name(dts[d]), (double)values[v], (long long)i,
                                 (long long)j, (long long)got, (long long)ref);
                }
            th_tensor_free(&out);
            out = decl(dts[d], 2, yd, 1, &s2, zps[d], 0);
            expect_refused(run1(MDL_OP_PAD, &o, &in, 1, &out, &err), &err);
            th_tensor_free(&in);
        }
    /* per axis refused */
    float sc[3] = {0.1f, 0.2f, 0.3f};
    int64_t zc[3] = {0, 0, 0};
    mdl_op_options o1 = mdl_op_options_default(MDL_OP_PAD); /* rows only: channels kept */
    o1.pad.pads[0] = 1;
    int64_t yd1[2] = {3, 3};
    th_tensor in = qin(MDL_DTYPE_INT8, 2, xd, 3, sc, zc, 1);
    th_tensor out = decl(MDL_DTYPE_INT8, 2, yd1, 3, sc, zc, 1);
    expect_refused(run1(MDL_OP_PAD, &o1, &in, 1, &out, &err), &err);
    th_tensor_free(&in);
    /* unquantized int8 keeps the integer value rule */
    o.pad.value = 3.6f;
    in = qin(MDL_DTYPE_INT8, 2, xd, 0, NULL, NULL, 0);
    memset(&out, 0, sizeof out);
    assert_int_equal(run1(MDL_OP_PAD, &o, &in, 1, &out, &err), MDL_OK);
    assert_int_equal(((int8_t *)out.data)[0], 4);
    th_tensor_free(&out);
    th_tensor_free(&in);
}

static void test_gather_quant(void **state) {
    (void)state;
    float s = 0.05f, s2 = 0.07f, sc[3] = {0.1f, 0.2f, 0.3f};
    int64_t z = 1, zc[3] = {0, 1, 2};
    int64_t xd[2] = {4, 3}, idd[1] = {2}, yd[2] = {2, 3}, ids[2] = {3, 0};
    mdl_op_options o = mdl_op_options_default(MDL_OP_GATHER);
    o.axis.axis = 0;
    mdl_error err;
    th_tensor in[2] = {qin(MDL_DTYPE_INT8, 2, xd, 1, &s, &z, 0),
                       th_tensor_make(MDL_DTYPE_INT64, 1, idd, ids)};
    th_tensor out = decl(MDL_DTYPE_INT8, 2, yd, 1, &s, &z, 0);
    assert_int_equal(run1(MDL_OP_GATHER, &o, in, 2, &out, &err), MDL_OK);
    assert_memory_equal(out.data, (int8_t *)in[0].data + 9, 3);
    th_tensor_free(&out);
    out = decl(MDL_DTYPE_INT8, 2, yd, 1, &s2, &z, 0);
    expect_refused(run1(MDL_OP_GATHER, &o, in, 2, &out, &err), &err);
    th_tensor_free(&in[0]);
    /* per axis 1 survives a gather on axis 0 (output axis 1); gathering the channels: refused */
    in[0] = qin(MDL_DTYPE_INT8, 2, xd, 3, sc, zc, 1);
    out = decl(MDL_DTYPE_INT8, 2, yd, 3, sc, zc, 1);
    assert_int_equal(run1(MDL_OP_GATHER, &o, in, 2, &out, &err), MDL_OK);
    th_tensor_free(&out);
    o.axis.axis = 1;
    int64_t yd2[2] = {4, 2};
    out = decl(MDL_DTYPE_INT8, 2, yd2, 0, NULL, NULL, 0);
    expect_refused(run1(MDL_OP_GATHER, &o, in, 2, &out, &err), &err);
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
}

/* Requantizing concat of n inputs along axis against the double oracle. */
static q8_stats cat_stats;

static void check_concat(int nin, int rank, const int64_t *base, int axis, bool same) {
    th_tensor in[8];
    float sc[9];
    int64_t zp[9], od[MDL_MAX_RANK];
    memcpy(od, base, sizeof(int64_t) * (size_t)rank);
    od[axis] = 0;
    sc[8] = q8_rand_scale(-3, 0);
    zp[8] = q8_rand_zp();
    for (int i = 0; i < nin; i++) {
        int64_t d[MDL_MAX_RANK];
        memcpy(d, base, sizeof d);
        d[axis] = th_rand_int(0, 4);
        od[axis] += d[axis];
        bool eq = same || th_rand_int(0, 3) == 0;
        sc[i] = eq ? sc[8] : sc[8] * q8_rand_scale(-2, 2);
        zp[i] = eq ? zp[8] : q8_rand_zp();
        in[i] = qin(MDL_DTYPE_INT8, rank, d, 1, &sc[i], &zp[i], 0);
    }
    th_tensor out = decl(MDL_DTYPE_INT8, rank, od, 1, &sc[8], &zp[8], 0);
    mdl_op_options o = mdl_op_options_default(MDL_OP_CONCAT);
    o.axis.axis = axis;
    mdl_error err;
    mdl_status st = run1(MDL_OP_CONCAT, &o, in, nin, &out, &err);
    if (st) fail_msg("status %d: %s", (int)st, err.msg);
    for (int d = 0; d < rank; d++)
        assert_int_equal(out.dims[d], od[d]);
    int64_t n = th_count(rank, od), idx[MDL_MAX_RANK];
    for (int64_t j = 0; j < n; j++) {
        th_unravel(j, rank, od, idx);
        int i = 0;
        while (idx[axis] >= in[i].dims[axis])
            idx[axis] -= in[i++].dims[axis];
        int32_t q = ((int8_t *)in[i].data)[th_ravel(idx, rank, in[i].dims)];
        double r = q8_real(q, sc[i], (int32_t)zp[i]);
        int32_t want = q8_quantize8(r, sc[8], (int32_t)zp[8]), got = ((int8_t *)out.data)[j];
        if (same) assert_int_equal(got, q);
        q8_check(&cat_stats, got, want, r / sc[8], "concat input %d scale %g zp %lld -> %g %lld", i,
                 (double)sc[i], (long long)zp[i], (double)sc[8], (long long)zp[8]);
    }
    for (int i = 0; i < nin; i++)
        th_tensor_free(&in[i]);
    th_tensor_free(&out);
}

static void test_concat_quant(void **state) {
    (void)state;
    th_seed(501);
    for (int it = 0; it < 200; it++) {
        static const int64_t sizes[] = {1, 2, 3, 7};
        int rank = (int)th_rand_int(1, 4);
        int64_t base[MDL_MAX_RANK];
        for (int d = 0; d < rank; d++)
            base[d] = sizes[th_rand_int(0, 3)];
        check_concat((int)th_rand_int(1, 5), rank, base, (int)th_rand_int(0, rank - 1),
                     it % 4 == 0);
    }
    q8_report(&cat_stats, "concat (requantizing)", 0.99);

    /* plain int8 without parameters still concatenates; uint8 refuses requantization; a
       per-tensor output with an input lacking parameters is refused; per-axis all equal on
       another axis is a plain copy */
    float s = 0.1f, s2 = 0.2f, sc[2] = {0.1f, 0.2f};
    int64_t z = 0, zc[2] = {0, 0};
    int64_t d[2] = {2, 3}, od[2] = {4, 3};
    mdl_op_options o = mdl_op_options_default(MDL_OP_CONCAT);
    o.axis.axis = 0;
    mdl_error err;
    th_tensor in[2] = {qin(MDL_DTYPE_INT8, 2, d, 0, NULL, NULL, 0),
                       qin(MDL_DTYPE_INT8, 2, d, 0, NULL, NULL, 0)};
    th_tensor out;
    memset(&out, 0, sizeof out);
    assert_int_equal(run1(MDL_OP_CONCAT, &o, in, 2, &out, &err), MDL_OK);
    assert_memory_equal(out.data, in[0].data, 6);
    assert_memory_equal((int8_t *)out.data + 6, in[1].data, 6);
    th_tensor_free(&out);
    out = decl(MDL_DTYPE_INT8, 2, od, 1, &s, &z, 0);
    th_tensor_quant(&in[1], 1, &s, &z, 0);
    q8_assert_status(run1(MDL_OP_CONCAT, &o, in, 2, &out, &err), MDL_UNSUPPORTED, err,
                     "input 0 'in'");
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
    in[0] = qin(MDL_DTYPE_UINT8, 2, d, 1, &s, &z, 0);
    in[1] = qin(MDL_DTYPE_UINT8, 2, d, 1, &s2, &z, 0);
    out = decl(MDL_DTYPE_UINT8, 2, od, 1, &s, &z, 0);
    expect_refused(run1(MDL_OP_CONCAT, &o, in, 2, &out, &err), &err);
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
    int64_t d2[2] = {3, 2}, od2[2] = {6, 2};
    in[0] = qin(MDL_DTYPE_INT8, 2, d2, 2, sc, zc, 1);
    in[1] = qin(MDL_DTYPE_INT8, 2, d2, 2, sc, zc, 1);
    out = decl(MDL_DTYPE_INT8, 2, od2, 2, sc, zc, 1);
    assert_int_equal(run1(MDL_OP_CONCAT, &o, in, 2, &out, &err), MDL_OK);
    assert_memory_equal((int8_t *)out.data + 6, in[1].data, 6);
    th_tensor_free(&out);
    /* per axis along the concat axis: refused */
    o.axis.axis = 1;
    int64_t od3[2] = {3, 4};
    out = decl(MDL_DTYPE_INT8, 2, od3, 0, NULL, NULL, 0);
    assert_int_equal(run1(MDL_OP_CONCAT, &o, in, 2, &out, &err), MDL_UNSUPPORTED);
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reshape_quant), cmocka_unit_test(test_transpose_quant),
        cmocka_unit_test(test_slice_quant),   cmocka_unit_test(test_pad_quant),
        cmocka_unit_test(test_gather_quant),  cmocka_unit_test(test_concat_quant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
