/* libFuzzer target: the file paths of loading.  Even first byte: mdl_model_load_buffer with
   MDL_LOAD_COPY from an odd address (the copy realigns it); odd first byte: the bytes written to
   a file and loaded with mdl_model_load_file (mmap).  The model is the rest; it is then run on
   zero inputs. */
#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    mdl_model *m = NULL;
    mdl_error err;
    mdl_load_options o = fz_load_options(MDL_LOAD_COPY);
    o.flags &= ~(uint32_t)MDL_LOAD_NO_DIGEST; /* the seal check itself, on hostile byte ranges */
    mdl_status st;
    if (data[0] & 1) {
        if (!path[0])
            snprintf(path, sizeof path, "%s/mdeploy-fuzz-%ld.mdl",
                     access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (long)getpid());
        FILE *f = fopen(path, "wb");
        if (!f) return 0;
        fwrite(data + 1, 1, size - 1, f);
        fclose(f);
        st = mdl_model_load_file(path, &o, &m, &err); /* load_file maps in place: COPY is ignored */
        remove(path);
    } else {
        uint8_t *odd = malloc(size + 1);
        if (!odd) return 0;
        memcpy(odd + 1, data + 1, size - 1);
        st = mdl_model_load_buffer(odd + 1, size - 1, &o, &m, &err);
        free(odd); /* the model holds its own copy */
    }
    if (st == MDL_OK) {
        fz_run_model(m, NULL, 0);
        mdl_model_free(m);
    }
    return 0;
}
