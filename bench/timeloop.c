/* The timed loops of the side-by-side benchmark, in C so that neither runtime's numbers carry
   Python or ctypes overhead: bench/harness.py passes in the two runtimes' C entry points
   (mdl_session_run and OrtApi::Run, as function pointers) and alternates blocks of iterations.
   Both loops have the same shape: untimed input refresh where the runtime needs it, then
   clock_gettime, one call, clock_gettime.  Built by the harness into the build directory:
       cc -O2 -shared -fPIC -o BUILD/bench/libtimeloop.so bench/timeloop.c */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef int (*mdl_run_fn)(void *session);
typedef void *(*ort_run_fn)(void *session, const void *run_options, const char *const *input_names,
                            const void *const *inputs, size_t ninputs, const char *const *output_names,
                            size_t noutputs, void **outputs);

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* mdeploy: the session arena does not keep inputs across runs, so each run first copies the
   inputs in (untimed: an application writes its inputs there directly, as ORT reads them from
   the caller's buffers).  Returns 0 or the first failing run's status. */
int tl_mdl(mdl_run_fn run, void *session, int ninputs, void *const *dst, const void *const *src,
           const size_t *bytes, int iters, uint64_t *times) {
    for (int it = 0; it < iters; it++) {
        for (int i = 0; i < ninputs; i++) memcpy(dst[i], src[i], bytes[i]);
        uint64_t t0 = now_ns();
        int st = run(session);
        times[it] = now_ns() - t0;
        if (st) return st;
    }
    return 0;
}

/* ONNX Runtime: inputs and (pre-allocated) outputs are bound once.  Returns NULL or the first
   failing run's OrtStatus (the caller reads and releases it). */
void *tl_ort(ort_run_fn run, void *session, const char *const *input_names, const void *const *inputs,
             size_t ninputs, const char *const *output_names, size_t noutputs, void **outputs, int iters,
             uint64_t *times) {
    for (int it = 0; it < iters; it++) {
        uint64_t t0 = now_ns();
        void *st = run(session, NULL, input_names, inputs, ninputs, output_names, noutputs, outputs);
        times[it] = now_ns() - t0;
        if (st) return st;
    }
    return NULL;
}

/* Smallest interval two back-to-back clock reads give: the floor under every timed call. */
uint64_t tl_clock_floor(int iters) {
    uint64_t best = UINT64_MAX;
    for (int it = 0; it < iters; it++) {
        uint64_t t0 = now_ns(), t1 = now_ns();
        if (t1 - t0 < best) best = t1 - t0;
    }
    return best;
}
