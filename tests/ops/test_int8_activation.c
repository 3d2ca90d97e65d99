/* int8 activations (lookup tables) and SOFTMAX / LOG_SOFTMAX against a double-precision oracle:
   dequantize, the ONNX definition of the function in double (libm exp, tanh, erf), quantize with
   round half to even.  Within one step everywhere and exact on nearly all elements. */
#include "q8_oracle.h"

#include <stdlib.h>

static double hsig(double v, double a, double b) {
    double t = a * v + b;
    return t < 0 ? 0 : (t > 1 ? 1 : t);
}

static double ref_act(mdl_op op, const mdl_act_options *a, double v) {
    switch (op) {
    case MDL_OP_RELU: return v < 0 ? 0 : v;
    case MDL_OP_CLIP: return fmin(fmax(v, a->min), a->max);
    case MDL_OP_LEAKY_RELU: return v < 0 ? a->alpha * v : v;
    case MDL_OP_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case MDL_OP_TANH: return tanh(v);
    case MDL_OP_HARD_SIGMOID: return hsig(v, a->alpha, a->beta);
    case MDL_OP_HARD_SWISH: return v * hsig(v, 1.0 / 6.0, 0.5);
    case MDL_OP_GELU:
        if (a->approximate)
            return 0.5 * v *
                   (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
        return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    default: return NAN;
    }
}

static const mdl_op table_ops[] = {MDL_OP_RELU,       MDL_OP_CLIP, MDL_OP_LEAKY_RELU,
                                   MDL_OP_SIGMOID,    MDL_OP_TANH, MDL_OP_HARD_SIGMOID,
                                   MDL_OP_HARD_SWISH, MDL_OP_GELU};
#define NTABLE ((int)(sizeof table_ops / sizeof table_ops[0]))
static q8_stats act_stats[NTABLE + 1]; /* + GELU tanh */
static q8_stats sm_stats[2];

static void check_act(int which, mdl_op op, const mdl_op_options *o, int rank, const int64_t *dims,
                      float sx, int64_t zx, float sy, int64_t zy) {
    int64_t n = th_count(rank, dims);
    int8_t *x = malloc((size_t)(n ? n : 1));
    q8_fill(x, n);
    for (int64_t i = 0; i < n && i < 256; i++)
        x[i] = (int8_t)(i - 128); /* every code */
    th_tensor in = q8_input(rank, dims, x, &sx, &zx);
    th_tensor out = q8_declared(rank, dims, &sy, &zy);
    mdl_error err = {0};
    mdl_status st = th_run_op(op, o, 1, &in, 1, &out, &err);
    if (st != MDL_OK) fail_msg("status %d: %s", (int)st, err.msg);
    assert_int_equal(out.rank, rank);
    for (int64_t i = 0; i < n; i++) {
        double r = ref_act(op, &o->act, q8_real(x[i], sx, (int32_t)zx));
        int32_t want = q8_quantize8(r, sy, (int32_t)zy), got = ((int8_t *)out.data)[i];
        q8_check(&act_stats[which], got, want, r / sy,
                 "%s%s sx %g zx %lld sy %g zy %lld q %d: real %.9g steps", mdl_op_name(op),
                 o->act.approximate ? " (tanh)" : "", (double)sx, (long long)zx, (double)sy,
                 (long long)zy, x[i], r / sy);
    }
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
}

static void rand_shape(int *rank, int64_t *dims) {
    static const int64_t sizes[] = {1, 3, 7, 17, 2, 5};
    *rank = (int)th_rand_int(1, 4);
    for (int i = 0; i < *rank; i++)
        dims[i] = sizes[th_rand_int(0, 5)];
    if (th_rand_int(0, 3) == 0) { /* every code at least once */
        *rank = 1;
        dims[0] = 256 + th_rand_int(0, 30);
    }
}

static void test_table_activations(void **state) {
    (void)state;
    th_seed(401);
    for (int it = 0; it < 240; it++) {
        int k = it % (NTABLE + 1);
        mdl_op op = table_ops[k < NTABLE ? k : NTABLE - 1];
        mdl_op_options o = mdl_op_options_default(op);
        if (k == NTABLE) o.act.approximate = true;
        if (op == MDL_OP_CLIP) {
            o.act.min = th_uniform(-2.0f, 0.0f);
            o.act.max = th_rand_int(0, 4) == 0 ? INFINITY : th_uniform(0.0f, 3.0f);
        }
        if (op == MDL_OP_LEAKY_RELU) o.act.alpha = th_uniform(0.0f, 0.5f);
        if (op == MDL_OP_HARD_SIGMOID) {
            o.act.alpha = th_uniform(0.1f, 0.5f);
            o.act.beta = th_uniform(0.2f, 0.8f);
        }
        int rank;
        int64_t dims[MDL_MAX_RANK];
        rand_shape(&rank, dims);
        /* input scales from 1e-4 (all codes near 0) to 1 (codes up to +-255) */
        float sx = q8_rand_scale(-4, 0), sy;
        int64_t zx = q8_rand_zp(), zy = q8_rand_zp();
        switch (th_rand_int(0, 2)) {
        case 0: sy = sx; break;                        /* same parameters */
        case 1: sy = sx * q8_rand_scale(-2, 2); break; /* 1e-2 .. 1e2 ratio */
        default: sy = q8_rand_scale(-3, -1); break;    /* absolute, e.g. 1/256 */
        }
        check_act(k, op, &o, rank, dims, sx, zx, sy, zy);
    }
    for (int k = 0; k <= NTABLE; k++) {
        char name[40];
        snprintf(name, sizeof name, "%s%s", mdl_op_name(table_ops[k < NTABLE ? k : NTABLE - 1]),
                 k == NTABLE ? " (tanh approx)" : "");
        q8_report(&act_stats[k], name, 0.99);
    }
}

static void check_softmax(bool logsm, int rank, const int64_t *dims, int axis, float sx, int64_t zx,
                          float sy, int64_t zy) {
    int64_t n = th_count(rank, dims);
    int8_t *x = malloc((size_t)(n ? n : 1));
    q8_fill(x, n);
    th_tensor in = q8_input(rank, dims, x, &sx, &zx);
    th_tensor out = q8_declared(rank, dims, &sy, &zy);
    mdl_op op = logsm ? MDL_OP_LOG_SOFTMAX : MDL_OP_SOFTMAX;
    mdl_op_options o = mdl_op_options_default(op);
    o.axis.axis = axis - (th_rand_int(0, 1) ? rank : 0); /* negative half of the time */
    mdl_error err = {0};
    mdl_status st = th_run_op(op, &o, 1, &in, 1, &out, &err);
    if (st != MDL_OK) fail_msg("status %d: %s", (int)st, err.msg);
    int64_t outer = 1, len = dims[axis], inner = 1;
    for (int d = 0; d < axis; d++)
        outer *= dims[d];
    for (int d = axis + 1; d < rank; d++)
        inner *= dims[d];
    for (int64_t a = 0; a < outer; a++)
        for (int64_t i = 0; i < inner; i++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t k = 0; k < len; k++)
                mx = fmax(mx, q8_real(x[(a * len + k) * inner + i], sx, (int32_t)zx));
            for (int64_t k = 0; k < len; k++)
                sum += exp(q8_real(x[(a * len + k) * inner + i], sx, (int32_t)zx) - mx);
            for (int64_t k = 0; k < len; k++) {
                int64_t j = (a * len + k) * inner + i;
                double v = q8_real(x[j], sx, (int32_t)zx) - mx;
                double r = logsm ? v - log(sum) : exp(v) / sum;
                int32_t want = q8_quantize8(r, sy, (int32_t)zy), got = ((int8_t *)out.data)[j];
                q8_check(&sm_stats[logsm], got, want, r / sy,
                         "%s len %lld sx %g zx %lld sy %g zy %lld: real %.9g steps",
                         logsm ? "log_softmax" : "softmax", (long long)len, (double)sx,
                         (long long)zx, (double)sy, (long long)zy, r / sy);
            }
        }
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
}

static void test_softmax(void **state) {
    (void)state;
    th_seed(402);
    for (int it = 0; it < 300; it++) {
        int rank;
        int64_t dims[MDL_MAX_RANK];
        static const int64_t sizes[] = {1, 2, 3, 7, 10, 17, 64};
        rank = (int)th_rand_int(1, 4);
        for (int i = 0; i < rank; i++)
            dims[i] = sizes[th_rand_int(0, 6)];
        int axis = (int)th_rand_int(0, rank - 1);
        bool logsm = it % 2;
        float sx = q8_rand_scale(-3, 0), sy;
        int64_t zx = q8_rand_zp(), zy;
        if (!logsm) {
            /* the usual 1/256 with zero point -128, or anything */
            bool usual = th_rand_int(0, 1);
            sy = usual ? 1.0f / 256.0f : q8_rand_scale(-4, -1);
            zy = usual ? -128 : q8_rand_zp();
        } else {
            sy = q8_rand_scale(-2, 0);
            zy = th_rand_int(0, 1) ? 127 : q8_rand_zp();
        }
        check_softmax(logsm, rank, dims, axis, sx, zx, sy, zy);
    }
    q8_report(&sm_stats[0], "softmax", 0.99);
    q8_report(&sm_stats[1], "log_softmax", 0.99);
}

static void test_activation_rejects(void **state) {
    (void)state;
    float s = 0.1f, s2 = 0.2f;
    int64_t z = 0, dims[2] = {2, 3};
    int8_t x[6] = {0};
    mdl_error err = {0};
    th_tensor in = q8_input(2, dims, x, &s, &z);
    th_tensor out;
    memset(&out, 0, sizeof out);
    q8_assert_status(th_run_op(MDL_OP_SIGMOID, NULL, 1, &in, 1, &out, &err), MDL_INVALID_ARGUMENT,
                     err, "output");
    out = q8_declared(2, dims, &s2, &z);
    out.dtype = MDL_DTYPE_UINT8;
    q8_assert_status(th_run_op(MDL_OP_TANH, NULL, 1, &in, 1, &out, &err), MDL_DTYPE, err, "output");
    mdl_op_options o = mdl_op_options_default(MDL_OP_CLIP);
    o.act.min = NAN;
    out = q8_declared(2, dims, &s2, &z);
    q8_assert_status(th_run_op(MDL_OP_CLIP, &o, 1, &in, 1, &out, &err), MDL_INVALID_ARGUMENT, err,
                     "NaN");
    o = mdl_op_options_default(MDL_OP_LEAKY_RELU);
    o.act.alpha = INFINITY;
    q8_assert_status(th_run_op(MDL_OP_LEAKY_RELU, &o, 1, &in, 1, &out, &err), MDL_INVALID_ARGUMENT,
                     err, "alpha");
    o = mdl_op_options_default(MDL_OP_SOFTMAX);
    o.axis.axis = 2;
    q8_assert_status(th_run_op(MDL_OP_SOFTMAX, &o, 1, &in, 1, &out, &err), MDL_INVALID_ARGUMENT,
                     err, "axis");
    /* per-axis input */
    float sc[2] = {0.1f, 0.2f};
    int64_t zc[2] = {0, 0};
    th_tensor_quant(&in, 2, sc, zc, 0);
    q8_assert_status(th_run_op(MDL_OP_RELU, NULL, 1, &in, 1, &out, &err), MDL_UNSUPPORTED, err,
                     "per-tensor");
    th_tensor_free(&in);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_activations),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_activation_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
