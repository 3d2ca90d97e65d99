/* The seal of a model file (format 2.3; the design and the exact byte ranges are in
   include/mdeploy/security.h): writing the digest, checking digest, signature and security
   counter at load, and opening an encrypted model through the application's hooks.  Libc only:
   signatures and decryption are the hooks' (host: src/io/sign_host.c). */
#include "graph/model.h"
#include "graph/util.h"
#include "io/sha256.h"
#include "mdeploy/security.h"

#include <string.h>

enum { SEAL_DIGEST, SEAL_KEY_ID, SEAL_SIGNATURE };
enum { ENC_NONCE, ENC_DATA };
static const uint32_t seal_len[3] = {MDL_DIGEST_BYTES, MDL_KEY_ID_BYTES, MDL_SIGNATURE_BYTES};
static const char *const seal_name[3] = {"digest", "key_id", "signature"};

void mdl_key_id(const uint8_t *public_key, uint8_t id[MDL_KEY_ID_BYTES]) {
    uint8_t h[MDL_DIGEST_BYTES];
    mdl_sha256(public_key, MDL_PUBLIC_KEY_BYTES, h);
    memcpy(id, h, MDL_KEY_ID_BYTES);
}

/* SHA-256 of buf with the three seal vectors' contents read as zeros (their union, should a
   hostile file make them overlap). */
static void seal_digest(const uint8_t *buf, size_t size, const fb_vec v[3], uint8_t out[32]) {
    size_t at[3], len_at[3];
    for (int i = 0; i < 3; i++) {
        at[i] = v[i].data;
        len_at[i] = v[i].len;
    }
    for (int i = 0; i < 2; i++) /* three ranges: sort by start */
        for (int j = 0; j < 2 - i; j++)
            if (at[j] > at[j + 1]) {
                size_t t = at[j], l = len_at[j];
                at[j] = at[j + 1];
                len_at[j] = len_at[j + 1];
                at[j + 1] = t;
                len_at[j + 1] = l;
            }
    mdl__sha256 s;
    mdl__sha256_init(&s);
    size_t pos = 0;
    for (int i = 0; i < 3; i++) {
        size_t b = at[i], e = (size_t)at[i] + len_at[i];
        if (b > pos) {
            mdl__sha256_update(&s, buf + pos, b - pos);
            pos = b;
        }
        if (e > pos) {
            mdl__sha256_zeros(&s, e - pos);
            pos = e;
        }
    }
    mdl__sha256_update(&s, buf + pos, size - pos);
    mdl__sha256_final(&s, out);
}

/* The seal vectors of a verified file; false when it has no seal. */
static bool seal_vectors(const uint8_t *buf, fb_vec v[3]) {
    fb_table seal = fb_get_table(fb_root(buf), MDL__M_SEAL);
    for (int i = 0; i < 3; i++) v[i] = fb_get_vec(seal, i);
    return seal.pos != 0;
}

fb_ref mdl__seal_build(fb_builder *b) {
    static const uint8_t zero[MDL_SIGNATURE_BYTES];
    fb_ref r[3];
    for (int i = 0; i < 3; i++) r[i] = fb_create_vector(b, zero, seal_len[i], 1, 1);
    fb_start_table(b);
    for (int i = 0; i < 3; i++) fb_add_ref(b, i, r[i]);
    return fb_end_table(b);
}

void mdl__seal_finish(uint8_t *buf, size_t size) {
    fb_vec v[3];
    if (!seal_vectors(buf, v)) return;
    uint8_t d[MDL_DIGEST_BYTES];
    seal_digest(buf, size, v, d);
    memcpy(buf + v[SEAL_DIGEST].data, d, sizeof d);
}

static void hex(const uint8_t *p, size_t n, char *out) {
    static const char x[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = x[p[i] >> 4];
        out[2 * i + 1] = x[p[i] & 15];
    }
    out[2 * n] = 0;
}

static bool all_zero(const uint8_t *p, size_t n) {
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++) acc |= p[i];
    return acc == 0;
}

void mdl__seal_message(const uint8_t *digest, const uint8_t *key_id, uint8_t msg[MDL__SEAL_MESSAGE_BYTES]) {
    memcpy(msg, "MDL1SIG1", 8);
    memcpy(msg + 8, digest, MDL_DIGEST_BYTES);
    memcpy(msg + 8 + MDL_DIGEST_BYTES, key_id, MDL_KEY_ID_BYTES);
}

/* Steps 2-4 of security.h on a verified buffer.  *unsealed: the file has no seal and was let
   through (the caller notes it). */
static mdl_status check_verified(const uint8_t *buf, size_t size, const mdl_load_options *o,
                                 mdl_seal_info *info, bool *unsealed, mdl_error *err) {
    const mdl_security *sec = o ? o->security : NULL;
    uint32_t flags = o ? o->flags : 0;
    bool keys = sec && sec->npublic_keys > 0;
    fb_table root = fb_root(buf);
    info->security_counter = fb_get_u(root, MDL__M_SECURITY_COUNTER, 8, 0);
    info->encrypted = fb_get_table(root, MDL__M_ENCRYPTED).pos != 0;
    fb_vec v[3];
    info->has_seal = seal_vectors(buf, v);
    *unsealed = !info->has_seal;
    if (!info->has_seal) {
        if (keys)
            return mdl__error(err, MDL_UNSUPPORTED, "signature check failed: the model is unsigned (it "
                              "has no seal: written before format 2.3); convert and sign it again");
        if (flags & MDL_LOAD_REQUIRE_DIGEST)
            return mdl__error(err, MDL_UNSUPPORTED, "the model has no content digest (written before "
                              "format 2.3) and MDL_LOAD_REQUIRE_DIGEST is set: convert it again");
    } else {
        for (int i = 0; i < 3; i++)
            if (!v[i].data || v[i].len != seal_len[i])
                return mdl__error(err, MDL_CORRUPT_MODEL, "corrupt model: seal %s has %u bytes (need %u)",
                                  seal_name[i], (unsigned)v[i].len, (unsigned)seal_len[i]);
        const uint8_t *stored = buf + v[SEAL_DIGEST].data, *id = buf + v[SEAL_KEY_ID].data;
        const uint8_t *sig = buf + v[SEAL_SIGNATURE].data;
        memcpy(info->digest, stored, MDL_DIGEST_BYTES);
        memcpy(info->key_id, id, MDL_KEY_ID_BYTES);
        info->is_signed = !all_zero(id, MDL_KEY_ID_BYTES) || !all_zero(sig, MDL_SIGNATURE_BYTES);
        if (keys || !(flags & MDL_LOAD_NO_DIGEST)) {
            uint8_t d[MDL_DIGEST_BYTES];
            seal_digest(buf, size, v, d);
            if (memcmp(d, stored, sizeof d)) {
                char hs[2 * MDL_DIGEST_BYTES + 1], hc[2 * MDL_DIGEST_BYTES + 1];
                hex(stored, 8, hs);
                hex(d, 8, hc);
                return mdl__error(err, MDL_CORRUPT_MODEL, "content digest mismatch: the file was changed "
                                  "after it was written (SHA-256 stored %s..., computed %s...)", hs, hc);
            }
            info->digest_checked = true;
        }
        if (keys) {
            char hid[2 * MDL_KEY_ID_BYTES + 1];
            hex(id, MDL_KEY_ID_BYTES, hid);
            if (!info->is_signed)
                return mdl__error(err, MDL_UNSUPPORTED, "signature check failed: the model is unsigned "
                                  "and public keys were given");
            int32_t k = 0;
            for (; k < sec->npublic_keys; k++) {
                uint8_t kid[MDL_KEY_ID_BYTES];
                mdl_key_id(sec->public_keys[k], kid);
                if (!memcmp(kid, id, sizeof kid)) break;
            }
            if (k == sec->npublic_keys)
                return mdl__error(err, MDL_UNSUPPORTED, "signature check failed: unknown key id %s (not "
                                  "among the %d public keys given)", hid, (int)sec->npublic_keys);
#if defined(MDL_SODIUM) && !MDL_SODIUM /* a host library built with SODIUM=0: its mdl_security_host() has no hooks */
            if (!sec->verify)
                return mdl__error(err, MDL_UNSUPPORTED, "signature check refused: this libmdeploy was built without "
                                  "libsodium (SODIUM=0), so it cannot verify signatures and does not load a model that "
                                  "needs the check (rebuild with SODIUM=1, or give mdl_security.verify)");
#endif
            if (!sec->verify)
                return mdl__error(err, MDL_INVALID_ARGUMENT, "public keys given without a verify hook "
                                  "(mdl_security.verify; host: mdl_security_host())");
            uint8_t msg[MDL__SEAL_MESSAGE_BYTES];
            mdl__seal_message(stored, id, msg);
            if (!sec->verify(sec->user, sec->public_keys[k], msg, sizeof msg, sig))
                return mdl__error(err, MDL_CORRUPT_MODEL, "signature check failed: bad signature (key id "
                                  "%s): the file or its signature was changed", hid);
            info->signature_checked = true;
        }
    }
    if (o && info->security_counter < o->min_counter)
        return mdl__error(err, MDL_VERSION, "anti-rollback: the model's security counter %llu is below "
                          "the minimum %llu (mdl_load_options.min_counter): an older model",
                          (unsigned long long)info->security_counter, (unsigned long long)o->min_counter);
    return MDL_OK;
}

mdl_status mdl_seal_check(const void *data, size_t size, const mdl_load_options *options,
                          mdl_seal_info *info, mdl_error *err) {
    mdl_seal_info tmp;
    if (!info) info = &tmp;
    memset(info, 0, sizeof *info);
    if (!data) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_seal_check: data is NULL");
    mdl_status st = mdl__format_verify(data, size, err);
    bool unsealed;
    return st ? st : check_verified(data, size, options, info, &unsealed, err);
}

uint64_t mdl_model_security_counter(const mdl_model *m) {
    return m ? fb_get_u(fb_root(m->buf), MDL__M_SECURITY_COUNTER, 8, 0) : 0;
}

/* Overwrites and frees decrypted bytes (through a volatile pointer: not optimized away). */
static void wipe_free(const mdl_allocator *a, void *p, size_t n) {
    if (!p) return;
    volatile uint8_t *q = p;
    for (size_t i = 0; i < n; i++) q[i] = 0;
    mdl__free(a, p);
}

void mdl__seal_release(mdl_model *m) {
    wipe_free(m->alloc, m->plain_raw, m->plain_bytes);
    m->plain_raw = NULL;
}

mdl_status mdl__seal_load(mdl_model *m, const mdl_load_options *o, mdl_error *err) {
    for (int level = 0;; level++) {
        mdl_seal_info info;
        memset(&info, 0, sizeof info);
        bool unsealed;
        mdl_status st = mdl__format_verify(m->buf, m->size, err);
        if (!st) st = check_verified(m->buf, m->size, o, &info, &unsealed, err);
        if (st) return st;
#ifdef MDL__LOAD_NOTE
        if (unsealed)
            mdl__strlcpy(m->note, "the model has no content digest (written before format 2.3): its "
                         "content is not checked (convert it again, or refuse such files with "
                         "MDL_LOAD_REQUIRE_DIGEST)", sizeof m->note);
#endif
        if (!info.encrypted) return MDL_OK;
        if (level > 0)
            return mdl__error(err, MDL_CORRUPT_MODEL, "corrupt model: an encrypted model inside an encrypted model");
        const mdl_security *sec = o->security;
#if defined(MDL_SODIUM) && !MDL_SODIUM
        if (sec && sec->decryption_key && !sec->decrypt)
            return mdl__error(err, MDL_UNSUPPORTED, "the model is encrypted and this libmdeploy was built without "
                              "libsodium (SODIUM=0): it cannot decrypt it (rebuild with SODIUM=1, or give "
                              "mdl_security.decrypt)");
#endif
        if (!sec || !sec->decryption_key || !sec->decrypt)
            return mdl__error(err, MDL_INVALID_ARGUMENT, "the model is encrypted: give a decryption key "
                              "and hook (mdl_security.decryption_key, .decrypt)");
        fb_table enc = fb_get_table(fb_root(m->buf), MDL__M_ENCRYPTED);
        fb_vec nonce = fb_get_vec(enc, ENC_NONCE), ct = fb_get_vec(enc, ENC_DATA);
        if (nonce.len != MDL_NONCE_BYTES || ct.len < MDL_TAG_BYTES + 8)
            return mdl__error(err, MDL_CORRUPT_MODEL, "corrupt model: encrypted model with a %u-byte nonce "
                              "and %u bytes of ciphertext", (unsigned)nonce.len, (unsigned)ct.len);
        size_t n = ct.len - MDL_TAG_BYTES, bytes = n + MDL__LINE_ALIGN;
        uint8_t *raw = mdl__alloc(m->alloc, bytes);
        if (!raw) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory for the %zu-byte decrypted model", n);
        uint8_t *plain = (uint8_t *)mdl__align_up((size_t)raw, MDL__LINE_ALIGN);
        if (!sec->decrypt(sec->user, plain, m->buf + ct.data, ct.len, (const uint8_t *)MDL__SEAL_ENC_AD, 8,
                          m->buf + nonce.data, sec->decryption_key)) {
            wipe_free(m->alloc, raw, bytes);
            return mdl__error(err, MDL_CORRUPT_MODEL, "decryption failed: wrong decryption key, or the "
                              "ciphertext was changed (authentication tag mismatch)");
        }
        mdl__seal_release(m);
        m->plain_raw = raw;
        m->plain_bytes = bytes;
        m->buf = plain;
        m->size = n;
    }
}
