/* What an ONNX model needs, without converting it (include/mdeploy/convert.h:
   mdl_onnx_summarize): inputs and outputs with their types and shapes, and the operator types
   with what the converter does with each.  The import's check that lists every unsupported
   operator at once (mdl__onnx_check_ops) reads the same operator table. */
#include "io/onnx_lower_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool default_domain(const char *d) { return !d || !*d || !strcmp(d, "ai.onnx"); }

mdl_onnx_support mdl__onnx_op_support(const char *domain, const char *op_type) {
    if (mdl__cv_quant_op(domain, op_type)) return MDL_ONNX_SUPPORTED;
    if (!default_domain(domain) || !mdl__cv_known_op(op_type)) return MDL_ONNX_UNSUPPORTED;
    return mdl__cv_runtime_op(op_type) ? MDL_ONNX_SUPPORTED : MDL_ONNX_FOLDED;
}

mdl_status mdl__onnx_collect_ops(const Onnx__GraphProto *g, mdl_onnx_op **out, int32_t *nout, mdl_error *err) {
    mdl_onnx_op *ops = calloc(g->n_node + 1, sizeof *ops);
    if (!ops) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
    int32_t n = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        const char *domain = default_domain(nd->domain) ? "" : nd->domain;
        const char *op = nd->op_type ? nd->op_type : "";
        int32_t k = 0;
        while (k < n && (strcmp(ops[k].op_type, op) || strcmp(ops[k].domain, domain))) k++;
        if (k == n) {
            ops[n].domain = domain;
            ops[n].op_type = op;
            ops[n].first_node = nd->name ? nd->name : "";
            ops[n].first_index = (int32_t)i;
            ops[n].support = mdl__onnx_op_support(domain, op);
            n++;
        }
        ops[k].count++;
    }
    *out = ops;
    *nout = n;
    return MDL_OK;
}

mdl_status mdl__onnx_check_ops(const Onnx__GraphProto *g, int64_t opset, mdl_error *err) {
    mdl_onnx_op *ops;
    int32_t n, bad = 0;
    mdl_status st = mdl__onnx_collect_ops(g, &ops, &n, err);
    if (st) return st;
    for (int32_t k = 0; k < n; k++) bad += ops[k].support == MDL_ONNX_UNSUPPORTED;
    if (bad) {
        char msg[MDL_ERROR_MSG_SIZE];
        size_t len = (size_t)snprintf(msg, sizeof msg, "%d unsupported operator%s (opset %lld):", (int)bad,
                                      bad > 1 ? "s" : "", (long long)opset);
        /* the first hint (e.g. how to avoid a Loop) gets room after the list */
        const char *hint = "";
        for (int32_t k = 0; k < n && !*hint; k++)
            if (ops[k].support == MDL_ONNX_UNSUPPORTED && default_domain(ops[k].domain))
                hint = mdl__cv_unsupported_hint(ops[k].op_type);
        size_t reserve = 48 + strlen(hint);
        int32_t shown = 0;
        for (int32_t k = 0; k < n; k++) {
            const mdl_onnx_op *o = &ops[k];
            if (o->support != MDL_ONNX_UNSUPPORTED) continue;
            char item[160], first[80];
            if (*o->first_node) snprintf(first, sizeof first, "'%s'", o->first_node);
            else snprintf(first, sizeof first, "#%d", (int)o->first_index);
            int w = snprintf(item, sizeof item, "%s %s (%s%s%s%d node%s, first %s)", shown ? "," : "", o->op_type,
                             *o->domain ? "domain " : "", o->domain, *o->domain ? ", " : "", (int)o->count,
                             o->count > 1 ? "s" : "", first);
            /* keep room for the tail naming how many did not fit */
            if (w < 0 || len + (size_t)w + reserve >= sizeof msg) break;
            memcpy(msg + len, item, (size_t)w + 1);
            len += (size_t)w;
            shown++;
        }
        if (shown < bad)
            len += (size_t)snprintf(msg + len, sizeof msg - len, " and %d more (mdeploy-inspect lists them)",
                                    (int)(bad - shown));
        if (len < sizeof msg) snprintf(msg + len, sizeof msg - len, "%s", hint);
        st = mdl__error(err, MDL_UNSUPPORTED, "%s", msg);
    }
    free(ops);
    return st;
}

/* ---- mdl_onnx_summarize ------------------------------------------------------------------------ */

typedef struct summary_mem {
    mdl__onnx_model *model;
} summary_mem;

static void describe_value(const Onnx__ValueInfoProto *vi, mdl_onnx_value *v) {
    v->name = vi->name ? vi->name : "";
    v->rank = -1;
    const Onnx__TypeProto *tp = vi->type;
    if (!tp) {
        v->elem_type = "undefined";
        return;
    }
    switch (tp->value_case) {
    case ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE: break;
    case ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE: v->elem_type = "sequence"; return;
    case ONNX__TYPE_PROTO__VALUE_MAP_TYPE: v->elem_type = "map"; return;
    case ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE: v->elem_type = "optional"; return;
    case ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE: v->elem_type = "sparse_tensor"; return;
    default: v->elem_type = "undefined"; return;
    }
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    v->elem_type = mdl__onnx_type_name(tt && tt->has_elem_type ? tt->elem_type : 0);
    if (!tt || !tt->shape) return;
    v->rank = (int32_t)tt->shape->n_dim;
    for (int32_t i = 0; i < v->rank && i < MDL_MAX_RANK; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        bool fixed = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0;
        v->dims[i] = fixed ? d->dim_value : -1;
        v->dim_params[i] = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ? d->dim_param : NULL;
    }
}

mdl_status mdl_onnx_summarize(const char *onnx_path, mdl_onnx_summary **out, mdl_error *err) {
    mdl_error local;
    if (!err) err = &local;
    err->status = MDL_OK;
    err->msg[0] = 0;
    if (!onnx_path || !out) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_onnx_summarize: NULL argument");
    *out = NULL;
    mdl__onnx_model *om;
    mdl_status st = mdl__onnx_open(onnx_path, &om, err);
    if (st) return st;
    const Onnx__ModelProto *m = mdl__onnx_proto(om);
    const Onnx__GraphProto *g = m->graph;
    mdl_onnx_summary *s = calloc(1, sizeof *s);
    size_t nin = g->n_input, nout = g->n_output, nmeta = m->n_metadata_props;
    if (s) {
        s->internal_ = om;
        s->inputs = calloc(nin + 1, sizeof *s->inputs);
        s->outputs = calloc(nout + 1, sizeof *s->outputs);
        s->metadata_keys = calloc(nmeta + 1, sizeof(char *));
        s->metadata_values = calloc(nmeta + 1, sizeof(char *));
    }
    if (!s || !s->inputs || !s->outputs || !s->metadata_keys || !s->metadata_values) {
        if (s) mdl_onnx_summary_free(s);
        else mdl__onnx_close(om);
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
    }
    s->ir_version = m->has_ir_version ? m->ir_version : 0;
    s->opset = mdl__onnx_opset(m);
    s->producer_name = m->producer_name ? m->producer_name : "";
    s->producer_version = m->producer_version ? m->producer_version : "";
    s->graph_name = g->name ? g->name : "";
    s->nnodes = (int32_t)g->n_node;
    s->ninitializers = (int32_t)g->n_initializer;
    for (size_t i = 0; i < nin; i++) {
        const char *name = g->input[i]->name ? g->input[i]->name : "";
        bool init = false;
        for (size_t k = 0; k < g->n_initializer && !init; k++)
            init = g->initializer[k]->name && !strcmp(g->initializer[k]->name, name);
        if (!init) describe_value(g->input[i], &s->inputs[s->ninputs++]);
    }
    for (size_t i = 0; i < nout; i++) describe_value(g->output[i], &s->outputs[s->noutputs++]);
    for (size_t i = 0; i < nmeta; i++) {
        s->metadata_keys[s->nmetadata] = m->metadata_props[i]->key ? m->metadata_props[i]->key : "";
        s->metadata_values[s->nmetadata++] = m->metadata_props[i]->value ? m->metadata_props[i]->value : "";
    }
    if ((st = mdl__onnx_collect_ops(g, &s->ops, &s->nops, err))) {
        mdl_onnx_summary_free(s);
        return st;
    }
    for (int32_t k = 0; k < s->nops; k++) s->nunsupported += s->ops[k].support == MDL_ONNX_UNSUPPORTED;
    *out = s;
    return MDL_OK;
}

void mdl_onnx_summary_free(mdl_onnx_summary *s) {
    if (!s) return;
    mdl__onnx_close(s->internal_);
    free(s->inputs);
    free(s->outputs);
    free(s->ops);
    free(s->metadata_keys);
    free(s->metadata_values);
    free(s);
}
