/* Block-sparse weights (8x1 blocks) and the sparse matrix product: building, the reference
   product, and the dispatch to the x86 variants.  See sparse.h for the layout and contract. */
#include "sparse.h"

#include "ops.h"

#include <math.h>
#include <string.h>

#ifdef MDL_HAVE_X86_SIMD
#include "x86/x86.h"
#endif

static int block_nonzero(int64_t N, const float *W, int64_t ldw, int64_t n0, int64_t k) {
    for (int64_t r = n0; r < n0 + MDL_SPARSE_BN && r < N; r++)
        if (W[r * ldw + k] != 0.0f || isnan(W[r * ldw + k])) return 1;
    return 0;
}

int64_t mdl__bsr_count(int64_t N, int64_t K, const float *W, int64_t ldw) {
    int64_t n = 0;
    for (int64_t n0 = 0; n0 < N; n0 += MDL_SPARSE_BN)
        for (int64_t k = 0; k < K; k++)
            n += block_nonzero(N, W, ldw, n0, k);
    return n;
}

size_t mdl__bsr_bytes(int64_t N, int64_t nblocks) {
    size_t vals = (size_t)nblocks * MDL_SPARSE_BN * sizeof(float);
    return vals + (size_t)(mdl__bsr_groups(N) + 1) * sizeof(int32_t) +
           (size_t)nblocks * sizeof(int32_t);
}

void mdl__bsr_build(int64_t N, int64_t K, const float *W, int64_t ldw, void *mem, mdl__bsr *out) {
    int64_t groups = mdl__bsr_groups(N), nb = mdl__bsr_count(N, K, W, ldw);
    float *val = mem;
    int32_t *ptr = (int32_t *)(val + nb * MDL_SPARSE_BN), *col = ptr + groups + 1;
    int64_t j = 0;
    for (int64_t g = 0; g < groups; g++) {
        int64_t n0 = g * MDL_SPARSE_BN;
        ptr[g] = (int32_t)j;
        for (int64_t k = 0; k < K; k++) {
            if (!block_nonzero(N, W, ldw, n0, k)) continue;
            col[j] = (int32_t)k;
            for (int64_t r = 0; r < MDL_SPARSE_BN; r++)
                val[j * MDL_SPARSE_BN + r] = n0 + r < N ? W[(n0 + r) * ldw + k] : 0.0f;
            j++;
        }
    }
    ptr[groups] = (int32_t)j;
    *out = (mdl__bsr){.N = N, .K = K, .nblocks = nb, .ptr = ptr, .col = col, .val = val};
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
