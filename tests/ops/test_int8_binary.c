/* int8 ADD, SUB, MUL against a double-precision oracle: every output element is located by
   unravelling its flat index and mapping it into each input with NumPy broadcasting; the
   dequantized inputs are combined in double, clamped to the fused activation's real range and
   quantized (round half to even).  The kernels (TFLite's fixed-point scheme) must be within one
   step everywhere and exact on nearly all elements off exact ties. */
#include "q8_oracle.h"

#include <stdlib.h>

static q8_stats stats[3];

static const char *op_str(mdl_op op) {
    return op == MDL_OP_ADD ? "add" : op == MDL_OP_SUB ? "sub" : "mul";
}

static void rand_act(mdl_fused_act *a) {
    a->kind = (mdl_activation)th_rand_int(0, MDL_ACT_COUNT - 1);
    a->clip_min = th_uniform(-3.0f, 0.5f);
    a->clip_max = a->clip_min + th_uniform(0.0f, 4.0f);
}

static void check_binary(mdl_op op, int ar, const int64_t *ad, int br, const int64_t *bd,
                         const float *sc, const int64_t *zp, const mdl_fused_act *act) {
    int64_t na = th_count(ar, ad), nb = th_count(br, bd);
    int8_t *a = malloc((size_t)(na ? na : 1)), *b = malloc((size_t)(nb ? nb : 1));
    q8_fill(a, na);
    q8_fill(b, nb);
    int orank = ar > br ? ar : br;
    int64_t od[MDL_MAX_RANK];
    for (int d = 0; d < orank; d++) {
        int ia = d - (orank - ar), ib = d - (orank - br);
        int64_t da = ia >= 0 ? ad[ia] : 1, db = ib >= 0 ? bd[ib] : 1;
        od[d] = da == 1 ? db : da;
    }
    th_tensor in[2] = {q8_input(ar, ad, a, &sc[0], &zp[0]), q8_input(br, bd, b, &sc[1], &zp[1])};
    th_tensor out = q8_declared(orank, od, &sc[2], &zp[2]);
    mdl_op_options o = mdl_op_options_default(op);
    o.binary.act = *act;
    mdl_error err = {0};
    mdl_status st = th_run_op(op, &o, 2, in, 1, &out, &err);
    if (st != MDL_OK) fail_msg("status %d: %s", (int)st, err.msg);
    assert_int_equal(out.rank, orank);
    float lo, hi;
    switch (act->kind) {
    case MDL_ACT_RELU: lo = 0, hi = INFINITY; break;
    case MDL_ACT_RELU6: lo = 0, hi = 6; break;
    case MDL_ACT_CLIP: lo = act->clip_min, hi = act->clip_max; break;
    default: lo = -INFINITY, hi = INFINITY; break;
    }
    int64_t ny = th_count(orank, od), idx[MDL_MAX_RANK], ia[MDL_MAX_RANK], ib[MDL_MAX_RANK];
    q8_stats *s = &stats[op == MDL_OP_ADD ? 0 : op == MDL_OP_SUB ? 1 : 2];
    for (int64_t i = 0; i < ny; i++) {
        th_unravel(i, orank, od, idx);
        for (int d = 0; d < ar; d++)
            ia[d] = ad[d] == 1 ? 0 : idx[d + orank - ar];
        for (int d = 0; d < br; d++)
            ib[d] = bd[d] == 1 ? 0 : idx[d + orank - br];
        double va = q8_real(a[th_ravel(ia, ar, ad)], sc[0], (int32_t)zp[0]);
        double vb = q8_real(b[th_ravel(ib, br, bd)], sc[1], (int32_t)zp[1]);
        double r = op == MDL_OP_ADD ? va + vb : op == MDL_OP_SUB ? va - vb : va * vb;
        double rc = r < lo ? lo : (r > hi ? hi : r);
        int32_t want = q8_quantize8(rc, sc[2], (int32_t)zp[2]);
        int32_t got = ((int8_t *)out.data)[i];
        q8_check(s, got, want, rc / sc[2],
                 "%s scales %g %g -> %g zps %lld %lld -> %lld act %d [%g, %g] at %lld: real %.9g "
                 "steps",
                 op_str(op), (double)sc[0], (double)sc[1], (double)sc[2], (long long)zp[0],
                 (long long)zp[1], (long long)zp[2], (int)act->kind, (double)lo, (double)hi,
                 (long long)i, rc / sc[2]);
    }
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
    th_tensor_free(&out);
    free(a);
    free(b);
}

/* Random broadcastable shapes: b drops leading dims and sets some dims to 1 (or a does). */
static void rand_shapes(int *ar, int64_t *ad, int *br, int64_t *bd) {
    static const int64_t sizes[] = {1, 2, 3, 5, 7, 17};
    int r = (int)th_rand_int(0, 4);
    int64_t full[MDL_MAX_RANK];
    for (int d = 0; d < r; d++)
        full[d] = sizes[th_rand_int(0, 5)];
    *ar = r;
    *br = r > 0 ? (int)th_rand_int(0, r) : 0;
    for (int d = 0; d < r; d++)
        ad[d] = full[d];
    for (int d = 0; d < *br; d++)
        bd[d] = full[d + r - *br];
    for (int d = 0; d < r; d++)
        if (th_rand_int(0, 3) == 0) ad[d] = 1;
    for (int d = 0; d < *br; d++)
        if (th_rand_int(0, 3) == 0) bd[d] = 1;
    if (th_rand_int(0, 1)) { /* swap: the lower-rank operand first */
        int64_t t[MDL_MAX_RANK];
        int tr = *ar;
        memcpy(t, ad, sizeof t);
        memcpy(ad, bd, sizeof t);
        memcpy(bd, t, sizeof t);
        *ar = *br;
        *br = tr;
    }
}

static void rand_params(mdl_op op, float *sc, int64_t *zp) {
    /* input scales up to 1e4 apart; the output's around the result's range or far from it */
    sc[0] = q8_rand_scale(-3, 0);
    sc[1] = th_rand_int(0, 3) == 0 ? sc[0] : sc[0] * q8_rand_scale(-4, 2);
    if (sc[1] > 10.0f) sc[1] = 10.0f;
    double range =
        op == MDL_OP_MUL ? 255.0 * sc[0] * 255.0 * sc[1] : 255.0 * (sc[0] > sc[1] ? sc[0] : sc[1]);
    sc[2] = (float)(range / 255.0 * pow(10.0, th_uniform(-1.5f, 1.0f)));
    for (int k = 0; k < 3; k++)
        zp[k] = q8_rand_zp();
}

static void test_binary_random(void **state) {
    (void)state;
    th_seed(301);
    const mdl_op ops[] = {MDL_OP_ADD, MDL_OP_SUB, MDL_OP_MUL};
    for (int it = 0; it < 600; it++) {
        int ar, br;
        int64_t ad[MDL_MAX_RANK], bd[MDL_MAX_RANK];
        rand_shapes(&ar, ad, &br, bd);
        float sc[3];
        int64_t zp[3];
        mdl_op op = ops[it % 3];
        rand_params(op, sc, zp);
        mdl_fused_act act = {MDL_ACT_NONE, 0, 0};
        rand_act(&act);
        check_binary(op, ar, ad, br, bd, sc, zp, &act);
    }
    q8_report(&stats[0], "add", 0.99);
    q8_report(&stats[1], "sub", 0.99);
    q8_report(&stats[2], "mul", 0.99);
}

/* Fixed shapes for every broadcast pattern the float kernel specializes, with every activation. */
static void test_binary_patterns(void **state) {
    (void)state;
    th_seed(302);
    struct {
        int ar, br;
        int64_t ad[4], bd[4];
    } pats[] = {
        {4, 1, {1, 7, 5, 3}, {3}},            /* bias row */
        {4, 4, {2, 3, 5, 17}, {2, 3, 5, 17}}, /* same shape */
        {4, 0, {1, 3, 3, 7}, {0}},            /* scalar */
        {2, 2, {17, 1}, {1, 5}},              /* outer product */
        {3, 3, {3, 1, 7}, {3, 5, 1}},
        {0, 0, {0}, {0}},
        {2, 2, {0, 3}, {1, 3}}, /* empty */
    };
    const mdl_op ops[] = {MDL_OP_ADD, MDL_OP_SUB, MDL_OP_MUL};
    for (size_t p = 0; p < sizeof pats / sizeof pats[0]; p++)
        for (int k = 0; k < 3; k++)
            for (int a = 0; a < MDL_ACT_COUNT; a++) {
                float sc[3];
                int64_t zp[3];
                rand_params(ops[k], sc, zp);
                mdl_fused_act act = {(mdl_activation)a, -1.0f, 2.0f};
                check_binary(ops[k], pats[p].ar, pats[p].ad, pats[p].br, pats[p].bd, sc, zp, &act);
                check_binary(ops[k], pats[p].br, pats[p].bd, pats[p].ar, pats[p].ad, sc, zp, &act);
            }
}

/* Scale ratios at the edges: 1e-4 and 1e2 between the inputs and towards the output. */
static void test_binary_extreme(void **state) {
    (void)state;
    th_seed(303);
    const float ratios[] = {1e-4f, 1e-2f, 1.0f, 1e2f};
    const mdl_op ops[] = {MDL_OP_ADD, MDL_OP_SUB, MDL_OP_MUL};
    const int64_t zps[] = {-128, 0, 127};
    int64_t ad[2] = {5, 17}, bd[2] = {5, 17};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                for (int z = 0; z < 3; z++) {
                    float sc[3] = {0.01f, 0.01f * ratios[i], 0.0f};
                    double range = ops[k] == MDL_OP_MUL ? 255.0 * 255.0 * sc[0] * sc[1]
                                                        : 255.0 * (sc[0] > sc[1] ? sc[0] : sc[1]);
                    sc[2] = (float)(range / 255.0 * ratios[j]);
                    int64_t zp[3] = {zps[z], zps[(z + 1) % 3], zps[(z + 2) % 3]};
                    mdl_fused_act act = {(mdl_activation)((i + j + z) % MDL_ACT_COUNT), -0.5f,
                                         0.5f};
                    check_binary(ops[k], 2, ad, 2, bd, sc, zp, &act);
                }
    q8_report(&stats[0], "add (all tests)", 0.99);
    q8_report(&stats[1], "sub (all tests)", 0.99);
    q8_report(&stats[2], "mul (all tests)", 0.99);
}

/* Long rows (the SIMD loops' bodies and an odd tail) with the multipliers' edge cases: equal
   input scales (a multiplier of exactly 1/2), one input 1e-9 of the other (a multiplier that
   rounds to zero, or a right shift beyond 23), and an output scale so small that the output
   multiplier shifts left (the sum clamped first). */
static void test_binary_long_rows(void **state) {
    (void)state;
    th_seed(304);
    const float in_ratio[] = {1e-9f, 3e-5f, 0.37f, 1.0f, 7.0f, 1e9f};
    const float out_ratio[] = {1e-6f, 1e-3f, 1.0f, 30.0f};
    const mdl_op ops[] = {MDL_OP_ADD, MDL_OP_SUB};
    const int64_t zps[] = {-128, 0, 127, 5};
    int64_t ad[2] = {2, 1003}, bd[2] = {2, 1003};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 4; j++) {
                float sc[3] = {0.02f, 0.02f * in_ratio[i], 0.0f};
                sc[2] = (float)(255.0 * (sc[0] > sc[1] ? sc[0] : sc[1]) / 255.0 * out_ratio[j]);
                int64_t zp[3] = {zps[(i + j) % 4], zps[(i + 2 * j + 1) % 4], zps[(i + j + k + 2) % 4]};
                mdl_fused_act act = {(mdl_activation)((i + j + k) % MDL_ACT_COUNT), -0.5f, 0.5f};
                check_binary(ops[k], 2, ad, 2, bd, sc, zp, &act);
            }
    q8_report(&stats[0], "add (long rows and before)", 0.99);
    q8_report(&stats[1], "sub (long rows and before)", 0.99);
}

static void test_binary_rejects(void **state) {
    (void)state;
    float s = 0.1f;
    int64_t z = 0;
    int64_t ad[2] = {2, 3}, bd[2] = {2, 4};
    int8_t a[8] = {0}, b[8] = {0};
    mdl_error err = {0};
    th_tensor in[2] = {q8_input(2, ad, a, &s, &z), q8_input(2, bd, b, &s, &z)};
    th_tensor out = q8_declared(2, ad, &s, &z);
    q8_assert_status(th_run_op(MDL_OP_ADD, NULL, 2, in, 1, &out, &err), MDL_SHAPE, err,
                     "broadcast");
    th_tensor_free(&in[1]);
    in[1] = q8_input(2, ad, b, &s, &z);
    /* B without parameters */
    th_tensor_quant(&in[1], 0, NULL, NULL, 0);
    out = q8_declared(2, ad, &s, &z);
    q8_assert_status(th_run_op(MDL_OP_MUL, NULL, 2, in, 1, &out, &err), MDL_UNSUPPORTED, err,
                     "input B");
    th_tensor_quant(&in[1], 1, &s, &z, 0);
    /* B of another dtype */
    in[1].dtype = MDL_DTYPE_UINT8;
    q8_assert_status(th_run_op(MDL_OP_MUL, NULL, 2, in, 1, &out, &err), MDL_DTYPE, err, "uint8");
    in[1].dtype = MDL_DTYPE_INT8;
    /* undeclared output */
    memset(&out, 0, sizeof out);
    q8_assert_status(th_run_op(MDL_OP_SUB, NULL, 2, in, 1, &out, &err), MDL_INVALID_ARGUMENT, err,
                     "output");
    /* bad fused activation */
    mdl_op_options o = mdl_op_options_default(MDL_OP_ADD);
    o.binary.act.kind = MDL_ACT_CLIP;
    o.binary.act.clip_min = 1.0f;
    o.binary.act.clip_max = 0.0f;
    out = q8_declared(2, ad, &s, &z);
    q8_assert_status(th_run_op(MDL_OP_ADD, &o, 2, in, 1, &out, &err), MDL_INVALID_ARGUMENT, err,
                     "clip range");
    /* bad output scale; multiplier beyond the fixed-point range (pack) */
    float zero = 0.0f, tiny = 1e-20f;
    out = q8_declared(2, ad, &zero, &z);
    q8_assert_status(th_run_op(MDL_OP_ADD, NULL, 2, in, 1, &out, &err), MDL_CORRUPT_MODEL, err,
                     "scale");
    out = q8_declared(2, ad, &tiny, &z);
    q8_assert_status(th_run_op(MDL_OP_MUL, NULL, 2, in, 1, &out, &err), MDL_UNSUPPORTED, err,
                     "fixed-point");
    th_tensor_free(&out); /* allocated after prepare; pack failed */
    /* DIV has no int8 kernel */
    out = q8_declared(2, ad, &s, &z);
    assert_int_equal(th_run_op(MDL_OP_DIV, NULL, 2, in, 1, &out, &err), MDL_UNSUPPORTED);
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
}

int main(int argc, char **argv) {
    (void)argc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_random),
        cmocka_unit_test(test_binary_patterns),
        cmocka_unit_test(test_binary_extreme),
        cmocka_unit_test(test_binary_long_rows),
        cmocka_unit_test(test_binary_rejects),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + th_same_outputs_at_lower_levels(argv[0]);
}
