/*
 * The converter's internal representation (host only; see include/mdeploy/convert.h).
 *
 * Two levels:
 *  - values: the ONNX graph's named values, with their ONNX (native) shapes.  Each is backed by a
 *    tensor that holds its data in a physical layout given by a permutation (physical dim i =
 *    native dim perm[i]); convolution regions keep NHWC ([0,2,3,1]) and transposes are lazy, so
 *    layout changes are only materialized where an operator needs another layout.
 *  - tensors and nodes: the runtime graph being built (runtime ops, physical shapes).  A node
 *    whose inputs are all constant is executed at once by the runtime kernel (constant folding)
 *    instead of being added.
 * The ONNX importer (src/io/onnx_host.c) walks the ONNX nodes in order and lowers each one
 * (convert_ops_host.c / convert_fold_host.c), then the passes and the builder emission run
 * (convert_ir_host.c).
 */
#ifndef MDL_CONVERT_HOST_H
#define MDL_CONVERT_HOST_H

#include "graph/graph.h"
#include "graph/util.h"
#include "mdeploy/convert.h"
#include "onnx.pb-c.h"

#define CV_MAX_OUT 3

typedef struct cv_tensor {
    const char *name;
    mdl_dtype dtype;
    int32_t rank;
    int64_t dims[MDL_MAX_RANK];
    int64_t count;
    size_t bytes;
    void *data;       /* constants: contents; NULL for activations */
    int32_t producer; /* node index, -1 for constants and graph inputs */
    int32_t uses;     /* live consumers (+1 for a graph output); computed by the passes */
    bool graph_input, graph_output;
    /* Quantization parameters (nquant 0: none; 1: per tensor; else per index of quant_axis),
       written to the file with mdl_builder_set_quant.  For an 8-bit activation they describe the
       tensor itself.  For a float constant made by DequantizeLinear from integer data, qdata
       holds those integers (dtype qdtype, same layout as data) and the parameters describe them:
       data = scale * (qdata - zero_point) exactly as the runtime's DEQUANTIZE computes it.  Such a
       constant keeps its integers through layout changes (the axis follows the permutation); the
       qdq pass (src/quant/qdq_host.h) stores it as integers. */
    int32_t nquant, quant_axis;
    float *scale;
    int64_t *zero_point;
    mdl_dtype qdtype;
    void *qdata;
} cv_tensor;

typedef struct cv_node {
    mdl_op op;
    const char *name;
    int32_t nin, nout;
    int32_t in[MDL_MAX_NODE_IO];
    int32_t out[CV_MAX_OUT];
    mdl_op_options opt;
    bool dead;
} cv_node;

typedef struct cv_value {
    const char *name;
    bool defined;
    bool is_bool; /* ONNX bool, stored as uint8 */
    int32_t rank;
    int64_t dims[MDL_MAX_RANK]; /* ONNX shape */
    int32_t t;                  /* backing tensor */
    int8_t perm[MDL_MAX_RANK];  /* physical layout of t */
    /* Lazy Flatten of a permuted 4-D value: t holds the physical elements of value flat_src
       flattened as they lie (NHWC order); a FullyConnected consumer permutes its weights
       instead of the data being transposed back.  -1 otherwise. */
    int32_t flat_src;
    int32_t native_t; /* cached native-layout copy of a permuted value, -1 */
    int32_t alt_t;    /* cached copy in layout alt_perm (e.g. an input in NHWC), -1 */
    int8_t alt_perm[MDL_MAX_RANK];
    /* Dynamic quantization (DynamicQuantizeLinear -> MatMulInteger/ConvInteger -> Cast -> Mul)
       is computed in float: these values stand for run-time quantities that only those nodes
       may read (convert_quant_host.c).  dyn_ref: the float value quantized (CV_DYN_Q/SCALE/ZP)
       or the weight scale constant (CV_DYN_SCALE_W). */
    int8_t dyn;
    int32_t dyn_ref;
} cv_value;

enum { CV_DYN_NONE, CV_DYN_Q, CV_DYN_SCALE, CV_DYN_ZP, CV_DYN_SCALE_W, CV_DYN_ACC };

typedef struct cv_ctx {
    mdl_error *err;
    int64_t opset;
    const char *model_dir;
    /* the ONNX node being lowered (messages, node names) */
    const char *op_type, *node_name;
    int32_t node_mark; /* first runtime node emitted for the current ONNX node */
    bool nofold;       /* emit even when all inputs are constant */
    cv_tensor *ts;
    int32_t nts, cap_ts;
    cv_node *nodes;
    int32_t nnodes, cap_nodes;
    cv_value *vals;
    int32_t nvals, cap_vals;
    int32_t *map; /* open addressing: value index + 1, 0 = empty */
    uint32_t map_cap;
    void **owned;
    size_t nowned, cap_owned;
    int32_t ninputs, noutputs;
    int32_t *inputs, *outputs; /* tensor ids */
    int32_t folded, fused, removed;
    /* Dynamic input dims (symbols) met so far and the size each takes in this lowering: the
       converter lowers the graph once per probe and compares (convert_dyn_host.c). */
    int probe;
    int32_t nsyms;
    const char *sym_names[MDL_CONVERT_MAX_SHAPES];
    int64_t sym_max[MDL_CONVERT_MAX_SHAPES];
    char sym_where[256]; /* "x[0]=batch, ids[1]=seq" for the report */
} cv_ctx;

/* Size of symbol s in lowering `probe` (0 or 1): distinct primes, none a size of the other
   probe, so that a dim equal to the symbol's size in both lowerings is that symbol. */
int64_t mdl__cv_probe_size(int probe, int32_t s);

/* Compares the graphs that the two lowerings built (b0 at probe 0, b1 at probe 1): they must be
   the same but for the sizes of activations.  Then declares c's symbols in b0 and marks each
   activation dim of b0 as fixed, a symbol, or computed.  Fails naming what depends on a
   dynamic size in a way the runtime cannot recompute. */
mdl_status mdl__cv_symbolize(const cv_ctx *c, mdl_builder *b0, mdl_builder *b1, mdl_error *err);

/* ---- memory and errors (convert_ir_host.c) ----------------------------------------------- */

void *mdl__cv_alloc(cv_ctx *c, size_t bytes); /* zeroed; freed with the context */
char *mdl__cv_strdup(cv_ctx *c, const char *s);
char *mdl__cv_fmt(cv_ctx *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void mdl__cv_free(cv_ctx *c);
/* Error naming the ONNX node being lowered: "<op_type> '<node>' (opset N): <message>". */
mdl_status mdl__cv_fail(cv_ctx *c, mdl_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- tensors, values, nodes ---------------------------------------------------------------- */

/* New tensor (data copied when non-NULL).  -1 on failure (error set). */
int32_t mdl__cv_tensor(cv_ctx *c, const char *name, mdl_dtype dtype, int32_t rank,
                       const int64_t *dims, const void *data);
/* Value called name, created (undefined) when absent; -1 on out of memory. */
int32_t mdl__cv_value(cv_ctx *c, const char *name);
int32_t mdl__cv_value_find(const cv_ctx *c, const char *name);
/* Binds value v to tensor t in layout perm (NULL = native); the native shape follows from the
   tensor's shape. */
void mdl__cv_bind(cv_ctx *c, int32_t v, int32_t t, const int8_t *perm);
bool mdl__cv_is_const(const cv_ctx *c, int32_t v);
const void *mdl__cv_data(const cv_ctx *c, int32_t v); /* constant data of a value or NULL */

/* Emits a runtime node (or folds it when all inputs are constant).  Output tensors are created
   with the shapes the kernel's prepare infers; decl (RESHAPE, SLICE) declares output 0's shape.
   out receives nout tensor ids. */
mdl_status mdl__cv_emit(cv_ctx *c, mdl_op op, const char *suffix, int nin, const int32_t *in,
                        int nout, int32_t *out, const mdl_op_options *opt, int32_t decl_rank,
                        const int64_t *decl_dims);
/* Appends node op without running a kernel (QUANTIZE/DEQUANTIZE, whose output tensors the
   caller makes; never folded). */
mdl_status mdl__cv_emit_raw(cv_ctx *c, mdl_op op, const char *suffix, int nin, const int32_t *in,
                            int32_t out);
/* Quantization parameters of tensor t (arrays copied). */
mdl_status mdl__cv_set_quant(cv_ctx *c, int32_t t, int32_t n, const float *scale,
                             const int64_t *zero_point, int32_t axis);
/* Copies src's quantization (and integer shadow layout-free fields) onto dst with the axis
   mapped to new_axis; a per-tensor quantization keeps its single entry. */
mdl_status mdl__cv_copy_quant(cv_ctx *c, int32_t dst, int32_t src, int32_t new_axis);
/* Convenience: one output. */
int32_t mdl__cv_emit1(cv_ctx *c, mdl_op op, const char *suffix, int nin, const int32_t *in,
                      const mdl_op_options *opt);
/* RESHAPE of tensor t to dims (a no-op when the shape is the same). */
int32_t mdl__cv_reshape(cv_ctx *c, int32_t t, int32_t rank, const int64_t *dims);
/* TRANSPOSE of tensor t (a RESHAPE when only size-1 dims move). */
int32_t mdl__cv_transpose(cv_ctx *c, int32_t t, const int8_t *perm);

/* Tensor holding value v in layout want (NULL = native), transposing as needed. */
int32_t mdl__cv_phys(cv_ctx *c, int32_t v, const int8_t *want);
static inline int32_t mdl__cv_native(cv_ctx *c, int32_t v) { return mdl__cv_phys(c, v, NULL); }
bool mdl__cv_perm_is_identity(const int8_t *perm, int32_t rank);
void mdl__cv_perm_identity(int8_t *perm, int32_t rank);

/* ---- lowering (convert_ops_host.c, convert_fold_host.c) ------------------------------------ */

/* Lowers one ONNX node.  in/out: value indices (-1 for an absent optional input/output). */
mdl_status mdl__cv_lower(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in,
                         int nout, const int32_t *out);
/* Folds a node of the shape-arithmetic family when all its inputs are constant.  *done = false
   when the op is not one it folds. */
mdl_status mdl__cv_fold(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in, int nout,
                        const int32_t *out, bool *done);
/* Quantization operators (QuantizeLinear, DequantizeLinear, QLinear*, com.microsoft Q*, integer
   and dynamic quantization ops: convert_quant_host.c) and the float lowering of an op reading
   8-bit activations.  *done = false when node n is none of these. */
mdl_status mdl__cv_lower_quant(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in,
                               int nout, const int32_t *out, bool *done);
bool mdl__cv_quant_op(const char *domain, const char *op_type);
/* Erf, LayerNormalization, Resize (convert_nn_host.c); *done = false for other ops. */
bool mdl__cv_nn_op(const char *op_type);
mdl_status mdl__cv_lower_nn(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in,
                            int nout, const int32_t *out, bool *done);
/* Rewrites exported decompositions into single ONNX nodes before lowering (Erf-form GELU ->
   Gelu, decomposed LayerNorm -> LayerNormalization; convert_fuse_nn_host.c): *g becomes a
   shallow copy owned by c when anything was fused. */
mdl_status mdl__cv_fuse_nn(cv_ctx *c, const Onnx__GraphProto **g);
/* Operators the converter knows (lowered or folded). */
bool mdl__cv_known_op(const char *op_type);
bool mdl__cv_lowerable(const char *op_type);

/* Attribute helpers. */
const Onnx__AttributeProto *mdl__cv_attr(const Onnx__NodeProto *n, const char *name);
int64_t mdl__cv_attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt);
float mdl__cv_attr_float(const Onnx__NodeProto *n, const char *name, float dflt);
/* ints of a list attribute; *count = -1 when absent. */
const int64_t *mdl__cv_attr_ints(const Onnx__NodeProto *n, const char *name, int32_t *count);
/* String attribute into buf ("" when absent). */
const char *mdl__cv_attr_str(const Onnx__NodeProto *n, const char *name, char *buf, size_t size);

/* Reads an ONNX TensorProto into a new constant tensor (io/onnx_host.c).  *is_bool for BOOL. */
mdl_status mdl__cv_tensor_proto(cv_ctx *c, const Onnx__TensorProto *tp, const char *name,
                                int32_t *out, bool *is_bool);

/* Constant value v as int64s (int32/int64/uint8 data); false if not constant or too many. */
bool mdl__cv_const_ints(const cv_ctx *c, int32_t v, int64_t *vals, int32_t max, int32_t *count);
/* Constant value v as one float (any numeric dtype, one element). */
bool mdl__cv_const_scalar(const cv_ctx *c, int32_t v, double *out);

/* ---- passes and output (convert_ir_host.c) -------------------------------------------------- */

void mdl__cv_optimize(cv_ctx *c);
/* Recomputes producers, use counts and graph-output flags over the live nodes. */
void mdl__cv_analyze(cv_ctx *c);
/* Marks nodes whose outputs nothing needs dead. */
void mdl__cv_dead_code(cv_ctx *c);
/* Adds the live graph to a builder. */
mdl_status mdl__cv_build(cv_ctx *c, mdl_builder *b, int32_t *nodes_out);

#endif
