/* The converter's self-test vectors (mdl_selftest_options in include/mdeploy/convert.h): the
   inputs and outside expected outputs from .npy files, or the expected outputs computed by
   running the converted model. */
#include "mdeploy/convert.h"
#include "mdeploy/npy.h"

#include "graph/model.h"
#include "graph/selftest.h"
#include "graph/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CASES 64

/* The vectors and everything they point into. */
typedef struct holder {
    mdl__selftest s; /* first: mdl__cv_selftest_free gets its address */
    mdl_npy *npy;    /* the files read */
    int32_t nnpy;
    void **bufs; /* outputs computed here */
    int32_t nbufs;
} holder;

void mdl__cv_selftest_free(mdl__selftest *s) {
    holder *h = (holder *)s;
    if (!h) return;
    for (int32_t i = 0; i < h->nnpy; i++) mdl_npy_free(&h->npy[i]);
    for (int32_t i = 0; i < h->nbufs; i++) free(h->bufs[i]);
    free(h->npy);
    free(h->bufs);
    if (h->s.cases) free(h->s.cases[0].in); /* one block for every case's tensors */
    free(h->s.cases);
    free(h);
}

/* Reads file i of the inputs (io 0) or outputs (io 1) into h->npy[at] and checks it against
   the model tensor it names; sets *index and *ncases (1, or the stacked count). */
static mdl_status read_one(const mdl_model *m, const mdl_selftest_options *o, int io, int32_t i, holder *h,
                           int32_t at, uint8_t *seen, int32_t *index, int64_t *ncases, mdl_error *err) {
    const char *what = io ? "output" : "input";
    const char *const *names = io ? o->output_names : o->input_names;
    const char *path = (io ? o->output_paths : o->input_paths)[i];
    const char *name = names && names[i] && names[i][0] ? names[i] : NULL;
    int32_t n = io ? mdl_model_output_count(m) : mdl_model_input_count(m);
    int32_t k = name ? (io ? mdl_model_output_index(m, name) : mdl_model_input_index(m, name)) : i;
    if (!path) return mdl__error(err, MDL_INVALID_ARGUMENT, "self-test %s %d: no file", what, (int)i);
    if (k < 0 || k >= n)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "self-test %s '%s' (%s): the model has no %s %s%s",
                          what, name ? name : "", path, what, name ? "of that name" : "at that position",
                          name ? "" : " (name it: NAME=FILE.npy)");
    if (seen[k]++) return mdl__error(err, MDL_INVALID_ARGUMENT, "self-test %s %d given twice (%s)", what, (int)k, path);
    mdl_tensor_info info;
    if (io) mdl_model_output_info(m, k, &info);
    else mdl_model_input_info(m, k, &info);
    mdl_npy *a = &h->npy[at];
    mdl_status st = mdl_npy_read(path, a, err);
    if (st) return st;
    h->nnpy = at + 1;
    if (a->dtype != info.dtype)
        return mdl__error(err, MDL_DTYPE, "self-test %s '%s' (%s): %s data for a %s tensor", what, info.name,
                          path, mdl_dtype_name(a->dtype), mdl_dtype_name(info.dtype));
    if (a->rank != info.rank && a->rank != info.rank + 1)
        return mdl__error(err, MDL_SHAPE, "self-test %s '%s' (%s): rank %d; the %s has rank %d (one case) "
                          "or give rank %d (cases stacked on the first axis)", what, info.name, path,
                          (int)a->rank, what, (int)info.rank, (int)info.rank + 1);
    *ncases = a->rank == info.rank ? 1 : a->dims[0];
    *index = k;
    return MDL_OK;
}

mdl_status mdl__cv_selftest_make(const mdl_model *m, const mdl_selftest_options *o, mdl__selftest **out,
                                 mdl_error *err) {
    *out = NULL;
    int32_t nin = mdl_model_input_count(m), nout = mdl_model_output_count(m);
    if (o->ninputs != nin || o->noutputs < 0 || o->noutputs > nout || !o->input_paths ||
        (o->noutputs && !o->output_paths))
        return mdl__error(err, MDL_INVALID_ARGUMENT, "self-test: %d input files and %d output files for a "
                          "model with %d inputs and %d outputs (every input once; outputs optional)",
                          (int)o->ninputs, (int)o->noutputs, (int)nin, (int)nout);
    if (!(o->atol >= 0 && o->atol < 1e30) || !(o->rtol >= 0 && o->rtol < 1e30))
        return mdl__error(err, MDL_INVALID_ARGUMENT, "self-test tolerance atol %g rtol %g: must be finite and >= 0",
                          o->atol, o->rtol);
    holder *h = calloc(1, sizeof *h);
    int32_t nfiles = nin + o->noutputs;
    uint8_t *seen = calloc((size_t)(nin + nout) + 1, 1);
    int32_t *index = calloc((size_t)nfiles + 1, sizeof *index);
    if (!h || !seen || !(h->npy = calloc((size_t)nfiles + 1, sizeof *h->npy)) || !index) {
        free(seen);
        free(index);
        mdl__cv_selftest_free(h ? &h->s : NULL);
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
    }
    mdl_status st = MDL_OK;
    int64_t ncases = -1;
    for (int32_t f = 0; f < nfiles && !st; f++) {
        int io = f >= nin;
        int64_t nc = 0;
        st = read_one(m, o, io, io ? f - nin : f, h, f, io ? seen + nin : seen, &index[f], &nc, err);
        if (!st && ncases >= 0 && nc != ncases)
            st = mdl__error(err, MDL_SHAPE, "self-test: %s holds %lld cases, the files before it %lld",
                            (io ? o->output_paths[f - nin] : o->input_paths[f]), (long long)nc, (long long)ncases);
        if (!st && (nc < 1 || nc > MAX_CASES))
            st = mdl__error(err, MDL_SHAPE, "self-test: %lld cases in %s (1 to %d)", (long long)nc,
                            (io ? o->output_paths[f - nin] : o->input_paths[f]), MAX_CASES);
        ncases = nc;
    }
    int32_t nstore = o->noutputs ? o->noutputs : nout; /* outputs stored per case */
    mdl__st_tensor *ts = NULL;
    if (!st) {
        h->s.cases = calloc((size_t)ncases, sizeof *h->s.cases);
        ts = calloc((size_t)(ncases * (nin + nstore)), sizeof *ts);
        h->bufs = calloc((size_t)(ncases * nstore) + 1, sizeof *h->bufs);
        if (!h->s.cases || !ts || !h->bufs) {
            free(ts);
            st = mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
        } else {
            h->s.cases[0].in = ts;
        }
    }
    h->s.ncases = st ? 0 : (int32_t)ncases;
    h->s.atol = (float)o->atol;
    h->s.rtol = (float)o->rtol;
    h->s.oracle = o->oracle ? o->oracle : o->noutputs ? "external" : "mdeploy-convert";
    /* the cases: slices of the files */
    for (int32_t c = 0; c < h->s.ncases; c++) {
        mdl__st_case *k = &h->s.cases[c];
        k->in = ts + (size_t)c * (size_t)(nin + nstore);
        k->out = k->in + nin;
        k->nin = nin;
        k->nout = nstore;
        for (int32_t f = 0; f < nfiles; f++) {
            const mdl_npy *a = &h->npy[f];
            mdl__st_tensor *x = f < nin ? &k->in[f] : &k->out[f - nin];
            mdl_tensor_info info;
            if (f < nin) mdl_model_input_info(m, index[f], &info);
            else mdl_model_output_info(m, index[f], &info);
            int32_t skip = a->rank - info.rank; /* 1 when stacked */
            x->index = index[f];
            x->dtype = a->dtype;
            x->rank = info.rank;
            memcpy(x->dims, a->dims + skip, sizeof(int64_t) * (size_t)x->rank);
            x->bytes = a->bytes / (size_t)(skip ? a->dims[0] : 1);
            x->data = (const uint8_t *)a->data + (size_t)c * x->bytes;
        }
    }
    free(seen);
    free(index);
    /* no outside outputs: run the converted model */
    mdl_session *s = NULL;
    if (!st && !o->noutputs) st = mdl_session_create(m, NULL, &s, err);
    mdl_shape *shapes = !st && !o->noutputs ? calloc((size_t)nin + 1, sizeof *shapes) : NULL;
    if (!st && !o->noutputs && !shapes) st = mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
    for (int32_t c = 0; c < h->s.ncases && !st && !o->noutputs; c++) {
        mdl__st_case *k = &h->s.cases[c];
        for (int32_t j = 0; j < nin; j++) {
            shapes[k->in[j].index].rank = k->in[j].rank;
            memcpy(shapes[k->in[j].index].dims, k->in[j].dims, sizeof(int64_t) * (size_t)k->in[j].rank);
        }
        if (mdl_model_symbol_count(m) && (st = mdl_session_resize(s, nin, shapes, err))) break;
        for (int32_t j = 0; j < nin && !st; j++)
            st = mdl_session_set_input(s, k->in[j].index, k->in[j].data, k->in[j].bytes, err);
        if (st) break;
        if ((st = mdl_session_run(s))) {
            st = mdl__error(err, st, "self-test case %d: the converted model's run failed: %s", (int)c,
                            mdl_session_message(s));
            break;
        }
        for (int32_t j = 0; j < nout; j++) {
            mdl_tensor_info info;
            mdl_session_output_info(s, j, &info);
            mdl__st_tensor *x = &k->out[j];
            void *copy = malloc(info.bytes + 1);
            if (!copy) {
                st = mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
                break;
            }
            memcpy(copy, mdl_session_output_data(s, j), info.bytes);
            h->bufs[h->nbufs++] = copy;
            *x = (mdl__st_tensor){j, info.dtype, info.rank, {0}, copy, info.bytes};
            memcpy(x->dims, info.dims, sizeof(int64_t) * (size_t)info.rank);
        }
    }
    free(shapes);
    mdl_session_free(s);
    if (st) {
        mdl__cv_selftest_free(&h->s);
        return st;
    }
    *out = &h->s;
    return MDL_OK;
}
