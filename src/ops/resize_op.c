/* Float32 Resize (ONNX Resize over the two spatial dims) on NHWC X [N, H, W, C]: nearest (with
   round_prefer_floor / round_prefer_ceil / floor / ceil) and bilinear, coordinate transforms
   half_pixel, asymmetric, align_corners and pytorch_half_pixel (see mdl_resize_options).

   Source coordinates are computed in double from ONNX's real-number definition, with the scale
   out / in (exactly, not its float rounding) when the output size was given: nearest then picks
   the pixel ONNX (and ONNX Runtime) picks on exact ties such as x / (4/7) = 3.5.  Linear
   interpolation clamps the source coordinate to [0, in - 1] (ONNX's edge padding of the
   neighbours gives the same values).  The per-row and
   per-column source indices and weights are made once per run in scratch; the inner loop runs
   over the C contiguous channels. */
#include "ops.h"

#include <math.h>
#include <string.h>

typedef struct rz_tap {
    int32_t i0, i1;
    float w; /* weight of i1 (linear); nearest: i0 only */
} rz_tap;

/* Output length along spatial dim d; INT32_MAX + 1 for any length beyond int32 (the double is
   not converted when out of range: that is undefined). */
static int64_t out_len(const mdl_resize_options *o, int d, int64_t in) {
    if (o->out[d] > 0) return o->out[d];
    const double v = floor((double)in * (double)o->scale[d]);
    return v > (double)INT32_MAX ? (int64_t)INT32_MAX + 1 : (int64_t)v;
}

static mdl_status rz_prepare(mdl__kctx *c) {
    char s1[64];
    if (mdl__check_unary_f32(c)) return mdl__check_unary_f32(c);
    const mdl__tensor *x = c->in[0];
    const mdl_resize_options *o = &c->opt->resize;
    if (x->rank != 4)
        return mdl__fail(c, MDL_SHAPE, "input %s: need NHWC [N, H, W, C]",
                         mdl__dims_str(s1, sizeof s1, x->rank, x->dims));
    if ((unsigned)o->mode >= MDL_RESIZE_MODE_COUNT || (unsigned)o->coord >= MDL_RESIZE_COORD_COUNT ||
        (unsigned)o->nearest >= MDL_RESIZE_NEAREST_COUNT)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "unknown mode %d/%d/%d", (int)o->mode,
                         (int)o->coord, (int)o->nearest);
    for (int d = 0; d < 2; d++)
        if (!(o->scale[d] > 0.0f) || isinf(o->scale[d]) || o->out[d] < 0)
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "scale %g / size %d must be > 0",
                             (double)o->scale[d], (int)o->out[d]);
    mdl__shape_of(&c->out_shape[0], x);
    int64_t oh = out_len(o, 0, x->dims[1]), ow = out_len(o, 1, x->dims[2]);
    if (oh > INT32_MAX || ow > INT32_MAX || x->dims[1] > INT32_MAX || x->dims[2] > INT32_MAX)
        return mdl__fail(c, MDL_SHAPE, "output %lldx%lld is too large", (long long)oh, (long long)ow);
    c->out_shape[0].dims[1] = oh;
    c->out_shape[0].dims[2] = ow;
    c->scratch_bytes = (size_t)(oh + ow) * sizeof(rz_tap);
    return MDL_OK;
}

static double src_coord(mdl_resize_coord m, int64_t xo, double scale, int64_t in, int64_t out) {
    switch (m) {
    case MDL_RESIZE_ASYMMETRIC: return (double)xo / scale;
    case MDL_RESIZE_ALIGN_CORNERS: return out == 1 ? 0.0 : (double)xo * (double)(in - 1) / (double)(out - 1);
    case MDL_RESIZE_PYTORCH_HALF_PIXEL: return out > 1 ? ((double)xo + 0.5) / scale - 0.5 : 0.0;
    case MDL_RESIZE_HALF_PIXEL:
    default: return ((double)xo + 0.5) / scale - 0.5;
    }
}

static void make_taps(const mdl_resize_options *o, int d, int64_t in, int64_t out, rz_tap *t) {
    double scale = o->out[d] > 0 ? (double)o->out[d] / (double)in : (double)o->scale[d];
    for (int64_t k = 0; k < out; k++) {
        double x = src_coord(o->coord, k, scale, in, out);
        if (o->mode == MDL_RESIZE_NEAREST) {
            double f = floor(x), r;
            switch (o->nearest) {
            case MDL_RESIZE_FLOOR: r = f; break;
            case MDL_RESIZE_CEIL: r = ceil(x); break;
            case MDL_RESIZE_ROUND_PREFER_CEIL: r = x - f >= 0.5 ? f + 1.0 : f; break;
            default: r = x - f > 0.5 ? f + 1.0 : f; break;
            }
            int64_t i = r < 0.0 ? 0 : (r > (double)(in - 1) ? in - 1 : (int64_t)r);
            t[k] = (rz_tap){(int32_t)i, (int32_t)i, 0.0f};
        } else {
            if (!(x > 0.0)) x = 0.0; /* NaN cannot occur: scale > 0 and finite */
            if (x > (double)(in - 1)) x = (double)(in - 1);
            int64_t i0 = (int64_t)x, i1 = i0 + 1 < in ? i0 + 1 : in - 1;
            t[k] = (rz_tap){(int32_t)i0, (int32_t)i1, (float)(x - (double)i0)};
        }
    }
}

static mdl_status rz_run(mdl__kctx *c) {
    const mdl__tensor *xt = c->in[0];
    const mdl_resize_options *o = &c->opt->resize;
    int64_t N = xt->dims[0], H = xt->dims[1], W = xt->dims[2], C = xt->dims[3];
    int64_t OH = out_len(o, 0, H), OW = out_len(o, 1, W);
    if (!N || !C || !OH || !OW) return MDL_OK;
    rz_tap *ty = c->scratch, *tx = ty + OH;
    make_taps(o, 0, H, OH, ty);
    make_taps(o, 1, W, OW, tx);
    const float *x = c->in_data[0];
    float *y = c->out_data[0];
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * H * W * C;
        for (int64_t oy = 0; oy < OH; oy++) {
            const float *r0 = xn + ty[oy].i0 * W * C, *r1 = xn + ty[oy].i1 * W * C;
            float wy = ty[oy].w;
            float *yr = y + ((n * OH + oy) * OW) * C;
            for (int64_t ox = 0; ox < OW; ox++) {
                float *yp = yr + ox * C;
                if (o->mode == MDL_RESIZE_NEAREST) {
                    memcpy(yp, r0 + tx[ox].i0 * C, (size_t)C * sizeof(float));
                    continue;
                }
                const float *p00 = r0 + tx[ox].i0 * C, *p01 = r0 + tx[ox].i1 * C;
                const float *p10 = r1 + tx[ox].i0 * C, *p11 = r1 + tx[ox].i1 * C;
                float wx = tx[ox].w, ax = 1.0f - wx, ay = 1.0f - wy;
                for (int64_t k = 0; k < C; k++)
                    yp[k] = ay * (ax * p00[k] + wx * p01[k]) + wy * (ax * p10[k] + wx * p11[k]);
            }
        }
    }
    return MDL_OK;
}

const mdl__kernel mdl__resize_f32 = {.prepare = rz_prepare, .run = rz_run};
