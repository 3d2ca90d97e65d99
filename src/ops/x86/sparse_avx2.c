/* Block-sparse product, AVX2 + FMA: 8 input rows per tile (8 accumulators, the weights and a
   broadcast in 16 registers).  See sparse_driver.h. */
#define MR 8
#include "sparse_driver.h"

SPMM_TILE_FN(1)
SPMM_TILE_FN(2)
SPMM_TILE_FN(3)
SPMM_TILE_FN(4)
SPMM_TILE_FN(5)
SPMM_TILE_FN(6)
SPMM_TILE_FN(7)
SPMM_TILE_FN(8)

static const spmm_tile_fn tiles[MR + 1] = {NULL,        spmm_tile_1, spmm_tile_2,
                                           spmm_tile_3, spmm_tile_4, spmm_tile_5,
                                           spmm_tile_6, spmm_tile_7, spmm_tile_8};

void mdl__spmm_avx2(int64_t M, const float *X, int64_t ldx, const mdl__bsr *W, const float *bias,
                    float *Y, int64_t ldy, float lo, float hi, void *scratch) {
    spmm_run(tiles, M, X, ldx, W, bias, Y, ldy, lo, hi, scratch);
}
