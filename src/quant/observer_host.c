/* Calibration observers (see observer.h). */
#include "observer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mdl__observer_init(mdl__observer *o) {
    memset(o, 0, sizeof *o);
    o->min = INFINITY;
    o->max = -INFINITY;
}

/* Doubles the histogram's range: bin pairs merge into the lower half. */
static void grow(mdl__observer *o) {
    for (int i = 0; i < MDL_OBS_BINS / 2; i++) o->hist[i] = o->hist[2 * i] + o->hist[2 * i + 1];
    memset(o->hist + MDL_OBS_BINS / 2, 0, sizeof(uint64_t) * (MDL_OBS_BINS / 2));
    o->hist_range *= 2.0;
}

void mdl__observer_update(mdl__observer *o, const float *x, size_t n) {
    double bmax = 0.0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (isnan(v)) {
            o->nan_count++;
            continue;
        }
        if (isinf(v)) o->inf_count++;
        if (v < o->min) o->min = v;
        if (v > o->max) o->max = v;
        if (isfinite(v) && fabs(v) > bmax) bmax = fabs(v);
    }
    if (o->hist_range == 0.0 && bmax > 0.0) {
        /* just above the first batch's largest magnitude, so it lands in the last bin */
        o->hist_range = bmax * (1.0 + 1.0 / MDL_OBS_BINS);
    }
    while (o->hist_range > 0.0 && bmax >= o->hist_range) grow(o);
    const double inv = o->hist_range > 0.0 ? MDL_OBS_BINS / o->hist_range : 0.0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v)) continue;
        o->count++;
        long b = (long)(fabs(v) * inv);
        if (b >= MDL_OBS_BINS) b = MDL_OBS_BINS - 1;
        o->hist[b]++;
    }
}

/* Adds eps to empty bins and takes the same total from the others (TensorRT / ONNX Runtime's
   smooth_distribution), so that KL stays finite; false when every bin is empty. */
static bool smooth(double *h, int n) {
    const double eps = 1e-4;
    int zeros = 0;
    for (int i = 0; i < n; i++) zeros += h[i] == 0.0;
    if (zeros == n) return false;
    double eps1 = eps * zeros / (n - zeros);
    for (int i = 0; i < n; i++) h[i] += h[i] == 0.0 ? eps : -eps1;
    return true;
}

/* KL(P || Q) of two unnormalized distributions over n bins. */
static double kl(const double *p, const double *q, int n) {
    double sp = 0.0, sq = 0.0, d = 0.0;
    for (int i = 0; i < n; i++) {
        sp += p[i];
        sq += q[i];
    }
    for (int i = 0; i < n; i++) {
        if (p[i] <= 0.0) continue;
        double pi = p[i] / sp, qi = q[i] / sq;
        if (qi <= 0.0) return INFINITY;
        d += pi * log(pi / qi);
    }
    return d;
}

double mdl__entropy_threshold(const uint64_t *hist, int nbins, double width, int levels) {
    double *p = malloc(sizeof(double) * (size_t)nbins);
    double *q = malloc(sizeof(double) * (size_t)nbins);
    if (!p || !q || nbins < levels) {
        free(p);
        free(q);
        return width * nbins;
    }
    double best = INFINITY;
    int best_i = nbins;
    for (int i = levels; i <= nbins; i++) {
        /* reference P: the first i bins, the mass beyond folded into the last kept bin */
        double outliers = 0.0;
        for (int j = i; j < nbins; j++) outliers += (double)hist[j];
        for (int j = 0; j < i; j++) p[j] = (double)hist[j];
        p[i - 1] += outliers;
        /* candidate Q: the i bins (without the outliers) merged into `levels` groups of
           i / levels bins (the last group takes the remainder), each group's mass spread evenly
           over the bins where P is nonzero */
        const int merged = i / levels;
        for (int g = 0; g < levels; g++) {
            int a = g * merged, b = g == levels - 1 ? i : a + merged;
            double mass = 0.0;
            int nz = 0;
            for (int j = a; j < b; j++) {
                mass += (double)hist[j];
                nz += p[j] != 0.0;
            }
            for (int j = a; j < b; j++) q[j] = p[j] != 0.0 && nz ? mass / nz : 0.0;
        }
        if (!smooth(p, i) || !smooth(q, i)) continue;
        double d = kl(p, q, i);
        if (d < best) {
            best = d;
            best_i = i;
        }
    }
    free(p);
    free(q);
    return width * best_i;
}

bool mdl__observer_range(const mdl__observer *o, mdl__calib_method method, double percentile,
                         double *lo, double *hi) {
    *lo = *hi = 0.0;
    if (o->count == 0 || o->inf_count) return false;
    double mn = o->min < 0.0 ? o->min : 0.0, mx = o->max > 0.0 ? o->max : 0.0;
    double width = o->hist_range / MDL_OBS_BINS, t = INFINITY;
    if (method == MDL__CALIB_PERCENTILE && o->hist_range > 0.0) {
        if (!(percentile > 0.0 && percentile <= 100.0)) return false;
        double want = (double)o->count * percentile / 100.0, run = 0.0;
        int i = 0;
        for (; i < MDL_OBS_BINS; i++) {
            run += (double)o->hist[i];
            if (run >= want) break;
        }
        t = width * (i + 1); /* upper edge of the bin where the percentile falls */
    } else if (method == MDL__CALIB_ENTROPY && o->hist_range > 0.0) {
        t = mdl__entropy_threshold(o->hist, MDL_OBS_BINS, width, 128);
    }
    *lo = mn < -t ? -t : mn;
    *hi = mx > t ? t : mx;
    return true;
}
