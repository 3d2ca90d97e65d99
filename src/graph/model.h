/* The runtime model record (opaque to users) and the format reader/writer that fill/serialize it. */
#ifndef MDL_MODEL_H
#define MDL_MODEL_H

#include "graph.h"
#include "io/fb.h"

/* Builds that keep the load note (mdl_model_load_note): not firmware's (no strings, no replan). */
#if !defined(MDL_NO_ERROR_STRINGS) && !defined(MDL_SMALL_CODE)
#define MDL__LOAD_NOTE 1
#endif

struct mdl_model {
    const mdl_allocator *alloc;
    void *block; /* one allocation holding the arrays below */
    void *owned; /* private copy of the file bytes, or NULL when used in place */
    size_t owned_size;
    void (*release)(void *owned, size_t size); /* frees `owned` when not from the allocator */
    const uint8_t *buf;
    size_t size;
    int format_major, format_minor;
    const char *name, *version, *producer, *description;
    int32_t nmeta;
    const char **meta; /* key0, value0, key1, value1, ... */
    mdl__graph g;
    mdl__plan plan;
    bool plan_computed; /* plan arrays allocated by the planner (no plan in the file) */
    void *packed_raw;   /* allocation holding every node's packed data */
    size_t packed_bytes;
    void *folded_raw; /* weights widened at load from DEQUANTIZE(constant) nodes */
    size_t weight_bytes;
    size_t session_bytes;
    /* Models with dynamic dims: per tensor, MDL_MAX_RANK entries each, the dims as the getters
       report them (-1 where dynamic), the symbol names and bounds (mdl_tensor_info). */
    void *dyn_raw;
    int64_t *info_dims, *info_max;
    const char **info_names;
    struct mdl__inst *pack_inst; /* the instance at sizes >= 2 whose packed data sessions share */
#ifdef MDL_WITH_METRICS
    struct mdl__metrics *metrics; /* run metrics (MDL_LOAD_METRICS), NULL when off */
#endif
#ifdef MDL__LOAD_NOTE
    char note[MDL_ERROR_MSG_SIZE]; /* mdl_model_load_note */
#endif
    void *plain_raw; /* an encrypted model's decrypted file (src/io/seal.c), wiped when freed */
    size_t plain_bytes;
    struct mdl__selftest *selftest; /* self-test vectors read at load (host builds), or NULL */
};

/* Verifies m->buf/m->size as a FlatBuffer, then reads it into m (metadata, tensors, nodes,
   stored plan).  Semantic checks (topology, kernels, plan) are the caller's next step. */
mdl_status mdl__format_read(mdl_model *m, mdl_error *err);

/* Metadata written with a graph. */
typedef struct mdl__meta {
    const char *name, *version, *producer, *description;
    int32_t nkv;
    const char *const *kv; /* key, value pairs */
    uint64_t security_counter; /* Model.security_counter (format 2.3) */
    const struct mdl__selftest *selftest; /* written as Model.selftest when non-NULL */
} mdl__meta;

/* fb_verify with the model schema (mdl__format_read starts with it). */
mdl_status mdl__format_verify(const uint8_t *buf, size_t size, mdl_error *err);

/* The seal (src/io/seal.c, include/mdeploy/security.h).  Root field ids of format 2.3: */
enum { MDL__M_SECURITY_COUNTER = 14, MDL__M_SEAL = 15, MDL__M_ENCRYPTED = 16 };
#define MDL__SEAL_MESSAGE_BYTES 48 /* "MDL1SIG1" || digest || key_id */
#define MDL__SEAL_ENC_AD "MDL1ENC1" /* an encrypted model's associated data (8 bytes) */
/* An all-zero Seal table (the writer adds it to the root) ... */
fb_ref mdl__seal_build(fb_builder *b);
/* ... and the digest of the finished file written into it (nothing when it has no seal). */
void mdl__seal_finish(uint8_t *buf, size_t size);
/* The message a signature covers. */
void mdl__seal_message(const uint8_t *digest, const uint8_t *key_id, uint8_t msg[MDL__SEAL_MESSAGE_BYTES]);
/* Load steps 1-5 of security.h on m->buf/m->size; an encrypted model's m->buf/m->size become
   its decrypted inner file (m->plain_raw). */
mdl_status mdl__seal_load(mdl_model *m, const mdl_load_options *o, mdl_error *err);
/* Wipes and frees m->plain_raw. */
void mdl__seal_release(mdl_model *m);
/* Host (src/io/sign_host.c): the sealed outer file of an encrypted model around its ciphertext
   (clen bytes: the XChaCha20-Poly1305 IETF combined output over the inner file, associated data
   MDL__SEAL_ENC_AD); *out malloc'ed. */
mdl_status mdl__seal_wrap_encrypted(const uint8_t *ct, size_t clen, const uint8_t *nonce, uint64_t security_counter,
                                    void **out, size_t *out_size, mdl_error *err);

/* Serializes a checked graph (tensors with data are weights) and its plan into b (plan NULL:
   no stored plan; the loader then plans, as for a model with dynamic dims). */
mdl_status mdl__format_write(fb_builder *b, const mdl__graph *g, const mdl__plan *plan,
                             const mdl__meta *meta, const uint8_t **data, size_t *size,
                             mdl_error *err);

/* Self-test vectors for the builder's next finish (the caller keeps s alive until then; NULL:
   none).  The finish's load check verifies them against the graph like any file's. */
void mdl__builder_set_selftest(mdl_builder *b, const struct mdl__selftest *s);

/* The graph a builder holds (converter: compares two lowerings). */
mdl__graph *mdl__builder_graph(mdl_builder *b);
/* Changes symbol s's initial value (ignored when out of range or above its bound). */
void mdl__builder_set_initial(mdl_builder *b, int32_t s, int64_t initial);

/* Stores constant float tensor t block-sparse (src/ops/sparse.h): its matrix [R, C] (C the last
   dim) or, with transposed, that matrix's transpose is cut into 8x1 blocks and the non-zero ones
   kept.  The tensor keeps its dense data for the builder's own checks; the file gets the blocks.
   MDL_INVALID_ARGUMENT when t is not a float constant of rank >= 2. */
mdl_status mdl__builder_set_sparse(mdl_builder *b, int32_t t, bool transposed);

/* A tensor's concrete shape as mdl_tensor_info (session getters). */
void mdl__session_tensor_info(const mdl__tensor *t, mdl_tensor_info *info);

/* The loader's graph work that firmware links only through mdl_op_resolver_add_load_planner:
   widening DEQUANTIZE(constant) nodes into float weights, and planning the arena. */
typedef struct mdl__load_planner_ops {
    mdl_status (*fold)(mdl_model *m, mdl_error *err);
    mdl_status (*plan)(const mdl__graph *g, const mdl_allocator *alloc, mdl__plan *plan,
                       mdl_error *err);
} mdl__load_planner_ops;
extern const mdl__load_planner_ops mdl__load_planner;

/* Bytes mdl_session_create_in needs for m (session.c). */
size_t mdl__session_bytes(const mdl_model *m);

#ifdef MDL_WITH_METRICS
/* Run metrics (metrics_host.c, host builds): created at load when flags ask for them (sets
   m->metrics), freed with the model.  mdl__metrics_run records one run of `ns` nanoseconds that
   returned st; mdl__metrics_op adds ns to the node's operator when op time is on. */
typedef struct mdl__metrics mdl__metrics;
mdl_status mdl__metrics_create(mdl_model *m, uint32_t flags, mdl_error *err);
void mdl__metrics_free(mdl_model *m);
void mdl__metrics_run(mdl__metrics *x, mdl_status st, uint64_t ns);
bool mdl__metrics_ops_on(const mdl__metrics *x);
void mdl__metrics_op(mdl__metrics *x, mdl_op op, uint64_t ns);
#endif

#endif
