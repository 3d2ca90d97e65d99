/* Calibration observers (src/quant/observer.h): ranges against values known from the data. */
#include "common/harness.h"

#include "quant/observer.h"

#include <math.h>
#include <stdlib.h>

static mdl__observer obs;

static void test_minmax(void **state) {
    (void)state;
    mdl__observer_init(&obs);
    double lo, hi;
    assert_false(mdl__observer_range(&obs, MDL__CALIB_MINMAX, 0, &lo, &hi)); /* nothing seen */
    const float a[] = {0.5f, -2.0f, 3.0f}, b[] = {7.5f, 1.0f}, c[] = {NAN, -1.0f};
    mdl__observer_update(&obs, a, 3);
    mdl__observer_update(&obs, b, 2); /* grows the histogram */
    mdl__observer_update(&obs, c, 2);
    assert_true(mdl__observer_range(&obs, MDL__CALIB_MINMAX, 0, &lo, &hi));
    assert_true(lo == -2.0 && hi == 7.5);
    assert_int_equal(obs.count, 6);
    assert_int_equal(obs.nan_count, 1);
    uint64_t total = 0;
    for (int i = 0; i < MDL_OBS_BINS; i++) total += obs.hist[i];
    assert_int_equal(total, 6);
    /* all positive: the range still includes 0 */
    mdl__observer_init(&obs);
    const float d[] = {2.0f, 3.0f};
    mdl__observer_update(&obs, d, 2);
    assert_true(mdl__observer_range(&obs, MDL__CALIB_MINMAX, 0, &lo, &hi));
    assert_true(lo == 0.0 && hi == 3.0);
    /* infinities are refused */
    const float e[] = {INFINITY};
    mdl__observer_update(&obs, e, 1);
    assert_false(mdl__observer_range(&obs, MDL__CALIB_MINMAX, 0, &lo, &hi));
}

/* Histogram growth keeps every value in the right (merged) bin: counts below a magnitude stay
   exact at bin edges that survive the merges. */
static void test_histogram_growth(void **state) {
    (void)state;
    mdl__observer_init(&obs);
    float x[1000];
    for (int i = 0; i < 1000; i++) x[i] = (float)(i % 10); /* 0..9, 100 of each */
    mdl__observer_update(&obs, x, 1000);
    float big = 1000.0f;
    mdl__observer_update(&obs, &big, 1);
    double width = obs.hist_range / MDL_OBS_BINS;
    assert_true(obs.hist_range > 1000.0 && obs.hist_range < 2100.0);
    uint64_t below = 0;
    for (int i = 0; i < MDL_OBS_BINS && (i + 1) * width <= 10.0 + width; i++) below += obs.hist[i];
    assert_int_equal(below, 1000);
}

static void test_percentile(void **state) {
    (void)state;
    mdl__observer_init(&obs);
    enum { N = 100000 };
    float *x = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) x[i] = (float)(i + 1) / N * ((i & 1) ? 1.0f : -1.0f);
    mdl__observer_update(&obs, x, N);
    double lo, hi, width = obs.hist_range / MDL_OBS_BINS;
    assert_true(mdl__observer_range(&obs, MDL__CALIB_PERCENTILE, 99.0, &lo, &hi));
    /* |x| is uniform on (0, 1]: its 99th percentile is 0.99 */
    assert_true(fabs(hi - 0.99) <= width + 1e-9);
    assert_true(fabs(lo + 0.99) <= width + 1e-9);
    assert_true(mdl__observer_range(&obs, MDL__CALIB_PERCENTILE, 100.0, &lo, &hi));
    assert_true(fabs(hi - 1.0) < 1e-6 && fabs(lo + 1.0 - 1.0 / N) < 1e-6); /* the observed extremes */
    assert_false(mdl__observer_range(&obs, MDL__CALIB_PERCENTILE, 0.0, &lo, &hi));
    assert_false(mdl__observer_range(&obs, MDL__CALIB_PERCENTILE, 101.0, &lo, &hi));
    free(x);
}

/* Entropy: a well-spread distribution keeps (nearly) its whole range; a Gaussian with a few far
   outliers is clipped between the bulk's tail and the outliers. */
static void test_entropy(void **state) {
    (void)state;
    enum { N = 200000 };
    float *x = malloc(sizeof(float) * N);
    th_seed(11);
    for (int i = 0; i < N; i++) x[i] = th_uniform(-4.0f, 4.0f);
    mdl__observer_init(&obs);
    mdl__observer_update(&obs, x, N);
    double lo, hi;
    assert_true(mdl__observer_range(&obs, MDL__CALIB_ENTROPY, 0, &lo, &hi));
    assert_true(hi > 3.6 && hi <= 4.0);
    assert_true(lo < -3.6 && lo >= -4.0);
    /* standard normal (Box-Muller) plus 5 values at +-100 */
    for (int i = 0; i + 1 < N; i += 2) {
        double u1 = th_uniform(1e-7f, 1.0f), u2 = th_uniform(0.0f, 1.0f);
        double r = sqrt(-2.0 * log(u1));
        x[i] = (float)(r * cos(6.283185307179586 * u2));
        x[i + 1] = (float)(r * sin(6.283185307179586 * u2));
    }
    for (int i = 0; i < 5; i++) x[i * 1000] = (i & 1) ? -100.0f : 100.0f;
    mdl__observer_init(&obs);
    mdl__observer_update(&obs, x, N);
    assert_true(mdl__observer_range(&obs, MDL__CALIB_ENTROPY, 0, &lo, &hi));
    assert_true(hi > 2.5 && hi < 20.0);
    assert_true(lo < -2.5 && lo > -20.0);
    /* minmax on the same data takes the outliers */
    assert_true(mdl__observer_range(&obs, MDL__CALIB_MINMAX, 0, &lo, &hi));
    assert_true(hi == 100.0 && lo == -100.0);
    free(x);
}

/* The threshold search on a hand-made histogram: all mass in the first 64 of 1024 bins -> the
   smallest candidate (128 bins) represents it exactly (KL 0), so it is chosen. */
static void test_entropy_threshold_direct(void **state) {
    (void)state;
    uint64_t *h = calloc(1024, sizeof *h);
    for (int i = 0; i < 64; i++) h[i] = 1000 + (uint64_t)(i * 37 % 101);
    double t = mdl__entropy_threshold(h, 1024, 0.5, 128);
    assert_true(t == 0.5 * 128);
    free(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minmax),     cmocka_unit_test(test_histogram_growth),
        cmocka_unit_test(test_percentile), cmocka_unit_test(test_entropy),
        cmocka_unit_test(test_entropy_threshold_direct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
