/* Pooling, NHWC: MAX_POOL2D, AVG_POOL2D, GLOBAL_AVG_POOL, GLOBAL_MAX_POOL.  Every loop runs over
   the contiguous channel dimension of one pixel, so each output pixel is a handful of vector
   passes over rows that stay in L1.  The windowed pools have AVX2 / AVX-512 variants
   (x86/pool_*.c, chosen by mdl__cpu_level()) that keep a pixel's channels in registers; this
   file's loops are their oracle. */
#include "ops.h"

#include "graph/util.h"
#include "x86/conv_x86.h"

#include <string.h>

#ifdef MDL_HAVE_X86_SIMD
#include "x86/x86.h"
#endif

/* ---- row primitives: unrolled by 4 so that gcc -O2's very cheap vectorizer takes them ---- */

static inline void row_fill(float *restrict o, float v, int64_t n) {
    for (int64_t i = 0; i < n; i++) o[i] = v;
}

/* NaN inputs lose (x > o is false), as in ONNX Runtime's MaxPool. */
static inline void row_max(float *restrict o, const float *restrict x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        o[i] = x[i] > o[i] ? x[i] : o[i];
        o[i + 1] = x[i + 1] > o[i + 1] ? x[i + 1] : o[i + 1];
        o[i + 2] = x[i + 2] > o[i + 2] ? x[i + 2] : o[i + 2];
        o[i + 3] = x[i + 3] > o[i + 3] ? x[i + 3] : o[i + 3];
    }
    for (; i < n; i++) o[i] = x[i] > o[i] ? x[i] : o[i];
}

static inline void row_add(float *restrict o, const float *restrict x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        o[i] += x[i];
        o[i + 1] += x[i + 1];
        o[i + 2] += x[i + 2];
        o[i + 3] += x[i + 3];
    }
    for (; i < n; i++) o[i] += x[i];
}

static inline void row_scale(float *restrict o, float s, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        o[i] *= s;
        o[i + 1] *= s;
        o[i + 2] *= s;
        o[i + 3] *= s;
    }
    for (; i < n; i++) o[i] *= s;
}

/* ---- shared validation ----------------------------------------------------------------- */

static mdl_status check_input(const mdl__kctx *c) {
    const mdl__tensor *x = c->nin > 0 ? c->in[0] : NULL;
    char s1[64];
    if (c->nin != 1 || c->nout != 1 || !x)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects one input and one output");
    if (x->dtype != MDL_DTYPE_FLOAT32)
        return mdl__fail(c, MDL_DTYPE, "float32 kernel got %s input", mdl_dtype_name(x->dtype));
    if (x->rank != 4)
        return mdl__fail(c, MDL_SHAPE, "input %s must be 4-D NHWC",
                         mdl__dims_str(s1, sizeof s1, x->rank, x->dims));
    if (x->dims[0] < 0 || x->dims[1] < 1 || x->dims[2] < 1 || x->dims[3] < 1)
        return mdl__fail(c, MDL_SHAPE, "input %s has an empty dimension",
                         mdl__dims_str(s1, sizeof s1, x->rank, x->dims));
    return MDL_OK;
}

static void set_output(mdl__kctx *c, int64_t N, int64_t OH, int64_t OW, int64_t C) {
    mdl__shape *s = &c->out_shape[0];
    s->dtype = MDL_DTYPE_FLOAT32;
    s->rank = 4;
    s->dims[0] = N;
    s->dims[1] = OH;
    s->dims[2] = OW;
    s->dims[3] = C;
}

/* ---- windowed pools -------------------------------------------------------------------- */

typedef struct pool_geom {
    int64_t N, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl;
} pool_geom;

static mdl_status pool_geometry(const mdl__kctx *c, pool_geom *g) {
    mdl_status st = check_input(c);
    if (st != MDL_OK) return st;
    const mdl__tensor *x = c->in[0];
    const mdl_pool_options *o = &c->opt->pool;
    char s1[64];
    if (o->kernel[0] < 1 || o->kernel[1] < 1)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "kernel %d x %d must be >= 1",
                         (int)o->kernel[0], (int)o->kernel[1]);
    if (o->stride[0] < 1 || o->stride[1] < 1)
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "stride %d x %d must be >= 1", (int)o->stride[0],
                         (int)o->stride[1]);
    for (int i = 0; i < 4; i++)
        if (o->pad[i] < 0)
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "negative padding %d (top,left,bottom,right)",
                             (int)o->pad[i]);
    g->N = x->dims[0];
    g->H = x->dims[1];
    g->W = x->dims[2];
    g->C = x->dims[3];
    g->KH = o->kernel[0];
    g->KW = o->kernel[1];
    g->sh = o->stride[0];
    g->sw = o->stride[1];
    g->pt = o->pad[0];
    g->pl = o->pad[1];
    int64_t rh = g->H + g->pt + o->pad[2] - g->KH, rw = g->W + g->pl + o->pad[3] - g->KW;
    if (rh < 0 || rw < 0)
        return mdl__fail(c, MDL_SHAPE, "kernel %lldx%lld larger than the padded input %lldx%lld",
                         (long long)g->KH, (long long)g->KW, (long long)(rh + g->KH),
                         (long long)(rw + g->KW));
    g->OH = rh / g->sh + 1;
    g->OW = rw / g->sw + 1;
    int64_t od[4] = {g->N, g->OH, g->OW, g->C};
    if (!mdl__shape_size(4, od, sizeof(float), NULL, NULL))
        return mdl__fail(c, MDL_SHAPE, "output %s is too large",
                         mdl__dims_str(s1, sizeof s1, 4, od));
    return MDL_OK;
}

static mdl_status pool_prepare(mdl__kctx *c) {
    pool_geom g;
    mdl_status st = pool_geometry(c, &g);
    if (st != MDL_OK) return st;
    set_output(c, g.N, g.OH, g.OW, g.C);
    return MDL_OK;
}

/* Visits every output pixel with its window clipped to the input (mdl__pool_window, shared
   with the SIMD variants).  The window always lies inside the padded input (floor-based output size), but with padding
   of at least the kernel size it can miss the input entirely (h0 >= h1): such a pixel gets 0
   from both pools rather than -inf or a division by zero.  ONNX-valid models (pads smaller
   than the kernel) never produce one. */
void mdl__pool_ref(const mdl__pool_args *a) {
    const int64_t C = a->C;
    for (int64_t n = 0; n < a->N; n++) {
        const float *xn = a->x + n * a->H * a->W * C;
        for (int64_t oh = 0; oh < a->OH; oh++)
            for (int64_t ow = 0; ow < a->OW; ow++) {
                float *o = a->y + ((n * a->OH + oh) * a->OW + ow) * C;
                int64_t w[4];
                float scale;
                if (!mdl__pool_window(a, oh, ow, w, &scale)) {
                    memset(o, 0, (size_t)C * sizeof *o);
                    continue;
                }
                if (a->is_max) row_fill(o, -__builtin_inff(), C);
                else memset(o, 0, (size_t)C * sizeof *o);
                for (int64_t ih = w[0]; ih < w[1]; ih++)
                    for (int64_t iw = w[2]; iw < w[3]; iw++) {
                        const float *xr = xn + (ih * a->W + iw) * C;
                        if (a->is_max) row_max(o, xr, C);
                        else row_add(o, xr, C);
                    }
                if (!a->is_max) row_scale(o, scale, C);
            }
    }
}

static void pool_rows(const mdl__pool_args *a) {
#ifdef MDL_HAVE_X86_SIMD
    int level = mdl__cpu_level();
    if (level >= MDL_CPU_AVX512) {
        mdl__pool_avx512(a);
        return;
    }
    if (level >= MDL_CPU_AVX2) {
        mdl__pool_avx2(a);
        return;
    }
#endif
    mdl__pool_ref(a);
}

/* With workers: (image, band of output rows) tasks.  A band is the same pooling of one image
   whose first output row is oh0: its windows start oh0 * sh rows lower, i.e. top padding
   pt - oh0 * sh (negative past the padding; windows are clipped to the image either way), so
   every output is computed as in the whole call. */
typedef struct pool_job {
    mdl__pool_args a;
    int64_t per_image; /* tasks per image: bands of rows differing by at most one */
} pool_job;

static void pool_task(void *arg, int64_t t, int worker) {
    (void)worker;
    const pool_job *j = arg;
    mdl__pool_args a = j->a;
    int64_t n = t / j->per_image, oh0, oh1;
    mdl__par_part(t % j->per_image, j->per_image, a.OH, &oh0, &oh1);
    a.x += n * a.H * a.W * a.C;
    a.y += (n * a.OH + oh0) * a.OW * a.C;
    a.N = 1;
    a.OH = oh1 - oh0;
    a.pt -= oh0 * a.sh;
    pool_rows(&a);
}

#define POOL_PAR_MIN ((int64_t)1 << 18) /* window reads below which one thread does it */

static mdl_status pool_run(mdl__kctx *c) {
    pool_geom g;
    pool_geometry(c, &g);
    pool_job j = {{c->in_data[0], c->out_data[0], g.N, g.H, g.W, g.C, g.OH, g.OW, g.KH, g.KW,
                   g.sh, g.sw, g.pt, g.pl, c->op == MDL_OP_MAX_POOL2D,
                   c->opt->pool.count_include_pad},
                  0};
    int nw = mdl__par_workers(c->par);
    if (nw < 2 || g.N * g.OH * g.OW * g.C * g.KH * g.KW < POOL_PAR_MIN || g.N * g.OH < 2) {
        pool_rows(&j.a);
        return MDL_OK;
    }
    int64_t want = (int64_t)nw * 4, rows = (g.N * g.OH + want - 1) / want;
    if (rows > g.OH) rows = g.OH;
    j.per_image = (g.OH + rows - 1) / rows; /* OH = 74: 8 bands of 9-10 rows, not 7 of 10 + 4 */
    mdl__par_for(c->par, g.N * j.per_image, pool_task, &j);
    return MDL_OK;
}

const mdl__kernel mdl__max_pool2d_f32 = {.prepare = pool_prepare, .run = pool_run};
const mdl__kernel mdl__avg_pool2d_f32 = {.prepare = pool_prepare, .run = pool_run};

/* ---- global pools ---------------------------------------------------------------------- */

static mdl_status global_pool_prepare(mdl__kctx *c) {
    mdl_status st = check_input(c);
    if (st != MDL_OK) return st;
    const mdl__tensor *x = c->in[0];
    set_output(c, x->dims[0], 1, 1, x->dims[3]);
    /* The average sums up to H*W values per channel (50176 for 224x224): double accumulators
       keep that from costing float precision. */
    if (c->op == MDL_OP_GLOBAL_AVG_POOL &&
        ((uint64_t)x->dims[3] > SIZE_MAX ||
         !mdl__mul_size((size_t)x->dims[3], sizeof(double), &c->scratch_bytes)))
        return mdl__fail(c, MDL_SHAPE, "scratch for %lld channels does not fit in memory",
                         (long long)x->dims[3]);
    return MDL_OK;
}

static mdl_status global_avg_run(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0];
    const int64_t N = x->dims[0], HW = x->dims[1] * x->dims[2], C = x->dims[3];
    const float *xd = c->in_data[0];
    float *y = c->out_data[0];
    double *restrict acc = c->scratch;
    for (int64_t n = 0; n < N; n++) {
        const float *xn = xd + n * HW * C;
        for (int64_t ch = 0; ch < C; ch++) acc[ch] = 0.0;
        for (int64_t p = 0; p < HW; p++) {
            const float *restrict xr = xn + p * C;
            int64_t i = 0;
            for (; i + 4 <= C; i += 4) {
                acc[i] += xr[i];
                acc[i + 1] += xr[i + 1];
                acc[i + 2] += xr[i + 2];
                acc[i + 3] += xr[i + 3];
            }
            for (; i < C; i++) acc[i] += xr[i];
        }
        for (int64_t ch = 0; ch < C; ch++) y[n * C + ch] = (float)(acc[ch] / (double)HW);
    }
    return MDL_OK;
}

static mdl_status global_max_run(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0];
    const int64_t N = x->dims[0], HW = x->dims[1] * x->dims[2], C = x->dims[3];
    const float *xd = c->in_data[0];
    float *y = c->out_data[0];
    for (int64_t n = 0; n < N; n++) {
        float *o = y + n * C;
        row_fill(o, -__builtin_inff(), C);
        for (int64_t p = 0; p < HW; p++) row_max(o, xd + (n * HW + p) * C, C);
    }
    return MDL_OK;
}

const mdl__kernel mdl__global_avg_pool_f32 = {.prepare = global_pool_prepare, .run = global_avg_run};
const mdl__kernel mdl__global_max_pool_f32 = {.prepare = global_pool_prepare, .run = global_max_run};
