/*
 * mdeploy — self-test vectors: input/expected-output pairs stored in the model file (host
 * builds; firmware does not link this).
 *
 *     mdl_selftest_result r;
 *     if (mdl_model_selftest(m, &r, &err) != MDL_OK) puts(err.msg);   // names case/output/element
 *     else if (r.cases == 0) puts("the model has no self-test vectors");
 *
 * Where they come from: mdeploy-convert --selftest-from [NAME=]X.npy (mdl_convert_options.selftest)
 * stores the inputs with outputs from one of two oracles, and the file says which (`oracle`):
 *  - "onnxruntime" (or another name given with the expected outputs, --selftest-expect): outputs
 *    computed outside mdeploy on the source model, e.g. by ONNX Runtime in Python
 *    (mdeploy.convert(..., selftest_inputs=..., selftest_oracle="onnxruntime")).  This is the
 *    independent oracle: a test passing says the deployed model computes what the ONNX model
 *    computes, within the tolerance.  The converter refuses to store vectors its own output does
 *    not meet, so a quantized model needs a tolerance as wide as its quantization error.
 *  - "mdeploy-convert": without expected outputs the converter runs the converted model itself.
 *    Not independent of mdeploy: it proves the file and the runtime that loads it reproduce what
 *    the converter's runtime computed (catches damaged weights, a different or broken kernel on
 *    the target, a wrong CPU dispatch), not that the conversion was right; it allows the tight
 *    tolerance that makes the test sensitive (the default one).
 *
 * Comparison: float32 outputs pass element by element when |got - expected| <= atol + rtol *
 * |expected| (NaN matches only NaN, an infinity only itself); every other dtype must match
 * exactly.  The tolerance is stored in the file (default atol 1e-4, rtol 1e-3).
 *
 * The loader checks the vectors (counts, indices, dtypes, shapes and sizes against the model's
 * inputs and outputs) and refuses a file whose vectors do not fit with MDL_CORRUPT_MODEL.
 */
#ifndef MDEPLOY_SELFTEST_H
#define MDEPLOY_SELFTEST_H

#include "mdeploy/mdeploy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What mdl_model_selftest found. */
typedef struct mdl_selftest_result {
    int32_t cases;    /* cases in the file (0: none; nothing ran) */
    int32_t passed;   /* cases that passed */
    int64_t elements; /* output elements compared */
    double max_abs_error; /* largest |got - expected| over the float32 elements compared */
    float atol, rtol;     /* the stored tolerance */
    const char *oracle;   /* where the expected outputs came from (owned by the model) */
    /* the first failure (-1 / 0 when none): case, output index, flat element index, the values
       and the allowed difference */
    int32_t failed_case, failed_output;
    int64_t failed_element;
    double got, expected, allowed;
} mdl_selftest_result;

/* Number of self-test cases the model file holds (0: none, or NULL). */
MDL_API int mdl_model_selftest_count(const mdl_model *m);

/*
 * Runs every stored case on a fresh session of m (models with dynamic dims: at the case's input
 * shapes) and compares the outputs.  result may be NULL.  MDL_OK when every case passed or the
 * model has none (result->cases == 0).  A mismatch returns MDL_CORRUPT_MODEL with a message naming
 * the case, the output, the element, both values and the allowed difference (and result's
 * failed_* fields); a run that fails returns its status and message.  Thread-safe (m is only
 * read); allocates one session for the call.
 */
MDL_API mdl_status mdl_model_selftest(const mdl_model *m, mdl_selftest_result *result, mdl_error *err);

#ifdef __cplusplus
}
#endif
#endif
