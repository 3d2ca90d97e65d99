/* Block-sparse weights in the file and the runtime (format 2.2, issue #15):
   - the same model written dense and sparse (FullyConnected, MatMul with constant B, 1x1 Conv at
     stride 1 and 2) loads and gives the outputs of a double-precision dense oracle computed here
     from the weights (within float reassociation), at every MDL_CPU_LEVEL (the program reruns
     itself at each lower level), and the sparse file is smaller;
   - hostile files (block columns out of range or not increasing, offsets decreasing, counts that
     disagree with the values) fail to load with MDL_CORRUPT_MODEL naming the tensor;
   - sparse storage where no kernel reads it (a wrong orientation, an Add operand) is refused. */
#include "common/harness.h"
#include "common/models.h"

#include "graph/model.h"
#include "ops/sparse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { M = 5, K = 37, N = 21, P = 19, H = 6, W = 5, C = 24, OC = 20 };

typedef struct weights {
    float w1[N * K], b1[N], w2[N * P], wc[C * OC], bc[OC], w3[9 * C * OC];
} weights;

/* Random weights with whole 8x1 blocks zeroed (in the layout each consumer reads) and a few
   single zeros. */
static void make_weights(weights *w) {
    th_fill_uniform(w->w1, N * K, -1, 1);
    th_fill_uniform(w->b1, N, -1, 1);
    th_fill_uniform(w->w2, N * P, -1, 1);
    th_fill_uniform(w->wc, C * OC, -1, 1);
    th_fill_uniform(w->bc, OC, -1, 1);
    for (int n0 = 0; n0 < N; n0 += 8) /* FC: W [N, K] */
        for (int k = 0; k < K; k++)
            if (th_uniform(0, 1) < 0.75f || n0 == 8)
                for (int n = n0; n < n0 + 8 && n < N; n++) w->w1[n * K + k] = 0.0f;
    for (int p0 = 0; p0 < P; p0 += 8) /* MatMul: B [N, P], blocks along P */
        for (int k = 0; k < N; k++)
            if (th_uniform(0, 1) < 0.8f)
                for (int p = p0; p < p0 + 8 && p < P; p++) w->w2[k * P + p] = 0.0f;
    for (int o0 = 0; o0 < OC; o0 += 8) /* Conv: [1, 1, C, OC], blocks along OC */
        for (int c = 0; c < C; c++)
            if (th_uniform(0, 1) < 0.7f)
                for (int o = o0; o < o0 + 8 && o < OC; o++) w->wc[c * OC + o] = 0.0f;
    th_fill_uniform(w->w3, 9 * C * OC, -1, 1);
    for (int o0 = 0; o0 < OC; o0 += 8) /* 3x3 Conv: [3, 3, C, OC], blocks along OC */
        for (int r = 0; r < 9 * C; r++)
            if (th_uniform(0, 1) < 0.7f)
                for (int o = o0; o < o0 + 8 && o < OC; o++) w->w3[r * OC + o] = 0.0f;
    w->w1[3] = 0.0f;
}

/* Tensor ids of the weights a model stores sparse. */
typedef struct ids {
    int w1, w2, wc, wc2, w3;
} ids;

/* x [M, K] -> FC(+bias, ReLU) -> y1 [M, N] -> MatMul(B [N, P]) -> y2 [M, P];
   image [1, H, W, C] -> 1x1 Conv (bias) -> y3 [1, H, W, OC]; -> 1x1 Conv stride 2 -> y4. */
static mdl_builder *build(const weights *w, ids *id) {
    mdl_builder *b;
    assert_int_equal(mdl_builder_create(NULL, &b, NULL), MDL_OK);
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){M, K}, NULL);
    id->w1 = mdl_builder_tensor(b, "fc_w", MDL_DTYPE_FLOAT32, 2, (int64_t[]){N, K}, w->w1);
    int b1 = mdl_builder_tensor(b, "fc_b", MDL_DTYPE_FLOAT32, 1, (int64_t[]){N}, w->b1);
    int y1 = mdl_builder_tensor(b, "y1", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    id->w2 = mdl_builder_tensor(b, "mm_b", MDL_DTYPE_FLOAT32, 2, (int64_t[]){N, P}, w->w2);
    int y2 = mdl_builder_tensor(b, "y2", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    int im = mdl_builder_tensor(b, "im", MDL_DTYPE_FLOAT32, 4, (int64_t[]){1, H, W, C}, NULL);
    id->wc = mdl_builder_tensor(b, "conv_w", MDL_DTYPE_FLOAT32, 4, (int64_t[]){1, 1, C, OC}, w->wc);
    id->wc2 = mdl_builder_tensor(b, "conv2_w", MDL_DTYPE_FLOAT32, 4, (int64_t[]){1, 1, C, OC}, w->wc);
    int bc = mdl_builder_tensor(b, "conv_b", MDL_DTYPE_FLOAT32, 1, (int64_t[]){OC}, w->bc);
    int y3 = mdl_builder_tensor(b, "y3", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    int y4 = mdl_builder_tensor(b, "y4", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    mdl_op_options o = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
    o.fc.act.kind = MDL_ACT_RELU;
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc", 3, (int[]){x, id->w1, b1}, 1, &y1, &o);
    mdl_builder_node(b, MDL_OP_MATMUL, "mm", 2, (int[]){y1, id->w2}, 1, &y2, NULL);
    o = mdl_op_options_default(MDL_OP_CONV2D);
    mdl_builder_node(b, MDL_OP_CONV2D, "conv", 3, (int[]){im, id->wc, bc}, 1, &y3, &o);
    o.conv.stride[0] = o.conv.stride[1] = 2;
    mdl_builder_node(b, MDL_OP_CONV2D, "conv2", 3, (int[]){im, id->wc2, bc}, 1, &y4, &o);
    /* 3x3, padding 1 on top/left only, stride 1: the im2col path */
    id->w3 = mdl_builder_tensor(b, "conv3_w", MDL_DTYPE_FLOAT32, 4, (int64_t[]){3, 3, C, OC}, w->w3);
    int y5 = mdl_builder_tensor(b, "y5", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    o = mdl_op_options_default(MDL_OP_CONV2D);
    o.conv.pad[0] = o.conv.pad[1] = 1;
    o.conv.act.kind = MDL_ACT_RELU;
    mdl_builder_node(b, MDL_OP_CONV2D, "conv3", 2, (int[]){im, id->w3}, 1, &y5, &o);
    mdl_builder_add_input(b, x);
    mdl_builder_add_input(b, im);
    mdl_builder_add_output(b, y2);
    mdl_builder_add_output(b, y3);
    mdl_builder_add_output(b, y4);
    mdl_builder_add_output(b, y5);
    return b;
}

static void *finish(mdl_builder *b, size_t *size) {
    void *data;
    mdl_error err;
    mdl_status st = mdl_builder_finish(b, &data, size, &err);
    if (st) fail_msg("finish: %s", err.msg);
    mdl_builder_free(b);
    return data;
}

static void *build_file(const weights *w, bool sparse, size_t *size) {
    ids id;
    mdl_builder *b = build(w, &id);
    if (sparse) {
        assert_int_equal(mdl__builder_set_sparse(b, id.w1, false), MDL_OK);
        assert_int_equal(mdl__builder_set_sparse(b, id.w2, true), MDL_OK);
        assert_int_equal(mdl__builder_set_sparse(b, id.wc, true), MDL_OK);
        assert_int_equal(mdl__builder_set_sparse(b, id.wc2, true), MDL_OK);
        assert_int_equal(mdl__builder_set_sparse(b, id.w3, true), MDL_OK);
    }
    return finish(b, size);
}

/* The oracle: the model's arithmetic in double, from the dense weights. */
/* y5: 3x3 conv, pads top/left 1 (bottom/right 0), ReLU: output (H - 3 + 1 + 1) x (W - 1) */
enum { OH5 = H - 1, OW5 = W - 1 };
static void oracle3(const weights *w, const float *im, double *y5) {
    for (int oh = 0; oh < OH5; oh++)
        for (int ow = 0; ow < OW5; ow++)
            for (int o = 0; o < OC; o++) {
                double s = 0;
                for (int kh = 0; kh < 3; kh++)
                    for (int kw = 0; kw < 3; kw++) {
                        int ih = oh + kh - 1, iw = ow + kw - 1;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        for (int c = 0; c < C; c++)
                            s += (double)im[(ih * W + iw) * C + c] * w->w3[((kh * 3 + kw) * C + c) * OC + o];
                    }
                y5[(oh * OW5 + ow) * OC + o] = s > 0 ? s : 0;
            }
}

static void oracle(const weights *w, const float *x, const float *im, double *y2, double *y3, double *y4) {
    double y1[M * N];
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = w->b1[n];
            for (int k = 0; k < K; k++) s += (double)x[m * K + k] * w->w1[n * K + k];
            y1[m * N + n] = s > 0 ? s : 0;
        }
    for (int m = 0; m < M; m++)
        for (int p = 0; p < P; p++) {
            double s = 0;
            for (int k = 0; k < N; k++) s += y1[m * N + k] * w->w2[k * P + p];
            y2[m * P + p] = s;
        }
    for (int i = 0; i < H * W; i++)
        for (int o = 0; o < OC; o++) {
            double s = w->bc[o];
            for (int c = 0; c < C; c++) s += (double)im[i * C + c] * w->wc[c * OC + o];
            y3[i * OC + o] = s;
        }
    for (int oh = 0; oh < (H + 1) / 2; oh++)
        for (int ow = 0; ow < (W + 1) / 2; ow++)
            for (int o = 0; o < OC; o++)
                y4[(oh * ((W + 1) / 2) + ow) * OC + o] = y3[(2 * oh * W + 2 * ow) * OC + o];
}

static void check_close(const float *got, const double *want, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (fabs(got[i] - want[i]) > 1e-5 * (1 + fabs(want[i])) * 8)
            fail_msg("%s[%lld]: %.9g, oracle %.9g", what, (long long)i, got[i], want[i]);
}

static void run_file(const void *data, size_t size, const weights *w, const float *x, const float *im) {
    mdl_model *m;
    mdl_session *s;
    mdl_error err;
    if (mdl_model_load_buffer(data, size, NULL, &m, &err)) fail_msg("load: %s", err.msg);
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    memcpy(mdl_session_input_data(s, 0), x, sizeof(float) * M * K);
    memcpy(mdl_session_input_data(s, 1), im, sizeof(float) * H * W * C);
    assert_int_equal(mdl_session_run(s), MDL_OK);
    static double y2[M * P], y3[H * W * OC], y4[H * W * OC];
    oracle(w, x, im, y2, y3, y4);
    check_close(mdl_session_output_data(s, 0), y2, M * P, "y2");
    check_close(mdl_session_output_data(s, 1), y3, H * W * OC, "y3");
    check_close(mdl_session_output_data(s, 2), y4, ((H + 1) / 2) * ((W + 1) / 2) * OC, "y4");
    static double y5[OH5 * OW5 * OC];
    oracle3(w, im, y5);
    check_close(mdl_session_output_data(s, 3), y5, OH5 * OW5 * OC, "y5");
    mdl_session_free(s);
    mdl_model_free(m);
}

static void test_dense_and_sparse(void **state) {
    (void)state;
    th_seed(151);
    static weights w;
    make_weights(&w);
    float x[M * K], im[H * W * C];
    th_fill_uniform(x, M * K, -1, 1);
    th_fill_uniform(im, H * W * C, -1, 1);
    size_t nd, ns;
    void *dense = build_file(&w, false, &nd), *sparse = build_file(&w, true, &ns);
    run_file(dense, nd, &w, x, im);
    run_file(sparse, ns, &w, x, im);
    assert_true(ns < nd);
    /* weight_bytes counts what the file stores */
    mdl_model *md, *ms;
    assert_int_equal(mdl_model_load_buffer(dense, nd, NULL, &md, NULL), MDL_OK);
    assert_int_equal(mdl_model_load_buffer(sparse, ns, NULL, &ms, NULL), MDL_OK);
    assert_true(mdl_model_weight_bytes(ms) < mdl_model_weight_bytes(md));
    mdl_model_free(md);
    mdl_model_free(ms);
    free(dense);
    free(sparse);
}

/* ---- threads ------------------------------------------------------------------------------ */

/* x [M, 256] -> FC (W [100, 256], 70% of its blocks zero, bias) -> y; and image [2, 24, 20, 64] ->
   1x1 Conv stride 2 (64 -> 48) -> z: split between workers (by rows for M = 200 and the
   convolution's output rows, by row groups for M = 16), the outputs are bit-identical to one
   thread and match the oracle. */
static void run_threads(int64_t m) {
    enum { TK = 256, TN = 100, IH = 24, IW = 20, IC = 64, IO = 48 };
    float *w = malloc(sizeof(float) * TN * TK), *bias = malloc(sizeof(float) * TN);
    float *wc = malloc(sizeof(float) * IC * IO), *x = malloc(sizeof(float) * (size_t)m * TK);
    float *im = malloc(sizeof(float) * 2 * IH * IW * IC);
    th_fill_uniform(w, TN * TK, -1, 1);
    th_fill_uniform(bias, TN, -1, 1);
    th_fill_uniform(wc, IC * IO, -1, 1);
    th_fill_uniform(x, m * TK, -1, 1);
    th_fill_uniform(im, 2 * IH * IW * IC, -1, 1);
    for (int n0 = 0; n0 < TN; n0 += 8)
        for (int k = 0; k < TK; k++)
            if (th_uniform(0, 1) < 0.7f)
                for (int n = n0; n < n0 + 8 && n < TN; n++) w[n * TK + k] = 0.0f;
    for (int o0 = 0; o0 < IO; o0 += 8)
        for (int c = 0; c < IC; c++)
            if (th_uniform(0, 1) < 0.7f)
                for (int o = o0; o < o0 + 8; o++) wc[c * IO + o] = 0.0f;
    mdl_builder *b;
    assert_int_equal(mdl_builder_create(NULL, &b, NULL), MDL_OK);
    int xt = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){m, TK}, NULL);
    int wt = mdl_builder_tensor(b, "w", MDL_DTYPE_FLOAT32, 2, (int64_t[]){TN, TK}, w);
    int bt = mdl_builder_tensor(b, "b", MDL_DTYPE_FLOAT32, 1, (int64_t[]){TN}, bias);
    int yt = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    int it = mdl_builder_tensor(b, "im", MDL_DTYPE_FLOAT32, 4, (int64_t[]){2, IH, IW, IC}, NULL);
    int ct = mdl_builder_tensor(b, "wc", MDL_DTYPE_FLOAT32, 4, (int64_t[]){1, 1, IC, IO}, wc);
    int zt = mdl_builder_tensor(b, "z", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc", 3, (int[]){xt, wt, bt}, 1, &yt, NULL);
    mdl_op_options o = mdl_op_options_default(MDL_OP_CONV2D);
    o.conv.stride[0] = o.conv.stride[1] = 2;
    mdl_builder_node(b, MDL_OP_CONV2D, "conv", 2, (int[]){it, ct}, 1, &zt, &o);
    mdl_builder_add_input(b, xt);
    mdl_builder_add_input(b, it);
    mdl_builder_add_output(b, yt);
    mdl_builder_add_output(b, zt);
    assert_int_equal(mdl__builder_set_sparse(b, wt, false), MDL_OK);
    assert_int_equal(mdl__builder_set_sparse(b, ct, true), MDL_OK);
    size_t size;
    void *data = finish(b, &size);
    mdl_model *mm;
    assert_int_equal(mdl_model_load_buffer(data, size, NULL, &mm, NULL), MDL_OK);
    const int64_t ny = m * TN, nz = 2 * (IH / 2) * (IW / 2) * IO;
    float *y1 = malloc(sizeof(float) * (size_t)ny), *z1 = malloc(sizeof(float) * (size_t)nz);
    for (int threads = 1; threads <= 4; threads += 3) {
        mdl_session_options so = mdl_session_options_default();
        so.threads = threads;
        mdl_session *s;
        assert_int_equal(mdl_session_create(mm, &so, &s, NULL), MDL_OK);
        memcpy(mdl_session_input_data(s, 0), x, sizeof(float) * (size_t)(m * TK));
        memcpy(mdl_session_input_data(s, 1), im, sizeof(float) * 2 * IH * IW * IC);
        assert_int_equal(mdl_session_run(s), MDL_OK);
        const float *y = mdl_session_output_data(s, 0), *z = mdl_session_output_data(s, 1);
        if (threads == 1) {
            memcpy(y1, y, sizeof(float) * (size_t)ny);
            memcpy(z1, z, sizeof(float) * (size_t)nz);
            for (int64_t r = 0; r < m; r++)
                for (int n = 0; n < TN; n++) {
                    double acc = bias[n];
                    for (int k = 0; k < TK; k++) acc += (double)x[r * TK + k] * w[n * TK + k];
                    if (fabs(y[r * TN + n] - acc) > 1e-4 * (1 + fabs(acc))) fail_msg("fc row %lld", (long long)r);
                }
            for (int i = 0; i < 2 * (IH / 2) * (IW / 2); i++) {
                int bi = i / ((IH / 2) * (IW / 2)), p = i % ((IH / 2) * (IW / 2)), oh = p / (IW / 2), ow = p % (IW / 2);
                const float *xi = im + ((bi * IH + 2 * oh) * IW + 2 * ow) * IC;
                for (int oc = 0; oc < IO; oc++) {
                    double acc = 0;
                    for (int c = 0; c < IC; c++) acc += (double)xi[c] * wc[c * IO + oc];
                    if (fabs(z[i * IO + oc] - acc) > 1e-4 * (1 + fabs(acc))) fail_msg("conv pixel %d", i);
                }
            }
        } else {
            assert_memory_equal(y, y1, sizeof(float) * (size_t)ny);
            assert_memory_equal(z, z1, sizeof(float) * (size_t)nz);
        }
        mdl_session_free(s);
    }
    mdl_model_free(mm);
    free(data);
    free(w), free(bias), free(wc), free(x), free(im), free(y1), free(z1);
}

static void test_threads(void **state) {
    (void)state;
    th_seed(153);
    run_threads(200);
    run_threads(16);
    run_threads(1);
}

/* ---- hostile files ------------------------------------------------------------------------ */

/* A model with one sparse FC weight whose block columns are a recognizable run. */
static weights hw;
static void *hostile_base(size_t *size, mdl__bsr *bsr) {
    memset(&hw, 0, sizeof hw);
    th_fill_uniform(hw.b1, N, -1, 1);
    /* group 0: columns 3, 5, 30; group 1: none; group 2: columns 1, 36 */
    int cols0[] = {3, 5, 30}, cols2[] = {1, 36};
    for (int i = 0; i < 3; i++)
        for (int n = 0; n < 8; n++) hw.w1[n * K + cols0[i]] = 1.0f + (float)n;
    for (int i = 0; i < 2; i++)
        for (int n = 16; n < N; n++) hw.w1[n * K + cols2[i]] = -1.0f - (float)n;
    ids id;
    mdl_builder *b = build(&hw, &id);
    assert_int_equal(mdl__builder_set_sparse(b, id.w1, false), MDL_OK);
    *bsr = *mdl__builder_graph(b)->tensors[id.w1].sparse;
    assert_int_equal(bsr->nblocks, 5);
    return finish(b, size);
}

static uint8_t *find(uint8_t *buf, size_t size, const void *pat, size_t n) {
    for (size_t i = 0; i + n <= size; i++)
        if (!memcmp(buf + i, pat, n)) return buf + i;
    fail_msg("pattern not found");
    return NULL;
}

static void expect_corrupt(uint8_t *data, size_t size, const char *what) {
    tm_reseal(data, size);
    mdl_model *m = NULL;
    mdl_error err;
    mdl_status st = mdl_model_load_buffer(data, size, NULL, &m, &err);
    if (st != MDL_CORRUPT_MODEL) fail_msg("%s: status %d (%s)", what, (int)st, st ? err.msg : "loaded");
    if (!strstr(err.msg, "fc_w")) fail_msg("%s: message does not name the tensor: %s", what, err.msg);
}

static void test_hostile(void **state) {
    (void)state;
    th_seed(152);
    size_t size;
    mdl__bsr bsr;
    uint8_t *base = hostile_base(&size, &bsr), *f = malloc(size);
    const int32_t cols[6] = {5, 3, 5, 30, 1, 36}; /* the length prefix, then the columns */
    const int32_t ptrs[5] = {4, 0, 3, 3, 5};
    struct {
        const char *what;
        int which, at;  /* 0: col vector, 1: ptr vector; entry (0 = length prefix) */
        int32_t value;
    } cases[] = {
        {"column out of range", 0, 3, K},     {"column negative", 0, 1, -1},
        {"columns not increasing", 0, 2, 3},  {"fewer columns", 0, 0, 4},
        {"offset decreasing", 1, 2, 4},        {"offset past the blocks", 1, 3, 6},
        {"first offset not 0", 1, 1, 1},       {"last offset short", 1, 4, 4},
        {"one offset missing", 1, 0, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(f, base, size);
        uint8_t *at = find(f, size, cases[i].which ? (const void *)ptrs : (const void *)cols,
                           cases[i].which ? sizeof ptrs : sizeof cols);
        memcpy(at + 4 * cases[i].at, &cases[i].value, 4);
        expect_corrupt(f, size, cases[i].what);
    }
    /* values: the buffer one block short (its length prefix precedes the first block) */
    memcpy(f, base, size);
    float first[8];
    for (int n = 0; n < 8; n++) first[n] = 1.0f + (float)n;
    uint8_t *v = find(f, size, first, sizeof first);
    uint32_t len;
    memcpy(&len, v - 4, 4);
    assert_int_equal(len, 5 * 32);
    len -= 32;
    memcpy(v - 4, &len, 4);
    expect_corrupt(f, size, "values one block short");
    /* the untouched file loads */
    mdl_model *m;
    assert_int_equal(mdl_model_load_buffer(base, size, NULL, &m, NULL), MDL_OK);
    mdl_model_free(m);
    free(f);
    free(base);
}

/* Sparse storage no kernel reads: refused when the model is built (the same check as at load). */
static void test_refused(void **state) {
    (void)state;
    static weights w;
    make_weights(&w);
    ids id;
    mdl_error err;
    void *data;
    size_t size;
    mdl_builder *b = build(&w, &id);
    mdl__builder_set_sparse(b, id.w1, true); /* FC reads W [N, K] as it is */
    assert_int_equal(mdl_builder_finish(b, &data, &size, &err), MDL_CORRUPT_MODEL);
    assert_non_null(strstr(err.msg, "fc_w"));
    mdl_builder_free(b);

    b = build(&w, &id);
    mdl__builder_set_sparse(b, id.w2, false); /* MatMul B must be stored transposed */
    assert_int_equal(mdl_builder_finish(b, &data, &size, &err), MDL_CORRUPT_MODEL);
    assert_non_null(strstr(err.msg, "mm_b"));
    mdl_builder_free(b);

    /* an Add's constant operand */
    assert_int_equal(mdl_builder_create(NULL, &b, NULL), MDL_OK);
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){N, K}, NULL);
    int c = mdl_builder_tensor(b, "addend", MDL_DTYPE_FLOAT32, 2, (int64_t[]){N, K}, w.w1);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    mdl_builder_node(b, MDL_OP_ADD, "add", 2, (int[]){x, c}, 1, &y, NULL);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, y);
    mdl__builder_set_sparse(b, c, false);
    assert_int_equal(mdl_builder_finish(b, &data, &size, &err), MDL_CORRUPT_MODEL);
    assert_non_null(strstr(err.msg, "addend"));
    mdl_builder_free(b);

    /* a grouped convolution */
    assert_int_equal(mdl_builder_create(NULL, &b, NULL), MDL_OK);
    int im = mdl_builder_tensor(b, "im", MDL_DTYPE_FLOAT32, 4, (int64_t[]){1, H, W, C}, NULL);
    float *wk = calloc(9 * C * OC, sizeof(float));
    wk[5] = 1.0f;
    int k3 = mdl_builder_tensor(b, "k3", MDL_DTYPE_FLOAT32, 4, (int64_t[]){3, 3, C / 2, OC}, wk);
    y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    mdl_op_options o = mdl_op_options_default(MDL_OP_CONV2D);
    o.conv.group = 2;
    mdl_builder_node(b, MDL_OP_CONV2D, "conv3", 2, (int[]){im, k3}, 1, &y, &o);
    mdl_builder_add_input(b, im);
    mdl_builder_add_output(b, y);
    mdl__builder_set_sparse(b, k3, true);
    assert_int_equal(mdl_builder_finish(b, &data, &size, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "k3"));
    mdl_builder_free(b);
    free(wk);
}

/* ---- int8 ---------------------------------------------------------------------------------- */

/* int8 x [M, K] -> FC (w [N, K] per-channel, int32 bias) -> y1 -> MatMul (B [N, P] per column)
   -> y2; int8 im [1, H, W, C] -> 1x1
   Conv (per-channel, bias) -> y3 and 3x3 Conv (padding 1) -> y5; the weights block-sparse as in
   make_weights, quantized here. */
typedef struct qweights {
    int8_t w1[N * K], wc[C * OC], w3[9 * C * OC], w2[N * P];
    int32_t b1[N], bc[OC];
    float s1[N], sc[OC], s3[OC], s2[P];
} qweights;

static void quantize_weights(const weights *w, qweights *q) {
    for (int n = 0; n < N; n++) q->s1[n] = 0.01f * (1.0f + (float)n / N);
    for (int o = 0; o < OC; o++) q->sc[o] = q->s3[o] = 0.01f * (1.0f + (float)o / OC);
    for (int i = 0; i < N * K; i++) q->w1[i] = (int8_t)lrintf(fmaxf(-127, fminf(127, w->w1[i] / q->s1[i / K])));
    for (int i = 0; i < C * OC; i++) q->wc[i] = (int8_t)lrintf(fmaxf(-127, fminf(127, w->wc[i] / q->sc[i % OC])));
    for (int i = 0; i < 9 * C * OC; i++) q->w3[i] = (int8_t)lrintf(fmaxf(-127, fminf(127, w->w3[i] / q->s3[i % OC])));
    for (int p = 0; p < P; p++) q->s2[p] = 0.01f * (1.0f + (float)p / P);
    for (int i = 0; i < N * P; i++) q->w2[i] = (int8_t)lrintf(fmaxf(-127, fminf(127, w->w2[i] / q->s2[i % P])));
    for (int n = 0; n < N; n++) q->b1[n] = th_rand_int(-3000, 3000);
    for (int o = 0; o < OC; o++) q->bc[o] = th_rand_int(-3000, 3000);
}

static void *build_q8(const qweights *q, bool sparse, size_t *size) {
    mdl_builder *b;
    assert_int_equal(mdl_builder_create(NULL, &b, NULL), MDL_OK);
    const float sx = 0.05f, sy = 0.2f, sb1[1] = {0};
    const int64_t zx = -3, zy = 4, z0[OC > N ? OC : N] = {0};
    float bs1[N], bsc[OC];
    for (int n = 0; n < N; n++) bs1[n] = sx * q->s1[n];
    for (int o = 0; o < OC; o++) bsc[o] = sx * q->sc[o];
    (void)sb1;
#define QT(name, dt, rank, dims, data, n, sc, zp, axis)                                            \
    ({                                                                                             \
        int t_ = mdl_builder_tensor(b, name, dt, rank, dims, data);                                \
        assert_int_equal(mdl_builder_set_quant(b, t_, n, sc, zp, axis), MDL_OK);                   \
        t_;                                                                                        \
    })
    int x = QT("x", MDL_DTYPE_INT8, 2, ((int64_t[]){M, K}), NULL, 1, &sx, &zx, 0);
    int w1 = QT("fc_w", MDL_DTYPE_INT8, 2, ((int64_t[]){N, K}), q->w1, N, q->s1, z0, 0);
    int b1 = QT("fc_b", MDL_DTYPE_INT32, 1, ((int64_t[]){N}), q->b1, N, bs1, z0, 0);
    int y1 = QT("y1", MDL_DTYPE_INT8, 2, ((int64_t[]){M, N}), NULL, 1, &sy, &zy, 0);
    int w2 = QT("mm_b", MDL_DTYPE_INT8, 2, ((int64_t[]){N, P}), q->w2, P, q->s2, z0, 1);
    int y2 = QT("y2", MDL_DTYPE_INT8, 2, ((int64_t[]){M, P}), NULL, 1, &sy, &zy, 0);
    int im = QT("im", MDL_DTYPE_INT8, 4, ((int64_t[]){1, H, W, C}), NULL, 1, &sx, &zx, 0);
    int wc = QT("conv_w", MDL_DTYPE_INT8, 4, ((int64_t[]){1, 1, C, OC}), q->wc, OC, q->sc, z0, 3);
    int bc = QT("conv_b", MDL_DTYPE_INT32, 1, ((int64_t[]){OC}), q->bc, OC, bsc, z0, 0);
    int y3 = QT("y3", MDL_DTYPE_INT8, 4, ((int64_t[]){1, H, W, OC}), NULL, 1, &sy, &zy, 0);
    int w3 = QT("conv3_w", MDL_DTYPE_INT8, 4, ((int64_t[]){3, 3, C, OC}), q->w3, OC, q->s3, z0, 3);
    int y5 = QT("y5", MDL_DTYPE_INT8, 4, ((int64_t[]){1, H, W, OC}), NULL, 1, &sy, &zy, 0);
#undef QT
    mdl_op_options o = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
    o.fc.act.kind = MDL_ACT_RELU;
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc", 3, (int[]){x, w1, b1}, 1, &y1, &o);
    mdl_builder_node(b, MDL_OP_MATMUL, "mm", 2, (int[]){y1, w2}, 1, &y2, NULL);
    o = mdl_op_options_default(MDL_OP_CONV2D);
    mdl_builder_node(b, MDL_OP_CONV2D, "conv", 3, (int[]){im, wc, bc}, 1, &y3, &o);
    o.conv.pad[0] = o.conv.pad[1] = o.conv.pad[2] = o.conv.pad[3] = 1;
    mdl_builder_node(b, MDL_OP_CONV2D, "conv3", 2, (int[]){im, w3}, 1, &y5, &o);
    mdl_builder_add_input(b, x);
    mdl_builder_add_input(b, im);
    mdl_builder_add_output(b, y1);
    mdl_builder_add_output(b, y3);
    mdl_builder_add_output(b, y5);
    mdl_builder_add_output(b, y2);
    if (sparse) {
        assert_int_equal(mdl__builder_set_sparse(b, w1, false), MDL_OK);
        assert_int_equal(mdl__builder_set_sparse(b, w2, true), MDL_OK);
        assert_int_equal(mdl__builder_set_sparse(b, wc, true), MDL_OK);
        assert_int_equal(mdl__builder_set_sparse(b, w3, true), MDL_OK);
    }
    return finish(b, size);
}

/* Runs an int8 file on x and im; the outputs concatenated (malloc'd), *n bytes. */
static int8_t *run_q8(const void *data, size_t size, const int8_t *x, const int8_t *im, size_t *n) {
    mdl_model *m;
    mdl_session *s;
    mdl_error err;
    if (mdl_model_load_buffer(data, size, NULL, &m, &err)) fail_msg("load: %s", err.msg);
    if (mdl_session_create(m, NULL, &s, &err)) fail_msg("session: %s", err.msg);
    memcpy(mdl_session_input_data(s, 0), x, M * K);
    memcpy(mdl_session_input_data(s, 1), im, H * W * C);
    assert_int_equal(mdl_session_run(s), MDL_OK);
    size_t total = 0;
    int8_t *out = NULL;
    for (int i = 0; i < 4; i++) {
        mdl_tensor_info info;
        mdl_session_output_info(s, i, &info);
        out = realloc(out, total + info.bytes);
        memcpy(out + total, mdl_session_output_data(s, i), info.bytes);
        total += info.bytes;
    }
    mdl_session_free(s);
    mdl_model_free(m);
    *n = total;
    return out;
}

/* The int8 model stored sparse gives bit for bit the dense int8 kernels' outputs (which
   tests/ops/test_int8_*.c check against an oracle; the sparse product against its own oracle in
   tests/ops/test_sparse_int8.c), in a smaller file; hostile int8 values are refused. */
static void test_int8(void **state) {
    (void)state;
    th_seed(157);
    static weights w;
    static qweights q;
    make_weights(&w);
    quantize_weights(&w, &q);
    size_t sd, ss;
    void *dense = build_q8(&q, false, &sd), *sparse = build_q8(&q, true, &ss);
    print_message("    int8 dense %zu B, sparse %zu B\n", sd, ss);
    assert_true(ss < sd);
    int8_t x[M * K], im[H * W * C];
    for (int i = 0; i < M * K; i++) x[i] = (int8_t)th_rand_int(-128, 127);
    for (int i = 0; i < H * W * C; i++) im[i] = (int8_t)th_rand_int(-128, 127);
    size_t n1, n2;
    int8_t *y1 = run_q8(dense, sd, x, im, &n1), *y2 = run_q8(sparse, ss, x, im, &n2);
    assert_int_equal(n1, n2);
    assert_int_equal(n1, M * N + H * W * OC + H * W * OC + M * P);
    assert_memory_equal(y1, y2, n1);
    int distinct = 0; /* the outputs are not all one value (the comparison means something) */
    for (size_t i = 1; i < n1; i++) distinct += y1[i] != y1[0];
    assert_true(distinct > 0);
    /* the FC values one block short: the buffer's length prefix precedes the int8 blocks */
    uint8_t *f = malloc(ss);
    memcpy(f, sparse, ss);
    mdl__bsr bsr;
    void *mem = malloc(mdl__bsr_bytes_s8(N, mdl__bsr_count_s8(N, K, q.w1, K)) + 64);
    mdl__bsr_build_s8(N, K, q.w1, K, mem, &bsr);
    uint8_t *v = find(f, ss, bsr.val8, (size_t)bsr.nblocks * 8);
    uint32_t len;
    memcpy(&len, v - 4, 4);
    assert_int_equal(len, bsr.nblocks * 8);
    len -= 8;
    memcpy(v - 4, &len, 4);
    expect_corrupt(f, ss, "int8 values one block short");
    free(mem);
    free(f);
    free(y1);
    free(y2);
    free(dense);
    free(sparse);
}

int main(int argc, char **argv) {
    (void)argc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_and_sparse),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_int8),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + th_rerun_lower_cpu_levels(argv[0]);
}
