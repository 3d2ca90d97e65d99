/* Recurrent layers: LSTM and GRU with ONNX semantics (opset 14 default activations, no
   peepholes, no clip, layout 0).  Layouts are documented in include/mdeploy/graph.h.

   Per direction the work is split so that almost all multiply-adds run in large GEMMs:
     1. the input projection X W^T (+ biases that do not depend on the state) for every
        timestep at once: one GEMM with M = seq * batch, N = G * H, K = input;
     2. per step the recurrent projection h R^T for all gates packed together (M = batch);
     3. the elementwise gate math, which reads both projections.
   GRU without linear_before_reset is the one exception to the packing in step 2: its candidate
   gate multiplies R_h by (r . h), which needs r from the same step, so that step runs one GEMM
   for the z and r gates and a second one for the candidate gate.

   Batch-1 sequences (the common deployment case) are latency-bound by the per-step GEMV, so:
   constant W and R are re-laid out once at load for the GEMM kernels (pack hook); with one batch
   row the step's input projection enters the GEMV as its bias, so the GEMV writes finished gate
   pre-activations; the gate nonlinearities run as whole-vector calls (the gate order i, o, f, c
   puts the three sigmoid gates next to each other).

   Both directions' input projections would fit one GEMM (W is one [D*G*H, input] matrix), but
   that needs a D times larger projection buffer, i.e. a different scratch size, and memory plans
   stored in existing .mdl files would no longer fit; two GEMMs of N = G*H cost the same work. */
#include "ops.h"

#include "graph/util.h"

#include <string.h>

enum { IN_X, IN_W, IN_R, IN_B, IN_SEQ_LENS, IN_H0, IN_C0, IN_P };
enum { OUT_Y, OUT_YH, OUT_YC };

/* Sizes of one node, derived from its inputs and options (valid after a successful prepare). */
typedef struct rnn_geom {
    bool lstm, lbr;
    int64_t S, N, I, H, G, D; /* seq, batch, input, hidden, gates, directions */
    /* Scratch layout, in floats from the start (each region 16-byte aligned).  Stored memory
       plans include it: changing it makes existing model files fail to load. */
    size_t xp, rp, h, c, rh, bias, total;
} rnn_geom;

/* Load-time packed weights, in bytes from ctx->packed (each part 64-byte aligned); a part whose
   bytes are 0 is not packed (non-constant weight, or the GEMM reads that shape unpacked).  W is
   packed per direction; R per direction in nr row blocks: all G*H rows, or for GRU without
   linear_before_reset rows [0, 2H) and [2H, 3H) separately because they are separate products. */
typedef struct rnn_pack {
    size_t w[2], w_bytes;
    int nr;
    int64_t r_rows[2], r_first[2];
    size_t r[2][2], r_bytes[2]; /* [direction][block] offsets, bytes per block */
    size_t total;
} rnn_pack;

static inline size_t align4(size_t n) { return (n + 3) & ~(size_t)3; }
static inline size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Reserves n floats at *off; false on size_t overflow. */
static bool take(size_t *off, size_t *region, size_t n) {
    *region = *off;
    return n <= SIZE_MAX - 3 && mdl__add_size(*off, align4(n), off);
}

/* Fills g from the node; false if the scratch size overflows. */
static bool geometry(const mdl__kctx *c, rnn_geom *g) {
    const mdl__tensor *x = c->in[IN_X], *w = c->in[IN_W];
    g->lstm = c->op == MDL_OP_LSTM;
    g->lbr = !g->lstm && c->opt->rnn.linear_before_reset;
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
    bool need_rh = !g->lstm && !g->lbr;
    if (!take(&off, &g->xp, xp_n) || !take(&off, &g->rp, rp_n) || !take(&off, &g->h, nh) ||
        !take(&off, &g->c, g->lstm ? nh : 0) || !take(&off, &g->rh, need_rh ? nh : 0) ||
        !take(&off, &g->bias, gh))
        return false;
    g->total = off;
    return true;
}

/* Packed layout for the node's constant weights (only W and R are packed; the biases are folded
   per run, which costs D*G*H additions).  Used identically by prepare, pack and run, so the
   offsets agree; false on size_t overflow. */
static bool packing(const mdl__kctx *c, const rnn_geom *g, rnn_pack *p) {
    memset(p, 0, sizeof *p);
    const int64_t GH = g->G * g->H, H = g->H;
    size_t off = 0;
    if (c->in[IN_W]->data) {
        p->w_bytes = mdl__gemm_pack_bytes(GH, g->I);
        if (p->w_bytes > SIZE_MAX - 63) return false;
    }
    p->nr = g->lstm || g->lbr ? 1 : 2;
    p->r_rows[0] = p->nr == 1 ? GH : 2 * H;
    p->r_first[1] = 2 * H;
    p->r_rows[1] = H;
    if (c->in[IN_R]->data)
        for (int k = 0; k < p->nr; k++) {
            p->r_bytes[k] = mdl__gemm_pack_bytes(p->r_rows[k], H);
            if (p->r_bytes[k] > SIZE_MAX - 63) return false;
        }
    for (int64_t d = 0; d < g->D; d++) {
        p->w[d] = off;
        if (!mdl__add_size(off, align64(p->w_bytes), &off)) return false;
        for (int k = 0; k < p->nr; k++) {
            p->r[d][k] = off;
            if (!mdl__add_size(off, align64(p->r_bytes[k]), &off)) return false;
        }
    }
    p->total = off;
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
    rnn_pack p;
    if (!packing(c, &g, &p))
        return mdl__fail(c, MDL_SHAPE, "packed weights for hidden_size %lld are too large",
                         (long long)H);
    c->packed_bytes = p.total;

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

/* Per-step elementwise passes; restrict lets gcc vectorize them without alias checks. */
static void add_into(int64_t n, float *restrict y, const float *restrict x) {
    for (int64_t j = 0; j < n; j++) y[j] += x[j];
}

/* LSTM cell update: c = f . c + i . g, with the gates already activated. */
static void lstm_c(int64_t n, float *restrict cs, const float *restrict i, const float *restrict f,
                   const float *restrict g) {
    for (int64_t j = 0; j < n; j++) cs[j] = f[j] * cs[j] + i[j] * g[j];
}

static void mul_to(int64_t n, float *restrict y, const float *restrict a, const float *restrict b) {
    for (int64_t j = 0; j < n; j++) y[j] = a[j] * b[j];
}

/* GRU state update h = (1 - z) . h~ + z . h. */
static void gru_h(int64_t n, float *restrict h, const float *restrict z,
                  const float *restrict cand) {
    for (int64_t j = 0; j < n; j++) h[j] = (1.0f - z[j]) * cand[j] + z[j] * h[j];
}

/* GRU with linear_before_reset: pre = xh + r . (R_h h + Rb_h), in place over lin. */
static void gru_lbr_pre(int64_t n, float *restrict lin, const float *restrict xh,
                        const float *restrict r, const float *restrict rbh) {
    if (rbh)
        for (int64_t j = 0; j < n; j++) lin[j] = xh[j] + r[j] * (lin[j] + rbh[j]);
    else
        for (int64_t j = 0; j < n; j++) lin[j] = xh[j] + r[j] * lin[j];
}

/* Rows [b0, b1) of out[N, cols] (row stride ldo) = h[N, K] R^T + xt, where xt's rows are xs
   apart.  With one batch row xt is the GEMM's bias, so the product comes out finished;
   otherwise it is added after.  The rows are computed exactly as the whole product computes
   them (mdl__gemm_nt_packed_rows), so a split over workers changes no result. */
static void step_gemm(int64_t N, int64_t b0, int64_t b1, int64_t cols, int64_t K, const float *h,
                      const float *R, const void *packed, const float *xt, int64_t xs, float *out,
                      int64_t ldo) {
    const float lo = -__builtin_inff(), hi = __builtin_inff();
    if (N == 1) {
        mdl__gemm_nt_packed_rows(1, 0, 1, cols, K, h, K, R, K, packed, xt, out, ldo, lo, hi);
        return;
    }
    mdl__gemm_nt_packed_rows(N, b0, b1, cols, K, h, K, R, K, packed, NULL, out, ldo, lo, hi);
    for (int64_t b = b0; b < b1; b++) add_into(cols, out + b * ldo, xt + b * xs);
}

/* One timestep for batch rows [b0, b1): every row's recurrence is independent of the others'. */
typedef struct step_job {
    const rnn_geom *g;
    const float *Rd;
    const void *const *pr;
    const float *xt, *rbh;
    float *rp, *h, *cs, *rh;
    int64_t rows; /* per task */
} step_job;

static void step_rows(const step_job *j, int64_t b0, int64_t b1) {
    const rnn_geom *g = j->g;
    const int64_t N = g->N, H = g->H, GH = g->G * g->H, xs = GH;
    const float *xt = j->xt, *Rd = j->Rd;
    float *rp = j->rp, *h = j->h, *cs = j->cs, *rh = j->rh;
    if (g->lstm) {
        step_gemm(N, b0, b1, GH, H, h, Rd, j->pr[0], xt, xs, rp, GH);
        for (int64_t b = b0; b < b1; b++) {
            float *gb = rp + b * GH, *hb = h + b * H, *cb = cs + b * H;
            float *gi = gb, *go = gb + H, *gf = gb + 2 * H, *gc = gb + 3 * H;
            mdl__sigmoid_f32v(gb, gb, 3 * H); /* i, o, f */
            mdl__tanh_f32v(gc, gc, H);
            lstm_c(H, cb, gi, gf, gc);
            mdl__tanh_f32v(cb, gc, H); /* g is spent: its slot takes tanh(c) */
            mul_to(H, hb, go, gc);
        }
    } else if (g->lbr) {
        /* h~ = tanh(xh + r . (R_h h + Rb_h)): one packed GEMM for all three gates; xh stays
           out of it because r scales the rest. */
        mdl__gemm_nt_packed_rows(N, b0, b1, GH, H, h, H, Rd, H, j->pr[0], NULL, rp, GH,
                                 -__builtin_inff(), __builtin_inff());
        for (int64_t b = b0; b < b1; b++) {
            const float *xb = xt + b * xs;
            float *gb = rp + b * GH, *hb = h + b * H;
            add_into(2 * H, gb, xb);
            mdl__sigmoid_f32v(gb, gb, 2 * H); /* z, r */
            gru_lbr_pre(H, gb + 2 * H, xb + 2 * H, gb + H, j->rbh);
            mdl__tanh_f32v(gb + 2 * H, gb + 2 * H, H);
            gru_h(H, hb, gb, gb + 2 * H);
        }
    } else {
        /* h~ = tanh(xh + (r . h) R_h^T): z and r first, then the candidate's GEMM. */
        step_gemm(N, b0, b1, 2 * H, H, h, Rd, j->pr[0], xt, xs, rp, GH);
        for (int64_t b = b0; b < b1; b++) {
            float *gb = rp + b * GH;
            mdl__sigmoid_f32v(gb, gb, 2 * H);
            mul_to(H, rh + b * H, gb + H, h + b * H);
        }
        step_gemm(N, b0, b1, H, H, rh, Rd + 2 * H * H, j->pr[1], xt + 2 * H, xs, rp + 2 * H, GH);
        for (int64_t b = b0; b < b1; b++) {
            float *gb = rp + b * GH;
            mdl__tanh_f32v(gb + 2 * H, gb + 2 * H, H);
            gru_h(H, h + b * H, gb, gb + 2 * H);
        }
    }
}

static void step_task(void *arg, int64_t t, int worker) {
    (void)worker;
    const step_job *j = arg;
    int64_t b0 = t * j->rows, b1 = b0 + j->rows < j->g->N ? b0 + j->rows : j->g->N;
    step_rows(j, b0, b1);
}

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Batch rows per task of a step: a multiple of the row granule of every GEMM in the step, and
   the whole batch (one task) when the step is too small to split. */
static int64_t step_task_rows(const mdl__kctx *c, const rnn_geom *g, const float *Rd,
                              const void *const *pr) {
    const int64_t N = g->N, H = g->H, GH = g->G * g->H;
    int nw = mdl__par_workers(c->par);
    if (nw < 2 || N < 2 || N * GH * H < ((int64_t)1 << 16)) return N;
    int64_t gr = mdl__gemm_nt_packed_granule(N, g->lstm || g->lbr ? GH : 2 * H, H, Rd, pr[0]);
    if (!g->lstm && !g->lbr) {
        int64_t g2 = mdl__gemm_nt_packed_granule(N, H, H, Rd + 2 * H * H, pr[1]);
        gr = gr / gcd64(gr, g2) * g2;
    }
    int64_t blocks = (N + gr - 1) / gr, parts = blocks < nw ? blocks : nw;
    return (blocks + parts - 1) / parts * gr;
}

/* Runs one direction over the whole sequence.  X [S, N, I]; Wd [G*H, I] and Rd [G*H, H] with
   their packed forms pw and pr[] (NULL: not packed); Bd [2*G*H] or NULL; h0/c0 [N, H] or NULL;
   Y (rows D*N*H apart between steps), yh, yc may be NULL.  With workers, the input projection
   is split like any GEMM and each step over batch rows. */
static void run_direction(const mdl__kctx *c, const rnn_geom *g, bool reverse, const float *X,
                          const float *Wd, const void *pw, const float *Rd, const void *const *pr,
                          const float *Bd, const float *h0, const float *c0, float *Y, float *yh,
                          float *yc) {
    const int64_t S = g->S, N = g->N, I = g->I, H = g->H, GH = g->G * g->H, xs = GH;
    float *base = c->scratch;
    float *xp = base + g->xp, *rp = base + g->rp, *h = base + g->h, *cs = base + g->c;
    float *rh = base + g->rh, *bias = NULL;
    const size_t nh = (size_t)(N * H) * sizeof(float);

    /* Biases that add to a gate outside any reset product fold into the input projection:
       all of Wb + Rb except, for GRU with linear_before_reset, Rb_h (it is scaled by r). */
    if (Bd) {
        bias = base + g->bias;
        const float *wb = Bd, *rb = Bd + GH;
        int64_t folded = g->lbr ? 2 * H : GH;
        for (int64_t j = 0; j < GH; j++) bias[j] = wb[j] + (j < folded ? rb[j] : 0.0f);
    }
    mdl__gemm_nt_packed_par(c->par, S * N, GH, I, X, I, Wd, I, pw, bias, xp, GH,
                            -__builtin_inff(), __builtin_inff());
    const float *rbh = Bd && g->lbr ? Bd + GH + 2 * H : NULL;

    if (h0) memcpy(h, h0, nh);
    else memset(h, 0, nh);
    if (g->lstm) {
        if (c0) memcpy(cs, c0, nh);
        else memset(cs, 0, nh);
    }

    step_job j = {.g = g, .Rd = Rd, .pr = pr, .rbh = rbh, .rp = rp, .h = h, .cs = cs, .rh = rh,
                  .rows = step_task_rows(c, g, Rd, pr)};
    const int64_t tasks = (N + j.rows - 1) / j.rows;
    for (int64_t step = 0; step < S; step++) {
        int64_t t = reverse ? S - 1 - step : step;
        j.xt = xp + t * N * xs;
        if (tasks > 1) mdl__par_for(c->par, tasks, step_task, &j);
        else step_rows(&j, 0, N);
        if (Y) memcpy(Y + t * g->D * N * H, h, nh);
    }
    if (yh) memcpy(yh, h, nh);
    if (yc) memcpy(yc, cs, nh);
}

static mdl_status rnn_pack_run(mdl__kctx *c) {
    rnn_geom g;
    rnn_pack p;
    geometry(c, &g); /* validated in prepare */
    packing(c, &g, &p);
    uint8_t *base = c->packed;
    const int64_t GH = g.G * g.H;
    const float *W = c->in_data[IN_W], *R = c->in_data[IN_R];
    for (int64_t d = 0; d < g.D; d++) {
        if (p.w_bytes) mdl__gemm_pack(GH, g.I, W + d * GH * g.I, g.I, base + p.w[d]);
        for (int k = 0; k < p.nr; k++)
            if (p.r_bytes[k])
                mdl__gemm_pack(p.r_rows[k], g.H, R + (d * GH + p.r_first[k]) * g.H, g.H,
                               base + p.r[d][k]);
    }
    return MDL_OK;
}

static mdl_status rnn_run(mdl__kctx *c) {
    rnn_geom g;
    rnn_pack p;
    geometry(c, &g); /* validated in prepare */
    packing(c, &g, &p);
    const uint8_t *pk = c->packed; /* NULL when pack did not run (builder, tests) */
    const int64_t GH = g.G * g.H, NH = g.N * g.H;
    const float *in[8] = {0};
    for (int i = 0; i < c->nin && i < 8; i++) in[i] = c->in[i] ? c->in_data[i] : NULL;
    float *out[3] = {0};
    for (int i = 0; i < c->nout; i++) out[i] = c->out_data[i];
    if (!g.lstm) out[OUT_YC] = NULL;
    mdl_rnn_direction dir = c->opt->rnn.direction;

    for (int64_t d = 0; d < g.D; d++) {
        bool reverse = dir == MDL_RNN_REVERSE || (dir == MDL_RNN_BIDIRECTIONAL && d == 1);
        const void *pw = pk && p.w_bytes ? pk + p.w[d] : NULL;
        const void *pr[2] = {NULL, NULL};
        for (int k = 0; k < p.nr; k++)
            if (pk && p.r_bytes[k]) pr[k] = pk + p.r[d][k];
        const float *bd = in[IN_B] ? in[IN_B] + d * 2 * GH : NULL;
        const float *h0 = in[IN_H0] ? in[IN_H0] + d * NH : NULL;
        const float *c0 = in[IN_C0] ? in[IN_C0] + d * NH : NULL;
        float *y = out[OUT_Y] ? out[OUT_Y] + d * NH : NULL;
        float *yh = out[OUT_YH] ? out[OUT_YH] + d * NH : NULL;
        float *yc = out[OUT_YC] ? out[OUT_YC] + d * NH : NULL;
        run_direction(c, &g, reverse, in[IN_X], in[IN_W] + d * GH * g.I, pw,
                      in[IN_R] + d * GH * g.H, pr, bd, h0, c0, y, yh, yc);
    }
    return MDL_OK;
}

const mdl__kernel mdl__lstm_f32 = {.prepare = rnn_prepare, .run = rnn_run, .pack = rnn_pack_run};
const mdl__kernel mdl__gru_f32 = {.prepare = rnn_prepare, .run = rnn_run, .pack = rnn_pack_run};
