/* Float32 BatchNormalization (inference): X [..., C] channels last, scale/bias/mean/var [C],
   y = (x - mean) / sqrt(var + epsilon) * scale + bias.

   The converter normally folds BatchNorm into the preceding convolution; this kernel covers the
   rest.  The affine form y = x * mul[c] + add[c] is computed per run into scratch: the
   parameters may be activations, and even constant ones live in model memory, which is
   read-only (possibly flash), so there is nowhere else to keep it.  That costs O(C) per run
   against O(count) for the body. */
#include "ops.h"

#include <math.h>
#include <string.h>

#define BLK 8

/* With few channels (e.g. 3) the per-row loop would be tiny, so mul/add are repeated k times
   in scratch and k rows run as one contiguous stretch of tile_len elements. */
#define TILE_TARGET 64

static int64_t tile_len(int64_t C, int64_t count) {
    if (C <= 0) return 0;
    int64_t rows = count / C, k = C < TILE_TARGET / 2 ? TILE_TARGET / C : 1;
    if (k > rows) k = rows > 0 ? rows : 1;
    return k * C;
}

static mdl_status bn_prepare(mdl__kctx *c) {
    static const char *const names[5] = {"X", "scale", "bias", "mean", "var"};
    char s1[64], s2[64];
    if (c->nin != 5 || c->nout != 1)
        return mdl__fail(c, MDL_INVALID_ARGUMENT,
                         "expects inputs X, scale, bias, mean, var and one output, got %d inputs "
                         "and %d outputs",
                         c->nin, c->nout);
    for (int i = 0; i < 5; i++) {
        if (!c->in[i]) return mdl__fail(c, MDL_INVALID_ARGUMENT, "input %s is missing", names[i]);
        if (c->in[i]->dtype != MDL_DTYPE_FLOAT32)
            return mdl__fail(c, MDL_DTYPE, "float32 kernel got %s %s", mdl_dtype_name(c->in[i]->dtype),
                             names[i]);
    }
    const mdl__tensor *x = c->in[0];
    if (x->rank < 1)
        return mdl__fail(c, MDL_SHAPE, "input X is a scalar; need [..., C]");
    int64_t C = x->dims[x->rank - 1];
    for (int i = 1; i < 5; i++) {
        const mdl__tensor *t = c->in[i];
        if (t->rank != 1 || t->dims[0] != C)
            return mdl__fail(c, MDL_SHAPE, "%s has shape %s, input %s has %lld channels (last dim)",
                             names[i], mdl__dims_str(s1, sizeof s1, t->rank, t->dims),
                             mdl__dims_str(s2, sizeof s2, x->rank, x->dims), (long long)C);
    }
    float eps = c->opt->batch_norm.epsilon;
    if (!(eps >= 0.0f) || isinf(eps))
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "epsilon %g must be finite and >= 0",
                         (double)eps);
    mdl__shape_of(&c->out_shape[0], x);
    c->scratch_bytes = (size_t)tile_len(C, x->count) * 2 * sizeof(float);
    return MDL_OK;
}

static void affine_row(const float *x, float *y, const float *mul, const float *add, int64_t n) {
    int64_t i = 0;
    for (; i + BLK <= n; i += BLK) {
        float t[BLK];
        for (int k = 0; k < BLK; k++) t[k] = x[i + k] * mul[i + k] + add[i + k];
        for (int k = 0; k < BLK; k++) y[i + k] = t[k];
    }
    for (; i < n; i++) y[i] = x[i] * mul[i] + add[i];
}

static mdl_status bn_run(mdl__kctx *c) {
    const float *x = c->in_data[0], *scale = c->in_data[1], *bias = c->in_data[2];
    const float *mean = c->in_data[3], *var = c->in_data[4];
    float *y = c->out_data[0];
    const mdl__tensor *xt = c->in[0];
    int64_t C = xt->dims[xt->rank - 1];
    if (C == 0 || xt->count == 0) return MDL_OK;
    int64_t rows = xt->count / C;
    double eps = c->opt->batch_norm.epsilon;
    int64_t L = tile_len(C, xt->count);
    float *mul = c->scratch, *add = mul + L;
    for (int64_t k = 0; k < C; k++) {
        /* In double, so both folded coefficients are correctly rounded floats. */
        double m = (double)scale[k] / sqrt((double)var[k] + eps);
        mul[k] = (float)m;
        add[k] = (float)((double)bias[k] - (double)mean[k] * m);
    }
    for (int64_t k = C; k < L; k++) {
        mul[k] = mul[k - C];
        add[k] = add[k - C];
    }
    int64_t total = rows * C, off = 0;
    for (; off + L <= total; off += L) affine_row(x + off, y + off, mul, add, L);
    affine_row(x + off, y + off, mul, add, total - off); /* the rest is whole rows, < L */
    return MDL_OK;
}

const mdl__kernel mdl__batch_norm_f32 = {.prepare = bn_prepare, .run = bn_run};

/* ---- LayerNormalization ------------------------------------------------------------------ */

/* X [..., C]; each row of C values: y = (x - mean) / sqrt(var + epsilon) * scale + bias, with
   var the biased variance (ONNX LayerNormalization over the last axis; the converter reshapes
   several trailing axes into one).  Inputs: X, scale [C] or absent, bias [C] or absent.
   Mean and variance are accumulated in float over BLK interleaved partial sums (vectorized),
   variance from the centred values (two passes, no cancellation). */
static mdl_status ln_prepare(mdl__kctx *c) {
    char s1[64], s2[64];
    if (c->nin < 1 || c->nin > 3 || c->nout != 1 || !c->in[0])
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects inputs X[, scale[, bias]] and one output");
    const mdl__tensor *x = c->in[0];
    if (x->rank < 1) return mdl__fail(c, MDL_SHAPE, "input X is a scalar; need [..., C]");
    int64_t C = x->dims[x->rank - 1];
    for (int i = 0; i < c->nin; i++) {
        const mdl__tensor *t = c->in[i];
        if (!t) continue;
        if (t->dtype != MDL_DTYPE_FLOAT32)
            return mdl__fail(c, MDL_DTYPE, "float32 kernel got %s input %d", mdl_dtype_name(t->dtype), i);
        if (i && (t->rank != 1 || t->dims[0] != C))
            return mdl__fail(c, MDL_SHAPE, "%s has shape %s, input %s has %lld channels (last dim)",
                             i == 1 ? "scale" : "bias", mdl__dims_str(s1, sizeof s1, t->rank, t->dims),
                             mdl__dims_str(s2, sizeof s2, x->rank, x->dims), (long long)C);
    }
    float eps = c->opt->batch_norm.epsilon;
    if (!(eps >= 0.0f) || isinf(eps))
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "epsilon %g must be finite and >= 0", (double)eps);
    mdl__shape_of(&c->out_shape[0], x);
    return MDL_OK;
}

static float row_sum(const float *x, int64_t n, float m) {
    float acc[BLK] = {0};
    int64_t i = 0;
    for (; i + BLK <= n; i += BLK)
        for (int k = 0; k < BLK; k++) acc[k] += x[i + k] - m;
    float s = 0;
    for (int k = 0; k < BLK; k++) s += acc[k];
    for (; i < n; i++) s += x[i] - m;
    return s;
}

static float row_sq(const float *x, int64_t n, float m) {
    float acc[BLK] = {0};
    int64_t i = 0;
    for (; i + BLK <= n; i += BLK)
        for (int k = 0; k < BLK; k++) acc[k] += (x[i + k] - m) * (x[i + k] - m);
    float s = 0;
    for (int k = 0; k < BLK; k++) s += acc[k];
    for (; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return s;
}

static mdl_status ln_run(mdl__kctx *c) {
    const mdl__tensor *xt = c->in[0];
    const float *x = c->in_data[0];
    const float *scale = c->nin > 1 && c->in[1] ? c->in_data[1] : NULL;
    const float *bias = c->nin > 2 && c->in[2] ? c->in_data[2] : NULL;
    float *y = c->out_data[0];
    int64_t C = xt->dims[xt->rank - 1];
    if (C == 0 || xt->count == 0) return MDL_OK;
    int64_t rows = xt->count / C;
    float eps = c->opt->batch_norm.epsilon;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float mean = row_sum(xr, C, 0.0f) / (float)C;
        float var = row_sq(xr, C, mean) / (float)C;
        float inv = 1.0f / sqrtf(var + eps);
        /* through a local block: y may alias nothing here, but gcc cannot know that */
        int64_t i = 0;
        for (; i + BLK <= C; i += BLK) {
            float t[BLK];
            for (int k = 0; k < BLK; k++) t[k] = (xr[i + k] - mean) * inv;
            if (scale)
                for (int k = 0; k < BLK; k++) t[k] *= scale[i + k];
            if (bias)
                for (int k = 0; k < BLK; k++) t[k] += bias[i + k];
            memcpy(yr + i, t, sizeof t);
        }
        for (; i < C; i++) {
            float t = (xr[i] - mean) * inv;
            if (scale) t *= scale[i];
            if (bias) t += bias[i];
            yr[i] = t;
        }
    }
    return MDL_OK;
}

const mdl__kernel mdl__layer_norm_f32 = {.prepare = ln_prepare, .run = ln_run};
