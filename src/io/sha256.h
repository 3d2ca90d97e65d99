/* SHA-256 (FIPS 180-4), pure C, libc only: the content digest of model files (src/io/seal.c).
   Incremental: init, update any number of times, final. */
#ifndef MDL_SHA256_H
#define MDL_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct mdl__sha256 {
    uint32_t h[8];
    uint64_t bytes;  /* message length so far */
    uint8_t blk[64]; /* partial block */
    size_t n;        /* bytes in blk */
} mdl__sha256;

void mdl__sha256_init(mdl__sha256 *s);
void mdl__sha256_update(mdl__sha256 *s, const void *data, size_t len);
/* Feeds len zero bytes (the excluded seal fields, see seal.c). */
void mdl__sha256_zeros(mdl__sha256 *s, size_t len);
void mdl__sha256_final(mdl__sha256 *s, uint8_t out[32]);

#endif
