/* Post-training quantization of the converter IR (see ptq_host.h). */
#include "quant/ptq_host.h"

#include "mdeploy/convert.h"
#include "ops/ops.h"
#include "quant/calib_data_host.h"
#include "quant/observer.h"
#include "quant/qdq_host.h"
#include "quant/quant.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { K_FLOAT, K_INT8, K_MOVE, K_HYBRID };

/* The graph as it was before any rewrite: restored before each trial. */
typedef struct snapshot {
    cv_tensor *ts;
    int32_t nts;
    cv_node *nodes;
    int32_t nnodes;
    size_t nowned;
    int32_t folded, fused, removed;
} snapshot;

typedef struct runner {
    mdl_model *m;
    mdl_session *s;
} runner;

typedef struct metrics {
    double agree, max_err, mean_err, acc;
} metrics;

typedef struct ptq {
    cv_ctx *c;
    const mdl_quantize_options *o;
    mdl_error *err;
    snapshot snap;
    int32_t n0, nts0; /* nodes and tensors of the float graph */
    uint8_t *kind;    /* per node */
    bool *user_float; /* --float-ops */
    /* observed activations */
    int32_t nobs;
    int32_t *obs_t;  /* tensor of each */
    int32_t *obs_of; /* per tensor: observer index or -1 */
    mdl__observer *obs;
    float *scale; /* per tensor: chosen activation parameters */
    int64_t *zp;
    bool *has;
    int32_t *qt; /* per observer: the int8 tensor holding its quantized value after apply, -1 */
    /* data */
    mdl__data_input *inputs;
    mdl__data_set calib, eval_own;
    const mdl__data_set *eval;
    int64_t *labels;
    int64_t batch;
    /* float reference on the eval rows */
    int64_t nbatches;
    int64_t *out_count;
    bool *out_rows; /* output is batch-major (dims[0] == batch) */
    float **fref;   /* per output: nbatches * out_count */
    double float_acc;
    /* final measurement */
    double *sig, *noise; /* per observer */
    size_t float_bytes;
    bool quiet; /* trials report their own progress, not each evaluation's */
} ptq;

static mdl_status oom(ptq *P) { return mdl__error(P->err, MDL_OUT_OF_MEMORY, "out of memory quantizing the model"); }

static void progress(ptq *P, const char *stage, int64_t done, int64_t total) {
    if (P->o->progress && !P->quiet) P->o->progress(P->o->progress_user, stage, done, total);
}

/* ---- snapshot ------------------------------------------------------------------------------- */

static mdl_status snap_take(ptq *P) {
    cv_ctx *c = P->c;
    snapshot *s = &P->snap;
    s->ts = malloc(sizeof(cv_tensor) * (size_t)(c->nts ? c->nts : 1));
    s->nodes = malloc(sizeof(cv_node) * (size_t)(c->nnodes ? c->nnodes : 1));
    if (!s->ts || !s->nodes) return oom(P);
    memcpy(s->ts, c->ts, sizeof(cv_tensor) * (size_t)c->nts);
    memcpy(s->nodes, c->nodes, sizeof(cv_node) * (size_t)c->nnodes);
    s->nts = c->nts;
    s->nnodes = c->nnodes;
    s->nowned = c->nowned;
    s->folded = c->folded;
    s->fused = c->fused;
    s->removed = c->removed;
    return MDL_OK;
}

static void snap_restore(ptq *P) {
    cv_ctx *c = P->c;
    snapshot *s = &P->snap;
    for (size_t i = s->nowned; i < c->nowned; i++) free(c->owned[i]);
    c->nowned = s->nowned;
    memcpy(c->ts, s->ts, sizeof(cv_tensor) * (size_t)s->nts);
    memcpy(c->nodes, s->nodes, sizeof(cv_node) * (size_t)s->nnodes);
    c->nts = s->nts;
    c->nnodes = s->nnodes;
    c->folded = s->folded;
    c->fused = s->fused;
    c->removed = s->removed;
    c->err->status = MDL_OK;
    mdl__cv_analyze(c);
}

/* ---- building and running -------------------------------------------------------------------- */

/* The live graph as .mdl bytes, with extra tensors as additional outputs (idx[k]: their output
   index; a tensor that already is an output keeps its index). */
static mdl_status build_bytes(ptq *P, const int32_t *extra, int32_t nextra, int32_t *idx, void **data,
                              size_t *size) {
    cv_ctx *c = P->c;
    int32_t *saved = c->outputs, nsaved = c->noutputs;
    int32_t *outs = malloc(sizeof(int32_t) * (size_t)(nsaved + nextra + 1));
    if (!outs) return oom(P);
    memcpy(outs, saved, sizeof(int32_t) * (size_t)nsaved);
    int32_t n = nsaved;
    for (int32_t k = 0; k < nextra; k++) {
        int32_t j = 0;
        while (j < n && outs[j] != extra[k]) j++;
        if (j == n) outs[n++] = extra[k];
        idx[k] = j;
    }
    c->outputs = outs;
    c->noutputs = n;
    mdl__cv_analyze(c);
    mdl_builder *b = NULL;
    int32_t count;
    mdl_status st = mdl_builder_create(NULL, &b, P->err);
    if (!st) st = mdl__cv_build(c, b, &count);
    if (!st) st = mdl_builder_finish(b, data, size, P->err);
    mdl_builder_free(b);
    c->outputs = saved;
    c->noutputs = nsaved;
    free(outs);
    mdl__cv_analyze(c);
    return st;
}

static void runner_close(runner *r) {
    mdl_session_free(r->s);
    mdl_model_free(r->m);
    r->s = NULL;
    r->m = NULL;
}

static mdl_status runner_open(ptq *P, const int32_t *extra, int32_t nextra, int32_t *idx, runner *r,
                              size_t *bytes) {
    void *data = NULL;
    size_t size = 0;
    memset(r, 0, sizeof *r);
    mdl_status st = build_bytes(P, extra, nextra, idx, &data, &size);
    if (st) return st;
    if (bytes) *bytes = size;
    mdl_load_options lo = mdl_load_options_default();
    lo.flags = MDL_LOAD_COPY;
    st = mdl_model_load_buffer(data, size, &lo, &r->m, P->err);
    free(data);
    if (!st) st = mdl_session_create(r->m, NULL, &r->s, P->err);
    if (st) {
        char m[sizeof P->err->msg];
        snprintf(m, sizeof m, "%s", P->err->msg);
        runner_close(r);
        return mdl__error(P->err, st, "quantization: the intermediate model does not load: %s", m);
    }
    return MDL_OK;
}

/* Rows [start, start + batch) of set into the session's inputs (the last row repeats past the
   end); the number of real rows. */
static int64_t feed(ptq *P, runner *r, const mdl__data_set *set, int64_t start) {
    int64_t valid = set->rows - start < P->batch ? set->rows - start : P->batch;
    for (int32_t k = 0; k < set->ninputs; k++) {
        uint8_t *dst = mdl_session_input_data(r->s, k);
        size_t rb = set->row_bytes[k];
        for (int64_t i = 0; i < P->batch; i++) {
            int64_t row = start + (i < valid ? i : valid - 1);
            memcpy(dst + (size_t)i * rb, set->data[k] + (size_t)row * rb, rb);
        }
    }
    return valid;
}

static mdl_status run(ptq *P, runner *r) {
    mdl_status st = mdl_session_run(r->s);
    if (st) return mdl__error(P->err, st, "quantization: running the model failed: %s", mdl_session_message(r->s));
    return MDL_OK;
}

/* Reads element data of output idx as floats (int8 outputs dequantized) into buf. */
static const float *output_floats(runner *r, int32_t idx, float *buf, int64_t *count) {
    mdl_tensor_info ti;
    mdl_model_output_info(r->m, idx, &ti);
    const void *d = mdl_session_output_data(r->s, idx);
    int64_t n = (int64_t)(ti.bytes / mdl_dtype_size(ti.dtype));
    *count = n;
    if (ti.dtype == MDL_DTYPE_FLOAT32) return d;
    if (ti.dtype != MDL_DTYPE_INT8 || ti.nquant != 1) return NULL;
    for (int64_t i = 0; i < n; i++)
        buf[i] = ti.scale[0] * (float)(((const int8_t *)d)[i] - ti.zero_point[0]);
    return buf;
}

/* ---- classification ------------------------------------------------------------------------- */

static bool is_act(const cv_tensor *t) { return !t->data && t->dtype == MDL_DTYPE_FLOAT32; }

static bool name_listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

static mdl_status classify(ptq *P) {
    cv_ctx *c = P->c;
    const char *fl = P->o->float_ops;
    /* every --float-ops name must name a node */
    for (const char *p = fl; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        bool found = len == 0;
        for (int32_t i = 0; i < c->nnodes && !found; i++)
            found = !c->nodes[i].dead && strlen(c->nodes[i].name) == len && !strncmp(c->nodes[i].name, p, len);
        if (!found)
            return mdl__error(P->err, MDL_INVALID_ARGUMENT,
                              "--float-ops: the model has no node '%.*s' (node names as mdeploy-inspect "
                              "and the quantization report show them)",
                              (int)len, p);
        p = e ? e + 1 : NULL;
    }
    for (int32_t i = 0; i < c->nnodes; i++) {
        const cv_node *n = &c->nodes[i];
        if (n->dead) continue;
        if (n->op == MDL_OP_QUANTIZE || n->op == MDL_OP_DEQUANTIZE)
            return mdl__error(P->err, MDL_UNSUPPORTED,
                              "the model is already quantized (node '%s' is %s): convert it without "
                              "--quantize",
                              n->name, mdl_op_name(n->op));
        P->user_float[i] = name_listed(fl, n->name);
        bool float_in = false, const_table = false;
        for (int32_t k = 0; k < n->nin; k++) {
            if (n->in[k] < 0) continue;
            const cv_tensor *x = &c->ts[n->in[k]];
            if (x->qdata)
                return mdl__error(P->err, MDL_UNSUPPORTED,
                                  "the model is already quantized (node '%s' reads dequantized "
                                  "constant '%s'): convert it without --quantize",
                                  n->name, x->name);
            float_in = float_in || is_act(x);
            if (k == 0 && x->data && x->dtype == MDL_DTYPE_FLOAT32) const_table = true;
        }
        bool float_out = n->out[0] >= 0 && is_act(&c->ts[n->out[0]]);
        if (n->op == MDL_OP_LSTM || n->op == MDL_OP_GRU || (n->op == MDL_OP_GATHER && const_table))
            P->kind[i] = K_HYBRID;
        else if (!float_in || !float_out || n->nout != 1)
            P->kind[i] = K_FLOAT;
        else if (mdl__q8_moves_data(n->op))
            P->kind[i] = K_MOVE;
        else if (mdl__kernel_find(n->op, MDL_DTYPE_INT8))
            P->kind[i] = K_INT8;
        else
            P->kind[i] = K_FLOAT;
    }
    return MDL_OK;
}

/* ---- calibration ------------------------------------------------------------------------------ */

static mdl_status add_obs(ptq *P, int32_t t) {
    if (t < 0 || P->obs_of[t] >= 0 || !is_act(&P->c->ts[t])) return MDL_OK;
    P->obs_of[t] = P->nobs;
    P->obs_t[P->nobs++] = t;
    return MDL_OK;
}

static void act_params(double lo, double hi, float *scale, int64_t *zp) {
    if (lo > 0) lo = 0;
    if (hi < 0) hi = 0;
    double s = (hi - lo) / 255.0;
    if (!(s > 1e-30)) s = 1.0 / 255.0;
    double z = nearbyint(-128.0 - lo / s);
    *scale = (float)s;
    *zp = z < -128 ? -128 : z > 127 ? 127 : (int64_t)z;
}

/* The activations to observe (every input and output of an int8 or data-movement op, every
   float activation an op writes) and their per-observer arrays. */
static mdl_status observers(ptq *P) {
    cv_ctx *c = P->c;
    for (int32_t i = 0; i < c->nnodes; i++) {
        const cv_node *n = &c->nodes[i];
        if (n->dead) continue;
        if (P->kind[i] == K_INT8 || P->kind[i] == K_MOVE)
            for (int32_t k = 0; k < n->nin; k++) add_obs(P, n->in[k]);
        add_obs(P, n->out[0]);
    }
    P->obs = malloc(sizeof(mdl__observer) * (size_t)(P->nobs ? P->nobs : 1));
    P->qt = malloc(sizeof(int32_t) * (size_t)(P->nobs ? P->nobs : 1));
    P->sig = calloc((size_t)P->nobs + 1, sizeof(double));
    P->noise = calloc((size_t)P->nobs + 1, sizeof(double));
    return P->obs && P->qt && P->sig && P->noise ? MDL_OK : oom(P);
}

static mdl_status calibrate(ptq *P) {
    cv_ctx *c = P->c;
    mdl_status st0 = observers(P);
    if (st0) return st0;
    int32_t *extra = malloc(sizeof(int32_t) * (size_t)(P->nobs + 1)), nextra = 0;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(P->nobs + 1));
    int32_t *oidx = malloc(sizeof(int32_t) * (size_t)(P->nobs + 1));
    if (!extra || !idx || !oidx) {
        free(extra);
        free(idx);
        free(oidx);
        return oom(P);
    }
    for (int32_t j = 0; j < P->nobs; j++) {
        mdl__observer_init(&P->obs[j]);
        oidx[j] = -1;
        if (!c->ts[P->obs_t[j]].graph_input) {
            oidx[j] = nextra;
            extra[nextra++] = P->obs_t[j];
        }
    }
    runner r;
    mdl_status st = runner_open(P, extra, nextra, idx, &r, NULL);
    int64_t total = (P->calib.rows + P->batch - 1) / P->batch;
    for (int64_t b = 0; b < total && !st; b++) {
        progress(P, "calibrate", b, total);
        feed(P, &r, &P->calib, b * P->batch);
        for (int32_t j = 0; j < P->nobs; j++) {
            if (oidx[j] >= 0) continue;
            int32_t k = 0;
            while (c->inputs[k] != P->obs_t[j]) k++;
            mdl__observer_update(&P->obs[j], mdl_session_input_data(r.s, k),
                                 (size_t)c->ts[P->obs_t[j]].count);
        }
        if ((st = run(P, &r))) break;
        for (int32_t j = 0; j < P->nobs; j++) {
            if (oidx[j] < 0) continue;
            mdl__observer_update(&P->obs[j], mdl_session_output_data(r.s, idx[oidx[j]]),
                                 (size_t)c->ts[P->obs_t[j]].count);
        }
    }
    if (!st) progress(P, "calibrate", total, total);
    runner_close(&r);
    free(extra);
    free(idx);
    free(oidx);
    if (st) return st;
    /* ranges -> parameters */
    double pct = P->o->percentile > 0 ? P->o->percentile : 99.99;
    for (int32_t j = 0; j < P->nobs; j++) {
        double lo, hi;
        int32_t t = P->obs_t[j];
        if (!mdl__observer_range(&P->obs[j], (mdl__calib_method)P->o->method, pct, &lo, &hi))
            return mdl__error(P->err, MDL_INVALID_ARGUMENT,
                              "calibration: activation '%s' %s on the calibration data (float overflow in "
                              "the model?)",
                              c->ts[t].name, P->obs[j].inf_count ? "took infinite values" : "took no finite value");
        act_params(lo, hi, &P->scale[t], &P->zp[t]);
        P->has[t] = true;
    }
    /* outputs with a known range take TFLite's fixed parameters: calibration would only clip
       them (entropy or percentile on a [0, 1] probability drops the top values) */
    for (int32_t i = 0; i < c->nnodes; i++) {
        const cv_node *n = &c->nodes[i];
        int32_t t = n->out[0];
        if (n->dead || t < 0 || !P->has[t]) continue;
        if (n->op == MDL_OP_SOFTMAX || n->op == MDL_OP_SIGMOID) {
            P->scale[t] = 1.0f / 256.0f;
            P->zp[t] = -128;
        } else if (n->op == MDL_OP_TANH) {
            P->scale[t] = 1.0f / 128.0f;
            P->zp[t] = 0;
        }
    }
    /* data movement keeps its input's parameters (then the int8 op is exact) */
    for (int32_t i = 0; i < c->nnodes; i++) {
        const cv_node *n = &c->nodes[i];
        if (n->dead || P->kind[i] != K_MOVE || !P->has[n->in[0]]) continue;
        P->scale[n->out[0]] = P->scale[n->in[0]];
        P->zp[n->out[0]] = P->zp[n->in[0]];
        P->has[n->out[0]] = true;
    }
    return MDL_OK;
}

/* ---- the rewrite -------------------------------------------------------------------------------- */

/* Constant t as int8 (qdata) with data its dequantized value.  axis < 0: per tensor.  symmetric:
   zero point 0, range [-127, 127]; else asymmetric per tensor over [min(0, lo), max(0, hi)]. */
static mdl_status quant_const(ptq *P, int32_t t, int32_t axis, bool symmetric) {
    cv_ctx *c = P->c;
    cv_tensor *x = &c->ts[t];
    if (x->qdata) return MDL_OK; /* shared, done already */
    int64_t nch = axis >= 0 ? x->dims[axis] : 1, inner = 1;
    for (int32_t d = axis + 1; axis >= 0 && d < x->rank; d++) inner *= x->dims[d];
    float *s = mdl__cv_alloc(c, sizeof(float) * (size_t)nch);
    int64_t *z = mdl__cv_alloc(c, sizeof(int64_t) * (size_t)nch);
    int8_t *q = mdl__cv_alloc(c, (size_t)x->count + 1);
    float *deq = mdl__cv_alloc(c, sizeof(float) * (size_t)x->count + 1);
    double *lo = calloc((size_t)nch, sizeof(double)), *hi = calloc((size_t)nch, sizeof(double));
    if (!s || !z || !q || !deq || !lo || !hi) {
        free(lo);
        free(hi);
        return oom(P);
    }
    x = &c->ts[t];
    const float *w = x->data;
    for (int64_t e = 0; e < x->count; e++) {
        int64_t ch = axis >= 0 ? (e / inner) % nch : 0;
        if (w[e] < lo[ch]) lo[ch] = w[e];
        if (w[e] > hi[ch]) hi[ch] = w[e];
    }
    for (int64_t ch = 0; ch < nch; ch++) {
        if (symmetric) {
            double m = fmax(-lo[ch], hi[ch]);
            s[ch] = m > 0 ? (float)(m / 127.0) : 1.0f;
            z[ch] = 0;
        } else {
            act_params(lo[ch], hi[ch], &s[ch], &z[ch]);
        }
    }
    free(lo);
    free(hi);
    for (int64_t e = 0; e < x->count; e++) {
        int64_t ch = axis >= 0 ? (e / inner) % nch : 0;
        int32_t v = mdl__quantize_value(w[e], s[ch], (int32_t)z[ch], symmetric ? -127 : -128, 127);
        q[e] = (int8_t)v;
        deq[e] = s[ch] * (float)(v - z[ch]);
    }
    x->qdata = q;
    x->qdtype = MDL_DTYPE_INT8;
    x->nquant = (int32_t)nch;
    x->quant_axis = axis >= 0 ? axis : 0;
    x->scale = s;
    x->zero_point = z;
    x->data = deq;
    return MDL_OK;
}

/* A new int32 bias tensor for node input b with scale sx * sw[c] (a copy: the float bias may be
   shared by nodes with other input scales). */
static int32_t quant_bias(ptq *P, int32_t b, float sx, const cv_tensor *w) {
    cv_ctx *c = P->c;
    cv_tensor f = c->ts[b];
    int32_t nb = mdl__cv_tensor(c, mdl__cv_fmt(c, "%s/int32", f.name), MDL_DTYPE_FLOAT32, f.rank, f.dims, NULL);
    if (nb < 0) return -1;
    int32_t n = w->nquant > 1 ? w->nquant : 1;
    if (n > 1 && n != f.count) return -1;
    float *s = mdl__cv_alloc(c, sizeof(float) * (size_t)n);
    int64_t *z = mdl__cv_alloc(c, sizeof(int64_t) * (size_t)n);
    int32_t *q = mdl__cv_alloc(c, sizeof(int32_t) * (size_t)f.count + 4);
    float *deq = mdl__cv_alloc(c, sizeof(float) * (size_t)f.count + 4);
    if (!s || !z || !q || !deq) return -1;
    for (int32_t k = 0; k < n; k++) {
        s[k] = (float)((double)sx * (double)w->scale[k]);
        z[k] = 0;
    }
    const float *bd = f.data;
    for (int64_t e = 0; e < f.count; e++) {
        double sc = s[n > 1 ? e : 0];
        double v = nearbyint((double)bd[e] / sc);
        if (v > INT32_MAX) v = INT32_MAX;
        if (v < -INT32_MAX) v = -INT32_MAX;
        q[e] = (int32_t)v;
        deq[e] = (float)(sc * v);
    }
    cv_tensor *x = &c->ts[nb];
    x->data = deq;
    x->qdata = q;
    x->qdtype = MDL_DTYPE_INT32;
    x->nquant = n;
    x->quant_axis = 0;
    x->scale = s;
    x->zero_point = z;
    return nb;
}

/* Appends node n (a copy) to c's node list. */
static mdl_status append(ptq *P, const cv_node *n) {
    cv_ctx *c = P->c;
    int32_t slot = c->nnodes;
    if (mdl__cv_emit_raw(c, MDL_OP_RESHAPE, "", 1, (int32_t[]){0}, 0)) return P->err->status ? P->err->status : oom(P);
    c->nodes[slot] = *n;
    return MDL_OK;
}

static int32_t qtensor(ptq *P, int32_t x, const char *suffix) {
    cv_ctx *c = P->c;
    cv_tensor s = c->ts[x];
    int32_t q = mdl__cv_tensor(c, mdl__cv_fmt(c, "%s/%s", s.name, suffix), MDL_DTYPE_INT8, s.rank, s.dims, NULL);
    if (q < 0) return -1;
    if (mdl__cv_set_quant(c, q, 1, &P->scale[x], &P->zp[x], 0)) return -1;
    return q;
}

/* QUANTIZE(x) -> xq; DEQUANTIZE(xq) -> y. */
static mdl_status qdq(ptq *P, int32_t x, int32_t pt, int32_t y, int32_t *xq) {
    cv_ctx *c = P->c;
    int32_t q = qtensor(P, pt, "int8");
    if (q < 0) return P->err->status ? P->err->status : oom(P);
    const char *saved = c->node_name;
    c->node_name = c->ts[pt].name;
    mdl_status st = mdl__cv_emit_raw(c, MDL_OP_QUANTIZE, "quantize", 1, &x, q);
    if (!st) st = mdl__cv_emit_raw(c, MDL_OP_DEQUANTIZE, "dequantize", 1, &q, y);
    c->node_name = saved;
    *xq = q;
    return st;
}

static mdl_status quant_node_consts(ptq *P, cv_node *n) {
    cv_ctx *c = P->c;
    mdl_status st;
    bool per_tensor = P->o->per_tensor;
    for (int32_t k = 0; k < n->nin; k++) {
        int32_t t = n->in[k];
        if (t < 0 || !c->ts[t].data || c->ts[t].dtype != MDL_DTYPE_FLOAT32) continue;
        if (mdl__q8_weighted(n->op) && k == 1) {
            int32_t axis = n->op == MDL_OP_FULLY_CONNECTED ? 0 : 3;
            if ((st = quant_const(P, t, per_tensor ? -1 : axis, true))) return st;
        } else if (mdl__q8_weighted(n->op) && k == 2) {
            int32_t x = n->in[0], w = n->in[1];
            if (x < 0 || !P->has[x] || w < 0 || !c->ts[w].qdata) continue;
            cv_tensor wt = c->ts[w];
            int32_t nb = quant_bias(P, t, P->scale[x], &wt);
            if (nb < 0) return P->err->status ? P->err->status : oom(P);
            n->in[k] = nb;
        } else if (n->op == MDL_OP_MATMUL && k == 1 && c->ts[t].rank >= 2) {
            if ((st = quant_const(P, t, per_tensor ? -1 : c->ts[t].rank - 1, true))) return st;
        } else {
            if ((st = quant_const(P, t, -1, false))) return st;
        }
    }
    return MDL_OK;
}

/* Hybrid: large float constants (tables, recurrent weights) int8 per row. */
static mdl_status quant_hybrid(ptq *P, const cv_node *n) {
    cv_ctx *c = P->c;
    for (int32_t k = 0; k < n->nin; k++) {
        int32_t t = n->in[k];
        if (t < 0 || !c->ts[t].data || c->ts[t].dtype != MDL_DTYPE_FLOAT32 || c->ts[t].rank < 2 ||
            c->ts[t].count < 64)
            continue;
        int32_t axis = 0;
        for (int32_t d = 1; d < c->ts[t].rank - 1; d++)
            if (c->ts[t].dims[d] > c->ts[t].dims[axis]) axis = d;
        /* a scale and a zero point cost 12 bytes per row in the file: per row only when rows are
           long enough for that to stay under ~10% (a 16-wide embedding table would grow by 75%) */
        int64_t inner = c->ts[t].count / c->ts[t].dims[axis];
        if (inner < 128) axis = -1;
        mdl_status st = quant_const(P, t, P->o->per_tensor ? -1 : axis, true);
        if (st) return st;
    }
    return MDL_OK;
}

/* QUANTIZE -> DEQUANTIZE round trips left where no int8 op took the int8 value: dropped. */
static void drop_round_trips(ptq *P) {
    cv_ctx *c = P->c;
    mdl__cv_analyze(c);
    for (int32_t i = 0; i < c->nnodes; i++) {
        cv_node *d = &c->nodes[i];
        if (d->dead || d->op != MDL_OP_DEQUANTIZE) continue;
        int32_t p = c->ts[d->in[0]].producer;
        if (p < 0 || c->nodes[p].dead || c->nodes[p].op != MDL_OP_QUANTIZE) continue;
        int32_t x = c->nodes[p].in[0], y = d->out[0];
        if (c->ts[y].graph_output) {
            /* the float op writes the output itself when x feeds nothing else */
            int32_t px = c->ts[x].producer;
            if (px < 0 || c->ts[x].uses != 1 || c->ts[d->in[0]].uses != 1 || c->nodes[px].nout != 1) continue;
            c->nodes[px].out[0] = y;
            d->dead = true;
            c->nodes[p].dead = true;
        } else {
            for (int32_t j = 0; j < c->nnodes; j++) {
                cv_node *m = &c->nodes[j];
                if (m->dead) continue;
                for (int32_t k = 0; k < m->nin; k++)
                    if (m->in[k] == y) m->in[k] = x;
            }
            d->dead = true;
        }
        mdl__cv_analyze(c);
    }
    mdl__cv_dead_code(c);
    mdl__cv_analyze(c);
}

/* Rewrites the float graph (restored from the snapshot) with the nodes of keep_float in float. */
static mdl_status apply(ptq *P, const bool *keep_float) {
    cv_ctx *c = P->c;
    snap_restore(P);
    int32_t n0 = c->nnodes, nts0 = c->nts;
    cv_node *old = malloc(sizeof(cv_node) * (size_t)(n0 ? n0 : 1));
    int32_t *redirect = malloc(sizeof(int32_t) * (size_t)(nts0 ? nts0 : 1));
    bool *active = calloc((size_t)n0 + 1, 1), *rewritten = calloc((size_t)nts0 + 1, 1);
    mdl_status st = MDL_OK;
    if (!old || !redirect || !active || !rewritten) {
        st = oom(P);
        goto done;
    }
    memcpy(old, c->nodes, sizeof(cv_node) * (size_t)n0);
    for (int32_t t = 0; t < nts0; t++) redirect[t] = -1;
    for (int32_t j = 0; j < P->nobs; j++) P->qt[j] = -1;
    for (int32_t i = 0; i < n0; i++) {
        const cv_node *n = &old[i];
        if (n->dead || keep_float[i] || P->user_float[i]) continue;
        if (n->in[0] < 0 || n->out[0] < 0) continue;
        if (P->kind[i] == K_INT8) {
            active[i] = true;
        } else if (P->kind[i] == K_MOVE) {
            int32_t p = c->ts[n->in[0]].producer;
            active[i] = p >= 0 && active[p] && P->has[n->in[0]];
        }
        if (active[i] && !P->has[n->out[0]]) active[i] = false;
    }
    c->nnodes = 0;
    for (int32_t i = 0; i < n0 && !st; i++) {
        cv_node n = old[i];
        if (n.dead || !active[i]) {
            if (!n.dead && P->kind[i] == K_HYBRID && !keep_float[i] && !P->user_float[i]) st = quant_hybrid(P, &n);
            if (!st) st = append(P, &n);
            continue;
        }
        /* constants first: the bias scale needs the original input's parameters */
        if ((st = quant_node_consts(P, &n))) break;
        for (int32_t k = 0; k < n.nin && !st; k++) {
            int32_t x = n.in[k];
            if (x < 0 || x >= nts0 || !is_act(&c->ts[x]) || !P->has[x] || rewritten[x]) continue;
            if (redirect[x] < 0) {
                cv_tensor s = c->ts[x];
                int32_t xd = mdl__cv_tensor(c, mdl__cv_fmt(c, "%s/dequantized", s.name), MDL_DTYPE_FLOAT32,
                                            s.rank, s.dims, NULL);
                int32_t xq;
                if (xd < 0) {
                    st = P->err->status ? P->err->status : oom(P);
                    break;
                }
                if ((st = qdq(P, x, x, xd, &xq))) break;
                redirect[x] = xd;
                if (P->obs_of[x] >= 0) P->qt[P->obs_of[x]] = xq;
            }
            n.in[k] = redirect[x];
        }
        if (st) break;
        int32_t y = n.out[0];
        cv_tensor s = c->ts[y];
        int32_t yf = mdl__cv_tensor(c, mdl__cv_fmt(c, "%s/float", s.name), MDL_DTYPE_FLOAT32, s.rank, s.dims, NULL);
        if (yf < 0) {
            st = P->err->status ? P->err->status : oom(P);
            break;
        }
        n.out[0] = yf;
        if ((st = append(P, &n))) break;
        int32_t yq;
        if ((st = qdq(P, yf, y, y, &yq))) break;
        rewritten[y] = true;
        if (P->obs_of[y] >= 0) P->qt[P->obs_of[y]] = yq;
    }
    if (!st) {
        mdl__cv_analyze(c);
        st = mdl__qdq_pass(c, NULL);
    }
    if (!st) drop_round_trips(P);
done:
    free(old);
    free(redirect);
    free(active);
    free(rewritten);
    return st;
}

/* ---- measurement -------------------------------------------------------------------------------- */

typedef struct acc {
    int64_t rows, agree, correct;
    double max_err, sum_err;
    int64_t nerr;
} acc;

static int64_t argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Row layout of output 0: rows per batch and values per row (0 when not a classifier output). */
static int64_t row_len(const ptq *P) {
    if (!P->out_rows[0]) return 0;
    int64_t per = P->out_count[0] / P->batch;
    return per > 1 ? per : 0;
}

/* Float reference on the eval rows (the graph is float), and the float file size. */
static mdl_status reference(ptq *P) {
    cv_ctx *c = P->c;
    runner r;
    int32_t dummy;
    mdl_status st = runner_open(P, NULL, 0, &dummy, &r, &P->float_bytes);
    if (st) return st;
    int32_t nout = c->noutputs;
    P->nbatches = (P->eval->rows + P->batch - 1) / P->batch;
    P->out_count = calloc((size_t)nout + 1, sizeof(int64_t));
    P->out_rows = calloc((size_t)nout + 1, sizeof(bool));
    P->fref = calloc((size_t)nout + 1, sizeof(float *));
    if (!P->out_count || !P->out_rows || !P->fref) {
        runner_close(&r);
        return oom(P);
    }
    for (int32_t o = 0; o < nout; o++) {
        mdl_tensor_info ti;
        mdl_model_output_info(r.m, o, &ti);
        P->out_count[o] = ti.dtype == MDL_DTYPE_FLOAT32 ? (int64_t)(ti.bytes / 4) : 0;
        P->out_rows[o] = ti.rank >= 1 && ti.dims[0] == P->batch;
        P->fref[o] = malloc(sizeof(float) * (size_t)(P->out_count[o] * P->nbatches + 1));
        if (!P->fref[o]) {
            runner_close(&r);
            return oom(P);
        }
    }
    int64_t correct = 0, rows = 0, per = row_len(P);
    for (int64_t b = 0; b < P->nbatches && !st; b++) {
        progress(P, "reference", b, P->nbatches);
        int64_t valid = feed(P, &r, P->eval, b * P->batch);
        if ((st = run(P, &r))) break;
        for (int32_t o = 0; o < nout; o++)
            if (P->out_count[o])
                memcpy(P->fref[o] + b * P->out_count[o], mdl_session_output_data(r.s, o),
                       sizeof(float) * (size_t)P->out_count[o]);
        if (per && P->labels)
            for (int64_t i = 0; i < valid; i++, rows++)
                correct += argmax(P->fref[0] + b * P->out_count[0] + i * per, per) == P->labels[b * P->batch + i];
    }
    runner_close(&r);
    P->float_acc = rows ? 100.0 * (double)correct / (double)rows : NAN;
    return st;
}

/* Runs the current (quantized) graph on the eval rows against the float reference; with fcal
   (the calibration runner: float activations) also accumulates per-activation SQNR. */
static mdl_status evaluate(ptq *P, runner *fcal, const int32_t *fidx, metrics *m, size_t *bytes,
                           const char *stage) {
    cv_ctx *c = P->c;
    int32_t *extra = malloc(sizeof(int32_t) * (size_t)(P->nobs + 1)), nextra = 0;
    int32_t *eidx = malloc(sizeof(int32_t) * (size_t)(P->nobs + 1));
    int32_t *which = malloc(sizeof(int32_t) * (size_t)(P->nobs + 1));
    int64_t maxc = 1;
    for (int32_t t = 0; t < c->nts; t++)
        if (c->ts[t].count > maxc) maxc = c->ts[t].count;
    float *b1 = malloc(sizeof(float) * (size_t)maxc), *b2 = malloc(sizeof(float) * (size_t)maxc);
    mdl_status st = MDL_OK;
    runner q;
    memset(&q, 0, sizeof q);
    if (!extra || !eidx || !which || !b1 || !b2) {
        st = oom(P);
        goto done;
    }
    if (fcal) {
        for (int32_t j = 0; j < P->nobs; j++) {
            P->sig[j] = P->noise[j] = 0;
            if (fidx[j] < 0) continue;
            int32_t t = P->qt[j] >= 0 && c->ts[P->qt[j]].producer >= 0 ? P->qt[j] : P->obs_t[j];
            if (c->ts[t].producer < 0) continue;
            which[nextra] = j;
            extra[nextra++] = t;
        }
    }
    if ((st = runner_open(P, extra, nextra, eidx, &q, bytes))) goto done;
    acc A;
    memset(&A, 0, sizeof A);
    int64_t per = row_len(P);
    for (int64_t b = 0; b < P->nbatches && !st; b++) {
        progress(P, stage, b, P->nbatches);
        int64_t valid = feed(P, &q, P->eval, b * P->batch);
        if ((st = run(P, &q))) break;
        for (int32_t o = 0; o < c->noutputs; o++) {
            int64_t n = P->out_count[o], cnt;
            if (!n) continue;
            const float *y = output_floats(&q, o, b1, &cnt), *f = P->fref[o] + b * n;
            if (!y || cnt != n) continue;
            int64_t use = P->out_rows[o] ? n / P->batch * valid : n;
            for (int64_t i = 0; i < use; i++) {
                double e = fabs((double)y[i] - (double)f[i]);
                if (!(e <= A.max_err)) A.max_err = e; /* NaN counts as the worst */
                A.sum_err += e;
            }
            A.nerr += use;
            if (o == 0 && per)
                for (int64_t i = 0; i < valid; i++) {
                    int64_t a = argmax(y + i * per, per);
                    A.agree += a == argmax(f + i * per, per);
                    if (P->labels) A.correct += a == P->labels[b * P->batch + i];
                    A.rows++;
                }
        }
        if (fcal && nextra) {
            feed(P, fcal, P->eval, b * P->batch);
            if ((st = run(P, fcal))) break;
            for (int32_t k = 0; k < nextra; k++) {
                int32_t j = which[k];
                int64_t n1, n2;
                const float *f = output_floats(fcal, fidx[j], b1, &n1), *y = output_floats(&q, eidx[k], b2, &n2);
                if (!f || !y || n1 != n2) continue;
                for (int64_t i = 0; i < n1; i++) {
                    double d = (double)y[i] - (double)f[i];
                    P->sig[j] += (double)f[i] * f[i];
                    P->noise[j] += d * d;
                }
            }
        }
    }
    if (!st) progress(P, stage, P->nbatches, P->nbatches);
    m->agree = A.rows ? 100.0 * (double)A.agree / (double)A.rows : NAN;
    m->acc = A.rows && P->labels ? 100.0 * (double)A.correct / (double)A.rows : NAN;
    m->max_err = A.max_err;
    m->mean_err = A.nerr ? A.sum_err / (double)A.nerr : 0;
done:
    runner_close(&q);
    free(extra);
    free(eidx);
    free(which);
    free(b1);
    free(b2);
    return st;
}

static double budget_value(const ptq *P, const metrics *m) {
    if (P->o->max_accuracy_drop > 0) return P->float_acc - m->acc;
    return m->max_err;
}

static double budget_limit(const ptq *P) {
    return P->o->max_accuracy_drop > 0 ? P->o->max_accuracy_drop : P->o->max_output_error;
}

/* ---- report -------------------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_printf(sbuf *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb_printf(sbuf *s, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(s->p ? s->p + s->n : NULL, s->p ? s->cap - s->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (s->p && s->n + (size_t)k < s->cap) {
            s->n += (size_t)k;
            return;
        }
        size_t cap = s->cap ? s->cap * 2 : 4096;
        while (cap < s->n + (size_t)k + 1) cap *= 2;
        char *g = realloc(s->p, cap);
        if (!g) {
            s->oom = true;
            return;
        }
        s->p = g;
        s->cap = cap;
    }
}

static void sb_str(sbuf *s, const char *v) {
    sb_printf(s, "\"");
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\') sb_printf(s, "\\%c", *p);
        else if (*p < 0x20) sb_printf(s, "\\u%04x", *p);
        else sb_printf(s, "%c", *p);
    }
    sb_printf(s, "\"");
}

static void sb_num(sbuf *s, double v) {
    if (isnan(v)) sb_printf(s, "null");
    else if (isinf(v)) sb_printf(s, v > 0 ? "\"inf\"" : "\"-inf\"");
    else sb_printf(s, "%.6g", v);
}

static char *report_json(const mdl_quant_report *r) {
    sbuf s = {NULL, 0, 0, false};
    sb_printf(&s, "{\n  \"quantize\": \"int8\",\n  \"method\": ");
    sb_str(&s, r->method);
    sb_printf(&s, ",\n  \"per_tensor\": %s,\n  \"calibration_rows\": %lld,\n  \"eval_rows\": %lld,\n"
                  "  \"eval_is_calibration\": %s,\n",
              r->per_tensor ? "true" : "false", (long long)r->calibration_rows, (long long)r->eval_rows,
              r->eval_is_calibration ? "true" : "false");
    sb_printf(&s, "  \"top1_agreement\": ");
    sb_num(&s, r->top1_agreement);
    sb_printf(&s, ",\n  \"max_abs_error\": ");
    sb_num(&s, r->max_abs_error);
    sb_printf(&s, ",\n  \"mean_abs_error\": ");
    sb_num(&s, r->mean_abs_error);
    sb_printf(&s, ",\n  \"float_accuracy\": ");
    sb_num(&s, r->float_accuracy);
    sb_printf(&s, ",\n  \"int8_accuracy\": ");
    sb_num(&s, r->int8_accuracy);
    sb_printf(&s, ",\n  \"float_bytes\": %zu,\n  \"int8_bytes\": %zu,\n  \"int8_ops\": %d,\n  \"float_ops\": %d,\n",
              r->float_file_bytes, r->int8_file_bytes, (int)r->int8_ops, (int)r->float_ops);
    sb_printf(&s, "  \"budget\": ");
    if (r->budget[0]) {
        sb_printf(&s, "{\"kind\": ");
        sb_str(&s, r->budget);
        sb_printf(&s, ", \"limit\": ");
        sb_num(&s, r->budget_limit);
        sb_printf(&s, ", \"value\": ");
        sb_num(&s, r->budget_value);
        sb_printf(&s, ", \"met\": %s, \"kept_float\": [", r->budget_met ? "true" : "false");
        int first = 1;
        for (int32_t i = 0; i < r->nlayers; i++)
            if (r->layers[i].kept_for_budget) {
                sb_printf(&s, first ? "" : ", ");
                sb_str(&s, r->layers[i].name);
                first = 0;
            }
        sb_printf(&s, "]}");
    } else {
        sb_printf(&s, "null");
    }
    sb_printf(&s, ",\n  \"layers\": [");
    for (int32_t i = 0; i < r->nlayers; i++) {
        const mdl_quant_layer *l = &r->layers[i];
        sb_printf(&s, "%s\n    {\"name\": ", i ? "," : "");
        sb_str(&s, l->name);
        sb_printf(&s, ", \"op\": ");
        sb_str(&s, l->op);
        sb_printf(&s, ", \"precision\": ");
        sb_str(&s, l->precision);
        sb_printf(&s, ", \"reason\": ");
        sb_str(&s, l->reason);
        sb_printf(&s, ", \"sqnr_db\": ");
        sb_num(&s, l->sqnr_db);
        sb_printf(&s, ", \"impact\": ");
        sb_num(&s, l->impact);
        sb_printf(&s, "}");
    }
    sb_printf(&s, "\n  ]\n}\n");
    if (s.oom) {
        free(s.p);
        return NULL;
    }
    return s.p;
}

void mdl__quant_report_free(mdl_quant_report *r) {
    if (!r) return;
    for (int32_t i = 0; i < r->nlayers; i++) free((char *)r->layers[i].name);
    free(r->layers);
    free(r->json);
    free(r);
}

static const char *const method_names[] = {"minmax", "percentile", "entropy"};

static mdl_status make_report(ptq *P, const metrics *m, const bool *kf, const double *impact,
                              const double *bval, size_t int8_bytes, mdl_quant_report **out) {
    cv_ctx *c = P->c;
    const snapshot *S = &P->snap;
    mdl_quant_report *r = calloc(1, sizeof *r);
    if (!r || !(r->layers = calloc((size_t)P->n0 + 1, sizeof *r->layers))) {
        free(r);
        return oom(P);
    }
    r->method = method_names[P->o->method];
    r->per_tensor = P->o->per_tensor;
    r->calibration_rows = P->calib.rows;
    r->eval_rows = P->eval->rows;
    r->eval_is_calibration = P->eval == &P->calib;
    r->top1_agreement = m->agree;
    r->max_abs_error = m->max_err;
    r->mean_abs_error = m->mean_err;
    r->float_accuracy = P->labels ? P->float_acc : NAN;
    r->int8_accuracy = m->acc;
    r->float_file_bytes = P->float_bytes;
    r->int8_file_bytes = int8_bytes;
    r->budget = P->o->max_accuracy_drop > 0 ? "accuracy-drop" : P->o->max_output_error > 0 ? "output-error" : "";
    r->budget_limit = r->budget[0] ? budget_limit(P) : NAN;
    r->budget_value = r->budget[0] ? *bval : NAN;
    r->budget_met = r->budget[0] && *bval <= budget_limit(P);
    for (int32_t i = 0; i < S->nnodes; i++) {
        const cv_node *n = &S->nodes[i];
        if (n->dead) continue;
        mdl_quant_layer *l = &r->layers[r->nlayers++];
        size_t len = strlen(n->name) + 1;
        char *nm = malloc(len);
        if (!nm) {
            mdl__quant_report_free(r);
            return oom(P);
        }
        memcpy(nm, n->name, len);
        l->name = nm;
        l->op = mdl_op_name(n->op);
        l->impact = impact ? impact[i] : NAN;
        int32_t j = n->out[0] >= 0 && n->out[0] < P->nts0 ? P->obs_of[n->out[0]] : -1;
        l->sqnr_db = j < 0 || !(P->sig[j] > 0) ? NAN : P->noise[j] == 0 ? INFINITY : 10.0 * log10(P->sig[j] / P->noise[j]);
        bool int8 = false;
        for (int32_t k = 0; k < c->nnodes; k++) {
            const cv_node *f = &c->nodes[k];
            if (!f->dead && f->name == n->name && f->out[0] >= 0)
                int8 = c->ts[f->out[0]].dtype == MDL_DTYPE_INT8;
        }
        int kind = P->kind[i];
        if (int8) {
            l->precision = kind == K_MOVE ? "int8-move" : "int8";
            l->reason = "";
            r->int8_ops += kind != K_MOVE;
            continue;
        }
        r->float_ops += kind != K_MOVE;
        l->precision = kind == K_HYBRID && !P->user_float[i] && !kf[i] ? "hybrid" : "float";
        if (P->user_float[i]) l->reason = "--float-ops";
        else if (kf[i]) l->reason = P->o->max_accuracy_drop > 0 ? "accuracy budget" : "output-error budget";
        else if (kind == K_HYBRID) l->reason = "no int8 kernel: int8 weights widened at load";
        else if (kind == K_FLOAT) l->reason = "no int8 kernel";
        else if (kind == K_MOVE) l->reason = "between float ops";
        else l->reason = "int8 kernel refused the operands";
        l->kept_for_budget = kf[i] && !P->user_float[i];
        r->nkept_float += l->kept_for_budget;
    }
    r->json = report_json(r);
    if (!r->json) {
        mdl__quant_report_free(r);
        return oom(P);
    }
    *out = r;
    return MDL_OK;
}

/* ---- the driver ----------------------------------------------------------------------------------- */

static void ptq_free(ptq *P) {
    free(P->snap.ts);
    free(P->snap.nodes);
    free(P->kind);
    free(P->user_float);
    free(P->obs_t);
    free(P->obs_of);
    free(P->obs);
    free(P->scale);
    free(P->zp);
    free(P->has);
    free(P->qt);
    free(P->inputs);
    mdl__data_free(&P->calib);
    mdl__data_free(&P->eval_own);
    free(P->labels);
    if (P->fref)
        for (int32_t o = 0; o < P->c->noutputs; o++) free(P->fref[o]);
    free(P->fref);
    free(P->out_count);
    free(P->out_rows);
    free(P->sig);
    free(P->noise);
}

static mdl_status check_options(const mdl_quantize_options *o, mdl_error *err) {
    if (o->mode != MDL_QUANTIZE_INT8)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "quantize mode %d is not supported (int8 only)", (int)o->mode);
    if (!o->calibration || !*o->calibration)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "--quantize int8 needs --calibration DATA (.npy, .npz or a directory)");
    if ((unsigned)o->method >= MDL_CALIBRATION_COUNT)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "unknown calibration method %d", (int)o->method);
    if (o->percentile < 0 || o->percentile > 100 || isnan(o->percentile))
        return mdl__error(err, MDL_INVALID_ARGUMENT, "percentile %g is not in (0, 100]", o->percentile);
    if (o->max_accuracy_drop < 0 || o->max_output_error < 0 || isnan(o->max_accuracy_drop) || isnan(o->max_output_error))
        return mdl__error(err, MDL_INVALID_ARGUMENT, "a budget must be positive");
    if (o->max_accuracy_drop > 0 && o->max_output_error > 0)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "give --max-accuracy-drop or --max-output-error, not both");
    if (o->max_accuracy_drop > 0 && !o->eval_labels)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "--max-accuracy-drop needs labels: --eval X.npy Y.npy");
    if (o->max_calibration_rows < 0)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "max_calibration_rows must not be negative");
    return MDL_OK;
}

/* ---- the decisions, for the same graph at other sizes --------------------------------------- */

void mdl__ptq_plan_free(mdl__ptq_plan *pl) {
    if (!pl) return;
    for (int32_t i = 0; i < pl->nact; i++) free(pl->act[i]);
    for (int32_t i = 0; i < pl->nfloat; i++) free(pl->float_nodes[i]);
    free(pl->act);
    free(pl->scale);
    free(pl->zp);
    free(pl->float_nodes);
    free(pl);
}

static mdl_status plan_make(ptq *P, const bool *kf, mdl__ptq_plan **out) {
    mdl__ptq_plan *pl = calloc(1, sizeof *pl);
    size_t nt = (size_t)P->nts0 + 1, nn = (size_t)P->n0 + 1;
    if (pl) {
        pl->act = calloc(nt, sizeof(char *));
        pl->scale = calloc(nt, sizeof(float));
        pl->zp = calloc(nt, sizeof(int64_t));
        pl->float_nodes = calloc(nn, sizeof(char *));
    }
    if (!pl || !pl->act || !pl->scale || !pl->zp || !pl->float_nodes) {
        mdl__ptq_plan_free(pl);
        return oom(P);
    }
    for (int32_t t = 0; t < P->nts0; t++) {
        if (!P->has[t]) continue;
        if (!(pl->act[pl->nact] = strdup(P->snap.ts[t].name))) goto oom;
        pl->scale[pl->nact] = P->scale[t];
        pl->zp[pl->nact++] = P->zp[t];
    }
    for (int32_t i = 0; i < P->n0; i++) {
        if (!kf[i]) continue;
        if (!(pl->float_nodes[pl->nfloat] = strdup(P->snap.nodes[i].name))) goto oom;
        pl->nfloat++;
    }
    *out = pl;
    return MDL_OK;
oom:
    mdl__ptq_plan_free(pl);
    return oom(P);
}

/* The rewrite with the parameters and float layers of plan (by tensor and node name): no data,
   no measurement.  Fails if the graph has an activation the plan does not know. */
static mdl_status plan_replay(ptq *P, const mdl__ptq_plan *pl, bool *kf) {
    cv_ctx *c = P->c;
    mdl_status st = observers(P);
    if (st) return st;
    for (int32_t j = 0; j < P->nobs; j++) {
        int32_t t = P->obs_t[j], a = 0;
        while (a < pl->nact && strcmp(pl->act[a], c->ts[t].name)) a++;
        if (a == pl->nact)
            return mdl__error(P->err, MDL_UNSUPPORTED,
                              "quantization: activation '%s' exists only at some sizes of the dynamic dims "
                              "(fix them with --input-shape)",
                              c->ts[t].name);
        P->scale[t] = pl->scale[a];
        P->zp[t] = pl->zp[a];
        P->has[t] = true;
    }
    for (int32_t i = 0; i < c->nnodes; i++)
        for (int32_t f = 0; f < pl->nfloat && !kf[i]; f++)
            kf[i] = !c->nodes[i].dead && !strcmp(pl->float_nodes[f], c->nodes[i].name);
    if ((st = snap_take(P))) return st;
    return apply(P, kf);
}

mdl_status mdl__ptq_run(cv_ctx *c, const mdl_quantize_options *o, mdl_quant_report **report,
                        mdl__ptq_plan **plan, const mdl__ptq_plan *replay) {
    mdl_status st = check_options(o, c->err);
    if (st) return st;
    ptq P;
    memset(&P, 0, sizeof P);
    P.c = c;
    P.o = o;
    P.err = c->err;
    runner fcal;
    memset(&fcal, 0, sizeof fcal);
    int32_t *fidx = NULL;
    bool *kf = NULL;
    double *impact = NULL;
    int32_t *order = NULL;
    mdl__cv_dead_code(c);
    mdl__cv_analyze(c);
    P.n0 = c->nnodes;
    P.nts0 = c->nts;
    size_t nn = (size_t)c->nnodes + 1, nt = (size_t)c->nts + 1;
    P.kind = calloc(nn, 1);
    P.user_float = calloc(nn, sizeof(bool));
    P.obs_t = calloc(nt, sizeof(int32_t));
    P.obs_of = malloc(nt * sizeof(int32_t));
    P.scale = calloc(nt, sizeof(float));
    P.zp = calloc(nt, sizeof(int64_t));
    P.has = calloc(nt, sizeof(bool));
    P.inputs = calloc((size_t)c->ninputs + 1, sizeof(mdl__data_input));
    kf = calloc(nn, sizeof(bool));
    if (!P.kind || !P.user_float || !P.obs_t || !P.obs_of || !P.scale || !P.zp || !P.has || !P.inputs || !kf) {
        st = oom(&P);
        goto done;
    }
    for (int32_t t = 0; t < c->nts; t++) P.obs_of[t] = -1;
    P.batch = -1;
    for (int32_t k = 0; k < c->ninputs; k++) {
        const cv_tensor *x = &c->ts[c->inputs[k]];
        P.inputs[k].name = x->name;
        P.inputs[k].dtype = x->dtype;
        P.inputs[k].rank = x->rank;
        memcpy(P.inputs[k].dims, x->dims, sizeof x->dims);
        int64_t b = x->rank ? x->dims[0] : 1;
        if (P.batch >= 0 && b != P.batch) {
            st = mdl__error(c->err, MDL_UNSUPPORTED,
                            "quantization: inputs '%s' and '%s' have different batch sizes (%lld, %lld)",
                            P.inputs[0].name, x->name, (long long)P.batch, (long long)b);
            goto done;
        }
        P.batch = b;
    }
    if ((st = classify(&P))) goto done;
    if (replay) {
        st = plan_replay(&P, replay, kf);
        goto done;
    }
    if ((st = mdl__data_load(o->calibration, "--calibration", c->ninputs, P.inputs, o->max_calibration_rows,
                             &P.calib, c->err)))
        goto done;
    P.eval = &P.calib;
    if (o->eval_inputs) {
        if ((st = mdl__data_load(o->eval_inputs, "--eval", c->ninputs, P.inputs, 0, &P.eval_own, c->err))) goto done;
        P.eval = &P.eval_own;
    }
    if (o->eval_labels && (st = mdl__labels_load(o->eval_labels, P.eval->rows, &P.labels, c->err))) goto done;
    if ((st = snap_take(&P))) goto done;
    if ((st = calibrate(&P))) goto done;
    if ((st = reference(&P))) goto done;
    if (o->max_accuracy_drop > 0 && !row_len(&P)) {
        st = mdl__error(c->err, MDL_INVALID_ARGUMENT,
                        "--max-accuracy-drop: output '%s' has no rows of class scores (use --max-output-error)",
                        c->ts[c->outputs[0]].name);
        goto done;
    }
    /* the float activations for the final SQNR: the calibration graph again */
    fidx = malloc(sizeof(int32_t) * (size_t)(P.nobs + 1));
    int32_t *extra = malloc(sizeof(int32_t) * (size_t)(P.nobs + 1)), nextra = 0;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(P.nobs + 1));
    if (!fidx || !extra || !idx) {
        free(extra);
        free(idx);
        st = oom(&P);
        goto done;
    }
    for (int32_t j = 0; j < P.nobs; j++) {
        fidx[j] = -1;
        if (!c->ts[P.obs_t[j]].graph_input) {
            fidx[j] = nextra;
            extra[nextra++] = P.obs_t[j];
        }
    }
    st = runner_open(&P, extra, nextra, idx, &fcal, NULL);
    for (int32_t j = 0; j < P.nobs && !st; j++)
        if (fidx[j] >= 0) fidx[j] = idx[fidx[j]];
    free(extra);
    free(idx);
    if (st) goto done;

    metrics m;
    size_t bytes = 0;
    if ((st = apply(&P, kf)) || (st = evaluate(&P, NULL, NULL, &m, &bytes, "evaluate"))) goto done;
    double bval = budget_value(&P, &m);
    if ((o->max_accuracy_drop > 0 || o->max_output_error > 0) && !(bval <= budget_limit(&P))) {
        /* impact of each layer alone */
        impact = malloc(sizeof(double) * nn);
        double *tie = malloc(sizeof(double) * nn);
        order = malloc(sizeof(int32_t) * nn);
        bool *trial = malloc(sizeof(bool) * nn);
        int32_t ncand = 0;
        if (!impact || !tie || !order || !trial) {
            free(tie);
            free(trial);
            st = oom(&P);
            goto done;
        }
        for (int32_t i = 0; i < P.n0; i++) {
            impact[i] = NAN;
            if (!P.snap.nodes[i].dead && (P.kind[i] == K_INT8 || P.kind[i] == K_HYBRID) && !P.user_float[i])
                order[ncand++] = i;
        }
        for (int32_t a = 0; a <= ncand && !st; a++) {
            progress(&P, "sensitivity", a, ncand);
            if (a == ncand) break;
            for (int32_t i = 0; i < P.n0; i++) trial[i] = P.kind[i] == K_INT8 || P.kind[i] == K_HYBRID;
            trial[order[a]] = false;
            metrics mt;
            P.quiet = true;
            if (!(st = apply(&P, trial))) st = evaluate(&P, NULL, NULL, &mt, NULL, "sensitivity");
            P.quiet = false;
            impact[order[a]] = budget_value(&P, &mt);
            tie[order[a]] = mt.mean_err;
        }
        free(trial);
        /* most harmful first (ties: larger mean output error) */
        for (int32_t a = 1; a < ncand; a++)
            for (int32_t b = a; b > 0; b--) {
                int32_t x = order[b - 1], y = order[b];
                double ix = isnan(impact[x]) ? -INFINITY : impact[x], iy = isnan(impact[y]) ? -INFINITY : impact[y];
                if (iy > ix || (iy == ix && tie[y] > tie[x])) {
                    order[b - 1] = y;
                    order[b] = x;
                }
            }
        free(tie);
        for (int32_t a = 0; a < ncand && !st && !(bval <= budget_limit(&P)); a++) {
            progress(&P, "budget", a, ncand);
            kf[order[a]] = true;
            P.quiet = true;
            if (!(st = apply(&P, kf))) st = evaluate(&P, NULL, NULL, &m, &bytes, "budget");
            P.quiet = false;
            bval = budget_value(&P, &m);
        }
        if (st) goto done;
        progress(&P, "budget", ncand, ncand);
    }
    /* the final graph, measured with per-layer SQNR */
    if ((st = apply(&P, kf)) || (st = evaluate(&P, &fcal, fidx, &m, &bytes, "evaluate"))) goto done;
    bval = budget_value(&P, &m);
    st = make_report(&P, &m, kf, impact, &bval, bytes, report);
    if (!st && plan) st = plan_make(&P, kf, plan);
done:
    runner_close(&fcal);
    free(fidx);
    free(kf);
    free(impact);
    free(order);
    ptq_free(&P);
    return st;
}
