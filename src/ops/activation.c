/* Float32 activations (Relu, Clip, LeakyRelu, Sigmoid, Tanh, HardSigmoid, HardSwish, Gelu) and
   Softmax / LogSoftmax along one axis (ONNX opset-13 semantics).

   Vectorization without intrinsics.  gcc -O2 (very-cheap vectorizer cost model) vectorizes a
   loop only when its trip count is a known multiple of the vector width and its body has no
   control flow.  So every function is written once, over a fixed block of BLK elements held in
   local arrays, as a sequence of simple passes; each pass is one statement (a select against a
   constant is kept in its own pass, otherwise gcc duplicates the code after it into two paths
   and gives up).  exp, tanh and erf are polynomial/rational approximations in that form instead
   of libm calls (which are scalar; tanhf alone costs ~30 ns per element here): exp is Cephes'
   expf (max relative error 1e-7 on [-87, 0]), erf the rational approximation used by Eigen
   (4e-7), tanh Cephes' tanhf (2e-7).

   In place: a block function reads all its input before it writes any output, so y may be x.

   x86: Sigmoid, Tanh, Gelu, HardSwish, the shared mdl__sigmoid_f32v / mdl__tanh_f32v and
   Softmax's exponentials have AVX2 / AVX-512 forms (x86/activation_*.c, the same formulas),
   chosen per call by mdl__cpu_level(); the block functions here are their oracle. */
#include "ops.h"

#include "x86/activation_x86.h"

#include <math.h>
#include <string.h>

#ifdef MDL_HAVE_X86_SIMD
#include "x86/x86.h"
#endif

#define BLK 8

typedef struct act_par {
    float alpha, beta, lo, hi;
} act_par;

/* Runs FN(in, out, par) over n elements: whole blocks directly, the tail through a zero-padded
   local block, so each function exists in block form only. */
#define MAP_BLOCKS(FN, x, y, n, par)                                                               \
    do {                                                                                           \
        int64_t i_ = 0;                                                                            \
        for (; i_ + BLK <= (n); i_ += BLK) FN((x) + i_, (y) + i_, (par));                          \
        if (i_ < (n)) {                                                                            \
            float in_[BLK] = {0}, out_[BLK];                                                       \
            size_t r_ = (size_t)((n) - i_) * sizeof(float);                                        \
            memcpy(in_, (x) + i_, r_);                                                             \
            FN(in_, out_, (par));                                                                  \
            memcpy((y) + i_, out_, r_);                                                            \
        }                                                                                          \
    } while (0)

/* ---- vector math over one block -------------------------------------------------------- */

#define EXP_LO -87.33654f /* ~log(FLT_MIN): below it e^x is subnormal; we return 0 there */

/* e[k] = exp(x[k]) for x[k] <= 0 (larger values are treated as 0).  NaN propagates. */
static inline void exp_nonpos_blk(const float *x, float *e) {
    float xv[BLK], xc[BLK], nf[BLK], r[BLK], p[BLK], s[BLK], t[BLK];
    int32_t bits[BLK];
    /* Everything on local arrays: a pass that read x and wrote e would need an alias check. */
    memcpy(xv, x, sizeof xv);
    /* NaN maps to EXP_LO here (a > comparison is false), so the float-to-int conversion below
       stays defined; the last pass restores the NaN. */
    for (int k = 0; k < BLK; k++) xc[k] = xv[k] > EXP_LO ? xv[k] : EXP_LO;
    for (int k = 0; k < BLK; k++) xc[k] = xc[k] < 0.0f ? xc[k] : 0.0f;
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick; r = x - n ln 2 in two parts (Cody-Waite). */
    for (int k = 0; k < BLK; k++) nf[k] = (xc[k] * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    for (int k = 0; k < BLK; k++) r[k] = (xc[k] - nf[k] * 0.693359375f) + nf[k] * 2.12194440e-4f;
    for (int k = 0; k < BLK; k++) {
        float w = r[k], q = 1.9875691500e-4f;
        q = q * w + 1.3981999507e-3f;
        q = q * w + 8.3334519073e-3f;
        q = q * w + 4.1665795894e-2f;
        q = q * w + 1.6666665459e-1f;
        q = q * w + 5.0000001201e-1f;
        p[k] = q * w * w + w + 1.0f;
    }
    /* 2^n built in the exponent field; n >= -126, so the result is a normal float. */
    for (int k = 0; k < BLK; k++) bits[k] = ((int32_t)nf[k] + 127) * (1 << 23);
    memcpy(s, bits, sizeof s);
    for (int k = 0; k < BLK; k++) t[k] = p[k] * s[k];
    for (int k = 0; k < BLK; k++) t[k] = xv[k] >= EXP_LO ? t[k] : 0.0f;
    for (int k = 0; k < BLK; k++) t[k] = xv[k] != xv[k] ? xv[k] : t[k];
    memcpy(e, t, sizeof t);
}

/* 1 / (1 + e^-v) without overflow: with e = e^-|v| in (0, 1], v >= 0 gives 1 / (1 + e) and
   v < 0 gives e / (1 + e), so tiny results keep their relative accuracy instead of coming out of
   1 - s.  The numerator max(e, [v >= 0]) picks between the two without a branch. */
static inline void sigmoid_blk(const float *x, float *y, const act_par *par) {
    float v[BLK], a[BLK], e[BLK], num[BLK];
    (void)par;
    for (int k = 0; k < BLK; k++) v[k] = x[k];
    for (int k = 0; k < BLK; k++) a[k] = -fabsf(v[k]);
    exp_nonpos_blk(a, e);
    for (int k = 0; k < BLK; k++) num[k] = (float)(v[k] >= 0.0f);
    for (int k = 0; k < BLK; k++) num[k] = num[k] < e[k] ? e[k] : num[k];
    for (int k = 0; k < BLK; k++) y[k] = num[k] / (1.0f + e[k]);
}

/* Cephes tanhf: an odd polynomial below |v| = 0.625, else (1 - z) / (1 + z) with z = e^-2|v|,
   which has no cancellation there (z <= 0.29) and saturates cleanly to +-1. */
static inline void tanh_blk(const float *x, float *y, const act_par *par) {
    float v[BLK], a[BLK], z[BLK], big[BLK], small[BLK];
    (void)par;
    for (int k = 0; k < BLK; k++) v[k] = x[k];
    for (int k = 0; k < BLK; k++) a[k] = -2.0f * fabsf(v[k]);
    exp_nonpos_blk(a, z);
    for (int k = 0; k < BLK; k++) big[k] = copysignf((1.0f - z[k]) / (1.0f + z[k]), v[k]);
    for (int k = 0; k < BLK; k++) {
        float t = v[k] * v[k];
        float q = -5.70498872745e-3f;
        q = q * t + 2.06390887954e-2f;
        q = q * t - 5.37397155531e-2f;
        q = q * t + 1.33314422036e-1f;
        q = q * t - 3.33332819422e-1f;
        /* v (1 + q t) has v's sign; copysign keeps it for -0, where the sum would give +0. */
        small[k] = copysignf(q * t * v[k] + v[k], v[k]);
    }
    for (int k = 0; k < BLK; k++) y[k] = fabsf(v[k]) < 0.625f ? small[k] : big[k];
}

/* erf(v) as Eigen's rational approximation: odd degree-13 over even degree-8 polynomial on
   [-4, 4]; outside, erf is +-1 in float. */
static inline void erf_blk(const float *x, float *y) {
    float xv[BLK], v[BLK], p[BLK], q[BLK], t2[BLK], t[BLK];
    memcpy(xv, x, sizeof xv);
    for (int k = 0; k < BLK; k++) v[k] = xv[k] < 4.0f ? xv[k] : 4.0f;
    for (int k = 0; k < BLK; k++) v[k] = v[k] > -4.0f ? v[k] : -4.0f;
    for (int k = 0; k < BLK; k++) t2[k] = v[k] * v[k];
    for (int k = 0; k < BLK; k++) {
        float w = t2[k], n = -2.72614225801306e-10f;
        n = n * w + 2.77068142495902e-08f;
        n = n * w - 2.10102402082508e-06f;
        n = n * w - 5.69250639462346e-05f;
        n = n * w - 7.34990630326855e-04f;
        n = n * w - 2.95459980854025e-03f;
        n = n * w - 1.60960333262415e-02f;
        p[k] = n * v[k];
    }
    for (int k = 0; k < BLK; k++) {
        float w = t2[k], d = -1.45660718464996e-05f;
        d = d * w - 2.13374055278905e-04f;
        d = d * w - 1.68282697438203e-03f;
        d = d * w - 7.37332916720468e-03f;
        q[k] = d * w - 1.42647390514189e-02f;
    }
    for (int k = 0; k < BLK; k++) t[k] = p[k] / q[k];
    /* The clamps above map NaN to -4: restore it. */
    for (int k = 0; k < BLK; k++) t[k] = xv[k] != xv[k] ? xv[k] : t[k];
    memcpy(y, t, sizeof t);
}

/* ---- element-wise activations ---------------------------------------------------------- */

static inline void relu_blk(const float *x, float *y, const act_par *par) {
    float t[BLK];
    (void)par;
    /* "v < 0" rather than "v > 0" so that NaN propagates, as NumPy's maximum(x, 0) does. */
    for (int k = 0; k < BLK; k++) t[k] = x[k] < 0.0f ? 0.0f : x[k];
    for (int k = 0; k < BLK; k++) y[k] = t[k];
}

/* ONNX: Min(max, Max(x, min)), so min > max yields max everywhere; NaN propagates. */
static inline void clip_blk(const float *x, float *y, const act_par *par) {
    float t[BLK], lo = par->lo, hi = par->hi;
    for (int k = 0; k < BLK; k++) t[k] = x[k] < lo ? lo : x[k];
    for (int k = 0; k < BLK; k++) t[k] = t[k] > hi ? hi : t[k];
    for (int k = 0; k < BLK; k++) y[k] = t[k];
}

/* max(v, 0) + alpha * min(v, 0): two min/max passes instead of a select between computed
   values, which gcc does not vectorize. */
static inline void leaky_relu_blk(const float *x, float *y, const act_par *par) {
    float p[BLK], q[BLK], alpha = par->alpha;
    for (int k = 0; k < BLK; k++) p[k] = x[k] < 0.0f ? 0.0f : x[k];
    for (int k = 0; k < BLK; k++) q[k] = x[k] > 0.0f ? 0.0f : x[k];
    for (int k = 0; k < BLK; k++) y[k] = p[k] + alpha * q[k];
}

static inline void hard_sigmoid_blk(const float *x, float *y, const act_par *par) {
    float t[BLK];
    for (int k = 0; k < BLK; k++) t[k] = par->alpha * x[k] + par->beta;
    for (int k = 0; k < BLK; k++) t[k] = t[k] < 0.0f ? 0.0f : t[k];
    for (int k = 0; k < BLK; k++) t[k] = t[k] > 1.0f ? 1.0f : t[k];
    for (int k = 0; k < BLK; k++) y[k] = t[k];
}

/* x * HardSigmoid(x) with alpha 1/6, beta 0.5 (ONNX HardSwish). */
static inline void hard_swish_blk(const float *x, float *y, const act_par *par) {
    float v[BLK], t[BLK];
    (void)par;
    for (int k = 0; k < BLK; k++) v[k] = x[k];
    for (int k = 0; k < BLK; k++) t[k] = v[k] * (1.0f / 6.0f) + 0.5f;
    for (int k = 0; k < BLK; k++) t[k] = t[k] < 0.0f ? 0.0f : t[k];
    for (int k = 0; k < BLK; k++) t[k] = t[k] > 1.0f ? 1.0f : t[k];
    for (int k = 0; k < BLK; k++) y[k] = v[k] * t[k];
}

#define SQRT1_2 0.70710678118654752440f
#define SQRT1_2_D 0.70710678118654752440
#define SQRT_2_OVER_PI 0.79788456080286535588f

/* Below this, 1 + erf(v / sqrt 2) loses relative accuracy to cancellation (measured max
   relative error of the vector path: 5e-6 on [-2, -1.5), 2e-5 on [-2.5, -2)).  About 2% of
   N(0, 1) inputs fall below it. */
#define GELU_TAIL -2.0f

/* 0.5 v (1 + erf(v / sqrt 2)).  The rare elements in the negative tail are recomputed as
   0.5 v erfc(-v / sqrt 2) with libm, so every output keeps float relative accuracy while
   blocks without such elements (nearly all of them) stay vectorized.  That is done in double:
   erfc(z) amplifies the rounding of z = v / sqrt 2 by 2 z^2 (80 at v = -9). */
static inline void gelu_erf_blk(const float *x, float *y, const act_par *par) {
    float v[BLK], u[BLK], e[BLK], t[BLK];
    (void)par;
    memcpy(v, x, sizeof v);
    for (int k = 0; k < BLK; k++) u[k] = v[k] * SQRT1_2;
    erf_blk(u, e);
    for (int k = 0; k < BLK; k++) t[k] = 0.5f * v[k] * (1.0f + e[k]);
    /* Starting from 0, not v[0]: a NaN v[0] would stick (every v < NaN is false) and hide the
       block's tail elements. */
    float mn = 0.0f;
    for (int k = 0; k < BLK; k++) mn = v[k] < mn ? v[k] : mn;
    if (mn < GELU_TAIL)
        for (int k = 0; k < BLK; k++)
            if (v[k] < GELU_TAIL) t[k] = (float)(0.5 * v[k] * erfc(-(double)v[k] * SQRT1_2_D));
    memcpy(y, t, sizeof t);
}

/* 0.5 v (1 + tanh(u)) == v * sigmoid(2u): no cancellation for large negative v. */
static inline void gelu_tanh_blk(const float *x, float *y, const act_par *par) {
    float v[BLK], u[BLK], s[BLK];
    for (int k = 0; k < BLK; k++) v[k] = x[k];
    for (int k = 0; k < BLK; k++) u[k] = 2.0f * SQRT_2_OVER_PI * (v[k] + 0.044715f * v[k] * v[k] * v[k]);
    sigmoid_blk(u, s, par);
    for (int k = 0; k < BLK; k++) y[k] = v[k] * s[k];
}

static bool finitef(float v) { return isfinite(v) != 0; }

static mdl_status unary_prepare(mdl__kctx *c) {
    mdl_status st = mdl__check_unary_f32(c);
    if (st) return st;
    const mdl__tensor *x = c->in[0];
    const mdl_act_options *a = &c->opt->act;
    switch (c->op) {
    case MDL_OP_CLIP:
        /* +-inf bounds are the defaults (no clipping on that side); NaN has no meaning. */
        if (isnan(a->min) || isnan(a->max))
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "clip bounds min %g, max %g must not be NaN",
                             (double)a->min, (double)a->max);
        break;
    case MDL_OP_LEAKY_RELU:
        if (!finitef(a->alpha))
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "alpha %g is not finite", (double)a->alpha);
        break;
    case MDL_OP_HARD_SIGMOID:
        if (!finitef(a->alpha) || !finitef(a->beta))
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "alpha %g and beta %g must be finite",
                             (double)a->alpha, (double)a->beta);
        break;
    default: break;
    }
    mdl__shape_of(&c->out_shape[0], x);
    return MDL_OK;
}

/* One run function per activation; options are read only by the ops whose kind is ACT. */
#define UNARY_RUN(name, FN, ACT_OPTS)                                                              \
    static mdl_status name##_run(mdl__kctx *c) {                                                   \
        act_par par = {0, 0, 0, 0};                                                                \
        if (ACT_OPTS) {                                                                            \
            const mdl_act_options *a = &c->opt->act;                                               \
            par = (act_par){a->alpha, a->beta, a->min, a->max};                                    \
        }                                                                                          \
        const float *x = c->in_data[0];                                                            \
        float *y = c->out_data[0];                                                                 \
        int64_t n = c->in[0]->count;                                                               \
        MAP_BLOCKS(FN, x, y, n, &par);                                                             \
        return MDL_OK;                                                                             \
    }

UNARY_RUN(relu, relu_blk, false)
UNARY_RUN(clip, clip_blk, true)
UNARY_RUN(leaky_relu, leaky_relu_blk, true)
UNARY_RUN(hard_sigmoid, hard_sigmoid_blk, true)

void mdl__act_f32v_ref(mdl__vfn f, const float *x, float *y, int64_t n) {
    act_par par = {0, 0, 0, 0};
    switch (f) {
    case MDL__VF_SIGMOID: MAP_BLOCKS(sigmoid_blk, x, y, n, &par); break;
    case MDL__VF_TANH: MAP_BLOCKS(tanh_blk, x, y, n, &par); break;
    case MDL__VF_GELU_ERF: MAP_BLOCKS(gelu_erf_blk, x, y, n, &par); break;
    case MDL__VF_GELU_TANH: MAP_BLOCKS(gelu_tanh_blk, x, y, n, &par); break;
    case MDL__VF_HARD_SWISH: MAP_BLOCKS(hard_swish_blk, x, y, n, &par); break;
    default: break;
    }
}

typedef void (*vec_fn)(const float *x, float *y, int64_t n);

/* The SIMD form of f for this CPU, NULL where the portable code runs. */
static vec_fn vec_variant(mdl__vfn f) {
#ifdef MDL_HAVE_X86_SIMD
    static const vec_fn v512[MDL__VF_COUNT] = {
        [MDL__VF_SIGMOID] = mdl__sigmoid_f32v_avx512,
        [MDL__VF_TANH] = mdl__tanh_f32v_avx512,
        [MDL__VF_GELU_ERF] = mdl__gelu_erf_f32v_avx512,
        [MDL__VF_GELU_TANH] = mdl__gelu_tanh_f32v_avx512,
        [MDL__VF_HARD_SWISH] = mdl__hard_swish_f32v_avx512,
    };
    static const vec_fn v2[MDL__VF_COUNT] = {
        [MDL__VF_SIGMOID] = mdl__sigmoid_f32v_avx2,
        [MDL__VF_TANH] = mdl__tanh_f32v_avx2,
        [MDL__VF_GELU_ERF] = mdl__gelu_erf_f32v_avx2,
        [MDL__VF_GELU_TANH] = mdl__gelu_tanh_f32v_avx2,
        [MDL__VF_HARD_SWISH] = mdl__hard_swish_f32v_avx2,
    };
    int level = mdl__cpu_level();
    if (level >= MDL_CPU_AVX512) return v512[f];
    if (level >= MDL_CPU_AVX2) return v2[f];
#endif
    (void)f;
    return NULL;
}

static void act_f32v(mdl__vfn f, const float *x, float *y, int64_t n) {
    vec_fn v = vec_variant(f);
    if (v) v(x, y, n);
    else mdl__act_f32v_ref(f, x, y, n);
}

#define VEC_RUN(name, F)                                                                           \
    static mdl_status name##_run(mdl__kctx *c) {                                                   \
        act_f32v(F, c->in_data[0], c->out_data[0], c->in[0]->count);                               \
        return MDL_OK;                                                                             \
    }

VEC_RUN(sigmoid, MDL__VF_SIGMOID)
VEC_RUN(tanh, MDL__VF_TANH)
VEC_RUN(hard_swish, MDL__VF_HARD_SWISH)

/* ERF: libm's erff, element by element.  erf_blk's rational approximation (4e-7 absolute,
   7 ulp near |x| = 3.3) is good enough inside GELU, where x (1 + erf) hides it, but a bare Erf
   should be as accurate as the platform's erff (tests/ops/test_nn_ops.c measures it against
   double erf: max 1 ulp with glibc).  A standalone Erf is rare in exported models (the GELU
   fusion consumes the usual one), so the scalar call's cost does not matter. */
static mdl_status erf_run(mdl__kctx *c) {
    const float *x = c->in_data[0];
    float *y = c->out_data[0];
    for (int64_t i = 0, n = c->in[0]->count; i < n; i++) y[i] = erff(x[i]);
    return MDL_OK;
}

static mdl_status gelu_run(mdl__kctx *c) {
    act_f32v(c->opt->act.approximate ? MDL__VF_GELU_TANH : MDL__VF_GELU_ERF, c->in_data[0],
             c->out_data[0], c->in[0]->count);
    return MDL_OK;
}

const mdl__kernel mdl__relu_f32 = {.prepare = unary_prepare, .run = relu_run};
const mdl__kernel mdl__clip_f32 = {.prepare = unary_prepare, .run = clip_run};
const mdl__kernel mdl__leaky_relu_f32 = {.prepare = unary_prepare, .run = leaky_relu_run};
const mdl__kernel mdl__sigmoid_f32 = {.prepare = unary_prepare, .run = sigmoid_run};
const mdl__kernel mdl__tanh_f32 = {.prepare = unary_prepare, .run = tanh_run};
const mdl__kernel mdl__hard_sigmoid_f32 = {.prepare = unary_prepare, .run = hard_sigmoid_run};
const mdl__kernel mdl__hard_swish_f32 = {.prepare = unary_prepare, .run = hard_swish_run};
const mdl__kernel mdl__gelu_f32 = {.prepare = unary_prepare, .run = gelu_run};
const mdl__kernel mdl__erf_f32 = {.prepare = unary_prepare, .run = erf_run};

/* ---- softmax / log-softmax ------------------------------------------------------------- */

/* The tensor seen as [outer, n, inner] around the softmax axis. */
typedef struct sm_geom {
    int64_t outer, n, inner;
} sm_geom;

static void sm_geometry(const mdl__tensor *x, int32_t axis, sm_geom *g) {
    g->outer = g->inner = 1;
    for (int32_t d = 0; d < axis; d++) g->outer *= x->dims[d];
    g->n = x->dims[axis];
    for (int32_t d = axis + 1; d < x->rank; d++) g->inner *= x->dims[d];
}

static mdl_status softmax_prepare(mdl__kctx *c) {
    mdl_status st = mdl__check_unary_f32(c);
    if (st) return st;
    const mdl__tensor *x = c->in[0];
    int32_t axis;
    if (!mdl__axis(c->opt->axis.axis, x->rank, &axis))
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "axis %d is out of range for rank %d",
                         (int)c->opt->axis.axis, (int)x->rank);
    sm_geom g;
    sm_geometry(x, axis, &g);
    /* A strided axis is processed a whole [n, inner] slab at a time, keeping a running max and
       sum per inner position so every inner loop stays contiguous. */
    c->scratch_bytes = g.inner > 1 ? (size_t)g.inner * (sizeof(double) + 2 * sizeof(float)) : 0;
    mdl__shape_of(&c->out_shape[0], x);
    return MDL_OK;
}

/* Max of a contiguous row: BLK running maxima so the loop vectorizes. */
static float max_contig(const float *x, int64_t n) {
    float m[BLK];
    int64_t i = 0;
    for (int k = 0; k < BLK; k++) m[k] = x[0];
    for (; i + BLK <= n; i += BLK)
        for (int k = 0; k < BLK; k++) m[k] = x[i + k] > m[k] ? x[i + k] : m[k];
    float r = m[0];
    for (int k = 1; k < BLK; k++) r = m[k] > r ? m[k] : r;
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

/* e[0..n) = exp(x - m), with m one value (mrow NULL) or one per element (mrow).  Writes e to out
   when out != NULL and adds it into the sums: *rsum for a row (mrow NULL; BLK float lanes
   flushed into the double every block), esum[i] per element otherwise. */
void mdl__exp_shift_ref(const float *x, float m, const float *mrow, float *out, double *rsum,
                        float *esum, int64_t n) {
    for (int64_t i = 0; i < n; i += BLK) {
        int64_t r = n - i < BLK ? n - i : BLK;
        float d[BLK], e[BLK];
        if (r == BLK) {
            if (mrow) for (int k = 0; k < BLK; k++) d[k] = x[i + k] - mrow[i + k];
            else for (int k = 0; k < BLK; k++) d[k] = x[i + k] - m;
        } else {
            /* Tail: pad with -inf, whose exp is 0. */
            for (int k = 0; k < BLK; k++) d[k] = -INFINITY;
            for (int64_t k = 0; k < r; k++) d[k] = x[i + k] - (mrow ? mrow[i + k] : m);
        }
        exp_nonpos_blk(d, e);
        if (out) memcpy(out + i, e, (size_t)r * sizeof(float));
        if (mrow && r == BLK) {
            for (int k = 0; k < BLK; k++) esum[i + k] += e[k];
        } else if (mrow) {
            for (int64_t k = 0; k < r; k++) esum[i + k] += e[k];
        } else {
            float sb = 0;
            for (int k = 0; k < BLK; k++) sb += e[k];
            *rsum += (double)sb;
        }
    }
}

/* y[i] = x[i] * a[i] (a per element) or x[i] * a0, blocked. */
static void scale_row(const float *x, float a0, const float *a, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + BLK <= n; i += BLK) {
        float t[BLK];
        if (a) for (int k = 0; k < BLK; k++) t[k] = x[i + k] * a[i + k];
        else for (int k = 0; k < BLK; k++) t[k] = x[i + k] * a0;
        memcpy(y + i, t, sizeof t);
    }
    for (; i < n; i++) y[i] = x[i] * (a ? a[i] : a0);
}

/* y[i] = (x[i] - m) - l with m, l one value each or (mr, lr) per element, blocked. */
static void log_row(const float *x, float m, const float *mr, float l, const float *lr, float *y,
                    int64_t n) {
    int64_t i = 0;
    for (; i + BLK <= n; i += BLK) {
        float t[BLK];
        if (mr) for (int k = 0; k < BLK; k++) t[k] = (x[i + k] - mr[i + k]) - lr[i + k];
        else for (int k = 0; k < BLK; k++) t[k] = (x[i + k] - m) - l;
        memcpy(y + i, t, sizeof t);
    }
    for (; i < n; i++) y[i] = mr ? (x[i] - mr[i]) - lr[i] : (x[i] - m) - l;
}

typedef void (*exp_shift_fn)(const float *x, float m, const float *mrow, float *out, double *rsum,
                             float *esum, int64_t n);

/* mdl__exp_shift_ref or its SIMD form for this CPU (contract in x86/activation_x86.h). */
static exp_shift_fn exp_shift_variant(void) {
#ifdef MDL_HAVE_X86_SIMD
    int level = mdl__cpu_level();
    if (level >= MDL_CPU_AVX512) return mdl__exp_shift_avx512;
    if (level >= MDL_CPU_AVX2) return mdl__exp_shift_avx2;
#endif
    return mdl__exp_shift_ref;
}

/* One contiguous row.  Subtracting the row max makes every exponent <= 0: no overflow, and the
   largest term is exactly 1 so the sum is >= 1. */
static void softmax_row(exp_shift_fn exp_shift, const float *x, float *y, int64_t n,
                        bool log_out) {
    float m = max_contig(x, n);
    double sum = 0;
    /* LogSoftmax needs x again in the last pass (y may be x): do not store the exponentials. */
    exp_shift(x, m, NULL, log_out ? NULL : y, &sum, NULL, n);
    if (log_out) log_row(x, m, NULL, (float)log(sum), NULL, y, n);
    else scale_row(y, (float)(1.0 / sum), NULL, y, n);
}

/* Rows of a strided slab whose exponentials are summed in float before being flushed into the
   double sums: accurate (at most SUM_ROWS terms of <= 1 per float sum) and cheap where double
   is slow (soft-float on Cortex-M4). */
#define SUM_ROWS 64

/* One [n, inner] slab with a strided axis: the same passes vectorized across the inner
   positions.  Scratch rows, inner long each: sm (double sums), fs (float partial sums, later the
   logs of the sums), mx (max). */
static void softmax_slab(exp_shift_fn exp_shift, const float *x, float *y, int64_t n,
                         int64_t inner, bool log_out, double *sm, float *fs, float *mx) {
    memcpy(mx, x, (size_t)inner * sizeof(float));
    for (int64_t s = 0; s < inner; s++) {
        sm[s] = 0.0;
        fs[s] = 0.0f;
    }
    for (int64_t i = 1; i < n; i++) {
        const float *r = x + i * inner;
        int64_t s = 0;
        for (; s + BLK <= inner; s += BLK) {
            float t[BLK];
            for (int k = 0; k < BLK; k++) t[k] = r[s + k] > mx[s + k] ? r[s + k] : mx[s + k];
            memcpy(mx + s, t, sizeof t);
        }
        for (; s < inner; s++) mx[s] = r[s] > mx[s] ? r[s] : mx[s];
    }
    for (int64_t i = 0; i < n; i++) {
        exp_shift(x + i * inner, 0, mx, log_out ? NULL : y + i * inner, NULL, fs, inner);
        if ((i + 1) % SUM_ROWS == 0 || i == n - 1)
            for (int64_t s = 0; s < inner; s++) {
                sm[s] += (double)fs[s];
                fs[s] = 0.0f;
            }
    }
    if (log_out) {
        for (int64_t s = 0; s < inner; s++) fs[s] = (float)log(sm[s]);
        for (int64_t i = 0; i < n; i++) log_row(x + i * inner, 0, mx, 0, fs, y + i * inner, inner);
    } else {
        /* Softmax no longer needs the max: mx is reused for the reciprocal of the sum. */
        for (int64_t s = 0; s < inner; s++) mx[s] = (float)(1.0 / sm[s]);
        for (int64_t i = 0; i < n; i++) scale_row(y + i * inner, 0, mx, y + i * inner, inner);
    }
}

static mdl_status softmax_common(mdl__kctx *c, bool log_out) {
    int32_t axis = 0;
    mdl__axis(c->opt->axis.axis, c->in[0]->rank, &axis); /* validated by prepare */
    sm_geom g;
    sm_geometry(c->in[0], axis, &g);
    const float *x = c->in_data[0];
    float *y = c->out_data[0];
    if (g.n == 0 || g.inner == 0) return MDL_OK;
    exp_shift_fn exp_shift = exp_shift_variant();
    int64_t slab = g.n * g.inner;
    if (g.inner == 1) {
        for (int64_t o = 0; o < g.outer; o++)
            softmax_row(exp_shift, x + o * slab, y + o * slab, g.n, log_out);
    } else {
        double *sm = c->scratch; /* doubles first: the scratch is 16-byte aligned */
        float *fs = (float *)(sm + g.inner), *mx = fs + g.inner;
        for (int64_t o = 0; o < g.outer; o++)
            softmax_slab(exp_shift, x + o * slab, y + o * slab, g.n, g.inner, log_out, sm, fs, mx);
    }
    return MDL_OK;
}

static mdl_status softmax_run(mdl__kctx *c) { return softmax_common(c, false); }
static mdl_status log_softmax_run(mdl__kctx *c) { return softmax_common(c, true); }

const mdl__kernel mdl__softmax_f32 = {.prepare = softmax_prepare, .run = softmax_run};
const mdl__kernel mdl__log_softmax_f32 = {.prepare = softmax_prepare, .run = log_softmax_run};

/* Shared with other kernels (LSTM/GRU gates): the same vector math as the Sigmoid/Tanh ops. */
void mdl__sigmoid_f32v(const float *x, float *y, int64_t n) { act_f32v(MDL__VF_SIGMOID, x, y, n); }

void mdl__tanh_f32v(const float *x, float *y, int64_t n) { act_f32v(MDL__VF_TANH, x, y, n); }
