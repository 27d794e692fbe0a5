# cython: language_level=3
"""Phi-accrual failure detector kernel (Hayashibara et al., SRDS 2004).

A detector watches one peer. ``heartbeat(now_ms)`` records an arrival; ``phi(now_ms)`` says how
suspicious the silence since the last arrival is, on a continuous scale: phi = -log10 of the
probability, under a normal model of the recent inter-arrival intervals, that the next
heartbeat is still on its way. Phi 1 means a 10% chance that the peer is merely late, phi 8 one
in a hundred million. The statistics and the formula live in ``include/rc_phi.h``; this module
validates input and owns the memory. ``raftcore._phi_py`` is its pure-Python twin.

Timestamps are milliseconds on a monotonic clock, as floats; the detector never reads a clock.
A detector is not thread-safe; use it from one thread (the event loop).
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.float cimport DBL_MAX

import operator

IMPLEMENTATION = "compiled"

# Largest window accepted (8 MB of intervals).
WINDOW_SIZE_MAX = 1_000_000
# Bound on |now_ms| and on every duration parameter, 2**53 ms (about 285,000 years): keeps
# intervals and their squares far from overflow, so the sums never see inf or nan.
TIME_MS_MAX = 9007199254740992.0
# Upper bound of phi(): phi is always finite (see rc_phi_value).
PHI_MAX = DBL_MAX

cdef double _TIME_MS_MAX = TIME_MS_MAX


cdef int _raise_time_out_of_range(double now_ms) except -1:
    raise ValueError(f"now_ms must be a number between -2**53 and 2**53, got {now_ms!r}")


cdef int _raise_earlier(double now_ms, double last_heartbeat_ms) except -1:
    raise ValueError(
        f"now_ms {now_ms!r} is earlier than the last heartbeat at {last_heartbeat_ms!r}: "
        "timestamps must come from a monotonic clock"
    )


cdef int _check_duration(str name, double value, bint zero_allowed) except -1:
    # nan fails both comparisons
    if not (value <= _TIME_MS_MAX and (value >= 0.0 if zero_allowed else value > 0.0)):
        bound = ">= 0" if zero_allowed else "> 0"
        raise ValueError(f"{name} must be {bound} and at most 2**53, got {value!r}")
    return 0


cdef class PhiAccrualDetector:
    """Phi-accrual failure detector for one monitored peer.

    The window holds the last ``window_size`` heartbeat inter-arrival intervals. The first
    heartbeat seeds it with two intervals, ``first_heartbeat_estimate_ms`` -/+ a quarter of it
    (mean = the estimate, standard deviation = estimate / 4), so that phi is meaningful before
    real intervals have been observed; each later heartbeat adds ``now_ms - last_heartbeat_ms``.

    ``phi(now_ms)`` uses mean = window mean + ``acceptable_heartbeat_pause_ms`` and standard
    deviation = max(window standard deviation, ``min_std_deviation_ms``).
    """

    def __cinit__(self):
        self._window.intervals_ms = NULL
        self._window.capacity = 0
        self._window.count = 0
        self._has_heartbeat = False

    def __init__(self, window_size=1000, double min_std_deviation_ms=100.0,
                 double acceptable_heartbeat_pause_ms=0.0,
                 double first_heartbeat_estimate_ms=1000.0):
        cdef Py_ssize_t size
        cdef double *storage
        window_size = operator.index(window_size)
        if not 2 <= window_size <= WINDOW_SIZE_MAX:
            raise ValueError(
                f"window_size must be between 2 and {WINDOW_SIZE_MAX}, got {window_size}"
            )
        size = window_size
        _check_duration("min_std_deviation_ms", min_std_deviation_ms, False)
        _check_duration("acceptable_heartbeat_pause_ms", acceptable_heartbeat_pause_ms, True)
        _check_duration("first_heartbeat_estimate_ms", first_heartbeat_estimate_ms, False)
        storage = <double *>PyMem_Malloc(<size_t>size * sizeof(double))
        if storage is NULL:
            raise MemoryError()
        PyMem_Free(self._window.intervals_ms)  # __init__ called again: start over
        self._window_size = size
        self._min_std_deviation_ms = min_std_deviation_ms
        self._acceptable_heartbeat_pause_ms = acceptable_heartbeat_pause_ms
        self._first_heartbeat_estimate_ms = first_heartbeat_estimate_ms
        rc_phi_window_init(&self._window, storage, <size_t>size, first_heartbeat_estimate_ms)
        self._has_heartbeat = False
        self._last_heartbeat_ms = 0.0

    def __dealloc__(self):
        PyMem_Free(self._window.intervals_ms)
        self._window.intervals_ms = NULL

    cpdef void heartbeat(self, double now_ms) except *:
        """Record a heartbeat received at ``now_ms``.

        Raises ValueError if ``now_ms`` is outside [-2**53, 2**53] (nan included) or earlier
        than the previous heartbeat.
        """
        cdef double estimate_ms
        if not (-_TIME_MS_MAX <= now_ms <= _TIME_MS_MAX):
            _raise_time_out_of_range(now_ms)
        if self._has_heartbeat:
            if now_ms < self._last_heartbeat_ms:
                _raise_earlier(now_ms, self._last_heartbeat_ms)
            rc_phi_window_push(&self._window, now_ms - self._last_heartbeat_ms)
        else:
            if self._window.intervals_ms is NULL:
                raise TypeError("PhiAccrualDetector.__init__ was not called")
            # seed: mean = estimate, population standard deviation = estimate / 4
            estimate_ms = self._first_heartbeat_estimate_ms
            rc_phi_window_clear(&self._window, estimate_ms)
            rc_phi_window_push(&self._window, estimate_ms - estimate_ms / 4.0)
            rc_phi_window_push(&self._window, estimate_ms + estimate_ms / 4.0)
            self._has_heartbeat = True
        self._last_heartbeat_ms = now_ms

    cpdef double phi(self, double now_ms) except -1.0:
        """Suspicion level at ``now_ms``: 0.0 before the first heartbeat, then a finite float
        >= 0 that grows with the time elapsed since the last heartbeat (at most PHI_MAX).

        Raises ValueError if ``now_ms`` is outside [-2**53, 2**53] (nan included) or earlier
        than the last heartbeat.
        """
        cdef double std_ms
        if not (-_TIME_MS_MAX <= now_ms <= _TIME_MS_MAX):
            _raise_time_out_of_range(now_ms)
        if not self._has_heartbeat:
            return 0.0
        if now_ms < self._last_heartbeat_ms:
            _raise_earlier(now_ms, self._last_heartbeat_ms)
        std_ms = rc_phi_window_std(&self._window)
        if std_ms < self._min_std_deviation_ms:
            std_ms = self._min_std_deviation_ms
        return rc_phi_value(
            now_ms - self._last_heartbeat_ms,
            rc_phi_window_mean(&self._window) + self._acceptable_heartbeat_pause_ms,
            std_ms,
        )

    cpdef bint is_available(self, double now_ms, double threshold=8.0) except -1:
        """Whether the peer is considered alive at ``now_ms``: ``phi(now_ms) < threshold``.

        ``threshold`` must be > 0 (ValueError otherwise, nan included).
        """
        if not threshold > 0.0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        return self.phi(now_ms) < threshold

    cpdef void reset(self) except *:
        """Forget every heartbeat: back to the state right after construction."""
        rc_phi_window_clear(&self._window, self._first_heartbeat_estimate_ms)
        self._has_heartbeat = False
        self._last_heartbeat_ms = 0.0

    def intervals_ms(self):
        """The intervals in the window, oldest first (the two seeds included), as a list."""
        cdef Py_ssize_t count = <Py_ssize_t>self._window.count
        cdef Py_ssize_t start = 0
        cdef Py_ssize_t i
        if self._window.count == self._window.capacity:
            start = <Py_ssize_t>self._window.next
        return [self._window.intervals_ms[(start + i) % count] for i in range(count)]

    @property
    def window_size(self):
        """Capacity of the window, in intervals."""
        return self._window_size

    @property
    def min_std_deviation_ms(self):
        """Lower bound applied to the standard deviation used by phi()."""
        return self._min_std_deviation_ms

    @property
    def acceptable_heartbeat_pause_ms(self):
        """Extra delay tolerated on top of the mean interval."""
        return self._acceptable_heartbeat_pause_ms

    @property
    def first_heartbeat_estimate_ms(self):
        """Expected interval used to seed the window at the first heartbeat."""
        return self._first_heartbeat_estimate_ms

    @property
    def sample_count(self):
        """Number of intervals in the window: 0 before the first heartbeat, then 2..window_size."""
        return <Py_ssize_t>self._window.count

    @property
    def mean_ms(self):
        """Mean of the intervals in the window (0.0 when empty), without the acceptable pause."""
        return rc_phi_window_mean(&self._window)

    @property
    def std_deviation_ms(self):
        """Population standard deviation of the window (0.0 when empty), before the minimum."""
        return rc_phi_window_std(&self._window)

    @property
    def last_heartbeat_ms(self):
        """Time of the last heartbeat, or None before the first one."""
        return self._last_heartbeat_ms if self._has_heartbeat else None

    def __repr__(self):
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
