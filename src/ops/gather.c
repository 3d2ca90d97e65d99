/* Gather (ONNX semantics, = NumPy take along one axis); also the embedding lookup.
 *
 * data [A..., N, B...] with indices I (any rank, int32 or int64) along axis gives
 * [A..., I..., B...].  The copy unit is the contiguous block of prod(B) elements after the axis:
 * for an embedding table [V, D] gathered on axis 0 that is one memcpy of a whole row per id.
 * Indices come from the user's data, so run checks every one before anything is read. */
#include "int8_elem.h"

#include <string.h>

static inline int64_t index_at(const void *ix, bool i64, int64_t k) {
    return i64 ? ((const int64_t *)ix)[k] : (int64_t)((const int32_t *)ix)[k];
}

/* Every id must lie in [-N, N) (ONNX: negative ids count from the end). */
static mdl_status check_indices(mdl__kctx *c, const void *ix, bool i64, int64_t K, int64_t N) {
    for (int64_t k = 0; k < K; k++) {
        int64_t id = index_at(ix, i64, k);
        if (id < -N || id >= N)
            return mdl__fail(c, MDL_OUT_OF_RANGE,
                             "index %lld out of range [-%lld, %lld) at position %lld",
                             (long long)id, (long long)N, (long long)N, (long long)k);
    }
    return MDL_OK;
}

/* Per-axis parameters survive on any axis but the gathered one, which the indices replace. */
static bool gather_axis_ok(const mdl__kctx *c, const mdl__tensor *x, int32_t xa,
                           const mdl__tensor *y, int32_t ya) {
    int32_t axis = 0;
    mdl__axis(c->opt->axis.axis, x->rank, &axis);
    if (xa == axis) return false;
    return ya == (xa < axis ? xa : xa - 1 + c->in[1]->rank);
}

static mdl_status gather_prepare(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0], *ix = c->nin > 1 ? c->in[1] : NULL;
    char s1[96];
    if (c->nin != 2 || c->nout != 1 || !x || !ix)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects inputs data, indices and one output");
    if (ix->dtype != MDL_DTYPE_INT32 && ix->dtype != MDL_DTYPE_INT64)
        return mdl__fail(c, MDL_DTYPE, "indices must be int32 or int64, got %s",
                         mdl_dtype_name(ix->dtype));
    int32_t axis = 0;
    if (!mdl__axis(c->opt->axis.axis, x->rank, &axis))
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "axis %d is out of range for data %s (rank %d)",
                         (int)c->opt->axis.axis, mdl__dims_str(s1, sizeof s1, x->rank, x->dims),
                         (int)x->rank);
    if (x->rank - 1 + ix->rank > MDL_MAX_RANK)
        return mdl__fail(c, MDL_UNSUPPORTED, "output rank %d exceeds the maximum %d",
                         (int)(x->rank - 1 + ix->rank), MDL_MAX_RANK);
    /* Constant ids (a fixed row selection) can be checked once, when the model is loaded. */
    if (ix->data) {
        mdl_status st = check_indices(c, ix->data, ix->dtype == MDL_DTYPE_INT64, ix->count,
                                      x->dims[axis]);
        if (st) return st;
    }
    mdl__shape *o = &c->out_shape[0];
    o->dtype = x->dtype;
    o->rank = 0;
    for (int32_t d = 0; d < axis; d++) o->dims[o->rank++] = x->dims[d];
    for (int32_t d = 0; d < ix->rank; d++) o->dims[o->rank++] = ix->dims[d];
    for (int32_t d = axis + 1; d < x->rank; d++) o->dims[o->rank++] = x->dims[d];
    return mdl__quant_same_check(c, x, c->out[0], gather_axis_ok);
}

#define GATHER_ELEMS(T)                                                                            \
    do {                                                                                           \
        const T *s_ = (const T *)src;                                                              \
        T *d_ = (T *)dst;                                                                          \
        for (int64_t o_ = 0; o_ < outer; o_++, s_ += N, d_ += K)                                   \
            for (int64_t k_ = 0; k_ < K; k_++) {                                                   \
                int64_t id_ = index_at(ix, i64, k_);                                               \
                d_[k_] = s_[id_ < 0 ? id_ + N : id_];                                              \
            }                                                                                      \
    } while (0)

static mdl_status gather_run(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0], *ixt = c->in[1];
    const void *ix = c->in_data[1];
    bool i64 = ixt->dtype == MDL_DTYPE_INT64;
    size_t es = mdl_dtype_size(x->dtype);
    int32_t axis = 0;
    mdl__axis(c->opt->axis.axis, x->rank, &axis);
    int64_t outer = 1, inner = 1, N = x->dims[axis], K = ixt->count;
    for (int32_t d = 0; d < axis; d++) outer *= x->dims[d];
    for (int32_t d = axis + 1; d < x->rank; d++) inner *= x->dims[d];
    /* Validate all ids once, before writing anything, so the copy loops need no checks. */
    mdl_status st = check_indices(c, ix, i64, K, N);
    if (st) return st;
    const char *src = c->in_data[0];
    char *dst = c->out_data[0];
    if (outer == 0 || inner == 0 || K == 0) return MDL_OK;
    if (inner == 1) { /* gather on the last axis: element moves, no memcpy calls */
        switch (es) {
        case 1: GATHER_ELEMS(uint8_t); return MDL_OK;
        case 4: GATHER_ELEMS(uint32_t); return MDL_OK;
        case 8: GATHER_ELEMS(uint64_t); return MDL_OK;
        default: break;
        }
    }
    size_t row = (size_t)inner * es;
    for (int64_t o = 0; o < outer; o++) {
        const char *s = src + (size_t)(o * N) * row;
        for (int64_t k = 0; k < K; k++, dst += row) {
            int64_t id = index_at(ix, i64, k);
            memcpy(dst, s + (size_t)(id < 0 ? id + N : id) * row, row);
        }
    }
    return MDL_OK;
}

const mdl__kernel mdl__gather = {.prepare = gather_prepare, .run = gather_run};
