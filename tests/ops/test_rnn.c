/* LSTM and GRU against a step-by-step transcription of the ONNX operator equations
   (onnx.ai/onnx/operators/onnx__LSTM.html, onnx__GRU.html; default activations, layout 0):

     LSTM (gates i, o, f, c):  it = s(Xt Wi^T + Ht-1 Ri^T + Wbi + Rbi)   (same for o, f)
                               ct = tanh(Xt Wc^T + Ht-1 Rc^T + Wbc + Rbc)
                               Ct = ft . Ct-1 + it . ct,   Ht = ot . tanh(Ct)
     GRU (gates z, r, h):      zt = s(Xt Wz^T + Ht-1 Rz^T + Wbz + Rbz)   (same for r)
        linear_before_reset=0: ht = tanh(Xt Wh^T + (rt . Ht-1) Rh^T + Rbh + Wbh)
        linear_before_reset=1: ht = tanh(Xt Wh^T + rt . (Ht-1 Rh^T + Rbh) + Wbh)
                               Ht = (1 - zt) . ht + zt . Ht-1

   The reference evaluates every gate element as one plain double sum straight from W, R and B. */
#include "common/harness.h"

#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct rnn_case {
    mdl_op op;
    int64_t S, N, I, H;
    mdl_rnn_direction dir;
    bool has_b, has_h0, has_c0, lbr;
    float wscale; /* weights uniform in [-wscale, wscale] */
} rnn_case;

typedef struct rnn_data {
    int64_t D, G;
    float *x, *w, *r, *b, *h0, *c0;
    float *y, *yh, *yc; /* reference outputs */
} rnn_data;

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

static float *alloc_f(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

/* Gate k (0-based in the ONNX packing), hidden unit j, batch row b of direction d at time t. */
static double gate_pre(const rnn_case *c, const rnn_data *dd, int64_t d, int64_t t, int64_t b,
                       int64_t k, int64_t j, const double *hprev, bool with_r, bool with_rb) {
    int64_t GH = dd->G * c->H, row = k * c->H + j;
    double s = 0;
    for (int64_t i = 0; i < c->I; i++)
        s += (double)dd->x[(t * c->N + b) * c->I + i] * dd->w[(d * GH + row) * c->I + i];
    if (with_r)
        for (int64_t m = 0; m < c->H; m++)
            s += hprev[b * c->H + m] * dd->r[(d * GH + row) * c->H + m];
    if (dd->b) {
        s += dd->b[d * 2 * GH + row];
        if (with_rb) s += dd->b[d * 2 * GH + GH + row];
    }
    return s;
}

static void reference(const rnn_case *c, rnn_data *dd) {
    int64_t S = c->S, N = c->N, H = c->H, D = dd->D, GH = dd->G * H;
    size_t nh = (size_t)(N * H);
    double *hp = calloc(nh, sizeof(double)), *cp = calloc(nh, sizeof(double));
    double *hn = calloc(nh, sizeof(double)), *cn = calloc(nh, sizeof(double));
    for (int64_t d = 0; d < D; d++) {
        bool reverse = c->dir == MDL_RNN_REVERSE || (c->dir == MDL_RNN_BIDIRECTIONAL && d == 1);
        for (int64_t e = 0; e < N * H; e++) {
            hp[e] = dd->h0 ? dd->h0[d * N * H + e] : 0.0;
            cp[e] = dd->c0 ? dd->c0[d * N * H + e] : 0.0;
        }
        for (int64_t step = 0; step < S; step++) {
            int64_t t = reverse ? S - 1 - step : step;
            for (int64_t b = 0; b < N; b++)
                for (int64_t j = 0; j < H; j++) {
                    if (c->op == MDL_OP_LSTM) {
                        double it = sigm(gate_pre(c, dd, d, t, b, 0, j, hp, true, true));
                        double ot = sigm(gate_pre(c, dd, d, t, b, 1, j, hp, true, true));
                        double ft = sigm(gate_pre(c, dd, d, t, b, 2, j, hp, true, true));
                        double ct = tanh(gate_pre(c, dd, d, t, b, 3, j, hp, true, true));
                        cn[b * H + j] = ft * cp[b * H + j] + it * ct;
                        hn[b * H + j] = ot * tanh(cn[b * H + j]);
                    } else {
                        double zt = sigm(gate_pre(c, dd, d, t, b, 0, j, hp, true, true));
                        double rt = sigm(gate_pre(c, dd, d, t, b, 1, j, hp, true, true));
                        double ht;
                        if (!c->lbr) {
                            /* (rt . Ht-1) Rh^T: needs every rt_m of this row, recomputed here */
                            double s = gate_pre(c, dd, d, t, b, 2, j, hp, false, true);
                            for (int64_t m = 0; m < H; m++) {
                                double rm = sigm(gate_pre(c, dd, d, t, b, 1, m, hp, true, true));
                                s += rm * hp[b * H + m] * dd->r[(d * GH + 2 * H + j) * H + m];
                            }
                            ht = tanh(s);
                        } else {
                            double lin = 0;
                            for (int64_t m = 0; m < H; m++)
                                lin += hp[b * H + m] * dd->r[(d * GH + 2 * H + j) * H + m];
                            if (dd->b) lin += dd->b[d * 2 * GH + GH + 2 * H + j];
                            ht = tanh(gate_pre(c, dd, d, t, b, 2, j, hp, false, false) + rt * lin);
                        }
                        hn[b * H + j] = (1 - zt) * ht + zt * hp[b * H + j];
                    }
                }
            memcpy(hp, hn, sizeof(double) * (size_t)(N * H));
            memcpy(cp, cn, sizeof(double) * (size_t)(N * H));
            for (int64_t e = 0; e < N * H; e++) dd->y[(t * D + d) * N * H + e] = (float)hp[e];
        }
        for (int64_t e = 0; e < N * H; e++) {
            dd->yh[d * N * H + e] = (float)hp[e];
            dd->yc[d * N * H + e] = (float)cp[e];
        }
    }
    free(hp); free(cp); free(hn); free(cn);
}

static void data_make(const rnn_case *c, rnn_data *dd) {
    dd->G = c->op == MDL_OP_LSTM ? 4 : 3;
    dd->D = c->dir == MDL_RNN_BIDIRECTIONAL ? 2 : 1;
    int64_t D = dd->D, GH = dd->G * c->H, NH = c->N * c->H;
    dd->x = alloc_f(c->S * c->N * c->I);
    dd->w = alloc_f(D * GH * c->I);
    dd->r = alloc_f(D * GH * c->H);
    th_fill_uniform(dd->x, c->S * c->N * c->I, -1, 1);
    th_fill_uniform(dd->w, D * GH * c->I, -c->wscale, c->wscale);
    th_fill_uniform(dd->r, D * GH * c->H, -c->wscale, c->wscale);
    dd->b = c->has_b ? alloc_f(D * 2 * GH) : NULL;
    dd->h0 = c->has_h0 ? alloc_f(D * NH) : NULL;
    dd->c0 = c->has_c0 ? alloc_f(D * NH) : NULL;
    if (dd->b) th_fill_uniform(dd->b, D * 2 * GH, -0.5f, 0.5f);
    if (dd->h0) th_fill_uniform(dd->h0, D * NH, -1, 1);
    if (dd->c0) th_fill_uniform(dd->c0, D * NH, -1, 1);
    dd->y = alloc_f(c->S * D * NH);
    dd->yh = alloc_f(D * NH);
    dd->yc = alloc_f(D * NH);
    reference(c, dd);
}

static void data_free(rnn_data *dd) {
    free(dd->x); free(dd->w); free(dd->r); free(dd->b); free(dd->h0); free(dd->c0);
    free(dd->y); free(dd->yh); free(dd->yc);
}

/* Inputs in the ONNX order X, W, R, B, sequence_lens, initial_h[, initial_c]; returns nin. */
static int make_inputs(const rnn_case *c, const rnn_data *dd, th_tensor *in) {
    int64_t D = dd->D, GH = dd->G * c->H;
    int nin = c->op == MDL_OP_LSTM ? 7 : 6;
    in[0] = th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){c->S, c->N, c->I}, dd->x);
    in[1] = th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){D, GH, c->I}, dd->w);
    in[2] = th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){D, GH, c->H}, dd->r);
    in[3] = dd->b ? th_tensor_make(MDL_DTYPE_FLOAT32, 2, (int64_t[]){D, 2 * GH}, dd->b)
                  : th_tensor_absent();
    in[4] = th_tensor_absent();
    in[5] = dd->h0 ? th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){D, c->N, c->H}, dd->h0)
                   : th_tensor_absent();
    if (nin == 7)
        in[6] = dd->c0 ? th_tensor_make(MDL_DTYPE_FLOAT32, 3, (int64_t[]){D, c->N, c->H}, dd->c0)
                       : th_tensor_absent();
    in[1].constant = in[2].constant = in[3].constant = true;
    return nin;
}

static mdl_op_options make_options(const rnn_case *c) {
    mdl_op_options o = mdl_op_options_default(c->op);
    o.rnn.hidden_size = (int32_t)c->H;
    o.rnn.direction = c->dir;
    o.rnn.linear_before_reset = c->lbr;
    return o;
}

static void free_inputs(th_tensor *in, int nin) {
    for (int i = 0; i < nin; i++) th_tensor_free(&in[i]);
}

/* Runs through th_run_op with the first nout outputs and compares each with the reference. */
static void check_case(const rnn_case *c, int nout, double tol) {
    rnn_data dd;
    data_make(c, &dd);
    th_tensor in[7], out[3];
    memset(out, 0, sizeof out);
    int nin = make_inputs(c, &dd, in);
    mdl_op_options o = make_options(c);
    mdl_error err = {0};
    mdl_status st = th_run_op(c->op, &o, nin, in, nout, out, &err);
    if (st != MDL_OK) fail_msg("status %d: %s", (int)st, err.msg);
    int64_t NH = c->N * c->H;
    assert_int_equal(out[0].rank, 4);
    assert_int_equal(out[0].dims[0], c->S);
    assert_int_equal(out[0].dims[1], dd.D);
    assert_int_equal(out[0].dims[2], c->N);
    assert_int_equal(out[0].dims[3], c->H);
    th_assert_close(out[0].data, dd.y, c->S * dd.D * NH, tol);
    for (int i = 1; i < nout; i++) {
        assert_int_equal(out[i].rank, 3);
        assert_int_equal(out[i].dims[0], dd.D);
        assert_int_equal(out[i].dims[1], c->N);
        assert_int_equal(out[i].dims[2], c->H);
        th_assert_close(out[i].data, i == 1 ? dd.yh : dd.yc, dd.D * NH, tol);
    }
    for (int i = 0; i < nout; i++) th_tensor_free(&out[i]);
    free_inputs(in, nin);
    data_free(&dd);
}

static rnn_case random_case(mdl_op op, mdl_rnn_direction dir, unsigned flags) {
    rnn_case c = {op, th_rand_int(1, 7), th_rand_int(1, 3), th_rand_int(1, 9), th_rand_int(1, 11),
                  dir, flags & 1, (flags >> 1) & 1, (flags >> 2) & 1, (flags >> 2) & 1, 0.6f};
    if (op == MDL_OP_GRU) c.has_c0 = false;
    return c;
}

/* Random sizes in every direction with every mix of the optional inputs (flags: B, initial_h,
   then initial_c for LSTM or linear_before_reset for GRU), cycling through 1..all outputs. */
static void random_sweep(mdl_op op, uint64_t seed) {
    const unsigned max_out = op == MDL_OP_LSTM ? 3 : 2;
    th_seed(seed);
    for (int rep = 0; rep < 4; rep++)
        for (int dir = 0; dir < 3; dir++)
            for (unsigned flags = 0; flags < 8; flags++) {
                rnn_case c = random_case(op, (mdl_rnn_direction)dir, flags);
                check_case(&c, 1 + (int)((flags + (unsigned)rep) % max_out), 1e-5);
            }
}

static void test_lstm_random(void **state) {
    (void)state;
    random_sweep(MDL_OP_LSTM, 11);
}

static void test_gru_random(void **state) {
    (void)state;
    random_sweep(MDL_OP_GRU, 12);
}

static void test_size_one_and_extremes(void **state) {
    (void)state;
    th_seed(13);
    /* Every size 1; then large weights that saturate the gates. */
    for (int op = 0; op < 2; op++)
        for (int dir = 0; dir < 3; dir++)
            for (int lbr = 0; lbr < 2; lbr++) {
                mdl_op o = op ? MDL_OP_GRU : MDL_OP_LSTM;
                rnn_case c = {o, 1, 1, 1, 1, (mdl_rnn_direction)dir, true, true, !op, lbr, 0.6f};
                check_case(&c, op ? 2 : 3, 1e-5);
                rnn_case big = {o, 5, 2, 3, 4, (mdl_rnn_direction)dir, true, true, !op, lbr, 8.0f};
                check_case(&big, op ? 2 : 3, 1e-5);
            }
}

/* A kernel context over in[] for prepare, as the model loader builds one: absent inputs stay NULL
   and only the inputs in const_mask (bit i = input i) carry data.  k points into the struct, so it
   must stay where it was set up. */
typedef struct direct_ctx {
    mdl__kctx k;
    mdl__tensor tin[7];
    mdl_op_options opt;
    mdl_error err;
} direct_ctx;

static void direct_init(direct_ctx *x, const rnn_case *c, const th_tensor *in, int nin, int nout,
                        unsigned const_mask) {
    memset(x, 0, sizeof *x);
    x->opt = make_options(c);
    x->k.op = c->op;
    x->k.name = "test";
    x->k.opt = &x->opt;
    x->k.nin = nin;
    x->k.nout = nout;
    x->k.err = &x->err;
    for (int i = 0; i < nin; i++) {
        if (in[i].rank < 0) continue;
        mdl__tensor *t = &x->tin[i];
        t->dtype = in[i].dtype;
        t->rank = in[i].rank;
        memcpy(t->dims, in[i].dims, sizeof t->dims);
        t->count = in[i].count;
        t->data = (const_mask >> i) & 1 ? in[i].data : NULL;
        x->k.in[i] = t;
    }
}

/* W, R, B constant as make_inputs marks them. */
#define CONST_WRB ((1u << 1) | (1u << 2) | (1u << 3))

/* Calls the kernel directly, the way the model loader does: outputs may be absent in the middle
   (output index -1 in a graph; out_data[i] NULL where want[i] is false), only the inputs in
   const_mask (bit i = input i) are constants, and with pack the kernel's pack step fills
   load-time data from the constants first (64-byte aligned, as the loader allocates it). */
static void check_direct(const rnn_case *c, int nout, const bool *want, unsigned const_mask,
                         bool pack) {
    rnn_data dd;
    data_make(c, &dd);
    th_tensor in[7];
    int nin = make_inputs(c, &dd, in);
    direct_ctx x;
    direct_init(&x, c, in, nin, nout, const_mask);
    mdl__kctx *k = &x.k;
    const mdl__kernel *kern = mdl__kernel_find(c->op, MDL_DTYPE_FLOAT32);
    assert_non_null(kern);
    mdl_status st = kern->prepare(k);
    if (st != MDL_OK) fail_msg("prepare: %s", x.err.msg);
    void *packed = NULL;
    if (pack && k->packed_bytes) {
        assert_non_null(kern->pack);
        packed = aligned_alloc(64, (k->packed_bytes + 63) & ~(size_t)63);
        memset(packed, 0x5A, k->packed_bytes);
        k->packed = packed;
        for (int i = 0; i < nin; i++) k->in_data[i] = k->in[i] ? k->in[i]->data : NULL;
        assert_int_equal(kern->pack(k), MDL_OK);
    }
    for (int i = 0; i < nin; i++) k->in_data[i] = in[i].data;
    float *outs[3] = {0};
    for (int i = 0; i < nout; i++) {
        if (!want[i]) continue;
        outs[i] = alloc_f(mdl__shape_count(&k->out_shape[i]));
        k->out_data[i] = outs[i];
    }
    k->scratch = malloc(k->scratch_bytes + 16);
    memset(k->scratch, 0x5A, k->scratch_bytes);
    assert_int_equal(kern->run(k), MDL_OK);
    int64_t NH = c->N * c->H;
    double tol = c->S * c->H > 1000 ? 1e-4 : 1e-5;
    if (want[0]) th_assert_close(outs[0], dd.y, c->S * dd.D * NH, tol);
    if (nout > 1 && want[1]) th_assert_close(outs[1], dd.yh, dd.D * NH, tol);
    if (nout > 2 && want[2]) th_assert_close(outs[2], dd.yc, dd.D * NH, tol);
    free(k->scratch);
    free(packed);
    for (int i = 0; i < 3; i++) free(outs[i]);
    free_inputs(in, nin);
    data_free(&dd);
}

static void check_partial(const rnn_case *c, int nout, const bool *want) {
    check_direct(c, nout, want, CONST_WRB, false);
}

static void test_partial_outputs(void **state) {
    (void)state;
    th_seed(14);
    static const bool only_yh[3] = {false, true, false}, only_yc[3] = {false, false, true};
    static const bool yh_yc[3] = {false, true, true}, none[3] = {false, false, false};
    for (int dir = 0; dir < 3; dir++)
        for (unsigned flags = 0; flags < 8; flags += 3) {
            rnn_case l = random_case(MDL_OP_LSTM, (mdl_rnn_direction)dir, flags);
            check_partial(&l, 2, only_yh);
            check_partial(&l, 3, only_yc);
            check_partial(&l, 3, yh_yc);
            check_partial(&l, 3, none);
            check_case(&l, 1, 1e-5); /* only Y */
            rnn_case g = random_case(MDL_OP_GRU, (mdl_rnn_direction)dir, flags);
            check_partial(&g, 2, only_yh);
            g.lbr = !g.lbr;
            check_partial(&g, 2, only_yh);
            check_case(&g, 1, 1e-5);
        }
}

static void test_text_classifier_shape(void **state) {
    (void)state;
    th_seed(15);
    /* seq 100, batch 1, input 16, hidden 128: weights ~ U(+-1/sqrt(H)) as PyTorch initializes */
    float s = 1.0f / sqrtf(128.0f);
    rnn_case l = {MDL_OP_LSTM, 100, 1, 16, 128, MDL_RNN_FORWARD, true, false, false, false, s};
    check_case(&l, 3, 1e-4);
    rnn_case lb = {MDL_OP_LSTM, 100, 1, 16, 128, MDL_RNN_BIDIRECTIONAL, true, true, true, false, s};
    check_case(&lb, 3, 1e-4);
    for (int lbr = 0; lbr < 2; lbr++) {
        rnn_case g = {MDL_OP_GRU, 100, 1, 16, 128, MDL_RNN_FORWARD, true, false, false, lbr, s};
        check_case(&g, 2, 1e-4);
    }
    /* batch > 1 with a larger sequence: the input projection is one big GEMM (BLAS path) */
    rnn_case gb = {MDL_OP_GRU, 40, 3, 16, 64, MDL_RNN_REVERSE, true, true, false, false, s};
    check_case(&gb, 2, 1e-4);
}

/* ---- load-time packing ------------------------------------------------------------------- */

/* The pack step with every mix of constant and computed W, R (and B): whatever the GEMM layer
   packs on this CPU, run must give the reference result. */
static void test_packed_weights(void **state) {
    (void)state;
    th_seed(17);
    static const bool all3[3] = {true, true, true}, yh_only[3] = {false, true, false};
    const unsigned masks[] = {CONST_WRB, 1u << 1, 1u << 2, 0u, (1u << 1) | (1u << 2)};
    for (int op = 0; op < 2; op++)
        for (int dir = 0; dir < 3; dir++)
            for (int lbr = 0; lbr < 2; lbr++)
                for (size_t m = 0; m < sizeof masks / sizeof masks[0]; m++) {
                    mdl_op o = op ? MDL_OP_GRU : MDL_OP_LSTM;
                    if (!op && lbr) continue;
                    rnn_case c = random_case(o, (mdl_rnn_direction)dir, (unsigned)(m * 3 + 1));
                    c.lbr = lbr;
                    check_direct(&c, op ? 2 : 3, m % 2 ? yh_only : all3, masks[m], true);
                }
    /* Sizes where SIMD GEMMs use whole panels and tails: hidden 16, 33, 64; batch 1 and 2. */
    const int64_t hs[] = {16, 33, 64};
    for (int op = 0; op < 2; op++)
        for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
            for (int64_t n = 1; n <= 2; n++) {
                mdl_op o = op ? MDL_OP_GRU : MDL_OP_LSTM;
                float s = 1.0f / sqrtf((float)hs[i]);
                rnn_case c = {o, 9, n, 7 + (int64_t)i, hs[i], (mdl_rnn_direction)(i % 3),
                              true, true, !op, (n + (int64_t)i) % 2 == 0, s};
                check_direct(&c, op ? 2 : 3, all3, CONST_WRB, true);
                c.lbr = !c.lbr;
                if (op) check_direct(&c, 2, all3, CONST_WRB, true);
            }
}

/* A graph with constant W, R, B built, loaded with mdl_model_load_buffer (which runs pack) and
   run twice in one session and once in a second session sharing the packed weights. */
static void check_model(const rnn_case *c) {
    rnn_data dd;
    data_make(c, &dd);
    const bool lstm = c->op == MDL_OP_LSTM;
    const int64_t D = dd.D, GH = dd.G * c->H;
    mdl_builder *b;
    mdl_error err = {0};
    assert_int_equal(mdl_builder_create(NULL, &b, &err), MDL_OK);
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 3, (int64_t[]){c->S, c->N, c->I}, NULL);
    int w = mdl_builder_tensor(b, "w", MDL_DTYPE_FLOAT32, 3, (int64_t[]){D, GH, c->I}, dd.w);
    int r = mdl_builder_tensor(b, "r", MDL_DTYPE_FLOAT32, 3, (int64_t[]){D, GH, c->H}, dd.r);
    int bb = dd.b ? mdl_builder_tensor(b, "b", MDL_DTYPE_FLOAT32, 2, (int64_t[]){D, 2 * GH}, dd.b)
                  : -1;
    int64_t sd[3] = {D, c->N, c->H};
    int h0 = dd.h0 ? mdl_builder_tensor(b, "h0", MDL_DTYPE_FLOAT32, 3, sd, NULL) : -1;
    int c0 = dd.c0 ? mdl_builder_tensor(b, "c0", MDL_DTYPE_FLOAT32, 3, sd, NULL) : -1;
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    int yh = mdl_builder_tensor(b, "yh", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    int yc = lstm ? mdl_builder_tensor(b, "yc", MDL_DTYPE_FLOAT32, -1, NULL, NULL) : -1;
    mdl_op_options o = make_options(c);
    int ins[7] = {x, w, r, bb, -1, h0, c0};
    int outs[3] = {y, yh, yc};
    assert_true(mdl_builder_node(b, c->op, "test", lstm ? 7 : 6, ins, lstm ? 3 : 2, outs, &o) >=
                0);
    int gin[3] = {x, h0, c0};
    const float *gdata[3] = {dd.x, dd.h0, dd.c0};
    int64_t gcount[3] = {c->S * c->N * c->I, D * c->N * c->H, D * c->N * c->H};
    for (int i = 0; i < 3; i++)
        if (gin[i] >= 0) assert_int_equal(mdl_builder_add_input(b, gin[i]), MDL_OK);
    for (int i = 0; i < (lstm ? 3 : 2); i++)
        assert_int_equal(mdl_builder_add_output(b, outs[i]), MDL_OK);
    void *bytes;
    size_t size;
    if (mdl_builder_finish(b, &bytes, &size, &err) != MDL_OK) fail_msg("finish: %s", err.msg);
    mdl_model *m;
    mdl_load_options lo = mdl_load_options_default();
    lo.flags = MDL_LOAD_COPY;
    if (mdl_model_load_buffer(bytes, size, &lo, &m, &err) != MDL_OK) fail_msg("load: %s", err.msg);
    mdl_session *s[2];
    for (int k = 0; k < 2; k++)
        if (mdl_session_create(m, NULL, &s[k], &err) != MDL_OK) fail_msg("session: %s", err.msg);
    const float *refs[3] = {dd.y, dd.yh, dd.yc};
    int64_t counts[3] = {c->S * D * c->N * c->H, D * c->N * c->H, D * c->N * c->H};
    for (int run = 0; run < 3; run++) {
        mdl_session *ss = s[run == 2];
        for (int i = 0, k = 0; i < 3; i++)
            if (gin[i] >= 0)
                memcpy(mdl_session_input_data(ss, k++), gdata[i], (size_t)gcount[i] * sizeof(float));
        if (mdl_session_run(ss) != MDL_OK) fail_msg("run: %s", mdl_session_message(ss));
        for (int i = 0; i < (lstm ? 3 : 2); i++)
            th_assert_close(mdl_session_output_data(ss, i), refs[i], counts[i], 1e-4);
    }
    for (int k = 0; k < 2; k++) mdl_session_free(s[k]);
    mdl_model_free(m);
    mdl_builder_release(b, bytes);
    mdl_builder_free(b);
    data_free(&dd);
}

static void test_packed_through_loader(void **state) {
    (void)state;
    th_seed(18);
    float s = 1.0f / sqrtf(64.0f);
    for (int dir = 0; dir < 3; dir++) {
        rnn_case l = {MDL_OP_LSTM, 12, 1, 16, 64, (mdl_rnn_direction)dir, true, dir > 0, dir > 0,
                      false, s};
        check_model(&l);
        for (int lbr = 0; lbr < 2; lbr++) {
            rnn_case g = {MDL_OP_GRU, 10, 2, 5, 40, (mdl_rnn_direction)dir, dir != 1, true, false,
                          lbr, s};
            check_model(&g);
        }
    }
    /* the text classifier's shape: seq 100, input 16, hidden 128, batch 1 */
    rnn_case t = {MDL_OP_LSTM, 100, 1, 16, 128, MDL_RNN_FORWARD, true, false, false, false,
                  1.0f / sqrtf(128.0f)};
    check_model(&t);
}

/* Scratch bytes are part of the memory plan stored in .mdl files: a kernel that asks for more
   than the plan a file was converted with makes that file fail to load.  These are the sizes
   existing files were planned with (each region a multiple of 4 floats): projection S*N*G*H,
   recurrent product N*G*H, h N*H, LSTM c N*H, GRU (no linear_before_reset) r.h N*H, bias G*H. */
static void test_scratch_size_is_stable(void **state) {
    (void)state;
    th_seed(19);
    for (int op = 0; op < 2; op++)
        for (int dir = 0; dir < 3; dir++)
            for (int lbr = 0; lbr < 2; lbr++) {
                mdl_op o = op ? MDL_OP_GRU : MDL_OP_LSTM;
                rnn_case c = {o, 7, 3, 5, 9, (mdl_rnn_direction)dir, true, true, !op, lbr, 0.5f};
                rnn_data dd;
                data_make(&c, &dd);
                th_tensor in[7];
                int nin = make_inputs(&c, &dd, in);
                direct_ctx x;
                direct_init(&x, &c, in, nin, 2, CONST_WRB);
                assert_int_equal(mdl__kernel_find(o, MDL_DTYPE_FLOAT32)->prepare(&x.k), MDL_OK);
                const size_t G = op ? 3 : 4, H = 9, N = 3, S = 7;
#define R4(n) (((n) + 3) / 4 * 4)
                size_t r4 = R4(S * N * G * H) + R4(N * G * H) + R4(N * H) + (op ? 0 : R4(N * H)) +
                     (op && !lbr ? R4(N * H) : 0) + R4(G * H);
#undef R4
                assert_int_equal(x.k.scratch_bytes, r4 * sizeof(float));
                free_inputs(in, nin);
                data_free(&dd);
            }
}

/* ---- rejection at prepare ---------------------------------------------------------------- */

typedef struct bad_case {
    mdl_op op;
    int which;        /* input to alter: -1 none */
    int rank;         /* new rank (with dims) for that input, or -2: make it int32 */
    int64_t dims[4];
    int32_t hidden;   /* hidden_size option (0 = the right one) */
    int direction;    /* -1 = forward */
    int nout;
    mdl_status want;
    const char *msg;
} bad_case;

static void expect_reject(const bad_case *b) {
    /* A valid forward node: S 3, N 2, I 5, H 4. */
    rnn_case c = {b->op, 3, 2, 5, 4, MDL_RNN_FORWARD, true, true, b->op == MDL_OP_LSTM, false,
                  0.5f};
    rnn_data dd;
    data_make(&c, &dd);
    th_tensor in[8];
    for (int i = 0; i < 8; i++) in[i] = th_tensor_absent();
    int nin = make_inputs(&c, &dd, in);
    if (b->which >= 0) {
        if (b->which >= nin) nin = b->which + 1;
        if (in[b->which].rank >= 0) th_tensor_free(&in[b->which]);
        if (b->rank == -2)
            in[b->which] = th_tensor_make(MDL_DTYPE_INT32, 3, (int64_t[]){1, 16, 5}, NULL);
        else
            in[b->which] = th_tensor_make(MDL_DTYPE_FLOAT32, b->rank, b->dims, NULL);
    }
    mdl_op_options o = make_options(&c);
    if (b->hidden) o.rnn.hidden_size = b->hidden;
    if (b->direction >= 0) o.rnn.direction = (mdl_rnn_direction)b->direction;
    th_tensor out[4];
    memset(out, 0, sizeof out);
    mdl_error err = {0};
    mdl_status st = th_run_op(b->op, &o, nin, in, b->nout, out, &err);
    if (st != b->want) fail_msg("expected status %d, got %d (%s)", (int)b->want, (int)st, err.msg);
    const char *who = b->op == MDL_OP_LSTM ? "LSTM 'test'" : "GRU 'test'";
    if (!strstr(err.msg, who) || !strstr(err.msg, b->msg))
        fail_msg("message '%s' lacks '%s' / '%s'", err.msg, who, b->msg);
    free_inputs(in, nin);
    data_free(&dd);
}

static void test_rejects(void **state) {
    (void)state;
    th_seed(16);
    const mdl_op L = MDL_OP_LSTM, G = MDL_OP_GRU;
    const bad_case cases[] = {
        {L, 1, 3, {1, 16, 6}, 0, -1, 3, MDL_SHAPE, "W [1,16,6]"}, /* input size */
        {L, 1, 3, {2, 16, 5}, 0, -1, 3, MDL_SHAPE, "1 direction(s)"},
        {G, 1, 3, {1, 12, 4}, 0, -1, 2, MDL_SHAPE, "W [1,12,4]"},
        {L, 1, 2, {16, 5}, 0, -1, 3, MDL_SHAPE, "W has shape [16,5]"},
        {L, 2, 3, {1, 16, 5}, 0, -1, 3, MDL_SHAPE, "R has shape [1,16,5], expected [1,16,4]"},
        {G, 2, 3, {1, 16, 4}, 0, -1, 2, MDL_SHAPE, "R has shape [1,16,4], expected [1,12,4]"},
        {L, 3, 2, {1, 16}, 0, -1, 3, MDL_SHAPE, "B has shape [1,16], expected [1,32]"},
        {G, 3, 1, {24}, 0, -1, 2, MDL_SHAPE, "B has shape [24], expected [1,24]"},
        {L, 5, 3, {1, 3, 4}, 0, -1, 3, MDL_SHAPE, "initial_h has shape [1,3,4], expected [1,2,4]"},
        {G, 5, 3, {2, 2, 4}, 0, -1, 2, MDL_SHAPE, "initial_h has shape [2,2,4]"},
        {L, 6, 3, {1, 2, 5}, 0, -1, 3, MDL_SHAPE, "initial_c has shape [1,2,5], expected [1,2,4]"},
        {L, 0, 2, {3, 10}, 0, -1, 3, MDL_SHAPE, "X has shape [3,10]"},
        {L, -1, 0, {0}, 5, -1, 3, MDL_SHAPE, "hidden_size 5"},
        {G, -1, 0, {0}, -3, -1, 2, MDL_SHAPE, "hidden_size -3"},
        {L, -1, 0, {0}, 0, 7, 3, MDL_INVALID_ARGUMENT, "unknown direction 7"},
        {L, -1, 0, {0}, 0, MDL_RNN_BIDIRECTIONAL, 3, MDL_SHAPE, "2 direction(s)"},
        {L, 4, 1, {2}, 0, -1, 3, MDL_UNSUPPORTED, "sequence_lens"},
        {G, 4, 1, {2}, 0, -1, 2, MDL_UNSUPPORTED, "sequence_lens"},
        {L, 7, 2, {1, 12}, 0, -1, 3, MDL_UNSUPPORTED, "peephole"},
        {L, 2, -2, {0}, 0, -1, 3, MDL_DTYPE, "int32 R"},
        {G, 5, -2, {0}, 0, -1, 2, MDL_DTYPE, "int32 initial_h"},
        {G, -1, 0, {0}, 0, -1, 3, MDL_INVALID_ARGUMENT, "1 to 2 outputs"},
        {L, -1, 0, {0}, 0, -1, 4, MDL_INVALID_ARGUMENT, "1 to 3 outputs"},
        {G, 6, 3, {1, 2, 4}, 0, -1, 2, MDL_INVALID_ARGUMENT, "expects inputs"}, /* GRU has no c0 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_reject(&cases[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lstm_random),
        cmocka_unit_test(test_gru_random),
        cmocka_unit_test(test_size_one_and_extremes),
        cmocka_unit_test(test_partial_outputs),
        cmocka_unit_test(test_text_classifier_shape),
        cmocka_unit_test(test_packed_weights),
        cmocka_unit_test(test_packed_through_loader),
        cmocka_unit_test(test_scratch_size_is_stable),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
