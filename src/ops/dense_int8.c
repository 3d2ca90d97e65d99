/* Quantized (int8, TFLite scheme) FullyConnected and MatMul.
 *
 * FULLY_CONNECTED: Y = requant(bias + (X - zx) W^T) with W [N,K] constant and symmetric, on the
 * int8 GEMM core (int8.h): multipliers, the bias with the zero-point term folded in and the SIMD
 * weight layout are packed once at load.
 *
 * MATMUL: Y = requant((A - za)(B - zb)) with NumPy broadcasting.  A constant, symmetric, 2-D B
 * is a weight matrix [K,N] for the GEMM core (per-tensor or per-column scales); anything else
 * (B an activation, batched, or with a zero point) runs plain loops over (a - za)(b - zb) with
 * the per-column multipliers packed at load. */
#include "int8.h"

#include "graph/util.h"
#include "sparse.h"

#include <string.h>

static const char *tname(const mdl__tensor *t) { return t->name ? t->name : ""; }

/* ---- FULLY_CONNECTED ----------------------------------------------------------------------- */

static void fc_desc(const mdl__kctx *c, const mdl__qio *io, mdl__qgemm_desc *d) {
    const mdl__tensor *w = c->in[1], *b = c->nin > 2 ? c->in[2] : NULL;
    memset(d, 0, sizeof *d);
    d->N = w->dims[0];
    d->K = w->dims[1];
    d->w = w->data;
    d->sn = d->K;
    d->sk = 1;
    d->bias = b ? b->data : NULL;
    d->za = io->zx;
    d->a_scale = io->sx;
    d->y_scale = io->sy;
    d->w_scale = w->scale;
    d->nw_scale = w->nquant;
    d->zy = io->zy;
    d->lo = io->lo;
    d->hi = io->hi;
    d->sparse = MDL__SPARSE ? w->sparse : NULL;
}

/* The GEMM core's variant for weight w: the reference record (no panels) for block-sparse
   weights, which the sparse product reads as they are. */
static int weight_variant(const mdl__tensor *w) {
    return MDL__SPARSE && w->sparse ? MDL_QGEMM_REF : mdl__qgemm_variant();
}

static mdl_status fc_check(const mdl__kctx *c, mdl__qio *io) {
    const mdl__tensor *x = c->nin > 0 ? c->in[0] : NULL, *w = c->nin > 1 ? c->in[1] : NULL;
    const mdl__tensor *b = c->nin > 2 ? c->in[2] : NULL;
    char s1[64], s2[64];
    mdl_status st;
    if (c->nin < 2 || c->nin > 3 || c->nout != 1 || !x || !w)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects inputs X, W[, bias] and one output");
    if ((st = mdl__qcheck_io(c, x, &c->opt->fc.act, io)) != MDL_OK) return st;
    if (x->rank < 1 || w->rank != 2)
        return mdl__fail(c, MDL_SHAPE, "input %s and weight %s: need X [..., K] and W [N, K]",
                         mdl__dims_str(s1, sizeof s1, x->rank, x->dims),
                         mdl__dims_str(s2, sizeof s2, w->rank, w->dims));
    int64_t K = x->dims[x->rank - 1], N = w->dims[0];
    if (w->dims[1] != K)
        return mdl__fail(c, MDL_SHAPE, "weight %s has %lld input features, input %s has %lld",
                         mdl__dims_str(s1, sizeof s1, w->rank, w->dims), (long long)w->dims[1],
                         mdl__dims_str(s2, sizeof s2, x->rank, x->dims), (long long)K);
    if (K < 1 || N < 1)
        return mdl__fail(c, MDL_SHAPE, "weight %s is empty",
                         mdl__dims_str(s1, sizeof s1, w->rank, w->dims));
    if ((st = mdl__qcheck_weight(c, w, 0)) != MDL_OK) return st;
    if (b && (b->rank != 1 || b->dims[0] != N))
        return mdl__fail(c, MDL_SHAPE, "bias %s does not match %lld outputs",
                         mdl__dims_str(s1, sizeof s1, b->rank, b->dims), (long long)N);
    if (b && (st = mdl__qcheck_bias(c, b, io->sx, w)) != MDL_OK) return st;
    if (MDL__SPARSE && w->sparse && w->sparse_transposed)
        return mdl__fail(c, MDL_CORRUPT_MODEL, "block-sparse weight '%s' is stored transposed", tname(w));
    return MDL_OK;
}

static mdl_status fc_prepare(mdl__kctx *c) {
    mdl__qio io;
    mdl_status st = fc_check(c, &io);
    if (st != MDL_OK) return st;
    const mdl__tensor *x = c->in[0], *w = c->in[1];
    mdl__qgemm_desc d;
    fc_desc(c, &io, &d);
    if ((st = mdl__qgemm_check(c, tname(w), &d)) != MDL_OK) return st;
    mdl__shape_of(&c->out_shape[0], x);
    c->out_shape[0].dims[x->rank - 1] = d.N;
    c->packed_bytes = mdl__qgemm_pack_bytes(weight_variant(w), d.N, d.K);
    c->scratch_bytes = mdl__qgemm_scratch_bytes(d.N, d.K);
    if (!c->packed_bytes) return mdl__fail(c, MDL_SHAPE, "weight '%s' is too large", tname(w));
    return MDL_OK;
}

static mdl_status fc_pack(mdl__kctx *c) {
    mdl__qio io;
    if (fc_check(c, &io) != MDL_OK) return MDL_INTERNAL;
    mdl__qgemm_desc d;
    fc_desc(c, &io, &d);
    mdl__qgemm_pack(weight_variant(c->in[1]), &d, c->packed);
    return MDL_OK;
}

static mdl_status fc_run(mdl__kctx *c) {
    if (!c->packed) return mdl__fail(c, MDL_INTERNAL, "runs only with the data packed at load");
    const mdl__tensor *x = c->in[0], *w = c->in[1];
    /* within the tensors: ptrdiff_t (mdl__shape_size), the native word on 32-bit cores */
    ptrdiff_t K = (ptrdiff_t)w->dims[1], N = (ptrdiff_t)w->dims[0], M = (ptrdiff_t)x->count / K;
    mdl__qgemm_run_par(c, c->packed, M, N, K, c->in_data[0], K, c->in_data[1], K, 1, c->out_data[0],
                       N);
    return MDL_OK;
}

const mdl__kernel mdl__fc_int8 = {.prepare = fc_prepare,
                                  .run = fc_run,
                                  .pack = fc_pack,
                                  .flags = MDL__KERNEL_SPARSE_W | MDL__KERNEL_WORKER_SCRATCH};

/* ---- MATMUL -------------------------------------------------------------------------------- */

/* NumPy geometry (as the float kernel): rank-1 operands promoted, batch dims broadcast. */
typedef struct mm_geom {
    int64_t M, N, K;
    int32_t brank;
    int64_t bdims[MDL_MAX_RANK];
    int64_t astride[MDL_MAX_RANK], bstride[MDL_MAX_RANK]; /* per batch dim, in matrices */
} mm_geom;

static bool mm_geometry(const mdl__tensor *a, const mdl__tensor *b, mm_geom *g) {
    int64_t ad[MDL_MAX_RANK + 1], bd[MDL_MAX_RANK + 1];
    int32_t ar = a->rank, br = b->rank;
    if (ar < 1 || br < 1) return false;
    memcpy(ad, a->dims, sizeof(int64_t) * (size_t)ar);
    memcpy(bd, b->dims, sizeof(int64_t) * (size_t)br);
    if (ar == 1) {
        ad[1] = ad[0];
        ad[0] = 1;
        ar = 2;
    }
    if (br == 1) {
        bd[1] = 1;
        br = 2;
    }
    g->M = ad[ar - 2];
    g->K = ad[ar - 1];
    g->N = bd[br - 1];
    if (bd[br - 2] != g->K) return false;
    int32_t na = ar - 2, nb = br - 2;
    g->brank = na > nb ? na : nb;
    if (g->brank > MDL_MAX_RANK - 2) return false;
    int64_t as = 1, bs = 1;
    for (int32_t i = g->brank - 1; i >= 0; i--) {
        int32_t ia = i - (g->brank - na), ib = i - (g->brank - nb);
        int64_t da = ia >= 0 ? ad[ia] : 1, db = ib >= 0 ? bd[ib] : 1;
        if (da != db && da != 1 && db != 1) return false;
        g->bdims[i] = da > db ? da : db;
        if (da == 0 || db == 0) g->bdims[i] = 0;
        g->astride[i] = da == 1 ? 0 : as;
        g->bstride[i] = db == 1 ? 0 : bs;
        as *= da;
        bs *= db;
    }
    return true;
}

/* Whether B is a weight matrix for the GEMM core: constant, 2-D, symmetric. */
static bool mm_core(const mdl__tensor *b) {
    if (!b->data || b->rank != 2) return false;
    for (int32_t i = 0; i < b->nquant; i++)
        if (b->zero_point[i] != 0) return false;
    return true;
}

/* The loops' packed data: header, then a multiplier per column. */
#define MM_MAGIC 0x384D4D51u /* "QMM8" */
typedef struct mm_pack {
    uint32_t magic;
    int32_t zb, zy, lo, hi, reserved;
    int64_t n;
} mm_pack;

static mdl_status mm_check(const mdl__kctx *c, mdl__qio *io, mm_geom *g) {
    const mdl__tensor *a = c->nin > 0 ? c->in[0] : NULL, *b = c->nin > 1 ? c->in[1] : NULL;
    char s1[64], s2[64];
    mdl_status st;
    if (c->nin != 2 || c->nout != 1 || !a || !b)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects inputs A, B and one output");
    if ((st = mdl__qcheck_io(c, a, NULL, io)) != MDL_OK) return st;
    if (b->dtype != MDL_DTYPE_INT8)
        return mdl__fail(c, MDL_DTYPE, "B '%s' is %s, expected int8", tname(b),
                         mdl_dtype_name(b->dtype));
    if ((st = mdl__quant_check(b, c->err)) != MDL_OK) return st;
    if (!mm_geometry(a, b, g))
        return mdl__fail(c, MDL_SHAPE, "cannot multiply %s by %s",
                         mdl__dims_str(s1, sizeof s1, a->rank, a->dims),
                         mdl__dims_str(s2, sizeof s2, b->rank, b->dims));
    if (b->nquant < 1)
        return mdl__fail(c, MDL_UNSUPPORTED, "B '%s' has no quantization parameters", tname(b));
    if (b->nquant > 1) {
        /* per column: only for constant weights, symmetric, on the last axis */
        if (!b->data || b->rank < 2)
            return mdl__fail(c, MDL_UNSUPPORTED,
                             "B '%s' has per-channel scales but is not a constant matrix",
                             tname(b));
        if ((st = mdl__qcheck_weight(c, b, b->rank - 1)) != MDL_OK) return st;
    }
    if (!mm_core(b) && g->K > INT32_MAX / (255 * 255))
        return mdl__fail(c, MDL_UNSUPPORTED,
                         "depth %lld: the int32 accumulator allows at most %d products",
                         (long long)g->K, (int)(INT32_MAX / (255 * 255)));
    for (int32_t i = 0; i < b->nquant; i++) {
        mdl__qmul m;
        double real = io->sx * (double)b->scale[i] / io->sy;
        if (!mdl__qmul_from_real(real, &m))
            return mdl__fail(c, MDL_UNSUPPORTED,
                             "requantization multiplier %g of column %d is not representable", real,
                             (int)i);
    }
    return MDL_OK;
}

static void mm_desc(const mdl__kctx *c, const mdl__qio *io, const mm_geom *g, mdl__qgemm_desc *d) {
    const mdl__tensor *b = c->in[1];
    memset(d, 0, sizeof *d);
    d->N = g->N;
    d->K = g->K;
    d->w = b->data;
    d->sn = 1;
    d->sk = g->N;
    d->za = io->zx;
    d->a_scale = io->sx;
    d->y_scale = io->sy;
    d->w_scale = b->scale;
    d->nw_scale = b->nquant;
    d->zy = io->zy;
    d->lo = io->lo;
    d->hi = io->hi;
    d->sparse = MDL__SPARSE ? b->sparse : NULL;
}

static mdl_status matmul_prepare(mdl__kctx *c) {
    mdl__qio io;
    mm_geom g;
    mdl_status st = mm_check(c, &io, &g);
    if (st != MDL_OK) return st;
    const mdl__tensor *a = c->in[0], *b = c->in[1];
    mdl__shape *o = &c->out_shape[0];
    o->dtype = MDL_DTYPE_INT8;
    o->rank = 0;
    for (int32_t i = 0; i < g.brank; i++)
        o->dims[o->rank++] = g.bdims[i];
    if (a->rank > 1) o->dims[o->rank++] = g.M;
    if (b->rank > 1) o->dims[o->rank++] = g.N;
    if (MDL__SPARSE && b->sparse && (!mm_core(b) || !b->sparse_transposed || g.K < 1 || g.N < 1))
        return mdl__fail(c, MDL_CORRUPT_MODEL, "block-sparse B '%s' must be a 2-D symmetric weight "
                         "stored transposed", tname(b));
    if (mm_core(b) && g.K >= 1 && g.N >= 1) {
        mdl__qgemm_desc d;
        mm_desc(c, &io, &g, &d);
        if ((st = mdl__qgemm_check(c, tname(b), &d)) != MDL_OK) return st;
        c->packed_bytes = mdl__qgemm_pack_bytes(weight_variant(b), g.N, g.K);
        c->scratch_bytes = mdl__qgemm_scratch_bytes(g.N, g.K);
    } else {
        c->packed_bytes = sizeof(mm_pack) + sizeof(mdl__qmul) * (size_t)b->nquant;
        if ((uint64_t)g.N > SIZE_MAX / sizeof(int32_t))
            return mdl__fail(c, MDL_SHAPE, "B '%s' is too large", tname(b));
        c->scratch_bytes = (size_t)g.N * sizeof(int32_t); /* one row of sums */
    }
    if (!c->packed_bytes) return mdl__fail(c, MDL_SHAPE, "B '%s' is too large", tname(b));
    return MDL_OK;
}

static mdl_status matmul_pack(mdl__kctx *c) {
    mdl__qio io;
    mm_geom g;
    if (mm_check(c, &io, &g) != MDL_OK) return MDL_INTERNAL;
    const mdl__tensor *b = c->in[1];
    if (mm_core(b) && g.K >= 1 && g.N >= 1) {
        mdl__qgemm_desc d;
        mm_desc(c, &io, &g, &d);
        mdl__qgemm_pack(weight_variant(b), &d, c->packed);
        return MDL_OK;
    }
    mm_pack h = {MM_MAGIC, (int32_t)b->zero_point[0], io.zy, io.lo, io.hi, 0, b->nquant};
    memcpy(c->packed, &h, sizeof h);
    mdl__qmul *mul = (mdl__qmul *)((unsigned char *)c->packed + sizeof h);
    for (int32_t i = 0; i < b->nquant; i++)
        mdl__qmul_from_real(io.sx * (double)b->scale[i] / io.sy, &mul[i]);
    return MDL_OK;
}

/* One [M,K] x [K,N] product of the loops, a row of C at a time in acc (N int32):
   sum_k (a - za)(b - zb) = sum_k (a - za) b - zb sum_k (a - za), the first sum one streaming
   pass over B's rows per row of A.  Every partial sum is below K * 255 * 128 and the result
   below K * 255^2 (K checked in prepare). */
static void mm_loops(const mm_geom *g, const mm_pack *h, const mdl__qmul *mul, int32_t za,
                     const int8_t *A, const int8_t *B, int8_t *C, int32_t *acc) {
    for (int64_t m = 0; m < g->M; m++) {
        const int8_t *a = A + m * g->K;
        int32_t asum = 0;
        memset(acc, 0, (size_t)g->N * sizeof *acc);
        for (int64_t k = 0; k < g->K; k++) {
            const int32_t av = (int32_t)a[k] - za;
            asum += av;
            if (av) mdl__qaxpy(acc, av, B + k * g->N, g->N);
        }
        for (int64_t n = 0; n < g->N; n++)
            C[m * g->N + n] = (int8_t)mdl__requant(acc[n] - h->zb * asum, mul[h->n > 1 ? n : 0],
                                                   h->zy, h->lo, h->hi);
    }
}

static mdl_status matmul_run(mdl__kctx *c) {
    if (!c->packed) return mdl__fail(c, MDL_INTERNAL, "runs only with the data packed at load");
    const mdl__tensor *a = c->in[0], *b = c->in[1];
    mm_geom g;
    mm_geometry(a, b, &g);
    const int8_t *A = c->in_data[0], *B = c->in_data[1];
    int8_t *C = c->out_data[0];
    if (mm_core(b) && g.K >= 1 && g.N >= 1) {
        /* B is 2-D: every row of A, whatever its batch, meets the same B */
        mdl__qgemm_run_par(c, c->packed, a->count / g.K, g.N, g.K, A, g.K, B, 1, g.N, C, g.N);
        return MDL_OK;
    }
    if (!g.M || !g.N) return MDL_OK; /* empty output */
    mm_pack h;
    memcpy(&h, c->packed, sizeof h);
    if (h.magic != MM_MAGIC) return mdl__fail(c, MDL_INTERNAL, "packed data of another kind");
    const mdl__qmul *mul = (const mdl__qmul *)((const unsigned char *)c->packed + sizeof h);
    const int32_t za = (int32_t)a->zero_point[0];
    int64_t nbatch = 1, idx[MDL_MAX_RANK] = {0};
    for (int32_t i = 0; i < g.brank; i++)
        nbatch *= g.bdims[i];
    for (int64_t n = 0; n < nbatch; n++) {
        int64_t ao = 0, bo = 0;
        for (int32_t i = 0; i < g.brank; i++) {
            ao += idx[i] * g.astride[i];
            bo += idx[i] * g.bstride[i];
        }
        mm_loops(&g, &h, mul, za, A + ao * g.M * g.K, B + bo * g.K * g.N, C + n * g.M * g.N,
                 c->scratch);
        for (int32_t i = g.brank - 1; i >= 0; i--) {
            if (++idx[i] < g.bdims[i]) break;
            idx[i] = 0;
        }
    }
    return MDL_OK;
}

const mdl__kernel mdl__matmul_int8 = {.prepare = matmul_prepare,
                                      .run = matmul_run,
                                      .pack = matmul_pack,
                                      .flags = MDL__KERNEL_SPARSE_W | MDL__KERNEL_WORKER_SCRATCH};
