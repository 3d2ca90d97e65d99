/* Calibration/evaluation data: .npy, .npz (stored zip) and directories (see calib_data_host.h). */
#include "quant/calib_data_host.h"

#include "graph/util.h"
#include "mdeploy/npy.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static mdl_status slurp(const char *path, uint8_t **data, size_t *size, mdl_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return mdl__error(err, MDL_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        if (n == cap) {
            uint8_t *g = cap > SIZE_MAX / 2 ? NULL : realloc(b, cap * 2);
            if (!g) break;
            b = g;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!b || n == cap) {
        free(b);
        return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory reading '%s'", path);
    }
    if (bad) {
        free(b);
        return mdl__error(err, MDL_IO, "cannot read '%s'", path);
    }
    *data = b;
    *size = n;
    return MDL_OK;
}

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* Zip reading through the central directory (np.savez writes zip64 records when asked to). */
mdl_status mdl__npz_each(const char *path, const uint8_t *buf, size_t size, mdl__npz_member_fn fn,
                         void *user, mdl_error *err) {
    if (size < 22) return mdl__error(err, MDL_INVALID_ARGUMENT, "'%s' is not an .npz (zip) file", path);
    size_t e = size - 22;
    size_t stop = size > 22 + 65535 ? size - 22 - 65535 : 0;
    while (rd32(buf + e) != 0x06054b50u) {
        if (e == stop) return mdl__error(err, MDL_INVALID_ARGUMENT, "'%s' is not an .npz (zip) file", path);
        e--;
    }
    uint64_t entries = rd16(buf + e + 10), cd_size = rd32(buf + e + 12), cd_off = rd32(buf + e + 16);
    if ((entries == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) && e >= 20 &&
        rd32(buf + e - 20) == 0x07064b50u) {
        uint64_t z = rd64(buf + e - 20 + 8);
        if (z > size || size - z < 56 || rd32(buf + z) != 0x06064b50u)
            return mdl__error(err, MDL_INVALID_ARGUMENT, "'%s': bad zip64 directory", path);
        entries = rd64(buf + z + 32);
        cd_size = rd64(buf + z + 40);
        cd_off = rd64(buf + z + 48);
    }
    if (cd_off > size || cd_size > size - cd_off)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "'%s': zip directory out of range", path);
    size_t p = (size_t)cd_off, end = (size_t)(cd_off + cd_size);
    for (uint64_t i = 0; i < entries; i++) {
        if (end - p < 46 || rd32(buf + p) != 0x02014b50u)
            return mdl__error(err, MDL_INVALID_ARGUMENT, "'%s': bad zip directory entry %llu", path,
                              (unsigned long long)i);
        uint32_t flags = rd16(buf + p + 8), method = rd16(buf + p + 10);
        uint64_t csize = rd32(buf + p + 20), usize = rd32(buf + p + 24);
        uint32_t nlen = rd16(buf + p + 28), xlen = rd16(buf + p + 30), clen = rd16(buf + p + 32);
        uint64_t loff = rd32(buf + p + 42);
        if (end - p - 46 < (size_t)nlen + xlen + clen)
            return mdl__error(err, MDL_INVALID_ARGUMENT, "'%s': bad zip directory entry %llu", path,
                              (unsigned long long)i);
        char name[256];
        size_t nl = nlen < sizeof name - 1 ? nlen : sizeof name - 1;
        memcpy(name, buf + p + 46, nl);
        name[nl] = 0;
        /* zip64 extra: the 0xffffffff fields, in the order usize, csize, offset */
        const uint8_t *x = buf + p + 46 + nlen, *xe = x + xlen;
        while (xe - x >= 4) {
            uint32_t id = rd16(x), len = rd16(x + 2);
            if ((size_t)(xe - x - 4) < len) break;
            if (id == 1) {
                const uint8_t *v = x + 4, *ve = v + len;
                if (usize == 0xffffffffu && ve - v >= 8) usize = rd64(v), v += 8;
                if (csize == 0xffffffffu && ve - v >= 8) csize = rd64(v), v += 8;
                if (loff == 0xffffffffu && ve - v >= 8) loff = rd64(v), v += 8;
            }
            x += 4 + len;
        }
        p += 46 + (size_t)nlen + xlen + clen;
        if (method != 0)
            return mdl__error(err, MDL_UNSUPPORTED,
                              "'%s': member '%s' is compressed (zip method %u, np.savez_compressed); "
                              "save the calibration data with np.savez (uncompressed)",
                              path, name, (unsigned)method);
        if (flags & 1)
            return mdl__error(err, MDL_UNSUPPORTED, "'%s': member '%s' is encrypted", path, name);
        if (loff > size || size - loff < 30 || rd32(buf + loff) != 0x04034b50u)
            return mdl__error(err, MDL_INVALID_ARGUMENT, "'%s': member '%s' has a bad local header", path, name);
        uint64_t data = loff + 30 + rd16(buf + loff + 26) + rd16(buf + loff + 28);
        if (csize != usize || data > size || size - data < csize)
            return mdl__error(err, MDL_INVALID_ARGUMENT, "'%s': member '%s' is truncated", path, name);
        if (nl > 4 && !strcmp(name + nl - 4, ".npy")) name[nl - 4] = 0;
        mdl_status st = fn(user, name, buf + data, (size_t)csize, err);
        if (st) return st;
    }
    return MDL_OK;
}

/* ---- data sets ------------------------------------------------------------------------------ */

typedef struct loader {
    const char *what, *file;
    int32_t ninputs;
    const mdl__data_input *in;
    int64_t max_rows;
    mdl__data_set *set;
    /* arrays of the current file, by input */
    mdl_npy *arr;
    bool single; /* an .npy, or an .npz whose one member feeds a one-input model */
} loader;

static mdl_status reserve(mdl__data_set *s, int32_t k, size_t bytes, mdl_error *err) {
    if (s->cap[k] >= bytes) return MDL_OK;
    size_t cap = s->cap[k] ? s->cap[k] : 4096;
    while (cap < bytes) cap *= 2;
    uint8_t *g = realloc(s->data[k], cap);
    if (!g) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory loading data");
    s->data[k] = g;
    s->cap[k] = cap;
    return MDL_OK;
}

static void dims_text(char *buf, size_t size, int32_t rank, const int64_t *dims) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int32_t i = 0; i < rank && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

static bool is_int(mdl_dtype d) {
    return d == MDL_DTYPE_INT8 || d == MDL_DTYPE_UINT8 || d == MDL_DTYPE_INT32 || d == MDL_DTYPE_INT64;
}

static int64_t int_at(const mdl_npy *a, int64_t i) {
    switch (a->dtype) {
    case MDL_DTYPE_INT8: return ((const int8_t *)a->data)[i];
    case MDL_DTYPE_UINT8: return ((const uint8_t *)a->data)[i];
    case MDL_DTYPE_INT32: return ((const int32_t *)a->data)[i];
    default: return ((const int64_t *)a->data)[i];
    }
}

/* Appends the current file's arrays (all present) to the set. */
static mdl_status append(loader *L, mdl_error *err) {
    mdl__data_set *s = L->set;
    int64_t rows = -1;
    char want[96], got[96];
    for (int32_t k = 0; k < L->ninputs; k++) {
        const mdl__data_input *in = &L->in[k];
        const mdl_npy *a = &L->arr[k];
        int32_t rr = in->rank > 0 ? in->rank - 1 : 0; /* rank of one row */
        const int64_t *rd = in->rank > 0 ? in->dims + 1 : in->dims;
        int64_t n;
        bool ok;
        if (a->rank == in->rank && in->rank > 0) {
            n = a->dims[0];
            ok = !memcmp(a->dims + 1, rd, sizeof(int64_t) * (size_t)rr);
        } else if (a->rank == rr) {
            n = 1;
            ok = !memcmp(a->dims, rd, sizeof(int64_t) * (size_t)rr);
        } else {
            n = 0;
            ok = false;
        }
        if (!ok || n < 1) {
            dims_text(want, sizeof want, rr, rd);
            dims_text(got, sizeof got, a->rank, a->dims);
            return mdl__error(err, MDL_SHAPE,
                              "%s '%s': input '%s' has shape %s; expected [N]+%s (N rows of the model's "
                              "input shape without its batch dimension)",
                              L->what, L->file, in->name, got, want);
        }
        if (in->dtype == MDL_DTYPE_FLOAT32 ? a->dtype != MDL_DTYPE_FLOAT32 : !(is_int(in->dtype) && is_int(a->dtype)))
            return mdl__error(err, MDL_DTYPE, "%s '%s': input '%s' is %s; the model takes %s%s", L->what,
                              L->file, in->name, mdl_dtype_name(a->dtype), mdl_dtype_name(in->dtype),
                              in->dtype == MDL_DTYPE_FLOAT32 ? " (np.float32)" : " (integer ids)");
        if (rows >= 0 && n != rows)
            return mdl__error(err, MDL_SHAPE, "%s '%s': input '%s' has %lld rows, '%s' has %lld", L->what,
                              L->file, in->name, (long long)n, L->in[0].name, (long long)rows);
        rows = n;
        if (a->dtype == MDL_DTYPE_FLOAT32) {
            const float *f = a->data;
            size_t cnt = a->bytes / sizeof(float);
            for (size_t i = 0; i < cnt; i++)
                if (!isfinite(f[i]))
                    return mdl__error(err, MDL_INVALID_ARGUMENT,
                                      "%s '%s': input '%s' has a %s at element %zu (row %zu)", L->what,
                                      L->file, in->name, isnan(f[i]) ? "NaN" : "infinite value", i,
                                      i / (cnt / (size_t)n));
        }
    }
    if (L->max_rows > 0 && s->rows + rows > L->max_rows) rows = L->max_rows - s->rows;
    if (rows <= 0) return MDL_OK;
    for (int32_t k = 0; k < L->ninputs; k++) {
        const mdl_npy *a = &L->arr[k];
        size_t rb = s->row_bytes[k], off = (size_t)s->rows * rb, add = (size_t)rows * rb;
        mdl_status st = reserve(s, k, off + add, err);
        if (st) return st;
        if (a->dtype == L->in[k].dtype) {
            memcpy(s->data[k] + off, a->data, add);
        } else {
            size_t es = mdl_dtype_size(L->in[k].dtype), cnt = add / es;
            for (size_t i = 0; i < cnt; i++) {
                int64_t v = int_at(a, (int64_t)i);
                if (L->in[k].dtype == MDL_DTYPE_INT64) ((int64_t *)(s->data[k] + off))[i] = v;
                else if (L->in[k].dtype == MDL_DTYPE_INT32) ((int32_t *)(s->data[k] + off))[i] = (int32_t)v;
                else if (L->in[k].dtype == MDL_DTYPE_INT8) ((int8_t *)(s->data[k] + off))[i] = (int8_t)v;
                else ((uint8_t *)(s->data[k] + off))[i] = (uint8_t)v;
            }
        }
    }
    s->rows += rows;
    return MDL_OK;
}

static mdl_status npz_member(void *user, const char *name, const uint8_t *data, size_t size, mdl_error *err) {
    loader *L = user;
    int32_t k = -1;
    for (int32_t i = 0; i < L->ninputs; i++)
        if (!strcmp(L->in[i].name, name)) k = i;
    if (k < 0 && L->ninputs == 1 && !L->arr[0].data) {
        k = 0; /* one input: an array of any name */
        L->single = true;
    } else if (k < 0 || (L->single && k == 0)) {
        char names[256];
        size_t n = 0;
        names[0] = 0;
        for (int32_t i = 0; i < L->ninputs && n < sizeof names; i++)
            n += (size_t)snprintf(names + n, sizeof names - n, "%s'%s'", i ? ", " : "", L->in[i].name);
        return mdl__error(err, MDL_INVALID_ARGUMENT, "%s '%s': array '%s' names no model input (inputs: %s)",
                          L->what, L->file, name, names);
    }
    if (L->arr[k].data)
        return mdl__error(err, MDL_INVALID_ARGUMENT, "%s '%s': two arrays for input '%s'", L->what, L->file,
                          L->in[k].name);
    mdl_status st = mdl_npy_read_buffer(data, size, &L->arr[k], err);
    if (st) {
        char m[sizeof err->msg];
        snprintf(m, sizeof m, "%s", err->msg);
        return mdl__error(err, st, "%s '%s': array '%s': %s", L->what, L->file, name, m);
    }
    return MDL_OK;
}

static bool has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

static mdl_status load_file(loader *L, const char *path, mdl_error *err) {
    L->file = path;
    L->single = false;
    for (int32_t k = 0; k < L->ninputs; k++) mdl_npy_free(&L->arr[k]);
    mdl_status st;
    if (has_suffix(path, ".npz")) {
        uint8_t *buf = NULL;
        size_t size = 0;
        if ((st = slurp(path, &buf, &size, err))) return st;
        st = mdl__npz_each(path, buf, size, npz_member, L, err);
        free(buf);
        if (st) return st;
        for (int32_t k = 0; k < L->ninputs; k++)
            if (!L->arr[k].data)
                return mdl__error(err, MDL_INVALID_ARGUMENT, "%s '%s' has no array for input '%s'", L->what,
                                  path, L->in[k].name);
    } else {
        if (L->ninputs != 1)
            return mdl__error(err, MDL_INVALID_ARGUMENT,
                              "%s '%s': an .npy holds one array but the model has %d inputs; give an .npz "
                              "(np.savez) with one array per input name",
                              L->what, path, (int)L->ninputs);
        if ((st = mdl_npy_read(path, &L->arr[0], err))) {
            char m[sizeof err->msg];
            snprintf(m, sizeof m, "%s", err->msg);
            return mdl__error(err, st, "%s: input '%s': %s", L->what, L->in[0].name, m);
        }
    }
    return append(L, err);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void mdl__data_free(mdl__data_set *s) {
    if (!s) return;
    for (int32_t k = 0; k < s->ninputs; k++)
        if (s->data) free(s->data[k]);
    free(s->data);
    free(s->row_bytes);
    free(s->cap);
    memset(s, 0, sizeof *s);
}

mdl_status mdl__data_load(const char *path, const char *what, int32_t ninputs,
                          const mdl__data_input *in, int64_t max_rows, mdl__data_set *out,
                          mdl_error *err) {
    memset(out, 0, sizeof *out);
    out->ninputs = ninputs;
    out->row_bytes = calloc((size_t)ninputs + 1, sizeof(size_t));
    out->data = calloc((size_t)ninputs + 1, sizeof(uint8_t *));
    out->cap = calloc((size_t)ninputs + 1, sizeof(size_t));
    loader L = {what, path, ninputs, in, max_rows, out, calloc((size_t)ninputs + 1, sizeof(mdl_npy)), false};
    mdl_status st = MDL_OK;
    char **names = NULL;
    size_t nnames = 0;
    if (!out->row_bytes || !out->data || !out->cap || !L.arr) {
        st = mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory loading data");
        goto done;
    }
    for (int32_t k = 0; k < ninputs; k++) {
        size_t rb = mdl_dtype_size(in[k].dtype);
        for (int32_t d = 1; d < in[k].rank; d++) rb *= (size_t)in[k].dims[d];
        out->row_bytes[k] = rb;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        st = mdl__error(err, MDL_IO, "%s '%s': %s", what, path, strerror(errno));
        goto done;
    }
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (!d) {
            st = mdl__error(err, MDL_IO, "%s '%s': %s", what, path, strerror(errno));
            goto done;
        }
        struct dirent *e;
        size_t cap = 0;
        while ((e = readdir(d))) {
            if (!has_suffix(e->d_name, ".npy") && !has_suffix(e->d_name, ".npz")) continue;
            if (nnames == cap) {
                cap = cap ? 2 * cap : 64;
                char **g = realloc(names, cap * sizeof *g);
                if (!g) break;
                names = g;
            }
            size_t len = strlen(path) + strlen(e->d_name) + 2;
            if (!(names[nnames] = malloc(len))) break;
            snprintf(names[nnames++], len, "%s/%s", path, e->d_name);
        }
        closedir(d);
        if (!nnames) {
            st = mdl__error(err, MDL_INVALID_ARGUMENT, "%s directory '%s' has no .npy or .npz files", what, path);
            goto done;
        }
        qsort(names, nnames, sizeof *names, cmp_str);
        for (size_t i = 0; i < nnames && !st && !(max_rows > 0 && out->rows >= max_rows); i++)
            st = load_file(&L, names[i], err);
    } else {
        st = load_file(&L, path, err);
    }
    if (!st && out->rows == 0) st = mdl__error(err, MDL_INVALID_ARGUMENT, "%s '%s' holds no rows", what, path);
done:
    for (size_t i = 0; i < nnames; i++) free(names[i]);
    free(names);
    if (L.arr)
        for (int32_t k = 0; k < ninputs; k++) mdl_npy_free(&L.arr[k]);
    free(L.arr);
    if (st) mdl__data_free(out);
    return st;
}

mdl_status mdl__labels_load(const char *path, int64_t rows, int64_t **labels, mdl_error *err) {
    mdl_npy a;
    *labels = NULL;
    mdl_status st = mdl_npy_read(path, &a, err);
    if (st) return st;
    int64_t n = a.rank >= 1 ? a.dims[0] : 1;
    if (!is_int(a.dtype) || a.rank < 1 || a.rank > 2 || (a.rank == 2 && a.dims[1] != 1)) {
        st = mdl__error(err, MDL_INVALID_ARGUMENT, "--eval labels '%s': expected integer class ids of shape [N], got %s of rank %d",
                        path, mdl_dtype_name(a.dtype), (int)a.rank);
    } else if (n != rows) {
        st = mdl__error(err, MDL_SHAPE, "--eval labels '%s' has %lld labels for %lld eval rows", path, (long long)n,
                        (long long)rows);
    } else if (!(*labels = malloc(sizeof(int64_t) * (size_t)(n ? n : 1)))) {
        st = mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory");
    } else {
        for (int64_t i = 0; i < n; i++) (*labels)[i] = int_at(&a, i);
    }
    mdl_npy_free(&a);
    return st;
}
