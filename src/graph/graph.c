/* Graph validation and the memory planner (see graph.h). */
#include "graph.h"

#include "quant/quant.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const char *tname(const mdl__graph *g, int32_t t) {
    return g->tensors[t].name ? g->tensors[t].name : "";
}

static bool is_const(const mdl__graph *g, int32_t t) { return g->tensors[t].data != NULL; }

void mdl__graph_kctx(const mdl__graph *g, int32_t i, void *const *data, mdl__kctx *ctx) {
    const mdl__node *n = &g->nodes[i];
    ctx->op = n->op;
    ctx->name = n->name;
    ctx->opt = &n->opt;
    ctx->nin = n->nin;
    ctx->nout = n->nout;
    ctx->scratch_bytes = n->scratch_bytes;
    ctx->packed_bytes = n->packed_bytes;
    ctx->packed = n->packed;
    ctx->par = NULL;
    for (int32_t k = 0; k < n->nin; k++) {
        int32_t t = n->in[k];
        ctx->in[k] = t >= 0 ? &g->tensors[t] : NULL;
        ctx->in_data[k] = t < 0 ? NULL : data ? data[t] : g->tensors[t].data; /* pack: weights */
    }
    for (int32_t k = 0; k < n->nout; k++) {
        int32_t t = n->out[k];
        ctx->out[k] = t >= 0 && g->tensors[t].rank >= 0 ? &g->tensors[t] : NULL;
        ctx->out_data[k] = t >= 0 && data ? data[t] : NULL;
    }
}

/* Sets the dims of dynamic output k of node n from the symbols' current values; computed dims
   stay -1 for prepare to infer, except a RESHAPE's (the element count leaves one) and a SLICE's
   (to the end of the input). */
static mdl_status resolve_dims(mdl__graph *g, const mdl__node *n, int32_t k, mdl_error *err) {
    mdl__tensor *t = &g->tensors[n->out[k]];
    const char *op = mdl_op_name(n->op), *nm = n->name ? n->name : "";
    int32_t unknown = -1, nunknown = 0;
    int64_t known = 1;
    for (int32_t d = 0; d < t->rank; d++) {
        int32_t code = t->sym[d];
        if (code >= 0) t->dims[d] = g->symval[code];
        else if (code == MDL__DIM_COMPUTED) {
            t->dims[d] = -1;
            unknown = d;
            nunknown++;
            continue;
        }
        if (t->dims[d] < 0 || __builtin_mul_overflow(known, t->dims[d], &known))
            return mdl__error(err, MDL_SHAPE, "%s '%s': output '%s' dim %d is invalid", op, nm,
                              tname(g, n->out[k]), (int)d);
    }
    if (!nunknown || (n->op != MDL_OP_RESHAPE && n->op != MDL_OP_SLICE)) return MDL_OK;
    const mdl__tensor *x = n->in[0] >= 0 ? &g->tensors[n->in[0]] : NULL;
    if (nunknown > 1 || !x || x->rank < 0)
        return mdl__error(err, MDL_SHAPE, "%s '%s': output '%s' has %d computed dims (at most one "
                          "can be derived)", op, nm, tname(g, n->out[k]), (int)nunknown);
    int64_t v;
    if (n->op == MDL_OP_RESHAPE) {
        if (known == 0 || x->count % known)
            return mdl__error(err, MDL_SHAPE, "%s '%s': %lld elements cannot be reshaped to '%s' "
                              "(the other dims hold %lld)", op, nm, (long long)x->count,
                              tname(g, n->out[k]), (long long)known);
        v = x->count / known;
    } else {
        if (unknown >= x->rank || n->opt.slice.step[unknown] == 0)
            return mdl__error(err, MDL_SHAPE, "%s '%s': bad computed dim %d", op, nm, (int)unknown);
        int64_t b = n->opt.slice.begin[unknown], st = n->opt.slice.step[unknown],
                size = x->dims[unknown];
        if (b < 0 || b >= size) v = 0;
        else if (st > 0) v = (size - b + st - 1) / st;
        else v = b / -st + 1;
    }
    t->dims[unknown] = v;
    return MDL_OK;
}

mdl_status mdl__graph_check_syms(const mdl__graph *g, mdl_error *err) {
    if (!MDL__DYNAMIC) return MDL_OK; /* the loader refused symbols, the builder made none */
    if (g->nsyms < 0 || g->nsyms > MDL__MAX_SYMBOLS)
        return mdl__error(err, MDL_CORRUPT_MODEL, "%d symbolic dims (at most %d)", (int)g->nsyms,
                          MDL__MAX_SYMBOLS);
    for (int32_t s = 0; s < g->nsyms; s++) {
        const mdl__symbol *y = &g->syms[s];
        if (y->max < 0 || y->initial < 0 || y->initial > MDL_MAX_ELEMENTS ||
            (y->max && y->initial > y->max))
            return mdl__error(err, MDL_CORRUPT_MODEL, "symbolic dim %d '%s': initial value %lld "
                              "and bound %lld are invalid", (int)s, y->name ? y->name : "",
                              (long long)y->initial, (long long)y->max);
    }
    for (int32_t t = 0; t < g->ntensors; t++) {
        const mdl__tensor *x = &g->tensors[t];
        if (!x->sym) continue;
        if (!g->nsyms || x->data || x->rank < 0)
            return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s' has dynamic dims but %s",
                              (int)t, tname(g, t), x->data ? "holds constant data" : "the model has no symbols");
        for (int32_t d = 0; d < x->rank; d++)
            if (x->sym[d] < MDL__DIM_COMPUTED || x->sym[d] >= g->nsyms)
                return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s': dim %d refers to symbol "
                                  "%d of %d", (int)t, tname(g, t), (int)d, (int)x->sym[d], (int)g->nsyms);
    }
    for (int32_t k = 0; k < g->ninputs; k++) {
        int32_t t = g->inputs[k];
        if (t < 0 || t >= g->ntensors || !g->tensors[t].sym) continue; /* range: graph check */
        for (int32_t d = 0; d < g->tensors[t].rank; d++)
            if (g->tensors[t].sym[d] == MDL__DIM_COMPUTED)
                return mdl__error(err, MDL_CORRUPT_MODEL, "graph input '%s': dim %d is computed "
                                  "(inputs have fixed or named dims)", tname(g, t), (int)d);
    }
    return MDL_OK;
}

static mdl_status check_node(mdl__graph *g, int32_t i, bool infer, uint8_t *defined,
                             mdl_error *err) {
    mdl__node *n = &g->nodes[i];
    const char *nm = n->name ? n->name : "";
    if ((unsigned)n->op >= MDL_OP_COUNT)
        return mdl__error(err, MDL_UNSUPPORTED, "node %d '%s': unknown operator %d", (int)i, nm,
                          (int)n->op);
    const char *op = mdl_op_name(n->op);
    if (n->nin < 1 || n->nin > MDL_MAX_NODE_IO || n->nout < 1 || n->nout > MDL_MAX_NODE_IO)
        return mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': %d inputs and %d outputs (1..%d allowed)",
                          op, nm, (int)n->nin, (int)n->nout, MDL_MAX_NODE_IO);
    for (int32_t k = 0; k < n->nin; k++) {
        int32_t t = n->in[k];
        if (t == -1) continue;
        if (t < 0 || t >= g->ntensors)
            return mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': input %d refers to tensor %d of %d",
                              op, nm, (int)k, (int)t, (int)g->ntensors);
        if (!defined[t])
            return mdl__error(err, MDL_CORRUPT_MODEL,
                              "%s '%s': input %d uses tensor %d '%s' before it is defined "
                              "(nodes out of order or a cycle)",
                              op, nm, (int)k, (int)t, tname(g, t));
    }
    if (n->in[0] < 0)
        return mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': first input is missing", op, nm);
    mdl_dtype key = g->tensors[n->in[0]].dtype;
    n->kernel = mdl__kernel_resolve(g->resolver, n->op, key);
    if (!n->kernel) return mdl__kernel_missing(g->resolver, n->op, key, nm, err);
    for (int32_t k = 0; MDL__SPARSE && k < n->nin; k++) /* block-sparse weights: see mdl__tensor */
        if (n->in[k] >= 0 && g->tensors[n->in[k]].sparse &&
            (k != 1 || !(n->kernel->flags & MDL__KERNEL_SPARSE_W)))
            return mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': input %d '%s' is stored block-sparse, "
                              "which this operator does not read there", op, nm, (int)k, tname(g, n->in[k]));
    for (int32_t k = 0; k < n->nout; k++) {
        int32_t t = n->out[k];
        if (t == -1 && k > 0) continue; /* optional output left unused (e.g. LSTM Y_c) */
        if (t < 0 || t >= g->ntensors)
            return mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': output %d refers to tensor %d of %d",
                              op, nm, (int)k, (int)t, (int)g->ntensors);
        if (defined[t])
            return mdl__error(err, MDL_CORRUPT_MODEL,
                              "%s '%s': output tensor %d '%s' is already defined (a weight, a graph "
                              "input or another node's output)",
                              op, nm, (int)t, tname(g, t));
        defined[t] = 1; /* also rejects a node naming the same output twice */
    }
    /* Outputs with dynamic dims: declared where the symbols' values (and, for RESHAPE and
       SLICE, the input) determine them, inferred by prepare otherwise. */
    int32_t dyn_rank[MDL_MAX_NODE_IO];
    for (int32_t k = 0; k < n->nout; k++) {
        dyn_rank[k] = -1;
        if (!MDL__DYNAMIC || n->out[k] < 0 || !g->tensors[n->out[k]].sym || !g->symval) continue;
        mdl_status st = resolve_dims(g, n, k, err);
        if (st) return st;
        mdl__tensor *t = &g->tensors[n->out[k]];
        for (int32_t d = 0; d < t->rank; d++)
            if (t->dims[d] < 0) { /* left to prepare */
                dyn_rank[k] = t->rank;
                t->rank = -1;
                break;
            }
    }
    mdl__kctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.err = err;
    mdl__graph_kctx(g, i, NULL, &ctx);
    ctx.scratch_bytes = ctx.packed_bytes = 0;
    ctx.packed = NULL;
    mdl_status st = n->kernel->prepare(&ctx);
    for (int32_t k = 0; MDL__DYNAMIC && k < n->nout; k++)
        if (dyn_rank[k] >= 0) g->tensors[n->out[k]].rank = dyn_rank[k];
    if (st) return st;
    n->scratch_bytes = mdl__align_up(ctx.scratch_bytes, MDL__LINE_ALIGN);
    n->packed_bytes = n->kernel->pack ? ctx.packed_bytes : 0;
    for (int32_t k = 0; k < n->nout; k++) {
        if (n->out[k] < 0) continue;
        mdl__tensor *t = &g->tensors[n->out[k]];
        const mdl__shape *s = &ctx.out_shape[k];
        char a[96], b[96];
        if (MDL__DYNAMIC && dyn_rank[k] >= 0 && s->rank == t->rank) {
            /* computed dims take the inferred sizes; the others are compared below */
            for (int32_t d = 0; d < t->rank; d++)
                if (t->dims[d] < 0) t->dims[d] = s->dims[d];
        }
        if (t->rank < 0 && infer) {
            t->dtype = s->dtype;
            t->rank = s->rank;
            memcpy(t->dims, s->dims, sizeof(int64_t) * (size_t)s->rank);
        } else if (t->rank != s->rank || t->dtype != s->dtype ||
                   memcmp(t->dims, s->dims, sizeof(int64_t) * (size_t)(s->rank > 0 ? s->rank : 0))) {
            return mdl__error(err, MDL_SHAPE,
                              "%s '%s': output %d '%s' is declared %s %s but the operator produces %s %s",
                              op, nm, (int)k, t->name ? t->name : "", mdl_dtype_name(t->dtype),
                              mdl__dims_str(a, sizeof a, t->rank < 0 ? 0 : t->rank, t->dims),
                              mdl_dtype_name(s->dtype), mdl__dims_str(b, sizeof b, s->rank, s->dims));
        }
        if (!mdl__shape_size(t->rank, t->dims, mdl_dtype_size(t->dtype), &t->count, &t->bytes))
            return mdl__error(err, MDL_SHAPE, "%s '%s': output %d is too large", op, nm, (int)k);
    }
    return MDL_OK;
}

mdl_status mdl__graph_check(mdl__graph *g, bool infer, const mdl_allocator *alloc, mdl_error *err) {
    if (g->ninputs < 1 || g->noutputs < 1)
        return mdl__error(err, MDL_CORRUPT_MODEL, "model has %d inputs and %d outputs (need >= 1 each)",
                          (int)g->ninputs, (int)g->noutputs);
    if (g->ntensors <= 0) return mdl__error(err, MDL_CORRUPT_MODEL, "model has no tensors");
    /* one byte per tensor: defined yet?  Small graphs need no allocation. */
    uint8_t stack_defined[1024];
    uint8_t *defined = stack_defined;
    const mdl_allocator *a = mdl__allocator_or_default(alloc);
    if ((size_t)g->ntensors > sizeof stack_defined) {
        defined = mdl__alloc(a, (size_t)g->ntensors);
        if (!defined) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory checking the graph");
    }
    memset(defined, 0, (size_t)g->ntensors);
    mdl_status st = mdl__graph_check_syms(g, err);
    if (st) goto done;
    if (MDL__DYNAMIC && g->symval) /* graph inputs take the symbols' values; outputs follow in check_node */
        for (int32_t k = 0; k < g->ninputs; k++) {
            int32_t t = g->inputs[k];
            if (t < 0 || t >= g->ntensors || !g->tensors[t].sym) continue;
            mdl__tensor *x = &g->tensors[t];
            for (int32_t d = 0; d < x->rank; d++)
                if (x->sym[d] >= 0) x->dims[d] = g->symval[x->sym[d]];
        }
    for (int32_t t = 0; t < g->ntensors; t++) {
        mdl__tensor *x = &g->tensors[t];
        if ((st = mdl__quant_check(x, err))) goto done;
        if (x->data) {
            defined[t] = 1;
            if (!mdl__shape_size(x->rank, x->dims, mdl_dtype_size(x->dtype), &x->count, &x->bytes)) {
                st = mdl__error(err, MDL_SHAPE, "tensor %d '%s' is too large", (int)t, tname(g, t));
                goto done;
            }
        }
    }
    for (int32_t k = 0; k < g->ninputs; k++) {
        int32_t t = g->inputs[k];
        if (t < 0 || t >= g->ntensors || is_const(g, t) || defined[t]) {
            st = mdl__error(err, MDL_CORRUPT_MODEL,
                            "graph input %d refers to tensor %d, which is out of range, a weight or "
                            "listed twice", (int)k, (int)t);
            goto done;
        }
        mdl__tensor *x = &g->tensors[t];
        if (x->rank < 0 || !mdl__shape_size(x->rank, x->dims, mdl_dtype_size(x->dtype), &x->count, &x->bytes)) {
            st = mdl__error(err, MDL_SHAPE, "graph input %d '%s' has no valid shape", (int)k, tname(g, t));
            goto done;
        }
        defined[t] = 1;
    }
    for (int32_t i = 0; i < g->nnodes; i++)
        if ((st = check_node(g, i, infer, defined, err))) goto done;
    for (int32_t k = 0; k < g->noutputs; k++) {
        int32_t t = g->outputs[k];
        if (t < 0 || t >= g->ntensors || !defined[t]) {
            st = mdl__error(err, MDL_CORRUPT_MODEL, "graph output %d refers to tensor %d, which is out "
                            "of range or never computed", (int)k, (int)t);
            goto done;
        }
    }
    for (int32_t k = 0; MDL__SPARSE && !st && k < g->noutputs; k++)
        if (g->tensors[g->outputs[k]].sparse)
            st = mdl__error(err, MDL_CORRUPT_MODEL, "graph output %d '%s' is a block-sparse weight",
                            (int)k, tname(g, g->outputs[k]));
done:
    if (defined != stack_defined) mdl__free(a, defined);
    return st;
}

/* ---- memory planner -------------------------------------------------------------------- */

typedef struct buf_info {
    size_t size;
    int32_t first, last; /* node indices; inputs start at -1 */
    int32_t id;          /* tensor index, or ntensors + node index for scratch */
} buf_info;

/* A use of tensor t at node `when` (-1: graph input, nnodes: graph output): widens the lifetime
   and size of the buffer it lives in (its alias root's). */
static void touch(const mdl__graph *g, const int32_t *root, buf_info *bufs, int32_t t, int32_t when) {
    int32_t r = root[t];
    if (r < 0) return;
    if (when < bufs[r].first) bufs[r].first = when;
    if (when > bufs[r].last) bufs[r].last = when;
    if (g->tensors[t].bytes > bufs[r].size) bufs[r].size = g->tensors[t].bytes;
}

/* Lifetimes of every buffer (tensor roots and node scratch).  bufs has ntensors + nnodes slots;
   root[] receives each tensor's alias root (or -1 for no memory). */
static void lifetimes(const mdl__graph *g, int32_t *root, buf_info *bufs) {
    int32_t nt = g->ntensors;
    for (int32_t t = 0; t < nt; t++) {
        bufs[t].size = 0;
        bufs[t].first = INT32_MAX;
        bufs[t].last = -2;
        bufs[t].id = t;
    }
    /* a reshape's output shares its data input's memory: in node order (checked topological) the
       input's root is final when its consumer is reached */
    for (int32_t t = 0; t < nt; t++) root[t] = is_const(g, t) ? -1 : t;
    for (int32_t i = 0; i < g->nnodes; i++) {
        const mdl__node *n = &g->nodes[i];
        int32_t src = n->in[0];
        if (n->op != MDL_OP_RESHAPE || src < 0 || is_const(g, src)) continue;
        for (int32_t k = 0; k < n->nout; k++)
            if (n->out[k] >= 0 && !is_const(g, n->out[k])) root[n->out[k]] = root[src];
    }
    /* a tensor is live from its definition to its last use; aliases extend their root */
    for (int32_t k = 0; k < g->ninputs; k++) touch(g, root, bufs, g->inputs[k], -1);
    for (int32_t i = 0; i < g->nnodes; i++) {
        const mdl__node *n = &g->nodes[i];
        for (int32_t k = 0; k < n->nin; k++)
            if (n->in[k] >= 0) touch(g, root, bufs, n->in[k], i);
        for (int32_t k = 0; k < n->nout; k++)
            if (n->out[k] >= 0) touch(g, root, bufs, n->out[k], i);
        buf_info *s = &bufs[nt + i];
        s->size = n->scratch_bytes;
        s->first = s->last = i;
        s->id = nt + i;
    }
    for (int32_t k = 0; k < g->noutputs; k++) touch(g, root, bufs, g->outputs[k], g->nnodes);
    for (int32_t t = 0; t < nt; t++) {
        if (root[t] == t && bufs[t].last < -1) root[t] = -1; /* never used */
        bufs[t].size = mdl__align_up(bufs[t].size, MDL__LINE_ALIGN);
    }
    for (int32_t t = 0; t < nt; t++)
        if (root[t] >= 0 && root[root[t]] < 0) root[t] = -1;
}

static int by_size_desc(const void *pa, const void *pb) {
    const buf_info *a = pa, *b = pb;
    if (a->size != b->size) return a->size < b->size ? 1 : -1;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    return a->id < b->id ? -1 : (a->id > b->id);
}

static int by_offset(const void *pa, const void *pb) {
    const size_t *a = pa, *b = pb;
    return *a < *b ? -1 : (*a > *b);
}

void mdl__plan_free(mdl__plan *plan, const mdl_allocator *alloc) {
    alloc = mdl__allocator_or_default(alloc);
    mdl__free(alloc, plan->tensor_offsets);
    plan->tensor_offsets = plan->scratch_offsets = NULL;
}

/* Buffer lifetimes for the planner and the plan check, in one allocation: root (ntensors), bufs
   (every buffer) and live (the n buffers that take arena memory). */
typedef struct plan_work {
    int32_t *root;
    buf_info *bufs, *live;
    size_t n;
    void *block;
} plan_work;

static bool work_alloc(const mdl__graph *g, const mdl_allocator *a, plan_work *w) {
    size_t nt = (size_t)g->ntensors, nb = nt + (size_t)g->nnodes;
    uint8_t *p = mdl__alloc(a, 2 * nb * sizeof(buf_info) + nt * sizeof(int32_t) + 16);
    if (!p) return false;
    w->block = p;
    w->bufs = (buf_info *)p;
    w->live = w->bufs + nb;
    w->root = (int32_t *)(w->live + nb);
    lifetimes(g, w->root, w->bufs);
    w->n = 0;
    for (size_t b = 0; b < nb; b++)
        if (b < nt ? w->root[b] == (int32_t)b : w->bufs[b].size > 0) w->live[w->n++] = w->bufs[b];
    return true;
}

/* The placed buffers indexed by lifetime, for the greedy planner's query "which placed buffers
   are alive at some step of [f, l]" (step = node index + 1: graph inputs at 0, outputs at
   nnodes + 1).  Those alive at step f: a segment tree over the steps keeps each buffer in the
   O(log T) nodes that exactly cover its lifetime, so the path from leaf f to the root meets each
   buffer alive at f once.  Those starting in (f, l]: one list per step, and a count of the
   buffers starting under each tree node so that the walk skips empty subtrees.  A query costs
   O(log T) plus O(log T) per buffer found; the two sets are disjoint. */
typedef struct time_index {
    uint32_t P;            /* leaves (a power of two >= steps) */
    int32_t *cover, *head; /* list heads, -1 = empty: per tree node (2P), per step (P) */
    int32_t *count;        /* per tree node: placed buffers starting under it */
    int32_t *link, *item;  /* list entries: next entry, placed buffer (its index in live[]) */
    int32_t used;
    /* the query: steps [a, b] of the starts; results (offset, end) pairs into busy */
    uint32_t a, b;
    const size_t *pos;
    const buf_info *live;
    size_t *busy, k;
} time_index;

static void tix_push(time_index *x, int32_t *list, int32_t j) {
    x->item[x->used] = j;
    x->link[x->used] = *list;
    *list = x->used++;
}

static void tix_report(time_index *x, int32_t list) {
    for (int32_t e = list; e >= 0; e = x->link[e]) {
        int32_t j = x->item[e];
        x->busy[2 * x->k] = x->pos[j];
        x->busy[2 * x->k + 1] = x->pos[j] + x->live[j].size;
        x->k++;
    }
}

/* Reports the placed buffers starting in steps [x->a, x->b] under node v (steps [lo, hi)). */
static void tix_starts(time_index *x, uint32_t v, uint32_t lo, uint32_t hi) {
    if (!x->count[v] || hi <= x->a || lo > x->b) return;
    if (v >= x->P) {
        tix_report(x, x->head[v - x->P]);
        return;
    }
    uint32_t mid = lo + (hi - lo) / 2;
    tix_starts(x, 2 * v, lo, mid);
    tix_starts(x, 2 * v + 1, mid, hi);
}

/* Calls f for each tree node covering steps [lo, hi] exactly (at most 2 log2 P of them). */
#define TIX_COVER(x, lo, hi, NODE)                                                                 \
    for (uint32_t l_ = (lo) + (x)->P, r_ = (hi) + (x)->P + 1; l_ < r_; l_ >>= 1, r_ >>= 1) {        \
        if (l_ & 1) { uint32_t v_ = l_++; NODE; }                                                   \
        if (r_ & 1) { uint32_t v_ = --r_; NODE; }                                                   \
    }

mdl_status mdl__plan_compute(const mdl__graph *g, const mdl_allocator *alloc, mdl__plan *plan,
                             mdl_error *err) {
    alloc = mdl__allocator_or_default(alloc);
    size_t nt = (size_t)g->ntensors, nn = (size_t)g->nnodes, nb = nt + nn;
    time_index x;
    memset(&x, 0, sizeof x);
    x.P = 1;
    while (x.P < (uint32_t)nn + 2) x.P *= 2;
    plan_work w = {0};
    void *index = NULL;
    memset(plan, 0, sizeof *plan);
    plan->tensor_offsets = mdl__alloc(alloc, (nb ? nb : 1) * sizeof(size_t));
    bool ok = plan->tensor_offsets && work_alloc(g, alloc, &w);
    /* the index block: pos and busy pairs (3 size_t per buffer), the tree (5P ints) and the
       list entries (one start and the cover entries per live buffer) */
    size_t entries = w.n;
    for (size_t i = 0; ok && i < w.n; i++)
        TIX_COVER(&x, (uint32_t)(w.live[i].first + 1), (uint32_t)(w.live[i].last + 1), (void)v_; entries++)
    if (ok)
        ok = (index = mdl__alloc(alloc, 3 * nb * sizeof(size_t) + 5 * (size_t)x.P * sizeof(int32_t) +
                                        2 * entries * sizeof(int32_t))) != NULL;
    if (!ok) {
        mdl__free(alloc, w.block);
        mdl__plan_free(plan, alloc);
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory planning %zu buffers", nb);
    }
    plan->scratch_offsets = plan->tensor_offsets + nt;
    for (size_t t = 0; t < nt; t++) plan->tensor_offsets[t] = MDL_NO_OFFSET;
    for (size_t i = 0; i < nn; i++) plan->scratch_offsets[i] = 0;
    size_t *pos = index, *busy = pos + nb;
    x.cover = (int32_t *)(busy + 2 * nb);
    x.count = x.cover + 2 * x.P;
    x.head = x.count + 2 * x.P;
    x.link = x.head + x.P;
    x.item = x.link + entries;
    memset(x.cover, 0xff, 2 * x.P * sizeof(int32_t));
    memset(x.count, 0, 2 * x.P * sizeof(int32_t));
    memset(x.head, 0xff, x.P * sizeof(int32_t));
    x.pos = pos;
    x.live = w.live;
    x.busy = busy;
    size_t n = w.n;
    qsort(w.live, n, sizeof *w.live, by_size_desc);
    /* Greedy: each buffer, largest first, goes to the lowest offset that does not collide with an
       already placed buffer alive at the same time (the TFLM "greedy by size" planner).  The
       buffers met by the queries are bounded: past the budget (a graph where thousands of
       buffers live at once, e.g. a hostile file) the rest are placed side by side above. */
    size_t arena = 0, met = 0, budget = 32 * nb + ((size_t)1 << 16);
    for (size_t i = 0; i < n; i++) {
        const buf_info *bi = &w.live[i];
        uint32_t f = (uint32_t)(bi->first + 1), l = (uint32_t)(bi->last + 1);
        size_t off = arena;
        if (met <= budget) {
            x.k = 0;
            for (uint32_t v = f + x.P; v; v >>= 1) tix_report(&x, x.cover[v]);
            x.a = f + 1;
            x.b = l;
            if (l > f) tix_starts(&x, 1, 0, x.P);
            met += x.k;
            qsort(busy, x.k, 2 * sizeof(size_t), by_offset);
            off = 0;
            for (size_t j = 0; j < x.k; j++) {
                if (busy[2 * j] >= off + bi->size) break;
                if (busy[2 * j + 1] > off) off = busy[2 * j + 1];
            }
            TIX_COVER(&x, f, l, tix_push(&x, &x.cover[v_], (int32_t)i))
            tix_push(&x, &x.head[f], (int32_t)i);
            for (uint32_t v = f + x.P; v; v >>= 1) x.count[v]++;
        }
        pos[i] = off;
        if (bi->id < (int32_t)nt) plan->tensor_offsets[bi->id] = off;
        else plan->scratch_offsets[bi->id - nt] = off;
        if (off + bi->size > arena) arena = off + bi->size;
    }
    for (size_t t = 0; t < nt; t++)
        if (w.root[t] >= 0 && w.root[t] != (int32_t)t) plan->tensor_offsets[t] = plan->tensor_offsets[w.root[t]];
    plan->arena_bytes = arena;
    mdl__free(alloc, index);
    mdl__free(alloc, w.block);
    return MDL_OK;
}

#ifndef MDL_SMALL_CODE
/* A live buffer placed by a stored plan, for the overlap check. */
typedef struct span {
    size_t off, end;
    int32_t first, last, id, rank; /* rank: position in offset order */
} span;

static int span_by_offset(const void *pa, const void *pb) {
    const span *a = pa, *b = pb;
    if (a->off != b->off) return a->off < b->off ? -1 : 1;
    return a->id < b->id ? -1 : (a->id > b->id);
}

static int span_by_first(const void *pa, const void *pb) {
    const span *a = pa, *b = pb;
    return a->first < b->first ? -1 : (a->first > b->first);
}

/* (last, rank) of a span, sorted by last: the order in which the sweep retires them. */
typedef struct retire {
    int32_t last, rank;
} retire;

static int retire_by_last(const void *pa, const void *pb) {
    const retire *a = pa, *b = pb;
    return a->last < b->last ? -1 : (a->last > b->last);
}

/* Fenwick tree over ranks 0..n-1 (stored 1-based): the live spans of the sweep. */
static void fw_add(int32_t *fw, size_t n, size_t r, int32_t d) {
    for (size_t i = r + 1; i <= n; i += i & (0 - i)) fw[i] += d;
}
static int32_t fw_prefix(const int32_t *fw, size_t r) { /* live ranks < r */
    int32_t s = 0;
    for (size_t i = r; i; i -= i & (0 - i)) s += fw[i];
    return s;
}
static size_t fw_select(const int32_t *fw, size_t n, int32_t k) { /* rank of the k-th live (k >= 1) */
    size_t p = 0, step = 1;
    while (step * 2 <= n) step *= 2;
    for (; step; step /= 2)
        if (p + step <= n && fw[p + step] < k) {
            p += step;
            k -= fw[p];
        }
    return p;
}

/* No two buffers alive at the same step share bytes: a sweep over the steps keeps the live
   buffers (pairwise disjoint so far) in offset order; a new one overlaps one of them exactly when
   a live buffer starts inside it or the live buffer starting last before it reaches into it.
   O(n log n).  Sorts sp. */
static mdl_status check_overlaps(span *sp, size_t n, const mdl_allocator *a, mdl_error *err) {
    mdl_status st = MDL_OK;
    size_t bytes = n * (sizeof(retire) + 2 * sizeof(size_t) + sizeof(int32_t)) + (n + 1) * sizeof(int32_t);
    uint8_t *p = mdl__alloc(a, bytes ? bytes : 1);
    if (!p) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory verifying the memory plan");
    size_t *offs = (size_t *)p, *ends = offs + n; /* by rank */
    retire *ret = (retire *)(ends + n);
    int32_t *ids = (int32_t *)(ret + n), *fw = ids + n;
    memset(fw, 0, (n + 1) * sizeof(int32_t));
    qsort(sp, n, sizeof *sp, span_by_offset);
    for (size_t r = 0; r < n; r++) {
        sp[r].rank = (int32_t)r;
        offs[r] = sp[r].off;
        ends[r] = sp[r].end;
        ids[r] = sp[r].id;
    }
    qsort(sp, n, sizeof *sp, span_by_first);
    for (size_t i = 0; i < n; i++) ret[i] = (retire){sp[i].last, sp[i].rank};
    qsort(ret, n, sizeof *ret, retire_by_last);
    size_t gone = 0;
    for (size_t i = 0; i < n && !st; i++) {
        const span *s = &sp[i];
        while (gone < n && ret[gone].last < s->first) fw_add(fw, n, (size_t)ret[gone++].rank, -1);
        /* lo: first rank at offset >= s->off; hi: first rank at offset >= s->end */
        size_t lo = 0, hi = n;
        for (size_t l = 0, h = n; l < h;) {
            size_t m = l + (h - l) / 2;
            if (offs[m] < s->off) l = m + 1;
            else h = m;
            lo = l;
        }
        for (size_t l = lo, h = n; l < h;) {
            size_t m = l + (h - l) / 2;
            if (offs[m] < s->end) l = m + 1;
            else h = m;
            hi = l;
        }
        int32_t before = fw_prefix(fw, lo), inside = fw_prefix(fw, hi) - before;
        int32_t other = -1;
        if (inside) other = ids[fw_select(fw, n, before + 1)];
        else if (before && ends[fw_select(fw, n, before)] > s->off) other = ids[fw_select(fw, n, before)];
        if (other >= 0)
            st = mdl__error(err, MDL_CORRUPT_MODEL, "memory plan: buffers %d and %d overlap while both "
                            "are alive", (int)other, (int)s->id);
        fw_add(fw, n, (size_t)s->rank, 1);
    }
    mdl__free(a, p);
    return st;
}
#endif

mdl_status mdl__plan_verify(const mdl__graph *g, const mdl__plan *plan, const mdl_allocator *alloc,
                            mdl_error *err) {
    const mdl_allocator *a = mdl__allocator_or_default(alloc);
    size_t nt = (size_t)g->ntensors, nb = nt + (size_t)g->nnodes;
    plan_work w;
    if (!work_alloc(g, a, &w)) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory verifying the memory plan");
    mdl_status st = MDL_OK;
    size_t total = 0;
    for (size_t i = 0; i < w.n; i++) total += w.live[i].size;
    /* no plan needs more than all buffers side by side: a larger arena is corrupt (and would make
       every session allocate it) */
    if (plan->arena_bytes > total)
        st = mdl__error(err, MDL_CORRUPT_MODEL, "memory plan: arena of %zu bytes exceeds the %zu bytes "
                        "of all buffers together", plan->arena_bytes, total);
    /* every offset the session turns into a pointer is checked, also those of buffers that take
       no memory (unused tensors, nodes without scratch): at most the arena's end */
#define OFF(b) ((size_t)(b) < nt ? plan->tensor_offsets[b] : plan->scratch_offsets[(size_t)(b) - nt])
    for (size_t b = 0; b < nb && !st; b++) {
        /* constants point at their weights; MDL_NO_OFFSET (a computed plan's unused tensor) at
           nothing */
        if (b < nt && (g->tensors[b].data || (w.root[b] < 0 && OFF(b) == MDL_NO_OFFSET))) continue;
        size_t size = b < nt ? (w.root[b] == (int32_t)b ? w.bufs[b].size : 0) : w.bufs[b].size, end;
        if (b < nt && w.root[b] >= 0 && w.root[b] != (int32_t)b && OFF(b) != plan->tensor_offsets[w.root[b]])
            st = mdl__error(err, MDL_CORRUPT_MODEL, "memory plan: tensor %zu '%s' must share "
                            "the memory of tensor %d", b, tname(g, (int32_t)b), (int)w.root[b]);
        else if ((size && OFF(b) % MDL_ALIGN) || !mdl__add_size(OFF(b), size, &end) || end > plan->arena_bytes)
            st = mdl__error(err, MDL_CORRUPT_MODEL, "memory plan: buffer %zu at offset %zu (+%zu bytes) is "
                            "misaligned or outside the %zu-byte arena", b, OFF(b), size, plan->arena_bytes);
    }
    if (!st) {
#ifdef MDL_SMALL_CODE
        /* firmware-sized graphs: every pair, O(n^2) */
        for (size_t i = 0; i < w.n && !st; i++)
            for (size_t j = i + 1; j < w.n && !st; j++) {
                const buf_info *p = &w.live[i], *q = &w.live[j];
                size_t op = OFF(p->id), oq = OFF(q->id);
                if (p->first <= q->last && q->first <= p->last && op < oq + q->size && oq < op + p->size)
                    st = mdl__error(err, MDL_CORRUPT_MODEL, "memory plan: buffers %d and %d overlap "
                                    "while both are alive", (int)p->id, (int)q->id);
            }
#else
        span *sp = mdl__alloc(a, (w.n ? w.n : 1) * sizeof(span));
        if (!sp) st = mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory verifying the memory plan");
        for (size_t i = 0; sp && i < w.n; i++) {
            const buf_info *p = &w.live[i];
            sp[i] = (span){OFF(p->id), OFF(p->id) + p->size, p->first, p->last, p->id, 0};
        }
        if (sp) st = check_overlaps(sp, w.n, a, err);
        mdl__free(a, sp);
#endif
    }
#undef OFF
    mdl__free(a, w.block);
    return st;
}
