/*
 * Phi-accrual failure detector: the sliding window of heartbeat inter-arrival intervals and
 * the phi value computed from it.
 *
 * Reference: N. Hayashibara, X. Defago, R. Yared, T. Katayama, "The phi accrual failure
 * detector", SRDS 2004. Phi is -log10 of the probability that a heartbeat arrives later than
 * `delta` ms after the previous one, the inter-arrival times being modelled as a normal
 * distribution with the window's mean and standard deviation. The normal tail is evaluated
 * with a logistic approximation of the normal CDF (S. R. Bowling et al., "A logistic
 * approximation to the cumulative normal distribution", JIEM 2009; absolute error of the CDF
 * below 1.4e-4), which is cheap and never needs erfc.
 *
 * Numerics. The window keeps a running sum and sum of squares of (interval - shift_ms), where
 * shift_ms is a constant close to the mean: subtracting it before squaring keeps the variance
 * formula sum_sq/n - (sum/n)^2 from cancelling catastrophically when the intervals are large
 * and nearly equal. Removing an interval from a running sum leaves rounding residue behind,
 * so after every `capacity` pushes (once the window is full: every `capacity` replacements)
 * both sums are rebuilt from the ring and re-centred on the current mean: O(1) amortised per
 * interval, and rounding error never accumulates beyond one window's worth of updates. The
 * first rebuild, when the window first fills, also replaces the initial shift (the first
 * heartbeat estimate) by the observed mean. A variance made slightly negative by rounding is
 * clamped to 0.
 *
 * The pure-Python twin raftcore/_phi_py.py performs the same operations in the same order,
 * so on IEEE-754 hardware without fused multiply-add contraction the two agree bit for bit.
 * Keep them in step: a change here is a change there.
 */
#ifndef RC_PHI_H
#define RC_PHI_H

#include <float.h>
#include <math.h>
#include <stddef.h>

/* ln(10), written out so that C and the Python twin divide by the same double. */
#define RC_PHI_LN10 2.302585092994046
/* Coefficients of the logistic approximation: Phi(y) ~= 1 / (1 + exp(-y (A + B y^2))). */
#define RC_PHI_LOGISTIC_A 1.5976
#define RC_PHI_LOGISTIC_B 0.070566

typedef struct {
    double *intervals_ms;   /* ring storage of `capacity` slots, owned by the caller (not freed here) */
    size_t capacity;        /* the window size, >= 2 */
    size_t count;           /* intervals held: 0 <= count <= capacity */
    size_t next;            /* slot the next interval is written to: 0 <= next < capacity;
                               while count < capacity, next == count */
    size_t since_rebuild;   /* intervals pushed since the sums were rebuilt: < capacity */
    double shift_ms;        /* constant subtracted from every interval before accumulating */
    double sum_ms;          /* sum over the held intervals of (interval - shift_ms) */
    double sum_squares_ms2; /* sum over the held intervals of (interval - shift_ms)^2 */
} rc_phi_window;

/* Forget every interval; the sums will be taken relative to `shift_ms`. */
static inline void rc_phi_window_clear(rc_phi_window *w, double shift_ms) {
    w->count = 0;
    w->next = 0;
    w->since_rebuild = 0;
    w->shift_ms = shift_ms;
    w->sum_ms = 0.0;
    w->sum_squares_ms2 = 0.0;
}

/* Attach storage of `capacity` doubles (capacity >= 2) and clear. */
static inline void rc_phi_window_init(rc_phi_window *w, double *storage, size_t capacity,
                                      double shift_ms) {
    w->intervals_ms = storage;
    w->capacity = capacity;
    rc_phi_window_clear(w, shift_ms);
}

/* Mean interval; 0.0 for an empty window. */
static inline double rc_phi_window_mean(const rc_phi_window *w) {
    if (w->count == 0) return 0.0;
    return w->shift_ms + w->sum_ms / (double)w->count;
}

/* Population standard deviation (divides by n); 0.0 for an empty window. */
static inline double rc_phi_window_std(const rc_phi_window *w) {
    double n, m, variance;
    if (w->count == 0) return 0.0;
    n = (double)w->count;
    m = w->sum_ms / n;
    variance = w->sum_squares_ms2 / n - m * m;
    return variance > 0.0 ? sqrt(variance) : 0.0;
}

/* Rebuild both sums from the ring, re-centred on the current mean. Requires count > 0.
 * Slots are visited in storage order, 0 .. count-1 (the twin does the same). */
static void rc_phi_window_rebuild(rc_phi_window *w) {
    double shift_ms = rc_phi_window_mean(w);
    double sum_ms = 0.0, sum_squares_ms2 = 0.0, d;
    size_t i;
    for (i = 0; i < w->count; i++) {
        d = w->intervals_ms[i] - shift_ms;
        sum_ms += d;
        sum_squares_ms2 += d * d;
    }
    w->shift_ms = shift_ms;
    w->sum_ms = sum_ms;
    w->sum_squares_ms2 = sum_squares_ms2;
    w->since_rebuild = 0;
}

/* Append an interval, evicting the oldest one when the window is full. */
static inline void rc_phi_window_push(rc_phi_window *w, double interval_ms) {
    double d = interval_ms - w->shift_ms;
    double old;
    size_t slot = w->next;
    if (w->count < w->capacity) {
        w->intervals_ms[slot] = interval_ms;
        w->count++;
        w->sum_ms += d;
        w->sum_squares_ms2 += d * d;
    } else {
        old = w->intervals_ms[slot] - w->shift_ms;
        w->intervals_ms[slot] = interval_ms;
        w->sum_ms -= old;
        w->sum_ms += d;
        w->sum_squares_ms2 -= old * old;
        w->sum_squares_ms2 += d * d;
    }
    w->next = slot + 1 == w->capacity ? 0 : slot + 1;
    if (++w->since_rebuild == w->capacity) rc_phi_window_rebuild(w);
}

/*
 * Phi for a heartbeat `delta_ms` overdue-or-not, given the expected interval `mean_ms` and a
 * standard deviation `std_ms` > 0 (the caller applies the minimum and the acceptable pause).
 *
 * y = (delta - mean) / std is the standardised delay and p the approximated probability of a
 * later arrival, P(X > delta) = 1 - Phi(y). With e = exp(-y (A + B y^2)):
 *   delta > mean:  p = e / (1 + e)        (small p, computed without cancellation)
 *   otherwise:     p = 1 - 1 / (1 + e)    (p >= 1/2)
 * and phi = -log10(p). "+ 0.0" turns the -0.0 of p == 1 into +0.0.
 *
 * Underflow: once p drops below DBL_MIN (subnormal or zero, from y of about 21 on), the
 * direct formula loses precision and then gives -log10(0) = inf. There, -log10(p) is
 * evaluated in log space instead: -ln(p) = z + ln(1 + e) with z = y (A + B y^2), and
 * ln(1 + e) == 0 at this magnitude, so phi = z / ln(10). The result is finite and keeps
 * growing with delta; only an overflowing z (y above ~1e102) is capped, at DBL_MAX.
 * Phi is therefore always a finite number in [0, DBL_MAX].
 */
static inline double rc_phi_value(double delta_ms, double mean_ms, double std_ms) {
    double y = (delta_ms - mean_ms) / std_ms;
    double z = y * (RC_PHI_LOGISTIC_A + RC_PHI_LOGISTIC_B * y * y);
    double e = exp(-z);
    double p, phi;
    if (delta_ms > mean_ms) {
        p = e / (1.0 + e);
        if (p < DBL_MIN) {
            phi = z / RC_PHI_LN10;
            return phi < DBL_MAX ? phi : DBL_MAX;
        }
    } else {
        p = 1.0 - 1.0 / (1.0 + e);
    }
    return -log10(p) + 0.0;
}

#endif /* RC_PHI_H */
