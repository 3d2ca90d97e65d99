/* The demo: classify held-back handwritten digits (scikit-learn's 8x8 digits set) with a CNN that
   was trained in PyTorch, exported to ONNX and converted by mdeploy-convert.
   usage: digits MODEL.mdl IMAGES.npy LABELS.npy      (IMAGES float32 [N,1,8,8], LABELS int64 [N]) */
#include "mdeploy/mdeploy.h"
#include "mdeploy/npy.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.mdl IMAGES.npy LABELS.npy\n", argv[0]);
        return 2;
    }
    mdl_error err;
    mdl_model *m = NULL;
    mdl_session *s = NULL;
    mdl_npy images = {0}, labels = {0};
    int rc = 1;
    if (mdl_model_load_file(argv[1], NULL, &m, &err) || mdl_session_create(m, NULL, &s, &err) ||
        mdl_npy_read(argv[2], &images, &err) || mdl_npy_read(argv[3], &labels, &err)) {
        fprintf(stderr, "digits: %s\n", err.msg);
        goto done;
    }
    mdl_tensor_info in, out;
    mdl_session_input_info(s, 0, &in); /* a dynamic batch is 1 in a new session: one image */
    mdl_session_output_info(s, 0, &out);
    int64_t n = images.rank > 0 ? images.dims[0] : 0;
    if (images.dtype != MDL_DTYPE_FLOAT32 || n == 0 || images.bytes != (size_t)n * in.bytes ||
        labels.dtype != MDL_DTYPE_INT64 || labels.rank != 1 || labels.dims[0] != n) {
        fprintf(stderr, "digits: expected float32 images of %zu bytes each and one int64 label per image\n", in.bytes);
        goto done;
    }
    int64_t classes = out.dims[out.rank - 1], correct = 0;
    printf("model %s (%s), input %s, %lld classes, %zu bytes of weights\n", mdl_model_name(m),
           argv[1], in.name, (long long)classes, mdl_model_weight_bytes(m));
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        memcpy(mdl_session_input_data(s, 0), (const char *)images.data + (size_t)i * in.bytes, in.bytes);
        double t0 = now_ms();
        if (mdl_session_run(s)) {
            fprintf(stderr, "digits: %s\n", mdl_session_message(s));
            goto done;
        }
        total += now_ms() - t0;
        const float *p = mdl_session_output_data(s, 0);
        int64_t best = 0;
        for (int64_t c = 1; c < classes; c++)
            if (p[c] > p[best]) best = c;
        int64_t truth = ((const int64_t *)labels.data)[i];
        correct += best == truth;
        printf("image %2lld: predicted %lld (p=%.3f), label %lld %s\n", (long long)i, (long long)best,
               (double)p[best], (long long)truth, best == truth ? "" : "  <-- wrong");
    }
    printf("accuracy %lld/%lld = %.1f%%, mean latency %.3f ms per image\n", (long long)correct,
           (long long)n, 100.0 * (double)correct / (double)n, total / (double)n);
    rc = 0;
done:
    mdl_npy_free(&images);
    mdl_npy_free(&labels);
    mdl_session_free(s);
    mdl_model_free(m);
    return rc;
}
