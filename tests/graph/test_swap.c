/* Hot swap with rollback (include/mdeploy/swap.h).  Models A (y = x + 1) and B (y = x + 2) with
   self-test vectors; the oracle for every run is computed here per model (x + 1 or x + 2).  The
   stress test: 4 threads run continuously while the main thread loads 1,000 candidates, good and
   bad (corrupt file, different inputs, failing self-test, flipped weight, truncated file), with
   rollbacks between them: no run may fail, every output must be one model's answer, refused
   candidates must change nothing.  make check runs this test under ASan (leaks) and ThreadSanitizer. */
#include "common/harness.h"
#include "common/models.h"
#include "mdeploy/swap.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W 4

typedef struct blob {
    void *data;
    size_t size;
} blob;

static blob make(float c, int width, const char *version, int ncases, float skew) {
    blob b;
    assert_int_equal(tm_build_addc(c, width, version, ncases, skew, &b.data, &b.size), MDL_OK);
    return b;
}

/* Runs x through s; returns 1 or 2 (which model answered) or -1 (a wrong answer), 0 on a
   failed run. */
static int run_once(mdl_session *s, int seed) {
    float x[W], y[W];
    for (int i = 0; i < W; i++) x[i] = (float)((seed + i) % 97) * 0.5f;
    memcpy(mdl_session_input_data(s, 0), x, sizeof x);
    if (mdl_session_run(s) != MDL_OK) return 0;
    memcpy(y, mdl_session_output_data(s, 0), sizeof y);
    int which = y[0] == x[0] + 1.0f ? 1 : y[0] == x[0] + 2.0f ? 2 : -1;
    for (int i = 1; i < W && which > 0; i++)
        if (y[i] != x[i] + (float)which) which = -1;
    return which;
}

static void expect_refused(mdl_status st, const mdl_error *err, mdl_status want, const char *msg) {
    if (st != want || strncmp(err->msg, "candidate refused: ", 19) || !strstr(err->msg, msg))
        fail_msg("got %s '%s', want %s containing '%s'", mdl_status_str(st), err->msg, mdl_status_str(want), msg);
}

static int active_model(mdl_swap *sw) {
    mdl_session *s;
    mdl_error err;
    assert_int_equal(mdl_swap_acquire(sw, &s, &err), MDL_OK);
    int which = run_once(s, 7);
    mdl_swap_release(sw, s);
    return which;
}

static void test_basics(void **state) {
    (void)state;
    blob a = make(1, W, "A", 2, 0), b = make(2, W, "B", 2, 0), plain = make(2, W, "P", 0, 0);
    mdl_swap *sw;
    mdl_error err;
    mdl_swap_info info;
    assert_int_equal(mdl_swap_create_buffer(a.data, a.size, NULL, &sw, &err), MDL_OK);
    assert_int_equal(mdl_swap_rollback(sw, &err), MDL_OUT_OF_RANGE);
    assert_int_equal(active_model(sw), 1);
    /* a file candidate */
    const char *path = th_tmp("swap_b.mdl");
    assert_true(th_write_file(path, b.data, b.size));
    assert_int_equal(mdl_swap_load_file(sw, path, NULL, &err), MDL_OK);
    assert_int_equal(active_model(sw), 2);
    assert_int_equal(mdl_swap_info_get(sw, &info), MDL_OK);
    assert_int_equal(info.id, 2);
    assert_int_equal(info.previous_id, 1);
    assert_string_equal(info.version, "B");
    assert_string_equal(info.source, path);
    expect_refused(mdl_swap_load_file(sw, th_tmp("missing.mdl"), NULL, &err), &err, MDL_IO, "missing.mdl");
    /* rollback and roll forward again */
    assert_int_equal(mdl_swap_rollback(sw, &err), MDL_OK);
    assert_int_equal(active_model(sw), 1);
    assert_int_equal(mdl_swap_rollback(sw, &err), MDL_OK);
    assert_int_equal(active_model(sw), 2);
    /* a session keeps its model after the switch; a retired model lives until it is released */
    mdl_session *held;
    assert_int_equal(mdl_swap_acquire(sw, &held, &err), MDL_OK); /* B */
    assert_int_equal(mdl_swap_load_buffer(sw, a.data, a.size, NULL, &err), MDL_OK); /* A, prev B */
    assert_int_equal(mdl_swap_load_buffer(sw, a.data, a.size, NULL, &err), MDL_OK); /* A', prev A: B retired */
    assert_int_equal(mdl_swap_info_get(sw, &info), MDL_OK);
    assert_int_equal(info.live_models, 3);
    assert_int_equal(run_once(held, 3), 2);
    assert_int_equal(active_model(sw), 1);
    mdl_swap_release(sw, held);
    assert_int_equal(mdl_swap_info_get(sw, &info), MDL_OK);
    assert_int_equal(info.live_models, 2);
    assert_int_equal(info.accepted, 3);
    assert_int_equal(info.refused, 1);
    assert_int_equal(info.rollbacks, 2);
    mdl_swap_free(sw);
    /* vectors required */
    mdl_swap_options o = mdl_swap_options_default();
    o.require_selftest = true;
    expect_refused(mdl_swap_create_buffer(plain.data, plain.size, &o, &sw, &err), &err, MDL_INVALID_ARGUMENT,
                   "no self-test vectors");
    assert_int_equal(mdl_swap_create_buffer(a.data, a.size, &o, &sw, &err), MDL_OK);
    expect_refused(mdl_swap_load_buffer(sw, plain.data, plain.size, NULL, &err), &err, MDL_INVALID_ARGUMENT,
                   "no self-test vectors");
    mdl_swap_free(sw);
    free(a.data);
    free(b.data);
    free(plain.data);
}

/* Sessions come from the pools: after warm-up, acquire + run + release allocate nothing (the
   sessions' allocator counts; the pool's own array grows only when a session is created). */
static atomic_long n_alloc;
static void *count_alloc(void *user, size_t n) {
    (void)user;
    atomic_fetch_add(&n_alloc, 1);
    return malloc(n);
}
static void count_free(void *user, void *p) {
    (void)user;
    free(p);
}

static void test_steady_state_allocates_nothing(void **state) {
    (void)state;
    blob a = make(1, W, "A", 2, 0), b = make(2, W, "B", 2, 0);
    mdl_allocator al = {count_alloc, count_free, NULL};
    mdl_swap_options o = mdl_swap_options_default();
    o.session.allocator = &al;
    mdl_swap *sw;
    mdl_error err;
    assert_int_equal(mdl_swap_create_buffer(a.data, a.size, &o, &sw, &err), MDL_OK);
    mdl_session *s1, *s2;
    assert_int_equal(mdl_swap_acquire(sw, &s1, &err), MDL_OK); /* two at once: the pool holds two */
    assert_int_equal(mdl_swap_acquire(sw, &s2, &err), MDL_OK);
    mdl_swap_release(sw, s1);
    mdl_swap_release(sw, s2);
    long before = atomic_load(&n_alloc);
    assert_true(before > 0);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(mdl_swap_acquire(sw, &s1, &err), MDL_OK);
        assert_int_equal(mdl_swap_acquire(sw, &s2, &err), MDL_OK);
        assert_int_equal(run_once(s1, i), 1);
        assert_int_equal(run_once(s2, i + 1), 1);
        mdl_swap_release(sw, s2);
        mdl_swap_release(sw, s1);
    }
    assert_int_equal(atomic_load(&n_alloc), before);
    /* after a switch the new model's pool fills once, then stays */
    assert_int_equal(mdl_swap_load_buffer(sw, b.data, b.size, NULL, &err), MDL_OK);
    assert_int_equal(active_model(sw), 2);
    long after = atomic_load(&n_alloc);
    assert_true(after > before);
    for (int i = 0; i < 100; i++) assert_int_equal(active_model(sw), 2);
    assert_int_equal(atomic_load(&n_alloc), after);
    mdl_swap_free(sw);
    free(a.data);
    free(b.data);
}

/* ---- stress ------------------------------------------------------------------------------ */

typedef struct shared {
    mdl_swap *sw;
    atomic_int stop;
    atomic_long runs, failed, wrong, seen[3];
} shared;

static void *reader(void *arg) {
    shared *sh = arg;
    int seed = (int)(atomic_fetch_add(&sh->runs, 0) & 0xff);
    while (!atomic_load(&sh->stop)) {
        mdl_session *s;
        mdl_error err;
        if (mdl_swap_acquire(sh->sw, &s, &err)) {
            atomic_fetch_add(&sh->failed, 1);
            continue;
        }
        /* a lease of 1 to 3 runs: all of them on the same model */
        int first = 0;
        for (int k = 0; k < 1 + seed % 3; k++) {
            int which = run_once(s, seed++);
            if (which == 0) atomic_fetch_add(&sh->failed, 1);
            else if (which < 0 || (first && which != first)) atomic_fetch_add(&sh->wrong, 1);
            else atomic_fetch_add(&sh->seen[which], 1);
            first = which;
            atomic_fetch_add(&sh->runs, 1);
        }
        mdl_swap_release(sh->sw, s);
    }
    return NULL;
}

static void test_stress(void **state) {
    (void)state;
    blob a = make(1, W, "A", 2, 0), b = make(2, W, "B", 2, 0);
    blob wide = make(1, W + 1, "wide", 0, 0);      /* different input shape */
    blob lying = make(2, W, "lying", 2, 0.5f);     /* its vectors fail */
    blob flipped = make(1, W, "flipped", 2, 0);    /* a weight bit flipped below */
    float one[W];
    for (int i = 0; i < W; i++) one[i] = 1.0f;
    for (size_t p = 0; p + sizeof one <= flipped.size; p += 4)
        if (!memcmp((uint8_t *)flipped.data + p, one, sizeof one)) {
            ((uint8_t *)flipped.data)[p + 3] ^= 0x01; /* 1.0 (0x3f800000) -> 0.25 (0x3e800000) */
            tm_reseal(flipped.data, flipped.size); /* past the digest: the self-test must catch it */
            break;
        }
    blob corrupt = {malloc(a.size), a.size};
    memcpy(corrupt.data, a.data, a.size);
    ((uint8_t *)corrupt.data)[0] ^= 0x80; /* the root offset points outside the file */
    blob truncated = {a.data, a.size / 2};

    shared sh;
    memset(&sh, 0, sizeof sh);
    mdl_error err;
    assert_int_equal(mdl_swap_create_buffer(a.data, a.size, NULL, &sh.sw, &err), MDL_OK);
    pthread_t th[4];
    for (int t = 0; t < 4; t++) assert_int_equal(pthread_create(&th[t], NULL, reader, &sh), 0);
    int expect = 1; /* which model should be active */
    long accepted = 0, refused = 0, rollbacks = 0;
    for (int i = 0; accepted + refused < 1000; i++) { /* 1,000 candidates, and rollbacks between */
        mdl_status st;
        switch (i % 8) {
        case 0:
        case 4: { /* a good candidate: the other model */
            const blob *g = expect == 1 ? &b : &a;
            st = mdl_swap_load_buffer(sh.sw, g->data, g->size, NULL, &err);
            if (st) fail_msg("swap %d: %s", i, err.msg);
            expect = 3 - expect;
            accepted++;
            /* let the readers run on it */
            long r0 = atomic_load(&sh.runs);
            while (atomic_load(&sh.runs) < r0 + 16) sched_yield();
            break;
        }
        case 1:
            expect_refused(mdl_swap_load_buffer(sh.sw, corrupt.data, corrupt.size, NULL, &err), &err,
                           MDL_CORRUPT_MODEL, "");
            refused++;
            break;
        case 2:
            expect_refused(mdl_swap_load_buffer(sh.sw, wide.data, wide.size, NULL, &err), &err,
                           MDL_INVALID_ARGUMENT, "input 0 'x' has shape [1x5], the active model [1x4]");
            refused++;
            break;
        case 3:
            expect_refused(mdl_swap_load_buffer(sh.sw, lying.data, lying.size, NULL, &err), &err,
                           MDL_CORRUPT_MODEL, "self-test case 0: output 0 'y' element 0");
            refused++;
            break;
        case 5:
            expect_refused(mdl_swap_load_buffer(sh.sw, flipped.data, flipped.size, NULL, &err), &err,
                           MDL_CORRUPT_MODEL, "self-test case 0");
            refused++;
            break;
        case 6:
            st = mdl_swap_load_buffer(sh.sw, truncated.data, truncated.size, NULL, &err);
            if (st == MDL_OK) fail_msg("swap %d: a truncated file was accepted", i);
            expect_refused(st, &err, st, "");
            refused++;
            break;
        default:
            assert_int_equal(mdl_swap_rollback(sh.sw, &err), MDL_OK);
            expect = 3 - expect;
            rollbacks++;
            break;
        }
        if (i % 50 == 0) assert_int_equal(active_model(sh.sw), expect);
    }
    atomic_store(&sh.stop, 1);
    for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
    assert_int_equal(active_model(sh.sw), expect);
    mdl_swap_info info;
    assert_int_equal(mdl_swap_info_get(sh.sw, &info), MDL_OK);
    assert_int_equal((long)info.accepted, accepted);
    assert_int_equal((long)info.refused, refused);
    assert_int_equal((long)info.rollbacks, rollbacks);
    assert_int_equal(info.live_models, 2); /* every retired model was freed */
    printf("stress: %ld runs (model A %ld, model B %ld), %ld accepted, %ld refused, %ld rollbacks\n",
           (long)sh.runs, (long)sh.seen[1], (long)sh.seen[2], accepted, refused, rollbacks);
    assert_int_equal(atomic_load(&sh.failed), 0);
    assert_int_equal(atomic_load(&sh.wrong), 0);
    assert_true(sh.seen[1] > 0 && sh.seen[2] > 0);
    mdl_swap_free(sh.sw);
    free(a.data);
    free(b.data);
    free(wide.data);
    free(lying.data);
    free(flipped.data);
    free(corrupt.data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_steady_state_allocates_nothing),
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
