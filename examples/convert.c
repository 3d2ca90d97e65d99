/* Converting in a program: ONNX -> .mdl with the converter library, then the result loaded by the
   runtime.  The converter (libmdeploy-convert, needs protobuf-c) and the runtime (libmdeploy) are
   separate libraries; a program that only runs models links the runtime alone.
   Build: cc convert.c $(pkg-config --cflags --libs mdeploy-convert)   (or CMake: mdeploy::convert)
   usage: convert MODEL.onnx OUT.mdl */
#include "mdeploy/convert.h"
#include "mdeploy/mdeploy.h"

#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.onnx OUT.mdl\n", argv[0]);
        return 2;
    }
    mdl_error err;
    mdl_convert_options opts = mdl_convert_options_default();
    mdl_convert_report rep;
    if (mdl_convert_onnx(argv[1], argv[2], &opts, &rep, &err) != MDL_OK) {
        fprintf(stderr, "convert failed: %s\n", err.msg);
        return 1;
    }
    printf("%s -> %s: %d ONNX nodes -> %d operators, %zu bytes\n", argv[1], argv[2], rep.onnx_nodes,
           rep.nodes_out, rep.file_bytes);
    mdl_convert_report_free(&rep);

    mdl_model *model;
    if (mdl_model_load_file(argv[2], NULL, &model, &err) != MDL_OK) {
        fprintf(stderr, "load failed: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < mdl_model_input_count(model); i++) {
        mdl_tensor_info t;
        mdl_model_input_info(model, i, &t);
        printf("input  %s: %s, rank %d\n", t.name, mdl_dtype_name(t.dtype), (int)t.rank);
    }
    for (int i = 0; i < mdl_model_output_count(model); i++) {
        mdl_tensor_info t;
        mdl_model_output_info(model, i, &t);
        printf("output %s: %s, rank %d\n", t.name, mdl_dtype_name(t.dtype), (int)t.rank);
    }
    printf("runtime %s\n", mdl_version());
    mdl_model_free(model);
    return 0;
}
