/* Damaged model files: every truncation, bit flips across the whole file, and random garbage.
   Each load must return (OK or an error with a message), never crash or read out of bounds (the
   fuzz-smoke step replays these under ASan/UBSan too).  A damaged file that still loads must
   also create a session and run without crashing. */
#include "common/harness.h"
#include "common/models.h"

#include <stdlib.h>
#include <string.h>

static void *aligned_copy(const void *src, size_t n) {
    void *p = aligned_alloc(16, (n + 15) & ~(size_t)15);
    memcpy(p, src, n);
    return p;
}

/* Loads, and if that works, runs once; returns the load status. */
static mdl_status try_model(const void *data, size_t size) {
    mdl_model *m;
    mdl_error err = {MDL_OK, ""};
    mdl_status st = mdl_model_load_buffer(data, size, NULL, &m, &err);
    if (st != MDL_OK) {
        if (err.msg[0] == '\0') fail_msg("status %s without a message", mdl_status_str(st));
        if (m) fail_msg("failed load left a model");
        return st;
    }
    mdl_session *s;
    if (mdl_session_create(m, NULL, &s, &err) == MDL_OK) {
        for (int i = 0; i < mdl_model_input_count(m); i++) {
            mdl_tensor_info ti;
            mdl_model_input_info(m, i, &ti);
            memset(mdl_session_input_data(s, i), 0, ti.bytes);
        }
        mdl_session_run(s);
        mdl_session_free(s);
    }
    mdl_model_free(m);
    return st;
}

static void build(void **data, size_t *size, tm_mlp *p) {
    *p = (tm_mlp){2, 6, 12, 3, 0, 0, 0, 0, 0, 0};
    assert_int_equal(tm_build_mlp(p, 4, data, size), MDL_OK);
}

static void test_every_truncation(void **state) {
    (void)state;
    void *data;
    size_t size;
    tm_mlp p;
    build(&data, &size, &p);
    for (size_t n = 0; n < size; n++) {
        void *cut = aligned_copy(data, n ? n : 1);
        assert_int_not_equal(try_model(cut, n), MDL_OK);
        free(cut);
    }
    free(data);
    tm_mlp_free(&p);
}

static void test_bit_flips(void **state) {
    (void)state;
    void *data;
    size_t size;
    tm_mlp p;
    build(&data, &size, &p);
    uint8_t *buf = aligned_copy(data, size);
    int rejected = 0;
    for (size_t i = 0; i < size; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            buf[i] ^= (uint8_t)(1u << bit);
            if (try_model(buf, size) != MDL_OK) rejected++;
            buf[i] ^= (uint8_t)(1u << bit);
        }
    /* flips inside weights legitimately load; flips in the structure must be caught */
    assert_true(rejected > 0);
    print_message("bit flips: %d of %zu rejected\n", rejected, size * 3);
    free(buf);
    free(data);
    tm_mlp_free(&p);
}

static void test_random_overwrites(void **state) {
    (void)state;
    void *data;
    size_t size;
    tm_mlp p;
    build(&data, &size, &p);
    th_seed(99);
    uint8_t *buf = aligned_copy(data, size);
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, data, size);
        int n = (int)th_rand_int(1, 8);
        for (int k = 0; k < n; k++) {
            size_t at = (size_t)th_rand_int(0, (int64_t)size - 4);
            uint32_t v = (uint32_t)th_rand_u64();
            /* mix of small, huge and negative 32-bit values */
            if (k % 3 == 0) v &= 0xFF;
            memcpy(buf + at, &v, (size_t)th_rand_int(1, 4));
        }
        try_model(buf, size);
    }
    free(buf);
    free(data);
    tm_mlp_free(&p);
}

static void test_garbage(void **state) {
    (void)state;
    th_seed(5);
    uint8_t *buf = aligned_alloc(16, 4096);
    for (int it = 0; it < 2000; it++) {
        size_t n = (size_t)th_rand_int(0, 4096);
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)th_rand_u64();
        if (n >= 8 && it % 2) memcpy(buf + 4, "MDL1", 4); /* get past the identifier check */
        assert_int_not_equal(try_model(buf, n), MDL_OK);
    }
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_random_overwrites),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
