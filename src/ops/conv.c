/* Convolutions, NHWC: CONV2D and DEPTHWISE_CONV2D.
 *
 * CONV2D weights are HWIO, [KH,KW,Cin/group,Cout]: read as a [K, Cout] matrix (K = KH*KW*CG,
 * rows ordered like an im2col row), with a group's output channels a column block of it.
 *   - On x86 with AVX2/AVX-512, an ungrouped conv other than a stride-1 1x1 one runs a direct
 *     implicit-GEMM kernel (x86/conv_*.c) that reads the weights in place, over the input
 *     copied, zero-padded, into scratch a band at a time: no im2col copy (which matters most
 *     for first layers with 1..4 input channels) and nothing packed or copied at load, so a
 *     model's conv weights stay in the mapped file (see direct_ok).
 *   - Otherwise im2col in tiles + GEMM per group (bias and activation in the GEMM epilogue; a
 *     1x1 conv without padding needs no im2col), with constant weights packed once at load for
 *     the SIMD GEMM (mdl__gemm_pack_kn).
 *   - One input channel per group (a depthwise conv written as a grouped conv): the depthwise
 *     loop, whose [KH,KW,Cout] weight layout HWIO already is.
 *
 * DEPTHWISE_CONV2D: direct, vectorized over channels (x86/dwconv_*.c for multiplier 1).
 *
 * The SIMD level is chosen per call from mdl__cpu_level() (x86/x86.h; cached, lowered by the
 * MDL_CPU_LEVEL environment variable), and packed data records the level it was made for, so
 * run never misreads it.  Scratch never depends on the CPU (ops.h): it is the larger of what
 * either path needs. */
#include "ops.h"
#include "sparse.h"

#include "graph/util.h"
#include "x86/conv_x86.h"

#include <string.h>

#ifdef MDL_HAVE_X86_SIMD
#include "x86/x86.h"
#endif

/* im2col tile budget in floats.  The tile size is part of the scratch the memory plan reserves,
   so it must not depend on the build (BLAS or not): a model planned on a host runs on firmware.
   A tile is at least CONV_MIN_ROWS rows so that a BLAS GEMM amortizes packing the weights. */
#define CONV_TILE_FLOATS ((int64_t)1 << 15)
#define CONV_MIN_ROWS 64

typedef mdl__conv_geom conv_geom;

typedef enum conv_path {
    CONV_PATH_1X1,       /* the input already is the GEMM's A operand */
    CONV_PATH_IM2COL,    /* gather receptive fields into scratch, then GEMM */
    CONV_PATH_DEPTHWISE, /* one input channel per group: direct depthwise loop */
} conv_path;

/* Output extent along one axis: floor((in + pads - dil*(k-1) - 1) / stride) + 1, or -1 when the
   dilated kernel does not fit in the padded input (or the arithmetic would overflow).  *padded:
   in + pads.  In ptrdiff_t (see mdl__conv_geom): on a 32-bit core the padded extent must fit it. */
static ptrdiff_t out_extent(ptrdiff_t in, ptrdiff_t pad0, ptrdiff_t pad1, ptrdiff_t k, ptrdiff_t dil,
                            ptrdiff_t stride, ptrdiff_t *padded) {
    ptrdiff_t span;
    if (__builtin_mul_overflow(dil, k - 1, &span) || __builtin_add_overflow(in, pad0, padded) ||
        __builtin_add_overflow(*padded, pad1, padded))
        return -1;
    ptrdiff_t room = *padded - span - 1; /* no overflow: *padded, span >= 0 */
    return room < 0 ? -1 : room / stride + 1;
}

static bool above_max_elements(int64_t n) { return n > MDL_MAX_ELEMENTS; }

mdl_status mdl__conv_geometry(const mdl__kctx *c, bool depthwise, size_t out_elem,
                              mdl__conv_geom *g) {
    const mdl__tensor *x = c->in[0], *w = c->in[1];
    const mdl__tensor *b = c->nin > 2 ? c->in[2] : NULL;
    const mdl_conv_options *o = &c->opt->conv;
    char s1[64], s2[64];
    if (x->rank != 4)
        return mdl__fail(c, MDL_SHAPE, "input %s must be 4-D NHWC",
                         mdl__dims_str(s1, sizeof s1, x->rank, x->dims));
    if (w->rank != 4)
        return mdl__fail(c, MDL_SHAPE, "weight %s must be 4-D %s",
                         mdl__dims_str(s1, sizeof s1, w->rank, w->dims),
                         depthwise ? "[1,KH,KW,Cout]" : "[KH,KW,Cin/group,Cout]");
    for (int i = 0; i < 4; i++)
        if ((i && x->dims[i] < 1) || w->dims[i] < 1 || x->dims[0] < 0)
            return mdl__fail(c, MDL_SHAPE, "input %s or weight %s has an empty dimension",
                             mdl__dims_str(s1, sizeof s1, x->rank, x->dims),
                             mdl__dims_str(s2, sizeof s2, w->rank, w->dims));
    if (o->stride[0] < 1 || o->stride[1] < 1 || o->dilation[0] < 1 || o->dilation[1] < 1)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "stride %dx%d and dilation %dx%d must be >= 1",
                         (int)o->stride[0], (int)o->stride[1], (int)o->dilation[0],
                         (int)o->dilation[1]);
    for (int i = 0; i < 4; i++)
        if (o->pad[i] < 0)
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "negative padding %d (top,left,bottom,right)",
                             (int)o->pad[i]);
    if ((unsigned)o->act.kind >= MDL_ACT_COUNT)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "unknown fused activation %d", (int)o->act.kind);
    memset(g, 0, sizeof *g);
    g->N = x->dims[0];
    g->H = x->dims[1];
    g->W = x->dims[2];
    g->C = x->dims[3];
    g->KH = w->dims[depthwise ? 1 : 0];
    g->KW = w->dims[depthwise ? 2 : 1];
    g->OC = w->dims[3];
    g->sh = o->stride[0];
    g->sw = o->stride[1];
    g->dh = o->dilation[0];
    g->dw = o->dilation[1];
    g->pt = o->pad[0];
    g->pl = o->pad[1];
    g->pb = o->pad[2];
    g->pr = o->pad[3];
    if (depthwise) {
        if (w->dims[0] != 1)
            return mdl__fail(c, MDL_SHAPE, "depthwise weight %s must have leading dim 1: [1,KH,KW,Cout]",
                             mdl__dims_str(s1, sizeof s1, w->rank, w->dims));
        if (g->OC % g->C)
            return mdl__fail(c, MDL_SHAPE,
                             "depthwise weight has %lld output channels, not a multiple of the "
                             "input's %lld channels ([1,KH,KW,Cout])",
                             (long long)g->OC, (long long)g->C);
        g->G = g->C;
    } else {
        if (o->group < 1)
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "group %d must be >= 1", (int)o->group);
        g->G = o->group;
        if (g->C % g->G)
            return mdl__fail(c, MDL_SHAPE, "input channels %lld not divisible by group %lld (groups "
                             "must divide the channels)", (long long)g->C, (long long)g->G);
        if (g->OC % g->G)
            return mdl__fail(c, MDL_SHAPE, "output channels %lld not divisible by group %lld "
                             "(groups must divide the channels)", (long long)g->OC, (long long)g->G);
        if (w->dims[2] != g->C / g->G)
            return mdl__fail(c, MDL_SHAPE,
                             "weight %s has %lld input channels, input %s has %lld / group %lld "
                             "= %lld (Cin/groups per filter)",
                             mdl__dims_str(s1, sizeof s1, w->rank, w->dims), (long long)w->dims[2],
                             mdl__dims_str(s2, sizeof s2, x->rank, x->dims), (long long)g->C,
                             (long long)g->G, (long long)(g->C / g->G));
    }
    g->CG = g->C / g->G;
    g->OG = g->OC / g->G;
    bool too_large = __builtin_mul_overflow(g->KH * g->KW, g->CG, &g->K) || above_max_elements(g->K);
    if (b && (b->rank != 1 || b->dims[0] != g->OC))
        return mdl__fail(c, MDL_SHAPE, "bias %s does not match %lld output channels",
                         mdl__dims_str(s1, sizeof s1, b->rank, b->dims), (long long)g->OC);
    ptrdiff_t hp = 0, wp = 0;
    g->OH = out_extent(g->H, g->pt, g->pb, g->KH, g->dh, g->sh, &hp);
    g->OW = out_extent(g->W, g->pl, g->pr, g->KW, g->dw, g->sw, &wp);
    if (g->OH < 1 || g->OW < 1)
        return mdl__fail(c, MDL_SHAPE,
                         "kernel %lldx%lld (dilation %lldx%lld) larger than the padded input "
                         "%lldx%lld",
                         (long long)g->KH, (long long)g->KW, (long long)g->dh, (long long)g->dw,
                         (long long)g->H + g->pt + g->pb, (long long)g->W + g->pl + g->pr);
    int64_t od[4] = {g->N, g->OH, g->OW, g->OC};
    if (!mdl__shape_size(4, od, out_elem, NULL, NULL) || too_large)
        return mdl__fail(c, MDL_SHAPE, "output %s is too large",
                         mdl__dims_str(s1, sizeof s1, 4, od));
    /* The kernels' products stay below the multiply-adds (N*OH*OW*OC*K) or the padded input
       (N*(H+pt+pb)*(W+pl+pr)*C): both must fit ptrdiff_t (a limit only on 32-bit cores; the
       output count fits it, mdl__shape_size). */
    ptrdiff_t macs, padded;
    if (__builtin_mul_overflow(g->N * g->OH * g->OW * g->OC, g->K, &macs) ||
        __builtin_mul_overflow(g->N ? g->N : 1, hp, &padded) ||
        __builtin_mul_overflow(padded, wp, &padded) || __builtin_mul_overflow(padded, g->C, &padded))
        return mdl__fail(c, MDL_UNSUPPORTED, "convolution too large for ptrdiff_t (%d bits)",
                         (int)(8 * sizeof(ptrdiff_t)));
    return MDL_OK;
}

/* Validates a float CONV2D / DEPTHWISE_CONV2D node and fills its geometry.  Called by prepare
   and again by run (cheap; cannot fail there since prepare accepted the node). */
static mdl_status conv_geometry(const mdl__kctx *c, bool depthwise, conv_geom *g) {
    const mdl__tensor *x = c->nin > 0 ? c->in[0] : NULL, *w = c->nin > 1 ? c->in[1] : NULL;
    const mdl__tensor *b = c->nin > 2 ? c->in[2] : NULL;
    if (c->nin < 2 || c->nin > 3 || c->nout != 1 || !x || !w)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects inputs X, W[, bias] and one output");
    if (x->dtype != MDL_DTYPE_FLOAT32 || w->dtype != MDL_DTYPE_FLOAT32 ||
        (b && b->dtype != MDL_DTYPE_FLOAT32))
        return mdl__fail(c, MDL_DTYPE, "float32 kernel got %s input, %s weight%s%s",
                         mdl_dtype_name(x->dtype), mdl_dtype_name(w->dtype),
                         b ? ", bias " : "", b ? mdl_dtype_name(b->dtype) : "");
    return mdl__conv_geometry(c, depthwise, sizeof(float), g);
}

static conv_path conv2d_path(const conv_geom *g) {
    if (g->G > 1 && g->CG == 1) return CONV_PATH_DEPTHWISE;
    if (g->KH == 1 && g->KW == 1 && !g->pt && !g->pl && !g->pb && !g->pr) return CONV_PATH_1X1;
    return CONV_PATH_IM2COL;
}

/* Output pixels per im2col tile. */
static int64_t conv_tile_rows(const conv_geom *g) {
    int64_t m = g->N * g->OH * g->OW, t = CONV_TILE_FLOATS / g->K;
    if (t < CONV_MIN_ROWS) t = CONV_MIN_ROWS;
    return t < m ? t : m;
}

static void write_output_shape(mdl__kctx *c, const conv_geom *g) {
    mdl__shape *s = &c->out_shape[0];
    s->dtype = MDL_DTYPE_FLOAT32;
    s->rank = 4;
    s->dims[0] = g->N;
    s->dims[1] = g->OH;
    s->dims[2] = g->OW;
    s->dims[3] = g->OC;
}

/* ---- row primitives ----------------------------------------------------------------------
   gcc -O2 (very cheap vectorizer cost model) vectorizes a loop only when no scalar remainder
   is needed, so the bodies are unrolled by 4 with a separate tail: the 4-wide body becomes one
   SSE/NEON operation. */

static inline void row_fma(float *restrict o, const float *restrict x, const float *restrict w,
                           int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        o[i] += x[i] * w[i];
        o[i + 1] += x[i + 1] * w[i + 1];
        o[i + 2] += x[i + 2] * w[i + 2];
        o[i + 3] += x[i + 3] * w[i + 3];
    }
    for (; i < n; i++) o[i] += x[i] * w[i];
}

static inline void row_axpy(float *restrict o, float a, const float *restrict w, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        o[i] += a * w[i];
        o[i + 1] += a * w[i + 1];
        o[i + 2] += a * w[i + 2];
        o[i + 3] += a * w[i + 3];
    }
    for (; i < n; i++) o[i] += a * w[i];
}

static inline void row_clamp(float *restrict o, int64_t n, float lo, float hi) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++) o[i + j] = mdl__clampf(o[i + j], lo, hi);
    for (; i < n; i++) o[i] = mdl__clampf(o[i], lo, hi);
}

/* The SIMD level for this call: 0 without x86 SIMD kernels in the build. */
static int conv_level(void) {
#ifdef MDL_HAVE_X86_SIMD
    return mdl__cpu_level();
#else
    return 0;
#endif
}

/* ---- direct depthwise ------------------------------------------------------------------ */

/* y = bias + sum over taps of x[ih, iw, c / mult] * w[kh, kw, c], then clamp.  w is [KH,KW,OC].
   Each output pixel's OC accumulators stay in L1 while the taps stream contiguous rows of the
   input and weight, so the inner loops vectorize over channels. */
static void depthwise_portable(const conv_geom *g, const float *x, const float *w,
                               const float *bias, float *y, float lo, float hi, int64_t oh0,
                               int64_t oh1) {
    const int64_t C = g->C, OC = g->OC, mult = g->OG;
    for (int64_t n = 0; n < g->N; n++) {
        const float *xn = x + n * g->H * g->W * C;
        for (int64_t oh = oh0; oh < oh1; oh++) {
            for (int64_t ow = 0; ow < g->OW; ow++) {
                float *o = y + ((n * g->OH + oh) * g->OW + ow) * OC;
                if (bias)
                    memcpy(o, bias, (size_t)OC * sizeof *o);
                else
                    memset(o, 0, (size_t)OC * sizeof *o);
                for (int64_t kh = 0; kh < g->KH; kh++) {
                    int64_t ih = oh * g->sh - g->pt + kh * g->dh;
                    if (ih < 0 || ih >= g->H) continue;
                    for (int64_t kw = 0; kw < g->KW; kw++) {
                        int64_t iw = ow * g->sw - g->pl + kw * g->dw;
                        if (iw < 0 || iw >= g->W) continue;
                        const float *xr = xn + (ih * g->W + iw) * C;
                        const float *wr = w + (kh * g->KW + kw) * OC;
                        if (mult == 1)
                            row_fma(o, xr, wr, C);
                        else
                            for (int64_t ci = 0; ci < C; ci++)
                                row_axpy(o + ci * mult, xr[ci], wr + ci * mult, mult);
                    }
                }
                row_clamp(o, OC, lo, hi);
            }
        }
    }
}

void mdl__dwconv_ref(const mdl__dw_args *a) {
    conv_geom g = {.N = a->N, .H = a->H, .W = a->W, .C = a->C, .OH = a->OH, .OW = a->OW,
                   .OC = a->C, .KH = a->KH, .KW = a->KW, .sh = a->sh, .sw = a->sw, .dh = a->dh,
                   .dw = a->dw, .pt = a->pt, .pl = a->pl, .G = a->C, .CG = 1, .OG = 1};
    depthwise_portable(&g, a->x, a->w, a->bias, a->y, a->lo, a->hi, a->oh0, mdl__dw_row_end(a));
}

/* w is [KH,KW,OC].  Output rows [oh0, oh1) of every image. */
static void depthwise_rows(const conv_geom *g, const float *x, const float *w, const float *bias,
                           float *y, float lo, float hi, int64_t oh0, int64_t oh1) {
    mdl__dw_args a = {x, w, bias, y, g->N, g->H, g->W, g->C, g->OH, g->OW, g->KH, g->KW,
                      g->sh, g->sw, g->dh, g->dw, g->pt, g->pl, lo, hi, oh0, oh1};
    int level = g->OG == 1 ? conv_level() : 0;
#ifdef MDL_HAVE_X86_SIMD
    if (level >= MDL_CPU_AVX512) {
        mdl__dwconv_avx512(&a);
        return;
    }
    if (level >= MDL_CPU_AVX2) {
        mdl__dwconv_avx2(&a);
        return;
    }
#endif
    (void)level;
    if (g->OG == 1)
        mdl__dwconv_ref(&a);
    else
        depthwise_portable(g, x, w, bias, y, lo, hi, oh0, oh1);
}

/* ---- parallel split -------------------------------------------------------------------------
   Convolutions split their output pixels: (image, band of output rows) tasks.  Every kernel here
   computes a pixel the same way wherever its band starts (the direct kernel's tiles run over
   consecutive pixels but keep one accumulator chain per pixel; the depthwise loops pick their
   fast path by column only; im2col tiles are the serial ones), so results match one thread. */

/* Below this many multiply-adds a convolution runs on one thread. */
#define CONV_PAR_MIN_MACS ((int64_t)1 << 17)
#define CONV_TASKS_PER_WORKER 6

/* Output rows per task: at most `band` (the serial band; 0: no limit), and small enough to give
   every worker a few tasks when the work is worth splitting. */
static int64_t task_rows(const mdl__kctx *c, const conv_geom *g, int64_t band, int64_t macs,
                         bool few) {
    int64_t rows = band > 0 && band < g->OH ? band : g->OH;
    int nw = mdl__par_workers(c->par);
    if (nw < 2 || macs < CONV_PAR_MIN_MACS) return rows;
    int64_t want = (int64_t)nw * (few ? 1 : CONV_TASKS_PER_WORKER);
    int64_t r = (g->N * g->OH + want - 1) / want;
    if (r < 1) r = 1;
    return r < rows ? r : rows;
}

typedef struct dw_job {
    const conv_geom *g;
    const float *x, *w, *bias;
    float *y;
    float lo, hi;
    int64_t per_image; /* tasks per image: bands of rows differing by at most one */
} dw_job;

static void dw_task(void *arg, int64_t t, int worker) {
    (void)worker;
    const dw_job *j = arg;
    conv_geom one = *j->g;
    int64_t n = t / j->per_image, oh0, oh1;
    mdl__par_part(t % j->per_image, j->per_image, one.OH, &oh0, &oh1);
    one.N = 1;
    depthwise_rows(&one, j->x + n * one.H * one.W * one.C, j->w, j->bias,
                   j->y + n * one.OH * one.OW * one.OC, j->lo, j->hi, oh0, oh1);
}

static void depthwise(const mdl__kctx *c, const conv_geom *g, const float *x, const float *w,
                      const float *bias, float *y, float lo, float hi) {
    int64_t macs = g->N * g->OH * g->OW * g->OC * g->KH * g->KW;
    int64_t rows = task_rows(c, g, 0, macs, false);
    if (rows >= g->OH && g->N <= 1) {
        depthwise_rows(g, x, w, bias, y, lo, hi, 0, g->OH);
        return;
    }
    dw_job j = {g, x, w, bias, y, lo, hi, (g->OH + rows - 1) / rows};
    mdl__par_for(c->par, g->N * j.per_image, dw_task, &j);
}

/* ---- CONV2D: im2col + GEMM --------------------------------------------------------------- */

/* Writes the receptive fields of output pixels [p0, p0 + m) for group gi as rows of A, each K
   floats ordered (kh, kw, c) like the weight's rows; taps in the padding are zero. */
static void im2col(const conv_geom *g, const float *x, int64_t p0, int64_t m, int64_t gi,
                   float *A) {
    const int64_t C = g->C, CG = g->CG, KW = g->KW, ohw = g->OH * g->OW;
    /* Without dilation or groups, the taps of one kernel row are adjacent input pixels: one
       contiguous run of KW * C floats, clipped at the borders. */
    const bool runs = g->dw == 1 && g->G == 1;
    int64_t n = p0 / ohw, oh = p0 % ohw / g->OW, ow = p0 % g->OW;
    for (int64_t r = 0; r < m; r++) {
        float *a = A + r * g->K;
        const float *xn = x + n * g->H * g->W * C + gi * CG;
        int64_t ih0 = oh * g->sh - g->pt, iw0 = ow * g->sw - g->pl;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            float *ak = a + kh * KW * CG;
            int64_t ih = ih0 + kh * g->dh;
            if (ih < 0 || ih >= g->H) {
                memset(ak, 0, (size_t)(KW * CG) * sizeof *ak);
                continue;
            }
            const float *xr = xn + ih * g->W * C;
            if (runs) {
                int64_t lo = iw0 < 0 ? -iw0 : 0, hi = g->W - iw0;
                if (lo > KW) lo = KW;
                if (hi > KW) hi = KW;
                if (hi < lo) hi = lo;
                memset(ak, 0, (size_t)(lo * C) * sizeof *ak);
                if (hi > lo)
                    memcpy(ak + lo * C, xr + (iw0 + lo) * C, (size_t)((hi - lo) * C) * sizeof *ak);
                memset(ak + hi * C, 0, (size_t)((KW - hi) * C) * sizeof *ak);
            } else {
                for (int64_t kw = 0; kw < KW; kw++) {
                    int64_t iw = iw0 + kw * g->dw;
                    if (iw < 0 || iw >= g->W)
                        memset(ak + kw * CG, 0, (size_t)CG * sizeof *ak);
                    else
                        memcpy(ak + kw * CG, xr + iw * C, (size_t)CG * sizeof *ak);
                }
            }
        }
        if (++ow == g->OW) {
            ow = 0;
            if (++oh == g->OH) {
                oh = 0;
                n++;
            }
        }
    }
}

/* ---- packed data ---------------------------------------------------------------------------
   Made once at load, behind a 64-byte header naming its kind and the SIMD level it was made for
   (so run never misreads it):
     PACK_DIRECT: the direct kernel's K int32 tap offsets (koff, conv_x86.h).  Its weights are
                  read in place, so this is all it needs, whatever the weights are.
     PACK_GEMM:   constant weights only: per group, mdl__gemm_pack_kn's panels of its [K, OG]
                  column block, each `stride` bytes (a 64-byte multiple).
   The depthwise loop reads its weights as they are. */
#define PACK_MAGIC 0x4B504D43u /* "CMPK" */
#define PACK_HEADER 64
enum { PACK_GEMM = 1, PACK_DIRECT };
typedef struct pack_header {
    uint32_t magic;
    int32_t kind, level, reserved;
    uint64_t stride;
} pack_header;
_Static_assert(sizeof(pack_header) <= PACK_HEADER, "pack header");

/* The direct path copies the input, zero-padded, into scratch, a band of rows at a time (the
   input itself when there is no padding).  The band gets the scratch the im2col path reserves
   anyway, but at least the rows of one output row. */
static bool padded(const conv_geom *g) { return g->pt || g->pl || g->pb || g->pr; }
static int64_t path_scratch_floats(const conv_geom *g) {
    /* only im2col needs scratch: a 1x1 conv reads its input, a depthwise one its weights */
    return conv2d_path(g) == CONV_PATH_IM2COL ? conv_tile_rows(g) * g->K : 0;
}
static int64_t band_floats(const conv_geom *g) {
    if (!padded(g)) return 0;
    int64_t one = ((g->KH - 1) * g->dh + 1) * (g->W + g->pl + g->pr) * g->C;
    int64_t t = path_scratch_floats(g);
    return t > one ? t : one;
}

/* Whether the direct kernel takes this conv: ungrouped, not a stride-1 1x1 conv (that is one
   plain [pixels, Cin] x [Cin, Cout] product, which the packed GEMM with its K blocking did as
   fast or faster in measurements, e.g. 112x112x16 -> 96: 0.39 ms vs 0.56 ms), and every tap
   offset of the padded image, ((KH-1) dh Wp + (KW-1) dw + 1) C at most, fits in int32.
   Measured on AVX-512: 3x3 convs 56x56x64 .. 7x7x512 1.0-1.2x the GEMM's speed, first layers
   with 1..3 input channels 3-10x (no im2col). */
static bool direct_ok(const conv_geom *g) {
    if (g->G != 1) return false;
    switch (conv2d_path(g)) {
    case CONV_PATH_DEPTHWISE: return false;
    case CONV_PATH_1X1:
        if (g->sh == 1 && g->sw == 1) return false;
        break;
    case CONV_PATH_IM2COL: break;
    }
    int64_t rows, span;
    return !__builtin_mul_overflow((g->KH - 1) * g->dh, g->W + g->pl + g->pr, &rows) &&
           !__builtin_mul_overflow(rows + (g->KW - 1) * g->dw + 1, g->C, &span) &&
           span <= INT32_MAX;
}

/* Bytes of packed data for this node at the current level (0: none); its kind, and for
   PACK_GEMM the stride per group. */
static size_t conv2d_packed_bytes(const mdl__kctx *c, const conv_geom *g, int *kind,
                                  size_t *stride) {
    *kind = 0;
    *stride = 0;
#ifdef MDL_HAVE_X86_SIMD
    if (conv_level() >= MDL_CPU_AVX2 && direct_ok(g)) {
        *kind = PACK_DIRECT;
        return PACK_HEADER + (size_t)g->K * sizeof(int32_t);
    }
#endif
    if (!c->in[1]->data || conv2d_path(g) == CONV_PATH_DEPTHWISE) return 0;
    size_t per = mdl__gemm_pack_bytes(g->OG, g->K);
    if (!per) return 0;
    *kind = PACK_GEMM;
    *stride = mdl__align_up(per, 64);
    return PACK_HEADER + *stride * (size_t)g->G;
}

static mdl_status conv2d_pack(mdl__kctx *c) {
    conv_geom g;
    if (conv_geometry(c, false, &g) != MDL_OK) return MDL_INTERNAL;
    int kind;
    size_t stride;
    if (!conv2d_packed_bytes(c, &g, &kind, &stride)) return MDL_OK;
    unsigned char *p = c->packed;
    pack_header h = {PACK_MAGIC, kind, conv_level(), 0, stride};
    memset(p, 0, PACK_HEADER);
    memcpy(p, &h, sizeof h);
    p += PACK_HEADER;
    if (kind == PACK_DIRECT) {
        int32_t *koff = (int32_t *)p;
        const int64_t Wp = g.W + g.pl + g.pr;
        for (int64_t kh = 0, k = 0; kh < g.KH; kh++)
            for (int64_t kw = 0; kw < g.KW; kw++)
                for (int64_t ci = 0; ci < g.C; ci++)
                    koff[k++] = (int32_t)((kh * g.dh * Wp + kw * g.dw) * g.C + ci);
    } else {
        for (int64_t gi = 0; gi < g.G; gi++)
            mdl__gemm_pack_kn(g.OG, g.K, (const float *)c->in_data[1] + gi * g.OG, g.OC,
                              p + (size_t)gi * stride);
    }
    return MDL_OK;
}

/* The node's packed data if it is of `kind` and was made at the current level, else NULL;
 *stride from its header. */
static const unsigned char *packed_as(const mdl__kctx *c, int kind, size_t *stride) {
    if (!c->packed) return NULL;
    pack_header h;
    memcpy(&h, c->packed, sizeof h);
    if (h.magic != PACK_MAGIC || h.kind != kind || h.level != conv_level()) return NULL;
    *stride = h.stride;
    return (const unsigned char *)c->packed + PACK_HEADER;
}

/* Group gi's panels, or NULL (the GEMM then reads the weights as they are). */
static const void *group_pack(const unsigned char *gp, size_t stride, int64_t gi) {
    return gp ? gp + (size_t)gi * stride : NULL;
}

static mdl_status conv2d_prepare(mdl__kctx *c) {
    conv_geom g;
    mdl_status st = conv_geometry(c, false, &g);
    if (st != MDL_OK) return st;
    write_output_shape(c, &g);
    const mdl__tensor *w = c->in[1];
    if (MDL__SPARSE && w->sparse) {
        /* block-sparse [KH, KW, Cin, Cout] as W [Cout, KH*KW*Cin]: the pixels (1x1 without
           padding) or their im2col rows times W^T, nothing packed */
        if (!w->sparse_transposed || g.G != 1)
            return mdl__fail(c, MDL_UNSUPPORTED, "block-sparse weight '%s' needs a convolution "
                             "without groups, stored transposed", w->name);
        if (conv2d_path(&g) == CONV_PATH_1X1) {
            c->scratch_bytes = mdl__spmm_kernel_scratch(g.sh == 1 && g.sw == 1 ? g.N * g.H * g.W : g.OW, g.C);
            return MDL_OK;
        }
        /* an im2col tile (64-byte rounded), then the product's scratch */
        int64_t tm = conv_tile_rows(&g);
        if ((uint64_t)(tm * g.K) > SIZE_MAX / 8)
            return mdl__fail(c, MDL_SHAPE, "scratch of %lld floats does not fit in memory", (long long)(tm * g.K));
        c->scratch_bytes = mdl__align_up((size_t)(tm * g.K) * sizeof(float), 64) + mdl__spmm_kernel_scratch(tm, g.K);
        return MDL_OK;
    }
    /* The direct path's band is reserved on any CPU (scratch must not depend on it). */
    int64_t floats = path_scratch_floats(&g);
    if (direct_ok(&g) && band_floats(&g) > floats) floats = band_floats(&g);
    /* size_t may be 32 bits on firmware */
    if ((uint64_t)floats > SIZE_MAX ||
        !mdl__mul_size((size_t)floats, sizeof(float), &c->scratch_bytes))
        return mdl__fail(c, MDL_SHAPE, "scratch of %lld floats does not fit in memory",
                         (long long)floats);
    int kind;
    size_t stride;
    c->packed_bytes = conv2d_packed_bytes(c, &g, &kind, &stride);
    return MDL_OK;
}

/* The direct kernel with the tap offsets packed at load, image by image and, with padding,
   band by band (each task pads its band into its worker's scratch). */
typedef struct direct_job {
    const mdl__kctx *c;
    const conv_geom *g;
    mdl__conv_direct_args a;
    int64_t per_image; /* tasks per image: even bands of rows (padded), else of pixels */
} direct_job;

static void direct_task(void *arg, int64_t t, int worker) {
    const direct_job *j = arg;
    const conv_geom *g = j->g;
    const int64_t Wp = g->W + g->pl + g->pr, C = g->C, span = (g->KH - 1) * g->dh + 1;
    const int64_t n = t / j->per_image, i = t % j->per_image;
    const float *xn = (const float *)j->c->in_data[0] + n * g->H * g->W * C;
    mdl__conv_direct_args a = j->a;
    int64_t oh0, oh1, q0, q1;
    if (padded(g)) { /* even bands of whole rows (each pads its rows into scratch) */
        mdl__par_part(i, j->per_image, g->OH, &oh0, &oh1);
        a.OH = oh1 - oh0;
    } else { /* even ranges of pixels, across row ends: no task gets a row more than another */
        mdl__par_part(i, j->per_image, g->OH * g->OW, &q0, &q1);
        oh0 = q0 / g->OW;
        a.OH = (q1 - 1) / g->OW + 1 - oh0;
        a.p0 = q0 - oh0 * g->OW;
        a.p1 = q1 - oh0 * g->OW;
    }
    a.y = (float *)j->c->out_data[0] + ((n * g->OH + oh0) * g->OW) * g->OC;
    if (padded(g)) {
        /* rows ih0 .. ih0 + rows - 1 of the zero-padded image */
        float *band = mdl__par_scratch(j->c, worker), *xp = band;
        const int64_t ih0 = oh0 * g->sh - g->pt, rows = (a.OH - 1) * g->sh + span;
        for (int64_t r = 0; r < rows; r++, xp += Wp * C) {
            int64_t ih = ih0 + r;
            if (ih < 0 || ih >= g->H) {
                memset(xp, 0, (size_t)(Wp * C) * sizeof(float));
                continue;
            }
            memset(xp, 0, (size_t)(g->pl * C) * sizeof(float));
            memcpy(xp + g->pl * C, xn + ih * g->W * C, (size_t)(g->W * C) * sizeof(float));
            memset(xp + (g->pl + g->W) * C, 0, (size_t)(g->pr * C) * sizeof(float));
        }
        a.xp = band;
    } else {
        a.xp = xn + oh0 * g->sh * g->W * C;
    }
#ifdef MDL_HAVE_X86_SIMD
    if (conv_level() >= MDL_CPU_AVX512)
        mdl__conv_direct_avx512(&a);
    else
        mdl__conv_direct_avx2(&a);
#endif
}

static void conv2d_direct(const mdl__kctx *c, const conv_geom *g, const int32_t *koff,
                          const float *bias, float lo, float hi) {
    const int64_t Wp = g->W + g->pl + g->pr, C = g->C, span = (g->KH - 1) * g->dh + 1;
    direct_job j = {.c = c, .g = g,
                    .a = {.Wp = Wp, .C = C, .koff = koff, .K = g->K, .w = c->in_data[1],
                          .bias = bias, .OW = g->OW, .OC = g->OC, .sh = g->sh, .sw = g->sw,
                          .lo = lo, .hi = hi}};
    /* output rows per band: its input rows (oh rows need (oh - 1) * sh + span) fill the band */
    int64_t band = g->OH;
    if (padded(g)) {
        band = (band_floats(g) / (Wp * C) - span) / g->sh + 1;
        if (band > g->OH) band = g->OH;
    }
    /* Each task streams all the weights: where they outweigh the pixels' input (late layers,
       e.g. 7x7x512 in ResNet-18: 9 MiB of weights), one task per worker, not several. */
    int64_t rows = task_rows(c, g, band, g->N * g->OH * g->OW * g->K * g->OC,
                             g->K * g->OC > g->N * g->OH * g->OW * g->K);
    /* Bands of rows whole (OH = 34 in 12 tasks of 3 leave one of 1 row: one worker got 18 rows
       of 34, 6% over half), split evenly instead: rows differ by at most one between padded
       bands, pixels by at most one between unpadded ranges (measured on the image CNN's 34x34
       and 15x15 layers at 2 threads: 8% over half the 1-thread time before). */
    j.per_image = (g->OH + rows - 1) / rows;
    mdl__par_for(c->par, g->N * j.per_image, direct_task, &j);
}

/* Strided 1x1 rows and im2col tiles, one task each (im2col in the worker's scratch); the
   GEMM inside a task runs on its worker alone. */
typedef struct gemm_conv_job {
    const mdl__kctx *c;
    const conv_geom *g;
    const unsigned char *gp;
    size_t stride;
    const float *bias;
    float lo, hi;
    int64_t tm; /* im2col: rows per tile */
} gemm_conv_job;

static void strided_1x1_task(void *arg, int64_t t, int worker) {
    (void)worker;
    const gemm_conv_job *j = arg;
    const conv_geom *g = j->g;
    const float *x = j->c->in_data[0], *w = j->c->in_data[1];
    const int64_t n = t / g->OH, oh = t % g->OH, OC = g->OC, OG = g->OG, CG = g->CG;
    const float *xr = x + ((n * g->H + oh * g->sh) * g->W) * g->C;
    float *yr = (float *)j->c->out_data[0] + ((n * g->OH + oh) * g->OW) * OC;
    for (int64_t gi = 0; gi < g->G; gi++)
        mdl__gemm_nn_packed(g->OW, OG, CG, xr + gi * CG, g->sw * g->C, w + gi * OG, OC,
                            group_pack(j->gp, j->stride, gi), j->bias ? j->bias + gi * OG : NULL,
                            yr + gi * OG, OC, j->lo, j->hi);
}

static void im2col_task(void *arg, int64_t t, int worker) {
    const gemm_conv_job *j = arg;
    const conv_geom *g = j->g;
    const float *x = j->c->in_data[0], *w = j->c->in_data[1];
    float *y = j->c->out_data[0], *A = mdl__par_scratch(j->c, worker);
    const int64_t M = g->N * g->OH * g->OW, p0 = t * j->tm, m = M - p0 < j->tm ? M - p0 : j->tm;
    const int64_t OC = g->OC, OG = g->OG, K = g->K;
    for (int64_t gi = 0; gi < g->G; gi++) {
        im2col(g, x, p0, m, gi, A);
        mdl__gemm_nn_packed(m, OG, K, A, K, w + gi * OG, OC, group_pack(j->gp, j->stride, gi),
                            j->bias ? j->bias + gi * OG : NULL, y + p0 * OC + gi * OG, OC, j->lo,
                            j->hi);
    }
}

/* A convolution with block-sparse weights (conv2d_prepare): 1x1 without padding: all pixels as
   one matrix, or with strides an output row's pixels (every sw-th input pixel) at a time, a task
   each; otherwise im2col tiles, a task each (the tile and the product's scratch in the worker's
   scratch). */
typedef struct sparse_rows_job {
    const mdl__kctx *c;
    const conv_geom *g;
    const mdl__bsr *w;
    const float *bias;
    float lo, hi;
    int64_t tm; /* im2col: rows per tile */
} sparse_rows_job;

static void sparse_im2col_task(void *arg, int64_t t, int worker) {
    const sparse_rows_job *j = arg;
    const conv_geom *g = j->g;
    float *A = mdl__par_scratch(j->c, worker);
    void *ss = mdl__spmm_scratch_align((char *)A + mdl__align_up((size_t)(j->tm * g->K) * sizeof(float), 64));
    const int64_t M = g->N * g->OH * g->OW, p0 = t * j->tm, m = M - p0 < j->tm ? M - p0 : j->tm;
    im2col(g, j->c->in_data[0], p0, m, 0, A);
    mdl__spmm(m, A, g->K, j->w, j->bias, (float *)j->c->out_data[0] + p0 * g->OC, g->OC, j->lo, j->hi, ss);
}

static void sparse_row_task(void *arg, int64_t t, int worker) {
    const sparse_rows_job *j = arg;
    const conv_geom *g = j->g;
    const int64_t n = t / g->OH, oh = t % g->OH;
    mdl__spmm(g->OW, (const float *)j->c->in_data[0] + ((n * g->H + oh * g->sh) * g->W) * g->C, g->sw * g->C,
              j->w, j->bias, (float *)j->c->out_data[0] + ((n * g->OH + oh) * g->OW) * g->OC, g->OC, j->lo,
              j->hi, mdl__spmm_scratch_align(mdl__par_scratch(j->c, worker)));
}

static void conv2d_sparse(const mdl__kctx *c, const conv_geom *g, const float *bias, float lo,
                          float hi) {
    const float *x = c->in_data[0];
    float *y = c->out_data[0];
    const mdl__bsr *w = c->in[1]->sparse;
    if (conv2d_path(g) != CONV_PATH_1X1) {
        const int64_t M = g->N * g->OH * g->OW;
        if (M == 0) return;
        sparse_rows_job j = {c, g, w, bias, lo, hi, conv_tile_rows(g)};
        mdl__par_for(M * w->nblocks * MDL_SPARSE_BN >= CONV_PAR_MIN_MACS ? c->par : NULL, (M + j.tm - 1) / j.tm,
                     sparse_im2col_task, &j);
        return;
    }
    if (g->sh == 1 && g->sw == 1) {
        mdl__spmm_par(c, g->N * g->H * g->W, x, g->C, w, bias, y, g->OC, lo, hi);
        return;
    }
    sparse_rows_job j = {c, g, w, bias, lo, hi, 0};
    mdl__par_for(g->N * g->OH * g->OW * w->nblocks * MDL_SPARSE_BN >= CONV_PAR_MIN_MACS ? c->par : NULL,
                 g->N * g->OH, sparse_row_task, &j);
}

static mdl_status conv2d_run(mdl__kctx *c) {
    conv_geom g;
    conv_geometry(c, false, &g);
    const float *x = c->in_data[0], *w = c->in_data[1];
    const float *bias = c->nin > 2 && c->in[2] ? c->in_data[2] : NULL;
    float *y = c->out_data[0], lo, hi;
    mdl__act_bounds(&c->opt->conv.act, &lo, &hi);
    const int64_t OC = g.OC, OG = g.OG, CG = g.CG, K = g.K;
    if (MDL__SPARSE && c->in[1]->sparse) {
        conv2d_sparse(c, &g, bias, lo, hi);
        return MDL_OK;
    }

    size_t stride = 0;
    const unsigned char *pk;
    if ((pk = packed_as(c, PACK_DIRECT, &stride))) {
        conv2d_direct(c, &g, (const int32_t *)pk, bias, lo, hi);
        return MDL_OK;
    }
    /* The GEMM paths: group gi's weights are the column block w + gi * OG of [K, OC], its
       panels at gp + gi * stride when packed. */
    const unsigned char *gp = packed_as(c, PACK_GEMM, &stride);
    switch (conv2d_path(&g)) {
    case CONV_PATH_DEPTHWISE:
        /* [KH,KW,1,Cout] is the depthwise loop's [KH,KW,Cout] */
        depthwise(c, &g, x, w, bias, y, lo, hi);
        break;
    case CONV_PATH_1X1:
        if (g.sh == 1 && g.sw == 1) {
            /* All N*H*W pixels form one [M, Cin] matrix; a group is a column block of it. */
            for (int64_t gi = 0; gi < g.G; gi++)
                mdl__gemm_nn_packed_par(c->par, g.N * g.H * g.W, OG, CG, x + gi * CG, g.C,
                                        w + gi * OG, OC, group_pack(gp, stride, gi),
                                        bias ? bias + gi * OG : NULL, y + gi * OG, OC, lo, hi);
        } else {
            /* Strided 1x1: the pixels an output row reads are every sw-th input pixel of every
               sh-th row, i.e. a matrix with leading dimension sw * Cin; one task per row. */
            gemm_conv_job j = {c, &g, gp, stride, bias, lo, hi, 0};
            mdl__par_for(g.N * g.OH * g.OW * K * OC >= CONV_PAR_MIN_MACS ? c->par : NULL,
                         g.N * g.OH, strided_1x1_task, &j);
        }
        break;
    case CONV_PATH_IM2COL: {
        const int64_t M = g.N * g.OH * g.OW;
        if (M == 0) break; /* an empty batch */
        gemm_conv_job j = {c, &g, gp, stride, bias, lo, hi, conv_tile_rows(&g)};
        mdl__par_for(M * K * OC >= CONV_PAR_MIN_MACS ? c->par : NULL, (M + j.tm - 1) / j.tm,
                     im2col_task, &j);
        break;
    }
    }
    return MDL_OK;
}

const mdl__kernel mdl__conv2d_f32 = {.prepare = conv2d_prepare, .run = conv2d_run,
                                     .pack = conv2d_pack,
                                     .flags = MDL__KERNEL_WORKER_SCRATCH | MDL__KERNEL_SPARSE_W};

/* ---- DEPTHWISE_CONV2D ------------------------------------------------------------------ */

static mdl_status depthwise_prepare(mdl__kctx *c) {
    conv_geom g;
    mdl_status st = conv_geometry(c, true, &g);
    if (st != MDL_OK) return st;
    write_output_shape(c, &g);
    return MDL_OK;
}

static mdl_status depthwise_run(mdl__kctx *c) {
    conv_geom g;
    conv_geometry(c, true, &g);
    float lo, hi;
    mdl__act_bounds(&c->opt->conv.act, &lo, &hi);
    /* The weight [1,KH,KW,Cout] already is the [KH,KW,Cout] layout the direct loop wants. */
    const float *bias = c->nin > 2 && c->in[2] ? c->in_data[2] : NULL;
    depthwise(c, &g, c->in_data[0], c->in_data[1], bias, c->out_data[0], lo, hi);
    return MDL_OK;
}

const mdl__kernel mdl__depthwise_conv2d_f32 = {.prepare = depthwise_prepare, .run = depthwise_run};
