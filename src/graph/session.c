/* Sessions: an activation arena laid out by the model's memory plan, and the executor. */
#include "model.h"

#include "resize.h"
#include "util.h"

#include <string.h>
#ifdef MDL_WITH_THREADS
#include "threads.h" /* host builds: the worker pool (threads_host.c) */
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <time.h>
#define MDL_HAVE_CLOCK 1
#endif

struct mdl_session {
    const mdl_model *m;
    const mdl_allocator *alloc; /* NULL: lives in a caller's arena */
    void *block;
    uint8_t *arena;
    void **data;       /* per tensor: weights, arena slot, or NULL */
    uint64_t *node_ns; /* per node, when profiling */
    bool valid;
    mdl_error err; /* last run's failure */
    /* The graph instance run: the model's (its fixed shapes, or a dynamic model's initial
       values), or after mdl_session_resize to other shapes the session's own `inst`, whose data
       table and arena live in dyn_block. */
    const mdl__graph *g;
    const mdl__plan *plan;
    mdl__inst *inst;
    void *dyn_block;
    void *pool;    /* the workers (mdl__pool) when created with threads > 1, else NULL */
    size_t max_bytes; /* mdl_session_options.max_arena_bytes (0: none) */
    size_t block_bytes; /* allocated by mdl_session_create (kept across resizes) */
    mdl__par par;
};

/* The record has a fixed public size so that firmware can size a static arena at compile time
   (MDL_SESSION_ARENA_BYTES in mdeploy.h); raise MDL_SESSION_RECORD_BYTES if this fails. */
_Static_assert(sizeof(mdl_session) <= MDL_SESSION_RECORD_BYTES &&
                   MDL_SESSION_RECORD_BYTES % MDL__LINE_ALIGN == 0 && MDL__LINE_ALIGN == 64,
               "mdl_session outgrew MDL_SESSION_RECORD_BYTES");
#define HEADER_BYTES(m)                                                                            \
    ((size_t)MDL_SESSION_RECORD_BYTES +                                                            \
     mdl__align_up((size_t)(m)->g.ntensors * sizeof(void *), MDL__LINE_ALIGN))

size_t mdl__session_bytes(const mdl_model *m) {
    /* + MDL__LINE_ALIGN - 1: a caller's region may start anywhere.  Equals
       MDL_SESSION_ARENA_BYTES(ntensors, arena_bytes). */
    return HEADER_BYTES(m) + m->plan.arena_bytes + MDL__LINE_ALIGN - 1;
}

mdl_session_options mdl_session_options_default(void) {
    mdl_session_options o = {NULL, false, 0, NULL, 1, MDL_DEFAULT_MAX_ARENA_BYTES};
    return o;
}

/* Points the data table at weights and at the plan's arena slots of graph instance g. */
static void bind_data(mdl_session *s, const mdl__graph *g, const mdl__plan *plan) {
    s->g = g;
    s->plan = plan;
    for (int32_t t = 0; t < g->ntensors; t++) {
        size_t off = plan->tensor_offsets[t];
        if (g->tensors[t].data) s->data[t] = (void *)g->tensors[t].data;
        else s->data[t] = off == MDL_NO_OFFSET ? NULL : s->arena + off;
    }
}

/* Lays the session out in `region` (aligned, at least session_bytes - slack). */
static mdl_session *layout(const mdl_model *m, uint8_t *region) {
    mdl_session *s = (mdl_session *)region;
    memset(s, 0, sizeof *s);
    s->m = m;
    s->data = (void **)(region + mdl__align_up(sizeof(mdl_session), MDL__LINE_ALIGN));
    s->arena = region + HEADER_BYTES(m);
    bind_data(s, &m->g, &m->plan);
    s->valid = true;
    return s;
}

mdl_status mdl_session_create(const mdl_model *m, const mdl_session_options *options,
                              mdl_session **out, mdl_error *err) {
    if (!out) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_session_create: out is NULL");
    *out = NULL;
    if (!m) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_session_create: model is NULL");
    mdl_session_options o = options ? *options : mdl_session_options_default();
    if (o.threads < 1 || o.threads > MDL_MAX_THREADS)
        return mdl__error(err, MDL_INVALID_ARGUMENT,
                          "mdl_session_create: threads is %d, must be 1 to %d", (int)o.threads,
                          MDL_MAX_THREADS);
    const mdl_allocator *a = mdl__allocator_or_default(o.allocator);
    size_t prof = o.profile ? (size_t)m->g.nnodes * sizeof(uint64_t) : 0;
    /* timings go after the (slack-padded) session bytes, 8-aligned */
    size_t prof_at = mdl__align_up(m->session_bytes, 8);
    size_t bytes = prof_at + prof;
#ifdef MDL_WITH_THREADS
    /* Workers 1..threads-1 get their own scratch for the kernels that need one per worker
       (the largest such node's), after the timings, line-aligned. */
    int workers = o.threads;
    size_t wbytes = 0, wat = 0, wlist = 0;
    if (workers > 1) {
        for (int32_t i = 0; i < m->g.nnodes; i++)
            if ((m->g.nodes[i].kernel->flags & MDL__KERNEL_WORKER_SCRATCH) &&
                m->g.nodes[i].scratch_bytes > wbytes)
                wbytes = m->g.nodes[i].scratch_bytes;
        wbytes = mdl__align_up(wbytes, MDL__LINE_ALIGN);
        wlist = mdl__align_up(bytes, sizeof(void *));
        wat = mdl__align_up(wlist + (size_t)(workers - 1) * sizeof(void *), MDL__LINE_ALIGN) +
              MDL__LINE_ALIGN; /* + slack: the block itself may be only 16-aligned */
        size_t all;
        if (!mdl__mul_size(wbytes, (size_t)(workers - 1), &all) ||
            !mdl__add_size(wat, all, &bytes))
            return mdl__error(err, MDL_OUT_OF_MEMORY, "session scratch for %d threads is too large",
                              workers);
    }
#endif
    if (o.max_arena_bytes && bytes > o.max_arena_bytes)
        return mdl__error(err, MDL_LIMIT, "the session needs %zu bytes: above the limit "
                          "max_arena_bytes = %zu (mdl_session_options)", bytes, o.max_arena_bytes);
    uint8_t *block = mdl__alloc(a, bytes);
    if (!block)
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory creating a session (%zu bytes)", bytes);
    uint8_t *region = (uint8_t *)mdl__align_up((size_t)block, MDL__LINE_ALIGN);
    mdl_session *s = layout(m, region);
    s->alloc = a;
    s->block = block;
    s->max_bytes = o.max_arena_bytes;
    s->block_bytes = bytes;
    if (o.profile) {
        s->node_ns = (uint64_t *)(block + prof_at);
        memset(s->node_ns, 0, prof);
    }
#ifdef MDL_WITH_THREADS
    if (workers > 1) {
        void **list = (void **)(block + wlist);
        uint8_t *w0 = (uint8_t *)mdl__align_up((size_t)(block + wat), MDL__LINE_ALIGN);
        for (int i = 0; i < workers - 1; i++) list[i] = w0 + (size_t)i * wbytes;
        mdl__pool *pool;
        mdl_status st = mdl__pool_create(a, workers, &pool, err);
        if (st != MDL_OK) {
            mdl__free(a, block);
            return st;
        }
        s->pool = pool;
        s->par = (mdl__par){.nworkers = workers, .run = mdl__pool_run, .pool = pool,
                            .worker_scratch = list, .worker_scratch_bytes = wbytes};
    }
#endif
    if (o.ninput_shapes) {
        mdl_status st = mdl_session_resize(s, o.ninput_shapes, o.input_shapes, err);
        if (st) {
            mdl_session_free(s);
            return st;
        }
    }
    *out = s;
    return MDL_OK;
}

mdl_status mdl_session_create_in(const mdl_model *m, void *arena, size_t size, mdl_session **out,
                                 mdl_error *err) {
    if (!out) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_session_create_in: out is NULL");
    *out = NULL;
    if (!m || !arena)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_session_create_in: model or arena is NULL");
    if (size < m->session_bytes)
        return mdl__error(err, MDL_BUFFER_TOO_SMALL,
                          "session arena of %zu bytes is too small: this model needs %zu "
                          "(mdl_model_arena_size)", size, m->session_bytes);
    *out = layout(m, (uint8_t *)mdl__align_up((size_t)arena, MDL__LINE_ALIGN));
    return MDL_OK;
}

void mdl_session_free(mdl_session *s) {
    if (!s) return;
    s->valid = false;
#ifdef MDL_WITH_THREADS
    mdl__pool_free(s->pool);
#endif
    if (!s->alloc) return;
    if (MDL__DYNAMIC) {
        mdl__inst_free(s->inst, s->alloc);
        mdl__free(s->alloc, s->dyn_block);
    }
    mdl__free(s->alloc, s->block);
}

mdl_status mdl_session_resize(mdl_session *s, int n, const mdl_shape *shapes, mdl_error *err) {
    if (!s || !s->valid) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_session_resize: no session");
    const mdl_model *m = s->m;
    int64_t cur[MDL__MAX_SYMBOLS], want[MDL__MAX_SYMBOLS];
    const int64_t *now = s->inst ? s->inst->symval : m->g.symval;
    for (int32_t y = 0; y < m->g.nsyms; y++) cur[y] = now[y];
    mdl_status st = mdl__symvals_from_shapes(m, cur, n, shapes, want, err);
    if (st) return st;
    if (!MDL__DYNAMIC || !m->g.nsyms || !memcmp(cur, want, sizeof(int64_t) * (size_t)m->g.nsyms))
        return MDL_OK;
    if (!s->alloc)
        return mdl__error(err, MDL_UNSUPPORTED, "a session in a caller's arena cannot be resized "
                          "(create one at the new shapes)");
    bool initial = !memcmp(m->g.symval, want, sizeof(int64_t) * (size_t)m->g.nsyms);
    mdl__inst *inst = NULL;
    void *block = NULL;
    if (!initial) {
        /* everything new is built aside: on failure the session keeps its shapes */
        if ((st = mdl__inst_create(m, want, s->alloc, &inst, err))) return st;
        size_t bytes = mdl__align_up((size_t)m->g.ntensors * sizeof(void *), MDL__LINE_ALIGN) +
                       inst->arena_bytes + MDL__LINE_ALIGN;
        /* the block of mdl_session_create stays (a resize back to the initial shapes uses it) */
        if (s->max_bytes && (bytes > s->max_bytes || s->block_bytes > s->max_bytes - bytes)) {
            mdl__inst_free(inst, s->alloc);
            return mdl__error(err, MDL_LIMIT, "resizing the session needs %zu more bytes (%zu in all): "
                              "above the limit max_arena_bytes = %zu (mdl_session_options)", bytes,
                              s->block_bytes + bytes, s->max_bytes);
        }
        if (!(block = mdl__alloc(s->alloc, bytes))) {
            mdl__inst_free(inst, s->alloc);
            return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory resizing a session (%zu bytes)",
                              bytes);
        }
    }
    mdl__inst_free(s->inst, s->alloc);
    mdl__free(s->alloc, s->dyn_block);
    s->inst = inst;
    s->dyn_block = block;
    uint8_t *region = (uint8_t *)s + mdl__align_up(sizeof(mdl_session), MDL__LINE_ALIGN);
    if (initial) { /* back to the layout of mdl_session_create */
        s->data = (void **)region;
        s->arena = (uint8_t *)s + HEADER_BYTES(m);
        bind_data(s, &m->g, &m->plan);
    } else {
        uint8_t *b = (uint8_t *)mdl__align_up((size_t)block, MDL__LINE_ALIGN);
        s->data = (void **)b;
        s->arena = b + mdl__align_up((size_t)m->g.ntensors * sizeof(void *), MDL__LINE_ALIGN);
        bind_data(s, &inst->g, &inst->plan);
    }
    return MDL_OK;
}

static mdl_status io_info(const mdl_session *s, const int32_t *list, int32_t n, int i,
                          mdl_tensor_info *info) {
    if (!s || !info || i < 0 || i >= n) return MDL_INVALID_ARGUMENT;
    mdl__session_tensor_info(&s->g->tensors[list[i]], info);
    return MDL_OK;
}

mdl_status mdl_session_input_info(const mdl_session *s, int i, mdl_tensor_info *info) {
    return io_info(s, s ? s->g->inputs : NULL, s ? s->g->ninputs : 0, i, info);
}

mdl_status mdl_session_output_info(const mdl_session *s, int i, mdl_tensor_info *info) {
    return io_info(s, s ? s->g->outputs : NULL, s ? s->g->noutputs : 0, i, info);
}

const mdl_model *mdl_session_model(const mdl_session *s) { return s ? s->m : NULL; }

void *mdl_session_input_data(mdl_session *s, int i) {
    if (!s || i < 0 || i >= s->g->ninputs) return NULL;
    return s->data[s->g->inputs[i]];
}

const void *mdl_session_output_data(const mdl_session *s, int i) {
    if (!s || i < 0 || i >= s->g->noutputs) return NULL;
    return s->data[s->g->outputs[i]];
}

mdl_status mdl_session_set_input(mdl_session *s, int i, const void *data, size_t bytes,
                                 mdl_error *err) {
    if (!s || !data || i < 0 || i >= s->g->ninputs)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "set_input: no input %d", i);
    const mdl__tensor *t = &s->g->tensors[s->g->inputs[i]];
    if (bytes != t->bytes)
        return mdl__error(err, MDL_BUFFER_TOO_SMALL, "input %d '%s' takes %zu bytes, got %zu", i,
                          t->name, t->bytes, bytes);
    if (bytes) memcpy(s->data[s->g->inputs[i]], data, bytes);
    return MDL_OK;
}

mdl_status mdl_session_get_output(const mdl_session *s, int i, void *data, size_t bytes,
                                  mdl_error *err) {
    if (!s || !data || i < 0 || i >= s->g->noutputs)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "get_output: no output %d", i);
    const mdl__tensor *t = &s->g->tensors[s->g->outputs[i]];
    if (bytes < t->bytes)
        return mdl__error(err, MDL_BUFFER_TOO_SMALL, "output %d '%s' has %zu bytes, buffer holds %zu",
                          i, t->name, t->bytes, bytes);
    if (t->bytes) memcpy(data, s->data[s->g->outputs[i]], t->bytes);
    return MDL_OK;
}

static uint64_t now_ns(void) {
#ifdef MDL_HAVE_CLOCK
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#else
    return 0;
#endif
}

/* The nodes in order; with mx (op metrics on) each node's time goes to its operator.  Inlined:
   firmware (no metrics) keeps one function, as small as before the metrics. */
static inline __attribute__((always_inline)) mdl_status run_nodes(mdl_session *s, void *mx) {
    s->err.status = MDL_OK;
    s->err.msg[0] = '\0';
    const mdl__graph *g = s->g;
    mdl__kctx ctx;
    ctx.err = &s->err;
    for (int32_t i = 0; i < g->nnodes; i++) {
        mdl__graph_kctx(g, i, s->data, &ctx);
        ctx.scratch = s->arena + s->plan->scratch_offsets[i];
        /* the workers' scratch was sized for the shapes at creation: a node whose per-worker
           scratch grew with a resize runs on the calling thread (same results) */
        ctx.par = s->pool && (!(g->nodes[i].kernel->flags & MDL__KERNEL_WORKER_SCRATCH) ||
                              g->nodes[i].scratch_bytes <= s->par.worker_scratch_bytes)
                      ? &s->par
                      : NULL;
#ifdef MDL_WITH_METRICS
        uint64_t t0 = s->node_ns || mx ? now_ns() : 0;
        mdl_status st = g->nodes[i].kernel->run(&ctx);
        if (s->node_ns || mx) {
            uint64_t dt = now_ns() - t0;
            if (s->node_ns) s->node_ns[i] = dt;
            if (mx) mdl__metrics_op(mx, g->nodes[i].op, dt);
        }
#else /* firmware: the loop exactly as it was before metrics (same code size) */
        uint64_t t0 = s->node_ns ? now_ns() : 0;
        mdl_status st = g->nodes[i].kernel->run(&ctx);
        if (s->node_ns) s->node_ns[i] = now_ns() - t0;
#endif
        if (st) {
            if (!s->err.msg[0]) mdl__fail(&ctx, st, "failed (%s)", mdl_status_str(st));
            s->err.status = st;
            return st;
        }
    }
    return MDL_OK;
}

mdl_status mdl_session_run(mdl_session *s) {
    if (!s || !s->valid) return MDL_INVALID_ARGUMENT;
#ifdef MDL_WITH_METRICS
    mdl__metrics *mx = s->m->metrics;
    if (mx) { /* one clock read pair per run; per node only with op metrics */
        uint64_t t0 = now_ns();
        mdl_status st = run_nodes(s, mdl__metrics_ops_on(mx) ? mx : NULL);
        mdl__metrics_run(mx, st, now_ns() - t0);
        return st;
    }
#endif
    return run_nodes(s, NULL);
}

const char *mdl_session_message(const mdl_session *s) { return s ? s->err.msg : ""; }

int mdl_session_threads(const mdl_session *s) {
    return !s ? 0 : s->pool ? s->par.nworkers : 1;
}

uint64_t mdl_session_node_ns(const mdl_session *s, int i) {
    if (!s || !s->node_ns || i < 0 || i >= s->m->g.nnodes) return 0;
    return s->node_ns[i];
}
