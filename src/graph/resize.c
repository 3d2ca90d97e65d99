/* Instances of a model's graph at concrete shapes: what a session of a model with dynamic dims
   runs after mdl_session_resize (the model itself holds the instance at the symbols' initial
   values).  Allocation is allowed here; mdl_session_run never comes here. */
#include "resize.h"

#include "util.h"

#include <string.h>

mdl_status mdl__symvals_from_shapes(const mdl_model *m, const int64_t *cur, int n,
                                    const mdl_shape *shapes, int64_t *out, mdl_error *err) {
    const mdl__graph *g = &m->g;
    if (n < 0 || n > g->ninputs || (n && !shapes))
        return mdl__error(err, MDL_INVALID_ARGUMENT, "%d input shapes for a model with %d inputs", n,
                          (int)g->ninputs);
    int32_t ns = g->nsyms;
    bool set[MDL__MAX_SYMBOLS] = {false};
    int32_t set_by[MDL__MAX_SYMBOLS];
    for (int32_t y = 0; y < ns; y++) out[y] = cur[y];
    for (int i = 0; i < n; i++) {
        const mdl__tensor *t = &g->tensors[g->inputs[i]];
        const mdl_shape *sh = &shapes[i];
        const char *nm = t->name ? t->name : "";
        char a[96];
        if (sh->rank != t->rank)
            return mdl__error(err, MDL_SHAPE, "input %d '%s' has rank %d, got a shape of rank %d %s", i,
                              nm, (int)t->rank, (int)sh->rank,
                              mdl__dims_str(a, sizeof a, sh->rank < 0 || sh->rank > MDL_MAX_RANK ? 0 : sh->rank, sh->dims));
        for (int32_t d = 0; d < t->rank; d++) {
            int32_t code = t->sym ? t->sym[d] : MDL__DIM_FIXED;
            int64_t v = sh->dims[d];
            if (code < 0) {
                if (v != t->dims[d])
                    return mdl__error(err, MDL_SHAPE, "input %d '%s': dim %d is fixed to %lld, got %lld "
                                      "(shape %s)", i, nm, (int)d, (long long)t->dims[d], (long long)v,
                                      mdl__dims_str(a, sizeof a, sh->rank, sh->dims));
                continue;
            }
            const mdl__symbol *y = &g->syms[code];
            if (y->max && v > y->max)
                return mdl__error(err, MDL_SHAPE, "input %d '%s': dim %d ('%s') is %lld, above its "
                                  "bound %lld", i, nm, (int)d, y->name, (long long)v, (long long)y->max);
            if (v < 0 || v > MDL_MAX_ELEMENTS)
                return mdl__error(err, MDL_SHAPE, "input %d '%s': dim %d ('%s') is %lld", i, nm,
                                  (int)d, y->name, (long long)v);
            if (set[code] && out[code] != v)
                return mdl__error(err, MDL_SHAPE, "input %d '%s': dim %d ('%s') is %lld, but input %d "
                                  "'%s' gives '%s' = %lld", i, nm, (int)d, y->name, (long long)v,
                                  (int)set_by[code], g->tensors[g->inputs[set_by[code]]].name,
                                  y->name, (long long)out[code]);
            set[code] = true;
            set_by[code] = i;
            out[code] = v;
        }
    }
    return MDL_OK;
}

void mdl__inst_free(mdl__inst *inst, const mdl_allocator *a) {
    if (!inst) return;
    mdl__plan_free(&inst->plan, a);
    mdl__free(a, inst->packed_raw);
    mdl__free(a, inst->g.tensors);
    mdl__free(a, inst);
}

/* True when node i of instance g can read the packed data of node i of model instance mg: the
   kernel wants the same bytes and every input has mg's shape except maybe its outermost dim
   (packing depends on weights and on the inner geometry, e.g. a convolution's image width, never
   on the batch: src/ops/ops.h). */
static bool same_packing(const mdl__graph *mg, const mdl__graph *g, int32_t i) {
    const mdl__node *mn = &mg->nodes[i], *n = &g->nodes[i];
    if (mn->packed_bytes != n->packed_bytes || !mn->packed) return false;
    for (int32_t k = 0; k < n->nin; k++) {
        int32_t t = n->in[k];
        if (t < 0) continue;
        const mdl__tensor *x = &g->tensors[t], *mx = &mg->tensors[t];
        if (x->rank != mx->rank) return false;
        for (int32_t d = 1; d < x->rank; d++)
            if (x->dims[d] != mx->dims[d]) return false;
    }
    return true;
}

/* Model-owned packed data node i of g can use (the model's instance at the initial sizes, or the
   one the model packed at sizes >= 2, where e.g. fully connected layers pack for GEMM), or NULL. */
static void *shared_packed(const mdl_model *m, const mdl__graph *g, int32_t i) {
    if (same_packing(&m->g, g, i)) return m->g.nodes[i].packed;
    if (m->pack_inst && same_packing(&m->pack_inst->g, g, i)) return m->pack_inst->g.nodes[i].packed;
    return NULL;
}

static mdl_status pack_own(const mdl_model *m, mdl__inst *inst, const mdl_allocator *a,
                           mdl_error *err) {
    mdl__graph *g = &inst->g;
    size_t total = 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        mdl__node *n = &g->nodes[i];
        /* no packed bytes: kernels read the weights as they are; NULL below marks "pack here" */
        n->packed = n->packed_bytes ? shared_packed(m, g, i) : NULL;
        if (!n->packed_bytes || n->packed) continue;
        if (!mdl__add_size(total, mdl__align_up(n->packed_bytes, 64), &total))
            return mdl__error(err, MDL_OUT_OF_MEMORY, "packed weights overflow");
    }
    if (!total) return MDL_OK;
    inst->packed_raw = mdl__alloc(a, total + 63);
    if (!inst->packed_raw)
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory for %zu bytes of packed weights", total);
    uint8_t *p = (uint8_t *)mdl__align_up((size_t)inst->packed_raw, 64);
    for (int32_t i = 0; i < g->nnodes; i++) {
        mdl__node *n = &g->nodes[i];
        if (!n->packed_bytes || n->packed) continue;
        n->packed = p;
        p += mdl__align_up(n->packed_bytes, 64);
        mdl__kctx ctx;
        memset(&ctx, 0, sizeof ctx);
        ctx.err = err;
        mdl__graph_kctx(g, i, NULL, &ctx);
        mdl_status st = n->kernel->pack(&ctx);
        if (st) return st;
    }
    return MDL_OK;
}

void mdl__model_pack_instance(mdl_model *m) {
    const mdl__graph *g = &m->g;
    if (!g->nsyms) return;
    int64_t v[MDL__MAX_SYMBOLS];
    bool other = false;
    for (int32_t y = 0; y < g->nsyms; y++) {
        v[y] = g->syms[y].initial < 2 ? 2 : g->syms[y].initial;
        if (g->syms[y].max && v[y] > g->syms[y].max) v[y] = g->syms[y].max;
        other = other || v[y] != g->symval[y];
    }
    mdl__inst *inst;
    mdl_error ignored;
    /* an optimization only: a model not valid at these sizes simply has no pack instance */
    if (other && mdl__inst_create(m, v, m->alloc, &inst, &ignored) == MDL_OK) m->pack_inst = inst;
}

mdl_status mdl__inst_create(const mdl_model *m, const int64_t *symval, const mdl_allocator *a,
                            mdl__inst **out, mdl_error *err) {
    *out = NULL;
    const mdl__graph *mg = &m->g;
    mdl__inst *inst = mdl__alloc(a, sizeof *inst);
    if (!inst) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory resizing a session");
    memset(inst, 0, sizeof *inst);
    size_t nt = (size_t)mg->ntensors, nn = (size_t)mg->nnodes;
    size_t tb = mdl__align_up(nt * sizeof(mdl__tensor), 16);
    uint8_t *records = mdl__alloc(a, tb + (nn ? nn : 1) * sizeof(mdl__node));
    if (!records) {
        mdl__free(a, inst);
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory resizing a session");
    }
    /* shallow copies: names, index lists, weights and quantization stay the model's */
    inst->g = *mg;
    inst->g.tensors = (mdl__tensor *)records;
    memcpy(inst->g.tensors, mg->tensors, nt * sizeof(mdl__tensor));
    inst->g.nodes = (mdl__node *)((uint8_t *)inst->g.tensors + tb);
    memcpy(inst->g.nodes, mg->nodes, nn * sizeof(mdl__node));
    memcpy(inst->symval, symval, sizeof(int64_t) * (size_t)mg->nsyms);
    inst->g.symval = inst->symval;
    mdl_status st = mdl__graph_check(&inst->g, false, a, err);
    if (!st) st = pack_own(m, inst, a, err);
    if (!st) st = mdl__plan_compute(&inst->g, a, &inst->plan, err);
    if (st) {
        mdl__inst_free(inst, a);
        return st;
    }
    inst->arena_bytes = inst->plan.arena_bytes;
    *out = inst;
    return MDL_OK;
}
