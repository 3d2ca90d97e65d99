/*
 * Internal kernel interface.  One kernel per (operator, dtype of input 0), found through
 * mdl__kernel_find (src/ops/registry.c).  Each kernel has two functions:
 *
 *   prepare: called once when a model is loaded (and by the builder/converter for shape
 *            inference).  Validates input shapes/dtypes and options, writes the output shapes
 *            and dtypes into ctx->out_shape[] and the scratch bytes it needs into
 *            ctx->scratch_bytes.  It must not read input *data* except of constant tensors
 *            (ctx->in[i]->data != NULL).  On a bad node it returns a status and fills ctx->err
 *            via mdl__fail(ctx, STATUS, "fmt", ...) - the node name is prefixed automatically.
 *
 *   pack:    optional.  When prepare sets ctx->packed_bytes > 0, the loader allocates that much
 *            model-owned memory (64-byte aligned) once per model and calls pack, which fills
 *            ctx->packed from *constant* inputs (e.g. weights re-laid out for SIMD).  run then
 *            reads ctx->packed; sessions share it.  packed_bytes may depend on the CPU (it is not
 *            part of the stored memory plan); scratch_bytes must NOT (a plan written on one
 *            machine must fit on another).  Builder/converter runs never call pack.
 *            Dynamic shapes: a session of a model with dynamic dims runs prepare again at its
 *            sizes and reuses the model's packed data when packed_bytes is the same and every
 *            input differs at most in its outermost dim (graph/resize.c), else packs its own:
 *            packed data may depend on weights and inner geometry, never on dims[0].
 *
 *   run:     computes.  Shapes come from ctx->in[] / ctx->out[] (ctx->out_shape is not filled
 *            at run time).  Reads inputs through ctx->in_data[], writes ctx->out_data[], may use
 *            ctx->scratch (ctx->scratch_bytes long, 16-byte aligned).  Allocates nothing.  Only
 *            data-dependent checks (e.g. gather indices) may fail here.
 *
 * Layouts are documented in include/mdeploy/graph.h.
 *
 * Quantized (int8) kernels follow the TFLite scheme (src/quant/quant.h): they are registered
 * under the dtype of their quantized input 0 (MDL_DTYPE_INT8), read every operand's scale and
 * zero point from ctx->in[i] / ctx->out[i] (an int8 kernel requires declared outputs with
 * quantization parameters and fails in prepare otherwise), validate them in prepare (weights
 * symmetric, bias int32 with scale in_scale * w_scale, ...), and compute their fixed-point
 * multipliers, folded bias and any SIMD weight layout once in pack.  They run only with that
 * packed data (run fails with MDL_INTERNAL when ctx->packed is NULL, never computes garbage).
 * Every SIMD variant gives results identical to the reference kernel.
 */
#ifndef MDL_OPS_H
#define MDL_OPS_H

#include "mdeploy/graph.h"
#include "mdeploy/mdeploy.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most inputs or outputs one node may have.  Kernel contexts hold arrays of this size on the
   stack (about 90 bytes per slot on a 32-bit target): firmware may lower it (examples/firmware
   uses 16); a model with a larger node is then refused at load (MDL_CORRUPT_MODEL). */
#ifndef MDL_MAX_NODE_IO
#define MDL_MAX_NODE_IO 64
#endif

/* Builds with MDL_SMALL_CODE (firmware, see mdeploy.h) leave out the kernels' loops that only
   make a common case faster: code under `if (MDL__FAST_PATHS && ...)` is dropped, and the
   general loop that runs instead computes the same bits. */
#ifdef MDL_SMALL_CODE
#define MDL__FAST_PATHS 0
#else
#define MDL__FAST_PATHS 1
#endif

/* Block-sparse weights (src/ops/sparse.h): left out of MDL_SMALL_CODE builds, whose loader
   refuses such a model (MDL_UNSUPPORTED) and whose kernels never reach the sparse product. */
#ifdef MDL_SMALL_CODE
#define MDL__SPARSE 0
#else
#define MDL__SPARSE 1
#endif

/* Tensor metadata shared by the runtime model and the builder. */
typedef struct mdl__tensor {
    const char *name;
    mdl_dtype dtype;
    int32_t rank;
    int64_t dims[MDL_MAX_RANK];
    int64_t count; /* product of dims (1 for a scalar) */
    size_t bytes;  /* count * dtype size */
    const void *data; /* constant tensors: the weights; NULL for activations */
    int32_t nquant, quant_axis;
    const float *scale;
    const int64_t *zero_point;
    /* Dynamic dims (graph.h, mdl__graph.syms): NULL when every dim is fixed, else rank codes:
       MDL__DIM_FIXED, a symbol index, or MDL__DIM_COMPUTED.  Kernels read dims only: a graph
       is always checked at concrete values before a kernel sees it. */
    const int32_t *sym;
    /* Block-sparse storage of a constant float weight (src/ops/sparse.h, format 2.2); NULL when
       dense.  data then holds the stored blocks' values, not count elements: only input 1 of a
       kernel flagged MDL__KERNEL_SPARSE_W may be such a tensor (mdl__graph_check).  The matrix
       W [N, K] it describes is the tensor seen as [R, C] (C its last dim) or, with
       sparse_transposed, that matrix's transpose. */
    const struct mdl__bsr *sparse;
    bool sparse_transposed;
} mdl__tensor;

#define MDL__DIM_FIXED (-1)
#define MDL__DIM_COMPUTED (-2)

/* Shape + dtype a kernel's prepare infers for an output. */
typedef struct mdl__shape {
    mdl_dtype dtype;
    int32_t rank;
    int64_t dims[MDL_MAX_RANK];
} mdl__shape;

/* ---- intra-op parallelism ---------------------------------------------------------------
   A kernel may split its run into tasks through mdl__par_for.  The runtime core knows no threads:
   a session created with threads > 1 on a host build fills ctx->par with a pool
   (src/graph/threads_host.c); everywhere else (firmware, builder runs, one thread) ctx->par is
   NULL and mdl__par_for runs the tasks in order on the caller.  Task i runs exactly once, on any
   worker; `worker` (0 = the calling thread, < nworkers) names per-worker resources such as
   mdl__par_scratch.  Kernels partition so that every output element is computed by the same
   arithmetic whatever the split (results are bit-identical to one thread). */
typedef void (*mdl__par_fn)(void *arg, int64_t task, int worker);

typedef struct mdl__par {
    int nworkers; /* >= 2 when a pool is attached */
    void (*run)(void *pool, int64_t ntasks, mdl__par_fn fn, void *arg);
    void *pool;
    /* Scratch of worker w >= 1 (worker 0 uses ctx->scratch): worker_scratch_bytes each, enough
       for the largest node whose kernel has MDL__KERNEL_WORKER_SCRATCH. */
    void *const *worker_scratch;
    size_t worker_scratch_bytes;
} mdl__par;

/* Workers available to a kernel (1 without a pool). */
static inline int mdl__par_workers(const mdl__par *p) { return p ? p->nworkers : 1; }

/* Runs fn(arg, i, worker) for every i in [0, ntasks): in parallel when p has a pool and there
   are at least two tasks, otherwise in order on the caller (worker 0).  Returns when all are
   done.  Must not be nested (a task must not call it with the same p). */
static inline void mdl__par_for(const mdl__par *p, int64_t ntasks, mdl__par_fn fn, void *arg) {
    if (p && p->run && p->nworkers > 1 && ntasks > 1) {
        p->run(p->pool, ntasks, fn, arg);
        return;
    }
    for (int64_t i = 0; i < ntasks; i++) fn(arg, i, 0);
}

/* Part i of `parts` even parts of [0, n): [*lo, *hi), the sizes differing by at most one (how
   split kernels hand out rows, pixels or panels, so that no worker gets a whole unit more). */
static inline void mdl__par_part(int64_t i, int64_t parts, int64_t n, int64_t *lo, int64_t *hi) {
    *lo = i * n / parts;
    *hi = (i + 1) * n / parts;
}

typedef struct mdl__kctx {
    mdl_op op;
    const char *name; /* node name for messages */
    const mdl_op_options *opt;
    int nin, nout;
    const mdl__tensor *in[MDL_MAX_NODE_IO];  /* NULL: absent optional input */
    /* Declared outputs.  In prepare an entry is NULL when the graph leaves that output's shape
       to inference (RESHAPE and SLICE require a declared output) or the output is unused. */
    const mdl__tensor *out[MDL_MAX_NODE_IO];
    /* prepare */
    mdl__shape out_shape[MDL_MAX_NODE_IO];
    size_t scratch_bytes;
    size_t packed_bytes; /* load-time data the node wants (see pack) */
    void *packed;        /* pack: to fill; run: the node's packed data (NULL if none) */
    /* run */
    const void *in_data[MDL_MAX_NODE_IO];
    void *out_data[MDL_MAX_NODE_IO]; /* NULL: optional output the graph does not use */
    void *scratch;
    const mdl__par *par; /* NULL: run serially (see mdl__par_for) */
    mdl_error *err;
} mdl__kctx;

/* The scratch of `worker` in a parallel run (scratch_bytes long): ctx->scratch for worker 0,
   its own region for the others.  Only for kernels flagged MDL__KERNEL_WORKER_SCRATCH. */
static inline void *mdl__par_scratch(const mdl__kctx *c, int worker) {
    return worker && c->par ? c->par->worker_scratch[worker - 1] : c->scratch;
}

typedef struct mdl__kernel {
    mdl_status (*prepare)(mdl__kctx *ctx);
    mdl_status (*run)(mdl__kctx *ctx);
    mdl_status (*pack)(mdl__kctx *ctx); /* optional (NULL) */
    unsigned flags;                     /* MDL__KERNEL_* */
} mdl__kernel;

/* The kernel's parallel run gives each worker its own scratch_bytes (mdl__par_scratch); a
   session with threads reserves them at creation. */
#define MDL__KERNEL_WORKER_SCRATCH 1u
/* The kernel reads its input 1 (the weights) when stored block-sparse (mdl__tensor.sparse). */
#define MDL__KERNEL_SPARSE_W 2u

/* Kernel for op with input-0 dtype, or NULL. */
const mdl__kernel *mdl__kernel_find(mdl_op op, mdl_dtype dtype);

/* The loader's lookup (src/ops/resolver.c): the kernel registered in r, or with r NULL the full
   table's (none in builds with MDL_NO_DEFAULT_KERNELS).  NULL when there is none. */
const mdl__kernel *mdl__kernel_resolve(const mdl_op_resolver *r, mdl_op op, mdl_dtype dtype);
/* The MDL_UNSUPPORTED failure for a node (named nm) whose kernel mdl__kernel_resolve did not
   find: "Conv2D 'c1': no kernel for int8 input", naming the registration it needs when it is
   missing from the resolver. */
mdl_status mdl__kernel_missing(const mdl_op_resolver *r, mdl_op op, mdl_dtype dtype,
                               const char *nm, mdl_error *err);

/* Records "<op> '<node>': <message>" in ctx->err and returns status. */
mdl_status mdl__fail(const mdl__kctx *ctx, mdl_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
#ifdef MDL_NO_ERROR_STRINGS
/* Firmware: only the status is recorded and the message's arguments are not evaluated (see
   mdl__error in src/graph/util.h). */
int mdl__msg_unevaluated(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
mdl_status mdl__fail_status(const mdl__kctx *ctx, mdl_status status);
#define mdl__fail(ctx, status, ...)                                                                \
    ((void)sizeof(mdl__msg_unevaluated(__VA_ARGS__)), mdl__fail_status((ctx), (status)))
#endif

/* ---- helpers for kernels --------------------------------------------------------------- */

static inline int64_t mdl__shape_count(const mdl__shape *s) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) n *= s->dims[i];
    return n;
}

/* Copies a tensor's shape/dtype into a shape record. */
static inline void mdl__shape_of(mdl__shape *s, const mdl__tensor *t) {
    s->dtype = t->dtype;
    s->rank = t->rank;
    for (int i = 0; i < t->rank; i++) s->dims[i] = t->dims[i];
}

/* Normalizes a possibly negative axis against rank; false if out of range. */
static inline bool mdl__axis(int32_t axis, int32_t rank, int32_t *out) {
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank) return false;
    *out = axis;
    return true;
}

/* Fused activation bounds. */
static inline void mdl__act_bounds(const mdl_fused_act *a, float *lo, float *hi) {
    switch (a->kind) {
    case MDL_ACT_RELU: *lo = 0.0f; *hi = __builtin_inff(); break;
    case MDL_ACT_RELU6: *lo = 0.0f; *hi = 6.0f; break;
    case MDL_ACT_CLIP: *lo = a->clip_min; *hi = a->clip_max; break;
    default: *lo = -__builtin_inff(); *hi = __builtin_inff(); break;
    }
}

static inline float mdl__clampf(float v, float lo, float hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Checks the shared prologue of one-input, one-output float32 kernels (activations, softmax,
   reductions): MDL_OK, or the failure recorded through mdl__fail. */
mdl_status mdl__check_unary_f32(const mdl__kctx *ctx);

/* Geometry of a CONV2D / DEPTHWISE_CONV2D node (src/ops/conv.c), shared by the float and int8
   kernels. */
/* ptrdiff_t: int64_t on 64-bit hosts, the native word on 32-bit cores (where 64-bit index
   arithmetic doubles the code).  mdl__conv_geometry guarantees that every index and product the
   kernels form from these fits: tensor dims and sizes fit ptrdiff_t (mdl__shape_size), and on a
   32-bit build it also bounds the padded input and the multiply-adds. */
typedef struct mdl__conv_geom {
    ptrdiff_t N, H, W, C;    /* input */
    ptrdiff_t OH, OW, OC;    /* output */
    ptrdiff_t KH, KW, K;     /* kernel; K = KH * KW * CG, the GEMM depth */
    ptrdiff_t sh, sw, dh, dw, pt, pl, pb, pr;
    ptrdiff_t G, CG, OG;     /* groups; input and output channels per group */
} mdl__conv_geom;

/* Validates a convolution's shapes and options (X NHWC, W HWIO or [1,KH,KW,Cout], optional bias
   [Cout], strides, dilations, pads, groups, fused activation kind) and fills g; out_elem is the
   output's element size (overflow check).  Operand count and dtypes are the caller's to check. */
mdl_status mdl__conv_geometry(const mdl__kctx *c, bool depthwise, size_t out_elem,
                              mdl__conv_geom *g);

/* ---- broadcasting (src/ops/binary.c), shared by the element-wise kernels ----------------- */

/* NumPy broadcast of a against b into o (o->dtype = a->dtype); false if they do not broadcast. */
bool mdl__broadcast_shape(const mdl__tensor *a, const mdl__tensor *b, mdl__shape *o);
/* The two-operand element-wise kernels' first prepare step: exactly inputs A, B and one output,
   c->out_shape[0] = their broadcast shape (dtype of A); fails with a message naming the shapes. */
mdl_status mdl__broadcast_prepare(mdl__kctx *c);

/* Row kinds of mdl__broadcast_rows: which operands advance along the row. */
enum { MDL__BC_A = 1, MDL__BC_B = 2, MDL__BC_BOTH = 3 };

/* Calls fn(arg, kind, ao, bo, oo, n) for runs of n output elements starting at element oo of
   the broadcast output of a and b, whose operands start at elements ao and bo: with kind
   MDL__BC_BOTH both advance with the output, with MDL__BC_A only a does (b's element is
   repeated), with MDL__BC_B only b does.  Rows cover the output once, in order. */
typedef void (*mdl__bc_row_fn)(void *arg, int kind, int64_t ao, int64_t bo, int64_t oo, int64_t n);
void mdl__broadcast_rows(const mdl__tensor *a, const mdl__tensor *b, mdl__bc_row_fn fn, void *arg);

/* Formats a shape as "[1,28,28,3]" into buf (for messages). */
const char *mdl__dims_str(char *buf, size_t size, int32_t rank, const int64_t *dims);

/* ---- shared compute primitives (src/ops/gemm.c) ---------------------------------------- */

/* C[M,N] = A[M,K] * B[N,K]^T (+ bias[N]) then clamp to [lo, hi].  Row-major, leading dims lda,
   ldb, ldc.  Uses OpenBLAS when built with MDL_WITH_BLAS and the product is large enough; a
   portable GEMV/GEMM otherwise.  bias may be NULL. */
void mdl__gemm_nt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, const float *bias, float *C, int64_t ldc, float lo, float hi);

/* The portable path of mdl__gemm_nt, always available (the oracle for the BLAS path). */
void mdl__gemm_nt_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *B, int64_t ldb, const float *bias, float *C, int64_t ldc,
                      float lo, float hi);

/* Pre-packed weights for C = A * B^T with B [N,K] (FullyConnected, Conv2D, recurrent weights).
   mdl__gemm_pack_bytes gives the bytes (0: this CPU's kernels read B as it is), mdl__gemm_pack
   writes them once at load, mdl__gemm_nt_packed computes with them (same contract as
   mdl__gemm_nt; `packed` NULL means "use B directly").  The layout is private to gemm.c and may
   differ by CPU. */
size_t mdl__gemm_pack_bytes(int64_t N, int64_t K);
void mdl__gemm_pack(int64_t N, int64_t K, const float *B, int64_t ldb, void *packed);
void mdl__gemm_nt_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, const void *packed, const float *bias,
                         float *C, int64_t ldc, float lo, float hi);

/* The same for C = A * B (+ bias[N]) then clamp, with B [K,N] (row k at B + k * ldb; Conv2D's
   HWIO weights): mdl__gemm_pack_kn packs it into the same panels (mdl__gemm_pack_bytes bytes),
   and without them (`packed` NULL or made for another CPU level) B is used as it is. */
void mdl__gemm_pack_kn(int64_t N, int64_t K, const float *B, int64_t ldb, void *packed);
void mdl__gemm_nn_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, const void *packed, const float *bias,
                         float *C, int64_t ldc, float lo, float hi);

/* Vectorized elementwise math shared by kernels (src/ops/activation.c): y[i] = f(x[i]); y may
   equal x. */
void mdl__sigmoid_f32v(const float *x, float *y, int64_t n);
void mdl__tanh_f32v(const float *x, float *y, int64_t n);

/* Parallel forms of mdl__gemm_nt_packed / mdl__gemm_nn_packed: the product split into row or
   column blocks over p's workers (serial when p is NULL or the product is small), each element
   computed exactly as the serial call computes it.  Must not be called from inside a task. */
void mdl__gemm_nt_packed_par(const mdl__par *p, int64_t M, int64_t N, int64_t K, const float *A,
                             int64_t lda, const float *B, int64_t ldb, const void *packed,
                             const float *bias, float *C, int64_t ldc, float lo, float hi);
void mdl__gemm_nn_packed_par(const mdl__par *p, int64_t M, int64_t N, int64_t K, const float *A,
                             int64_t lda, const float *B, int64_t ldb, const void *packed,
                             const float *bias, float *C, int64_t ldc, float lo, float hi);

/* Row blocks of mdl__gemm_nt_packed, for kernels that split their own row loops (recurrent
   steps): rows [m0, m1) of the M-row product, computed with exactly the arithmetic the whole
   call gives them, provided m0 and m1 are multiples of mdl__gemm_nt_packed_granule(...) or M.
   A and C point at row 0 of the whole product. */
int64_t mdl__gemm_nt_packed_granule(int64_t M, int64_t N, int64_t K, const float *B,
                                    const void *packed);
void mdl__gemm_nt_packed_rows(int64_t M, int64_t m0, int64_t m1, int64_t N, int64_t K,
                              const float *A, int64_t lda, const float *B, int64_t ldb,
                              const void *packed, const float *bias, float *C, int64_t ldc,
                              float lo, float hi);

/* C[M,N] = A[M,K] * B[K,N] (no bias), row-major. */
void mdl__gemm_nn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float *C, int64_t ldc);

#endif
