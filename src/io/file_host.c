/* File I/O for models (host builds only): map a model file, write a built model atomically. */
#define _DEFAULT_SOURCE /* MAP_POPULATE */
#include "graph/model.h"
#include "graph/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Fault the whole file in with one call: packing reads every weight at load anyway, and one
   populate is cheaper than a page fault per 4 KiB. */
#ifdef MAP_POPULATE
#define MAP_PREFAULT MAP_POPULATE
#else
#define MAP_PREFAULT 0
#endif

static void unmap(void *p, size_t n) { munmap(p, n); }

/* Maps the file read-only and loads it in place: no copy, pages come in as the verifier and the
   kernels touch them, and several processes share one copy of the weights.  Private mapping of a
   file that is replaced on disk keeps the old bytes (rename, as our writers do, never changes
   them in place). */
mdl_status mdl_model_load_file(const char *path, const mdl_load_options *options, mdl_model **out,
                               mdl_error *err) {
    if (!out) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_model_load_file: out is NULL");
    *out = NULL;
    if (!path) return mdl__error(err, MDL_INVALID_ARGUMENT, "mdl_model_load_file: path is NULL");
    mdl_load_options o = options ? *options : mdl_load_options_default();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mdl__error(err, MDL_IO, "cannot open model '%s': %s", path, strerror(errno));
    struct stat st_;
    if (fstat(fd, &st_) != 0 || !S_ISREG(st_.st_mode)) {
        close(fd);
        return mdl__error(err, MDL_IO, "cannot read model '%s': not a regular file", path);
    }
    size_t size = (size_t)st_.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_PREFAULT, fd, 0) : MAP_FAILED;
    close(fd);
    if (map == MAP_FAILED)
        return size ? mdl__error(err, MDL_IO, "cannot map model '%s': %s", path, strerror(errno))
                    : mdl__error(err, MDL_CORRUPT_MODEL, "%s: empty file", path);
    o.flags &= ~(uint32_t)MDL_LOAD_COPY;
    mdl_status st = mdl_model_load_buffer(map, size, &o, out, err);
    if (st == MDL_OK) {
        (*out)->owned = map;
        (*out)->owned_size = size;
        (*out)->release = unmap;
        return MDL_OK;
    }
    munmap(map, size);
    if (err) {
        /* prefix the path so a user with several models knows which one is bad */
        char msg[MDL_ERROR_MSG_SIZE];
        size_t n = (size_t)snprintf(msg, sizeof msg, "%s: ", path);
        if (n < sizeof msg) mdl__strlcpy(msg + n, err->msg, sizeof msg - n);
        memcpy(err->msg, msg, sizeof msg);
    }
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
