/* Shared by the tools that sign, encrypt or verify models (mdeploy-convert, mdeploy-sign,
   mdeploy-inspect): key files into an mdl_security, and sealing a file on disk. */
#ifndef MDL_SEAL_UTIL_H
#define MDL_SEAL_UTIL_H

#include "mdeploy/mdeploy.h"
#include "mdeploy/security.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEAL_MAX_KEYS 16

/* Keys given on a command line. */
typedef struct seal_keys {
    uint8_t pub[SEAL_MAX_KEYS][MDL_PUBLIC_KEY_BYTES];
    int npub;
    uint8_t dec[MDL_ENCRYPTION_KEY_BYTES];
    bool has_dec;
    mdl_security sec;
} seal_keys;

static inline bool seal_add_public(seal_keys *k, const char *path, const char *tool) {
    mdl_error err;
    if (k->npub == SEAL_MAX_KEYS) {
        fprintf(stderr, "%s: at most %d public keys\n", tool, SEAL_MAX_KEYS);
        return false;
    }
    if (mdl_key_file_read(path, "ed25519-public", k->pub[k->npub], MDL_PUBLIC_KEY_BYTES, &err)) {
        fprintf(stderr, "%s: %s\n", tool, err.msg);
        return false;
    }
    k->npub++;
    return true;
}

static inline bool seal_set_decryption(seal_keys *k, const char *path, const char *tool) {
    mdl_error err;
    if (mdl_key_file_read(path, "xchacha20poly1305", k->dec, MDL_ENCRYPTION_KEY_BYTES, &err)) {
        fprintf(stderr, "%s: %s\n", tool, err.msg);
        return false;
    }
    k->has_dec = true;
    return true;
}

/* The hook table for these keys (libsodium hooks). */
static inline const mdl_security *seal_security(seal_keys *k) {
    k->sec = mdl_security_host();
    k->sec.public_keys = (const uint8_t(*)[MDL_PUBLIC_KEY_BYTES])k->pub;
    k->sec.npublic_keys = k->npub;
    k->sec.decryption_key = k->has_dec ? k->dec : NULL;
    return &k->sec;
}

static inline unsigned char *seal_read_file(const char *path, size_t *size, const char *tool) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n = -1;
    if (f && !fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        fclose(f);
        *size = (size_t)n;
        return buf;
    }
    if (f) fclose(f);
    free(buf);
    fprintf(stderr, "%s: cannot read '%s'\n", tool, path);
    return NULL;
}

/* Writes through a temporary file and a rename (a reader never sees half a model). */
static inline bool seal_write_file(const char *path, const void *data, size_t size, const char *tool) {
    size_t n = strlen(path) + 8;
    char *tmp = malloc(n);
    if (!tmp) return false;
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(data, 1, size, f) == size;
    if (f && fclose(f)) ok = false;
    if (ok && rename(tmp, path)) ok = false;
    if (!ok) {
        remove(tmp);
        fprintf(stderr, "%s: cannot write '%s'\n", tool, path);
    }
    free(tmp);
    return ok;
}

/* Signs (secret key file sign_key, may be NULL) and/or encrypts (key file enc_key, may be NULL)
   the model file in, writing out (may equal in).  Encrypting a signed model signs the inner
   file, then the outer one, so a loader given the public keys checks both. */
static inline bool seal_file(const char *in, const char *out, const char *sign_key, const char *enc_key,
                             const char *tool) {
    uint8_t sk[MDL_SECRET_KEY_BYTES], ek[MDL_ENCRYPTION_KEY_BYTES];
    mdl_error err;
    if (sign_key && mdl_key_file_read(sign_key, "ed25519-secret", sk, sizeof sk, &err)) {
        fprintf(stderr, "%s: %s\n", tool, err.msg);
        return false;
    }
    if (enc_key && mdl_key_file_read(enc_key, "xchacha20poly1305", ek, sizeof ek, &err)) {
        fprintf(stderr, "%s: %s\n", tool, err.msg);
        return false;
    }
    size_t size;
    unsigned char *data = seal_read_file(in, &size, tool);
    if (!data) return false;
    bool ok = true;
    if (sign_key && mdl_seal_sign(data, size, sk, &err)) ok = false;
    if (ok && enc_key) {
        void *enc;
        size_t esize;
        if (mdl_seal_encrypt(data, size, ek, &enc, &esize, &err)) {
            ok = false;
        } else {
            free(data);
            data = enc;
            size = esize;
            if (sign_key && mdl_seal_sign(data, size, sk, &err)) ok = false;
        }
    }
    memset(sk, 0, sizeof sk);
    memset(ek, 0, sizeof ek);
    if (!ok) fprintf(stderr, "%s: %s: %s\n", tool, in, err.msg);
    else ok = seal_write_file(out, data, size, tool);
    free(data);
    return ok;
}

#endif
