/* Quantization math (src/quant/quant.h) against the values the TFLite/gemmlowp definitions give,
   and against an exact rational oracle on random inputs. */
#include "common/harness.h"

#include "ops/ops.h"
#include "quant/quant.h"

#include <math.h>
#include <string.h>

/* TFLite's documented examples of MultiplyByQuantizedMultiplier. */
static void test_spec_vectors(void **state) {
    (void)state;
    mdl__qmul m;
    assert_true(mdl__qmul_from_real(0.0033, &m));
    assert_int_equal(mdl__qmul_apply(299242, m), 988);
    assert_true(mdl__qmul_from_real(0.25, &m));
    assert_int_equal(mdl__qmul_apply(-2, m), -1);
    assert_int_equal(mdl__qmul_apply(2, m), 1);   /* 0.5 rounds away from zero */
    assert_int_equal(mdl__qmul_apply(-6, m), -2); /* -1.5 -> -2 */
    /* 0.5 = 2^30 * 2^(0-31): mult 2^30, shift 0 */
    assert_true(mdl__qmul_from_real(0.5, &m));
    assert_int_equal(m.mult, 1 << 30);
    assert_int_equal(m.shift, 0);
    /* 1.0 -> q = 0.5, shift 1 */
    assert_true(mdl__qmul_from_real(1.0, &m));
    assert_int_equal(m.mult, 1 << 30);
    assert_int_equal(m.shift, 1);
    assert_int_equal(mdl__qmul_apply(12345, m), 12345);
    /* just below 1: q * 2^31 rounds up to 2^31 and is renormalized */
    assert_true(mdl__qmul_from_real(1.0 - 1e-12, &m));
    assert_int_equal(m.mult, 1 << 30);
    assert_int_equal(m.shift, 1);
    /* invalid and tiny multipliers */
    assert_false(mdl__qmul_from_real(-0.5, &m));
    assert_false(mdl__qmul_from_real(NAN, &m));
    assert_false(mdl__qmul_from_real(INFINITY, &m));
    assert_false(mdl__qmul_from_real(4e9, &m));
    assert_true(mdl__qmul_from_real(1e-12, &m));
    assert_int_equal(m.mult, 0);
    assert_int_equal(mdl__qmul_apply(1000000, m), 0);
}

static void test_srdhm_rdivpot(void **state) {
    (void)state;
    assert_int_equal(mdl__srdhm(INT32_MIN, INT32_MIN), INT32_MAX);
    assert_int_equal(mdl__srdhm(1 << 30, 1 << 30), 1 << 29);
    assert_int_equal(mdl__srdhm(-(1 << 30), 1 << 30), -(1 << 29));
    /* 3 * 2^30 * 2 / 2^31 = 3 exactly */
    assert_int_equal(mdl__srdhm(3, 1 << 30), 2);   /* 1.5 -> 2 */
    assert_int_equal(mdl__srdhm(-3, 1 << 30), -1); /* gemmlowp: -1.5 -> -1 (truncating nudge) */
    assert_int_equal(mdl__srdhm(-5, 1 << 30), -2); /* -2.5 -> -2 */
    assert_int_equal(mdl__rdivpot(5, 1), 3);
    assert_int_equal(mdl__rdivpot(-5, 1), -3);
    assert_int_equal(mdl__rdivpot(4, 1), 2);
    assert_int_equal(mdl__rdivpot(7, 2), 2);
    assert_int_equal(mdl__rdivpot(-7, 2), -2);
    assert_int_equal(mdl__rdivpot(6, 2), 2); /* 1.5 -> 2 */
    assert_int_equal(mdl__rdivpot(-6, 2), -2);
    assert_int_equal(mdl__rdivpot(123, 0), 123);
}

/* The fixed-point product is the exactly rounded real product, except near a tie: the high
   multiply rounds first on a grid 2^right times finer, so within 0.5 / 2^right of a tie the
   second rounding may go either way (TFLite's "double rounding"). */
static void test_qmul_vs_real(void **state) {
    (void)state;
    th_seed(7);
    for (int it = 0; it < 200000; it++) {
        double real = exp(th_uniform(-18.0f, 3.0f)); /* 1.5e-8 .. 20 */
        int32_t x = (int32_t)th_rand_int(-(1 << 24), 1 << 24);
        if (real * fabs((double)x) > 1e9) continue;
        mdl__qmul m;
        assert_true(mdl__qmul_from_real(real, &m));
        /* the value the fixed-point multiplier represents */
        double rep = (double)m.mult * ldexp(1.0, m.shift - 31);
        assert_true(fabs(rep - real) <= real * 1e-9 + 1e-300);
        int32_t got = mdl__qmul_apply(x, m);
        double exact = (double)x * rep;
        if (fabs(got - exact) > 1.0 + 1e-9)
            fail_msg("x=%d real=%.17g got %d, exact %.6f", x, real, got, exact);
        double frac = fabs(exact - floor(exact) - 0.5);
        double window = 0.5 * ldexp(1.0, m.shift < 0 ? m.shift : 0) + 1e-6;
        if (frac > window && got != (int32_t)llround(exact))
            fail_msg("x=%d real=%.17g got %d, expected %lld", x, real, got, llround(exact));
    }
}

static void test_quantize_value(void **state) {
    (void)state;
    /* ONNX QuantizeLinear: round half to even, then saturate */
    assert_int_equal(mdl__quantize_value(2.5f, 1.0f, 0, -128, 127), 2);
    assert_int_equal(mdl__quantize_value(3.5f, 1.0f, 0, -128, 127), 4);
    assert_int_equal(mdl__quantize_value(-2.5f, 1.0f, 0, -128, 127), -2);
    assert_int_equal(mdl__quantize_value(-3.5f, 1.0f, 0, -128, 127), -4);
    assert_int_equal(mdl__quantize_value(0.3f, 0.1f, 10, -128, 127), 13);
    assert_int_equal(mdl__quantize_value(1000.0f, 1.0f, 0, -128, 127), 127);
    assert_int_equal(mdl__quantize_value(-1000.0f, 1.0f, 0, 0, 255), 0);
    assert_int_equal(mdl__quantize_value(INFINITY, 1.0f, 3, -128, 127), 127);
    assert_int_equal(mdl__quantize_value(-INFINITY, 1.0f, 3, -128, 127), -128);
    assert_int_equal(mdl__quantize_value(NAN, 1.0f, 3, -128, 127), 3);
    assert_int_equal(mdl__quantize_value(1e30f, 1e-30f, 0, -128, 127), 127);
    assert_int_equal(mdl__quantize_value(3e9f, 1.0f, -128, INT32_MIN, INT32_MAX), INT32_MAX);
    th_seed(3);
    for (int it = 0; it < 100000; it++) {
        float x = th_uniform(-300.0f, 300.0f), s = th_uniform(0.01f, 2.0f);
        int32_t zp = (int32_t)th_rand_int(-128, 127);
        int32_t q = mdl__quantize_value(x, s, zp, -128, 127);
        double r = nearbyint((double)(x / s)) + zp; /* default FPU mode: ties to even */
        r = r < -128 ? -128 : (r > 127 ? 127 : r);
        assert_int_equal(q, (int32_t)r);
    }
}

static void test_act_range(void **state) {
    (void)state;
    int32_t lo, hi;
    mdl__quant_act_range(0.0f, INFINITY, 0.05f, -10, -128, 127, &lo, &hi);
    assert_int_equal(lo, -10);
    assert_int_equal(hi, 127);
    mdl__quant_act_range(0.0f, 6.0f, 0.1f, -100, -128, 127, &lo, &hi);
    assert_int_equal(lo, -100);
    assert_int_equal(hi, -40);
    mdl__quant_act_range(-INFINITY, INFINITY, 0.1f, 0, -128, 127, &lo, &hi);
    assert_int_equal(lo, -128);
    assert_int_equal(hi, 127);
}

static mdl__tensor qtensor(mdl_dtype dt, int64_t c, int32_t n, const float *s, const int64_t *z,
                           int32_t axis) {
    mdl__tensor t;
    memset(&t, 0, sizeof t);
    t.name = "w";
    t.dtype = dt;
    t.rank = 2;
    t.dims[0] = c;
    t.dims[1] = 3;
    t.nquant = n;
    t.scale = s;
    t.zero_point = z;
    t.quant_axis = axis;
    return t;
}

static void test_quant_check(void **state) {
    (void)state;
    mdl_error err;
    float s[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    int64_t z[4] = {0, 0, 0, 0};
    mdl__tensor t = qtensor(MDL_DTYPE_INT8, 4, 4, s, z, 0);
    assert_int_equal(mdl__quant_check(&t, &err), MDL_OK);
    t = qtensor(MDL_DTYPE_INT8, 4, 1, s, z, 0);
    assert_int_equal(mdl__quant_check(&t, &err), MDL_OK);
    t = qtensor(MDL_DTYPE_INT8, 4, 3, s, z, 0); /* count does not match the axis */
    assert_int_equal(mdl__quant_check(&t, &err), MDL_CORRUPT_MODEL);
    assert_non_null(strstr(err.msg, "'w'"));
    assert_non_null(strstr(err.msg, "3 per-channel scales for 4 channels"));
    t = qtensor(MDL_DTYPE_INT8, 4, 4, s, z, 2); /* axis out of range */
    assert_int_equal(mdl__quant_check(&t, &err), MDL_CORRUPT_MODEL);
    const float bad[] = {0.0f, -1.0f, NAN, INFINITY};
    for (int i = 0; i < 4; i++) {
        float sb[4] = {0.1f, 0.1f, 0.1f, 0.1f};
        sb[2] = bad[i];
        t = qtensor(MDL_DTYPE_INT8, 4, 4, sb, z, 0);
        assert_int_equal(mdl__quant_check(&t, &err), MDL_CORRUPT_MODEL);
        assert_non_null(strstr(err.msg, "scale[2]"));
    }
    int64_t zb[1] = {128};
    t = qtensor(MDL_DTYPE_INT8, 4, 1, s, zb, 0);
    assert_int_equal(mdl__quant_check(&t, &err), MDL_CORRUPT_MODEL);
    assert_non_null(strstr(err.msg, "zero point"));
    t = qtensor(MDL_DTYPE_UINT8, 4, 1, s, zb, 0);
    assert_int_equal(mdl__quant_check(&t, &err), MDL_OK);
    zb[0] = -1;
    t = qtensor(MDL_DTYPE_UINT8, 4, 1, s, zb, 0);
    assert_int_equal(mdl__quant_check(&t, &err), MDL_CORRUPT_MODEL);
    t = qtensor(MDL_DTYPE_FLOAT32, 4, 1, s, z, 0);
    assert_int_equal(mdl__quant_check(&t, &err), MDL_CORRUPT_MODEL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_vectors), cmocka_unit_test(test_srdhm_rdivpot),
        cmocka_unit_test(test_qmul_vs_real), cmocka_unit_test(test_quantize_value),
        cmocka_unit_test(test_act_range),    cmocka_unit_test(test_quant_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
