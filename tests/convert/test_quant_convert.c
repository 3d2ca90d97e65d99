/* Pre-quantized ONNX models (issue #10): every fixture of tests/models/quant/quant_manifest.json
   (written by tests/models/make_quant_fixtures.py with onnxruntime.quantization) is converted,
   loaded, run on its stored inputs and compared with ONNX Runtime's outputs on the same model:
     - static models (QDQ, QOperator): max |got - ORT| <= 2 quantization steps of the output's
       final DequantizeLinear scale;
     - dynamic models: mdeploy computes in float on the int8 weights while ORT also quantizes the
       activations at run time, so the bound is twice ORT's own distance to the float model
       (+1e-3); the measured difference is printed.
   Also: the digits CNN's accuracy on its 360 held-back images equals ORT's on the same quantized
   model; big weights are stored as integers (no float constant of more than 256 elements) and
   the file is at least 3x smaller than the float model's conversion for the weight-heavy seeds;
   the CNNs' NCHW Flatten before the dense layer leaves no Transpose (the QDQ pass permutes the
   dense weights instead; the comparison with ORT checks the permutation).
   Each fixture prints its max difference in quantization steps.  Run from the repo root. */
#include "common/harness.h"

#include "mdeploy/convert.h"
#include "mdeploy/npy.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST "tests/models/quant/quant_manifest.json"

static const char *const fixture_names[] = {
    "mlp_qdq_s8", "mlp_qop", "mlp_dyn",
    "mnist_cnn_qdq_s8", "mnist_cnn_qop", "mnist_cnn_dyn",
    "mobilenet_block_qdq_s8", "mobilenet_block_qdq_u8", "mobilenet_block_qop", "mobilenet_block_dyn",
    "recommender_qdq_s8", "recommender_dyn",
    "text_lstm_dyn",
    "digits_qdq_s8", "digits_qdq_u8", "digits_qop", "digits_dyn",
    "qop_misc", /* hand-built: QLinearAveragePool/LeakyRelu/Mul/Concat, QLinearMatMul */
};
#define NFIXTURES (sizeof fixture_names / sizeof fixture_names[0])

static cJSON *manifest;

static int load_manifest(void **state) {
    (void)state;
    size_t size;
    char *text = th_read_file(MANIFEST, &size);
    if (!text) {
        fprintf(stderr, "cannot read %s (run the test from the repo root)\n", MANIFEST);
        return -1;
    }
    manifest = cJSON_Parse(text);
    free(text);
    return cJSON_IsArray(cJSON_GetObjectItem(manifest, "fixtures")) ? 0 : -1;
}

static int free_manifest(void **state) {
    (void)state;
    cJSON_Delete(manifest);
    manifest = NULL;
    return 0;
}

static const cJSON *find_fixture(const char *name) {
    const cJSON *fx;
    cJSON_ArrayForEach(fx, cJSON_GetObjectItem(manifest, "fixtures")) {
        const char *n = cJSON_GetStringValue(cJSON_GetObjectItem(fx, "name"));
        if (n && strcmp(n, name) == 0) return fx;
    }
    return NULL;
}

static const char *str_item(const cJSON *o, const char *key) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
    if (!s) fail_msg("%s: entry without a string \"%s\"", MANIFEST, key);
    return s;
}

static void read_npy(const char *path, mdl_npy *a) {
    mdl_error err;
    if (mdl_npy_read(path, a, &err) != MDL_OK) fail_msg("%s", err.msg);
}

static void shapes_of(const cJSON *fx, mdl_convert_options *o) {
    mdl_error err;
    const cJSON *shape;
    cJSON_ArrayForEach(shape, cJSON_GetObjectItem(fx, "input_shapes")) {
        assert_true(cJSON_IsString(shape) && o->ninput_shapes < MDL_CONVERT_MAX_SHAPES);
        if (mdl_parse_input_shape(shape->valuestring, &o->input_shapes[o->ninput_shapes++], &err) != MDL_OK)
            fail_msg("input shape '%s': %s", shape->valuestring, err.msg);
    }
}

/* Converts; any failure fails the test. */
static void convert(const char *name, const char *onnx, const mdl_convert_options *o, const char *out,
                    mdl_convert_report *rep) {
    mdl_error err;
    mdl_status st = mdl_convert_onnx(onnx, out, o, rep, &err);
    if (st != MDL_OK) fail_msg("%s: converting %s: %s: %s", name, onnx, mdl_status_str(st), err.msg);
}

static void test_fixture(void **state) {
    const char *name = *state;
    const cJSON *fx = find_fixture(name);
    if (!fx) fail_msg("fixture '%s' is not in %s: rerun tests/models/make_quant_fixtures.py", name, MANIFEST);
    const char *variant = str_item(fx, "variant");
    bool dynamic = strcmp(variant, "dyn") == 0;
    mdl_convert_options o = mdl_convert_options_default();
    shapes_of(fx, &o);
    char path[512];
    snprintf(path, sizeof path, "%s", th_tmp("quant.mdl"));
    mdl_convert_report rep;
    memset(&rep, 0, sizeof rep);
    convert(name, str_item(fx, "onnx"), &o, path, &rep);

    mdl_error err;
    mdl_model *m;
    mdl_status st = mdl_model_load_file(path, NULL, &m, &err);
    if (st != MDL_OK) fail_msg("%s: loading the converted model: %s", name, err.msg);

    /* weights stored as integers: no big float constant is left */
    size_t float_const = 0, int_const = 0;
    for (int i = 0; i < mdl_model_tensor_count(m); i++) {
        mdl_tensor_info ti;
        bool constant = false;
        assert_int_equal(mdl_model_tensor_info(m, i, &ti, &constant), MDL_OK);
        if (!constant) continue;
        if (ti.dtype == MDL_DTYPE_FLOAT32) {
            /* the loader runs DEQUANTIZE of a constant once: its float result is a constant of
               the loaded model, not of the file (the converter names it ".../dequantized") */
            size_t nl = strlen(ti.name), sl = strlen("/dequantized");
            if (nl > sl && !strcmp(ti.name + nl - sl, "/dequantized")) continue;
            float_const += ti.bytes;
        } else {
            int_const += ti.bytes;
        }
    }

    /* what stays float is what ORT's quantizer left float (biases of dynamic models, LSTM B) */
    if (float_const > 4096 && float_const * 8 > int_const)
        fail_msg("%s: %zu bytes of float constants next to %zu bytes of integer ones", name, float_const,
                 int_const);

    /* operators computing in int8 (input 0 int8, other than QUANTIZE/DEQUANTIZE) */
    int int8_ops = 0;
    for (int i = 0; i < mdl_model_node_count(m); i++) {
        mdl_node_info ni;
        mdl_tensor_info ti;
        assert_int_equal(mdl_model_node_info(m, i, &ni), MDL_OK);
        if (ni.nin < 1 || ni.inputs[0] < 0 || !strcmp(ni.op, "Quantize") || !strcmp(ni.op, "Dequantize"))
            continue;
        assert_int_equal(mdl_model_tensor_info(m, ni.inputs[0], &ti, NULL), MDL_OK);
        int8_ops += ti.dtype == MDL_DTYPE_INT8;
    }
    if (!dynamic && int8_ops == 0) fail_msg("%s: no operator runs in int8", name);
    if (!dynamic && (!strncmp(name, "digits_", 7) || !strncmp(name, "mnist_cnn_", 10)))
        for (int i = 0; i < mdl_model_node_count(m); i++) {
            mdl_node_info ni;
            assert_int_equal(mdl_model_node_info(m, i, &ni), MDL_OK);
            if (!strcmp(ni.op, "Transpose")) fail_msg("%s: node %d '%s' is a Transpose", name, i, ni.name);
        }

    mdl_session *s;
    st = mdl_session_create(m, NULL, &s, &err);
    if (st != MDL_OK) fail_msg("%s: session: %s", name, err.msg);
    const cJSON *io;
    cJSON_ArrayForEach(io, cJSON_GetObjectItem(fx, "inputs")) {
        int idx = mdl_model_input_index(m, str_item(io, "name"));
        if (idx < 0) fail_msg("%s: no input '%s'", name, str_item(io, "name"));
        mdl_npy a;
        read_npy(str_item(io, "file"), &a);
        st = mdl_session_set_input(s, idx, a.data, a.bytes, &err);
        mdl_npy_free(&a);
        if (st != MDL_OK) fail_msg("%s: input: %s", name, err.msg);
    }
    st = mdl_session_run(s);
    if (st != MDL_OK) fail_msg("%s: run: %s", name, mdl_session_message(s));

    bool ok = true;
    char report[512] = "";
    size_t rlen = 0;
    cJSON_ArrayForEach(io, cJSON_GetObjectItem(fx, "outputs")) {
        int idx = mdl_model_output_index(m, str_item(io, "name"));
        if (idx < 0) fail_msg("%s: no output '%s'", name, str_item(io, "name"));
        mdl_npy ref;
        read_npy(str_item(io, "file"), &ref);
        const float *got = mdl_session_output_data(s, idx), *r = ref.data;
        size_t n = ref.bytes / sizeof(float);
        double worst = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)got[i] - (double)r[i]);
            if (!(d <= worst)) worst = d;
        }
        const cJSON *sc = cJSON_GetObjectItem(io, "scale");
        double scale = cJSON_IsNumber(sc) ? sc->valuedouble : 0;
        double vs_float = cJSON_GetNumberValue(cJSON_GetObjectItem(io, "max_abs_vs_float"));
        /* 2 steps, plus float rounding of the step itself */
        double bound = dynamic || scale <= 0 ? 2 * vs_float + 1e-3 : 2 * scale + 1e-6;
        ok = ok && worst <= bound;
        if (rlen < sizeof report && dynamic)
            rlen += (size_t)snprintf(report + rlen, sizeof report - rlen,
                                     " max|mdeploy-ORT| %.4g (dynamic: float activations; bound %.4g; "
                                     "ORT vs float %.4g)", worst, bound, vs_float);
        else if (rlen < sizeof report)
            rlen += (size_t)snprintf(report + rlen, sizeof report - rlen,
                                     " max|mdeploy-ORT| %.4g (%.2f steps of %.4g; bound %.4g; ORT vs float %.4g)",
                                     worst, worst / scale, scale, bound, vs_float);
        /* digits: accuracy on the held-back images equals ORT's on the same model */
        const char *labels = cJSON_GetStringValue(cJSON_GetObjectItem(fx, "labels"));
        if (labels && idx == 0) {
            mdl_npy lab;
            read_npy(labels, &lab);
            const int64_t *y = lab.data;
            int64_t N = lab.dims[0], C = (int64_t)n / N, right = 0;
            for (int64_t i = 0; i < N; i++) {
                int64_t best = 0;
                for (int64_t k = 1; k < C; k++)
                    if (got[i * C + k] > got[i * C + best]) best = k;
                right += best == y[i];
            }
            double acc = (double)right / (double)N;
            double ort_acc = cJSON_GetNumberValue(cJSON_GetObjectItem(fx, "ort_accuracy"));
            double float_acc = cJSON_GetNumberValue(cJSON_GetObjectItem(fx, "float_accuracy"));
            rlen += (size_t)snprintf(report + rlen, sizeof report - rlen,
                                     " accuracy mdeploy %.4f ORT %.4f float %.4f", acc, ort_acc, float_acc);
            mdl_npy_free(&lab);
            if (!dynamic && fabs(acc - ort_acc) > 1e-9) ok = false;
        }
        mdl_npy_free(&ref);
    }

    /* size: the float seed converted the same way */
    const char *seed_onnx = NULL;
    char seed_path[256];
    const char *seed = cJSON_GetStringValue(cJSON_GetObjectItem(fx, "seed"));
    if (seed && !strcmp(seed, "digits")) seed_onnx = "examples/digits/digits_cnn.onnx";
    else if (seed) {
        snprintf(seed_path, sizeof seed_path, "tests/models/%s.onnx", seed);
        seed_onnx = seed_path;
    }
    char fpath[512];
    snprintf(fpath, sizeof fpath, "%s", th_tmp("quant_float.mdl"));
    mdl_convert_report frep;
    if (seed_onnx && mdl_convert_onnx(seed_onnx, fpath, &o, &frep, &err) != MDL_OK)
        fail_msg("%s: float seed: %s", name, err.msg);
    size_t qsize = th_file_size(path), fsize = seed_onnx ? th_file_size(fpath) : 0;
    double ratio = (double)fsize / (double)(qsize ? qsize : 1);
    printf("quant %-24s int8 ops %2d, nodes %d -> %d, file %zu B (float %zu B, %.2fx smaller; "
           "constants int %zu B float %zu B);%s\n",
           name, int8_ops, rep.onnx_nodes, rep.nodes_out, qsize, fsize, ratio, int_const,
           float_const, report);
    fflush(stdout);
    /* weight-heavy seeds: the file is mostly int8 weights */
    if (fsize > 200000 && ratio < 3.0) fail_msg("%s: only %.2fx smaller than float", name, ratio);
    mdl_session_free(s);
    mdl_model_free(m);
    unlink(path);
    if (seed_onnx) unlink(fpath);
    if (!ok) fail_msg("%s: outputs differ from ONNX Runtime beyond the bound", name);
}

/* Every manifest entry is one this test runs (a new fixture needs a line above). */
static void test_manifest_complete(void **state) {
    (void)state;
    const cJSON *fx;
    int n = 0;
    cJSON_ArrayForEach(fx, cJSON_GetObjectItem(manifest, "fixtures")) {
        const char *name = str_item(fx, "name");
        bool known = false;
        for (size_t i = 0; i < NFIXTURES; i++) known |= strcmp(fixture_names[i], name) == 0;
        if (!known) fail_msg("%s lists '%s', which test_quant_convert.c does not run", MANIFEST, name);
        n++;
    }
    assert_int_equal(n, (int)NFIXTURES);
}

/* Patterns that cannot be computed faithfully are refused with a message naming the problem
   (asymmetric int8 weights, a dynamic-quantization value used outside the quantize_dynamic
   pattern, blocked quantization), and no output file is left behind. */
static void test_refusals(void **state) {
    (void)state;
    const cJSON *r;
    int n = 0;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(manifest, "refusals")) {
        const char *onnx = str_item(r, "onnx"), *want = str_item(r, "message");
        char path[512];
        snprintf(path, sizeof path, "%s", th_tmp("refused.mdl"));
        unlink(path);
        mdl_error err;
        mdl_status st = mdl_convert_onnx(onnx, path, NULL, NULL, &err);
        printf("refused %-44s %s: %s\n", onnx, mdl_status_str(st), err.msg);
        if (st != MDL_UNSUPPORTED) fail_msg("%s: %s, expected UNSUPPORTED", onnx, mdl_status_str(st));
        if (!strstr(err.msg, want)) fail_msg("%s: message '%s' does not mention '%s'", onnx, err.msg, want);
        assert_true(access(path, F_OK) != 0);
        n++;
    }
    assert_int_equal(n, 3);
}

int main(void) {
    struct CMUnitTest tests[NFIXTURES + 2];
    for (size_t i = 0; i < NFIXTURES; i++) {
        struct CMUnitTest t = cmocka_unit_test_prestate(test_fixture, (void *)fixture_names[i]);
        t.name = fixture_names[i];
        tests[i] = t;
    }
    tests[NFIXTURES] = (struct CMUnitTest)cmocka_unit_test(test_manifest_complete);
    tests[NFIXTURES + 1] = (struct CMUnitTest)cmocka_unit_test(test_refusals);
    return cmocka_run_group_tests(tests, load_manifest, free_manifest);
}
