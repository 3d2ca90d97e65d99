/* CONV2D and DEPTHWISE_CONV2D against a naive reference written from the ONNX Conv definition in
   its own NCHW layout: the test transposes the NHWC input and the runtime's weight layouts to
   ONNX's, convolves with plain loops (double accumulation), and transposes the result back.

   Every case runs twice: through th_run_op (no load-time packing: the portable im2col + GEMM
   path) and through run_packed below (prepare, pack, run, as a loaded model does: on x86 the
   direct SIMD kernel or the packed GEMM).  main() then runs the whole program again under
   MDL_CPU_LEVEL=1 and 0, so the AVX2 and portable kernels are checked on an AVX-512 machine
   too; the SIMD depthwise kernels are also compared with the portable one directly. */
#include "common/harness.h"

#include "ops/ops.h"
#include "ops/x86/conv_x86.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MDL_HAVE_X86_SIMD
#include "ops/x86/x86.h"
#endif

typedef struct conv_case {
    int64_t N, H, W, C, OC, KH, KW;
    int32_t sh, sw, dh, dw, pt, pl, pb, pr, group;
    bool bias, depthwise, constant_w;
    mdl_activation act;
    float clip_min, clip_max;
} conv_case;

static float *fmalloc(int64_t n) { return malloc(sizeof(float) * (size_t)(n > 0 ? n : 1)); }

static void *garbage(size_t bytes, size_t align) {
    size_t n = (bytes + align - 1) / align * align;
    void *p = aligned_alloc(align, n ? n : align);
    memset(p, 0xA5, n); /* kernels must not assume zeroes */
    return p;
}

/* Like th_run_op for one output, but with the load-time pack step a loaded model runs. */
static mdl_status run_packed(mdl_op op, const mdl_op_options *o, int nin, const th_tensor *in,
                             th_tensor *out, mdl_error *err) {
    mdl__tensor tin[3], tout;
    mdl__kctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.op = op;
    ctx.name = "test";
    ctx.opt = o;
    ctx.nin = nin;
    ctx.nout = 1;
    ctx.err = err;
    for (int i = 0; i < nin; i++) {
        if (in[i].rank < 0) continue;
        memset(&tin[i], 0, sizeof tin[i]);
        tin[i].name = "in";
        tin[i].dtype = in[i].dtype;
        tin[i].rank = in[i].rank;
        memcpy(tin[i].dims, in[i].dims, sizeof tin[i].dims);
        tin[i].count = in[i].count;
        tin[i].bytes = (size_t)in[i].count * sizeof(float);
        tin[i].data = in[i].constant ? in[i].data : NULL;
        ctx.in[i] = &tin[i];
        ctx.in_data[i] = in[i].data;
    }
    const mdl__kernel *k = mdl__kernel_find(op, MDL_DTYPE_FLOAT32);
    mdl_status st = k->prepare(&ctx);
    if (st != MDL_OK) return st;
    const mdl__shape *sh = &ctx.out_shape[0];
    *out = th_tensor_make(sh->dtype, sh->rank, sh->dims, NULL);
    memset(&tout, 0, sizeof tout);
    tout.dtype = sh->dtype;
    tout.rank = sh->rank;
    memcpy(tout.dims, sh->dims, sizeof tout.dims);
    tout.count = out->count;
    tout.bytes = (size_t)out->count * sizeof(float);
    ctx.out[0] = &tout;
    ctx.out_data[0] = out->data;
    void *packed = NULL, *scratch = NULL;
    if (ctx.packed_bytes && k->pack) {
        packed = ctx.packed = garbage(ctx.packed_bytes, 64);
        if ((st = k->pack(&ctx)) != MDL_OK) goto done;
    } else {
        ctx.packed = NULL;
    }
    if (ctx.scratch_bytes) scratch = ctx.scratch = garbage(ctx.scratch_bytes, 16);
    st = k->run(&ctx);
done:
    free(packed);
    free(scratch);
    return st;
}

/* ONNX Conv, NCHW: x [N,C,H,W], w [M, C/group, KH, KW], y [N,M,OH,OW];
   y[n,m,oh,ow] = b[m] + sum_{c,kh,kw} x[n, g*C/group + c, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw]
                  * w[m,c,kh,kw]  with g = m / (M/group) and zero outside the input. */
static void ref_conv_nchw(const conv_case *t, int64_t OH, int64_t OW, const float *x,
                          const float *w, const float *b, float *y) {
    int64_t cpg = t->C / t->group, mpg = t->OC / t->group;
    for (int64_t n = 0; n < t->N; n++)
        for (int64_t m = 0; m < t->OC; m++) {
            int64_t g = m / mpg;
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double s = b ? b[m] : 0.0;
                    for (int64_t c = 0; c < cpg; c++)
                        for (int64_t kh = 0; kh < t->KH; kh++)
                            for (int64_t kw = 0; kw < t->KW; kw++) {
                                int64_t ih = oh * t->sh - t->pt + kh * t->dh;
                                int64_t iw = ow * t->sw - t->pl + kw * t->dw;
                                if (ih < 0 || ih >= t->H || iw < 0 || iw >= t->W) continue;
                                s += (double)x[((n * t->C + g * cpg + c) * t->H + ih) * t->W + iw] *
                                     w[((m * cpg + c) * t->KH + kh) * t->KW + kw];
                            }
                    float v = (float)s;
                    switch (t->act) {
                    case MDL_ACT_RELU: v = v < 0 ? 0 : v; break;
                    case MDL_ACT_RELU6: v = v < 0 ? 0 : (v > 6 ? 6 : v); break;
                    case MDL_ACT_CLIP:
                        v = v < t->clip_min ? t->clip_min : (v > t->clip_max ? t->clip_max : v);
                        break;
                    default: break;
                    }
                    y[((n * t->OC + m) * OH + oh) * OW + ow] = v;
                }
        }
}

static void check_case(const conv_case *t) {
    int64_t N = t->N, H = t->H, W = t->W, C = t->C, OC = t->OC, KH = t->KH, KW = t->KW;
    int64_t OH = (H + t->pt + t->pb - (int64_t)t->dh * (KH - 1) - 1) / t->sh + 1;
    int64_t OW = (W + t->pl + t->pr - (int64_t)t->dw * (KW - 1) - 1) / t->sw + 1;
    int32_t group = t->depthwise ? (int32_t)C : t->group;
    int64_t cpg = C / group, wcount = OC * KH * KW * cpg;
    float *x = fmalloc(N * H * W * C), *w = fmalloc(wcount), *b = fmalloc(OC);
    th_fill_uniform(x, N * H * W * C, -2, 2);
    th_fill_uniform(w, wcount, -1, 1);
    th_fill_uniform(b, OC, -1, 1);

    /* The ONNX-layout copies the reference reads. */
    float *xo = fmalloc(N * C * H * W), *wo = fmalloc(wcount);
    float *yo = fmalloc(N * OC * OH * OW), *ref = fmalloc(N * OH * OW * OC);
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t x_ = 0; x_ < W; x_++)
                for (int64_t c = 0; c < C; c++)
                    xo[((n * C + c) * H + h) * W + x_] = x[((n * H + h) * W + x_) * C + c];
    for (int64_t m = 0; m < OC; m++)
        for (int64_t c = 0; c < cpg; c++)
            for (int64_t kh = 0; kh < KH; kh++)
                for (int64_t kw = 0; kw < KW; kw++)
                    wo[((m * cpg + c) * KH + kh) * KW + kw] =
                        t->depthwise ? w[(kh * KW + kw) * OC + m]             /* [1,KH,KW,Cout] */
                                     : w[((kh * KW + kw) * cpg + c) * OC + m]; /* [KH,KW,Cg,Cout] */
    conv_case tg = *t;
    tg.group = group;
    ref_conv_nchw(&tg, OH, OW, xo, wo, t->bias ? b : NULL, yo);
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < OC; m++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++)
                    ref[((n * OH + oh) * OW + ow) * OC + m] =
                        yo[((n * OC + m) * OH + oh) * OW + ow];

    th_tensor in[3] = {
        th_tensor_make(MDL_DTYPE_FLOAT32, 4, (int64_t[]){N, H, W, C}, x),
        t->depthwise ? th_tensor_make(MDL_DTYPE_FLOAT32, 4, (int64_t[]){1, KH, KW, OC}, w)
                     : th_tensor_make(MDL_DTYPE_FLOAT32, 4, (int64_t[]){KH, KW, cpg, OC}, w),
        t->bias ? th_tensor_make(MDL_DTYPE_FLOAT32, 1, (int64_t[]){OC}, b) : th_tensor_absent()};
    in[1].constant = t->constant_w;
    in[2].constant = true;
    mdl_op op = t->depthwise ? MDL_OP_DEPTHWISE_CONV2D : MDL_OP_CONV2D;
    mdl_op_options o = mdl_op_options_default(op);
    o.conv.stride[0] = t->sh;
    o.conv.stride[1] = t->sw;
    o.conv.dilation[0] = t->dh;
    o.conv.dilation[1] = t->dw;
    o.conv.pad[0] = t->pt;
    o.conv.pad[1] = t->pl;
    o.conv.pad[2] = t->pb;
    o.conv.pad[3] = t->pr;
    o.conv.group = t->depthwise ? 1 : t->group;
    o.conv.act.kind = t->act;
    o.conv.act.clip_min = t->clip_min;
    o.conv.act.clip_max = t->clip_max;
    for (int packed = 0; packed < 2; packed++) {
        th_tensor out = {0};
        mdl_error err = {0};
        mdl_status st = packed ? run_packed(op, &o, t->bias ? 3 : 2, in, &out, &err)
                               : th_run_op(op, &o, t->bias ? 3 : 2, in, 1, &out, &err);
        if (st != MDL_OK) fail_msg("status %d: %s", (int)st, err.msg);
        assert_int_equal(out.rank, 4);
        assert_int_equal(out.dims[0], N);
        assert_int_equal(out.dims[1], OH);
        assert_int_equal(out.dims[2], OW);
        assert_int_equal(out.dims[3], OC);
        /* float rounding grows with the depth of the sums (~sqrt(K)); a clamp at 6 leaves
           small outputs from pre-activations far larger, so the bound follows K */
        double e = th_max_rel_err(out.data, ref, N * OH * OW * OC);
        const double kdepth = (double)(KH * KW * (C / group));
        if (!(e <= 1e-5 * sqrt(kdepth > 256 ? kdepth / 256 : 1)))
            fail_msg("%s%s N%lld H%lld W%lld C%lld OC%lld K%lldx%lld s%dx%d d%dx%d p%d,%d,%d,%d "
                     "g%d bias%d act%d: relative error %g",
                     t->depthwise ? "depthwise" : "conv", packed ? " (packed)" : "", (long long)N,
                     (long long)H, (long long)W, (long long)C, (long long)OC, (long long)KH,
                     (long long)KW, t->sh, t->sw, t->dh, t->dw, t->pt, t->pl, t->pb, t->pr, group,
                     t->bias, (int)t->act, e);
        th_tensor_free(&out);
    }
    for (int i = 0; i < 3; i++) th_tensor_free(&in[i]);
    free(x); free(w); free(b); free(xo); free(wo); free(yo); free(ref);
}

/* Shorthand: conv(N,H,W,C,OC,KH,KW, sh,sw, dh,dw, pt,pl,pb,pr, group, bias, act). */
static conv_case mk(int64_t N, int64_t H, int64_t W, int64_t C, int64_t OC, int64_t KH,
                    int64_t KW, int32_t sh, int32_t sw, int32_t dh, int32_t dw, int32_t pt,
                    int32_t pl, int32_t pb, int32_t pr, int32_t group, bool bias,
                    mdl_activation act) {
    conv_case t = {N, H, W, C, OC, KH, KW, sh, sw, dh, dw, pt, pl, pb, pr, group,
                   bias, false, true, act, -0.5f, 0.75f};
    return t;
}

static void test_conv_pointwise(void **state) {
    (void)state;
    th_seed(11);
    const conv_case cases[] = {
        mk(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, false, MDL_ACT_NONE),
        mk(1, 7, 5, 3, 9, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, MDL_ACT_NONE),
        mk(2, 9, 11, 16, 24, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, MDL_ACT_RELU),
        mk(1, 9, 7, 6, 10, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, true, MDL_ACT_RELU6),
        mk(1, 9, 7, 5, 8, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 1, true, MDL_ACT_NONE),  /* strided */
        mk(2, 8, 9, 6, 4, 1, 1, 2, 3, 1, 1, 0, 0, 0, 0, 2, false, MDL_ACT_NONE), /* strided, g2 */
        mk(1, 5, 6, 4, 3, 1, 1, 1, 1, 1, 1, 1, 0, 2, 1, 1, true, MDL_ACT_NONE),  /* padded 1x1 */
        mk(1, 5, 6, 4, 3, 1, 1, 1, 1, 2, 2, 0, 0, 0, 0, 1, true, MDL_ACT_NONE),  /* dilation moot */
        mk(1, 28, 28, 32, 64, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, MDL_ACT_RELU), /* BLAS-sized */
        mk(0, 4, 4, 2, 3, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, MDL_ACT_NONE), /* empty batch */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
}

static void test_conv_spatial(void **state) {
    (void)state;
    th_seed(12);
    const conv_case cases[] = {
        mk(1, 5, 5, 1, 1, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1, false, MDL_ACT_NONE),
        mk(1, 7, 9, 3, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, MDL_ACT_NONE),
        mk(2, 11, 13, 3, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, true, MDL_ACT_RELU),   /* stride 2 */
        mk(1, 12, 10, 5, 7, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1, true, MDL_ACT_NONE),   /* dilation 2 */
        mk(1, 13, 11, 4, 6, 3, 5, 2, 1, 2, 1, 0, 2, 1, 3, 1, true, MDL_ACT_RELU6),  /* asym pads */
        mk(1, 9, 9, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, true, MDL_ACT_NONE),     /* group 2 */
        mk(2, 10, 7, 9, 6, 2, 3, 2, 1, 1, 2, 1, 0, 0, 2, 3, false, MDL_ACT_CLIP),   /* group 3 */
        mk(1, 8, 8, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6, true, MDL_ACT_RELU),     /* group=Cin */
        mk(1, 9, 7, 5, 10, 3, 3, 2, 2, 1, 1, 1, 1, 2, 0, 5, true, MDL_ACT_NONE), /* group=Cin, x2 */
        mk(1, 6, 5, 4, 8, 3, 2, 1, 2, 2, 1, 3, 0, 1, 2, 4, false, MDL_ACT_RELU6), /* dw,dil,asym */
        mk(1, 1, 1, 3, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, MDL_ACT_NONE),     /* 1x1 image */
        mk(1, 4, 4, 2, 3, 2, 2, 1, 1, 1, 1, 3, 3, 3, 3, 1, true, MDL_ACT_NONE), /* all-pad rows */
        mk(1, 5, 1, 3, 2, 5, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, MDL_ACT_NONE), /* kernel = input */
        mk(1, 224, 3, 3, 4, 7, 3, 2, 1, 1, 1, 3, 1, 3, 1, 1, true, MDL_ACT_NONE),   /* tall */
        /* more than one im2col tile, incl. a partial last one */
        mk(1, 33, 33, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, MDL_ACT_RELU),
        mk(2, 21, 17, 8, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, true, MDL_ACT_NONE),
        mk(1, 10, 10, 128, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, MDL_ACT_NONE), /* K > tile */
        mk(0, 5, 5, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, MDL_ACT_NONE), /* empty batch */
        mk(0, 5, 5, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, true, MDL_ACT_NONE),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
    conv_case t = cases[5];
    t.constant_w = false; /* weights computed at run time are fine */
    check_case(&t);
}

static void test_depthwise(void **state) {
    (void)state;
    th_seed(13);
    conv_case cases[] = {
        mk(1, 5, 5, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, false, MDL_ACT_NONE),
        mk(1, 9, 7, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, true, MDL_ACT_RELU6),
        mk(2, 11, 10, 5, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, true, MDL_ACT_RELU),
        mk(1, 12, 9, 7, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, true, MDL_ACT_NONE), /* mult 2 */
        mk(1, 10, 11, 3, 9, 5, 3, 2, 1, 2, 2, 0, 3, 2, 1, 0, true, MDL_ACT_CLIP), /* mult 3 */
        mk(1, 8, 8, 13, 13, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 0, false, MDL_ACT_NONE), /* dil 2 */
        mk(1, 6, 7, 6, 12, 5, 5, 1, 2, 1, 1, 2, 1, 3, 0, 0, true, MDL_ACT_RELU),  /* asym */
        mk(1, 1, 1, 4, 4, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, true, MDL_ACT_NONE),
        mk(1, 3, 3, 2, 4, 2, 2, 1, 1, 1, 1, 2, 2, 2, 2, 0, true, MDL_ACT_NONE),   /* all-pad taps */
        mk(0, 3, 3, 2, 4, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0, 0, true, MDL_ACT_NONE),   /* empty batch */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cases[i].depthwise = true;
        cases[i].constant_w = i % 2 == 0;
        check_case(&cases[i]);
    }
}

/* Random geometry: every option drawn independently, sizes 1..13 incl. odd ones. */
static void test_random(void **state) {
    (void)state;
    th_seed(14);
    const mdl_activation acts[] = {MDL_ACT_NONE, MDL_ACT_RELU, MDL_ACT_RELU6, MDL_ACT_CLIP};
    for (int it = 0; it < 300; it++) {
        conv_case t;
        memset(&t, 0, sizeof t);
        t.depthwise = it % 3 == 2;
        t.N = th_rand_int(1, 2);
        t.H = th_rand_int(1, 13);
        t.W = th_rand_int(1, 13);
        t.KH = th_rand_int(1, 4);
        t.KW = th_rand_int(1, 4);
        t.sh = (int32_t)th_rand_int(1, 3);
        t.sw = (int32_t)th_rand_int(1, 3);
        t.dh = (int32_t)th_rand_int(1, 2);
        t.dw = (int32_t)th_rand_int(1, 2);
        t.pt = (int32_t)th_rand_int(0, 2);
        t.pl = (int32_t)th_rand_int(0, 2);
        t.pb = (int32_t)th_rand_int(0, 2);
        t.pr = (int32_t)th_rand_int(0, 2);
        /* grow the input until the dilated kernel fits */
        while (t.H + t.pt + t.pb < t.dh * (t.KH - 1) + 1) t.H++;
        while (t.W + t.pl + t.pr < t.dw * (t.KW - 1) + 1) t.W++;
        if (t.depthwise) {
            t.C = th_rand_int(1, 9);
            t.OC = t.C * th_rand_int(1, 3);
        } else {
            static const int32_t groups[] = {1, 1, 2, 3};
            t.group = groups[th_rand_int(0, 3)];
            t.C = t.group * th_rand_int(1, 5);
            t.OC = t.group * th_rand_int(1, 5);
            if (th_rand_int(0, 4) == 0) t.group = (int32_t)t.C; /* depthwise as grouped conv */
            if (t.OC % t.group) t.OC = t.group * th_rand_int(1, 2);
        }
        t.bias = th_rand_int(0, 1);
        t.constant_w = th_rand_int(0, 1);
        t.act = acts[th_rand_int(0, 3)];
        t.clip_min = -0.5f;
        t.clip_max = 1.5f;
        check_case(&t);
    }
}

/* The shapes the direct kernel is tuned for: first layers with 1..4 input channels, channel
   counts around the 16 / 64 blocks, pixel counts around its tiles, and images larger than one
   band of the padded copy. */
static void test_direct_shapes(void **state) {
    (void)state;
    th_seed(15);
    const conv_case cases[] = {
        mk(1, 28, 28, 1, 32, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, MDL_ACT_RELU),  /* MNIST */
        mk(1, 30, 29, 3, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, true, MDL_ACT_RELU6), /* MobileNet */
        mk(1, 33, 31, 3, 64, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3, 1, true, MDL_ACT_RELU),  /* ResNet */
        mk(1, 17, 19, 4, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, false, MDL_ACT_NONE),
        mk(1, 13, 11, 2, 65, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, MDL_ACT_CLIP),
        mk(1, 7, 7, 33, 100, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, MDL_ACT_RELU),
        mk(1, 7, 7, 20, 130, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, MDL_ACT_NONE),
        mk(2, 14, 14, 24, 144, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, MDL_ACT_RELU6),
        mk(1, 9, 9, 16, 48, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 1, true, MDL_ACT_NONE), /* strided 1x1 */
        mk(1, 5, 23, 5, 5, 1, 5, 1, 2, 1, 3, 0, 4, 0, 3, 1, true, MDL_ACT_NONE),  /* wide, dil */
        mk(1, 1, 1, 7, 9, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, true, MDL_ACT_NONE),
        /* several bands: the padded copy holds ~13 of the 42 padded rows */
        mk(1, 40, 40, 64, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, MDL_ACT_RELU),
        mk(2, 41, 23, 64, 24, 3, 3, 2, 1, 1, 1, 1, 0, 2, 1, 1, true, MDL_ACT_NONE),
        mk(1, 20, 20, 200, 16, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1, false, MDL_ACT_NONE),
        /* weights over MDL_CONV_CHUNK_BYTES: taken in 4 and 11 chunks of rows, the clamp only
           after the last (a clamped partial sum would show), channels past a block masked */
        mk(1, 6, 5, 256, 200, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, MDL_ACT_RELU6),
        mk(1, 4, 4, 300, 520, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, false, MDL_ACT_RELU),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
}

/* The SIMD depthwise kernels against the portable one, on random geometry with channel counts
   around the vector widths. */
static void test_depthwise_variants(void **state) {
    (void)state;
#ifdef MDL_HAVE_X86_SIMD
    th_seed(16);
    const int level = mdl__cpu_level();
    for (int it = 0; it < 404; it++) {
        mdl__dw_args a;
        memset(&a, 0, sizeof a);
        a.N = th_rand_int(0, 2) ? 1 : 2;
        a.C = th_rand_int(1, 50);
        /* the last few: rows of ~150 KB, more than one band of the 3x3 kernel */
        const bool big = it >= 400;
        a.KH = it % 2 ? 3 : th_rand_int(1, 5);
        a.KW = it % 2 ? 3 : th_rand_int(1, 5);
        a.sh = th_rand_int(1, 2);
        a.sw = th_rand_int(1, 2);
        a.dh = it % 3 ? 1 : th_rand_int(1, 2);
        a.dw = it % 3 ? 1 : th_rand_int(1, 2);
        a.pt = th_rand_int(0, 2);
        a.pl = th_rand_int(0, 2);
        int64_t pb = th_rand_int(0, 2), pr = th_rand_int(0, 2);
        a.H = th_rand_int(1, 12);
        a.W = th_rand_int(1, 12);
        if (big) {
            a.KH = a.KW = 3;
            a.dh = a.dw = 1;
            a.H = 20;
            a.W = 70;
            a.C = 529 + it;
        }
        while (a.H + a.pt + pb < a.dh * (a.KH - 1) + 1) a.H++;
        while (a.W + a.pl + pr < a.dw * (a.KW - 1) + 1) a.W++;
        a.OH = (a.H + a.pt + pb - a.dh * (a.KH - 1) - 1) / a.sh + 1;
        a.OW = (a.W + a.pl + pr - a.dw * (a.KW - 1) - 1) / a.sw + 1;
        a.lo = it % 4 == 0 ? 0.0f : -__builtin_inff();
        a.hi = it % 4 == 0 ? 6.0f : __builtin_inff();
        int64_t nx = a.N * a.H * a.W * a.C, ny = a.N * a.OH * a.OW * a.C;
        float *x = fmalloc(nx), *w = fmalloc(a.KH * a.KW * a.C), *b = fmalloc(a.C);
        float *ref = fmalloc(ny), *got = fmalloc(ny);
        th_fill_uniform(x, nx, -2, 2);
        th_fill_uniform(w, a.KH * a.KW * a.C, -1, 1);
        th_fill_uniform(b, a.C, -1, 1);
        a.x = x;
        a.w = w;
        a.bias = it % 5 ? b : NULL;
        a.y = ref;
        mdl__dwconv_ref(&a);
        for (int lv = MDL_CPU_AVX2; lv <= level; lv++) {
            memset(got, 0xA5, sizeof(float) * (size_t)(ny > 0 ? ny : 1));
            a.y = got;
            if (lv == MDL_CPU_AVX2)
                mdl__dwconv_avx2(&a);
            else
                mdl__dwconv_avx512(&a);
            a.y = ref;
            double e = th_max_rel_err(got, ref, ny);
            if (!(e <= 1e-5))
                fail_msg("level %d C%lld H%lld W%lld k%lldx%lld s%lldx%lld d%lldx%lld: error %g",
                         lv, (long long)a.C, (long long)a.H, (long long)a.W, (long long)a.KH,
                         (long long)a.KW, (long long)a.sh, (long long)a.sw, (long long)a.dh,
                         (long long)a.dw, e);
        }
        free(x); free(w); free(b); free(ref); free(got);
    }
#else
    skip();
#endif
}

/* ---- rejection at prepare ---------------------------------------------------------------- */

static void expect_reject(mdl_op op, const mdl_op_options *o, const int64_t *xd, int xrank,
                          const int64_t *wd, int wrank, const int64_t *bd, mdl_dtype bdtype,
                          mdl_status want, const char *needle) {
    th_tensor in[3] = {th_tensor_make(MDL_DTYPE_FLOAT32, xrank, xd, NULL),
                       th_tensor_make(MDL_DTYPE_FLOAT32, wrank, wd, NULL),
                       bd ? th_tensor_make(bdtype, 1, bd, NULL) : th_tensor_absent()};
    in[1].constant = true;
    th_tensor out = {0};
    mdl_error err = {0};
    mdl_status st = th_run_op(op, o, bd ? 3 : 2, in, 1, &out, &err);
    if (st != want) fail_msg("want status %d, got %d (%s)", (int)want, (int)st, err.msg);
    if (!strstr(err.msg, "'test'") || !strstr(err.msg, needle))
        fail_msg("message \"%s\" lacks the node name or \"%s\"", err.msg, needle);
    for (int i = 0; i < 3; i++) th_tensor_free(&in[i]);
}

static void test_conv_rejects(void **state) {
    (void)state;
    const mdl_op CV = MDL_OP_CONV2D, DW = MDL_OP_DEPTHWISE_CONV2D;
    const int64_t x[4] = {1, 8, 8, 4}, w[4] = {3, 3, 4, 6}, b6[1] = {6}, b5[1] = {5};
    mdl_op_options d = mdl_op_options_default(CV), o;

    expect_reject(CV, &d, (int64_t[]){8, 8, 4}, 3, w, 4, NULL, 0, MDL_SHAPE, "4-D");
    expect_reject(CV, &d, x, 4, (int64_t[]){6, 9, 4}, 3, NULL, 0, MDL_SHAPE, "4-D");
    expect_reject(CV, &d, x, 4, (int64_t[]){3, 3, 3, 6}, 4, NULL, 0, MDL_SHAPE,
                  "3 input channels");
    o = d;
    o.conv.group = 2; /* weight has 4 channels per group, input 4 / 2 = 2 */
    expect_reject(CV, &o, x, 4, w, 4, NULL, 0, MDL_SHAPE, "4 input channels");
    o.conv.group = 3;
    expect_reject(CV, &o, x, 4, (int64_t[]){3, 3, 1, 6}, 4, NULL, 0, MDL_SHAPE,
                  "input channels 4 not divisible by group 3");
    o.conv.group = 4;
    expect_reject(CV, &o, x, 4, (int64_t[]){3, 3, 1, 6}, 4, NULL, 0, MDL_SHAPE,
                  "output channels 6 not divisible by group 4");
    o.conv.group = 0;
    expect_reject(CV, &o, x, 4, w, 4, NULL, 0, MDL_INVALID_ARGUMENT, "group 0");
    o.conv.group = -2;
    expect_reject(CV, &o, x, 4, w, 4, NULL, 0, MDL_INVALID_ARGUMENT, "group -2");
    o = d;
    o.conv.stride[1] = 0;
    expect_reject(CV, &o, x, 4, w, 4, NULL, 0, MDL_INVALID_ARGUMENT, "stride");
    o = d;
    o.conv.dilation[0] = -1;
    expect_reject(CV, &o, x, 4, w, 4, NULL, 0, MDL_INVALID_ARGUMENT, "dilation");
    o = d;
    o.conv.pad[2] = -1;
    expect_reject(CV, &o, x, 4, w, 4, NULL, 0, MDL_INVALID_ARGUMENT, "negative padding");
    expect_reject(CV, &d, x, 4, (int64_t[]){9, 3, 4, 6}, 4, NULL, 0, MDL_SHAPE,
                  "larger than the padded input");
    o = d;
    o.conv.dilation[1] = 4; /* 3 taps spanning 9 columns > 8 */
    expect_reject(CV, &o, x, 4, w, 4, NULL, 0, MDL_SHAPE, "larger than the padded input");
    o.conv.pad[1] = o.conv.pad[3] = 1; /* 10 padded columns: two windows of 9 */
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_FLOAT32, 4, x, NULL),
                       th_tensor_make(MDL_DTYPE_FLOAT32, 4, w, NULL)};
    th_tensor out = {0};
    assert_int_equal(th_run_op(CV, &o, 2, in, 1, &out, NULL), MDL_OK);
    assert_int_equal(out.dims[2], 2);
    th_tensor_free(&out);
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
    expect_reject(CV, &d, x, 4, w, 4, b5, MDL_DTYPE_FLOAT32, MDL_SHAPE, "bias [5]");
    expect_reject(CV, &d, x, 4, w, 4, b6, MDL_DTYPE_INT32, MDL_DTYPE, "bias int32");
    o = d;
    o.conv.act.kind = MDL_ACT_COUNT;
    expect_reject(CV, &o, x, 4, w, 4, NULL, 0, MDL_INVALID_ARGUMENT, "activation");

    expect_reject(DW, &d, x, 4, (int64_t[]){1, 3, 3, 6}, 4, NULL, 0, MDL_SHAPE,
                  "not a multiple");
    expect_reject(DW, &d, x, 4, (int64_t[]){2, 3, 3, 4}, 4, NULL, 0, MDL_SHAPE, "leading dim 1");
    expect_reject(DW, &d, x, 4, (int64_t[]){1, 3, 3, 8}, 4, b5, MDL_DTYPE_FLOAT32, MDL_SHAPE,
                  "8 output channels");
    expect_reject(DW, &d, x, 4, (int64_t[]){1, 3, 10, 4}, 4, NULL, 0, MDL_SHAPE,
                  "larger than the padded input");
    o = d;
    o.conv.stride[0] = 0;
    expect_reject(DW, &o, x, 4, (int64_t[]){1, 3, 3, 4}, 4, NULL, 0, MDL_INVALID_ARGUMENT,
                  "stride");

    /* wrong input count */
    th_tensor one = th_tensor_make(MDL_DTYPE_FLOAT32, 4, x, NULL);
    mdl_error err = {0};
    assert_int_equal(th_run_op(CV, &d, 1, &one, 1, &out, &err), MDL_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "Conv2D 'test'"));
    th_tensor_free(&one);
}

int main(int argc, char **argv) {
    (void)argc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_pointwise),
        cmocka_unit_test(test_conv_spatial),
        cmocka_unit_test(test_depthwise),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_direct_shapes),
        cmocka_unit_test(test_depthwise_variants),
        cmocka_unit_test(test_conv_rejects),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed += th_rerun_lower_cpu_levels(argv[0]);
    return failed;
}
