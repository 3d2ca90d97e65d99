/* Loading quantized models: weight-only quantization (DEQUANTIZE of a constant run once at load),
   and quantization parameters checked on every tensor. */
#include "common/harness.h"
#include "common/models.h"

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

/* The same refusals from the loader, on files whose bytes were changed after the builder (a
   hostile or corrupted file): scale 0, negative, NaN, +-Inf, a zero point out of range. */
static void patch_and_expect(const uint8_t *good, size_t size, size_t at, const void *bytes,
                             size_t n, const char *want) {
    uint8_t *bad = malloc(size);
    memcpy(bad, good, size);
    memcpy(bad + at, bytes, n);
    tm_reseal(bad, size);
    mdl_error err;
    mdl_model *m = NULL;
    mdl_load_options lo = mdl_load_options_default();
    lo.flags = MDL_LOAD_COPY;
    mdl_status st = mdl_model_load_buffer(bad, size, &lo, &m, &err);
    if (st == MDL_OK) {
        mdl_model_free(m);
        fail_msg("a file with %s loaded", want);
    }
    if (!strstr(err.msg, "fc/w_int8") || !strstr(err.msg, want))
        fail_msg("message '%s' does not name fc/w_int8 and '%s'", err.msg, want);
    free(bad);
}

/* Offset of the only occurrence of n bytes in data (fails if not exactly one). */
static size_t find_once(const uint8_t *data, size_t size, const void *bytes, size_t n) {
    size_t at = SIZE_MAX;
    for (size_t i = 0; i + n <= size; i++)
        if (!memcmp(data + i, bytes, n)) {
            if (at != SIZE_MAX) fail_msg("pattern found twice");
            at = i;
        }
    if (at == SIZE_MAX) fail_msg("pattern not found");
    return at;
}

static void test_bad_params_in_file_refused(void **state) {
    (void)state;
    fill();
    wscale[2] = 0.0123456789f; /* a value to find in the file */
    wzp[5] = 0;
    void *data;
    size_t size;
    mdl_error err;
    assert_int_equal(build(&data, &size, false, N, &err), MDL_OK);
    const uint8_t *d = data;
    size_t at = find_once(d, size, &wscale[2], sizeof(float));
    const float bad[] = {0.0f, -0.5f, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        patch_and_expect(d, size, at, &bad[i], sizeof(float), "scale[2]");
    /* zero points are stored as int64: make the first one 90 to find the array, then 300 */
    free(data);
    wzp[0] = 90;
    assert_int_equal(build(&data, &size, false, N, &err), MDL_OK);
    d = data;
    at = find_once(d, size, (int64_t[]){90, 0, 0}, 3 * sizeof(int64_t));
    const int64_t big = 300;
    patch_and_expect(d, size, at, &big, sizeof big, "zero point[0]");
    free(data);
    wzp[0] = 0;
}

/* An int8 FC whose int32 bias plus the largest possible sum leaves int32: refused at load, naming
   the channel (its kernel's prepare runs on every node when the model is loaded). */
static void test_int32_bias_overflow_refused(void **state) {
    (void)state;
    mdl_builder *b;
    mdl_error err;
    assert_int_equal(mdl_builder_create(NULL, &b, &err), MDL_OK);
    enum { KK = 64, NN = 4 };
    static int8_t w[NN * KK];
    static int32_t bq[NN];
    for (int i = 0; i < NN * KK; i++) w[i] = 127;
    bq[3] = INT32_MAX - 1000; /* + 256 * 64 * 127 overflows */
    float sx = 0.05f, sw = 0.02f, sy = 0.1f, sb = sx * sw;
    int64_t z0 = 0;
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_INT8, 2, (int64_t[]){1, KK}, NULL);
    mdl_builder_set_quant(b, x, 1, &sx, &z0, 0);
    int wt = mdl_builder_tensor(b, "fc/w", MDL_DTYPE_INT8, 2, (int64_t[]){NN, KK}, w);
    mdl_builder_set_quant(b, wt, 1, &sw, &z0, 0);
    int bt = mdl_builder_tensor(b, "fc/bias", MDL_DTYPE_INT32, 1, (int64_t[]){NN}, bq);
    mdl_builder_set_quant(b, bt, 1, &sb, &z0, 0);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_INT8, 2, (int64_t[]){1, NN}, NULL);
    mdl_builder_set_quant(b, y, 1, &sy, &z0, 0);
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc", 3, (int[]){x, wt, bt}, 1, &y, NULL);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, y);
    void *data;
    size_t size;
    mdl_status st = mdl_builder_finish(b, &data, &size, &err);
    mdl_builder_free(b);
    if (st == MDL_OK) { /* the builder may leave kernel checks to the loader */
        mdl_model *m = NULL;
        st = mdl_model_load_buffer(data, size, NULL, &m, &err);
        if (st == MDL_OK) mdl_model_free(m);
        free(data);
    }
    assert_int_not_equal(st, MDL_OK);
    if (!strstr(err.msg, "fc") || !strstr(err.msg, "channel 3") || !strstr(err.msg, "overflow"))
        fail_msg("message '%s' does not name the node, channel 3 and the overflow", err.msg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weight_only_fc),
        cmocka_unit_test(test_bad_params_refused),
        cmocka_unit_test(test_bad_params_in_file_refused),
        cmocka_unit_test(test_int32_bias_overflow_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
