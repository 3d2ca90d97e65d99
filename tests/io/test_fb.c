/* The FlatBuffers layer on its own: builder output read back through the accessors, and the
   verifier rejecting each kind of damage with a message naming the table and the byte. */
#include "common/harness.h"
#include "io/fb.h"

#include <stdlib.h>
#include <string.h>

/* Test schema:  table Leaf { v:int; }  union U { Leaf }
                 table Root { a:ubyte; b:long; s:string; v:[float]; w:[ubyte](align 16);
                              leaf:Leaf; leaves:[Leaf]; u_type:ubyte; u:U; } */
static const fb_field_desc leaf_fields[] = {{FB_SCALAR, 4, 0, NULL, NULL, 0}};
static const fb_table_desc leaf = {"Leaf", 1, leaf_fields};
static const fb_table_desc *const members[] = {&leaf};
static const fb_field_desc root_fields[] = {
    {FB_SCALAR, 1, 0, NULL, NULL, 0},      {FB_SCALAR, 8, 0, NULL, NULL, 0},
    {FB_STRING, 1, 1, NULL, NULL, 0},      {FB_VECTOR, 4, 0, NULL, NULL, 0},
    {FB_VECTOR, 1, 16, NULL, NULL, 0},     {FB_TABLE, 4, 0, &leaf, NULL, 0},
    {FB_TABLE_VECTOR, 4, 0, &leaf, NULL, 0}, {FB_SCALAR, 1, 0, NULL, NULL, 0},
    {FB_UNION, 4, 0, NULL, members, 1},
};
static const fb_table_desc root = {"Root", 9, root_fields};

static fb_ref make_leaf(fb_builder *b, int32_t v) {
    fb_start_table(b);
    fb_add_i32(b, 0, v);
    return fb_end_table(b);
}

/* Builds a Root into a malloc'd, 16-aligned copy. */
static uint8_t *build(size_t *size) {
    fb_builder b;
    fb_builder_init(&b, NULL);
    const float v[3] = {1.5f, -2.0f, 3.25f};
    uint8_t w[21];
    for (int i = 0; i < 21; i++) w[i] = (uint8_t)(i * 7);
    fb_ref s = fb_create_string(&b, "hello");
    fb_ref vv = fb_create_vector(&b, v, 3, 4, 4);
    fb_ref wv = fb_create_vector(&b, w, 21, 1, 16);
    fb_ref l1 = make_leaf(&b, 11), l2 = make_leaf(&b, 22), l3 = make_leaf(&b, 33), lu = make_leaf(&b, 44);
    fb_ref lv = fb_create_ref_vector(&b, (fb_ref[]){l2, l3}, 2);
    fb_start_table(&b);
    fb_add_u8(&b, 0, 7);
    fb_add_u64(&b, 1, 0x1122334455667788ull);
    fb_add_ref(&b, 2, s);
    fb_add_ref(&b, 3, vv);
    fb_add_ref(&b, 4, wv);
    fb_add_ref(&b, 5, l1);
    fb_add_ref(&b, 6, lv);
    fb_add_u8(&b, 7, 1);
    fb_add_ref(&b, 8, lu);
    fb_ref r = fb_end_table(&b);
    const uint8_t *data;
    assert_true(fb_finish(&b, r, "TEST", &data, size));
    assert_int_equal((uintptr_t)data % 16, 0);
    uint8_t *copy = aligned_alloc(16, (*size + 15) & ~(size_t)15);
    memcpy(copy, data, *size);
    fb_builder_release(&b);
    return copy;
}

static void test_round_trip(void **state) {
    (void)state;
    size_t size;
    uint8_t *buf = build(&size);
    mdl_error err;
    assert_int_equal(fb_verify(buf, size, "TEST", &root, &err), MDL_OK);
    fb_table t = fb_root(buf);
    assert_int_equal(fb_get_u(t, 0, 1, 0), 7);
    assert_true(fb_get_u(t, 1, 8, 0) == 0x1122334455667788ull);
    assert_string_equal(fb_get_str(t, 2, ""), "hello");
    fb_vec v = fb_get_vec(t, 3);
    assert_int_equal(v.len, 3);
    assert_true(fb_vec_f32(v, 2) == 3.25f);
    fb_vec w = fb_get_vec(t, 4);
    assert_int_equal(w.len, 21);
    assert_int_equal(w.data % 16, 0); /* force_align honoured */
    assert_int_equal(buf[w.data + 20], (uint8_t)(20 * 7));
    assert_int_equal(fb_get_i32(fb_get_table(t, 5), 0, 0), 11);
    fb_vec lv = fb_get_vec(t, 6);
    assert_int_equal(lv.len, 2);
    assert_int_equal(fb_get_i32(fb_vec_table(lv, 1), 0, 0), 33);
    assert_int_equal(fb_get_i32(fb_get_table(t, 8), 0, 0), 44);
    /* absent fields give defaults */
    fb_table l = fb_get_table(t, 5);
    assert_int_equal(fb_get_i32(l, 3, -9), -9);
    free(buf);
}

/* Finds the position of the u32 offset field `id` of the root table. */
static uint32_t field_pos(const uint8_t *buf, int id) { return fb_field(fb_root(buf), id); }

static void expect_bad(uint8_t *buf, size_t size, const char *needle) {
    mdl_error err = {MDL_OK, ""};
    mdl_status st = fb_verify(buf, size, "TEST", &root, &err);
    if (st != MDL_CORRUPT_MODEL || !strstr(err.msg, needle))
        fail_msg("want CORRUPT_MODEL with '%s', got %s '%s'", needle, mdl_status_str(st), err.msg);
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static void test_verifier_rejects_damage(void **state) {
    (void)state;
    size_t size;
    uint8_t *good = build(&size), *buf = malloc(size);
    assert_non_null(buf);
    uint8_t *abuf = aligned_alloc(16, (size + 15) & ~(size_t)15);
#define FRESH() memcpy(abuf, good, size)
    /* root offset outside */
    FRESH();
    put_u32(abuf, (uint32_t)size + 4);
    expect_bad(abuf, size, "table offset out of bounds");
    /* string offset pointing past the end */
    FRESH();
    put_u32(abuf + field_pos(good, 2), 0x7FFFFF00u);
    expect_bad(abuf, size, "Root field 2");
    /* string without its terminator */
    FRESH();
    {
        fb_vec s = fb_get_vec(fb_root(good), 2);
        abuf[s.data + 5] = 'X';
    }
    expect_bad(abuf, size, "NUL-terminated");
    /* vector length beyond the buffer */
    FRESH();
    {
        uint32_t p = field_pos(good, 3), q = p + fb_u32(good + p);
        put_u32(abuf + q, 0x40000000u);
    }
    expect_bad(abuf, size, "vector longer than the buffer");
    /* force-aligned vector moved off its 16-byte boundary (by pointing 4 bytes earlier, where a
       plausible length lives) */
    FRESH();
    {
        uint32_t p = field_pos(good, 4);
        put_u32(abuf + p, fb_u32(good + p) - 4);
        put_u32(abuf + p + fb_u32(abuf + p), 1);
    }
    expect_bad(abuf, size, "misaligned");
    /* vtable pointer outside */
    FRESH();
    {
        uint32_t r = fb_u32(good);
        put_u32(abuf + r, 0x7FFFFFF0u);
    }
    expect_bad(abuf, size, "vtable");
    /* union type beyond its members */
    FRESH();
    abuf[field_pos(good, 7)] = 9;
    expect_bad(abuf, size, "union");
    /* wrong identifier and tiny buffers */
    FRESH();
    memcpy(abuf + 4, "NOPE", 4);
    {
        mdl_error err;
        assert_int_equal(fb_verify(abuf, size, "TEST", &root, &err), MDL_CORRUPT_MODEL);
        assert_non_null(strstr(err.msg, "identifier"));
        assert_int_equal(fb_verify(abuf, 7, "TEST", &root, &err), MDL_CORRUPT_MODEL);
    }
#undef FRESH
    free(abuf);
    free(buf);
    free(good);
}

/* Tables nested deeper than the limit are refused (no unbounded recursion). */
static fb_table_desc chain;
static const fb_field_desc chain_fields[] = {{FB_TABLE, 4, 0, &chain, NULL, 0}};
static fb_table_desc chain = {"Chain", 1, chain_fields}; /* a recursive schema */

static void test_depth_limit(void **state) {
    (void)state;
    for (int depth = 10; depth <= 100; depth += 90) {
        fb_builder b;
        fb_builder_init(&b, NULL);
        fb_ref r = 0;
        for (int i = 0; i < depth; i++) {
            fb_start_table(&b);
            fb_add_ref(&b, 0, r);
            r = fb_end_table(&b);
        }
        const uint8_t *data;
        size_t size;
        assert_true(fb_finish(&b, r, "TEST", &data, &size));
        mdl_error err;
        mdl_status st = fb_verify(data, size, "TEST", &chain, &err);
        if (depth == 10) assert_int_equal(st, MDL_OK);
        else {
            assert_int_equal(st, MDL_CORRUPT_MODEL);
            assert_non_null(strstr(err.msg, "nested too deeply"));
        }
        fb_builder_release(&b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_verifier_rejects_damage),
        cmocka_unit_test(test_depth_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
