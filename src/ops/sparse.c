/* Block-sparse weights (8x1 blocks) and the sparse matrix product: building, the reference
   product, and the dispatch to the x86 variants.  See sparse.h for the layout and contract. */
#include "sparse.h"

#include "ops.h"

#include <math.h>
#include <string.h>

#ifdef MDL_HAVE_X86_SIMD
#include "x86/x86.h"
#endif

/* Element i of W (float32, or int8 with s8) is non-zero (NaN counts as non-zero). */
static inline bool nonzero_at(const void *W, int64_t i, bool s8) {
    if (s8) return ((const int8_t *)W)[i] != 0;
    float v = ((const float *)W)[i];
    return v != 0.0f || isnan(v);
}

static int block_nonzero(int64_t N, const void *W, int64_t ldw, int64_t n0, int64_t k, bool s8) {
    for (int64_t r = n0; r < n0 + MDL_SPARSE_BN && r < N; r++)
        if (nonzero_at(W, r * ldw + k, s8)) return 1;
    return 0;
}

static int64_t count(int64_t N, int64_t K, const void *W, int64_t ldw, bool s8) {
    int64_t n = 0;
    for (int64_t n0 = 0; n0 < N; n0 += MDL_SPARSE_BN)
        for (int64_t k = 0; k < K; k++)
            n += block_nonzero(N, W, ldw, n0, k, s8);
    return n;
}

int64_t mdl__bsr_count(int64_t N, int64_t K, const float *W, int64_t ldw) { return count(N, K, W, ldw, false); }
int64_t mdl__bsr_count_s8(int64_t N, int64_t K, const int8_t *W, int64_t ldw) { return count(N, K, W, ldw, true); }

static size_t bytes_of(int64_t N, int64_t nblocks, size_t esize) {
    size_t vals = (size_t)nblocks * MDL_SPARSE_BN * esize;
    vals = (vals + 3) & ~(size_t)3; /* the int32 index after the values */
    return vals + (size_t)(mdl__bsr_groups(N) + 1) * sizeof(int32_t) +
           (size_t)nblocks * sizeof(int32_t);
}

size_t mdl__bsr_bytes(int64_t N, int64_t nblocks) { return bytes_of(N, nblocks, sizeof(float)); }
size_t mdl__bsr_bytes_s8(int64_t N, int64_t nblocks) { return bytes_of(N, nblocks, 1); }

static void build(int64_t N, int64_t K, const void *W, int64_t ldw, void *mem, mdl__bsr *out, bool s8) {
    int64_t groups = mdl__bsr_groups(N), nb = count(N, K, W, ldw, s8);
    size_t esize = s8 ? 1 : sizeof(float), vbytes = ((size_t)nb * MDL_SPARSE_BN * esize + 3) & ~(size_t)3;
    unsigned char *val = mem;
    int32_t *ptr = (int32_t *)(val + vbytes), *col = ptr + groups + 1;
    int64_t j = 0;
    for (int64_t g = 0; g < groups; g++) {
        int64_t n0 = g * MDL_SPARSE_BN;
        ptr[g] = (int32_t)j;
        for (int64_t k = 0; k < K; k++) {
            if (!block_nonzero(N, W, ldw, n0, k, s8)) continue;
            col[j] = (int32_t)k;
            for (int64_t r = 0; r < MDL_SPARSE_BN; r++) {
                int64_t d = (j * MDL_SPARSE_BN + r) * (int64_t)esize, i = (n0 + r) * ldw + k;
                if (s8) val[d] = n0 + r < N ? (unsigned char)((const int8_t *)W)[i] : 0;
                else *(float *)(val + d) = n0 + r < N ? ((const float *)W)[i] : 0.0f;
            }
            j++;
        }
    }
    ptr[groups] = (int32_t)j;
    *out = (mdl__bsr){.N = N, .K = K, .nblocks = nb, .ptr = ptr, .col = col, .val = (const float *)mem};
}

void mdl__bsr_build(int64_t N, int64_t K, const float *W, int64_t ldw, void *mem, mdl__bsr *out) {
    build(N, K, W, ldw, mem, out, false);
}
void mdl__bsr_build_s8(int64_t N, int64_t K, const int8_t *W, int64_t ldw, void *mem, mdl__bsr *out) {
    build(N, K, W, ldw, mem, out, true);
}

size_t mdl__spmm_scratch_bytes(int64_t M, int64_t K) {
    return M >= 2 ? (size_t)K * MDL_SPMM_PIXELS * sizeof(float) : 0;
}

void mdl__spmm_ref(int64_t M, const float *X, int64_t ldx, const mdl__bsr *W, const float *bias,
                   float *Y, int64_t ldy, float lo, float hi, void *scratch) {
    (void)scratch;
    int64_t groups = mdl__bsr_groups(W->N);
    for (int64_t m = 0; m < M; m++) {
        const float *x = X + m * ldx;
        for (int64_t g = 0; g < groups; g++) {
            float s[MDL_SPARSE_BN] = {0};
            for (int32_t j = W->ptr[g]; j < W->ptr[g + 1]; j++) {
                float xv = x[W->col[j]];
                const float *w = W->val + (int64_t)j * MDL_SPARSE_BN;
                for (int r = 0; r < MDL_SPARSE_BN; r++)
                    s[r] = fmaf(w[r], xv, s[r]);
            }
            for (int64_t r = 0, n = g * MDL_SPARSE_BN; r < MDL_SPARSE_BN && n < W->N; r++, n++)
                Y[m * ldy + n] = mdl__clampf(bias ? s[r] + bias[n] : s[r], lo, hi);
        }
    }
}

void mdl__spmm(int64_t M, const float *X, int64_t ldx, const mdl__bsr *W, const float *bias,
               float *Y, int64_t ldy, float lo, float hi, void *scratch) {
#ifdef MDL_HAVE_X86_SIMD
    int level = mdl__cpu_level();
    if (level >= MDL_CPU_AVX512) {
        mdl__spmm_avx512(M, X, ldx, W, bias, Y, ldy, lo, hi, scratch);
        return;
    }
    if (level >= MDL_CPU_AVX2) {
        mdl__spmm_avx2(M, X, ldx, W, bias, Y, ldy, lo, hi, scratch);
        return;
    }
#endif
    mdl__spmm_ref(M, X, ldx, W, bias, Y, ldy, lo, hi, scratch);
}

/* ---- split over workers ----------------------------------------------------------------- */

#define SPMM_PAR_MIN_MACS ((int64_t)1 << 16)

typedef struct spmm_job {
    const mdl__kctx *c;
    int64_t M, ldx, ldy, step; /* step: rows (by_rows) or row groups per task */
    const float *X, *bias;
    const mdl__bsr *W;
    float *Y, lo, hi;
    bool by_rows;
} spmm_job;

static void spmm_task(void *arg, int64_t t, int worker) {
    const spmm_job *j = arg;
    void *scratch = mdl__spmm_scratch_align(mdl__par_scratch(j->c, worker));
    const mdl__bsr *W = j->W;
    if (j->by_rows) {
        int64_t m0 = t * j->step, m = j->M - m0 < j->step ? j->M - m0 : j->step;
        mdl__spmm(m, j->X + m0 * j->ldx, j->ldx, W, j->bias, j->Y + m0 * j->ldy, j->ldy, j->lo, j->hi,
                  scratch);
        return;
    }
    /* row groups g0 .. g1 - 1: the same blocks, their offsets read from g0 on */
    int64_t g0 = t * j->step, n0 = g0 * MDL_SPARSE_BN, g1 = g0 + j->step;
    if (g1 > mdl__bsr_groups(W->N)) g1 = mdl__bsr_groups(W->N);
    mdl__bsr part = {.N = (g1 * MDL_SPARSE_BN < W->N ? g1 * MDL_SPARSE_BN : W->N) - n0, .K = W->K,
                     .nblocks = W->ptr[g1] - W->ptr[g0], .ptr = W->ptr + g0, .col = W->col, .val = W->val};
    mdl__spmm(j->M, j->X, j->ldx, &part, j->bias ? j->bias + n0 : NULL, j->Y + n0, j->ldy, j->lo, j->hi,
              scratch);
}

void mdl__spmm_par(const mdl__kctx *c, int64_t M, const float *X, int64_t ldx, const mdl__bsr *W,
                   const float *bias, float *Y, int64_t ldy, float lo, float hi) {
    int nw = mdl__par_workers(c->par);
    int64_t groups = mdl__bsr_groups(W->N);
    if (nw < 2 || M * W->nblocks * MDL_SPARSE_BN < SPMM_PAR_MIN_MACS || (M < 4 * MDL_SPMM_PIXELS && groups < 2)) {
        mdl__spmm(M, X, ldx, W, bias, Y, ldy, lo, hi, mdl__spmm_scratch_align(c->scratch));
        return;
    }
    spmm_job j = {.c = c, .M = M, .ldx = ldx, .ldy = ldy, .X = X, .bias = bias, .W = W, .Y = Y,
                  .lo = lo, .hi = hi, .by_rows = M >= 4 * MDL_SPMM_PIXELS};
    /* rows: whole tiles, about 4 tasks per worker; groups: the same */
    int64_t tasks = 4 * (int64_t)nw, units = j.by_rows ? (M + MDL_SPMM_PIXELS - 1) / MDL_SPMM_PIXELS : groups;
    int64_t per = (units + tasks - 1) / tasks;
    j.step = j.by_rows ? per * MDL_SPMM_PIXELS : per;
    mdl__par_for(c->par, ((j.by_rows ? M : groups) + j.step - 1) / j.step, spmm_task, &j);
}

/* ---- int8 ---------------------------------------------------------------------------------- */

#include "int8.h"

void mdl__qspmm_ref(const mdl__qgemm_packed *p, const mdl__bsr *W, int64_t M, const int8_t *A,
                    int64_t lda, int8_t *C, int64_t ldc) {
    const int64_t groups = mdl__bsr_groups(W->N);
    for (int64_t m = 0; m < M; m++) {
        const int8_t *a = A + m * lda;
        for (int64_t g = 0; g < groups; g++) {
            const int64_t n0 = g * MDL_SPARSE_BN, nr = W->N - n0 < MDL_SPARSE_BN ? W->N - n0 : MDL_SPARSE_BN;
            int32_t s[MDL_SPARSE_BN] = {0};
            for (int32_t j = W->ptr[g]; j < W->ptr[g + 1]; j++) {
                const int32_t av = a[W->col[j]];
                const int8_t *w = W->val8 + (int64_t)j * MDL_SPARSE_BN;
                for (int r = 0; r < MDL_SPARSE_BN; r++) s[r] += (int32_t)w[r] * av;
            }
            for (int64_t r = 0; r < nr; r++) {
                mdl__qmul q = {p->mult[n0 + r], p->shift[n0 + r]};
                C[m * ldc + n0 + r] = (int8_t)mdl__requant(s[r] + p->bias[n0 + r], q, p->zy, p->lo, p->hi);
            }
        }
    }
}

void mdl__qspmm(const mdl__qgemm_packed *p, const mdl__bsr *W, int64_t M, const int8_t *A, int64_t lda,
                int8_t *C, int64_t ldc) {
#ifdef MDL_HAVE_X86_SIMD
    if (mdl__cpu_level() >= MDL_CPU_AVX2) {
        mdl__qspmm_avx2(p, W, M, A, lda, C, ldc);
        return;
    }
#endif
    mdl__qspmm_ref(p, W, M, A, lda, C, ldc);
}
