"""The phi-accrual failure detector kernel, against both implementations.

Reference: Hayashibara, Defago, Yared, Katayama, "The phi accrual failure detector" (SRDS 2004).
The oracles below are written independently of the kernel: the normal tail through math.erfc,
a direct transcription of the logistic-approximation formula, and window statistics computed
exactly with fractions.
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
import platform
import subprocess
import sys
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels._impls import implementation_id, implementations

IMPLS = implementations("phi")
by_impl = pytest.mark.parametrize("impl", IMPLS, ids=implementation_id)

# The baseline x86-64 instruction set has no fused multiply-add, so there the compiled kernel
# performs the twin's floating-point operations exactly. Elsewhere (AArch64) a C compiler may
# contract a*b + c into one FMA, which changes the last bits of the statistics and of p; near
# p = 1 (small phi) that is many ulps of phi, hence an absolute as well as a relative tolerance.
_BIT_EXACT_PLATFORM = platform.machine().lower() in ("x86_64", "amd64")


def assert_same_phi(impl, actual: float, expected: float) -> None:
    if impl.IMPLEMENTATION == "python" or _BIT_EXACT_PLATFORM:
        assert actual == expected
    else:
        assert math.isclose(actual, expected, rel_tol=1e-12, abs_tol=1e-15), (actual, expected)


# ---- independent oracles ------------------------------------------------------------------


def logistic_phi(delta_ms: float, mean_ms: float, std_ms: float) -> float:
    """The phi formula as the task states it (logistic approximation of the normal CDF)."""
    y = (delta_ms - mean_ms) / std_ms
    e = math.exp(-y * (1.5976 + 0.070566 * y * y))
    if delta_ms > mean_ms:
        p = e / (1 + e)
    else:
        p = 1 - 1 / (1 + e)
    return -math.log10(p)


def normal_tail(y: float) -> float:
    """P(Y > y) for a standard normal Y, exact up to libm rounding."""
    return 0.5 * math.erfc(y / math.sqrt(2.0))


def expected_window(window_size: int, estimate_ms: float, intervals: list[float]) -> list[float]:
    """The intervals the window must hold after a first heartbeat and then `intervals`."""
    seeded = [estimate_ms - estimate_ms / 4, estimate_ms + estimate_ms / 4, *intervals]
    return seeded[-window_size:]


def exact_mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation, computed exactly then rounded once."""
    n = len(values)
    exact = [Fraction(v) for v in values]
    mean = sum(exact) / n
    variance = sum((v - mean) ** 2 for v in exact) / n
    return float(mean), math.sqrt(variance)


def feed(detector, start_ms: float, intervals: list[float]) -> float:
    """First heartbeat at start_ms, then one per interval; return the last heartbeat's time."""
    now = start_ms
    detector.heartbeat(now)
    for interval in intervals:
        now += interval
        detector.heartbeat(now)
    return now


# ---- known answers -----------------------------------------------------------------------


@by_impl
def test_first_heartbeat_seeds_the_window(impl):
    d = impl.PhiAccrualDetector(first_heartbeat_estimate_ms=1000.0)
    d.heartbeat(5000.0)
    assert d.sample_count == 2
    assert d.intervals_ms() == [750.0, 1250.0]
    assert d.mean_ms == 1000.0
    assert d.std_deviation_ms == 250.0
    assert d.last_heartbeat_ms == 5000.0


@by_impl
def test_phi_at_the_mean_interval_is_log10_2(impl):
    # delta == mean: y = 0, e = 1, p = 1 - 1/2
    d = impl.PhiAccrualDetector()
    d.heartbeat(0.0)
    assert d.phi(1000.0) == logistic_phi(1000.0, 1000.0, 250.0)
    assert math.isclose(d.phi(1000.0), math.log10(2.0), rel_tol=1e-15)


@by_impl
@pytest.mark.parametrize(
    ("elapsed_ms", "expected_phi"),
    [
        # window: mean 1000, std 250 (the seeds); values from the logistic formula
        (0.0, 7.963311608865193e-06),
        (500.0, 0.009998761629963108),
        (1250.0, 0.7995083208395598),
        (1500.0, 1.6428278854871123),
        (2000.0, 4.736694582705181),
        (3000.0, 21.241600212221336),
    ],
)
def test_phi_known_values(impl, elapsed_ms, expected_phi):
    d = impl.PhiAccrualDetector()
    d.heartbeat(100.0)
    assert math.isclose(d.phi(100.0 + elapsed_ms), expected_phi, rel_tol=1e-12)


@by_impl
@pytest.mark.parametrize("y", [i / 4 for i in range(-16, 41)])  # y from -4 to 10
def test_phi_matches_the_logistic_formula_exactly(impl, y):
    d = impl.PhiAccrualDetector(min_std_deviation_ms=10.0)
    last = feed(d, 0.0, [900.0, 1100.0, 1000.0, 1200.0, 800.0, 1000.0])
    mean, std = d.mean_ms, d.std_deviation_ms
    now = last + max(0.0, mean + y * std)
    delta = now - last  # the elapsed time as the detector computes it
    assert_same_phi(impl, d.phi(now), logistic_phi(delta, mean, std))


@by_impl
def test_acceptable_pause_and_min_std_enter_the_formula(impl):
    d = impl.PhiAccrualDetector(min_std_deviation_ms=400.0, acceptable_heartbeat_pause_ms=300.0)
    d.heartbeat(0.0)
    assert d.std_deviation_ms == 250.0  # raw, before the minimum is applied
    for elapsed in (0.0, 700.0, 1300.0, 2000.0, 5000.0):
        # mean 1000 + 300 pause; std max(250, 400)
        assert_same_phi(impl, d.phi(elapsed), logistic_phi(elapsed, 1300.0, 400.0))


@by_impl
def test_logistic_approximation_is_close_to_the_normal_tail(impl):
    # Bowling et al. (2009) bound the logistic approximation's CDF error by 1.4e-4 absolute.
    # In phi terms that is within 0.05 for |y| <= 3. Above y = 3, where p is itself below 1e-3,
    # the approximation is more pessimistic (larger phi) than the normal model, never less;
    # below y = -3 both phis are under 1e-3.
    d = impl.PhiAccrualDetector()
    d.heartbeat(0.0)  # mean 1000, std 250
    for i in range(-16, 41):
        y = i / 4
        phi = d.phi(1000.0 + 250.0 * y)
        p_normal = normal_tail(y)
        assert abs(10.0**-phi - p_normal) <= 1.5e-4, y
        if abs(y) <= 3:
            assert abs(phi - -math.log10(p_normal)) <= 0.05, y
        elif y > 3:
            assert phi >= -math.log10(p_normal), y
        else:
            assert phi < 1e-3 and -math.log10(p_normal) < 1e-3, y


# ---- underflow, the upper end -------------------------------------------------------------


@by_impl
def test_phi_stays_finite_and_keeps_growing_past_underflow(impl):
    d = impl.PhiAccrualDetector()
    d.heartbeat(0.0)  # mean 1000, std 250
    previous = -1.0
    # y from 10 to 1e12 in steps of x1.25: crosses p < DBL_MIN (y ~ 21) and p == 0 (y ~ 22)
    y = 10.0
    while y < 1e12:
        phi = d.phi(1000.0 + 250.0 * y)
        assert math.isfinite(phi)
        assert phi > previous, y
        previous = phi
        y *= 1.25
    # in log space: phi = y (A + B y^2) / ln 10
    y = 1e6
    assert math.isclose(
        d.phi(1000.0 + 250.0 * y), y * (1.5976 + 0.070566 * y * y) / math.log(10), rel_tol=1e-12
    )


@by_impl
def test_phi_is_capped_at_phi_max_when_the_exponent_overflows(impl):
    d = impl.PhiAccrualDetector(min_std_deviation_ms=1e-300, first_heartbeat_estimate_ms=1e-300)
    d.heartbeat(0.0)
    assert d.phi(impl.TIME_MS_MAX) == impl.PHI_MAX == sys.float_info.max
    assert not d.is_available(impl.TIME_MS_MAX, threshold=1e308)


@by_impl
def test_phi_is_zero_not_negative_zero_long_before_the_mean(impl):
    # window [1e6, 1e6]: std 0, clamped to 125000; at delta 0, y = -8 and p rounds to exactly 1
    d = impl.PhiAccrualDetector(window_size=2, min_std_deviation_ms=125000.0)
    last = feed(d, 0.0, [1e6, 1e6])
    assert d.std_deviation_ms == 0.0
    phi = d.phi(last)
    assert phi == 0.0
    assert math.copysign(1.0, phi) == 1.0
    bare = logistic_phi(0.0, 1e6, 125000.0)
    assert bare == 0.0 and math.copysign(1.0, bare) == -1.0  # the bare formula gives -0.0


# ---- behaviour -----------------------------------------------------------------------------


@by_impl
def test_phi_is_zero_before_the_first_heartbeat(impl):
    d = impl.PhiAccrualDetector()
    assert d.phi(0.0) == 0.0
    assert d.phi(1e12) == 0.0
    assert d.is_available(1e12)
    assert d.sample_count == 0
    assert d.mean_ms == 0.0
    assert d.std_deviation_ms == 0.0
    assert d.last_heartbeat_ms is None
    assert d.intervals_ms() == []


@by_impl
def test_is_available_flips_at_the_threshold(impl):
    d = impl.PhiAccrualDetector()
    d.heartbeat(0.0)
    # phi(1500) ~= 1.6428: the comparison is strict, phi < threshold
    phi = d.phi(1500.0)
    assert d.is_available(1500.0, threshold=math.nextafter(phi, math.inf))
    assert not d.is_available(1500.0, threshold=phi)
    assert not d.is_available(1500.0, threshold=1.0)
    # with the default threshold 8: find the crossing and check both sides
    lo, hi = 0.0, 10_000.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if d.is_available(mid):
            lo = mid
        else:
            hi = mid
    assert d.phi(lo) < 8.0 <= d.phi(hi)
    assert d.is_available(lo) and not d.is_available(hi)
    assert 2000.0 < lo < 2500.0  # phi(2000) ~ 4.7, phi(2500) ~ 11.3


@by_impl
def test_window_evicts_the_oldest_interval(impl):
    d = impl.PhiAccrualDetector(window_size=3)
    feed(d, 0.0, [10.0, 20.0, 30.0])
    assert d.intervals_ms() == [10.0, 20.0, 30.0]
    feed_more = [40.0, 50.0]
    now = d.last_heartbeat_ms
    for interval in feed_more:
        now += interval
        d.heartbeat(now)
    assert d.sample_count == 3
    assert d.intervals_ms() == [30.0, 40.0, 50.0]
    assert d.mean_ms == 40.0
    assert math.isclose(d.std_deviation_ms, math.sqrt(200.0 / 3.0), rel_tol=1e-12)


@by_impl
def test_mean_after_many_heartbeats_reflects_only_the_last_window(impl):
    window = 50
    d = impl.PhiAccrualDetector(window_size=window)
    intervals = [100.0] * 1000 + [float(i % 7 + 1) * 10 for i in range(window)]
    feed(d, 0.0, intervals)
    assert d.sample_count == window
    assert d.intervals_ms() == intervals[-window:]
    mean, std = exact_mean_std(intervals[-window:])
    assert math.isclose(d.mean_ms, mean, rel_tol=1e-12)
    assert math.isclose(d.std_deviation_ms, std, rel_tol=1e-9)


@by_impl
def test_window_of_two_holds_the_two_latest_intervals(impl):
    d = impl.PhiAccrualDetector(window_size=2)
    d.heartbeat(0.0)
    assert d.intervals_ms() == [750.0, 1250.0]
    d.heartbeat(100.0)
    assert d.intervals_ms() == [1250.0, 100.0]
    d.heartbeat(300.0)
    assert d.intervals_ms() == [100.0, 200.0]
    assert d.mean_ms == 150.0
    assert d.std_deviation_ms == 50.0


@by_impl
def test_reset_forgets_everything(impl):
    d = impl.PhiAccrualDetector(window_size=4)
    feed(d, 1000.0, [10.0, 20.0, 30.0, 40.0, 50.0])
    d.reset()
    assert d.sample_count == 0
    assert d.last_heartbeat_ms is None
    assert d.phi(0.0) == 0.0  # any time is acceptable again, even before the old heartbeats
    fresh = impl.PhiAccrualDetector(window_size=4)
    for detector in (d, fresh):
        feed(detector, 0.0, [500.0, 700.0])
    assert d.intervals_ms() == fresh.intervals_ms()
    assert d.mean_ms == fresh.mean_ms
    assert d.std_deviation_ms == fresh.std_deviation_ms
    assert d.phi(1500.0) == fresh.phi(1500.0)


@by_impl
def test_equal_timestamps_are_allowed(impl):
    d = impl.PhiAccrualDetector()
    d.heartbeat(7.0)
    d.heartbeat(7.0)
    assert d.intervals_ms() == [750.0, 1250.0, 0.0]
    assert d.phi(7.0) >= 0.0


@by_impl
def test_non_monotonic_now_raises(impl):
    d = impl.PhiAccrualDetector()
    d.heartbeat(1000.0)
    with pytest.raises(ValueError, match="now_ms"):
        d.heartbeat(999.0)
    with pytest.raises(ValueError, match="now_ms"):
        d.phi(999.0)
    with pytest.raises(ValueError, match="now_ms"):
        d.is_available(999.0)
    # the failed calls changed nothing
    assert d.last_heartbeat_ms == 1000.0
    assert d.sample_count == 2


@by_impl
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 2.0**53 * 1.5, -(2.0**54)])
def test_now_out_of_range_raises(impl, bad):
    d = impl.PhiAccrualDetector()
    for call in (d.heartbeat, d.phi, d.is_available):
        with pytest.raises(ValueError, match="now_ms"):
            call(bad)
    d.heartbeat(-(2.0**53))
    d.heartbeat(2.0**53)
    assert math.isfinite(d.phi(2.0**53))
    assert d.intervals_ms()[-1] == 2.0**54


@by_impl
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"window_size": 1}, "window_size"),
        ({"window_size": 0}, "window_size"),
        ({"window_size": -5}, "window_size"),
        ({"window_size": 1_000_001}, "window_size"),
        ({"window_size": 10**30}, "window_size"),
        ({"min_std_deviation_ms": 0.0}, "min_std_deviation_ms"),
        ({"min_std_deviation_ms": -1.0}, "min_std_deviation_ms"),
        ({"min_std_deviation_ms": math.nan}, "min_std_deviation_ms"),
        ({"min_std_deviation_ms": math.inf}, "min_std_deviation_ms"),
        ({"acceptable_heartbeat_pause_ms": -0.5}, "acceptable_heartbeat_pause_ms"),
        ({"acceptable_heartbeat_pause_ms": math.nan}, "acceptable_heartbeat_pause_ms"),
        ({"acceptable_heartbeat_pause_ms": 2.0**60}, "acceptable_heartbeat_pause_ms"),
        ({"first_heartbeat_estimate_ms": 0.0}, "first_heartbeat_estimate_ms"),
        ({"first_heartbeat_estimate_ms": -100.0}, "first_heartbeat_estimate_ms"),
        ({"first_heartbeat_estimate_ms": math.inf}, "first_heartbeat_estimate_ms"),
    ],
)
def test_invalid_parameters_raise_value_error_naming_them(impl, kwargs, name):
    with pytest.raises(ValueError, match=name):
        impl.PhiAccrualDetector(**kwargs)


@by_impl
def test_parameter_bounds_are_inclusive(impl):
    d = impl.PhiAccrualDetector(
        window_size=2,
        min_std_deviation_ms=5e-324,
        acceptable_heartbeat_pause_ms=0.0,
        first_heartbeat_estimate_ms=2.0**53,
    )
    assert d.window_size == 2
    d = impl.PhiAccrualDetector(window_size=impl.WINDOW_SIZE_MAX, min_std_deviation_ms=2.0**53)
    assert d.window_size == 1_000_000
    assert d.min_std_deviation_ms == 2.0**53


@by_impl
def test_threshold_must_be_positive(impl):
    d = impl.PhiAccrualDetector()
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="threshold"):
            d.is_available(0.0, threshold=bad)
    assert d.is_available(0.0, threshold=math.inf)


@by_impl
def test_argument_types(impl):
    with pytest.raises(TypeError):
        impl.PhiAccrualDetector(window_size=10.0)
    with pytest.raises(TypeError):
        impl.PhiAccrualDetector(min_std_deviation_ms="100")
    d = impl.PhiAccrualDetector(window_size=10, min_std_deviation_ms=50)  # int accepted
    assert d.min_std_deviation_ms == 50.0 and type(d.min_std_deviation_ms) is float
    with pytest.raises(TypeError):
        d.heartbeat("0")
    with pytest.raises(TypeError):
        d.heartbeat(None)
    d.heartbeat(10)
    assert d.last_heartbeat_ms == 10.0 and type(d.last_heartbeat_ms) is float
    assert type(d.phi(20)) is float
    assert type(d.is_available(20)) is bool
    assert type(d.sample_count) is int and type(d.window_size) is int


@by_impl
def test_properties_are_read_only_and_the_object_is_not_picklable(impl):
    d = impl.PhiAccrualDetector()
    with pytest.raises(AttributeError):
        d.window_size = 5
    with pytest.raises(AttributeError):
        d.mean_ms = 5.0
    with pytest.raises(TypeError):
        pickle.dumps(d)


@by_impl
def test_defaults_and_repr(impl):
    d = impl.PhiAccrualDetector()
    assert (
        d.window_size,
        d.min_std_deviation_ms,
        d.acceptable_heartbeat_pause_ms,
        d.first_heartbeat_estimate_ms,
    ) == (1000, 100.0, 0.0, 1000.0)
    assert repr(d) == (
        "PhiAccrualDetector(window_size=1000, min_std_deviation_ms=100.0, "
        "acceptable_heartbeat_pause_ms=0.0, first_heartbeat_estimate_ms=1000.0, "
        "sample_count=0, last_heartbeat_ms=None)"
    )


@by_impl
def test_init_again_starts_over(impl):
    d = impl.PhiAccrualDetector(window_size=3)
    feed(d, 0.0, [1.0, 2.0, 3.0])
    d.__init__(window_size=5, first_heartbeat_estimate_ms=40.0)
    assert d.window_size == 5 and d.sample_count == 0 and d.last_heartbeat_ms is None
    d.heartbeat(0.0)
    assert d.intervals_ms() == [30.0, 50.0]


@pytest.mark.skipif(len(IMPLS) < 2, reason="PYRAFT_NO_EXTENSIONS: only the twin is loaded")
def test_compiled_detector_without_init_is_safe():
    # __new__ alone leaves the ring unallocated: no call may touch it
    cls = IMPLS[0].PhiAccrualDetector
    d = cls.__new__(cls)
    assert d.phi(5.0) == 0.0
    assert d.sample_count == 0 and d.intervals_ms() == []
    d.reset()
    with pytest.raises(TypeError, match="__init__"):
        d.heartbeat(5.0)
    assert d.last_heartbeat_ms is None


# ---- numerical stability of the running sums -----------------------------------------------


@by_impl
def test_large_nearly_equal_intervals_keep_an_accurate_deviation(impl):
    # Intervals of 1e9 ms +- 0.5: without the shift and the periodic rebuild, sum_sq/n - mean^2
    # would cancel to noise of order eps * 1e18 = 200 ms^2 instead of the true 0.25 ms^2 or so.
    window = 64
    d = impl.PhiAccrualDetector(window_size=window)
    intervals = [1e9 + (0.5 if i % 3 == 0 else -0.5 if i % 3 == 1 else 0.0) for i in range(500)]
    now = feed(d, 0.0, [])
    for i, interval in enumerate(intervals):
        now += interval
        d.heartbeat(now)
        if i >= 2 * window:  # by then the sums were rebuilt around the observed mean
            mean, std = exact_mean_std(intervals[i - window + 1 : i + 1])
            assert math.isclose(d.mean_ms, mean, rel_tol=1e-14)
            assert math.isclose(d.std_deviation_ms, std, rel_tol=1e-6)


@by_impl
@settings(max_examples=60, deadline=None)
@given(
    window=st.integers(2, 12),
    exponents=st.lists(st.integers(-3, 9), min_size=1, max_size=300),
    mantissas=st.lists(st.floats(1.0, 10.0), min_size=300, max_size=300),
)
def test_statistics_track_the_exact_window(impl, window, exponents, mantissas):
    # intervals spanning twelve orders of magnitude: removal residue must not linger
    intervals = [m * 10.0**x for m, x in zip(mantissas, exponents, strict=False)]
    d = impl.PhiAccrualDetector(window_size=window)
    now = feed(d, 0.0, [])
    history = expected_window(10**9, 1000.0, [])
    for i, interval in enumerate(intervals):
        previous, now = now, now + interval
        d.heartbeat(now)
        history.append(now - previous)  # the interval as the detector sees it
        held = history[-window:]
        assert d.intervals_ms() == held
        mean, std = exact_mean_std(held)
        # worst case error: cancellation against the largest value seen within two windows
        scale = max(abs(v) for v in history[-2 * window - 2 :])
        assert abs(d.mean_ms - mean) <= 1e-12 * scale, i
        assert abs(d.std_deviation_ms - std) <= 1e-7 * scale, i


# ---- properties over random heartbeat sequences --------------------------------------------

detector_params = st.fixed_dictionaries(
    {
        "window_size": st.integers(2, 40),
        "min_std_deviation_ms": st.floats(0.01, 1000.0),
        "acceptable_heartbeat_pause_ms": st.floats(0.0, 5000.0),
        "first_heartbeat_estimate_ms": st.floats(0.1, 1e5),
    }
)
interval_lists = st.lists(st.floats(0.0, 1e5), max_size=120)
start_times = st.floats(-1e12, 1e12)


@pytest.mark.skipif(len(IMPLS) < 2, reason="PYRAFT_NO_EXTENSIONS: only the twin is loaded")
@settings(max_examples=300, deadline=None)
@given(
    params=detector_params,
    start=start_times,
    intervals=interval_lists,
    offsets=st.lists(st.floats(0.0, 1e6), min_size=1, max_size=8),
)
def test_compiled_and_twin_agree(params, start, intervals, offsets):
    twin_phi_value = IMPLS[1]._phi_value
    compiled, twin = (impl.PhiAccrualDetector(**params) for impl in IMPLS)
    for detector in (compiled, twin):
        assert detector.phi(start) == 0.0
    last = [feed(detector, start, intervals) for detector in (compiled, twin)]
    assert last[0] == last[1] == compiled.last_heartbeat_ms == twin.last_heartbeat_ms
    assert compiled.sample_count == twin.sample_count
    assert compiled.intervals_ms() == twin.intervals_ms()
    assert math.isclose(compiled.mean_ms, twin.mean_ms, rel_tol=1e-9)
    # rounding error scales with the intervals and with the shift the sums are taken from (the
    # estimate, or an earlier window's mean), so with everything seen since the first heartbeat
    scale = max([1.25 * params["first_heartbeat_estimate_ms"], *intervals])
    assert math.isclose(
        compiled.std_deviation_ms, twin.std_deviation_ms, rel_tol=1e-9, abs_tol=1e-7 * scale
    )
    for offset in offsets:
        now = last[0] + offset
        a, b = compiled.phi(now), twin.phi(now)
        if _BIT_EXACT_PLATFORM:
            assert a == b, (now, a, b)
            assert compiled.is_available(now) == twin.is_available(now)
        else:
            # With FMA contraction the statistics differ by their rounding error (bounded
            # above), which cancellation can make large relative to a tiny spread, and phi
            # inherits it. Check the rest of the computation on the compiled statistics.
            std = max(compiled.std_deviation_ms, params["min_std_deviation_ms"])
            mean = compiled.mean_ms + params["acceptable_heartbeat_pause_ms"]
            expected = twin_phi_value(now - last[0], mean, std)
            assert math.isclose(a, expected, rel_tol=1e-9, abs_tol=1e-12), (now, a, expected)


@by_impl
@settings(max_examples=100, deadline=None)
@given(params=detector_params, start=start_times, intervals=interval_lists)
def test_statistics_match_the_exact_window(impl, params, start, intervals):
    d = impl.PhiAccrualDetector(**params)
    feed(d, start, intervals)
    # intervals are differences of rounded timestamps: recompute them as the detector saw them
    times = [start]
    for interval in intervals:
        times.append(times[-1] + interval)
    observed = [b - a for a, b in itertools.pairwise(times)]
    held = expected_window(params["window_size"], params["first_heartbeat_estimate_ms"], observed)
    assert d.intervals_ms() == held
    assert d.sample_count == len(held)
    mean, std = exact_mean_std(held)
    scale = max([1.25 * params["first_heartbeat_estimate_ms"], *observed])  # see above
    assert abs(d.mean_ms - mean) <= 1e-12 * scale
    assert abs(d.std_deviation_ms - std) <= 1e-7 * scale


@by_impl
@settings(max_examples=150, deadline=None)
@given(
    params=detector_params,
    start=start_times,
    intervals=interval_lists,
    waits=st.lists(st.floats(0.0, 1e7), min_size=2, max_size=10),
)
def test_phi_grows_with_elapsed_time(impl, params, start, intervals, waits):
    d = impl.PhiAccrualDetector(**params)
    last = feed(d, start, intervals)
    previous = 0.0
    for wait in sorted(waits):
        phi = d.phi(last + wait)
        assert math.isfinite(phi) and phi >= 0.0
        # non-decreasing, up to the last-bit rounding of the division e / (1 + e)
        assert phi >= previous - 4 * math.ulp(previous), (wait, phi, previous)
        previous = phi


@by_impl
@settings(max_examples=100, deadline=None)
@given(params=detector_params, start=start_times, intervals=interval_lists)
def test_phi_against_the_formula_on_random_windows(impl, params, start, intervals):
    d = impl.PhiAccrualDetector(**params)
    last = feed(d, start, intervals)
    mean = d.mean_ms + params["acceptable_heartbeat_pause_ms"]
    std = max(d.std_deviation_ms, params["min_std_deviation_ms"])
    for y in (-2.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0, 8.0):
        now = last + max(0.0, mean + y * std)
        delta = now - last  # the elapsed time as the detector computes it
        assert_same_phi(impl, d.phi(now), logistic_phi(delta, mean, std))


# ---- selection of the implementation ------------------------------------------------------


def _loaded_implementation(no_extensions: str | None) -> str:
    env = dict(os.environ)
    env.pop("PYRAFT_NO_EXTENSIONS", None)
    if no_extensions is not None:
        env["PYRAFT_NO_EXTENSIONS"] = no_extensions
    code = "import raftcore.phi as m; print(m.IMPLEMENTATION, m.PhiAccrualDetector.__module__)"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_the_facade_loads_the_compiled_kernel_unless_told_otherwise():
    import raftcore.phi

    if os.environ.get("PYRAFT_NO_EXTENSIONS", "") not in ("", "0"):
        assert raftcore.phi.IMPLEMENTATION == "python"
    else:
        assert raftcore.phi.IMPLEMENTATION == "compiled"
        assert raftcore.phi.PhiAccrualDetector is IMPLS[0].PhiAccrualDetector
    assert _loaded_implementation(None) == "compiled raftcore._phi"
    assert _loaded_implementation("0") == "compiled raftcore._phi"
    assert _loaded_implementation("1") == "python raftcore._phi_py"


@pytest.mark.skipif(len(IMPLS) < 2, reason="PYRAFT_NO_EXTENSIONS: only the twin is loaded")
def test_both_implementations_have_the_same_api_and_messages():
    compiled, twin = IMPLS
    for name in ("WINDOW_SIZE_MAX", "TIME_MS_MAX", "PHI_MAX"):
        assert getattr(compiled, name) == getattr(twin, name)
    public = {n for n in dir(twin.PhiAccrualDetector) if not n.startswith("_")}
    assert public <= set(dir(compiled.PhiAccrualDetector))
    assert _error_messages(compiled) == _error_messages(twin)


def _error_messages(impl) -> list[str]:
    d = impl.PhiAccrualDetector()
    d.heartbeat(10.0)
    calls = [
        lambda: impl.PhiAccrualDetector(window_size=1),
        lambda: impl.PhiAccrualDetector(min_std_deviation_ms=0.0),
        lambda: impl.PhiAccrualDetector(acceptable_heartbeat_pause_ms=-1.0),
        lambda: impl.PhiAccrualDetector(first_heartbeat_estimate_ms=math.nan),
        lambda: d.heartbeat(5.0),
        lambda: d.phi(math.inf),
        lambda: d.is_available(20.0, threshold=0.0),
    ]
    found = []
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        found.append(str(info.value))
    return found
