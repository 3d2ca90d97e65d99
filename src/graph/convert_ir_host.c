/* The converter's IR (see convert_host.h): tensors, values, node emission with constant folding
   through the runtime kernels, lazy layouts, the graph passes and the builder output. */
#include "graph/convert_host.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- memory and errors ------------------------------------------------------------------- */

void *mdl__cv_alloc(cv_ctx *c, size_t bytes) {
    if (c->nowned == c->cap_owned) {
        size_t cap = c->cap_owned ? 2 * c->cap_owned : 256;
        void **n = realloc(c->owned, cap * sizeof *n);
        if (!n) return NULL;
        c->owned = n;
        c->cap_owned = cap;
    }
    /* 16-byte alignment: tensor data is handed to kernels that may use aligned loads */
    void *p = aligned_alloc(16, mdl__align_up(bytes ? bytes : 1, 16));
    if (!p) return NULL;
    memset(p, 0, mdl__align_up(bytes ? bytes : 1, 16));
    c->owned[c->nowned++] = p;
    return p;
}

char *mdl__cv_strdup(cv_ctx *c, const char *s) {
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *d = mdl__cv_alloc(c, n);
    if (d) memcpy(d, s, n);
    return d;
}

char *mdl__cv_fmt(cv_ctx *c, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return mdl__cv_strdup(c, buf);
}

void mdl__cv_free(cv_ctx *c) {
    for (size_t i = 0; i < c->nowned; i++) free(c->owned[i]);
    free(c->owned);
    free(c->ts);
    free(c->nodes);
    free(c->vals);
    free(c->map);
    free(c->inputs);
    free(c->outputs);
    memset(c, 0, sizeof *c);
}

mdl_status mdl__cv_fail(cv_ctx *c, mdl_status st, const char *fmt, ...) {
    char msg[MDL_ERROR_MSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->op_type)
        return mdl__error(c->err, st, "%s '%s' (opset %lld): %s", c->op_type,
                          c->node_name ? c->node_name : "", (long long)c->opset, msg);
    return mdl__error(c->err, st, "%s", msg);
}

static mdl_status oom(cv_ctx *c) { return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory converting the model"); }

static bool grow(void **arr, int32_t *cap, int32_t need, size_t elem) {
    if (need <= *cap) return true;
    int32_t ncap = *cap ? *cap : 64;
    while (ncap < need) ncap *= 2;
    void *n = realloc(*arr, (size_t)ncap * elem);
    if (!n) return false;
    *arr = n;
    *cap = ncap;
    return true;
}

/* ---- tensors and values ------------------------------------------------------------------ */

int32_t mdl__cv_tensor(cv_ctx *c, const char *name, mdl_dtype dtype, int32_t rank,
                       const int64_t *dims_in, const void *data) {
    /* dims may point into c->ts, which grow() can move */
    int64_t dims[MDL_MAX_RANK];
    if (rank < 0 || rank > MDL_MAX_RANK) {
        mdl__cv_fail(c, MDL_UNSUPPORTED, "tensor '%s' has rank %d", name, (int)rank);
        return -1;
    }
    for (int32_t i = 0; i < rank; i++) dims[i] = dims_in[i];
    if (!grow((void **)&c->ts, &c->cap_ts, c->nts + 1, sizeof *c->ts)) {
        oom(c);
        return -1;
    }
    cv_tensor *t = &c->ts[c->nts];
    memset(t, 0, sizeof *t);
    t->name = mdl__cv_strdup(c, name);
    t->dtype = dtype;
    t->rank = rank;
    t->producer = -1;
    for (int32_t i = 0; i < rank; i++) t->dims[i] = dims[i];
    if (!mdl__shape_size(rank, t->dims, mdl_dtype_size(dtype), &t->count, &t->bytes)) {
        mdl__cv_fail(c, MDL_SHAPE, "tensor '%s' has a negative or too large shape", name);
        return -1;
    }
    if (!t->name) {
        oom(c);
        return -1;
    }
    if (data) {
        t->data = mdl__cv_alloc(c, t->bytes);
        if (!t->data) {
            oom(c);
            return -1;
        }
        memcpy(t->data, data, t->bytes);
    }
    return c->nts++;
}

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

int32_t mdl__cv_value_find(const cv_ctx *c, const char *name) {
    if (!c->map_cap) return -1;
    for (uint32_t i = hash_str(name) & (c->map_cap - 1);; i = (i + 1) & (c->map_cap - 1)) {
        int32_t v = c->map[i];
        if (!v) return -1;
        if (strcmp(c->vals[v - 1].name, name) == 0) return v - 1;
    }
}

static bool map_insert(cv_ctx *c, int32_t v) {
    if ((uint32_t)(c->nvals + 1) * 2 > c->map_cap) {
        uint32_t cap = c->map_cap ? c->map_cap * 2 : 256;
        int32_t *m = calloc(cap, sizeof *m);
        if (!m) return false;
        free(c->map);
        c->map = m;
        c->map_cap = cap;
        for (int32_t k = 0; k < c->nvals; k++)
            if (k != v) map_insert(c, k);
    }
    for (uint32_t i = hash_str(c->vals[v].name) & (c->map_cap - 1);; i = (i + 1) & (c->map_cap - 1))
        if (!c->map[i]) {
            c->map[i] = v + 1;
            return true;
        }
}

int32_t mdl__cv_value(cv_ctx *c, const char *name) {
    int32_t v = mdl__cv_value_find(c, name);
    if (v >= 0) return v;
    if (!grow((void **)&c->vals, &c->cap_vals, c->nvals + 1, sizeof *c->vals)) return oom(c), -1;
    v = c->nvals;
    cv_value *x = &c->vals[v];
    memset(x, 0, sizeof *x);
    x->name = mdl__cv_strdup(c, name);
    x->t = x->flat_src = x->native_t = x->alt_t = -1;
    if (!x->name) return oom(c), -1;
    c->nvals++;
    if (!map_insert(c, v)) {
        c->nvals--;
        return oom(c), -1;
    }
    return v;
}

bool mdl__cv_perm_is_identity(const int8_t *perm, int32_t rank) {
    for (int32_t i = 0; i < rank; i++)
        if (perm[i] != i) return false;
    return true;
}

void mdl__cv_perm_identity(int8_t *perm, int32_t rank) {
    for (int32_t i = 0; i < MDL_MAX_RANK; i++) perm[i] = (int8_t)(i < rank ? i : 0);
}

void mdl__cv_bind(cv_ctx *c, int32_t v, int32_t t, const int8_t *perm) {
    cv_value *x = &c->vals[v];
    const cv_tensor *tt = &c->ts[t];
    x->defined = true;
    x->t = t;
    x->rank = tt->rank;
    x->flat_src = -1;
    if (perm) memcpy(x->perm, perm, sizeof x->perm);
    else mdl__cv_perm_identity(x->perm, tt->rank);
    for (int32_t i = 0; i < tt->rank; i++) x->dims[x->perm[i]] = tt->dims[i];
    x->native_t = mdl__cv_perm_is_identity(x->perm, x->rank) ? t : -1;
    x->alt_t = -1;
}

bool mdl__cv_is_const(const cv_ctx *c, int32_t v) {
    return v >= 0 && c->vals[v].t >= 0 && c->ts[c->vals[v].t].data != NULL;
}

const void *mdl__cv_data(const cv_ctx *c, int32_t v) {
    return mdl__cv_is_const(c, v) ? c->ts[c->vals[v].t].data : NULL;
}

/* ---- emission and constant folding ------------------------------------------------------- */

static void kernel_tensor(const cv_tensor *t, mdl__tensor *k) {
    memset(k, 0, sizeof *k);
    k->name = t->name;
    k->dtype = t->dtype;
    k->rank = t->rank;
    memcpy(k->dims, t->dims, sizeof k->dims);
    k->count = t->count;
    k->bytes = t->bytes;
    k->data = t->data;
    if (t->dtype != MDL_DTYPE_FLOAT32 && t->nquant) {
        k->nquant = t->nquant;
        k->quant_axis = t->quant_axis;
        k->scale = t->scale;
        k->zero_point = t->zero_point;
    }
}

mdl_status mdl__cv_emit(cv_ctx *c, mdl_op op, const char *suffix, int nin, const int32_t *in,
                        int nout, int32_t *out, const mdl_op_options *opt, int32_t decl_rank,
                        const int64_t *decl_dims) {
    if (nin < 1 || nin > MDL_MAX_NODE_IO || nout < 1 || nout > CV_MAX_OUT || in[0] < 0)
        return mdl__cv_fail(c, MDL_INTERNAL, "bad %s node", mdl_op_name(op));
    mdl_dtype dt = c->ts[in[0]].dtype;
    const mdl__kernel *k = mdl__kernel_find(op, dt);
    if (!k)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "the runtime has no %s kernel for %s data",
                            mdl_op_name(op), mdl_dtype_name(dt));
    const char *base = c->node_name ? c->node_name : mdl_op_name(op);
    char *name = suffix && *suffix ? mdl__cv_fmt(c, "%s/%s", base, suffix) : mdl__cv_strdup(c, base);
    if (!name) return oom(c);
    mdl__tensor tk[MDL_MAX_NODE_IO], tdecl, tout[CV_MAX_OUT];
    mdl_op_options o = opt ? *opt : mdl_op_options_default(op);
    mdl__kctx kc;
    memset(&kc, 0, sizeof kc);
    kc.op = op;
    kc.name = name;
    kc.opt = &o;
    kc.nin = nin;
    kc.nout = nout;
    kc.err = c->err;
    bool all_const = true;
    for (int i = 0; i < nin; i++) {
        if (in[i] < 0) continue;
        kernel_tensor(&c->ts[in[i]], &tk[i]);
        kc.in[i] = &tk[i];
        if (!c->ts[in[i]].data) all_const = false;
    }
    if (decl_dims) {
        memset(&tdecl, 0, sizeof tdecl);
        tdecl.name = name;
        tdecl.dtype = dt;
        tdecl.rank = decl_rank;
        for (int32_t i = 0; i < decl_rank; i++) tdecl.dims[i] = decl_dims[i];
        if (!mdl__shape_size(decl_rank, tdecl.dims, mdl_dtype_size(dt), &tdecl.count, &tdecl.bytes))
            return mdl__cv_fail(c, MDL_SHAPE, "bad %s output shape", mdl_op_name(op));
        kc.out[0] = &tdecl;
    }
    mdl_status st = k->prepare(&kc);
    if (st) {
        /* the kernel names the runtime op and node; add the ONNX context */
        char msg[MDL_ERROR_MSG_SIZE];
        memcpy(msg, c->err->msg, sizeof msg);
        return mdl__cv_fail(c, st, "%s", msg);
    }
    for (int j = 0; j < nout; j++) {
        const mdl__shape *s = &kc.out_shape[j];
        char *tn = j ? mdl__cv_fmt(c, "%s:%d", name, j) : name;
        out[j] = tn ? mdl__cv_tensor(c, tn, s->dtype, s->rank, s->dims, NULL) : -1;
        if (out[j] < 0) return c->err->status ? c->err->status : oom(c);
    }
    /* run-time view of the outputs (SLICE reads its declared output shape) */
    for (int j = 0; j < nout; j++) {
        kernel_tensor(&c->ts[out[j]], &tout[j]);
        kc.out[j] = &tout[j];
    }
    /* A SLICE of a constant to the size of a dynamic dim (position ids[:, :seq]) stays a node:
       folded, it would be a constant the runtime cannot resize (convert_dyn_host.c). */
    for (int32_t d = 0; all_const && op == MDL_OP_SLICE && d < c->ts[out[0]].rank; d++)
        for (int32_t s = 0; s < c->nsyms; s++)
            if (c->ts[out[0]].dims[d] == mdl__cv_probe_size(0, s) ||
                c->ts[out[0]].dims[d] == mdl__cv_probe_size(1, s))
                all_const = false;
    if (all_const && !c->nofold) {
        /* Constant folding: run the kernel now; the outputs become constants. */
        void *scratch = kc.scratch_bytes ? mdl__cv_alloc(c, kc.scratch_bytes) : NULL;
        if (kc.scratch_bytes && !scratch) return oom(c);
        for (int i = 0; i < nin; i++) kc.in_data[i] = in[i] >= 0 ? c->ts[in[i]].data : NULL;
        for (int j = 0; j < nout; j++) {
            cv_tensor *t = &c->ts[out[j]];
            t->data = mdl__cv_alloc(c, t->bytes);
            if (!t->data) return oom(c);
            kc.out_data[j] = t->data;
        }
        kc.scratch = scratch;
        if ((st = k->run(&kc))) return st;
        return MDL_OK;
    }
    if (!grow((void **)&c->nodes, &c->cap_nodes, c->nnodes + 1, sizeof *c->nodes)) return oom(c);
    cv_node *n = &c->nodes[c->nnodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->name = name;
    n->nin = nin;
    n->nout = nout;
    memcpy(n->in, in, sizeof(int32_t) * (size_t)nin);
    memcpy(n->out, out, sizeof(int32_t) * (size_t)nout);
    n->opt = o;
    for (int j = 0; j < nout; j++) c->ts[out[j]].producer = c->nnodes;
    c->nnodes++;
    return MDL_OK;
}

mdl_status mdl__cv_emit_raw(cv_ctx *c, mdl_op op, const char *suffix, int nin, const int32_t *in,
                            int32_t out) {
    if (nin < 1 || nin > MDL_MAX_NODE_IO || out < 0)
        return mdl__cv_fail(c, MDL_INTERNAL, "bad %s node", mdl_op_name(op));
    const char *base = c->node_name ? c->node_name : mdl_op_name(op);
    char *name = suffix && *suffix ? mdl__cv_fmt(c, "%s/%s", base, suffix) : mdl__cv_strdup(c, base);
    if (!name) return oom(c);
    if (!grow((void **)&c->nodes, &c->cap_nodes, c->nnodes + 1, sizeof *c->nodes)) return oom(c);
    cv_node *n = &c->nodes[c->nnodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->name = name;
    n->nin = nin;
    n->nout = 1;
    memcpy(n->in, in, sizeof(int32_t) * (size_t)nin);
    n->out[0] = out;
    n->opt = mdl_op_options_default(op);
    c->ts[out].producer = c->nnodes++;
    return MDL_OK;
}

mdl_status mdl__cv_set_quant(cv_ctx *c, int32_t t, int32_t n, const float *scale,
                             const int64_t *zero_point, int32_t axis) {
    float *s = mdl__cv_alloc(c, sizeof(float) * (size_t)n);
    int64_t *z = mdl__cv_alloc(c, sizeof(int64_t) * (size_t)n);
    if (!s || !z) return oom(c);
    memcpy(s, scale, sizeof(float) * (size_t)n);
    if (zero_point) memcpy(z, zero_point, sizeof(int64_t) * (size_t)n);
    cv_tensor *x = &c->ts[t];
    x->nquant = n;
    x->scale = s;
    x->zero_point = z;
    x->quant_axis = n > 1 ? axis : 0;
    return MDL_OK;
}

mdl_status mdl__cv_copy_quant(cv_ctx *c, int32_t dst, int32_t src, int32_t new_axis) {
    const cv_tensor *s = &c->ts[src];
    if (!s->nquant) return MDL_OK;
    return mdl__cv_set_quant(c, dst, s->nquant, s->scale, s->zero_point, new_axis);
}

int32_t mdl__cv_emit1(cv_ctx *c, mdl_op op, const char *suffix, int nin, const int32_t *in,
                      const mdl_op_options *opt) {
    int32_t out;
    return mdl__cv_emit(c, op, suffix, nin, in, 1, &out, opt, 0, NULL) ? -1 : out;
}

int32_t mdl__cv_reshape(cv_ctx *c, int32_t t, int32_t rank, const int64_t *dims) {
    const cv_tensor *x = &c->ts[t];
    if (x->rank == rank && memcmp(x->dims, dims, sizeof(int64_t) * (size_t)rank) == 0) return t;
    if (x->data && x->qdata) {
        /* a dequantized constant: same elements, new shape; a per-channel axis must survive as
           the one dim of its size (bias [C] <-> [1, C, 1, 1]) */
        int32_t axis = 0;
        if (x->nquant > 1) {
            axis = -1;
            for (int32_t i = 0; i < rank; i++)
                if (dims[i] == x->nquant && dims[i] == x->count) axis = i;
        }
        if (axis >= 0) {
            cv_tensor src = *x;
            int32_t r = mdl__cv_tensor(c, src.name, src.dtype, rank, dims, NULL);
            if (r < 0) return -1;
            c->ts[r].data = src.data;
            c->ts[r].qdata = src.qdata;
            c->ts[r].qdtype = src.qdtype;
            if (mdl__cv_copy_quant(c, r, t, axis)) return -1;
            return r;
        }
    }
    int32_t out;
    return mdl__cv_emit(c, MDL_OP_RESHAPE, "reshape", 1, &t, 1, &out, NULL, rank, dims) ? -1 : out;
}

int32_t mdl__cv_transpose(cv_ctx *c, int32_t t, const int8_t *perm) {
    const cv_tensor *x = &c->ts[t];
    int64_t od[MDL_MAX_RANK];
    int32_t last = -1;
    bool moves = false;
    for (int32_t i = 0; i < x->rank; i++) {
        od[i] = x->dims[perm[i]];
        if (od[i] == 1) continue;
        if (perm[i] < last) moves = true;
        last = perm[i];
    }
    /* Only size-1 dims change place: the element order is unchanged. */
    if (!moves) return mdl__cv_reshape(c, t, x->rank, od);
    mdl_op_options o = mdl_op_options_default(MDL_OP_TRANSPOSE);
    for (int32_t i = 0; i < x->rank; i++) o.transpose.perm[i] = perm[i];
    return mdl__cv_emit1(c, MDL_OP_TRANSPOSE, "transpose", 1, &t, &o);
}

int32_t mdl__cv_phys(cv_ctx *c, int32_t v, const int8_t *want) {
    cv_value *x = &c->vals[v];
    int8_t id[MDL_MAX_RANK];
    mdl__cv_perm_identity(id, x->rank);
    if (!want) want = id;
    bool want_native = mdl__cv_perm_is_identity(want, x->rank);
    if (x->flat_src >= 0) {
        if (x->native_t < 0) {
            int32_t s = mdl__cv_phys(c, c->vals[v].flat_src, NULL);
            if (s < 0) return -1;
            x = &c->vals[v];
            int32_t r = mdl__cv_reshape(c, s, x->rank, x->dims);
            if (r < 0) return -1;
            c->vals[v].native_t = r;
        }
        x = &c->vals[v];
        return want_native ? x->native_t : mdl__cv_transpose(c, x->native_t, want);
    }
    if (memcmp(x->perm, want, (size_t)x->rank) == 0) return x->t;
    if (want_native && x->native_t >= 0) return x->native_t;
    if (x->alt_t >= 0 && memcmp(x->alt_perm, want, (size_t)x->rank) == 0) return x->alt_t;
    int8_t inv[MDL_MAX_RANK], tp[MDL_MAX_RANK];
    for (int32_t i = 0; i < x->rank; i++) inv[x->perm[i]] = (int8_t)i;
    for (int32_t i = 0; i < x->rank; i++) tp[i] = inv[want[i]];
    int32_t r = mdl__cv_transpose(c, x->t, tp);
    x = &c->vals[v];
    if (r >= 0 && want_native) x->native_t = r;
    else if (r >= 0) {
        x->alt_t = r;
        memcpy(x->alt_perm, want, (size_t)x->rank);
    }
    return r;
}

/* ---- passes ------------------------------------------------------------------------------ */

/* Recomputes producers and use counts over the live nodes. */
void mdl__cv_analyze(cv_ctx *c) {
    for (int32_t t = 0; t < c->nts; t++) {
        c->ts[t].uses = 0;
        c->ts[t].producer = -1;
        c->ts[t].graph_output = false;
    }
    for (int32_t i = 0; i < c->nnodes; i++) {
        const cv_node *n = &c->nodes[i];
        if (n->dead) continue;
        for (int32_t k = 0; k < n->nin; k++)
            if (n->in[k] >= 0) c->ts[n->in[k]].uses++;
        for (int32_t k = 0; k < n->nout; k++)
            if (n->out[k] >= 0) c->ts[n->out[k]].producer = i;
    }
    for (int32_t k = 0; k < c->noutputs; k++) {
        c->ts[c->outputs[k]].uses++;
        c->ts[c->outputs[k]].graph_output = true;
    }
}

static mdl_fused_act *fused_act(cv_node *n) {
    switch (n->op) {
    case MDL_OP_CONV2D:
    case MDL_OP_DEPTHWISE_CONV2D: return &n->opt.conv.act;
    case MDL_OP_FULLY_CONNECTED: return &n->opt.fc.act;
    case MDL_OP_ADD:
    case MDL_OP_SUB:
    case MDL_OP_MUL:
    case MDL_OP_DIV: return &n->opt.binary.act;
    default: return NULL;
    }
}

/* The producer of tensor t when it is a weighted layer (CONV2D, DEPTHWISE_CONV2D,
   FULLY_CONNECTED with constant weights and bias) whose output only feeds one consumer and has
   no activation yet; NULL otherwise.  *cout receives its output channels. */
static cv_node *weighted_producer(cv_ctx *c, int32_t t, int64_t *cout) {
    const cv_tensor *x = &c->ts[t];
    if (x->producer < 0 || x->uses != 1 || x->graph_output) return NULL;
    cv_node *p = &c->nodes[x->producer];
    if (p->op != MDL_OP_CONV2D && p->op != MDL_OP_DEPTHWISE_CONV2D && p->op != MDL_OP_FULLY_CONNECTED)
        return NULL;
    if (fused_act(p)->kind != MDL_ACT_NONE || p->out[0] != t) return NULL;
    const cv_tensor *w = &c->ts[p->in[1]];
    if (w->dtype != MDL_DTYPE_FLOAT32 || c->ts[p->in[0]].dtype != MDL_DTYPE_FLOAT32) return NULL;
    if (!w->data || (p->nin > 2 && p->in[2] >= 0 && !c->ts[p->in[2]].data)) return NULL;
    *cout = p->op == MDL_OP_FULLY_CONNECTED ? w->dims[0] : w->dims[3];
    return p;
}

/* Replaces p's weights by W * s[oc] and its bias by bias * s + add (new constant tensors: the
   old ones may be shared with other nodes). */
static bool rescale_layer(cv_ctx *c, cv_node *p, const double *s, const double *add, int64_t C) {
    const cv_tensor w = c->ts[p->in[1]]; /* a copy: adding tensors may move c->ts */
    /* only a bias to add: the weights stay (and keep their integers when dequantized) */
    int32_t nw = s ? mdl__cv_tensor(c, w.name, w.dtype, w.rank, w.dims, w.data) : p->in[1];
    if (nw < 0) return false;
    float *wd = c->ts[nw].data;
    int64_t count = c->ts[nw].count;
    if (s) {
        if (p->op == MDL_OP_FULLY_CONNECTED) { /* [out, in] */
            int64_t per = count / C;
            for (int64_t i = 0; i < count; i++) wd[i] = (float)(wd[i] * s[i / per]);
        } else { /* conv weights: output channels last */
            for (int64_t i = 0; i < count; i++) wd[i] = (float)(wd[i] * s[i % C]);
        }
    }
    const float *ob = p->nin > 2 && p->in[2] >= 0 ? c->ts[p->in[2]].data : NULL;
    int32_t nb = mdl__cv_tensor(c, mdl__cv_fmt(c, "%s/bias", p->name), MDL_DTYPE_FLOAT32, 1, &C, NULL);
    if (nb < 0) return false;
    float *bd = c->ts[nb].data = mdl__cv_alloc(c, (size_t)C * sizeof(float));
    if (!bd) return false;
    for (int64_t i = 0; i < C; i++)
        bd[i] = (float)((ob ? ob[i] : 0.0) * (s ? s[i] : 1.0) + (add ? add[i] : 0.0));
    p->in[1] = nw;
    p->in[2] = nb;
    p->nin = 3;
    return true;
}

/* Node n (one input from p, one output) folded into its producer p: p now writes n's output. */
static void absorb(cv_ctx *c, cv_node *p, cv_node *n) {
    p->out[0] = n->out[0];
    c->ts[n->out[0]].producer = (int32_t)(p - c->nodes);
    n->dead = true;
    c->fused++;
}

/* BatchNorm after Conv/DepthwiseConv/FC: W' = W * s, b' = (b - mean) * s + beta,
   s = gamma / sqrt(var + eps). */
static bool fold_batch_norm(cv_ctx *c) {
    bool changed = false;
    for (int32_t i = 0; i < c->nnodes; i++) {
        cv_node *n = &c->nodes[i];
        if (n->dead || n->op != MDL_OP_BATCH_NORM) continue;
        int64_t C;
        cv_node *p = weighted_producer(c, n->in[0], &C);
        if (!p) continue;
        bool ok = true;
        for (int k = 1; k < 5; k++) ok = ok && c->ts[n->in[k]].data && c->ts[n->in[k]].count == C;
        if (!ok) continue;
        const float *g = c->ts[n->in[1]].data, *be = c->ts[n->in[2]].data;
        const float *m = c->ts[n->in[3]].data, *v = c->ts[n->in[4]].data;
        double *s = malloc((size_t)C * 2 * sizeof(double));
        if (!s) continue;
        double *add = s + C;
        for (int64_t k = 0; k < C; k++) {
            s[k] = (double)g[k] / sqrt((double)v[k] + (double)n->opt.batch_norm.epsilon);
            add[k] = (double)be[k] - (double)m[k] * s[k];
        }
        ok = rescale_layer(c, p, s, add, C);
        free(s);
        if (!ok) continue;
        absorb(c, p, n);
        changed = true;
    }
    return changed;
}

/* Add/Sub of a per-channel constant after a weighted layer: into its bias. */
static bool fold_bias(cv_ctx *c) {
    bool changed = false;
    for (int32_t i = 0; i < c->nnodes; i++) {
        cv_node *n = &c->nodes[i];
        if (n->dead || (n->op != MDL_OP_ADD && n->op != MDL_OP_SUB)) continue;
        if (n->opt.binary.act.kind != MDL_ACT_NONE) continue;
        for (int side = 0; side < 2; side++) {
            if (n->op == MDL_OP_SUB && side == 0) continue; /* const - x is not a bias */
            int32_t xt = n->in[side], bt = n->in[1 - side];
            const cv_tensor *b = &c->ts[bt], *x = &c->ts[xt];
            int64_t C;
            if (!b->data || b->dtype != MDL_DTYPE_FLOAT32) continue;
            cv_node *p = weighted_producer(c, xt, &C);
            if (!p || b->rank > x->rank) continue;
            /* every dim of b is 1 except possibly the last, which is C */
            bool ok = b->count == C || b->count == 1;
            for (int32_t d = 0; ok && d + 1 < b->rank; d++) ok = b->dims[d] == 1;
            if (!ok) continue;
            double *add = malloc((size_t)C * sizeof(double));
            if (!add) continue;
            const float *bd = b->data;
            for (int64_t k = 0; k < C; k++)
                add[k] = (n->op == MDL_OP_SUB ? -1.0 : 1.0) * bd[b->count == 1 ? 0 : k];
            ok = rescale_layer(c, p, NULL, add, C);
            free(add);
            if (!ok) continue;
            absorb(c, p, n);
            changed = true;
            break;
        }
    }
    return changed;
}

/* Relu / Clip into the epilogue of the producing Conv/FC/binary op. */
static bool fuse_activations(cv_ctx *c) {
    bool changed = false;
    for (int32_t i = 0; i < c->nnodes; i++) {
        cv_node *n = &c->nodes[i];
        if (n->dead || (n->op != MDL_OP_RELU && n->op != MDL_OP_CLIP)) continue;
        const cv_tensor *x = &c->ts[n->in[0]];
        if (x->producer < 0 || x->uses != 1 || x->graph_output) continue;
        cv_node *p = &c->nodes[x->producer];
        mdl_fused_act *a = fused_act(p);
        if (!a || a->kind != MDL_ACT_NONE || p->out[0] != n->in[0]) continue;
        mdl_fused_act f = {MDL_ACT_RELU, 0, 0};
        if (n->op == MDL_OP_CLIP) {
            float lo = n->opt.act.min, hi = n->opt.act.max;
            if (!(lo <= hi)) continue;
            if (lo == 0.0f && hi == 6.0f) f.kind = MDL_ACT_RELU6;
            else if (lo == 0.0f && isinf(hi) && hi > 0) f.kind = MDL_ACT_RELU;
            else {
                f.kind = MDL_ACT_CLIP;
                f.clip_min = lo;
                f.clip_max = hi;
            }
        }
        *a = f;
        absorb(c, p, n);
        changed = true;
    }
    return changed;
}

/* Reshape of a reshape reads the original; reshapes and transposes that change nothing go. */
static void simplify_moves(cv_ctx *c) {
    int32_t *rep = malloc(sizeof(int32_t) * (size_t)(c->nts ? c->nts : 1));
    if (!rep) return;
    for (int32_t t = 0; t < c->nts; t++) rep[t] = t;
    for (int32_t i = 0; i < c->nnodes; i++) {
        cv_node *n = &c->nodes[i];
        if (n->dead) continue;
        for (int32_t k = 0; k < n->nin; k++)
            if (n->in[k] >= 0) n->in[k] = rep[n->in[k]];
        if (n->op != MDL_OP_RESHAPE && n->op != MDL_OP_TRANSPOSE) continue;
        int32_t src = n->in[0];
        const cv_tensor *x = &c->ts[src];
        if (n->op == MDL_OP_RESHAPE && x->producer >= 0 && c->nodes[x->producer].op == MDL_OP_RESHAPE &&
            !c->nodes[x->producer].dead) {
            n->in[0] = src = c->nodes[x->producer].in[0];
        }
        const cv_tensor *y = &c->ts[n->out[0]];
        bool noop = true;
        if (n->op == MDL_OP_RESHAPE)
            noop = c->ts[src].rank == y->rank &&
                   !memcmp(c->ts[src].dims, y->dims, sizeof(int64_t) * (size_t)y->rank);
        else
            for (int32_t d = 0; d < y->rank; d++) noop = noop && n->opt.transpose.perm[d] == d;
        /* a graph output must stay produced by a node; constants and inputs cannot alias it */
        if (noop && !y->graph_output) {
            rep[n->out[0]] = src;
            n->dead = true;
            c->removed++;
        }
    }
    for (int32_t k = 0; k < c->noutputs; k++) c->outputs[k] = rep[c->outputs[k]];
    free(rep);
}

void mdl__cv_dead_code(cv_ctx *c) {
    bool *need = calloc((size_t)(c->nts ? c->nts : 1), 1);
    if (!need) return;
    for (int32_t k = 0; k < c->noutputs; k++) need[c->outputs[k]] = true;
    for (int32_t i = c->nnodes - 1; i >= 0; i--) {
        cv_node *n = &c->nodes[i];
        if (n->dead) continue;
        bool live = false;
        for (int32_t k = 0; k < n->nout; k++) live = live || (n->out[k] >= 0 && need[n->out[k]]);
        if (!live) {
            n->dead = true;
            c->removed++;
            continue;
        }
        for (int32_t k = 0; k < n->nin; k++)
            if (n->in[k] >= 0) need[n->in[k]] = true;
    }
    free(need);
}

cv_node *mdl__cv_weighted_producer(cv_ctx *c, int32_t t, int64_t *cout) {
    return weighted_producer(c, t, cout);
}

bool mdl__cv_rescale_layer(cv_ctx *c, cv_node *p, const double *s, const double *add, int64_t C) {
    return rescale_layer(c, p, s, add, C);
}

void mdl__cv_absorb(cv_ctx *c, cv_node *p, cv_node *n) { absorb(c, p, n); }

void mdl__cv_optimize(cv_ctx *c) {
    mdl__cv_dead_code(c); /* first, so that use counts see only what the outputs need */
    for (int round = 0; round < 4; round++) {
        bool changed = mdl__cv_fuse(c);
        mdl__cv_analyze(c);
        changed |= fold_bias(c);
        mdl__cv_analyze(c);
        changed |= fold_batch_norm(c);
        mdl__cv_analyze(c);
        changed |= fuse_activations(c);
        if (!changed) break;
    }
    mdl__cv_analyze(c);
    simplify_moves(c);
    mdl__cv_dead_code(c);
    mdl__cv_analyze(c);
}

/* ---- builder output ---------------------------------------------------------------------- */

typedef struct name_set {
    const char **slot;
    uint32_t cap;
} name_set;

static bool name_add(name_set *s, const char *name) {
    for (uint32_t i = hash_str(name) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slot[i]) {
            s->slot[i] = name;
            return true;
        }
        if (strcmp(s->slot[i], name) == 0) return false;
    }
}

/* Quantization parameters of an integer tensor (a float constant's integer shadow is not what the
   file holds: the qdq pass has replaced those that stay by integer tensors). */
static void set_quant(mdl_builder *b, int bt, const cv_tensor *x) {
    if (bt < 0 || !x->nquant || x->dtype == MDL_DTYPE_FLOAT32) return;
    mdl_builder_set_quant(b, bt, x->nquant, x->scale, x->zero_point, x->quant_axis);
}

/* Builder index of tensor t, adding it on first use under a unique name. */
static int get_tensor(cv_ctx *c, mdl_builder *b, int32_t *map, name_set *names, int32_t t) {
    if (map[t] >= 0) return map[t];
    const cv_tensor *x = &c->ts[t];
    const char *name = x->name;
    for (int k = 1; !name_add(names, name); k++) name = mdl__cv_fmt(c, "%s_%d", x->name, k);
    map[t] = mdl_builder_tensor(b, name, x->dtype, x->rank, x->dims, x->data);
    set_quant(b, map[t], x);
    return map[t];
}

mdl_status mdl__cv_build(cv_ctx *c, mdl_builder *b, int32_t *nodes_out) {
    int32_t *map = malloc(sizeof(int32_t) * (size_t)(c->nts ? c->nts : 1));
    name_set names = {NULL, 1};
    while (names.cap < 2u * (uint32_t)c->nts + 16) names.cap *= 2;
    names.slot = calloc(names.cap, sizeof *names.slot);
    if (!map || !names.slot) {
        free(map);
        free(names.slot);
        return oom(c);
    }
    for (int32_t t = 0; t < c->nts; t++) map[t] = -1;
    /* graph inputs and outputs keep their ONNX names: reserve them first */
    for (int32_t k = 0; k < c->ninputs; k++) name_add(&names, c->ts[c->inputs[k]].name);
    for (int32_t k = 0; k < c->noutputs; k++) name_add(&names, c->ts[c->outputs[k]].name);
    for (int32_t k = 0; k < c->ninputs; k++) {
        int32_t t = c->inputs[k];
        map[t] = mdl_builder_tensor(b, c->ts[t].name, c->ts[t].dtype, c->ts[t].rank, c->ts[t].dims, NULL);
        set_quant(b, map[t], &c->ts[t]);
        mdl_builder_add_input(b, map[t]);
    }
    for (int32_t k = 0; k < c->noutputs; k++) {
        int32_t t = c->outputs[k];
        if (map[t] < 0) {
            map[t] = mdl_builder_tensor(b, c->ts[t].name, c->ts[t].dtype, c->ts[t].rank, c->ts[t].dims, NULL);
            set_quant(b, map[t], &c->ts[t]);
        }
    }
    int32_t count = 0;
    for (int32_t i = 0; i < c->nnodes; i++) {
        const cv_node *n = &c->nodes[i];
        if (n->dead) continue;
        int ins[MDL_MAX_NODE_IO], outs[CV_MAX_OUT];
        for (int32_t k = 0; k < n->nin; k++)
            ins[k] = n->in[k] < 0 ? -1 : get_tensor(c, b, map, &names, n->in[k]);
        for (int32_t k = 0; k < n->nout; k++) {
            int32_t t = n->out[k];
            /* optional outputs nothing reads (LSTM Y_h ...) are left out */
            outs[k] = (k > 0 && (t < 0 || c->ts[t].uses == 0)) ? -1 : get_tensor(c, b, map, &names, t);
        }
        mdl_builder_node(b, n->op, n->name, n->nin, ins, n->nout, outs, &n->opt);
        count++;
    }
    for (int32_t k = 0; k < c->noutputs; k++) mdl_builder_add_output(b, map[c->outputs[k]]);
    free(map);
    free(names.slot);
    *nodes_out = count;
    return MDL_OK;
}
