/* libFuzzer target: a model and the input values it runs on.  The last byte k says that the 4*k
   bytes before it are the payload (repeated over every input: NaNs, infinities, Gather ids out of
   range ...); the bytes before are the model, loaded with MDL_LOAD_COPY straight from the
   fuzzer's buffer (any alignment).  Seeds: the model corpus with a payload appended (make fuzz-long). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t n = (size_t)data[size - 1] * 4;
    if (n > size - 1) n = size - 1;
    size_t msize = size - 1 - n;
    mdl_model *m;
    mdl_error err;
    mdl_load_options o = fz_load_options(MDL_LOAD_COPY);
    if (mdl_model_load_buffer(data, msize, &o, &m, &err) == MDL_OK) {
        fz_run_model(m, data + msize, n);
        mdl_model_free(m);
    }
    return 0;
}
