/* Pattern fusions on the converter's runtime graph (see convert_host.h), run by the pass loop of
   mdl__cv_optimize before the bias / BatchNorm / activation folds:

   - Mul by a per-channel constant after a convolution or dense layer goes into its weights
     (W' = W * s, b' = b * s).  Keras 3 exports a BatchNormalization after a DepthwiseConv2D as
     Mul + Add; with this fold and the existing bias fold (Add) both disappear.

   - The Keras 3 negative-id wrap in front of an embedding lookup.  Keras's Embedding calls
     ops.take, which maps id < 0 to id + n before the gather; tf2onnx exports it as
         l = Less(Cast<float>(ids), 0);  s = Cast<int>(l) * (ids + n) + ids * Cast<int>(Not(l))
     and Gather(table, s).  The runtime GATHER already counts negative ids from the end (ONNX),
     so with n the table's size along the gathered axis the Gather reads ids directly.  The
     one difference: an id below -n is an out-of-range error of the fused Gather, where the
     unfused graph would wrap it twice; TensorFlow itself rejects such ids, so no model that
     works in Keras changes. */
#include "graph/convert_host.h"

#include <stdlib.h>
#include <string.h>

/* Live producer of tensor t if it is op, else NULL. */
static cv_node *made_by(cv_ctx *c, int32_t t, mdl_op op) {
    if (t < 0) return NULL;
    int32_t p = c->ts[t].producer;
    if (p < 0 || c->nodes[p].dead || c->nodes[p].op != op) return NULL;
    return &c->nodes[p];
}

/* ---- Mul by a per-channel constant into the producing layer ------------------------------ */

static bool fold_scale(cv_ctx *c) {
    bool changed = false;
    for (int32_t i = 0; i < c->nnodes; i++) {
        cv_node *n = &c->nodes[i];
        if (n->dead || n->op != MDL_OP_MUL || n->opt.binary.act.kind != MDL_ACT_NONE) continue;
        for (int side = 0; side < 2; side++) {
            int32_t xt = n->in[side], st = n->in[1 - side];
            const cv_tensor *s = &c->ts[st], *x = &c->ts[xt];
            int64_t C;
            if (!s->data || s->dtype != MDL_DTYPE_FLOAT32 || s->rank > x->rank) continue;
            cv_node *p = mdl__cv_weighted_producer(c, xt, &C);
            if (!p) continue;
            /* a scale per output channel (channels last) or one for all; the output keeps the
               layer's shape (no broadcast growing it) */
            bool ok = s->count == C || s->count == 1;
            for (int32_t d = 0; ok && d + 1 < s->rank; d++) ok = s->dims[d] == 1;
            const cv_tensor *y = &c->ts[n->out[0]];
            ok = ok && y->rank == x->rank && !memcmp(y->dims, x->dims, sizeof(int64_t) * (size_t)x->rank);
            if (!ok) continue;
            double *sc = malloc((size_t)C * sizeof(double));
            if (!sc) continue;
            const float *sd = s->data;
            for (int64_t k = 0; k < C; k++) sc[k] = sd[s->count == 1 ? 0 : k];
            ok = mdl__cv_rescale_layer(c, p, sc, NULL, C);
            free(sc);
            if (!ok) continue;
            mdl__cv_absorb(c, p, n);
            changed = true;
            break;
        }
    }
    return changed;
}

/* ---- the Keras negative-id wrap ------------------------------------------------------------ */

/* A constant whose every element is zero. */
static bool all_zero(const cv_tensor *t) {
    if (!t->data) return false;
    for (size_t i = 0; i < t->bytes; i++)
        if (((const uint8_t *)t->data)[i]) return false;
    return true;
}

/* One constant integer element. */
static bool const_int(const cv_tensor *t, int64_t *v) {
    if (!t->data || t->count != 1) return false;
    if (t->dtype == MDL_DTYPE_INT32) *v = *(const int32_t *)t->data;
    else if (t->dtype == MDL_DTYPE_INT64) *v = *(const int64_t *)t->data;
    else return false;
    return true;
}

/* l = LESS(ids or CAST(ids), 0): returns l's node and sets *ids. */
static cv_node *is_negative_test(cv_ctx *c, int32_t l, int32_t *ids) {
    cv_node *less = made_by(c, l, MDL_OP_LESS);
    if (!less || !all_zero(&c->ts[less->in[1]])) return NULL;
    int32_t x = less->in[0];
    cv_node *cast = made_by(c, x, MDL_OP_CAST);
    *ids = cast ? cast->in[0] : x;
    mdl_dtype dt = c->ts[*ids].dtype;
    if (dt != MDL_DTYPE_INT32 && dt != MDL_DTYPE_INT64) return NULL;
    /* a cast to float keeps the sign of every integer */
    if (cast && cast->opt.cast.to != MDL_DTYPE_FLOAT32 && cast->opt.cast.to != MDL_DTYPE_INT64)
        return NULL;
    return less;
}

/* m = MUL(CAST(cond), other) in either order with CAST to ids' type: cond and other. */
static bool masked(cv_ctx *c, int32_t m, int32_t *cond, int32_t *other) {
    cv_node *mul = made_by(c, m, MDL_OP_MUL);
    if (!mul || mul->opt.binary.act.kind != MDL_ACT_NONE) return false;
    for (int side = 0; side < 2; side++) {
        cv_node *cast = made_by(c, mul->in[side], MDL_OP_CAST);
        if (!cast || c->ts[cast->in[0]].dtype != MDL_DTYPE_BOOL) continue;
        *cond = cast->in[0];
        *other = mul->in[1 - side];
        return true;
    }
    return false;
}

/* s = the wrap of ids for a table of n rows: returns ids, or -1. */
static int32_t unwrap(cv_ctx *c, int32_t s, int64_t n) {
    cv_node *add = made_by(c, s, MDL_OP_ADD);
    if (!add || add->opt.binary.act.kind != MDL_ACT_NONE) return -1;
    int32_t cond[2], other[2];
    if (!masked(c, add->in[0], &cond[0], &other[0]) || !masked(c, add->in[1], &cond[1], &other[1]))
        return -1;
    for (int neg = 0; neg < 2; neg++) {
        /* term neg: Cast(l) * (ids + n); the other: Cast(Not(l)) * ids */
        int32_t ids = -1;
        cv_node *less = is_negative_test(c, cond[neg], &ids);
        cv_node *not = made_by(c, cond[1 - neg], MDL_OP_NOT);
        if (!less || !not || not->in[0] != cond[neg] || other[1 - neg] != ids) continue;
        cv_node *plus = made_by(c, other[neg], MDL_OP_ADD);
        if (!plus) continue;
        for (int side = 0; side < 2; side++) {
            int64_t v;
            if (plus->in[side] == ids && const_int(&c->ts[plus->in[1 - side]], &v) && v == n)
                return ids;
        }
    }
    return -1;
}

static bool fold_id_wrap(cv_ctx *c) {
    bool changed = false;
    for (int32_t i = 0; i < c->nnodes; i++) {
        cv_node *g = &c->nodes[i];
        if (g->dead || g->op != MDL_OP_GATHER) continue;
        const cv_tensor *data = &c->ts[g->in[0]];
        int32_t axis = g->opt.axis.axis < 0 ? g->opt.axis.axis + data->rank : g->opt.axis.axis;
        if (axis < 0 || axis >= data->rank) continue;
        int32_t ids = unwrap(c, g->in[1], data->dims[axis]);
        if (ids < 0) continue;
        /* same shape: the wrap is element by element (no broadcast) */
        const cv_tensor *a = &c->ts[ids], *b = &c->ts[g->in[1]];
        if (a->rank != b->rank || memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank)) continue;
        g->in[1] = ids;
        c->fused++; /* the wrap's nodes go with dead-code elimination */
        changed = true;
    }
    return changed;
}

bool mdl__cv_fuse(cv_ctx *c) {
    bool changed = false;
    mdl__cv_analyze(c);
    changed |= fold_scale(c);
    mdl__cv_analyze(c);
    changed |= fold_id_wrap(c);
    if (changed) mdl__cv_dead_code(c);
    return changed;
}
