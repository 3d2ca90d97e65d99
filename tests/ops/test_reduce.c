/* ReduceMean, ReduceSum, ReduceMax against a naive loop from the ONNX definition: every input
   element goes to the output element whose index is its own with the reduced dims set to 0;
   keepdims keeps those dims as size 1, otherwise they are removed. */
#include "common/harness.h"

#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const mdl_op red_ops[3] = {MDL_OP_REDUCE_MEAN, MDL_OP_REDUCE_SUM, MDL_OP_REDUCE_MAX};

static int64_t count_of(int rank, const int64_t *dims) {
    int64_t n = 1;
    for (int d = 0; d < rank; d++) n *= dims[d];
    return n;
}

static bool reduced(uint32_t mask, int d) { return mask == 0 || ((mask >> d) & 1u); }

/* Reference over a rank/dims input; out has the keepdims=1 layout (same order either way).
   mag (may be NULL) receives the same reduction of |x|: the scale a summation error is measured
   against, since a sum that cancels to nearly 0 cannot be accurate relative to itself. */
static void ref_reduce(mdl_op op, int rank, const int64_t *dims, uint32_t mask, const float *x,
                       float *out, double *mag, int64_t nout) {
    double *acc = malloc(sizeof(double) * (size_t)(nout + 1));
    int64_t *cnt = calloc((size_t)(nout + 1), sizeof(int64_t));
    for (int64_t i = 0; i < nout; i++) acc[i] = op == MDL_OP_REDUCE_MAX ? -INFINITY : 0.0;
    int64_t n = count_of(rank, dims);
    for (int64_t f = 0; f < n; f++) {
        int64_t idx[MDL_MAX_RANK], rem = f;
        for (int d = rank - 1; d >= 0; d--) {
            idx[d] = rem % dims[d];
            rem /= dims[d];
        }
        int64_t o = 0;
        for (int d = 0; d < rank; d++) {
            int64_t od = reduced(mask, d) ? 1 : dims[d];
            o = o * od + (reduced(mask, d) ? 0 : idx[d]);
        }
        if (op == MDL_OP_REDUCE_MAX) acc[o] = fmax(acc[o], x[f]);
        else acc[o] += x[f];
        if (mag) mag[o] += fabs(x[f]);
        cnt[o]++;
    }
    for (int64_t i = 0; i < nout; i++) {
        out[i] = (float)(op == MDL_OP_REDUCE_MEAN ? acc[i] / (double)cnt[i] : acc[i]);
        if (mag && op == MDL_OP_REDUCE_MEAN) mag[i] /= (double)cnt[i];
        if (mag && op == MDL_OP_REDUCE_MAX) mag[i] = fabs(acc[i]);
    }
    free(acc);
    free(cnt);
}

static void check_reduce(mdl_op op, int rank, const int64_t *dims, uint32_t mask, bool keepdims,
                         float lo, float hi) {
    int64_t n = count_of(rank, dims);
    int64_t odims[MDL_MAX_RANK], kdims[MDL_MAX_RANK];
    int orank = 0;
    for (int d = 0; d < rank; d++) {
        kdims[d] = reduced(mask, d) ? 1 : dims[d];
        if (keepdims) odims[orank++] = kdims[d];
        else if (!reduced(mask, d)) odims[orank++] = dims[d];
    }
    int64_t nout = count_of(rank, kdims);
    float *x = malloc(sizeof(float) * (size_t)(n + 1)), *ref = malloc(sizeof(float) * (size_t)(nout + 1));
    double *mag = calloc((size_t)(nout + 1), sizeof(double));
    th_fill_uniform(x, n, lo, hi);
    ref_reduce(op, rank, dims, mask, x, ref, mag, nout);
    mdl_op_options o = mdl_op_options_default(op);
    o.reduce.axes_mask = mask;
    o.reduce.keepdims = keepdims;
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, rank, dims, x), out = {0};
    mdl_error err;
    if (th_run_op(op, &o, 1, &in, 1, &out, &err) != MDL_OK) fail_msg("%s", err.msg);
    assert_int_equal(out.dtype, MDL_DTYPE_FLOAT32);
    assert_int_equal(out.rank, orank);
    for (int d = 0; d < orank; d++) assert_int_equal(out.dims[d], odims[d]);
    assert_int_equal(out.count, nout);
    /* Per element, relative to the magnitude of what was summed (exact for Max). */
    const float *y = out.data;
    for (int64_t i = 0; i < nout; i++) {
        double e = fabs((double)y[i] - ref[i]);
        if (!(e <= 1e-5 * mag[i] + 1e-30)) {
            char s[64];
            fail_msg("%s %s mask 0x%x: output %lld is %.9g, want %.9g (scale %g)", mdl_op_name(op),
                     mdl__dims_str(s, sizeof s, rank, dims), (unsigned)mask, (long long)i,
                     (double)y[i], (double)ref[i], mag[i]);
        }
    }
    if (op == MDL_OP_REDUCE_MAX) th_assert_close(out.data, ref, nout, 0);
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
    free(ref);
    free(mag);
}

static void test_reduce_random(void **state) {
    (void)state;
    th_seed(41);
    for (int it = 0; it < 600; it++) {
        int64_t dims[MDL_MAX_RANK];
        int rank = (int)th_rand_int(0, 6);
        for (int d = 0; d < rank; d++) dims[d] = th_rand_int(1, 6);
        uint32_t mask = rank ? (uint32_t)th_rand_int(0, (1 << rank) - 1) : 0;
        check_reduce(red_ops[it % 3], rank, dims, mask, (it / 3) % 2 == 0, -2, 2);
    }
}

static void test_reduce_common_patterns(void **state) {
    (void)state;
    th_seed(42);
    for (int k = 0; k < 3; k++)
        for (int keep = 0; keep < 2; keep++) {
            /* NHWC over H,W (global pooling); last axis; first axis; all; interleaved. */
            check_reduce(red_ops[k], 4, (int64_t[]){2, 7, 5, 33}, 0x6, keep, -1, 1);
            check_reduce(red_ops[k], 4, (int64_t[]){1, 7, 7, 64}, 0x6, keep, -1, 1);
            check_reduce(red_ops[k], 3, (int64_t[]){3, 4, 37}, 0x4, keep, -1, 1);
            check_reduce(red_ops[k], 3, (int64_t[]){37, 4, 3}, 0x1, keep, -1, 1);
            check_reduce(red_ops[k], 3, (int64_t[]){5, 6, 7}, 0, keep, -1, 1);
            check_reduce(red_ops[k], 3, (int64_t[]){5, 6, 7}, 0x7, keep, -1, 1);
            check_reduce(red_ops[k], 5, (int64_t[]){3, 4, 5, 2, 3}, 0x15, keep, -1, 1);
            check_reduce(red_ops[k], 5, (int64_t[]){3, 4, 5, 2, 3}, 0x0A, keep, -1, 1);
            check_reduce(red_ops[k], 4, (int64_t[]){1, 9, 1, 8}, 0x5, keep, -1, 1);
            check_reduce(red_ops[k], 1, (int64_t[]){1}, 0x1, keep, -1, 1);
            check_reduce(red_ops[k], 2, (int64_t[]){1, 1}, 0x2, keep, -1, 1);
            check_reduce(red_ops[k], 0, NULL, 0, keep, -1, 1);
            /* All values negative: a max that started from 0 would be wrong. */
            check_reduce(red_ops[k], 2, (int64_t[]){9, 13}, 0x2, keep, -5, -1);
            check_reduce(red_ops[k], 2, (int64_t[]){9, 13}, 0x1, keep, -5, -1);
        }
}

/* Long reductions: accumulation error must not grow with the length. */
static void test_reduce_long(void **state) {
    (void)state;
    th_seed(43);
    for (int k = 0; k < 3; k++) {
        check_reduce(red_ops[k], 1, (int64_t[]){200003}, 0, false, 0, 1);
        check_reduce(red_ops[k], 2, (int64_t[]){3, 50001}, 0x2, true, 0, 1);
        check_reduce(red_ops[k], 2, (int64_t[]){50001, 3}, 0x1, true, 0, 1);
        check_reduce(red_ops[k], 3, (int64_t[]){300, 7, 100}, 0x5, false, -1, 1);
    }
}

static void test_reduce_empty(void **state) {
    (void)state;
    /* [2,0,3] over dim 1 -> [2,1,3]: Sum 0, Max -inf, Mean NaN (0/0). */
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){2, 0, 3}, NULL), out = {0};
    for (int k = 0; k < 3; k++) {
        mdl_op_options o = mdl_op_options_default(red_ops[k]);
        o.reduce.axes_mask = 0x2;
        assert_int_equal(th_run_op(red_ops[k], &o, 1, &in, 1, &out, NULL), MDL_OK);
        assert_int_equal(out.count, 6);
        const float *y = out.data;
        for (int i = 0; i < 6; i++) {
            if (red_ops[k] == MDL_OP_REDUCE_SUM) assert_true(y[i] == 0.0f);
            if (red_ops[k] == MDL_OP_REDUCE_MAX) assert_true(isinf(y[i]) && y[i] < 0);
            if (red_ops[k] == MDL_OP_REDUCE_MEAN) assert_true(isnan(y[i]));
        }
        th_tensor_free(&out);
        /* Keeping the empty dim: empty output, nothing to do. */
        o.reduce.axes_mask = 0x1;
        assert_int_equal(th_run_op(red_ops[k], &o, 1, &in, 1, &out, NULL), MDL_OK);
        assert_int_equal(out.count, 0);
        th_tensor_free(&out);
    }
    th_tensor_free(&in);
}

static void expect_reject(mdl_op op, const mdl_op_options *o, int nin, th_tensor *in,
                          mdl_status want, const char *needle) {
    th_tensor out = {0};
    mdl_error err;
    memset(&err, 0, sizeof err);
    mdl_status st = th_run_op(op, o, nin, in, 1, &out, &err);
    if (st != want) fail_msg("%s: status %d, want %d (%s)", mdl_op_name(op), st, want, err.msg);
    if (!strstr(err.msg, "'test'")) fail_msg("message lacks the node name: %s", err.msg);
    if (needle && !strstr(err.msg, needle)) fail_msg("message lacks \"%s\": %s", needle, err.msg);
}

static void test_reduce_reject(void **state) {
    (void)state;
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){2, 3, 4}, NULL),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 0, NULL, NULL)};
    for (int k = 0; k < 3; k++) {
        mdl_op_options o = mdl_op_options_default(red_ops[k]);
        o.reduce.axes_mask = 0x8;
        expect_reject(red_ops[k], &o, 1, in, MDL_INVALID_ARGUMENT, "rank 3");
        o.reduce.axes_mask = 0x80000001u;
        expect_reject(red_ops[k], &o, 1, in, MDL_INVALID_ARGUMENT, "0x80000001");
        o.reduce.axes_mask = 0x1;
        expect_reject(red_ops[k], &o, 1, &in[1], MDL_INVALID_ARGUMENT, "rank 0");
        expect_reject(red_ops[k], &o, 2, in, MDL_INVALID_ARGUMENT, "one input");
        /* Non-float input: call prepare directly (no int kernel is registered). */
        mdl__tensor t;
        memset(&t, 0, sizeof t);
        t.dtype = MDL_DTYPE_INT64;
        t.rank = 1;
        t.dims[0] = t.count = 3;
        mdl__kctx c;
        memset(&c, 0, sizeof c);
        mdl_error err;
        c.op = red_ops[k];
        c.name = "test";
        c.opt = &o;
        c.nin = c.nout = 1;
        c.in[0] = &t;
        c.err = &err;
        assert_int_equal(mdl__kernel_find(red_ops[k], MDL_DTYPE_FLOAT32)->prepare(&c), MDL_DTYPE);
        assert_non_null(strstr(err.msg, "int64"));
    }
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduce_random),
        cmocka_unit_test(test_reduce_common_patterns),
        cmocka_unit_test(test_reduce_long),
        cmocka_unit_test(test_reduce_empty),
        cmocka_unit_test(test_reduce_reject),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
