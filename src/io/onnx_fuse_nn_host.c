/* Fusion of exported decompositions into single ONNX operators, on the ONNX graph before it is
   lowered (the pieces, e.g. Pow or Sqrt on run-time data, need not be lowerable on their own):
     - Erf-form GELU, as torch.onnx exports nn.GELU() below opset 20:
           Div(x, sqrt 2) | Mul(x, 1/sqrt 2) -> Erf -> Add(., 1) -> x * . * 0.5 (any association
           of the three factors)                                   -> Gelu(x)
     - LayerNorm decomposed (nn.LayerNorm below opset 17):
           m = ReduceMean(x, trailing axes); d = Sub(x, m); Pow(d, 2) | Mul(d, d);
           ReduceMean(same axes); Add(., eps); Sqrt; Div(d, .) [; Mul(., gamma) [; Add(., beta)]]
                                                                   -> LayerNormalization(x, gamma, beta)
   A pattern is taken only when every intermediate value is used inside it alone (not a graph
   output, no other consumer) and its constants are the expected ones up to float rounding; the
   fused node computes the ONNX definition of the whole (the constants' rounding aside).  What does
   not match is left as it is. */
#include "onnx_lower_host.h"

#include <math.h>
#include <string.h>

typedef Onnx__NodeProto node_t;

typedef struct fz {
    cv_ctx *c;
    const Onnx__GraphProto *g;
    node_t **nodes; /* working copy of g->node; removed entries NULL */
    size_t n;
} fz;

/* Node n is op (of the default domain) with at least one output: every node of the patterns
   below has one, and they read output[0] of the nodes they match (a hostile file's node may
   have none: fuzz_onnx). */
static bool is_op(const node_t *n, const char *op) {
    return n && n->n_output >= 1 && n->op_type && !strcmp(n->op_type, op) &&
           (!n->domain || !*n->domain || !strcmp(n->domain, "ai.onnx"));
}

static bool same(const char *a, const char *b) { return a && b && *a && !strcmp(a, b); }

static long producer(const fz *f, const char *name) {
    for (size_t i = 0; i < f->n; i++)
        if (f->nodes[i])
            for (size_t k = 0; k < f->nodes[i]->n_output; k++)
                if (same(f->nodes[i]->output[k], name)) return (long)i;
    return -1;
}

/* Uses of value name (node inputs and graph outputs); *first: the first consuming node. */
static int uses(const fz *f, const char *name, long *first) {
    int u = 0;
    *first = -1;
    for (size_t i = 0; i < f->n; i++) {
        if (!f->nodes[i]) continue;
        for (size_t k = 0; k < f->nodes[i]->n_input; k++)
            if (same(f->nodes[i]->input[k], name)) {
                if (*first < 0) *first = (long)i;
                u++;
            }
    }
    for (size_t i = 0; i < f->g->n_output; i++)
        if (same(f->g->output[i]->name, name)) u += 2; /* never fusable away */
    return u;
}

/* The node consuming the only use of node i's single output, -1 otherwise. */
static long sole_consumer(const fz *f, long i) {
    if (i < 0 || f->nodes[i]->n_output != 1) return -1;
    long first;
    return uses(f, f->nodes[i]->output[0], &first) == 1 ? first : -1;
}

/* Constant value name (initializer or Constant node output) as doubles. */
static bool const_vals(const fz *f, const char *name, double *out, int32_t max, int32_t *count) {
    int32_t v = mdl__cv_value_find(f->c, name);
    if (v >= 0 && mdl__cv_is_const(f->c, v)) {
        const cv_tensor *t = &f->c->ts[f->c->vals[v].t];
        if (t->count > max) return false;
        for (int64_t i = 0; i < t->count; i++) {
            switch (t->dtype) {
            case MDL_DTYPE_FLOAT32: out[i] = ((const float *)t->data)[i]; break;
            case MDL_DTYPE_INT64: out[i] = (double)((const int64_t *)t->data)[i]; break;
            case MDL_DTYPE_INT32: out[i] = ((const int32_t *)t->data)[i]; break;
            default: return false;
            }
        }
        *count = (int32_t)t->count;
        return true;
    }
    long p = producer(f, name);
    if (p < 0 || !is_op(f->nodes[p], "Constant")) return false;
    const Onnx__AttributeProto *a = mdl__cv_attr(f->nodes[p], "value_float");
    if (a && a->has_f) {
        out[0] = a->f;
        *count = 1;
        return true;
    }
    a = mdl__cv_attr(f->nodes[p], "value");
    const Onnx__TensorProto *tp = a ? a->t : NULL;
    if (!tp) return false;
    if (tp->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        size_t n = tp->n_float_data ? tp->n_float_data : tp->raw_data.len / 4;
        if (n > (size_t)max || (!tp->n_float_data && tp->raw_data.len != n * 4)) return false;
        for (size_t i = 0; i < n; i++) {
            float x;
            if (tp->n_float_data) x = tp->float_data[i];
            else memcpy(&x, tp->raw_data.data + 4 * i, 4);
            out[i] = x;
        }
        *count = (int32_t)n;
        return true;
    }
    if (tp->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
        size_t n = tp->n_int64_data ? tp->n_int64_data : tp->raw_data.len / 8;
        if (n > (size_t)max || (!tp->n_int64_data && tp->raw_data.len != n * 8)) return false;
        for (size_t i = 0; i < n; i++) {
            int64_t x;
            if (tp->n_int64_data) x = tp->int64_data[i];
            else memcpy(&x, tp->raw_data.data + 8 * i, 8);
            out[i] = (double)x;
        }
        *count = (int32_t)n;
        return true;
    }
    return false;
}

/* Input k of node n is a constant scalar within rel of want. */
static bool is_scalar(const fz *f, const node_t *n, size_t k, double want, double rel) {
    double v;
    int32_t cnt;
    if (k >= n->n_input || !const_vals(f, n->input[k], &v, 1, &cnt) || cnt != 1) return false;
    return fabs(v - want) <= rel * fabs(want);
}

/* Binary node n has `name` as one input and a scalar ~want as the other. */
static bool binary_with(const fz *f, const node_t *n, const char *name, double want, double rel) {
    if (!n || n->n_input != 2) return false;
    return (same(n->input[0], name) && is_scalar(f, n, 1, want, rel)) ||
           (same(n->input[1], name) && is_scalar(f, n, 0, want, rel));
}

/* The other input of binary node n than name (NULL if name is not an input). */
static const char *other_input(const node_t *n, const char *name) {
    if (!n || n->n_input != 2) return NULL;
    if (same(n->input[0], name)) return n->input[1];
    if (same(n->input[1], name)) return n->input[0];
    return NULL;
}

static Onnx__AttributeProto *attr_f(cv_ctx *c, const char *name, float v) {
    Onnx__AttributeProto *a = mdl__cv_alloc(c, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = v;
    return a;
}

static Onnx__AttributeProto *attr_i(cv_ctx *c, const char *name, int64_t v) {
    Onnx__AttributeProto *a = mdl__cv_alloc(c, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
    return a;
}

/* Replaces nodes rm[0..nrm) by one node op(ins) -> output of rm[nrm - 1], placed where that last
   node was. */
static mdl_status replace(fz *f, const long *rm, int nrm, const char *op, const char *name,
                          const char *const *ins, int nin, Onnx__AttributeProto **attrs, int nattr) {
    cv_ctx *c = f->c;
    node_t *n = mdl__cv_alloc(c, sizeof *n);
    char **in = mdl__cv_alloc(c, sizeof(char *) * (size_t)nin);
    char **out = mdl__cv_alloc(c, sizeof(char *));
    Onnx__AttributeProto **at = mdl__cv_alloc(c, sizeof(*at) * (size_t)(nattr ? nattr : 1));
    if (!n || !in || !out || !at) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory converting the model");
    for (int i = 0; i < nattr; i++)
        if (!(at[i] = attrs[i])) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory converting the model");
    onnx__node_proto__init(n);
    n->op_type = (char *)op;
    n->name = (char *)name;
    for (int i = 0; i < nin; i++) in[i] = (char *)(ins[i] ? ins[i] : "");
    n->input = in;
    n->n_input = (size_t)nin;
    long last = rm[nrm - 1];
    out[0] = f->nodes[last]->output[0];
    n->output = out;
    n->n_output = 1;
    n->attribute = at;
    n->n_attribute = (size_t)nattr;
    for (int i = 0; i < nrm; i++) f->nodes[rm[i]] = NULL;
    f->nodes[last] = n;
    c->fused += nrm - 1;
    return MDL_OK;
}

/* ---- GELU ---------------------------------------------------------------------------------- */

static mdl_status fuse_gelu(fz *f, long e, bool *hit) {
    const double SQRT2 = 1.4142135623730951, REL = 1e-6;
    node_t *E = f->nodes[e];
    *hit = false;
    if (E->n_input != 1 || E->n_output != 1) return MDL_OK;
    long u = producer(f, E->input[0]);
    if (u < 0 || sole_consumer(f, u) != e) return MDL_OK;
    node_t *U = f->nodes[u];
    const char *x = NULL;
    if (is_op(U, "Div") && U->n_input == 2 && is_scalar(f, U, 1, SQRT2, REL)) x = U->input[0];
    else if (is_op(U, "Mul") && binary_with(f, U, U->input[0], 1.0 / SQRT2, REL) &&
             is_scalar(f, U, 1, 1.0 / SQRT2, REL))
        x = U->input[0];
    else if (is_op(U, "Mul") && U->n_input == 2 && is_scalar(f, U, 0, 1.0 / SQRT2, REL))
        x = U->input[1];
    if (!x || !*x) return MDL_OK;
    long a = sole_consumer(f, e);
    if (a < 0 || !is_op(f->nodes[a], "Add") || !binary_with(f, f->nodes[a], E->output[0], 1.0, 0))
        return MDL_OK;
    const char *p = f->nodes[a]->output[0];
    long m1 = sole_consumer(f, a);
    if (m1 < 0 || !is_op(f->nodes[m1], "Mul")) return MDL_OK;
    const char *o1 = other_input(f->nodes[m1], p);
    if (!o1) return MDL_OK;
    long rm[6] = {u, e, a, m1};
    int nrm = 4;
    if (same(o1, x) || binary_with(f, f->nodes[m1], p, 0.5, 0)) {
        /* (x * p) * 0.5  or  x * (p * 0.5) */
        long m2 = sole_consumer(f, m1);
        if (m2 < 0 || !is_op(f->nodes[m2], "Mul")) return MDL_OK;
        const char *o2 = other_input(f->nodes[m2], f->nodes[m1]->output[0]);
        bool ok = same(o1, x) ? binary_with(f, f->nodes[m2], f->nodes[m1]->output[0], 0.5, 0)
                              : same(o2, x);
        if (!ok) return MDL_OK;
        rm[nrm++] = m2;
    } else {
        /* (x * 0.5) * p: o1 is made by Mul(x, 0.5) used only here */
        long h = producer(f, o1);
        if (h < 0 || !is_op(f->nodes[h], "Mul") || sole_consumer(f, h) != m1 ||
            !binary_with(f, f->nodes[h], x, 0.5, 0))
            return MDL_OK;
        rm[0] = h;
        rm[1] = u;
        rm[2] = e;
        rm[3] = a;
        rm[4] = m1;
        nrm = 5;
    }
    *hit = true;
    const char *ins[1] = {x};
    return replace(f, rm, nrm, "Gelu", mdl__cv_fmt(f->c, "%s/gelu", E->name ? E->name : "Erf"), ins,
                   1, NULL, 0);
}

/* ---- LayerNorm ----------------------------------------------------------------------------- */

/* Trailing reduction axes of ReduceMean node r as k (axes {-k..-1}), keepdims 1; 0 otherwise. */
static int trailing_axes(const fz *f, const node_t *r) {
    if (r->n_output != 1 || mdl__cv_attr_int(r, "keepdims", 1) != 1) return 0;
    double ax[MDL_MAX_RANK];
    int32_t n = 0, ni;
    const int64_t *ai = mdl__cv_attr_ints(r, "axes", &ni);
    if (ai && ni > 0 && ni <= MDL_MAX_RANK) {
        for (int32_t i = 0; i < ni; i++) ax[i] = (double)ai[i];
        n = ni;
    } else if (r->n_input > 1 && *r->input[1]) {
        if (!const_vals(f, r->input[1], ax, MDL_MAX_RANK, &n)) return 0;
    }
    if (n < 1) return 0;
    uint32_t seen = 0;
    for (int32_t i = 0; i < n; i++) {
        /* positive axes: the rank is not known here; range first (a cast of an out-of-range
           double is undefined), then an integral value */
        if (!(ax[i] < 0 && ax[i] >= -n)) return 0;
        int64_t k = (int64_t)ax[i];
        if ((double)k != ax[i]) return 0;
        seen |= 1u << (-k - 1);
    }
    return seen == (1u << n) - 1 ? n : 0;
}

static mdl_status fuse_layer_norm(fz *f, long r1, bool *hit) {
    node_t *R1 = f->nodes[r1];
    *hit = false;
    int k = trailing_axes(f, R1);
    if (!k || R1->n_input < 1) return MDL_OK;
    const char *x = R1->input[0];
    long s = sole_consumer(f, r1);
    if (s < 0 || !is_op(f->nodes[s], "Sub") || f->nodes[s]->n_input != 2 ||
        !same(f->nodes[s]->input[0], x) || !same(f->nodes[s]->input[1], R1->output[0]))
        return MDL_OK;
    const char *d = f->nodes[s]->output[0];
    long first;
    if (uses(f, d, &first) != 3 && uses(f, d, &first) != 2) return MDL_OK;
    /* the square: Pow(d, 2) or Mul(d, d); the division: Div(d, .) */
    long pw = -1, dv = -1;
    int nuse = 0;
    for (size_t i = 0; i < f->n; i++) {
        node_t *n = f->nodes[i];
        if (!n) continue;
        bool reads = false;
        for (size_t j = 0; j < n->n_input; j++) reads |= same(n->input[j], d);
        if (!reads) continue;
        nuse++;
        if (is_op(n, "Pow") && n->n_input == 2 && same(n->input[0], d) && is_scalar(f, n, 1, 2.0, 0)) pw = (long)i;
        else if (is_op(n, "Mul") && n->n_input == 2 && same(n->input[0], d) && same(n->input[1], d)) pw = (long)i;
        else if (is_op(n, "Div") && n->n_input == 2 && same(n->input[0], d) && !same(n->input[1], d)) dv = (long)i;
    }
    if (nuse != 2 || pw < 0 || dv < 0 || uses(f, d, &first) != (is_op(f->nodes[pw], "Mul") ? 3 : 2))
        return MDL_OK;
    long r2 = sole_consumer(f, pw);
    if (r2 < 0 || !is_op(f->nodes[r2], "ReduceMean") || trailing_axes(f, f->nodes[r2]) != k) return MDL_OK;
    long ad = sole_consumer(f, r2);
    if (ad < 0 || !is_op(f->nodes[ad], "Add")) return MDL_OK;
    const char *eps_name = other_input(f->nodes[ad], f->nodes[r2]->output[0]);
    double eps;
    int32_t cnt;
    if (!eps_name || !const_vals(f, eps_name, &eps, 1, &cnt) || cnt != 1 || !(eps >= 0)) return MDL_OK;
    long sq = sole_consumer(f, ad);
    if (sq < 0 || !is_op(f->nodes[sq], "Sqrt")) return MDL_OK;
    if (sole_consumer(f, sq) != dv || !same(f->nodes[dv]->input[1], f->nodes[sq]->output[0])) return MDL_OK;
    long rm[10] = {r1, s, pw, r2, ad, sq, dv};
    int nrm = 7;
    const char *gamma = NULL, *beta = NULL;
    long mu = sole_consumer(f, dv);
    if (mu >= 0 && is_op(f->nodes[mu], "Mul")) {
        const char *g = other_input(f->nodes[mu], f->nodes[dv]->output[0]);
        int32_t gv = g ? mdl__cv_value_find(f->c, g) : -1;
        if (gv >= 0 && mdl__cv_is_const(f->c, gv)) {
            gamma = g;
            rm[nrm++] = mu;
            long ab = sole_consumer(f, mu);
            if (ab >= 0 && is_op(f->nodes[ab], "Add")) {
                const char *b = other_input(f->nodes[ab], f->nodes[mu]->output[0]);
                int32_t bv = b ? mdl__cv_value_find(f->c, b) : -1;
                if (bv >= 0 && mdl__cv_is_const(f->c, bv)) {
                    beta = b;
                    rm[nrm++] = ab;
                }
            }
        }
    }
    *hit = true;
    const char *ins[3] = {x, gamma, beta};
    Onnx__AttributeProto *at[2] = {attr_i(f->c, "axis", -k), attr_f(f->c, "epsilon", (float)eps)};
    return replace(f, rm, nrm, "LayerNormalization",
                   mdl__cv_fmt(f->c, "%s/layer_norm", R1->name ? R1->name : "ReduceMean"), ins,
                   beta ? 3 : 2, at, 2);
}

mdl_status mdl__cv_fuse_nn(cv_ctx *c, const Onnx__GraphProto **gp) {
    const Onnx__GraphProto *g = *gp;
    bool any = false;
    for (size_t i = 0; i < g->n_node && !any; i++)
        any = is_op(g->node[i], "Erf") || is_op(g->node[i], "ReduceMean");
    if (!any) return MDL_OK;
    fz f = {c, g, mdl__cv_alloc(c, sizeof(node_t *) * g->n_node), g->n_node};
    Onnx__GraphProto *g2 = mdl__cv_alloc(c, sizeof *g2);
    if (!f.nodes || !g2) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory converting the model");
    memcpy(f.nodes, g->node, sizeof(node_t *) * g->n_node);
    int hits = 0;
    for (size_t i = 0; i < f.n; i++) {
        bool hit = false;
        mdl_status st = MDL_OK;
        if (is_op(f.nodes[i], "Erf")) st = fuse_gelu(&f, (long)i, &hit);
        else if (is_op(f.nodes[i], "ReduceMean")) st = fuse_layer_norm(&f, (long)i, &hit);
        if (st) return st;
        hits += hit;
    }
    if (!hits) return MDL_OK;
    size_t k = 0;
    for (size_t i = 0; i < f.n; i++)
        if (f.nodes[i]) f.nodes[k++] = f.nodes[i];
    *g2 = *g;
    g2->node = f.nodes;
    g2->n_node = k;
    *gp = g2;
    return MDL_OK;
}
