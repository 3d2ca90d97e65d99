/*
 * Calibration observers (converter only): they watch the float values a tensor takes while the
 * float model runs on calibration data and choose the real range [lo, hi] its int8 quantization
 * should cover.
 *
 *   minmax      the observed minimum and maximum.
 *   percentile  clips the magnitude at a percentile (default 99.99) of |x|: a few outliers no
 *               longer stretch the scale.
 *   entropy     the magnitude threshold whose 128-level quantization of the |x| histogram loses
 *               the least information (smallest KL divergence from the clipped reference
 *               distribution): TensorRT's calibration, the "entropy" of ONNX Runtime.
 *
 * Values are counted in a histogram of |x| over [0, R) with MDL_OBS_BINS bins; R starts at the
 * first batch's largest magnitude and doubles (adjacent bins merge) whenever a larger one arrives,
 * so one pass over the data suffices.  The range always contains 0 (zero must be exact in int8).
 * NaN values are counted (nan_count) and otherwise ignored; callers refuse data with NaN.
 */
#ifndef MDL_QUANT_OBSERVER_H
#define MDL_QUANT_OBSERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MDL_OBS_BINS 2048

typedef enum mdl__calib_method {
    MDL__CALIB_MINMAX = 0,
    MDL__CALIB_PERCENTILE,
    MDL__CALIB_ENTROPY,
    MDL__CALIB_COUNT
} mdl__calib_method;

typedef struct mdl__observer {
    double min, max;    /* observed extremes (finite values) */
    uint64_t count;     /* finite values seen */
    uint64_t nan_count; /* NaN values seen */
    uint64_t inf_count; /* +-Inf values seen (they set min/max to +-Inf) */
    double hist_range;  /* R: the histogram covers |x| in [0, R); 0 before the first value */
    uint64_t hist[MDL_OBS_BINS];
} mdl__observer;

void mdl__observer_init(mdl__observer *o);

/* Adds n values. */
void mdl__observer_update(mdl__observer *o, const float *x, size_t n);

/* The real range to quantize for method (percentile in (0, 100], used by PERCENTILE only).
   lo <= 0 <= hi always; both 0 when nothing was observed.  False when nothing finite was
   observed or a value was infinite. */
bool mdl__observer_range(const mdl__observer *o, mdl__calib_method method, double percentile,
                         double *lo, double *hi);

/* The entropy method's threshold alone: the magnitude T (in (0, R]) chosen over a histogram of
   nbins bins of width `width` with `levels` quantization levels.  Exposed for tests. */
double mdl__entropy_threshold(const uint64_t *hist, int nbins, double width, int levels);

#endif
