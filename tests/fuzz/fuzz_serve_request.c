/* libFuzzer target: mdeploy-serve's request bodies (tools/serve/request.c) on arbitrary bytes.
   The first byte picks the model and the body's format:
     bit 0  model: 0 = x f32 [batch<=16, 4] -> Relu -> y (one input, a dynamic batch);
                   1 = a f32 [2,3], ids i64 [2] -> sum = a + a, emb = Gather(table [5,3], ids)
     bit 1  .npy body (else JSON);  bit 2  .npy answer (else JSON)
   A body the parser accepts must describe tensors of exactly the model's dtype and a shape its
   signature allows; it is then applied to a session, run, and the answer written: a JSON answer
   must parse again (NaN aside) and a .npy one read back with the library's reader. */
#include "../../tools/serve/request.h"

#include "mdeploy/graph.h"
#include "mdeploy/npy.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mdl_model *models[2];

static mdl_model *finish(mdl_builder *b) {
    void *bytes;
    size_t n;
    mdl_model *m = NULL;
    if (mdl_builder_finish(b, &bytes, &n, NULL) != MDL_OK) abort();
    if (mdl_model_load_buffer(bytes, n, &(mdl_load_options){.flags = MDL_LOAD_COPY}, &m, NULL) != MDL_OK) abort();
    free(bytes);
    mdl_builder_free(b);
    return m;
}

static void build(void) {
    mdl_builder *b;
    if (mdl_builder_create(NULL, &b, NULL)) abort();
    int batch = mdl_builder_symbol(b, "batch", 16, 1);
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, 4}, NULL);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, 4}, NULL);
    mdl_builder_set_dims(b, x, (int32_t[]){batch, MDL_DIM_FIXED});
    mdl_builder_set_dims(b, y, (int32_t[]){batch, MDL_DIM_FIXED});
    mdl_builder_node(b, MDL_OP_RELU, "relu", 1, &x, 1, &y, NULL);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, y);
    models[0] = finish(b);

    static const float table[15] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    if (mdl_builder_create(NULL, &b, NULL)) abort();
    int a = mdl_builder_tensor(b, "a", MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, NULL);
    int ids = mdl_builder_tensor(b, "ids", MDL_DTYPE_INT64, 1, (int64_t[]){2}, NULL);
    int t = mdl_builder_tensor(b, "table", MDL_DTYPE_FLOAT32, 2, (int64_t[]){5, 3}, table);
    int sum = mdl_builder_tensor(b, "sum", MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, NULL);
    int emb = mdl_builder_tensor(b, "emb", MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, NULL);
    mdl_builder_node(b, MDL_OP_ADD, "add", 2, (int[]){a, a}, 1, &sum, NULL);
    mdl_builder_node(b, MDL_OP_GATHER, "gather", 2, (int[]){t, ids}, 1, &emb, NULL);
    mdl_builder_add_input(b, a);
    mdl_builder_add_input(b, ids);
    mdl_builder_add_output(b, sum);
    mdl_builder_add_output(b, emb);
    models[1] = finish(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!models[0]) build();
    if (size < 1) return 0;
    uint8_t mode = data[0];
    const mdl_model *m = models[mode & 1];
    bool npy_in = mode & 2, npy_out = mode & 4;
    char err[512];
    req_inputs in;
    int st = req_parse(m, npy_in, data + 1, size - 1, &in, err, sizeof err);
    if (st) {
        if (st < 400 || st > 599 || !err[0] || in.tensors) abort();
        size_t n;
        char *j = req_error_json(err, &n);
        if (!j) abort();
        free(j);
        return 0;
    }
    if (in.count != mdl_model_input_count(m)) abort();
    for (int i = 0; i < in.count; i++) {
        mdl_tensor_info ti;
        mdl_model_input_info(m, i, &ti);
        const req_tensor *t = &in.tensors[i];
        size_t count = 1;
        if (t->rank != ti.rank) abort();
        for (int32_t d = 0; d < t->rank; d++) {
            if (ti.dims[d] >= 0 ? t->dims[d] != ti.dims[d] : t->dims[d] < 0 || t->dims[d] > 16) abort();
            count *= (size_t)t->dims[d];
        }
        if (count * mdl_dtype_size(ti.dtype) != t->bytes || !t->data) abort();
        volatile uint8_t sink = 0; /* every byte is there (ASan) */
        for (size_t k = 0; k < t->bytes; k++) sink ^= ((const uint8_t *)t->data)[k];
        (void)sink;
    }
    mdl_session *s;
    if (mdl_session_create(m, NULL, &s, NULL) != MDL_OK) abort();
    st = req_apply(s, &in, err, sizeof err);
    if (!st && mdl_session_run(s) == MDL_OK) {
        req_body body;
        st = req_write_outputs(s, in.format, npy_out, &body, err, sizeof err);
        if (!st) {
            if (npy_out) {
                mdl_npy a;
                if (mdl_npy_read_buffer(body.data, body.len, &a, NULL) != MDL_OK) abort();
                mdl_tensor_info ti;
                mdl_session_output_info(s, 0, &ti);
                if (a.bytes != ti.bytes || memcmp(a.data, mdl_session_output_data(s, 0), a.bytes)) abort();
                mdl_npy_free(&a);
            } else if (!strstr(body.data, "NaN") && !strstr(body.data, "Infinity")) {
                cJSON *j = cJSON_ParseWithLength(body.data, body.len);
                if (!j) abort();
                cJSON_Delete(j);
            }
            free(body.data);
        } else if (st != 400) abort(); /* 400: a row-format answer the outputs' shapes do not allow */
    }
    mdl_session_free(s);
    req_inputs_free(&in);
    return 0;
}
