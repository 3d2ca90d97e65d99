/* Float32 ReduceMean, ReduceSum, ReduceMax over the dims in opt.reduce.axes_mask (0 = all).

   The input is reduced to a short plan: size-1 dims are dropped and neighbouring dims that are
   both reduced or both kept are merged, so e.g. NHWC reduced over H,W becomes [N | HW | C] and a
   last-axis reduction becomes [rows | n].  Two loop shapes cover every plan:
     - innermost dim kept: each output row (contiguous) accumulates one input row per reduced
       position, so the inner loop is a contiguous row add;
     - innermost dim reduced: each output element sums contiguous input runs.
   Sums accumulate in float for a bounded stretch (CHUNK_ROWS rows, CHUNK elements of a run) and
   are then flushed into double, so accuracy does not degrade with the reduction length while the
   hot loops stay float (vectorizable, and cheap on FPUs without double).
   ReduceMax of an empty set gives -inf, ReduceSum 0, ReduceMean NaN (0/0).  NaN inputs may or may
   not propagate through ReduceMax (it uses a > comparison). */
#include "ops.h"

#include <math.h>
#include <string.h>

#define BLK 8
#define CHUNK 1024   /* longest contiguous run summed in float lanes before a double flush */
#define CHUNK_ROWS 64 /* rows added into a float row before it is flushed into the double row */

typedef struct red_plan {
    int nd;
    int64_t n[MDL_MAX_RANK];
    bool red[MDL_MAX_RANK];      /* merged dim is reduced */
    int64_t stride[MDL_MAX_RANK]; /* input element stride of each merged dim */
    int64_t count;               /* elements reduced into each output (product, incl. size-1) */
} red_plan;

static uint32_t effective_mask(uint32_t mask, int32_t rank) {
    return mask ? mask : (rank >= 32 ? 0xFFFFFFFFu : ((1u << rank) - 1u));
}

static void make_plan(const mdl__tensor *x, uint32_t mask, red_plan *p) {
    mask = effective_mask(mask, x->rank);
    p->nd = 0;
    p->count = 1;
    for (int32_t d = 0; d < x->rank; d++) {
        bool r = (mask >> d) & 1u;
        int64_t n = x->dims[d];
        if (r) p->count *= n;
        if (n == 1) continue;
        if (p->nd > 0 && p->red[p->nd - 1] == r) {
            p->n[p->nd - 1] *= n;
        } else {
            p->n[p->nd] = n;
            p->red[p->nd] = r;
            p->nd++;
        }
    }
    int64_t s = 1;
    for (int i = p->nd - 1; i >= 0; i--) {
        p->stride[i] = s;
        s *= p->n[i];
    }
}

static mdl_status reduce_prepare(mdl__kctx *c) {
    mdl_status st = mdl__check_unary_f32(c);
    if (st) return st;
    const mdl__tensor *x = c->in[0];
    uint32_t mask = c->opt->reduce.axes_mask;
    if (x->rank < 32 && (mask >> x->rank) != 0)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "axes mask 0x%x names dims beyond rank %d",
                         (unsigned)mask, (int)x->rank);
    uint32_t m = effective_mask(mask, x->rank);
    mdl__shape *o = &c->out_shape[0];
    o->dtype = MDL_DTYPE_FLOAT32;
    o->rank = 0;
    for (int32_t d = 0; d < x->rank; d++) {
        if (!((m >> d) & 1u)) o->dims[o->rank++] = x->dims[d];
        else if (c->opt->reduce.keepdims) o->dims[o->rank++] = 1;
    }
    red_plan p;
    make_plan(x, mask, &p);
    /* Innermost merged dim kept: a double and a float accumulator per element of an output
       row. */
    if ((p.nd == 0 || !p.red[p.nd - 1]) && c->op != MDL_OP_REDUCE_MAX)
        c->scratch_bytes = (size_t)(p.nd ? p.n[p.nd - 1] : 1) * (sizeof(double) + sizeof(float));
    return MDL_OK;
}

/* Sum of a contiguous run: BLK float lanes (vectorizable) over chunks, flushed into a double. */
static double sum_run(const float *x, int64_t n) {
    double total = 0;
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK) {
        int64_t m = n - c0 < CHUNK ? n - c0 : CHUNK;
        const float *p = x + c0;
        float acc[BLK] = {0};
        int64_t i = 0;
        for (; i + BLK <= m; i += BLK)
            for (int k = 0; k < BLK; k++) acc[k] += p[i + k];
        float s = 0;
        for (; i < m; i++) s += p[i];
        for (int k = 0; k < BLK; k++) s += acc[k];
        total += s;
    }
    return total;
}

static float max_run(const float *x, int64_t n, float m0) {
    float acc[BLK];
    for (int k = 0; k < BLK; k++) acc[k] = m0;
    int64_t i = 0;
    for (; i + BLK <= n; i += BLK)
        for (int k = 0; k < BLK; k++) acc[k] = x[i + k] > acc[k] ? x[i + k] : acc[k];
    float m = m0;
    for (int k = 0; k < BLK; k++) m = acc[k] > m ? acc[k] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* out[k] = max(out[k], in[k]), in fixed blocks so gcc -O2 vectorizes it. */
static void max_into(float *out, const float *in, int64_t n) {
    int64_t i = 0;
    for (; i + BLK <= n; i += BLK) {
        float t[BLK];
        for (int k = 0; k < BLK; k++) t[k] = in[i + k] > out[i + k] ? in[i + k] : out[i + k];
        for (int k = 0; k < BLK; k++) out[i + k] = t[k];
    }
    for (; i < n; i++) out[i] = in[i] > out[i] ? in[i] : out[i];
}

/* out[k] += in[k], blocked. */
static void add_into(float *out, const float *in, int64_t n) {
    int64_t i = 0;
    for (; i + BLK <= n; i += BLK) {
        float t[BLK];
        for (int k = 0; k < BLK; k++) t[k] = out[i + k] + in[i + k];
        for (int k = 0; k < BLK; k++) out[i + k] = t[k];
    }
    for (; i < n; i++) out[i] += in[i];
}

/* Lists the merged dims of one class (reduced or kept), skipping the innermost merged dim. */
static int select_dims(const red_plan *p, bool red, int64_t *n, int64_t *stride) {
    int k = 0;
    for (int i = 0; i < p->nd - 1; i++)
        if (p->red[i] == red) {
            n[k] = p->n[i];
            stride[k] = p->stride[i];
            k++;
        }
    return k;
}

/* Advances an odometer over dims (n, stride), updating the offset; false after the last. */
static bool odo_next(int nd, const int64_t *n, const int64_t *stride, int64_t *idx, int64_t *off) {
    for (int i = nd - 1; i >= 0; i--) {
        *off += stride[i];
        if (++idx[i] < n[i]) return true;
        *off -= stride[i] * n[i];
        idx[i] = 0;
    }
    return false;
}

static int64_t product(int nd, const int64_t *n) {
    int64_t r = 1;
    for (int i = 0; i < nd; i++) r *= n[i];
    return r;
}

static mdl_status reduce_run(mdl__kctx *c) {
    const mdl__tensor *xt = c->in[0];
    const float *x = c->in_data[0];
    float *y = c->out_data[0];
    bool is_max = c->op == MDL_OP_REDUCE_MAX, is_mean = c->op == MDL_OP_REDUCE_MEAN;
    red_plan p;
    make_plan(xt, c->opt->reduce.axes_mask, &p);
    int64_t ncount = p.count;
    /* Mean divides by the number of reduced elements; 1/0 = inf makes an empty mean NaN. */
    double scale = is_mean ? 1.0 / (double)ncount : 1.0;

    int64_t kn[MDL_MAX_RANK], ks[MDL_MAX_RANK], rn[MDL_MAX_RANK], rs[MDL_MAX_RANK];
    int nk = select_dims(&p, false, kn, ks), nr = select_dims(&p, true, rn, rs);
    int64_t outs = product(nk, kn), reds = product(nr, rn);
    int64_t ki[MDL_MAX_RANK] = {0}, ri[MDL_MAX_RANK] = {0};

    if (p.nd == 0 || !p.red[p.nd - 1]) {
        /* Innermost dim kept (or nothing left): output rows of length L. */
        int64_t L = p.nd ? p.n[p.nd - 1] : 1;
        if (outs == 0 || L == 0) return MDL_OK;
        double *acc = c->scratch;
        float *facc = (float *)(acc + L);
        int64_t koff = 0;
        for (int64_t r = 0; r < outs; r++, odo_next(nk, kn, ks, ki, &koff)) {
            float *out = y + r * L;
            if (is_max) {
                /* Start from the first input row rather than -inf: exact when out is the input
                   itself (nothing to reduce and the planner ran the node in place). */
                const float *in0 = x + koff;
                for (int64_t k = 0; k < L; k++) out[k] = reds ? in0[k] : -INFINITY;
            } else {
                for (int64_t k = 0; k < L; k++) acc[k] = 0.0;
                for (int64_t k = 0; k < L; k++) facc[k] = 0.0f;
            }
            int64_t roff = 0;
            for (int64_t q = 0; q < reds; q++, odo_next(nr, rn, rs, ri, &roff)) {
                const float *in = x + koff + roff;
                if (is_max) {
                    if (q == 0) continue;
                    max_into(out, in, L);
                } else {
                    add_into(facc, in, L);
                    if ((q + 1) % CHUNK_ROWS == 0 || q == reds - 1)
                        for (int64_t k = 0; k < L; k++) {
                            acc[k] += (double)facc[k];
                            facc[k] = 0.0f;
                        }
                }
            }
            if (!is_max)
                for (int64_t k = 0; k < L; k++) out[k] = (float)(acc[k] * scale);
        }
    } else {
        /* Innermost dim reduced: each output element reduces contiguous runs of length L. */
        int64_t L = p.n[p.nd - 1];
        int64_t koff = 0;
        for (int64_t r = 0; r < outs; r++, odo_next(nk, kn, ks, ki, &koff)) {
            double s = 0;
            float m = -INFINITY;
            int64_t roff = 0;
            for (int64_t q = 0; q < reds; q++, odo_next(nr, rn, rs, ri, &roff)) {
                const float *in = x + koff + roff;
                if (is_max) m = max_run(in, L, m);
                else s += sum_run(in, L);
            }
            y[r] = is_max ? m : (float)(s * scale);
        }
    }
    return MDL_OK;
}

const mdl__kernel mdl__reduce_mean_f32 = {.prepare = reduce_prepare, .run = reduce_run};
const mdl__kernel mdl__reduce_sum_f32 = {.prepare = reduce_prepare, .run = reduce_run};
const mdl__kernel mdl__reduce_max_f32 = {.prepare = reduce_prepare, .run = reduce_run};
