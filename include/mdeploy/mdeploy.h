/*
 * mdeploy — embeddable inference runtime.  The whole runtime API.
 *
 * Life cycle:
 *
 *     mdl_error err;
 *     mdl_model *m;
 *     if (mdl_model_load_file("net.mdl", NULL, &m, &err) != MDL_OK) { puts(err.msg); ... }
 *     mdl_session *s;
 *     mdl_session_create(m, NULL, &s, &err);
 *     memcpy(mdl_session_input_data(s, 0), x, bytes);
 *     if (mdl_session_run(s) != MDL_OK) puts(mdl_session_message(s));
 *     const float *y = mdl_session_output_data(s, 0);
 *     mdl_session_free(s);
 *     mdl_model_free(m);
 *
 * Dynamic shapes: a model converted with dynamic dims (e.g. the batch) has symbols
 * (mdl_model_symbol); each session fixes their sizes (mdl_session_options.input_shapes,
 * mdl_session_resize) and reports its shapes through mdl_session_input_info/output_info.
 *
 * Threads: an mdl_model is immutable after load and may be shared by any number of threads.
 * An mdl_session belongs to one thread at a time (with mdl_session_options.threads > 1 a run
 * also uses the session's own worker threads).  No function here touches global mutable state.
 *
 * Errors: every function that can fail returns an mdl_status (MDL_OK == 0).  When the caller
 * passes a non-NULL mdl_error, it receives the status and a message naming the cause (the node,
 * tensor, byte offset ...).  Building with MDL_NO_ERROR_STRINGS keeps the status, drops the text.
 *
 * NULL handles (one rule for the whole API): every function accepts a NULL model or session (and
 * a NULL name, key or info pointer).  Functions returning an mdl_status then return
 * MDL_INVALID_ARGUMENT; the others return their "nothing" value: 0 for counts and sizes, false,
 * NULL for pointers and -1 for indices, "" for strings; mdl_*_free does nothing.
 *
 * Untrusted files: loading verifies every byte (see mdl_model_load_buffer); what a valid file may
 * ask for is bounded by the limits of mdl_load_options and mdl_session_options (a 4 GiB arena by
 * default on 64-bit hosts; MDL_LIMIT above them).
 *
 * Memory: every allocation goes through an mdl_allocator (NULL = libc malloc/free).  A model can
 * be used in place from a caller's buffer (e.g. flash) and a session can live entirely inside a
 * caller-provided arena (mdl_session_create_in), so firmware needs no heap.  mdl_session_run
 * never allocates.
 *
 * Firmware builds (examples/firmware) compile the core with:
 *   MDL_NO_ERROR_STRINGS    statuses only; mdl_error.msg stays "" (message arguments are not
 *                           even evaluated)
 *   MDL_NO_MALLOC           no libc default allocator: pass one (mdl_bump_init), or loading
 *                           fails with MDL_OUT_OF_MEMORY; no malloc/free in the image
 *   MDL_NO_DEFAULT_KERNELS  no full kernel table: load with mdl_load_options.resolver
 *                           (include/mdeploy/resolver.h), so only registered kernels are linked
 *                           (and the load planner only where registered: resolver.h)
 *   MDL_MAX_NODE_IO=N       most inputs/outputs per node (default 64; kernel contexts on the stack
 *                           are proportional to it)
 *   MDL_NO_DYNAMIC          fixed shapes only: the code for dynamic dims (symbols, resizing,
 *                           shapes computed at load) is left out, and loading a model that has
 *                           dynamic dims fails with MDL_UNSUPPORTED (convert it with
 *                           --input-shape); mdl_builder_symbol fails the same way
 *   MDL_SMALL_CODE          code size over speed: kernels leave out the loops that only make a
 *                           common case faster (the general loop gives the same bits); the
 *                           stored-plan check compares every pair of buffers (small graphs);
 *                           a stored plan is always required (MDL_LOAD_STRICT_PLAN) and the
 *                           limits of mdl_load_options are not checked (the caller's arena is
 *                           the limit: mdl_session_create_in)
 */
#ifndef MDEPLOY_MDEPLOY_H
#define MDEPLOY_MDEPLOY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Public symbols; the library is built with -fvisibility=hidden so internals stay private. */
#if defined(__GNUC__)
#define MDL_API __attribute__((visibility("default")))
#else
#define MDL_API
#endif

#define MDL_VERSION_MAJOR 0
#define MDL_VERSION_MINOR 1
#define MDL_VERSION_PATCH 0
#define MDL_VERSION_STRING "0.1.0"

/* Model file format version this runtime writes.  Files with another major are rejected.
   2.0: CONV2D weights are HWIO (1.x stored them [Cout,KH,KW,Cin/group]).
   2.1: dynamic (symbolic) dimensions; files without them read as 2.0 files did.
   2.2: block-sparse weights (Tensor.sparse); files without them read as 2.1 files did.
   2.3: the seal (content digest, signature), security counter, encryption at rest
        (include/mdeploy/security.h); files without them load with a note. */
#define MDL_FORMAT_MAJOR 2
#define MDL_FORMAT_MINOR 3

#define MDL_MAX_RANK 8 /* most dimensions a tensor may have */
#define MDL_ALIGN 16   /* alignment of weight buffers in a model file and of arena slots */

/* ---- status codes ---------------------------------------------------------------------- */

#define MDL_STATUS_MAP(X)                                                                          \
    X(OK, "ok")                                                                                    \
    X(INVALID_ARGUMENT, "invalid argument")                                                        \
    X(OUT_OF_MEMORY, "out of memory")                                                              \
    X(IO, "I/O error")                                                                             \
    X(CORRUPT_MODEL, "corrupt model")                                                              \
    X(VERSION, "unsupported model format version")                                                 \
    X(UNSUPPORTED, "unsupported")                                                                  \
    X(SHAPE, "shape mismatch")                                                                     \
    X(DTYPE, "dtype mismatch")                                                                     \
    X(OUT_OF_RANGE, "index out of range")                                                          \
    X(BUFFER_TOO_SMALL, "buffer too small")                                                        \
    X(INTERNAL, "internal error")                                                                  \
    X(LIMIT, "limit exceeded") /* a size above mdl_load_options / mdl_session_options limits */

typedef enum mdl_status {
#define MDL__STATUS_ENUM(name, text) MDL_##name,
    MDL_STATUS_MAP(MDL__STATUS_ENUM)
#undef MDL__STATUS_ENUM
        MDL_STATUS_COUNT
} mdl_status;

/* Static string for a status ("corrupt model"); "unknown status" for values out of range. */
MDL_API const char *mdl_status_str(mdl_status s);

#define MDL_ERROR_MSG_SIZE 256

/* Caller-owned error record.  Functions write it only on failure. */
typedef struct mdl_error {
    mdl_status status;
    char msg[MDL_ERROR_MSG_SIZE];
} mdl_error;

/* ---- element types --------------------------------------------------------------------- */

#define MDL_DTYPE_MAP(X)                                                                           \
    X(FLOAT32, "float32", 4)                                                                       \
    X(INT8, "int8", 1)                                                                             \
    X(UINT8, "uint8", 1)                                                                           \
    X(INT32, "int32", 4)                                                                           \
    X(INT64, "int64", 8)                                                                           \
    X(BOOL, "bool", 1) /* one byte, 0 or 1 (ONNX bool; comparisons, Not/And/Or/Xor, Where) */

typedef enum mdl_dtype {
#define MDL__DTYPE_ENUM(name, text, size) MDL_DTYPE_##name,
    MDL_DTYPE_MAP(MDL__DTYPE_ENUM)
#undef MDL__DTYPE_ENUM
        MDL_DTYPE_COUNT
} mdl_dtype;

/* "float32", ...; "unknown" out of range. */
MDL_API const char *mdl_dtype_name(mdl_dtype t);
/* Bytes of one element; 0 out of range. */
MDL_API size_t mdl_dtype_size(mdl_dtype t);

/* ---- memory ---------------------------------------------------------------------------- */

/* A caller's allocator.  alloc returns memory aligned to at least 16 bytes or NULL. */
typedef struct mdl_allocator {
    void *(*alloc)(void *user, size_t size);
    void (*free)(void *user, void *ptr);
    void *user;
} mdl_allocator;

/* ---- model ----------------------------------------------------------------------------- */

typedef struct mdl_model mdl_model;

enum {
    /* Copy the file bytes into model-owned memory.  Without it, mdl_model_load_buffer uses the
       caller's bytes in place: they must stay valid and unchanged until mdl_model_free and start
       on an MDL_ALIGN boundary (a 64-byte boundary is faster: files place weights at 64-byte
       offsets, and convolutions read them in place with full cache-line loads). */
    MDL_LOAD_COPY = 1u << 0,
    /* Use the memory plan stored in the file or fail.  Without it, a stored plan that fails the
       check (e.g. from an older writer) is computed again when the load planner is available
       (host builds; firmware: resolver.h), and mdl_model_load_note says so.  Firmware that must
       run exactly the layout it was sized for sets it. */
    MDL_LOAD_STRICT_PLAN = 1u << 1,
    /* Run metrics for this model (include/mdeploy/metrics.h): run and error counts, a latency
       histogram; one clock read pair per mdl_session_run.  Host builds; firmware builds (no
       MDL_WITH_METRICS) ignore both flags and have no metrics API. */
    MDL_LOAD_METRICS = 1u << 8,
    /* Also per-operator cumulative time (one clock read pair per node; implies MDL_LOAD_METRICS). */
    MDL_LOAD_METRICS_OPS = 1u << 9,
    /* Do not recompute the content digest (include/mdeploy/security.h): for an image already
       trusted, e.g. checked once when written to flash and used in place.  Ignored when public
       keys are given (a signature covers the digest, which must then be computed). */
    MDL_LOAD_NO_DIGEST = 1u << 16,
    /* Refuse a file without a seal (written before format 2.3) instead of loading it with a
       note (mdl_model_load_note). */
    MDL_LOAD_REQUIRE_DIGEST = 1u << 17,
};

/* Defaults of the limits below (mdl_load_options_default, mdl_session_options_default): a 4 GiB
   session arena on 64-bit hosts (no limit where size_t is 32 bits: firmware sizes its arena
   itself, and mdl_session_create_in refuses a model that does not fit with BUFFER_TOO_SMALL). */
#if SIZE_MAX > 0xffffffffu
#define MDL_DEFAULT_MAX_ARENA_BYTES ((size_t)4 << 30)
#else
#define MDL_DEFAULT_MAX_ARENA_BYTES ((size_t)0)
#endif
#define MDL_DEFAULT_MAX_NODES (1 << 20)
#define MDL_DEFAULT_MAX_TENSORS (1 << 22)

/* Operator registration (include/mdeploy/resolver.h). */
typedef struct mdl_op_resolver mdl_op_resolver;

typedef struct mdl_load_options {
    const mdl_allocator *allocator; /* NULL: malloc/free.  Must outlive the model. */
    uint32_t flags;                 /* MDL_LOAD_* */
    /* Kernels the model may use; NULL: every kernel of the library (host).  Firmware passes the
       few its model needs so that only those are linked.  Must outlive the model. */
    const mdl_op_resolver *resolver;
    /* Limits on what a file may ask for (untrusted files); 0 = no limit.  The defaults are
       MDL_DEFAULT_MAX_*; a zero-initialized struct has no limits.  A model above one is refused
       with MDL_LIMIT and a message naming the limit and the size asked for.
       max_arena_bytes: the session arena (mdl_model_arena_size: record, tensor table and the
       memory plan's activations; models with dynamic dims: at the symbols' initial values).
       max_nodes, max_tensors: the graph's operator and tensor counts (checked before the graph
       is checked or planned). */
    size_t max_arena_bytes;
    int32_t max_nodes, max_tensors;
    /* Signature keys, decryption key and their hooks (include/mdeploy/security.h); NULL: none
       (the digest is still checked).  Must outlive the load call. */
    const struct mdl_security *security;
    /* Anti-rollback: refuse a model whose security counter is below this (MDL_VERSION). */
    uint64_t min_counter;
} mdl_load_options;

MDL_API mdl_load_options mdl_load_options_default(void);

/*
 * Verifies a model held in memory and builds the runtime graph.  Every byte is treated as
 * untrusted: offsets, lengths, alignment, enums, indices, shapes and sizes are checked before
 * use, and each kernel validates its node.  options may be NULL (defaults).  On success *out owns
 * a model to release with mdl_model_free; on failure *out = NULL and err explains.
 * Errors: INVALID_ARGUMENT, OUT_OF_MEMORY, CORRUPT_MODEL, VERSION, UNSUPPORTED, SHAPE, DTYPE.
 */
MDL_API mdl_status mdl_model_load_buffer(const void *data, size_t size, const mdl_load_options *options,
                                 mdl_model **out, mdl_error *err);

/* Maps a file read-only and loads it in place (no copy; the mapping is released by
   mdl_model_free).  Host builds only.  Errors as above + IO. */
MDL_API mdl_status mdl_model_load_file(const char *path, const mdl_load_options *options, mdl_model **out,
                               mdl_error *err);

/* What the load chose to do about the file, "" when nothing: e.g. that its stored memory plan
   failed the check (and why) and was computed again (see MDL_LOAD_STRICT_PLAN).  Owned by the
   model. */
MDL_API const char *mdl_model_load_note(const mdl_model *m);

/* Releases a model.  All its sessions must be freed first.  NULL is a no-op. */
MDL_API void mdl_model_free(mdl_model *m);

/* Exact bytes mdl_session_create_in needs for this model (session record, tensor table,
   activation arena and kernel scratch, alignment slack included).  Models with dynamic dims:
   for the symbols' initial values (see mdl_model_symbol). */
MDL_API size_t mdl_model_arena_size(const mdl_model *m);

/* mdl_model_arena_size as a constant expression, for a static arena on firmware: a model with
   `ntensors` tensors and `activation_bytes` of activation arena (mdl_model_tensor_count,
   mdl_model_activation_bytes; tools/mdeploy-embed writes both) needs exactly
   MDL_SESSION_ARENA_BYTES(ntensors, activation_bytes) bytes on the target that compiles it:
   the session record (MDL_SESSION_RECORD_BYTES), one pointer per tensor and 63 bytes of slack
   for any start address, each part rounded to 64 bytes. */
#define MDL_SESSION_RECORD_BYTES 512
#define MDL_SESSION_ARENA_BYTES(ntensors, activation_bytes)                                        \
    ((size_t)MDL_SESSION_RECORD_BYTES +                                                            \
     (((size_t)(ntensors) * sizeof(void *) + 63) & ~(size_t)63) + (size_t)(activation_bytes) + 63)

/* Bytes of the activation arena alone (the memory plan's size). */
MDL_API size_t mdl_model_activation_bytes(const mdl_model *m);

/* Total bytes of constant tensor data (weights). */
MDL_API size_t mdl_model_weight_bytes(const mdl_model *m);

/* Metadata.  Strings are owned by the model; "" when absent. */
MDL_API const char *mdl_model_name(const mdl_model *m);
MDL_API const char *mdl_model_version(const mdl_model *m);
MDL_API const char *mdl_model_producer(const mdl_model *m);
MDL_API const char *mdl_model_description(const mdl_model *m);
MDL_API int mdl_model_format_major(const mdl_model *m);
MDL_API int mdl_model_format_minor(const mdl_model *m);
/* Free key/value metadata; NULL when key is absent. */
MDL_API const char *mdl_model_metadata(const mdl_model *m, const char *key);
MDL_API int mdl_model_metadata_count(const mdl_model *m);
/* i-th pair; returns false when i is out of range. */
MDL_API bool mdl_model_metadata_at(const mdl_model *m, int i, const char **key, const char **value);

/* Description of one tensor.  Pointers are owned by the model and live as long as it. */
typedef struct mdl_tensor_info {
    const char *name;
    mdl_dtype dtype;
    int32_t rank;
    const int64_t *dims; /* rank entries */
    size_t bytes;        /* product(dims) * dtype size */
    /* Quantization (int8/uint8/int32 tensors); nquant == 0 when the tensor is not quantized.
       nquant == 1: per tensor; otherwise one scale/zero point per index of dimension quant_axis. */
    int32_t nquant;
    int32_t quant_axis;
    const float *scale;
    const int64_t *zero_point;
    /* Dynamic dimensions.  From the mdl_model_*_info getters, a dim whose size a session
       chooses is -1 in dims, and bytes is then 0; dim_names[d] is its symbol's name (e.g. the
       ONNX dim_param "batch"; "" for a dim computed from others, e.g. batch*seq after a
       reshape) and dim_max[d] its upper bound (0: none).  For fixed dims dim_names[d] is NULL
       and dim_max[d] 0.  Both are NULL when no dim is dynamic.  The mdl_session_*_info getters
       report the session's current, concrete shapes (and leave both NULL). */
    const char *const *dim_names;
    const int64_t *dim_max;
} mdl_tensor_info;

MDL_API int mdl_model_input_count(const mdl_model *m);
MDL_API int mdl_model_output_count(const mdl_model *m);
/* Fill *info for input/output i; INVALID_ARGUMENT when i is out of range. */
MDL_API mdl_status mdl_model_input_info(const mdl_model *m, int i, mdl_tensor_info *info);
MDL_API mdl_status mdl_model_output_info(const mdl_model *m, int i, mdl_tensor_info *info);
/* Symbolic dimensions: a model converted from ONNX with dynamic axes keeps them (named by the
   ONNX dim_param, optionally bounded: mdeploy-convert --max-shape).  mdl_model_symbol_count is 0
   for a fixed-shape model.  mdl_model_symbol fills the i-th symbol's name, bound (0: none) and
   initial value (what a session created without shapes uses; also the shapes that
   mdl_model_arena_size and mdl_model_activation_bytes describe); each out-pointer may be NULL.
   Returns false when i is out of range. */
MDL_API int mdl_model_symbol_count(const mdl_model *m);
MDL_API bool mdl_model_symbol(const mdl_model *m, int i, const char **name, int64_t *max,
                              int64_t *initial);

/* Index of the input/output called name, or -1. */
MDL_API int mdl_model_input_index(const mdl_model *m, const char *name);
MDL_API int mdl_model_output_index(const mdl_model *m, const char *name);

/* Graph introspection (for inspect tools and profilers). */
MDL_API int mdl_model_node_count(const mdl_model *m);
MDL_API int mdl_model_tensor_count(const mdl_model *m);
typedef struct mdl_node_info {
    const char *name;
    const char *op; /* operator name, e.g. "Conv2D" */
    int32_t nin, nout;
    const int32_t *inputs; /* tensor indices; -1 marks an absent optional input */
    const int32_t *outputs;
    size_t scratch_bytes;
} mdl_node_info;
MDL_API mdl_status mdl_model_node_info(const mdl_model *m, int i, mdl_node_info *info);
/* The node's options as text ("stride=2x2 pad=1,1,1,1 act=relu6"), "" when it has none; writes at
   most size bytes (always terminated) and returns the length.  Host builds only. */
MDL_API size_t mdl_model_node_attrs(const mdl_model *m, int i, char *buf, size_t size);
/* constant: set to true when the tensor holds weights.  May be NULL. */
MDL_API mdl_status mdl_model_tensor_info(const mdl_model *m, int i, mdl_tensor_info *info, bool *constant);

/* ---- session --------------------------------------------------------------------------- */

typedef struct mdl_session mdl_session;

/* A concrete shape for one graph input (dynamic shapes: mdl_session_options.input_shapes,
   mdl_session_resize). */
typedef struct mdl_shape {
    int32_t rank;
    int64_t dims[MDL_MAX_RANK];
} mdl_shape;
#define MDL_MAX_THREADS 64 /* most threads one session may use */

typedef struct mdl_session_options {
    const mdl_allocator *allocator; /* NULL: malloc/free.  Must outlive the session. */
    bool profile;                   /* time every node (see mdl_session_profile) */
    /* Models with dynamic dims: the shape of each input, input_shapes[i] for input i
       (ninput_shapes <= the input count; inputs beyond it, and a NULL array, take the symbols'
       initial values).  Ignored (must match, if given) for fixed-shape models. */
    int32_t ninput_shapes;
    const mdl_shape *input_shapes;
    /* Threads one run may use (intra-op parallelism), 1 to MDL_MAX_THREADS; default 1: run
       computes on the calling thread only.  With N > 1 the session starts N - 1 worker threads
       of its own (host builds; a build without threads, e.g. firmware, runs on one), and the
       larger convolutions, depthwise convolutions, max/average pooling, FullyConnected/GEMM
       products and recurrent (LSTM/GRU) batch rows are split between them and the caller.  Results are bit-identical
       to one thread.  After each piece of work the workers spin for as long as
       waking a sleeping thread costs on this machine (measured as they run: 15-30 us on a KVM
       guest, less where wake-ups are cheaper; 2 to 50 us), then sleep, so an
       idle session burns no CPU; mdl_session_run still allocates nothing (workers and their scratch are made here,
       and freed by mdl_session_free).  Sessions do not share workers: two sessions of 2
       threads each use 4.  With OpenBLAS (used only on CPUs without AVX2), keep
       OPENBLAS_NUM_THREADS=1 or the two pools compete for the cores.  After fork(), a child
       must not use a session with threads created before the fork (its workers were not
       copied); it may create its own. */
    int32_t threads;
    /* Most bytes the session may allocate (the arena of mdl_model_arena_size, profile timings,
       worker scratch; after mdl_session_resize, plus the arena at the new shapes: the first one
       is kept for a resize back to the initial shapes); 0 = no limit.
       Default MDL_DEFAULT_MAX_ARENA_BYTES.  Above it: MDL_LIMIT, naming the limit and the size.
       (mdl_session_create_in uses the caller's arena and has no limit but its size.) */
    size_t max_arena_bytes;
} mdl_session_options;

MDL_API mdl_session_options mdl_session_options_default(void);

/* Creates a session (activation arena and kernel scratch, and with options->threads > 1 its
   worker threads) for a model.  options may be NULL.  The model must outlive the session.  With
   options->input_shapes the session is created at those shapes (as by mdl_session_resize).
   Errors: INVALID_ARGUMENT (e.g. threads out of range), OUT_OF_MEMORY (also: a thread could not
   be started), and those of mdl_session_resize. */
MDL_API mdl_status mdl_session_create(const mdl_model *m, const mdl_session_options *options,
                              mdl_session **out, mdl_error *err);

/* Same, inside a caller-provided region of at least mdl_model_arena_size(m) bytes (any
   alignment), on one thread.  Nothing is allocated; mdl_session_free releases nothing but marks it unusable.
   A model with dynamic dims gets a session at the symbols' initial values (which
   mdl_model_arena_size describes exactly); such a session cannot be resized.
   Errors: INVALID_ARGUMENT, BUFFER_TOO_SMALL. */
MDL_API mdl_status mdl_session_create_in(const mdl_model *m, void *arena, size_t size, mdl_session **out,
                                 mdl_error *err);

/* NULL is a no-op. */
MDL_API void mdl_session_free(mdl_session *s);

/*
 * Changes the concrete input shapes of a session of a model with dynamic dims: shapes[i] is the
 * new shape of input i (n <= the input count; inputs from n on keep their shapes).  Every dim
 * that is fixed in the model must keep its size; a symbol that several inputs share (e.g.
 * "batch") must get one value.  Shape inference runs again (every kernel's prepare), the arena
 * is planned again, weights are re-packed where their layout depends on the shapes, and the
 * session's memory is reallocated (this call allocates; mdl_session_run still never does).
 * Input and output contents are not preserved; buffer pointers (mdl_session_input_data ...) and
 * the sizes from mdl_session_input_info change.  Resizing to the current shapes does nothing.
 * On failure the session is unchanged and still usable at its old shapes.
 * Not thread-safe with other calls on the same session.
 * Errors: INVALID_ARGUMENT (n out of range), SHAPE (a rank change, a fixed dim changed, a dim
 * above its bound or negative, inconsistent values of one symbol, or shapes an operator
 * rejects: the message names the input, dim and symbol or the node), UNSUPPORTED (a session in
 * a caller's arena: create a new one there), OUT_OF_MEMORY.
 */
MDL_API mdl_status mdl_session_resize(mdl_session *s, int n, const mdl_shape *shapes,
                                      mdl_error *err);

/* The session's current input/output shapes (concrete; bytes is the buffer size).  Pointers
   in *info stay valid until the next resize or free.  INVALID_ARGUMENT when i is out of range. */
MDL_API mdl_status mdl_session_input_info(const mdl_session *s, int i, mdl_tensor_info *info);
MDL_API mdl_status mdl_session_output_info(const mdl_session *s, int i, mdl_tensor_info *info);

MDL_API const mdl_model *mdl_session_model(const mdl_session *s);

/* Input/output buffers inside the session arena: write inputs before mdl_session_run, read
   outputs after.  Sizes are mdl_tensor_info.bytes (mdl_session_input_info: the session's
   shapes).  Valid until the session is freed; input
   contents are not preserved across runs (the arena is reused).  NULL when i is out of range. */
MDL_API void *mdl_session_input_data(mdl_session *s, int i);
MDL_API const void *mdl_session_output_data(const mdl_session *s, int i);

/* Copying variants that check the byte count.  Errors: INVALID_ARGUMENT, BUFFER_TOO_SMALL. */
MDL_API mdl_status mdl_session_set_input(mdl_session *s, int i, const void *data, size_t bytes,
                                 mdl_error *err);
MDL_API mdl_status mdl_session_get_output(const mdl_session *s, int i, void *data, size_t bytes,
                                  mdl_error *err);

/* Runs the graph once.  Allocates nothing.  On a data-dependent failure (e.g. an embedding id out
   of range) returns the status and mdl_session_message names the node and the cause. */
MDL_API mdl_status mdl_session_run(mdl_session *s);

/* Message of the last failed run; "" after a successful one.  Owned by the session. */
MDL_API const char *mdl_session_message(const mdl_session *s);

/* Threads the session runs on (1, or options.threads where the build has threads; 0 for NULL). */
MDL_API int mdl_session_threads(const mdl_session *s);

/* With options.profile: nanoseconds spent in node i during the last run; 0 otherwise. */
MDL_API uint64_t mdl_session_node_ns(const mdl_session *s, int i);

/* ---- utilities ------------------------------------------------------------------------- */

/* A bump allocator over a caller buffer, for heap-free loading on firmware:
       static uint8_t heap[8192]; mdl_bump bump; mdl_allocator a = mdl_bump_init(&bump, heap, sizeof heap);
   free() is a no-op; memory returns when the buffer is dropped. */
typedef struct mdl_bump {
    uint8_t *base;
    size_t size, used;
} mdl_bump;
MDL_API mdl_allocator mdl_bump_init(mdl_bump *bump, void *buffer, size_t size);

/* Library version string, e.g. "0.1.0". */
MDL_API const char *mdl_version(void);

#ifdef __cplusplus
}
#endif
#endif
