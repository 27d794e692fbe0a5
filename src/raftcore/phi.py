"""Phi-accrual failure detection: ``PhiAccrualDetector`` (Hayashibara et al., SRDS 2004).

Compiled kernel ``raftcore._phi``, or its pure-Python twin when ``PYRAFT_NO_EXTENSIONS=1``.
"""

from raftcore._select import load

_impl = load("phi")

PhiAccrualDetector = _impl.PhiAccrualDetector
WINDOW_SIZE_MAX: int = _impl.WINDOW_SIZE_MAX
TIME_MS_MAX: float = _impl.TIME_MS_MAX
PHI_MAX: float = _impl.PHI_MAX
IMPLEMENTATION: str = _impl.IMPLEMENTATION

__all__ = ["PhiAccrualDetector", "WINDOW_SIZE_MAX", "TIME_MS_MAX", "PHI_MAX", "IMPLEMENTATION"]
