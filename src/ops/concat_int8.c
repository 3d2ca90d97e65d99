/* int8 CONCAT that requantizes (onnxruntime QLinearConcat): every input whose parameters differ
   from the output's goes through a 256-entry table built in pack,
       table_i[q] = quantize_out(scale_i * (q - zero_i))      (ONNX QuantizeLinear rounding),
   and inputs with the output's parameters are copied.  When every input has the output's
   parameters (or none has any) the byte-moving concat (shape.c) does it all, per-axis
   parameters included; otherwise every operand must be per tensor. */
#include "int8_elem.h"

#include <string.h>

typedef struct concat_pack {
    int32_t nin;
    int32_t table_of[MDL_MAX_NODE_IO]; /* index of input i's table, -1: plain copy */
    int8_t tables[][256];
} concat_pack;

extern const mdl__kernel mdl__concat;

/* Every input carries the output's parameters (no parameters anywhere when y is undeclared). */
static bool all_equal(const mdl__kctx *c) {
    const mdl__tensor *y = c->out[0];
    for (int i = 0; i < c->nin; i++)
        if (y ? !mdl__quant_equal(c->in[i], y) : c->in[i]->nquant != 0) return false;
    return true;
}

static bool needs_table(const mdl__tensor *x, const mdl__tensor *y) {
    return x->scale[0] != y->scale[0] || x->zero_point[0] != y->zero_point[0];
}

static mdl_status concat_prepare(mdl__kctx *c) {
    mdl_status st = mdl__concat_shape(c);
    if (st) return st;
    if (all_equal(c)) return mdl__concat.prepare(c);
    if ((st = mdl__q8_operand(c, c->out[0], "output"))) return st;
    int32_t ntab = 0;
    for (int i = 0; i < c->nin; i++) {
        const mdl__tensor *x = c->in[i]; /* int8 as input 0 (mdl__concat_shape) */
        if (x->nquant != 1)
            return mdl__fail(c, MDL_UNSUPPORTED,
                             "input %d '%s' needs per-tensor quantization parameters to be "
                             "requantized to output '%s' (has %d scales)",
                             i, mdl__q8_name(x), mdl__q8_name(c->out[0]), (int)x->nquant);
        if ((st = mdl__quant_check(x, c->err))) return st;
        ntab += needs_table(x, c->out[0]);
    }
    c->out_shape[0].dtype = MDL_DTYPE_INT8;
    c->packed_bytes = sizeof(concat_pack) + (size_t)ntab * 256;
    return MDL_OK;
}

static mdl_status concat_pack_fn(mdl__kctx *c) {
    concat_pack *p = c->packed;
    const mdl__tensor *y = c->out[0];
    const float sy = y->scale[0];
    const int32_t zy = (int32_t)y->zero_point[0];
    int32_t ntab = 0;
    p->nin = c->nin;
    for (int i = 0; i < c->nin; i++) {
        const mdl__tensor *x = c->in[i];
        if (!needs_table(x, y)) {
            p->table_of[i] = -1;
            continue;
        }
        p->table_of[i] = ntab;
        int8_t *t = p->tables[ntab++];
        const int32_t zx = (int32_t)x->zero_point[0];
        for (int32_t q = -128; q <= 127; q++)
            t[q + 128] =
                (int8_t)mdl__quantize_value((float)(q - zx) * x->scale[0], sy, zy, -128, 127);
    }
    return MDL_OK;
}

static mdl_status concat_run(mdl__kctx *c) {
    const concat_pack *p = c->packed;
    if (!p && all_equal(c)) return mdl__concat.run(c);
    if (!p || p->nin != c->nin)
        return mdl__fail(c, MDL_INTERNAL, "run without the packed requantization tables");
    const mdl__tensor *x0 = c->in[0];
    int32_t axis = 0;
    mdl__axis(c->opt->axis.axis, x0->rank, &axis);
    int64_t outer = 1, inner = 1;
    for (int32_t d = 0; d < axis; d++)
        outer *= x0->dims[d];
    for (int32_t d = axis + 1; d < x0->rank; d++)
        inner *= x0->dims[d];
    int8_t *dst = c->out_data[0];
    for (int64_t o = 0; o < outer; o++)
        for (int i = 0; i < c->nin; i++) {
            const int64_t chunk = c->in[i]->dims[axis] * inner;
            if (!chunk) continue; /* an empty input may have no buffer at all */
            const int8_t *src = (const int8_t *)c->in_data[i] + o * chunk;
            if (p->table_of[i] < 0) {
                memcpy(dst, src, (size_t)chunk);
            } else {
                const int8_t *t = p->tables[p->table_of[i]];
                for (int64_t k = 0; k < chunk; k++)
                    dst[k] = t[src[k] + 128];
            }
            dst += chunk;
        }
    return MDL_OK;
}

const mdl__kernel mdl__concat_q8 = {
    .prepare = concat_prepare, .run = concat_run, .pack = concat_pack_fn};
