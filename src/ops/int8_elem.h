/*
 * Shared checks and helpers of the int8 elementwise kernels (quantize.c, pool_int8.c,
 * binary_int8.c, activation_int8.c, concat_int8.c) and of the quantization checks of the shape
 * operators (shape.c, gather.c).  Internal; static inline only, except mdl__concat_shape.
 *
 * Activations are int8 per tensor (one scale and zero point, TFLite / onnxruntime QLinear*).
 * The output's parameters come from the declared output tensor, which these kernels require.
 */
#ifndef MDL_OPS_INT8_ELEM_H
#define MDL_OPS_INT8_ELEM_H

#include "ops.h"
#include "quant/quant.h"

static inline const char *mdl__q8_name(const mdl__tensor *t) { return t && t->name ? t->name : ""; }

/* An operand of an int8 kernel: present, int8, one scale and zero point, valid parameters.
   role names it in messages ("input", "input B", "output"). */
static inline mdl_status mdl__q8_operand(const mdl__kctx *c, const mdl__tensor *t,
                                         const char *role) {
    if (!t)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "%s must be present%s", role,
                         role[0] == 'o' ? " and declared with quantization parameters" : "");
    if (t->dtype != MDL_DTYPE_INT8)
        return mdl__fail(c, MDL_DTYPE, "int8 kernel: %s '%s' is %s", role, mdl__q8_name(t),
                         mdl_dtype_name(t->dtype));
    if (t->nquant != 1)
        return mdl__fail(c, MDL_UNSUPPORTED,
                         "%s '%s' needs per-tensor quantization parameters (has %d scales)", role,
                         mdl__q8_name(t), (int)t->nquant);
    return mdl__quant_check(t, c->err);
}

/* One-input, one-output int8 kernel prologue: checks input and declared output. */
static inline mdl_status mdl__q8_unary_io(const mdl__kctx *c) {
    if (c->nin != 1 || c->nout != 1)
        return mdl__fail(c, MDL_INVALID_ARGUMENT,
                         "expects one input and one output, got %d inputs and %d outputs", c->nin,
                         c->nout);
    mdl_status st = mdl__q8_operand(c, c->in[0], "input");
    if (st) return st;
    return mdl__q8_operand(c, c->out[0], "output");
}

/* mdl__requant for accumulators of any size: the multiplier's left shift would wrap an int32
   beyond 2^(31 - shift), but any such accumulator already saturates the 8-bit output
   (|acc * M| >= 2^30), so it is clamped to that bound first. */
static inline int32_t mdl__q8_requant(int32_t acc, mdl__qmul m, int32_t zero_point, int32_t lo,
                                      int32_t hi) {
    if (m.shift > 0) {
        const int32_t lim = (int32_t)(((int64_t)1 << (31 - m.shift)) - 1);
        acc = acc > lim ? lim : (acc < -lim ? -lim : acc);
    }
    return mdl__requant(acc, m, zero_point, lo, hi);
}

/* A real multiplier applied to accumulators known to stay within +-max_abs, with the
   accumulator shifted left by `pre` bits first so that mdl__qmul_apply's first rounding (the
   high multiply) keeps fractional bits: then only its final rounding matters and the result is
   the correctly rounded acc * real (ties away from zero) up to the multiplier's 31 bits.
   Without it a small accumulator and a multiplier below 1/2 round twice (2^-1 steps each), e.g.
   -763 * (1/3) gives -255 instead of -254. */
typedef struct mdl__q8_scaler {
    mdl__qmul m;
    int32_t pre;
} mdl__q8_scaler;

static inline bool mdl__q8_scaler_make(double real, int64_t max_abs, mdl__q8_scaler *out) {
    out->pre = 0;
    if (!mdl__qmul_from_real(real, &out->m)) return false;
    if (out->m.shift >= 0 || out->m.mult == 0) return true;
    int32_t head = 0; /* largest pre with max_abs << pre < 2^31 */
    while (head < 30 && (max_abs << (head + 1)) < ((int64_t)1 << 31))
        head++;
    int32_t pre = head < 31 + out->m.shift ? head : 31 + out->m.shift;
    out->pre = pre;
    out->m.shift -= pre;
    return true;
}

static inline int32_t mdl__q8_scale(int32_t acc, mdl__q8_scaler s, int32_t zero_point, int32_t lo,
                                    int32_t hi) {
    return mdl__q8_requant((int32_t)((uint32_t)acc << s.pre), s.m, zero_point, lo, hi);
}

/* Checks that a fused activation is known and its clip range is not empty/NaN. */
static inline mdl_status mdl__q8_check_act(const mdl__kctx *c, const mdl_fused_act *a) {
    if ((unsigned)a->kind >= MDL_ACT_COUNT)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "unknown fused activation %d", (int)a->kind);
    if (a->kind == MDL_ACT_CLIP && !(a->clip_min <= a->clip_max))
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "fused clip range [%g, %g] is empty or NaN",
                         (double)a->clip_min, (double)a->clip_max);
    return MDL_OK;
}

/* Quantized [lo, hi] of a fused activation on an int8 per-tensor output. */
static inline void mdl__q8_act_range(const mdl_fused_act *a, const mdl__tensor *y, int32_t *lo,
                                     int32_t *hi) {
    float rl, rh;
    mdl__act_bounds(a, &rl, &rh);
    mdl__quant_act_range(rl, rh, y->scale[0], (int32_t)y->zero_point[0], -128, 127, lo, hi);
}

/* True when two tensors carry the same quantization parameters (count, scales and zero points
   equal, and the same normalized axis when per axis); tensors without parameters are equal to
   each other only. */
static inline bool mdl__quant_equal(const mdl__tensor *a, const mdl__tensor *b) {
    if (a->nquant != b->nquant) return false;
    for (int32_t i = 0; i < a->nquant; i++)
        if (a->scale[i] != b->scale[i] || a->zero_point[i] != b->zero_point[i]) return false;
    if (a->nquant > 1) {
        int32_t aa, ab;
        if (!mdl__axis(a->quant_axis, a->rank, &aa) || !mdl__axis(b->quant_axis, b->rank, &ab))
            return false;
        if (aa != ab) return false;
    }
    return true;
}

/* Whether output axis ya carries input axis xa through the operator of c. */
typedef bool (*mdl__quant_axis_ok)(const mdl__kctx *c, const mdl__tensor *x, int32_t xa,
                                   const mdl__tensor *y, int32_t ya);

/* Data-movement operators (src/ops/shape.c): MDL_OK when x has no quantization parameters and y
   none (or y undeclared), or y's parameters equal x's (per-axis ones along the axis axis_ok
   accepts; NULL refuses per axis); MDL_UNSUPPORTED naming both tensors otherwise (an undeclared
   output of a quantized input included: its parameters could not be checked). */
mdl_status mdl__quant_same_check(const mdl__kctx *c, const mdl__tensor *x, const mdl__tensor *y,
                                 mdl__quant_axis_ok axis_ok);

/* Concat's shape inference and checks without any quantization check (src/ops/shape.c); the
   int8 requantizing concat shares it. */
mdl_status mdl__concat_shape(mdl__kctx *c);

#endif
