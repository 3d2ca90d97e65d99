/* mdeploy-serve's request bodies (see request.h): JSON and .npy in, JSON and .npy out. */
#include "request.h"

#include "mdeploy/npy.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int fail(char *err, size_t cap, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t cap, int status, const char *fmt, ...) {
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* ---- content type ------------------------------------------------------------------------- */

int req_content_format(const char *content_type, bool *npy, char *err, size_t cap) {
    *npy = false;
    if (!content_type) return 0;
    const char *p = content_type;
    while (*p == ' ' || *p == '\t') p++;
    size_t n = strcspn(p, ";");
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    if (n == 0) return 0;
#define CT_IS(s) (n == strlen(s) && !strncasecmp(p, s, n))
    if (CT_IS("application/x-npy")) {
        *npy = true;
        return 0;
    }
    /* curl -d sends form-urlencoded by default; TF-Serving reads such bodies as JSON too */
    if (CT_IS("application/json") || CT_IS("text/json") || CT_IS("application/x-www-form-urlencoded")) return 0;
#undef CT_IS
    return fail(err, cap, 415, "unsupported Content-Type '%.*s' (application/json or application/x-npy)",
                (int)(n > 100 ? 100 : n), p);
}

/* ---- shapes ------------------------------------------------------------------------------- */

static const char *shape_str(char *buf, size_t cap, int32_t rank, const int64_t *dims) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ",%lld" : "%lld", (long long)dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* The model's signature of an input as "[batch,784]" (a dynamic dim by its name, or "?"). */
static const char *sig_str(char *buf, size_t cap, const mdl_tensor_info *ti) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < ti->rank && n < cap; i++) {
        const char *sep = i ? "," : "";
        if (ti->dims[i] >= 0) n += (size_t)snprintf(buf + n, cap - n, "%s%lld", sep, (long long)ti->dims[i]);
        else
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", sep,
                                  ti->dim_names && ti->dim_names[i] && *ti->dim_names[i] ? ti->dim_names[i] : "?");
    }
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* Checks a request's shape against the model's input ti: rank, fixed dims, dynamic dims' bounds;
   computes the byte count.  rows: the request is in the row format (dim 0 is the instances). */
static int check_shape(const mdl_tensor_info *ti, int32_t rank, const int64_t *dims, bool rows, size_t *bytes,
                       char *err, size_t cap) {
    char sig[160], got[160];
    if (rank != ti->rank) {
        if (rows)
            return fail(err, cap, 400,
                        "input '%s': the model takes %s, so each instance has rank %d; got rank %d %s",
                        ti->name, sig_str(sig, sizeof sig, ti), (int)ti->rank - 1, (int)rank - 1,
                        shape_str(got, sizeof got, rank - 1, dims + 1));
        return fail(err, cap, 400, "input '%s': the model takes rank %d %s, the request has rank %d %s", ti->name,
                    (int)ti->rank, sig_str(sig, sizeof sig, ti), (int)rank, shape_str(got, sizeof got, rank, dims));
    }
    size_t count = 1;
    for (int32_t d = 0; d < rank; d++) {
        int64_t want = ti->dims[d];
        if (want >= 0 && dims[d] != want) {
            if (rows && d == 0)
                return fail(err, cap, 400, "input '%s': the model takes %s: %lld instance%s per request, got %lld",
                            ti->name, sig_str(sig, sizeof sig, ti), (long long)want, want == 1 ? "" : "s",
                            (long long)dims[d]);
            return fail(err, cap, 400, "input '%s': dim %d is %lld in the model %s, the request has %lld %s", ti->name,
                        (int)d, (long long)want, sig_str(sig, sizeof sig, ti), (long long)dims[d],
                        shape_str(got, sizeof got, rank, dims));
        }
        if (want < 0 && ti->dim_max && ti->dim_max[d] > 0 && dims[d] > ti->dim_max[d])
            return fail(err, cap, 400, "input '%s': dim %d (%s) is at most %lld, the request has %lld", ti->name,
                        (int)d, ti->dim_names && ti->dim_names[d] && *ti->dim_names[d] ? ti->dim_names[d] : "dynamic",
                        (long long)ti->dim_max[d], (long long)dims[d]);
        if (dims[d] < 0 || (dims[d] > 0 && count > SIZE_MAX / 16 / (size_t)dims[d]))
            return fail(err, cap, 400, "input '%s': shape %s is too large", ti->name,
                        shape_str(got, sizeof got, rank, dims));
        count *= (size_t)dims[d];
    }
    *bytes = count * mdl_dtype_size(ti->dtype);
    return 0;
}

/* ---- JSON in ------------------------------------------------------------------------------ */

static int array_size(const cJSON *a) {
    int n = 0;
    for (const cJSON *c = a->child; c; c = c->next) n++;
    return n;
}

/* The shape of a nested JSON array, following first elements (checked for the rest by fill). */
static int json_shape(const cJSON *v, int32_t *rank, int64_t *dims, const char *name, char *err, size_t cap) {
    int32_t r = *rank;
    while (cJSON_IsArray(v)) {
        if (r == MDL_MAX_RANK)
            return fail(err, cap, 400, "input '%s': arrays nested deeper than %d", name, MDL_MAX_RANK);
        dims[r++] = array_size(v);
        v = v->child;
        if (!v) break;
    }
    *rank = r;
    return 0;
}

typedef struct fill_ctx {
    const char *name;
    mdl_dtype dtype;
    int32_t rank;
    const int64_t *dims;
    uint8_t *dst;
    size_t at; /* elements written */
    int32_t path[MDL_MAX_RANK];
    char *err;
    size_t cap;
} fill_ctx;

static const char *path_str(char *buf, size_t cap, const fill_ctx *f, int32_t depth) {
    size_t n = 0;
    buf[0] = 0;
    for (int32_t i = 0; i < depth && n < cap; i++) n += (size_t)snprintf(buf + n, cap - n, "[%d]", (int)f->path[i]);
    return buf;
}

static int store(fill_ctx *f, const cJSON *v, int32_t depth) {
    char where[96];
    double d;
    if (cJSON_IsBool(v)) {
        if (f->dtype != MDL_DTYPE_BOOL)
            return fail(f->err, f->cap, 400, "input '%s'%s: true/false for a %s input", f->name,
                        path_str(where, sizeof where, f, depth), mdl_dtype_name(f->dtype));
        d = cJSON_IsTrue(v) ? 1 : 0;
    } else if (cJSON_IsNumber(v)) {
        d = v->valuedouble;
    } else {
        return fail(f->err, f->cap, 400, "input '%s'%s: expected a number, got %s", f->name,
                    path_str(where, sizeof where, f, depth),
                    cJSON_IsArray(v) ? "an array (deeper than the input's rank)"
                    : cJSON_IsString(v) ? "a string"
                    : cJSON_IsObject(v) ? "an object"
                                        : "null");
    }
    if (!isfinite(d))
        return fail(f->err, f->cap, 400, "input '%s'%s: %g is not a finite number", f->name,
                    path_str(where, sizeof where, f, depth), d);
    uint8_t *p = f->dst + f->at * mdl_dtype_size(f->dtype);
    double lo = 0, hi = 0;
    switch (f->dtype) {
    case MDL_DTYPE_FLOAT32: {
        if (fabs(d) > FLT_MAX)
            return fail(f->err, f->cap, 400, "input '%s'%s: %g overflows float32", f->name,
                        path_str(where, sizeof where, f, depth), d);
        float x = (float)d;
        memcpy(p, &x, sizeof x);
        f->at++;
        return 0;
    }
    case MDL_DTYPE_INT8: lo = -128, hi = 127; break;
    case MDL_DTYPE_UINT8: lo = 0, hi = 255; break;
    case MDL_DTYPE_INT32: lo = -2147483648.0, hi = 2147483647.0; break;
    /* a JSON number reaches us as a double: integers beyond 2^53 would not be read exactly */
    case MDL_DTYPE_INT64: lo = -9007199254740992.0, hi = 9007199254740992.0; break;
    case MDL_DTYPE_BOOL: lo = 0, hi = 1; break;
    default:
        return fail(f->err, f->cap, 400, "input '%s': dtype %s cannot be given in JSON", f->name,
                    mdl_dtype_name(f->dtype));
    }
    if (d != floor(d) || d < lo || d > hi)
        return fail(f->err, f->cap, 400, "input '%s'%s: %.17g is not %s %s (integers from %.0f to %.0f)", f->name,
                    path_str(where, sizeof where, f, depth), d, f->dtype == MDL_DTYPE_INT8 ? "an" : "a",
                    mdl_dtype_name(f->dtype), lo, hi);
    switch (f->dtype) {
    case MDL_DTYPE_INT8: *(int8_t *)p = (int8_t)d; break;
    case MDL_DTYPE_UINT8:
    case MDL_DTYPE_BOOL: *p = (uint8_t)d; break;
    case MDL_DTYPE_INT32: {
        int32_t x = (int32_t)d;
        memcpy(p, &x, sizeof x);
        break;
    }
    default: {
        int64_t x = (int64_t)d;
        memcpy(p, &x, sizeof x);
        break;
    }
    }
    f->at++;
    return 0;
}

/* Writes v (the part of the tensor at depth) into f->dst, checking it is rectangular. */
static int fill(fill_ctx *f, const cJSON *v, int32_t depth) {
    if (depth == f->rank) return store(f, v, depth);
    char where[96];
    if (!cJSON_IsArray(v))
        return fail(f->err, f->cap, 400, "input '%s'%s: expected an array of %lld, got %s", f->name,
                    path_str(where, sizeof where, f, depth), (long long)f->dims[depth],
                    cJSON_IsNumber(v) || cJSON_IsBool(v) ? "a single value (shallower than the input's rank)"
                    : cJSON_IsString(v)                  ? "a string"
                    : cJSON_IsObject(v)                  ? "an object"
                                                         : "null");
    int n = array_size(v);
    if (n != f->dims[depth])
        return fail(f->err, f->cap, 400, "input '%s'%s: not rectangular: %d values where the first has %lld",
                    f->name, path_str(where, sizeof where, f, depth), n, (long long)f->dims[depth]);
    int i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        f->path[depth] = i;
        int st = fill(f, c, depth + 1);
        if (st) return st;
    }
    return 0;
}

/* One input from JSON: values[k] for k < nrows are the rows (row format), or values[0] the whole
   tensor (nrows < 0). */
static int json_input(const mdl_tensor_info *ti, const cJSON *const *values, int nrows, req_tensor *t, char *err,
                      size_t cap) {
    int32_t rank = 0;
    int64_t dims[MDL_MAX_RANK] = {0};
    int st;
    if (nrows >= 0) {
        dims[0] = nrows;
        rank = 1;
    }
    if ((st = json_shape(values[0], &rank, dims, ti->name, err, cap))) return st;
    size_t bytes;
    if ((st = check_shape(ti, rank, dims, nrows >= 0, &bytes, err, cap))) return st;
    t->rank = rank;
    memcpy(t->dims, dims, sizeof dims);
    t->bytes = bytes;
    t->data = malloc(bytes ? bytes : 1);
    if (!t->data) return fail(err, cap, 500, "input '%s': out of memory (%zu bytes)", ti->name, bytes);
    fill_ctx f = {.name = ti->name, .dtype = ti->dtype, .rank = rank, .dims = dims, .dst = t->data, .err = err, .cap = cap};
    if (nrows < 0) return fill(&f, values[0], 0);
    for (int k = 0; k < nrows; k++) {
        f.path[0] = k;
        if ((st = fill(&f, values[k], 1))) return st;
    }
    return 0;
}

static void model_input_names(const mdl_model *m, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < mdl_model_input_count(m) && n < cap; i++) {
        mdl_tensor_info ti;
        mdl_model_input_info(m, i, &ti);
        n += (size_t)snprintf(buf + n, cap - n, "%s'%s'", i ? ", " : "", ti.name);
    }
}

static int parse_json(const mdl_model *m, const char *body, size_t len, req_inputs *out, char *err, size_t cap) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        char near[24];
        size_t k = 0;
        for (size_t i = at; i < len && k < 16; i++) near[k++] = isprint((unsigned char)body[i]) ? body[i] : '?';
        near[k] = 0;
        return fail(err, cap, 400, "malformed JSON at byte %zu of %zu%s%s%s", at, len, k ? " (near '" : "", near,
                    k ? "')" : "");
    }
    int st = 0;
    int nin = mdl_model_input_count(m);
    const cJSON **values = NULL;
    char names[256];
    if (!cJSON_IsObject(root)) {
        st = fail(err, cap, 400, "the JSON body must be an object with \"instances\" or \"inputs\"");
        goto done;
    }
    const cJSON *inst = NULL, *cols = NULL;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (!strcmp(c->string, "instances") && !inst) inst = c;
        else if (!strcmp(c->string, "inputs") && !cols) cols = c;
        else if (!strcmp(c->string, "signature_name")) {
            if (!cJSON_IsString(c) || (*c->valuestring && strcmp(c->valuestring, "serving_default"))) {
                st = fail(err, cap, 400, "signature_name: only \"serving_default\" is served");
                goto done;
            }
        } else {
            st = fail(err, cap, 400, "unknown key \"%.64s\" in the body (expected \"instances\" or \"inputs\")",
                      c->string);
            goto done;
        }
    }
    if (!inst == !cols) {
        st = fail(err, cap, 400, inst ? "the body has both \"instances\" and \"inputs\": give one"
                                       : "the body has neither \"instances\" (row format) nor \"inputs\" (columnar)");
        goto done;
    }
    out->count = nin;
    out->tensors = calloc((size_t)(nin ? nin : 1), sizeof *out->tensors);
    if (!out->tensors) {
        st = fail(err, cap, 500, "out of memory");
        goto done;
    }
    model_input_names(m, names, sizeof names);
    if (inst) {
        out->format = REQ_JSON_ROWS;
        if (!cJSON_IsArray(inst)) {
            st = fail(err, cap, 400, "\"instances\" must be an array (one entry per row of the batch)");
            goto done;
        }
        int n = array_size(inst);
        if (n == 0) {
            st = fail(err, cap, 400, "\"instances\" is empty");
            goto done;
        }
        values = malloc(sizeof *values * (size_t)n);
        if (!values) {
            st = fail(err, cap, 500, "out of memory");
            goto done;
        }
        bool named = cJSON_IsObject(inst->child);
        if (!named && nin != 1) {
            st = fail(err, cap, 400,
                      "the model has %d inputs (%s): each instance must be an object {\"name\": value, ...}", nin,
                      names);
            goto done;
        }
        int k = 0;
        for (const cJSON *c = inst->child; c; c = c->next, k++) {
            if (cJSON_IsObject(c) != named) {
                st = fail(err, cap, 400, "instance %d is %s where instance 0 is %s", k,
                          named ? "not an object" : "an object", named ? "an object" : "not");
                goto done;
            }
            if (!named) continue;
            int known = 0;
            for (const cJSON *e = c->child; e; e = e->next, known++)
                if (mdl_model_input_index(m, e->string) < 0) {
                    st = fail(err, cap, 400, "instance %d: unknown input '%.64s' (the model's inputs: %s)", k,
                              e->string, names);
                    goto done;
                }
            for (int i = 0; i < nin; i++) {
                mdl_tensor_info ti;
                mdl_model_input_info(m, i, &ti);
                if (!cJSON_GetObjectItemCaseSensitive(c, ti.name)) {
                    st = fail(err, cap, 400, "instance %d has no input '%s' (the model's inputs: %s)", k, ti.name,
                              names);
                    goto done;
                }
            }
            if (known != nin) {
                st = fail(err, cap, 400, "instance %d names an input twice", k);
                goto done;
            }
        }
        for (int i = 0; i < nin; i++) {
            mdl_tensor_info ti;
            mdl_model_input_info(m, i, &ti);
            k = 0;
            for (const cJSON *c = inst->child; c; c = c->next, k++)
                values[k] = named ? cJSON_GetObjectItemCaseSensitive(c, ti.name) : c;
            if ((st = json_input(&ti, values, n, &out->tensors[i], err, cap))) goto done;
        }
    } else {
        out->format = REQ_JSON_COLUMNS;
        bool named = cJSON_IsObject(cols);
        if (!named && nin != 1) {
            st = fail(err, cap, 400, "the model has %d inputs (%s): \"inputs\" must be an object {\"name\": value, ...}",
                      nin, names);
            goto done;
        }
        if (named) {
            for (const cJSON *e = cols->child; e; e = e->next)
                if (mdl_model_input_index(m, e->string) < 0) {
                    st = fail(err, cap, 400, "unknown input '%.64s' (the model's inputs: %s)", e->string, names);
                    goto done;
                }
            if (array_size(cols) != nin) {
                st = fail(err, cap, 400, "\"inputs\" has %d entries, the model has %d inputs (%s)", array_size(cols),
                          nin, names);
                goto done;
            }
        }
        for (int i = 0; i < nin; i++) {
            mdl_tensor_info ti;
            mdl_model_input_info(m, i, &ti);
            const cJSON *v = named ? cJSON_GetObjectItemCaseSensitive(cols, ti.name) : cols;
            if (!v) {
                st = fail(err, cap, 400, "\"inputs\" has no input '%s' (the model's inputs: %s)", ti.name, names);
                goto done;
            }
            if ((st = json_input(&ti, &v, -1, &out->tensors[i], err, cap))) goto done;
        }
    }
done:
    free(values);
    cJSON_Delete(root);
    return st;
}

/* ---- .npy in ------------------------------------------------------------------------------ */

static int parse_npy(const mdl_model *m, const uint8_t *body, size_t len, req_inputs *out, char *err, size_t cap) {
    int nin = mdl_model_input_count(m);
    char names[256];
    model_input_names(m, names, sizeof names);
    out->format = REQ_NPY;
    out->count = nin;
    out->tensors = calloc((size_t)(nin ? nin : 1), sizeof *out->tensors);
    if (!out->tensors) return fail(err, cap, 500, "out of memory");
    size_t at = 0;
    for (int i = 0; i < nin; i++) {
        mdl_tensor_info ti;
        mdl_model_input_info(m, i, &ti);
        if (at >= len)
            return fail(err, cap, 400, "the model has %d input%s (%s); the body holds %d .npy array%s", nin,
                        nin == 1 ? "" : "s", names, i, i == 1 ? "" : "s");
        mdl_npy a;
        mdl_error e;
        if (mdl_npy_read_buffer(body + at, len - at, &a, &e) != MDL_OK)
            return fail(err, cap, 400, "input '%s' (.npy array %d, at byte %zu): %s", ti.name, i, at, e.msg);
        /* the reader accepted the header, so its length field is there */
        size_t header = body[at + 6] == 1 ? 10 + (size_t)(body[at + 8] | body[at + 9] << 8)
                                          : 12 + (size_t)(body[at + 8] | body[at + 9] << 8 | body[at + 10] << 16 |
                                                          (uint32_t)body[at + 11] << 24);
        at += header + a.bytes;
        int st = 0;
        size_t bytes = 0;
        if (a.dtype != ti.dtype)
            st = fail(err, cap, 400, "input '%s': the .npy array is %s, the model takes %s", ti.name,
                      mdl_dtype_name(a.dtype), mdl_dtype_name(ti.dtype));
        else st = check_shape(&ti, a.rank, a.dims, false, &bytes, err, cap);
        if (!st && bytes != a.bytes) st = fail(err, cap, 500, "input '%s': size mismatch", ti.name);
        if (st) {
            mdl_npy_free(&a);
            return st;
        }
        req_tensor *t = &out->tensors[i];
        t->rank = a.rank;
        memcpy(t->dims, a.dims, sizeof t->dims);
        t->bytes = a.bytes;
        t->data = a.data; /* malloc'd by the reader: ours now */
    }
    if (at < len)
        return fail(err, cap, 400, "%zu bytes after the last input's .npy array (the model has %d input%s: %s)",
                    len - at, nin, nin == 1 ? "" : "s", names);
    return 0;
}

int req_parse(const mdl_model *m, bool npy, const void *body, size_t len, req_inputs *out, char *err, size_t cap) {
    memset(out, 0, sizeof *out);
    if (!m || (!body && len)) return fail(err, cap, 500, "no model or body");
    if (len == 0) return fail(err, cap, 400, "empty body");
    int st = npy ? parse_npy(m, body, len, out, err, cap) : parse_json(m, body, len, out, err, cap);
    if (st) req_inputs_free(out);
    return st;
}

void req_inputs_free(req_inputs *in) {
    if (!in) return;
    if (in->tensors)
        for (int i = 0; i < in->count; i++) free(in->tensors[i].data);
    free(in->tensors);
    memset(in, 0, sizeof *in);
}

/* ---- into the session --------------------------------------------------------------------- */

int req_apply(mdl_session *s, const req_inputs *in, char *err, size_t cap) {
    const mdl_model *m = mdl_session_model(s);
    if (!m || in->count != mdl_model_input_count(m)) return fail(err, cap, 500, "request/model input count mismatch");
    bool same = true;
    for (int i = 0; i < in->count; i++) {
        mdl_tensor_info ti;
        if (mdl_session_input_info(s, i, &ti)) return fail(err, cap, 500, "input %d: no info", i);
        if (ti.rank != in->tensors[i].rank || memcmp(ti.dims, in->tensors[i].dims, sizeof(int64_t) * (size_t)ti.rank))
            same = false;
    }
    if (!same) {
        mdl_shape *shapes = malloc(sizeof *shapes * (size_t)(in->count ? in->count : 1));
        if (!shapes) return fail(err, cap, 500, "out of memory");
        for (int i = 0; i < in->count; i++) {
            shapes[i].rank = in->tensors[i].rank;
            memcpy(shapes[i].dims, in->tensors[i].dims, sizeof shapes[i].dims);
        }
        mdl_error e;
        mdl_status rs = mdl_session_resize(s, in->count, shapes, &e);
        free(shapes);
        if (rs != MDL_OK)
            return fail(err, cap, e.status == MDL_OUT_OF_MEMORY || e.status == MDL_LIMIT ? 503 : 400, "%s", e.msg);
    }
    for (int i = 0; i < in->count; i++) {
        mdl_error e;
        if (mdl_session_set_input(s, i, in->tensors[i].data, in->tensors[i].bytes, &e) != MDL_OK)
            return fail(err, cap, 500, "input %d: %s", i, e.msg);
    }
    return 0;
}

/* ---- out ---------------------------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len, cap;
    bool oom;
} buf;

static bool grow(buf *b, size_t more) {
    if (b->oom) return false;
    if (b->len + more + 1 <= b->cap) return true;
    size_t c = b->cap ? b->cap : 256;
    while (c < b->len + more + 1) c *= 2;
    char *p = realloc(b->p, c);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = c;
    return true;
}

static void put(buf *b, const char *s, size_t n) {
    if (!grow(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static void put_name(buf *b, const char *s) {
    char *q = cJSON_PrintUnformatted(&(cJSON){.type = cJSON_String, .valuestring = (char *)s});
    if (!q) {
        b->oom = true;
        return;
    }
    puts_(b, q);
    cJSON_free(q);
}

static void put_value(buf *b, mdl_dtype dt, const uint8_t *p) {
    char t[40];
    int n = 0;
    switch (dt) {
    case MDL_DTYPE_FLOAT32: {
        float x;
        memcpy(&x, p, sizeof x);
        if (isnan(x)) n = snprintf(t, sizeof t, "NaN");
        else if (isinf(x)) n = snprintf(t, sizeof t, x > 0 ? "Infinity" : "-Infinity");
        else
            for (int prec = 6; prec <= 9; prec++) { /* the shortest that reads back as x */
                n = snprintf(t, sizeof t, "%.*g", prec, (double)x);
                if (strtof(t, NULL) == x) break;
            }
        break;
    }
    case MDL_DTYPE_INT8: n = snprintf(t, sizeof t, "%d", *(const int8_t *)p); break;
    case MDL_DTYPE_UINT8: n = snprintf(t, sizeof t, "%u", *p); break;
    case MDL_DTYPE_BOOL: n = snprintf(t, sizeof t, *p ? "true" : "false"); break;
    case MDL_DTYPE_INT32: {
        int32_t x;
        memcpy(&x, p, sizeof x);
        n = snprintf(t, sizeof t, "%ld", (long)x);
        break;
    }
    default: {
        int64_t x;
        memcpy(&x, p, sizeof x);
        n = snprintf(t, sizeof t, "%lld", (long long)x);
        break;
    }
    }
    put(b, t, (size_t)n);
}

/* The nested array of dims[depth..rank) starting at element *at. */
static void put_array(buf *b, mdl_dtype dt, const uint8_t *data, int32_t rank, const int64_t *dims, int32_t depth,
                      size_t *at) {
    if (depth == rank) {
        put_value(b, dt, data + *at * mdl_dtype_size(dt));
        (*at)++;
        return;
    }
    put(b, "[", 1);
    for (int64_t i = 0; i < dims[depth] && !b->oom; i++) {
        if (i) put(b, ",", 1);
        put_array(b, dt, data, rank, dims, depth + 1, at);
    }
    put(b, "]", 1);
}

static char npy_descr_char(mdl_dtype dt, char *kind, int *size) {
    const uint16_t one = 1;
    char order = *(const uint8_t *)&one ? '<' : '>';
    *size = (int)mdl_dtype_size(dt);
    switch (dt) {
    case MDL_DTYPE_FLOAT32: *kind = 'f'; return order;
    case MDL_DTYPE_INT8:
    case MDL_DTYPE_INT32:
    case MDL_DTYPE_INT64: *kind = 'i'; return *size == 1 ? '|' : order;
    case MDL_DTYPE_UINT8: *kind = 'u'; return '|';
    case MDL_DTYPE_BOOL: *kind = 'b'; return '|';
    default: return 0;
    }
}

/* One .npy array (format 1.0, data at a multiple of 64 bytes, as NumPy writes). */
static int put_npy(buf *b, const mdl_tensor_info *ti, const void *data, char *err, size_t cap) {
    char kind;
    int size;
    char order = npy_descr_char(ti->dtype, &kind, &size);
    if (!order) return fail(err, cap, 500, "output '%s': dtype %s has no .npy code", ti->name, mdl_dtype_name(ti->dtype));
    char h[512];
    int n = snprintf(h, sizeof h, "{'descr': '%c%c%d', 'fortran_order': False, 'shape': (", order, kind, size);
    for (int32_t d = 0; d < ti->rank; d++)
        n += snprintf(h + n, sizeof h - (size_t)n, d ? ", %lld" : "%lld", (long long)ti->dims[d]);
    n += snprintf(h + n, sizeof h - (size_t)n, "%s), }", ti->rank == 1 ? "," : "");
    size_t total = 10 + (size_t)n + 1; /* + the closing newline */
    size_t pad = (64 - total % 64) % 64;
    uint16_t hlen = (uint16_t)((size_t)n + pad + 1);
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(hlen & 0xff), (uint8_t)(hlen >> 8)};
    put(b, (const char *)pre, sizeof pre);
    put(b, h, (size_t)n);
    for (size_t i = 0; i < pad; i++) put(b, " ", 1);
    put(b, "\n", 1);
    put(b, data, ti->bytes);
    return 0;
}

int req_write_outputs(const mdl_session *s, req_format format, bool npy_out, req_body *out, char *err, size_t cap) {
    memset(out, 0, sizeof *out);
    const mdl_model *m = mdl_session_model(s);
    int nout = mdl_model_output_count(m);
    buf b = {0};
    int st = 0;
    if (npy_out) {
        out->content_type = "application/x-npy";
        for (int i = 0; i < nout && !st; i++) {
            mdl_tensor_info ti;
            if (mdl_session_output_info(s, i, &ti)) return fail(err, cap, 500, "output %d: no info", i);
            st = put_npy(&b, &ti, mdl_session_output_data(s, i), err, cap);
        }
    } else if (format == REQ_JSON_ROWS) {
        out->content_type = "application/json";
        int64_t rows = -1;
        for (int i = 0; i < nout; i++) {
            mdl_tensor_info ti;
            if (mdl_session_output_info(s, i, &ti)) return fail(err, cap, 500, "output %d: no info", i);
            if (ti.rank == 0 || (rows >= 0 && ti.dims[0] != rows)) {
                free(b.p);
                return fail(err, cap, 400,
                            "output '%s' has %s: its rows do not match the instances; ask in the columnar format "
                            "({\"inputs\": ...}) for this model",
                            ti.name, ti.rank ? "another first dim than the other outputs" : "no batch dim");
            }
            rows = ti.dims[0];
        }
        puts_(&b, "{\"predictions\":[");
        for (int64_t r = 0; r < rows && !b.oom; r++) {
            if (r) put(&b, ",", 1);
            if (nout > 1) put(&b, "{", 1);
            for (int i = 0; i < nout; i++) {
                mdl_tensor_info ti;
                mdl_session_output_info(s, i, &ti);
                if (nout > 1) {
                    if (i) put(&b, ",", 1);
                    put_name(&b, ti.name);
                    put(&b, ":", 1);
                }
                size_t per_row = 1;
                for (int32_t d = 1; d < ti.rank; d++) per_row *= (size_t)ti.dims[d];
                size_t at = (size_t)r * per_row;
                put_array(&b, ti.dtype, mdl_session_output_data(s, i), ti.rank, ti.dims, 1, &at);
            }
            if (nout > 1) put(&b, "}", 1);
        }
        puts_(&b, "]}");
    } else {
        out->content_type = "application/json";
        puts_(&b, nout == 1 ? "{\"outputs\":" : "{\"outputs\":{");
        for (int i = 0; i < nout; i++) {
            mdl_tensor_info ti;
            if (mdl_session_output_info(s, i, &ti)) {
                free(b.p);
                return fail(err, cap, 500, "output %d: no info", i);
            }
            if (nout > 1) {
                if (i) put(&b, ",", 1);
                put_name(&b, ti.name);
                put(&b, ":", 1);
            }
            size_t at = 0;
            put_array(&b, ti.dtype, mdl_session_output_data(s, i), ti.rank, ti.dims, 0, &at);
        }
        puts_(&b, nout == 1 ? "}" : "}}");
    }
    if (st || b.oom) {
        free(b.p);
        return st ? st : fail(err, cap, 500, "out of memory writing the response");
    }
    out->data = b.p ? b.p : calloc(1, 1);
    out->len = b.len;
    return out->data ? 0 : fail(err, cap, 500, "out of memory");
}

char *req_error_json(const char *msg, size_t *len) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "error", msg ? msg : "")) {
        cJSON_Delete(o);
        return NULL;
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s && len) *len = strlen(s);
    return s;
}
