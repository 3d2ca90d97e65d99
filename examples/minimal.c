/* The smallest useful mdeploy program: load a converted model, run it once, print the output.
   Build: cc minimal.c -I include build/release/libmdeploy.a -lopenblas -lm -lpthread
   usage: minimal MODEL.mdl            (every input is filled with 0.5 / id 1) */
#include "mdeploy/mdeploy.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.mdl\n", argv[0]);
        return 2;
    }
    mdl_error err;
    mdl_model *model;
    if (mdl_model_load_file(argv[1], NULL, &model, &err) != MDL_OK) {
        fprintf(stderr, "load failed: %s\n", err.msg);
        return 1;
    }
    mdl_session *session;
    if (mdl_session_create(model, NULL, &session, &err) != MDL_OK) {
        fprintf(stderr, "session failed: %s\n", err.msg);
        mdl_model_free(model);
        return 1;
    }
    for (int i = 0; i < mdl_model_input_count(model); i++) {
        mdl_tensor_info in;
        mdl_session_input_info(session, i, &in); /* concrete shapes, also of dynamic dims */
        size_t n = in.bytes / mdl_dtype_size(in.dtype);
        void *x = mdl_session_input_data(session, i);
        for (size_t k = 0; k < n; k++) {
            if (in.dtype == MDL_DTYPE_FLOAT32) ((float *)x)[k] = 0.5f;
            else if (in.dtype == MDL_DTYPE_INT64) ((int64_t *)x)[k] = 1;
            else if (in.dtype == MDL_DTYPE_INT32) ((int32_t *)x)[k] = 1;
            else ((uint8_t *)x)[k] = 1;
        }
    }
    if (mdl_session_run(session) != MDL_OK) {
        fprintf(stderr, "run failed: %s\n", mdl_session_message(session));
    } else {
        mdl_tensor_info out;
        mdl_session_output_info(session, 0, &out);
        const float *y = mdl_session_output_data(session, 0);
        printf("%s:", out.name);
        for (size_t k = 0; k < out.bytes / sizeof(float) && k < 10; k++) printf(" %.5f", y[k]);
        printf("\n");
    }
    mdl_session_free(session);
    mdl_model_free(model);
    return 0;
}
