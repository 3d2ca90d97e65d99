/* Quantized Conv2D and DepthwiseConv2D (src/ops/conv_int8.c) against a naive oracle written from
 * the definition (NHWC, HWIO weights, groups, strides, dilations, asymmetric padding that adds
 * nothing, int64 sums of (x - zx) w, requantized in double: round(acc * sx sw / sy) + zy,
 * clamped to the fused activation's range): at most one step apart, nearly all equal.  Random
 * geometries incl. 1x1 (direct and strided), im2col over several tiles, grouped and depthwise
 * convs, extreme zero points and scales, every activation; every rejected operand.
 *
 * main() reruns the program at each lower MDL_CPU_LEVEL; the first run writes a digest of every
 * output it computed and the reruns must reproduce it bit for bit (AVX-512 VNNI, AVX2 and the
 * reference give identical results). */
#include "common/harness.h"
#include "common/sparse_pattern.h"

#include "ops/int8.h"
#include "ops/ops.h"
#include "ops/sparse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof a / sizeof a[0])

static int64_t rand_zp(void) {
    static const int64_t z[] = {-128, 127, 0};
    int64_t r = th_rand_int(0, 5);
    return r < 3 ? z[r] : th_rand_int(-128, 127);
}

typedef struct conv_case {
    bool dw; /* DEPTHWISE_CONV2D (G = C, OC = C * mult) */
    int64_t N, H, W, C, OC, KH, KW;
    int sh, sw, dh, dw_, pt, pl, pb, pr, group;
    bool per_channel, bias;
    mdl_activation act;
    double mult_scale;
    int sparse; /* 0: dense; 1 + P_*: W (as [OC, K]) in that pattern, stored block-sparse */
} conv_case;

static int64_t extent(int64_t in, int p0, int p1, int64_t k, int d, int s) {
    int64_t room = in + p0 + p1 - (int64_t)d * (k - 1) - 1;
    return room < 0 ? 0 : room / s + 1;
}

typedef struct agree {
    int64_t n, exact;
    int maxdiff;
} agree;

static void run_case(const conv_case *t, agree *ag) {
    const int64_t G = t->dw ? t->C : t->group, CG = t->C / G, OG = t->OC / G;
    const int64_t OH = extent(t->H, t->pt, t->pb, t->KH, t->dh, t->sh);
    const int64_t OW = extent(t->W, t->pl, t->pr, t->KW, t->dw_, t->sw);
    assert_true(OH > 0 && OW > 0);
    const int64_t nx = t->N * t->H * t->W * t->C, nw = t->KH * t->KW * CG * t->OC;
    int8_t *x = malloc((size_t)nx), *w = malloc((size_t)nw);
    for (int64_t i = 0; i < nx; i++)
        x[i] = (int8_t)th_rand_int(-128, 127);
    for (int64_t i = 0; i < nw; i++)
        w[i] = (int8_t)th_rand_int(-127, 127);
    /* block-sparse: W^T [OC, K] in 8x1 blocks over the output channels, as the converter
       stores a conv's weight (transposed) */
    const int64_t Kw = t->KH * t->KW * CG;
    mdl__bsr bsr;
    void *bmem = NULL;
    if (t->sparse) {
        th_sparse_pattern(w, 1, t->OC, Kw, 1, t->OC, t->sparse - 1);
        int8_t *wt = malloc((size_t)nw);
        for (int64_t k = 0; k < Kw; k++)
            for (int64_t oc = 0; oc < t->OC; oc++) wt[oc * Kw + k] = w[k * t->OC + oc];
        size_t bytes = mdl__bsr_bytes_s8(t->OC, mdl__bsr_count_s8(t->OC, Kw, wt, Kw));
        bmem = aligned_alloc(32, (bytes + 31) / 32 * 32);
        mdl__bsr_build_s8(t->OC, Kw, wt, Kw, bmem, &bsr);
        free(wt);
    }
    int32_t *b = malloc(sizeof(int32_t) * (size_t)t->OC);
    float sx = th_uniform(0.002f, 0.2f), *sw = malloc(sizeof(float) * (size_t)t->OC);
    float *sb = malloc(sizeof(float) * (size_t)t->OC);
    int64_t zx = rand_zp(), zy = rand_zp(), *zw = calloc((size_t)t->OC, sizeof(int64_t));
    int64_t *zb = calloc((size_t)t->OC, sizeof(int64_t));
    int nq = t->per_channel ? (int)t->OC : 1;
    for (int i = 0; i < nq; i++)
        sw[i] = th_uniform(0.001f, 0.03f) * (i % 5 == 2 ? 20.0f : 1.0f);
    for (int64_t i = 0; i < t->OC; i++) {
        b[i] = (int32_t)th_rand_int(-100000, 100000);
        sb[i] = sx * sw[t->per_channel ? i : 0];
    }
    const int64_t K = t->KH * t->KW * CG;
    float sy = (float)(sx * sw[0] * sqrt((double)K) * 5400.0 / 100.0 * t->mult_scale);

    int64_t wd[4] = {t->KH, t->KW, CG, t->OC};
    if (t->dw) wd[0] = 1, wd[1] = t->KH, wd[2] = t->KW, wd[3] = t->OC;
    th_tensor in[3] = {th_tensor_make(MDL_DTYPE_INT8, 4, (int64_t[]){t->N, t->H, t->W, t->C}, x),
                       th_tensor_make(MDL_DTYPE_INT8, 4, wd, w),
                       t->bias ? th_tensor_make(MDL_DTYPE_INT32, 1, (int64_t[]){t->OC}, b)
                               : th_tensor_absent()};
    in[1].constant = in[2].constant = true;
    if (t->sparse) in[1].sparse = &bsr, in[1].sparse_transposed = true;
    th_tensor_quant(&in[0], 1, &sx, &zx, 0);
    th_tensor_quant(&in[1], nq, sw, zw, 3);
    if (t->bias) th_tensor_quant(&in[2], nq, sb, zb, 0);
    th_tensor out = {.dtype = MDL_DTYPE_INT8, .rank = 4, .dims = {t->N, OH, OW, t->OC}};
    th_tensor_quant(&out, 1, &sy, &zy, 0);
    mdl_op op = t->dw ? MDL_OP_DEPTHWISE_CONV2D : MDL_OP_CONV2D;
    mdl_op_options o = mdl_op_options_default(op);
    o.conv.stride[0] = t->sh, o.conv.stride[1] = t->sw;
    o.conv.dilation[0] = t->dh, o.conv.dilation[1] = t->dw_;
    o.conv.pad[0] = t->pt, o.conv.pad[1] = t->pl, o.conv.pad[2] = t->pb, o.conv.pad[3] = t->pr;
    o.conv.group = t->dw ? 1 : t->group;
    o.conv.act.kind = t->act;
    o.conv.act.clip_min = -0.43f * sy * 100;
    o.conv.act.clip_max = 0.29f * sy * 100;
    mdl_error err = {0};
    mdl_status st = th_run_op(op, &o, 3, in, 1, &out, &err);
    if (st != MDL_OK) fail_msg("%s", err.msg);
    assert_int_equal(out.dtype, MDL_DTYPE_INT8);
    assert_int_equal(out.dims[1], OH);
    assert_int_equal(out.dims[2], OW);
    assert_int_equal(out.dims[3], t->OC);

    /* oracle: the activation's quantized range, then every output from its definition */
    double l = -INFINITY, h = INFINITY;
    if (t->act == MDL_ACT_RELU || t->act == MDL_ACT_RELU6) l = 0;
    if (t->act == MDL_ACT_RELU6) h = 6;
    if (t->act == MDL_ACT_CLIP) l = o.conv.act.clip_min, h = o.conv.act.clip_max;
    int lo = -128, hi = 127;
    if (l > -INFINITY) lo = (int)fmax(-128, fmin(127, (double)zy + nearbyint(l / sy)));
    if (h < INFINITY) hi = (int)fmin(127, fmax(-128, (double)zy + nearbyint(h / sy)));
    const int8_t *got = out.data;
    for (int64_t n = 0; n < t->N; n++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++)
                for (int64_t oc = 0; oc < t->OC; oc++) {
                    const int64_t g = oc / OG;
                    int64_t acc = t->bias ? b[oc] : 0;
                    for (int64_t kh = 0; kh < t->KH; kh++)
                        for (int64_t kw = 0; kw < t->KW; kw++)
                            for (int64_t ci = 0; ci < CG; ci++) {
                                int64_t ih = oh * t->sh - t->pt + kh * t->dh;
                                int64_t iw = ow * t->sw - t->pl + kw * t->dw_;
                                if (ih < 0 || ih >= t->H || iw < 0 || iw >= t->W) continue;
                                int64_t xv = x[((n * t->H + ih) * t->W + iw) * t->C + g * CG + ci];
                                int64_t wv = w[((kh * t->KW + kw) * CG + ci) * t->OC + oc];
                                acc += (xv - zx) * wv;
                            }
                    double mult = (double)sx * sw[t->per_channel ? oc : 0] / sy;
                    int want = (int)fmin(hi, fmax(lo, round((double)acc * mult) + (double)zy));
                    int8_t v = got[((n * OH + oh) * OW + ow) * t->OC + oc];
                    /* exactly the reference kernel's arithmetic: the int32 sum requantized by
                       mdl__requant with the multiplier of sx * sw / sy (every path, every CPU) */
                    mdl__qmul q;
                    assert_true(mdl__qmul_from_real(mult, &q));
                    int exact = mdl__requant((int32_t)acc, q, (int32_t)zy, lo, hi);
                    if (v != exact)
                        fail_msg("%s%s at [%lld,%lld,%lld,%lld]: %d, the reference's %d",
                                 t->dw ? "dw" : "conv", t->sparse ? " (sparse)" : "", (long long)n,
                                 (long long)oh, (long long)ow, (long long)oc, v, exact);
                    int d = abs(v - want);
                    if (d > 1)
                        fail_msg("%s at [%lld,%lld,%lld,%lld]: %d, oracle %d",
                                 t->dw ? "dw" : "conv", (long long)n, (long long)oh, (long long)ow,
                                 (long long)oc, v, want);
                    ag->exact += d == 0;
                    if (d > ag->maxdiff) ag->maxdiff = d;
                    ag->n++;
                }
    for (int i = 0; i < 3; i++)
        th_tensor_free(&in[i]);
    th_tensor_free(&out);
    free(x), free(w), free(b), free(sw), free(sb), free(zw), free(zb), free(bmem);
}

static void report(const agree *ag) {
    print_message("    %lld elements, %.3f%% equal to the oracle, max difference %d\n",
                  (long long)ag->n, 100.0 * (double)ag->exact / (double)(ag->n ? ag->n : 1),
                  ag->maxdiff);
    assert_true(ag->exact >= ag->n * 97 / 100);
}

static const double mults[] = {1.0, 1e-4, 1e2, 0.1, 4.0};

/* Named shapes: 1x1 direct, strided 1x1, padded 1x1, im2col over several tiles, first layer. */
static void test_conv_shapes(void **state) {
    (void)state;
    th_seed(91);
    static const conv_case cases[] = {
        {false, 1, 5, 7, 16, 33, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, true, MDL_ACT_NONE, 1, 0},
        {false, 2, 9, 8, 3, 17, 1, 1, 2, 3, 1, 1, 0, 0, 0, 0, 1, false, true, MDL_ACT_RELU, 1, 0},
        {false, 1, 4, 4, 5, 6, 1, 1, 1, 1, 1, 1, 1, 0, 2, 1, 1, true, false, MDL_ACT_RELU6, 1, 0},
        {false, 2, 14, 14, 32, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU, 1, 0},
        {false, 1, 23, 21, 3, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_CLIP, 1, 0},
        {false, 1, 7, 7, 64, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_NONE, 0.1, 0},
        {false, 1, 6, 6, 8, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, true, true, MDL_ACT_NONE, 1, 0},
        {false, 1, 6, 6, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 8, true, true, MDL_ACT_RELU, 1, 0},
        {true, 1, 9, 9, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU6, 1, 0},
        {true, 2, 8, 7, 5, 15, 3, 5, 2, 1, 1, 2, 2, 0, 1, 3, 1, true, false, MDL_ACT_CLIP, 1, 0},
        {false, 1, 1, 1, 300, 7, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, true, MDL_ACT_NONE, 1, 0},
        {true, 1, 6, 5, 100, 100, 3, 3, 1, 2, 2, 1, 2, 1, 0, 2, 1, true, true, MDL_ACT_NONE, 1, 0},
        {true, 2, 4, 4, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, false, true, MDL_ACT_RELU, 1, 0},
        {true, 1, 3, 3, 49, 49, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, 1, true, false, MDL_ACT_RELU6, 1, 0},
        /* output rows of 16+ pixels: taps inside read in place (KW * C a multiple of 4) or
           gathered without border logic (3 channels), the borders through im2col */
        {false, 1, 20, 37, 3, 32, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, true, MDL_ACT_RELU, 1, 0},
        {false, 2, 12, 40, 3, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_NONE, 1, 0},
        {false, 2, 10, 33, 4, 17, 3, 3, 1, 1, 2, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_NONE, 1, 0},
        {false, 1, 9, 45, 8, 40, 3, 3, 2, 2, 1, 1, 1, 1, 0, 1, 1, false, true, MDL_ACT_RELU6, 1, 0},
        {false, 1, 6, 40, 8, 16, 1, 3, 1, 1, 1, 1, 0, 1, 0, 1, 1, true, false, MDL_ACT_CLIP, 1, 0},
        {false, 1, 5, 18, 64, 33, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, true, MDL_ACT_NONE, 0.1, 0},
        /* depthwise by vpdpbusd (KH <= 4, stride 1 across): full channel blocks and a tail,
           rows inside and at the borders, KW 3 (weights in registers) and others */
        {true, 2, 7, 19, 40, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU6, 1, 0},
        {true, 1, 9, 11, 48, 48, 2, 3, 2, 1, 1, 2, 0, 2, 1, 1, 1, true, false, MDL_ACT_NONE, 0.1, 0},
        {true, 1, 8, 6, 17, 17, 4, 1, 1, 1, 2, 1, 2, 0, 1, 0, 1, false, true, MDL_ACT_RELU, 1, 0},
        {true, 1, 6, 9, 16, 16, 3, 5, 1, 1, 1, 1, 0, 2, 0, 2, 1, true, true, MDL_ACT_NONE, 1e-4, 0},
        {true, 1, 5, 5, 33, 33, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, true, MDL_ACT_CLIP, 4.0, 0},
        {true, 1, 6, 9, 136, 136, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU6, 1, 0},
        {true, 1, 5, 4, 64, 64, 4, 2, 1, 1, 1, 1, 1, 0, 2, 1, 1, true, false, MDL_ACT_NONE, 0.1, 0},
        /* depthwise with quads built in registers (mdl__qdw_vnni_reg, any stride): 3x3 stride 2
           with symmetric and TF-style padding, several blocks and a tail; stride 3, dilation,
           KH 4 x KW 5, one kernel row; multipliers that take the general epilogue */
        {true, 1, 11, 13, 40, 40, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU6, 1, 0},
        {true, 2, 10, 12, 101, 101, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1, true, true, MDL_ACT_NONE, 0.1, 0},
        {true, 1, 9, 17, 21, 21, 3, 3, 2, 3, 1, 1, 1, 1, 1, 1, 1, false, true, MDL_ACT_CLIP, 1, 0},
        {true, 1, 8, 15, 33, 33, 4, 5, 2, 2, 1, 2, 2, 3, 1, 2, 1, true, false, MDL_ACT_RELU, 1e-4, 0},
        {true, 1, 7, 9, 16, 16, 1, 3, 1, 2, 1, 1, 0, 1, 0, 1, 1, true, true, MDL_ACT_NONE, 4.0, 0},
        {true, 1, 12, 12, 64, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU, 1e-4, 0},
        /* 1x1 over more than one AMX row block (256 rows) with a partial last tile: K with and
           without a tail of K % 64, panel pairs and a single panel */
        {false, 1, 19, 19, 72, 40, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, true, MDL_ACT_RELU6, 1, 0},
        {false, 2, 13, 11, 64, 16, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, false, true, MDL_ACT_NONE, 1e-4, 0},
        {false, 1, 17, 16, 128, 50, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, false, MDL_ACT_CLIP, 4.0, 0},
        /* K below one AMX tile's depth (only the K % 64 tiles): 24 and 36 */
        {false, 1, 9, 8, 24, 40, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, true, MDL_ACT_RELU6, 1, 0},
        {false, 2, 5, 7, 36, 20, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, false, true, MDL_ACT_NONE, 0.1, 0},
    };
    agree ag = {0};
    for (size_t i = 0; i < COUNT(cases); i++)
        run_case(&cases[i], &ag);
    report(&ag);
}

/* The paths that read padded bands instead of im2col (conv_int8.c): a kernel row of at most 16
   values (1 to 4 channels; x86) and block-sparse weights, over odd channel counts, strides,
   vertical dilation, asymmetric padding, several images, and inputs that take several bands. */
static void test_conv_bands(void **state) {
    (void)state;
    th_seed(93);
    static const conv_case cases[] = {
        /* short rows: the digits CNN's first layer, odd OC, 3 and 2 channels, KW 5 and 7 */
        {false, 1, 8, 8, 1, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU, 1, 0},
        {false, 2, 7, 9, 1, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, false, true, MDL_ACT_NONE, 1, 0},
        {false, 1, 11, 10, 3, 33, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU6, 1, 0},
        {false, 1, 9, 13, 2, 70, 3, 5, 1, 2, 2, 1, 0, 2, 2, 1, 1, true, false, MDL_ACT_CLIP, 0.1, 0},
        {false, 1, 6, 13, 1, 5, 1, 7, 1, 1, 1, 1, 0, 3, 0, 3, 1, true, true, MDL_ACT_NONE, 4.0, 0},
        {false, 1, 12, 12, 3, 24, 5, 5, 1, 3, 1, 1, 2, 2, 2, 2, 1, true, true, MDL_ACT_RELU, 1e-4, 0},
        {false, 1, 10, 8, 4, 8, 4, 4, 2, 1, 1, 1, 1, 2, 2, 1, 1, false, true, MDL_ACT_NONE, 1, 0},
        {false, 2, 5, 4, 1, 1, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, true, MDL_ACT_NONE, 1, 0},
        /* several bands (the padded input larger than the tile's bytes), output rows < 16 */
        {false, 1, 3000, 10, 1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU, 1, 0},
        /* rows of 16+ outputs: run_rows (measured faster there) */
        {false, 1, 20, 190, 1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU, 1, 0},
        /* block-sparse: the digits CNN's second layer in every pattern, then other shapes */
        {false, 1, 4, 4, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU, 1, 1 + P_EMPTY},
        {false, 1, 4, 4, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU, 1, 1 + P_BLOCKS_10},
        {false, 1, 4, 4, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU, 1, 1 + P_BLOCKS_50},
        {false, 1, 4, 4, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, false, true, MDL_ACT_NONE, 1, 1 + P_GROUP_GAPS},
        {false, 1, 4, 4, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, false, MDL_ACT_NONE, 1, 1 + P_ELEMENTS_80},
        {false, 1, 4, 4, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU6, 1, 1 + P_DENSE},
        {false, 2, 9, 7, 5, 17, 3, 3, 2, 1, 2, 2, 1, 0, 2, 1, 1, true, true, MDL_ACT_CLIP, 0.1, 1 + P_BLOCKS_50},
        {false, 1, 6, 20, 3, 40, 3, 3, 1, 2, 1, 1, 1, 1, 1, 1, 1, false, true, MDL_ACT_NONE, 1e-4, 1 + P_BLOCKS_10},
        {false, 1, 5, 5, 33, 9, 2, 3, 1, 1, 1, 3, 0, 2, 1, 2, 1, true, false, MDL_ACT_RELU, 4.0, 1 + P_GROUP_GAPS},
        {false, 1, 100, 100, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_NONE, 1, 1 + P_BLOCKS_50},
        /* kernel rows of 96, 120 and 128 bytes (two vpermt2b tables), 129 (too long for them) */
        {false, 1, 7, 9, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU, 1, 1 + P_BLOCKS_10},
        {false, 2, 6, 5, 40, 17, 3, 3, 2, 1, 1, 1, 1, 1, 0, 1, 1, false, true, MDL_ACT_NONE, 0.1, 1 + P_DENSE},
        {false, 1, 5, 6, 64, 24, 3, 2, 1, 1, 2, 1, 2, 0, 1, 1, 1, true, false, MDL_ACT_RELU6, 4.0, 1 + P_GROUP_GAPS},
        {false, 1, 5, 6, 43, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_NONE, 1, 1 + P_BLOCKS_50},
        /* a kernel row of exactly 64 bytes (one vpermb table), and 2 x 32 */
        {false, 1, 6, 7, 16, 24, 2, 4, 1, 1, 1, 1, 1, 2, 0, 1, 1, true, true, MDL_ACT_NONE, 1, 1 + P_BLOCKS_50},
        {false, 2, 5, 5, 32, 13, 3, 2, 1, 1, 1, 1, 1, 0, 1, 1, 1, false, true, MDL_ACT_RELU, 0.1, 1 + P_ELEMENTS_80},
    };
    agree ag = {0};
    for (size_t i = 0; i < COUNT(cases); i++)
        run_case(&cases[i], &ag);
    report(&ag);
}

/* Every path split over 2 and 3 workers (conv_int8.c's qconv_split: output rows, im2col tiles
   or 1x1 pixel blocks per task, each in its worker's scratch), against the oracle; shapes large
   enough to be split (tests/graph/test_threads checks bit-identity with one thread on models). */
static void test_conv_split(void **state) {
    (void)state;
    th_seed(94);
    static const conv_case cases[] = {
        /* run_rows: rows of 16+ outputs, 2 images, padded; a 150x150-style first layer */
        {false, 2, 30, 40, 8, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU, 1, 0},
        {false, 1, 60, 60, 3, 32, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, true, MDL_ACT_RELU, 1, 0},
        /* short rows on int16 bands (x86), a batch of 8x8 images */
        {false, 256, 8, 8, 1, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU, 1, 0},
        /* block-sparse: kernel rows of 48 bytes (VNNI+VBMI gather) and 192 (generic bands) */
        {false, 4, 12, 12, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU, 1, 1 + P_BLOCKS_50},
        {false, 2, 10, 10, 64, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, false, MDL_ACT_NONE, 0.1, 1 + P_GROUP_GAPS},
        /* im2col tiles (grouped), output rows < 16 (tiles), strided */
        {false, 4, 16, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, true, true, MDL_ACT_NONE, 1, 0},
        {false, 3, 12, 12, 32, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, false, true, MDL_ACT_RELU6, 1, 0},
        {false, 1, 41, 37, 16, 40, 5, 5, 2, 2, 1, 1, 2, 2, 2, 2, 1, true, true, MDL_ACT_CLIP, 1, 0},
        /* 1x1: pixel blocks with a partial last one; strided rows; grouped */
        {false, 2, 20, 21, 64, 64, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, true, MDL_ACT_RELU, 1, 0},
        {false, 6, 21, 20, 64, 64, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 1, true, true, MDL_ACT_NONE, 0.1, 0},
        {false, 1, 40, 40, 64, 64, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, true, false, MDL_ACT_NONE, 1, 0},
        /* fewer rows than tasks */
        {false, 1, 3, 200, 64, 64, 1, 3, 1, 1, 1, 1, 0, 1, 0, 1, 1, true, true, MDL_ACT_NONE, 1, 0},
        /* depthwise in bands of rows (qdw_run), >= 2M multiply-adds: 3x3 padded (registers kernel
           on VNNI), 5x5 stride 2 with TF-style padding, 4x3 (the vpdpbusd rows kernel), a
           multiplier of 2 (the general loops), 3 images (3 bands each), one row */
        {true, 1, 64, 61, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_RELU6, 1, 0},
        {true, 1, 81, 79, 64, 64, 5, 5, 2, 2, 1, 1, 1, 1, 2, 2, 1, true, true, MDL_ACT_NONE, 0.1, 0},
        {true, 1, 45, 47, 80, 80, 4, 3, 1, 1, 1, 1, 2, 1, 1, 1, 1, false, true, MDL_ACT_RELU, 1, 0},
        {true, 1, 64, 64, 32, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, MDL_ACT_NONE, 1, 0},
        {true, 3, 40, 40, 48, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, false, MDL_ACT_CLIP, 1, 0},
        {true, 1, 1, 4000, 64, 64, 1, 9, 1, 1, 1, 1, 0, 4, 0, 4, 1, true, true, MDL_ACT_NONE, 1, 0},
    };
    agree ag = {0};
    for (int w = 2; w <= 3; w++) {
        th_set_threads(w);
        for (size_t i = 0; i < COUNT(cases); i++)
            run_case(&cases[i], &ag);
    }
    th_set_threads(1);
    report(&ag);
}

static void test_conv_random(void **state) {
    (void)state;
    th_seed(92);
    agree ag = {0};
    for (int it = 0; it < 120; it++) {
        conv_case t;
        memset(&t, 0, sizeof t);
        t.dw = it % 4 == 3;
        static const int64_t cgs[] = {1, 2, 3, 5, 8, 17};
        static const int64_t ogs[] = {1, 3, 4, 16, 17, 33};
        t.group = t.dw ? 1 : (int)th_rand_int(1, 3);
        int64_t CG = t.dw ? 1 : cgs[th_rand_int(0, 5)], OG = ogs[th_rand_int(0, 5)];
        if (t.dw) {
            t.C = th_rand_int(1, 19);
            OG = th_rand_int(1, 3); /* channel multiplier */
            t.OC = t.C * OG;
        } else {
            t.C = CG * t.group;
            t.OC = OG * t.group;
        }
        t.N = th_rand_int(1, 2);
        t.H = th_rand_int(1, 11);
        t.W = it % 4 == 1 ? th_rand_int(16, 40) : th_rand_int(1, 11); /* rows of 16+ too */
        t.KH = th_rand_int(1, 3);
        t.KW = th_rand_int(1, 3);
        t.sh = (int)th_rand_int(1, 2), t.sw = (int)th_rand_int(1, 3);
        t.dh = (int)th_rand_int(1, 2), t.dw_ = (int)th_rand_int(1, 2);
        t.pt = (int)th_rand_int(0, 2), t.pl = (int)th_rand_int(0, 2);
        t.pb = (int)th_rand_int(0, 2), t.pr = (int)th_rand_int(0, 1);
        if (extent(t.H, t.pt, t.pb, t.KH, t.dh, t.sh) < 1 ||
            extent(t.W, t.pl, t.pr, t.KW, t.dw_, t.sw) < 1) {
            t.dh = t.dw_ = 1;
            t.pt = t.pl = t.pb = t.pr = 2;
        }
        t.per_channel = it % 3 != 0;
        t.bias = it % 5 != 1;
        t.act = (mdl_activation)(it % MDL_ACT_COUNT);
        t.mult_scale = mults[it % COUNT(mults)];
        if (!t.dw && t.group == 1 && it % 3 == 2) t.sparse = 1 + (it / 3) % P_COUNT;
        run_case(&t, &ag);
    }
    report(&ag);
}

/* ---- rejected operands --------------------------------------------------------------------- */

typedef struct setup {
    th_tensor in[3], out;
    float sx, sw[4], sb[4], sy;
    int64_t zx, zw[4], zb[4], zy;
} setup;

/* A valid 3x3 conv: X [1,5,5,2], W [3,3,2,4] per channel, bias [4]; DW: W [1,3,3,4]. */
static void valid(setup *s, bool dw) {
    memset(s, 0, sizeof *s);
    s->sx = 0.1f, s->sy = 0.3f, s->zx = 4, s->zy = -2;
    for (int i = 0; i < 4; i++) {
        s->sw[i] = 0.02f * (float)(i + 1);
        s->sb[i] = s->sx * s->sw[i];
    }
    s->in[0] = th_tensor_make(MDL_DTYPE_INT8, 4, (int64_t[]){1, 5, 5, 2}, NULL);
    s->in[1] = th_tensor_make(MDL_DTYPE_INT8, 4,
                              dw ? (int64_t[]){1, 3, 3, 4} : (int64_t[]){3, 3, 2, 4}, NULL);
    s->in[2] = th_tensor_make(MDL_DTYPE_INT32, 1, (int64_t[]){4}, NULL);
    s->in[1].constant = s->in[2].constant = true;
    th_tensor_quant(&s->in[0], 1, &s->sx, &s->zx, 0);
    th_tensor_quant(&s->in[1], 4, s->sw, s->zw, 3);
    th_tensor_quant(&s->in[2], 4, s->sb, s->zb, 0);
    s->out = (th_tensor){.dtype = MDL_DTYPE_INT8, .rank = 4, .dims = {1, 3, 3, 4}};
    th_tensor_quant(&s->out, 1, &s->sy, &s->zy, 0);
}

static void expect(setup *s, bool dw, const mdl_op_options *o, mdl_status want, const char *msg) {
    mdl_error err = {0};
    mdl_op op = dw ? MDL_OP_DEPTHWISE_CONV2D : MDL_OP_CONV2D;
    mdl_status st = th_run_op(op, o, 3, s->in, 1, &s->out, &err);
    if (st != want) fail_msg("%s: expected status %d, got %d (%s)", msg, want, st, err.msg);
    if (want != MDL_OK && !strstr(err.msg, msg))
        fail_msg("message \"%s\" does not mention \"%s\"", err.msg, msg);
    if (st == MDL_OK) th_tensor_free(&s->out);
    for (int i = 0; i < 3; i++)
        th_tensor_free(&s->in[i]);
}

static void test_conv_rejects(void **state) {
    (void)state;
    setup s;
    for (int dw = 0; dw < 2; dw++) {
        valid(&s, dw);
        expect(&s, dw, NULL, MDL_OK, "");
        valid(&s, dw);
        s.zw[1] = -5;
        expect(&s, dw, NULL, MDL_UNSUPPORTED,
               "weight 'in' is not symmetric: zero point -5 on channel 1");
        valid(&s, dw);
        s.sb[3] *= 1.01f;
        expect(&s, dw, NULL, MDL_UNSUPPORTED, "bias 'in' scale");
        valid(&s, dw);
        s.in[1].quant_axis = 0;
        s.in[1].nquant = 1;
        expect(&s, dw, NULL, MDL_UNSUPPORTED, "bias 'in' scale"); /* per-tensor w, per-channel b */
        valid(&s, dw);
        s.out.nquant = 0;
        expect(&s, dw, NULL, MDL_UNSUPPORTED, "output must be declared");
        valid(&s, dw);
        s.in[1].constant = false;
        expect(&s, dw, NULL, MDL_UNSUPPORTED, "must be a constant");
        valid(&s, dw);
        s.in[2].dtype = MDL_DTYPE_FLOAT32;
        s.in[2].nquant = 0;
        expect(&s, dw, NULL, MDL_DTYPE, "bias 'in' is float32");
        valid(&s, dw);
        s.in[0].dtype = MDL_DTYPE_UINT8;
        expect(&s, dw, NULL, MDL_UNSUPPORTED, "no kernel");
        valid(&s, dw);
        s.sy = 1e-15f;
        expect(&s, dw, NULL, MDL_UNSUPPORTED, "not representable");
    }
    /* per-channel on the wrong axis: 4 scales on axis 3 of [3,3,2,4] fine, on axis 0 a model
       with 3 channels there */
    valid(&s, false);
    s.in[1].dims[0] = 4;
    s.in[1].dims[1] = 1;
    s.in[1].quant_axis = 0;
    s.out.dims[1] = 2, s.out.dims[2] = 5;
    mdl_op_options o = mdl_op_options_default(MDL_OP_CONV2D);
    o.conv.pad[1] = o.conv.pad[3] = 0;
    expect(&s, false, &o, MDL_UNSUPPORTED, "per channel on axis 0");
    valid(&s, false);
    o = mdl_op_options_default(MDL_OP_CONV2D);
    o.conv.group = 2;
    expect(&s, false, &o, MDL_SHAPE, "groups");
    valid(&s, true);
    s.in[1].dims[0] = 2;
    expect(&s, true, NULL, MDL_SHAPE, "[1,KH,KW,Cout]");
    valid(&s, false);
    o = mdl_op_options_default(MDL_OP_CONV2D);
    o.conv.dilation[0] = 0;
    expect(&s, false, &o, MDL_INVALID_ARGUMENT, "dilation");
    valid(&s, false);
    o = mdl_op_options_default(MDL_OP_CONV2D);
    o.conv.act.kind = MDL_ACT_COUNT;
    expect(&s, false, &o, MDL_INVALID_ARGUMENT, "unknown fused activation");
    valid(&s, false);
    s.in[2].dims[0] = 3;
    s.in[2].nquant = 0;
    expect(&s, false, NULL, MDL_SHAPE, "bias [3]");
}

static void test_run_without_pack(void **state) {
    (void)state;
    int8_t x[4] = {1, 2, 3, 4}, w[4] = {1, 2, 3, 4}, y[4];
    float s = 0.1f;
    int64_t z = 0;
    for (int dw = 0; dw < 2; dw++) {
        mdl__tensor tx = {.name = "x",
                          .dtype = MDL_DTYPE_INT8,
                          .rank = 4,
                          .dims = {1, 2, 2, 1},
                          .count = 4,
                          .nquant = 1,
                          .scale = &s,
                          .zero_point = &z};
        mdl__tensor tw = {.name = "w",
                          .dtype = MDL_DTYPE_INT8,
                          .rank = 4,
                          .dims = {1, 1, 1, 4},
                          .count = 4,
                          .data = w,
                          .nquant = 1,
                          .scale = &s,
                          .zero_point = &z};
        mdl__tensor ty = {.name = "y",
                          .dtype = MDL_DTYPE_INT8,
                          .rank = 4,
                          .dims = {1, 2, 2, 4},
                          .count = 16,
                          .nquant = 1,
                          .scale = &s,
                          .zero_point = &z};
        mdl_op op = dw ? MDL_OP_DEPTHWISE_CONV2D : MDL_OP_CONV2D;
        mdl_op_options o = mdl_op_options_default(op);
        mdl_error err = {0};
        mdl__kctx c = {.op = op, .name = "c", .opt = &o, .nin = 2, .nout = 1, .err = &err};
        c.in[0] = &tx, c.in[1] = &tw, c.out[0] = &ty;
        c.in_data[0] = x, c.in_data[1] = w, c.out_data[0] = y;
        const mdl__kernel *k = mdl__kernel_find(op, MDL_DTYPE_INT8);
        assert_non_null(k);
        assert_int_equal(k->prepare(&c), MDL_OK);
        assert_true(c.packed_bytes > 0);
        assert_int_equal(k->run(&c), MDL_INTERNAL);
    }
}

/* A session may run a kernel at other input dims than those it was packed for (resize: the packed
   data is shared, prepare runs again): run must not take the packed cache of the old dims.  Packed
   at 1x8x8 (the short-row band path) and 2x8x8x16 (the sparse one), run at other batch and
   spatial sizes, every output exactly the reference's arithmetic. */
static void test_other_dims(void **state) {
    (void)state;
    th_seed(94);
    for (int sp = 0; sp < 2; sp++) {
        const int64_t C = sp ? 16 : 1, OC = sp ? 24 : 16, K = 9 * C;
        int8_t *w = malloc((size_t)(K * OC));
        for (int64_t i = 0; i < K * OC; i++) w[i] = (int8_t)th_rand_int(-127, 127);
        mdl__bsr bsr;
        void *bmem = NULL;
        if (sp) {
            th_sparse_pattern(w, 1, OC, K, 1, OC, P_BLOCKS_50);
            int8_t *wt = malloc((size_t)(K * OC));
            for (int64_t k = 0; k < K; k++)
                for (int64_t oc = 0; oc < OC; oc++) wt[oc * K + k] = w[k * OC + oc];
            size_t bytes = mdl__bsr_bytes_s8(OC, mdl__bsr_count_s8(OC, K, wt, K));
            bmem = aligned_alloc(32, (bytes + 31) / 32 * 32);
            mdl__bsr_build_s8(OC, K, wt, K, bmem, &bsr);
            free(wt);
        }
        float sx = 0.05f, sw = 0.01f, sy = 0.3f;
        int64_t zx = 7, zy = -3, z0 = 0;
        mdl__tensor tx = {.name = "x", .dtype = MDL_DTYPE_INT8, .rank = 4, .dims = {1, 8, 8, C},
                          .count = 64 * C, .nquant = 1, .scale = &sx, .zero_point = &zx};
        mdl__tensor tw = {.name = "w", .dtype = MDL_DTYPE_INT8, .rank = 4, .dims = {3, 3, C, OC},
                          .count = K * OC, .data = w, .nquant = 1, .scale = &sw, .zero_point = &z0,
                          .sparse = sp ? &bsr : NULL, .sparse_transposed = sp};
        mdl__tensor ty = {.name = "y", .dtype = MDL_DTYPE_INT8, .rank = 4, .dims = {1, 8, 8, OC},
                          .count = 64 * OC, .nquant = 1, .scale = &sy, .zero_point = &zy};
        mdl_op_options o = mdl_op_options_default(MDL_OP_CONV2D);
        o.conv.pad[0] = o.conv.pad[1] = o.conv.pad[2] = o.conv.pad[3] = 1;
        mdl_error err = {0};
        mdl__kctx c = {.op = MDL_OP_CONV2D, .name = "c", .opt = &o, .nin = 2, .nout = 1, .err = &err};
        c.in[0] = &tx, c.in[1] = &tw, c.out[0] = &ty;
        c.in_data[1] = w;
        const mdl__kernel *k = mdl__kernel_find(MDL_OP_CONV2D, MDL_DTYPE_INT8);
        assert_int_equal(k->prepare(&c), MDL_OK);
        const size_t packed_bytes = c.packed_bytes;
        void *packed = aligned_alloc(64, (packed_bytes + 63) / 64 * 64);
        c.packed = packed;
        assert_int_equal(k->pack(&c), MDL_OK);
        static const int64_t dims[][3] = {{1, 8, 8}, {2, 8, 8}, {1, 5, 11}, {3, 9, 6}};
        for (size_t d = 0; d < COUNT(dims); d++) {
            const int64_t N = dims[d][0], H = dims[d][1], W = dims[d][2];
            tx.dims[0] = N, tx.dims[1] = H, tx.dims[2] = W, tx.count = N * H * W * C;
            ty.dims[0] = N, ty.dims[1] = H, ty.dims[2] = W, ty.count = N * H * W * OC;
            assert_int_equal(k->prepare(&c), MDL_OK);
            assert_int_equal(c.packed_bytes, packed_bytes); /* so the session shares packed */
            c.packed = packed;
            int8_t *x = malloc((size_t)tx.count), *y = malloc((size_t)ty.count);
            void *scratch = aligned_alloc(64, (c.scratch_bytes + 63) / 64 * 64 + 64);
            for (int64_t i = 0; i < tx.count; i++) x[i] = (int8_t)th_rand_int(-128, 127);
            c.in_data[0] = x, c.out_data[0] = y, c.scratch = scratch;
            assert_int_equal(k->run(&c), MDL_OK);
            mdl__qmul q;
            assert_true(mdl__qmul_from_real((double)sx * sw / sy, &q));
            for (int64_t n = 0; n < N; n++)
                for (int64_t oh = 0; oh < H; oh++)
                    for (int64_t ow = 0; ow < W; ow++)
                        for (int64_t oc = 0; oc < OC; oc++) {
                            int64_t acc = 0;
                            for (int64_t kh = 0; kh < 3; kh++)
                                for (int64_t kw = 0; kw < 3; kw++)
                                    for (int64_t ci = 0; ci < C; ci++) {
                                        int64_t ih = oh - 1 + kh, iw = ow - 1 + kw;
                                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                        acc += (x[((n * H + ih) * W + iw) * C + ci] - zx) *
                                               w[((kh * 3 + kw) * C + ci) * OC + oc];
                                    }
                            int want = mdl__requant((int32_t)acc, q, (int32_t)zy, -128, 127);
                            int got = y[((n * H + oh) * W + ow) * OC + oc];
                            if (got != want)
                                fail_msg("%s, dims %lldx%lldx%lld at [%lld,%lld,%lld,%lld]: %d, the reference's %d",
                                         sp ? "sparse" : "dense", (long long)N, (long long)H, (long long)W,
                                         (long long)n, (long long)oh, (long long)ow, (long long)oc, got, want);
                        }
            free(x), free(y), free(scratch);
        }
        free(packed), free(w), free(bmem);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_shapes),
        cmocka_unit_test(test_conv_bands),
        cmocka_unit_test(test_conv_split),
        cmocka_unit_test(test_conv_random),
        cmocka_unit_test(test_conv_rejects),
        cmocka_unit_test(test_run_without_pack),
        cmocka_unit_test(test_other_dims),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed += th_same_outputs_at_lower_levels(argv[0]);
    return failed;
}
