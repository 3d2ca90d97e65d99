/* mdeploy-bench, run as a user would (the smoke run `make check` does of the benchmark tool): on
   a small MLP built with the builder, the JSON report has every field and the numbers are sane
   (ordered percentiles, the model's own sizes, a profile row per node with shares summing to 1);
   generated ids are valid for an embedding lookup (a run with an out-of-range id would fail);
   given inputs and the error paths give exit status 1 and a message naming the cause. */
#include "common/harness.h"
#include "common/models.h"
#include "mdeploy/npy.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIN MDL_BUILD_DIR "/bin/"

static tm_mlp P = {3, 8, 16, 3, 0, 0, 0, 0, 0, 0};

/* ids [2,5] int64 -> Gather from a [7,4] table -> [2,5,4]: runs fail on an id outside [0,7). */
static void write_embedding_model(const char *path) {
    mdl_error err;
    mdl_builder *b;
    assert_int_equal(mdl_builder_create(NULL, &b, &err), MDL_OK);
    float table[7 * 4];
    for (int i = 0; i < 28; i++) table[i] = (float)i;
    int ids = mdl_builder_tensor(b, "ids", MDL_DTYPE_INT64, 2, (int64_t[]){2, 5}, NULL);
    int tab = mdl_builder_tensor(b, "table", MDL_DTYPE_FLOAT32, 2, (int64_t[]){7, 4}, table);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    mdl_builder_node(b, MDL_OP_GATHER, "lookup", 2, (int[]){tab, ids}, 1, &y, NULL);
    mdl_builder_add_input(b, ids);
    mdl_builder_add_output(b, y);
    assert_int_equal(mdl_builder_write_file(b, path, &err), MDL_OK);
    mdl_builder_free(b);
}

static int setup(void **state) {
    (void)state;
    void *data;
    size_t size;
    if (tm_build_mlp(&P, 23, &data, &size)) return -1;
    th_write_file(th_tmp("mlp.mdl"), data, size);
    free(data);
    float x[24];
    th_fill_uniform(x, 24, -1, 1);
    mdl_error err;
    if (mdl_npy_write(th_tmp("x.npy"), MDL_DTYPE_FLOAT32, 2, (int64_t[]){3, 8}, x, &err)) return -1;
    if (mdl_npy_write(th_tmp("x_bad.npy"), MDL_DTYPE_FLOAT32, 2, (int64_t[]){8, 3}, x, &err)) return -1;
    int64_t bad_ids[10] = {0, 1, 2, 3, 4, 5, 6, 7, 0, 0}; /* 7 is out of range */
    if (mdl_npy_write(th_tmp("bad_ids.npy"), MDL_DTYPE_INT64, 2, (int64_t[]){2, 5}, bad_ids, &err)) return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tm_mlp_free(&P);
    th_system("rm -rf %s", th_tmpdir());
    return 0;
}

static cJSON *run_json(const char *args) {
    char cmd[2048];
    const char *msg;
    snprintf(cmd, sizeof cmd, BIN "mdeploy-bench %s --json >%s", args, th_tmp("out.json"));
    int rc = th_run_stderr(&msg, cmd);
    if (rc) fail_msg("mdeploy-bench %s: exit %d: %s", args, rc, msg);
    char *text = th_read_file(th_tmp("out.json"), NULL);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    if (!cJSON_IsNumber(v)) fail_msg("field '%s' missing or not a number", key);
    return v->valuedouble;
}

static void test_json_report(void **state) {
    (void)state;
    char args[1024];
    snprintf(args, sizeof args, "%s --warmup 3 --iters 50 --profile", th_tmp("mlp.mdl"));
    cJSON *j = run_json(args);
    assert_int_equal((int)num(j, "iters"), 50);
    assert_int_equal((int)num(j, "warmup"), 3);
    assert_int_equal((int)num(j, "batch"), 3);
    assert_int_equal((int)num(j, "threads"), 1);
    assert_string_equal(cJSON_GetObjectItem(j, "openblas_num_threads")->valuestring, "1");
    assert_int_equal((int)num(j, "nodes"), 5);
    double load = num(j, "load_ms"), session = num(j, "session_ms");
    assert_true(load > 0 && load < 1000);
    assert_true(session > 0 && session < 1000);

    const cJSON *lat = cJSON_GetObjectItem(j, "latency_ms");
    assert_non_null(lat);
    double mn = num(lat, "min"), med = num(lat, "median"), p90 = num(lat, "p90"), p99 = num(lat, "p99"),
           mx = num(lat, "max"), mean = num(lat, "mean");
    assert_true(mn > 0);
    assert_true(mn <= med && med <= p90 && p90 <= p99 && p99 <= mx);
    assert_true(mn <= mean && mean <= mx);
    double rps = num(j, "runs_per_s");
    assert_true(rps > 0);
    assert_true(num(j, "samples_per_s") > 2.99 * rps && num(j, "samples_per_s") < 3.01 * rps);

    /* the model's own sizes: weights of fc1..fc3 */
    assert_int_equal((int)num(j, "weight_bytes"), 4 * (16 * 8 + 16 + 16 * 16 + 16 + 3 * 16 + 3));
    assert_true(num(j, "arena_bytes") >= num(j, "activation_bytes"));
    assert_true(num(j, "activation_bytes") >= 4 * 3 * 16); /* at least one hidden activation */
    assert_true(num(j, "peak_rss_bytes") >= num(j, "rss_before_load_bytes"));
    assert_true(num(j, "peak_rss_bytes") > 1e5);
    /* FLOPs per run: 2 * batch * (8*16 + 16*16 + 16*3) multiply-adds */
    assert_true(fabs(num(j, "gflop_per_run") * 1e9 - 2.0 * 3 * (8 * 16 + 16 * 16 + 16 * 3)) < 1.0);

    const cJSON *in = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "inputs"), 0);
    assert_string_equal(cJSON_GetObjectItem(in, "dtype")->valuestring, "float32");
    assert_non_null(strstr(cJSON_GetObjectItem(in, "values")->valuestring, "uniform"));

    const cJSON *prof = cJSON_GetObjectItem(j, "profile");
    assert_int_equal(cJSON_GetArraySize(prof), 5);
    double share = 0;
    int fc = 0;
    for (int k = 0; k < 5; k++) {
        const cJSON *n = cJSON_GetArrayItem(prof, k);
        assert_int_equal((int)num(n, "index"), k);
        assert_true(num(n, "ms") >= 0);
        share += num(n, "share");
        const char *op = cJSON_GetObjectItem(n, "op")->valuestring;
        if (!strcmp(op, "FullyConnected")) {
            fc++;
            assert_true(num(n, "gflop") > 0);
        } else {
            assert_true(cJSON_IsNull(cJSON_GetObjectItem(n, "gflops")));
        }
        assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(n, "shape")) == 2);
    }
    assert_int_equal(fc, 3);
    assert_true(share > 0.999 && share < 1.001);
    cJSON_Delete(j);
}

static void test_text_report(void **state) {
    (void)state;
    char cmd[1024];
    const char *msg;
    snprintf(cmd, sizeof cmd, BIN "mdeploy-bench %s --iters 20 --profile >%s", th_tmp("mlp.mdl"), th_tmp("out.txt"));
    assert_int_equal(th_run_stderr(&msg, cmd), 0);
    char *text = th_read_file(th_tmp("out.txt"), NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "latency ms"));
    assert_non_null(strstr(text, "median"));
    assert_non_null(strstr(text, "by operator type"));
    assert_non_null(strstr(text, "FullyConnected"));
    free(text);
}

static void test_generated_ids_are_valid(void **state) {
    (void)state;
    write_embedding_model(th_tmp("emb.mdl"));
    char args[1024];
    snprintf(args, sizeof args, "%s --iters 30 --seed 5", th_tmp("emb.mdl"));
    cJSON *j = run_json(args);
    const cJSON *in = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "inputs"), 0);
    assert_string_equal(cJSON_GetObjectItem(in, "dtype")->valuestring, "int64");
    assert_non_null(strstr(cJSON_GetObjectItem(in, "values")->valuestring, "[0,7)"));
    assert_int_equal((int)num(j, "iters"), 30);
    cJSON_Delete(j);
    /* the same model fails on an out-of-range id given with -i: the tool reports the run error */
    char cmd[1024];
    const char *msg;
    snprintf(cmd, sizeof cmd, BIN "mdeploy-bench %s -i %s --iters 5 >/dev/null", th_tmp("emb.mdl"), th_tmp("bad_ids.npy"));
    assert_int_equal(th_run_stderr(&msg, cmd), 1);
    assert_non_null(strstr(msg, "run failed"));
    assert_non_null(strstr(msg, "lookup"));
}

static void test_given_inputs(void **state) {
    (void)state;
    char args[1024];
    snprintf(args, sizeof args, "%s -i %s --iters 10 --batch 3", th_tmp("mlp.mdl"), th_tmp("x.npy"));
    cJSON *j = run_json(args);
    const cJSON *in = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "inputs"), 0);
    assert_non_null(strstr(cJSON_GetObjectItem(in, "values")->valuestring, "x.npy"));
    cJSON_Delete(j);
}

static void test_errors(void **state) {
    (void)state;
    char cmd[1024];
    const char *msg;
    assert_int_equal(th_run_stderr(&msg, BIN "mdeploy-bench /nonexistent/model.mdl >/dev/null"), 1);
    assert_non_null(strstr(msg, "/nonexistent/model.mdl"));
    /* a bad command line: exit status 2, the message points to --help */
    assert_int_equal(th_run_stderr(&msg, BIN "mdeploy-bench >/dev/null"), 2);
    assert_non_null(strstr(msg, "no model given"));
    assert_non_null(strstr(msg, "--help"));
    snprintf(cmd, sizeof cmd, BIN "mdeploy-bench %s --frobnicate >/dev/null", th_tmp("mlp.mdl"));
    assert_int_equal(th_run_stderr(&msg, cmd), 2);
    assert_non_null(strstr(msg, "--frobnicate"));
    snprintf(cmd, sizeof cmd, BIN "mdeploy-bench %s --iters >/dev/null", th_tmp("mlp.mdl"));
    assert_int_equal(th_run_stderr(&msg, cmd), 2);
    assert_non_null(strstr(msg, "'--iters' needs a value"));
    snprintf(cmd, sizeof cmd, BIN "mdeploy-bench %s --iters many >/dev/null", th_tmp("mlp.mdl"));
    assert_int_equal(th_run_stderr(&msg, cmd), 1);
    assert_non_null(strstr(msg, "many"));
    snprintf(cmd, sizeof cmd, BIN "mdeploy-bench %s --batch 4 >/dev/null", th_tmp("mlp.mdl"));
    assert_int_equal(th_run_stderr(&msg, cmd), 1);
    assert_non_null(strstr(msg, "batch is 3, not 4"));
    snprintf(cmd, sizeof cmd, BIN "mdeploy-bench %s -i %s >/dev/null", th_tmp("mlp.mdl"), th_tmp("x_bad.npy"));
    assert_int_equal(th_run_stderr(&msg, cmd), 1);
    assert_non_null(strstr(msg, "[3,8]"));
    assert_non_null(strstr(msg, "[8,3]"));
    snprintf(cmd, sizeof cmd, BIN "mdeploy-bench %s -i %s -i %s >/dev/null", th_tmp("mlp.mdl"), th_tmp("x.npy"),
             th_tmp("x.npy"));
    assert_int_equal(th_run_stderr(&msg, cmd), 1);
    assert_non_null(strstr(msg, "takes 1 input"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_report),      cmocka_unit_test(test_text_report),
        cmocka_unit_test(test_generated_ids_are_valid), cmocka_unit_test(test_given_inputs),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
