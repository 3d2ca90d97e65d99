/* The kernel table: kernel[op][dtype of input 0].  Each operator family lives in its own file
   and adds its entries in its block below. */
#include "ops.h"

extern const mdl__kernel mdl__fc_f32;
extern const mdl__kernel mdl__matmul_f32;
/* BEGIN conv-pool declarations */
/* END conv-pool declarations */
/* BEGIN elementwise declarations */
/* END elementwise declarations */
/* BEGIN shape declarations */
/* END shape declarations */
/* BEGIN rnn declarations */
/* END rnn declarations */

static const mdl__kernel *const kernels[MDL_OP_COUNT][MDL_DTYPE_COUNT] = {
    [MDL_OP_FULLY_CONNECTED][MDL_DTYPE_FLOAT32] = &mdl__fc_f32,
    [MDL_OP_MATMUL][MDL_DTYPE_FLOAT32] = &mdl__matmul_f32,
    /* BEGIN conv-pool entries */
    /* END conv-pool entries */
    /* BEGIN elementwise entries */
    /* END elementwise entries */
    /* BEGIN shape entries */
    /* END shape entries */
    /* BEGIN rnn entries */
    /* END rnn entries */
};

const mdl__kernel *mdl__kernel_find(mdl_op op, mdl_dtype dtype) {
    if ((unsigned)op >= MDL_OP_COUNT || (unsigned)dtype >= MDL_DTYPE_COUNT) return NULL;
    return kernels[op][dtype];
}
