/* Comparisons (Equal, Less, Greater, LessOrEqual, GreaterOrEqual: float32, int32, int64 or bool
   operands of one type -> bool), logic on bool (Not, And, Or, Xor) and Where (bool cond, X, Y of
   one type, all three broadcast), with ONNX (NumPy) semantics.  bool is one byte, 0 or 1; any
   non-zero byte of an input reads as true.  Float comparisons follow IEEE: NaN compares unequal
   and unordered (every comparison with NaN is false).  The two-operand kernels walk the
   broadcast with mdl__broadcast_rows (binary.c). */
#include "ops.h"

#include <string.h>

static bool cmp_type(mdl_dtype t) {
    return t == MDL_DTYPE_FLOAT32 || t == MDL_DTYPE_INT32 || t == MDL_DTYPE_INT64 ||
           t == MDL_DTYPE_BOOL;
}

static bool is_logic(mdl_op op) { return op == MDL_OP_AND || op == MDL_OP_OR || op == MDL_OP_XOR; }

static mdl_status pair_prepare(mdl__kctx *c) {
    mdl_status st = mdl__broadcast_prepare(c);
    if (st) return st;
    const mdl__tensor *a = c->in[0], *b = c->in[1];
    bool ok = is_logic(c->op) ? a->dtype == MDL_DTYPE_BOOL : cmp_type(a->dtype);
    if (!ok || b->dtype != a->dtype)
        return mdl__fail(c, MDL_DTYPE, "no kernel for %s and %s inputs", mdl_dtype_name(a->dtype),
                         mdl_dtype_name(b->dtype));
    c->out_shape[0].dtype = MDL_DTYPE_BOOL;
    return MDL_OK;
}

typedef struct pair_args {
    mdl_op op;
    mdl_dtype dt;
    const void *a, *b;
    uint8_t *o;
} pair_args;

#define CMP_ROW(T)                                                                                 \
    do {                                                                                           \
        const T *a_ = (const T *)g->a + ao, *b_ = (const T *)g->b + bo;                            \
        switch (g->op) {                                                                           \
        case MDL_OP_EQUAL: for (int64_t i = 0; i < n; i++) o[i] = a_[i * sa] == b_[i * sb]; break; \
        case MDL_OP_LESS: for (int64_t i = 0; i < n; i++) o[i] = a_[i * sa] < b_[i * sb]; break;   \
        case MDL_OP_GREATER: for (int64_t i = 0; i < n; i++) o[i] = a_[i * sa] > b_[i * sb]; break; \
        case MDL_OP_LESS_OR_EQUAL:                                                                 \
            for (int64_t i = 0; i < n; i++) o[i] = a_[i * sa] <= b_[i * sb];                       \
            break;                                                                                 \
        default: for (int64_t i = 0; i < n; i++) o[i] = a_[i * sa] >= b_[i * sb]; break;           \
        }                                                                                          \
    } while (0)

static void pair_row(void *arg, int kind, int64_t ao, int64_t bo, int64_t oo, int64_t n) {
    const pair_args *g = arg;
    uint8_t *o = g->o + oo;
    int64_t sa = kind & MDL__BC_A ? 1 : 0, sb = kind & MDL__BC_B ? 1 : 0;
    if (g->dt == MDL_DTYPE_BOOL) {
        const uint8_t *a = (const uint8_t *)g->a + ao, *b = (const uint8_t *)g->b + bo;
        for (int64_t i = 0; i < n; i++) {
            bool x = a[i * sa] != 0, y = b[i * sb] != 0;
            switch (g->op) {
            case MDL_OP_AND: o[i] = x && y; break;
            case MDL_OP_OR: o[i] = x || y; break;
            case MDL_OP_XOR: o[i] = x != y; break;
            case MDL_OP_EQUAL: o[i] = x == y; break;
            case MDL_OP_LESS: o[i] = x < y; break;
            case MDL_OP_GREATER: o[i] = x > y; break;
            case MDL_OP_LESS_OR_EQUAL: o[i] = x <= y; break;
            default: o[i] = x >= y; break;
            }
        }
        return;
    }
    switch (g->dt) {
    case MDL_DTYPE_FLOAT32: CMP_ROW(float); break;
    case MDL_DTYPE_INT32: CMP_ROW(int32_t); break;
    default: CMP_ROW(int64_t); break;
    }
}

static mdl_status pair_run(mdl__kctx *c) {
    pair_args g = {c->op, c->in[0]->dtype, c->in_data[0], c->in_data[1], c->out_data[0]};
    mdl__broadcast_rows(c->in[0], c->in[1], pair_row, &g);
    return MDL_OK;
}

/* ---- Not ----------------------------------------------------------------------------------- */

static mdl_status not_prepare(mdl__kctx *c) {
    const mdl__tensor *x = c->nin > 0 ? c->in[0] : NULL;
    if (c->nin != 1 || c->nout != 1 || !x)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects one input and one output");
    if (x->dtype != MDL_DTYPE_BOOL)
        return mdl__fail(c, MDL_DTYPE, "input is %s, not bool", mdl_dtype_name(x->dtype));
    mdl__shape_of(&c->out_shape[0], x);
    return MDL_OK;
}

static mdl_status not_run(mdl__kctx *c) {
    const uint8_t *x = c->in_data[0];
    uint8_t *y = c->out_data[0];
    for (int64_t i = 0; i < c->in[0]->count; i++) y[i] = x[i] == 0;
    return MDL_OK;
}

/* ---- Where --------------------------------------------------------------------------------- */

/* Broadcast shape of cond, X, Y; -1, or the first input that does not broadcast. */
static int where_shape(const mdl__kctx *c, mdl__shape *o) {
    int32_t r = 0;
    for (int k = 0; k < 3; k++) r = c->in[k]->rank > r ? c->in[k]->rank : r;
    o->dtype = c->in[1]->dtype;
    o->rank = r;
    for (int32_t d = 0; d < r; d++) {
        o->dims[d] = 1;
        for (int k = 0; k < 3; k++) {
            int32_t i = d - (r - c->in[k]->rank);
            int64_t v = i >= 0 ? c->in[k]->dims[i] : 1;
            if (v != 1 && o->dims[d] != 1 && v != o->dims[d]) return k;
            if (v != 1) o->dims[d] = v;
        }
    }
    return -1;
}

static mdl_status where_prepare(mdl__kctx *c) {
    if (c->nin != 3 || c->nout != 1)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects inputs cond, X, Y and one output");
    for (int k = 0; k < 3; k++)
        if (!c->in[k]) return mdl__fail(c, MDL_INVALID_ARGUMENT, "input %d is missing", k);
    if (c->in[0]->dtype != MDL_DTYPE_BOOL)
        return mdl__fail(c, MDL_DTYPE, "cond is %s, not bool", mdl_dtype_name(c->in[0]->dtype));
    if (c->in[1]->dtype != c->in[2]->dtype)
        return mdl__fail(c, MDL_DTYPE, "X is %s, Y is %s", mdl_dtype_name(c->in[1]->dtype),
                         mdl_dtype_name(c->in[2]->dtype));
    int k = where_shape(c, &c->out_shape[0]);
    if (k >= 0) {
        char s1[64];
        return mdl__fail(c, MDL_SHAPE, "input %d %s does not broadcast with the others", k,
                         mdl__dims_str(s1, sizeof s1, c->in[k]->rank, c->in[k]->dims));
    }
    return MDL_OK;
}

static mdl_status where_run(mdl__kctx *c) {
    mdl__shape os;
    where_shape(c, &os); /* validated by prepare */
    int32_t r = os.rank;
    int64_t count = mdl__shape_count(&os);
    if (count == 0) return MDL_OK;
    /* element strides of each operand along the output dims (0 where broadcast) */
    int64_t st[3][MDL_MAX_RANK], off[3] = {0, 0, 0}, idx[MDL_MAX_RANK] = {0};
    for (int k = 0; k < 3; k++) {
        const mdl__tensor *t = c->in[k];
        int64_t s = 1;
        for (int32_t d = r - 1; d >= 0; d--) {
            int32_t i = d - (r - t->rank);
            int64_t v = i >= 0 ? t->dims[i] : 1;
            st[k][d] = v == 1 ? 0 : s;
            s *= v;
        }
    }
    size_t es = mdl_dtype_size(os.dtype);
    const uint8_t *cond = c->in_data[0];
    const char *x = c->in_data[1], *y = c->in_data[2];
    char *o = c->out_data[0];
    int64_t inner = r > 0 ? os.dims[r - 1] : 1;
    int64_t s0 = r > 0 ? st[0][r - 1] : 0, s1 = r > 0 ? st[1][r - 1] : 0,
            s2 = r > 0 ? st[2][r - 1] : 0;
    for (int64_t done = 0; done < count; done += inner) {
        for (int64_t i = 0; i < inner; i++) {
            const char *src = cond[off[0] + i * s0] ? x + (size_t)(off[1] + i * s1) * es
                                                    : y + (size_t)(off[2] + i * s2) * es;
            memcpy(o + (size_t)(done + i) * es, src, es);
        }
        for (int32_t d = r - 2; d >= 0; d--) {
            for (int k = 0; k < 3; k++) off[k] += st[k][d];
            if (++idx[d] < os.dims[d]) break;
            for (int k = 0; k < 3; k++) off[k] -= st[k][d] * os.dims[d];
            idx[d] = 0;
        }
    }
    return MDL_OK;
}

const mdl__kernel mdl__equal = {.prepare = pair_prepare, .run = pair_run};
const mdl__kernel mdl__less = {.prepare = pair_prepare, .run = pair_run};
const mdl__kernel mdl__greater = {.prepare = pair_prepare, .run = pair_run};
const mdl__kernel mdl__less_or_equal = {.prepare = pair_prepare, .run = pair_run};
const mdl__kernel mdl__greater_or_equal = {.prepare = pair_prepare, .run = pair_run};
const mdl__kernel mdl__logic = {.prepare = pair_prepare, .run = pair_run};
const mdl__kernel mdl__not = {.prepare = not_prepare, .run = not_run};
const mdl__kernel mdl__where = {.prepare = where_prepare, .run = where_run};
