/* Dynamic shapes through the converter: models exported from PyTorch with dynamic_axes
   (tests/models/dynamic/, written by make_dynamic_fixtures.py) are converted once, without
   --input-shape, and one session is resized to every case in the manifest (batch 1, 7, 64 and
   several sequence lengths) and compared with ONNX Runtime's outputs:
       max |got - ref| <= 1e-4 * max(1, max |ref|).
   Also: the digits demo model scores all its held-back images in one call; --max-shape bounds;
   a graph whose constants depend on a dynamic size is refused, and converts once fixed.
   Run from the repo root (tests/run.sh does). */
#include "common/harness.h"

#include "mdeploy/convert.h"
#include "mdeploy/npy.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MANIFEST "tests/models/dynamic/manifest.json"
#define TOL 1e-4

static void read_npy(const char *path, mdl_npy *a) {
    mdl_error err;
    if (mdl_npy_read(path, a, &err) != MDL_OK) fail_msg("%s", err.msg);
}

static mdl_model *convert_load(const char *onnx, const mdl_convert_options *o, mdl_convert_report *rep) {
    char out[512];
    snprintf(out, sizeof out, "%s", th_tmp("dyn.mdl"));
    mdl_error err;
    mdl_status st = mdl_convert_onnx(onnx, out, o, rep, &err);
    if (st) fail_msg("converting %s: %s", onnx, err.msg);
    mdl_model *m;
    if (mdl_model_load_file(out, NULL, &m, &err)) fail_msg("loading %s: %s", out, err.msg);
    unlink(out);
    return m;
}

/* Resizes s to the arrays' shapes, runs, returns max error / bound over all outputs. */
static double run_case(mdl_session *s, mdl_model *m, int nin, mdl_npy *in, int nout, mdl_npy *ref,
                       const int *out_idx, char *note, size_t note_size) {
    mdl_shape shapes[8];
    memset(shapes, 0, sizeof shapes);
    mdl_error err;
    for (int k = 0; k < nin; k++) {
        shapes[k].rank = in[k].rank;
        memcpy(shapes[k].dims, in[k].dims, sizeof(int64_t) * (size_t)in[k].rank);
    }
    if (mdl_session_resize(s, nin, shapes, &err)) fail_msg("resize: %s", err.msg);
    for (int k = 0; k < nin; k++)
        if (mdl_session_set_input(s, k, in[k].data, in[k].bytes, &err)) fail_msg("input %d: %s", k, err.msg);
    if (mdl_session_run(s)) fail_msg("run: %s", mdl_session_message(s));
    double worst = 0;
    for (int k = 0; k < nout; k++) {
        mdl_tensor_info ti;
        assert_int_equal(mdl_session_output_info(s, out_idx[k], &ti), MDL_OK);
        assert_int_equal(ti.rank, ref[k].rank);
        for (int d = 0; d < ti.rank; d++) assert_int_equal(ti.dims[d], ref[k].dims[d]);
        const float *got = mdl_session_output_data(s, out_idx[k]), *r = ref[k].data;
        size_t n = ref[k].bytes / sizeof(float);
        double e = 0, rm = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)got[i] - r[i]);
            if (!(d <= e)) e = d;
            if (fabs(r[i]) > rm) rm = fabs(r[i]);
        }
        double ratio = e / (TOL * (rm > 1 ? rm : 1));
        if (!(ratio <= worst)) worst = ratio;
        size_t len = strlen(note);
        snprintf(note + len, note_size - len, " err %.2g", e);
    }
    return worst;
}

static void test_manifest_models(void **state) {
    size_t size;
    char *text = th_read_file(MANIFEST, &size);
    if (!text) fail_msg("cannot read %s (run from the repo root)", MANIFEST);
    cJSON *man = cJSON_Parse(text);
    free(text);
    const cJSON *model;
    int nmodels = 0;
    cJSON_ArrayForEach(model, cJSON_GetObjectItem(man, "models")) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(model, "name"));
        const char *onnx = cJSON_GetStringValue(cJSON_GetObjectItem(model, "onnx"));
        assert_non_null(name);
        assert_non_null(onnx);
        mdl_convert_report rep;
        mdl_model *m = convert_load(onnx, NULL, &rep);
        /* the dynamic dims stayed dynamic, and the report says so */
        assert_true(rep.nsymbols >= 1);
        assert_non_null(strstr(rep.dynamic, "[0]="));
        mdl_tensor_info ti;
        assert_int_equal(mdl_model_input_info(m, 0, &ti), MDL_OK);
        assert_int_equal(ti.dims[0], -1);
        assert_non_null(ti.dim_names);
        assert_true(ti.dim_names[0] && *ti.dim_names[0]);
        if (!strcmp(name, "dyn_nopad")) {
            /* a 3x3 convolution without padding is not valid at 1: sessions start at the sizes
               the converter checked; smaller ones fail naming the convolution */
            assert_non_null(strstr(rep.dynamic, "not valid at 1"));
            int64_t initial;
            assert_true(mdl_model_symbol(m, 1, NULL, NULL, &initial));
            assert_true(initial >= 3);
            mdl_session *s2;
            mdl_error err;
            mdl_shape small = {4, {1, 3, 2, 9}};
            assert_int_equal(mdl_session_create(m, NULL, &s2, NULL), MDL_OK);
            assert_int_equal(mdl_session_resize(s2, 1, &small, &err), MDL_SHAPE);
            assert_non_null(strstr(err.msg, "Conv"));
            mdl_session_free(s2);
        } else {
            assert_string_equal(ti.dim_names[0], "batch");
        }
        mdl_session *s;
        assert_int_equal(mdl_session_create(m, NULL, &s, NULL), MDL_OK);
        const cJSON *cs;
        int ncases = 0;
        cJSON_ArrayForEach(cs, cJSON_GetObjectItem(model, "cases")) {
            mdl_npy in[8], ref[8];
            int out_idx[8], nin = 0, nout = 0;
            const cJSON *io;
            char note[256] = "";
            cJSON_ArrayForEach(io, cJSON_GetObjectItem(cs, "inputs")) {
                assert_true(nin < 8);
                assert_int_equal(mdl_model_input_index(m, cJSON_GetStringValue(cJSON_GetObjectItem(io, "name"))), nin);
                read_npy(cJSON_GetStringValue(cJSON_GetObjectItem(io, "file")), &in[nin]);
                size_t len = strlen(note);
                for (int k = 0; k < in[nin].rank; k++)
                    snprintf(note + len + strlen(note + len), sizeof note - len - strlen(note + len), "%s%lld",
                             k ? "x" : "", (long long)in[nin].dims[k]);
                nin++;
            }
            cJSON_ArrayForEach(io, cJSON_GetObjectItem(cs, "outputs")) {
                assert_true(nout < 8);
                out_idx[nout] = mdl_model_output_index(m, cJSON_GetStringValue(cJSON_GetObjectItem(io, "name")));
                assert_true(out_idx[nout] >= 0);
                read_npy(cJSON_GetStringValue(cJSON_GetObjectItem(io, "file")), &ref[nout]);
                nout++;
            }
            double r = run_case(s, m, nin, in, nout, ref, out_idx, note, sizeof note);
            printf("dynamic %-9s %-12s%s\n", name, note, "");
            fflush(stdout);
            for (int k = 0; k < nin; k++) mdl_npy_free(&in[k]);
            for (int k = 0; k < nout; k++) mdl_npy_free(&ref[k]);
            if (!(r <= 1)) fail_msg("%s at %s: differs from ONNX Runtime beyond %g relative", name, note, TOL);
            ncases++;
        }
        assert_true(ncases >= 3);
        mdl_session_free(s);
        mdl_model_free(m);
        nmodels++;
    }
    assert_int_equal(nmodels, 4);
    cJSON_Delete(man);
}

/* The demo model (dynamic batch "N") scores all 20 held-back images in one run. */
static void test_digits_in_one_call(void **state) {
    mdl_convert_report rep;
    mdl_model *m = convert_load("examples/digits/digits_cnn.onnx", NULL, &rep);
    mdl_npy img, ref;
    read_npy("examples/digits/images.npy", &img);
    read_npy("tests/models/digits.out0.npy", &ref);
    mdl_session_options o = mdl_session_options_default();
    mdl_shape sh = {img.rank, {0}};
    memcpy(sh.dims, img.dims, sizeof(int64_t) * (size_t)img.rank);
    o.ninput_shapes = 1;
    o.input_shapes = &sh;
    mdl_session *s;
    mdl_error err;
    if (mdl_session_create(m, &o, &s, &err)) fail_msg("%s", err.msg);
    int idx = 0;
    char note[128] = "";
    double r = run_case(s, m, 1, &img, 1, &ref, &idx, note, sizeof note);
    printf("dynamic digits    %lld images in one run:%s\n", (long long)img.dims[0], note);
    assert_true(r <= 1);
    mdl_session_free(s);
    mdl_npy_free(&img);
    mdl_npy_free(&ref);
    mdl_model_free(m);
}

/* --max-shape bounds a symbol; the bound is enforced by the session. */
static void test_max_shape(void **state) {
    mdl_convert_options o = mdl_convert_options_default();
    mdl_error err;
    assert_int_equal(mdl_parse_input_shape("ids=8x40", &o.max_shapes[0], &err), MDL_OK);
    o.nmax_shapes = 1;
    mdl_convert_report rep;
    mdl_model *m = convert_load("tests/models/dynamic/dyn_text.onnx", &o, &rep);
    assert_string_equal(rep.dynamic, "ids[0]=batch<=8, ids[1]=seq<=40");
    const char *name;
    int64_t max;
    assert_true(mdl_model_symbol(m, 1, &name, &max, NULL));
    assert_string_equal(name, "seq");
    assert_int_equal(max, 40);
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, NULL, &s, NULL), MDL_OK);
    mdl_shape ok = {2, {8, 40}}, over = {2, {8, 41}}, rank = {1, {8}};
    assert_int_equal(mdl_session_resize(s, 1, &ok, &err), MDL_OK);
    assert_int_equal(mdl_session_resize(s, 1, &over, &err), MDL_SHAPE);
    assert_non_null(strstr(err.msg, "'seq'"));
    assert_int_equal(mdl_session_resize(s, 1, &rank, &err), MDL_SHAPE);
    /* still usable at 8x40 */
    memset(mdl_session_input_data(s, 0), 0, 8 * 40 * sizeof(int64_t));
    assert_int_equal(mdl_session_run(s), MDL_OK);
    mdl_session_free(s);
    mdl_model_free(m);
    /* an input the model does not have */
    assert_int_equal(mdl_parse_input_shape("nope=8x40", &o.max_shapes[0], &err), MDL_OK);
    assert_int_equal(mdl_convert_onnx("tests/models/dynamic/dyn_text.onnx", th_tmp("x.mdl"), &o, NULL, &err),
                     MDL_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "--max-shape"));
}

/* A constant made from the input's size (Shape -> ConstantOfShape) cannot be recomputed by the
   runtime: refused with a message naming it; fixing the dim converts it. */
static void test_refuses_size_dependent_constants(void **state) {
    const char *onnx = "tests/models/dynamic/dyn_refused.onnx";
    mdl_error err;
    mdl_status st = mdl_convert_onnx(onnx, th_tmp("r.mdl"), NULL, NULL, &err);
    assert_int_equal(st, MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "dynamic dim"));
    assert_non_null(strstr(err.msg, "--input-shape"));
    assert_int_equal(access(th_tmp("r.mdl"), F_OK), -1);
    mdl_convert_options o = mdl_convert_options_default();
    assert_int_equal(mdl_parse_input_shape("x=3x4", &o.input_shapes[0], &err), MDL_OK);
    o.ninput_shapes = 1;
    mdl_convert_report rep;
    mdl_model *m = convert_load(onnx, &o, &rep);
    assert_int_equal(rep.nsymbols, 0);
    assert_int_equal(mdl_model_symbol_count(m), 0);
    mdl_model_free(m);
}

/* The command-line tools: mdeploy-convert says which dims stay dynamic; mdeploy-run runs a
   dynamic model at the .npy's shape and names the dim of a shape beyond a bound. */
static void test_cli(void **state) {
    char mdl[512], out[512], ids[512];
    snprintf(mdl, sizeof mdl, "%s", th_tmp("cli.mdl"));
    snprintf(out, sizeof out, "%s", th_tmp("cli.txt"));
    snprintf(ids, sizeof ids, "%s", th_tmp("ids.npy"));
    assert_int_equal(th_system("'%s' tests/models/dynamic/dyn_text.onnx -o '%s' --max-shape ids=16x64 > '%s'",
                               th_tool("mdeploy-convert"), mdl, out), 0);
    size_t size;
    char *text = th_read_file(out, &size);
    assert_non_null(strstr(text, "dynamic: ids[0]=batch<=16, ids[1]=seq<=64"));
    free(text);
    int64_t x[5 * 9] = {0};
    assert_int_equal(mdl_npy_write(ids, MDL_DTYPE_INT64, 2, (int64_t[]){5, 9}, x, NULL), MDL_OK);
    assert_int_equal(th_system("'%s' '%s' -i '%s' > '%s'", th_tool("mdeploy-run"), mdl, ids, out), 0);
    text = th_read_file(out, &size);
    assert_non_null(strstr(text, "float32 [5,3]"));
    free(text);
    int64_t y[2 * 65] = {0};
    assert_int_equal(mdl_npy_write(ids, MDL_DTYPE_INT64, 2, (int64_t[]){2, 65}, y, NULL), MDL_OK);
    const char *msg;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s' -i '%s'", th_tool("mdeploy-run"), mdl, ids);
    assert_true(th_run_stderr(&msg, cmd) != 0);
    assert_non_null(strstr(msg, "dim 1 ('seq') is 65, above its bound 64"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest_models),
        cmocka_unit_test(test_digits_in_one_call),
        cmocka_unit_test(test_max_shape),
        cmocka_unit_test(test_refuses_size_dependent_constants),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
