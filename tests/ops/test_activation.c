/* Activations and Softmax/LogSoftmax against naive double-precision loops written from the ONNX
   operator definitions (Relu, Clip, LeakyRelu, Sigmoid, Tanh, HardSigmoid, HardSwish, Gelu,
   Softmax-13, LogSoftmax-13).  The x86 SIMD forms of the vector math (ops/x86/activation_*.c)
   are also called directly and compared with the portable functions and with double
   references, and main() runs the operator tests again on every lower SIMD level. */
#include "common/harness.h"

#include "ops/ops.h"
#include "ops/x86/activation_x86.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MDL_HAVE_X86_SIMD
#include "ops/x86/x86.h"
#endif

/* ---- references ------------------------------------------------------------------------ */

static double ref_act(mdl_op op, const mdl_op_options *o, double x) {
    switch (op) {
    case MDL_OP_RELU: return x > 0 ? x : 0;
    case MDL_OP_CLIP: return fmin((double)o->act.max, fmax(x, (double)o->act.min));
    case MDL_OP_LEAKY_RELU: return x >= 0 ? x : o->act.alpha * x;
    case MDL_OP_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case MDL_OP_TANH: return tanh(x);
    case MDL_OP_HARD_SIGMOID: return fmax(0.0, fmin(1.0, (double)o->act.alpha * x + o->act.beta));
    case MDL_OP_HARD_SWISH: return x * fmax(0.0, fmin(1.0, x / 6.0 + 0.5));
    case MDL_OP_GELU:
        /* The spec's 1 + erf(x / sqrt 2) and 1 + tanh(u), rewritten as erfc(-x / sqrt 2) and
           2 / (1 + e^-2u) (identities), because in the negative tail even double cancels. */
        if (o->act.approximate) {
            double u = sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x);
            return 0.5 * x * (2.0 / (1.0 + exp(-2.0 * u)));
        }
        return 0.5 * x * erfc(-x / sqrt(2.0));
    default: fail_msg("no reference for op %d", (int)op); return 0;
    }
}

/* Softmax along axis of a tensor with dims; log selects LogSoftmax.  Straight from the
   definition: exp(x - max) / sum exp(x - max) over the positions that differ only in axis. */
static void ref_softmax(const float *x, float *y, int rank, const int64_t *dims, int axis,
                        bool log_out) {
    int64_t outer = 1, inner = 1, n = dims[axis];
    for (int d = 0; d < axis; d++) outer *= dims[d];
    for (int d = axis + 1; d < rank; d++) inner *= dims[d];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t s = 0; s < inner; s++) {
            double m = -INFINITY, sum = 0;
            for (int64_t i = 0; i < n; i++) m = fmax(m, x[(o * n + i) * inner + s]);
            for (int64_t i = 0; i < n; i++) sum += exp((double)x[(o * n + i) * inner + s] - m);
            for (int64_t i = 0; i < n; i++) {
                double v = (double)x[(o * n + i) * inner + s] - m;
                y[(o * n + i) * inner + s] = (float)(log_out ? v - log(sum) : exp(v) / sum);
            }
        }
}

/* ---- helpers --------------------------------------------------------------------------- */

static int random_shape(int max_rank, int64_t max_dim, int64_t *dims) {
    int rank = (int)th_rand_int(0, max_rank);
    for (int d = 0; d < rank; d++) dims[d] = th_rand_int(1, max_dim);
    return rank;
}

static int64_t count_of(int rank, const int64_t *dims) {
    int64_t n = 1;
    for (int d = 0; d < rank; d++) n *= dims[d];
    return n;
}

static const mdl_op act_ops[] = {MDL_OP_RELU,         MDL_OP_CLIP,       MDL_OP_LEAKY_RELU,
                                 MDL_OP_SIGMOID,      MDL_OP_TANH,       MDL_OP_HARD_SIGMOID,
                                 MDL_OP_HARD_SWISH,   MDL_OP_GELU};
#define N_ACT_OPS (sizeof act_ops / sizeof act_ops[0])

/* Runs op on x (shape rank/dims) and checks against ref_act element by element. */
static void check_act(mdl_op op, const mdl_op_options *o, int rank, const int64_t *dims,
                      const float *x, double tol) {
    int64_t n = count_of(rank, dims);
    float *ref = malloc(sizeof(float) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) ref[i] = (float)ref_act(op, o, x[i]);
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, rank, dims, x), out = {0};
    mdl_error err;
    mdl_status st = th_run_op(op, o, 1, &in, 1, &out, &err);
    if (st != MDL_OK) fail_msg("%s: %s", mdl_op_name(op), err.msg);
    assert_int_equal(out.dtype, MDL_DTYPE_FLOAT32);
    assert_int_equal(out.rank, rank);
    for (int d = 0; d < rank; d++) assert_int_equal(out.dims[d], dims[d]);
    double e = th_max_rel_err(out.data, ref, n);
    if (!(e <= tol)) fail_msg("%s: relative error %g > %g", mdl_op_name(op), e, tol);
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(ref);
}

/* prepare + run with the output in the input's buffer (what an in-place memory plan does). */
static mdl_status run_inplace(mdl_op op, const mdl_op_options *o, int rank, const int64_t *dims,
                              float *buf) {
    mdl__tensor t;
    memset(&t, 0, sizeof t);
    t.name = "x";
    t.dtype = MDL_DTYPE_FLOAT32;
    t.rank = rank;
    memcpy(t.dims, dims, sizeof(int64_t) * (size_t)rank);
    t.count = count_of(rank, dims);
    t.bytes = (size_t)t.count * 4;
    mdl__kctx c;
    memset(&c, 0, sizeof c);
    mdl_error err;
    c.op = op;
    c.name = "test";
    c.opt = o;
    c.nin = c.nout = 1;
    c.in[0] = &t;
    c.err = &err;
    const mdl__kernel *k = mdl__kernel_find(op, MDL_DTYPE_FLOAT32);
    assert_non_null(k);
    mdl_status st = k->prepare(&c);
    if (st != MDL_OK) return st;
    c.out[0] = &t;
    c.in_data[0] = buf;
    c.out_data[0] = buf;
    c.scratch = c.scratch_bytes ? malloc(c.scratch_bytes) : NULL;
    st = k->run(&c);
    free(c.scratch);
    return st;
}

/* ---- activations ----------------------------------------------------------------------- */

static mdl_op_options random_act_options(mdl_op op) {
    mdl_op_options o = mdl_op_options_default(op);
    if (op == MDL_OP_CLIP) {
        switch (th_rand_int(0, 3)) {
        case 0: break; /* -inf..inf */
        case 1: o.act.min = th_uniform(-2, 0); o.act.max = th_uniform(0, 2); break;
        case 2: o.act.min = th_uniform(-1, 1); break; /* upper bound open */
        default: o.act.min = 1.0f; o.act.max = -1.0f; break; /* min > max: all = max */
        }
    } else if (op == MDL_OP_LEAKY_RELU) {
        o.act.alpha = th_uniform(0, 0.5f);
    } else if (op == MDL_OP_HARD_SIGMOID) {
        o.act.alpha = th_uniform(0.05f, 1);
        o.act.beta = th_uniform(-1, 1);
    } else if (op == MDL_OP_GELU) {
        o.act.approximate = th_rand_int(0, 1) != 0;
    }
    return o;
}

static void test_activations_random_shapes(void **state) {
    (void)state;
    th_seed(11);
    for (size_t k = 0; k < N_ACT_OPS; k++) {
        for (int it = 0; it < 40; it++) {
            int64_t dims[MDL_MAX_RANK];
            int rank = random_shape(5, 7, dims);
            int64_t n = count_of(rank, dims);
            float *x = malloc(sizeof(float) * (size_t)n);
            th_fill_uniform(x, n, -8, 8);
            if (n > 2) x[0] = 0.0f; /* exact zero hits the kink of every piecewise function */
            mdl_op_options o = random_act_options(act_ops[k]);
            check_act(act_ops[k], &o, rank, dims, x, 1e-5);
            free(x);
        }
    }
}

static void test_activations_defaults_and_long(void **state) {
    (void)state;
    th_seed(12);
    /* Default options, a length that is not a multiple of any block size, and both GELU forms. */
    int64_t dims[1] = {1037};
    float x[1037];
    th_fill_uniform(x, 1037, -10, 10);
    for (size_t k = 0; k < N_ACT_OPS; k++) {
        mdl_op_options o = mdl_op_options_default(act_ops[k]);
        check_act(act_ops[k], &o, 1, dims, x, 1e-5);
    }
    mdl_op_options g = mdl_op_options_default(MDL_OP_GELU);
    g.act.approximate = true;
    check_act(MDL_OP_GELU, &g, 1, dims, x, 1e-5);
    /* HardSigmoid defaults are alpha 0.2, beta 0.5; HardSwish is x * HardSigmoid(1/6, 0.5). */
    float probe[5] = {-3.0f, -1.0f, 0.0f, 2.0f, 3.0f};
    float want_hs[5] = {0.0f, -1.0f / 3.0f, 0.0f, 5.0f / 3.0f, 3.0f};
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 1, (int64_t[]){5}, probe), out = {0};
    assert_int_equal(th_run_op(MDL_OP_HARD_SWISH, NULL, 1, &in, 1, &out, NULL), MDL_OK);
    th_assert_close(out.data, want_hs, 5, 1e-6);
    th_tensor_free(&out);
    th_tensor_free(&in);
}

/* Large |x|: no overflow to inf/NaN, and tiny sigmoid outputs keep their relative accuracy. */
static void test_activations_large_inputs(void **state) {
    (void)state;
    th_seed(13);
    int64_t n = 801;
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = -100.0f + 0.25f * (float)i; /* -100 .. 100 */
    const mdl_op big[] = {MDL_OP_SIGMOID, MDL_OP_TANH, MDL_OP_GELU, MDL_OP_HARD_SWISH,
                          MDL_OP_HARD_SIGMOID, MDL_OP_RELU};
    for (size_t k = 0; k < sizeof big / sizeof big[0]; k++) {
        for (int approx = 0; approx < 2; approx++) {
            mdl_op_options o = mdl_op_options_default(big[k]);
            if (big[k] == MDL_OP_GELU) o.act.approximate = approx;
            check_act(big[k], &o, 1, &n, x, 1e-5);
        }
    }
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 1, &n, x), out = {0};
    assert_int_equal(th_run_op(MDL_OP_SIGMOID, NULL, 1, &in, 1, &out, NULL), MDL_OK);
    const float *y = out.data;
    for (int64_t i = 0; i < n; i++) {
        double r = 1.0 / (1.0 + exp(-(double)x[i]));
        assert_true(isfinite(y[i]));
        /* Down to x = -80 the result is a normal float: demand relative accuracy there. */
        if (x[i] >= -80.0f && fabs(y[i] - r) > 1e-5 * r)
            fail_msg("sigmoid(%g) = %g, want %g", (double)x[i], (double)y[i], r);
    }
    assert_true(y[0] >= 0.0f && y[n - 1] == 1.0f);
    th_tensor_free(&out);
    th_tensor_free(&in);
    free(x);

    /* Per element, outputs down to 1e-20 keep float relative accuracy in the negative tails of
       Gelu (both forms), Sigmoid and Tanh, where a formula like 1 + erf or 1 - s would cancel.
       (Below that, the rounding of the float argument itself, amplified by the function's
       steepness, dominates.) */
    n = 2801;
    x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = -14.0f + 0.01f * (float)i; /* -14 .. 14 */
    const mdl_op tails[] = {MDL_OP_GELU, MDL_OP_GELU, MDL_OP_SIGMOID, MDL_OP_TANH};
    for (size_t k = 0; k < 4; k++) {
        mdl_op_options o = mdl_op_options_default(tails[k]);
        o.act.approximate = k == 1;
        th_tensor in2 = th_tensor_make(MDL_DTYPE_FLOAT32, 1, &n, x), out2 = {0};
        assert_int_equal(th_run_op(tails[k], &o, 1, &in2, 1, &out2, NULL), MDL_OK);
        const float *g = out2.data;
        for (int64_t i = 0; i < n; i++) {
            double r = ref_act(tails[k], &o, x[i]);
            if (fabs(r) > 1e-20 && !(fabs(g[i] - r) <= 1e-5 * fabs(r)))
                fail_msg("%s%s(%g) = %.9g, want %.9g", mdl_op_name(tails[k]),
                         k == 1 ? " (tanh form)" : "", (double)x[i], (double)g[i], r);
        }
        th_tensor_free(&in2);
        th_tensor_free(&out2);
    }
    free(x);
}

static void test_activations_nan_and_inplace(void **state) {
    (void)state;
    th_seed(14);
    /* NaN propagates through Relu and Clip (max/min of NumPy do). */
    float nanv[3] = {NAN, -1.0f, 2.0f};
    const mdl_op prop[] = {MDL_OP_RELU, MDL_OP_CLIP, MDL_OP_LEAKY_RELU, MDL_OP_SIGMOID};
    for (size_t k = 0; k < sizeof prop / sizeof prop[0]; k++) {
        th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 1, (int64_t[]){3}, nanv), out = {0};
        assert_int_equal(th_run_op(prop[k], NULL, 1, &in, 1, &out, NULL), MDL_OK);
        assert_true(isnan(((float *)out.data)[0]));
        th_tensor_free(&out);
        th_tensor_free(&in);
    }
    /* In place: the output buffer is the input buffer. */
    int64_t dims[3] = {3, 5, 7};
    float x[105], buf[105], ref[105];
    th_fill_uniform(x, 105, -6, 6);
    for (size_t k = 0; k < N_ACT_OPS; k++) {
        mdl_op_options o = random_act_options(act_ops[k]);
        for (int i = 0; i < 105; i++) ref[i] = (float)ref_act(act_ops[k], &o, x[i]);
        memcpy(buf, x, sizeof buf);
        assert_int_equal(run_inplace(act_ops[k], &o, 3, dims, buf), MDL_OK);
        th_assert_close(buf, ref, 105, 1e-5);
    }
}

static void expect_reject(mdl_op op, const mdl_op_options *o, int nin, th_tensor *in,
                          mdl_status want, const char *needle) {
    th_tensor out[2] = {{0}, {0}};
    mdl_error err;
    memset(&err, 0, sizeof err);
    mdl_status st = th_run_op(op, o, nin, in, 1, out, &err);
    if (st != want) fail_msg("%s: status %d, want %d (%s)", mdl_op_name(op), st, want, err.msg);
    if (!strstr(err.msg, "'test'")) fail_msg("message lacks the node name: %s", err.msg);
    if (needle && !strstr(err.msg, needle)) fail_msg("message lacks \"%s\": %s", needle, err.msg);
}

/* Calls prepare directly (th_run_op would not find a kernel for a non-float input 0). */
static void expect_dtype_reject(mdl_op op, mdl_dtype dt) {
    mdl__tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.rank = 1;
    t.dims[0] = 4;
    t.count = 4;
    mdl__kctx c;
    memset(&c, 0, sizeof c);
    mdl_error err;
    mdl_op_options o = mdl_op_options_default(op);
    c.op = op;
    c.name = "test";
    c.opt = &o;
    c.nin = c.nout = 1;
    c.in[0] = &t;
    c.err = &err;
    assert_int_equal(mdl__kernel_find(op, MDL_DTYPE_FLOAT32)->prepare(&c), MDL_DTYPE);
    assert_non_null(strstr(err.msg, "'test'"));
    assert_non_null(strstr(err.msg, mdl_dtype_name(dt)));
}

static void test_activations_reject(void **state) {
    (void)state;
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, NULL),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, NULL)};
    for (size_t k = 0; k < N_ACT_OPS; k++) {
        expect_reject(act_ops[k], NULL, 2, in, MDL_INVALID_ARGUMENT, "one input");
        expect_dtype_reject(act_ops[k], MDL_DTYPE_INT8);
    }
    mdl_op_options o = mdl_op_options_default(MDL_OP_CLIP);
    o.act.min = NAN;
    expect_reject(MDL_OP_CLIP, &o, 1, in, MDL_INVALID_ARGUMENT, "NaN");
    o = mdl_op_options_default(MDL_OP_LEAKY_RELU);
    o.act.alpha = INFINITY;
    expect_reject(MDL_OP_LEAKY_RELU, &o, 1, in, MDL_INVALID_ARGUMENT, "alpha");
    o = mdl_op_options_default(MDL_OP_HARD_SIGMOID);
    o.act.beta = NAN;
    expect_reject(MDL_OP_HARD_SIGMOID, &o, 1, in, MDL_INVALID_ARGUMENT, "beta");
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
}

/* ---- softmax --------------------------------------------------------------------------- */

static void check_softmax(mdl_op op, int rank, const int64_t *dims, int32_t axis, float lo,
                          float hi) {
    int64_t n = count_of(rank, dims);
    float *x = malloc(sizeof(float) * (size_t)n), *ref = malloc(sizeof(float) * (size_t)n);
    th_fill_uniform(x, n, lo, hi);
    int a = axis < 0 ? axis + rank : axis;
    ref_softmax(x, ref, rank, dims, a, op == MDL_OP_LOG_SOFTMAX);
    mdl_op_options o = mdl_op_options_default(op);
    o.axis.axis = axis;
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, rank, dims, x), out = {0};
    mdl_error err;
    if (th_run_op(op, &o, 1, &in, 1, &out, &err) != MDL_OK) fail_msg("%s", err.msg);
    assert_int_equal(out.rank, rank);
    for (int d = 0; d < rank; d++) assert_int_equal(out.dims[d], dims[d]);
    const float *y = out.data;
    for (int64_t i = 0; i < n; i++) assert_true(isfinite(y[i]));
    double e = th_max_rel_err(out.data, ref, n);
    if (!(e <= 1e-5))
        fail_msg("%s axis %d of rank %d: relative error %g", mdl_op_name(op), axis, rank, e);
    /* For Softmax also check per element (small probabilities must not be swamped by the
       tensor-wide scale th_max_rel_err uses). */
    if (op == MDL_OP_SOFTMAX)
        for (int64_t i = 0; i < n; i++)
            if (ref[i] > 1e-30f && fabsf(y[i] - ref[i]) > 1e-5f * ref[i] + 1e-37f)
                fail_msg("softmax element %lld: %g vs %g", (long long)i, (double)y[i],
                         (double)ref[i]);
    th_tensor_free(&in);
    th_tensor_free(&out);
    free(x);
    free(ref);
}

static void test_softmax_every_axis_4d(void **state) {
    (void)state;
    th_seed(21);
    const int64_t shapes[][4] = {{2, 3, 4, 5}, {1, 7, 1, 3}, {3, 1, 5, 1}, {2, 9, 3, 17}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int32_t axis = -4; axis < 4; axis++) {
            check_softmax(MDL_OP_SOFTMAX, 4, shapes[s], axis, -3, 3);
            check_softmax(MDL_OP_LOG_SOFTMAX, 4, shapes[s], axis, -3, 3);
        }
}

static void test_softmax_random_shapes(void **state) {
    (void)state;
    th_seed(22);
    for (int it = 0; it < 60; it++) {
        int64_t dims[MDL_MAX_RANK];
        int rank = (int)th_rand_int(1, 5);
        for (int d = 0; d < rank; d++) dims[d] = th_rand_int(1, 9);
        int32_t axis = (int32_t)th_rand_int(-rank, rank - 1);
        check_softmax(it % 2 ? MDL_OP_SOFTMAX : MDL_OP_LOG_SOFTMAX, rank, dims, axis, -5, 5);
    }
    /* Long rows (block remainders) and a long strided axis. */
    check_softmax(MDL_OP_SOFTMAX, 2, (int64_t[]){3, 1001}, -1, -5, 5);
    check_softmax(MDL_OP_LOG_SOFTMAX, 2, (int64_t[]){3, 1001}, 1, -5, 5);
    check_softmax(MDL_OP_SOFTMAX, 2, (int64_t[]){1001, 3}, 0, -5, 5);
    check_softmax(MDL_OP_LOG_SOFTMAX, 3, (int64_t[]){2, 513, 19}, -2, -5, 5);
}

static void test_softmax_large_inputs(void **state) {
    (void)state;
    th_seed(23);
    /* +-100 would overflow exp() in float without the max subtraction. */
    check_softmax(MDL_OP_SOFTMAX, 2, (int64_t[]){4, 50}, -1, -100, 100);
    check_softmax(MDL_OP_LOG_SOFTMAX, 2, (int64_t[]){4, 50}, -1, -100, 100);
    check_softmax(MDL_OP_SOFTMAX, 3, (int64_t[]){3, 20, 6}, 1, -100, 100);
    check_softmax(MDL_OP_LOG_SOFTMAX, 3, (int64_t[]){3, 20, 6}, 1, -100, 100);
    check_softmax(MDL_OP_SOFTMAX, 1, (int64_t[]){64}, 0, 90, 100);
    check_softmax(MDL_OP_LOG_SOFTMAX, 1, (int64_t[]){64}, 0, -1000, -900);
    /* A single-element axis gives exactly 1 (Softmax) and 0 (LogSoftmax). */
    float x[3] = {-1e30f, 0.0f, 88.0f}, ones[3] = {1, 1, 1}, zeros[3] = {0, 0, 0};
    mdl_op_options o = mdl_op_options_default(MDL_OP_SOFTMAX);
    o.axis.axis = 1;
    th_tensor in = th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 1}, x), out = {0};
    assert_int_equal(th_run_op(MDL_OP_SOFTMAX, &o, 1, &in, 1, &out, NULL), MDL_OK);
    th_assert_close(out.data, ones, 3, 0);
    th_tensor_free(&out);
    assert_int_equal(th_run_op(MDL_OP_LOG_SOFTMAX, &o, 1, &in, 1, &out, NULL), MDL_OK);
    th_assert_close(out.data, zeros, 3, 0);
    th_tensor_free(&out);
    th_tensor_free(&in);
}

static void test_softmax_inplace(void **state) {
    (void)state;
    th_seed(24);
    int64_t dims[3] = {3, 6, 5};
    float x[90], buf[90], ref[90];
    th_fill_uniform(x, 90, -4, 4);
    for (int log_out = 0; log_out < 2; log_out++)
        for (int axis = 0; axis < 3; axis++) {
            mdl_op op = log_out ? MDL_OP_LOG_SOFTMAX : MDL_OP_SOFTMAX;
            mdl_op_options o = mdl_op_options_default(op);
            o.axis.axis = axis;
            ref_softmax(x, ref, 3, dims, axis, log_out);
            memcpy(buf, x, sizeof buf);
            assert_int_equal(run_inplace(op, &o, 3, dims, buf), MDL_OK);
            th_assert_close(buf, ref, 90, 1e-5);
        }
}

static void test_softmax_reject(void **state) {
    (void)state;
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){2, 3, 4}, NULL),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 0, NULL, NULL)};
    const mdl_op ops[2] = {MDL_OP_SOFTMAX, MDL_OP_LOG_SOFTMAX};
    for (int k = 0; k < 2; k++) {
        mdl_op_options o = mdl_op_options_default(ops[k]);
        o.axis.axis = 3;
        expect_reject(ops[k], &o, 1, in, MDL_INVALID_ARGUMENT, "axis 3");
        o.axis.axis = -4;
        expect_reject(ops[k], &o, 1, in, MDL_INVALID_ARGUMENT, "axis -4");
        o.axis.axis = -1;
        expect_reject(ops[k], &o, 1, &in[1], MDL_INVALID_ARGUMENT, "rank 0");
        expect_reject(ops[k], &o, 2, in, MDL_INVALID_ARGUMENT, "one input");
        expect_dtype_reject(ops[k], MDL_DTYPE_INT32);
    }
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
}


/* ---- the vector math, every SIMD form ------------------------------------------------------- */

typedef void (*vec_fn)(const float *x, float *y, int64_t n);
typedef void (*exp_shift_fn)(const float *x, float m, const float *mrow, float *out, double *rsum,
                             float *esum, int64_t n);

typedef struct variant {
    const char *name;
    vec_fn fn[MDL__VF_COUNT];
    exp_shift_fn exp_shift;
} variant;

/* The SIMD forms this build has and this CPU runs. */
static int simd_variants(variant *v) {
    int n = 0;
#ifdef MDL_HAVE_X86_SIMD
    if (mdl__cpu_level() >= MDL_CPU_AVX2)
        v[n++] = (variant){"avx2",
                           {mdl__sigmoid_f32v_avx2, mdl__tanh_f32v_avx2, mdl__gelu_erf_f32v_avx2,
                            mdl__gelu_tanh_f32v_avx2, mdl__hard_swish_f32v_avx2},
                           mdl__exp_shift_avx2};
    if (mdl__cpu_level() >= MDL_CPU_AVX512)
        v[n++] = (variant){"avx512",
                           {mdl__sigmoid_f32v_avx512, mdl__tanh_f32v_avx512,
                            mdl__gelu_erf_f32v_avx512, mdl__gelu_tanh_f32v_avx512,
                            mdl__hard_swish_f32v_avx512},
                           mdl__exp_shift_avx512};
#endif
    (void)v;
    return n;
}

static const char *const vf_names[MDL__VF_COUNT] = {"sigmoid", "tanh", "gelu", "gelu-tanh",
                                                    "hardswish"};

static double ref_vf(mdl__vfn f, double x) {
    mdl_op_options o = mdl_op_options_default(MDL_OP_GELU);
    switch (f) {
    case MDL__VF_SIGMOID: return ref_act(MDL_OP_SIGMOID, NULL, x);
    case MDL__VF_TANH: return ref_act(MDL_OP_TANH, NULL, x);
    case MDL__VF_GELU_ERF: return ref_act(MDL_OP_GELU, &o, x);
    case MDL__VF_GELU_TANH: o.act.approximate = true; return ref_act(MDL_OP_GELU, &o, x);
    case MDL__VF_HARD_SWISH: return ref_act(MDL_OP_HARD_SWISH, NULL, x);
    default: fail_msg("no reference for %d", (int)f); return 0;
    }
}

/* Absolute error allowed on top of 1e-5 relative: outputs below it are flushed or dominated by
   the rounding of the argument (Gelu's deep tail, see test_activations_large_inputs); HardSwish
   cancels in x / 6 + 1/2 next to x = -3 in any float evaluation. */
static const double vf_abs_tol[MDL__VF_COUNT] = {1e-30, 1e-30, 1e-20, 1e-20, 1e-6};

/* Inputs that hit the special cases: NaN, infinities, signed zeros, subnormals, saturation,
   exp()'s underflow bound, the tanh and Gelu switch points, HardSwish's kinks. */
/* clang-format off */
static const float special_inputs[] = {
    NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, -1e-40f, FLT_MIN, -FLT_MIN, FLT_MAX,
    -FLT_MAX, 1e30f, -1e30f, 1e13f, -1e13f, 100.0f, -100.0f, 20.0f, -20.0f, 88.0f, -88.0f,
    87.3f, -87.3f, 87.4f, -87.4f, 43.6f, -43.6f, 17.0f, -17.0f, 0.625f, -0.625f, 0.62499994f,
    -0.62499994f, -2.0f, -2.0000002f, -1.9999999f, 3.0f, -3.0f, -2.9999998f, 5.6568542f,
    -5.6568542f, -9.0f, -13.0f, 5.6e-8f, -5.6e-8f};
/* clang-format on */
#define N_SPECIAL (sizeof special_inputs / sizeof special_inputs[0])

/* got vs the portable result port and the double reference at x: NaN exactly where the portable
   code gives NaN, otherwise within 1e-5 relative (plus the function's absolute floor) of both. */
static void check_vf_elem(const char *var, mdl__vfn f, int64_t n, int64_t i, float x, float got,
                          float port) {
    const char *nm = vf_names[f];
    if (isnan(port) || isnan(got)) {
        if (isnan(port) != isnan(got))
            fail_msg("%s %s n=%lld [%lld]: f(%g) = %g, portable %g", var, nm, (long long)n,
                     (long long)i, (double)x, (double)got, (double)port);
        return;
    }
    double ref = ref_vf(f, x), at = vf_abs_tol[f];
    if (isinf(got) || isinf(port) || isinf(ref)) {
        if (!(got == port && got == ref))
            fail_msg("%s %s n=%lld [%lld]: f(%g) = %g, portable %g, reference %g", var, nm,
                     (long long)n, (long long)i, (double)x, (double)got, (double)port, ref);
        return;
    }
    if (!(fabs((double)got - port) <= 1e-5 * fabs((double)port) + at) ||
        !(fabs((double)got - ref) <= 1e-5 * fabs(ref) + at))
        fail_msg("%s %s n=%lld [%lld]: f(%.9g) = %.9g, portable %.9g, reference %.9g", var, nm,
                 (long long)n, (long long)i, (double)x, (double)got, (double)port, ref);
    /* Results the portable code saturates to (0, +-1, +-inf) come out bit-identical. */
    if ((port == 0.0f || fabsf(port) == 1.0f || isinf(port)) && fabsf(x) >= 20.0f &&
        memcmp(&got, &port, sizeof got) != 0)
        fail_msg("%s %s: f(%g) = %g, portable %g (not identical)", var, nm, (double)x, (double)got,
                 (double)port);
}

/* Random inputs of one of three kinds, with some special inputs mixed in. */
static void fill_vf_inputs(float *x, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) {
        if (kind == 0)
            x[i] = th_uniform(-12, 12);
        else if (kind == 1)
            x[i] = th_uniform(-100, 100);
        else
            x[i] = (th_rand_int(0, 1) ? 1.0f : -1.0f) * powf(10.0f, th_uniform(-40, 38));
        if (th_rand_int(0, 7) == 0) x[i] = special_inputs[th_rand_int(0, N_SPECIAL - 1)];
    }
}

#define GUARD 16
#define SENTINEL 12345.0f

/* One variant and function on x[0..n): out of place into a guarded buffer (nothing past n
   written), in place (bit-identical to out of place), compared element by element. */
static void check_vf_run(const variant *v, mdl__vfn f, const float *x, int64_t n) {
    float *port = malloc(sizeof(float) * (size_t)(n + 1));
    float *y = malloc(sizeof(float) * (size_t)(n + GUARD));
    float *buf = malloc(sizeof(float) * (size_t)(n + 1));
    mdl__act_f32v_ref(f, x, port, n);
    for (int64_t i = 0; i < n + GUARD; i++)
        y[i] = SENTINEL;
    v->fn[f](x, y, n);
    for (int64_t i = n; i < n + GUARD; i++)
        if (y[i] != SENTINEL)
            fail_msg("%s %s n=%lld: wrote y[%lld]", v->name, vf_names[f], (long long)n,
                     (long long)i);
    for (int64_t i = 0; i < n; i++)
        check_vf_elem(v->name, f, n, i, x[i], y[i], port[i]);
    if (n) memcpy(buf, x, sizeof(float) * (size_t)n);
    v->fn[f](buf, buf, n);
    if (n && memcmp(buf, y, sizeof(float) * (size_t)n) != 0)
        fail_msg("%s %s n=%lld: in place differs from out of place", v->name, vf_names[f],
                 (long long)n);
    free(port);
    free(y);
    free(buf);
}

static void test_vec_variants_lengths(void **state) {
    (void)state;
    variant vs[2];
    int nv = simd_variants(vs);
    if (!nv) skip();
    th_seed(31);
    /* Every tail length of both vector widths, at an unaligned address too. */
    float *xb = malloc(sizeof(float) * 70);
    for (int k = 0; k < nv; k++)
        for (int f = 0; f < MDL__VF_COUNT; f++)
            for (int64_t n = 0; n <= 67; n++)
                for (int off = 0; off < 2; off++) {
                    fill_vf_inputs(xb + off, n, (int)(n % 3));
                    check_vf_run(&vs[k], (mdl__vfn)f, xb + off, n);
                }
    free(xb);
}

static void test_vec_variants_large(void **state) {
    (void)state;
    variant vs[2];
    int nv = simd_variants(vs);
    if (!nv) skip();
    th_seed(32);
    int64_t n = 20011;
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int kind = 0; kind < 3; kind++) {
        fill_vf_inputs(x, n, kind);
        for (int k = 0; k < nv; k++)
            for (int f = 0; f < MDL__VF_COUNT; f++)
                check_vf_run(&vs[k], (mdl__vfn)f, x, n);
    }
    /* A dense sweep over the interesting range (saturation, switch points, tails). */
    for (int64_t i = 0; i < n; i++)
        x[i] = -100.0f + 200.0f * (float)i / (float)(n - 1);
    for (int k = 0; k < nv; k++)
        for (int f = 0; f < MDL__VF_COUNT; f++)
            check_vf_run(&vs[k], (mdl__vfn)f, x, n);
    for (int64_t i = 0; i < n; i++)
        x[i] = -5.0f + 10.0f * (float)i / (float)(n - 1);
    for (int k = 0; k < nv; k++)
        for (int f = 0; f < MDL__VF_COUNT; f++)
            check_vf_run(&vs[k], (mdl__vfn)f, x, n);
    free(x);
}

/* The special values themselves, bit for bit where the result is exact. */
static void test_vec_special_values(void **state) {
    (void)state;
    variant vs[3];
    int nv = simd_variants(vs + 1);
    /* The portable form too: these are properties of the functions, not of one variant. */
    vs[0] = (variant){"portable", {NULL}, NULL};
    const int64_t n = (int64_t)N_SPECIAL;
    float y[N_SPECIAL], port[N_SPECIAL];
    for (int k = 0; k <= nv; k++)
        for (int f = 0; f < MDL__VF_COUNT; f++) {
            mdl__act_f32v_ref((mdl__vfn)f, special_inputs, port, n);
            if (k)
                vs[k].fn[f](special_inputs, y, n);
            else
                memcpy(y, port, sizeof y);
            for (int64_t i = 0; i < n; i++)
                check_vf_elem(vs[k].name, (mdl__vfn)f, n, i, special_inputs[i], y[i], port[i]);
        }
    for (int k = 0; k <= nv; k++) {
        const float in[] = {100.0f, -100.0f, 20.0f, -20.0f, -0.0f, 0.0f, INFINITY, -INFINITY, NAN};
        float s[9], t[9];
        if (k) {
            vs[k].fn[MDL__VF_SIGMOID](in, s, 9);
            vs[k].fn[MDL__VF_TANH](in, t, 9);
        } else {
            mdl__act_f32v_ref(MDL__VF_SIGMOID, in, s, 9);
            mdl__act_f32v_ref(MDL__VF_TANH, in, t, 9);
        }
        const char *nm = vs[k].name;
        if (!(s[0] == 1.0f && s[1] == 0.0f && !signbit(s[1]) && s[4] == 0.5f && s[5] == 0.5f &&
              s[6] == 1.0f && s[7] == 0.0f && isnan(s[8])))
            fail_msg("%s sigmoid: %g %g %g %g %g %g %g", nm, (double)s[0], (double)s[1],
                     (double)s[4], (double)s[5], (double)s[6], (double)s[7], (double)s[8]);
        if (!(t[2] == 1.0f && t[3] == -1.0f && t[4] == 0.0f && signbit(t[4]) && t[5] == 0.0f &&
              !signbit(t[5]) && t[6] == 1.0f && t[7] == -1.0f && isnan(t[8])))
            fail_msg("%s tanh: %g %g %g %g %g %g %g", nm, (double)t[2], (double)t[3], (double)t[4],
                     (double)t[5], (double)t[6], (double)t[7], (double)t[8]);
    }
}

/* Softmax's exponentials: both modes, with and without stored output, every tail length;
   against the portable form and exp() in double of the same float difference. */
static void test_exp_shift_variants(void **state) {
    (void)state;
    variant vs[2];
    int nv = simd_variants(vs);
    if (!nv) skip();
    th_seed(33);
    const int64_t lens[] = {1000, 4099};
    for (int k = 0; k < nv; k++)
        for (int64_t li = 0; li <= 67 + 2; li++) {
            int64_t n = li <= 67 ? li : lens[li - 68];
            float *x = malloc(sizeof(float) * (size_t)(n + 1));
            float *mrow = malloc(sizeof(float) * (size_t)(n + 1));
            float *out = malloc(sizeof(float) * (size_t)(n + GUARD));
            float *pout = malloc(sizeof(float) * (size_t)(n + 1));
            float *es = malloc(sizeof(float) * (size_t)(n + GUARD));
            float *pes = malloc(sizeof(float) * (size_t)(n + 1));
            float m = -INFINITY;
            for (int64_t i = 0; i < n; i++) {
                x[i] = th_rand_int(0, 15) ? th_uniform(-40, 3) : -INFINITY;
                m = x[i] > m ? x[i] : m;
                mrow[i] = x[i] == -INFINITY ? 0.0f : x[i] + th_uniform(0, 30);
            }
            if (n && m == -INFINITY) m = 0.0f;
            if (n > 5 && li % 4 == 1) x[n / 2] = NAN; /* must reach the output and the sum */
            for (int mode = 0; mode < 4; mode++) {
                bool per_elem = mode & 1, store = mode & 2;
                double rs = 0.5, prs = 0.5;
                for (int64_t i = 0; i < n + GUARD; i++)
                    out[i] = es[i] = SENTINEL;
                for (int64_t i = 0; i < n; i++)
                    es[i] = pes[i] = th_uniform(0, 5);
                vs[k].exp_shift(x, m, per_elem ? mrow : NULL, store ? out : NULL, &rs,
                                per_elem ? es : NULL, n);
                mdl__exp_shift_ref(x, m, per_elem ? mrow : NULL, pout, &prs, per_elem ? pes : NULL,
                                   n);
                for (int64_t i = n; i < n + GUARD; i++)
                    if (out[i] != SENTINEL || es[i] != SENTINEL)
                        fail_msg("%s exp_shift n=%lld: wrote past the end", vs[k].name,
                                 (long long)n);
                double sum = 0.5;
                for (int64_t i = 0; i < n; i++) {
                    float d = x[i] - (per_elem ? mrow[i] : m);
                    double r = exp((double)d);
                    sum += r;
                    if (store && !(isnan(d) ? isnan(out[i])
                                            : fabs(out[i] - r) <= 1e-6 * r + 1e-37 &&
                                                  fabs(out[i] - pout[i]) <= 1e-6 * r + 1e-37))
                        fail_msg("%s exp_shift n=%lld [%lld]: exp(%g) = %g, portable %g",
                                 vs[k].name, (long long)n, (long long)i, (double)d, (double)out[i],
                                 (double)pout[i]);
                    if (per_elem &&
                        !(isnan(d) ? isnan(es[i]) : fabs(es[i] - pes[i]) <= 1e-6 * pes[i]))
                        fail_msg("%s exp_shift n=%lld [%lld]: sum %g, portable %g", vs[k].name,
                                 (long long)n, (long long)i, (double)es[i], (double)pes[i]);
                }
                if (per_elem) {
                    assert_true(rs == 0.5); /* the row sum is untouched in this mode */
                } else if (isnan(sum)
                               ? !isnan(rs)
                               : !(fabs(rs - sum) <= 1e-6 * sum && fabs(prs - sum) <= 1e-6 * sum)) {
                    fail_msg("%s exp_shift n=%lld: sum %.9g, portable %.9g, reference %.9g",
                             vs[k].name, (long long)n, rs, prs, sum);
                }
            }
            free(x);
            free(mrow);
            free(out);
            free(pout);
            free(es);
            free(pes);
        }
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activations_random_shapes),
        cmocka_unit_test(test_activations_defaults_and_long),
        cmocka_unit_test(test_activations_large_inputs),
        cmocka_unit_test(test_activations_nan_and_inplace),
        cmocka_unit_test(test_activations_reject),
        cmocka_unit_test(test_softmax_every_axis_4d),
        cmocka_unit_test(test_softmax_random_shapes),
        cmocka_unit_test(test_softmax_large_inputs),
        cmocka_unit_test(test_softmax_inplace),
        cmocka_unit_test(test_softmax_reject),
        cmocka_unit_test(test_vec_variants_lengths),
        cmocka_unit_test(test_vec_variants_large),
        cmocka_unit_test(test_vec_special_values),
        cmocka_unit_test(test_exp_shift_variants),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    (void)argc;
    failed += th_rerun_lower_cpu_levels(argv[0]);
    return failed;
}
