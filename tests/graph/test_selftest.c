/* Self-test vectors (include/mdeploy/selftest.h): expected outputs computed here in plain C
   (x + c), a passing run, deliberately wrong vectors and a flipped weight caught with the case,
   output and element named, a model with dynamic dims tested at the case's shapes, the file
   decoded by Debian's flatc to the values written, and hostile vectors (encoded by flatc from
   edited JSON) refused by the loader. */
#include "common/harness.h"
#include "common/models.h"
#include "graph/model.h"
#include "graph/selftest.h"
#include "mdeploy/selftest.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA "src/io/mdeploy.fbs"
#define W 4

static mdl_model *load(const void *data, size_t size) {
    mdl_model *m;
    mdl_error err;
    if (mdl_model_load_buffer(data, size, NULL, &m, &err)) fail_msg("%s", err.msg);
    return m;
}

static void test_passes(void **state) {
    (void)state;
    void *data;
    size_t size;
    assert_int_equal(tm_build_addc(1.5f, W, "1", 3, 0.0f, &data, &size), MDL_OK);
    mdl_model *m = load(data, size);
    assert_int_equal(mdl_model_selftest_count(m), 3);
    mdl_selftest_result r;
    mdl_error err;
    assert_int_equal(mdl_model_selftest(m, &r, &err), MDL_OK);
    assert_int_equal(r.cases, 3);
    assert_int_equal(r.passed, 3);
    assert_int_equal(r.elements, 3 * W);
    assert_true(r.max_abs_error <= 1e-6);
    assert_int_equal(r.failed_case, -1);
    assert_string_equal(r.oracle, "test");
    assert_true(fabsf(r.atol - 1e-4f) < 1e-9f && fabsf(r.rtol - 1e-3f) < 1e-9f);
    assert_int_equal(mdl_model_selftest(m, NULL, &err), MDL_OK); /* result is optional */
    mdl_model_free(m);
    free(data);
}

static void test_none_and_null(void **state) {
    (void)state;
    void *data;
    size_t size;
    assert_int_equal(tm_build_addc(1.5f, W, "1", 0, 0.0f, &data, &size), MDL_OK);
    mdl_model *m = load(data, size);
    mdl_selftest_result r;
    mdl_error err;
    assert_int_equal(mdl_model_selftest_count(m), 0);
    assert_int_equal(mdl_model_selftest(m, &r, &err), MDL_OK);
    assert_int_equal(r.cases, 0);
    assert_int_equal(mdl_model_selftest(NULL, &r, &err), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_model_selftest_count(NULL), 0);
    mdl_model_free(m);
    free(data);
}

/* Expected outputs off by 0.01 (allowed: 1e-4 + 1e-3 * |e|, below 0.01 for |e| < 9.9). */
static void test_wrong_vectors(void **state) {
    (void)state;
    void *data;
    size_t size;
    assert_int_equal(tm_build_addc(1.5f, W, "1", 2, 0.01f, &data, &size), MDL_OK);
    mdl_model *m = load(data, size);
    mdl_selftest_result r;
    mdl_error err;
    assert_int_equal(mdl_model_selftest(m, &r, &err), MDL_CORRUPT_MODEL);
    assert_int_equal(r.failed_case, 0);
    assert_int_equal(r.failed_output, 0);
    assert_int_equal(r.failed_element, 0);
    assert_true(fabs(r.got - 1.5) < 1e-6 && fabs(r.expected - 1.51) < 1e-6);
    if (!strstr(err.msg, "case 0: output 0 'y' element 0 is 1.5") || !strstr(err.msg, "expected 1.50999999") ||
        !strstr(err.msg, "oracle test"))
        fail_msg("message: %s", err.msg);
    mdl_model_free(m);
    free(data);
}

/* A changed weight whose digest was recomputed passes the loader; the self-test sees it when the change
   is above the tolerance: 1.5 (0x3fc00000) with mantissa bit 22 flipped is 1.0. */
static void test_flipped_weight(void **state) {
    (void)state;
    void *data;
    size_t size;
    assert_int_equal(tm_build_addc(1.5f, W, "1", 2, 0.0f, &data, &size), MDL_OK);
    float w[W];
    for (int i = 0; i < W; i++) w[i] = 1.5f;
    uint8_t *at = NULL;
    for (size_t p = 0; p + sizeof w <= size && !at; p += 4)
        if (!memcmp((uint8_t *)data + p, w, sizeof w)) at = (uint8_t *)data + p;
    assert_non_null(at);
    at[2 * 4 + 2] ^= 0x40; /* element 2: bit 22 */
    mdl_model *m;
    mdl_error derr;
    assert_int_equal(mdl_model_load_buffer(data, size, NULL, &m, &derr), MDL_CORRUPT_MODEL); /* the digest */
    assert_non_null(strstr(derr.msg, "content digest mismatch"));
    tm_reseal(data, size); /* a change that passes the digest (anyone can recompute it) */
    m = load(data, size);
    mdl_selftest_result r;
    mdl_error err;
    assert_int_equal(mdl_model_selftest(m, &r, &err), MDL_CORRUPT_MODEL);
    assert_int_equal(r.failed_case, 0);
    assert_int_equal(r.failed_element, 2);
    assert_true(fabs(r.expected - (tm_addc_input(0, 2) + 1.5)) < 1e-6);
    assert_true(fabs(r.got - (tm_addc_input(0, 2) + 1.0)) < 1e-6);
    if (!strstr(err.msg, "element 2")) fail_msg("message: %s", err.msg);
    mdl_model_free(m);
    free(data);
}

/* x [batch<=8, 3] + c [3]: two cases at batch 2 and 5, each run at its own shape. */
static void *build_dynamic(float skew, int64_t batch1, size_t *size, mdl_error *err) {
    static const float C[3] = {1, -2, 0.5f};
    mdl_builder *b;
    assert_int_equal(mdl_builder_create(NULL, &b, NULL), MDL_OK);
    int sb = mdl_builder_symbol(b, "batch", 8, 1);
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, NULL);
    int c = mdl_builder_tensor(b, "c", MDL_DTYPE_FLOAT32, 1, (int64_t[]){3}, C);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, NULL);
    mdl_builder_set_dims(b, x, (int32_t[]){sb, MDL_DIM_FIXED});
    mdl_builder_set_dims(b, y, (int32_t[]){sb, MDL_DIM_FIXED});
    mdl_builder_node(b, MDL_OP_ADD, "add", 2, (int[]){x, c}, 1, &y, NULL);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, y);
    int64_t batch[2] = {2, batch1};
    float vals[2][2][10 * 3];
    mdl__st_tensor ts[4];
    mdl__st_case cs[2];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < batch[k] * 3; i++) {
            vals[k][0][i] = (float)(k * 7 + i) * 0.25f;
            vals[k][1][i] = vals[k][0][i] + C[i % 3] + skew;
        }
        for (int t = 0; t < 2; t++)
            ts[2 * k + t] = (mdl__st_tensor){0, MDL_DTYPE_FLOAT32, 2, {batch[k], 3}, vals[k][t],
                                             sizeof(float) * 3 * (size_t)batch[k]};
        cs[k] = (mdl__st_case){1, 1, &ts[2 * k], &ts[2 * k + 1]};
    }
    mdl__selftest s = {2, cs, 0.0f, 0.0f, "plain C"};
    mdl__builder_set_selftest(b, &s);
    void *data = NULL;
    mdl_status st = mdl_builder_finish(b, &data, size, err);
    mdl_builder_free(b);
    return st ? NULL : data;
}

static void test_dynamic_shapes(void **state) {
    (void)state;
    size_t size;
    mdl_error err;
    void *data = build_dynamic(0.0f, 5, &size, &err);
    if (!data) fail_msg("%s", err.msg);
    mdl_model *m = load(data, size);
    mdl_selftest_result r;
    assert_int_equal(mdl_model_selftest(m, &r, &err), MDL_OK);
    assert_int_equal(r.elements, (2 + 5) * 3);
    assert_int_equal(r.passed, 2);
    mdl_model_free(m);
    free(data);
    /* exact comparison (atol = rtol = 0): 1 ulp-free sums pass, a skew of 2^-20 fails */
    data = build_dynamic(1.0f / 1048576.0f, 5, &size, &err);
    m = load(data, size);
    assert_int_equal(mdl_model_selftest(m, &r, &err), MDL_CORRUPT_MODEL);
    mdl_model_free(m);
    free(data);
    /* a case above the symbol's bound (9 > 8) is refused by the loader (the builder's check) */
    assert_null(build_dynamic(0.0f, 9, &size, &err));
    if (err.status != MDL_CORRUPT_MODEL) fail_msg("%s: %s", mdl_status_str(err.status), err.msg);
    if (!strstr(err.msg, "self-test case 1: input 0 'x' dim 0 is 9, the model allows 8 at most"))
        fail_msg("message: %s", err.msg);
}

/* ---- flatc ---------------------------------------------------------------------------- */

static cJSON *decode(const void *data, size_t size) {
    assert_true(th_write_file(th_tmp("st.mdl"), data, size));
    assert_int_equal(th_system("flatc --json --raw-binary --strict-json -o %s %s -- %s", th_tmpdir(), SCHEMA,
                               th_tmp("st.mdl")), 0);
    char *text = th_read_file(th_tmp("st.json"), NULL);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static mdl_status encode_load(cJSON *j, mdl_error *err) {
    char *text = cJSON_PrintUnformatted(j);
    assert_true(th_write_file(th_tmp("st2.json"), text, strlen(text)));
    free(text);
    assert_int_equal(th_system("flatc -b -o %s %s %s", th_tmpdir(), SCHEMA, th_tmp("st2.json")), 0);
    size_t size;
    void *data = th_read_file(th_tmp("st2.mdl"), &size);
    assert_non_null(data);
    tm_reseal(data, size); /* flatc lays the file out anew: the stored digest is the old layout's */
    mdl_model *m = NULL;
    mdl_status st = mdl_model_load_buffer(data, size, NULL, &m, err);
    mdl_model_free(m);
    free(data);
    return st;
}

static float bytes_f32(cJSON *data, int i) {
    uint8_t b[4];
    for (int k = 0; k < 4; k++) b[k] = (uint8_t)cJSON_GetArrayItem(data, 4 * i + k)->valueint;
    float f;
    memcpy(&f, b, 4);
    return f;
}

#define ITEM cJSON_GetObjectItem
#define AT cJSON_GetArrayItem

static void test_flatc_decodes(void **state) {
    (void)state;
    void *data;
    size_t size;
    assert_int_equal(tm_build_addc(1.5f, W, "1", 2, 0.0f, &data, &size), MDL_OK);
    cJSON *j = decode(data, size), *st = ITEM(j, "selftest");
    assert_non_null(st);
    assert_true(fabs(ITEM(st, "atol")->valuedouble - 1e-4) < 1e-9);
    assert_true(fabs(ITEM(st, "rtol")->valuedouble - 1e-3) < 1e-9);
    assert_string_equal(ITEM(st, "oracle")->valuestring, "test");
    cJSON *cases = ITEM(st, "cases");
    assert_int_equal(cJSON_GetArraySize(cases), 2);
    for (int k = 0; k < 2; k++) {
        cJSON *in = AT(ITEM(AT(cases, k), "inputs"), 0), *out = AT(ITEM(AT(cases, k), "outputs"), 0);
        assert_int_equal(cJSON_GetArraySize(ITEM(in, "data")), 4 * W);
        for (int i = 0; i < W; i++) {
            assert_true(bytes_f32(ITEM(in, "data"), i) == tm_addc_input(k, i));
            assert_true(bytes_f32(ITEM(out, "data"), i) == tm_addc_input(k, i) + 1.5f);
        }
        assert_int_equal(AT(ITEM(in, "shape"), 1)->valueint, W);
    }
    mdl_error err;
    if (encode_load(j, &err)) fail_msg("%s", err.msg); /* flatc's own encoding loads */
    cJSON_Delete(j);

    /* hostile vectors, each one edit of the decoded JSON */
    typedef struct edit {
        const char *where, *key; /* tensor: "in"/"out"; key to replace */
        const char *json;        /* its new value */
        const char *msg;
    } edit;
    const edit edits[] = {
        {"in", "index", "3", "input index 3 out of range (the model has 1)"},
        {"out", "index", "-1", "output index -1 out of range"},
        {"in", "dtype", "\"INT32\"", "input 0 'x' has dtype int32, the model's is float32"},
        {"in", "shape", "[1, 5]", "input 0 'x' dim 1 is 5, the model allows 4"},
        {"out", "shape", "[1, 4, 1]", "output 0 'y' has rank 3, the model's is 2"},
        {"in", "data", "[0, 0, 128, 63]", "input 0 'x' holds 4 bytes, its shape needs 16"},
        {"st", "atol", "-1.0", "tolerance atol -1"},
        {"st", "rtol", "\"nan\"", "must be finite"},
        {"case", "outputs", "[]", "1 inputs and 0 outputs"},
        {"case", "inputs", "[]", "0 inputs and 1 outputs"},
        {"st", "cases", "[]", "without cases"},
    };
    for (size_t e = 0; e < sizeof edits / sizeof edits[0]; e++) {
        j = decode(data, size);
        st = ITEM(j, "selftest");
        cJSON *c1 = AT(ITEM(st, "cases"), 1);
        cJSON *obj = !strcmp(edits[e].where, "st") ? st : !strcmp(edits[e].where, "case") ? c1
                   : AT(ITEM(c1, !strcmp(edits[e].where, "in") ? "inputs" : "outputs"), 0);
        cJSON *v = cJSON_Parse(edits[e].json);
        assert_non_null(v);
        if (ITEM(obj, edits[e].key)) cJSON_ReplaceItemInObject(obj, edits[e].key, v);
        else cJSON_AddItemToObject(obj, edits[e].key, v);
        err.msg[0] = 0;
        mdl_status got = encode_load(j, &err);
        if (got != MDL_CORRUPT_MODEL || !strstr(err.msg, edits[e].msg))
            fail_msg("%s.%s = %s: got %s '%s', want '%s'", edits[e].where, edits[e].key, edits[e].json,
                     mdl_status_str(got), err.msg, edits[e].msg);
        cJSON_Delete(j);
    }
    /* the same input given twice */
    j = decode(data, size);
    cJSON *ins = ITEM(AT(ITEM(ITEM(j, "selftest"), "cases"), 0), "inputs");
    cJSON_AddItemToArray(ins, cJSON_Duplicate(AT(ins, 0), 1));
    assert_int_equal(encode_load(j, &err), MDL_CORRUPT_MODEL);
    if (!strstr(err.msg, "2 inputs")) fail_msg("message: %s", err.msg);
    cJSON_Delete(j);
    j = decode(data, size);
    cJSON *outs = ITEM(AT(ITEM(ITEM(j, "selftest"), "cases"), 0), "outputs");
    cJSON_AddItemToArray(outs, cJSON_Duplicate(AT(outs, 0), 1));
    assert_int_equal(encode_load(j, &err), MDL_CORRUPT_MODEL);
    if (!strstr(err.msg, "2 outputs")) fail_msg("message: %s", err.msg);
    cJSON_Delete(j);
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passes),
        cmocka_unit_test(test_none_and_null),
        cmocka_unit_test(test_wrong_vectors),
        cmocka_unit_test(test_flipped_weight),
        cmocka_unit_test(test_dynamic_shapes),
        cmocka_unit_test(test_flatc_decodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
