/*
 * Calibration and evaluation data for the post-training quantizer (host only).
 *
 * A data source is a path: an .npy file (one array: the model must have one input), an .npz
 * archive (np.savez: one array per input, named by the input; a single-input model also takes an
 * archive with one array of any name), or a directory whose .npy/.npz files are read in name
 * order.  Each array holds a batch of rows of any size: an input of shape [B, d1, ..., dk] (B =
 * the model's batch) takes arrays of shape [N, d1, ..., dk] (N rows, any N >= 1) or [d1, ..., dk]
 * (one row).  Integer inputs (token ids) take any integer array; float inputs take float32.
 * NaN or infinite values, a wrong shape or dtype, an array named like no input, an input with no
 * array, an empty directory: errors whose message names the file and the input.
 *
 * npz members must be stored (np.savez); compressed members (np.savez_compressed) are refused
 * with a message saying so.
 */
#ifndef MDL_CALIB_DATA_HOST_H
#define MDL_CALIB_DATA_HOST_H

#include "mdeploy/mdeploy.h"

#include <stddef.h>
#include <stdint.h>

/* One model input as the data must match it. */
typedef struct mdl__data_input {
    const char *name;
    mdl_dtype dtype;
    int32_t rank;
    int64_t dims[MDL_MAX_RANK];
} mdl__data_input;

/* Rows of every input, all files concatenated. */
typedef struct mdl__data_set {
    int32_t ninputs;
    int64_t rows;
    size_t *row_bytes; /* per input */
    uint8_t **data;    /* per input: rows * row_bytes bytes, in the model input's dtype */
    size_t *cap;
} mdl__data_set;

/* Loads path (what: "--calibration" or "--eval", for messages) for the given model inputs.
   max_rows > 0 stops after that many rows.  On failure *out is empty (mdl__data_free is a no-op). */
mdl_status mdl__data_load(const char *path, const char *what, int32_t ninputs,
                          const mdl__data_input *in, int64_t max_rows, mdl__data_set *out,
                          mdl_error *err);
void mdl__data_free(mdl__data_set *s);

/* Labels: an integer .npy of shape [rows] (or [rows, 1]). */
mdl_status mdl__labels_load(const char *path, int64_t rows, int64_t **labels, mdl_error *err);

/* The members of an uncompressed .npz held in memory: calls fn(name, data, size) for each (name
   without ".npy").  Exposed for tests. */
typedef mdl_status (*mdl__npz_member_fn)(void *user, const char *name, const uint8_t *data,
                                         size_t size, mdl_error *err);
mdl_status mdl__npz_each(const char *path, const uint8_t *buf, size_t size, mdl__npz_member_fn fn,
                         void *user, mdl_error *err);

#endif
