/*
 * mdeploy-serve's model repository: the versions on disk, their verification, a session pool per
 * version, canary routing and automatic rollback.  Public mdeploy API only (mdeploy.h, swap.h,
 * metrics.h, security.h, selftest.h); no HTTP here (tools/serve/serve.c is the HTTP side).
 *
 * Layout (TensorFlow Serving's): DIR/NAME/VERSION/model.mdl, VERSION a positive decimal integer.
 * Anything else under DIR is ignored (and reported once by srv_repo_poll's log).
 *
 * Versions of a model, and where requests go:
 *   - a version directory seen by srv_repo_open or srv_repo_poll is loaded and verified (the
 *     loader's structure/digest/signature checks with options.load, then its self-test vectors,
 *     required with options.require_selftest) before it serves; a refused version is FAILED
 *     (with the reason, shown by describe) and retried only when its model.mdl changes;
 *   - the stable version gets the requests that do not pin a version; when a newer version
 *     arrives and canary_percent > 0 it becomes the CANARY: that share of unpinned requests
 *     (a deterministic split, so 10% means 10 of every 100 requests) goes to it, the rest to the
 *     stable version, which stays loaded;
 *   - the canary is judged over its requests: when its error share over the last
 *     rollback_window requests exceeds rollback_error_rate, or its p99 latency over them
 *     exceeds rollback_p99_ms (0 = off), it is ROLLED_BACK (stays out of routing, kept for
 *     describe, retried only when its file changes); after promote_after successful requests
 *     it becomes stable and the old stable version is kept loaded as the previous one (instant
 *     rollback with srv_repo_rollback); older ones are unloaded when their last lease ends;
 *   - canary_percent == 0: a newer verified version becomes stable at once (TF-Serving's
 *     "latest" policy), the old stable one kept as previous;
 *   - a removed version directory is unloaded (END) when its last lease ends.
 *
 * Thread-safety: every function may be called from any thread concurrently, except
 * srv_repo_close (no other call in progress, every lease released).
 */
#ifndef MDL_SERVE_REPO_H
#define MDL_SERVE_REPO_H

#include "mdeploy/mdeploy.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv_repo srv_repo;

typedef struct srv_repo_options {
    const char *model_dir;        /* required */
    mdl_load_options load;        /* e.g. security keys; MDL_LOAD_METRICS is always added */
    mdl_session_options session;  /* for the pooled sessions (threads, limits) */
    bool require_selftest;        /* refuse a version without self-test vectors */
    int canary_percent;           /* 0..100 (see above) */
    int rollback_window;          /* requests judged (default 100); no verdict before that many */
    double rollback_error_rate;   /* default 0.05 */
    double rollback_p99_ms;       /* default 0 (off) */
    int promote_after;            /* successful canary requests before promotion (default 1000;
                                     0 = never: stays canary until rolled back or removed) */
} srv_repo_options;

srv_repo_options srv_repo_options_default(void);

/* Scans model_dir once (loading every version found) and returns the repository; an error (an
   unreadable model_dir, bad options) returns non-zero with a message in err. */
int srv_repo_open(const srv_repo_options *options, srv_repo **out, char *err, size_t cap);
void srv_repo_close(srv_repo *r);

/* Rescans model_dir (the server calls it every --poll seconds): new versions are loaded and
   verified, changed files reloaded, removed ones unloaded.  Writes one line per event ("digits
   version 3: serving as canary (10%)", "... refused: <reason>") into log (may be NULL) and
   returns the number of events. */
int srv_repo_poll(srv_repo *r, char *log, size_t cap);

/* A session lent for one request. */
typedef struct srv_lease {
    mdl_session *session;
    const char *model;   /* the model's name */
    int64_t version;     /* the version that serves this request */
    void *internal_;
} srv_lease;

/* Picks the version for a request (version > 0 pins it, 0 = routing as above) and lends one of
   its sessions.  Returns 0, or an HTTP status with a message in err: 404 unknown model or
   version (or a version that is not serving: FAILED, ROLLED_BACK, END), 503 no version of the
   model is serving, 500 a session could not be created (the mdeploy message). */
int srv_repo_acquire(srv_repo *r, const char *model, int64_t version, srv_lease *out, char *err,
                     size_t cap);

/* Gives the session back and records the outcome for the canary's verdict: ok = the run
   succeeded (requests refused before the run for the client's fault are released with
   counted = false and do not count), latency_ns = the run's time. */
void srv_repo_release(srv_repo *r, srv_lease *lease, bool counted, bool ok, uint64_t latency_ns);

/* Makes the previous version of a model stable again (manual rollback).  0 or an HTTP status
   (404 unknown model, 409 no previous version) with a message. */
int srv_repo_rollback(srv_repo *r, const char *model, char *err, size_t cap);

/* GET /v1/models/NAME: TF-Serving's {"model_version_status": [{"version": "3", "state":
   "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}, ...]} plus, per version, our
   "role" ("stable", "canary", "previous"), "requests", "errors", and the signature
   {"inputs": [{name, dtype, shape}], "outputs": [...]} (dynamic dims as -1).  NULL for an
   unknown model.  The caller frees the result with cJSON_Delete. */
cJSON *srv_repo_describe(srv_repo *r, const char *model);

/* Names of all models (for GET /v1/models): a cJSON array the caller frees. */
cJSON *srv_repo_list(srv_repo *r);

/* True when every model directory has a serving version (GET /readyz). */
bool srv_repo_ready(srv_repo *r);

/* The Prometheus text of every loaded version (mdl_metrics_prometheus, series labelled by model
   name and version) plus the repository's own gauges and counters (mdeploy_serve_versions{model,
   version,state}, mdeploy_serve_rollbacks_total{model}); returns the length as snprintf does. */
size_t srv_repo_metrics(srv_repo *r, char *buf, size_t cap);

#endif
