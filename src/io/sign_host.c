/* Host side of the seal (include/mdeploy/security.h): the verify and decrypt hooks, key
   generation, signing a sealed file in place and encrypting one, on libsodium (SODIUM=1, the
   default: MDL_SODIUM=1); and, in every host build, key files and the encrypted file's
   wrapping (plain C).  A SODIUM=0 build has no hooks (mdl_security_host() leaves them NULL, and
   the loader then refuses a model that needs a signature check or decryption with
   MDL_UNSUPPORTED, src/io/seal.c) and its keygen, sign and encrypt return MDL_UNSUPPORTED. */
#include "graph/model.h"
#include "graph/util.h"
#include "mdeploy/security.h"

#if MDL_SODIUM
#if defined(__has_include) && !__has_include(<sodium.h>)
#error "libsodium's header is missing: install libsodium-dev (make deps-demo) or build with SODIUM=0 (no signatures or encryption)"
#endif
#include <sodium.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if MDL_SODIUM
_Static_assert(crypto_sign_PUBLICKEYBYTES == MDL_PUBLIC_KEY_BYTES && crypto_sign_SECRETKEYBYTES == MDL_SECRET_KEY_BYTES &&
                   crypto_sign_BYTES == MDL_SIGNATURE_BYTES, "Ed25519 sizes");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == MDL_ENCRYPTION_KEY_BYTES &&
                   crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == MDL_NONCE_BYTES &&
                   crypto_aead_xchacha20poly1305_ietf_ABYTES == MDL_TAG_BYTES, "XChaCha20-Poly1305 sizes");

static bool sodium_ready(mdl_error *err) {
    if (sodium_init() < 0) {
        mdl__error(err, MDL_INTERNAL, "libsodium failed to initialize");
        return false;
    }
    return true;
}

static bool host_verify(void *user, const uint8_t *pk, const uint8_t *msg, size_t len, const uint8_t *sig) {
    (void)user;
    return sodium_init() >= 0 && crypto_sign_verify_detached(sig, msg, len, pk) == 0;
}

static bool host_decrypt(void *user, uint8_t *plain, const uint8_t *cipher, size_t len, const uint8_t *ad,
                         size_t ad_len, const uint8_t *nonce, const uint8_t *key) {
    (void)user;
    unsigned long long n;
    return sodium_init() >= 0 &&
           crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &n, NULL, cipher, len, ad, ad_len, nonce, key) == 0;
}

mdl_security mdl_security_host(void) {
    mdl_security s;
    memset(&s, 0, sizeof s);
    s.verify = host_verify;
    s.decrypt = host_decrypt;
    return s;
}

mdl_status mdl_keygen(uint8_t public_key[MDL_PUBLIC_KEY_BYTES], uint8_t secret_key[MDL_SECRET_KEY_BYTES],
                      mdl_error *err) {
    if (!public_key || !secret_key) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_keygen: NULL key");
    if (!sodium_ready(err)) return MDL_INTERNAL;
    crypto_sign_keypair(public_key, secret_key);
    return MDL_OK;
}

mdl_status mdl_encryption_keygen(uint8_t key[MDL_ENCRYPTION_KEY_BYTES], mdl_error *err) {
    if (!key) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_encryption_keygen: NULL key");
    if (!sodium_ready(err)) return MDL_INTERNAL;
    crypto_aead_xchacha20poly1305_ietf_keygen(key);
    return MDL_OK;
}

mdl_status mdl_seal_sign(void *data, size_t size, const uint8_t secret_key[MDL_SECRET_KEY_BYTES], mdl_error *err) {
    if (!data || !secret_key) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_seal_sign: NULL argument");
    if (!sodium_ready(err)) return MDL_INTERNAL;
    mdl_seal_info info;
    mdl_status st = mdl_seal_check(data, size, NULL, &info, err);
    if (st) return st;
    if (!info.has_seal)
        return mdl__error(err, MDL_UNSUPPORTED, "the model has no seal (written before format 2.3): "
                          "convert it again to sign it");
    uint8_t *buf = data;
    fb_table seal = fb_get_table(fb_root(buf), MDL__M_SEAL);
    fb_vec id = fb_get_vec(seal, 1), sig = fb_get_vec(seal, 2);
    mdl_key_id(secret_key + 32, buf + id.data); /* libsodium: the public key is the secret's second half */
    uint8_t msg[MDL__SEAL_MESSAGE_BYTES];
    mdl__seal_message(info.digest, buf + id.data, msg);
    crypto_sign_detached(buf + sig.data, NULL, msg, sizeof msg, secret_key);
    return MDL_OK;
}

mdl_status mdl_seal_encrypt(const void *data, size_t size, const uint8_t key[MDL_ENCRYPTION_KEY_BYTES],
                            void **out, size_t *out_size, mdl_error *err) {
    if (!data || !key || !out || !out_size) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_seal_encrypt: NULL argument");
    *out = NULL;
    *out_size = 0;
    if (!sodium_ready(err)) return MDL_INTERNAL;
    mdl_seal_info info;
    mdl_status st = mdl_seal_check(data, size, NULL, &info, err);
    if (st) return st;
    if (info.encrypted) return mdl__error(err, MDL_INVALID_ARGUMENT, "the model is already encrypted");
    size_t clen = size + MDL_TAG_BYTES;
    uint8_t *ct = malloc(clen), nonce[MDL_NONCE_BYTES];
    if (!ct) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory encrypting a %zu-byte model", size);
    randombytes_buf(nonce, sizeof nonce);
    unsigned long long n;
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &n, data, size, (const uint8_t *)MDL__SEAL_ENC_AD, 8, NULL, nonce,
                                               key);
    st = mdl__seal_wrap_encrypted(ct, clen, nonce, info.security_counter, out, out_size, err);
    free(ct);
    return st;
}

#else /* SODIUM=0 */

#define NO_SODIUM " is not available: this libmdeploy was built without libsodium (SODIUM=0); rebuild with SODIUM=1"

mdl_security mdl_security_host(void) {
    mdl_security s; /* no hooks: a load that needs them is refused (src/io/seal.c) */
    memset(&s, 0, sizeof s);
    return s;
}

mdl_status mdl_keygen(uint8_t public_key[MDL_PUBLIC_KEY_BYTES], uint8_t secret_key[MDL_SECRET_KEY_BYTES],
                      mdl_error *err) {
    (void)public_key;
    (void)secret_key;
    return mdl__error(err, MDL_UNSUPPORTED, "mdl_keygen: Ed25519 key generation" NO_SODIUM);
}

mdl_status mdl_encryption_keygen(uint8_t key[MDL_ENCRYPTION_KEY_BYTES], mdl_error *err) {
    (void)key;
    return mdl__error(err, MDL_UNSUPPORTED, "mdl_encryption_keygen: model encryption" NO_SODIUM);
}

mdl_status mdl_seal_sign(void *data, size_t size, const uint8_t secret_key[MDL_SECRET_KEY_BYTES], mdl_error *err) {
    (void)data;
    (void)size;
    (void)secret_key;
    return mdl__error(err, MDL_UNSUPPORTED, "mdl_seal_sign: signing" NO_SODIUM);
}

mdl_status mdl_seal_encrypt(const void *data, size_t size, const uint8_t key[MDL_ENCRYPTION_KEY_BYTES],
                            void **out, size_t *out_size, mdl_error *err) {
    (void)data;
    (void)size;
    (void)key;
    if (out) *out = NULL;
    if (out_size) *out_size = 0;
    return mdl__error(err, MDL_UNSUPPORTED, "mdl_seal_encrypt: model encryption" NO_SODIUM);
}
#endif

/* The outer file of an encrypted model around its ciphertext (no crypto: plain C). */
mdl_status mdl__seal_wrap_encrypted(const uint8_t *ct, size_t clen, const uint8_t *nonce,
                                    uint64_t security_counter, void **out, size_t *out_size, mdl_error *err) {
    *out = NULL;
    *out_size = 0;
    fb_builder b;
    fb_builder_init(&b, NULL);
    fb_ref v_data = fb_create_vector(&b, ct, clen, 1, MDL__LINE_ALIGN);
    fb_ref v_nonce = fb_create_vector(&b, nonce, MDL_NONCE_BYTES, 1, 1);
    fb_start_table(&b);
    fb_add_ref(&b, 0, v_nonce);
    fb_add_ref(&b, 1, v_data);
    fb_ref enc = fb_end_table(&b);
    fb_ref seal = mdl__seal_build(&b);
    fb_start_table(&b);
    fb_add_u16(&b, 0, MDL_FORMAT_MAJOR);
    fb_add_u16(&b, 1, MDL_FORMAT_MINOR);
    if (security_counter) fb_add_u64(&b, MDL__M_SECURITY_COUNTER, security_counter);
    fb_add_ref(&b, MDL__M_SEAL, seal);
    fb_add_ref(&b, MDL__M_ENCRYPTED, enc);
    fb_ref root = fb_end_table(&b);
    const uint8_t *bytes;
    size_t nbytes;
    if (!fb_finish(&b, root, "MDL1", &bytes, &nbytes) || !(*out = malloc(nbytes))) {
        fb_builder_release(&b);
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory writing the encrypted model");
    }
    memcpy(*out, bytes, nbytes);
    fb_builder_release(&b);
    mdl__seal_finish(*out, nbytes);
    *out_size = nbytes;
    return MDL_OK;
}

/* Overwrites key material (through a volatile pointer: not optimized away). */
static void wipe(void *p, size_t n) {
    volatile uint8_t *q = p;
    for (size_t i = 0; i < n; i++) q[i] = 0;
}

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* 2 * len hex digits into key; false on any other character. */
static bool hex_decode(const char *h, uint8_t *key, size_t len) {
    for (size_t i = 0; i < len; i++) {
        int hi = hex_digit(h[2 * i]), lo = hex_digit(h[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

mdl_status mdl_key_file_write(const char *path, const char *kind, const uint8_t *key, size_t len, mdl_error *err) {
    if (!path || !kind || !key || len > 64) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_key_file_write: bad argument");
    bool secret = strcmp(kind, "ed25519-public") != 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, secret ? 0600 : 0644);
    if (fd < 0) return mdl__error(err, MDL_IO, "cannot write key file '%s': %s", path, strerror(errno));
    char line[200];
    int n = snprintf(line, sizeof line, "mdeploy %s ", kind);
    for (size_t i = 0; i < len && n + 3 < (int)sizeof line; i++) n += snprintf(line + n, 3, "%02x", key[i]);
    line[n++] = '\n';
    bool ok = write(fd, line, (size_t)n) == n;
    wipe(line, sizeof line);
    if (close(fd) != 0) ok = false;
    return ok ? MDL_OK : mdl__error(err, MDL_IO, "cannot write key file '%s': %s", path, strerror(errno));
}

mdl_status mdl_key_file_read(const char *path, const char *kind, uint8_t *key, size_t len, mdl_error *err) {
    if (!path || !kind || !key) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_key_file_read: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return mdl__error(err, MDL_IO, "cannot read key file '%s': %s", path, strerror(errno));
    char line[256] = {0}, k[64] = {0}, h[200] = {0};
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    mdl_status st = MDL_OK;
    size_t n = 0;
    if (!got || sscanf(line, "mdeploy %63s %199s", k, h) != 2)
        st = mdl__error(err, MDL_INVALID_ARGUMENT, "key file '%s': expected \"mdeploy KIND HEX\"", path);
    else if (strcmp(k, kind))
        st = mdl__error(err, MDL_INVALID_ARGUMENT, "key file '%s' holds a %s key, expected %s", path, k, kind);
    else if ((n = strlen(h)) != 2 * len || !hex_decode(h, key, len))
        st = mdl__error(err, MDL_INVALID_ARGUMENT, "key file '%s': expected %zu hex bytes", path, len);
    wipe(line, sizeof line);
    wipe(h, sizeof h);
    return st;
}
