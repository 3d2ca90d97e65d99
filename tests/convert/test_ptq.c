/* Post-training quantization (issue #11): mdl_convert_onnx with quant.mode = INT8.
   Oracles are independent of the quantizer: the labels of the held-back digits images, ONNX
   Runtime's float outputs and its quantize_static accuracy (tests/models/quant/quant_manifest.json),
   the float model converted without quantization, and labels computed in NumPy for the made-up
   outlier model (tests/models/make_ptq_fixtures.py).  Every accuracy is measured here by running
   the written file, not read from the report (the report is then checked against it).
   Run from the repo root. */
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

#define DIGITS "examples/digits/digits_cnn.onnx"
#define DIGITS_CALIB "examples/digits/calibration.npy"
#define DIGITS_X "tests/models/quant/digits_test.images.npy"
#define DIGITS_Y "tests/models/quant/digits_test.labels.npy"
#define OUTLIER "tests/models/ptq/outlier.onnx"
#define OUTLIER_X "tests/models/ptq/outlier_eval.x.npy"
#define OUTLIER_Y "tests/models/ptq/outlier_eval.y.npy"

static mdl_convert_options int8_opts(const char *calib) {
    mdl_convert_options o = mdl_convert_options_default();
    o.quant.mode = MDL_QUANTIZE_INT8;
    o.quant.calibration = calib;
    return o;
}

static void convert_ok(const char *onnx, const char *out, const mdl_convert_options *o, mdl_convert_report *r) {
    mdl_error err;
    mdl_status st = mdl_convert_onnx(onnx, out, o, r, &err);
    if (st) fail_msg("%s: %s", onnx, err.msg);
}

/* Runs a one-input model row by row (batch 1) over x (rows = dims[0]); outputs of every row
   concatenated into *y (malloc'd), per_row values each. */
static void run_rows(const char *mdl, const char *xpath, float **y, int64_t *rows, int64_t *per_row) {
    mdl_error err;
    mdl_model *m;
    mdl_session *s;
    mdl_npy x;
    assert_int_equal(mdl_model_load_file(mdl, NULL, &m, &err), MDL_OK);
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    assert_int_equal(mdl_npy_read(xpath, &x, &err), MDL_OK);
    mdl_tensor_info ii, oi;
    /* the session's shapes: a dynamic batch starts at 1 */
    assert_int_equal(mdl_session_input_info(s, 0, &ii), MDL_OK);
    assert_int_equal(mdl_session_output_info(s, 0, &oi), MDL_OK);
    assert_int_equal(ii.dims[0], 1);
    *rows = x.dims[0];
    *per_row = (int64_t)(oi.bytes / sizeof(float));
    *y = malloc(oi.bytes * (size_t)*rows);
    for (int64_t i = 0; i < *rows; i++) {
        memcpy(mdl_session_input_data(s, 0), (const uint8_t *)x.data + (size_t)i * ii.bytes, ii.bytes);
        assert_int_equal(mdl_session_run(s), MDL_OK);
        memcpy(*y + i * *per_row, mdl_session_output_data(s, 0), oi.bytes);
    }
    mdl_npy_free(&x);
    mdl_session_free(s);
    mdl_model_free(m);
}

/* Top-1 accuracy (percent) of a one-input classifier on x against integer labels y. */
static double accuracy(const char *mdl, const char *xpath, const char *ypath) {
    float *out;
    int64_t rows, per;
    run_rows(mdl, xpath, &out, &rows, &per);
    mdl_npy lab;
    mdl_error err;
    assert_int_equal(mdl_npy_read(ypath, &lab, &err), MDL_OK);
    assert_int_equal(lab.dims[0], rows);
    int64_t ok = 0;
    for (int64_t i = 0; i < rows; i++) {
        int64_t b = 0;
        for (int64_t k = 1; k < per; k++)
            if (out[i * per + k] > out[i * per + b]) b = k;
        ok += b == ((const int64_t *)lab.data)[i];
    }
    free(out);
    mdl_npy_free(&lab);
    return 100.0 * (double)ok / (double)rows;
}

static double ort_digits_accuracy(void) {
    size_t size;
    char *text = th_read_file("tests/models/quant/quant_manifest.json", &size);
    assert_non_null(text);
    cJSON *m = cJSON_Parse(text);
    free(text);
    double acc = -1;
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(m, "fixtures")) {
        const cJSON *n = cJSON_GetObjectItem(f, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, "digits_qdq_s8"))
            acc = 100.0 * cJSON_GetObjectItem(f, "ort_accuracy")->valuedouble;
    }
    cJSON_Delete(m);
    assert_true(acc > 0);
    return acc;
}

static const mdl_quant_layer *layer(const mdl_quant_report *q, const char *name) {
    for (int32_t i = 0; i < q->nlayers; i++)
        if (!strcmp(q->layers[i].name, name)) return &q->layers[i];
    fail_msg("no layer '%s' in the report", name);
    return NULL;
}

/* The must-show: calibrated on training images only, within 0.3 points of float on the held-back
   images and at least ONNX Runtime's quantize_static accuracy (same model, same 200 images). */
static void test_digits_accuracy(void **state) {
    (void)state;
    const char *fpath = th_tmp("ptq_digits_f32.mdl"), *qpath = th_tmp("ptq_digits_int8.mdl");
    mdl_convert_report r;
    convert_ok(DIGITS, fpath, NULL, &r);
    mdl_convert_options o = int8_opts(DIGITS_CALIB);
    o.quant.eval_inputs = DIGITS_X;
    o.quant.eval_labels = DIGITS_Y;
    convert_ok(DIGITS, qpath, &o, &r);
    assert_non_null(r.quant);
    double af = accuracy(fpath, DIGITS_X, DIGITS_Y), aq = accuracy(qpath, DIGITS_X, DIGITS_Y);
    double ort = ort_digits_accuracy();
    printf("    digits: float %.2f%%  mdeploy int8 %.2f%%  ORT quantize_static %.2f%%  size %zu -> %zu bytes\n", af,
           aq, ort, th_file_size(fpath), th_file_size(qpath));
    assert_true(aq >= af - 0.3 - 1e-9);
    assert_true(aq >= ort - 1e-9);
    /* the report says what was measured here */
    assert_true(fabs(r.quant->int8_accuracy - aq) < 1e-9);
    assert_true(fabs(r.quant->float_accuracy - af) < 1e-9);
    assert_int_equal(r.quant->eval_rows, 360);
    assert_int_equal(r.quant->calibration_rows, 200);
    assert_false(r.quant->eval_is_calibration);
    assert_true(r.quant->top1_agreement >= 99.0);
    /* every conv / dense layer int8, and close to float */
    int n8 = 0;
    for (int32_t i = 0; i < r.quant->nlayers; i++) {
        const mdl_quant_layer *l = &r.quant->layers[i];
        if (!strcmp(l->op, "Conv2D") || !strcmp(l->op, "FullyConnected")) {
            assert_string_equal(l->precision, "int8");
            assert_true(l->sqnr_db > 25.0);
            n8++;
        }
    }
    assert_int_equal(n8, 3);
    assert_true(th_file_size(qpath) * 2 < th_file_size(fpath));
    double acc1 = r.quant->int8_accuracy;
    mdl_convert_report_free(&r);
    assert_null(r.quant);
    /* converted at batch 32: rows are batched (the last batch padded), same result */
    mdl_error err;
    assert_int_equal(mdl_parse_input_shape("image=32x1x8x8", &o.input_shapes[0], &err), MDL_OK);
    o.ninput_shapes = 1;
    convert_ok(DIGITS, th_tmp("ptq_digits_b32.mdl"), &o, &r);
    assert_true(r.quant->int8_accuracy == acc1);
    assert_int_equal(r.quant->eval_rows, 360);
    mdl_convert_report_free(&r);
}

/* Each method gives a working model, and each one actually chooses different ranges. */
static void test_methods(void **state) {
    (void)state;
    static const mdl_calibration_method methods[] = {MDL_CALIBRATION_MINMAX, MDL_CALIBRATION_PERCENTILE,
                                                     MDL_CALIBRATION_ENTROPY};
    static const char *const names[] = {"minmax", "percentile", "entropy"};
    const char *fpath = th_tmp("ptq_m_f32.mdl");
    convert_ok(DIGITS, fpath, NULL, NULL);
    double af = accuracy(fpath, DIGITS_X, DIGITS_Y);
    void *bytes[3];
    size_t sizes[3];
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "ptq_m_%s.mdl", names[k]);
        const char *p = th_tmp(name);
        mdl_convert_options o = int8_opts(DIGITS_CALIB);
        o.quant.method = methods[k];
        if (k == 1) o.quant.percentile = 99.9;
        mdl_convert_report r;
        convert_ok(DIGITS, p, &o, &r);
        assert_string_equal(r.quant->method, names[k]);
        assert_true(r.quant->eval_is_calibration);
        assert_true(isnan(r.quant->int8_accuracy)); /* no labels */
        double aq = accuracy(p, DIGITS_X, DIGITS_Y);
        printf("    %-10s int8 %.2f%% (float %.2f%%)\n", names[k], aq, af);
        /* entropy keeps the least range and, on 200 calibration images, loses most (its
           histogram's range grows batch by batch, so the batch size the converter calibrates
           at - the first trial size of a dynamic batch - moves it by an image or two) */
        assert_true(aq >= af - (k == 2 ? 1.5 : 1.0));
        mdl_convert_report_free(&r);
        bytes[k] = th_read_file(p, &sizes[k]);
    }
    for (int a = 0; a < 3; a++)
        for (int b = a + 1; b < 3; b++)
            assert_true(sizes[a] != sizes[b] || memcmp(bytes[a], bytes[b], sizes[a]));
    for (int k = 0; k < 3; k++) free(bytes[k]);
}

/* A directory of .npy batches of uneven sizes gives the same file as one .npy of the same rows. */
static void test_directory(void **state) {
    (void)state;
    mdl_npy x;
    mdl_error err;
    assert_int_equal(mdl_npy_read(DIGITS_CALIB, &x, &err), MDL_OK);
    const char *dir = th_tmp("ptq_calib_dir");
    mkdir(dir, 0755);
    const int64_t cuts[] = {0, 7, 80, 81, 200};
    size_t row = x.bytes / (size_t)x.dims[0];
    for (int k = 0; k < 4; k++) {
        char p[512];
        snprintf(p, sizeof p, "%s/batch%d.npy", dir, k);
        int64_t dims[4] = {cuts[k + 1] - cuts[k], 1, 8, 8};
        assert_int_equal(mdl_npy_write(p, MDL_DTYPE_FLOAT32, 4, dims, (uint8_t *)x.data + (size_t)cuts[k] * row, &err),
                         MDL_OK);
    }
    char other[512];
    snprintf(other, sizeof other, "%s/README.txt", dir); /* ignored */
    FILE *f = fopen(other, "w");
    fputs("not data\n", f);
    fclose(f);
    mdl_npy_free(&x);
    const char *a = th_tmp("ptq_dir_one.mdl"), *b = th_tmp("ptq_dir_many.mdl");
    mdl_convert_options o = int8_opts(DIGITS_CALIB);
    convert_ok(DIGITS, a, &o, NULL);
    o.quant.calibration = dir;
    mdl_convert_report r;
    convert_ok(DIGITS, b, &o, &r);
    assert_int_equal(r.quant->calibration_rows, 200);
    mdl_convert_report_free(&r);
    size_t sa, sb;
    void *da = th_read_file(a, &sa), *db = th_read_file(b, &sb);
    assert_int_equal(sa, sb);
    assert_memory_equal(da, db, sa);
    free(da);
    free(db);
    /* max_calibration_rows: the first rows only */
    o.quant.max_calibration_rows = 80;
    convert_ok(DIGITS, b, &o, &r);
    assert_int_equal(r.quant->calibration_rows, 80);
    mdl_convert_report_free(&r);
}

static bool node_is_int8(const mdl_model *m, const char *name) {
    for (int i = 0; i < mdl_model_node_count(m); i++) {
        mdl_node_info ni;
        mdl_model_node_info(m, i, &ni);
        if (strcmp(ni.name, name)) continue;
        mdl_tensor_info ti;
        mdl_model_tensor_info(m, ni.outputs[0], &ti, NULL);
        return ti.dtype == MDL_DTYPE_INT8;
    }
    fail_msg("no node '%s'", name);
    return false;
}

/* --per-tensor: one scale per weight tensor; --float-ops: named nodes stay float. */
static void test_per_tensor_and_float_ops(void **state) {
    (void)state;
    const char *p = th_tmp("ptq_pt.mdl");
    mdl_convert_options o = int8_opts(DIGITS_CALIB);
    o.quant.per_tensor = true;
    o.quant.float_ops = "/net/features/features.3/Conv,/Softmax";
    mdl_convert_report r;
    convert_ok(DIGITS, p, &o, &r);
    assert_string_equal(layer(r.quant, "/net/features/features.3/Conv")->precision, "float");
    assert_string_equal(layer(r.quant, "/net/features/features.3/Conv")->reason, "--float-ops");
    assert_string_equal(layer(r.quant, "/Softmax")->precision, "float");
    assert_string_equal(layer(r.quant, "/net/features/features.0/Conv")->precision, "int8");
    mdl_convert_report_free(&r);
    mdl_model *m;
    mdl_error err;
    assert_int_equal(mdl_model_load_file(p, NULL, &m, &err), MDL_OK);
    assert_false(node_is_int8(m, "/net/features/features.3/Conv"));
    assert_false(node_is_int8(m, "/Softmax"));
    assert_true(node_is_int8(m, "/net/features/features.0/Conv"));
    assert_true(node_is_int8(m, "/net/classifier/classifier.1/Gemm"));
    int int8_weights = 0;
    for (int i = 0; i < mdl_model_tensor_count(m); i++) {
        mdl_tensor_info ti;
        bool c;
        mdl_model_tensor_info(m, i, &ti, &c);
        if (c && ti.dtype == MDL_DTYPE_INT8) {
            assert_int_equal(ti.nquant, 1);
            int8_weights++;
        }
    }
    assert_true(int8_weights >= 2);
    mdl_model_free(m);
    /* per channel by default */
    o.quant.per_tensor = false;
    o.quant.float_ops = NULL;
    convert_ok(DIGITS, p, &o, NULL);
    assert_int_equal(mdl_model_load_file(p, NULL, &m, &err), MDL_OK);
    bool per_channel = false;
    for (int i = 0; i < mdl_model_tensor_count(m); i++) {
        mdl_tensor_info ti;
        bool c;
        mdl_model_tensor_info(m, i, &ti, &c);
        per_channel = per_channel || (c && ti.dtype == MDL_DTYPE_INT8 && ti.nquant > 1);
    }
    assert_true(per_channel);
    mdl_model_free(m);
    /* an unknown name */
    o.quant.float_ops = "/no/such/node";
    assert_int_equal(mdl_convert_onnx(DIGITS, p, &o, NULL, &err), MDL_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "/no/such/node"));
}

/* Recurrent and embedding models: weights int8 (hybrid), outputs within a stated tolerance of
   ONNX Runtime's float outputs, about 4x smaller. */
static void check_hybrid(const char *name, const char *calib, int nin, const char *const *inputs, double tol) {
    char onnx[256], ref[256];
    snprintf(onnx, sizeof onnx, "tests/models/%s.onnx", name);
    snprintf(ref, sizeof ref, "tests/models/%s.out0.npy", name);
    const char *fpath = th_tmp("ptq_h_f32.mdl"), *qpath = th_tmp("ptq_h_int8.mdl");
    convert_ok(onnx, fpath, NULL, NULL);
    mdl_convert_options o = int8_opts(calib);
    mdl_convert_report r;
    convert_ok(onnx, qpath, &o, &r);
    int hybrid = 0;
    for (int32_t i = 0; i < r.quant->nlayers; i++) hybrid += !strcmp(r.quant->layers[i].precision, "hybrid");
    assert_true(hybrid >= 1);
    mdl_convert_report_free(&r);
    mdl_error err;
    mdl_model *m;
    mdl_session *s;
    assert_int_equal(mdl_model_load_file(qpath, NULL, &m, &err), MDL_OK);
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    for (int k = 0; k < nin; k++) {
        mdl_npy x;
        assert_int_equal(mdl_npy_read(inputs[k], &x, &err), MDL_OK);
        assert_int_equal(mdl_session_set_input(s, k, x.data, x.bytes, &err), MDL_OK);
        mdl_npy_free(&x);
    }
    assert_int_equal(mdl_session_run(s), MDL_OK);
    mdl_npy y;
    assert_int_equal(mdl_npy_read(ref, &y, &err), MDL_OK);
    const float *got = mdl_session_output_data(s, 0), *want = y.data;
    double e = 0;
    for (size_t i = 0; i < y.bytes / 4; i++) e = fmax(e, fabs((double)got[i] - want[i]));
    size_t fs = th_file_size(fpath), qs = th_file_size(qpath);
    printf("    %s: max |int8 - ORT float| = %.5f (tolerance %g), %zu -> %zu bytes (%.2fx)\n", name, e, tol, fs, qs,
           (double)fs / (double)qs);
    assert_true(e <= tol);
    assert_true((double)fs / (double)qs >= 3.5);
    mdl_npy_free(&y);
    mdl_session_free(s);
    mdl_model_free(m);
}

static void test_text_lstm(void **state) {
    (void)state;
    const char *in[] = {"tests/models/text_lstm.in0.npy"};
    check_hybrid("text_lstm", "tests/models/ptq/text_lstm_calib.npy", 1, in, 0.01);
}

static void test_recommender(void **state) {
    (void)state;
    const char *in[] = {"tests/models/recommender.in0.npy", "tests/models/recommender.in1.npy"};
    check_hybrid("recommender", "tests/models/ptq/recommender_calib.npz", 2, in, 0.03);
}

/* The made-up outlier model: plain int8 breaks a 1-point budget; mixed precision restores it by
   keeping the layers around the outlier activation in float. */
static void test_outlier_budget(void **state) {
    (void)state;
    const char *p = th_tmp("ptq_outlier.mdl");
    mdl_convert_options o = int8_opts("tests/models/ptq/outlier_calib.npy");
    o.quant.eval_inputs = OUTLIER_X;
    o.quant.eval_labels = OUTLIER_Y;
    mdl_convert_report r;
    convert_ok(OUTLIER, p, &o, &r);
    double plain = accuracy(p, OUTLIER_X, OUTLIER_Y);
    assert_true(fabs(r.quant->int8_accuracy - plain) < 1e-9);
    mdl_convert_report_free(&r);
    o.quant.max_accuracy_drop = 1.0;
    convert_ok(OUTLIER, p, &o, &r);
    double mixed = accuracy(p, OUTLIER_X, OUTLIER_Y);
    printf("    outlier: float 100%% (labels), plain int8 %.2f%%, mixed %.2f%% with %d layer(s) float\n", plain,
           mixed, (int)r.quant->nkept_float);
    assert_true(plain < 99.0 - 10); /* plain int8 is far outside the budget */
    assert_true(mixed >= 99.0);
    assert_true(r.quant->budget_met);
    assert_string_equal(r.quant->budget, "accuracy-drop");
    assert_true(r.quant->nkept_float >= 1);
    /* the layers reading or writing the outlier activation are the ones kept */
    assert_string_equal(layer(r.quant, "fc1")->reason, "accuracy budget");
    assert_string_equal(layer(r.quant, "fc2")->reason, "accuracy budget");
    assert_true(layer(r.quant, "fc1")->kept_for_budget && layer(r.quant, "fc2")->kept_for_budget);
    assert_false(layer(r.quant, "fc0")->kept_for_budget);
    assert_true(layer(r.quant, "fc1")->impact > 10);
    assert_false(isnan(layer(r.quant, "fc0")->impact));
    assert_true(r.quant->int8_ops >= 1);
    mdl_convert_report_free(&r);

    /* --max-output-error against the float model's logits */
    const char *fp = th_tmp("ptq_outlier_f32.mdl");
    convert_ok(OUTLIER, fp, NULL, NULL);
    float *yf, *yq;
    int64_t rows, per;
    o.quant.max_accuracy_drop = 0;
    o.quant.max_output_error = 0.5;
    convert_ok(OUTLIER, p, &o, &r);
    assert_true(r.quant->budget_met);
    assert_string_equal(r.quant->budget, "output-error");
    assert_string_equal(layer(r.quant, "fc1")->reason, "output-error budget");
    mdl_convert_report_free(&r);
    run_rows(fp, OUTLIER_X, &yf, &rows, &per);
    run_rows(p, OUTLIER_X, &yq, &rows, &per);
    double e = 0;
    for (int64_t i = 0; i < rows * per; i++) e = fmax(e, fabs((double)yq[i] - yf[i]));
    printf("    outlier: max |int8 - float| = %.4f under --max-output-error 0.5\n", e);
    assert_true(e <= 0.5);
    free(yf);
    free(yq);
}

static void expect_refused(const char *onnx, const char *calib, mdl_status want, const char *w1, const char *w2) {
    const char *p = th_tmp("ptq_refused.mdl");
    remove(p);
    mdl_convert_options o = int8_opts(calib);
    mdl_error err;
    mdl_convert_report r;
    memset(&r, 0, sizeof r);
    mdl_status st = mdl_convert_onnx(onnx, p, &o, &r, &err);
    printf("    %s -> %s: %s\n", calib, mdl_status_str(st), err.msg);
    assert_int_equal(st, want);
    assert_non_null(strstr(err.msg, w1));
    if (w2) assert_non_null(strstr(err.msg, w2));
    assert_false(th_exists(p));
    assert_null(r.quant);
}

static void test_bad_data(void **state) {
    (void)state;
    expect_refused(DIGITS, "tests/models/ptq/bad/shape.npy", MDL_SHAPE, "shape.npy", "'image'");
    expect_refused(DIGITS, "tests/models/ptq/bad/int32.npy", MDL_DTYPE, "int32.npy", "'image'");
    expect_refused(DIGITS, "tests/models/ptq/bad/nan.npy", MDL_INVALID_ARGUMENT, "nan.npy", "NaN");
    expect_refused(DIGITS, "tests/models/ptq/bad/compressed.npz", MDL_UNSUPPORTED, "compressed.npz", "np.savez");
    expect_refused("tests/models/recommender.onnx", "tests/models/ptq/bad/recommender_missing.npz",
                   MDL_INVALID_ARGUMENT, "recommender_missing.npz", "'item'");
    expect_refused("tests/models/recommender.onnx", "tests/models/ptq/bad/recommender_extra.npz",
                   MDL_INVALID_ARGUMENT, "recommender_extra.npz", "'itme'");
    const char *empty = th_tmp("ptq_empty_dir");
    mkdir(empty, 0755);
    expect_refused(DIGITS, empty, MDL_INVALID_ARGUMENT, "ptq_empty_dir", "no .npy or .npz");
    expect_refused(DIGITS, "tests/models/ptq/no-such-file.npy", MDL_IO, "no-such-file.npy", NULL);
    /* a .npy for a two-input model */
    expect_refused("tests/models/recommender.onnx", "tests/models/recommender.in0.npy", MDL_INVALID_ARGUMENT,
                   "recommender.in0.npy", "2 inputs");
    /* a one-input model takes an .npz array of any name */
    mdl_convert_options o = int8_opts("tests/models/ptq/bad/wrongname.npz");
    convert_ok(DIGITS, th_tmp("ptq_anyname.mdl"), &o, NULL);
    /* option errors */
    mdl_error err;
    o = int8_opts(NULL);
    assert_int_equal(mdl_convert_onnx(DIGITS, th_tmp("x.mdl"), &o, NULL, &err), MDL_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "--calibration"));
    o = int8_opts(DIGITS_CALIB);
    o.quant.max_accuracy_drop = 0.5; /* without labels */
    assert_int_equal(mdl_convert_onnx(DIGITS, th_tmp("x.mdl"), &o, NULL, &err), MDL_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "labels"));
    o = int8_opts(DIGITS_CALIB);
    o.quant.eval_inputs = DIGITS_X;
    o.quant.eval_labels = "tests/models/ptq/outlier_eval.y.npy"; /* 512 labels for 360 rows */
    assert_int_equal(mdl_convert_onnx(DIGITS, th_tmp("x.mdl"), &o, NULL, &err), MDL_SHAPE);
    assert_non_null(strstr(err.msg, "512"));
    /* already quantized */
    o = int8_opts(DIGITS_CALIB);
    assert_int_equal(mdl_convert_onnx("tests/models/quant/digits_qdq_s8.onnx", th_tmp("x.mdl"), &o, NULL, &err),
                     MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "already quantized"));
}

/* The JSON report holds what the struct holds. */
static void test_report_json(void **state) {
    (void)state;
    mdl_convert_options o = int8_opts(DIGITS_CALIB);
    o.quant.eval_inputs = DIGITS_X;
    o.quant.eval_labels = DIGITS_Y;
    o.quant.max_accuracy_drop = 0.5;
    mdl_convert_report r;
    convert_ok(DIGITS, th_tmp("ptq_json.mdl"), &o, &r);
    assert_ptr_equal(mdl_convert_report_json(&r), r.quant->json);
    cJSON *j = cJSON_Parse(r.quant->json);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "method")->valuestring, "minmax");
    assert_int_equal(cJSON_GetObjectItem(j, "eval_rows")->valueint, 360);
    assert_true(fabs(cJSON_GetObjectItem(j, "int8_accuracy")->valuedouble - r.quant->int8_accuracy) < 1e-3);
    assert_int_equal((size_t)cJSON_GetObjectItem(j, "int8_bytes")->valuedouble, r.quant->int8_file_bytes);
    const cJSON *b = cJSON_GetObjectItem(j, "budget");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(b, "met")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(b, "kept_float")), 0); /* met without help */
    const cJSON *layers = cJSON_GetObjectItem(j, "layers");
    assert_int_equal(cJSON_GetArraySize(layers), r.quant->nlayers);
    int k = 0;
    const cJSON *l;
    cJSON_ArrayForEach(l, layers) {
        assert_string_equal(cJSON_GetObjectItem(l, "name")->valuestring, r.quant->layers[k].name);
        assert_string_equal(cJSON_GetObjectItem(l, "precision")->valuestring, r.quant->layers[k].precision);
        const cJSON *sq = cJSON_GetObjectItem(l, "sqnr_db");
        if (cJSON_IsNumber(sq)) assert_true(fabs(sq->valuedouble - r.quant->layers[k].sqnr_db) < 1e-3);
        k++;
    }
    cJSON_Delete(j);
    mdl_convert_report_free(&r);
    mdl_convert_report_free(&r); /* twice: a no-op */
    mdl_convert_report_free(NULL);
}

/* The CLI prints the report and writes it with --report; no progress bar when stderr is not a
   terminal; bad data: exit 1, one line naming the file and input, no output file. */
static void test_cli(void **state) {
    (void)state;
    const char *out = th_tmp("ptq_cli.mdl"), *rep = th_tmp("ptq_cli.json"), *so = th_tmp("ptq_cli.out"),
               *se = th_tmp("ptq_cli.err");
    int rc = th_system("'%s' %s -o '%s' --quantize int8 --calibration %s --calibration-method entropy "
                       "--eval %s %s --max-accuracy-drop 2 --report '%s' > '%s' 2> '%s'",
                       th_tool("mdeploy-convert"), DIGITS, out, DIGITS_CALIB, DIGITS_X, DIGITS_Y, rep, so, se);
    assert_int_equal(rc, 0);
    size_t n;
    char *text = th_read_file(se, &n);
    assert_int_equal(n, 0); /* quiet off a terminal */
    free(text);
    text = th_read_file(so, &n);
    assert_non_null(strstr(text, "entropy calibration on 200 rows"));
    assert_non_null(strstr(text, "SQNR"));
    assert_non_null(strstr(text, "/net/features/features.3/Conv"));
    assert_non_null(strstr(text, "budget:"));
    free(text);
    text = th_read_file(rep, &n);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "method")->valuestring, "entropy");
    double acc = cJSON_GetObjectItem(j, "int8_accuracy")->valuedouble;
    assert_true(fabs(acc - accuracy(out, DIGITS_X, DIGITS_Y)) < 1e-3);
    cJSON_Delete(j);
    remove(out);
    rc = th_system("'%s' %s -o '%s' --quantize int8 --calibration tests/models/ptq/bad/nan.npy > '%s' 2> '%s'",
                   th_tool("mdeploy-convert"), DIGITS, out, so, se);
    assert_int_equal(rc, 1);
    assert_false(th_exists(out));
    text = th_read_file(se, &n);
    assert_non_null(strstr(text, "nan.npy"));
    assert_non_null(strstr(text, "'image'"));
    assert_ptr_equal(strchr(text, '\n'), text + n - 1);
    free(text);
    /* quantization options without --quantize */
    rc = th_system("'%s' %s -o '%s' --calibration %s 2> /dev/null", th_tool("mdeploy-convert"), DIGITS, out, DIGITS_CALIB);
    assert_int_equal(rc, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digits_accuracy), cmocka_unit_test(test_methods),
        cmocka_unit_test(test_directory),       cmocka_unit_test(test_per_tensor_and_float_ops),
        cmocka_unit_test(test_text_lstm),       cmocka_unit_test(test_recommender),
        cmocka_unit_test(test_outlier_budget),  cmocka_unit_test(test_bad_data),
        cmocka_unit_test(test_report_json),     cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
