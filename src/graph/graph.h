/*
 * The graph shared by the runtime model and the builder, its validation (topology + every
 * kernel's prepare) and the memory planner.  One implementation serves the loader, the builder
 * and the converter, so a file the builder accepts is exactly a file the loader accepts.
 */
#ifndef MDL_GRAPH_H
#define MDL_GRAPH_H

#include "ops/ops.h"

typedef struct mdl__node {
    mdl_op op;
    const char *name;
    int32_t nin, nout;
    int32_t *in; /* tensor indices, -1 = absent */
    int32_t *out;
    mdl_op_options opt;
    /* filled by mdl__graph_check */
    const mdl__kernel *kernel;
    size_t scratch_bytes;
    size_t packed_bytes; /* load-time packed data (see ops.h, pack) */
    void *packed;
} mdl__node;

/* A symbolic dimension (a dynamic graph-input dim such as the batch). */
typedef struct mdl__symbol {
    const char *name;
    int64_t max;     /* upper bound, 0: none */
    int64_t initial; /* value of the model's default instance */
} mdl__symbol;

#define MDL__MAX_SYMBOLS 64

/* 0 in builds with MDL_NO_DYNAMIC (fixed shapes only, see mdeploy.h): the loader refuses a
   model with symbols, so every tensor's sym is NULL and nsyms 0, and code under
   `if (MDL__DYNAMIC && ...)` is dropped by the compiler. */
#ifdef MDL_NO_DYNAMIC
#define MDL__DYNAMIC 0
#else
#define MDL__DYNAMIC 1
#endif

typedef struct mdl__graph {
    int32_t ntensors, nnodes, ninputs, noutputs;
    mdl__tensor *tensors;
    mdl__node *nodes;
    int32_t *inputs, *outputs;
    /* Dynamic shapes: tensors whose `sym` codes name symbols take the values symval[] (nsyms
       entries) when the graph is checked; MDL__DIM_COMPUTED dims take what the producing
       operator's prepare infers (a RESHAPE's single computed dim: what the element count
       leaves).  nsyms == 0: a fixed-shape graph. */
    int32_t nsyms;
    const mdl__symbol *syms;
    const int64_t *symval;
    const mdl_op_resolver *resolver; /* kernels to use; NULL: the full table */
} mdl__graph;

/* Activation arena layout: one offset per tensor (SIZE_MAX: holds no arena memory - constants and
   unused tensors), one per node's scratch. */
typedef struct mdl__plan {
    size_t arena_bytes;
    size_t *tensor_offsets;
    size_t *scratch_offsets;
} mdl__plan;

#define MDL_NO_OFFSET ((size_t)-1)

/*
 * Validates a graph: indices in range, every tensor defined once and before use (no cycles),
 * graph inputs are activations, a kernel exists for every node, and each kernel's prepare accepts
 * the node.  Output shapes are inferred by prepare: where a tensor's rank is < 0 (builder only,
 * infer = true) the inferred shape is stored; otherwise it must equal the declared one.  Sets each
 * node's kernel and scratch_bytes and each tensor's count/bytes.
 */
mdl_status mdl__graph_check(mdl__graph *g, bool infer, const mdl_allocator *alloc, mdl_error *err);

/* Checks the dynamic-shape tables of a graph (symbols, every tensor's codes: in range, none on
   constants, graph inputs only fixed or named dims).  A no-op for fixed graphs. */
mdl_status mdl__graph_check_syms(const mdl__graph *g, mdl_error *err);

/* Fills a kernel context for node i (tensor metadata only; data pointers from data[] if given). */
void mdl__graph_kctx(const mdl__graph *g, int32_t i, void *const *data, mdl__kctx *ctx);

/* Computes a plan (greedy by size over lifetimes, reshape outputs alias their input).  Arrays
   are allocated with alloc; release with mdl__plan_free. */
mdl_status mdl__plan_compute(const mdl__graph *g, const mdl_allocator *alloc, mdl__plan *plan,
                             mdl_error *err);
void mdl__plan_free(mdl__plan *plan, const mdl_allocator *alloc);

/* Checks a stored plan: alignment, bounds, aliasing and no overlap between buffers alive at the
   same time. */
mdl_status mdl__plan_verify(const mdl__graph *g, const mdl__plan *plan, const mdl_allocator *alloc,
                            mdl_error *err);


#endif
