/* FullyConnected and MatMul against naive loops written from the ONNX Gemm/MatMul definitions. */
#include "common/harness.h"

#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void ref_fc(int64_t M, int64_t N, int64_t K, const float *x, const float *w,
                   const float *b, float lo, float hi, float *y) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = b ? b[n] : 0.0;
            for (int64_t k = 0; k < K; k++) s += (double)x[m * K + k] * w[n * K + k];
            y[m * N + n] = fminf(fmaxf((float)s, lo), hi);
        }
}

static void check_fc(int64_t M, int64_t N, int64_t K, bool bias, mdl_activation act) {
    float *x = malloc(sizeof(float) * (size_t)(M * K + 1)), *w = malloc(sizeof(float) * (size_t)(N * K + 1));
    float *b = malloc(sizeof(float) * (size_t)N), *ref = malloc(sizeof(float) * (size_t)(M * N + 1));
    th_fill_uniform(x, M * K, -1, 1);
    th_fill_uniform(w, N * K, -1, 1);
    th_fill_uniform(b, N, -1, 1);
    th_tensor in[3] = {th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){M, K}, x),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){N, K}, w),
                       bias ? th_tensor_make(MDL_DTYPE_FLOAT32, 1, (int64_t[]){N}, b)
                            : th_tensor_absent()};
    in[1].constant = in[2].constant = true;
    mdl_op_options o = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
    o.fc.act.kind = act;
    th_tensor out = {0};
    mdl_error err;
    assert_int_equal(th_run_op(MDL_OP_FULLY_CONNECTED, &o, 3, in, 1, &out, &err), MDL_OK);
    assert_int_equal(out.rank, 2);
    assert_int_equal(out.dims[0], M);
    assert_int_equal(out.dims[1], N);
    float lo = act == MDL_ACT_NONE ? -INFINITY : 0.0f, hi = act == MDL_ACT_RELU6 ? 6.0f : INFINITY;
    ref_fc(M, N, K, x, w, bias ? b : NULL, lo, hi, ref);
    th_assert_close(out.data, ref, M * N, 1e-5);
    for (int i = 0; i < 3; i++) th_tensor_free(&in[i]);
    th_tensor_free(&out);
    free(x); free(w); free(b); free(ref);
}

static void test_fc_random_shapes(void **state) {
    (void)state;
    th_seed(1);
    int64_t sizes[][3] = {{1, 1, 1}, {1, 64, 784}, {1, 3, 5}, {7, 13, 17}, {64, 64, 64},
                          {3, 1, 9}, {2, 300, 129}, {65, 10, 64}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_fc(sizes[i][0], sizes[i][1], sizes[i][2], i % 2 == 0, MDL_ACT_NONE);
        check_fc(sizes[i][0], sizes[i][1], sizes[i][2], true, MDL_ACT_RELU);
        check_fc(sizes[i][0], sizes[i][1], sizes[i][2], false, MDL_ACT_RELU6);
    }
}

/* FullyConnected as a loaded model runs it: prepare, then pack (when prepare asks for packed
   bytes) into 64-byte aligned memory, then run with the packed weights. */
static void check_fc_packed(int64_t M, int64_t N, int64_t K, bool bias, mdl_activation act) {
    float *x = malloc(sizeof(float) * (size_t)(M * K));
    float *w = malloc(sizeof(float) * (size_t)(N * K)), *b = malloc(sizeof(float) * (size_t)N);
    float *ref = malloc(sizeof(float) * (size_t)(M * N));
    float *y = malloc(sizeof(float) * (size_t)(M * N));
    th_fill_uniform(x, M * K, -1, 1);
    th_fill_uniform(w, N * K, -1, 1);
    th_fill_uniform(b, N, -1, 1);
    mdl__tensor tx = {.name = "x", .dtype = MDL_DTYPE_FLOAT32, .rank = 2, .dims = {M, K},
                      .count = M * K};
    mdl__tensor tw = {.name = "w", .dtype = MDL_DTYPE_FLOAT32, .rank = 2, .dims = {N, K},
                      .count = N * K, .data = w};
    mdl__tensor tb = {.name = "b", .dtype = MDL_DTYPE_FLOAT32, .rank = 1, .dims = {N}, .count = N,
                      .data = b};
    mdl__tensor ty = {.name = "y", .dtype = MDL_DTYPE_FLOAT32, .rank = 2, .dims = {M, N},
                      .count = M * N};
    mdl_op_options o = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
    o.fc.act.kind = act;
    mdl_error err;
    mdl__kctx c;
    memset(&c, 0, sizeof c);
    c.op = MDL_OP_FULLY_CONNECTED;
    c.name = "test";
    c.opt = &o;
    c.nin = bias ? 3 : 2;
    c.nout = 1;
    c.err = &err;
    c.in[0] = &tx;
    c.in[1] = &tw;
    c.in[2] = bias ? &tb : NULL;
    c.out[0] = &ty;
    const mdl__kernel *k = mdl__kernel_find(MDL_OP_FULLY_CONNECTED, MDL_DTYPE_FLOAT32);
    assert_non_null(k);
    assert_int_equal(k->prepare(&c), MDL_OK);
    /* packs whenever this CPU's GEMM has a packed layout, except for one row (a GEMV reads W
       directly: no second copy) */
    assert_int_equal(c.packed_bytes, M >= 2 ? mdl__gemm_pack_bytes(N, K) : 0);
    void *packed = NULL;
    if (c.packed_bytes) {
        assert_non_null(k->pack);
        packed = aligned_alloc(64, (c.packed_bytes + 63) & ~(size_t)63);
        memset(packed, 0xA5, c.packed_bytes);
        c.packed = packed;
        c.in_data[1] = w;
        c.in_data[2] = bias ? b : NULL;
        assert_int_equal(k->pack(&c), MDL_OK);
    }
    c.in_data[0] = x;
    c.in_data[1] = w;
    c.in_data[2] = bias ? b : NULL;
    c.out_data[0] = y;
    assert_int_equal(k->run(&c), MDL_OK);
    float lo = act == MDL_ACT_NONE ? -INFINITY : 0.0f, hi = act == MDL_ACT_RELU6 ? 6.0f : INFINITY;
    ref_fc(M, N, K, x, w, bias ? b : NULL, lo, hi, ref);
    th_assert_close(y, ref, M * N, 1e-5);
    free(packed); free(x); free(w); free(b); free(ref); free(y);
}

static void test_fc_packed_weights(void **state) {
    (void)state;
    th_seed(4);
    int64_t sizes[][3] = {{1, 64, 784}, {64, 64, 784}, {2, 3, 5}, {7, 13, 17}, {64, 1, 64},
                          {33, 100, 300}, {5, 17, 1}, {100, 33, 1030}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_fc_packed(sizes[i][0], sizes[i][1], sizes[i][2], i % 2 == 0, MDL_ACT_NONE);
        check_fc_packed(sizes[i][0], sizes[i][1], sizes[i][2], true, MDL_ACT_RELU);
        check_fc_packed(sizes[i][0], sizes[i][1], sizes[i][2], false, MDL_ACT_RELU6);
    }
}

static void test_fc_rejects_mismatch(void **state) {
    (void)state;
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, 5}, NULL),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 4}, NULL)};
    th_tensor out = {0};
    mdl_error err;
    assert_int_equal(th_run_op(MDL_OP_FULLY_CONNECTED, NULL, 2, in, 1, &out, &err), MDL_SHAPE);
    assert_non_null(strstr(err.msg, "FullyConnected 'test'"));
    assert_non_null(strstr(err.msg, "4 input features"));
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
}

static void ref_matmul2(int64_t M, int64_t N, int64_t K, const float *a, const float *b, float *c) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)a[m * K + k] * b[k * N + n];
            c[m * N + n] = (float)s;
        }
}

static void test_matmul_broadcast(void **state) {
    (void)state;
    th_seed(2);
    /* A [2,1,3,5] x B [4,5,7] -> [2,4,3,7]; B broadcasts over the leading 2, A over 4. */
    int64_t M = 3, K = 5, N = 7;
    float a[2 * 3 * 5], b[4 * 5 * 7], ref[2 * 4 * 3 * 7];
    th_fill_uniform(a, 30, -1, 1);
    th_fill_uniform(b, 140, -1, 1);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) ref_matmul2(M, N, K, a + i * 15, b + j * 35, ref + (i * 4 + j) * 21);
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 4, (int64_t[]){2, 1, 3, 5}, a),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){4, 5, 7}, b)};
    th_tensor out = {0};
    mdl_error err;
    assert_int_equal(th_run_op(MDL_OP_MATMUL, NULL, 2, in, 1, &out, &err), MDL_OK);
    assert_int_equal(out.rank, 4);
    assert_int_equal(out.dims[1], 4);
    th_assert_close(out.data, ref, 2 * 4 * 3 * 7, 1e-5);
    th_tensor_free(&in[0]); th_tensor_free(&in[1]); th_tensor_free(&out);
}

static void test_matmul_vectors_and_large(void **state) {
    (void)state;
    th_seed(3);
    /* [K] x [K, N] -> [N]; then a product large enough for the BLAS path. */
    int64_t K = 6, N = 4;
    float a[6], b[24], ref[4];
    th_fill_uniform(a, 6, -1, 1);
    th_fill_uniform(b, 24, -1, 1);
    ref_matmul2(1, N, K, a, b, ref);
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 1, (int64_t[]){K}, a),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){K, N}, b)};
    th_tensor out = {0};
    assert_int_equal(th_run_op(MDL_OP_MATMUL, NULL, 2, in, 1, &out, NULL), MDL_OK);
    assert_int_equal(out.rank, 1);
    th_assert_close(out.data, ref, N, 1e-5);
    th_tensor_free(&in[0]); th_tensor_free(&in[1]); th_tensor_free(&out);

    int64_t M2 = 67, K2 = 129, N2 = 70;
    float *A = malloc(sizeof(float) * (size_t)(M2 * K2)), *B = malloc(sizeof(float) * (size_t)(K2 * N2));
    float *R = malloc(sizeof(float) * (size_t)(M2 * N2));
    th_fill_uniform(A, M2 * K2, -1, 1);
    th_fill_uniform(B, K2 * N2, -1, 1);
    ref_matmul2(M2, N2, K2, A, B, R);
    th_tensor in2[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){M2, K2}, A),
                        th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){K2, N2}, B)};
    assert_int_equal(th_run_op(MDL_OP_MATMUL, NULL, 2, in2, 1, &out, NULL), MDL_OK);
    th_assert_close(out.data, R, M2 * N2, 1e-5);
    th_tensor_free(&in2[0]); th_tensor_free(&in2[1]); th_tensor_free(&out);
    free(A); free(B); free(R);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fc_random_shapes),
        cmocka_unit_test(test_fc_packed_weights),
        cmocka_unit_test(test_fc_rejects_mismatch),
        cmocka_unit_test(test_matmul_broadcast),
        cmocka_unit_test(test_matmul_vectors_and_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
