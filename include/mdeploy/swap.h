/*
 * mdeploy — hot swap with rollback, for long-running services (host builds: needs threads).
 *
 *     mdl_swap *sw;
 *     mdl_swap_create_file("v1.mdl", NULL, &sw, &err);
 *     // request threads, as often as they like:
 *     mdl_session *s;
 *     if (mdl_swap_acquire(sw, &s, &err) == MDL_OK) {
 *         memcpy(mdl_session_input_data(s, 0), x, bytes);
 *         mdl_session_run(s); ... mdl_session_output_data(s, 0) ...
 *         mdl_swap_release(sw, s);
 *     }
 *     // a control thread:
 *     if (mdl_swap_load_file(sw, "v2.mdl", NULL, &err) != MDL_OK) log(err.msg);  // v1 stays
 *     ...
 *     mdl_swap_rollback(sw, &err);   // back to v1
 *     mdl_swap_free(sw);             // after every session is released
 *
 * A handle owns the active model and the previous one.  mdl_swap_load_* loads a candidate (all
 * the loader's verification), runs its self-test when the file has vectors (include/mdeploy/
 * selftest.h; required with options.require_selftest), and refuses it unless its inputs and
 * outputs equal the active model's: count, names, dtypes, ranks, fixed dims, and for dynamic dims
 * the symbol name and bound (the message names the first difference).  Loading and testing run
 * on the caller's thread while readers keep running on the active model; then the switch is one
 * pointer change under a lock: runs that start afterwards get the new model, runs in progress
 * finish on the old one.  The model before the switch becomes the previous one (for
 * mdl_swap_rollback); the one previous before is retired and freed when its last session is
 * released.  A refused candidate changes nothing.  Calls that change the model are serialized.
 *
 * Sessions: each model version keeps a pool of sessions.  mdl_swap_acquire takes one from the
 * active version's pool (creating one, with options.session, when the pool is empty: the first
 * runs after a switch, or more concurrent runs than ever before) and counts a reference on the
 * version; mdl_swap_release returns it to its own version's pool.  In steady state (no switch,
 * no new peak of concurrency) acquire and release allocate nothing: a mutex lock, a pointer pop
 * or push.  A session belongs to one thread between acquire and release; its inputs hold
 * whatever the last run left (write them all before each run).
 *
 * Thread-safety: every function may be called from any thread, except mdl_swap_free (no other
 * call may be in progress, and every acquired session must have been released).
 */
#ifndef MDEPLOY_SWAP_H
#define MDEPLOY_SWAP_H

#include "mdeploy/mdeploy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mdl_swap mdl_swap;

typedef struct mdl_swap_options {
    mdl_load_options load;       /* for every model the handle loads (a call may give others);
                                    buffers are always copied (MDL_LOAD_COPY) */
    mdl_session_options session; /* for the sessions of the pools */
    bool require_selftest;       /* refuse a candidate without self-test vectors */
    bool skip_selftest;          /* do not run them (e.g. they are too slow to run here) */
} mdl_swap_options;

MDL_API mdl_swap_options mdl_swap_options_default(void);

/* Creates a handle whose first (active) model is loaded from a file or copied from a buffer and
   verified as a candidate would be (no I/O comparison).  options may be NULL. */
MDL_API mdl_status mdl_swap_create_file(const char *path, const mdl_swap_options *options,
                                        mdl_swap **out, mdl_error *err);
MDL_API mdl_status mdl_swap_create_buffer(const void *data, size_t size, const mdl_swap_options *options,
                                          mdl_swap **out, mdl_error *err);
/* Every session must have been released.  NULL is a no-op. */
MDL_API void mdl_swap_free(mdl_swap *sw);

/* Loads, verifies and switches to a candidate (see above); load may be NULL (the handle's).
   Errors: those of loading (IO, CORRUPT_MODEL, VERSION, UNSUPPORTED, ...), the self-test's
   (CORRUPT_MODEL naming the case, output and element, or the run's status), and
   INVALID_ARGUMENT for a candidate whose inputs/outputs differ or that has no vectors when they
   are required; the message starts with "candidate refused:". */
MDL_API mdl_status mdl_swap_load_file(mdl_swap *sw, const char *path, const mdl_load_options *load,
                                      mdl_error *err);
MDL_API mdl_status mdl_swap_load_buffer(mdl_swap *sw, const void *data, size_t size,
                                        const mdl_load_options *load, mdl_error *err);

/* Makes the previous model active again (and the active one previous, so a second rollback
   undoes the first).  OUT_OF_RANGE when there is no previous model. */
MDL_API mdl_status mdl_swap_rollback(mdl_swap *sw, mdl_error *err);

/* A session of the active model, to run once or many times and give back with
   mdl_swap_release.  Errors: those of mdl_session_create when the pool is empty. */
MDL_API mdl_status mdl_swap_acquire(mdl_swap *sw, mdl_session **out, mdl_error *err);
/* Gives a session back to its model's pool; a retired model is freed with its last one. */
MDL_API void mdl_swap_release(mdl_swap *sw, mdl_session *s);

/* What is active. */
typedef struct mdl_swap_info {
    uint64_t id;          /* of the active model: 1 for the first, +1 per accepted candidate */
    uint64_t previous_id; /* of the previous model, 0 when none */
    char name[64], version[64]; /* the active model's name and version (truncated) */
    char source[256];           /* its file path, or "buffer" */
    uint64_t accepted, refused, rollbacks; /* counts of candidates and rollbacks so far */
    int32_t live_models;  /* models in memory: active, previous, and retired ones still running */
} mdl_swap_info;
MDL_API mdl_status mdl_swap_info_get(mdl_swap *sw, mdl_swap_info *info);

#ifdef __cplusplus
}
#endif
#endif
