/* The converter pipeline: mdl_convert_onnx (include/mdeploy/convert.h) runs the stages in turn,
 * each of which reads what the one before produced and never calls back:
 *
 *   model.onnx
 *     -> import        src/io/onnx_host.c + onnx_lower_*_host.c (onnx_import_host.h): protobuf ->
 *                      the IR (graph/convert_host.h), constant subgraphs folded as they are met
 *     -> IR passes     src/graph/convert_ir_host.c: BatchNorm/bias/activation fusion, layout
 *                      moves, dead code
 *     -> prune         src/quant/prune_host.h: magnitude pruning of the prunable layers' 8x1
 *                      weight blocks (mdl_prune_options), before quantization sees the weights
 *     -> quantize      src/quant: post-training int8 (ptq_host.h: calibrates by running the float
 *                      IR through the runtime) or the int8 form of a QDQ model (qdq_host.h)
 *     -> build         mdl__cv_build: the live IR into an mdl_builder
 *     -> [dynamic dims: all of the above once more at other sizes of the dims, and the two
 *         builders compared (src/graph/convert_dyn_host.c) to tell which sizes follow them]
 *     -> storage       mdl__prune_store: prunable float weights with few non-zero blocks are
 *                      stored block-sparse (with or without pruning)
 *     -> write         metadata, mdl_builder_write_file (memory plan, FlatBuffers), then the
 *                      file is loaded back for the report's numbers
 *   model.mdl
 *
 * The IR is one cv_ctx per pass through the stages; the importer's parsed model is read-only
 * and shared by both passes of a dynamic model.
 */
#include "graph/convert_host.h"
#include "graph/model.h"
#include "graph/selftest.h"
#include "io/onnx_import_host.h"
#include "quant/prune_host.h"
#include "quant/ptq_host.h"
#include "quant/qdq_host.h"
#include "mdeploy/selftest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *mdl_convert_report_json(const mdl_convert_report *r) {
    return !r ? NULL : r->json ? r->json : r->quant ? r->quant->json : NULL;
}

void mdl_convert_report_free(mdl_convert_report *r) {
    if (!r) return;
    mdl__quant_report_free(r->quant);
    r->quant = NULL;
    mdl__prune_report_free(r);
}

mdl_convert_options mdl_convert_options_default(void) {
    mdl_convert_options o;
    memset(&o, 0, sizeof o);
    o.selftest.atol = MDL__SELFTEST_ATOL;
    o.selftest.rtol = MDL__SELFTEST_RTOL;
    return o;
}

/* One pass through the stages at c->probe's sizes of the dynamic dims: import, IR passes,
   quantization, build into a new builder *out.  plan/replay: the PTQ decisions of the first pass,
   replayed by the second pass of a dynamic model. */
static mdl_status run_stages(cv_ctx *c, const mdl__onnx_model *m, const mdl_convert_options *o,
                             mdl_convert_report *rep, mdl__ptq_plan **plan, const mdl__ptq_plan *replay,
                             mdl_builder **out, int32_t *nodes_out) {
    mdl_status st;
    *out = NULL;
    /* 1. import: ONNX -> IR */
    if ((st = mdl__onnx_import(m, c, o))) return st;
    /* 2. IR passes */
    mdl__cv_optimize(c);
    /* 3. pruning (before quantization, which then sees the pruned weights) */
    if ((st = mdl__prune_run(c, &o->prune))) return st;
    /* 4. quantization: post-training, or the int8 form of a pre-quantized (QDQ) model */
    if (o->quant.mode != MDL_QUANTIZE_NONE) {
        /* the second lowering of a dynamic model replays the first one's decisions */
        if ((st = mdl__ptq_run(c, &o->quant, replay ? NULL : &rep->quant, plan, replay))) return st;
    } else if ((st = mdl__qdq_pass(c, NULL))) {
        return st;
    }
    /* 5. build: the live graph into a builder (planned and written by the caller) */
    mdl_builder *b;
    if ((st = mdl_builder_create(NULL, &b, c->err))) return st;
    if ((st = mdl__cv_build(c, b, nodes_out))) {
        mdl_builder_free(b);
        return st;
    }
    *out = b;
    return MDL_OK;
}

/* Where the converted model goes: a file (path) or memory (*data, *size from malloc). */
typedef struct cv_out {
    const char *path;
    void **data;
    size_t *size;
} cv_out;

static mdl_status write_out(mdl_builder *b, const cv_out *out, mdl_error *err) {
    if (out->path) return mdl_builder_write_file(b, out->path, err);
    return mdl_builder_finish(b, out->data, out->size, err); /* the default allocator: free() */
}

/* A written output that must not survive a failed check: the file removed, the buffer freed. */
static void discard_out(const cv_out *out) {
    if (out->path) {
        remove(out->path);
        return;
    }
    free(*out->data);
    *out->data = NULL;
    *out->size = 0;
}

/* The written model once more, with self-test vectors (mdl_selftest_options), then loaded and
   tested: a model that fails its own vectors is not left behind. */
static mdl_status add_selftest(mdl_builder *b, const cv_out *out, const mdl_selftest_options *so, mdl_error *err) {
    mdl_model *m;
    mdl_status st = out->path ? mdl_model_load_file(out->path, NULL, &m, err)
                              : mdl_model_load_buffer(*out->data, *out->size, NULL, &m, err);
    if (st) return st;
    mdl__selftest *s = NULL;
    st = mdl__cv_selftest_make(m, so, &s, err);
    mdl_model_free(m);
    if (!st) {
        if (!out->path) discard_out(out);
        mdl__builder_set_selftest(b, s);
        st = write_out(b, out, err);
        mdl__builder_set_selftest(b, NULL);
    }
    mdl__cv_selftest_free(s);
    if (st) return st;
    st = out->path ? mdl_model_load_file(out->path, NULL, &m, err)
                   : mdl_model_load_buffer(*out->data, *out->size, NULL, &m, err);
    mdl_error e;
    if (!st && (st = mdl_model_selftest(m, NULL, &e)))
        mdl__error(err, st, "the converted model fails its self-test vectors: %s", e.msg);
    mdl_model_free(m);
    return st;
}

static mdl_status convert(cv_ctx *c, const mdl__onnx_model *m, const cv_out *out,
                          const mdl_convert_options *o, mdl_convert_report *rep) {
    mdl__onnx_info info;
    mdl__onnx_info_get(m, &info);
    rep->onnx_nodes = info.nodes;
    mdl_builder *b;
    mdl__ptq_plan *plan = NULL;
    mdl_status st = run_stages(c, m, o, rep, &plan, NULL, &b, &rep->nodes_out);
    if (st || !c->nsyms) {
        mdl__ptq_plan_free(plan);
        plan = NULL;
    }
    if (st) return st;
    rep->opset = c->opset;
    if (c->nsyms) {
        /* once more at other sizes of the dynamic dims, to tell which sizes follow them */
        cv_ctx c1;
        memset(&c1, 0, sizeof c1);
        c1.err = c->err;
        c1.probe = 1;
        mdl_builder *b1;
        int32_t n1;
        st = run_stages(&c1, m, o, rep, NULL, plan, &b1, &n1);
        if (!st) {
            st = mdl__cv_symbolize(c, b, b1, c->err);
            mdl_builder_free(b1);
        }
        mdl__cv_free(&c1);
        mdl__ptq_plan_free(plan);
        if (st) {
            mdl_builder_free(b);
            return st;
        }
        rep->nsymbols = c->nsyms;
        char *w = rep->dynamic;
        size_t left = sizeof rep->dynamic;
        /* "x[0]=batch<=64": the dims and the bounds */
        const char *p = c->sym_where;
        while (*p && left > 1) {
            const char *end = strstr(p, ", ");
            size_t n = end ? (size_t)(end - p) : strlen(p);
            const char *eq = memchr(p, '=', n);
            int32_t s = -1;
            for (int32_t k = 0; eq && k < c->nsyms; k++)
                if (strlen(c->sym_names[k]) == n - (size_t)(eq + 1 - p) && !memcmp(eq + 1, c->sym_names[k], n - (size_t)(eq + 1 - p)))
                    s = k;
            int wr = s >= 0 && c->sym_max[s]
                         ? snprintf(w, left, "%s%.*s<=%lld", w == rep->dynamic ? "" : ", ", (int)n, p, (long long)c->sym_max[s])
                         : snprintf(w, left, "%s%.*s", w == rep->dynamic ? "" : ", ", (int)n, p);
            if (wr < 0 || (size_t)wr >= left) break;
            w += wr;
            left -= (size_t)wr;
            p = end ? end + 2 : p + n;
        }
    }
    /* storage: block-sparse where the weights allow it */
    if ((st = mdl__prune_store(b, &o->prune, rep, c->err))) {
        mdl_builder_free(b);
        return st;
    }
    /* write (the builder plans the memory) */
    char ver[32];
    const char *name = o->name ? o->name : info.graph_name ? info.graph_name : "";
    const char *version = o->model_version;
    if (!version && info.has_model_version) {
        snprintf(ver, sizeof ver, "%lld", (long long)info.model_version);
        version = ver;
    }
    const char *desc = o->description ? o->description : info.doc_string ? info.doc_string : info.graph_doc_string;
    const char *mk, *mv;
    for (int32_t i = 0; mdl__onnx_metadata_at(m, i, &mk, &mv); i++) mdl_builder_set_metadata(b, mk, mv);
    mdl_builder_set_metadata(b, "name", name);
    if (version) mdl_builder_set_metadata(b, "version", version);
    if (desc) mdl_builder_set_metadata(b, "description", desc);
    char src[512];
    snprintf(src, sizeof src, "%s %s (ONNX opset %lld)", info.producer_name ? info.producer_name : "",
             info.producer_version ? info.producer_version : "", (long long)c->opset);
    mdl_builder_set_metadata(b, "source", src);
    for (int32_t i = 0; i < o->nmetadata; i++) mdl_builder_set_metadata(b, o->metadata_keys[i], o->metadata_values[i]);
    st = write_out(b, out, c->err);
    if (st && st != MDL_IO && st != MDL_OUT_OF_MEMORY && c->nsyms) {
        /* Not valid with every dynamic dim at 1 (e.g. a convolution without padding over a
           dynamic length): sessions start at the sizes the converter checked the graph at. */
        mdl_error first = *c->err;
        size_t len = strlen(rep->dynamic);
        snprintf(rep->dynamic + len, sizeof rep->dynamic - len, "; not valid at 1, sessions start at");
        for (int32_t y = 0; y < c->nsyms; y++) {
            int64_t v = mdl__cv_probe_size(0, y);
            if (c->sym_max[y] && v > c->sym_max[y]) v = c->sym_max[y];
            mdl__builder_set_initial(b, y, v);
            len = strlen(rep->dynamic);
            snprintf(rep->dynamic + len, sizeof rep->dynamic - len, "%s %s=%lld", y ? "," : "",
                     c->sym_names[y], (long long)v);
        }
        if (write_out(b, out, c->err) == MDL_OK) st = MDL_OK;
        else *c->err = first; /* the first failure explains it best */
    }
    if (!st && o->selftest.ninputs && (st = add_selftest(b, out, &o->selftest, c->err))) discard_out(out);
    mdl_builder_free(b);
    if (st) return st;
    rep->folded = c->folded;
    rep->fused = c->fused;
    rep->removed = c->removed;
    /* the numbers of the file as written (and proof that it loads) */
    mdl_model *mm;
    st = out->path ? mdl_model_load_file(out->path, NULL, &mm, c->err)
                   : mdl_model_load_buffer(*out->data, *out->size, NULL, &mm, c->err);
    if (st) {
        discard_out(out);
        return st;
    }
    if ((st = mdl__prune_report_json(rep, &o->prune, c->err))) {
        mdl_model_free(mm);
        discard_out(out);
        return st;
    }
    rep->weight_bytes = mdl_model_weight_bytes(mm);
    rep->arena_bytes = mdl_model_activation_bytes(mm);
    mdl_model_free(mm);
    struct stat sb;
    if (!out->path) rep->file_bytes = *out->size;
    else if (stat(out->path, &sb) == 0) rep->file_bytes = (size_t)sb.st_size;
    return MDL_OK;
}

/* The checks of the options and the conversion of an opened model (both entry points). */
static mdl_status convert_opened(mdl__onnx_model *m, const cv_out *out, const mdl_convert_options *o,
                                 mdl_convert_report *report, mdl_error *err) {
    mdl_convert_report rep;
    memset(&rep, 0, sizeof rep);
    cv_ctx c;
    memset(&c, 0, sizeof c);
    c.err = err;
    mdl_status st = convert(&c, m, out, o, &rep);
    mdl__cv_free(&c);
    if (st || !report) mdl_convert_report_free(&rep);
    mdl__onnx_close(m);
    if (st) {
        if (!err->msg[0]) mdl__error(err, st, "conversion failed: %s", mdl_status_str(st));
        return st;
    }
    if (report) *report = rep;
    return MDL_OK;
}

static mdl_status check_options(const mdl_convert_options *o, mdl_error *err) {
    if (o->ninput_shapes < 0 || o->ninput_shapes > MDL_CONVERT_MAX_SHAPES)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "ninput_shapes %d out of range", (int)o->ninput_shapes);
    if (o->nmetadata < 0 || (o->nmetadata && (!o->metadata_keys || !o->metadata_values)))
        return mdl__error(err, MDL_INVALID_ARGUMENT, "nmetadata %d without keys and values", (int)o->nmetadata);
    for (int32_t i = 0; i < o->nmetadata; i++)
        if (!o->metadata_keys[i] || !*o->metadata_keys[i] || !o->metadata_values[i])
            return mdl__error(err, MDL_INVALID_ARGUMENT, "metadata entry %d: empty key or NULL value", (int)i);
    return mdl__prune_check(&o->prune, err);
}

/* err, or local when the caller passed NULL, cleared. */
static mdl_error *begin(mdl_error *err, mdl_error *local) {
    if (!err) err = local;
    err->status = MDL_OK;
    err->msg[0] = 0;
    return err;
}

/* The converter's entry points (include/mdeploy/convert.h). */
mdl_status mdl_convert_onnx(const char *onnx_path, const char *out_path,
                            const mdl_convert_options *options, mdl_convert_report *report,
                            mdl_error *err) {
    mdl_error local;
    err = begin(err, &local);
    if (!onnx_path || !out_path)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_convert_onnx: NULL path");
    mdl_convert_options defaults = mdl_convert_options_default();
    const mdl_convert_options *o = options ? options : &defaults;
    mdl_status st = check_options(o, err);
    if (st) return st;
    mdl__onnx_model *m;
    if ((st = mdl__onnx_open(onnx_path, &m, err))) return st;
    cv_out out = {out_path, NULL, NULL};
    return convert_opened(m, &out, o, report, err);
}

mdl_status mdl_convert_onnx_buffer(const void *onnx, size_t size, void **mdl_data, size_t *mdl_size,
                                   const mdl_convert_options *options, mdl_convert_report *report,
                                   mdl_error *err) {
    mdl_error local;
    err = begin(err, &local);
    if (!mdl_data || !mdl_size)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_convert_onnx_buffer: NULL output");
    *mdl_data = NULL;
    *mdl_size = 0;
    if (!onnx) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_convert_onnx_buffer: NULL input");
    mdl_convert_options defaults = mdl_convert_options_default();
    const mdl_convert_options *o = options ? options : &defaults;
    mdl_status st = check_options(o, err);
    if (st) return st;
    mdl__onnx_model *m;
    if ((st = mdl__onnx_open_buffer(onnx, size, &m, err))) return st;
    cv_out out = {NULL, mdl_data, mdl_size};
    return convert_opened(m, &out, o, report, err);
}
