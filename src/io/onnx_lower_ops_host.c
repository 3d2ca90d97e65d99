/* Lowering of ONNX operators to runtime nodes (see onnx_lower_host.h).  Each lower_* reads its ONNX
   node, picks the layout its inputs are used in, emits runtime nodes (folded at once when their
   inputs are constant) and binds the ONNX outputs. */
#include "io/onnx_lower_host.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef const Onnx__NodeProto node_t;

/* Binds ONNX output v to tensor t (failure of the step that produced t is passed on). */
static mdl_status bind(cv_ctx *c, int32_t v, int32_t t, const int8_t *perm) {
    if (t < 0) return mdl__cv_status(c);
    if (v >= 0) {
        mdl__cv_bind(c, v, t, perm);
        cv_tensor *x = &c->ts[t];
        /* tensors created for this value carry its ONNX name (graph outputs are found by it) */
        if (x->producer >= c->node_mark && !x->graph_input)
            x->name = c->vals[v].name;
    }
    return MDL_OK;
}

static const cv_value *val(const cv_ctx *c, int32_t v) { return &c->vals[v]; }

/* A constant tensor with zeroed data of the given shape. */
static int32_t new_const(cv_ctx *c, const char *name, mdl_dtype dt, int32_t rank,
                         const int64_t *dims) {
    int32_t t = mdl__cv_tensor(c, name, dt, rank, dims, NULL);
    if (t < 0) return -1;
    c->ts[t].data = mdl__cv_alloc(c, c->ts[t].bytes);
    if (!c->ts[t].data) {
        mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory converting the model");
        return -1;
    }
    return t;
}

/* Gives constant dst (a re-laid-out copy of dequantized constant src) the integers of src in the
   same layout: element i of dst is element src_index[i] of src; the quantization axis becomes
   new_axis (-1: the layout change moved a per-channel axis where it cannot follow, dst stays a
   plain float constant). */
static mdl_status relayout_quant(cv_ctx *c, int32_t dst, int32_t src, const int64_t *src_index,
                                 int32_t new_axis) {
    const cv_tensor *s = &c->ts[src];
    if (!s->qdata || (s->nquant > 1 && new_axis < 0)) return MDL_OK;
    size_t es = mdl_dtype_size(s->qdtype);
    int64_t n = c->ts[dst].count;
    uint8_t *q = mdl__cv_alloc(c, (size_t)n * es);
    if (!q) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory converting the model");
    s = &c->ts[src];
    for (int64_t i = 0; i < n; i++)
        memcpy(q + (size_t)i * es, (const uint8_t *)s->qdata + (size_t)src_index[i] * es, es);
    c->ts[dst].qdata = q;
    c->ts[dst].qdtype = s->qdtype;
    return mdl__cv_copy_quant(c, dst, src, new_axis);
}

static int32_t scalar_const(cv_ctx *c, const char *name, float v) {
    int32_t t = new_const(c, name, MDL_DTYPE_FLOAT32, 0, NULL);
    if (t >= 0) *(float *)c->ts[t].data = v;
    return t;
}

/* The tensor of value v in its current layout, and that layout (lazy flattens materialized). */
static int32_t as_is(cv_ctx *c, int32_t v, int8_t *perm) {
    const cv_value *x = val(c, v);
    if (x->flat_src >= 0 || mdl__cv_is_const(c, v)) {
        mdl__cv_perm_identity(perm, x->rank);
        return mdl__cv_native(c, v);
    }
    memcpy(perm, x->perm, MDL_MAX_RANK);
    return x->t;
}

static int32_t phys_axis(const int8_t *perm, int32_t rank, int32_t axis) {
    for (int32_t i = 0; i < rank; i++)
        if (perm[i] == axis) return i;
    return axis;
}

static mdl_status need_rank(cv_ctx *c, int32_t v, int32_t lo, int32_t hi, const char *what) {
    int32_t r = val(c, v)->rank;
    if (r < lo || r > hi)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "%s '%s' has rank %d (supported: %d..%d)", what,
                            val(c, v)->name, (int)r, (int)lo, (int)hi);
    return MDL_OK;
}

static mdl_status need_const(cv_ctx *c, int32_t v, const char *what) {
    if (v < 0) return mdl__cv_fail(c, MDL_UNSUPPORTED, "input %s is missing", what);
    if (!mdl__cv_is_const(c, v))
        return mdl__cv_fail(c, MDL_UNSUPPORTED,
                            "input %s '%s' must be a constant (it is computed at run time)", what,
                            val(c, v)->name);
    return MDL_OK;
}

static const float *const_f32(cv_ctx *c, int32_t v) {
    return mdl__cv_is_const(c, v) && c->ts[val(c, v)->t].dtype == MDL_DTYPE_FLOAT32
               ? c->ts[val(c, v)->t].data
               : NULL;
}

/* ---- element-wise ------------------------------------------------------------------------ */

static mdl_status lower_unary(cv_ctx *c, node_t *n, int nin, const int32_t *in,
                              const int32_t *out, mdl_op op) {
    mdl_op_options o = mdl_op_options_default(op);
    if (op == MDL_OP_LEAKY_RELU) o.act.alpha = mdl__cv_attr_float(n, "alpha", 0.01f);
    if (op == MDL_OP_HARD_SIGMOID) {
        o.act.alpha = mdl__cv_attr_float(n, "alpha", 0.2f);
        o.act.beta = mdl__cv_attr_float(n, "beta", 0.5f);
    }
    if (op == MDL_OP_GELU) {
        char buf[16];
        const char *a = mdl__cv_attr_str(n, "approximate", buf, sizeof buf);
        if (*a && strcmp(a, "none") && strcmp(a, "tanh"))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "approximate='%s'", a);
        o.act.approximate = strcmp(a, "tanh") == 0;
    }
    if (op == MDL_OP_CLIP) {
        if (c->opset < 11) {
            o.act.min = mdl__cv_attr_float(n, "min", -3.4028234663852886e38f);
            o.act.max = mdl__cv_attr_float(n, "max", 3.4028234663852886e38f);
        }
        for (int k = 1; k < nin && k < 3 && c->opset >= 11; k++) {
            double d;
            if (in[k] < 0) continue;
            if (!mdl__cv_const_scalar(c, in[k], &d))
                return mdl__cv_fail(c, MDL_UNSUPPORTED, "%s must be a constant scalar",
                                    k == 2 ? "max" : "min");
            if (k == 2) o.act.max = (float)d;
            else o.act.min = (float)d;
        }
    }
    int8_t perm[MDL_MAX_RANK];
    int32_t x = as_is(c, in[0], perm);
    if (x < 0) return mdl__cv_status(c);
    return bind(c, out[0], mdl__cv_emit1(c, op, "", 1, &x, &o), perm);
}

/* Add/Sub/Mul/Div.  Permuted activations stay permuted: a constant operand is broadcast to full
   rank and permuted at conversion time, another activation of the same rank is brought into the
   same layout (usually a cached copy, e.g. a residual connection's NHWC input). */
static mdl_status lower_binary(cv_ctx *c, const int32_t *in, const int32_t *out, mdl_op op) {
    int32_t r = val(c, in[0])->rank > val(c, in[1])->rank ? val(c, in[0])->rank : val(c, in[1])->rank;
    int8_t lead[MDL_MAX_RANK];
    bool permuted = false;
    for (int k = 1; k >= 0; k--) {
        const cv_value *x = val(c, in[k]);
        if (!mdl__cv_is_const(c, in[k]) && x->flat_src < 0 && x->rank == r &&
            !mdl__cv_perm_is_identity(x->perm, r)) {
            memcpy(lead, x->perm, sizeof lead);
            permuted = true;
        }
    }
    for (int k = 0; k < 2 && permuted; k++) {
        const cv_value *x = val(c, in[k]);
        /* a lower-rank activation (other than a single value) cannot follow the layout */
        if (!mdl__cv_is_const(c, in[k]) && x->rank != r && c->ts[x->t].count != 1) permuted = false;
    }
    int8_t perm[MDL_MAX_RANK];
    if (permuted) memcpy(perm, lead, sizeof perm);
    else mdl__cv_perm_identity(perm, r);
    int32_t t[2];
    for (int k = 0; k < 2; k++) {
        const cv_value *x = val(c, in[k]);
        if (!permuted) {
            t[k] = mdl__cv_native(c, in[k]);
        } else if (mdl__cv_is_const(c, in[k])) {
            int64_t d[MDL_MAX_RANK];
            int32_t pad = r - x->rank;
            for (int32_t i = 0; i < r; i++) d[i] = i < pad ? 1 : x->dims[i - pad];
            t[k] = mdl__cv_reshape(c, x->t, r, d);
            if (t[k] >= 0) t[k] = mdl__cv_transpose(c, t[k], perm);
        } else {
            t[k] = x->rank == r ? mdl__cv_phys(c, in[k], perm) : mdl__cv_native(c, in[k]);
        }
        if (t[k] < 0) return mdl__cv_status(c);
    }
    return bind(c, out[0], mdl__cv_emit1(c, op, "", 2, t, NULL), perm);
}

/* ---- dense layers -------------------------------------------------------------------------- */

/* Weights W [N, K] (row n = output n) for input value a: when a is a lazy flatten of a permuted
   tensor, the columns are permuted to its physical element order (no transpose at run time).
   wt(k, j) reads the native weight for output j, input k.  Returns the input tensor. */
static int32_t fc_input(cv_ctx *c, int32_t a, int64_t K, int64_t *colmap) {
    const cv_value *x = val(c, a);
    for (int64_t k = 0; k < K; k++) colmap[k] = k;
    if (x->flat_src < 0) return mdl__cv_native(c, a);
    const cv_value *s = val(c, x->flat_src);
    int32_t r = s->rank;
    int64_t pd[MDL_MAX_RANK], idx[MDL_MAX_RANK] = {0};
    for (int32_t i = 1; i < r; i++) pd[i] = s->dims[s->perm[i]];
    /* walk the physical order; compute each element's native (row-major) column */
    for (int64_t kp = 0; kp < K; kp++) {
        int64_t nat[MDL_MAX_RANK] = {0}, col = 0;
        for (int32_t i = 1; i < r; i++) nat[s->perm[i]] = idx[i];
        for (int32_t d = 1; d < r; d++) col = col * s->dims[d] + nat[d];
        colmap[kp] = col;
        for (int32_t i = r - 1; i >= 1; i--) {
            if (++idx[i] < pd[i]) break;
            idx[i] = 0;
        }
    }
    return x->t;
}

/* Emits FULLY_CONNECTED: x [..., K] by constant B (transB ? [N, K] : [K, N]) * alpha, with an
   optional per-output bias (beta * C). */
static int32_t emit_fc(cv_ctx *c, int32_t a, int32_t bv, bool transB, float alpha, int32_t biasv,
                       const float *bias, int64_t nbias, float beta) {
    const cv_value *b = val(c, bv);
    int64_t K = transB ? b->dims[1] : b->dims[0], N = transB ? b->dims[0] : b->dims[1];
    int64_t *colmap = mdl__cv_alloc(c, (size_t)K * sizeof(int64_t));
    if (!colmap) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory"), -1;
    int32_t x = fc_input(c, a, K, colmap);
    if (x < 0) return -1;
    const float *bd = const_f32(c, bv);
    int64_t wd[2] = {N, K};
    int32_t w = new_const(c, mdl__cv_fmt(c, "%s/weight", c->node_name), MDL_DTYPE_FLOAT32, 2, wd);
    if (w < 0) return -1;
    float *W = c->ts[w].data;
    int32_t bt = val(c, bv)->t;
    bool quant = alpha == 1.0f && c->ts[bt].qdata;
    int64_t *src = quant ? mdl__cv_alloc(c, (size_t)(N * K) * sizeof(int64_t)) : NULL;
    if (quant && !src) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory"), -1;
    for (int64_t j = 0; j < N; j++)
        for (int64_t k = 0; k < K; k++) {
            int64_t kn = colmap[k], si = transB ? j * K + kn : kn * N + j;
            W[j * K + k] = alpha * bd[si];
            if (src) src[j * K + k] = si;
        }
    /* W [N, K]: the output channel axis is 0 (it was 1 of a [K, N] B) */
    int32_t qaxis = c->ts[bt].quant_axis == (transB ? 0 : 1) ? 0 : -1;
    if (quant && relayout_quant(c, w, bt, src, qaxis)) return -1;
    int32_t ins[3] = {x, w, -1};
    if (bias) {
        ins[2] = new_const(c, mdl__cv_fmt(c, "%s/bias", c->node_name), MDL_DTYPE_FLOAT32, 1, &N);
        if (ins[2] < 0) return -1;
        float *B = c->ts[ins[2]].data;
        for (int64_t j = 0; j < N; j++) B[j] = beta * bias[nbias == 1 ? 0 : j];
        int32_t cbt = biasv >= 0 ? val(c, biasv)->t : -1;
        if (cbt >= 0 && beta == 1.0f && nbias == N && c->ts[cbt].qdata) {
            int64_t *bi = mdl__cv_alloc(c, (size_t)N * sizeof(int64_t));
            if (!bi) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory"), -1;
            for (int64_t j = 0; j < N; j++) bi[j] = j;
            if (relayout_quant(c, ins[2], cbt, bi, 0)) return -1;
        }
    }
    return mdl__cv_emit1(c, MDL_OP_FULLY_CONNECTED, "", bias ? 3 : 2, ins, NULL);
}

static mdl_status lower_gemm(cv_ctx *c, node_t *n, int nin, const int32_t *in, const int32_t *out) {
    float alpha = mdl__cv_attr_float(n, "alpha", 1.0f), beta = mdl__cv_attr_float(n, "beta", 1.0f);
    bool ta = mdl__cv_attr_int(n, "transA", 0) != 0, tb = mdl__cv_attr_int(n, "transB", 0) != 0;
    int32_t a = in[0], b = in[1], cc = nin > 2 ? in[2] : -1;
    mdl_status st;
    if ((st = need_rank(c, a, 2, 2, "A")) || (st = need_rank(c, b, 2, 2, "B"))) return st;
    int64_t N = tb ? val(c, b)->dims[0] : val(c, b)->dims[1];
    int64_t K = tb ? val(c, b)->dims[1] : val(c, b)->dims[0];
    int64_t KA = ta ? val(c, a)->dims[0] : val(c, a)->dims[1];
    if (K != KA)
        return mdl__cv_fail(c, MDL_SHAPE, "A has %lld columns, B has %lld rows", (long long)KA,
                            (long long)K);
    int32_t y;
    bool c_done = cc < 0 || beta == 0.0f;
    if (const_f32(c, b) && !ta) {
        const float *bias = NULL;
        int64_t nb = 0;
        if (!c_done && const_f32(c, cc)) {
            const cv_value *cv = val(c, cc);
            nb = c->ts[cv->t].count;
            bool row = cv->rank <= 1 || (cv->rank == 2 && cv->dims[0] == 1);
            if (row && (nb == N || nb == 1)) {
                bias = const_f32(c, cc);
                c_done = true;
            }
        }
        y = emit_fc(c, a, b, tb, alpha, bias ? cc : -1, bias, nb, beta);
    } else {
        int32_t at = mdl__cv_native(c, a), bt = mdl__cv_native(c, b);
        static const int8_t swap[MDL_MAX_RANK] = {1, 0};
        if (at >= 0 && ta) at = mdl__cv_transpose(c, at, swap);
        if (bt >= 0 && tb) bt = mdl__cv_transpose(c, bt, swap);
        if (at < 0 || bt < 0) return mdl__cv_status(c);
        y = mdl__cv_emit1(c, MDL_OP_MATMUL, "", 2, (int32_t[]){at, bt}, NULL);
        if (y >= 0 && alpha != 1.0f) {
            int32_t s = scalar_const(c, "alpha", alpha);
            y = s < 0 ? -1 : mdl__cv_emit1(c, MDL_OP_MUL, "alpha", 2, (int32_t[]){y, s}, NULL);
        }
    }
    if (y >= 0 && !c_done) {
        int32_t ct = mdl__cv_native(c, cc);
        if (ct >= 0 && beta != 1.0f) {
            int32_t s = scalar_const(c, "beta", beta);
            ct = s < 0 ? -1 : mdl__cv_emit1(c, MDL_OP_MUL, "beta", 2, (int32_t[]){ct, s}, NULL);
        }
        y = ct < 0 ? -1 : mdl__cv_emit1(c, MDL_OP_ADD, "bias", 2, (int32_t[]){y, ct}, NULL);
    }
    return bind(c, out[0], y, NULL);
}

static mdl_status lower_matmul(cv_ctx *c, const int32_t *in, const int32_t *out) {
    int32_t a = in[0], b = in[1];
    if (const_f32(c, b) && val(c, b)->rank == 2 && val(c, a)->rank >= 1 &&
        c->ts[val(c, a)->t].dtype == MDL_DTYPE_FLOAT32) {
        if (val(c, a)->dims[val(c, a)->rank - 1] != val(c, b)->dims[0])
            return mdl__cv_fail(c, MDL_SHAPE, "A has %lld columns, B has %lld rows",
                                (long long)val(c, a)->dims[val(c, a)->rank - 1],
                                (long long)val(c, b)->dims[0]);
        return bind(c, out[0], emit_fc(c, a, b, false, 1.0f, -1, NULL, 0, 1.0f), NULL);
    }
    int32_t at = mdl__cv_native(c, a), bt = mdl__cv_native(c, b);
    if (at < 0 || bt < 0) return mdl__cv_status(c);
    return bind(c, out[0], mdl__cv_emit1(c, MDL_OP_MATMUL, "", 2, (int32_t[]){at, bt}, NULL), NULL);
}

/* ---- convolution and pooling --------------------------------------------------------------- */

static const int8_t NHWC[MDL_MAX_RANK] = {0, 2, 3, 1};
static const int8_t NLC[MDL_MAX_RANK] = {0, 2, 1};

/* Input of a 1-D or 2-D spatial op as an NHWC tensor (1-D: [N, 1, L, C]). */
static int32_t spatial_input(cv_ctx *c, int32_t v) {
    const cv_value *x = val(c, v);
    if (x->rank == 4) return mdl__cv_phys(c, v, NHWC);
    int32_t t = mdl__cv_phys(c, v, NLC);
    if (t < 0) return -1;
    int64_t d[4] = {c->ts[t].dims[0], 1, c->ts[t].dims[1], c->ts[t].dims[2]};
    return mdl__cv_reshape(c, t, 4, d);
}

/* Binds an NHWC result back to an ONNX value of rank 4 (NCHW) or 3 (NCL). */
static mdl_status spatial_output(cv_ctx *c, int32_t v, int32_t t, int32_t rank) {
    if (t < 0) return mdl__cv_status(c);
    if (rank == 4) return bind(c, v, t, NHWC);
    int64_t d[3] = {c->ts[t].dims[0], c->ts[t].dims[2], c->ts[t].dims[3]};
    return bind(c, v, mdl__cv_reshape(c, t, 3, d), NLC);
}

typedef struct spatial_attrs {
    int32_t ns;                     /* spatial dims: 1 or 2 */
    int64_t in[2], k[2], s[2], d[2]; /* input extent, kernel, stride, dilation (h, w) */
    int64_t pb[2], pe[2];           /* padding begin / end */
} spatial_attrs;

/* Reads kernel/strides/dilations/pads/auto_pad; 1-D ops map onto the w axis. */
static mdl_status read_spatial(cv_ctx *c, node_t *n, int32_t xv, const int64_t *kernel,
                               spatial_attrs *g) {
    const cv_value *x = val(c, xv);
    g->ns = x->rank - 2;
    int32_t off = 2 - g->ns; /* 1-D: index 0 (h) is the dummy axis */
    for (int i = 0; i < 2; i++) {
        g->in[i] = 1;
        g->k[i] = g->s[i] = g->d[i] = 1;
        g->pb[i] = g->pe[i] = 0;
    }
    int32_t cnt;
    const int64_t *v;
    for (int i = 0; i < g->ns; i++) {
        g->in[off + i] = x->dims[2 + i];
        g->k[off + i] = kernel[i];
    }
    if ((v = mdl__cv_attr_ints(n, "strides", &cnt)) && cnt >= 0) {
        if (cnt != g->ns) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "strides has %d entries", (int)cnt);
        for (int i = 0; i < g->ns; i++) g->s[off + i] = v[i];
    }
    if ((v = mdl__cv_attr_ints(n, "dilations", &cnt)) && cnt >= 0) {
        if (cnt != g->ns) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "dilations has %d entries", (int)cnt);
        for (int i = 0; i < g->ns; i++) g->d[off + i] = v[i];
    }
    for (int i = 0; i < 2; i++)
        if (g->s[i] < 1 || g->d[i] < 1 || g->k[i] < 1 || g->s[i] > INT32_MAX || g->d[i] > INT32_MAX ||
            g->k[i] > INT32_MAX)
            return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "bad kernel, stride or dilation");
    char ap[32];
    mdl__cv_attr_str(n, "auto_pad", ap, sizeof ap);
    if (!*ap || !strcmp(ap, "NOTSET")) {
        if ((v = mdl__cv_attr_ints(n, "pads", &cnt)) && cnt >= 0) {
            if (cnt != 2 * g->ns) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "pads has %d entries", (int)cnt);
            for (int i = 0; i < g->ns; i++) {
                g->pb[off + i] = v[i];
                g->pe[off + i] = v[g->ns + i];
            }
        }
    } else if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
        for (int i = 0; i < 2; i++) {
            int64_t o = (g->in[i] + g->s[i] - 1) / g->s[i];
            int64_t total = (o - 1) * g->s[i] + (g->k[i] - 1) * g->d[i] + 1 - g->in[i];
            if (total < 0) total = 0;
            g->pb[i] = !strcmp(ap, "SAME_UPPER") ? total / 2 : total - total / 2;
            g->pe[i] = total - g->pb[i];
        }
    } else if (strcmp(ap, "VALID")) {
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "auto_pad '%s'", ap);
    }
    for (int i = 0; i < 2; i++)
        if (g->pb[i] < 0 || g->pe[i] < 0 || g->pb[i] > INT32_MAX || g->pe[i] > INT32_MAX)
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "negative or huge padding");
    return MDL_OK;
}

/* The runtime's pads (top, left, bottom, right) from the ONNX begin/end pads. */
static void spatial_pads(const spatial_attrs *g, int32_t pad[4]) {
    pad[0] = (int32_t)g->pb[0];
    pad[1] = (int32_t)g->pb[1];
    pad[2] = (int32_t)g->pe[0];
    pad[3] = (int32_t)g->pe[1];
}

static mdl_status lower_conv(cv_ctx *c, node_t *n, int nin, const int32_t *in, const int32_t *out) {
    mdl_status st;
    int32_t xv = in[0], wv = in[1], bv = nin > 2 ? in[2] : -1;
    if ((st = need_rank(c, xv, 3, 4, "X")) || (st = need_const(c, wv, "W"))) return st;
    const cv_value *x = val(c, xv), *w = val(c, wv);
    if (w->rank != x->rank || !const_f32(c, wv))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "weight must be float32 of rank %d", (int)x->rank);
    int64_t group = mdl__cv_attr_int(n, "group", 1), Cout = w->dims[0], Cg = w->dims[1];
    int64_t Cin = x->dims[1];
    if (group < 1 || Cg * group != Cin || Cout % group)
        return mdl__cv_fail(c, MDL_SHAPE, "weight %lldx%lld with group %lld does not fit %lld input channels",
                            (long long)Cout, (long long)Cg, (long long)group, (long long)Cin);
    spatial_attrs g;
    if ((st = read_spatial(c, n, xv, w->dims + 2, &g))) return st;
    int32_t ks;
    const int64_t *kv = mdl__cv_attr_ints(n, "kernel_shape", &ks);
    for (int i = 0; kv && i < ks && i < g.ns; i++)
        if (kv[i] != w->dims[2 + i])
            return mdl__cv_fail(c, MDL_SHAPE, "kernel_shape does not match the weight");
    bool dw = group > 1 && group == Cin && Cg == 1;
    mdl_op op = dw ? MDL_OP_DEPTHWISE_CONV2D : MDL_OP_CONV2D;
    mdl_op_options o = mdl_op_options_default(op);
    for (int i = 0; i < 2; i++) {
        o.conv.stride[i] = (int32_t)g.s[i];
        o.conv.dilation[i] = (int32_t)g.d[i];
    }
    spatial_pads(&g, o.conv.pad);
    o.conv.group = dw ? 1 : (int32_t)group;
    int64_t KH = g.k[0], KW = g.k[1];
    int64_t wd[4] = {dw ? 1 : KH, dw ? KH : KW, dw ? KW : Cg, Cout};
    int32_t wt = new_const(c, mdl__cv_fmt(c, "%s/weight", c->node_name), MDL_DTYPE_FLOAT32, 4, wd);
    if (wt < 0) return mdl__cv_status(c);
    const float *W = const_f32(c, wv);
    float *D = c->ts[wt].data;
    /* ONNX [Cout, Cg, KH, KW] -> HWIO [KH, KW, Cg, Cout], or depthwise [1, KH, KW, Cout] (the
       same memory order with Cg = 1) */
    int32_t wsrc = val(c, wv)->t;
    int64_t *src = c->ts[wsrc].qdata ? mdl__cv_alloc(c, (size_t)c->ts[wt].count * sizeof(int64_t)) : NULL;
    if (c->ts[wsrc].qdata && !src) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory");
    for (int64_t oc = 0; oc < Cout; oc++)
        for (int64_t ci = 0; ci < Cg; ci++)
            for (int64_t y = 0; y < KH; y++)
                for (int64_t xx = 0; xx < KW; xx++) {
                    int64_t di = ((y * KW + xx) * Cg + ci) * Cout + oc, si = ((oc * Cg + ci) * KH + y) * KW + xx;
                    D[di] = W[si];
                    if (src) src[di] = si;
                }
    /* the output channel axis 0 of the ONNX weight is the last one of HWIO / [1, KH, KW, C] */
    if (src && (st = relayout_quant(c, wt, wsrc, src, c->ts[wsrc].quant_axis == 0 ? 3 : -1))) return st;
    int32_t ins[3] = {spatial_input(c, xv), wt, -1};
    if (ins[0] < 0) return mdl__cv_status(c);
    bool late_bias = false;
    if (bv >= 0) {
        if (const_f32(c, bv) && c->ts[val(c, bv)->t].count == Cout)
            ins[2] = mdl__cv_reshape(c, val(c, bv)->t, 1, &Cout);
        else
            late_bias = true;
    }
    int32_t y = mdl__cv_emit1(c, op, "", ins[2] >= 0 ? 3 : 2, ins, &o);
    if (y >= 0 && late_bias)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "bias must be a constant [%lld]", (long long)Cout);
    return spatial_output(c, out[0], y, val(c, xv)->rank);
}

static mdl_status lower_pool(cv_ctx *c, node_t *n, const int32_t *in, int nout, const int32_t *out,
                             mdl_op op) {
    mdl_status st;
    if ((st = need_rank(c, in[0], 3, 4, "X"))) return st;
    if (nout > 1 && out[1] >= 0) return mdl__cv_fail(c, MDL_UNSUPPORTED, "the Indices output is not supported");
    int32_t ks;
    const int64_t *kv = mdl__cv_attr_ints(n, "kernel_shape", &ks);
    int32_t ns = val(c, in[0])->rank - 2;
    if (!kv || ks != ns) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "kernel_shape must have %d entries", (int)ns);
    spatial_attrs g;
    if ((st = read_spatial(c, n, in[0], kv, &g))) return st;
    if (g.d[0] != 1 || g.d[1] != 1) return mdl__cv_fail(c, MDL_UNSUPPORTED, "dilated pooling");
    if (mdl__cv_attr_int(n, "storage_order", 0) != 0)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "storage_order 1");
    bool include = op == MDL_OP_AVG_POOL2D && mdl__cv_attr_int(n, "count_include_pad", 0) != 0;
    if (mdl__cv_attr_int(n, "ceil_mode", 0)) {
        /* ceil: the last window may start inside the input or its begin padding only; the extra
           rows/columns it covers become bottom/right padding, which both pools ignore */
        for (int i = 0; i < 2; i++) {
            int64_t span = g.in[i] + g.pb[i] + g.pe[i] - g.k[i];
            if (span < 0) continue;
            int64_t o = (span + g.s[i] - 1) / g.s[i] + 1;
            if ((o - 1) * g.s[i] >= g.in[i] + g.pb[i]) o--;
            int64_t extra = (o - 1) * g.s[i] + g.k[i] - (g.in[i] + g.pb[i] + g.pe[i]);
            if (extra <= 0) continue;
            if (include)
                return mdl__cv_fail(c, MDL_UNSUPPORTED,
                                    "ceil_mode with count_include_pad needs a partial last window");
            g.pe[i] += extra;
        }
    }
    mdl_op_options o = mdl_op_options_default(op);
    for (int i = 0; i < 2; i++) {
        o.pool.kernel[i] = (int32_t)g.k[i];
        o.pool.stride[i] = (int32_t)g.s[i];
    }
    spatial_pads(&g, o.pool.pad);
    o.pool.count_include_pad = include;
    int32_t x = spatial_input(c, in[0]);
    if (x < 0) return mdl__cv_status(c);
    return spatial_output(c, out[0], mdl__cv_emit1(c, op, "", 1, &x, &o), val(c, in[0])->rank);
}

static mdl_status lower_global_pool(cv_ctx *c, const int32_t *in, const int32_t *out, mdl_op op) {
    mdl_status st;
    if ((st = need_rank(c, in[0], 3, 4, "X"))) return st;
    int32_t x = spatial_input(c, in[0]);
    if (x < 0) return mdl__cv_status(c);
    return spatial_output(c, out[0], mdl__cv_emit1(c, op, "", 1, &x, NULL), val(c, in[0])->rank);
}

static mdl_status lower_batch_norm(cv_ctx *c, node_t *n, int nin, const int32_t *in, int nout,
                                   const int32_t *out) {
    mdl_status st;
    static const char *const names[5] = {"X", "scale", "B", "mean", "var"};
    if (nin < 5) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "needs 5 inputs");
    for (int k = 1; k < 5; k++)
        if ((st = need_const(c, in[k], names[k]))) return st;
    for (int k = 1; k < nout; k++)
        if (out[k] >= 0) return mdl__cv_fail(c, MDL_UNSUPPORTED, "training outputs are not supported");
    if (mdl__cv_attr_int(n, "training_mode", 0))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "training_mode=1");
    if ((st = need_rank(c, in[0], 2, MDL_MAX_RANK, "X"))) return st;
    const cv_value *x = val(c, in[0]);
    int32_t r = x->rank;
    int8_t perm[MDL_MAX_RANK];
    int32_t t;
    if (x->flat_src < 0 && !mdl__cv_is_const(c, in[0]) && x->perm[r - 1] == 1) {
        memcpy(perm, x->perm, sizeof perm); /* channels already last */
        t = x->t;
    } else {
        /* channels last: [0, 2, ..., r-1, 1] */
        perm[0] = 0;
        for (int32_t i = 1; i < r - 1; i++) perm[i] = (int8_t)(i + 1);
        perm[r - 1] = 1;
        for (int32_t i = r; i < MDL_MAX_RANK; i++) perm[i] = 0;
        t = mdl__cv_phys(c, in[0], perm);
    }
    int32_t ins[5] = {t};
    int64_t C = x->dims[1];
    for (int k = 1; k < 5; k++) {
        if (c->ts[val(c, in[k])->t].count != C)
            return mdl__cv_fail(c, MDL_SHAPE, "%s has %lld elements, X has %lld channels", names[k],
                                (long long)c->ts[val(c, in[k])->t].count, (long long)C);
        ins[k] = mdl__cv_reshape(c, val(c, in[k])->t, 1, &C);
    }
    if (t < 0) return mdl__cv_status(c);
    mdl_op_options o = mdl_op_options_default(MDL_OP_BATCH_NORM);
    o.batch_norm.epsilon = mdl__cv_attr_float(n, "epsilon", 1e-5f);
    return bind(c, out[0], mdl__cv_emit1(c, MDL_OP_BATCH_NORM, "", 5, ins, &o), perm);
}

/* ---- normalization along an axis ---------------------------------------------------------- */

static mdl_status lower_softmax(cv_ctx *c, node_t *n, const int32_t *in, const int32_t *out, mdl_op op) {
    const cv_value *x = val(c, in[0]);
    int32_t r = x->rank, axis;
    int64_t a = mdl__cv_attr_int(n, "axis", c->opset < 13 ? 1 : -1);
    if (a < -r || a >= r || r < 1) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "axis %lld out of range", (long long)a);
    axis = (int32_t)(a < 0 ? a + r : a);
    mdl_op_options o = mdl_op_options_default(op);
    if (c->opset < 13 && axis != r - 1) {
        /* opset < 13: softmax over the flattened [prod(dims[:axis]), prod(dims[axis:])] */
        int64_t d2[2] = {1, 1}, nd[MDL_MAX_RANK];
        for (int32_t i = 0; i < r; i++) {
            d2[i < axis ? 0 : 1] *= x->dims[i];
            nd[i] = x->dims[i];
        }
        int32_t t = mdl__cv_native(c, in[0]);
        if (t >= 0) t = mdl__cv_reshape(c, t, 2, d2);
        o.axis.axis = 1;
        if (t >= 0) t = mdl__cv_emit1(c, op, "", 1, &t, &o);
        if (t >= 0) t = mdl__cv_reshape(c, t, r, nd);
        return bind(c, out[0], t, NULL);
    }
    int8_t perm[MDL_MAX_RANK];
    int32_t t = as_is(c, in[0], perm);
    if (t < 0) return mdl__cv_status(c);
    o.axis.axis = phys_axis(perm, r, axis);
    return bind(c, out[0], mdl__cv_emit1(c, op, "", 1, &t, &o), perm);
}

/* ReduceMean/Sum/Max: the axes come from the attribute or (newer opsets) the second input. */
static mdl_status lower_reduce(cv_ctx *c, node_t *n, int nin, const int32_t *in, const int32_t *out,
                               mdl_op op, int64_t axes_input_opset) {
    const cv_value *x = val(c, in[0]);
    int32_t r = x->rank, na = -1;
    int64_t axes[MDL_MAX_RANK * 2];
    if (c->opset >= axes_input_opset) {
        if (nin > 1 && in[1] >= 0) {
            if (!mdl__cv_const_ints(c, in[1], axes, 2 * MDL_MAX_RANK, &na))
                return mdl__cv_fail(c, MDL_UNSUPPORTED, "axes must be a constant");
        }
    } else {
        const int64_t *av = mdl__cv_attr_ints(n, "axes", &na);
        for (int32_t i = 0; i < na && i < 2 * MDL_MAX_RANK; i++) axes[i] = av[i];
        if (na > 2 * MDL_MAX_RANK) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "too many axes");
    }
    bool keep = mdl__cv_attr_int(n, "keepdims", 1) != 0;
    if (na <= 0 && mdl__cv_attr_int(n, "noop_with_empty_axes", 0)) {
        int8_t perm[MDL_MAX_RANK];
        int32_t t = as_is(c, in[0], perm);
        return bind(c, out[0], t, perm);
    }
    uint32_t native_mask = 0;
    if (na <= 0) native_mask = r >= 32 ? 0xFFFFFFFFu : (1u << r) - 1u;
    for (int32_t i = 0; i < na; i++) {
        int64_t a = axes[i] < 0 ? axes[i] + r : axes[i];
        if (a < 0 || a >= r) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "axis %lld out of range", (long long)axes[i]);
        native_mask |= 1u << a;
    }
    int8_t perm[MDL_MAX_RANK], operm[MDL_MAX_RANK] = {0};
    int32_t t = as_is(c, in[0], perm);
    if (t < 0) return mdl__cv_status(c);
    mdl_op_options o = mdl_op_options_default(op);
    o.reduce.keepdims = keep;
    o.reduce.axes_mask = 0;
    for (int32_t i = 0; i < r; i++)
        if (native_mask & (1u << perm[i])) o.reduce.axes_mask |= 1u << i;
    if (keep) {
        memcpy(operm, perm, sizeof operm);
    } else {
        /* remaining dims in physical order, renumbered by their native order */
        int32_t k = 0;
        for (int32_t i = 0; i < r; i++) {
            if (native_mask & (1u << perm[i])) continue;
            int32_t rank_of = 0;
            for (int32_t j = 0; j < r; j++)
                if (!(native_mask & (1u << perm[j])) && perm[j] < perm[i]) rank_of++;
            operm[k++] = (int8_t)rank_of;
        }
    }
    return bind(c, out[0], mdl__cv_emit1(c, op, "", 1, &t, &o), operm);
}

/* ---- shape and data movement --------------------------------------------------------------- */

/* Reshape of value v to native dims; a [N, rest] flatten of a permuted tensor stays lazy (its
   physical order is kept and a following FullyConnected permutes its weights instead). */
static mdl_status reshape_to(cv_ctx *c, int32_t v, int32_t ov, int32_t rank, const int64_t *dims) {
    const cv_value *x = val(c, v);
    int64_t total = 1;
    for (int32_t i = 0; i < rank; i++) total *= dims[i];
    if (total != c->ts[x->t].count)
        return mdl__cv_fail(c, MDL_SHAPE, "cannot reshape %lld elements to %lld",
                            (long long)c->ts[x->t].count, (long long)total);
    if (!mdl__cv_is_const(c, v) && x->flat_src < 0 && x->rank >= 3 && rank == 2 &&
        x->perm[0] == 0 && dims[0] == x->dims[0] && !mdl__cv_perm_is_identity(x->perm, x->rank)) {
        int32_t t = mdl__cv_reshape(c, x->t, 2, dims);
        if (t < 0) return mdl__cv_status(c);
        mdl_status st = bind(c, ov, t, NULL);
        if (!st && ov >= 0) {
            c->vals[ov].flat_src = v;
            c->vals[ov].native_t = -1;
        }
        return st;
    }
    int32_t t = mdl__cv_native(c, v);
    if (t < 0) return mdl__cv_status(c);
    return bind(c, ov, mdl__cv_reshape(c, t, rank, dims), NULL);
}

static mdl_status lower_reshape(cv_ctx *c, node_t *n, const int32_t *in, const int32_t *out) {
    int64_t s[MDL_MAX_RANK + 1], d[MDL_MAX_RANK];
    int32_t ns;
    if (!mdl__cv_const_ints(c, in[1], s, MDL_MAX_RANK + 1, &ns) || ns > MDL_MAX_RANK)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "the target shape must be a constant of rank <= %d",
                            MDL_MAX_RANK);
    const cv_value *x = val(c, in[0]);
    bool allowzero = mdl__cv_attr_int(n, "allowzero", 0) != 0;
    int64_t known = 1, count = c->ts[x->t].count;
    int32_t infer = -1;
    for (int32_t i = 0; i < ns; i++) {
        d[i] = s[i];
        if (s[i] == 0 && !allowzero) {
            if (i >= x->rank) return mdl__cv_fail(c, MDL_SHAPE, "0 in the shape past the input's rank");
            d[i] = x->dims[i];
        }
        if (d[i] == -1) {
            if (infer >= 0) return mdl__cv_fail(c, MDL_SHAPE, "more than one -1 in the shape");
            infer = i;
        } else if (d[i] < 0) {
            return mdl__cv_fail(c, MDL_SHAPE, "negative dimension %lld", (long long)d[i]);
        } else if (__builtin_mul_overflow(known, d[i], &known)) {
            return mdl__cv_fail(c, MDL_SHAPE, "the target shape's element count overflows");
        }
    }
    if (infer >= 0) {
        if (known == 0 || count % known)
            return mdl__cv_fail(c, MDL_SHAPE, "cannot infer -1 for %lld elements", (long long)count);
        d[infer] = count / known;
    }
    return reshape_to(c, in[0], out[0], ns, d);
}

static mdl_status lower_flatten(cv_ctx *c, node_t *n, const int32_t *in, const int32_t *out) {
    const cv_value *x = val(c, in[0]);
    int64_t a = mdl__cv_attr_int(n, "axis", 1);
    if (a < 0) a += x->rank;
    if (a < 0 || a > x->rank) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "axis out of range");
    int64_t d[2] = {1, 1};
    for (int32_t i = 0; i < x->rank; i++) d[i < a ? 0 : 1] *= x->dims[i];
    return reshape_to(c, in[0], out[0], 2, d);
}

static mdl_status read_axes(cv_ctx *c, node_t *n, int nin, const int32_t *in, int64_t *axes,
                            int32_t *na) {
    *na = -1;
    if (c->opset >= 13) {
        if (nin > 1 && in[1] >= 0 && !mdl__cv_const_ints(c, in[1], axes, MDL_MAX_RANK, na))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "axes must be a constant");
        return MDL_OK;
    }
    const int64_t *av = mdl__cv_attr_ints(n, "axes", na);
    if (*na > MDL_MAX_RANK) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "too many axes");
    for (int32_t i = 0; i < *na; i++) axes[i] = av[i];
    return MDL_OK;
}

static mdl_status lower_squeeze(cv_ctx *c, node_t *n, int nin, const int32_t *in, const int32_t *out,
                                bool unsq) {
    int64_t axes[MDL_MAX_RANK], d[MDL_MAX_RANK];
    int32_t na;
    mdl_status st = read_axes(c, n, nin, in, axes, &na);
    if (st) return st;
    const cv_value *x = val(c, in[0]);
    int32_t r = x->rank, orank = unsq ? r + (na > 0 ? na : 0) : 0;
    bool mark[MDL_MAX_RANK] = {false};
    if (unsq) {
        if (na <= 0 || orank > MDL_MAX_RANK) return mdl__cv_fail(c, MDL_UNSUPPORTED, "bad axes for rank %d", (int)r);
        for (int32_t i = 0; i < na; i++) {
            int64_t a = axes[i] < 0 ? axes[i] + orank : axes[i];
            if (a < 0 || a >= orank || mark[a]) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "bad axis %lld", (long long)axes[i]);
            mark[a] = true;
        }
        for (int32_t i = 0, k = 0; i < orank; i++) d[i] = mark[i] ? 1 : x->dims[k++];
    } else {
        for (int32_t i = 0; i < na; i++) {
            int64_t a = axes[i] < 0 ? axes[i] + r : axes[i];
            if (a < 0 || a >= r || x->dims[a] != 1)
                return mdl__cv_fail(c, MDL_SHAPE, "cannot squeeze axis %lld", (long long)axes[i]);
            mark[a] = true;
        }
        for (int32_t i = 0; i < r; i++)
            if ((na <= 0 && x->dims[i] != 1) || (na > 0 && !mark[i])) d[orank++] = x->dims[i];
    }
    return reshape_to(c, in[0], out[0], orank, d);
}

static mdl_status lower_transpose(cv_ctx *c, node_t *n, const int32_t *in, const int32_t *out) {
    const cv_value *x = val(c, in[0]);
    int32_t r = x->rank, cnt;
    const int64_t *pv = mdl__cv_attr_ints(n, "perm", &cnt);
    int8_t p[MDL_MAX_RANK] = {0}, pinv[MDL_MAX_RANK] = {0};
    bool seen[MDL_MAX_RANK] = {false};
    if (pv && cnt != r) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "perm has %d entries for rank %d", (int)cnt, (int)r);
    for (int32_t i = 0; i < r; i++) {
        int64_t v = pv ? pv[i] : r - 1 - i;
        if (v < 0 || v >= r || seen[v]) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "perm is not a permutation");
        seen[v] = true;
        p[i] = (int8_t)v;
        pinv[v] = (int8_t)i;
    }
    if (mdl__cv_is_const(c, in[0]) || x->flat_src >= 0) {
        int32_t t = mdl__cv_native(c, in[0]);
        if (t < 0) return mdl__cv_status(c);
        return bind(c, out[0], mdl__cv_transpose(c, t, p), NULL);
    }
    /* lazy: the data stays; only its layout description changes */
    int8_t np[MDL_MAX_RANK] = {0};
    for (int32_t i = 0; i < r; i++) np[i] = pinv[x->perm[i]];
    return bind(c, out[0], x->t, np);
}

static mdl_status lower_concat(cv_ctx *c, node_t *n, int nin, const int32_t *in, const int32_t *out) {
    const cv_value *x0 = val(c, in[0]);
    int32_t r = x0->rank;
    int64_t a = mdl__cv_attr_int(n, "axis", 0);
    if (a < 0) a += r;
    if (a < 0 || a >= r) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "axis out of range");
    const int8_t *lead = NULL;
    bool ok = true;
    for (int k = 0; k < nin; k++) {
        if (in[k] < 0) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "empty input name");
        const cv_value *x = val(c, in[k]);
        if (x->rank != r) return mdl__cv_fail(c, MDL_SHAPE, "inputs of different ranks");
        if (mdl__cv_is_const(c, in[k])) continue;
        if (x->flat_src >= 0) ok = false;
        else if (!lead) lead = x->perm;
        else if (memcmp(lead, x->perm, (size_t)r)) ok = false;
    }
    int8_t perm[MDL_MAX_RANK];
    mdl__cv_perm_identity(perm, r);
    if (ok && lead) memcpy(perm, lead, sizeof perm);
    int32_t ts[MDL_MAX_NODE_IO];
    if (nin > MDL_MAX_NODE_IO) return mdl__cv_fail(c, MDL_UNSUPPORTED, "more than %d inputs", MDL_MAX_NODE_IO);
    for (int k = 0; k < nin; k++) {
        ts[k] = mdl__cv_phys(c, in[k], perm);
        if (ts[k] < 0) return mdl__cv_status(c);
    }
    mdl_op_options o = mdl_op_options_default(MDL_OP_CONCAT);
    o.axis.axis = phys_axis(perm, r, (int32_t)a);
    return bind(c, out[0], mdl__cv_emit1(c, MDL_OP_CONCAT, "", nin, ts, &o), perm);
}

static mdl_status lower_slice(cv_ctx *c, node_t *n, int nin, const int32_t *in, const int32_t *out) {
    const cv_value *x = val(c, in[0]);
    int32_t r = x->rank, ns = 0, ne = 0, na = -1, nst = -1;
    int64_t st[MDL_MAX_RANK], en[MDL_MAX_RANK], ax[MDL_MAX_RANK], sp[MDL_MAX_RANK];
    if (c->opset < 10) {
        const int64_t *v;
        if ((v = mdl__cv_attr_ints(n, "starts", &ns)) && ns <= MDL_MAX_RANK) memcpy(st, v, 8 * (size_t)ns);
        if ((v = mdl__cv_attr_ints(n, "ends", &ne)) && ne <= MDL_MAX_RANK) memcpy(en, v, 8 * (size_t)ne);
        if ((v = mdl__cv_attr_ints(n, "axes", &na)) && na <= MDL_MAX_RANK) memcpy(ax, v, 8 * (size_t)na);
    } else {
        if (nin < 3 || !mdl__cv_const_ints(c, in[1], st, MDL_MAX_RANK, &ns) ||
            !mdl__cv_const_ints(c, in[2], en, MDL_MAX_RANK, &ne) ||
            (nin > 3 && in[3] >= 0 && !mdl__cv_const_ints(c, in[3], ax, MDL_MAX_RANK, &na)) ||
            (nin > 4 && in[4] >= 0 && !mdl__cv_const_ints(c, in[4], sp, MDL_MAX_RANK, &nst)))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "starts, ends, axes and steps must be constants");
    }
    if (ns != ne || ns > r || ns < 0 || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "starts/ends/axes/steps lengths differ");
    int64_t begin[MDL_MAX_RANK], step[MDL_MAX_RANK], od[MDL_MAX_RANK];
    for (int32_t d = 0; d < r; d++) {
        begin[d] = 0;
        step[d] = 1;
        od[d] = x->dims[d];
    }
    bool seen[MDL_MAX_RANK] = {false};
    for (int32_t i = 0; i < ns; i++) {
        int64_t a = na >= 0 ? ax[i] : i;
        if (a < 0) a += r;
        if (a < 0 || a >= r || seen[a]) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "bad axis");
        seen[a] = true;
        int64_t dim = x->dims[a], s = nst >= 0 ? sp[i] : 1, b = st[i], e = en[i];
        if (s == 0) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "step 0");
        if (b < 0) b += dim;
        if (e < 0) e += dim;
        int64_t cnt;
        if (s > 0) {
            b = b < 0 ? 0 : (b > dim ? dim : b);
            e = e < 0 ? 0 : (e > dim ? dim : e);
            cnt = e > b ? (e - b + s - 1) / s : 0;
        } else {
            b = b < 0 ? 0 : (b > dim - 1 ? dim - 1 : b);
            e = e < -1 ? -1 : (e > dim - 1 ? dim - 1 : e);
            cnt = b > e ? (b - e + (-s) - 1) / (-s) : 0;
        }
        if (cnt == 0) return mdl__cv_fail(c, MDL_UNSUPPORTED, "empty slice on axis %lld", (long long)a);
        begin[a] = b;
        step[a] = s;
        od[a] = cnt;
    }
    int8_t perm[MDL_MAX_RANK];
    int32_t t = as_is(c, in[0], perm);
    if (t < 0) return mdl__cv_status(c);
    mdl_op_options o = mdl_op_options_default(MDL_OP_SLICE);
    int64_t pd[MDL_MAX_RANK];
    for (int32_t i = 0; i < r; i++) {
        o.slice.begin[i] = begin[perm[i]];
        o.slice.step[i] = step[perm[i]];
        pd[i] = od[perm[i]];
    }
    int32_t y;
    mdl_status s2 = mdl__cv_emit(c, MDL_OP_SLICE, "", 1, &t, 1, &y, &o, r, pd);
    if (s2) return s2;
    return bind(c, out[0], y, perm);
}

static mdl_status lower_pad(cv_ctx *c, node_t *n, int nin, const int32_t *in, const int32_t *out) {
    char mode[32];
    mdl__cv_attr_str(n, "mode", mode, sizeof mode);
    if (*mode && strcmp(mode, "constant"))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "mode '%s' (only constant padding)", mode);
    const cv_value *x = val(c, in[0]);
    int32_t r = x->rank, np = -1, na = -1;
    int64_t pads[2 * MDL_MAX_RANK], axes[MDL_MAX_RANK], full[2 * MDL_MAX_RANK] = {0};
    double value = 0;
    if (c->opset < 11) {
        const int64_t *v = mdl__cv_attr_ints(n, "pads", &np);
        if (v && np <= 2 * MDL_MAX_RANK) memcpy(pads, v, 8 * (size_t)np);
        value = mdl__cv_attr_float(n, "value", 0.0f);
    } else {
        if (nin < 2 || !mdl__cv_const_ints(c, in[1], pads, 2 * MDL_MAX_RANK, &np))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "pads must be a constant");
        if (nin > 2 && in[2] >= 0 && !mdl__cv_const_scalar(c, in[2], &value))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "constant_value must be a constant scalar");
        if (nin > 3 && in[3] >= 0 && !mdl__cv_const_ints(c, in[3], axes, MDL_MAX_RANK, &na))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "axes must be a constant");
    }
    int32_t nax = na >= 0 ? na : r;
    if (np != 2 * nax) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "pads has %d entries", (int)np);
    for (int32_t i = 0; i < nax; i++) {
        int64_t a = na >= 0 ? axes[i] : i;
        if (a < 0) a += r;
        if (a < 0 || a >= r) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "bad axis");
        full[a] = pads[i];
        full[r + a] = pads[nax + i];
    }
    int8_t perm[MDL_MAX_RANK];
    int32_t t = as_is(c, in[0], perm);
    if (t < 0) return mdl__cv_status(c);
    mdl_op_options o = mdl_op_options_default(MDL_OP_PAD);
    for (int32_t i = 0; i < r; i++) {
        o.pad.pads[i] = full[perm[i]];
        o.pad.pads[r + i] = full[r + perm[i]];
    }
    o.pad.value = (float)value;
    return bind(c, out[0], mdl__cv_emit1(c, MDL_OP_PAD, "", 1, &t, &o), perm);
}

static mdl_status lower_gather(cv_ctx *c, node_t *n, const int32_t *in, const int32_t *out) {
    int32_t d = mdl__cv_native(c, in[0]), ix = mdl__cv_native(c, in[1]);
    if (d < 0 || ix < 0) return mdl__cv_status(c);
    mdl_op_options o = mdl_op_options_default(MDL_OP_GATHER);
    o.axis.axis = (int32_t)mdl__cv_attr_int(n, "axis", 0);
    return bind(c, out[0], mdl__cv_emit1(c, MDL_OP_GATHER, "", 2, (int32_t[]){d, ix}, &o), NULL);
}

/* ---- recurrent ----------------------------------------------------------------------------- */

static mdl_status lower_rnn(cv_ctx *c, node_t *n, int nin, const int32_t *in, int nout,
                            const int32_t *out, bool lstm) {
    char dir[32];
    mdl__cv_attr_str(n, "direction", dir, sizeof dir);
    mdl_op op = lstm ? MDL_OP_LSTM : MDL_OP_GRU;
    mdl_op_options o = mdl_op_options_default(op);
    if (!*dir || !strcmp(dir, "forward")) o.rnn.direction = MDL_RNN_FORWARD;
    else if (!strcmp(dir, "reverse")) o.rnn.direction = MDL_RNN_REVERSE;
    else if (!strcmp(dir, "bidirectional")) o.rnn.direction = MDL_RNN_BIDIRECTIONAL;
    else return mdl__cv_fail(c, MDL_UNSUPPORTED, "direction '%s'", dir);
    o.rnn.hidden_size = (int32_t)mdl__cv_attr_int(n, "hidden_size", 0);
    o.rnn.linear_before_reset = !lstm && mdl__cv_attr_int(n, "linear_before_reset", 0) != 0;
    if (mdl__cv_attr(n, "clip")) return mdl__cv_fail(c, MDL_UNSUPPORTED, "clip");
    if (mdl__cv_attr_int(n, "layout", 0)) return mdl__cv_fail(c, MDL_UNSUPPORTED, "layout=1");
    if (mdl__cv_attr_int(n, "input_forget", 0)) return mdl__cv_fail(c, MDL_UNSUPPORTED, "input_forget=1");
    const Onnx__AttributeProto *acts = mdl__cv_attr(n, "activations");
    if (acts) {
        static const char *const want_lstm[3] = {"Sigmoid", "Tanh", "Tanh"}, *const want_gru[2] = {"Sigmoid", "Tanh"};
        size_t per = lstm ? 3 : 2;
        for (size_t i = 0; i < acts->n_strings; i++) {
            const char *w = lstm ? want_lstm[i % per] : want_gru[i % per];
            if (acts->strings[i].len != strlen(w) || memcmp(acts->strings[i].data, w, acts->strings[i].len))
                return mdl__cv_fail(c, MDL_UNSUPPORTED, "non-default activations");
        }
    }
    int32_t ts[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    int maxin = lstm ? 8 : 6;
    if (nin > maxin) nin = maxin;
    if (nin < 3) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "needs X, W, R");
    if (nin > 4 && in[4] >= 0) {
        /* sequence_lens: accepted when every sequence has the full length */
        int64_t lens[4096];
        int32_t nl;
        bool ok = mdl__cv_const_ints(c, in[4], lens, 4096, &nl);
        for (int32_t i = 0; ok && i < nl; i++) ok = lens[i] == val(c, in[0])->dims[0];
        if (!ok) return mdl__cv_fail(c, MDL_UNSUPPORTED, "sequence_lens shorter than the sequence");
    }
    if (lstm && nin > 7 && in[7] >= 0) return mdl__cv_fail(c, MDL_UNSUPPORTED, "peepholes (input P)");
    for (int k = 0; k < nin && k < 7; k++) {
        if (in[k] < 0 || k == 4) continue;
        ts[k] = mdl__cv_native(c, in[k]);
        if (ts[k] < 0) return mdl__cv_status(c);
    }
    /* An all-zero initial state is what an absent one means.  Dropping it matters for dynamic
       batches: exporters build it from the input's shape (Shape -> ... -> Expand/ConstantOfShape),
       which folds to a constant sized by the batch. */
    for (int k = 5; k < 7 && k < nin; k++) {
        if (ts[k] < 0 || !c->ts[ts[k]].data) continue;
        const uint8_t *z = c->ts[ts[k]].data;
        size_t nb = c->ts[ts[k]].bytes, j = 0;
        while (j < nb && !z[j]) j++;
        if (j == nb) ts[k] = -1;
    }
    int32_t used = nin;
    while (used > 3 && ts[used - 1] < 0) used--;
    int no = nout < 1 ? 1 : (nout > (lstm ? 3 : 2) ? (lstm ? 3 : 2) : nout);
    int32_t y[3];
    mdl_status st = mdl__cv_emit(c, op, "", used, ts, no, y, &o, 0, NULL);
    if (st) return st;
    for (int k = 0; k < no; k++)
        if ((st = bind(c, out[k], y[k], NULL))) return st;
    return MDL_OK;
}

/* ---- trivial ------------------------------------------------------------------------------- */

static mdl_status alias(cv_ctx *c, int32_t from, int32_t to) {
    if (to < 0) return MDL_OK;
    cv_value *y = &c->vals[to];
    const char *name = y->name;
    *y = c->vals[from];
    y->name = name;
    y->defined = true;
    return MDL_OK;
}

/* Dropout is the identity at inference.  In training mode (opset 12+: input 2; before opset 7:
   is_test=0) it drops elements at random unless the ratio is 0: refused. */
static mdl_status dropout_check(cv_ctx *c, node_t *n, int nin, const int32_t *in) {
    double training = 0, ratio = 0.5;
    if (c->opset >= 12) {
        if (nin > 2 && in[2] >= 0 && !mdl__cv_const_scalar(c, in[2], &training))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "training_mode must be a constant (it is computed at run time)");
        if (training != 0 && nin > 1 && in[1] >= 0 && !mdl__cv_const_scalar(c, in[1], &ratio))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "ratio must be a constant in training mode");
    } else if (c->opset < 7) {
        training = mdl__cv_attr_int(n, "is_test", 0) == 0;
        ratio = mdl__cv_attr_float(n, "ratio", 0.5f);
    }
    if (training != 0 && ratio != 0)
        return mdl__cv_fail(c, MDL_UNSUPPORTED,
                            "training_mode=1 with ratio %g drops elements at random (not an inference computation)",
                            ratio);
    return MDL_OK;
}

static mdl_status lower_identity(cv_ctx *c, node_t *n, int nin, const int32_t *in, int nout,
                                 const int32_t *out) {
    if (!strcmp(n->op_type, "Dropout") && nout > 1 && out[1] >= 0)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "the mask output is not supported");
    if (!strcmp(n->op_type, "Dropout")) {
        mdl_status st = dropout_check(c, n, nin, in);
        if (st) return st;
    }
    c->removed++;
    return alias(c, in[0], out[0]);
}

static mdl_status lower_expand(cv_ctx *c, const int32_t *in, const int32_t *out) {
    int64_t s[MDL_MAX_RANK];
    int32_t ns;
    if (!mdl__cv_const_ints(c, in[1], s, MDL_MAX_RANK, &ns))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "the shape must be a constant of rank <= %d", MDL_MAX_RANK);
    const cv_value *x = val(c, in[0]);
    int32_t r = ns > x->rank ? ns : x->rank;
    int64_t d[MDL_MAX_RANK];
    for (int32_t i = 0; i < r; i++) {
        int32_t ia = i - (r - x->rank), ib = i - (r - ns);
        int64_t da = ia >= 0 ? x->dims[ia] : 1, db = ib >= 0 ? s[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return mdl__cv_fail(c, MDL_SHAPE, "cannot expand dim %lld to %lld", (long long)da, (long long)db);
        d[i] = da == 1 ? db : da;
    }
    bool same = r == x->rank && !memcmp(d, x->dims, sizeof(int64_t) * (size_t)r);
    if (same) return alias(c, in[0], out[0]);
    /* broadcast by adding zeros of the target shape */
    int32_t t = mdl__cv_native(c, in[0]);
    int32_t z = t < 0 ? -1 : new_const(c, mdl__cv_fmt(c, "%s/zeros", c->node_name), c->ts[t].dtype, r, d);
    if (z < 0) return mdl__cv_status(c);
    return bind(c, out[0], mdl__cv_emit1(c, MDL_OP_ADD, "", 2, (int32_t[]){t, z}, NULL), NULL);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

typedef enum lower_kind {
    L_UNARY, L_BINARY, L_GEMM, L_MATMUL, L_CONV, L_POOL, L_GPOOL, L_BN, L_SOFTMAX, L_REDUCE,
    L_RESHAPE, L_FLATTEN, L_SQUEEZE, L_UNSQUEEZE, L_TRANSPOSE, L_CONCAT, L_SLICE, L_PAD, L_GATHER,
    L_LSTM, L_GRU, L_IDENTITY, L_EXPAND
} lower_kind;

static const struct {
    const char *name;
    lower_kind kind;
    mdl_op op;
    int64_t opset; /* ReduceX: first opset with axes as an input */
} lowerings[] = {
    {"Relu", L_UNARY, MDL_OP_RELU, 0},
    {"Clip", L_UNARY, MDL_OP_CLIP, 0},
    {"LeakyRelu", L_UNARY, MDL_OP_LEAKY_RELU, 0},
    {"Sigmoid", L_UNARY, MDL_OP_SIGMOID, 0},
    {"Tanh", L_UNARY, MDL_OP_TANH, 0},
    {"HardSigmoid", L_UNARY, MDL_OP_HARD_SIGMOID, 0},
    {"HardSwish", L_UNARY, MDL_OP_HARD_SWISH, 0},
    {"Gelu", L_UNARY, MDL_OP_GELU, 0},
    {"Add", L_BINARY, MDL_OP_ADD, 0},
    {"Sub", L_BINARY, MDL_OP_SUB, 0},
    {"Mul", L_BINARY, MDL_OP_MUL, 0},
    {"Div", L_BINARY, MDL_OP_DIV, 0},
    {"Gemm", L_GEMM, MDL_OP_FULLY_CONNECTED, 0},
    {"MatMul", L_MATMUL, MDL_OP_MATMUL, 0},
    {"Conv", L_CONV, MDL_OP_CONV2D, 0},
    {"MaxPool", L_POOL, MDL_OP_MAX_POOL2D, 0},
    {"AveragePool", L_POOL, MDL_OP_AVG_POOL2D, 0},
    {"GlobalAveragePool", L_GPOOL, MDL_OP_GLOBAL_AVG_POOL, 0},
    {"GlobalMaxPool", L_GPOOL, MDL_OP_GLOBAL_MAX_POOL, 0},
    {"BatchNormalization", L_BN, MDL_OP_BATCH_NORM, 0},
    {"Softmax", L_SOFTMAX, MDL_OP_SOFTMAX, 0},
    {"LogSoftmax", L_SOFTMAX, MDL_OP_LOG_SOFTMAX, 0},
    {"ReduceMean", L_REDUCE, MDL_OP_REDUCE_MEAN, 18},
    {"ReduceSum", L_REDUCE, MDL_OP_REDUCE_SUM, 13},
    {"ReduceMax", L_REDUCE, MDL_OP_REDUCE_MAX, 18},
    {"Reshape", L_RESHAPE, MDL_OP_RESHAPE, 0},
    {"Flatten", L_FLATTEN, MDL_OP_RESHAPE, 0},
    {"Squeeze", L_SQUEEZE, MDL_OP_RESHAPE, 0},
    {"Unsqueeze", L_UNSQUEEZE, MDL_OP_RESHAPE, 0},
    {"Transpose", L_TRANSPOSE, MDL_OP_TRANSPOSE, 0},
    {"Concat", L_CONCAT, MDL_OP_CONCAT, 0},
    {"Slice", L_SLICE, MDL_OP_SLICE, 0},
    {"Pad", L_PAD, MDL_OP_PAD, 0},
    {"Gather", L_GATHER, MDL_OP_GATHER, 0},
    {"LSTM", L_LSTM, MDL_OP_LSTM, 0},
    {"GRU", L_GRU, MDL_OP_GRU, 0},
    {"Identity", L_IDENTITY, MDL_OP_RESHAPE, 0},
    {"Dropout", L_IDENTITY, MDL_OP_RESHAPE, 0},
    {"Expand", L_EXPAND, MDL_OP_ADD, 0},
};

static int find_lowering(const char *op) {
    for (size_t i = 0; i < sizeof lowerings / sizeof lowerings[0]; i++)
        if (!strcmp(lowerings[i].name, op)) return (int)i;
    return -1;
}

bool mdl__cv_lowerable(const char *op_type) {
    return find_lowering(op_type) >= 0 || mdl__cv_elem_op(op_type) || mdl__cv_nn_op(op_type);
}

mdl_status mdl__cv_bind_result(cv_ctx *c, int32_t v, int32_t t, const int8_t *perm) {
    return bind(c, v, t, perm);
}

mdl_status mdl__cv_lower_unary(cv_ctx *c, mdl_op op, int32_t in, int32_t out) {
    /* element by element: the input's layout is kept (a flattened or constant input in its
       native layout) */
    const cv_value *x = &c->vals[in];
    int8_t perm[MDL_MAX_RANK];
    int32_t t;
    if (x->flat_src >= 0 || mdl__cv_is_const(c, in)) {
        mdl__cv_perm_identity(perm, x->rank);
        t = mdl__cv_native(c, in);
    } else {
        memcpy(perm, x->perm, sizeof perm);
        t = x->t;
    }
    if (t < 0) return mdl__cv_status(c);
    return bind(c, out, mdl__cv_emit1(c, op, "", 1, &t, NULL), perm);
}

/* Inputs every lowering of op_type reads (ONNX's required inputs); optional ones are checked
   where they are read. */
static int required_inputs(const cv_ctx *c, const char *op_type) {
    int e = mdl__cv_elem_inputs(op_type);
    if (e >= 0) return e;
    int i = find_lowering(op_type);
    if (i < 0) return 0; /* quantization and nn ops check their own */
    switch (lowerings[i].kind) {
    case L_BINARY: case L_GEMM: case L_MATMUL: case L_CONV: case L_GATHER: case L_RESHAPE:
    case L_EXPAND: return 2;
    case L_LSTM: case L_GRU: return 3;
    case L_SLICE: return c->opset >= 10 ? 3 : 1;
    case L_BN: return 5;
    default: return 1;
    }
}

mdl_status mdl__cv_check_inputs(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in) {
    int need = required_inputs(c, n->op_type);
    if (nin < need) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "needs %d inputs, has %d", need, nin);
    for (int k = 0; k < need; k++)
        if (in[k] < 0) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "input %d is missing", k);
    return MDL_OK;
}

mdl_status mdl__cv_lower(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in,
                         int nout, const int32_t *out) {
    if (mdl__cv_elem_op(n->op_type)) return mdl__cv_lower_elem(c, n, nin, in, nout, out);
    int i = find_lowering(n->op_type);
    bool nn_done = false;
    mdl_status nn_st = i < 0 ? mdl__cv_lower_nn(c, n, nin, in, nout, out, &nn_done) : MDL_OK;
    if (nn_done) return nn_st;
    if (i < 0) return mdl__cv_fail(c, MDL_UNSUPPORTED, "unsupported operator");
    /* the required inputs are present: mdl__cv_check_inputs */
    mdl_op op = lowerings[i].op;
    switch (lowerings[i].kind) {
    case L_UNARY: return lower_unary(c, n, nin, in, out, op);
    case L_BINARY: return lower_binary(c, in, out, op);
    case L_GEMM: return lower_gemm(c, n, nin, in, out);
    case L_MATMUL: return lower_matmul(c, in, out);
    case L_CONV: return lower_conv(c, n, nin, in, out);
    case L_POOL: return lower_pool(c, n, in, nout, out, op);
    case L_GPOOL: return lower_global_pool(c, in, out, op);
    case L_BN: return lower_batch_norm(c, n, nin, in, nout, out);
    case L_SOFTMAX: return lower_softmax(c, n, in, out, op);
    case L_REDUCE: return lower_reduce(c, n, nin, in, out, op, lowerings[i].opset);
    case L_RESHAPE: return lower_reshape(c, n, in, out);
    case L_FLATTEN: return lower_flatten(c, n, in, out);
    case L_SQUEEZE: return lower_squeeze(c, n, nin, in, out, false);
    case L_UNSQUEEZE: return lower_squeeze(c, n, nin, in, out, true);
    case L_TRANSPOSE: return lower_transpose(c, n, in, out);
    case L_CONCAT: return lower_concat(c, n, nin, in, out);
    case L_SLICE: return lower_slice(c, n, nin, in, out);
    case L_PAD: return lower_pad(c, n, nin, in, out);
    case L_GATHER: return lower_gather(c, n, in, out);
    case L_LSTM: return lower_rnn(c, n, nin, in, nout, out, true);
    case L_GRU: return lower_rnn(c, n, nin, in, nout, out, false);
    case L_IDENTITY: return lower_identity(c, n, nin, in, nout, out);
    case L_EXPAND: return lower_expand(c, in, out);
    }
    return mdl__cv_fail(c, MDL_INTERNAL, "no lowering");
}
