/* Quantized (int8, TFLite scheme) convolutions, NHWC: CONV2D and DEPTHWISE_CONV2D.
 *
 * y = requant(bias + sum over taps (x - zx) * w); padding is the real value 0, i.e. x = zx,
 * which adds nothing.
 *
 * CONV2D (weights HWIO [KH,KW,Cin/group,Cout] = a [K, Cout] matrix, K = KH*KW*CG): per group a
 * product on the int8 GEMM core (int8.h) with the group's column block of the weights, packed
 * once at load.  A 1x1 conv without padding reads its input as the GEMM's A; anything else
 * gathers receptive fields into scratch (im2col, padding filled with zx, so the zero-point term
 * folded into the bias stays right) a tile of output pixels at a time.  A grouped conv with one
 * input channel per group runs the depthwise loops.
 *
 * DEPTHWISE_CONV2D (weights [1,KH,KW,Cout], Cout = Cin * multiplier): direct loops over the
 * taps that fall inside the input; multipliers and bias packed once per channel. */
#include "int8.h"

#include "graph/util.h"
#include "sparse.h"

#include <string.h>

#ifdef MDL_HAVE_X86_SIMD
#include "x86/int8_x86.h"
#include "x86/x86.h"
#endif

/* im2col tile budget in bytes (part of the stored plan's scratch: the same on every build). */
#define QCONV_TILE_BYTES ((int64_t)1 << 16)
#define QCONV_MIN_ROWS 16

typedef mdl__conv_geom qconv_geom;

static const char *tname(const mdl__tensor *t) { return t->name ? t->name : ""; }

/* Validates the node (shapes, options, quantization) and fills its geometry and layer
   quantization.  Called by prepare and pack, and by run with `weights` false (the per-channel
   checks of weight and bias are prepare's; nothing fails after prepare accepted the node). */
static mdl_status qconv_check(const mdl__kctx *c, bool depthwise, bool weights, qconv_geom *g,
                              mdl__qio *io) {
    const mdl__tensor *x = c->nin > 0 ? c->in[0] : NULL, *w = c->nin > 1 ? c->in[1] : NULL;
    const mdl__tensor *b = c->nin > 2 ? c->in[2] : NULL;
    const mdl_conv_options *o = &c->opt->conv;
    mdl_status st;
    if (c->nin < 2 || c->nin > 3 || c->nout != 1 || !x || !w)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects inputs X, W[, bias] and one output");
    if ((st = mdl__qcheck_io(c, x, &o->act, io)) != MDL_OK) return st;
    if ((st = mdl__conv_geometry(c, depthwise, 1, g)) != MDL_OK) return st;
    if (!weights) return MDL_OK;
    if ((st = mdl__qcheck_weight(c, w, 3)) != MDL_OK) return st;
    if (b && (st = mdl__qcheck_bias(c, b, io->sx, w)) != MDL_OK) return st;
    return MDL_OK;
}

static void write_output_shape(mdl__kctx *c, const qconv_geom *g) {
    mdl__shape *s = &c->out_shape[0];
    s->dtype = MDL_DTYPE_INT8;
    s->rank = 4;
    s->dims[0] = g->N;
    s->dims[1] = g->OH;
    s->dims[2] = g->OW;
    s->dims[3] = g->OC;
}

static bool depthwise_path(const qconv_geom *g) { return g->G > 1 && g->CG == 1; }
/* The depthwise shapes an earlier VNNI kernel computed with a row of scratch: channel
   multiplier 1, at most 4 kernel rows, horizontal stride 1.  Its kernel needs none now, but
   the scratch stays reserved: stored plans were made with it.  */
static bool dw4_path(const qconv_geom *g) { return g->OC == g->C && g->KH <= 4 && g->sw == 1; }

size_t mdl__qdw4_scratch_bytes(int64_t C, int64_t OW, int64_t KW, int64_t sw, int64_t dw) {
    uint64_t cb = (uint64_t)(C + 15) / 16, wp = (uint64_t)((OW - 1) * sw + (KW - 1) * dw + 1);
    if (cb > ((uint64_t)1 << 32) || wp > ((uint64_t)1 << 32) || (uint64_t)KW > ((uint64_t)1 << 20))
        return 0;
    uint64_t bytes = (wp + (uint64_t)KW + 1) * cb * 64;
    return bytes > SIZE_MAX ? 0 : (size_t)bytes;
}

static bool direct_1x1(const qconv_geom *g) {
    return g->KH == 1 && g->KW == 1 && !g->pt && !g->pl && !g->pb && !g->pr;
}

/* Group gi's weight matrix and requantization for the GEMM core (or, for the depthwise loops,
   all channels with the taps as K and no zero-point folding: those loops skip the padding). */
static void group_desc(const mdl__kctx *c, const qconv_geom *g, const mdl__qio *io, int64_t gi,
                       bool depthwise, mdl__qgemm_desc *d) {
    const mdl__tensor *w = c->in[1], *b = c->nin > 2 ? c->in[2] : NULL;
    const int64_t n0 = depthwise ? 0 : gi * g->OG;
    memset(d, 0, sizeof *d);
    d->N = depthwise ? g->OC : g->OG;
    d->K = depthwise ? g->KH * g->KW : g->K;
    d->w = (const int8_t *)w->data + n0;
    d->sn = 1;
    d->sk = g->OC;
    d->bias = b ? (const int32_t *)b->data + n0 : NULL;
    d->za = depthwise ? 0 : io->zx;
    d->a_scale = io->sx;
    d->y_scale = io->sy;
    d->w_scale = w->nquant > 1 ? w->scale + n0 : w->scale;
    d->nw_scale = w->nquant;
    d->zy = io->zy;
    d->lo = io->lo;
    d->hi = io->hi;
    d->sparse = MDL__SPARSE && !depthwise ? w->sparse : NULL; /* one group (prepare) */
}

#ifdef MDL_HAVE_X86_SIMD
/* Bytes the AVX-512 VNNI depthwise kernel packs after the record (0: none). */
static size_t dw_extra(const qconv_geom *g) {
    return mdl__qgemm_variant() == MDL_QGEMM_VNNI && g->OC == g->C
               ? mdl__qdw_pack_bytes(g->C, g->KH, g->KW) : 0;
}
#else
#define dw_extra(g) ((size_t)0)
#endif

/* Packed data: one GEMM-core record per group, each `stride` bytes (one record of all channels
   for the depthwise loops, and what dw_extra says after it). */
static size_t group_stride(const qconv_geom *g, bool depthwise, bool sparse) {
    if (depthwise) {
        size_t b = mdl__qgemm_pack_bytes(MDL_QGEMM_REF, g->OC, g->KH * g->KW);
        return b ? b + dw_extra(g) : 0;
    }
    return mdl__qgemm_pack_bytes(sparse ? MDL_QGEMM_REF : mdl__qgemm_variant(), g->OG, g->K);
}

static int64_t tile_rows(const qconv_geom *g) {
    int64_t m = g->N * g->OH * g->OW, t = QCONV_TILE_BYTES / g->K;
    if (t < QCONV_MIN_ROWS) t = QCONV_MIN_ROWS;
    return t < m ? t : m;
}

/* ---- padded bands: convolutions without im2col -------------------------------------------
   Two paths read a band of the input's rows copied with their padding (zx) into the im2col
   tile's scratch, where the taps of every output pixel sit at fixed offsets:
   - block-sparse weights: the sparse product reads the band directly, its blocks' columns
     replaced by their offsets in the band (computed per run, next to the band);
   - the same with a kernel row of at most 64 bytes on AVX-512 VNNI + VBMI: mdl__qsc_vnni
     gathers the blocks' inputs from the band (uint8, + 128);
   - a kernel row of at most MDL_QCS_MAX_RUN values (a first layer's 1 or 3 channels: the GEMM's
     K is too short for its panels to pay) in output rows too short for run_rows, on x86:
     mdl__qcs_* on the band widened to int16.
   All give the GEMM core's result bit for bit (exact integer sums, the same requantization).
   They run when the band of one output row fits in the tile's bytes; else im2col runs. */

#if MDL__SPARSE || defined(MDL_HAVE_X86_SIMD)
static int64_t padded_width(const qconv_geom *g) { return g->W + g->pl + g->pr; }

/* Output rows per band for a band of esize-byte elements with `tail` bytes after it in `room`
   bytes (0: not even one output row fits). */
static int64_t band_rows(const qconv_geom *g, size_t esize, size_t tail, size_t room) {
    const uint64_t row = (uint64_t)padded_width(g) * (uint64_t)g->C * esize;
    if (room <= tail || !row) return 0;
    const int64_t nrows = (int64_t)((room - tail) / row), span = (g->KH - 1) * g->dh + 1;
    if (nrows < span) return 0;
    const int64_t r = (nrows - span) / g->sh + 1;
    return r < g->OH ? r : g->OH;
}

enum { BAND_S8, BAND_U8, BAND_S16 }; /* int8, int8 + 128 as uint8, int16 */

/* The next band of at most R output rows of flattened rows [q, q1) (row q = n * OH + oh): within
   one image, from image n's row *oh0; returns its row count. */
static int64_t next_band(const qconv_geom *g, int64_t q, int64_t q1, int64_t R, int64_t *n,
                         int64_t *oh0) {
    *n = q / g->OH;
    *oh0 = q % g->OH;
    int64_t end = q1 - *n * g->OH < g->OH ? q1 - *n * g->OH : g->OH;
    return end - *oh0 < R ? end - *oh0 : R;
}

/* Padded rows [prow0, prow0 + nrows) of image n (padded row r is input row r - pt) in `mode`,
   rows of padded_width * C elements. */
static void fill_band(const qconv_geom *g, const int8_t *x, int64_t n, int64_t prow0, int64_t nrows,
                      int8_t zx, int mode, void *out) {
    const int64_t C = g->C, Wp = padded_width(g), rs = Wp * C;
    for (int64_t r = 0; r < nrows; r++) {
        const int64_t ih = prow0 + r - g->pt;
        const bool inside = ih >= 0 && ih < g->H;
        const int8_t *xr = x + (n * g->H + ih) * g->W * C;
        if (mode == BAND_U8) {
            uint8_t *o = (uint8_t *)out + r * rs;
            const int64_t a = inside ? g->pl * C : rs, b = inside ? (g->pl + g->W) * C : rs;
            const uint8_t z = (uint8_t)((uint8_t)zx ^ 0x80);
            memset(o, z, (size_t)a);
            for (int64_t i = a; i < b; i++) o[i] = (uint8_t)((uint8_t)xr[i - a] ^ 0x80);
            memset(o + b, z, (size_t)(rs - b));
            continue;
        }
        if (mode == BAND_S8) {
            int8_t *o = (int8_t *)out + r * rs;
            if (!inside) {
                memset(o, zx, (size_t)rs);
                continue;
            }
            memset(o, zx, (size_t)(g->pl * C));
            memcpy(o + g->pl * C, xr, (size_t)(g->W * C));
            memset(o + (g->pl + g->W) * C, zx, (size_t)(g->pr * C));
            continue;
        }
        int16_t *o = (int16_t *)out + r * rs;
        const int64_t a = inside ? g->pl * C : rs, b = inside ? (g->pl + g->W) * C : rs;
        for (int64_t i = 0; i < a; i++) o[i] = zx;
        for (int64_t i = a; i < b; i++) o[i] = xr[i - a];
        for (int64_t i = b; i < rs; i++) o[i] = zx;
    }
}

#endif

#if MDL__SPARSE
static size_t sparse_offb(const mdl__bsr *W) {
    return mdl__align_up((size_t)W->nblocks * sizeof(int32_t), 64);
}

/* Block-sparse weights on padded bands of R rows (band_rows after the blocks' offsets), output
   rows [q0, q1). */
static void run_sparse_bands(const qconv_geom *g, const mdl__qgemm_packed *p, const mdl__bsr *W,
                             const int8_t *x, int8_t zx, int8_t *y, unsigned char *scratch,
                             int64_t R, int64_t q0, int64_t q1) {
    const size_t offb = sparse_offb(W);
    const int64_t C = g->C, Wp = padded_width(g), KWC = g->KW * C;
    int32_t *off = (int32_t *)scratch;
    for (int64_t j = 0; j < W->nblocks; j++) {
        const int64_t col = W->col[j], kh = col / KWC, kw = col % KWC / C, ci = col % C;
        off[j] = (int32_t)((kh * g->dh * Wp + kw * g->dw) * C + ci);
    }
    mdl__bsr v = *W;
    v.col = off;
    int8_t *band = (int8_t *)(scratch + offb);
    for (int64_t q = q0, n, oh0, rows; q < q1; q += rows) {
        rows = next_band(g, q, q1, R, &n, &oh0);
        fill_band(g, x, n, oh0 * g->sh, (rows - 1) * g->sh + (g->KH - 1) * g->dh + 1, zx, BAND_S8,
                  band);
        for (int64_t oh = oh0; oh < oh0 + rows; oh++)
            mdl__qspmm(p, &v, g->OW, band + (oh - oh0) * g->sh * Wp * C, g->sw * C,
                       y + ((n * g->OH + oh) * g->OW) * g->OC, g->OC);
    }
}
#endif

/* Bytes the block-sparse VNNI kernel packs after the GEMM record (0: not its shape, or not this
   CPU). */
static size_t qsc_extra(const mdl__kctx *c, const qconv_geom *g) {
#if defined(MDL_HAVE_X86_SIMD) && MDL__SPARSE
    if (MDL__FAST_PATHS && c->in[1]->sparse && g->G == 1 && g->dw == 1 && mdl__cpu_has_vbmi())
        return mdl__qsc_pack_bytes(c->in[1]->sparse, g->KH, g->KW * g->C);
#else
    (void)c, (void)g;
#endif
    return 0;
}

/* Bytes the short-row kernel packs after the GEMM record (0: not its shape, or not this CPU).
   Only for output rows shorter than run_rows takes (measured: a 150x150 image's first layer, 3
   channels, is 8% faster through run_rows and the GEMM core). */
static size_t qcs_extra(const qconv_geom *g, bool sparse) {
#ifdef MDL_HAVE_X86_SIMD
    if (MDL__FAST_PATHS && !sparse && g->G == 1 && g->dw == 1 && g->KW * g->C <= MDL_QCS_MAX_RUN &&
        g->KH * g->KW > 1 && g->KH <= 16 && g->OW < QCONV_MIN_ROWS && mdl__qgemm_variant() != MDL_QGEMM_REF)
        return mdl__qcs_pack_bytes(g->KH, g->KW, g->C, g->OC);
#else
    (void)g, (void)sparse;
#endif
    return 0;
}

#ifdef MDL_HAVE_X86_SIMD
/* The block-sparse VNNI kernel on padded uint8 bands of R rows, output rows [q0, q1). */
static void run_qsc_bands(const qconv_geom *g, const mdl__qgemm_packed *p, const void *sp,
                          const int8_t *x, int8_t zx, int8_t *y, unsigned char *scratch, int64_t R,
                          int64_t q0, int64_t q1) {
    uint8_t *band = scratch;
    mdl__qsc_args a = {.x = band,
                       .rs = padded_width(g) * g->C,
                       .OW = g->OW,
                       .sh = g->sh,
                       .sw = g->sw,
                       .dh = g->dh,
                       .C = g->C,
                       .KH = g->KH,
                       .KWC = g->KW * g->C,
                       .p = p,
                       .pk = sp,
                       .OC = g->OC};
    for (int64_t q = q0, n, oh0, rows; q < q1; q += rows) {
        rows = next_band(g, q, q1, R, &n, &oh0);
        fill_band(g, x, n, oh0 * g->sh, (rows - 1) * g->sh + (g->KH - 1) * g->dh + 1, zx, BAND_U8,
                  band);
        a.OH = rows;
        a.y = y + ((n * g->OH + oh0) * g->OW) * g->OC;
        mdl__qsc_vnni(&a);
    }
}

/* The short-row kernel on padded int16 bands of R rows, output rows [q0, q1). */
static void run_small_bands(const qconv_geom *g, const mdl__qgemm_packed *p, const void *wp,
                            const int8_t *x, int8_t zx, int8_t *y, unsigned char *scratch,
                            int64_t R, int64_t q0, int64_t q1) {
    const int64_t rs = padded_width(g) * g->C;
    int16_t *band = (int16_t *)scratch;
    mdl__qcs_args a = {.x = band,
                       .rs = rs,
                       .OW = g->OW,
                       .sh = g->sh,
                       .sw = g->sw,
                       .dh = g->dh,
                       .C = g->C,
                       .KH = g->KH,
                       .P = (g->KW * g->C + 1) / 2,
                       .p = p,
                       .w = wp,
                       .OC = g->OC,
                       .ocpad = (g->OC + 15) / 16 * 16};
    const bool vnni = mdl__cpu_has_vnni();
    for (int64_t q = q0, n, oh0, rows; q < q1; q += rows) {
        rows = next_band(g, q, q1, R, &n, &oh0);
        const int64_t nrows = (rows - 1) * g->sh + (g->KH - 1) * g->dh + 1;
        fill_band(g, x, n, oh0 * g->sh, nrows, zx, BAND_S16, band);
        band[nrows * rs] = band[nrows * rs + 1] = 0; /* read past the last row, times 0 */
        a.OH = rows;
        a.y = y + ((n * g->OH + oh0) * g->OW) * g->OC;
        if (vnni)
            mdl__qcs_vnni(&a);
        else
            mdl__qcs_avx2(&a);
    }
}
#endif

/* ---- what run needs, computed once --------------------------------------------------------
   run's checks and geometry (qconv_check) and the packed layout's offsets cost more than a small
   layer's arithmetic: pack stores them for the model's shapes at the end of the packed data, and
   run takes them when its input has those dims (a session may have resized it: then it computes
   them again).  Not in small-code builds (no RAM for it). */
typedef struct qconv_cache {
    int64_t xdims[4];
    qconv_geom g;
    mdl__qio io;
    size_t stride, qcs, qsc; /* group_stride, qcs_extra, qsc_extra */
} qconv_cache;
#define QCONV_CACHE_BYTES (MDL__FAST_PATHS ? mdl__align_up(sizeof(qconv_cache), 64) : 0)

static const qconv_cache *run_cache(const mdl__kctx *c) {
    if (!MDL__FAST_PATHS || c->packed_bytes < QCONV_CACHE_BYTES) return NULL;
    const qconv_cache *k = (const qconv_cache *)((const unsigned char *)c->packed + c->packed_bytes -
                                                 QCONV_CACHE_BYTES);
    const mdl__tensor *x = c->in[0];
    if (x->rank != 4) return NULL;
    for (int i = 0; i < 4; i++)
        if (x->dims[i] != k->xdims[i]) return NULL;
    return k;
}

static mdl_status prepare_common(mdl__kctx *c, bool depthwise) {
    qconv_geom g;
    mdl__qio io;
    mdl_status st = qconv_check(c, depthwise, true, &g, &io);
    if (st != MDL_OK) return st;
    write_output_shape(c, &g);
    bool dw = depthwise || depthwise_path(&g);
    if (MDL__SPARSE && c->in[1]->sparse && (dw || g.G != 1 || !c->in[1]->sparse_transposed))
        return mdl__fail(c, MDL_UNSUPPORTED, "block-sparse weight '%s' needs a convolution without "
                         "groups, stored transposed", tname(c->in[1]));
    for (int64_t gi = 0; gi < (dw ? 1 : g.G); gi++) {
        mdl__qgemm_desc d;
        group_desc(c, &g, &io, gi, dw, &d);
        if ((st = mdl__qgemm_check(c, tname(c->in[1]), &d)) != MDL_OK) return st;
    }
    size_t stride = group_stride(&g, dw, MDL__SPARSE && c->in[1]->sparse);
    if (!stride || !mdl__mul_size(stride, dw ? 1 : (size_t)g.G, &c->packed_bytes))
        return mdl__fail(c, MDL_SHAPE, "weight '%s' is too large", tname(c->in[1]));
    if (!dw) c->packed_bytes += qcs_extra(&g, MDL__SPARSE && c->in[1]->sparse) + qsc_extra(c, &g);
    if (QCONV_CACHE_BYTES) c->packed_bytes = mdl__align_up(c->packed_bytes, 64) + QCONV_CACHE_BYTES;
    if (dw) {
        /* one pixel's int32 accumulators; the scratch stored plans reserve (dw4_path) */
        c->scratch_bytes = (size_t)g.OC * sizeof(int32_t);
        if (dw4_path(&g)) {
            size_t b4 = mdl__qdw4_scratch_bytes(g.C, g.OW, g.KW, g.sw, g.dw);
            if (!b4) return mdl__fail(c, MDL_SHAPE, "scratch does not fit in memory");
            if (b4 > c->scratch_bytes) c->scratch_bytes = b4;
        }
        return MDL_OK;
    }
    /* im2col tile + the GEMM core's scratch, on every CPU */
    uint64_t bytes = mdl__qgemm_scratch_bytes(g.OG, g.K);
    if (!direct_1x1(&g)) bytes += mdl__align_up((uint64_t)(tile_rows(&g) * g.K), 64);
    if (bytes > SIZE_MAX)
        return mdl__fail(c, MDL_SHAPE, "scratch of %llu bytes does not fit in memory",
                         (unsigned long long)bytes);
    c->scratch_bytes = (size_t)bytes;
    return MDL_OK;
}

static mdl_status pack_common(mdl__kctx *c, bool depthwise) {
    qconv_geom g;
    mdl__qio io;
    if (qconv_check(c, depthwise, true, &g, &io) != MDL_OK) return MDL_INTERNAL;
    bool dw = depthwise || depthwise_path(&g);
    size_t stride = group_stride(&g, dw, MDL__SPARSE && c->in[1]->sparse);
    for (int64_t gi = 0; gi < (dw ? 1 : g.G); gi++) {
        mdl__qgemm_desc d;
        group_desc(c, &g, &io, gi, dw, &d);
        mdl__qgemm_pack(dw || (MDL__SPARSE && d.sparse) ? MDL_QGEMM_REF : mdl__qgemm_variant(), &d,
                        (unsigned char *)c->packed + (size_t)gi * stride);
    }
#ifdef MDL_HAVE_X86_SIMD
    if (!dw && qcs_extra(&g, MDL__SPARSE && c->in[1]->sparse))
        mdl__qcs_pack(c->in[1]->data, g.KH, g.KW, g.C, g.OC, (unsigned char *)c->packed + stride);
    mdl__qgemm_packed p;
    if (!dw && qsc_extra(c, &g) && mdl__qgemm_view(c->packed, &p))
        mdl__qsc_pack(&p, c->in[1]->sparse, g.KH, g.KW * g.C, (unsigned char *)c->packed + stride);
    if (dw && dw_extra(&g) && mdl__qgemm_view(c->packed, &p))
        mdl__qdw_pack(&p, c->in[1]->data, io.zx, g.C, g.KH, g.KW,
                      (unsigned char *)c->packed + (stride - dw_extra(&g)));
#endif
    if (MDL__FAST_PATHS) {
        qconv_cache *k = (qconv_cache *)((unsigned char *)c->packed + c->packed_bytes - QCONV_CACHE_BYTES);
        memset(k, 0, sizeof *k);
        memcpy(k->xdims, c->in[0]->dims, sizeof k->xdims);
        k->g = g;
        k->io = io;
        k->stride = stride;
        k->qcs = dw ? 0 : qcs_extra(&g, MDL__SPARSE && c->in[1]->sparse);
        k->qsc = dw ? 0 : qsc_extra(c, &g);
    }
    return MDL_OK;
}

/* ---- depthwise loops ------------------------------------------------------------------------
   Output channel oc reads input channel oc / mult; w is [KH,KW,OC].  One pixel's OC sums at a
   time (in scratch), the taps inside the input streaming contiguous rows of x and w. */

/* acc[i] += (x[i] - zx) * w[i], 16 at a time (the form gcc -O2 vectorizes, see gemm_int8.c) */
static void row_mac(int32_t *restrict acc, const int8_t *restrict x, const int8_t *restrict w,
                    int32_t zx, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++)
            acc[i + j] += ((int32_t)x[i + j] - zx) * w[i + j];
    for (; i < n; i++)
        acc[i] += ((int32_t)x[i] - zx) * w[i];
}

static void depthwise(const qconv_geom *g, const mdl__qgemm_packed *p, int32_t zx, const int8_t *x,
                      const int8_t *w, int8_t *y, int32_t *acc) {
    const int64_t C = g->C, OC = g->OC, mult = g->OC / g->C;
    for (int64_t n = 0; n < g->N; n++) {
        const int8_t *xn = x + n * g->H * g->W * C;
        for (int64_t oh = 0; oh < g->OH; oh++)
            for (int64_t ow = 0; ow < g->OW; ow++) {
                memcpy(acc, p->bias, (size_t)OC * sizeof *acc);
                for (int64_t kh = 0; kh < g->KH; kh++) {
                    int64_t ih = oh * g->sh - g->pt + kh * g->dh;
                    if (ih < 0 || ih >= g->H) continue;
                    for (int64_t kw = 0; kw < g->KW; kw++) {
                        int64_t iw = ow * g->sw - g->pl + kw * g->dw;
                        if (iw < 0 || iw >= g->W) continue;
                        const int8_t *xr = xn + (ih * g->W + iw) * C;
                        const int8_t *wr = w + (kh * g->KW + kw) * OC;
                        if (mult == 1) {
                            row_mac(acc, xr, wr, zx, C);
                        } else {
                            for (int64_t ci = 0; ci < C; ci++) {
                                const int32_t xv = (int32_t)xr[ci] - zx;
                                for (int64_t j = 0; j < mult; j++)
                                    acc[ci * mult + j] += xv * wr[ci * mult + j];
                            }
                        }
                    }
                }
                int8_t *o = y + ((n * g->OH + oh) * g->OW + ow) * OC;
                for (int64_t oc = 0; oc < OC; oc++) {
                    mdl__qmul q = {p->mult[oc], p->shift[oc]};
                    o[oc] = (int8_t)mdl__requant(acc[oc], q, p->zy, p->lo, p->hi);
                }
            }
    }
}

/* ---- CONV2D: im2col + GEMM core ------------------------------------------------------------ */

/* memcpy / memset for the short runs of im2col (a first layer's 3 channels x 3 taps): a call
   per run costs more than the copy, so runs are moved in constant-size pieces, which compilers
   inline as plain loads and stores. */
static inline void copy_run(int8_t *d, const int8_t *s, int64_t n) {
    if (n > 64) {
        memcpy(d, s, (size_t)n);
        return;
    }
    for (; n >= 8; n -= 8, d += 8, s += 8)
        memcpy(d, s, 8);
    if (n >= 4) memcpy(d, s, 4), n -= 4, d += 4, s += 4;
    for (; n > 0; n--)
        *d++ = *s++;
}

static inline void fill_run(int8_t *d, int8_t v, int64_t n) {
    if (n > 64) {
        memset(d, v, (size_t)n);
        return;
    }
    const uint64_t v8 = 0x0101010101010101ull * (uint8_t)v;
    for (; n >= 8; n -= 8, d += 8)
        memcpy(d, &v8, 8);
    for (; n > 0; n--)
        *d++ = v;
}

/* Receptive fields of output pixels [p0, p0 + m) for group gi as rows of A (K bytes each,
   ordered (kh, kw, c) like the weight rows); taps in the padding are zx. */
static void im2col(const qconv_geom *g, const int8_t *x, int8_t zx, ptrdiff_t p0, ptrdiff_t m,
                   ptrdiff_t gi, int8_t *A) {
    const ptrdiff_t C = g->C, CG = g->CG, KW = g->KW, ohw = g->OH * g->OW;
    /* Without dilation or groups, the taps of one kernel row are adjacent input pixels: one
       contiguous run of KW * C bytes, clipped at the borders. */
    const bool runs = MDL__FAST_PATHS && g->dw == 1 && g->G == 1;
    ptrdiff_t n = p0 / ohw, oh = p0 % ohw / g->OW, ow = p0 % g->OW;
    const int8_t *x_end = x + g->N * g->H * g->W * C;
    const int8_t *A_end = A + m * g->K;
    for (ptrdiff_t r = 0; r < m; r++) {
        int8_t *a = A + r * g->K;
        const int8_t *xn = x + n * g->H * g->W * C + gi * CG;
        ptrdiff_t ih0 = oh * g->sh - g->pt, iw0 = ow * g->sw - g->pl;
        for (ptrdiff_t kh = 0; kh < g->KH; kh++) {
            int8_t *ak = a + kh * KW * CG;
            ptrdiff_t ih = ih0 + kh * g->dh;
            if (ih < 0 || ih >= g->H) {
                fill_run(ak, zx, KW * CG);
                continue;
            }
            const int8_t *xr = xn + ih * g->W * C;
            if (runs) {
                ptrdiff_t lo = iw0 < 0 ? -iw0 : 0, hi = g->W - iw0;
                if (lo > KW) lo = KW;
                if (hi > KW) hi = KW;
                if (hi < lo) hi = lo;
                const ptrdiff_t len = (hi - lo) * C;
                const int8_t *src = xr + (iw0 + lo) * C;
                if (len <= 16 && lo == 0 && src + 16 <= x_end && ak + 16 <= A_end) {
                    /* a first layer's few channels: one 16-byte move; the bytes past len are
                       rewritten by the next run or row before anything reads them */
                    memcpy(ak, src, 16);
                    fill_run(ak + len, zx, (KW - hi) * C);
                    continue;
                }
                fill_run(ak, zx, lo * C);
                copy_run(ak + lo * C, src, len);
                fill_run(ak + hi * C, zx, (KW - hi) * C);
                continue;
            }
            for (ptrdiff_t kw = 0; kw < KW; kw++) {
                ptrdiff_t iw = iw0 + kw * g->dw;
                if (iw < 0 || iw >= g->W)
                    fill_run(ak + kw * CG, zx, CG);
                else
                    copy_run(ak + kw * CG, xr + iw * C, CG);
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

/* Rows of A for the output pixels [a, b) of output row (n, oh) whose taps are all inside the
   input: KH runs of KW * C bytes each, copied without any border logic (a run of at most 16
   bytes as one 16-byte move where both buffers have the room: the bytes past the run are
   rewritten by the next run or row before anything reads them). */
static void im2col_inside(const qconv_geom *g, const int8_t *x, int64_t n, int64_t oh, int64_t a,
                          int64_t b, int8_t *A, const int8_t *A_end) {
    const int64_t C = g->C, run = g->KW * C;
    const int8_t *x_end = x + g->N * g->H * g->W * C;
    const int8_t *x0 = x + ((n * g->H + oh * g->sh - g->pt) * g->W + (a * g->sw - g->pl)) * C;
    for (int64_t ow = a; ow < b; ow++, A += g->K, x0 += g->sw * C)
        for (int64_t kh = 0; kh < g->KH; kh++) {
            const int8_t *src = x0 + kh * g->dh * g->W * C;
            int8_t *dst = A + kh * run;
            if (run <= 16 && src + 16 <= x_end && dst + 16 <= A_end) memcpy(dst, src, 16);
            else memcpy(dst, src, (size_t)run);
        }
}

/* CONV2D without groups or horizontal dilation: per output row, the pixels whose taps are all
   inside the input are read in place by the GEMM core where it can (mdl__qgemm_run_segs: one
   segment of KW * C bytes per kernel row), else gathered by im2col_inside; the pixels at the
   borders go through im2col.  Same result as im2col for all. */
static void run_rows(const qconv_geom *g, const unsigned char *pk, const int8_t *x, int8_t zx,
                     const int8_t *w, int8_t *y, int8_t *A, int64_t tm, void *gs, int64_t q0,
                     int64_t q1) {
    const int64_t C = g->C, OC = g->OC;
    int64_t seg[16];
    for (int64_t kh = 0; kh < g->KH; kh++)
        seg[kh] = kh * g->dh * g->W * C;
    bool segs = true; /* until the core says it cannot read this layout */
    /* output columns whose taps are all inside: iw0 = ow * sw - pl >= 0, iw0 + KW - 1 < W */
    int64_t ow_lo = (g->pl + g->sw - 1) / g->sw, ow_hi = ow_lo;
    if (g->W - g->KW + g->pl >= 0) ow_hi = (g->W - g->KW + g->pl) / g->sw + 1;
    if (ow_hi > g->OW) ow_hi = g->OW;
    if (ow_lo > ow_hi) ow_lo = ow_hi;
    for (int64_t q = q0; q < q1; q++) {
        const int64_t n = q / g->OH, oh = q % g->OH;
        const int64_t ih0 = oh * g->sh - g->pt, p0 = q * g->OW;
        const bool rows_in = ih0 >= 0 && ih0 + (g->KH - 1) * g->dh < g->H;
        const int64_t a = rows_in ? ow_lo : g->OW, b = rows_in ? ow_hi : g->OW;
        if (a < b && segs) {
            const int8_t *x0 = x + ((n * g->H + ih0) * g->W + (a * g->sw - g->pl)) * C;
            segs = mdl__qgemm_run_segs(pk, b - a, x0, g->sw * C, seg, (int)g->KH, y + (p0 + a) * OC,
                                       OC, gs);
        }
        if (a < b && !segs)
            for (int64_t r0 = a; r0 < b; r0 += tm) {
                const int64_t m = b - r0 < tm ? b - r0 : tm;
                im2col_inside(g, x, n, oh, r0, r0 + m, A, A + tm * g->K);
                mdl__qgemm_run(pk, m, A, g->K, w, 1, OC, y + (p0 + r0) * OC, OC, gs);
            }
        /* the border pixels [0, a) and [b, OW) */
        for (int64_t r0 = 0; r0 < a; r0 += tm) {
            const int64_t m = a - r0 < tm ? a - r0 : tm;
            im2col(g, x, zx, p0 + r0, m, 0, A);
            mdl__qgemm_run(pk, m, A, g->K, w, 1, OC, y + (p0 + r0) * OC, OC, gs);
        }
        for (int64_t r0 = b; r0 < g->OW; r0 += tm) {
            const int64_t m = g->OW - r0 < tm ? g->OW - r0 : tm;
            im2col(g, x, zx, p0 + r0, m, 0, A);
            mdl__qgemm_run(pk, m, A, g->K, w, 1, OC, y + (p0 + r0) * OC, OC, gs);
        }
    }
}

/* ---- the run, split over the session's workers ----------------------------------------------
   Every path computes each output pixel on its own (exact integer sums, then the same
   requantization), so any split of the output rows (or im2col tiles, or 1x1 pixel blocks) gives
   the serial result bit for bit.  Each task uses its worker's scratch (same layout as the serial
   run's: tile or band, then the GEMM core's scratch). */
/* below this many multiply-adds one thread: int8 products run at 4-10x the float rate (AMX), so
   smaller ones take less than the few microseconds a worker's wake-up costs */
#define QCONV_PAR_MIN_MACS ((int64_t)1 << 21)
#define QCONV_TASKS_PER_WORKER 4

typedef enum {
    QPATH_QSC,
    QPATH_SPARSE,
    QPATH_SMALL,
    QPATH_ROWS,
    QPATH_TILES,
    QPATH_1X1,
    QPATH_1X1_STRIDED
} qpath;

typedef struct qconv_job {
    const mdl__kctx *c;
    const qconv_geom *g;
    qpath path;
    const unsigned char *pk;
    mdl__qgemm_packed p; /* view of pk (band paths) */
    const void *extra;   /* the path's packed data after the record, or the sparse weights */
    const int8_t *x, *w;
    int8_t zx;
    int8_t *y;
    size_t stride, room; /* per group packed bytes; im2col tile bytes before the GEMM scratch */
    int64_t tm, R;       /* im2col tile rows; band rows */
    int64_t units, tasks;
} qconv_job;

static void qconv_task(void *arg, int64_t t, int worker) {
    const qconv_job *j = arg;
    const qconv_geom *g = j->g;
    int64_t u0, u1;
    mdl__par_part(t, j->tasks, j->units, &u0, &u1);
    unsigned char *scratch = mdl__par_scratch(j->c, worker);
    const int64_t OC = g->OC, OG = g->OG;
    switch (j->path) {
#ifdef MDL_HAVE_X86_SIMD
    case QPATH_QSC:
        run_qsc_bands(g, &j->p, j->extra, j->x, j->zx, j->y, scratch, j->R, u0, u1);
        return;
    case QPATH_SMALL:
        run_small_bands(g, &j->p, j->extra, j->x, j->zx, j->y, scratch, j->R, u0, u1);
        return;
#endif
#if MDL__SPARSE
    case QPATH_SPARSE:
        run_sparse_bands(g, &j->p, j->extra, j->x, j->zx, j->y, scratch, j->R, u0, u1);
        return;
#endif
    case QPATH_ROWS:
        run_rows(g, j->pk, j->x, j->zx, j->w, j->y, (int8_t *)scratch, j->tm, scratch + j->room, u0,
                 u1);
        return;
    case QPATH_TILES: {
        const int64_t M = g->N * g->OH * g->OW;
        for (int64_t p0 = u0 * j->tm; p0 < u1 * j->tm && p0 < M; p0 += j->tm) {
            const int64_t m = M - p0 < j->tm ? M - p0 : j->tm;
            for (int64_t gi = 0; gi < g->G; gi++) {
                im2col(g, j->x, j->zx, p0, m, gi, (int8_t *)scratch);
                mdl__qgemm_run(j->pk + (size_t)gi * j->stride, m, (int8_t *)scratch, g->K,
                               j->w + gi * OG, 1, OC, j->y + p0 * OC + gi * OG, OC,
                               scratch + j->room);
            }
        }
        return;
    }
    case QPATH_1X1: {
        const int64_t M = g->N * g->H * g->W, p0 = u0 * QCONV_MIN_ROWS;
        const int64_t p1 = u1 * QCONV_MIN_ROWS < M ? u1 * QCONV_MIN_ROWS : M;
        for (int64_t gi = 0; gi < g->G; gi++)
            mdl__qgemm_run(j->pk + (size_t)gi * j->stride, p1 - p0, j->x + p0 * g->C + gi * g->CG,
                           g->C, j->w + gi * OG, 1, OC, j->y + p0 * OC + gi * OG, OC, scratch);
        return;
    }
    case QPATH_1X1_STRIDED:
        for (int64_t gi = 0; gi < g->G; gi++)
            for (int64_t q = u0; q < u1; q++) {
                const int64_t n = q / g->OH, oh = q % g->OH;
                mdl__qgemm_run(j->pk + (size_t)gi * j->stride, g->OW,
                               j->x + ((n * g->H + oh * g->sh) * g->W) * g->C + gi * g->CG,
                               g->sw * g->C, j->w + gi * OG, 1, OC, j->y + q * g->OW * OC + gi * OG,
                               OC, scratch);
            }
        return;
    default: return;
    }
}

/* ---- depthwise: bands of output rows per task ----------------------------------------------
   A band oh0..oh1 of image n is the same depthwise convolution of that image with OH = oh1 - oh0
   and top padding pt - oh0 * sh (negative past the padding: every kernel clips its taps to the
   image from ih = oh * sh - pt), so each output sums the same int32 products and the results are
   bit-identical to one call. */
typedef enum { QDW_GENERIC, QDW_AVX2, QDW_VNNI, QDW_VNNI_REG } qdw_kind;

typedef struct qdw_job {
    const mdl__kctx *c;
    const qconv_geom *g;
    const mdl__qgemm_packed *p;
    int32_t zx;
    const int8_t *x, *w;
    int8_t *y;
    qdw_kind kind;
    const void *extra; /* QDW_VNNI_REG: its constants (mdl__qdw_pack) */
    int64_t per_image; /* tasks per image: bands differing by at most one row */
} qdw_job;

/* Images n .. n + N - 1, output rows [oh0, oh1) of each (all rows when N > 1). */
static void qdw_band(const qdw_job *j, int64_t n, int64_t N, int64_t oh0, int64_t oh1,
                     void *scratch) {
    const qconv_geom *g = j->g;
    const int8_t *x = j->x + n * g->H * g->W * g->C;
    int8_t *y = j->y + (n * g->OH + oh0) * g->OW * g->OC;
    const int64_t OH = oh1 - oh0, pt = g->pt - oh0 * g->sh;
#ifdef MDL_HAVE_X86_SIMD
    if (j->kind != QDW_GENERIC) {
        mdl__qdw_args a = {x,    j->w, y,     j->p,  j->zx, N,     g->H,  g->W,  g->C, OH,
                           g->OW, g->KH, g->KW, g->sh, g->sw, g->dh, g->dw, pt,    g->pl};
        if (j->kind == QDW_VNNI_REG) mdl__qdw_vnni_reg(&a, j->extra);
        else if (j->kind == QDW_VNNI) mdl__qdw_vnni(&a);
        else mdl__qdw_avx2(&a);
        return;
    }
#endif
    qconv_geom one = *g;
    one.N = N, one.OH = OH, one.pt = pt;
    depthwise(&one, j->p, j->zx, x, j->w, y, scratch);
}

static void qdw_task(void *arg, int64_t t, int worker) {
    const qdw_job *j = arg;
    int64_t oh0, oh1;
    mdl__par_part(t % j->per_image, j->per_image, j->g->OH, &oh0, &oh1);
    qdw_band(j, t / j->per_image, 1, oh0, oh1, mdl__par_scratch(j->c, worker));
}

/* One call, or bands of rows over the workers when the work is worth splitting. */
static void qdw_run(qdw_job *j) {
    const qconv_geom *g = j->g;
    const int nw = mdl__par_workers(j->c->par);
    const int64_t macs = g->N * g->OH * g->OW * g->OC * g->KH * g->KW;
    if (nw < 2 || macs < QCONV_PAR_MIN_MACS || g->N * g->OH < 2) {
        qdw_band(j, 0, g->N, 0, g->OH, j->c->scratch);
        return;
    }
    const int64_t want = (int64_t)nw * QCONV_TASKS_PER_WORKER;
    j->per_image = (want + g->N - 1) / g->N;
    if (j->per_image > g->OH) j->per_image = g->OH;
    mdl__par_for(j->c->par, g->N * j->per_image, qdw_task, j);
}

/* Runs j's units as one task, or as about QCONV_TASKS_PER_WORKER even tasks per worker when the
   product (macs multiply-adds) is worth splitting. */
static void qconv_split(qconv_job *j, int64_t macs) {
    const int nw = mdl__par_workers(j->c->par);
    j->tasks = 1;
    if (nw >= 2 && macs >= QCONV_PAR_MIN_MACS && j->units >= 2) {
        j->tasks = (int64_t)nw * QCONV_TASKS_PER_WORKER;
        if (j->tasks > j->units) j->tasks = j->units;
    }
    mdl__par_for(j->c->par, j->tasks, qconv_task, j);
}

static mdl_status run_common(mdl__kctx *c, bool depthwise_op) {
    if (!c->packed) return mdl__fail(c, MDL_INTERNAL, "runs only with the data packed at load");
    qconv_geom g;
    mdl__qio io;
    const qconv_cache *k = run_cache(c);
    if (k) g = k->g, io = k->io;
    else qconv_check(c, depthwise_op, false, &g, &io);
    const int8_t *x = c->in_data[0], *w = c->in_data[1];
    int8_t *y = c->out_data[0];
    const unsigned char *pk = c->packed;
    if (depthwise_op || depthwise_path(&g)) {
        mdl__qgemm_packed p;
        if (!mdl__qgemm_view(pk, &p)) return mdl__fail(c, MDL_INTERNAL, "bad packed data");
        qdw_job j = {.c = c, .g = &g, .p = &p, .zx = io.zx, .x = x, .w = w, .y = y,
                     .kind = QDW_GENERIC};
#ifdef MDL_HAVE_X86_SIMD
        if (g.OC == g.C) {
            int v = mdl__qgemm_variant();
            if (v == MDL_QGEMM_VNNI && dw_extra(&g))
                j.kind = QDW_VNNI_REG,
                j.extra = pk + (group_stride(&g, true, false) - dw_extra(&g));
            else if (v == MDL_QGEMM_VNNI) j.kind = QDW_VNNI;
            else if (v == MDL_QGEMM_AVX2) j.kind = QDW_AVX2;
        }
#endif
        qdw_run(&j);
        return MDL_OK;
    }
    const size_t stride = k ? k->stride : group_stride(&g, false, MDL__SPARSE && c->in[1]->sparse);
    const int64_t OC = g.OC;
    if (direct_1x1(&g)) {
        qconv_job j = {.c = c, .g = &g, .pk = pk, .x = x, .w = w, .y = y, .stride = stride};
        if (g.sh == 1 && g.sw == 1) {
            /* the input is the GEMM's A: pixels in blocks of QCONV_MIN_ROWS */
            j.path = QPATH_1X1;
            j.units = (g.N * g.H * g.W + QCONV_MIN_ROWS - 1) / QCONV_MIN_ROWS;
        } else {
            /* every sw-th pixel of every sh-th row: a matrix with leading dim sw * C per row */
            j.path = QPATH_1X1_STRIDED;
            j.units = g.N * g.OH;
        }
        qconv_split(&j, g.N * g.OH * g.OW * g.K * OC);
        return MDL_OK;
    }
    const int64_t M = g.N * g.OH * g.OW, tm = tile_rows(&g);
    const size_t room = mdl__align_up((size_t)(tm * g.K), 64);
    qconv_job j = {.c = c,
                   .g = &g,
                   .pk = pk,
                   .x = x,
                   .w = w,
                   .zx = (int8_t)io.zx,
                   .y = y,
                   .stride = stride,
                   .tm = tm,
                   .room = room,
                   .units = g.N * g.OH};
    /* the first path that applies (each gives the GEMM core's result bit for bit) */
    const bool view = mdl__qgemm_view(pk, &j.p); /* the band paths read the record through it */
    (void)view; /* builds without SIMD or sparse storage have no band path */
#ifdef MDL_HAVE_X86_SIMD
    if (view && (k ? k->qsc : qsc_extra(c, &g)) && (j.R = band_rows(&g, 1, 0, room)) > 0) {
        j.path = QPATH_QSC;
        j.extra = pk + stride;
    } else
#endif
#if MDL__SPARSE
        if (view && c->in[1]->sparse &&
            (j.R = band_rows(&g, 1, sparse_offb(c->in[1]->sparse), room)) > 0) {
        j.path = QPATH_SPARSE;
        j.extra = c->in[1]->sparse;
    } else
#endif
#ifdef MDL_HAVE_X86_SIMD
        if (view && (k ? k->qcs : qcs_extra(&g, MDL__SPARSE && c->in[1]->sparse)) &&
            (j.R = band_rows(&g, sizeof(int16_t), 2 * sizeof(int16_t), room)) > 0) {
        j.path = QPATH_SMALL;
        j.extra = pk + stride;
    } else
#endif
        if (MDL__FAST_PATHS && g.G == 1 && g.dw == 1 && g.KH <= 16 && g.OW >= QCONV_MIN_ROWS) {
        j.path = QPATH_ROWS;
    } else {
        /* tiles of at most tm rows (the scratch's), smaller when split over workers */
        j.path = QPATH_TILES;
        const int64_t want = (int64_t)mdl__par_workers(c->par) * QCONV_TASKS_PER_WORKER;
        int64_t t = (M + want - 1) / want;
        if (t < QCONV_MIN_ROWS) t = QCONV_MIN_ROWS;
        if (want > 1 && t < tm) j.tm = t;
        j.units = (M + j.tm - 1) / j.tm;
    }
    qconv_split(&j, M * g.K * g.OC);
    return MDL_OK;
}

static mdl_status conv2d_prepare(mdl__kctx *c) { return prepare_common(c, false); }
static mdl_status conv2d_pack(mdl__kctx *c) { return pack_common(c, false); }
static mdl_status conv2d_run(mdl__kctx *c) { return run_common(c, false); }
static mdl_status depthwise_prepare(mdl__kctx *c) { return prepare_common(c, true); }
static mdl_status depthwise_pack(mdl__kctx *c) { return pack_common(c, true); }
static mdl_status depthwise_run(mdl__kctx *c) { return run_common(c, true); }

const mdl__kernel mdl__conv2d_int8 = {.prepare = conv2d_prepare,
                                      .run = conv2d_run,
                                      .pack = conv2d_pack,
                                      .flags = MDL__KERNEL_SPARSE_W | MDL__KERNEL_WORKER_SCRATCH};
const mdl__kernel mdl__depthwise_conv2d_int8 = {.prepare = depthwise_prepare,
                                                .run = depthwise_run,
                                                .pack = depthwise_pack,
                                                .flags = MDL__KERNEL_WORKER_SCRATCH};
