/* Shared pieces of the int8 kernel tests (test_int8_*.c): the double-precision quantization
   oracle, random quantization parameters and the "within one step, mostly exact" bookkeeping.
   Independent of src/quant: rounding is C's nearbyint (round half to even in the default
   rounding mode), requantization is plain double arithmetic. */
#ifndef MDL_TEST_Q8_ORACLE_H
#define MDL_TEST_Q8_ORACLE_H

#include "common/harness.h"

#include <fenv.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* saturate(round_half_even(v / s) + zp) computed in double. */
static inline int32_t q8_quantize(double v, double s, int32_t zp, int32_t qmin, int32_t qmax) {
    if (isnan(v)) return zp;
    double r = v / s;
    if (r > 1e12) return qmax;
    if (r < -1e12) return qmin;
    double q = nearbyint(r) + zp;
    return q < qmin ? qmin : (q > qmax ? qmax : (int32_t)q);
}

static inline int32_t q8_quantize8(double v, double s, int32_t zp) {
    return q8_quantize(v, s, zp, -128, 127);
}

static inline double q8_real(int32_t q, double s, int32_t zp) { return s * (double)(q - zp); }

/* Scales log-uniform over [10^lo_exp, 10^hi_exp]. */
static inline float q8_rand_scale(double lo_exp, double hi_exp) {
    return (float)pow(10.0, th_uniform((float)lo_exp, (float)hi_exp));
}

/* Zero points with the extremes often. */
static inline int64_t q8_rand_zp(void) {
    switch (th_rand_int(0, 4)) {
    case 0: return -128;
    case 1: return 127;
    case 2: return 0;
    default: return th_rand_int(-128, 127);
    }
}

static inline void q8_fill(int8_t *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x[i] = (int8_t)th_rand_int(-128, 127);
}

/* Declared int8 output with per-tensor parameters (the arrays must outlive th_run_op). */
static inline th_tensor q8_declared(int rank, const int64_t *dims, const float *scale,
                                    const int64_t *zp) {
    th_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = MDL_DTYPE_INT8;
    t.rank = rank;
    for (int i = 0; i < rank; i++)
        t.dims[i] = dims[i];
    t.declared = true;
    th_tensor_quant(&t, 1, scale, zp, 0);
    return t;
}

static inline th_tensor q8_input(int rank, const int64_t *dims, const int8_t *data,
                                 const float *scale, const int64_t *zp) {
    th_tensor t = th_tensor_make(MDL_DTYPE_INT8, rank, dims, data);
    th_tensor_quant(&t, 1, scale, zp, 0);
    return t;
}

/* Agreement with the oracle.  Elements whose exact value lies on a tie (x.5 steps) are counted
   apart: the fixed-point kernels round those away from zero (TFLite), the oracle to even. */
typedef struct q8_stats {
    int64_t n, exact, ties, exact_off_tie;
    int max_diff;
} q8_stats;

/* True when v is exactly halfway between two integers. */
static inline bool q8_is_tie(double v) { return v - floor(v) == 0.5; }

/* Records one element; fails when it is more than one step from the oracle.  real_steps is the
   oracle's unrounded value in output steps (for the tie count). */
#define q8_check(st, got, want, real_steps, ...)                                                   \
    do {                                                                                           \
        int q8_d_ = abs((int)(got) - (int)(want));                                                 \
        (st)->n++;                                                                                 \
        (st)->exact += q8_d_ == 0;                                                                 \
        bool q8_t_ = q8_is_tie(real_steps);                                                        \
        (st)->ties += q8_t_;                                                                       \
        (st)->exact_off_tie += !q8_t_ && q8_d_ == 0;                                               \
        if (q8_d_ > (st)->max_diff) (st)->max_diff = q8_d_;                                        \
        if (q8_d_ > 1) {                                                                           \
            char q8_m_[320];                                                                       \
            snprintf(q8_m_, sizeof q8_m_, __VA_ARGS__);                                            \
            fail_msg("got %d, oracle %d: %s", (int)(got), (int)(want), q8_m_);                     \
        }                                                                                          \
    } while (0)

/* Prints the measured agreement and asserts that at least min_frac of the elements not on a
   tie are exact. */
static inline void q8_report(const q8_stats *st, const char *what, double min_frac) {
    double f = st->n ? (double)st->exact / (double)st->n : 1.0;
    int64_t nt = st->n - st->ties;
    double fnt = nt > 0 ? (double)st->exact_off_tie / (double)nt : 1.0;
    print_message("%-26s %8lld elements, max |diff| %d step, exact %.3f%% (ties %lld; "
                  "exact off ties %.3f%%)\n",
                  what, (long long)st->n, st->max_diff, 100.0 * f, (long long)st->ties,
                  100.0 * fnt);
    if (!(fnt >= min_frac)) fail_msg("%s: only %.4f of the elements off ties are exact", what, fnt);
}

#define q8_assert_status(st, want, err, part)                                                      \
    do {                                                                                           \
        if ((st) != (want))                                                                        \
            fail_msg("status %d (want %d): %s", (int)(st), (int)(want), (err).msg);                \
        if ((part) && !strstr((err).msg, (part)))                                                  \
            fail_msg("message \"%s\" lacks \"%s\"", (err).msg, (const char *)(part));              \
    } while (0)

#endif
