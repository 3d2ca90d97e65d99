/* Lowering of the ONNX element-wise operators that run on the runtime's element-wise kernels
   (src/ops/elementwise.c, compare.c, cast.c, binary.c): Exp, Sqrt, Log, Neg, Reciprocal, Abs,
   Pow, Equal, Less, Greater, LessOrEqual, GreaterOrEqual, Not, And, Or, Xor, Where, Cast; and
   Split, as one SLICE per output (Keras 3 recurrent layers exported with unroll=True split the
   sequence into steps).
   Nodes whose inputs are all constant never get here: they are folded first
   (onnx_lower_fold_host.c).  One-input operators keep their input's layout; the others work in the
   native (ONNX) layout. */
#include "onnx_lower_host.h"

#include <string.h>

typedef const Onnx__NodeProto node_t;

static const struct {
    const char *name;
    mdl_op op;
    int nin;
} elem_ops[] = {
    {"Exp", MDL_OP_EXP, 1},
    {"Sqrt", MDL_OP_SQRT, 1},
    {"Log", MDL_OP_LOG, 1},
    {"Neg", MDL_OP_NEG, 1},
    {"Reciprocal", MDL_OP_RECIPROCAL, 1},
    {"Abs", MDL_OP_ABS, 1},
    {"Pow", MDL_OP_POW, 2},
    {"Equal", MDL_OP_EQUAL, 2},
    {"Less", MDL_OP_LESS, 2},
    {"Greater", MDL_OP_GREATER, 2},
    {"LessOrEqual", MDL_OP_LESS_OR_EQUAL, 2},
    {"GreaterOrEqual", MDL_OP_GREATER_OR_EQUAL, 2},
    {"Not", MDL_OP_NOT, 1},
    {"And", MDL_OP_AND, 2},
    {"Or", MDL_OP_OR, 2},
    {"Xor", MDL_OP_XOR, 2},
    {"Where", MDL_OP_WHERE, 3},
    {"Cast", MDL_OP_CAST, 1},
    {"Split", MDL_OP_SLICE, 1},
};

static int find_elem(const char *op) {
    for (size_t i = 0; i < sizeof elem_ops / sizeof elem_ops[0]; i++)
        if (!strcmp(elem_ops[i].name, op)) return (int)i;
    return -1;
}

bool mdl__cv_elem_op(const char *op_type) { return op_type && find_elem(op_type) >= 0; }

int mdl__cv_elem_inputs(const char *op_type) {
    int e = op_type ? find_elem(op_type) : -1;
    return e < 0 ? -1 : elem_ops[e].nin;
}

/* ONNX TensorProto element type -> runtime dtype of a Cast target; false if none.  double is
   computed in float32 throughout the converter. */
static bool cast_target(int64_t to, mdl_dtype *dt) {
    switch (to) {
    case 1: case 11: *dt = MDL_DTYPE_FLOAT32; return true;
    case 2: *dt = MDL_DTYPE_UINT8; return true;
    case 3: *dt = MDL_DTYPE_INT8; return true;
    case 6: *dt = MDL_DTYPE_INT32; return true;
    case 7: *dt = MDL_DTYPE_INT64; return true;
    case 9: *dt = MDL_DTYPE_BOOL; return true;
    default: return false;
    }
}

static mdl_status lower_cast(cv_ctx *c, node_t *n, const int32_t *in, const int32_t *out) {
    int64_t to = mdl__cv_attr_int(n, "to", 0);
    mdl_dtype dt;
    if (!cast_target(to, &dt))
        return mdl__cv_fail(c, MDL_UNSUPPORTED,
                            "cast to ONNX element type %lld (supported: float, double, uint8, "
                            "int8, int32, int64, bool)", (long long)to);
    const cv_value *x = &c->vals[in[0]];
    int8_t perm[MDL_MAX_RANK];
    int32_t t;
    if (x->flat_src >= 0) {
        mdl__cv_perm_identity(perm, x->rank);
        t = mdl__cv_native(c, in[0]);
    } else {
        memcpy(perm, x->perm, sizeof perm);
        t = x->t;
    }
    if (t < 0) return mdl__cv_status(c);
    if (c->ts[t].dtype == dt) { /* nothing to convert: the output is the input */
        c->removed++;
        return mdl__cv_bind_result(c, out[0], t, perm);
    }
    mdl_op_options o = mdl_op_options_default(MDL_OP_CAST);
    o.cast.to = dt;
    return mdl__cv_bind_result(c, out[0], mdl__cv_emit1(c, MDL_OP_CAST, "", 1, &t, &o), perm);
}

/* Split along axis into the sizes of input `split` (opset 13+) or attribute `split`, or into
   equal parts (num_outputs in opset 18, else the output count): one SLICE per output. */
static mdl_status lower_split(cv_ctx *c, node_t *n, int nin, const int32_t *in, int nout,
                              const int32_t *out) {
    const cv_value *x = &c->vals[in[0]];
    int32_t r = x->rank, axis;
    int64_t a = mdl__cv_attr_int(n, "axis", 0);
    if (a < -r || a >= r) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "axis %lld for rank %d", (long long)a, (int)r);
    axis = (int32_t)(a < 0 ? a + r : a);
    int64_t dim = x->dims[axis], sizes[MDL_MAX_NODE_IO];
    int32_t ns = -1;
    if (nin > 1 && in[1] >= 0) {
        if (!mdl__cv_const_ints(c, in[1], sizes, MDL_MAX_NODE_IO, &ns))
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "split sizes must be a constant");
    } else {
        const int64_t *s = mdl__cv_attr_ints(n, "split", &ns);
        if (ns > MDL_MAX_NODE_IO) return mdl__cv_fail(c, MDL_UNSUPPORTED, "too many parts");
        for (int32_t i = 0; i < ns; i++) sizes[i] = s[i];
    }
    if (ns < 0) { /* equal parts; the last one smaller when dim does not divide (opset 18) */
        int64_t parts = mdl__cv_attr_int(n, "num_outputs", nout);
        if (parts < 1 || parts > MDL_MAX_NODE_IO) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "%lld parts", (long long)parts);
        int64_t each = (dim + parts - 1) / parts;
        ns = (int32_t)parts;
        for (int32_t i = 0; i < ns; i++) sizes[i] = dim - each * i < each ? dim - each * i : each;
    }
    int64_t total = 0;
    for (int32_t i = 0; i < ns; i++) {
        if (sizes[i] < 0) return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "negative split size");
        total += sizes[i];
    }
    if (ns != nout || total != dim)
        return mdl__cv_fail(c, MDL_CORRUPT_MODEL, "%d parts of total %lld for %d outputs and dim %lld",
                            (int)ns, (long long)total, nout, (long long)dim);
    int32_t t = mdl__cv_native(c, in[0]);
    if (t < 0) return mdl__cv_status(c);
    int64_t begin = 0;
    for (int k = 0; k < nout; k++) {
        mdl_op_options o = mdl_op_options_default(MDL_OP_SLICE);
        int64_t od[MDL_MAX_RANK];
        for (int32_t i = 0; i < r; i++) od[i] = x->dims[i];
        od[axis] = sizes[k];
        o.slice.begin[axis] = begin;
        begin += sizes[k];
        if (out[k] < 0) continue;
        int32_t y;
        mdl_status st = mdl__cv_emit(c, MDL_OP_SLICE, mdl__cv_fmt(c, "%d", k), 1, &t, 1, &y, &o, r, od);
        if (st || (st = mdl__cv_bind_result(c, out[k], y, NULL))) return st;
    }
    return MDL_OK;
}

const char *mdl__cv_unsupported_hint(const char *op_type) {
    if (op_type && !strcmp(op_type, "Loop"))
        return "; tf2onnx exports a Keras 3 RNN layer as a Loop: build the layer with unroll=True "
               "(fixed sequence length)";
    return "";
}

mdl_status mdl__cv_lower_elem(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in,
                              int nout, const int32_t *out) {
    int e = find_elem(n->op_type);
    if (e < 0) return mdl__cv_fail(c, MDL_INTERNAL, "not an element-wise operator");
    int need = elem_ops[e].nin; /* present: mdl__cv_check_inputs */
    mdl_op op = elem_ops[e].op;
    if (op == MDL_OP_CAST) return lower_cast(c, n, in, out);
    if (op == MDL_OP_SLICE) return lower_split(c, n, nin, in, nout, out);
    if (need == 1) {
        return mdl__cv_lower_unary(c, op, in[0], out[0]);
    }
    int32_t t[3];
    for (int k = 0; k < need; k++)
        if ((t[k] = mdl__cv_native(c, in[k])) < 0) return mdl__cv_status(c);
    if (op == MDL_OP_POW && c->ts[t[1]].dtype != MDL_DTYPE_FLOAT32) {
        /* Pow-12+: an integer exponent; exact in float32 when it is a constant of small
           integers (the usual x^2), which the CAST below folds */
        if (!c->ts[t[1]].data)
            return mdl__cv_fail(c, MDL_UNSUPPORTED, "a run-time %s exponent (float32 only)",
                                mdl_dtype_name(c->ts[t[1]].dtype));
        int64_t vals[64];
        int32_t cnt;
        bool small = mdl__cv_const_ints(c, in[1], vals, 64, &cnt);
        for (int32_t i = 0; small && i < cnt; i++) small = vals[i] > -16777216 && vals[i] < 16777216;
        if (!small) return mdl__cv_fail(c, MDL_UNSUPPORTED, "integer exponent not exact in float32");
        mdl_op_options o = mdl_op_options_default(MDL_OP_CAST);
        o.cast.to = MDL_DTYPE_FLOAT32;
        if ((t[1] = mdl__cv_emit1(c, MDL_OP_CAST, "exponent", 1, &t[1], &o)) < 0) return mdl__cv_status(c);
    }
    return mdl__cv_bind_result(c, out[0], mdl__cv_emit1(c, op, "", need, t, NULL), NULL);
}
