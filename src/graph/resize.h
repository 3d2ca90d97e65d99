/* Graph instances at concrete shapes for models with dynamic dims (sessions, resize.c). */
#ifndef MDL_RESIZE_H
#define MDL_RESIZE_H

#include "model.h"

/* One concrete instance of a model's graph: its own tensor and node records (shapes, scratch),
   memory plan and, where a kernel's packed weights depend on the shapes, its own packed data. */
typedef struct mdl__inst {
    mdl__graph g;
    mdl__plan plan;
    int64_t symval[MDL__MAX_SYMBOLS];
    void *packed_raw;
    size_t arena_bytes;
} mdl__inst;

/* The symbol values that shapes[0..n) give (inputs from n on keep cur's values).  Checks rank,
   fixed dims, bounds and that a symbol shared by several inputs gets one value; the message
   names the input, the dim and the symbol. */
mdl_status mdl__symvals_from_shapes(const mdl_model *m, const int64_t *cur, int n,
                                    const mdl_shape *shapes, int64_t *out, mdl_error *err);

/* Builds the instance of m at symval (shape inference by every kernel's prepare, plan,
   packing).  Allocates with a. */
mdl_status mdl__inst_create(const mdl_model *m, const int64_t *symval, const mdl_allocator *a,
                            mdl__inst **out, mdl_error *err);
void mdl__inst_free(mdl__inst *inst, const mdl_allocator *a);

/* Loader, models with dynamic dims: packs once more at every symbol >= 2 (m->pack_inst), so that
   sessions at other sizes share weights packed for more than one row instead of each packing
   its own.  Failure leaves m->pack_inst NULL (sessions then pack their own). */
void mdl__model_pack_instance(mdl_model *m);

#endif
