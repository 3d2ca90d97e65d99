/*
 * mdeploy — run metrics per model, and their Prometheus text exposition.
 *
 * Enable at load with mdl_load_options.flags |= MDL_LOAD_METRICS (counts and latency) or
 * MDL_LOAD_METRICS_OPS (also per-operator time).  Without either flag a model has no metrics,
 * mdl_session_run does no extra work (one NULL test), and the getters below report
 * MDL_UNSUPPORTED.  Host builds only (the Makefile defines MDL_WITH_METRICS); firmware builds
 * ignore the flags and do not link this API.
 *
 * What is counted, for every session of the model (any number of threads: the counters are
 * C11 atomics, updated with relaxed ordering, so a reader sees each counter exact but may see
 * one run's counters half-updated while that run finishes):
 *   runs          every mdl_session_run on a valid session, whatever its outcome, plus every
 *                 mdl_metrics_count_failure
 *   errors[st]    runs that returned status st (never MDL_OK)
 *   latency       successful runs only: the time mdl_session_run took (CLOCK_MONOTONIC, one
 *                 read before the first node and one after the last), in fixed buckets
 *   op time       with MDL_LOAD_METRICS_OPS: per operator type (mdl_op), the time of each of its
 *                 nodes, in successful and failed runs alike (the failing node included)
 * so at any quiet moment runs == latency count + sum(errors).
 *
 * Latency buckets (Prometheus `le`, inclusive upper bounds, seconds), fixed so that series from
 * every process and model can be aggregated:
 *   0.00001 0.000025 0.00005 0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25
 *   0.5 1 2.5 5 10 +Inf
 * (10 µs to 10 s: a keyword spotter on a desktop CPU to a large model on one core).
 *
 * Cost: MDL_LOAD_METRICS adds two clock_gettime(CLOCK_MONOTONIC) calls and three relaxed atomic
 * adds per run; MDL_LOAD_METRICS_OPS two more clock reads and one atomic add per node.  The
 * clock dominates: measured on the development VM (kvm, tsc clocksource), clock_gettime took
 * 73-91 ns, and a 2-node model's run went from a median 140-270 ns to 310-610 ns with
 * MDL_LOAD_METRICS and 580-1280 ns with MDL_LOAD_METRICS_OPS (blocks of 100000 runs of each,
 * interleaved, 31 rounds, 3 repetitions on a loaded 2-core machine); on bare metal with a vDSO
 * clock a read is about 20 ns.  Without the flags a run costs the same as before (one NULL test).
 */
#ifndef MDEPLOY_METRICS_H
#define MDEPLOY_METRICS_H

#include "mdeploy/mdeploy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Finite latency buckets; bucket MDL_METRICS_BUCKETS is +Inf. */
#define MDL_METRICS_BUCKETS 19

/* A snapshot of one model's counters (mdl_model_metrics). */
typedef struct mdl_metrics {
    uint64_t runs;
    uint64_t errors[MDL_STATUS_COUNT]; /* by mdl_status; errors[MDL_OK] is 0 */
    /* Successful runs whose latency falls in bucket i: above bound i-1, at most bound i
       (mdl_metrics_bucket_ns); not cumulative (Prometheus' le buckets are the running sums). */
    uint64_t latency_buckets[MDL_METRICS_BUCKETS + 1];
    uint64_t latency_count;  /* sum of latency_buckets */
    uint64_t latency_sum_ns; /* total latency of the successful runs */
    bool ops;                /* per-operator time is collected (MDL_LOAD_METRICS_OPS) */
} mdl_metrics;

/* Upper bound of latency bucket i in nanoseconds (10000 for bucket 0); UINT64_MAX for
   i == MDL_METRICS_BUCKETS (+Inf) and for i out of range. */
MDL_API uint64_t mdl_metrics_bucket_ns(int i);

/* Fills *out with the model's counters.  Errors: INVALID_ARGUMENT (NULL), UNSUPPORTED (the model
   was loaded without MDL_LOAD_METRICS/MDL_LOAD_METRICS_OPS). */
MDL_API mdl_status mdl_model_metrics(const mdl_model *m, mdl_metrics *out);

/* Per-operator cumulative time (MDL_LOAD_METRICS_OPS): for each operator type the model uses,
   in order of first appearance in the graph, i from 0 while this returns true: its name
   (mdl_op_name, e.g. "Conv2D") and the nanoseconds its nodes have run in total.  False when i
   is out of range or op metrics are off.  Either out-pointer may be NULL. */
MDL_API bool mdl_model_metrics_op(const mdl_model *m, int i, const char **op, uint64_t *ns);

/* Counts a run that a serving layer refused before calling mdl_session_run (e.g. an input of
   the wrong shape or dtype): runs and errors[status] each go up by one.  A no-op without
   metrics, for a NULL model, and for MDL_OK or an unknown status.  Thread-safe. */
MDL_API void mdl_metrics_count_failure(const mdl_model *m, mdl_status status);

/*
 * Writes the metrics of models[0..n-1] in the Prometheus text exposition format (version
 * 0.0.4) to buf, at most size bytes, always NUL-terminated when size > 0, and returns the length
 * of the whole text (as snprintf: call again with a larger buffer when the result is >= size).
 * Models without metrics are skipped; NULL entries too.  Each metric family appears once (HELP
 * and TYPE lines), with one series per model labelled model="<mdl_model_name>" and
 * version="<mdl_model_version>" (label values escaped: backslash, double quote, newline):
 *
 *   mdeploy_runs_total{model,version}                    counter
 *   mdeploy_run_errors_total{model,version,status}       counter, status = the mdl_status name
 *                                                        ("OUT_OF_RANGE", "SHAPE" ...), every
 *                                                        status but OK, zeros included
 *   mdeploy_run_duration_seconds{model,version}          histogram of successful runs:
 *                                                        _bucket{le=...} (cumulative, the
 *                                                        buckets above and "+Inf"), _sum, _count
 *   mdeploy_operator_seconds_total{model,version,op}     counter (MDL_LOAD_METRICS_OPS models)
 *
 * Two models with the same name and version give series that Prometheus cannot tell apart:
 * give them distinct names (mdeploy-convert --name) or versions.  Seconds are written exactly
 * (nanoseconds as a decimal fraction).
 */
MDL_API size_t mdl_metrics_prometheus(const mdl_model *const *models, int n, char *buf,
                                      size_t size);

#ifdef __cplusplus
}
#endif
#endif
