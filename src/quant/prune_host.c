/* Pruning and sparse weight storage in the converter (see prune_host.h). */
#include "quant/prune_host.h"

#include "graph/model.h"
#include "ops/sparse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Block density below which a layer is stored sparse by default (bench/sparse.c "sweep", one
   core, AVX-512, median of interleaved runs): a FullyConnected 1024x1024 is already 1.2x (batch 1)
   and 1.4x (batch 32) faster sparse at density 0.8 and 1.3-1.6x at 0.7; a 1x1 convolution over
   many pixels (128 -> 128, 6272 pixels) only breaks even at 0.5, where 256 -> 256 at 196 pixels
   gains 1.2x.  A KxK convolution runs the same product on its im2col rows, against the direct
   convolution kernel: on the 150x150 image classifier (mdeploy-bench --profile, every layer
   pruned to 80%) its 3x3 64 -> 128 and 128 -> 128 layers ran 1.9-2x faster sparse, its 3 -> 32
   and 32 -> 64 layers 4x slower (the repacking of few, short rows does not pay): KxK
   convolutions are stored sparse only from 128 outputs and 256 inputs per output (KH*KW*Cin).
   Stored sparse, weights take about 1.125 x density of their dense bytes. */
#define FC_MAX_DENSITY 0.7
#define CONV_MAX_DENSITY 0.5
#define KXK_MIN_OUT 128
#define KXK_MIN_IN 256
/* int8 weights (the block density measured on the int8 values): the sparse int8 product
   (mdl__qspmm) against the dense int8 core, bench/sparse.c "int8-sweep" (one core, median of
   interleaved runs, FC 1024x1024 at batch 1 and 32, 1x1 convolutions 256->256 over 196 pixels and
   128->128 over 6272): in portable C (MDL_CPU_LEVEL=0, and the other builds without x86 SIMD)
   sparse breaks even at block density 0.5 and is 1.3-2.9x faster at 0.3, 1.9-3.8x at 0.2; with
   AVX2 it breaks even at 0.3 (FC at batch 1) to 0.2 (batch 32) and stays 1.2-3x slower on the
   convolutions; against AVX-512 VNNI / AMX it is slower everywhere but FC at batch 1 at 0.1.  At
   0.3 the int8 weights take about 0.34 of their dense bytes (the size is what the int8 sparse
   storage is for: 80% block pruning + int8 is about 12x smaller than the float weights): sparse
   from below 0.3, for every int8 layer kind. */
#define FC_MAX_DENSITY_S8 0.3
#define CONV_MAX_DENSITY_S8 0.3
#define KXK_SMALL_MAX_DENSITY_S8 0.3

/* W [N, K] of a prunable layer's weight (tensor dims): false when op cannot read it sparse. */
static bool weight_matrix(mdl_op op, const mdl_op_options *opt, int32_t rank, const int64_t *dims,
                          bool *tr, int64_t *N, int64_t *K) {
    switch (op) {
    case MDL_OP_FULLY_CONNECTED:
        if (rank != 2) return false;
        *tr = false, *N = dims[0], *K = dims[1];
        break;
    case MDL_OP_MATMUL:
        if (rank != 2) return false;
        *tr = true, *N = dims[1], *K = dims[0];
        break;
    case MDL_OP_CONV2D: /* [KH, KW, Cin, Cout]: W [Cout, KH*KW*Cin] (the im2col product) */
        if (rank != 4 || opt->conv.group != 1) return false;
        *tr = true, *N = dims[3], *K = dims[0] * dims[1] * dims[2];
        break;
    default: return false;
    }
    return *N >= 1 && *K >= 1 && *N <= INT32_MAX && *K <= INT32_MAX;
}

/* Index of W's element (n, k) in the tensor. */
static inline int64_t at(bool tr, int64_t N, int64_t K, int64_t n, int64_t k) {
    return tr ? k * N + n : n * K + k;
}

static const char *const prunable_ops = "FullyConnected, MatMul with a constant 2-D B, Conv2D "
                                        "without groups, with float weights";

/* ---- options ------------------------------------------------------------------------------- */

static bool valid_sparsity(double s) { return s >= 0 && s < 1; }

/* The next "NAME=S" entry of a layer list: name (len), value; NULL at the end. */
static const char *next_entry(const char *p, const char **name, size_t *len, double *value,
                              bool *ok) {
    if (!p || !*p) return NULL;
    const char *e = strchr(p, ','), *end = e ? e : p + strlen(p), *eq = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '=') eq = q;
    *name = p;
    *len = eq ? (size_t)(eq - p) : (size_t)(end - p);
    char buf[64];
    size_t vl = eq ? (size_t)(end - eq - 1) : 0;
    *ok = eq && eq > p && vl > 0 && vl < sizeof buf;
    *value = NAN;
    if (*ok) {
        memcpy(buf, eq + 1, vl);
        buf[vl] = 0;
        char *stop;
        *value = strtod(buf, &stop);
        *ok = *stop == 0;
    }
    return e ? e + 1 : end;
}

mdl_status mdl__prune_check(const mdl_prune_options *o, mdl_error *err) {
    if (!valid_sparsity(o->sparsity))
        return mdl__error(err, MDL_INVALID_ARGUMENT, "pruning: sparsity %g is outside [0, 1)", o->sparsity);
    if (isnan(o->max_density))
        return mdl__error(err, MDL_INVALID_ARGUMENT, "pruning: max_density is NaN");
    const char *name;
    size_t len;
    double v;
    bool ok;
    for (const char *p = o->layers; (p = next_entry(p, &name, &len, &v, &ok));) {
        if (!ok)
            return mdl__error(err, MDL_INVALID_ARGUMENT, "--prune-layer '%.*s': expected NAME=SPARSITY",
                              (int)(strchr(name, ',') ? strchr(name, ',') - name : (ptrdiff_t)strlen(name)), name);
        if (!valid_sparsity(v))
            return mdl__error(err, MDL_INVALID_ARGUMENT, "--prune-layer '%.*s': sparsity %g is outside [0, 1)",
                              (int)len, name, v);
    }
    return MDL_OK;
}

/* ---- pruning the IR ------------------------------------------------------------------------ */

typedef struct layer {
    int32_t node, t;
    bool tr, global;
    int64_t N, K;
    double sparsity;
} layer;

typedef struct block {
    float score; /* mean square of the block's weights */
    int32_t layer;
    int64_t index; /* g * K + k */
} block;

static int cmp_block(const void *a, const void *b) {
    const block *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Rows of block (g, .) of an N-row matrix. */
static int64_t block_rows(int64_t N, int64_t g) {
    return N - g * MDL_SPARSE_BN < MDL_SPARSE_BN ? N - g * MDL_SPARSE_BN : MDL_SPARSE_BN;
}

/* Zeroes the weakest blocks of the layers ls[i] with pick(ls[i]) until at least `sparsity` of
   their weights are in zeroed blocks. */
static mdl_status prune_pool(cv_ctx *c, const layer *ls, int32_t nl, bool global, int32_t only,
                             double sparsity) {
    int64_t nb = 0, total = 0;
    for (int32_t i = 0; i < nl; i++)
        if (only >= 0 ? i == only : ls[i].global == global) {
            nb += mdl__bsr_groups(ls[i].N) * ls[i].K;
            total += ls[i].N * ls[i].K;
        }
    if (!nb || sparsity <= 0) return MDL_OK;
    block *bl = malloc(sizeof(block) * (size_t)nb);
    if (!bl) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory pruning the model");
    int64_t j = 0;
    for (int32_t i = 0; i < nl; i++) {
        if (only >= 0 ? i != only : ls[i].global != global) continue;
        const layer *l = &ls[i];
        const float *w = c->ts[l->t].data;
        for (int64_t g = 0; g < mdl__bsr_groups(l->N); g++)
            for (int64_t k = 0; k < l->K; k++) {
                double s = 0;
                int64_t rows = block_rows(l->N, g);
                for (int64_t r = 0; r < rows; r++) {
                    double v = w[at(l->tr, l->N, l->K, g * MDL_SPARSE_BN + r, k)];
                    s += v * v;
                }
                bl[j++] = (block){(float)(s / (double)rows), i, g * l->K + k};
            }
    }
    qsort(bl, (size_t)nb, sizeof(block), cmp_block);
    double target = ceil(sparsity * (double)total);
    int64_t zeroed = 0;
    for (j = 0; j < nb && (double)zeroed < target; j++) {
        const layer *l = &ls[bl[j].layer];
        float *w = c->ts[l->t].data;
        int64_t g = bl[j].index / l->K, k = bl[j].index % l->K, rows = block_rows(l->N, g);
        for (int64_t r = 0; r < rows; r++) w[at(l->tr, l->N, l->K, g * MDL_SPARSE_BN + r, k)] = 0.0f;
        zeroed += rows;
    }
    free(bl);
    return MDL_OK;
}

mdl_status mdl__prune_run(cv_ctx *c, const mdl_prune_options *o) {
    if (!(o->sparsity > 0) && !(o->layers && *o->layers)) return MDL_OK;
    layer *ls = calloc((size_t)c->nnodes + 1, sizeof(layer));
    int32_t *uses = calloc((size_t)c->nts + 1, sizeof(int32_t)), nl = 0;
    if (!ls || !uses) {
        free(ls);
        free(uses);
        return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory pruning the model");
    }
    for (int32_t i = 0; i < c->nnodes; i++)
        for (int32_t k = 0; !c->nodes[i].dead && k < c->nodes[i].nin; k++)
            if (c->nodes[i].in[k] >= 0) uses[c->nodes[i].in[k]]++;
    for (int32_t i = 0; i < c->nnodes; i++) {
        const cv_node *n = &c->nodes[i];
        if (n->dead || n->nin < 2 || n->in[1] < 0) continue;
        const cv_tensor *w = &c->ts[n->in[1]];
        layer l = {.node = i, .t = n->in[1], .global = true};
        /* weights only this node reads (a shared one would change its other readers) */
        if (!w->data || w->dtype != MDL_DTYPE_FLOAT32 || w->qdata || uses[l.t] != 1 || w->graph_output ||
            (n->in[0] >= 0 && c->ts[n->in[0]].data) ||
            !weight_matrix(n->op, &n->opt, w->rank, w->dims, &l.tr, &l.N, &l.K))
            continue;
        ls[nl++] = l;
    }
    free(uses);
    const char *name;
    size_t len;
    double v;
    bool ok;
    mdl_status st = MDL_OK;
    for (const char *p = o->layers; !st && (p = next_entry(p, &name, &len, &v, &ok));) {
        int32_t found = -1;
        for (int32_t i = 0; i < nl && found < 0; i++)
            if (strlen(c->nodes[ls[i].node].name) == len && !strncmp(c->nodes[ls[i].node].name, name, len))
                found = i;
        if (found >= 0) {
            ls[found].global = false;
            ls[found].sparsity = v;
            continue;
        }
        const cv_node *other = NULL;
        for (int32_t i = 0; i < c->nnodes && !other; i++)
            if (!c->nodes[i].dead && strlen(c->nodes[i].name) == len && !strncmp(c->nodes[i].name, name, len))
                other = &c->nodes[i];
        if (other)
            st = mdl__error(c->err, MDL_INVALID_ARGUMENT, "--prune-layer '%.*s': that node is a %s whose "
                            "weights cannot be pruned here (prunable: %s, read by that node only)",
                            (int)len, name, mdl_op_name(other->op), prunable_ops);
        else
            st = mdl__error(c->err, MDL_INVALID_ARGUMENT, "--prune-layer '%.*s': the model has no node of "
                            "that name (node names as mdeploy-inspect and the conversion report show them)",
                            (int)len, name);
    }
    if (!st) st = prune_pool(c, ls, nl, true, -1, o->sparsity);
    for (int32_t i = 0; i < nl && !st; i++)
        if (!ls[i].global) st = prune_pool(c, ls, nl, false, i, ls[i].sparsity);
    free(ls);
    return st;
}

/* ---- storage ------------------------------------------------------------------------------ */

/* Node i's input 1 as a prunable weight of the built graph: every reader reads it as a weight
   in the same orientation, and it is no graph output. */
static bool store_candidate(const mdl__graph *g, int32_t i, bool *tr, int64_t *N, int64_t *K) {
    const mdl__node *n = &g->nodes[i];
    if (n->nin < 2 || n->in[1] < 0 || (n->in[0] >= 0 && g->tensors[n->in[0]].data)) return false;
    int32_t t = n->in[1];
    const mdl__tensor *w = &g->tensors[t];
    if (!w->data || !weight_matrix(n->op, &n->opt, w->rank, w->dims, tr, N, K)) return false;
    for (int32_t k = 0; k < g->noutputs; k++)
        if (g->outputs[k] == t) return false;
    for (int32_t j = 0; j < g->nnodes; j++)
        for (int32_t k = 0; k < g->nodes[j].nin; k++) {
            if (g->nodes[j].in[k] != t) continue;
            bool tr2;
            int64_t n2, k2;
            const mdl__node *m = &g->nodes[j];
            if (j < i || k != 1 || !weight_matrix(m->op, &m->opt, w->rank, w->dims, &tr2, &n2, &k2) ||
                tr2 != *tr || (m->in[0] >= 0 && g->tensors[m->in[0]].data))
                return false; /* a reader that is no weighted layer, or listed at an earlier node */
        }
    return true;
}

/* The prunable layers are reported when o prunes or a layer is stored sparse. */
static bool listed(const mdl_convert_report *rep, const mdl_prune_options *o) {
    bool any = o->sparsity > 0 || (o->layers && *o->layers);
    for (int32_t i = 0; i < rep->nprune_layers; i++) any = any || !strncmp(rep->prune_layers[i].storage, "sparse", 6);
    return any;
}

mdl_status mdl__prune_store(mdl_builder *b, const mdl_prune_options *o, mdl_convert_report *rep,
                            mdl_error *err) {
    mdl__graph *g = mdl__builder_graph(b);
    mdl_prune_layer *out = calloc((size_t)g->nnodes + 1, sizeof(mdl_prune_layer));
    if (!out) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
    int32_t nl = 0;
    mdl_status st = MDL_OK;
    for (int32_t i = 0; i < g->nnodes && !st; i++) {
        bool tr;
        int64_t N, K;
        if (!store_candidate(g, i, &tr, &N, &K)) continue;
        const mdl__node *n = &g->nodes[i];
        const mdl__tensor *w = &g->tensors[n->in[1]];
        if (w->dtype != MDL_DTYPE_FLOAT32 && w->dtype != MDL_DTYPE_INT8) continue;
        int64_t zeros = 0, blocks = 0, groups = mdl__bsr_groups(N);
        for (int64_t gi = 0; gi < groups; gi++)
            for (int64_t k = 0; k < K; k++) {
                bool nz = false;
                for (int64_t r = 0; r < block_rows(N, gi); r++) {
                    int64_t e = at(tr, N, K, gi * MDL_SPARSE_BN + r, k);
                    bool zero = w->dtype == MDL_DTYPE_FLOAT32 ? ((const float *)w->data)[e] == 0.0f
                                                              : ((const int8_t *)w->data)[e] == 0;
                    zeros += zero;
                    nz = nz || !zero; /* NaN counts as non-zero */
                }
                blocks += nz;
            }
        mdl_prune_layer *l = &out[nl++];
        l->name = strdup(n->name ? n->name : "");
        l->op = mdl_op_name(n->op);
        l->weights = N * K;
        l->sparsity = (double)zeros / (double)(N * K);
        l->block_density = (double)blocks / (double)(groups * K);
        l->storage = w->dtype == MDL_DTYPE_INT8 ? "dense int8" : "dense";
        l->bytes = w->bytes;
        if (!l->name) st = mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
        if (st) continue;
        const bool s8 = w->dtype == MDL_DTYPE_INT8;
        double limit = n->op != MDL_OP_CONV2D ? (s8 ? FC_MAX_DENSITY_S8 : FC_MAX_DENSITY)
                       : (w->dims[0] == 1 && w->dims[1] == 1) || (N >= KXK_MIN_OUT && K >= KXK_MIN_IN)
                           ? (s8 ? CONV_MAX_DENSITY_S8 : CONV_MAX_DENSITY)
                       : (s8 ? KXK_SMALL_MAX_DENSITY_S8 : 0);
        if (o->max_density > 0) limit = o->max_density;
        if (o->max_density < 0 || !(l->block_density < limit || o->max_density >= 1)) continue;
        if ((st = mdl__builder_set_sparse(b, n->in[1], tr)))
            st = mdl__error(err, st, "%s '%s': storing its weights sparse failed", l->op, l->name);
        l->storage = s8 ? "sparse int8" : "sparse";
        l->bytes = s8 ? mdl__bsr_bytes_s8(N, blocks) : mdl__bsr_bytes(N, blocks);
    }
    rep->nprune_layers = nl;
    rep->prune_layers = out;
    /* Listed only when they matter (callers that never prune need not free a report) */
    if (!st && !listed(rep, o)) mdl__prune_report_free(rep);
    return st;
}

/* ---- report ------------------------------------------------------------------------------- */

void mdl__prune_report_free(mdl_convert_report *rep) {
    for (int32_t i = 0; rep->prune_layers && i < rep->nprune_layers; i++) free(rep->prune_layers[i].name);
    free(rep->prune_layers);
    rep->prune_layers = NULL;
    rep->nprune_layers = 0;
    free(rep->json);
    rep->json = NULL;
}

/* JSON string of s into out (at most 6 bytes per byte of s + 3). */
static size_t json_str(char *out, const char *s) {
    char *p = out;
    *p++ = '"';
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        if (*q == '"' || *q == '\\') p += sprintf(p, "\\%c", *q);
        else if (*q < 0x20) p += sprintf(p, "\\u%04x", *q);
        else *p++ = (char)*q;
    }
    *p++ = '"';
    *p = 0;
    return (size_t)(p - out);
}

mdl_status mdl__prune_report_json(mdl_convert_report *rep, const mdl_prune_options *o, mdl_error *err) {
    if (!rep->nprune_layers || !listed(rep, o)) return MDL_OK;
    const char *base = rep->quant ? mdl_convert_report_json(rep) : NULL;
    size_t cap = (base ? strlen(base) : 0) + 64;
    for (int32_t i = 0; i < rep->nprune_layers; i++) cap += 6 * strlen(rep->prune_layers[i].name) + 256;
    char *s = malloc(cap), *p = s;
    if (!s) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
    if (base) { /* the quantization report without its closing brace */
        size_t n = strlen(base);
        while (n && base[n - 1] != '}') n--;
        memcpy(p, base, n ? n - 1 : 0);
        p += n ? n - 1 : 0;
        while (p > s && (p[-1] == '\n' || p[-1] == ' ')) p--;
        p += sprintf(p, ",\n  \"pruning\": [");
    } else {
        p += sprintf(p, "{\n  \"pruning\": [");
    }
    for (int32_t i = 0; i < rep->nprune_layers; i++) {
        const mdl_prune_layer *l = &rep->prune_layers[i];
        p += sprintf(p, "%s\n    {\"name\": ", i ? "," : "");
        p += json_str(p, l->name);
        p += sprintf(p, ", \"op\": \"%s\", \"weights\": %lld, \"sparsity\": %.6g, \"block_density\": %.6g, "
                        "\"storage\": \"%s\", \"bytes\": %zu}",
                     l->op, (long long)l->weights, l->sparsity, l->block_density, l->storage, l->bytes);
    }
    sprintf(p, "\n  ]\n}\n");
    free(rep->json);
    rep->json = s;
    return MDL_OK;
}

/* ---- evaluation (mdeploy-convert --eval, --prune-sensitivity) ------------------------------ */

#include "mdeploy/npy.h"

/* Class id of label row i (integer .npy). */
static bool label_at(const mdl_npy *y, int64_t i, int64_t *out) {
    switch (y->dtype) {
    case MDL_DTYPE_INT64: *out = ((const int64_t *)y->data)[i]; return true;
    case MDL_DTYPE_INT32: *out = ((const int32_t *)y->data)[i]; return true;
    case MDL_DTYPE_UINT8: *out = ((const uint8_t *)y->data)[i]; return true;
    case MDL_DTYPE_INT8: *out = ((const int8_t *)y->data)[i]; return true;
    default: return false;
    }
}

/* Runs rows r0 .. r0 + n - 1 of x through s (input 0 sized for n rows) and counts the rows whose
   output-0 argmax is the label. */
static mdl_status eval_batch(mdl_session *s, const mdl_npy *x, const mdl_npy *y, int64_t r0, int64_t n,
                             int64_t *correct, mdl_error *err) {
    size_t row = x->bytes / (size_t)x->dims[0];
    mdl_tensor_info in, out;
    mdl_session_input_info(s, 0, &in);
    if (in.dtype != MDL_DTYPE_FLOAT32 || in.bytes != row * (size_t)n)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "--eval: the model's input '%s' (%s, %zu bytes) does not "
                          "take %lld rows of %zu float bytes", in.name, mdl_dtype_name(in.dtype), in.bytes,
                          (long long)n, row);
    memcpy(mdl_session_input_data(s, 0), (const char *)x->data + row * (size_t)r0, row * (size_t)n);
    mdl_status st = mdl_session_run(s);
    if (st) return mdl__error(err, st, "--eval: running the model failed");
    mdl_session_output_info(s, 0, &out);
    if (out.dtype != MDL_DTYPE_FLOAT32 || !out.bytes || out.bytes % ((size_t)n * sizeof(float)))
        return mdl__error(err, MDL_INVALID_ARGUMENT, "--eval: output '%s' (%s) is no float score per row",
                          out.name, mdl_dtype_name(out.dtype));
    const float *o = mdl_session_output_data(s, 0);
    int64_t classes = (int64_t)(out.bytes / sizeof(float)) / n;
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0, label;
        for (int64_t c = 1; c < classes; c++)
            if (o[i * classes + c] > o[i * classes + best]) best = c;
        label_at(y, r0 + i, &label);
        *correct += best == label;
    }
    return MDL_OK;
}

mdl_status mdl_eval_top1(const void *mdl, size_t size, const char *x_path, const char *y_path, double *accuracy,
                         int64_t *rows, mdl_error *err) {
    mdl_npy x, y;
    int64_t label;
    mdl_status st = mdl_npy_read(x_path, &x, err);
    if (st) return st;
    if ((st = mdl_npy_read(y_path, &y, err))) {
        mdl_npy_free(&x);
        return st;
    }
    mdl_model *m = NULL;
    mdl_session *s = NULL;
    int64_t correct = 0;
    if (x.dtype != MDL_DTYPE_FLOAT32 || x.rank < 1 || x.dims[0] < 1 || y.rank != 1 || y.dims[0] != x.dims[0] ||
        !label_at(&y, 0, &label)) {
        st = mdl__error(err, MDL_INVALID_ARGUMENT, "--eval %s %s: expected float32 rows [N, ...] and N integer "
                        "labels", x_path, y_path);
        goto done;
    }
    if ((st = mdl_model_load_buffer(mdl, size, NULL, &m, err))) goto done;
    /* all rows at once where the model's batch dim follows, else one row at a time */
    mdl_session_options so = mdl_session_options_default();
    mdl_shape shape = {x.rank, {0}};
    for (int32_t d = 0; d < x.rank; d++) shape.dims[d] = x.dims[d];
    so.ninput_shapes = 1;
    so.input_shapes = &shape;
    int64_t batch = x.dims[0];
    if (mdl_session_create(m, &so, &s, NULL)) {
        shape.dims[0] = batch = 1;
        if ((st = mdl_session_create(m, &so, &s, err))) goto done;
    }
    for (int64_t r = 0; r < x.dims[0] && !st; r += batch) st = eval_batch(s, &x, &y, r, batch, &correct, err);
    *accuracy = 100.0 * (double)correct / (double)x.dims[0];
    *rows = x.dims[0];
done:
    mdl_session_free(s);
    mdl_model_free(m);
    mdl_npy_free(&x);
    mdl_npy_free(&y);
    return st;
}
