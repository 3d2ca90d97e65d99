/* int8 pooling, NHWC: MAX_POOL2D, AVG_POOL2D, GLOBAL_MAX_POOL, GLOBAL_AVG_POOL.

   Max pools select one input value, so they require the output's parameters to equal the
   input's (TFLite's rule; anything else would need a requantization no model asks for).  Padding
   never wins and a window that misses the input entirely gives the zero point (real 0), as in
   the float kernel (pool.c).

   Average pools follow onnxruntime's QLinearAveragePool / QLinearGlobalAveragePool: the output
   may have its own scale and zero point.  Per window, int32 sum of (q - zx), then
   y = zy + round(sum * sx / (sy * count)) with count the window size (KH*KW with
   count_include_pad, else the cells inside the input) and the multiplier in Q31 fixed point
   (mdl__q8_scale: the sum shifted into the high multiply's headroom first, so the result is
   rounded once, to nearest with ties away from zero).
   The multipliers are computed in pack: one when every window has the same count, else one per
   possible count 1..KH*KW. */
#include "int8_elem.h"

#include "graph/util.h"
#include "x86/conv_x86.h"

#include <string.h>

#ifdef MDL_HAVE_X86_SIMD
#include "x86/int8_x86.h"
#include "x86/x86.h"
#endif

/* o[k] = max(o[k], x[k]) */
static void max_row(int8_t *o, const int8_t *x, int64_t n) {
#ifdef MDL_HAVE_X86_SIMD
    if (mdl__cpu_level() >= MDL_CPU_AVX2) {
        mdl__max_q8_avx2(o, x, n);
        return;
    }
#endif
    for (int64_t k = 0; k < n; k++)
        o[k] = x[k] > o[k] ? x[k] : o[k];
}

/* Sums of up to this many (q - zx) terms fit an int32 (2^31 / 255). */
#define MAX_SUM_TERMS 8388607
/* Bound on the per-count multiplier table of a padded average pool without count_include_pad. */
#define MAX_COUNT_TABLE 65536

typedef struct pool_pack {
    int32_t ncount; /* multipliers: 1 (mult[0] for every window) or KH*KW (mult[count - 1]) */
    int32_t zx, zy;
    mdl__q8_scaler mult[];
} pool_pack;

static mdl_status check_io(mdl__kctx *c) {
    mdl_status st = mdl__q8_unary_io(c);
    if (st) return st;
    const mdl__tensor *x = c->in[0], *y = c->out[0];
    char s1[64];
    if (x->rank != 4)
        return mdl__fail(c, MDL_SHAPE, "input %s must be 4-D NHWC",
                         mdl__dims_str(s1, sizeof s1, x->rank, x->dims));
    if (x->dims[0] < 0 || x->dims[1] < 1 || x->dims[2] < 1 || x->dims[3] < 1)
        return mdl__fail(c, MDL_SHAPE, "input %s has an empty dimension",
                         mdl__dims_str(s1, sizeof s1, x->rank, x->dims));
    bool is_max = c->op == MDL_OP_MAX_POOL2D || c->op == MDL_OP_GLOBAL_MAX_POOL;
    if (is_max && !mdl__quant_equal(x, y))
        return mdl__fail(c, MDL_UNSUPPORTED,
                         "output '%s' (scale %g, zero point %lld) must have the quantization of "
                         "input '%s' (scale %g, zero point %lld)",
                         mdl__q8_name(y), (double)y->scale[0], (long long)y->zero_point[0],
                         mdl__q8_name(x), (double)x->scale[0], (long long)x->zero_point[0]);
    return MDL_OK;
}

static void set_output(mdl__kctx *c, int64_t N, int64_t OH, int64_t OW, int64_t C) {
    mdl__shape *s = &c->out_shape[0];
    s->dtype = MDL_DTYPE_INT8;
    s->rank = 4;
    s->dims[0] = N;
    s->dims[1] = OH;
    s->dims[2] = OW;
    s->dims[3] = C;
}

/* Window geometry in the float kernel's argument record (x, y unused here). */
static mdl_status geometry(const mdl__kctx *c, mdl__pool_args *g) {
    const mdl__tensor *x = c->in[0];
    const mdl_pool_options *o = &c->opt->pool;
    char s1[64];
    if (o->kernel[0] < 1 || o->kernel[1] < 1)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "kernel %d x %d must be >= 1", (int)o->kernel[0],
                         (int)o->kernel[1]);
    if (o->stride[0] < 1 || o->stride[1] < 1)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "stride %d x %d must be >= 1", (int)o->stride[0],
                         (int)o->stride[1]);
    for (int i = 0; i < 4; i++)
        if (o->pad[i] < 0)
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "negative padding %d (top,left,bottom,right)",
                             (int)o->pad[i]);
    memset(g, 0, sizeof *g);
    g->N = x->dims[0];
    g->H = x->dims[1];
    g->W = x->dims[2];
    g->C = x->dims[3];
    g->KH = o->kernel[0];
    g->KW = o->kernel[1];
    g->sh = o->stride[0];
    g->sw = o->stride[1];
    g->pt = o->pad[0];
    g->pl = o->pad[1];
    g->is_max = c->op == MDL_OP_MAX_POOL2D;
    g->include_pad = o->count_include_pad;
    int64_t rh = g->H + g->pt + o->pad[2] - g->KH, rw = g->W + g->pl + o->pad[3] - g->KW;
    if (rh < 0 || rw < 0)
        return mdl__fail(c, MDL_SHAPE, "kernel %lldx%lld larger than the padded input %lldx%lld",
                         (long long)g->KH, (long long)g->KW, (long long)(rh + g->KH),
                         (long long)(rw + g->KW));
    g->OH = rh / g->sh + 1;
    g->OW = rw / g->sw + 1;
    int64_t od[4] = {g->N, g->OH, g->OW, g->C};
    if (!mdl__shape_size(4, od, 1, NULL, NULL))
        return mdl__fail(c, MDL_SHAPE, "output %s is too large",
                         mdl__dims_str(s1, sizeof s1, 4, od));
    return MDL_OK;
}

/* Multipliers needed by an average pool whose windows hold `full` cells (0: global). */
static int32_t count_table_size(const mdl__pool_args *g, const mdl_pool_options *o) {
    bool padded = o->pad[0] || o->pad[1] || o->pad[2] || o->pad[3];
    return (padded && !g->include_pad) ? (int32_t)(g->KH * g->KW) : 1;
}

static mdl_status pool_prepare(mdl__kctx *c) {
    mdl_status st = check_io(c);
    if (st) return st;
    mdl__pool_args g;
    if ((st = geometry(c, &g))) return st;
    set_output(c, g.N, g.OH, g.OW, g.C);
    if (g.is_max) return MDL_OK;
    if (g.KH * g.KW > MAX_SUM_TERMS)
        return mdl__fail(c, MDL_UNSUPPORTED, "kernel %lldx%lld sums too many int8 values",
                         (long long)g.KH, (long long)g.KW);
    int32_t nc = count_table_size(&g, &c->opt->pool);
    if (nc > MAX_COUNT_TABLE)
        return mdl__fail(c, MDL_UNSUPPORTED,
                         "padded kernel %lldx%lld without count_include_pad needs too many "
                         "multipliers",
                         (long long)g.KH, (long long)g.KW);
    c->packed_bytes = sizeof(pool_pack) + (size_t)nc * sizeof(mdl__q8_scaler);
    /* int32 sums of one output pixel's channels */
    if ((uint64_t)g.C > SIZE_MAX / sizeof(int32_t))
        return mdl__fail(c, MDL_SHAPE, "too many channels");
    c->scratch_bytes = (size_t)g.C * sizeof(int32_t);
    return MDL_OK;
}

/* Fills the multipliers sx / (sy * count) for count = first_count (ncount == 1) or 1..ncount. */
static mdl_status pack_counts(mdl__kctx *c, int32_t ncount, int64_t first_count) {
    const mdl__tensor *x = c->in[0], *y = c->out[0];
    pool_pack *p = c->packed;
    p->ncount = ncount;
    p->zx = (int32_t)x->zero_point[0];
    p->zy = (int32_t)y->zero_point[0];
    const double ratio = (double)x->scale[0] / (double)y->scale[0];
    for (int32_t i = 0; i < ncount; i++) {
        int64_t count = ncount == 1 ? first_count : i + 1;
        if (!mdl__q8_scaler_make(ratio / (double)count, 255 * count, &p->mult[i]))
            return mdl__fail(c, MDL_UNSUPPORTED,
                             "input scale %g / output scale %g (ratio %g) is out of the "
                             "fixed-point range",
                             (double)x->scale[0], (double)y->scale[0], ratio);
    }
    return MDL_OK;
}

static mdl_status avg_pool_pack(mdl__kctx *c) {
    mdl__pool_args g;
    mdl_status st = geometry(c, &g);
    if (st) return st;
    return pack_counts(c, count_table_size(&g, &c->opt->pool), g.KH * g.KW);
}

/* is_max is a constant in each caller (max_pool_run, avg_pool_run), so an image with only max
   pools links no averaging code. */
static inline __attribute__((always_inline)) mdl_status pool_run(mdl__kctx *c, const bool is_max) {
    mdl__pool_args g;
    geometry(c, &g);
    const int8_t *xd = c->in_data[0];
    int8_t *yd = c->out_data[0];
    const pool_pack *p = c->packed;
    if (!is_max && !p) return mdl__fail(c, MDL_INTERNAL, "run without packed multipliers");
    const int64_t C = g.C;
    int32_t *acc = c->scratch;
    const int8_t empty = (int8_t)(is_max ? c->out[0]->zero_point[0] : p->zy);
    for (int64_t n = 0; n < g.N; n++) {
        const int8_t *xn = xd + n * g.H * g.W * C;
        for (int64_t oh = 0; oh < g.OH; oh++)
            for (int64_t ow = 0; ow < g.OW; ow++) {
                int8_t *o = yd + ((n * g.OH + oh) * g.OW + ow) * C;
                int64_t w[4];
                float unused;
                if (!mdl__pool_window(&g, oh, ow, w, &unused)) {
                    memset(o, (unsigned char)empty, (size_t)C);
                    continue;
                }
                if (is_max) {
#ifdef MDL_HAVE_X86_SIMD
                    if (mdl__cpu_level() >= MDL_CPU_AVX2) {
                        mdl__max_window_q8_avx2(xn, g.W, C, w[0], w[1], w[2], w[3], o);
                        continue;
                    }
#endif
                    memset(o, 0x80, (size_t)C); /* -128 */
                    for (int64_t ih = w[0]; ih < w[1]; ih++)
                        for (int64_t iw = w[2]; iw < w[3]; iw++)
                            max_row(o, xn + (ih * g.W + iw) * C, C);
                    continue;
                }
                const int64_t cells = (w[1] - w[0]) * (w[3] - w[2]);
                for (int64_t k = 0; k < C; k++)
                    acc[k] = 0;
                for (int64_t ih = w[0]; ih < w[1]; ih++)
                    for (int64_t iw = w[2]; iw < w[3]; iw++) {
                        const int8_t *xr = xn + (ih * g.W + iw) * C;
                        for (int64_t k = 0; k < C; k++)
                            acc[k] += xr[k];
                    }
                /* sum(q - zx) = sum(q) - cells * zx */
                const int32_t off = (int32_t)cells * p->zx;
                const mdl__q8_scaler m = p->ncount == 1 ? p->mult[0] : p->mult[cells - 1];
                for (int64_t k = 0; k < C; k++)
                    o[k] = (int8_t)mdl__q8_scale(acc[k] - off, m, p->zy, -128, 127);
            }
    }
    return MDL_OK;
}

static mdl_status max_pool_run(mdl__kctx *c) { return pool_run(c, true); }
static mdl_status avg_pool_run(mdl__kctx *c) { return pool_run(c, false); }

const mdl__kernel mdl__max_pool2d_q8 = {.prepare = pool_prepare, .run = max_pool_run};
const mdl__kernel mdl__avg_pool2d_q8 = {
    .prepare = pool_prepare, .run = avg_pool_run, .pack = avg_pool_pack};

/* ---- global pools ---------------------------------------------------------------------- */

static mdl_status global_prepare(mdl__kctx *c) {
    mdl_status st = check_io(c);
    if (st) return st;
    const mdl__tensor *x = c->in[0];
    set_output(c, x->dims[0], 1, 1, x->dims[3]);
    if (c->op == MDL_OP_GLOBAL_MAX_POOL) return MDL_OK;
    if (x->dims[1] * x->dims[2] > MAX_SUM_TERMS)
        return mdl__fail(c, MDL_UNSUPPORTED, "%lldx%lld pixels sum too many int8 values",
                         (long long)x->dims[1], (long long)x->dims[2]);
    c->packed_bytes = sizeof(pool_pack) + sizeof(mdl__q8_scaler);
    if ((uint64_t)x->dims[3] > SIZE_MAX / sizeof(int32_t))
        return mdl__fail(c, MDL_SHAPE, "too many channels");
    c->scratch_bytes = (size_t)x->dims[3] * sizeof(int32_t);
    return MDL_OK;
}

static mdl_status global_avg_pack(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0];
    return pack_counts(c, 1, x->dims[1] * x->dims[2]);
}

static mdl_status global_avg_run(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0];
    const pool_pack *p = c->packed;
    if (!p) return mdl__fail(c, MDL_INTERNAL, "run without packed multipliers");
    const int64_t N = x->dims[0], HW = x->dims[1] * x->dims[2], C = x->dims[3];
    const int8_t *xd = c->in_data[0];
    int8_t *y = c->out_data[0];
    int32_t *acc = c->scratch;
    const int32_t off = (int32_t)HW * p->zx;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < C; k++)
            acc[k] = 0;
        for (int64_t i = 0; i < HW; i++) {
            const int8_t *xr = xd + (n * HW + i) * C;
            for (int64_t k = 0; k < C; k++)
                acc[k] += xr[k];
        }
        for (int64_t k = 0; k < C; k++)
            y[n * C + k] = (int8_t)mdl__q8_scale(acc[k] - off, p->mult[0], p->zy, -128, 127);
    }
    return MDL_OK;
}

static mdl_status global_max_run(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0];
    const int64_t N = x->dims[0], HW = x->dims[1] * x->dims[2], C = x->dims[3];
    const int8_t *xd = c->in_data[0];
    int8_t *y = c->out_data[0];
    for (int64_t n = 0; n < N; n++) {
        int8_t *o = y + n * C;
        memset(o, 0x80, (size_t)C);
        for (int64_t i = 0; i < HW; i++)
            max_row(o, xd + (n * HW + i) * C, C);
    }
    return MDL_OK;
}

const mdl__kernel mdl__global_avg_pool_q8 = {
    .prepare = global_prepare, .run = global_avg_run, .pack = global_avg_pack};
const mdl__kernel mdl__global_max_pool_q8 = {.prepare = global_prepare, .run = global_max_run};
