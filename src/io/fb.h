/*
 * A small FlatBuffers implementation: a schema-driven verifier, accessors for verified buffers,
 * and a back-to-front builder.  Written from the FlatBuffers binary format specification:
 *
 *   buffer: [u32 root offset][4-byte file identifier] ... ; all scalars little-endian.
 *   table:  at table start an i32 soffset; vtable = table - soffset.  vtable: u16 vtable bytes,
 *           u16 table inline bytes, then one u16 per field id (0 = absent = default value).
 *   offsets (to tables, vectors, strings) are u32, relative to the address where they are stored,
 *           so they always point forward - a buffer cannot contain reference cycles.
 *   vector: u32 element count, then the elements; string: a byte vector plus a 0 terminator.
 *   union:  two fields, the u8 type (id n) and the offset to the table (id n + 1).
 *
 * The verifier walks a table with a descriptor (fb_table_desc) listing every field's kind; after
 * fb_verify succeeds every accessor below reads only inside the buffer.
 */
#ifndef MDL_FB_H
#define MDL_FB_H

#include "mdeploy/mdeploy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- verification ---------------------------------------------------------------------- */

typedef enum fb_kind {
    FB_SCALAR,       /* inline scalar of `size` bytes */
    FB_STRING,       /* offset to string */
    FB_VECTOR,       /* offset to vector of scalars, element `size` bytes, data aligned to `align` */
    FB_TABLE,        /* offset to table described by `table` */
    FB_TABLE_VECTOR, /* offset to vector of offsets to tables described by `table` */
    FB_UNION,        /* offset to table; the u8 field id-1 selects `unions[type-1]` */
} fb_kind;

typedef struct fb_table_desc fb_table_desc;

typedef struct fb_field_desc {
    fb_kind kind;
    uint8_t size;  /* FB_SCALAR / FB_VECTOR element size */
    uint8_t align; /* FB_VECTOR element alignment (0 = size) */
    const fb_table_desc *table;
    const fb_table_desc *const *unions; /* FB_UNION: one descriptor per union member */
    int nunions;
} fb_field_desc;

struct fb_table_desc {
    const char *name;
    int nfields;
    const fb_field_desc *fields; /* index = field id */
};

/* Verifies a whole buffer: size, root offset, optional 4-byte identifier (NULL = not checked)
   and the root table recursively.  On failure err names the table, field and byte offset. */
mdl_status fb_verify(const uint8_t *buf, size_t size, const char *identifier,
                     const fb_table_desc *root, mdl_error *err);

/* ---- accessors (verified buffers only) ------------------------------------------------- */

static inline uint16_t fb_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t fb_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t fb_u64(const uint8_t *p) {
    return (uint64_t)fb_u32(p) | ((uint64_t)fb_u32(p + 4) << 32);
}

typedef struct fb_table {
    const uint8_t *buf; /* buffer start */
    uint32_t pos;       /* table start; 0 = no table */
} fb_table;

/* Position of field id inside the buffer, or 0 when absent. */
static inline uint32_t fb_field(fb_table t, int id) {
    if (!t.pos) return 0;
    uint32_t vt = (uint32_t)((int64_t)t.pos - (int32_t)fb_u32(t.buf + t.pos));
    uint16_t vsize = fb_u16(t.buf + vt);
    uint32_t at = 4u + 2u * (uint32_t)id;
    if (at + 2 > vsize) return 0;
    uint16_t off = fb_u16(t.buf + vt + at);
    return off ? t.pos + off : 0;
}

static inline fb_table fb_root(const uint8_t *buf) {
    fb_table t = {buf, fb_u32(buf)};
    return t;
}

static inline uint64_t fb_get_u(fb_table t, int id, int size, uint64_t dflt) {
    uint32_t p = fb_field(t, id);
    if (!p) return dflt;
    switch (size) {
    case 1: return t.buf[p];
    case 2: return fb_u16(t.buf + p);
    case 4: return fb_u32(t.buf + p);
    default: return fb_u64(t.buf + p);
    }
}
static inline int32_t fb_get_i32(fb_table t, int id, int32_t dflt) {
    return (int32_t)fb_get_u(t, id, 4, (uint64_t)(uint32_t)dflt);
}
static inline float fb_get_f32(fb_table t, int id, float dflt) {
    uint32_t p = fb_field(t, id);
    if (!p) return dflt;
    uint32_t bits = fb_u32(t.buf + p);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Follows the offset stored at position p (a field or a vector element). */
static inline uint32_t fb_deref(const uint8_t *buf, uint32_t p) { return p + fb_u32(buf + p); }

static inline fb_table fb_get_table(fb_table t, int id) {
    uint32_t p = fb_field(t, id);
    fb_table r = {t.buf, p ? fb_deref(t.buf, p) : 0};
    return r;
}

/* A vector: element count and position of element 0 (0 when absent). */
typedef struct fb_vec {
    const uint8_t *buf;
    uint32_t len;
    uint32_t data;
} fb_vec;

static inline fb_vec fb_get_vec(fb_table t, int id) {
    uint32_t p = fb_field(t, id);
    fb_vec v = {t.buf, 0, 0};
    if (p) {
        uint32_t q = fb_deref(t.buf, p);
        v.len = fb_u32(t.buf + q);
        v.data = q + 4;
    }
    return v;
}
static inline fb_table fb_vec_table(fb_vec v, uint32_t i) {
    fb_table r = {v.buf, fb_deref(v.buf, v.data + 4 * i)};
    return r;
}
static inline int64_t fb_vec_i64(fb_vec v, uint32_t i) { return (int64_t)fb_u64(v.buf + v.data + 8 * i); }
static inline int32_t fb_vec_i32(fb_vec v, uint32_t i) { return (int32_t)fb_u32(v.buf + v.data + 4 * i); }
static inline float fb_vec_f32(fb_vec v, uint32_t i) {
    uint32_t bits = fb_u32(v.buf + v.data + 4 * i);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* String field, NUL-terminated (checked by the verifier); dflt when absent. */
static inline const char *fb_get_str(fb_table t, int id, const char *dflt) {
    fb_vec v = fb_get_vec(t, id);
    return v.data ? (const char *)v.buf + v.data : dflt;
}

/* ---- builder --------------------------------------------------------------------------- */

/* Builds back to front: children first, then the tables referring to them.  An "fb_ref" is the
   distance of an object from the end of the buffer, which does not change as the buffer grows. */
typedef uint32_t fb_ref;

#define FB_MAX_FIELDS 32

typedef struct fb_builder {
    const mdl_allocator *alloc;
    uint8_t *buf;
    size_t cap, size; /* bytes used at the end of buf */
    size_t minalign;
    bool failed; /* out of memory or > 2 GiB; every later call is a no-op */
    /* open table */
    size_t table_start;
    int nfields;
    struct {
        uint16_t id;
        uint32_t at;
    } fields[FB_MAX_FIELDS];
} fb_builder;

void fb_builder_init(fb_builder *b, const mdl_allocator *alloc);
void fb_builder_release(fb_builder *b);

fb_ref fb_create_vector(fb_builder *b, const void *data, size_t count, size_t elem, size_t align);
fb_ref fb_create_string(fb_builder *b, const char *s);
/* Vector of offsets (refs to tables or strings). */
fb_ref fb_create_ref_vector(fb_builder *b, const fb_ref *refs, size_t count);

void fb_start_table(fb_builder *b);
void fb_add_scalar(fb_builder *b, int id, const void *value, size_t size);
void fb_add_ref(fb_builder *b, int id, fb_ref ref); /* ref 0 = absent, skipped */
fb_ref fb_end_table(fb_builder *b);

static inline void fb_add_u8(fb_builder *b, int id, uint8_t v) { fb_add_scalar(b, id, &v, 1); }
static inline void fb_add_u16(fb_builder *b, int id, uint16_t v) { fb_add_scalar(b, id, &v, 2); }
static inline void fb_add_i32(fb_builder *b, int id, int32_t v) { fb_add_scalar(b, id, &v, 4); }
static inline void fb_add_u32(fb_builder *b, int id, uint32_t v) { fb_add_scalar(b, id, &v, 4); }
static inline void fb_add_u64(fb_builder *b, int id, uint64_t v) { fb_add_scalar(b, id, &v, 8); }
static inline void fb_add_f32(fb_builder *b, int id, float v) { fb_add_scalar(b, id, &v, 4); }

/* Writes root offset + identifier.  On success *data and *size describe the finished buffer inside
   b->buf (aligned to b->minalign in memory); false when the builder failed. */
bool fb_finish(fb_builder *b, fb_ref root, const char *identifier, const uint8_t **data,
               size_t *size);

#endif
