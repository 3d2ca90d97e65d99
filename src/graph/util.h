/* Internal helpers shared by the io, graph and ops code: errors, checked arithmetic, allocation. */
#ifndef MDL_UTIL_H
#define MDL_UTIL_H

#include "mdeploy/mdeploy.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes status + formatted message into err (if non-NULL) and returns status. */
mdl_status mdl__error(mdl_error *err, mdl_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
mdl_status mdl__verror(mdl_error *err, mdl_status status, const char *fmt, va_list ap);

#ifdef MDL_NO_ERROR_STRINGS
/* Without messages, a failure site keeps only its status: the format and its arguments stay in
   an unevaluated sizeof (still type-checked, their variables still "used") and generate no code,
   which takes the message-building argument code out of a firmware image. */
int mdl__msg_unevaluated(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
mdl_status mdl__error_status(mdl_error *err, mdl_status status);
#define mdl__error(err, status, ...)                                                               \
    ((void)sizeof(mdl__msg_unevaluated(__VA_ARGS__)), mdl__error_status((err), (status)))
#endif

/* Programmer-error checks inside the library (never for bad input).  Compiled out with NDEBUG. */
#include <assert.h>
#define MDL_ASSERT(x) assert(x)

/* Checked arithmetic on values that come from files: false on overflow. */
static inline bool mdl__mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool mdl__add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline size_t mdl__align_up(size_t v, size_t a) { return (v + (a - 1)) & ~(a - 1); }

/* Where the planner puts tensors and scratch, where sessions and copied models start, and where
   the writer puts weight buffers in a file: a cache line, so that SIMD kernels' full-width loads and stores never straddle two (a 64-byte vector
   at a 16-byte offset costs two L1 accesses).  Stored plans need only MDL_ALIGN. */
#define MDL__LINE_ALIGN 64

/* Product of dims into *count and *bytes (count * elem); false on negative dims or overflow past
   MDL_MAX_ELEMENTS / PTRDIFF_MAX (bytes; also each dim), so that kernels may index any tensor
   with ptrdiff_t (32-bit on 32-bit cores). */
#define MDL_MAX_ELEMENTS ((int64_t)1 << 40)
bool mdl__shape_size(int32_t rank, const int64_t *dims, size_t elem, int64_t *count,
                     size_t *bytes);

/* Allocator plumbing: NULL selects libc. */
const mdl_allocator *mdl__allocator_or_default(const mdl_allocator *a);
static inline void *mdl__alloc(const mdl_allocator *a, size_t n) { return a->alloc(a->user, n); }
static inline void mdl__free(const mdl_allocator *a, void *p) {
    if (p) a->free(a->user, p);
}

/* Bounded string copy that always terminates. */
void mdl__strlcpy(char *dst, const char *src, size_t size);

#endif
