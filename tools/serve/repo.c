/*
 * mdeploy-serve's model repository (tools/serve/repo.h): versions on disk, their verification, a
 * session pool per loaded version, canary routing, verdicts and rollback.
 *
 * Structure.  A model (NAME directory) has versions (VERSION directories), each with at most one
 * loaded instance: the verified model, the file's bytes it runs in place from, and its pool of
 * sessions.  A lease points at an instance, not at a version, so a version can be replaced (its
 * file changed), demoted or removed while requests still run on it: the instance is detached
 * (moved to the repository's retired list) and freed by the release of its last lease.
 *
 * Which versions are loaded: the stable one, the canary, the previous one; nothing else.  When a
 * model has no stable version (at open, or when its stable directory was removed and there is no
 * previous version to take over) the newest version that verifies becomes stable; when it has no
 * previous one, the newest one below the stable version that verifies is loaded as previous.  A
 * new version (or a refused one whose file changed) newer than the stable version and the canary
 * is a candidate: stable at once with canary_percent 0 (the old stable one previous), the canary
 * otherwise (replacing an older canary still on trial).  Events of srv_repo_open are returned by
 * the first srv_repo_poll.
 *
 * Locks: `lock` guards every field below; it is never held while a file is read, a model is
 * loaded or self-tested, or a session is created or run.  `poll_lock` serializes scans (open,
 * poll): a scan decides under `lock`, loads without it, and installs under it again.
 *
 * Describe's roles: "stable", "canary", "previous" (the serving ones; state AVAILABLE), and for
 * the others "failed" (refused at load), "rolled_back" (a canary's verdict), "idle" (on disk, not
 * loaded: older than the previous one, or retired after a promotion); state "END" for them.
 */
#include "repo.h"

#include "mdeploy/metrics.h"
#include "mdeploy/selftest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { ROLE_NONE, ROLE_STABLE, ROLE_CANARY, ROLE_PREVIOUS };
enum { ST_IDLE, ST_AVAILABLE, ST_FAILED, ST_ROLLED_BACK };

#define MAX_FILE_BYTES ((size_t)1 << 34) /* 16 GiB: refuse anything larger before reading it */
#define MAX_WINDOW 1000000
#define EVENTS_CAP (64 * 1024)

/* What a model.mdl was when last looked at; all zero: no file. */
typedef struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} file_id;

typedef struct version version;

typedef struct instance {
    mdl_model *model;
    void *bytes; /* the file, which the model uses in place */
    version *ver; /* NULL once detached (retired) */
    mdl_session **pool;
    int npool, cappool;
    int leases;
    struct instance *next; /* in the retired list */
} instance;

struct version {
    int64_t number;
    struct model_entry *owner;
    int role, state;
    instance *inst;
    file_id id;           /* the file of the last load attempt */
    bool tried;           /* a load was attempted on `id` */
    mdl_status code;      /* why it failed (ST_FAILED) */
    char reason[400];     /* ST_FAILED / ST_ROLLED_BACK */
    char note[200];       /* the loader's note of the loaded file */
    cJSON *signature;     /* of the last loaded file */
    char mdl_name[64], mdl_version[64];
    uint64_t requests, errors; /* counted requests of the current instance */
    uint64_t canary_ok;        /* successful requests while canary */
    /* the verdict window: the last win_len counted requests while canary */
    uint8_t *win_ok;
    uint64_t *win_ns;
    int win_len, win_pos;
};

typedef struct model_entry {
    char *name;
    bool on_disk;
    version **vers; /* sorted by number */
    int nvers, capvers;
    version *stable, *canary, *previous;
    uint64_t route;      /* unpinned requests routed (the canary split's counter) */
    uint64_t rollbacks;
} model_entry;

struct srv_repo {
    srv_repo_options o;
    char *dir;
    pthread_mutex_t lock, poll_lock;
    model_entry **models;
    int nmodels, capmodels;
    instance *retired;
    char *events; /* lines not yet returned by srv_repo_poll */
    size_t nevents_bytes;
    int nevents;
    char **ignored; /* paths already reported as ignored */
    int nignored, capignored;
};

/* ---- small helpers -------------------------------------------------------------------------- */

static void set_err(char *err, size_t cap, const char *fmt, ...) {
    if (!err || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

static bool grow(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int n = *cap ? *cap * 2 : 8;
    while (n < need) n *= 2;
    void *p = realloc(*arr, (size_t)n * elem);
    if (!p) return false;
    *arr = p;
    *cap = n;
    return true;
}

/* Queues one log line (under lock). */
static void event(srv_repo *r, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = strlen(line);
    line[len++] = '\n';
    r->nevents++;
    if (r->nevents_bytes + len + 1 > EVENTS_CAP) return; /* counted, text dropped */
    char *p = realloc(r->events, r->nevents_bytes + len + 1);
    if (!p) return;
    r->events = p;
    memcpy(p + r->nevents_bytes, line, len);
    r->nevents_bytes += len;
    p[r->nevents_bytes] = 0;
}

static const char *role_name(const version *v) {
    switch (v->role) {
    case ROLE_STABLE: return "stable";
    case ROLE_CANARY: return "canary";
    case ROLE_PREVIOUS: return "previous";
    default: break;
    }
    return v->state == ST_FAILED ? "failed" : v->state == ST_ROLLED_BACK ? "rolled_back" : "idle";
}

/* TF-Serving's canonical error codes for why a version does not serve. */
static const char *error_code(const version *v) {
    if (v->state == ST_ROLLED_BACK) return "ABORTED";
    if (v->state != ST_FAILED) return "OK";
    switch (v->code) {
    case MDL_IO: return "NOT_FOUND";
    case MDL_CORRUPT_MODEL: return "DATA_LOSS";
    case MDL_UNSUPPORTED: return "UNIMPLEMENTED";
    case MDL_VERSION: return "FAILED_PRECONDITION";
    case MDL_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case MDL_OUT_OF_MEMORY: case MDL_LIMIT: return "RESOURCE_EXHAUSTED";
    default: return "UNKNOWN";
    }
}

/* A positive decimal integer without sign or spaces (leading zeros allowed: "0003" is 3). */
static bool parse_version(const char *s, int64_t *out) {
    if (!*s) return false;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        if (v > (INT64_MAX - (*p - '0')) / 10) return false;
        v = v * 10 + (*p - '0');
    }
    if (v <= 0) return false;
    *out = v;
    return true;
}

static bool same_id(const file_id *a, const file_id *b) {
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static void stat_id(const struct stat *st, file_id *id) {
    memset(id, 0, sizeof *id);
    id->dev = st->st_dev;
    id->ino = st->st_ino;
    id->size = st->st_size;
    id->mtime = st->st_mtim;
}

/* ---- instances ------------------------------------------------------------------------------ */

static void instance_free(instance *in) {
    if (!in) return;
    for (int i = 0; i < in->npool; i++) mdl_session_free(in->pool[i]);
    free(in->pool);
    mdl_model_free(in->model);
    free(in->bytes);
    free(in);
}

/* Moves a version's instance to the retired list (freed with its last lease), under lock.
   Returns an instance to free after unlocking (no lease out), or NULL. */
static instance *detach(srv_repo *r, version *v) {
    instance *in = v->inst;
    if (!in) return NULL;
    v->inst = NULL;
    in->ver = NULL;
    if (in->leases == 0) return in;
    in->next = r->retired;
    r->retired = in;
    return NULL;
}

/* A list of instances to free once the lock is dropped. */
typedef struct to_free {
    instance *items[16];
    int n;
    struct to_free *more;
} to_free;

static void defer(to_free *f, instance *in) {
    if (!in) return;
    while (f->n == 16) {
        if (!f->more) {
            f->more = calloc(1, sizeof *f->more);
            if (!f->more) { /* cannot defer: free now (the lock only delays readers) */
                instance_free(in);
                return;
            }
        }
        f = f->more;
    }
    f->items[f->n++] = in;
}

static void free_deferred(to_free *f) {
    for (int i = 0; i < f->n; i++) instance_free(f->items[i]);
    to_free *m = f->more;
    while (m) {
        for (int i = 0; i < m->n; i++) instance_free(m->items[i]);
        to_free *next = m->more;
        free(m);
        m = next;
    }
}

/* ---- signature ------------------------------------------------------------------------------ */

static cJSON *tensor_json(const mdl_tensor_info *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "dtype", mdl_dtype_name(t->dtype));
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; d < t->rank; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->dims[d]));
    return o;
}

static cJSON *signature_json(const mdl_model *m) {
    cJSON *sig = cJSON_CreateObject();
    cJSON *ins = cJSON_AddArrayToObject(sig, "inputs");
    cJSON *outs = cJSON_AddArrayToObject(sig, "outputs");
    mdl_tensor_info t;
    for (int i = 0; i < mdl_model_input_count(m); i++)
        if (mdl_model_input_info(m, i, &t) == MDL_OK) cJSON_AddItemToArray(ins, tensor_json(&t));
    for (int i = 0; i < mdl_model_output_count(m); i++)
        if (mdl_model_output_info(m, i, &t) == MDL_OK) cJSON_AddItemToArray(outs, tensor_json(&t));
    return sig;
}

/* ---- loading (no lock held) ----------------------------------------------------------------- */

/* Reads path into a 64-byte aligned buffer (the model runs from it in place: a file rewritten
   later cannot change or truncate what serves) and fills *id from the same descriptor. */
static mdl_status read_file(const char *path, void **out, size_t *size, file_id *id, char *msg, size_t cap) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(msg, cap, "cannot open %s: %s", path, strerror(errno));
        /* a missing file is retried when it appears (its id changes); any other failure (out of
           descriptors, permissions) at the next scan */
        return errno == ENOENT ? MDL_IO : MDL_INTERNAL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(msg, cap, "%s is not a regular file", path);
        close(fd);
        return MDL_IO;
    }
    stat_id(&st, id);
    if ((uint64_t)st.st_size > MAX_FILE_BYTES) {
        set_err(msg, cap, "%s: %lld bytes, above the %zu-byte limit", path, (long long)st.st_size,
                MAX_FILE_BYTES);
        close(fd);
        return MDL_LIMIT;
    }
    size_t n = (size_t)st.st_size;
    void *buf = aligned_alloc(64, (n + 63) & ~(size_t)63 ? (n + 63) & ~(size_t)63 : 64);
    if (!buf) {
        close(fd);
        set_err(msg, cap, "%s: out of memory for %zu bytes", path, n);
        return MDL_OUT_OF_MEMORY;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, (char *)buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    if (got != n) {
        free(buf);
        set_err(msg, cap, "%s: read %zu of %zu bytes", path, got, n);
        return MDL_IO;
    }
    *out = buf;
    *size = n;
    return MDL_OK;
}

typedef struct load_result {
    instance *inst; /* NULL: refused */
    file_id id;
    bool transient; /* refused for a reason of this host (memory, descriptors): retried at the next scan */
    mdl_status code;
    char reason[400];
    char note[200];
    cJSON *signature;
    char mdl_name[64], mdl_version[64];
} load_result;

/* Loads and verifies path: the loader's checks with options.load (+ metrics), then the
   self-test vectors (required with require_selftest). */
static void load_version(const srv_repo *r, const char *path, load_result *res) {
    memset(res, 0, sizeof *res);
    void *bytes;
    size_t size;
    res->code = read_file(path, &bytes, &size, &res->id, res->reason, sizeof res->reason);
    if (res->code == MDL_INTERNAL) {
        res->code = MDL_IO;
        res->transient = true;
    }
    if (res->code) {
        res->transient |= res->code == MDL_OUT_OF_MEMORY;
        return;
    }
    mdl_load_options lo = r->o.load;
    lo.flags |= MDL_LOAD_METRICS;
    lo.flags &= ~(uint32_t)MDL_LOAD_COPY;
    mdl_model *m;
    mdl_error err;
    mdl_status st = mdl_model_load_buffer(bytes, size, &lo, &m, &err);
    if (st) {
        res->code = st;
        res->transient = st == MDL_OUT_OF_MEMORY;
        snprintf(res->reason, sizeof res->reason, "%s", err.msg);
        free(bytes);
        return;
    }
    int cases = mdl_model_selftest_count(m);
    if (cases == 0 && r->o.require_selftest) {
        res->code = MDL_INVALID_ARGUMENT;
        snprintf(res->reason, sizeof res->reason,
                 "no self-test vectors (required: convert with --selftest-from)");
        goto refuse;
    }
    if (cases > 0) {
        mdl_selftest_result sr;
        st = mdl_model_selftest(m, &sr, &err);
        if (st) {
            res->code = st;
            snprintf(res->reason, sizeof res->reason, "self-test failed: %s", err.msg);
            goto refuse;
        }
    }
    instance *in = calloc(1, sizeof *in);
    if (!in) {
        res->code = MDL_OUT_OF_MEMORY;
        snprintf(res->reason, sizeof res->reason, "out of memory");
        goto refuse;
    }
    in->model = m;
    in->bytes = bytes;
    res->inst = in;
    res->signature = signature_json(m);
    snprintf(res->note, sizeof res->note, "%s", mdl_model_load_note(m));
    snprintf(res->mdl_name, sizeof res->mdl_name, "%s", mdl_model_name(m));
    snprintf(res->mdl_version, sizeof res->mdl_version, "%s", mdl_model_version(m));
    return;
refuse:
    res->transient = res->code == MDL_OUT_OF_MEMORY;
    mdl_model_free(m);
    free(bytes);
}

/* ---- the model table (under lock) ----------------------------------------------------------- */

static model_entry *find_model(srv_repo *r, const char *name) {
    for (int i = 0; i < r->nmodels; i++)
        if (!strcmp(r->models[i]->name, name)) return r->models[i];
    return NULL;
}

static version *find_version(model_entry *m, int64_t number) {
    for (int i = 0; i < m->nvers; i++)
        if (m->vers[i]->number == number) return m->vers[i];
    return NULL;
}

static model_entry *add_model(srv_repo *r, const char *name) {
    if (!grow((void **)&r->models, &r->capmodels, r->nmodels + 1, sizeof *r->models)) return NULL;
    model_entry *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(name))) {
        free(m);
        return NULL;
    }
    /* sorted by name, for list and metrics */
    int at = r->nmodels;
    while (at > 0 && strcmp(r->models[at - 1]->name, name) > 0) at--;
    memmove(r->models + at + 1, r->models + at, (size_t)(r->nmodels - at) * sizeof *r->models);
    r->models[at] = m;
    r->nmodels++;
    return m;
}

static version *add_version(model_entry *m, int64_t number) {
    if (!grow((void **)&m->vers, &m->capvers, m->nvers + 1, sizeof *m->vers)) return NULL;
    version *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->number = number;
    v->owner = m;
    int at = m->nvers;
    while (at > 0 && m->vers[at - 1]->number > number) at--;
    memmove(m->vers + at + 1, m->vers + at, (size_t)(m->nvers - at) * sizeof *m->vers);
    m->vers[at] = v;
    m->nvers++;
    return v;
}

static void version_free(version *v) {
    cJSON_Delete(v->signature);
    free(v->win_ok);
    free(v->win_ns);
    free(v);
}

static void set_role(model_entry *m, version *v, int role) {
    if (m->stable == v) m->stable = NULL;
    if (m->canary == v) m->canary = NULL;
    if (m->previous == v) m->previous = NULL;
    v->role = role;
    if (role == ROLE_STABLE) m->stable = v;
    else if (role == ROLE_CANARY) m->canary = v;
    else if (role == ROLE_PREVIOUS) m->previous = v;
}

/* Takes a version out of routing: not loaded any more once its leases end. */
static void retire(srv_repo *r, model_entry *m, version *v, int state, to_free *f) {
    set_role(m, v, ROLE_NONE);
    v->state = state;
    defer(f, detach(r, v));
}

static void reset_window(version *v) {
    v->win_len = v->win_pos = 0;
    v->canary_ok = 0;
}

/* Installs a freshly verified instance as version v's, with role `role`. */
static void install(srv_repo *r, model_entry *m, version *v, load_result *res, int role, to_free *f) {
    defer(f, detach(r, v));
    v->inst = res->inst;
    res->inst->ver = v;
    res->inst = NULL;
    cJSON_Delete(v->signature);
    v->signature = res->signature;
    res->signature = NULL;
    snprintf(v->note, sizeof v->note, "%s", res->note);
    memcpy(v->mdl_name, res->mdl_name, sizeof v->mdl_name);
    memcpy(v->mdl_version, res->mdl_version, sizeof v->mdl_version);
    v->state = ST_AVAILABLE;
    v->reason[0] = 0;
    v->code = MDL_OK;
    v->requests = v->errors = 0;
    reset_window(v);
    set_role(m, v, role);
}

/* ---- verdicts (under lock) ------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The canary's verdict after one more counted request. */
static void judge(srv_repo *r, model_entry *m, version *v, bool ok, uint64_t ns, to_free *f) {
    int w = r->o.rollback_window;
    if (!v->win_ok) {
        v->win_ok = calloc((size_t)w, 1);
        v->win_ns = calloc((size_t)w, sizeof *v->win_ns);
        if (!v->win_ok || !v->win_ns) {
            free(v->win_ok);
            free(v->win_ns);
            v->win_ok = NULL;
            v->win_ns = NULL;
            return; /* no memory for the window: no verdict (and no promotion) */
        }
    }
    v->win_ok[v->win_pos] = ok;
    v->win_ns[v->win_pos] = ns;
    v->win_pos = (v->win_pos + 1) % w;
    if (v->win_len < w) v->win_len++;
    if (ok) v->canary_ok++;
    if (v->win_len == w) {
        int bad = 0;
        for (int i = 0; i < w; i++) bad += !v->win_ok[i];
        double share = (double)bad / w;
        char why[200] = "";
        if (share > r->o.rollback_error_rate)
            snprintf(why, sizeof why, "error share %.4g over the last %d requests is above %.4g", share, w,
                     r->o.rollback_error_rate);
        else if (r->o.rollback_p99_ms > 0) {
            uint64_t *tmp = malloc((size_t)w * sizeof *tmp);
            if (tmp) {
                memcpy(tmp, v->win_ns, (size_t)w * sizeof *tmp);
                qsort(tmp, (size_t)w, sizeof *tmp, cmp_u64);
                /* nearest rank: the ceil(0.99 w)-th smallest */
                int k = (int)((99 * (int64_t)w + 99) / 100) - 1;
                double p99 = (double)tmp[k] / 1e6;
                free(tmp);
                if (p99 > r->o.rollback_p99_ms)
                    snprintf(why, sizeof why, "p99 latency %.3f ms over the last %d requests is above %.3f ms",
                             p99, w, r->o.rollback_p99_ms);
            }
        }
        if (why[0]) {
            snprintf(v->reason, sizeof v->reason, "rolled back: %s", why);
            retire(r, m, v, ST_ROLLED_BACK, f);
            m->rollbacks++;
            event(r, "%s version %" PRId64 ": %s", m->name, v->number, v->reason);
            return;
        }
    }
    if (r->o.promote_after > 0 && v->canary_ok >= (uint64_t)r->o.promote_after) {
        version *old = m->stable, *older = m->previous;
        if (older) retire(r, m, older, ST_IDLE, f);
        if (old) set_role(m, old, ROLE_PREVIOUS);
        set_role(m, v, ROLE_STABLE);
        event(r, "%s version %" PRId64 ": promoted to stable after %" PRIu64 " successful requests", m->name,
              v->number, v->canary_ok);
        if (older) event(r, "%s version %" PRId64 ": unloaded (older than the previous version)", m->name,
                         older->number);
    }
}

/* ---- scanning ------------------------------------------------------------------------------- */

typedef struct found {
    char *name;
    int64_t number;
    file_id id; /* zero when there is no model.mdl */
} found;

typedef struct scan {
    found *items;
    int n, cap;
    char **names; /* model directories */
    int nnames, capnames;
} scan;

static void scan_free(scan *s) {
    for (int i = 0; i < s->n; i++) free(s->items[i].name);
    for (int i = 0; i < s->nnames; i++) free(s->names[i]);
    free(s->items);
    free(s->names);
}

/* Reports an ignored path once (under lock). */
static void ignore(srv_repo *r, const char *path, const char *why) {
    for (int i = 0; i < r->nignored; i++)
        if (!strcmp(r->ignored[i], path)) return;
    if (grow((void **)&r->ignored, &r->capignored, r->nignored + 1, sizeof *r->ignored)) {
        char *p = strdup(path);
        if (p) r->ignored[r->nignored++] = p;
    }
    event(r, "ignoring %s: %s", path, why);
}

/* Reads DIR (no lock).  Ignored entries are listed in ign->names.  Anything that keeps the scan
   from being complete (a model directory that cannot be read, e.g. out of file descriptors under
   load; no memory) fails the whole scan, so that a version is never taken for removed when it
   was only not seen: the table stays as it is until a scan succeeds. */
static int scan_dir(const char *dir, scan *s, scan *ign, char *err, size_t cap) {
    memset(s, 0, sizeof *s);
    DIR *d = opendir(dir);
    if (!d) {
        set_err(err, cap, "cannot read the model directory %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    char path[4096];
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            if (grow((void **)&ign->names, &ign->capnames, ign->nnames + 1, sizeof *ign->names))
                ign->names[ign->nnames++] = strdup(path);
            continue;
        }
        DIR *md = opendir(path);
        if (!md) {
            if (errno == ENOENT || errno == ENOTDIR) continue; /* removed meanwhile */
            set_err(err, cap, "cannot read %s: %s (the repository is left as it was)", path, strerror(errno));
            rc = -1;
            break;
        }
        char *name = strdup(e->d_name);
        if (!name || !grow((void **)&s->names, &s->capnames, s->nnames + 1, sizeof *s->names)) {
            free(name);
            closedir(md);
            rc = -2;
            break;
        }
        s->names[s->nnames++] = name;
        struct dirent *ve;
        while ((ve = readdir(md))) {
            if (ve->d_name[0] == '.') continue;
            char vpath[4096 + 256];
            snprintf(vpath, sizeof vpath, "%s/%s", path, ve->d_name);
            int64_t number;
            struct stat vst;
            if (!parse_version(ve->d_name, &number) || stat(vpath, &vst) != 0 || !S_ISDIR(vst.st_mode)) {
                if (grow((void **)&ign->names, &ign->capnames, ign->nnames + 1, sizeof *ign->names))
                    ign->names[ign->nnames++] = strdup(vpath);
                continue;
            }
            if (!grow((void **)&s->items, &s->cap, s->n + 1, sizeof *s->items) || !(name = strdup(e->d_name))) {
                rc = -2;
                break;
            }
            found *f = &s->items[s->n++];
            memset(f, 0, sizeof *f);
            f->name = name;
            f->number = number;
            char fpath[4096 + 512];
            snprintf(fpath, sizeof fpath, "%s/model.mdl", vpath);
            struct stat fst;
            if (stat(fpath, &fst) == 0) stat_id(&fst, &f->id);
        }
        closedir(md);
    }
    closedir(d);
    if (rc == -2) set_err(err, cap, "out of memory while scanning %s (the repository is left as it was)", dir);
    if (rc) scan_free(s);
    return rc ? -1 : 0;
}

/* One load decided under lock and done without it. */
typedef struct job {
    model_entry *m;
    int64_t number;
    int kind; /* JOB_CANDIDATE, JOB_STABLE (fill), JOB_PREVIOUS (fill), JOB_RELOAD */
} job;
enum { JOB_CANDIDATE, JOB_STABLE, JOB_PREVIOUS, JOB_RELOAD };

static void path_of(const srv_repo *r, const model_entry *m, int64_t number, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s/%" PRId64 "/model.mdl", r->dir, m->name, number);
}

/* Marks version v refused (under lock). */
static void refuse(srv_repo *r, model_entry *m, version *v, load_result *res, to_free *f) {
    set_role(m, v, ROLE_NONE);
    defer(f, detach(r, v));
    v->state = ST_FAILED;
    v->code = res->code;
    snprintf(v->reason, sizeof v->reason, "%s", res->reason);
    event(r, "%s version %" PRId64 ": refused: %s", m->name, v->number, v->reason);
}

/* The newest version of m (below `below`, 0 = any) that is on disk and may be tried for a
   role: not loaded, and not refused or rolled back on its current file. */
static version *next_to_try(model_entry *m, int64_t below) {
    for (int i = m->nvers - 1; i >= 0; i--) {
        version *v = m->vers[i];
        if (below && v->number >= below) continue;
        if (v->inst || v->role != ROLE_NONE) continue;
        if ((v->state == ST_FAILED || v->state == ST_ROLLED_BACK) && v->tried) continue;
        return v;
    }
    return NULL;
}

/* Applies a load's outcome (under lock). */
static void apply(srv_repo *r, job *j, load_result *res, to_free *f) {
    model_entry *m = j->m;
    version *v = find_version(m, j->number);
    if (!v) return; /* removed meanwhile (cannot happen: scans are serialized) */
    if (j->kind == JOB_RELOAD && v->role == ROLE_NONE)
        return; /* demoted meanwhile: its id stays old, so the next scan sees the change again */
    v->id = res->id;
    v->tried = true;
    if (!res->inst && res->transient) v->id.size = -1; /* matches no file: the next scan tries again */
    if (!res->inst) {
        if (j->kind == JOB_RELOAD && v->inst) {
            /* the loaded file keeps serving */
            event(r, "%s version %" PRId64 ": changed file refused, the loaded one keeps serving: %s", m->name,
                  v->number, res->reason);
            return;
        }
        refuse(r, m, v, res, f);
        return;
    }
    switch (j->kind) {
    case JOB_RELOAD:
        install(r, m, v, res, v->role, f);
        event(r, "%s version %" PRId64 ": reloaded (its file changed), serving as %s", m->name, v->number,
              role_name(v));
        break;
    case JOB_STABLE:
        if (m->stable) { /* filled meanwhile: keep as previous if that is free */
            if (!m->previous && v->number < m->stable->number) {
                install(r, m, v, res, ROLE_PREVIOUS, f);
                event(r, "%s version %" PRId64 ": loaded as previous", m->name, v->number);
            } else
                v->state = ST_IDLE;
            break;
        }
        install(r, m, v, res, ROLE_STABLE, f);
        event(r, "%s version %" PRId64 ": serving as stable", m->name, v->number);
        break;
    case JOB_PREVIOUS:
        if (m->previous || !m->stable || v->number > m->stable->number) {
            v->state = ST_IDLE;
            break;
        }
        install(r, m, v, res, ROLE_PREVIOUS, f);
        event(r, "%s version %" PRId64 ": loaded as previous", m->name, v->number);
        break;
    case JOB_CANDIDATE:
        if (!m->stable) {
            install(r, m, v, res, ROLE_STABLE, f);
            event(r, "%s version %" PRId64 ": serving as stable", m->name, v->number);
        } else if (r->o.canary_percent > 0) {
            if (m->canary) {
                version *c = m->canary;
                retire(r, m, c, ST_IDLE, f);
                event(r, "%s version %" PRId64 ": canary replaced by version %" PRId64, m->name, c->number,
                      v->number);
            }
            install(r, m, v, res, ROLE_CANARY, f);
            event(r, "%s version %" PRId64 ": serving as canary (%d%%)", m->name, v->number, r->o.canary_percent);
        } else {
            version *old = m->stable, *older = m->previous;
            if (older) {
                retire(r, m, older, ST_IDLE, f);
                event(r, "%s version %" PRId64 ": unloaded (older than the previous version)", m->name,
                      older->number);
            }
            set_role(m, old, ROLE_PREVIOUS);
            install(r, m, v, res, ROLE_STABLE, f);
            event(r, "%s version %" PRId64 ": serving as stable (version %" PRId64 " kept as previous)", m->name,
                  v->number, old->number);
        }
        break;
    }
}

/* Compares a scan with the table (under lock): adds and removes entries, and lists the loads
   to do.  Returns the number of jobs in *jobs (malloc'ed), or -1. */
static int reconcile(srv_repo *r, scan *s, scan *ign, job **jobs, to_free *f) {
    for (int i = 0; i < ign->nnames; i++)
        if (ign->names[i]) ignore(r, ign->names[i], "not NAME/VERSION (VERSION a positive integer)");
    /* models: present or gone */
    for (int i = 0; i < r->nmodels; i++) r->models[i]->on_disk = false;
    for (int i = 0; i < s->nnames; i++) {
        if (!s->names[i]) continue;
        model_entry *m = find_model(r, s->names[i]);
        if (!m && !(m = add_model(r, s->names[i]))) continue;
        m->on_disk = true;
    }
    int njobs = 0, capjobs = 0;
    *jobs = NULL;
    for (int mi = 0; mi < r->nmodels; mi++) {
        model_entry *m = r->models[mi];
        /* removed versions */
        for (int i = 0; i < m->nvers; i++) {
            version *v = m->vers[i];
            bool there = false;
            for (int k = 0; k < s->n && !there; k++)
                there = s->items[k].number == v->number && !strcmp(s->items[k].name, m->name);
            if (there && m->on_disk) continue;
            if (v->inst || v->role != ROLE_NONE)
                event(r, "%s version %" PRId64 ": removed, unloaded when its last request ends", m->name,
                      v->number);
            if (v == m->stable && m->previous && m->on_disk) {
                version *p = m->previous;
                set_role(m, p, ROLE_STABLE);
                event(r, "%s version %" PRId64 ": serving as stable (version %" PRId64 " was removed)", m->name,
                      p->number, v->number);
            }
            set_role(m, v, ROLE_NONE);
            defer(f, detach(r, v));
            version_free(v);
            memmove(m->vers + i, m->vers + i + 1, (size_t)(m->nvers - i - 1) * sizeof *m->vers);
            m->nvers--;
            i--;
        }
        if (!m->on_disk) continue;
        /* new versions (ascending: the newest candidate decides) and changed files */
        /* a candidate is newer than what serves */
        int64_t serving = m->stable ? m->stable->number : 0;
        if (m->canary && m->canary->number > serving) serving = m->canary->number;
        version *candidate = NULL;
        for (int k = 0; k < s->n; k++) {
            found *fd = &s->items[k];
            if (strcmp(fd->name, m->name)) continue;
            version *v = find_version(m, fd->number);
            if (!v) {
                if (!(v = add_version(m, fd->number))) continue;
                v->id = fd->id;
                if (fd->number > serving && (!candidate || fd->number > candidate->number)) candidate = v;
                continue;
            }
            if (same_id(&v->id, &fd->id)) continue;
            /* the file changed since the last attempt */
            if (v->inst) {
                if (grow((void **)jobs, &capjobs, njobs + 1, sizeof **jobs))
                    (*jobs)[njobs++] = (job){m, v->number, JOB_RELOAD};
            } else if (v->tried && (v->state == ST_FAILED || v->state == ST_ROLLED_BACK)) {
                /* retried: as a candidate when it is the newest, else it may fill a role */
                v->tried = false;
                v->state = ST_IDLE;
                v->reason[0] = 0;
                if (v->number > serving && (!candidate || v->number > candidate->number)) candidate = v;
            } else
                v->id = fd->id, v->tried = false;
        }
        if (candidate && m->stable && candidate->number > m->stable->number) {
            if (grow((void **)jobs, &capjobs, njobs + 1, sizeof **jobs))
                (*jobs)[njobs++] = (job){m, candidate->number, JOB_CANDIDATE};
        }
    }
    return njobs;
}

/* One scan: reconcile, load, apply; then fill the models without a stable or previous version
   (trying older versions in turn).  poll_lock held. */
static int scan_once(srv_repo *r, char *err, size_t cap) {
    scan s, ign;
    memset(&ign, 0, sizeof ign);
    if (scan_dir(r->dir, &s, &ign, err, cap)) {
        scan_free(&ign);
        return -1;
    }
    to_free f = {0};
    job *jobs;
    pthread_mutex_lock(&r->lock);
    int njobs = reconcile(r, &s, &ign, &jobs, &f);
    pthread_mutex_unlock(&r->lock);
    scan_free(&s);
    scan_free(&ign);
    free_deferred(&f);
    char path[4096 + 512];
    for (int i = 0; i < njobs; i++) {
        load_result res;
        path_of(r, jobs[i].m, jobs[i].number, path, sizeof path);
        load_version(r, path, &res);
        memset(&f, 0, sizeof f);
        pthread_mutex_lock(&r->lock);
        apply(r, &jobs[i], &res, &f);
        pthread_mutex_unlock(&r->lock);
        free_deferred(&f);
        instance_free(res.inst);
        cJSON_Delete(res.signature);
    }
    free(jobs);
    /* fill: for each model, while it lacks a stable (then a previous) version, try the newest
       untried version (below the stable one for previous) */
    for (int attempts = 0;; attempts++) {
        job j = {0};
        bool any = false;
        pthread_mutex_lock(&r->lock);
        for (int mi = 0; mi < r->nmodels && !any; mi++) {
            model_entry *m = r->models[mi];
            if (!m->on_disk) continue;
            version *v = NULL;
            if (!m->stable) {
                if ((v = next_to_try(m, m->canary ? m->canary->number : 0)))
                    j = (job){m, v->number, JOB_STABLE};
                else if (m->canary) { /* only a canary left: it becomes stable */
                    version *c = m->canary;
                    set_role(m, c, ROLE_STABLE);
                    reset_window(c);
                    event(r, "%s version %" PRId64 ": serving as stable (no other version left)", m->name,
                          c->number);
                }
            } else if (!m->previous && (v = next_to_try(m, m->stable->number)))
                j = (job){m, v->number, JOB_PREVIOUS};
            if (v) {
                any = true;
                v->tried = true; /* not chosen again by this loop whatever happens */
            }
        }
        pthread_mutex_unlock(&r->lock);
        if (!any || attempts > 100000) break;
        load_result res;
        path_of(r, j.m, j.number, path, sizeof path);
        load_version(r, path, &res);
        memset(&f, 0, sizeof f);
        pthread_mutex_lock(&r->lock);
        apply(r, &j, &res, &f);
        pthread_mutex_unlock(&r->lock);
        free_deferred(&f);
        instance_free(res.inst);
        cJSON_Delete(res.signature);
    }
    return 0;
}

/* ---- public API ----------------------------------------------------------------------------- */

srv_repo_options srv_repo_options_default(void) {
    srv_repo_options o;
    memset(&o, 0, sizeof o);
    o.load = mdl_load_options_default();
    o.session = mdl_session_options_default();
    o.canary_percent = 0;
    o.rollback_window = 100;
    o.rollback_error_rate = 0.05;
    o.rollback_p99_ms = 0;
    o.promote_after = 1000;
    return o;
}

int srv_repo_open(const srv_repo_options *options, srv_repo **out, char *err, size_t cap) {
    *out = NULL;
    if (!options || !options->model_dir || !options->model_dir[0]) {
        set_err(err, cap, "no model directory given");
        return -1;
    }
    const srv_repo_options *o = options;
    if (o->canary_percent < 0 || o->canary_percent > 100) {
        set_err(err, cap, "canary percent %d is not in 0..100", o->canary_percent);
        return -1;
    }
    if (o->rollback_window < 1 || o->rollback_window > MAX_WINDOW) {
        set_err(err, cap, "rollback window %d is not in 1..%d", o->rollback_window, MAX_WINDOW);
        return -1;
    }
    if (!(o->rollback_error_rate >= 0 && o->rollback_error_rate <= 1)) {
        set_err(err, cap, "rollback error rate %g is not in 0..1", o->rollback_error_rate);
        return -1;
    }
    if (!(o->rollback_p99_ms >= 0)) {
        set_err(err, cap, "rollback p99 %g ms is negative", o->rollback_p99_ms);
        return -1;
    }
    if (o->promote_after < 0) {
        set_err(err, cap, "promote_after %d is negative", o->promote_after);
        return -1;
    }
    srv_repo *r = calloc(1, sizeof *r);
    if (!r || !(r->dir = strdup(o->model_dir))) {
        free(r);
        set_err(err, cap, "out of memory");
        return -1;
    }
    size_t len = strlen(r->dir);
    while (len > 1 && r->dir[len - 1] == '/') r->dir[--len] = 0;
    r->o = *o;
    r->o.model_dir = r->dir;
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->poll_lock, NULL);
    pthread_mutex_lock(&r->poll_lock);
    int rc = scan_once(r, err, cap);
    pthread_mutex_unlock(&r->poll_lock);
    if (rc) {
        srv_repo_close(r);
        return -1;
    }
    *out = r;
    return 0;
}

void srv_repo_close(srv_repo *r) {
    if (!r) return;
    for (int i = 0; i < r->nmodels; i++) {
        model_entry *m = r->models[i];
        for (int k = 0; k < m->nvers; k++) {
            instance_free(m->vers[k]->inst);
            version_free(m->vers[k]);
        }
        free(m->vers);
        free(m->name);
        free(m);
    }
    free(r->models);
    while (r->retired) {
        instance *next = r->retired->next;
        instance_free(r->retired);
        r->retired = next;
    }
    for (int i = 0; i < r->nignored; i++) free(r->ignored[i]);
    free(r->ignored);
    free(r->events);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->poll_lock);
    free(r->dir);
    free(r);
}

int srv_repo_poll(srv_repo *r, char *log, size_t cap) {
    char err[512] = "";
    pthread_mutex_lock(&r->poll_lock);
    int rc = scan_once(r, err, sizeof err);
    pthread_mutex_unlock(&r->poll_lock);
    pthread_mutex_lock(&r->lock);
    if (rc) event(r, "%s", err);
    int n = r->nevents;
    if (log && cap) snprintf(log, cap, "%s", r->events ? r->events : "");
    r->nevents = 0;
    r->nevents_bytes = 0;
    if (r->events) r->events[0] = 0;
    pthread_mutex_unlock(&r->lock);
    return n;
}

int srv_repo_acquire(srv_repo *r, const char *model, int64_t version_number, srv_lease *out, char *err,
                     size_t cap) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&r->lock);
    model_entry *m = model ? find_model(r, model) : NULL;
    if (!m || !m->on_disk) {
        pthread_mutex_unlock(&r->lock);
        set_err(err, cap, "unknown model '%s'", model ? model : "");
        return 404;
    }
    version *v;
    if (version_number > 0) {
        v = find_version(m, version_number);
        if (!v) {
            pthread_mutex_unlock(&r->lock);
            set_err(err, cap, "model '%s' has no version %" PRId64, model, version_number);
            return 404;
        }
        if (!v->inst || v->role == ROLE_NONE) {
            set_err(err, cap, "version %" PRId64 " of model '%s' is not serving (%s%s%s)", version_number, model,
                    role_name(v), v->reason[0] ? ": " : "", v->reason);
            pthread_mutex_unlock(&r->lock);
            return 404;
        }
    } else {
        v = m->stable;
        if (!v) {
            pthread_mutex_unlock(&r->lock);
            set_err(err, cap, "no version of model '%s' is serving", model);
            return 503;
        }
        if (m->canary) {
            /* 10 of every 100: request n goes to the canary when floor((n+1)p/100) > floor(np/100) */
            uint64_t n = m->route++, p = (uint64_t)r->o.canary_percent;
            if (((n % 100) + 1) * p / 100 > (n % 100) * p / 100) v = m->canary;
        }
    }
    instance *in = v->inst;
    in->leases++;
    mdl_session *s = in->npool ? in->pool[--in->npool] : NULL;
    out->model = m->name;
    out->version = v->number;
    pthread_mutex_unlock(&r->lock);
    if (!s) {
        mdl_error e;
        if (mdl_session_create(in->model, &r->o.session, &s, &e) != MDL_OK) {
            set_err(err, cap, "%s", e.msg);
            pthread_mutex_lock(&r->lock);
            in->leases--;
            instance *gone = NULL;
            if (!in->ver && in->leases == 0) {
                for (instance **p = &r->retired; *p; p = &(*p)->next)
                    if (*p == in) {
                        *p = in->next;
                        gone = in;
                        break;
                    }
            }
            pthread_mutex_unlock(&r->lock);
            instance_free(gone);
            memset(out, 0, sizeof *out);
            return 500;
        }
    }
    out->session = s;
    out->internal_ = in;
    return 0;
}

void srv_repo_release(srv_repo *r, srv_lease *lease, bool counted, bool ok, uint64_t latency_ns) {
    if (!lease || !lease->internal_) return;
    instance *in = lease->internal_;
    to_free f = {0};
    pthread_mutex_lock(&r->lock);
    /* back to its instance's pool, also when the instance is retired (freed with it) */
    if (lease->session) {
        if (grow((void **)&in->pool, &in->cappool, in->npool + 1, sizeof *in->pool))
            in->pool[in->npool++] = lease->session;
        else
            mdl_session_free(lease->session); /* rare; its model is alive: this lease holds it */
    }
    in->leases--;
    version *v = in->ver;
    if (v && counted) {
        v->requests++;
        if (!ok) v->errors++;
        if (v->role == ROLE_CANARY) judge(r, v->owner, v, ok, latency_ns, &f);
    }
    if (!in->ver && in->leases == 0) {
        for (instance **p = &r->retired; *p; p = &(*p)->next)
            if (*p == in) {
                *p = in->next;
                defer(&f, in);
                break;
            }
    }
    pthread_mutex_unlock(&r->lock);
    free_deferred(&f);
    memset(lease, 0, sizeof *lease);
}

int srv_repo_rollback(srv_repo *r, const char *model, char *err, size_t cap) {
    pthread_mutex_lock(&r->lock);
    model_entry *m = model ? find_model(r, model) : NULL;
    if (!m || !m->on_disk) {
        pthread_mutex_unlock(&r->lock);
        set_err(err, cap, "unknown model '%s'", model ? model : "");
        return 404;
    }
    if (!m->previous || !m->stable) {
        pthread_mutex_unlock(&r->lock);
        set_err(err, cap, "model '%s' has no previous version loaded", model);
        return 409;
    }
    version *s = m->stable, *p = m->previous;
    set_role(m, p, ROLE_STABLE);
    set_role(m, s, ROLE_PREVIOUS);
    m->rollbacks++;
    event(r, "%s version %" PRId64 ": serving as stable again (manual rollback from version %" PRId64 ")", m->name,
          p->number, s->number);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

cJSON *srv_repo_describe(srv_repo *r, const char *model) {
    pthread_mutex_lock(&r->lock);
    model_entry *m = model ? find_model(r, model) : NULL;
    if (!m || !m->on_disk) {
        pthread_mutex_unlock(&r->lock);
        return NULL;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "model_version_status");
    for (int i = m->nvers - 1; i >= 0; i--) {
        version *v = m->vers[i];
        cJSON *e = cJSON_CreateObject();
        char num[24];
        snprintf(num, sizeof num, "%" PRId64, v->number);
        cJSON_AddStringToObject(e, "version", num);
        bool serving = v->inst && v->role != ROLE_NONE;
        cJSON_AddStringToObject(e, "state", serving ? "AVAILABLE" : "END");
        cJSON *st = cJSON_AddObjectToObject(e, "status");
        cJSON_AddStringToObject(st, "error_code", error_code(v));
        cJSON_AddStringToObject(st, "error_message", v->reason);
        cJSON_AddStringToObject(e, "role", role_name(v));
        cJSON_AddNumberToObject(e, "requests", (double)v->requests);
        cJSON_AddNumberToObject(e, "errors", (double)v->errors);
        if (v->signature) {
            cJSON_AddStringToObject(e, "model_name", v->mdl_name);
            cJSON_AddStringToObject(e, "model_version", v->mdl_version);
            if (v->note[0]) cJSON_AddStringToObject(e, "load_note", v->note);
            cJSON_AddItemToObject(e, "signature", cJSON_Duplicate(v->signature, true));
        }
        cJSON_AddItemToArray(arr, e);
    }
    cJSON_AddNumberToObject(o, "canary_percent", m->canary ? r->o.canary_percent : 0);
    cJSON_AddNumberToObject(o, "rollbacks", (double)m->rollbacks);
    pthread_mutex_unlock(&r->lock);
    return o;
}

cJSON *srv_repo_list(srv_repo *r) {
    cJSON *a = cJSON_CreateArray();
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->nmodels; i++)
        if (r->models[i]->on_disk) cJSON_AddItemToArray(a, cJSON_CreateString(r->models[i]->name));
    pthread_mutex_unlock(&r->lock);
    return a;
}

bool srv_repo_ready(srv_repo *r) {
    pthread_mutex_lock(&r->lock);
    int n = 0;
    bool ready = true;
    for (int i = 0; i < r->nmodels; i++) {
        if (!r->models[i]->on_disk) continue;
        n++;
        if (!r->models[i]->stable) ready = false;
    }
    pthread_mutex_unlock(&r->lock);
    return ready && n > 0;
}

/* ---- Prometheus text ------------------------------------------------------------------------ */

typedef struct out_buf {
    char *buf;
    size_t cap, len;
} out_buf;

static void put(out_buf *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += (size_t)n;
}

/* A label value with backslash, double quote and newline escaped. */
static void put_label(out_buf *o, const char *s) {
    for (; *s; s++) {
        if (*s == '\\') put(o, "\\\\");
        else if (*s == '"') put(o, "\\\"");
        else if (*s == '\n') put(o, "\\n");
        else put(o, "%c", *s);
    }
}

static void put_series(out_buf *o, const char *family, const model_entry *m, const version *v) {
    put(o, "%s{model=\"", family);
    put_label(o, m->name);
    put(o, "\",version=\"%" PRId64 "\"", v->number);
}

static void put_seconds(out_buf *o, uint64_t ns) {
    put(o, "%" PRIu64 ".%09" PRIu64, ns / 1000000000u, ns % 1000000000u);
}

/* mdl_status's enum names, as mdl_metrics_prometheus writes them */
static const char *const STATUS_NAMES[] = {
#define SRV__STATUS_NAME(name, text) #name,
    MDL_STATUS_MAP(SRV__STATUS_NAME)
#undef SRV__STATUS_NAME
};

/* The library's families (metrics.h), labelled with the directory's model name and version: two
   directory versions may hold files with the same embedded name and version, which
   mdl_metrics_prometheus would write as one series twice. */
size_t srv_repo_metrics(srv_repo *r, char *buf, size_t cap) {
    out_buf o = {buf, cap, 0};
    if (buf && cap) buf[0] = 0;
    pthread_mutex_lock(&r->lock);
    static const char *const fams[][3] = {
        /* the library's help texts (src/graph/metrics_host.c) */
        {"mdeploy_runs_total", "counter",
         "Runs of the model (mdl_session_run and runs refused before it), any outcome."},
        {"mdeploy_run_errors_total", "counter", "Failed runs by status."},
        {"mdeploy_run_duration_seconds", "histogram", "Latency of successful runs."},
        {"mdeploy_operator_seconds_total", "counter", "Time spent in each operator's nodes (MDL_LOAD_METRICS_OPS)."},
    };
    for (int fam = 0; fam < 4; fam++) {
        bool head = false;
        for (int i = 0; i < r->nmodels; i++) {
            model_entry *m = r->models[i];
            for (int k = 0; k < m->nvers; k++) {
                version *v = m->vers[k];
                mdl_metrics x;
                if (!v->inst || mdl_model_metrics(v->inst->model, &x) != MDL_OK) continue;
                if (fam == 3 && !x.ops) continue;
                if (!head) {
                    put(&o, "# HELP %s %s\n# TYPE %s %s\n", fams[fam][0], fams[fam][2], fams[fam][0], fams[fam][1]);
                    head = true;
                }
                if (fam == 0) {
                    put_series(&o, fams[fam][0], m, v);
                    put(&o, "} %" PRIu64 "\n", x.runs);
                } else if (fam == 1) {
                    for (int st = 1; st < MDL_STATUS_COUNT; st++) {
                        put_series(&o, fams[fam][0], m, v);
                        put(&o, ",status=\"%s\"} %" PRIu64 "\n", STATUS_NAMES[st], x.errors[st]);
                    }
                } else if (fam == 2) {
                    uint64_t cum = 0;
                    for (int b = 0; b <= MDL_METRICS_BUCKETS; b++) {
                        cum += x.latency_buckets[b];
                        put_series(&o, "mdeploy_run_duration_seconds_bucket", m, v);
                        if (b == MDL_METRICS_BUCKETS) put(&o, ",le=\"+Inf\"");
                        else {
                            put(&o, ",le=\"");
                            /* the bound in seconds, shortest exact decimal */
                            uint64_t ns = mdl_metrics_bucket_ns(b);
                            char t[32];
                            snprintf(t, sizeof t, "%" PRIu64 ".%09" PRIu64, ns / 1000000000u, ns % 1000000000u);
                            size_t n = strlen(t);
                            while (n > 0 && t[n - 1] == '0') t[--n] = 0;
                            if (n > 0 && t[n - 1] == '.') t[--n] = 0;
                            put(&o, "%s\"", t);
                        }
                        put(&o, "} %" PRIu64 "\n", cum);
                    }
                    put_series(&o, "mdeploy_run_duration_seconds_sum", m, v);
                    put(&o, "} ");
                    put_seconds(&o, x.latency_sum_ns);
                    put(&o, "\n");
                    put_series(&o, "mdeploy_run_duration_seconds_count", m, v);
                    put(&o, "} %" PRIu64 "\n", cum); /* = the +Inf bucket, also mid-update */
                } else {
                    const char *op;
                    uint64_t ns;
                    for (int q = 0; mdl_model_metrics_op(v->inst->model, q, &op, &ns); q++) {
                        put_series(&o, fams[fam][0], m, v);
                        put(&o, ",op=\"");
                        put_label(&o, op);
                        put(&o, "\"} ");
                        put_seconds(&o, ns);
                        put(&o, "\n");
                    }
                }
            }
        }
    }
    put(&o, "# HELP mdeploy_serve_versions Versions on disk by state (1 per version).\n"
            "# TYPE mdeploy_serve_versions gauge\n");
    for (int i = 0; i < r->nmodels; i++) {
        model_entry *m = r->models[i];
        if (!m->on_disk) continue;
        for (int k = 0; k < m->nvers; k++) {
            put_series(&o, "mdeploy_serve_versions", m, m->vers[k]);
            put(&o, ",state=\"%s\"} 1\n", role_name(m->vers[k]));
        }
    }
    put(&o, "# HELP mdeploy_serve_requests_total Requests served by a version (counted: run or failed in the run).\n"
            "# TYPE mdeploy_serve_requests_total counter\n");
    for (int i = 0; i < r->nmodels; i++) {
        model_entry *m = r->models[i];
        if (!m->on_disk) continue;
        for (int k = 0; k < m->nvers; k++) {
            put_series(&o, "mdeploy_serve_requests_total", m, m->vers[k]);
            put(&o, "} %" PRIu64 "\n", m->vers[k]->requests);
        }
    }
    put(&o, "# HELP mdeploy_serve_rollbacks_total Rollbacks of a model (automatic verdicts and manual).\n"
            "# TYPE mdeploy_serve_rollbacks_total counter\n");
    for (int i = 0; i < r->nmodels; i++) {
        model_entry *m = r->models[i];
        if (!m->on_disk) continue;
        put(&o, "mdeploy_serve_rollbacks_total{model=\"");
        put_label(&o, m->name);
        put(&o, "\"} %" PRIu64 "\n", m->rollbacks);
    }
    pthread_mutex_unlock(&r->lock);
    return o.len;
}
