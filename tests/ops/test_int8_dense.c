/* Quantized FullyConnected and MatMul (src/ops/dense_int8.c) and the int8 GEMM core
 * (src/ops/gemm_int8.c, src/ops/x86/gemm_int8_*.c):
 *   - against a naive oracle written from the definition (int64 sums of (x - zx) w, requantized
 *     in double: round(acc * sx sw / sy) + zy, clamped to the activation's range): at most one
 *     step apart, and nearly all elements equal;
 *   - every SIMD variant of the core against the reference, bit for bit, over random shapes with
 *     odd tails, padded leading dims, extreme multipliers and accumulators;
 *   - every rejected operand (dtype, symmetry, bias scale, missing output parameters, ...).
 * main() reruns the program at each lower MDL_CPU_LEVEL, so the ops run on every variant; the
 * first run writes a digest of the ops' outputs, which every rerun must reproduce bit for bit. */
#include "common/harness.h"

#include "ops/int8.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof a / sizeof a[0])


/* ---- the oracle -------------------------------------------------------------------------- */

/* Quantized activation range from the real bounds (ONNX rounding: half to even). */
static void oracle_range(mdl_activation act, float cmin, float cmax, double sy, int zy, int *lo,
                         int *hi) {
    double l = -INFINITY, h = INFINITY;
    if (act == MDL_ACT_RELU || act == MDL_ACT_RELU6) l = 0;
    if (act == MDL_ACT_RELU6) h = 6;
    if (act == MDL_ACT_CLIP) l = cmin, h = cmax;
    *lo = -128;
    *hi = 127;
    if (l > -INFINITY) *lo = (int)fmax(-128, fmin(127, zy + nearbyint(l / sy)));
    if (h < INFINITY) *hi = (int)fmin(127, fmax(-128, zy + nearbyint(h / sy)));
}

static int oracle_q(int64_t acc, double mult, int zy, int lo, int hi) {
    double v = round((double)acc * mult) + zy;
    return (int)fmin(hi, fmax(lo, v));
}

/* Agreement with the oracle: every |diff| <= 1; the counts of all and of exact elements. */
typedef struct agree {
    int64_t n, exact;
    int maxdiff;
} agree;

static void compare(agree *a, const int8_t *got, const int *want, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        th_digest = (th_digest ^ (uint8_t)got[i]) * 1099511628211ull;
    for (int64_t i = 0; i < n; i++) {
        int d = abs((int)got[i] - want[i]);
        if (d > 1)
            fail_msg("%s: element %lld is %d, oracle %d", what, (long long)i, got[i], want[i]);
        if (d > a->maxdiff) a->maxdiff = d;
        a->exact += d == 0;
    }
    a->n += n;
}

static void assert_mostly_exact(const agree *a) {
    print_message("    %lld elements, %.3f%% equal to the oracle, max difference %d\n",
                  (long long)a->n, 100.0 * (double)a->exact / (double)(a->n ? a->n : 1),
                  a->maxdiff);
    assert_true(a->exact >= a->n * 97 / 100);
}

static int8_t *rand_i8(int64_t n, int lo, int hi) {
    int8_t *p = malloc((size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        p[i] = (int8_t)th_rand_int(lo, hi);
    return p;
}

/* A zero point from the extremes or anywhere. */
static int64_t rand_zp(void) {
    static const int64_t z[] = {-128, 127, 0};
    int64_t r = th_rand_int(0, 5);
    return r < 3 ? z[r] : th_rand_int(-128, 127);
}

/* ---- FULLY_CONNECTED ----------------------------------------------------------------------- */

typedef struct fc_case {
    int64_t M, N, K;
    bool per_channel, bias;
    mdl_activation act;
    double mult_scale; /* output scale relative to one that spreads the sums over the range */
} fc_case;

static void check_fc(const fc_case *t, agree *ag) {
    const int64_t M = t->M, N = t->N, K = t->K;
    int8_t *x = rand_i8(M * K, -128, 127), *w = rand_i8(N * K, -127, 127);
    assert_true(N <= 1024);
    float sx = th_uniform(0.001f, 0.1f), sw[1024];
    int64_t zx = rand_zp(), zw[1024] = {0};
    int nw = t->per_channel ? (int)N : 1;
    for (int i = 0; i < nw; i++)
        sw[i] = th_uniform(0.0005f, 0.05f) * (i % 7 == 3 ? 30.0f : 1.0f);
    /* sums of K products of ~74 x ~73 spread around sqrt(K) * 5400 */
    float sy = (float)(sx * sw[0] * sqrt((double)K) * 5400.0 / 100.0 * t->mult_scale);
    int64_t zy = rand_zp();
    int32_t *b = malloc(sizeof(int32_t) * (size_t)N);
    float bs[1024];
    int64_t bz[1024] = {0};
    for (int64_t n = 0; n < N; n++) {
        b[n] = (int32_t)th_rand_int(-200000, 200000);
        bs[n] = sx * sw[t->per_channel ? n : 0];
    }
    th_tensor in[3] = {th_tensor_make(MDL_DTYPE_INT8, 2, (int64_t[]){M, K}, x),
                       th_tensor_make(MDL_DTYPE_INT8, 2, (int64_t[]){N, K}, w),
                       t->bias ? th_tensor_make(MDL_DTYPE_INT32, 1, (int64_t[]){N}, b)
                               : th_tensor_absent()};
    th_tensor_quant(&in[0], 1, &sx, &zx, 0);
    th_tensor_quant(&in[1], nw, sw, zw, 0);
    if (t->bias) th_tensor_quant(&in[2], t->per_channel ? (int)N : 1, bs, bz, 0);
    in[1].constant = in[2].constant = true;
    th_tensor out = {.dtype = MDL_DTYPE_INT8, .rank = 2, .dims = {M, N}};
    th_tensor_quant(&out, 1, &sy, &zy, 0);
    mdl_op_options o = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
    o.fc.act.kind = t->act;
    o.fc.act.clip_min = -0.37f * sy * 100;
    o.fc.act.clip_max = 0.61f * sy * 100;
    mdl_error err = {0};
    mdl_status st = th_run_op(MDL_OP_FULLY_CONNECTED, &o, 3, in, 1, &out, &err);
    if (st != MDL_OK) fail_msg("%s", err.msg);
    assert_int_equal(out.dtype, MDL_DTYPE_INT8);
    assert_int_equal(out.rank, 2);
    assert_int_equal(out.dims[0], M);
    assert_int_equal(out.dims[1], N);
    int lo, hi;
    oracle_range(t->act, o.fc.act.clip_min, o.fc.act.clip_max, sy, (int)zy, &lo, &hi);
    int *want = malloc(sizeof(int) * (size_t)(M * N));
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t acc = t->bias ? b[n] : 0;
            for (int64_t k = 0; k < K; k++)
                acc += (int64_t)(x[m * K + k] - zx) * w[n * K + k];
            double mult = (double)sx * sw[t->per_channel ? n : 0] / sy;
            want[m * N + n] = oracle_q(acc, mult, (int)zy, lo, hi);
        }
    compare(ag, out.data, want, M * N, "fc");
    for (int i = 0; i < 3; i++)
        th_tensor_free(&in[i]);
    th_tensor_free(&out);
    free(x), free(w), free(b), free(want);
}

static void test_fc_oracle(void **state) {
    (void)state;
    th_seed(81);
    static const int64_t shapes[][3] = {{1, 1, 1},    {1, 10, 784},  {3, 7, 17},   {7, 33, 5},
                                        {17, 64, 64}, {2, 300, 129}, {65, 10, 63}, {1, 3, 1000},
                                        {13, 17, 3},  {250, 40, 31}};
    static const double mults[] = {1.0, 1e-4, 1e2, 0.05, 3.0};
    agree ag = {0};
    for (size_t s = 0; s < COUNT(shapes); s++)
        for (int act = 0; act < MDL_ACT_COUNT; act++) {
            fc_case t = {shapes[s][0],
                         shapes[s][1],
                         shapes[s][2],
                         (s + act) % 2 == 0,
                         (s + act) % 3 != 2,
                         (mdl_activation)act,
                         mults[(s + act) % COUNT(mults)]};
            check_fc(&t, &ag);
        }
    assert_mostly_exact(&ag);
}

/* Leading batch dims of X are rows. */
static void test_fc_batch_dims(void **state) {
    (void)state;
    th_seed(82);
    int8_t *x = rand_i8(2 * 3 * 5, -128, 127), *w = rand_i8(4 * 5, -127, 127);
    float sx = 0.02f, sw = 0.01f, sy = 0.05f;
    int64_t zx = 3, zw = 0, zy = -7;
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_INT8, 3, (int64_t[]){2, 3, 5}, x),
                       th_tensor_make(MDL_DTYPE_INT8, 2, (int64_t[]){4, 5}, w)};
    th_tensor_quant(&in[0], 1, &sx, &zx, 0);
    th_tensor_quant(&in[1], 1, &sw, &zw, 0);
    in[1].constant = true;
    th_tensor out = {.dtype = MDL_DTYPE_INT8, .rank = 3, .dims = {2, 3, 4}};
    th_tensor_quant(&out, 1, &sy, &zy, 0);
    assert_int_equal(th_run_op(MDL_OP_FULLY_CONNECTED, NULL, 2, in, 1, &out, NULL), MDL_OK);
    assert_int_equal(out.rank, 3);
    assert_int_equal(out.dims[2], 4);
    agree ag = {0};
    int want[24];
    for (int m = 0; m < 6; m++)
        for (int n = 0; n < 4; n++) {
            int64_t acc = 0;
            for (int k = 0; k < 5; k++)
                acc += (int64_t)(x[m * 5 + k] - zx) * w[n * 5 + k];
            want[m * 4 + n] = oracle_q(acc, (double)sx * sw / sy, (int)zy, -128, 127);
        }
    compare(&ag, out.data, want, 24, "fc batch");
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
    th_tensor_free(&out);
    free(x), free(w);
}

/* A clip with min > max gives max everywhere (NumPy/ONNX Clip), in every variant. */
static void test_fc_clip_inverted(void **state) {
    (void)state;
    th_seed(86);
    int8_t *x = rand_i8(5 * 40, -128, 127), *w = rand_i8(37 * 40, -127, 127);
    float sx = 0.05f, sw = 0.02f, sy = 0.1f;
    int64_t zx = -3, zw = 0, zy = 10;
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_INT8, 2, (int64_t[]){5, 40}, x),
                       th_tensor_make(MDL_DTYPE_INT8, 2, (int64_t[]){37, 40}, w)};
    th_tensor_quant(&in[0], 1, &sx, &zx, 0);
    th_tensor_quant(&in[1], 1, &sw, &zw, 0);
    in[1].constant = true;
    th_tensor out = {.dtype = MDL_DTYPE_INT8, .rank = 2, .dims = {5, 37}};
    th_tensor_quant(&out, 1, &sy, &zy, 0);
    mdl_op_options o = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
    o.fc.act.kind = MDL_ACT_CLIP;
    o.fc.act.clip_min = 1.0f;
    o.fc.act.clip_max = -1.0f;
    assert_int_equal(th_run_op(MDL_OP_FULLY_CONNECTED, &o, 2, in, 1, &out, NULL), MDL_OK);
    int want[5 * 37];
    for (int i = 0; i < 5 * 37; i++)
        want[i] = 0; /* zy + round(-1 / 0.1) */
    agree ag = {0};
    compare(&ag, out.data, want, 5 * 37, "inverted clip");
    assert_int_equal(ag.exact, ag.n);
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
    th_tensor_free(&out);
    free(x), free(w);
}

/* ---- the GEMM core: every variant against the reference, bit for bit ----------------------- */

typedef struct core_case {
    int64_t M, N, K, lda, ldc;
    bool kn; /* weights as [K,N] rows (conv/MatMul) rather than [N,K] */
    double log_mult_lo, log_mult_hi;
    int32_t bias_range;
    bool pow2; /* multipliers 2^-1 .. 2^-pow2_max: every rounding step meets exact ties */
    int pow2_max; /* 0: 31 */
} core_case;

static void check_core(const core_case *t) {
    const int64_t M = t->M, N = t->N, K = t->K;
    int8_t *A = rand_i8(M * t->lda, -128, 127), *w = rand_i8(N * K, -127, 127);
    /* ReLU-like ranges and extremes in the weights: whole rows of +-127 */
    if (N > 2)
        for (int64_t k = 0; k < K; k++) {
            w[t->kn ? k * N : k] = 127;
            w[t->kn ? k * N + 1 : K + k] = -127;
        }
    int32_t *bias = malloc(sizeof(int32_t) * (size_t)N);
    float *ws = malloc(sizeof(float) * (size_t)N);
    for (int64_t n = 0; n < N; n++) {
        bias[n] = (int32_t)th_rand_int(-t->bias_range, t->bias_range);
        ws[n] = (float)pow(10.0, th_uniform((float)t->log_mult_lo, (float)t->log_mult_hi));
        if (t->pow2) ws[n] = ldexpf(1.0f, -(int)th_rand_int(1, t->pow2_max ? t->pow2_max : 31));
    }
    mdl__qgemm_desc d = {.N = N,
                         .K = K,
                         .w = w,
                         .sn = t->kn ? 1 : K,
                         .sk = t->kn ? N : 1,
                         .bias = bias,
                         .za = (int32_t)rand_zp(),
                         .a_scale = 1.0,
                         .y_scale = 1.0,
                         .w_scale = ws,
                         .nw_scale = (int32_t)N,
                         .zy = (int32_t)rand_zp()};
    d.lo = (int32_t)th_rand_int(-128, -100);
    d.hi = (int32_t)th_rand_int(90, 127);
    if ((M + N) % 3 == 0) d.lo = -128, d.hi = 127; /* no activation: only int8 saturation */
    mdl__kctx c = {.op = MDL_OP_FULLY_CONNECTED, .name = "core"};
    mdl_error err = {0};
    c.err = &err;
    if (mdl__qgemm_check(&c, "w", &d) != MDL_OK) fail_msg("%s", err.msg);
    size_t sbytes = mdl__qgemm_scratch_bytes(N, K);
    void *scratch = aligned_alloc(16, (sbytes + 15) & ~(size_t)15);
    int8_t *ref = malloc((size_t)(M * t->ldc)), *got = malloc((size_t)(M * t->ldc));
    for (int v = MDL_QGEMM_REF; v <= mdl__qgemm_variant(); v++) {
        size_t bytes = mdl__qgemm_pack_bytes(v, N, K);
        assert_true(bytes > 0);
        void *packed = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        memset(packed, 0x5A, bytes);
        mdl__qgemm_pack(v, &d, packed);
        int8_t *out = v == MDL_QGEMM_REF ? ref : got;
        memset(out, 0x77, (size_t)(M * t->ldc));
        mdl__qgemm_run_variant(v, packed, M, A, t->lda, w, d.sn, d.sk, out, t->ldc, scratch);
        if (v != MDL_QGEMM_REF)
            for (int64_t i = 0; i < M * t->ldc; i++)
                if (got[i] != ref[i])
                    fail_msg("variant %d, M=%lld N=%lld K=%lld: C[%lld,%lld] = %d, reference %d", v,
                             (long long)M, (long long)N, (long long)K, (long long)(i / t->ldc),
                             (long long)(i % t->ldc), got[i], ref[i]);
        /* padding untouched */
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = N; n < t->ldc; n++)
                assert_int_equal(out[m * t->ldc + n], 0x77);
        /* run at another variant than packed for (another MDL_CPU_LEVEL): the reference
           serves, same results */
        if (v != MDL_QGEMM_REF)
            for (int u = MDL_QGEMM_REF; u <= mdl__qgemm_variant(); u++) {
                if (u == v) continue;
                memset(got, 0x77, (size_t)(M * t->ldc));
                mdl__qgemm_run_variant(u, packed, M, A, t->lda, w, d.sn, d.sk, got, t->ldc,
                                       scratch);
                assert_memory_equal(got, ref, (size_t)(M * t->ldc));
            }
        free(packed);
    }
    free(A), free(w), free(bias), free(ws), free(scratch), free(ref), free(got);
}

static void test_core_variants(void **state) {
    (void)state;
    th_seed(83);
    static const int64_t Ms[] = {1, 2, 3, 5, 6, 7, 13, 64, 241, 500};
    static const int64_t Ns[] = {1, 3, 8, 15, 16, 17, 31, 32, 33, 64, 100};
    static const int64_t Ks[] = {1, 2, 3, 4, 5, 7, 15, 16, 17, 64, 65, 300};
    int i = 0;
    for (size_t a = 0; a < COUNT(Ms); a++)
        for (size_t b = 0; b < COUNT(Ns); b++, i++) {
            int64_t K = Ks[(a * 7 + b * 3) % COUNT(Ks)];
            core_case t = {Ms[a],
                           Ns[b],
                           K,
                           K + (i % 3 == 0 ? 5 : 0),
                           Ns[b] + (i % 2 ? 3 : 0),
                           i % 2 == 1,
                           -5,
                           -2,
                           1 << 20,
                           false,
                           0};
            check_core(&t);
        }
}

/* Multipliers from 2^-36 to 30 (every shift, left shifts that wrap), accumulators near the
   int32 limits through the bias, long K. */
static void test_core_extremes(void **state) {
    (void)state;
    th_seed(84);
    core_case cases[] = {
        {7, 64, 1, 1, 64, false, -11, 1.5, INT32_MAX - 256 * 127, false, 0},
        {5, 33, 3, 3, 33, true, -11, -6, INT32_MAX - 256 * 3 * 127, false, 0},
        {3, 40, 4000, 4000, 40, false, -8, -3, 1 << 24, false, 0},
        {9, 17, 20000, 20001, 17, true, -9, -4, 1 << 20, false, 0},
        {31, 70, 2, 2, 70, false, 0, 0, INT32_MAX - 256 * 2 * 127, true, 0},
        {8, 50, 5, 7, 50, true, 0, 0, 1 << 12, true, 0},
        /* right shifts 1..23 only: the vectors' one-shift epilogue (gemm_int8_avx512.c) on
           every channel, at ties and near the int32 limits */
        {13, 48, 2, 2, 48, false, 0, 0, INT32_MAX - 256 * 2 * 127, true, 23},
        {29, 35, 9, 9, 37, true, 0, 0, 1 << 16, true, 23},
        {11, 64, 3, 3, 64, false, -7, -1, INT32_MAX - 256 * 3 * 127, false, 0},
        /* AMX tiles (where the CPU has them): 16-row blocks and a tail, 64-k blocks and a tail
           of 4..60 k, extreme sums */
        {37, 50, 132, 140, 53, true, -7, -2, INT32_MAX - 256 * 132 * 127, false, 0},
        {64, 33, 260, 260, 33, false, -9, -4, 1 << 20, false, 0},
        {17, 20, 68, 68, 20, true, 0, 0, 1 << 16, true, 23},
    };
    for (size_t i = 0; i < COUNT(cases); i++)
        check_core(&cases[i]);
}

/* ---- MATMUL -------------------------------------------------------------------------------- */

typedef struct mm_case {
    int ar, br;
    int64_t ad[4], bd[4];
    bool b_const, per_column, asym; /* asym: B with a zero point */
} mm_case;

static void check_matmul(const mm_case *t, agree *ag) {
    th_tensor in[2];
    int64_t acount = th_count(t->ar, t->ad), bcount = th_count(t->br, t->bd);
    int8_t *a = rand_i8(acount, -128, 127), *b = rand_i8(bcount, t->b_const ? -127 : -128, 127);
    in[0] = th_tensor_make(MDL_DTYPE_INT8, t->ar, t->ad, a);
    in[1] = th_tensor_make(MDL_DTYPE_INT8, t->br, t->bd, b);
    in[1].constant = t->b_const;
    int64_t K = t->ad[t->ar - 1], N = t->br > 1 ? t->bd[t->br - 1] : 1;
    int64_t M = t->ar > 1 ? t->ad[t->ar - 2] : 1;
    float sa = 0.03f, sb[64], sy = (float)(0.03 * 0.02 * sqrt((double)K) * 90);
    int64_t za = rand_zp(), zb[64] = {0}, zy = rand_zp();
    int nq = t->per_column ? (int)N : 1;
    for (int i = 0; i < nq; i++)
        sb[i] = 0.02f * (1.0f + 0.1f * (float)i);
    if (t->asym) zb[0] = rand_zp();
    th_tensor_quant(&in[0], 1, &sa, &za, 0);
    th_tensor_quant(&in[1], nq, sb, zb, t->br - 1);
    th_tensor out = {.dtype = MDL_DTYPE_INT8};
    th_tensor_quant(&out, 1, &sy, &zy, 0);
    /* the broadcast output shape (NumPy), declared as a quantized output must be */
    const int na = t->ar > 2 ? t->ar - 2 : 0, nbr = t->br > 2 ? t->br - 2 : 0;
    const int brank = na > nbr ? na : nbr;
    out.rank = 0;
    for (int i = 0; i < brank; i++) {
        int ia = i - (brank - na), ib = i - (brank - nbr);
        int64_t da = ia >= 0 ? t->ad[ia] : 1, db = ib >= 0 ? t->bd[ib] : 1;
        out.dims[out.rank++] = da > db ? da : db;
    }
    if (t->ar > 1) out.dims[out.rank++] = M;
    if (t->br > 1) out.dims[out.rank++] = N;
    int64_t odims[MDL_MAX_RANK];
    int orank = out.rank;
    memcpy(odims, out.dims, sizeof odims);
    mdl_error err = {0};
    mdl_status st = th_run_op(MDL_OP_MATMUL, NULL, 2, in, 1, &out, &err);
    if (st != MDL_OK) fail_msg("%s", err.msg);
    assert_int_equal(out.rank, orank);
    for (int i = 0; i < orank; i++)
        assert_int_equal(out.dims[i], odims[i]);
    int64_t nbatch = 1;
    for (int i = 0; i < brank; i++)
        nbatch *= odims[i];
    int *want = malloc(sizeof(int) * (size_t)(nbatch * M * N + 1));
    for (int64_t bi = 0; bi < nbatch; bi++) {
        /* batch index -> offsets of the broadcast operands */
        int64_t idx[MDL_MAX_RANK];
        th_unravel(bi, brank, odims, idx);
        int64_t ao = 0, bo = 0, as = 1, bs = 1;
        for (int i = brank - 1; i >= 0; i--) {
            int ia = i - (brank - na), ib = i - (brank - nbr);
            if (ia >= 0) {
                if (t->ad[ia] > 1) ao += idx[i] * as;
                as *= t->ad[ia];
            }
            if (ib >= 0) {
                if (t->bd[ib] > 1) bo += idx[i] * bs;
                bs *= t->bd[ib];
            }
        }
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                int64_t acc = 0;
                for (int64_t k = 0; k < K; k++)
                    acc += (int64_t)(a[ao * M * K + m * K + k] - za) *
                           (b[bo * K * N + k * N + n] - zb[0]);
                double mult = (double)sa * sb[t->per_column ? n : 0] / sy;
                want[(bi * M + m) * N + n] = oracle_q(acc, mult, (int)zy, -128, 127);
            }
    }
    compare(ag, out.data, want, nbatch * M * N, "matmul");
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
    th_tensor_free(&out);
    free(a), free(b), free(want);
}

static void test_matmul_oracle(void **state) {
    (void)state;
    th_seed(85);
    static const mm_case cases[] = {
        {2, 2, {5, 7}, {7, 3}, true, false, false},
        {2, 2, {33, 17}, {17, 40}, true, true, false},
        {3, 2, {2, 9, 65}, {65, 33}, true, true, false},
        {2, 2, {4, 6}, {6, 5}, false, false, true},
        {2, 2, {4, 6}, {6, 5}, true, false, true},
        {4, 3, {2, 3, 4, 5}, {3, 5, 6}, false, false, true},
        {3, 4, {1, 3, 7}, {2, 1, 7, 2}, false, false, true},
        {1, 2, {9}, {9, 4}, true, false, false},
        {2, 1, {3, 9}, {9}, false, false, true},
        {3, 3, {2, 5, 3}, {2, 3, 4}, true, true, false},
        {2, 2, {1, 1}, {1, 1}, false, false, false},
        {2, 2, {70, 300}, {300, 50}, true, false, false},
        {2, 2, {0, 3}, {3, 2}, true, false, false},
        {3, 2, {2, 0, 3}, {3, 2}, false, false, true},
        {2, 2, {2, 3}, {3, 0}, false, false, true},
    };
    agree ag = {0};
    for (size_t i = 0; i < COUNT(cases); i++)
        check_matmul(&cases[i], &ag);
    assert_mostly_exact(&ag);
}

/* FULLY_CONNECTED and MATMUL with constant B split over 2 and 3 workers (rows per task, each
   task with its worker's scratch: mdl__qgemm_run_par), against the oracle. */
static void test_split_over_workers(void **state) {
    (void)state;
    th_seed(87);
    static const fc_case fcs[] = {
        {64, 256, 784, true, true, MDL_ACT_RELU, 1.0}, /* a batch-64 MLP layer */
        {37, 400, 600, false, true, MDL_ACT_NONE, 1.0}, /* rows not a multiple of the tasks */
        {300, 256, 129, true, false, MDL_ACT_RELU6, 0.05},
        /* few rows: blocks of 16 columns per task (a batch-1 layer; N not a multiple of 16) */
        {1, 520, 6272, true, true, MDL_ACT_RELU, 1.0},
        {5, 1000, 300, false, true, MDL_ACT_NONE, 1.0},
        {15, 200, 1024, true, false, MDL_ACT_RELU6, 0.05},
    };
    static const mm_case mms[] = {
        {3, 2, {4, 100, 400}, {400, 60}, true, true, false},
        {2, 2, {35, 640}, {640, 400}, true, false, false},
        {2, 2, {3, 2048}, {2048, 777}, true, false, false}, /* few rows: column blocks of [K,N] */
    };
    agree ag = {0};
    for (int w = 2; w <= 3; w++) {
        th_set_threads(w);
        for (size_t i = 0; i < COUNT(fcs); i++) check_fc(&fcs[i], &ag);
        for (size_t i = 0; i < COUNT(mms); i++) check_matmul(&mms[i], &ag);
    }
    th_set_threads(1);
    assert_mostly_exact(&ag);
}

/* ---- rejected operands --------------------------------------------------------------------- */

typedef struct fc_setup {
    th_tensor in[3], out;
    float sx, sw[4], sb[4], sy;
    int64_t zx, zw[4], zb[4], zy;
    int8_t x[2 * 3], w[4 * 3];
    int32_t b[4];
} fc_setup;

/* A valid FC: X [2,3], W [4,3] per channel, bias [4]. */
static void fc_valid(fc_setup *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 6; i++)
        s->x[i] = (int8_t)(i * 17 - 40);
    for (int i = 0; i < 12; i++)
        s->w[i] = (int8_t)(i * 13 - 70);
    s->sx = 0.1f;
    s->sy = 0.5f;
    s->zx = 5;
    s->zy = -3;
    for (int i = 0; i < 4; i++) {
        s->sw[i] = 0.01f * (float)(i + 1);
        s->sb[i] = s->sx * s->sw[i];
        s->b[i] = 100 * i;
    }
    s->in[0] = th_tensor_make(MDL_DTYPE_INT8, 2, (int64_t[]){2, 3}, s->x);
    s->in[1] = th_tensor_make(MDL_DTYPE_INT8, 2, (int64_t[]){4, 3}, s->w);
    s->in[2] = th_tensor_make(MDL_DTYPE_INT32, 1, (int64_t[]){4}, s->b);
    s->in[1].constant = s->in[2].constant = true;
    th_tensor_quant(&s->in[0], 1, &s->sx, &s->zx, 0);
    th_tensor_quant(&s->in[1], 4, s->sw, s->zw, 0);
    th_tensor_quant(&s->in[2], 4, s->sb, s->zb, 0);
    s->out = (th_tensor){.dtype = MDL_DTYPE_INT8, .rank = 2, .dims = {2, 4}};
    th_tensor_quant(&s->out, 1, &s->sy, &s->zy, 0);
}

static void fc_expect(fc_setup *s, mdl_status want, const char *msg) {
    mdl_error err = {0};
    mdl_status st = th_run_op(MDL_OP_FULLY_CONNECTED, NULL, 3, s->in, 1, &s->out, &err);
    if (st != want) fail_msg("%s: expected status %d, got %d (%s)", msg, want, st, err.msg);
    if (want != MDL_OK && !strstr(err.msg, msg))
        fail_msg("message \"%s\" does not mention \"%s\"", err.msg, msg);
    if (st == MDL_OK) th_tensor_free(&s->out);
    for (int i = 0; i < 3; i++)
        th_tensor_free(&s->in[i]);
}

static void test_fc_rejects(void **state) {
    (void)state;
    fc_setup s;
    fc_valid(&s);
    fc_expect(&s, MDL_OK, "");
    fc_valid(&s);
    s.zw[2] = 3;
    fc_expect(&s, MDL_UNSUPPORTED, "weight 'in' is not symmetric: zero point 3 on channel 2");
    fc_valid(&s);
    s.sb[1] *= 1.001f;
    fc_expect(&s, MDL_UNSUPPORTED, "bias 'in' scale");
    fc_valid(&s);
    s.sb[1] *= 1.00005f; /* within 1e-4 */
    fc_expect(&s, MDL_OK, "");
    fc_valid(&s);
    s.zb[0] = 1;
    fc_expect(&s, MDL_UNSUPPORTED, "zero point 1");
    fc_valid(&s);
    s.in[2].nquant = 0; /* implied scale (ONNX) */
    fc_expect(&s, MDL_OK, "");
    fc_valid(&s);
    s.out.nquant = 0;
    s.out.declared = false;
    fc_expect(&s, MDL_UNSUPPORTED, "output must be declared");
    fc_valid(&s);
    s.out.dtype = MDL_DTYPE_UINT8;
    fc_expect(&s, MDL_DTYPE, "is uint8, the kernel writes int8");
    fc_valid(&s);
    s.in[1].constant = false;
    fc_expect(&s, MDL_UNSUPPORTED, "weight 'in' must be a constant");
    fc_valid(&s);
    s.in[2].constant = false;
    fc_expect(&s, MDL_UNSUPPORTED, "bias 'in' must be a constant");
    fc_valid(&s);
    s.in[2].dtype = MDL_DTYPE_INT8;
    fc_expect(&s, MDL_DTYPE, "bias 'in' is int8");
    fc_valid(&s);
    s.in[1].dtype = MDL_DTYPE_UINT8;
    s.in[1].nquant = 0;
    fc_expect(&s, MDL_DTYPE, "weight 'in' is uint8");
    fc_valid(&s);
    s.in[1].nquant = 0;
    fc_expect(&s, MDL_UNSUPPORTED, "no quantization parameters");
    fc_valid(&s);
    s.in[1].quant_axis = 1; /* 4 scales on an axis of 3: corrupt */
    fc_expect(&s, MDL_CORRUPT_MODEL, "per-channel");
    fc_valid(&s);
    s.in[0].nquant = 0;
    fc_expect(&s, MDL_UNSUPPORTED, "input 'in' needs one (per-tensor) scale");
    fc_valid(&s);
    s.sx = -1.0f;
    fc_expect(&s, MDL_CORRUPT_MODEL, "scale[0]");
    fc_valid(&s);
    s.zx = 200;
    fc_expect(&s, MDL_CORRUPT_MODEL, "zero point[0] 200");
    fc_valid(&s);
    s.sy = 1e-12f; /* multiplier ~1e9: not representable */
    for (int i = 0; i < 4; i++)
        s.sw[i] = 1.0f, s.sb[i] = s.sx;
    fc_expect(&s, MDL_UNSUPPORTED, "not representable");
    fc_valid(&s);
    ((int32_t *)s.in[2].data)[3] = INT32_MAX - 1000;
    fc_expect(&s, MDL_UNSUPPORTED, "channel 3: bias + 3 products may overflow");
    fc_valid(&s);
    s.in[1].dims[1] = 2;
    s.in[1].count = 8;
    fc_expect(&s, MDL_SHAPE, "input features");
    fc_valid(&s);
    s.in[2].dims[0] = 3;
    s.in[2].count = 3;
    s.in[2].nquant = 1;
    fc_expect(&s, MDL_SHAPE, "bias [3]");
    fc_valid(&s);
    s.in[0].dtype = MDL_DTYPE_INT8;
    mdl_op_options o = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
    o.fc.act.kind = MDL_ACT_COUNT;
    mdl_error err = {0};
    assert_int_equal(th_run_op(MDL_OP_FULLY_CONNECTED, &o, 3, s.in, 1, &s.out, &err),
                     MDL_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "FullyConnected 'test': unknown fused activation"));
    for (int i = 0; i < 3; i++)
        th_tensor_free(&s.in[i]);
}

/* run without packed data fails (never computes garbage). */
static void test_run_without_pack(void **state) {
    (void)state;
    int8_t x[3] = {1, 2, 3}, w[6] = {1, 2, 3, 4, 5, 6}, y[2];
    float sx = 0.1f, sw = 0.1f, sy = 0.1f;
    int64_t z = 0;
    mdl__tensor tx = {.name = "x",
                      .dtype = MDL_DTYPE_INT8,
                      .rank = 2,
                      .dims = {1, 3},
                      .count = 3,
                      .nquant = 1,
                      .scale = &sx,
                      .zero_point = &z};
    mdl__tensor tw = {.name = "w",
                      .dtype = MDL_DTYPE_INT8,
                      .rank = 2,
                      .dims = {2, 3},
                      .count = 6,
                      .data = w,
                      .nquant = 1,
                      .scale = &sw,
                      .zero_point = &z};
    mdl__tensor ty = {.name = "y",
                      .dtype = MDL_DTYPE_INT8,
                      .rank = 2,
                      .dims = {1, 2},
                      .count = 2,
                      .nquant = 1,
                      .scale = &sy,
                      .zero_point = &z};
    mdl_op_options o = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
    mdl_error err = {0};
    mdl__kctx c = {
        .op = MDL_OP_FULLY_CONNECTED, .name = "fc", .opt = &o, .nin = 2, .nout = 1, .err = &err};
    c.in[0] = &tx;
    c.in[1] = &tw;
    c.out[0] = &ty;
    c.in_data[0] = x;
    c.in_data[1] = w;
    c.out_data[0] = y;
    const mdl__kernel *k = mdl__kernel_find(MDL_OP_FULLY_CONNECTED, MDL_DTYPE_INT8);
    assert_non_null(k);
    assert_int_equal(k->prepare(&c), MDL_OK);
    assert_true(c.packed_bytes > 0);
    assert_int_equal(k->run(&c), MDL_INTERNAL);
    assert_non_null(strstr(err.msg, "packed"));
    const mdl__kernel *mm = mdl__kernel_find(MDL_OP_MATMUL, MDL_DTYPE_INT8);
    assert_non_null(mm);
    c.op = MDL_OP_MATMUL;
    tw.dims[0] = 3, tw.dims[1] = 2;
    assert_int_equal(mm->prepare(&c), MDL_OK);
    assert_int_equal(mm->run(&c), MDL_INTERNAL);
}

static void test_matmul_rejects(void **state) {
    (void)state;
    int8_t a[6] = {0}, b[6] = {0};
    float s = 0.1f, sc[2] = {0.1f, 0.2f};
    int64_t z = 0, z3 = 3, zc[2] = {0, 1};
    th_tensor in[2] = {th_tensor_make(MDL_DTYPE_INT8, 2, (int64_t[]){2, 3}, a),
                       th_tensor_make(MDL_DTYPE_INT8, 2, (int64_t[]){3, 2}, b)};
    th_tensor out = {.dtype = MDL_DTYPE_INT8, .rank = 2, .dims = {2, 2}};
    th_tensor_quant(&in[0], 1, &s, &z, 0);
    th_tensor_quant(&out, 1, &s, &z3, 0);
    mdl_error err = {0};
    /* per-column B that is not a constant */
    th_tensor_quant(&in[1], 2, sc, zc, 1);
    assert_int_equal(th_run_op(MDL_OP_MATMUL, NULL, 2, in, 1, &out, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "not a constant"));
    /* constant per-column B with a zero point */
    in[1].constant = true;
    assert_int_equal(th_run_op(MDL_OP_MATMUL, NULL, 2, in, 1, &out, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "not symmetric: zero point 1 on channel 1"));
    /* shapes */
    in[1].dims[0] = 4;
    th_tensor_quant(&in[1], 1, &s, &z, 0);
    assert_int_equal(th_run_op(MDL_OP_MATMUL, NULL, 2, in, 1, &out, &err), MDL_SHAPE);
    in[1].dims[0] = 3;
    in[1].dtype = MDL_DTYPE_FLOAT32;
    assert_int_equal(th_run_op(MDL_OP_MATMUL, NULL, 2, in, 1, &out, &err), MDL_DTYPE);
    in[1].dtype = MDL_DTYPE_INT8;
    /* a depth whose (a - za)(b - zb) sums could overflow (activation B) */
    in[1].constant = false;
    in[0].dims[1] = 40000;
    in[1].dims[0] = 40000;
    assert_int_equal(th_run_op(MDL_OP_MATMUL, NULL, 2, in, 1, &out, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "int32 accumulator"));
    th_tensor_free(&in[0]);
    th_tensor_free(&in[1]);
}

int main(int argc, char **argv) {
    (void)argc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fc_oracle),      cmocka_unit_test(test_fc_clip_inverted),
        cmocka_unit_test(test_fc_batch_dims),  cmocka_unit_test(test_core_variants),
        cmocka_unit_test(test_core_extremes),  cmocka_unit_test(test_matmul_oracle),
        cmocka_unit_test(test_fc_rejects),     cmocka_unit_test(test_run_without_pack),
        cmocka_unit_test(test_matmul_rejects), cmocka_unit_test(test_split_over_workers),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed += th_same_outputs_at_lower_levels(argv[0]);
    return failed;
}
