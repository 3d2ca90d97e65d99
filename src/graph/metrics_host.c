/* Run metrics per model (include/mdeploy/metrics.h): relaxed C11 atomic counters that every
   session of the model updates, and the Prometheus text exposition.  Host builds only. */
#include "mdeploy/metrics.h"

#include "model.h"
#include "util.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

struct mdl__metrics {
    atomic_uint_least64_t runs;
    atomic_uint_least64_t errors[MDL_STATUS_COUNT];
    atomic_uint_least64_t buckets[MDL_METRICS_BUCKETS + 1];
    atomic_uint_least64_t sum_ns;
    bool ops;
    atomic_uint_least64_t op_ns[MDL_OP_COUNT]; /* by mdl_op */
};

/* Bucket bounds: nanoseconds, and as the `le` label writes them. */
static const uint64_t bound_ns[MDL_METRICS_BUCKETS] = {
    10000,      25000,      50000,      100000,      250000,      500000,     1000000,
    2500000,    5000000,    10000000,   25000000,    50000000,    100000000,  250000000,
    500000000,  1000000000, 2500000000, 5000000000u, 10000000000u};
static const char *const bound_text[MDL_METRICS_BUCKETS + 1] = {
    "0.00001", "0.000025", "0.00005", "0.0001", "0.00025", "0.0005", "0.001",
    "0.0025",  "0.005",    "0.01",    "0.025",  "0.05",    "0.1",    "0.25",
    "0.5",     "1",        "2.5",     "5",      "10",      "+Inf"};

static const char *const status_name[MDL_STATUS_COUNT] = {
#define MDL__STATUS_NAME(name, text) #name,
    MDL_STATUS_MAP(MDL__STATUS_NAME)
#undef MDL__STATUS_NAME
};

uint64_t mdl_metrics_bucket_ns(int i) {
    return i >= 0 && i < MDL_METRICS_BUCKETS ? bound_ns[i] : UINT64_MAX;
}

mdl_status mdl__metrics_create(mdl_model *m, uint32_t flags, mdl_error *err) {
    if (!(flags & (MDL_LOAD_METRICS | MDL_LOAD_METRICS_OPS))) return MDL_OK;
    mdl__metrics *x = mdl__alloc(m->alloc, sizeof *x);
    if (!x) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory allocating run metrics");
    memset(x, 0, sizeof *x); /* all-zero bits are a valid zero for these lock-free atomics */
    x->ops = (flags & MDL_LOAD_METRICS_OPS) != 0;
    m->metrics = x;
    return MDL_OK;
}

void mdl__metrics_free(mdl_model *m) {
    if (m->metrics) mdl__free(m->alloc, m->metrics);
    m->metrics = NULL;
}

void mdl__metrics_run(mdl__metrics *x, mdl_status st, uint64_t ns) {
    atomic_fetch_add_explicit(&x->runs, 1, memory_order_relaxed);
    if (st != MDL_OK) {
        if ((unsigned)st < MDL_STATUS_COUNT)
            atomic_fetch_add_explicit(&x->errors[st], 1, memory_order_relaxed);
        return;
    }
    int b = 0;
    while (b < MDL_METRICS_BUCKETS && ns > bound_ns[b]) b++;
    atomic_fetch_add_explicit(&x->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&x->sum_ns, ns, memory_order_relaxed);
}

bool mdl__metrics_ops_on(const mdl__metrics *x) { return x->ops; }

void mdl__metrics_op(mdl__metrics *x, mdl_op op, uint64_t ns) {
    if ((unsigned)op < MDL_OP_COUNT) atomic_fetch_add_explicit(&x->op_ns[op], ns, memory_order_relaxed);
}

void mdl_metrics_count_failure(const mdl_model *m, mdl_status status) {
    if (!m || !m->metrics || status == MDL_OK || (unsigned)status >= MDL_STATUS_COUNT) return;
    mdl__metrics_run(m->metrics, status, 0);
}

static uint64_t load(const atomic_uint_least64_t *a) {
    return atomic_load_explicit(a, memory_order_relaxed);
}

mdl_status mdl_model_metrics(const mdl_model *m, mdl_metrics *out) {
    if (!m || !out) return MDL_INVALID_ARGUMENT;
    const mdl__metrics *x = m->metrics;
    if (!x) return MDL_UNSUPPORTED;
    memset(out, 0, sizeof *out);
    out->runs = load(&x->runs);
    for (int s = 1; s < MDL_STATUS_COUNT; s++) out->errors[s] = load(&x->errors[s]);
    for (int b = 0; b <= MDL_METRICS_BUCKETS; b++) {
        out->latency_buckets[b] = load(&x->buckets[b]);
        out->latency_count += out->latency_buckets[b];
    }
    out->latency_sum_ns = load(&x->sum_ns);
    out->ops = x->ops;
    return MDL_OK;
}

/* The i-th distinct operator of the model's graph, in order of first appearance; MDL_OP_COUNT
   when there is none. */
static mdl_op op_at(const mdl_model *m, int i) {
    bool seen[MDL_OP_COUNT] = {false};
    int k = 0;
    for (int32_t n = 0; n < m->g.nnodes; n++) {
        mdl_op op = m->g.nodes[n].op;
        if ((unsigned)op >= MDL_OP_COUNT || seen[op]) continue;
        seen[op] = true;
        if (k++ == i) return op;
    }
    return MDL_OP_COUNT;
}

bool mdl_model_metrics_op(const mdl_model *m, int i, const char **op, uint64_t *ns) {
    if (!m || !m->metrics || !m->metrics->ops || i < 0) return false;
    mdl_op o = op_at(m, i);
    if (o == MDL_OP_COUNT) return false;
    if (op) *op = mdl_op_name(o);
    if (ns) *ns = load(&m->metrics->op_ns[o]);
    return true;
}

/* ---- Prometheus text format ----------------------------------------------------------------- */

typedef struct out {
    char *buf;
    size_t size, len; /* len counts everything, also what did not fit */
} out;

static void put(out *o, const char *s, size_t n) {
    if (o->len < o->size) {
        size_t room = o->size - 1 - o->len; /* keep one byte for the terminator */
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }

static void printf_(out *o, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A label value with \, " and newline escaped. */
static void put_escaped(out *o, const char *s) {
    for (const char *p = s ? s : ""; *p; p++) {
        if (*p == '\\') puts_(o, "\\\\");
        else if (*p == '"') puts_(o, "\\\"");
        else if (*p == '\n') puts_(o, "\\n");
        else put(o, p, 1);
    }
}

/* `name{model="..",version=".."` (open: the caller adds labels and the brace). */
static void series(out *o, const char *name, const mdl_model *m) {
    puts_(o, name);
    puts_(o, "{model=\"");
    put_escaped(o, mdl_model_name(m));
    puts_(o, "\",version=\"");
    put_escaped(o, mdl_model_version(m));
    puts_(o, "\"");
}

static void put_seconds(out *o, uint64_t ns) {
    printf_(o, "%llu.%09llu", (unsigned long long)(ns / 1000000000u),
            (unsigned long long)(ns % 1000000000u));
}

static void family(out *o, const char *name, const char *type, const char *help) {
    const char *parts[] = {"# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) puts_(o, parts[i]);
}

size_t mdl_metrics_prometheus(const mdl_model *const *models, int n, char *buf, size_t size) {
    out o = {buf, size, 0};
    if (buf && size) buf[0] = '\0';
    if (!models || n < 0) n = 0;
    bool any = false, any_ops = false;
    for (int i = 0; i < n; i++)
        if (models[i] && models[i]->metrics) {
            any = true;
            any_ops |= models[i]->metrics->ops;
        }
    if (!any) return 0;

    family(&o, "mdeploy_runs_total", "counter",
           "Runs of the model (mdl_session_run and runs refused before it), any outcome.");
    for (int i = 0; i < n; i++) {
        mdl_metrics s;
        if (!models[i] || mdl_model_metrics(models[i], &s)) continue;
        series(&o, "mdeploy_runs_total", models[i]);
        printf_(&o, "} %llu\n", (unsigned long long)s.runs);
    }
    family(&o, "mdeploy_run_errors_total", "counter", "Failed runs by status.");
    for (int i = 0; i < n; i++) {
        mdl_metrics s;
        if (!models[i] || mdl_model_metrics(models[i], &s)) continue;
        for (int st = 1; st < MDL_STATUS_COUNT; st++) {
            series(&o, "mdeploy_run_errors_total", models[i]);
            printf_(&o, ",status=\"%s\"} %llu\n", status_name[st], (unsigned long long)s.errors[st]);
        }
    }
    family(&o, "mdeploy_run_duration_seconds", "histogram", "Latency of successful runs.");
    for (int i = 0; i < n; i++) {
        mdl_metrics s;
        if (!models[i] || mdl_model_metrics(models[i], &s)) continue;
        uint64_t cum = 0;
        for (int b = 0; b <= MDL_METRICS_BUCKETS; b++) {
            cum += s.latency_buckets[b];
            series(&o, "mdeploy_run_duration_seconds_bucket", models[i]);
            printf_(&o, ",le=\"%s\"} %llu\n", bound_text[b], (unsigned long long)cum);
        }
        series(&o, "mdeploy_run_duration_seconds_sum", models[i]);
        puts_(&o, "} ");
        put_seconds(&o, s.latency_sum_ns);
        puts_(&o, "\n");
        series(&o, "mdeploy_run_duration_seconds_count", models[i]);
        printf_(&o, "} %llu\n", (unsigned long long)cum);
    }
    if (any_ops) {
        family(&o, "mdeploy_operator_seconds_total", "counter",
               "Time spent in each operator's nodes (MDL_LOAD_METRICS_OPS).");
        for (int i = 0; i < n; i++) {
            const char *op;
            uint64_t ns;
            for (int k = 0; models[i] && mdl_model_metrics_op(models[i], k, &op, &ns); k++) {
                series(&o, "mdeploy_operator_seconds_total", models[i]);
                puts_(&o, ",op=\"");
                put_escaped(&o, op);
                puts_(&o, "\"} ");
                put_seconds(&o, ns);
                puts_(&o, "\n");
            }
        }
    }
    if (buf && size) buf[o.len < size ? o.len : size - 1] = '\0';
    return o.len;
}
