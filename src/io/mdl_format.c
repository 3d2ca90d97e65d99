/* The .mdl format: FlatBuffers descriptors mirroring src/io/mdeploy.fbs, the reader that turns a
   verified buffer into the runtime graph, and the writer used by the builder. */
#include "graph/model.h"
#include "graph/selftest.h"
#include "graph/util.h"
#include "ops/sparse.h"

#include <stddef.h>
#include <string.h>

/* ---- descriptors (field order = field ids in mdeploy.fbs) ------------------------------- */

#define SC(n) {FB_SCALAR, n, 0, NULL, NULL, 0}
#define STR {FB_STRING, 1, 1, NULL, NULL, 0}
#define VEC(n) {FB_VECTOR, n, 0, NULL, NULL, 0}
#define VECA(n, a) {FB_VECTOR, n, a, NULL, NULL, 0}
#define TAB(d) {FB_TABLE, 4, 0, &d, NULL, 0}
#define TABV(d) {FB_TABLE_VECTOR, 4, 0, &d, NULL, 0}
#define DESC(var, name, ...)                                                                       \
    static const fb_field_desc var##_fields[] = {__VA_ARGS__};                                     \
    static const fb_table_desc var = {name, (int)(sizeof var##_fields / sizeof var##_fields[0]),   \
                                      var##_fields}

DESC(d_act, "FusedActivation", SC(1), SC(4), SC(4));
DESC(d_fc, "FullyConnectedOptions", TAB(d_act));
DESC(d_conv, "Conv2DOptions", SC(4), SC(4), SC(4), SC(4), SC(4), SC(4), SC(4), SC(4), SC(4), TAB(d_act));
DESC(d_pool, "Pool2DOptions", SC(4), SC(4), SC(4), SC(4), SC(4), SC(4), SC(4), SC(4), SC(1));
DESC(d_actopt, "ActivationOptions", SC(4), SC(4), SC(4), SC(4), SC(1));
DESC(d_axis, "AxisOptions", SC(4));
DESC(d_binary, "BinaryOptions", TAB(d_act));
DESC(d_transpose, "TransposeOptions", VEC(4));
DESC(d_slice, "SliceOptions", VEC(8), VEC(8));
DESC(d_pad, "PadOptions", VEC(8), SC(4));
DESC(d_reduce, "ReduceOptions", VEC(4), SC(1));
DESC(d_rnn, "RnnOptions", SC(4), SC(1), SC(1));
DESC(d_bn, "BatchNormOptions", SC(4));
DESC(d_cast, "CastOptions", SC(1));
DESC(d_resize, "ResizeOptions", SC(4), SC(4), SC(4), SC(4), SC(1), SC(1), SC(1));

/* Union member i + 1 == mdl_options_kind i + 1 (MDL_OPTIONS_NONE is union type 0). */
static const fb_table_desc *const option_descs[] = {&d_fc, &d_conv, &d_pool, &d_actopt, &d_axis,
                                                    &d_binary, &d_transpose, &d_slice, &d_pad,
                                                    &d_reduce, &d_rnn, &d_bn, &d_cast, &d_resize};
_Static_assert(sizeof option_descs / sizeof option_descs[0] == MDL_OPTIONS_COUNT - 1,
               "one union member per options kind");

DESC(d_quant, "Quantization", VEC(4), VEC(8), SC(4));
DESC(d_sparse, "SparseBlocks", SC(1), VEC(4), VEC(4));
DESC(d_tensor, "Tensor", STR, SC(1), VEC(8), SC(4), TAB(d_quant), VEC(4), TAB(d_sparse));
DESC(d_operator, "Operator", SC(2), STR, VEC(4), VEC(4), SC(1),
     {FB_UNION, 4, 0, NULL, option_descs, MDL_OPTIONS_COUNT - 1});
_Static_assert(MDL__LINE_ALIGN % MDL_ALIGN == 0, "weights are written more aligned than read");

DESC(d_buffer, "Buffer", VECA(1, MDL_ALIGN));
DESC(d_kv, "KeyValue", STR, STR);
DESC(d_plan, "MemoryPlan", SC(8), VEC(8), VEC(8));
DESC(d_symbol, "Symbol", STR, SC(8), SC(8));
DESC(d_seal, "Seal", VEC(1), VEC(1), VEC(1));
DESC(d_encrypted, "Encrypted", VEC(1), VECA(1, MDL_ALIGN));
/* Self-test vectors are verified where they are read (MDL_WITH_SELFTEST, host builds); other
   builds never touch them, so the verifier skips them like any field it does not know (firmware
   keeps the descriptors' flash).  The data is copied out: its alignment is not required. */
#ifdef MDL_WITH_SELFTEST
DESC(d_st_tensor, "SelfTestTensor", SC(4), SC(1), VEC(8), VEC(1));
DESC(d_st_case, "SelfTestCase", TABV(d_st_tensor), TABV(d_st_tensor));
DESC(d_selftest, "SelfTest", TABV(d_st_case), SC(4), SC(4), STR);
#define SELFTEST_FIELD , TAB(d_selftest)
#else
#define SELFTEST_FIELD
#endif
DESC(d_model, "Model", SC(2), SC(2), STR, STR, STR, STR, TABV(d_kv), TABV(d_tensor),
     TABV(d_operator), VEC(4), VEC(4), TABV(d_buffer), TAB(d_plan), TABV(d_symbol), SC(8),
     TAB(d_seal), TAB(d_encrypted) SELFTEST_FIELD);

enum { M_MAJOR, M_MINOR, M_NAME, M_VERSION, M_PRODUCER, M_DESCRIPTION, M_METADATA, M_TENSORS,
       M_OPERATORS, M_INPUTS, M_OUTPUTS, M_BUFFERS, M_PLAN, M_SYMBOLS, M_SECURITY_COUNTER, M_SEAL,
       M_ENCRYPTED, M_SELFTEST };
_Static_assert((int)M_SECURITY_COUNTER == (int)MDL__M_SECURITY_COUNTER && (int)M_SEAL == (int)MDL__M_SEAL &&
               (int)M_ENCRYPTED == (int)MDL__M_ENCRYPTED, "seal field ids (model.h) match the schema");
_Static_assert(M_SELFTEST == MDL__MODEL_SELFTEST_FIELD, "selftest_host.c reads Model.selftest by this id");
enum { T_NAME, T_DTYPE, T_SHAPE, T_BUFFER, T_QUANT, T_DIM_SYMBOLS, T_SPARSE };
enum { SP_TRANSPOSED, SP_PTR, SP_COL };
enum { S_NAME, S_MAX, S_INITIAL };
enum { Q_SCALE, Q_ZERO_POINT, Q_AXIS };
enum { O_OP, O_NAME, O_INPUTS, O_OUTPUTS, O_OPTIONS_TYPE, O_OPTIONS };

/* ---- reading ----------------------------------------------------------------------------- */

static mdl_status read_act(fb_table t, mdl_fused_act *a, const char *where, mdl_error *err) {
    if (!t.pos) return MDL_OK;
    uint8_t kind = (uint8_t)fb_get_u(t, 0, 1, 0);
    if (kind >= MDL_ACT_COUNT)
        return mdl__error(err, MDL_CORRUPT_MODEL, "%s: unknown fused activation %u", where, kind);
    a->kind = (mdl_activation)kind;
    a->clip_min = fb_get_f32(t, 1, 0.0f);
    a->clip_max = fb_get_f32(t, 2, 0.0f);
    return MDL_OK;
}

/* Reads an int vector of at most `max` entries into out; returns the count or -1. */
static int read_i32s(fb_table t, int id, int32_t *out, int max) {
    fb_vec v = fb_get_vec(t, id);
    if ((int64_t)v.len > max) return -1;
    for (uint32_t i = 0; i < v.len; i++) out[i] = fb_vec_i32(v, i);
    return (int)v.len;
}
static int read_i64s(fb_table t, int id, int64_t *out, int max) {
    fb_vec v = fb_get_vec(t, id);
    if ((int64_t)v.len > max) return -1;
    for (uint32_t i = 0; i < v.len; i++) out[i] = fb_vec_i64(v, i);
    return (int)v.len;
}

/* The scalar option fields of each kind, by descriptor (field id, where in mdl_op_options, type,
   the value when absent); the vector fields are read by read_options itself. */
enum { OF_I32, OF_F32, OF_BOOL, OF_ENUM, OF_ACT };
typedef struct opt_field {
    uint8_t kind, id, type;
    uint8_t size, limit; /* OF_ENUM: the member's size (enums may be short) and its value count */
    uint16_t at;         /* offsetof(mdl_op_options, ...) */
    union {
        int32_t i;
        float f;
    } dflt;
} opt_field;
#define OF(kind, id, type, member, d) {MDL_OPTIONS_##kind, id, type, 0, 0, offsetof(mdl_op_options, member), {d}}
#define OFF(kind, id, member, d) {MDL_OPTIONS_##kind, id, OF_F32, 0, 0, offsetof(mdl_op_options, member), {.f = d}}
#define OFE(kind, id, member, count)                                                                   \
    {MDL_OPTIONS_##kind, id, OF_ENUM, sizeof(((mdl_op_options *)0)->member), count,                   \
     offsetof(mdl_op_options, member), {0}}
static const opt_field opt_fields[] = {
    OF(FC, 0, OF_ACT, fc.act, 0), OF(BINARY, 0, OF_ACT, binary.act, 0),
    OF(CONV, 0, OF_I32, conv.stride[0], 1), OF(CONV, 1, OF_I32, conv.stride[1], 1),
    OF(CONV, 2, OF_I32, conv.dilation[0], 1), OF(CONV, 3, OF_I32, conv.dilation[1], 1),
    OF(CONV, 4, OF_I32, conv.pad[0], 0), OF(CONV, 5, OF_I32, conv.pad[1], 0),
    OF(CONV, 6, OF_I32, conv.pad[2], 0), OF(CONV, 7, OF_I32, conv.pad[3], 0),
    OF(CONV, 8, OF_I32, conv.group, 1), OF(CONV, 9, OF_ACT, conv.act, 0),
    OF(POOL, 0, OF_I32, pool.kernel[0], 1), OF(POOL, 1, OF_I32, pool.kernel[1], 1),
    OF(POOL, 2, OF_I32, pool.stride[0], 1), OF(POOL, 3, OF_I32, pool.stride[1], 1),
    OF(POOL, 4, OF_I32, pool.pad[0], 0), OF(POOL, 5, OF_I32, pool.pad[1], 0),
    OF(POOL, 6, OF_I32, pool.pad[2], 0), OF(POOL, 7, OF_I32, pool.pad[3], 0),
    OF(POOL, 8, OF_BOOL, pool.count_include_pad, 0),
    OFF(ACT, 0, act.alpha, 0.01f), OFF(ACT, 1, act.beta, 0.5f), OFF(ACT, 2, act.min, -__builtin_inff()),
    OFF(ACT, 3, act.max, __builtin_inff()), OF(ACT, 4, OF_BOOL, act.approximate, 0),
    OF(AXIS, 0, OF_I32, axis.axis, -1),
    OF(REDUCE, 1, OF_BOOL, reduce.keepdims, 1),
    OF(RNN, 0, OF_I32, rnn.hidden_size, 0), OFE(RNN, 1, rnn.direction, MDL_RNN_DIRECTION_COUNT),
    OF(RNN, 2, OF_BOOL, rnn.linear_before_reset, 0),
    OFF(PAD, 1, pad.value, 0.0f),
    OFF(BATCH_NORM, 0, batch_norm.epsilon, 1e-5f),
    OFE(CAST, 0, cast.to, MDL_DTYPE_COUNT),
    OF(RESIZE, 0, OF_I32, resize.out[0], 0), OF(RESIZE, 1, OF_I32, resize.out[1], 0),
    OFF(RESIZE, 2, resize.scale[0], 1.0f), OFF(RESIZE, 3, resize.scale[1], 1.0f),
    OFE(RESIZE, 4, resize.mode, MDL_RESIZE_MODE_COUNT), OFE(RESIZE, 5, resize.coord, MDL_RESIZE_COORD_COUNT),
    OFE(RESIZE, 6, resize.nearest, MDL_RESIZE_NEAREST_COUNT),
};
#undef OF
#undef OFF
#undef OFE

/* Parses a node's options; also checks vector option lengths against the input rank. */
static mdl_status read_options(fb_table op, mdl__node *n, const mdl__graph *g, mdl_error *err) {
    mdl_options_kind kind = mdl_op_options_kind(n->op);
    uint8_t type = (uint8_t)fb_get_u(op, O_OPTIONS_TYPE, 1, 0);
    const char *on = mdl_op_name(n->op), *nm = n->name;
    n->opt = mdl_op_options_default(n->op);
    if (type == 0) return MDL_OK;
    if (type != (uint8_t)kind)
        return mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': options of kind %u do not belong to this operator",
                          on, nm, type);
    fb_table t = fb_get_table(op, O_OPTIONS);
    mdl_op_options *o = &n->opt;
    int rank = n->in[0] >= 0 ? g->tensors[n->in[0]].rank : 0, got;
    mdl_status st = MDL_OK;
    for (size_t i = 0; i < sizeof opt_fields / sizeof opt_fields[0] && !st; i++) {
        const opt_field *f = &opt_fields[i];
        if (f->kind != kind) continue;
        void *at = (unsigned char *)o + f->at;
        int32_t v;
        switch (f->type) {
        case OF_I32: v = fb_get_i32(t, f->id, f->dflt.i); memcpy(at, &v, sizeof v); break;
        case OF_F32: {
            float x = fb_get_f32(t, f->id, f->dflt.f);
            memcpy(at, &x, sizeof x);
            break;
        }
        case OF_BOOL: *(bool *)at = fb_get_u(t, f->id, 1, (uint64_t)f->dflt.i) != 0; break;
        case OF_ENUM: { /* stored as a byte; written at the enum's own size */
            uint8_t e = (uint8_t)fb_get_u(t, f->id, 1, 0);
            if (e >= f->limit)
                st = mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': option %u has unknown value %u", on, nm,
                                (unsigned)f->id, (unsigned)e);
            uint16_t e2 = e;
            uint32_t e4 = e;
            memcpy(at, f->size == 1 ? (void *)&e : f->size == 2 ? (void *)&e2 : (void *)&e4, f->size);
            break;
        }
        default: st = read_act(fb_get_table(t, f->id), at, nm, err); break;
        }
    }
    if (st) return st;
    switch (kind) {
    case MDL_OPTIONS_TRANSPOSE:
        got = read_i32s(t, 0, o->transpose.perm, MDL_MAX_RANK);
        if (got != rank)
            st = mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': permutation has %d entries for rank %d",
                            on, nm, got, rank);
        break;
    case MDL_OPTIONS_SLICE:
        got = read_i64s(t, 0, o->slice.begin, MDL_MAX_RANK);
        if (got != rank || read_i64s(t, 1, o->slice.step, MDL_MAX_RANK) != rank)
            st = mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': begin/step need %d entries", on, nm, rank);
        break;
    case MDL_OPTIONS_PAD:
        got = read_i64s(t, 0, o->pad.pads, 2 * MDL_MAX_RANK);
        if (got != 2 * rank)
            st = mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': %d pads for rank %d (need %d)", on, nm,
                            got, rank, 2 * rank);
        break;
    case MDL_OPTIONS_REDUCE: {
        int32_t axes[MDL_MAX_RANK];
        got = read_i32s(t, 0, axes, MDL_MAX_RANK);
        o->reduce.axes_mask = 0;
        for (int i = 0; i < got; i++) {
            int32_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
            if (a < 0 || a >= rank) got = -1;
            else o->reduce.axes_mask |= 1u << a;
        }
        if (got < 0) st = mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': reduction axes out of range for rank %d", on, nm, rank);
        break;
    }
    default: break;
    }
    return st;
}

/* Bump allocation out of the model's one block. */
typedef struct carver {
    uint8_t *p, *end;
} carver;
static void *carve(carver *c, size_t bytes) {
    uint8_t *r = (uint8_t *)mdl__align_up((size_t)c->p, 16);
    c->p = r + bytes;
    MDL_ASSERT(c->p <= c->end); /* sized exactly by mdl__format_read */
    return r;
}

/* Index lists are range-checked later, by mdl__graph_check. */
static void read_indices(fb_vec v, int32_t *out) {
    for (uint32_t i = 0; i < v.len; i++) out[i] = fb_vec_i32(v, i);
}

/* A block-sparse weight (format 2.2, src/ops/sparse.h), x->data at its values.  Every offset and
   column is checked here, so that the sparse product reads only inside the file. */
static mdl_status read_sparse(mdl_model *m, carver *c, fb_table sp, mdl__tensor *x, int32_t i,
                              fb_vec data, mdl_error *err) {
    const char *nm = x->name;
    int64_t C = x->rank >= 2 ? x->dims[x->rank - 1] : 0, R = 1;
    bool bad = (x->dtype != MDL_DTYPE_FLOAT32 && x->dtype != MDL_DTYPE_INT8) || x->rank < 2 || C < 1 ||
               C > INT32_MAX;
    for (int32_t d = 0; d + 1 < x->rank && !bad; d++)
        bad = x->dims[d] < 1 || __builtin_mul_overflow(R, x->dims[d], &R) || R > INT32_MAX;
    if (bad)
        return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s': block-sparse storage needs a float32 "
                          "or int8 tensor of rank >= 2 with dims in [1, 2^31)", (int)i, nm);
    bool tr = fb_get_u(sp, SP_TRANSPOSED, 1, 0) != 0;
    int64_t N = tr ? C : R, K = tr ? R : C, groups = mdl__bsr_groups(N);
    fb_vec ptr = fb_get_vec(sp, SP_PTR), col = fb_get_vec(sp, SP_COL);
    if ((int64_t)ptr.len != groups + 1)
        return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s': %u block offsets for %lld row groups "
                          "(need %lld)", (int)i, nm, (unsigned)ptr.len, (long long)groups, (long long)groups + 1);
    const int32_t *pp = (const int32_t *)(m->buf + ptr.data), *cc = (const int32_t *)(m->buf + col.data);
    if (pp[0] != 0 || (int64_t)pp[groups] != (int64_t)col.len)
        return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s': block offsets run from %d to %d for %u "
                          "blocks", (int)i, nm, (int)pp[0], (int)pp[groups], (unsigned)col.len);
    for (int64_t g = 0; g < groups; g++) {
        if (pp[g] > pp[g + 1] || pp[g + 1] > (int64_t)col.len)
            return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s': block offsets of row group %lld "
                              "(%d, %d) decrease or pass %u blocks", (int)i, nm, (long long)g, (int)pp[g],
                              (int)pp[g + 1], (unsigned)col.len);
        for (int32_t j = pp[g]; j < pp[g + 1]; j++)
            if (cc[j] < 0 || cc[j] >= K || (j > pp[g] && cc[j] <= cc[j - 1]))
                return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s': block %d (row group %lld) has "
                                  "column %d: out of [0, %lld) or not increasing", (int)i, nm, (int)j,
                                  (long long)g, (int)cc[j], (long long)K);
    }
    const size_t es = mdl_dtype_size(x->dtype);
    if ((uint64_t)data.len != (uint64_t)col.len * MDL_SPARSE_BN * es)
        return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s': buffer holds %u bytes, %u blocks of "
                          "%d %s values need %llu", (int)i, nm, (unsigned)data.len, (unsigned)col.len,
                          MDL_SPARSE_BN, mdl_dtype_name(x->dtype), (unsigned long long)col.len * MDL_SPARSE_BN * es);
    mdl__bsr *s = carve(c, sizeof *s);
    *s = (mdl__bsr){.N = N, .K = K, .nblocks = (int64_t)col.len, .ptr = pp, .col = cc, .val = x->data};
    x->sparse = s;
    x->sparse_transposed = tr;
    return MDL_OK;
}

static mdl_status read_tensor(mdl_model *m, carver *c, fb_table t, int32_t i, fb_vec buffers,
                              mdl_error *err) {
    mdl__tensor *x = &m->g.tensors[i];
    x->name = fb_get_str(t, T_NAME, "");
    uint8_t dt = (uint8_t)fb_get_u(t, T_DTYPE, 1, 0);
    if (dt >= MDL_DTYPE_COUNT)
        return mdl__error(err, MDL_UNSUPPORTED, "tensor %d '%s': unknown dtype %u", (int)i, x->name, dt);
    x->dtype = (mdl_dtype)dt;
    fb_vec shape = fb_get_vec(t, T_SHAPE);
    if (shape.len > MDL_MAX_RANK)
        return mdl__error(err, MDL_UNSUPPORTED, "tensor %d '%s': rank %u exceeds %d", (int)i, x->name,
                          (unsigned)shape.len, MDL_MAX_RANK);
    x->rank = (int32_t)shape.len;
    for (uint32_t d = 0; d < shape.len; d++) x->dims[d] = fb_vec_i64(shape, d);
    fb_vec syms = fb_get_vec(t, T_DIM_SYMBOLS);
    if (!MDL__DYNAMIC) {
        for (uint32_t d = 0; d < syms.len; d++)
            if (fb_vec_i32(syms, d) != MDL__DIM_FIXED)
                return mdl__error(err, MDL_UNSUPPORTED, "tensor %d '%s' has dynamic dims, which a runtime "
                                  "built with MDL_NO_DYNAMIC does not read", (int)i, x->name);
    } else if (syms.len) {
        if (syms.len != shape.len)
            return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s': %u dim symbols for rank %u",
                              (int)i, x->name, (unsigned)syms.len, (unsigned)shape.len);
        int32_t *codes = carve(c, syms.len * sizeof(int32_t));
        bool dynamic = false;
        for (uint32_t d = 0; d < syms.len; d++) {
            codes[d] = fb_vec_i32(syms, d);
            if (codes[d] == MDL__DIM_FIXED) continue;
            /* range-checked with the symbols by mdl__graph_check_syms */
            if (x->dims[d] != -1)
                return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s': dynamic dim %u holds %lld "
                                  "(must be -1)", (int)i, x->name, (unsigned)d, (long long)x->dims[d]);
            x->dims[d] = 0; /* until the graph check gives it a value */
            dynamic = true;
        }
        if (dynamic) x->sym = codes;
    }
    if (!mdl__shape_size(x->rank, x->dims, mdl_dtype_size(x->dtype), &x->count, &x->bytes)) {
        char s[128];
        return mdl__error(err, MDL_SHAPE, "tensor %d '%s': shape %s is negative or too large", (int)i,
                          x->name, mdl__dims_str(s, sizeof s, x->rank, x->dims));
    }
    uint32_t b = (uint32_t)fb_get_u(t, T_BUFFER, 4, 0);
    if (b >= buffers.len && b != 0)
        return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s': buffer %u of %u", (int)i, x->name,
                          (unsigned)b, (unsigned)buffers.len);
    fb_table sp = fb_get_table(t, T_SPARSE);
    if (sp.pos && (!MDL__SPARSE || !b))
        return mdl__error(err, MDL__SPARSE ? MDL_CORRUPT_MODEL : MDL_UNSUPPORTED, "tensor %d '%s': %s",
                          (int)i, x->name, MDL__SPARSE ? "block-sparse storage without data"
                          : "stored block-sparse, which a runtime built with MDL_SMALL_CODE does not read");
    if (b) {
        fb_vec data = fb_get_vec(fb_vec_table(buffers, b), 0);
        /* zero-byte weights still need a non-NULL address to count as constant */
        x->data = data.data ? m->buf + data.data : m->buf;
        if (MDL__SPARSE && sp.pos) { /* block-sparse: the blocks' values (refused above with MDL_SMALL_CODE) */
            mdl_status st = read_sparse(m, c, sp, x, i, data, err);
            if (st) return st;
        } else if (data.len != x->bytes) {
            return mdl__error(err, MDL_CORRUPT_MODEL,
                              "tensor %d '%s': buffer %u holds %u bytes, %s shape needs %zu", (int)i,
                              x->name, (unsigned)b, (unsigned)data.len, mdl_dtype_name(x->dtype), x->bytes);
        }
        m->weight_bytes += data.len;
    }
    fb_table q = fb_get_table(t, T_QUANT);
    if (q.pos) {
        fb_vec sc = fb_get_vec(q, Q_SCALE), zp = fb_get_vec(q, Q_ZERO_POINT);
        int32_t axis = fb_get_i32(q, Q_AXIS, 0);
        if (sc.len == 0 || zp.len != sc.len)
            return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s': %u scales and %u zero points",
                              (int)i, x->name, (unsigned)sc.len, (unsigned)zp.len);
        if (sc.len > 1 && (axis < 0 || axis >= x->rank || x->dims[axis] != (int64_t)sc.len))
            return mdl__error(err, MDL_CORRUPT_MODEL, "tensor %d '%s': %u scales do not match axis %d",
                              (int)i, x->name, (unsigned)sc.len, (int)axis);
        x->nquant = (int32_t)sc.len;
        x->quant_axis = axis;
        x->scale = (const float *)(m->buf + sc.data);
        x->zero_point = (const int64_t *)(m->buf + zp.data);
    }
    return MDL_OK;
}

mdl_status mdl__format_verify(const uint8_t *buf, size_t size, mdl_error *err) {
    return fb_verify(buf, size, "MDL1", &d_model, err);
}

mdl_status mdl__format_read(mdl_model *m, mdl_error *err) {
    mdl_status st = fb_verify(m->buf, m->size, "MDL1", &d_model, err);
    if (st) return st;
    fb_table root = fb_root(m->buf);
    m->format_major = (int)fb_get_u(root, M_MAJOR, 2, 0);
    m->format_minor = (int)fb_get_u(root, M_MINOR, 2, 0);
    if (m->format_major != MDL_FORMAT_MAJOR)
        return mdl__error(err, MDL_VERSION,
                          "model format %d.%d is not supported by this runtime (reads %d.x); "
                          "convert the model again or update mdeploy",
                          m->format_major, m->format_minor, MDL_FORMAT_MAJOR);
    m->name = fb_get_str(root, M_NAME, "");
    m->version = fb_get_str(root, M_VERSION, "");
    m->producer = fb_get_str(root, M_PRODUCER, "");
    m->description = fb_get_str(root, M_DESCRIPTION, "");
    fb_vec meta = fb_get_vec(root, M_METADATA), tensors = fb_get_vec(root, M_TENSORS);
    fb_vec ops = fb_get_vec(root, M_OPERATORS), ins = fb_get_vec(root, M_INPUTS);
    fb_vec outs = fb_get_vec(root, M_OUTPUTS), buffers = fb_get_vec(root, M_BUFFERS);
    fb_table plan = fb_get_table(root, M_PLAN);
    fb_vec symbols = fb_get_vec(root, M_SYMBOLS);
    if (!MDL__DYNAMIC && symbols.len)
        return mdl__error(err, MDL_UNSUPPORTED,
                          "model has %u dynamic dims (symbols, e.g. '%s') and this runtime is built "
                          "with MDL_NO_DYNAMIC (fixed shapes only): convert it with fixed input "
                          "shapes (mdeploy-convert --input-shape)",
                          (unsigned)symbols.len, fb_get_str(fb_vec_table(symbols, 0), S_NAME, ""));
    if (symbols.len > MDL__MAX_SYMBOLS)
        return mdl__error(err, MDL_CORRUPT_MODEL, "model has %u symbolic dims (at most %d)",
                          (unsigned)symbols.len, MDL__MAX_SYMBOLS);

    /* Everything below is sized from verified vector lengths (each bounded by the file size). */
    /* Each carve() rounds up to 16 bytes, so the sum counts pieces rounded the same way. */
#define PIECE(n) mdl__align_up((size_t)(n), 16)
    size_t bytes = 16 + PIECE(2 * meta.len * sizeof(char *)) + PIECE(tensors.len * sizeof(mdl__tensor)) +
                   PIECE(ops.len * sizeof(mdl__node)) + PIECE(ins.len * sizeof(int32_t)) +
                   PIECE(outs.len * sizeof(int32_t));
    for (uint32_t i = 0; i < ops.len; i++) {
        fb_table op = fb_vec_table(ops, i);
        bytes += PIECE(fb_get_vec(op, O_INPUTS).len * sizeof(int32_t)) +
                 PIECE(fb_get_vec(op, O_OUTPUTS).len * sizeof(int32_t));
    }
    if (plan.pos) bytes += PIECE(tensors.len * sizeof(size_t)) + PIECE(ops.len * sizeof(size_t));
    for (uint32_t i = 0; i < tensors.len; i++)
        bytes += PIECE(fb_get_vec(fb_vec_table(tensors, i), T_DIM_SYMBOLS).len * sizeof(int32_t)) +
                 (MDL__SPARSE && fb_get_table(fb_vec_table(tensors, i), T_SPARSE).pos ? PIECE(sizeof(mdl__bsr)) : 0);
    bytes += PIECE(symbols.len * sizeof(mdl__symbol)) + PIECE(symbols.len * sizeof(int64_t));
#undef PIECE
    m->block = mdl__alloc(m->alloc, bytes);
    if (!m->block) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory reading the model (%zu bytes)", bytes);
    memset(m->block, 0, bytes);
    carver c = {m->block, (uint8_t *)m->block + bytes};
    m->nmeta = (int32_t)meta.len;
    m->meta = carve(&c, 2 * meta.len * sizeof(char *));
    for (uint32_t i = 0; i < meta.len; i++) {
        fb_table kv = fb_vec_table(meta, i);
        m->meta[2 * i] = fb_get_str(kv, 0, "");
        m->meta[2 * i + 1] = fb_get_str(kv, 1, "");
    }
    mdl__graph *g = &m->g;
    g->ntensors = (int32_t)tensors.len;
    g->nnodes = (int32_t)ops.len;
    g->ninputs = (int32_t)ins.len;
    g->noutputs = (int32_t)outs.len;
    g->tensors = carve(&c, tensors.len * sizeof(mdl__tensor));
    g->nodes = carve(&c, ops.len * sizeof(mdl__node));
    g->inputs = carve(&c, ins.len * sizeof(int32_t));
    g->outputs = carve(&c, outs.len * sizeof(int32_t));
    read_indices(ins, g->inputs);
    read_indices(outs, g->outputs);
    if (MDL__DYNAMIC && symbols.len) {
        mdl__symbol *sy = carve(&c, symbols.len * sizeof(mdl__symbol));
        int64_t *val = carve(&c, symbols.len * sizeof(int64_t));
        for (uint32_t i = 0; i < symbols.len; i++) {
            fb_table y = fb_vec_table(symbols, i);
            sy[i].name = fb_get_str(y, S_NAME, "");
            sy[i].max = (int64_t)fb_get_u(y, S_MAX, 8, 0);
            sy[i].initial = (int64_t)fb_get_u(y, S_INITIAL, 8, 1);
            val[i] = sy[i].initial; /* checked by mdl__graph_check_syms */
        }
        g->nsyms = (int32_t)symbols.len;
        g->syms = sy;
        g->symval = val;
    }
    for (uint32_t i = 0; i < tensors.len; i++)
        if ((st = read_tensor(m, &c, fb_vec_table(tensors, i), (int32_t)i, buffers, err))) return st;
    for (uint32_t i = 0; i < ops.len; i++) {
        fb_table op = fb_vec_table(ops, i);
        mdl__node *n = &g->nodes[i];
        n->name = fb_get_str(op, O_NAME, "");
        uint16_t code = (uint16_t)fb_get_u(op, O_OP, 2, 0);
        if (code >= MDL_OP_COUNT)
            return mdl__error(err, MDL_UNSUPPORTED,
                              "operator %u '%s': unknown op code %u (model needs a newer runtime)", (unsigned)i,
                              n->name, code);
        n->op = (mdl_op)code;
        fb_vec vi = fb_get_vec(op, O_INPUTS), vo = fb_get_vec(op, O_OUTPUTS);
        n->nin = (int32_t)vi.len;
        n->nout = (int32_t)vo.len;
        n->in = carve(&c, vi.len * sizeof(int32_t));
        n->out = carve(&c, vo.len * sizeof(int32_t));
        read_indices(vi, n->in);
        read_indices(vo, n->out);
        if (n->nin < 1 || n->nin > MDL_MAX_NODE_IO || n->nout < 1 || n->nout > MDL_MAX_NODE_IO)
            return mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': %d inputs and %d outputs (1..%d allowed)",
                              mdl_op_name(n->op), n->name, (int)n->nin, (int)n->nout, MDL_MAX_NODE_IO);
        if (n->in[0] < -1 || n->in[0] >= g->ntensors)
            return mdl__error(err, MDL_CORRUPT_MODEL, "%s '%s': input 0 refers to tensor %d of %d",
                              mdl_op_name(n->op), n->name, (int)n->in[0], (int)g->ntensors);
        if ((st = read_options(op, n, g, err))) return st;
    }
    if (plan.pos) {
        fb_vec to = fb_get_vec(plan, 1), so = fb_get_vec(plan, 2);
        uint64_t arena = fb_get_u(plan, 0, 8, 0);
        if (to.len != tensors.len || so.len != ops.len || arena > SIZE_MAX / 2)
            return mdl__error(err, MDL_CORRUPT_MODEL,
                              "memory plan has %u tensor and %u scratch offsets for %u tensors and %u "
                              "operators", (unsigned)to.len, (unsigned)so.len, (unsigned)tensors.len, (unsigned)ops.len);
        m->plan.arena_bytes = (size_t)arena;
        m->plan.tensor_offsets = carve(&c, tensors.len * sizeof(size_t));
        m->plan.scratch_offsets = carve(&c, ops.len * sizeof(size_t));
        for (uint32_t i = 0; i < to.len; i++) {
            uint64_t v = fb_u64(m->buf + to.data + 8 * i);
            m->plan.tensor_offsets[i] = v > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)v;
        }
        for (uint32_t i = 0; i < so.len; i++) {
            uint64_t v = fb_u64(m->buf + so.data + 8 * i);
            m->plan.scratch_offsets[i] = v > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)v;
        }
    }
    return MDL_OK;
}

/* ---- writing ----------------------------------------------------------------------------- */

static fb_ref write_act(fb_builder *b, const mdl_fused_act *a) {
    fb_start_table(b);
    fb_add_u8(b, 0, (uint8_t)a->kind);
    fb_add_f32(b, 1, a->clip_min);
    fb_add_f32(b, 2, a->clip_max);
    return fb_end_table(b);
}

static fb_ref write_options(fb_builder *b, const mdl__node *n, int rank) {
    const mdl_op_options *o = &n->opt;
    fb_ref r1 = 0, r2 = 0;
    switch (mdl_op_options_kind(n->op)) {
    case MDL_OPTIONS_FC:
        r1 = write_act(b, &o->fc.act);
        fb_start_table(b);
        fb_add_ref(b, 0, r1);
        break;
    case MDL_OPTIONS_BINARY:
        r1 = write_act(b, &o->binary.act);
        fb_start_table(b);
        fb_add_ref(b, 0, r1);
        break;
    case MDL_OPTIONS_CONV:
        r1 = write_act(b, &o->conv.act);
        fb_start_table(b);
        fb_add_i32(b, 0, o->conv.stride[0]);
        fb_add_i32(b, 1, o->conv.stride[1]);
        fb_add_i32(b, 2, o->conv.dilation[0]);
        fb_add_i32(b, 3, o->conv.dilation[1]);
        for (int i = 0; i < 4; i++) fb_add_i32(b, 4 + i, o->conv.pad[i]);
        fb_add_i32(b, 8, o->conv.group);
        fb_add_ref(b, 9, r1);
        break;
    case MDL_OPTIONS_POOL:
        fb_start_table(b);
        for (int i = 0; i < 2; i++) {
            fb_add_i32(b, i, o->pool.kernel[i]);
            fb_add_i32(b, 2 + i, o->pool.stride[i]);
        }
        for (int i = 0; i < 4; i++) fb_add_i32(b, 4 + i, o->pool.pad[i]);
        fb_add_u8(b, 8, o->pool.count_include_pad);
        break;
    case MDL_OPTIONS_ACT:
        fb_start_table(b);
        fb_add_f32(b, 0, o->act.alpha);
        fb_add_f32(b, 1, o->act.beta);
        fb_add_f32(b, 2, o->act.min);
        fb_add_f32(b, 3, o->act.max);
        fb_add_u8(b, 4, o->act.approximate);
        break;
    case MDL_OPTIONS_AXIS:
        fb_start_table(b);
        fb_add_i32(b, 0, o->axis.axis);
        break;
    case MDL_OPTIONS_TRANSPOSE:
        r1 = fb_create_vector(b, o->transpose.perm, (size_t)rank, 4, 4);
        fb_start_table(b);
        fb_add_ref(b, 0, r1);
        break;
    case MDL_OPTIONS_SLICE:
        r1 = fb_create_vector(b, o->slice.begin, (size_t)rank, 8, 8);
        r2 = fb_create_vector(b, o->slice.step, (size_t)rank, 8, 8);
        fb_start_table(b);
        fb_add_ref(b, 0, r1);
        fb_add_ref(b, 1, r2);
        break;
    case MDL_OPTIONS_PAD:
        r1 = fb_create_vector(b, o->pad.pads, 2 * (size_t)rank, 8, 8);
        fb_start_table(b);
        fb_add_ref(b, 0, r1);
        fb_add_f32(b, 1, o->pad.value);
        break;
    case MDL_OPTIONS_REDUCE: {
        int32_t axes[MDL_MAX_RANK];
        size_t naxes = 0;
        uint32_t mask = o->reduce.axes_mask ? o->reduce.axes_mask : (1u << rank) - 1;
        for (int d = 0; d < rank; d++)
            if (mask & (1u << d)) axes[naxes++] = d;
        r1 = fb_create_vector(b, axes, naxes, 4, 4);
        fb_start_table(b);
        fb_add_ref(b, 0, r1);
        fb_add_u8(b, 1, o->reduce.keepdims);
        break;
    }
    case MDL_OPTIONS_RNN:
        fb_start_table(b);
        fb_add_i32(b, 0, o->rnn.hidden_size);
        fb_add_u8(b, 1, (uint8_t)o->rnn.direction);
        fb_add_u8(b, 2, o->rnn.linear_before_reset);
        break;
    case MDL_OPTIONS_BATCH_NORM:
        fb_start_table(b);
        fb_add_f32(b, 0, o->batch_norm.epsilon);
        break;
    case MDL_OPTIONS_CAST:
        fb_start_table(b);
        fb_add_u8(b, 0, (uint8_t)o->cast.to);
        break;
    case MDL_OPTIONS_RESIZE:
        fb_start_table(b);
        fb_add_i32(b, 0, o->resize.out[0]);
        fb_add_i32(b, 1, o->resize.out[1]);
        fb_add_f32(b, 2, o->resize.scale[0]);
        fb_add_f32(b, 3, o->resize.scale[1]);
        fb_add_u8(b, 4, (uint8_t)o->resize.mode);
        fb_add_u8(b, 5, (uint8_t)o->resize.coord);
        fb_add_u8(b, 6, (uint8_t)o->resize.nearest);
        break;
    default: return 0;
    }
    return fb_end_table(b);
}

/* A block-sparse tensor's SparseBlocks table (0 for a dense one); its values are its buffer. */
static fb_ref write_sparse(fb_builder *b, const mdl__tensor *x) {
    const mdl__bsr *sp = x->sparse;
    if (!sp) return 0;
    fb_ref ptr = fb_create_vector(b, sp->ptr, (size_t)mdl__bsr_groups(sp->N) + 1, 4, 4);
    fb_ref col = fb_create_vector(b, sp->col, (size_t)sp->nblocks, 4, 4);
    fb_start_table(b);
    fb_add_u8(b, SP_TRANSPOSED, x->sparse_transposed);
    fb_add_ref(b, SP_PTR, ptr);
    fb_add_ref(b, SP_COL, col);
    return fb_end_table(b);
}

/* Model.selftest (0 when absent or out of memory: fb_finish then fails).  ids: SelfTestTensor
   index, dtype, shape, data; SelfTestCase inputs, outputs; SelfTest cases, atol, rtol, oracle. */
static fb_ref write_selftest(fb_builder *b, const mdl__selftest *s) {
    size_t most = 1;
    for (int32_t c = 0; c < s->ncases; c++)
        if ((size_t)s->cases[c].nin + (size_t)s->cases[c].nout > most) most = (size_t)s->cases[c].nin + (size_t)s->cases[c].nout;
    fb_ref *refs = mdl__alloc(b->alloc, (most + (size_t)s->ncases) * sizeof(fb_ref));
    if (!refs) {
        b->failed = true;
        return 0;
    }
    fb_ref *crefs = refs + most;
    for (int32_t c = 0; c < s->ncases; c++) {
        const mdl__st_case *k = &s->cases[c];
        for (int32_t j = 0; j < k->nin + k->nout; j++) {
            const mdl__st_tensor *x = j < k->nin ? &k->in[j] : &k->out[j - k->nin];
            fb_ref data = fb_create_vector(b, x->data, x->bytes, 1, 16);
            fb_ref shape = fb_create_vector(b, x->dims, (size_t)x->rank, 8, 8);
            fb_start_table(b);
            fb_add_i32(b, 0, x->index);
            fb_add_u8(b, 1, (uint8_t)x->dtype);
            fb_add_ref(b, 2, shape);
            fb_add_ref(b, 3, data);
            refs[j] = fb_end_table(b);
        }
        fb_ref vin = fb_create_ref_vector(b, refs, (size_t)k->nin);
        fb_ref vout = fb_create_ref_vector(b, refs + k->nin, (size_t)k->nout);
        fb_start_table(b);
        fb_add_ref(b, 0, vin);
        fb_add_ref(b, 1, vout);
        crefs[c] = fb_end_table(b);
    }
    fb_ref cases = fb_create_ref_vector(b, crefs, (size_t)s->ncases);
    fb_ref oracle = fb_create_string(b, s->oracle ? s->oracle : "");
    mdl__free(b->alloc, refs);
    fb_start_table(b);
    fb_add_ref(b, 0, cases);
    fb_add_f32(b, 1, s->atol);
    fb_add_f32(b, 2, s->rtol);
    fb_add_ref(b, 3, oracle);
    return fb_end_table(b);
}

mdl_status mdl__format_write(fb_builder *b, const mdl__graph *g, const mdl__plan *plan,
                             const mdl__meta *meta, const uint8_t **data, size_t *size,
                             mdl_error *err) {
    const mdl_allocator *a = b->alloc;
    size_t nt = (size_t)g->ntensors, nn = (size_t)g->nnodes;
    size_t nrefs = nt + nn + nt + 1 + (size_t)meta->nkv;
    fb_ref *refs = mdl__alloc(a, nrefs * sizeof(fb_ref));
    uint64_t *offs = mdl__alloc(a, (nt + nn + 1) * sizeof(uint64_t));
    if (!refs || !offs) {
        mdl__free(a, refs);
        mdl__free(a, offs);
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory writing the model");
    }
    fb_ref *tref = refs, *oref = refs + nt, *bref = refs + nt + nn, *kvref = bref + nt + 1;
    /* Weight buffers first, each at a 64-byte file offset (MDL__LINE_ALIGN; the reader needs only
       MDL_ALIGN): a mapped file starts on a page, so kernels that read weights in place (the
       x86 direct conv) get whole cache lines per vector load.  Written back to front, they end up at the end of the file, after
       the small tables, which keeps the graph description together at the front. */
    size_t nbuf = 1;
    fb_start_table(b);
    bref[0] = fb_end_table(b);
    uint32_t *buffer_of = (uint32_t *)offs; /* reuse as a temporary: tensor -> buffer index */
    for (size_t t = 0; t < nt; t++) {
        buffer_of[t] = 0;
        if (!g->tensors[t].data) continue;
        const mdl__bsr *sp = g->tensors[t].sparse; /* block-sparse: the stored blocks' values */
        fb_ref v = sp ? fb_create_vector(b, sp->val, (size_t)sp->nblocks * MDL_SPARSE_BN * mdl_dtype_size(g->tensors[t].dtype), 1, MDL__LINE_ALIGN)
                      : fb_create_vector(b, g->tensors[t].data, g->tensors[t].bytes, 1, MDL__LINE_ALIGN);
        fb_start_table(b);
        fb_add_ref(b, 0, v);
        bref[nbuf] = fb_end_table(b);
        buffer_of[t] = (uint32_t)nbuf++;
    }
    for (size_t t = 0; t < nt; t++) {
        const mdl__tensor *x = &g->tensors[t];
        fb_ref name = fb_create_string(b, x->name ? x->name : "");
        int64_t dims[MDL_MAX_RANK];
        for (int32_t d = 0; d < x->rank; d++)
            dims[d] = x->sym && x->sym[d] != MDL__DIM_FIXED ? -1 : x->dims[d];
        fb_ref shape = fb_create_vector(b, dims, (size_t)x->rank, 8, 8);
        fb_ref syms = x->sym ? fb_create_vector(b, x->sym, (size_t)x->rank, 4, 4) : 0;
        fb_ref quant = 0;
        if (x->nquant > 0) {
            fb_ref sc = fb_create_vector(b, x->scale, (size_t)x->nquant, 4, 4);
            fb_ref zp = fb_create_vector(b, x->zero_point, (size_t)x->nquant, 8, 8);
            fb_start_table(b);
            fb_add_ref(b, Q_SCALE, sc);
            fb_add_ref(b, Q_ZERO_POINT, zp);
            fb_add_i32(b, Q_AXIS, x->quant_axis);
            quant = fb_end_table(b);
        }
        fb_ref sparse = write_sparse(b, x);
        fb_start_table(b);
        fb_add_ref(b, T_NAME, name);
        fb_add_u8(b, T_DTYPE, (uint8_t)x->dtype);
        fb_add_ref(b, T_SHAPE, shape);
        if (buffer_of[t]) fb_add_u32(b, T_BUFFER, buffer_of[t]);
        fb_add_ref(b, T_QUANT, quant);
        if (syms) fb_add_ref(b, T_DIM_SYMBOLS, syms);
        if (sparse) fb_add_ref(b, T_SPARSE, sparse);
        tref[t] = fb_end_table(b);
    }
    for (size_t i = 0; i < nn; i++) {
        const mdl__node *n = &g->nodes[i];
        int rank = n->in[0] >= 0 ? g->tensors[n->in[0]].rank : 0;
        fb_ref name = fb_create_string(b, n->name ? n->name : "");
        fb_ref vin = fb_create_vector(b, n->in, (size_t)n->nin, 4, 4);
        fb_ref vout = fb_create_vector(b, n->out, (size_t)n->nout, 4, 4);
        fb_ref opts = write_options(b, n, rank);
        fb_start_table(b);
        fb_add_u16(b, O_OP, (uint16_t)n->op);
        fb_add_ref(b, O_NAME, name);
        fb_add_ref(b, O_INPUTS, vin);
        fb_add_ref(b, O_OUTPUTS, vout);
        if (opts) {
            fb_add_u8(b, O_OPTIONS_TYPE, (uint8_t)mdl_op_options_kind(n->op));
            fb_add_ref(b, O_OPTIONS, opts);
        }
        oref[i] = fb_end_table(b);
    }
    for (int32_t i = 0; i < meta->nkv; i++) {
        fb_ref k = fb_create_string(b, meta->kv[2 * i]), v = fb_create_string(b, meta->kv[2 * i + 1]);
        fb_start_table(b);
        fb_add_ref(b, 0, k);
        fb_add_ref(b, 1, v);
        kvref[i] = fb_end_table(b);
    }
    fb_ref r_plan = 0;
    if (!g->nsyms && plan) {
        for (size_t t = 0; t < nt; t++)
            offs[t] = plan->tensor_offsets[t] == MDL_NO_OFFSET ? 0 : plan->tensor_offsets[t];
        for (size_t i = 0; i < nn; i++) offs[nt + i] = plan->scratch_offsets[i];
        fb_ref v_to = fb_create_vector(b, offs, nt, 8, 8);
        fb_ref v_so = fb_create_vector(b, offs + nt, nn, 8, 8);
        fb_start_table(b);
        fb_add_u64(b, 0, plan->arena_bytes);
        fb_add_ref(b, 1, v_to);
        fb_add_ref(b, 2, v_so);
        r_plan = fb_end_table(b);
    }
    /* a plan fits one set of shapes: models with dynamic dims are planned by their sessions */
    fb_ref r_syms = 0;
    if (g->nsyms) {
        fb_ref yref[MDL__MAX_SYMBOLS];
        for (int32_t i = 0; i < g->nsyms && i < MDL__MAX_SYMBOLS; i++) {
            fb_ref nm = fb_create_string(b, g->syms[i].name ? g->syms[i].name : "");
            fb_start_table(b);
            fb_add_ref(b, S_NAME, nm);
            if (g->syms[i].max) fb_add_u64(b, S_MAX, (uint64_t)g->syms[i].max);
            if (g->syms[i].initial != 1) fb_add_u64(b, S_INITIAL, (uint64_t)g->syms[i].initial);
            yref[i] = fb_end_table(b);
        }
        r_syms = fb_create_ref_vector(b, yref, (size_t)g->nsyms);
    }
    fb_ref r_selftest = meta->selftest ? write_selftest(b, meta->selftest) : 0;
    fb_ref r_buffers = fb_create_ref_vector(b, bref, nbuf);
    fb_ref r_tensors = fb_create_ref_vector(b, tref, nt);
    fb_ref r_ops = fb_create_ref_vector(b, oref, nn);
    fb_ref r_meta = fb_create_ref_vector(b, kvref, (size_t)meta->nkv);
    fb_ref r_in = fb_create_vector(b, g->inputs, (size_t)g->ninputs, 4, 4);
    fb_ref r_out = fb_create_vector(b, g->outputs, (size_t)g->noutputs, 4, 4);
    fb_ref s_name = fb_create_string(b, meta->name ? meta->name : "");
    fb_ref s_ver = fb_create_string(b, meta->version ? meta->version : "");
    fb_ref s_prod = fb_create_string(b, meta->producer ? meta->producer : "");
    fb_ref s_desc = fb_create_string(b, meta->description ? meta->description : "");
    fb_ref r_seal = mdl__seal_build(b);
    fb_start_table(b);
    fb_add_u16(b, M_MAJOR, MDL_FORMAT_MAJOR);
    fb_add_u16(b, M_MINOR, MDL_FORMAT_MINOR);
    fb_add_ref(b, M_NAME, s_name);
    fb_add_ref(b, M_VERSION, s_ver);
    fb_add_ref(b, M_PRODUCER, s_prod);
    fb_add_ref(b, M_DESCRIPTION, s_desc);
    fb_add_ref(b, M_METADATA, r_meta);
    fb_add_ref(b, M_TENSORS, r_tensors);
    fb_add_ref(b, M_OPERATORS, r_ops);
    fb_add_ref(b, M_INPUTS, r_in);
    fb_add_ref(b, M_OUTPUTS, r_out);
    fb_add_ref(b, M_BUFFERS, r_buffers);
    fb_add_ref(b, M_PLAN, r_plan);
    if (r_syms) fb_add_ref(b, M_SYMBOLS, r_syms);
    if (meta->security_counter) fb_add_u64(b, M_SECURITY_COUNTER, meta->security_counter);
    fb_add_ref(b, M_SEAL, r_seal);
    if (r_selftest) fb_add_ref(b, M_SELFTEST, r_selftest);
    fb_ref root = fb_end_table(b);
    mdl__free(a, refs);
    mdl__free(a, offs);
    if (!fb_finish(b, root, "MDL1", data, size))
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory or model larger than 2 GiB while writing");
    mdl__seal_finish((uint8_t *)(uintptr_t)*data, *size); /* the builder's own buffer */
    return MDL_OK;
}
