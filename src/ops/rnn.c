/* Recurrent layers: LSTM and GRU with ONNX semantics (opset 14 default activations, no
   peepholes, no clip, layout 0).  Layouts are documented in include/mdeploy/graph.h.

   Per direction the work is split so that almost all multiply-adds run in large GEMMs:
     1. the input projection X W^T (+ biases that do not depend on the state) for every
        timestep at once: one GEMM with M = seq * batch, N = G * H, K = input;
     2. per step the recurrent projection h R^T for all gates packed together (M = batch);
     3. the elementwise gate math, which reads both projections.
   GRU without linear_before_reset is the one exception to the packing in step 2: its candidate
   gate multiplies R_h by (r . h), which needs r from the same step, so that step runs one GEMM
   for the z and r gates and a second one for the candidate gate. */
#include "ops.h"

#include "graph/util.h"

#include <math.h>
#include <string.h>

enum { IN_X, IN_W, IN_R, IN_B, IN_SEQ_LENS, IN_H0, IN_C0, IN_P };
enum { OUT_Y, OUT_YH, OUT_YC };

/* Sizes of one node, derived from its inputs and options (valid after a successful prepare). */
typedef struct rnn_geom {
    bool lstm;
    int64_t S, N, I, H, G, D; /* seq, batch, input, hidden, gates, directions */
    /* Scratch layout, in floats from the start (each region 16-byte aligned). */
    size_t xp, rp, h, c, rh, bias, total;
} rnn_geom;

static inline size_t align4(size_t n) { return (n + 3) & ~(size_t)3; }

/* Reserves n floats at *off; false on size_t overflow. */
static bool take(size_t *off, size_t *region, size_t n) {
    *region = *off;
    return n <= SIZE_MAX - 3 && mdl__add_size(*off, align4(n), off);
}

/* Fills g from the node; false if the scratch size overflows. */
static bool geometry(const mdl__kctx *c, rnn_geom *g) {
    const mdl__tensor *x = c->in[IN_X], *w = c->in[IN_W];
    g->lstm = c->op == MDL_OP_LSTM;
    g->G = g->lstm ? 4 : 3;
    g->S = x->dims[0];
    g->N = x->dims[1];
    g->I = x->dims[2];
    g->H = c->opt->rnn.hidden_size;
    g->D = w->dims[0];
    size_t gh = (size_t)(g->G * g->H), sn, xp_n, rp_n, nh, off = 0;
    if (!mdl__mul_size((size_t)g->S, (size_t)g->N, &sn) || !mdl__mul_size(sn, gh, &xp_n) ||
        !mdl__mul_size((size_t)g->N, gh, &rp_n) || !mdl__mul_size((size_t)g->N, (size_t)g->H, &nh))
        return false;
    bool need_rh = !g->lstm && !c->opt->rnn.linear_before_reset;
    if (!take(&off, &g->xp, xp_n) || !take(&off, &g->rp, rp_n) || !take(&off, &g->h, nh) ||
        !take(&off, &g->c, g->lstm ? nh : 0) || !take(&off, &g->rh, need_rh ? nh : 0) ||
        !take(&off, &g->bias, gh))
        return false;
    g->total = off;
    return true;
}

/* Checks that input t has exactly the dims want[0..rank); names it on failure. */
static mdl_status check_dims(mdl__kctx *c, const mdl__tensor *t, const char *what, int32_t rank,
                             const int64_t *want) {
    char s1[64], s2[64];
    bool ok = t->rank == rank;
    for (int32_t i = 0; ok && i < rank; i++) ok = t->dims[i] == want[i];
    if (ok) return MDL_OK;
    return mdl__fail(c, MDL_SHAPE, "%s has shape %s, expected %s", what,
                     mdl__dims_str(s1, sizeof s1, t->rank, t->dims),
                     mdl__dims_str(s2, sizeof s2, rank, want));
}

static mdl_status rnn_prepare(mdl__kctx *c) {
    bool lstm = c->op == MDL_OP_LSTM;
    const int max_in = lstm ? 8 : 6, max_out = lstm ? 3 : 2;
    const int64_t G = lstm ? 4 : 3;
    const char *names[] = {"X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"};
    char s1[64], s2[64];
    mdl_status st;

    if (c->nin < 3 || c->nin > max_in || c->nout < 1 || c->nout > max_out || !c->in[IN_X] ||
        !c->in[IN_W] || !c->in[IN_R])
        return mdl__fail(c, MDL_INVALID_ARGUMENT,
                         lstm ? "expects inputs X, W, R[, B, sequence_lens, initial_h, initial_c] "
                                "and 1 to 3 outputs Y, Y_h, Y_c"
                              : "expects inputs X, W, R[, B, sequence_lens, initial_h] and 1 to 2 "
                                "outputs Y, Y_h");
    const mdl__tensor *in[8] = {0};
    for (int i = 0; i < c->nin; i++) in[i] = c->in[i];
    if (in[IN_SEQ_LENS])
        return mdl__fail(c, MDL_UNSUPPORTED,
                         "sequence_lens is not supported (all sequences must have full length)");
    if (in[IN_P]) return mdl__fail(c, MDL_UNSUPPORTED, "peephole input P is not supported");
    for (int i = 0; i < c->nin; i++)
        if (in[i] && in[i]->dtype != MDL_DTYPE_FLOAT32)
            return mdl__fail(c, MDL_DTYPE, "float32 kernel got %s %s", mdl_dtype_name(in[i]->dtype),
                             names[i]);

    const mdl__tensor *x = in[IN_X], *w = in[IN_W], *r = in[IN_R];
    const mdl_rnn_options *o = &c->opt->rnn;
    if ((unsigned)o->direction >= MDL_RNN_DIRECTION_COUNT)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "unknown direction %d", (int)o->direction);
    const int64_t D = o->direction == MDL_RNN_BIDIRECTIONAL ? 2 : 1;
    if (x->rank != 3)
        return mdl__fail(c, MDL_SHAPE, "X has shape %s, expected [seq, batch, input]",
                         mdl__dims_str(s1, sizeof s1, x->rank, x->dims));
    if (w->rank != 3)
        return mdl__fail(c, MDL_SHAPE, "W has shape %s, expected [directions, %lld*hidden, input]",
                         mdl__dims_str(s1, sizeof s1, w->rank, w->dims), (long long)G);
    if (o->hidden_size <= 0 || w->dims[1] != G * o->hidden_size)
        return mdl__fail(c, MDL_SHAPE, "hidden_size %d does not match W %s (dim 1 must be %lld*%d)",
                         (int)o->hidden_size, mdl__dims_str(s1, sizeof s1, w->rank, w->dims),
                         (long long)G, (int)o->hidden_size);
    const int64_t H = o->hidden_size, S = x->dims[0], N = x->dims[1], I = x->dims[2];
    if (w->dims[0] != D || w->dims[2] != I)
        return mdl__fail(c, MDL_SHAPE,
                         "W %s does not match %lld direction(s) and X %s (dims 0 and 2 must be "
                         "%lld, %lld)",
                         mdl__dims_str(s1, sizeof s1, w->rank, w->dims), (long long)D,
                         mdl__dims_str(s2, sizeof s2, x->rank, x->dims), (long long)D,
                         (long long)I);
    if ((st = check_dims(c, r, "R", 3, (int64_t[]){D, G * H, H}))) return st;
    if (in[IN_B] && (st = check_dims(c, in[IN_B], "B", 2, (int64_t[]){D, 2 * G * H}))) return st;
    if (in[IN_H0] && (st = check_dims(c, in[IN_H0], "initial_h", 3, (int64_t[]){D, N, H})))
        return st;
    if (in[IN_C0] && (st = check_dims(c, in[IN_C0], "initial_c", 3, (int64_t[]){D, N, H})))
        return st;

    rnn_geom g;
    if (!geometry(c, &g) || !mdl__mul_size(g.total, sizeof(float), &c->scratch_bytes))
        return mdl__fail(c, MDL_SHAPE, "X %s with hidden_size %lld is too large",
                         mdl__dims_str(s1, sizeof s1, x->rank, x->dims), (long long)H);

    for (int i = 0; i < c->nout; i++) {
        mdl__shape *s = &c->out_shape[i];
        s->dtype = MDL_DTYPE_FLOAT32;
        if (i == OUT_Y) {
            s->rank = 4;
            s->dims[0] = S; s->dims[1] = D; s->dims[2] = N; s->dims[3] = H;
        } else {
            s->rank = 3;
            s->dims[0] = D; s->dims[1] = N; s->dims[2] = H;
        }
    }
    return MDL_OK;
}

static inline float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

/* One LSTM step for all batch rows.  xp: input projection of this step incl. both biases
   [N, 4H]; rp: h R^T [N, 4H]; h, cs: state [N, H], updated in place. */
static void lstm_cell(int64_t N, int64_t H, const float *xp, const float *rp, float *h,
                      float *cs) {
    const int64_t GH = 4 * H;
    for (int64_t b = 0; b < N; b++) {
        const float *xb = xp + b * GH, *rb = rp + b * GH;
        float *hb = h + b * H, *cb = cs + b * H;
        for (int64_t j = 0; j < H; j++) {
            float i = sigmoidf(xb[j] + rb[j]);
            float o = sigmoidf(xb[H + j] + rb[H + j]);
            float f = sigmoidf(xb[2 * H + j] + rb[2 * H + j]);
            float g = tanhf(xb[3 * H + j] + rb[3 * H + j]);
            float cn = f * cb[j] + i * g;
            cb[j] = cn;
            hb[j] = o * tanhf(cn);
        }
    }
}

/* Runs one direction over the whole sequence.  Wd [G*H, I], Rd [G*H, H], Bd [2*G*H] or NULL,
   h0/c0 [N, H] or NULL; Y (with row stride D*N*H between steps), yh, yc may be NULL. */
static void run_direction(const mdl__kctx *c, const rnn_geom *g, bool reverse, const float *X,
                          const float *Wd, const float *Rd, const float *Bd, const float *h0,
                          const float *c0, float *Y, float *yh, float *yc) {
    const int64_t S = g->S, N = g->N, I = g->I, H = g->H, GH = g->G * g->H;
    const float lo = -__builtin_inff(), hi = __builtin_inff();
    const bool lbr = c->opt->rnn.linear_before_reset;
    float *base = c->scratch;
    float *xp = base + g->xp, *rp = base + g->rp, *h = base + g->h, *cs = base + g->c;
    float *rh = base + g->rh, *bias = NULL;
    const size_t nh = (size_t)(N * H) * sizeof(float);

    /* Biases that add to a gate outside any reset product fold into the input projection:
       all of Wb + Rb except, for GRU with linear_before_reset, Rb_h (it is scaled by r). */
    if (Bd) {
        bias = base + g->bias;
        const float *wb = Bd, *rb = Bd + GH;
        int64_t folded = (!g->lstm && lbr) ? 2 * H : GH;
        for (int64_t j = 0; j < GH; j++) bias[j] = wb[j] + (j < folded ? rb[j] : 0.0f);
    }
    mdl__gemm_nt(S * N, GH, I, X, I, Wd, I, bias, xp, GH, lo, hi);

    if (h0) memcpy(h, h0, nh);
    else memset(h, 0, nh);
    if (g->lstm) {
        if (c0) memcpy(cs, c0, nh);
        else memset(cs, 0, nh);
    }
    const float *rbh = Bd && !g->lstm && lbr ? Bd + GH + 2 * H : NULL;

    for (int64_t step = 0; step < S; step++) {
        int64_t t = reverse ? S - 1 - step : step;
        const float *xt = xp + t * N * GH;
        if (g->lstm) {
            mdl__gemm_nt(N, GH, H, h, H, Rd, H, NULL, rp, GH, lo, hi);
            lstm_cell(N, H, xt, rp, h, cs);
        } else if (lbr) {
            /* h~ = tanh(xh + r . (R_h h + Rb_h)): one packed GEMM for all three gates. */
            mdl__gemm_nt(N, GH, H, h, H, Rd, H, NULL, rp, GH, lo, hi);
            for (int64_t b = 0; b < N; b++) {
                const float *xb = xt + b * GH, *rpb = rp + b * GH;
                float *hb = h + b * H;
                for (int64_t j = 0; j < H; j++) {
                    float z = sigmoidf(xb[j] + rpb[j]);
                    float r = sigmoidf(xb[H + j] + rpb[H + j]);
                    float lin = rpb[2 * H + j] + (rbh ? rbh[j] : 0.0f);
                    float cand = tanhf(xb[2 * H + j] + r * lin);
                    hb[j] = (1.0f - z) * cand + z * hb[j];
                }
            }
        } else {
            /* h~ = tanh(xh + (r . h) R_h^T): z and r first, then the candidate's GEMM. */
            mdl__gemm_nt(N, 2 * H, H, h, H, Rd, H, NULL, rp, GH, lo, hi);
            for (int64_t b = 0; b < N; b++) {
                const float *xb = xt + b * GH, *hb = h + b * H;
                float *rpb = rp + b * GH, *rhb = rh + b * H;
                for (int64_t j = 0; j < H; j++) {
                    float r = sigmoidf(xb[H + j] + rpb[H + j]);
                    rpb[j] = sigmoidf(xb[j] + rpb[j]); /* keep z for the update below */
                    rhb[j] = r * hb[j];
                }
            }
            mdl__gemm_nt(N, H, H, rh, H, Rd + 2 * H * H, H, NULL, rp + 2 * H, GH, lo, hi);
            for (int64_t b = 0; b < N; b++) {
                const float *xb = xt + b * GH, *rpb = rp + b * GH;
                float *hb = h + b * H;
                for (int64_t j = 0; j < H; j++) {
                    float z = rpb[j], cand = tanhf(xb[2 * H + j] + rpb[2 * H + j]);
                    hb[j] = (1.0f - z) * cand + z * hb[j];
                }
            }
        }
        if (Y) memcpy(Y + t * g->D * N * H, h, nh);
    }
    if (yh) memcpy(yh, h, nh);
    if (yc) memcpy(yc, cs, nh);
}

static mdl_status rnn_run(mdl__kctx *c) {
    rnn_geom g;
    geometry(c, &g); /* validated in prepare */
    const int64_t GH = g.G * g.H, NH = g.N * g.H;
    const float *in[8] = {0};
    for (int i = 0; i < c->nin && i < 8; i++) in[i] = c->in[i] ? c->in_data[i] : NULL;
    float *out[3] = {0};
    for (int i = 0; i < c->nout; i++) out[i] = c->out_data[i];
    if (!g.lstm) out[OUT_YC] = NULL;
    mdl_rnn_direction dir = c->opt->rnn.direction;

    for (int64_t d = 0; d < g.D; d++) {
        bool reverse = dir == MDL_RNN_REVERSE || (dir == MDL_RNN_BIDIRECTIONAL && d == 1);
        const float *bd = in[IN_B] ? in[IN_B] + d * 2 * GH : NULL;
        const float *h0 = in[IN_H0] ? in[IN_H0] + d * NH : NULL;
        const float *c0 = in[IN_C0] ? in[IN_C0] + d * NH : NULL;
        float *y = out[OUT_Y] ? out[OUT_Y] + d * NH : NULL;
        float *yh = out[OUT_YH] ? out[OUT_YH] + d * NH : NULL;
        float *yc = out[OUT_YC] ? out[OUT_YC] + d * NH : NULL;
        run_direction(c, &g, reverse, in[IN_X], in[IN_W] + d * GH * g.I, in[IN_R] + d * GH * g.H,
                      bd, h0, c0, y, yh, yc);
    }
    return MDL_OK;
}

const mdl__kernel mdl__lstm_f32 = {.prepare = rnn_prepare, .run = rnn_run};
const mdl__kernel mdl__gru_f32 = {.prepare = rnn_prepare, .run = rnn_run};
