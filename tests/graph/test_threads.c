/* Intra-op threads: every split kernel (float conv, depthwise, pooling, transpose, FC/GEMM,
   LSTM/GRU; int8 conv and FC/MatMul) and whole models (float and int8) give bit-identical results
   with 1, 2 and 3 threads; sessions with threads allocate nothing in run; bad thread counts are
   refused.  The kernel checks run at every CPU level this machine has (the test starts itself again
   with MDL_CPU_LEVEL=0 and 1). */
#include "common/harness.h"
#include "graph/threads.h"
#include "graph/util.h"
#include "mdeploy/convert.h"
#include "ops/ops.h"
#ifdef MDL_HAVE_X86_SIMD
#include "ops/x86/x86.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- GEMM primitives ------------------------------------------------------------------------ */

static float *rnd(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    th_fill_uniform(p, n, -1.0f, 1.0f);
    return p;
}

static int max_level(void) {
#ifdef MDL_HAVE_X86_SIMD
    return mdl__cpu_level();
#else
    return 0;
#endif
}

/* Compares the parallel GEMMs (2 and 3 workers) and row blocks with the serial call. */
static void check_gemm(int level, mdl__par *const *pars, int npars, int64_t M, int64_t N,
                       int64_t K, bool pack) {
    float *A = rnd(M * K), *Bnt = rnd(N * K), *Bkn = rnd(K * N), *bias = rnd(N);
    float *ref = malloc((size_t)(M * N) * sizeof(float)), *got = malloc((size_t)(M * N) * sizeof(float));
    void *pnt = NULL, *pkn = NULL;
#ifdef MDL_HAVE_X86_SIMD
    size_t pb = pack ? mdl__gemm_pack_bytes_level(level, N, K) : 0;
    if (pb) {
        pnt = aligned_alloc(64, (pb + 63) & ~(size_t)63);
        pkn = aligned_alloc(64, (pb + 63) & ~(size_t)63);
        mdl__gemm_pack_level(level, N, K, Bnt, K, pnt);
        mdl__gemm_pack_kn_level(level, N, K, Bkn, N, pkn);
    }
#else
    (void)pack;
#endif
    const size_t bytes = (size_t)(M * N) * sizeof(float);
    for (int v = 0; v < 2; v++) { /* v = 1: clamp to [-0.5, 0.5], no bias */
        float lo = v ? -0.5f : -__builtin_inff(), hi = v ? 0.5f : __builtin_inff();
        const float *b = v ? NULL : bias;
        for (int p = 0; p < npars; p++) {
#ifdef MDL_HAVE_X86_SIMD
            mdl__gemm_nt_packed_level(level, M, N, K, A, K, Bnt, K, pnt, b, ref, N, lo, hi);
            memset(got, 0xA5, bytes);
            mdl__gemm_nt_packed_par_level(level, pars[p], M, N, K, A, K, Bnt, K, pnt, b, got, N, lo, hi);
#else
            mdl__gemm_nt_packed(M, N, K, A, K, Bnt, K, pnt, b, ref, N, lo, hi);
            memset(got, 0xA5, bytes);
            mdl__gemm_nt_packed_par(pars[p], M, N, K, A, K, Bnt, K, pnt, b, got, N, lo, hi);
#endif
            if (memcmp(got, ref, bytes))
                fail_msg("nt level %d workers %d: %lldx%lldx%lld pack %d differs", level,
                         pars[p]->nworkers, (long long)M, (long long)N, (long long)K, pack);
            /* row blocks in an odd order */
#ifdef MDL_HAVE_X86_SIMD
            int64_t g = mdl__gemm_nt_packed_granule_level(level, M, N, K, Bnt, pnt);
#else
            int64_t g = mdl__gemm_nt_packed_granule(M, N, K, Bnt, pnt);
#endif
            memset(got, 0xA5, bytes);
            int64_t step = g * (1 + p);
            for (int64_t m0 = (M - 1) / step * step; m0 >= 0; m0 -= step) {
                int64_t m1 = m0 + step < M ? m0 + step : M;
#ifdef MDL_HAVE_X86_SIMD
                mdl__gemm_nt_packed_rows_level(level, M, m0, m1, N, K, A, K, Bnt, K, pnt, b, got, N,
                                               lo, hi);
#else
                mdl__gemm_nt_packed_rows(M, m0, m1, N, K, A, K, Bnt, K, pnt, b, got, N, lo, hi);
#endif
            }
            if (memcmp(got, ref, bytes))
                fail_msg("rows level %d granule %lld: %lldx%lldx%lld differs", level, (long long)g,
                         (long long)M, (long long)N, (long long)K);
#ifdef MDL_HAVE_X86_SIMD
            mdl__gemm_nn_packed_level(level, M, N, K, A, K, Bkn, N, pkn, b, ref, N, lo, hi);
            memset(got, 0xA5, bytes);
            mdl__gemm_nn_packed_par_level(level, pars[p], M, N, K, A, K, Bkn, N, pkn, b, got, N, lo, hi);
#else
            mdl__gemm_nn_packed(M, N, K, A, K, Bkn, N, pkn, b, ref, N, lo, hi);
            memset(got, 0xA5, bytes);
            mdl__gemm_nn_packed_par(pars[p], M, N, K, A, K, Bkn, N, pkn, b, got, N, lo, hi);
#endif
            if (memcmp(got, ref, bytes))
                fail_msg("nn level %d workers %d: %lldx%lldx%lld pack %d differs", level,
                         pars[p]->nworkers, (long long)M, (long long)N, (long long)K, pack);
        }
    }
    free(pnt);
    free(pkn);
    free(A);
    free(Bnt);
    free(Bkn);
    free(bias);
    free(ref);
    free(got);
}

static void test_gemm_split_is_exact(void **state) {
    (void)state;
    th_seed(12);
    mdl__pool *p2, *p3;
    mdl_error err;
    const mdl_allocator *a = mdl__allocator_or_default(NULL);
    assert_int_equal(mdl__pool_create(a, 2, &p2, &err), MDL_OK);
    assert_int_equal(mdl__pool_create(a, 3, &p3, &err), MDL_OK);
    mdl__par par2 = {.nworkers = 2, .run = mdl__pool_run, .pool = p2};
    mdl__par par3 = {.nworkers = 3, .run = mdl__pool_run, .pool = p3};
    mdl__par *pars[] = {&par2, &par3};
    const int64_t Ms[] = {1, 2, 3, 7, 9, 17, 49, 64, 100, 300};
    const int64_t Ns[] = {1, 5, 16, 33, 64, 100, 300};
    const int64_t Ks[] = {1, 16, 100, 784};
    int level = max_level(); /* the level this process runs at (MDL_CPU_LEVEL) */
    for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++)
        for (size_t j = 0; j < sizeof Ns / sizeof *Ns; j++)
            for (size_t k = 0; k < sizeof Ks / sizeof *Ks; k++) {
                if (Ms[i] * Ns[j] * Ks[k] > (int64_t)8 << 20) continue;
                check_gemm(level, pars, 2, Ms[i], Ns[j], Ks[k], true);
                if ((i + j + k) % 3 == 0) check_gemm(level, pars, 2, Ms[i], Ns[j], Ks[k], false);
            }
    mdl__pool_free(p2);
    mdl__pool_free(p3);
}

/* ---- kernels through the kernel table -------------------------------------------------------- */

/* Runs op serially and with 2 and 3 workers; every output must be identical. */
static void check_op(mdl_op op, const mdl_op_options *o, int nin, const th_tensor *in, int nout,
                     const char *what) {
    th_tensor ref[3], got[3];
    mdl_error err;
    memset(ref, 0, sizeof ref);
    th_set_threads(1);
    mdl_status st = th_run_op(op, o, nin, in, nout, ref, &err);
    if (st != MDL_OK) fail_msg("%s: %s", what, err.msg);
    for (int w = 2; w <= 3; w++) {
        memset(got, 0, sizeof got);
        th_set_threads(w);
        st = th_run_op(op, o, nin, in, nout, got, &err);
        if (st != MDL_OK) fail_msg("%s (%d threads): %s", what, w, err.msg);
        for (int i = 0; i < nout; i++) {
            assert_int_equal(got[i].count, ref[i].count);
            if (ref[i].count && memcmp(got[i].data, ref[i].data, (size_t)ref[i].count * sizeof(float)))
                fail_msg("%s: output %d differs with %d threads", what, i, w);
            th_tensor_free(&got[i]);
        }
    }
    th_set_threads(1);
    for (int i = 0; i < nout; i++) th_tensor_free(&ref[i]);
}

static th_tensor rnd_tensor(int rank, const int64_t *dims, bool constant) {
    th_tensor t = th_tensor_make(MDL_DTYPE_FLOAT32, rank, dims, NULL);
    th_fill_uniform(t.data, t.count, -1.0f, 1.0f);
    t.constant = constant;
    return t;
}

typedef struct conv_case {
    bool dw;
    int64_t N, H, W, C, OC, KH, KW;
    int s, d, pad, group;
    mdl_activation act;
} conv_case;

static void test_conv_split_is_exact(void **state) {
    (void)state;
    th_seed(3);
    const conv_case cases[] = {
        {false, 1, 40, 38, 3, 32, 3, 3, 1, 1, 0, 1, MDL_ACT_RELU},  /* direct, no padding */
        {false, 2, 30, 31, 16, 24, 3, 3, 1, 1, 1, 1, MDL_ACT_NONE}, /* direct, padded bands */
        {false, 1, 33, 29, 8, 40, 5, 5, 2, 1, 2, 1, MDL_ACT_RELU6}, /* strided */
        {false, 1, 28, 28, 8, 16, 3, 3, 1, 2, 2, 1, MDL_ACT_NONE},  /* dilated */
        {false, 3, 20, 20, 32, 48, 1, 1, 1, 1, 0, 1, MDL_ACT_RELU}, /* 1x1: one GEMM */
        {false, 2, 21, 21, 16, 32, 1, 1, 2, 1, 0, 1, MDL_ACT_NONE}, /* strided 1x1 */
        {false, 1, 30, 30, 16, 32, 3, 3, 1, 1, 1, 2, MDL_ACT_NONE}, /* grouped: im2col tiles */
        {false, 1, 30, 30, 8, 8, 3, 3, 1, 1, 1, 8, MDL_ACT_RELU},   /* group = C: depthwise loop */
        {true, 1, 56, 56, 32, 32, 3, 3, 1, 1, 1, 1, MDL_ACT_RELU6},  /* depthwise 3x3 */
        {true, 2, 57, 55, 24, 24, 3, 3, 2, 1, 1, 1, MDL_ACT_NONE},   /* depthwise 3x3 stride 2 */
        {true, 1, 40, 40, 20, 20, 5, 5, 1, 1, 2, 1, MDL_ACT_NONE},   /* depthwise 5x5 */
        {true, 1, 40, 40, 16, 32, 3, 3, 1, 1, 1, 1, MDL_ACT_RELU},   /* multiplier 2 */
        {false, 0, 30, 30, 16, 32, 3, 3, 1, 1, 1, 2, MDL_ACT_NONE}, /* empty batch: im2col */
        {false, 0, 30, 30, 16, 32, 3, 3, 1, 1, 1, 1, MDL_ACT_NONE}, /* empty batch: direct */
        {true, 0, 30, 30, 16, 16, 3, 3, 1, 1, 1, 1, MDL_ACT_NONE},  /* empty batch: depthwise */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const conv_case *c = &cases[i];
        mdl_op op = c->dw ? MDL_OP_DEPTHWISE_CONV2D : MDL_OP_CONV2D;
        mdl_op_options o = mdl_op_options_default(op);
        o.conv.stride[0] = o.conv.stride[1] = c->s;
        o.conv.dilation[0] = o.conv.dilation[1] = c->d;
        for (int k = 0; k < 4; k++) o.conv.pad[k] = c->pad;
        o.conv.group = c->dw ? 1 : c->group;
        o.conv.act.kind = c->act;
        int64_t xd[4] = {c->N, c->H, c->W, c->C};
        int64_t wd[4] = {c->KH, c->KW, c->C / (c->dw ? 1 : c->group), c->OC};
        if (c->dw) wd[0] = 1, wd[1] = c->KH, wd[2] = c->KW, wd[3] = c->OC;
        int64_t bd[1] = {c->OC};
        th_tensor in[3] = {rnd_tensor(4, xd, false), rnd_tensor(4, wd, true), rnd_tensor(1, bd, true)};
        char what[64];
        snprintf(what, sizeof what, "conv case %zu", i);
        check_op(op, &o, 3, in, 1, what);
        for (int k = 0; k < 3; k++) th_tensor_free(&in[k]);
    }
}

static void test_pool_split_is_exact(void **state) {
    (void)state;
    th_seed(6);
    /* N, H, W, C, kernel, stride, pad, max, include_pad */
    const int64_t cases[][9] = {{1, 148, 148, 32, 2, 2, 0, 1, 0}, {2, 57, 55, 24, 3, 2, 1, 1, 0},
                                {1, 60, 61, 16, 3, 1, 1, 0, 0}, {3, 64, 64, 8, 5, 3, 2, 0, 1},
                                {1, 63, 65, 64, 3, 2, 1, 0, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int64_t *k = cases[i];
        mdl_op op = k[7] ? MDL_OP_MAX_POOL2D : MDL_OP_AVG_POOL2D;
        mdl_op_options o = mdl_op_options_default(op);
        o.pool.kernel[0] = o.pool.kernel[1] = (int32_t)k[4];
        o.pool.stride[0] = o.pool.stride[1] = (int32_t)k[5];
        for (int p = 0; p < 4; p++) o.pool.pad[p] = (int32_t)k[6];
        o.pool.count_include_pad = k[8];
        int64_t xd[4] = {k[0], k[1], k[2], k[3]};
        th_tensor in[1] = {rnd_tensor(4, xd, false)};
        char what[64];
        snprintf(what, sizeof what, "pool case %zu", i);
        check_op(op, &o, 1, in, 1, what);
        th_tensor_free(&in[0]);
    }
}

/* Transpose: split into (outer position, row chunk) tasks; checked against a naive transpose
   (the oracle) as well as against one thread. */
static void test_transpose_split_is_exact(void **state) {
    (void)state;
    th_seed(8);
    const struct { int32_t rank; int64_t dims[4]; int32_t perm[4]; } cases[] = {
        {4, {1, 3, 150, 150}, {0, 2, 3, 1}}, /* NCHW -> NHWC input layout, 3 channels */
        {4, {2, 64, 17, 19}, {0, 2, 3, 1}},  /* many channels: 32x32 tiles */
        {4, {3, 40, 50, 7}, {0, 3, 1, 2}},   /* NHWC -> NCHW */
        {3, {5, 7, 3000}, {2, 0, 1}},        /* outer axes and row chunks together */
        {3, {1000, 2, 33}, {1, 2, 0}},       /* many outer positions */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mdl_op_options o = mdl_op_options_default(MDL_OP_TRANSPOSE);
        memcpy(o.transpose.perm, cases[i].perm, sizeof cases[i].perm);
        th_tensor in[1] = {rnd_tensor(cases[i].rank, cases[i].dims, false)};
        char what[64];
        snprintf(what, sizeof what, "transpose case %zu", i);
        check_op(MDL_OP_TRANSPOSE, &o, 1, in, 1, what);
        /* the oracle: out[o0,o1,..] = in[..] with in's axis perm[k] = out's index k */
        th_tensor got[1];
        mdl_error err;
        memset(got, 0, sizeof got);
        th_set_threads(2);
        if (th_run_op(MDL_OP_TRANSPOSE, &o, 1, in, 1, got, &err) != MDL_OK) fail_msg("%s: %s", what, err.msg);
        th_set_threads(1);
        int32_t r = cases[i].rank;
        int64_t stride[4], idx[4] = {0, 0, 0, 0}, s = 1;
        for (int32_t d = r - 1; d >= 0; d--) stride[d] = s, s *= cases[i].dims[d];
        const float *x = in[0].data, *y = got[0].data;
        for (int64_t e = 0; e < in[0].count; e++) {
            int64_t src = 0;
            for (int32_t k = 0; k < r; k++) src += idx[k] * stride[cases[i].perm[k]];
            if (y[e] != x[src]) fail_msg("%s: element %lld is not the input's %lld", what, (long long)e, (long long)src);
            for (int32_t k = r - 1; k >= 0 && ++idx[k] == cases[i].dims[cases[i].perm[k]]; k--) idx[k] = 0;
        }
        th_tensor_free(&got[0]);
        th_tensor_free(&in[0]);
    }
}

static void test_fc_split_is_exact(void **state) {
    (void)state;
    th_seed(4);
    const int64_t shapes[][3] = {{64, 784, 64}, {64, 64, 64}, {37, 300, 130}, {256, 16, 200}, {1, 512, 512}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int64_t xd[2] = {shapes[i][0], shapes[i][1]}, wd[2] = {shapes[i][2], shapes[i][1]};
        int64_t bd[1] = {shapes[i][2]};
        mdl_op_options o = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
        o.fc.act.kind = MDL_ACT_RELU;
        th_tensor in[3] = {rnd_tensor(2, xd, false), rnd_tensor(2, wd, true), rnd_tensor(1, bd, true)};
        check_op(MDL_OP_FULLY_CONNECTED, &o, 3, in, 1, "fully connected");
        in[1].constant = false; /* weights computed at run time: nothing packed */
        check_op(MDL_OP_FULLY_CONNECTED, &o, 3, in, 1, "fully connected, variable weights");
        for (int k = 0; k < 3; k++) th_tensor_free(&in[k]);
    }
}

static void test_rnn_split_is_exact(void **state) {
    (void)state;
    th_seed(5);
    /* op, seq, batch, input, hidden, direction, linear_before_reset */
    const struct {
        mdl_op op;
        int64_t S, N, I, H;
        mdl_rnn_direction dir;
        bool lbr;
    } cases[] = {
        {MDL_OP_LSTM, 6, 64, 32, 64, MDL_RNN_FORWARD, false},
        {MDL_OP_LSTM, 5, 37, 20, 48, MDL_RNN_BIDIRECTIONAL, false},
        {MDL_OP_LSTM, 20, 1, 64, 128, MDL_RNN_FORWARD, false},
        {MDL_OP_GRU, 6, 64, 32, 64, MDL_RNN_FORWARD, false},
        {MDL_OP_GRU, 4, 29, 16, 40, MDL_RNN_REVERSE, true},
        {MDL_OP_GRU, 4, 50, 16, 40, MDL_RNN_BIDIRECTIONAL, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t G = cases[i].op == MDL_OP_LSTM ? 4 : 3, H = cases[i].H;
        int64_t D = cases[i].dir == MDL_RNN_BIDIRECTIONAL ? 2 : 1;
        mdl_op_options o = mdl_op_options_default(cases[i].op);
        o.rnn.hidden_size = (int32_t)H;
        o.rnn.direction = cases[i].dir;
        o.rnn.linear_before_reset = cases[i].lbr;
        int64_t xd[3] = {cases[i].S, cases[i].N, cases[i].I}, wd[3] = {D, G * H, cases[i].I};
        int64_t rd[3] = {D, G * H, H}, bd[2] = {D, 2 * G * H}, hd[3] = {D, cases[i].N, H};
        th_tensor in[6] = {rnd_tensor(3, xd, false), rnd_tensor(3, wd, true), rnd_tensor(3, rd, true),
                           rnd_tensor(2, bd, true), th_tensor_absent(), rnd_tensor(3, hd, false)};
        char what[64];
        snprintf(what, sizeof what, "rnn case %zu", i);
        check_op(cases[i].op, &o, 6, in, cases[i].op == MDL_OP_LSTM ? 3 : 2, what);
        for (int k = 0; k < 6; k++) th_tensor_free(&in[k]);
    }
}

/* ---- whole models through sessions ------------------------------------------------------------ */

static size_t allocs;
static void *count_alloc(void *user, size_t n) {
    (void)user;
    allocs++;
    return aligned_alloc(64, (n + 63) & ~(size_t)63);
}
static void count_free(void *user, void *p) {
    (void)user;
    free(p);
}

/* Converts onnx (with an optional input shape; int8 with calibration data calib, pruned to
   `sparsity` when not 0) and checks threads 2 and 3 against 1. */
static void check_model_q(const char *onnx, const char *shape, const char *calib, double sparsity) {
    char path[256];
    snprintf(path, sizeof path, "%s/test_threads_%d.mdl", MDL_BUILD_DIR, (int)getpid());
    mdl_convert_options co = mdl_convert_options_default();
    mdl_error err;
    if (calib) {
        co.quant.mode = MDL_QUANTIZE_INT8;
        co.quant.calibration = calib;
    }
    co.prune.sparsity = sparsity;
    if (shape) {
        assert_int_equal(mdl_parse_input_shape(shape, &co.input_shapes[0], &err), MDL_OK);
        co.ninput_shapes = 1;
    }
    if (mdl_convert_onnx(onnx, path, &co, NULL, &err) != MDL_OK) fail_msg("%s: %s", onnx, err.msg);
    mdl_model *m;
    if (mdl_model_load_file(path, NULL, &m, &err) != MDL_OK) fail_msg("%s: %s", onnx, err.msg);
    unlink(path);
    mdl_allocator counting = {count_alloc, count_free, NULL};
    mdl_session *s[3];
    for (int t = 0; t < 3; t++) {
        mdl_session_options so = mdl_session_options_default();
        so.threads = t + 1;
        so.allocator = &counting;
        assert_int_equal(mdl_session_create(m, &so, &s[t], &err), MDL_OK);
        assert_int_equal(mdl_session_threads(s[t]), t + 1);
    }
    th_seed(77);
    for (int run = 0; run < 3; run++) {
        for (int i = 0; i < mdl_model_input_count(m); i++) {
            mdl_tensor_info ti;
            mdl_model_input_info(m, i, &ti);
            uint8_t *x = malloc(ti.bytes ? ti.bytes : 1);
            if (ti.dtype == MDL_DTYPE_FLOAT32) th_fill_uniform((float *)x, (int64_t)(ti.bytes / 4), -1, 1);
            else memset(x, 0, ti.bytes); /* ids: 0 is valid for every lookup */
            for (int t = 0; t < 3; t++)
                assert_int_equal(mdl_session_set_input(s[t], i, x, ti.bytes, &err), MDL_OK);
            free(x);
        }
        size_t before = allocs;
        for (int t = 0; t < 3; t++) {
            if (mdl_session_run(s[t]) != MDL_OK) fail_msg("%s: %s", onnx, mdl_session_message(s[t]));
        }
        assert_int_equal(allocs, before); /* run allocates nothing, with threads too */
        for (int i = 0; i < mdl_model_output_count(m); i++) {
            mdl_tensor_info ti;
            mdl_model_output_info(m, i, &ti);
            for (int t = 1; t < 3; t++)
                if (memcmp(mdl_session_output_data(s[0], i), mdl_session_output_data(s[t], i), ti.bytes))
                    fail_msg("%s: output %d differs with %d threads", onnx, i, t + 1);
        }
    }
    for (int t = 0; t < 3; t++) mdl_session_free(s[t]);
    mdl_model_free(m);
}

static void check_model(const char *onnx, const char *shape) {
    check_model_q(onnx, shape, NULL, 0);
}

static void test_models_match_one_thread(void **state) {
    (void)state;
    check_model("tests/models/mlp.onnx", "x=64x784");
    check_model("tests/models/mlp.onnx", "x=37x784");
    check_model("examples/digits/digits_cnn.onnx", "image=50x1x8x8");
    check_model("tests/models/mnist_cnn.onnx", NULL);
    check_model("tests/models/mobilenet_block.onnx", NULL);
    check_model("tests/models/text_lstm.onnx", NULL);
    check_model("tests/models/bilstm.onnx", NULL);
    check_model("tests/models/gru.onnx", NULL);
    check_model("tests/models/recommender.onnx", NULL);
    /* int8 convolutions: im2col rows (mnist), short rows on int16 bands (8x8 digits), 1x1 and
       depthwise (mobilenet block), block-sparse bands (pruned) */
    check_model_q("tests/models/mnist_cnn.onnx", NULL, "tests/models/mnist_cnn.in0.npy", 0);
    check_model_q("tests/models/mnist_cnn.onnx", NULL, "tests/models/mnist_cnn.in0.npy", 0.8);
    check_model_q("examples/digits/digits_cnn.onnx", "image=50x1x8x8",
                  "tests/models/quant/digits_test.images.npy", 0);
    check_model_q("examples/digits/digits_cnn.onnx", "image=50x1x8x8",
                  "tests/models/quant/digits_test.images.npy", 0.8);
    check_model_q("tests/models/mobilenet_block.onnx", NULL, "tests/models/mobilenet_block.in0.npy",
                  0);
}

static void test_thread_count_checked(void **state) {
    (void)state;
    mdl_model *m;
    mdl_error err;
    char path[256];
    snprintf(path, sizeof path, "%s/test_threads_c_%d.mdl", MDL_BUILD_DIR, (int)getpid());
    mdl_convert_options co = mdl_convert_options_default();
    assert_int_equal(mdl_convert_onnx("tests/models/mlp.onnx", path, &co, NULL, &err), MDL_OK);
    assert_int_equal(mdl_model_load_file(path, NULL, &m, &err), MDL_OK);
    unlink(path);
    mdl_session *s = (mdl_session *)1;
    mdl_session_options so = mdl_session_options_default();
    assert_int_equal(so.threads, 1);
    so.threads = 0;
    assert_int_equal(mdl_session_create(m, &so, &s, &err), MDL_INVALID_ARGUMENT);
    assert_null(s);
    assert_non_null(strstr(err.msg, "threads"));
    so.threads = MDL_MAX_THREADS + 1;
    assert_int_equal(mdl_session_create(m, &so, &s, &err), MDL_INVALID_ARGUMENT);
    so.threads = 4; /* more threads than work: still correct */
    assert_int_equal(mdl_session_create(m, &so, &s, &err), MDL_OK);
    assert_int_equal(mdl_session_threads(s), 4);
    for (int i = 0; i < 100; i++) assert_int_equal(mdl_session_run(s), MDL_OK);
    mdl_session_free(s);
    mdl_model_free(m);
}

/* Idle workers sleep: after a burst of jobs, a pool whose caller does nothing burns (almost) no
   CPU.  The workers spin after each job for what a wake-up costs here (at most 50 us); a worker
   that kept spinning would show up as ~100 ms of its CPU time over a 100 ms pause. */
static void count_task(void *arg, int64_t t, int worker) {
    (void)t, (void)worker;
    __atomic_fetch_add((int64_t *)arg, 1, __ATOMIC_RELAXED);
}

/* CPU time (ms) of this process's threads whose ids are not in before[0..nbefore): the pool's
   workers, not OpenBLAS's or other threads (which may spin on their own), from schedstat. */
static int list_tids(long *tids, int max) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) && n < max;)
        if (e->d_name[0] != '.') tids[n++] = atol(e->d_name);
    closedir(d);
    return n;
}

static double new_threads_cpu_ms(const long *before, int nbefore, int *nnew) {
    long tids[256];
    int n = list_tids(tids, 256);
    double ms = 0;
    *nnew = 0;
    for (int i = 0; i < n; i++) {
        bool old = false;
        for (int k = 0; k < nbefore; k++) old |= tids[i] == before[k];
        if (old) continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/self/task/%ld/schedstat", tids[i]);
        FILE *f = fopen(path, "r");
        unsigned long long ns = 0;
        if (f && fscanf(f, "%llu", &ns) == 1) ms += ns / 1e6, ++*nnew;
        if (f) fclose(f);
    }
    return ms;
}

static void test_idle_workers_sleep(void **state) {
    (void)state;
    mdl__pool *pool;
    mdl_error err;
    long before[256];
    int nbefore = list_tids(before, 256), nworkers;
    assert_int_equal(mdl__pool_create(mdl__allocator_or_default(NULL), 3, &pool, &err), MDL_OK);
    int64_t count = 0;
    for (int i = 0; i < 2000; i++) {
        mdl__pool_run(pool, 8, count_task, &count);
        if (i % 100 == 99) nanosleep(&(struct timespec){0, 200000}, NULL); /* some wake-ups */
    }
    assert_int_equal(count, 2000 * 8);
    nanosleep(&(struct timespec){0, 20000000}, NULL); /* 20 ms: far past any spin */
    double t0 = new_threads_cpu_ms(before, nbefore, &nworkers);
    assert_int_equal(nworkers, 2);
    nanosleep(&(struct timespec){0, 100000000}, NULL);
    double used = new_threads_cpu_ms(before, nbefore, &nworkers) - t0;
    print_message("workers' CPU time over 100 ms idle (2 workers): %.3f ms\n", used);
    assert_true(used < 10.0);
    mdl__pool_run(pool, 8, count_task, &count); /* sleeping workers wake (or the caller runs all) */
    assert_int_equal(count, 2001 * 8);
    mdl__pool_free(pool);
}

/* A dynamic model resized in a session with threads: nodes whose per-worker scratch grew past what
   the workers got at creation run on the caller; every size gives the bytes one thread gives. */
static void test_resized_session_matches_one_thread(void **state) {
    (void)state;
    mdl_model *m;
    mdl_error err;
    char path[256];
    snprintf(path, sizeof path, "%s/test_threads_r_%d.mdl", MDL_BUILD_DIR, (int)getpid());
    mdl_convert_options co = mdl_convert_options_default();
    assert_int_equal(mdl_convert_onnx("tests/models/dynamic/dyn_cnn.onnx", path, &co, NULL, &err), MDL_OK);
    assert_int_equal(mdl_model_load_file(path, NULL, &m, &err), MDL_OK);
    unlink(path);
    assert_true(mdl_model_symbol_count(m) > 0);
    mdl_session *s1, *s2;
    mdl_session_options so = mdl_session_options_default();
    assert_int_equal(mdl_session_create(m, &so, &s1, &err), MDL_OK);
    so.threads = 2;
    assert_int_equal(mdl_session_create(m, &so, &s2, &err), MDL_OK);
    const int64_t batches[] = {64, 1, 7, 33};
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        mdl_tensor_info ti;
        mdl_model_input_info(m, 0, &ti);
        mdl_shape sh = {ti.rank, {0}};
        for (int d = 0; d < ti.rank; d++) sh.dims[d] = d == 0 ? batches[b] : ti.dims[d];
        assert_int_equal(mdl_session_resize(s1, 1, &sh, &err), MDL_OK);
        assert_int_equal(mdl_session_resize(s2, 1, &sh, &err), MDL_OK);
        mdl_session_input_info(s1, 0, &ti);
        float *x = mdl_session_input_data(s1, 0);
        th_fill_uniform(x, (int64_t)(ti.bytes / sizeof(float)), -1.0f, 1.0f);
        memcpy(mdl_session_input_data(s2, 0), x, ti.bytes);
        assert_int_equal(mdl_session_run(s1), MDL_OK);
        assert_int_equal(mdl_session_run(s2), MDL_OK);
        mdl_tensor_info oi;
        mdl_session_output_info(s1, 0, &oi);
        assert_memory_equal(mdl_session_output_data(s1, 0), mdl_session_output_data(s2, 0), oi.bytes);
    }
    mdl_session_free(s1);
    mdl_session_free(s2);
    mdl_model_free(m);
}

/* Runs this test again at the lower CPU levels (their kernels and splits differ). */
static int run_lower_levels(char **argv) {
    if (getenv("MDL_CPU_LEVEL") || max_level() == 0) return 0;
    int failed = 0;
    for (int level = 0; level < max_level(); level++) {
        pid_t pid = fork();
        if (pid == 0) {
            char v[16];
            snprintf(v, sizeof v, "%d", level);
            setenv("MDL_CPU_LEVEL", v, 1);
            execv("/proc/self/exe", argv);
            _exit(127);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status)) {
            fprintf(stderr, "test_threads: failed at MDL_CPU_LEVEL=%d\n", level);
            failed = 1;
        }
    }
    return failed;
}

int main(int argc, char **argv) {
    (void)argc;
    int lower = run_lower_levels(argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_split_is_exact),
        cmocka_unit_test(test_resized_session_matches_one_thread),
        cmocka_unit_test(test_conv_split_is_exact),
        cmocka_unit_test(test_pool_split_is_exact),
        cmocka_unit_test(test_transpose_split_is_exact),
        cmocka_unit_test(test_fc_split_is_exact),
        cmocka_unit_test(test_rnn_split_is_exact),
        cmocka_unit_test(test_models_match_one_thread),
        cmocka_unit_test(test_thread_count_checked),
        cmocka_unit_test(test_idle_workers_sleep),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    return rc || lower;
}
