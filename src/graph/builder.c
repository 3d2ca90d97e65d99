/* The graph builder: a growable graph plus the finish step (check, plan, serialize, re-load). */
#include "model.h"

#include "util.h"
#include "ops/sparse.h"

#include <string.h>

struct mdl_builder {
    const mdl_allocator *alloc;
    mdl__graph g;
    int32_t cap_tensors, cap_nodes, cap_inputs, cap_outputs;
    void **owned; /* every allocation the graph points into */
    size_t nowned, cap_owned;
    const char *name, *version, *producer, *description;
    uint64_t security_counter; /* metadata key "security_counter" (include/mdeploy/security.h) */
    const char **kv;
    int32_t nkv, cap_kv;
    mdl_error error; /* first failure of an add call, reported by finish */
    mdl__symbol syms[MDL__MAX_SYMBOLS];
    uint8_t *inferred; /* per tensor: added with rank -1 (cap_inferred entries) */
    int32_t cap_inferred;
    const struct mdl__selftest *selftest; /* the caller's, written by finish (NULL: none) */
};

void mdl__builder_set_selftest(mdl_builder *b, const struct mdl__selftest *s) {
    if (b) b->selftest = s;
}

/* Remembers the first failure (finish reports it); add calls return -1 / the status. */
static mdl_status fail_st(mdl_builder *b, mdl_status st, const char *what) {
    if (b->error.status == MDL_OK) mdl__error(&b->error, st, "builder: %s", what);
    return b->error.status;
}
static int fail(mdl_builder *b, mdl_status st, const char *what) {
    fail_st(b, st, what);
    return -1;
}

/* Grows *arr (elem bytes each) to hold at least need entries. */
static bool grow(mdl_builder *b, void **arr, int32_t *cap, int32_t need, size_t elem) {
    if (need <= *cap) return true;
    int32_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need) ncap *= 2;
    void *n = mdl__alloc(b->alloc, (size_t)ncap * elem);
    if (!n) return false;
    if (*arr) memcpy(n, *arr, (size_t)*cap * elem);
    mdl__free(b->alloc, *arr);
    *arr = n;
    *cap = ncap;
    return true;
}

/* Allocates bytes owned by the builder (freed by mdl_builder_free). */
static void *own(mdl_builder *b, const void *src, size_t bytes) {
    if (b->nowned == b->cap_owned) {
        int32_t cap = (int32_t)b->cap_owned;
        if (!grow(b, (void **)&b->owned, &cap, cap + 1, sizeof(void *))) return NULL;
        b->cap_owned = (size_t)cap;
    }
    void *p = mdl__alloc(b->alloc, bytes ? bytes : 1);
    if (!p) return NULL;
    if (src && bytes) memcpy(p, src, bytes);
    b->owned[b->nowned++] = p;
    return p;
}

static const char *own_str(mdl_builder *b, const char *s) {
    return own(b, s ? s : "", strlen(s ? s : "") + 1);
}

mdl_status mdl_builder_create(const mdl_allocator *allocator, mdl_builder **out, mdl_error *err) {
    if (!out) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_builder_create: out is NULL");
    const mdl_allocator *a = mdl__allocator_or_default(allocator);
    mdl_builder *b = mdl__alloc(a, sizeof *b);
    *out = b;
    if (!b) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory creating a builder");
    memset(b, 0, sizeof *b);
    b->alloc = a;
    return MDL_OK;
}

void mdl_builder_free(mdl_builder *b) {
    if (!b) return;
    const mdl_allocator *a = b->alloc;
    for (size_t i = 0; i < b->nowned; i++) mdl__free(a, b->owned[i]);
    mdl__free(a, b->owned);
    mdl__free(a, b->g.tensors);
    mdl__free(a, b->g.nodes);
    mdl__free(a, b->g.inputs);
    mdl__free(a, b->g.outputs);
    mdl__free(a, (void *)b->kv);
    mdl__free(a, b->inferred);
    mdl__free(a, b);
}

int mdl_builder_tensor(mdl_builder *b, const char *name, mdl_dtype dtype, int rank,
                       const int64_t *dims, const void *data) {
    if (!b) return -1;
    if ((unsigned)dtype >= MDL_DTYPE_COUNT) return fail(b, MDL_INVALID_ARGUMENT, "unknown dtype");
    if (rank > MDL_MAX_RANK || (rank > 0 && !dims) || (rank < 0 && data))
        return fail(b, MDL_INVALID_ARGUMENT, "bad rank or dims");
    if (!grow(b, (void **)&b->g.tensors, &b->cap_tensors, b->g.ntensors + 1, sizeof(mdl__tensor)))
        return fail(b, MDL_OUT_OF_MEMORY, "out of memory");
    if (!grow(b, (void **)&b->inferred, &b->cap_inferred, b->g.ntensors + 1, 1))
        return fail(b, MDL_OUT_OF_MEMORY, "out of memory");
    b->inferred[b->g.ntensors] = rank < 0;
    mdl__tensor *t = &b->g.tensors[b->g.ntensors];
    memset(t, 0, sizeof *t);
    t->name = own_str(b, name);
    t->dtype = dtype;
    t->rank = rank < 0 ? -1 : rank;
    for (int i = 0; i < rank; i++) t->dims[i] = dims[i];
    if (rank >= 0 && !mdl__shape_size(t->rank, t->dims, mdl_dtype_size(dtype), &t->count, &t->bytes))
        return fail(b, MDL_SHAPE, "tensor shape negative or too large");
    if (data) {
        t->data = own(b, data, t->bytes);
        if (!t->data) return fail(b, MDL_OUT_OF_MEMORY, "out of memory");
    }
    if (!t->name) return fail(b, MDL_OUT_OF_MEMORY, "out of memory");
    return b->g.ntensors++;
}

mdl_status mdl_builder_set_quant(mdl_builder *b, int t, int n, const float *scale,
                                 const int64_t *zero_point, int axis) {
    if (!b) return MDL_INVALID_ARGUMENT;
    if (t < 0 || t >= b->g.ntensors || n < 1 || !scale || !zero_point)
        return fail_st(b, MDL_INVALID_ARGUMENT, "set_quant: bad arguments");
    mdl__tensor *x = &b->g.tensors[t];
    x->scale = own(b, scale, (size_t)n * sizeof(float));
    x->zero_point = own(b, zero_point, (size_t)n * sizeof(int64_t));
    if (!x->scale || !x->zero_point) return fail_st(b, MDL_OUT_OF_MEMORY, "out of memory");
    x->nquant = n;
    x->quant_axis = axis;
    return MDL_OK;
}

int mdl_builder_node(mdl_builder *b, mdl_op op, const char *name, int nin, const int *inputs,
                     int nout, const int *outputs, const mdl_op_options *options) {
    if (!b) return -1;
    if ((unsigned)op >= MDL_OP_COUNT) return fail(b, MDL_INVALID_ARGUMENT, "unknown operator");
    if (nin < 1 || nin > MDL_MAX_NODE_IO || nout < 1 || nout > MDL_MAX_NODE_IO || !inputs || !outputs)
        return fail(b, MDL_INVALID_ARGUMENT, "bad input/output lists");
    if (!grow(b, (void **)&b->g.nodes, &b->cap_nodes, b->g.nnodes + 1, sizeof(mdl__node)))
        return fail(b, MDL_OUT_OF_MEMORY, "out of memory");
    mdl__node *n = &b->g.nodes[b->g.nnodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->name = own_str(b, name);
    n->nin = nin;
    n->nout = nout;
    n->in = own(b, NULL, (size_t)nin * sizeof(int32_t));
    n->out = own(b, NULL, (size_t)nout * sizeof(int32_t));
    if (!n->name || !n->in || !n->out) return fail(b, MDL_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < nin; i++) n->in[i] = inputs[i];
    for (int i = 0; i < nout; i++) n->out[i] = outputs[i];
    n->opt = options ? *options : mdl_op_options_default(op);
    return b->g.nnodes++;
}

mdl__graph *mdl__builder_graph(mdl_builder *b) { return &b->g; }

void mdl__builder_set_initial(mdl_builder *b, int32_t s, int64_t initial) {
    if (s >= 0 && s < b->g.nsyms && initial >= 0 && (!b->syms[s].max || initial <= b->syms[s].max))
        b->syms[s].initial = initial;
}

mdl_status mdl__builder_set_sparse(mdl_builder *b, int32_t t, bool transposed) {
    if (!MDL__SPARSE) return fail_st(b, MDL_UNSUPPORTED, "block-sparse weights: this build has MDL_SMALL_CODE");
    if (t < 0 || t >= b->g.ntensors || !b->g.tensors[t].data || b->g.tensors[t].rank < 2 ||
        (b->g.tensors[t].dtype != MDL_DTYPE_FLOAT32 && b->g.tensors[t].dtype != MDL_DTYPE_INT8) ||
        b->g.tensors[t].count < 1)
        return fail_st(b, MDL_INVALID_ARGUMENT, "set_sparse: not a non-empty float or int8 constant of rank >= 2");
    mdl__tensor *x = &b->g.tensors[t];
    const bool s8 = x->dtype == MDL_DTYPE_INT8;
    const size_t es = s8 ? 1 : sizeof(float);
    int64_t C = x->dims[x->rank - 1], R = x->count / C, N = transposed ? C : R, K = transposed ? R : C;
    if (N > INT32_MAX || K > INT32_MAX) return fail_st(b, MDL_UNSUPPORTED, "set_sparse: matrix too large");
    const unsigned char *w = x->data;
    unsigned char *wt = NULL;
    if (transposed) { /* W [N, K] = A^T */
        wt = mdl__alloc(b->alloc, x->bytes);
        if (!wt) return fail_st(b, MDL_OUT_OF_MEMORY, "out of memory");
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) memcpy(wt + (size_t)(c * R + r) * es, w + (size_t)(r * C + c) * es, es);
        w = wt;
    }
    int64_t nb = s8 ? mdl__bsr_count_s8(N, K, (const int8_t *)w, K) : mdl__bsr_count(N, K, (const float *)w, K);
    size_t bytes = s8 ? mdl__bsr_bytes_s8(N, nb) : mdl__bsr_bytes(N, nb);
    mdl__bsr *s = own(b, NULL, sizeof *s);
    void *mem = own(b, NULL, bytes + 32);
    if (s && mem) {
        void *at = (void *)mdl__align_up((size_t)mem, 32);
        if (s8) mdl__bsr_build_s8(N, K, (const int8_t *)w, K, at, s);
        else mdl__bsr_build(N, K, (const float *)w, K, at, s);
    }
    mdl__free(b->alloc, wt);
    if (!s || !mem) return fail_st(b, MDL_OUT_OF_MEMORY, "out of memory");
    x->sparse = s;
    x->sparse_transposed = transposed;
    return MDL_OK;
}

int mdl_builder_symbol(mdl_builder *b, const char *name, int64_t max, int64_t initial) {
    if (!b) return -1;
    if (!MDL__DYNAMIC) return fail(b, MDL_UNSUPPORTED, "dynamic dims: this build has MDL_NO_DYNAMIC");
    if (b->g.nsyms >= MDL__MAX_SYMBOLS) return fail(b, MDL_INVALID_ARGUMENT, "too many symbols");
    if (max < 0 || initial < 0 || (max && initial > max))
        return fail(b, MDL_INVALID_ARGUMENT, "symbol bound or initial value out of range");
    mdl__symbol *y = &b->syms[b->g.nsyms];
    y->name = own_str(b, name);
    if (!y->name) return fail(b, MDL_OUT_OF_MEMORY, "out of memory");
    y->max = max;
    y->initial = initial;
    b->g.syms = b->syms;
    return b->g.nsyms++;
}

mdl_status mdl_builder_set_dims(mdl_builder *b, int t, const int32_t *codes) {
    if (!b) return MDL_INVALID_ARGUMENT;
    if (t < 0 || t >= b->g.ntensors || !codes || b->g.tensors[t].rank < 0)
        return fail_st(b, MDL_INVALID_ARGUMENT, "set_dims: bad tensor");
    mdl__tensor *x = &b->g.tensors[t];
    bool dynamic = false;
    for (int32_t d = 0; d < x->rank; d++) {
        if (codes[d] < MDL_DIM_COMPUTED || codes[d] >= b->g.nsyms)
            return fail_st(b, MDL_INVALID_ARGUMENT, "set_dims: unknown symbol");
        dynamic = dynamic || codes[d] != MDL_DIM_FIXED;
    }
    if (!dynamic) {
        x->sym = NULL;
        return MDL_OK;
    }
    if (!MDL__DYNAMIC) return fail_st(b, MDL_UNSUPPORTED, "dynamic dims: this build has MDL_NO_DYNAMIC");
    int32_t *c = own(b, codes, sizeof(int32_t) * (size_t)x->rank);
    if (!c) return fail_st(b, MDL_OUT_OF_MEMORY, "out of memory");
    x->sym = c;
    return MDL_OK;
}

static mdl_status add_io(mdl_builder *b, int32_t **list, int32_t *n, int32_t *cap, int t) {
    if (t < 0 || t >= b->g.ntensors) return fail_st(b, MDL_INVALID_ARGUMENT, "no such tensor");
    if (!grow(b, (void **)list, cap, *n + 1, sizeof(int32_t)))
        return fail_st(b, MDL_OUT_OF_MEMORY, "out of memory");
    (*list)[(*n)++] = t;
    return MDL_OK;
}

mdl_status mdl_builder_add_input(mdl_builder *b, int t) {
    return b ? add_io(b, &b->g.inputs, &b->g.ninputs, &b->cap_inputs, t) : MDL_INVALID_ARGUMENT;
}

mdl_status mdl_builder_add_output(mdl_builder *b, int t) {
    return b ? add_io(b, &b->g.outputs, &b->g.noutputs, &b->cap_outputs, t) : MDL_INVALID_ARGUMENT;
}

mdl_status mdl_builder_set_metadata(mdl_builder *b, const char *key, const char *value) {
    if (!b) return MDL_INVALID_ARGUMENT;
    if (!key || !value) return fail_st(b, MDL_INVALID_ARGUMENT, "metadata key or value is NULL");
    const char *v = own_str(b, value);
    if (!v) return fail_st(b, MDL_OUT_OF_MEMORY, "out of memory");
    if (strcmp(key, "name") == 0) b->name = v;
    else if (strcmp(key, "version") == 0) b->version = v;
    else if (strcmp(key, "producer") == 0) b->producer = v;
    else if (strcmp(key, "description") == 0) b->description = v;
    else if (strcmp(key, "security_counter") == 0) {
        uint64_t n = 0;
        const char *p = v;
        for (; *p >= '0' && *p <= '9' && n <= (UINT64_MAX - 9) / 10; p++) n = 10 * n + (uint64_t)(*p - '0');
        if (p == v || *p)
            return fail_st(b, MDL_INVALID_ARGUMENT, "security_counter: expected a decimal integer");
        b->security_counter = n;
    } else {
        for (int32_t i = 0; i < b->nkv; i++)
            if (!strcmp(b->kv[2 * i], key)) { /* a key set again: the later value */
                b->kv[2 * i + 1] = v;
                return MDL_OK;
            }
        const char *k = own_str(b, key);
        if (!k || !grow(b, (void **)&b->kv, &b->cap_kv, 2 * b->nkv + 2, sizeof(char *)))
            return fail_st(b, MDL_OUT_OF_MEMORY, "out of memory");
        b->kv[2 * b->nkv] = k;
        b->kv[2 * b->nkv + 1] = v;
        b->nkv++;
    }
    return MDL_OK;
}

mdl_status mdl_builder_finish(mdl_builder *b, void **data, size_t *size, mdl_error *err) {
    if (!b || !data || !size) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_builder_finish: NULL argument");
    *data = NULL;
    *size = 0;
    if (b->error.status) {
        if (err) *err = b->error;
        return b->error.status;
    }
    _Static_assert(MDL_DIM_FIXED == MDL__DIM_FIXED && MDL_DIM_COMPUTED == MDL__DIM_COMPUTED,
                   "public and internal dim codes agree");
    b->g.symval = NULL; /* checked at the example sizes */
    mdl_status st = mdl__graph_check(&b->g, true, b->alloc, err);
    if (st) return st;
    if (b->g.nsyms) /* what inference gave may depend on the symbols: computed at load */
        for (int32_t t = 0; t < b->g.ntensors; t++) {
            mdl__tensor *x = &b->g.tensors[t];
            if (!b->inferred[t] || x->sym || x->rank <= 0) continue;
            int32_t *c = own(b, NULL, sizeof(int32_t) * (size_t)x->rank);
            if (!c) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
            for (int32_t d = 0; d < x->rank; d++) c[d] = MDL__DIM_COMPUTED;
            x->sym = c;
        }
    mdl__plan plan;
    if ((st = mdl__plan_compute(&b->g, b->alloc, &plan, err))) return st;
    mdl__meta meta = {b->name, b->version, b->producer ? b->producer : "mdeploy " MDL_VERSION_STRING,
                      b->description, b->nkv, b->kv, b->security_counter, b->selftest};
    fb_builder fb;
    fb_builder_init(&fb, b->alloc);
    const uint8_t *bytes;
    size_t n;
    st = mdl__format_write(&fb, &b->g, &plan, &meta, &bytes, &n, err);
    mdl__plan_free(&plan, b->alloc);
    if (!st) {
        *data = mdl__alloc(b->alloc, n);
        if (!*data) st = mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory (%zu-byte model)", n);
        else memcpy(*data, bytes, n);
    }
    fb_builder_release(&fb);
    if (st) return st;
    /* The loader is the definition of a valid file: prove this one loads. */
    mdl_load_options lo = {b->alloc, 0, NULL, 0, 0, 0, NULL, 0}; /* its own output: no limits */
    mdl_model *m;
    if ((st = mdl_model_load_buffer(*data, n, &lo, &m, err))) {
        mdl__free(b->alloc, *data);
        *data = NULL;
        return st;
    }
    mdl_model_free(m);
    *size = n;
    return MDL_OK;
}

void mdl_builder_release(mdl_builder *b, void *data) {
    if (b) mdl__free(b->alloc, data);
}
