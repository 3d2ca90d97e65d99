/* Dynamic dims in the converter.  The converter's lowering needs concrete sizes (constant
   folding of Shape subgraphs, reshape targets, layout decisions), so a model with dynamic input
   dims is lowered twice, with every symbol at a different prime size each time, and the two
   runtime graphs are compared here.  What is equal in both is fixed; an activation dim that
   equals a symbol's size in both lowerings is that symbol; any other dim that differs is
   computed by its operator when a session fixes the sizes.  Anything else that differs - the
   graph's structure, an operator's options, a constant's contents - was derived from a dynamic
   size in a way the runtime cannot redo, and the conversion fails rather than write a model
   that is right at one size only. */
#include "convert_host.h"
#include "model.h"

#include <stdio.h>
#include <string.h>

static const int64_t probe_primes[2 * MDL_CONVERT_MAX_SHAPES] = {
    11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71,
    73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151};

int64_t mdl__cv_probe_size(int probe, int32_t s) { return probe_primes[2 * s + (probe ? 1 : 0)]; }

static const char *nm(const char *s) { return s ? s : ""; }

/* "x[0]=batch" list of the symbols that the dims of tensor t follow, for messages. */
static void dims_note(const cv_ctx *c, char *buf, size_t size) {
    snprintf(buf, size, "%s", c->sym_where);
}

static bool same_quant(const mdl__tensor *a, const mdl__tensor *b) {
    if (a->nquant != b->nquant || a->quant_axis != b->quant_axis) return false;
    if (!a->nquant) return true;
    return !memcmp(a->scale, b->scale, sizeof(float) * (size_t)a->nquant) &&
           !memcmp(a->zero_point, b->zero_point, sizeof(int64_t) * (size_t)a->nquant);
}

static bool same_act(const mdl_fused_act *a, const mdl_fused_act *b) {
    return a->kind == b->kind && (a->kind != MDL_ACT_CLIP ||
                                  (a->clip_min == b->clip_min && a->clip_max == b->clip_max));
}

/* Options compared by their meaningful fields (union bytes outside the member in use, and
   padding, are not defined). */
static bool same_options(const mdl__graph *g, const mdl__node *a, const mdl__node *b) {
    const mdl_op_options *x = &a->opt, *y = &b->opt;
    int32_t r = a->in[0] >= 0 ? g->tensors[a->in[0]].rank : 0;
    size_t rb = (size_t)(r > 0 ? r : 0);
    switch (mdl_op_options_kind(a->op)) {
    case MDL_OPTIONS_FC: return same_act(&x->fc.act, &y->fc.act);
    case MDL_OPTIONS_BINARY: return same_act(&x->binary.act, &y->binary.act);
    case MDL_OPTIONS_CONV:
        return !memcmp(x->conv.stride, y->conv.stride, sizeof x->conv.stride) &&
               !memcmp(x->conv.dilation, y->conv.dilation, sizeof x->conv.dilation) &&
               !memcmp(x->conv.pad, y->conv.pad, sizeof x->conv.pad) &&
               x->conv.group == y->conv.group && same_act(&x->conv.act, &y->conv.act);
    case MDL_OPTIONS_POOL:
        return !memcmp(x->pool.kernel, y->pool.kernel, sizeof x->pool.kernel) &&
               !memcmp(x->pool.stride, y->pool.stride, sizeof x->pool.stride) &&
               !memcmp(x->pool.pad, y->pool.pad, sizeof x->pool.pad) &&
               x->pool.count_include_pad == y->pool.count_include_pad;
    case MDL_OPTIONS_ACT:
        return x->act.alpha == y->act.alpha && x->act.beta == y->act.beta &&
               x->act.min == y->act.min && x->act.max == y->act.max &&
               x->act.approximate == y->act.approximate;
    case MDL_OPTIONS_AXIS: return x->axis.axis == y->axis.axis;
    case MDL_OPTIONS_TRANSPOSE: return !memcmp(x->transpose.perm, y->transpose.perm, rb * sizeof(int32_t));
    case MDL_OPTIONS_SLICE:
        return !memcmp(x->slice.begin, y->slice.begin, rb * sizeof(int64_t)) &&
               !memcmp(x->slice.step, y->slice.step, rb * sizeof(int64_t));
    case MDL_OPTIONS_PAD:
        return !memcmp(x->pad.pads, y->pad.pads, 2 * rb * sizeof(int64_t)) && x->pad.value == y->pad.value;
    case MDL_OPTIONS_REDUCE:
        return x->reduce.axes_mask == y->reduce.axes_mask && x->reduce.keepdims == y->reduce.keepdims;
    case MDL_OPTIONS_RNN:
        return x->rnn.hidden_size == y->rnn.hidden_size && x->rnn.direction == y->rnn.direction &&
               x->rnn.linear_before_reset == y->rnn.linear_before_reset;
    case MDL_OPTIONS_BATCH_NORM: return x->batch_norm.epsilon == y->batch_norm.epsilon;
    case MDL_OPTIONS_CAST: return x->cast.to == y->cast.to;
    case MDL_OPTIONS_RESIZE: return !memcmp(&x->resize, &y->resize, sizeof x->resize);
    default: return true;
    }
}

mdl_status mdl__cv_symbolize(const cv_ctx *c, mdl_builder *b0, mdl_builder *b1, mdl_error *err) {
    const mdl__graph *g0 = mdl__builder_graph(b0), *g1 = mdl__builder_graph(b1);
    char where[256];
    dims_note(c, where, sizeof where);
    if (g0->ntensors != g1->ntensors || g0->nnodes != g1->nnodes || g0->ninputs != g1->ninputs ||
        g0->noutputs != g1->noutputs)
        return mdl__error(err, MDL_UNSUPPORTED,
                          "the converted graph depends on the sizes of the dynamic dims (%s): %d "
                          "operators at one size, %d at another; fix them with --input-shape",
                          where, (int)g0->nnodes, (int)g1->nnodes);
    for (int32_t i = 0; i < g0->nnodes; i++) {
        const mdl__node *a = &g0->nodes[i], *b = &g1->nodes[i];
        bool same = a->op == b->op && a->nin == b->nin && a->nout == b->nout &&
                    !memcmp(a->in, b->in, sizeof(int32_t) * (size_t)a->nin) &&
                    !memcmp(a->out, b->out, sizeof(int32_t) * (size_t)a->nout);
        if (!same)
            return mdl__error(err, MDL_UNSUPPORTED,
                              "the converted graph depends on the sizes of the dynamic dims (%s) "
                              "from operator %d '%s' on; fix them with --input-shape",
                              where, (int)i, nm(a->name));
        if (!same_options(g0, a, b))
            return mdl__error(err, MDL_UNSUPPORTED,
                              "%s '%s': its options were computed from the size of a dynamic dim "
                              "(%s), which the runtime cannot recompute; fix the dim with "
                              "--input-shape", mdl_op_name(a->op), nm(a->name), where);
    }
    for (int32_t k = 0; k < g0->ninputs; k++)
        if (g0->inputs[k] != g1->inputs[k])
            return mdl__error(err, MDL_INTERNAL, "the two lowerings disagree on graph input %d", (int)k);
    for (int32_t k = 0; k < g0->noutputs; k++)
        if (g0->outputs[k] != g1->outputs[k])
            return mdl__error(err, MDL_INTERNAL, "the two lowerings disagree on graph output %d", (int)k);
    for (int32_t t = 0; t < g0->ntensors; t++) {
        const mdl__tensor *a = &g0->tensors[t], *b = &g1->tensors[t];
        if (a->dtype != b->dtype || a->rank != b->rank || !a->data != !b->data || !same_quant(a, b))
            return mdl__error(err, MDL_UNSUPPORTED,
                              "tensor '%s' differs in type or rank with the sizes of the dynamic "
                              "dims (%s); fix them with --input-shape", nm(a->name), where);
        if (a->data && (a->bytes != b->bytes || memcmp(a->data, b->data, a->bytes)))
            return mdl__error(err, MDL_UNSUPPORTED,
                              "constant '%s' was computed from the size of a dynamic dim (%s), e.g. "
                              "by a Shape subgraph feeding ConstantOfShape, Expand, Range or an "
                              "index; the runtime cannot recompute it: fix the dim with --input-shape",
                              nm(a->name), where);
    }
    for (int32_t s = 0; s < c->nsyms; s++)
        if (mdl_builder_symbol(b0, c->sym_names[s], c->sym_max[s], 1) != s)
            return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
    /* which node produces each tensor */
    for (int32_t i = 0; i < g0->nnodes; i++) {
        const mdl__node *n = &g0->nodes[i];
        for (int32_t k = 0; k < n->nout; k++) {
            int32_t t = n->out[k];
            if (t < 0) continue;
            const mdl__tensor *a = &g0->tensors[t], *b = &g1->tensors[t];
            int32_t codes[MDL_MAX_RANK], ncomputed = 0, computed = -1;
            bool dynamic = false;
            for (int32_t d = 0; d < a->rank; d++) {
                codes[d] = MDL_DIM_FIXED;
                if (a->dims[d] == b->dims[d]) continue;
                dynamic = true;
                codes[d] = MDL_DIM_COMPUTED;
                for (int32_t s = 0; s < c->nsyms; s++)
                    if (a->dims[d] == mdl__cv_probe_size(0, s) && b->dims[d] == mdl__cv_probe_size(1, s))
                        codes[d] = s;
                if (codes[d] == MDL_DIM_COMPUTED) {
                    ncomputed++;
                    computed = d;
                }
            }
            if (!dynamic) continue;
            if ((n->op == MDL_OP_RESHAPE || n->op == MDL_OP_SLICE) && ncomputed > 1)
                return mdl__error(err, MDL_UNSUPPORTED,
                                  "%s '%s': %d dims of its output '%s' follow the dynamic dims (%s) "
                                  "in a way the runtime cannot recompute (one at most, or dims equal "
                                  "to an input's dynamic dim); fix them with --input-shape",
                                  mdl_op_name(n->op), nm(n->name), (int)ncomputed, nm(a->name), where);
            if (n->op == MDL_OP_SLICE && ncomputed == 1) {
                /* the runtime computes a slice to the end of the input along that dim */
                const mdl__graph *gs[2] = {g0, g1};
                for (int p = 0; p < 2; p++) {
                    const mdl__tensor *x = &gs[p]->tensors[n->in[0]], *y = &gs[p]->tensors[t];
                    int64_t bg = n->opt.slice.begin[computed], st = n->opt.slice.step[computed],
                            size = x->dims[computed], v;
                    if (bg < 0 || bg >= size || !st) v = 0;
                    else if (st > 0) v = (size - bg + st - 1) / st;
                    else v = bg / -st + 1;
                    if (v != y->dims[computed])
                        return mdl__error(err, MDL_UNSUPPORTED,
                                          "Slice '%s': the end of dim %d depends on the dynamic dims "
                                          "(%s) other than 'to the end'; fix them with --input-shape",
                                          nm(n->name), (int)computed, where);
                }
            }
            mdl_status st = mdl_builder_set_dims(b0, t, codes);
            if (st) return mdl__error(err, st, "marking the dynamic dims of '%s'", nm(a->name));
        }
    }
    for (int32_t k = 0; k < g0->ninputs; k++) {
        int32_t t = g0->inputs[k];
        const mdl__tensor *a = &g0->tensors[t], *b = &g1->tensors[t];
        int32_t codes[MDL_MAX_RANK];
        for (int32_t d = 0; d < a->rank; d++) {
            codes[d] = MDL_DIM_FIXED;
            for (int32_t s = 0; s < c->nsyms && a->dims[d] != b->dims[d]; s++)
                if (a->dims[d] == mdl__cv_probe_size(0, s) && b->dims[d] == mdl__cv_probe_size(1, s))
                    codes[d] = s;
        }
        mdl_status st = mdl_builder_set_dims(b0, t, codes);
        if (st) return mdl__error(err, st, "marking the dynamic dims of '%s'", nm(a->name));
    }
    return MDL_OK;
}
