/* The model seal (include/mdeploy/security.h): SHA-256 against FIPS 180-4's examples and
   libsodium (at every CPU level: the SHA extensions and the portable code); the digest, signature, counter and encryption checks at load, each tamper case
   refused with a message saying what failed; older files without a seal; the host hooks against
   libsodium used directly, and their refusals in a SODIUM=0 build (test_host_hooks). */
#include "common/harness.h"
#include "common/models.h"
#include "graph/model.h"
#include "io/sha256.h"
#include "mdeploy/security.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- SHA-256 --------------------------------------------------------------------------- */

static void hex32(const char *hex, uint8_t out[32]) {
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

/* FIPS 180-4 / NIST "SHA256.pdf" example messages and digests. */
static void test_sha256_fips_vectors(void **state) {
    (void)state;
    static const struct {
        const char *msg, *digest;
    } v[] = {
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
         "mnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t want[32], got[32];
        hex32(v[i].digest, want);
        mdl_sha256(v[i].msg, strlen(v[i].msg), got);
        assert_memory_equal(got, want, 32);
    }
    /* one million 'a', fed in uneven pieces */
    uint8_t want[32], got[32];
    hex32("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", want);
    static char a[1000];
    memset(a, 'a', sizeof a);
    mdl__sha256 s;
    mdl__sha256_init(&s);
    size_t left = 1000000, k = 1;
    while (left) {
        size_t n = k % 997 < left ? k % 997 : left;
        mdl__sha256_update(&s, a, n);
        left -= n;
        k = k * 7 + 3;
    }
    mdl__sha256_final(&s, got);
    assert_memory_equal(got, want, 32);
}

/* Random messages of every length around the block boundaries and a few large ones, split at
   random points, zero runs included: the same digest as libsodium's crypto_hash_sha256. */
static void test_sha256_matches_libsodium(void **state) {
    (void)state;
    th_seed(17);
    size_t max = 1 << 20;
    uint8_t *buf = malloc(max);
    for (size_t i = 0; i < max; i++) buf[i] = (uint8_t)th_rand_u64();
    size_t lens[300 + 4];
    for (int i = 0; i < 300; i++) lens[i] = (size_t)i;
    lens[300] = 4095, lens[301] = 65537, lens[302] = 333333, lens[303] = max;
    for (size_t t = 0; t < sizeof lens / sizeof lens[0]; t++) {
        size_t n = lens[t];
        uint8_t ref[32], got[32];
        uint8_t *msg = malloc(n + 1);
        memcpy(msg, buf, n);
        size_t z0 = n ? (size_t)th_rand_int(0, (int64_t)n - 1) : 0, zn = n ? (size_t)th_rand_int(0, (int64_t)(n - z0)) : 0;
        memset(msg + z0, 0, zn);
        crypto_hash_sha256(ref, msg, n);
        mdl__sha256 s;
        mdl__sha256_init(&s);
        /* pieces: before the zero run, the run through mdl__sha256_zeros, the rest split */
        mdl__sha256_update(&s, msg, z0);
        mdl__sha256_zeros(&s, zn);
        size_t at = z0 + zn;
        while (at < n) {
            size_t piece = (size_t)th_rand_int(1, 200);
            if (piece > n - at) piece = n - at;
            mdl__sha256_update(&s, msg + at, piece);
            at += piece;
        }
        mdl__sha256_final(&s, got);
        if (memcmp(got, ref, 32)) fail_msg("SHA-256 of %zu bytes differs from libsodium's", n);
        free(msg);
    }
    free(buf);
}

/* ---- a small model ----------------------------------------------------------------------- */

enum { K = 64, N = 48 };
static float W[N * K], Bias[N];

/* y = x W^T + b over x [1, K]; counter: the security counter (NULL: none). */
static void *build(size_t *size, const char *counter) {
    th_seed(5);
    th_fill_uniform(W, N * K, -1, 1);
    th_fill_uniform(Bias, N, -1, 1);
    mdl_builder *b;
    mdl_error err;
    assert_int_equal(mdl_builder_create(NULL, &b, &err), MDL_OK);
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, K}, NULL);
    int w = mdl_builder_tensor(b, "w", MDL_DTYPE_FLOAT32, 2, (int64_t[]){N, K}, W);
    int bb = mdl_builder_tensor(b, "b", MDL_DTYPE_FLOAT32, 1, (int64_t[]){N}, Bias);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, N}, NULL);
    mdl_op_options o = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
    assert_true(mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc", 3, (int[]){x, w, bb}, 1, &y, &o) >= 0);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, y);
    mdl_builder_set_metadata(b, "version", "2.0.1");
    if (counter) assert_int_equal(mdl_builder_set_metadata(b, "security_counter", counter), MDL_OK);
    void *data;
    if (mdl_builder_finish(b, &data, size, &err)) fail_msg("%s", err.msg);
    mdl_builder_free(b);
    return data;
}

/* Loads (in place, from an aligned copy) and expects status st with a message containing want
   (st MDL_OK: loads, and runs to the reference when run is set). */
#define expect(...) (th_line = __LINE__, expect_(__VA_ARGS__))
static int th_line;
static void expect_(const void *data, size_t size, const mdl_load_options *o, mdl_status st, const char *want) {
    void *copy = aligned_alloc(64, (size + 63) & ~(size_t)63);
    memcpy(copy, data, size);
    mdl_model *m = (mdl_model *)1;
    mdl_error err;
    memset(&err, 0, sizeof err);
    mdl_status got = mdl_model_load_buffer(copy, size, o, &m, &err);
    if (got != st) fail_msg("line %d: status %d, expected %d (%s)", th_line, (int)got, (int)st, got ? err.msg : "loaded");
    if (st) {
        assert_null(m);
        if (!strstr(err.msg, want)) fail_msg("line %d: message '%s' does not say '%s'", th_line, err.msg, want);
    } else {
        mdl_session *s;
        assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
        float x[K], y[N];
        th_fill_uniform(x, K, -1, 1);
        memcpy(mdl_session_input_data(s, 0), x, sizeof x);
        assert_int_equal(mdl_session_run(s), MDL_OK);
        for (int n = 0; n < N; n++) {
            double acc = Bias[n];
            for (int k = 0; k < K; k++) acc += (double)x[k] * W[n * K + k];
            y[n] = (float)acc;
        }
        assert_true(th_max_rel_err(mdl_session_output_data(s, 0), y, N) < 1e-5);
        mdl_session_free(s);
        mdl_model_free(m);
    }
    free(copy);
}

/* Where the three seal vectors' contents are, found with the public FlatBuffers layout. */
static void seal_at(const uint8_t *b, size_t *digest, size_t *key_id, size_t *sig) {
    fb_table seal = fb_get_table(fb_root(b), MDL__M_SEAL);
    assert_true(seal.pos != 0);
    *digest = fb_get_vec(seal, 0).data;
    *key_id = fb_get_vec(seal, 1).data;
    *sig = fb_get_vec(seal, 2).data;
}

/* ---- digest --------------------------------------------------------------------------------- */

static void test_digest_catches_flipped_weight_bytes(void **state) {
    (void)state;
    size_t size;
    uint8_t *good = build(&size, NULL);
    expect(good, size, NULL, MDL_OK, NULL);
    /* the weights: W's bytes in the file */
    const uint8_t *w = NULL;
    for (size_t i = 0; i + sizeof W <= size && !w; i += 4)
        if (!memcmp(good + i, W, sizeof W)) w = good + i;
    assert_non_null(w);
    uint8_t *bad = malloc(size);
    mdl_load_options skip = mdl_load_options_default();
    skip.flags = MDL_LOAD_NO_DIGEST;
    for (int pct = 0; pct <= 100; pct += 10) {
        size_t at = (size_t)(w - good) + (sizeof W - 1) * (size_t)pct / 100;
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(bad, good, size);
            bad[at] ^= (uint8_t)(1u << bit);
            expect(bad, size, NULL, MDL_CORRUPT_MODEL, "content digest mismatch");
            /* the same file under MDL_LOAD_NO_DIGEST loads: the flag really skips the check */
            void *copy = aligned_alloc(64, (size + 63) & ~(size_t)63);
            memcpy(copy, bad, size);
            mdl_model *m;
            mdl_error err;
            assert_int_equal(mdl_model_load_buffer(copy, size, &skip, &m, &err), MDL_OK);
            mdl_model_free(m);
            free(copy);
        }
    }
    /* and anywhere else: every byte of the file once (a flip that breaks the structure gives a
       structural error instead), but the key id and signature, which the digest leaves out and
       which only matter when keys are given (test_signatures) */
    size_t d, k, s;
    seal_at(good, &d, &k, &s);
    for (size_t at = 0; at < size; at++) {
        if ((at >= k && at < k + 8) || (at >= s && at < s + 64)) continue;
        memcpy(bad, good, size);
        bad[at] ^= 0x10;
        void *copy = aligned_alloc(64, (size + 63) & ~(size_t)63);
        memcpy(copy, bad, size);
        mdl_model *m = NULL;
        mdl_error err;
        mdl_status st = mdl_model_load_buffer(copy, size, NULL, &m, &err);
        if (st == MDL_OK) fail_msg("a flip at byte %zu of %zu loaded", at, size);
        free(copy);
    }
    /* the digest itself changed */
    memcpy(bad, good, size);
    bad[d + 31] ^= 1;
    expect(bad, size, NULL, MDL_CORRUPT_MODEL, "content digest mismatch");
    /* seal vectors of the wrong length: a corrupt file, said so */
    memcpy(bad, good, size);
    bad[d - 4] = 31; /* the digest vector's length prefix */
    expect(bad, size, NULL, MDL_CORRUPT_MODEL, "seal digest has 31 bytes");
    free(bad);
    free(good);
}

#if MDL_SODIUM /* tests that sign and encrypt with the library itself (SODIUM=1 builds) */
/* A file without a seal (as written before format 2.3): the Model vtable's seal entry zeroed. */
static void strip_seal(uint8_t *b) {
    uint32_t root = fb_u32(b);
    uint32_t vt = (uint32_t)((int64_t)root - (int32_t)fb_u32(b + root));
    assert_true(fb_u16(b + vt) > 4 + 2 * MDL__M_SEAL);
    b[vt + 4 + 2 * MDL__M_SEAL] = 0;
    b[vt + 4 + 2 * MDL__M_SEAL + 1] = 0;
}

static void test_older_files_without_a_seal(void **state) {
    (void)state;
    size_t size;
    uint8_t *data = build(&size, NULL);
    strip_seal(data);
    void *copy = aligned_alloc(64, (size + 63) & ~(size_t)63);
    memcpy(copy, data, size);
    mdl_model *m;
    mdl_error err;
    assert_int_equal(mdl_model_load_buffer(copy, size, NULL, &m, &err), MDL_OK);
    assert_non_null(strstr(mdl_model_load_note(m), "no content digest"));
    mdl_model_free(m);
    free(copy);
    mdl_load_options o = mdl_load_options_default();
    o.flags = MDL_LOAD_REQUIRE_DIGEST;
    expect(data, size, &o, MDL_UNSUPPORTED, "MDL_LOAD_REQUIRE_DIGEST");
    /* with public keys: unsigned */
    uint8_t pk[32], sk[64];
    assert_int_equal(mdl_keygen(pk, sk, &err), MDL_OK);
    mdl_security sec = mdl_security_host();
    sec.public_keys = (const uint8_t(*)[32])pk;
    sec.npublic_keys = 1;
    o = mdl_load_options_default();
    o.security = &sec;
    expect(data, size, &o, MDL_UNSUPPORTED, "unsigned");
    /* and it cannot be signed without converting again */
    assert_int_equal(mdl_seal_sign(data, size, sk, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "no seal"));
    free(data);
}

/* ---- signatures ------------------------------------------------------------------------------ */

static void test_signatures(void **state) {
    (void)state;
    size_t size;
    uint8_t *data = build(&size, NULL);
    uint8_t keys[3][32], sks[3][64];
    mdl_error err;
    for (int i = 0; i < 3; i++) assert_int_equal(mdl_keygen(keys[i], sks[i], &err), MDL_OK);
    mdl_security sec = mdl_security_host();
    sec.public_keys = (const uint8_t(*)[32])keys;
    sec.npublic_keys = 2; /* keys 0 and 1 are trusted, 2 is not */
    mdl_load_options o = mdl_load_options_default();
    o.security = &sec;
    /* unsigned, keys given */
    expect(data, size, &o, MDL_UNSUPPORTED, "the model is unsigned");
    /* signed by key 1: the digest is unchanged by signing */
    uint8_t before[32];
    size_t d, k, s;
    seal_at(data, &d, &k, &s);
    memcpy(before, data + d, 32);
    assert_int_equal(mdl_seal_sign(data, size, sks[1], &err), MDL_OK);
    assert_memory_equal(before, data + d, 32);
    expect(data, size, &o, MDL_OK, NULL);
    expect(data, size, NULL, MDL_OK, NULL); /* no keys: the signature is not needed */
    uint8_t *bad = malloc(size);
    /* every byte of the signature flipped in turn */
    for (int i = 0; i < 64; i++) {
        memcpy(bad, data, size);
        bad[s + (size_t)i] ^= 0x01;
        expect(bad, size, &o, MDL_CORRUPT_MODEL, "bad signature");
    }
    /* a flipped key id byte: no such key */
    memcpy(bad, data, size);
    bad[k] ^= 0x80;
    expect(bad, size, &o, MDL_UNSUPPORTED, "unknown key id");
    /* signed with an untrusted key (a wrong key) */
    memcpy(bad, data, size);
    assert_int_equal(mdl_seal_sign(bad, size, sks[2], &err), MDL_OK);
    expect(bad, size, &o, MDL_UNSUPPORTED, "unknown key id");
    /* a trusted key id with another key's signature: bad signature */
    uint8_t id1[8];
    mdl_key_id(keys[1], id1);
    memcpy(bad + k, id1, 8); /* key 2's signature under key 1's id */
    expect(bad, size, &o, MDL_CORRUPT_MODEL, "bad signature");
    /* a changed weight with the digest recomputed (a forger without the secret key) */
    memcpy(bad, data, size);
    bad[size - 100] ^= 1;
    tm_reseal(bad, size);
    expect(bad, size, &o, MDL_CORRUPT_MODEL, "bad signature");
    /* ... which is a valid file for a loader without keys: only signatures stop a forger */
    expect(bad, size, NULL, MDL_OK, NULL);
    /* keys without a verify hook: the caller's mistake, said so */
    mdl_security nohook = sec;
    nohook.verify = NULL;
    o.security = &nohook;
    expect(data, size, &o, MDL_INVALID_ARGUMENT, "verify hook");
    /* NO_DIGEST does not skip the digest when keys are given */
    o.security = &sec;
    o.flags = MDL_LOAD_NO_DIGEST;
    memcpy(bad, data, size);
    bad[size - 100] ^= 1;
    expect(bad, size, &o, MDL_CORRUPT_MODEL, "content digest mismatch");
    free(bad);
    free(data);
}

/* ---- anti-rollback ------------------------------------------------------------------------ */

static void test_security_counter(void **state) {
    (void)state;
    size_t size;
    uint8_t *data = build(&size, "5");
    mdl_load_options o = mdl_load_options_default();
    for (uint64_t min = 0; min <= 5; min++) {
        o.min_counter = min;
        expect(data, size, &o, MDL_OK, NULL);
    }
    o.min_counter = 6;
    expect(data, size, &o, MDL_VERSION, "security counter 5 is below the minimum 6");
    void *copy = aligned_alloc(64, (size + 63) & ~(size_t)63);
    memcpy(copy, data, size);
    mdl_model *m;
    mdl_error err;
    assert_int_equal(mdl_model_load_buffer(copy, size, NULL, &m, &err), MDL_OK);
    assert_int_equal(mdl_model_security_counter(m), 5);
    assert_string_equal(mdl_model_version(m), "2.0.1");
    mdl_model_free(m);
    free(copy);
    free(data);
    data = build(&size, NULL); /* no counter: 0 */
    o.min_counter = 1;
    expect(data, size, &o, MDL_VERSION, "security counter 0 is below the minimum 1");
    free(data);
    /* the builder refuses a counter that is not a number */
    mdl_builder *b;
    assert_int_equal(mdl_builder_create(NULL, &b, &err), MDL_OK);
    assert_int_equal(mdl_builder_set_metadata(b, "security_counter", "12a"), MDL_INVALID_ARGUMENT);
    assert_int_equal(mdl_builder_set_metadata(b, "security_counter", ""), MDL_INVALID_ARGUMENT);
    mdl_builder_free(b);
}

/* ---- encryption --------------------------------------------------------------------------- */

/* An allocator that, when a block is freed, looks for decrypted model bytes left in it. */
typedef struct {
    uint8_t pattern[64]; /* the plain file's first 64 bytes */
    int leaks, live;
} spy;
static void *spy_alloc(void *user, size_t size) {
    spy *s = user;
    size_t *p = aligned_alloc(64, 64 + ((size + 63) & ~(size_t)63));
    if (!p) return NULL;
    p[0] = size;
    s->live++;
    return (uint8_t *)p + 64;
}
static void spy_free(void *user, void *ptr) {
    spy *s = user;
    if (!ptr) return;
    uint8_t *base = (uint8_t *)ptr - 64;
    size_t size = *(size_t *)base;
    for (size_t i = 0; i + 64 <= size; i++)
        if (!memcmp((uint8_t *)ptr + i, s->pattern, 64)) s->leaks++;
    s->live--;
    free(base);
}

static void test_encryption(void **state) {
    (void)state;
    size_t size;
    uint8_t *plain = build(&size, "9");
    uint8_t key[32], wrong[32], pk[32], sk[64];
    mdl_error err;
    assert_int_equal(mdl_encryption_keygen(key, &err), MDL_OK);
    assert_int_equal(mdl_encryption_keygen(wrong, &err), MDL_OK);
    assert_int_equal(mdl_keygen(pk, sk, &err), MDL_OK);
    assert_int_equal(mdl_seal_sign(plain, size, sk, &err), MDL_OK);
    void *enc;
    size_t esize;
    assert_int_equal(mdl_seal_encrypt(plain, size, key, &enc, &esize, &err), MDL_OK);
    /* the weights are not in the encrypted file */
    for (size_t i = 0; i + 64 <= esize; i++) assert_true(memcmp((uint8_t *)enc + i, W, 64) != 0);
    mdl_seal_info info;
    assert_int_equal(mdl_seal_check(enc, esize, NULL, &info, &err), MDL_OK);
    assert_true(info.encrypted && info.has_seal && info.digest_checked && !info.is_signed);
    assert_int_equal(info.security_counter, 9);
    assert_int_equal(mdl_seal_sign(enc, esize, sk, &err), MDL_OK);

    spy sp;
    memset(&sp, 0, sizeof sp);
    memcpy(sp.pattern, plain, 64);
    mdl_allocator a = {spy_alloc, spy_free, &sp};
    mdl_security sec = mdl_security_host();
    sec.decryption_key = key;
    sec.public_keys = (const uint8_t(*)[32])pk;
    sec.npublic_keys = 1;
    mdl_load_options o = mdl_load_options_default();
    o.allocator = &a;
    o.security = &sec;
    o.min_counter = 9;
    expect(enc, esize, &o, MDL_OK, NULL); /* right key: runs to the reference */
    o.flags = MDL_LOAD_COPY;
    expect(enc, esize, &o, MDL_OK, NULL);
    o.flags = 0;
    o.min_counter = 10;
    expect(enc, esize, &o, MDL_VERSION, "security counter 9 is below the minimum 10");
    o.min_counter = 0;
    assert_int_equal(sp.live, 0);
    assert_int_equal(sp.leaks, 0); /* the decrypted copy was wiped before it was freed */
    /* wrong key: a clean error, no model, nothing decrypted left behind */
    sec.decryption_key = wrong;
    expect(enc, esize, &o, MDL_CORRUPT_MODEL, "decryption failed: wrong decryption key");
    /* no key */
    sec.decryption_key = NULL;
    expect(enc, esize, &o, MDL_INVALID_ARGUMENT, "the model is encrypted");
    /* a changed ciphertext byte: the outer digest, or with it skipped (no keys), the tag */
    sec.decryption_key = key;
    uint8_t *bad = malloc(esize);
    memcpy(bad, enc, esize);
    fb_vec ct = fb_get_vec(fb_get_table(fb_root(bad), MDL__M_ENCRYPTED), 1);
    assert_true(ct.len == size + 16);
    bad[ct.data + ct.len / 2] ^= 1;
    expect(bad, esize, &o, MDL_CORRUPT_MODEL, "content digest mismatch");
    sec.npublic_keys = 0;
    o.flags = MDL_LOAD_NO_DIGEST;
    expect(bad, esize, &o, MDL_CORRUPT_MODEL, "decryption failed");
    assert_int_equal(sp.live, 0);
    assert_int_equal(sp.leaks, 0);
    /* an unsigned inner model in a signed envelope is refused when keys are given */
    uint8_t *plain2 = build(&size, "9");
    void *enc2;
    size_t esize2;
    assert_int_equal(mdl_seal_encrypt(plain2, size, key, &enc2, &esize2, &err), MDL_OK);
    assert_int_equal(mdl_seal_sign(enc2, esize2, sk, &err), MDL_OK);
    sec.npublic_keys = 1;
    o.flags = 0;
    expect(enc2, esize2, &o, MDL_UNSUPPORTED, "unsigned");
    free(plain2);
    free(enc2);
    free(bad);
    free(enc);
    free(plain);
}

#endif

/* ---- the host hooks, against libsodium used directly ----------------------------------------
   The test signs and encrypts with libsodium itself (the message and key id as security.h
   specifies them), not with the library: so the same checks run in a SODIUM=1 build (the model
   loads and runs to the reference; a bad signature is refused) and in a SODIUM=0 build, whose
   library has no libsodium: every load that needs a signature check or decryption is refused
   with MDL_UNSUPPORTED saying so (never loaded unchecked), keygen/sign/encrypt likewise, while
   the digest and key files still work. */

/* Signs data in place as mdl_seal_sign would, with libsodium alone. */
static void oracle_sign(uint8_t *data, const uint8_t pk[32], const uint8_t sk[64]) {
    size_t d, k, s;
    seal_at(data, &d, &k, &s);
    uint8_t h[32], msg[48];
    crypto_hash_sha256(h, pk, 32);
    memcpy(data + k, h, 8); /* key id: the first 8 bytes of SHA-256(public key) */
    memcpy(msg, "MDL1SIG1", 8);
    memcpy(msg + 8, data + d, 32);
    memcpy(msg + 40, data + k, 8);
    crypto_sign_detached(data + s, NULL, msg, sizeof msg, sk);
}

static void test_host_hooks(void **state) {
    (void)state;
    assert_true(sodium_init() >= 0);
    size_t size;
    uint8_t *data = build(&size, NULL);
    uint8_t pk[32], sk[64], key[32], nonce[24];
    crypto_sign_keypair(pk, sk);
    crypto_aead_xchacha20poly1305_ietf_keygen(key);
    randombytes_buf(nonce, sizeof nonce);
    oracle_sign(data, pk, sk);
    uint8_t *bad = malloc(size);
    memcpy(bad, data, size);
    size_t d, k, sg;
    seal_at(bad, &d, &k, &sg);
    bad[sg + 5] ^= 1;
    /* the encrypted file: ciphertext by libsodium, wrapped by the library's plain-C part */
    size_t clen = size + 16;
    uint8_t *ct = malloc(clen);
    unsigned long long n;
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &n, data, size, (const uint8_t *)"MDL1ENC1", 8, NULL, nonce, key);
    void *enc;
    size_t esize;
    mdl_error err;
    assert_int_equal(mdl__seal_wrap_encrypted(ct, clen, nonce, 0, &enc, &esize, &err), MDL_OK);
    mdl_security sec = mdl_security_host();
    sec.public_keys = (const uint8_t(*)[32])pk;
    sec.npublic_keys = 1;
    mdl_load_options o = mdl_load_options_default();
    o.security = &sec;
    mdl_security dec = mdl_security_host();
    dec.decryption_key = key;
    mdl_load_options od = mdl_load_options_default();
    od.security = &dec;
    expect(data, size, NULL, MDL_OK, NULL); /* no keys: the digest only, in both builds */
    expect(bad, size, NULL, MDL_OK, NULL);
    /* key files are plain C in both builds */
    uint8_t back[32];
    assert_int_equal(mdl_key_file_write(th_tmp("k.pub"), "ed25519-public", pk, 32, &err), MDL_OK);
    assert_int_equal(mdl_key_file_read(th_tmp("k.pub"), "ed25519-public", back, 32, &err), MDL_OK);
    assert_memory_equal(back, pk, 32);
#if MDL_SODIUM
    expect(data, size, &o, MDL_OK, NULL);
    expect(bad, size, &o, MDL_CORRUPT_MODEL, "bad signature");
    expect(enc, esize, &od, MDL_OK, NULL);
#else
    const char *why = "built without libsodium (SODIUM=0)";
    expect(data, size, &o, MDL_UNSUPPORTED, why);
    expect(bad, size, &o, MDL_UNSUPPORTED, why);
    expect(enc, esize, &od, MDL_UNSUPPORTED, why);
    expect(enc, esize, NULL, MDL_INVALID_ARGUMENT, "the model is encrypted"); /* no key: refused as ever */
    uint8_t psk[64], ek[32];
    assert_int_equal(mdl_keygen(pk, psk, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, why));
    assert_int_equal(mdl_encryption_keygen(ek, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, why));
    assert_int_equal(mdl_seal_sign(data, size, sk, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, why));
    void *enc2 = (void *)1;
    size_t esize2 = 1;
    assert_int_equal(mdl_seal_encrypt(data, size, key, &enc2, &esize2, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, why));
    assert_null(enc2);
#endif
    free(enc);
    free(ct);
    free(bad);
    free(data);
}

int main(int argc, char **argv) {
    (void)argc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_fips_vectors),
        cmocka_unit_test(test_sha256_matches_libsodium),
        cmocka_unit_test(test_digest_catches_flipped_weight_bytes),
        cmocka_unit_test(test_host_hooks),
#if MDL_SODIUM /* these sign and encrypt with the library (test_host_hooks: its refusals in SODIUM=0) */
        cmocka_unit_test(test_older_files_without_a_seal),
        cmocka_unit_test(test_signatures),
        cmocka_unit_test(test_security_counter),
        cmocka_unit_test(test_encryption),
#endif
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    /* the SHA extensions (x86) at the default level, the portable code at MDL_CPU_LEVEL=0 */
    return failed + th_rerun_lower_cpu_levels(argv[0]);
}
