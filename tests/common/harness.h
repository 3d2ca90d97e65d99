/* Test helpers shared by every CMocka test: run one operator through the kernel table, random
   data, error measures.  Test-only; not part of the library. */
#ifndef MDL_TEST_HARNESS_H
#define MDL_TEST_HARNESS_H

/* cmocka needs these before its header */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mdeploy/graph.h"
#include "mdeploy/mdeploy.h"

#include <stdbool.h>

/* One operand of th_run_op.  For inputs: rank < 0 marks an absent optional input; constant
   marks weights (the kernel's prepare may read them).  Outputs may be zero-initialized (shape
   inferred) or declared (declared = true, dtype/rank/dims set).  th_run_op fills dtype, rank,
   dims, count and data (malloc'd; release with th_tensor_free). */
typedef struct th_tensor {
    mdl_dtype dtype;
    int rank;
    int64_t dims[MDL_MAX_RANK];
    void *data;
    bool constant;
    bool declared; /* output only: its shape is given (RESHAPE needs a declared output) */
    int64_t count;
    /* Quantization parameters (int8/uint8/int32 operands); nquant 0 = none.  The arrays belong
       to the test and must outlive th_run_op.  An output with nquant > 0 keeps them: quantized
       kernels read their output's parameters, so such an output is passed to prepare as declared
       (its dtype/rank/dims must then be set too). */
    int nquant, quant_axis;
    const float *scale;
    const int64_t *zero_point;
    /* Block-sparse storage of a constant weight (src/ops/sparse.h; the test's, outliving
       th_run_op), as the loader gives it to kernels with MDL__KERNEL_SPARSE_W; NULL: dense. */
    const struct mdl__bsr *sparse;
    bool sparse_transposed;
} th_tensor;

/* Sets t's quantization parameters (per tensor: n = 1). */
void th_tensor_quant(th_tensor *t, int n, const float *scale, const int64_t *zero_point, int axis);

/* Builds a tensor of dtype/rank/dims with data copied from src (or zeroed if src is NULL). */
th_tensor th_tensor_make(mdl_dtype dtype, int rank, const int64_t *dims, const void *src);
th_tensor th_tensor_absent(void);
void th_tensor_free(th_tensor *t);

/* Runs op on inputs through mdl__kernel_find(op, in[0].dtype): prepare (shape inference), pack
   (when the kernel asks for load-time data: as the loader does), then run with freshly allocated
   outputs and scratch.  options NULL = defaults.  Returns the status of
   prepare or run; err gets the message. */
mdl_status th_run_op(mdl_op op, const mdl_op_options *options, int nin, const th_tensor *in,
                     int nout, th_tensor *out, mdl_error *err);

/* From now on th_run_op runs kernels with a pool of n workers (the caller included) and a scratch
   per worker, as a session with threads = n does; 1 (the default) runs them serially. */
void th_set_threads(int n);

/* Deterministic pseudo-random numbers (xorshift), seeded per test. */
void th_seed(uint64_t seed);
uint64_t th_rand_u64(void);
float th_uniform(float lo, float hi);
int64_t th_rand_int(int64_t lo, int64_t hi); /* inclusive */
void th_fill_uniform(float *x, int64_t n, float lo, float hi);

/* max |a - b| / max(1e-6, max |ref|): error relative to the reference's magnitude. */
double th_max_rel_err(const float *got, const float *ref, int64_t n);

/* Asserts th_max_rel_err <= tol, printing context on failure. */
#define th_assert_close(got, ref, n, tol)                                                          \
    do {                                                                                           \
        double th__e = th_max_rel_err((got), (ref), (n));                                          \
        if (!(th__e <= (tol))) fail_msg("relative error %g > %g", th__e, (double)(tol));           \
    } while (0)

#endif

/* ---- index arithmetic and dtype-generic data (reference code in tests) -------------------- */

/* Product of dims (1 for rank 0). */
int64_t th_count(int rank, const int64_t *dims);
/* Flat row-major index <-> multi-index. */
void th_unravel(int64_t flat, int rank, const int64_t *dims, int64_t *idx);
int64_t th_ravel(const int64_t *idx, int rank, const int64_t *dims);
/* n random values of dtype (malloc'd, 8 spare bytes): floats in [-100, 100), integers over their
   whole range, so misplaced elements show. */
void *th_rand_data(mdl_dtype dtype, int64_t n);

/* Runs this test program again (argv0) once per SIMD level below the CPU's, each in a child
   process with MDL_CPU_LEVEL set (the level is chosen once per process); returns how many of
   those runs failed.  Does nothing without x86 SIMD or when MDL_CPU_LEVEL is already set. */
int th_rerun_lower_cpu_levels(const char *argv0);

/* FNV-1a over the bytes of every output th_run_op computed successfully in this process. */
extern uint64_t th_digest;
/* Called last in main(): in the first run, writes th_digest and reruns this program at every
   lower SIMD level (th_rerun_lower_cpu_levels); in a rerun, compares its own digest with the
   first run's.  So the kernels' outputs must be bit-identical at every level, on top of whatever
   the tests themselves check.  Returns the number of failures (0 on a machine without SIMD). */
int th_same_outputs_at_lower_levels(const char *argv0);

/* ---- files and commands (host tests) ------------------------------------------------------ */

/* A fresh temporary directory for this test process (created once, path stable). */
const char *th_tmpdir(void);
/* Joins th_tmpdir() and name into a static rotating buffer. */
const char *th_tmp(const char *name);
bool th_exists(const char *path);
/* The size of a file, 0 if it does not exist. */
size_t th_file_size(const char *path);
/* The path of the built tool NAME ($(B)/bin/NAME) beside this test binary (rotating buffer of 4). */
const char *th_tool(const char *name);
/* Reads a whole file (malloc'd, NUL-terminated; *size excludes the NUL); NULL on failure. */
void *th_read_file(const char *path, size_t *size);
bool th_write_file(const char *path, const void *data, size_t size);
/* Runs a shell command; returns its exit status (-1 if it could not run). */
/* Runs a shell command with its stderr captured; returns the exit status and points *msg at the
   captured text (valid until the next call). */
int th_run_stderr(const char **msg, const char *cmd);
int th_system(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
