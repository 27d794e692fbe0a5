"""Pure-Python twin of ``raftcore._phi``: same API, results and exceptions; the test oracle.

Every arithmetic step mirrors ``include/rc_phi.h`` operation for operation and in the same
order, so that the two agree bit for bit on IEEE-754 hardware (C compilers that contract
``a * b + c`` into fused multiply-adds, as on AArch64, can differ in the last bits).
"""

from __future__ import annotations

import math
import operator
import sys

__all__ = [
    "IMPLEMENTATION",
    "PHI_MAX",
    "TIME_MS_MAX",
    "WINDOW_SIZE_MAX",
    "PhiAccrualDetector",
]

IMPLEMENTATION = "python"

# Largest window accepted.
WINDOW_SIZE_MAX = 1_000_000
# Bound on |now_ms| and on every duration parameter, 2**53 ms (about 285,000 years).
TIME_MS_MAX = 9007199254740992.0
# Upper bound of phi(): phi is always finite.
PHI_MAX = sys.float_info.max

_DBL_MIN = sys.float_info.min
_LN10 = 2.302585092994046  # the same double as RC_PHI_LN10
_LOGISTIC_A = 1.5976
_LOGISTIC_B = 0.070566

_exp = math.exp
_log10 = math.log10
_sqrt = math.sqrt
_inf = math.inf
# ldexp(x, 0) == x, and its argument is converted exactly as a C ``double`` parameter of the
# compiled kernel is (PyFloat_AsDouble): int and __float__/__index__ objects are accepted, str
# is a TypeError, an int too large for a double an OverflowError.
_as_double = math.ldexp


def _raise_time_out_of_range(now_ms: float) -> None:
    raise ValueError(f"now_ms must be a number between -2**53 and 2**53, got {now_ms!r}")


def _raise_earlier(now_ms: float, last_heartbeat_ms: float) -> None:
    raise ValueError(
        f"now_ms {now_ms!r} is earlier than the last heartbeat at {last_heartbeat_ms!r}: "
        "timestamps must come from a monotonic clock"
    )


def _check_duration(name: str, value: float, zero_allowed: bool) -> None:
    # nan fails both comparisons
    if not (value <= TIME_MS_MAX and (value >= 0.0 if zero_allowed else value > 0.0)):
        bound = ">= 0" if zero_allowed else "> 0"
        raise ValueError(f"{name} must be {bound} and at most 2**53, got {value!r}")


def _phi_value(delta_ms: float, mean_ms: float, std_ms: float) -> float:
    """Twin of rc_phi_value(): see the comment there for the formula and the underflow rule."""
    y = (delta_ms - mean_ms) / std_ms
    z = y * (_LOGISTIC_A + _LOGISTIC_B * y * y)
    try:
        e = _exp(-z)
    except OverflowError:  # C's exp() returns inf instead
        e = _inf
    if delta_ms > mean_ms:
        p = e / (1.0 + e)
        if p < _DBL_MIN:
            phi = z / _LN10
            return phi if phi < PHI_MAX else PHI_MAX
    else:
        p = 1.0 - 1.0 / (1.0 + e)
    return -_log10(p) + 0.0


class PhiAccrualDetector:
    """Phi-accrual failure detector for one monitored peer (see ``raftcore._phi``)."""

    __slots__ = (
        # ring of the last `window_size` intervals; slots >= _count are unused
        "_intervals_ms",
        # 2 <= _window_size <= WINDOW_SIZE_MAX
        "_window_size",
        # intervals held: 0 <= _count <= _window_size
        "_count",
        # slot of the next write: 0 <= _next < _window_size; _next == _count while not full
        "_next",
        # intervals pushed since the sums were rebuilt: < _window_size
        "_since_rebuild",
        # constant subtracted from each interval before it enters the sums
        "_shift_ms",
        # sum of (interval - _shift_ms) over the held intervals
        "_sum_ms",
        # sum of (interval - _shift_ms)**2 over the held intervals
        "_sum_squares_ms2",
        "_min_std_deviation_ms",
        "_acceptable_heartbeat_pause_ms",
        "_first_heartbeat_estimate_ms",
        # whether a heartbeat arrived since construction or reset(); if not, the ring is empty
        "_has_heartbeat",
        # time of the latest heartbeat (meaningful only when _has_heartbeat); never decreases
        "_last_heartbeat_ms",
    )

    def __init__(
        self,
        window_size: int = 1000,
        min_std_deviation_ms: float = 100.0,
        acceptable_heartbeat_pause_ms: float = 0.0,
        first_heartbeat_estimate_ms: float = 1000.0,
    ) -> None:
        # the same order of conversions as the compiled kernel's argument parsing, then body
        min_std_deviation_ms = _as_double(min_std_deviation_ms, 0)
        acceptable_heartbeat_pause_ms = _as_double(acceptable_heartbeat_pause_ms, 0)
        first_heartbeat_estimate_ms = _as_double(first_heartbeat_estimate_ms, 0)
        window_size = operator.index(window_size)
        if not 2 <= window_size <= WINDOW_SIZE_MAX:
            raise ValueError(
                f"window_size must be between 2 and {WINDOW_SIZE_MAX}, got {window_size}"
            )
        _check_duration("min_std_deviation_ms", min_std_deviation_ms, False)
        _check_duration("acceptable_heartbeat_pause_ms", acceptable_heartbeat_pause_ms, True)
        _check_duration("first_heartbeat_estimate_ms", first_heartbeat_estimate_ms, False)
        self._intervals_ms = [0.0] * window_size
        self._window_size = window_size
        self._min_std_deviation_ms = min_std_deviation_ms
        self._acceptable_heartbeat_pause_ms = acceptable_heartbeat_pause_ms
        self._first_heartbeat_estimate_ms = first_heartbeat_estimate_ms
        self._clear(first_heartbeat_estimate_ms)
        self._has_heartbeat = False
        self._last_heartbeat_ms = 0.0

    # ---- the window (twins of the rc_phi_window_* functions) ------------------------------

    def _clear(self, shift_ms: float) -> None:
        self._count = 0
        self._next = 0
        self._since_rebuild = 0
        self._shift_ms = shift_ms
        self._sum_ms = 0.0
        self._sum_squares_ms2 = 0.0

    def _mean(self) -> float:
        if self._count == 0:
            return 0.0
        return self._shift_ms + self._sum_ms / self._count

    def _std(self) -> float:
        if self._count == 0:
            return 0.0
        n = float(self._count)
        m = self._sum_ms / n
        variance = self._sum_squares_ms2 / n - m * m
        return _sqrt(variance) if variance > 0.0 else 0.0

    def _rebuild(self) -> None:
        shift_ms = self._mean()
        sum_ms = 0.0
        sum_squares_ms2 = 0.0
        intervals_ms = self._intervals_ms
        for i in range(self._count):
            d = intervals_ms[i] - shift_ms
            sum_ms += d
            sum_squares_ms2 += d * d
        self._shift_ms = shift_ms
        self._sum_ms = sum_ms
        self._sum_squares_ms2 = sum_squares_ms2
        self._since_rebuild = 0

    def _push(self, interval_ms: float) -> None:
        d = interval_ms - self._shift_ms
        slot = self._next
        if self._count < self._window_size:
            self._intervals_ms[slot] = interval_ms
            self._count += 1
            self._sum_ms += d
            self._sum_squares_ms2 += d * d
        else:
            old = self._intervals_ms[slot] - self._shift_ms
            self._intervals_ms[slot] = interval_ms
            self._sum_ms -= old
            self._sum_ms += d
            self._sum_squares_ms2 -= old * old
            self._sum_squares_ms2 += d * d
        self._next = 0 if slot + 1 == self._window_size else slot + 1
        self._since_rebuild += 1
        if self._since_rebuild == self._window_size:
            self._rebuild()

    # ---- public API ------------------------------------------------------------------------

    def heartbeat(self, now_ms: float) -> None:
        """Record a heartbeat received at ``now_ms``."""
        now_ms = _as_double(now_ms, 0)
        if not (-TIME_MS_MAX <= now_ms <= TIME_MS_MAX):
            _raise_time_out_of_range(now_ms)
        if self._has_heartbeat:
            if now_ms < self._last_heartbeat_ms:
                _raise_earlier(now_ms, self._last_heartbeat_ms)
            self._push(now_ms - self._last_heartbeat_ms)
        else:
            # seed: mean = estimate, population standard deviation = estimate / 4
            estimate_ms = self._first_heartbeat_estimate_ms
            self._clear(estimate_ms)
            self._push(estimate_ms - estimate_ms / 4.0)
            self._push(estimate_ms + estimate_ms / 4.0)
            self._has_heartbeat = True
        self._last_heartbeat_ms = now_ms

    def phi(self, now_ms: float) -> float:
        """Suspicion level at ``now_ms``: 0.0 before the first heartbeat, then finite, >= 0."""
        now_ms = _as_double(now_ms, 0)
        if not (-TIME_MS_MAX <= now_ms <= TIME_MS_MAX):
            _raise_time_out_of_range(now_ms)
        if not self._has_heartbeat:
            return 0.0
        if now_ms < self._last_heartbeat_ms:
            _raise_earlier(now_ms, self._last_heartbeat_ms)
        std_ms = self._std()
        if std_ms < self._min_std_deviation_ms:
            std_ms = self._min_std_deviation_ms
        return _phi_value(
            now_ms - self._last_heartbeat_ms,
            self._mean() + self._acceptable_heartbeat_pause_ms,
            std_ms,
        )

    def is_available(self, now_ms: float, threshold: float = 8.0) -> bool:
        """Whether the peer is considered alive at ``now_ms``: ``phi(now_ms) < threshold``."""
        now_ms = _as_double(now_ms, 0)
        threshold = _as_double(threshold, 0)
        if not threshold > 0.0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        return self.phi(now_ms) < threshold

    def reset(self) -> None:
        """Forget every heartbeat: back to the state right after construction."""
        self._clear(self._first_heartbeat_estimate_ms)
        self._has_heartbeat = False
        self._last_heartbeat_ms = 0.0

    def intervals_ms(self) -> list[float]:
        """The intervals in the window, oldest first (the two seeds included), as a list."""
        count = self._count
        start = self._next if count == self._window_size else 0
        return [self._intervals_ms[(start + i) % count] for i in range(count)]

    @property
    def window_size(self) -> int:
        """Capacity of the window, in intervals."""
        return self._window_size

    @property
    def min_std_deviation_ms(self) -> float:
        """Lower bound applied to the standard deviation used by phi()."""
        return self._min_std_deviation_ms

    @property
    def acceptable_heartbeat_pause_ms(self) -> float:
        """Extra delay tolerated on top of the mean interval."""
        return self._acceptable_heartbeat_pause_ms

    @property
    def first_heartbeat_estimate_ms(self) -> float:
        """Expected interval used to seed the window at the first heartbeat."""
        return self._first_heartbeat_estimate_ms

    @property
    def sample_count(self) -> int:
        """Number of intervals in the window: 0 before the first heartbeat, then 2..window_size."""
        return self._count

    @property
    def mean_ms(self) -> float:
        """Mean of the intervals in the window (0.0 when empty), without the acceptable pause."""
        return self._mean()

    @property
    def std_deviation_ms(self) -> float:
        """Population standard deviation of the window (0.0 when empty), before the minimum."""
        return self._std()

    @property
    def last_heartbeat_ms(self) -> float | None:
        """Time of the last heartbeat, or None before the first one."""
        return self._last_heartbeat_ms if self._has_heartbeat else None

    def __repr__(self) -> str:
        return (
            f"PhiAccrualDetector(window_size={self._window_size}, "
            f"min_std_deviation_ms={self._min_std_deviation_ms!r}, "
            f"acceptable_heartbeat_pause_ms={self._acceptable_heartbeat_pause_ms!r}, "
            f"first_heartbeat_estimate_ms={self._first_heartbeat_estimate_ms!r}, "
            f"sample_count={self.sample_count}, last_heartbeat_ms={self.last_heartbeat_ms!r})"
        )

    def __reduce__(self):
        # timestamps from one process's monotonic clock mean nothing in another one
        raise TypeError("cannot pickle 'PhiAccrualDetector' object")
