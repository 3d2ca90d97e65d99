/* Self-test vectors: reading and checking them at load (the loader calls mdl__selftest_load in
   host builds) and running them (mdl_model_selftest, include/mdeploy/selftest.h). */
#include "mdeploy/selftest.h"

#include "graph/model.h"
#include "graph/selftest.h"
#include "graph/util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Field ids of the schema's SelfTest tables (src/io/mdeploy.fbs). */
enum { ST_CASES, ST_ATOL, ST_RTOL, ST_ORACLE };
enum { SC_INPUTS, SC_OUTPUTS };
enum { STT_INDEX, STT_DTYPE, STT_SHAPE, STT_DATA };

#define BAD(...) mdl__error(err, MDL_CORRUPT_MODEL, __VA_ARGS__)

/* One tensor of case c against the model's input or output io->index. */
static mdl_status read_tensor(const mdl_model *m, fb_table t, int32_t c, bool output, uint8_t *seen,
                              mdl__st_tensor *x, mdl_error *err) {
    const char *what = output ? "output" : "input";
    int32_t n = output ? mdl_model_output_count(m) : mdl_model_input_count(m);
    x->index = fb_get_i32(t, STT_INDEX, 0); /* the schema default */
    if (x->index < 0 || x->index >= n)
        return BAD("self-test case %d: %s index %d out of range (the model has %d)", (int)c, what,
                   (int)x->index, (int)n);
    if (seen[x->index]++)
        return BAD("self-test case %d: %s %d given twice", (int)c, what, (int)x->index);
    mdl_tensor_info info;
    if (output) mdl_model_output_info(m, x->index, &info);
    else mdl_model_input_info(m, x->index, &info);
    uint8_t dt = (uint8_t)fb_get_u(t, STT_DTYPE, 1, 0);
    if (dt != (uint8_t)info.dtype)
        return BAD("self-test case %d: %s %d '%s' has dtype %s, the model's is %s", (int)c, what,
                   (int)x->index, info.name, mdl_dtype_name((mdl_dtype)dt), mdl_dtype_name(info.dtype));
    x->dtype = info.dtype;
    fb_vec shape = fb_get_vec(t, STT_SHAPE), data = fb_get_vec(t, STT_DATA);
    if ((int32_t)shape.len != info.rank)
        return BAD("self-test case %d: %s %d '%s' has rank %u, the model's is %d", (int)c, what,
                   (int)x->index, info.name, (unsigned)shape.len, (int)info.rank);
    x->rank = info.rank;
    for (int32_t d = 0; d < x->rank; d++) {
        int64_t v = fb_vec_i64(shape, (uint32_t)d), fixed = info.dims[d], max = info.dim_max ? info.dim_max[d] : 0;
        /* a dynamic input dim: at most its bound; outputs' computed dims are checked at the run */
        if ((fixed >= 0 && v != fixed) || v < 0 || (fixed < 0 && max > 0 && v > max))
            return BAD("self-test case %d: %s %d '%s' dim %d is %lld, the model allows %lld%s", (int)c,
                       what, (int)x->index, info.name, (int)d, (long long)v,
                       (long long)(fixed >= 0 ? fixed : max), fixed >= 0 ? "" : max ? " at most" : " >= 0");
        x->dims[d] = v;
    }
    int64_t count;
    size_t bytes;
    if (!mdl__shape_size(x->rank, x->dims, mdl_dtype_size(x->dtype), &count, &bytes) || bytes != data.len)
        return BAD("self-test case %d: %s %d '%s' holds %u bytes, its shape needs %zu", (int)c, what,
                   (int)x->index, info.name, (unsigned)data.len, bytes);
    x->bytes = bytes;
    x->data = m->buf + data.data;
    return MDL_OK;
}

mdl_status mdl__selftest_load(mdl_model *m, mdl_error *err) {
    m->selftest = NULL;
    fb_table st = fb_get_table(fb_root(m->buf), MDL__MODEL_SELFTEST_FIELD);
    if (!st.pos) return MDL_OK;
    fb_vec cases = fb_get_vec(st, ST_CASES);
    float atol = fb_get_f32(st, ST_ATOL, 0.0f), rtol = fb_get_f32(st, ST_RTOL, 0.0f);
    if (!(atol >= 0 && atol <= 1e30f) || !(rtol >= 0 && rtol <= 1e30f))
        return BAD("self-test tolerance atol %g rtol %g: must be finite and >= 0", (double)atol, (double)rtol);
    if (!cases.len) return BAD("self-test table without cases");
    int32_t nin = mdl_model_input_count(m), nout = mdl_model_output_count(m);
    size_t ntensors = 0;
    for (uint32_t c = 0; c < cases.len; c++) {
        fb_table k = fb_vec_table(cases, c);
        uint32_t ki = fb_get_vec(k, SC_INPUTS).len, ko = fb_get_vec(k, SC_OUTPUTS).len;
        if ((int64_t)ki != nin || ko < 1 || (int64_t)ko > nout)
            return BAD("self-test case %u: %u inputs and %u outputs (the model has %d inputs, %d outputs: "
                       "a case gives every input and 1 to %d outputs)", (unsigned)c, (unsigned)ki,
                       (unsigned)ko, (int)nin, (int)nout, (int)nout);
        ntensors += ki + ko;
    }
    /* one block: the record, the cases, the tensors, the seen marks */
    size_t bytes = sizeof(mdl__selftest) + cases.len * sizeof(mdl__st_case) + ntensors * sizeof(mdl__st_tensor) +
                   (size_t)(nin + nout) + 16;
    mdl__selftest *s = mdl__alloc(m->alloc, bytes);
    if (!s) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory for the self-test vectors");
    memset(s, 0, bytes);
    s->cases = (mdl__st_case *)(s + 1);
    mdl__st_tensor *tp = (mdl__st_tensor *)(s->cases + cases.len);
    uint8_t *seen = (uint8_t *)(tp + ntensors);
    s->ncases = (int32_t)cases.len;
    s->atol = atol;
    s->rtol = rtol;
    s->oracle = fb_get_str(st, ST_ORACLE, "");
    m->selftest = s; /* freed with the model, also on failure below */
    for (uint32_t c = 0; c < cases.len; c++) {
        fb_table k = fb_vec_table(cases, c);
        mdl__st_case *kc = &s->cases[c];
        for (int io = 0; io < 2; io++) {
            fb_vec v = fb_get_vec(k, io ? SC_OUTPUTS : SC_INPUTS);
            memset(seen, 0, (size_t)(io ? nout : nin));
            if (io) kc->out = tp, kc->nout = (int32_t)v.len;
            else kc->in = tp, kc->nin = (int32_t)v.len;
            for (uint32_t j = 0; j < v.len; j++) {
                mdl_status r = read_tensor(m, fb_vec_table(v, j), (int32_t)c, io == 1, seen, tp++, err);
                if (r) return r;
            }
        }
    }
    return MDL_OK;
}

void mdl__selftest_free(mdl_model *m) {
    if (m->selftest) mdl__free(m->alloc, m->selftest);
    m->selftest = NULL;
}

int mdl_model_selftest_count(const mdl_model *m) { return m && m->selftest ? m->selftest->ncases : 0; }

/* Element i of a tensor as a double (data not necessarily aligned). */
static double elem(const void *data, mdl_dtype t, int64_t i) {
    const uint8_t *p = (const uint8_t *)data + (size_t)i * mdl_dtype_size(t);
    switch (t) {
    case MDL_DTYPE_FLOAT32: { float v; memcpy(&v, p, 4); return v; }
    case MDL_DTYPE_INT8: return (double)(int8_t)p[0];
    case MDL_DTYPE_UINT8:
    case MDL_DTYPE_BOOL: return (double)p[0];
    case MDL_DTYPE_INT32: { int32_t v; memcpy(&v, p, 4); return (double)v; }
    default: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    }
}

/* Compares output x of case c with the session's; MDL_OK or CORRUPT_MODEL / SHAPE. */
static mdl_status compare(const mdl_model *m, const mdl_session *s, const mdl__selftest *st, int32_t c,
                          const mdl__st_tensor *x, mdl_selftest_result *r, mdl_error *err) {
    mdl_tensor_info info;
    mdl_session_output_info(s, x->index, &info);
    if (info.rank != x->rank || memcmp(info.dims, x->dims, sizeof(int64_t) * (size_t)x->rank)) {
        char a[96] = "", b[96] = "";
        for (int32_t d = 0; d < info.rank; d++) snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", d ? "x" : "", (long long)info.dims[d]);
        for (int32_t d = 0; d < x->rank; d++) snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", d ? "x" : "", (long long)x->dims[d]);
        r->failed_case = c;
        r->failed_output = x->index;
        return mdl__error(err, MDL_SHAPE, "self-test case %d: output %d '%s' has shape [%s], expected [%s]",
                          (int)c, (int)x->index, info.name, a, b);
    }
    const void *got = mdl_session_output_data((mdl_session *)s, x->index);
    int64_t n = (int64_t)(x->bytes / mdl_dtype_size(x->dtype));
    bool fl = x->dtype == MDL_DTYPE_FLOAT32;
    for (int64_t i = 0; i < n; i++) {
        double g = elem(got, x->dtype, i), e = elem(x->data, x->dtype, i), diff = fabs(g - e);
        double allowed = fl ? (double)st->atol + (double)st->rtol * fabs(e) : 0.0;
        bool ok = isnan(e) ? isnan(g) : isinf(e) ? g == e : diff <= allowed;
        if (fl && ok && !isnan(diff) && diff > r->max_abs_error) r->max_abs_error = diff;
        r->elements++;
        if (ok) continue;
        r->failed_case = c;
        r->failed_output = x->index;
        r->failed_element = i;
        r->got = g;
        r->expected = e;
        r->allowed = allowed;
        (void)m;
        if (fl)
            return mdl__error(err, MDL_CORRUPT_MODEL, "self-test case %d: output %d '%s' element %lld is %.9g, "
                              "expected %.9g (oracle %s): |difference| %.3g > allowed %.3g (atol %g + rtol %g * "
                              "|expected|)", (int)c, (int)x->index, info.name, (long long)i, g, e,
                              st->oracle[0] ? st->oracle : "unnamed", diff, allowed, (double)st->atol,
                              (double)st->rtol);
        return mdl__error(err, MDL_CORRUPT_MODEL, "self-test case %d: output %d '%s' element %lld is %.17g, "
                          "expected %.17g exactly (%s; oracle %s)", (int)c, (int)x->index, info.name,
                          (long long)i, g, e, mdl_dtype_name(x->dtype), st->oracle[0] ? st->oracle : "unnamed");
    }
    return MDL_OK;
}

mdl_status mdl_model_selftest(const mdl_model *m, mdl_selftest_result *result, mdl_error *err) {
    mdl_selftest_result local;
    mdl_selftest_result *r = result ? result : &local;
    memset(r, 0, sizeof *r);
    r->failed_case = r->failed_output = -1;
    r->failed_element = -1;
    r->oracle = "";
    if (!m) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_model_selftest: model is NULL");
    const mdl__selftest *st = m->selftest;
    if (!st) return MDL_OK;
    r->cases = st->ncases;
    r->atol = st->atol;
    r->rtol = st->rtol;
    r->oracle = st->oracle;
    mdl_session *s;
    mdl_error e2;
    mdl_status rs = mdl_session_create(m, NULL, &s, &e2);
    if (rs) return mdl__error(err, rs, "self-test: cannot create a session: %s", e2.msg);
    int32_t nin = mdl_model_input_count(m);
    mdl_shape *shapes = NULL;
    if (mdl_model_symbol_count(m) && !(shapes = mdl__alloc(m->alloc, sizeof(mdl_shape) * (size_t)nin))) {
        mdl_session_free(s);
        return mdl__error(err, MDL_OUT_OF_MEMORY, "self-test: out of memory");
    }
    for (int32_t c = 0; c < st->ncases && !rs; c++) {
        const mdl__st_case *k = &st->cases[c];
        if (shapes) { /* every input once (checked at load) */
            for (int32_t j = 0; j < k->nin; j++) {
                const mdl__st_tensor *x = &k->in[j];
                shapes[x->index].rank = x->rank;
                memcpy(shapes[x->index].dims, x->dims, sizeof(int64_t) * (size_t)x->rank);
            }
            if ((rs = mdl_session_resize(s, nin, shapes, &e2))) {
                rs = mdl__error(err, rs, "self-test case %d: the session cannot take its input shapes: %s", (int)c, e2.msg);
                break;
            }
        }
        for (int32_t j = 0; j < k->nin && !rs; j++)
            if ((rs = mdl_session_set_input(s, k->in[j].index, k->in[j].data, k->in[j].bytes, &e2)))
                rs = mdl__error(err, rs, "self-test case %d: input %d: %s", (int)c, (int)k->in[j].index, e2.msg);
        if (rs) break;
        if ((rs = mdl_session_run(s))) {
            rs = mdl__error(err, rs, "self-test case %d: the run failed: %s", (int)c, mdl_session_message(s));
            break;
        }
        for (int32_t j = 0; j < k->nout && !rs; j++) rs = compare(m, s, st, c, &k->out[j], r, err);
        if (!rs) r->passed++;
    }
    mdl_session_free(s);
    if (shapes) mdl__free(m->alloc, shapes);
    return rs;
}
