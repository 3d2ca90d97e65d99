/* mdeploy-bench: load time, session creation time, latency distribution, throughput, memory and
   (with --profile) a per-operator time table for one model.  Uses the public API only.
   Options: the table below (mdeploy-bench --help). */
#include "mdeploy/convert.h"
#include "mdeploy/mdeploy.h"
#include "tool_util.h"
#include "mdeploy/npy.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_IO 64

static const tool_opt opts[] = {
    {"input", 'i', "IN.npy", "an input, in the model's order (repeat for each); without -i every\n"
                             "input is generated: uniform [-1,1) floats, valid ids for embedding\n"
                             "lookups, zeros for other integers"},
    {"zeros", 256, NULL, "generate zeros instead of random values"},
    {"warmup", 257, "N", "untimed runs first (default 10)"},
    {"iters", 258, "N", "timed runs (default 0: as many as fit in --time seconds, 10..100000)"},
    {"time", 259, "S", "time budget for --iters 0 (default 1.0)"},
    {"threads", 260, "N", "threads per run (mdl_session_options.threads, 1..64; default 1)"},
    {"blas-threads", 261, "N", "OpenBLAS threads (OPENBLAS_NUM_THREADS; default 1; 0 = leave as\n"
                               "is; OpenBLAS runs only on CPUs without AVX2)"},
    {"batch", 262, "N", "first dimension of every input: a .onnx model is converted at that\n"
                        "batch; a .mdl model must already have it (its shapes are fixed)"},
    {"profile", 263, NULL, "also time every node: per-operator table with GFLOP/s"},
    {"json", 264, NULL, "print the results as JSON"},
    {"seed", 265, "N", "seed of the generated inputs (default 1)"},
};
static const tool_cli cli = {
    "mdeploy-bench",
    "Load time, session creation time, latency distribution, throughput, memory and (--profile) a\n"
    "per-operator time table for one model (an ONNX model is converted first, in memory).",
    "MODEL.mdl|MODEL.onnx [options]", opts, TOOL_NOPTS(opts),
    "mdeploy-bench net.mdl\n"
    "mdeploy-bench net.onnx --batch 8 --threads 2 --iters 100 --profile\n"
    "mdeploy-bench net.mdl -i x.npy --time=0.5 --json",
};

static int die(const char *msg) {
    fprintf(stderr, "mdeploy-bench: %s\n", msg);
    return 1;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (size_t)ru.ru_maxrss * 1024u; /* Linux reports KiB */
}

static const char *human_bytes(char *buf, size_t cap, double bytes) {
    if (bytes >= 1024.0 * 1024.0) snprintf(buf, cap, "%.1f MiB", bytes / (1024.0 * 1024.0));
    else if (bytes >= 1024.0) snprintf(buf, cap, "%.1f KiB", bytes / 1024.0);
    else snprintf(buf, cap, "%.0f B", bytes);
    return buf;
}

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array (q in [0, 1]). */
static uint64_t percentile(const uint64_t *sorted, int n, double q) {
    int k = (int)ceil(q * n) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return sorted[k];
}

/* ---- generated inputs ---------------------------------------------------------------------- */

static uint64_t rng_state = 1;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int64_t elem_count(const mdl_tensor_info *t) {
    int64_t n = 1;
    for (int32_t d = 0; d < t->rank; d++) n *= t->dims[d];
    return n;
}

static int find_tensor(const mdl_model *m, const char *name) {
    int n = mdl_model_tensor_count(m);
    for (int i = 0; i < n; i++) {
        mdl_tensor_info ti;
        if (!mdl_model_tensor_info(m, i, &ti, NULL) && !strcmp(ti.name, name)) return i;
    }
    return -1;
}

/* Largest id that every Gather reading tensor t (directly or through shape-only ops) accepts,
   plus one: the smallest table dimension the ids index.  0 when no Gather reads t.  The gather
   axis is not part of the node info, so it is inferred from the shapes: out = data[:axis] +
   indices + data[axis+1:]; when several axes fit, the smallest candidate dimension is safe. */
static int64_t id_limit(const mdl_model *m, int t, int depth) {
    int64_t limit = 0;
    int nodes = mdl_model_node_count(m);
    for (int i = 0; i < nodes && depth < 6; i++) {
        mdl_node_info ni;
        if (mdl_model_node_info(m, i, &ni)) continue;
        bool reads = false;
        for (int k = 0; k < ni.nin; k++) reads |= ni.inputs[k] == t;
        if (!reads) continue;
        int64_t l = 0;
        if (!strcmp(ni.op, "Gather") && ni.nin >= 2 && ni.inputs[1] == t && ni.nout >= 1) {
            mdl_tensor_info data, idx, out;
            if (mdl_model_tensor_info(m, ni.inputs[0], &data, NULL) ||
                mdl_model_tensor_info(m, t, &idx, NULL) || mdl_model_tensor_info(m, ni.outputs[0], &out, NULL))
                continue;
            for (int32_t axis = 0; axis < data.rank; axis++) {
                if (out.rank != data.rank + idx.rank - 1) break;
                bool fits = true;
                for (int32_t d = 0; d < axis; d++) fits &= out.dims[d] == data.dims[d];
                for (int32_t d = 0; d < idx.rank; d++) fits &= out.dims[axis + d] == idx.dims[d];
                for (int32_t d = axis + 1; d < data.rank; d++) fits &= out.dims[idx.rank + d - 1] == data.dims[d];
                if (fits && (l == 0 || data.dims[axis] < l)) l = data.dims[axis];
            }
        } else if (!strcmp(ni.op, "Reshape") || !strcmp(ni.op, "Transpose") || !strcmp(ni.op, "Slice") ||
                   !strcmp(ni.op, "Concat")) {
            for (int k = 0; k < ni.nout; k++) {
                int64_t o = id_limit(m, ni.outputs[k], depth + 1);
                if (o > 0 && (l == 0 || o < l)) l = o;
            }
        }
        if (l > 0 && (limit == 0 || l < limit)) limit = l;
    }
    return limit;
}

/* Fills buf (the input's bytes) and writes a description of what was generated into how. */
static void generate_input(const mdl_model *m, const mdl_tensor_info *ti, void *buf, bool zeros,
                           char *how, size_t cap) {
    int64_t n = elem_count(ti);
    memset(buf, 0, ti->bytes);
    if (zeros) {
        snprintf(how, cap, "zeros");
        return;
    }
    switch (ti->dtype) {
    case MDL_DTYPE_FLOAT32:
        for (int64_t i = 0; i < n; i++)
            ((float *)buf)[i] = (float)((double)(rng_next() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
        snprintf(how, cap, "uniform [-1,1)");
        return;
    case MDL_DTYPE_INT8:
    case MDL_DTYPE_UINT8:
        for (int64_t i = 0; i < n; i++) ((uint8_t *)buf)[i] = (uint8_t)rng_next();
        snprintf(how, cap, "uniform over the type's range");
        return;
    case MDL_DTYPE_INT32:
    case MDL_DTYPE_INT64: {
        int t = find_tensor(m, ti->name);
        int64_t limit = t >= 0 ? id_limit(m, t, 0) : 0;
        if (limit <= 0) {
            snprintf(how, cap, "zeros (not an embedding index)");
            return;
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t v = (int64_t)(rng_next() % (uint64_t)limit);
            if (ti->dtype == MDL_DTYPE_INT32) ((int32_t *)buf)[i] = (int32_t)v;
            else ((int64_t *)buf)[i] = v;
        }
        snprintf(how, cap, "ids uniform in [0,%lld)", (long long)limit);
        return;
    }
    default:
        snprintf(how, cap, "zeros");
    }
}

/* ---- operator cost (for GFLOP/s) ----------------------------------------------------------- */

/* Floating-point operations of one run of node i, counting a multiply-add as 2; 0 where a rate
   would mean little (element-wise, data movement).  From the runtime layouts of graph.h. */
static double node_flops(const mdl_model *m, const mdl_node_info *ni) {
    mdl_tensor_info out, w;
    if (ni->nout < 1 || ni->nin < 2 || ni->outputs[0] < 0 || ni->inputs[1] < 0) return 0;
    if (mdl_model_tensor_info(m, ni->outputs[0], &out, NULL) || mdl_model_tensor_info(m, ni->inputs[1], &w, NULL))
        return 0;
    double nout = (double)elem_count(&out), nw = (double)elem_count(&w);
    if (!strcmp(ni->op, "FullyConnected") && w.rank == 2) return 2.0 * nout * (double)w.dims[1];
    if (!strcmp(ni->op, "MatMul") && w.rank >= 2) return 2.0 * nout * (double)w.dims[w.rank - 2];
    /* HWIO [KH,KW,Cin/group,Cout]: each output takes KH*KW*Cin/group multiply-adds */
    if (!strcmp(ni->op, "Conv2D") && w.rank == 4 && w.dims[3] > 0) return 2.0 * nout * nw / (double)w.dims[3];
    if (!strcmp(ni->op, "DepthwiseConv2D") && w.rank == 4) return 2.0 * nout * (double)(w.dims[1] * w.dims[2]);
    if ((!strcmp(ni->op, "LSTM") || !strcmp(ni->op, "GRU")) && ni->nin >= 3 && ni->inputs[2] >= 0) {
        mdl_tensor_info x, r;
        if (mdl_model_tensor_info(m, ni->inputs[0], &x, NULL) || mdl_model_tensor_info(m, ni->inputs[2], &r, NULL) ||
            x.rank != 3)
            return 0;
        return 2.0 * (double)(x.dims[0] * x.dims[1]) * (nw + (double)elem_count(&r));
    }
    return 0;
}

/* ---- main ---------------------------------------------------------------------------------- */

typedef struct options {
    const char *model;
    const char *ins[MAX_IO];
    int nin;
    int warmup, iters, threads, blas_threads;
    double seconds;
    int64_t batch;
    bool profile, json, zeros;
    uint64_t seed;
} options;

static bool parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* Returns 0 on success, else the exit status (a message printed). */
static int parse_args(int argc, char **argv, options *o) {
    *o = (options){.warmup = 10, .iters = 0, .threads = 1, .blas_threads = 1, .seconds = 1.0, .seed = 1};
    char msg[512];
    for (int c; (c = tool_getopt(&cli, argc, argv)) != -1;) {
        const char *val = tool_optarg;
        long long v;
        bool ok = true;
        if (c == 256) o->zeros = true;
        else if (c == 263) o->profile = true;
        else if (c == 264) o->json = true;
        else if (c == 'i') {
            if (o->nin >= MAX_IO) return die("too many -i inputs");
            o->ins[o->nin++] = val;
        } else if (c == 259) {
            char *end;
            o->seconds = strtod(val, &end);
            ok = *val && !*end && o->seconds > 0 && o->seconds < 1e6;
        } else if (c == 257) {
            if ((ok = parse_int(val, 0, 1000000, &v))) o->warmup = (int)v;
        } else if (c == 258) {
            if ((ok = parse_int(val, 0, 10000000, &v))) o->iters = (int)v;
        } else if (c == 260) {
            if ((ok = parse_int(val, 1, MDL_MAX_THREADS, &v))) o->threads = (int)v;
        } else if (c == 261) {
            if ((ok = parse_int(val, 0, 1024, &v))) o->blas_threads = (int)v;
        } else if (c == 262) {
            if ((ok = parse_int(val, 1, 1 << 30, &v))) o->batch = v;
        } else if (c == 265) {
            if ((ok = parse_int(val, 0, 0x7fffffffffffffffLL, &v))) o->seed = (uint64_t)v;
        } else if (!o->model) {
            o->model = val;
        } else {
            snprintf(msg, sizeof msg, "more than one model given ('%s' and '%s')", o->model, val);
            return die(msg);
        }
        if (!ok) {
            const char *name = "?";
            for (int k = 0; k < cli.nopts; k++)
                if (cli.opts[k].key == c) name = cli.opts[k].name;
            snprintf(msg, sizeof msg, "bad value '%s' for --%s", val, name);
            return die(msg);
        }
    }
    if (!o->model) return tool_usage_error(&cli, "no model given");
    return 0;
}

/* OpenBLAS reads its thread count from the environment when the library is loaded, before main:
   set it and start again so the request takes effect (once: the second start finds it set). */
static void pin_blas_threads(int threads, char **argv) {
    if (threads <= 0) return;
    char want[16];
    snprintf(want, sizeof want, "%d", threads);
    const char *have = getenv("OPENBLAS_NUM_THREADS");
    if (have && !strcmp(have, want)) return;
    setenv("OPENBLAS_NUM_THREADS", want, 1);
    setenv("OMP_NUM_THREADS", want, 1);
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): go on with the library's own choice; the JSON reports the env */
}

/* Converts an ONNX model into a temporary .mdl file, at --batch if given.  Returns the path
   (static) or NULL with a message printed; *dir gets the temporary directory to remove. */
static const char *convert_onnx(const char *onnx, int64_t batch, char *dir, size_t dircap, double *ms) {
    static char path[4200];
    mdl_error err;
    snprintf(dir, dircap, "%s/mdeploy-bench-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        dir[0] = 0;
        die("cannot create a temporary directory");
        return NULL;
    }
    snprintf(path, sizeof path, "%s/model.mdl", dir);
    uint64_t t0 = now_ns();
    mdl_convert_options co = mdl_convert_options_default();
    if (mdl_convert_onnx(onnx, path, &co, NULL, &err)) {
        die(err.msg);
        return NULL;
    }
    if (batch > 0) {
        /* the first conversion tells the inputs' names and ranks; convert again at the batch */
        mdl_model *m;
        if (mdl_model_load_file(path, NULL, &m, &err)) {
            die(err.msg);
            return NULL;
        }
        if (mdl_model_symbol_count(m)) { /* dynamic dims: the session takes the batch */
            mdl_model_free(m);
            *ms = (double)(now_ns() - t0) / 1e6;
            return path;
        }
        static char names[MDL_CONVERT_MAX_SHAPES][256];
        int n = mdl_model_input_count(m);
        for (int i = 0; i < n && i < MDL_CONVERT_MAX_SHAPES; i++) {
            mdl_tensor_info ti;
            mdl_model_input_info(m, i, &ti);
            if (ti.rank < 1) continue;
            mdl_input_shape *s = &co.input_shapes[co.ninput_shapes++];
            snprintf(names[i], sizeof names[i], "%s", ti.name);
            s->name = names[i];
            s->rank = ti.rank;
            memcpy(s->dims, ti.dims, sizeof(int64_t) * (size_t)ti.rank);
            s->dims[0] = batch;
        }
        mdl_model_free(m);
        if (mdl_convert_onnx(onnx, path, &co, NULL, &err)) {
            die(err.msg);
            return NULL;
        }
    }
    *ms = (double)(now_ns() - t0) / 1e6;
    return path;
}

/* Copies the kept input bytes into the session (the arena does not preserve inputs across
   runs), then runs.  Returns the run's status. */
static mdl_status run_once(mdl_session *s, int nin, void *const *data, const size_t *bytes) {
    for (int i = 0; i < nin; i++) memcpy(mdl_session_input_data(s, i), data[i], bytes[i]);
    return mdl_session_run(s);
}

typedef struct node_stat {
    double ms, share, flops;
} node_stat;

int main(int argc, char **argv) {
    options o;
    int prc = parse_args(argc, argv, &o);
    if (prc) return prc;
    pin_blas_threads(o.blas_threads, argv);
    rng_state = o.seed * 0x9E3779B97F4A7C15ull + 1;

    size_t rss_start = peak_rss_bytes();
    int rc = 1;
    mdl_error err;
    mdl_model *m = NULL;
    mdl_session *s = NULL, *ps = NULL;
    void *data[MAX_IO] = {0};
    size_t bytes[MAX_IO] = {0};
    char how[MAX_IO][64];
    uint64_t *times = NULL, *node_times = NULL;
    node_stat *stats = NULL;
    char tmpdir[4096] = "", a[256], b[64], msg[1024];
    double convert_ms = -1;
    int nin = 0, nout = 0, nnodes = 0, iters = 0, piters = 0;

    const char *path = o.model;
    if (has_suffix(o.model, ".onnx")) {
        path = convert_onnx(o.model, o.batch, tmpdir, sizeof tmpdir, &convert_ms);
        if (!path) goto done;
    }

    uint64_t t0 = now_ns();
    if (mdl_model_load_file(path, NULL, &m, &err)) {
        die(err.msg);
        goto done;
    }
    uint64_t t1 = now_ns();
    /* dynamic dims: the batch (dim 0) at --batch, every other dynamic dim at 1 */
    mdl_shape dyn_shapes[MAX_IO];
    mdl_session_options dyn_opts = mdl_session_options_default();
    if (mdl_model_symbol_count(m) && mdl_model_input_count(m) <= MAX_IO) {
        for (int i = 0; i < mdl_model_input_count(m); i++) {
            mdl_tensor_info ti;
            mdl_model_input_info(m, i, &ti);
            dyn_shapes[i].rank = ti.rank;
            for (int d = 0; d < ti.rank; d++)
                dyn_shapes[i].dims[d] = ti.dims[d] >= 0 ? ti.dims[d] : d == 0 && o.batch > 0 ? o.batch : 1;
        }
        dyn_opts.ninput_shapes = mdl_model_input_count(m);
        dyn_opts.input_shapes = dyn_shapes;
    }
    dyn_opts.threads = o.threads;
    if (mdl_session_create(m, &dyn_opts, &s, &err)) {
        die(err.msg);
        goto done;
    }
    uint64_t t2 = now_ns();
    double load_ms = (double)(t1 - t0) / 1e6, session_ms = (double)(t2 - t1) / 1e6;

    nin = mdl_model_input_count(m);
    nout = mdl_model_output_count(m);
    nnodes = mdl_model_node_count(m);
    if (nin > MAX_IO) {
        die("the model has more inputs than this tool handles");
        goto done;
    }
    if (o.nin && o.nin != nin) {
        snprintf(msg, sizeof msg, "the model takes %d input%s, %d given with -i", nin, nin == 1 ? "" : "s", o.nin);
        die(msg);
        goto done;
    }
    int64_t batch = 1;
    for (int i = 0; i < nin; i++) {
        mdl_tensor_info ti;
        mdl_session_input_info(s, i, &ti);
        if (i == 0 && ti.rank >= 1) batch = ti.dims[0];
        if (o.batch > 0 && ti.rank >= 1 && ti.dims[0] != o.batch) {
            snprintf(msg, sizeof msg,
                     "input '%s' of %s is %s: its batch is %lld, not %lld (shapes are fixed at conversion: "
                     "convert with --input-shape, or give the .onnx file)",
                     ti.name, o.model, tool_shape_str(a, sizeof a, ti.rank, ti.dims), (long long)ti.dims[0],
                     (long long)o.batch);
            die(msg);
            goto done;
        }
        bytes[i] = ti.bytes;
        data[i] = calloc(1, ti.bytes ? ti.bytes : 1);
        if (!data[i]) {
            die("out of memory");
            goto done;
        }
        if (o.nin) {
            mdl_npy x;
            if (mdl_npy_read(o.ins[i], &x, &err)) {
                die(err.msg);
                goto done;
            }
            bool same = x.rank == ti.rank && !memcmp(x.dims, ti.dims, sizeof(int64_t) * (size_t)ti.rank);
            if (!same || x.dtype != ti.dtype) {
                snprintf(msg, sizeof msg, "input %d '%s' (%s) must be %s %s, got %s %s", i, ti.name, o.ins[i],
                         mdl_dtype_name(ti.dtype), tool_shape_str(a, sizeof a, ti.rank, ti.dims),
                         mdl_dtype_name(x.dtype), tool_shape_str(b, sizeof b, x.rank, x.dims));
                mdl_npy_free(&x);
                die(msg);
                goto done;
            }
            memcpy(data[i], x.data, ti.bytes);
            mdl_npy_free(&x);
            snprintf(how[i], sizeof how[i], "from %s", o.ins[i]);
        } else {
            generate_input(m, &ti, data[i], o.zeros, how[i], sizeof how[i]);
        }
    }

    /* warm-up, then size the timed loop from the warm-up's pace when --iters is 0 */
    uint64_t wstart = now_ns();
    int warm = o.warmup > 0 ? o.warmup : (o.iters ? 0 : 1);
    for (int w = 0; w < warm; w++) {
        if (run_once(s, nin, data, bytes)) {
            snprintf(msg, sizeof msg, "run failed: %s", mdl_session_message(s));
            die(msg);
            goto done;
        }
    }
    iters = o.iters;
    if (!iters) {
        double per = warm ? (double)(now_ns() - wstart) / warm : 1e6;
        double n = o.seconds * 1e9 / (per > 1 ? per : 1);
        iters = n < 10 ? 10 : n > 100000 ? 100000 : (int)n;
    }
    times = malloc(sizeof *times * (size_t)iters);
    if (!times) {
        die("out of memory");
        goto done;
    }
    for (int it = 0; it < iters; it++) {
        for (int i = 0; i < nin; i++) memcpy(mdl_session_input_data(s, i), data[i], bytes[i]);
        uint64_t a0 = now_ns();
        mdl_status st = mdl_session_run(s);
        times[it] = now_ns() - a0;
        if (st) {
            snprintf(msg, sizeof msg, "run failed: %s", mdl_session_message(s));
            die(msg);
            goto done;
        }
    }
    uint64_t sum = 0;
    for (int it = 0; it < iters; it++) sum += times[it];
    qsort(times, (size_t)iters, sizeof *times, cmp_u64);
    double med_ms = (double)percentile(times, iters, 0.5) / 1e6;

    /* per-node profile: a second session with timing on, so the latency above carries no
       profiling cost; per-node medians over the runs */
    double total_flops = 0, prof_total_ms = 0;
    if (o.profile) {
        mdl_session_options so = dyn_opts;
        so.profile = true;
        so.threads = o.threads;
        if (mdl_session_create(m, &so, &ps, &err)) {
            die(err.msg);
            goto done;
        }
        piters = iters < 10 ? 10 : iters > 2000 ? 2000 : iters;
        node_times = malloc(sizeof *node_times * (size_t)piters * (size_t)(nnodes ? nnodes : 1));
        stats = calloc((size_t)(nnodes ? nnodes : 1), sizeof *stats);
        if (!node_times || !stats) {
            die("out of memory");
            goto done;
        }
        for (int it = -3; it < piters; it++) { /* 3 untimed warm-up runs of the new session */
            if (run_once(ps, nin, data, bytes)) {
                snprintf(msg, sizeof msg, "run failed: %s", mdl_session_message(ps));
                die(msg);
                goto done;
            }
            if (it < 0) continue;
            for (int k = 0; k < nnodes; k++) node_times[(size_t)k * (size_t)piters + (size_t)it] = mdl_session_node_ns(ps, k);
        }
        for (int k = 0; k < nnodes; k++) {
            uint64_t *row = node_times + (size_t)k * (size_t)piters;
            qsort(row, (size_t)piters, sizeof *row, cmp_u64);
            stats[k].ms = (double)percentile(row, piters, 0.5) / 1e6;
            prof_total_ms += stats[k].ms;
            mdl_node_info ni;
            if (!mdl_model_node_info(m, k, &ni)) stats[k].flops = node_flops(m, &ni);
            total_flops += stats[k].flops;
        }
        for (int k = 0; k < nnodes; k++) stats[k].share = prof_total_ms > 0 ? stats[k].ms / prof_total_ms : 0;
    } else {
        for (int k = 0; k < nnodes; k++) {
            mdl_node_info ni;
            if (!mdl_model_node_info(m, k, &ni)) total_flops += node_flops(m, &ni);
        }
    }

    size_t rss_peak = peak_rss_bytes();
    struct stat_summary {
        double min, median, mean, p90, p99, max;
    } lat = {
        (double)times[0] / 1e6,       med_ms,
        (double)sum / iters / 1e6,    (double)percentile(times, iters, 0.9) / 1e6,
        (double)percentile(times, iters, 0.99) / 1e6, (double)times[iters - 1] / 1e6,
    };
    double runs_per_s = lat.mean > 0 ? 1e3 / lat.mean : 0; /* sustained: runs over the timed loop */
    const char *blas_env = getenv("OPENBLAS_NUM_THREADS");

    if (o.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o.model);
        cJSON_AddStringToObject(j, "name", mdl_model_name(m));
        cJSON_AddStringToObject(j, "mdeploy_version", mdl_version());
        if (convert_ms >= 0) cJSON_AddNumberToObject(j, "convert_ms", convert_ms);
        cJSON_AddNumberToObject(j, "nodes", nnodes);
        cJSON *ji = cJSON_AddArrayToObject(j, "inputs");
        for (int i = 0; i < nin; i++) {
            mdl_tensor_info ti;
            mdl_session_input_info(s, i, &ti);
            cJSON *t = tool_tensor_json(&ti);
            cJSON_AddStringToObject(t, "values", how[i]);
            cJSON_AddItemToArray(ji, t);
        }
        cJSON *jo = cJSON_AddArrayToObject(j, "outputs");
        for (int i = 0; i < nout; i++) {
            mdl_tensor_info ti;
            mdl_session_output_info(s, i, &ti);
            cJSON *t = tool_tensor_json(&ti);
            cJSON_AddItemToArray(jo, t);
        }
        cJSON_AddNumberToObject(j, "batch", (double)batch);
        cJSON_AddNumberToObject(j, "threads", o.threads);
        cJSON_AddNumberToObject(j, "blas_threads", o.blas_threads);
        cJSON_AddStringToObject(j, "openblas_num_threads", blas_env ? blas_env : "");
        cJSON_AddNumberToObject(j, "warmup", o.warmup);
        cJSON_AddNumberToObject(j, "iters", iters);
        cJSON_AddNumberToObject(j, "load_ms", load_ms);
        cJSON_AddNumberToObject(j, "session_ms", session_ms);
        cJSON *jl = cJSON_AddObjectToObject(j, "latency_ms");
        cJSON_AddNumberToObject(jl, "min", lat.min);
        cJSON_AddNumberToObject(jl, "median", lat.median);
        cJSON_AddNumberToObject(jl, "mean", lat.mean);
        cJSON_AddNumberToObject(jl, "p90", lat.p90);
        cJSON_AddNumberToObject(jl, "p99", lat.p99);
        cJSON_AddNumberToObject(jl, "max", lat.max);
        cJSON_AddNumberToObject(j, "runs_per_s", runs_per_s);
        cJSON_AddNumberToObject(j, "samples_per_s", runs_per_s * (double)batch);
        cJSON_AddNumberToObject(j, "gflop_per_run", total_flops / 1e9);
        cJSON_AddNumberToObject(j, "gflops", med_ms > 0 ? total_flops / (med_ms * 1e6) : 0);
        cJSON_AddNumberToObject(j, "arena_bytes", (double)mdl_model_arena_size(m));
        cJSON_AddNumberToObject(j, "activation_bytes", (double)mdl_model_activation_bytes(m));
        cJSON_AddNumberToObject(j, "weight_bytes", (double)mdl_model_weight_bytes(m));
        cJSON_AddNumberToObject(j, "peak_rss_bytes", (double)rss_peak);
        cJSON_AddNumberToObject(j, "rss_before_load_bytes", (double)rss_start);
        if (o.profile) {
            cJSON_AddNumberToObject(j, "profile_iters", piters);
            cJSON_AddNumberToObject(j, "profile_total_ms", prof_total_ms);
            cJSON *jp = cJSON_AddArrayToObject(j, "profile");
            for (int k = 0; k < nnodes; k++) {
                mdl_node_info ni;
                mdl_tensor_info ot;
                if (mdl_model_node_info(m, k, &ni)) continue;
                cJSON *n = cJSON_CreateObject();
                cJSON_AddNumberToObject(n, "index", k);
                cJSON_AddStringToObject(n, "name", ni.name);
                cJSON_AddStringToObject(n, "op", ni.op);
                cJSON *sh = cJSON_AddArrayToObject(n, "shape");
                if (ni.nout > 0 && ni.outputs[0] >= 0 && !mdl_model_tensor_info(m, ni.outputs[0], &ot, NULL))
                    for (int32_t d = 0; d < ot.rank; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)ot.dims[d]));
                cJSON_AddNumberToObject(n, "ms", stats[k].ms);
                cJSON_AddNumberToObject(n, "share", stats[k].share);
                cJSON_AddNumberToObject(n, "gflop", stats[k].flops / 1e9);
                if (stats[k].flops > 0 && stats[k].ms > 0) cJSON_AddNumberToObject(n, "gflops", stats[k].flops / (stats[k].ms * 1e6));
                else cJSON_AddNullToObject(n, "gflops");
                cJSON_AddItemToArray(jp, n);
            }
        }
        char *text = cJSON_Print(j);
        puts(text);
        free(text);
        cJSON_Delete(j);
    } else {
        const char *name = mdl_model_name(m);
        printf("model       %s%s%s%s  (%d nodes)\n", o.model, *name ? " '" : "", name, *name ? "'" : "", nnodes);
        for (int i = 0; i < nin; i++) {
            mdl_tensor_info ti;
            mdl_session_input_info(s, i, &ti);
            printf("input %-5d %s %s %s: %s\n", i, ti.name, mdl_dtype_name(ti.dtype), tool_shape_str(a, sizeof a, ti.rank, ti.dims), how[i]);
        }
        printf("setup       batch %lld, threads %d, BLAS threads %s, warm-up %d, %d timed runs\n",
               (long long)batch, o.threads, blas_env ? blas_env : "(library default)", o.warmup, iters);
        if (convert_ms >= 0) printf("convert     %.3f ms (from ONNX, not part of load)\n", convert_ms);
        printf("load        %.3f ms   session %.3f ms   total %.3f ms\n", load_ms, session_ms, load_ms + session_ms);
        printf("latency ms  min %.4f  median %.4f  mean %.4f  p90 %.4f  p99 %.4f  max %.4f\n", lat.min, lat.median,
               lat.mean, lat.p90, lat.p99, lat.max);
        printf("throughput  %.1f runs/s, %.1f samples/s", runs_per_s, runs_per_s * (double)batch);
        if (total_flops > 0) printf(", %.2f GFLOP/s (%.4f GFLOP per run)", total_flops / (med_ms * 1e6), total_flops / 1e9);
        printf("\n");
        char h1[32], h2[32], h3[32], h4[32];
        printf("memory      arena %s (activations %s), weights %s, peak RSS %s (%s before load)\n",
               human_bytes(h1, sizeof h1, (double)mdl_model_arena_size(m)),
               human_bytes(h2, sizeof h2, (double)mdl_model_activation_bytes(m)),
               human_bytes(h3, sizeof h3, (double)mdl_model_weight_bytes(m)), human_bytes(h4, sizeof h4, (double)rss_peak),
               human_bytes(a, sizeof a, (double)rss_start));
        if (o.profile) {
            printf("\nper node (median of %d profiled runs; node times sum to %.4f ms):\n", piters, prof_total_ms);
            printf("%4s  %-32s %-16s %-18s %10s %7s %8s\n", "#", "node", "op", "output shape", "time us", "share", "GFLOP/s");
            for (int k = 0; k < nnodes; k++) {
                mdl_node_info ni;
                mdl_tensor_info ot;
                if (mdl_model_node_info(m, k, &ni)) continue;
                a[0] = 0;
                if (ni.nout > 0 && ni.outputs[0] >= 0 && !mdl_model_tensor_info(m, ni.outputs[0], &ot, NULL))
                    tool_shape_str(a, sizeof a, ot.rank, ot.dims);
                if (stats[k].flops > 0 && stats[k].ms > 0) snprintf(b, sizeof b, "%.2f", stats[k].flops / (stats[k].ms * 1e6));
                else snprintf(b, sizeof b, "-");
                printf("%4d  %-32.32s %-16s %-18s %10.2f %6.1f%% %8s\n", k, ni.name, ni.op, a, stats[k].ms * 1e3,
                       stats[k].share * 100, b);
            }
            /* the same by operator type, largest first */
            printf("\nby operator type:\n%-16s %5s %10s %7s %8s\n", "op", "count", "time us", "share", "GFLOP/s");
            bool *done_op = calloc((size_t)(nnodes ? nnodes : 1), sizeof *done_op);
            for (int pass = 0; done_op && pass < nnodes; pass++) {
                int best = -1;
                double best_ms = -1, best_fl = 0;
                int best_n = 0;
                for (int k = 0; k < nnodes; k++) {
                    mdl_node_info ni;
                    if (done_op[k] || mdl_model_node_info(m, k, &ni)) continue;
                    double ms = 0, fl = 0;
                    int n = 0;
                    for (int q = 0; q < nnodes; q++) {
                        mdl_node_info nq;
                        if (!mdl_model_node_info(m, q, &nq) && !strcmp(nq.op, ni.op)) {
                            ms += stats[q].ms;
                            fl += stats[q].flops;
                            n++;
                        }
                    }
                    if (ms > best_ms) best = k, best_ms = ms, best_fl = fl, best_n = n;
                }
                if (best < 0) break;
                mdl_node_info nb;
                mdl_model_node_info(m, best, &nb);
                for (int q = 0; q < nnodes; q++) {
                    mdl_node_info nq;
                    if (!mdl_model_node_info(m, q, &nq) && !strcmp(nq.op, nb.op)) done_op[q] = true;
                }
                if (best_fl > 0 && best_ms > 0) snprintf(b, sizeof b, "%.2f", best_fl / (best_ms * 1e6));
                else snprintf(b, sizeof b, "-");
                printf("%-16s %5d %10.2f %6.1f%% %8s\n", nb.op, best_n, best_ms * 1e3,
                       prof_total_ms > 0 ? best_ms / prof_total_ms * 100 : 0, b);
            }
            free(done_op);
        }
    }
    rc = 0;
done:
    for (int i = 0; i < MAX_IO; i++) free(data[i]);
    free(times);
    free(node_times);
    free(stats);
    mdl_session_free(ps);
    mdl_session_free(s);
    mdl_model_free(m);
    if (tmpdir[0]) {
        snprintf(msg, sizeof msg, "%s/model.mdl", tmpdir);
        remove(msg);
        rmdir(tmpdir);
    }
    return rc;
}
