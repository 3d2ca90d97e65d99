/* libFuzzer target: the ONNX importer and converter on an arbitrary buffer
   (mdl_convert_onnx_buffer); what it accepts is loaded and run on zero inputs. */
#include "fuzz_common.h"

#include "mdeploy/convert.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    void *mdl;
    size_t n;
    mdl_error err;
    if (mdl_convert_onnx_buffer(data, size, &mdl, &n, NULL, NULL, &err) == MDL_OK) {
        mdl_model *m;
        mdl_load_options o = fz_load_options(0);
        if (mdl_model_load_buffer(mdl, n, &o, &m, &err) == MDL_OK) {
            fz_run_model(m, NULL, 0);
            mdl_model_free(m);
        }
        free(mdl);
    }
    return 0;
}
