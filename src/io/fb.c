/* FlatBuffers verifier and builder (see fb.h for the format summary). */
#include "fb.h"

#include "graph/util.h"

#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the builder writes host-order scalars: little-endian hosts only"
#endif

#define FB_MAX_DEPTH 32
#define FB_MAX_SIZE ((size_t)0x7FFFFFFF) /* offsets are 32-bit; FlatBuffers caps buffers at 2 GiB */

typedef struct verifier {
    const uint8_t *buf;
    size_t size;
    mdl_error *err;
} verifier;

static bool in_bounds(const verifier *v, size_t pos, size_t len) {
    return pos <= v->size && len <= v->size - pos;
}

static mdl_status bad(const verifier *v, const fb_table_desc *d, int field, size_t pos,
                      const char *what) {
    if (field >= 0)
        return mdl__error(v->err, MDL_CORRUPT_MODEL, "corrupt model: %s field %d at byte %zu: %s",
                          d->name, field, pos, what);
    return mdl__error(v->err, MDL_CORRUPT_MODEL, "corrupt model: %s at byte %zu: %s", d->name,
                      pos, what);
}

static mdl_status verify_table(const verifier *v, size_t pos, const fb_table_desc *d, int depth);

/* Checks the vector/string whose offset field sits at p; returns its element count. */
static mdl_status verify_vector(const verifier *v, const fb_table_desc *d, int id, size_t p,
                                size_t elem, size_t align, size_t *len_out, size_t *data_out) {
    size_t q = p + fb_u32(v->buf + p);
    if (q % 4 || !in_bounds(v, q, 4)) return bad(v, d, id, p, "vector offset out of bounds or misaligned");
    size_t len = fb_u32(v->buf + q), bytes;
    if (!mdl__mul_size(len, elem, &bytes) || !in_bounds(v, q + 4, bytes))
        return bad(v, d, id, q, "vector longer than the buffer");
    if (align > 1 && (q + 4) % align)
        return bad(v, d, id, q, "vector data misaligned");
    *len_out = len;
    *data_out = q + 4;
    return MDL_OK;
}

static mdl_status verify_field(const verifier *v, const fb_table_desc *d, int id, size_t p,
                               uint8_t union_type, int depth) {
    const fb_field_desc *f = &d->fields[id];
    size_t len, data;
    mdl_status st;
    switch (f->kind) {
    case FB_SCALAR: return MDL_OK; /* bounds and alignment checked by the caller */
    case FB_STRING:
        if ((st = verify_vector(v, d, id, p, 1, 1, &len, &data))) return st;
        if (!in_bounds(v, data + len, 1) || v->buf[data + len] != 0)
            return bad(v, d, id, data, "string is not NUL-terminated");
        return MDL_OK;
    case FB_VECTOR:
        return verify_vector(v, d, id, p, f->size, f->align ? f->align : f->size, &len, &data);
    case FB_TABLE: return verify_table(v, p + fb_u32(v->buf + p), f->table, depth + 1);
    case FB_TABLE_VECTOR:
        if ((st = verify_vector(v, d, id, p, 4, 4, &len, &data))) return st;
        for (size_t i = 0; i < len; i++) {
            size_t e = data + 4 * i;
            if ((st = verify_table(v, e + fb_u32(v->buf + e), f->table, depth + 1))) return st;
        }
        return MDL_OK;
    case FB_UNION:
        if (union_type == 0) return MDL_OK; /* NONE: the offset is ignored */
        if (union_type > f->nunions) return bad(v, d, id, p, "unknown union member type");
        return verify_table(v, p + fb_u32(v->buf + p), f->unions[union_type - 1], depth + 1);
    }
    return bad(v, d, id, p, "bad descriptor");
}

static mdl_status verify_table(const verifier *v, size_t pos, const fb_table_desc *d, int depth) {
    if (depth > FB_MAX_DEPTH) return bad(v, d, -1, pos, "tables nested too deeply");
    if (pos % 4 || !in_bounds(v, pos, 4)) return bad(v, d, -1, pos, "table offset out of bounds or misaligned");
    int64_t vt = (int64_t)pos - (int32_t)fb_u32(v->buf + pos);
    if (vt < 0 || vt % 2 || !in_bounds(v, (size_t)vt, 4)) return bad(v, d, -1, pos, "vtable out of bounds or misaligned");
    size_t vsize = fb_u16(v->buf + vt), tsize = fb_u16(v->buf + vt + 2);
    if (vsize < 4 || vsize % 2 || !in_bounds(v, (size_t)vt, vsize))
        return bad(v, d, -1, (size_t)vt, "bad vtable size");
    if (tsize < 4 || !in_bounds(v, pos, tsize)) return bad(v, d, -1, pos, "table longer than the buffer");
    int nvt = (int)(vsize - 4) / 2;
    for (int id = 0; id < d->nfields && id < nvt; id++) {
        size_t off = fb_u16(v->buf + vt + 4 + 2 * id);
        if (!off) continue;
        const fb_field_desc *f = &d->fields[id];
        size_t fsize = f->kind == FB_SCALAR ? f->size : 4;
        if (off + fsize > tsize) return bad(v, d, id, pos, "field outside its table");
        size_t p = pos + off;
        if (p % fsize) return bad(v, d, id, p, "field misaligned");
        uint8_t utype = 0;
        if (f->kind == FB_UNION) {
            /* the type field (id - 1) must be a present u8 scalar */
            size_t toff = id > 0 && id - 1 < nvt ? fb_u16(v->buf + vt + 4 + 2 * (id - 1)) : 0;
            if (toff && toff < tsize) utype = v->buf[pos + toff];
        }
        mdl_status st = verify_field(v, d, id, p, utype, depth);
        if (st) return st;
    }
    return MDL_OK;
}

mdl_status fb_verify(const uint8_t *buf, size_t size, const char *identifier,
                     const fb_table_desc *root, mdl_error *err) {
    verifier v = {buf, size, err};
    if (size < 8) return mdl__error(err, MDL_CORRUPT_MODEL, "corrupt model: %zu bytes is too short for a FlatBuffer", size);
    if (size > FB_MAX_SIZE) return mdl__error(err, MDL_CORRUPT_MODEL, "corrupt model: %zu bytes exceeds the 2 GiB FlatBuffers limit", size);
    if (identifier && memcmp(buf + 4, identifier, 4) != 0)
        return mdl__error(err, MDL_CORRUPT_MODEL,
                          "not a model file: identifier is \"%.4s\", expected \"%.4s\"",
                          (const char *)buf + 4, identifier);
    return verify_table(&v, fb_u32(buf), root, 0);
}

/* ---- builder --------------------------------------------------------------------------- */

void fb_builder_init(fb_builder *b, const mdl_allocator *alloc) {
    memset(b, 0, sizeof *b);
    b->alloc = mdl__allocator_or_default(alloc);
    b->minalign = 4;
}

void fb_builder_release(fb_builder *b) {
    mdl__free(b->alloc, b->buf);
    b->buf = NULL;
    b->cap = b->size = 0;
}

/* Makes room for n more bytes at the front; content keeps its distance from the end. */
static bool reserve(fb_builder *b, size_t n) {
    if (b->failed) return false;
    if (b->size + n > FB_MAX_SIZE) {
        b->failed = true;
        return false;
    }
    if (b->size + n <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->size + n) cap *= 2;
    uint8_t *nb = mdl__alloc(b->alloc, cap);
    if (!nb) {
        b->failed = true;
        return false;
    }
    if (b->size) memcpy(nb + cap - b->size, b->buf + b->cap - b->size, b->size);
    mdl__free(b->alloc, b->buf);
    b->buf = nb;
    b->cap = cap;
    return true;
}

static void push(fb_builder *b, const void *data, size_t n) {
    if (!reserve(b, n)) return;
    b->size += n;
    if (data) memcpy(b->buf + b->cap - b->size, data, n);
    else memset(b->buf + b->cap - b->size, 0, n);
}

/* Pads so that after writing `len` more bytes the size is a multiple of align. */
static void prealign(fb_builder *b, size_t len, size_t align) {
    if (align > b->minalign) b->minalign = align;
    size_t pad = (align - ((b->size + len) % align)) % align;
    if (pad) push(b, NULL, pad);
}

static void push_ref(fb_builder *b, fb_ref ref) {
    prealign(b, 4, 4);
    uint32_t off = (uint32_t)(b->size + 4 - ref);
    push(b, &off, 4);
}

fb_ref fb_create_vector(fb_builder *b, const void *data, size_t count, size_t elem, size_t align) {
    size_t bytes = count * elem;
    if (align < 4) align = 4;
    prealign(b, bytes, 4);
    prealign(b, bytes, align);
    push(b, data, bytes);
    uint32_t n = (uint32_t)count;
    push(b, &n, 4);
    return (fb_ref)b->size;
}

fb_ref fb_create_string(fb_builder *b, const char *s) {
    size_t n = strlen(s);
    prealign(b, n + 1, 4);
    push(b, NULL, 1);
    push(b, s, n);
    uint32_t len = (uint32_t)n;
    push(b, &len, 4);
    return (fb_ref)b->size;
}

fb_ref fb_create_ref_vector(fb_builder *b, const fb_ref *refs, size_t count) {
    prealign(b, count * 4, 4);
    for (size_t i = count; i-- > 0;) push_ref(b, refs[i]);
    uint32_t n = (uint32_t)count;
    push(b, &n, 4);
    return (fb_ref)b->size;
}

void fb_start_table(fb_builder *b) {
    b->table_start = b->size;
    b->nfields = 0;
}

static void note_field(fb_builder *b, int id) {
    if (b->nfields >= FB_MAX_FIELDS) {
        b->failed = true;
        return;
    }
    b->fields[b->nfields].id = (uint16_t)id;
    b->fields[b->nfields].at = (uint32_t)b->size;
    b->nfields++;
}

void fb_add_scalar(fb_builder *b, int id, const void *value, size_t size) {
    prealign(b, size, size);
    push(b, value, size);
    note_field(b, id);
}

void fb_add_ref(fb_builder *b, int id, fb_ref ref) {
    if (!ref) return;
    push_ref(b, ref);
    note_field(b, id);
}

fb_ref fb_end_table(fb_builder *b) {
    prealign(b, 4, 4);
    push(b, NULL, 4); /* soffset to the vtable, patched below */
    if (b->failed) return 0;
    fb_ref table = (fb_ref)b->size;
    int maxid = -1;
    for (int i = 0; i < b->nfields; i++)
        if (b->fields[i].id > maxid) maxid = b->fields[i].id;
    uint16_t vt[2 + FB_MAX_FIELDS + 1];
    int nvt = 2 + maxid + 1;
    memset(vt, 0, sizeof vt);
    vt[0] = (uint16_t)(2 * nvt);
    vt[1] = (uint16_t)(table - b->table_start);
    for (int i = 0; i < b->nfields; i++)
        vt[2 + b->fields[i].id] = (uint16_t)(table - b->fields[i].at);
    /* u16 entries: keep the vtable 2-aligned (the table before it is 4-aligned) */
    push(b, vt, 2 * (size_t)nvt);
    if (b->failed) return 0;
    int32_t soff = (int32_t)(b->size - table); /* vtable precedes the table in memory */
    memcpy(b->buf + b->cap - table, &soff, 4);
    b->nfields = 0;
    return table;
}

bool fb_finish(fb_builder *b, fb_ref root, const char *identifier, const uint8_t **data,
               size_t *size) {
    prealign(b, 4 + (identifier ? 4 : 0), b->minalign);
    if (identifier) push(b, identifier, 4);
    push_ref(b, root);
    if (b->failed) return false;
    *data = b->buf + b->cap - b->size;
    *size = b->size;
    return true;
}
