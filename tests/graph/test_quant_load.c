/* Loading quantized models: weight-only quantization (DEQUANTIZE of a constant run once at load),
   and quantization parameters checked on every tensor. */
#include "common/harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 3, K = 257, N = 17 };

static int8_t wq[N * K];
static float wscale[N];
static int64_t wzp[N];
static float bias[N];

/* x [B,K] -> FullyConnected(W = Dequantize(int8 [N,K], per channel), bias) -> y [B,N]; when
   dq_output is set, the dequantized weight is also a graph output. */
static mdl_status build(void **data, size_t *size, bool dq_output, int nscale, mdl_error *err) {
    mdl_builder *b;
    mdl_status st = mdl_builder_create(NULL, &b, err);
    if (st) return st;
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){B, K}, NULL);
    int w8 = mdl_builder_tensor(b, "fc/w_int8", MDL_DTYPE_INT8, 2, (int64_t[]){N, K}, wq);
    mdl_builder_set_quant(b, w8, nscale, wscale, wzp, 0);
    int w = mdl_builder_tensor(b, "fc/w", MDL_DTYPE_FLOAT32, 2, (int64_t[]){N, K}, NULL);
    int bb = mdl_builder_tensor(b, "fc/b", MDL_DTYPE_FLOAT32, 1, (int64_t[]){N}, bias);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, 2, (int64_t[]){B, N}, NULL);
    mdl_builder_node(b, MDL_OP_DEQUANTIZE, "fc/w_dq", 1, &w8, 1, &w, NULL);
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc", 3, (int[]){x, w, bb}, 1, &y, NULL);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, y);
    if (dq_output) mdl_builder_add_output(b, w);
    st = mdl_builder_finish(b, data, size, err);
    mdl_builder_free(b);
    return st;
}

static void fill(void) {
    th_seed(5);
    for (int i = 0; i < N * K; i++) wq[i] = (int8_t)th_rand_int(-127, 127);
    for (int n = 0; n < N; n++) {
        wscale[n] = th_uniform(0.001f, 0.1f);
        wzp[n] = 0;
        bias[n] = th_uniform(-1.0f, 1.0f);
    }
}

static void run_and_check(const void *data, size_t size, int outputs) {
    mdl_error err;
    mdl_model *m;
    mdl_load_options lo = mdl_load_options_default();
    lo.flags = MDL_LOAD_COPY;
    assert_int_equal(mdl_model_load_buffer(data, size, &lo, &m, &err), MDL_OK);
    /* the Dequantize ran at load unless its output must stay in the arena */
    assert_int_equal(mdl_model_node_count(m), outputs == 1 ? 1 : 2);
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    float x[B * K], ref[B * N];
    th_fill_uniform(x, B * K, -2.0f, 2.0f);
    memcpy(mdl_session_input_data(s, 0), x, sizeof x);
    assert_int_equal(mdl_session_run(s), MDL_OK);
    /* oracle: dequantize by hand, naive dense layer in double */
    for (int bi = 0; bi < B; bi++)
        for (int n = 0; n < N; n++) {
            double acc = bias[n];
            for (int k = 0; k < K; k++) acc += (double)x[bi * K + k] * wscale[n] * wq[n * K + k];
            ref[bi * N + n] = (float)acc;
        }
    th_assert_close((const float *)mdl_session_output_data(s, 0), ref, B * N, 1e-5);
    if (outputs == 2) {
        const float *w = mdl_session_output_data(s, 1);
        for (int i = 0; i < N * K; i++) assert_true(w[i] == wscale[i / K] * (float)wq[i]);
    }
    mdl_session_free(s);
    mdl_model_free(m);
}

static void test_weight_only_fc(void **state) {
    (void)state;
    fill();
    void *data;
    size_t size;
    mdl_error err;
    assert_int_equal(build(&data, &size, false, N, &err), MDL_OK);
    /* the file keeps the weights as int8: well under the float weights' size */
    assert_true(size < (size_t)(N * K * 2));
    run_and_check(data, size, 1);
    free(data);
    assert_int_equal(build(&data, &size, true, N, &err), MDL_OK);
    run_and_check(data, size, 2);
    free(data);
}

/* Bad parameters are refused when the model is built, naming the tensor. */
static void test_bad_params_refused(void **state) {
    (void)state;
    fill();
    void *data = NULL;
    size_t size;
    mdl_error err;
    assert_int_not_equal(build(&data, &size, false, N - 1, &err), MDL_OK);
    assert_non_null(strstr(err.msg, "fc/w_int8"));
    wscale[2] = 0.0f;
    assert_int_not_equal(build(&data, &size, false, N, &err), MDL_OK);
    assert_non_null(strstr(err.msg, "fc/w_int8"));
    assert_non_null(strstr(err.msg, "scale[2]"));
    wscale[2] = NAN;
    assert_int_not_equal(build(&data, &size, false, N, &err), MDL_OK);
    wscale[2] = 0.01f;
    wzp[1] = 200;
    assert_int_not_equal(build(&data, &size, false, N, &err), MDL_OK);
    assert_non_null(strstr(err.msg, "zero point[1]"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weight_only_fc),
        cmocka_unit_test(test_bad_params_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
