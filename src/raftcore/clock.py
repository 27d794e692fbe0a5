"""The clock the per-write path reads: ``perf_counter()``, ``time.perf_counter``'s reading.

Compiled kernel ``raftcore._clock`` (a C call for compiled callers that cimport it), or its
pure-Python twin (``time.perf_counter``) when ``PYRAFT_NO_EXTENSIONS=1``.
"""

from raftcore._select import load

_impl = load("clock")

perf_counter = _impl.perf_counter
IMPLEMENTATION: str = _impl.IMPLEMENTATION

__all__ = ["perf_counter", "IMPLEMENTATION"]
