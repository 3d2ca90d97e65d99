/* Float GEMM/GEMV primitives (contracts in ops.h).
 *
 * Portable builds: plain loops (mdl__gemm_nt_ref, the oracle of every other path), OpenBLAS for
 * large products of two or more rows when built with it; nothing is packed.
 *
 * x86 builds (MDL_HAVE_X86_SIMD): each call dispatches on mdl__cpu_level() (src/ops/x86/cpu.c;
 * MDL_CPU_LEVEL=0|1|2 lowers it) to the AVX-512 or AVX2 kernels of src/ops/x86/gemm_*.c:
 *   - one row, and the unpacked path with few rows: SIMD dot products over B's rows (GEMV);
 *   - two rows or more with packed weights: the register-blocked microkernel over B panels;
 *     mdl__gemm_pack lays them out once at load, behind a header naming the level, N and K, so
 *     data packed for something else is ignored (B is used instead) rather than misread.
 * OpenBLAS is kept only for level 0 (no AVX2): Debian's 0.3.21 runs its generic Prescott
 * kernels on the AVX-512 Xeon we measured on, and lost to these kernels at every size tried
 * (e.g. 3136x64x576: 26 GFLOP/s vs 135; 64x64x784: 25 vs 160; one row: 5 vs 60). */
#include "ops.h"

#include <string.h>

#ifdef MDL_WITH_BLAS
void mdl__gemm_nt_blas(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc);
void mdl__gemm_nn_blas(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc);
/* Below this many multiply-adds the call overhead of BLAS dominates (measured in make bench). */
#define MDL_BLAS_MIN_MACS ((int64_t)1 << 14)
#endif

/* Dot product with four independent accumulators so the compiler can vectorize and pipeline. */
static float dot(const float *a, const float *b, int64_t k) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= k; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < k; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static void epilogue(int64_t M, int64_t N, const float *bias, float *C, int64_t ldc, float lo,
                     float hi) {
    for (int64_t m = 0; m < M; m++) {
        float *c = C + m * ldc;
        for (int64_t n = 0; n < N; n++) c[n] = mdl__clampf(c[n] + (bias ? bias[n] : 0.0f), lo, hi);
    }
}

void mdl__gemm_nt_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc,
                      float lo, float hi) {
    /* Rows of B are contiguous: each output is one dot product (GEMV for M == 1). */
    for (int64_t m = 0; m < M; m++) {
        const float *a = A + m * lda;
        float *c = C + m * ldc;
        for (int64_t n = 0; n < N; n++) {
            float v = dot(a, B + n * ldb, K) + (bias ? bias[n] : 0.0f);
            c[n] = mdl__clampf(v, lo, hi);
        }
    }
}

/* Level 0: the portable loops, or OpenBLAS for large products when built with it. */
static void gemm_nt_portable(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                             const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc,
                             float lo, float hi) {
#ifdef MDL_WITH_BLAS
    /* One row is a GEMV over contiguous weight rows: our dot-product loop beat OpenBLAS sgemv at
       every size measured (64x64 .. 2048x512, 1 or 2 threads), so BLAS is for M >= 2 only. */
    if (M >= 2 && M * N * K >= MDL_BLAS_MIN_MACS) {
        mdl__gemm_nt_blas(M, N, K, A, lda, B, ldb, C, ldc);
        epilogue(M, N, bias, C, ldc, lo, hi);
        return;
    }
#endif
    mdl__gemm_nt_ref(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}

static void gemm_nn_portable(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                             const float *B, int64_t ldb, float *C, int64_t ldc) {
#ifdef MDL_WITH_BLAS
    if (M >= 2 && M * N * K >= MDL_BLAS_MIN_MACS) {
        mdl__gemm_nn_blas(M, N, K, A, lda, B, ldb, C, ldc);
        return;
    }
#endif
    /* i-k-j order: the inner loop streams a row of B and a row of C. */
    for (int64_t m = 0; m < M; m++) {
        float *c = C + m * ldc;
        memset(c, 0, (size_t)N * sizeof *c);
        for (int64_t k = 0; k < K; k++) {
            float a = A[m * lda + k];
            const float *b = B + k * ldb;
            for (int64_t n = 0; n < N; n++) c[n] += a * b[n];
        }
    }
}

#ifndef MDL_HAVE_X86_SIMD

/* ---- portable build: no packing -------------------------------------------------------------
   The reference kernel reads B's rows directly, which is already the ideal order for dot
   products, so nothing is packed. */

void mdl__gemm_nt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, const float *bias, float *C, int64_t ldc, float lo, float hi) {
    gemm_nt_portable(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}

void mdl__gemm_nn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float *C, int64_t ldc) {
    gemm_nn_portable(M, N, K, A, lda, B, ldb, C, ldc);
}

size_t mdl__gemm_pack_bytes(int64_t N, int64_t K) {
    (void)N;
    (void)K;
    return 0;
}

void mdl__gemm_pack(int64_t N, int64_t K, const float *B, int64_t ldb, void *packed) {
    (void)N;
    (void)K;
    (void)B;
    (void)ldb;
    (void)packed;
}

void mdl__gemm_nt_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, const void *packed, const float *bias,
                         float *C, int64_t ldc, float lo, float hi) {
    (void)packed;
    gemm_nt_portable(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}

void mdl__gemm_pack_kn(int64_t N, int64_t K, const float *B, int64_t ldb, void *packed) {
    mdl__gemm_pack(N, K, B, ldb, packed);
}

void mdl__gemm_nn_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, const void *packed, const float *bias,
                         float *C, int64_t ldc, float lo, float hi) {
    (void)packed;
    if (M <= 0 || N <= 0) return;
    gemm_nn_portable(M, N, K, A, lda, B, ldb, C, ldc);
    epilogue(M, N, bias, C, ldc, lo, hi);
}

#else /* MDL_HAVE_X86_SIMD */

/* ---- x86: dispatch by CPU level ------------------------------------------------------------ */
#include "x86/x86.h"

/* From this many rows of A packed panels are used; below, B's rows are read as they are (a GEMV
   gains nothing from panels).  At 2-3 rows both stream B from L2 once and trade places (dot
   tiles up to 20% ahead at K = 784, behind at K = 64); from 4 rows the microkernel is 2x ahead. */
#define PACKED_MIN_M 2

void mdl__gemm_nt_level(int level, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc,
                        float lo, float hi) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || level <= MDL_CPU_PORTABLE)
        gemm_nt_portable(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
    else if (level == MDL_CPU_AVX2)
        mdl__gemm_nt_avx2(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
    else
        mdl__gemm_nt_avx512(M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}

void mdl__gemm_nn_level(int level, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || level <= MDL_CPU_PORTABLE)
        gemm_nn_portable(M, N, K, A, lda, B, ldb, C, ldc);
    else if (level == MDL_CPU_AVX2)
        mdl__gemm_nn_avx2(M, N, K, A, lda, B, ldb, C, ldc);
    else
        mdl__gemm_nn_avx512(M, N, K, A, lda, B, ldb, C, ldc);
}

/* Packed weights: a 64-byte header saying what the panels were made for (so that a model packed
   under another level, e.g. with another MDL_CPU_LEVEL, or a caller's wrong N/K falls back to B
   instead of misreading), then the panels of x86.h, 64-byte aligned. */
#define PACK_MAGIC 0x4B504D47u /* "GMPK" */
#define PACK_HEADER 64
typedef struct pack_header {
    uint32_t magic;
    int32_t level, nr, reserved;
    int64_t n, k;
} pack_header;
_Static_assert(sizeof(pack_header) <= PACK_HEADER, "pack header");

static int64_t panel_width(int level) {
    return level == MDL_CPU_AVX512 ? MDL_GEMM_NR_AVX512 : MDL_GEMM_NR_AVX2;
}

size_t mdl__gemm_pack_bytes_level(int level, int64_t N, int64_t K) {
    if (level <= MDL_CPU_PORTABLE || N <= 0 || K <= 0) return 0;
    int64_t half = panel_width(level) / 2;
    uint64_t cols = ((uint64_t)N + (uint64_t)half - 1) / (uint64_t)half * (uint64_t)half;
    size_t floats, bytes;
    if (__builtin_mul_overflow(cols, (uint64_t)K, &floats) ||
        __builtin_mul_overflow(floats, sizeof(float), &bytes) ||
        __builtin_add_overflow(bytes, (size_t)PACK_HEADER, &bytes))
        return 0; /* too large to pack: the caller keeps using B */
    return bytes;
}

/* Element (n, k) of B is at B[n * sn + k * sk]: [N,K] rows (sn = ldb, sk = 1) or [K,N] rows
   (sn = 1, sk = ldb); both give the same panels. */
static void pack_strided(int level, int64_t N, int64_t K, const float *B, int64_t sn, int64_t sk,
                         void *packed) {
    if (!mdl__gemm_pack_bytes_level(level, N, K)) return;
    int64_t nr = panel_width(level);
    pack_header h = {PACK_MAGIC, level, (int32_t)nr, 0, N, K};
    memset(packed, 0, PACK_HEADER);
    memcpy(packed, &h, sizeof h);
    float *p = (float *)((unsigned char *)packed + PACK_HEADER);
    for (int64_t j0 = 0; j0 < N;) {
        int64_t w = N - j0 <= nr / 2 ? nr / 2 : nr, nv = N - j0 < w ? N - j0 : w;
        for (int64_t k = 0; k < K; k++, p += w) {
            for (int64_t j = 0; j < nv; j++) p[j] = B[(j0 + j) * sn + k * sk];
            for (int64_t j = nv; j < w; j++) p[j] = 0.0f;
        }
        j0 += w;
    }
}

void mdl__gemm_pack_level(int level, int64_t N, int64_t K, const float *B, int64_t ldb,
                          void *packed) {
    pack_strided(level, N, K, B, ldb, 1, packed);
}

void mdl__gemm_pack_kn_level(int level, int64_t N, int64_t K, const float *B, int64_t ldb,
                             void *packed) {
    pack_strided(level, N, K, B, 1, ldb, packed);
}

/* Runs the microkernel over `packed` if it was packed for this level, N and K (and returns
   true); false leaves C alone. */
static const float *panels_for(int level, int64_t N, int64_t K, const void *packed) {
    if (!packed || level <= MDL_CPU_PORTABLE || K <= 0) return NULL;
    pack_header h;
    memcpy(&h, packed, sizeof h);
    if (h.magic != PACK_MAGIC || h.level != level || h.n != N || h.k != K) return NULL;
    return (const float *)((const unsigned char *)packed + PACK_HEADER);
}

static bool run_panels(int level, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const void *packed, const float *bias, float *C, int64_t ldc, float lo,
                       float hi) {
    const float *panels = panels_for(level, N, K, packed);
    if (!panels) return false;
    if (level == MDL_CPU_AVX2)
        mdl__gemm_panels_avx2(M, N, K, A, lda, panels, bias, C, ldc, lo, hi);
    else
        mdl__gemm_panels_avx512(M, N, K, A, lda, panels, bias, C, ldc, lo, hi);
    return true;
}

void mdl__gemm_nt_packed_level(int level, int64_t M, int64_t N, int64_t K, const float *A,
                               int64_t lda, const float *B, int64_t ldb, const void *packed,
                               const float *bias, float *C, int64_t ldc, float lo, float hi) {
    if (M <= 0 || N <= 0) return;
    /* Fewer rows than PACKED_MIN_M read B's rows as they are (a GEMV gains nothing from
       panels).  So does a B under a quarter panel wide: it wastes most of each panel vector,
       while long dot products amortize their horizontal sums (63x8x784: 68 GFLOP/s in panels,
       116 in dot tiles). */
    bool narrow = N <= panel_width(level) / 4 && K >= 128;
    if (((M >= PACKED_MIN_M && !narrow) || !B) &&
        run_panels(level, M, N, K, A, lda, packed, bias, C, ldc, lo, hi))
        return;
    mdl__gemm_nt_level(level, M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}

void mdl__gemm_nn_packed_level(int level, int64_t M, int64_t N, int64_t K, const float *A,
                               int64_t lda, const float *B, int64_t ldb, const void *packed,
                               const float *bias, float *C, int64_t ldc, float lo, float hi) {
    if (M <= 0 || N <= 0) return;
    /* B [K,N] has no contiguous rows for dot products: the panels serve every M. */
    if (run_panels(level, M, N, K, A, lda, packed, bias, C, ldc, lo, hi)) return;
    mdl__gemm_nn_level(level, M, N, K, A, lda, B, ldb, C, ldc);
    epilogue(M, N, bias, C, ldc, lo, hi);
}

void mdl__gemm_nt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, const float *bias, float *C, int64_t ldc, float lo, float hi) {
    mdl__gemm_nt_level(mdl__cpu_level(), M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
}

void mdl__gemm_nn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float *C, int64_t ldc) {
    mdl__gemm_nn_level(mdl__cpu_level(), M, N, K, A, lda, B, ldb, C, ldc);
}

size_t mdl__gemm_pack_bytes(int64_t N, int64_t K) {
    return mdl__gemm_pack_bytes_level(mdl__cpu_level(), N, K);
}

void mdl__gemm_pack(int64_t N, int64_t K, const float *B, int64_t ldb, void *packed) {
    mdl__gemm_pack_level(mdl__cpu_level(), N, K, B, ldb, packed);
}

void mdl__gemm_nt_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, const void *packed, const float *bias,
                         float *C, int64_t ldc, float lo, float hi) {
    mdl__gemm_nt_packed_level(mdl__cpu_level(), M, N, K, A, lda, B, ldb, packed, bias, C, ldc, lo,
                              hi);
}

void mdl__gemm_pack_kn(int64_t N, int64_t K, const float *B, int64_t ldb, void *packed) {
    mdl__gemm_pack_kn_level(mdl__cpu_level(), N, K, B, ldb, packed);
}

void mdl__gemm_nn_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, const void *packed, const float *bias,
                         float *C, int64_t ldc, float lo, float hi) {
    mdl__gemm_nn_packed_level(mdl__cpu_level(), M, N, K, A, lda, B, ldb, packed, bias, C, ldc, lo,
                              hi);
}

#endif

/* ---- parallel split ----------------------------------------------------------------------------
   A product is cut into row or column blocks whose elements are computed exactly as the whole
   call computes them: the path (panels, dot tiles, repacked blocks, BLAS, loops) is chosen once
   from the whole product, and the blocks follow its granules (x86.h: row blocks of the
   microkernel, whole panels).  OpenBLAS, where it is used (no AVX2), is not split: its sums
   depend on how the rows are cut (measured: 7 one-row calls differ from one 7-row call), so it
   gets the whole product, on the worker that reaches it, and OPENBLAS_NUM_THREADS decides its
   own threads (keep it at 1 beside session threads, or the two pools oversubscribe the cores);
   im2col tiles still run on all workers, one whole tile per call as without threads. */

enum { JOB_NONE, JOB_REF_NT, JOB_BLAS_NT, JOB_PORTABLE_NN, JOB_X86 };

typedef struct gemm_job {
    int path, level, kind;
    bool blas, epi; /* JOB_PORTABLE_NN: through BLAS; NN: bias and clamp after the product */
    int64_t M, N, K;
    const float *A, *B, *bias;
    int64_t lda, ldb, ldc;
    float *C;
    float lo, hi;
    int64_t mg, ng;                     /* granules */
    int64_t mstep, nstep, ncols;        /* the split: block sizes, column blocks per row block */
} gemm_job;

static void job_base(gemm_job *j, int level, int64_t M, int64_t N, int64_t K, const float *A,
                     int64_t lda, const float *B, int64_t ldb, const float *bias, float *C,
                     int64_t ldc, float lo, float hi) {
    memset(j, 0, sizeof *j);
    j->level = level;
    j->M = M, j->N = N, j->K = K, j->A = A, j->lda = lda, j->B = B, j->ldb = ldb;
    j->bias = bias, j->C = C, j->ldc = ldc, j->lo = lo, j->hi = hi;
    j->mg = j->ng = 1;
    j->path = M <= 0 || N <= 0 ? JOB_NONE : JOB_REF_NT;
}

#ifdef MDL_HAVE_X86_SIMD
static void job_x86(gemm_job *j, int kind, const float *B) {
    mdl__gemm_part p = {kind, j->M, j->N, j->K, j->A, B, j->bias, j->lda, j->ldb, j->ldc, j->C,
                        j->lo, j->hi};
    j->path = JOB_X86;
    j->kind = kind;
    j->B = B;
    if (j->level == MDL_CPU_AVX2) mdl__gemm_part_grain_avx2(&p, &j->mg, &j->ng);
    else mdl__gemm_part_grain_avx512(&p, &j->mg, &j->ng);
}
#endif

static void job_nt(gemm_job *j, int level, int64_t M, int64_t N, int64_t K, const float *A,
                   int64_t lda, const float *B, int64_t ldb, const void *packed, const float *bias,
                   float *C, int64_t ldc, float lo, float hi) {
    job_base(j, level, M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
    if (j->path == JOB_NONE) return;
#ifdef MDL_HAVE_X86_SIMD
    if (level > MDL_CPU_PORTABLE && K > 0) {
        /* the choices of mdl__gemm_nt_packed_level */
        bool narrow = N <= panel_width(level) / 4 && K >= 128;
        const float *panels = panels_for(level, N, K, packed);
        if (panels && ((M >= PACKED_MIN_M && !narrow) || !B)) job_x86(j, MDL_GEMM_PART_PANELS, panels);
        else job_x86(j, MDL_GEMM_PART_NT, B);
        return;
    }
#else
    (void)packed;
#endif
#ifdef MDL_WITH_BLAS
    if (M >= 2 && M * N * K >= MDL_BLAS_MIN_MACS) {
        j->path = JOB_BLAS_NT;
        j->mg = M; /* OpenBLAS's sums depend on how the rows are cut: it gets the whole product */
        j->ng = N;
    }
#endif
}

static void job_nn(gemm_job *j, int level, int64_t M, int64_t N, int64_t K, const float *A,
                   int64_t lda, const float *B, int64_t ldb, const void *packed, const float *bias,
                   float *C, int64_t ldc, float lo, float hi) {
    job_base(j, level, M, N, K, A, lda, B, ldb, bias, C, ldc, lo, hi);
    if (j->path == JOB_NONE) return;
    j->epi = true;
#ifdef MDL_HAVE_X86_SIMD
    if (level > MDL_CPU_PORTABLE && K > 0) {
        const float *panels = panels_for(level, N, K, packed);
        if (panels) {
            j->epi = false;
            job_x86(j, MDL_GEMM_PART_PANELS, panels);
        } else {
            job_x86(j, MDL_GEMM_PART_NN, B);
        }
        return;
    }
#else
    (void)packed;
#endif
    j->path = JOB_PORTABLE_NN;
#ifdef MDL_WITH_BLAS
    j->blas = M >= 2 && M * N * K >= MDL_BLAS_MIN_MACS;
    if (j->blas) j->mg = M; /* as in job_nt */
#endif
    j->ng = N;
}

/* Rows [m0, m1) x columns [n0, n1) of the job (on its granules). */
static void job_part(const gemm_job *j, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (m1 <= m0 || n1 <= n0) return;
    const float *bias = j->bias ? j->bias + n0 : NULL;
    switch (j->path) {
    case JOB_NONE: return;
    case JOB_REF_NT:
        mdl__gemm_nt_ref(m1 - m0, n1 - n0, j->K, j->A + m0 * j->lda, j->lda, j->B + n0 * j->ldb,
                         j->ldb, bias, j->C + m0 * j->ldc + n0, j->ldc, j->lo, j->hi);
        return;
#ifdef MDL_WITH_BLAS
    case JOB_BLAS_NT:
        mdl__gemm_nt_blas(m1 - m0, j->N, j->K, j->A + m0 * j->lda, j->lda, j->B, j->ldb,
                          j->C + m0 * j->ldc, j->ldc);
        break;
#endif
    case JOB_PORTABLE_NN: {
        const int64_t M = m1 - m0;
        const float *A = j->A + m0 * j->lda;
        float *C = j->C + m0 * j->ldc;
#ifdef MDL_WITH_BLAS
        if (j->blas) {
            mdl__gemm_nn_blas(M, j->N, j->K, A, j->lda, j->B, j->ldb, C, j->ldc);
            break;
        }
#endif
        for (int64_t m = 0; m < M; m++) {
            float *c = C + m * j->ldc;
            memset(c, 0, (size_t)j->N * sizeof *c);
            for (int64_t k = 0; k < j->K; k++) {
                float a = A[m * j->lda + k];
                const float *b = j->B + k * j->ldb;
                for (int64_t n = 0; n < j->N; n++) c[n] += a * b[n];
            }
        }
        break;
    }
#ifdef MDL_HAVE_X86_SIMD
    case JOB_X86: {
        mdl__gemm_part p = {j->kind, j->M, j->N, j->K, j->A, j->B, j->bias, j->lda, j->ldb, j->ldc,
                            j->C, j->lo, j->hi};
        if (j->level == MDL_CPU_AVX2) mdl__gemm_part_avx2(&p, m0, m1, n0, n1);
        else mdl__gemm_part_avx512(&p, m0, m1, n0, n1);
        if (!j->epi) return;
        break;
    }
#endif
    default: return;
    }
    /* BLAS and NN products: bias and clamp over the block */
    if (j->path == JOB_BLAS_NT || j->epi)
        epilogue(m1 - m0, n1 - n0, bias, j->C + m0 * j->ldc + n0, j->ldc, j->lo, j->hi);
}

/* Below this many multiply-adds a product runs on one thread: waking a worker and sharing the
   operands costs more than it saves. */
#define PAR_MIN_MACS ((int64_t)1 << 16)
/* Blocks per worker: more than one lets a worker that got the core late catch up on the
   others' share (the machine is shared), few enough that re-reading the other operand per block
   stays cheap. */
#define PAR_BLOCKS_PER_WORKER 4

static void job_task(void *arg, int64_t t, int worker) {
    (void)worker;
    const gemm_job *j = arg;
    int64_t m0 = t / j->ncols * j->mstep, n0 = t % j->ncols * j->nstep;
    int64_t m1 = m0 + j->mstep < j->M ? m0 + j->mstep : j->M;
    int64_t n1 = n0 + j->nstep < j->N ? n0 + j->nstep : j->N;
    job_part(j, m0, m1, n0, n1);
}

/* Splits the job over p's workers (or runs it whole). */
static void job_run(gemm_job *j, const mdl__par *p) {
    if (j->path == JOB_NONE) return;
    int nw = mdl__par_workers(p);
    int64_t macs = j->M * j->N * (j->K > 0 ? j->K : 1);
    int64_t mblocks = (j->M + j->mg - 1) / j->mg, nblocks = j->ng >= j->N ? 1 : (j->N + j->ng - 1) / j->ng;
    int64_t want = (int64_t)nw * PAR_BLOCKS_PER_WORKER;
    if (want > macs / (PAR_MIN_MACS / 2)) want = macs / (PAR_MIN_MACS / 2);
    j->mstep = j->M, j->nstep = j->N, j->ncols = 1;
    if (nw < 2 || macs < PAR_MIN_MACS || want < 2 || (mblocks < 2 && nblocks < 2)) {
        job_part(j, 0, j->M, 0, j->N);
        return;
    }
    /* Split the dimension whose blocks re-read the smaller operand: column blocks each read all
       of A (M x K), row blocks all of B (N x K). */
    int64_t parts;
    if (nblocks >= 2 && (mblocks < 2 || j->M < j->N)) {
        parts = nblocks < want ? nblocks : want;
        j->nstep = (nblocks + parts - 1) / parts * j->ng;
        j->ncols = (j->N + j->nstep - 1) / j->nstep;
        parts = j->ncols;
    } else {
        parts = mblocks < want ? mblocks : want;
        j->mstep = (mblocks + parts - 1) / parts * j->mg;
        parts = (j->M + j->mstep - 1) / j->mstep;
    }
    mdl__par_for(p, parts, job_task, j);
}

static int gemm_level(void) {
#ifdef MDL_HAVE_X86_SIMD
    return mdl__cpu_level();
#else
    return 0;
#endif
}

#ifdef MDL_HAVE_X86_SIMD
#define GEMM_PAR_LEVEL_API
#else
#define GEMM_PAR_LEVEL_API static
#endif

GEMM_PAR_LEVEL_API void mdl__gemm_nt_packed_par_level(int level, const mdl__par *p, int64_t M,
                                                      int64_t N, int64_t K, const float *A,
                                                      int64_t lda, const float *B, int64_t ldb,
                                                      const void *packed, const float *bias,
                                                      float *C, int64_t ldc, float lo, float hi) {
    if (mdl__par_workers(p) < 2) { /* exactly the serial call */
#ifdef MDL_HAVE_X86_SIMD
        mdl__gemm_nt_packed_level(level, M, N, K, A, lda, B, ldb, packed, bias, C, ldc, lo, hi);
#else
        mdl__gemm_nt_packed(M, N, K, A, lda, B, ldb, packed, bias, C, ldc, lo, hi);
#endif
        return;
    }
    gemm_job j;
    job_nt(&j, level, M, N, K, A, lda, B, ldb, packed, bias, C, ldc, lo, hi);
    job_run(&j, p);
}

GEMM_PAR_LEVEL_API void mdl__gemm_nn_packed_par_level(int level, const mdl__par *p, int64_t M,
                                                      int64_t N, int64_t K, const float *A,
                                                      int64_t lda, const float *B, int64_t ldb,
                                                      const void *packed, const float *bias,
                                                      float *C, int64_t ldc, float lo, float hi) {
    if (mdl__par_workers(p) < 2) {
#ifdef MDL_HAVE_X86_SIMD
        mdl__gemm_nn_packed_level(level, M, N, K, A, lda, B, ldb, packed, bias, C, ldc, lo, hi);
#else
        mdl__gemm_nn_packed(M, N, K, A, lda, B, ldb, packed, bias, C, ldc, lo, hi);
#endif
        return;
    }
    gemm_job j;
    job_nn(&j, level, M, N, K, A, lda, B, ldb, packed, bias, C, ldc, lo, hi);
    job_run(&j, p);
}

GEMM_PAR_LEVEL_API int64_t mdl__gemm_nt_packed_granule_level(int level, int64_t M, int64_t N,
                                                             int64_t K, const float *B,
                                                             const void *packed) {
    gemm_job j;
    job_nt(&j, level, M, N, K, NULL, K, B, K, packed, NULL, NULL, N, 0, 0);
    return j.mg;
}

GEMM_PAR_LEVEL_API void mdl__gemm_nt_packed_rows_level(int level, int64_t M, int64_t m0,
                                                       int64_t m1, int64_t N, int64_t K,
                                                       const float *A, int64_t lda,
                                                       const float *B, int64_t ldb,
                                                       const void *packed, const float *bias,
                                                       float *C, int64_t ldc, float lo, float hi) {
    gemm_job j;
    job_nt(&j, level, M, N, K, A, lda, B, ldb, packed, bias, C, ldc, lo, hi);
    job_part(&j, m0, m1, 0, N);
}

void mdl__gemm_nt_packed_par(const mdl__par *p, int64_t M, int64_t N, int64_t K, const float *A,
                             int64_t lda, const float *B, int64_t ldb, const void *packed,
                             const float *bias, float *C, int64_t ldc, float lo, float hi) {
    mdl__gemm_nt_packed_par_level(gemm_level(), p, M, N, K, A, lda, B, ldb, packed, bias, C, ldc,
                                  lo, hi);
}

void mdl__gemm_nn_packed_par(const mdl__par *p, int64_t M, int64_t N, int64_t K, const float *A,
                             int64_t lda, const float *B, int64_t ldb, const void *packed,
                             const float *bias, float *C, int64_t ldc, float lo, float hi) {
    mdl__gemm_nn_packed_par_level(gemm_level(), p, M, N, K, A, lda, B, ldb, packed, bias, C, ldc,
                                  lo, hi);
}

int64_t mdl__gemm_nt_packed_granule(int64_t M, int64_t N, int64_t K, const float *B,
                                    const void *packed) {
    return mdl__gemm_nt_packed_granule_level(gemm_level(), M, N, K, B, packed);
}

void mdl__gemm_nt_packed_rows(int64_t M, int64_t m0, int64_t m1, int64_t N, int64_t K,
                              const float *A, int64_t lda, const float *B, int64_t ldb,
                              const void *packed, const float *bias, float *C, int64_t ldc,
                              float lo, float hi) {
    mdl__gemm_nt_packed_rows_level(gemm_level(), M, m0, m1, N, K, A, lda, B, ldb, packed, bias, C,
                                   ldc, lo, hi);
}
