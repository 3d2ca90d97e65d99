/* Lowering of the transformer-era ONNX operators: Erf, LayerNormalization, Resize, Tile (see
   convert_host.h).  Hooked into mdl__cv_lower for operators its table does not have. */
#include "onnx_lower_host.h"

#include <math.h>
#include <string.h>

typedef const Onnx__NodeProto node_t;

static const int8_t NHWC[MDL_MAX_RANK] = {0, 2, 3, 1};

/* ---- Erf ------------------------------------------------------------------------------------ */

static mdl_status lower_erf(cv_ctx *c, const int32_t *in, const int32_t *out) {
    const cv_value *x = &c->vals[in[0]];
    if (c->ts[x->t].dtype != MDL_DTYPE_FLOAT32)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "input '%s' is %s (float32 only)", x->name,
                            mdl_dtype_name(c->ts[x->t].dtype));
    return mdl__cv_lower_unary(c, MDL_OP_ERF, in[0], out[0]);
}

/* ---- LayerNormalization ------------------------------------------------------------------- */

/* Scale or bias value v of a LayerNormalization normalizing nd trailing dims (dims) as a [inner]
   tensor: a constant is broadcast (unidirectionally, as ONNX allows) to the full trailing shape;
   a run-time one must already have that many elements in that shape. */
static int32_t ln_param(cv_ctx *c, int32_t v, const char *what, int32_t nd, const int64_t *dims,
                        int64_t inner) {
    const cv_value *p = &c->vals[v];
    int32_t pr = p->rank;
    int64_t pd[MDL_MAX_RANK];
    /* leading 1s carry nothing */
    int32_t skip = 0;
    while (pr - skip > nd && p->dims[skip] == 1) skip++;
    pr -= skip;
    memcpy(pd, p->dims + skip, sizeof(int64_t) * (size_t)pr);
    bool ok = pr <= nd;
    for (int32_t i = 0; ok && i < pr; i++) ok = pd[i] == 1 || pd[i] == dims[nd - pr + i];
    if (!ok) {
        mdl__cv_fail(c, MDL_SHAPE, "%s '%s' does not broadcast to the normalized dims", what, p->name);
        return -1;
    }
    if (c->ts[p->t].dtype != MDL_DTYPE_FLOAT32) {
        mdl__cv_fail(c, MDL_UNSUPPORTED, "%s '%s' is %s (float32 only)", what, p->name,
                     mdl_dtype_name(c->ts[p->t].dtype));
        return -1;
    }
    if (!mdl__cv_is_const(c, v)) {
        if (c->ts[p->t].count != inner) {
            mdl__cv_fail(c, MDL_UNSUPPORTED, "run-time %s '%s' must have the normalized dims' shape",
                         what, p->name);
            return -1;
        }
        int32_t t = mdl__cv_native(c, v);
        return t < 0 ? -1 : mdl__cv_reshape(c, t, 1, &inner);
    }
    const float *src = mdl__cv_data(c, v);
    float *buf = mdl__cv_alloc(c, (size_t)inner * sizeof(float));
    if (!buf) {
        mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory converting the model");
        return -1;
    }
    for (int64_t i = 0; i < inner; i++) {
        int64_t rem = i, si = 0, sstride = 1;
        for (int32_t d = nd - 1; d >= 0; d--) {
            int64_t idx = rem % dims[d];
            rem /= dims[d];
            int32_t pdim = d - (nd - pr);
            if (pdim >= 0) {
                if (pd[pdim] != 1) si += idx * sstride;
                sstride *= pd[pdim];
            }
        }
        buf[i] = src[si];
    }
    return mdl__cv_tensor(c, mdl__cv_fmt(c, "%s/%s", c->node_name, what), MDL_DTYPE_FLOAT32, 1, &inner, buf);
}

static mdl_status lower_layer_norm(cv_ctx *c, node_t *n, int nin, const int32_t *in, int nout,
                                   const int32_t *out) {
    for (int k = 1; k < nout && k < 3; k++)
        if (out[k] >= 0)
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "the %s output is not supported",
                                k == 1 ? "Mean" : "InvStdDev");
    if (mdl__cv_attr_int(n, "stash_type", 1) != 1)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "stash_type %lld (only 1, float, is supported)",
                            (long long)mdl__cv_attr_int(n, "stash_type", 1));
    const cv_value *x = &c->vals[in[0]];
    int32_t r = x->rank;
    int64_t axis = mdl__cv_attr_int(n, "axis", -1);
    if (axis < 0) axis += r;
    if (axis < 0 || axis >= r)
        return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "axis %lld out of range for rank %d",
                            (long long)mdl__cv_attr_int(n, "axis", -1), (int)r);
    if (c->ts[x->t].dtype != MDL_DTYPE_FLOAT32)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "input '%s' is %s (float32 only)", x->name,
                            mdl_dtype_name(c->ts[x->t].dtype));
    int32_t a = (int32_t)axis, nd = r - a;
    int64_t xdims[MDL_MAX_RANK], inner = 1;
    memcpy(xdims, x->dims, sizeof xdims);
    for (int32_t d = a; d < r; d++) inner *= xdims[d];
    mdl_op_options o = mdl_op_options_default(MDL_OP_LAYER_NORM);
    o.batch_norm.epsilon = mdl__cv_attr_float(n, "epsilon", 1e-5f);
    /* Scale may be absent only in a node made by the LayerNorm fusion (no affine part) */
    int32_t ins[3] = {mdl__cv_native(c, in[0]), -1, -1};
    if (ins[0] < 0) return mdl__cv_status(c);
    int64_t fd[MDL_MAX_RANK];
    memcpy(fd, xdims, sizeof fd);
    fd[a] = inner;
    if (nd > 1 && (ins[0] = mdl__cv_reshape(c, ins[0], a + 1, fd)) < 0) return mdl__cv_status(c);
    if (nin > 1 && in[1] >= 0 && (ins[1] = ln_param(c, in[1], "scale", nd, xdims + a, inner)) < 0)
        return mdl__cv_status(c);
    int nuse = 2;
    if (nin > 2 && in[2] >= 0) {
        if ((ins[2] = ln_param(c, in[2], "bias", nd, xdims + a, inner)) < 0) return mdl__cv_status(c);
        nuse = 3;
    }
    int32_t y = mdl__cv_emit1(c, MDL_OP_LAYER_NORM, "", nuse, ins, &o);
    if (y >= 0 && nd > 1) y = mdl__cv_reshape(c, y, r, xdims);
    return mdl__cv_bind_result(c, out[0], y, NULL);
}

/* ---- Resize ---------------------------------------------------------------------------------- */

static bool str_in(const char *s, const char *const *list, int n, int *idx) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, list[i])) {
            *idx = i;
            return true;
        }
    return false;
}

static mdl_status lower_resize(cv_ctx *c, node_t *n, int nin, const int32_t *in, const int32_t *out) {
    static const char *const modes[] = {"nearest", "linear"};
    static const char *const coords[] = {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"};
    static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    char buf[64];
    int mode = 0, coord = 0, nearest = 0;
    const char *s = mdl__cv_attr_str(n, "mode", buf, sizeof buf);
    if (*s && !str_in(s, modes, 2, &mode))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "mode '%s' (supported: nearest, linear)", s);
    s = mdl__cv_attr_str(n, "coordinate_transformation_mode", buf, sizeof buf);
    if (*s && !str_in(s, coords, 4, &coord))
        return mdl__cv_fail(c, MDL_UNSUPPORTED,
                            "coordinate_transformation_mode '%s' (supported: half_pixel, asymmetric, "
                            "align_corners, pytorch_half_pixel)", s);
    if (c->opset < 11 && !*s) coord = 1; /* opset 10 Resize is asymmetric */
    s = mdl__cv_attr_str(n, "nearest_mode", buf, sizeof buf);
    if (*s && !str_in(s, nearests, 4, &nearest))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "nearest_mode '%s'", s);
    if (mdl__cv_attr_int(n, "antialias", 0))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "antialias=1 is not supported");
    if (mdl__cv_attr_int(n, "exclude_outside", 0))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "exclude_outside=1 is not supported");
    if (mdl__cv_attr(n, "axes"))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "the axes attribute is not supported");
    s = mdl__cv_attr_str(n, "keep_aspect_ratio_policy", buf, sizeof buf);
    if (*s && strcmp(s, "stretch"))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "keep_aspect_ratio_policy '%s'", s);
    const cv_value *x = &c->vals[in[0]];
    if (x->rank != 4)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "input '%s' has rank %d (only 4-D NCHW, resizing H and W)",
                            x->name, (int)x->rank);
    if (c->ts[x->t].dtype != MDL_DTYPE_FLOAT32)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "input '%s' is %s (float32 only)", x->name,
                            mdl_dtype_name(c->ts[x->t].dtype));
    int32_t sv = c->opset < 11 ? (nin > 1 ? in[1] : -1) : (nin > 2 ? in[2] : -1);
    int32_t zv = c->opset < 11 ? -1 : (nin > 3 ? in[3] : -1);
    if (sv >= 0 && c->ts[c->vals[sv].t].count == 0) sv = -1; /* empty scales: sizes are used */
    mdl_op_options o = mdl_op_options_default(MDL_OP_RESIZE);
    o.resize.mode = (mdl_resize_mode)mode;
    o.resize.coord = (mdl_resize_coord)coord;
    o.resize.nearest = (mdl_resize_nearest)nearest;
    if (sv >= 0 && zv < 0) {
        const cv_value *sc = &c->vals[sv];
        if (!mdl__cv_is_const(c, sv) || c->ts[sc->t].dtype != MDL_DTYPE_FLOAT32 || c->ts[sc->t].count != 4)
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "scales '%s' must be a float constant of 4 values", sc->name);
        const float *f = mdl__cv_data(c, sv);
        if (f[0] != 1.0f || f[1] != 1.0f)
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "scales %g, %g on N and C (only H and W can be resized)",
                                (double)f[0], (double)f[1]);
        for (int d = 0; d < 2; d++) {
            if (!(f[2 + d] > 0.0f) || isinf(f[2 + d]))
                return mdl__cv_fail(c, MDL_UNSUPPORTED, "scale %g must be positive and finite", (double)f[2 + d]);
            o.resize.scale[d] = f[2 + d];
        }
    } else if (zv >= 0 && sv < 0) {
        int64_t sz[4];
        int32_t ns;
        if (!mdl__cv_const_ints(c, zv, sz, 4, &ns) || ns != 4)
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "sizes '%s' must be an integer constant of 4 values",
                                c->vals[zv].name);
        if (sz[0] != x->dims[0] || sz[1] != x->dims[1])
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "sizes change N or C (only H and W can be resized)");
        for (int d = 0; d < 2; d++) {
            if (sz[2 + d] <= 0 || sz[2 + d] > INT32_MAX || x->dims[2 + d] <= 0)
                return mdl__cv_fail(c, MDL_UNSUPPORTED, "size %lld from %lld", (long long)sz[2 + d],
                                    (long long)x->dims[2 + d]);
            o.resize.out[d] = (int32_t)sz[2 + d];
            o.resize.scale[d] = (float)sz[2 + d] / (float)x->dims[2 + d];
        }
    } else {
        return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "exactly one of scales and sizes must be given");
    }
    int32_t t = mdl__cv_phys(c, in[0], NHWC);
    if (t < 0) return mdl__cv_status(c);
    return mdl__cv_bind_result(c, out[0], mdl__cv_emit1(c, MDL_OP_RESIZE, "", 1, &t, &o), NHWC);
}

/* ---- Tile ------------------------------------------------------------------------------------ */

/* Tile with constant repeats.  A constant input is tiled here (any dtype); a run-time float32
   one becomes x reshaped with a size-1 axis before every repeated dim, plus a constant of -0.0
   of the tiled shape (broadcast; x + -0.0 == x exactly, signed zeros and NaNs included), reshaped
   to the result. */
static mdl_status lower_tile(cv_ctx *c, const int32_t *in, const int32_t *out) {
    const cv_value *x = &c->vals[in[0]];
    int32_t r = x->rank, nrep;
    int64_t rep[MDL_MAX_RANK], od[MDL_MAX_RANK];
    if (!mdl__cv_const_ints(c, in[1], rep, MDL_MAX_RANK, &nrep) || nrep != r)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "repeats must be an integer constant with one value per dim (%d)", (int)r);
    int32_t extra = 0;
    for (int32_t d = 0; d < r; d++) {
        if (rep[d] < 1)
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "repeats[%d] = %lld (only >= 1 is supported)", (int)d, (long long)rep[d]);
        od[d] = x->dims[d] * rep[d];
        extra += rep[d] > 1;
    }
    int32_t t = mdl__cv_native(c, in[0]);
    if (t < 0) return mdl__cv_status(c);
    mdl_dtype dt = c->ts[t].dtype;
    if (mdl__cv_is_const(c, in[0])) {
        int64_t n = 1;
        for (int32_t d = 0; d < r; d++) n *= od[d];
        size_t es = mdl_dtype_size(dt);
        uint8_t *buf = mdl__cv_alloc(c, (size_t)(n ? n : 1) * es);
        if (!buf) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory converting the model");
        const uint8_t *src = c->ts[t].data;
        for (int64_t i = 0; i < n; i++) {
            int64_t rem = i, si = 0, stride = 1;
            for (int32_t d = r - 1; d >= 0; d--) {
                si += (rem % od[d]) % x->dims[d] * stride;
                rem /= od[d];
                stride *= x->dims[d];
            }
            memcpy(buf + (size_t)i * es, src + (size_t)si * es, es);
        }
        int32_t y = mdl__cv_tensor(c, c->vals[out[0]].name, dt, r, od, buf);
        if (y < 0) return mdl__cv_status(c);
        mdl__cv_bind(c, out[0], y, NULL);
        return MDL_OK;
    }
    if (dt != MDL_DTYPE_FLOAT32)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "run-time input '%s' is %s (float32 only)", x->name, mdl_dtype_name(dt));
    if (r + extra > MDL_MAX_RANK)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "rank %d with %d repeated dims needs more than %d dims",
                            (int)r, (int)extra, MDL_MAX_RANK);
    int64_t xd[MDL_MAX_RANK], zd[MDL_MAX_RANK], nz = 1;
    int32_t k = 0;
    for (int32_t d = 0; d < r; d++) {
        if (rep[d] > 1) {
            xd[k] = 1;
            zd[k++] = rep[d];
            nz *= rep[d];
        }
        xd[k] = x->dims[d];
        zd[k++] = x->dims[d];
        nz *= x->dims[d];
    }
    if (!extra) {
        c->removed++;
        return mdl__cv_bind_result(c, out[0], t, NULL);
    }
    float *z = mdl__cv_alloc(c, (size_t)(nz ? nz : 1) * sizeof(float));
    if (!z) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory converting the model");
    for (int64_t i = 0; i < nz; i++) z[i] = -0.0f;
    int32_t zt = mdl__cv_tensor(c, mdl__cv_fmt(c, "%s/negzeros", c->node_name), MDL_DTYPE_FLOAT32, k, zd, z);
    int32_t xr = zt < 0 ? -1 : mdl__cv_reshape(c, t, k, xd);
    int32_t y = xr < 0 ? -1 : mdl__cv_emit1(c, MDL_OP_ADD, "", 2, (int32_t[]){xr, zt}, NULL);
    if (y >= 0) y = mdl__cv_reshape(c, y, r, od);
    return mdl__cv_bind_result(c, out[0], y, NULL);
}

/* ---- dispatch -------------------------------------------------------------------------------- */

bool mdl__cv_nn_op(const char *op_type) {
    return !strcmp(op_type, "Erf") || !strcmp(op_type, "LayerNormalization") ||
           !strcmp(op_type, "Resize") || !strcmp(op_type, "Upsample") || !strcmp(op_type, "Tile");
}

mdl_status mdl__cv_lower_nn(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in,
                            int nout, const int32_t *out, bool *done) {
    *done = mdl__cv_nn_op(n->op_type);
    if (!*done) return MDL_OK;
    if (nin < 1 || in[0] < 0) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "input 0 is missing");
    if (nout < 1) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "no outputs");
    if (!strcmp(n->op_type, "Erf")) return lower_erf(c, in, out);
    if (!strcmp(n->op_type, "Tile")) {
        if (nin < 2 || in[1] < 0) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "input repeats is missing");
        return lower_tile(c, in, out);
    }
    if (!strcmp(n->op_type, "LayerNormalization")) return lower_layer_norm(c, n, nin, in, nout, out);
    if (!strcmp(n->op_type, "Upsample")) /* opset 7-9: X, scales (attribute before 9) */
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "Upsample (opset < 10) is not supported; export at opset 11 or newer");
    return lower_resize(c, n, nin, in, out);
}
