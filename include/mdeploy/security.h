/*
 * mdeploy — safe model delivery: content digest, signatures, encryption at rest, anti-rollback.
 *
 * The seal (format 2.3, src/io/mdeploy.fbs: Model.seal, Model.security_counter, Model.encrypted)
 * ----------------------------------------------------------------------------------------------
 * Every file the writer produces (mdl_builder_finish, mdeploy-convert) carries a Seal table in
 * its root with three byte vectors:
 *   digest     32 bytes: SHA-256 of the WHOLE file, in which the contents of the three seal
 *              vectors (digest, key_id, signature: 104 bytes; not their length prefixes) are
 *              read as zero bytes.
 *   key_id      8 bytes: the first 8 bytes of SHA-256(Ed25519 public key); zeros: unsigned.
 *   signature  64 bytes: Ed25519 (RFC 8032) over the 48-byte message
 *              "MDL1SIG1" || digest || key_id; zeros: unsigned.
 * Why the whole file and not "the weights": everything in the file can change results (a
 * stride, a quantization scale, a tensor index, the memory plan, the security counter, the
 * version string), and FlatBuffers offsets can point anywhere, so hashing chosen sections
 * would let a change hide in bytes nobody hashed.  Only the 104 bytes the seal itself fills are
 * left out, which is why signing (mdl_seal_sign, mdeploy-sign, mdeploy-convert --sign) can
 * fill key_id and signature in place without changing the digest, and why the file stays a
 * plain FlatBuffer: flatc decodes it with src/io/mdeploy.fbs, older readers ignore the field.
 *
 * Load (mdl_model_load_buffer / _file), in this order, before anything else is read:
 *   1. the FlatBuffer structure is verified;
 *   2. digest: recomputed and compared (MDL_CORRUPT_MODEL, "content digest mismatch ...") unless
 *      MDL_LOAD_NO_DIGEST is set and no public keys are given (a trusted image used in place);
 *      a file without a seal (written before format 2.3) loads with a load note saying its
 *      content is not checked (mdl_model_load_note), or is refused with MDL_LOAD_REQUIRE_DIGEST
 *      or when public keys are given;
 *   3. signature, when mdl_security.npublic_keys > 0: an unsigned model ("unsigned"), a key id
 *      not among the keys ("unknown key id ...") and a signature that does not verify ("bad
 *      signature ...") are refused with MDL_CORRUPT_MODEL (bad signature) or MDL_UNSUPPORTED
 *      (unsigned, unknown key id);
 *   4. anti-rollback: Model.security_counter < mdl_load_options.min_counter is refused with
 *      MDL_VERSION ("security counter N is below the minimum M ...");
 *   5. an encrypted model (Model.encrypted) is decrypted with mdl_security.decrypt into memory
 *      owned by the model (the ciphertext is authenticated first: a wrong key or a changed byte
 *      gives MDL_CORRUPT_MODEL "decryption failed ..." and nothing decrypted is kept: the buffer
 *      is zeroed and freed); no key: MDL_INVALID_ARGUMENT.  The decrypted inner file then goes
 *      through steps 1-4 itself (it is sealed, and signed when the outer one is).
 *
 * Cost of the digest: one SHA-256 pass over the file, which is most of the load time of a
 * large model used in place.  Measured with `make bench-seal` (bench/sealtime.c: a torchvision
 * ResNet-18, 46.7 MB, loaded from a mapped file 21 times with and without the check,
 * interleaved, medians; a 2-core VM with a load average of ~5): with the x86 SHA extensions
 * (used where cpuid has them) 50-65 ms per load, i.e. 1.1-1.4 ms per MB (730-940 MB/s); with
 * the portable C code (MDL_CPU_LEVEL=0, and every non-x86 host) 266-339 ms, 5.7-7.3 ms per MB
 * (140-180 MB/s; libsodium's portable SHA-256 ran at 160-220 MB/s side by side); the load
 * itself without the check took 0.1 ms.  MDL_LOAD_NO_DIGEST skips it for an image that is
 * already trusted (e.g. verified once when written to flash, and used in place).
 *
 * Firmware: the loader of MDL_SMALL_CODE builds (the firmware core) does not check the seal:
 * the smallest image has no room to spare (digits_s8 on Cortex-M4 must stay below 20 KiB of
 * runtime code), and a model compiled into flash is usually trusted.  An application that
 * wants the check calls mdl_seal_check(model, size, &options, NULL, &err) itself before
 * mdl_model_load_buffer: that links the SHA-256 and the seal reader (2.2 KB of code and tables
 * on Cortex-M4 with error strings: the cortex-m4-msg firmware image does it) and, with
 * public keys, its own verify hook (mdl_security.verify, e.g. a small Ed25519 verifier).
 * Encrypted models are decrypted by such an application itself before loading.
 * Host builds: mdl_security_host() (src/io/sign_host.c) fills the hooks from libsodium.
 */
#ifndef MDEPLOY_SECURITY_H
#define MDEPLOY_SECURITY_H

#include "mdeploy/mdeploy.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MDL_DIGEST_BYTES 32
#define MDL_KEY_ID_BYTES 8
#define MDL_SIGNATURE_BYTES 64
#define MDL_PUBLIC_KEY_BYTES 32
#define MDL_SECRET_KEY_BYTES 64 /* Ed25519 seed || public key (libsodium's layout) */
#define MDL_ENCRYPTION_KEY_BYTES 32
#define MDL_NONCE_BYTES 24
#define MDL_TAG_BYTES 16

/* What a seal says (mdl_seal_check). */
typedef struct mdl_seal_info {
    bool has_seal;      /* false: a file written before format 2.3 */
    bool digest_checked; /* the digest was recomputed and matched */
    bool is_signed;     /* key_id and signature are not zero */
    bool signature_checked; /* verified against one of the given public keys */
    bool encrypted;     /* the file is an encrypted model (Model.encrypted) */
    uint8_t digest[MDL_DIGEST_BYTES];
    uint8_t key_id[MDL_KEY_ID_BYTES];
    uint64_t security_counter;
} mdl_seal_info;

/* The hook table (mdl_load_options.security).  Must outlive the load call. */
typedef struct mdl_security {
    /* Signature check: with npublic_keys > 0 every model must be signed by one of these
       (MDL_PUBLIC_KEY_BYTES each); verify returns true when signature is a valid Ed25519
       signature of msg by public_key. */
    const uint8_t (*public_keys)[MDL_PUBLIC_KEY_BYTES];
    int32_t npublic_keys;
    bool (*verify)(void *user, const uint8_t *public_key, const uint8_t *msg, size_t len,
                   const uint8_t *signature);
    /* Encryption at rest: the MDL_ENCRYPTION_KEY_BYTES key (NULL: none) and the AEAD opener,
       which writes len - MDL_TAG_BYTES bytes to plain and returns true only when the tag
       authenticates (XChaCha20-Poly1305 IETF, combined mode). */
    const uint8_t *decryption_key;
    bool (*decrypt)(void *user, uint8_t *plain, const uint8_t *cipher, size_t len,
                    const uint8_t *ad, size_t ad_len, const uint8_t *nonce, const uint8_t *key);
    void *user; /* passed to the hooks */
} mdl_security;

/*
 * Checks a model file's seal exactly as loading does (steps 1-4 above; an encrypted file's outer
 * seal only) without building the model; options may be NULL (digest only).  Fills *info (may
 * be NULL) as far as it got.  Errors: INVALID_ARGUMENT, CORRUPT_MODEL, UNSUPPORTED, VERSION.
 */
MDL_API mdl_status mdl_seal_check(const void *data, size_t size, const struct mdl_load_options *options,
                                  mdl_seal_info *info, mdl_error *err);

/* The loaded model's security counter (Model.security_counter; 0 when absent or m is NULL).
   Its semantic version string is mdl_model_version (mdeploy-convert --model-version). */
MDL_API uint64_t mdl_model_security_counter(const mdl_model *m);

/* SHA-256 (FIPS 180-4) of size bytes, pure C. */
MDL_API void mdl_sha256(const void *data, size_t size, uint8_t out[MDL_DIGEST_BYTES]);
/* The key id of an Ed25519 public key: the first 8 bytes of its SHA-256. */
MDL_API void mdl_key_id(const uint8_t *public_key, uint8_t id[MDL_KEY_ID_BYTES]);

/* ---- host only (src/io/sign_host.c, libsodium) ------------------------------------------- */

/* verify and decrypt from libsodium (crypto_sign_verify_detached,
   crypto_aead_xchacha20poly1305_ietf_decrypt); keys left empty for the caller to fill. */
MDL_API mdl_security mdl_security_host(void);

/* A new Ed25519 key pair from the system's random source. */
MDL_API mdl_status mdl_keygen(uint8_t public_key[MDL_PUBLIC_KEY_BYTES],
                              uint8_t secret_key[MDL_SECRET_KEY_BYTES], mdl_error *err);
/* A new random symmetric key for mdl_seal_encrypt. */
MDL_API mdl_status mdl_encryption_keygen(uint8_t key[MDL_ENCRYPTION_KEY_BYTES], mdl_error *err);

/* Signs a sealed model in place: checks its digest, then fills key_id and signature (a signature
   already there is replaced).  The digest does not change.  Errors: CORRUPT_MODEL (not a valid
   file, or its digest does not match), UNSUPPORTED (no seal: convert the model again). */
MDL_API mdl_status mdl_seal_sign(void *data, size_t size, const uint8_t secret_key[MDL_SECRET_KEY_BYTES],
                                 mdl_error *err);

/* Encrypts a whole (sealed) model into a new sealed, unsigned outer file (*out, malloc'ed; free
   with free()) that carries the inner file's security_counter.  Sign the result with
   mdl_seal_sign (sign the inner one first too: a loader with keys checks both). */
MDL_API mdl_status mdl_seal_encrypt(const void *data, size_t size, const uint8_t key[MDL_ENCRYPTION_KEY_BYTES],
                                    void **out, size_t *out_size, mdl_error *err);

/* Key files: one line "mdeploy KIND HEX\n", KIND "ed25519-public" (32 bytes), "ed25519-secret"
   (64) or "xchacha20poly1305" (32).  Written with mode 0600 (the public one 0644).  Reading
   checks the kind and length: INVALID_ARGUMENT or IO with a message naming the file. */
MDL_API mdl_status mdl_key_file_write(const char *path, const char *kind, const uint8_t *key, size_t len,
                                      mdl_error *err);
MDL_API mdl_status mdl_key_file_read(const char *path, const char *kind, uint8_t *key, size_t len,
                                     mdl_error *err);

#ifdef __cplusplus
}
#endif
#endif
