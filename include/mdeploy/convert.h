/*
 * mdeploy — the converter: ONNX model -> .mdl file.  Host only (needs protobuf-c and files).
 *
 * One implementation serves the mdeploy-convert CLI, the Python bindings and applications:
 *
 *     mdl_convert_options o = mdl_convert_options_default();
 *     o.model_version = "2.1";
 *     mdl_convert_report r;
 *     if (mdl_convert_onnx("model.onnx", "model.mdl", &o, &r, &err) != MDL_OK) puts(err.msg);
 *
 * What it does: reads the ONNX graph (opsets 11..17 at least), keeps dynamic input dims symbolic
 * (see mdl_convert_options.input_shapes), folds constants and shape subgraphs, folds BatchNorm into the preceding Conv/Gemm, fuses bias and activations into their
 * producers, drops Identity/Dropout and dead nodes, converts convolutional parts to the runtime's
 * NHWC layout (weights transposed at conversion; the model keeps the ONNX model's input and output
 * layouts), plans memory and writes the file atomically (temporary name + rename: on failure no
 * output file is left behind).  Unsupported operators fail with a message naming the op type, the
 * node and the opset.
 *
 * Pre-quantized models (onnxruntime.quantization's output) are accepted:
 *  - QuantizeLinear / DequantizeLinear, per tensor and per axis, int8 and uint8 (int32 for
 *    biases), opsets 10-21 (attribute axis, output_dtype int8/uint8; blocked quantization is
 *    refused).  A DequantizeLinear of a constant is not folded to float: the weights stay
 *    integers in the file.
 *  - QDQ format: DequantizeLinear -> op -> QuantizeLinear groups become one int8 operator when the
 *    runtime has an int8 kernel for the op that accepts the operands (weights int8 symmetric per
 *    channel; a non-zero weight zero point is refused with a message); other ops stay float
 *    between DEQUANTIZE and QUANTIZE nodes.  uint8 activations become int8 (zero point - 128,
 *    exact).  QDQ at the graph edges stays as QUANTIZE/DEQUANTIZE, so models keep float inputs
 *    and outputs.
 *  - QOperator format: QLinearConv, QLinearMatMul, com.microsoft QGemm, QLinearAdd, QLinearMul,
 *    QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QLinearGlobalAveragePool,
 *    QLinearAveragePool, QLinearConcat (channels_last=1 refused), and MaxPool/Flatten/Reshape/
 *    Transpose/Squeeze/Unsqueeze/Slice/Gather/Identity on quantized tensors: lowered to the same
 *    form.
 *  - quantize_dynamic: DynamicQuantizeLinear -> MatMulInteger / ConvInteger -> Cast -> Mul by
 *    x_scale * w_scale, and com.microsoft DynamicQuantizeLSTM, are computed in float on the
 *    int8 weights (stored int8 behind a DEQUANTIZE that the loader widens): activations are not
 *    quantized at run time, so results differ from ORT's by that rounding.  Any other use of
 *    DynamicQuantizeLinear's outputs, and MatMulInteger/ConvInteger on other inputs, are refused.
 */
#ifndef MDEPLOY_CONVERT_H
#define MDEPLOY_CONVERT_H

#include "mdeploy.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MDL_CONVERT_MAX_SHAPES 16

/* A fixed shape for one graph input ("--input-shape NAME=1x3x224x224"). */
typedef struct mdl_input_shape {
    const char *name;
    int32_t rank;
    int64_t dims[MDL_MAX_RANK];
} mdl_input_shape;

typedef struct mdl_convert_options {
    /* Fixed shapes for inputs ("--input-shape"): every dim given here is fixed in the model.
       Dynamic dims not fixed here (an ONNX dim_param, or no dim_value) stay dynamic: symbolic
       in the model, named by the dim_param (unnamed ones "INPUT.D"), fixed by each session
       (mdl_session_resize).  Inputs sharing a dim_param share the symbol. */
    int32_t ninput_shapes;
    mdl_input_shape input_shapes[MDL_CONVERT_MAX_SHAPES];
    /* Upper bounds of dynamic dims ("--max-shape ids=64x512", parsed by mdl_parse_input_shape):
       a session may not exceed them.  Entries for fixed dims must equal the fixed size. */
    int32_t nmax_shapes;
    mdl_input_shape max_shapes[MDL_CONVERT_MAX_SHAPES];
    const char *name;          /* NULL: the ONNX graph name */
    const char *model_version; /* NULL: the ONNX model_version, if any */
    const char *description;   /* NULL: the ONNX doc_string */
} mdl_convert_options;

MDL_API mdl_convert_options mdl_convert_options_default(void);

/* Parses "NAME=1x3x224x224" into *shape (name points into text).  INVALID_ARGUMENT on bad text. */
MDL_API mdl_status mdl_parse_input_shape(const char *text, mdl_input_shape *shape, mdl_error *err);

/* What the conversion did (for the CLI summary). */
typedef struct mdl_convert_report {
    int32_t onnx_nodes;     /* nodes in the ONNX graph */
    int32_t nodes_out;      /* operators in the written model */
    int32_t folded;         /* nodes removed by constant folding */
    int32_t fused;          /* nodes fused into producers (BatchNorm, bias, activations) */
    int32_t removed;        /* Identity/Dropout/dead nodes dropped */
    size_t weight_bytes;    /* constant data written */
    size_t arena_bytes;     /* activation arena of the written model */
    size_t file_bytes;
    int64_t opset;
    /* Dynamic dims kept symbolic: how many symbols, and a description for the user such as
       "x[0]=batch<=64, ids[1]=seq" ("" when every dim is fixed). */
    int32_t nsymbols;
    char dynamic[256];
} mdl_convert_report;

/* Dynamic dims: the graph is lowered twice, at two different sizes of every symbolic dim, and
   the results compared: dims that follow a symbol are stored as that symbol, others that vary
   are computed at session creation by their operator.  Whatever the converter had to compute
   from a dynamic size and cannot be recomputed at run time - a constant made from a Shape
   subgraph (ConstantOfShape/Expand/Range of a dynamic size), an index or option derived from a
   dynamic size, a reshape with more than one dynamic target dim that is not a symbol - makes
   the conversion fail with a message naming the node or constant and the dims (fix them with
   --input-shape); it never produces a model that is right at one size only.  A session created
   without shapes gives every symbol 1, or, when the model is not valid there (e.g. a convolution
   without padding over a dynamic length), the sizes the converter checked it at (the report's
   `dynamic` text then says so). */

/* Converts onnx_path into out_path.  options and report may be NULL.
   Errors: IO, CORRUPT_MODEL (unparsable ONNX), UNSUPPORTED (operator/attribute/dtype), SHAPE,
   OUT_OF_MEMORY. */
MDL_API mdl_status mdl_convert_onnx(const char *onnx_path, const char *out_path,
                            const mdl_convert_options *options, mdl_convert_report *report,
                            mdl_error *err);

#ifdef __cplusplus
}
#endif
#endif
