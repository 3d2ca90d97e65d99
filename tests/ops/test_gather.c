/* Gather against a naive reference written from the ONNX Gather definition:
   output[a_0..a_{axis-1}, j_0..j_{q-1}, b_..] = data[a_.., indices[j_..], b_..], negative
   indices counting from the end; plus the run-time check of out-of-range ids. */
#include "common/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const mdl_dtype data_dtypes[] = {MDL_DTYPE_FLOAT32, MDL_DTYPE_INT8, MDL_DTYPE_UINT8,
                                        MDL_DTYPE_INT32, MDL_DTYPE_INT64};
#define NDTYPES ((int)(sizeof data_dtypes / sizeof data_dtypes[0]))

/* Indices of dtype idt (int32/int64) from int64 values. */
static void *make_indices(mdl_dtype idt, const int64_t *v, int64_t n) {
    void *p = malloc((size_t)n * 8 + 8);
    for (int64_t i = 0; i < n; i++) {
        if (idt == MDL_DTYPE_INT32)
            ((int32_t *)p)[i] = (int32_t)v[i];
        else
            ((int64_t *)p)[i] = v[i];
    }
    return p;
}

static void check_gather(mdl_dtype dt, int r, const int64_t *xd, int axis_opt, mdl_dtype idt,
                         int q, const int64_t *id, const int64_t *ids) {
    size_t es = mdl_dtype_size(dt);
    int axis = axis_opt < 0 ? axis_opt + r : axis_opt;
    int yr = r - 1 + q;
    int64_t yd[MDL_MAX_RANK], oi[MDL_MAX_RANK], xi[MDL_MAX_RANK], ji[MDL_MAX_RANK];
    for (int d = 0; d < axis; d++) yd[d] = xd[d];
    for (int d = 0; d < q; d++) yd[axis + d] = id[d];
    for (int d = axis + 1; d < r; d++) yd[q + d - 1] = xd[d];
    int64_t nx = th_count(r, xd), ny = th_count(yr, yd), ni = th_count(q, id);
    void *x = th_rand_data(dt, nx), *ixd = make_indices(idt, ids, ni);
    char *ref = malloc((size_t)ny * es + 1);
    for (int64_t f = 0; f < ny; f++) {
        th_unravel(f, yr, yd, oi);
        for (int d = 0; d < axis; d++) xi[d] = oi[d];
        for (int d = 0; d < q; d++) ji[d] = oi[axis + d];
        int64_t k = ids[th_ravel(ji, q, id)];
        xi[axis] = k < 0 ? k + xd[axis] : k;
        assert_true(xi[axis] >= 0 && xi[axis] < xd[axis]);
        for (int d = axis + 1; d < r; d++) xi[d] = oi[q + d - 1];
        memcpy(ref + f * (int64_t)es, (const char *)x + th_ravel(xi, r, xd) * (int64_t)es, es);
    }
    th_tensor in[2] = {th_tensor_make(dt, r, xd, x), th_tensor_make(idt, q, id, ixd)};
    in[0].constant = true;        /* embedding tables are weights */
    in[1].constant = (ny & 1) != 0; /* sometimes fixed ids, checked by prepare too */
    mdl_op_options o = mdl_op_options_default(MDL_OP_GATHER);
    o.axis.axis = axis_opt;
    th_tensor out = {0};
    mdl_error err;
    assert_int_equal(th_run_op(MDL_OP_GATHER, &o, 2, in, 1, &out, &err), MDL_OK);
    assert_int_equal(out.dtype, dt);
    assert_int_equal(out.rank, yr);
    for (int d = 0; d < yr; d++) assert_int_equal(out.dims[d], yd[d]);
    for (int64_t i = 0; i < ny; i++)
        if (memcmp((char *)out.data + i * (int64_t)es, ref + i * (int64_t)es, es))
            fail_msg("gather: element %lld differs", (long long)i);
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
    th_tensor_free(&out);
    free(x);
    free(ixd);
    free(ref);
}

static void rand_ids(int64_t n, int64_t N, int64_t *ids) {
    for (int64_t i = 0; i < n; i++) ids[i] = th_rand_int(-N, N - 1);
}

static void test_gather_random(void **state) {
    (void)state;
    th_seed(60);
    for (int it = 0; it < 400; it++) {
        int r = (int)th_rand_int(1, 4), q = (int)th_rand_int(0, 3);
        int64_t xd[MDL_MAX_RANK], id[MDL_MAX_RANK], ids[64];
        for (int d = 0; d < r; d++) xd[d] = th_rand_int(1, 6);
        for (int d = 0; d < q; d++) id[d] = th_rand_int(it % 29 == 0 ? 0 : 1, 4);
        int axis = (int)th_rand_int(-r, r - 1);
        int a = axis < 0 ? axis + r : axis;
        rand_ids(th_count(q, id), xd[a], ids);
        check_gather(data_dtypes[it % NDTYPES], r, xd, axis,
                     it % 2 ? MDL_DTYPE_INT64 : MDL_DTYPE_INT32, q, id, ids);
    }
}

static void test_gather_axes(void **state) {
    (void)state;
    th_seed(61);
    const int64_t xd[3] = {4, 5, 3};
    const int axes[] = {0, 1, -1, 2, -3};
    for (size_t a = 0; a < sizeof axes / sizeof axes[0]; a++)
        for (int t = 0; t < NDTYPES; t++)
            for (int i64 = 0; i64 < 2; i64++) {
                int ax = axes[a] < 0 ? axes[a] + 3 : axes[a];
                int64_t N = xd[ax];
                /* every position, once from the front and once from the back */
                int64_t ids[12];
                for (int64_t k = 0; k < N; k++) {
                    ids[k] = k;
                    ids[N + k] = k - N;
                }
                mdl_dtype idt = i64 ? MDL_DTYPE_INT64 : MDL_DTYPE_INT32;
                check_gather(data_dtypes[t], 3, xd, axes[a], idt, 2, (int64_t[]){2, N}, ids);
                /* scalar (0-d) index: the axis disappears */
                check_gather(data_dtypes[t], 3, xd, axes[a], idt, 0, NULL, (int64_t[]){-1});
                check_gather(data_dtypes[t], 3, xd, axes[a], idt, 0, NULL, (int64_t[]){N - 1});
                /* 1-element 1-d index: the axis keeps size 1 */
                check_gather(data_dtypes[t], 3, xd, axes[a], idt, 1, (int64_t[]){1},
                             (int64_t[]){0});
            }
    /* 1-D data: plain take */
    check_gather(MDL_DTYPE_INT32, 1, (int64_t[]){7}, 0, MDL_DTYPE_INT64, 1, (int64_t[]){5},
                 (int64_t[]){6, -7, 0, 3, 3});
}

static void test_gather_embedding(void **state) {
    (void)state;
    th_seed(62);
    /* Embedding lookup: table [V, D], token ids [batch, seq]. */
    int64_t ids[2 * 37];
    rand_ids(2 * 37, 1000, ids);
    ids[0] = 999;
    ids[1] = -1000;
    check_gather(MDL_DTYPE_FLOAT32, 2, (int64_t[]){1000, 64}, 0, MDL_DTYPE_INT64, 2,
                 (int64_t[]){2, 37}, ids);
    check_gather(MDL_DTYPE_INT8, 2, (int64_t[]){1000, 33}, 0, MDL_DTYPE_INT32, 1,
                 (int64_t[]){37}, ids);
    check_gather(MDL_DTYPE_FLOAT32, 2, (int64_t[]){1000, 1}, 0, MDL_DTYPE_INT32, 1,
                 (int64_t[]){37}, ids);
}

static void expect_out_of_range(mdl_dtype idt, int64_t bad, int64_t pos, bool constant) {
    float data[3 * 5] = {0};
    int64_t ids[4] = {0, 2, -3, 1};
    ids[pos] = bad;
    void *ixd = make_indices(idt, ids, 4);
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 5}, data),
                       th_tensor_make(idt, 1, (int64_t[]){4}, ixd)};
    in[1].constant = constant; /* constant ids are rejected by prepare already */
    th_tensor out = {0};
    mdl_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(th_run_op(MDL_OP_GATHER, NULL, 2, in, 1, &out, &err), MDL_OUT_OF_RANGE);
    assert_int_equal(err.status, MDL_OUT_OF_RANGE);
    /* th_run_op allocates the output only once prepare has passed: tells which stage failed */
    if (constant)
        assert_null(out.data);
    else
        assert_non_null(out.data);
    char want[64];
    snprintf(want, sizeof want, "index %lld out of range", (long long)bad);
    if (!strstr(err.msg, "Gather 'test'") || !strstr(err.msg, want))
        fail_msg("message \"%s\" lacks node name or \"%s\"", err.msg, want);
    snprintf(want, sizeof want, "position %lld", (long long)pos);
    if (!strstr(err.msg, want)) fail_msg("message \"%s\" lacks \"%s\"", err.msg, want);
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
    th_tensor_free(&out);
    free(ixd);
}

static void test_gather_out_of_range(void **state) {
    (void)state;
    for (int i64 = 0; i64 < 2; i64++)
        for (int cst = 0; cst < 2; cst++) {
            mdl_dtype idt = i64 ? MDL_DTYPE_INT64 : MDL_DTYPE_INT32;
            expect_out_of_range(idt, 3, 1, cst);  /* one past the end */
            expect_out_of_range(idt, -4, 3, cst); /* one before -N */
            expect_out_of_range(idt, 1000000, 0, cst);
            expect_out_of_range(idt, INT32_MIN, 2, cst);
        }
    expect_out_of_range(MDL_DTYPE_INT64, INT64_MAX, 0, false);
    expect_out_of_range(MDL_DTYPE_INT64, INT64_MIN, 3, false);
}

static void test_gather_rejects(void **state) {
    (void)state;
    mdl_error err;
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 5}, NULL),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 1, (int64_t[]){2}, NULL)};
    th_tensor out = {0};
    assert_int_equal(th_run_op(MDL_OP_GATHER, NULL, 2, in, 1, &out, &err), MDL_DTYPE);
    assert_non_null(strstr(err.msg, "Gather 'test'"));
    assert_non_null(strstr(err.msg, "int32 or int64"));
    th_tensor_free(&in[1]);
    in[1] = th_tensor_make(MDL_DTYPE_INT8, 1, (int64_t[]){2}, NULL);
    assert_int_equal(th_run_op(MDL_OP_GATHER, NULL, 2, in, 1, &out, &err), MDL_DTYPE);
    th_tensor_free(&in[1]);
    in[1] = th_tensor_make(MDL_DTYPE_INT64, 1, (int64_t[]){2}, NULL);
    mdl_op_options o = mdl_op_options_default(MDL_OP_GATHER);
    o.axis.axis = 2;
    assert_int_equal(th_run_op(MDL_OP_GATHER, &o, 2, in, 1, &out, &err), MDL_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "Gather 'test'"));
    assert_non_null(strstr(err.msg, "axis 2"));
    o.axis.axis = -3;
    assert_int_equal(th_run_op(MDL_OP_GATHER, &o, 2, in, 1, &out, &err), MDL_INVALID_ARGUMENT);
    /* missing indices */
    assert_int_equal(th_run_op(MDL_OP_GATHER, NULL, 1, in, 1, &out, &err), MDL_INVALID_ARGUMENT);
    /* scalar data has no axis to gather on */
    th_tensor_free(&in[0]);
    in[0] = th_tensor_make(MDL_DTYPE_FLOAT32, 0, NULL, NULL);
    assert_int_equal(th_run_op(MDL_OP_GATHER, NULL, 2, in, 1, &out, &err), MDL_INVALID_ARGUMENT);
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather_random),
        cmocka_unit_test(test_gather_axes),
        cmocka_unit_test(test_gather_embedding),
        cmocka_unit_test(test_gather_out_of_range),
        cmocka_unit_test(test_gather_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
