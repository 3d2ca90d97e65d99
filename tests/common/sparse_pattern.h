/* Random sparsity patterns of a weight matrix in 8x1 blocks (src/ops/sparse.h): shared by the
   tests of the sparse products and kernels. */
#ifndef MDL_TESTS_SPARSE_PATTERN_H
#define MDL_TESTS_SPARSE_PATTERN_H

#include <stddef.h>
#include <stdint.h>

/* From empty (no block at all) through 10% and 50% of the blocks, empty row groups (every other
   group empty, 30% of the others' blocks), element-wise (80% of the elements zeroed, few whole
   blocks) to dense. */
enum { P_EMPTY, P_BLOCKS_10, P_BLOCKS_50, P_GROUP_GAPS, P_ELEMENTS_80, P_DENSE, P_COUNT };

/* Zeroes elements of W (N rows of K: element (n, k) at W + (n * sn + k * sk) * esize, esize 1
   for int8 or 4 for float32) in the pattern's 8x1 blocks (rows n0 .. n0 + 7 of one column k),
   drawing from the harness's generator (th_seed). */
void th_sparse_pattern(void *W, size_t esize, int64_t N, int64_t K, int64_t sn, int64_t sk, int pattern);

#endif
