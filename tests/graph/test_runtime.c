/* End-to-end runtime tests: builder -> bytes -> load -> session -> run, against an independent
   reference; allocation-free run; caller arenas; a model shared by threads; metadata. */
#include "common/harness.h"
#include "common/models.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- counting allocator ------------------------------------------------------------------ */
typedef struct counter {
    long allocs, frees;
    size_t largest;
} counter;
static void *count_alloc(void *user, size_t n) {
    counter *c = user;
    c->allocs++;
    if (n > c->largest) c->largest = n;
    return malloc(n);
}
static void count_free(void *user, void *p) {
    ((counter *)user)->frees++;
    free(p);
}

static tm_mlp mlp_shape(int64_t batch) {
    tm_mlp p = {batch, 8, 16, 3, 0, 0, 0, 0, 0, 0};
    return p;
}

/* A model built for a test: its reference weights and its serialized bytes. */
typedef struct built {
    tm_mlp p;
    void *data;
    size_t size;
} built;

static built build(tm_mlp p, uint64_t seed) {
    built b = {p, NULL, 0};
    assert_int_equal(tm_build_mlp(&b.p, seed, &b.data, &b.size), MDL_OK);
    return b;
}

static void built_free(built *b) {
    free(b->data);
    tm_mlp_free(&b->p);
}

static mdl_model *load(const built *b) {
    mdl_model *m;
    assert_int_equal(mdl_model_load_buffer(b->data, b->size, NULL, &m, NULL), MDL_OK);
    return m;
}

/* One fresh random batch written straight into the input buffer, run, and compared with the
   independent reference. */
static void run_matches_reference(mdl_session *s, const tm_mlp *p) {
    const int64_t nx = p->batch * p->in, ny = p->batch * p->out;
    float *x = malloc(sizeof(float) * (size_t)nx), *ref = malloc(sizeof(float) * (size_t)ny);
    assert_true(x && ref);
    th_fill_uniform(x, nx, -1, 1);
    memcpy(mdl_session_input_data(s, 0), x, sizeof(float) * (size_t)nx);
    assert_int_equal(mdl_session_run(s), MDL_OK);
    tm_mlp_reference(p, x, ref);
    th_assert_close(mdl_session_output_data(s, 0), ref, ny, 1e-5);
    free(x);
    free(ref);
}

static void test_mlp_matches_reference(void **state) {
    (void)state;
    for (int64_t batch = 1; batch <= 5; batch += 4) {
        built b = build(mlp_shape(batch), 7);
        mdl_model *m;
        mdl_error err;
        assert_int_equal(mdl_model_load_buffer(b.data, b.size, NULL, &m, &err), MDL_OK);
        mdl_session *s;
        assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
        float x[5 * 8], ref[5 * 3];
        th_fill_uniform(x, batch * 8, -1, 1);
        assert_int_equal(mdl_session_set_input(s, 0, x, sizeof(float) * (size_t)(batch * 8), &err), MDL_OK);
        assert_int_equal(mdl_session_run(s), MDL_OK);
        tm_mlp_reference(&b.p, x, ref);
        th_assert_close(mdl_session_output_data(s, 0), ref, batch * 3, 1e-5);
        mdl_session_free(s);
        mdl_model_free(m);
        built_free(&b);
    }
}

static void test_introspection(void **state) {
    (void)state;
    built b = build(mlp_shape(2), 1);
    mdl_model *m = load(&b);
    assert_string_equal(mdl_model_name(m), "test-mlp");
    assert_string_equal(mdl_model_version(m), "1.2.3");
    assert_string_equal(mdl_model_description(m), "residual MLP for tests");
    assert_non_null(strstr(mdl_model_producer(m), "mdeploy"));
    assert_string_equal(mdl_model_metadata(m, "license"), "MIT");
    assert_null(mdl_model_metadata(m, "missing"));
    assert_int_equal(mdl_model_format_major(m), MDL_FORMAT_MAJOR);
    assert_int_equal(mdl_model_input_count(m), 1);
    assert_int_equal(mdl_model_output_count(m), 1);
    mdl_tensor_info ti;
    assert_int_equal(mdl_model_input_info(m, 0, &ti), MDL_OK);
    assert_string_equal(ti.name, "x");
    assert_int_equal(ti.dtype, MDL_DTYPE_FLOAT32);
    assert_int_equal(ti.rank, 2);
    assert_int_equal(ti.dims[0], 2);
    assert_int_equal(ti.dims[1], 8);
    assert_int_equal(ti.bytes, 2 * 8 * 4);
    assert_int_equal(mdl_model_output_info(m, 0, &ti), MDL_OK);
    assert_string_equal(ti.name, "y");
    assert_int_equal(mdl_model_input_info(m, 1, &ti), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_model_input_index(m, "x"), 0);
    assert_int_equal(mdl_model_output_index(m, "nope"), -1);
    assert_int_equal(mdl_model_node_count(m), 5);
    mdl_node_info ni;
    assert_int_equal(mdl_model_node_info(m, 3, &ni), MDL_OK);
    assert_string_equal(ni.op, "Add");
    assert_string_equal(ni.name, "residual");
    /* weights: W1 16x8 + b1 16 + W2 16x16 + b2 16 + W3 3x16 + b3 3, float32 */
    assert_int_equal(mdl_model_weight_bytes(m), 4 * (128 + 16 + 256 + 16 + 48 + 3));
    mdl_model_free(m);
    built_free(&b);
}

/* The planner reuses memory: a chain h1..h4 of [2,16] tensors plus x and y needs less than the sum,
   and the arena is exactly large enough (the session's own bytes). */
static void test_plan_reuses_memory(void **state) {
    (void)state;
    built b = build(mlp_shape(2), 1);
    mdl_model *m = load(&b);
    size_t sum = 0;
    for (int t = 0; t < mdl_model_tensor_count(m); t++) {
        mdl_tensor_info ti;
        bool c;
        mdl_model_tensor_info(m, t, &ti, &c);
        if (!c) sum += (ti.bytes + 15) & ~(size_t)15;
    }
    size_t act = mdl_model_activation_bytes(m);
    assert_true(act > 0);
    assert_true(act < sum);
    /* h1 must stay alive until the residual add: at least three [2,16] buffers live at once */
    assert_true(act >= 3 * 2 * 16 * 4);
    mdl_model_free(m);
    built_free(&b);
}

static void test_run_allocates_nothing(void **state) {
    (void)state;
    built b = build(mlp_shape(3), 3);
    counter c = {0, 0, 0};
    mdl_allocator a = {count_alloc, count_free, &c};
    mdl_load_options lo = {&a, MDL_LOAD_COPY, NULL, 0, 0, 0, NULL, 0};
    mdl_model *m;
    assert_int_equal(mdl_model_load_buffer(b.data, b.size, &lo, &m, NULL), MDL_OK);
    mdl_session_options so = mdl_session_options_default();
    so.allocator = &a;
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, &so, &s, NULL), MDL_OK);
    long allocs = c.allocs, frees = c.frees;
    assert_true(allocs >= 2); /* the allocator really is in use */
    float x[3 * 8];
    for (int it = 0; it < 1000; it++) {
        th_fill_uniform(x, 24, -1, 1);
        memcpy(mdl_session_input_data(s, 0), x, sizeof x);
        assert_int_equal(mdl_session_run(s), MDL_OK);
    }
    assert_int_equal(c.allocs, allocs);
    assert_int_equal(c.frees, frees);
    mdl_session_free(s);
    mdl_model_free(m);
    assert_int_equal(c.allocs, c.frees); /* nothing leaked */
    built_free(&b);
}

static void test_session_in_caller_arena(void **state) {
    (void)state;
    built b = build(mlp_shape(2), 5);
    mdl_model *m = load(&b);
    size_t need = mdl_model_arena_size(m);
    assert_true(need >= mdl_model_activation_bytes(m));
    uint8_t *region = malloc(need + 1);
    mdl_session *s;
    mdl_error err;
    /* one byte short is refused with a message giving the size */
    assert_int_equal(mdl_session_create_in(m, region + 1, need - 1, &s, &err), MDL_BUFFER_TOO_SMALL);
    assert_null(s);
    assert_non_null(strstr(err.msg, "too small"));
    /* the exact size works at any alignment */
    assert_int_equal(mdl_session_create_in(m, region + 1, need, &s, &err), MDL_OK);
    assert_true((uint8_t *)s >= region + 1 && (uint8_t *)s < region + 1 + need);
    run_matches_reference(s, &b.p);
    const uint8_t *out = mdl_session_output_data(s, 0);
    assert_true(out >= region + 1 && out + 6 * 4 <= region + 1 + need);
    /* even there, every tensor starts on a cache line (SIMD loads never straddle two) */
    assert_int_equal((uintptr_t)mdl_session_input_data(s, 0) % 64, 0);
    assert_int_equal((uintptr_t)out % 64, 0);
    mdl_session_free(s);
    free(region);
    mdl_model_free(m);
    built_free(&b);
}

/* Written weight buffers start at 64-byte file offsets, so a mapped file (page aligned) gives
   kernels that read weights in place whole cache lines: found by searching the file for each
   weight's known bytes. */
static void test_weights_on_cache_lines(void **state) {
    (void)state;
    built b = build(mlp_shape(3), 11);
    const tm_mlp *p = &b.p;
    const uint8_t *data = b.data;
    const struct { const float *v; int64_t n; } w[] = {
        {p->w1, p->hid * p->in}, {p->b1, p->hid}, {p->w2, p->hid * p->hid},
        {p->b2, p->hid}, {p->w3, p->out * p->hid}, {p->b3, p->out}};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        const size_t bytes = (size_t)w[i].n * sizeof(float);
        const uint8_t *hit = NULL;
        for (size_t off = 0; off + bytes <= b.size && !hit; off++)
            if (!memcmp(data + off, w[i].v, bytes)) hit = data + off;
        assert_non_null(hit);
        if ((hit - data) % 64) fail_msg("weight %zu at file offset %td", i, hit - data);
    }
    built_free(&b);
}

/* Firmware style: the model used in place from an aligned buffer and every byte from a bump
   allocator over a static array. */
static void test_heap_free_loading(void **state) {
    (void)state;
    built b = build(mlp_shape(1), 9);
    static _Alignas(16) uint8_t heap[16384];
    mdl_bump bump;
    mdl_allocator a = mdl_bump_init(&bump, heap, sizeof heap);
    mdl_load_options lo = {&a, 0, NULL, 0, 0, 0, NULL, 0};
    mdl_model *m;
    mdl_error err;
    assert_int_equal(mdl_model_load_buffer(b.data, b.size, &lo, &m, &err), MDL_OK);
    assert_true(bump.used > 0 && bump.used < sizeof heap);
    static _Alignas(16) uint8_t arena[4096];
    assert_true(mdl_model_arena_size(m) <= sizeof arena);
    mdl_session *s;
    assert_int_equal(mdl_session_create_in(m, arena, sizeof arena, &s, &err), MDL_OK);
    run_matches_reference(s, &b.p);
    /* in place means in place: the weights are read from the caller's buffer */
    mdl_tensor_info ti;
    bool c;
    mdl_model_tensor_info(m, 1, &ti, &c);
    assert_true(c);
    /* a misaligned buffer without MDL_LOAD_COPY is refused, with COPY it loads */
    uint8_t *shifted = malloc(b.size + 1);
    memcpy(shifted + 1, b.data, b.size);
    mdl_model *m2;
    assert_int_equal(mdl_model_load_buffer(shifted + 1, b.size, NULL, &m2, &err),
                     MDL_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "aligned"));
    mdl_load_options copy = {NULL, MDL_LOAD_COPY, NULL, 0, 0, 0, NULL, 0};
    assert_int_equal(mdl_model_load_buffer(shifted + 1, b.size, &copy, &m2, &err), MDL_OK);
    mdl_model_free(m2);
    free(shifted);
    mdl_session_free(s);
    mdl_model_free(m);
    built_free(&b);
}

/* ---- threads ------------------------------------------------------------------------------ */
#define NTHREADS 4
#define NINPUTS 64
typedef struct job {
    const mdl_model *m;
    const float *x;   /* NINPUTS inputs of 8 */
    float *y;         /* NINPUTS outputs of 3 */
    int status;
} job;

static void *worker(void *arg) {
    job *j = arg;
    mdl_session *s;
    if (mdl_session_create(j->m, NULL, &s, NULL)) {
        j->status = -1;
        return NULL;
    }
    for (int rep = 0; rep < 50; rep++)
        for (int i = 0; i < NINPUTS; i++) {
            memcpy(mdl_session_input_data(s, 0), j->x + 8 * i, 8 * sizeof(float));
            if (mdl_session_run(s)) j->status = -2;
            memcpy(j->y + 3 * i, mdl_session_output_data(s, 0), 3 * sizeof(float));
        }
    mdl_session_free(s);
    return NULL;
}

static void test_shared_model_threads(void **state) {
    (void)state;
    built b = build(mlp_shape(1), 11);
    mdl_model *m = load(&b);
    static float x[NINPUTS * 8], single[NINPUTS * 3], multi[NTHREADS][NINPUTS * 3];
    th_fill_uniform(x, NINPUTS * 8, -2, 2);
    job solo = {m, x, single, 0};
    worker(&solo);
    assert_int_equal(solo.status, 0);
    pthread_t th[NTHREADS];
    job jobs[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        jobs[t] = (job){m, x, multi[t], 0};
        assert_int_equal(pthread_create(&th[t], NULL, worker, &jobs[t]), 0);
    }
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(jobs[t].status, 0);
        assert_memory_equal(multi[t], single, sizeof single); /* bit-identical */
    }
    float ref[3];
    tm_mlp_reference(&b.p, x, ref);
    th_assert_close(single, ref, 3, 1e-5);
    mdl_model_free(m);
    built_free(&b);
}

static void test_load_file_maps_in_place(void **state) {
    (void)state;
    built b = build((tm_mlp){1, 256, 512, 3, 0, 0, 0, 0, 0, 0}, 13); /* ~1.6 MB of weights */
    assert_true(th_write_file(th_tmp("m.mdl"), b.data, b.size));
    counter c = {0, 0, 0};
    mdl_allocator a = {count_alloc, count_free, &c};
    mdl_load_options lo = {&a, 0, NULL, 0, 0, 0, NULL, 0};
    mdl_model *m;
    mdl_error err;
    assert_int_equal(mdl_model_load_file(th_tmp("m.mdl"), &lo, &m, &err), MDL_OK);
    assert_true(b.size > 1000000);
    assert_true(c.largest < 16384); /* only graph records: the file bytes are not copied */
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    run_matches_reference(s, &b.p);
    mdl_session_free(s);
    mdl_model_free(m);
    assert_int_equal(c.allocs, c.frees);
    built_free(&b);
}

static void test_api_misuse(void **state) {
    (void)state;
    mdl_model *m = (mdl_model *)1;
    mdl_error err;
    assert_int_equal(mdl_model_load_buffer(NULL, 10, NULL, &m, &err), MDL_INVALID_ARGUMENT);
    assert_null(m);
    assert_int_equal(mdl_model_load_file("/nonexistent/model.mdl", NULL, &m, &err), MDL_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/model.mdl"));
    assert_null(m);
    assert_int_equal(mdl_model_load_file("/tmp", NULL, &m, &err), MDL_IO);
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_true(th_write_file(th_tmp("empty.mdl"), "", 0));
    assert_int_equal(mdl_model_load_file(th_tmp("empty.mdl"), NULL, &m, &err), MDL_CORRUPT_MODEL);
    assert_non_null(strstr(err.msg, "empty file"));
    mdl_model_free(NULL);
    mdl_session_free(NULL);
    assert_int_equal(mdl_session_run(NULL), MDL_INVALID_ARGUMENT);
    assert_string_equal(mdl_status_str(MDL_CORRUPT_MODEL), "corrupt model");
    assert_string_equal(mdl_status_str((mdl_status)999), "unknown status");
    assert_string_equal(mdl_dtype_name(MDL_DTYPE_INT64), "int64");
    assert_int_equal(mdl_dtype_size(MDL_DTYPE_INT8), 1);
    assert_string_equal(mdl_op_name(MDL_OP_CONV2D), "Conv2D");
}

/* Builder errors: a wrong declared shape is caught at finish with the node named. */
static void test_builder_rejects_bad_graph(void **state) {
    (void)state;
    mdl_builder *b;
    assert_int_equal(mdl_builder_create(NULL, &b, NULL), MDL_OK);
    float w[12] = {0};
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, 4}, NULL);
    int wt = mdl_builder_tensor(b, "w", MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 4}, w);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, 5}, NULL);
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc", 2, (int[]){x, wt}, 1, &y, NULL);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, y);
    void *data;
    size_t size;
    mdl_error err;
    assert_int_equal(mdl_builder_finish(b, &data, &size, &err), MDL_SHAPE);
    assert_null(data);
    assert_non_null(strstr(err.msg, "FullyConnected 'fc'"));
    assert_non_null(strstr(err.msg, "[1,5]"));
    assert_non_null(strstr(err.msg, "[1,3]"));
    mdl_builder_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_matches_reference),
        cmocka_unit_test(test_introspection),
        cmocka_unit_test(test_plan_reuses_memory),
        cmocka_unit_test(test_run_allocates_nothing),
        cmocka_unit_test(test_session_in_caller_arena),
        cmocka_unit_test(test_weights_on_cache_lines),
        cmocka_unit_test(test_heap_free_loading),
        cmocka_unit_test(test_shared_model_threads),
        cmocka_unit_test(test_load_file_maps_in_place),
        cmocka_unit_test(test_api_misuse),
        cmocka_unit_test(test_builder_rejects_bad_graph),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
