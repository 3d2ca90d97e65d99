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
 * output file is left behind).  Unsupported operators fail with one message listing them all
 * (type, domain when not the default, node count, first node); mdl_onnx_summarize below marks
 * each operator of a model supported or not without converting it.
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

/* ---- post-training quantization --------------------------------------------------------------
 *
 *     mdl_convert_options o = mdl_convert_options_default();
 *     o.quant.mode = MDL_QUANTIZE_INT8;
 *     o.quant.calibration = "calib.npz";          // .npy, .npz or a directory of them
 *     o.quant.eval_inputs = "x.npy"; o.quant.eval_labels = "y.npy";
 *     o.quant.max_accuracy_drop = 0.5;            // percentage points of top-1
 *     mdl_convert_report r;
 *     if (mdl_convert_onnx("m.onnx", "m.mdl", &o, &r, &err) == MDL_OK) { ... r.quant ... }
 *     mdl_convert_report_free(&r);
 *
 * The float model (after the converter's graph passes) runs in-process through the runtime on the
 * calibration rows; an observer per activation picks its real range (method below).  Then, in the
 * TFLite scheme: weights int8 symmetric per output channel (per tensor with per_tensor), biases
 * int32 with scale input_scale * weight_scale, activations int8 asymmetric per tensor.  Every op
 * with an int8 kernel becomes int8; ops without one stay float between DEQUANTIZE and QUANTIZE
 * nodes.  Embedding tables (Gather on a constant), LSTM and GRU weights are stored int8 per row
 * and widened at load (hybrid: the compute stays float), so the file still shrinks about 4x.
 *
 * Data (calibration, eval_inputs): an .npy (one-input models), an .npz from np.savez with one
 * array per input name, or a directory of such files read in name order; each array is N rows
 * of the input's shape without its batch dimension (any N: rows are fed in the model's batch,
 * the last batch padded by repeating its last row; the first dimension is taken as the batch, so
 * a sequence-first recurrent model takes whole sequences).
 * Float inputs take float32, integer inputs any integer dtype.  A wrong shape, dtype or name, a
 * NaN or infinite value, an empty directory or a compressed .npz: INVALID_ARGUMENT / SHAPE /
 * DTYPE / UNSUPPORTED naming the file and the input; no output file is written.
 *
 * Quality is measured on eval_inputs (or the calibration rows): the int8 model and the float
 * model run side by side.  With a budget (max_accuracy_drop needs eval_labels; max_output_error
 * is the largest |int8 - float| over every output element), each quantized layer's impact is
 * measured alone (only that layer int8) and layers are kept in float, most harmful first, until
 * the budget holds; the report says which.
 */
typedef enum mdl_quantize_mode {
    MDL_QUANTIZE_NONE = 0, /* float model (default) */
    MDL_QUANTIZE_INT8,
    MDL_QUANTIZE_COUNT
} mdl_quantize_mode;

typedef enum mdl_calibration_method {
    MDL_CALIBRATION_MINMAX = 0, /* observed min and max */
    MDL_CALIBRATION_PERCENTILE, /* clip |x| at a percentile (default 99.99) */
    MDL_CALIBRATION_ENTROPY,    /* KL-divergence search over a 2048-bin histogram (TensorRT) */
    MDL_CALIBRATION_COUNT
} mdl_calibration_method;

/* Progress of a long stage ("calibrate", "evaluate", "sensitivity", "budget"): done of total
   steps.  Called from the converting thread. */
typedef void (*mdl_convert_progress_fn)(void *user, const char *stage, int64_t done, int64_t total);

/* All-zero is the default (no quantization); mdl_convert_options_default() gives it. */
typedef struct mdl_quantize_options {
    mdl_quantize_mode mode;
    const char *calibration;       /* data path (required for INT8); not retained */
    mdl_calibration_method method; /* default MINMAX */
    double percentile;             /* PERCENTILE: in (0, 100]; 0 = 99.99 */
    bool per_tensor;               /* per-tensor weight scales instead of per output channel */
    const char *float_ops;         /* comma-separated node names kept float (as mdeploy-inspect
                                      and the report name them); NULL: none */
    const char *eval_inputs;       /* data path for the report and budget; NULL: calibration */
    const char *eval_labels;       /* integer .npy, one class id per eval row; NULL: none */
    double max_accuracy_drop;      /* top-1 percentage points (needs eval_labels); 0: none */
    double max_output_error;       /* max |int8 - float| over outputs; 0: none */
    int64_t max_calibration_rows;  /* 0: all */
    mdl_convert_progress_fn progress; /* NULL: silent */
    void *progress_user;
} mdl_quantize_options;

/* ---- pruning and sparse weights ---------------------------------------------------------------
 *
 *     o.prune.sparsity = 0.8;                 // "--prune magnitude:0.8"
 *     o.prune.layers = "fc1=0.9,head=0";      // "--prune-layer fc1=0.9 --prune-layer head=0"
 *
 * Prunable layers are those whose weights the runtime can store and run block-sparse:
 * FullyConnected, MatMul with a constant 2-D B, and Conv2D without groups (float weights; a KxK
 * convolution runs the sparse product on its im2col rows).  Their weight matrix W [outputs, inputs] is cut into 8x1 blocks (8 consecutive outputs
 * of one input: the unit the sparse kernels skip, see the format's Tensor.sparse) and pruning
 * zeroes the blocks of smallest mean square, so that at least the asked fraction of the weights
 * is zero:
 *  - sparsity: globally, one ranking over every prunable layer not named in layers;
 *  - layers: "NAME=S,NAME=S" (node names as mdeploy-inspect and the report show them): that
 *    layer alone at S (0 keeps it as it is).
 * Sparsities must lie in [0, 1) and names must name prunable layers: otherwise
 * MDL_INVALID_ARGUMENT and no output file.  Pruning runs before quantization.
 *
 * Storage, with or without pruning (weights pruned in training - torch.nn.utils.prune and
 * prune.remove - are found the same way): a float prunable layer is stored block-sparse when the
 * share of its 8x1 blocks holding a non-zero (its block density) is below max_density, by default
 * 0.7 for FullyConnected/MatMul and 0.5 for convolutions - below those the sparse kernels
 * beat the dense ones on every shape measured (make bench, bench/sparse.c "sweep") and the
 * weights take at most 0.8x / 0.6x of the dense bytes; a KxK convolution needs besides at least
 * 128 outputs and 256 inputs per output (KH*KW*Cin): smaller ones ran slower sparse than the
 * direct convolution kernel (src/quant/prune_host.c).  With quantization the int8 weights are
 * stored block-sparse (int8 values) below block density 0.3 for every prunable layer kind: there
 * they take at most about 0.34x of their dense int8 bytes; the sparse int8 product is
 * bit-identical to the dense int8 kernels and faster than them in portable C from density ~0.5,
 * with AVX2 from ~0.2-0.3 on fully connected layers, but slower than the AVX-512 VNNI / AMX dense
 * kernels (bench/sparse.c "int8-sweep").  max_density applies to both.  The report lists each
 * prunable layer. */
typedef struct mdl_prune_options {
    double sparsity;    /* global magnitude pruning, in [0, 1); 0: none */
    const char *layers; /* per-layer sparsities "NAME=S,..."; NULL: none */
    double max_density; /* > 0: store sparse below this block density instead of the defaults;
                           >= 1 stores every prunable float layer sparse; < 0 never */
    /* Structured pruning ("--prune channels:S"), in [0, 1); 0: none.  In every Conv2D without
       groups and FullyConnected whose outputs feed, through max/average pooling and ReLU/Clip
       only, one Conv2D without groups or one FullyConnected (directly or flattened): the
       floor(S x outputs) filters / units of smallest L1 norm are removed with their bias, and the
       consumer loses the matching input channels - the model computes what it computed with
       those filters and biases zeroed, with smaller dense kernels.  Layers whose outputs lead to
       a graph output are left alone; one whose channels meet anything else (a residual Add, a
       Concat, a reshape to a non-FullyConnected, a second reader) is refused with
       MDL_UNSUPPORTED naming it: no output file.  Runs before magnitude pruning. */
    double channels;
} mdl_prune_options;

/* ---- self-test vectors ------------------------------------------------------------------------
 *
 *     const char *names[] = {"x"}, *paths[] = {"x.npy"};
 *     o.selftest.ninputs = 1; o.selftest.input_names = names; o.selftest.input_paths = paths;
 *
 * The written model carries input/expected-output pairs that mdl_model_selftest (include/mdeploy/
 * selftest.h, mdeploy-inspect --verify, the hot-swap API) runs.  Each input .npy is one case at
 * the input's shape (for dynamic dims: the shape the case runs at), or N cases stacked on a new
 * first axis (rank + 1; every input gives the same N, at most 64); dtypes must be the inputs'.
 * Expected outputs: from an outside oracle when output files are given (e.g. ONNX Runtime's
 * outputs on the source model; same layout, by output name; outputs not given are not checked),
 * otherwise computed by running the converted model here (see selftest.h for which oracle says
 * what).  The file is then loaded again and must pass its own vectors: a converted model that
 * does not meet the outside oracle's outputs within the tolerance fails the conversion with the
 * case, output and element named, and no file is left.  The model is written twice (once to
 * compute, once with the vectors).  Errors: INVALID_ARGUMENT / SHAPE / DTYPE naming the file. */
typedef struct mdl_selftest_options {
    int32_t ninputs;                /* 0: no vectors */
    const char *const *input_names; /* NULL, or NULL/"" entries: the model's inputs in order */
    const char *const *input_paths;
    int32_t noutputs; /* expected outputs from an outside oracle; 0: computed by the converter */
    const char *const *output_names;
    const char *const *output_paths;
    const char *oracle; /* name stored in the file; NULL: "external" with output files, else
                           "mdeploy-convert" */
    double atol, rtol;  /* stored tolerance (|got - expected| <= atol + rtol * |expected|);
                           mdl_convert_options_default: 1e-4 and 1e-3; 0 and 0: exact */
} mdl_selftest_options;

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
    mdl_quantize_options quant; /* mode NONE: a float model */
    /* Extra metadata ("--metadata KEY=VALUE"), nmetadata pairs.  The file's metadata is: the
       ONNX model's metadata_props, then name / version / description / "source" (the producer
       and opset), then these, a later value of a key replacing an earlier one ("name",
       "version", "description", "producer" set the dedicated fields, see mdl_builder_set_metadata). */
    int32_t nmetadata;
    const char *const *metadata_keys;
    const char *const *metadata_values;
    mdl_prune_options prune; /* all zero: no pruning (sparse storage where the weights allow) */
    mdl_selftest_options selftest; /* ninputs 0: none (see above) */
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
    /* With quant.mode != NONE: what quantization did, owned by the report (release with
       mdl_convert_report_free); NULL otherwise. */
    struct mdl_quant_report *quant;
    /* Dynamic dims kept symbolic: how many symbols, and a description for the user such as
       "x[0]=batch<=64, ids[1]=seq" ("" when every dim is fixed). */
    int32_t nsymbols;
    char dynamic[256];
    /* Every prunable layer of the written model (see mdl_prune_options) when the conversion
       pruned or stored one sparse (else none), owned by the report (mdl_convert_report_free). */
    int32_t nprune_layers;
    struct mdl_prune_layer *prune_layers;
    char *json; /* the report as JSON (mdl_convert_report_json); NULL: none */
} mdl_convert_report;

/* One prunable layer as written. */
typedef struct mdl_prune_layer {
    char *name;           /* node name */
    const char *op;       /* "FullyConnected", "MatMul", "Conv2D" */
    int64_t weights;      /* elements of the weight */
    double sparsity;      /* share of them that is zero */
    double block_density; /* share of its 8x1 blocks holding a non-zero */
    const char *storage;  /* "sparse", "dense", "sparse int8" or "dense int8" */
    size_t bytes;         /* weight bytes in the file */
} mdl_prune_layer;

/* One operator of the float model (after the graph passes), as quantization left it. */
typedef struct mdl_quant_layer {
    const char *name; /* node name */
    const char *op;   /* operator, e.g. "Conv2D" */
    const char *precision; /* "int8", "float", "hybrid" (int8 weights widened at load, float
                              compute), or "int8-move" (data movement on int8, exact) */
    const char *reason;    /* why float/hybrid: "no int8 kernel", "--float-ops", "accuracy budget",
                              "output-error budget", "int8 kernel refused the operands", ...;
                              "" for int8 */
    bool kept_for_budget;  /* kept float by the budget search */
    double sqnr_db;  /* output activation, quantized model vs float, on the eval rows: 10 log10
                        (sum f^2 / sum (q - f)^2); NAN when not measured, INFINITY when exact */
    double impact;   /* budget runs: the budget metric with only this layer int8; NAN otherwise */
} mdl_quant_layer;

typedef struct mdl_quant_report {
    const char *method;       /* "minmax", "percentile", "entropy" */
    bool per_tensor;
    int64_t calibration_rows, eval_rows;
    bool eval_is_calibration; /* no eval_inputs: measured on the calibration rows */
    /* outputs, int8 vs float over the eval rows (output 0 for top-1) */
    double top1_agreement;  /* percent of rows whose argmax agrees; NAN for one-value rows */
    double max_abs_error;   /* over every output element */
    double mean_abs_error;
    double float_accuracy, int8_accuracy; /* top-1 percent vs eval_labels; NAN without labels */
    size_t float_file_bytes, int8_file_bytes;
    int32_t int8_ops, float_ops; /* compute operators int8 / float or hybrid */
    /* budget */
    const char *budget;    /* "accuracy-drop", "output-error" or "" */
    double budget_limit, budget_value; /* the limit and the final measured value */
    bool budget_met;
    int32_t nkept_float;   /* layers kept float for the budget (layers[].kept_for_budget) */
    int32_t nlayers;
    mdl_quant_layer *layers;
    char *json; /* the whole report as JSON text (what mdeploy-convert --report writes) */
} mdl_quant_report;

/* The report as JSON text (owned by r; valid until mdl_convert_report_free): the quantization
   report with, when the conversion pruned or stored a layer sparse, a "pruning" array (one object
   per prunable layer: name, op, weights, sparsity, block_density, storage, bytes);
   {"pruning": [...]} without quantization; NULL when there is neither.  For bindings that do not
   mirror the structs (the structs list the prunable layers in any case). */
MDL_API const char *mdl_convert_report_json(const mdl_convert_report *r);

/* Releases r->quant, the pruning layers and the JSON (and sets them to NULL).  NULL is a no-op. */
MDL_API void mdl_convert_report_free(mdl_convert_report *r);

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

/* Converts onnx_path into out_path.  options and report may be NULL.  With quantization the
   report's quant part is allocated: release it with mdl_convert_report_free.
   Errors: IO, CORRUPT_MODEL (unparsable ONNX), UNSUPPORTED (operator/attribute/dtype), SHAPE,
   OUT_OF_MEMORY; with quantization also INVALID_ARGUMENT / DTYPE for bad data or options.  Not
   thread-safe against itself only through the progress callback (no global state). */
MDL_API mdl_status mdl_convert_onnx(const char *onnx_path, const char *out_path,
                            const mdl_convert_options *options, mdl_convert_report *report,
                            mdl_error *err);

/* The same from memory: converts the ONNX model in onnx[0, size) and returns the .mdl file's
   bytes in *mdl_data (malloc'd: release with free()) and *mdl_size; report.file_bytes is
   *mdl_size.  The buffer is untrusted like any file (a hostile one fails with a status, never
   reads out of bounds) and only read during the call.  Tensors kept as external data (separate
   files beside a .onnx) are refused with UNSUPPORTED: there is no directory to read them from.
   Errors as mdl_convert_onnx, plus INVALID_ARGUMENT for NULL pointers. */
MDL_API mdl_status mdl_convert_onnx_buffer(const void *onnx, size_t size, void **mdl_data,
                                           size_t *mdl_size, const mdl_convert_options *options,
                                           mdl_convert_report *report, mdl_error *err);

/* ---- inspecting an ONNX model ------------------------------------------------------------
 *
 * What a model needs before converting it (mdeploy-inspect MODEL.onnx): its inputs and outputs
 * and its operators, each marked with what the converter can do with it. */

/* A graph input or output. */
typedef struct mdl_onnx_value {
    const char *name;
    const char *elem_type; /* "float", "int64", "bool", "float16" ...; for a value that is not a
                              tensor: "sequence", "map", "optional" or "sparse_tensor" */
    int32_t rank;          /* -1: no shape given */
    int64_t dims[MDL_MAX_RANK]; /* -1 where not fixed (first MDL_MAX_RANK dims) */
    const char *dim_params[MDL_MAX_RANK]; /* symbolic dim names, NULL where none */
} mdl_onnx_value;

typedef enum mdl_onnx_support {
    MDL_ONNX_SUPPORTED,     /* lowered to runtime operators (attributes, dtypes and operands
                               may still be refused: the conversion says which) */
    MDL_ONNX_FOLDED,        /* computed at conversion (from constants and the static shapes),
                               refused where it needs run-time data */
    MDL_ONNX_UNSUPPORTED
} mdl_onnx_support;

/* One operator type used by the graph (in order of first use). */
typedef struct mdl_onnx_op {
    const char *domain;     /* "" for the default ONNX domain */
    const char *op_type;
    int32_t count;          /* nodes of this type */
    const char *first_node; /* name of the first one ("" when unnamed) */
    int32_t first_index;    /* its index in the graph's node list */
    mdl_onnx_support support;
} mdl_onnx_op;

typedef struct mdl_onnx_summary {
    int64_t ir_version, opset; /* opset: of the default domain, -1 when not imported */
    const char *producer_name, *producer_version, *graph_name;
    int32_t nnodes, ninitializers;
    int32_t ninputs, noutputs; /* inputs: without the initializers listed as inputs */
    mdl_onnx_value *inputs, *outputs;
    int32_t nops, nunsupported; /* nunsupported: op types marked MDL_ONNX_UNSUPPORTED */
    mdl_onnx_op *ops;
    int32_t nmetadata; /* the model's metadata_props */
    const char **metadata_keys, **metadata_values;
    void *internal_;
} mdl_onnx_summary;

/* Reads onnx_path and describes it into *out (strings owned by it; release with
   mdl_onnx_summary_free).  Errors: IO, CORRUPT_MODEL, OUT_OF_MEMORY. */
MDL_API mdl_status mdl_onnx_summarize(const char *onnx_path, mdl_onnx_summary **out, mdl_error *err);
MDL_API void mdl_onnx_summary_free(mdl_onnx_summary *s); /* NULL is a no-op */

/* Top-1 accuracy (percent) of a converted model (the .mdl bytes, as the runtime loads them) on
   the rows of x_npy (float32 [N, ...]: N rows of the model's one input) against y_npy (N integer
   class ids): the argmax of output 0 per row.  All rows in one run where the model's first input
   dim is dynamic, else row by row.  *rows: N.  mdeploy-convert --eval X.npy Y.npy prints it for
   the float source and the converted model (src/quant/prune_host.c). */
MDL_API mdl_status mdl_eval_top1(const void *mdl, size_t size, const char *x_npy, const char *y_npy,
                                 double *accuracy, int64_t *rows, mdl_error *err);

#ifdef __cplusplus
}
#endif
#endif
