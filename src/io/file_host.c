/* File I/O for models (host builds only): load a model file, write a built model atomically. */
#include "graph/model.h"
#include "graph/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

mdl_status mdl_model_load_file(const char *path, const mdl_load_options *options, mdl_model **out,
                               mdl_error *err) {
    if (!out) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_model_load_file: out is NULL");
    *out = NULL;
    if (!path) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_model_load_file: path is NULL");
    mdl_load_options o = options ? *options : mdl_load_options_default();
    const mdl_allocator *a = mdl__allocator_or_default(o.allocator);
    FILE *f = fopen(path, "rb");
    if (!f) return mdl__error(err, MDL_IO, "cannot open model '%s': %s", path, strerror(errno));
    mdl_status st = MDL_OK;
    uint8_t *buf = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0) len = ftell(f);
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) {
        st = mdl__error(err, MDL_IO, "cannot read model '%s': not a regular file", path);
        goto done;
    }
    buf = mdl__alloc(a, (size_t)len + 1);
    if (!buf) {
        st = mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory reading '%s' (%ld bytes)", path, len);
        goto done;
    }
    if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
        st = mdl__error(err, MDL_IO, "cannot read model '%s': %s", path, strerror(errno));
        goto done;
    }
    o.flags &= ~(uint32_t)MDL_LOAD_COPY; /* buf is ours already */
    st = mdl_model_load_buffer(buf, (size_t)len, &o, out, err);
    if (st == MDL_OK) {
        (*out)->owned = buf;
        buf = NULL;
    } else if (err) {
        /* prefix the path so a user with several models knows which one is bad */
        char msg[MDL_ERROR_MSG_SIZE];
        size_t n = (size_t)snprintf(msg, sizeof msg, "%s: ", path);
        if (n < sizeof msg) mdl__strlcpy(msg + n, err->msg, sizeof msg - n);
        memcpy(err->msg, msg, sizeof msg);
    }
done:
    mdl__free(a, buf);
    fclose(f);
    return st;
}

mdl_status mdl_builder_write_file(mdl_builder *b, const char *path, mdl_error *err) {
    void *data;
    size_t size;
    mdl_status st = mdl_builder_finish(b, &data, &size, err);
    if (st) return st;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        mdl_builder_release(b, data);
        return mdl__error(err, MDL_INVALID_ARGUMENT, "path too long: %s", path);
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        mdl_builder_release(b, data);
        return mdl__error(err, MDL_IO, "cannot write '%s': %s", path, strerror(errno));
    }
    bool ok = fwrite(data, 1, size, f) == size;
    ok = (fclose(f) == 0) && ok;
    mdl_builder_release(b, data);
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return mdl__error(err, MDL_IO, "cannot write '%s': %s", path, strerror(e));
    }
    return MDL_OK;
}
