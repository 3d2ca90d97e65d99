#include "sparse_pattern.h"

#include "harness.h"

#include <string.h>

#define BN 8 /* MDL_SPARSE_BN */

void th_sparse_pattern(void *W, size_t esize, int64_t N, int64_t K, int64_t sn, int64_t sk, int pattern) {
    for (int64_t n0 = 0; n0 < N; n0 += BN)
        for (int64_t k = 0; k < K; k++) {
            int keep;
            switch (pattern) {
            case P_EMPTY: keep = 0; break;
            case P_BLOCKS_10: keep = th_uniform(0, 1) < 0.1f; break;
            case P_BLOCKS_50: keep = th_uniform(0, 1) < 0.5f; break;
            case P_GROUP_GAPS: keep = (n0 / BN) % 2 == 0 && th_uniform(0, 1) < 0.3f; break;
            default: keep = 1; break;
            }
            for (int64_t n = n0; n < n0 + BN && n < N; n++)
                if (!keep || (pattern == P_ELEMENTS_80 && th_uniform(0, 1) < 0.8f))
                    memset((unsigned char *)W + (size_t)(n * sn + k * sk) * esize, 0, esize);
        }
}
