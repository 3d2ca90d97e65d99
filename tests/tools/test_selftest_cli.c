/* Self-test vectors through the CLI: mdeploy-convert --selftest-from/--selftest-expect with ONNX
   Runtime's stored outputs (tests/models, the independent oracle) and with the converter's own,
   a two-input model by name, a wrong oracle output that fails the conversion (no file left), bad
   files refused with the file named, and mdeploy-inspect --verify passing, then failing on a
   flipped weight with the case, output and element named. */
#include "common/harness.h"
#include "common/models.h"
#include "graph/model.h"
#include "mdeploy/npy.h"
#include "mdeploy/selftest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BIN MDL_BUILD_DIR "/bin/"
#define M "tests/models/"

static int sh(const char *out, const char *fmt, const char *a, const char *b, const char *c) {
    char cmd[2048], args[1536];
    snprintf(args, sizeof args, fmt, a, b, c);
    snprintf(cmd, sizeof cmd, "%s >%s 2>&1", args, out);
    return th_system("%s", cmd);
}

static char *slurp(const char *path) {
    char *t = th_read_file(path, NULL);
    assert_non_null(t);
    return t;
}

static void expect_in(const char *path, const char *what) {
    char *t = slurp(path);
    if (!strstr(t, what)) fail_msg("'%s' not in:\n%s", what, t);
    free(t);
}

static void test_convert_and_verify(void **state) {
    (void)state;
    const char *log = th_tmp("log.txt"), *mdl = th_tmp("mlp_st.mdl");
    /* ONNX Runtime's outputs as the oracle */
    assert_int_equal(sh(log, BIN "mdeploy-convert " M "mlp.onnx -o %s --selftest-from x=" M "mlp.in0.npy "
                        "--selftest-expect y=" M "mlp.out0.npy --selftest-oracle onnxruntime%s%s", mdl, "", ""), 0);
    expect_in(log, "selftest: vectors stored and passed (oracle onnxruntime");
    assert_int_equal(sh(log, BIN "mdeploy-inspect %s --verify%s%s", mdl, "", ""), 0);
    expect_in(log, "  selftest:  passed: 1 cases, 1 output elements");
    expect_in(log, "oracle onnxruntime");
    /* a flipped bit in the last layer's bias (the one constant of one element), bit 30 (the
       exponent's top bit: |b| < 2 becomes ~1e38): --verify fails, naming case, output, element */
    size_t size;
    uint8_t *bytes = th_read_file(mdl, &size);
    mdl_model *m;
    mdl_error err;
    assert_int_equal(mdl_model_load_buffer(bytes, size, NULL, &m, &err), MDL_OK);
    assert_int_equal(mdl_model_selftest_count(m), 1);
    size_t at = 0;
    for (int t = 0; t < m->g.ntensors; t++)
        if (m->g.tensors[t].data && m->g.tensors[t].bytes == 4) at = (size_t)((const uint8_t *)m->g.tensors[t].data - m->buf);
    mdl_model_free(m);
    assert_true(at > 0);
    bytes[at + 3] ^= 0x40;
    tm_reseal(bytes, size); /* past the content digest: the self-test must catch it on its own */
    const char *bad = th_tmp("mlp_flip.mdl");
    assert_true(th_write_file(bad, bytes, size));
    free(bytes);
    assert_int_equal(sh(log, BIN "mdeploy-inspect %s --verify%s%s", bad, "", "") != 0, 1);
    expect_in(log, "  selftest:  FAILED: self-test case 0: output 0 'y' element 0");

    /* the converter's own outputs as the oracle, two inputs by name, one case of 64 rows */
    const char *rec = th_tmp("rec_st.mdl");
    assert_int_equal(sh(log, BIN "mdeploy-convert " M "recommender.onnx -o %s --selftest-from item=" M
                        "recommender.in1.npy --selftest-from user=" M "recommender.in0.npy%s%s", rec, "", ""), 0);
    expect_in(log, "oracle mdeploy-convert");
    assert_int_equal(sh(log, BIN "mdeploy-inspect %s --verify%s%s", rec, "", ""), 0);
    expect_in(log, "  selftest:  passed: 1 cases, 64 output elements");
}

static void test_refusals(void **state) {
    (void)state;
    const char *log = th_tmp("log2.txt"), *out = th_tmp("never.mdl");
    /* ORT's outputs off by 0.01: the conversion fails and leaves no file */
    mdl_npy y;
    mdl_error err;
    assert_int_equal(mdl_npy_read(M "mlp.out0.npy", &y, &err), MDL_OK);
    ((float *)y.data)[0] += 0.01f;
    const char *ybad = th_tmp("ybad.npy");
    assert_int_equal(mdl_npy_write(ybad, y.dtype, y.rank, y.dims, y.data, &err), MDL_OK);
    mdl_npy_free(&y);
    assert_true(sh(log, BIN "mdeploy-convert " M "mlp.onnx -o %s --selftest-from " M "mlp.in0.npy "
                   "--selftest-expect %s%s", out, ybad, "") != 0);
    expect_in(log, "the converted model fails its self-test vectors: self-test case 0: output 0 'y' element 0");
    expect_in(log, "oracle external");
    assert_true(access(out, F_OK) != 0);
    /* an input file of the wrong dtype, names that do not exist, a missing input */
    int32_t ids[4] = {1, 2, 3, 4};
    const char *i32 = th_tmp("ids32.npy");
    assert_int_equal(mdl_npy_write(i32, MDL_DTYPE_INT32, 1, (int64_t[]){4}, ids, &err), MDL_OK);
    assert_true(sh(log, BIN "mdeploy-convert " M "mlp.onnx -o %s --selftest-from %s%s", out, i32, "") != 0);
    expect_in(log, "self-test input 'x'");
    expect_in(log, "int32 data for a float32 tensor");
    assert_true(sh(log, BIN "mdeploy-convert " M "mlp.onnx -o %s --selftest-from nope=%s%s", out, M "mlp.in0.npy", "") != 0);
    expect_in(log, "the model has no input of that name");
    assert_true(sh(log, BIN "mdeploy-convert " M "recommender.onnx -o %s --selftest-from user=%s%s", out,
                   M "recommender.in0.npy", "") != 0);
    expect_in(log, "1 input files and 0 output files for a model with 2 inputs");
    assert_true(sh(log, BIN "mdeploy-convert " M "mlp.onnx -o %s --selftest-from %s --selftest-tolerance -1%s", out,
                   M "mlp.in0.npy", "") != 0);
    expect_in(log, "--selftest-tolerance '-1'");
    assert_true(access(out, F_OK) != 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convert_and_verify),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
