/* The command-line tools, run as a user would: mdeploy-run and mdeploy-inspect on a built model,
   outputs checked against the independent reference, and every error path: exit status 1 and a
   one-line message naming the cause. */
#include "common/harness.h"
#include "common/models.h"
#include "mdeploy/npy.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIN MDL_BUILD_DIR "/bin/"

static tm_mlp P = {2, 8, 16, 3, 0, 0, 0, 0, 0, 0};
static float X[16];

static int setup(void **state) {
    (void)state;
    void *data;
    size_t size;
    if (tm_build_mlp(&P, 17, &data, &size)) return -1;
    th_write_file(th_tmp("mlp.mdl"), data, size);
    free(data);
    th_fill_uniform(X, 16, -1, 1);
    mdl_error err;
    if (mdl_npy_write(th_tmp("x.npy"), MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 8}, X, &err)) return -1;
    if (mdl_npy_write(th_tmp("x_bad_shape.npy"), MDL_DTYPE_FLOAT32, 2, (int64_t[]){8, 2}, X, &err)) return -1;
    int32_t ints[16] = {0};
    if (mdl_npy_write(th_tmp("x_int.npy"), MDL_DTYPE_INT32, 2, (int64_t[]){2, 8}, ints, &err)) return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tm_mlp_free(&P);
    th_system("rm -rf %s", th_tmpdir());
    return 0;
}

static int lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void test_run_writes_correct_outputs(void **state) {
    (void)state;
    char cmd[1024];
    const char *msg;
    snprintf(cmd, sizeof cmd, BIN "mdeploy-run %s -i %s -o %s --json >%s", th_tmp("mlp.mdl"),
             th_tmp("x.npy"), th_tmp("y.npy"), th_tmp("run.json"));
    assert_int_equal(th_run_stderr(&msg, cmd), 0);
    mdl_npy y;
    mdl_error err;
    assert_int_equal(mdl_npy_read(th_tmp("y.npy"), &y, &err), MDL_OK);
    assert_int_equal(y.dtype, MDL_DTYPE_FLOAT32);
    assert_int_equal(y.rank, 2);
    assert_int_equal(y.dims[0], 2);
    assert_int_equal(y.dims[1], 3);
    float ref[6];
    tm_mlp_reference(&P, X, ref);
    th_assert_close(y.data, ref, 6, 1e-5);
    mdl_npy_free(&y);
    char *text = th_read_file(th_tmp("run.json"), NULL);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    cJSON *out = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "outputs"), 0);
    assert_string_equal(cJSON_GetObjectItem(out, "dtype")->valuestring, "float32");
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(out, "shape"), 1)->valueint, 3);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, "run_ms")));
    cJSON_Delete(j);
    free(text);
}

static void test_inspect(void **state) {
    (void)state;
    char cmd[1024];
    const char *msg;
    snprintf(cmd, sizeof cmd, BIN "mdeploy-inspect %s --json >%s", th_tmp("mlp.mdl"), th_tmp("inspect.json"));
    assert_int_equal(th_run_stderr(&msg, cmd), 0);
    char *text = th_read_file(th_tmp("inspect.json"), NULL);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "name")->valuestring, "test-mlp");
    cJSON *ops = cJSON_GetObjectItem(j, "operators");
    assert_int_equal(cJSON_GetArraySize(ops), 5);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(ops, 3), "op")->valuestring, "Add");
    assert_int_equal((int)cJSON_GetObjectItem(j, "weight_bytes")->valuedouble,
                     4 * (16 * 8 + 16 + 16 * 16 + 16 + 3 * 16 + 3));
    assert_true(cJSON_GetObjectItem(j, "activation_bytes")->valuedouble > 0);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metadata"), "license")->valuestring, "MIT");
    cJSON_Delete(j);
    free(text);
    snprintf(cmd, sizeof cmd, BIN "mdeploy-inspect %s >%s", th_tmp("mlp.mdl"), th_tmp("inspect.txt"));
    assert_int_equal(th_run_stderr(&msg, cmd), 0);
    text = th_read_file(th_tmp("inspect.txt"), NULL);
    assert_non_null(strstr(text, "residual"));
    assert_non_null(strstr(text, "h1 float32 [2,16]"));
    free(text);
}

static void expect_status(const char *args, int want, const char *needle) {
    char cmd[2048];
    const char *msg;
    snprintf(cmd, sizeof cmd, BIN "%s >/dev/null", args);
    int rc = th_run_stderr(&msg, cmd);
    if (rc != want || lines(msg) != 1 || !strstr(msg, needle))
        fail_msg("`%s`: exit %d, stderr '%s' (want exit %d and one line containing '%s')", args, rc, msg, want,
                 needle);
}

static void expect_error(const char *args, const char *needle) { expect_status(args, 1, needle); }

static void test_errors(void **state) {
    (void)state;
    char a[1024];
    th_write_file(th_tmp("garbage.mdl"), "this is not a model at all", 26);
    expect_error("mdeploy-run /nonexistent.mdl -i x.npy", "/nonexistent.mdl");
    snprintf(a, sizeof a, "mdeploy-run %s -i %s", th_tmp("garbage.mdl"), th_tmp("x.npy"));
    expect_error(a, "identifier");
    snprintf(a, sizeof a, "mdeploy-run %s", th_tmp("mlp.mdl"));
    expect_error(a, "takes 1 input, 0 given");
    snprintf(a, sizeof a, "mdeploy-run %s -i %s -i %s", th_tmp("mlp.mdl"), th_tmp("x.npy"), th_tmp("x.npy"));
    expect_error(a, "takes 1 input, 2 given");
    snprintf(a, sizeof a, "mdeploy-run %s -i %s", th_tmp("mlp.mdl"), th_tmp("x_bad_shape.npy"));
    expect_error(a, "must be float32 [2,8], got float32 [8,2]");
    snprintf(a, sizeof a, "mdeploy-run %s -i %s", th_tmp("mlp.mdl"), th_tmp("x_int.npy"));
    expect_error(a, "got int32 [2,8]");
    snprintf(a, sizeof a, "mdeploy-run %s -i %s", th_tmp("mlp.mdl"), th_tmp("missing.npy"));
    expect_error(a, "missing.npy");
    snprintf(a, sizeof a, "mdeploy-run %s -i %s -o /nonexistent-dir/y.npy", th_tmp("mlp.mdl"), th_tmp("x.npy"));
    expect_error(a, "/nonexistent-dir/y.npy");
    /* a bad command line: exit status 2, naming the option and --help */
    snprintf(a, sizeof a, "mdeploy-run %s --bogus", th_tmp("mlp.mdl"));
    expect_status(a, 2, "unknown option '--bogus' (see mdeploy-run --help)");
    snprintf(a, sizeof a, "mdeploy-run %s --threads", th_tmp("mlp.mdl"));
    expect_status(a, 2, "option '--threads' needs a value (see mdeploy-run --help)");
    snprintf(a, sizeof a, "mdeploy-run %s --json=yes", th_tmp("mlp.mdl"));
    expect_status(a, 2, "option '--json' takes no value");
    snprintf(a, sizeof a, "mdeploy-convert %s --per", th_tmp("mlp.mdl"));
    expect_status(a, 2, "ambiguous option '--per'");
    expect_status("mdeploy-run", 2, "no model given (see mdeploy-run --help)");
    /* --opt=VALUE and --opt VALUE alike */
    snprintf(a, sizeof a, "mdeploy-run %s --input=%s --threads=0", th_tmp("mlp.mdl"), th_tmp("x.npy"));
    expect_error(a, "bad value '0' for --threads");
    /* an ONNX model: convert it first */
    expect_error("mdeploy-run tests/models/ptq/nothing.onnx -i x.npy", "is an ONNX model: convert it first");
    expect_error("mdeploy-inspect /nonexistent.mdl", "/nonexistent.mdl");
    snprintf(a, sizeof a, "mdeploy-inspect %s", th_tmp("garbage.mdl"));
    expect_error(a, "not a model file");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_writes_correct_outputs),
        cmocka_unit_test(test_inspect),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
