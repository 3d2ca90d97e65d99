/*
 * The converter's quantization pass (host only): turns the float-with-quantization form the ONNX
 * importer produces (io/onnx_lower_quant_host.c) into int8 operators.
 *
 *  - uint8 activations (QUANTIZE outputs) become int8 with zero point - 128 (exact).
 *  - DEQUANTIZE(x) -> op -> QUANTIZE(y) becomes one int8 op reading int8 x and writing y when the
 *    runtime has an int8 kernel for op that accepts these operands (its prepare is asked): weights
 *    that DequantizeLinear made from int8 constants are stored int8 (symmetric; a non-zero weight
 *    zero point is refused), int32 biases stay int32, fused activations are kept.  Ops that only
 *    move data (RESHAPE, TRANSPOSE, SLICE, GATHER, PAD, MAX_POOL2D, GLOBAL_MAX_POOL) are made
 *    int8 only when their input and output parameters are equal (then they are exact); CONCAT,
 *    like the arithmetic ops, requantizes.
 *  - DEQUANTIZE -> RESHAPE/TRANSPOSE becomes the move on int8 data -> DEQUANTIZE, and
 *    QUANTIZE(DEQUANTIZE(x)) with equal parameters is x (both exact), so layout changes the
 *    importer inserts do not split int8 regions.
 *  - Everything else stays float between its DEQUANTIZE and QUANTIZE nodes; dequantized
 *    constants still read by float ops are stored as integers behind a DEQUANTIZE node (the
 *    loader widens them at load), so the file keeps int8 weights either way.
 * Runs after mdl__cv_optimize; never calls the importer.
 */
#ifndef MDL_QDQ_HOST_H
#define MDL_QDQ_HOST_H

#include "graph/convert_host.h"

/* Ops that only move int8 values (exact with unchanged parameters), and ops whose input 1 is a
   weight (int8 symmetric) and input 2 an int32 bias.  Shared with post-training quantization. */
bool mdl__q8_moves_data(mdl_op op);
bool mdl__q8_weighted(mdl_op op);

/* Number of ops made int8 in *int8_ops (may be NULL). */
mdl_status mdl__qdq_pass(cv_ctx *c, int32_t *int8_ops);

#endif
