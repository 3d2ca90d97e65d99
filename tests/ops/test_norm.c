/* BatchNormalization (inference, channels last) against the ONNX formula evaluated in double:
   y = (x - mean) / sqrt(var + epsilon) * scale + bias, channel = last index. */
#include "common/harness.h"

#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void check_bn(int rank, const int64_t *dims, float eps, bool constant_params) {
    int64_t C = dims[rank - 1], n = 1;
    for (int d = 0; d < rank; d++) n *= dims[d];
    float *x = malloc(sizeof(float) * (size_t)(n + 1)), *ref = malloc(sizeof(float) * (size_t)(n + 1));
    float *p[4];
    for (int i = 0; i < 4; i++) p[i] = malloc(sizeof(float) * (size_t)C);
    th_fill_uniform(x, n, -3, 3);
    th_fill_uniform(p[0], C, -2, 2);   /* scale */
    th_fill_uniform(p[1], C, -1, 1);   /* bias */
    th_fill_uniform(p[2], C, -1, 1);   /* mean */
    th_fill_uniform(p[3], C, 0.05f, 3); /* var */
    for (int64_t i = 0; i < n; i++) {
        int64_t c = i % C;
        double v = ((double)x[i] - p[2][c]) / sqrt((double)p[3][c] + eps) * p[0][c] + p[1][c];
        ref[i] = (float)v;
    }
    th_tensor in[5];
    in[0] = th_tensor_make(MDL_DTYPE_FLOAT32, rank, dims, x);
    for (int i = 0; i < 4; i++) {
        in[1 + i] = th_tensor_make(MDL_DTYPE_FLOAT32, 1, &C, p[i]);
        in[1 + i].constant = constant_params;
    }
    mdl_op_options o = mdl_op_options_default(MDL_OP_BATCH_NORM);
    o.batch_norm.epsilon = eps;
    th_tensor out = {0};
    mdl_error err;
    if (th_run_op(MDL_OP_BATCH_NORM, &o, 5, in, 1, &out, &err) != MDL_OK) fail_msg("%s", err.msg);
    assert_int_equal(out.rank, rank);
    for (int d = 0; d < rank; d++) assert_int_equal(out.dims[d], dims[d]);
    th_assert_close(out.data, ref, n, 1e-5);
    /* Constant parameters are model memory: the kernel must not have written them. */
    for (int i = 0; i < 4; i++) assert_memory_equal(in[1 + i].data, p[i], sizeof(float) * (size_t)C);
    for (int i = 0; i < 5; i++) th_tensor_free(&in[i]);
    th_tensor_free(&out);
    free(x);
    free(ref);
    for (int i = 0; i < 4; i++) free(p[i]);
}

static void test_bn_shapes(void **state) {
    (void)state;
    th_seed(51);
    const int64_t cs[] = {1, 2, 3, 5, 8, 16, 31, 33, 64, 100};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        int64_t C = cs[i];
        check_bn(1, (int64_t[]){C}, 1e-5f, true);
        check_bn(2, (int64_t[]){7, C}, 1e-3f, false);
        check_bn(3, (int64_t[]){3, 5, C}, 0.0f, true);
        check_bn(4, (int64_t[]){2, 9, 11, C}, 1e-5f, i % 2 == 0);
        check_bn(4, (int64_t[]){1, 1, 1, C}, 0.1f, false);
    }
}

static void test_bn_random(void **state) {
    (void)state;
    th_seed(52);
    for (int it = 0; it < 100; it++) {
        int64_t dims[MDL_MAX_RANK];
        int rank = (int)th_rand_int(1, 5);
        for (int d = 0; d < rank; d++) dims[d] = th_rand_int(1, 9);
        check_bn(rank, dims, th_uniform(0, 0.01f), it % 2 == 0);
    }
}

static void test_bn_inplace(void **state) {
    (void)state;
    th_seed(53);
    /* Output in the input's buffer. */
    int64_t dims[3] = {4, 5, 3}, C = 3;
    float x[60], buf[60], ref[60], prm[4][3];
    th_fill_uniform(x, 60, -2, 2);
    for (int i = 0; i < 4; i++) th_fill_uniform(prm[i], 3, 0.5f, 1.5f);
    for (int i = 0; i < 60; i++) {
        int c = i % 3;
        ref[i] = (float)(((double)x[i] - prm[2][c]) / sqrt((double)prm[3][c] + 1e-5) * prm[0][c] +
                         prm[1][c]);
    }
    memcpy(buf, x, sizeof buf);
    mdl__tensor t[6];
    memset(t, 0, sizeof t);
    for (int i = 0; i < 6; i++) {
        t[i].dtype = MDL_DTYPE_FLOAT32;
        t[i].rank = i == 0 || i == 5 ? 3 : 1;
        if (t[i].rank == 3) memcpy(t[i].dims, dims, sizeof dims);
        else t[i].dims[0] = C;
        t[i].count = t[i].rank == 3 ? 60 : 3;
        t[i].bytes = (size_t)t[i].count * 4;
    }
    mdl_op_options o = mdl_op_options_default(MDL_OP_BATCH_NORM);
    mdl_error err;
    mdl__kctx c;
    memset(&c, 0, sizeof c);
    c.op = MDL_OP_BATCH_NORM;
    c.name = "test";
    c.opt = &o;
    c.nin = 5;
    c.nout = 1;
    c.err = &err;
    for (int i = 0; i < 5; i++) c.in[i] = &t[i];
    const mdl__kernel *k = mdl__kernel_find(MDL_OP_BATCH_NORM, MDL_DTYPE_FLOAT32);
    assert_int_equal(k->prepare(&c), MDL_OK);
    c.out[0] = &t[5];
    c.in_data[0] = buf;
    for (int i = 0; i < 4; i++) c.in_data[1 + i] = prm[i];
    c.out_data[0] = buf;
    c.scratch = malloc(c.scratch_bytes);
    assert_int_equal(k->run(&c), MDL_OK);
    free(c.scratch);
    th_assert_close(buf, ref, 60, 1e-5);
}

static void expect_reject(int nin, th_tensor *in, float eps, mdl_status want, const char *n1,
                          const char *n2) {
    mdl_op_options o = mdl_op_options_default(MDL_OP_BATCH_NORM);
    o.batch_norm.epsilon = eps;
    th_tensor out = {0};
    mdl_error err;
    memset(&err, 0, sizeof err);
    mdl_status st = th_run_op(MDL_OP_BATCH_NORM, &o, nin, in, 1, &out, &err);
    if (st != want) fail_msg("status %d, want %d (%s)", st, want, err.msg);
    if (want == MDL_OK) {
        th_tensor_free(&out);
        return;
    }
    if (!strstr(err.msg, "BatchNorm 'test'")) fail_msg("message lacks the node: %s", err.msg);
    if (n1 && !strstr(err.msg, n1)) fail_msg("message lacks \"%s\": %s", n1, err.msg);
    if (n2 && !strstr(err.msg, n2)) fail_msg("message lacks \"%s\": %s", n2, err.msg);
}

static void test_bn_reject(void **state) {
    (void)state;
    int64_t xd[3] = {2, 3, 4}, c4 = 4, c5 = 5;
    th_tensor in[5];
    in[0] = th_tensor_make(MDL_DTYPE_FLOAT32, 3, xd, NULL);
    for (int i = 1; i < 5; i++) in[i] = th_tensor_make(MDL_DTYPE_FLOAT32, 1, &c4, NULL);
    expect_reject(5, in, 1e-5f, MDL_OK, NULL, NULL);
    expect_reject(4, in, 1e-5f, MDL_INVALID_ARGUMENT, "expects", NULL);
    expect_reject(5, in, -1.0f, MDL_INVALID_ARGUMENT, "epsilon", NULL);
    expect_reject(5, in, NAN, MDL_INVALID_ARGUMENT, "epsilon", NULL);
    const char *names[4] = {"scale", "bias", "mean", "var"};
    for (int i = 1; i < 5; i++) {
        th_tensor keep = in[i];
        in[i] = th_tensor_make(MDL_DTYPE_FLOAT32, 1, &c5, NULL);
        expect_reject(5, in, 1e-5f, MDL_SHAPE, names[i - 1], "[5]");
        th_tensor_free(&in[i]);
        in[i] = th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, 4}, NULL);
        expect_reject(5, in, 1e-5f, MDL_SHAPE, names[i - 1], "[1,4]");
        th_tensor_free(&in[i]);
        in[i] = th_tensor_make(MDL_DTYPE_INT8, 1, &c4, NULL);
        expect_reject(5, in, 1e-5f, MDL_DTYPE, names[i - 1], "int8");
        th_tensor_free(&in[i]);
        in[i] = th_tensor_absent();
        expect_reject(5, in, 1e-5f, MDL_INVALID_ARGUMENT, names[i - 1], "missing");
        in[i] = keep;
    }
    th_tensor scalar = th_tensor_make(MDL_DTYPE_FLOAT32, 0, NULL, NULL);
    th_tensor keep0 = in[0];
    in[0] = scalar;
    expect_reject(5, in, 1e-5f, MDL_SHAPE, "scalar", NULL);
    in[0] = keep0;
    th_tensor_free(&scalar);
    for (int i = 0; i < 5; i++) th_tensor_free(&in[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_shapes),
        cmocka_unit_test(test_bn_random),
        cmocka_unit_test(test_bn_inplace),
        cmocka_unit_test(test_bn_reject),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
