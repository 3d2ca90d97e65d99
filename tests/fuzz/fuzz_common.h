/* Shared by the libFuzzer targets (tests/fuzz/fuzz_*.c): run a loaded model once on given input
   bytes, and again after resizing its dynamic dims.  Sizes are bounded so that a valid model that
   legitimately asks for gigabytes does not trip the fuzzer's memory limit. */
#ifndef MDL_FUZZ_COMMON_H
#define MDL_FUZZ_COMMON_H

#include "mdeploy/mdeploy.h"

#include <string.h>

#define FZ_MAX_ARENA ((size_t)64 << 20)

/* Load options with the fuzzers' limits; the content digest is not checked (a mutated file
   would never get past it: fuzz_file checks it, to fuzz the seal's byte ranges). */
static inline mdl_load_options fz_load_options(uint32_t flags) {
    mdl_load_options o = mdl_load_options_default();
    o.flags = flags | MDL_LOAD_NO_DIGEST;
    o.max_arena_bytes = FZ_MAX_ARENA;
    return o;
}

/* Fills every input of s with the payload repeated (zeros when there is none): NaNs, infinities,
   out-of-range ids and whatever else the fuzzer picks reach the kernels. */
static inline void fz_fill_inputs(mdl_session *s, int nin, const uint8_t *payload, size_t n) {
    size_t at = 0;
    for (int i = 0; i < nin; i++) {
        mdl_tensor_info ti;
        if (mdl_session_input_info(s, i, &ti)) continue;
        uint8_t *dst = mdl_session_input_data(s, i);
        if (!n) {
            memset(dst, 0, ti.bytes);
            continue;
        }
        for (size_t k = 0; k < ti.bytes; k++) {
            dst[k] = payload[at];
            at = at + 1 < n ? at + 1 : 0;
        }
    }
}

/* Runs m on the payload; a model with dynamic dims is resized (every symbolic dim to 2, or its
   bound) and run again. */
static inline void fz_run_model(const mdl_model *m, const uint8_t *payload, size_t n) {
    if (mdl_model_arena_size(m) >= FZ_MAX_ARENA) return;
    mdl_session_options so = mdl_session_options_default();
    so.max_arena_bytes = FZ_MAX_ARENA;
    mdl_session *s;
    mdl_error err;
    if (mdl_session_create(m, &so, &s, &err) != MDL_OK) return;
    int nin = mdl_model_input_count(m);
    fz_fill_inputs(s, nin, payload, n);
    mdl_session_run(s);
    if (mdl_model_symbol_count(m) && nin <= 16 && mdl_model_arena_size(m) < ((size_t)1 << 20)) {
        mdl_shape shapes[16];
        for (int i = 0; i < nin; i++) {
            mdl_tensor_info ti;
            mdl_model_input_info(m, i, &ti);
            shapes[i].rank = ti.rank;
            for (int d = 0; d < ti.rank; d++)
                shapes[i].dims[d] = ti.dims[d] >= 0 ? ti.dims[d]
                                    : ti.dim_max && ti.dim_max[d] && ti.dim_max[d] < 2 ? ti.dim_max[d] : 2;
        }
        if (mdl_session_resize(s, nin, shapes, &err) == MDL_OK) {
            fz_fill_inputs(s, nin, payload, n);
            mdl_session_run(s);
        }
    }
    mdl_session_free(s);
}

#endif
