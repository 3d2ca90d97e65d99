/*
 * Pruning and the choice of sparse weight storage (host only; what the user sees is documented
 * with mdl_prune_options in include/mdeploy/convert.h; issue #15).
 *
 *  - mdl__prune_check: the options alone (sparsities in [0, 1), the layer list's syntax), before
 *    anything is read or written.
 *  - mdl__prune_run: on the IR after the graph passes and before quantization: zeroes the 8x1
 *    blocks of smallest mean square of the prunable layers (globally or per layer).
 *  - mdl__prune_store: on the built graph: stores each prunable float weight block-sparse when
 *    its block density is below the threshold, and lists every prunable layer for the report.
 * A prunable layer: FullyConnected, MatMul with a constant 2-D B, or a Conv2D without groups,
 * whose float weight no other node reads.  Its weight W [N, K] (N outputs) is the tensor itself
 * (FullyConnected) or its transpose (MatMul's B [K, N], the convolution's [KH, KW, Cin, Cout]
 * seen as [KH*KW*Cin, Cout]).
 */
#ifndef MDL_PRUNE_HOST_H
#define MDL_PRUNE_HOST_H

#include "graph/convert_host.h"

mdl_status mdl__prune_check(const mdl_prune_options *o, mdl_error *err);
mdl_status mdl__prune_run(cv_ctx *c, const mdl_prune_options *o);
mdl_status mdl__prune_store(mdl_builder *b, const mdl_prune_options *o, mdl_convert_report *rep,
                            mdl_error *err);
/* Adds the "pruning" array to the report's JSON (rep->json; the quantization JSON, when there
   is one, gains it as a last member) when o prunes or a layer is stored sparse. */
mdl_status mdl__prune_report_json(mdl_convert_report *rep, const mdl_prune_options *o, mdl_error *err);
void mdl__prune_report_free(mdl_convert_report *rep);

#endif
