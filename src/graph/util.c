#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE (Linux) */
#include "util.h"

#include "mdeploy/graph.h"
#include "ops/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mdl_status_str(mdl_status s) {
    static const char *const names[] = {
#define MDL__STATUS_STR(name, text) text,
        MDL_STATUS_MAP(MDL__STATUS_STR)
#undef MDL__STATUS_STR
    };
    return (unsigned)s < MDL_STATUS_COUNT ? names[s] : "unknown status";
}

const char *mdl_dtype_name(mdl_dtype t) {
    static const char *const names[] = {
#define MDL__DTYPE_STR(name, text, size) text,
        MDL_DTYPE_MAP(MDL__DTYPE_STR)
#undef MDL__DTYPE_STR
    };
    return (unsigned)t < MDL_DTYPE_COUNT ? names[t] : "unknown";
}

size_t mdl_dtype_size(mdl_dtype t) {
    static const size_t sizes[] = {
#define MDL__DTYPE_SIZE(name, text, size) size,
        MDL_DTYPE_MAP(MDL__DTYPE_SIZE)
#undef MDL__DTYPE_SIZE
    };
    return (unsigned)t < MDL_DTYPE_COUNT ? sizes[t] : 0;
}

const char *mdl_op_name(mdl_op op) {
    static const char *const names[] = {
#define MDL__OP_STR(name, text, kind) text,
        MDL_OP_MAP(MDL__OP_STR)
#undef MDL__OP_STR
    };
    return (unsigned)op < MDL_OP_COUNT ? names[op] : "unknown";
}

mdl_options_kind mdl_op_options_kind(mdl_op op) {
    static const mdl_options_kind kinds[] = {
#define MDL__OP_KIND(name, text, kind) MDL_OPTIONS_##kind,
        MDL_OP_MAP(MDL__OP_KIND)
#undef MDL__OP_KIND
    };
    return (unsigned)op < MDL_OP_COUNT ? kinds[op] : MDL_OPTIONS_NONE;
}

mdl_op_options mdl_op_options_default(mdl_op op) {
    mdl_op_options o;
    memset(&o, 0, sizeof o);
    switch (mdl_op_options_kind(op)) {
    case MDL_OPTIONS_CONV:
        o.conv.stride[0] = o.conv.stride[1] = 1;
        o.conv.dilation[0] = o.conv.dilation[1] = 1;
        o.conv.group = 1;
        break;
    case MDL_OPTIONS_POOL:
        o.pool.kernel[0] = o.pool.kernel[1] = 1;
        o.pool.stride[0] = o.pool.stride[1] = 1;
        break;
    case MDL_OPTIONS_ACT:
        o.act.min = -__builtin_inff();
        o.act.max = __builtin_inff();
        o.act.alpha = op == MDL_OP_HARD_SIGMOID ? 0.2f : 0.01f;
        o.act.beta = 0.5f;
        break;
    case MDL_OPTIONS_AXIS: o.axis.axis = op == MDL_OP_GATHER ? 0 : -1; break;
    case MDL_OPTIONS_TRANSPOSE:
        for (int i = 0; i < MDL_MAX_RANK; i++) o.transpose.perm[i] = i;
        break;
    case MDL_OPTIONS_SLICE:
        for (int i = 0; i < MDL_MAX_RANK; i++) o.slice.step[i] = 1;
        break;
    case MDL_OPTIONS_REDUCE: o.reduce.keepdims = true; break;
    case MDL_OPTIONS_BATCH_NORM: o.batch_norm.epsilon = 1e-5f; break;
    case MDL_OPTIONS_RESIZE: o.resize.scale[0] = o.resize.scale[1] = 1.0f; break;
    default: break;
    }
    return o;
}

const char *mdl_version(void) { return MDL_VERSION_STRING; }

mdl_status mdl__verror(mdl_error *err, mdl_status status, const char *fmt, va_list ap) {
    if (err) {
        err->status = status;
#ifdef MDL_NO_ERROR_STRINGS
        (void)fmt;
        (void)ap;
        err->msg[0] = '\0';
#else
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
#endif
    }
    return status;
}

#ifdef MDL_NO_ERROR_STRINGS
mdl_status mdl__error_status(mdl_error *err, mdl_status status) {
    if (err) {
        err->status = status;
        err->msg[0] = '\0';
    }
    return status;
}

mdl_status mdl__fail_status(const mdl__kctx *ctx, mdl_status status) {
    return mdl__error_status(ctx->err, status);
}
#else
mdl_status mdl__error(mdl_error *err, mdl_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mdl__verror(err, status, fmt, ap);
    va_end(ap);
    return status;
}

mdl_status mdl__fail(const mdl__kctx *ctx, mdl_status status, const char *fmt, ...) {
    if (!ctx->err) return status;
    char what[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return mdl__error(ctx->err, status, "%s '%s': %s", mdl_op_name(ctx->op),
                      ctx->name ? ctx->name : "", what);
}
#endif

const char *mdl__dims_str(char *buf, size_t size, int32_t rank, const int64_t *dims) {
    size_t n = 0;
    if (size == 0) return buf;
    buf[0] = '\0';
#ifndef MDL_NO_ERROR_STRINGS
    n += (size_t)snprintf(buf + n, size - n, "[");
    for (int32_t i = 0; i < rank && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ",%lld" : "%lld", (long long)dims[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
#else
    (void)rank;
    (void)dims;
    (void)n;
#endif
    return buf;
}

bool mdl__shape_size(int32_t rank, const int64_t *dims, size_t elem, int64_t *count,
                     size_t *bytes) {
    int64_t n = 1;
    for (int32_t i = 0; i < rank; i++) {
        if (dims[i] < 0 || dims[i] > MDL_MAX_ELEMENTS) return false;
#if PTRDIFF_MAX < INT64_MAX
        if (dims[i] > PTRDIFF_MAX) return false; /* 32-bit: kernels index with ptrdiff_t */
#endif
        if (__builtin_mul_overflow(n, dims[i], &n) || n > MDL_MAX_ELEMENTS) return false;
    }
    size_t b;
    if (!mdl__mul_size((size_t)n, elem, &b) || b > (size_t)PTRDIFF_MAX) return false;
    if (count) *count = n;
    if (bytes) *bytes = b;
    return true;
}

#if defined(__linux__) && !defined(MDL_NO_HUGEPAGES)
#include <sys/mman.h>
#define HUGE_BYTES ((size_t)2 << 20)
#endif

#ifdef MDL_NO_MALLOC
/* Firmware: no heap in the image.  Without a caller's allocator, loading fails with
   MDL_OUT_OF_MEMORY (use mdl_bump_init over a static buffer). */
static void *libc_alloc(void *user, size_t n) {
    (void)user;
    (void)n;
    return NULL;
}
static void libc_free(void *user, void *p) {
    (void)user;
    (void)p;
}
#else
static void *libc_alloc(void *user, size_t n) {
    (void)user;
#ifdef HUGE_BYTES
    /* Packed weights of large models are tens of MB written once at load: on 2 MiB pages that is
       a few dozen page faults instead of thousands (ResNet-18 load: ~30 ms -> see bench). */
    if (n >= 2 * HUGE_BYTES) {
        size_t rounded = (n + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1);
        void *p = aligned_alloc(HUGE_BYTES, rounded);
        if (p) madvise(p, rounded, MADV_HUGEPAGE);
        return p;
    }
#endif
    return malloc(n ? n : 1);
}
static void libc_free(void *user, void *p) {
    (void)user;
    free(p);
}
#endif

const mdl_allocator *mdl__allocator_or_default(const mdl_allocator *a) {
    static const mdl_allocator libc = {libc_alloc, libc_free, NULL};
    return a ? a : &libc;
}

static void *bump_alloc(void *user, size_t n) {
    mdl_bump *b = user;
    size_t start = mdl__align_up((size_t)(b->base + b->used), 16) - (size_t)b->base;
    if (start > b->size || n > b->size - start) return NULL;
    b->used = start + n;
    return b->base + start;
}
static void bump_free(void *user, void *p) {
    (void)user;
    (void)p;
}

mdl_allocator mdl_bump_init(mdl_bump *bump, void *buffer, size_t size) {
    bump->base = buffer;
    bump->size = size;
    bump->used = 0;
    mdl_allocator a = {bump_alloc, bump_free, bump};
    return a;
}

void mdl__strlcpy(char *dst, const char *src, size_t size) {
    if (!size) return;
    size_t n = strlen(src);
    if (n >= size) n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}
