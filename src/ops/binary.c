/* Float32 Add, Sub, Mul, Div with NumPy broadcasting and a fused clamp activation.

   The two input shapes are reduced to a short "plan": size-1 output dims are dropped and
   neighbouring dims in which both operands behave alike (both full, or the same one broadcast)
   are merged.  Whatever the ranks, the common cases then become one of
     - one dim:   same-shape loop, or vector op scalar;
     - two dims:  a row repeated over leading dims (bias [C] against [N,H,W,C]) or a column
                  (one value per row);
   and anything else runs an odometer over the outer dims around one contiguous inner loop.
   Division follows IEEE (x/0 = +-inf or NaN), with no check.

   The same file has the int32/int64 forms of the four (wrapping two's complement arithmetic;
   integer division truncates toward zero and fails the run on a zero divisor or INT_MIN / -1,
   which ONNX leaves undefined), float32 Pow, and mdl__broadcast_rows, the plan as a row
   iterator for the other element-wise kernels (comparisons, logic). */
#include "ops.h"

#include <math.h>
#include <string.h>

/* See activation.c: fixed blocks through a local buffer let gcc -O2 vectorize and make the
   loads-before-stores order explicit, so out may alias a or b (in-place execution). */
#define BLK 8

/* A short row broadcast (e.g. [3] against [1,224,224,3]) is tiled into scratch up to this many
   elements, so the inner loop is long instead of three elements per call. */
#define TILE_TARGET 64

enum { A_FULL = 1, B_FULL = 2, BOTH_FULL = 3 };

typedef struct bc_plan {
    int nd;                       /* merged dims; 0 = one element */
    int64_t n[MDL_MAX_RANK];      /* their sizes (all > 1, or 0 for an empty output) */
    int cls[MDL_MAX_RANK];        /* A_FULL | B_FULL */
    int64_t as[MDL_MAX_RANK], bs[MDL_MAX_RANK]; /* element strides, 0 where broadcast */
} bc_plan;

/* Output shape of broadcasting a against b; false if incompatible. */
static bool broadcast_shape(const mdl__tensor *a, const mdl__tensor *b, mdl__shape *o) {
    int32_t r = a->rank > b->rank ? a->rank : b->rank;
    o->dtype = a->dtype;
    o->rank = r;
    for (int32_t d = 0; d < r; d++) {
        int32_t ia = d - (r - a->rank), ib = d - (r - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1) return false;
        o->dims[d] = da == 1 ? db : da;
    }
    return true;
}

static void make_plan(const mdl__tensor *a, const mdl__tensor *b, const mdl__shape *o,
                      bc_plan *p) {
    int32_t r = o->rank;
    p->nd = 0;
    for (int32_t d = 0; d < r; d++) {
        int32_t ia = d - (r - a->rank), ib = d - (r - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1, od = o->dims[d];
        if (od == 1) continue; /* contributes nothing to any index */
        int cls = (da == od ? A_FULL : 0) | (db == od ? B_FULL : 0);
        if (p->nd > 0 && p->cls[p->nd - 1] == cls) {
            p->n[p->nd - 1] *= od;
        } else {
            p->n[p->nd] = od;
            p->cls[p->nd] = cls;
            p->nd++;
        }
    }
    int64_t sa = 1, sb = 1;
    for (int i = p->nd - 1; i >= 0; i--) {
        p->as[i] = (p->cls[i] & A_FULL) ? sa : 0;
        p->bs[i] = (p->cls[i] & B_FULL) ? sb : 0;
        if (p->cls[i] & A_FULL) sa *= p->n[i];
        if (p->cls[i] & B_FULL) sb *= p->n[i];
    }
}

/* Elements of the tiled row for a short row broadcast, or 0 when the plan is not one.  The
   tile holds k copies of the broadcast row (k >= 2). */
static int64_t tile_len(const bc_plan *p) {
    if (p->nd != 2 || p->cls[1] != BOTH_FULL || p->cls[0] == BOTH_FULL) return 0;
    int64_t c = p->n[1];
    if (c >= TILE_TARGET / 2 || p->n[0] < 2) return 0;
    int64_t k = TILE_TARGET / c;
    if (k > p->n[0]) k = p->n[0];
    return k * c;
}

static mdl_status binary_prepare(mdl__kctx *c) {
    mdl_status st = mdl__broadcast_prepare(c);
    if (st) return st;
    const mdl__tensor *a = c->in[0], *b = c->in[1];
    if (a->dtype != MDL_DTYPE_FLOAT32 || b->dtype != MDL_DTYPE_FLOAT32)
        return mdl__fail(c, MDL_DTYPE, "float32 kernel got %s and %s inputs",
                         mdl_dtype_name(a->dtype), mdl_dtype_name(b->dtype));
    const mdl_fused_act *act = &c->opt->binary.act;
    if ((unsigned)act->kind >= MDL_ACT_COUNT)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "unknown fused activation %d", (int)act->kind);
    if (act->kind == MDL_ACT_CLIP && !(act->clip_min <= act->clip_max))
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "fused clip range [%g, %g] is empty or NaN",
                         (double)act->clip_min, (double)act->clip_max);
    bc_plan p;
    make_plan(a, b, &c->out_shape[0], &p);
    c->scratch_bytes = (size_t)tile_len(&p) * sizeof(float);
    return MDL_OK;
}

/* Inner loops.  VV: both operands contiguous; VS: b is one value; SV: a is one value. */
#define ROW_LOOP(EXPR)                                                                             \
    do {                                                                                           \
        int64_t i_ = 0;                                                                            \
        for (; i_ + BLK <= n; i_ += BLK) {                                                         \
            float t_[BLK];                                                                         \
            for (int k_ = 0; k_ < BLK; k_++) {                                                     \
                int64_t j = i_ + k_;                                                               \
                t_[k_] = (EXPR);                                                                   \
            }                                                                                      \
            for (int k_ = 0; k_ < BLK; k_++) o[i_ + k_] = t_[k_];                                  \
        }                                                                                          \
        for (; i_ < n; i_++) {                                                                     \
            int64_t j = i_;                                                                        \
            o[j] = (EXPR);                                                                         \
        }                                                                                          \
    } while (0)

#define ROW_KINDS(OP)                                                                              \
    do {                                                                                           \
        if (kind == BOTH_FULL) {                                                                   \
            ROW_LOOP(a[j] OP b[j]);                                                                \
        } else if (kind == A_FULL) {                                                               \
            float s = b[0];                                                                        \
            ROW_LOOP(a[j] OP s);                                                                   \
        } else {                                                                                   \
            float s = a[0];                                                                        \
            ROW_LOOP(s OP b[j]);                                                                   \
        }                                                                                          \
    } while (0)

static void clamp_row(float *o, int64_t n, float lo, float hi) {
    int64_t i = 0;
    for (; i + BLK <= n; i += BLK) {
        float t[BLK];
        for (int k = 0; k < BLK; k++) t[k] = mdl__clampf(o[i + k], lo, hi);
        for (int k = 0; k < BLK; k++) o[i + k] = t[k];
    }
    for (; i < n; i++) o[i] = mdl__clampf(o[i], lo, hi);
}

typedef struct bin_fn {
    mdl_op op;
    bool act; /* clamp to [lo, hi] */
    float lo, hi;
} bin_fn;

/* o[0..n) = a (op) b for one inner row, then the fused clamp while the row is in cache. */
static void row(const bin_fn *f, int kind, const float *a, const float *b, float *o, int64_t n) {
    switch (f->op) {
    case MDL_OP_ADD: ROW_KINDS(+); break;
    case MDL_OP_SUB: ROW_KINDS(-); break;
    case MDL_OP_MUL: ROW_KINDS(*); break;
    default: ROW_KINDS(/); break;
    }
    if (f->act) clamp_row(o, n, f->lo, f->hi);
}

/* Repeating row broadcast with short rows: tile the repeated operand in scratch and treat groups
   of rows as one long same-shape row. */
static void run_tiled(const bin_fn *f, const bc_plan *p, const float *a, const float *b, float *o,
                      float *tile, int64_t tl) {
    bool a_rep = p->cls[0] == B_FULL; /* a is the row repeated over dim 0 */
    const float *rep = a_rep ? a : b, *full = a_rep ? b : a;
    int64_t cols = p->n[1], rows = p->n[0], k = tl / cols;
    for (int64_t r = 0; r < k; r++) memcpy(tile + r * cols, rep, (size_t)cols * sizeof(float));
    int64_t r = 0;
    for (; r + k <= rows; r += k) {
        const float *fp = full + r * cols;
        if (a_rep) row(f, BOTH_FULL, tile, fp, o + r * cols, tl);
        else row(f, BOTH_FULL, fp, tile, o + r * cols, tl);
    }
    if (r < rows) {
        int64_t rest = (rows - r) * cols;
        const float *fp = full + r * cols;
        if (a_rep) row(f, BOTH_FULL, tile, fp, o + r * cols, rest);
        else row(f, BOTH_FULL, fp, tile, o + r * cols, rest);
    }
}

static mdl_status binary_run(mdl__kctx *c) {
    const mdl__tensor *at = c->in[0], *bt = c->in[1];
    const float *a = c->in_data[0], *b = c->in_data[1];
    float *o = c->out_data[0];
    mdl__shape os;
    broadcast_shape(at, bt, &os);
    if (mdl__shape_count(&os) == 0) return MDL_OK;
    bc_plan p;
    make_plan(at, bt, &os, &p);
    bin_fn f = {c->op, c->opt->binary.act.kind != MDL_ACT_NONE, 0, 0};
    mdl__act_bounds(&c->opt->binary.act, &f.lo, &f.hi);

    if (p.nd == 0) {
        row(&f, BOTH_FULL, a, b, o, 1);
        return MDL_OK;
    }
    int last = p.nd - 1;
    int64_t inner = p.n[last];
    int kind = p.cls[last];
    if (p.nd == 1) {
        row(&f, kind, a, b, o, inner);
        return MDL_OK;
    }
    if (p.nd == 2) {
        int64_t tl = tile_len(&p);
        if (tl > 0) {
            run_tiled(&f, &p, a, b, o, c->scratch, tl);
            return MDL_OK;
        }
        for (int64_t r = 0; r < p.n[0]; r++)
            row(&f, kind, a + r * p.as[0], b + r * p.bs[0], o + r * inner, inner);
        return MDL_OK;
    }
    /* General case: odometer over the outer merged dims, tracking both operand offsets. */
    int64_t idx[MDL_MAX_RANK] = {0}, ao = 0, bo = 0, rows = 1;
    for (int i = 0; i < last; i++) rows *= p.n[i];
    for (int64_t r = 0; r < rows; r++) {
        row(&f, kind, a + ao, b + bo, o + r * inner, inner);
        for (int i = last - 1; i >= 0; i--) {
            ao += p.as[i];
            bo += p.bs[i];
            if (++idx[i] < p.n[i]) break;
            ao -= p.as[i] * p.n[i];
            bo -= p.bs[i] * p.n[i];
            idx[i] = 0;
        }
    }
    return MDL_OK;
}

bool mdl__broadcast_shape(const mdl__tensor *a, const mdl__tensor *b, mdl__shape *o) {
    return broadcast_shape(a, b, o);
}

mdl_status mdl__broadcast_prepare(mdl__kctx *c) {
    const mdl__tensor *a = c->nin > 0 ? c->in[0] : NULL, *b = c->nin > 1 ? c->in[1] : NULL;
    char s1[64], s2[64];
    if (c->nin != 2 || c->nout != 1 || !a || !b)
        return mdl__fail(c, MDL_INVALID_ARGUMENT,
                         "expects inputs A, B and one output, got %d inputs and %d outputs",
                         c->nin, c->nout);
    if (!broadcast_shape(a, b, &c->out_shape[0]))
        return mdl__fail(c, MDL_SHAPE, "shapes %s and %s do not broadcast",
                         mdl__dims_str(s1, sizeof s1, a->rank, a->dims),
                         mdl__dims_str(s2, sizeof s2, b->rank, b->dims));
    return MDL_OK;
}

void mdl__broadcast_rows(const mdl__tensor *a, const mdl__tensor *b, mdl__bc_row_fn fn, void *arg) {
    mdl__shape os;
    if (!broadcast_shape(a, b, &os) || mdl__shape_count(&os) == 0) return;
    bc_plan p;
    make_plan(a, b, &os, &p);
    if (p.nd == 0) {
        fn(arg, BOTH_FULL, 0, 0, 0, 1);
        return;
    }
    int last = p.nd - 1;
    int64_t inner = p.n[last], idx[MDL_MAX_RANK] = {0}, ao = 0, bo = 0, rows = 1;
    for (int i = 0; i < last; i++) rows *= p.n[i];
    for (int64_t r = 0; r < rows; r++) {
        fn(arg, p.cls[last], ao, bo, r * inner, inner);
        for (int i = last - 1; i >= 0; i--) {
            ao += p.as[i];
            bo += p.bs[i];
            if (++idx[i] < p.n[i]) break;
            ao -= p.as[i] * p.n[i];
            bo -= p.bs[i] * p.n[i];
            idx[i] = 0;
        }
    }
}

/* ---- int32 / int64 Add, Sub, Mul, Div and float32 Pow ----------------------------------- */

static mdl_status typed_prepare(mdl__kctx *c, bool ints) {
    mdl_status st = mdl__broadcast_prepare(c);
    if (st) return st;
    const mdl__tensor *a = c->in[0], *b = c->in[1];
    bool ok = ints ? (a->dtype == MDL_DTYPE_INT32 || a->dtype == MDL_DTYPE_INT64)
                   : a->dtype == MDL_DTYPE_FLOAT32;
    if (!ok || b->dtype != a->dtype)
        return mdl__fail(c, MDL_DTYPE, "%s kernel got %s and %s inputs",
                         ints ? "integer" : "float32", mdl_dtype_name(a->dtype),
                         mdl_dtype_name(b->dtype));
    if (mdl_op_options_kind(c->op) == MDL_OPTIONS_BINARY && c->opt->binary.act.kind != MDL_ACT_NONE)
        return mdl__fail(c, MDL_UNSUPPORTED, "a fused activation on %s data",
                         mdl_dtype_name(a->dtype));
    return MDL_OK;
}

static mdl_status int_prepare(mdl__kctx *c) { return typed_prepare(c, true); }
static mdl_status pow_prepare(mdl__kctx *c) { return typed_prepare(c, false); }

typedef struct int_args {
    mdl_op op;
    const void *a, *b;
    void *o;
    int64_t bad; /* first output element with an undefined division, -1 */
} int_args;

/* Wrapping arithmetic through the unsigned type (signed overflow is undefined in C). */
#define INT_ROW(T, UT, MIN)                                                                        \
    do {                                                                                           \
        const T *a_ = (const T *)g->a + ao, *b_ = (const T *)g->b + bo;                            \
        T *o_ = (T *)g->o + oo;                                                                    \
        int64_t sa_ = kind & MDL__BC_A ? 1 : 0, sb_ = kind & MDL__BC_B ? 1 : 0;                   \
        for (int64_t i_ = 0; i_ < n; i_++) {                                                       \
            T x_ = a_[i_ * sa_], y_ = b_[i_ * sb_];                                                \
            switch (g->op) {                                                                       \
            case MDL_OP_ADD: o_[i_] = (T)((UT)x_ + (UT)y_); break;                                 \
            case MDL_OP_SUB: o_[i_] = (T)((UT)x_ - (UT)y_); break;                                 \
            case MDL_OP_MUL: o_[i_] = (T)((UT)x_ * (UT)y_); break;                                 \
            default:                                                                               \
                if (y_ == 0 || (x_ == MIN && y_ == -1)) {                                          \
                    if (g->bad < 0) g->bad = oo + i_;                                              \
                    o_[i_] = 0;                                                                    \
                } else {                                                                           \
                    o_[i_] = x_ / y_; /* C division truncates toward zero, as ONNX's */           \
                }                                                                                  \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void int32_row(void *arg, int kind, int64_t ao, int64_t bo, int64_t oo, int64_t n) {
    int_args *g = arg;
    INT_ROW(int32_t, uint32_t, INT32_MIN);
}

static void int64_row(void *arg, int kind, int64_t ao, int64_t bo, int64_t oo, int64_t n) {
    int_args *g = arg;
    INT_ROW(int64_t, uint64_t, INT64_MIN);
}

static mdl_status int_run(mdl__kctx *c) {
    int_args g = {c->op, c->in_data[0], c->in_data[1], c->out_data[0], -1};
    mdl__broadcast_rows(c->in[0], c->in[1],
                        c->in[0]->dtype == MDL_DTYPE_INT64 ? int64_row : int32_row, &g);
    if (g.bad >= 0)
        return mdl__fail(c, MDL_OUT_OF_RANGE,
                         "integer division by zero (or of the minimum by -1) at output element %lld",
                         (long long)g.bad);
    return MDL_OK;
}

static void pow_row(void *arg, int kind, int64_t ao, int64_t bo, int64_t oo, int64_t n) {
    const int_args *g = arg;
    const float *a = (const float *)g->a + ao, *b = (const float *)g->b + bo;
    float *o = (float *)g->o + oo;
    int64_t sa = kind & MDL__BC_A ? 1 : 0, sb = kind & MDL__BC_B ? 1 : 0;
    for (int64_t i = 0; i < n; i++) o[i] = powf(a[i * sa], b[i * sb]);
}

static mdl_status pow_run(mdl__kctx *c) {
    int_args g = {c->op, c->in_data[0], c->in_data[1], c->out_data[0], -1};
    mdl__broadcast_rows(c->in[0], c->in[1], pow_row, &g);
    return MDL_OK;
}

const mdl__kernel mdl__add_int = {.prepare = int_prepare, .run = int_run};
const mdl__kernel mdl__sub_int = {.prepare = int_prepare, .run = int_run};
const mdl__kernel mdl__mul_int = {.prepare = int_prepare, .run = int_run};
const mdl__kernel mdl__div_int = {.prepare = int_prepare, .run = int_run};
const mdl__kernel mdl__pow_f32 = {.prepare = pow_prepare, .run = pow_run};

const mdl__kernel mdl__add_f32 = {.prepare = binary_prepare, .run = binary_run};
const mdl__kernel mdl__sub_f32 = {.prepare = binary_prepare, .run = binary_run};
const mdl__kernel mdl__mul_f32 = {.prepare = binary_prepare, .run = binary_run};
const mdl__kernel mdl__div_f32 = {.prepare = binary_prepare, .run = binary_run};
