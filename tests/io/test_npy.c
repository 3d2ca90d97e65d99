/* .npy reader/writer.  NumPy is the oracle: it writes files we must read with its values, and it
   must read what we write.  python3 with numpy is required — without it these tests fail. */
#include "common/harness.h"

#include "mdeploy/npy.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[64]; /* per-run temporary directory */

#define NDTYPES MDL_DTYPE_COUNT
static const char *const k_code[NDTYPES] = {"f4", "i1", "u1", "i4", "i8", "b1"};
static const char *const k_descr[NDTYPES] = {"<f4", "|i1", "|u1", "<i4", "<i8", "|b1"};

/* Shapes the NumPy oracle files use: scalar, odd sizes, a 1 inside, zero-size arrays. */
static const struct {
    int rank;
    int64_t dims[4];
    const char *py;
} k_shapes[] = {
    {0, {0}, "()"},
    {1, {7}, "(7,)"},
    {2, {3, 4}, "(3, 4)"},
    {3, {2, 3, 5}, "(2, 3, 5)"},
    {4, {2, 1, 3, 2}, "(2, 1, 3, 2)"},
    {1, {0}, "(0,)"},
    {3, {3, 0, 2}, "(3, 0, 2)"},
};
#define NSHAPES ((int)(sizeof k_shapes / sizeof k_shapes[0]))

static const char *path_in(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", g_dir, name);
    return buf;
}

static int64_t count_of(int rank, const int64_t *dims) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    return n;
}

/* Element i of the test pattern, written the same way (independently) in the NumPy scripts. */
static void pattern(mdl_dtype t, int64_t i, void *out) {
    switch (t) {
    case MDL_DTYPE_FLOAT32: *(float *)out = (float)((double)i * 0.37 - 5.0); break;
    case MDL_DTYPE_INT8: *(int8_t *)out = (int8_t)((i * 37) % 256 - 128); break;
    case MDL_DTYPE_UINT8: *(uint8_t *)out = (uint8_t)((i * 37 + 11) % 256); break;
    case MDL_DTYPE_INT32: *(int32_t *)out = (int32_t)(i * 123457 - 1000000); break;
    case MDL_DTYPE_INT64: *(int64_t *)out = i * 1099511627779LL - (INT64_C(1) << 62); break;
    case MDL_DTYPE_BOOL: *(uint8_t *)out = (uint8_t)(i % 3 == 1); break;
    default: fail_msg("bad dtype");
    }
}
#define PY_PATTERNS                                                                                \
    "mk = {\"f4\": lambda n: (np.arange(n) * 0.37 - 5.0).astype(\"<f4\"),\n"                       \
    "      \"i1\": lambda n: (np.mod(np.arange(n) * 37, 256) - 128).astype(\"|i1\"),\n"            \
    "      \"u1\": lambda n: np.mod(np.arange(n) * 37 + 11, 256).astype(\"|u1\"),\n"               \
    "      \"i4\": lambda n: (np.arange(n) * 123457 - 1000000).astype(\"<i4\"),\n"                 \
    "      \"i8\": lambda n: np.arange(n, dtype=np.int64) * 1099511627779 - 2**62,\n"           \
    "      \"b1\": lambda n: np.mod(np.arange(n), 3) == 1}\n"

/* Extreme values per dtype (1-d arrays), also spelled out in the NumPy script below. */
static const float k_f4_special[] = {0.0f, -0.0f,  INFINITY,      -INFINITY,
                                     NAN,  1e-45f, 3.4028235e38f, -1.5f};
static const int8_t k_i1_special[] = {-128, 127, 0, -1};
static const uint8_t k_u1_special[] = {0, 255, 128};
static const int32_t k_i4_special[] = {INT32_MIN, INT32_MAX, 0, -1};
static const int64_t k_i8_special[] = {INT64_MIN, INT64_MAX, 0, -1};
static const uint8_t k_b1_special[] = {1, 0};
static const void *const k_special[NDTYPES] = {k_f4_special, k_i1_special, k_u1_special,
                                               k_i4_special, k_i8_special, k_b1_special};
static const int64_t k_special_n[NDTYPES] = {8, 4, 3, 4, 4, 2};
#define PY_SPECIALS                                                                                \
    "sp = {\"f4\": np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4028235e38, -1.5], "     \
    "\"<f4\"),\n"                                                                                  \
    "      \"i1\": np.array([-128, 127, 0, -1], \"|i1\"),\n"                                       \
    "      \"u1\": np.array([0, 255, 128], \"|u1\"),\n"                                            \
    "      \"i4\": np.array([-2**31, 2**31 - 1, 0, -1], \"<i4\"),\n"                               \
    "      \"i8\": np.array([-2**63, 2**63 - 1, 0, -1], \"<i8\"),\n"                               \
    "      \"b1\": np.array([True, False])}\n"

/* Runs python3 -c code with argv[1] = g_dir (and an optional second argument); fails the test
   when python3 or numpy is missing or the script fails. */
static void python(const char *code, const char *arg) {
    size_t n = strlen(code) + 512;
    char *cmd = malloc(n);
    assert_non_null(cmd);
    assert_null(strchr(code, '\''));
    snprintf(cmd, n, "python3 -c 'import sys\nimport numpy as np\n%s' %s %s", code, g_dir,
             arg ? arg : "");
    int rc = system(cmd);
    free(cmd);
    if (rc != 0)
        fail_msg("python3 with numpy is required and the script must succeed (system() = %d)", rc);
}

static uint8_t *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

static void assert_msg_has(const mdl_error *err, const char *needle) {
    if (!strstr(err->msg, needle)) fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle);
}

static void assert_shape(const mdl_npy *a, mdl_dtype t, int rank, const int64_t *dims) {
    assert_int_equal(a->dtype, t);
    assert_int_equal(a->rank, rank);
    for (int i = 0; i < rank; i++) assert_int_equal(a->dims[i], dims[i]);
}

static void assert_pattern(const mdl_npy *a, mdl_dtype t, int rank, const int64_t *dims) {
    assert_shape(a, t, rank, dims);
    for (int i = rank; i < MDL_MAX_RANK; i++) assert_int_equal(a->dims[i], 0);
    int64_t n = count_of(rank, dims);
    size_t es = mdl_dtype_size(t);
    assert_int_equal(a->bytes, (size_t)n * es);
    assert_non_null(a->data);
    for (int64_t i = 0; i < n; i++) {
        uint8_t want[8];
        pattern(t, i, want);
        if (memcmp((const uint8_t *)a->data + i * es, want, es) != 0)
            fail_msg("%s element %lld differs from NumPy's value", k_code[t], (long long)i);
    }
}

/* ---- NumPy writes, we read ---------------------------------------------------------------- */

/* Reads g_dir/name into *a; any failure fails the test with the file named. */
static void read_named(const char *name, mdl_npy *a) {
    char path[256];
    mdl_error err;
    if (mdl_npy_read(path_in(path, sizeof path, name), a, &err) != MDL_OK)
        fail_msg("%s: %s", name, err.msg);
}

static void expect_pattern_file(const char *name, mdl_dtype t, int rank, const int64_t *dims) {
    mdl_npy a;
    read_named(name, &a);
    assert_pattern(&a, t, rank, dims);
    mdl_npy_free(&a);
}

/* Writes NumPy's files once; every test that reads them calls this first, so each fails on its
   own when python3/numpy is missing. */
static void numpy_files(void) {
    static bool done;
    if (done) return;
    char py[2048];
    snprintf(py, sizeof py,
             PY_PATTERNS PY_SPECIALS
             "d = sys.argv[1]\n"
             "shapes = [%s, %s, %s, %s, %s, %s, %s]\n"
             "for c, f in mk.items():\n"
             "    for k, s in enumerate(shapes):\n"
             "        np.save(d + \"/np_%%s_%%d.npy\" %% (c, k), f(int(np.prod(s))).reshape(s))\n"
             "    np.save(d + \"/np_%%s_special.npy\" %% c, sp[c])\n"
             "    for v in (2, 3):\n"
             "        with open(d + \"/np_%%s_v%%d.npy\" %% (c, v), \"wb\") as fh:\n"
             "            np.lib.format.write_array(fh, f(30).reshape(2, 3, 5), version=(v, 0))\n"
             "np.save(d + \"/np_fortran.npy\", np.asfortranarray(np.ones((3, 4), \"<f4\")))\n"
             "np.save(d + \"/np_big.npy\", np.arange(4, dtype=\">i4\"))\n"
             "np.save(d + \"/np_f8.npy\", np.arange(3.0))\n"
             "np.save(d + \"/np_i2.npy\", np.arange(3, dtype=np.int16))\n"
             "np.save(d + \"/np_rank9.npy\", np.zeros((1,) * 9, \"<f4\"))\n"
             "np.save(d + \"/np_struct.npy\", np.zeros(2, [(\"a\", \"<f4\"), (\"b\", \"<i4\")]))\n"
             "np.save(d + \"/np_object.npy\", np.array([1, \"x\"], dtype=object))\n"
             "np.save(d + \"/np_trunc.npy\", np.ones((4, 3), \"<f4\"))\n"
             "with open(d + \"/np_two.npy\", \"wb\") as fh:\n"
             "    np.save(fh, mk[\"i8\"](6).reshape(2, 3)); np.save(fh, np.zeros(9, \"<f4\"))\n",
             k_shapes[0].py, k_shapes[1].py, k_shapes[2].py, k_shapes[3].py, k_shapes[4].py,
             k_shapes[5].py, k_shapes[6].py);
    python(py, NULL);
    done = true;
}

static void test_read_numpy_files(void **state) {
    (void)state;
    numpy_files();
    char name[64];
    for (int t = 0; t < NDTYPES; t++)
        for (int k = 0; k < NSHAPES; k++) {
            snprintf(name, sizeof name, "np_%s_%d.npy", k_code[t], k);
            expect_pattern_file(name, (mdl_dtype)t, k_shapes[k].rank, k_shapes[k].dims);
        }
}

static void test_read_numpy_versions_2_3(void **state) {
    (void)state;
    numpy_files();
    char path[256], name[64];
    for (int t = 0; t < NDTYPES; t++)
        for (int v = 2; v <= 3; v++) {
            snprintf(name, sizeof name, "np_%s_v%d.npy", k_code[t], v);
            size_t size;
            uint8_t *raw = slurp(path_in(path, sizeof path, name), &size);
            assert_int_equal(raw[6], v); /* NumPy really wrote that version */
            expect_pattern_file(name, (mdl_dtype)t, 3, (int64_t[]){2, 3, 5});
            mdl_npy a;
            mdl_error err;
            if (mdl_npy_read_buffer(raw, size, &a, &err) != MDL_OK)
                fail_msg("%s: %s", name, err.msg);
            assert_pattern(&a, (mdl_dtype)t, 3, (int64_t[]){2, 3, 5});
            mdl_npy_free(&a);
            free(raw);
        }
}

static void test_read_numpy_specials(void **state) {
    (void)state;
    numpy_files();
    char name[64];
    for (int t = 0; t < NDTYPES; t++) {
        snprintf(name, sizeof name, "np_%s_special.npy", k_code[t]);
        mdl_npy a;
        read_named(name, &a);
        assert_int_equal(a.dtype, t);
        assert_int_equal(a.rank, 1);
        assert_int_equal(a.dims[0], k_special_n[t]);
        size_t bytes = (size_t)k_special_n[t] * mdl_dtype_size((mdl_dtype)t);
        assert_int_equal(a.bytes, bytes);
        if (t == MDL_DTYPE_FLOAT32) {
            const float *f = a.data;
            for (int i = 0; i < k_special_n[t]; i++) {
                if (isnan(k_f4_special[i]))
                    assert_true(isnan(f[i]));
                else
                    assert_memory_equal(&f[i], &k_f4_special[i], 4); /* bit-exact: -0.0, denormal */
            }
        } else {
            assert_memory_equal(a.data, k_special[t], bytes);
        }
        mdl_npy_free(&a);
    }
}

/* np.save can append arrays to one file; like np.load we read the first and ignore the rest. */
static void test_read_ignores_trailing_array(void **state) {
    (void)state;
    numpy_files();
    expect_pattern_file("np_two.npy", MDL_DTYPE_INT64, 2, (int64_t[]){2, 3});
}

static void expect_file_reject(const char *name, mdl_status want, const char *needle) {
    char path[256];
    mdl_npy a;
    memset(&a, 0x5a, sizeof a);
    mdl_error err = {0};
    mdl_status st = mdl_npy_read(path_in(path, sizeof path, name), &a, &err);
    if (st != want)
        fail_msg("%s: status %s, want %s (%s)", name, mdl_status_str(st), mdl_status_str(want),
                 err.msg);
    assert_int_equal(err.status, want);
    assert_msg_has(&err, path);
    assert_msg_has(&err, needle);
    assert_null(a.data); /* zeroed on failure */
    assert_int_equal(a.rank, 0);
    mdl_npy_free(&a);
}

static void test_read_rejects_numpy_unsupported(void **state) {
    (void)state;
    numpy_files();
    expect_file_reject("np_fortran.npy", MDL_UNSUPPORTED, "Fortran");
    expect_file_reject("np_big.npy", MDL_UNSUPPORTED, "big-endian dtype '>i4'");
    expect_file_reject("np_f8.npy", MDL_UNSUPPORTED, "dtype '<f8' is not supported");
    expect_file_reject("np_i2.npy", MDL_UNSUPPORTED, "dtype '<i2' is not supported");
    expect_file_reject("np_rank9.npy", MDL_UNSUPPORTED, "rank 9 exceeds the maximum rank 8");
    expect_file_reject("np_struct.npy", MDL_UNSUPPORTED, "structured");
    expect_file_reject("np_object.npy", MDL_UNSUPPORTED, "dtype '|O' is not supported");
}

static void test_read_truncated_file(void **state) {
    (void)state;
    numpy_files();
    char path[256], cut[256];
    size_t size;
    uint8_t *raw = slurp(path_in(path, sizeof path, "np_trunc.npy"), &size);
    assert_int_equal(size, 128 + 48); /* NumPy's 4x3 float32: 128-byte header, 48 data bytes */
    FILE *f = fopen(path_in(cut, sizeof cut, "cut.npy"), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(raw, 1, 128 + 20, f), 128 + 20);
    fclose(f);
    expect_file_reject("cut.npy", MDL_INVALID_ARGUMENT,
                       "data is truncated: shape (4, 3) float32 needs 48 bytes after the "
                       "128-byte header, only 20 present");
    assert_int_equal(truncate(cut, 50), 0);
    expect_file_reject("cut.npy", MDL_INVALID_ARGUMENT,
                       "header is truncated: it needs 118 bytes, only 40 present");
    assert_int_equal(truncate(cut, 9), 0);
    expect_file_reject("cut.npy", MDL_INVALID_ARGUMENT, "only 9 bytes, too short");
    assert_int_equal(truncate(cut, 0), 0);
    expect_file_reject("cut.npy", MDL_INVALID_ARGUMENT, "only 0 bytes, too short");

    /* Every prefix of a valid image fails cleanly; the full image reads. */
    for (size_t n = 0; n < size; n++) {
        mdl_npy a;
        mdl_error err = {0};
        mdl_status st = mdl_npy_read_buffer(raw, n, &a, &err);
        if (st == MDL_OK) fail_msg("prefix of %zu bytes accepted", n);
        assert_int_equal(st, MDL_INVALID_ARGUMENT);
        assert_msg_has(&err, "npy buffer: ");
        assert_null(a.data);
    }
    mdl_npy a;
    assert_int_equal(mdl_npy_read_buffer(raw, size, &a, NULL), MDL_OK);
    mdl_npy_free(&a);
    free(raw);
}

static void test_read_missing_and_directory(void **state) {
    (void)state;
    char path[256];
    mdl_npy a;
    mdl_error err;
    assert_int_equal(mdl_npy_read(path_in(path, sizeof path, "nope.npy"), &a, &err), MDL_IO);
    assert_msg_has(&err, path);
    assert_msg_has(&err, strerror(ENOENT));
    assert_int_equal(mdl_npy_read(g_dir, &a, &err), MDL_IO);
    assert_msg_has(&err, g_dir);
    assert_msg_has(&err, strerror(EISDIR));
    assert_int_equal(mdl_npy_read(path, &a, NULL), MDL_IO); /* err may be NULL */
    /* a long path keeps its tail (the file name) and the cause in the message */
    char longp[400];
    snprintf(longp, sizeof longp, "%s/%0100d/%0100d/%0100d/missing-file.npy", g_dir, 1, 2, 3);
    assert_int_equal(mdl_npy_read(longp, &a, &err), MDL_IO);
    assert_msg_has(&err, "0003/missing-file.npy': cannot open: ");
    assert_msg_has(&err, strerror(ENOENT));
    assert_int_equal(mdl_npy_read(NULL, &a, &err), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_npy_read(path, NULL, &err), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_npy_read_buffer(NULL, 10, &a, &err), MDL_INVALID_ARGUMENT);
}

/* ---- hand-made headers -------------------------------------------------------------------- */

/* magic, version major.minor, the header text exactly as given, then data_bytes of pattern. */
static size_t raw_npy(uint8_t *out, size_t cap, int major, int minor, const char *header,
                      size_t data_bytes) {
    size_t h = strlen(header), lb = major == 1 ? 2 : 4, n = 8 + lb + h + data_bytes;
    assert_true(n <= cap);
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (uint8_t)major;
    out[7] = (uint8_t)minor;
    for (size_t i = 0; i < lb; i++) out[8 + i] = (uint8_t)(h >> (8 * i));
    memcpy(out + 8 + lb, header, h);
    for (size_t i = 0; i < data_bytes; i++) out[8 + lb + h + i] = (uint8_t)(i * 7 + 1);
    return n;
}

static void expect_ok(int major, const char *header, size_t data, mdl_dtype t, int rank,
                      const int64_t *dims) {
    uint8_t buf[1024];
    size_t n = raw_npy(buf, sizeof buf, major, 0, header, data);
    mdl_npy a;
    mdl_error err;
    if (mdl_npy_read_buffer(buf, n, &a, &err) != MDL_OK) fail_msg("%s: %s", header, err.msg);
    assert_shape(&a, t, rank, dims);
    assert_true(a.bytes <= data);
    assert_memory_equal(a.data, buf + n - data, a.bytes);
    mdl_npy_free(&a);
    mdl_npy_free(&a); /* freeing twice is harmless: free zeroes the record */
}

static void test_header_variants_accepted(void **state) {
    (void)state;
    expect_ok(1, "{'shape': (2, 3), 'fortran_order': False, 'descr': '<i4'}", 24, MDL_DTYPE_INT32,
              2, (int64_t[]){2, 3});
    expect_ok(1, "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(3,),}\n", 12,
              MDL_DTYPE_FLOAT32, 1, (int64_t[]){3});
    expect_ok(1, "{ 'descr' : '|u1' ,\n 'fortran_order' : False ,\t'shape' : ( 2 , 2 , ) , }   \n",
              4, MDL_DTYPE_UINT8, 2, (int64_t[]){2, 2});
    expect_ok(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3L, 1L), }    \n", 24,
              MDL_DTYPE_INT64, 2, (int64_t[]){3, 1});
    expect_ok(1, "{'descr': '|i1', 'fortran_order': False, 'shape': (), }", 1, MDL_DTYPE_INT8, 0,
              NULL);
    expect_ok(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 2), }\n",
              8, MDL_DTYPE_FLOAT32, 8, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 2});
    expect_ok(3, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }\n", 0,
              MDL_DTYPE_FLOAT32, 2, (int64_t[]){0, 5});
    /* bytes after the data are ignored */
    expect_ok(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (+2,), }\n", 9, MDL_DTYPE_UINT8,
              1, (int64_t[]){2});
}

static void expect_reject_v(int major, int minor, const char *header, size_t data, mdl_status want,
                            const char *needle) {
    uint8_t buf[2048];
    size_t n = raw_npy(buf, sizeof buf, major, minor, header, data);
    mdl_npy a;
    mdl_error err = {0};
    mdl_status st = mdl_npy_read_buffer(buf, n, &a, &err);
    if (st != want)
        fail_msg("%s: status %s, want %s (%s)", header, mdl_status_str(st), mdl_status_str(want),
                 err.msg);
    assert_msg_has(&err, "npy buffer: ");
    assert_msg_has(&err, needle);
    assert_null(a.data);
    /* err == NULL gives the same status */
    assert_int_equal(mdl_npy_read_buffer(buf, n, &a, NULL), want);
}
static void expect_reject(const char *header, size_t data, mdl_status want, const char *needle) {
    expect_reject_v(1, 0, header, data, want, needle);
}

/* For buffers altered by hand after raw_npy: rejected as invalid, needle in the message. */
static void expect_buffer_invalid(const void *buf, size_t n, const char *needle) {
    mdl_npy a;
    mdl_error err;
    assert_int_equal(mdl_npy_read_buffer(buf, n, &a, &err), MDL_INVALID_ARGUMENT);
    assert_msg_has(&err, needle);
}

#define HDR(descr, fortran, shape)                                                                 \
    "{'descr': " descr ", 'fortran_order': " fortran ", 'shape': " shape ", }\n"

static void test_malformed_headers(void **state) {
    (void)state;
    const mdl_status INV = MDL_INVALID_ARGUMENT, UNS = MDL_UNSUPPORTED;
    /* what the dict says, and how it says it */
    expect_reject(HDR("'<f4'", "True", "(3, 4)"), 48, UNS, "Fortran (column-major) order");
    expect_reject(HDR("'<f8'", "False", "(3,)"), 24, UNS, "dtype '<f8' is not supported");
    expect_reject(HDR("'>f4'", "False", "(3,)"), 12, UNS, "big-endian");
    expect_reject(HDR("'<b1'", "False", "(3,)"), 3, UNS, "dtype '<b1' is not supported");
    expect_reject(HDR("'<i1'", "False", "(3,)"), 3, UNS, "dtype '<i1' is not supported");
    expect_reject(HDR("'<U5'", "False", "(3,)"), 60, UNS, "'<U5'");
    expect_reject(HDR("'float32'", "False", "(3,)"), 12, UNS, "'float32'");
    expect_reject(HDR("'<f4_________________________________'", "False", "(3,)"), 12, UNS,
                  "...' is not supported");
    expect_reject(HDR("[('a', '<f4')]", "False", "(3,)"), 12, UNS, "structured");
    expect_reject(HDR("'<f4'", "False", "(4294967296, 4294967296, 16)"), 0, INV, "too large");
    expect_reject(HDR("'<f4'", "False", "(1099511627777,)"), 0, INV, "too large");
    expect_reject(HDR("'|u1'", "False", "(99999999999999999999,)"), 0, INV, "64 bits");
    expect_reject(HDR("'<f4'", "False", "(1, 1, 1, 1, 1, 1, 1, 1, 1)"), 4, UNS,
                  "rank 9 exceeds the maximum rank 8");
    expect_reject(HDR("'<f4'", "False", "(3, -2)"), 0, INV, "shape (3, -2) has a negative");
    expect_reject(HDR("'<f4'", "False", "(3)"), 12, INV, "not a tuple");
    expect_reject(HDR("'<f4'", "False", "[3]"), 12, INV, "not a list");
    expect_reject(HDR("'<f4'", "False", "(,)"), 12, INV, "expected an integer");
    expect_reject(HDR("'<f4'", "False", "(3,,)"), 12, INV, "expected an integer");
    expect_reject(HDR("'<f4'", "False", "(3 4)"), 48, INV, "expected ',' or ')'");
    expect_reject(HDR("'<f4'", "False", "(3x,)"), 12, INV, "unexpected character");
    expect_reject(HDR("'<f4'", "0", "(3,)"), 12, INV, "True or False");
    expect_reject(HDR("'<f4'", "Falsey", "(3,)"), 12, INV, "True or False");
    expect_reject(HDR("5", "False", "(3,)"), 12, INV, "descr must be a string");
    expect_reject("{'descr': '<f4', 'shape': (3,), }\n", 12, INV, "lacks 'fortran_order'");
    expect_reject("{'descr': '<f4', 'fortran_order': False}\n", 12, INV, "lacks 'shape'");
    expect_reject("{}", 12, INV, "lacks 'descr'");
    expect_reject("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'extra': 1}", 12, INV,
                  "unknown key 'extra'");
    expect_reject("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", 12,
                  INV, "duplicate key 'descr'");
    expect_reject("{'descr': '<f4", 12, INV, "unterminated string");
    expect_reject("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), } x", 12, INV,
                  "unexpected bytes after the header dict");
    expect_reject("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)", 12, INV,
                  "expected ',' or '}'");
    expect_reject("[1, 2]", 12, INV, "expected '{'");
    expect_reject("", 12, INV, "expected '{'");
    expect_reject("{descr: '<f4'}", 12, INV, "expected a quoted string");
    expect_reject("{'descr' '<f4'}", 12, INV, "expected ':'");
    expect_reject("{'descr': '<f\xc3\xa4'}", 12, INV, "unexpected character 0xc3");
    /* byte offsets in messages count from the start of the file */
    expect_reject("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'extra': 1}", 12, INV,
                  "at byte 66");
    /* the preamble */
    expect_reject_v(4, 0, HDR("'<f4'", "False", "(3,)"), 12, UNS, "version 4.0 is not supported");
    expect_reject_v(1, 1, HDR("'<f4'", "False", "(3,)"), 12, UNS, "version 1.1");
    expect_reject_v(0, 0, HDR("'<f4'", "False", "(3,)"), 12, UNS, "version 0.0");

    uint8_t buf[200];
    /* a NUL after the dict (Python refuses NULs in source text) */
    size_t n = raw_npy(buf, sizeof buf, 1, 0, HDR("'<f4'", "False", "(3,)") "@", 12);
    *(uint8_t *)memchr(buf, '@', n) = 0;
    expect_buffer_invalid(buf, n, "unexpected bytes after the header dict");
    n = raw_npy(buf, sizeof buf, 1, 0, HDR("'<f4'", "False", "(3,)"), 12);
    buf[0] = 'P';
    expect_buffer_invalid(buf, n, "not a .npy file");
    expect_buffer_invalid("PK\3\4", 4, "not a .npy file");
    expect_buffer_invalid("\x93NUM", 4, "only 4 bytes, too short");
    /* declared header length past the end, and past the limit */
    n = raw_npy(buf, sizeof buf, 1, 0, HDR("'<f4'", "False", "(3,)"), 0);
    buf[8] = 0xe8, buf[9] = 0x03; /* 1000 */
    expect_buffer_invalid(buf, n, "header is truncated: it needs 1000 bytes");
    n = raw_npy(buf, sizeof buf, 2, 0, HDR("'<f4'", "False", "(3,)"), 0);
    buf[10] = 0x10; /* 0x10xxxxxx */
    expect_buffer_invalid(buf, n, "exceeds the 65536-byte limit");
}

/* Every header byte replaced by a few values: the reader must answer OK or an error with a
   message, never crash (run under SAN=1 to check memory safety). */
static void test_header_mutations(void **state) {
    (void)state;
    uint8_t good[256], buf[256];
    size_t n = raw_npy(good, sizeof good, 1, 0, HDR("'<i4'", "False", "(2, 3)"), 24);
    static const uint8_t vals[] = {0, ' ', '\'', '"', '(', ')', ',', '9', '-', '}', '{', 0xff};
    int ok = 0, rejected = 0;
    for (size_t i = 0; i < n - 24; i++)
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(buf, good, n);
            buf[i] = vals[v];
            mdl_npy a;
            mdl_error err = {0};
            mdl_status st = mdl_npy_read_buffer(buf, n, &a, &err);
            if (st == MDL_OK) {
                ok++;
                int64_t count = count_of(a.rank, a.dims);
                assert_int_equal(a.bytes, (size_t)count * mdl_dtype_size(a.dtype));
                mdl_npy_free(&a);
            } else {
                rejected++;
                assert_true(err.msg[0] != '\0');
                assert_null(a.data);
            }
        }
    assert_true(ok > 0);
    assert_true(rejected > 0);
}

/* ---- we write ------------------------------------------------------------------------------ */

static void *pattern_data(mdl_dtype t, int64_t n) {
    size_t es = mdl_dtype_size(t);
    uint8_t *d = malloc((size_t)n * es + 1);
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++) pattern(t, i, d + i * es);
    return d;
}

static void test_round_trip_every_dtype_and_rank(void **state) {
    (void)state;
    th_seed(7);
    char path[256];
    path_in(path, sizeof path, "rt.npy");
    for (int t = 0; t < NDTYPES; t++)
        for (int rank = 0; rank <= 4; rank++)
            for (int rep = 0; rep < 3; rep++) {
                int64_t dims[4];
                for (int i = 0; i < rank; i++) dims[i] = th_rand_int(1, 5);
                if (rep == 2 && rank > 0) dims[th_rand_int(0, rank - 1)] = 0;
                int64_t n = count_of(rank, dims);
                size_t bytes = (size_t)n * mdl_dtype_size((mdl_dtype)t);
                uint8_t *data = malloc(bytes + 1);
                for (size_t i = 0; i < bytes; i++) data[i] = (uint8_t)th_rand_u64();
                mdl_error err;
                if (mdl_npy_write(path, (mdl_dtype)t, rank, dims, data, &err) != MDL_OK)
                    fail_msg("%s", err.msg);

                /* layout: version 1.0, data at a multiple of 64, nothing after it */
                size_t size;
                uint8_t *raw = slurp(path, &size);
                assert_memory_equal(raw, "\x93NUMPY\x01\x00", 8);
                size_t offset = 10 + (size_t)(raw[8] | raw[9] << 8);
                assert_int_equal(offset % 64, 0);
                assert_int_equal(raw[offset - 1], '\n');
                assert_int_equal(size, offset + bytes);

                mdl_npy a, b;
                assert_int_equal(mdl_npy_read(path, &a, &err), MDL_OK);
                assert_int_equal(mdl_npy_read_buffer(raw, size, &b, &err), MDL_OK);
                const mdl_npy *both[2] = {&a, &b};
                for (int k = 0; k < 2; k++) {
                    assert_shape(both[k], (mdl_dtype)t, rank, dims);
                    assert_int_equal(both[k]->bytes, bytes);
                    assert_non_null(both[k]->data);
                    if (bytes) assert_memory_equal(both[k]->data, data, bytes);
                }
                mdl_npy_free(&a);
                mdl_npy_free(&b);
                free(raw);
                free(data);
            }
}

/* Reads back the file at path: the header dict text right after the 10-byte preamble, and the
   whole file's size.  Returns the bytes (free()). */
static uint8_t *slurp_header(const char *path, const char *want, size_t want_size) {
    size_t size;
    uint8_t *raw = slurp(path, &size);
    assert_memory_equal(raw + 10, want, strlen(want));
    assert_int_equal(size, want_size);
    return raw;
}

static void test_write_header_text(void **state) {
    (void)state;
    char path[256];
    float x[6] = {0};
    assert_int_equal(mdl_npy_write(path_in(path, sizeof path, "hdr.npy"), MDL_DTYPE_FLOAT32, 2,
                                   (int64_t[]){2, 3}, x, NULL),
                     MDL_OK);
    const char *want = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    uint8_t *raw = slurp_header(path, want, 128 + 24);
    for (size_t i = 10 + strlen(want); i < 127; i++) assert_int_equal(raw[i], ' ');
    assert_int_equal(raw[127], '\n');
    free(raw);
    int8_t s = -3;
    assert_int_equal(mdl_npy_write(path, MDL_DTYPE_INT8, 0, NULL, &s, NULL), MDL_OK);
    raw = slurp_header(path, "{'descr': '|i1', 'fortran_order': False, 'shape': (), }", 129);
    assert_int_equal((int8_t)raw[128], -3);
    free(raw);
    assert_int_equal(mdl_npy_write(path, MDL_DTYPE_INT64, 1, (int64_t[]){0}, NULL, NULL), MDL_OK);
    free(slurp_header(path, "{'descr': '<i8', 'fortran_order': False, 'shape': (0,), }", 128));
}

/* Appends "path;descr;d0,d1;v0,v1,...\n" to the manifest NumPy checks. */
static void manifest_add(FILE *m, const char *path, mdl_dtype t, int rank, const int64_t *dims,
                         const void *data) {
    fprintf(m, "%s;%s;", path, k_descr[t]);
    for (int i = 0; i < rank; i++) fprintf(m, i ? ",%lld" : "%lld", (long long)dims[i]);
    fputc(';', m);
    int64_t n = count_of(rank, dims);
    for (int64_t i = 0; i < n; i++) {
        if (i) fputc(',', m);
        switch (t) {
        case MDL_DTYPE_FLOAT32: fprintf(m, "%a", (double)((const float *)data)[i]); break;
        case MDL_DTYPE_INT8: fprintf(m, "%d", ((const int8_t *)data)[i]); break;
        case MDL_DTYPE_UINT8: fprintf(m, "%u", ((const uint8_t *)data)[i]); break;
        case MDL_DTYPE_INT32: fprintf(m, "%ld", (long)((const int32_t *)data)[i]); break;
        case MDL_DTYPE_INT64: fprintf(m, "%lld", (long long)((const int64_t *)data)[i]); break;
        case MDL_DTYPE_BOOL: fprintf(m, "%u", ((const uint8_t *)data)[i]); break;
        default: fail_msg("bad dtype");
        }
    }
    fputc('\n', m);
}

/* Writes g_dir/name and lists it in the manifest. */
static void write_listed(FILE *m, const char *name, mdl_dtype t, int rank, const int64_t *dims,
                         const void *data) {
    char path[256];
    mdl_error err;
    if (mdl_npy_write(path_in(path, sizeof path, name), t, rank, dims, data, &err) != MDL_OK)
        fail_msg("%s: %s", name, err.msg);
    manifest_add(m, path, t, rank, dims, data);
}

static void test_numpy_reads_ours(void **state) {
    (void)state;
    char mpath[256], name[64];
    FILE *m = fopen(path_in(mpath, sizeof mpath, "manifest.txt"), "w");
    assert_non_null(m);
    int files = 0;
    for (int t = 0; t < NDTYPES; t++) {
        for (int k = 0; k < NSHAPES; k++) {
            snprintf(name, sizeof name, "ours_%s_%d.npy", k_code[t], k);
            int64_t n = count_of(k_shapes[k].rank, k_shapes[k].dims);
            void *d = pattern_data((mdl_dtype)t, n);
            write_listed(m, name, (mdl_dtype)t, k_shapes[k].rank, k_shapes[k].dims, d);
            free(d);
            files++;
        }
        snprintf(name, sizeof name, "ours_%s_special.npy", k_code[t]);
        write_listed(m, name, (mdl_dtype)t, 1, &k_special_n[t], k_special[t]);
        files++;
    }
    /* rank 8, the most we write */
    int64_t d8[8] = {1, 2, 1, 3, 1, 1, 2, 1};
    void *d = pattern_data(MDL_DTYPE_FLOAT32, 12);
    write_listed(m, "ours_rank8.npy", MDL_DTYPE_FLOAT32, 8, d8, d);
    free(d);
    files++;
    fclose(m);

    /* NumPy loads each file (plain and memory-mapped, which needs the aligned data offset) and
       compares dtype, shape and every byte with the values listed in the manifest. */
    char py[2048];
    snprintf(py, sizeof py,
             "bad = 0\n"
             "count = 0\n"
             "for line in open(sys.argv[2]):\n"
             "    path, descr, shape, vals = line.rstrip(\"\\n\").split(\";\")\n"
             "    shape = tuple(int(x) for x in shape.split(\",\") if x)\n"
             "    conv = float.fromhex if descr == \"<f4\" else int\n"
             "    e = np.array([conv(v) for v in vals.split(\",\") if v], dtype=descr)\n"
             "    e = e.reshape(shape)\n"
             "    with open(path, \"rb\") as fh:\n"
             "        ver = np.lib.format.read_magic(fh)\n"
             "    for a in (np.load(path, allow_pickle=False), np.load(path, mmap_mode=\"r\")):\n"
             "        ok = (ver == (1, 0) and a.dtype == np.dtype(descr) and a.shape == shape\n"
             "              and a.tobytes() == e.tobytes())\n"
             "        if not ok:\n"
             "            print(\"numpy disagrees:\", path, ver, a.dtype, a.shape, a.ravel()[:6],\n"
             "                  \"expected\", descr, shape, e.ravel()[:6])\n"
             "            bad += 1\n"
             "    count += 1\n"
             "if count != %d:\n"
             "    print(\"manifest has\", count, \"files\")\n"
             "    bad += 1\n"
             "sys.exit(1 if bad else 0)\n",
             files);
    python(py, mpath);
}

/* The oracle check must be able to fail: a wrong expectation in the manifest is caught. */
static void test_numpy_check_detects_mismatch(void **state) {
    (void)state;
    char path[256], mpath[256];
    int32_t v[2] = {1, 2}, wrong[2] = {1, 3};
    assert_int_equal(mdl_npy_write(path_in(path, sizeof path, "neg.npy"), MDL_DTYPE_INT32, 1,
                                   (int64_t[]){2}, v, NULL),
                     MDL_OK);
    FILE *m = fopen(path_in(mpath, sizeof mpath, "neg.txt"), "w");
    assert_non_null(m);
    manifest_add(m, path, MDL_DTYPE_INT32, 1, (int64_t[]){2}, wrong);
    fclose(m);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import sys\nimport numpy as np\n"
             "p, d, s, v = open(sys.argv[1]).read().strip().split(\";\")\n"
             "a = np.load(p)\n"
             "e = np.array([int(x) for x in v.split(\",\")], d)\n"
             "sys.exit(0 if a.tobytes() == e.tobytes() else 3)' %s",
             mpath);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc));
    assert_int_equal(WEXITSTATUS(rc), 3);
}

static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void test_write_rejects(void **state) {
    (void)state;
    char sub[128], path[256];
    path_in(sub, sizeof sub, "wsub");
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(path, sizeof path, "%s/x.npy", sub);
    float x[4] = {1, 2, 3, 4};
    mdl_error err;
    const mdl_status INV = MDL_INVALID_ARGUMENT;
    assert_int_equal(mdl_npy_write(path, (mdl_dtype)99, 1, (int64_t[]){4}, x, &err), INV);
    assert_msg_has(&err, "invalid dtype 99");
    assert_msg_has(&err, path);
    assert_int_equal(mdl_npy_write(path, MDL_DTYPE_FLOAT32, -1, (int64_t[]){4}, x, &err), INV);
    assert_int_equal(
        mdl_npy_write(path, MDL_DTYPE_FLOAT32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, x, &err),
        INV);
    assert_msg_has(&err, "rank 9");
    assert_int_equal(mdl_npy_write(path, MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, -2}, x, &err), INV);
    assert_msg_has(&err, "shape (2, -2) has a negative dimension");
    assert_int_equal(mdl_npy_write(path, MDL_DTYPE_FLOAT32, 1, NULL, x, &err), INV);
    assert_int_equal(mdl_npy_write(path, MDL_DTYPE_FLOAT32, 1, (int64_t[]){4}, NULL, &err), INV);
    assert_msg_has(&err, "data is NULL");
    assert_int_equal(mdl_npy_write(path, MDL_DTYPE_INT64, 3,
                                   (int64_t[]){INT64_C(1) << 30, INT64_C(1) << 30, 16}, x, &err),
                     INV);
    assert_msg_has(&err, "too large");
    assert_int_equal(mdl_npy_write(NULL, MDL_DTYPE_FLOAT32, 1, (int64_t[]){4}, x, &err), INV);
    assert_int_equal(mdl_npy_write("", MDL_DTYPE_FLOAT32, 1, (int64_t[]){4}, x, &err), INV);
    assert_int_equal(dir_entries(sub), 0); /* nothing was created */

    /* missing directory */
    char missing[256];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.npy", sub);
    assert_int_equal(mdl_npy_write(missing, MDL_DTYPE_FLOAT32, 1, (int64_t[]){4}, x, &err), MDL_IO);
    assert_msg_has(&err, missing);
    assert_msg_has(&err, strerror(ENOENT));

    /* the rename fails (target is a directory): the temporary is removed */
    char target[256];
    snprintf(target, sizeof target, "%s/dir.npy", sub);
    assert_int_equal(mkdir(target, 0755), 0);
    assert_int_equal(mdl_npy_write(target, MDL_DTYPE_FLOAT32, 1, (int64_t[]){4}, x, &err), MDL_IO);
    assert_msg_has(&err, target);
    assert_msg_has(&err, "rename");
    assert_int_equal(dir_entries(sub), 1);

    /* a failed write leaves an existing file untouched; a good one replaces it */
    assert_int_equal(mdl_npy_write(path, MDL_DTYPE_FLOAT32, 1, (int64_t[]){4}, x, &err), MDL_OK);
    assert_int_equal(mdl_npy_write(path, MDL_DTYPE_FLOAT32, 1, (int64_t[]){4}, NULL, &err), INV);
    mdl_npy a;
    assert_int_equal(mdl_npy_read(path, &a, &err), MDL_OK);
    assert_int_equal(a.bytes, 16);
    assert_memory_equal(a.data, x, 16);
    mdl_npy_free(&a);
    int32_t y[2] = {-7, 9};
    assert_int_equal(mdl_npy_write(path, MDL_DTYPE_INT32, 2, (int64_t[]){1, 2}, y, &err), MDL_OK);
    assert_int_equal(mdl_npy_read(path, &a, &err), MDL_OK);
    assert_int_equal(a.dtype, MDL_DTYPE_INT32);
    assert_int_equal(a.rank, 2);
    assert_memory_equal(a.data, y, 8);
    mdl_npy_free(&a);
    assert_int_equal(dir_entries(sub), 2); /* x.npy and dir.npy, no leftovers */

    mdl_npy_free(NULL);
}

/* A write that fails half way (file size limit: EFBIG) reports it and leaves nothing behind. */
static void test_write_error_leaves_nothing(void **state) {
    (void)state;
    char sub[128], path[256];
    path_in(sub, sizeof sub, "efbig");
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(path, sizeof path, "%s/big.npy", sub);
    float *x = calloc(4096, sizeof(float));
    assert_non_null(x);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 1000;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN); /* get EFBIG, not the signal */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    mdl_error err;
    mdl_status st = mdl_npy_write(path, MDL_DTYPE_FLOAT32, 1, (int64_t[]){4096}, x, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(st, MDL_IO);
    assert_msg_has(&err, path);
    assert_msg_has(&err, "write error");
    assert_msg_has(&err, strerror(EFBIG));
    assert_int_equal(dir_entries(sub), 0);
    free(x);
}

static int group_setup(void **state) {
    snprintf(g_dir, sizeof g_dir, "/tmp/mdl_npy_XXXXXX");
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    return 0;
    (void)state;
}

static int group_teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_numpy_files),
        cmocka_unit_test(test_read_numpy_versions_2_3),
        cmocka_unit_test(test_read_numpy_specials),
        cmocka_unit_test(test_read_ignores_trailing_array),
        cmocka_unit_test(test_read_rejects_numpy_unsupported),
        cmocka_unit_test(test_read_truncated_file),
        cmocka_unit_test(test_read_missing_and_directory),
        cmocka_unit_test(test_header_variants_accepted),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_header_mutations),
        cmocka_unit_test(test_round_trip_every_dtype_and_rank),
        cmocka_unit_test(test_write_header_text),
        cmocka_unit_test(test_numpy_reads_ours),
        cmocka_unit_test(test_numpy_check_detects_mismatch),
        cmocka_unit_test(test_write_rejects),
        cmocka_unit_test(test_write_error_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
