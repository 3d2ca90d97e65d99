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
    if (!valid_sparsity(o->channels))
        return mdl__error(err, MDL_INVALID_ARGUMENT, "pruning: channel share %g is outside [0, 1)", o->channels);
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

static mdl_status prune_channels(cv_ctx *c, double share);

mdl_status mdl__prune_run(cv_ctx *c, const mdl_prune_options *o) {
    if (o->channels > 0) {
        mdl_status st = prune_channels(c, o->channels);
        if (st) return st;
    }
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

/* ---- structured pruning (channels) --------------------------------------------------------- */

/* Live readers of tensor t: how many, and the first (node index) in *first. */
static int32_t readers(const cv_ctx *c, int32_t t, int32_t *first) {
    int32_t n = 0;
    *first = -1;
    for (int32_t i = 0; i < c->nnodes; i++) {
        if (c->nodes[i].dead) continue;
        for (int32_t k = 0; k < c->nodes[i].nin; k++)
            if (c->nodes[i].in[k] == t) {
                if (!n++) *first = i;
                break;
            }
    }
    return n;
}

/* A float constant only node i reads (as one input). */
static bool own_const(const cv_ctx *c, int32_t i, int32_t t) {
    int32_t first;
    return t >= 0 && c->ts[t].data && !c->ts[t].qdata && c->ts[t].dtype == MDL_DTYPE_FLOAT32 &&
           !c->ts[t].graph_output && readers(c, t, &first) == 1 && first == i;
}

/* Maps zero to zero and keeps the channels apart (a removed channel stays 0 through it). */
static bool zero_preserving(const cv_node *n) {
    switch (n->op) {
    case MDL_OP_MAX_POOL2D:
    case MDL_OP_AVG_POOL2D:
    case MDL_OP_RELU: return true;
    case MDL_OP_CLIP: return n->opt.act.min <= 0 && n->opt.act.max >= 0;
    default: return false;
    }
}

static bool fused_zero(const mdl_fused_act *a) {
    return a->kind != MDL_ACT_CLIP || (a->clip_min <= 0 && a->clip_max >= 0);
}

/* A layer to shrink: producer p (Conv2D / FullyConnected), the tensors from its output to the
   consumer's input (their last dim is the channel, or for a flatten the spatial positions times
   the channels), and the consumer q with `spatial` input features per channel. */
typedef struct chan_layer {
    int32_t p, q, path[16], npath;
    int64_t C, spatial;
} chan_layer;

/* 1: prunable (*L filled); 0: leave alone (leads to a graph output, or not a float layer);
   error: channels that meet something that cannot be shrunk. */
static int trace(cv_ctx *c, int32_t p, chan_layer *L, mdl_status *st) {
    const cv_node *n = &c->nodes[p];
    *st = MDL_OK;
    if (n->op == MDL_OP_CONV2D && n->opt.conv.group != 1) return 0;
    if (n->op != MDL_OP_CONV2D && n->op != MDL_OP_FULLY_CONNECTED) return 0;
    if (n->nin < 2 || !own_const(c, p, n->in[1]) || (n->nin > 2 && n->in[2] >= 0 && !own_const(c, p, n->in[2])) ||
        (n->in[0] >= 0 && c->ts[n->in[0]].data))
        return 0;
    const cv_tensor *w = &c->ts[n->in[1]];
    if ((n->op == MDL_OP_CONV2D && w->rank != 4) || (n->op == MDL_OP_FULLY_CONNECTED && w->rank != 2)) return 0;
    *L = (chan_layer){.p = p, .q = -1, .C = n->op == MDL_OP_CONV2D ? w->dims[3] : w->dims[0], .spatial = 1};
    const mdl_fused_act *act = n->op == MDL_OP_CONV2D ? &n->opt.conv.act : &n->opt.fc.act;
    int32_t t = n->out[0];
    L->path[L->npath++] = t;
    const char *why = NULL;
    const cv_node *at = NULL;
    for (;;) {
        int32_t r, nr = readers(c, t, &r);
        bool out = c->ts[t].graph_output;
        if (out || nr == 0) return 0; /* the model's outputs (or nothing) depend on these channels as they are */
        const cv_node *m = &c->nodes[r];
        at = m;
        if (nr > 1) { /* name the first two readers */
            const cv_node *m2 = NULL;
            for (int32_t i = r + 1; i < c->nnodes && !m2; i++)
                for (int32_t k = 0; !c->nodes[i].dead && k < c->nodes[i].nin && !m2; k++)
                    if (c->nodes[i].in[k] == t) m2 = &c->nodes[i];
            *st = mdl__error(c->err, MDL_UNSUPPORTED, "--prune channels: %s '%s': its output channels are read by "
                             "%d nodes (%s '%s', %s '%s'%s): a branch or residual connection, which structured pruning "
                             "cannot shrink (it follows a layer's channels to one Conv2D or FullyConnected)",
                             mdl_op_name(n->op), n->name, (int)nr, mdl_op_name(m->op), m->name ? m->name : "",
                             mdl_op_name(m2->op), m2->name ? m2->name : "", nr > 2 ? ", ..." : "");
            return -1;
        }
        if (zero_preserving(m) && m->in[0] == t && m->nout >= 1 && L->npath < 16) {
            t = m->out[0];
            L->path[L->npath++] = t;
            continue;
        }
        if (m->op == MDL_OP_RESHAPE && L->spatial == 1 && c->ts[t].rank == 4 && c->ts[m->out[0]].rank == 2 &&
            c->ts[m->out[0]].dims[1] == c->ts[t].dims[1] * c->ts[t].dims[2] * c->ts[t].dims[3] &&
            c->ts[m->out[0]].dims[0] == c->ts[t].dims[0] && L->npath < 16) {
            int32_t r2;
            int32_t t2 = m->out[0];
            if (c->ts[t2].graph_output || readers(c, t2, &r2) != 1 || c->nodes[r2].op != MDL_OP_FULLY_CONNECTED) {
                why = "is flattened for something other than one FullyConnected";
                break;
            }
            L->spatial = c->ts[t].dims[1] * c->ts[t].dims[2];
            t = t2;
            L->path[L->npath++] = t;
            continue;
        }
        bool weighted = (m->op == MDL_OP_CONV2D && m->opt.conv.group == 1) ||
                        (m->op == MDL_OP_FULLY_CONNECTED && (L->spatial > 1 || c->ts[t].rank >= 1));
        if (weighted && m->in[0] == t && m->nin >= 2 && own_const(c, r, m->in[1]) && fused_zero(act) &&
            c->ts[m->in[1]].rank == (m->op == MDL_OP_CONV2D ? 4 : 2)) {
            const cv_tensor *mw = &c->ts[m->in[1]];
            int64_t cin = m->op == MDL_OP_CONV2D ? mw->dims[2] : mw->dims[1] / L->spatial;
            if (cin == L->C && (m->op == MDL_OP_CONV2D || mw->dims[1] == L->C * L->spatial)) {
                L->q = r;
                return 1;
            }
        }
        if (m->op == MDL_OP_SOFTMAX || m->op == MDL_OP_LOG_SOFTMAX || m->op == MDL_OP_SIGMOID) {
            /* toward the outputs through these: an output layer, left alone */
            int32_t r3;
            if (c->ts[m->out[0]].graph_output && readers(c, m->out[0], &r3) == 0) return 0;
        }
        why = !fused_zero(act) ? "would not stay zero through its fused clip" : "cannot be shrunk";
        break;
    }
    *st = mdl__error(c->err, MDL_UNSUPPORTED, "--prune channels: %s '%s': its output channels meet %s '%s', "
                     "which %s (structured pruning follows a layer's channels through pooling and ReLU/Clip "
                     "to one Conv2D without groups or FullyConnected)", mdl_op_name(n->op), n->name,
                     mdl_op_name(at->op), at->name ? at->name : "", why);
    return -1;
}

typedef struct chan_score {
    double l1;
    int64_t c;
} chan_score;

static int cmp_chan(const void *a, const void *b) {
    const chan_score *x = a, *y = b;
    if (x->l1 != y->l1) return x->l1 < y->l1 ? -1 : 1;
    return x->c < y->c ? -1 : x->c > y->c;
}

/* Keeps the elements of a row-major tensor whose index along dim `axis` has keep[] set, in
   place; the dim becomes the kept count. */
static void compact(cv_tensor *x, int32_t axis, const bool *keep, int64_t kept) {
    int64_t outer = 1, inner = 1, n = x->dims[axis];
    for (int32_t d = 0; d < axis; d++) outer *= x->dims[d];
    for (int32_t d = axis + 1; d < x->rank; d++) inner *= x->dims[d];
    float *v = x->data;
    int64_t o = 0;
    for (int64_t a = 0; a < outer; a++)
        for (int64_t i = 0; i < n; i++)
            if (keep[i])
                for (int64_t j = 0; j < inner; j++) v[o++] = v[(a * n + i) * inner + j];
    x->dims[axis] = kept;
    x->count = o;
    x->bytes = (size_t)o * sizeof(float);
}

/* Every layer's filters are chosen on the original weights (a layer that is also the consumer of
   another one is scored before that one removes its inputs), then all are removed. */
static mdl_status prune_channels(cv_ctx *c, double share) {
    chan_layer *ls = malloc(sizeof *ls * (size_t)(c->nnodes + 1));
    bool **keeps = calloc((size_t)c->nnodes + 1, sizeof *keeps);
    int32_t nl = 0;
    mdl_status st = ls && keeps ? MDL_OK : mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory pruning channels");
    for (int32_t p = 0; p < c->nnodes && !st; p++) {
        if (c->nodes[p].dead) continue;
        chan_layer L;
        int r = trace(c, p, &L, &st);
        if (r <= 0) continue;
        int64_t drop = (int64_t)floor(share * (double)L.C);
        if (drop < 1) continue;
        if (drop >= L.C) { /* cannot happen with share < 1; kept as the rule's guard */
            st = mdl__error(c->err, MDL_INVALID_ARGUMENT, "--prune channels: %s '%s' would lose all its %lld "
                            "outputs", mdl_op_name(c->nodes[p].op), c->nodes[p].name, (long long)L.C);
            break;
        }
        const cv_tensor *w = &c->ts[c->nodes[p].in[1]];
        bool conv = c->nodes[p].op == MDL_OP_CONV2D;
        chan_score *sc = malloc(sizeof *sc * (size_t)L.C);
        bool *keep = malloc(sizeof(bool) * (size_t)(L.C * L.spatial));
        if (!sc || !keep) {
            free(sc);
            free(keep);
            st = mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory pruning channels");
            break;
        }
        const float *wv = w->data;
        int64_t per = w->count / L.C;
        for (int64_t ch = 0; ch < L.C; ch++) {
            double s = 0;
            for (int64_t e = 0; e < per; e++) s += fabs((double)wv[conv ? e * L.C + ch : ch * per + e]);
            sc[ch] = (chan_score){s, ch};
        }
        qsort(sc, (size_t)L.C, sizeof *sc, cmp_chan);
        for (int64_t ch = 0; ch < L.C; ch++) keep[ch] = true;
        for (int64_t k = 0; k < drop; k++) keep[sc[k].c] = false;
        free(sc);
        keeps[nl] = keep;
        ls[nl++] = L;
    }
    for (int32_t i = 0; i < nl && !st; i++) {
        const chan_layer *L = &ls[i];
        bool *keep = keeps[i];
        int64_t kept = 0;
        for (int64_t ch = 0; ch < L->C; ch++) kept += keep[ch];
        cv_node *n = &c->nodes[L->p], *q = &c->nodes[L->q];
        bool conv = n->op == MDL_OP_CONV2D;
        compact(&c->ts[n->in[1]], conv ? 3 : 0, keep, kept); /* the producer's filters / units */
        if (n->nin > 2 && n->in[2] >= 0) compact(&c->ts[n->in[2]], 0, keep, kept);
        for (int32_t k = 0; k < L->npath; k++) { /* activations: channels last (or flattened) */
            cv_tensor *x = &c->ts[L->path[k]];
            bool flat = L->spatial > 1 && k == L->npath - 1;
            x->dims[x->rank - 1] = flat ? kept * L->spatial : kept;
            x->count = 1;
            for (int32_t d = 0; d < x->rank; d++) x->count *= x->dims[d];
            x->bytes = (size_t)x->count * mdl_dtype_size(x->dtype);
        }
        cv_tensor *qw = &c->ts[q->in[1]];
        if (q->op == MDL_OP_CONV2D) {
            compact(qw, 2, keep, kept); /* [KH, KW, Cin, Cout]: the input channels */
        } else { /* [N, K], K = spatial x C (NHWC flatten: position-major) */
            for (int64_t s2 = 1; s2 < L->spatial; s2++)
                for (int64_t ch = 0; ch < L->C; ch++) keep[s2 * L->C + ch] = keep[ch];
            compact(qw, 1, keep, kept * L->spatial);
        }
    }
    for (int32_t i = 0; keeps && i < nl; i++) free(keeps[i]);
    free(keeps);
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
