#include "harness.h"

#include "ops/ops.h"
#ifdef MDL_HAVE_X86_SIMD
#include "ops/x86/x86.h"
#include "graph/threads.h"
#include "graph/util.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

th_tensor th_tensor_make(mdl_dtype dtype, int rank, const int64_t *dims, const void *src) {
    th_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    t.rank = rank;
    t.count = 1;
    for (int i = 0; i < rank; i++) {
        t.dims[i] = dims[i];
        t.count *= dims[i];
    }
    size_t bytes = (size_t)t.count * mdl_dtype_size(dtype);
    t.data = calloc(bytes ? bytes : 1, 1);
    if (src && bytes) memcpy(t.data, src, bytes);
    return t;
}

th_tensor th_tensor_absent(void) {
    th_tensor t;
    memset(&t, 0, sizeof t);
    t.rank = -1;
    return t;
}

void th_tensor_quant(th_tensor *t, int n, const float *scale, const int64_t *zero_point, int axis) {
    t->nquant = n;
    t->scale = scale;
    t->zero_point = zero_point;
    t->quant_axis = axis;
}

static void set_quant(mdl__tensor *t, const th_tensor *src) {
    t->nquant = src->nquant;
    t->quant_axis = src->quant_axis;
    t->scale = src->scale;
    t->zero_point = src->zero_point;
}

void th_tensor_free(th_tensor *t) {
    free(t->data);
    t->data = NULL;
}

static mdl__pool *th_pool;
static int th_workers = 1;

void th_set_threads(int n) {
    mdl__pool_free(th_pool);
    th_pool = NULL;
    th_workers = 1;
    if (n > 1) {
        mdl_error err;
        assert_int_equal(mdl__pool_create(mdl__allocator_or_default(NULL), n, &th_pool, &err), MDL_OK);
        th_workers = n;
    }
}

mdl_status th_run_op(mdl_op op, const mdl_op_options *options, int nin, const th_tensor *in,
                     int nout, th_tensor *out, mdl_error *err) {
    mdl_op_options defaults = mdl_op_options_default(op);
    static mdl__tensor tin[MDL_MAX_NODE_IO], tout[MDL_MAX_NODE_IO];
    mdl__kctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.op = op;
    ctx.name = "test";
    ctx.opt = options ? options : &defaults;
    ctx.nin = nin;
    ctx.nout = nout;
    ctx.err = err;
    for (int i = 0; i < nin; i++) {
        if (in[i].rank < 0) continue;
        mdl__tensor *t = &tin[i];
        memset(t, 0, sizeof *t);
        t->name = "in";
        t->dtype = in[i].dtype;
        t->rank = in[i].rank;
        memcpy(t->dims, in[i].dims, sizeof t->dims);
        t->count = in[i].count;
        t->bytes = (size_t)t->count * mdl_dtype_size(t->dtype);
        t->data = in[i].constant ? in[i].data : NULL;
        set_quant(t, &in[i]);
        t->sparse = in[i].sparse;
        t->sparse_transposed = in[i].sparse_transposed;
        ctx.in[i] = t;
        ctx.in_data[i] = in[i].data;
    }
    /* Outputs given with rank >= 0 are "declared" (RESHAPE needs that). */
    for (int i = 0; i < nout; i++) {
        if (out[i].declared || out[i].nquant > 0) {
            mdl__tensor *t = &tout[i];
            memset(t, 0, sizeof *t);
            t->dtype = out[i].dtype;
            t->rank = out[i].rank;
            memcpy(t->dims, out[i].dims, sizeof t->dims);
            set_quant(t, &out[i]);
            ctx.out[i] = t;
        }
    }
    const mdl__kernel *k = mdl__kernel_find(op, nin > 0 && in[0].rank >= 0 ? in[0].dtype
                                                                            : MDL_DTYPE_FLOAT32);
    if (!k) {
        if (err) {
            err->status = MDL_UNSUPPORTED;
            strcpy(err->msg, "no kernel");
        }
        return MDL_UNSUPPORTED;
    }
    mdl_status st = k->prepare(&ctx);
    if (st != MDL_OK) return st;
    for (int i = 0; i < nout; i++) {
        mdl__shape *s = &ctx.out_shape[i];
        th_tensor q = out[i];
        out[i] = th_tensor_make(s->dtype, s->rank, s->dims, NULL);
        th_tensor_quant(&out[i], q.nquant, q.scale, q.zero_point, q.quant_axis);
        out[i].declared = q.declared;
        mdl__tensor *t = &tout[i];
        memset(t, 0, sizeof *t);
        t->name = "out";
        t->dtype = s->dtype;
        t->rank = s->rank;
        memcpy(t->dims, s->dims, sizeof t->dims);
        t->count = out[i].count;
        t->bytes = (size_t)t->count * mdl_dtype_size(t->dtype);
        set_quant(t, &out[i]);
        ctx.out[i] = t;
        ctx.out_data[i] = out[i].data;
    }
    void *packed = NULL;
    if (k->pack && ctx.packed_bytes) {
        /* as the loader does: once, from the constant inputs, 64-byte aligned */
        packed = aligned_alloc(64, (ctx.packed_bytes + 63) & ~(size_t)63);
        memset(packed, 0x5A, ctx.packed_bytes);
        ctx.packed = packed;
        st = k->pack(&ctx);
        if (st != MDL_OK) {
            free(packed);
            return st;
        }
    }
    void *scratch = NULL;
    if (ctx.scratch_bytes) {
        scratch = aligned_alloc(16, (ctx.scratch_bytes + 15) & ~(size_t)15);
        memset(scratch, 0xA5, ctx.scratch_bytes); /* garbage: kernels must not assume zeroes */
    }
    ctx.scratch = scratch;
    /* th_set_threads: the kernel gets the pool and each other worker its own (garbage) scratch */
    void *wscratch[MDL_MAX_THREADS] = {0};
    mdl__par par = {0};
    if (th_pool) {
        for (int w = 0; w < th_workers - 1; w++) {
            wscratch[w] = aligned_alloc(64, (ctx.scratch_bytes + 64) & ~(size_t)63);
            memset(wscratch[w], 0xA5, ctx.scratch_bytes);
        }
        par = (mdl__par){.nworkers = th_workers, .run = mdl__pool_run, .pool = th_pool,
                         .worker_scratch = wscratch, .worker_scratch_bytes = ctx.scratch_bytes};
        ctx.par = &par;
    }
    st = k->run(&ctx);
    for (int w = 0; w < th_workers - 1; w++) free(wscratch[w]);
    free(scratch);
    free(packed);
    if (st == MDL_OK)
        for (int i = 0; i < nout; i++) {
            const uint8_t *b = out[i].data;
            size_t nb = (size_t)out[i].count * mdl_dtype_size(out[i].dtype);
            for (size_t j = 0; j < nb; j++) th_digest = (th_digest ^ b[j]) * 1099511628211ull;
        }
    return st;
}

uint64_t th_digest = 1469598103934665603ull;

static uint64_t th_state = 0x9E3779B97F4A7C15ull;

void th_seed(uint64_t seed) { th_state = seed ? seed * 0x9E3779B97F4A7C15ull : 1; }

uint64_t th_rand_u64(void) {
    uint64_t x = th_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return th_state = x;
}

float th_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((th_rand_u64() >> 11) * (1.0 / 9007199254740992.0));
}

int64_t th_rand_int(int64_t lo, int64_t hi) {
    return lo + (int64_t)(th_rand_u64() % (uint64_t)(hi - lo + 1));
}

void th_fill_uniform(float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = th_uniform(lo, hi);
}

double th_max_rel_err(const float *got, const float *ref, int64_t n) {
    double scale = 1e-6, err = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)ref[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (isnan(got[i]) != isnan(ref[i])) return INFINITY;
        if (d > err) err = d;
    }
    return err / scale;
}

#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char th_dir[64];

static void th_remove_tmpdir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", th_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", th_dir);
}

const char *th_tmpdir(void) {
    if (!th_dir[0]) {
        snprintf(th_dir, sizeof th_dir, "/tmp/mdl-test.XXXXXX");
        if (!mkdtemp(th_dir)) fail_msg("mkdtemp failed");
        atexit(th_remove_tmpdir);
    }
    return th_dir;
}

const char *th_tmp(const char *name) {
    static char bufs[8][512];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 512, "%s/%s", th_tmpdir(), name);
    return b;
}

bool th_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

size_t th_file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

const char *th_tool(const char *name) {
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ & 3];
    /* the test binary is $(B)/tests/DIR/test_x; the tools are in $(B)/bin */
    char self[400];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) fail_msg("readlink /proc/self/exe failed");
    self[n] = 0;
    *strrchr(self, '/') = 0;
    snprintf(b, 512, "%s/../../bin/%s", self, name);
    return b;
}

void *th_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = aligned_alloc(16, ((size_t)n + 16) & ~(size_t)15);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) p[n] = '\0';
    if (size) *size = (size_t)n;
    return p;
}

bool th_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, size, f) == size;
    return (fclose(f) == 0) && ok;
}

int th_system(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc)) return -1;
    return WEXITSTATUS(rc);
}

int64_t th_count(int rank, const int64_t *dims) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    return n;
}

void th_unravel(int64_t flat, int rank, const int64_t *dims, int64_t *idx) {
    for (int d = rank - 1; d >= 0; d--) {
        idx[d] = flat % dims[d];
        flat /= dims[d];
    }
}

int64_t th_ravel(const int64_t *idx, int rank, const int64_t *dims) {
    int64_t f = 0;
    for (int d = 0; d < rank; d++) f = f * dims[d] + idx[d];
    return f;
}

void *th_rand_data(mdl_dtype dt, int64_t n) {
    size_t es = mdl_dtype_size(dt);
    unsigned char *p = malloc((size_t)n * es + 8);
    for (int64_t i = 0; i < n; i++) {
        switch (dt) {
        case MDL_DTYPE_FLOAT32: ((float *)p)[i] = th_uniform(-100, 100); break;
        case MDL_DTYPE_INT8: ((int8_t *)p)[i] = (int8_t)th_rand_int(-128, 127); break;
        case MDL_DTYPE_UINT8: p[i] = (uint8_t)th_rand_int(0, 255); break;
        case MDL_DTYPE_INT32: ((int32_t *)p)[i] = (int32_t)th_rand_u64(); break;
        case MDL_DTYPE_INT64: ((int64_t *)p)[i] = (int64_t)th_rand_u64(); break;
        case MDL_DTYPE_BOOL: p[i] = (uint8_t)th_rand_int(0, 1); break;
        default: break;
        }
    }
    return p;
}

#ifdef MDL_HAVE_X86_SIMD
/* Reruns argv0 at each level below top. */
static int rerun_below(int top, const char *argv0) {
    int failed = 0;
    if (!getenv("MDL_CPU_LEVEL"))
        for (int lv = top - 1; lv >= 0; lv--) {
            printf("---- again with MDL_CPU_LEVEL=%d\n", lv);
            fflush(stdout);
            if (th_system("MDL_CPU_LEVEL=%d '%s'", lv, argv0) != 0) failed++;
        }
    return failed;
}
#endif

int th_rerun_lower_cpu_levels(const char *argv0) {
#ifdef MDL_HAVE_X86_SIMD
    return rerun_below(mdl__cpu_level(), argv0);
#else
    (void)argv0;
    return 0;
#endif
}

#define TH_DIGEST_ENV "MDL_TEST_OUTPUT_DIGEST"

int th_same_outputs_at_lower_levels(const char *argv0) {
    const char *path = getenv(TH_DIGEST_ENV);
    if (path) { /* a rerun: compare with the first run's digest */
        unsigned long long want = 0;
        FILE *f = fopen(path, "r");
        int bad = !f || fscanf(f, "%llx", &want) != 1 || want != th_digest;
        if (f) fclose(f);
        if (bad)
            printf("outputs differ from the run at the CPU's own level (digest %llx, want %llx)\n",
                   (unsigned long long)th_digest, want);
        return bad;
    }
    if (getenv("MDL_CPU_LEVEL")) return 0;
    path = th_tmp("output_digest");
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "%llx\n", (unsigned long long)th_digest);
    fclose(f);
    setenv(TH_DIGEST_ENV, path, 1);
    /* the int8 kernels also differ between AVX-512 with and without AMX */
#ifdef MDL_HAVE_X86_SIMD
    int failed = rerun_below(mdl__cpu_sublevel(), argv0);
#else
    int failed = th_rerun_lower_cpu_levels(argv0);
#endif
    unsetenv(TH_DIGEST_ENV);
    return failed;
}

int th_run_stderr(const char **msg, const char *cmd) {
    static char *text;
    free(text);
    int rc = th_system("%s 2>%s", cmd, th_tmp("stderr.txt"));
    text = th_read_file(th_tmp("stderr.txt"), NULL);
    *msg = text ? text : "";
    return rc;
}
