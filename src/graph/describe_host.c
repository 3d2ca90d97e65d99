/* Human-readable node options for inspect tools (host only: uses snprintf). */
#include "model.h"

#include <stdio.h>
#include <string.h>

/* Appends formatted text at *n (bounded by size). */
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (*n < size) *n += (size_t)snprintf(buf + *n, size - *n, __VA_ARGS__);                   \
    } while (0)

static void act(char *buf, size_t size, size_t *n, const mdl_fused_act *a) {
    static const char *const names[] = {"", "relu", "relu6", "clip"};
    if (a->kind == MDL_ACT_CLIP) ADD(" act=clip(%g,%g)", (double)a->clip_min, (double)a->clip_max);
    else if (a->kind > MDL_ACT_NONE && a->kind < MDL_ACT_COUNT) ADD(" act=%s", names[a->kind]);
}

static void ints(char *buf, size_t size, size_t *n, const char *key, const int64_t *v, int count) {
    ADD(" %s=", key);
    for (int i = 0; i < count; i++) ADD(i ? ",%lld" : "%lld", (long long)v[i]);
}

size_t mdl_model_node_attrs(const mdl_model *m, int i, char *buf, size_t size) {
    if (!m || i < 0 || i >= m->g.nnodes || !buf || !size) return 0;
    const mdl__node *node = &m->g.nodes[i];
    const mdl_op_options *o = &node->opt;
    int rank = node->in[0] >= 0 ? m->g.tensors[node->in[0]].rank : 0;
    size_t len = 0, *n = &len;
    buf[0] = '\0';
    int64_t v[2 * MDL_MAX_RANK];
    switch (mdl_op_options_kind(node->op)) {
    case MDL_OPTIONS_FC: act(buf, size, n, &o->fc.act); break;
    case MDL_OPTIONS_BINARY: act(buf, size, n, &o->binary.act); break;
    case MDL_OPTIONS_CONV:
        ADD(" stride=%dx%d", o->conv.stride[0], o->conv.stride[1]);
        if (o->conv.dilation[0] != 1 || o->conv.dilation[1] != 1)
            ADD(" dilation=%dx%d", o->conv.dilation[0], o->conv.dilation[1]);
        if (o->conv.pad[0] | o->conv.pad[1] | o->conv.pad[2] | o->conv.pad[3])
            ADD(" pad=%d,%d,%d,%d", o->conv.pad[0], o->conv.pad[1], o->conv.pad[2], o->conv.pad[3]);
        if (o->conv.group != 1) ADD(" group=%d", o->conv.group);
        act(buf, size, n, &o->conv.act);
        break;
    case MDL_OPTIONS_POOL:
        ADD(" kernel=%dx%d stride=%dx%d", o->pool.kernel[0], o->pool.kernel[1], o->pool.stride[0],
            o->pool.stride[1]);
        if (o->pool.pad[0] | o->pool.pad[1] | o->pool.pad[2] | o->pool.pad[3])
            ADD(" pad=%d,%d,%d,%d", o->pool.pad[0], o->pool.pad[1], o->pool.pad[2], o->pool.pad[3]);
        if (node->op == MDL_OP_AVG_POOL2D && o->pool.count_include_pad) ADD(" count_include_pad");
        break;
    case MDL_OPTIONS_ACT:
        if (node->op == MDL_OP_CLIP) ADD(" min=%g max=%g", (double)o->act.min, (double)o->act.max);
        else if (node->op == MDL_OP_LEAKY_RELU) ADD(" alpha=%g", (double)o->act.alpha);
        else if (node->op == MDL_OP_HARD_SIGMOID) ADD(" alpha=%g beta=%g", (double)o->act.alpha, (double)o->act.beta);
        else if (node->op == MDL_OP_GELU && o->act.approximate) ADD(" approximate=tanh");
        break;
    case MDL_OPTIONS_AXIS: ADD(" axis=%d", o->axis.axis); break;
    case MDL_OPTIONS_TRANSPOSE:
        for (int d = 0; d < rank; d++) v[d] = o->transpose.perm[d];
        ints(buf, size, n, "perm", v, rank);
        break;
    case MDL_OPTIONS_SLICE:
        ints(buf, size, n, "begin", o->slice.begin, rank);
        ints(buf, size, n, "step", o->slice.step, rank);
        break;
    case MDL_OPTIONS_PAD:
        ints(buf, size, n, "pads", o->pad.pads, 2 * rank);
        if (o->pad.value != 0.0f) ADD(" value=%g", (double)o->pad.value);
        break;
    case MDL_OPTIONS_REDUCE: {
        int k = 0;
        for (int d = 0; d < rank; d++)
            if (!o->reduce.axes_mask || (o->reduce.axes_mask >> d & 1u)) v[k++] = d;
        ints(buf, size, n, "axes", v, k);
        ADD(" keepdims=%d", o->reduce.keepdims ? 1 : 0);
        break;
    }
    case MDL_OPTIONS_RNN: {
        static const char *const dirs[] = {"forward", "reverse", "bidirectional"};
        ADD(" hidden=%d %s", o->rnn.hidden_size, dirs[o->rnn.direction]);
        if (node->op == MDL_OP_GRU && o->rnn.linear_before_reset) ADD(" linear_before_reset");
        break;
    }
    case MDL_OPTIONS_BATCH_NORM: ADD(" epsilon=%g", (double)o->batch_norm.epsilon); break;
    case MDL_OPTIONS_RESIZE: {
        static const char *const coords[] = {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"};
        static const char *const nearest[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
        ADD(" %s %s", o->resize.mode == MDL_RESIZE_LINEAR ? "linear" : "nearest", coords[o->resize.coord]);
        if (o->resize.mode == MDL_RESIZE_NEAREST) ADD(" %s", nearest[o->resize.nearest]);
        ADD(" scale=%gx%g", (double)o->resize.scale[0], (double)o->resize.scale[1]);
        if (o->resize.out[0] || o->resize.out[1]) ADD(" out=%dx%d", o->resize.out[0], o->resize.out[1]);
        break;
    }
    case MDL_OPTIONS_CAST: ADD(" to=%s", mdl_dtype_name(o->cast.to)); break;
    default: break;
    }
    /* drop the leading space */
    if (len && buf[0] == ' ') {
        memmove(buf, buf + 1, strlen(buf));
        len--;
    }
    return len < size ? len : size - 1;
}
