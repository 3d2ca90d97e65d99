/* The memory planner and the stored-plan check against naive references: the greedy-by-size
   planner written the obvious O(n^2) way (every placed buffer, every pair), on random graphs;
   the O(n log n) plan check against a check of every pair, on valid and damaged plans; and a
   32,000-node chain loaded with and without a stored plan and run against its reference. */
#include "common/harness.h"
#include "common/models.h"

#include "graph/graph.h"
#include "mdeploy/resolver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- random graphs (planner input only: no kernels run) --------------------------------- */

typedef struct rgraph {
    mdl__graph g;
    mdl__tensor *t;
    mdl__node *n;
    int32_t *io; /* node inputs/outputs, then graph inputs/outputs */
} rgraph;

static const float dummy_weight = 0;

/* ni graph inputs, nn nodes (1-3 inputs among the tensors defined so far, one output; a third
   of them reshapes, which alias their input; some with scratch), random graph outputs, a few
   constants and unused tensors. */
static void rgraph_make(rgraph *r, int ni, int nn) {
    int nconst = 3, nt = ni + nconst + nn + 2;
    memset(r, 0, sizeof *r);
    r->t = calloc((size_t)nt, sizeof(mdl__tensor));
    r->n = calloc((size_t)nn, sizeof(mdl__node));
    r->io = calloc((size_t)(4 * nn + ni + nn + 8), sizeof(int32_t));
    int32_t *io = r->io;
    for (int i = 0; i < nt; i++) {
        r->t[i].bytes = (size_t)th_rand_int(1, 5) * (size_t)th_rand_int(1, 300);
        r->t[i].rank = 1;
    }
    for (int i = ni; i < ni + nconst; i++) r->t[i].data = &dummy_weight;
    for (int i = 0; i < nn; i++) {
        mdl__node *n = &r->n[i];
        int defined = ni + nconst + i; /* tensors 0 .. defined-1 exist */
        n->op = th_rand_int(0, 2) == 0 ? MDL_OP_RESHAPE : MDL_OP_ADD;
        n->nin = n->op == MDL_OP_RESHAPE ? 1 : (int32_t)th_rand_int(1, 3);
        n->in = io;
        io += n->nin;
        for (int k = 0; k < n->nin; k++) {
            /* mostly recent tensors (chains), sometimes anything earlier (long lifetimes) */
            int lo = th_rand_int(0, 3) ? (defined > 6 ? defined - 6 : 0) : 0;
            n->in[k] = (int32_t)th_rand_int(lo, defined - 1);
        }
        n->nout = 1;
        n->out = io++;
        n->out[0] = defined;
        n->scratch_bytes = th_rand_int(0, 3) ? 0 : (size_t)th_rand_int(1, 30) * 64; /* graph_check aligns */
    }
    r->g.inputs = io;
    for (int i = 0; i < ni; i++) *io++ = i;
    r->g.outputs = io;
    int no = 0;
    for (int i = ni + nconst; i < ni + nconst + nn; i++)
        if (i == ni + nconst + nn - 1 || th_rand_int(0, 9) == 0) io[no++] = i;
    r->g.ntensors = nt;
    r->g.nnodes = nn;
    r->g.ninputs = ni;
    r->g.noutputs = no;
    r->g.tensors = r->t;
    r->g.nodes = r->n;
}

static void rgraph_free(rgraph *r) {
    free(r->t);
    free(r->n);
    free(r->io);
}

/* ---- the reference planner -------------------------------------------------------------- */

typedef struct rbuf {
    size_t size, off;
    int32_t first, last, id;
    bool live;
} rbuf;

static int32_t ref_root(const mdl__graph *g, int32_t t) {
    for (;;) {
        int32_t p = -1;
        for (int32_t i = 0; i < g->nnodes; i++)
            if (g->nodes[i].out[0] == t) p = i;
        if (p < 0 || g->nodes[p].op != MDL_OP_RESHAPE) return t;
        int32_t src = g->nodes[p].in[0];
        if (g->tensors[src].data) return t;
        t = src;
    }
}

static void ref_use(const mdl__graph *g, rbuf *b, int32_t t, int32_t when) {
    if (g->tensors[t].data) return;
    rbuf *r = &b[ref_root(g, t)];
    if (when < r->first) r->first = when;
    if (when > r->last) r->last = when;
    if (g->tensors[t].bytes > r->size) r->size = g->tensors[t].bytes;
    r->live = true;
}

/* bufs: ntensors + nnodes entries; returns the arena size. */
static size_t ref_plan(const mdl__graph *g, rbuf *b) {
    int32_t nt = g->ntensors, nb = nt + g->nnodes;
    for (int32_t i = 0; i < nb; i++) b[i] = (rbuf){0, 0, INT32_MAX, -2, i, false};
    for (int32_t k = 0; k < g->ninputs; k++) ref_use(g, b, g->inputs[k], -1);
    for (int32_t i = 0; i < g->nnodes; i++) {
        for (int32_t k = 0; k < g->nodes[i].nin; k++) ref_use(g, b, g->nodes[i].in[k], i);
        ref_use(g, b, g->nodes[i].out[0], i);
        b[nt + i] = (rbuf){g->nodes[i].scratch_bytes, 0, i, i, nt + i, g->nodes[i].scratch_bytes > 0};
    }
    for (int32_t k = 0; k < g->noutputs; k++) ref_use(g, b, g->outputs[k], g->nnodes);
    for (int32_t t = 0; t < nt; t++) b[t].size = (b[t].size + 63) / 64 * 64;
    /* place largest first (ties: earlier start, lower id) at the lowest offset clear of every
       placed buffer alive at the same time */
    bool *placed = calloc((size_t)nb, 1);
    size_t arena = 0;
    for (;;) {
        int32_t best = -1;
        for (int32_t i = 0; i < nb; i++) {
            if (!b[i].live || placed[i]) continue;
            if (best < 0 || b[i].size > b[best].size ||
                (b[i].size == b[best].size && b[i].first < b[best].first))
                best = i;
        }
        if (best < 0) break;
        size_t off = 0;
        for (bool moved = true; moved;) {
            moved = false;
            for (int32_t j = 0; j < nb; j++)
                if (placed[j] && b[j].first <= b[best].last && b[best].first <= b[j].last &&
                    b[j].off < off + b[best].size && off < b[j].off + b[j].size) {
                    off = b[j].off + b[j].size;
                    moved = true;
                }
        }
        b[best].off = off;
        placed[best] = true;
        if (off + b[best].size > arena) arena = off + b[best].size;
    }
    free(placed);
    return arena;
}

/* Every pair: does the plan keep buffers alive at the same time apart? (offsets within the
   arena and aligned are checked by the caller's cases) */
static bool ref_disjoint(const rbuf *b, int32_t nb, const size_t *off) {
    for (int32_t i = 0; i < nb; i++)
        for (int32_t j = i + 1; j < nb; j++)
            if (b[i].live && b[j].live && b[i].first <= b[j].last && b[j].first <= b[i].last &&
                off[i] < off[j] + b[j].size && off[j] < off[i] + b[i].size)
                return false;
    return true;
}

static void test_planner_matches_reference(void **state) {
    (void)state;
    th_seed(16);
    for (int trial = 0; trial < 300; trial++) {
        rgraph r;
        rgraph_make(&r, (int)th_rand_int(1, 4), (int)th_rand_int(1, trial < 200 ? 30 : 300));
        int32_t nt = r.g.ntensors, nb = nt + r.g.nnodes;
        rbuf *b = calloc((size_t)nb, sizeof(rbuf));
        size_t arena = ref_plan(&r.g, b);
        mdl__plan plan;
        mdl_error err;
        assert_int_equal(mdl__plan_compute(&r.g, NULL, &plan, &err), MDL_OK);
        assert_int_equal(plan.arena_bytes, arena);
        for (int32_t t = 0; t < nt; t++) {
            if (r.t[t].data) continue;
            int32_t root = ref_root(&r.g, t);
            if (b[root].live) assert_int_equal(plan.tensor_offsets[t], b[root].off);
            else assert_true(plan.tensor_offsets[t] == MDL_NO_OFFSET);
        }
        for (int32_t i = 0; i < r.g.nnodes; i++)
            if (b[nt + i].live) assert_int_equal(plan.scratch_offsets[i], b[nt + i].off);
        /* the check accepts the plan; damaged copies exactly when the pairwise check does */
        if (mdl__plan_verify(&r.g, &plan, NULL, &err)) fail_msg("trial %d: %s", trial, err.msg);
        size_t *off = calloc((size_t)nb, sizeof(size_t));
        for (int k = 0; k < 20; k++) {
            int32_t v = (int32_t)th_rand_int(0, nb - 1);
            if (!b[v].live || (v < nt && ref_root(&r.g, v) != v)) continue;
            size_t *slot = v < nt ? &plan.tensor_offsets[v] : &plan.scratch_offsets[v - nt];
            size_t keep = *slot;
            *slot = (size_t)th_rand_int(0, (int64_t)(arena / 16)) * 16;
            for (int32_t i = 0; i < nb; i++) off[i] = b[i].off;
            off[v] = *slot;
            for (int32_t t = 0; t < nt; t++) /* aliases follow their root */
                if (!r.t[t].data && b[ref_root(&r.g, t)].live && ref_root(&r.g, t) == v) plan.tensor_offsets[t] = *slot;
            bool inside = *slot + b[v].size <= arena;
            mdl_status st = mdl__plan_verify(&r.g, &plan, NULL, &err);
            if (inside && ref_disjoint(b, nb, off)) assert_int_equal(st, MDL_OK);
            else assert_int_equal(st, MDL_CORRUPT_MODEL);
            for (int32_t t = 0; t < nt; t++)
                if (!r.t[t].data && b[ref_root(&r.g, t)].live && ref_root(&r.g, t) == v) plan.tensor_offsets[t] = keep;
            *slot = keep;
        }
        /* offsets of tensors without memory and of nodes without scratch are checked too */
        for (int32_t i = 0; i < nb; i++) {
            if (b[i].live || (i < nt && (r.t[i].data || ref_root(&r.g, i) != i))) continue;
            size_t *slot = i < nt ? &plan.tensor_offsets[i] : &plan.scratch_offsets[i - nt];
            size_t keep = *slot;
            *slot = arena + 64;
            assert_int_equal(mdl__plan_verify(&r.g, &plan, NULL, &err), MDL_CORRUPT_MODEL);
            *slot = (size_t)1 << 62;
            assert_int_equal(mdl__plan_verify(&r.g, &plan, NULL, &err), MDL_CORRUPT_MODEL);
            *slot = keep;
            break;
        }
        free(off);
        mdl__plan_free(&plan, NULL);
        free(b);
        rgraph_free(&r);
    }
}

/* Every node's output is a graph output: all buffers live at once (the greedy planner's worst
   case; past its budget it places the rest side by side).  The plan must still be valid. */
static void test_wide_graph(void **state) {
    (void)state;
    for (int nn = 100; nn <= 20000; nn *= 200) {
        rgraph r;
        th_seed(7);
        rgraph_make(&r, 1, nn);
        for (int i = 0; i < nn; i++) {
            r.n[i].op = MDL_OP_ADD;
            r.n[i].nin = 1;
            r.n[i].in[0] = 0;
        }
        r.g.noutputs = 0;
        for (int i = 0; i < nn; i++) r.g.outputs[r.g.noutputs++] = r.n[i].out[0];
        mdl__plan plan;
        mdl_error err;
        assert_int_equal(mdl__plan_compute(&r.g, NULL, &plan, &err), MDL_OK);
        if (mdl__plan_verify(&r.g, &plan, NULL, &err)) fail_msg("%s", err.msg);
        if (nn <= 100) { /* small: exactly the reference */
            rbuf *b = calloc((size_t)(r.g.ntensors + nn), sizeof(rbuf));
            assert_int_equal(plan.arena_bytes, ref_plan(&r.g, b));
            free(b);
        }
        mdl__plan_free(&plan, NULL);
        rgraph_free(&r);
    }
}

/* ---- a long chain ------------------------------------------------------------------------ */

static void run_chain(int n, bool with_plan) {
    void *data;
    size_t size;
    assert_int_equal(tm_build_chain(n, with_plan ? TM_PLAN_STORED : TM_PLAN_NONE, &data, &size), MDL_OK);
    mdl_model *m;
    mdl_error err;
    mdl_status st = mdl_model_load_buffer(data, size, NULL, &m, &err);
    if (st) fail_msg("%s", err.msg);
    assert_int_equal(mdl_model_node_count(m), n);
    assert_int_equal(mdl_model_needs_load_planner(m), !with_plan);
    /* two 32-byte activations alive at a time, each in a 64-byte slot */
    assert_true(mdl_model_activation_bytes(m) <= 128);
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    float x[8], y[8];
    for (int k = 0; k < 8; k++) x[k] = (float)(k - 4) * 0.75f;
    memcpy(mdl_session_input_data(s, 0), x, sizeof x);
    assert_int_equal(mdl_session_run(s), MDL_OK);
    tm_chain_reference(n, x, y);
    const float *out = mdl_session_output_data(s, 0);
    for (int k = 0; k < 8; k++) assert_true(out[k] == y[k]); /* -0 == 0: Relu may keep either */
    mdl_session_free(s);
    mdl_model_free(m);
    free(data);
}

static void test_chain_32000_no_plan(void **state) {
    (void)state;
    run_chain(32000, false);
}

static void test_chain_32000_stored_plan(void **state) {
    (void)state;
    run_chain(32000, true);
    run_chain(32001, true); /* ends on a Neg: the output is not the input's */
}

/* ---- limits ------------------------------------------------------------------------------ */

static void expect_limit(mdl_status st, const mdl_error *err, const char *limit, const char *asked) {
    assert_int_equal(st, MDL_LIMIT);
    if (!strstr(err->msg, limit) || !strstr(err->msg, asked))
        fail_msg("message '%s' should name '%s' and '%s'", err->msg, limit, asked);
}

static void test_load_limits(void **state) {
    (void)state;
    void *data;
    size_t size;
    assert_int_equal(tm_build_chain(100, TM_PLAN_STORED, &data, &size), MDL_OK);
    mdl_model *m;
    mdl_error err;
    mdl_load_options o = mdl_load_options_default();
    assert_int_equal(o.max_arena_bytes, sizeof(size_t) == 8 ? (size_t)4 << 30 : 0);
    o.max_nodes = 99;
    expect_limit(mdl_model_load_buffer(data, size, &o, &m, &err), &err, "max_nodes = 99", "100 operators");
    assert_null(m);
    o.max_nodes = 100;
    o.max_tensors = 100; /* 101 tensors */
    expect_limit(mdl_model_load_buffer(data, size, &o, &m, &err), &err, "max_tensors = 100", "101 tensors");
    o.max_tensors = 101;
    assert_int_equal(mdl_model_load_buffer(data, size, &o, &m, &err), MDL_OK);
    size_t need = mdl_model_arena_size(m);
    mdl_model_free(m);
    o.max_arena_bytes = need - 1;
    char asked[64];
    snprintf(asked, sizeof asked, "%zu bytes", need);
    expect_limit(mdl_model_load_buffer(data, size, &o, &m, &err), &err, "max_arena_bytes", asked);
    o.max_arena_bytes = need;
    assert_int_equal(mdl_model_load_buffer(data, size, &o, &m, &err), MDL_OK);
    /* the session's own limit */
    mdl_session_options so = mdl_session_options_default();
    assert_int_equal(so.max_arena_bytes, sizeof(size_t) == 8 ? (size_t)4 << 30 : 0);
    so.max_arena_bytes = need - 1;
    mdl_session *s;
    expect_limit(mdl_session_create(m, &so, &s, &err), &err, "max_arena_bytes", "bytes");
    assert_null(s);
    so.max_arena_bytes = 0; /* no limit */
    assert_int_equal(mdl_session_create(m, &so, &s, &err), MDL_OK);
    mdl_session_free(s);
    mdl_model_free(m);
    /* 0 = no limit for every field */
    mdl_load_options none = {NULL, 0, NULL, 0, 0, 0, NULL, 0};
    assert_int_equal(mdl_model_load_buffer(data, size, &none, &m, &err), MDL_OK);
    mdl_model_free(m);
    free(data);
}

/* A tiny file that asks for a 32 GiB arena: the default limits refuse it at load and at session
   creation; without a load limit it loads (nothing is allocated for activations at load). */
static void test_huge_arena_refused(void **state) {
    (void)state;
    mdl_builder *b;
    mdl_error err;
    assert_int_equal(mdl_builder_create(NULL, &b, &err), MDL_OK);
    int64_t d[2] = {65536, 65536};
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, d, NULL);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, 2, d, NULL);
    mdl_builder_node(b, MDL_OP_RELU, "r", 1, &x, 1, &y, NULL);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, y);
    void *data;
    size_t size;
    assert_int_equal(mdl_builder_finish(b, &data, &size, &err), MDL_OK);
    assert_true(size < 4096);
    mdl_model *m;
    expect_limit(mdl_model_load_buffer(data, size, NULL, &m, &err), &err, "max_arena_bytes = 4294967296",
                 "bytes");
    mdl_load_options o = mdl_load_options_default();
    o.max_arena_bytes = 0;
    assert_int_equal(mdl_model_load_buffer(data, size, &o, &m, &err), MDL_OK);
    assert_true(mdl_model_arena_size(m) > ((size_t)32 << 30));
    mdl_session *s;
    expect_limit(mdl_session_create(m, NULL, &s, &err), &err, "max_arena_bytes = 4294967296", "bytes");
    mdl_model_free(m);
    mdl_builder_release(b, data);
    mdl_builder_free(b);
}

/* ---- stored plans that fail the check ------------------------------------------------------ */

/* A chain whose stored plan puts every buffer at offset 0 (overlapping): loaded, it is planned
   again with a note and computes the right result; MDL_LOAD_STRICT_PLAN refuses it. */
static void test_bad_stored_plan_replanned(void **state) {
    (void)state;
    const int n = 50;
    void *data;
    size_t size;
    mdl_model *m;
    mdl_error err;
    assert_int_equal(tm_build_chain(n, TM_PLAN_STORED, &data, &size), MDL_OK);
    assert_int_equal(mdl_model_load_buffer(data, size, NULL, &m, &err), MDL_OK);
    assert_string_equal(mdl_model_load_note(m), "");
    assert_false(mdl_model_needs_load_planner(m));
    mdl_model_free(m);
    free(data);

    assert_int_equal(tm_build_chain(n, TM_PLAN_OVERLAPPING, &data, &size), MDL_OK);
    mdl_load_options o = mdl_load_options_default();
    o.flags = MDL_LOAD_STRICT_PLAN;
    assert_int_equal(mdl_model_load_buffer(data, size, &o, &m, &err), MDL_CORRUPT_MODEL);
    assert_non_null(strstr(err.msg, "memory plan"));
    assert_int_equal(mdl_model_load_buffer(data, size, NULL, &m, &err), MDL_OK);
    assert_true(mdl_model_needs_load_planner(m));
    if (!strstr(mdl_model_load_note(m), "stored memory plan was rejected (memory plan: "))
        fail_msg("note: '%s'", mdl_model_load_note(m));
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    float x[8], y[8];
    for (int k = 0; k < 8; k++) x[k] = (float)k - 3.5f;
    memcpy(mdl_session_input_data(s, 0), x, sizeof x);
    assert_int_equal(mdl_session_run(s), MDL_OK);
    tm_chain_reference(n, x, y);
    const float *out = mdl_session_output_data(s, 0);
    for (int k = 0; k < 8; k++) assert_true(out[k] == y[k]);
    mdl_session_free(s);
    mdl_model_free(m);
    free(data);
}

/* A file written before arena slots were 64 bytes (its stored plan packs 32-byte tensors at
   32-byte offsets): planned again, with a note; refused when the stored plan is required. */
static void test_old_file_replanned(void **state) {
    (void)state;
    mdl_model *m;
    mdl_error err;
    mdl_load_options o = mdl_load_options_default();
    o.flags = MDL_LOAD_STRICT_PLAN;
    assert_int_equal(mdl_model_load_file("tests/models/old-plan-mlp.mdl", &o, &m, &err), MDL_CORRUPT_MODEL);
    assert_int_equal(mdl_model_load_file("tests/models/old-plan-mlp.mdl", NULL, &m, &err), MDL_OK);
    assert_non_null(strstr(mdl_model_load_note(m), "computed again"));
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    assert_int_equal(mdl_session_run(s), MDL_OK);
    mdl_session_free(s);
    mdl_model_free(m);
}

/* One rule for NULL handles (mdeploy.h): statuses say INVALID_ARGUMENT, getters "nothing". */
static void test_null_handles(void **state) {
    (void)state;
    mdl_tensor_info ti;
    mdl_node_info ni;
    const mdl_model *m = NULL;
    assert_int_equal(mdl_model_arena_size(m), 0);
    assert_int_equal(mdl_model_activation_bytes(m), 0);
    assert_int_equal(mdl_model_weight_bytes(m), 0);
    assert_string_equal(mdl_model_name(m), "");
    assert_string_equal(mdl_model_version(m), "");
    assert_string_equal(mdl_model_producer(m), "");
    assert_string_equal(mdl_model_description(m), "");
    assert_string_equal(mdl_model_load_note(m), "");
    assert_int_equal(mdl_model_format_major(m), 0);
    assert_int_equal(mdl_model_format_minor(m), 0);
    assert_null(mdl_model_metadata(m, "k"));
    assert_int_equal(mdl_model_metadata_count(m), 0);
    assert_false(mdl_model_metadata_at(m, 0, NULL, NULL));
    assert_int_equal(mdl_model_input_count(m), 0);
    assert_int_equal(mdl_model_output_count(m), 0);
    assert_int_equal(mdl_model_input_info(m, 0, &ti), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_model_output_info(m, 0, &ti), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_model_symbol_count(m), 0);
    assert_false(mdl_model_symbol(m, 0, NULL, NULL, NULL));
    assert_int_equal(mdl_model_input_index(m, "x"), -1);
    assert_int_equal(mdl_model_output_index(m, "y"), -1);
    assert_int_equal(mdl_model_node_count(m), 0);
    assert_int_equal(mdl_model_tensor_count(m), 0);
    assert_int_equal(mdl_model_node_info(m, 0, &ni), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_model_tensor_info(m, 0, &ti, NULL), MDL_INVALID_ARGUMENT);
    char buf[8];
    assert_int_equal(mdl_model_node_attrs(m, 0, buf, sizeof buf), 0);
    assert_false(mdl_model_needs_load_planner(m));
    mdl_model_free(NULL);
    mdl_session *s = NULL;
    mdl_error err;
    assert_null(mdl_session_model(s));
    assert_int_equal(mdl_session_input_info(s, 0, &ti), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_session_output_info(s, 0, &ti), MDL_INVALID_ARGUMENT);
    assert_null(mdl_session_input_data(s, 0));
    assert_null(mdl_session_output_data(s, 0));
    assert_int_equal(mdl_session_set_input(s, 0, buf, 4, &err), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_session_get_output(s, 0, buf, 4, &err), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_session_run(s), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_session_resize(s, 0, NULL, &err), MDL_INVALID_ARGUMENT);
    assert_string_equal(mdl_session_message(s), "");
    assert_int_equal(mdl_session_threads(s), 0);
    assert_int_equal(mdl_session_node_ns(s, 0), 0);
    mdl_session_free(NULL);
    assert_int_equal(mdl_session_create(NULL, NULL, &s, &err), MDL_INVALID_ARGUMENT);
    mdl_builder *b = NULL;
    int t = 0;
    assert_int_equal(mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 1, (int64_t[]){1}, NULL), -1);
    assert_int_equal(mdl_builder_node(b, MDL_OP_RELU, "r", 1, &t, 1, &t, NULL), -1);
    assert_int_equal(mdl_builder_symbol(b, "n", 0, 1), -1);
    assert_int_equal(mdl_builder_set_dims(b, 0, (int32_t[]){-1}), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_builder_set_quant(b, 0, 1, (float[]){1}, (int64_t[]){0}, 0), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_builder_add_input(b, 0), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_builder_add_output(b, 0), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_builder_set_metadata(b, "k", "v"), MDL_INVALID_ARGUMENT);
    void *data;
    size_t size;
    assert_int_equal(mdl_builder_finish(b, &data, &size, &err), MDL_INVALID_ARGUMENT);
    mdl_builder_release(b, NULL);
    mdl_builder_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planner_matches_reference),
        cmocka_unit_test(test_wide_graph),
        cmocka_unit_test(test_chain_32000_no_plan),
        cmocka_unit_test(test_chain_32000_stored_plan),
        cmocka_unit_test(test_load_limits),
        cmocka_unit_test(test_huge_arena_refused),
        cmocka_unit_test(test_bad_stored_plan_replanned),
        cmocka_unit_test(test_old_file_replanned),
        cmocka_unit_test(test_null_handles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
