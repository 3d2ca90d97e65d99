/* Reshape, Transpose, Concat, Slice and Pad against naive references written from the ONNX
   operator definitions: every output element is located by unravelling its flat index into a
   multi-index and mapping that back into the input.  The kernels only move bytes, so results
   must match exactly, for every dtype. */
#include "common/harness.h"

#include "ops/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const mdl_dtype all_dtypes[] = {MDL_DTYPE_FLOAT32, MDL_DTYPE_INT8, MDL_DTYPE_UINT8,
                                       MDL_DTYPE_INT32, MDL_DTYPE_INT64};
#define NDTYPES ((int)(sizeof all_dtypes / sizeof all_dtypes[0]))

/* ---- helpers --------------------------------------------------------------------------- */

static void assert_same_elems(const void *got, const void *ref, int64_t n, size_t es,
                              const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp((const char *)got + i * (int64_t)es, (const char *)ref + i * (int64_t)es, es))
            fail_msg("%s: element %lld differs", what, (long long)i);
}

static th_tensor declared(mdl_dtype dt, int rank, const int64_t *dims) {
    th_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.rank = rank;
    for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
    t.declared = true;
    return t;
}

static void assert_dims(const th_tensor *t, int rank, const int64_t *dims) {
    assert_int_equal(t->rank, rank);
    for (int i = 0; i < rank; i++) assert_int_equal(t->dims[i], dims[i]);
}

static void assert_msg(const mdl_error *err, const char *op, const char *part) {
    char want[64];
    snprintf(want, sizeof want, "%s 'test'", op);
    if (!strstr(err->msg, want) || (part && !strstr(err->msg, part)))
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", err->msg, want, part ? part : "");
}

static void rand_dims(int rank, int64_t lo, int64_t hi, int64_t *dims) {
    for (int i = 0; i < rank; i++) dims[i] = th_rand_int(lo, hi);
}

/* ---- Reshape --------------------------------------------------------------------------- */

static void check_reshape(mdl_dtype dt, int xr, const int64_t *xd, int yr, const int64_t *yd,
                          bool shape_input) {
    int64_t n = th_count(xr, xd);
    void *x = th_rand_data(dt, n);
    int64_t sd[1] = {yr};
    th_tensor in[2] = {th_tensor_make(dt, xr, xd, x),
                       th_tensor_make(MDL_DTYPE_INT64, 1, sd, yd)};
    in[1].constant = true;
    th_tensor out = declared(dt, yr, yd);
    mdl_error err;
    assert_int_equal(th_run_op(MDL_OP_RESHAPE, NULL, shape_input ? 2 : 1, in, 1, &out, &err),
                     MDL_OK);
    assert_dims(&out, yr, yd);
    assert_int_equal(out.dtype, dt);
    assert_same_elems(out.data, x, n, mdl_dtype_size(dt), "reshape");
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
    th_tensor_free(&out);
    free(x);
}

static void test_reshape(void **state) {
    (void)state;
    th_seed(10);
    for (int t = 0; t < NDTYPES; t++) {
        mdl_dtype dt = all_dtypes[t];
        check_reshape(dt, 3, (int64_t[]){2, 3, 4}, 2, (int64_t[]){6, 4}, false);
        check_reshape(dt, 3, (int64_t[]){5, 1, 7}, 1, (int64_t[]){35}, true);
        check_reshape(dt, 2, (int64_t[]){4, 6}, 4, (int64_t[]){2, 2, 2, 3}, false);
        check_reshape(dt, 1, (int64_t[]){1}, 0, (int64_t[]){0}, true); /* to a scalar */
        check_reshape(dt, 0, (int64_t[]){0}, 3, (int64_t[]){1, 1, 1}, false);
        check_reshape(dt, 2, (int64_t[]){3, 0}, 3, (int64_t[]){0, 5, 2}, false); /* empty */
        check_reshape(dt, 4, (int64_t[]){1, 13, 17, 3}, 2, (int64_t[]){13, 51}, true);
    }
}

/* The planner aliases a reshape's output to its input: run must then leave the bytes alone. */
static void test_reshape_in_place(void **state) {
    (void)state;
    const mdl__kernel *k = mdl__kernel_find(MDL_OP_RESHAPE, MDL_DTYPE_FLOAT32);
    assert_non_null(k);
    float buf[6] = {1, 2, 3, 4, 5, 6};
    mdl__tensor x = {.dtype = MDL_DTYPE_FLOAT32, .rank = 2, .dims = {2, 3}, .count = 6,
                     .bytes = 24};
    mdl__tensor y = {.dtype = MDL_DTYPE_FLOAT32, .rank = 1, .dims = {6}, .count = 6, .bytes = 24};
    mdl_op_options o = mdl_op_options_default(MDL_OP_RESHAPE);
    mdl_error err;
    mdl__kctx c;
    memset(&c, 0, sizeof c);
    c.op = MDL_OP_RESHAPE;
    c.name = "test";
    c.opt = &o;
    c.nin = c.nout = 1;
    c.in[0] = &x;
    c.out[0] = &y;
    c.err = &err;
    assert_int_equal(k->prepare(&c), MDL_OK);
    c.in_data[0] = buf;
    c.out_data[0] = buf;
    assert_int_equal(k->run(&c), MDL_OK);
    for (int i = 0; i < 6; i++) assert_true(buf[i] == (float)(i + 1));
}

static void test_reshape_rejects(void **state) {
    (void)state;
    mdl_error err;
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, NULL);
    th_tensor out = {0}; /* not declared */
    assert_int_equal(th_run_op(MDL_OP_RESHAPE, NULL, 1, &in, 1, &out, &err), MDL_SHAPE);
    assert_msg(&err, "Reshape", "must be declared");
    out = declared(MDL_DTYPE_FLOAT32, 2, (int64_t[]){4, 2});
    assert_int_equal(th_run_op(MDL_OP_RESHAPE, NULL, 1, &in, 1, &out, &err), MDL_SHAPE);
    assert_msg(&err, "Reshape", "6 elements");
    assert_msg(&err, "Reshape", "8 elements");
    out = declared(MDL_DTYPE_INT8, 1, (int64_t[]){6});
    assert_int_equal(th_run_op(MDL_OP_RESHAPE, NULL, 1, &in, 1, &out, &err), MDL_DTYPE);
    assert_msg(&err, "Reshape", "int8");
    th_tensor_free(&in);
}

/* ---- Transpose ------------------------------------------------------------------------- */

/* ONNX Transpose: output dim i is input dim perm[i], so out[o_0..o_{r-1}] = in[j] where
   j[perm[i]] = o_i. */
static void ref_transpose(size_t es, int r, const int64_t *xd, const int32_t *perm,
                          const void *x, void *y) {
    int64_t yd[MDL_MAX_RANK], oi[MDL_MAX_RANK], ii[MDL_MAX_RANK];
    for (int i = 0; i < r; i++) yd[i] = xd[perm[i]];
    int64_t n = th_count(r, xd);
    for (int64_t f = 0; f < n; f++) {
        th_unravel(f, r, yd, oi);
        for (int i = 0; i < r; i++) ii[perm[i]] = oi[i];
        memcpy((char *)y + f * (int64_t)es, (const char *)x + th_ravel(ii, r, xd) * (int64_t)es, es);
    }
}

static void check_transpose(mdl_dtype dt, int r, const int64_t *xd, const int32_t *perm) {
    size_t es = mdl_dtype_size(dt);
    int64_t n = th_count(r, xd), yd[MDL_MAX_RANK];
    void *x = th_rand_data(dt, n), *ref = malloc((size_t)n * es + 1);
    ref_transpose(es, r, xd, perm, x, ref);
    for (int i = 0; i < r; i++) yd[i] = xd[perm[i]];
    mdl_op_options o = mdl_op_options_default(MDL_OP_TRANSPOSE);
    for (int i = 0; i < r; i++) o.transpose.perm[i] = perm[i];
    th_tensor in = th_tensor_make(dt, r, xd, x), out = {0};
    mdl_error err;
    assert_int_equal(th_run_op(MDL_OP_TRANSPOSE, &o, 1, &in, 1, &out, &err), MDL_OK);
    assert_dims(&out, r, yd);
    assert_int_equal(out.dtype, dt);
    assert_same_elems(out.data, ref, n, es, "transpose");
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
    free(ref);
}

static void test_transpose_all_4d_perms(void **state) {
    (void)state;
    th_seed(20);
    const int64_t shapes[][4] = {{2, 3, 4, 5}, {1, 3, 1, 5}, {3, 1, 7, 2}, {5, 4, 1, 1},
                                 {1, 1, 1, 1}, {7, 1, 1, 9}, {3, 33, 35, 2}};
    int nperm = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++)
                for (int d = 0; d < 4; d++) {
                    if (a == b || a == c || a == d || b == c || b == d || c == d) continue;
                    int32_t perm[4] = {a, b, c, d};
                    nperm++;
                    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                        for (int t = 0; t < NDTYPES; t++)
                            check_transpose(all_dtypes[t], 4, shapes[s], perm);
                }
    assert_int_equal(nperm, 24);
}

static void test_transpose_random(void **state) {
    (void)state;
    th_seed(21);
    for (int it = 0; it < 300; it++) {
        int r = (int)th_rand_int(0, 6);
        int64_t xd[MDL_MAX_RANK];
        rand_dims(r, 1, r > 4 ? 4 : 7, xd);
        int32_t perm[MDL_MAX_RANK];
        for (int i = 0; i < r; i++) perm[i] = i;
        for (int i = r - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)th_rand_int(0, i);
            int32_t tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        check_transpose(all_dtypes[it % NDTYPES], r, xd, perm);
    }
}

static void test_transpose_layouts(void **state) {
    (void)state;
    th_seed(22);
    /* NCHW <-> NHWC and plain 2-D transposes large enough to cross several tiles. */
    const int32_t to_nhwc[4] = {0, 2, 3, 1}, to_nchw[4] = {0, 3, 1, 2}, t2[2] = {1, 0};
    const int64_t s4[][4] = {{1, 3, 67, 45}, {2, 35, 33, 17}, {1, 64, 14, 14}, {3, 1, 40, 41}};
    const int64_t s2[][2] = {{67, 129}, {1000, 3}, {3, 1000}, {32, 32},
                             {33, 65},  {5, 2500}, {9, 40}};
    for (int t = 0; t < NDTYPES; t++) {
        for (size_t s = 0; s < sizeof s4 / sizeof s4[0]; s++) {
            check_transpose(all_dtypes[t], 4, s4[s], to_nhwc);
            check_transpose(all_dtypes[t], 4, s4[s], to_nchw);
        }
        for (size_t s = 0; s < sizeof s2 / sizeof s2[0]; s++)
            check_transpose(all_dtypes[t], 2, s2[s], t2);
    }
    /* An empty tensor. */
    check_transpose(MDL_DTYPE_FLOAT32, 3, (int64_t[]){2, 0, 3}, (int32_t[]){2, 0, 1});
}

static void test_transpose_rejects(void **state) {
    (void)state;
    mdl_error err;
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){2, 3, 4}, NULL), out = {0};
    mdl_op_options o = mdl_op_options_default(MDL_OP_TRANSPOSE);
    o.transpose.perm[0] = 0;
    o.transpose.perm[1] = 2;
    o.transpose.perm[2] = 2;
    assert_int_equal(th_run_op(MDL_OP_TRANSPOSE, &o, 1, &in, 1, &out, &err),
                     MDL_INVALID_ARGUMENT);
    assert_msg(&err, "Transpose", "not a permutation");
    o.transpose.perm[2] = 3;
    assert_int_equal(th_run_op(MDL_OP_TRANSPOSE, &o, 1, &in, 1, &out, &err),
                     MDL_INVALID_ARGUMENT);
    assert_msg(&err, "Transpose", "perm[2] = 3");
    o.transpose.perm[2] = -1;
    assert_int_equal(th_run_op(MDL_OP_TRANSPOSE, &o, 1, &in, 1, &out, &err),
                     MDL_INVALID_ARGUMENT);
    th_tensor_free(&in);
}

/* ---- Concat ---------------------------------------------------------------------------- */

static void check_concat(mdl_dtype dt, int r, const int64_t *base, int axis_opt, int nin,
                         const int64_t *axis_sizes) {
    size_t es = mdl_dtype_size(dt);
    int axis = axis_opt < 0 ? axis_opt + r : axis_opt;
    th_tensor in[8];
    void *xs[8];
    int64_t yd[MDL_MAX_RANK];
    memcpy(yd, base, sizeof(int64_t) * (size_t)r);
    yd[axis] = 0;
    for (int i = 0; i < nin; i++) {
        int64_t xd[MDL_MAX_RANK];
        memcpy(xd, base, sizeof(int64_t) * (size_t)r);
        xd[axis] = axis_sizes[i];
        yd[axis] += axis_sizes[i];
        xs[i] = th_rand_data(dt, th_count(r, xd));
        in[i] = th_tensor_make(dt, r, xd, xs[i]);
    }
    /* Reference: output coordinate c along axis falls into the input whose running range
       [start, start + size) holds it. */
    int64_t n = th_count(r, yd), oi[MDL_MAX_RANK];
    char *ref = malloc((size_t)n * es + 1);
    for (int64_t f = 0; f < n; f++) {
        th_unravel(f, r, yd, oi);
        int64_t c = oi[axis];
        int i = 0;
        while (c >= axis_sizes[i]) c -= axis_sizes[i++];
        oi[axis] = c;
        memcpy(ref + f * (int64_t)es,
               (const char *)xs[i] + th_ravel(oi, r, in[i].dims) * (int64_t)es, es);
    }
    mdl_op_options o = mdl_op_options_default(MDL_OP_CONCAT);
    o.axis.axis = axis_opt;
    th_tensor out = {0};
    mdl_error err;
    assert_int_equal(th_run_op(MDL_OP_CONCAT, &o, nin, in, 1, &out, &err), MDL_OK);
    assert_dims(&out, r, yd);
    assert_int_equal(out.dtype, dt);
    assert_same_elems(out.data, ref, n, es, "concat");
    for (int i = 0; i < nin; i++) {
        th_tensor_free(&in[i]);
        free(xs[i]);
    }
    th_tensor_free(&out);
    free(ref);
}

static void test_concat_every_axis(void **state) {
    (void)state;
    th_seed(30);
    int runs = 0;
    for (int r = 1; r <= 4; r++)
        for (int axis = -r; axis < r; axis++)
            for (int nin = 1; nin <= 5; nin++)
                for (int rep = 0; rep < 2; rep++) {
                    int64_t base[MDL_MAX_RANK], sizes[5];
                    rand_dims(r, 1, 5, base);
                    for (int i = 0; i < nin; i++) sizes[i] = th_rand_int(rep ? 0 : 1, 4);
                    check_concat(all_dtypes[runs++ % NDTYPES], r, base, axis, nin, sizes);
                }
    /* Larger, channel-last concat as in a NHWC network. */
    check_concat(MDL_DTYPE_FLOAT32, 4, (int64_t[]){1, 13, 11, 0}, -1, 3, (int64_t[]){16, 5, 32});
    check_concat(MDL_DTYPE_INT8, 4, (int64_t[]){2, 7, 9, 0}, 3, 2, (int64_t[]){3, 64});
}

static void test_concat_many_inputs(void **state) {
    (void)state;
    th_seed(31);
    /* More inputs than a typical model, all of one dtype: runs through the kernel's loop over
       ctx->nin. */
    enum { NIN = 8 };
    th_tensor in[NIN];
    int64_t total = 0;
    for (int i = 0; i < NIN; i++) {
        int32_t v[3] = {i, 100 + i, 200 + i};
        in[i] = th_tensor_make(MDL_DTYPE_INT32, 2, (int64_t[]){1, 3}, v);
        total += 3;
    }
    th_tensor out = {0};
    mdl_op_options o = mdl_op_options_default(MDL_OP_CONCAT);
    o.axis.axis = 1;
    assert_int_equal(th_run_op(MDL_OP_CONCAT, &o, NIN, in, 1, &out, NULL), MDL_OK);
    assert_dims(&out, 2, (int64_t[]){1, total});
    const int32_t *y = out.data;
    for (int i = 0; i < NIN; i++)
        for (int j = 0; j < 3; j++) assert_int_equal(y[i * 3 + j], 100 * j + i);
    for (int i = 0; i < NIN; i++) th_tensor_free(&in[i]);
    th_tensor_free(&out);
}

static void test_concat_rejects(void **state) {
    (void)state;
    mdl_error err;
    th_tensor in[3] = {th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){2, 3, 4}, NULL),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){2, 5, 4}, NULL),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){2, 3, 6}, NULL)};
    th_tensor out = {0};
    mdl_op_options o = mdl_op_options_default(MDL_OP_CONCAT);
    o.axis.axis = 1;
    assert_int_equal(th_run_op(MDL_OP_CONCAT, &o, 3, in, 1, &out, &err), MDL_SHAPE);
    assert_msg(&err, "Concat", "input 2 dim 2 is 6");
    o.axis.axis = -1; /* now input 1 mismatches on dim 1 */
    assert_int_equal(th_run_op(MDL_OP_CONCAT, &o, 3, in, 1, &out, &err), MDL_SHAPE);
    assert_msg(&err, "Concat", "input 1 dim 1 is 5");
    o.axis.axis = 3;
    assert_int_equal(th_run_op(MDL_OP_CONCAT, &o, 3, in, 1, &out, &err), MDL_INVALID_ARGUMENT);
    assert_msg(&err, "Concat", "axis 3");
    o.axis.axis = -4;
    assert_int_equal(th_run_op(MDL_OP_CONCAT, &o, 3, in, 1, &out, &err), MDL_INVALID_ARGUMENT);
    th_tensor_free(&in[2]);
    in[2] = th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, NULL);
    o.axis.axis = 1;
    assert_int_equal(th_run_op(MDL_OP_CONCAT, &o, 3, in, 1, &out, &err), MDL_SHAPE);
    assert_msg(&err, "Concat", "rank 2");
    th_tensor_free(&in[2]);
    in[2] = th_tensor_make(MDL_DTYPE_INT32, 3, (int64_t[]){2, 3, 4}, NULL);
    assert_int_equal(th_run_op(MDL_OP_CONCAT, &o, 3, in, 1, &out, &err), MDL_DTYPE);
    assert_msg(&err, "Concat", "input 2 is int32");
    for (int i = 0; i < 3; i++) th_tensor_free(&in[i]);
}

/* ---- Slice ----------------------------------------------------------------------------- */

static void check_slice(mdl_dtype dt, int r, const int64_t *xd, const int64_t *begin,
                        const int64_t *step, const int64_t *yd) {
    size_t es = mdl_dtype_size(dt);
    int64_t nx = th_count(r, xd), ny = th_count(r, yd), oi[MDL_MAX_RANK], ii[MDL_MAX_RANK];
    void *x = th_rand_data(dt, nx);
    char *ref = malloc((size_t)ny * es + 1);
    for (int64_t f = 0; f < ny; f++) {
        th_unravel(f, r, yd, oi);
        for (int d = 0; d < r; d++) {
            ii[d] = begin[d] + oi[d] * step[d];
            assert_true(ii[d] >= 0 && ii[d] < xd[d]); /* the test's own slice must be valid */
        }
        memcpy(ref + f * (int64_t)es, (const char *)x + th_ravel(ii, r, xd) * (int64_t)es, es);
    }
    mdl_op_options o = mdl_op_options_default(MDL_OP_SLICE);
    for (int d = 0; d < r; d++) {
        o.slice.begin[d] = begin[d];
        o.slice.step[d] = step[d];
    }
    th_tensor in = th_tensor_make(dt, r, xd, x), out = declared(dt, r, yd);
    mdl_error err;
    assert_int_equal(th_run_op(MDL_OP_SLICE, &o, 1, &in, 1, &out, &err), MDL_OK);
    assert_dims(&out, r, yd);
    assert_same_elems(out.data, ref, ny, es, "slice");
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
    free(ref);
}

static void test_slice_random(void **state) {
    (void)state;
    th_seed(40);
    const int64_t steps[] = {1, 2, -1, -2, 3, 1, 1};
    for (int it = 0; it < 400; it++) {
        int r = (int)th_rand_int(1, 5);
        int64_t xd[MDL_MAX_RANK], b[MDL_MAX_RANK], s[MDL_MAX_RANK], yd[MDL_MAX_RANK];
        rand_dims(r, 1, 7, xd);
        for (int d = 0; d < r; d++) {
            s[d] = steps[th_rand_int(0, 6)];
            b[d] = th_rand_int(0, xd[d] - 1);
            /* Most elements reachable from b with step s without leaving [0, xd). */
            int64_t max = s[d] > 0 ? (xd[d] - 1 - b[d]) / s[d] + 1 : b[d] / -s[d] + 1;
            yd[d] = th_rand_int(it % 17 == 0 ? 0 : 1, max);
        }
        check_slice(all_dtypes[it % NDTYPES], r, xd, b, s, yd);
    }
}

static void test_slice_cases(void **state) {
    (void)state;
    th_seed(41);
    for (int t = 0; t < NDTYPES; t++) {
        mdl_dtype dt = all_dtypes[t];
        /* every second row and column */
        check_slice(dt, 2, (int64_t[]){9, 11}, (int64_t[]){0, 1}, (int64_t[]){2, 2},
                    (int64_t[]){5, 5});
        /* full reversal of each axis (x[::-1]) */
        check_slice(dt, 3, (int64_t[]){4, 5, 6}, (int64_t[]){3, 0, 5}, (int64_t[]){-1, 1, -1},
                    (int64_t[]){4, 5, 6});
        /* NHWC crop of H and W: contiguous runs of W*C */
        check_slice(dt, 4, (int64_t[]){2, 10, 12, 3}, (int64_t[]){0, 2, 1, 0},
                    (int64_t[]){1, 1, 1, 1}, (int64_t[]){2, 5, 9, 3});
        /* channels subset with step -2 */
        check_slice(dt, 4, (int64_t[]){1, 3, 4, 8}, (int64_t[]){0, 0, 0, 7},
                    (int64_t[]){1, 1, 1, -2}, (int64_t[]){1, 3, 4, 4});
        /* identity slice, leading dim cut only */
        check_slice(dt, 3, (int64_t[]){5, 3, 2}, (int64_t[]){0, 0, 0}, (int64_t[]){1, 1, 1},
                    (int64_t[]){5, 3, 2});
        check_slice(dt, 3, (int64_t[]){5, 3, 2}, (int64_t[]){4, 0, 0}, (int64_t[]){-1, 1, 1},
                    (int64_t[]){3, 3, 2});
        /* a single element, step beyond the dim */
        check_slice(dt, 1, (int64_t[]){7}, (int64_t[]){6}, (int64_t[]){100}, (int64_t[]){1});
    }
}

static void test_slice_rejects(void **state) {
    (void)state;
    mdl_error err;
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){4, 6}, NULL), out = {0};
    mdl_op_options o = mdl_op_options_default(MDL_OP_SLICE);
    assert_int_equal(th_run_op(MDL_OP_SLICE, &o, 1, &in, 1, &out, &err), MDL_SHAPE);
    assert_msg(&err, "Slice", "must be declared");
    /* [1:, 2:] with 4 columns would read column 6 */
    o.slice.begin[0] = 1;
    o.slice.begin[1] = 2;
    out = declared(MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 5});
    assert_int_equal(th_run_op(MDL_OP_SLICE, &o, 1, &in, 1, &out, &err), MDL_SHAPE);
    assert_msg(&err, "Slice", "dim 1");
    /* begin past the end */
    o.slice.begin[1] = 6;
    out = declared(MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 1});
    assert_int_equal(th_run_op(MDL_OP_SLICE, &o, 1, &in, 1, &out, &err), MDL_SHAPE);
    /* negative step walking below 0 */
    o.slice.begin[1] = 2;
    o.slice.step[1] = -1;
    out = declared(MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 4});
    assert_int_equal(th_run_op(MDL_OP_SLICE, &o, 1, &in, 1, &out, &err), MDL_SHAPE);
    assert_msg(&err, "Slice", "step -1");
    /* negative begin (the converter clamps begins; the runtime refuses unclamped ones) */
    o.slice.begin[1] = -1;
    o.slice.step[1] = 1;
    out = declared(MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 1});
    assert_int_equal(th_run_op(MDL_OP_SLICE, &o, 1, &in, 1, &out, &err), MDL_SHAPE);
    /* huge step overflowing int64 */
    o.slice.begin[1] = 1;
    o.slice.step[1] = INT64_MAX / 2 + 1;
    out = declared(MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 3});
    assert_int_equal(th_run_op(MDL_OP_SLICE, &o, 1, &in, 1, &out, &err), MDL_SHAPE);
    /* step 0 */
    o.slice.step[1] = 0;
    out = declared(MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 1});
    assert_int_equal(th_run_op(MDL_OP_SLICE, &o, 1, &in, 1, &out, &err), MDL_INVALID_ARGUMENT);
    assert_msg(&err, "Slice", "step of dim 1 is 0");
    /* rank mismatch */
    o.slice.step[1] = 1;
    out = declared(MDL_DTYPE_FLOAT32, 3, (int64_t[]){3, 1, 1});
    assert_int_equal(th_run_op(MDL_OP_SLICE, &o, 1, &in, 1, &out, &err), MDL_SHAPE);
    assert_msg(&err, "Slice", "rank 3");
    th_tensor_free(&in);
}

/* ---- Pad ------------------------------------------------------------------------------- */

/* The pad value as an element of dt (tests use integral values for integer dtypes). */
static void value_bytes(mdl_dtype dt, float v, void *out) {
    switch (dt) {
    case MDL_DTYPE_FLOAT32: *(float *)out = v; break;
    case MDL_DTYPE_INT8: *(int8_t *)out = (int8_t)v; break;
    case MDL_DTYPE_UINT8: *(uint8_t *)out = (uint8_t)v; break;
    case MDL_DTYPE_INT32: *(int32_t *)out = (int32_t)v; break;
    case MDL_DTYPE_INT64: *(int64_t *)out = (int64_t)v; break;
    default: break;
    }
}

static void check_pad(mdl_dtype dt, int r, const int64_t *xd, const int64_t *pads, float value) {
    size_t es = mdl_dtype_size(dt);
    int64_t yd[MDL_MAX_RANK], oi[MDL_MAX_RANK], ii[MDL_MAX_RANK];
    for (int d = 0; d < r; d++) yd[d] = pads[d] + xd[d] + pads[r + d];
    int64_t nx = th_count(r, xd), ny = th_count(r, yd);
    void *x = th_rand_data(dt, nx);
    char *ref = malloc((size_t)ny * es + 1), vb[8];
    value_bytes(dt, value, vb);
    for (int64_t f = 0; f < ny; f++) {
        th_unravel(f, r, yd, oi);
        bool inside = true;
        for (int d = 0; d < r; d++) {
            ii[d] = oi[d] - pads[d];
            if (ii[d] < 0 || ii[d] >= xd[d]) inside = false;
        }
        memcpy(ref + f * (int64_t)es,
               inside ? (const char *)x + th_ravel(ii, r, xd) * (int64_t)es : vb, es);
    }
    mdl_op_options o = mdl_op_options_default(MDL_OP_PAD);
    for (int d = 0; d < 2 * r; d++) o.pad.pads[d] = pads[d];
    o.pad.value = value;
    th_tensor in = th_tensor_make(dt, r, xd, x), out = {0};
    mdl_error err;
    assert_int_equal(th_run_op(MDL_OP_PAD, &o, 1, &in, 1, &out, &err), MDL_OK);
    assert_dims(&out, r, yd);
    assert_int_equal(out.dtype, dt);
    assert_same_elems(out.data, ref, ny, es, "pad");
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
    free(ref);
}

static const float pad_values[] = {1.5f, -3.0f, 200.0f, 7.0f, -5.0f}; /* per all_dtypes */

static void test_pad_each_side(void **state) {
    (void)state;
    th_seed(50);
    for (int r = 1; r <= 4; r++)
        for (int side = 0; side < 2 * r; side++)
            for (int t = 0; t < NDTYPES; t++) {
                int64_t xd[MDL_MAX_RANK], pads[2 * MDL_MAX_RANK] = {0};
                rand_dims(r, 1, 5, xd);
                pads[side] = th_rand_int(1, 3);
                check_pad(all_dtypes[t], r, xd, pads, pad_values[t]);
            }
}

static void test_pad_random(void **state) {
    (void)state;
    th_seed(51);
    for (int it = 0; it < 300; it++) {
        int r = (int)th_rand_int(0, 5);
        int64_t xd[MDL_MAX_RANK], pads[2 * MDL_MAX_RANK] = {0};
        rand_dims(r, it % 23 == 0 ? 0 : 1, 6, xd);
        for (int d = 0; d < 2 * r; d++) pads[d] = th_rand_int(0, 2) == 0 ? th_rand_int(1, 3) : 0;
        int t = it % NDTYPES;
        check_pad(all_dtypes[t], r, xd, pads, pad_values[t]);
    }
    /* NHWC spatial padding of a larger map (rows of W*C merged) and a zero value. */
    int64_t p4[8] = {0, 1, 2, 0, 0, 1, 2, 0};
    check_pad(MDL_DTYPE_FLOAT32, 4, (int64_t[]){1, 28, 28, 3}, p4, 0.0f);
    check_pad(MDL_DTYPE_INT8, 4, (int64_t[]){2, 9, 7, 16}, p4, -128.0f);
}

static void test_pad_rejects(void **state) {
    (void)state;
    mdl_error err;
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){4, 6}, NULL), out = {0};
    mdl_op_options o = mdl_op_options_default(MDL_OP_PAD);
    o.pad.pads[1] = 1;
    o.pad.pads[2] = -1;
    assert_int_equal(th_run_op(MDL_OP_PAD, &o, 1, &in, 1, &out, &err), MDL_UNSUPPORTED);
    assert_msg(&err, "Pad", "negative pads");
    th_tensor_free(&in);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_reshape_in_place),
        cmocka_unit_test(test_reshape_rejects),
        cmocka_unit_test(test_transpose_all_4d_perms),
        cmocka_unit_test(test_transpose_random),
        cmocka_unit_test(test_transpose_layouts),
        cmocka_unit_test(test_transpose_rejects),
        cmocka_unit_test(test_concat_every_axis),
        cmocka_unit_test(test_concat_many_inputs),
        cmocka_unit_test(test_concat_rejects),
        cmocka_unit_test(test_slice_random),
        cmocka_unit_test(test_slice_cases),
        cmocka_unit_test(test_slice_rejects),
        cmocka_unit_test(test_pad_each_side),
        cmocka_unit_test(test_pad_random),
        cmocka_unit_test(test_pad_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
