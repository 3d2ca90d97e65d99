/* The ONNX importer (onnx_import_host.h): the model is parsed with protobuf-c (code generated at
 * build time from the onnx package's onnx.proto), its initializers become constants, its inputs
 * get their shapes, and its nodes are lowered one by one in topological order
 * (onnx_lower_*_host.c): constant subgraphs fold as they are met, so shapes are always known.
 * Also mdl_parse_input_shape (include/mdeploy/convert.h), whose NAME=DIMS text the input
 * matching here reads. */
#include "io/onnx_import_host.h"
#include "io/onnx_lower_host.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

mdl_status mdl_parse_input_shape(const char *text, mdl_input_shape *shape, mdl_error *err) {
    if (!text || !shape) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_parse_input_shape: NULL argument");
    memset(shape, 0, sizeof *shape);
    const char *eq = strrchr(text, '=');
    if (!eq || eq == text)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "input shape '%s': expected NAME=DxDx... (e.g. x=1x3x224x224)", text);
    const char *p = eq + 1;
    int32_t rank = 0;
    while (*p) {
        if (rank == MDL_MAX_RANK)
            return mdl__error(err, MDL_INVALID_ARGUMENT, "input shape '%s': more than %d dims", text, MDL_MAX_RANK);
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 1 || v > ((long long)1 << 40) || *p == '+' || *p == '-' || *p == ' ')
            return mdl__error(err, MDL_INVALID_ARGUMENT, "input shape '%s': dimension '%.20s' is not a positive integer", text, p);
        shape->dims[rank++] = v;
        p = end;
        if (*p == 'x' || *p == 'X' || *p == ',') {
            p++;
            if (!*p) return mdl__error(err, MDL_INVALID_ARGUMENT, "input shape '%s': trailing separator", text);
        } else if (*p) {
            return mdl__error(err, MDL_INVALID_ARGUMENT, "input shape '%s': unexpected '%c'", text, *p);
        }
    }
    if (rank == 0) return mdl__error(err, MDL_INVALID_ARGUMENT, "input shape '%s': no dimensions", text);
    shape->name = text; /* the name ends at the last '=' */
    shape->rank = rank;
    return MDL_OK;
}

/* Length of an input-shape name: up to its last '=' when it points into "NAME=dims" text. */
static size_t shape_name_len(const char *name) {
    const char *eq = strrchr(name, '=');
    return eq ? (size_t)(eq - name) : strlen(name);
}

static bool shape_name_is(const char *name, const char *input) {
    size_t n = shape_name_len(name);
    return strlen(input) == n && memcmp(name, input, n) == 0;
}

/* ---- files ----------------------------------------------------------------------------------- */

static mdl_status read_file(const char *path, uint8_t **data, size_t *size, mdl_error *err) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return mdl__error(err, MDL_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return mdl__error(err, MDL_IO, "cannot read '%s': not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory reading '%s' (%zu bytes)", path, n);
    }
    if (fread(buf, 1, n, f) != n) {
        int e = errno;
        free(buf);
        fclose(f);
        return mdl__error(err, MDL_IO, "cannot read '%s': %s", path, strerror(e));
    }
    fclose(f);
    *data = buf;
    *size = n;
    return MDL_OK;
}

/* External tensor data: "location" relative to the model's directory, optional offset/length. */
/* Reads an initializer's external data (want bytes) into *out (malloc'd; the caller frees it).
   The file's size is checked before anything is allocated: a small model cannot make the
   importer reserve memory its data does not back. */
static mdl_status read_external(cv_ctx *c, const Onnx__TensorProto *tp, const char *name,
                                size_t want, uint8_t **out) {
    *out = NULL;
    const char *loc = NULL;
    long long off = 0, len = -1;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = tp->external_data[i];
        if (!e->key || !e->value) continue;
        if (!strcmp(e->key, "location")) loc = e->value;
        else if (!strcmp(e->key, "offset")) off = strtoll(e->value, NULL, 10);
        else if (!strcmp(e->key, "length")) len = strtoll(e->value, NULL, 10);
    }
    if (!loc || !*loc)
        return mdl__error(c->err, MDL_CORRUPT_MODEL, "initializer '%s': external data without a location", name);
    if (!c->model_dir) /* a model converted from memory has no directory to read from */
        return mdl__error(c->err, MDL_UNSUPPORTED, "initializer '%s': external data ('%s') needs the model "
                          "as a file (mdl_convert_onnx), not a memory buffer", name, loc);
    /* the data must live beside the model: no absolute paths, no way up */
    if (loc[0] == '/' || strstr(loc, "..") || off < 0)
        return mdl__error(c->err, MDL_CORRUPT_MODEL,
                          "initializer '%s': external data location '%s' is outside the model directory",
                          name, loc);
    if (len >= 0 && (size_t)len != want)
        return mdl__error(c->err, MDL_CORRUPT_MODEL, "initializer '%s': external data is %lld bytes, expected %zu",
                          name, len, want);
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", c->model_dir, loc) >= sizeof path)
        return mdl__error(c->err, MDL_IO, "initializer '%s': external data path too long", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return mdl__error(c->err, MDL_IO, "initializer '%s': cannot open external data '%s': %s", name,
                          path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < off || (uint64_t)(sb.st_size - off) < (uint64_t)want) {
        fclose(f);
        return mdl__error(c->err, MDL_IO, "initializer '%s': external data '%s' is shorter than offset %lld + %zu bytes",
                          name, path, off, want);
    }
    uint8_t *dst = malloc(want ? want : 1);
    if (!dst) {
        fclose(f);
        return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory for tensor '%s'", name);
    }
    bool ok = fseek(f, (long)off, SEEK_SET) == 0 && fread(dst, 1, want, f) == want;
    fclose(f);
    if (!ok) {
        free(dst);
        return mdl__error(c->err, MDL_IO, "initializer '%s': external data '%s' is shorter than offset %lld + %zu bytes",
                          name, path, off, want);
    }
    *out = dst;
    return MDL_OK;
}

const char *mdl__onnx_type_name(int64_t t) {
    static const char *const names[] = {
        "undefined", "float", "uint8", "int8", "uint16", "int16", "int32", "int64", "string", "bool",
        "float16", "double", "uint32", "uint64", "complex64", "complex128", "bfloat16",
        "float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz", "uint4", "int4", "float4e2m1"};
    return t >= 0 && t < (int64_t)(sizeof names / sizeof names[0]) ? names[t] : "unknown";
}

static float half_to_float(uint16_t h) {
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1F, m = h & 0x3FF, bits;
    if (e == 0) {
        if (!m) bits = s;
        else { /* subnormal */
            e = 127 - 15 + 1;
            while (!(m & 0x400)) {
                m <<= 1;
                e--;
            }
            bits = s | (e << 23) | ((m & 0x3FF) << 13);
        }
    } else if (e == 31) {
        bits = s | 0x7F800000u | (m << 13);
    } else {
        bits = s | ((e + 127 - 15) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

mdl_status mdl__cv_tensor_proto(cv_ctx *c, const Onnx__TensorProto *tp, const char *name,
                                int32_t *out) {
    if (!name || !*name) name = tp->name ? tp->name : "";
    int32_t type = tp->has_data_type ? tp->data_type : 0;
    mdl_dtype dt;
    size_t src_es; /* bytes per element in raw_data */
    switch (type) {
    case 1: dt = MDL_DTYPE_FLOAT32; src_es = 4; break;
    case 2: dt = MDL_DTYPE_UINT8; src_es = 1; break;
    case 3: dt = MDL_DTYPE_INT8; src_es = 1; break;
    case 4: dt = MDL_DTYPE_INT32; src_es = 2; break;  /* uint16 */
    case 5: dt = MDL_DTYPE_INT32; src_es = 2; break;  /* int16 */
    case 6: dt = MDL_DTYPE_INT32; src_es = 4; break;
    case 7: dt = MDL_DTYPE_INT64; src_es = 8; break;
    case 9: dt = MDL_DTYPE_BOOL; src_es = 1; break;
    case 10: dt = MDL_DTYPE_FLOAT32; src_es = 2; break; /* float16 */
    case 11: dt = MDL_DTYPE_FLOAT32; src_es = 8; break; /* double */
    case 12: dt = MDL_DTYPE_INT64; src_es = 4; break;   /* uint32 */
    case 13: dt = MDL_DTYPE_INT64; src_es = 8; break;   /* uint64 */
    case 16: dt = MDL_DTYPE_FLOAT32; src_es = 2; break; /* bfloat16 */
    default:
        return mdl__error(c->err, MDL_UNSUPPORTED, "tensor '%s': ONNX data type %s is not supported", name,
                          mdl__onnx_type_name(type));
    }
    if (tp->n_dims > MDL_MAX_RANK)
        return mdl__error(c->err, MDL_UNSUPPORTED, "tensor '%s': rank %zu exceeds %d", name, tp->n_dims, MDL_MAX_RANK);
    int64_t count;
    size_t bytes;
    if (!mdl__shape_size((int32_t)tp->n_dims, tp->dims, src_es, &count, &bytes))
        return mdl__error(c->err, MDL_CORRUPT_MODEL, "tensor '%s': negative or huge dims", name);
    /* The data's source and its size are checked before the tensor is allocated. */
    const uint8_t *raw = NULL; /* raw bytes (little-endian, from raw_data or an external file) */
    uint8_t *ext = NULL;
    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        mdl_status st = read_external(c, tp, name, bytes, &ext);
        if (st) return st;
        raw = ext;
    } else if (tp->has_raw_data) {
        if (tp->raw_data.len != bytes)
            return mdl__error(c->err, MDL_CORRUPT_MODEL, "tensor '%s': raw_data has %zu bytes, its shape needs %zu",
                              name, tp->raw_data.len, bytes);
        raw = tp->raw_data.data;
    } else {
        /* typed fields: which one holds the data depends on the type */
        size_t have = type == 1 ? tp->n_float_data
                      : type == 7 ? tp->n_int64_data
                      : type == 11 ? tp->n_double_data
                      : (type == 12 || type == 13) ? tp->n_uint64_data
                                                   : tp->n_int32_data;
        if (have != (size_t)count)
            return mdl__error(c->err, MDL_CORRUPT_MODEL, "tensor '%s' has %zu values, its shape needs %lld",
                              name, have, (long long)count);
    }
    int32_t t = mdl__cv_tensor(c, name, dt, (int32_t)tp->n_dims, tp->dims, NULL);
    void *dst = t < 0 ? NULL : mdl__cv_alloc(c, c->ts[t].bytes);
    if (!dst) {
        free(ext);
        return t < 0 ? c->err->status : mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory for tensor '%s'", name);
    }
    c->ts[t].data = dst;
    if (raw) {
        for (int64_t i = 0; i < count; i++) {
            const uint8_t *p = raw + (size_t)i * src_es;
            switch (type) {
            case 1: case 2: case 3: case 6: case 7: case 9: memcpy((char *)dst + (size_t)i * src_es, p, src_es); break;
            case 4: { uint16_t v; memcpy(&v, p, 2); ((int32_t *)dst)[i] = v; break; }
            case 5: { int16_t v; memcpy(&v, p, 2); ((int32_t *)dst)[i] = v; break; }
            case 10: { uint16_t v; memcpy(&v, p, 2); ((float *)dst)[i] = half_to_float(v); break; }
            case 11: { double v; memcpy(&v, p, 8); ((float *)dst)[i] = (float)v; break; }
            case 12: { uint32_t v; memcpy(&v, p, 4); ((int64_t *)dst)[i] = v; break; }
            case 13: { uint64_t v; memcpy(&v, p, 8); ((int64_t *)dst)[i] = (int64_t)v; break; }
            case 16: { uint16_t v; memcpy(&v, p, 2); uint32_t b = (uint32_t)v << 16; float f; memcpy(&f, &b, 4); ((float *)dst)[i] = f; break; }
            default: break;
            }
        }
    } else { /* the typed field checked above */
        for (int64_t i = 0; i < count; i++) {
            switch (type) {
            case 1: ((float *)dst)[i] = tp->float_data[i]; break;
            case 7: ((int64_t *)dst)[i] = tp->int64_data[i]; break;
            case 11: ((float *)dst)[i] = (float)tp->double_data[i]; break;
            case 12: case 13: ((int64_t *)dst)[i] = (int64_t)tp->uint64_data[i]; break;
            case 2: case 9: ((uint8_t *)dst)[i] = (uint8_t)tp->int32_data[i]; break;
            case 3: ((int8_t *)dst)[i] = (int8_t)tp->int32_data[i]; break;
            case 4: case 5: case 6: ((int32_t *)dst)[i] = tp->int32_data[i]; break;
            case 10: ((float *)dst)[i] = half_to_float((uint16_t)tp->int32_data[i]); break;
            case 16: { uint32_t b = (uint32_t)(uint16_t)tp->int32_data[i] << 16; float f; memcpy(&f, &b, 4); ((float *)dst)[i] = f; break; }
            default: break;
            }
        }
    }
    free(ext);
    *out = t;
    return MDL_OK;
}

/* ---- inputs ---------------------------------------------------------------------------------- */

/* The symbol for a dynamic dim (found by name or added) with its bound; -1 on error (set). */
static int32_t input_symbol(cv_ctx *c, const char *input, int32_t d, const char *param, int64_t max) {
    const char *name = param && *param ? param : mdl__cv_fmt(c, "%s.%d", input, (int)d);
    if (!name) return -1;
    int32_t s = 0;
    while (s < c->nsyms && strcmp(c->sym_names[s], name)) s++;
    if (s == c->nsyms) {
        if (c->nsyms == MDL_CONVERT_MAX_SHAPES) {
            mdl__error(c->err, MDL_UNSUPPORTED, "more than %d dynamic dims: fix some with --input-shape",
                       MDL_CONVERT_MAX_SHAPES);
            return -1;
        }
        c->sym_names[s] = name;
        c->sym_max[s] = 0;
        c->nsyms++;
    }
    if (max && (!c->sym_max[s] || max < c->sym_max[s])) c->sym_max[s] = max;
    size_t len = strlen(c->sym_where);
    snprintf(c->sym_where + len, sizeof c->sym_where - len, "%s%s[%d]=%s", len ? ", " : "", input,
             (int)d, name);
    return s;
}

static mdl_status add_input(cv_ctx *c, const Onnx__ValueInfoProto *vi, const mdl_convert_options *o,
                            bool *used, bool *max_used) {
    const char *name = vi->name ? vi->name : "";
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return mdl__error(c->err, MDL_UNSUPPORTED, "graph input '%s' is not a tensor", name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    mdl_dtype dt;
    switch (tt->has_elem_type ? tt->elem_type : 0) {
    case 1: dt = MDL_DTYPE_FLOAT32; break;
    case 2: dt = MDL_DTYPE_UINT8; break;
    case 3: dt = MDL_DTYPE_INT8; break;
    case 6: dt = MDL_DTYPE_INT32; break;
    case 7: dt = MDL_DTYPE_INT64; break;
    case 9: dt = MDL_DTYPE_BOOL; break;
    default:
        return mdl__error(c->err, MDL_UNSUPPORTED, "graph input '%s' has element type %s (supported: float, "
                          "int8, uint8, int32, int64, bool)", name, mdl__onnx_type_name(tt->has_elem_type ? tt->elem_type : 0));
    }
    const mdl_input_shape *given = NULL;
    for (int32_t k = 0; k < o->ninput_shapes && k < MDL_CONVERT_MAX_SHAPES; k++)
        if (o->input_shapes[k].name && shape_name_is(o->input_shapes[k].name, name)) {
            given = &o->input_shapes[k];
            used[k] = true;
        }
    const mdl_input_shape *bound = NULL;
    for (int32_t k = 0; k < o->nmax_shapes && k < MDL_CONVERT_MAX_SHAPES; k++)
        if (o->max_shapes[k].name && shape_name_is(o->max_shapes[k].name, name)) {
            bound = &o->max_shapes[k];
            max_used[k] = true;
        }
    int64_t dims[MDL_MAX_RANK];
    int32_t rank;
    if (tt->shape) {
        if (tt->shape->n_dim > MDL_MAX_RANK)
            return mdl__error(c->err, MDL_UNSUPPORTED, "graph input '%s' has rank %zu (max %d)", name,
                              tt->shape->n_dim, MDL_MAX_RANK);
        rank = (int32_t)tt->shape->n_dim;
        if (given && given->rank != rank)
            return mdl__error(c->err, MDL_SHAPE, "--input-shape %s: rank %d, the model's input has rank %d",
                              name, (int)given->rank, (int)rank);
        for (int32_t i = 0; i < rank; i++) {
            const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
            bool fixed = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > 0;
            if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value == 0 && !given)
                return mdl__error(c->err, MDL_UNSUPPORTED,
                                  "graph input '%s' has dim %d of size 0 (an empty tensor): not supported (if the "
                                  "exporter meant a dynamic dim, give its size with --input-shape)", name, (int)i);
            if (fixed && given && given->dims[i] != d->dim_value)
                return mdl__error(c->err, MDL_SHAPE, "--input-shape %s: dim %d is %lld, the model fixes it to %lld",
                                  name, (int)i, (long long)given->dims[i], (long long)d->dim_value);
            if (bound && bound->rank != rank)
                return mdl__error(c->err, MDL_SHAPE, "--max-shape %s: rank %d, the model's input has rank %d",
                                  name, (int)bound->rank, (int)rank);
            if (fixed || given) {
                dims[i] = fixed ? d->dim_value : given->dims[i];
                if (bound && bound->dims[i] < dims[i])
                    return mdl__error(c->err, MDL_SHAPE, "--max-shape %s: dim %d is fixed to %lld, above "
                                      "the bound %lld", name, (int)i, (long long)dims[i],
                                      (long long)bound->dims[i]);
                continue;
            }
            /* a dynamic dim stays symbolic: lowered at the probe's size (convert_dyn_host.c) */
            const char *param = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
                                    ? d->dim_param : NULL;
            int32_t sy = input_symbol(c, name, i, param, bound ? bound->dims[i] : 0);
            if (sy < 0) return c->err->status ? c->err->status : MDL_OUT_OF_MEMORY;
            dims[i] = mdl__cv_probe_size(c->probe, sy);
        }
    } else {
        if (!given)
            return mdl__error(c->err, MDL_SHAPE, "graph input '%s' has no shape: give one with --input-shape", name);
        rank = given->rank;
        memcpy(dims, given->dims, sizeof(int64_t) * (size_t)rank);
    }
    int32_t v = mdl__cv_value(c, name);
    int32_t t = v < 0 ? -1 : mdl__cv_tensor(c, name, dt, rank, dims, NULL);
    if (t < 0) return c->err->status ? c->err->status : MDL_OUT_OF_MEMORY;
    c->ts[t].graph_input = true;
    mdl__cv_bind(c, v, t, NULL);
    c->inputs[c->ninputs++] = t;
    return MDL_OK;
}

/* ---- the conversion ------------------------------------------------------------------------ */

int64_t mdl__onnx_opset(const Onnx__ModelProto *m) {
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (!o->domain || !*o->domain || !strcmp(o->domain, "ai.onnx")) return o->has_version ? o->version : 1;
    }
    return -1;
}

/* Lowers every node, in topological order (ONNX requires sorted graphs; tolerate unsorted ones). */
static mdl_status lower_nodes(cv_ctx *c, const Onnx__GraphProto *g) {
    size_t nn = g->n_node;
    uint8_t *done = calloc(nn ? nn : 1, 1);
    if (!done) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory");
    mdl_status st = MDL_OK;
    size_t remaining = nn;
    while (remaining && !st) {
        size_t progress = 0;
        for (size_t i = 0; i < nn && !st; i++) {
            if (done[i]) continue;
            const Onnx__NodeProto *n = g->node[i];
            bool ready = true;
            for (size_t k = 0; k < n->n_input && ready; k++) {
                if (!n->input[k] || !*n->input[k]) continue;
                int32_t v = mdl__cv_value_find(c, n->input[k]);
                ready = v >= 0 && c->vals[v].defined;
            }
            if (!ready) continue;
            done[i] = 1;
            progress++;
            remaining--;
            const char *op = n->op_type ? n->op_type : "";
            c->op_type = op;
            c->node_name = n->name && *n->name ? n->name : mdl__cv_fmt(c, "%s_%zu", op, i);
            c->node_mark = c->nnodes;
            bool qop = mdl__cv_quant_op(n->domain, op);
            if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx") && !qop) {
                st = mdl__cv_fail(c, MDL_UNSUPPORTED, "unsupported operator (domain '%s')", n->domain);
                break;
            }
            if (!qop && !mdl__cv_known_op(op)) {
                st = mdl__cv_fail(c, MDL_UNSUPPORTED, "unsupported operator%s", mdl__cv_unsupported_hint(op));
                break;
            }
            if (n->n_input > MDL_MAX_NODE_IO || n->n_output > MDL_MAX_NODE_IO) {
                st = mdl__cv_fail(c, MDL_UNSUPPORTED, "too many inputs or outputs");
                break;
            }
            if (n->n_output < 1) {
                /* every operator has at least one output; lowering code may rely on out[0] */
                st = mdl__cv_fail(c, MDL_CORRUPT_MODEL, "node has no outputs");
                break;
            }
            int32_t in[MDL_MAX_NODE_IO], out[MDL_MAX_NODE_IO];
            for (int k = 0; k < MDL_MAX_NODE_IO; k++) in[k] = out[k] = -1;
            int nin = (int)n->n_input, nout = (int)n->n_output;
            for (int k = 0; k < nin; k++)
                in[k] = n->input[k] && *n->input[k] ? mdl__cv_value_find(c, n->input[k]) : -1;
            for (int k = 0; k < nout && !st; k++) {
                out[k] = -1;
                if (!n->output[k] || !*n->output[k]) continue;
                out[k] = mdl__cv_value(c, n->output[k]);
                if (out[k] < 0) st = c->err->status;
                else if (c->vals[out[k]].defined)
                    st = mdl__cv_fail(c, MDL_CORRUPT_MODEL, "output '%s' is defined twice", n->output[k]);
            }
            if (st) break;
            bool folded_here = false;
            /* quantization ops, and anything reading an 8-bit quantized or run-time
               quantization value, first */
            if ((st = mdl__cv_check_inputs(c, n, nin, in))) break;
            if ((st = mdl__cv_lower_quant(c, n, nin, in, nout, out, &folded_here))) break;
            if (!folded_here && (st = mdl__cv_fold(c, n, nin, in, nout, out, &folded_here))) break;
            if (!folded_here && (st = mdl__cv_lower(c, n, nin, in, nout, out))) break;
            bool all_const = true;
            for (int k = 0; k < nout && !st; k++) {
                if (out[k] < 0) continue;
                if (!c->vals[out[k]].defined) {
                    /* an optional output the converter cannot produce (e.g. MaxPool Indices) */
                    st = mdl__cv_fail(c, MDL_UNSUPPORTED, "output %d '%s' is not supported", k, n->output[k]);
                }
                all_const = all_const && mdl__cv_is_const(c, out[k]);
            }
            if (!st && all_const) c->folded++;
        }
        if (!st && !progress) {
            /* report the first input that never becomes available */
            for (size_t i = 0; i < nn; i++) {
                if (done[i]) continue;
                const Onnx__NodeProto *n = g->node[i];
                for (size_t k = 0; k < n->n_input; k++) {
                    if (!n->input[k] || !*n->input[k]) continue;
                    int32_t v = mdl__cv_value_find(c, n->input[k]);
                    if (v < 0 || !c->vals[v].defined) {
                        c->op_type = NULL;
                        st = mdl__error(c->err, MDL_CORRUPT_MODEL,
                                        "%s '%s': input '%s' is never computed (undefined value or a cycle)",
                                        n->op_type ? n->op_type : "", n->name ? n->name : "", n->input[k]);
                        break;
                    }
                }
                if (st) break;
            }
            if (!st) st = mdl__error(c->err, MDL_CORRUPT_MODEL, "graph has a cycle");
        }
    }
    free(done);
    return st;
}

/* Graph outputs in the ONNX layout, each produced by a node and named as in the ONNX model. */
static mdl_status bind_outputs(cv_ctx *c, const Onnx__GraphProto *g) {
    mdl_status st_copy;
    c->op_type = NULL;
    for (size_t k = 0; k < g->n_output; k++) {
        const char *name = g->output[k]->name ? g->output[k]->name : "";
        int32_t v = mdl__cv_value_find(c, name);
        if (v < 0 || !c->vals[v].defined)
            return mdl__error(c->err, MDL_CORRUPT_MODEL, "graph output '%s' is never computed", name);
        if (c->vals[v].dyn)
            return mdl__error(c->err, MDL_UNSUPPORTED,
                              "graph output '%s' is a run-time quantization value of dynamic quantization "
                              "(computed in float here)", name);
        c->node_name = name;
        c->node_mark = c->nnodes;
        int32_t t = mdl__cv_native(c, v);
        if (t < 0) return c->err->status;
        bool dup = false;
        for (int32_t j = 0; j < c->noutputs; j++) dup = dup || c->outputs[j] == t;
        if (c->ts[t].data || c->ts[t].graph_input || dup) {
            /* a constant, an input or a repeated output: give it its own copy */
            c->nofold = true;
            int32_t copy;
            st_copy = mdl__cv_emit(c, MDL_OP_RESHAPE, "copy", 1, &t, 1, &copy, NULL, c->ts[t].rank,
                                   c->ts[t].dims);
            t = copy;
            c->nofold = false;
            if (st_copy) return st_copy;
        }
        c->ts[t].name = c->vals[v].name;
        c->outputs[c->noutputs++] = t;
    }
    return MDL_OK;
}

/* ---- the stage ------------------------------------------------------------------------------- */

struct mdl__onnx_model {
    uint8_t *buf;
    Onnx__ModelProto *m;
    char *dir; /* the model's directory (external data) */
};

/* protobuf-c allocations through plain malloc (its default) are fine; errors come back as NULL. */
mdl_status mdl__onnx_open(const char *path, mdl__onnx_model **out, mdl_error *err) {
    *out = NULL;
    mdl__onnx_model *om = calloc(1, sizeof *om);
    char *dir = malloc(strlen(path) + 2);
    if (!om || !dir) {
        free(om);
        free(dir);
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
    }
    strcpy(dir, path);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) strcpy(dir, "/");
    else *slash = 0;
    om->dir = dir;
    size_t size = 0;
    mdl_status st = read_file(path, &om->buf, &size, err);
    if (st) {
        mdl__onnx_close(om);
        return st;
    }
    om->m = onnx__model_proto__unpack(NULL, size, om->buf);
    if (!om->m || !om->m->graph) {
        mdl__onnx_close(om);
        return mdl__error(err, MDL_CORRUPT_MODEL, "'%s' is not an ONNX model (protobuf parse failed or no graph)",
                          path);
    }
    *out = om;
    return MDL_OK;
}

mdl_status mdl__onnx_open_buffer(const void *data, size_t size, mdl__onnx_model **out, mdl_error *err) {
    *out = NULL;
    mdl__onnx_model *om = calloc(1, sizeof *om);
    if (!om) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
    /* protobuf-c copies what it keeps: the caller's buffer is only read here */
    om->m = data ? onnx__model_proto__unpack(NULL, size, data) : NULL;
    if (!om->m || !om->m->graph) {
        mdl__onnx_close(om);
        return mdl__error(err, MDL_CORRUPT_MODEL, "the %zu-byte buffer is not an ONNX model (protobuf parse "
                          "failed or no graph)", size);
    }
    *out = om;
    return MDL_OK;
}

void mdl__onnx_close(mdl__onnx_model *om) {
    if (!om) return;
    if (om->m) onnx__model_proto__free_unpacked(om->m, NULL);
    free(om->buf);
    free(om->dir);
    free(om);
}

const Onnx__ModelProto *mdl__onnx_proto(const mdl__onnx_model *om) { return om->m; }

void mdl__onnx_info_get(const mdl__onnx_model *om, mdl__onnx_info *info) {
    const Onnx__ModelProto *m = om->m;
    memset(info, 0, sizeof *info);
    info->graph_name = m->graph->name;
    info->doc_string = m->doc_string;
    info->graph_doc_string = m->graph->doc_string;
    info->producer_name = m->producer_name;
    info->producer_version = m->producer_version;
    info->has_model_version = m->has_model_version;
    info->model_version = m->model_version;
    info->nodes = (int32_t)m->graph->n_node;
}

bool mdl__onnx_metadata_at(const mdl__onnx_model *om, int32_t i, const char **key, const char **value) {
    if (i < 0 || (size_t)i >= om->m->n_metadata_props) return false;
    const Onnx__StringStringEntryProto *e = om->m->metadata_props[i];
    *key = e->key ? e->key : "";
    *value = e->value ? e->value : "";
    return true;
}

mdl_status mdl__onnx_import(const mdl__onnx_model *om, cv_ctx *c, const mdl_convert_options *o) {
    mdl_status st;
    const Onnx__ModelProto *m = om->m;
    const Onnx__GraphProto *g = m->graph;
    c->model_dir = om->dir;
    c->opset = mdl__onnx_opset(m);
    if (c->opset < 0) return mdl__error(c->err, MDL_CORRUPT_MODEL, "the model imports no ONNX operator set");
    if (c->opset < 7)
        return mdl__error(c->err, MDL_UNSUPPORTED, "opset %lld is too old (7 or newer needed)", (long long)c->opset);
    if (g->n_sparse_initializer)
        return mdl__error(c->err, MDL_UNSUPPORTED, "sparse initializers are not supported");
    /* every unsupported operator at once, before any one node's own refusal */
    if ((st = mdl__onnx_check_ops(g, c->opset, c->err))) return st;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *tp = g->initializer[i];
        const char *name = tp->name ? tp->name : "";
        int32_t v = mdl__cv_value(c, name), t;
        if (v < 0) return c->err->status;
        if ((st = mdl__cv_tensor_proto(c, tp, name, &t))) return st;
        mdl__cv_bind(c, v, t, NULL);
    }
    c->inputs = calloc(g->n_input + 1, sizeof(int32_t));
    c->outputs = calloc(g->n_output + 1, sizeof(int32_t));
    if (!c->inputs || !c->outputs) return mdl__error(c->err, MDL_OUT_OF_MEMORY, "out of memory");
    bool used[MDL_CONVERT_MAX_SHAPES] = {false}, max_used[MDL_CONVERT_MAX_SHAPES] = {false};
    for (size_t i = 0; i < g->n_input; i++) {
        const char *name = g->input[i]->name ? g->input[i]->name : "";
        int32_t v = mdl__cv_value_find(c, name);
        if (v >= 0 && c->vals[v].defined) continue; /* an initializer listed as input (IR < 4) */
        if ((st = add_input(c, g->input[i], o, used, max_used))) return st;
    }
    for (int32_t k = 0; k < o->ninput_shapes && k < MDL_CONVERT_MAX_SHAPES; k++)
        if (!used[k] && o->input_shapes[k].name)
            return mdl__error(c->err, MDL_INVALID_ARGUMENT, "--input-shape: the model has no input '%.*s'",
                              (int)shape_name_len(o->input_shapes[k].name), o->input_shapes[k].name);
    for (int32_t k = 0; k < o->nmax_shapes && k < MDL_CONVERT_MAX_SHAPES; k++)
        if (!max_used[k] && o->max_shapes[k].name)
            return mdl__error(c->err, MDL_INVALID_ARGUMENT, "--max-shape: the model has no input '%.*s'",
                              (int)shape_name_len(o->max_shapes[k].name), o->max_shapes[k].name);
    if (!c->ninputs) return mdl__error(c->err, MDL_UNSUPPORTED, "the model has no run-time inputs");
    if (!g->n_output) return mdl__error(c->err, MDL_CORRUPT_MODEL, "the model has no outputs");
    if ((st = mdl__cv_fuse_nn(c, &g))) return st; /* GELU, LayerNorm decompositions */
    if ((st = lower_nodes(c, g))) return st;
    if ((st = bind_outputs(c, g))) return st;
    c->op_type = NULL;
    return MDL_OK;
}
