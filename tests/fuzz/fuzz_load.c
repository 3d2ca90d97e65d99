/* libFuzzer target: load in place + session create + run (zero inputs, and again resized) on
   arbitrary bytes.  Build: make fuzz. */
#include "fuzz_common.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* in-place loading needs an aligned buffer; copy like a firmware image would be placed */
    uint8_t *buf = aligned_alloc(16, (size + 16) & ~(size_t)15);
    if (!buf) return 0;
    memcpy(buf, data, size);
    mdl_model *m;
    mdl_error err;
    mdl_load_options o = fz_load_options(0);
    if (mdl_model_load_buffer(buf, size, &o, &m, &err) == MDL_OK) {
        fz_run_model(m, NULL, 0);
        mdl_model_free(m);
    }
    free(buf);
    return 0;
}
