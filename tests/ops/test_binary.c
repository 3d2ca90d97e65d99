/* Add, Sub, Mul, Div against a naive loop written from the ONNX/NumPy broadcasting rules: for
   every output index, each operand's index is found by aligning shapes on the right and using 0
   in every dim where the operand has size 1. */
#include "common/harness.h"

#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const mdl_op bin_ops[4] = {MDL_OP_ADD, MDL_OP_SUB, MDL_OP_MUL, MDL_OP_DIV};

typedef struct shape {
    int rank;
    int64_t dims[MDL_MAX_RANK];
} shape;

static int64_t count_of(const shape *s) {
    int64_t n = 1;
    for (int d = 0; d < s->rank; d++) n *= s->dims[d];
    return n;
}

/* Broadcast output shape from the spec; false if incompatible. */
static bool ref_broadcast(const shape *a, const shape *b, shape *o) {
    o->rank = a->rank > b->rank ? a->rank : b->rank;
    for (int d = 0; d < o->rank; d++) {
        int ia = d - (o->rank - a->rank), ib = d - (o->rank - b->rank);
        int64_t x = ia >= 0 ? a->dims[ia] : 1, y = ib >= 0 ? b->dims[ib] : 1;
        if (x != y && x != 1 && y != 1) return false;
        o->dims[d] = x == 1 ? y : x;
    }
    return true;
}

/* Flat index into operand s of the output multi-index idx (output rank orank). */
static int64_t operand_index(const shape *s, int orank, const int64_t *idx) {
    int64_t flat = 0;
    for (int d = 0; d < s->rank; d++) {
        int64_t i = s->dims[d] == 1 ? 0 : idx[d + (orank - s->rank)];
        flat = flat * s->dims[d] + i;
    }
    return flat;
}

static double ref_op(mdl_op op, double x, double y) {
    switch (op) {
    case MDL_OP_ADD: return x + y;
    case MDL_OP_SUB: return x - y;
    case MDL_OP_MUL: return x * y;
    default: return x / y;
    }
}

static void ref_binary(mdl_op op, const shape *as, const float *a, const shape *bs,
                       const float *b, const shape *os, float lo, float hi, float *out) {
    int64_t n = count_of(os);
    for (int64_t f = 0; f < n; f++) {
        int64_t idx[MDL_MAX_RANK], rem = f;
        for (int d = os->rank - 1; d >= 0; d--) {
            idx[d] = rem % os->dims[d];
            rem /= os->dims[d];
        }
        double v = ref_op(op, a[operand_index(as, os->rank, idx)], b[operand_index(bs, os->rank, idx)]);
        out[f] = (float)fmin(fmax(v, lo), hi);
    }
}

/* Values with |v| in [0.5, 2] and random sign: safe divisors, and no near-cancellation blowing up
   the relative error of Sub/Add. */
static void fill_operand(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float m = th_uniform(0.5f, 2.0f);
        x[i] = th_rand_int(0, 1) ? m : -m;
    }
}

static mdl_fused_act make_act(int which) {
    mdl_fused_act a = {MDL_ACT_NONE, 0, 0};
    switch (which) {
    case 1: a.kind = MDL_ACT_RELU; break;
    case 2: a.kind = MDL_ACT_RELU6; break;
    case 3: a.kind = MDL_ACT_CLIP; a.clip_min = -0.75f; a.clip_max = 1.25f; break;
    default: break;
    }
    return a;
}

static void act_range(const mdl_fused_act *a, float *lo, float *hi) {
    *lo = -INFINITY;
    *hi = INFINITY;
    if (a->kind == MDL_ACT_RELU) *lo = 0;
    if (a->kind == MDL_ACT_RELU6) { *lo = 0; *hi = 6; }
    if (a->kind == MDL_ACT_CLIP) { *lo = a->clip_min; *hi = a->clip_max; }
}

/* Runs op on a (shape as) and b (shape bs) with fused activation `act` and compares. */
static void check_binary(mdl_op op, const shape *as, const shape *bs, int act) {
    shape os;
    assert_true(ref_broadcast(as, bs, &os));
    int64_t na = count_of(as), nb = count_of(bs), no = count_of(&os);
    float *a = malloc(sizeof(float) * (size_t)(na + 1)), *b = malloc(sizeof(float) * (size_t)(nb + 1));
    float *ref = malloc(sizeof(float) * (size_t)(no + 1));
    fill_operand(a, na);
    fill_operand(b, nb);
    mdl_op_options o = mdl_op_options_default(op);
    o.binary.act = make_act(act);
    float lo, hi;
    act_range(&o.binary.act, &lo, &hi);
    ref_binary(op, as, a, bs, b, &os, lo, hi, ref);
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, as->rank, as->dims, a),
                       th_tensor_make(MDL_DTYPE_FLOAT32, bs->rank, bs->dims, b)};
    in[1].constant = th_rand_int(0, 1) != 0;
    th_tensor out = {0};
    mdl_error err;
    if (th_run_op(op, &o, 2, in, 1, &out, &err) != MDL_OK) fail_msg("%s", err.msg);
    assert_int_equal(out.dtype, MDL_DTYPE_FLOAT32);
    assert_int_equal(out.rank, os.rank);
    for (int d = 0; d < os.rank; d++) assert_int_equal(out.dims[d], os.dims[d]);
    double e = th_max_rel_err(out.data, ref, no);
    if (!(e <= 1e-6)) {
        char s1[64], s2[64];
        fail_msg("%s %s x %s act %d: relative error %g", mdl_op_name(op),
                 mdl__dims_str(s1, sizeof s1, as->rank, as->dims),
                 mdl__dims_str(s2, sizeof s2, bs->rank, bs->dims), act, e);
    }
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
    th_tensor_free(&out);
    free(a);
    free(b);
    free(ref);
}

static shape S(int rank, ...) {
    shape s;
    va_list ap;
    va_start(ap, rank);
    s.rank = rank;
    for (int d = 0; d < rank; d++) s.dims[d] = va_arg(ap, int);
    va_end(ap);
    return s;
}

/* Both orders, every op, every fused activation. */
static void check_pair(shape a, shape b) {
    for (int k = 0; k < 4; k++)
        for (int act = 0; act < 4; act++) {
            check_binary(bin_ops[k], &a, &b, act);
            check_binary(bin_ops[k], &b, &a, act);
        }
}

static void test_same_shape(void **state) {
    (void)state;
    th_seed(31);
    check_pair(S(1, 1), S(1, 1));
    check_pair(S(1, 7), S(1, 7));
    check_pair(S(1, 1031), S(1, 1031));
    check_pair(S(2, 3, 5), S(2, 3, 5));
    check_pair(S(4, 2, 3, 5, 7), S(4, 2, 3, 5, 7));
    check_pair(S(0), S(0));
}

static void test_scalar(void **state) {
    (void)state;
    th_seed(32);
    check_pair(S(0), S(1, 37));
    check_pair(S(0), S(4, 2, 5, 3, 9));
    check_pair(S(1, 1), S(3, 4, 5, 6));
    check_pair(S(3, 1, 1, 1), S(2, 17, 3));
    check_pair(S(4, 1, 1, 1, 1), S(4, 1, 1, 1, 1));
}

static void test_row_broadcast(void **state) {
    (void)state;
    th_seed(33);
    /* Bias [C] against NHWC: short channels (tiled), long channels, odd counts. */
    const int cs[] = {1, 2, 3, 5, 8, 16, 31, 32, 33, 64, 100};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        check_pair(S(1, cs[i]), S(4, 2, 5, 7, cs[i]));
        check_pair(S(1, cs[i]), S(2, 3, cs[i]));
        check_pair(S(3, 1, 1, cs[i]), S(4, 1, 9, 11, cs[i]));
    }
    check_pair(S(1, 3), S(4, 1, 224, 224, 3)); /* image normalization shape */
    check_pair(S(2, 5, 7), S(4, 3, 2, 5, 7));  /* repeated matrix */
}

static void test_other_patterns(void **state) {
    (void)state;
    th_seed(34);
    check_pair(S(4, 2, 1, 5, 1), S(4, 1, 3, 1, 4)); /* [N,1,W,1] vs [1,H,1,C] */
    check_pair(S(4, 3, 1, 7, 1), S(4, 1, 6, 1, 9));
    check_pair(S(4, 2, 3, 4, 1), S(4, 2, 3, 4, 5)); /* column: one value per row */
    check_pair(S(2, 6, 1), S(3, 4, 6, 9));           /* rank mismatch + column */
    check_pair(S(2, 6, 1), S(3, 4, 1, 9));           /* outer product-like */
    check_pair(S(1, 9), S(2, 9, 1));                 /* [9] x [9,1] -> [9,9] */
    check_pair(S(3, 5, 1, 3), S(4, 2, 1, 4, 1));     /* rank mismatch, three-way */
    check_pair(S(5, 2, 1, 3, 1, 2), S(3, 3, 3, 1));
    check_pair(S(6, 2, 3, 1, 2, 1, 3), S(5, 3, 2, 2, 1, 3));
}

/* Random shape pairs: an output shape, then each operand drops leading dims and sets dims to 1. */
static void test_random_broadcast(void **state) {
    (void)state;
    th_seed(35);
    for (int it = 0; it < 400; it++) {
        shape o;
        o.rank = (int)th_rand_int(0, 6);
        for (int d = 0; d < o.rank; d++) o.dims[d] = th_rand_int(1, 6);
        shape ops[2];
        for (int k = 0; k < 2; k++) {
            int drop = (int)th_rand_int(0, o.rank);
            if (th_rand_int(0, 2)) drop = 0;
            ops[k].rank = o.rank - drop;
            for (int d = 0; d < ops[k].rank; d++) {
                int64_t v = o.dims[d + drop];
                ops[k].dims[d] = th_rand_int(0, 2) == 0 ? 1 : v;
            }
        }
        check_binary(bin_ops[it % 4], &ops[0], &ops[1], (int)th_rand_int(0, 3));
    }
}

static void test_empty_and_ieee(void **state) {
    (void)state;
    /* Zero-size output: shape inferred, nothing computed. */
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){0, 3}, NULL),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 1, (int64_t[]){3}, NULL)};
    th_tensor out = {0};
    assert_int_equal(th_run_op(MDL_OP_ADD, NULL, 2, in, 1, &out, NULL), MDL_OK);
    assert_int_equal(out.rank, 2);
    assert_int_equal(out.dims[0], 0);
    assert_int_equal(out.dims[1], 3);
    th_tensor_free(&out);
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
    /* Division by zero is IEEE: +-inf and NaN, no error. */
    float a[4] = {1.0f, -2.0f, 0.0f, 3.0f}, b[4] = {0.0f, 0.0f, 0.0f, -0.0f};
    th_tensor d[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 1, (int64_t[]){4}, a),
                      th_tensor_make(MDL_DTYPE_FLOAT32, 1, (int64_t[]){4}, b)};
    assert_int_equal(th_run_op(MDL_OP_DIV, NULL, 2, d, 1, &out, NULL), MDL_OK);
    const float *y = out.data;
    assert_true(isinf(y[0]) && y[0] > 0);
    assert_true(isinf(y[1]) && y[1] < 0);
    assert_true(isnan(y[2]));
    assert_true(isinf(y[3]) && y[3] < 0);
    th_tensor_free(&out);
    /* A fused Relu keeps NaN (clamp must not turn it into 0 or 6). */
    mdl_op_options o = mdl_op_options_default(MDL_OP_DIV);
    o.binary.act.kind = MDL_ACT_RELU6;
    assert_int_equal(th_run_op(MDL_OP_DIV, &o, 2, d, 1, &out, NULL), MDL_OK);
    y = out.data;
    assert_true(y[0] == 6.0f && y[1] == 0.0f && isnan(y[2]) && y[3] == 0.0f);
    th_tensor_free(&out);
    th_tensor_free(&d[0]);
    th_tensor_free(&d[1]);
}

/* prepare + run with the output placed in one input's buffer (in-place memory plan). */
static void check_inplace(mdl_op op, shape as, shape bs, int alias) {
    shape os;
    assert_true(ref_broadcast(&as, &bs, &os));
    int64_t na = count_of(&as), nb = count_of(&bs), no = count_of(&os);
    assert_int_equal(alias == 0 ? na : nb, no); /* only a same-shape operand can be aliased */
    float *a = malloc(sizeof(float) * (size_t)na), *b = malloc(sizeof(float) * (size_t)nb);
    float *ref = malloc(sizeof(float) * (size_t)no);
    fill_operand(a, na);
    fill_operand(b, nb);
    ref_binary(op, &as, a, &bs, b, &os, -INFINITY, INFINITY, ref);
    mdl__tensor t[3];
    memset(t, 0, sizeof t);
    const shape *sh[3] = {&as, &bs, &os};
    for (int i = 0; i < 3; i++) {
        t[i].dtype = MDL_DTYPE_FLOAT32;
        t[i].rank = sh[i]->rank;
        memcpy(t[i].dims, sh[i]->dims, sizeof t[i].dims);
        t[i].count = count_of(sh[i]);
        t[i].bytes = (size_t)t[i].count * 4;
    }
    mdl_op_options o = mdl_op_options_default(op);
    mdl_error err;
    mdl__kctx c;
    memset(&c, 0, sizeof c);
    c.op = op;
    c.name = "test";
    c.opt = &o;
    c.nin = 2;
    c.nout = 1;
    c.in[0] = &t[0];
    c.in[1] = &t[1];
    c.err = &err;
    const mdl__kernel *k = mdl__kernel_find(op, MDL_DTYPE_FLOAT32);
    assert_int_equal(k->prepare(&c), MDL_OK);
    c.out[0] = &t[2];
    c.in_data[0] = a;
    c.in_data[1] = b;
    c.out_data[0] = alias == 0 ? a : b;
    c.scratch = c.scratch_bytes ? malloc(c.scratch_bytes) : NULL;
    assert_int_equal(k->run(&c), MDL_OK);
    th_assert_close(alias == 0 ? a : b, ref, no, 1e-6);
    free(c.scratch);
    free(a);
    free(b);
    free(ref);
}

static void test_inplace(void **state) {
    (void)state;
    th_seed(36);
    for (int k = 0; k < 4; k++) {
        check_inplace(bin_ops[k], S(3, 4, 5, 6), S(3, 4, 5, 6), 0);
        check_inplace(bin_ops[k], S(3, 4, 5, 6), S(3, 4, 5, 6), 1);
        check_inplace(bin_ops[k], S(3, 4, 5, 3), S(1, 3), 0);      /* tiled row */
        check_inplace(bin_ops[k], S(1, 40), S(3, 2, 5, 40), 1);    /* row */
        check_inplace(bin_ops[k], S(3, 2, 5, 1), S(3, 2, 5, 9), 1); /* column */
        check_inplace(bin_ops[k], S(0), S(2, 33, 3), 1);           /* scalar */
        check_inplace(bin_ops[k], S(4, 2, 3, 4, 5), S(3, 3, 1, 5), 0); /* general */
        check_inplace(bin_ops[k], S(3, 1, 4, 1), S(4, 2, 3, 4, 5), 1);
    }
}

static void expect_reject(mdl_op op, const mdl_op_options *o, int nin, th_tensor *in,
                          mdl_status want, const char *n1, const char *n2) {
    th_tensor out = {0};
    mdl_error err;
    memset(&err, 0, sizeof err);
    mdl_status st = th_run_op(op, o, nin, in, 1, &out, &err);
    if (st != want) fail_msg("%s: status %d, want %d (%s)", mdl_op_name(op), st, want, err.msg);
    if (!strstr(err.msg, "'test'")) fail_msg("message lacks the node name: %s", err.msg);
    if (n1 && !strstr(err.msg, n1)) fail_msg("message lacks \"%s\": %s", n1, err.msg);
    if (n2 && !strstr(err.msg, n2)) fail_msg("message lacks \"%s\": %s", n2, err.msg);
}

static void test_reject(void **state) {
    (void)state;
    th_tensor in[3] = {th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){2, 3, 4}, NULL),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){5, 4}, NULL),
                       th_tensor_make(MDL_DTYPE_INT8, 1, (int64_t[]){4}, NULL)};
    for (int k = 0; k < 4; k++) {
        expect_reject(bin_ops[k], NULL, 2, in, MDL_SHAPE, "[2,3,4]", "[5,4]");
        expect_reject(bin_ops[k], NULL, 1, in, MDL_INVALID_ARGUMENT, "expects", NULL);
        expect_reject(bin_ops[k], NULL, 3, in, MDL_INVALID_ARGUMENT, "expects", NULL);
        th_tensor pair[2] = {in[0], in[2]};
        expect_reject(bin_ops[k], NULL, 2, pair, MDL_DTYPE, "int8", NULL);
        th_tensor ok[2] = {in[0], in[0]};
        mdl_op_options o = mdl_op_options_default(bin_ops[k]);
        o.binary.act.kind = MDL_ACT_CLIP;
        o.binary.act.clip_min = 2.0f;
        o.binary.act.clip_max = 1.0f;
        expect_reject(bin_ops[k], &o, 2, ok, MDL_INVALID_ARGUMENT, "clip", NULL);
        o.binary.act.kind = MDL_ACT_COUNT;
        expect_reject(bin_ops[k], &o, 2, ok, MDL_INVALID_ARGUMENT, "activation", NULL);
    }
    /* [3] against [2,3,4]: right-aligned 3 vs 4 does not broadcast. */
    th_tensor bad[2] = {in[0], th_tensor_make(MDL_DTYPE_FLOAT32, 1, (int64_t[]){3}, NULL)};
    expect_reject(MDL_OP_ADD, NULL, 2, bad, MDL_SHAPE, "[2,3,4]", "[3]");
    th_tensor_free(&bad[1]);
    for (int i = 0; i < 3; i++) th_tensor_free(&in[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_shape),      cmocka_unit_test(test_scalar),
        cmocka_unit_test(test_row_broadcast),   cmocka_unit_test(test_other_patterns),
        cmocka_unit_test(test_random_broadcast), cmocka_unit_test(test_empty_and_ieee),
        cmocka_unit_test(test_inplace),         cmocka_unit_test(test_reject),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
