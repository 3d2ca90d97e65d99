/* libFuzzer target: the .npy reader (mdl_npy_read_buffer) on arbitrary bytes.  A header it accepts
   must describe exactly the data it returns. */
#include "mdeploy/npy.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mdl_npy a;
    mdl_error err;
    if (mdl_npy_read_buffer(data, size, &a, &err) == MDL_OK) {
        size_t count = 1;
        for (int32_t d = 0; d < a.rank; d++) count *= (size_t)a.dims[d];
        if (a.rank < 0 || a.rank > MDL_MAX_RANK || count * mdl_dtype_size(a.dtype) != a.bytes || !a.data ||
            a.bytes > size)
            abort();
        volatile uint8_t sink = 0; /* touch every byte returned: ASan checks the bounds */
        for (size_t k = 0; k < a.bytes; k++) sink ^= ((const uint8_t *)a.data)[k];
        (void)sink;
        mdl_npy_free(&a);
    }
    return 0;
}
