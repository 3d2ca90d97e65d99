/* Import of pre-quantized ONNX models (onnxruntime.quantization's QDQ, QOperator and dynamic
   formats; see onnx_lower_host.h).
 *
 * Everything is brought to one form, which the qdq pass (src/quant/qdq_host.h) then turns into
 * int8 operators where the runtime has them:
 *  - DequantizeLinear of a constant becomes a float constant that keeps its integers (weights
 *    and int32 biases stay integers in the file, cv_tensor.qdata); of a run-time value, a
 *    DEQUANTIZE node whose input tensor carries the quantization parameters.
 *  - QuantizeLinear of a run-time value becomes a QUANTIZE node whose output tensor carries them.
 *  - QOperator ops (QLinearConv, QLinearMatMul, com.microsoft QGemm/QLinearAdd/...) become
 *    DEQUANTIZE -> the float op -> QUANTIZE; ops that move 8-bit data without arithmetic
 *    (MaxPool, Flatten, Reshape ... on a quantized tensor) likewise, with the same parameters.
 *  - Dynamic quantization (DynamicQuantizeLinear -> MatMulInteger/ConvInteger -> Cast -> Mul,
 *    DynamicQuantizeLSTM) is computed in float on the dequantized int8 weights: the activations
 *    are not quantized at run time (ORT's results differ by that rounding).
 */
#include "io/onnx_lower_host.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant/quant.h"

typedef const Onnx__NodeProto node_t;

static mdl_status oom(cv_ctx *c) { return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory converting the model"); }

static const cv_value *val(const cv_ctx *c, int32_t v) { return &c->vals[v]; }

static const cv_tensor *tens(const cv_ctx *c, int32_t v) { return &c->ts[c->vals[v].t]; }

/* ---- quantization parameters --------------------------------------------------------------- */

typedef struct qparams {
    int32_t n;     /* 1: per tensor; else per index of axis (native) */
    int32_t axis;
    float *scale;
    int64_t *zp;
    mdl_dtype dt;  /* the integer type */
} qparams;

static bool int_dtype(mdl_dtype dt) {
    return dt == MDL_DTYPE_INT8 || dt == MDL_DTYPE_UINT8 || dt == MDL_DTYPE_INT32;
}

/* Scale (float constant) and optional zero point (integer constant) for a tensor of the given
   native shape; zero point's dtype gives the integer type (dflt when absent). */
#define AXIS_ATTR (-100) /* read_qparams: the axis comes from the node's "axis" attribute */

static mdl_status read_qparams(cv_ctx *c, node_t *n, int32_t sv, int32_t zv, int32_t rank,
                               const int64_t *dims, mdl_dtype dflt, const char *what, qparams *q,
                               int32_t axis) {
    memset(q, 0, sizeof *q);
    if (sv < 0 || !mdl__cv_is_const(c, sv) || tens(c, sv)->dtype != MDL_DTYPE_FLOAT32)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "%s scale must be a float constant", what);
    if (zv >= 0 && (!mdl__cv_is_const(c, zv) || !int_dtype(tens(c, zv)->dtype)))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "%s zero point must be an int8/uint8/int32 constant", what);
    if (n && mdl__cv_attr_int(n, "block_size", 0))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "blocked quantization (block_size)");
    int64_t cnt = tens(c, sv)->count;
    q->n = (int32_t)cnt;
    q->dt = zv >= 0 ? tens(c, zv)->dtype : dflt;
    if (zv >= 0 && tens(c, zv)->count != cnt)
        return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "%s scale and zero point differ in size", what);
    if (cnt != 1) {
        int64_t a = axis != AXIS_ATTR ? axis : n ? mdl__cv_attr_int(n, "axis", 1) : 1;
        if (a < 0) a += rank;
        if (a < 0 || a >= rank || dims[a] != cnt || tens(c, sv)->rank != 1)
            return mdl__cv_fail(c, MDL_SHAPE, "%s has %lld scales, not one per index of axis %lld",
                                what, (long long)cnt, (long long)a);
        q->axis = (int32_t)a;
    }
    q->scale = mdl__cv_alloc(c, sizeof(float) * (size_t)cnt);
    q->zp = mdl__cv_alloc(c, sizeof(int64_t) * (size_t)cnt);
    if (!q->scale || !q->zp) return oom(c);
    const float *s = tens(c, sv)->data;
    for (int64_t i = 0; i < cnt; i++) {
        if (!(s[i] > 0.0f) || !isfinite(s[i]))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "%s scale %g is not positive and finite", what, (double)s[i]);
        q->scale[i] = s[i];
        if (zv < 0) continue;
        const cv_tensor *z = tens(c, zv);
        q->zp[i] = z->dtype == MDL_DTYPE_INT8 ? ((const int8_t *)z->data)[i]
                   : z->dtype == MDL_DTYPE_UINT8 ? ((const uint8_t *)z->data)[i]
                                                 : ((const int32_t *)z->data)[i];
    }
    return MDL_OK;
}

static bool same_qparams(const cv_tensor *t, const qparams *q, int32_t axis) {
    if (t->nquant != q->n || (q->n > 1 && t->quant_axis != axis)) return false;
    for (int32_t i = 0; i < q->n; i++)
        if (t->scale[i] != q->scale[i] || t->zero_point[i] != q->zp[i]) return false;
    return true;
}

static int64_t get_int(mdl_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case MDL_DTYPE_INT8: return ((const int8_t *)p)[i];
    case MDL_DTYPE_UINT8: return ((const uint8_t *)p)[i];
    case MDL_DTYPE_INT32: return ((const int32_t *)p)[i];
    default: return 0;
    }
}

/* Index along axis of element i of a row-major tensor. */
static int64_t axis_index(int32_t rank, const int64_t *dims, int32_t axis, int64_t i) {
    int64_t inner = 1;
    for (int32_t d = axis + 1; d < rank; d++) inner *= dims[d];
    return (i / inner) % dims[axis];
}

/* A dequantized constant: float data scale * (q - zp) (what the runtime's DEQUANTIZE computes)
   that keeps q.  q is row-major with the given shape. */
static int32_t dq_const(cv_ctx *c, const char *name, mdl_dtype qdt, const void *qd, int32_t rank,
                        const int64_t *dims, const qparams *q) {
    int32_t t = mdl__cv_tensor(c, name, MDL_DTYPE_FLOAT32, rank, dims, NULL);
    if (t < 0) return -1;
    cv_tensor *x = &c->ts[t];
    size_t es = mdl_dtype_size(qdt);
    float *f = mdl__cv_alloc(c, x->bytes);
    void *qc = mdl__cv_alloc(c, (size_t)x->count * es);
    if (!f || !qc) return oom(c), -1;
    memcpy(qc, qd, (size_t)x->count * es);
    for (int64_t i = 0; i < x->count; i++) {
        int64_t k = q->n > 1 ? axis_index(rank, dims, q->axis, i) : 0;
        f[i] = (float)(get_int(qdt, qd, i) - q->zp[k]) * q->scale[k];
    }
    x->data = f;
    x->qdata = qc;
    x->qdtype = qdt;
    if (mdl__cv_set_quant(c, t, q->n, q->scale, q->zp, q->axis)) return -1;
    return t;
}

/* Physical axis of native axis a in layout perm. */
static int32_t phys(const int8_t *perm, int32_t rank, int32_t a) {
    for (int32_t i = 0; i < rank; i++)
        if (perm[i] == a) return i;
    return a;
}

/* Value for an internal intermediate ("<node>/<what>"). */
static int32_t temp_value(cv_ctx *c, const char *what) {
    return mdl__cv_value(c, mdl__cv_fmt(c, "%s/%s", c->node_name, what));
}

/* DequantizeLinear of value x into value out (out < 0: a new temporary, returned). */
static int32_t dequantize(cv_ctx *c, int32_t x, const qparams *q, int32_t out) {
    if (out < 0 && (out = temp_value(c, mdl__cv_fmt(c, "dq_%s", val(c, x)->name))) < 0) return -1;
    const cv_value *xv = val(c, x);
    const cv_tensor *xt = tens(c, x);
    if (!int_dtype(xt->dtype)) {
        mdl__cv_fail(c, MDL_UNSUPPORTED, "input '%s' is %s (int8, uint8 or int32 expected)", xv->name,
                     mdl_dtype_name(xt->dtype));
        return -1;
    }
    if (mdl__cv_is_const(c, x)) {
        int32_t t = mdl__cv_native(c, x);
        if (t < 0) return -1;
        cv_tensor src = c->ts[t];
        int32_t f = dq_const(c, src.name, src.dtype, src.data, src.rank, src.dims, q);
        if (f < 0) return -1;
        mdl__cv_bind(c, out, f, NULL);
        return out;
    }
    int8_t perm[MDL_MAX_RANK];
    int32_t t;
    if (xv->flat_src >= 0) {
        mdl__cv_perm_identity(perm, xv->rank);
        t = mdl__cv_native(c, x);
    } else {
        memcpy(perm, xv->perm, sizeof perm);
        t = xv->t;
    }
    if (t < 0) return -1;
    int32_t pa = phys(perm, c->ts[t].rank, q->axis);
    if (c->ts[t].nquant) {
        if (!same_qparams(&c->ts[t], q, pa)) {
            mdl__cv_fail(c, MDL_UNSUPPORTED, "'%s' is dequantized with two different scales or zero points",
                         xv->name);
            return -1;
        }
    } else if (mdl__cv_set_quant(c, t, q->n, q->scale, q->zp, pa)) {
        return -1;
    } else if (q->n == 1) {
        /* the same parameters hold for what data moves copied t from (quantize_dynamic's
           Gather of a uint8 embedding table, then Transpose, then DequantizeLinear) */
        for (int32_t u = t, guard = 0; guard < 64; guard++) {
            int32_t p = c->ts[u].producer;
            if (p < 0) break;
            const cv_node *pn = &c->nodes[p];
            if (pn->op != MDL_OP_GATHER && pn->op != MDL_OP_TRANSPOSE && pn->op != MDL_OP_RESHAPE &&
                pn->op != MDL_OP_SLICE)
                break;
            u = pn->in[0];
            if (c->ts[u].nquant || c->ts[u].dtype != c->ts[t].dtype) break;
            if (mdl__cv_set_quant(c, u, 1, q->scale, q->zp, 0)) return -1;
        }
    }
    cv_tensor src = c->ts[t];
    int32_t y = mdl__cv_tensor(c, mdl__cv_fmt(c, "%s/dequantized", src.name), MDL_DTYPE_FLOAT32, src.rank,
                               src.dims, NULL);
    if (y < 0 || mdl__cv_emit_raw(c, MDL_OP_DEQUANTIZE, "", 1, &t, y)) return -1;
    mdl__cv_bind(c, out, y, perm);
    return out;
}

/* QuantizeLinear of float value x into value out. */
static mdl_status quantize(cv_ctx *c, int32_t x, const qparams *q, int32_t out) {
    const cv_value *xv = val(c, x);
    if (tens(c, x)->dtype != MDL_DTYPE_FLOAT32)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "input '%s' is %s (float expected)", xv->name,
                            mdl_dtype_name(tens(c, x)->dtype));
    if (q->dt != MDL_DTYPE_INT8 && q->dt != MDL_DTYPE_UINT8)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "quantization to %s (int8 or uint8 supported)",
                            mdl_dtype_name(q->dt));
    int32_t qmin, qmax;
    mdl__qrange(q->dt, &qmin, &qmax);
    if (mdl__cv_is_const(c, x)) {
        int32_t t = mdl__cv_native(c, x);
        if (t < 0) return mdl__cv_status(c);
        cv_tensor src = c->ts[t];
        int32_t y = mdl__cv_tensor(c, src.name, q->dt, src.rank, src.dims, NULL);
        if (y < 0) return mdl__cv_status(c);
        void *d = mdl__cv_alloc(c, c->ts[y].bytes);
        if (!d) return oom(c);
        c->ts[y].data = d;
        const float *f = src.data;
        for (int64_t i = 0; i < src.count; i++) {
            int64_t k = q->n > 1 ? axis_index(src.rank, src.dims, q->axis, i) : 0;
            int32_t v = mdl__quantize_value(f[i], q->scale[k], (int32_t)q->zp[k], qmin, qmax);
            if (q->dt == MDL_DTYPE_INT8) ((int8_t *)d)[i] = (int8_t)v;
            else ((uint8_t *)d)[i] = (uint8_t)v;
        }
        if (out >= 0) mdl__cv_bind(c, out, y, NULL);
        return MDL_OK;
    }
    for (int32_t i = 0; i < q->n; i++)
        if (q->zp[i] < qmin || q->zp[i] > qmax)
            return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "zero point %lld out of range", (long long)q->zp[i]);
    int8_t perm[MDL_MAX_RANK];
    int32_t t;
    if (xv->flat_src >= 0) {
        mdl__cv_perm_identity(perm, xv->rank);
        t = mdl__cv_native(c, x);
    } else {
        memcpy(perm, xv->perm, sizeof perm);
        t = xv->t;
    }
    if (t < 0) return mdl__cv_status(c);
    cv_tensor src = c->ts[t];
    const char *name = out >= 0 ? val(c, out)->name : mdl__cv_fmt(c, "%s/quantized", src.name);
    int32_t y = mdl__cv_tensor(c, name, q->dt, src.rank, src.dims, NULL);
    if (y < 0) return mdl__cv_status(c);
    mdl_status st = mdl__cv_set_quant(c, y, q->n, q->scale, q->zp, phys(perm, src.rank, q->axis));
    if (!st) st = mdl__cv_emit_raw(c, MDL_OP_QUANTIZE, "", 1, &t, y);
    if (!st && out >= 0) mdl__cv_bind(c, out, y, perm);
    return st;
}

/* The parameters an 8-bit run-time tensor already carries, in native terms. */
static bool carried_qparams(cv_ctx *c, int32_t x, qparams *q) {
    const cv_value *xv = val(c, x);
    const cv_tensor *t = tens(c, x);
    if (mdl__cv_is_const(c, x) || !t->nquant || xv->flat_src >= 0 ||
        (t->dtype != MDL_DTYPE_INT8 && t->dtype != MDL_DTYPE_UINT8))
        return false;
    q->n = t->nquant;
    q->axis = t->nquant > 1 ? xv->perm[t->quant_axis] : 0;
    q->scale = t->scale;
    q->zp = t->zero_point;
    q->dt = t->dtype;
    return true;
}

/* ---- QOperator ops ------------------------------------------------------------------------- */

/* Lowers node n as the float op `as` with inputs fin (already float values) into a temporary,
   then quantizes that into out (qo NULL: the float result is out itself). */
static mdl_status lower_float(cv_ctx *c, node_t *n, const char *as, int nin, const int32_t *fin,
                              int32_t out, const qparams *qo) {
    Onnx__NodeProto f = *n;
    f.op_type = (char *)as;
    int32_t y = qo ? temp_value(c, "float") : out;
    if (y < 0) return mdl__cv_status(c);
    mdl_status st = mdl__cv_lower(c, &f, nin, fin, 1, &y);
    if (st || !qo) return st;
    return quantize(c, y, qo, out);
}

/* Input k of a QLinear op: value in[k] dequantized with scale in[k+1], zero point in[k+2];
   several scales are per index of axis (weights: their output channel). */
static int32_t qinput(cv_ctx *c, node_t *n, int nin, const int32_t *in, int k, const char *what,
                      int32_t axis) {
    if (k + 1 >= nin || in[k] < 0) {
        mdl__cv_fail(c, MDL_CORRUPT_MODEL, "input %s is missing", what);
        return -1;
    }
    const cv_value *x = val(c, in[k]);
    qparams q;
    if (read_qparams(c, n, in[k + 1], k + 2 < nin ? in[k + 2] : -1, x->rank, x->dims,
                     tens(c, in[k])->dtype, what, &q, axis < 0 ? x->rank + axis : axis))
        return -1;
    return dequantize(c, in[k], &q, -1);
}

/* Output quantization of a QLinear op from constants in[k], in[k+1]. */
static mdl_status qoutput(cv_ctx *c, int nin, const int32_t *in, int k, mdl_dtype dflt, qparams *q) {
    if (k >= nin || in[k] < 0) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "output scale is missing");
    mdl_status st = read_qparams(c, NULL, in[k], k + 1 < nin ? in[k + 1] : -1, 0, NULL, dflt, "output", q, 0);
    if (!st && q->n != 1) st = mdl__cv_fail(c, MDL_UNSUPPORTED, "per-axis output quantization");
    return st;
}

/* int32 bias of QLinearConv / QGemm: scale = x_scale * w_scale (per output channel), zero 0. */
static int32_t qbias(cv_ctx *c, int32_t bv, int32_t xs, int32_t ws) {
    const cv_tensor *b = tens(c, bv);
    if (!mdl__cv_is_const(c, bv) || b->dtype != MDL_DTYPE_INT32) {
        mdl__cv_fail(c, MDL_UNSUPPORTED, "bias must be an int32 constant");
        return -1;
    }
    const cv_tensor *s = tens(c, xs), *w = tens(c, ws);
    if (!mdl__cv_is_const(c, xs) || !mdl__cv_is_const(c, ws) || s->dtype != MDL_DTYPE_FLOAT32 ||
        w->dtype != MDL_DTYPE_FLOAT32 || s->count != 1 || (w->count != 1 && w->count != b->count)) {
        mdl__cv_fail(c, MDL_UNSUPPORTED, "bias scale: input and weight scales must be constants");
        return -1;
    }
    qparams q = {(int32_t)w->count, 0, NULL, NULL, MDL_DTYPE_INT32};
    q.scale = mdl__cv_alloc(c, sizeof(float) * (size_t)q.n);
    q.zp = mdl__cv_alloc(c, sizeof(int64_t) * (size_t)q.n);
    if (!q.scale || !q.zp) return oom(c), -1;
    for (int32_t i = 0; i < q.n; i++)
        q.scale[i] = ((const float *)s->data)[0] * ((const float *)w->data)[i];
    cv_tensor src = *b;
    int64_t n1 = src.count;
    int32_t t = dq_const(c, src.name, MDL_DTYPE_INT32, src.data, 1, &n1, &q);
    int32_t v = t < 0 ? -1 : temp_value(c, "bias");
    if (v >= 0) mdl__cv_bind(c, v, t, NULL);
    return v;
}

typedef enum qop_kind { Q_UNARY, Q_BINARY, Q_POOL, Q_CONCAT, Q_CONV, Q_MATMUL, Q_GEMM } qop_kind;

static const struct {
    const char *name, *as;
    qop_kind kind;
    bool ms; /* com.microsoft */
} qops[] = {
    {"QLinearConv", "Conv", Q_CONV, false},
    {"QLinearMatMul", "MatMul", Q_MATMUL, false},
    {"QGemm", "Gemm", Q_GEMM, true},
    {"QLinearAdd", "Add", Q_BINARY, true},
    {"QLinearMul", "Mul", Q_BINARY, true},
    {"QLinearSigmoid", "Sigmoid", Q_UNARY, true},
    {"QLinearLeakyRelu", "LeakyRelu", Q_UNARY, true},
    {"QLinearSoftmax", "Softmax", Q_UNARY, true},
    {"QLinearGlobalAveragePool", "GlobalAveragePool", Q_POOL, true},
    {"QLinearAveragePool", "AveragePool", Q_POOL, true},
    {"QLinearConcat", "Concat", Q_CONCAT, true},
};

static int find_qop(const char *op) {
    for (size_t i = 0; i < sizeof qops / sizeof qops[0]; i++)
        if (!strcmp(qops[i].name, op)) return (int)i;
    return -1;
}

static mdl_status lower_qop(cv_ctx *c, node_t *n, int k, int nin, const int32_t *in, const int32_t *out) {
    qparams qo;
    mdl_status st;
    int32_t f[MDL_MAX_NODE_IO];
    int nf = 0;
    mdl_dtype dt0 = nin > 0 && in[0] >= 0 ? tens(c, in[0])->dtype : MDL_DTYPE_UINT8;
    switch (qops[k].kind) {
    case Q_UNARY:
    case Q_POOL:
        if (mdl__cv_attr_int(n, "channels_last", 0))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "channels_last=1");
        if ((st = qoutput(c, nin, in, 3, dt0, &qo))) return st;
        if ((f[0] = qinput(c, n, nin, in, 0, "X", 0)) < 0) return mdl__cv_status(c);
        nf = 1;
        if (!strcmp(qops[k].as, "Softmax")) {
            /* the attribute "opset" says which Softmax semantics (axis default, flattening) */
            int64_t saved = c->opset;
            c->opset = mdl__cv_attr_int(n, "opset", saved);
            st = lower_float(c, n, qops[k].as, nf, f, out[0], &qo);
            c->opset = saved;
            return st;
        }
        break;
    case Q_BINARY:
        if ((st = qoutput(c, nin, in, 6, dt0, &qo))) return st;
        if ((f[0] = qinput(c, n, nin, in, 0, "A", 0)) < 0 || (f[1] = qinput(c, n, nin, in, 3, "B", 0)) < 0)
            return mdl__cv_status(c);
        nf = 2;
        break;
    case Q_CONCAT:
        if ((st = qoutput(c, nin, in, 0, dt0, &qo))) return st;
        for (int i = 2; i + 2 < nin + 1 && i < nin; i += 3) {
            if (nf == MDL_MAX_NODE_IO) return mdl__cv_fail(c, MDL_UNSUPPORTED, "too many inputs");
            if ((f[nf++] = qinput(c, n, nin, in, i, "input", 0)) < 0) return mdl__cv_status(c);
        }
        break;
    case Q_CONV:
    case Q_MATMUL:
        if ((st = qoutput(c, nin, in, 6, dt0, &qo))) return st;
        if ((f[0] = qinput(c, n, nin, in, 0, "x", 0)) < 0 ||
            (f[1] = qinput(c, n, nin, in, 3, "w", qops[k].kind == Q_CONV ? 0 : -1)) < 0)
            return mdl__cv_status(c);
        nf = 2;
        if (qops[k].kind == Q_CONV && nin > 8 && in[8] >= 0) {
            if ((f[2] = qbias(c, in[8], in[1], in[4])) < 0) return mdl__cv_status(c);
            nf = 3;
        }
        break;
    case Q_GEMM: {
        if (mdl__cv_attr_float(n, "alpha", 1.0f) != 1.0f)
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "alpha != 1");
        bool qout = nin > 7 && in[7] >= 0;
        if (qout && (st = qoutput(c, nin, in, 7, dt0, &qo))) return st;
        if (mdl__cv_attr_int(n, "transA", 0)) return mdl__cv_fail(c, MDL_UNSUPPORTED, "transA=1");
        if ((f[0] = qinput(c, n, nin, in, 0, "A", 0)) < 0 ||
            (f[1] = qinput(c, n, nin, in, 3, "B", mdl__cv_attr_int(n, "transB", 0) ? 0 : 1)) < 0)
            return mdl__cv_status(c);
        nf = 2;
        if (nin > 6 && in[6] >= 0) {
            if ((f[2] = qbias(c, in[6], in[1], in[4])) < 0) return mdl__cv_status(c);
            nf = 3;
        }
        return lower_float(c, n, "Gemm", nf, f, out[0], qout ? &qo : NULL);
    }
    }
    return lower_float(c, n, qops[k].as, nf, f, out[0], &qo);
}

/* ---- dynamic quantization ------------------------------------------------------------------ */

static void set_dyn(cv_ctx *c, int32_t v, int32_t t, int8_t kind, int32_t ref) {
    if (v < 0) return;
    cv_value *x = &c->vals[v];
    const cv_value *r = &c->vals[ref];
    x->defined = true;
    x->t = t;
    x->rank = r->rank;
    memcpy(x->dims, r->dims, sizeof x->dims);
    memcpy(x->perm, r->perm, sizeof x->perm);
    x->flat_src = x->native_t = x->alt_t = -1;
    x->dyn = kind;
    x->dyn_ref = ref;
}

/* MatMulInteger / ConvInteger on DynamicQuantizeLinear's output: the float op on x and the
   weight dequantized with scale 1 (W - w_zero_point); the Mul by x_scale * w_scale that follows
   applies the weight scale. */
static mdl_status lower_integer(cv_ctx *c, node_t *n, int nin, const int32_t *in, const int32_t *out,
                                bool conv) {
    if (nin < 2 || in[0] < 0 || in[1] < 0 || val(c, in[0])->dyn != CV_DYN_Q ||
        (nin > 2 && in[2] >= 0 && val(c, in[2])->dyn != CV_DYN_ZP))
        return mdl__cv_fail(c, MDL_UNSUPPORTED,
                            "only the dynamic quantization pattern is supported (input A from "
                            "DynamicQuantizeLinear, constant int8 weights)");
    int32_t x = val(c, in[0])->dyn_ref, w = in[1];
    if (!mdl__cv_is_const(c, w) || (tens(c, w)->dtype != MDL_DTYPE_INT8 && tens(c, w)->dtype != MDL_DTYPE_UINT8))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "weights must be an int8/uint8 constant");
    const cv_value *wv = val(c, w);
    qparams q = {1, 0, NULL, NULL, tens(c, w)->dtype};
    int32_t zv = nin > 3 ? in[3] : -1;
    int64_t nz = zv >= 0 ? tens(c, zv)->count : 1;
    if (zv >= 0 && (!mdl__cv_is_const(c, zv) || !int_dtype(tens(c, zv)->dtype)))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "weight zero point must be a constant");
    int32_t axis = conv ? 0 : wv->rank - 1;
    if (nz != 1 && (wv->rank < 1 || wv->dims[axis] != nz))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "weight zero point of %lld entries", (long long)nz);
    q.n = (int32_t)nz;
    q.axis = nz > 1 ? axis : 0;
    q.scale = mdl__cv_alloc(c, sizeof(float) * (size_t)nz);
    q.zp = mdl__cv_alloc(c, sizeof(int64_t) * (size_t)nz);
    if (!q.scale || !q.zp) return oom(c);
    for (int64_t i = 0; i < nz; i++) {
        q.scale[i] = 1.0f;
        q.zp[i] = zv >= 0 ? get_int(tens(c, zv)->dtype, tens(c, zv)->data, i) : 0;
    }
    int32_t wf = dequantize(c, w, &q, -1);
    if (wf < 0) return mdl__cv_status(c);
    int32_t f[2] = {x, wf};
    mdl_status st = lower_float(c, n, conv ? "Conv" : "MatMul", 2, f, out[0], NULL);
    if (!st && out[0] >= 0) c->vals[out[0]].dyn = CV_DYN_ACC;
    return st;
}

/* The Mul by the weight scale folded into the weights of the layer that produced acc (its
   weights were dequantized with scale 1): their quantization scale becomes w_scale, so the
   layer writes the scaled result and no Mul runs.  False when the layer or the scale does not
   allow it (then a Mul is emitted). */
static bool fold_weight_scale(cv_ctx *c, int32_t acc, int32_t sv, int32_t out) {
    int32_t at = val(c, acc)->t;
    int32_t p = c->ts[at].producer;
    if (out < 0 || p < 0 || !mdl__cv_is_const(c, sv) || tens(c, sv)->dtype != MDL_DTYPE_FLOAT32) return false;
    cv_node *n = &c->nodes[p];
    if (n->dead || n->out[0] != at || (n->nin > 2 && n->in[2] >= 0)) return false;
    int32_t qaxis;
    if (n->op == MDL_OP_FULLY_CONNECTED) {
        if (n->opt.fc.act.kind != MDL_ACT_NONE) return false;
        qaxis = 0;
    } else if (n->op == MDL_OP_CONV2D || n->op == MDL_OP_DEPTHWISE_CONV2D) {
        if (n->opt.conv.act.kind != MDL_ACT_NONE) return false;
        qaxis = 3;
    } else {
        return false;
    }
    cv_tensor *w = &c->ts[n->in[1]];
    const cv_tensor *st = tens(c, sv);
    int64_t C = w->dims[qaxis];
    if (!w->qdata || w->nquant != 1 || w->scale[0] != 1.0f || (st->count != 1 && st->count != C)) return false;
    /* the scale must broadcast as one value per output channel: [C] or [1, ..., C] */
    for (int32_t d = 0; d + 1 < st->rank; d++)
        if (st->dims[d] != 1) return false;
    int32_t nq = (int32_t)st->count;
    float *sc = mdl__cv_alloc(c, sizeof(float) * (size_t)nq);
    int64_t *zp = mdl__cv_alloc(c, sizeof(int64_t) * (size_t)nq);
    float *f = mdl__cv_alloc(c, w->bytes);
    if (!sc || !zp || !f) return false;
    for (int32_t k = 0; k < nq; k++) {
        sc[k] = ((const float *)st->data)[k];
        zp[k] = w->zero_point[0];
        if (!(sc[k] > 0.0f) || !isfinite(sc[k])) return false;
    }
    for (int64_t i = 0; i < w->count; i++) {
        int64_t k = nq > 1 ? axis_index(w->rank, w->dims, qaxis, i) : 0;
        f[i] = (float)(get_int(w->qdtype, w->qdata, i) - zp[k]) * sc[k];
    }
    w->data = f;
    w->nquant = nq;
    w->scale = sc;
    w->zero_point = zp;
    w->quant_axis = nq > 1 ? qaxis : 0;
    /* every value of the accumulator is now scaled: none may be scaled again */
    for (int32_t v = 0; v < c->nvals; v++)
        if (c->vals[v].t == at && c->vals[v].dyn == CV_DYN_ACC) c->vals[v].dyn = CV_DYN_NONE;
    const char *name = c->vals[out].name;
    c->vals[out] = c->vals[acc];
    c->vals[out].name = name;
    c->vals[out].dyn = CV_DYN_NONE;
    c->fused++;
    return true;
}

/* Mul of the pieces of the dynamic pattern. */
static mdl_status lower_dyn_mul(cv_ctx *c, node_t *n, const int32_t *in, const int32_t *out) {
    int8_t a = val(c, in[0])->dyn, b = val(c, in[1])->dyn;
    int32_t other = a ? in[1] : in[0];
    int8_t kind = a ? a : b, okind = a ? b : a;
    if (kind == CV_DYN_SCALE && !okind && mdl__cv_is_const(c, other)) {
        /* x_scale * w_scale: remembered, applied when the accumulator is scaled */
        set_dyn(c, out[0], c->vals[other].t, CV_DYN_SCALE_W, other);
        if (out[0] >= 0) c->vals[out[0]].dyn_ref = other;
        return MDL_OK;
    }
    if ((a == CV_DYN_ACC && b == CV_DYN_SCALE_W) || (a == CV_DYN_SCALE_W && b == CV_DYN_ACC)) {
        int32_t acc = a == CV_DYN_ACC ? in[0] : in[1], s = a == CV_DYN_ACC ? in[1] : in[0];
        if (fold_weight_scale(c, acc, val(c, s)->dyn_ref, out[0])) return MDL_OK;
        int32_t f[2] = {acc, val(c, s)->dyn_ref};
        return lower_float(c, n, "Mul", 2, f, out[0], NULL);
    }
    return mdl__cv_fail(c, MDL_UNSUPPORTED,
                        "a Mul of run-time quantization values that is not the quantize_dynamic "
                        "pattern (MatMulInteger -> Cast -> Mul by x_scale * w_scale)");
}

/* DynamicQuantizeLSTM (com.microsoft): LSTM with int8 W [dirs, in, 4H] and R [dirs, H, 4H]
   (transposed relative to ONNX LSTM), computed in float on the dequantized weights. */
static mdl_status lower_dyn_lstm(cv_ctx *c, node_t *n, int nin, const int32_t *in, int nout,
                                 const int32_t *out) {
    if (nin < 12) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "needs 12 inputs");
    int32_t f[7];
    for (int k = 0; k < 7; k++) f[k] = in[k];
    if (nin > 7 && in[7] >= 0) return mdl__cv_fail(c, MDL_UNSUPPORTED, "peepholes (input P)");
    for (int m = 0; m < 2; m++) {
        int32_t wv = in[1 + m], sv = in[8 + 2 * m], zv = in[9 + 2 * m];
        const cv_value *w = val(c, wv);
        if (!mdl__cv_is_const(c, wv) || w->rank != 3 ||
            (tens(c, wv)->dtype != MDL_DTYPE_INT8 && tens(c, wv)->dtype != MDL_DTYPE_UINT8))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "%s must be an int8 constant [dirs, in, 4H]", m ? "R" : "W");
        int64_t D = w->dims[0], I = w->dims[1], G = w->dims[2], td[3] = {D, G, I};
        qparams q;
        const cv_tensor *s = tens(c, sv), *z = zv >= 0 ? tens(c, zv) : NULL;
        /* one scale, or one per direction */
        if (!mdl__cv_is_const(c, sv) || s->dtype != MDL_DTYPE_FLOAT32 || (s->count != 1 && s->count != D) ||
            (z && (z->count != s->count || !mdl__cv_is_const(c, zv) || !int_dtype(z->dtype))))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "%s scale: one per tensor or per direction supported",
                                m ? "R" : "W");
        q.n = (int32_t)s->count;
        q.axis = 0;
        q.dt = tens(c, wv)->dtype;
        q.scale = mdl__cv_alloc(c, sizeof(float) * (size_t)q.n);
        q.zp = mdl__cv_alloc(c, sizeof(int64_t) * (size_t)q.n);
        if (!q.scale || !q.zp) return oom(c);
        for (int64_t d = 0; d < q.n; d++) {
            q.scale[d] = ((const float *)s->data)[d];
            q.zp[d] = z ? get_int(z->dtype, z->data, d) : 0;
        }
        /* transpose the integers to ONNX's [dirs, 4H, in] */
        const cv_tensor *src = tens(c, wv);
        size_t es = mdl_dtype_size(src->dtype);
        uint8_t *tq = mdl__cv_alloc(c, (size_t)src->count * es);
        if (!tq) return oom(c);
        for (int64_t d = 0; d < D; d++)
            for (int64_t i = 0; i < I; i++)
                for (int64_t g = 0; g < G; g++)
                    memcpy(tq + (size_t)((d * G + g) * I + i) * es,
                           (const uint8_t *)src->data + (size_t)((d * I + i) * G + g) * es, es);
        int32_t t = dq_const(c, mdl__cv_fmt(c, "%s/%s", c->node_name, m ? "R" : "W"), src->dtype, tq, 3, td, &q);
        int32_t v = t < 0 ? -1 : temp_value(c, m ? "R" : "W");
        if (v < 0) return mdl__cv_status(c);
        mdl__cv_bind(c, v, t, NULL);
        f[1 + m] = v;
    }
    Onnx__NodeProto l = *n;
    l.op_type = (char *)"LSTM";
    return mdl__cv_lower(c, &l, 7, f, nout, out);
}

/* ---- entry --------------------------------------------------------------------------------- */

/* Ops that move 8-bit data without arithmetic: on a quantized tensor they run as
   DEQUANTIZE -> float op -> QUANTIZE with the same parameters (exact), which the qdq pass folds
   back into the 8-bit op. */
static const char *const moves[] = {"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze",
                                    "Unsqueeze", "Identity", "Slice", "GlobalMaxPool", "Gather"};

bool mdl__cv_quant_op(const char *domain, const char *op) {
    bool ms = domain && !strcmp(domain, "com.microsoft");
    int k = find_qop(op);
    if (k >= 0) return qops[k].ms == ms || ms;
    if (ms) return !strcmp(op, "DynamicQuantizeLSTM");
    return !strcmp(op, "QuantizeLinear") || !strcmp(op, "DequantizeLinear") ||
           !strcmp(op, "DynamicQuantizeLinear") || !strcmp(op, "MatMulInteger") ||
           !strcmp(op, "ConvInteger");
}

mdl_status mdl__cv_lower_quant(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in,
                               int nout, const int32_t *out, bool *done) {
    const char *op = n->op_type;
    *done = true;
    bool any_dyn = false;
    for (int k = 0; k < nin; k++) any_dyn = any_dyn || (in[k] >= 0 && val(c, in[k])->dyn);
    if (any_dyn) {
        if (!strcmp(op, "Cast") && mdl__cv_attr_int(n, "to", 0) == 1 && val(c, in[0])->dyn == CV_DYN_ACC) {
            if (out[0] >= 0) {
                const char *name = c->vals[out[0]].name;
                c->vals[out[0]] = c->vals[in[0]];
                c->vals[out[0]].name = name;
            }
            c->removed++;
            return MDL_OK;
        }
        if (!strcmp(op, "Mul") && nin == 2) return lower_dyn_mul(c, n, in, out);
        if (!strcmp(op, "MatMulInteger") || !strcmp(op, "ConvInteger"))
            return lower_integer(c, n, nin, in, out, op[0] == 'C');
        for (int k = 0; k < nin; k++)
            if (in[k] >= 0 && val(c, in[k])->dyn)
                return mdl__cv_fail(c, MDL_UNSUPPORTED,
                                    "reads '%s', a run-time quantization value; only the "
                                    "quantize_dynamic pattern (DynamicQuantizeLinear -> "
                                    "MatMulInteger/ConvInteger -> Cast -> Mul) is supported",
                                    val(c, in[k])->name);
    }
    if (!strcmp(op, "DequantizeLinear") || !strcmp(op, "QuantizeLinear")) {
        if (nin < 2 || in[0] < 0) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "needs x and a scale");
        const cv_value *x = val(c, in[0]);
        bool dq = op[0] == 'D';
        mdl_dtype dflt = dq ? tens(c, in[0])->dtype : MDL_DTYPE_UINT8;
        int64_t odt = dq ? 0 : mdl__cv_attr_int(n, "output_dtype", 0);
        if (odt == 3) dflt = MDL_DTYPE_INT8;
        else if (odt && odt != 2)
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "output_dtype %s (int8 and uint8 supported)", mdl__onnx_type_name(odt));
        qparams q;
        /* opset < 13: per tensor only, but the axis attribute is read the same way */
        mdl_status st = read_qparams(c, n, in[1], nin > 2 ? in[2] : -1, x->rank, x->dims, dflt, "x", &q,
                                     AXIS_ATTR);
        if (st) return st;
        if (dq && q.dt != tens(c, in[0])->dtype)
            return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "zero point type differs from x");
        if (dq) return dequantize(c, in[0], &q, out[0]) < 0 ? mdl__cv_status(c) : MDL_OK;
        return quantize(c, in[0], &q, out[0]);
    }
    if (!strcmp(op, "DynamicQuantizeLinear")) {
        if (nin < 1 || in[0] < 0 || tens(c, in[0])->dtype != MDL_DTYPE_FLOAT32)
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "input must be float");
        if (mdl__cv_is_const(c, in[0]))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "dynamic quantization of a constant");
        int32_t t = val(c, in[0])->t;
        set_dyn(c, out[0], t, CV_DYN_Q, in[0]);
        if (nout > 1) set_dyn(c, out[1], t, CV_DYN_SCALE, in[0]);
        if (nout > 2) set_dyn(c, out[2], t, CV_DYN_ZP, in[0]);
        return MDL_OK;
    }
    if (!strcmp(op, "MatMulInteger") || !strcmp(op, "ConvInteger"))
        return lower_integer(c, n, nin, in, out, op[0] == 'C');
    if (!strcmp(op, "DynamicQuantizeLSTM")) return lower_dyn_lstm(c, n, nin, in, nout, out);
    int k = find_qop(op);
    if (k >= 0) {
        if (nout < 1 || out[0] < 0) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "no output");
        return lower_qop(c, n, k, nin, in, out);
    }
    /* a data-moving op on a quantized 8-bit tensor */
    qparams q;
    bool mv = false;
    for (size_t i = 0; i < sizeof moves / sizeof moves[0]; i++) mv = mv || !strcmp(moves[i], op);
    if (mv && nin >= 1 && in[0] >= 0 && nout >= 1 && out[0] >= 0 && carried_qparams(c, in[0], &q) &&
        q.n == 1) {
        int32_t f[MDL_MAX_NODE_IO];
        for (int i = 0; i < nin; i++) f[i] = in[i];
        if ((f[0] = dequantize(c, in[0], &q, -1)) < 0) return mdl__cv_status(c);
        if (nout > 1)
            for (int i = 1; i < nout; i++)
                if (out[i] >= 0) return mdl__cv_fail(c, MDL_UNSUPPORTED, "output %d on a quantized tensor", i);
        Onnx__NodeProto f2 = *n;
        int32_t y = temp_value(c, "float");
        if (y < 0) return mdl__cv_status(c);
        bool folded = false;
        mdl_status st = mdl__cv_fold(c, &f2, nin, f, 1, &y, &folded);
        if (!st && !folded) st = mdl__cv_lower(c, &f2, nin, f, 1, &y);
        if (st) return st;
        return quantize(c, y, &q, out[0]);
    }
    *done = false;
    return MDL_OK;
}
