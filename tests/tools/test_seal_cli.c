/* Signed and encrypted models made with the command-line tools (mdeploy-keygen, mdeploy-convert
   --sign/--encrypt/--security-counter, mdeploy-sign, mdeploy-inspect --verify), checked
   independently of the loader: the FlatBuffers layout is walked here by hand from the format
   specification, the digest recomputed with libsodium's crypto_hash_sha256 over the byte ranges
   include/mdeploy/security.h documents, and the signature verified with libsodium's
   crypto_sign_verify_detached; flatc still decodes the signed file. */
#include "common/harness.h"
#include "mdeploy/security.h"

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIN MDL_BUILD_DIR "/bin/"
#define ONNX "tests/models/mlp.onnx"

/* ---- FlatBuffers by hand (little-endian; offsets relative to where they are stored) ------ */

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Position of field `id` of the table at `table`, 0 when absent. */
static size_t field(const uint8_t *b, size_t size, size_t table, int id) {
    assert_true(table + 4 <= size);
    size_t vt = (size_t)((int64_t)table - (int32_t)rd32(b + table));
    assert_true(vt + 4 <= size);
    uint16_t vlen = rd16(b + vt);
    if (4u + 2u * (unsigned)id + 2u > vlen) return 0;
    uint16_t off = rd16(b + vt + 4 + 2 * id);
    return off ? table + off : 0;
}
static size_t deref(const uint8_t *b, size_t p) { return p + rd32(b + p); }

typedef struct { size_t at, len; } range;

/* The Model root's field 15 (seal): its three [ubyte] vectors (digest, key_id, signature). */
static void seal_ranges(const uint8_t *b, size_t size, range r[3], uint64_t *counter) {
    size_t root = rd32(b);
    assert_memory_equal(b + 4, "MDL1", 4);
    size_t c = field(b, size, root, 14);
    *counter = c ? (uint64_t)rd32(b + c) | (uint64_t)rd32(b + c + 4) << 32 : 0;
    size_t f = field(b, size, root, 15);
    assert_true(f != 0);
    size_t seal = deref(b, f);
    for (int i = 0; i < 3; i++) {
        size_t v = field(b, size, seal, i);
        assert_true(v != 0);
        size_t vec = deref(b, v);
        r[i].len = rd32(b + vec);
        r[i].at = vec + 4;
        assert_true(r[i].at + r[i].len <= size);
    }
    assert_int_equal(r[0].len, 32);
    assert_int_equal(r[1].len, 8);
    assert_int_equal(r[2].len, 64);
}

#if MDL_SODIUM /* the tools sign and encrypt (SODIUM=1 builds) */
static void read_hex_key(const char *path, const char *kind, uint8_t *out, size_t len) {
    char *text = th_read_file(path, NULL);
    assert_non_null(text);
    char want[64];
    snprintf(want, sizeof want, "mdeploy %s ", kind);
    assert_memory_equal(text, want, strlen(want));
    size_t n;
    assert_int_equal(sodium_hex2bin(out, len, text + strlen(want), 2 * len, NULL, &n, NULL), 0);
    assert_int_equal(n, len);
    free(text);
}

/* Checks a CLI-made signed file with libsodium alone; returns its digest in d. */
static void independent_check(const char *path, const char *pubfile, uint64_t want_counter, uint8_t d[32]) {
    size_t size;
    uint8_t *b = th_read_file(path, &size);
    assert_non_null(b);
    range r[3];
    uint64_t counter;
    seal_ranges(b, size, r, &counter);
    assert_int_equal(counter, want_counter);
    uint8_t *z = malloc(size);
    memcpy(z, b, size);
    for (int i = 0; i < 3; i++) memset(z + r[i].at, 0, r[i].len);
    crypto_hash_sha256(d, z, size);
    assert_memory_equal(d, b + r[0].at, 32);
    uint8_t pk[32], id[32];
    read_hex_key(pubfile, "ed25519-public", pk, 32);
    crypto_hash_sha256(id, pk, 32);
    assert_memory_equal(id, b + r[1].at, 8);
    uint8_t msg[48];
    memcpy(msg, "MDL1SIG1", 8);
    memcpy(msg + 8, d, 32);
    memcpy(msg + 40, b + r[1].at, 8);
    assert_int_equal(crypto_sign_verify_detached(b + r[2].at, msg, sizeof msg, pk), 0);
    /* and a flipped message byte does not verify: the check can fail */
    msg[20] ^= 1;
    assert_int_not_equal(crypto_sign_verify_detached(b + r[2].at, msg, sizeof msg, pk), 0);
    free(z);
    free(b);
}

static int run(const char **out, const char *fmt, const char *a, const char *b2, const char *c) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, a, b2, c);
    char full[2300];
    snprintf(full, sizeof full, "%s >%s", cmd, th_tmp("out.txt"));
    const char *msg;
    int rc = th_run_stderr(&msg, full);
    static char *text;
    free(text);
    text = th_read_file(th_tmp("out.txt"), NULL);
    *out = text ? text : "";
    if (rc) fprintf(stderr, "[%s] -> %d: %s%s", cmd, rc, msg, *out);
    return rc;
}

static void test_cli_signed_model_verifies_independently(void **state) {
    (void)state;
    const char *out;
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s", th_tmp("signer"));
    assert_int_equal(run(&out, BIN "mdeploy-keygen --sign %s%s%s", prefix, "", ""), 0);
    assert_int_equal(run(&out, BIN "mdeploy-keygen --sign %s%s%s", th_tmp("other"), "", ""), 0);
    char key[600], pub[600], other[600], model[600];
    snprintf(key, sizeof key, "%s.key", prefix);
    snprintf(pub, sizeof pub, "%s.pub", prefix);
    snprintf(other, sizeof other, "%s.pub", th_tmp("other"));
    snprintf(model, sizeof model, "%s", th_tmp("signed.mdl"));
    assert_int_equal(run(&out, BIN "mdeploy-convert " ONNX " -q -o %s --model-version 3.1.4 --security-counter 42 --sign %s%s",
                         model, key, ""), 0);
    uint8_t d[32];
    independent_check(model, pub, 42, d);

    /* flatc decodes the signed file, seal and counter included */
    assert_int_equal(th_system("flatc --json --raw-binary --strict-json -o %s src/io/mdeploy.fbs -- %s",
                               th_tmpdir(), model), 0);
    char *text = th_read_file(th_tmp("signed.json"), NULL);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    assert_int_equal((int)cJSON_GetObjectItem(j, "security_counter")->valuedouble, 42);
    assert_string_equal(cJSON_GetObjectItem(j, "version")->valuestring, "3.1.4");
    cJSON *digest = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "seal"), "digest");
    assert_int_equal(cJSON_GetArraySize(digest), 32);
    for (int i = 0; i < 32; i++) assert_int_equal(cJSON_GetArrayItem(digest, i)->valueint, d[i]);
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tensors")) > 0);
    cJSON_Delete(j);

    /* mdeploy-inspect --verify: ok with the right key, each failure named otherwise */
    assert_int_equal(run(&out, BIN "mdeploy-inspect %s --verify --public-key %s --min-counter 42%s", model, pub, ""), 0);
    assert_non_null(strstr(out, "signature: ok"));
    assert_non_null(strstr(out, "digest:    ok"));
    assert_non_null(strstr(out, "counter:   42"));
    assert_non_null(strstr(out, "verify: ok"));
    assert_int_equal(run(&out, BIN "mdeploy-inspect %s --verify --public-key %s%s", model, other, ""), 1);
    assert_non_null(strstr(out, "unknown key id"));
    assert_int_equal(run(&out, BIN "mdeploy-inspect %s --verify --public-key %s --min-counter 43%s", model, pub, ""), 1);
    assert_non_null(strstr(out, "below the minimum 43"));
    /* a flipped weight byte (the file's last quarter holds the weights) */
    size_t size;
    uint8_t *b = th_read_file(model, &size);
    b[size * 3 / 4] ^= 4;
    th_write_file(th_tmp("flipped.mdl"), b, size);
    free(b);
    assert_int_equal(run(&out, BIN "mdeploy-inspect %s --verify%s%s", th_tmp("flipped.mdl"), "", ""), 1);
    assert_non_null(strstr(out, "content digest mismatch"));
    assert_int_not_equal(run(&out, BIN "mdeploy-run %s%s%s", th_tmp("flipped.mdl"), "", ""), 0);

    /* mdeploy-sign on an unsigned model, over the public API: the same independent check */
    assert_int_equal(run(&out, BIN "mdeploy-convert " ONNX " -q -o %s%s%s", th_tmp("plain.mdl"), "", ""), 0);
    assert_int_equal(run(&out, BIN "mdeploy-inspect %s --verify --public-key %s%s", th_tmp("plain.mdl"), pub, ""), 1);
    assert_non_null(strstr(out, "unsigned"));
    assert_int_equal(run(&out, BIN "mdeploy-sign %s --key %s -o %s", th_tmp("plain.mdl"), key, th_tmp("resigned.mdl")), 0);
    independent_check(th_tmp("resigned.mdl"), pub, 0, d);
}

static void test_cli_encrypted_model(void **state) {
    (void)state;
    const char *out;
    assert_int_equal(run(&out, BIN "mdeploy-keygen --sign %s%s%s", th_tmp("k"), "", ""), 0);
    assert_int_equal(run(&out, BIN "mdeploy-keygen --encryption %s%s%s", th_tmp("enc.key"), "", ""), 0);
    assert_int_equal(run(&out, BIN "mdeploy-keygen --encryption %s%s%s", th_tmp("wrong.key"), "", ""), 0);
    char key[600], pub[600];
    snprintf(key, sizeof key, "%s", th_tmp("k.key"));
    snprintf(pub, sizeof pub, "%s", th_tmp("k.pub"));
    assert_int_equal(run(&out, BIN "mdeploy-convert " ONNX " -q -o %s --sign %s --encrypt %s", th_tmp("enc.mdl"), key,
                         th_tmp("enc.key")), 0);
    /* the outer file is signed too: the same independent check */
    uint8_t d[32];
    independent_check(th_tmp("enc.mdl"), pub, 0, d);
    /* with both keys: the outer and the inner seal check, and the inner model loads */
    assert_int_equal(run(&out, BIN "mdeploy-inspect %s --verify --public-key %s --decryption-key %s", th_tmp("enc.mdl"),
                         pub, th_tmp("enc.key")), 0);
    assert_non_null(strstr(out, "load:      ok"));
    assert_int_equal(run(&out, BIN "mdeploy-inspect %s --verify --decryption-key %s%s", th_tmp("enc.mdl"),
                         th_tmp("wrong.key"), ""), 1);
    assert_non_null(strstr(out, "decryption failed: wrong decryption key"));
    /* without a key the model does not load, and says why */
    const char *msg;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, BIN "mdeploy-run %s", th_tmp("enc.mdl"));
    assert_int_not_equal(th_run_stderr(&msg, cmd), 0);
    assert_non_null(strstr(msg, "encrypted"));
}

#else
/* SODIUM=0: the tools refuse to make keys, sign or encrypt, saying why, and leave no unsigned
   output behind; a model signed here with libsodium itself is refused by --verify with keys. */
static void test_cli_refuses_without_libsodium(void **state) {
    (void)state;
    const char *msg;
    char cmd[2048], key[600], pub[600], model[600];
    const char *why = "built without libsodium (SODIUM=0)";
    snprintf(cmd, sizeof cmd, BIN "mdeploy-keygen --sign %s", th_tmp("signer"));
    assert_int_equal(th_run_stderr(&msg, cmd), 1);
    assert_non_null(strstr(msg, why));
    snprintf(cmd, sizeof cmd, BIN "mdeploy-keygen --encryption %s", th_tmp("enc.key"));
    assert_int_equal(th_run_stderr(&msg, cmd), 1);
    assert_non_null(strstr(msg, why));
    uint8_t pk[32], sk[64];
    assert_true(sodium_init() >= 0);
    crypto_sign_keypair(pk, sk);
    mdl_error err;
    snprintf(key, sizeof key, "%s", th_tmp("s.key"));
    snprintf(pub, sizeof pub, "%s", th_tmp("s.pub"));
    snprintf(model, sizeof model, "%s", th_tmp("m.mdl"));
    assert_int_equal(mdl_key_file_write(key, "ed25519-secret", sk, 64, &err), MDL_OK);
    assert_int_equal(mdl_key_file_write(pub, "ed25519-public", pk, 32, &err), MDL_OK);
    snprintf(cmd, sizeof cmd, BIN "mdeploy-convert " ONNX " -o %s -q --sign %s", model, key);
    assert_int_equal(th_run_stderr(&msg, cmd), 1);
    assert_non_null(strstr(msg, why));
    assert_false(th_exists(model)); /* no unsigned file where a signed one was asked for */
    snprintf(cmd, sizeof cmd, BIN "mdeploy-convert " ONNX " -o %s -q", model);
    assert_int_equal(th_run_stderr(&msg, cmd), 0);
    snprintf(cmd, sizeof cmd, BIN "mdeploy-sign %s --key %s", model, key);
    assert_int_equal(th_run_stderr(&msg, cmd), 1);
    assert_non_null(strstr(msg, why));
    /* signed by libsodium here (security.h's message), then verified with the key: refused */
    size_t size;
    uint8_t *b = (uint8_t *)th_read_file(model, &size);
    range r[3];
    uint64_t counter;
    seal_ranges(b, size, r, &counter);
    uint8_t h[32], m[48];
    crypto_hash_sha256(h, pk, 32);
    memcpy(b + r[1].at, h, 8);
    memcpy(m, "MDL1SIG1", 8);
    memcpy(m + 8, b + r[0].at, 32);
    memcpy(m + 40, h, 8);
    crypto_sign_detached(b + r[2].at, NULL, m, sizeof m, sk);
    th_write_file(model, b, size);
    free(b);
    snprintf(cmd, sizeof cmd, BIN "mdeploy-inspect %s --verify", model);
    assert_int_equal(th_run_stderr(&msg, cmd), 0); /* without keys: the digest only */
    snprintf(cmd, sizeof cmd, BIN "mdeploy-inspect %s --verify --public-key %s", model, pub);
    assert_int_equal(th_run_stderr(&msg, cmd), 1);
    snprintf(cmd, sizeof cmd, BIN "mdeploy-inspect %s --verify --public-key %s >%s", model, pub, th_tmp("v.txt"));
    th_run_stderr(&msg, cmd);
    char *text = th_read_file(th_tmp("v.txt"), NULL);
    assert_non_null(strstr(text, "signature: FAILED"));
    assert_non_null(strstr(text, why));
    assert_non_null(strstr(text, "verify: FAILED"));
    free(text);
}
#endif

static int teardown(void **state) {
    (void)state;
    th_system("rm -rf %s", th_tmpdir());
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
#if MDL_SODIUM
        cmocka_unit_test(test_cli_signed_model_verifies_independently),
        cmocka_unit_test(test_cli_encrypted_model),
#else
        cmocka_unit_test(test_cli_refuses_without_libsodium),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
