/* Constant folding of the ONNX operators that only exist to compute shapes and constants
   (Shape, Gather/Concat of shapes, arithmetic on int64, ConstantOfShape, Range, Where, Cast ...),
   evaluated directly on the constant data, plus the attribute and constant helpers. */
#include "io/onnx_lower_host.h"

#include <math.h>
#include <string.h>

/* ---- attributes -------------------------------------------------------------------------- */

const Onnx__AttributeProto *mdl__cv_attr(const Onnx__NodeProto *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && !strcmp(n->attribute[i]->name, name)) return n->attribute[i];
    return NULL;
}

int64_t mdl__cv_attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt) {
    const Onnx__AttributeProto *a = mdl__cv_attr(n, name);
    return a && a->has_i ? a->i : dflt;
}

float mdl__cv_attr_float(const Onnx__NodeProto *n, const char *name, float dflt) {
    const Onnx__AttributeProto *a = mdl__cv_attr(n, name);
    return a && a->has_f ? a->f : dflt;
}

const int64_t *mdl__cv_attr_ints(const Onnx__NodeProto *n, const char *name, int32_t *count) {
    const Onnx__AttributeProto *a = mdl__cv_attr(n, name);
    if (!a || a->n_ints > 1024) {
        *count = -1;
        return NULL;
    }
    *count = (int32_t)a->n_ints;
    return a->ints;
}

const char *mdl__cv_attr_str(const Onnx__NodeProto *n, const char *name, char *buf, size_t size) {
    const Onnx__AttributeProto *a = mdl__cv_attr(n, name);
    size_t len = a && a->has_s ? a->s.len : 0;
    if (len >= size) len = size - 1;
    if (len) memcpy(buf, a->s.data, len);
    buf[len] = 0;
    return buf;
}

/* ---- element access ------------------------------------------------------------------------ */

static double get_d(mdl_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case MDL_DTYPE_FLOAT32: return ((const float *)p)[i];
    case MDL_DTYPE_INT8: return ((const int8_t *)p)[i];
    case MDL_DTYPE_UINT8: return ((const uint8_t *)p)[i];
    case MDL_DTYPE_INT32: return ((const int32_t *)p)[i];
    case MDL_DTYPE_INT64: return (double)((const int64_t *)p)[i];
    case MDL_DTYPE_BOOL: return ((const uint8_t *)p)[i] != 0;
    default: return 0;
    }
}

static int64_t get_i(mdl_dtype dt, const void *p, int64_t i) {
    if (dt == MDL_DTYPE_INT64) return ((const int64_t *)p)[i];
    double d = get_d(dt, p, i);
    if (d != d) return 0;
    return d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
}

/* Stores v converted as a C cast would, saturated so that no conversion is undefined. */
static void put_d(mdl_dtype dt, void *p, int64_t i, double v) {
    if (dt == MDL_DTYPE_FLOAT32) {
        ((float *)p)[i] = (float)v;
        return;
    }
    if (dt == MDL_DTYPE_BOOL) {
        ((uint8_t *)p)[i] = v != 0; /* NaN too */
        return;
    }
    if (v != v) v = 0;
    double lo = dt == MDL_DTYPE_INT8 ? -128 : dt == MDL_DTYPE_UINT8 ? 0 : dt == MDL_DTYPE_INT32 ? -2147483648.0 : -9.2e18;
    double hi = dt == MDL_DTYPE_INT8 ? 127 : dt == MDL_DTYPE_UINT8 ? 255 : dt == MDL_DTYPE_INT32 ? 2147483647.0 : 9.2e18;
    v = v < lo ? lo : v > hi ? hi : v;
    switch (dt) {
    case MDL_DTYPE_INT8: ((int8_t *)p)[i] = (int8_t)v; break;
    case MDL_DTYPE_UINT8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case MDL_DTYPE_INT32: ((int32_t *)p)[i] = (int32_t)v; break;
    case MDL_DTYPE_INT64: ((int64_t *)p)[i] = (int64_t)v; break;
    default: break;
    }
}

bool mdl__cv_const_ints(const cv_ctx *c, int32_t v, int64_t *vals, int32_t max, int32_t *count) {
    if (!mdl__cv_is_const(c, v)) return false;
    const cv_tensor *t = &c->ts[c->vals[v].t];
    if (t->count > max || t->dtype == MDL_DTYPE_FLOAT32) return false;
    for (int64_t i = 0; i < t->count; i++) vals[i] = get_i(t->dtype, t->data, i);
    *count = (int32_t)t->count;
    return true;
}

bool mdl__cv_const_scalar(const cv_ctx *c, int32_t v, double *out) {
    if (!mdl__cv_is_const(c, v)) return false;
    const cv_tensor *t = &c->ts[c->vals[v].t];
    if (t->count != 1) return false;
    *out = get_d(t->dtype, t->data, 0);
    return true;
}

/* ---- folding ------------------------------------------------------------------------------- */

/* Largest constant folding may compute (Expand, ConstantOfShape, Tile... of constants). */
#define FOLD_MAX_BYTES (256 << 20)

/* New constant bound to value v. */
static mdl_status bind_const(cv_ctx *c, int32_t v, mdl_dtype dt, int32_t rank, const int64_t *dims,
                             const void *data, void **out_data) {
    int32_t t = mdl__cv_tensor(c, v >= 0 ? c->vals[v].name : "const", dt, rank, dims, NULL);
    if (t < 0) return mdl__cv_status(c);
    /* a folded constant is made by the converter from a few numbers of the file (a shape, a fill
       value): bounded, so a hostile shape cannot ask for gigabytes */
    if (c->ts[t].bytes > FOLD_MAX_BYTES)
        return mdl__cv_fail(c, MDL_LIMIT, "folding would make a constant of %zu bytes "
                          "(more than the converter's %d MiB for a computed constant)", c->ts[t].bytes,
                          FOLD_MAX_BYTES >> 20);
    c->ts[t].data = mdl__cv_alloc(c, c->ts[t].bytes);
    if (!c->ts[t].data) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory");
    if (data) memcpy(c->ts[t].data, data, c->ts[t].bytes);
    if (out_data) *out_data = c->ts[t].data;
    if (v >= 0) mdl__cv_bind(c, v, t, NULL);
    return MDL_OK;
}

typedef enum ew_op {
    EW_ADD, EW_SUB, EW_MUL, EW_DIV, EW_POW, EW_MIN, EW_MAX, EW_MOD, EW_EQ, EW_LT, EW_GT, EW_LE,
    EW_GE, EW_AND, EW_OR, EW_XOR, EW_NOT, EW_NEG, EW_ABS, EW_SQRT, EW_FLOOR, EW_CEIL, EW_RECIP,
    EW_EXP, EW_LOG, EW_WHERE, EW_CAST, EW_EXPAND, EW_RELU, EW_SIGN
} ew_op;

static const struct {
    const char *name;
    ew_op op;
    int nin;
    bool lowerable; /* the runtime can also execute it when inputs are not constant */
} ew_ops[] = {
    {"Add", EW_ADD, 2, true},     {"Sub", EW_SUB, 2, true},          {"Mul", EW_MUL, 2, true},
    {"Div", EW_DIV, 2, true},     {"Pow", EW_POW, 2, false},         {"Min", EW_MIN, 2, false},
    {"Max", EW_MAX, 2, false},    {"Mod", EW_MOD, 2, false},         {"Equal", EW_EQ, 2, false},
    {"Less", EW_LT, 2, false},    {"Greater", EW_GT, 2, false},      {"LessOrEqual", EW_LE, 2, false},
    {"GreaterOrEqual", EW_GE, 2, false}, {"And", EW_AND, 2, false},  {"Or", EW_OR, 2, false},
    {"Xor", EW_XOR, 2, false},    {"Not", EW_NOT, 1, false},         {"Neg", EW_NEG, 1, false},
    {"Abs", EW_ABS, 1, false},    {"Sqrt", EW_SQRT, 1, false},       {"Floor", EW_FLOOR, 1, false},
    {"Ceil", EW_CEIL, 1, false},  {"Reciprocal", EW_RECIP, 1, false}, {"Exp", EW_EXP, 1, false},
    {"Log", EW_LOG, 1, false},    {"Where", EW_WHERE, 3, false},     {"Cast", EW_CAST, 1, true},
    {"Expand", EW_EXPAND, 2, true}, {"Sign", EW_SIGN, 1, false},
};

static int find_ew(const char *op) {
    for (size_t i = 0; i < sizeof ew_ops / sizeof ew_ops[0]; i++)
        if (!strcmp(ew_ops[i].name, op)) return (int)i;
    return -1;
}

static const char *const fold_only[] = {"Shape", "Size", "Constant", "ConstantOfShape", "Range"};

bool mdl__cv_known_op(const char *op_type) {
    if (mdl__cv_lowerable(op_type) || find_ew(op_type) >= 0) return true;
    for (size_t i = 0; i < sizeof fold_only / sizeof fold_only[0]; i++)
        if (!strcmp(fold_only[i], op_type)) return true;
    return false;
}

/* Whether the runtime executes op_type on run-time data (not only folds it). */
bool mdl__cv_runtime_op(const char *op_type) {
    int e = find_ew(op_type);
    return mdl__cv_lowerable(op_type) || (e >= 0 && ew_ops[e].lowerable);
}

/* ONNX element type -> storage dtype. */
static bool onnx_dtype(int64_t t, mdl_dtype *dt) {
    switch (t) {
    case 1: *dt = MDL_DTYPE_FLOAT32; return true;
    case 2: *dt = MDL_DTYPE_UINT8; return true;
    case 3: *dt = MDL_DTYPE_INT8; return true;
    case 6: *dt = MDL_DTYPE_INT32; return true;
    case 7: *dt = MDL_DTYPE_INT64; return true;
    case 9: *dt = MDL_DTYPE_BOOL; return true;
    case 11: *dt = MDL_DTYPE_FLOAT32; return true; /* double: computed in float32 */
    default: return false;
    }
}

static bool is_int(mdl_dtype dt) { return dt != MDL_DTYPE_FLOAT32; }

static int64_t wrap_i(uint64_t v) {
    int64_t r;
    memcpy(&r, &v, sizeof r);
    return r;
}

/* Integer arithmetic exactly (shapes may hold INT64_MAX sentinels), wrapping on overflow.
   fmod: Mod's attribute (1: the sign of the dividend, as C's %; 0: the sign of the divisor). */
static int64_t int_op(ew_op op, int64_t a, int64_t b, bool fmod) {
    switch (op) {
    case EW_ADD: return wrap_i((uint64_t)a + (uint64_t)b);
    case EW_SUB: return wrap_i((uint64_t)a - (uint64_t)b);
    case EW_MUL: return wrap_i((uint64_t)a * (uint64_t)b);
    case EW_DIV: return b == 0 || (a == INT64_MIN && b == -1) ? 0 : a / b;
    case EW_MOD: {
        if (b == 0 || (a == INT64_MIN && b == -1)) return 0;
        int64_t m = a % b;
        return !fmod && m != 0 && ((m < 0) != (b < 0)) ? m + b : m;
    }
    case EW_MIN: return a < b ? a : b;
    case EW_MAX: return a > b ? a : b;
    case EW_NEG: return wrap_i(0 - (uint64_t)a);
    case EW_ABS: return a < 0 ? wrap_i(0 - (uint64_t)a) : a;
    default: return 0;
    }
}

static double dbl_op(ew_op op, double a, double b, double w) {
    switch (op) {
    case EW_ADD: return a + b;
    case EW_SUB: return a - b;
    case EW_MUL: return a * b;
    case EW_DIV: return a / b;
    case EW_POW: return pow(a, b);
    case EW_MIN: return a < b ? a : b;
    case EW_MAX: return a > b ? a : b;
    case EW_MOD: return fmod(a, b);
    case EW_EQ: return a == b;
    case EW_LT: return a < b;
    case EW_GT: return a > b;
    case EW_LE: return a <= b;
    case EW_GE: return a >= b;
    case EW_AND: return a != 0 && b != 0;
    case EW_OR: return a != 0 || b != 0;
    case EW_XOR: return (a != 0) != (b != 0);
    case EW_NOT: return a == 0;
    case EW_NEG: return -a;
    case EW_ABS: return fabs(a);
    case EW_SQRT: return sqrt(a);
    case EW_FLOOR: return floor(a);
    case EW_CEIL: return ceil(a);
    case EW_RECIP: return 1.0 / a;
    case EW_EXP: return exp(a);
    case EW_LOG: return log(a);
    case EW_WHERE: return a != 0 ? b : w;
    case EW_RELU: return a > 0 ? a : 0;
    case EW_SIGN: return a > 0 ? 1 : a < 0 ? -1 : 0;
    default: return a; /* cast, expand */
    }
}

/* Broadcasting element-wise evaluation of up to 3 constant inputs. */
static mdl_status fold_ew(cv_ctx *c, const Onnx__NodeProto *n, ew_op op, int nin,
                          const int32_t *in, int32_t outv) {
    /* copies: binding the result adds a tensor, which may move c->ts */
    cv_tensor tc[3];
    const cv_tensor *t[3] = {&tc[0], &tc[1], &tc[2]};
    int32_t r = 0;
    int64_t shape_in[MDL_MAX_RANK];
    int32_t shape_rank = -1;
    int nuse = op == EW_EXPAND ? 1 : nin;
    for (int k = 0; k < nin; k++) tc[k] = c->ts[c->vals[in[k]].t];
    if (op == EW_EXPAND) {
        if (!mdl__cv_const_ints(c, in[1], shape_in, MDL_MAX_RANK, &shape_rank))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "shape must be an integer constant");
        r = shape_rank;
    }
    for (int k = 0; k < nuse; k++)
        if (t[k]->rank > r) r = t[k]->rank;
    int64_t od[MDL_MAX_RANK], st[3][MDL_MAX_RANK];
    for (int32_t d = 0; d < r; d++) {
        od[d] = 1;
        if (op == EW_EXPAND && d - (r - shape_rank) >= 0) od[d] = shape_in[d - (r - shape_rank)];
        for (int k = 0; k < nuse; k++) {
            int32_t i = d - (r - t[k]->rank);
            int64_t v = i >= 0 ? t[k]->dims[i] : 1;
            if (v != 1 && od[d] != 1 && v != od[d])
                return mdl__cv_fail(c, MDL_SHAPE, "inputs do not broadcast");
            if (v != 1) od[d] = v;
        }
    }
    for (int k = 0; k < nuse; k++) {
        int64_t s = 1;
        for (int32_t d = r - 1; d >= 0; d--) {
            int32_t i = d - (r - t[k]->rank);
            int64_t v = i >= 0 ? t[k]->dims[i] : 1;
            st[k][d] = v == 1 ? 0 : s;
            s *= v;
        }
    }
    mdl_dtype dt = t[0]->dtype;
    if (op >= EW_EQ && op <= EW_NOT) {
        dt = MDL_DTYPE_BOOL;
    } else if (op == EW_WHERE) {
        dt = t[1]->dtype;
    } else if (op == EW_CAST) {
        if (!onnx_dtype(mdl__cv_attr_int(n, "to", 0), &dt))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "cast to %s",
                                mdl__onnx_type_name(mdl__cv_attr_int(n, "to", 0)));
    }
    void *o;
    mdl_status s = bind_const(c, outv, dt, r, od, NULL, &o);
    if (s) return s;
    int64_t count = 1, idx[MDL_MAX_RANK] = {0}, off[3] = {0, 0, 0};
    for (int32_t d = 0; d < r; d++) count *= od[d];
    bool ints = nuse >= 1 && op != EW_WHERE && op != EW_CAST && op != EW_EXPAND;
    for (int k = 0; k < nuse; k++) ints = ints && is_int(t[k]->dtype);
    bool int_exact = ints && (op <= EW_MAX || op == EW_MOD || op == EW_NEG || op == EW_ABS) && op != EW_POW;
    bool fmod = op == EW_MOD && mdl__cv_attr_int(n, "fmod", 0) != 0;
    if (op == EW_MOD && !ints && !fmod)
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "fmod=0 on floating-point inputs (ONNX requires fmod=1 for them)");
    for (int64_t i = 0; i < count; i++) {
        if (int_exact) {
            int64_t a = get_i(t[0]->dtype, t[0]->data, off[0]);
            int64_t b = nuse > 1 ? get_i(t[1]->dtype, t[1]->data, off[1]) : 0;
            if ((op == EW_DIV || op == EW_MOD) && b == 0)
                return mdl__cv_fail(c, MDL_UNSUPPORTED, "integer division by zero (undefined in ONNX)");
            int64_t v = int_op(op, a, b, fmod);
            if (dt == MDL_DTYPE_INT64) ((int64_t *)o)[i] = v;
            else put_d(dt, o, i, (double)v);
        } else if (dt == MDL_DTYPE_INT64 && (op == EW_CAST || op == EW_EXPAND || op == EW_WHERE) &&
                   t[op == EW_WHERE ? 1 : 0]->dtype == MDL_DTYPE_INT64) {
            /* int64 moved as is: no round trip through double */
            const cv_tensor *src = op == EW_WHERE && get_d(t[0]->dtype, t[0]->data, off[0]) == 0 ? t[2] : t[op == EW_WHERE ? 1 : 0];
            int64_t so = src == t[0] ? off[0] : src == t[1] ? off[1] : off[2];
            ((int64_t *)o)[i] = get_i(src->dtype, src->data, so);
        } else {
            double a = get_d(t[0]->dtype, t[0]->data, off[0]);
            double b = nuse > 1 ? get_d(t[1]->dtype, t[1]->data, off[1]) : 0;
            double w = nuse > 2 ? get_d(t[2]->dtype, t[2]->data, off[2]) : 0;
            double v = dbl_op(op, a, b, w);
            if (op == EW_DIV && is_int(dt)) v = trunc(v);
            put_d(dt, o, i, v);
        }
        for (int32_t d = r - 1; d >= 0; d--) {
            for (int k = 0; k < nuse; k++) off[k] += st[k][d];
            if (++idx[d] < od[d]) break;
            for (int k = 0; k < nuse; k++) off[k] -= st[k][d] * od[d];
            idx[d] = 0;
        }
    }
    return MDL_OK;
}

/* Max and Min take any number of inputs (multidirectional broadcasting): folded pairwise. */
static mdl_status fold_variadic(cv_ctx *c, const Onnx__NodeProto *n, ew_op op, int nin,
                                const int32_t *in, int32_t outv) {
    if (nin == 1) {
        cv_tensor t = c->ts[c->vals[in[0]].t]; /* a copy: binding adds a tensor */
        return bind_const(c, outv, t.dtype, t.rank, t.dims, t.data, NULL);
    }
    int32_t acc = in[0];
    for (int k = 1; k < nin; k++) {
        int32_t dst = k == nin - 1 ? outv : mdl__cv_value(c, mdl__cv_fmt(c, "%s/%d", c->node_name, k));
        if (dst < 0) return mdl__cv_status(c);
        mdl_status st = fold_ew(c, n, op, 2, (int32_t[]){acc, in[k]}, dst);
        if (st) return st;
        acc = dst;
    }
    return MDL_OK;
}

static mdl_status fold_shape(cv_ctx *c, const Onnx__NodeProto *n, int32_t inv, int32_t outv, bool size) {
    const cv_value *x = &c->vals[inv];
    if (size) {
        int64_t cnt = 1;
        for (int32_t i = 0; i < x->rank; i++) cnt *= x->dims[i];
        return bind_const(c, outv, MDL_DTYPE_INT64, 0, NULL, &cnt, NULL);
    }
    int64_t r = x->rank, s = mdl__cv_attr_int(n, "start", 0), e = mdl__cv_attr_int(n, "end", r);
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = s < 0 ? 0 : s > r ? r : s;
    e = e < 0 ? 0 : e > r ? r : e;
    int64_t len = e > s ? e - s : 0;
    int64_t dims[MDL_MAX_RANK];
    for (int64_t i = 0; i < len; i++) dims[i] = x->dims[s + i];
    return bind_const(c, outv, MDL_DTYPE_INT64, 1, &len, dims, NULL);
}

static mdl_status fold_constant(cv_ctx *c, const Onnx__NodeProto *n, int32_t outv) {
    const Onnx__AttributeProto *a;
    if ((a = mdl__cv_attr(n, "value")) && a->t) {
        int32_t t;
        mdl_status st = mdl__cv_tensor_proto(c, a->t, c->vals[outv].name, &t);
        if (st) return st;
        mdl__cv_bind(c, outv, t, NULL);
        return MDL_OK;
    }
    if ((a = mdl__cv_attr(n, "value_float")) && a->has_f)
        return bind_const(c, outv, MDL_DTYPE_FLOAT32, 0, NULL, &a->f, NULL);
    if ((a = mdl__cv_attr(n, "value_int")) && a->has_i)
        return bind_const(c, outv, MDL_DTYPE_INT64, 0, NULL, &a->i, NULL);
    if ((a = mdl__cv_attr(n, "value_floats"))) {
        int64_t len = (int64_t)a->n_floats;
        return bind_const(c, outv, MDL_DTYPE_FLOAT32, 1, &len, a->floats, NULL);
    }
    if ((a = mdl__cv_attr(n, "value_ints"))) {
        int64_t len = (int64_t)a->n_ints;
        return bind_const(c, outv, MDL_DTYPE_INT64, 1, &len, a->ints, NULL);
    }
    return mdl__cv_fail(c, MDL_UNSUPPORTED, "only tensor, float and int values are supported");
}

static mdl_status fold_constant_of_shape(cv_ctx *c, const Onnx__NodeProto *n, int32_t inv, int32_t outv) {
    int64_t dims[MDL_MAX_RANK];
    int32_t r;
    if (!mdl__cv_const_ints(c, inv, dims, MDL_MAX_RANK, &r))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "the shape must be a constant of rank <= %d", MDL_MAX_RANK);
    mdl_dtype dt = MDL_DTYPE_FLOAT32;
    const void *pat = NULL;
    int32_t vt = -1;
    const Onnx__AttributeProto *a = mdl__cv_attr(n, "value");
    if (a && a->t) {
        mdl_status st = mdl__cv_tensor_proto(c, a->t, "value", &vt);
        if (st) return st;
        if (c->ts[vt].count != 1) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "value must have one element");
        dt = c->ts[vt].dtype;
        pat = c->ts[vt].data;
    }
    void *o;
    mdl_status st = bind_const(c, outv, dt, r, dims, NULL, &o);
    if (st) return st;
    size_t es = mdl_dtype_size(dt);
    if (pat)
        for (int64_t i = 0; i < c->ts[c->vals[outv].t].count; i++) memcpy((char *)o + (size_t)i * es, pat, es);
    return MDL_OK;
}

static mdl_status fold_range(cv_ctx *c, const int32_t *in, int32_t outv) {
    double s, l, d;
    if (!mdl__cv_const_scalar(c, in[0], &s) || !mdl__cv_const_scalar(c, in[1], &l) ||
        !mdl__cv_const_scalar(c, in[2], &d))
        return mdl__cv_fail(c, MDL_UNSUPPORTED, "start, limit and delta must be constant scalars");
    if (d == 0) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "delta is 0");
    double cnt = ceil((l - s) / d);
    if (!(cnt >= 0)) cnt = 0;
    if (cnt > 16777216.0) return mdl__cv_fail(c, MDL_UNSUPPORTED, "range too long");
    int64_t len = (int64_t)cnt;
    mdl_dtype dt = c->ts[c->vals[in[0]].t].dtype;
    void *o;
    mdl_status st = bind_const(c, outv, dt, 1, &len, NULL, &o);
    if (st) return st;
    for (int64_t i = 0; i < len; i++) put_d(dt, o, i, s + (double)i * d);
    return MDL_OK;
}

mdl_status mdl__cv_fold(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in, int nout,
                        const int32_t *out, bool *done) {
    *done = true;
    const char *op = n->op_type;
    int32_t o0 = nout > 0 ? out[0] : -1;
    if (!mdl__cv_lowerable(op) && o0 < 0) return MDL_OK; /* nothing to compute */
    if (!strcmp(op, "Constant")) return fold_constant(c, n, o0);
    if (nin < 1 || in[0] < 0) {
        if (!strcmp(op, "Shape") || !strcmp(op, "Size") || !strcmp(op, "ConstantOfShape") || !strcmp(op, "Range"))
            return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "input 0 is missing");
        *done = false;
        return MDL_OK;
    }
    if (!strcmp(op, "Shape")) return fold_shape(c, n, in[0], o0, false);
    if (!strcmp(op, "Size")) return fold_shape(c, n, in[0], o0, true);
    if (!strcmp(op, "ConstantOfShape")) return fold_constant_of_shape(c, n, in[0], o0);
    if (!strcmp(op, "Range")) {
        if (nin < 3) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "needs start, limit, delta");
        return fold_range(c, in, o0);
    }
    int e = find_ew(op);
    if (e < 0) {
        *done = false;
        return MDL_OK;
    }
    bool variadic = ew_ops[e].op == EW_MIN || ew_ops[e].op == EW_MAX;
    int need = variadic ? nin : ew_ops[e].nin;
    bool all_const = nin >= need;
    for (int k = 0; k < need && all_const; k++) all_const = in[k] >= 0 && mdl__cv_is_const(c, in[k]);
    if (!all_const) {
        if (ew_ops[e].lowerable || mdl__cv_lowerable(op)) {
            *done = false;
            return MDL_OK;
        }
        return mdl__cv_fail(c, MDL_UNSUPPORTED,
                            "supported only on constants (this one depends on run-time data)");
    }
    if (o0 < 0) return MDL_OK;
    if (variadic) return fold_variadic(c, n, ew_ops[e].op, nin, in, o0);
    return fold_ew(c, n, ew_ops[e].op, ew_ops[e].nin, in, o0);
}
