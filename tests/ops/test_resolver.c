/* Operator registration (include/mdeploy/resolver.h): the public kernel list equals the full
   table, a load finds kernels only in the resolver it is given and names what is missing, the
   resolver's capacity is enforced, MDL_SESSION_ARENA_BYTES is mdl_model_arena_size, and
   mdl_model_needs_load_planner tells the models whose weights are widened at load (the firmware
   check shows a firmware core refusing them without mdl_op_resolver_add_load_planner). */
#include "common/harness.h"
#include "common/models.h"
#include "mdeploy/convert.h"
#include "mdeploy/resolver.h"
#include "ops/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every (operator, dtype) has the same kernel through the resolver list as in registry.c's
   table, both ways: a kernel added to one but not the other fails here. */
static void test_map_equals_full_table(void **state) {
    (void)state;
    static mdl_op_resolver_entry e[MDL_KERNEL_COUNT];
    mdl_op_resolver r;
    mdl_op_resolver_init(&r, e, MDL_KERNEL_COUNT);
    assert_int_equal(mdl_op_resolver_add_all(&r), MDL_OK);
    assert_int_equal(r.count, MDL_KERNEL_COUNT); /* no (op, dtype) listed twice */
    int in_table = 0;
    for (int op = 0; op < MDL_OP_COUNT; op++)
        for (int dt = 0; dt < MDL_DTYPE_COUNT; dt++) {
            const mdl__kernel *full = mdl__kernel_find((mdl_op)op, (mdl_dtype)dt);
            const mdl__kernel *res = mdl__kernel_resolve(&r, (mdl_op)op, (mdl_dtype)dt);
            if (full != res)
                fail_msg("%s/%s: table %p, resolver %p", mdl_op_name((mdl_op)op),
                         mdl_dtype_name((mdl_dtype)dt), (const void *)full, (const void *)res);
            assert_int_equal(mdl_op_resolver_has(&r, (mdl_op)op, (mdl_dtype)dt), full != NULL);
            in_table += full != NULL;
            /* no resolver: the full table, as before */
            assert_ptr_equal(mdl__kernel_resolve(NULL, (mdl_op)op, (mdl_dtype)dt), full);
        }
    assert_int_equal(in_table, MDL_KERNEL_COUNT);
}

static void test_capacity_and_arguments(void **state) {
    (void)state;
    mdl_op_resolver_entry e[1];
    mdl_op_resolver r;
    mdl_op_resolver_init(&r, e, 1);
    assert_int_equal(MDL_OP_RESOLVER_ADD(&r, CONV2D, INT8), MDL_OK);
    assert_int_equal(MDL_OP_RESOLVER_ADD(&r, CONV2D, INT8), MDL_OK); /* again: no-op */
    assert_int_equal(r.count, 1);
    assert_int_equal(MDL_OP_RESOLVER_ADD(&r, RELU, FLOAT32), MDL_BUFFER_TOO_SMALL);
    assert_int_equal(mdl_op_resolver_add_all(&r), MDL_BUFFER_TOO_SMALL);
    assert_int_equal(mdl_op_resolver_add_FULLY_CONNECTED_INT8(NULL), MDL_INVALID_ARGUMENT);
    assert_false(mdl_op_resolver_has(NULL, MDL_OP_CONV2D, MDL_DTYPE_INT8));
    assert_true(mdl_op_resolver_has(&r, MDL_OP_CONV2D, MDL_DTYPE_INT8));
    assert_false(mdl_op_resolver_has(&r, MDL_OP_CONV2D, MDL_DTYPE_FLOAT32));
    assert_null(mdl__kernel_resolve(&r, MDL_OP_COUNT, MDL_DTYPE_INT8));
    mdl_op_resolver_init(&r, NULL, 5); /* no storage: nothing fits */
    assert_int_equal(MDL_OP_RESOLVER_ADD(&r, CONV2D, INT8), MDL_BUFFER_TOO_SMALL);
}

/* A load with a resolver fails on the first unregistered kernel, naming the registration; adding
   what the messages name until it loads gives exactly the model's kernels, and the model then
   computes what the full table computes. */
static void test_load_with_resolver(void **state) {
    (void)state;
    tm_mlp p = {2, 8, 16, 3, 0, 0, 0, 0, 0, 0};
    void *data;
    size_t size;
    assert_int_equal(tm_build_mlp(&p, 5, &data, &size), MDL_OK);

    mdl_op_resolver_entry e[MDL_KERNEL_COUNT];
    mdl_op_resolver r;
    mdl_op_resolver_init(&r, e, MDL_KERNEL_COUNT);
    mdl_load_options o = mdl_load_options_default();
    o.resolver = &r;
    mdl_model *m = NULL;
    mdl_error err;
    int rounds = 0;
    mdl_status st;
    while ((st = mdl_model_load_buffer(data, size, &o, &m, &err)) != MDL_OK) {
        assert_int_equal(st, MDL_UNSUPPORTED);
        assert_null(m);
        const char *at = strstr(err.msg, "MDL_OP_RESOLVER_ADD(r, ");
        if (!at) fail_msg("message names no registration: %s", err.msg);
        assert_non_null(strstr(err.msg, "operator resolver"));
        char opname[64], dtname[16];
        assert_int_equal(sscanf(at, "MDL_OP_RESOLVER_ADD(r, %63[A-Z0-9_], %15[A-Z0-9_])", opname, dtname), 2);
        int op = -1, dt = -1;
        /* register the kernel the message names, found by its tokens in the public list */
#define FIND(OP, DT, K)                                                                            \
    if (!strcmp(opname, #OP) && !strcmp(dtname, #DT)) {                                            \
        op = MDL_OP_##OP;                                                                          \
        dt = MDL_DTYPE_##DT;                                                                       \
        assert_int_equal(mdl_op_resolver_add_##OP##_##DT(&r), MDL_OK);                            \
    }
        MDL_KERNEL_MAP(FIND)
#undef FIND
        assert_true(op >= 0 && dt >= 0);
        assert_true(++rounds < 10);
    }
    /* the residual MLP: FullyConnected (with fused ReLU) and Add, float32 */
    assert_true(r.count >= 2 && r.count <= 4);
    assert_true(mdl_op_resolver_has(&r, MDL_OP_FULLY_CONNECTED, MDL_DTYPE_FLOAT32));
    assert_false(mdl_op_resolver_has(&r, MDL_OP_CONV2D, MDL_DTYPE_FLOAT32));

    mdl_model *full;
    assert_int_equal(mdl_model_load_buffer(data, size, NULL, &full, &err), MDL_OK);
    /* the arena macro firmware sizes its static arena with */
    assert_int_equal(MDL_SESSION_ARENA_BYTES(mdl_model_tensor_count(m), mdl_model_activation_bytes(m)),
                     mdl_model_arena_size(m));
    mdl_session *s1, *s2;
    assert_int_equal(mdl_session_create(m, NULL, &s1, &err), MDL_OK);
    assert_int_equal(mdl_session_create(full, NULL, &s2, &err), MDL_OK);
    float x[2 * 8];
    th_fill_uniform(x, 16, -1, 1);
    memcpy(mdl_session_input_data(s1, 0), x, sizeof x);
    memcpy(mdl_session_input_data(s2, 0), x, sizeof x);
    assert_int_equal(mdl_session_run(s1), MDL_OK);
    assert_int_equal(mdl_session_run(s2), MDL_OK);
    assert_memory_equal(mdl_session_output_data(s1, 0), mdl_session_output_data(s2, 0), 2 * 3 * sizeof(float));
    mdl_session_free(s1);
    mdl_session_free(s2);
    mdl_model_free(m);
    mdl_model_free(full);

    /* one kernel short: the load fails, nothing leaks, nothing runs */
    mdl_op_resolver_entry few[MDL_KERNEL_COUNT];
    mdl_op_resolver r2;
    mdl_op_resolver_init(&r2, few, MDL_KERNEL_COUNT);
    for (int32_t i = 0; i + 1 < r.count; i++) few[r2.count++] = e[i];
    o.resolver = &r2;
    assert_int_equal(mdl_model_load_buffer(data, size, &o, &m, &err), MDL_UNSUPPORTED);
    assert_null(m);
    assert_int_equal(err.status, MDL_UNSUPPORTED);
    free(data);
    tm_mlp_free(&p);
}

/* The load planner: registered like a kernel (a host core always has it); a model converted with
   weight-only quantization (int8 weights behind DEQUANTIZE) needs it, one with a stored plan and
   nothing to widen does not. */
static void test_load_planner(void **state) {
    (void)state;
    mdl_op_resolver_entry e[1];
    mdl_op_resolver r;
    mdl_op_resolver_init(&r, e, 1);
    assert_null(r.load_planner);
    assert_int_equal(mdl_op_resolver_add_load_planner(NULL), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_op_resolver_add_load_planner(&r), MDL_OK);
    assert_non_null(r.load_planner);
    assert_int_equal(r.count, 0); /* not a kernel entry */
    mdl_op_resolver_init(&r, e, 1);
    assert_null(r.load_planner);
    assert_false(mdl_model_needs_load_planner(NULL));

    tm_mlp p = {2, 8, 16, 3, 0, 0, 0, 0, 0, 0};
    void *data;
    size_t size;
    assert_int_equal(tm_build_mlp(&p, 5, &data, &size), MDL_OK);
    mdl_model *m;
    mdl_error err;
    assert_int_equal(mdl_model_load_buffer(data, size, NULL, &m, &err), MDL_OK);
    assert_false(mdl_model_needs_load_planner(m));
    mdl_model_free(m);
    free(data);
    tm_mlp_free(&p);

    char path[512];
    snprintf(path, sizeof path, "%s", th_tmp("weight_only.mdl"));
    if (mdl_convert_onnx("tests/models/quant/text_lstm_dyn.onnx", path, NULL, NULL, &err) != MDL_OK)
        fail_msg("converting text_lstm_dyn: %s", err.msg);
    assert_int_equal(mdl_model_load_file(path, NULL, &m, &err), MDL_OK);
    assert_true(mdl_model_needs_load_planner(m));
    mdl_model_free(m);
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_planner),
        cmocka_unit_test(test_map_equals_full_table),
        cmocka_unit_test(test_capacity_and_arguments),
        cmocka_unit_test(test_load_with_resolver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
