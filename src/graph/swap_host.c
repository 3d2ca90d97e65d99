/* Hot swap with rollback (include/mdeploy/swap.h): model versions with reference counts and
   session pools behind one mutex; loading and testing a candidate happen outside it. */
#include "mdeploy/swap.h"
#include "mdeploy/selftest.h"

#include "graph/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sw_version {
    struct sw_version *next; /* the live list */
    mdl_model *model;
    uint64_t id;
    int64_t refs;         /* leased sessions, +1 while active, +1 while previous */
    mdl_session **pool;   /* idle sessions */
    int32_t npool, cap;   /* cap >= every session of this version, so release never grows it */
    int32_t nsessions;
    char name[64], version[64], source[256];
} sw_version;

struct mdl_swap {
    pthread_mutex_t lock;   /* everything below */
    pthread_mutex_t change; /* serializes load/rollback (held while a candidate loads) */
    mdl_swap_options o;
    sw_version *active, *previous, *live;
    uint64_t next_id, accepted, refused, rollbacks;
};

mdl_swap_options mdl_swap_options_default(void) {
    mdl_swap_options o;
    memset(&o, 0, sizeof o);
    o.load = mdl_load_options_default();
    o.session = mdl_session_options_default();
    return o;
}

static void version_free(sw_version *v) {
    for (int32_t i = 0; i < v->npool; i++) mdl_session_free(v->pool[i]);
    free(v->pool);
    mdl_model_free(v->model);
    free(v);
}

/* Drops one reference (lock held); returns the version when it must now be freed (unlinked). */
static sw_version *unref(mdl_swap *sw, sw_version *v) {
    if (--v->refs > 0) return NULL;
    for (sw_version **p = &sw->live; *p; p = &(*p)->next)
        if (*p == v) {
            *p = v->next;
            break;
        }
    return v;
}

/* "candidate refused: " + the cause. */
static mdl_status refuse(mdl_error *err, mdl_status st, const char *fmt, ...) {
    if (!err) return st;
    char msg[MDL_ERROR_MSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err->status = st;
    static const char head[] = "candidate refused: ";
    memcpy(err->msg, head, sizeof head - 1);
    mdl__strlcpy(err->msg + sizeof head - 1, msg, sizeof err->msg - (sizeof head - 1));
    return st;
}

static void dims_text(char *buf, size_t n, const mdl_tensor_info *t) {
    size_t at = 0;
    buf[0] = 0;
    for (int32_t d = 0; d < t->rank && at + 1 < n; d++) {
        int w = t->dims[d] >= 0 ? snprintf(buf + at, n - at, "%s%lld", d ? "x" : "", (long long)t->dims[d])
                : t->dim_max && t->dim_max[d]
                    ? snprintf(buf + at, n - at, "%s%s<=%lld", d ? "x" : "", t->dim_names[d], (long long)t->dim_max[d])
                    : snprintf(buf + at, n - at, "%s%s", d ? "x" : "", t->dim_names && t->dim_names[d] && t->dim_names[d][0] ? t->dim_names[d] : "?");
        if (w < 0) break;
        at += (size_t)w;
    }
}

/* The first difference between the inputs/outputs of a (active) and b (candidate). */
static mdl_status compare_io(const mdl_model *a, const mdl_model *b, mdl_error *err) {
    for (int io = 0; io < 2; io++) {
        const char *what = io ? "output" : "input";
        int na = io ? mdl_model_output_count(a) : mdl_model_input_count(a);
        int nb = io ? mdl_model_output_count(b) : mdl_model_input_count(b);
        if (na != nb)
            return refuse(err, MDL_INVALID_ARGUMENT, "it has %d %ss, the active model %d", nb, what, na);
        for (int i = 0; i < na; i++) {
            mdl_tensor_info x, y;
            if (io) mdl_model_output_info(a, i, &x), mdl_model_output_info(b, i, &y);
            else mdl_model_input_info(a, i, &x), mdl_model_input_info(b, i, &y);
            if (strcmp(x.name, y.name))
                return refuse(err, MDL_INVALID_ARGUMENT, "%s %d is '%s', the active model's '%s'", what, i,
                              y.name, x.name);
            if (x.dtype != y.dtype)
                return refuse(err, MDL_INVALID_ARGUMENT, "%s %d '%s' is %s, the active model's %s", what, i,
                              y.name, mdl_dtype_name(y.dtype), mdl_dtype_name(x.dtype));
            bool same = x.rank == y.rank;
            for (int32_t d = 0; same && d < x.rank; d++) {
                const char *sx = x.dim_names ? x.dim_names[d] : NULL, *sy = y.dim_names ? y.dim_names[d] : NULL;
                int64_t mx = x.dim_max ? x.dim_max[d] : 0, my = y.dim_max ? y.dim_max[d] : 0;
                same = x.dims[d] == y.dims[d] && mx == my && (!sx) == (!sy) && (!sx || !strcmp(sx, sy));
            }
            if (!same) {
                char tx[128], ty[128];
                dims_text(tx, sizeof tx, &x);
                dims_text(ty, sizeof ty, &y);
                return refuse(err, MDL_INVALID_ARGUMENT, "%s %d '%s' has shape [%s], the active model [%s]", what, i, y.name, ty, tx);
            }
        }
    }
    return MDL_OK;
}

/* Loads and verifies a candidate (file: path, else the buffer, copied) into a new version. */
static mdl_status load_version(mdl_swap *sw, const char *path, const void *data, size_t size,
                               const mdl_load_options *load, sw_version **out, mdl_error *err) {
    *out = NULL;
    mdl_load_options lo = load ? *load : sw->o.load;
    mdl_model *m;
    mdl_error e;
    mdl_status st;
    if (path) {
        st = mdl_model_load_file(path, &lo, &m, &e);
    } else {
        lo.flags |= MDL_LOAD_COPY;
        st = mdl_model_load_buffer(data, size, &lo, &m, &e);
    }
    if (st) return refuse(err, st, "%s", e.msg);
    if (sw->o.require_selftest && !mdl_model_selftest_count(m)) {
        mdl_model_free(m);
        return refuse(err, MDL_INVALID_ARGUMENT, "it has no self-test vectors and they are required");
    }
    if (!sw->o.skip_selftest && (st = mdl_model_selftest(m, NULL, &e))) {
        mdl_model_free(m);
        return refuse(err, st, "%s", e.msg);
    }
    sw_version *v = calloc(1, sizeof *v);
    if (!v) {
        mdl_model_free(m);
        return refuse(err, MDL_OUT_OF_MEMORY, "out of memory");
    }
    v->model = m;
    mdl__strlcpy(v->name, mdl_model_name(m), sizeof v->name);
    mdl__strlcpy(v->version, mdl_model_version(m), sizeof v->version);
    mdl__strlcpy(v->source, path ? path : "buffer", sizeof v->source);
    *out = v;
    return MDL_OK;
}

static mdl_status create(const char *path, const void *data, size_t size, const mdl_swap_options *options,
                         mdl_swap **out, mdl_error *err) {
    if (!out) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_swap_create: out is NULL");
    *out = NULL;
    if (!path && !data) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_swap_create: no model");
    mdl_swap *sw = calloc(1, sizeof *sw);
    if (!sw) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
    sw->o = options ? *options : mdl_swap_options_default();
    sw_version *v;
    mdl_status st = load_version(sw, path, data, size, NULL, &v, err);
    if (st) {
        free(sw);
        return st;
    }
    pthread_mutex_init(&sw->lock, NULL);
    pthread_mutex_init(&sw->change, NULL);
    v->id = sw->next_id = 1;
    v->refs = 1;
    sw->active = sw->live = v;
    *out = sw;
    return MDL_OK;
}

mdl_status mdl_swap_create_file(const char *path, const mdl_swap_options *options, mdl_swap **out,
                                mdl_error *err) {
    if (!path) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_swap_create_file: path is NULL");
    return create(path, NULL, 0, options, out, err);
}

mdl_status mdl_swap_create_buffer(const void *data, size_t size, const mdl_swap_options *options,
                                  mdl_swap **out, mdl_error *err) {
    if (!data) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_swap_create_buffer: data is NULL");
    return create(NULL, data, size, options, out, err);
}

void mdl_swap_free(mdl_swap *sw) {
    if (!sw) return;
    while (sw->live) {
        sw_version *v = sw->live;
        sw->live = v->next;
        version_free(v);
    }
    pthread_mutex_destroy(&sw->lock);
    pthread_mutex_destroy(&sw->change);
    free(sw);
}

static mdl_status swap_in(mdl_swap *sw, const char *path, const void *data, size_t size,
                          const mdl_load_options *load, mdl_error *err) {
    pthread_mutex_lock(&sw->change); /* the active model cannot change until we are done */
    sw_version *v;
    mdl_status st = load_version(sw, path, data, size, load, &v, err);
    if (!st && (st = compare_io(sw->active->model, v->model, err))) {
        version_free(v);
        v = NULL;
    }
    sw_version *dead = NULL;
    pthread_mutex_lock(&sw->lock);
    if (st) {
        sw->refused++;
    } else {
        v->id = ++sw->next_id;
        v->refs = 1;
        v->next = sw->live;
        sw->live = v;
        if (sw->previous) dead = unref(sw, sw->previous);
        sw->previous = sw->active; /* its reference moves from active to previous */
        sw->active = v;
        sw->accepted++;
    }
    pthread_mutex_unlock(&sw->lock);
    pthread_mutex_unlock(&sw->change);
    if (dead) version_free(dead);
    return st;
}

mdl_status mdl_swap_load_file(mdl_swap *sw, const char *path, const mdl_load_options *load, mdl_error *err) {
    if (!sw || !path) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_swap_load_file: NULL argument");
    return swap_in(sw, path, NULL, 0, load, err);
}

mdl_status mdl_swap_load_buffer(mdl_swap *sw, const void *data, size_t size, const mdl_load_options *load,
                                mdl_error *err) {
    if (!sw || !data) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_swap_load_buffer: NULL argument");
    return swap_in(sw, NULL, data, size, load, err);
}

mdl_status mdl_swap_rollback(mdl_swap *sw, mdl_error *err) {
    if (!sw) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_swap_rollback: NULL handle");
    pthread_mutex_lock(&sw->change);
    pthread_mutex_lock(&sw->lock);
    sw_version *p = sw->previous;
    if (p) {
        sw->previous = sw->active;
        sw->active = p;
        sw->rollbacks++;
    }
    pthread_mutex_unlock(&sw->lock);
    pthread_mutex_unlock(&sw->change);
    if (!p) return mdl__error(err, MDL_OUT_OF_RANGE, "rollback: there is no previous model");
    return MDL_OK;
}

mdl_status mdl_swap_acquire(mdl_swap *sw, mdl_session **out, mdl_error *err) {
    if (!sw || !out) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_swap_acquire: NULL argument");
    *out = NULL;
    pthread_mutex_lock(&sw->lock);
    sw_version *v = sw->active;
    v->refs++;
    mdl_session *s = v->npool ? v->pool[--v->npool] : NULL;
    pthread_mutex_unlock(&sw->lock);
    if (s) {
        *out = s;
        return MDL_OK;
    }
    /* the pool is empty: a new session, and room for it in the pool (allocation happens here) */
    mdl_status st = mdl_session_create(v->model, &sw->o.session, &s, err);
    sw_version *dead = NULL;
    pthread_mutex_lock(&sw->lock);
    if (!st && v->nsessions + 1 > v->cap) {
        int32_t cap = v->cap ? 2 * v->cap : 8;
        mdl_session **p = realloc(v->pool, sizeof *p * (size_t)cap);
        if (p) {
            v->pool = p;
            v->cap = cap;
        } else {
            st = mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory for the session pool");
        }
    }
    if (!st) v->nsessions++;
    else dead = unref(sw, v);
    pthread_mutex_unlock(&sw->lock);
    if (st) {
        mdl_session_free(s);
        if (dead) version_free(dead);
        return st;
    }
    *out = s;
    return MDL_OK;
}

void mdl_swap_release(mdl_swap *sw, mdl_session *s) {
    if (!sw || !s) return;
    const mdl_model *m = mdl_session_model(s);
    sw_version *dead = NULL;
    pthread_mutex_lock(&sw->lock);
    sw_version *v = sw->live;
    while (v && v->model != m) v = v->next;
    if (v) {
        v->pool[v->npool++] = s; /* cap >= nsessions */
        dead = unref(sw, v);
    }
    pthread_mutex_unlock(&sw->lock);
    if (!v) mdl_session_free(s); /* not one of ours: misuse; do not leak it */
    if (dead) version_free(dead);
}

mdl_status mdl_swap_info_get(mdl_swap *sw, mdl_swap_info *info) {
    if (!sw || !info) return MDL_INVALID_ARGUMENT;
    memset(info, 0, sizeof *info);
    pthread_mutex_lock(&sw->lock);
    const sw_version *a = sw->active;
    info->id = a->id;
    info->previous_id = sw->previous ? sw->previous->id : 0;
    memcpy(info->name, a->name, sizeof info->name);
    memcpy(info->version, a->version, sizeof info->version);
    memcpy(info->source, a->source, sizeof info->source);
    info->accepted = sw->accepted;
    info->refused = sw->refused;
    info->rollbacks = sw->rollbacks;
    for (const sw_version *v = sw->live; v; v = v->next) info->live_models++;
    pthread_mutex_unlock(&sw->lock);
    return MDL_OK;
}
