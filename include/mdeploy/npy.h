/*
 * mdeploy — NumPy .npy files (host builds only; not part of the firmware core).
 *
 * The host tools (mdeploy-run and friends) take model inputs and give outputs as .npy files so
 * they move straight in and out of NumPy:
 *
 *     mdl_npy x;
 *     mdl_error err;
 *     if (mdl_npy_read("input.npy", &x, &err) != MDL_OK) { fprintf(stderr, "%s\n", err.msg); ... }
 *     ... x.dtype, x.rank, x.dims, x.bytes, x.data ...
 *     mdl_npy_free(&x);
 *     mdl_npy_write("output.npy", MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, 10}, y, &err);
 *
 * Supported files: format versions 1.0, 2.0 and 3.0; dtypes '<f4' (float32), '|i1' (int8),
 * '|u1' (uint8), '<i4' (int32) and '<i8' (int64); C (row-major) order; any rank from 0 (a scalar)
 * to MDL_MAX_RANK, including arrays with a zero-length dimension.  Everything else is rejected
 * with MDL_UNSUPPORTED and a message that says how to convert it in NumPy: other dtypes (float64,
 * bool, int16, ...), big-endian data ('>f4'), Fortran order (np.asfortranarray), structured or
 * object arrays, rank above MDL_MAX_RANK.
 *
 * Every byte of a file is treated as untrusted.  The header dictionary is parsed as the Python
 * literal NumPy defines (keys in any order, either quote style, any whitespace, trailing commas,
 * 'L' suffixes from Python 2 writers), sizes are computed with overflow checks, and data shorter
 * than the header promises is an error naming the expected and actual byte counts.  Bytes after
 * the array data are ignored, as NumPy does (np.save can append several arrays to one file).
 *
 * Errors: each function returns an mdl_status; when err is non-NULL it also receives a message
 * naming the file (or "npy buffer") and the cause.
 *   MDL_INVALID_ARGUMENT  bad arguments; not a .npy file; malformed header; negative or
 *                         overflowing shape; data truncated
 *   MDL_UNSUPPORTED       valid .npy this library cannot represent (see above)
 *   MDL_IO                file cannot be opened, read, written or renamed (with strerror)
 *   MDL_OUT_OF_MEMORY     the data buffer cannot be allocated
 *
 * Threads: no global state; distinct mdl_npy values may be used from different threads.
 */
#ifndef MDEPLOY_NPY_H
#define MDEPLOY_NPY_H

#include "mdeploy/mdeploy.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An array read from a .npy file.  Data is C-ordered, in host byte order. */
typedef struct mdl_npy {
    mdl_dtype dtype;
    int32_t rank;               /* 0 for a scalar */
    int64_t dims[MDL_MAX_RANK]; /* rank entries; the rest are 0 */
    size_t bytes;               /* product(dims) * mdl_dtype_size(dtype) */
    void *data;                 /* owned by the mdl_npy: malloc'd, non-NULL even when bytes == 0 */
} mdl_npy;

/*
 * Reads the .npy file at path into *out.  On success the caller owns out->data and releases it
 * with mdl_npy_free.  On failure *out is zeroed (mdl_npy_free on it is a harmless no-op).
 * Errors: INVALID_ARGUMENT, UNSUPPORTED, IO, OUT_OF_MEMORY.
 */
MDL_API mdl_status mdl_npy_read(const char *path, mdl_npy *out, mdl_error *err);

/*
 * Same, from the size bytes of a whole .npy file already in memory.  buf is only read and may be
 * released once this returns; out->data is a fresh copy, owned as for mdl_npy_read.
 * Errors: INVALID_ARGUMENT, UNSUPPORTED, OUT_OF_MEMORY.
 */
MDL_API mdl_status mdl_npy_read_buffer(const void *buf, size_t size, mdl_npy *out, mdl_error *err);

/*
 * Writes an array to path as a version 1.0 .npy file (little-endian, C order) whose data starts
 * at a multiple of 64 bytes, as NumPy writes it.  dims has rank entries (may be NULL when rank is
 * 0); data holds product(dims) * mdl_dtype_size(dtype) bytes in host byte order (may be NULL when
 * that is 0).  Nothing here is retained.
 * The file is written to a temporary name next to path, then renamed over path: on any error
 * path is left as it was (absent or with its previous content) and the temporary is removed.
 * Errors: INVALID_ARGUMENT (dtype, rank, negative dims, size overflow, NULL pointers), IO,
 * OUT_OF_MEMORY.
 */
MDL_API mdl_status mdl_npy_write(const char *path, mdl_dtype dtype, int32_t rank, const int64_t *dims,
                         const void *data, mdl_error *err);

/* Releases a->data and zeroes *a.  NULL, or an already zeroed / freed mdl_npy, is a no-op. */
MDL_API void mdl_npy_free(mdl_npy *a);

#ifdef __cplusplus
}
#endif
#endif
