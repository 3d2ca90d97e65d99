/* Dynamic dimensions at run time: a hand-built model with a symbolic batch (bounded) and a
   computed dim after a reshape; sessions at several shapes against an independent reference,
   resize failures that leave the session usable, caller arenas, getters, corrupt tables. */
#include "common/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { IN = 5, HID = 3, MAXB = 16 };

/* x [batch, IN] -> FC(w, b) + relu -> h [batch, HID] -> RESHAPE -> y [batch*HID] (computed)
   -> RESHAPE -> z [batch, HID] (named). */
static float W[HID * IN], B[HID];

static void *build_model(size_t *size, int64_t max) {
    mdl_builder *b;
    assert_int_equal(mdl_builder_create(NULL, &b, NULL), MDL_OK);
    int batch = mdl_builder_symbol(b, "batch", max, 1);
    assert_int_equal(batch, 0);
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){4, IN}, NULL);
    int w = mdl_builder_tensor(b, "w", MDL_DTYPE_FLOAT32, 2, (int64_t[]){HID, IN}, W);
    int bias = mdl_builder_tensor(b, "b", MDL_DTYPE_FLOAT32, 1, (int64_t[]){HID}, B);
    int h = mdl_builder_tensor(b, "h", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, 1, (int64_t[]){4 * HID}, NULL);
    int z = mdl_builder_tensor(b, "z", MDL_DTYPE_FLOAT32, 2, (int64_t[]){4, HID}, NULL);
    assert_int_equal(mdl_builder_set_dims(b, x, (int32_t[]){batch, MDL_DIM_FIXED}), MDL_OK);
    assert_int_equal(mdl_builder_set_dims(b, y, (int32_t[]){MDL_DIM_COMPUTED}), MDL_OK);
    assert_int_equal(mdl_builder_set_dims(b, z, (int32_t[]){batch, MDL_DIM_FIXED}), MDL_OK);
    mdl_op_options o = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
    o.fc.act.kind = MDL_ACT_RELU;
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc", 3, (int[]){x, w, bias}, 1, &h, &o);
    mdl_builder_node(b, MDL_OP_RESHAPE, "flat", 1, &h, 1, &y, NULL);
    mdl_builder_node(b, MDL_OP_RESHAPE, "unflat", 1, &y, 1, &z, NULL);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, z);
    void *data;
    mdl_error err;
    mdl_status st = mdl_builder_finish(b, &data, size, &err);
    if (st) fail_msg("%s", err.msg);
    mdl_builder_free(b);
    return data;
}

static mdl_model *load(void *data, size_t size) {
    mdl_model *m;
    mdl_error err;
    mdl_status st = mdl_model_load_buffer(data, size, NULL, &m, &err);
    if (st) fail_msg("%s", err.msg);
    return m;
}

/* Runs the session at its current batch on random input and compares with plain loops. */
static void check_run(mdl_session *s, int64_t batch) {
    mdl_tensor_info in, out;
    assert_int_equal(mdl_session_input_info(s, 0, &in), MDL_OK);
    assert_int_equal(mdl_session_output_info(s, 0, &out), MDL_OK);
    assert_int_equal(in.dims[0], batch);
    assert_int_equal(out.dims[0], batch);
    assert_int_equal(out.dims[1], HID);
    assert_int_equal(in.bytes, (size_t)batch * IN * sizeof(float));
    float *x = malloc(in.bytes + 1);
    th_fill_uniform(x, batch * IN, -1, 1);
    assert_int_equal(mdl_session_set_input(s, 0, x, in.bytes, NULL), MDL_OK);
    assert_int_equal(mdl_session_run(s), MDL_OK);
    const float *z = mdl_session_output_data(s, 0);
    for (int64_t r = 0; r < batch; r++)
        for (int j = 0; j < HID; j++) {
            double acc = B[j];
            for (int k = 0; k < IN; k++) acc += (double)x[r * IN + k] * W[j * IN + k];
            if (acc < 0) acc = 0;
            assert_float_equal(z[r * HID + j], acc, 1e-5);
        }
    free(x);
}

static void setup_weights(void) {
    th_seed(12);
    th_fill_uniform(W, HID * IN, -1, 1);
    th_fill_uniform(B, HID, -0.5f, 0.5f);
}

static void test_resize_runs_every_batch(void **state) {
    setup_weights();
    size_t size;
    void *data = build_model(&size, MAXB);
    mdl_model *m = load(data, size);
    assert_int_equal(mdl_model_symbol_count(m), 1);
    const char *name;
    int64_t max, initial;
    assert_true(mdl_model_symbol(m, 0, &name, &max, &initial));
    assert_string_equal(name, "batch");
    assert_int_equal(max, MAXB);
    assert_int_equal(initial, 1);
    assert_false(mdl_model_symbol(m, 1, NULL, NULL, NULL));
    mdl_tensor_info info;
    assert_int_equal(mdl_model_input_info(m, 0, &info), MDL_OK);
    assert_int_equal(info.dims[0], -1);
    assert_int_equal(info.dims[1], IN);
    assert_int_equal(info.bytes, 0);
    assert_non_null(info.dim_names);
    assert_string_equal(info.dim_names[0], "batch");
    assert_null(info.dim_names[1]);
    assert_int_equal(info.dim_max[0], MAXB);

    mdl_session *s;
    assert_int_equal(mdl_session_create(m, NULL, &s, NULL), MDL_OK);
    check_run(s, 1); /* the initial value */
    const int64_t batches[] = {7, 16, 1, 3, 0, 16};
    for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++) {
        mdl_shape sh = {2, {batches[i], IN}};
        mdl_error err;
        mdl_status st = mdl_session_resize(s, 1, &sh, &err);
        if (st) fail_msg("%s", err.msg);
        check_run(s, batches[i]);
    }
    mdl_session_free(s);

    /* created at a shape */
    mdl_session_options o = mdl_session_options_default();
    mdl_shape sh = {2, {9, IN}};
    o.ninput_shapes = 1;
    o.input_shapes = &sh;
    assert_int_equal(mdl_session_create(m, &o, &s, NULL), MDL_OK);
    check_run(s, 9);
    mdl_session_free(s);
    mdl_model_free(m);
    free(data);
}

static void test_resize_failures_keep_the_session(void **state) {
    setup_weights();
    size_t size;
    void *data = build_model(&size, MAXB);
    mdl_model *m = load(data, size);
    mdl_session *s;
    mdl_shape sh = {2, {5, IN}};
    assert_int_equal(mdl_session_create(m, NULL, &s, NULL), MDL_OK);
    assert_int_equal(mdl_session_resize(s, 1, &sh, NULL), MDL_OK);
    check_run(s, 5);
    mdl_error err;
    mdl_shape big = {2, {MAXB + 1, IN}};
    assert_int_equal(mdl_session_resize(s, 1, &big, &err), MDL_SHAPE);
    assert_non_null(strstr(err.msg, "'batch'"));
    assert_non_null(strstr(err.msg, "bound 16"));
    check_run(s, 5);
    mdl_shape rank3 = {3, {5, IN, 1}};
    assert_int_equal(mdl_session_resize(s, 1, &rank3, &err), MDL_SHAPE);
    assert_non_null(strstr(err.msg, "rank 2"));
    check_run(s, 5);
    mdl_shape fixed = {2, {5, IN + 1}};
    assert_int_equal(mdl_session_resize(s, 1, &fixed, &err), MDL_SHAPE);
    assert_non_null(strstr(err.msg, "dim 1 is fixed to 5"));
    check_run(s, 5);
    mdl_shape neg = {2, {-3, IN}};
    assert_int_equal(mdl_session_resize(s, 1, &neg, &err), MDL_SHAPE);
    assert_int_equal(mdl_session_resize(s, 2, &sh, &err), MDL_INVALID_ARGUMENT);
    check_run(s, 5);
    /* the session options take the same checks */
    mdl_session_options o = mdl_session_options_default();
    o.ninput_shapes = 1;
    o.input_shapes = &big;
    mdl_session *s2 = (mdl_session *)1;
    assert_int_equal(mdl_session_create(m, &o, &s2, &err), MDL_SHAPE);
    assert_null(s2);
    mdl_session_free(s);
    mdl_model_free(m);
    free(data);
}

/* mdl_session_options.max_arena_bytes holds for resizes too: the smallest limit that admits
   batch 2 (found by trying) refuses batch MAXB with MDL_LIMIT naming the limit, and the session
   still runs at batch 2; without a limit the same resize succeeds. */
static void test_resize_beyond_arena_limit(void **state) {
    setup_weights();
    size_t size;
    void *data = build_model(&size, MAXB);
    mdl_model *m = load(data, size);
    mdl_session_options o = mdl_session_options_default();
    mdl_shape two = {2, {2, IN}}, big = {2, {MAXB, IN}};
    mdl_session *s = NULL;
    size_t limit;
    for (limit = 64; limit < ((size_t)1 << 24); limit += 64) {
        o.max_arena_bytes = limit;
        if (mdl_session_create(m, &o, &s, NULL) != MDL_OK) continue;
        if (mdl_session_resize(s, 1, &two, NULL) == MDL_OK) break;
        check_run(s, 1); /* a refused resize keeps the initial shape */
        mdl_session_free(s);
        s = NULL;
    }
    assert_non_null(s);
    check_run(s, 2);
    mdl_error err;
    assert_int_equal(mdl_session_resize(s, 1, &big, &err), MDL_LIMIT);
    assert_non_null(strstr(err.msg, "max_arena_bytes"));
    char want[64];
    snprintf(want, sizeof want, "= %zu", limit);
    assert_non_null(strstr(err.msg, want));
    check_run(s, 2);
    mdl_session_free(s);
    o.max_arena_bytes = 0;
    assert_int_equal(mdl_session_create(m, &o, &s, NULL), MDL_OK);
    assert_int_equal(mdl_session_resize(s, 1, &big, NULL), MDL_OK);
    check_run(s, MAXB);
    mdl_session_free(s);
    mdl_model_free(m);
    free(data);
}

static void test_caller_arena_at_initial_shapes(void **state) {
    setup_weights();
    size_t size;
    void *data = build_model(&size, 0);
    mdl_model *m = load(data, size);
    size_t need = mdl_model_arena_size(m);
    void *arena = malloc(need);
    mdl_session *s;
    assert_int_equal(mdl_session_create_in(m, arena, need, &s, NULL), MDL_OK);
    check_run(s, 1);
    mdl_shape sh = {2, {1, IN}};
    assert_int_equal(mdl_session_resize(s, 1, &sh, NULL), MDL_OK); /* same shapes: nothing to do */
    mdl_shape sh2 = {2, {2, IN}};
    mdl_error err;
    assert_int_equal(mdl_session_resize(s, 1, &sh2, &err), MDL_UNSUPPORTED);
    check_run(s, 1);
    mdl_session_free(s);
    free(arena);
    /* no bound: a large batch */
    assert_int_equal(mdl_session_create(m, NULL, &s, NULL), MDL_OK);
    mdl_shape huge = {2, {1000, IN}};
    assert_int_equal(mdl_session_resize(s, 1, &huge, NULL), MDL_OK);
    check_run(s, 1000);
    mdl_session_free(s);
    mdl_model_free(m);
    free(data);
}

/* run allocates nothing after a resize (a counting allocator). */
static long nallocs;
static void *c_alloc(void *u, size_t n) { nallocs++; return malloc(n); }
static void c_free(void *u, void *p) { free(p); }

static void test_run_after_resize_allocates_nothing(void **state) {
    setup_weights();
    size_t size;
    void *data = build_model(&size, MAXB);
    mdl_model *m = load(data, size);
    mdl_allocator a = {c_alloc, c_free, NULL};
    mdl_session_options o = mdl_session_options_default();
    o.allocator = &a;
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, &o, &s, NULL), MDL_OK);
    mdl_shape sh = {2, {12, IN}};
    assert_int_equal(mdl_session_resize(s, 1, &sh, NULL), MDL_OK);
    long before = nallocs;
    for (int i = 0; i < 3; i++) assert_int_equal(mdl_session_run(s), MDL_OK);
    assert_int_equal(nallocs, before);
    mdl_session_free(s);
    mdl_model_free(m);
    free(data);
}

/* The dim tables are untrusted: flip every byte of the file and load; nothing may crash (ASan
   build), and a model that loads must run at a resized shape. */
static void test_corrupt_dynamic_files(void **state) {
    setup_weights();
    size_t size;
    uint8_t *data = build_model(&size, MAXB);
    uint8_t *copy = malloc(size);
    for (size_t i = 0; i < size; i++) {
        memcpy(copy, data, size);
        copy[i] ^= 0x5a;
        mdl_model *m;
        if (mdl_model_load_buffer(copy, size, NULL, &m, NULL) != MDL_OK) continue;
        mdl_session *s;
        if (mdl_session_create(m, NULL, &s, NULL) == MDL_OK) {
            mdl_shape sh = {2, {3, IN}};
            mdl_tensor_info in;
            if (mdl_session_input_info(s, 0, &in) == MDL_OK && in.rank == 2) {
                sh.dims[1] = in.dims[1];
                if (mdl_session_resize(s, 1, &sh, NULL) == MDL_OK) {
                    mdl_session_input_info(s, 0, &in);
                    memset(mdl_session_input_data(s, 0), 0, in.bytes);
                    mdl_session_run(s);
                }
            }
            mdl_session_free(s);
        }
        mdl_model_free(m);
    }
    free(copy);
    free(data);
}

/* A resized session shares the weights the model packed once for more than one row (the
   model's pack instance) instead of packing its own copy: a resize allocates much less than the
   weights. */
static size_t nbytes_alloc;
static void *b_alloc(void *u, size_t n) { nbytes_alloc += n; return malloc(n); }

static void test_resize_shares_packed_weights(void **state) {
    enum { K = 256, N = 256 };
    float *w = malloc(sizeof(float) * K * N);
    th_seed(3);
    th_fill_uniform(w, K * N, -1, 1);
    mdl_builder *b;
    assert_int_equal(mdl_builder_create(NULL, &b, NULL), MDL_OK);
    int batch = mdl_builder_symbol(b, "batch", 0, 1);
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){4, K}, NULL);
    int wt = mdl_builder_tensor(b, "w", MDL_DTYPE_FLOAT32, 2, (int64_t[]){N, K}, w);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    mdl_builder_set_dims(b, x, (int32_t[]){batch, MDL_DIM_FIXED});
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc", 3, (int[]){x, wt, -1}, 1, &y, NULL);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, y);
    void *data;
    size_t size;
    assert_int_equal(mdl_builder_finish(b, &data, &size, NULL), MDL_OK);
    mdl_builder_free(b);
    mdl_model *m = load(data, size);
    mdl_allocator a = {b_alloc, c_free, NULL};
    mdl_session_options o = mdl_session_options_default();
    o.allocator = &a;
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, &o, &s, NULL), MDL_OK);
    for (int64_t bt = 2; bt <= 32; bt *= 4) {
        mdl_shape sh = {2, {bt, K}};
        nbytes_alloc = 0;
        assert_int_equal(mdl_session_resize(s, 1, &sh, NULL), MDL_OK);
        /* the arena (at most 64 KiB here) and records, no copy of the 256 KiB of weights */
        assert_true(nbytes_alloc < sizeof(float) * K * N);
        /* and computes right */
        float *in = mdl_session_input_data(s, 0);
        th_fill_uniform(in, bt * K, -1, 1);
        float *xin = malloc(sizeof(float) * (size_t)(bt * K));
        memcpy(xin, in, sizeof(float) * (size_t)(bt * K));
        assert_int_equal(mdl_session_run(s), MDL_OK);
        const float *out = mdl_session_output_data(s, 0);
        for (int64_t r = 0; r < bt; r++)
            for (int j = 0; j < N; j += 17) {
                double acc = 0;
                for (int k = 0; k < K; k++) acc += (double)xin[r * K + k] * w[j * K + k];
                assert_float_equal(out[r * N + j], acc, 1e-3);
            }
        free(xin);
    }
    mdl_session_free(s);
    mdl_model_free(m);
    free(data);
    free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_runs_every_batch),
        cmocka_unit_test(test_resize_failures_keep_the_session),
        cmocka_unit_test(test_resize_beyond_arena_limit),
        cmocka_unit_test(test_caller_arena_at_initial_shapes),
        cmocka_unit_test(test_run_after_resize_allocates_nothing),
        cmocka_unit_test(test_corrupt_dynamic_files),
        cmocka_unit_test(test_resize_shares_packed_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
