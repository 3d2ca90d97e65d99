/* Pruning in the converter (issue #15) through the CLI and the library:
   - --prune magnitude:S prints the prunable layers and writes them in --report; the share of
     zero weights is at least S; the pruned model stored sparse and stored dense
     (--sparse-density 0) give the same outputs (each against the other's arithmetic: the dense
     kernels never see the sparse storage), and the sparse file is smaller;
   - combined with --quantize int8, the pruned zeros survive quantization;
   - bad input (sparsity outside [0, 1), NaN, an unknown or unprunable layer, malformed
     options): exit 1 / MDL_INVALID_ARGUMENT with a message, no output file.
   The pruning itself is checked against an independent NumPy + ONNX Runtime oracle in
   bindings/python/tests/test_prune.py. */
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

#define MLP "tests/models/mlp.onnx"
#define MLP_X "tests/models/mlp.in0.npy"
#define DIGITS "examples/digits/digits_cnn.onnx"
#define DIGITS_CALIB "examples/digits/calibration.npy"

/* Output 0 of model path on the rows of .npy file xpath (float input of any rank), malloc'd;
   its count in *n. */
static float *run(const char *path, const char *xpath, int64_t *n) {
    mdl_npy x;
    mdl_error err;
    assert_int_equal(mdl_npy_read(xpath, &x, &err), MDL_OK);
    mdl_model *m;
    mdl_session *s;
    if (mdl_model_load_file(path, NULL, &m, &err)) fail_msg("%s", err.msg);
    mdl_session_options so = mdl_session_options_default();
    mdl_shape shape = {x.rank, {0}};
    size_t count = 1;
    for (int32_t d = 0; d < x.rank; d++) count *= (size_t)(shape.dims[d] = x.dims[d]);
    so.ninput_shapes = 1;
    so.input_shapes = &shape;
    if (mdl_session_create(m, &so, &s, &err)) fail_msg("%s", err.msg);
    memcpy(mdl_session_input_data(s, 0), x.data, sizeof(float) * count);
    assert_int_equal(mdl_session_run(s), MDL_OK);
    mdl_tensor_info info;
    mdl_session_output_info(s, 0, &info);
    *n = (int64_t)(info.bytes / sizeof(float));
    float *y = malloc(info.bytes);
    memcpy(y, mdl_session_output_data(s, 0), info.bytes);
    mdl_session_free(s);
    mdl_model_free(m);
    mdl_npy_free(&x);
    return y;
}

static cJSON *read_json(const char *path) {
    char *text = th_read_file(path, NULL);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static void test_cli_prune(void **state) {
    (void)state;
    const char *sp = th_tmp("mlp_sparse.mdl"), *de = th_tmp("mlp_dense.mdl"), *rep = th_tmp("prune.json"),
               *so = th_tmp("prune.out");
    assert_int_equal(th_system("'%s' %s -o '%s' --prune magnitude:0.8 --report '%s' > '%s'", th_tool("mdeploy-convert"), MLP, sp,
                               rep, so), 0);
    char *text = th_read_file(so, NULL);
    assert_non_null(strstr(text, "prunable layer"));
    assert_non_null(strstr(text, "/net/net.0/Gemm"));
    assert_non_null(strstr(text, "sparse"));
    free(text);
    cJSON *j = read_json(rep), *l;
    double zeros = 0, total = 0;
    int nsparse = 0;
    cJSON_ArrayForEach(l, cJSON_GetObjectItem(j, "pruning")) {
        double w = cJSON_GetObjectItem(l, "weights")->valuedouble;
        zeros += w * cJSON_GetObjectItem(l, "sparsity")->valuedouble;
        total += w;
        nsparse += !strcmp(cJSON_GetObjectItem(l, "storage")->valuestring, "sparse");
    }
    cJSON_Delete(j);
    assert_true(total == 784 * 64 + 64 * 64 + 64);
    assert_true(zeros >= 0.8 * total - 0.5);
    assert_true(nsparse >= 1);
    assert_int_equal(th_system("'%s' %s -o '%s' -q --prune magnitude:0.8 --sparse-density 0", th_tool("mdeploy-convert"), MLP, de), 0);
    assert_true(th_file_size(sp) < th_file_size(de) * 6 / 10);
    int64_t n1, n2;
    float *ys = run(sp, MLP_X, &n1), *yd = run(de, MLP_X, &n2);
    assert_int_equal(n1, n2);
    th_assert_close(ys, yd, n1, 1e-5);
    free(ys);
    free(yd);
}


/* Pruning then int8: the report lists the prunable layers as int8, their zeros kept; the pruned
   layers are stored sparse int8, and give bit for bit the outputs of the same conversion stored
   dense (--sparse-density 0: the dense int8 kernels, which never see the sparse storage), in a
   smaller file. */
static void test_prune_int8(void **state) {
    (void)state;
    const char *out = th_tmp("digits_p8.mdl"), *rep = th_tmp("digits_p8.json"), *dense = th_tmp("digits_p8d.mdl");
    assert_int_equal(th_system("'%s' %s -o '%s' -q --prune magnitude:0.8 --quantize int8 --calibration %s "
                               "--max-calibration-rows 50 --report '%s'",
                               th_tool("mdeploy-convert"), DIGITS, out, DIGITS_CALIB, rep), 0);
    assert_int_equal(th_system("'%s' %s -o '%s' -q --prune magnitude:0.8 --quantize int8 --calibration %s "
                               "--max-calibration-rows 50 --sparse-density 0",
                               th_tool("mdeploy-convert"), DIGITS, dense, DIGITS_CALIB), 0);
    cJSON *j = read_json(rep), *l;
    assert_non_null(cJSON_GetObjectItem(j, "method")); /* the quantization report is still there */
    double zeros = 0, total = 0;
    int n = 0, nsparse = 0;
    cJSON_ArrayForEach(l, cJSON_GetObjectItem(j, "pruning")) {
        const char *storage = cJSON_GetObjectItem(l, "storage")->valuestring;
        double density = cJSON_GetObjectItem(l, "block_density")->valuedouble;
        /* the default int8 threshold (src/quant/prune_host.c) */
        assert_string_equal(storage, density < 0.3 ? "sparse int8" : "dense int8");
        nsparse += density < 0.3;
        double w = cJSON_GetObjectItem(l, "weights")->valuedouble;
        zeros += w * cJSON_GetObjectItem(l, "sparsity")->valuedouble;
        total += w;
        n++;
    }
    cJSON_Delete(j);
    assert_true(n >= 1);
    assert_true(nsparse >= 2); /* the 3x3 convolution and the classifier */
    assert_true(zeros >= 0.8 * total - 0.5);
    int64_t n1, n2;
    float *y1 = run(out, DIGITS_CALIB, &n1), *y2 = run(dense, DIGITS_CALIB, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(y1, y2, sizeof(float) * (size_t)n1);
    print_message("    sparse int8 %zu B, dense int8 %zu B\n", th_file_size(out), th_file_size(dense));
    assert_true(th_file_size(out) < th_file_size(dense));
    free(y1);
    free(y2);
}

static void test_bad_input(void **state) {
    (void)state;
    const char *out = th_tmp("bad.mdl"), *se = th_tmp("bad.err");
    static const struct {
        const char *args, *msg;
    } cases[] = {
        {"--prune magnitude:1", "[0, 1)"},
        {"--prune magnitude:1.5", "[0, 1)"},
        {"--prune magnitude:-0.2", "[0, 1)"},
        {"--prune magnitude:nan", "[0, 1)"},
        {"--prune magnitude:", "magnitude:S"},
        {"--prune 0.8", "magnitude:S"},
        {"--prune channels:1", "channels:S"},
        {"--prune channels:-0.1", "channels:S"},
        {"--prune columns:0.3", "magnitude:S"},
        {"--prune-layer nope=0.5", "no node of that name"},
        {"--prune-layer /net/net.5/Sigmoid=0.5", "cannot be pruned"},
        {"--prune-layer /net/net.0/Gemm=1", "[0, 1)"},
        {"--prune-layer /net/net.0/Gemm=x", "NAME=SPARSITY"},
        {"--prune-layer /net/net.0/Gemm", "NAME=S"},
        {"--sparse-density -1", "number >= 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        remove(out);
        int rc = th_system("'%s' %s -o '%s' %s 2> '%s' > /dev/null", th_tool("mdeploy-convert"), MLP, out, cases[i].args, se);
        char *text = th_read_file(se, NULL);
        if (rc != 1 || !strstr(text, cases[i].msg) || th_exists(out))
            fail_msg("%s: exit %d, file %s, message '%s' (want '%s')", cases[i].args, rc,
                     th_exists(out) ? "written" : "absent", text, cases[i].msg);
        free(text);
    }
    /* the library checks what the CLI cannot */
    mdl_convert_options o = mdl_convert_options_default();
    mdl_error err;
    double bad[] = {NAN, 1.0, -1e-9, INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.prune.sparsity = bad[i];
        assert_int_equal(mdl_convert_onnx(MLP, out, &o, NULL, &err), MDL_INVALID_ARGUMENT);
        assert_false(th_exists(out));
    }
    o.prune.sparsity = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.prune.channels = bad[i];
        assert_int_equal(mdl_convert_onnx(MLP, out, &o, NULL, &err), MDL_INVALID_ARGUMENT);
        assert_non_null(strstr(err.msg, "channel share"));
        assert_false(th_exists(out));
    }
    o.prune.channels = 0;
    o.prune.sparsity = 0.5;
    o.prune.layers = "/net/net.0/Gemm=0.9,,";
    assert_int_equal(mdl_convert_onnx(MLP, out, &o, NULL, &err), MDL_INVALID_ARGUMENT);
    assert_false(th_exists(out));
    o.prune.layers = "/net/net.0/Gemm=0.9,/net/net.2/Gemm=0.25";
    assert_int_equal(mdl_convert_onnx(MLP, out, &o, NULL, &err), MDL_OK);
    assert_true(th_exists(out));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_prune),
        cmocka_unit_test(test_prune_int8),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
