/* ONNX conformance: every fixture in tests/models/ (listed in manifest.json, written by
   make_fixtures.py) is converted with mdl_convert_onnx, loaded, run on its stored inputs and
   compared with the stored ONNX Runtime outputs:
       max |got - ref| <= 1e-4 * max(1, max |ref|)        per output tensor.
   Each fixture's max error is printed on stdout (the numbers quoted in the issue notes).  An
   output with a "framework_file" (the Keras 3 fixtures: the framework's own outputs) is checked
   against that reference too, with the same bound.
   Run from the repo root (tests/run.sh does): paths in the manifest are relative to it. */
#include "common/harness.h"

#include "mdeploy/convert.h"
#include "mdeploy/npy.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MANIFEST "tests/models/manifest.json"
#define TOL 1e-4

/* Manifests: the main one, and PyTorch exports (tests/models/make_torch_fixtures.py, whose
   entries also carry "torch_outputs", compared the same way).  A fixture name "DIR/NAME" is NAME
   in manifest DIR/ (tests/models/DIR/manifest.json). */
static const char *const manifest_paths[] = {MANIFEST, "tests/models/torch/manifest.json"};
static const char *const manifest_dirs[] = {"", "torch/"};
#define NMANIFESTS 2

/* The fixtures this test expects.  Listed here, not only taken from the manifest, so that a
   manifest that lost an entry fails instead of silently testing less. */
static const char *const fixture_names[] = {
    "mlp",
    "mlp_b64",
    "mnist_cnn",
    "text_lstm",
    "recommender",
    "bilstm",
    "gru",
    "mobilenet_block",
    "digits",
    /* Keras 3 via tf2onnx (make_keras3_fixtures.py): checked against Keras and ORT */
    "keras3_text_classifier",
    "keras3_recommender",
    "keras3_gru_text",
    "keras3_bilstm",
    "keras3_conv1d_text",
    "keras3_mobilenet_block",
    "torch/gelu_mlp",
    "torch/layernorm13",
    "torch/layernorm17",
    "torch/resize_nearest",
    "torch/resize_linear",
    "torch/resize_linear_ac",
    "torch/bert",
    "torch/bert_dyn",
    "torch/bert_dyn_3x1",
};
#define NFIXTURES (sizeof fixture_names / sizeof fixture_names[0])

/* Parsed once by the group setup; read-only afterwards. */
static cJSON *manifests[NMANIFESTS];

static int load_manifest(void **state) {
    (void)state;
    for (int m = 0; m < NMANIFESTS; m++) {
        size_t size;
        char *text = th_read_file(manifest_paths[m], &size);
        if (!text) {
            fprintf(stderr, "cannot read %s (run the test from the repo root)\n",
                    manifest_paths[m]);
            return -1;
        }
        manifests[m] = cJSON_Parse(text);
        free(text);
        if (!cJSON_IsObject(manifests[m]) ||
            !cJSON_IsArray(cJSON_GetObjectItem(manifests[m], "fixtures"))) {
            fprintf(stderr, "%s: not a fixture manifest\n", manifest_paths[m]);
            return -1;
        }
    }
    return 0;
}

static int free_manifest(void **state) {
    (void)state;
    for (int m = 0; m < NMANIFESTS; m++) {
        cJSON_Delete(manifests[m]);
        manifests[m] = NULL;
    }
    return 0;
}

static const cJSON *find_fixture(const char *name) {
    int m = NMANIFESTS - 1;
    while (m > 0 && strncmp(name, manifest_dirs[m], strlen(manifest_dirs[m])))
        m--;
    name += strlen(manifest_dirs[m]);
    const cJSON *fx;
    cJSON_ArrayForEach(fx, cJSON_GetObjectItem(manifests[m], "fixtures")) {
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

static void fmt_dims(char *buf, size_t n, int32_t rank, const int64_t *dims) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int32_t i = 0; i < rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* The model's tensor must have exactly the .npy's dtype and shape: the converter promises to keep
   the ONNX model's input and output signatures (a dynamic dim, -1, takes any size). */
static void check_signature(const char *fixture, const char *what, const mdl_tensor_info *ti,
                            const mdl_npy *a) {
    bool same = ti->dtype == a->dtype && ti->rank == a->rank;
    for (int32_t i = 0; same && i < a->rank; i++)
        same = ti->dims[i] == a->dims[i] || ti->dims[i] == -1;
    if (!same) {
        char m[128], f[128];
        fmt_dims(m, sizeof m, ti->rank, ti->dims);
        fmt_dims(f, sizeof f, a->rank, a->dims);
        fail_msg("%s: %s '%s' is %s %s in the model, %s %s in the fixture", fixture, what, ti->name,
                 mdl_dtype_name(ti->dtype), m, mdl_dtype_name(a->dtype), f);
    }
}

static void read_npy(const char *path, mdl_npy *a) {
    mdl_error err;
    if (mdl_npy_read(path, a, &err) != MDL_OK) fail_msg("%s", err.msg);
}

static void test_fixture(void **state) {
    const char *name = *state;
    const cJSON *fx = find_fixture(name);
    if (!fx)
        fail_msg("fixture '%s' is not in its manifest: rerun tests/models/make_fixtures.py", name);
    const char *onnx = str_item(fx, "onnx");
    const cJSON *inputs = cJSON_GetObjectItem(fx, "inputs");
    const cJSON *outputs = cJSON_GetObjectItem(fx, "outputs");
    assert_true(cJSON_IsArray(inputs) && cJSON_IsArray(outputs));

    mdl_error err;
    mdl_convert_options o = mdl_convert_options_default();
    const cJSON *shape;
    cJSON_ArrayForEach(shape, cJSON_GetObjectItem(fx, "input_shapes")) {
        assert_true(cJSON_IsString(shape) && o.ninput_shapes < MDL_CONVERT_MAX_SHAPES);
        if (mdl_parse_input_shape(shape->valuestring, &o.input_shapes[o.ninput_shapes++], &err) !=
            MDL_OK)
            fail_msg("%s: input shape '%s': %s", name, shape->valuestring, err.msg);
    }

    char mdl[64];
    snprintf(mdl, sizeof mdl, "%s.mdl", name);
    for (char *p = mdl; *p; p++)
        *p = *p == '/' ? '_' : *p; /* torch/x -> torch_x */
    const char *out_path = th_tmp(mdl);
    char out_copy[512];
    snprintf(out_copy, sizeof out_copy, "%s", out_path); /* th_tmp's buffers rotate */
    mdl_convert_report rep;
    memset(&rep, 0, sizeof rep);
    mdl_status st = mdl_convert_onnx(onnx, out_copy, &o, &rep, &err);
    if (st != MDL_OK)
        fail_msg("%s: converting %s: %s: %s", name, onnx, mdl_status_str(st), err.msg);

    mdl_model *m;
    st = mdl_model_load_file(out_copy, NULL, &m, &err);
    if (st != MDL_OK)
        fail_msg("%s: loading the converted model: %s: %s", name, mdl_status_str(st), err.msg);
    mdl_session *s;
    st = mdl_session_create(m, NULL, &s, &err);
    if (st != MDL_OK) fail_msg("%s: session: %s: %s", name, mdl_status_str(st), err.msg);
    assert_int_equal(mdl_model_input_count(m), cJSON_GetArraySize(inputs));
    assert_int_equal(mdl_model_output_count(m), cJSON_GetArraySize(outputs));

    const cJSON *io;
    cJSON_ArrayForEach(io, inputs) {
        const char *iname = str_item(io, "name");
        int idx = mdl_model_input_index(m, iname);
        if (idx < 0) fail_msg("%s: the converted model has no input '%s'", name, iname);
        mdl_tensor_info ti;
        assert_int_equal(mdl_model_input_info(m, idx, &ti), MDL_OK);
        mdl_npy a;
        read_npy(str_item(io, "file"), &a);
        check_signature(name, "input", &ti, &a);
        /* dynamic dims take the fixture's sizes */
        mdl_shape shapes[8];
        assert_true(idx < 8);
        for (int k = 0; k <= idx; k++) {
            mdl_tensor_info cur;
            assert_int_equal(mdl_session_input_info(s, k, &cur), MDL_OK);
            shapes[k].rank = cur.rank;
            memcpy(shapes[k].dims, cur.dims, sizeof(int64_t) * (size_t)cur.rank);
        }
        shapes[idx].rank = a.rank;
        memcpy(shapes[idx].dims, a.dims, sizeof(int64_t) * (size_t)a.rank);
        if ((st = mdl_session_resize(s, idx + 1, shapes, &err)) != MDL_OK)
            fail_msg("%s: input '%s': %s", name, iname, err.msg);
        st = mdl_session_set_input(s, idx, a.data, a.bytes, &err);
        mdl_npy_free(&a);
        if (st != MDL_OK) fail_msg("%s: input '%s': %s", name, iname, err.msg);
    }

    st = mdl_session_run(s);
    if (st != MDL_OK) fail_msg("%s: run: %s: %s", name, mdl_status_str(st), mdl_session_message(s));

    /* Compare every output before failing so the printed line has the whole picture; against
       ORT's outputs, then (PyTorch fixtures) against torch's. */
    double worst_ratio = 0;
    char report[1024] = "";
    size_t rlen = 0;
    const cJSON *refsets[2] = {outputs, cJSON_GetObjectItem(fx, "torch_outputs")};
    for (int rs = 0; rs < 2; rs++)
        cJSON_ArrayForEach(io, refsets[rs]) {
            const char *oname = str_item(io, "name");
            int idx = mdl_model_output_index(m, oname);
            if (idx < 0) fail_msg("%s: the converted model has no output '%s'", name, oname);
            mdl_tensor_info ti;
            assert_int_equal(mdl_session_output_info(s, idx, &ti), MDL_OK);
            const char *refs[2] = {str_item(io, "file"),
                                   cJSON_GetStringValue(cJSON_GetObjectItem(io, "framework_file"))};
            for (int k = 0; k < 2 && refs[k]; k++) {
                mdl_npy ref;
                read_npy(refs[k], &ref);
                check_signature(name, "output", &ti, &ref);
                assert_int_equal(ref.dtype, MDL_DTYPE_FLOAT32);
                const float *got = mdl_session_output_data(s, idx);
                const float *r = ref.data;
                size_t n = ref.bytes / sizeof(float);
                double err_max = 0, ref_max = 0;
                bool nan = false;
                for (size_t i = 0; i < n; i++) {
                    double d = fabs((double)got[i] - (double)r[i]);
                    nan |= isnan(d);
                    if (d > err_max) err_max = d;
                    if (fabs((double)r[i]) > ref_max) ref_max = fabs((double)r[i]);
                }
                if (nan) err_max = NAN; /* fails the bound below */
                mdl_npy_free(&ref);
                double bound = TOL * (ref_max > 1 ? ref_max : 1);
                double ratio = err_max / bound;
                if (!(ratio <= worst_ratio)) worst_ratio = ratio;
                if (rlen < sizeof report)
                    rlen +=
                        (size_t)snprintf(report + rlen, sizeof report - rlen,
                                         "  %s%s%s: max abs err %.3g (max |ref| %.3g, bound %.3g)",
                                         rs ? "vs torch " : "", oname, k ? " vs framework" : "",
                                         err_max, ref_max, bound);
            }
        }
    printf("conformance %-16s nodes %d -> %d%s\n", name, rep.onnx_nodes, rep.nodes_out, report);
    fflush(stdout);

    mdl_session_free(s);
    mdl_model_free(m);
    unlink(out_copy);
    if (!(worst_ratio <= 1))
        fail_msg("%s: outputs differ from the reference beyond %g relative", name, TOL);
}

/* Every manifest entry must be one this test runs (a new fixture needs a line above). */
static void test_manifest_complete(void **state) {
    (void)state;
    const cJSON *fx;
    int n = 0;
    for (int m = 0; m < NMANIFESTS; m++)
        cJSON_ArrayForEach(fx, cJSON_GetObjectItem(manifests[m], "fixtures")) {
            char name[128];
            snprintf(name, sizeof name, "%s%s", manifest_dirs[m], str_item(fx, "name"));
            bool known = false;
            for (size_t i = 0; i < NFIXTURES; i++)
                known |= strcmp(fixture_names[i], name) == 0;
            if (!known)
                fail_msg("%s lists '%s', which test_conformance.c does not run", manifest_paths[m],
                         name);
            n++;
        }
    assert_int_equal(n, (int)NFIXTURES);
}

int main(void) {
    struct CMUnitTest tests[NFIXTURES + 1];
    for (size_t i = 0; i < NFIXTURES; i++) {
        struct CMUnitTest t = cmocka_unit_test_prestate(test_fixture, (void *)fixture_names[i]);
        t.name = fixture_names[i];
        tests[i] = t;
    }
    tests[NFIXTURES] = (struct CMUnitTest)cmocka_unit_test(test_manifest_complete);
    return cmocka_run_group_tests(tests, load_manifest, free_manifest);
}
