/* Calibration data reading (src/quant/calib_data_host.h): the .npz (zip) reader against archives
   NumPy wrote, and against truncated and corrupted copies (an error, never a crash: run under
   ASan in make check).  Run from the repo root. */
#include "common/harness.h"

#include "quant/calib_data_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPZ "tests/models/ptq/recommender_calib.npz"

typedef struct seen {
    int n;
    char names[4][32];
    size_t sizes[4];
} seen;

static mdl_status collect(void *user, const char *name, const uint8_t *data, size_t size, mdl_error *err) {
    (void)data;
    (void)err;
    seen *s = user;
    if (s->n < 4) {
        snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
        s->sizes[s->n] = size;
    }
    s->n++;
    return MDL_OK;
}

static void test_members(void **state) {
    (void)state;
    size_t size;
    uint8_t *buf = th_read_file(NPZ, &size);
    assert_non_null(buf);
    seen s;
    memset(&s, 0, sizeof s);
    mdl_error err;
    assert_int_equal(mdl__npz_each(NPZ, buf, size, collect, &s, &err), MDL_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.names[0], "user");
    assert_string_equal(s.names[1], "item");
    /* 4096 int64 + an .npy header each */
    assert_true(s.sizes[0] > 4096 * 8 && s.sizes[0] < 4096 * 8 + 256);
    free(buf);
}

static void test_truncated_and_corrupted(void **state) {
    (void)state;
    size_t size;
    uint8_t *buf = th_read_file(NPZ, &size);
    assert_non_null(buf);
    mdl_error err;
    seen s;
    /* every truncation: an error (the directory is at the end) */
    for (size_t n = 0; n < size; n += 1 + n / 64) {
        uint8_t *cut = malloc(n + 1);
        memcpy(cut, buf, n);
        memset(&s, 0, sizeof s);
        assert_int_not_equal(mdl__npz_each(NPZ, cut, n, collect, &s, &err), MDL_OK);
        free(cut);
    }
    /* byte flips in the directory and headers: any status, no crash, sizes inside the buffer */
    th_seed(11);
    uint8_t *copy = malloc(size);
    for (int k = 0; k < 2000; k++) {
        memcpy(copy, buf, size);
        for (int f = 0; f < 3; f++) {
            size_t at = th_rand_int(0, 1) ? size - 1 - (size_t)th_rand_int(0, 200) : (size_t)th_rand_int(0, 200);
            if (th_rand_int(0, 3) == 0) at = (size_t)th_rand_int(0, (int64_t)size - 1);
            copy[at] = (uint8_t)th_rand_u64();
        }
        memset(&s, 0, sizeof s);
        mdl_status st = mdl__npz_each(NPZ, copy, size, collect, &s, &err);
        for (int i = 0; i < s.n && i < 4; i++) assert_true(s.sizes[i] <= size);
        (void)st;
    }
    free(copy);
    free(buf);
}

/* Integer ids of another width are converted to the input's dtype; rows are counted. */
static void test_dataset(void **state) {
    (void)state;
    mdl__data_input in[2] = {{"user", MDL_DTYPE_INT64, 1, {64}}, {"item", MDL_DTYPE_INT32, 1, {64}}};
    mdl__data_set set;
    mdl_error err;
    assert_int_equal(mdl__data_load(NPZ, "--calibration", 2, in, 0, &set, &err), MDL_OK);
    assert_int_equal(set.rows, 4096);
    assert_int_equal(set.row_bytes[0], 8);
    assert_int_equal(set.row_bytes[1], 4);
    for (int64_t i = 0; i < set.rows; i++) {
        assert_true(((int64_t *)set.data[0])[i] >= 0 && ((int64_t *)set.data[0])[i] < 1000);
        assert_true(((int32_t *)set.data[1])[i] >= 0 && ((int32_t *)set.data[1])[i] < 2000);
    }
    mdl__data_free(&set);
    assert_int_equal(mdl__data_load(NPZ, "--calibration", 2, in, 100, &set, &err), MDL_OK);
    assert_int_equal(set.rows, 100);
    mdl__data_free(&set);
    mdl__data_free(&set); /* twice: a no-op */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_truncated_and_corrupted),
        cmocka_unit_test(test_dataset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
