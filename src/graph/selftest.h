/* Self-test vectors (Model.selftest in src/io/mdeploy.fbs): the in-memory form the writer takes
   (mdl__format_write, through mdl__meta.selftest) and the host reader produces at load
   (selftest_host.c, pointers into the file).  Public API: mdl_model_selftest in
   include/mdeploy/selftest.h. */
#ifndef MDL_GRAPH_SELFTEST_H
#define MDL_GRAPH_SELFTEST_H

#include "mdeploy/mdeploy.h"

/* One graph input or output of a case. */
typedef struct mdl__st_tensor {
    int32_t index; /* into the model's inputs or outputs */
    mdl_dtype dtype;
    int32_t rank;
    int64_t dims[MDL_MAX_RANK];
    const void *data; /* little-endian elements, C order; not necessarily aligned */
    size_t bytes;
} mdl__st_tensor;

typedef struct mdl__st_case {
    int32_t nin, nout;
    mdl__st_tensor *in, *out; /* in: every model input once; out: any outputs, each at most once */
} mdl__st_case;

typedef struct mdl__selftest {
    int32_t ncases;
    mdl__st_case *cases;
    float atol, rtol;
    const char *oracle; /* where the expected outputs came from ("" when not said) */
} mdl__selftest;

/* Field id of Model.selftest in src/io/mdeploy.fbs (mdl_format.c asserts it matches its table). */
#define MDL__MODEL_SELFTEST_FIELD 17

/* Defaults of the converter's tolerance (mdl_selftest_options). */
#define MDL__SELFTEST_ATOL 1e-4
#define MDL__SELFTEST_RTOL 1e-3

struct mdl_model;
/* Reads and checks the file's Model.selftest against the model's inputs and outputs (every
   count, index, dtype, shape and byte size: hostile values are refused with CORRUPT_MODEL naming
   the case and tensor).  Sets m->selftest (NULL when the file has none).  Called by the loader. */
mdl_status mdl__selftest_load(struct mdl_model *m, mdl_error *err);
void mdl__selftest_free(struct mdl_model *m);

/* The converter's side (convert_selftest_host.c): reads the options' .npy files, computes the
   expected outputs by running m when no outside ones are given, and returns the vectors in *out
   (release with mdl__cv_selftest_free; NULL is a no-op). */
struct mdl_selftest_options;
mdl_status mdl__cv_selftest_make(const struct mdl_model *m, const struct mdl_selftest_options *o,
                                 mdl__selftest **out, mdl_error *err);
void mdl__cv_selftest_free(mdl__selftest *s);

#endif
