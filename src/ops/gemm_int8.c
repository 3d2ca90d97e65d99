/* The int8 GEMM core (contract in int8.h): multipliers and folded bias packed once, the
 * reference loops, and the dispatch to the x86 variants. */
#include "int8.h"

#include "graph/util.h"
#include "sparse.h"

#include <string.h>

#ifdef MDL_HAVE_X86_SIMD
#include "x86/int8_x86.h"
#include "x86/x86.h"
#endif

/* Fewer rows than a tile's 16 leave most of each AMX product unused, and at K = 16 the epilogue
   dominates, which the AMX kernel's trip through memory slows: VNNI does those.  From K = 24 AMX
   is faster (1x1 convolutions of MobileNetV2 with K 24 and 32: 5-13% per layer, K 16: 9%
   slower, measured with the AMX epilogue's constants per row block). */
#define AMX_MIN_ROWS 16
#define AMX_MIN_K 24

int mdl__qgemm_variant(void) {
#ifdef MDL_HAVE_X86_SIMD
    if (mdl__cpu_has_vnni()) return MDL_QGEMM_VNNI;
    if (mdl__cpu_level() >= MDL_CPU_AVX2) return MDL_QGEMM_AVX2;
#endif
    return MDL_QGEMM_REF;
}

static double channel_multiplier(const mdl__qgemm_desc *d, int64_t n) {
    double ws = d->w_scale[d->nw_scale > 1 ? n : 0];
    return d->a_scale * ws / d->y_scale;
}

mdl_status mdl__qgemm_check(const mdl__kctx *c, const char *wname, const mdl__qgemm_desc *d) {
    /* the scratch (16 bytes per k) must be addressable, also where size_t has 32 bits */
    if (d->K < 1 || d->N < 1 || (uint64_t)d->K > (SIZE_MAX - 64) / 16 ||
        (uint64_t)d->N > (SIZE_MAX - 64) / 8)
        return mdl__fail(c, MDL_UNSUPPORTED, "weight '%s': %lld x %lld is out of range", wname,
                         (long long)d->N, (long long)d->K);
    /* indices within the weight tensor: ptrdiff_t, the native word on 32-bit cores */
    const ptrdiff_t N = (ptrdiff_t)d->N, K = (ptrdiff_t)d->K, sn = (ptrdiff_t)d->sn, sk = (ptrdiff_t)d->sk;
    for (ptrdiff_t n = 0; n < N; n++) {
        mdl__qmul m;
        double real = channel_multiplier(d, n);
        if (!mdl__qmul_from_real(real, &m)) {
            return mdl__fail(c, MDL_UNSUPPORTED,
                             "requantization multiplier %g (input scale x weight '%s' scale / "
                             "output scale) of channel %lld is not representable",
                             real, wname, (long long)n);
        }
        if (!d->w && !(MDL__SPARSE && d->sparse)) continue;
        /* |bias| + 256 sum |w| bounds the folded bias (|za| <= 128) plus any partial sum of
           a * w (|a| <= 128), and the true bias + sum (a - za) w (|a - za| <= 255). */
        int64_t bound = d->bias ? d->bias[n] : 0;
        if (bound < 0) bound = -bound;
        if (MDL__SPARSE && d->sparse) {
            const mdl__bsr *W = d->sparse;
            const int64_t g = n / MDL_SPARSE_BN, r = n % MDL_SPARSE_BN;
            for (int32_t j = W->ptr[g]; j < W->ptr[g + 1] && bound <= INT32_MAX; j++) {
                int32_t v = W->val8[(int64_t)j * MDL_SPARSE_BN + r];
                bound += 256 * (v < 0 ? -v : v);
            }
        }
        for (ptrdiff_t k = 0; d->w && !(MDL__SPARSE && d->sparse) && k < K && bound <= INT32_MAX; k++) {
            int32_t v = d->w[n * sn + k * sk];
            bound += 256 * (v < 0 ? -v : v);
        }
        if (bound > INT32_MAX) {
            return mdl__fail(c, MDL_UNSUPPORTED,
                             "weight '%s' channel %lld: bias + %lld products may overflow the "
                             "int32 accumulator",
                             wname, (long long)n, (long long)d->K);
        }
    }
    return MDL_OK;
}

/* ---- packed record -------------------------------------------------------------------------
   A 64-byte header, then int32 mult[Npad], shift[Npad], bias[Npad] (Npad = N rounded up to 16,
   padding zero), then from the next 64-byte boundary the variant's weight panels (x86/int8_x86.h;
   none for the reference). */
#define PACK_MAGIC 0x38475149u /* "IQG8" */
#define PACK_HEADER 64
typedef struct pack_header {
    uint32_t magic;
    int32_t variant;
    int64_t n, k;
    int32_t zy, lo, hi, reserved;
    uint64_t panels; /* byte offset of the panels */
#if MDL__SPARSE
    const mdl__bsr *sparse; /* block-sparse weights (mdl__qgemm_desc.sparse), or NULL */
#endif
} pack_header;
_Static_assert(sizeof(pack_header) <= PACK_HEADER, "pack header");

static int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

/* Bytes of the variant's panels. */
static bool panel_bytes(int variant, int64_t N, int64_t K, uint64_t *out) {
    uint64_t cols, depth;
    switch (variant) {
#ifdef MDL_HAVE_X86_SIMD
    case MDL_QGEMM_AVX2:
        cols = (uint64_t)round_up(N, MDL_QGEMM_NR_AVX2);
        depth = (uint64_t)round_up(K, 2);
        break;
    case MDL_QGEMM_VNNI:
        cols = (uint64_t)round_up(N, MDL_QGEMM_NR_VNNI);
        depth = (uint64_t)round_up(K, 4);
        break;
#endif
    default: *out = 0; return true;
    }
    return !__builtin_mul_overflow(cols, depth, out);
}

static bool layout(int variant, int64_t N, int64_t K, uint64_t *panels, uint64_t *total) {
    if (N < 1 || K < 1 || N > MDL_MAX_ELEMENTS || K > MDL_MAX_ELEMENTS) return false;
    uint64_t pb;
    if (!panel_bytes(variant, N, K, &pb)) return false;
    *panels = mdl__align_up(PACK_HEADER + 3 * 4 * (uint64_t)round_up(N, 16), 64);
    *total = *panels + (uint64_t)round_up((int64_t)pb, 64);
    return *total >= pb && *total <= SIZE_MAX;
}

size_t mdl__qgemm_pack_bytes(int variant, int64_t N, int64_t K) {
    uint64_t panels, total;
    return layout(variant, N, K, &panels, &total) ? (size_t)total : 0;
}

size_t mdl__qgemm_scratch_bytes(int64_t N, int64_t K) {
    /* The AVX2 kernel widens MDL_QGEMM_MR_AVX2 (3) rows of A to int16 (reserved for 8 rows, so
       the kernel may grow); the reference keeps one row of int32 sums for [K,N] weights.  Both
       reserved on every CPU, so that a plan fits any machine. */
    int64_t a16 = 8 * round_up(K, 4) * 2, acc = round_up(N, 16) * 4;
    return (size_t)((a16 > acc ? a16 : acc) + 64);
}

static inline int8_t wat(const mdl__qgemm_desc *d, ptrdiff_t n, ptrdiff_t k) {
    return d->w[n * (ptrdiff_t)d->sn + k * (ptrdiff_t)d->sk];
}

void mdl__qgemm_pack(int variant, const mdl__qgemm_desc *d, void *packed) {
    uint64_t panels, total;
    if (!layout(variant, d->N, d->K, &panels, &total)) return;
    const int64_t N = d->N, K = d->K, npad = round_up(N, 16);
    unsigned char *base = packed;
    memset(base, 0, (size_t)panels);
    pack_header h = {.magic = PACK_MAGIC, .variant = variant, .n = N, .k = K, .zy = d->zy,
                     .lo = d->lo, .hi = d->hi, .panels = panels};
#if MDL__SPARSE
    h.sparse = d->sparse;
    if (h.sparse) h.variant = MDL_QGEMM_REF; /* no panels: the sparse product reads the blocks */
#endif
    memcpy(base, &h, sizeof h);
    int32_t *mult = (int32_t *)(base + PACK_HEADER), *shift = mult + npad, *bias = shift + npad;
    for (ptrdiff_t n = 0; n < (ptrdiff_t)N; n++) {
        mdl__qmul m;
        mdl__qmul_from_real(channel_multiplier(d, n), &m);
        mult[n] = m.mult;
        shift[n] = m.shift;
        int64_t colsum = 0;
#if MDL__SPARSE
        if (d->sparse) {
            const mdl__bsr *W = d->sparse;
            for (int32_t j = W->ptr[n / MDL_SPARSE_BN]; j < W->ptr[n / MDL_SPARSE_BN + 1]; j++)
                colsum += W->val8[(int64_t)j * MDL_SPARSE_BN + n % MDL_SPARSE_BN];
        } else
#endif
        for (ptrdiff_t k = 0; k < (ptrdiff_t)K; k++)
            colsum += wat(d, n, k);
        bias[n] = (int32_t)((d->bias ? d->bias[n] : 0) - (int64_t)d->za * colsum);
    }
    int8_t *p = (int8_t *)(base + panels);
    switch (h.variant) {
#ifdef MDL_HAVE_X86_SIMD
    case MDL_QGEMM_AVX2: {
        const int64_t nr = MDL_QGEMM_NR_AVX2, kp = round_up(K, 2);
        for (int64_t n0 = 0; n0 < N; n0 += nr)
            for (int64_t q = 0; q < kp; q += 2, p += 2 * nr)
                for (int64_t j = 0; j < nr; j++)
                    for (int64_t r = 0; r < 2; r++)
                        p[2 * j + r] = n0 + j < N && q + r < K ? wat(d, n0 + j, q + r) : 0;
        break;
    }
    case MDL_QGEMM_VNNI: {
        const int64_t nr = MDL_QGEMM_NR_VNNI, kq = round_up(K, 4);
        uint8_t *u = (uint8_t *)p;
        for (int64_t n0 = 0; n0 < N; n0 += nr)
            for (int64_t q = 0; q < kq; q += 4, u += 4 * nr)
                for (int64_t j = 0; j < nr; j++)
                    for (int64_t r = 0; r < 4; r++)
                        u[4 * j + r] =
                            n0 + j < N && q + r < K ? (uint8_t)(wat(d, n0 + j, q + r) + 128) : 0;
        break;
    }
#endif
    default: (void)p; break;
    }
}

/* The packed record if it is one (of any variant). */
static bool view(const void *packed, pack_header *h, mdl__qgemm_packed *v) {
    if (!packed) return false;
    memcpy(h, packed, sizeof *h);
    if (h->magic != PACK_MAGIC) return false;
    const unsigned char *base = packed;
    const int64_t npad = round_up(h->n, 16);
    v->N = h->n;
    v->K = h->k;
    v->mult = (const int32_t *)(base + PACK_HEADER);
    v->shift = v->mult + npad;
    v->bias = v->shift + npad;
    v->panels = base + h->panels;
    v->zy = h->zy;
    v->lo = h->lo;
    v->hi = h->hi;
    return true;
}

/* The reference, accumulating in int32 (no overflow: see mdl__qgemm_check) and requantizing
   with mdl__requant.  The loops run 16 elements at a time with a separate tail: gcc -O2 (very
   cheap vectorizer cost model) vectorizes that form and not a 4-wide one (2.4 -> ~8 GMAC/s on
   x86 without AVX2); on a Cortex-M they are plain loops. */
static int32_t dot_i8(const int8_t *restrict a, const int8_t *restrict w, ptrdiff_t K) {
    int32_t s[16] = {0}, t = 0;
    ptrdiff_t k = 0;
    for (; k + 16 <= K; k += 16)
        for (int j = 0; j < 16; j++)
            s[j] += (int32_t)a[k + j] * w[k + j];
    for (int j = 0; j < 16; j++)
        t += s[j];
    for (; k < K; k++)
        t += (int32_t)a[k] * w[k];
    return t;
}

void mdl__qaxpy(int32_t *restrict acc, int32_t a, const int8_t *restrict w, int64_t N64) {
    const ptrdiff_t N = (ptrdiff_t)N64; /* a row in memory: the native word on 32-bit cores */
    ptrdiff_t n = 0;
    for (; n + 16 <= N; n += 16)
        for (int j = 0; j < 16; j++)
            acc[n + j] += a * w[n + j];
    for (; n < N; n++)
        acc[n] += a * w[n];
}

/* Sizes and strides of matrices in memory: ptrdiff_t, the native word on 32-bit cores. */
static void run_ref(const mdl__qgemm_packed *p, ptrdiff_t M, const int8_t *A, ptrdiff_t lda,
                    const int8_t *w, ptrdiff_t sn, ptrdiff_t sk, int8_t *C, ptrdiff_t ldc, int32_t *acc) {
    const ptrdiff_t N = (ptrdiff_t)p->N, K = (ptrdiff_t)p->K;
    for (ptrdiff_t m = 0; m < M; m++) {
        const int8_t *a = A + m * lda;
        int8_t *c = C + m * ldc;
        if (sn == 1 && sk != 1) {
            /* [K,N] weights (conv, MatMul): row k of W is contiguous, so one row of sums at a
               time */
            memcpy(acc, p->bias, (size_t)N * sizeof *acc);
            for (ptrdiff_t k = 0; k < K; k++)
                if (a[k]) mdl__qaxpy(acc, a[k], w + k * sk, N);
        } else {
            for (ptrdiff_t n = 0; n < N; n++) {
                const int8_t *wn = w + n * sn;
                int32_t s = 0;
                if (sk == 1)
                    s = dot_i8(a, wn, K);
                else
                    for (ptrdiff_t k = 0; k < K; k++)
                        s += (int32_t)a[k] * wn[k * sk];
                acc[n] = s + p->bias[n];
            }
        }
        for (ptrdiff_t n = 0; n < N; n++) {
            mdl__qmul q = {p->mult[n], p->shift[n]};
            c[n] = (int8_t)mdl__requant(acc[n], q, p->zy, p->lo, p->hi);
        }
    }
}

/* The dense product on view v of a record packed for h_variant (its panels), by `variant`. */
static void run_dense(int variant, int h_variant, const mdl__qgemm_packed *v, int64_t M,
                      const int8_t *A, int64_t lda, const int8_t *w, int64_t sn, int64_t sk,
                      int8_t *C, int64_t ldc, void *scratch) {
#ifdef MDL_HAVE_X86_SIMD
    if (h_variant == variant && variant == MDL_QGEMM_VNNI) {
        const int64_t zero = 0;
        if (!(M >= AMX_MIN_ROWS && v->K >= AMX_MIN_K && mdl__cpu_has_amx() &&
              mdl__qgemm_amx(v, M, A, lda, &zero, 1, C, ldc)))
            mdl__qgemm_vnni(v, M, A, lda, C, ldc);
        return;
    }
    if (h_variant == variant && variant == MDL_QGEMM_AVX2) {
        mdl__qgemm_avx2(v, M, A, lda, C, ldc, scratch);
        return;
    }
#endif
    (void)variant, (void)h_variant;
    run_ref(v, M, A, lda, w, sn, sk, C, ldc, scratch);
}

void mdl__qgemm_run_variant(int variant, const void *packed, int64_t M, const int8_t *A,
                            int64_t lda, const int8_t *w, int64_t sn, int64_t sk, int8_t *C,
                            int64_t ldc, void *scratch) {
    pack_header h;
    mdl__qgemm_packed v;
    if (!view(packed, &h, &v) || M <= 0) return;
#if MDL__SPARSE
    if (h.sparse) {
        if (variant == MDL_QGEMM_REF) mdl__qspmm_ref(&v, h.sparse, M, A, lda, C, ldc);
        else mdl__qspmm(&v, h.sparse, M, A, lda, C, ldc);
        return;
    }
#endif
    run_dense(variant, h.variant, &v, M, A, lda, w, sn, sk, C, ldc, scratch);
}

/* Columns per task block of a column split: whole panels of every variant and whole 16-entry
   groups of the padded multiplier rows. */
#define COL_BLOCK 16
#ifdef MDL_HAVE_X86_SIMD
_Static_assert(COL_BLOCK % MDL_QGEMM_NR_VNNI == 0 && COL_BLOCK % MDL_QGEMM_NR_AVX2 == 0,
               "column blocks hold whole panels");
#endif

/* Panel bytes per column for records packed for `variant` (the reference has no panels). */
static int64_t panel_depth(int variant, int64_t K) {
#ifdef MDL_HAVE_X86_SIMD
    if (variant == MDL_QGEMM_VNNI) return round_up(K, 4);
    if (variant == MDL_QGEMM_AVX2) return round_up(K, 2);
#endif
    (void)variant, (void)K;
    return 0;
}

/* View of columns [n0, n0 + n) of v (n0 a multiple of COL_BLOCK, so the padded multiplier rows
   and the panels start there). */
static mdl__qgemm_packed column_view(const mdl__qgemm_packed *v, int h_variant, int64_t n0,
                                     int64_t n) {
    mdl__qgemm_packed c = *v;
    c.N = n;
    c.mult += n0, c.shift += n0, c.bias += n0;
    c.panels = (const int8_t *)c.panels + n0 * panel_depth(h_variant, v->K);
    return c;
}

void mdl__qgemm_run(const void *packed, int64_t M, const int8_t *A, int64_t lda, const int8_t *w,
                    int64_t sn, int64_t sk, int8_t *C, int64_t ldc, void *scratch) {
    mdl__qgemm_run_variant(mdl__qgemm_variant(), packed, M, A, lda, w, sn, sk, C, ldc, scratch);
}

/* mdl__qgemm_run_par: rows, or for few rows columns, split over the workers (each output is
   exact integer sums and one requantization, so any split gives the serial result bit for
   bit). */
/* Measured on a 2-core KVM guest, side by side: the batch-64 int8 MLP (64x784x64, 3.2M
   multiply-adds) at 2 threads 24.5 -> 17.7 us split (1 thread 24.5; it was slower split while
   workers slept between runs, before the pool's spin matched the wake-up cost); 2^18 also split
   BERT's 128x64x64 products and cost it 1.5%. */
#define QGEMM_PAR_MIN_MACS ((int64_t)1 << 20)
#define QGEMM_PAR_MIN_ROWS 16

typedef struct qgemm_job {
    const mdl__kctx *c;
    const void *packed;
    int64_t M, lda, sn, sk, ldc, tasks;
    const int8_t *A, *w;
    int8_t *C;
} qgemm_job;

static void qgemm_task(void *arg, int64_t t, int worker) {
    const qgemm_job *j = arg;
    int64_t m0, m1;
    mdl__par_part(t, j->tasks, j->M, &m0, &m1);
    mdl__qgemm_run(j->packed, m1 - m0, j->A + m0 * j->lda, j->lda, j->w, j->sn, j->sk,
                   j->C + m0 * j->ldc, j->ldc, mdl__par_scratch(j->c, worker));
}

/* Few rows (a batch-1 FullyConnected is a matrix-vector product): blocks of whole panels of
   16 columns per task instead, each reading only its columns' weights. */
typedef struct qgemm_cols_job {
    const mdl__kctx *c;
    mdl__qgemm_packed v;
    int variant, h_variant;
    int64_t M, lda, sn, sk, ldc, tasks, nblocks;
    const int8_t *A, *w;
    int8_t *C;
} qgemm_cols_job;

static void qgemm_cols_task(void *arg, int64_t t, int worker) {
    const qgemm_cols_job *j = arg;
    int64_t b0, b1;
    mdl__par_part(t, j->tasks, j->nblocks, &b0, &b1);
    const int64_t n0 = b0 * COL_BLOCK;
    int64_t n1 = b1 * COL_BLOCK;
    if (n1 > j->v.N) n1 = j->v.N;
    if (n1 <= n0) return;
    const mdl__qgemm_packed v = column_view(&j->v, j->h_variant, n0, n1 - n0);
    run_dense(j->variant, j->h_variant, &v, j->M, j->A, j->lda, j->w + n0 * j->sn, j->sn, j->sk,
              j->C + n0, j->ldc, mdl__par_scratch(j->c, worker));
}

void mdl__qgemm_run_par(const mdl__kctx *c, const void *packed, int64_t M, int64_t N, int64_t K,
                        const int8_t *A, int64_t lda, const int8_t *w, int64_t sn, int64_t sk,
                        int8_t *C, int64_t ldc) {
    const int nw = mdl__par_workers(c->par);
    const int64_t want = (int64_t)nw * 4;
    if (nw >= 2 && M * N * K >= QGEMM_PAR_MIN_MACS && M >= 2 * QGEMM_PAR_MIN_ROWS) {
        const int64_t tasks = M / QGEMM_PAR_MIN_ROWS < want ? M / QGEMM_PAR_MIN_ROWS : want;
        qgemm_job j = {c, packed, M, lda, sn, sk, ldc, tasks, A, w, C};
        mdl__par_for(c->par, tasks, qgemm_task, &j);
        return;
    }
    pack_header h;
    qgemm_cols_job j = {.c = c, .variant = mdl__qgemm_variant(), .M = M, .lda = lda, .sn = sn,
                        .sk = sk, .ldc = ldc, .A = A, .w = w, .C = C};
    /* below AMX_MIN_ROWS, where the product is never AMX's (whose row blocks a column view
       would not fit) */
    if (nw >= 2 && M > 0 && M < AMX_MIN_ROWS && M * N * K >= QGEMM_PAR_MIN_MACS &&
        view(packed, &h, &j.v)
#if MDL__SPARSE
        && !h.sparse
#endif
    ) {
        j.h_variant = h.variant;
        j.nblocks = (N + COL_BLOCK - 1) / COL_BLOCK;
        j.tasks = j.nblocks < want ? j.nblocks : want;
        if (j.tasks >= 2) {
            mdl__par_for(c->par, j.tasks, qgemm_cols_task, &j);
            return;
        }
    }
    mdl__qgemm_run(packed, M, A, lda, w, sn, sk, C, ldc, c->scratch);
}

bool mdl__qgemm_run_segs(const void *packed, int64_t M, const int8_t *A, int64_t lda,
                         const int64_t *seg, int nseg, int8_t *C, int64_t ldc, void *scratch) {
    pack_header h;
    mdl__qgemm_packed v;
    if (!view(packed, &h, &v) || M <= 0 || nseg < 1 || v.K % nseg) return false;
#if MDL__SPARSE
    if (h.sparse) return false; /* the caller gathers the rows for the sparse product */
#endif
#ifdef MDL_HAVE_X86_SIMD
    const int cur = mdl__qgemm_variant();
    if (h.variant == MDL_QGEMM_VNNI && cur == MDL_QGEMM_VNNI && (v.K / nseg) % 4 == 0) {
        if (!(M >= AMX_MIN_ROWS && v.K >= AMX_MIN_K && mdl__cpu_has_amx() &&
              mdl__qgemm_amx(&v, M, A, lda, seg, nseg, C, ldc)))
            mdl__qgemm_vnni_segs(&v, M, A, lda, seg, nseg, C, ldc);
        return true;
    }
    if (h.variant == MDL_QGEMM_AVX2 && cur == MDL_QGEMM_AVX2) {
        mdl__qgemm_avx2_segs(&v, M, A, lda, seg, nseg, C, ldc, scratch);
        return true;
    }
#endif
    (void)A, (void)lda, (void)seg, (void)C, (void)ldc, (void)scratch;
    return false;
}

bool mdl__qgemm_view(const void *packed, mdl__qgemm_packed *v) {
    pack_header h;
    return view(packed, &h, v);
}

/* ---- operand checks shared by the int8 kernels --------------------------------------------- */

static const char *tname(const mdl__tensor *t) { return t->name ? t->name : ""; }

mdl_status mdl__qcheck_io(const mdl__kctx *c, const mdl__tensor *x, const mdl_fused_act *act,
                          mdl__qio *io) {
    const mdl__tensor *y = c->out[0];
    mdl_status st;
    if (x->dtype != MDL_DTYPE_INT8)
        return mdl__fail(c, MDL_DTYPE, "int8 kernel got %s input '%s'", mdl_dtype_name(x->dtype),
                         tname(x));
    if ((st = mdl__quant_check(x, c->err)) != MDL_OK) return st;
    if (x->nquant != 1)
        return mdl__fail(c, MDL_UNSUPPORTED,
                         "input '%s' needs one (per-tensor) scale and zero point, has %d", tname(x),
                         (int)x->nquant);
    if (!y || y->nquant != 1)
        return mdl__fail(c, MDL_UNSUPPORTED,
                         "the output must be declared with one (per-tensor) scale and zero point");
    if (y->dtype != MDL_DTYPE_INT8)
        return mdl__fail(c, MDL_DTYPE, "output '%s' is %s, the kernel writes int8", tname(y),
                         mdl_dtype_name(y->dtype));
    if ((st = mdl__quant_check(y, c->err)) != MDL_OK) return st;
    if (act && (unsigned)act->kind >= MDL_ACT_COUNT)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "unknown fused activation %d", (int)act->kind);
    io->sx = x->scale[0];
    io->zx = (int32_t)x->zero_point[0];
    io->sy = y->scale[0];
    io->zy = (int32_t)y->zero_point[0];
    float lo = -__builtin_inff(), hi = __builtin_inff();
    if (act) mdl__act_bounds(act, &lo, &hi);
    mdl__quant_act_range(lo, hi, y->scale[0], io->zy, -128, 127, &io->lo, &io->hi);
    /* A clip with min > max gives max (NumPy/ONNX Clip); an empty range would also make the
       scalar and vector clamps disagree. */
    if (io->lo > io->hi) io->lo = io->hi;
    return MDL_OK;
}

mdl_status mdl__qcheck_weight(const mdl__kctx *c, const mdl__tensor *w, int32_t axis) {
    mdl_status st;
    if (w->dtype != MDL_DTYPE_INT8)
        return mdl__fail(c, MDL_DTYPE, "weight '%s' is %s, expected int8", tname(w),
                         mdl_dtype_name(w->dtype));
    if (!w->data) return mdl__fail(c, MDL_UNSUPPORTED, "weight '%s' must be a constant", tname(w));
    if ((st = mdl__quant_check(w, c->err)) != MDL_OK) return st;
    if (w->nquant < 1)
        return mdl__fail(c, MDL_UNSUPPORTED, "weight '%s' has no quantization parameters",
                         tname(w));
    if (w->nquant > 1 && (w->quant_axis != axis && w->quant_axis != axis - w->rank))
        return mdl__fail(c, MDL_UNSUPPORTED,
                         "weight '%s' is quantized per channel on axis %d; the kernel needs "
                         "axis %d (output channels)",
                         tname(w), (int)w->quant_axis, (int)axis);
    for (int32_t i = 0; i < w->nquant; i++)
        if (w->zero_point[i] != 0)
            return mdl__fail(c, MDL_UNSUPPORTED,
                             "weight '%s' is not symmetric: zero point %lld on channel %d",
                             tname(w), (long long)w->zero_point[i], (int)i);
    return MDL_OK;
}

mdl_status mdl__qcheck_bias(const mdl__kctx *c, const mdl__tensor *b, double sx,
                            const mdl__tensor *w) {
    mdl_status st;
    if (b->dtype != MDL_DTYPE_INT32)
        return mdl__fail(c, MDL_DTYPE, "bias '%s' is %s, expected int32", tname(b),
                         mdl_dtype_name(b->dtype));
    if (!b->data) return mdl__fail(c, MDL_UNSUPPORTED, "bias '%s' must be a constant", tname(b));
    if ((st = mdl__quant_check(b, c->err)) != MDL_OK) return st;
    /* Without parameters the bias has the implied scale sx * sw (ONNX QLinearConv). */
    if (b->nquant > 1 && b->nquant != b->count)
        return mdl__fail(c, MDL_UNSUPPORTED, "bias '%s' has %d scales for %lld channels", tname(b),
                         (int)b->nquant, (long long)b->count);
    int64_t n = !b->nquant ? 0 : b->nquant > 1 || w->nquant > 1 ? b->count : 1;
    for (int64_t i = 0; i < n; i++) {
        int32_t qb = b->nquant > 1 ? (int32_t)i : 0, qw = w->nquant > 1 ? (int32_t)i : 0;
        if (b->zero_point[qb] != 0)
            return mdl__fail(c, MDL_UNSUPPORTED, "bias '%s' has zero point %lld on channel %lld",
                             tname(b), (long long)b->zero_point[qb], (long long)i);
        double want = sx * (double)w->scale[qw], got = b->scale[qb];
        double rel = (got - want) / want;
        if (rel > 1e-4 || rel < -1e-4)
            return mdl__fail(c, MDL_UNSUPPORTED,
                             "bias '%s' scale %g on channel %lld is not input scale x weight "
                             "scale = %g",
                             tname(b), got, (long long)i, want);
    }
    return MDL_OK;
}
