/* Shape and data-movement operators: Reshape, Transpose, Concat, Slice, Pad.
 *
 * They only move bytes, so one kernel serves every dtype (the element size comes from the
 * dtype).  Each kernel first reduces its problem to the fewest dimensions that describe the same
 * memory walk (size-1 dims dropped, dims that stay adjacent merged) so that the innermost loop is
 * as long and as contiguous as possible: a "4-D" NHWC op usually becomes a 2-D or 3-D one. */
#include "int8_elem.h"

#include <string.h>

/* ---- shared helpers -------------------------------------------------------------------- */

/* Element copy / fill specialised on element size so gcc turns the loops into plain typed moves
   instead of a memcpy call per element. */
#define SHAPE_COPY_STRIDED(T)                                                                      \
    do {                                                                                           \
        T *d_ = (T *)dst;                                                                          \
        const T *s_ = (const T *)src;                                                              \
        for (int64_t i_ = 0; i_ < n; i_++) d_[i_] = s_[i_ * stride];                               \
    } while (0)

/* dst[i] = src[i * stride] for n elements of esize bytes (stride in elements, may be < 0). */
static void copy_strided(void *dst, const void *src, int64_t n, int64_t stride, size_t esize) {
    switch (esize) {
    case 1: SHAPE_COPY_STRIDED(uint8_t); break;
    case 4: SHAPE_COPY_STRIDED(uint32_t); break;
    case 8: SHAPE_COPY_STRIDED(uint64_t); break;
    default:
        for (int64_t i = 0; i < n; i++)
            memcpy((char *)dst + (size_t)i * esize, (const char *)src + i * stride * (int64_t)esize,
                   esize);
    }
}

#define SHAPE_FILL(T)                                                                              \
    do {                                                                                           \
        T v_;                                                                                      \
        memcpy(&v_, pat, sizeof v_);                                                               \
        T *d_ = (T *)dst;                                                                          \
        for (int64_t i_ = 0; i_ < n; i_++) d_[i_] = v_;                                            \
    } while (0)

/* Writes n copies of the esize-byte pattern pat. */
static void fill_pattern(void *dst, const unsigned char *pat, int64_t n, size_t esize) {
    if (n <= 0) return;
    switch (esize) {
    case 1: memset(dst, pat[0], (size_t)n); break;
    case 4: SHAPE_FILL(uint32_t); break;
    case 8: SHAPE_FILL(uint64_t); break;
    default:
        for (int64_t i = 0; i < n; i++) memcpy((char *)dst + (size_t)i * esize, pat, esize);
    }
}

/* Odometer over n dims, tracking two linear offsets (in elements) with per-dim strides.  The
   callers iterate the outer dims of a reduced problem with it; the inner work is a long copy. */
typedef struct odometer {
    int32_t n;
    int64_t dim[MDL_MAX_RANK], sa[MDL_MAX_RANK], sb[MDL_MAX_RANK], idx[MDL_MAX_RANK];
    int64_t a, b;
} odometer;

static int64_t odo_init(odometer *o) {
    int64_t total = 1;
    o->a = o->b = 0;
    for (int32_t d = 0; d < o->n; d++) {
        o->idx[d] = 0;
        total *= o->dim[d];
    }
    return total;
}

static void odo_next(odometer *o) {
    for (int32_t d = o->n - 1; d >= 0; d--) {
        o->a += o->sa[d];
        o->b += o->sb[d];
        if (++o->idx[d] < o->dim[d]) return;
        o->a -= o->sa[d] * o->dim[d];
        o->b -= o->sb[d] * o->dim[d];
        o->idx[d] = 0;
    }
}

static bool same_dtype_out(mdl__kctx *c, const mdl__tensor *decl, mdl_dtype dt) {
    if (decl->dtype == dt) return true;
    mdl__fail(c, MDL_DTYPE, "declared output is %s, input is %s", mdl_dtype_name(decl->dtype),
              mdl_dtype_name(dt));
    return false;
}

/* Every shape op has exactly one output and a present data input 0. */
static mdl_status check_io(mdl__kctx *c, int min_in, int max_in, const char *what) {
    if (c->nin < min_in || c->nin > max_in || c->nout != 1 || !c->in[0])
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "expects %s and one output", what);
    return MDL_OK;
}

/* ---- quantized tensors ---------------------------------------------------------------- */

/* Moving bytes keeps the values' meaning only if the output has the input's quantization
   parameters.  Per-axis parameters must also stay on the same data: axis_ok says whether output
   axis ya carries input axis xa through this op (NULL: per-axis input refused). */
mdl_status mdl__quant_same_check(const mdl__kctx *c, const mdl__tensor *x, const mdl__tensor *y,
                                 mdl__quant_axis_ok axis_ok) {
    if (x->nquant == 0 && (!y || y->nquant == 0)) return MDL_OK;
    const char *xn = mdl__q8_name(x), *yn = mdl__q8_name(y);
    if (!y)
        return mdl__fail(c, MDL_UNSUPPORTED,
                         "output must be declared with the quantization parameters of input '%s'",
                         xn);
    mdl_status st;
    if ((st = mdl__quant_check(x, c->err)) || (st = mdl__quant_check(y, c->err))) return st;
    if (x->nquant != y->nquant)
        return mdl__fail(c, MDL_UNSUPPORTED,
                         "output '%s' has %d quantization scales, input '%s' has %d (a data move "
                         "cannot requantize)",
                         yn, (int)y->nquant, xn, (int)x->nquant);
    for (int32_t i = 0; i < x->nquant; i++)
        if (x->scale[i] != y->scale[i] || x->zero_point[i] != y->zero_point[i])
            return mdl__fail(c, MDL_UNSUPPORTED,
                             "output '%s' quantization [%d] (scale %g, zero point %lld) differs "
                             "from input '%s' (scale %g, zero point %lld); a data move cannot "
                             "requantize",
                             yn, (int)i, (double)y->scale[i], (long long)y->zero_point[i], xn,
                             (double)x->scale[i], (long long)x->zero_point[i]);
    if (x->nquant > 1) {
        int32_t xa = 0, ya = 0;
        mdl__axis(x->quant_axis, x->rank, &xa); /* checked by mdl__quant_check */
        mdl__axis(y->quant_axis, y->rank, &ya);
        if (!axis_ok || !axis_ok(c, x, xa, y, ya))
            return mdl__fail(c, MDL_UNSUPPORTED,
                             "per-axis quantization of input '%s' (axis %d) does not carry over "
                             "to output '%s' (axis %d) through this operator",
                             xn, (int)xa, yn, (int)ya);
    }
    return MDL_OK;
}

/* Reshape keeps a quantization axis whose size and preceding elements are unchanged. */
static bool reshape_axis_ok(const mdl__kctx *c, const mdl__tensor *x, int32_t xa,
                            const mdl__tensor *y, int32_t ya) {
    ptrdiff_t px = 1, py = 1; /* <= the tensors' counts (mdl__shape_size) */
    for (int32_t d = 0; d < xa; d++) px *= (ptrdiff_t)x->dims[d];
    for (int32_t d = 0; d < ya; d++) py *= (ptrdiff_t)y->dims[d];
    return px == py && x->dims[xa] == y->dims[ya];
}

static bool transpose_axis_ok(const mdl__kctx *c, const mdl__tensor *x, int32_t xa,
                              const mdl__tensor *y, int32_t ya) {
    return c->opt->transpose.perm[ya] == xa;
}

/* A slice keeps per-axis parameters only if it takes that axis whole. */
static bool slice_axis_ok(const mdl__kctx *c, const mdl__tensor *x, int32_t xa,
                          const mdl__tensor *y, int32_t ya) {
    return xa == ya && c->opt->slice.begin[xa] == 0 && c->opt->slice.step[xa] == 1 &&
           y->dims[xa] == x->dims[xa];
}

static bool concat_axis_ok(const mdl__kctx *c, const mdl__tensor *x, int32_t xa,
                           const mdl__tensor *y, int32_t ya) {
    int32_t axis = 0;
    mdl__axis(c->opt->axis.axis, x->rank, &axis);
    return xa == ya && xa != axis;
}

/* ---- Reshape --------------------------------------------------------------------------- */

static mdl_status reshape_prepare(mdl__kctx *c) {
    mdl_status st = check_io(c, 1, 2, "input data[, shape]");
    if (st) return st;
    const mdl__tensor *x = c->in[0], *y = c->out[0];
    char s1[96], s2[96];
    /* The shape input is folded away by the converter; the declared output is the truth. */
    if (!y)
        return mdl__fail(c, MDL_SHAPE, "output shape must be declared (cannot be inferred)");
    if (!same_dtype_out(c, y, x->dtype)) return MDL_DTYPE;
    ptrdiff_t n = 1; /* the native word on 32-bit cores, where a count must fit it anyway */
    for (int32_t i = 0; i < y->rank; i++) {
        if (y->dims[i] < 0 || __builtin_mul_overflow(n, y->dims[i], &n))
            return mdl__fail(c, MDL_SHAPE, "bad declared output shape %s",
                             mdl__dims_str(s1, sizeof s1, y->rank, y->dims));
    }
    if ((int64_t)n != x->count)
        return mdl__fail(c, MDL_SHAPE, "cannot reshape %s (%lld elements) to %s (%lld elements)",
                         mdl__dims_str(s1, sizeof s1, x->rank, x->dims), (long long)x->count,
                         mdl__dims_str(s2, sizeof s2, y->rank, y->dims), (long long)n);
    if ((st = mdl__quant_same_check(c, x, y, reshape_axis_ok))) return st;
    mdl__shape_of(&c->out_shape[0], y);
    return MDL_OK;
}

static mdl_status reshape_run(mdl__kctx *c) {
    /* The planner aliases a reshape's output to its input; copy only when it could not. */
    if (c->out_data[0] != c->in_data[0] && c->in[0]->count > 0)
        memcpy(c->out_data[0], c->in_data[0],
               (size_t)c->in[0]->count * mdl_dtype_size(c->in[0]->dtype));
    return MDL_OK;
}

const mdl__kernel mdl__reshape = {.prepare = reshape_prepare, .run = reshape_run};

/* ---- Transpose ------------------------------------------------------------------------- */

static mdl_status transpose_prepare(mdl__kctx *c) {
    mdl_status st = check_io(c, 1, 1, "one input");
    if (st) return st;
    const mdl__tensor *x = c->in[0];
    const int32_t *perm = c->opt->transpose.perm;
    bool seen[MDL_MAX_RANK] = {false};
    for (int32_t i = 0; i < x->rank; i++) {
        if (perm[i] < 0 || perm[i] >= x->rank)
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "perm[%d] = %d is out of range for rank %d",
                             (int)i, (int)perm[i], (int)x->rank);
        if (seen[perm[i]])
            return mdl__fail(c, MDL_INVALID_ARGUMENT, "perm repeats axis %d (not a permutation)",
                             (int)perm[i]);
        seen[perm[i]] = true;
    }
    mdl__shape *o = &c->out_shape[0];
    o->dtype = x->dtype;
    o->rank = x->rank;
    for (int32_t i = 0; i < x->rank; i++) o->dims[i] = x->dims[perm[i]];
    return mdl__quant_same_check(c, x, c->out[0], transpose_axis_ok);
}

/* Reduced transpose: output dims od[k] (row-major) and the input stride ist[k] of each output
   axis.  Size-1 axes are dropped and output axes k, k+1 merged when they walk the input as one
   axis (ist[k] == ist[k+1] * od[k+1]). */
static int32_t transpose_reduce(const mdl__tensor *x, const int32_t *perm, int64_t *od,
                                int64_t *ist) {
    int64_t in_stride[MDL_MAX_RANK];
    int64_t s = 1;
    for (int32_t d = x->rank - 1; d >= 0; d--) {
        in_stride[d] = s;
        s *= x->dims[d];
    }
    int32_t r = 0;
    for (int32_t k = 0; k < x->rank; k++) {
        int64_t n = x->dims[perm[k]], st = in_stride[perm[k]];
        if (n == 1) continue;
        if (r > 0 && ist[r - 1] == st * n) {
            od[r - 1] *= n;
            ist[r - 1] = st;
        } else {
            od[r] = n;
            ist[r] = st;
            r++;
        }
    }
    return r;
}

/* dst[i * dos + k] = src[i + k * sis] for i < n1, k < n2, in 32 x 32 tiles so that both the
   strided reads and the strided writes stay within a few cache lines per tile.  When the output's
   inner extent n2 is tiny (NCHW -> NHWC with 3 channels) a tile degenerates into 3-element
   loops; there one contiguous read stream per k over a bounded chunk of i is ~2x faster. */
#define TP_TILE 32
#define TP_SMALL_N2 8
#define TP_CHUNK 1024
#define TP_TILE_LOOP(T)                                                                            \
    do {                                                                                           \
        T *d_ = (T *)dst;                                                                          \
        const T *s_ = (const T *)src;                                                              \
        if (n2 <= TP_SMALL_N2) {                                                                   \
            for (int64_t i0 = 0; i0 < n1; i0 += TP_CHUNK) {                                        \
                int64_t i1 = i0 + TP_CHUNK < n1 ? i0 + TP_CHUNK : n1;                              \
                for (int64_t k = 0; k < n2; k++) {                                                 \
                    T *dc_ = d_ + k;                                                               \
                    const T *sc_ = s_ + k * sis;                                                   \
                    for (int64_t i = i0; i < i1; i++) dc_[i * dos] = sc_[i];                       \
                }                                                                                  \
            }                                                                                      \
            break;                                                                                 \
        }                                                                                          \
        for (int64_t i0 = 0; i0 < n1; i0 += TP_TILE) {                                             \
            int64_t i1 = i0 + TP_TILE < n1 ? i0 + TP_TILE : n1;                                    \
            for (int64_t k0 = 0; k0 < n2; k0 += TP_TILE) {                                         \
                int64_t k1 = k0 + TP_TILE < n2 ? k0 + TP_TILE : n2;                                \
                for (int64_t i = i0; i < i1; i++) {                                                \
                    T *dr_ = d_ + i * dos;                                                         \
                    const T *sr_ = s_ + i;                                                         \
                    for (int64_t k = k0; k < k1; k++) dr_[k] = sr_[k * sis];                       \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void transpose_tile(void *dst, const void *src, int64_t n1, int64_t n2, int64_t dos,
                           int64_t sis, size_t esize) {
    switch (esize) {
    case 1: TP_TILE_LOOP(uint8_t); break;
    case 4: TP_TILE_LOOP(uint32_t); break;
    case 8: TP_TILE_LOOP(uint64_t); break;
    default:
        for (int64_t i = 0; i < n1; i++)
            for (int64_t k = 0; k < n2; k++)
                memcpy((char *)dst + (size_t)(i * dos + k) * esize,
                       (const char *)src + (size_t)(i + k * sis) * esize, esize);
    }
}

/* Moves (jumps) an odometer to linear position t of its loop. */
static void odo_seek(odometer *o, int64_t t) {
    o->a = o->b = 0;
    for (int32_t d = o->n - 1; d >= 0; d--) {
        o->idx[d] = t % o->dim[d];
        t /= o->dim[d];
        o->a += o->idx[d] * o->sa[d];
        o->b += o->idx[d] * o->sb[d];
    }
}

/* The 2-D transposes of transpose_run, split into tasks for the session's workers. */
#define TP_PAR_MIN ((int64_t)32 << 10) /* bytes per task at least */
#define TP_PAR_TASKS 4                 /* tasks per worker at most */
typedef struct tp_job {
    const char *src;
    char *dst;
    size_t es;
    odometer o;                        /* over the outer axes (not j, not the innermost) */
    int64_t n1, n2, dos, sis;          /* as transpose_tile's */
    int64_t chunks, units, per_task;   /* n1 cut into chunks; unit = (outer, chunk) */
} tp_job;

static void tp_task(void *arg, int64_t t, int worker) {
    (void)worker;
    const tp_job *j = arg;
    int64_t u0 = t * j->per_task, u1 = u0 + j->per_task < j->units ? u0 + j->per_task : j->units;
    int64_t step = (j->n1 + j->chunks - 1) / j->chunks;
    odometer o = j->o;
    odo_seek(&o, u0 / j->chunks);
    for (int64_t u = u0; u < u1; u++) {
        int64_t c = u % j->chunks;
        if (u > u0 && c == 0) odo_next(&o);
        int64_t i0 = c * step, i1 = i0 + step < j->n1 ? i0 + step : j->n1;
        if (i1 > i0)
            transpose_tile(j->dst + (size_t)(o.b + i0 * j->dos) * j->es,
                           j->src + (size_t)(o.a + i0) * j->es, i1 - i0, j->n2, j->dos, j->sis, j->es);
    }
}

static mdl_status transpose_run(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0];
    size_t es = mdl_dtype_size(x->dtype);
    const char *src = c->in_data[0];
    char *dst = c->out_data[0];
    if (x->count == 0) return MDL_OK;
    int64_t od[MDL_MAX_RANK], ist[MDL_MAX_RANK], ost[MDL_MAX_RANK];
    int32_t r = transpose_reduce(x, c->opt->transpose.perm, od, ist);
    if (r == 0 || (r == 1 && ist[0] == 1)) { /* the permutation does not move anything */
        memcpy(dst, src, (size_t)x->count * es);
        return MDL_OK;
    }
    int64_t s = 1;
    for (int32_t k = r - 1; k >= 0; k--) {
        ost[k] = s;
        s *= od[k];
    }
    if (ist[r - 1] == 1) {
        /* Innermost axis unchanged: copy contiguous runs, output written sequentially. */
        odometer o;
        int64_t run = od[r - 1];
        size_t rb = (size_t)run * es;
        o.n = r - 1;
        for (int32_t k = 0; k < r - 1; k++) {
            o.dim[k] = od[k];
            o.sa[k] = ist[k];
            o.sb[k] = ost[k];
        }
        int64_t total = odo_init(&o);
        for (int64_t t = 0; t < total; t++, odo_next(&o))
            memcpy(dst + (size_t)o.b * es, src + (size_t)o.a * es, rb);
        return MDL_OK;
    }
    /* Otherwise a 2-D transpose between the input's innermost axis (output axis j, the one with
       input stride 1) and the output's innermost axis, repeated over the remaining axes. */
    int32_t j = 0;
    while (j < r && ist[j] != 1) j++;
    /* j < r - 1 always: the input's innermost non-1 dim has stride 1 and survives reduction. */
    tp_job jb = {.src = src, .dst = dst, .es = es, .n1 = od[j], .n2 = od[r - 1], .dos = ost[j],
                 .sis = ist[r - 1]};
    jb.o.n = 0;
    for (int32_t k = 0; k < r - 1; k++) {
        if (k == j) continue;
        jb.o.dim[jb.o.n] = od[k];
        jb.o.sa[jb.o.n] = ist[k];
        jb.o.sb[jb.o.n] = ost[k];
        jb.o.n++;
    }
    int64_t total = odo_init(&jb.o);
    /* Units: (outer position, chunk of n1); tasks: runs of units, about
       TP_PAR_TASKS per worker and at least TP_PAR_MIN bytes each (a copy: any split gives the
       same bytes). */
    int64_t nw = mdl__par_workers(c->par), bytes = x->count * (int64_t)es;
    int64_t want = nw < 2 ? 1 : nw * TP_PAR_TASKS;
    if (want > bytes / TP_PAR_MIN) want = bytes / TP_PAR_MIN;
    if (want < 2) {
        jb.chunks = 1;
        jb.units = total;
        jb.per_task = total;
        tp_task(&jb, 0, 0);
        return MDL_OK;
    }
    jb.chunks = total >= want ? 1 : (want + total - 1) / total;
    int64_t max_chunks = (jb.n1 + TP_TILE - 1) / TP_TILE;
    if (jb.chunks > max_chunks) jb.chunks = max_chunks;
    jb.units = total * jb.chunks;
    jb.per_task = (jb.units + want - 1) / want;
    mdl__par_for(c->par, (jb.units + jb.per_task - 1) / jb.per_task, tp_task, &jb);
    return MDL_OK;
}

const mdl__kernel mdl__transpose = {.prepare = transpose_prepare, .run = transpose_run};

/* ---- Concat ---------------------------------------------------------------------------- */

mdl_status mdl__concat_shape(mdl__kctx *c) {
    mdl_status st = check_io(c, 1, MDL_MAX_NODE_IO, "one or more inputs");
    if (st) return st;
    const mdl__tensor *x0 = c->in[0];
    int32_t axis = 0;
    if (!mdl__axis(c->opt->axis.axis, x0->rank, &axis))
        return mdl__fail(c, MDL_INVALID_ARGUMENT, "axis %d is out of range for rank %d",
                         (int)c->opt->axis.axis, (int)x0->rank);
    mdl__shape *o = &c->out_shape[0];
    mdl__shape_of(o, x0);
    char s1[96], s2[96];
    for (int i = 1; i < c->nin; i++) {
        const mdl__tensor *x = c->in[i];
        if (!x) return mdl__fail(c, MDL_INVALID_ARGUMENT, "input %d is absent", i);
        if (x->dtype != x0->dtype)
            return mdl__fail(c, MDL_DTYPE, "input %d is %s, input 0 is %s", i,
                             mdl_dtype_name(x->dtype), mdl_dtype_name(x0->dtype));
        if (x->rank != x0->rank)
            return mdl__fail(c, MDL_SHAPE, "input %d %s has rank %d, input 0 %s has rank %d", i,
                             mdl__dims_str(s1, sizeof s1, x->rank, x->dims), (int)x->rank,
                             mdl__dims_str(s2, sizeof s2, x0->rank, x0->dims), (int)x0->rank);
        for (int32_t d = 0; d < x0->rank; d++) {
            if (d == axis) continue;
            if (x->dims[d] != x0->dims[d])
                return mdl__fail(c, MDL_SHAPE,
                                 "input %d dim %d is %lld, input 0 has %lld (concat axis %d)", i,
                                 (int)d, (long long)x->dims[d], (long long)x0->dims[d],
                                 (int)axis);
        }
        o->dims[axis] += x->dims[axis];
    }
    return MDL_OK;
}

static mdl_status concat_prepare(mdl__kctx *c) {
    mdl_status st = mdl__concat_shape(c);
    for (int i = 0; i < c->nin && !st; i++)
        st = mdl__quant_same_check(c, c->in[i], c->out[0], concat_axis_ok);
    return st;
}

static mdl_status concat_run(mdl__kctx *c) {
    const mdl__tensor *x0 = c->in[0];
    size_t es = mdl_dtype_size(x0->dtype);
    int32_t axis = 0;
    mdl__axis(c->opt->axis.axis, x0->rank, &axis);
    int64_t outer = 1, inner = 1;
    for (int32_t d = 0; d < axis; d++) outer *= x0->dims[d];
    for (int32_t d = axis + 1; d < x0->rank; d++) inner *= x0->dims[d];
    /* Each input contributes one contiguous chunk of dims[axis] * inner elements per outer index;
       with outer == 1 (axis 0, or leading dims of 1) this is one memcpy per input. */
    char *dst = c->out_data[0];
    for (int64_t o = 0; o < outer; o++) {
        for (int i = 0; i < c->nin; i++) {
            size_t chunk = (size_t)(c->in[i]->dims[axis] * inner) * es;
            if (chunk) /* an empty input may have no buffer at all */
                memcpy(dst, (const char *)c->in_data[i] + (size_t)o * chunk, chunk);
            dst += chunk;
        }
    }
    return MDL_OK;
}

const mdl__kernel mdl__concat = {.prepare = concat_prepare, .run = concat_run};

/* ---- Slice ----------------------------------------------------------------------------- */

static mdl_status slice_prepare(mdl__kctx *c) {
    mdl_status st = check_io(c, 1, 1, "one input");
    if (st) return st;
    const mdl__tensor *x = c->in[0], *y = c->out[0];
    const mdl_slice_options *so = &c->opt->slice;
    char s1[96], s2[96];
    /* begin/step alone do not say how many elements are taken: the declared output does. */
    if (!y)
        return mdl__fail(c, MDL_SHAPE, "output shape must be declared (cannot be inferred)");
    if (!same_dtype_out(c, y, x->dtype)) return MDL_DTYPE;
    if (y->rank != x->rank)
        return mdl__fail(c, MDL_SHAPE, "declared output %s has rank %d, input %s has rank %d",
                         mdl__dims_str(s1, sizeof s1, y->rank, y->dims), (int)y->rank,
                         mdl__dims_str(s2, sizeof s2, x->rank, x->dims), (int)x->rank);
    for (int32_t d = 0; d < x->rank; d++) {
        int64_t n = y->dims[d], b = so->begin[d], s = so->step[d], last;
        if (s == 0) return mdl__fail(c, MDL_INVALID_ARGUMENT, "step of dim %d is 0", (int)d);
        if (n < 0)
            return mdl__fail(c, MDL_SHAPE, "declared output dim %d is negative (%lld)", (int)d,
                             (long long)n);
        if (n == 0) continue; /* nothing is read along this dim */
        bool ovf =
            __builtin_mul_overflow(n - 1, s, &last) || __builtin_add_overflow(b, last, &last);
        if (b < 0 || b >= x->dims[d] || ovf || last < 0 || last >= x->dims[d])
            return mdl__fail(c, MDL_SHAPE,
                             "dim %d: %lld elements from %lld with step %lld leave the input "
                             "(size %lld)",
                             (int)d, (long long)n, (long long)b, (long long)s,
                             (long long)x->dims[d]);
    }
    if ((st = mdl__quant_same_check(c, x, y, slice_axis_ok))) return st;
    mdl__shape_of(&c->out_shape[0], y);
    return MDL_OK;
}

static mdl_status slice_run(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0];
    const mdl_slice_options *so = &c->opt->slice;
    const mdl__tensor *y = c->out[0];
    size_t es = mdl_dtype_size(x->dtype);
    int32_t r = x->rank;
    int64_t istride[MDL_MAX_RANK], ycount = 1, s = 1;
    for (int32_t d = r - 1; d >= 0; d--) {
        istride[d] = s;
        s *= x->dims[d];
        ycount *= y->dims[d];
    }
    if (ycount == 0) return MDL_OK;
    const char *src = c->in_data[0];
    char *dst = c->out_data[0];
    /* Trailing dims taken whole (begin 0, step 1, full size) form one contiguous block. */
    int32_t k = r;
    int64_t block = 1;
    while (k > 0 && so->begin[k - 1] == 0 && so->step[k - 1] == 1 &&
           y->dims[k - 1] == x->dims[k - 1]) {
        k--;
        block *= x->dims[k];
    }
    if (k == 0) {
        memcpy(dst, src, (size_t)block * es);
        return MDL_OK;
    }
    /* Dim k-1 is the innermost one that is cut: a run of y[k-1] blocks spaced step apart. */
    int64_t n = y->dims[k - 1], step = so->step[k - 1];
    int64_t base = 0;
    for (int32_t d = 0; d < k; d++) base += so->begin[d] * istride[d];
    odometer o;
    o.n = k - 1;
    int64_t ost = n * block;
    for (int32_t d = k - 2; d >= 0; d--) {
        o.dim[d] = y->dims[d];
        o.sa[d] = so->step[d] * istride[d];
        o.sb[d] = ost;
        ost *= y->dims[d];
    }
    int64_t total = odo_init(&o);
    for (int64_t t = 0; t < total; t++, odo_next(&o)) {
        const char *sp = src + (base + o.a) * (int64_t)es;
        char *dp = dst + (size_t)o.b * es;
        if (step == 1) {
            memcpy(dp, sp, (size_t)(n * block) * es);
        } else if (block == 1) {
            copy_strided(dp, sp, n, step * istride[k - 1], es);
        } else {
            for (int64_t i = 0; i < n; i++)
                memcpy(dp + (size_t)(i * block) * es, sp + i * step * istride[k - 1] * (int64_t)es,
                       (size_t)block * es);
        }
    }
    return MDL_OK;
}

const mdl__kernel mdl__slice = {.prepare = slice_prepare, .run = slice_run};

/* ---- Pad ------------------------------------------------------------------------------- */

static mdl_status pad_prepare(mdl__kctx *c) {
    mdl_status st = check_io(c, 1, 1, "one input");
    if (st) return st;
    const mdl__tensor *x = c->in[0];
    const int64_t *pads = c->opt->pad.pads;
    mdl__shape *o = &c->out_shape[0];
    mdl__shape_of(o, x);
    for (int32_t d = 0; d < x->rank; d++) {
        int64_t b = pads[d], e = pads[x->rank + d];
        if (b < 0 || e < 0)
            return mdl__fail(c, MDL_UNSUPPORTED,
                             "negative pads (%lld, %lld) on dim %d (cropping) are not supported",
                             (long long)b, (long long)e, (int)d);
        if (__builtin_add_overflow(o->dims[d], b, &o->dims[d]) ||
            __builtin_add_overflow(o->dims[d], e, &o->dims[d]) || o->dims[d] > ((int64_t)1 << 40))
            return mdl__fail(c, MDL_SHAPE, "pads (%lld, %lld) on dim %d are too large",
                             (long long)b, (long long)e, (int)d);
    }
    /* per axis refused: the pad value would quantize differently per channel */
    return mdl__quant_same_check(c, x, c->out[0], NULL);
}

/* The pad value as the tensor's element bytes.  Integer tensors get the value rounded to
   nearest and saturated to the type's range (NaN gives 0) rather than C's undefined cast.  On a
   quantized tensor (per tensor: pad_prepare) the value is real: it is quantized with the
   tensor's parameters (ONNX QuantizeLinear), so 0.0 pads with the zero point. */
static void pad_value_bytes(const mdl__tensor *x, float v, unsigned char *pat) {
    const mdl_dtype dt = x->dtype;
    int32_t qmin, qmax;
    if (x->nquant == 1 && mdl__qrange(dt, &qmin, &qmax)) {
        int32_t q = mdl__quantize_value(v, x->scale[0], (int32_t)x->zero_point[0], qmin, qmax);
        if (dt == MDL_DTYPE_INT32) {
            memcpy(pat, &q, 4);
        } else {
            pat[0] = (unsigned char)(dt == MDL_DTYPE_INT8 ? (uint8_t)(int8_t)q : (uint8_t)q);
        }
        return;
    }
    double d = v != v ? 0.0 : (double)v;
    double r = d < 0 ? d - 0.5 : d + 0.5;
    switch (dt) {
    case MDL_DTYPE_FLOAT32: memcpy(pat, &v, 4); break;
    case MDL_DTYPE_INT8: {
        int8_t q = r <= -128.0 ? INT8_MIN : r >= 127.0 ? INT8_MAX : (int8_t)r;
        memcpy(pat, &q, 1);
        break;
    }
    case MDL_DTYPE_UINT8: {
        uint8_t q = r <= 0.0 ? 0 : r >= 255.0 ? UINT8_MAX : (uint8_t)r;
        memcpy(pat, &q, 1);
        break;
    }
    case MDL_DTYPE_INT32: {
        int32_t q = r <= -2147483648.0 ? INT32_MIN : r >= 2147483647.0 ? INT32_MAX : (int32_t)r;
        memcpy(pat, &q, 4);
        break;
    }
    case MDL_DTYPE_INT64: {
        int64_t q = r <= -9223372036854775808.0  ? INT64_MIN
                    : r >= 9223372036854775807.0 ? INT64_MAX
                                                 : (int64_t)r;
        memcpy(pat, &q, 8);
        break;
    }
    case MDL_DTYPE_BOOL: pat[0] = d != 0.0; break;
    default: memset(pat, 0, 8); break;
    }
}

static mdl_status pad_run(mdl__kctx *c) {
    const mdl__tensor *x = c->in[0];
    const int64_t *pads = c->opt->pad.pads;
    size_t es = mdl_dtype_size(x->dtype);
    unsigned char pat[8];
    pad_value_bytes(x, c->opt->pad.value, pat);
    char *dst = c->out_data[0];
    const char *src = c->in_data[0];
    /* Reduce: a dim without padding merges into the dim before it (its pads scale by its size),
       so rows are as long as possible; e.g. NHWC padded on H, W becomes [N, H, W*C]. */
    int64_t in[MDL_MAX_RANK], pb[MDL_MAX_RANK], pe[MDL_MAX_RANK];
    int32_t r = 0;
    for (int32_t d = 0; d < x->rank; d++) {
        int64_t n = x->dims[d], b = pads[d], e = pads[x->rank + d];
        if (r > 0 && b == 0 && e == 0) {
            in[r - 1] *= n;
            pb[r - 1] *= n;
            pe[r - 1] *= n;
        } else {
            in[r] = n;
            pb[r] = b;
            pe[r] = e;
            r++;
        }
    }
    if (r == 0) { /* rank-0 tensor */
        memcpy(dst, src, es);
        return MDL_OK;
    }
    int64_t row_in = in[r - 1], row_out = pb[r - 1] + in[r - 1] + pe[r - 1];
    int64_t istride[MDL_MAX_RANK], s = 1, rows = 1;
    for (int32_t d = r - 1; d >= 0; d--) {
        istride[d] = s;
        s *= in[d];
    }
    for (int32_t d = 0; d < r - 1; d++) rows *= pb[d] + in[d] + pe[d];
    int64_t idx[MDL_MAX_RANK] = {0};
    for (int64_t t = 0; t < rows; t++, dst += (size_t)row_out * es) {
        /* The row holds input data only if every outer index lies inside the input. */
        bool inside = row_in > 0;
        int64_t off = 0;
        for (int32_t d = 0; d < r - 1 && inside; d++) {
            int64_t i = idx[d] - pb[d];
            inside = i >= 0 && i < in[d];
            off += i * istride[d];
        }
        if (inside) {
            fill_pattern(dst, pat, pb[r - 1], es);
            memcpy(dst + (size_t)pb[r - 1] * es, src + (size_t)off * es, (size_t)row_in * es);
            fill_pattern(dst + (size_t)(pb[r - 1] + row_in) * es, pat, pe[r - 1], es);
        } else {
            fill_pattern(dst, pat, row_out, es);
        }
        for (int32_t d = r - 2; d >= 0; d--) {
            if (++idx[d] < pb[d] + in[d] + pe[d]) break;
            idx[d] = 0;
        }
    }
    return MDL_OK;
}

const mdl__kernel mdl__pad = {.prepare = pad_prepare, .run = pad_run};
