/* The quantization pass of the converter (see qdq_host.h). */
#include "quant/qdq_host.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static mdl_status oom(cv_ctx *c) { return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory converting the model"); }

static void view(const cv_tensor *t, mdl__tensor *k) {
    memset(k, 0, sizeof *k);
    k->name = t->name;
    k->dtype = t->dtype;
    k->rank = t->rank;
    memcpy(k->dims, t->dims, sizeof k->dims);
    k->count = t->count;
    k->bytes = t->bytes;
    k->data = t->data;
    k->nquant = t->nquant;
    k->quant_axis = t->quant_axis;
    k->scale = t->scale;
    k->zero_point = t->zero_point;
}

static bool same_quant(const cv_tensor *a, const cv_tensor *b) {
    if (a->nquant != b->nquant || a->nquant < 1) return false;
    if (a->nquant > 1 && a->quant_axis != b->quant_axis) return false;
    for (int32_t i = 0; i < a->nquant; i++)
        if (a->scale[i] != b->scale[i] || a->zero_point[i] != b->zero_point[i]) return false;
    return true;
}

bool mdl__q8_moves_data(mdl_op op) {
    switch (op) {
    case MDL_OP_RESHAPE: case MDL_OP_TRANSPOSE: case MDL_OP_SLICE: case MDL_OP_GATHER:
    case MDL_OP_PAD: case MDL_OP_MAX_POOL2D: case MDL_OP_GLOBAL_MAX_POOL:
        return true;
    default: return false;
    }
}

bool mdl__q8_weighted(mdl_op op) {
    return op == MDL_OP_FULLY_CONNECTED || op == MDL_OP_CONV2D || op == MDL_OP_DEPTHWISE_CONV2D;
}

/* The integers of dequantized constant t as a constant tensor of their own. */
static int32_t int_const(cv_ctx *c, int32_t t) {
    cv_tensor s = c->ts[t];
    int32_t r = mdl__cv_tensor(c, s.name, s.qdtype, s.rank, s.dims, NULL);
    if (r < 0) return -1;
    c->ts[r].data = s.qdata;
    if (mdl__cv_copy_quant(c, r, t, s.quant_axis)) return -1;
    return r;
}

/* Are the integers of dequantized bias b those of the int32 bias the int8 kernel wants: zero
   point 0 and scale sx * sw[channel] (the kernel's own tolerance)? */
static bool bias_fits(const cv_tensor *b, const cv_tensor *x, const cv_tensor *w) {
    if (!b->qdata || b->qdtype != MDL_DTYPE_INT32 || x->nquant != 1 || w->nquant < 1) return false;
    if (b->nquant != 1 && b->nquant != b->count) return false;
    if (w->nquant != 1 && w->nquant != b->count) return false;
    for (int64_t i = 0; i < b->count; i++) {
        int64_t ib = b->nquant > 1 ? i : 0;
        if (b->zero_point[ib]) return false;
        double want = (double)x->scale[0] * (double)w->scale[w->nquant > 1 ? i : 0];
        double rel = ((double)b->scale[ib] - want) / want;
        if (rel > 1e-4 || rel < -1e-4) return false;
    }
    return true;
}

/* A float bias b of a weighted op whose input x and weight w are quantized, as int32 with the
   implied scale sx * sw[channel] (round half to even, the rounding onnxruntime's quantizer uses
   for the biases it quantizes itself).  -1 if a value does not fit int32 (the op then stays
   float) or if memory runs out (c->err set). */
static int32_t int_bias(cv_ctx *c, int32_t b, int32_t x, int32_t w) {
    const cv_tensor *bt = &c->ts[b], *xt = &c->ts[x], *wt = &c->ts[w];
    if (xt->nquant != 1 || wt->nquant < 1 || (wt->nquant > 1 && wt->nquant != bt->count)) return -1;
    int32_t *q = mdl__cv_alloc(c, sizeof(int32_t) * (size_t)(bt->count ? bt->count : 1));
    if (!q) {
        oom(c);
        return -1;
    }
    const float *f = bt->data;
    for (int64_t i = 0; i < bt->count; i++) {
        double s = (double)xt->scale[0] * (double)wt->scale[wt->nquant > 1 ? i : 0];
        double v = nearbyint((double)f[i] / s);
        if (!(v >= -2147483647.0 && v <= 2147483647.0)) return -1; /* also NaN */
        q[i] = (int32_t)v;
    }
    int32_t r = mdl__cv_tensor(c, mdl__cv_fmt(c, "%s/int32", bt->name), MDL_DTYPE_INT32, bt->rank, bt->dims, NULL);
    if (r < 0) return -1;
    c->ts[r].data = q;
    return r;
}

/* Does the int8 kernel of n's op accept these operands?  (prepare only; messages discarded) */
static bool int8_accepts(cv_ctx *c, const cv_node *n, const int32_t *in, int32_t out) {
    const mdl__kernel *k = mdl__kernel_find(n->op, MDL_DTYPE_INT8);
    if (!k) return false;
    mdl__tensor tin[MDL_MAX_NODE_IO], tout;
    mdl__kctx kc;
    memset(&kc, 0, sizeof kc);
    mdl_error e;
    memset(&e, 0, sizeof e);
    kc.op = n->op;
    kc.name = n->name;
    kc.opt = &n->opt;
    kc.nin = n->nin;
    kc.nout = 1;
    kc.err = &e;
    for (int32_t i = 0; i < n->nin; i++) {
        if (in[i] < 0) continue;
        view(&c->ts[in[i]], &tin[i]);
        kc.in[i] = &tin[i];
    }
    view(&c->ts[out], &tout);
    kc.out[0] = &tout;
    if (k->prepare(&kc)) return false;
    const mdl__shape *s = &kc.out_shape[0];
    return s->dtype == MDL_DTYPE_INT8 && s->rank == tout.rank &&
           !memcmp(s->dims, tout.dims, sizeof(int64_t) * (size_t)tout.rank);
}

/* Tries to make node i int8; *made when it did. */
static mdl_status try_node(cv_ctx *c, int32_t i, const int32_t *consumer, bool *made) {
    cv_node *n = &c->nodes[i];
    *made = false;
    if (n->nout != 1 || n->op == MDL_OP_QUANTIZE || n->op == MDL_OP_DEQUANTIZE) return MDL_OK;
    const cv_tensor *y = &c->ts[n->out[0]];
    if (y->dtype != MDL_DTYPE_FLOAT32 || y->uses != 1 || y->graph_output || consumer[n->out[0]] < 0)
        return MDL_OK;
    cv_node *q = &c->nodes[consumer[n->out[0]]];
    if (q->op != MDL_OP_QUANTIZE || q->dead || c->ts[q->out[0]].dtype != MDL_DTYPE_INT8) return MDL_OK;
    int32_t in[MDL_MAX_NODE_IO];
    int32_t data_in = -1, float_bias = -1;
    for (int32_t k = 0; k < n->nin; k++) {
        int32_t t = n->in[k];
        in[k] = -1;
        if (t < 0) continue;
        const cv_tensor *x = &c->ts[t];
        if (x->data) {
            if (mdl__q8_weighted(n->op) && k == 2 && x->dtype == MDL_DTYPE_FLOAT32 && in[0] >= 0 && in[1] <= -2 &&
                !bias_fits(x, &c->ts[in[0]], &c->ts[-2 - in[1]])) {
                /* a float bias, or one dequantized with other parameters (exporters share equal
                   initializers between layers): quantized below from its real values */
                float_bias = t;
                continue;
            }
            if (!x->qdata) return MDL_OK; /* a float constant: the op stays float */
            if (mdl__q8_weighted(n->op) && k == 1) {
                if (x->qdtype != MDL_DTYPE_INT8) return MDL_OK;
                for (int32_t j = 0; j < x->nquant; j++)
                    if (x->zero_point[j])
                        return mdl__error(c->err, MDL_UNSUPPORTED,
                                          "%s: weight '%s' is not symmetric: zero point %lld on channel %d "
                                          "(asymmetric int8 weights are not supported; quantize with "
                                          "symmetric weights, onnxruntime's default)",
                                          n->name, x->name, (long long)x->zero_point[j], (int)j);
            }
            in[k] = -2 - t; /* made an integer constant below, once the rewrite is decided */
            continue;
        }
        if (x->dtype != MDL_DTYPE_FLOAT32) {
            in[k] = t; /* indices and other integer operands stay */
            continue;
        }
        int32_t p = x->producer;
        if (p < 0 || c->nodes[p].op != MDL_OP_DEQUANTIZE || c->nodes[p].dead) return MDL_OK;
        in[k] = c->nodes[p].in[0];
        if (c->ts[in[k]].dtype != MDL_DTYPE_INT8 || c->ts[in[k]].nquant != 1) return MDL_OK;
        if (data_in < 0) data_in = in[k];
    }
    /* a constant int8 data operand (an embedding table) counts as the quantized input */
    for (int32_t k = 0; k < n->nin && data_in < 0; k++)
        if (in[k] <= -2 && c->ts[-2 - in[k]].qdtype == MDL_DTYPE_INT8 && !mdl__q8_weighted(n->op)) data_in = k;
    if (data_in < 0) return MDL_OK;
    if (float_bias >= 0 && (n->nin < 2 || in[1] > -2 || (in[2] = int_bias(c, float_bias, data_in, -2 - in[1])) == -1))
        return c->err->status ? c->err->status : MDL_OK;
    for (int32_t k = 0; k < n->nin; k++)
        if (in[k] <= -2 && (in[k] = int_const(c, -2 - in[k])) < 0) return c->err->status ? c->err->status : oom(c);
    n = &c->nodes[i];
    q = &c->nodes[consumer[n->out[0]]];
    if (mdl__q8_moves_data(n->op)) {
        /* exact only with unchanged parameters */
        for (int32_t k = 0; k < n->nin; k++)
            if (in[k] >= 0 && c->ts[in[k]].dtype == MDL_DTYPE_INT8 && !same_quant(&c->ts[in[k]], &c->ts[q->out[0]]))
                return MDL_OK;
    }
    if (!int8_accepts(c, n, in, q->out[0])) return MDL_OK;
    memcpy(n->in, in, sizeof(int32_t) * (size_t)n->nin);
    n->out[0] = q->out[0];
    c->ts[q->out[0]].producer = i;
    q->dead = true;
    *made = true;
    return MDL_OK;
}

/* DEQUANTIZE -> RESHAPE/TRANSPOSE (the layout changes the importer puts after a dequantized
   input) becomes RESHAPE/TRANSPOSE on the int8 data -> DEQUANTIZE, so that the op after it sees
   its DEQUANTIZE; and QUANTIZE(DEQUANTIZE(x)) with the same parameters is x.  Both are exact. */
static bool sink_and_cancel(cv_ctx *c) {
    bool changed = false;
    mdl__cv_analyze(c);
    for (int32_t mi = 0; mi < c->nnodes; mi++) {
        cv_node *m = &c->nodes[mi];
        if (m->dead || (m->op != MDL_OP_RESHAPE && m->op != MDL_OP_TRANSPOSE) || m->nin != 1) continue;
        const cv_tensor *x = &c->ts[m->in[0]];
        if (x->dtype != MDL_DTYPE_FLOAT32 || x->uses != 1 || x->graph_output || x->producer < 0) continue;
        int32_t di = x->producer;
        cv_node *d = &c->nodes[di];
        if (d->dead || d->op != MDL_OP_DEQUANTIZE) continue;
        int32_t q8 = d->in[0];
        if (c->ts[q8].dtype != MDL_DTYPE_INT8 || c->ts[q8].nquant != 1) continue;
        cv_tensor y = c->ts[m->out[0]];
        int32_t t8 = mdl__cv_tensor(c, mdl__cv_fmt(c, "%s/int8", y.name), MDL_DTYPE_INT8, y.rank, y.dims, NULL);
        if (t8 < 0 || mdl__cv_copy_quant(c, t8, q8, 0)) {
            c->err->status = MDL_OK; /* out of memory: leave the graph as it is */
            break;
        }
        m = &c->nodes[mi];
        d = &c->nodes[di];
        int32_t in8[1] = {q8};
        if (!int8_accepts(c, m, in8, t8)) continue;
        cv_node mv = *m, dq = *d;
        mv.in[0] = q8;
        mv.out[0] = t8;
        dq.in[0] = t8;
        dq.out[0] = m->out[0];
        c->nodes[di] = mv; /* q8 is available where the DEQUANTIZE read it */
        c->nodes[mi] = dq;
        changed = true;
        mdl__cv_analyze(c);
    }
    /* QUANTIZE(DEQUANTIZE(x)) -> x */
    int32_t *rep = malloc(sizeof(int32_t) * (size_t)(c->nts ? c->nts : 1));
    if (!rep) return changed;
    for (int32_t t = 0; t < c->nts; t++) rep[t] = t;
    mdl__cv_analyze(c);
    for (int32_t i = 0; i < c->nnodes; i++) {
        cv_node *q = &c->nodes[i];
        if (q->dead) continue;
        for (int32_t k = 0; k < q->nin; k++)
            if (q->in[k] >= 0) q->in[k] = rep[q->in[k]];
        if (q->op != MDL_OP_QUANTIZE || c->ts[q->out[0]].graph_output) continue;
        const cv_tensor *x = &c->ts[q->in[0]];
        if (x->producer < 0 || x->uses != 1 || x->graph_output) continue;
        cv_node *d = &c->nodes[x->producer];
        if (d->dead || d->op != MDL_OP_DEQUANTIZE) continue;
        const cv_tensor *a = &c->ts[d->in[0]], *b = &c->ts[q->out[0]];
        if (a->dtype != b->dtype || !same_quant(a, b)) continue;
        rep[q->out[0]] = d->in[0];
        q->dead = d->dead = true;
        c->removed += 2;
        changed = true;
    }
    free(rep);
    return changed;
}

/* Dequantized constants still read by float ops: integers + a DEQUANTIZE node before the first
   reader (nodes are rebuilt in order). */
static mdl_status dequantize_constants(cv_ctx *c) {
    int32_t n0 = c->nnodes;
    int32_t *dq = malloc(sizeof(int32_t) * (size_t)(c->nts ? c->nts : 1));
    cv_node *old = malloc(sizeof(cv_node) * (size_t)(n0 ? n0 : 1));
    if (!dq || !old) {
        free(dq);
        free(old);
        return oom(c);
    }
    memcpy(old, c->nodes, sizeof(cv_node) * (size_t)n0);
    int32_t nts0 = c->nts;
    for (int32_t t = 0; t < nts0; t++) dq[t] = -1;
    c->nnodes = 0;
    mdl_status st = MDL_OK;
    for (int32_t i = 0; i < n0 && !st; i++) {
        cv_node n = old[i];
        if (!n.dead) {
            for (int32_t k = 0; k < n.nin && !st; k++) {
                int32_t t = n.in[k];
                if (t < 0 || t >= nts0 || !c->ts[t].data || !c->ts[t].qdata || c->ts[t].dtype != MDL_DTYPE_FLOAT32)
                    continue;
                if (dq[t] < 0) {
                    int32_t it = int_const(c, t);
                    cv_tensor s = c->ts[t];
                    int32_t ft = it < 0 ? -1 : mdl__cv_tensor(c, mdl__cv_fmt(c, "%s/dequantized", s.name),
                                                              MDL_DTYPE_FLOAT32, s.rank, s.dims, NULL);
                    const char *saved = c->node_name;
                    c->node_name = mdl__cv_fmt(c, "%s/dequantize", s.name);
                    if (ft < 0 || (st = mdl__cv_emit_raw(c, MDL_OP_DEQUANTIZE, "", 1, &it, ft))) {
                        c->node_name = saved;
                        if (!st) st = c->err->status ? c->err->status : oom(c);
                        break;
                    }
                    c->node_name = saved;
                    dq[t] = ft;
                }
                n.in[k] = dq[t];
            }
        }
        if (st) break;
        /* append the (possibly dead) node itself */
        int32_t slot = c->nnodes;
        if (mdl__cv_emit_raw(c, MDL_OP_RESHAPE, "", 1, (int32_t[]){0}, 0)) {
            st = c->err->status ? c->err->status : oom(c);
            break;
        }
        c->nodes[slot] = n;
    }
    free(dq);
    free(old);
    return st;
}

/* int8 TRANSPOSE (batch dim kept) -> RESHAPE to [N, K] -> FULLY_CONNECTED: a Flatten of NHWC
   data in NCHW order before a dense layer, left int8 by sink_and_cancel.  The weight columns are
   permuted to the transpose input's element order and the TRANSPOSE is dropped, as the float
   lowering does for its lazy flatten (emit_fc): the same products, summed in another order in
   int32, so the result is unchanged, and firmware links no transpose kernel. */
static mdl_status fold_flatten_transpose(cv_ctx *c) {
    mdl__cv_analyze(c);
    for (int32_t i = 0; i < c->nnodes; i++) {
        cv_node *f = &c->nodes[i];
        if (f->dead || f->op != MDL_OP_FULLY_CONNECTED || f->nin < 2 || f->in[0] < 0 || f->in[1] < 0) continue;
        const cv_tensor *x = &c->ts[f->in[0]], *w = &c->ts[f->in[1]];
        if (x->dtype != MDL_DTYPE_INT8 || x->rank != 2 || x->uses != 1 || x->graph_output || x->producer < 0 ||
            w->dtype != MDL_DTYPE_INT8 || !w->data || w->rank != 2 || w->dims[1] != x->dims[1])
            continue;
        cv_node *rs = &c->nodes[x->producer];
        if (rs->dead || rs->op != MDL_OP_RESHAPE || rs->nin != 1 || rs->in[0] < 0) continue;
        const cv_tensor *u = &c->ts[rs->in[0]];
        if (u->uses != 1 || u->graph_output || u->producer < 0) continue;
        cv_node *tr = &c->nodes[u->producer];
        if (tr->dead || tr->op != MDL_OP_TRANSPOSE || tr->nin != 1 || tr->in[0] < 0) continue;
        const cv_tensor *s = &c->ts[tr->in[0]];
        const int32_t *perm = tr->opt.transpose.perm;
        int32_t r = s->rank;
        int64_t K = 1;
        for (int32_t d = 1; d < r; d++) K *= s->dims[d];
        if (s->dtype != MDL_DTYPE_INT8 || r < 2 || perm[0] != 0 || s->dims[0] != x->dims[0] || K != x->dims[1] ||
            K < 1 || w->dims[0] < 1)
            continue;
        int64_t N = w->dims[0];
        int8_t *W = mdl__cv_alloc(c, (size_t)(N * K));
        int32_t nw = W ? mdl__cv_tensor(c, mdl__cv_fmt(c, "%s/flat", w->name), MDL_DTYPE_INT8, 2, w->dims, NULL) : -1;
        if (nw < 0 || mdl__cv_copy_quant(c, nw, f->in[1], c->ts[f->in[1]].quant_axis))
            return c->err->status ? c->err->status : oom(c);
        f = &c->nodes[i];
        rs = &c->nodes[c->ts[f->in[0]].producer];
        tr = &c->nodes[c->ts[rs->in[0]].producer];
        s = &c->ts[tr->in[0]];
        const int8_t *W0 = c->ts[f->in[1]].data;
        /* walk the transpose input in row-major order (idx); its element lands at o[k] =
           idx[perm[k]] of the transposed tensor, whose flattened column the old weights used */
        int64_t idx[MDL_MAX_RANK] = {0};
        for (int64_t kp = 0; kp < K; kp++) {
            int64_t col = 0;
            for (int32_t k = 1; k < r; k++) col = col * s->dims[perm[k]] + idx[perm[k]];
            for (int64_t j = 0; j < N; j++) W[j * K + kp] = W0[j * K + col];
            for (int32_t d = r - 1; d >= 1 && ++idx[d] == s->dims[d]; d--) idx[d] = 0;
        }
        c->ts[nw].data = W;
        rs->in[0] = tr->in[0];
        f->in[1] = nw;
        tr->dead = true;
        c->removed++;
        mdl__cv_analyze(c);
    }
    return MDL_OK;
}

mdl_status mdl__qdq_pass(cv_ctx *c, int32_t *int8_ops) {
    int32_t made_count = 0;
    mdl__cv_analyze(c);
    /* uint8 activations -> int8, zero point - 128 */
    for (int32_t i = 0; i < c->nnodes; i++) {
        cv_node *n = &c->nodes[i];
        if (n->dead || n->op != MDL_OP_QUANTIZE) continue;
        cv_tensor *y = &c->ts[n->out[0]];
        if (y->dtype != MDL_DTYPE_UINT8 || y->graph_output) continue;
        y->dtype = MDL_DTYPE_INT8;
        for (int32_t k = 0; k < y->nquant; k++) y->zero_point[k] -= 128;
    }
    for (int round = 0; round < 16 && sink_and_cancel(c); round++) {
    }
    mdl__cv_analyze(c);
    int32_t *consumer = malloc(sizeof(int32_t) * (size_t)(c->nts ? c->nts : 1));
    if (!consumer) return oom(c);
    for (int32_t t = 0; t < c->nts; t++) consumer[t] = -1;
    for (int32_t i = 0; i < c->nnodes; i++) {
        const cv_node *n = &c->nodes[i];
        if (n->dead) continue;
        for (int32_t k = 0; k < n->nin; k++)
            if (n->in[k] >= 0) consumer[n->in[k]] = i;
    }
    mdl_status st = MDL_OK;
    int32_t nn = c->nnodes, nts = c->nts;
    for (int32_t i = 0; i < nn && !st; i++) {
        if (c->nodes[i].dead) continue;
        bool made;
        int32_t *cons = consumer;
        if (c->nts > nts) {
            /* int_const added tensors: they are constants, nobody's output */
            int32_t *g = realloc(consumer, sizeof(int32_t) * (size_t)c->nts);
            if (!g) {
                st = oom(c);
                break;
            }
            for (int32_t t = nts; t < c->nts; t++) g[t] = -1;
            consumer = cons = g;
            nts = c->nts;
        }
        st = try_node(c, i, cons, &made);
        made_count += made;
    }
    free(consumer);
    if (st) return st;
    mdl__cv_dead_code(c);
    if ((st = dequantize_constants(c))) return st;
    if ((st = fold_flatten_transpose(c))) return st;
    mdl__cv_dead_code(c);
    mdl__cv_analyze(c);
    if (int8_ops) *int8_ops = made_count;
    return MDL_OK;
}
