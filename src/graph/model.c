/* Model loading (verify, read, check every node, verify or compute the plan) and introspection. */
#include "model.h"

#include "mdeploy/resolver.h"
#include "mdeploy/security.h"

#include "quant/quant.h"
#include "resize.h"
#include "selftest.h"
#include "util.h"

#include <string.h>
#ifdef MDL__LOAD_NOTE
#include <stdio.h>
#endif

mdl_load_options mdl_load_options_default(void) {
    mdl_load_options o = {NULL, 0, NULL, MDL_DEFAULT_MAX_ARENA_BYTES, MDL_DEFAULT_MAX_NODES,
                          MDL_DEFAULT_MAX_TENSORS, NULL, 0};
    return o;
}

/* Runs every kernel's pack step once, into one model-owned block shared by all sessions. */
static mdl_status pack_nodes(mdl_model *m, mdl_error *err) {
    size_t total = 0;
    for (int32_t i = 0; i < m->g.nnodes; i++) {
        size_t b = m->g.nodes[i].packed_bytes;
        if (b && (!mdl__add_size(total, mdl__align_up(b, 64), &total)))
            return mdl__error(err, MDL_OUT_OF_MEMORY, "packed weights overflow");
    }
    if (!total) return MDL_OK;
    m->packed_raw = mdl__alloc(m->alloc, total + 63);
    if (!m->packed_raw)
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory for %zu bytes of packed weights", total);
    m->packed_bytes = total;
    uint8_t *p = (uint8_t *)mdl__align_up((size_t)m->packed_raw, 64);
    for (int32_t i = 0; i < m->g.nnodes; i++) {
        mdl__node *n = &m->g.nodes[i];
        if (!n->packed_bytes) continue;
        n->packed = p;
        p += mdl__align_up(n->packed_bytes, 64);
        mdl__kctx ctx;
        memset(&ctx, 0, sizeof ctx);
        ctx.err = err;
        mdl__graph_kctx(&m->g, i, NULL, &ctx);
        mdl_status st = n->kernel->pack(&ctx);
        if (st) return st;
    }
    return MDL_OK;
}

/* A DEQUANTIZE node on a constant (weight-only quantized models: int8 weights in the file, float
   compute) is run once here and its output becomes a float constant that the consumers pack and
   read like any float weight; the node is dropped from the executed graph.  The file stays small;
   the widened weights cost 4 bytes per element of model-owned memory.  Indices are checked here
   because this runs before the graph check. */
static bool dequant_foldable(const mdl__graph *g, const mdl__node *n) {
    /* exactly one input and one output, both checked below: this runs before the graph check */
    if (n->op != MDL_OP_DEQUANTIZE || n->nin != 1 || n->nout != 1) return false;
    int32_t x = n->in[0], y = n->out[0];
    if (x < 0 || x >= g->ntensors || y < 0 || y >= g->ntensors || x == y) return false;
    const mdl__tensor *tx = &g->tensors[x], *ty = &g->tensors[y];
    if (!tx->data || ty->data || (MDL__DYNAMIC && ty->sym)) return false;
    /* the output must have the constant's shape: its size is then bounded by the file's (a
       hostile file cannot make the loader allocate more than 4 bytes per stored byte); anything
       else is left to the Dequantize kernel's prepare to refuse */
    if (tx->rank != ty->rank || tx->rank < 0 || tx->rank > MDL_MAX_RANK ||
        memcmp(tx->dims, ty->dims, sizeof(int64_t) * (size_t)tx->rank))
        return false;
    for (int32_t k = 0; k < g->ninputs; k++)
        if (g->inputs[k] == y) return false;
    for (int32_t k = 0; k < g->noutputs; k++) /* graph outputs live in the session's arena */
        if (g->outputs[k] == y) return false;
    return true;
}

static mdl_status fold_dequantize(mdl_model *m, mdl_error *err) {
    mdl__graph *g = &m->g;
    size_t total = 0;
    int32_t nfold = 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        const mdl__node *n = &g->nodes[i];
        if (!dequant_foldable(g, n)) continue;
        mdl__tensor *y = &g->tensors[n->out[0]];
        if (y->rank < 0 ||
            !mdl__shape_size(y->rank, y->dims, mdl_dtype_size(y->dtype), &y->count, &y->bytes) ||
            !mdl__add_size(total, mdl__align_up(y->bytes, MDL__LINE_ALIGN), &total))
            return mdl__error(err, MDL_SHAPE, "Dequantize '%s': output '%s' has no valid shape",
                              n->name ? n->name : "", y->name ? y->name : "");
        nfold++;
    }
    if (!nfold) return MDL_OK;
    if (!mdl__add_size(total, MDL__LINE_ALIGN, &total) || !(m->folded_raw = mdl__alloc(m->alloc, total)))
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory for %zu bytes of dequantized weights",
                          total);
    uint8_t *p = (uint8_t *)mdl__align_up((size_t)m->folded_raw, MDL__LINE_ALIGN);
    int32_t kept = 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        mdl__node *n = &g->nodes[i];
        if (!dequant_foldable(g, n)) {
            g->nodes[kept++] = *n;
            continue;
        }
        mdl__tensor *y = &g->tensors[n->out[0]];
        mdl_status st = mdl__quant_check(&g->tensors[n->in[0]], err);
        if (st) return st;
        n->kernel = mdl__kernel_resolve(g->resolver, n->op, g->tensors[n->in[0]].dtype);
        if (!n->kernel)
            return mdl__kernel_missing(g->resolver, n->op, g->tensors[n->in[0]].dtype,
                                       n->name ? n->name : "", err);
        mdl__kctx ctx;
        memset(&ctx, 0, sizeof ctx);
        ctx.err = err;
        mdl__graph_kctx(g, i, NULL, &ctx);
        if ((st = n->kernel->prepare(&ctx))) return st;
        if (ctx.scratch_bytes || ctx.packed_bytes)
            return mdl__error(err, MDL_INTERNAL, "Dequantize '%s': folding needs no scratch",
                              n->name ? n->name : "");
        ctx.out_data[0] = p;
        if ((st = n->kernel->run(&ctx))) return st;
        y->data = p;
        p += mdl__align_up(y->bytes, MDL__LINE_ALIGN);
    }
    g->nnodes = kept;
    /* a stored plan numbers scratch by node and gave the folded outputs arena space: plan anew */
    m->plan.tensor_offsets = NULL;
    m->plan.scratch_offsets = NULL;
    m->plan.arena_bytes = 0;
    return MDL_OK;
}

const mdl__load_planner_ops mdl__load_planner = {fold_dequantize, mdl__plan_compute};

/* The load planner this load may use: firmware (MDL_NO_DEFAULT_KERNELS) links it only when the
   application registers it (mdl_op_resolver_add_load_planner), other builds always have it. */
static const mdl__load_planner_ops *load_planner(const mdl_op_resolver *r) {
#ifdef MDL_NO_DEFAULT_KERNELS
    return r ? (const mdl__load_planner_ops *)r->load_planner : NULL;
#else
    (void)r;
    return &mdl__load_planner;
#endif
}

#define NEEDS_PLANNER                                                                              \
    " at load needs the load planner: register it with mdl_op_resolver_add_load_planner(r) "      \
    "(mdeploy-embed's NAME_register does)"

/* The getters' view of dynamic dims (see mdl_tensor_info). */
static mdl_status dyn_info(mdl_model *m, mdl_error *err) {
    const mdl__graph *g = &m->g;
    if (!MDL__DYNAMIC || !g->nsyms) return MDL_OK;
    size_t per = (size_t)MDL_MAX_RANK * (2 * sizeof(int64_t) + sizeof(char *));
    m->dyn_raw = mdl__alloc(m->alloc, (size_t)g->ntensors * per);
    if (!m->dyn_raw) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory loading the model");
    m->info_dims = m->dyn_raw;
    m->info_max = m->info_dims + (size_t)g->ntensors * MDL_MAX_RANK;
    m->info_names = (const char **)(m->info_max + (size_t)g->ntensors * MDL_MAX_RANK);
    for (int32_t t = 0; t < g->ntensors; t++) {
        const mdl__tensor *x = &g->tensors[t];
        for (int32_t d = 0; d < MDL_MAX_RANK; d++) {
            size_t at = (size_t)t * MDL_MAX_RANK + (size_t)d;
            int32_t code = x->sym && d < x->rank ? x->sym[d] : MDL__DIM_FIXED;
            m->info_dims[at] = code == MDL__DIM_FIXED ? (d < x->rank ? x->dims[d] : 0) : -1;
            m->info_max[at] = code >= 0 ? g->syms[code].max : 0;
            m->info_names[at] = code >= 0 ? g->syms[code].name : code == MDL__DIM_COMPUTED ? "" : NULL;
        }
    }
    return MDL_OK;
}

/* A stored plan is used when it passes the check.  One that fails (an older writer, damage) is
   dropped, to be computed again, with a note, when `replan` (a load planner, and the caller did
   not require the stored plan); MDL_SMALL_CODE builds always require it. */
static mdl_status check_stored_plan(mdl_model *m, bool replan, mdl_error *err) {
#ifdef MDL_SMALL_CODE
    (void)replan;
    return mdl__plan_verify(&m->g, &m->plan, m->alloc, err);
#else
    mdl_error perr;
    mdl_status st = mdl__plan_verify(&m->g, &m->plan, m->alloc, &perr);
    if (st && (st != MDL_CORRUPT_MODEL || !replan)) {
        if (err) *err = perr;
        return st;
    }
#ifdef MDL__LOAD_NOTE
    if (st) snprintf(m->note, sizeof m->note, "the stored memory plan was rejected (%.190s) and computed again", perr.msg);
#endif
    if (st) m->plan.tensor_offsets = m->plan.scratch_offsets = NULL;
    return MDL_OK;
#endif
}

mdl_status mdl_model_load_buffer(const void *data, size_t size, const mdl_load_options *options,
                                 mdl_model **out, mdl_error *err) {
    if (!out) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_model_load_buffer: out is NULL");
    *out = NULL;
    if (!data) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_model_load_buffer: data is NULL");
    mdl_load_options o = options ? *options : mdl_load_options_default();
    const mdl_allocator *a = mdl__allocator_or_default(o.allocator);
    bool copy = (o.flags & MDL_LOAD_COPY) != 0;
    if (!copy && (uintptr_t)data % MDL_ALIGN)
        return mdl__error(err, MDL_INVALID_ARGUMENT,
                          "model buffer at %p is not %d-byte aligned; align it or pass MDL_LOAD_COPY",
                          data, MDL_ALIGN);
    mdl_model *m = mdl__alloc(a, sizeof *m);
    if (!m) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory allocating the model");
    memset(m, 0, sizeof *m);
    m->alloc = a;
    mdl_status st;
    if (copy) {
        /* on a cache line, like a mapped file, so weights read in place keep their alignment */
        size_t bytes;
        m->owned = mdl__add_size(size, MDL__LINE_ALIGN, &bytes) ? mdl__alloc(a, bytes) : NULL;
        if (!m->owned) {
            st = mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory copying the %zu-byte model", size);
            goto fail;
        }
        void *copy_at = (void *)mdl__align_up((size_t)m->owned, MDL__LINE_ALIGN);
        memcpy(copy_at, data, size);
        data = copy_at;
    }
    m->buf = data;
    m->size = size;
    /* the seal first: digest, signature, counter, decryption (include/mdeploy/security.h);
       firmware (MDL_SMALL_CODE) calls mdl_seal_check itself when it wants it */
#ifndef MDL_SMALL_CODE
    if ((st = mdl__seal_load(m, &o, err))) goto fail;
#endif
    if ((st = mdl__format_read(m, err))) goto fail;
#ifndef MDL_SMALL_CODE /* firmware: the caller's arena is the limit (mdl_session_create_in) */
    if ((o.max_nodes && m->g.nnodes > o.max_nodes) || (o.max_tensors && m->g.ntensors > o.max_tensors)) {
        st = mdl__error(err, MDL_LIMIT, "the model has %d operators and %d tensors: above the limit "
                        "max_nodes = %d or max_tensors = %d (mdl_load_options)", (int)m->g.nnodes,
                        (int)m->g.ntensors, (int)o.max_nodes, (int)o.max_tensors);
        goto fail;
    }
#endif
    m->g.resolver = o.resolver;
    const mdl__load_planner_ops *lp = load_planner(o.resolver);
    if (lp) {
        if ((st = lp->fold(m, err))) goto fail;
    } else {
        for (int32_t i = 0; i < m->g.nnodes; i++)
            if (dequant_foldable(&m->g, &m->g.nodes[i])) {
                st = mdl__error(err, MDL_UNSUPPORTED, "Dequantize '%s': widening its int8 weights" NEEDS_PLANNER,
                                m->g.nodes[i].name ? m->g.nodes[i].name : "");
                goto fail;
            }
    }
    if ((st = mdl__graph_check(&m->g, false, a, err))) goto fail;
    if (m->plan.tensor_offsets && (st = check_stored_plan(m, lp && !(o.flags & MDL_LOAD_STRICT_PLAN), err)))
        goto fail;
    if (!m->plan.tensor_offsets) {
        if (!lp) {
            st = mdl__error(err, MDL_UNSUPPORTED, "the model has no memory plan: computing one" NEEDS_PLANNER);
            goto fail;
        }
        if ((st = lp->plan(&m->g, a, &m->plan, err))) goto fail;
        m->plan_computed = true;
    }
    m->session_bytes = mdl__session_bytes(m);
#ifndef MDL_SMALL_CODE
    if (o.max_arena_bytes && m->session_bytes > o.max_arena_bytes) {
        st = mdl__error(err, MDL_LIMIT, "the model needs a session arena of %zu bytes: above the "
                        "limit max_arena_bytes = %zu (mdl_load_options)", m->session_bytes,
                        o.max_arena_bytes);
        goto fail;
    }
#endif
    if ((st = pack_nodes(m, err))) goto fail;
    if ((st = dyn_info(m, err))) goto fail;
#ifdef MDL_WITH_SELFTEST
    if ((st = mdl__selftest_load(m, err))) goto fail;
#endif
    if (MDL__DYNAMIC) mdl__model_pack_instance(m);
#ifdef MDL_WITH_METRICS
    if ((st = mdl__metrics_create(m, o.flags, err))) goto fail;
#endif
    *out = m;
    return MDL_OK;
fail:
    mdl_model_free(m);
    return st;
}

void mdl_model_free(mdl_model *m) {
    if (!m) return;
    const mdl_allocator *a = m->alloc;
    if (MDL__DYNAMIC) mdl__inst_free(m->pack_inst, a);
    if (m->plan_computed) mdl__plan_free(&m->plan, a);
#ifdef MDL_WITH_METRICS
    mdl__metrics_free(m);
#endif
#ifdef MDL_WITH_SELFTEST
    mdl__selftest_free(m);
#endif
    mdl__free(a, m->packed_raw);
    mdl__free(a, m->folded_raw);
    mdl__free(a, m->dyn_raw);
    mdl__free(a, m->block);
    if (m->release) m->release(m->owned, m->owned_size);
    else mdl__free(a, m->owned);
#ifndef MDL_SMALL_CODE
    mdl__seal_release(m);
#endif
    mdl__free(a, m);
}

size_t mdl_model_arena_size(const mdl_model *m) { return m ? m->session_bytes : 0; }
const char *mdl_model_load_note(const mdl_model *m) {
#ifdef MDL__LOAD_NOTE
    return m ? m->note : "";
#else
    (void)m;
    return "";
#endif
}
bool mdl_model_needs_load_planner(const mdl_model *m) { return m && m->plan_computed; }
size_t mdl_model_activation_bytes(const mdl_model *m) { return m ? m->plan.arena_bytes : 0; }
size_t mdl_model_weight_bytes(const mdl_model *m) { return m ? m->weight_bytes : 0; }
const char *mdl_model_name(const mdl_model *m) { return m ? m->name : ""; }
const char *mdl_model_version(const mdl_model *m) { return m ? m->version : ""; }
const char *mdl_model_producer(const mdl_model *m) { return m ? m->producer : ""; }
const char *mdl_model_description(const mdl_model *m) { return m ? m->description : ""; }
int mdl_model_format_major(const mdl_model *m) { return m ? m->format_major : 0; }
int mdl_model_format_minor(const mdl_model *m) { return m ? m->format_minor : 0; }
int mdl_model_metadata_count(const mdl_model *m) { return m ? m->nmeta : 0; }

const char *mdl_model_metadata(const mdl_model *m, const char *key) {
    for (int32_t i = 0; m && key && i < m->nmeta; i++)
        if (strcmp(m->meta[2 * i], key) == 0) return m->meta[2 * i + 1];
    return NULL;
}

bool mdl_model_metadata_at(const mdl_model *m, int i, const char **key, const char **value) {
    if (!m || i < 0 || i >= m->nmeta) return false;
    if (key) *key = m->meta[2 * i];
    if (value) *value = m->meta[2 * i + 1];
    return true;
}

int mdl_model_input_count(const mdl_model *m) { return m ? m->g.ninputs : 0; }
int mdl_model_output_count(const mdl_model *m) { return m ? m->g.noutputs : 0; }
int mdl_model_node_count(const mdl_model *m) { return m ? m->g.nnodes : 0; }
int mdl_model_tensor_count(const mdl_model *m) { return m ? m->g.ntensors : 0; }

static void fill_info(const mdl__tensor *t, mdl_tensor_info *info) {
    memset(info, 0, sizeof *info);
    info->name = t->name ? t->name : "";
    info->dtype = t->dtype;
    info->rank = t->rank;
    info->dims = t->dims;
    info->bytes = t->bytes;
    info->nquant = t->nquant;
    info->quant_axis = t->quant_axis;
    info->scale = t->scale;
    info->zero_point = t->zero_point;
}

/* Tensor t as the model getters show it: dynamic dims as -1 with their names and bounds. */
static void model_info(const mdl_model *m, int32_t t, mdl_tensor_info *info) {
    const mdl__tensor *x = &m->g.tensors[t];
    fill_info(x, info);
    if (!MDL__DYNAMIC || !x->sym || !m->info_dims) return;
    size_t at = (size_t)t * MDL_MAX_RANK;
    info->dims = m->info_dims + at;
    info->dim_names = m->info_names + at;
    info->dim_max = m->info_max + at;
    info->bytes = 0;
}

void mdl__session_tensor_info(const mdl__tensor *t, mdl_tensor_info *info) { fill_info(t, info); }

mdl_status mdl_model_input_info(const mdl_model *m, int i, mdl_tensor_info *info) {
    if (!m || i < 0 || i >= m->g.ninputs || !info) return MDL_INVALID_ARGUMENT;
    model_info(m, m->g.inputs[i], info);
    return MDL_OK;
}

mdl_status mdl_model_output_info(const mdl_model *m, int i, mdl_tensor_info *info) {
    if (!m || i < 0 || i >= m->g.noutputs || !info) return MDL_INVALID_ARGUMENT;
    model_info(m, m->g.outputs[i], info);
    return MDL_OK;
}

int mdl_model_symbol_count(const mdl_model *m) { return m ? m->g.nsyms : 0; }

bool mdl_model_symbol(const mdl_model *m, int i, const char **name, int64_t *max, int64_t *initial) {
    if (!m || i < 0 || i >= m->g.nsyms) return false;
    if (name) *name = m->g.syms[i].name;
    if (max) *max = m->g.syms[i].max;
    if (initial) *initial = m->g.syms[i].initial;
    return true;
}

mdl_status mdl_model_tensor_info(const mdl_model *m, int i, mdl_tensor_info *info, bool *constant) {
    if (!m || i < 0 || i >= m->g.ntensors || !info) return MDL_INVALID_ARGUMENT;
    model_info(m, i, info);
    if (constant) *constant = m->g.tensors[i].data != NULL;
    return MDL_OK;
}

static int find_name(const mdl_model *m, const int32_t *list, int32_t n, const char *name) {
    for (int32_t i = 0; i < n; i++)
        if (name && strcmp(m->g.tensors[list[i]].name, name) == 0) return (int)i;
    return -1;
}

int mdl_model_input_index(const mdl_model *m, const char *name) {
    return m ? find_name(m, m->g.inputs, m->g.ninputs, name) : -1;
}

int mdl_model_output_index(const mdl_model *m, const char *name) {
    return m ? find_name(m, m->g.outputs, m->g.noutputs, name) : -1;
}

mdl_status mdl_model_node_info(const mdl_model *m, int i, mdl_node_info *info) {
    if (!m || i < 0 || i >= m->g.nnodes || !info) return MDL_INVALID_ARGUMENT;
    const mdl__node *n = &m->g.nodes[i];
    info->name = n->name;
    info->op = mdl_op_name(n->op);
    info->nin = n->nin;
    info->nout = n->nout;
    info->inputs = n->in;
    info->outputs = n->out;
    info->scratch_bytes = n->scratch_bytes;
    return MDL_OK;
}
