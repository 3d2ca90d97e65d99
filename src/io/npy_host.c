/* NumPy .npy read/write for the host tools.  Format reference: numpy/lib/format.py
   (NEP 1): "\x93NUMPY", major, minor, header length (u16 LE for 1.0, u32 LE for 2.0/3.0), then
   an ASCII Python dict literal padded with spaces and ended by '\n', then the raw array data. */
#include "mdeploy/npy.h"

#include "graph/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* NumPy refuses headers above 10000 bytes by default; a simple array needs ~150.  The cap keeps a
   hostile length field from making us allocate gigabytes before anything is validated. */
#define NPY_HEADER_MAX ((size_t)1 << 16)
#define NPY_DESCR_MAX 24 /* longest descr we keep for messages; every supported one has 3 chars */

static const struct {
    const char *descr;
    mdl_dtype dtype;
} k_descr[] = {
    {"<f4", MDL_DTYPE_FLOAT32}, {"|i1", MDL_DTYPE_INT8},  {"|u1", MDL_DTYPE_UINT8},
    {"<i4", MDL_DTYPE_INT32},   {"<i8", MDL_DTYPE_INT64}, {"|b1", MDL_DTYPE_BOOL},
};
_Static_assert(sizeof k_descr / sizeof k_descr[0] == MDL_DTYPE_COUNT,
               "every mdl_dtype needs a .npy descr");

/* "npy file '<path>'" or "npy buffer": the prefix of every message.  Long paths keep their tail,
   which names the file, so the cause still fits in MDL_ERROR_MSG_SIZE. */
typedef struct npy_who {
    char text[120];
} npy_who;

static void who_file(npy_who *w, const char *path) {
    size_t n = strlen(path), keep = 90;
    if (n <= keep)
        snprintf(w->text, sizeof w->text, "npy file '%s'", path);
    else
        snprintf(w->text, sizeof w->text, "npy file '...%s'", path + (n - keep));
}

static mdl_status fail(mdl_error *err, mdl_status status, const npy_who *who, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static mdl_status fail(mdl_error *err, mdl_status status, const npy_who *who, const char *fmt,
                       ...) {
    if (!err) return status;
    char what[MDL_ERROR_MSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return mdl__error(err, status, "%s: %s", who->text, what);
}

/* MDL_IO with the system's reason; strerror_r because strerror may use a shared buffer. */
static mdl_status io_fail(mdl_error *err, const npy_who *who, const char *what, int errnum) {
    char reason[128];
    if (strerror_r(errnum, reason, sizeof reason) != 0)
        snprintf(reason, sizeof reason, "error %d", errnum);
    return fail(err, MDL_IO, who, "%s: %s", what, reason);
}

/* Python-style tuple for messages: "()", "(3,)", "(2, 3)". */
static const char *shape_str(char *buf, size_t size, int32_t rank, const int64_t *dims) {
    size_t n = (size_t)snprintf(buf, size, "(");
    for (int32_t i = 0; i < rank && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ", %lld" : "%lld", (long long)dims[i]);
    if (n < size) snprintf(buf + n, size - n, rank == 1 ? ",)" : ")");
    return buf;
}

static bool host_big_endian(void) {
    const uint16_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 0;
}

/* .npy data is little-endian; only a big-endian host needs this. */
static void swap_bytes(uint8_t *p, size_t bytes, size_t elem) {
    for (size_t i = 0; i + elem <= bytes; i += elem)
        for (size_t a = i, b = i + elem - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* ---- header parsing ------------------------------------------------------------------------ */

/* The parsed dict.  rank counts every shape entry even past MDL_MAX_RANK (dims keeps the first
   MDL_MAX_RANK) so the message can say how many there were. */
typedef struct npy_header {
    char descr[NPY_DESCR_MAX];
    bool descr_cut; /* the descr string was longer than the buffer */
    bool fortran;
    int32_t rank;
    int64_t dims[MDL_MAX_RANK];
    bool have_descr, have_fortran, have_shape;
} npy_header;

typedef struct npy_parser {
    const char *s;
    size_t n, i;
    size_t base; /* file offset of s[0], so messages point at the byte in the file */
    const npy_who *who;
    mdl_error *err;
} npy_parser;

static mdl_status syntax(npy_parser *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static mdl_status syntax(npy_parser *p, const char *fmt, ...) {
    if (!p->err) return MDL_INVALID_ARGUMENT;
    char what[MDL_ERROR_MSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return fail(p->err, MDL_INVALID_ARGUMENT, p->who, "malformed header at byte %zu: %s",
                p->base + p->i, what);
}

static int peek(const npy_parser *p) { return p->i < p->n ? (unsigned char)p->s[p->i] : -1; }

/* Whitespace Python's tokenizer skips inside brackets. */
static void skip_ws(npy_parser *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') break;
        p->i++;
    }
}

static mdl_status expect(npy_parser *p, char c, const char *context) {
    skip_ws(p);
    if (peek(p) != (unsigned char)c) return syntax(p, "expected '%c' %s", c, context);
    p->i++;
    return MDL_OK;
}

/* A quoted string without escapes (no key or supported descr has any).  Copies at most cap-1
   characters into out; *cut tells whether more were dropped. */
static mdl_status parse_string(npy_parser *p, char *out, size_t cap, bool *cut) {
    int q = peek(p);
    if (q != '\'' && q != '"') return syntax(p, "expected a quoted string");
    size_t start = ++p->i, len = 0;
    for (;; p->i++) {
        int c = peek(p);
        if (c < 0 || c == '\n') return syntax(p, "unterminated string");
        if (c == q) break;
        if (c == '\\' || c < 0x20 || c > 0x7e)
            return syntax(p, "unexpected character 0x%02x in a string", (unsigned)c);
        len++;
    }
    size_t keep = len < cap - 1 ? len : cap - 1;
    memcpy(out, p->s + start, keep);
    out[keep] = '\0';
    if (cut) *cut = keep < len;
    p->i++; /* closing quote */
    return MDL_OK;
}

static bool is_ident_char(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static mdl_status parse_bool(npy_parser *p, bool *out) {
    static const char *const words[2] = {"False", "True"};
    for (int v = 0; v < 2; v++) {
        size_t len = strlen(words[v]);
        if (p->n - p->i >= len && memcmp(p->s + p->i, words[v], len) == 0 &&
            !is_ident_char(p->i + len < p->n ? (unsigned char)p->s[p->i + len] : -1)) {
            p->i += len;
            *out = v == 1;
            return MDL_OK;
        }
    }
    return syntax(p, "fortran_order must be True or False");
}

/* A Python int: optional sign, decimal digits, optional 'L' (Python 2 writers). */
static mdl_status parse_int(npy_parser *p, int64_t *out) {
    bool neg = false;
    if (peek(p) == '-' || peek(p) == '+') {
        neg = peek(p) == '-';
        p->i++;
        skip_ws(p);
    }
    if (peek(p) < '0' || peek(p) > '9') return syntax(p, "expected an integer in the shape");
    int64_t v = 0;
    while (peek(p) >= '0' && peek(p) <= '9') {
        int d = peek(p) - '0';
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, d, &v))
            return syntax(p, "shape dimension does not fit in 64 bits");
        p->i++;
    }
    if (peek(p) == 'L' || peek(p) == 'l') p->i++;
    if (is_ident_char(peek(p))) return syntax(p, "unexpected character in a shape dimension");
    *out = neg ? -v : v;
    return MDL_OK;
}

/* A tuple of ints: "()", "(3,)", "(2, 3)", "(2, 3,)".  "(3)" is an int in Python, not a tuple,
   and NumPy rejects it, so we do too rather than guess. */
static mdl_status parse_shape(npy_parser *p, npy_header *h) {
    mdl_status st;
    skip_ws(p);
    if (peek(p) == '[') return syntax(p, "shape must be a tuple like (2, 3), not a list");
    if ((st = expect(p, '(', "to open the shape tuple")) != MDL_OK) return st;
    h->rank = 0;
    bool comma = false;
    skip_ws(p);
    if (peek(p) == ')') {
        p->i++;
        return MDL_OK;
    }
    for (;;) {
        int64_t d = 0;
        if ((st = parse_int(p, &d)) != MDL_OK) return st;
        if (h->rank < MDL_MAX_RANK) h->dims[h->rank] = d;
        if (h->rank == INT32_MAX) return syntax(p, "too many shape dimensions");
        h->rank++;
        skip_ws(p);
        if (peek(p) == ',') {
            comma = true;
            p->i++;
            skip_ws(p);
            if (peek(p) == ')') break;
            continue;
        }
        if (peek(p) == ')') break;
        return syntax(p, "expected ',' or ')' in the shape tuple");
    }
    p->i++; /* ')' */
    if (h->rank == 1 && !comma)
        return syntax(p, "shape (%lld) is not a tuple; a 1-d shape is written (%lld,)",
                      (long long)h->dims[0], (long long)h->dims[0]);
    return MDL_OK;
}

/* Parses the dict literal NumPy writes, e.g.
       {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
   in any key order and spacing.  Checks syntax and the key set only; meaning is checked later. */
static mdl_status parse_header(npy_parser *p, npy_header *h) {
    mdl_status st;
    memset(h, 0, sizeof *h);
    if ((st = expect(p, '{', "at the start of the header dict")) != MDL_OK) return st;
    for (;;) {
        skip_ws(p);
        if (peek(p) == '}') break;
        char key[32];
        bool cut;
        size_t key_at = p->i;
        if ((st = parse_string(p, key, sizeof key, &cut)) != MDL_OK) return st;
        if ((st = expect(p, ':', "after a key")) != MDL_OK) return st;
        skip_ws(p);
        bool *have;
        if (!cut && strcmp(key, "descr") == 0) {
            have = &h->have_descr;
            if (peek(p) == '[') {
                return fail(p->err, MDL_UNSUPPORTED, p->who,
                            "structured dtypes (a list descr) are not supported; save each field "
                            "as its own array");
            }
            if (peek(p) != '\'' && peek(p) != '"') return syntax(p, "descr must be a string");
            if ((st = parse_string(p, h->descr, sizeof h->descr, &h->descr_cut)) != MDL_OK)
                return st;
        } else if (!cut && strcmp(key, "fortran_order") == 0) {
            have = &h->have_fortran;
            if ((st = parse_bool(p, &h->fortran)) != MDL_OK) return st;
        } else if (!cut && strcmp(key, "shape") == 0) {
            have = &h->have_shape;
            if ((st = parse_shape(p, h)) != MDL_OK) return st;
        } else {
            p->i = key_at;
            return syntax(p, "unknown key '%s%s' (expected descr, fortran_order, shape)", key,
                          cut ? "..." : "");
        }
        /* Python keeps the last of duplicate keys; a header that says two things is more
           likely damaged than meant, so refuse it. */
        if (*have) {
            p->i = key_at;
            return syntax(p, "duplicate key '%s'", key);
        }
        *have = true;
        skip_ws(p);
        if (peek(p) == ',') {
            p->i++;
            continue;
        }
        if (peek(p) != '}') return syntax(p, "expected ',' or '}' after a value");
    }
    p->i++; /* '}' */
    skip_ws(p);
    if (p->i != p->n) return syntax(p, "unexpected bytes after the header dict");
    if (!h->have_descr || !h->have_fortran || !h->have_shape)
        return syntax(p, "header lacks '%s'",
                      !h->have_descr     ? "descr"
                      : !h->have_fortran ? "fortran_order"
                                         : "shape");
    return MDL_OK;
}

/* ---- the format around the header --------------------------------------------------------- */

/* What the first bytes (up to 8 of n) say: magic and version.  *len_bytes: size of the header
   length field that follows (2 for 1.0, 4 for 2.0/3.0). */
static mdl_status check_magic(const npy_who *who, const uint8_t *b, size_t n, size_t *len_bytes,
                              mdl_error *err) {
    size_t m = n < NPY_MAGIC_LEN ? n : NPY_MAGIC_LEN;
    if (memcmp(b, NPY_MAGIC, m) != 0)
        return fail(err, MDL_INVALID_ARGUMENT, who,
                    "not a .npy file (it does not start with the \\x93NUMPY magic)");
    if (n < 8)
        return fail(err, MDL_INVALID_ARGUMENT, who, "only %zu bytes, too short for a .npy header",
                    n);
    unsigned major = b[6], minor = b[7];
    if (major < 1 || major > 3 || minor != 0)
        return fail(err, MDL_UNSUPPORTED, who,
                    ".npy format version %u.%u is not supported (1.0, 2.0 and 3.0 are)", major,
                    minor);
    *len_bytes = major == 1 ? 2 : 4;
    return MDL_OK;
}

static size_t read_le(const uint8_t *b, size_t n) {
    size_t v = 0;
    for (size_t i = n; i-- > 0;) v = v << 8 | b[i];
    return v;
}

static mdl_status check_header_len(const npy_who *who, size_t hlen, mdl_error *err) {
    if (hlen > NPY_HEADER_MAX)
        return fail(err, MDL_INVALID_ARGUMENT, who, "header length %zu exceeds the %zu-byte limit",
                    hlen, NPY_HEADER_MAX);
    return MDL_OK;
}

typedef struct npy_layout {
    mdl_dtype dtype;
    int32_t rank;
    int64_t dims[MDL_MAX_RANK];
    size_t bytes;
} npy_layout;

/* Parses the header text (at file offset base) and checks that we can represent the array. */
static mdl_status decode_header(const npy_who *who, const uint8_t *text, size_t n, size_t base,
                                npy_layout *out, mdl_error *err) {
    npy_parser p = {(const char *)text, n, 0, base, who, err};
    npy_header h;
    mdl_status st = parse_header(&p, &h);
    if (st != MDL_OK) return st;

    int found = -1;
    for (int i = 0; i < (int)(sizeof k_descr / sizeof k_descr[0]); i++)
        if (!h.descr_cut && strcmp(h.descr, k_descr[i].descr) == 0) found = i;
    if (found < 0) {
        const char *more = h.descr_cut ? "..." : "";
        if (h.descr[0] == '>')
            return fail(err, MDL_UNSUPPORTED, who,
                        "big-endian dtype '%s%s' is not supported; save "
                        "a.astype(a.dtype.newbyteorder('<'))",
                        h.descr, more);
        if (strcmp(h.descr, "|b1") == 0)
            return fail(err, MDL_UNSUPPORTED, who,
                        "bool arrays ('|b1') are not supported; save a.astype(np.uint8)");
        return fail(err, MDL_UNSUPPORTED, who,
                    "dtype '%s%s' is not supported; use float32 '<f4', int8 '|i1', uint8 '|u1', "
                    "int32 '<i4' or int64 '<i8'",
                    h.descr, more);
    }
    if (h.fortran)
        return fail(err, MDL_UNSUPPORTED, who,
                    "array is stored in Fortran (column-major) order; save "
                    "np.ascontiguousarray(a) instead");
    if (h.rank > MDL_MAX_RANK)
        return fail(err, MDL_UNSUPPORTED, who, "rank %d exceeds the maximum rank %d", (int)h.rank,
                    MDL_MAX_RANK);
    char shape[160];
    for (int32_t i = 0; i < h.rank; i++)
        if (h.dims[i] < 0)
            return fail(err, MDL_INVALID_ARGUMENT, who, "shape %s has a negative dimension",
                        shape_str(shape, sizeof shape, h.rank, h.dims));
    memset(out, 0, sizeof *out);
    out->dtype = k_descr[found].dtype;
    out->rank = h.rank;
    memcpy(out->dims, h.dims, sizeof h.dims);
    if (!mdl__shape_size(h.rank, h.dims, mdl_dtype_size(out->dtype), NULL, &out->bytes))
        return fail(err, MDL_INVALID_ARGUMENT, who,
                    "shape %s is too large (more than 2^40 elements or a size overflow)",
                    shape_str(shape, sizeof shape, h.rank, h.dims));
    return MDL_OK;
}

static mdl_status truncated_data(const npy_who *who, const npy_layout *l, size_t offset,
                                 size_t have, mdl_error *err) {
    char shape[160];
    return fail(err, MDL_INVALID_ARGUMENT, who,
                "data is truncated: shape %s %s needs %zu bytes after the %zu-byte header, "
                "only %zu present",
                shape_str(shape, sizeof shape, l->rank, l->dims), mdl_dtype_name(l->dtype),
                l->bytes, offset, have);
}

static mdl_status alloc_out(const npy_who *who, const npy_layout *l, mdl_npy *out, mdl_error *err) {
    void *data = malloc(l->bytes ? l->bytes : 1);
    if (!data)
        return fail(err, MDL_OUT_OF_MEMORY, who, "cannot allocate %zu bytes for the data",
                    l->bytes);
    out->dtype = l->dtype;
    out->rank = l->rank;
    memcpy(out->dims, l->dims, sizeof l->dims);
    out->bytes = l->bytes;
    out->data = data;
    return MDL_OK;
}

static void to_host_order(mdl_npy *a) {
    if (host_big_endian()) swap_bytes(a->data, a->bytes, mdl_dtype_size(a->dtype));
}

/* ---- public API ---------------------------------------------------------------------------- */

mdl_status mdl_npy_read_buffer(const void *buf, size_t size, mdl_npy *out, mdl_error *err) {
    npy_who who = {"npy buffer"};
    if (!out) return fail(err, MDL_INVALID_ARGUMENT, &who, "out is NULL");
    memset(out, 0, sizeof *out);
    if (!buf && size) return fail(err, MDL_INVALID_ARGUMENT, &who, "buf is NULL");
    const uint8_t *b = buf;
    size_t len_bytes;
    mdl_status st = check_magic(&who, b, size, &len_bytes, err);
    if (st != MDL_OK) return st;
    if (size < 8 + len_bytes)
        return fail(err, MDL_INVALID_ARGUMENT, &who, "only %zu bytes, too short for a .npy header",
                    size);
    size_t hlen = read_le(b + 8, len_bytes), start = 8 + len_bytes;
    if ((st = check_header_len(&who, hlen, err)) != MDL_OK) return st;
    if (size - start < hlen)
        return fail(err, MDL_INVALID_ARGUMENT, &who,
                    "header is truncated: it needs %zu bytes, only %zu present", hlen,
                    size - start);
    npy_layout l;
    if ((st = decode_header(&who, b + start, hlen, start, &l, err)) != MDL_OK) return st;
    size_t offset = start + hlen;
    if (size - offset < l.bytes) return truncated_data(&who, &l, offset, size - offset, err);
    if ((st = alloc_out(&who, &l, out, err)) != MDL_OK) return st;
    if (l.bytes) memcpy(out->data, b + offset, l.bytes);
    to_host_order(out);
    return MDL_OK;
}

/* fread until n bytes or EOF/error; *got says how many arrived. */
static bool read_full(FILE *f, void *buf, size_t n, size_t *got) {
    *got = fread(buf, 1, n, f);
    return *got == n;
}

static mdl_status read_failed(const npy_who *who, FILE *f, const char *what, size_t need,
                              size_t got, mdl_error *err) {
    if (ferror(f)) return io_fail(err, who, "read error", errno);
    return fail(err, MDL_INVALID_ARGUMENT, who,
                "%s is truncated: it needs %zu bytes, only %zu present", what, need, got);
}

mdl_status mdl_npy_read(const char *path, mdl_npy *out, mdl_error *err) {
    npy_who who = {"npy file"};
    if (!out) return fail(err, MDL_INVALID_ARGUMENT, &who, "out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return fail(err, MDL_INVALID_ARGUMENT, &who, "path is NULL");
    who_file(&who, path);

    FILE *f = fopen(path, "rb");
    if (!f) return io_fail(err, &who, "cannot open", errno);
    mdl_status st;
    uint8_t *header = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        st = io_fail(err, &who, "cannot stat", errno);
        goto done;
    }
    if (S_ISDIR(sb.st_mode)) {
        st = io_fail(err, &who, "cannot read", EISDIR);
        goto done;
    }

    uint8_t pre[12];
    size_t got, len_bytes;
    if (!read_full(f, pre, 8, &got) && ferror(f)) {
        st = read_failed(&who, f, "header", 8, got, err);
        goto done;
    }
    if ((st = check_magic(&who, pre, got, &len_bytes, err)) != MDL_OK) goto done;
    if (!read_full(f, pre + 8, len_bytes, &got)) {
        st = ferror(f) ? io_fail(err, &who, "read error", errno)
                       : fail(err, MDL_INVALID_ARGUMENT, &who,
                              "only %zu bytes, too short for a .npy header", 8 + got);
        goto done;
    }
    size_t hlen = read_le(pre + 8, len_bytes), start = 8 + len_bytes;
    if ((st = check_header_len(&who, hlen, err)) != MDL_OK) goto done;
    header = malloc(hlen ? hlen : 1);
    if (!header) {
        st = fail(err, MDL_OUT_OF_MEMORY, &who, "cannot allocate %zu bytes for the header", hlen);
        goto done;
    }
    if (!read_full(f, header, hlen, &got)) {
        st = read_failed(&who, f, "header", hlen, got, err);
        goto done;
    }
    npy_layout l;
    if ((st = decode_header(&who, header, hlen, start, &l, err)) != MDL_OK) goto done;
    size_t offset = start + hlen;
    /* For a regular file the size is known: refuse a short file before allocating what a
       (possibly hostile) header asks for. */
    if (S_ISREG(sb.st_mode)) {
        size_t have = (uint64_t)sb.st_size > offset ? (size_t)sb.st_size - offset : 0;
        if (have < l.bytes) {
            st = truncated_data(&who, &l, offset, have, err);
            goto done;
        }
    }
    if ((st = alloc_out(&who, &l, out, err)) != MDL_OK) goto done;
    if (!read_full(f, out->data, l.bytes, &got)) {
        st = ferror(f) ? io_fail(err, &who, "read error", errno)
                       : truncated_data(&who, &l, offset, got, err);
        mdl_npy_free(out);
        goto done;
    }
    to_host_order(out);
    st = MDL_OK;
done:
    free(header);
    fclose(f);
    return st;
}

void mdl_npy_free(mdl_npy *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* write(2) all of buf, through EINTR and short writes. */
static bool write_all(int fd, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool write_data(int fd, const void *data, size_t bytes, size_t elem) {
    if (!host_big_endian() || elem == 1) return write_all(fd, data, bytes);
    uint8_t chunk[4096];
    const uint8_t *p = data;
    while (bytes) {
        size_t n = bytes < sizeof chunk ? bytes : sizeof chunk;
        memcpy(chunk, p, n);
        swap_bytes(chunk, n, elem);
        if (!write_all(fd, chunk, n)) return false;
        p += n;
        bytes -= n;
    }
    return true;
}

static const char *descr_of(mdl_dtype dtype) {
    for (size_t i = 0; i < sizeof k_descr / sizeof k_descr[0]; i++)
        if (k_descr[i].dtype == dtype) return k_descr[i].descr;
    return "?"; /* unreachable: callers validate dtype and the table covers every one */
}

/* Builds a version 1.0 preamble + header, padded with spaces so the data starts at a multiple
   of 64 (NumPy's alignment, which also lets np.load(mmap_mode='r') map it).  Returns its size. */
static size_t build_header(char *h, size_t cap, mdl_dtype dtype, int32_t rank,
                           const int64_t *dims) {
    char shape[MDL_MAX_RANK * 24 + 8];
    shape_str(shape, sizeof shape, rank, dims);
    size_t n = 10 + (size_t)snprintf(h + 10, cap - 10,
                                     "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                                     descr_of(dtype), shape);
    size_t total = mdl__align_up(n + 1, 64); /* + the closing '\n' */
    memset(h + n, ' ', total - 1 - n);
    h[total - 1] = '\n';
    memcpy(h, NPY_MAGIC "\x01\x00", 8);
    h[8] = (char)((total - 10) & 0xff);
    h[9] = (char)((total - 10) >> 8);
    return total;
}

mdl_status mdl_npy_write(const char *path, mdl_dtype dtype, int32_t rank, const int64_t *dims,
                         const void *data, mdl_error *err) {
    npy_who who = {"npy file"};
    if (!path || !*path) return fail(err, MDL_INVALID_ARGUMENT, &who, "path is NULL or empty");
    who_file(&who, path);
    if ((unsigned)dtype >= MDL_DTYPE_COUNT)
        return fail(err, MDL_INVALID_ARGUMENT, &who, "invalid dtype %d", (int)dtype);
    if (rank < 0 || rank > MDL_MAX_RANK)
        return fail(err, MDL_INVALID_ARGUMENT, &who, "rank %d is outside 0..%d", (int)rank,
                    MDL_MAX_RANK);
    if (rank > 0 && !dims) return fail(err, MDL_INVALID_ARGUMENT, &who, "dims is NULL");
    char shape[MDL_MAX_RANK * 24 + 8];
    size_t bytes;
    for (int32_t i = 0; i < rank; i++)
        if (dims[i] < 0)
            return fail(err, MDL_INVALID_ARGUMENT, &who, "shape %s has a negative dimension",
                        shape_str(shape, sizeof shape, rank, dims));
    if (!mdl__shape_size(rank, dims, mdl_dtype_size(dtype), NULL, &bytes))
        return fail(err, MDL_INVALID_ARGUMENT, &who, "shape %s is too large",
                    shape_str(shape, sizeof shape, rank, dims));
    if (bytes && !data) return fail(err, MDL_INVALID_ARGUMENT, &who, "data is NULL");

    char header[512];
    size_t hsize = build_header(header, sizeof header, dtype, rank, dims);

    /* A temporary beside the target (same file system, so rename is atomic).  The name is made
       unique per process (pid) and per call (a stack address, distinct between threads); O_EXCL
       guards the rest.  open() rather than mkstemp() so the final file gets the usual
       umask-based permissions instead of 0600. */
    size_t plen = strlen(path), tcap = plen + 64;
    char *tmp = malloc(tcap);
    if (!tmp) return fail(err, MDL_OUT_OF_MEMORY, &who, "cannot allocate a temporary name");
    int fd = -1;
    for (unsigned attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, tcap, "%s.tmp-%ld-%lx-%u", path, (long)getpid(),
                 (unsigned long)((uintptr_t)&fd >> 4), attempt);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    mdl_status st;
    if (fd < 0) {
        st = io_fail(err, &who, "cannot create a temporary file", errno);
        goto done;
    }
    bool ok = write_all(fd, header, hsize) && write_data(fd, data, bytes, mdl_dtype_size(dtype));
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        st = io_fail(err, &who, "write error", saved);
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        st = io_fail(err, &who, "cannot rename the temporary file into place", errno);
        unlink(tmp);
        goto done;
    }
    st = MDL_OK;
done:
    free(tmp);
    return st;
}
