/* mdeploy-inspect: metadata, inputs/outputs, operators with tensor shapes, weight and arena bytes.
   An ONNX model (MODEL.onnx): its inputs/outputs and operators, each marked with what the
   converter does with it (mdl_onnx_summarize).
   Options: the table below (mdeploy-inspect --help).  --verify prints what the model's seal says (include/mdeploy/security.h) and whether it loads
   with these keys; exit status 1 when a check fails. */
#include "mdeploy/convert.h"
#include "mdeploy/mdeploy.h"
#include "seal_util.h"
#include "mdeploy/selftest.h"
#include "tool_util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *info_json(const mdl_tensor_info *ti) {
    cJSON *o = tool_tensor_json(ti);
    cJSON_AddNumberToObject(o, "bytes", (double)ti->bytes);
    if (ti->nquant) {
        cJSON *q = cJSON_AddObjectToObject(o, "quant");
        cJSON_AddNumberToObject(q, "count", ti->nquant);
        cJSON_AddNumberToObject(q, "axis", ti->quant_axis);
        cJSON_AddNumberToObject(q, "scale0", ti->scale[0]);
        cJSON_AddNumberToObject(q, "zero_point0", (double)ti->zero_point[0]);
    }
    return o;
}

static cJSON *tensor_json(const mdl_model *m, int t) {
    mdl_tensor_info ti;
    bool constant;
    mdl_model_tensor_info(m, t, &ti, &constant);
    cJSON *o = info_json(&ti);
    cJSON_AddNumberToObject(o, "index", t);
    cJSON_AddBoolToObject(o, "constant", constant);
    return o;
}

static void print_tensor(const mdl_model *m, int t) {
    mdl_tensor_info ti;
    bool constant;
    char s[160];
    mdl_model_tensor_info(m, t, &ti, &constant);
    printf("%s%s %s %s", constant ? "const " : "", ti.name, mdl_dtype_name(ti.dtype), tool_info_shape_str(s, sizeof s, &ti));
}

static const char *const support_names[] = {"supported", "folded only", "UNSUPPORTED"};

/* "1x3x'batch'x224": fixed sizes, dim_params quoted, ? for an unnamed dynamic dim. */
static const char *onnx_shape_str(char *buf, size_t cap, const mdl_onnx_value *v) {
    if (v->rank < 0) return snprintf(buf, cap, "(no shape)"), buf;
    size_t len = 0;
    buf[0] = 0;
    len += (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < v->rank && len < cap; i++) {
        const char *sep = i ? ", " : "";
        if (i >= MDL_MAX_RANK) len += (size_t)snprintf(buf + len, cap - len, "%s...", sep);
        else if (v->dim_params[i]) len += (size_t)snprintf(buf + len, cap - len, "%s%s", sep, v->dim_params[i]);
        else if (v->dims[i] < 0) len += (size_t)snprintf(buf + len, cap - len, "%s?", sep);
        else len += (size_t)snprintf(buf + len, cap - len, "%s%lld", sep, (long long)v->dims[i]);
        if (i >= MDL_MAX_RANK) break;
    }
    if (len < cap) snprintf(buf + len, cap - len, "]");
    return buf;
}

static cJSON *onnx_value_json(const mdl_onnx_value *v) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", v->name);
    cJSON_AddStringToObject(o, "type", v->elem_type);
    if (v->rank >= 0) {
        cJSON *a = cJSON_AddArrayToObject(o, "shape");
        for (int32_t i = 0; i < v->rank && i < MDL_MAX_RANK; i++)
            cJSON_AddItemToArray(a, v->dim_params[i] ? cJSON_CreateString(v->dim_params[i])
                                    : v->dims[i] < 0 ? cJSON_CreateNull() : cJSON_CreateNumber((double)v->dims[i]));
    } else {
        cJSON_AddNullToObject(o, "shape");
    }
    return o;
}

static int inspect_onnx(const char *path, bool json) {
    mdl_onnx_summary *s;
    mdl_error err;
    if (mdl_onnx_summarize(path, &s, &err)) {
        fprintf(stderr, "mdeploy-inspect: %s\n", err.msg);
        return 1;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "graph", s->graph_name);
        cJSON_AddStringToObject(o, "producer", s->producer_name);
        cJSON_AddStringToObject(o, "producer_version", s->producer_version);
        cJSON_AddNumberToObject(o, "ir_version", (double)s->ir_version);
        cJSON_AddNumberToObject(o, "opset", (double)s->opset);
        cJSON_AddNumberToObject(o, "nodes", s->nnodes);
        cJSON_AddNumberToObject(o, "initializers", s->ninitializers);
        cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
        for (int32_t i = 0; i < s->nmetadata; i++) cJSON_AddStringToObject(meta, s->metadata_keys[i], s->metadata_values[i]);
        cJSON *ins = cJSON_AddArrayToObject(o, "inputs"), *outs = cJSON_AddArrayToObject(o, "outputs");
        for (int32_t i = 0; i < s->ninputs; i++) cJSON_AddItemToArray(ins, onnx_value_json(&s->inputs[i]));
        for (int32_t i = 0; i < s->noutputs; i++) cJSON_AddItemToArray(outs, onnx_value_json(&s->outputs[i]));
        cJSON *ops = cJSON_AddArrayToObject(o, "operators");
        for (int32_t k = 0; k < s->nops; k++) {
            cJSON *op = cJSON_CreateObject();
            cJSON_AddStringToObject(op, "op_type", s->ops[k].op_type);
            cJSON_AddStringToObject(op, "domain", s->ops[k].domain);
            cJSON_AddNumberToObject(op, "count", s->ops[k].count);
            cJSON_AddStringToObject(op, "first_node", s->ops[k].first_node);
            cJSON_AddNumberToObject(op, "first_index", s->ops[k].first_index);
            cJSON_AddStringToObject(op, "support", support_names[s->ops[k].support]);
            cJSON_AddItemToArray(ops, op);
        }
        cJSON_AddNumberToObject(o, "unsupported", s->nunsupported);
        char *text = cJSON_Print(o);
        puts(text);
        free(text);
        cJSON_Delete(o);
    } else {
        char buf[256];
        printf("model        %s (ONNX)\n", path);
        printf("graph        %s\n", s->graph_name);
        printf("producer     %s %s\n", s->producer_name, s->producer_version);
        printf("opset        %lld (IR version %lld)\n", (long long)s->opset, (long long)s->ir_version);
        for (int32_t i = 0; i < s->nmetadata; i++) printf("meta         %s = %s\n", s->metadata_keys[i], s->metadata_values[i]);
        for (int32_t i = 0; i < s->ninputs; i++)
            printf("input  %d     %s %s %s\n", (int)i, s->inputs[i].name, s->inputs[i].elem_type,
                   onnx_shape_str(buf, sizeof buf, &s->inputs[i]));
        for (int32_t i = 0; i < s->noutputs; i++)
            printf("output %d     %s %s %s\n", (int)i, s->outputs[i].name, s->outputs[i].elem_type,
                   onnx_shape_str(buf, sizeof buf, &s->outputs[i]));
        printf("nodes        %d (%d initializers)\n", (int)s->nnodes, (int)s->ninitializers);
        printf("operators    %d types, %d unsupported\n", (int)s->nops, (int)s->nunsupported);
        for (int32_t k = 0; k < s->nops; k++) {
            const mdl_onnx_op *op = &s->ops[k];
            char name[160];
            snprintf(name, sizeof name, "%s%s%s", op->domain, *op->domain ? ":" : "", op->op_type);
            printf("  %-28s %5d  %-12s first ", name, (int)op->count, support_names[op->support]);
            if (*op->first_node) printf("'%s'\n", op->first_node);
            else printf("#%d\n", (int)op->first_index);
        }
    }
    mdl_onnx_summary_free(s);
    return 0;
}

/* --verify, self-test section: runs the file's vectors (include/mdeploy/selftest.h); false when
   they fail.  A file without vectors passes (says so). */
static bool verify_selftest(const mdl_model *m) {
    mdl_selftest_result r;
    mdl_error err;
    bool ok = mdl_model_selftest(m, &r, &err) == MDL_OK;
    if (!ok) {
        printf("  selftest:  FAILED: %s\n", err.msg);
    } else if (!r.cases) {
        printf("  selftest:  none (the file has no self-test vectors)\n");
    } else {
        printf("  selftest:  passed: %d cases, %lld output elements, max |error| %.3g (oracle %s, atol %g, rtol %g)\n",
               (int)r.passed, (long long)r.elements, r.max_abs_error, r.oracle[0] ? r.oracle : "unnamed",
               (double)r.atol, (double)r.rtol);
    }
    return ok;
}

static void hexline(const char *label, const uint8_t *p, size_t n) {
    printf("%s", label);
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
}

/* --verify: one line per check, "ok", "none", "not checked" or "FAILED: why".  Returns the
   number of failed checks. */
static int verify_model(const char *path, seal_keys *k, uint64_t min_counter) {
    size_t size;
    unsigned char *data = seal_read_file(path, &size, "mdeploy-inspect");
    if (!data) return 1;
    int failed = 0;
    mdl_error err;
    mdl_seal_info info;
    /* the digest alone, then with the keys */
    mdl_status st = mdl_seal_check(data, size, NULL, &info, &err);
    printf("%s\n", path);
    if (st) {
        printf("  digest:    FAILED: %s\n", err.msg);
        failed++;
    } else if (!info.has_seal) {
        printf("  digest:    none (written before format 2.3: the content cannot be checked)\n");
    } else {
        hexline("  digest:    ok (SHA-256 ", info.digest, MDL_DIGEST_BYTES);
        printf(")\n");
    }
    if (!st) {
        mdl_load_options o = mdl_load_options_default();
        o.security = seal_security(k);
        if (!info.is_signed) {
            printf("  signature: unsigned%s\n", k->npub ? " (FAILED: public keys were given)" : "");
            failed += k->npub > 0;
        } else if (!k->npub) {
            hexline("  signature: present, not checked (key id ", info.key_id, MDL_KEY_ID_BYTES);
            printf("; give --public-key)\n");
        } else if (mdl_seal_check(data, size, &o, NULL, &err)) {
            printf("  signature: FAILED: %s\n", err.msg);
            failed++;
        } else {
            hexline("  signature: ok (Ed25519, key id ", info.key_id, MDL_KEY_ID_BYTES);
            printf(")\n");
        }
        printf("  counter:   %llu%s\n", (unsigned long long)info.security_counter,
               info.security_counter < min_counter ? " (FAILED: below --min-counter)" : "");
        failed += info.security_counter < min_counter;
        printf("  encrypted: %s\n", info.encrypted ? (k->has_dec ? "yes (XChaCha20-Poly1305)"
                                                                 : "yes (give --decryption-key to check inside)")
                                                   : "no");
    }
    free(data);
    /* the whole load with these options: an encrypted model's inner file, the graph */
    mdl_load_options o = mdl_load_options_default();
    o.security = seal_security(k);
    o.min_counter = min_counter;
    mdl_model *m;
    if (!st && !(info.encrypted && !k->has_dec)) {
        if (mdl_model_load_file(path, &o, &m, &err)) {
            printf("  load:      FAILED: %s\n", err.msg);
            failed++;
        } else {
            printf("  load:      ok (version '%s', security counter %llu)\n", mdl_model_version(m),
                   (unsigned long long)mdl_model_security_counter(m));
            failed += !verify_selftest(m);
            mdl_model_free(m);
        }
    }
    printf("%s\n", failed ? "verify: FAILED" : "verify: ok");
    return failed;
}

/* Graphviz text of the model (--dot): operators as boxes (op, name, attributes such as the fused
   activation, weight shapes), the graph's inputs and outputs as ellipses, one edge per tensor a
   node reads, labelled with its shape (and dtype when not float32). */
static void dot_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if (*s == '\n') fputs("\\n", f);
        else fputc(*s, f);
    }
}

static void dot_tensor_label(FILE *f, const mdl_model *m, int t, bool name) {
    mdl_tensor_info ti;
    char s[160];
    mdl_model_tensor_info(m, t, &ti, NULL);
    if (name) {
        dot_escape(f, ti.name);
        fputs("\\n", f);
    }
    if (ti.dtype != MDL_DTYPE_FLOAT32) fprintf(f, "%s ", mdl_dtype_name(ti.dtype));
    dot_escape(f, tool_info_shape_str(s, sizeof s, &ti));
}

static int write_dot(const mdl_model *m, const char *out) {
    FILE *f = strcmp(out, "-") ? fopen(out, "w") : stdout;
    if (!f) {
        fprintf(stderr, "mdeploy-inspect: cannot write '%s': %s\n", out, strerror(errno));
        return 1;
    }
    int nt = mdl_model_tensor_count(m), nn = mdl_model_node_count(m);
    int *producer = malloc(sizeof(int) * (size_t)(nt > 0 ? nt : 1));
    if (!producer) {
        if (f != stdout) fclose(f);
        fprintf(stderr, "mdeploy-inspect: out of memory\n");
        return 1;
    }
    for (int t = 0; t < nt; t++) producer[t] = -1;
    for (int i = 0; i < nn; i++) {
        mdl_node_info ni;
        mdl_model_node_info(m, i, &ni);
        for (int k = 0; k < ni.nout; k++)
            if (ni.outputs[k] >= 0 && ni.outputs[k] < nt) producer[ni.outputs[k]] = i;
    }
    fprintf(f, "digraph \"");
    dot_escape(f, mdl_model_name(m));
    fprintf(f, "\" {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n"
               "  edge [fontname=\"Helvetica\", fontsize=9];\n");
    /* operators; tensors nobody produces and that hold no weights are the graph's inputs */
    for (int i = 0; i < nn; i++) {
        mdl_node_info ni;
        char attrs[256];
        mdl_model_node_info(m, i, &ni);
        mdl_model_node_attrs(m, i, attrs, sizeof attrs);
        fprintf(f, "  n%d [shape=box, style=rounded, label=\"", i);
        dot_escape(f, ni.op);
        fputs("\\n", f);
        dot_escape(f, ni.name);
        if (attrs[0]) {
            fputs("\\n", f);
            dot_escape(f, attrs);
        }
        for (int k = 0; k < ni.nin; k++) {
            bool constant = false;
            mdl_tensor_info ti;
            if (ni.inputs[k] < 0 || mdl_model_tensor_info(m, ni.inputs[k], &ti, &constant) || !constant) continue;
            fputs("\\nconst ", f);
            dot_tensor_label(f, m, ni.inputs[k], false);
        }
        fputs("\"];\n", f);
        for (int k = 0; k < ni.nin; k++) {
            int t = ni.inputs[k];
            bool constant = false;
            mdl_tensor_info ti;
            if (t < 0 || t >= nt || mdl_model_tensor_info(m, t, &ti, &constant) || constant) continue;
            if (producer[t] >= 0) fprintf(f, "  n%d -> n%d [label=\"", producer[t], i);
            else fprintf(f, "  t%d -> n%d [label=\"", t, i);
            dot_tensor_label(f, m, t, false);
            fputs("\"];\n", f);
        }
    }
    for (int t = 0; t < nt; t++) { /* graph inputs (read by some node) */
        bool constant = false, read = false;
        mdl_tensor_info ti;
        if (producer[t] >= 0 || mdl_model_tensor_info(m, t, &ti, &constant) || constant) continue;
        for (int i = 0; i < nn && !read; i++) {
            mdl_node_info ni;
            mdl_model_node_info(m, i, &ni);
            for (int k = 0; k < ni.nin; k++) read |= ni.inputs[k] == t;
        }
        if (!read) continue;
        fprintf(f, "  t%d [shape=ellipse, style=filled, fillcolor=\"#e8f0ff\", label=\"input ", t);
        dot_tensor_label(f, m, t, true);
        fputs("\"];\n", f);
    }
    for (int o = 0; o < mdl_model_output_count(m); o++) {
        mdl_tensor_info oi;
        mdl_model_output_info(m, o, &oi);
        for (int t = 0; t < nt; t++) {
            mdl_tensor_info ti;
            if (mdl_model_tensor_info(m, t, &ti, NULL) || strcmp(ti.name, oi.name)) continue;
            fprintf(f, "  out%d [shape=ellipse, style=filled, fillcolor=\"#e8ffe8\", label=\"output ", o);
            dot_tensor_label(f, m, t, true);
            fputs("\"];\n", f);
            if (producer[t] >= 0) fprintf(f, "  n%d -> out%d;\n", producer[t], o);
            else fprintf(f, "  t%d -> out%d;\n", t, o);
            break;
        }
    }
    fputs("}\n", f);
    free(producer);
    bool ok = !ferror(f);
    if (f != stdout) ok &= fclose(f) == 0;
    if (!ok) {
        fprintf(stderr, "mdeploy-inspect: writing '%s' failed\n", out);
        return 1;
    }
    return 0;
}

static const tool_opt opts[] = {
    {"json", 256, NULL, "print it all as JSON"},
    {"verify", 257, NULL, "check the content digest, signature (with --public-key) and security counter,\n"
                          "load the model (an encrypted one with --decryption-key) and run its self-test\n"
                          "vectors; one line per check, exit status 1 when one fails"},
    {"public-key", 258, "PUB", "an Ed25519 public key (mdeploy-keygen --sign); repeatable; the model must be\n"
                               "signed by one of them"},
    {"decryption-key", 259, "KEY", "open an encrypted model with this key (mdeploy-keygen --encryption)"},
    {"min-counter", 260, "N", "refuse a security counter below N (anti-rollback)"},
    {"dot", 261, "FILE", "write the graph in Graphviz's dot language to FILE ('-': stdout): operators with\n"
                         "their attributes (fused activations) and weight shapes, shapes on the edges;\n"
                         "render it with: dot -Tsvg FILE -o graph.svg"},
};
static const tool_cli cli = {
    "mdeploy-inspect",
    "Metadata, inputs/outputs, operators with tensor shapes, weight and arena bytes of a model; of an ONNX\n"
    "model its inputs/outputs and operators, each marked with what the converter does with it.",
    "MODEL.mdl|MODEL.onnx [--json]\nMODEL.mdl --dot FILE\nMODEL.mdl --verify [--public-key PUB]... [--decryption-key KEY] [--min-counter N]",
    opts, TOOL_NOPTS(opts),
    "mdeploy-inspect net.mdl\n"
    "mdeploy-inspect net.onnx --json\n"
    "mdeploy-inspect net.mdl --dot net.dot && dot -Tsvg net.dot -o net.svg\n"
    "mdeploy-inspect net.mdl --verify --public-key release.pub --min-counter 7",
};

int main(int argc, char **argv) {
    const char *path = NULL;
    bool json = false, verify = false;
    const char *dot = NULL;
    static seal_keys keys;
    uint64_t min_counter = 0;
    for (int c; (c = tool_getopt(&cli, argc, argv)) != -1;) {
        if (c == 256) json = true;
        else if (c == 257) verify = true;
        else if (c == 261) dot = tool_optarg;
        else if (c == 258) {
            if (!seal_add_public(&keys, tool_optarg, "mdeploy-inspect")) return 1;
        } else if (c == 259) {
            if (!seal_set_decryption(&keys, tool_optarg, "mdeploy-inspect")) return 1;
        } else if (c == 260) {
            char *end;
            unsigned long long v = strtoull(tool_optarg, &end, 10);
            if (!*tool_optarg || *end || tool_optarg[0] == '-') {
                fprintf(stderr, "mdeploy-inspect: bad value '%s' for --min-counter (a counter >= 0)\n", tool_optarg);
                return 1;
            }
            min_counter = v;
        } else if (path) {
            fprintf(stderr, "mdeploy-inspect: more than one model given ('%s' and '%s')\n", path, tool_optarg);
            return 2;
        } else path = tool_optarg;
    }
    if (!path) return tool_usage_error(&cli, "no model given");
    if (tool_is_onnx_path(path)) {
        if (dot) return tool_usage_error(&cli, "--dot draws a converted model: mdeploy-convert the ONNX model first");
        return inspect_onnx(path, json);
    }
    if (verify) return verify_model(path, &keys, min_counter) ? 1 : 0;
    mdl_model *m;
    mdl_error err;
    mdl_load_options lo = mdl_load_options_default();
    lo.security = seal_security(&keys); /* an encrypted model: --decryption-key */
    if (mdl_model_load_file(path, &lo, &m, &err)) {
        fprintf(stderr, "mdeploy-inspect: %s\n", err.msg);
        return 1;
    }
    if (dot) {
        int rc = write_dot(m, dot);
        mdl_model_free(m);
        return rc;
    }
    int nn = mdl_model_node_count(m);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", mdl_model_name(m));
        cJSON_AddStringToObject(o, "version", mdl_model_version(m));
        cJSON_AddStringToObject(o, "producer", mdl_model_producer(m));
        cJSON_AddStringToObject(o, "description", mdl_model_description(m));
        char fmt[32];
        snprintf(fmt, sizeof fmt, "%d.%d", mdl_model_format_major(m), mdl_model_format_minor(m));
        cJSON_AddStringToObject(o, "format", fmt);
        if (*mdl_model_load_note(m)) cJSON_AddStringToObject(o, "load_note", mdl_model_load_note(m));
        cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
        const char *k, *v;
        for (int i = 0; mdl_model_metadata_at(m, i, &k, &v); i++) cJSON_AddStringToObject(meta, k, v);
        cJSON *ins = cJSON_AddArrayToObject(o, "inputs"), *outs = cJSON_AddArrayToObject(o, "outputs");
        for (int i = 0; i < mdl_model_input_count(m); i++) {
            mdl_tensor_info ti;
            mdl_model_input_info(m, i, &ti);
            cJSON_AddItemToArray(ins, info_json(&ti));
        }
        for (int i = 0; i < mdl_model_output_count(m); i++) {
            mdl_tensor_info ti;
            mdl_model_output_info(m, i, &ti);
            cJSON_AddItemToArray(outs, info_json(&ti));
        }
        cJSON *tensors = cJSON_AddArrayToObject(o, "tensors");
        for (int t = 0; t < mdl_model_tensor_count(m); t++) cJSON_AddItemToArray(tensors, tensor_json(m, t));
        cJSON *ops = cJSON_AddArrayToObject(o, "operators");
        for (int i = 0; i < nn; i++) {
            mdl_node_info ni;
            mdl_model_node_info(m, i, &ni);
            cJSON *op = cJSON_CreateObject();
            cJSON_AddStringToObject(op, "op", ni.op);
            cJSON_AddStringToObject(op, "name", ni.name);
            char attrs[256];
            mdl_model_node_attrs(m, i, attrs, sizeof attrs);
            cJSON_AddStringToObject(op, "attrs", attrs);
            cJSON *a = cJSON_AddArrayToObject(op, "inputs");
            for (int k2 = 0; k2 < ni.nin; k2++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ni.inputs[k2]));
            a = cJSON_AddArrayToObject(op, "outputs");
            for (int k2 = 0; k2 < ni.nout; k2++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ni.outputs[k2]));
            cJSON_AddNumberToObject(op, "scratch_bytes", (double)ni.scratch_bytes);
            cJSON_AddItemToArray(ops, op);
        }
        cJSON_AddNumberToObject(o, "weight_bytes", (double)mdl_model_weight_bytes(m));
        cJSON_AddNumberToObject(o, "activation_bytes", (double)mdl_model_activation_bytes(m));
        cJSON_AddNumberToObject(o, "session_bytes", (double)mdl_model_arena_size(m));
        char *text = cJSON_Print(o);
        puts(text);
        free(text);
        cJSON_Delete(o);
    } else {
        printf("model        %s\n", path);
        printf("name         %s\n", mdl_model_name(m));
        printf("version      %s\n", mdl_model_version(m));
        printf("producer     %s\n", mdl_model_producer(m));
        if (*mdl_model_description(m)) printf("description  %s\n", mdl_model_description(m));
        printf("format       %d.%d\n", mdl_model_format_major(m), mdl_model_format_minor(m));
        if (*mdl_model_load_note(m)) printf("note         %s\n", mdl_model_load_note(m));
        const char *k, *v;
        for (int i = 0; mdl_model_metadata_at(m, i, &k, &v); i++) printf("meta         %s = %s\n", k, v);
        for (int i = 0; i < mdl_model_input_count(m); i++) {
            mdl_tensor_info ti;
            char s[160];
            mdl_model_input_info(m, i, &ti);
            printf("input  %d     %s %s %s\n", i, ti.name, mdl_dtype_name(ti.dtype), tool_info_shape_str(s, sizeof s, &ti));
        }
        for (int i = 0; i < mdl_model_output_count(m); i++) {
            mdl_tensor_info ti;
            char s[160];
            mdl_model_output_info(m, i, &ti);
            printf("output %d     %s %s %s\n", i, ti.name, mdl_dtype_name(ti.dtype), tool_info_shape_str(s, sizeof s, &ti));
        }
        printf("operators    %d\n", nn);
        for (int i = 0; i < nn; i++) {
            mdl_node_info ni;
            mdl_model_node_info(m, i, &ni);
            char attrs[256];
            mdl_model_node_attrs(m, i, attrs, sizeof attrs);
            printf("  %3d %-16s %-24s ", i, ni.op, ni.name);
            if (attrs[0]) printf("[%s] ", attrs);
            for (int k2 = 0; k2 < ni.nin; k2++) {
                if (k2) printf(", ");
                if (ni.inputs[k2] < 0) printf("-");
                else print_tensor(m, ni.inputs[k2]);
            }
            printf(" -> ");
            for (int k2 = 0; k2 < ni.nout; k2++) {
                if (k2) printf(", ");
                if (ni.outputs[k2] < 0) printf("-");
                else print_tensor(m, ni.outputs[k2]);
            }
            if (ni.scratch_bytes) printf("  (scratch %zu B)", ni.scratch_bytes);
            printf("\n");
        }
        printf("weights      %zu bytes\n", mdl_model_weight_bytes(m));
        printf("arena        %zu bytes (activations), %zu bytes for a session\n",
               mdl_model_activation_bytes(m), mdl_model_arena_size(m));
        if (mdl_model_symbol_count(m)) {
            printf("dynamic     ");
            for (int y = 0; y < mdl_model_symbol_count(m); y++) {
                const char *sn;
                int64_t mx;
                mdl_model_symbol(m, y, &sn, &mx, NULL);
                printf(" %s", sn);
                if (mx) printf("<=%lld", (long long)mx);
                printf(y + 1 < mdl_model_symbol_count(m) ? "," : "");
            }
            printf("  (the arena above: every dynamic dim at its initial value)\n");
        }
    }
    mdl_model_free(m);
    return 0;
}
