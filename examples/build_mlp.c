/* Assembling a model by hand with the builder API (no ONNX involved): a 2-layer MLP with
   deterministic weights, written to a .mdl file.
   usage: build_mlp OUT.mdl */
#include "mdeploy/graph.h"

#include <math.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT.mdl\n", argv[0]);
        return 2;
    }
    enum { IN = 4, HID = 8, OUT = 3 };
    float w1[HID * IN], b1[HID], w2[OUT * HID], b2[OUT];
    for (int i = 0; i < HID * IN; i++) w1[i] = sinf((float)i) * 0.5f;
    for (int i = 0; i < HID; i++) b1[i] = 0.1f * (float)(i % 3);
    for (int i = 0; i < OUT * HID; i++) w2[i] = cosf((float)i) * 0.5f;
    for (int i = 0; i < OUT; i++) b2[i] = -0.05f * (float)i;

    mdl_error err;
    mdl_builder *b;
    if (mdl_builder_create(NULL, &b, &err)) return 1;
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, IN}, NULL);
    int W1 = mdl_builder_tensor(b, "fc1/weight", MDL_DTYPE_FLOAT32, 2, (int64_t[]){HID, IN}, w1);
    int B1 = mdl_builder_tensor(b, "fc1/bias", MDL_DTYPE_FLOAT32, 1, (int64_t[]){HID}, b1);
    int W2 = mdl_builder_tensor(b, "fc2/weight", MDL_DTYPE_FLOAT32, 2, (int64_t[]){OUT, HID}, w2);
    int B2 = mdl_builder_tensor(b, "fc2/bias", MDL_DTYPE_FLOAT32, 1, (int64_t[]){OUT}, b2);
    int h = mdl_builder_tensor(b, "hidden", MDL_DTYPE_FLOAT32, -1, NULL, NULL); /* inferred */
    int logits = mdl_builder_tensor(b, "logits", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    int y = mdl_builder_tensor(b, "probs", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    mdl_op_options relu = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
    relu.fc.act.kind = MDL_ACT_RELU; /* fused into the layer's epilogue */
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc1", 3, (int[]){x, W1, B1}, 1, &h, &relu);
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc2", 3, (int[]){h, W2, B2}, 1, &logits, NULL);
    mdl_builder_node(b, MDL_OP_SOFTMAX, "softmax", 1, &logits, 1, &y, NULL);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, y);
    mdl_builder_set_metadata(b, "name", "example-mlp");
    mdl_builder_set_metadata(b, "version", "1.0");
    mdl_builder_set_metadata(b, "description", "4-8-3 MLP assembled with the builder API");
    mdl_status st = mdl_builder_write_file(b, argv[1], &err);
    mdl_builder_free(b);
    if (st) {
        fprintf(stderr, "build_mlp: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s\n", argv[1]);
    return 0;
}
