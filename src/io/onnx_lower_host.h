/*
 * The ONNX importer's lowering (host only): ONNX nodes -> the converter's IR (graph/convert_host.h).
 *
 * Only the importer's files include this header (src/io/onnx_*_host.c, and the lowering files
 * of operator families beside them): it is the one place where protobuf-c's ONNX types meet the
 * IR.  onnx_host.c parses the model, reads initializers and inputs, and walks the nodes in
 * topological order; each node goes to, in turn,
 *   mdl__cv_lower_quant  quantization operators and ops reading 8-bit values (onnx_lower_quant_host.c)
 *   mdl__cv_fold         shape arithmetic and elementwise ops on constants (onnx_lower_fold_host.c)
 *   mdl__cv_lower        everything else, through the dispatch table (onnx_lower_ops_host.c)
 * which emit IR nodes with mdl__cv_emit (folded at once when their inputs are constant).  Nothing
 * here runs the passes, quantizes or writes: the pipeline (graph/convert_pipeline_host.c) does,
 * after the import returns.
 */
#ifndef MDL_ONNX_LOWER_HOST_H
#define MDL_ONNX_LOWER_HOST_H

#include "graph/convert_host.h"
#include "io/onnx_import_host.h"
#include "onnx.pb-c.h"

/* ---- the parsed model (onnx_host.c) and its operator table (onnx_inspect_host.c) ---------- */

const Onnx__ModelProto *mdl__onnx_proto(const mdl__onnx_model *m);
/* The default domain's opset; -1 when the model does not import it. */
int64_t mdl__onnx_opset(const Onnx__ModelProto *m);
/* What the converter does with an operator (domain "" or "ai.onnx": the default). */
mdl_onnx_support mdl__onnx_op_support(const char *domain, const char *op_type);
/* The operator types of g in order of first use (malloc'd; strings point into g). */
mdl_status mdl__onnx_collect_ops(const Onnx__GraphProto *g, mdl_onnx_op **ops, int32_t *nops, mdl_error *err);
/* UNSUPPORTED naming every unsupported operator type of g (count, domain, first node) and the
   model's opset. */
mdl_status mdl__onnx_check_ops(const Onnx__GraphProto *g, int64_t opset, mdl_error *err);

/* ---- lowering --------------------------------------------------------------------------------- */


/* Lowers one ONNX node.  in/out: value indices (-1 for an absent optional input/output). */
/* Refuses node n when one of the inputs its operator requires is absent (MDL_CORRUPT_MODEL
   naming it); lower_nodes calls it once before every lowering stage, which may then read them. */
mdl_status mdl__cv_check_inputs(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in);
mdl_status mdl__cv_lower(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in,
                         int nout, const int32_t *out);
/* Folds a node of the shape-arithmetic family when all its inputs are constant.  *done = false
   when the op is not one it folds. */
mdl_status mdl__cv_fold(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in, int nout,
                        const int32_t *out, bool *done);
/* Quantization operators (QuantizeLinear, DequantizeLinear, QLinear*, com.microsoft Q*, integer
   and dynamic quantization ops: onnx_lower_quant_host.c) and the float lowering of an op reading
   8-bit activations.  *done = false when node n is none of these. */
mdl_status mdl__cv_lower_quant(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in,
                               int nout, const int32_t *out, bool *done);
bool mdl__cv_quant_op(const char *domain, const char *op_type);
/* Element-wise math, comparison, logic, Where and Cast at run time (onnx_lower_elem_host.c):
   whether op_type is one of them, and its lowering (inputs not all constant). */
bool mdl__cv_elem_op(const char *op_type);
int mdl__cv_elem_inputs(const char *op_type); /* its required inputs; -1: not element-wise */
mdl_status mdl__cv_lower_elem(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in,
                              int nout, const int32_t *out);
/* Erf, LayerNormalization, Resize (onnx_lower_nn_host.c); *done = false for other ops. */
bool mdl__cv_nn_op(const char *op_type);
mdl_status mdl__cv_lower_nn(cv_ctx *c, const Onnx__NodeProto *n, int nin, const int32_t *in,
                            int nout, const int32_t *out, bool *done);
/* Rewrites exported decompositions into single ONNX nodes before lowering (Erf-form GELU ->
   Gelu, decomposed LayerNorm -> LayerNormalization; onnx_fuse_nn_host.c): *g becomes a
   shallow copy owned by c when anything was fused. */
mdl_status mdl__cv_fuse_nn(cv_ctx *c, const Onnx__GraphProto **g);
/* What to do about an operator the converter does not know (" (...)"), or "". */
const char *mdl__cv_unsupported_hint(const char *op_type);
/* Binds ONNX output value v to tensor t in layout perm (NULL = native) and names t after v when
   the current ONNX node made it; passes on the failure of the step that produced t (t < 0). */
mdl_status mdl__cv_bind_result(cv_ctx *c, int32_t v, int32_t t, const int8_t *perm);
/* Emits the one-input element-wise op for ONNX value in and binds ONNX value out to it. */
mdl_status mdl__cv_lower_unary(cv_ctx *c, mdl_op op, int32_t in, int32_t out);
/* The status of the failure just recorded in c (MDL_INTERNAL if none was). */
static inline mdl_status mdl__cv_status(const cv_ctx *c) {
    return c->err->status ? c->err->status : MDL_INTERNAL;
}
/* Operators the converter knows (lowered or folded). */
bool mdl__cv_known_op(const char *op_type);
bool mdl__cv_lowerable(const char *op_type);
/* Known operators that also run on run-time data (the others fold only constants). */
bool mdl__cv_runtime_op(const char *op_type);

/* Attribute helpers. */
const Onnx__AttributeProto *mdl__cv_attr(const Onnx__NodeProto *n, const char *name);
int64_t mdl__cv_attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt);
float mdl__cv_attr_float(const Onnx__NodeProto *n, const char *name, float dflt);
/* ints of a list attribute; *count = -1 when absent. */
const int64_t *mdl__cv_attr_ints(const Onnx__NodeProto *n, const char *name, int32_t *count);
/* String attribute into buf ("" when absent). */
const char *mdl__cv_attr_str(const Onnx__NodeProto *n, const char *name, char *buf, size_t size);

/* The name of an ONNX element type (TensorProto.DataType): "float", "bool", "float16",
   "double" ...; "unknown" out of range. */
const char *mdl__onnx_type_name(int64_t type);

/* Reads an ONNX TensorProto into a new constant tensor (onnx_host.c). */
mdl_status mdl__cv_tensor_proto(cv_ctx *c, const Onnx__TensorProto *tp, const char *name,
                                int32_t *out);

/* Constant value v as int64s (int32/int64/uint8 data); false if not constant or too many. */
bool mdl__cv_const_ints(const cv_ctx *c, int32_t v, int64_t *vals, int32_t max, int32_t *count);
/* Constant value v as one float (any numeric dtype, one element). */
bool mdl__cv_const_scalar(const cv_ctx *c, int32_t v, double *out);

#endif
