/* Run metrics (include/mdeploy/metrics.h): exact counts for a known sequence of good and failing
   runs, the latency buckets at their boundaries against the documented bounds, the Prometheus
   text against a hand-written exposition, truncation, metrics off by default, and four threads
   running sessions of one model while a fifth reads the exposition (make check runs this test
   under ThreadSanitizer). */
#include "common/harness.h"
#include "graph/model.h"
#include "mdeploy/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ids int64 [2] -> Gather(table [4,3]) -> e [2,3] -> Add(bias [3]) -> y [2,3].  An id outside
   [-4, 4) fails the run with OUT_OF_RANGE. */
static const float TABLE[12] = {0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32};
static const float BIAS[3] = {0.5f, 0.25f, 0.125f};
/* a name that needs every escape of a label value */
#define NAME "emb \"q\"\\x\ny"
#define NAME_ESCAPED "emb \\\"q\\\"\\\\x\\ny"

static void *build(size_t *size) {
    mdl_builder *b;
    assert_int_equal(mdl_builder_create(NULL, &b, NULL), MDL_OK);
    int ids = mdl_builder_tensor(b, "ids", MDL_DTYPE_INT64, 1, (int64_t[]){2}, NULL);
    int tab = mdl_builder_tensor(b, "table", MDL_DTYPE_FLOAT32, 2, (int64_t[]){4, 3}, TABLE);
    int bias = mdl_builder_tensor(b, "bias", MDL_DTYPE_FLOAT32, 1, (int64_t[]){3}, BIAS);
    int e = mdl_builder_tensor(b, "e", MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, NULL);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, NULL);
    mdl_op_options g = mdl_op_options_default(MDL_OP_GATHER);
    g.axis.axis = 0;
    assert_true(mdl_builder_node(b, MDL_OP_GATHER, "gather", 2, (int[]){tab, ids}, 1, &e, &g) >= 0);
    assert_true(mdl_builder_node(b, MDL_OP_ADD, "add", 2, (int[]){e, bias}, 1, &y, NULL) >= 0);
    mdl_builder_add_input(b, ids);
    mdl_builder_add_output(b, y);
    mdl_builder_set_metadata(b, "name", NAME);
    mdl_builder_set_metadata(b, "version", "1.2");
    void *data;
    mdl_error err;
    mdl_status st = mdl_builder_finish(b, &data, size, &err);
    if (st) fail_msg("%s", err.msg);
    mdl_builder_free(b);
    return data;
}

static mdl_model *load(uint32_t flags, void **data) {
    size_t size;
    *data = build(&size);
    mdl_load_options o = mdl_load_options_default();
    o.flags = flags;
    mdl_model *m;
    mdl_error err;
    mdl_status st = mdl_model_load_buffer(*data, size, &o, &m, &err);
    if (st) fail_msg("%s", err.msg);
    return m;
}

static uint64_t clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One run with ids (a, b); checks the output of a good run against the table and bias. */
static mdl_status run_ids(mdl_session *s, int64_t a, int64_t b) {
    int64_t ids[2] = {a, b};
    assert_int_equal(mdl_session_set_input(s, 0, ids, sizeof ids, NULL), MDL_OK);
    mdl_status st = mdl_session_run(s);
    if (st == MDL_OK) {
        const float *y = mdl_session_output_data(s, 0);
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < 3; c++) {
                int64_t id = ids[r] < 0 ? ids[r] + 4 : ids[r];
                assert_true(y[r * 3 + c] == TABLE[id * 3 + c] + BIAS[c]);
            }
    }
    return st;
}

/* 5 good runs, 3 with an id out of range, 2 refused before the run (an input of the wrong size:
   what a serving layer reports with mdl_metrics_count_failure). */
static void test_counts_exact(void **state) {
    void *data;
    mdl_model *m = load(MDL_LOAD_METRICS_OPS, &data);
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, NULL, &s, NULL), MDL_OK);
    uint64_t outside = 0;
    int good = 0, bad = 0;
    const int64_t seq[10][2] = {{0, 1}, {3, -1}, {4, 0}, {2, 2}, {0, -5}, {1, 3}, {-4, 0}, {9, 9}};
    for (int i = 0; i < 8; i++) {
        uint64_t t0 = clock_ns();
        mdl_status st = run_ids(s, seq[i][0], seq[i][1]);
        outside += clock_ns() - t0;
        if (st == MDL_OK) good++;
        else {
            assert_int_equal(st, MDL_OUT_OF_RANGE);
            bad++;
        }
    }
    assert_int_equal(good, 5);
    assert_int_equal(bad, 3);
    int64_t wrong[3] = {0, 1, 2};
    for (int i = 0; i < 2; i++) {
        mdl_status st = mdl_session_set_input(s, 0, wrong, sizeof wrong, NULL);
        assert_int_equal(st, MDL_BUFFER_TOO_SMALL);
        mdl_metrics_count_failure(m, MDL_SHAPE);
    }
    mdl_metrics_count_failure(m, MDL_OK);               /* ignored */
    mdl_metrics_count_failure(m, (mdl_status)1000);     /* ignored */
    mdl_metrics x;
    assert_int_equal(mdl_model_metrics(m, &x), MDL_OK);
    assert_int_equal(x.runs, 10);
    for (int st = 0; st < MDL_STATUS_COUNT; st++)
        assert_int_equal(x.errors[st], st == MDL_OUT_OF_RANGE ? 3 : st == MDL_SHAPE ? 2 : 0);
    assert_int_equal(x.latency_count, 5);
    uint64_t n = 0;
    for (int b = 0; b <= MDL_METRICS_BUCKETS; b++) n += x.latency_buckets[b];
    assert_int_equal(n, 5);
    /* the library's clock reads lie inside the test's */
    assert_true(x.latency_sum_ns > 0 && x.latency_sum_ns <= outside);
    assert_true(x.ops);
    const char *op;
    uint64_t g_ns, a_ns;
    assert_true(mdl_model_metrics_op(m, 0, &op, &g_ns));
    assert_string_equal(op, "Gather");
    assert_true(mdl_model_metrics_op(m, 1, &op, &a_ns));
    assert_string_equal(op, "Add");
    assert_false(mdl_model_metrics_op(m, 2, &op, NULL));
    assert_false(mdl_model_metrics_op(m, -1, &op, NULL));
    assert_true(g_ns > 0 && a_ns > 0 && g_ns + a_ns <= outside);
    mdl_session_free(s);
    mdl_model_free(m);
    free(data);
}

/* The documented bounds (metrics.h), in seconds, as an independent oracle for the bucketing. */
static const double DOC_BOUNDS[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                    0.0025,  0.005,    0.01,    0.025,  0.05,    0.1,    0.25,
                                    0.5,     1,        2.5,     5,      10};

static void test_buckets(void **state) {
    assert_int_equal(sizeof DOC_BOUNDS / sizeof DOC_BOUNDS[0], MDL_METRICS_BUCKETS);
    for (int b = 0; b < MDL_METRICS_BUCKETS; b++)
        assert_int_equal(mdl_metrics_bucket_ns(b), (uint64_t)(DOC_BOUNDS[b] * 1e9 + 0.5));
    assert_true(mdl_metrics_bucket_ns(MDL_METRICS_BUCKETS) == UINT64_MAX);
    assert_true(mdl_metrics_bucket_ns(-1) == UINT64_MAX);
    void *data;
    mdl_model *m = load(MDL_LOAD_METRICS, &data);
    /* every bound, one below and one above; zero; far above the last */
    uint64_t want[MDL_METRICS_BUCKETS + 1] = {0}, sum = 0;
    int count = 0;
    for (int b = -1; b < MDL_METRICS_BUCKETS + 1; b++) {
        uint64_t base = b < 0 ? 0 : b == MDL_METRICS_BUCKETS ? 1000000000000u
                                                             : (uint64_t)(DOC_BOUNDS[b] * 1e9 + 0.5);
        for (int d = -1; d <= 1; d++) {
            if (base == 0 && d < 0) continue;
            uint64_t ns = base + (uint64_t)(int64_t)d;
            mdl__metrics_run(m->metrics, MDL_OK, ns);
            /* oracle: the first bound (seconds) the latency does not exceed */
            int k = 0;
            while (k < MDL_METRICS_BUCKETS && (double)ns / 1e9 > DOC_BOUNDS[k] * (1 + 1e-12)) k++;
            want[k]++;
            sum += ns;
            count++;
        }
    }
    mdl_metrics x;
    assert_int_equal(mdl_model_metrics(m, &x), MDL_OK);
    for (int b = 0; b <= MDL_METRICS_BUCKETS; b++) assert_int_equal(x.latency_buckets[b], want[b]);
    assert_int_equal(x.latency_count, count);
    assert_int_equal(x.latency_sum_ns, sum);
    assert_int_equal(x.runs, count);
    assert_false(x.ops);
    assert_false(mdl_model_metrics_op(m, 0, NULL, NULL));
    mdl_model_free(m);
    free(data);
}

/* The exposition for a known state, written out by hand. */
static void test_prometheus_text(void **state) {
    void *data;
    mdl_model *m = load(MDL_LOAD_METRICS, &data);
    mdl__metrics_run(m->metrics, MDL_OK, 7000);          /* <= 10 µs */
    mdl__metrics_run(m->metrics, MDL_OK, 2000000);       /* <= 2.5 ms */
    mdl__metrics_run(m->metrics, MDL_OK, 30000000000u);  /* +Inf */
    mdl__metrics_run(m->metrics, MDL_OUT_OF_RANGE, 5);
    mdl_metrics_count_failure(m, MDL_SHAPE);
#define L "{model=\"" NAME_ESCAPED "\",version=\"1.2\""
    static const char want_head[] =
        "# HELP mdeploy_runs_total Runs of the model (mdl_session_run and runs refused before "
        "it), any outcome.\n"
        "# TYPE mdeploy_runs_total counter\n"
        "mdeploy_runs_total" L "} 5\n"
        "# HELP mdeploy_run_errors_total Failed runs by status.\n"
        "# TYPE mdeploy_run_errors_total counter\n"
        "mdeploy_run_errors_total" L ",status=\"INVALID_ARGUMENT\"} 0\n"
        "mdeploy_run_errors_total" L ",status=\"OUT_OF_MEMORY\"} 0\n"
        "mdeploy_run_errors_total" L ",status=\"IO\"} 0\n"
        "mdeploy_run_errors_total" L ",status=\"CORRUPT_MODEL\"} 0\n"
        "mdeploy_run_errors_total" L ",status=\"VERSION\"} 0\n"
        "mdeploy_run_errors_total" L ",status=\"UNSUPPORTED\"} 0\n"
        "mdeploy_run_errors_total" L ",status=\"SHAPE\"} 1\n"
        "mdeploy_run_errors_total" L ",status=\"DTYPE\"} 0\n"
        "mdeploy_run_errors_total" L ",status=\"OUT_OF_RANGE\"} 1\n"
        "mdeploy_run_errors_total" L ",status=\"BUFFER_TOO_SMALL\"} 0\n"
        "mdeploy_run_errors_total" L ",status=\"INTERNAL\"} 0\n"
        "mdeploy_run_errors_total" L ",status=\"LIMIT\"} 0\n"
        "# HELP mdeploy_run_duration_seconds Latency of successful runs.\n"
        "# TYPE mdeploy_run_duration_seconds histogram\n";
    char want[8192];
    size_t w = (size_t)snprintf(want, sizeof want, "%s", want_head);
    for (int b = 0; b <= MDL_METRICS_BUCKETS; b++) {
        static const char *const le[] = {"0.00001", "0.000025", "0.00005", "0.0001", "0.00025",
                                         "0.0005",  "0.001",    "0.0025",  "0.005",  "0.01",
                                         "0.025",   "0.05",     "0.1",     "0.25",   "0.5",
                                         "1",       "2.5",      "5",       "10",     "+Inf"};
        int cum = b < 7 ? 1 : b < MDL_METRICS_BUCKETS ? 2 : 3;
        w += (size_t)snprintf(want + w, sizeof want - w,
                              "mdeploy_run_duration_seconds_bucket" L ",le=\"%s\"} %d\n", le[b], cum);
    }
    w += (size_t)snprintf(want + w, sizeof want - w,
                          "mdeploy_run_duration_seconds_sum" L "} 30.002007000\n"
                          "mdeploy_run_duration_seconds_count" L "} 3\n");
#undef L
    char got[8192];
    const mdl_model *list[2] = {m, NULL};
    size_t n = mdl_metrics_prometheus(list, 2, got, sizeof got);
    if (n != w || strcmp(got, want)) printf("GOT\n%s\nWANT\n%s\n", got, want);
    assert_int_equal(n, w);
    assert_string_equal(got, want);
    /* truncation: as snprintf */
    char small[40];
    memset(small, 'z', sizeof small);
    assert_int_equal(mdl_metrics_prometheus(list, 1, small, sizeof small), w);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, want, sizeof small - 1);
    assert_int_equal(mdl_metrics_prometheus(list, 1, NULL, 0), w);
    mdl_model_free(m);
    free(data);
}

/* Two models in one exposition: each family once; op time only for the model that has it. */
static void test_prometheus_two_models(void **state) {
    void *d1, *d2;
    mdl_model *a = load(MDL_LOAD_METRICS, &d1), *b = load(MDL_LOAD_METRICS_OPS, &d2);
    mdl_session *s;
    assert_int_equal(mdl_session_create(b, NULL, &s, NULL), MDL_OK);
    assert_int_equal(run_ids(s, 1, 2), MDL_OK);
    const mdl_model *list[2] = {a, b};
    char got[16384];
    size_t n = mdl_metrics_prometheus(list, 2, got, sizeof got);
    assert_true(n < sizeof got);
    int types = 0, ops = 0;
    for (const char *p = got; (p = strstr(p, "# TYPE ")); p++) types++;
    if (types != 4) printf("%s", got);
    assert_int_equal(types, 4);
    for (const char *p = got; (p = strstr(p, "\nmdeploy_operator_seconds_total{")); p++) ops++;
    assert_int_equal(ops, 2);
    assert_non_null(strstr(got, ",op=\"Gather\"} "));
    assert_non_null(strstr(got, ",op=\"Add\"} "));
    mdl_session_free(s);
    mdl_model_free(a);
    mdl_model_free(b);
    free(d1);
    free(d2);
}

static void test_off_by_default(void **state) {
    void *data;
    mdl_model *m = load(0, &data);
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, NULL, &s, NULL), MDL_OK);
    assert_int_equal(run_ids(s, 1, 2), MDL_OK);
    mdl_metrics_count_failure(m, MDL_SHAPE); /* no-op */
    mdl_metrics x;
    assert_int_equal(mdl_model_metrics(m, &x), MDL_UNSUPPORTED);
    assert_int_equal(mdl_model_metrics(NULL, &x), MDL_INVALID_ARGUMENT);
    assert_false(mdl_model_metrics_op(m, 0, NULL, NULL));
    char buf[16] = "x";
    const mdl_model *list[1] = {m};
    assert_int_equal(mdl_metrics_prometheus(list, 1, buf, sizeof buf), 0);
    assert_string_equal(buf, "");
    mdl_session_free(s);
    mdl_model_free(m);
    free(data);
}

/* ---- threads ---------------------------------------------------------------------------------- */

enum { NTHREADS = 4, RUNS = 20000 };

static pthread_barrier_t start; /* the workers start together, so their runs overlap */

typedef struct worker {
    mdl_model *m;
    int index, good, bad;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    mdl_session *s;
    if (mdl_session_create(w->m, NULL, &s, NULL)) s = NULL;
    pthread_barrier_wait(&start);
    if (!s) return NULL;
    for (int i = 0; i < RUNS; i++) {
        int64_t ids[2] = {i % 4, (i + w->index) % 7 == 0 ? 4 + w->index : 1};
        if (mdl_session_set_input(s, 0, ids, sizeof ids, NULL)) continue;
        mdl_status st = mdl_session_run(s);
        if (st == MDL_OK) w->good++;
        else if (st == MDL_OUT_OF_RANGE) w->bad++;
        if (i % 50 == 0) mdl_metrics_count_failure(w->m, MDL_DTYPE);
    }
    mdl_session_free(s);
    return NULL;
}

static atomic_int stop_reader;

static void *reader(void *arg) {
    const mdl_model *list[1] = {arg};
    static char buf[16384];
    while (!atomic_load(&stop_reader)) mdl_metrics_prometheus(list, 1, buf, sizeof buf);
    return NULL;
}

static void test_threads(void **state) {
    void *data;
    mdl_model *m = load(MDL_LOAD_METRICS_OPS, &data);
    pthread_t t[NTHREADS], r;
    worker w[NTHREADS];
    atomic_store(&stop_reader, 0);
    assert_int_equal(pthread_barrier_init(&start, NULL, NTHREADS), 0);
    assert_int_equal(pthread_create(&r, NULL, reader, m), 0);
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (worker){m, i, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    int good = 0, bad = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(t[i], NULL);
        good += w[i].good;
        bad += w[i].bad;
    }
    atomic_store(&stop_reader, 1);
    pthread_join(r, NULL);
    pthread_barrier_destroy(&start);
    /* expected from the schedule alone: every 7th (offset by the thread) run has a bad id */
    int want_bad = 0, refused = 0;
    for (int k = 0; k < NTHREADS; k++)
        for (int i = 0; i < RUNS; i++) {
            want_bad += (i + k) % 7 == 0;
            refused += i % 50 == 0;
        }
    assert_int_equal(bad, want_bad);
    assert_int_equal(good + bad, NTHREADS * RUNS);
    mdl_metrics x;
    assert_int_equal(mdl_model_metrics(m, &x), MDL_OK);
    assert_int_equal(x.runs, NTHREADS * RUNS + refused);
    assert_int_equal(x.errors[MDL_OUT_OF_RANGE], want_bad);
    assert_int_equal(x.errors[MDL_DTYPE], refused);
    assert_int_equal(x.latency_count, NTHREADS * RUNS - want_bad);
    mdl_model_free(m);
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_exact),       cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_prometheus_text),    cmocka_unit_test(test_prometheus_two_models),
        cmocka_unit_test(test_off_by_default),     cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
