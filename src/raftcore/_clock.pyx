# cython: language_level=3
"""The clock the per-write path reads, as a C call: ``perf_counter()``.

The runtime times every Ready, every append and every sync into its histograms (five or more
readings per write on a member); read through ``time.perf_counter`` from compiled code each
was a call of a Python object, about 200 instructions. This is the same clock (CPython's
performance counter: ``CLOCK_MONOTONIC`` on Linux), the same readings, and a compiled module
that cimports it (``from raftcore._clock cimport perf_counter``) calls it in C.
``raftcore._clock_py`` is its pure-Python twin: ``time.perf_counter`` itself.
"""

from cpython.time cimport perf_counter as _perf_counter

IMPLEMENTATION = "compiled"


cpdef double perf_counter() noexcept:
    """Seconds on the performance counter (``time.perf_counter()``'s clock and reading)."""
    return _perf_counter()
