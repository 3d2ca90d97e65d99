/* The element-wise kernels of elementwise.c, compare.c, cast.c and the integer/Pow forms in
   binary.c, each against a naive loop written here from the ONNX (NumPy) rules: every output
   index is unravelled and each operand's element found by aligning shapes on the right (size-1
   dims read index 0).  Shapes are random, ranks 0..4, with random size-1 (broadcast) dims. */
#include "common/harness.h"

#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct shape {
    int rank;
    int64_t dims[MDL_MAX_RANK];
} shape;

/* Output shape of broadcasting n shapes. */
static shape broadcast(int n, const shape *s) {
    shape o = {0, {0}};
    for (int k = 0; k < n; k++) o.rank = s[k].rank > o.rank ? s[k].rank : o.rank;
    for (int d = 0; d < o.rank; d++) {
        o.dims[d] = 1;
        for (int k = 0; k < n; k++) {
            int i = d - (o.rank - s[k].rank);
            if (i >= 0 && s[k].dims[i] != 1) o.dims[d] = s[k].dims[i];
        }
    }
    return o;
}

/* Flat index into s of output multi-index idx (output rank orank). */
static int64_t at(const shape *s, int orank, const int64_t *idx) {
    int64_t f = 0;
    for (int d = 0; d < s->rank; d++)
        f = f * s->dims[d] + (s->dims[d] == 1 ? 0 : idx[d + (orank - s->rank)]);
    return f;
}

/* n shapes that broadcast together: a common random shape, each operand keeping a random
   suffix of it with random dims set to 1. */
static void random_shapes(int n, shape *s) {
    shape full;
    full.rank = (int)th_rand_int(0, 4);
    for (int d = 0; d < full.rank; d++) full.dims[d] = th_rand_int(1, 5);
    for (int k = 0; k < n; k++) {
        s[k].rank = (int)th_rand_int(0, full.rank);
        for (int d = 0; d < s[k].rank; d++) {
            s[k].dims[d] = full.dims[d + full.rank - s[k].rank];
            if (th_rand_int(0, 3) == 0) s[k].dims[d] = 1;
        }
    }
}

static th_tensor make(mdl_dtype t, const shape *s, const void *data) {
    return th_tensor_make(t, s->rank, s->dims, data);
}

static double getd(mdl_dtype t, const void *p, int64_t i) {
    switch (t) {
    case MDL_DTYPE_FLOAT32: return ((const float *)p)[i];
    case MDL_DTYPE_INT8: return ((const int8_t *)p)[i];
    case MDL_DTYPE_UINT8: return ((const uint8_t *)p)[i];
    case MDL_DTYPE_INT32: return ((const int32_t *)p)[i];
    case MDL_DTYPE_INT64: return (double)((const int64_t *)p)[i];
    default: return ((const uint8_t *)p)[i] != 0;
    }
}

static int64_t geti(mdl_dtype t, const void *p, int64_t i) {
    return t == MDL_DTYPE_INT64 ? ((const int64_t *)p)[i] : (int64_t)getd(t, p, i);
}

/* ---- integer Add/Sub/Mul/Div ----------------------------------------------------------------- */

static int64_t ref_int(mdl_op op, mdl_dtype t, int64_t x, int64_t y) {
    uint64_t ux = (uint64_t)x, uy = (uint64_t)y, r;
    switch (op) {
    case MDL_OP_ADD: r = ux + uy; break;
    case MDL_OP_SUB: r = ux - uy; break;
    case MDL_OP_MUL: r = ux * uy; break;
    default: return x / y; /* truncation toward zero (ONNX); test divisors avoid 0 and -1 */
    }
    if (t == MDL_DTYPE_INT32) return (int32_t)(uint32_t)r; /* wrap to 32 bits */
    return (int64_t)r;
}

static void test_int_arith(void **state) {
    (void)state;
    th_seed(11);
    static const mdl_op ops[4] = {MDL_OP_ADD, MDL_OP_SUB, MDL_OP_MUL, MDL_OP_DIV};
    static const mdl_dtype dts[2] = {MDL_DTYPE_INT32, MDL_DTYPE_INT64};
    for (int iter = 0; iter < 200; iter++) {
        mdl_op op = ops[iter % 4];
        mdl_dtype dt = dts[(iter / 4) % 2];
        shape s[2];
        random_shapes(2, s);
        shape o = broadcast(2, s);
        int64_t na = th_count(s[0].rank, s[0].dims), nb = th_count(s[1].rank, s[1].dims);
        void *a = th_rand_data(dt, na), *b = th_rand_data(dt, nb);
        /* small divisors too, so quotients are not all 0; never 0 or -1 */
        for (int64_t i = 0; i < nb && op == MDL_OP_DIV; i++) {
            int64_t v = iter % 8 < 4 ? th_rand_int(-9, 9) : geti(dt, b, i);
            if (v == 0 || v == -1) v = 7;
            if (dt == MDL_DTYPE_INT32) ((int32_t *)b)[i] = (int32_t)v;
            else ((int64_t *)b)[i] = v;
        }
        th_tensor in[2] = {make(dt, &s[0], a), make(dt, &s[1], b)}, out = {0};
        mdl_error err;
        if (th_run_op(op, NULL, 2, in, 1, &out, &err)) fail_msg("%s", err.msg);
        assert_int_equal(out.dtype, dt);
        assert_int_equal(out.rank, o.rank);
        for (int64_t f = 0; f < th_count(o.rank, o.dims); f++) {
            int64_t idx[MDL_MAX_RANK];
            th_unravel(f, o.rank, o.dims, idx);
            int64_t want = ref_int(op, dt, geti(dt, a, at(&s[0], o.rank, idx)), geti(dt, b, at(&s[1], o.rank, idx)));
            if (geti(dt, out.data, f) != want)
                fail_msg("%s %s element %lld: %lld, want %lld", mdl_op_name(op), mdl_dtype_name(dt),
                         (long long)f, (long long)geti(dt, out.data, f), (long long)want);
        }
        free(a);
        free(b);
        th_tensor_free(&in[0]);
        th_tensor_free(&in[1]);
        th_tensor_free(&out);
    }
}

/* Division by zero and INT_MIN / -1 fail the run (ONNX leaves them undefined): no trap, no
   made-up value.  Truncation toward zero on signs. */
static void test_int_div_edges(void **state) {
    (void)state;
    int64_t d3[1] = {3};
    int32_t x[3] = {7, -7, INT32_MIN}, y[3] = {2, 2, 1}, z[3] = {2, 0, 1}, m1[3] = {2, 2, -1};
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_INT32, 1, d3, x), th_tensor_make(MDL_DTYPE_INT32, 1, d3, y)};
    th_tensor out = {0};
    assert_int_equal(th_run_op(MDL_OP_DIV, NULL, 2, in, 1, &out, NULL), MDL_OK);
    const int32_t *q = out.data;
    assert_int_equal(q[0], 3);
    assert_int_equal(q[1], -3);
    assert_int_equal(q[2], INT32_MIN);
    th_tensor_free(&out);
    mdl_error err;
    memcpy(in[1].data, z, sizeof z);
    assert_int_equal(th_run_op(MDL_OP_DIV, NULL, 2, in, 1, &out, &err), MDL_OUT_OF_RANGE);
    assert_non_null(strstr(err.msg, "element 1"));
    th_tensor_free(&out);
    memcpy(in[1].data, m1, sizeof m1);
    assert_int_equal(th_run_op(MDL_OP_DIV, NULL, 2, in, 1, &out, &err), MDL_OUT_OF_RANGE);
    assert_non_null(strstr(err.msg, "element 2"));
    th_tensor_free(&out);
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
}

/* ---- comparisons, logic, Where ------------------------------------------------------------ */

static bool ref_cmp(mdl_op op, double x, double y) {
    switch (op) {
    case MDL_OP_EQUAL: return x == y;
    case MDL_OP_LESS: return x < y;
    case MDL_OP_GREATER: return x > y;
    case MDL_OP_LESS_OR_EQUAL: return x <= y;
    case MDL_OP_GREATER_OR_EQUAL: return x >= y;
    case MDL_OP_AND: return x != 0 && y != 0;
    case MDL_OP_OR: return x != 0 || y != 0;
    default: return (x != 0) != (y != 0);
    }
}

static void test_compare_logic(void **state) {
    (void)state;
    th_seed(12);
    static const mdl_op ops[8] = {MDL_OP_EQUAL, MDL_OP_LESS, MDL_OP_GREATER, MDL_OP_LESS_OR_EQUAL,
                                  MDL_OP_GREATER_OR_EQUAL, MDL_OP_AND, MDL_OP_OR, MDL_OP_XOR};
    static const mdl_dtype dts[4] = {MDL_DTYPE_FLOAT32, MDL_DTYPE_INT32, MDL_DTYPE_INT64, MDL_DTYPE_BOOL};
    for (int iter = 0; iter < 320; iter++) {
        mdl_op op = ops[iter % 8];
        mdl_dtype dt = op >= MDL_OP_AND ? MDL_DTYPE_BOOL : dts[(iter / 8) % 4];
        shape s[2];
        random_shapes(2, s);
        shape o = broadcast(2, s);
        int64_t na = th_count(s[0].rank, s[0].dims), nb = th_count(s[1].rank, s[1].dims);
        void *a = th_rand_data(dt, na), *b = th_rand_data(dt, nb);
        /* many ties: copy some of a into b (exact for int64, whose values exceed 2^53) */
        size_t es = mdl_dtype_size(dt);
        for (int64_t i = 0; i < nb && i < na; i++)
            if (th_rand_int(0, 2) == 0) memcpy((char *)b + i * (int64_t)es, (char *)a + i * (int64_t)es, es);
        if (dt == MDL_DTYPE_FLOAT32 && na > 0) ((float *)a)[0] = NAN; /* NaN compares false */
        th_tensor in[2] = {make(dt, &s[0], a), make(dt, &s[1], b)}, out = {0};
        mdl_error err;
        if (th_run_op(op, NULL, 2, in, 1, &out, &err)) fail_msg("%s", err.msg);
        assert_int_equal(out.dtype, MDL_DTYPE_BOOL);
        for (int64_t f = 0; f < th_count(o.rank, o.dims); f++) {
            int64_t idx[MDL_MAX_RANK];
            th_unravel(f, o.rank, o.dims, idx);
            int64_t ia = at(&s[0], o.rank, idx), ib = at(&s[1], o.rank, idx);
            /* int64 compared exactly (through its sign of a - b), not through double */
            bool want = dt == MDL_DTYPE_INT64
                            ? ref_cmp(op, 0, (double)((geti(dt, a, ia) > geti(dt, b, ib)) - (geti(dt, a, ia) < geti(dt, b, ib))) * -1.0)
                            : ref_cmp(op, getd(dt, a, ia), getd(dt, b, ib));
            uint8_t got = ((const uint8_t *)out.data)[f];
            if (got != want)
                fail_msg("%s %s element %lld: %u, want %d", mdl_op_name(op), mdl_dtype_name(dt),
                         (long long)f, got, want);
        }
        free(a);
        free(b);
        th_tensor_free(&in[0]);
        th_tensor_free(&in[1]);
        th_tensor_free(&out);
    }
}

static void test_not_where(void **state) {
    (void)state;
    th_seed(13);
    static const mdl_dtype dts[4] = {MDL_DTYPE_FLOAT32, MDL_DTYPE_INT8, MDL_DTYPE_INT64, MDL_DTYPE_BOOL};
    for (int iter = 0; iter < 120; iter++) {
        mdl_dtype dt = dts[iter % 4];
        shape s[3];
        random_shapes(3, s);
        shape o = broadcast(3, s);
        int64_t n[3];
        for (int k = 0; k < 3; k++) n[k] = th_count(s[k].rank, s[k].dims);
        void *c = th_rand_data(MDL_DTYPE_BOOL, n[0]), *x = th_rand_data(dt, n[1]), *y = th_rand_data(dt, n[2]);
        th_tensor in[3] = {make(MDL_DTYPE_BOOL, &s[0], c), make(dt, &s[1], x), make(dt, &s[2], y)};
        th_tensor out = {0}, nout = {0};
        mdl_error err;
        if (th_run_op(MDL_OP_WHERE, NULL, 3, in, 1, &out, &err)) fail_msg("%s", err.msg);
        assert_int_equal(out.dtype, dt);
        assert_int_equal(out.rank, o.rank);
        size_t es = mdl_dtype_size(dt);
        for (int64_t f = 0; f < th_count(o.rank, o.dims); f++) {
            int64_t idx[MDL_MAX_RANK];
            th_unravel(f, o.rank, o.dims, idx);
            bool cond = ((const uint8_t *)c)[at(&s[0], o.rank, idx)];
            const char *src = cond ? (const char *)x + at(&s[1], o.rank, idx) * (int64_t)es
                                   : (const char *)y + at(&s[2], o.rank, idx) * (int64_t)es;
            if (memcmp((const char *)out.data + f * (int64_t)es, src, es))
                fail_msg("Where %s element %lld", mdl_dtype_name(dt), (long long)f);
        }
        if (th_run_op(MDL_OP_NOT, NULL, 1, in, 1, &nout, &err)) fail_msg("%s", err.msg);
        for (int64_t i = 0; i < n[0]; i++)
            assert_int_equal(((const uint8_t *)nout.data)[i], !((const uint8_t *)c)[i]);
        free(c);
        free(x);
        free(y);
        for (int k = 0; k < 3; k++) th_tensor_free(&in[k]);
        th_tensor_free(&out);
        th_tensor_free(&nout);
    }
}

/* ---- unary math and Pow ------------------------------------------------------------------ */

static double ref_unary(mdl_op op, double x) {
    switch (op) {
    case MDL_OP_EXP: return exp(x);
    case MDL_OP_SQRT: return sqrt(x);
    case MDL_OP_LOG: return log(x);
    case MDL_OP_NEG: return -x;
    case MDL_OP_RECIPROCAL: return 1.0 / x;
    default: return fabs(x);
    }
}

static void test_unary(void **state) {
    (void)state;
    th_seed(14);
    static const mdl_op ops[6] = {MDL_OP_EXP, MDL_OP_SQRT, MDL_OP_LOG, MDL_OP_NEG, MDL_OP_RECIPROCAL, MDL_OP_ABS};
    int64_t d[1] = {257};
    for (int k = 0; k < 6; k++) {
        float x[257];
        for (int i = 0; i < 257; i++) x[i] = k == 0 ? th_uniform(-20, 20) : th_uniform(k == 1 || k == 2 ? 0.001f : -50, 50);
        th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 1, d, x), out = {0};
        assert_int_equal(th_run_op(ops[k], NULL, 1, &in, 1, &out, NULL), MDL_OK);
        float want[257];
        for (int i = 0; i < 257; i++) want[i] = (float)ref_unary(ops[k], x[i]);
        double e = th_max_rel_err(out.data, want, 257);
        if (!(e <= 1e-6)) fail_msg("%s: relative error %g", mdl_op_name(ops[k]), e);
        th_tensor_free(&in);
        th_tensor_free(&out);
    }
    /* IEEE edges */
    float e[4] = {-1.0f, 0.0f, -0.0f, INFINITY};
    int64_t d4[1] = {4};
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 1, d4, e), out = {0};
    assert_int_equal(th_run_op(MDL_OP_SQRT, NULL, 1, &in, 1, &out, NULL), MDL_OK);
    assert_true(isnan(((float *)out.data)[0]));
    th_tensor_free(&out);
    assert_int_equal(th_run_op(MDL_OP_LOG, NULL, 1, &in, 1, &out, NULL), MDL_OK);
    assert_true(isinf(((float *)out.data)[1]) && ((float *)out.data)[1] < 0);
    th_tensor_free(&out);
    assert_int_equal(th_run_op(MDL_OP_RECIPROCAL, NULL, 1, &in, 1, &out, NULL), MDL_OK);
    assert_true(isinf(((float *)out.data)[2]) && ((float *)out.data)[2] < 0);
    assert_true(((float *)out.data)[3] == 0.0f);
    th_tensor_free(&out);
    th_tensor_free(&in);
    /* integer Neg / Abs wrap at the minimum, as two's complement */
    int64_t v64[3] = {INT64_MIN, -5, 9};
    int32_t v32[3] = {INT32_MIN, -5, 9};
    int64_t d3[1] = {3};
    th_tensor i64 = th_tensor_make(MDL_DTYPE_INT64, 1, d3, v64), i32 = th_tensor_make(MDL_DTYPE_INT32, 1, d3, v32);
    assert_int_equal(th_run_op(MDL_OP_NEG, NULL, 1, &i64, 1, &out, NULL), MDL_OK);
    assert_true(((int64_t *)out.data)[0] == INT64_MIN && ((int64_t *)out.data)[1] == 5 && ((int64_t *)out.data)[2] == -9);
    th_tensor_free(&out);
    assert_int_equal(th_run_op(MDL_OP_ABS, NULL, 1, &i32, 1, &out, NULL), MDL_OK);
    assert_true(((int32_t *)out.data)[0] == INT32_MIN && ((int32_t *)out.data)[1] == 5 && ((int32_t *)out.data)[2] == 9);
    th_tensor_free(&out);
    /* Exp has no int kernel */
    assert_int_not_equal(th_run_op(MDL_OP_EXP, NULL, 1, &i32, 1, &out, NULL), MDL_OK);
    th_tensor_free(&i64);
    th_tensor_free(&i32);
}

static void test_pow(void **state) {
    (void)state;
    th_seed(15);
    for (int iter = 0; iter < 60; iter++) {
        shape s[2];
        random_shapes(2, s);
        shape o = broadcast(2, s);
        int64_t na = th_count(s[0].rank, s[0].dims), nb = th_count(s[1].rank, s[1].dims);
        float *a = malloc((size_t)(na + 1) * 4), *b = malloc((size_t)(nb + 1) * 4);
        for (int64_t i = 0; i < na; i++) a[i] = th_uniform(0.1f, 4.0f);
        for (int64_t i = 0; i < nb; i++) b[i] = th_uniform(-3.0f, 3.0f);
        th_tensor in[2] = {make(MDL_DTYPE_FLOAT32, &s[0], a), make(MDL_DTYPE_FLOAT32, &s[1], b)}, out = {0};
        assert_int_equal(th_run_op(MDL_OP_POW, NULL, 2, in, 1, &out, NULL), MDL_OK);
        int64_t n = th_count(o.rank, o.dims);
        float *want = malloc((size_t)(n + 1) * 4);
        for (int64_t f = 0; f < n; f++) {
            int64_t idx[MDL_MAX_RANK];
            th_unravel(f, o.rank, o.dims, idx);
            want[f] = (float)pow(a[at(&s[0], o.rank, idx)], b[at(&s[1], o.rank, idx)]);
        }
        double e = th_max_rel_err(out.data, want, n);
        if (!(e <= 1e-6)) fail_msg("Pow: relative error %g", e);
        free(a);
        free(b);
        free(want);
        th_tensor_free(&in[0]);
        th_tensor_free(&in[1]);
        th_tensor_free(&out);
    }
}

/* ---- Cast ------------------------------------------------------------------------------------ */

static void test_cast(void **state) {
    (void)state;
    th_seed(16);
    static const mdl_dtype dts[6] = {MDL_DTYPE_FLOAT32, MDL_DTYPE_INT8, MDL_DTYPE_UINT8,
                                     MDL_DTYPE_INT32, MDL_DTYPE_INT64, MDL_DTYPE_BOOL};
    int64_t d[1] = {100};
    for (int f = 0; f < 6; f++)
        for (int t = 0; t < 6; t++) {
            mdl_dtype from = dts[f], to = dts[t];
            void *x = th_rand_data(from, 100);
            if (from == MDL_DTYPE_FLOAT32) /* inside the target's range, with fractions */
                for (int i = 0; i < 100; i++)
                    ((float *)x)[i] = to == MDL_DTYPE_UINT8 ? th_uniform(-0.99f, 255.9f) : th_uniform(-128.9f, 127.9f);
            th_tensor in = th_tensor_make(from, 1, d, x), out = {0};
            mdl_op_options o = mdl_op_options_default(MDL_OP_CAST);
            o.cast.to = to;
            mdl_error err;
            if (th_run_op(MDL_OP_CAST, &o, 1, &in, 1, &out, &err)) fail_msg("%s -> %s: %s", mdl_dtype_name(from), mdl_dtype_name(to), err.msg);
            assert_int_equal(out.dtype, to);
            for (int i = 0; i < 100; i++) {
                double v = getd(from, x, i);
                int64_t iv = geti(from, x, i);
                bool ok;
                switch (to) {
                case MDL_DTYPE_FLOAT32: ok = ((float *)out.data)[i] == (float)(from == MDL_DTYPE_INT64 ? (double)iv : v); break;
                case MDL_DTYPE_BOOL: ok = ((uint8_t *)out.data)[i] == (v != 0); break;
                default: {
                    /* float: truncation toward zero; integers: the low bits */
                    int64_t w = from == MDL_DTYPE_FLOAT32 ? (int64_t)trunc(v) : iv;
                    int64_t got = geti(to, out.data, i);
                    int64_t want = to == MDL_DTYPE_INT8 ? (int8_t)(uint8_t)(uint64_t)w
                                   : to == MDL_DTYPE_UINT8 ? (uint8_t)(uint64_t)w
                                   : to == MDL_DTYPE_INT32 ? (int32_t)(uint32_t)(uint64_t)w : w;
                    ok = got == want;
                    break;
                }
                }
                if (!ok) fail_msg("%s -> %s element %d (%g)", mdl_dtype_name(from), mdl_dtype_name(to), i, v);
            }
            free(x);
            th_tensor_free(&in);
            th_tensor_free(&out);
        }
    /* ONNX's examples: 200 -> int8 -56; NaN -> true, -0.0 -> false; out of range and NaN to an
       integer fail the run */
    int64_t d2[1] = {2};
    int32_t big[2] = {200, -129};
    th_tensor in = th_tensor_make(MDL_DTYPE_INT32, 1, d2, big), out = {0};
    mdl_op_options o = mdl_op_options_default(MDL_OP_CAST);
    o.cast.to = MDL_DTYPE_INT8;
    assert_int_equal(th_run_op(MDL_OP_CAST, &o, 1, &in, 1, &out, NULL), MDL_OK);
    assert_int_equal(((int8_t *)out.data)[0], -56);
    assert_int_equal(((int8_t *)out.data)[1], 127);
    th_tensor_free(&out);
    th_tensor_free(&in);
    float fz[2] = {NAN, -0.0f};
    in = th_tensor_make(MDL_DTYPE_FLOAT32, 1, d2, fz);
    o.cast.to = MDL_DTYPE_BOOL;
    assert_int_equal(th_run_op(MDL_OP_CAST, &o, 1, &in, 1, &out, NULL), MDL_OK);
    assert_int_equal(((uint8_t *)out.data)[0], 1);
    assert_int_equal(((uint8_t *)out.data)[1], 0);
    th_tensor_free(&out);
    o.cast.to = MDL_DTYPE_INT32;
    mdl_error err;
    assert_int_equal(th_run_op(MDL_OP_CAST, &o, 1, &in, 1, &out, &err), MDL_OUT_OF_RANGE);
    assert_non_null(strstr(err.msg, "element 0"));
    th_tensor_free(&out);
    th_tensor_free(&in);
    float edge[2] = {255.99f, 256.0f};
    in = th_tensor_make(MDL_DTYPE_FLOAT32, 1, d2, edge);
    o.cast.to = MDL_DTYPE_UINT8;
    assert_int_equal(th_run_op(MDL_OP_CAST, &o, 1, &in, 1, &out, &err), MDL_OUT_OF_RANGE);
    assert_non_null(strstr(err.msg, "element 1"));
    th_tensor_free(&out);
    th_tensor_free(&in);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int_arith),     cmocka_unit_test(test_int_div_edges),
        cmocka_unit_test(test_compare_logic), cmocka_unit_test(test_not_where),
        cmocka_unit_test(test_unary),         cmocka_unit_test(test_pow),
        cmocka_unit_test(test_cast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
