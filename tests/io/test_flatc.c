/* Format conformance against Debian's flatc (the FlatBuffers reference compiler):
   - files our builder writes decode with `flatc --json` to the values we wrote;
   - binaries flatc encodes from JSON load with our reader and run correctly;
   - hostile files encoded by flatc are rejected with the right status and message. */
#include "common/harness.h"
#include "common/models.h"
#include "graph/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MDL_STR_(x) #x
#define MDL_STR(x) MDL_STR_(x)

#define SCHEMA "src/io/mdeploy.fbs"

static cJSON *decode_with_flatc(const void *data, size_t size) {
    const char *bin = th_tmp("decode.mdl");
    assert_true(th_write_file(bin, data, size));
    assert_int_equal(th_system("flatc --json --raw-binary --strict-json --defaults-json -o %s %s -- %s",
                               th_tmpdir(), SCHEMA, bin), 0);
    char *text = th_read_file(th_tmp("decode.json"), NULL);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static cJSON *by_name(cJSON *array, const char *name) {
    cJSON *e;
    cJSON_ArrayForEach(e, array) {
        cJSON *n = cJSON_GetObjectItem(e, "name");
        if (n && cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) return e;
    }
    return NULL;
}

static int find_index(cJSON *array, const char *name) {
    int i = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, array) {
        cJSON *n = cJSON_GetObjectItem(e, "name");
        if (n && strcmp(n->valuestring, name) == 0) return i;
        i++;
    }
    return -1;
}

/* The bytes of buffer b as decoded by flatc, compared with the floats we put in. */
static void assert_buffer_floats(cJSON *model, cJSON *tensor, const float *want, size_t n) {
    int b = cJSON_GetObjectItem(tensor, "buffer")->valueint;
    cJSON *data = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(model, "buffers"), b), "data");
    assert_int_equal(cJSON_GetArraySize(data), (int)(n * 4));
    uint8_t *bytes = malloc(n * 4);
    for (size_t i = 0; i < n * 4; i++) bytes[i] = (uint8_t)cJSON_GetArrayItem(data, (int)i)->valueint;
    assert_memory_equal(bytes, want, n * 4);
    free(bytes);
}

static void test_builder_output_decodes_with_flatc(void **state) {
    (void)state;
    tm_mlp p = {2, 8, 16, 3, 0, 0, 0, 0, 0, 0};
    void *data;
    size_t size;
    assert_int_equal(tm_build_mlp(&p, 21, &data, &size), MDL_OK);
    cJSON *j = decode_with_flatc(data, size);
    assert_int_equal(cJSON_GetObjectItem(j, "format_major")->valueint, MDL_FORMAT_MAJOR);
    assert_string_equal(cJSON_GetObjectItem(j, "name")->valuestring, "test-mlp");
    assert_string_equal(cJSON_GetObjectItem(j, "version")->valuestring, "1.2.3");
    cJSON *kv = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "metadata"), 0);
    assert_string_equal(cJSON_GetObjectItem(kv, "key")->valuestring, "license");
    assert_string_equal(cJSON_GetObjectItem(kv, "value")->valuestring, "MIT");

    cJSON *tensors = cJSON_GetObjectItem(j, "tensors");
    cJSON *x = by_name(tensors, "x"), *h1 = by_name(tensors, "h1"), *w1 = by_name(tensors, "fc1/w");
    assert_non_null(x);
    assert_string_equal(cJSON_GetObjectItem(x, "dtype")->valuestring, "FLOAT32");
    cJSON *shape = cJSON_GetObjectItem(x, "shape");
    assert_int_equal(cJSON_GetArraySize(shape), 2);
    assert_int_equal(cJSON_GetArrayItem(shape, 0)->valueint, 2);
    assert_int_equal(cJSON_GetArrayItem(shape, 1)->valueint, 8);
    /* the inferred shape of h1 was stored */
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(h1, "shape"), 1)->valueint, 16);
    assert_int_equal(cJSON_GetObjectItem(x, "buffer")->valueint, 0);
    assert_buffer_floats(j, w1, p.w1, 16 * 8);
    assert_buffer_floats(j, by_name(tensors, "fc3/b"), p.b3, 3);

    cJSON *ops = cJSON_GetObjectItem(j, "operators");
    assert_int_equal(cJSON_GetArraySize(ops), 5);
    cJSON *fc1 = by_name(ops, "fc1");
    assert_string_equal(cJSON_GetObjectItem(fc1, "op")->valuestring, "FULLY_CONNECTED");
    assert_string_equal(cJSON_GetObjectItem(fc1, "options_type")->valuestring, "FullyConnectedOptions");
    cJSON *act = cJSON_GetObjectItem(cJSON_GetObjectItem(fc1, "options"), "activation");
    assert_string_equal(cJSON_GetObjectItem(act, "kind")->valuestring, "RELU");
    cJSON *ins = cJSON_GetObjectItem(fc1, "inputs");
    assert_int_equal(cJSON_GetArrayItem(ins, 0)->valueint, find_index(tensors, "x"));
    assert_int_equal(cJSON_GetArrayItem(ins, 1)->valueint, find_index(tensors, "fc1/w"));
    assert_string_equal(cJSON_GetObjectItem(by_name(ops, "residual"), "op")->valuestring, "ADD");
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "inputs"), 0)->valueint, find_index(tensors, "x"));
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "outputs"), 0)->valueint, find_index(tensors, "y"));

    /* the stored plan is the one the runtime reports */
    mdl_model *m;
    assert_int_equal(mdl_model_load_buffer(data, size, NULL, &m, NULL), MDL_OK);
    cJSON *plan = cJSON_GetObjectItem(j, "plan");
    assert_int_equal((size_t)cJSON_GetObjectItem(plan, "arena_bytes")->valuedouble, mdl_model_activation_bytes(m));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(plan, "tensor_offsets")), mdl_model_tensor_count(m));
    mdl_model_free(m);
    cJSON_Delete(j);
    free(data);
    tm_mlp_free(&p);
}

/* JSON for y = relu(x W^T + b), x [1,4], W [3,4]; extra text is spliced into the model table and
   the operator so hostile variants can be made.  Weight bytes are written as ubyte lists. */
static void bytes_json(char *out, size_t cap, const float *v, size_t n) {
    const uint8_t *b = (const uint8_t *)v;
    size_t k = (size_t)snprintf(out, cap, "[");
    for (size_t i = 0; i < n * 4 && k < cap; i++) k += (size_t)snprintf(out + k, cap - k, i ? ",%u" : "%u", b[i]);
    snprintf(out + k, cap - k, "]");
}

static const float W[12] = {0.5f, -1, 2, 0.25f, -0.5f, 1, 1, -2, 3, 0, -1, 0.125f};
static const float Bv[3] = {0.1f, -0.2f, 0.3f};

static void make_json(char *json, size_t cap, const char *model_extra, const char *w_shape,
                      const char *fc_inputs, const char *x_shape, int nw_floats) {
    char wb[2048], bb[256];
    bytes_json(wb, sizeof wb, W, (size_t)nw_floats);
    bytes_json(bb, sizeof bb, Bv, 3);
    snprintf(json, cap,
             "{ %s name: \"from-json\", %s\n"
             "  tensors: [ {name: \"x\", dtype: FLOAT32, shape: %s},\n"
             "             {name: \"w\", dtype: FLOAT32, shape: %s, buffer: 1},\n"
             "             {name: \"b\", dtype: FLOAT32, shape: [3], buffer: 2},\n"
             "             {name: \"y\", dtype: FLOAT32, shape: [1, 3]} ],\n"
             "  operators: [ {op: FULLY_CONNECTED, name: \"fc\", inputs: %s, outputs: [3],\n"
             "                options_type: FullyConnectedOptions, options: {activation: {kind: RELU}}} ],\n"
             "  inputs: [0], outputs: [3],\n"
             "  buffers: [ {}, {data: %s}, {data: %s} ] }\n",
             strstr(model_extra, "format_major") ? "" : "format_major: " MDL_STR(MDL_FORMAT_MAJOR) ",", model_extra, x_shape,
             w_shape, fc_inputs, wb, bb);
}

/* Encodes JSON with flatc -b and loads the binary with its stored plan required (the plan
   check itself is under test; without MDL_LOAD_STRICT_PLAN a failing plan is computed again);
   returns the load status. */
static mdl_status load_json(const char *json, mdl_model **m, mdl_error *err, void **data) {
    assert_true(th_write_file(th_tmp("model.json"), json, strlen(json)));
    assert_int_equal(th_system("flatc -b -o %s %s %s", th_tmpdir(), SCHEMA, th_tmp("model.json")), 0);
    size_t size;
    *data = th_read_file(th_tmp("model.mdl"), &size);
    assert_non_null(*data);
    mdl_load_options o = mdl_load_options_default();
    o.flags = MDL_LOAD_STRICT_PLAN;
    return mdl_model_load_buffer(*data, size, &o, m, err);
}

static void test_flatc_binary_loads_and_runs(void **state) {
    (void)state;
    char json[8192];
    make_json(json, sizeof json, "", "[3, 4]", "[0, 1, 2]", "[1, 4]", 12);
    mdl_model *m;
    mdl_error err;
    void *data;
    assert_int_equal(load_json(json, &m, &err, &data), MDL_OK);
    assert_string_equal(mdl_model_name(m), "from-json");
    assert_true(mdl_model_activation_bytes(m) >= 32); /* no stored plan: computed at load */
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    const float x[4] = {1, 2, -1, 4};
    memcpy(mdl_session_input_data(s, 0), x, sizeof x);
    assert_int_equal(mdl_session_run(s), MDL_OK);
    float ref[3];
    for (int n = 0; n < 3; n++) {
        double acc = Bv[n];
        for (int k = 0; k < 4; k++) acc += (double)W[n * 4 + k] * x[k];
        ref[n] = acc > 0 ? (float)acc : 0.0f;
    }
    th_assert_close(mdl_session_output_data(s, 0), ref, 3, 1e-6);
    mdl_session_free(s);
    mdl_model_free(m);
    free(data);
}

typedef struct hostile {
    const char *what, *model_extra, *w_shape, *fc_inputs, *x_shape;
    int nw_floats;
    mdl_status want;
    const char *msg; /* substring of the error message */
} hostile;

static void test_flatc_hostile_models(void **state) {
    (void)state;
    const hostile cases[] = {
        {"newer major", "format_major: 3,", "[3, 4]", "[0, 1, 2]", "[1, 4]", 12, MDL_VERSION, "format 3.0"},
        {"older major (1.x: other Conv2D weight layout)", "format_major: 1,", "[3, 4]", "[0, 1, 2]", "[1, 4]", 12, MDL_VERSION, "format 1.0 is not supported"},
        {"index out of range", "", "[3, 4]", "[0, 7, 2]", "[1, 4]", 12, MDL_CORRUPT_MODEL, "tensor 7"},
        {"negative index", "", "[3, 4]", "[0, -5, 2]", "[1, 4]", 12, MDL_CORRUPT_MODEL, "tensor -5"},
        {"use before definition", "", "[3, 4]", "[3, 1, 2]", "[1, 4]", 12, MDL_CORRUPT_MODEL, "before it is defined"},
        {"short buffer", "", "[3, 4]", "[0, 1, 2]", "[1, 4]", 11, MDL_CORRUPT_MODEL, "holds 44 bytes"},
        {"huge dims", "", "[1099511627776, 1099511627776]", "[0, 1, 2]", "[1, 4]", 12, MDL_SHAPE, "too large"},
        {"negative dim", "", "[3, 4]", "[0, 1, 2]", "[1, -4]", 12, MDL_SHAPE, "negative"},
        {"shape mismatch", "", "[3, 4]", "[0, 1, 2]", "[1, 5]", 12, MDL_CORRUPT_MODEL, "buffer"},
        {"wrong input features", "", "[4, 3]", "[0, 1, 2]", "[1, 4]", 12, MDL_SHAPE, "FullyConnected 'fc'"},
        {"plan overlaps", "plan: {arena_bytes: 16, tensor_offsets: [0, 0, 0, 0], scratch_offsets: [0]},",
         "[3, 4]", "[0, 1, 2]", "[1, 4]", 12, MDL_CORRUPT_MODEL, "memory plan"},
        {"plan outside arena", "plan: {arena_bytes: 16, tensor_offsets: [0, 0, 0, 64], scratch_offsets: [0]},",
         "[3, 4]", "[0, 1, 2]", "[1, 4]", 12, MDL_CORRUPT_MODEL, "outside"},
        {"plan wrong length", "plan: {arena_bytes: 64, tensor_offsets: [0], scratch_offsets: [0]},",
         "[3, 4]", "[0, 1, 2]", "[1, 4]", 12, MDL_CORRUPT_MODEL, "memory plan"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const hostile *h = &cases[i];
        char json[8192];
        make_json(json, sizeof json, h->model_extra, h->w_shape, h->fc_inputs, h->x_shape, h->nw_floats);
        /* the "shape mismatch" case changes x, so make the weights disagree with the buffer */
        if (strcmp(h->what, "shape mismatch") == 0)
            make_json(json, sizeof json, "", "[3, 5]", "[0, 1, 2]", "[1, 5]", 12);
        mdl_model *m;
        mdl_error err = {MDL_OK, ""};
        void *data;
        mdl_status st = load_json(json, &m, &err, &data);
        if (st != h->want || !strstr(err.msg, h->msg))
            fail_msg("%s: got %s '%s', want %s containing '%s'", h->what, mdl_status_str(st), err.msg,
                     mdl_status_str(h->want), h->msg);
        assert_null(m);
        /* by default a plan that fails the check is computed again, and the load says so */
        if (strstr(h->what, "plan ") && strcmp(h->what, "plan wrong length") != 0) {
            make_json(json, sizeof json, h->model_extra, h->w_shape, h->fc_inputs, h->x_shape, h->nw_floats);
            void *d2 = NULL;
            assert_int_equal(load_json(json, &m, &err, &d2), MDL_CORRUPT_MODEL);
            size_t size;
            void *again = th_read_file(th_tmp("model.mdl"), &size);
            assert_int_equal(mdl_model_load_buffer(again, size, NULL, &m, &err), MDL_OK);
            if (!strstr(mdl_model_load_note(m), "computed again")) fail_msg("%s: note '%s'", h->what, mdl_model_load_note(m));
            mdl_model_free(m);
            free(again);
            free(d2);
        }
        free(data);
    }
}

/* Enum values flatc accepts numerically but we do not know. */
static void test_unknown_enums(void **state) {
    (void)state;
    char json[8192];
    make_json(json, sizeof json, "", "[3, 4]", "[0, 1, 2]", "[1, 4]", 12);
    const struct {
        const char *from, *to;
        mdl_status want;
        const char *msg;
    } edits[] = {
        {"op: FULLY_CONNECTED", "op: 999", MDL_UNSUPPORTED, "unknown op code 999"},
        {"{name: \"x\", dtype: FLOAT32", "{name: \"x\", dtype: 9", MDL_UNSUPPORTED, "unknown dtype 9"},
        {"kind: RELU", "kind: 77", MDL_CORRUPT_MODEL, "unknown fused activation 77"},
        {"options_type: FullyConnectedOptions, options: {activation: {kind: RELU}}",
         "options_type: AxisOptions, options: {axis: 1}", MDL_CORRUPT_MODEL, "do not belong"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char edited[8192];
        char *at = strstr(json, edits[i].from);
        assert_non_null(at);
        snprintf(edited, sizeof edited, "%.*s%s%s", (int)(at - json), json, edits[i].to, at + strlen(edits[i].from));
        mdl_model *m;
        mdl_error err = {MDL_OK, ""};
        void *data;
        mdl_status st = load_json(edited, &m, &err, &data);
        if (st != edits[i].want || !strstr(err.msg, edits[i].msg))
            fail_msg("edit '%s': got %s '%s'", edits[i].to, mdl_status_str(st), err.msg);
        free(data);
    }
}

static void test_wrong_identifier(void **state) {
    (void)state;
    tm_mlp p = {1, 4, 8, 2, 0, 0, 0, 0, 0, 0};
    void *data;
    size_t size;
    assert_int_equal(tm_build_mlp(&p, 1, &data, &size), MDL_OK);
    memcpy((char *)data + 4, "ONNX", 4);
    mdl_model *m;
    mdl_error err;
    assert_int_equal(mdl_model_load_buffer(data, size, NULL, &m, &err), MDL_CORRUPT_MODEL);
    assert_non_null(strstr(err.msg, "identifier"));
    free(data);
    tm_mlp_free(&p);
}


/* Dynamic dims (format 2.1): flatc encodes a model with a symbolic batch that we load, resize and
   run; hostile symbol tables are rejected; our builder's symbols decode with flatc. */
static void dyn_json(char *json, size_t cap, const char *model_extra, const char *x_shape, const char *w_extra) {
    char base[8192];
    make_json(base, sizeof base, model_extra, "[3, 4]", "[0, 1, 2]", x_shape, 12);
    const char *from = "shape: [1, 3]}", *wfrom = "shape: [3, 4], buffer: 1";
    char *at = strstr(base, from);
    assert_non_null(at);
    char tmp[8192];
    snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(at - base), base, "shape: [-1, 3], dim_symbols: [0, -1]}", at + strlen(from));
    at = strstr(tmp, wfrom);
    assert_non_null(at);
    snprintf(json, cap, "%.*s%s%s%s", (int)(at - tmp), tmp, wfrom, w_extra, at + strlen(wfrom));
}

static void test_flatc_dynamic_dims(void **state) {
    (void)state;
    char json[8192];
    const char *syms = "symbols: [{name: \"batch\", max: 8}],";
    dyn_json(json, sizeof json, syms, "[-1, 4], dim_symbols: [0, -1]", "");
    mdl_model *m;
    mdl_error err;
    void *data;
    if (load_json(json, &m, &err, &data)) fail_msg("%s", err.msg);
    assert_int_equal(mdl_model_symbol_count(m), 1);
    mdl_tensor_info ti;
    assert_int_equal(mdl_model_input_info(m, 0, &ti), MDL_OK);
    assert_int_equal(ti.dims[0], -1);
    assert_string_equal(ti.dim_names[0], "batch");
    assert_int_equal(ti.dim_max[0], 8);
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    mdl_shape sh = {2, {5, 4}};
    assert_int_equal(mdl_session_resize(s, 1, &sh, &err), MDL_OK);
    float x[5 * 4], ref[5 * 3];
    for (int i = 0; i < 20; i++) x[i] = (float)(i % 7) - 3.0f;
    for (int r = 0; r < 5; r++)
        for (int n = 0; n < 3; n++) {
            double acc = Bv[n];
            for (int k = 0; k < 4; k++) acc += (double)W[n * 4 + k] * x[r * 4 + k];
            ref[r * 3 + n] = acc > 0 ? (float)acc : 0.0f;
        }
    assert_int_equal(mdl_session_set_input(s, 0, x, sizeof x, &err), MDL_OK);
    assert_int_equal(mdl_session_run(s), MDL_OK);
    th_assert_close(mdl_session_output_data(s, 0), ref, 15, 1e-6);
    mdl_session_free(s);
    mdl_model_free(m);
    free(data);

    const struct {
        const char *what, *extra, *x_shape, *w_extra, *msg;
    } bad[] = {
        {"symbol out of range", syms, "[-1, 4], dim_symbols: [5, -1]", "", "refers to symbol 5"},
        {"no symbols", "", "[-1, 4], dim_symbols: [0, -1]", "", "no symbols"},
        {"size in a dynamic dim", syms, "[4, 4], dim_symbols: [0, -1]", "", "must be -1"},
        {"codes for another rank", syms, "[-1, 4], dim_symbols: [0]", "", "dim symbols for rank"},
        {"computed graph input", syms, "[-1, 4], dim_symbols: [-2, -1]", "", "computed"},
        {"dynamic constant", syms, "[-1, 4], dim_symbols: [0, -1]", ", dim_symbols: [-1, 0]", "must be -1"},
        {"initial above bound", "symbols: [{name: \"batch\", max: 8, initial: 9}],", "[-1, 4], dim_symbols: [0, -1]", "", "initial value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dyn_json(json, sizeof json, bad[i].extra, bad[i].x_shape, bad[i].w_extra);
        err.msg[0] = 0;
        mdl_status st = load_json(json, &m, &err, &data);
        if (st != MDL_CORRUPT_MODEL || !strstr(err.msg, bad[i].msg))
            fail_msg("%s: got %s '%s', want corrupt model containing '%s'", bad[i].what, mdl_status_str(st),
                     err.msg, bad[i].msg);
        free(data);
    }

    /* what our builder writes for dynamic dims, as flatc reads it */
    mdl_builder *b;
    assert_int_equal(mdl_builder_create(NULL, &b, NULL), MDL_OK);
    int batch = mdl_builder_symbol(b, "batch", 16, 1);
    int xt = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 4}, NULL);
    int wt = mdl_builder_tensor(b, "w", MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 4}, W);
    int yt = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    mdl_builder_set_dims(b, xt, (int32_t[]){batch, MDL_DIM_FIXED});
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc", 3, (int[]){xt, wt, -1}, 1, &yt, NULL);
    mdl_builder_add_input(b, xt);
    mdl_builder_add_output(b, yt);
    void *bytes;
    size_t size;
    if (mdl_builder_finish(b, &bytes, &size, &err)) fail_msg("%s", err.msg);
    mdl_builder_free(b);
    cJSON *j = decode_with_flatc(bytes, size);
    assert_int_equal(cJSON_GetObjectItem(j, "format_minor")->valueint, MDL_FORMAT_MINOR);
    cJSON *sy = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "symbols"), 0);
    assert_string_equal(cJSON_GetObjectItem(sy, "name")->valuestring, "batch");
    assert_int_equal(cJSON_GetObjectItem(sy, "max")->valueint, 16);
    assert_int_equal(cJSON_GetObjectItem(sy, "initial")->valueint, 1);
    cJSON *tensors = cJSON_GetObjectItem(j, "tensors");
    cJSON *jx = by_name(tensors, "x"), *jy = by_name(tensors, "y");
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(jx, "shape"), 0)->valueint, -1);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(jx, "dim_symbols"), 0)->valueint, 0);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(jx, "dim_symbols"), 1)->valueint, -1);
    /* an inferred tensor of a dynamic graph: computed dims */
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(jy, "dim_symbols"), 0)->valueint, -2);
    assert_null(cJSON_GetObjectItem(j, "plan")); /* sessions plan their shapes */
    cJSON_Delete(j);
    free(bytes);
}

/* Block-sparse weights (format 2.2) as flatc reads what our builder writes: the blocks' columns
   and offsets, and only their values in the buffer. */
static void test_sparse_decodes_with_flatc(void **state) {
    (void)state;
    /* W [10, 4]: row group 0 has columns 1 and 3, group 1 (rows 8, 9) column 0 */
    float w[40] = {0};
    w[0 * 4 + 1] = 1.0f;
    w[5 * 4 + 3] = -2.0f;
    w[9 * 4 + 0] = 3.0f;
    mdl_builder *b;
    mdl_error err;
    assert_int_equal(mdl_builder_create(NULL, &b, NULL), MDL_OK);
    int xt = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 4}, NULL);
    int wt = mdl_builder_tensor(b, "w", MDL_DTYPE_FLOAT32, 2, (int64_t[]){10, 4}, w);
    int yt = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc", 3, (int[]){xt, wt, -1}, 1, &yt, NULL);
    mdl_builder_add_input(b, xt);
    mdl_builder_add_output(b, yt);
    assert_int_equal(mdl__builder_set_sparse(b, wt, false), MDL_OK);
    void *bytes;
    size_t size;
    if (mdl_builder_finish(b, &bytes, &size, &err)) fail_msg("%s", err.msg);
    mdl_builder_free(b);
    cJSON *j = decode_with_flatc(bytes, size);
    assert_int_equal(cJSON_GetObjectItem(j, "format_minor")->valueint, MDL_FORMAT_MINOR);
    cJSON *jw = by_name(cJSON_GetObjectItem(j, "tensors"), "w");
    cJSON *sp = cJSON_GetObjectItem(jw, "sparse");
    assert_non_null(sp);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(sp, "transposed")));
    cJSON *ptr = cJSON_GetObjectItem(sp, "block_ptr"), *col = cJSON_GetObjectItem(sp, "block_col");
    const int want_ptr[] = {0, 2, 3}, want_col[] = {1, 3, 0};
    assert_int_equal(cJSON_GetArraySize(ptr), 3);
    assert_int_equal(cJSON_GetArraySize(col), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cJSON_GetArrayItem(ptr, i)->valueint, want_ptr[i]);
        assert_int_equal(cJSON_GetArrayItem(col, i)->valueint, want_col[i]);
    }
    int buf = cJSON_GetObjectItem(jw, "buffer")->valueint;
    cJSON *data = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "buffers"), buf), "data");
    assert_int_equal(cJSON_GetArraySize(data), 3 * 8 * 4); /* 3 blocks of 8 floats */
    /* the second block (column 3 of rows 0..7) holds -2 in row 5: bytes 32 + 20 .. 23 */
    float v;
    uint8_t vb[4];
    for (int i = 0; i < 4; i++) vb[i] = (uint8_t)cJSON_GetArrayItem(data, 32 + 20 + i)->valueint;
    memcpy(&v, vb, 4);
    assert_true(v == -2.0f);
    cJSON_Delete(j);
    free(bytes);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builder_output_decodes_with_flatc),
        cmocka_unit_test(test_flatc_binary_loads_and_runs),
        cmocka_unit_test(test_flatc_hostile_models),
        cmocka_unit_test(test_unknown_enums),
        cmocka_unit_test(test_wrong_identifier),
        cmocka_unit_test(test_flatc_dynamic_dims),
        cmocka_unit_test(test_sparse_decodes_with_flatc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
