/* Linear algebra: FullyConnected (X W^T + b with fused activation) and batched MatMul. */
#include "ops.h"
#include "sparse.h"

#include <math.h>
#include <string.h>

static mdl_status fc_prepare(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0], *w = c->nin > 1 ? c->in[1] : NULL;
    const mdl__tensor *b = c->nin > 2 ? c->in[2] : NULL;
    char s1[64], s2[64];
    if (c->nin < 2 || c->nin > 3 || c->nout != 1 || !x || !w)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects inputs X, W[, bias] and one output");
    if (x->dtype != MDL_DTYPE_FLOAT32 || w->dtype != MDL_DTYPE_FLOAT32 ||
        (b && b->dtype != MDL_DTYPE_FLOAT32))
        return mdl__fail(c, MDL_DTYPE, "float32 kernel got %s input, %s weight",
                         mdl_dtype_name(x->dtype), mdl_dtype_name(w->dtype));
    if (x->rank < 1 || w->rank != 2)
        return mdl__fail(c, MDL_SHAPE, "input %s and weight %s: need X [..., K] and W [N, K]",
                         mdl__dims_str(s1, sizeof s1, x->rank, x->dims),
                         mdl__dims_str(s2, sizeof s2, w->rank, w->dims));
    int64_t K = x->dims[x->rank - 1], N = w->dims[0];
    if (w->dims[1] != K)
        return mdl__fail(c, MDL_SHAPE, "weight %s has %lld input features, input %s has %lld",
                         mdl__dims_str(s1, sizeof s1, w->rank, w->dims), (long long)w->dims[1],
                         mdl__dims_str(s2, sizeof s2, x->rank, x->dims), (long long)K);
    if (b && (b->rank != 1 || b->dims[0] != N))
        return mdl__fail(c, MDL_SHAPE, "bias %s does not match %lld outputs",
                         mdl__dims_str(s1, sizeof s1, b->rank, b->dims), (long long)N);
    if (c->opt->fc.act.kind >= MDL_ACT_COUNT)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "unknown fused activation %d",
                         (int)c->opt->fc.act.kind);
    mdl__shape_of(&c->out_shape[0], x);
    c->out_shape[0].dims[x->rank - 1] = N;
    /* Constant weights are re-laid out once at load for the GEMM microkernel (0 bytes where this
       CPU has none).  One row (M == 1) is a GEMV, which reads W's rows as they are, so batch-1
       layers keep no second copy. */
    int64_t M = K ? x->count / K : 0;
    if (MDL__SPARSE && w->sparse) { /* block-sparse W [N, K]: the sparse product, nothing packed */
        if (w->sparse_transposed)
            return mdl__fail(c, MDL_CORRUPT_MODEL, "block-sparse weight '%s' is stored transposed",
                             w->name);
        c->scratch_bytes = mdl__spmm_kernel_scratch(M, K);
        return MDL_OK;
    }
    if (w->data && M >= 2) c->packed_bytes = mdl__gemm_pack_bytes(N, K);
    return MDL_OK;
}

static mdl_status fc_pack(mdl__kctx *c) {
    const mdl__tensor *w = c->in[1];
    mdl__gemm_pack(w->dims[0], w->dims[1], w->data, w->dims[1], c->packed);
    return MDL_OK;
}

static mdl_status fc_run(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0], *w = c->in[1];
    int64_t K = x->dims[x->rank - 1], N = w->dims[0], M = K ? x->count / K : 0;
    float lo, hi;
    mdl__act_bounds(&c->opt->fc.act, &lo, &hi);
    if (MDL__SPARSE && w->sparse) {
        mdl__spmm_par(c, M, c->in_data[0], K, w->sparse, c->nin > 2 ? (const float *)c->in_data[2] : NULL,
                      c->out_data[0], N, lo, hi);
        return MDL_OK;
    }
    /* packed is NULL when nothing was packed (or in builder runs): B is then read directly. */
    mdl__gemm_nt_packed_par(c->par, M, N, K, c->in_data[0], K, c->in_data[1], K, c->packed,
                        c->nin > 2 ? (const float *)c->in_data[2] : NULL, c->out_data[0], N, lo,
                        hi);
    return MDL_OK;
}

const mdl__kernel mdl__fc_f32 = {.prepare = fc_prepare, .run = fc_run, .pack = fc_pack,
                                 .flags = MDL__KERNEL_SPARSE_W | MDL__KERNEL_WORKER_SCRATCH};

/* MatMul: NumPy semantics.  Rank-1 operands are promoted (A: [1,K], B: [K,1]) and the promoted
   dim removed from the output; batch dims broadcast. */
typedef struct mm_geom {
    int64_t M, N, K;
    int32_t brank;                       /* broadcast batch rank */
    int64_t bdims[MDL_MAX_RANK];         /* output batch dims */
    int64_t astride[MDL_MAX_RANK], bstride[MDL_MAX_RANK]; /* per batch dim, in matrices */
} mm_geom;

static bool mm_geometry(const mdl__tensor *a, const mdl__tensor *b, mm_geom *g) {
    int64_t ad[MDL_MAX_RANK + 1], bd[MDL_MAX_RANK + 1];
    int32_t ar = a->rank, br = b->rank;
    if (ar < 1 || br < 1) return false;
    memcpy(ad, a->dims, sizeof(int64_t) * (size_t)ar);
    memcpy(bd, b->dims, sizeof(int64_t) * (size_t)br);
    if (ar == 1) { ad[1] = ad[0]; ad[0] = 1; ar = 2; }
    if (br == 1) { bd[1] = 1; br = 2; }
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

static mdl_status matmul_prepare(mdl__kctx *c) {
    const mdl__tensor *a = c->in[0], *b = c->nin > 1 ? c->in[1] : NULL;
    char s1[64], s2[64];
    if (c->nin != 2 || c->nout != 1 || !a || !b)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects inputs A, B and one output");
    if (a->dtype != MDL_DTYPE_FLOAT32 || b->dtype != MDL_DTYPE_FLOAT32)
        return mdl__fail(c, MDL_DTYPE, "float32 kernel got %s x %s", mdl_dtype_name(a->dtype),
                         mdl_dtype_name(b->dtype));
    mm_geom g;
    if (!mm_geometry(a, b, &g))
        return mdl__fail(c, MDL_SHAPE, "cannot multiply %s by %s",
                         mdl__dims_str(s1, sizeof s1, a->rank, a->dims),
                         mdl__dims_str(s2, sizeof s2, b->rank, b->dims));
    mdl__shape *o = &c->out_shape[0];
    o->dtype = MDL_DTYPE_FLOAT32;
    o->rank = 0;
    for (int32_t i = 0; i < g.brank; i++) o->dims[o->rank++] = g.bdims[i];
    if (a->rank > 1) o->dims[o->rank++] = g.M;
    if (b->rank > 1) o->dims[o->rank++] = g.N;
    if (MDL__SPARSE && b->sparse) {
        /* constant B [K, N] stored as B^T: every row of A (its batch dims contiguous) times it */
        if (!b->sparse_transposed || b->rank != 2)
            return mdl__fail(c, MDL_CORRUPT_MODEL, "block-sparse B '%s' must be 2-D and stored "
                             "transposed", b->name);
        c->scratch_bytes = mdl__spmm_kernel_scratch(a->count / g.K, g.K);
    }
    return MDL_OK;
}

static mdl_status matmul_run(mdl__kctx *c) {
    mm_geom g;
    mm_geometry(c->in[0], c->in[1], &g);
    const float *A = c->in_data[0], *B = c->in_data[1];
    float *C = c->out_data[0];
    if (MDL__SPARSE && c->in[1]->sparse) {
        mdl__spmm_par(c, c->in[0]->count / g.K, A, g.K, c->in[1]->sparse, NULL, C, g.N, -INFINITY,
                      INFINITY);
        return MDL_OK;
    }
    int64_t nbatch = 1, idx[MDL_MAX_RANK] = {0};
    for (int32_t i = 0; i < g.brank; i++) nbatch *= g.bdims[i];
    for (int64_t n = 0; n < nbatch; n++) {
        int64_t ao = 0, bo = 0;
        for (int32_t i = 0; i < g.brank; i++) {
            ao += idx[i] * g.astride[i];
            bo += idx[i] * g.bstride[i];
        }
        mdl__gemm_nn(g.M, g.N, g.K, A + ao * g.M * g.K, g.K, B + bo * g.K * g.N, g.N,
                     C + n * g.M * g.N, g.N);
        for (int32_t i = g.brank - 1; i >= 0; i--) { /* odometer over batch dims */
            if (++idx[i] < g.bdims[i]) break;
            idx[i] = 0;
        }
    }
    return MDL_OK;
}

const mdl__kernel mdl__matmul_f32 = {.prepare = matmul_prepare, .run = matmul_run,
                                     .flags = MDL__KERNEL_SPARSE_W | MDL__KERNEL_WORKER_SCRATCH};
