/* libFuzzer target: load + session create + run on arbitrary bytes.  Build: make fuzz. */
#include "mdeploy/mdeploy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* in-place loading needs an aligned buffer; copy like a firmware image would be placed */
    uint8_t *buf = aligned_alloc(16, (size + 16) & ~(size_t)15);
    if (!buf) return 0;
    memcpy(buf, data, size);
    mdl_model *m;
    mdl_error err;
    if (mdl_model_load_buffer(buf, size, NULL, &m, &err) == MDL_OK) {
        mdl_session *s;
        /* a valid model may legitimately ask for gigabytes; exercising that is not the point */
        if (mdl_model_arena_size(m) < ((size_t)64 << 20) &&
            mdl_session_create(m, NULL, &s, &err) == MDL_OK) {
            for (int i = 0; i < mdl_model_input_count(m); i++) {
                mdl_tensor_info ti;
                mdl_session_input_info(s, i, &ti);
                memset(mdl_session_input_data(s, i), 0, ti.bytes);
            }
            mdl_session_run(s);
            /* dynamic dims: resize (every symbolic input dim to 2, or its bound) and run again;
               only small models, so that no size grows past the fuzzer's malloc limit */
            int nin = mdl_model_input_count(m);
            if (mdl_model_symbol_count(m) && nin <= 16 && mdl_model_arena_size(m) < ((size_t)1 << 20)) {
                mdl_shape shapes[16];
                for (int i = 0; i < nin; i++) {
                    mdl_tensor_info ti;
                    mdl_model_input_info(m, i, &ti);
                    shapes[i].rank = ti.rank;
                    for (int d = 0; d < ti.rank; d++)
                        shapes[i].dims[d] = ti.dims[d] >= 0 ? ti.dims[d]
                                            : ti.dim_max && ti.dim_max[d] && ti.dim_max[d] < 2 ? ti.dim_max[d] : 2;
                }
                if (mdl_session_resize(s, nin, shapes, &err) == MDL_OK) {
                    for (int i = 0; i < nin; i++) {
                        mdl_tensor_info ti;
                        mdl_session_input_info(s, i, &ti);
                        memset(mdl_session_input_data(s, i), 0, ti.bytes);
                    }
                    mdl_session_run(s);
                }
            }
            mdl_session_free(s);
        }
        mdl_model_free(m);
    }
    free(buf);
    return 0;
}
