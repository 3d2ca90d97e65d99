/*
 * mdeploy — operators, their options, and the graph builder that writes .mdl files.
 *
 * The builder is what the converter, the tests and applications that assemble a model by hand
 * use.  It holds a mutable graph (tensors + nodes in execution order) and serializes it into the
 * FlatBuffers model format (src/io/mdeploy.fbs), computing and storing the memory plan.
 *
 *     mdl_builder *b;
 *     mdl_builder_create(NULL, &b, &err);
 *     int64_t xd[2] = {1, 4}, wd[2] = {3, 4}, yd[2] = {1, 3};
 *     int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, xd, NULL);
 *     int w = mdl_builder_tensor(b, "w", MDL_DTYPE_FLOAT32, 2, wd, weights);   // copied
 *     int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, 2, yd, NULL);
 *     mdl_op_options o = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
 *     mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc", 3, (int[]){x, w, -1}, 1, &y, &o);
 *     mdl_builder_add_input(b, x); mdl_builder_add_output(b, y);
 *     mdl_builder_finish(b, &bytes, &size, &err);   // caller frees bytes with mdl_free
 *     mdl_builder_free(b);
 *
 * Layout conventions of the runtime (the converter translates ONNX's):
 *  - 4-D activations of convolution/pooling are NHWC (channels last).
 *  - CONV2D weight: HWIO, [KH, KW, Cin/group, Cout] (group g's filters are output channels
 *    g*Cout/group ..); DEPTHWISE_CONV2D weight: [1, KH, KW, Cout] (Cout = Cin * multiplier);
 *    bias [Cout] float32, optional.  Output channels last lets the x86 kernels read conv
 *    weights in place from a mapped model file (nothing is repacked at load).
 *  - FULLY_CONNECTED: X [..., K] (all leading dims are batch), W [N, K], bias [N] optional,
 *    Y [..., N] = X W^T + b.
 *  - MATMUL: NumPy matmul semantics with batch broadcasting, A [..., M, K] x B [..., K, N].
 *  - LSTM / GRU: ONNX semantics and layouts (X [seq, batch, in], W [dirs, G*H, in],
 *    R [dirs, G*H, H], B [dirs, 2*G*H], initial_h/c [dirs, batch, H]; gates iofc for LSTM and
 *    zrh for GRU as in ONNX).  Inputs: X, W, R, B?, sequence_lens (must be absent), h0?, c0?.
 *    Outputs (each optional, -1 if unused): Y [seq, dirs, batch, H], Y_h, Y_c [dirs, batch, H].
 *  - GATHER: data, indices (int32/int64); output = NumPy take(data, indices, axis).  Indices
 *    are checked at run time; negative ones count from the end as in ONNX.
 *  - BATCH_NORM: X [..., C] channels last, inputs scale, bias, mean, var each [C].
 *  - LAYER_NORM: X [..., C], optional scale and bias [C] (-1 when absent); each row of C values
 *    is normalized: y = (x - mean) / sqrt(var + epsilon) * scale + bias (options: batch_norm).
 *    ONNX LayerNormalization over several trailing axes is a reshape to one axis around it.
 *  - ERF: float32, element-wise.
 *  - RESHAPE: output shape is the declared shape of its output tensor; no data is copied (the
 *    memory planner makes the output share its input's memory).
 *  - SLICE: output shape is declared too; begin/step give the elements taken.
 *  - Element-wise math (EXP, SQRT, LOG, NEG, RECIPROCAL, ABS: one input; POW: two) on float32
 *    with IEEE results (sqrt(-1) = NaN, log(0) = -inf, 1/0 = inf); NEG and ABS also on int32
 *    and int64 (two's complement wrap: -INT_MIN = INT_MIN).  POW broadcasts like ADD.
 *  - ADD, SUB, MUL, DIV on int32 / int64 (both operands the same type, NumPy broadcasting):
 *    wrap on overflow; DIV truncates toward zero as ONNX specifies, and a zero divisor (or
 *    INT_MIN / -1) fails the run with MDL_OUT_OF_RANGE naming the element (ONNX leaves it
 *    undefined; nothing is made up).
 *  - EQUAL, LESS, GREATER, LESS_OR_EQUAL, GREATER_OR_EQUAL: float32, int32, int64 or bool
 *    operands of one type, broadcast, give bool.  NOT (one input), AND, OR, XOR: bool.
 *  - WHERE: cond (bool), X, Y (same type, any dtype) broadcast together (ONNX Where).
 *  - CAST: to options.cast.to, between float32, int8, uint8, int32, int64 and bool, as ONNX
 *    Cast: float -> integer truncates toward zero, and a value outside the target's range (or
 *    NaN) fails the run with MDL_OUT_OF_RANGE (ONNX leaves it undefined); integer -> narrower
 *    integer keeps the low bits (two's complement); -> bool is x != 0; bool -> 0/1.
 *  - PAD: for integer tensors the value is rounded to nearest and clamped to the type's range;
 *    on a quantized tensor it is a real value, quantized with the tensor's parameters (0.0 pads
 *    with the zero point).
 *
 * Quantized (int8) operators follow TFLite's scheme, real = scale * (q - zero_point), and are
 * chosen by the dtype of input 0 (MDL_DTYPE_INT8).  Every quantized tensor carries its parameters
 * (mdl_builder_set_quant); outputs of int8 operators must be declared with theirs.
 *  - Activations: int8, per tensor, any zero point.  uint8 only at QUANTIZE/DEQUANTIZE (the
 *    converter turns uint8 activations into int8 with zero point - 128, which is exact).
 *  - Weights of FULLY_CONNECTED / CONV2D / DEPTHWISE_CONV2D / constant MATMUL operands: int8,
 *    symmetric (zero point 0), per tensor or per output channel (FULLY_CONNECTED axis 0 of
 *    [N, K]; CONV2D and DEPTHWISE_CONV2D axis 3; MATMUL's B the last axis).
 *  - Bias: int32, zero point 0, scale = input scale * weight scale (per channel).
 *  - Accumulation in int32; the result is requantized with a fixed-point multiplier
 *    (input scale * weight scale / output scale) and shift, rounding as TFLite does; a fused
 *    activation becomes a clamp in the quantized domain.
 *  - MAX_POOL2D / GLOBAL_MAX_POOL and the data-movement operators (RESHAPE, TRANSPOSE, SLICE,
 *    PAD, GATHER) need the output's parameters equal to the input's; AVG pooling, ADD, SUB, MUL
 *    and CONCAT requantize to the output's parameters; SIGMOID, TANH, HARD_SWISH and the other
 *    activations use a 256-entry table made at load from the float function.
 *  - QUANTIZE: float32 -> int8/uint8 as ONNX QuantizeLinear (round half to even, saturate), per
 *    tensor or per axis of the output's parameters.  DEQUANTIZE: int8/uint8/int32 -> float32.
 *  - A DEQUANTIZE whose input is a constant is run once when the model is loaded: weight-only
 *    quantized models keep int8 weights in the file and compute in float with the widened
 *    weights (4 bytes per weight of model memory).
 */
#ifndef MDEPLOY_GRAPH_H
#define MDEPLOY_GRAPH_H

#include "mdeploy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, "Name", options kind).  Order is the file format: append only. */
#define MDL_OP_MAP(X)                                                                              \
    X(FULLY_CONNECTED, "FullyConnected", FC)                                                       \
    X(MATMUL, "MatMul", NONE)                                                                      \
    X(CONV2D, "Conv2D", CONV)                                                                      \
    X(DEPTHWISE_CONV2D, "DepthwiseConv2D", CONV)                                                   \
    X(MAX_POOL2D, "MaxPool2D", POOL)                                                               \
    X(AVG_POOL2D, "AvgPool2D", POOL)                                                               \
    X(GLOBAL_AVG_POOL, "GlobalAvgPool", NONE)                                                      \
    X(GLOBAL_MAX_POOL, "GlobalMaxPool", NONE)                                                      \
    X(RELU, "Relu", NONE)                                                                          \
    X(CLIP, "Clip", ACT)                                                                           \
    X(LEAKY_RELU, "LeakyRelu", ACT)                                                                \
    X(SIGMOID, "Sigmoid", NONE)                                                                    \
    X(TANH, "Tanh", NONE)                                                                          \
    X(HARD_SIGMOID, "HardSigmoid", ACT)                                                            \
    X(HARD_SWISH, "HardSwish", NONE)                                                               \
    X(GELU, "Gelu", ACT)                                                                           \
    X(SOFTMAX, "Softmax", AXIS)                                                                    \
    X(LOG_SOFTMAX, "LogSoftmax", AXIS)                                                             \
    X(ADD, "Add", BINARY)                                                                          \
    X(SUB, "Sub", BINARY)                                                                          \
    X(MUL, "Mul", BINARY)                                                                          \
    X(DIV, "Div", BINARY)                                                                          \
    X(RESHAPE, "Reshape", NONE)                                                                    \
    X(TRANSPOSE, "Transpose", TRANSPOSE)                                                           \
    X(CONCAT, "Concat", AXIS)                                                                      \
    X(SLICE, "Slice", SLICE)                                                                       \
    X(PAD, "Pad", PAD)                                                                             \
    X(GATHER, "Gather", AXIS)                                                                      \
    X(REDUCE_MEAN, "ReduceMean", REDUCE)                                                           \
    X(REDUCE_SUM, "ReduceSum", REDUCE)                                                             \
    X(REDUCE_MAX, "ReduceMax", REDUCE)                                                             \
    X(LSTM, "LSTM", RNN)                                                                           \
    X(GRU, "GRU", RNN)                                                                             \
    X(BATCH_NORM, "BatchNorm", BATCH_NORM)                                                         \
    X(QUANTIZE, "Quantize", NONE)                                                                  \
    X(DEQUANTIZE, "Dequantize", NONE)                                                              \
    X(EXP, "Exp", NONE)                                                                            \
    X(SQRT, "Sqrt", NONE)                                                                          \
    X(LOG, "Log", NONE)                                                                            \
    X(NEG, "Neg", NONE)                                                                            \
    X(RECIPROCAL, "Reciprocal", NONE)                                                              \
    X(ABS, "Abs", NONE)                                                                            \
    X(POW, "Pow", NONE)                                                                            \
    X(EQUAL, "Equal", NONE)                                                                        \
    X(LESS, "Less", NONE)                                                                          \
    X(GREATER, "Greater", NONE)                                                                    \
    X(LESS_OR_EQUAL, "LessOrEqual", NONE)                                                          \
    X(GREATER_OR_EQUAL, "GreaterOrEqual", NONE)                                                    \
    X(NOT, "Not", NONE)                                                                            \
    X(AND, "And", NONE)                                                                            \
    X(OR, "Or", NONE)                                                                              \
    X(XOR, "Xor", NONE)                                                                            \
    X(WHERE, "Where", NONE)                                                                        \
    X(CAST, "Cast", CAST)                                                                          \
    X(ERF, "Erf", NONE)                                                                            \
    X(LAYER_NORM, "LayerNorm", BATCH_NORM)                                                         \
    X(RESIZE, "Resize", RESIZE)

typedef enum mdl_op {
#define MDL__OP_ENUM(name, text, kind) MDL_OP_##name,
    MDL_OP_MAP(MDL__OP_ENUM)
#undef MDL__OP_ENUM
        MDL_OP_COUNT
} mdl_op;

/* "Conv2D", ...; "unknown" out of range. */
MDL_API const char *mdl_op_name(mdl_op op);

/* Activation fused into a producer's epilogue: y = min(max(y, lo), hi). */
typedef enum mdl_activation {
    MDL_ACT_NONE = 0,
    MDL_ACT_RELU,  /* lo = 0,        hi = +inf */
    MDL_ACT_RELU6, /* lo = 0,        hi = 6    */
    MDL_ACT_CLIP,  /* lo = clip_min, hi = clip_max */
    MDL_ACT_COUNT
} mdl_activation;

typedef struct mdl_fused_act {
    mdl_activation kind;
    float clip_min, clip_max; /* MDL_ACT_CLIP only */
} mdl_fused_act;

typedef struct mdl_fc_options {
    mdl_fused_act act;
} mdl_fc_options;

typedef struct mdl_conv_options {
    int32_t stride[2];   /* h, w (>= 1) */
    int32_t dilation[2]; /* h, w (>= 1) */
    int32_t pad[4];      /* top, left, bottom, right (>= 0) */
    int32_t group;       /* CONV2D: Cin and Cout divisible by it; DEPTHWISE: unused (1) */
    mdl_fused_act act;
} mdl_conv_options;

typedef struct mdl_pool_options {
    int32_t kernel[2]; /* h, w */
    int32_t stride[2];
    int32_t pad[4]; /* top, left, bottom, right; output size is floor-based (ceil pads bottom/right) */
    bool count_include_pad; /* AVG_POOL2D: divide by the full window including padding */
} mdl_pool_options;

/* CLIP: min, max.  LEAKY_RELU: alpha.  HARD_SIGMOID: y = max(0, min(1, alpha x + beta)).
   GELU: approximate = tanh approximation. */
typedef struct mdl_act_options {
    float alpha, beta, min, max;
    bool approximate;
} mdl_act_options;

typedef struct mdl_axis_options {
    int32_t axis; /* negative counts from the end */
} mdl_axis_options;

typedef struct mdl_binary_options {
    mdl_fused_act act;
} mdl_binary_options;

typedef struct mdl_transpose_options {
    int32_t perm[MDL_MAX_RANK]; /* output dim i = input dim perm[i]; rank entries */
} mdl_transpose_options;

/* Output element i = input element begin + i * step along each dim (rank entries; step != 0,
   begin already clamped); the output's declared shape gives the count. */
typedef struct mdl_slice_options {
    int64_t begin[MDL_MAX_RANK];
    int64_t step[MDL_MAX_RANK];
} mdl_slice_options;

/* Constant padding: pads[d] before dim d, pads[rank + d] after (ONNX order, >= 0). */
typedef struct mdl_pad_options {
    int64_t pads[2 * MDL_MAX_RANK];
    float value;
} mdl_pad_options;

typedef struct mdl_reduce_options {
    uint32_t axes_mask; /* bit d set: reduce dim d; 0 = all dims */
    bool keepdims;
} mdl_reduce_options;

typedef enum mdl_rnn_direction {
    MDL_RNN_FORWARD = 0,
    MDL_RNN_REVERSE,
    MDL_RNN_BIDIRECTIONAL,
    MDL_RNN_DIRECTION_COUNT
} mdl_rnn_direction;

typedef struct mdl_rnn_options {
    int32_t hidden_size;
    mdl_rnn_direction direction;
    bool linear_before_reset; /* GRU only */
} mdl_rnn_options;

typedef struct mdl_batch_norm_options {
    float epsilon;
} mdl_batch_norm_options;

/* CAST: the output's element type (see CAST above for the conversion rules). */
typedef struct mdl_cast_options {
    mdl_dtype to;
} mdl_cast_options;

/* RESIZE (ONNX Resize, 2-D spatial, on NHWC X [N, H, W, C]): out[d] (d = 0: H, 1: W) is the
   output size, 0 = floor(in * scale[d]); scale[d] > 0 is the factor the coordinate transform uses
   (ONNX: the given scale, or out / in when sizes were given). */
typedef enum mdl_resize_mode { MDL_RESIZE_NEAREST = 0, MDL_RESIZE_LINEAR, MDL_RESIZE_MODE_COUNT } mdl_resize_mode;
typedef enum mdl_resize_coord {
    MDL_RESIZE_HALF_PIXEL = 0, /* x_in = (x_out + 0.5) / scale - 0.5 */
    MDL_RESIZE_ASYMMETRIC,     /* x_in = x_out / scale */
    MDL_RESIZE_ALIGN_CORNERS,  /* x_in = x_out (in - 1) / (out - 1), 0 when out == 1 */
    MDL_RESIZE_PYTORCH_HALF_PIXEL, /* half_pixel, but 0 when out == 1 */
    MDL_RESIZE_COORD_COUNT
} mdl_resize_coord;
typedef enum mdl_resize_nearest {
    MDL_RESIZE_ROUND_PREFER_FLOOR = 0, /* round half down */
    MDL_RESIZE_ROUND_PREFER_CEIL,      /* round half up */
    MDL_RESIZE_FLOOR,
    MDL_RESIZE_CEIL,
    MDL_RESIZE_NEAREST_COUNT
} mdl_resize_nearest;
typedef struct mdl_resize_options {
    int32_t out[2];
    float scale[2];
    mdl_resize_mode mode;
    mdl_resize_coord coord;
    mdl_resize_nearest nearest; /* NEAREST only */
} mdl_resize_options;

#define MDL_OPTIONS_KIND_MAP(X)                                                                    \
    X(NONE) X(FC) X(CONV) X(POOL) X(ACT) X(AXIS) X(BINARY) X(TRANSPOSE) X(SLICE) X(PAD)            \
        X(REDUCE) X(RNN) X(BATCH_NORM) X(CAST) X(RESIZE)

typedef enum mdl_options_kind {
#define MDL__KIND_ENUM(name) MDL_OPTIONS_##name,
    MDL_OPTIONS_KIND_MAP(MDL__KIND_ENUM)
#undef MDL__KIND_ENUM
        MDL_OPTIONS_COUNT
} mdl_options_kind;

/* Which member of mdl_op_options an operator uses. */
MDL_API mdl_options_kind mdl_op_options_kind(mdl_op op);

typedef union mdl_op_options {
    mdl_fc_options fc;
    mdl_conv_options conv;
    mdl_pool_options pool;
    mdl_act_options act;
    mdl_axis_options axis;
    mdl_binary_options binary;
    mdl_transpose_options transpose;
    mdl_slice_options slice;
    mdl_pad_options pad;
    mdl_reduce_options reduce;
    mdl_rnn_options rnn;
    mdl_batch_norm_options batch_norm;
    mdl_cast_options cast;
    mdl_resize_options resize;
} mdl_op_options;

/* Defaults: strides/dilations/group 1, no padding, no fused activation, axis -1 (GATHER 0),
   CLIP -inf..inf, LEAKY_RELU alpha 0.01, HARD_SIGMOID 0.2/0.5, BATCH_NORM epsilon 1e-5,
   TRANSPOSE identity. */
MDL_API mdl_op_options mdl_op_options_default(mdl_op op);

/* ---- builder --------------------------------------------------------------------------- */

typedef struct mdl_builder mdl_builder;

/* allocator may be NULL (malloc/free). */
MDL_API mdl_status mdl_builder_create(const mdl_allocator *allocator, mdl_builder **out, mdl_error *err);
MDL_API void mdl_builder_free(mdl_builder *b); /* NULL is a no-op */

/* Adds a tensor and returns its index (>= 0) or -1 on a bad argument/out of memory (the error
   is reported again by mdl_builder_finish).  data != NULL makes it a constant; the bytes
   (product(dims) * dtype size) are copied.  rank 0 is a scalar; rank -1 (dims NULL) leaves the
   shape and dtype to be inferred from the producing node at finish (not for graph inputs, and
   not for RESHAPE/SLICE outputs, whose shape defines the operation). */
MDL_API int mdl_builder_tensor(mdl_builder *b, const char *name, mdl_dtype dtype, int rank,
                       const int64_t *dims, const void *data);

/* Quantization parameters of tensor t: n == 1 per tensor, else per index along axis. */
MDL_API mdl_status mdl_builder_set_quant(mdl_builder *b, int t, int n, const float *scale,
                                 const int64_t *zero_point, int axis);

/* Appends a node (nodes execute in the order added).  Input index -1 = absent optional input.
   options may be NULL (defaults).  Returns the node index or -1 (reported by finish). */
MDL_API int mdl_builder_node(mdl_builder *b, mdl_op op, const char *name, int nin, const int *inputs,
                     int nout, const int *outputs, const mdl_op_options *options);

/* Dynamic dims.  mdl_builder_symbol declares a symbolic dimension (e.g. "batch", max 0: no
   bound; a session created without shapes gives it `initial`, >= 0) and returns its index or -1.
   mdl_builder_set_dims marks the dims of tensor t: codes[d] is MDL_DIM_FIXED, a symbol index, or
   MDL_DIM_COMPUTED (the size follows from the producing operator at session creation; a
   RESHAPE or SLICE output may have one such dim).  Graph inputs have fixed or named dims,
   constants only fixed ones.  The dims given to mdl_builder_tensor are the example sizes the
   graph is checked at by finish; tensors left to inference (rank -1) get computed dims in a
   graph with symbols.  The written model is loaded once more at the initial values. */
#define MDL_DIM_FIXED (-1)
#define MDL_DIM_COMPUTED (-2)
MDL_API int mdl_builder_symbol(mdl_builder *b, const char *name, int64_t max, int64_t initial);
MDL_API mdl_status mdl_builder_set_dims(mdl_builder *b, int t, const int32_t *codes);

MDL_API mdl_status mdl_builder_add_input(mdl_builder *b, int t);
MDL_API mdl_status mdl_builder_add_output(mdl_builder *b, int t);

/* Metadata: "name", "version", "producer", "description" fill the dedicated fields, and
   "security_counter" (a decimal integer) the model's anti-rollback counter (security.h); any other key
   goes to the free key/value list.  Setting a key again replaces its value. */
MDL_API mdl_status mdl_builder_set_metadata(mdl_builder *b, const char *key, const char *value);

/* Validates the graph exactly as the loader will (shapes inferred by each kernel's prepare must
   match the declared ones), plans memory, and serializes.  *data is allocated with the builder's
   allocator; release it with mdl_builder_release(b, data) or, with the default allocator, free(). */
MDL_API mdl_status mdl_builder_finish(mdl_builder *b, void **data, size_t *size, mdl_error *err);
MDL_API void mdl_builder_release(mdl_builder *b, void *data);

/* Host only: finish and write to path atomically (temporary name, then rename). */
MDL_API mdl_status mdl_builder_write_file(mdl_builder *b, const char *path, mdl_error *err);

#ifdef __cplusplus
}
#endif
#endif
