/*
 * mdeploy-serve: an HTTP inference server over libmicrohttpd (issue #19).  Public mdeploy API
 * only.  The model repository (versions, verification, session pools, canary, rollback) is
 * tools/serve/repo.c; request bodies are tools/serve/request.c; this file is the HTTP side:
 * options, endpoints, admission (a bounded queue: 503 with Retry-After when full), body limits,
 * timeouts, and the thread that polls the model directory.
 *
 * Threads: libmicrohttpd runs one thread per connection (up to --max-connections); a predict
 * request holds one of --threads inference slots while it runs, waits for one at most
 * --queue-timeout ms, and at most --queue requests wait at once (then 503 at once).
 */
#include "repo.h"
#include "request.h"

#include "../seal_util.h"
#include "../tool_util.h"
#include "mdeploy/mdeploy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- configuration ------------------------------------------------------------------------ */

typedef struct config {
    const char *model_dir;
    const char *address;
    int port;
    int threads;         /* concurrent inferences */
    int session_threads; /* threads per run */
    int queue;           /* requests waiting for a slot, beyond the running ones */
    int queue_timeout_ms;
    size_t max_body;
    int timeout_s; /* idle connection timeout */
    int max_connections;
    double poll_s;
} config;

static config cfg;
static srv_repo *repo;

/* ---- counters (GET /metrics) -------------------------------------------------------------- */

static atomic_uint_fast64_t http_codes[600];
static atomic_int in_system;         /* predict requests waiting or running */
static atomic_uint_fast64_t rejected; /* 503: queue full or waited too long */
static sem_t slots;

/* ---- responses ---------------------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, void *body, size_t len, const char *ctype,
                             const char *hname, const char *hval) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (hname) MHD_add_response_header(r, hname, hval);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    if (status < 600) atomic_fetch_add(&http_codes[status], 1);
    return ok;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return MHD_NO;
    return reply(c, status, s, strlen(s), "application/json", NULL, NULL);
}

static enum MHD_Result reply_error2(struct MHD_Connection *c, unsigned status, const char *msg, const char *hname,
                                    const char *hval) {
    size_t n;
    char *s = req_error_json(msg, &n);
    if (!s) return MHD_NO;
    return reply(c, status, s, n, "application/json", hname, hval);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return reply_error2(c, status, msg, NULL, NULL);
}

/* ---- routes ------------------------------------------------------------------------------- */

typedef enum route_kind {
    R_NONE,
    R_HEALTH,
    R_READY,
    R_METRICS,
    R_LIST,
    R_DESCRIBE,
    R_PREDICT,
    R_ROLLBACK
} route_kind;

typedef struct route {
    route_kind kind;
    char model[256];
    int64_t version; /* 0: none given */
} route;

/* A positive decimal version of at most 18 digits; -1 otherwise. */
static int64_t parse_version(const char *s, size_t n) {
    if (n == 0 || n > 18) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v > 0 ? v : -1;
}

/* Parses url into r; returns false (with a message) for a malformed /v1/models/... path. */
static bool parse_route(const char *url, route *r, char *err, size_t cap) {
    memset(r, 0, sizeof *r);
    if (!strcmp(url, "/healthz")) r->kind = R_HEALTH;
    else if (!strcmp(url, "/readyz")) r->kind = R_READY;
    else if (!strcmp(url, "/metrics")) r->kind = R_METRICS;
    else if (!strcmp(url, "/v1/models") || !strcmp(url, "/v1/models/")) r->kind = R_LIST;
    else if (!strncmp(url, "/v1/models/", 11)) {
        const char *p = url + 11;
        const char *colon = strchr(p, ':');
        const char *end = colon ? colon : p + strlen(p);
        const char *slash = memchr(p, '/', (size_t)(end - p));
        size_t nlen = (size_t)((slash ? slash : end) - p);
        if (nlen == 0 || nlen >= sizeof r->model) {
            snprintf(err, cap, "malformed model name in '%.200s'", url);
            return false;
        }
        memcpy(r->model, p, nlen);
        if (slash) {
            if (strncmp(slash, "/versions/", 10) ||
                (r->version = parse_version(slash + 10, (size_t)(end - slash - 10))) < 0) {
                snprintf(err, cap, "malformed path '%.200s' (expected /v1/models/NAME[/versions/N][:predict])", url);
                return false;
            }
        }
        if (!colon) r->kind = R_DESCRIBE;
        else if (!strcmp(colon, ":predict")) r->kind = R_PREDICT;
        else if (!strcmp(colon, ":rollback") && !slash) r->kind = R_ROLLBACK;
        else {
            snprintf(err, cap, "unknown method '%.64s' (:predict%s)", colon, slash ? "" : " or :rollback");
            return false;
        }
    }
    if (r->kind == R_NONE) snprintf(err, cap, "no such endpoint: '%.200s'", url);
    return r->kind != R_NONE;
}

/* ---- GET endpoints ------------------------------------------------------------------------ */

static enum MHD_Result get_metrics(struct MHD_Connection *c) {
    size_t cap = 1 << 16;
    char *buf = NULL;
    for (;;) {
        char *nb = realloc(buf, cap);
        if (!nb) {
            free(buf);
            return reply_error(c, 500, "out of memory");
        }
        buf = nb;
        size_t n = srv_repo_metrics(repo, buf, cap);
        size_t extra = 4096;
        if (n + extra < cap) {
            n += (size_t)snprintf(buf + n, cap - n,
                                  "# HELP mdeploy_serve_http_responses_total HTTP responses by status code.\n"
                                  "# TYPE mdeploy_serve_http_responses_total counter\n");
            for (int code = 100; code < 600; code++) {
                uint64_t v = atomic_load(&http_codes[code]);
                if (v && n < cap)
                    n += (size_t)snprintf(buf + n, cap - n, "mdeploy_serve_http_responses_total{code=\"%d\"} %llu\n",
                                          code, (unsigned long long)v);
            }
            if (n < cap)
                n += (size_t)snprintf(
                    buf + n, cap - n,
                    "# HELP mdeploy_serve_requests_in_flight Predict requests waiting for a slot or running.\n"
                    "# TYPE mdeploy_serve_requests_in_flight gauge\n"
                    "mdeploy_serve_requests_in_flight %d\n"
                    "# HELP mdeploy_serve_rejected_total Predict requests refused with 503 (queue full or timed out).\n"
                    "# TYPE mdeploy_serve_rejected_total counter\n"
                    "mdeploy_serve_rejected_total %llu\n",
                    atomic_load(&in_system), (unsigned long long)atomic_load(&rejected));
            if (n < cap) return reply(c, 200, buf, n, "text/plain; version=0.0.4; charset=utf-8", NULL, NULL);
        }
        cap = n + extra + 1;
    }
}

static enum MHD_Result get_describe(struct MHD_Connection *c, const route *r) {
    cJSON *d = srv_repo_describe(repo, r->model);
    if (!d) return reply_error(c, 404, "unknown model '%s'", r->model);
    if (r->version) { /* only that version's entry */
        cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "model_version_status");
        char want[32];
        snprintf(want, sizeof want, "%lld", (long long)r->version);
        cJSON *e = list ? list->child : NULL;
        while (e) {
            cJSON *next = e->next;
            cJSON *v = cJSON_GetObjectItemCaseSensitive(e, "version");
            if (!cJSON_IsString(v) || strcmp(v->valuestring, want)) cJSON_Delete(cJSON_DetachItemViaPointer(list, e));
            e = next;
        }
        if (!list || !list->child) {
            cJSON_Delete(d);
            return reply_error(c, 404, "model '%s' has no version %lld", r->model, (long long)r->version);
        }
    }
    return reply_json(c, 200, d);
}

/* ---- predict ------------------------------------------------------------------------------ */

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Whether the client asks for a .npy answer (Accept: application/x-npy), a JSON one, or either. */
static bool wants_npy(struct MHD_Connection *c, bool npy_in) {
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    if (a && strstr(a, "application/x-npy")) return true;
    if (a && strstr(a, "application/json")) return false;
    return npy_in;
}

static enum MHD_Result predict(struct MHD_Connection *c, const route *r, const char *body, size_t len) {
    char err[1024];
    bool npy;
    const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    int st = req_content_format(ctype, &npy, err, sizeof err);
    if (st) return reply_error(c, (unsigned)st, "%s", err);

    /* admission: at most threads + queue requests in the system, and a bounded wait */
    if (atomic_fetch_add(&in_system, 1) >= cfg.threads + cfg.queue) {
        atomic_fetch_sub(&in_system, 1);
        atomic_fetch_add(&rejected, 1);
        snprintf(err, sizeof err, "server busy: %d requests running and %d waiting; retry later", cfg.threads,
                 cfg.queue);
        return reply_error2(c, 503, err, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += cfg.queue_timeout_ms / 1000;
    deadline.tv_nsec += (long)(cfg.queue_timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
    int w;
    while ((w = sem_timedwait(&slots, &deadline)) && errno == EINTR) {
    }
    if (w) {
        atomic_fetch_sub(&in_system, 1);
        atomic_fetch_add(&rejected, 1);
        snprintf(err, sizeof err, "server busy: no inference slot free within %d ms; retry later",
                 cfg.queue_timeout_ms);
        return reply_error2(c, 503, err, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    }

    enum MHD_Result res;
    srv_lease lease;
    st = srv_repo_acquire(repo, r->model, r->version, &lease, err, sizeof err);
    if (st) {
        res = reply_error2(c, (unsigned)st, err, st == 503 ? MHD_HTTP_HEADER_RETRY_AFTER : NULL, "1");
        goto out;
    }
    req_inputs in;
    st = req_parse(mdl_session_model(lease.session), npy, body, len, &in, err, sizeof err);
    if (!st) st = req_apply(lease.session, &in, err, sizeof err);
    req_format format = in.format;
    req_inputs_free(&in);
    char version[32]; /* the lease's fields are not ours after the release */
    snprintf(version, sizeof version, "%lld", (long long)lease.version);
    if (st) { /* the client's fault (4xx) does not count against the version */
        res = reply_error(c, (unsigned)st, "model '%s' version %s: %s", r->model, version, err);
        srv_repo_release(repo, &lease, st >= 500, false, 0);
        goto out;
    }
    uint64_t t0 = now_ns();
    mdl_status rs = mdl_session_run(lease.session);
    uint64_t dt = now_ns() - t0;
    if (rs != MDL_OK) {
        res = reply_error(c, rs == MDL_OUT_OF_RANGE || rs == MDL_INVALID_ARGUMENT ? 400 : 500,
                          "model '%s' version %s: the run failed: %s", r->model, version,
                          mdl_session_message(lease.session));
        srv_repo_release(repo, &lease, true, false, dt);
        goto out;
    }
    req_body out;
    st = req_write_outputs(lease.session, format, wants_npy(c, npy), &out, err, sizeof err);
    srv_repo_release(repo, &lease, st >= 500 || !st, !st, dt);
    if (st) res = reply_error(c, (unsigned)st, "%s", err);
    else res = reply(c, 200, out.data, out.len, out.content_type, "X-Model-Version", version);
out:
    sem_post(&slots);
    atomic_fetch_sub(&in_system, 1);
    return res;
}

/* ---- the access handler ------------------------------------------------------------------- */

typedef struct conn_state {
    route route;
    char *body;
    size_t len, cap;
    bool too_large;
} conn_state;

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    conn_state *s = *con_cls;
    if (s) {
        free(s->body);
        free(s);
        *con_cls = NULL;
    }
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *http_version, const char *upload, size_t *upload_size, void **con_cls) {
    conn_state *s = *con_cls;
    char err[512];
    if (!s) { /* first call: the headers are in, the body not yet */
        route r;
        if (!parse_route(url, &r, err, sizeof err)) return reply_error(c, 404, "%s", err);
        bool post = r.kind == R_PREDICT || r.kind == R_ROLLBACK;
        if (strcmp(method, post ? "POST" : "GET") && !(!post && !strcmp(method, "HEAD"))) {
            struct MHD_Response *resp;
            char *e = req_error_json(post ? "method not allowed: use POST" : "method not allowed: use GET", NULL);
            if (!e || !(resp = MHD_create_response_from_buffer(strlen(e), e, MHD_RESPMEM_MUST_FREE))) {
                free(e);
                return MHD_NO;
            }
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, post ? "POST" : "GET, HEAD");
            enum MHD_Result ok = MHD_queue_response(c, 405, resp);
            MHD_destroy_response(resp);
            atomic_fetch_add(&http_codes[405], 1);
            return ok;
        }
        if (r.kind == R_PREDICT) {
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl) {
                char *end;
                errno = 0;
                unsigned long long n = strtoull(cl, &end, 10);
                if (errno || end == cl || n > cfg.max_body)
                    return reply_error(c, 413, "body too large: %s bytes declared, the limit is %zu (--max-body)", cl,
                                       cfg.max_body);
            }
        }
        if (!(s = calloc(1, sizeof *s))) return MHD_NO;
        s->route = r;
        *con_cls = s;
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        size_t n = *upload_size;
        *upload_size = 0;
        if (s->too_large || s->route.kind != R_PREDICT) return MHD_YES; /* read and dropped */
        if (n > cfg.max_body - s->len) {
            s->too_large = true;
            free(s->body);
            s->body = NULL;
            s->len = s->cap = 0;
            return MHD_YES;
        }
        if (s->len + n > s->cap) {
            size_t ncap = s->cap ? s->cap : 4096;
            while (ncap < s->len + n) ncap *= 2;
            if (ncap > cfg.max_body) ncap = cfg.max_body;
            char *nb = realloc(s->body, ncap);
            if (!nb) return MHD_NO;
            s->body = nb;
            s->cap = ncap;
        }
        memcpy(s->body + s->len, upload, n);
        s->len += n;
        return MHD_YES;
    }
    /* the whole request is in */
    const route *r = &s->route;
    switch (r->kind) {
    case R_HEALTH: {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "status", "ok");
        return reply_json(c, 200, j);
    }
    case R_READY: {
        bool ready = srv_repo_ready(repo);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ready", ready);
        if (!ready) cJSON_AddStringToObject(j, "reason", "a model has no serving version yet (GET /v1/models/NAME)");
        return reply_json(c, ready ? 200 : 503, j);
    }
    case R_METRICS: return get_metrics(c);
    case R_LIST: {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToObject(j, "models", srv_repo_list(repo));
        return reply_json(c, 200, j);
    }
    case R_DESCRIBE: return get_describe(c, r);
    case R_ROLLBACK: {
        int st = srv_repo_rollback(repo, r->model, err, sizeof err);
        if (st) return reply_error(c, (unsigned)st, "%s", err);
        return get_describe(c, r);
    }
    case R_PREDICT:
        if (s->too_large)
            return reply_error(c, 413, "body too large: more than %zu bytes (--max-body)", cfg.max_body);
        return predict(c, r, s->body, s->len);
    default: return reply_error(c, 404, "no such endpoint");
    }
}

/* ---- the polling thread ------------------------------------------------------------------- */

static pthread_mutex_t poll_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t poll_cv = PTHREAD_COND_INITIALIZER;
static bool stopping;

static void *poller(void *arg) {
    static char log[16384];
    pthread_mutex_lock(&poll_mu);
    while (!stopping) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        long ns = (long)(cfg.poll_s * 1e9);
        t.tv_sec += ns / 1000000000L;
        t.tv_nsec += ns % 1000000000L;
        if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&poll_cv, &poll_mu, &t);
        if (stopping) break;
        pthread_mutex_unlock(&poll_mu);
        log[0] = 0;
        if (srv_repo_poll(repo, log, sizeof log) > 0 && log[0]) {
            fputs(log, stderr);
            if (log[strlen(log) - 1] != '\n') fputc('\n', stderr);
        }
        pthread_mutex_lock(&poll_mu);
    }
    pthread_mutex_unlock(&poll_mu);
    return NULL;
}

/* ---- command line ------------------------------------------------------------------------- */

enum {
    O_SESSION_THREADS = 256,
    O_QUEUE,
    O_QUEUE_TIMEOUT,
    O_MAX_BODY,
    O_TIMEOUT,
    O_MAX_CONN,
    O_POLL,
    O_CANARY,
    O_RB_WINDOW,
    O_RB_ERR,
    O_RB_P99,
    O_PROMOTE,
    O_SELFTEST,
    O_PUBKEY,
    O_DECKEY
};
static const tool_opt opts[] = {
    {"model-dir", 'm', "DIR", "the model repository (required): DIR/NAME/VERSION/model.mdl"},
    {"port", 'p', "N", "TCP port (default 8500; 0 = any free port, printed at start)"},
    {"address", 'a', "ADDR", "address to listen on, IPv4 or IPv6 (default 0.0.0.0)"},
    {"threads", 't', "N", "inferences run at once (default: the number of CPUs)"},
    {"session-threads", O_SESSION_THREADS, "N", "threads per inference (default 1)"},
    {"queue", O_QUEUE, "N", "requests waiting for an inference slot before 503 (default 64)"},
    {"queue-timeout", O_QUEUE_TIMEOUT, "MS", "longest wait for a slot before 503 (default 10000)"},
    {"max-body", O_MAX_BODY, "BYTES", "largest request body, K/M/G suffixes allowed (default 64M); 413 above"},
    {"timeout", O_TIMEOUT, "SEC", "idle connection timeout (default 30)"},
    {"max-connections", O_MAX_CONN, "N", "open connections at once (default 256)"},
    {"poll", O_POLL, "SEC", "rescan DIR for new/changed/removed versions every SEC seconds\n(default 2; 0 = never)"},
    {"canary", O_CANARY, "PCT", "share of requests sent to a new version before it is promoted\n(default 0: a new version serves at once)"},
    {"rollback-window", O_RB_WINDOW, "N", "canary requests judged for rollback (default 100)"},
    {"rollback-error-rate", O_RB_ERR, "R", "roll the canary back above this error share (default 0.05)"},
    {"rollback-p99-ms", O_RB_P99, "MS", "... or above this p99 latency (default 0: off)"},
    {"promote-after", O_PROMOTE, "N", "successful canary requests before promotion (default 1000; 0 = never)"},
    {"require-selftest", O_SELFTEST, NULL, "refuse versions without self-test vectors"},
    {"public-key", O_PUBKEY, "FILE", "accept only models signed by this key (repeatable)"},
    {"decryption-key", O_DECKEY, "FILE", "key of encrypted models"},
};
static const tool_cli cli = {
    "mdeploy-serve",
    "Serves every model of DIR (TensorFlow Serving's layout: DIR/NAME/VERSION/model.mdl) over HTTP.\n"
    "Endpoints: POST /v1/models/NAME[/versions/V]:predict (JSON {\"instances\": ...} or {\"inputs\": ...},\n"
    "or .npy with Content-Type: application/x-npy), GET /v1/models, GET /v1/models/NAME[/versions/V],\n"
    "POST /v1/models/NAME:rollback, GET /healthz, GET /readyz, GET /metrics (Prometheus).",
    "--model-dir DIR [options]", opts, TOOL_NOPTS(opts),
    "mdeploy-serve --model-dir models --port 8500 --canary 10\n"
    "curl -d '{\"instances\": [[1, 2, 3, 4]]}' localhost:8500/v1/models/mlp:predict",
};

static bool parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

static bool parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-') return false;
    unsigned long long mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1ull << 10, end++;
    else if (*end == 'm' || *end == 'M') mul = 1ull << 20, end++;
    else if (*end == 'g' || *end == 'G') mul = 1ull << 30, end++;
    if (*end || v == 0 || v > (1ull << 40) / mul) return false;
    *out = (size_t)(v * mul);
    return true;
}

int main(int argc, char **argv) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg = (config){.address = "0.0.0.0",
                   .port = 8500,
                   .threads = ncpu > 0 ? (int)ncpu : 1,
                   .session_threads = 1,
                   .queue = 64,
                   .queue_timeout_ms = 10000,
                   .max_body = (size_t)64 << 20,
                   .timeout_s = 30,
                   .max_connections = 256,
                   .poll_s = 2};
    srv_repo_options ro = srv_repo_options_default();
    static seal_keys keys;
    bool use_keys = false;
    int c;
    long v;
    double d;
#define BAD(opt)                                                                                               \
    do {                                                                                                       \
        fprintf(stderr, "mdeploy-serve: bad value '%s' for --%s (see --help)\n", tool_optarg, opt);         \
        return 2;                                                                                              \
    } while (0)
    const char *stray = NULL;
    while ((c = tool_getopt(&cli, argc, argv)) != -1) {
        const char *optarg = tool_optarg;
        switch (c) {
        case 'm': cfg.model_dir = optarg; break;
        case 'p':
            if (!parse_int(optarg, 0, 65535, &v)) BAD("port");
            cfg.port = (int)v;
            break;
        case 'a': cfg.address = optarg; break;
        case 't':
            if (!parse_int(optarg, 1, 4096, &v)) BAD("threads");
            cfg.threads = (int)v;
            break;
        case O_SESSION_THREADS:
            if (!parse_int(optarg, 1, MDL_MAX_THREADS, &v)) BAD("session-threads");
            cfg.session_threads = (int)v;
            break;
        case O_QUEUE:
            if (!parse_int(optarg, 0, 1000000, &v)) BAD("queue");
            cfg.queue = (int)v;
            break;
        case O_QUEUE_TIMEOUT:
            if (!parse_int(optarg, 0, 3600000, &v)) BAD("queue-timeout");
            cfg.queue_timeout_ms = (int)v;
            break;
        case O_MAX_BODY:
            if (!parse_size(optarg, &cfg.max_body)) BAD("max-body");
            break;
        case O_TIMEOUT:
            if (!parse_int(optarg, 1, 86400, &v)) BAD("timeout");
            cfg.timeout_s = (int)v;
            break;
        case O_MAX_CONN:
            if (!parse_int(optarg, 1, 65536, &v)) BAD("max-connections");
            cfg.max_connections = (int)v;
            break;
        case O_POLL:
            if (!parse_double(optarg, 0, 86400, &cfg.poll_s)) BAD("poll");
            break;
        case O_CANARY:
            if (!parse_int(optarg, 0, 100, &v)) BAD("canary");
            ro.canary_percent = (int)v;
            break;
        case O_RB_WINDOW:
            if (!parse_int(optarg, 1, 1000000, &v)) BAD("rollback-window");
            ro.rollback_window = (int)v;
            break;
        case O_RB_ERR:
            if (!parse_double(optarg, 0, 1, &d)) BAD("rollback-error-rate");
            ro.rollback_error_rate = d;
            break;
        case O_RB_P99:
            if (!parse_double(optarg, 0, 1e9, &d)) BAD("rollback-p99-ms");
            ro.rollback_p99_ms = d;
            break;
        case O_PROMOTE:
            if (!parse_int(optarg, 0, 1000000000, &v)) BAD("promote-after");
            ro.promote_after = (int)v;
            break;
        case O_SELFTEST: ro.require_selftest = true; break;
        case O_PUBKEY:
            if (!seal_add_public(&keys, optarg, "mdeploy-serve")) return 2;
            use_keys = true;
            break;
        case O_DECKEY:
            if (!seal_set_decryption(&keys, optarg, "mdeploy-serve")) return 2;
            use_keys = true;
            break;
        case 1: /* reported after the options (an unknown option is named first) */
            if (!stray) stray = optarg;
            break;
        default: return 2;
        }
    }
#undef BAD
    if (stray) {
        fprintf(stderr, "mdeploy-serve: unexpected argument '%s' (the models come from --model-dir; see "
                        "mdeploy-serve --help)\n", stray);
        return 2;
    }
    if (!cfg.model_dir) {
        fprintf(stderr, "mdeploy-serve: --model-dir DIR is required (see --help)\n");
        return 2;
    }

    /* SIGINT/SIGTERM end the server (waited for below); every thread started from here on has
       them blocked */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    signal(SIGPIPE, SIG_IGN);

    ro.model_dir = cfg.model_dir;
    ro.session.threads = cfg.session_threads;
    if (use_keys) ro.load.security = seal_security(&keys);
    char err[1024];
    if (srv_repo_open(&ro, &repo, err, sizeof err)) {
        fprintf(stderr, "mdeploy-serve: %s\n", err);
        return 1;
    }
    sem_init(&slots, 0, (unsigned)cfg.threads);

    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } addr;
    memset(&addr, 0, sizeof addr);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, cfg.address, &addr.v4.sin_addr) == 1) {
        addr.v4.sin_family = AF_INET;
        addr.v4.sin_port = htons((uint16_t)cfg.port);
    } else if (inet_pton(AF_INET6, cfg.address, &addr.v6.sin6_addr) == 1) {
        addr.v6.sin6_family = AF_INET6;
        addr.v6.sin6_port = htons((uint16_t)cfg.port);
        flags |= MHD_USE_IPv6;
    } else {
        fprintf(stderr, "mdeploy-serve: --address '%s' is not an IPv4 or IPv6 address\n", cfg.address);
        srv_repo_close(repo);
        return 2;
    }
    struct MHD_Daemon *daemon = MHD_start_daemon(
        flags, (uint16_t)cfg.port, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg.timeout_s, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    if (!daemon) {
        fprintf(stderr, "mdeploy-serve: cannot listen on %s port %d (in use? permission?)\n", cfg.address, cfg.port);
        srv_repo_close(repo);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? info->port : cfg.port;
    pthread_t poll_thread;
    bool polling = cfg.poll_s > 0 && !pthread_create(&poll_thread, NULL, poller, NULL);

    cJSON *models = srv_repo_list(repo);
    char *names = models ? cJSON_PrintUnformatted(models) : NULL;
    printf("mdeploy-serve %s: serving %d model%s %s from %s on http://%s:%d (%d inference slots, queue %d)\n",
           mdl_version(), cJSON_GetArraySize(models), cJSON_GetArraySize(models) == 1 ? "" : "s", names ? names : "[]",
           cfg.model_dir, cfg.address, port, cfg.threads, cfg.queue);
    fflush(stdout);
    cJSON_free(names);
    cJSON_Delete(models);

    int sig = 0;
    sigwait(&stop_set, &sig);
    fprintf(stderr, "mdeploy-serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    MHD_stop_daemon(daemon);
    if (polling) {
        pthread_mutex_lock(&poll_mu);
        stopping = true;
        pthread_cond_signal(&poll_cv);
        pthread_mutex_unlock(&poll_mu);
        pthread_join(poll_thread, NULL);
    }
    srv_repo_close(repo);
    sem_destroy(&slots);
    return 0;
}
