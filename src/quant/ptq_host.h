/*
 * Post-training quantization of the converter IR (host only; see include/mdeploy/convert.h for
 * what the user sees).
 *
 * After mdl__cv_optimize, on a float graph:
 *  1. calibrate: the graph is built in memory with every observed activation as an extra output,
 *     loaded through the public runtime API and run on the calibration rows; an observer per
 *     activation chooses its range (minmax / percentile / entropy).
 *  2. rewrite: the graph gets the form the ONNX importer gives a QDQ model (graph/convert_host.h):
 *     weights become dequantized constants (int8 symmetric per output channel + their integers),
 *     biases int32 with scale input x weight, and every activation an int8 op reads or writes
 *     goes through QUANTIZE -> DEQUANTIZE with the observed parameters.  The qdq pass
 *     (qdq_host.h) then makes each op int8 whose int8 kernel accepts the operands, exactly as for
 *     an imported QDQ model; leftover QUANTIZE -> DEQUANTIZE round trips between float ops are
 *     removed.  Embedding tables and LSTM/GRU weights become int8 per row behind a DEQUANTIZE
 *     that the loader widens (hybrid).
 *  3. measure: the quantized graph and the float graph run side by side on the eval rows
 *     (outputs, and per layer the activations, for SQNR).
 *  4. budget: each layer's impact is measured alone; the most harmful are kept float, greedily,
 *     until the budget holds.  The graph is restored from a snapshot between trials.
 * Never calls the ONNX importer.
 */
#ifndef MDL_PTQ_HOST_H
#define MDL_PTQ_HOST_H

#include "graph/convert_host.h"

/* What quantization decided, by name: every activation's parameters and the nodes kept float.
   A model with dynamic dims is lowered at two sizes (convert_dyn_host.c); the second lowering
   replays the first one's decisions instead of calibrating again, so both give the same graph. */
typedef struct mdl__ptq_plan {
    int32_t nact;
    char **act; /* tensor names */
    float *scale;
    int64_t *zp;
    int32_t nfloat;
    char **float_nodes;
} mdl__ptq_plan;

void mdl__ptq_plan_free(mdl__ptq_plan *plan);

/* Quantizes c in place as o asks; *report receives a new report (free with
   mdl_convert_report_free's helper mdl__quant_report_free); plan (may be NULL) receives the
   decisions.  With replay, applies those decisions instead (no data read, no report). */
mdl_status mdl__ptq_run(cv_ctx *c, const mdl_quantize_options *o, struct mdl_quant_report **report,
                        mdl__ptq_plan **plan, const mdl__ptq_plan *replay);

void mdl__quant_report_free(struct mdl_quant_report *r);

#endif
